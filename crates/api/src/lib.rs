//! # guild-api
//!
//! The node's XRPC API: the axum server with AT Protocol's `com.atproto.*` endpoints and
//! Guild's `coop.guild.*` ones ([`server`]), the collective endpoints served by the node's
//! collectives engine ([`collective`]), the typed inputs and outputs of Guild's own methods
//! ([`methods`]), builders' login, feed WebSocket and bundle download ([`feeds`], also served
//! alone on a public address by [`public_router`]), and a blocking client for the `guild`
//! command line ([`client`]).
//!
//! The handlers call the repository service (`guild_service::RepoService`, re-exported here)
//! and reach the collectives engine through `guild_service::CollectiveEngine`; this crate does
//! not depend on `guild-net` (nor `guild-net` on it; CI checks both). The time the handlers
//! read is the [`ApiState`]'s clock.
//!
//! Every `coop.guild.*` method has a lexicon in `lexicons/coop/guild/`; the router checks each
//! request against it (parameters, input) before the handler runs.
//!
//! The node's web pages ([`web`]): a member's dashboard (loopback, one-time login link) and
//! the public contracts page, server-rendered, reading and writing only through the router's
//! own XRPC methods.
//!
//! It serves the router itself ([`mod@serve`]): its accept loop bounds the connections open, the
//! time to send headers and bodies, and the memory request bodies take at once, so that no
//! client can exhaust the node; on the public address, over TLS when a certificate is
//! configured ([`mod@tls`], rustls).
//!
//! It owns request parsing, authentication with the local admin token, error shaping and the
//! orchestration of a write (validate with guild-lexicon, apply with guild-repo, persist with
//! guild-store). It must not hold repository, lexicon or governance rules of its own: those
//! live in the crates it calls.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod agreement;
pub mod bundles;
pub mod client;
pub mod collective;
pub mod feeds;
pub mod methods;
pub mod serve;
pub mod server;
mod storage;
pub mod tls;
mod validation;
pub mod web;

pub use client::{Client, ClientError};
pub use collective::Collectives;
pub use guild_service::{
    Clock, CollectiveEngine, FeedConfig, FeedHub, Found, NodeStore, ReplicaError, RepoService,
    ServiceError, WriteOp, WriteOutcome, WriteResult,
};
pub use methods::{Kind, Method};
pub use serve::{Bodies, Limits, serve, serve_tls};
pub use server::{ApiState, XrpcError, public_router, router};
pub use storage::STORAGE_UNAVAILABLE;
pub use tls::{ServerTls, TlsError};
