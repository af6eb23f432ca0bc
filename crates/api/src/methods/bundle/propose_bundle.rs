//! `coop.guild.bundle.proposeBundle`: propose a bundle under an agreement in force.

use serde::{Deserialize, Serialize};

/// The method's NSID.
pub const NSID: &str = "coop.guild.bundle.proposeBundle";

crate::methods::method!(
    /// `coop.guild.bundle.proposeBundle`.
    procedure ProposeBundle
);

/// The agreement and the kind of bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    /// The collective; default: the only one the node holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collective: Option<String>,
    /// The agreement (its offer op's CID).
    pub agreement: String,
    /// `training` (default) or `evaluation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// A note to the other stewards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The proposal op.
pub type Output = crate::methods::collective::OpWritten;
