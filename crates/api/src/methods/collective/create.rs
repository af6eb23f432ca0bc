//! `coop.guild.collective.create`: found a collective; the node's member becomes its first
//! steward.

use serde::{Deserialize, Serialize};

/// The method's NSID.
pub const NSID: &str = "coop.guild.collective.create";

crate::methods::method!(
    /// `coop.guild.collective.create`.
    procedure Create
);

/// How people join a new collective.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Admission {
    /// Invites only.
    #[default]
    Invite,
    /// Invites, or a request a steward approves.
    Approval,
    /// Invites, or a request the members vote on.
    Vote,
}

/// The new collective's name and choices.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    /// The collective's name (not blank).
    pub name: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// Steward seats (1 to 100); default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seats: Option<i64>,
    /// Steward signatures an agreement or a bundle needs (1 to 100); default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub countersignatures: Option<i64>,
    /// How people join; default: invites only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admission: Option<Admission>,
    /// The standard licence templates to offer, by id; empty: all of them.
    #[serde(
        default,
        deserialize_with = "super::super::null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub templates: Vec<String>,
    /// Keep agreements' prices off the public agreement list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_prices: Option<bool>,
    /// Per-licensee canary records in every bundle (0 or absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canaries_per_bundle: Option<i64>,
}

/// The new collective.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// The collective's id: the CID of its charter.
    pub collective: String,
}
