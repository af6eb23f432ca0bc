use std::collections::BTreeMap;

use guild_core::syntax::{Datetime, Nsid};
use guild_core::{Cid, Ipld, Keypair, cids, data};
use proptest::prelude::*;

use crate::body::{AdmissionPolicy, ApprovalMode, Token};
use crate::log::Inserted;
use crate::op::{OpError, OpKind, SignedOp};
use crate::{AgreementStatus, Log, MAX_OP_BYTES, Op, Reason, Role};

pub(crate) const TEMPLATE: &str = "research-open";

pub(crate) fn key(n: u8) -> Keypair {
    Keypair::from_secret_bytes(&[n; 32])
}

pub(crate) fn t(secs: i64) -> Datetime {
    Datetime::from_unix_micros(1_700_000_000_000_000 + secs * 1_000_000)
}

pub(crate) fn s(x: &str) -> Ipld {
    Ipld::String(x.into())
}

pub(crate) fn int(i: i64) -> Ipld {
    Ipld::Integer(i.into())
}

pub(crate) fn obj(pairs: &[(&str, Ipld)]) -> Ipld {
    Ipld::Map(fields(pairs))
}

pub(crate) fn fields(pairs: &[(&str, Ipld)]) -> BTreeMap<String, Ipld> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

pub(crate) use crate::history::licence_template;

pub(crate) fn charter_fields(policy: &str, approval: &str) -> BTreeMap<String, Ipld> {
    let mut p = crate::make::CharterParams::new("Test collective");
    p.admission_policy = AdmissionPolicy::from_wire(policy).unwrap();
    p.admission_approval = ApprovalMode::from_wire(approval).unwrap();
    p.invite_ttl_days = 7;
    p.amendment_bp = 5000;
    p.accepted_lexicons = vec![Nsid::parse("coop.guild.data.text").unwrap()];
    p.templates = vec![ipld_core::serde::from_ipld(licence_template(TEMPLATE)).unwrap()];
    p.body().to_fields().unwrap()
}

pub(crate) fn genesis_with(founder: &Keypair, policy: &str, approval: &str) -> SignedOp {
    Op::sign(
        OpKind::Charter,
        None,
        charter_fields(policy, approval),
        founder,
        &[],
        &t(0),
    )
    .unwrap()
}

/// A collective founded by `key(1)`, admitting by invite or by request with steward approval.
pub(crate) struct Fx {
    founder: Keypair,
    genesis: SignedOp,
    log: Log,
}

impl Fx {
    fn new() -> Fx {
        Fx::with_policy("invite-or-request", "steward")
    }

    fn with_policy(policy: &str, approval: &str) -> Fx {
        let founder = key(1);
        let genesis = genesis_with(&founder, policy, approval);
        let mut log = Log::new(*genesis.id());
        assert_eq!(log.insert(genesis.clone(), 0), Inserted::Applied);
        Fx {
            founder,
            genesis,
            log,
        }
    }

    fn id(&self) -> Cid {
        *self.genesis.id()
    }

    fn op(
        &self,
        kind: OpKind,
        f: BTreeMap<String, Ipld>,
        by: &Keypair,
        prev: &[Cid],
        secs: i64,
    ) -> SignedOp {
        Op::sign(kind, Some(&self.id()), f, by, prev, &t(secs)).unwrap()
    }

    fn insert(&mut self, op: &SignedOp) -> Inserted {
        self.log.insert(op.clone(), 0)
    }

    fn apply(&mut self, op: &SignedOp) {
        assert_eq!(self.insert(op), Inserted::Applied, "{:?}", op.kind());
    }

    /// Invites and joins `who` after `prev`; returns the join op.
    fn invite_and_join(&mut self, who: &Keypair, prev: &[Cid], n: u8) -> SignedOp {
        let inv = self.op(
            OpKind::Invite,
            invite_fields(n),
            &self.founder.clone(),
            prev,
            1,
        );
        self.apply(&inv);
        let join = self.op(OpKind::Join, join_fields(inv.id(), n), who, &[*inv.id()], 2);
        self.apply(&join);
        join
    }
}

pub(crate) fn secret(n: u8) -> Vec<u8> {
    vec![n; 32]
}

pub(crate) fn invite_fields(n: u8) -> BTreeMap<String, Ipld> {
    fields(&[("secretHash", Ipld::Bytes(cids::sha256(&secret(n)).to_vec()))])
}

pub(crate) fn join_fields(invite: &Cid, n: u8) -> BTreeMap<String, Ipld> {
    fields(&[
        ("invite", s(&invite.to_string())),
        ("secret", Ipld::Bytes(secret(n))),
    ])
}

pub(crate) fn grant_fields(rev: i64) -> BTreeMap<String, Ipld> {
    fields(&[
        ("rev", int(rev)),
        ("templates", Ipld::List(vec![s(TEMPLATE)])),
        (
            "scope",
            obj(&[("$type", s("coop.guild.consent.grant#repo"))]),
        ),
        ("effectiveFrom", s(t(0).as_str())),
    ])
}

pub(crate) fn revoke_fields(rev: i64) -> BTreeMap<String, Ipld> {
    fields(&[
        ("rev", int(rev)),
        ("templates", Ipld::List(vec![s(TEMPLATE)])),
        ("effectiveFrom", s(t(0).as_str())),
    ])
}

pub(crate) fn member_fields(who: &Keypair) -> BTreeMap<String, Ipld> {
    fields(&[("member", s(&who.did()))])
}

/// Re-signs an op's map with `signer` while keeping its `author`.
pub(crate) fn resign(op: &SignedOp, signer: &Keypair) -> Vec<u8> {
    let mut map = op.fields().unwrap();
    map.remove("sig");
    let unsigned = data::encode(&Ipld::Map(map.clone())).unwrap();
    map.insert(
        "sig".into(),
        Ipld::Bytes(signer.sign_object(&unsigned).to_vec()),
    );
    data::encode(&Ipld::Map(map)).unwrap()
}

#[test]
fn signed_op_round_trips() {
    let fx = Fx::new();
    let again = SignedOp::decode(fx.genesis.bytes()).unwrap();
    assert_eq!(again, fx.genesis);
    assert_eq!(*again.id(), cids::cid_for_cbor(fx.genesis.bytes()));
    assert_eq!(again.collective(), None);
    let st = fx.log.state();
    assert_eq!(st.role(&fx.founder.did()), Some(Role::Steward));
    assert_eq!(st.charter.as_ref().unwrap().name, "Test collective");
}

#[test]
fn forged_signature_is_rejected() {
    let fx = Fx::new();
    let inv = fx.op(OpKind::Invite, invite_fields(1), &fx.founder, &[fx.id()], 1);
    let forged = resign(&inv, &key(9));
    assert!(matches!(
        SignedOp::decode(&forged),
        Err(OpError::Signature(_))
    ));
    let mut log = fx.log.clone();
    assert!(matches!(
        log.insert_bytes(&forged, 0),
        Inserted::Rejected(Reason::Invalid(OpError::Signature(_)))
    ));
    // A flipped byte inside the signed content also fails (or breaks the encoding).
    let mut bytes = inv.bytes().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    assert!(SignedOp::decode(&bytes).is_err());
}

#[test]
fn wrong_collective_is_rejected() {
    let mut fx = Fx::new();
    let other = genesis_with(&key(2), "invite-only", "steward");
    assert_eq!(
        fx.insert(&other),
        Inserted::Rejected(Reason::WrongCollective)
    );
    let inv = Op::sign(
        OpKind::Invite,
        Some(other.id()),
        invite_fields(1),
        &fx.founder,
        &[fx.id()],
        &t(1),
    )
    .unwrap();
    assert_eq!(fx.insert(&inv), Inserted::Rejected(Reason::WrongCollective));
}

#[test]
fn unknown_author_is_rejected() {
    let mut fx = Fx::new();
    let stranger = key(7);
    let inv = fx.op(OpKind::Invite, invite_fields(1), &stranger, &[fx.id()], 1);
    assert_eq!(
        fx.insert(&inv),
        Inserted::Rejected(Reason::UnknownAuthor(stranger.did()))
    );
    let grant = fx.op(
        OpKind::ConsentGrant,
        grant_fields(1),
        &stranger,
        &[fx.id()],
        1,
    );
    assert_eq!(
        fx.insert(&grant),
        Inserted::Rejected(Reason::UnknownAuthor(stranger.did()))
    );
}

#[test]
fn only_a_steward_admits() {
    let mut fx = Fx::new();
    let m = key(2);
    let c = key(3);
    let join_m = fx.invite_and_join(&m, &[fx.id()], 1);
    let request = fx.op(OpKind::Join, BTreeMap::new(), &c, &[*join_m.id()], 3);
    fx.apply(&request);
    assert!(fx.log.state().candidates.contains_key(request.id()));
    let mut admit_fields = member_fields(&c);
    admit_fields.insert("join".into(), s(&request.id().to_string()));
    let by_member = fx.op(OpKind::Admit, admit_fields.clone(), &m, &[*request.id()], 4);
    assert_eq!(
        fx.insert(&by_member),
        Inserted::Rejected(Reason::NotSteward(m.did()))
    );
    let by_steward = fx.op(
        OpKind::Admit,
        admit_fields,
        &fx.founder.clone(),
        &[*request.id()],
        4,
    );
    fx.apply(&by_steward);
    let st = fx.log.state();
    assert_eq!(st.role(&c.did()), Some(Role::Member));
    assert!(st.candidates.is_empty());
}

#[test]
fn requests_need_the_charter_to_allow_them() {
    let mut fx = Fx::with_policy("invite-only", "steward");
    let request = fx.op(OpKind::Join, BTreeMap::new(), &key(3), &[fx.id()], 3);
    assert_eq!(
        fx.insert(&request),
        Inserted::Rejected(Reason::RequestsNotAllowed)
    );
}

#[test]
fn admission_by_vote_is_not_a_steward_decision() {
    let mut fx = Fx::with_policy("invite-or-request", "vote");
    let c = key(3);
    let request = fx.op(OpKind::Join, BTreeMap::new(), &c, &[fx.id()], 3);
    fx.apply(&request);
    let mut f = member_fields(&c);
    f.insert("join".into(), s(&request.id().to_string()));
    let admit = fx.op(OpKind::Admit, f, &fx.founder.clone(), &[*request.id()], 4);
    assert_eq!(fx.insert(&admit), Inserted::Rejected(Reason::VoteRequired));
}

#[test]
fn one_invite_admits_one_member() {
    let mut fx = Fx::new();
    let inv = fx.op(
        OpKind::Invite,
        invite_fields(1),
        &fx.founder.clone(),
        &[fx.id()],
        1,
    );
    fx.apply(&inv);
    let a = fx.op(
        OpKind::Join,
        join_fields(inv.id(), 1),
        &key(2),
        &[*inv.id()],
        2,
    );
    let b_after = fx.op(
        OpKind::Join,
        join_fields(inv.id(), 1),
        &key(3),
        &[*a.id()],
        3,
    );
    let b_concurrent = fx.op(
        OpKind::Join,
        join_fields(inv.id(), 1),
        &key(3),
        &[*inv.id()],
        3,
    );
    let mut concurrent = fx.log.clone();
    fx.apply(&a);
    assert_eq!(fx.insert(&b_after), Inserted::Rejected(Reason::InviteUsed));
    // Concurrent joins with one invite: both are authorised by their own past, but only the
    // first in the topological order admits, whatever the delivery order.
    let mut other = concurrent.clone();
    assert_eq!(concurrent.insert(a.clone(), 0), Inserted::Applied);
    assert_eq!(
        concurrent.insert(b_concurrent.clone(), 0),
        Inserted::Applied
    );
    assert_eq!(other.insert(b_concurrent, 0), Inserted::Applied);
    assert_eq!(other.insert(a, 0), Inserted::Applied);
    let st = concurrent.state();
    assert_eq!(st, other.state());
    assert_eq!(st.members.len(), 2);
    assert!(st.invites.is_empty());
}

#[test]
fn an_invite_opens_the_log_only_while_it_is_open_by_the_answering_nodes_clock() {
    let mut fx = Fx::new();
    let mut f = invite_fields(1);
    f.insert("expiresAt".into(), s(t(100).as_str()));
    let inv = fx.op(OpKind::Invite, f, &fx.founder.clone(), &[fx.id()], 1);
    fx.apply(&inv);
    let st = fx.log.state();
    let me = key(2).did();
    let now = |secs: i64| t(secs).to_unix_micros();
    assert_eq!(
        st.may_fetch_with_invite(inv.id(), &secret(1), &me, now(99)),
        Ok(())
    );
    assert_eq!(
        st.may_fetch_with_invite(inv.id(), &secret(1), &me, now(100)),
        Err(Reason::InviteExpired)
    );
    assert_eq!(
        st.may_fetch_with_invite(inv.id(), &secret(2), &me, now(50)),
        Err(Reason::SecretMismatch)
    );
    assert_eq!(
        st.may_fetch_with_invite(&fx.id(), &secret(1), &me, now(50)),
        Err(Reason::UnknownInvite)
    );
    let join = fx.op(
        OpKind::Join,
        join_fields(inv.id(), 1),
        &key(2),
        &[*inv.id()],
        50,
    );
    fx.apply(&join);
    assert_eq!(
        fx.log
            .state()
            .may_fetch_with_invite(inv.id(), &secret(1), &key(3).did(), now(60)),
        Err(Reason::InviteUsed)
    );
}

#[test]
fn expired_invite_is_rejected() {
    let mut fx = Fx::new();
    let mut f = invite_fields(1);
    f.insert("expiresAt".into(), s(t(100).as_str()));
    let inv = fx.op(OpKind::Invite, f, &fx.founder.clone(), &[fx.id()], 1);
    fx.apply(&inv);
    let late = fx.op(
        OpKind::Join,
        join_fields(inv.id(), 1),
        &key(2),
        &[*inv.id()],
        200,
    );
    assert_eq!(fx.insert(&late), Inserted::Rejected(Reason::InviteExpired));
    // Without expiresAt, the charter's inviteTtlDays (7) applies.
    let inv2 = fx.op(
        OpKind::Invite,
        invite_fields(2),
        &fx.founder.clone(),
        &[*inv.id()],
        1,
    );
    fx.apply(&inv2);
    let eight_days = 8 * 86_400;
    let late2 = fx.op(
        OpKind::Join,
        join_fields(inv2.id(), 2),
        &key(2),
        &[*inv2.id()],
        eight_days,
    );
    assert_eq!(fx.insert(&late2), Inserted::Rejected(Reason::InviteExpired));
    let wrong_secret = fx.op(
        OpKind::Join,
        join_fields(inv2.id(), 3),
        &key(2),
        &[*inv2.id()],
        5,
    );
    assert_eq!(
        fx.insert(&wrong_secret),
        Inserted::Rejected(Reason::SecretMismatch)
    );
    let ok = fx.op(
        OpKind::Join,
        join_fields(inv2.id(), 2),
        &key(2),
        &[*inv2.id()],
        5,
    );
    fx.apply(&ok);
}

#[test]
fn removal_wins_over_concurrent_ops_of_the_removed() {
    let mut fx = Fx::new();
    let m = key(2);
    let join = fx.invite_and_join(&m, &[fx.id()], 1);
    let base = fx.log.clone();
    let remove = fx.op(
        OpKind::Remove,
        member_fields(&m),
        &fx.founder.clone(),
        &[*join.id()],
        5,
    );
    let grant = fx.op(OpKind::ConsentGrant, grant_fields(1), &m, &[*join.id()], 5);
    let leave = fx.op(OpKind::Leave, BTreeMap::new(), &m, &[*grant.id()], 6);
    let mut states = Vec::new();
    for order in [
        vec![&remove, &grant, &leave],
        vec![&grant, &remove, &leave],
        vec![&grant, &leave, &remove],
    ] {
        let mut log = base.clone();
        for op in order {
            assert_eq!(log.insert(op.clone(), 0), Inserted::Applied);
        }
        states.push(log.state());
    }
    assert!(states.windows(2).all(|w| w[0] == w[1]));
    let st = &states[0];
    assert!(!st.members.contains_key(m.did().as_str()));
    assert_eq!(
        st.departed.get(m.did().as_str()),
        Some(&crate::Departure::Removed(*remove.id()))
    );
    assert!(st.consents.is_empty(), "the concurrent grant is ignored");
    // An op by the removed member after the removal is unauthorised.
    let mut log = base.clone();
    log.insert(remove.clone(), 0);
    let after = fx.op(
        OpKind::ConsentGrant,
        grant_fields(1),
        &m,
        &[*remove.id()],
        7,
    );
    assert_eq!(
        log.insert(after, 0),
        Inserted::Rejected(Reason::UnknownAuthor(m.did()))
    );
    // The state at the cut before the removal still has the member.
    let log_full = {
        let mut l = base.clone();
        for op in [&remove, &grant] {
            l.insert(op.clone(), 0);
        }
        l
    };
    let cut = log_full.state_at(&[*grant.id()]);
    assert!(cut.members.contains_key(m.did().as_str()));
    assert!(cut.effective_consent(&m.did(), TEMPLATE).is_some());
}

#[test]
fn revocation_wins_over_a_concurrent_grant() {
    let mut fx = Fx::new();
    let m = key(2);
    let join = fx.invite_and_join(&m, &[fx.id()], 1);
    let g1 = fx.op(OpKind::ConsentGrant, grant_fields(1), &m, &[*join.id()], 3);
    fx.apply(&g1);
    let revoke = fx.op(OpKind::ConsentRevoke, revoke_fields(2), &m, &[*g1.id()], 4);
    let g2 = fx.op(OpKind::ConsentGrant, grant_fields(2), &m, &[*g1.id()], 5);
    let mut a = fx.log.clone();
    let mut b = fx.log.clone();
    a.insert(revoke.clone(), 0);
    a.insert(g2.clone(), 0);
    b.insert(g2.clone(), 0);
    b.insert(revoke.clone(), 0);
    assert_eq!(a.state(), b.state());
    let st = a.state();
    assert!(st.effective_consent(&m.did(), TEMPLATE).is_none());
    // A grant after the revocation (it saw it) wins, and the rev keeps rising.
    let g3 = fx.op(
        OpKind::ConsentGrant,
        grant_fields(3),
        &m,
        &[*revoke.id(), *g2.id()],
        6,
    );
    assert_eq!(a.insert(g3, 0), Inserted::Applied);
    let c = a.state();
    let consent = c.effective_consent(&m.did(), TEMPLATE).unwrap();
    assert_eq!(consent.rev, 3);
    // Unknown templates are refused.
    let mut f = grant_fields(1);
    f.insert("templates".into(), Ipld::List(vec![s("eval-public")]));
    let bad = fx.op(OpKind::ConsentGrant, f, &m, &[*g1.id()], 5);
    assert_eq!(
        fx.insert(&bad),
        Inserted::Rejected(Reason::UnknownTemplate("eval-public".into()))
    );
}

#[test]
fn prev_rules() {
    let id = cids::cid_for_cbor(b"\xa0");
    let other = cids::cid_for_cbor(b"\x80");
    assert_eq!(
        crate::op::check_prev(&id, &[Ipld::Link(other), Ipld::Link(id)]),
        Err(OpError::SelfReference)
    );
    assert_eq!(
        crate::op::check_prev(&id, &[Ipld::Link(other), Ipld::Link(other)]),
        Err(OpError::DuplicatePrev(other))
    );
    let fx = Fx::new();
    assert_eq!(
        Op::sign(
            OpKind::Invite,
            Some(&fx.id()),
            invite_fields(1),
            &fx.founder,
            &[fx.id(), fx.id()],
            &t(1)
        ),
        Err(OpError::DuplicatePrev(fx.id()))
    );
    assert!(matches!(
        Op::sign(
            OpKind::Invite,
            Some(&fx.id()),
            invite_fields(1),
            &fx.founder,
            &[],
            &t(1)
        ),
        Err(OpError::Genesis(_))
    ));
}

#[test]
fn oversize_and_malformed_ops_are_rejected() {
    assert_eq!(
        SignedOp::decode(&vec![0; MAX_OP_BYTES + 1]),
        Err(OpError::TooLarge(MAX_OP_BYTES + 1))
    );
    let fx = Fx::new();
    let mut f = invite_fields(1);
    f.insert("padding".into(), Ipld::Bytes(vec![0; MAX_OP_BYTES]));
    assert!(matches!(
        Op::sign(
            OpKind::Invite,
            Some(&fx.id()),
            f,
            &fx.founder,
            &[fx.id()],
            &t(1)
        ),
        Err(OpError::TooLarge(_))
    ));
    let short = fields(&[("secretHash", Ipld::Bytes(vec![1; 10]))]);
    assert!(matches!(
        Op::sign(
            OpKind::Invite,
            Some(&fx.id()),
            short,
            &fx.founder,
            &[fx.id()],
            &t(1)
        ),
        Err(OpError::Lexicon(_))
    ));
    let mut log = fx.log.clone();
    assert!(matches!(
        log.insert_bytes(b"\xa0", 0),
        Inserted::Rejected(Reason::Invalid(_))
    ));
    assert!(matches!(
        Op::sign(
            OpKind::Invite,
            Some(&fx.id()),
            fields(&[("author", s("x"))]),
            &fx.founder,
            &[fx.id()],
            &t(1)
        ),
        Err(OpError::ReservedField(_))
    ));
}

#[test]
fn pending_ops_wait_for_parents_and_are_bounded() {
    let fx = Fx::new();
    let inv = fx.op(OpKind::Invite, invite_fields(1), &fx.founder, &[fx.id()], 1);
    let join = fx.op(
        OpKind::Join,
        join_fields(inv.id(), 1),
        &key(2),
        &[*inv.id()],
        2,
    );
    let mut log = Log::new(fx.id());
    assert_eq!(
        log.insert(join.clone(), 0),
        Inserted::Pending {
            missing: vec![*inv.id()]
        }
    );
    assert_eq!(
        log.insert(inv.clone(), 0),
        Inserted::Pending {
            missing: vec![fx.id()]
        }
    );
    assert_eq!(log.insert(fx.genesis.clone(), 0), Inserted::Applied);
    assert_eq!(log.len(), 3);
    assert_eq!(log.pending_len(), 0);
    assert_eq!(log.heads(), vec![*join.id()]);
    assert_eq!(log.insert(join.clone(), 0), Inserted::Duplicate);
    assert_eq!(log.state(), {
        let mut l = fx.log.clone();
        l.insert(inv.clone(), 0);
        l.insert(join.clone(), 0);
        l.state()
    });
    let since: Vec<Cid> = log.ops_since(&[fx.id()]).iter().map(|o| *o.id()).collect();
    assert_eq!(since, vec![*inv.id(), *join.id()]);

    let mut small = Log::new(fx.id()).with_pending_bounds(1, 10);
    small.insert(join.clone(), 0);
    small.insert(inv.clone(), 1);
    assert_eq!(small.pending_len(), 1, "the oldest is evicted");
    small.insert(fx.genesis.clone(), 100);
    assert_eq!(small.len(), 1, "the waiting op expired");
}

/// Builds a random history: four keys acting on their own replicas, syncing now and then,
/// so that branches are concurrent. Returns the genesis id, every valid op created, and some
/// unauthorised ones (invites by non-stewards, forged signatures).
fn history(actions: &[(u8, u8, u8)]) -> (Cid, Vec<SignedOp>, Vec<Vec<u8>>) {
    let keys: Vec<Keypair> = (1..=4).map(key).collect();
    let genesis = genesis_with(&keys[0], "invite-or-request", "steward");
    let cid = *genesis.id();
    let mut replicas: Vec<Log> = (0..4).map(|_| Log::new(cid)).collect();
    for r in &mut replicas {
        r.insert(genesis.clone(), 0);
    }
    let mut offers: Vec<Vec<(Cid, u8)>> = vec![Vec::new(); 4];
    let mut all = vec![genesis];
    let mut bad: Vec<Vec<u8>> = Vec::new();
    for (step, &(actor, action, target)) in actions.iter().enumerate() {
        let (a, mut tg) = (actor as usize % 4, target as usize % 4);
        let secs = step as i64;
        if action % 16 == 0 || action >= 16 {
            let ops: Vec<SignedOp> = replicas[tg].ops_in_order().into_iter().collect();
            for op in ops {
                replicas[a].insert(op, 0);
            }
            continue;
        }
        let st = replicas[a].state();
        let me = keys[a].did();
        let role = st.role(&me);
        let heads = replicas[a].heads();
        let mk = |kind, f| Op::sign(kind, Some(&cid), f, &keys[a], &heads, &t(secs)).unwrap();
        let op = match (action % 16, role) {
            (1, Some(Role::Steward)) => {
                // Invite someone who is not a member, if there is anyone.
                if let Some(i) =
                    (1..4).find(|&i| !st.members.contains_key(keys[(tg + i) % 4].did().as_str()))
                {
                    tg = (tg + i) % 4;
                }
                let n = step as u8;
                let op = mk(OpKind::Invite, invite_fields(n));
                offers[tg].push((*op.id(), n));
                op
            }
            (1, _) => {
                let op = mk(OpKind::Invite, invite_fields(0));
                assert!(matches!(
                    replicas[a].insert(op.clone(), 0),
                    Inserted::Rejected(_)
                ));
                bad.push(op.bytes().to_vec());
                if let Some(r) = replicas[a].heads().first().and_then(|h| replicas[a].get(h)) {
                    bad.push(resign(&r, &key(99)));
                }
                continue;
            }
            (2, None) => match offers[a].iter().find(|(i, _)| st.invites.contains_key(i)) {
                Some(&(inv, n)) => mk(OpKind::Join, join_fields(&inv, n)),
                None if tg == 0 => mk(OpKind::Join, BTreeMap::new()),
                None => continue,
            },
            (3, Some(Role::Steward)) => match st.candidates.iter().next() {
                Some((join, who)) if !st.members.contains_key(who) => {
                    let mut f = fields(&[("member", s(who.as_str()))]);
                    f.insert("join".into(), s(&join.to_string()));
                    mk(OpKind::Admit, f)
                }
                _ => continue,
            },
            (4, Some(Role::Steward))
                if tg != a && st.members.contains_key(keys[tg].did().as_str()) =>
            {
                mk(OpKind::Remove, member_fields(&keys[tg]))
            }
            (5, Some(Role::Member)) => mk(OpKind::Leave, BTreeMap::new()),
            (6, Some(_)) => mk(OpKind::ConsentGrant, grant_fields(next_rev(&st, &me))),
            (7, Some(_)) => mk(OpKind::ConsentRevoke, revoke_fields(next_rev(&st, &me))),
            (8, Some(_)) => {
                let candidates: Vec<Ipld> =
                    st.members.keys().take(3).map(|d| s(d.as_str())).collect();
                let mut f = fields(&[
                    ("kind", s("stewards")),
                    ("method", s("approval")),
                    ("seats", int(1 + (tg as i64 % 2))),
                    ("candidates", Ipld::List(candidates)),
                    ("electorate", s(&st.electorate_cid().to_string())),
                    ("closesAfter", s(t(secs + 6).as_str())),
                ]);
                let tellers = st.tellers().iter().map(|d| s(d.as_str())).collect();
                f.insert("tellers".into(), Ipld::List(tellers));
                mk(OpKind::ElectionOpen, f)
            }
            (9, Some(_)) => {
                let open = st.elections.iter().rev().find(|(_, e)| {
                    e.certified.is_none()
                        && e.electorate.contains(me.as_str())
                        && t(secs).to_unix_micros() < e.closes_after.to_unix_micros()
                });
                let Some((eid, e)) = open else { continue };
                let rev = e.ballots.get(me.as_str()).map_or(0, |v| v.rev + 1);
                let choice: Vec<Ipld> = e
                    .candidates
                    .iter()
                    .skip(tg % 2)
                    .take(1)
                    .map(|d| s(d.as_str()))
                    .collect();
                mk(
                    OpKind::Ballot,
                    fields(&[
                        ("election", s(&eid.to_string())),
                        ("rev", int(rev as i64)),
                        ("approvals", Ipld::List(choice)),
                    ]),
                )
            }
            (10, Some(_)) => {
                let open = st.elections.iter().find(|(_, e)| {
                    e.certified.is_none()
                        && e.tellers.contains(me.as_str())
                        && t(secs).to_unix_micros() >= e.closes_after.to_unix_micros()
                        && e.seals
                            .get(me.as_str())
                            .is_none_or(|(_, b, _)| **b != e.counted())
                        && !e.equivocating_tellers.contains(me.as_str())
                });
                let Some((eid, e)) = open else { continue };
                let counted = e.counted();
                let tally = e.tally(eid, &counted, st.charter.as_ref().unwrap());
                mk(
                    OpKind::Seal,
                    fields(&[
                        ("election", s(&eid.to_string())),
                        ("ballotSet", s(&counted.cid().to_string())),
                        ("ballotCount", int(counted.len() as i64)),
                        (
                            "result",
                            ipld_core::serde::to_ipld(tally.to_result()).unwrap(),
                        ),
                    ]),
                )
            }
            (11, Some(Role::Steward)) => mk(
                OpKind::AgreementOffer,
                fields(&[
                    ("builder", s(&key(20).did())),
                    ("template", s(TEMPLATE)),
                    ("terms", licence_template(TEMPLATE)),
                ]),
            ),
            (12, _) => {
                // The builder acknowledges a sealed bundle, accepts an offer on this replica,
                // or a steward countersigns.
                let builder = key(20);
                let unacknowledged = st.bundles.values().find_map(|b| {
                    let (m, _) = b.sealed.as_ref()?;
                    (!st.receipts.contains_key(&(b.agreement, *m))).then_some((b.agreement, *m))
                });
                if let Some((agreement, manifest)) = unacknowledged {
                    let op = Op::sign(
                        OpKind::BundleReceipt,
                        Some(&cid),
                        fields(&[
                            ("agreement", s(&agreement.to_string())),
                            ("bundle", s(&manifest.to_string())),
                        ]),
                        &builder,
                        &heads,
                        &t(secs),
                    )
                    .unwrap();
                    if let Inserted::Rejected(_) = replicas[a].insert(op.clone(), 0) {
                        continue;
                    }
                    all.push(op);
                    continue;
                }
                let found = st.agreements.iter().find_map(|(id, a)| match a.status {
                    AgreementStatus::Offered => Some((*id, None)),
                    AgreementStatus::Accepted(acc) if role == Some(Role::Steward) => {
                        Some((*id, Some(acc)))
                    }
                    _ => None,
                });
                match found {
                    Some((offer, None)) => Op::sign(
                        OpKind::AgreementAccept,
                        Some(&cid),
                        fields(&[("offer", s(&offer.to_string()))]),
                        &builder,
                        &heads,
                        &t(secs),
                    )
                    .unwrap(),
                    Some((offer, Some(acc))) => mk(
                        OpKind::AgreementCountersign,
                        fields(&[
                            ("offer", s(&offer.to_string())),
                            ("accept", s(&acc.to_string())),
                        ]),
                    ),
                    None => continue,
                }
            }
            (13, Some(Role::Steward)) => {
                let Some((offer, _)) = st
                    .agreements
                    .iter()
                    .find(|(_, a)| matches!(a.status, AgreementStatus::InForce(_)))
                else {
                    continue;
                };
                mk(
                    OpKind::BundleProposal,
                    fields(&[
                        ("agreement", s(&offer.to_string())),
                        ("kind", s("training")),
                        (
                            "cut",
                            obj(&[
                                (
                                    "heads",
                                    Ipld::List(heads.iter().map(|h| s(&h.to_string())).collect()),
                                ),
                                ("replicas", Ipld::List(vec![])),
                            ]),
                        ),
                    ]),
                )
            }
            (14, Some(Role::Steward)) => {
                let Some((p, _)) = st.bundles.iter().find(|(_, b)| {
                    b.sealed.is_none()
                        && b.voided.is_none()
                        && !b.approvals.contains_key(me.as_str())
                }) else {
                    continue;
                };
                mk(
                    OpKind::BundleApproval,
                    fields(&[
                        ("proposal", s(&p.to_string())),
                        ("manifest", s(&cids::cid_for_raw(&[tg as u8]).to_string())),
                    ]),
                )
            }
            (15, Some(_)) => mk(OpKind::ConsentGrant, grant_fields(next_rev(&st, &me))),
            _ => continue,
        };
        // An op its own replica refuses (e.g. an approval that saw a revocation) is skipped.
        if let Inserted::Rejected(r) = replicas[a].insert(op.clone(), 0) {
            if std::env::var("DBG").is_ok() {
                eprintln!("{:?} {r:?}", op.kind());
            }
            continue;
        }
        // An invite is handed to the invitee, and a join request to the founder, with the
        // history behind it.
        let to = match op.kind() {
            OpKind::Invite => Some(tg),
            OpKind::Join if matches!(op.body(), crate::body::OpBody::Join(j) if j.invite.is_none()) => {
                Some(0)
            }
            _ => None,
        };
        if let Some(to) = to {
            let ops: Vec<SignedOp> = replicas[a].ops_in_order().into_iter().collect();
            for op in ops {
                replicas[to].insert(op, 0);
            }
        }
        // Half the invitees join at once.
        let join_now = op.kind() == OpKind::Invite && step % 2 == 0;
        let inv = *op.id();
        all.push(op);
        if join_now
            && !replicas[tg]
                .state()
                .members
                .contains_key(keys[tg].did().as_str())
        {
            let heads = replicas[tg].heads();
            let join = Op::sign(
                OpKind::Join,
                Some(&cid),
                join_fields(&inv, step as u8),
                &keys[tg],
                &heads,
                &t(secs),
            )
            .unwrap();
            assert_eq!(replicas[tg].insert(join.clone(), 0), Inserted::Applied);
            all.push(join);
        }
    }
    (cid, all, bad)
}

/// The next rev of a member's consent register for [`TEMPLATE`].
fn next_rev(st: &crate::State, did: &str) -> i64 {
    st.consents
        .iter()
        .find(|&((d, t), _)| d.as_str() == did && **t == *TEMPLATE)
        .map_or(1, |(_, c)| c.rev as i64 + 1)
}

/// A deterministic shuffle (xorshift), with some ops repeated.
fn delivery(ops: &[SignedOp], seed: u64) -> Vec<SignedOp> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out: Vec<SignedOp> = ops.to_vec();
    for _ in 0..ops.len() / 3 + 1 {
        let i = (next() % ops.len() as u64) as usize;
        out.push(ops[i].clone());
    }
    for i in (1..out.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        out.swap(i, j);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn replicas_converge(
        actions in proptest::collection::vec((0u8..4, 0u8..20, 0u8..4), 1..200),
        seeds in proptest::collection::vec(any::<u64>(), 3),
    ) {
        let (cid, ops, bad) = history(&actions);
        let mut reference = Log::new(cid);
        for op in &ops {
            prop_assert_eq!(reference.insert(op.clone(), 0), Inserted::Applied);
        }
        let state = reference.state();
        prop_assert_eq!(&reference.state_at(&reference.heads()), &state);
        for (n, seed) in seeds.into_iter().enumerate() {
            // The last replica checkpoints often and keeps few, so that refolds start from
            // checkpoints, from evicted ones, and from nothing.
            // The second keeps no op decoded and the last only five, so that their folds
            // decode ops again from the bytes they keep.
            let mut log = match n {
                1 => Log::new(cid).with_decoded_kept(0),
                2 => Log::new(cid).with_checkpoints(4, 3).with_decoded_kept(5),
                _ => Log::new(cid),
            };
            let mut rejected = 0;
            for (i, op) in delivery(&ops, seed).into_iter().enumerate() {
                // The first replica decodes every op (signature checks are slow in debug
                // builds); the others take them decoded.
                let r = if n == 0 {
                    log.insert_bytes(op.bytes(), 0)
                } else {
                    log.insert(op, 0)
                };
                prop_assert!(!matches!(r, Inserted::Rejected(_)), "{:?}", r);
                // Interleave the bad ops; each is rejected wherever it arrives (once its
                // parents are there; before that it waits).
                if let Some(b) = bad.get(i)
                    && let Inserted::Rejected(_) = log.insert_bytes(b, 0)
                {
                    rejected += 1;
                }
            }
            for b in &bad {
                let r = log.insert_bytes(b, 0);
                prop_assert!(matches!(r, Inserted::Rejected(_)), "{:?}", r);
            }
            prop_assert!(rejected <= bad.len());
            prop_assert_eq!(log.pending_len(), 0);
            prop_assert_eq!(log.len(), ops.len());
            prop_assert_eq!(log.heads(), reference.heads());
            prop_assert_eq!(&log.state(), &state);
            prop_assert_eq!(&log.state_at(&log.heads()), &state);
            for op in ops.iter().step_by(3) {
                let fast = log.state_at(op.prev());
                prop_assert_eq!(&fast, &reference.state_at(op.prev()));
                // The checkpointed fold equals the reference fold from nothing.
                prop_assert_eq!(&fast, &log.fold_set(&log.ancestors(op.prev())));
            }
            prop_assert_eq!(&state, &log.fold_set(&log.ancestors(&log.heads())));
        }
    }
}

/// `lean` gives the same ops, bytes, order, states and pasts as `full`.
fn assert_answers_as(lean: &Log, full: &Log) {
    assert_eq!(lean.export(), full.export());
    assert_eq!(lean.heads(), full.heads());
    assert_eq!(lean.state_ref(), full.state_ref());
    for op in full.ops_in_order().iter().step_by(5) {
        assert_eq!(lean.get(op.id()).as_ref(), Some(op));
        assert_eq!(lean.bytes_of(op.id()).as_deref(), Some(op.bytes()));
        assert_eq!(lean.state_at(op.prev()), full.state_at(op.prev()));
        assert_eq!(lean.ancestors(&[*op.id()]), full.ancestors(&[*op.id()]));
    }
}

/// A log keeps only the ops that entered it last decoded; the others it keeps as bytes,
/// and gives back the same ops, bytes, order and states as a log that keeps all decoded.
#[test]
fn only_recent_ops_stay_decoded() {
    let (id, full) = random_log(41, 900);
    let bytes: Vec<Vec<u8>> = full.export().iter().map(|b| b.to_vec()).collect();
    assert!(bytes.len() > 200, "{} ops", bytes.len());
    assert_eq!(full.decoded_len(), bytes.len());
    let mut lean = Log::new(id).with_decoded_kept(16);
    for op in full.unsaved() {
        let op = full.get(op).expect("the log holds its unsaved ops");
        assert_eq!(lean.insert(op, 0), Inserted::Applied);
    }
    assert_eq!(lean.decoded_len(), 16);
    assert_answers_as(&lean, &full);
    // A load keeps the same bound, whatever the count it loads.
    let loaded = Log::load_trusted(id, bytes.iter().map(Vec::as_slice));
    assert_eq!(loaded.state_ref(), full.state_ref());
    let small = Log::load_with(
        id,
        bytes.iter().map(Vec::as_slice),
        &SignedOp::decode_trusted,
        64,
        true,
    );
    assert_eq!(small.state_ref(), full.state_ref());
}

#[test]
fn export_load_and_released() {
    let mut fx = Fx::new();
    let m = key(2);
    let join = fx.invite_and_join(&m, &[fx.id()], 1);
    let grant = fx.op(OpKind::ConsentGrant, grant_fields(1), &m, &[*join.id()], 3);
    fx.apply(&grant);
    let bytes: Vec<Vec<u8>> = fx.log.export().iter().map(|b| b.to_vec()).collect();
    assert_eq!(bytes.len(), 4);
    let loaded = Log::load(fx.id(), bytes.iter().rev().map(Vec::as_slice));
    assert_eq!(loaded.heads(), fx.log.heads());
    assert_eq!(loaded.state(), fx.log.state());

    let mut log = Log::new(fx.id());
    log.insert_bytes(&bytes[2], 0);
    log.insert_bytes(&bytes[1], 0);
    assert!(log.drain_released().is_empty());
    log.insert_bytes(&bytes[0], 0);
    assert_eq!(log.drain_released().len(), 2);
    assert!(log.drain_released().is_empty());
}

/// `n` actions for [`history`] from a xorshift state.
fn random_actions(x: &mut u64, n: usize) -> Vec<(u8, u8, u8)> {
    (0..n)
        .map(|_| {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            (
                (*x % 4) as u8,
                ((*x >> 8) % 20) as u8,
                ((*x >> 16) % 4) as u8,
            )
        })
        .collect()
}

/// The log of a random [`history`] of `n` actions from xorshift seed `seed`, built op by
/// op, with its collective's id.
fn random_log(mut seed: u64, n: usize) -> (Cid, Log) {
    let (id, ops, _) = history(&random_actions(&mut seed, n));
    let mut log = Log::new(id);
    for op in &ops {
        log.insert(op.clone(), 0);
    }
    (id, log)
}

/// `Log::is_ancestor` (which answers most questions from the ops' floors) agrees with the
/// ancestor sets walked in full, in a log built op by op (concurrent ops landing inside the
/// order), one loaded from its export, and one whose ops arrived children first.
#[test]
fn is_ancestor_agrees_with_the_ancestor_sets() {
    let (id, built) = random_log(31, 1200);
    let bytes: Vec<Vec<u8>> = built.export().iter().map(|b| b.to_vec()).collect();
    let loaded = Log::load_trusted(id, bytes.iter().map(Vec::as_slice));
    let reversed = Log::load(id, bytes.iter().rev().map(Vec::as_slice));
    let ids: Vec<Cid> = built.ops_in_order().iter().map(|op| *op.id()).collect();
    assert!(ids.len() > 200, "{} ops", ids.len());
    let mut x: u64 = 7;
    let (mut yes, mut no) = (0, 0);
    for b in ids.iter().step_by(7) {
        let past = built.ancestors(&[*b]);
        for _ in 0..20 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let a = &ids[(x % ids.len() as u64) as usize];
            let expected = a != b && past.contains(a);
            if expected {
                yes += 1
            } else {
                no += 1
            }
            for log in [&built, &loaded, &reversed] {
                assert_eq!(log.is_ancestor(a, b), expected, "{a} before {b}");
            }
        }
    }
    assert!(yes > 100 && no > 100, "{yes} ancestors, {no} not");
}

/// `Reorder` puts ops in the order a log accepted them (a concurrent op after ops it
/// precedes) back in the log's order when its window holds them all, and with any window lets
/// every op through exactly once; a log loaded from the accepted order is the same log.
#[test]
fn reorder_restores_the_log_order_from_the_accepted_one() {
    use crate::log::Reorder;
    let (id, log) = random_log(41, 1500);
    let accepted: Vec<SignedOp> = log.unsaved().iter().filter_map(|id| log.get(id)).collect();
    let in_order: Vec<Cid> = log.ops_in_order().iter().map(|op| *op.id()).collect();
    assert_eq!(accepted.len(), in_order.len());
    let as_accepted: Vec<Cid> = accepted.iter().map(|op| *op.id()).collect();
    assert_ne!(
        as_accepted, in_order,
        "the history has ops accepted out of the log's order"
    );
    for window in [0, 1, 8, 100, 10_000] {
        let mut reorder = Reorder::new(window);
        let mut out = Vec::new();
        for chunk in accepted.chunks(97) {
            out.extend(reorder.feed(chunk.iter().cloned().map(Some).collect()));
        }
        out.extend(reorder.flush());
        let ids: Vec<Cid> = out.into_iter().flatten().map(|op| *op.id()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        let mut expected = in_order.clone();
        expected.sort();
        assert_eq!(sorted, expected, "window {window}: every op once");
        if window >= in_order.len() {
            assert_eq!(ids, in_order, "window {window}");
        }
    }
    let bytes: Vec<&[u8]> = accepted.iter().map(SignedOp::bytes).collect();
    let loaded = Log::load_with(id, bytes, &SignedOp::decode, 64, true);
    assert_eq!(loaded.export(), log.export());
    assert_eq!(loaded.state(), log.state());
}

/// What a log loaded from its own store computes for an op instead of checking it against
/// its past (`State::past_meta`) is what that check returns, for every op of a random
/// history (seals, elections, removals and proposals among them).
#[test]
fn past_meta_is_what_check_past_returns() {
    use crate::state::{Meta, State};
    let (_, log) = random_log(23, 1500);
    let mut with_meta = 0;
    for op in &log.ops_in_order() {
        let past = log.state_at(op.prev());
        let checked = past
            .check_past(op, &log)
            .expect("an op of the log passes its past");
        assert_eq!(past.past_meta(op), Ok(checked.clone()), "{:?}", op.kind());
        if !State::needs_past_meta(op) {
            assert_eq!(checked, Meta::default(), "{:?}", op.kind());
        } else {
            with_meta += 1;
        }
    }
    assert!(with_meta > 10, "{with_meta} ops with facts of their past");
}

/// Cuts of a log to ask for its state at: each of the last 200 ops' prev, and each of those
/// ops alone.
fn cuts(log: &Log) -> Vec<Vec<Cid>> {
    let ops = log.ops_in_order();
    let from = ops.len().saturating_sub(200);
    ops[from..]
        .iter()
        .flat_map(|op| [op.prev().to_vec(), vec![*op.id()]])
        .collect()
}

/// `Log::load` decoding chunks on other threads while it inserts gives the log that inserting
/// op by op gives, whatever the chunk size (4 096 in use; small here, so that a small history
/// crosses many chunks), in the export order and in a shuffled one, with a corrupt op left out.
#[test]
fn a_load_in_parallel_chunks_is_the_log_built_op_by_op() {
    let (id, one_by_one) = random_log(11, 1500);
    // `trusting`: as from this node's store, each op not checked against its past again.
    let load = |bytes: &[Vec<u8>], chunk: usize, trusting: bool| {
        Log::load_with(
            id,
            bytes.iter().map(Vec::as_slice),
            &SignedOp::decode,
            chunk,
            trusting,
        )
    };
    let mut bytes: Vec<Vec<u8>> = one_by_one.export().iter().map(|b| b.to_vec()).collect();
    assert!(bytes.len() > 100, "{} ops", bytes.len());
    // Chunks of 300 and 1 000 are larger than the dense window (72 positions), so a trusting
    // load takes only sparse checkpoints in most of them.
    for trusting in [false, true] {
        for chunk in [1, 7, 64, 300, 1000, usize::MAX] {
            let loaded = load(&bytes, chunk, trusting);
            let at = format!("chunk {chunk}, trusting {trusting}");
            assert_eq!(loaded.export(), one_by_one.export(), "{at}");
            assert_eq!(loaded.state(), one_by_one.state(), "{at}");
            assert_eq!(loaded.heads(), one_by_one.heads(), "{at}");
            // The checkpoints left at the end answer for any cut as the other log's do.
            for cut in cuts(&one_by_one) {
                assert_eq!(loaded.state_at(&cut), one_by_one.state_at(&cut), "{at}");
            }
        }
    }
    // Shuffled (parents after children at times) and with one corrupt op: the same log,
    // less the corrupt op's descendants, as a sequential load gives.
    let mut y: u64 = 5;
    for i in (1..bytes.len()).rev() {
        y ^= y << 13;
        y ^= y >> 7;
        y ^= y << 17;
        bytes.swap(i, (y % (i as u64 + 1)) as usize);
    }
    let corrupt = bytes.len() / 2;
    bytes[corrupt].truncate(10);
    let sequential = load(&bytes, usize::MAX, false);
    for trusting in [false, true] {
        for chunk in [3, 50] {
            let loaded = load(&bytes, chunk, trusting);
            let at = format!("chunk {chunk}, trusting {trusting}");
            assert_eq!(loaded.export(), sequential.export(), "{at}");
            assert_eq!(loaded.state(), sequential.state(), "{at}");
            assert_eq!(loaded.heads(), sequential.heads(), "{at}");
        }
    }
}

/// A store in memory that pages as a node's store does, with a count that may be wrong and a
/// page that may fail.
struct PagedStore {
    ops: Vec<Vec<u8>>,
    count: usize,
    fail_from: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
#[error("page {0} failed")]
struct PageFailed(usize);

impl crate::OpStore for PagedStore {
    type Error = PageFailed;

    fn append_ops(&self, _: &Cid, _: &[(Cid, &[u8])]) -> Result<(), PageFailed> {
        Err(PageFailed(0))
    }

    fn stored_ops(&self, _: &Cid) -> Result<Vec<Vec<u8>>, PageFailed> {
        Ok(self.ops.clone())
    }

    fn collectives(&self) -> Result<Vec<Cid>, PageFailed> {
        Ok(Vec::new())
    }

    fn stored_op_count(&self, _: &Cid) -> Result<usize, PageFailed> {
        Ok(self.count)
    }

    fn stored_ops_page(
        &self,
        _: &Cid,
        from: usize,
        max: usize,
    ) -> Result<Vec<Vec<u8>>, PageFailed> {
        if self.fail_from.is_some_and(|f| from >= f) {
            return Err(PageFailed(from));
        }
        Ok(self.ops.iter().skip(from).take(max).cloned().collect())
    }
}

/// `Log::open` reading its store a page at a time while it loads gives the log that was
/// saved, in the order the node accepted its ops, whatever the page size and even when the
/// store's count is wrong; a page that fails fails the open.
#[test]
fn a_paged_open_is_the_saved_log_and_a_failed_page_fails_it() {
    let (id, log) = random_log(29, 1500);
    let ops: Vec<Vec<u8>> = log
        .unsaved()
        .iter()
        .filter_map(|id| log.get(id))
        .map(|op| op.bytes().to_vec())
        .collect();
    let n = ops.len();
    let mut store = PagedStore {
        ops,
        count: n,
        fail_from: None,
    };
    for (count, chunk) in [(n, 64), (n, 500), (n, n), (10, 64), (n * 10, 300)] {
        store.count = count;
        let opened =
            Log::open_with(id, &store, &SignedOp::decode_trusted, chunk).expect("no page fails");
        let at = format!("count {count}, chunk {chunk}");
        assert_eq!(opened.export(), log.export(), "{at}");
        assert_eq!(opened.state(), log.state(), "{at}");
        assert_eq!(opened.heads(), log.heads(), "{at}");
        assert!(opened.unsaved().is_empty(), "{at}");
    }
    store.count = n;
    let failing = n / 2 / 64 * 64;
    assert!(failing > 64, "{n} ops");
    store.fail_from = Some(failing);
    match Log::open_with(id, &store, &SignedOp::decode_trusted, 64) {
        Err(PageFailed(at)) => assert_eq!(at, failing),
        Ok(opened) => panic!("opened {} of {n} ops", opened.len()),
    }
}

/// A store in memory that keeps what is appended, and whose reads by id can be made to fail.
#[derive(Default)]
struct KeptStore {
    ops: std::sync::Mutex<Vec<Vec<u8>>>,
    fail_reads: std::sync::atomic::AtomicBool,
}

impl crate::OpStore for KeptStore {
    type Error = PageFailed;

    fn append_ops(&self, _: &Cid, ops: &[(Cid, &[u8])]) -> Result<(), PageFailed> {
        let mut kept = self.ops.lock().map_err(|_| PageFailed(0))?;
        kept.extend(ops.iter().map(|(_, b)| b.to_vec()));
        Ok(())
    }

    fn stored_ops(&self, _: &Cid) -> Result<Vec<Vec<u8>>, PageFailed> {
        Ok(self.ops.lock().map_err(|_| PageFailed(0))?.clone())
    }

    fn collectives(&self) -> Result<Vec<Cid>, PageFailed> {
        Ok(Vec::new())
    }

    fn stored_op(&self, _: &Cid, id: &Cid) -> Result<Option<Vec<u8>>, PageFailed> {
        if self.fail_reads.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(PageFailed(1));
        }
        let kept = self.ops.lock().map_err(|_| PageFailed(0))?;
        Ok(kept.iter().find(|b| cids::cid_for_cbor(b) == *id).cloned())
    }
}

/// A log with the node's store keeps in memory only its recent ops and those not yet saved;
/// it reads the others back, and answers as a log that keeps every op decoded does, built
/// op by op or opened from the store. A read that fails is counted.
#[test]
fn stored_ops_are_read_back_from_the_store() {
    use crate::store::{Reader, StoreReader};
    let (id, full) = random_log(43, 900);
    let accepted: Vec<SignedOp> = full.unsaved().iter().filter_map(|i| full.get(i)).collect();
    let n = accepted.len();
    assert!(n > 200, "{n} ops");
    let store = std::sync::Arc::new(KeptStore::default());
    let reader: std::sync::Arc<dyn crate::OpReader> =
        std::sync::Arc::new(StoreReader(std::sync::Arc::clone(&store)));
    let mut lean = Log::new(id)
        .with_decoded_kept(8)
        .with_reader(std::sync::Arc::clone(&reader));
    for (i, op) in accepted.iter().enumerate() {
        assert_eq!(lean.insert(op.clone(), 0), Inserted::Applied);
        if i % 10 == 9 && i + 20 < n {
            lean.save(&*store).expect("the store keeps ops");
        }
    }
    // The ops entered since the last save stay in memory until it.
    let unsaved = lean.unsaved().len();
    assert!(unsaved >= 20, "{unsaved} unsaved");
    assert_eq!(lean.stored_len(), n - unsaved);
    lean.save(&*store).expect("the store keeps ops");
    assert_eq!((lean.decoded_len(), lean.stored_len()), (8, n - 8));
    assert_answers_as(&lean, &full);
    assert_eq!(lean.read_failures(), 0);

    for chunk in [64, n] {
        let opened = Log::open_reading(
            id,
            &*store,
            &SignedOp::decode_trusted,
            chunk,
            Some(Reader(std::sync::Arc::clone(&reader))),
            8,
        )
        .expect("the store reads");
        assert_eq!((opened.decoded_len(), opened.stored_len()), (8, n - 8));
        assert_eq!(opened.state_ref(), full.state_ref());
        assert_eq!(opened.export(), full.export());
        assert_eq!(opened.read_failures(), 0);
    }

    store
        .fail_reads
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let first = full.ops_in_order()[0].clone();
    assert!(lean.contains(first.id()));
    assert_eq!(lean.get(first.id()), None);
    assert_eq!(lean.read_failures(), 1);
}

/// A collective with one invite, made once for the byte-level property tests.
fn fixed() -> &'static (Log, SignedOp) {
    static FIXED: std::sync::OnceLock<(Log, SignedOp)> = std::sync::OnceLock::new();
    FIXED.get_or_init(|| {
        let fx = Fx::new();
        let inv = fx.op(OpKind::Invite, invite_fields(1), &fx.founder, &[fx.id()], 1);
        (fx.log, inv)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut log = fixed().0.clone();
        let r = log.insert_bytes(&bytes, 0);
        prop_assert!(matches!(r, Inserted::Rejected(_)));
    }

    #[test]
    fn corrupted_ops_never_panic(pos in any::<usize>(), bit in 0u8..8) {
        let (log, inv) = fixed();
        let mut bytes = inv.bytes().to_vec();
        let i = pos % bytes.len();
        bytes[i] ^= 1 << bit;
        let mut log = log.clone();
        let r = log.insert_bytes(&bytes, 0);
        prop_assert!(matches!(r, Inserted::Rejected(_) | Inserted::Pending { .. }), "{:?}", r);
    }
}

#[test]
fn other_rejections() {
    let mut fx = Fx::new();
    let m = key(2);
    let join = fx.invite_and_join(&m, &[fx.id()], 1);
    let founder = fx.founder.clone();
    // Removing someone who is not a member.
    let remove = fx.op(
        OpKind::Remove,
        member_fields(&key(5)),
        &founder,
        &[*join.id()],
        3,
    );
    assert_eq!(
        fx.insert(&remove),
        Inserted::Rejected(Reason::NotMember(key(5).did()))
    );
    // A member cannot remove.
    let by_member = fx.op(
        OpKind::Remove,
        member_fields(&founder),
        &m,
        &[*join.id()],
        3,
    );
    assert_eq!(
        fx.insert(&by_member),
        Inserted::Rejected(Reason::NotSteward(m.did()))
    );
    // A member joining again.
    let inv = fx.op(OpKind::Invite, invite_fields(9), &founder, &[*join.id()], 3);
    fx.apply(&inv);
    let again = fx.op(OpKind::Join, join_fields(inv.id(), 9), &m, &[*inv.id()], 4);
    assert_eq!(
        fx.insert(&again),
        Inserted::Rejected(Reason::AlreadyMember(m.did()))
    );
    // An invite that is not in the join's past.
    let unknown = fx.op(
        OpKind::Join,
        join_fields(join.id(), 9),
        &key(6),
        &[*inv.id()],
        4,
    );
    assert_eq!(
        fx.insert(&unknown),
        Inserted::Rejected(Reason::UnknownInvite)
    );
    // An invite for someone else.
    let mut f = invite_fields(8);
    f.insert("invitee".into(), s(&key(7).did()));
    let named = fx.op(OpKind::Invite, f, &founder, &[*inv.id()], 4);
    fx.apply(&named);
    let wrong = fx.op(
        OpKind::Join,
        join_fields(named.id(), 8),
        &key(6),
        &[*named.id()],
        5,
    );
    assert_eq!(fx.insert(&wrong), Inserted::Rejected(Reason::NotInvitee));
    let right = fx.op(
        OpKind::Join,
        join_fields(named.id(), 8),
        &key(7),
        &[*named.id()],
        5,
    );
    fx.apply(&right);
    // Admitting without a pending request.
    let mut f = member_fields(&key(6));
    f.insert("join".into(), s(&right.id().to_string()));
    let admit = fx.op(OpKind::Admit, f, &founder, &[*right.id()], 6);
    assert_eq!(fx.insert(&admit), Inserted::Rejected(Reason::NoSuchRequest));
    // A member leaves; then they are no longer an author.
    let leave = fx.op(OpKind::Leave, BTreeMap::new(), &m, &[*right.id()], 6);
    fx.apply(&leave);
    let grant = fx.op(OpKind::ConsentGrant, grant_fields(1), &m, &[*leave.id()], 7);
    assert_eq!(
        fx.insert(&grant),
        Inserted::Rejected(Reason::UnknownAuthor(m.did()))
    );
    let st = fx.log.state();
    assert_eq!(
        st.departed.get(m.did().as_str()),
        Some(&crate::Departure::Left(*leave.id()))
    );
    assert_eq!(st.stewards().collect::<Vec<_>>(), vec![founder.did()]);
}

#[test]
fn rejections_are_remembered() {
    let mut fx = Fx::new();
    let inv = fx.op(OpKind::Invite, invite_fields(1), &key(7), &[fx.id()], 1);
    let reason = Reason::UnknownAuthor(key(7).did());
    assert_eq!(fx.insert(&inv), Inserted::Rejected(reason.clone()));
    assert_eq!(fx.insert(&inv), Inserted::Rejected(reason));
    assert_eq!(fx.log.len(), 1);
}

/// The random histories of `replicas_converge` reach the rules they are meant to test.
#[test]
fn history_generator_covers_the_rules() {
    let mut counts = BTreeMap::new();
    let mut x: u64 = 7;
    for _ in 0..20 {
        let actions = random_actions(&mut x, 200);
        let (_, ops, _) = history(&actions);
        let mut log = Log::new(*ops[0].id());
        for op in &ops {
            log.insert(op.clone(), 0);
        }
        let st = log.state();
        let mut add = |k: &str, n: usize| *counts.entry(k.to_owned()).or_insert(0) += n;
        add(
            "certified",
            st.elections
                .values()
                .filter(|e| e.certified.is_some())
                .count(),
        );
        add(
            "sealed bundle",
            st.bundles.values().filter(|b| b.sealed.is_some()).count(),
        );
        add(
            "void bundle",
            st.bundles.values().filter(|b| b.voided.is_some()).count(),
        );
        add(
            "suppressed",
            ops.iter().filter(|o| log.is_suppressed(o.id())).count(),
        );
        add(
            "concurrent",
            ops.iter().filter(|o| o.prev().len() > 1).count(),
        );
        for op in &ops {
            add(op.kind().nsid(), 1);
        }
    }
    for k in OpKind::ALL {
        if !matches!(k, OpKind::Amendment | OpKind::PayoutStatement) {
            assert!(
                counts.get(k.nsid()).copied().unwrap_or(0) > 0,
                "{k:?}: {counts:?}"
            );
        }
    }
    for k in [
        "certified",
        "sealed bundle",
        "void bundle",
        "suppressed",
        "concurrent",
    ] {
        assert!(counts.get(k).copied().unwrap_or(0) > 0, "{k}: {counts:?}");
    }
}

#[test]
fn invited_collective_builds_a_valid_log() {
    let keys: Vec<Keypair> = (1..=5).map(key).collect();
    let (id, ops) = crate::make::invited_collective("Five", &keys, 1_800_000_000_000_000).unwrap();
    assert_eq!(
        ops.len(),
        9,
        "a charter, then an invite and a join per member"
    );
    // Every op verifies from the bytes, and the log folds to five members.
    let log = Log::load(id, ops.iter().map(Vec::as_slice));
    assert_eq!(log.len(), 9);
    let st = log.state();
    assert_eq!(st.members.len(), 5);
    for k in &keys {
        assert!(st.members.contains_key(k.did().as_str()));
    }
    assert!(crate::make::invited_collective("None", &[], 0).is_err());
}

/// `Election::tally` walks the voters once (O(n log n)); it must count exactly what the
/// earlier search of every voter for each counted ballot counted: each ballot of the set
/// once, with its approvals, voided or not, and nothing outside the set.
#[test]
fn tally_counts_each_ballot_of_the_set_once() {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use guild_core::syntax::Did;

    use crate::body::Choice;
    use crate::{Election, ElectionKind, VoterBallots};

    let fx = Fx::new();
    let charter = fx.log.state_ref().charter.clone().expect("a charter");
    let voters: Vec<Did> = (0..60)
        .map(|i| Did::parse(&format!("did:plc:voter{i:03}")).expect("did"))
        .collect();
    let candidates: Vec<Did> = voters.iter().take(5).cloned().collect();
    let mut all: Vec<(Cid, Vec<Choice>)> = Vec::new();
    let mut ballots = imbl::OrdMap::new();
    for (i, voter) in voters.iter().enumerate() {
        // Every seventh voter cast two ballots at one revision (they void each other).
        let mut mine = BTreeMap::new();
        for j in 0..(if i % 7 == 0 { 2 } else { 1 }) {
            let cid = cids::cid_for_cbor(format!("ballot {i} {j}").as_bytes());
            let approvals: Vec<Choice> = candidates
                .iter()
                .skip((i + j) % 5)
                .take(1 + i % 3)
                .cloned()
                .map(Choice::Candidate)
                .collect();
            mine.insert(cid, approvals.clone());
            all.push((cid, approvals));
        }
        ballots.insert(
            voter.clone(),
            Arc::new(VoterBallots {
                rev: 1,
                ballots: mine
                    .into_iter()
                    .map(|(c, a)| (crate::reconcile::digest_of(&c), a.into_boxed_slice()))
                    .collect(),
            }),
        );
    }
    let e = Election {
        kind: ElectionKind::Stewards,
        seats: 2,
        candidates: Arc::new(candidates.iter().cloned().collect()),
        proposal: None,
        electorate: Arc::new(voters.iter().cloned().collect()),
        tellers: Arc::new(BTreeSet::new()),
        closes_after: t(0),
        ballots,
        seals: imbl::OrdMap::new(),
        equivocating_tellers: imbl::OrdSet::new(),
        certified: None,
    };
    let outsider = cids::cid_for_cbor(b"not a ballot");
    let every_third: crate::BallotSet = all.iter().step_by(3).map(|(c, _)| *c).collect();
    let with_outsider: crate::BallotSet = e.counted().ids().chain([outsider]).collect();
    assert_eq!(with_outsider.len(), e.counted().len() + 1);
    assert!(with_outsider.contains(&outsider) && !e.counted().contains(&outsider));
    for counted in [e.counted(), every_third, with_outsider] {
        let mut want: BTreeMap<String, u64> =
            candidates.iter().map(|d| (d.to_string(), 0)).collect();
        for c in counted.ids() {
            for choice in all
                .iter()
                .find(|(x, _)| *x == c)
                .map_or(&[][..], |(_, a)| a)
            {
                if let Some(n) = want.get_mut(choice.as_str()) {
                    *n += 1;
                }
            }
        }
        let got: BTreeMap<String, u64> = e
            .tally(&fx.id(), &counted, &charter)
            .counts
            .into_iter()
            .map(|(c, n)| (c.as_str().to_owned(), n))
            .collect();
        assert_eq!(got, want);
    }
}

/// A seal's ballot set CID is the DAG-CBOR list of the links in byte order, as the codec
/// writes it (the hand-written encoding has no error path; it must still be the codec's).
#[test]
fn ballot_set_cid_is_the_codecs_list_of_links() {
    let mut ballots: Vec<Cid> = (0..50u32)
        .map(|i| cids::cid_for_cbor(format!("ballot {i}").as_bytes()))
        .collect();
    let mut sorted = ballots.clone();
    sorted.sort_by_key(Cid::to_bytes);
    let list = Ipld::List(sorted.iter().copied().map(Ipld::Link).collect());
    let want = cids::cid_for_cbor(&data::encode(&list).unwrap());
    ballots.reverse();
    ballots.push(ballots[0]);
    assert_eq!(crate::ballot_set_cid(&ballots), want);
    // A `BallotSet` writes its digests in their order: the same CID.
    let set: crate::BallotSet = ballots.iter().copied().collect();
    assert_eq!(set.len(), 50);
    assert_eq!(set.cid(), want);
    assert_eq!(
        crate::BallotSet::default().cid(),
        crate::ballot_set_cid(&[])
    );
    assert_eq!(
        crate::ballot_set_cid(&[]),
        cids::cid_for_cbor(&data::encode(&Ipld::List(vec![])).unwrap())
    );
}

/// A seal names its ballots by the CID of their set: an election of 50 000 voters seals
/// with an op of the same small size as one of three (a seal that listed them inline could
/// name at most ~1 060 within `MAX_OP_BYTES`).
#[test]
fn a_seal_of_fifty_thousand_ballots_is_a_small_op() {
    use std::sync::Arc;

    use guild_core::syntax::Did;

    use crate::body::Choice;
    use crate::{ElectionKind, VoterBallots};

    let fx = Fx::new();
    let mut state = fx.log.state_ref().clone();
    let id = cids::cid_for_cbor(b"an election");
    let voters: Vec<Did> = (0..50_000)
        .map(|i| Did::parse(&format!("did:plc:voter{i:06}")).unwrap())
        .collect();
    let mut ballots = imbl::OrdMap::new();
    for (i, v) in voters.iter().enumerate() {
        let cid = cids::cid_for_cbor(format!("ballot {i}").as_bytes());
        let choice = if i % 3 == 0 { Choice::No } else { Choice::Yes };
        ballots.insert(
            v.clone(),
            Arc::new(VoterBallots {
                rev: 0,
                ballots: std::iter::once((
                    crate::reconcile::digest_of(&cid),
                    vec![choice].into_boxed_slice(),
                ))
                .collect(),
            }),
        );
    }
    state.elections.insert(
        id,
        crate::Election {
            kind: ElectionKind::Amendment,
            seats: 0,
            candidates: Arc::default(),
            proposal: None,
            electorate: Arc::new(voters.iter().cloned().collect()),
            tellers: Arc::default(),
            closes_after: t(0),
            ballots,
            seals: imbl::OrdMap::new(),
            equivocating_tellers: imbl::OrdSet::new(),
            certified: None,
        },
    );
    let body = crate::make::seal(&state, &id).unwrap();
    let crate::body::OpBody::Seal(seal) = &body else {
        panic!("not a seal: {body:?}");
    };
    assert_eq!(seal.ballot_count, 50_000);
    let op = Op::write(&body, Some(&fx.id()), &fx.founder, &fx.log.heads(), &t(1)).unwrap();
    assert!(op.bytes().len() < 1024, "{} bytes", op.bytes().len());
}
