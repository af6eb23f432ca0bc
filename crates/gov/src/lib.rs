//! # guild-gov
//!
//! A collective's governance (protocol.md §4), as a pure state machine.
//!
//! It owns
//! - the governance ops ([`op`]): signed DAG-CBOR maps `{$type, collective, author, prev,
//!   createdAt, …, sig}` checked against their lexicons, identified by the CID of their bytes;
//! - the op log ([`log`]): a grow-only causal DAG, a bounded buffer of ops waiting for their
//!   parents, heads, ops since a set of heads, and a deterministic topological order (parents
//!   first, ties broken by CID bytes);
//! - the collective's state ([`state`]) folded from any causal cut, each op authorised against
//!   the state of its own causal past.
//!
//! Concurrency rules (the same set of ops gives the same state, whatever the delivery order):
//! - a removal wins over anything the removed member did concurrently with it (ops by the
//!   removed member that are neither in the removal's past nor in its future are ignored);
//! - a revocation wins over a concurrent grant of the same (member, template) consent;
//! - an invite admits one member: of concurrent joins with one invite, the first in the
//!   topological order is admitted and the others are ignored.
//!
//! An op enters the log only if it is authorised against the state of its own causal past
//! (otherwise [`Inserted::Rejected`]); that check depends on the op's ancestors alone, so
//! every node accepts the same ops. Folding the whole set may still ignore an accepted op
//! (the concurrency rules above); ignoring is decided by the set alone, so every node with
//! the same ops has the same [`State`].
//!
//! On the network side (protocol.md §5), without doing any I/O itself:
//! - the [`driver`]: one [`Driver`] per node per collective turns events (a peer connected, a
//!   message arrived, the member writes an op, a timer fired, each with the current time) into
//!   actions (publish an op the log applied, send a message to one peer, penalise a peer that
//!   sent a bad op, wake me at some time). Gossip carries ops; missing parents are wanted from
//!   the sender and asked again elsewhere after a timeout; anti-entropy exchanges log
//!   summaries ([`Message::Heads`]) on connect and every 30 to 60 s with a random peer, and
//!   answers them with bounded chunks of the ops the peer lacks;
//! - the [`sim`]ulator: many drivers in seeded virtual time, with per-link latency, jitter,
//!   loss, duplication, partitions that heal, nodes offline and misbehaving peers, for exact
//!   tests of convergence (`tests/sim.rs`).
//!
//! Not yet here (later work on the same issue): charter amendments, elections (open, ballot,
//! seal) and votes, role changes, agreements, bundles, payout statements. The fold is
//! recomputed from the causal past for every op that does not extend all the current heads;
//! only ops that do are applied incrementally.
//!
//! It must not do I/O: no runtime, no disk, no socket, no clock reads (time is an argument)
//! and no ambient randomness (secrets and keys are made by callers; the driver's and the
//! simulator's PRNGs are seeded by their callers).
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod driver;
pub mod log;
pub mod op;
pub mod sim;
pub mod state;

pub use driver::{Action, Driver, DriverConfig, Event, Message, MessageError, VerifyCache};
pub use log::{Inserted, Log};
pub use op::{MAX_OP_BYTES, Op, OpError, OpKind, SignedOp};
pub use state::{Charter, Consent, Departure, Invite, Member, Reason, Role, State};

#[cfg(test)]
mod tests;
