//! # guild-repo
//!
//! AT Protocol repository v3, byte for byte: the Merkle Search Tree ([`mst`]), signed commits
//! ([`commit`]), the [`Repo`] API that turns batches of writes into commits, CAR v1 files
//! ([`car`]), full verification of a received repository ([`verify`]) and inclusion proofs of
//! single records ([`proof`]).
//!
//! It owns the repository's bytes and their rules. It must not do I/O: blocks are read and
//! written through the small [`BlockSource`]/[`BlockStore`] traits (an in-memory store lives
//! here; the sled one lives in `guild-store`), and CAR writing goes to any `std::io::Write`
//! the caller hands in. No runtime, clock or socket: revisions are passed in.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod blockstore;
pub mod car;
pub mod commit;
pub mod mst;
pub mod proof;
pub mod repo;
pub mod verify;

pub use blockstore::{BlockSource, BlockStore, Bytes, MemoryBlockStore, StoreError};
pub use car::{Car, CarError, CarWriter, read_car, read_car_owned};
pub use commit::{Commit, CommitError, sign_commit, verify_commit};
pub use mst::{Mst, MstError};
pub use proof::{ProofError, ProvenRecord, prove, verify_proof};
pub use repo::{
    Action, CommitResult, Head, PreparedRecord, RecordOp, Repo, RepoError, Write, parse_path,
    prepare_record,
};
pub use verify::{RepoSummary, VerifyError, verify_car, verify_repo, verify_repo_with};
