//! `coop.guild.collective.closeElection`: a teller seals the ballots it counted and the result.

use serde::{Deserialize, Serialize};

/// The method's NSID.
pub const NSID: &str = "coop.guild.collective.closeElection";

crate::methods::method!(
    /// `coop.guild.collective.closeElection`.
    procedure CloseElection
);

/// The election.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    /// The collective; default: the only one the node holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collective: Option<String>,
    /// The election's id (its open op).
    pub election: String,
}

/// The seal op.
pub type Output = super::OpWritten;
