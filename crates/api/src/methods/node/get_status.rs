//! `coop.guild.node.getStatus`: the node's member, version, uptime, lexicons and repos.

use serde::{Deserialize, Serialize};

/// The method's NSID.
pub const NSID: &str = "coop.guild.node.getStatus";

crate::methods::method!(
    /// `coop.guild.node.getStatus`.
    query GetStatus
);

/// No parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {}

/// The node's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// The DID of the node's member.
    pub did: String,
    /// The node's software version.
    pub version: String,
    /// Seconds since the node started.
    pub uptime_secs: u64,
    /// How many lexicons the node has loaded.
    pub lexicons: u64,
    /// Every repo the node holds.
    pub repos: Vec<Repo>,
}

/// A repo the node holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Repo {
    /// The repo's DID.
    pub did: String,
    /// Its space: `public` or a collective's id.
    pub space: String,
    /// Its head commit's CID.
    pub commit: String,
    /// Its head revision.
    pub rev: String,
    /// How many records it holds.
    pub records: u64,
}
