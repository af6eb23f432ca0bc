//! `coop.guild.collective.getRemoteHeads`: the repo heads another member's node holds in a
//! collective's space (and of the members' public repos), asked of that node over the network.

use serde::{Deserialize, Serialize};

/// The method's NSID.
pub const NSID: &str = "coop.guild.collective.getRemoteHeads";

crate::methods::method!(
    /// `coop.guild.collective.getRemoteHeads`.
    query GetRemoteHeads
);

/// Whom to ask, about which collective.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Params {
    /// The other member's DID.
    pub peer: String,
    /// The collective; default: the only one the node holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collective: Option<String>,
}

/// The heads the peer holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// The member asked.
    pub peer: String,
    /// The collective.
    pub collective: String,
    /// One head per repo the peer holds in the space, then per member's public repo.
    pub heads: Vec<Head>,
}

/// The head of one repo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Head {
    /// The repo's DID.
    pub did: String,
    /// Its head revision.
    pub rev: String,
    /// Its head commit's CID.
    pub commit: String,
    /// The member's public repo (its commons), not its repo in the space; absent: false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub public: bool,
}
