//! The typed bodies of governance ops: one serde type per op kind ([`OpBody`]), mirroring the
//! kind's lexicon (`lexicons/coop/guild/…`), which stays the wire contract.
//!
//! An op's bytes are checked against its lexicon first ([`crate::SignedOp::decode`]); the
//! typed body is then read from the same decoded map, so the received bytes remain the signed
//! bytes and a field the rules read cannot be misspelt or silently defaulted. Writers build a
//! typed body and sign it with [`crate::Op::write`].
//!
//! Closed sets the rules act on (admission policy, approval mode, tellers, election kind and
//! method, ballot choices, bundle kind) are enums. Their lexicons declare `knownValues` (an
//! open set, so a later version may add a value), so each is read as [`Open`]: a known value,
//! or the unknown string, which the rules refuse by name. Identifiers are typed: [`Did`],
//! [`Nsid`], [`Tid`], [`Datetime`], and [`CidRef`] for a CID written as a string.
//!
//! Envelope fields (`$type`, `collective`, `author`, `prev`, `createdAt`, `sig`) are not part
//! of a body: [`crate::SignedOp`] holds them.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use guild_core::syntax::{AtUri, Datetime, Did, Nsid, Tid, parse_cid_str};
use guild_core::{Cid, Ipld};
use serde::de::{self, DeserializeOwned, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::op::{OpError, OpKind};

/// A CID written as a string (the lexicon's `cid` format: op references, the collective id,
/// manifests, commits, electorates).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CidRef(pub Cid);

impl Serialize for CidRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CidRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_cid_str(&s).map(CidRef).map_err(de::Error::custom)
    }
}

impl From<Cid> for CidRef {
    fn from(c: Cid) -> CidRef {
        CidRef(c)
    }
}

/// A closed set of string values the rules act on.
pub trait Token: Sized + Copy + Eq + 'static {
    /// Every value.
    const ALL: &'static [Self];
    /// The value's wire string.
    fn as_str(self) -> &'static str;
    /// The value named by a wire string.
    fn from_wire(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|t| t.as_str() == s)
    }
}

/// A value of an open lexicon set (`knownValues`): one this version knows, or another string
/// (valid on the wire, refused by the rules that need a known value).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Open<T> {
    /// A value this version knows.
    Known(T),
    /// Any other string.
    Unknown(String),
}

impl<T: Token> Open<T> {
    /// The known value, if it is one.
    pub fn known(&self) -> Option<T> {
        match self {
            Open::Known(t) => Some(*t),
            Open::Unknown(_) => None,
        }
    }

    /// Whether it is `t`.
    pub fn is(&self, t: T) -> bool {
        self.known() == Some(t)
    }

    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            Open::Known(t) => t.as_str(),
            Open::Unknown(s) => s,
        }
    }
}

impl<T: Token> From<T> for Open<T> {
    fn from(t: T) -> Open<T> {
        Open::Known(t)
    }
}

impl<T: Token> fmt::Display for Open<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<T: Token> Serialize for Open<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de, T: Token> Deserialize<'de> for Open<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(T::from_wire(&s).map_or(Open::Unknown(s), Open::Known))
    }
}

/// Declares a [`Token`] enum with its wire strings.
macro_rules! tokens {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal,)+ }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($(#[$vm])* $v,)+ }

        impl Token for $name {
            const ALL: &'static [Self] = &[$($name::$v,)+];
            fn as_str(self) -> &'static str {
                match self { $($name::$v => $s,)+ }
            }
        }
    };
}

tokens! {
    /// Who may ask to join (`coop.guild.collective.defs#admission.policy`).
    pub enum AdmissionPolicy {
        /// Only with a steward's invite.
        InviteOnly = "invite-only",
        /// With an invite, or by asking (then admitted by a steward or a vote).
        InviteOrRequest = "invite-or-request",
    }
}

tokens! {
    /// Who admits a candidate who asked (`coop.guild.collective.defs#admission.approval`).
    pub enum ApprovalMode {
        /// A steward's admit op.
        Steward = "steward",
        /// A vote of the members.
        Vote = "vote",
    }
}

tokens! {
    /// Who tells elections (`coop.guild.collective.defs#stewardship.tellers`).
    pub enum TellerRule {
        /// The stewards at the election's open op (every member when there is none).
        Stewards = "stewards",
    }
}

tokens! {
    /// A voting method (`coop.guild.election.open#method`, the charter's `electionMethod`).
    pub enum VotingMethod {
        /// Approval voting: each ballot approves any number of choices.
        Approval = "approval",
    }
}

tokens! {
    /// What an election decides (`coop.guild.election.open#kind`).
    pub enum ElectionKind {
        /// The steward seats.
        Stewards = "stewards",
        /// A charter amendment (the proposal is the amendment op).
        Amendment = "amendment",
        /// An admission (the proposal is the candidate's join request).
        Admission = "admission",
        /// A removal (the proposal is the remove op).
        Removal = "removal",
    }
}

tokens! {
    /// An election's outcome (`coop.guild.election.close#result.outcome`).
    pub enum Outcome {
        /// Seats filled, or the proposal adopted.
        Adopted = "adopted",
        /// The proposal did not reach its threshold.
        Rejected = "rejected",
        /// Too few voted (or, for seats, nobody was approved): nothing changes.
        NoQuorum = "no-quorum",
    }
}

tokens! {
    /// What a bundle is for (`coop.guild.bundle.defs#kind`).
    pub enum BundleKind {
        /// Training data.
        Training = "training",
        /// Evaluation data.
        Evaluation = "evaluation",
    }
}

/// One approval on a ballot: `yes` / `no` in a vote on a proposal, a candidate's DID in a
/// seat election, or any other string (valid on the wire, refused by the rules).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Choice {
    /// For the proposal.
    Yes,
    /// Against the proposal.
    No,
    /// A candidate.
    Candidate(Did),
    /// Anything else.
    Other(String),
}

impl Choice {
    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            Choice::Yes => "yes",
            Choice::No => "no",
            Choice::Candidate(d) => d.as_str(),
            Choice::Other(s) => s,
        }
    }

    /// Reads a wire string.
    pub fn parse(s: &str) -> Choice {
        match s {
            "yes" => Choice::Yes,
            "no" => Choice::No,
            _ => Did::parse(s).map_or_else(|_| Choice::Other(s.to_owned()), Choice::Candidate),
        }
    }
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Choice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Choice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Choice::parse(&String::deserialize(d)?))
    }
}

/// An amount of money (`coop.guild.defs#money`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    /// In minor units.
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: String,
}

// ---------------------------------------------------------------------------------------
// Licence templates (`coop.guild.licence.template`).

/// A licence template: the terms a charter offers and an agreement fixes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Template {
    /// The template id (`coop.guild.defs#templateId`).
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its version.
    pub version: i64,
    /// The uses granted (`coop.guild.defs#useKind`).
    pub uses: Vec<String>,
    /// Who may use it (`coop.guild.defs#userClass`).
    pub user_classes: Vec<String>,
    /// Where (ISO 3166-1 alpha-2 codes); absent: worldwide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub territories: Option<Vec<String>>,
    /// What flows down to derived data and models.
    pub flow_down: FlowDown,
    /// Attribution terms.
    pub attribution: Attribution,
    /// What the builder pays.
    pub compensation: Compensation,
    /// The term, in days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term_days: Option<i64>,
    /// Notice before termination, in days.
    pub notice_days: i64,
    /// What happens to the data and models at termination.
    pub on_termination: String,
    /// What the builder reports.
    pub reporting: Reporting,
    /// Whether bundles carry canary records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<bool>,
    /// Only records of these collections (an agreement's scope); absent: every record the
    /// members' consent covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collections: Option<Vec<Nsid>>,
}

/// `coop.guild.licence.template#flowDown`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowDown {
    /// Whether synthetic data made from the records carries the terms.
    pub synthetic_data: bool,
    /// Whether downstream models carry the terms.
    pub downstream_models: bool,
}

/// `coop.guild.licence.template#attribution`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribution {
    /// Whether attribution is required.
    pub required: bool,
    /// Where it is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form: Option<String>,
    /// Its text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// `coop.guild.licence.template#reporting`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reporting {
    /// Whether the builder reports.
    pub required: bool,
    /// How often, in days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_days: Option<i64>,
    /// What the reports contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contents: Option<Vec<String>>,
}

/// A template's compensation (an open union: a later version may add a kind, kept as
/// [`Compensation::Other`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Compensation {
    /// `#fixedFee`.
    FixedFee {
        /// The fee.
        fee: Money,
        /// `once`, `monthly`, `yearly`.
        period: String,
    },
    /// `#perQuery`.
    PerQuery {
        /// The fee per thousand queries.
        fee_per_thousand: Money,
    },
    /// `#revenueShare`.
    RevenueShare {
        /// The share, in basis points.
        share: u32,
        /// `gross-revenue` or `net-revenue`.
        base: String,
        /// The minimum paid.
        minimum: Option<Money>,
    },
    /// `#noFee`.
    NoFee {
        /// Why.
        reason: Option<String>,
    },
    /// A kind this version does not know, as received.
    Other(BTreeMap<String, Ipld>),
}

#[derive(Serialize)]
#[serde(tag = "$type")]
enum CompensationWire {
    #[serde(rename = "coop.guild.licence.template#fixedFee")]
    FixedFee { fee: Money, period: String },
    #[serde(rename = "coop.guild.licence.template#perQuery")]
    PerQuery {
        #[serde(rename = "feePerThousand")]
        fee_per_thousand: Money,
    },
    #[serde(rename = "coop.guild.licence.template#revenueShare")]
    RevenueShare {
        share: u32,
        base: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minimum: Option<Money>,
    },
    #[serde(rename = "coop.guild.licence.template#noFee")]
    NoFee {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

impl Serialize for Compensation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let wire = match self.clone() {
            Compensation::FixedFee { fee, period } => CompensationWire::FixedFee { fee, period },
            Compensation::PerQuery { fee_per_thousand } => {
                CompensationWire::PerQuery { fee_per_thousand }
            }
            Compensation::RevenueShare {
                share,
                base,
                minimum,
            } => CompensationWire::RevenueShare {
                share,
                base,
                minimum,
            },
            Compensation::NoFee { reason } => CompensationWire::NoFee { reason },
            Compensation::Other(m) => return m.serialize(s),
        };
        wire.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Compensation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct FixedFee {
            fee: Money,
            period: String,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct PerQuery {
            fee_per_thousand: Money,
        }
        #[derive(Deserialize)]
        struct RevenueShare {
            share: u32,
            base: String,
            #[serde(default)]
            minimum: Option<Money>,
        }
        #[derive(Deserialize)]
        struct NoFee {
            #[serde(default)]
            reason: Option<String>,
        }
        fn read<T: DeserializeOwned, E: de::Error>(map: BTreeMap<String, Ipld>) -> Result<T, E> {
            // Plain structs (not an internally tagged enum, whose buffering cannot hold the
            // data model's integers).
            ipld_core::serde::from_ipld(Ipld::Map(map)).map_err(E::custom)
        }
        let map = BTreeMap::<String, Ipld>::deserialize(d)?;
        let kind = match map.get("$type") {
            Some(Ipld::String(t)) => t.strip_prefix("coop.guild.licence.template#"),
            _ => None,
        };
        Ok(match kind {
            Some("fixedFee") => {
                let w: FixedFee = read(map)?;
                Compensation::FixedFee {
                    fee: w.fee,
                    period: w.period,
                }
            }
            Some("perQuery") => {
                let w: PerQuery = read(map)?;
                Compensation::PerQuery {
                    fee_per_thousand: w.fee_per_thousand,
                }
            }
            Some("revenueShare") => {
                let w: RevenueShare = read(map)?;
                Compensation::RevenueShare {
                    share: w.share,
                    base: w.base,
                    minimum: w.minimum,
                }
            }
            Some("noFee") => {
                let w: NoFee = read(map)?;
                Compensation::NoFee { reason: w.reason }
            }
            _ => Compensation::Other(map),
        })
    }
}

// ---------------------------------------------------------------------------------------
// The charter and its amendments.

/// `coop.guild.collective.defs#admission`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Admission {
    /// Who may ask to join.
    pub policy: Open<AdmissionPolicy>,
    /// Who admits a candidate who asked.
    pub approval: Open<ApprovalMode>,
    /// How long invites stay valid when they carry no `expiresAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite_ttl_days: Option<i64>,
}

/// `coop.guild.collective.defs#stewardship`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stewardship {
    /// Steward seats.
    pub seats: i64,
    /// A steward's term, in days.
    pub term_days: i64,
    /// The voting method of steward elections.
    pub election_method: Open<VotingMethod>,
    /// Who tells elections (`stewards` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tellers: Option<Open<TellerRule>>,
}

/// `coop.guild.collective.defs#quorum`, in basis points.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quorum {
    /// The share of yes votes an amendment needs.
    pub amendment: u32,
    /// The share of yes votes a removal needs; absent: stewards remove directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removal: Option<u32>,
    /// The turnout a vote needs, of its electorate.
    pub turnout: u32,
    /// Steward countersignatures an agreement or a bundle needs.
    pub countersignatures: u32,
}

/// `coop.guild.collective.defs#canaryPolicy`: per-licensee canary records in every bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryPolicy {
    /// Canary records per bundle (0: none).
    pub per_bundle: u32,
}

/// `coop.guild.collective.defs#payoutPolicy`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayoutPolicy {
    /// `monthly`, `quarterly`, `per-agreement`.
    pub period: String,
    /// `equal`, `knn-shapley`, `leave-one-out`, `group-shapley`.
    pub method: String,
    /// The stewards' share, in basis points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steward_share: Option<u32>,
    /// The reserve's share, in basis points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserve_share: Option<u32>,
}

/// `coop.guild.collective.charter`: the genesis op.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CharterBody {
    /// The collective's name.
    pub name: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// How people join.
    pub admission: Admission,
    /// The steward seats and elections.
    pub stewardship: Stewardship,
    /// The quorum rules.
    pub quorum: Quorum,
    /// The record types members may contribute.
    pub accepted_lexicons: Vec<Nsid>,
    /// The licence templates offered.
    pub licence_templates: Vec<Template>,
    /// How revenue is split.
    pub payout_policy: PayoutPolicy,
    /// Whether agreements' prices stay off the public agreement list (absent: public).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_prices: Option<bool>,
    /// Per-licensee canary records in every bundle (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canaries: Option<CanaryPolicy>,
}

impl CharterBody {
    /// How many per-licensee canary records each bundle carries (0: none).
    pub fn canaries_per_bundle(&self) -> u32 {
        self.canaries.as_ref().map_or(0, |c| c.per_bundle)
    }
}

/// `coop.guild.collective.amendment#changes`: the charter fields an amendment replaces.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CharterChanges {
    /// A new name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A new purpose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// New admission rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admission: Option<Admission>,
    /// New stewardship rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stewardship: Option<Stewardship>,
    /// New quorum rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<Quorum>,
    /// New accepted lexicons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_lexicons: Option<Vec<Nsid>>,
    /// New licence templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licence_templates: Option<Vec<Template>>,
    /// A new payout policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payout_policy: Option<PayoutPolicy>,
    /// Whether prices become private (true) or public (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_prices: Option<bool>,
    /// A new canary policy (`perBundle: 0` turns canaries off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canaries: Option<CanaryPolicy>,
}

impl CharterChanges {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == CharterChanges::default()
    }

    /// `charter` with these changes applied.
    pub fn apply_to(&self, charter: &CharterBody) -> CharterBody {
        let mut c = charter.clone();
        let s = self.clone();
        if let Some(v) = s.name {
            c.name = v;
        }
        if let Some(v) = s.purpose {
            c.purpose = Some(v);
        }
        if let Some(v) = s.admission {
            c.admission = v;
        }
        if let Some(v) = s.stewardship {
            c.stewardship = v;
        }
        if let Some(v) = s.quorum {
            c.quorum = v;
        }
        if let Some(v) = s.accepted_lexicons {
            c.accepted_lexicons = v;
        }
        if let Some(v) = s.licence_templates {
            c.licence_templates = v;
        }
        if let Some(v) = s.payout_policy {
            c.payout_policy = v;
        }
        if let Some(v) = s.private_prices {
            c.private_prices = Some(v);
        }
        if let Some(v) = s.canaries {
            c.canaries = Some(v);
        }
        c
    }
}

/// `coop.guild.collective.amendment`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AmendmentBody {
    /// The changes proposed.
    pub changes: CharterChanges,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Membership.

/// `coop.guild.member.invite`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InviteBody {
    /// SHA-256 of the one-time secret.
    pub secret_hash: ByteBuf,
    /// The person invited, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitee: Option<Did>,
    /// After this the invite admits nobody.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Datetime>,
    /// A note to the other stewards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `coop.guild.member.join`: with an invite and its secret, or a request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinBody {
    /// The invite op.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite: Option<CidRef>,
    /// The invite's one-time secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ByteBuf>,
    /// A word from the candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
}

/// `coop.guild.member.admit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmitBody {
    /// The candidate admitted.
    pub member: Did,
    /// Their join request.
    pub join: CidRef,
    /// The election that admitted them, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub election: Option<CidRef>,
}

/// `coop.guild.member.remove`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveBody {
    /// The member removed.
    pub member: Did,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The election that decided it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub election: Option<CidRef>,
}

/// `coop.guild.member.leave`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaveBody {
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Consent.

/// The records a consent covers (`coop.guild.consent.grant#repo|#collections|#records`, a
/// closed union).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "$type")]
pub enum Scope {
    /// The member's whole repository.
    #[serde(rename = "coop.guild.consent.grant#repo")]
    Repo {},
    /// Some collections.
    #[serde(rename = "coop.guild.consent.grant#collections")]
    Collections {
        /// The collections.
        collections: Vec<Nsid>,
    },
    /// Some records.
    #[serde(rename = "coop.guild.consent.grant#records")]
    Records {
        /// The records.
        records: Vec<AtUri>,
    },
}

/// `coop.guild.consent.grant` and `coop.guild.consent.revoke`: a write to the member's
/// (member, template) consent registers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsentBody {
    /// The templates. Read once per process: every consent op names one of a collective's
    /// few templates, and the state keys its registers by the same text.
    #[serde(deserialize_with = "shared_strs")]
    pub templates: Vec<Arc<str>>,
    /// The register revision (above the member's earlier writes).
    pub rev: u64,
    /// The records covered (required in a grant; a revoke without scope covers everything).
    /// Shared with the register the op writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Arc<Scope>>,
    /// From when.
    pub effective_from: Datetime,
    /// The grant revoked (revoke only; boxed: a CID is 96 bytes, and most consent ops are
    /// grants).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<Box<CidRef>>,
    /// A note (grant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Why (revoke).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Strings shared with the same strings read earlier in this process (up to
/// [`SHARED_STRS`] of them), for the few distinct values many ops repeat.
fn shared_strs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Arc<str>>, D::Error> {
    struct Shared(Arc<str>);
    impl<'de> Deserialize<'de> for Shared {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Shared, D::Error> {
            struct Text;
            impl serde::de::Visitor<'_> for Text {
                type Value = Shared;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a string")
                }
                fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Shared, E> {
                    Ok(Shared(shared_str(s)))
                }
            }
            d.deserialize_str(Text)
        }
    }
    let shared: Vec<Shared> = Deserialize::deserialize(d)?;
    Ok(shared.into_iter().map(|s| s.0).collect())
}

/// How many distinct strings [`shared_str`] remembers.
const SHARED_STRS: usize = 4096;

/// The longest string [`shared_str`] shares (a template id is a short name); a longer one is
/// copied each time, so the table holds at most ~1 MB whatever ops come in.
const SHARED_STR_LEN: usize = 128;

/// `s`, sharing the text of an equal string read before.
pub(crate) fn shared_str(s: &str) -> Arc<str> {
    static SEEN: crate::shared::Table<Arc<str>> = crate::shared::Table::new(SHARED_STRS);
    if s.len() > SHARED_STR_LEN {
        return Arc::from(s);
    }
    SEEN.get_or_insert(s, |s| Arc::from(s))
}

// ---------------------------------------------------------------------------------------
// Elections.

/// `coop.guild.election.open`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenBody {
    /// What is decided.
    pub kind: Open<ElectionKind>,
    /// The voting method.
    pub method: Open<VotingMethod>,
    /// Seats to fill (seat elections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seats: Option<i64>,
    /// The candidates (seat elections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates: Option<Vec<Did>>,
    /// The op put to the vote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal: Option<CidRef>,
    /// The CID of the membership at this op.
    pub electorate: CidRef,
    /// The tellers.
    pub tellers: Vec<Did>,
    /// The earliest close.
    pub closes_after: Datetime,
}

/// `coop.guild.election.ballot`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BallotBody {
    /// The election.
    pub election: CidRef,
    /// The voter's revision (a higher one replaces their earlier ballots).
    pub rev: u64,
    /// The choices approved.
    pub approvals: Vec<Choice>,
}

/// One choice's count (`coop.guild.election.close#count`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    /// The choice.
    pub choice: Choice,
    /// Its approvals among the counted ballots.
    pub approvals: u64,
}

/// `coop.guild.election.close#result`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealResult {
    /// The approvals each choice received.
    pub tally: Vec<Count>,
    /// The elected, in rank order (seat elections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elected: Option<Vec<Did>>,
    /// The outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Open<Outcome>>,
}

/// `coop.guild.election.close`: a teller's seal. It names the ballots it counted by the CID
/// of their list ([`crate::ballot_set_cid`]), as an election open names its electorate, so
/// that an election of any size seals with a small op: every node computes the set from the
/// seal's causal past and checks it against the CID.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealBody {
    /// The election.
    pub election: CidRef,
    /// The CID of the counted ballots' list.
    pub ballot_set: CidRef,
    /// How many ballots were counted.
    pub ballot_count: u64,
    /// The result.
    pub result: SealResult,
}

// ---------------------------------------------------------------------------------------
// Agreements.

/// `coop.guild.agreement.offer`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OfferBody {
    /// The builder offered the licence.
    pub builder: Did,
    /// The charter template the terms come from.
    pub template: String,
    /// The full terms.
    pub terms: Template,
    /// After this the offer cannot be accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Datetime>,
    /// A note to the builder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `coop.guild.agreement.accept`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptBody {
    /// The offer.
    pub offer: CidRef,
    /// How to reach the builder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    /// The builder's labelled evaluation set, by which the stewards estimate each member's
    /// contribution to every bundle of the agreement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<Evaluation>,
}

/// `coop.guild.agreement.accept#evaluation`: the builder's target task, as labelled texts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    /// K of the KNN classifier whose utility values the records.
    pub k: u64,
    /// `cosine` (the default) or `l2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// The record field a bundle record's label is read from (default `tags`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_field: Option<String>,
    /// The labelled evaluation points.
    pub points: Vec<LabelledText>,
    /// Open data the builder already has (the commons): points always present, over which
    /// the members' contributions are also estimated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baseline: Vec<LabelledText>,
}

/// `coop.guild.agreement.accept#labelledText`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelledText {
    /// The label.
    pub label: String,
    /// The text.
    pub text: String,
}

/// `coop.guild.bundle.receipt`: exactly one of `bundle` and `revoke`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptBody {
    /// The agreement the delivery was under.
    pub agreement: CidRef,
    /// The manifest of the bundle downloaded and verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<CidRef>,
    /// The revoke op whose notice was received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke: Option<CidRef>,
}

/// `coop.guild.agreement.countersign`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountersignBody {
    /// The offer.
    pub offer: CidRef,
    /// The builder's accept.
    pub accept: CidRef,
}

// ---------------------------------------------------------------------------------------
// Bundles.

/// `coop.guild.bundle.defs#replicaHead`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaHead {
    /// The member.
    pub did: Did,
    /// The repo revision.
    pub rev: Tid,
    /// The commit.
    pub commit: CidRef,
}

/// `coop.guild.bundle.defs#cut`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cut {
    /// The governance heads (the proposal's `prev`).
    pub heads: Vec<CidRef>,
    /// The replica heads assembled from.
    pub replicas: Vec<ReplicaHead>,
}

/// `coop.guild.bundle.proposal`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalBody {
    /// The agreement (its offer op).
    pub agreement: CidRef,
    /// The cut.
    pub cut: Cut,
    /// Training or evaluation.
    pub kind: Open<BundleKind>,
    /// A note to the other stewards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `coop.guild.bundle.approval`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalBody {
    /// The proposal.
    pub proposal: CidRef,
    /// The manifest approved.
    pub manifest: CidRef,
}

// ---------------------------------------------------------------------------------------
// Payouts.

/// `coop.guild.payout.statement#period`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    /// Its id (such as `2025-Q3`).
    pub id: String,
    /// Start (inclusive).
    pub start: Datetime,
    /// End (exclusive).
    pub end: Datetime,
}

/// `coop.guild.payout.statement#line`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayoutLine {
    /// The member paid.
    pub member: Did,
    /// Their integer weight.
    pub weight: u64,
    /// Their member-days in the period.
    pub member_days: u64,
    /// The amount paid, in minor units.
    pub amount: u64,
}

/// `coop.guild.payout.statement`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementBody {
    /// The agreement paid for, if per agreement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<CidRef>,
    /// The period.
    pub period: Period,
    /// The total distributed.
    pub total: Money,
    /// The rounding method.
    pub method: String,
    /// What the weights are (`estimates:group-shapley`, `records`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis: Option<String>,
    /// The sealed bundles (manifest CIDs) whose estimates or credits gave the weights.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bundles: Vec<CidRef>,
    /// One line per member paid.
    pub lines: Vec<PayoutLine>,
}

// ---------------------------------------------------------------------------------------
// The body of any op.

/// The typed body of a governance op, by kind. Every body but a leave's is boxed, so that
/// the enum (held by every op of a log in memory) is 32 bytes rather than the largest
/// body's ~480: a consent grant, half of a large collective's ops, is not padded to an
/// offer, nor to a ballot (128 bytes: its election's 96-byte CID), which saved ~58 MB in a
/// 1 M-op log.
#[derive(Clone, Debug, PartialEq)]
pub enum OpBody {
    /// `coop.guild.collective.charter`.
    Charter(Box<CharterBody>),
    /// `coop.guild.collective.amendment`.
    Amendment(Box<AmendmentBody>),
    /// `coop.guild.member.invite`.
    Invite(Box<InviteBody>),
    /// `coop.guild.member.join`.
    Join(Box<JoinBody>),
    /// `coop.guild.member.admit`.
    Admit(Box<AdmitBody>),
    /// `coop.guild.member.remove`.
    Remove(Box<RemoveBody>),
    /// `coop.guild.member.leave`.
    Leave(LeaveBody),
    /// `coop.guild.consent.grant`.
    ConsentGrant(Box<ConsentBody>),
    /// `coop.guild.consent.revoke`.
    ConsentRevoke(Box<ConsentBody>),
    /// `coop.guild.election.open`.
    ElectionOpen(Box<OpenBody>),
    /// `coop.guild.election.ballot`.
    Ballot(Box<BallotBody>),
    /// `coop.guild.election.close`.
    Seal(Box<SealBody>),
    /// `coop.guild.agreement.offer`.
    AgreementOffer(Box<OfferBody>),
    /// `coop.guild.agreement.accept`.
    AgreementAccept(Box<AcceptBody>),
    /// `coop.guild.agreement.countersign`.
    AgreementCountersign(Box<CountersignBody>),
    /// `coop.guild.bundle.proposal`.
    BundleProposal(Box<ProposalBody>),
    /// `coop.guild.bundle.approval`.
    BundleApproval(Box<ApprovalBody>),
    /// `coop.guild.payout.statement`.
    PayoutStatement(Box<StatementBody>),
    /// `coop.guild.bundle.receipt`.
    BundleReceipt(Box<ReceiptBody>),
}

/// The envelope's own fields, which no body has.
pub(crate) const ENVELOPE: [&str; 6] =
    ["$type", "collective", "author", "prev", "createdAt", "sig"];

impl OpBody {
    /// The op kind.
    pub fn kind(&self) -> OpKind {
        match self {
            OpBody::Charter(_) => OpKind::Charter,
            OpBody::Amendment(_) => OpKind::Amendment,
            OpBody::Invite(_) => OpKind::Invite,
            OpBody::Join(_) => OpKind::Join,
            OpBody::Admit(_) => OpKind::Admit,
            OpBody::Remove(_) => OpKind::Remove,
            OpBody::Leave(_) => OpKind::Leave,
            OpBody::ConsentGrant(_) => OpKind::ConsentGrant,
            OpBody::ConsentRevoke(_) => OpKind::ConsentRevoke,
            OpBody::ElectionOpen(_) => OpKind::ElectionOpen,
            OpBody::Ballot(_) => OpKind::Ballot,
            OpBody::Seal(_) => OpKind::Seal,
            OpBody::AgreementOffer(_) => OpKind::AgreementOffer,
            OpBody::AgreementAccept(_) => OpKind::AgreementAccept,
            OpBody::AgreementCountersign(_) => OpKind::AgreementCountersign,
            OpBody::BundleProposal(_) => OpKind::BundleProposal,
            OpBody::BundleApproval(_) => OpKind::BundleApproval,
            OpBody::PayoutStatement(_) => OpKind::PayoutStatement,
            OpBody::BundleReceipt(_) => OpKind::BundleReceipt,
        }
    }

    /// Reads the body of an op of `kind` from the op's DAG-CBOR bytes (envelope fields are
    /// ignored). Run after the strict decode and the lexicon check: a failure here is a rule
    /// the lexicon cannot express (a string that is not a CID, say), reported as
    /// [`OpError::Body`].
    pub fn decode(kind: OpKind, bytes: &[u8]) -> Result<OpBody, OpError> {
        fn de<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, OpError> {
            serde_ipld_dagcbor::from_slice(bytes).map_err(|e| OpError::Body(e.to_string()))
        }
        Ok(match kind {
            OpKind::Charter => OpBody::Charter(de(bytes)?),
            OpKind::Amendment => OpBody::Amendment(de(bytes)?),
            OpKind::Invite => OpBody::Invite(de(bytes)?),
            OpKind::Join => OpBody::Join(de(bytes)?),
            OpKind::Admit => OpBody::Admit(de(bytes)?),
            OpKind::Remove => OpBody::Remove(de(bytes)?),
            OpKind::Leave => OpBody::Leave(de(bytes)?),
            OpKind::ConsentGrant => OpBody::ConsentGrant(de(bytes)?),
            OpKind::ConsentRevoke => OpBody::ConsentRevoke(de(bytes)?),
            OpKind::ElectionOpen => OpBody::ElectionOpen(de(bytes)?),
            OpKind::Ballot => OpBody::Ballot(de(bytes)?),
            OpKind::Seal => OpBody::Seal(de(bytes)?),
            OpKind::AgreementOffer => OpBody::AgreementOffer(de(bytes)?),
            OpKind::AgreementAccept => OpBody::AgreementAccept(de(bytes)?),
            OpKind::AgreementCountersign => OpBody::AgreementCountersign(de(bytes)?),
            OpKind::BundleProposal => OpBody::BundleProposal(de(bytes)?),
            OpKind::BundleApproval => OpBody::BundleApproval(de(bytes)?),
            OpKind::PayoutStatement => OpBody::PayoutStatement(de(bytes)?),
            OpKind::BundleReceipt => OpBody::BundleReceipt(de(bytes)?),
        })
    }

    /// Reads the body of an op of `kind` from a map of fields (envelope fields are ignored):
    /// what [`OpBody::decode`] gives for the map's encoding.
    pub fn from_fields(kind: OpKind, fields: &BTreeMap<String, Ipld>) -> Result<OpBody, OpError> {
        let bytes = guild_core::data::encode(&Ipld::Map(fields.clone()))?;
        OpBody::decode(kind, &bytes)
    }

    /// The body as the op's fields (without the envelope).
    pub fn to_fields(&self) -> Result<BTreeMap<String, Ipld>, OpError> {
        let v = match self {
            OpBody::Charter(b) => ipld_core::serde::to_ipld(b),
            OpBody::Amendment(b) => ipld_core::serde::to_ipld(b),
            OpBody::Invite(b) => ipld_core::serde::to_ipld(b),
            OpBody::Join(b) => ipld_core::serde::to_ipld(b),
            OpBody::Admit(b) => ipld_core::serde::to_ipld(b),
            OpBody::Remove(b) => ipld_core::serde::to_ipld(b),
            OpBody::Leave(b) => ipld_core::serde::to_ipld(b),
            OpBody::ConsentGrant(b) | OpBody::ConsentRevoke(b) => ipld_core::serde::to_ipld(b),
            OpBody::ElectionOpen(b) => ipld_core::serde::to_ipld(b),
            OpBody::Ballot(b) => ipld_core::serde::to_ipld(b),
            OpBody::Seal(b) => ipld_core::serde::to_ipld(b),
            OpBody::AgreementOffer(b) => ipld_core::serde::to_ipld(b),
            OpBody::AgreementAccept(b) => ipld_core::serde::to_ipld(b),
            OpBody::AgreementCountersign(b) => ipld_core::serde::to_ipld(b),
            OpBody::BundleProposal(b) => ipld_core::serde::to_ipld(b),
            OpBody::BundleApproval(b) => ipld_core::serde::to_ipld(b),
            OpBody::PayoutStatement(b) => ipld_core::serde::to_ipld(b),
            OpBody::BundleReceipt(b) => ipld_core::serde::to_ipld(b),
        };
        match v.map_err(|e| OpError::Body(e.to_string()))? {
            Ipld::Map(m) => Ok(m),
            _ => Err(OpError::NotAMap),
        }
    }
}
