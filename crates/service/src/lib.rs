//! # guild-service
//!
//! The node's policy below its two front ends, the XRPC API (`guild-api`) and the network
//! (`guild-net`), which reach it through the traits here and never each other.
//!
//! It owns
//! - the repository service ([`RepoService`], [`service`]): the write path (lexicon
//!   validation with AT's `validate` semantics, `Repo::apply` over a `Staged` store, one
//!   `RepoStore::commit`), reads through the index, CARs and proofs, the collective space's
//!   declaration, and the verification of replicas of other members' repos;
//! - what repo replication needs of the node's repos ([`Repos`], [`RepoHead`],
//!   [`RepoSyncError`]; implemented here on `RepoService`, called by the network's engine);
//! - what the API needs of the collectives engine ([`CollectiveEngine`], with its [`Status`],
//!   [`NodePeers`], [`EngineError`] and the [`FieldsFn`] that builds an op's [`OpFields`];
//!   implemented by `guild-net`);
//! - bundles on a steward's node ([`bundles`]: proposing, recomputing and approving,
//!   packaging sealed bundles, revocation notices; the rules are guild-bundle's and
//!   guild-gov's);
//! - builders' feeds ([`feeds`]: the feed log persisted in the node's store, events derived from
//!   the collectives' state, live subscribers, logins and rate limits; the rules are
//!   guild-feed's);
//! - the node's [`Clock`], the one source of "now" the node hands to its engine, its API and
//!   its repo service.
//!
//! It must not speak HTTP or libp2p, nor depend on `guild-api` or `guild-net` (CI checks
//! that neither of those two depends on the other). The rules it applies live in the crates it
//! calls: guild-repo (trees, commits, verification), guild-lexicon (records), guild-store
//! (atomic persistence), guild-gov (governance).
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod bundles;
pub mod clock;
pub mod deliveries;
pub mod engine;
pub mod feeds;
pub mod payouts;
pub mod repos;
pub mod service;

pub use bundles::{
    BundleFile, BundleInfo, BundleStatus, RevocationNotice, Stewardship, StewardshipError,
};
pub use clock::Clock;
pub use deliveries::{Delivered, Delivery, DeliveryError, DeliveryLog};
pub use engine::{
    BoxFuture, CollectiveEngine, Departed, EngineError, FieldsFn, Memberships, NodePeers, OpFields,
    Peer, ReplicaRefusal, Status,
};
pub use feeds::{FeedConfig, FeedError, FeedHub, Feeds, Found, Subscription};
pub use guild_store::Space;
pub use repos::{RepoHead, RepoKind, RepoSyncError, Repos};
pub use service::{
    NodeStore, ReplicaError, RepoService, ServiceError, WriteOp, WriteOutcome, WriteResult,
};
