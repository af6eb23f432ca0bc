//! The fixed collective and the checks of the `gov_op` fuzz target, and the check of the
//! `invite_code` target. One file, used by `fuzz/fuzz_targets/{gov_op,invite_code}.rs`
//! (through `#[path]`) and by `tests/fuzz_regressions.rs`, so that saved inputs are replayed
//! through exactly the targets' checks. (Each target uses part of it.)
//!
//! The collective: a founder (steward), two members admitted by invite + join, a consent
//! grant, an amendment, an open seat election with one ballot, and an agreement in force with
//! a builder. The seeds are one valid op of each common kind written on its heads.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use guild_core::syntax::{Datetime, Tid};
use guild_core::{Cid, Ipld, Keypair, cids};
use guild_gov::{Inserted, Log, Op, OpKind, Reason, SignedOp};

const TEMPLATE: &str = "research-open";

/// The fixed log and the seed ops (name, signed bytes), each applied on the log's heads.
#[derive(Debug)]
pub struct Fixture {
    /// The collective's log.
    pub log: Log,
    /// Valid ops on the log's heads (the charter seed is another collective's genesis).
    #[allow(
        dead_code,
        reason = "read by the regression test, not by the fuzz target"
    )]
    pub seeds: Vec<(&'static str, Vec<u8>)>,
}

fn key(n: u8) -> Keypair {
    Keypair::from_secret_bytes(&[n; 32])
}

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

fn list(items: Vec<Ipld>) -> Ipld {
    Ipld::List(items)
}

fn fields(pairs: &[(&str, Ipld)]) -> BTreeMap<String, Ipld> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

use guild_gov::history::licence_template;

fn charter_fields(name: &str) -> BTreeMap<String, Ipld> {
    fields(&[
        ("name", s(name)),
        (
            "admission",
            obj(&[
                ("policy", s("invite-or-request")),
                ("approval", s("steward")),
                ("inviteTtlDays", int(7)),
            ]),
        ),
        (
            "stewardship",
            obj(&[
                ("seats", int(3)),
                ("termDays", int(365)),
                ("electionMethod", s("approval")),
            ]),
        ),
        (
            "quorum",
            obj(&[
                ("amendment", int(5000)),
                ("turnout", int(3000)),
                ("countersignatures", int(1)),
            ]),
        ),
        ("acceptedLexicons", list(vec![s("coop.guild.data.text")])),
        ("licenceTemplates", list(vec![licence_template(TEMPLATE)])),
        (
            "payoutPolicy",
            obj(&[("period", s("monthly")), ("method", s("equal"))]),
        ),
    ])
}

fn secret_hash(n: u8) -> Ipld {
    Ipld::Bytes(cids::sha256(&[n; 32]).to_vec())
}

fn grant(rev: i64) -> BTreeMap<String, Ipld> {
    fields(&[
        ("rev", int(rev)),
        ("templates", list(vec![s(TEMPLATE)])),
        (
            "scope",
            obj(&[("$type", s("coop.guild.consent.grant#repo"))]),
        ),
        ("effectiveFrom", s(t(0).as_str())),
    ])
}

struct Builder {
    log: Log,
    collective: Cid,
}

impl Builder {
    fn sign(&self, kind: OpKind, f: BTreeMap<String, Ipld>, by: &Keypair, secs: i64) -> SignedOp {
        Op::sign(
            kind,
            Some(&self.collective),
            f,
            by,
            &self.log.heads(),
            &t(secs),
        )
        .expect("fixture op signs")
    }

    /// Signs on the heads and applies.
    fn add(&mut self, kind: OpKind, f: BTreeMap<String, Ipld>, by: &Keypair, secs: i64) -> Cid {
        let op = self.sign(kind, f, by, secs);
        let id = *op.id();
        assert_eq!(
            self.log.insert(op, 0),
            Inserted::Applied,
            "fixture {kind:?}"
        );
        id
    }
}

fn build() -> Fixture {
    let (founder, m2, m3, candidate, builder) = (key(1), key(2), key(3), key(4), key(9));
    let genesis = Op::sign(
        OpKind::Charter,
        None,
        charter_fields("Fuzz collective"),
        &founder,
        &[],
        &t(0),
    )
    .expect("charter signs");
    let collective = *genesis.id();
    let mut log = Log::new(collective);
    assert_eq!(log.insert(genesis, 0), Inserted::Applied);
    let mut b = Builder { log, collective };
    for (n, who) in [(2u8, &m2), (3, &m3)] {
        let inv = b.add(
            OpKind::Invite,
            fields(&[("secretHash", secret_hash(n))]),
            &founder,
            2 * i64::from(n) - 3,
        );
        b.add(
            OpKind::Join,
            fields(&[
                ("invite", s(&inv.to_string())),
                ("secret", Ipld::Bytes(vec![n; 32])),
            ]),
            who,
            2 * i64::from(n) - 2,
        );
    }
    b.add(OpKind::ConsentGrant, grant(1), &m2, 5);
    let amendment = b.add(
        OpKind::Amendment,
        fields(&[("changes", obj(&[("name", s("Renamed"))]))]),
        &m3,
        5,
    );
    let electorate = b.log.state_ref().electorate_cid().to_string();
    let candidates: Vec<Ipld> = [&founder, &m2, &m3].iter().map(|k| s(&k.did())).collect();
    let election = b.add(
        OpKind::ElectionOpen,
        fields(&[
            ("kind", s("stewards")),
            ("method", s("approval")),
            ("seats", int(2)),
            ("candidates", list(candidates)),
            ("electorate", s(&electorate)),
            ("tellers", list(vec![s(&founder.did())])),
            ("closesAfter", s(t(15).as_str())),
        ]),
        &founder,
        6,
    );
    let el = s(&election.to_string());
    b.add(
        OpKind::Ballot,
        fields(&[
            ("election", el.clone()),
            ("rev", int(1)),
            ("approvals", list(vec![s(&m3.did())])),
        ]),
        &m2,
        7,
    );
    let offer_fields = fields(&[
        ("builder", s(&builder.did())),
        ("template", s(TEMPLATE)),
        ("terms", licence_template(TEMPLATE)),
    ]);
    let offer = b.add(OpKind::AgreementOffer, offer_fields.clone(), &founder, 8);
    let accept = b.add(
        OpKind::AgreementAccept,
        fields(&[("offer", s(&offer.to_string()))]),
        &builder,
        9,
    );
    b.add(
        OpKind::AgreementCountersign,
        fields(&[
            ("offer", s(&offer.to_string())),
            ("accept", s(&accept.to_string())),
        ]),
        &founder,
        10,
    );
    // A member's consent to the agreement's template, then its revoke: what the builder's
    // receipt seed acknowledges.
    b.add(OpKind::ConsentGrant, grant(1), &m3, 11);
    let revoke = b.add(
        OpKind::ConsentRevoke,
        fields(&[
            ("rev", int(2)),
            ("templates", list(vec![s(TEMPLATE)])),
            ("effectiveFrom", s(t(11).as_str())),
        ]),
        &m3,
        11,
    );

    // The seeds, all on the final heads.
    let heads = b.log.heads();
    let (ballots, result) = {
        let st = b.log.state_ref();
        let e = st.elections.get(&election).expect("election");
        let counted = e.counted();
        let tally = e.tally(&election, &counted, st.charter.as_deref().expect("charter"));
        let ballots = (s(&counted.cid().to_string()), int(counted.len() as i64));
        (
            ballots,
            guild_core::data::decode(
                &guild_core::data::encode_serde(&tally.to_result()).expect("a seal result encodes"),
            )
            .expect("and decodes"),
        )
    };
    let replica = obj(&[
        ("did", s(&m2.did())),
        ("rev", s(Tid::from_parts(1_700_000_000_000_000, 1).as_str())),
        ("commit", s(&cids::cid_for_cbor(b"\xa0").to_string())),
    ]);
    let drafts: Vec<(&'static str, OpKind, BTreeMap<String, Ipld>, &Keypair)> = vec![
        (
            "ballot",
            OpKind::Ballot,
            fields(&[
                ("election", el.clone()),
                ("rev", int(1)),
                ("approvals", list(vec![s(&founder.did()), s(&m2.did())])),
            ]),
            &m3,
        ),
        (
            "ballot-revision",
            OpKind::Ballot,
            fields(&[
                ("election", el.clone()),
                ("rev", int(2)),
                ("approvals", list(vec![])),
            ]),
            &m2,
        ),
        ("consent-grant", OpKind::ConsentGrant, grant(3), &m3),
        (
            "consent-revoke",
            OpKind::ConsentRevoke,
            fields(&[
                ("rev", int(2)),
                ("templates", list(vec![s(TEMPLATE)])),
                ("effectiveFrom", s(t(20).as_str())),
            ]),
            &m2,
        ),
        (
            "invite",
            OpKind::Invite,
            fields(&[
                ("secretHash", secret_hash(4)),
                ("invitee", s(&candidate.did())),
                ("expiresAt", s(t(1000).as_str())),
            ]),
            &founder,
        ),
        ("join-request", OpKind::Join, BTreeMap::new(), &candidate),
        (
            "leave",
            OpKind::Leave,
            fields(&[("reason", s("moving on"))]),
            &m3,
        ),
        (
            "remove",
            OpKind::Remove,
            fields(&[("member", s(&m3.did())), ("reason", s("fuzz"))]),
            &founder,
        ),
        (
            "seal",
            OpKind::Seal,
            fields(&[
                ("election", el.clone()),
                ("ballotSet", ballots.0),
                ("ballotCount", ballots.1),
                ("result", result),
            ]),
            &founder,
        ),
        (
            "amendment",
            OpKind::Amendment,
            fields(&[(
                "changes",
                obj(&[("name", s("Renamed again")), ("purpose", s("fuzzing"))]),
            )]),
            &m2,
        ),
        (
            "amendment-vote",
            OpKind::ElectionOpen,
            fields(&[
                ("kind", s("amendment")),
                ("method", s("approval")),
                ("proposal", s(&amendment.to_string())),
                ("electorate", s(&electorate)),
                ("tellers", list(vec![s(&founder.did())])),
                ("closesAfter", s(t(30).as_str())),
            ]),
            &m3,
        ),
        ("offer", OpKind::AgreementOffer, offer_fields, &founder),
        (
            "receipt",
            OpKind::BundleReceipt,
            fields(&[
                ("agreement", s(&offer.to_string())),
                ("revoke", s(&revoke.to_string())),
            ]),
            &builder,
        ),
        (
            "bundle-proposal",
            OpKind::BundleProposal,
            fields(&[
                ("agreement", s(&offer.to_string())),
                (
                    "cut",
                    obj(&[
                        (
                            "heads",
                            list(heads.iter().map(|h| s(&h.to_string())).collect()),
                        ),
                        ("replicas", list(vec![replica])),
                    ]),
                ),
                ("kind", s("training")),
            ]),
            &founder,
        ),
        (
            "payout",
            OpKind::PayoutStatement,
            fields(&[
                ("agreement", s(&offer.to_string())),
                (
                    "period",
                    obj(&[
                        ("id", s("2026-Q1")),
                        ("start", s(t(0).as_str())),
                        ("end", s(t(90 * 86_400).as_str())),
                    ]),
                ),
                (
                    "total",
                    obj(&[("amount", int(1000)), ("currency", s("EUR"))]),
                ),
                ("method", s("largest-remainder")),
                (
                    "lines",
                    list(vec![
                        obj(&[
                            ("member", s(&m2.did())),
                            ("weight", int(3)),
                            ("memberDays", int(90)),
                            ("amount", int(600)),
                        ]),
                        obj(&[
                            ("member", s(&m3.did())),
                            ("weight", int(2)),
                            ("memberDays", int(90)),
                            ("amount", int(400)),
                        ]),
                    ]),
                ),
            ]),
            &founder,
        ),
    ];
    let mut seeds: Vec<(&'static str, Vec<u8>)> = drafts
        .into_iter()
        // Ballots are cast before the election's close (15 s), everything else after it.
        .map(|(name, kind, f, by)| {
            let secs = if kind == OpKind::Ballot { 12 } else { 20 };
            (name, b.sign(kind, f, by, secs).bytes().to_vec())
        })
        .collect();
    let other = Op::sign(
        OpKind::Charter,
        None,
        charter_fields("Another collective"),
        &key(5),
        &[],
        &t(0),
    )
    .expect("charter signs");
    seeds.push(("other-charter", other.bytes().to_vec()));
    Fixture { log: b.log, seeds }
}

/// The fixture, built once.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(build)
}

/// What must hold once `op` entered a copy of the fixed log: it is there, a second insert is
/// a duplicate, and loading the log's export in reverse order (every op waiting for its
/// parents, then released) gives the same heads and state.
fn check_applied(log: &Log, base: &Log, op: &SignedOp) {
    assert_eq!(log.len(), base.len() + 1);
    assert!(log.contains(op.id()));
    let mut again = log.clone();
    assert_eq!(again.insert(op.clone(), 0), Inserted::Duplicate);
    let bytes = log.export();
    let back = Log::load_trusted(*log.collective(), bytes.iter().rev().map(|b| &**b));
    assert_eq!(back.len(), log.len());
    assert_eq!(back.heads(), log.heads());
    assert_eq!(
        back.state_ref(),
        log.state_ref(),
        "delivery order changed the state"
    );
}

/// The target's checks; panics on a violation.
///
/// - `SignedOp::decode` never panics; what it accepts, `decode_trusted` accepts as the same op,
///   whose bytes are the input and whose id is the CID of the input.
/// - `Log::insert_bytes` into a copy of the fixed log never panics; input that does not decode
///   is `Rejected(Invalid)`; an applied op passes [`check_applied`].
/// - The trusted path (a node's own store, no lexicon or signature check: what
///   `Log::load_trusted` does): `decode_trusted`, then `Log::insert` into a copy of the fixed
///   log, never panics; an applied op passes [`check_applied`].
pub fn check(input: &[u8]) {
    let fx = fixture();
    let decoded = SignedOp::decode(input);
    let trusted = SignedOp::decode_trusted(input);
    if let Ok(op) = &decoded {
        assert_eq!(trusted.as_ref().ok(), Some(op), "decode_trusted disagrees");
        assert_eq!(op.bytes(), input);
        assert_eq!(*op.id(), cids::cid_for_cbor(input));
    }
    let mut log = fx.log.clone();
    let r = log.insert_bytes(input, 0);
    match (&decoded, &r) {
        (Err(_), Inserted::Rejected(Reason::Invalid(_))) => {}
        (Err(e), r) => panic!("an op that does not decode ({e}) gave {r:?}"),
        (Ok(op), Inserted::Applied) => check_applied(&log, &fx.log, op),
        (Ok(_), _) => {}
    }
    if let Ok(op) = trusted {
        let mut log = fx.log.clone();
        if log.insert(op.clone(), 0) == Inserted::Applied {
            check_applied(&log, &fx.log, &op);
        }
    }
}

/// The `invite_code` target's check: an invite code read from untrusted text never panics, and
/// a code that decodes encodes again to a code that decodes to the same value.
pub fn check_invite_code(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    if let Ok(code) = guild_gov::make::InviteCode::decode(&text) {
        let again = code.encode().expect("a decoded invite code encodes");
        assert_eq!(
            guild_gov::make::InviteCode::decode(&again).as_ref(),
            Ok(&code),
            "an invite code re-encodes to itself"
        );
    }
}
