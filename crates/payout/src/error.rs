//! Why a payout cannot be computed.

use guild_core::syntax::Did;

/// Why a payout cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayoutError {
    /// The period ends at or before its start.
    #[error("the period ends ({end}) at or before its start ({start})")]
    EmptyPeriod {
        /// Its start (unix seconds, or the datetime as written).
        start: String,
        /// Its end.
        end: String,
    },
    /// A member appears twice.
    #[error("{0} appears twice")]
    DuplicateMember(Did),
    /// A positive total over weights that are all zero (or no member at all).
    #[error("nothing to split {0} over: every weight (times member-days) is zero")]
    NoWeight(u64),
    /// The total is negative.
    #[error("the total is negative ({0})")]
    NegativeTotal(i64),
    /// An intermediate value does not fit its integer type.
    #[error("overflow: {0}")]
    Overflow(&'static str),
    /// More lines than a statement may carry.
    #[error("{0} lines, more than a statement may carry ({max})", max = crate::MAX_LINES)]
    TooManyLines(usize),
    /// The agreement is not known at the cut.
    #[error("no agreement {0} at the cut")]
    UnknownAgreement(guild_core::Cid),
    /// A manifest's estimate is not a decimal number.
    #[error("an estimate {0:?} is not a decimal number")]
    BadEstimate(String),
}
