//! The collective's state and the rules that authorise and apply one op to it.
//!
//! Two checks guard every op:
//! - [`State::check_past`], when the op enters the log, against the state of the op's own
//!   causal past. It also checks the op's *claims about that past* (an election's frozen
//!   electorate and tellers, a seal's ballot set and result, a bundle's cut) and returns the
//!   facts the fold needs later ([`Meta`]).
//! - [`State::authorize`], during the fold, against the running state (which may include ops
//!   concurrent with this one, ordered before it). An op that fails here is ignored.
//!
//! Everything the fold decides is a function of the set of ops and their fixed order, so
//! every node with the same ops computes the same state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use guild_core::syntax::Datetime;
use guild_core::{Cid, Ipld, cids, data};
use imbl::{OrdMap, OrdSet};

use crate::op::{OpKind, SignedOp};

/// Microseconds in a day.
const DAY_MICROS: i64 = 86_400_000_000;

/// Basis points in one whole.
const WHOLE_BP: u64 = 10_000;

/// How far apart two honest nodes' clocks may be: 5 minutes. An op dated further ahead of a
/// receiving node's clock waits there until it is not (the driver's rule); a join submitted
/// by a candidate must be dated within this of the admitting member's clock
/// ([`State::may_accept_join`]).
pub const MAX_CLOCK_SKEW_MICROS: i64 = 5 * 60 * 1_000_000;

/// A member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A steward: invites, admits, removes, offers and countersigns agreements, proposes
    /// and approves bundles, tells elections.
    Steward,
    /// A member.
    Member,
}

/// A current member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member's role.
    pub role: Role,
    /// The op that made them a member (the charter, their join, the admit, or the seal that
    /// certified their admission): their join cut.
    pub since: Cid,
}

/// Why someone is no longer a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Departure {
    /// They left (the leave op).
    Left(Cid),
    /// A steward removed them (the remove op), or a vote did (the certifying seal).
    Removed(Cid),
}

/// The charter in force: the genesis charter with every adopted amendment applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Charter {
    /// The collective's name.
    pub name: String,
    /// Who may ask to join (`invite-only`, `invite-or-request`).
    pub admission_policy: String,
    /// Who admits a candidate who asked (`steward`, `vote`).
    pub admission_approval: String,
    /// How long invites stay valid when they carry no `expiresAt`.
    pub invite_ttl_days: Option<i64>,
    /// Steward seats.
    pub seats: u32,
    /// A steward's term, in days (informative: terms end by election, not by clock).
    pub term_days: u32,
    /// Who tells elections (`stewards`: the stewards at the election's open op).
    pub tellers: String,
    /// The share of yes votes an amendment needs, in basis points of the votes cast.
    pub amendment_bp: u32,
    /// The share of yes votes a removal needs; `None` means stewards remove directly.
    pub removal_bp: Option<u32>,
    /// The turnout a vote needs, in basis points of its electorate.
    pub turnout_bp: u32,
    /// How many steward countersignatures an agreement or a bundle needs (capped by the
    /// number of stewards).
    pub countersignatures: u32,
    /// The record types members may contribute.
    pub accepted_lexicons: BTreeSet<String>,
    /// The licence templates offered, by id.
    pub templates: BTreeMap<String, Ipld>,
    /// The payout period and method.
    pub payout: (String, String),
    /// The charter's fields as a map (the genesis op's body without its envelope, with the
    /// adopted amendments' changes applied).
    pub fields: BTreeMap<String, Ipld>,
    /// The adopted amendments, in the order they were adopted.
    pub amendments: Vec<Cid>,
}

/// An open invite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// The steward who wrote it.
    pub by: String,
    /// SHA-256 of the one-time secret.
    pub secret_hash: Vec<u8>,
    /// After this instant (by the join's `createdAt`) it no longer admits anyone.
    pub expires_at: Option<Datetime>,
    /// The person invited, if named.
    pub invitee: Option<String>,
}

/// One (member, template) consent register: a last-writer-wins register written only by
/// the member, ordered by the member's `rev`, a revoke winning a tie.
#[derive(Debug, Clone, PartialEq)]
pub struct Consent {
    /// Whether consent is given (a grant) or withdrawn (a revoke).
    pub granted: bool,
    /// The winning write's revision.
    pub rev: u64,
    /// The scope of the winning write (`None` for a revoke without scope: everything).
    pub scope: Option<Arc<Ipld>>,
    /// The winning write's `effectiveFrom`.
    pub effective_from: Option<Datetime>,
    /// The op that wrote the register.
    pub op: Cid,
}

/// What an election decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ElectionKind {
    /// The steward seats.
    Stewards,
    /// A charter amendment (the proposal is the amendment op).
    Amendment,
    /// An admission (the proposal is the candidate's join request).
    Admission,
    /// A removal (the proposal is the remove op).
    Removal,
}

impl ElectionKind {
    fn parse(s: &str) -> Option<ElectionKind> {
        Some(match s {
            "stewards" => ElectionKind::Stewards,
            "amendment" => ElectionKind::Amendment,
            "admission" => ElectionKind::Admission,
            "removal" => ElectionKind::Removal,
            _ => return None,
        })
    }
}

/// An election's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// Seats filled, or the proposal adopted.
    Adopted,
    /// The proposal did not reach its threshold.
    Rejected,
    /// Too few voted (or, for seats, nobody was approved): nothing changes.
    NoQuorum,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Adopted => "adopted",
            Outcome::Rejected => "rejected",
            Outcome::NoQuorum => "no-quorum",
        }
    }
}

/// The result of counting a set of ballots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Each choice (a candidate DID, or `yes` / `no`) with its approvals, by choice.
    pub counts: Vec<(String, u64)>,
    /// The elected candidates in rank order (seat elections).
    pub elected: Vec<String>,
    /// The outcome.
    pub outcome: Outcome,
}

impl Tally {
    /// The `result` map a seal carries (`coop.guild.election.close#result`).
    pub fn to_ipld(&self) -> Ipld {
        let tally = self
            .counts
            .iter()
            .map(|(choice, n)| {
                Ipld::Map(BTreeMap::from([
                    ("choice".to_owned(), Ipld::String(choice.clone())),
                    ("approvals".to_owned(), Ipld::Integer(i128::from(*n))),
                ]))
            })
            .collect();
        Ipld::Map(BTreeMap::from([
            ("tally".to_owned(), Ipld::List(tally)),
            (
                "elected".to_owned(),
                Ipld::List(self.elected.iter().cloned().map(Ipld::String).collect()),
            ),
            (
                "outcome".to_owned(),
                Ipld::String(self.outcome.as_str().to_owned()),
            ),
        ]))
    }
}

/// One voter's ballots at their highest revision.
#[derive(Debug, Clone, PartialEq)]
pub struct VoterBallots {
    /// The highest revision seen.
    pub rev: u64,
    /// The ballots at that revision (op id → approvals). Two or more void each other.
    pub ballots: BTreeMap<Cid, Vec<String>>,
}

/// A certified result.
#[derive(Debug, Clone, PartialEq)]
pub struct Certified {
    /// The ballots counted.
    pub ballots: BTreeSet<Cid>,
    /// The result.
    pub tally: Tally,
    /// The seals that certified it (a majority of the tellers).
    pub seals: Vec<Cid>,
}

/// An election or a vote on a proposal.
#[derive(Debug, Clone, PartialEq)]
pub struct Election {
    /// What it decides.
    pub kind: ElectionKind,
    /// Seats to fill (seat elections).
    pub seats: u32,
    /// The candidates (seat elections).
    pub candidates: Arc<BTreeSet<String>>,
    /// The proposal voted on (amendment, admission, removal).
    pub proposal: Option<Cid>,
    /// The frozen electorate: the members in the open op's causal past.
    pub electorate: Arc<BTreeSet<String>>,
    /// The tellers.
    pub tellers: Arc<BTreeSet<String>>,
    /// The earliest close time, by the tellers' clocks.
    pub closes_after: Datetime,
    /// Ballots by voter.
    pub ballots: OrdMap<String, VoterBallots>,
    /// Each teller's seal: (seal op, ballot set, result).
    pub seals: OrdMap<String, (Cid, Arc<BTreeSet<Cid>>, Ipld)>,
    /// Tellers who sealed twice with different contents: their seals count for nothing.
    pub equivocating_tellers: OrdSet<String>,
    /// The certified result, once a majority of tellers sealed the same ballots and result.
    pub certified: Option<Arc<Certified>>,
}

impl Election {
    /// The ballots that count: each voter's single ballot at their highest revision (two
    /// ballots at the same highest revision void each other).
    pub fn counted(&self) -> BTreeSet<Cid> {
        self.ballots
            .values()
            .filter(|v| v.ballots.len() == 1)
            .filter_map(|v| v.ballots.keys().next().copied())
            .collect()
    }

    fn approvals_of(&self, ballot: &Cid) -> Option<&[String]> {
        self.ballots
            .values()
            .find_map(|v| v.ballots.get(ballot).map(Vec::as_slice))
    }

    /// Counts a ballot set. `id` is the election's op id (ties between candidates break by
    /// SHA-256 of the id's bytes and the candidate's DID, smallest first); `charter` gives
    /// the thresholds.
    pub fn tally(&self, id: &Cid, counted: &BTreeSet<Cid>, charter: &Charter) -> Tally {
        let voters = counted.len() as u64;
        let electorate = self.electorate.len() as u64;
        let turnout_ok = electorate > 0
            && voters * WHOLE_BP >= u64::from(charter.turnout_bp) * electorate
            && voters > 0;
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        match self.kind {
            ElectionKind::Stewards => {
                for c in self.candidates.iter() {
                    counts.insert(c.clone(), 0);
                }
            }
            _ => {
                counts.insert("no".into(), 0);
                counts.insert("yes".into(), 0);
            }
        }
        for b in counted {
            for choice in self.approvals_of(b).unwrap_or_default() {
                if let Some(n) = counts.get_mut(choice) {
                    *n += 1;
                }
            }
        }
        let (elected, outcome) = match self.kind {
            ElectionKind::Stewards => {
                let mut ranked: Vec<(&String, u64)> = counts
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(c, n)| (c, *n))
                    .collect();
                ranked.sort_by(|(a, na), (b, nb)| {
                    nb.cmp(na)
                        .then_with(|| tie_key(id, a).cmp(&tie_key(id, b)))
                        .then_with(|| a.cmp(b))
                });
                let elected: Vec<String> = ranked
                    .into_iter()
                    .take(self.seats as usize)
                    .map(|(c, _)| c.clone())
                    .collect();
                if turnout_ok && !elected.is_empty() {
                    (elected, Outcome::Adopted)
                } else {
                    (Vec::new(), Outcome::NoQuorum)
                }
            }
            kind => {
                let yes = counts.get("yes").copied().unwrap_or(0);
                let no = counts.get("no").copied().unwrap_or(0);
                let threshold = match kind {
                    ElectionKind::Amendment => u64::from(charter.amendment_bp),
                    ElectionKind::Removal => u64::from(charter.removal_bp.unwrap_or(5001)),
                    _ => 5001,
                };
                let outcome = if !turnout_ok || yes + no == 0 {
                    Outcome::NoQuorum
                } else if yes * WHOLE_BP >= threshold * (yes + no) {
                    Outcome::Adopted
                } else {
                    Outcome::Rejected
                };
                (Vec::new(), outcome)
            }
        };
        Tally {
            counts: counts.into_iter().collect(),
            elected,
            outcome,
        }
    }
}

/// The tie-break key of a candidate: SHA-256 of the election id's bytes and the DID.
fn tie_key(election: &Cid, candidate: &str) -> [u8; 32] {
    let mut bytes = election.to_bytes();
    bytes.extend_from_slice(candidate.as_bytes());
    cids::sha256(&bytes)
}

/// The status of a proposal (an amendment, a removal by vote, a join request under a vote).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProposalStatus {
    /// Not decided.
    Open,
    /// Adopted by the certified election named.
    Adopted(Cid),
}

/// A proposal awaiting a vote.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    /// What it proposes.
    pub kind: ElectionKind,
    /// The member who proposed it.
    pub by: String,
    /// The removal's target, or the candidate.
    pub member: Option<String>,
    /// An amendment's changes.
    pub changes: Option<Arc<BTreeMap<String, Ipld>>>,
    /// Its status.
    pub status: ProposalStatus,
}

/// Where an agreement stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgreementStatus {
    /// Offered by a steward.
    Offered,
    /// Accepted by the builder (the accept op).
    Accepted(Cid),
    /// Countersigned by a quorum of stewards.
    InForce(Cid),
}

/// A licence agreement with one builder.
#[derive(Debug, Clone, PartialEq)]
pub struct Agreement {
    /// The builder's DID (not a member).
    pub builder: String,
    /// The template id.
    pub template: String,
    /// The terms offered.
    pub terms: Arc<Ipld>,
    /// When the offer lapses (by the accept's `createdAt`).
    pub expires_at: Option<Datetime>,
    /// The steward who offered it.
    pub offered_by: String,
    /// The stewards who countersigned.
    pub countersigned: BTreeSet<String>,
    /// Where it stands.
    pub status: AgreementStatus,
}

/// A proposed bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    /// The agreement it is for.
    pub agreement: Cid,
    /// The agreement's template.
    pub template: String,
    /// `training` or `evaluation`.
    pub kind: String,
    /// The causal cut it is assembled against (the proposal's `prev`).
    pub heads: Vec<Cid>,
    /// The replica heads named (`coop.guild.bundle.defs#replicaHead` list).
    pub replicas: Arc<Ipld>,
    /// The members whose consent covered the template at the cut, with the op that wrote it.
    pub contributors: Arc<BTreeMap<String, Cid>>,
    /// Each steward's approval: (approval op, manifest CID).
    pub approvals: BTreeMap<String, (Cid, Cid)>,
    /// Stewards who approved two different manifests: their approvals count for nothing.
    pub equivocating: BTreeSet<String>,
    /// The manifest sealed by a quorum, with the approvals that sealed it.
    pub sealed: Option<(Cid, Vec<Cid>)>,
    /// The revocation that voided the bundle: a revoke of a contributor's consent that is not
    /// in the proposal's causal past and not after the seal.
    pub voided: Option<Cid>,
}

/// A payout statement's reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutRef {
    /// The steward who published it.
    pub by: String,
    /// The agreement it pays for, if one.
    pub agreement: Option<Cid>,
    /// The period id.
    pub period: String,
    /// The total, in minor units.
    pub total: i64,
    /// The currency.
    pub currency: String,
    /// How many lines.
    pub lines: usize,
}

/// Facts about an op's causal past that the fold needs, computed once when the op enters the
/// log (they depend on the op's past alone, so every node computes the same).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Meta {
    /// An election open op's frozen electorate.
    pub electorate: Option<Arc<BTreeSet<String>>>,
    /// A bundle proposal's contributors (member → the consent op covering the template).
    pub contributors: Option<Arc<BTreeMap<String, Cid>>>,
    /// A remove op that removes at once (the charter in its past lets stewards remove),
    /// rather than proposing a removal vote.
    pub direct_removal: bool,
}

/// What the fold asks of the log.
pub trait Causal {
    /// True if op `a` is a strict ancestor of op `b`.
    fn is_ancestor(&self, a: &Cid, b: &Cid) -> bool;
    /// The [`Meta`] computed for an op when it entered the log.
    fn meta(&self, id: &Cid) -> Option<&Meta>;
}

/// The collective's state, as folded from a set of ops.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// The collective's id.
    pub collective: Cid,
    /// The charter in force, once the genesis op is applied.
    pub charter: Option<Arc<Charter>>,
    /// Current members by DID.
    pub members: OrdMap<String, Member>,
    /// Former members by DID.
    pub departed: OrdMap<String, Departure>,
    /// Open invites by op id.
    pub invites: OrdMap<Cid, Invite>,
    /// Invites that have admitted their one member.
    pub used_invites: OrdSet<Cid>,
    /// Join requests awaiting admission: join op id → candidate DID.
    pub candidates: OrdMap<Cid, String>,
    /// Consent registers by (member DID, template id).
    pub consents: OrdMap<(String, String), Consent>,
    /// Every revoke op by (member DID, template id), for the bundle rule.
    pub revocations: OrdMap<(String, String), OrdSet<Cid>>,
    /// Proposals (amendments, removals by vote, join requests under a vote) by op id.
    pub proposals: OrdMap<Cid, Proposal>,
    /// Elections by open op id.
    pub elections: OrdMap<Cid, Election>,
    /// Agreements by offer op id.
    pub agreements: OrdMap<Cid, Agreement>,
    /// Bundles by proposal op id.
    pub bundles: OrdMap<Cid, Bundle>,
    /// Payout statements by op id.
    pub payouts: OrdMap<Cid, PayoutRef>,
}

/// Why an op is not authorised (against the state of its causal past), or why it is ignored
/// when the full state is folded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// The bytes are not a valid signed op.
    #[error("invalid op: {0}")]
    Invalid(#[from] crate::op::OpError),
    /// The op belongs to another collective (or is another collective's genesis).
    #[error("op belongs to another collective")]
    WrongCollective,
    /// The op's causal past does not start at this collective's charter.
    #[error("op's causal past has no charter")]
    NoCharter,
    /// A second charter.
    #[error("the collective already has a charter")]
    SecondCharter,
    /// The author is not a member (in the op's causal past).
    #[error("author {0} is not a member")]
    UnknownAuthor(String),
    /// The op needs a steward.
    #[error("author {0} is not a steward")]
    NotSteward(String),
    /// The target is not a member.
    #[error("{0} is not a member")]
    NotMember(String),
    /// The candidate is already a member.
    #[error("{0} is already a member")]
    AlreadyMember(String),
    /// The join names an invite that does not exist (in its causal past).
    #[error("no such invite")]
    UnknownInvite,
    /// The invite has already admitted someone.
    #[error("invite already used")]
    InviteUsed,
    /// The join was written after the invite expired.
    #[error("invite expired")]
    InviteExpired,
    /// The revealed secret does not hash to the invite's `secretHash`.
    #[error("secret does not match the invite")]
    SecretMismatch,
    /// The invite names someone else.
    #[error("the invite is for someone else")]
    NotInvitee,
    /// A join without an invite where the charter accepts only invites.
    #[error("the charter admits by invite only")]
    RequestsNotAllowed,
    /// The admit names no pending join request of that member.
    #[error("no pending join request")]
    NoSuchRequest,
    /// The charter makes this a vote, not a steward's decision.
    #[error("the charter requires a vote")]
    VoteRequired,
    /// A consent op, offer or agreement names a template the charter does not offer.
    #[error("template {0:?} is not offered by the charter")]
    UnknownTemplate(String),
    /// A consent write whose `rev` is not above the register's in its causal past.
    #[error("consent rev {rev} is not above the register's {current}")]
    StaleRev {
        /// The op's rev.
        rev: u64,
        /// The register's rev in the op's past.
        current: u64,
    },
    /// An op names an op (election, proposal, offer, bundle…) that is not in its causal past
    /// or is not of the right kind.
    #[error("{0} names no such op")]
    UnknownRef(&'static str),
    /// An election op is malformed (seats, candidates, proposal, method).
    #[error("bad election: {0}")]
    BadElection(&'static str),
    /// The open op's electorate CID is not the membership of its causal past.
    #[error("electorate does not match the membership")]
    WrongElectorate,
    /// The open op's tellers are not the stewards of its causal past.
    #[error("tellers do not match the stewards")]
    WrongTellers,
    /// A ballot from someone outside the election's frozen electorate.
    #[error("{0} is not in the electorate")]
    NotInElectorate(String),
    /// A ballot whose approvals are not choices of the election.
    #[error("ballot approves {0:?}, which is not a choice")]
    BadChoice(String),
    /// A ballot whose `rev` is not above the voter's earlier ballot in its past.
    #[error("ballot rev {rev} is not above the voter's {current}")]
    StaleBallot {
        /// The ballot's rev.
        rev: u64,
        /// The voter's highest rev in the ballot's past.
        current: u64,
    },
    /// The election already has a certified result (in the op's past).
    #[error("the election is closed")]
    ElectionClosed,
    /// A seal by someone who is not a teller of the election.
    #[error("{0} is not a teller")]
    NotTeller(String),
    /// A seal written before the election's close time.
    #[error("sealed before the close time")]
    TooEarly,
    /// A ballot dated at or after the election's close time.
    #[error("the election closed at {closes_after}; a ballot dated {created_at} is late")]
    BallotAfterClose {
        /// The election's close time.
        closes_after: String,
        /// The ballot's `createdAt`.
        created_at: String,
    },
    /// An op dated earlier than one of its parents: time runs forward along the causal DAG.
    #[error("op is dated {created_at}, before its parent {parent} ({parent_at})")]
    BeforeItsPast {
        /// The op's `createdAt`.
        created_at: String,
        /// The parent dated later.
        parent: Cid,
        /// That parent's `createdAt`.
        parent_at: String,
    },
    /// A join submitted to this node dated further from its clock than
    /// [`MAX_CLOCK_SKEW_MICROS`] (a candidate backdating a join to beat an invite's expiry).
    #[error("join is dated {created_at}, more than 5 minutes from this node's clock ({now})")]
    JoinMisdated {
        /// The join's `createdAt`.
        created_at: String,
        /// This node's clock.
        now: String,
    },
    /// A teller sealing again.
    #[error("{0} has already sealed")]
    AlreadySealed(String),
    /// A seal whose ballot set or result is not what its causal past gives.
    #[error("seal does not match the ballots: {0}")]
    SealMismatch(&'static str),
    /// An accept by someone other than the offer's builder, or an offer to a member.
    #[error("{0} is not the offer's builder")]
    NotBuilder(String),
    /// The offer has lapsed.
    #[error("offer expired")]
    OfferExpired,
    /// An agreement op out of order (accepting twice, countersigning before the accept…).
    #[error("agreement is {0}")]
    AgreementState(&'static str),
    /// A bundle for an agreement that is not in force (no quorum of countersignatures).
    #[error("agreement is not in force")]
    AgreementNotInForce,
    /// A bundle proposal whose cut is not its `prev`, or names replicas of non-contributors.
    #[error("bad bundle cut: {0}")]
    BadCut(&'static str),
    /// The bundle is sealed or void already.
    #[error("bundle is {0}")]
    BundleState(&'static str),
    /// An approval whose past holds a revocation of a contributor's consent made after the
    /// cut: the steward saw it.
    #[error("a contributor's consent was revoked after the cut")]
    ConsentRevoked,
    /// A steward approving or countersigning twice.
    #[error("{0} has already signed")]
    AlreadySigned(String),
    /// A payout statement whose lines do not sum to its total, or name strangers.
    #[error("bad payout statement: {0}")]
    BadPayout(&'static str),
}

/// The CID of an electorate: DAG-CBOR (SHA-256) of the sorted list of member DIDs.
pub fn electorate_cid<'a>(members: impl IntoIterator<Item = &'a str>) -> Cid {
    let mut list: Vec<&str> = members.into_iter().collect();
    list.sort_unstable();
    list.dedup();
    let ipld = Ipld::List(
        list.into_iter()
            .map(|d| Ipld::String(d.to_owned()))
            .collect(),
    );
    // A list of short strings always encodes.
    let bytes = data::encode(&ipld).unwrap_or_default();
    cids::cid_for_cbor(&bytes)
}

impl State {
    /// The empty state of a collective, before its charter.
    pub fn new(collective: Cid) -> State {
        State {
            collective,
            charter: None,
            members: OrdMap::new(),
            departed: OrdMap::new(),
            invites: OrdMap::new(),
            used_invites: OrdSet::new(),
            candidates: OrdMap::new(),
            consents: OrdMap::new(),
            revocations: OrdMap::new(),
            proposals: OrdMap::new(),
            elections: OrdMap::new(),
            agreements: OrdMap::new(),
            bundles: OrdMap::new(),
            payouts: OrdMap::new(),
        }
    }

    /// Whether a candidate `did` holding `secret` for the invite `invite` may fetch the
    /// collective's log from this node now (`now_micros`: the answering node's clock, not the
    /// candidate's): the invite is one of the state's open invites, the secret is its secret, the
    /// candidate is its invitee when it names one, and it has not expired. The network layer
    /// asks this; it holds no copy of the rule. (The join op itself is judged by
    /// [`State::check_past`]'s join rule.)
    pub fn may_fetch_with_invite(
        &self,
        invite: &Cid,
        secret: &[u8],
        did: &str,
        now_micros: i64,
    ) -> Result<(), Reason> {
        let Some(open) = self.invites.get(invite) else {
            return Err(if self.used_invites.contains(invite) {
                Reason::InviteUsed
            } else {
                Reason::UnknownInvite
            });
        };
        if cids::sha256(secret).as_slice() != open.secret_hash.as_slice() {
            return Err(Reason::SecretMismatch);
        }
        if open.invitee.as_deref().is_some_and(|i| i != did) {
            return Err(Reason::NotInvitee);
        }
        if open
            .expires_at
            .as_ref()
            .is_some_and(|e| now_micros >= e.to_unix_micros())
        {
            return Err(Reason::InviteExpired);
        }
        Ok(())
    }

    /// Whether this node, a member's, may accept a join op that a candidate submits to it
    /// now (`now_micros`: this node's clock). The join must be dated within
    /// [`MAX_CLOCK_SKEW_MICROS`] of this node's clock, and its invite, if it names one, must
    /// not have expired by this node's clock. The log's own rule judges the join by its
    /// `createdAt` (every node must reach the same verdict whenever the op reaches it); this
    /// gate, at the one place a candidate's join enters the collective, keeps a candidate
    /// from dating its join back to before the invite's expiry. The network layer asks this.
    pub fn may_accept_join(&self, op: &SignedOp, now_micros: i64) -> Result<(), Reason> {
        let created = op.created_at().to_unix_micros();
        if created.abs_diff(now_micros) > MAX_CLOCK_SKEW_MICROS.unsigned_abs() {
            return Err(Reason::JoinMisdated {
                created_at: op.created_at().as_str().to_owned(),
                now: Datetime::from_unix_micros(now_micros).as_str().to_owned(),
            });
        }
        if let Some(invite) = op.op_ref("invite")
            && let Some(open) = self.invites.get(&invite)
            && open
                .expires_at
                .as_ref()
                .is_some_and(|e| now_micros >= e.to_unix_micros())
        {
            return Err(Reason::InviteExpired);
        }
        Ok(())
    }

    /// The member's role, if they are a member.
    pub fn role(&self, did: &str) -> Option<Role> {
        self.members.get(did).map(|m| m.role)
    }

    /// The current stewards.
    pub fn stewards(&self) -> impl Iterator<Item = &str> {
        self.members
            .iter()
            .filter(|(_, m)| m.role == Role::Steward)
            .map(|(d, _)| d.as_str())
    }

    /// How many steward signatures an agreement or a bundle needs now: the charter's
    /// `countersignatures`, capped by the number of stewards, at least one.
    pub fn quorum(&self) -> usize {
        let wanted = self
            .charter
            .as_ref()
            .map_or(1, |c| c.countersignatures.max(1) as usize);
        wanted.min(self.stewards().count()).max(1)
    }

    /// The member's consent for a template, if they are a member and it is granted.
    pub fn effective_consent(&self, did: &str, template: &str) -> Option<&Consent> {
        if !self.members.contains_key(did) {
            return None;
        }
        self.consents
            .get(&(did.to_owned(), template.to_owned()))
            .filter(|c| c.granted)
    }

    /// The members whose consent covers a template, with the op that granted it.
    pub fn consenting(&self, template: &str) -> BTreeMap<String, Cid> {
        self.consents
            .iter()
            .filter(|((did, t), c)| t == template && c.granted && self.members.contains_key(did))
            .map(|((did, _), c)| (did.clone(), c.op))
            .collect()
    }

    /// The CID of the current membership (what an election open op names as its electorate).
    pub fn electorate_cid(&self) -> Cid {
        electorate_cid(self.members.keys().map(String::as_str))
    }

    /// The tellers an election opened now would have: the stewards, or every member when
    /// there is no steward.
    pub fn tellers(&self) -> BTreeSet<String> {
        let stewards: BTreeSet<String> = self.stewards().map(str::to_owned).collect();
        if stewards.is_empty() {
            self.members.keys().cloned().collect()
        } else {
            stewards
        }
    }

    fn charter(&self) -> Result<&Charter, Reason> {
        self.charter.as_deref().ok_or(Reason::NoCharter)
    }

    fn member(&self, did: &str) -> Result<&Member, Reason> {
        self.members
            .get(did)
            .ok_or_else(|| Reason::UnknownAuthor(did.to_owned()))
    }

    fn steward(&self, did: &str) -> Result<(), Reason> {
        match self.member(did)?.role {
            Role::Steward => Ok(()),
            Role::Member => Err(Reason::NotSteward(did.to_owned())),
        }
    }

    fn election(&self, op: &SignedOp) -> Result<(Cid, &Election), Reason> {
        let id = op
            .op_ref("election")
            .ok_or(Reason::UnknownRef("election"))?;
        let e = self
            .elections
            .get(&id)
            .ok_or(Reason::UnknownRef("election"))?;
        Ok((id, e))
    }

    fn agreement(&self, op: &SignedOp, field: &'static str) -> Result<(Cid, &Agreement), Reason> {
        let id = op.op_ref(field).ok_or(Reason::UnknownRef(field))?;
        let a = self.agreements.get(&id).ok_or(Reason::UnknownRef(field))?;
        Ok((id, a))
    }

    fn bundle(&self, op: &SignedOp) -> Result<(Cid, &Bundle), Reason> {
        let id = op
            .op_ref("proposal")
            .ok_or(Reason::UnknownRef("proposal"))?;
        let b = self
            .bundles
            .get(&id)
            .ok_or(Reason::UnknownRef("proposal"))?;
        Ok((id, b))
    }

    /// Checks an op entering the log against `self`, the state of the op's causal past:
    /// [`State::authorize`] plus the op's claims about that past. Returns the facts the fold
    /// will need.
    pub fn check_past(&self, op: &SignedOp, causal: &dyn Causal) -> Result<Meta, Reason> {
        self.authorize(op, causal)?;
        let mut meta = Meta::default();
        let author = op.author();
        match op.kind() {
            OpKind::ConsentGrant | OpKind::ConsentRevoke => {
                let rev = consent_rev(op);
                for t in op.str_list("templates") {
                    if let Some(c) = self.consents.get(&(author.to_owned(), t))
                        && rev <= c.rev
                    {
                        return Err(Reason::StaleRev {
                            rev,
                            current: c.rev,
                        });
                    }
                }
            }
            OpKind::Remove => {
                meta.direct_removal = self.charter()?.removal_bp.is_none();
            }
            OpKind::ElectionOpen => {
                let claimed = op
                    .str_field("electorate")
                    .and_then(|s| guild_core::syntax::parse_cid_str(s).ok());
                if claimed != Some(self.electorate_cid()) {
                    return Err(Reason::WrongElectorate);
                }
                let tellers: BTreeSet<String> = op.str_list("tellers").into_iter().collect();
                if tellers != self.tellers() {
                    return Err(Reason::WrongTellers);
                }
                meta.electorate = Some(Arc::new(self.members.keys().cloned().collect()));
            }
            OpKind::Ballot => {
                let (_, e) = self.election(op)?;
                let rev = op.int_field("rev").unwrap_or(0).max(0) as u64;
                if let Some(v) = e.ballots.get(author)
                    && rev <= v.rev
                {
                    return Err(Reason::StaleBallot {
                        rev,
                        current: v.rev,
                    });
                }
            }
            OpKind::Seal => {
                let (id, e) = self.election(op)?;
                let counted = e.counted();
                // A teller seals again only when its seal is outdated: ballots cast before the
                // close reached it after it sealed.
                let outdated = e
                    .seals
                    .get(author)
                    .is_none_or(|(_, ballots, _)| **ballots != counted);
                if !outdated || e.equivocating_tellers.contains(author) {
                    return Err(Reason::AlreadySealed(author.to_owned()));
                }
                let listed: BTreeSet<Cid> = op.op_ref_list("ballots").into_iter().collect();
                if listed.len() != op.str_list("ballots").len() {
                    return Err(Reason::SealMismatch("ballots are not distinct op ids"));
                }
                if listed != counted {
                    return Err(Reason::SealMismatch("not the ballots of its causal past"));
                }
                let tally = e.tally(&id, &counted, self.charter()?);
                if op.body().get("result") != Some(&tally.to_ipld()) {
                    return Err(Reason::SealMismatch("result is not the count"));
                }
            }
            OpKind::BundleProposal => {
                let (_, a) = self.agreement(op, "agreement")?;
                let heads: BTreeSet<Cid> = cut_heads(op).into_iter().collect();
                let prev: BTreeSet<Cid> = op.prev().iter().copied().collect();
                if heads != prev {
                    return Err(Reason::BadCut(
                        "the cut's heads must be the proposal's prev",
                    ));
                }
                let contributors = self.consenting(&a.template);
                for did in replica_dids(op) {
                    if !contributors.contains_key(&did) {
                        return Err(Reason::BadCut("a replica of a member without consent"));
                    }
                }
                meta.contributors = Some(Arc::new(contributors));
            }
            OpKind::BundleApproval => {
                let (proposal, b) = self.bundle(op)?;
                if b.approvals.contains_key(author) || b.equivocating.contains(author) {
                    return Err(Reason::AlreadySigned(author.to_owned()));
                }
                if self.revoked_since(proposal, b, causal).is_some() {
                    return Err(Reason::ConsentRevoked);
                }
            }
            OpKind::AgreementCountersign => {
                let (_, a) = self.agreement(op, "offer")?;
                if a.countersigned.contains(author) {
                    return Err(Reason::AlreadySigned(author.to_owned()));
                }
            }
            _ => {}
        }
        Ok(meta)
    }

    /// A revocation of a contributor's consent to the bundle's template that is not in the
    /// causal past of the bundle's proposal.
    fn revoked_since(&self, proposal: Cid, b: &Bundle, causal: &dyn Causal) -> Option<Cid> {
        for did in b.contributors.keys() {
            let key = (did.clone(), b.template.clone());
            for r in self.revocations.get(&key).into_iter().flatten() {
                if !causal.is_ancestor(r, &proposal) {
                    return Some(*r);
                }
            }
        }
        None
    }

    /// Checks that `op` may be applied to this state (the rules that hold both against the
    /// op's causal past and against the running state of the fold).
    pub fn authorize(&self, op: &SignedOp, causal: &dyn Causal) -> Result<(), Reason> {
        let author = op.author();
        if op.kind() == OpKind::Charter {
            if *op.id() != self.collective {
                return Err(Reason::WrongCollective);
            }
            if self.charter.is_some() {
                return Err(Reason::SecondCharter);
            }
            return Ok(());
        }
        if op.collective() != Some(&self.collective) {
            return Err(Reason::WrongCollective);
        }
        let charter = self.charter()?;
        match op.kind() {
            OpKind::Charter => Ok(()),
            OpKind::Amendment => {
                self.member(author)?;
                match op.map_field("changes") {
                    Some(c) if c.keys().any(|k| k != "$type") => Ok(()),
                    _ => Err(Reason::BadElection("an amendment changes nothing")),
                }
            }
            OpKind::Invite => self.steward(author),
            OpKind::Join => {
                if self.members.contains_key(author) {
                    return Err(Reason::AlreadyMember(author.to_owned()));
                }
                let Some(invite_id) = op.op_ref("invite") else {
                    return if charter.admission_policy == "invite-or-request" {
                        Ok(())
                    } else {
                        Err(Reason::RequestsNotAllowed)
                    };
                };
                let Some(invite) = self.invites.get(&invite_id) else {
                    return Err(if self.used_invites.contains(&invite_id) {
                        Reason::InviteUsed
                    } else {
                        Reason::UnknownInvite
                    });
                };
                let secret = op.bytes_field("secret").unwrap_or_default();
                if cids::sha256(secret).as_slice() != invite.secret_hash.as_slice() {
                    return Err(Reason::SecretMismatch);
                }
                if invite.invitee.as_deref().is_some_and(|i| i != author) {
                    return Err(Reason::NotInvitee);
                }
                if let Some(expiry) = &invite.expires_at
                    && op.created_at().to_unix_micros() >= expiry.to_unix_micros()
                {
                    return Err(Reason::InviteExpired);
                }
                Ok(())
            }
            OpKind::Admit => {
                self.steward(author)?;
                if charter.admission_approval != "steward" {
                    return Err(Reason::VoteRequired);
                }
                let member = op.str_field("member").unwrap_or_default();
                if self.members.contains_key(member) {
                    return Err(Reason::AlreadyMember(member.to_owned()));
                }
                match op.op_ref("join").and_then(|j| self.candidates.get(&j)) {
                    Some(candidate) if candidate == member => Ok(()),
                    _ => Err(Reason::NoSuchRequest),
                }
            }
            OpKind::Remove => {
                let direct = causal
                    .meta(op.id())
                    .map_or(charter.removal_bp.is_none(), |m| m.direct_removal);
                if direct {
                    self.steward(author)?;
                } else {
                    self.member(author)?;
                }
                let member = op.str_field("member").unwrap_or_default();
                if !self.members.contains_key(member) {
                    return Err(Reason::NotMember(member.to_owned()));
                }
                Ok(())
            }
            OpKind::Leave => self.member(author).map(|_| ()),
            OpKind::ConsentGrant | OpKind::ConsentRevoke => {
                self.member(author)?;
                for t in op.str_list("templates") {
                    if !charter.templates.contains_key(&t) {
                        return Err(Reason::UnknownTemplate(t));
                    }
                }
                Ok(())
            }
            OpKind::ElectionOpen => self.authorize_open(op, charter),
            OpKind::Ballot => {
                self.member(author)?;
                let (_, e) = self.election(op)?;
                if e.certified.is_some() {
                    return Err(Reason::ElectionClosed);
                }
                if !e.electorate.contains(author) {
                    return Err(Reason::NotInElectorate(author.to_owned()));
                }
                if op.created_at().to_unix_micros() >= e.closes_after.to_unix_micros() {
                    return Err(Reason::BallotAfterClose {
                        closes_after: e.closes_after.as_str().to_owned(),
                        created_at: op.created_at().as_str().to_owned(),
                    });
                }
                let approvals = op.str_list("approvals");
                let mut seen = BTreeSet::new();
                for a in &approvals {
                    let ok = match e.kind {
                        ElectionKind::Stewards => e.candidates.contains(a),
                        _ => a == "yes" || a == "no",
                    };
                    if !ok || !seen.insert(a) {
                        return Err(Reason::BadChoice(a.clone()));
                    }
                }
                if e.kind != ElectionKind::Stewards && approvals.len() > 1 {
                    return Err(Reason::BadChoice(approvals.join(",")));
                }
                Ok(())
            }
            OpKind::Seal => {
                let (_, e) = self.election(op)?;
                if !e.tellers.contains(author) {
                    return Err(Reason::NotTeller(author.to_owned()));
                }
                if e.certified.is_some() {
                    return Err(Reason::ElectionClosed);
                }
                if op.created_at().to_unix_micros() < e.closes_after.to_unix_micros() {
                    return Err(Reason::TooEarly);
                }
                Ok(())
            }
            OpKind::AgreementOffer => {
                self.steward(author)?;
                let template = op.str_field("template").unwrap_or_default();
                if !charter.templates.contains_key(template) {
                    return Err(Reason::UnknownTemplate(template.to_owned()));
                }
                let builder = op.str_field("builder").unwrap_or_default();
                if self.members.contains_key(builder) {
                    return Err(Reason::NotBuilder(builder.to_owned()));
                }
                Ok(())
            }
            OpKind::AgreementAccept => {
                let (_, a) = self.agreement(op, "offer")?;
                if a.builder != author {
                    return Err(Reason::NotBuilder(author.to_owned()));
                }
                if a.status != AgreementStatus::Offered {
                    return Err(Reason::AgreementState("already accepted"));
                }
                if let Some(expiry) = &a.expires_at
                    && op.created_at().to_unix_micros() >= expiry.to_unix_micros()
                {
                    return Err(Reason::OfferExpired);
                }
                Ok(())
            }
            OpKind::AgreementCountersign => {
                self.steward(author)?;
                let (_, a) = self.agreement(op, "offer")?;
                match a.status {
                    AgreementStatus::Accepted(acc) if op.op_ref("accept") == Some(acc) => Ok(()),
                    AgreementStatus::Accepted(_) => Err(Reason::UnknownRef("accept")),
                    AgreementStatus::Offered => Err(Reason::AgreementState("not accepted")),
                    AgreementStatus::InForce(_) => Err(Reason::AgreementState("in force")),
                }
            }
            OpKind::BundleProposal => {
                self.steward(author)?;
                let (_, a) = self.agreement(op, "agreement")?;
                if !matches!(a.status, AgreementStatus::InForce(_)) {
                    return Err(Reason::AgreementNotInForce);
                }
                Ok(())
            }
            OpKind::BundleApproval => {
                self.steward(author)?;
                let (_, b) = self.bundle(op)?;
                if b.voided.is_some() {
                    return Err(Reason::BundleState("void"));
                }
                if b.sealed.is_some() {
                    return Err(Reason::BundleState("sealed"));
                }
                Ok(())
            }
            OpKind::PayoutStatement => {
                self.steward(author)?;
                if op.body().contains_key("agreement") {
                    self.agreement(op, "agreement")?;
                }
                let (total, _) = money(op.body().get("total"));
                let mut sum: i128 = 0;
                for line in list_maps(op.body().get("lines")) {
                    let member = match line.get("member") {
                        Some(Ipld::String(m)) => m.as_str(),
                        _ => "",
                    };
                    if !self.members.contains_key(member) && !self.departed.contains_key(member) {
                        return Err(Reason::BadPayout("a line pays a stranger"));
                    }
                    if let Some(Ipld::Integer(a)) = line.get("amount") {
                        sum += *a;
                    }
                }
                if sum != i128::from(total) {
                    return Err(Reason::BadPayout("lines do not sum to the total"));
                }
                Ok(())
            }
        }
    }

    fn authorize_open(&self, op: &SignedOp, charter: &Charter) -> Result<(), Reason> {
        self.member(op.author())?;
        if op.str_field("method") != Some("approval") {
            return Err(Reason::BadElection("the only method is approval"));
        }
        let kind = op
            .str_field("kind")
            .and_then(ElectionKind::parse)
            .ok_or(Reason::BadElection("unknown kind"))?;
        let proposal = op.op_ref("proposal");
        match kind {
            ElectionKind::Stewards => {
                if proposal.is_some() {
                    return Err(Reason::BadElection("a seat election has no proposal"));
                }
                let seats = op.int_field("seats").unwrap_or(0);
                if seats < 1 || seats > i64::from(charter.seats.max(1)) {
                    return Err(Reason::BadElection("seats must be 1..=the charter's seats"));
                }
                let candidates = op.str_list("candidates");
                if candidates.is_empty() {
                    return Err(Reason::BadElection("a seat election needs candidates"));
                }
                let mut seen = BTreeSet::new();
                for c in &candidates {
                    if !self.members.contains_key(c) {
                        return Err(Reason::NotMember(c.clone()));
                    }
                    if !seen.insert(c) {
                        return Err(Reason::BadElection("a candidate is named twice"));
                    }
                }
            }
            kind => {
                let id = proposal.ok_or(Reason::BadElection("a vote needs a proposal"))?;
                let p = self
                    .proposals
                    .get(&id)
                    .ok_or(Reason::UnknownRef("proposal"))?;
                if p.kind != kind {
                    return Err(Reason::BadElection("the proposal is of another kind"));
                }
                if p.status != ProposalStatus::Open {
                    return Err(Reason::BadElection("the proposal is decided"));
                }
            }
        }
        Ok(())
    }

    /// Applies an op that [`State::authorize`] accepted.
    pub fn apply(&mut self, op: &SignedOp, causal: &dyn Causal) {
        let author = op.author().to_owned();
        let id = *op.id();
        match op.kind() {
            OpKind::Charter => {
                self.charter = Some(Arc::new(parse_charter(op.body(), Vec::new())));
                self.members.insert(
                    author,
                    Member {
                        role: Role::Steward,
                        since: id,
                    },
                );
            }
            OpKind::Amendment => {
                self.proposals.insert(
                    id,
                    Proposal {
                        kind: ElectionKind::Amendment,
                        by: author,
                        member: None,
                        changes: op.map_field("changes").cloned().map(Arc::new),
                        status: ProposalStatus::Open,
                    },
                );
            }
            OpKind::Invite => {
                let ttl = self.charter.as_ref().and_then(|c| c.invite_ttl_days);
                let expires_at = op.datetime_field("expiresAt").or_else(|| {
                    ttl.map(|d| {
                        Datetime::from_unix_micros(
                            op.created_at()
                                .to_unix_micros()
                                .saturating_add(d.saturating_mul(DAY_MICROS)),
                        )
                    })
                });
                self.invites.insert(
                    id,
                    Invite {
                        by: author,
                        secret_hash: op.bytes_field("secretHash").unwrap_or_default().to_vec(),
                        expires_at,
                        invitee: op.str_field("invitee").map(str::to_owned),
                    },
                );
            }
            OpKind::Join => match op.op_ref("invite") {
                Some(invite) => {
                    self.invites.remove(&invite);
                    self.used_invites.insert(invite);
                    self.admit(author, id);
                }
                None => {
                    self.candidates.insert(id, author.clone());
                    let by_vote = self
                        .charter
                        .as_ref()
                        .is_some_and(|c| c.admission_approval == "vote");
                    if by_vote {
                        self.proposals.insert(
                            id,
                            Proposal {
                                kind: ElectionKind::Admission,
                                by: author.clone(),
                                member: Some(author),
                                changes: None,
                                status: ProposalStatus::Open,
                            },
                        );
                    }
                }
            },
            OpKind::Admit => {
                if let Some(join) = op.op_ref("join") {
                    self.candidates.remove(&join);
                }
                let member = op.str_field("member").unwrap_or_default().to_owned();
                self.admit(member, id);
            }
            OpKind::Remove => {
                let member = op.str_field("member").unwrap_or_default().to_owned();
                let direct = causal.meta(&id).is_none_or(|m| m.direct_removal);
                if direct {
                    self.depart(&member, Departure::Removed(id));
                } else {
                    self.proposals.insert(
                        id,
                        Proposal {
                            kind: ElectionKind::Removal,
                            by: author,
                            member: Some(member),
                            changes: None,
                            status: ProposalStatus::Open,
                        },
                    );
                }
            }
            OpKind::Leave => self.depart(&author, Departure::Left(id)),
            OpKind::ConsentGrant | OpKind::ConsentRevoke => self.apply_consent(op, causal),
            OpKind::ElectionOpen => {
                let electorate = causal
                    .meta(&id)
                    .and_then(|m| m.electorate.clone())
                    .unwrap_or_else(|| Arc::new(self.members.keys().cloned().collect()));
                let kind = op
                    .str_field("kind")
                    .and_then(ElectionKind::parse)
                    .unwrap_or(ElectionKind::Stewards);
                self.elections.insert(
                    id,
                    Election {
                        kind,
                        seats: op.int_field("seats").unwrap_or(0).clamp(0, 100) as u32,
                        candidates: Arc::new(op.str_list("candidates").into_iter().collect()),
                        proposal: op.op_ref("proposal"),
                        electorate,
                        tellers: Arc::new(op.str_list("tellers").into_iter().collect()),
                        closes_after: op
                            .datetime_field("closesAfter")
                            .unwrap_or_else(|| op.created_at().clone()),
                        ballots: OrdMap::new(),
                        seals: OrdMap::new(),
                        equivocating_tellers: OrdSet::new(),
                        certified: None,
                    },
                );
            }
            OpKind::Ballot => {
                let Some(eid) = op.op_ref("election") else {
                    return;
                };
                let rev = op.int_field("rev").unwrap_or(0).max(0) as u64;
                if let Some(e) = self.elections.get_mut(&eid) {
                    let entry = e.ballots.entry(author).or_insert_with(|| VoterBallots {
                        rev,
                        ballots: BTreeMap::new(),
                    });
                    if rev > entry.rev {
                        entry.rev = rev;
                        entry.ballots.clear();
                    }
                    if rev == entry.rev {
                        entry.ballots.insert(id, op.str_list("approvals"));
                    }
                }
            }
            OpKind::Seal => self.apply_seal(op, causal),
            OpKind::AgreementOffer => {
                self.agreements.insert(
                    id,
                    Agreement {
                        builder: op.str_field("builder").unwrap_or_default().to_owned(),
                        template: op.str_field("template").unwrap_or_default().to_owned(),
                        terms: Arc::new(op.body().get("terms").cloned().unwrap_or(Ipld::Null)),
                        expires_at: op.datetime_field("expiresAt"),
                        offered_by: author,
                        countersigned: BTreeSet::new(),
                        status: AgreementStatus::Offered,
                    },
                );
            }
            OpKind::AgreementAccept => {
                if let Some(a) = op.op_ref("offer").and_then(|o| self.agreements.get_mut(&o)) {
                    a.status = AgreementStatus::Accepted(id);
                }
            }
            OpKind::AgreementCountersign => {
                let quorum = self.quorum();
                if let Some(a) = op.op_ref("offer").and_then(|o| self.agreements.get_mut(&o)) {
                    a.countersigned.insert(author);
                    if a.countersigned.len() >= quorum {
                        a.status = AgreementStatus::InForce(id);
                    }
                }
            }
            OpKind::BundleProposal => {
                let Some(agreement) = op.op_ref("agreement") else {
                    return;
                };
                let template = self
                    .agreements
                    .get(&agreement)
                    .map(|a| a.template.clone())
                    .unwrap_or_default();
                let contributors = causal
                    .meta(&id)
                    .and_then(|m| m.contributors.clone())
                    .unwrap_or_else(|| Arc::new(self.consenting(&template)));
                let cut = op.map_field("cut");
                let mut bundle = Bundle {
                    agreement,
                    template,
                    kind: op.str_field("kind").unwrap_or_default().to_owned(),
                    heads: op.prev().to_vec(),
                    replicas: Arc::new(
                        cut.and_then(|c| c.get("replicas"))
                            .cloned()
                            .unwrap_or(Ipld::List(Vec::new())),
                    ),
                    contributors,
                    approvals: BTreeMap::new(),
                    equivocating: BTreeSet::new(),
                    sealed: None,
                    voided: None,
                };
                // A revocation concurrent with the proposal (ordered before it) wins.
                bundle.voided = self.revoked_since(id, &bundle, causal);
                self.bundles.insert(id, bundle);
            }
            OpKind::BundleApproval => self.apply_approval(op, causal),
            OpKind::PayoutStatement => {
                let (total, currency) = money(op.body().get("total"));
                let period = match op.map_field("period").and_then(|p| p.get("id")) {
                    Some(Ipld::String(s)) => s.clone(),
                    _ => String::new(),
                };
                self.payouts.insert(
                    id,
                    PayoutRef {
                        by: author,
                        agreement: op.op_ref("agreement"),
                        period,
                        total,
                        currency,
                        lines: list_maps(op.body().get("lines")).count(),
                    },
                );
            }
        }
    }

    fn apply_consent(&mut self, op: &SignedOp, causal: &dyn Causal) {
        let author = op.author().to_owned();
        let granted = op.kind() == OpKind::ConsentGrant;
        let rev = consent_rev(op);
        let id = *op.id();
        for t in op.str_list("templates") {
            let key = (author.clone(), t.clone());
            let wins = match self.consents.get(&key) {
                None => true,
                // Last writer wins by rev; at equal revs a revoke wins, then the larger CID.
                Some(c) => (rev, !granted, id.to_bytes()) > (c.rev, !c.granted, c.op.to_bytes()),
            };
            if wins {
                self.consents.insert(
                    key,
                    Consent {
                        granted,
                        rev,
                        scope: op.body().get("scope").cloned().map(Arc::new),
                        effective_from: op.datetime_field("effectiveFrom"),
                        op: id,
                    },
                );
            }
            if !granted {
                self.revocations
                    .entry((author.clone(), t.clone()))
                    .or_default()
                    .insert(id);
                // A revocation wins over a concurrent use: every bundle built on this
                // member's consent to the template, not sealed before the revocation, is void.
                let ids: Vec<Cid> = self.bundles.keys().copied().collect();
                for bid in ids {
                    let Some(b) = self.bundles.get(&bid) else {
                        continue;
                    };
                    if b.voided.is_some()
                        || b.template != t
                        || !b.contributors.contains_key(&author)
                    {
                        continue;
                    }
                    let sealed_before = b.sealed.as_ref().is_some_and(|(_, approvals)| {
                        approvals.iter().all(|a| causal.is_ancestor(a, &id))
                    });
                    if !sealed_before && let Some(b) = self.bundles.get_mut(&bid) {
                        b.voided = Some(id);
                    }
                }
            }
        }
    }

    fn apply_seal(&mut self, op: &SignedOp, causal: &dyn Causal) {
        let Some(eid) = op.op_ref("election") else {
            return;
        };
        let author = op.author().to_owned();
        let charter = self.charter.clone();
        let Some(e) = self.elections.get_mut(&eid) else {
            return;
        };
        let ballots: Arc<BTreeSet<Cid>> = Arc::new(op.op_ref_list("ballots").into_iter().collect());
        let result = op.body().get("result").cloned().unwrap_or(Ipld::Null);
        if e.equivocating_tellers.contains(&author) {
            return;
        }
        if let Some((earlier, b, r)) = e.seals.get(&author) {
            // A teller's later seal, written after its earlier one, replaces it (the earlier
            // one was outdated by ballots that reached the teller after it sealed); two
            // different seals written concurrently are an equivocation.
            let replaces = causal.is_ancestor(earlier, op.id());
            if !replaces {
                if *b != ballots || *r != result {
                    e.seals.remove(&author);
                    e.equivocating_tellers.insert(author);
                }
                return;
            }
        }
        e.seals
            .insert(author, (*op.id(), Arc::clone(&ballots), result.clone()));
        let agreeing: Vec<Cid> = e
            .seals
            .values()
            .filter(|(_, b, r)| *b == ballots && *r == result)
            .map(|(s, _, _)| *s)
            .collect();
        if agreeing.len() * 2 <= e.tellers.len() {
            return;
        }
        let Some(charter) = charter else { return };
        let tally = e.tally(&eid, &ballots, &charter);
        e.certified = Some(Arc::new(Certified {
            ballots: (*ballots).clone(),
            tally: tally.clone(),
            seals: agreeing,
        }));
        let (kind, proposal) = (e.kind, e.proposal);
        self.enact(eid, *op.id(), kind, proposal, &tally);
    }

    /// Carries out a certified result.
    fn enact(
        &mut self,
        election: Cid,
        seal: Cid,
        kind: ElectionKind,
        proposal: Option<Cid>,
        tally: &Tally,
    ) {
        if tally.outcome != Outcome::Adopted {
            return;
        }
        if kind == ElectionKind::Stewards {
            let elected: BTreeSet<&String> = tally
                .elected
                .iter()
                .filter(|d| self.members.contains_key(*d))
                .collect();
            // Incumbents stay rather than leave the collective without a steward.
            if elected.is_empty() {
                return;
            }
            let dids: Vec<String> = self.members.keys().cloned().collect();
            for did in dids {
                if let Some(m) = self.members.get_mut(&did) {
                    m.role = if elected.contains(&did) {
                        Role::Steward
                    } else {
                        Role::Member
                    };
                }
            }
            return;
        }
        let Some(pid) = proposal else { return };
        let Some(p) = self.proposals.get(&pid).cloned() else {
            return;
        };
        if p.status != ProposalStatus::Open {
            return;
        }
        if let Some(p) = self.proposals.get_mut(&pid) {
            p.status = ProposalStatus::Adopted(election);
        }
        match kind {
            ElectionKind::Amendment => {
                if let (Some(changes), Some(charter)) = (&p.changes, &self.charter) {
                    let mut fields = charter.fields.clone();
                    for (k, v) in changes.iter() {
                        if k != "$type" {
                            fields.insert(k.clone(), v.clone());
                        }
                    }
                    let mut amendments = charter.amendments.clone();
                    amendments.push(pid);
                    self.charter = Some(Arc::new(parse_charter(&fields, amendments)));
                }
            }
            ElectionKind::Admission => {
                if let Some(m) = p.member
                    && self.candidates.remove(&pid).is_some()
                    && !self.members.contains_key(&m)
                {
                    self.admit(m, seal);
                }
            }
            ElectionKind::Removal => {
                if let Some(m) = p.member {
                    self.depart(&m, Departure::Removed(seal));
                }
            }
            ElectionKind::Stewards => {}
        }
    }

    fn apply_approval(&mut self, op: &SignedOp, causal: &dyn Causal) {
        let Some(pid) = op.op_ref("proposal") else {
            return;
        };
        let Some(manifest) = op
            .str_field("manifest")
            .and_then(|s| guild_core::syntax::parse_cid_str(s).ok())
        else {
            return;
        };
        let quorum = self.quorum();
        let Some(b) = self.bundles.get(&pid) else {
            return;
        };
        // A revocation concurrent with this approval (ordered before it) voids the bundle.
        let revoked = self.revoked_since(pid, b, causal);
        let author = op.author().to_owned();
        let Some(b) = self.bundles.get_mut(&pid) else {
            return;
        };
        if let Some(r) = revoked {
            b.voided = Some(r);
            return;
        }
        if b.equivocating.contains(&author) {
            return;
        }
        if let Some((_, m)) = b.approvals.get(&author) {
            if *m != manifest {
                b.approvals.remove(&author);
                b.equivocating.insert(author);
            }
            return;
        }
        b.approvals.insert(author, (*op.id(), manifest));
        let agreeing: Vec<Cid> = b
            .approvals
            .values()
            .filter(|(_, m)| *m == manifest)
            .map(|(a, _)| *a)
            .collect();
        if agreeing.len() >= quorum {
            b.sealed = Some((manifest, agreeing));
        }
    }

    fn admit(&mut self, did: String, since: Cid) {
        self.departed.remove(&did);
        self.members.insert(
            did,
            Member {
                role: Role::Member,
                since,
            },
        );
    }

    fn depart(&mut self, did: &str, how: Departure) {
        if self.members.remove(did).is_some() {
            self.departed.insert(did.to_owned(), how);
        }
    }
}

/// A consent op's `rev` (1 when absent: ops from before the field existed are not accepted
/// by the lexicon, so this is only a fallback).
fn consent_rev(op: &SignedOp) -> u64 {
    op.int_field("rev").unwrap_or(1).max(1) as u64
}

fn cut_heads(op: &SignedOp) -> Vec<Cid> {
    match op.map_field("cut").and_then(|c| c.get("heads")) {
        Some(Ipld::List(items)) => items
            .iter()
            .filter_map(|i| match i {
                Ipld::Link(c) => Some(*c),
                Ipld::String(s) => guild_core::syntax::parse_cid_str(s).ok(),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn replica_dids(op: &SignedOp) -> Vec<String> {
    let replicas = op.map_field("cut").and_then(|c| c.get("replicas"));
    list_maps(replicas)
        .filter_map(|m| match m.get("did") {
            Some(Ipld::String(d)) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

fn list_maps(v: Option<&Ipld>) -> impl Iterator<Item = &BTreeMap<String, Ipld>> {
    let items: &[Ipld] = match v {
        Some(Ipld::List(items)) => items,
        _ => &[],
    };
    items.iter().filter_map(|i| match i {
        Ipld::Map(m) => Some(m),
        _ => None,
    })
}

fn money(v: Option<&Ipld>) -> (i64, String) {
    let Some(Ipld::Map(m)) = v else {
        return (0, String::new());
    };
    let amount = match m.get("amount") {
        Some(Ipld::Integer(a)) => i64::try_from(*a).unwrap_or(i64::MAX),
        _ => 0,
    };
    let currency = match m.get("currency") {
        Some(Ipld::String(c)) => c.clone(),
        _ => String::new(),
    };
    (amount, currency)
}

/// The charter's fields, from the genesis op's body (or the amended map).
fn parse_charter(body: &BTreeMap<String, Ipld>, amendments: Vec<Cid>) -> Charter {
    let fields: BTreeMap<String, Ipld> = body
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "$type" | "author" | "prev" | "createdAt" | "sig"
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let sub = |name: &str| match fields.get(name) {
        Some(Ipld::Map(m)) => Some(m),
        _ => None,
    };
    let get_str = |m: Option<&BTreeMap<String, Ipld>>, k: &str| match m.and_then(|m| m.get(k)) {
        Some(Ipld::String(s)) => s.clone(),
        _ => String::new(),
    };
    let get_int = |m: Option<&BTreeMap<String, Ipld>>, k: &str| match m.and_then(|m| m.get(k)) {
        Some(Ipld::Integer(i)) => i64::try_from(*i).ok(),
        _ => None,
    };
    let admission = sub("admission");
    let stewardship = sub("stewardship");
    let quorum = sub("quorum");
    let payout = sub("payoutPolicy");
    let bp = |v: Option<i64>| v.map(|x| x.clamp(0, 10_000) as u32);
    let templates = match fields.get("licenceTemplates") {
        Some(Ipld::List(items)) => items
            .iter()
            .filter_map(|t| match t {
                Ipld::Map(m) => match m.get("id") {
                    Some(Ipld::String(id)) => Some((id.clone(), t.clone())),
                    _ => None,
                },
                _ => None,
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    let accepted_lexicons = match fields.get("acceptedLexicons") {
        Some(Ipld::List(items)) => items
            .iter()
            .filter_map(|t| match t {
                Ipld::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => BTreeSet::new(),
    };
    let tellers = match get_str(stewardship, "tellers") {
        t if t.is_empty() => "stewards".to_owned(),
        t => t,
    };
    Charter {
        name: match fields.get("name") {
            Some(Ipld::String(s)) => s.clone(),
            _ => String::new(),
        },
        admission_policy: get_str(admission, "policy"),
        admission_approval: get_str(admission, "approval"),
        invite_ttl_days: get_int(admission, "inviteTtlDays"),
        seats: get_int(stewardship, "seats").unwrap_or(1).clamp(1, 100) as u32,
        term_days: get_int(stewardship, "termDays")
            .unwrap_or(0)
            .clamp(0, u32::MAX.into()) as u32,
        tellers,
        amendment_bp: bp(get_int(quorum, "amendment")).unwrap_or(WHOLE_BP as u32),
        removal_bp: bp(get_int(quorum, "removal")),
        turnout_bp: bp(get_int(quorum, "turnout")).unwrap_or(0),
        countersignatures: get_int(quorum, "countersignatures")
            .unwrap_or(1)
            .clamp(1, 1000) as u32,
        accepted_lexicons,
        templates,
        payout: (get_str(payout, "period"), get_str(payout, "method")),
        fields,
        amendments,
    }
}
