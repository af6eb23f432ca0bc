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
//! - the collective's state ([`state`]) folded from any causal cut: members and roles, invites,
//!   consent registers, proposals and elections, agreements, bundles, payout references; each
//!   op authorised against the state of its own causal past.
//!
//! The conflict rules, the order, and their costs are written down as invariants in
//! `ARCHITECTURE.md` (section `crates/gov`); [`log`] explains the fold and its checkpoints.
//!
//! It must not do I/O: no runtime, no disk, no socket, no clock reads (time is an argument)
//! and no randomness (secrets and keys are made by callers).
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod log;
pub mod make;
pub mod op;
pub mod state;
pub mod store;

pub use log::{Inserted, Log};
pub use op::{MAX_OP_BYTES, Op, OpError, OpKind, SignedOp};
pub use state::{
    Agreement, AgreementStatus, Bundle, Causal, Certified, Charter, Consent, Departure, Election,
    ElectionKind, Invite, Member, Meta, Outcome, PayoutRef, Proposal, ProposalStatus, Reason, Role,
    State, Tally, VoterBallots, electorate_cid,
};
pub use store::OpStore;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_rules;
