//! `coop.guild.bundle.listRevocations`: revocation notices of a collective's sealed bundles.

use serde::{Deserialize, Serialize};

/// The method's NSID.
pub const NSID: &str = "coop.guild.bundle.listRevocations";

crate::methods::method!(
    /// `coop.guild.bundle.listRevocations`.
    query ListRevocations
);

/// Which collective.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Params {
    /// The collective; default: the only one the node holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collective: Option<String>,
}

/// The notices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// The collective.
    pub collective: String,
    /// By date.
    pub notices: Vec<Notice>,
}

/// A revocation after a sealed bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    /// The consent revoke op.
    pub revocation: String,
    /// The member who revoked.
    pub member: String,
    /// The template revoked.
    pub template: String,
    /// When.
    pub at: String,
    /// The sealed bundle's manifest.
    pub bundle: String,
    /// The agreement it was delivered under.
    pub agreement: String,
    /// The member's records the bundle delivered.
    pub records: Vec<Record>,
    /// The builder's receipt for the notice, once sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
}

/// A delivered record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// `at://<did>/<collection>/<rkey>`.
    pub uri: String,
    /// Its CID as delivered.
    pub cid: String,
}
