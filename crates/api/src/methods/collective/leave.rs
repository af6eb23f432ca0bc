//! `coop.guild.collective.leave`: leave a collective.

use serde::{Deserialize, Serialize};

/// The method's NSID.
pub const NSID: &str = "coop.guild.collective.leave";

crate::methods::method!(
    /// `coop.guild.collective.leave`.
    procedure Leave
);

/// Which collective.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    /// The collective; default: the only one the node holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collective: Option<String>,
}

/// The leave op.
pub type Output = super::OpWritten;
