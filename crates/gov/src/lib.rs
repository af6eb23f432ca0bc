//! # guild-gov
//!
//! A collective's governance (protocol.md §4), as a pure state machine.
//!
//! It owns
//! - the governance ops ([`op`]): signed DAG-CBOR maps `{$type, collective, author, prev,
//!   createdAt, …, sig}` checked against their lexicons, identified by the CID of their bytes,
//!   with a typed body per kind ([`body`]: the rules read these, never a field by name);
//! - the op log ([`log`]): a grow-only causal DAG, a bounded buffer of ops waiting for their
//!   parents, heads, ops since a set of heads, and a deterministic topological order (parents
//!   first, ties broken by CID bytes);
//! - the collective's state ([`state`]) folded from any causal cut: members and roles, invites,
//!   consent registers, proposals and elections, agreements, bundles, payout references, keyed
//!   by typed ids; each op authorised against the state of its own causal past, by the module
//!   of its family;
//! - the access decisions that depend on that state and a node's clock
//!   (`State::may_fetch_with_invite`, `State::may_accept_join`), which guild-net asks.
//!
//! The invariants are in `ARCHITECTURE.md` (section `crates/gov`); the conflict rules, the time
//! rules and the fold's cost in `docs/protocol-notes.md`; [`log`] explains the fold and its
//! checkpoints.
//!
//! On the network side (protocol.md §5), without doing any I/O itself:
//! - the [`driver`]: one [`Driver`] per node per collective turns events (a peer connected, a
//!   message arrived, the member writes an op, a timer fired, each with the current time) into
//!   actions (publish an op the log applied, send a message to one peer, penalise a peer that
//!   sent a bad op, wake me at some time). Gossip carries ops; missing parents are wanted from
//!   the sender and asked again elsewhere after a timeout; anti-entropy reconciles the sets
//!   of op ids with Negentropy ([`reconcile`], [`Message::Reconcile`]) on connect and every
//!   30 to 60 s with a random peer, then sends the peer what it lacks and asks for what this
//!   node lacks, in bounded chunks;
//! - the [`sim`]ulator: many drivers in seeded virtual time, with per-link latency, jitter,
//!   loss, duplication, partitions that heal, nodes offline and misbehaving peers, for exact
//!   tests of convergence (`tests/sim.rs`);
//! - a seeded generator of a large collective's [`history`] (issue 18), for the benches and
//!   tests.
//!
//! It must not do I/O: no runtime, no disk, no socket, no clock reads (time is an argument)
//! (a log reads its older stored ops back only through the [`OpReader`] its node gives it)
//! and no ambient randomness (secrets and keys are made by callers; the driver's and the
//! simulator's PRNGs are seeded by their callers).
//! Its only process-wide state is caches that change no result: decompressed author keys, and
//! one shared copy of each op author, collective id and template id (module `shared`),
//! bounded in count and in the length of what they share.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod body;
pub mod driver;
pub mod history;
pub mod log;
pub mod make;
pub mod op;
pub mod reconcile;
mod shared;
pub mod sim;
pub mod state;
pub mod store;
mod table;

pub use driver::{Action, Driver, DriverConfig, Event, Message, MessageError, VerifyCache};
pub use log::{Inserted, Log};
pub use op::{MAX_OP_BYTES, Op, OpError, OpKind, SignedOp};
pub use state::{
    Agreement, AgreementStatus, BallotSet, Bundle, Causal, Certified, Charter, Consent, Consents,
    Departure, Election, ElectionKind, Invite, MAX_CLOCK_SKEW_MICROS, Member, Meta, Outcome,
    PayoutRef, Proposal, ProposalStatus, Reason, Revokes, Role, State, Tally, VoterBallots,
    ballot_set_cid, electorate_cid,
};
pub use store::{OpReader, OpStore, StoreReader};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_rules;
