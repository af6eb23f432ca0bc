//! # guild-net
//!
//! The libp2p swarm of a Guild node (protocol.md §5): the only crate that knows libp2p.
//!
//! It owns
//! - the node's libp2p identity, which is its member key, so a peer id and a DID name each
//!   other ([`peer_id_from_did`], [`did_from_peer_id`]; protocol.md §1);
//! - the transports (TCP + noise + yamux, or the in-process memory transport for tests and
//!   benchmarks), identify, ping, mDNS discovery and dialling of bootstrap peers;
//! - gossipsub with signed messages whose id is the CID of their data (a governance op's gossip
//!   id is its op id, and re-publishing a known message is a success), manual validation
//!   (nothing is forwarded before the caller accepts it), peer scoring, and the ban of peers
//!   whose score falls below a threshold;
//! - request-response on `/guild/sync/1` with opaque byte bodies;
//! - byte counters on every substream ([`NetHandle::traffic`], [`Traffic`]);
//! - the collectives engine ([`collective`]), which runs the governance drivers over the swarm
//!   and replicates members' collective and public repos through the node's [`Repos`] ([`replica`]);
//! - [`NetCollectives`], the engine and swarm behind `guild_service::CollectiveEngine`, which
//!   is how the node's API reaches them.
//!
//! It depends on `guild-service` for the traits it meets the rest of the node through
//! ([`Repos`], `CollectiveEngine`) and for the [`Clock`]; it never depends on `guild-api`, nor
//! `guild-api` on it (CI checks both).
//!
//! It runs the swarm in a tokio task ([`Net::spawn`]) driven through a [`NetHandle`] and
//! reporting [`NetEvent`]s, over bounded channels.
//!
//! It must not decide policy: which ops are valid, which requests deserve an answer and who may
//! read what are decided by its caller (the governance driver of `guild-gov`, wired by the
//! node), which reports a [`Validation`] for every gossip message and answers or drops every
//! request. It knows no op, record or collective; topics and bodies are opaque to it.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod clock;
pub mod collective;
pub mod config;
mod error;
mod handle;
mod identity;
pub mod replica;
pub mod repos;
mod service_impl;
mod swarm;
mod via;

pub use clock::Clock;
pub use collective::{
    AppliedOp, DEFAULT_MEMBER_PEERS, Engine, EngineConfig, EngineError, FieldsFn, Memberships,
    Status,
};
pub use config::{ConfigError, DialVia, NetConfig, ScoreConfig, TransportKind};
pub use error::{
    DialError, NetError, PublishError, RequestError, RespondError, Stopped, SubscribeError,
};
pub use guild_service::{RepoHead, RepoKind, RepoSyncError, Repos};
pub use handle::{MsgId, NetEvent, NetHandle, PeerInfo, ResponseToken, Traffic, Validation};
pub use identity::{DidError, did_from_peer_id, peer_id_from_did, short_id};
pub use service_impl::NetCollectives;
pub use swarm::{Net, SYNC_PROTOCOL};

/// libp2p's address and peer id types, so that callers need not depend on libp2p.
pub use libp2p::{Multiaddr, PeerId, multiaddr};
