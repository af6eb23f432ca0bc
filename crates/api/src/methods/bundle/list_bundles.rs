//! `coop.guild.bundle.listBundles`: the bundles of a collective.

use serde::{Deserialize, Serialize};

/// The method's NSID.
pub const NSID: &str = "coop.guild.bundle.listBundles";

crate::methods::method!(
    /// `coop.guild.bundle.listBundles`.
    query ListBundles
);

/// Which collective.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Params {
    /// The collective; default: the only one the node holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collective: Option<String>,
}

/// The bundles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// The collective.
    pub collective: String,
    /// In proposal order.
    pub bundles: Vec<BundleView>,
}

/// A bundle proposal and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleView {
    /// The proposal op.
    pub proposal: String,
    /// The agreement.
    pub agreement: String,
    /// Its template.
    pub template: String,
    /// `training` or `evaluation`.
    pub kind: String,
    /// The proposing steward.
    pub proposed_by: String,
    /// When.
    pub proposed_at: String,
    /// `proposed`, `sealed` or `void`.
    pub status: String,
    /// The sealed manifest, once sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// The manifest this node computed from its own replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computed: Option<String>,
    /// The stewards' approvals.
    pub approvals: Vec<Approval>,
    /// Approvals of one manifest needed to seal it.
    pub quorum: u64,
    /// Records in the manifest this node holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    /// Members credited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authors: Option<u64>,
    /// Size of the packaged CAR on this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub car_bytes: Option<u64>,
    /// Why this node has not approved it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The agreement's builder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builder: Option<String>,
    /// This node's member's records in it, as this node recomputes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mine: Option<MyPart>,
    /// The builder's receipt of the sealed bundle (its op), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
}

/// A member's part of one bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MyPart {
    /// How many of the member's records the bundle holds.
    pub records: u64,
    /// Their paths (the first 200), in the manifest's order.
    pub paths: Vec<String>,
    /// The member's contribution estimate, when this node holds the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<Estimate>,
}

/// A contribution estimate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Estimate {
    /// The method.
    pub method: String,
    /// The value, as the manifest writes it.
    pub value: String,
}

/// A steward's approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// The steward.
    pub steward: String,
    /// The manifest they approved.
    pub manifest: String,
}
