//! Repo replication between real nodes in one process (libp2p memory transport): each node has
//! its collectives engine and a real `RepoService` over its own `MemoryStore`, wired as the
//! daemon wires them (the service's commit hook announces, the engine pulls through the
//! service's `Repos`).
//!
//! It lives with the node, which wires guild-net's engine to guild-service's `RepoService`
//! (guild-api and guild-net do not depend on each other).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use guild_api::{ReplicaError, RepoService, WriteOp};
use guild_core::syntax::{Datetime, Did, Nsid, RecordKey, Tid};
use guild_core::{Cid, Ipld, Keypair, data};
use guild_gov::body::{Choice, OpBody, RemoveBody};
use guild_gov::make::{self, CharterParams};
use guild_gov::{DriverConfig, ElectionKind, OpKind, Reason};
use guild_lexicon::Registry;
use guild_net::collective::topic;
use guild_net::collective::wire::{Flag, Reply, Request};
use guild_net::{
    Engine, EngineConfig, EngineError, Multiaddr, Net, NetConfig, NetHandle, RepoHead, RepoKind,
    RepoSyncError, Repos,
};
use guild_repo::{MemoryBlockStore, Repo, Write};
use guild_store::{MemoryStore, RepoKey, RepoStore, Space};
use serde_json::json;

type Service = RepoService<MemoryStore>;

struct Node {
    key: Keypair,
    net: NetHandle,
    engine: Engine,
    service: Arc<Service>,
    store: Arc<MemoryStore>,
}

fn config() -> EngineConfig {
    EngineConfig {
        driver: DriverConfig {
            sync_interval_micros: 1_000_000,
            sync_jitter_micros: 500_000,
            request_timeout_micros: 1_000_000,
            ..DriverConfig::default()
        },
        tick: Duration::from_millis(50),
        join_timeout: Duration::from_secs(10),
        repo_sync_interval: Duration::from_millis(500),
        // Small pages, so that every pull of more than a record or two is paged.
        repo_page_bytes: 1500,
        ..EngineConfig::default()
    }
}

fn service(key: &Keypair, store: &Arc<MemoryStore>) -> Arc<Service> {
    Arc::new(RepoService::new(store.clone(), key.clone(), Arc::new(Registry::builtin())).unwrap())
}

/// A node whose engine replicates through `repos` (the service itself, or a wrapper).
async fn node_with(
    n: u8,
    store: Arc<MemoryStore>,
    repos: impl FnOnce(Arc<Service>) -> Arc<dyn Repos>,
) -> Node {
    let key = Keypair::from_secret_bytes(&[n; 32]);
    let (net, events) = Net::spawn(&key, NetConfig::memory()).unwrap();
    let service = service(&key, &store);
    let engine = Engine::spawn_with_repos(
        key.clone(),
        net.clone(),
        events,
        store.clone(),
        Some(repos(service.clone())),
        config(),
    )
    .await
    .unwrap();
    let announcer = engine.clone();
    service.on_commit(move |c, h| {
        announcer.announce_commit(c, h.rev.to_string(), h.commit);
    });
    service.check_memberships(Arc::new(engine.memberships()));
    Node {
        key,
        net,
        engine,
        service,
        store,
    }
}

async fn node(n: u8) -> Node {
    node_with(n, Arc::new(MemoryStore::new()), |s| s).await
}

/// Polls `check` every 50 ms for up to 20 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

async fn addr(n: &Node) -> Multiaddr {
    let a = n.net.listen_addrs().await.unwrap();
    a[0].clone()
        .with(guild_net::multiaddr::Protocol::P2p(n.net.peer_id()))
}

fn did(n: &Node) -> String {
    n.key.did()
}

fn space_key(did: &str, id: &Cid) -> RepoKey {
    RepoKey::collective(Did::parse(did).unwrap(), *id)
}

/// The head of `owner`'s repo in the collective as `at` holds it.
fn held(at: &Node, owner: &str, id: &Cid) -> Option<guild_store::RepoHead> {
    at.store.head(&space_key(owner, id)).unwrap()
}

/// Founds a collective at `a` and admits the others; each member's space is declared (as the
/// API's create and join do).
async fn collective(a: &Node, others: &[&Node]) -> Cid {
    let id = a
        .engine
        .create(CharterParams::new("Replicas"))
        .await
        .unwrap();
    a.service.declare_space(&id, Some("Replicas")).unwrap();
    for m in others {
        let code = a.engine.invite(id, None, None).await.unwrap();
        m.engine.join(code).await.unwrap();
        m.service.declare_space(&id, Some("Replicas")).unwrap();
    }
    let n = others.len() + 1;
    for m in std::iter::once(a).chain(others.iter().copied()) {
        eventually("every member everywhere", || async {
            m.engine
                .status(id)
                .await
                .is_ok_and(|s| s.state.members.len() == n)
        })
        .await;
    }
    id
}

/// Adds a text record to the member's repo in the collective's space (one commit).
fn add_text(n: &Node, id: &Cid, body: &str) -> (String, Cid) {
    let out = try_add_text(n, id, body).unwrap();
    let r = &out.results[0];
    let rkey = r.uri.rsplit('/').next().unwrap().to_string();
    (rkey, r.cid.unwrap())
}

/// Tries to add a text record to the member's repo in the collective's space.
fn try_add_text(
    n: &Node,
    id: &Cid,
    body: &str,
) -> Result<guild_api::WriteOutcome, guild_api::ServiceError> {
    try_add_text_in(n, &Space::Collective(*id), body)
}

/// Tries to add a text record to the member's repo in `space`.
fn try_add_text_in(
    n: &Node,
    space: &Space,
    body: &str,
) -> Result<guild_api::WriteOutcome, guild_api::ServiceError> {
    let key = n.service.repo_key(&did(n), space).unwrap();
    n.service.apply_writes(
        &key,
        vec![WriteOp::Create {
            collection: "coop.guild.data.text".into(),
            rkey: None,
            record: json!({
                "$type": "coop.guild.data.text",
                "body": body,
                "createdAt": "2026-01-01T00:00:00.000Z",
            }),
        }],
        None,
        None,
    )
}

/// Makes `c` a second steward: an election for two seats that everyone wins, closed by the
/// founder (the only teller).
async fn elect(a: &Node, everyone: &[&Node], c: &Node, id: Cid) {
    let candidates = [did(a), did(c)];
    let closes = Datetime::from_unix_micros(
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros(),
        )
        .unwrap()
            + 1_000_000,
    );
    let cands: Vec<Did> = candidates.iter().map(|d| Did::parse(d).unwrap()).collect();
    let election = a
        .engine
        .write(
            id,
            OpKind::ElectionOpen,
            Box::new(move |st, _| {
                Ok(
                    make::election_open(st, ElectionKind::Stewards, Some(2), &cands, None, &closes)
                        .unwrap(),
                )
            }),
        )
        .await
        .unwrap();
    for m in everyone {
        eventually("the election reaches everyone", || async {
            m.engine
                .status(id)
                .await
                .is_ok_and(|s| s.state.elections.contains_key(&election))
        })
        .await;
        let approvals: Vec<Choice> = candidates.iter().map(|d| Choice::parse(d)).collect();
        m.engine
            .write(
                id,
                OpKind::Ballot,
                Box::new(move |st, me| Ok(make::ballot(st, &election, me, &approvals))),
            )
            .await
            .unwrap();
    }
    eventually("every ballot reaches the teller", || async {
        a.engine
            .status(id)
            .await
            .is_ok_and(|s| s.state.elections[&election].ballots.len() == everyone.len())
    })
    .await;
    // The teller seals as soon as its node accepts the seal (refused as too early until its
    // clock passes the close time; any other refusal fails the test).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let seal = a
            .engine
            .write(
                id,
                OpKind::Seal,
                Box::new(move |st, _| Ok(make::seal(st, &election).unwrap())),
            )
            .await;
        match seal {
            Ok(_) => break,
            Err(EngineError::Refused(Reason::TooEarly)) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the seal is still too early after 20 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the teller's seal was refused: {e}"),
        }
    }
    for m in everyone {
        eventually("two stewards everywhere", || async {
            m.engine
                .status(id)
                .await
                .is_ok_and(|s| s.state.stewards().count() == 2)
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_replicate_to_every_steward_and_verify() {
    let a = node(31).await;
    let b = node(32).await;
    let c = node(33).await;
    let id = collective(&a, &[&b, &c]).await;
    elect(&a, &[&a, &b, &c], &c, id).await;

    // B adds records in three commits, the last one large enough to need several pages.
    let mut records = Vec::new();
    for i in 0..3 {
        let body = format!("poem {i} ").repeat(if i == 2 { 400 } else { 1 });
        records.push(add_text(&b, &id, &body));
    }
    let b_head = held(&b, &did(&b), &id).unwrap();
    for steward in [&a, &c] {
        eventually("B's head at each steward", || async {
            held(steward, &did(&b), &id).is_some_and(|h| h == b_head)
        })
        .await;
        // Every record is served from the replica, with a proof that verifies offline.
        let key = steward
            .service
            .read_key(&did(&b), &Space::Collective(id))
            .unwrap();
        for (rkey, cid) in &records {
            let (got, value) = steward
                .service
                .get_record(&key, "coop.guild.data.text", rkey, None)
                .unwrap();
            assert_eq!(got, *cid);
            assert!(matches!(value, Ipld::Map(_)));
            let proof = steward
                .service
                .record_proof(&key, "coop.guild.data.text", rkey)
                .unwrap();
            let car = guild_repo::read_car(&proof).unwrap();
            let proven =
                guild_repo::verify_proof(&car, &format!("coop.guild.data.text/{rkey}")).unwrap();
            assert_eq!((proven.did.as_str(), proven.cid), (did(&b).as_str(), *cid));
            assert_eq!(proven.commit, b_head.commit);
        }
        assert_eq!(steward.store.record_count(&key).unwrap(), 4);
        // The API refuses to write a replica: only B writes B's repo.
        let err = steward
            .service
            .apply_writes(
                &key,
                vec![WriteOp::Delete {
                    collection: "coop.guild.data.text".into(),
                    rkey: records[0].0.clone(),
                    swap_record: None,
                }],
                None,
                None,
            )
            .unwrap_err();
        assert!(err.to_string().contains("replica"), "{err}");
    }
    // The stewards replicate each other's repos too; B, a member only, keeps no replicas.
    eventually("the stewards hold each other's repos", || async {
        held(&a, &did(&c), &id).is_some() && held(&c, &did(&a), &id).is_some()
    })
    .await;
    assert!(held(&b, &did(&a), &id).is_none());
    assert!(held(&b, &did(&c), &id).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steward_that_was_offline_catches_up() {
    let a = node(41).await;
    let b = node(42).await;
    let id = collective(&a, &[&b]).await;
    add_text(&b, &id, "before");
    eventually("the first replica", || async {
        held(&a, &did(&b), &id) == held(&b, &did(&b), &id)
    })
    .await;

    // A goes away; B writes meanwhile (its announcements reach no steward).
    let a_store = a.store.clone();
    a.net.shutdown().await.unwrap();
    drop(a);
    for i in 0..5 {
        add_text(&b, &id, &format!("while A was away {i}"));
    }
    let b_head = held(&b, &did(&b), &id).unwrap();

    // A comes back with its store, dials B, and asks for heads on connect.
    let a = node_with(41, a_store, |s| s).await;
    assert_ne!(held(&a, &did(&b), &id), Some(b_head.clone()));
    a.net.dial(addr(&b).await).await.unwrap();
    eventually("A catches up with B's repo", || async {
        held(&a, &did(&b), &id) == Some(b_head.clone())
    })
    .await;
    let key = space_key(&did(&b), &id);
    assert_eq!(a.store.record_count(&key).unwrap(), 7);
}

/// Writes to the member's public repo (one commit): a work, its commons licence, and a
/// record of a type no Guild lexicon knows (kept unchecked, as AT public repos do).
fn publish(n: &Node, body: &str) -> (String, Cid) {
    let key = n.service.repo_key(&did(n), &Space::Public).unwrap();
    let out = try_add_text_in(n, &Space::Public, body).unwrap();
    let r = &out.results[0];
    let uri = r.uri.clone();
    n.service
        .apply_writes(
            &key,
            vec![
                WriteOp::Create {
                    collection: "coop.guild.commons.licence".into(),
                    rkey: None,
                    record: json!({
                        "$type": "coop.guild.commons.licence",
                        "subject": uri,
                        "template": "research-open",
                        "createdAt": "2026-01-01T00:00:00.000Z",
                    }),
                },
                WriteOp::Create {
                    collection: "com.example.unknown.note".into(),
                    rkey: None,
                    record: json!({"$type": "com.example.unknown.note", "n": 1}),
                },
            ],
            Some(false),
            None,
        )
        .unwrap();
    (
        r.uri.rsplit('/').next().unwrap().to_string(),
        r.cid.unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_public_repos_replicate_to_stewards_for_the_commons() {
    let a = node(71).await;
    let b = node(72).await;
    let stranger = node(73).await;
    let id = collective(&a, &[&b]).await;
    let (rkey, cid) = publish(&b, "a poem for the commons");
    let public_of = |owner: &str| RepoKey::public(Did::parse(owner).unwrap());
    let b_head = b.store.head(&public_of(&did(&b))).unwrap().unwrap();
    // The steward's node holds B's public repo, verified, and serves its records.
    eventually("B's public repo at the steward", || async {
        a.store.head(&public_of(&did(&b))).unwrap() == Some(b_head.clone())
    })
    .await;
    let key = a.service.read_key(&did(&b), &Space::Public).unwrap();
    let (got, _) = a
        .service
        .get_record(&key, "coop.guild.data.text", &rkey, None)
        .unwrap();
    assert_eq!(got, cid);
    assert_eq!(a.store.record_count(&key).unwrap(), 3);
    // B, a member only, keeps no replica of anyone's public repo; the steward's own public
    // repo (none yet) is not invented.
    assert!(b.store.head(&public_of(&did(&a))).unwrap().is_none());

    // A heads reply lists B's public repo, marked public, beside the space repos.
    let heads = b.engine.remote_heads(id, &did(&a)).await.unwrap();
    assert!(
        heads.iter().any(|h| h.kind == RepoKind::Public
            && h.did.as_str() == did(&b)
            && h.commit == b_head.commit),
        "{heads:?}"
    );

    // The stranger publishes too: a member asking for the stranger's public repo gets
    // not-found, and the stranger asking for B's gets not-a-member.
    publish(&stranger, "not in the collective");
    let ask = |owner: &str| Request::Repo {
        did: guild_core::syntax::Did::parse(owner).unwrap(),
        public: true,
        since: None,
        offset: 0,
    };
    let answer = b
        .net
        .request(
            a.net.peer_id(),
            &topic(&id),
            ask(&did(&stranger)).encode().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(Reply::decode(&answer), Ok(Reply::refused("not-found")));
    stranger.net.dial(addr(&a).await).await.unwrap();
    let answer = stranger
        .net
        .request(
            a.net.peer_id(),
            &topic(&id),
            ask(&did(&b)).encode().unwrap(),
        )
        .await
        .unwrap();
    refused_as_non_member(&answer);
    // The witness that the stranger's repo never came: B's next public commit arrives at
    // the steward, the stranger's repo is still absent there.
    publish(&b, "a second poem");
    let b_head = b.store.head(&public_of(&did(&b))).unwrap().unwrap();
    eventually("B's second public commit at the steward", || async {
        a.store.head(&public_of(&did(&b))).unwrap() == Some(b_head.clone())
    })
    .await;
    assert!(a.store.head(&public_of(&did(&stranger))).unwrap().is_none());
}

fn refused_as_non_member(bytes: &[u8]) {
    assert_eq!(
        Reply::decode(bytes),
        Ok(Reply::refused("not-a-member")),
        "a typed refusal and nothing else"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_members_and_removed_members_are_refused() {
    let a = node(51).await;
    let b = node(52).await;
    let stranger = node(53).await;
    let id = collective(&a, &[&b]).await;
    add_text(&a, &id, "the founder's record");
    let a_did = did(&a);

    // A member may ask for A's repo.
    let whole = Request::Repo {
        did: guild_core::syntax::Did::parse(&a_did).unwrap(),
        public: false,
        since: None,
        offset: 0,
    };
    let answer = b
        .net
        .request(a.net.peer_id(), &topic(&id), whole.encode().unwrap())
        .await
        .unwrap();
    assert!(
        matches!(Reply::decode(&answer), Ok(Reply::Page(_))),
        "a member is served"
    );

    // A stranger gets a typed refusal and no bytes, for repos and heads alike.
    stranger.net.dial(addr(&a).await).await.unwrap();
    for req in [whole.clone(), Request::RepoHeads(Flag)] {
        let answer = stranger
            .net
            .request(a.net.peer_id(), &topic(&id), req.encode().unwrap())
            .await
            .unwrap();
        refused_as_non_member(&answer);
    }

    // A removes B: from that op on, B is refused too.
    let b_did = did(&b);
    a.engine
        .write(
            id,
            OpKind::Remove,
            Box::new(move |_, _| {
                Ok(OpBody::Remove(Box::new(RemoveBody {
                    member: Did::parse(&b_did).unwrap(),
                    reason: None,
                    election: None,
                })))
            }),
        )
        .await
        .unwrap();
    let answer = b
        .net
        .request(a.net.peer_id(), &topic(&id), whole.encode().unwrap())
        .await
        .unwrap();
    refused_as_non_member(&answer);

    // Regression (issue 13, finding 5): once B's node has the removal, B's own writes to the
    // collective's space are refused (they would reach no steward), and change nothing.
    eventually("B's node learns it was removed", || async {
        b.engine
            .status(id)
            .await
            .is_ok_and(|s| !s.state.members.contains_key(did(&b).as_str()))
    })
    .await;
    let key = b
        .service
        .repo_key(&did(&b), &Space::Collective(id))
        .unwrap();
    let before = b.store.head(&key).unwrap();
    let refused = try_add_text(&b, &id, "after the removal");
    match refused {
        Err(guild_api::ServiceError::InvalidRequest(m)) => {
            assert!(m.contains("you were removed from collective"), "{m}");
            assert!(m.contains("no longer accepted"), "{m}");
        }
        other => panic!("a removed member's write answered {other:?}"),
    }
    assert_eq!(b.store.head(&key).unwrap(), before);
    // A's own writes still land.
    add_text(&a, &id, "after B's removal");
}

/// A node whose exports can be garbled on demand: a member's node that lies.
struct Tamper {
    inner: Arc<Service>,
    garble: AtomicBool,
    garbled: AtomicUsize,
}

impl Repos for Tamper {
    fn heads(&self, collective: &Cid) -> Result<Vec<RepoHead>, RepoSyncError> {
        Repos::heads(&*self.inner, collective)
    }
    fn public_heads(&self) -> Result<Vec<RepoHead>, RepoSyncError> {
        Repos::public_heads(&*self.inner)
    }
    fn head(
        &self,
        did: &Did,
        collective: &Cid,
        kind: RepoKind,
    ) -> Result<Option<RepoHead>, RepoSyncError> {
        Repos::head(&*self.inner, did, collective, kind)
    }
    fn export_since(
        &self,
        did: &Did,
        collective: &Cid,
        kind: RepoKind,
        since: Option<&str>,
    ) -> Result<(RepoHead, Vec<u8>), RepoSyncError> {
        let (head, mut car) = Repos::export_since(&*self.inner, did, collective, kind, since)?;
        if self.garble.load(Ordering::SeqCst) {
            self.garbled.fetch_add(1, Ordering::SeqCst);
            let n = car.len();
            car[n - 1] ^= 0x01;
        }
        Ok((head, car))
    }
    fn import_replica(
        &self,
        did: &Did,
        collective: &Cid,
        kind: RepoKind,
        car: &[u8],
    ) -> Result<RepoHead, RepoSyncError> {
        Repos::import_replica(&*self.inner, did, collective, kind, car)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbled_car_from_a_peer_is_refused_and_changes_nothing() {
    let a = node(61).await;
    let tamper = Arc::new(std::sync::OnceLock::<Arc<Tamper>>::new());
    let t = tamper.clone();
    let m = node_with(62, Arc::new(MemoryStore::new()), move |s| {
        let w = Arc::new(Tamper {
            inner: s,
            garble: AtomicBool::new(true),
            garbled: AtomicUsize::new(0),
        });
        let _ = t.set(w.clone());
        w as Arc<dyn Repos>
    })
    .await;
    let id = collective(&a, &[&m]).await;
    add_text(&m, &id, "a record");
    // A pulls on the announcement and on every heads sync, and refuses each garbled CAR.
    eventually("A pulls garbled CARs more than once", || async {
        tamper.get().unwrap().garbled.load(Ordering::SeqCst) >= 2
    })
    .await;
    assert_eq!(held(&a, &did(&m), &id), None, "nothing stored");
    assert_eq!(a.store.record_count(&space_key(&did(&m), &id)).unwrap(), 0);
    // Regression (issue 13, finding 1): the refusal shows in the status on both sides, the
    // steward's (refusing M's repo) and the member's (told by the steward's node).
    let refusal_of = |n: &Node| {
        let n_engine = n.engine.clone();
        async move {
            n_engine
                .status(id)
                .await
                .unwrap()
                .replica_refusals
                .into_iter()
                .next()
        }
    };
    let (a_did, m_did) = (did(&a), did(&m));
    for (who, n) in [("the steward", &a), ("the member", &m)] {
        eventually(&format!("{who}'s status shows the refusal"), || async {
            refusal_of(n).await.is_some_and(|r| {
                r.member.as_str() == m_did && r.steward.as_str() == a_did && !r.reason.is_empty()
            })
        })
        .await;
    }
    // Once the peer stops lying, the same pull succeeds, and both statuses clear.
    tamper.get().unwrap().garble.store(false, Ordering::SeqCst);
    eventually("the honest CAR is taken", || async {
        held(&a, &did(&m), &id) == held(&m, &did(&m), &id)
    })
    .await;
    for (who, n) in [("the steward", &a), ("the member", &m)] {
        eventually(&format!("{who}'s status clears"), || async {
            refusal_of(n).await.is_none()
        })
        .await;
    }
}

/// A repo signed by `key` with `records`, as one whole CAR.
fn forged_car(key: &Keypair, records: Vec<(&str, Ipld)>) -> Vec<u8> {
    let mut repo = Repo::empty(MemoryBlockStore::new(), key.did());
    let writes = records
        .into_iter()
        .map(|(path, record)| {
            let (c, k) = path.split_once('/').unwrap();
            Write::Create {
                collection: Nsid::parse(c).unwrap(),
                rkey: RecordKey::parse(k).unwrap(),
                record,
            }
        })
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let result = repo.apply(key, Tid::from_parts(now, 1), writes).unwrap();
    let blocks: Vec<(Cid, Vec<u8>)> = result
        .blocks
        .iter()
        .map(|(c, b)| (*c, b.to_vec()))
        .collect();
    guild_repo::car::car_bytes(
        &[result.head.commit],
        blocks.iter().map(|(c, b)| (c, b.as_slice())),
    )
}

fn declaration(collective: &str) -> Ipld {
    data::from_json(&json!({
        "$type": "coop.guild.space.declaration",
        "collective": collective,
        "createdAt": "2026-01-01T00:00:00.000Z",
    }))
    .unwrap()
}

fn text(body: &str) -> Ipld {
    data::from_json(&json!({
        "$type": "coop.guild.data.text",
        "body": body,
        "createdAt": "2026-01-01T00:00:00.000Z",
    }))
    .unwrap()
}

/// Forged, garbled, stale and unchained CARs given straight to a steward's import: each is
/// refused with its reason, and the replica stays as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_cars_are_refused_and_change_nothing() {
    let a = node(71).await;
    let b = node(72).await;
    let id = collective(&a, &[&b]).await;
    let space = id.to_string();
    let key = space_key(&did(&b), &id);
    add_text(&b, &id, "one");
    let r1 = held(&b, &did(&b), &id).unwrap();
    eventually("the replica at r1", || async {
        held(&a, &did(&b), &id) == Some(r1.clone())
    })
    .await;
    let old_whole = b.service.repo_car(&key, None).unwrap();
    // B moves on twice while A is cut off from it.
    b.net.shutdown().await.unwrap();
    add_text(&b, &id, "two");
    let r2 = held(&b, &did(&b), &id).unwrap();
    add_text(&b, &id, "three");
    let since_r2 = b.service.repo_car(&key, Some(r2.rev.as_str())).unwrap();
    let whole = b.service.repo_car(&key, None).unwrap();

    let before = (held(&a, &did(&b), &id), a.store.record_count(&key).unwrap());
    let unchanged = |what: &str| {
        assert_eq!(
            (held(&a, &did(&b), &id), a.store.record_count(&key).unwrap()),
            before,
            "{what} changed the replica"
        );
    };
    let import = |car: &[u8]| a.service.import_replica(&key, car);

    // Garbled: one bit flipped in a block.
    let mut bad = whole.clone();
    let n = bad.len();
    bad[n - 1] ^= 0x01;
    assert!(matches!(import(&bad), Err(ReplicaError::Car(_))), "garbled");
    unchanged("a garbled CAR");
    // Truncated.
    assert!(import(&whole[..whole.len() / 2]).is_err());
    unchanged("a truncated CAR");
    // A diff since r2 does not chain onto r1: blocks are missing.
    assert!(
        matches!(import(&since_r2), Err(ReplicaError::Verify(_))),
        "{:?}",
        import(&since_r2)
    );
    unchanged("an unchained diff");
    // Someone else's repo passed off as B's.
    let x = Keypair::from_secret_bytes(&[79; 32]);
    let forged = forged_car(
        &x,
        vec![("coop.guild.space.declaration/self", declaration(&space))],
    );
    assert!(
        matches!(import(&forged), Err(ReplicaError::WrongDid { .. })),
        "{:?}",
        import(&forged)
    );
    unchanged("another member's repo");
    // Signed by B, but a record of a type with no lexicon.
    let unknown = data::from_json(&json!({"$type": "com.example.thing", "x": 1})).unwrap();
    let car = forged_car(
        &b.key,
        vec![
            ("coop.guild.space.declaration/self", declaration(&space)),
            ("com.example.thing/3jzfcijpj2z2a", unknown),
        ],
    );
    assert!(
        matches!(import(&car), Err(ReplicaError::InvalidRecord { .. })),
        "{:?}",
        import(&car)
    );
    unchanged("a record without a lexicon");
    // Signed by B, but no declaration, or one naming another collective.
    let car = forged_car(
        &b.key,
        vec![("coop.guild.data.text/3jzfcijpj2z2a", text("x"))],
    );
    assert!(matches!(import(&car), Err(ReplicaError::Declaration(_))));
    let other = guild_core::cids::cid_for_cbor(b"\xa0").to_string();
    let car = forged_car(
        &b.key,
        vec![("coop.guild.space.declaration/self", declaration(&other))],
    );
    assert!(matches!(import(&car), Err(ReplicaError::Declaration(_))));
    unchanged("a repo of another collective");
    // The import of the real whole repo works, and then an older one is refused.
    let head = import(&whole).unwrap();
    assert_eq!(head.commit, held(&b, &did(&b), &id).unwrap().commit);
    assert!(matches!(
        import(&old_whole),
        Err(ReplicaError::NotNewer { .. })
    ));
    assert_eq!(a.store.record_count(&key).unwrap(), 4);
    // A's own repo is never imported over.
    let own = space_key(&did(&a), &id);
    assert!(matches!(
        a.service.import_replica(&own, &whole),
        Err(ReplicaError::Own)
    ));
}
