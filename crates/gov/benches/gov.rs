//! Governance benchmarks: one op inserted into a large log (extending the heads, and
//! concurrent with the last few ops), signature-checked decoding of one op, and replay of a
//! stored history (`Log::load_trusted`, and `Log::load`, which checks every signature again).
//!
//! Run: `cargo bench -p guild-gov --bench gov` (figures in BENCHMARKS.md). The 1 M-op replay
//! runs only with `GUILD_BENCH_REPLAY_1M=1` (`GUILD_BENCH_REPLAY_OPS=N` for another size): it
//! writes the history first, then times one replay (`GUILD_BENCH_REPLAY_RUNS=N` for more) and
//! prints it; the criterion benches are skipped then. See [`replay_1m`] for keeping the history
//! in a file between runs.
//!
//! # The history
//! [`Gen`] writes the history of one collective, every op signed by its author's own key and
//! inserted into a [`Log`] as it is written (each must be [`Inserted::Applied`]):
//! - founding: the charter, then [`founding_members`] members, each invited by the founder and
//!   joining with the invite's secret; then a seat election (3 seats, 5 candidates);
//! - then each step is, by a seeded xorshift:
//!   - a group of 2 or 3 *concurrent* ops ([`CONCURRENT_PER_MILLE`] of the steps): distinct
//!     members writing on the same heads (a consent op each, or a ballot 40 % of the time);
//!     the next op names all of them in `prev` (a merge);
//!   - else one op extending all the heads: a consent grant or revoke (56 %; `rev` rising per
//!     member; a member with consent revokes 40 % of the time, else re-grants with another
//!     scope), a ballot in one of the open elections (34 %; a voter of the election's frozen
//!     electorate, picked with replacement, so about a third of the ballots are revisions with
//!     a higher `rev`), an invite by a steward (1 %, at most 32 outstanding), the oldest
//!     invitee's join (1 %), a leave (1 %, never a steward, while there are more than 90 % of
//!     the founding members), opening an election (1.5 % while fewer than 3 are open: a seat
//!     election if none is open, else an amendment and a vote on it);
//! - an election closes [`election_steps`] steps after it opens: a majority of its tellers
//!   seal it, concurrently (2 of the 3 stewards), with the ballot set and result their past
//!   gives; a seat election changes the stewards;
//! - a steward removes a member every [`REMOVAL_EVERY`] ops (first at half that).
//!
//! The mix actually written is printed when a history is made (and recorded in BENCHMARKS.md).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The allocator the `guild` binary uses, so that these figures are the product's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use guild_core::syntax::Datetime;
use guild_core::{Cid, Ipld, Keypair, cids, data};
use guild_gov::{Inserted, Log, OpKind, SignedOp};

/// The one licence template of the charter.
const TEMPLATE: &str = "research-open";
/// Members admitted by invite + join before the mix starts (the founder is one more): 1 000,
/// or `GUILD_BENCH_MEMBERS` (50 000 for issue 18's collective).
fn founding_members() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        std::env::var("GUILD_BENCH_MEMBERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000)
    })
}
/// Seconds of `createdAt` between two steps.
const STEP_SECS: i64 = 10;
/// How many steps an election stays open: 6 per founding member (6 000 for 1 000 members,
/// ~560 ballots counted; 300 000 for 50 000, tens of thousands).
fn election_steps() -> i64 {
    6 * founding_members() as i64
}
/// A steward removes a member once every this many ops.
const REMOVAL_EVERY: usize = 50_000;
/// Per mille of the steps that are a group of 2–3 concurrent ops.
const CONCURRENT_PER_MILLE: u64 = 120;
/// Ops written after the base log for the `apply` benches (their timed ops).
const TAIL: usize = 10_000;

fn t(secs: i64) -> Datetime {
    Datetime::from_unix_micros(1_700_000_000_000_000 + secs * 1_000_000)
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

fn licence_template(id: &str) -> Ipld {
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
    let mut p = guild_gov::make::CharterParams::new("Bench collective");
    p.admission_policy = guild_gov::body::AdmissionPolicy::InviteOrRequest;
    p.invite_ttl_days = 7;
    p.amendment_bp = 5000;
    p.accepted_lexicons = vec![guild_core::syntax::Nsid::parse("coop.guild.data.text").unwrap()];
    p.templates = vec![ipld_core::serde::from_ipld(licence_template(TEMPLATE)).unwrap()];
    p.body().to_fields().unwrap()
}

/// One person's key (one per member, made once).
fn key(person: usize) -> Keypair {
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
/// cost of writing a 1 M-op history. [`Gen`] checks a sample with the full `SignedOp::decode`.
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
#[derive(Clone, Default, Debug)]
struct Mix {
    by_kind: BTreeMap<&'static str, usize>,
    /// Ops whose `prev` was not all the heads of the log they entered.
    concurrent: usize,
    /// Ops with more than one parent.
    merges: usize,
    elections: usize,
    seat_elections: usize,
    ballots_sealed: usize,
}

/// Writes a collective's history (see the module's documentation).
#[derive(Clone)]
struct Gen {
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

impl Gen {
    /// The charter and the founding members.
    fn new() -> Gen {
        let founder = key(0);
        let did = founder.did();
        let charter = sign(
            OpKind::Charter,
            None,
            charter_fields(),
            &founder,
            &did,
            &[],
            &t(0),
        );
        let collective = *charter.id();
        let mut g = Gen {
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
            next_removal: REMOVAL_EVERY / 2,
            concurrency: true,
            mix: Mix::default(),
            verified: Vec::new(),
        };
        let founder = g.new_person();
        g.insert(charter);
        g.join_members(founder);
        for _ in 0..founding_members() {
            g.secs += STEP_SECS;
            let p = g.new_person();
            let inv = g.emit(Draft {
                kind: OpKind::Invite,
                fields: fields(&[("secretHash", Ipld::Bytes(cids::sha256(&secret(p)).to_vec()))]),
                who: 0,
            });
            g.secs += STEP_SECS;
            g.join(inv, p);
        }
        assert!(g.open_election(true));
        g
    }

    /// A history of about `n` ops (a step may write a few more).
    fn with_ops(n: usize) -> Gen {
        let mut g = Gen::new();
        while g.bytes.len() < n {
            g.step();
        }
        g
    }

    fn new_person(&mut self) -> usize {
        let p = self.people.len();
        let key = key(p);
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
            &t(self.secs),
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
        let now = t(self.secs);
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
        if self.members.len() * 10 <= founding_members() * 9 {
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
        let closes_at = self.secs + election_steps() * STEP_SECS;
        let mut f = fields(&[
            ("method", s("approval")),
            ("electorate", s(&electorate)),
            (
                "tellers",
                Ipld::List(tellers.iter().map(|d| s(d)).collect()),
            ),
            ("closesAfter", s(t(closes_at).as_str())),
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

    /// One step of the mix.
    fn step(&mut self) {
        self.secs += STEP_SECS;
        if let Some(i) = self.elections.iter().position(|e| e.closes_at <= self.secs) {
            self.seal(i);
            return;
        }
        if self.bytes.len() >= self.next_removal {
            self.next_removal += REMOVAL_EVERY;
            if self.remove() {
                return;
            }
        }
        if self.concurrency && self.roll(1000) < CONCURRENT_PER_MILLE {
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
    fn extending_tail(&mut self, n: usize) -> Vec<(SignedOp, bool)> {
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
    fn concurrent_tail(&mut self, groups: usize) -> Vec<(SignedOp, bool)> {
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

    fn report(&self, what: &str, took: Duration) {
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
        eprintln!(
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
        );
    }
}

/// True when only the large replay runs (`GUILD_BENCH_REPLAY_1M` is set).
fn large_replay_only() -> bool {
    std::env::var_os("GUILD_BENCH_REPLAY_1M").is_some()
}

/// A history of about `n` ops, made once per run.
fn history(n: usize) -> &'static Gen {
    static MADE: Mutex<BTreeMap<usize, &'static Gen>> = Mutex::new(BTreeMap::new());
    let mut made = MADE.lock().unwrap();
    made.entry(n).or_insert_with(|| {
        let t0 = Instant::now();
        let g = Gen::with_ops(n);
        g.report(&format!("~{n}"), t0.elapsed());
        Box::leak(Box::new(g))
    })
}

/// A store that keeps nothing (the apply benches' base log is "saved" to it).
struct Discard;

impl guild_gov::OpStore for Discard {
    type Error = std::convert::Infallible;

    fn append_ops(&self, _: &Cid, _: &[(Cid, &[u8])]) -> Result<(), Self::Error> {
        Ok(())
    }

    fn stored_ops(&self, _: &Cid) -> Result<Vec<Vec<u8>>, Self::Error> {
        Ok(Vec::new())
    }

    fn collectives(&self) -> Result<Vec<Cid>, Self::Error> {
        Ok(Vec::new())
    }
}

/// Timed ops per iteration of the `apply` benches.
const BATCH: usize = 500;

/// A tail of ops cut into batches of [`BATCH`] timed ops each (ops marked `false` are
/// inserted untimed: the ops a timed one is concurrent with).
struct Batches {
    ops: Vec<(SignedOp, bool)>,
    /// Each batch's range in `ops`.
    bounds: Vec<(usize, usize)>,
}

impl Batches {
    fn new(ops: Vec<(SignedOp, bool)>) -> Batches {
        let mut bounds = Vec::new();
        let (mut lo, mut timed) = (0, 0);
        for (i, (_, t)) in ops.iter().enumerate() {
            timed += usize::from(*t);
            if timed == BATCH {
                bounds.push((lo, i + 1));
                (lo, timed) = (i + 1, 0);
            }
        }
        Batches { ops, bounds }
    }
}

/// A copy of the base log and the next batch to insert into it.
struct Cursor<'a> {
    base: &'a Log,
    log: Option<Log>,
    next: usize,
}

impl Cursor<'_> {
    /// Inserts the next `iters` batches, cycling through the tail (a fresh copy of the base
    /// log each time it runs out, made and dropped outside the timing), and returns the time
    /// `Log::insert` took over their timed ops.
    fn run(&mut self, b: &Batches, iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            if self.next == b.bounds.len() {
                drop(black_box(self.log.take()));
                self.next = 0;
            }
            let log = self.log.get_or_insert_with(|| self.base.clone());
            let (lo, hi) = b.bounds[self.next];
            for (op, timed) in &b.ops[lo..hi] {
                let op = op.clone();
                if *timed {
                    let t0 = Instant::now();
                    let r = log.insert(op, 0);
                    total += t0.elapsed();
                    assert_eq!(r, Inserted::Applied);
                } else {
                    assert_eq!(log.insert(op, 0), Inserted::Applied);
                }
            }
            self.next += 1;
        }
        total
    }
}

/// One untimed-by-criterion pass over the tail on a copy of `base`, timing each timed op:
/// the mean and the largest cost by kind (printed; the slow kinds are rare but costly).
fn cost_by_kind(what: &str, base: &Log, b: &Batches) {
    let mut log = base.clone();
    let mut by_kind: BTreeMap<&'static str, (usize, Duration, Duration)> = BTreeMap::new();
    for (op, timed) in &b.ops {
        let kind = op.kind().nsid().trim_start_matches("coop.guild.");
        let t0 = Instant::now();
        let r = log.insert(op.clone(), 0);
        let took = t0.elapsed();
        assert_eq!(r, Inserted::Applied);
        if *timed {
            let e = by_kind.entry(kind).or_default();
            e.0 += 1;
            e.1 += took;
            e.2 = e.2.max(took);
        }
    }
    let (n, sum) = by_kind
        .values()
        .fold((0, Duration::ZERO), |(n, s), e| (n + e.0, s + e.1));
    let parts: Vec<String> = by_kind
        .iter()
        .map(|(k, (c, sum, max))| {
            format!(
                "{k} {c}: mean {:.1} µs, max {:.1} µs",
                sum.as_secs_f64() * 1e6 / *c as f64,
                max.as_secs_f64() * 1e6
            )
        })
        .collect();
    eprintln!(
        "{what}: {n} timed ops, mean {:.1} µs; by kind: {}",
        sum.as_secs_f64() * 1e6 / n.max(1) as f64,
        parts.join("; ")
    );
}

/// `Log::insert` of an already-decoded op into a log of 10 k and 100 k ops. Each iteration
/// inserts the next [`BATCH`] timed ops of a tail written after the base log (criterion's
/// time is per batch; the throughput line is per op).
fn apply(c: &mut Criterion) {
    if large_replay_only() {
        return;
    }
    let mut g = c.benchmark_group("apply");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(BATCH as u64));
    // `GUILD_BENCH_APPLY_SIZES=1000000` (comma-separated) for other log sizes; a 1 M-op
    // history takes ~2 min to write and its copies ~10 GB.
    let sizes: Vec<usize> = match std::env::var("GUILD_BENCH_APPLY_SIZES") {
        Ok(v) => v
            .split(',')
            .map(|n| n.trim().parse().expect("GUILD_BENCH_APPLY_SIZES: numbers"))
            .collect(),
        Err(_) => vec![10_000, 100_000],
    };
    for n in sizes {
        let gen_base = history(n);
        // Saved, as a node's log is after every tick: the generator never saves, and a clone
        // of its list of unsaved ops (every op) has no spare room.
        let mut base = gen_base.log.clone();
        let Ok(_) = base.save(&Discard);
        let label = format!("{}k", n / 1000);
        // Ops extending all the heads: the same mix, without concurrent groups.
        let extending = Batches::new(gen_base.clone().extending_tail(TAIL));
        // A consent op concurrent with the last three ops (refolds from a checkpoint).
        let concurrent = Batches::new(gen_base.clone().concurrent_tail(TAIL / 4));
        // The history's own mix, concurrent groups and merges included.
        let mut gen_mix = gen_base.clone();
        gen_mix.recorded = Some(Vec::new());
        while gen_mix.recorded.as_ref().map_or(0, Vec::len) < TAIL {
            gen_mix.step();
        }
        let mixed = Batches::new(
            gen_mix
                .recorded
                .take()
                .unwrap_or_default()
                .into_iter()
                .map(|op| (op, true))
                .collect(),
        );
        for (name, tail) in [
            ("extending", &extending),
            ("concurrent_with_3", &concurrent),
            ("history_mix", &mixed),
        ] {
            let name = format!("{name}/{label}");
            cost_by_kind(&name, &base, tail);
            let mut cursor = Cursor {
                base: &base,
                log: None,
                next: 0,
            };
            g.bench_function(name, |b| b.iter_custom(|iters| cursor.run(tail, iters)));
        }
    }
    g.finish();
}

/// `SignedOp::decode` (lexicon + ed25519 signature) of one op, and `decode_trusted`.
fn decode(c: &mut Criterion) {
    if large_replay_only() {
        return;
    }
    let gen_ = history(10_000);
    let find = |kind: OpKind| -> Vec<u8> {
        gen_.bytes
            .iter()
            .rev()
            .find(|b| SignedOp::decode_trusted(b).is_ok_and(|op| op.kind() == kind))
            .expect("an op of that kind")
            .clone()
    };
    let grant = find(OpKind::ConsentGrant);
    let ballot = find(OpKind::Ballot);
    let mut g = c.benchmark_group("decode");
    for (name, bytes) in [("consent_grant", &grant), ("ballot", &ballot)] {
        eprintln!("{name}: {} bytes", bytes.len());
        g.bench_function(format!("verify/{name}"), |b| {
            b.iter(|| SignedOp::decode(black_box(bytes)).unwrap())
        });
        g.bench_function(format!("trusted/{name}"), |b| {
            b.iter(|| SignedOp::decode_trusted(black_box(bytes)).unwrap())
        });
    }
    g.finish();
}

/// The export → load round trip gives the same log.
fn assert_same(a: &Log, b: &Log) {
    assert_eq!(a.len(), b.len());
    assert_eq!(a.heads(), b.heads());
    assert_eq!(a.state_ref(), b.state_ref());
    assert_eq!(a.export(), b.export());
}

/// `Log::load_trusted` of 100 k stored ops, and `Log::load` (signatures checked) of 10 k.
fn replay(c: &mut Criterion) {
    if large_replay_only() {
        return;
    }
    let gen_ = history(100_000);
    let exported = gen_.log.export();
    let bytes: Vec<&[u8]> = exported.iter().map(|b| &**b).collect();
    let collective = gen_.collective;
    let n = bytes.len();
    assert_same(
        &Log::load_trusted(collective, bytes.iter().copied()),
        &gen_.log,
    );
    let small = history(10_000);
    let small_exported = small.log.export();
    let small_bytes: Vec<&[u8]> = small_exported.iter().map(|b| &**b).collect();
    assert_same(
        &Log::load(small.collective, small_bytes.iter().copied()),
        &small.log,
    );

    let mut g = c.benchmark_group("replay");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("load_trusted/100k", |b| {
        b.iter_with_large_drop(|| Log::load_trusted(collective, bytes.iter().copied()))
    });
    g.throughput(Throughput::Elements(small_bytes.len() as u64));
    g.bench_function("load_verified/10k", |b| {
        b.iter_with_large_drop(|| Log::load(small.collective, small_bytes.iter().copied()))
    });
    g.finish();
}

/// The process's resident memory, in MiB (Linux), for the large replay's report.
fn rss_mib() -> String {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or_else(|| "?".into(), |pages| ((pages * 4096) >> 20).to_string())
}

/// Op bytes, each after its length (u32, little-endian).
fn write_history(path: &std::ffi::OsStr, ops: &[Vec<u8>]) {
    let mut out = Vec::with_capacity(ops.iter().map(|o| o.len() + 4).sum());
    for op in ops {
        out.extend_from_slice(&(op.len() as u32).to_le_bytes());
        out.extend_from_slice(op);
    }
    std::fs::write(path, out).expect("history file written");
}

fn read_history(path: &std::ffi::OsStr) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).expect("history file");
    let mut ops = Vec::new();
    let mut rest = bytes.as_slice();
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let (op, tail) = tail.split_at(u32::from_le_bytes(*len) as usize);
        ops.push(op.to_vec());
        rest = tail;
    }
    ops
}

/// With `GUILD_BENCH_REPLAY_1M=1`: a 1 M-op history (`GUILD_BENCH_REPLAY_OPS=N` for another
/// size), then `Log::load_trusted` of it once (`GUILD_BENCH_REPLAY_RUNS=N` times). Every op
/// must enter the log, and the state and heads must be the generator's.
///
/// Writing the history takes as long as inserting it, so it can be kept:
/// `GUILD_BENCH_REPLAY_WRITE=<file>` writes the ops (in the log's order, or with
/// `GUILD_BENCH_REPLAY_ORDER=accepted` in the order accepted) to a file, and
/// `GUILD_BENCH_REPLAY_FILE=<file>` replays that file instead of writing a history (then
/// only "every op entered, none pending" is checked).
fn replay_1m(_: &mut Criterion) {
    if !large_replay_only() {
        eprintln!("replay_1m: skipped (set GUILD_BENCH_REPLAY_1M=1)");
        return;
    }
    let env_num = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let size = env_num("GUILD_BENCH_REPLAY_OPS", 1_000_000);
    let runs = env_num("GUILD_BENCH_REPLAY_RUNS", 1).max(1);
    // `GUILD_BENCH_REPLAY_VERIFY=1`: `Log::load` (lexicons and signatures checked again, as
    // for ops from peers) instead of `Log::load_trusted`.
    let verify = std::env::var_os("GUILD_BENCH_REPLAY_VERIFY").is_some();
    let (stored, expected) = match std::env::var_os("GUILD_BENCH_REPLAY_FILE") {
        Some(path) => (read_history(&path), None),
        None => {
            let t0 = Instant::now();
            let g = Gen::with_ops(size);
            g.report(&format!("~{size}"), t0.elapsed());
            eprintln!("RSS with the generator's log: {} MiB", rss_mib());
            // `GUILD_BENCH_REPLAY_ORDER=accepted`: the ops in the order the generator's log
            // accepted them, as a node's store holds them (a concurrent op can land before
            // ops accepted earlier), not in the log's order.
            let stored: Vec<Vec<u8>> =
                if std::env::var("GUILD_BENCH_REPLAY_ORDER").is_ok_and(|o| o == "accepted") {
                    assert_eq!(
                        g.log.unsaved().len(),
                        g.log.len(),
                        "the generator never saved"
                    );
                    g.log
                        .unsaved()
                        .iter()
                        .filter_map(|id| g.log.get(id))
                        .map(|op| op.bytes().to_vec())
                        .collect()
                } else {
                    g.log
                        .export()
                        .into_iter()
                        .map(std::borrow::Cow::into_owned)
                        .collect()
                };
            // Only the state and heads are kept, so that two large logs never coexist.
            (stored, Some((g.log.state(), g.log.heads())))
        }
    };
    if let Some(path) = std::env::var_os("GUILD_BENCH_REPLAY_WRITE") {
        write_history(&path, &stored);
    }
    // The genesis charter comes first in the log's order; its id is the collective's.
    let collective = cids::cid_for_cbor(&stored[0]);
    let n = stored.len();
    eprintln!("replaying {n} ops; RSS before: {} MiB", rss_mib());
    let mut times = Vec::new();
    for run in 0..runs {
        let t0 = Instant::now();
        let log = if verify {
            Log::load(collective, stored.iter().map(Vec::as_slice))
        } else {
            Log::load_trusted(collective, stored.iter().map(Vec::as_slice))
        };
        let took = t0.elapsed();
        eprintln!(
            "replay run {run}: {} of {n} ops in {:.2} s ({:.0} ops/s); RSS with the \
             log: {} MiB",
            if verify { "load" } else { "load_trusted" },
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64(),
            rss_mib()
        );
        assert_eq!(log.len(), n, "every stored op enters the log");
        assert_eq!(log.pending_len(), 0);
        if let Some((state, heads)) = &expected {
            assert_eq!(log.state_ref(), state);
            assert_eq!(&log.heads(), heads);
        }
        times.push(took);
        drop(log);
    }
    times.sort();
    let median = times[times.len() / 2];
    eprintln!(
        "replay of {n} ops: median of {runs} {:.2} s, {:.0} ops/s",
        median.as_secs_f64(),
        n as f64 / median.as_secs_f64()
    );
}

/// `Election::tally` of the history's seat election with its ballots replaced by N voters'
/// (each approving one or two candidates), as a seal's check and its certification run it.
///
///     cargo bench -p guild-gov --bench gov -- tally
fn tally(c: &mut Criterion) {
    if large_replay_only() {
        return;
    }
    let gen_ = history(10_000);
    let state = gen_.log.state_ref();
    let charter = state.charter.clone().expect("a charter");
    let (id, base) = state
        .elections
        .iter()
        .find(|(_, e)| e.kind == guild_gov::ElectionKind::Stewards && !e.candidates.is_empty())
        .map(|(id, e)| (*id, e.clone()))
        .expect("a seat election");
    let candidates: Vec<guild_gov::body::Choice> = base
        .candidates
        .iter()
        .cloned()
        .map(guild_gov::body::Choice::Candidate)
        .collect();
    let mut g = c.benchmark_group("tally");
    g.sample_size(10);
    for n in [1_000usize, 10_000, 50_000] {
        let mut e = base.clone();
        e.ballots = imbl::OrdMap::new();
        for i in 0..n {
            let voter =
                guild_core::syntax::Did::parse(&format!("did:plc:voter{i:07}")).expect("did");
            let ballot =
                cids::cid_for_cbor(&data::encode(&Ipld::Integer(i as i128)).expect("cbor"));
            let k = candidates.len().max(1);
            let approvals: Vec<_> = candidates
                .iter()
                .skip(i % k)
                .take(1 + i % 2)
                .cloned()
                .collect();
            e.ballots.insert(
                voter,
                std::sync::Arc::new(guild_gov::VoterBallots {
                    rev: 0,
                    ballots: std::iter::once((
                        guild_gov::reconcile::digest_of(&ballot),
                        approvals.into_boxed_slice(),
                    ))
                    .collect(),
                }),
            );
        }
        let counted = e.counted();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("{}k_voters", n / 1000), |b| {
            b.iter(|| black_box(e.tally(&id, &counted, &charter)))
        });
    }
    g.finish();
}

criterion_group!(benches, decode, apply, replay, replay_1m, tally);
criterion_main!(benches);
