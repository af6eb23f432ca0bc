//! # guild-feed
//!
//! The pure half of the feeds a steward's node serves model builders (protocol.md §7):
//!
//! - [`event`]: the events of `coop.guild.feed.subscribe` (`#bundle`, `#revocation`,
//!   `#agreement`, `#info`), typed, in their lexicon's shape;
//! - [`frame`]: AT Protocol event-stream frames (a DAG-CBOR header `{op, t}` then a DAG-CBOR
//!   body; errors `{op: -1}` then `{error, message}`), encoded and strictly decoded, and the
//!   JSON variant (one object per text frame);
//! - [`log`]: the feed log: a strictly increasing `seq`, events derived once each from the
//!   collective's state (keyed by what they report), a retention window, and the cursor
//!   rules of `subscribeRepos` (live, replay, `OutdatedCursor`, `FutureCursor`);
//! - [`auth`]: a builder proves its DID by signing a server challenge with its key; the
//!   node then issues a short-lived bearer token bound to that DID.
//!
//! It owns those rules. It must not do I/O, read a clock or draw randomness: time and random
//! bytes are arguments; the node (guild-api) persists the log, serves the WebSocket and the
//! downloads, and the builder's client (guild-node) reads them.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod auth;
pub mod event;
pub mod frame;
pub mod log;

pub use auth::{AuthError, Challenge, Gate, Session};
pub use event::{AgreementEvent, BundleEvent, Event, InfoEvent, RecordRef, RevocationEvent};
pub use frame::{Frame, FrameError};
pub use log::{FeedLog, Inconsistent, Retention, Start};

/// The subscription's NSID.
pub const SUBSCRIBE_NSID: &str = "coop.guild.feed.subscribe";
