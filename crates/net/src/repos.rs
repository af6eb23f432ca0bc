//! What the collectives engine needs of the node's repositories to replicate members'
//! collective repos (protocol.md §5, "Repo sync"): the [`Repos`] trait, defined in
//! `guild-service` (which implements it on its `RepoService`) and re-exported here.
//!
//! guild-net knows no repo, record or lexicon: the engine only moves heads and CAR bytes
//! between [`Repos`] and the network. Whether a CAR is a valid replica is decided by the
//! implementation.

pub use guild_service::{RepoHead, RepoKind, RepoSyncError, Repos};
