//! # guild-api
//!
//! The node's XRPC API: the repository service the handlers call ([`service`]), the axum
//! server with AT Protocol's `com.atproto.*` endpoints and Guild's `coop.guild.*` ones
//! ([`server`]), the collective endpoints served by the node's collectives engine
//! ([`collective`]), and a blocking client for the `guild` command line ([`client`]).
//!
//! It owns request parsing, authentication with the local admin token, error shaping and the
//! orchestration of a write (validate with guild-lexicon, apply with guild-repo, persist with
//! guild-store). It must not hold repository, lexicon or governance rules of its own: those
//! live in the crates it calls.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod client;
pub mod collective;
pub mod server;
pub mod service;

pub use client::{Client, ClientError};
pub use collective::Collectives;
pub use server::{ApiState, XrpcError, router};
pub use service::{
    NodeStore, ReplicaError, RepoService, ServiceError, WriteOp, WriteOutcome, WriteResult,
};
