//! Bundles on a steward's node, in process (`guild_service::Stewardship` over a real engine
//! and repo service): a proposal is recomputed, approved, sealed and packaged into a file
//! that `verify_bundle` accepts; a proposal that leaves out a consenting member's replica
//! this node holds is refused, not signed; one that names a commit this node lacks waits; a
//! revocation after the seal becomes a notice listing the member's delivered records, and
//! the next bundle leaves them out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use guild_core::syntax::{Datetime, Did, Tid};
use guild_core::{Cid, Keypair};
use guild_gov::body::{
    AcceptBody, BundleKind, CidRef, CountersignBody, Cut, OfferBody, OpBody, Open, ProposalBody,
    ReplicaHead,
};
use guild_gov::make::{self, CharterParams};
use guild_gov::{DriverConfig, Op, OpKind};
use guild_lexicon::Registry;
use guild_net::{Engine, EngineConfig, Net, NetCollectives, NetConfig};
use guild_service::{BundleStatus, CollectiveEngine, RepoService, Stewardship, WriteOp};
use guild_store::{MemoryStore, RepoKey};
use serde_json::json;

const TEMPLATE: &str = "training-commercial-attribution";

fn now() -> Datetime {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros();
    Datetime::from_unix_micros(i64::try_from(micros).unwrap())
}

/// Polls `check` every 20 ms for up to 20 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct World {
    rt: tokio::runtime::Runtime,
    key: Keypair,
    service: Arc<RepoService<MemoryStore>>,
    engine: Engine,
    desk: Stewardship<MemoryStore>,
    id: Cid,
    offer: Cid,
    _dir: tempfile::TempDir,
}

impl World {
    fn write(&self, kind: OpKind, body: OpBody) -> Cid {
        self.rt
            .block_on(
                self.engine
                    .write(self.id, kind, Box::new(move |_, _| Ok(body))),
            )
            .unwrap()
    }

    fn bundles(&self) -> Vec<guild_service::BundleInfo> {
        self.rt.block_on(self.desk.list(self.id)).unwrap()
    }

    fn bundle(&self, proposal: &Cid) -> guild_service::BundleInfo {
        self.bundles()
            .into_iter()
            .find(|b| b.proposal == *proposal)
            .expect("the proposal is listed")
    }

    fn step(&self) {
        self.rt.block_on(self.desk.step());
    }

    fn repo(&self) -> RepoKey {
        RepoKey::collective(Did::parse(&self.key.did()).unwrap(), self.id)
    }
}

/// A founder (the only steward, quorum one) with five works in the collective's space, its
/// consent to the template, and an agreement in force with a builder who signed with its key
/// alone.
fn world() -> World {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let key = Keypair::from_secret_bytes(&[1; 32]);
    let store = Arc::new(MemoryStore::new());
    let service = Arc::new(
        RepoService::new(store.clone(), key.clone(), Arc::new(Registry::builtin())).unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let (engine, desk, id) = rt.block_on(async {
        let (net, events) = Net::spawn(&key, NetConfig::memory()).unwrap();
        let engine = Engine::spawn_with_repos(
            key.clone(),
            net.clone(),
            events,
            store.clone(),
            Some(service.clone() as Arc<dyn guild_net::Repos>),
            EngineConfig {
                driver: DriverConfig::default(),
                tick: Duration::from_millis(50),
                ..EngineConfig::default()
            },
        )
        .await
        .unwrap();
        let id = engine.create(CharterParams::new("Poets")).await.unwrap();
        let collectives: Arc<dyn CollectiveEngine> = Arc::new(NetCollectives {
            engine: engine.clone(),
            net,
        });
        let desk =
            Stewardship::new(service.clone(), collectives, dir.path().join("bundles")).unwrap();
        (engine, desk, id)
    });
    service.declare_space(&id, Some("Poets")).unwrap();
    let me = Did::parse(&key.did()).unwrap();
    let mut w = World {
        rt,
        key,
        service,
        engine,
        desk,
        id,
        offer: id,
        _dir: dir,
    };
    let writes = (0..5)
        .map(|i| WriteOp::Create {
            collection: "coop.guild.data.text".into(),
            rkey: None,
            record: json!({
                "$type": "coop.guild.data.text",
                "title": format!("Poem {i}"),
                "body": format!("Grey water, verse {i}."),
                "createdAt": "2026-12-01T10:00:00.000Z",
            }),
        })
        .collect();
    w.service
        .apply_writes(&w.repo(), writes, None, None)
        .unwrap();
    let at = now();
    let consent = {
        let st = w.rt.block_on(w.engine.status(id)).unwrap().state;
        OpBody::ConsentGrant(Box::new(make::consent(
            &st,
            &me,
            &[TEMPLATE.into()],
            &[],
            &at,
        )))
    };
    w.write(OpKind::ConsentGrant, consent);
    let builder = Keypair::from_secret_bytes(&[20; 32]);
    let terms = {
        let st = w.rt.block_on(w.engine.status(id)).unwrap().state;
        st.charter.as_ref().unwrap().templates[TEMPLATE].clone()
    };
    let offer = w.write(
        OpKind::AgreementOffer,
        OpBody::AgreementOffer(Box::new(OfferBody {
            builder: Did::parse(&builder.did()).unwrap(),
            template: TEMPLATE.into(),
            terms,
            expires_at: None,
            note: None,
        })),
    );
    let accept = Op::write(
        &OpBody::AgreementAccept(Box::new(AcceptBody {
            offer: CidRef(offer),
            contact: None,
            evaluation: None,
        })),
        Some(&id),
        &builder,
        &[offer],
        &now(),
    )
    .unwrap();
    let accept =
        w.rt.block_on(w.engine.submit(id, accept.bytes().to_vec()))
            .unwrap();
    w.write(
        OpKind::AgreementCountersign,
        OpBody::AgreementCountersign(Box::new(CountersignBody {
            offer: CidRef(offer),
            accept: CidRef(accept),
        })),
    );
    w.offer = offer;
    w
}

#[test]
fn a_proposal_is_recomputed_approved_sealed_packaged_and_verifies() {
    let w = world();
    let p =
        w.rt.block_on(w.desk.propose(w.id, w.offer, BundleKind::Training, None))
            .unwrap();
    eventually("sealed and packaged", || {
        w.step();
        let b = w.bundle(&p);
        b.status == BundleStatus::Sealed && b.car.is_some()
    });
    let b = w.bundle(&p);
    assert_eq!(
        b.computed, b.manifest,
        "the seal is this node's own manifest"
    );
    assert_eq!(b.records, Some((5, 1)), "five works, one author: {b:?}");
    let (path, bytes) = b.car.clone().unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let report = guild_bundle::verify_bundle(file).unwrap();
    assert_eq!(Some(report.manifest), b.manifest);
    assert_eq!(report.records, 5);
    assert_eq!(report.bytes, bytes);

    // Packaging again gives the same bytes: remove the file, the next pass rewrites it.
    let before = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    eventually("packaged again", || {
        w.step();
        path.exists()
    });
    assert_eq!(std::fs::read(&path).unwrap(), before);

    // A revocation after the seal: a notice lists the five delivered records, and the next
    // bundle has none of them (so none at all here).
    let me = Did::parse(&w.key.did()).unwrap();
    let revoke = {
        let st = w.rt.block_on(w.engine.status(w.id)).unwrap().state;
        OpBody::ConsentRevoke(Box::new(make::consent(
            &st,
            &me,
            &[TEMPLATE.into()],
            &[],
            &now(),
        )))
    };
    let r = w.write(OpKind::ConsentRevoke, revoke);
    let notices = w.rt.block_on(w.desk.revocation_notices(w.id)).unwrap();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(notices[0].revocation, r);
    assert_eq!(Some(notices[0].bundle), b.manifest);
    assert_eq!(notices[0].records.len(), 5);
    let p2 =
        w.rt.block_on(w.desk.propose(w.id, w.offer, BundleKind::Training, None))
            .unwrap();
    eventually("the second bundle sealed", || {
        w.step();
        w.bundle(&p2).status == BundleStatus::Sealed
    });
    assert_eq!(w.bundle(&p2).records, Some((0, 0)));
}

#[test]
fn a_proposal_leaving_out_a_held_replica_is_refused_and_a_missing_commit_waits() {
    let w = world();
    // A proposal (written by hand, as a faulty or dishonest steward's node could) naming no
    // replica although this node holds the consenting founder's.
    let empty = w.write(
        OpKind::BundleProposal,
        OpBody::BundleProposal(Box::new(ProposalBody {
            agreement: CidRef(w.offer),
            cut: Cut {
                heads: Vec::new(),
                replicas: Vec::new(),
            },
            kind: Open::Known(BundleKind::Training),
            note: None,
        })),
    );
    // One naming a commit of the founder's repo this node never had.
    let ghost = guild_core::cids::cid_for_cbor(b"\xa0");
    let waiting = w.write(
        OpKind::BundleProposal,
        OpBody::BundleProposal(Box::new(ProposalBody {
            agreement: CidRef(w.offer),
            cut: Cut {
                heads: Vec::new(),
                replicas: vec![ReplicaHead {
                    did: Did::parse(&w.key.did()).unwrap(),
                    rev: Tid::parse("3lzzzzzzzzzz2").unwrap(),
                    commit: CidRef(ghost),
                }],
            },
            kind: Open::Known(BundleKind::Training),
            note: None,
        })),
    );
    eventually("both held, with their reasons", || {
        w.step();
        w.bundle(&empty).note.is_some() && w.bundle(&waiting).note.is_some()
    });
    let refused = w.bundle(&empty);
    assert!(
        refused
            .note
            .as_deref()
            .is_some_and(|n| n.contains("not approved here") && n.contains("leaves out")),
        "{refused:?}"
    );
    let held = w.bundle(&waiting);
    assert!(
        held.note
            .as_deref()
            .is_some_and(|n| n.starts_with("waiting") && n.contains("has not reached")),
        "{held:?}"
    );
    // Witness that neither was signed: both still unapproved after further passes, while a
    // proper proposal written after them is approved and sealed.
    let good =
        w.rt.block_on(w.desk.propose(w.id, w.offer, BundleKind::Training, None))
            .unwrap();
    eventually("the proper proposal sealed", || {
        w.step();
        w.bundle(&good).status == BundleStatus::Sealed
    });
    for p in [empty, waiting] {
        let b = w.bundle(&p);
        assert!(b.approvals.is_empty(), "{b:?}");
        assert_eq!(b.status, BundleStatus::Proposed);
    }
}
