//! `coop.guild.collective.vote`: approve candidates in an election (voting again replaces the
//! member's ballot).

use serde::{Deserialize, Serialize};

/// The method's NSID.
pub const NSID: &str = "coop.guild.collective.vote";

crate::methods::method!(
    /// `coop.guild.collective.vote`.
    procedure Vote
);

/// The ballot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    /// The collective; default: the only one the node holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collective: Option<String>,
    /// The election's id (its open op).
    pub election: String,
    /// The candidates (DIDs) approved, or `yes` / `no`; empty approves nothing.
    #[serde(
        default,
        deserialize_with = "super::super::null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub approvals: Vec<String>,
}

/// The ballot op.
pub type Output = super::OpWritten;
