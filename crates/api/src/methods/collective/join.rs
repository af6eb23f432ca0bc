//! `coop.guild.collective.join`: join a collective with an invite.

use serde::{Deserialize, Serialize};

/// The method's NSID.
pub const NSID: &str = "coop.guild.collective.join";

crate::methods::method!(
    /// `coop.guild.collective.join`.
    procedure Join
);

/// The invite.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    /// The invite string (`guild-invite:…`).
    pub invite: String,
}

/// The collective joined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// The collective's id.
    pub collective: String,
}
