//! Proposals (amendments, removals by vote, join requests under a vote), elections, ballots,
//! the tellers' seals, and the enactment of a certified result.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use guild_core::syntax::{Datetime, Did};
use guild_core::{Cid, cids};
use imbl::{OrdMap, OrdSet};

use super::{Causal, Charter, Departure, ElectionKind, Outcome, Reason, Role, State, WHOLE_BP};
use crate::body::{
    AmendmentBody, BallotBody, CharterChanges, Choice, Count, OpenBody, SealBody, SealResult,
    VotingMethod,
};
use crate::op::SignedOp;
use crate::table::{Digest, digest_of, op_id};
use smallvec::SmallVec;

/// The result of counting a set of ballots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Each choice (a candidate, or `yes` / `no`) with its approvals, by choice.
    pub counts: Vec<(Choice, u64)>,
    /// The elected candidates in rank order (seat elections).
    pub elected: Vec<Did>,
    /// The outcome.
    pub outcome: Outcome,
}

impl Tally {
    /// The `result` a seal carries (`coop.guild.election.close#result`).
    pub fn to_result(&self) -> SealResult {
        SealResult {
            tally: self
                .counts
                .iter()
                .map(|(choice, n)| Count {
                    choice: choice.clone(),
                    approvals: *n,
                })
                .collect(),
            elected: Some(self.elected.clone()),
            outcome: Some(self.outcome.into()),
        }
    }
}

/// One ballot of a voter: its op's digest and the choices it approves.
pub type VoterBallot = (Digest, Box<[Choice]>);

/// One voter's ballots at their highest revision.
#[derive(Debug, Clone, PartialEq)]
pub struct VoterBallots {
    /// The highest revision seen.
    pub rev: u64,
    /// The ballots at that revision (op digest, approvals), in op id order, each once. Two or
    /// more void each other. (A vector: almost always one ballot, and an election's voters
    /// are copied into every state checkpoint that diverges from the tip; a `BTreeMap` leaf
    /// is ~1.4 KB even for one entry.) Each ballot is named by its op's 32-byte digest (an
    /// op id is a CIDv1 DAG-CBOR SHA-256; [`VoterBallots::ids`] gives the CIDs), a third of
    /// an in-memory CID: 28 000 voters in each of 9 elections held 16 MB of CIDs. The first
    /// ballot is held inline (one allocation per voter, not two; the 50 000-member restart
    /// went from 580–581 to 573–576 MiB).
    pub ballots: SmallVec<[VoterBallot; 1]>,
}

impl VoterBallots {
    /// The ballots' op ids, in order.
    pub fn ids(&self) -> impl Iterator<Item = Cid> + '_ {
        self.ballots.iter().map(|(d, _)| op_id(d))
    }
}

/// The ballots a seal counts: their op ids' 32-byte digests, sorted, each once (an
/// election of 28 000 voters' set is 0.9 MB; as a set of 96-byte CIDs it was ~2.7 MB).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BallotSet(Vec<Digest>);

impl BallotSet {
    /// A set of ballot op ids' digests, in any order.
    fn from_digests(mut digests: Vec<Digest>) -> Self {
        digests.sort_unstable();
        digests.dedup();
        BallotSet(digests)
    }

    /// How many ballots.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if it counts no ballot.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether it counts the ballot with this op id.
    pub fn contains(&self, id: &Cid) -> bool {
        digest_of(id).is_some_and(|d| self.0.binary_search(&d).is_ok())
    }

    /// The ballots' op ids, in ascending order of their bytes.
    pub fn ids(&self) -> impl Iterator<Item = Cid> + '_ {
        self.0.iter().map(op_id)
    }

    /// The set's CID, as a seal names it ([`super::ballot_set_cid`] of [`BallotSet::ids`]):
    /// the ids are already in byte order and each once (an op id's bytes order as its
    /// digest), so they are written as they are, not sorted again.
    pub fn cid(&self) -> Cid {
        super::links_list_cid(self.0.len(), self.ids())
    }
}

/// A set of ballot op ids (an id not of an op id's form, CIDv1 DAG-CBOR SHA-256, is left
/// out: no ballot has it).
impl FromIterator<Cid> for BallotSet {
    fn from_iter<I: IntoIterator<Item = Cid>>(ids: I) -> Self {
        BallotSet::from_digests(ids.into_iter().filter_map(|id| digest_of(&id)).collect())
    }
}

/// A certified result.
#[derive(Debug, Clone, PartialEq)]
pub struct Certified {
    /// The ballots counted (shared with the seals' [`super::Meta`]).
    pub ballots: Arc<BallotSet>,
    /// The result.
    pub tally: Tally,
    /// The seals that certified it (a majority of the tellers).
    pub seals: Vec<Cid>,
    /// How many members had voted when it was certified ([`Election::ballots`]'s size then:
    /// a certified election no longer keeps its voters' ballots, see [`Election::ballots`]).
    pub voters: u64,
}

/// A teller's seal as the election holds it: (seal op, ballot set, result).
pub type SealEntry = (Cid, Arc<BallotSet>, Arc<SealResult>);

/// An election or a vote on a proposal.
#[derive(Debug, Clone, PartialEq)]
pub struct Election {
    /// What it decides.
    pub kind: ElectionKind,
    /// Seats to fill (seat elections).
    pub seats: u32,
    /// The candidates (seat elections).
    pub candidates: Arc<BTreeSet<Did>>,
    /// The proposal voted on (amendment, admission, removal).
    pub proposal: Option<Cid>,
    /// The frozen electorate: the members in the open op's causal past.
    pub electorate: Arc<BTreeSet<Did>>,
    /// The tellers.
    pub tellers: Arc<BTreeSet<Did>>,
    /// The earliest close time, by the tellers' clocks.
    pub closes_after: Datetime,
    /// Ballots by voter, until the election is certified (then empty: its result is counted
    /// and [`Certified::voters`] says how many voted). Each voter's entry is shared, so that
    /// copying a node of the map (as every ballot after a state checkpoint does) copies no
    /// vectors.
    pub ballots: OrdMap<Did, Arc<VoterBallots>>,
    /// Each teller's seal: (seal op, ballot set, result).
    pub seals: OrdMap<Did, SealEntry>,
    /// Tellers who sealed twice with different contents: their seals count for nothing.
    pub equivocating_tellers: OrdSet<Did>,
    /// The certified result, once a majority of tellers sealed the same ballots and result.
    pub certified: Option<Arc<Certified>>,
}

impl Election {
    /// The ballots that count: each voter's single ballot at their highest revision (two
    /// ballots at the same highest revision void each other).
    pub fn counted(&self) -> BallotSet {
        BallotSet::from_digests(
            self.ballots
                .values()
                .filter(|v| v.ballots.len() == 1)
                .filter_map(|v| v.ballots.first().map(|(d, _)| *d))
                .collect(),
        )
    }

    /// Whether `choice` may be approved in this election.
    fn offers(&self, choice: &Choice) -> bool {
        match (self.kind, choice) {
            (ElectionKind::Stewards, Choice::Candidate(d)) => self.candidates.contains(d),
            (ElectionKind::Stewards, _) => false,
            (_, c) => matches!(c, Choice::Yes | Choice::No),
        }
    }

    /// Counts a ballot set. `id` is the election's op id (ties between candidates break by
    /// SHA-256 of the id's bytes and the candidate's DID, smallest first); `charter` gives
    /// the thresholds.
    pub fn tally(&self, id: &Cid, counted: &BallotSet, charter: &Charter) -> Tally {
        let voters = counted.len() as u64;
        let electorate = self.electorate.len() as u64;
        let turnout_ok = electorate > 0
            && voters * WHOLE_BP >= u64::from(charter.turnout_bp) * electorate
            && voters > 0;
        let mut counts: BTreeMap<Choice, u64> = match self.kind {
            ElectionKind::Stewards => self
                .candidates
                .iter()
                .map(|c| (Choice::Candidate(c.clone()), 0))
                .collect(),
            _ => BTreeMap::from([(Choice::Yes, 0), (Choice::No, 0)]),
        };
        // Each voter's ballots looked up in the set (a ballot is one voter's op): O(n log n),
        // not a search of every voter for each counted ballot. By digest, as the voters hold
        // them.
        let counted: rustc_hash::FxHashSet<&Digest> = counted.0.iter().collect();
        for v in self.ballots.values() {
            for (ballot, approvals) in &v.ballots {
                if !counted.contains(ballot) {
                    continue;
                }
                for choice in approvals {
                    if let Some(n) = counts.get_mut(choice) {
                        *n += 1;
                    }
                }
            }
        }
        let (elected, outcome) = match self.kind {
            ElectionKind::Stewards => {
                let mut ranked: Vec<(&Did, u64)> = counts
                    .iter()
                    .filter_map(|(c, n)| match c {
                        Choice::Candidate(d) if *n > 0 => Some((d, *n)),
                        _ => None,
                    })
                    .collect();
                ranked.sort_by(|(a, na), (b, nb)| {
                    nb.cmp(na)
                        .then_with(|| tie_key(id, a).cmp(&tie_key(id, b)))
                        .then_with(|| a.cmp(b))
                });
                let elected: Vec<Did> = ranked
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
                let yes = counts.get(&Choice::Yes).copied().unwrap_or(0);
                let no = counts.get(&Choice::No).copied().unwrap_or(0);
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
            // Choices in the order of their wire strings, as the seal lists them.
            counts: sorted_by_wire(counts),
            elected,
            outcome,
        }
    }
}

fn sorted_by_wire(counts: BTreeMap<Choice, u64>) -> Vec<(Choice, u64)> {
    let mut v: Vec<(Choice, u64)> = counts.into_iter().collect();
    v.sort_by(|(a, _), (b, _)| a.as_str().cmp(b.as_str()));
    v
}

/// The tie-break key of a candidate: SHA-256 of the election id's bytes and the DID.
fn tie_key(election: &Cid, candidate: &Did) -> [u8; 32] {
    let mut bytes = election.to_bytes();
    bytes.extend_from_slice(candidate.as_str().as_bytes());
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
    pub by: Did,
    /// The removal's target, or the candidate.
    pub member: Option<Did>,
    /// An amendment's changes.
    pub changes: Option<Arc<CharterChanges>>,
    /// Its status.
    pub status: ProposalStatus,
}

impl State {
    pub(super) fn election(&self, id: &Cid) -> Result<&Election, Reason> {
        self.elections.get(id).ok_or(Reason::UnknownRef("election"))
    }

    pub(super) fn authorize_amendment(
        &self,
        author: &str,
        b: &AmendmentBody,
    ) -> Result<(), Reason> {
        self.member(author)?;
        if b.changes.is_empty() {
            return Err(Reason::BadElection("an amendment changes nothing"));
        }
        Ok(())
    }

    pub(super) fn apply_amendment(&mut self, author: Did, id: Cid, b: &AmendmentBody) {
        self.proposals.insert(
            id,
            Proposal {
                kind: ElectionKind::Amendment,
                by: author,
                member: None,
                changes: Some(Arc::new(b.changes.clone())),
                status: ProposalStatus::Open,
            },
        );
    }

    pub(super) fn authorize_open(
        &self,
        author: &str,
        b: &OpenBody,
        charter: &Charter,
    ) -> Result<(), Reason> {
        self.member(author)?;
        if !b.method.is(VotingMethod::Approval) {
            return Err(Reason::BadElection("the only method is approval"));
        }
        let kind = b.kind.known().ok_or(Reason::BadElection("unknown kind"))?;
        match kind {
            ElectionKind::Stewards => {
                if b.proposal.is_some() {
                    return Err(Reason::BadElection("a seat election has no proposal"));
                }
                let seats = b.seats.unwrap_or(0);
                if seats < 1 || seats > i64::from(charter.seats.max(1)) {
                    return Err(Reason::BadElection("seats must be 1..=the charter's seats"));
                }
                let candidates = b.candidates.as_deref().unwrap_or(&[]);
                if candidates.is_empty() {
                    return Err(Reason::BadElection("a seat election needs candidates"));
                }
                let mut seen = BTreeSet::new();
                for c in candidates {
                    if !self.members.contains_key(c.as_str()) {
                        return Err(Reason::NotMember(c.to_string()));
                    }
                    if !seen.insert(c) {
                        return Err(Reason::BadElection("a candidate is named twice"));
                    }
                }
            }
            kind => {
                let id = b
                    .proposal
                    .ok_or(Reason::BadElection("a vote needs a proposal"))?;
                let p = self
                    .proposals
                    .get(&id.0)
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

    /// The open op's electorate and tellers must be those of its causal past; returns the
    /// frozen electorate.
    pub(super) fn check_open(&self, b: &OpenBody) -> Result<Arc<BTreeSet<Did>>, Reason> {
        if b.electorate.0 != self.electorate_cid() {
            return Err(Reason::WrongElectorate);
        }
        let tellers: BTreeSet<Did> = b.tellers.iter().cloned().collect();
        if tellers != self.tellers() {
            return Err(Reason::WrongTellers);
        }
        Ok(Arc::new(self.members.keys().cloned().collect()))
    }

    pub(super) fn apply_open(&mut self, id: Cid, b: &OpenBody, causal: &dyn Causal) {
        let electorate = causal
            .meta(&id)
            .and_then(|m| m.electorate.clone())
            .unwrap_or_else(|| Arc::new(self.members.keys().cloned().collect()));
        // authorize_open refused unknown kinds.
        let Some(kind) = b.kind.known() else { return };
        self.elections.insert(
            id,
            Election {
                kind,
                seats: b.seats.unwrap_or(0).clamp(0, 100) as u32,
                candidates: Arc::new(b.candidates.iter().flatten().cloned().collect()),
                proposal: b.proposal.map(|p| p.0),
                electorate,
                tellers: Arc::new(b.tellers.iter().cloned().collect()),
                closes_after: b.closes_after.clone(),
                ballots: OrdMap::new(),
                seals: OrdMap::new(),
                equivocating_tellers: OrdSet::new(),
                certified: None,
            },
        );
    }

    pub(super) fn authorize_ballot(&self, op: &SignedOp, b: &BallotBody) -> Result<(), Reason> {
        let author = op.author();
        self.member(author)?;
        let e = self.election(&b.election.0)?;
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
        let mut seen = BTreeSet::new();
        for a in &b.approvals {
            if !e.offers(a) || !seen.insert(a) {
                return Err(Reason::BadChoice(a.to_string()));
            }
        }
        if e.kind != ElectionKind::Stewards && b.approvals.len() > 1 {
            let all: Vec<&str> = b.approvals.iter().map(Choice::as_str).collect();
            return Err(Reason::BadChoice(all.join(",")));
        }
        Ok(())
    }

    pub(super) fn check_ballot(&self, author: &str, b: &BallotBody) -> Result<(), Reason> {
        let e = self.election(&b.election.0)?;
        if let Some(v) = e.ballots.get(author)
            && b.rev <= v.rev
        {
            return Err(Reason::StaleBallot {
                rev: b.rev,
                current: v.rev,
            });
        }
        Ok(())
    }

    pub(super) fn apply_ballot(&mut self, author: Did, id: Cid, b: &BallotBody) {
        // Every op id is one (`SignedOp` computes it from the op's bytes).
        let Some(d) = crate::table::digest_of(&id) else {
            return;
        };
        let Some(e) = self.elections.get_mut(&b.election.0) else {
            return;
        };
        let record = |entry: &mut VoterBallots| {
            if b.rev > entry.rev {
                entry.rev = b.rev;
                entry.ballots.clear();
            }
            if b.rev == entry.rev {
                match entry.ballots.binary_search_by(|(c, _)| c.cmp(&d)) {
                    Ok(i) => entry.ballots[i].1 = b.approvals.as_slice().into(),
                    Err(i) => entry.ballots.insert(i, (d, b.approvals.as_slice().into())),
                }
            }
        };
        // Two searches of the voters for a first ballot, one after (`imbl`'s `entry` makes
        // three and two: each ~16 DID comparisons among 28 000 voters).
        match e.ballots.get_mut(&author) {
            Some(entry) => record(Arc::make_mut(entry)),
            None => {
                let mut entry = VoterBallots {
                    rev: b.rev,
                    ballots: SmallVec::new(),
                };
                record(&mut entry);
                e.ballots.insert(author, Arc::new(entry));
            }
        }
    }

    pub(super) fn authorize_seal(&self, op: &SignedOp, b: &SealBody) -> Result<(), Reason> {
        let e = self.election(&b.election.0)?;
        if !e.tellers.contains(op.author()) {
            return Err(Reason::NotTeller(op.author().to_owned()));
        }
        if e.certified.is_some() {
            return Err(Reason::ElectionClosed);
        }
        if op.created_at().to_unix_micros() < e.closes_after.to_unix_micros() {
            return Err(Reason::TooEarly);
        }
        Ok(())
    }

    /// A seal must count exactly the ballots of its causal past (their set's CID and their
    /// number), and its result must be their count. A teller seals again only when its seal
    /// is outdated: ballots cast before the close reached it after it sealed. Returns the set.
    pub(super) fn check_seal(&self, author: &str, b: &SealBody) -> Result<Arc<BallotSet>, Reason> {
        let id = b.election.0;
        let e = self.election(&id)?;
        let counted = e.counted();
        let outdated = e
            .seals
            .get(author)
            .is_none_or(|(_, ballots, _)| **ballots != counted);
        if !outdated || e.equivocating_tellers.contains(author) {
            return Err(Reason::AlreadySealed(author.to_owned()));
        }
        if b.ballot_count != counted.len() as u64 {
            return Err(Reason::SealMismatch(
                "not the number of ballots of its causal past",
            ));
        }
        if b.ballot_set.0 != counted.cid() {
            return Err(Reason::SealMismatch("not the ballots of its causal past"));
        }
        let tally = e.tally(&id, &counted, self.charter()?);
        if b.result != tally.to_result() {
            return Err(Reason::SealMismatch("result is not the count"));
        }
        Ok(Arc::new(counted))
    }

    pub(super) fn apply_seal(&mut self, author: Did, id: Cid, b: &SealBody, causal: &dyn Causal) {
        let eid = b.election.0;
        let charter = self.charter.clone();
        let Some(e) = self.elections.get_mut(&eid) else {
            return;
        };
        // The set the seal's CID names, computed from its causal past when it entered.
        let Some(ballots) = causal.meta(&id).and_then(|m| m.ballots.clone()) else {
            return;
        };
        let result = Arc::new(b.result.clone());
        if e.equivocating_tellers.contains(&author) {
            return;
        }
        if let Some((earlier, bs, r)) = e.seals.get(&author) {
            // A teller's later seal, written after its earlier one, replaces it (the earlier
            // one was outdated by ballots that reached the teller after it sealed); two
            // different seals written concurrently are an equivocation.
            if !causal.is_ancestor(earlier, &id) {
                if *bs != ballots || *r != result {
                    e.seals.remove(&author);
                    e.equivocating_tellers.insert(author);
                }
                return;
            }
        }
        e.seals
            .insert(author, (id, Arc::clone(&ballots), Arc::clone(&result)));
        let agreeing: Vec<Cid> = e
            .seals
            .values()
            .filter(|(_, bs, r)| *bs == ballots && *r == result)
            .map(|(s, _, _)| *s)
            .collect();
        if agreeing.len() * 2 <= e.tellers.len() {
            return;
        }
        let Some(charter) = charter else { return };
        let tally = e.tally(&eid, &ballots, &charter);
        let voters = e.ballots.len() as u64;
        // Nothing reads a certified election's ballots again: later ballots and seals are
        // refused (`ElectionClosed`), and its result is counted. A 50 000-member
        // collective's elections kept ~43 MB of them.
        e.ballots = OrdMap::new();
        e.certified = Some(Arc::new(Certified {
            ballots,
            tally: tally.clone(),
            seals: agreeing,
            voters,
        }));
        let (kind, proposal) = (e.kind, e.proposal);
        self.enact(eid, id, kind, proposal, &tally);
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
            self.seat(&tally.elected);
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
                    let body = changes.apply_to(&charter.body);
                    let mut amendments = charter.amendments.clone();
                    amendments.push(pid);
                    self.charter = Some(Arc::new(Charter::from_body(body, amendments)));
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

    /// Makes the elected members who are still members the stewards (incumbents stay rather
    /// than leave the collective without a steward).
    fn seat(&mut self, elected: &[Did]) {
        let elected: BTreeSet<&str> = elected
            .iter()
            .map(Did::as_str)
            .filter(|d| self.members.contains_key(*d))
            .collect();
        if elected.is_empty() {
            return;
        }
        let dids: Vec<Did> = self.members.keys().cloned().collect();
        for did in dids {
            if let Some(m) = self.members.get_mut(&did) {
                m.role = if elected.contains(did.as_str()) {
                    Role::Steward
                } else {
                    Role::Member
                };
            }
        }
    }
}
