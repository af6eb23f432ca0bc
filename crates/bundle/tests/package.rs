//! Packaging a sealed bundle as one CAR and verifying it offline: determinism, a round trip,
//! and one test per kind of tampering, each refused with its own error.
#![allow(clippy::needless_range_loop)]

mod common;

use std::io::Cursor;
use std::sync::OnceLock;

use common::{START, TEXT, TRAIN, at, did, key};
use guild_bundle::canary::licensee_canaries;
use guild_bundle::{
    CutState, EvaluationLedger, Manifest, ManifestParams, Replica, VerifyError, select,
    verify_bundle, write_bundle,
};
use guild_core::syntax::{Did, Nsid, RecordKey, Tid};
use guild_core::{Cid, Ipld, Keypair, cids};
use guild_gov::body::{
    AcceptBody, ApprovalBody, BundleKind, Choice, CidRef, CountersignBody, Cut, OfferBody, OpBody,
    ProposalBody,
};
use guild_gov::make::{self, CharterParams};
use guild_gov::{ElectionKind, Inserted, Log, Op, SignedOp};
use guild_repo::{MemoryBlockStore, Repo, prepare_record};
use proptest::prelude::*;

/// Three elected stewards (keys 0, 1, 2; two countersignatures), members 3, 4, 5 with
/// repos; the builder is key 20.
struct World {
    log: Log,
    id: Cid,
    keys: Vec<Keypair>,
    builder: Keypair,
    clock: i64,
    store: MemoryBlockStore,
    replicas: Vec<Replica>,
    /// The seal op of the steward election.
    seal: SignedOp,
    /// Grants by member (index 3, 4, 5).
    grants: Vec<SignedOp>,
}

impl World {
    fn write_by(&mut self, body: OpBody, k: &Keypair, prev: &[Cid]) -> SignedOp {
        self.clock += 1;
        let op = Op::write(&body, Some(&self.id), k, prev, &at(self.clock)).unwrap();
        assert_eq!(
            self.log.insert(op.clone(), 0),
            Inserted::Applied,
            "{:?}",
            op.kind()
        );
        op
    }

    fn write(&mut self, body: OpBody, by: usize) -> SignedOp {
        let k = self.keys[by].clone();
        let prev = self.log.heads();
        self.write_by(body, &k, &prev)
    }

    fn new(records_per_member: usize) -> World {
        World::with_canaries(records_per_member, 0)
    }

    /// [`World::new`], with a charter that asks for `canaries` per-licensee canaries.
    fn with_canaries(records_per_member: usize, canaries: u32) -> World {
        let keys: Vec<Keypair> = (1..=6).map(key).collect();
        let mut params = CharterParams::new("Poets");
        params.countersignatures = 2;
        params.canaries_per_bundle = canaries;
        let charter = Op::write(&params.body(), None, &keys[0], &[], &at(0)).unwrap();
        let id = *charter.id();
        let mut log = Log::new(id);
        assert_eq!(log.insert(charter, 0), Inserted::Applied);
        let mut w = World {
            log,
            id,
            keys: keys.clone(),
            builder: key(20),
            clock: 1,
            store: MemoryBlockStore::new(),
            replicas: Vec::new(),
            seal: Op::write(&params.body(), None, &keys[0], &[], &at(0)).unwrap(),
            grants: Vec::new(),
        };
        for (i, k) in keys.iter().enumerate().skip(1) {
            let secret = vec![i as u8; 32];
            let invite = w.write(make::invite(&secret, None, None), 0);
            let prev = w.log.heads();
            w.write_by(make::join(Some((invite.id(), &secret))), k, &prev);
        }
        // The steward election: candidates 0, 1, 2, everyone approves them.
        let candidates: Vec<Did> = (0..3).map(|i| did(&keys[i])).collect();
        let closes = at(w.clock + 20);
        let open = make::election_open(
            w.log.state_ref(),
            ElectionKind::Stewards,
            Some(3),
            &candidates,
            None,
            &closes,
        )
        .unwrap();
        let election = *w.write(open, 0).id();
        let choices: Vec<Choice> = candidates
            .iter()
            .map(|d| Choice::Candidate(d.clone()))
            .collect();
        for v in 0..6 {
            let b = make::ballot(w.log.state_ref(), &election, &keys[v].did(), &choices);
            w.write(b, v);
        }
        w.clock += 30;
        let seal = make::seal(w.log.state_ref(), &election).unwrap();
        w.seal = w.write(seal, 0);
        assert_eq!(w.log.state_ref().stewards().count(), 3);
        // Members 3, 4, 5 consent to the training template and have repos.
        for i in 3..6 {
            let b = make::consent(
                w.log.state_ref(),
                &did(&keys[i]),
                &[TRAIN.to_owned()],
                &[],
                &at(0),
            );
            let g = w.write(OpBody::ConsentGrant(Box::new(b)), i);
            w.grants.push(g);
        }
        for i in 3..6 {
            let k = &keys[i];
            let d = did(k);
            let records = (0..records_per_member)
                .map(|n| {
                    let rec = Ipld::Map(
                        [
                            ("$type".to_owned(), Ipld::String(TEXT.to_owned())),
                            ("text".to_owned(), Ipld::String(format!("poem {n} by {d}"))),
                            (
                                "createdAt".to_owned(),
                                Ipld::String(at(n as i64).to_string()),
                            ),
                        ]
                        .into_iter()
                        .collect(),
                    );
                    prepare_record(
                        &Nsid::parse(TEXT).unwrap(),
                        &RecordKey::parse(&format!("3k{n:011}")).unwrap(),
                        &rec,
                    )
                    .unwrap()
                })
                .collect();
            let rev = Tid::from_parts(START as u64 + i as u64, 0);
            let (repo, done) =
                Repo::import(MemoryBlockStore::new(), k, rev.clone(), records).unwrap();
            for (c, b) in repo.store().iter() {
                w.store.insert(*c, b.to_vec());
            }
            let listing = repo
                .records()
                .unwrap()
                .into_iter()
                .map(|(path, cid)| {
                    let (c, r) = guild_repo::parse_path(&path).unwrap();
                    guild_bundle::RecordListing {
                        collection: c,
                        rkey: r,
                        cid,
                    }
                })
                .collect();
            w.replicas.push(Replica {
                did: d,
                rev,
                commit: done.head.commit,
                name: Some(format!("Poet {i}")),
                records: listing,
            });
        }
        w
    }

    /// An agreement in force (offered, accepted, countersigned by stewards 0 and 1).
    fn agreement(&mut self) -> Cid {
        let terms = make::standard_templates()
            .into_iter()
            .find(|t| t.id == TRAIN)
            .unwrap();
        let offer = *self
            .write(
                OpBody::AgreementOffer(Box::new(OfferBody {
                    builder: did(&self.builder),
                    template: TRAIN.to_owned(),
                    terms,
                    expires_at: None,
                    note: None,
                })),
                0,
            )
            .id();
        let b = self.builder.clone();
        let prev = self.log.heads();
        let accept = *self
            .write_by(
                OpBody::AgreementAccept(Box::new(AcceptBody {
                    offer: CidRef(offer),
                    contact: None,
                    evaluation: None,
                })),
                &b,
                &prev,
            )
            .id();
        for s in 0..2 {
            self.write(
                OpBody::AgreementCountersign(Box::new(CountersignBody {
                    offer: CidRef(offer),
                    accept: CidRef(accept),
                })),
                s,
            );
        }
        offer
    }

    /// Proposes a bundle, builds its manifest (then `tamper` changes it), and has stewards
    /// 0 and 1 approve it. Returns the manifest and the approval ops.
    fn sealed(&mut self, tamper: impl FnOnce(&mut Manifest)) -> (Manifest, Vec<SignedOp>) {
        let agreement = self.agreement();
        let heads = self.log.heads();
        let consenting = self.log.state_ref().consenting(TRAIN);
        let replicas: Vec<_> = self
            .replicas
            .iter()
            .filter(|r| consenting.contains_key(&r.did))
            .map(|r| guild_gov::body::ReplicaHead {
                did: r.did.clone(),
                rev: r.rev.clone(),
                commit: CidRef(r.commit),
            })
            .collect();
        let proposal = self.write(
            OpBody::BundleProposal(Box::new(ProposalBody {
                agreement: CidRef(agreement),
                cut: Cut {
                    heads: heads.iter().copied().map(CidRef).collect(),
                    replicas,
                },
                kind: BundleKind::Training.into(),
                note: None,
            })),
            0,
        );
        let (req, heads, params) = ManifestParams::from_proposal(&proposal).unwrap();
        let cut = CutState::at(&self.log, &heads).unwrap();
        let sel = select(
            &self.log,
            &cut,
            &req,
            &self.replicas,
            &EvaluationLedger::empty(),
        )
        .unwrap();
        let mut manifest = Manifest::build(&sel, &params).unwrap();
        tamper(&mut manifest);
        let (cid, _) = manifest.encode().unwrap();
        let mut approvals = Vec::new();
        for s in 0..2 {
            approvals.push(self.write(
                OpBody::BundleApproval(Box::new(ApprovalBody {
                    proposal: CidRef(*proposal.id()),
                    manifest: CidRef(cid),
                })),
                s,
            ));
        }
        (manifest, approvals)
    }

    fn car(&self, manifest: &Manifest) -> Vec<u8> {
        let mut out = Vec::new();
        write_bundle(manifest, &self.log, &self.store, &mut out).unwrap();
        out
    }
}

/// A sealed bundle of 3 members × 5 records, built once.
fn fixture() -> &'static (World, Manifest, Vec<SignedOp>, Vec<u8>) {
    static F: OnceLock<(World, Manifest, Vec<SignedOp>, Vec<u8>)> = OnceLock::new();
    F.get_or_init(|| {
        let mut w = World::new(5);
        let (m, approvals) = w.sealed(|_| {});
        let car = w.car(&m);
        (w, m, approvals, car)
    })
}

fn verify(bytes: &[u8]) -> Result<guild_bundle::Report, VerifyError> {
    verify_bundle(Cursor::new(bytes))
}

/// The CAR's root and blocks, in file order.
fn blocks(car: &[u8]) -> (Cid, Vec<(Cid, Vec<u8>)>) {
    fn varint(b: &[u8], p: &mut usize) -> usize {
        let mut v = 0usize;
        let mut s = 0;
        loop {
            let x = b[*p];
            *p += 1;
            v |= ((x & 0x7f) as usize) << s;
            s += 7;
            if x & 0x80 == 0 {
                return v;
            }
        }
    }
    let root = guild_repo::read_car(car).unwrap().roots[0];
    let mut p = 0;
    let h = varint(car, &mut p);
    p += h;
    let mut out = Vec::new();
    while p < car.len() {
        let len = varint(car, &mut p);
        let section = &car[p..p + len];
        let mut c = Cursor::new(section);
        let cid = Cid::read_bytes(&mut c).unwrap();
        out.push((cid, section[c.position() as usize..].to_vec()));
        p += len;
    }
    (root, out)
}

fn rebuild(root: Cid, blocks: &[(Cid, Vec<u8>)]) -> Vec<u8> {
    guild_repo::car::car_bytes(&[root], blocks.iter().map(|(c, b)| (c, b.as_slice())))
}

/// Replaces block `old` by `bytes` under their own CID, in place.
fn replace(car: &[u8], old: &Cid, bytes: Vec<u8>) -> Vec<u8> {
    let (root, mut bs) = blocks(car);
    let i = bs.iter().position(|(c, _)| c == old).unwrap();
    bs[i] = (cids::cid_for_cbor(&bytes), bytes);
    rebuild(root, &bs)
}

/// `body` signed by `k` in the place of `like` (same parents and time).
fn forge(w: &World, body: &OpBody, k: &Keypair, like: &SignedOp) -> SignedOp {
    Op::write(body, Some(&w.id), k, like.prev(), like.created_at()).unwrap()
}

#[test]
fn a_bundle_round_trips_through_verify() {
    let (w, m, approvals, car) = fixture();
    let report = verify(car).unwrap();
    let (cid, _) = m.encode().unwrap();
    assert_eq!(report.manifest, cid);
    assert_eq!(report.records, 15);
    assert_eq!(report.credits.len(), 3);
    assert!(report.credits.iter().all(|c| c.records == Some(5)));
    assert_eq!(report.template, TRAIN);
    assert_eq!(report.builder, did(&w.builder));
    let mut stewards = vec![did(&w.keys[0]), did(&w.keys[1])];
    stewards.sort();
    assert_eq!(report.stewards, stewards);
    let mut ids: Vec<Cid> = approvals.iter().map(|a| *a.id()).collect();
    ids.sort();
    let mut got = report.approvals.clone();
    got.sort();
    assert_eq!(got, ids);
    assert_eq!(report.bytes, car.len() as u64);
    assert_eq!(report.sha256, Some(cids::sha256(car)));
    // Every licence form is there, with the deterministic publication's IRIs.
    let licence = m.licence.as_ref().unwrap();
    let odrl = licence.odrl.as_ref().unwrap();
    assert!(odrl.contains(&format!("urn:guild:agreement:{}", m.agreement.0)));
    assert!(licence.rsl.is_some() && licence.tdmrep.is_some());
}

#[test]
fn packaging_is_deterministic() {
    let (w, m, _, car) = fixture();
    let mut again = Vec::new();
    let summary = write_bundle(m, &w.log, &w.store, &mut again).unwrap();
    assert_eq!(&again, car);
    assert_eq!(summary.sha256, cids::sha256(car));
    assert_eq!(summary.bytes, car.len() as u64);
    assert_eq!(summary.records, 15);
    // Another node's log, loaded from the ops in reverse order, writes the same bytes.
    let exported = w.log.export();
    let mut ops: Vec<&[u8]> = exported.iter().map(|b| &**b).collect();
    ops.reverse();
    let other = Log::load(w.id, ops);
    let mut third = Vec::new();
    write_bundle(m, &other, &w.store, &mut third).unwrap();
    assert_eq!(&third, car);
    // A whole second world built the same way gives the same file.
    let mut w2 = World::new(5);
    let (m2, _) = w2.sealed(|_| {});
    assert_eq!(&w2.car(&m2), car);
}

#[test]
fn an_unsealed_manifest_is_not_packaged() {
    let (w, m, _, _) = fixture();
    let mut other = m.clone();
    other.credits[0].name = "Someone else".into();
    let err = write_bundle(&other, &w.log, &w.store, Vec::new()).unwrap_err();
    assert!(
        matches!(err, guild_bundle::BundleError::NotSealed { .. }),
        "{err}"
    );
}

#[test]
fn changed_record_bytes_are_refused() {
    let (_, m, _, car) = fixture();
    let (root, mut bs) = blocks(car);
    let rec = m.records[4].cid.0;
    let i = bs.iter().position(|(c, _)| *c == rec).unwrap();
    // The same CID, other bytes.
    let n = bs[i].1.len();
    bs[i].1[n - 3] ^= 1;
    let err = verify(&rebuild(root, &bs)).unwrap_err();
    assert!(matches!(err, VerifyError::BlockHash { .. }), "{err}");
    // Other bytes under their own CID: the tree does not lead to them.
    let bytes = bs[i].1.clone();
    let err = verify(&replace(car, &rec, bytes)).unwrap_err();
    assert!(
        matches!(err, VerifyError::MissingBlock { what: "record", .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&m.records[4].path), "{err}");
}

#[test]
fn a_changed_proof_node_is_refused() {
    let (w, m, _, car) = fixture();
    // The MST root of the first author's commit.
    let commit = m.records[0].commit.0;
    let bytes = w.store.get(&commit).unwrap();
    let c = guild_repo::verify_commit(&commit, bytes).unwrap();
    let node = w.store.get(&c.data).unwrap().to_vec();
    let mut changed = node.clone();
    let n = changed.len();
    changed[n - 2] ^= 1;
    let (root, mut bs) = blocks(car);
    let i = bs.iter().position(|(cid, _)| *cid == c.data).unwrap();
    bs[i].1 = changed.clone();
    let err = verify(&rebuild(root, &bs)).unwrap_err();
    assert!(matches!(err, VerifyError::BlockHash { .. }), "{err}");
    let err = verify(&replace(car, &c.data, changed)).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::MissingBlock {
                what: "MST node",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_changed_manifest_field_is_not_sealed() {
    let (_, m, _, car) = fixture();
    let mut other = m.clone();
    other.credits[1].name = "A forger".into();
    let (cid, bytes) = other.encode().unwrap();
    let (_, mut bs) = blocks(car);
    bs[0] = (cid, bytes);
    let err = verify(&rebuild(cid, &bs)).unwrap_err();
    assert!(matches!(err, VerifyError::NotSealed { .. }), "{err}");
}

#[test]
fn a_missing_approval_leaves_it_unsealed() {
    let (_, _, approvals, car) = fixture();
    let (root, mut bs) = blocks(car);
    let last = approvals.last().unwrap().id();
    bs.retain(|(c, _)| c != last);
    let err = verify(&rebuild(root, &bs)).unwrap_err();
    match &err {
        VerifyError::NotSealed { reason, .. } => assert!(reason.contains("2 needed"), "{err}"),
        _ => panic!("{err}"),
    }
}

#[test]
fn an_approval_by_a_non_steward_does_not_count() {
    let (w, _, approvals, car) = fixture();
    let second = approvals.last().unwrap();
    // Member 3 signs the same approval on the same parents.
    let forged = forge(w, second.body(), &w.keys[3], second);
    let err = verify(&replace(car, second.id(), forged.bytes().to_vec())).unwrap_err();
    match &err {
        VerifyError::OpRefused { op, kind, .. } => {
            assert_eq!(op, forged.id());
            assert_eq!(kind, "coop.guild.bundle.approval");
        }
        _ => panic!("{err}"),
    }
}

#[test]
fn a_forged_election_result_is_refused() {
    let (w, _, _, car) = fixture();
    // The seal re-signed by a member who is not a teller.
    let forged = forge(w, w.seal.body(), &w.keys[4], &w.seal);
    let err = verify(&replace(car, w.seal.id(), forged.bytes().to_vec())).unwrap_err();
    assert!(
        matches!(&err, VerifyError::OpRefused { op, .. } if op == forged.id()),
        "{err}"
    );
    // The teller's own seal with the elected list altered.
    let OpBody::Seal(mut body) = w.seal.body().clone() else {
        panic!()
    };
    let json = serde_json::to_string(&body.result).unwrap();
    let altered = json.replace(&w.keys[2].did(), &w.keys[5].did());
    assert_ne!(json, altered);
    body.result = serde_json::from_str(&altered).unwrap();
    let forged = forge(w, &OpBody::Seal(body), &w.keys[0], &w.seal);
    let err = verify(&replace(car, w.seal.id(), forged.bytes().to_vec())).unwrap_err();
    assert!(
        matches!(&err, VerifyError::OpRefused { op, .. } if op == forged.id()),
        "{err}"
    );
}

#[test]
fn a_swapped_consent_op_is_refused() {
    let (w, m, _, car) = fixture();
    // The first author's grant replaced by a revoke of the same member on the same parents.
    let grant = w
        .grants
        .iter()
        .find(|g| g.id() == &m.records[0].consent.0)
        .unwrap();
    let OpBody::ConsentGrant(mut b) = grant.body().clone() else {
        panic!()
    };
    b.scope = None;
    let k = w.keys.iter().find(|k| k.did() == grant.author()).unwrap();
    let revoke = forge(w, &OpBody::ConsentRevoke(b), k, grant);
    let err = verify(&replace(car, grant.id(), revoke.bytes().to_vec())).unwrap_err();
    // The ops written after the grant name it as a parent: the fold cannot place them.
    assert!(matches!(err, VerifyError::OpRefused { .. }), "{err}");
    assert!(err.to_string().contains(&grant.id().to_string()), "{err}");
}

#[test]
fn stewards_cannot_seal_a_record_without_consent_or_with_another_consent() {
    // A quorum of stewards approves a manifest naming another member's grant for a record.
    let mut w = World::new(2);
    let grants: Vec<(String, Cid)> = w
        .grants
        .iter()
        .map(|g| (g.author().to_owned(), *g.id()))
        .collect();
    let (m, _) = w.sealed(|m| {
        let first = m.records[0].author.to_string();
        let other = grants.iter().find(|(a, _)| *a != first).unwrap().1;
        m.records[0].consent = CidRef(other);
    });
    let err = verify(&w.car(&m)).unwrap_err();
    assert!(matches!(err, VerifyError::Consent { .. }), "{err}");

    // … or a record of a member who revoked before the cut.
    let mut w = World::new(2);
    let d = did(&w.keys[3]);
    let b = make::consent(w.log.state_ref(), &d, &[TRAIN.to_owned()], &[], &at(0));
    let prev = w.log.heads();
    let k = w.keys[3].clone();
    w.write_by(OpBody::ConsentRevoke(Box::new(b)), &k, &prev);
    let (_, records) = {
        let r = w.replicas.iter().find(|r| r.did == d).unwrap();
        (r.commit, r.records.clone())
    };
    let commit = w.replicas.iter().find(|r| r.did == d).unwrap().commit;
    let rev = w.replicas.iter().find(|r| r.did == d).unwrap().rev.clone();
    let grant = *w.grants[0].id();
    let (m, _) = w.sealed(|m| {
        m.cut.replicas.push(guild_gov::body::ReplicaHead {
            did: d.clone(),
            rev,
            commit: CidRef(commit),
        });
        m.cut.replicas.sort_by(|a, b| a.did.cmp(&b.did));
        for r in &records {
            m.records.push(guild_bundle::Entry {
                author: d.clone(),
                commit: CidRef(commit),
                path: r.path(),
                cid: CidRef(r.cid),
                consent: CidRef(grant),
            });
        }
        m.records
            .sort_by(|a, b| (&a.author, a.path.as_bytes()).cmp(&(&b.author, b.path.as_bytes())));
    });
    // The revoked member's repo is in the store, so the bundle packages; verify refuses it.
    let err = verify(&w.car(&m)).unwrap_err();
    assert!(matches!(err, VerifyError::Consent { .. }), "{err}");
    assert!(err.to_string().contains("not granted"), "{err}");
}

#[test]
fn a_licence_other_than_the_agreements_is_refused() {
    let mut w = World::new(2);
    let (m, _) = w.sealed(|m| {
        if let Some(l) = m.licence.as_mut() {
            l.content_usage = Some("train-ai=y".into());
        }
    });
    let err = verify(&w.car(&m)).unwrap_err();
    match &err {
        VerifyError::ManifestField { field } => assert_eq!(field, "licence.contentUsage"),
        _ => panic!("{err}"),
    }
}

#[test]
fn truncated_and_garbage_input_is_refused() {
    let (_, _, _, car) = fixture();
    for cut in [0, 1, 5, 40, car.len() / 2 + 1, car.len() - 1] {
        let err = verify(&car[..cut]).unwrap_err();
        assert!(matches!(err, VerifyError::Car { .. }), "cut {cut}: {err}");
    }
    for cut in 0..car.len() {
        assert!(verify(&car[..cut]).is_err(), "cut at {cut}");
    }
    let garbage: Vec<u8> = (0..4000u32).map(|i| (i * 7919 % 251) as u8).collect();
    assert!(matches!(verify(&garbage), Err(VerifyError::Car { .. })));
    assert!(verify(b"").is_err());
}

#[test]
fn the_record_pages_follow_the_manifest_and_are_checked() {
    let (_, m, _, car) = fixture();
    let (root, bs) = blocks(car);
    let mb = m.blocks().unwrap();
    assert_eq!(mb.len(), 2, "the root and one page of 15 records");
    assert_eq!(
        bs[..2],
        mb[..],
        "the manifest's blocks come first, in order"
    );
    // The page left out, or put after the governance ops.
    let mut without = bs.clone();
    let page = without.remove(1);
    assert!(matches!(
        verify(&rebuild(root, &without)),
        Err(VerifyError::Manifest { .. })
    ));
    let mut moved = without.clone();
    moved.insert(3, page);
    assert!(matches!(
        verify(&rebuild(root, &moved)),
        Err(VerifyError::Manifest { .. })
    ));
    // A page changed (a record dropped from it): its CID is no longer the one the root names.
    let mut short = m.clone();
    short.records.pop();
    let other = short.blocks().unwrap().remove(1);
    let mut swapped = bs.clone();
    swapped[1] = other;
    assert!(matches!(
        verify(&rebuild(root, &swapped)),
        Err(VerifyError::Manifest { .. })
    ));
}

#[test]
fn extra_blocks_are_refused() {
    let (_, _, _, car) = fixture();
    let (root, mut bs) = blocks(car);
    let extra = b"\xa1\x61a\x01".to_vec();
    bs.push((cids::cid_for_cbor(&extra), extra));
    let err = verify(&rebuild(root, &bs)).unwrap_err();
    assert!(matches!(err, VerifyError::UnusedBlock(_)), "{err}");
}

#[test]
fn blocks_out_of_their_canonical_place_are_refused() {
    let (_, m, _, car) = fixture();
    let (root, bs) = blocks(car);
    // Two record blocks swapped (the records come in CID-byte order).
    let n = bs.len();
    let mut swapped = bs.clone();
    swapped.swap(n - 1, n - 2);
    let err = verify(&rebuild(root, &swapped)).unwrap_err();
    assert!(matches!(err, VerifyError::Order { .. }), "{err}");
    // A record block moved before the proofs: the proof section ends early, and the
    // commit and MST nodes after it are out of place.
    let first_record = bs
        .iter()
        .position(|(c, _)| m.records.iter().any(|e| e.cid.0 == *c))
        .unwrap();
    let commit_at = bs
        .iter()
        .position(|(c, _)| *c == m.records[0].commit.0)
        .unwrap();
    assert!(commit_at < first_record);
    let mut moved = bs.clone();
    let rec = moved.remove(n - 1);
    moved.insert(commit_at + 1, rec);
    assert!(verify(&rebuild(root, &moved)).is_err());
    // Two proof blocks swapped: the writer's order is the pre-order of each tree.
    let mut proofs = bs.clone();
    proofs.swap(commit_at + 1, commit_at + 2);
    let err = verify(&rebuild(root, &proofs)).unwrap_err();
    assert!(matches!(err, VerifyError::Order { .. }), "{err}");
}

#[test]
fn per_licensee_canaries_travel_with_the_records() {
    let mut w = World::with_canaries(5, 3);
    let (m, _) = w.sealed(|_| {});
    let car = w.car(&m);
    let report = verify(&car).unwrap();
    // The members' records are what they were; the canaries come on top.
    assert_eq!(report.records, 15);
    assert_eq!(m.licensee_canaries.len(), 3);
    let builder = did(&w.builder);
    let made = licensee_canaries(&m.proposal.0, &builder, &m.created_at, 3).unwrap();
    let listed: Vec<Cid> = m.licensee_canaries.clone();
    assert_eq!(listed, made.iter().map(|c| c.cid).collect::<Vec<_>>());
    // Their blocks are among the record blocks, after every proof, as text records.
    let (_, bs) = blocks(&car);
    let first_record = bs
        .iter()
        .position(|(c, _)| m.records.iter().any(|e| e.cid.0 == *c) || listed.contains(c))
        .unwrap();
    for c in &made {
        let at = bs.iter().position(|(b, _)| *b == c.cid).unwrap();
        assert!(at >= first_record);
        assert_eq!(bs[at].1, c.bytes);
        let record = guild_core::data::to_json(&guild_core::data::decode(&c.bytes).unwrap());
        assert_eq!(record["$type"], "coop.guild.data.text");
        assert_eq!(record["body"], c.body.as_str());
        assert!(c.body.split(' ').count() >= 30, "{}", c.body);
    }
    // Unique to the builder and to the bundle: another builder, or another proposal, gets
    // other canaries; the same inputs the same ones.
    let other = licensee_canaries(&m.proposal.0, &did(&key(21)), &m.created_at, 3).unwrap();
    assert!(other.iter().all(|o| made.iter().all(|c| c.body != o.body)));
    let later = licensee_canaries(&m.agreement.0, &builder, &m.created_at, 3).unwrap();
    assert!(later.iter().all(|o| made.iter().all(|c| c.body != o.body)));
    assert_eq!(
        licensee_canaries(&m.proposal.0, &builder, &m.created_at, 3).unwrap(),
        made
    );
    // Named in the bundle's forms, which only the builder receives.
    let info = guild_bundle::CarInfo {
        sha256: cids::sha256(&car),
        bytes: car.len() as u64,
        file_name: "bundle.car".into(),
    };
    let croissant = guild_bundle::croissant::emit(&m, &info).unwrap();
    assert!(
        croissant.contains("3 canary records made for its licensee alone"),
        "{croissant}"
    );
}

#[test]
fn a_missing_or_unlisted_canary_is_refused() {
    let mut w = World::with_canaries(5, 2);
    let (m, _) = w.sealed(|_| {});
    let car = w.car(&m);
    let (root, bs) = blocks(&car);
    // A canary block dropped from the file.
    let gone = m.licensee_canaries[1];
    let without: Vec<_> = bs.iter().filter(|(c, _)| *c != gone).cloned().collect();
    let err = verify(&rebuild(root, &without)).unwrap_err();
    assert!(
        matches!(err, VerifyError::MissingCanary { index: 1, cid } if cid == gone),
        "{err}"
    );
    // Stewards who seal a manifest without the canaries the charter asks for seal a manifest
    // the cut does not give.
    let mut w = World::with_canaries(5, 2);
    let (m, _) = w.sealed(|m| m.licensee_canaries.clear());
    let err = verify(&w.car(&m)).unwrap_err();
    assert!(
        matches!(&err, VerifyError::ManifestField { field } if field.starts_with("licenseeCanaries")),
        "{err}"
    );
    // Or with canaries of their own choosing: the writer refuses to package them.
    let mut w = World::with_canaries(5, 2);
    let (m, _) = w.sealed(|m| m.licensee_canaries[0] = m.records[0].cid.0);
    let mut out = Vec::new();
    assert!(write_bundle(&m, &w.log, &w.store, &mut out).is_err());
}

#[test]
fn errors_are_one_line() {
    let (_, _, approvals, car) = fixture();
    let (root, mut bs) = blocks(car);
    let last = approvals.last().unwrap().id();
    bs.retain(|(c, _)| c != last);
    let err = verify(&rebuild(root, &bs)).unwrap_err().to_string();
    assert!(!err.contains('\n'));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn verify_never_panics_on_a_mutated_bundle(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let (_, _, _, car) = fixture();
        let mut bytes = car.clone();
        for (i, v) in edits {
            let i = i.index(bytes.len());
            bytes[i] ^= v.max(1);
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        prop_assert!(verify(&bytes).is_err());
    }
}

/// `fixtures/bundle/sealed.car` is this file's sealed bundle (3 members × 5 records), for
/// tests elsewhere that need a real bundle (the feed client's, in `node/tests/`). Packaging
/// is deterministic, so the file is checked here; `GUILD_BLESS=1` rewrites it.
#[test]
fn the_fixture_bundle_file_is_current() {
    let (_, _, _, car) = fixture();
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/bundle/sealed.car");
    if std::env::var_os("GUILD_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, car).unwrap();
    }
    let on_disk =
        std::fs::read(&path).expect("fixtures/bundle/sealed.car (GUILD_BLESS=1 writes it)");
    assert!(
        on_disk == *car,
        "fixtures/bundle/sealed.car is stale: rerun with GUILD_BLESS=1"
    );
}
