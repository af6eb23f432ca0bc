//! `coop.guild.collective.getStatus`: a collective as the node sees it.

use serde::{Deserialize, Serialize};

/// The method's NSID.
pub const NSID: &str = "coop.guild.collective.getStatus";

crate::methods::method!(
    /// `coop.guild.collective.getStatus`.
    query GetStatus
);

/// Which collective.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Params {
    /// The collective; default: the only one the node holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collective: Option<String>,
    /// At most this many items in each of `members`, `departed` and `consents`; default:
    /// all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// List the members whose DIDs sort after this one: the `members_cursor` of the page
    /// before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members_after: Option<String>,
    /// Only this member's consent registers in `consents`; `consent_count` still counts
    /// every register.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consents_of: Option<String>,
}

/// The collective's folded state and the node's sync state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// The collective's id.
    pub collective: String,
    /// Its name; `None` before its charter is known.
    pub name: Option<String>,
    /// The DID of the node's member.
    pub you: String,
    /// Whether the node's member is a member.
    pub member: bool,
    /// The node's member's role (`steward`, `member`); `None` if not a member.
    pub role: Option<String>,
    /// The current members, in DID order (the first `limit` after `members_after`).
    pub members: Vec<Member>,
    /// How many current members.
    pub member_count: u64,
    /// When `limit` left members out after the listed ones: the last DID listed, for
    /// `members_after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members_cursor: Option<String>,
    /// Former members (the first `limit`).
    pub departed: Vec<Departure>,
    /// How many former members.
    pub departed_count: u64,
    /// The stewards' DIDs.
    pub stewards: Vec<String>,
    /// How many steward signatures an agreement or a bundle needs now.
    pub quorum: u64,
    /// The ids of the licence templates the charter offers; `None` before it is known.
    pub templates: Option<Vec<String>>,
    /// Invites not used yet.
    pub open_invites: u64,
    /// The consent registers (the first `limit`).
    pub consents: Vec<Consent>,
    /// How many consent registers.
    pub consent_count: u64,
    /// The elections.
    pub elections: Vec<Election>,
    /// The agreements.
    pub agreements: Vec<Agreement>,
    /// The members whose nodes the node is connected to.
    pub peers: Vec<String>,
    /// The node's copy of the op log.
    pub sync: Sync,
    /// Members' repos refused as replicas: by this node's steward, and this node's member's
    /// repo by other stewards (as they told it). Absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replica_refusals: Vec<ReplicaRefusal>,
}

/// A steward's node refusing a member's repo as a replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaRefusal {
    /// The member whose repo is refused.
    pub member: String,
    /// The steward whose node refuses it.
    pub steward: String,
    /// Why.
    pub reason: String,
    /// When the node learnt it.
    pub at: String,
}

/// A current member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// The member's DID.
    pub did: String,
    /// `steward` or `member`.
    pub role: String,
    /// The op that made them a member.
    pub since: String,
}

/// A former member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Departure {
    /// The former member's DID.
    pub did: String,
    /// `left` or `removed`.
    pub how: String,
    /// The op by which they went.
    pub op: String,
}

/// A member's consent register for one template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Consent {
    /// The member's DID.
    pub member: String,
    /// The licence template id.
    pub template: String,
    /// Whether consent is given.
    pub granted: bool,
    /// The register's revision.
    pub rev: u64,
    /// The op that wrote the register.
    pub op: String,
}

/// An election or a vote on a proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Election {
    /// The election's id (its open op).
    pub id: String,
    /// What it decides (`stewards`, `amendment`, `admission`, `removal`).
    pub kind: String,
    /// Seats to fill.
    pub seats: u64,
    /// The candidates.
    pub candidates: Vec<String>,
    /// The tellers.
    pub tellers: Vec<String>,
    /// The earliest close time.
    pub closes_after: String,
    /// Members whose ballots the node holds; once certified, how many had voted then.
    pub voters: u64,
    /// Seals the node holds.
    pub seals: u64,
    /// The certified result, once a majority of the tellers sealed the same.
    pub certified: Option<Certified>,
}

/// An election's certified result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Certified {
    /// `adopted`, `rejected` or `no-quorum`.
    pub outcome: String,
    /// The elected candidates, in rank order.
    pub elected: Vec<String>,
    /// Each choice with its approvals.
    pub tally: Vec<Count>,
    /// Ballots counted.
    pub ballots: u64,
}

/// A choice and its approvals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Count {
    /// A candidate's DID, or `yes` / `no`.
    pub choice: String,
    /// How many ballots approve it.
    pub approvals: u64,
}

/// An agreement with a builder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Agreement {
    /// The agreement's id (its offer op).
    pub id: String,
    /// The builder's DID.
    pub builder: String,
    /// The licence template id.
    pub template: String,
    /// `offered`, `accepted` or `in-force`.
    pub status: String,
}

/// The node's copy of the collective's op log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sync {
    /// Ops in the log.
    pub ops: u64,
    /// The log's heads.
    pub heads: Vec<String>,
    /// Ops waiting for their parents.
    pub pending: u64,
    /// Ops asked of peers and not received yet.
    pub wanted: u64,
}
