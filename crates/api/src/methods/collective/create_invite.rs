//! `coop.guild.collective.createInvite`: invite someone (stewards only).

use serde::{Deserialize, Serialize};

/// The method's NSID.
pub const NSID: &str = "coop.guild.collective.createInvite";

crate::methods::method!(
    /// `coop.guild.collective.createInvite`.
    procedure CreateInvite
);

/// The invite's terms.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    /// The collective; default: the only one the node holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collective: Option<String>,
    /// Only this DID may use the invite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitee: Option<String>,
    /// Days the invite stays valid (at least 1); default: the charter's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<i64>,
}

/// The invite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// The invite string to hand over (`guild-invite:…`).
    pub invite: String,
    /// The collective's id.
    pub collective: String,
}
