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
//!
//! The rules live by op family, each module owning its kinds' authorise, check-past and
//! apply: `charter` (the charter in force), `membership` (invite, join, admit, remove,
//! leave), `consent`, `elections` (amendments, elections, ballots, seals), `agreements`,
//! `bundles`, `payouts`. This module dispatches by the op's typed body.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use guild_core::syntax::Did;
use guild_core::{Cid, cids};
use imbl::{OrdMap, OrdSet};

use crate::body::OpBody;
use crate::op::SignedOp;
use crate::table::{Digest, op_digest, op_id};

mod agreements;
mod bundles;
mod charter;
mod consent;
mod elections;
mod membership;
mod payouts;
mod reason;

pub use crate::body::{ElectionKind, Outcome};
pub use agreements::{Agreement, AgreementStatus};
pub use bundles::Bundle;
pub use charter::Charter;
pub use consent::{Consent, Consents, Revokes};
pub use elections::{
    BallotSet, Certified, Election, Proposal, ProposalStatus, Tally, VoterBallots,
};
pub use membership::Invite;
pub use payouts::PayoutRef;
pub use reason::Reason;

/// Microseconds in a day.
const DAY_MICROS: i64 = 86_400_000_000;

/// Basis points in one whole.
const WHOLE_BP: u64 = 10_000;

/// How far apart two honest nodes' clocks may be: 5 minutes. An op dated further ahead of a
/// receiving node's clock waits there until it is not (the driver's rule); a join submitted
/// by a candidate must be dated within this of the admitting member's clock
/// ([`State::may_accept_join`]).
pub const MAX_CLOCK_SKEW_MICROS: i64 = 5 * 60 * 1_000_000;

/// A consent register's key: the member and the template id. Both are shared strings, so
/// that copying a node of a state's map (as every write after a checkpoint does) copies no
/// string: with an owned `String` id, replaying a large log spent much of its time
/// allocating and freeing the copies.
pub type ConsentKey = (Did, Arc<str>);

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
    /// The digest of the op that made them a member ([`Member::since`]): 32 bytes, where the
    /// in-memory CID takes 96, in every member's entry of every checkpoint.
    since: Digest,
}

impl Member {
    /// A member with this role since the op `since`.
    pub(crate) fn new(role: Role, since: &Cid) -> Self {
        Member {
            role,
            since: op_digest(since),
        }
    }

    /// The op that made them a member (the charter, their join, the admit, or the seal that
    /// certified their admission): their join cut.
    pub fn since(&self) -> Cid {
        op_id(&self.since)
    }
}

/// Why someone is no longer a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Departure {
    /// They left (the leave op).
    Left(Cid),
    /// A steward removed them (the remove op), or a vote did (the certifying seal).
    Removed(Cid),
}

/// Facts about an op's causal past that the fold needs, computed once when the op enters the
/// log (they depend on the op's past alone, so every node computes the same).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Meta {
    /// An election open op's frozen electorate.
    pub electorate: Option<Arc<BTreeSet<Did>>>,
    /// A seal's counted ballots (the ballots of its causal past that count).
    pub ballots: Option<Arc<BallotSet>>,
    /// A bundle proposal's contributors (member → the consent op covering the template).
    pub contributors: Option<Arc<BTreeMap<Did, Cid>>>,
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
    pub members: OrdMap<Did, Member>,
    /// Former members by DID.
    pub departed: OrdMap<Did, Departure>,
    /// Open invites by op id.
    pub invites: OrdMap<Cid, Invite>,
    /// Invites that have admitted their one member, by their ops' 32-byte digests (an op id
    /// is a CIDv1 DAG-CBOR SHA-256): a third of an in-memory CID, in the state and in every
    /// checkpoint's copy.
    pub used_invites: OrdSet<Digest>,
    /// Join requests awaiting admission: join op id → candidate DID.
    pub candidates: OrdMap<Cid, Did>,
    /// Consent registers by (member DID, template id).
    pub consents: Consents,
    /// Every revoke op by (member DID, template id), for the bundle rule.
    pub revocations: OrdMap<ConsentKey, Revokes>,
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
    /// Builders' receipts, by (agreement, what they acknowledge: a bundle's manifest CID or
    /// a revoke op id): the first receipt's op id.
    pub receipts: OrdMap<(Cid, Cid), Cid>,
}

/// The CID of a seal's ballot set: DAG-CBOR (SHA-256) of the list of the ballots' op ids as
/// CID links, in ascending order of their bytes, each once.
pub fn ballot_set_cid<'a>(ballots: impl IntoIterator<Item = &'a Cid>) -> Cid {
    let mut list: Vec<(Vec<u8>, &Cid)> = ballots.into_iter().map(|c| (c.to_bytes(), c)).collect();
    list.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    list.dedup_by(|a, b| a.0 == b.0);
    links_list_cid(list.len(), list.into_iter().map(|(_, cid)| *cid))
}

/// DAG-CBOR (SHA-256) of a list of `n` links given in order ([`ballot_set_cid`] once sorted).
/// Written by hand, as the electorate's: no error path.
fn links_list_cid(n: usize, links: impl Iterator<Item = Cid>) -> Cid {
    // A CIDv1 link: tag 42 (2 bytes), a byte-string head (2), the 0x00 prefix and 36 bytes.
    let mut bytes = Vec::with_capacity(9 + n * 41);
    guild_core::cbor::write_head(&mut bytes, 4, n as u64);
    for cid in links {
        guild_core::cbor::write_link(&mut bytes, &cid);
    }
    cids::cid_for_cbor(&bytes)
}

/// The CID of an electorate: DAG-CBOR (SHA-256) of the sorted list of member DIDs.
pub fn electorate_cid<'a>(members: impl IntoIterator<Item = &'a str>) -> Cid {
    let mut list: Vec<&str> = members.into_iter().collect();
    list.sort_unstable();
    list.dedup();
    // Encoding a list of strings cannot fail: serde_ipld_dagcbor fails only on floats, maps
    // with non-string keys and writer errors, and a Vec writer does not fail. Written by
    // hand here so that no error path exists at all.
    let mut bytes = Vec::with_capacity(9 + list.iter().map(|d| d.len() + 9).sum::<usize>());
    guild_core::cbor::write_head(&mut bytes, 4, list.len() as u64);
    for did in list {
        guild_core::cbor::write_head(&mut bytes, 3, did.len() as u64);
        bytes.extend_from_slice(did.as_bytes());
    }
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
            consents: Consents::default(),
            revocations: OrdMap::new(),
            proposals: OrdMap::new(),
            elections: OrdMap::new(),
            agreements: OrdMap::new(),
            bundles: OrdMap::new(),
            payouts: OrdMap::new(),
            receipts: OrdMap::new(),
        }
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

    /// The CID of the current membership (what an election open op names as its electorate).
    pub fn electorate_cid(&self) -> Cid {
        electorate_cid(self.members.keys().map(Did::as_str))
    }

    /// The tellers an election opened now would have: the stewards, or every member when
    /// there is no steward.
    pub fn tellers(&self) -> BTreeSet<Did> {
        let stewards: BTreeSet<Did> = self
            .members
            .iter()
            .filter(|(_, m)| m.role == Role::Steward)
            .map(|(d, _)| d.clone())
            .collect();
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

    /// Checks an op entering the log against `self`, the state of the op's causal past:
    /// [`State::authorize`] plus the op's claims about that past. Returns the facts the fold
    /// will need.
    pub fn check_past(&self, op: &SignedOp, causal: &dyn Causal) -> Result<Meta, Reason> {
        self.authorize(op, causal)?;
        let author = op.author();
        let mut meta = Meta::default();
        match op.body() {
            OpBody::ConsentGrant(b) | OpBody::ConsentRevoke(b) => {
                self.check_consent(op.author_did(), b)?;
            }
            OpBody::Remove(_) => meta.direct_removal = self.charter()?.removal_bp.is_none(),
            OpBody::ElectionOpen(b) => meta.electorate = Some(self.check_open(b)?),
            OpBody::Ballot(b) => self.check_ballot(author, b)?,
            OpBody::Seal(b) => meta.ballots = Some(self.check_seal(author, b)?),
            OpBody::BundleProposal(b) => {
                meta.contributors = Some(self.check_proposal(op, b)?);
            }
            OpBody::BundleApproval(b) => self.check_approval(author, b, causal)?,
            OpBody::AgreementCountersign(b) => self.check_countersign(author, b)?,
            _ => {}
        }
        Ok(meta)
    }

    /// True if [`State::check_past`] computes facts of `op`'s past that the fold needs (its
    /// [`Meta`]); for any other op it returns `Meta::default()` when it passes. A log loaded
    /// from its own store computes only these ops' facts again ([`State::past_meta`]).
    pub fn needs_past_meta(op: &SignedOp) -> bool {
        matches!(
            op.body(),
            OpBody::Remove(_)
                | OpBody::ElectionOpen(_)
                | OpBody::Seal(_)
                | OpBody::BundleProposal(_)
        )
    }

    /// The [`Meta`] that [`State::check_past`] returns for an op that passes it, computed
    /// without checking the op (for an op the log accepted before: its own store's). A seal's
    /// ballot set is not hashed and its tally not counted, which is most of a large
    /// election's seal check. An op whose facts cannot be computed (which `check_past` would
    /// have refused) is an error, as there.
    pub fn past_meta(&self, op: &SignedOp) -> Result<Meta, Reason> {
        let mut meta = Meta::default();
        match op.body() {
            OpBody::Remove(_) => meta.direct_removal = self.charter()?.removal_bp.is_none(),
            OpBody::ElectionOpen(_) => {
                meta.electorate = Some(Arc::new(self.members.keys().cloned().collect()));
            }
            OpBody::Seal(b) => {
                meta.ballots = Some(Arc::new(self.election(&b.election.0)?.counted()))
            }
            OpBody::BundleProposal(b) => {
                meta.contributors = Some(self.check_proposal(op, b)?);
            }
            _ => {}
        }
        Ok(meta)
    }

    /// Checks that `op` may be applied to this state (the rules that hold both against the
    /// op's causal past and against the running state of the fold).
    pub fn authorize(&self, op: &SignedOp, causal: &dyn Causal) -> Result<(), Reason> {
        if let OpBody::Charter(_) = op.body() {
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
        let author = op.author();
        match op.body() {
            OpBody::Charter(_) => Ok(()),
            OpBody::Amendment(b) => self.authorize_amendment(author, b),
            OpBody::Invite(_) => self.steward(author),
            OpBody::Join(b) => self.authorize_join(op, b, charter),
            OpBody::Admit(b) => self.authorize_admit(author, b, charter),
            OpBody::Remove(b) => self.authorize_remove(op, b, charter, causal),
            OpBody::Leave(_) => self.member(author).map(|_| ()),
            OpBody::ConsentGrant(b) | OpBody::ConsentRevoke(b) => {
                self.authorize_consent(author, b, charter)
            }
            OpBody::ElectionOpen(b) => self.authorize_open(author, b, charter),
            OpBody::Ballot(b) => self.authorize_ballot(op, b),
            OpBody::Seal(b) => self.authorize_seal(op, b),
            OpBody::AgreementOffer(b) => self.authorize_offer(author, b, charter),
            OpBody::AgreementAccept(b) => self.authorize_accept(op, b),
            OpBody::AgreementCountersign(b) => self.authorize_countersign(author, b),
            OpBody::BundleProposal(b) => self.authorize_proposal(author, b),
            OpBody::BundleApproval(b) => self.authorize_approval(author, b),
            OpBody::PayoutStatement(b) => self.authorize_statement(author, b),
            OpBody::BundleReceipt(b) => self.authorize_receipt(op, b),
        }
    }

    /// Applies an op that [`State::authorize`] accepted.
    pub fn apply(&mut self, op: &SignedOp, causal: &dyn Causal) {
        let author = op.author_did().clone();
        let id = *op.id();
        match op.body() {
            OpBody::Charter(b) => self.apply_charter(author, id, b),
            OpBody::Amendment(b) => self.apply_amendment(author, id, b),
            OpBody::Invite(b) => self.apply_invite(op, b),
            OpBody::Join(b) => self.apply_join(author, id, b),
            OpBody::Admit(b) => self.apply_admit(id, b),
            OpBody::Remove(b) => self.apply_remove(author, id, b, causal),
            OpBody::Leave(_) => self.depart(&author, Departure::Left(id)),
            OpBody::ConsentGrant(b) => self.apply_consent(author, id, true, b, causal),
            OpBody::ConsentRevoke(b) => self.apply_consent(author, id, false, b, causal),
            OpBody::ElectionOpen(b) => self.apply_open(id, b, causal),
            OpBody::Ballot(b) => self.apply_ballot(author, id, b),
            OpBody::Seal(b) => self.apply_seal(author, id, b, causal),
            OpBody::AgreementOffer(b) => self.apply_offer(author, id, b),
            OpBody::AgreementAccept(b) => self.apply_accept(id, b),
            OpBody::AgreementCountersign(b) => self.apply_countersign(author, id, b),
            OpBody::BundleProposal(b) => self.apply_proposal(op, b, causal),
            OpBody::BundleApproval(b) => self.apply_approval(author, id, b, causal),
            OpBody::PayoutStatement(b) => self.apply_statement(author, id, b),
            OpBody::BundleReceipt(b) => self.apply_receipt(id, b),
        }
    }
}
