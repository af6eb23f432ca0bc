//! `coop.guild.collective.*`: the member's daily commands for collectives.

pub mod close_election;
pub mod create;
pub mod create_invite;
pub mod get_remote_heads;
pub mod get_status;
pub mod grant_consent;
pub mod join;
pub mod leave;
pub mod list_collectives;
pub mod open_election;
pub mod revoke_consent;
pub mod vote;

use serde::{Deserialize, Serialize};

/// The output of the methods that write one op: the op's id and its collective.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpWritten {
    /// The op's id (its CID).
    pub op: String,
    /// The collective's id.
    pub collective: String,
}

/// The input of `grantConsent` and `revokeConsent`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsentInput {
    /// The collective; default: the only one the node holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collective: Option<String>,
    /// The licence templates, by id (at least one).
    pub templates: Vec<String>,
    /// Only records of these collections; empty: every record of the member's repo in the
    /// collective's space.
    #[serde(
        default,
        deserialize_with = "super::null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub collections: Vec<String>,
}
