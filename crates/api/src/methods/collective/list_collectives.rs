//! `coop.guild.collective.listCollectives`: the collectives the node holds.

use serde::{Deserialize, Serialize};

/// The method's NSID.
pub const NSID: &str = "coop.guild.collective.listCollectives";

crate::methods::method!(
    /// `coop.guild.collective.listCollectives`.
    query ListCollectives
);

/// No parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {}

/// The collectives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// The collectives, by id.
    pub collectives: Vec<Collective>,
}

/// A collective the node holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Collective {
    /// The collective's id.
    pub collective: String,
    /// Its name; `None` before its charter is known.
    pub name: Option<String>,
    /// Whether the node's member is a member.
    pub member: bool,
    /// How many members it has.
    pub members: u64,
}
