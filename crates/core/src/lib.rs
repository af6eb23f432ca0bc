//! # guild-core
//!
//! The bottom of Guild's stack: the things every other crate names and hashes.
//!
//! It owns
//! - typed, parsed AT Protocol identifiers ([`syntax`]: DID, NSID, TID and its monotonic
//!   clock, record key, AT-URI, datetime, handle, language, CID strings);
//! - ed25519 identities ([`keys`]): key generation from the OS random source, `did:key`
//!   encoding and decoding, the key-file format, and the signing rule of protocol.md §1
//!   (`sig = ed25519(sha256(dag_cbor(object without "sig")))`);
//! - the AT data model ([`data`]): canonical DAG-CBOR encoding, strict decoding of untrusted
//!   bytes (no floats, no non-canonical forms, bounded nesting), the JSON form (`$link`,
//!   `$bytes`, blobs) in both directions, and CID computation ([`cids`]);
//! - [`chunked`] sequences: vectors of a million items kept in shared, copy-on-write chunks
//!   (the governance log's indexes, the in-memory store's ops).
//!
//! It must not touch a runtime, a clock, a disk or a socket: time and randomness that need an
//! outside source are passed in (the one exception is [`keys::Keypair::generate`], which asks
//! the operating system for 32 random bytes). CI fails if tokio, sled, libp2p or an HTTP crate
//! enters its dependency tree.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod cbor;
pub mod chunked;
pub mod cids;
pub mod data;
pub mod keys;
pub mod syntax;

pub use cid::Cid;
pub use data::Ipld;
pub use keys::{Keypair, PublicKey};
