//! `coop.guild.collective.openElection`: open a steward election (approval voting).

use serde::{Deserialize, Serialize};

/// The method's NSID.
pub const NSID: &str = "coop.guild.collective.openElection";

crate::methods::method!(
    /// `coop.guild.collective.openElection`.
    procedure OpenElection
);

/// The election.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    /// The collective; default: the only one the node holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collective: Option<String>,
    /// Seats to fill (1 to 100); default: the charter's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seats: Option<i64>,
    /// The candidates' DIDs; empty: every member.
    #[serde(
        default,
        deserialize_with = "super::super::null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub candidates: Vec<String>,
    /// Seconds from now until the tellers may close it (at least 0); default: a day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closes_in_secs: Option<i64>,
}

/// The election open op, which is the election's id.
pub type Output = super::OpWritten;
