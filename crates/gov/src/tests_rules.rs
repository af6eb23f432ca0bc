//! Unit tests for elections, votes on proposals, agreements, bundles and payouts: each rule,
//! and each way an op is refused.

use std::collections::BTreeMap;

use guild_core::{Cid, Ipld, Keypair, cids};

use crate::log::Inserted;
use crate::op::{OpKind, SignedOp};
use crate::state::{AgreementStatus, ElectionKind, Outcome, ProposalStatus};
use crate::tests::{
    TEMPLATE, charter_fields, fields, grant_fields, int, invite_fields, join_fields, key,
    member_fields, obj, revoke_fields, s, t,
};
use crate::{Departure, Log, Op, Reason, Role};

/// A collective under test: the log, its founder `key(1)`, and a clock in seconds.
struct Col {
    log: Log,
    id: Cid,
    secs: i64,
}

impl Col {
    /// A collective whose charter is `charter_fields` with `change` applied.
    fn with(change: impl FnOnce(&mut BTreeMap<String, Ipld>)) -> Col {
        let mut f = charter_fields("invite-or-request", "steward");
        change(&mut f);
        let genesis = Op::sign(OpKind::Charter, None, f, &key(1), &[], &t(0)).unwrap();
        let id = *genesis.id();
        let mut log = Log::new(id);
        assert_eq!(log.insert(genesis, 0), Inserted::Applied);
        Col { log, id, secs: 0 }
    }

    fn new() -> Col {
        Col::with(|_| {})
    }

    /// Signs an op on the current heads.
    fn sign(&mut self, kind: OpKind, f: BTreeMap<String, Ipld>, by: &Keypair) -> SignedOp {
        self.secs += 1;
        let heads = self.log.heads();
        Op::sign(kind, Some(&self.id), f, by, &heads, &t(self.secs)).unwrap()
    }

    /// Signs, inserts, and asserts it applied.
    fn ok(&mut self, kind: OpKind, f: BTreeMap<String, Ipld>, by: &Keypair) -> SignedOp {
        let op = self.sign(kind, f, by);
        assert_eq!(
            self.log.insert(op.clone(), 0),
            Inserted::Applied,
            "{kind:?}"
        );
        op
    }

    /// Signs, inserts, and returns the rejection.
    fn err(&mut self, kind: OpKind, f: BTreeMap<String, Ipld>, by: &Keypair) -> Reason {
        let op = self.sign(kind, f, by);
        match self.log.insert(op, 0) {
            Inserted::Rejected(r) => r,
            other => panic!("{kind:?} was {other:?}"),
        }
    }

    /// Invites and admits `key(n)`.
    fn join(&mut self, n: u8) -> Keypair {
        let inv = self.ok(OpKind::Invite, invite_fields(n), &key(1));
        self.ok(OpKind::Join, join_fields(inv.id(), n), &key(n));
        key(n)
    }

    fn open(&mut self, kind: &str, extra: &[(&str, Ipld)], by: &Keypair) -> SignedOp {
        let f = self.open_fields(kind, extra);
        self.ok(OpKind::ElectionOpen, f, by)
    }

    fn open_fields(&self, kind: &str, extra: &[(&str, Ipld)]) -> BTreeMap<String, Ipld> {
        let st = self.log.state();
        let mut f = fields(&[
            ("kind", s(kind)),
            ("method", s("approval")),
            ("electorate", s(&st.electorate_cid().to_string())),
            (
                "tellers",
                Ipld::List(st.tellers().iter().map(|d| s(d.as_str())).collect()),
            ),
            ("closesAfter", s(t(self.secs + 1000).as_str())),
        ]);
        for (k, v) in extra {
            f.insert((*k).to_owned(), v.clone());
        }
        f
    }

    fn ballot(
        &mut self,
        election: &SignedOp,
        by: &Keypair,
        rev: i64,
        choices: &[&str],
    ) -> SignedOp {
        let f = ballot_fields(election, rev, choices);
        self.ok(OpKind::Ballot, f, by)
    }

    /// The seal a teller would write now: the counted ballots of the current state and
    /// their tally.
    fn seal_fields(&self, election: &SignedOp) -> BTreeMap<String, Ipld> {
        let st = self.log.state();
        let e = &st.elections[election.id()];
        let counted = e.counted();
        let tally = e.tally(election.id(), &counted, st.charter.as_ref().unwrap());
        fields(&[
            ("election", s(&election.id().to_string())),
            ("ballotSet", s(&counted.cid().to_string())),
            ("ballotCount", int(counted.len() as i64)),
            (
                "result",
                ipld_core::serde::to_ipld(tally.to_result()).unwrap(),
            ),
        ])
    }

    /// Moves the clock past every close time.
    fn later(&mut self) {
        self.secs += 2000;
    }
}

fn ballot_fields(election: &SignedOp, rev: i64, choices: &[&str]) -> BTreeMap<String, Ipld> {
    fields(&[
        ("election", s(&election.id().to_string())),
        ("rev", int(rev)),
        (
            "approvals",
            Ipld::List(choices.iter().map(|c| s(c)).collect()),
        ),
    ])
}

fn dids(keys: &[&Keypair]) -> Ipld {
    Ipld::List(keys.iter().map(|k| s(&k.did())).collect())
}

fn set_quorum(f: &mut BTreeMap<String, Ipld>, pairs: &[(&str, i64)]) {
    let Some(Ipld::Map(q)) = f.get_mut("quorum") else {
        panic!()
    };
    for (k, v) in pairs {
        q.insert((*k).to_owned(), int(*v));
    }
}

/// Founder plus members 2, 3, 4; a seat election (2 seats, candidates 2 and 3) told by the
/// founder; everyone votes; the founder seals. Returns the collective and the election.
fn elected_2_and_3() -> (Col, SignedOp) {
    let mut c = Col::new();
    let (m2, m3, m4) = (c.join(2), c.join(3), c.join(4));
    let e = c.open(
        "stewards",
        &[("seats", int(2)), ("candidates", dids(&[&m2, &m3]))],
        &m4,
    );
    let (d2, d3) = (m2.did(), m3.did());
    c.ballot(&e, &key(1), 1, &[&d2]);
    c.ballot(&e, &m2, 1, &[&d2, &d3]);
    c.ballot(&e, &m3, 1, &[&d3]);
    c.ballot(&e, &m4, 1, &[&d2, &d3]);
    c.later();
    let f = c.seal_fields(&e);
    c.ok(OpKind::Seal, f, &key(1));
    (c, e)
}

#[test]
fn a_certified_election_changes_the_stewards() {
    let (c, e) = elected_2_and_3();
    let st = c.log.state();
    let el = &st.elections[e.id()];
    let cert = el.certified.as_ref().expect("certified by the only teller");
    assert_eq!(cert.tally.outcome, Outcome::Adopted);
    let counts: BTreeMap<String, u64> = cert
        .tally
        .counts
        .iter()
        .map(|(c, n)| (c.to_string(), *n))
        .collect();
    assert_eq!(
        counts,
        BTreeMap::from([(key(2).did(), 3), (key(3).did(), 3)])
    );
    assert_eq!(cert.ballots.len(), 4);
    // Counted, the ballots themselves are let go; how many voted stays.
    assert_eq!(cert.voters, 4);
    assert!(el.ballots.is_empty());
    assert_eq!(st.role(&key(2).did()), Some(Role::Steward));
    assert_eq!(st.role(&key(3).did()), Some(Role::Steward));
    // The founder was the first steward until the first election closed.
    assert_eq!(st.role(&key(1).did()), Some(Role::Member));
    assert_eq!(st.role(&key(4).did()), Some(Role::Member));
}

#[test]
fn open_must_name_the_membership_and_the_stewards() {
    let mut c = Col::new();
    let m2 = c.join(2);
    let mut f = c.open_fields(
        "stewards",
        &[("seats", int(1)), ("candidates", dids(&[&m2]))],
    );
    f.insert(
        "electorate".into(),
        s(&cids::cid_for_cbor(b"\x80").to_string()),
    );
    assert_eq!(c.err(OpKind::ElectionOpen, f, &m2), Reason::WrongElectorate);
    let mut f = c.open_fields(
        "stewards",
        &[("seats", int(1)), ("candidates", dids(&[&m2]))],
    );
    f.insert("tellers".into(), dids(&[&m2]));
    assert_eq!(c.err(OpKind::ElectionOpen, f, &m2), Reason::WrongTellers);
    let f = c.open_fields(
        "stewards",
        &[("seats", int(4)), ("candidates", dids(&[&m2]))],
    );
    assert!(matches!(
        c.err(OpKind::ElectionOpen, f, &m2),
        Reason::BadElection(_)
    ));
    let f = c.open_fields(
        "stewards",
        &[("seats", int(1)), ("candidates", dids(&[&key(9)]))],
    );
    assert_eq!(
        c.err(OpKind::ElectionOpen, f, &m2),
        Reason::NotMember(key(9).did())
    );
    let f = c.open_fields("amendment", &[("proposal", s(&c.id.to_string()))]);
    assert_eq!(
        c.err(OpKind::ElectionOpen, f, &m2),
        Reason::UnknownRef("proposal")
    );
    // A stranger cannot open one.
    let f = c.open_fields(
        "stewards",
        &[("seats", int(1)), ("candidates", dids(&[&m2]))],
    );
    assert_eq!(
        c.err(OpKind::ElectionOpen, f, &key(9)),
        Reason::UnknownAuthor(key(9).did())
    );
}

#[test]
fn ballots_come_from_the_frozen_electorate() {
    let mut c = Col::new();
    let m2 = c.join(2);
    let e = c.open(
        "stewards",
        &[("seats", int(1)), ("candidates", dids(&[&m2]))],
        &m2,
    );
    // A member who joined after the open op is not in the electorate.
    let m3 = c.join(3);
    let d2 = m2.did();
    assert_eq!(
        c.err(OpKind::Ballot, ballot_fields(&e, 1, &[&d2]), &m3),
        Reason::NotInElectorate(m3.did())
    );
    // A stranger is not a member at all.
    assert_eq!(
        c.err(OpKind::Ballot, ballot_fields(&e, 1, &[&d2]), &key(9)),
        Reason::UnknownAuthor(key(9).did())
    );
    // Choices must be candidates, once each.
    let d1 = key(1).did();
    assert_eq!(
        c.err(OpKind::Ballot, ballot_fields(&e, 1, &[&d1]), &m2),
        Reason::BadChoice(d1.clone())
    );
    assert_eq!(
        c.err(OpKind::Ballot, ballot_fields(&e, 1, &[&d2, &d2]), &m2),
        Reason::BadChoice(d2.clone())
    );
    // A voter's later ballot replaces the earlier; a stale rev is refused.
    c.ballot(&e, &m2, 1, &[&d2]);
    let b2 = c.ballot(&e, &m2, 2, &[]);
    assert_eq!(
        c.err(OpKind::Ballot, ballot_fields(&e, 2, &[&d2]), &m2),
        Reason::StaleBallot { rev: 2, current: 2 }
    );
    let st = c.log.state();
    assert_eq!(
        st.elections[e.id()].counted().ids().collect::<Vec<_>>(),
        vec![*b2.id()]
    );
}

#[test]
fn equivocating_ballots_void_each_other() {
    let mut c = Col::new();
    let m2 = c.join(2);
    let e = c.open(
        "stewards",
        &[("seats", int(1)), ("candidates", dids(&[&m2]))],
        &m2,
    );
    let d2 = m2.did();
    let heads = c.log.heads();
    // Two different ballots with the same rev, on two devices (concurrent).
    let a = Op::sign(
        OpKind::Ballot,
        Some(&c.id),
        ballot_fields(&e, 1, &[&d2]),
        &m2,
        &heads,
        &t(50),
    )
    .unwrap();
    let b = Op::sign(
        OpKind::Ballot,
        Some(&c.id),
        ballot_fields(&e, 1, &[]),
        &m2,
        &heads,
        &t(51),
    )
    .unwrap();
    let f1 = c.ballot(&e, &key(1), 1, &[&d2]);
    assert_eq!(c.log.insert(a.clone(), 0), Inserted::Applied);
    assert_eq!(c.log.insert(b.clone(), 0), Inserted::Applied);
    let st = c.log.state();
    let el = &st.elections[e.id()];
    assert_eq!(el.counted().ids().collect::<Vec<_>>(), vec![*f1.id()]);
    // A seal counting one of the two is refused.
    c.later();
    let mut f = c.seal_fields(&e);
    f.insert(
        "ballotSet".into(),
        s(&crate::ballot_set_cid([f1.id(), a.id()]).to_string()),
    );
    f.insert("ballotCount".into(), int(2));
    assert!(matches!(
        c.err(OpKind::Seal, f, &key(1)),
        Reason::SealMismatch(_)
    ));
    // The right seal certifies with the founder's ballot only.
    let f = c.seal_fields(&e);
    c.ok(OpKind::Seal, f, &key(1));
    let st = c.log.state();
    let cert = st.elections[e.id()].certified.clone().unwrap();
    assert_eq!(cert.ballots.ids().collect::<Vec<_>>(), vec![*f1.id()]);
}

#[test]
fn seals_are_checked() {
    let mut c = Col::new();
    let m2 = c.join(2);
    let e = c.open(
        "stewards",
        &[("seats", int(1)), ("candidates", dids(&[&m2]))],
        &m2,
    );
    let d2 = m2.did();
    c.ballot(&e, &m2, 1, &[&d2]);
    // Before the close time.
    let f = c.seal_fields(&e);
    assert_eq!(c.err(OpKind::Seal, f, &key(1)), Reason::TooEarly);
    c.later();
    // By a member who is not a teller.
    let f = c.seal_fields(&e);
    assert_eq!(c.err(OpKind::Seal, f, &m2), Reason::NotTeller(m2.did()));
    // With a result that is not the count.
    let mut f = c.seal_fields(&e);
    f.insert(
        "result".into(),
        obj(&[("tally", Ipld::List(vec![])), ("outcome", s("adopted"))]),
    );
    assert!(matches!(
        c.err(OpKind::Seal, f, &key(1)),
        Reason::SealMismatch(_)
    ));
    // Missing a ballot of its past.
    let mut f = c.seal_fields(&e);
    f.insert(
        "ballotSet".into(),
        s(&crate::ballot_set_cid([]).to_string()),
    );
    f.insert("ballotCount".into(), int(0));
    assert!(matches!(
        c.err(OpKind::Seal, f, &key(1)),
        Reason::SealMismatch(_)
    ));
    let f = c.seal_fields(&e);
    c.ok(OpKind::Seal, f, &key(1));
    // Once certified: no more seals, no more ballots.
    let f = c.seal_fields(&e);
    assert_eq!(c.err(OpKind::Seal, f, &key(1)), Reason::ElectionClosed);
    assert_eq!(
        c.err(OpKind::Ballot, ballot_fields(&e, 2, &[]), &m2),
        Reason::ElectionClosed
    );
}

/// Three stewards (1, 2, 3) after a first election told by the founder.
fn three_stewards() -> (Col, Keypair, Keypair) {
    let mut c = Col::new();
    let (m2, m3) = (c.join(2), c.join(3));
    let first = c.open(
        "stewards",
        &[
            ("seats", int(3)),
            ("candidates", dids(&[&key(1), &m2, &m3])),
        ],
        &key(1),
    );
    let all = [key(1).did(), m2.did(), m3.did()];
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    c.ballot(&first, &key(1), 1, &refs);
    c.later();
    let f = c.seal_fields(&first);
    c.ok(OpKind::Seal, f, &key(1));
    assert_eq!(c.log.state().stewards().count(), 3);
    (c, m2, m3)
}

#[test]
fn a_minority_of_seals_certifies_nothing_and_incumbents_stay() {
    let (mut c, m2, m3) = three_stewards();

    // Now elect one seat; tellers are the three stewards.
    let second = c.open(
        "stewards",
        &[("seats", int(1)), ("candidates", dids(&[&m2]))],
        &m3,
    );
    assert_eq!(c.log.state().elections[second.id()].tellers.len(), 3);
    let d2 = m2.did();
    c.ballot(&second, &m3, 1, &[&d2]);
    c.later();
    let f = c.seal_fields(&second);
    c.ok(OpKind::Seal, f.clone(), &key(1));
    let st = c.log.state();
    assert!(st.elections[second.id()].certified.is_none());
    assert_eq!(st.stewards().count(), 3, "incumbents stay");
    // A second teller sealing the same set and result makes a majority.
    c.ok(OpKind::Seal, f, &m2);
    let st = c.log.state();
    assert!(st.elections[second.id()].certified.is_some());
    assert_eq!(st.stewards().collect::<Vec<_>>(), vec![d2.as_str()]);
    // A teller sealing twice is refused.
    let f = c.seal_fields(&second);
    assert!(matches!(
        c.err(OpKind::Seal, f, &key(1)),
        Reason::ElectionClosed | Reason::AlreadySealed(_)
    ));
}

#[test]
fn ties_break_by_hash_of_election_and_candidate() {
    let mut c = Col::new();
    let (m2, m3) = (c.join(2), c.join(3));
    let e = c.open(
        "stewards",
        &[("seats", int(1)), ("candidates", dids(&[&m2, &m3]))],
        &key(1),
    );
    let (d2, d3) = (m2.did(), m3.did());
    c.ballot(&e, &m2, 1, &[&d2]);
    c.ballot(&e, &m3, 1, &[&d3]);
    c.later();
    let f = c.seal_fields(&e);
    c.ok(OpKind::Seal, f, &key(1));
    let key_of = |d: &str| {
        let mut b = e.id().to_bytes();
        b.extend_from_slice(d.as_bytes());
        cids::sha256(&b)
    };
    let expected = if key_of(&d2) < key_of(&d3) { &d2 } else { &d3 };
    let st = c.log.state();
    let cert = st.elections[e.id()].certified.clone().unwrap();
    assert_eq!(
        cert.tally
            .elected
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>(),
        vec![expected.clone()]
    );
    assert_eq!(st.role(expected), Some(Role::Steward));
}

#[test]
fn no_quorum_changes_nothing() {
    // Turnout needs 30 % of 4 voters: one ballot is not enough.
    let mut c = Col::new();
    let (m2, _m3, _m4) = (c.join(2), c.join(3), c.join(4));
    let e = c.open(
        "stewards",
        &[("seats", int(1)), ("candidates", dids(&[&m2]))],
        &m2,
    );
    let d2 = m2.did();
    c.ballot(&e, &m2, 1, &[&d2]);
    c.later();
    let f = c.seal_fields(&e);
    c.ok(OpKind::Seal, f, &key(1));
    let st = c.log.state();
    let cert = st.elections[e.id()].certified.clone().unwrap();
    assert_eq!(cert.tally.outcome, Outcome::NoQuorum);
    assert_eq!(st.role(&key(1).did()), Some(Role::Steward));
    assert_eq!(st.role(&d2), Some(Role::Member));
}

#[test]
fn an_amendment_is_adopted_by_vote() {
    let mut c = Col::new();
    let m2 = c.join(2);
    let changes = obj(&[("name", s("Renamed"))]);
    let am = c.ok(OpKind::Amendment, fields(&[("changes", changes)]), &m2);
    // An amendment that changes nothing is refused.
    assert!(matches!(
        c.err(OpKind::Amendment, fields(&[("changes", obj(&[]))]), &m2),
        Reason::BadElection(_)
    ));
    assert_eq!(c.log.state().charter.unwrap().name, "Test collective");
    let e = c.open("amendment", &[("proposal", s(&am.id().to_string()))], &m2);
    // Proposal votes take yes or no, one of them.
    assert_eq!(
        c.err(OpKind::Ballot, ballot_fields(&e, 1, &["maybe"]), &m2),
        Reason::BadChoice("maybe".into())
    );
    assert!(matches!(
        c.err(OpKind::Ballot, ballot_fields(&e, 1, &["yes", "no"]), &m2),
        Reason::BadChoice(_)
    ));
    c.ballot(&e, &m2, 1, &["yes"]);
    c.ballot(&e, &key(1), 1, &["no"]);
    c.later();
    let f = c.seal_fields(&e);
    c.ok(OpKind::Seal, f, &key(1));
    // 1 yes of 2 = 50 % ≥ the charter's 50 % amendment threshold.
    let st = c.log.state();
    let charter = st.charter.clone().unwrap();
    assert_eq!(charter.name, "Renamed");
    assert_eq!(charter.amendments, vec![*am.id()]);
    assert_eq!(
        st.proposals[am.id()].status,
        ProposalStatus::Adopted(*e.id())
    );
    // A decided proposal cannot be voted on again.
    let f = c.open_fields("amendment", &[("proposal", s(&am.id().to_string()))]);
    assert!(matches!(
        c.err(OpKind::ElectionOpen, f, &m2),
        Reason::BadElection(_)
    ));
}

#[test]
fn an_amendment_below_its_threshold_is_rejected() {
    let mut c = Col::with(|f| set_quorum(f, &[("amendment", 6700)]));
    let m2 = c.join(2);
    let am = c.ok(
        OpKind::Amendment,
        fields(&[("changes", obj(&[("name", s("Renamed"))]))]),
        &m2,
    );
    let e = c.open("amendment", &[("proposal", s(&am.id().to_string()))], &m2);
    c.ballot(&e, &m2, 1, &["yes"]);
    c.ballot(&e, &key(1), 1, &["no"]);
    c.later();
    let f = c.seal_fields(&e);
    c.ok(OpKind::Seal, f, &key(1));
    let st = c.log.state();
    assert_eq!(
        st.elections[e.id()]
            .certified
            .as_ref()
            .unwrap()
            .tally
            .outcome,
        Outcome::Rejected
    );
    assert_eq!(st.charter.unwrap().name, "Test collective");
    assert_eq!(st.proposals[am.id()].status, ProposalStatus::Open);
}

#[test]
fn admission_by_vote() {
    let mut c = Col::with(|f| {
        f.insert(
            "admission".into(),
            obj(&[("policy", s("invite-or-request")), ("approval", s("vote"))]),
        );
    });
    let m2 = c.join(2);
    let cand = key(5);
    let join = c.ok(OpKind::Join, BTreeMap::new(), &cand);
    let mut f = fields(&[("member", s(&cand.did()))]);
    f.insert("join".into(), s(&join.id().to_string()));
    assert_eq!(c.err(OpKind::Admit, f, &key(1)), Reason::VoteRequired);
    let e = c.open("admission", &[("proposal", s(&join.id().to_string()))], &m2);
    assert_eq!(
        c.log.state().elections[e.id()].kind,
        ElectionKind::Admission
    );
    c.ballot(&e, &m2, 1, &["yes"]);
    c.ballot(&e, &key(1), 1, &["yes"]);
    c.later();
    let f = c.seal_fields(&e);
    let seal = c.ok(OpKind::Seal, f, &key(1));
    let st = c.log.state();
    assert_eq!(st.members[cand.did().as_str()].since(), *seal.id());
    assert!(st.candidates.is_empty());
}

#[test]
fn removal_by_vote() {
    let mut c = Col::with(|f| set_quorum(f, &[("removal", 6000)]));
    let (m2, m3) = (c.join(2), c.join(3));
    // Under a removal vote, a remove op is a proposal: nothing happens yet.
    let rm = c.ok(OpKind::Remove, member_fields(&m3), &m2);
    assert!(c.log.state().members.contains_key(m3.did().as_str()));
    let e = c.open("removal", &[("proposal", s(&rm.id().to_string()))], &m2);
    c.ballot(&e, &m2, 1, &["yes"]);
    c.ballot(&e, &key(1), 1, &["yes"]);
    c.ballot(&e, &m3, 1, &["no"]);
    c.later();
    let f = c.seal_fields(&e);
    let seal = c.ok(OpKind::Seal, f, &key(1));
    let st = c.log.state();
    assert!(!st.members.contains_key(m3.did().as_str()));
    assert_eq!(
        st.departed[m3.did().as_str()],
        Departure::Removed(*seal.id())
    );
    // The removed member is cut off.
    assert_eq!(
        c.err(OpKind::ConsentGrant, grant_fields(1), &m3),
        Reason::UnknownAuthor(m3.did())
    );
}

fn offer_fields(builder: &Keypair) -> BTreeMap<String, Ipld> {
    fields(&[
        ("builder", s(&builder.did())),
        ("template", s(TEMPLATE)),
        ("terms", crate::tests::licence_template(TEMPLATE)),
    ])
}

/// Offer to builder `key(20)`, accepted; returns (offer, accept).
fn offered_and_accepted(c: &mut Col) -> (SignedOp, SignedOp) {
    let offer = c.ok(OpKind::AgreementOffer, offer_fields(&key(20)), &key(1));
    let accept = c.ok(
        OpKind::AgreementAccept,
        fields(&[("offer", s(&offer.id().to_string()))]),
        &key(20),
    );
    (offer, accept)
}

fn countersign_fields(offer: &SignedOp, accept: &SignedOp) -> BTreeMap<String, Ipld> {
    fields(&[
        ("offer", s(&offer.id().to_string())),
        ("accept", s(&accept.id().to_string())),
    ])
}

#[test]
fn agreements_need_the_builder_and_a_quorum_of_stewards() {
    // Two stewards, two countersignatures.
    let mut c = Col::with(|f| set_quorum(f, &[("countersignatures", 2)]));
    let m2 = c.join(2);
    let e = c.open(
        "stewards",
        &[("seats", int(2)), ("candidates", dids(&[&key(1), &m2]))],
        &key(1),
    );
    let (d1, d2) = (key(1).did(), m2.did());
    c.ballot(&e, &key(1), 1, &[&d1, &d2]);
    c.ballot(&e, &m2, 1, &[&d1, &d2]);
    c.later();
    let f = c.seal_fields(&e);
    c.ok(OpKind::Seal, f, &key(1));
    assert_eq!(c.log.state().quorum(), 2);
    let m3 = c.join(3);

    // Offers come from stewards, to builders who are not members.
    assert_eq!(
        c.err(OpKind::AgreementOffer, offer_fields(&key(20)), &m3),
        Reason::NotSteward(m3.did())
    );
    assert_eq!(
        c.err(OpKind::AgreementOffer, offer_fields(&m3), &key(1)),
        Reason::NotBuilder(m3.did())
    );
    let mut f = offer_fields(&key(20));
    f.insert("template".into(), s("eval-public"));
    assert_eq!(
        c.err(OpKind::AgreementOffer, f, &key(1)),
        Reason::UnknownTemplate("eval-public".into())
    );
    let offer = c.ok(OpKind::AgreementOffer, offer_fields(&key(20)), &key(1));
    let accept_f = fields(&[("offer", s(&offer.id().to_string()))]);
    // Only the builder accepts; the builder is not a member.
    assert_eq!(
        c.err(OpKind::AgreementAccept, accept_f.clone(), &m3),
        Reason::NotBuilder(m3.did())
    );
    assert_eq!(
        c.err(OpKind::ConsentGrant, grant_fields(1), &key(20)),
        Reason::UnknownAuthor(key(20).did())
    );
    // An evaluation set the stewards cannot value with is refused, and changes nothing (a K
    // outside 1..=100 already breaks the lexicon; an unknown metric is lexicon-valid, an
    // open set, and the rule refuses it).
    let with_eval = |metric: &str, points: usize| {
        let mut f = accept_f.clone();
        let point = obj(&[("label", s("stars")), ("text", s("the moon at night"))]);
        f.insert(
            "evaluation".into(),
            obj(&[
                ("k", int(3)),
                ("metric", s(metric)),
                ("points", Ipld::List(vec![point; points])),
            ]),
        );
        f
    };
    assert_eq!(
        c.err(OpKind::AgreementAccept, with_eval("manhattan", 3), &key(20)),
        Reason::BadEvaluation("the metric is cosine or l2")
    );
    let accept = c.ok(OpKind::AgreementAccept, with_eval("cosine", 3), &key(20));
    assert_eq!(
        c.err(OpKind::AgreementAccept, accept_f, &key(20)),
        Reason::AgreementState("already accepted")
    );
    // One countersignature of two: not in force, so no bundle.
    c.ok(
        OpKind::AgreementCountersign,
        countersign_fields(&offer, &accept),
        &key(1),
    );
    assert_eq!(
        c.err(
            OpKind::AgreementCountersign,
            countersign_fields(&offer, &accept),
            &key(1)
        ),
        Reason::AlreadySigned(key(1).did())
    );
    assert_eq!(
        c.log.state().agreements[offer.id()].status,
        AgreementStatus::Accepted(*accept.id())
    );
    let f = proposal_fields(&c, &offer, &[]);
    assert_eq!(
        c.err(OpKind::BundleProposal, f, &key(1)),
        Reason::AgreementNotInForce
    );
    let cs = c.ok(
        OpKind::AgreementCountersign,
        countersign_fields(&offer, &accept),
        &m2,
    );
    assert_eq!(
        c.log.state().agreements[offer.id()].status,
        AgreementStatus::InForce(*cs.id())
    );
}

#[test]
fn an_offer_lapses() {
    let mut c = Col::new();
    let mut f = offer_fields(&key(20));
    f.insert("expiresAt".into(), s(t(5).as_str()));
    let offer = c.ok(OpKind::AgreementOffer, f, &key(1));
    c.later();
    assert_eq!(
        c.err(
            OpKind::AgreementAccept,
            fields(&[("offer", s(&offer.id().to_string()))]),
            &key(20)
        ),
        Reason::OfferExpired
    );
}

/// A bundle proposal's fields on the current heads.
fn proposal_fields(c: &Col, offer: &SignedOp, replicas: &[&Keypair]) -> BTreeMap<String, Ipld> {
    let heads = c.log.heads();
    let replicas = replicas
        .iter()
        .map(|k| {
            obj(&[
                ("did", s(&k.did())),
                ("rev", s("3jzfcijpj2z2a")),
                ("commit", s(&cids::cid_for_cbor(b"\xa0").to_string())),
            ])
        })
        .collect();
    fields(&[
        ("agreement", s(&offer.id().to_string())),
        ("kind", s("training")),
        (
            "cut",
            obj(&[
                (
                    "heads",
                    Ipld::List(heads.iter().map(|h| s(&h.to_string())).collect()),
                ),
                ("replicas", Ipld::List(replicas)),
            ]),
        ),
    ])
}

fn approval_fields(proposal: &SignedOp, manifest: &[u8]) -> BTreeMap<String, Ipld> {
    fields(&[
        ("proposal", s(&proposal.id().to_string())),
        ("manifest", s(&cids::cid_for_raw(manifest).to_string())),
    ])
}

/// A collective with member 2 consenting, an agreement in force (one steward, quorum 1).
fn in_force() -> (Col, Keypair, SignedOp) {
    let mut c = Col::new();
    let m2 = c.join(2);
    c.ok(OpKind::ConsentGrant, grant_fields(1), &m2);
    let m3 = c.join(3);
    let _ = m3;
    let (offer, accept) = offered_and_accepted(&mut c);
    c.ok(
        OpKind::AgreementCountersign,
        countersign_fields(&offer, &accept),
        &key(1),
    );
    (c, m2, offer)
}

#[test]
fn bundles_are_cut_from_their_prev_and_sealed_at_quorum() {
    let (mut c, m2, offer) = in_force();
    // The cut's heads must be the proposal's prev.
    let mut f = proposal_fields(&c, &offer, &[&m2]);
    if let Some(Ipld::Map(cut)) = f.get_mut("cut") {
        cut.insert("heads".into(), Ipld::List(vec![s(&c.id.to_string())]));
    }
    assert!(matches!(
        c.err(OpKind::BundleProposal, f, &key(1)),
        Reason::BadCut(_)
    ));
    // Replicas only of members whose consent covers the template.
    let f = proposal_fields(&c, &offer, &[&key(3)]);
    assert!(matches!(
        c.err(OpKind::BundleProposal, f, &key(1)),
        Reason::BadCut(_)
    ));
    // Only stewards propose.
    let f = proposal_fields(&c, &offer, &[&m2]);
    assert_eq!(
        c.err(OpKind::BundleProposal, f, &m2),
        Reason::NotSteward(m2.did())
    );
    let f = proposal_fields(&c, &offer, &[&m2]);
    let p = c.ok(OpKind::BundleProposal, f, &key(1));
    let st = c.log.state();
    let b = &st.bundles[p.id()];
    assert_eq!(
        b.contributors
            .keys()
            .map(|d| d.to_string())
            .collect::<Vec<_>>(),
        vec![m2.did()]
    );
    assert_eq!(b.heads, p.prev().to_vec());
    c.ok(
        OpKind::BundleApproval,
        approval_fields(&p, b"manifest"),
        &key(1),
    );
    let st = c.log.state();
    let (manifest, approvals) = st.bundles[p.id()].sealed.clone().unwrap();
    assert_eq!(manifest, cids::cid_for_raw(b"manifest"));
    assert_eq!(approvals.len(), 1);
    assert_eq!(
        c.err(
            OpKind::BundleApproval,
            approval_fields(&p, b"manifest"),
            &key(1)
        ),
        Reason::BundleState("sealed")
    );
}

#[test]
fn revocation_wins_over_a_concurrent_bundle() {
    let (mut c, m2, offer) = in_force();
    let f = proposal_fields(&c, &offer, &[&m2]);
    let p = c.ok(OpKind::BundleProposal, f, &key(1));
    let heads = c.log.heads();
    // Concurrently: the steward approves, the member revokes.
    let approve = Op::sign(
        OpKind::BundleApproval,
        Some(&c.id),
        approval_fields(&p, b"m"),
        &key(1),
        &heads,
        &t(60),
    )
    .unwrap();
    let revoke = Op::sign(
        OpKind::ConsentRevoke,
        Some(&c.id),
        revoke_fields(2),
        &m2,
        &heads,
        &t(60),
    )
    .unwrap();
    let mut a = c.log.clone();
    let mut b = c.log.clone();
    assert_eq!(a.insert(approve.clone(), 0), Inserted::Applied);
    assert_eq!(a.insert(revoke.clone(), 0), Inserted::Applied);
    assert_eq!(b.insert(revoke.clone(), 0), Inserted::Applied);
    assert_eq!(b.insert(approve.clone(), 0), Inserted::Applied);
    assert_eq!(a.state(), b.state());
    let bundle = &a.state().bundles[p.id()];
    assert_eq!(bundle.voided, Some(*revoke.id()));

    // An approval that saw a revocation made after the cut is refused.
    let f = approval_fields(&p, b"m2");
    let mut c2 = Col {
        log: b,
        id: c.id,
        secs: 100,
    };
    assert_eq!(
        c2.err(OpKind::BundleApproval, f, &key(1)),
        Reason::BundleState("void")
    );

    // A revocation after the seal (it saw the seal) does not void the bundle.
    let (mut c, m2, offer) = in_force();
    let f = proposal_fields(&c, &offer, &[&m2]);
    let p = c.ok(OpKind::BundleProposal, f, &key(1));
    c.ok(OpKind::BundleApproval, approval_fields(&p, b"m"), &key(1));
    c.ok(OpKind::ConsentRevoke, revoke_fields(2), &m2);
    let st = c.log.state();
    assert!(st.bundles[p.id()].voided.is_none());
    assert!(st.bundles[p.id()].sealed.is_some());
    assert!(st.effective_consent(&m2.did(), TEMPLATE).is_none());
}

#[test]
fn receipts_come_from_the_builder_for_what_its_agreement_delivered_once() {
    let (mut c, m2, offer) = in_force();
    let f = proposal_fields(&c, &offer, &[&m2]);
    let p = c.ok(OpKind::BundleProposal, f, &key(1));
    c.ok(OpKind::BundleApproval, approval_fields(&p, b"m"), &key(1));
    let revoke = c.ok(OpKind::ConsentRevoke, revoke_fields(2), &m2);
    let manifest = cids::cid_for_raw(b"m").to_string();
    let agreement = offer.id().to_string();
    let bundle_f = || fields(&[("agreement", s(&agreement)), ("bundle", s(&manifest))]);
    let revoke_f = || {
        fields(&[
            ("agreement", s(&agreement)),
            ("revoke", s(&revoke.id().to_string())),
        ])
    };
    // Only the agreement's builder acknowledges.
    assert_eq!(
        c.err(OpKind::BundleReceipt, bundle_f(), &key(1)),
        Reason::NotBuilder(key(1).did())
    );
    // Only what was delivered: a sealed bundle of the agreement, a revoke of its template.
    let f = fields(&[
        ("agreement", s(&agreement)),
        ("bundle", s(&cids::cid_for_raw(b"other").to_string())),
    ]);
    assert!(matches!(
        c.err(OpKind::BundleReceipt, f, &key(20)),
        Reason::BadReceipt(_)
    ));
    let f = fields(&[
        ("agreement", s(&agreement)),
        ("revoke", s(&p.id().to_string())),
    ]);
    assert!(matches!(
        c.err(OpKind::BundleReceipt, f, &key(20)),
        Reason::BadReceipt(_)
    ));
    // Exactly one subject.
    let mut both = bundle_f();
    both.insert("revoke".into(), s(&revoke.id().to_string()));
    assert!(matches!(
        c.err(OpKind::BundleReceipt, both, &key(20)),
        Reason::BadReceipt(_)
    ));
    let r1 = c.ok(OpKind::BundleReceipt, bundle_f(), &key(20));
    let r2 = c.ok(OpKind::BundleReceipt, revoke_f(), &key(20));
    let st = c.log.state();
    assert_eq!(
        st.receipts[&(*offer.id(), cids::cid_for_raw(b"m"))],
        *r1.id()
    );
    assert_eq!(st.receipts[&(*offer.id(), *revoke.id())], *r2.id());
    // Once each.
    assert_eq!(
        c.err(OpKind::BundleReceipt, revoke_f(), &key(20)),
        Reason::BadReceipt("already acknowledged")
    );
}

#[test]
fn payout_statements_sum_exactly() {
    let (mut c, m2, offer) = in_force();
    let line = |who: &str, amount: i64| {
        obj(&[
            ("member", s(who)),
            ("weight", int(1)),
            ("memberDays", int(30)),
            ("amount", int(amount)),
        ])
    };
    let f = |lines: Vec<Ipld>, total: i64| {
        fields(&[
            ("agreement", s(&offer.id().to_string())),
            (
                "period",
                obj(&[
                    ("id", s("2026-11")),
                    ("start", s(t(0).as_str())),
                    ("end", s(t(1000).as_str())),
                ]),
            ),
            (
                "total",
                obj(&[("amount", int(total)), ("currency", s("EUR"))]),
            ),
            ("method", s("largest-remainder")),
            ("lines", Ipld::List(lines)),
        ])
    };
    let (d1, d2) = (key(1).did(), m2.did());
    assert_eq!(
        c.err(
            OpKind::PayoutStatement,
            f(vec![line(&d1, 50), line(&d2, 49)], 100),
            &key(1)
        ),
        Reason::BadPayout("lines do not sum to the total")
    );
    assert_eq!(
        c.err(
            OpKind::PayoutStatement,
            f(vec![line(&key(30).did(), 100)], 100),
            &key(1)
        ),
        Reason::BadPayout("a line pays a stranger")
    );
    assert_eq!(
        c.err(OpKind::PayoutStatement, f(vec![line(&d1, 100)], 100), &m2),
        Reason::NotSteward(d2.clone())
    );
    let op = c.ok(
        OpKind::PayoutStatement,
        f(vec![line(&d1, 50), line(&d2, 50)], 100),
        &key(1),
    );
    let st = c.log.state();
    assert_eq!(st.payouts[op.id()].total, 100);
    assert_eq!(st.payouts[op.id()].lines, 2);
}

#[test]
fn consent_is_a_register_ordered_by_rev() {
    let mut c = Col::new();
    let m2 = c.join(2);
    c.ok(OpKind::ConsentGrant, grant_fields(1), &m2);
    assert_eq!(
        c.err(OpKind::ConsentGrant, grant_fields(1), &m2),
        Reason::StaleRev { rev: 1, current: 1 }
    );
    c.ok(OpKind::ConsentRevoke, revoke_fields(2), &m2);
    let heads = c.log.heads();
    // Two devices write rev 3 concurrently: a grant and a revoke; the revoke wins.
    let g = Op::sign(
        OpKind::ConsentGrant,
        Some(&c.id),
        grant_fields(3),
        &m2,
        &heads,
        &t(70),
    )
    .unwrap();
    let r = Op::sign(
        OpKind::ConsentRevoke,
        Some(&c.id),
        revoke_fields(3),
        &m2,
        &heads,
        &t(70),
    )
    .unwrap();
    let mut a = c.log.clone();
    a.insert(g.clone(), 0);
    a.insert(r.clone(), 0);
    c.log.insert(r, 0);
    c.log.insert(g, 0);
    assert_eq!(a.state(), c.log.state());
    assert!(a.state().effective_consent(&m2.did(), TEMPLATE).is_none());
    // A later grant (rev 4) wins (written after the concurrent pair, so dated after them).
    c.secs = c.secs.max(70);
    c.ok(OpKind::ConsentGrant, grant_fields(4), &m2);
    assert_eq!(
        c.log
            .state()
            .effective_consent(&m2.did(), TEMPLATE)
            .unwrap()
            .rev,
        4
    );
}

/// Two stewards (1, 2) as the tellers of the collective's next election.
fn two_stewards() -> (Col, Keypair, Keypair) {
    let mut c = Col::new();
    let (m2, m3) = (c.join(2), c.join(3));
    let first = c.open(
        "stewards",
        &[("seats", int(2)), ("candidates", dids(&[&key(1), &m2]))],
        &key(1),
    );
    let both = [key(1).did(), m2.did()];
    let refs: Vec<&str> = both.iter().map(String::as_str).collect();
    c.ballot(&first, &key(1), 1, &refs);
    c.later();
    let f = c.seal_fields(&first);
    c.ok(OpKind::Seal, f, &key(1));
    assert_eq!(c.log.state().stewards().count(), 2);
    (c, m2, m3)
}

/// Signs an op on chosen parents at a chosen time (seconds of the test clock).
fn sign_on(
    c: &Col,
    kind: OpKind,
    f: BTreeMap<String, Ipld>,
    by: &Keypair,
    prev: &[Cid],
    secs: i64,
) -> SignedOp {
    Op::sign(kind, Some(&c.id), f, by, prev, &t(secs)).unwrap()
}

#[test]
fn an_op_is_not_dated_before_its_parents() {
    let mut c = Col::new();
    let m2 = c.join(2);
    let heads = c.log.heads();
    let early = sign_on(
        &c,
        OpKind::ConsentGrant,
        grant_fields(1),
        &m2,
        &heads,
        c.secs - 1,
    );
    assert!(matches!(
        c.log.insert(early, 0),
        Inserted::Rejected(Reason::BeforeItsPast { .. })
    ));
    // The same second as its latest parent is fine.
    let same = sign_on(
        &c,
        OpKind::ConsentGrant,
        grant_fields(1),
        &m2,
        &heads,
        c.secs,
    );
    assert_eq!(c.log.insert(same, 0), Inserted::Applied);
}

#[test]
fn a_ballot_dated_at_or_after_the_close_is_late() {
    let mut c = Col::new();
    let m2 = c.join(2);
    let e = c.open(
        "stewards",
        &[("seats", int(1)), ("candidates", dids(&[&m2]))],
        &key(1),
    );
    c.later();
    let d2 = m2.did();
    assert!(matches!(
        c.err(OpKind::Ballot, ballot_fields(&e, 1, &[&d2]), &m2),
        Reason::BallotAfterClose { .. }
    ));
}

/// The sequence from issue 12: two tellers; one seals after the close time; a member's
/// ballot, cast before the close but not yet seen by that teller, arrives; the other teller
/// seals with it. The first teller's seal is outdated, it seals again, and the result is
/// certified with every ballot cast before the close. A ballot written after a seal was seen
/// is late, and refused.
#[test]
fn a_ballot_the_first_teller_missed_does_not_deadlock_the_election() {
    let (mut c, m2, m3) = two_stewards();
    let e = c.open(
        "stewards",
        &[("seats", int(1)), ("candidates", dids(&[&m2, &m3]))],
        &key(1),
    );
    assert_eq!(c.log.state().elections[e.id()].tellers.len(), 2);
    let (d2, d3) = (m2.did(), m3.did());
    c.ballot(&e, &key(1), 1, &[&d2]);
    let before_close = c.log.heads();
    let close = c.log.state().elections[e.id()]
        .closes_after
        .to_unix_micros();
    let close_secs = (close - t(0).to_unix_micros()) / 1_000_000;
    // m3 votes one second before the close, on what it had seen.
    let late_seen = sign_on(
        &c,
        OpKind::Ballot,
        ballot_fields(&e, 1, &[&d3]),
        &m3,
        &before_close,
        close_secs - 1,
    );
    // Teller 1 seals after the close without m3's ballot.
    c.later();
    let f1 = c.seal_fields(&e);
    let seal1 = c.ok(OpKind::Seal, f1, &key(1));
    assert!(c.log.state().elections[e.id()].certified.is_none());
    // m3's ballot arrives: cast before the close, so it counts.
    assert_eq!(c.log.insert(late_seen.clone(), 0), Inserted::Applied);
    // A ballot written after seeing a seal is dated after the close: late.
    assert!(matches!(
        c.err(OpKind::Ballot, ballot_fields(&e, 1, &[&d2]), &m2),
        Reason::BallotAfterClose { .. }
    ));
    // Teller 2 seals with both ballots; the seals differ, nothing is certified yet.
    let f2 = c.seal_fields(&e);
    c.ok(OpKind::Seal, f2.clone(), &m2);
    let st = c.log.state();
    assert!(st.elections[e.id()].certified.is_none());
    assert_eq!(st.elections[e.id()].counted().len(), 2);
    // Teller 1's seal is outdated: it may seal again, and the result is certified.
    let again = c.seal_fields(&e);
    assert_eq!(again, f2);
    let seal1b = c.ok(OpKind::Seal, again, &key(1));
    let st = c.log.state();
    let cert = st.elections[e.id()].certified.clone().expect("certified");
    assert_eq!(cert.ballots.len(), 2);
    assert!(cert.seals.contains(seal1b.id()) && !cert.seals.contains(seal1.id()));
    assert!(
        !st.elections[e.id()]
            .equivocating_tellers
            .contains(key(1).did().as_str())
    );
    // A teller whose seal is current may not seal again.
    let (mut c2, m2b, _) = two_stewards();
    let e2 = c2.open(
        "stewards",
        &[("seats", int(1)), ("candidates", dids(&[&m2b]))],
        &key(1),
    );
    c2.later();
    let f = c2.seal_fields(&e2);
    c2.ok(OpKind::Seal, f.clone(), &key(1));
    assert_eq!(
        c2.err(OpKind::Seal, f, &key(1)),
        Reason::AlreadySealed(key(1).did())
    );
}

/// Two seals by one teller written concurrently (neither in the other's past) with
/// different contents are an equivocation: both count for nothing.
#[test]
fn concurrent_different_seals_by_one_teller_equivocate() {
    let (mut c, m2, m3) = two_stewards();
    let e = c.open(
        "stewards",
        &[("seats", int(1)), ("candidates", dids(&[&m2, &m3]))],
        &key(1),
    );
    let d2 = m2.did();
    let b1 = c.ballot(&e, &key(1), 1, &[&d2]);
    let at_b1 = c.log.heads();
    let b2 = c.ballot(&e, &m3, 1, &[&d2]);
    c.later();
    let secs = c.secs;
    let st = c.log.state();
    let el = &st.elections[e.id()];
    let charter = st.charter.clone().unwrap();
    let seal_of = |ballots: &[&SignedOp], heads: &[Cid]| {
        let set: crate::BallotSet = ballots.iter().map(|b| *b.id()).collect();
        let tally = el.tally(e.id(), &set, &charter);
        let f = fields(&[
            ("election", s(&e.id().to_string())),
            ("ballotSet", s(&set.cid().to_string())),
            ("ballotCount", int(set.len() as i64)),
            (
                "result",
                ipld_core::serde::to_ipld(tally.to_result()).unwrap(),
            ),
        ]);
        sign_on(&c, OpKind::Seal, f, &key(1), heads, secs)
    };
    let one = seal_of(&[&b1], &at_b1);
    let two = seal_of(&[&b1, &b2], &c.log.heads());
    assert_eq!(c.log.insert(one, 0), Inserted::Applied);
    assert_eq!(c.log.insert(two, 0), Inserted::Applied);
    let st = c.log.state();
    assert!(
        st.elections[e.id()]
            .equivocating_tellers
            .contains(key(1).did().as_str())
    );
    assert!(st.elections[e.id()].certified.is_none());
}

/// A teller whose clock runs an hour fast seals nine minutes before the close, without the
/// ballots the others receive before it. With a majority of tellers needed, its seal alone
/// certifies nothing; the honest tellers seal every ballot cast before the close, and that is
/// the result. (Its early seal does not even enter the others' logs until their clocks are
/// within 5 minutes of its date: see the driver's test of the clock tolerance.)
#[test]
fn a_teller_with_a_fast_clock_cannot_certify_without_the_others_ballots() {
    let (mut c, m2, m3) = three_stewards();
    let m4 = c.join(4);

    let e = c.open(
        "stewards",
        &[("seats", int(1)), ("candidates", dids(&[&m2, &m3]))],
        &key(1),
    );
    let close = c.log.state().elections[e.id()]
        .closes_after
        .to_unix_micros();
    let close_secs = (close - t(0).to_unix_micros()) / 1_000_000;
    let (d2, d3) = (m2.did(), m3.did());
    c.ballot(&e, &m4, 1, &[&d2]);
    // Teller 1, its clock an hour fast, seals at real time close - 9 min (dated close + 51 min).
    let early = c.seal_fields(&e);
    let fast_seal = sign_on(
        &c,
        OpKind::Seal,
        early,
        &key(1),
        &c.log.heads(),
        close_secs + 51 * 60,
    );
    let before = c.log.heads();
    assert_eq!(c.log.insert(fast_seal.clone(), 0), Inserted::Applied);
    assert!(c.log.state().elections[e.id()].certified.is_none());
    // Two more ballots cast before the close, not seen by teller 1.
    let b3 = sign_on(
        &c,
        OpKind::Ballot,
        ballot_fields(&e, 1, &[&d3]),
        &m3,
        &before,
        close_secs - 300,
    );
    let b2 = sign_on(
        &c,
        OpKind::Ballot,
        ballot_fields(&e, 1, &[&d3]),
        &m2,
        &[*b3.id()],
        close_secs - 60,
    );
    assert_eq!(c.log.insert(b3, 0), Inserted::Applied);
    assert_eq!(c.log.insert(b2.clone(), 0), Inserted::Applied);
    // The honest tellers seal after the close with all three ballots: a majority. (Their
    // nodes have not taken the fast seal in yet: it is dated 51 minutes ahead of them.)
    let honest = c.seal_fields(&e);
    let on = [*b2.id()];
    let s2 = sign_on(&c, OpKind::Seal, honest.clone(), &m2, &on, close_secs + 1);
    assert_eq!(c.log.insert(s2, 0), Inserted::Applied);
    assert!(c.log.state().elections[e.id()].certified.is_none());
    let s3 = sign_on(&c, OpKind::Seal, honest, &m3, &on, close_secs + 2);
    assert_eq!(c.log.insert(s3, 0), Inserted::Applied);
    let st = c.log.state();
    let cert = st.elections[e.id()].certified.clone().expect("certified");
    assert_eq!(cert.ballots.len(), 3);
    assert!(!cert.seals.contains(fast_seal.id()));
    assert_eq!(st.stewards().collect::<Vec<_>>(), vec![d3.as_str()]);
}

#[test]
fn a_submitted_join_is_judged_by_the_admitting_nodes_clock() {
    use crate::state::MAX_CLOCK_SKEW_MICROS;
    let mut c = Col::new();
    let mut f = invite_fields(2);
    f.insert("expiresAt".into(), s(t(1000).as_str()));
    let inv = c.ok(OpKind::Invite, f, &key(1));
    let heads = c.log.heads();
    let st = c.log.state();
    let now = t(2000).to_unix_micros();
    // Backdated to before the expiry: the log alone would take it; the admitting node not.
    let backdated = sign_on(
        &c,
        OpKind::Join,
        join_fields(inv.id(), 2),
        &key(2),
        &heads,
        900,
    );
    assert!(matches!(
        st.may_accept_join(&backdated, now),
        Err(Reason::JoinMisdated { .. })
    ));
    assert!(matches!(
        st.may_accept_join(
            &backdated,
            now - 1_100 * 1_000_000 + MAX_CLOCK_SKEW_MICROS + 1
        ),
        Err(Reason::JoinMisdated { .. })
    ));
    // Dated honestly, after the expiry: expired by the node's clock (and by the log's rule).
    let honest = sign_on(
        &c,
        OpKind::Join,
        join_fields(inv.id(), 2),
        &key(2),
        &heads,
        2000,
    );
    assert_eq!(st.may_accept_join(&honest, now), Err(Reason::InviteExpired));
    assert_eq!(
        c.log.clone().insert(honest, 0),
        Inserted::Rejected(Reason::InviteExpired)
    );
    // Before the expiry, dated within the tolerance of the node's clock: accepted.
    let timely = sign_on(
        &c,
        OpKind::Join,
        join_fields(inv.id(), 2),
        &key(2),
        &heads,
        900,
    );
    let node_now = t(900).to_unix_micros() - MAX_CLOCK_SKEW_MICROS;
    assert_eq!(st.may_accept_join(&timely, node_now), Ok(()));
    assert_eq!(c.log.insert(timely, 0), Inserted::Applied);
}
