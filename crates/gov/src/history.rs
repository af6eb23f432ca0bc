//! A seeded generator of one large collective's history (issue 18), shared by the benches
//! (`benches/gov.rs`) and the tests (`tests/sim_history.rs`, `tests/tests/election_at_scale.rs`).
//!
//! [`History`] writes the history of one collective, every op signed by its author's own key
//! ([`person_key`]) and inserted into a [`Log`] as it is written (each must be
//! [`Inserted::Applied`]):
//! - founding: the charter, then [`HistoryConfig::founding_members`] members, each invited by
//!   the founder and joining with the invite's secret; then a seat election (3 seats, 5
//!   candidates);
//! - then each step is, by a seeded xorshift:
//!   - a group of 2 or 3 *concurrent* ops ([`HistoryConfig::concurrent_per_mille`] of the
//!     steps): distinct members writing on the same heads (a consent op each, or a ballot 40 %
//!     of the time); the next op names all of them in `prev` (a merge);
//!   - else one op extending all the heads: a consent grant or revoke (56 %; `rev` rising per
//!     member; a member with consent revokes 40 % of the time, else re-grants with another
//!     scope), a ballot in one of the open elections (34 %; a voter of the election's frozen
//!     electorate, picked with replacement, so about a third of the ballots are revisions with
//!     a higher `rev`), an invite by a steward (1 %, at most 32 outstanding), the oldest
//!     invitee's join (1 %), a leave (1 %, never a steward, while there are more than 90 % of
//!     the founding members), opening an election (1.5 % while fewer than 3 are open: a seat
//!     election if none is open, else an amendment and a vote on it);
//! - an election closes [`HistoryConfig::election_steps`] steps after it opens: a majority of
//!   its tellers seal it, concurrently (2 of the 3 stewards), with the ballot set and result
//!   their past gives; a seat election changes the stewards;
//! - a steward removes a member every [`HistoryConfig::removal_every`] ops (first at half
//!   that).
//!
//! Each op's `createdAt` is [`HistoryConfig::start_micros`] plus
//! [`HistoryConfig::step_secs`] per step. The same settings give the same ops, byte for byte.
//!
//! It is a tool for tests and benches, not for nodes: it panics if the log refuses one of its
//! own ops (a bug in it or in the log), and it takes no outside input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use guild_core::syntax::Datetime;
use guild_core::{Cid, Ipld, Keypair, cids, data};

use crate::log::{Inserted, Log};
use crate::op::{OpKind, SignedOp};

/// The one licence template of the charter.
pub const TEMPLATE: &str = "research-open";

/// The generator's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryConfig {
    /// Members admitted by invite and join before the mix starts (the founder is one more).
    pub founding_members: usize,
    /// How many steps an election stays open.
    pub election_steps: i64,
    /// Seconds of `createdAt` between two steps.
    pub step_secs: i64,
    /// The charter's `createdAt`, in microseconds since the Unix epoch.
    pub start_micros: i64,
    /// A steward removes a member once every this many ops.
    pub removal_every: usize,
    /// Per mille of the steps that are a group of 2–3 concurrent ops.
    pub concurrent_per_mille: u64,
}

impl HistoryConfig {
    /// The benches' settings for `founding_members` members (1 000 by default, 50 000 for
    /// issue 18's collective): an election stays open 6 steps per founding member (6 000 for
    /// 1 000 members, ~560 ballots counted; 300 000 for 50 000, tens of thousands), steps
    /// 10 s apart from 2023-11-14T22:13:20Z, a removal every 50 000 ops, 12 % concurrent
    /// steps.
    pub fn new(founding_members: usize) -> HistoryConfig {
        HistoryConfig {
            founding_members,
            election_steps: 6 * founding_members as i64,
            step_secs: 10,
            start_micros: 1_700_000_000_000_000,
            removal_every: 50_000,
            concurrent_per_mille: 120,
        }
    }

    /// The time `secs` seconds after the start.
    fn at(&self, secs: i64) -> Datetime {
        Datetime::from_unix_micros(self.start_micros + secs * 1_000_000)
    }
}

fn s(x: &str) -> Ipld {
    Ipld::String(x.into())
}

fn int(i: i64) -> Ipld {
    Ipld::Integer(i.into())
}

fn obj(pairs: &[(&str, Ipld)]) -> Ipld {
    Ipld::Map(fields(pairs))
}

fn fields(pairs: &[(&str, Ipld)]) -> BTreeMap<String, Ipld> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// A licence template (`coop.guild.licence.template`) named `id`: research training, no fee,
/// 30 days' notice, records deleted on termination.
pub fn licence_template(id: &str) -> Ipld {
    obj(&[
        ("id", s(id)),
        ("title", s("Research, open")),
        ("version", int(1)),
        ("uses", Ipld::List(vec![s("train")])),
        ("userClasses", Ipld::List(vec![s("research")])),
        (
            "flowDown",
            obj(&[
                ("syntheticData", Ipld::Bool(false)),
                ("downstreamModels", Ipld::Bool(false)),
            ]),
        ),
        ("attribution", obj(&[("required", Ipld::Bool(false))])),
        (
            "compensation",
            obj(&[("$type", s("coop.guild.licence.template#noFee"))]),
        ),
        ("noticeDays", int(30)),
        ("onTermination", s("delete-records")),
        ("reporting", obj(&[("required", Ipld::Bool(false))])),
    ])
}

fn charter_fields() -> BTreeMap<String, Ipld> {
    let mut p = crate::make::CharterParams::new("Bench collective");
    p.admission_policy = crate::body::AdmissionPolicy::InviteOrRequest;
    p.invite_ttl_days = 7;
    p.amendment_bp = 5000;
    p.accepted_lexicons = vec![guild_core::syntax::Nsid::parse("coop.guild.data.text").unwrap()];
    p.templates = vec![ipld_core::serde::from_ipld(licence_template(TEMPLATE)).unwrap()];
    p.body().to_fields().unwrap()
}

/// Person `person`'s key: seeded by their number, so tests can act as any person of a history.
pub fn person_key(person: usize) -> Keypair {
    let mut seed = [0x47u8; 32];
    seed[..8].copy_from_slice(&(person as u64).to_le_bytes());
    Keypair::from_secret_bytes(&seed)
}

/// The one-time secret of the invite for `person`.
fn secret(person: usize) -> Vec<u8> {
    cids::sha256(format!("invite secret {person}").as_bytes()).to_vec()
}

/// Signs an op the way `Op::sign` does (the same map, the same bytes), but decodes the result
/// with `decode_trusted`: `Op::sign` re-verifies its own signature, which would double the
/// cost of writing a 1 M-op history. [`History`] checks a sample with the full `SignedOp::decode`.
fn sign(
    kind: OpKind,
    collective: Option<&str>,
    mut map: BTreeMap<String, Ipld>,
    key: &Keypair,
    did: &str,
    prev: &[Cid],
    created_at: &Datetime,
) -> SignedOp {
    map.insert("$type".into(), s(kind.nsid()));
    if let Some(c) = collective {
        map.insert("collective".into(), s(c));
    }
    map.insert("author".into(), s(did));
    map.insert(
        "prev".into(),
        Ipld::List(prev.iter().map(|c| Ipld::Link(*c)).collect()),
    );
    map.insert("createdAt".into(), s(created_at.as_str()));
    let mut value = Ipld::Map(map);
    let unsigned = data::encode(&value).unwrap();
    let sig = key.sign_object(&unsigned);
    if let Ipld::Map(m) = &mut value {
        m.insert("sig".into(), Ipld::Bytes(sig.to_vec()));
    }
    let bytes = data::encode(&value).unwrap();
    SignedOp::decode_trusted(&bytes).unwrap()
}

#[derive(Clone)]
struct Person {
    key: Keypair,
    did: String,
}

/// An election the generator knows to be open.
#[derive(Clone)]
struct OpenElection {
    id: Cid,
    /// The candidates' DIDs (a seat election), or empty (a vote on an amendment).
    candidates: Vec<String>,
    /// The members when it opened.
    electorate: Vec<usize>,
    tellers: Vec<usize>,
    /// Seals are written from this many seconds on.
    closes_at: i64,
    /// Each voter's last ballot `rev`.
    revs: HashMap<usize, i64>,
}

/// An op to sign.
struct Draft {
    kind: OpKind,
    fields: BTreeMap<String, Ipld>,
    who: usize,
}

/// What the generator wrote.
#[derive(Clone, Default, Debug, PartialEq, Eq)]
pub struct Mix {
    /// Ops by kind (the kind's NSID).
    pub by_kind: BTreeMap<&'static str, usize>,
    /// Ops whose `prev` was not all the heads of the log they entered.
    pub concurrent: usize,
    /// Ops with more than one parent.
    pub merges: usize,
    /// Elections opened.
    pub elections: usize,
    /// Of which seat elections.
    pub seat_elections: usize,
    /// Ballots counted by the seals written, over all elections.
    pub ballots_sealed: usize,
}

/// Writes a collective's history (see the module's documentation).
#[derive(Clone)]
pub struct History {
    config: HistoryConfig,
    collective: Cid,
    collective_str: String,
    people: Vec<Person>,
    person: HashMap<String, usize>,
    log: Log,
    /// Every op's bytes, in the order written.
    bytes: Vec<Vec<u8>>,
    /// When recording, the ops written (decoded), for the `apply` benches.
    recorded: Option<Vec<SignedOp>>,
    rng: u64,
    secs: i64,
    members: Vec<usize>,
    /// Each person's index in `members`, if a member.
    slot: Vec<Option<usize>>,
    stewards: Vec<usize>,
    /// Each person's consent register: last `rev` written, and whether it grants.
    consent: Vec<(i64, bool)>,
    /// Outstanding invites: the invite op and the person invited.
    invites: VecDeque<(Cid, usize)>,
    elections: Vec<OpenElection>,
    amendments: usize,
    next_removal: usize,
    /// Whether steps may write concurrent groups (off for the `apply` benches' tails).
    concurrency: bool,
    mix: Mix,
    /// Op kinds checked with the full `SignedOp::decode` so far.
    verified: Vec<OpKind>,
}

impl History {
    /// The charter, the founding members and the first seat election.
    pub fn new(config: HistoryConfig) -> History {
        let founder = person_key(0);
        let did = founder.did();
        let charter = sign(
            OpKind::Charter,
            None,
            charter_fields(),
            &founder,
            &did,
            &[],
            &config.at(0),
        );
        let collective = *charter.id();
        let mut g = History {
            config,
            collective,
            collective_str: collective.to_string(),
            people: Vec::new(),
            person: HashMap::new(),
            log: Log::new(collective),
            bytes: Vec::new(),
            recorded: None,
            rng: 0x9e37_79b9_7f4a_7c15,
            secs: 0,
            members: Vec::new(),
            slot: Vec::new(),
            stewards: vec![0],
            consent: Vec::new(),
            invites: VecDeque::new(),
            elections: Vec::new(),
            amendments: 0,
            next_removal: config.removal_every / 2,
            concurrency: true,
            mix: Mix::default(),
            verified: Vec::new(),
        };
        let founder = g.new_person();
        g.insert(charter);
        g.join_members(founder);
        for _ in 0..g.config.founding_members {
            g.secs += g.config.step_secs;
            let p = g.new_person();
            let inv = g.emit(Draft {
                kind: OpKind::Invite,
                fields: fields(&[("secretHash", Ipld::Bytes(cids::sha256(&secret(p)).to_vec()))]),
                who: 0,
            });
            g.secs += g.config.step_secs;
            g.join(inv, p);
        }
        assert!(g.open_election(true));
        g
    }

    /// A history of at least `n` ops (a step may write a few more).
    pub fn with_ops(config: HistoryConfig, n: usize) -> History {
        let mut g = History::new(config);
        while g.bytes.len() < n {
            g.step();
        }
        g
    }

    fn new_person(&mut self) -> usize {
        let p = self.people.len();
        let key = person_key(p);
        let did = key.did();
        self.person.insert(did.clone(), p);
        self.people.push(Person { key, did });
        self.slot.push(None);
        self.consent.push((0, false));
        p
    }

    fn join_members(&mut self, p: usize) {
        self.slot[p] = Some(self.members.len());
        self.members.push(p);
    }

    fn leave_members(&mut self, p: usize) {
        let Some(i) = self.slot[p].take() else { return };
        self.members.swap_remove(i);
        if let Some(&moved) = self.members.get(i) {
            self.slot[moved] = Some(i);
        }
    }

    fn roll(&mut self, n: u64) -> u64 {
        let x = &mut self.rng;
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x % n
    }

    fn pick_member(&mut self) -> usize {
        let i = self.roll(self.members.len() as u64) as usize;
        self.members[i]
    }

    fn sign(&self, d: Draft, prev: &[Cid]) -> SignedOp {
        let p = &self.people[d.who];
        sign(
            d.kind,
            Some(&self.collective_str),
            d.fields,
            &p.key,
            &p.did,
            prev,
            &self.config.at(self.secs),
        )
    }

    /// Inserts an op the generator wrote; it must be applied.
    fn insert(&mut self, op: SignedOp) {
        let kind = op.kind();
        if !self.verified.contains(&kind) || self.bytes.len().is_multiple_of(1009) {
            // The fast signing path makes exactly the ops `SignedOp::decode` accepts.
            assert_eq!(SignedOp::decode(op.bytes()).as_ref(), Ok(&op), "{kind:?}");
            self.verified.push(kind);
        }
        if op.prev().len() > 1 {
            self.mix.merges += 1;
        }
        if kind != OpKind::Charter && op.prev() != self.log.heads().as_slice() {
            self.mix.concurrent += 1;
        }
        *self.mix.by_kind.entry(kind.nsid()).or_default() += 1;
        self.bytes.push(op.bytes().to_vec());
        if let Some(r) = self.recorded.as_mut() {
            r.push(op.clone());
        }
        let r = self.log.insert(op, 0);
        assert_eq!(r, Inserted::Applied, "{kind:?}");
    }

    /// Signs `d` on the current heads and inserts it.
    fn emit(&mut self, d: Draft) -> Cid {
        let op = self.sign(d, &self.log.heads());
        let id = *op.id();
        self.insert(op);
        id
    }

    /// Signs every draft on the same (current) heads, then inserts them: concurrent ops.
    fn emit_group(&mut self, ds: Vec<Draft>) {
        let heads = self.log.heads();
        let ops: Vec<SignedOp> = ds.into_iter().map(|d| self.sign(d, &heads)).collect();
        for op in ops {
            self.insert(op);
        }
    }

    fn consent(&mut self, who: usize) -> Draft {
        let (rev, granted) = self.consent[who];
        let rev = rev + 1;
        let grant = !granted || self.roll(10) >= 4;
        self.consent[who] = (rev, grant);
        let now = self.config.at(self.secs);
        let f = if grant {
            let scope = if granted {
                obj(&[
                    ("$type", s("coop.guild.consent.grant#collections")),
                    ("collections", Ipld::List(vec![s("coop.guild.data.text")])),
                ])
            } else {
                obj(&[("$type", s("coop.guild.consent.grant#repo"))])
            };
            fields(&[
                ("rev", int(rev)),
                ("templates", Ipld::List(vec![s(TEMPLATE)])),
                ("scope", scope),
                ("effectiveFrom", s(now.as_str())),
            ])
        } else {
            fields(&[
                ("rev", int(rev)),
                ("templates", Ipld::List(vec![s(TEMPLATE)])),
                ("effectiveFrom", s(now.as_str())),
            ])
        };
        let kind = if grant {
            OpKind::ConsentGrant
        } else {
            OpKind::ConsentRevoke
        };
        Draft {
            kind,
            fields: f,
            who,
        }
    }

    /// A ballot by a voter (still a member, not in `exclude`) of a random open election.
    fn ballot(&mut self, exclude: &[usize]) -> Option<Draft> {
        if self.elections.is_empty() {
            return None;
        }
        for _ in 0..8 {
            let e = self.roll(self.elections.len() as u64) as usize;
            let v = self.roll(self.elections[e].electorate.len() as u64) as usize;
            let voter = self.elections[e].electorate[v];
            if self.slot[voter].is_none() || exclude.contains(&voter) {
                continue;
            }
            let approvals: Vec<Ipld> = if self.elections[e].candidates.is_empty() {
                vec![s(if self.roll(10) < 7 { "yes" } else { "no" })]
            } else {
                let n = self.elections[e].candidates.len();
                let mut a: Vec<Ipld> = Vec::new();
                for c in 0..n {
                    if self.roll(2) == 0 {
                        a.push(s(&self.elections[e].candidates[c]));
                    }
                }
                if a.is_empty() {
                    let c = self.roll(n as u64) as usize;
                    a.push(s(&self.elections[e].candidates[c]));
                }
                a
            };
            let el = &mut self.elections[e];
            let rev = el.revs.get(&voter).map_or(1, |r| r + 1);
            el.revs.insert(voter, rev);
            return Some(Draft {
                kind: OpKind::Ballot,
                fields: fields(&[
                    ("election", s(&el.id.to_string())),
                    ("rev", int(rev)),
                    ("approvals", Ipld::List(approvals)),
                ]),
                who: voter,
            });
        }
        None
    }

    fn join(&mut self, invite: Cid, p: usize) {
        self.emit(Draft {
            kind: OpKind::Join,
            fields: fields(&[
                ("invite", s(&invite.to_string())),
                ("secret", Ipld::Bytes(secret(p))),
            ]),
            who: p,
        });
        self.join_members(p);
    }

    fn invite(&mut self) -> bool {
        if self.invites.len() >= 32 {
            return false;
        }
        let by = self.pick_steward();
        let p = self.new_person();
        let id = self.emit(Draft {
            kind: OpKind::Invite,
            fields: fields(&[("secretHash", Ipld::Bytes(cids::sha256(&secret(p)).to_vec()))]),
            who: by,
        });
        self.invites.push_back((id, p));
        true
    }

    fn pick_steward(&mut self) -> usize {
        let i = self.roll(self.stewards.len() as u64) as usize;
        self.stewards[i]
    }

    /// A member who is not a steward, if one is found quickly.
    fn non_steward(&mut self) -> Option<usize> {
        for _ in 0..8 {
            let p = self.pick_member();
            if !self.stewards.contains(&p) {
                return Some(p);
            }
        }
        None
    }

    fn leave(&mut self) -> bool {
        if self.members.len() * 10 <= self.config.founding_members * 9 {
            return false;
        }
        let Some(p) = self.non_steward() else {
            return false;
        };
        self.emit(Draft {
            kind: OpKind::Leave,
            fields: BTreeMap::new(),
            who: p,
        });
        self.leave_members(p);
        true
    }

    fn remove(&mut self) -> bool {
        let Some(p) = self.non_steward() else {
            return false;
        };
        let by = self.pick_steward();
        self.emit(Draft {
            kind: OpKind::Remove,
            fields: fields(&[
                ("member", s(&self.people[p].did.clone())),
                ("reason", s("bench")),
            ]),
            who: by,
        });
        self.leave_members(p);
        true
    }

    /// Opens a seat election (`seats`) or an amendment and the vote on it.
    fn open_election(&mut self, seats: bool) -> bool {
        let opener = self.pick_member();
        let (proposal, candidates) = if seats {
            let mut c: Vec<usize> = Vec::new();
            while c.len() < 5 {
                let m = self.pick_member();
                if !c.contains(&m) {
                    c.push(m);
                }
            }
            (
                None,
                c.iter().map(|&p| self.people[p].did.clone()).collect(),
            )
        } else {
            self.amendments += 1;
            let name = format!("Bench collective, amendment {}", self.amendments);
            let a = self.emit(Draft {
                kind: OpKind::Amendment,
                fields: fields(&[("changes", obj(&[("name", s(&name))]))]),
                who: opener,
            });
            (Some(a), Vec::new())
        };
        let st = self.log.state_ref();
        let electorate = st.electorate_cid().to_string();
        let tellers: Vec<String> = st.tellers().iter().map(|d| d.to_string()).collect();
        let closes_at = self.secs + self.config.election_steps * self.config.step_secs;
        let mut f = fields(&[
            ("method", s("approval")),
            ("electorate", s(&electorate)),
            (
                "tellers",
                Ipld::List(tellers.iter().map(|d| s(d)).collect()),
            ),
            ("closesAfter", s(self.config.at(closes_at).as_str())),
        ]);
        match proposal {
            None => {
                f.insert("kind".into(), s("stewards"));
                f.insert("seats".into(), int(3));
                f.insert(
                    "candidates".into(),
                    Ipld::List(candidates.iter().map(|d| s(d)).collect()),
                );
            }
            Some(p) => {
                f.insert("kind".into(), s("amendment"));
                f.insert("proposal".into(), s(&p.to_string()));
            }
        }
        let id = self.emit(Draft {
            kind: OpKind::ElectionOpen,
            fields: f,
            who: opener,
        });
        let tellers = tellers.iter().map(|d| self.person[d]).collect();
        self.elections.push(OpenElection {
            id,
            candidates,
            electorate: self.members.clone(),
            tellers,
            closes_at,
            revs: HashMap::new(),
        });
        self.mix.elections += 1;
        if seats {
            self.mix.seat_elections += 1;
        }
        true
    }

    /// A majority of the tellers seal election `i` with the count of its past.
    fn seal(&mut self, i: usize) {
        let e = self.elections.remove(i);
        let (ballots, result) = {
            let st = self.log.state_ref();
            let el = st.elections.get(&e.id).expect("open election");
            let counted = el.counted();
            let tally = el.tally(&e.id, &counted, st.charter.as_deref().expect("charter"));
            (
                counted,
                ipld_core::serde::to_ipld(tally.to_result()).unwrap(),
            )
        };
        self.mix.ballots_sealed += ballots.len();
        let ballot_count = int(ballots.len() as i64);
        let ballots = s(&ballots.cid().to_string());
        let n = e.tellers.len() / 2 + 1;
        let drafts: Vec<Draft> = e.tellers[..n]
            .iter()
            .map(|&teller| Draft {
                kind: OpKind::Seal,
                fields: fields(&[
                    ("election", s(&e.id.to_string())),
                    ("ballotSet", ballots.clone()),
                    ("ballotCount", ballot_count.clone()),
                    ("result", result.clone()),
                ]),
                who: teller,
            })
            .collect();
        if self.concurrency {
            self.emit_group(drafts);
        } else {
            for d in drafts {
                self.emit(d);
            }
        }
        let st = self.log.state_ref();
        assert!(
            st.elections
                .get(&e.id)
                .is_some_and(|e| e.certified.is_some())
        );
        if !e.candidates.is_empty() {
            self.stewards = st.stewards().map(|d| self.person[d]).collect();
        }
    }

    /// 2 or 3 members writing on the same heads.
    fn concurrent_group(&mut self) {
        let k = 2 + self.roll(2) as usize;
        let mut ds: Vec<Draft> = Vec::new();
        let mut authors: Vec<usize> = Vec::new();
        while ds.len() < k {
            let d = if self.roll(10) < 4 {
                self.ballot(&authors)
            } else {
                None
            };
            let d = match d {
                Some(d) => d,
                None => {
                    let who = self.pick_member();
                    if authors.contains(&who) {
                        continue;
                    }
                    self.consent(who)
                }
            };
            authors.push(d.who);
            ds.push(d);
        }
        self.emit_group(ds);
    }

    /// One step of the mix (see the module's documentation): one op, or a few.
    pub fn step(&mut self) {
        self.secs += self.config.step_secs;
        if let Some(i) = self.elections.iter().position(|e| e.closes_at <= self.secs) {
            self.seal(i);
            return;
        }
        if self.bytes.len() >= self.next_removal {
            self.next_removal += self.config.removal_every;
            if self.remove() {
                return;
            }
        }
        if self.concurrency && self.roll(1000) < self.config.concurrent_per_mille {
            self.concurrent_group();
            return;
        }
        let r = self.roll(1000);
        let done = match r {
            560..900 => match self.ballot(&[]) {
                Some(d) => {
                    self.emit(d);
                    true
                }
                None => false,
            },
            900..915 if self.elections.len() < 3 => {
                let seats = !self.elections.iter().any(|e| !e.candidates.is_empty());
                self.open_election(seats)
            }
            915..925 => self.invite(),
            925..935 => match self.invites.pop_front() {
                Some((inv, p)) => {
                    self.join(inv, p);
                    true
                }
                None => false,
            },
            935..945 => self.leave(),
            _ => false,
        };
        if !done {
            let who = self.pick_member();
            let d = self.consent(who);
            self.emit(d);
        }
    }

    /// The next `n` ops (or a few more), each extending all the heads, for timing.
    pub fn extending_tail(&mut self, n: usize) -> Vec<(SignedOp, bool)> {
        self.concurrency = false;
        self.recorded = Some(Vec::new());
        while self.recorded.as_ref().map_or(0, Vec::len) < n {
            self.step();
        }
        let ops = self.recorded.take().unwrap_or_default();
        ops.into_iter().map(|op| (op, true)).collect()
    }

    /// `groups` times: three steps extending the heads, and a consent op written on the heads
    /// before them (concurrent with the last three ops), which alone is timed.
    pub fn concurrent_tail(&mut self, groups: usize) -> Vec<(SignedOp, bool)> {
        self.concurrency = false;
        let mut out = Vec::new();
        for _ in 0..groups {
            let heads = self.log.heads();
            let who = self.pick_member();
            let d = self.consent(who);
            let late = self.sign(d, &heads);
            self.recorded = Some(Vec::new());
            for _ in 0..3 {
                self.step();
            }
            out.extend(
                self.recorded
                    .take()
                    .into_iter()
                    .flatten()
                    .map(|op| (op, false)),
            );
            self.recorded = Some(Vec::new());
            self.insert(late);
            out.extend(
                self.recorded
                    .take()
                    .into_iter()
                    .flatten()
                    .map(|op| (op, true)),
            );
        }
        out
    }

    /// The next `n` ops (or a few more) of the history's own mix, concurrent groups and merges
    /// included, for timing.
    pub fn mixed_tail(&mut self, n: usize) -> Vec<(SignedOp, bool)> {
        self.recorded = Some(Vec::new());
        while self.recorded.as_ref().map_or(0, Vec::len) < n {
            self.step();
        }
        let ops = self.recorded.take().unwrap_or_default();
        ops.into_iter().map(|op| (op, true)).collect()
    }

    /// The collective's id (its charter's CID).
    pub fn collective(&self) -> Cid {
        self.collective
    }

    /// The generator's log: every op written so far, inserted as it was written (never
    /// saved: [`Log::unsaved`] lists the ops in the order the log accepted them).
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Every op's bytes, in the order written.
    pub fn ops(&self) -> &[Vec<u8>] {
        &self.bytes
    }

    /// The settings it was made with.
    pub fn config(&self) -> &HistoryConfig {
        &self.config
    }

    /// What it wrote, by kind.
    pub fn mix(&self) -> &Mix {
        &self.mix
    }

    /// How many elections are open (opened and not yet sealed).
    pub fn open_elections(&self) -> usize {
        self.elections.len()
    }

    /// The number of the person whose DID is `did` (see [`person_key`]), if they are in the
    /// history.
    pub fn person_of(&self, did: &str) -> Option<usize> {
        self.person.get(did).copied()
    }

    /// A line saying what was written (`what` names the history) and how fast (`took`: the
    /// time it took to write), the mix of kinds, concurrency and elections.
    pub fn report(&self, what: &str, took: Duration) -> String {
        let n = self.bytes.len();
        let m = &self.mix;
        let pct = |x: usize| 100.0 * x as f64 / n as f64;
        let kinds: Vec<String> = m
            .by_kind
            .iter()
            .map(|(k, v)| {
                let k = k.trim_start_matches("coop.guild.");
                format!("{k} {v} ({:.2} %)", pct(*v))
            })
            .collect();
        let bytes: usize = self.bytes.iter().map(Vec::len).sum();
        format!(
            "history {what}: {n} ops written and inserted in {:.1} s ({:.0} ops/s); {} members \
             now, {} people ever; {:.1} % concurrent (prev not all the heads), {:.1} % merges; \
             {} elections ({} seat), {:.0} ballots counted per election on average; mean op \
             {} bytes\n  {}",
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64(),
            self.members.len(),
            self.people.len(),
            pct(m.concurrent),
            pct(m.merges),
            m.elections,
            m.seat_elections,
            m.ballots_sealed as f64 / (m.elections - self.elections.len()).max(1) as f64,
            bytes / n.max(1),
            kinds.join(", ")
        )
    }
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("collective", &self.collective)
            .field("ops", &self.bytes.len())
            .field("members", &self.members.len())
            .field("people", &self.people.len())
            .field("open_elections", &self.elections.len())
            .field("mix", &self.mix)
            .finish_non_exhaustive()
    }
}
