//! # guild-payout
//!
//! Payout statements (protocol.md §8, `coop.guild.payout.statement`), computed exactly so that
//! every steward who computes the statement of a period gets the same bytes.
//!
//! It owns
//! - the period's day slots ([`Window`], [`member_days`]): a period `[start, end)` in unix
//!   seconds is cut into slots of 86 400 s from its start (the last one may be shorter); a
//!   member counts a slot when they were in force at the slot's first instant;
//! - the apportionment ([`split`]): Hamilton's largest-remainder method in exact integer
//!   arithmetic (`u128`): every line gets `⌊R·wᵢ/Σw⌋` minor units, and the `L` units left go
//!   one each to the `L` largest remainders, ties broken by
//!   `SHA-256(period id ‖ 0x00 ‖ DID)` (smallest digest first), then by DID. The amounts sum to
//!   `R` exactly, each is its floor quota or one more, and the result does not depend on the
//!   order of the input;
//! - a statement from the log and the sealed bundles at a cut ([`compute`]): member-days
//!   from the consent ops in the cut's past, weights from the bundles' estimates or credits;
//! - the statement ([`statement`]): weights floored at zero, pro-rated by member-days (the
//!   effective weight is `weight × memberDays`), split with method `largest-remainder`, one
//!   line per member in DID byte order.
//!
//! Choices:
//! - **A member with no member-day in the period gets no line.** A share whose intervals miss
//!   every day slot was not a member in force during the period, so it is left out of the
//!   statement (the lexicon's lines are "one per member paid"); callers may pass a whole
//!   roster, departed members included, without the statement growing with history. A member
//!   with member-days but weight 0, or whose amount rounds to 0, keeps a line with amount 0,
//!   so that the statement shows why they were paid nothing.
//! - A [`Window`] made from a [`Period`](guild_gov::body::Period) starts at the period's start
//!   rounded down to the second and ends at its end rounded up, so that it covers every
//!   instant of the period; a period whose end is not after its start is refused.
//! - A total of 0 gives every line 0, even when every weight is 0; a positive total with no
//!   weight at all is refused ([`PayoutError::NoWeight`]) rather than paid to nobody.
//!
//! The governance rule (guild-gov, `state::payouts`) accepts a statement whose lines pay
//! current or former members and sum to the total; this crate guarantees the sum, and the
//! caller must pass only members of the collective (a line for a stranger is refused even at
//! amount 0). `tests/gov_accepts.rs` checks that a computed statement enters a collective's
//! log.
//!
//! It must not do I/O (no runtime, disk, socket or clock: periods and intervals are
//! arguments), draw randomness, or use floating point: every step is integer arithmetic,
//! checked where it could overflow, and an input that would overflow is refused, never
//! wrapped or saturated.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod compute;
mod days;
mod error;
mod split;
mod statement;

pub use compute::{Basis, billionths, compute, in_force};
pub use days::{DAY_SECONDS, Window, member_days};
pub use error::PayoutError;
pub use split::{split, tie_digest};
pub use statement::{MAX_LINES, METHOD, Share, statement};
