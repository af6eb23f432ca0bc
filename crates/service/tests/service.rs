//! `RepoService` in process, over both stores: `MemoryStore` and `SledStore` in a temporary
//! directory (each test is a generic function run by `both!` against each).
//!
//! Writes and reads (records, listing, CARs and proofs checked with guild-repo's verifiers),
//! the `validate` flag's semantics on the public repo and in collective spaces, a failed write
//! changing nothing, concurrent writers, and the TID clock resuming after a reopen.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Barrier};

use guild_core::Keypair;
use guild_core::syntax::{Datetime, Nsid, RecordKey, Tid};
use guild_lexicon::Registry;
use guild_repo::{Repo, Write, read_car, verify_car, verify_proof};
use guild_service::{
    Departed, Memberships, NodeStore, RepoService, ServiceError, WriteOp, WriteOutcome,
};
use guild_store::{IndexOp, MemoryStore, RepoHead, RepoKey, RepoStore, SledStore, Space, Staged};
use serde_json::{Value, json};

const TEXT: &str = "coop.guild.data.text";
const DECL: &str = "coop.guild.space.declaration";
const NOTE: &str = "com.example.test.note";
const SPACE: &str = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm";

fn space() -> Space {
    Space::parse(SPACE).unwrap()
}

/// How a test gets (and re-gets, after dropping every handle) its store.
trait Backend {
    type S: NodeStore + Sync + Send;
    /// Opens the store: the same data every time.
    fn open(&self) -> Arc<Self::S>;
}

/// The in-memory store: "reopening" hands out the same store.
struct Mem(Arc<MemoryStore>);

impl Backend for Mem {
    type S = MemoryStore;
    fn open(&self) -> Arc<MemoryStore> {
        self.0.clone()
    }
}

/// Sled in a temporary directory: reopening opens the database again (the previous handles
/// must be dropped first).
struct Sled(tempfile::TempDir);

impl Backend for Sled {
    type S = SledStore;
    fn open(&self) -> Arc<SledStore> {
        Arc::new(SledStore::open(&self.0.path().join("store")).expect("open sled"))
    }
}

/// Runs each named generic test against both backends.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[test]
            fn $name() {
                super::$name(&super::Mem(std::sync::Arc::new(guild_store::MemoryStore::new())));
            })*
        }
        mod sled {
            $(#[test]
            fn $name() {
                super::$name(&super::Sled(tempfile::tempdir().unwrap()));
            })*
        }
    };
}

both!(
    writes_and_reads,
    list_with_cursor_limit_and_reverse,
    repo_car_since_holds_the_new_blocks,
    validate_flag_on_the_public_repo,
    collective_spaces_always_validate,
    declaration_cannot_be_deleted_or_replaced,
    writes_refused_after_leaving_the_collective,
    file_mime_type_must_agree_with_its_blob,
    failed_write_changes_nothing,
    swaps_and_missing_records_change_nothing,
    concurrent_writes_all_land_with_distinct_revs,
    tid_clock_resumes_after_reopen,
    other_repos_and_bad_spaces,
);

fn service<S: NodeStore>(store: Arc<S>, key: &Keypair) -> RepoService<S> {
    RepoService::new(
        store,
        Keypair::from_secret_bytes(&key.secret_bytes()),
        Arc::new(Registry::builtin()),
    )
    .expect("service")
}

fn text(body: &str) -> Value {
    json!({"$type": TEXT, "body": body, "createdAt": "2024-05-01T12:00:00.000Z"})
}

fn note(s: &str) -> Value {
    json!({"$type": NOTE, "text": s})
}

fn no_body() -> Value {
    json!({"$type": TEXT, "createdAt": "2024-05-01T12:00:00.000Z"})
}

fn declaration(collective: &str) -> Value {
    json!({"$type": DECL, "collective": collective, "createdAt": "2024-05-01T12:00:00.000Z"})
}

/// The first commit of a collective repo: its declaration and one text.
fn declare_with_text<S: NodeStore>(
    svc: &RepoService<S>,
    space: &RepoKey,
    validate: Option<bool>,
) -> WriteOutcome {
    apply(
        svc,
        space,
        vec![
            create(DECL, Some("self"), declaration(SPACE)),
            create(TEXT, None, text("first")),
        ],
        validate,
    )
    .unwrap()
}

fn tid(n: u64) -> String {
    Tid::from_parts(1_700_000_000_000_000 + n, 9)
        .as_str()
        .to_string()
}

fn create(collection: &str, rkey: Option<&str>, record: Value) -> WriteOp {
    WriteOp::Create {
        collection: collection.to_string(),
        rkey: rkey.map(str::to_string),
        record,
    }
}

fn put(collection: &str, rkey: &str, record: Value) -> WriteOp {
    WriteOp::Put {
        collection: collection.to_string(),
        rkey: rkey.to_string(),
        record,
        swap_record: None,
    }
}

fn delete(collection: &str, rkey: &str) -> WriteOp {
    WriteOp::Delete {
        collection: collection.to_string(),
        rkey: rkey.to_string(),
        swap_record: None,
    }
}

fn rkey_of(uri: &str) -> String {
    uri.rsplit('/').next().unwrap().to_string()
}

/// Everything observable about a repo: head, every indexed record, record count, collections.
#[derive(Debug, PartialEq)]
struct Snapshot {
    head: Option<RepoHead>,
    index: BTreeMap<String, String>,
    count: u64,
    collections: Vec<String>,
}

fn snapshot<S: NodeStore>(svc: &RepoService<S>, repo: &RepoKey) -> Snapshot {
    let store = svc.store();
    let collections = store.collections(repo).unwrap();
    let mut index = BTreeMap::new();
    for c in &collections {
        for (k, cid) in store.index_list(repo, c, None, 1_000_000, false).unwrap() {
            index.insert(format!("{c}/{k}"), cid.to_string());
        }
    }
    Snapshot {
        head: store.head(repo).unwrap(),
        index,
        count: store.record_count(repo).unwrap(),
        collections,
    }
}

/// The repo's CAR verifies and holds exactly what the index lists.
fn assert_car_matches_index<S: NodeStore>(svc: &RepoService<S>, repo: &RepoKey) {
    let car = read_car(&svc.repo_car(repo, None).unwrap()).unwrap();
    let summary = verify_car(&car).expect("the repo CAR verifies");
    let mst: BTreeMap<String, String> = summary
        .records
        .iter()
        .map(|(p, c)| (p.clone(), c.to_string()))
        .collect();
    let snap = snapshot(svc, repo);
    assert_eq!(mst, snap.index, "MST and index agree");
    assert_eq!(snap.count, mst.len() as u64);
    let head = snap.head.unwrap();
    assert_eq!(summary.commit, head.commit);
    assert_eq!(summary.rev, head.rev);
    assert_eq!(summary.data, head.data);
    assert_eq!(summary.did, svc.did());
}

fn apply<S: NodeStore>(
    svc: &RepoService<S>,
    repo: &RepoKey,
    writes: Vec<WriteOp>,
    validate: Option<bool>,
) -> Result<WriteOutcome, ServiceError> {
    svc.apply_writes(repo, writes, validate, None)
}

// ---------------------------------------------------------------------------------------------

fn writes_and_reads<B: Backend>(b: &B) {
    let key = Keypair::generate().unwrap();
    let svc = service(b.open(), &key);
    let repo = svc.repo_key(svc.did(), &Space::Public).unwrap();
    assert!(matches!(
        svc.head(&repo),
        Err(ServiceError::RepoNotFound(_))
    ));

    let o1 = apply(&svc, &repo, vec![create(TEXT, None, text("one"))], None).unwrap();
    assert_eq!(o1.results.len(), 1);
    let r1 = &o1.results[0];
    assert!(r1.uri.starts_with(&format!("at://{}/{TEXT}/", svc.did())));
    let k1 = rkey_of(&r1.uri);
    Tid::parse(&k1).unwrap();
    assert_eq!(r1.validation_status, Some("valid"));
    let cid1 = r1.cid.unwrap();
    assert_eq!(svc.head(&repo).unwrap().commit, o1.commit);
    assert_eq!(svc.head(&repo).unwrap().rev, o1.rev);

    let (cid, value) = svc.get_record(&repo, TEXT, &k1, None).unwrap();
    assert_eq!(cid, cid1);
    assert_eq!(guild_core::data::to_json(&value), text("one"));
    assert_eq!(
        svc.get_record(&repo, TEXT, &k1, Some(&cid1)).unwrap().0,
        cid1
    );

    // One commit with a create, a put (new), a put (replace) and a delete.
    let k2 = tid(2);
    let o2 = apply(
        &svc,
        &repo,
        vec![
            create(TEXT, Some(&k2), text("two")),
            put(NOTE, "n1", note("a note")),
            put(TEXT, &k1, text("one, edited")),
        ],
        None,
    )
    .unwrap();
    assert!(o2.rev > o1.rev);
    assert_eq!(o2.results[1].validation_status, Some("unknown"));
    let (cid1b, v) = svc.get_record(&repo, TEXT, &k1, None).unwrap();
    assert_ne!(cid1b, cid1);
    assert_eq!(guild_core::data::to_json(&v), text("one, edited"));
    assert!(matches!(
        svc.get_record(&repo, TEXT, &k1, Some(&cid1)),
        Err(ServiceError::RecordNotFound(_))
    ));
    let o3 = apply(&svc, &repo, vec![delete(TEXT, &k2)], None).unwrap();
    assert_eq!(o3.results[0].cid, None);
    assert!(matches!(
        svc.get_record(&repo, TEXT, &k2, None),
        Err(ServiceError::RecordNotFound(_))
    ));
    assert_eq!(
        svc.collections(&repo).unwrap(),
        vec![NOTE.to_string(), TEXT.to_string()]
    );
    assert_eq!(svc.store().record_count(&repo).unwrap(), 2);
    assert_car_matches_index(&svc, &repo);

    // A proof of each record verifies against the head.
    for path in [format!("{TEXT}/{k1}"), format!("{NOTE}/n1")] {
        let (c, k) = path.split_once('/').unwrap();
        let car = read_car(&svc.record_proof(&repo, c, k).unwrap()).unwrap();
        let proven = verify_proof(&car, &path).expect("proof verifies");
        assert_eq!(proven.commit, o3.commit);
        assert_eq!(proven.cid, svc.get_record(&repo, c, k, None).unwrap().0);
    }
    assert!(matches!(
        svc.record_proof(&repo, TEXT, &k2),
        Err(ServiceError::RecordNotFound(_))
    ));
}

fn list_with_cursor_limit_and_reverse<B: Backend>(b: &B) {
    let key = Keypair::generate().unwrap();
    let svc = service(b.open(), &key);
    let repo = svc.repo_key(svc.did(), &Space::Public).unwrap();
    let writes = (0..23)
        .map(|i| create(TEXT, None, text(&format!("t{i}"))))
        .collect();
    let o = apply(&svc, &repo, writes, None).unwrap();
    apply(&svc, &repo, vec![create(NOTE, Some("x"), note("x"))], None).unwrap();
    let mut keys: Vec<String> = o.results.iter().map(|r| rkey_of(&r.uri)).collect();
    keys.sort();
    let collect = |limit: usize, reverse: bool| {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let (rows, next) = svc
                .list_records(&repo, TEXT, cursor.as_deref(), limit, reverse)
                .unwrap();
            assert!(rows.len() <= limit);
            let n = rows.len();
            out.extend(rows.into_iter().map(|(k, _, _)| k));
            match next {
                Some(c) if n > 0 => cursor = Some(c),
                _ => return out,
            }
        }
    };
    for limit in [1, 5, 23, 100] {
        assert_eq!(collect(limit, false), keys, "limit {limit}");
        let mut rev = keys.clone();
        rev.reverse();
        assert_eq!(collect(limit, true), rev, "limit {limit} reverse");
    }
    let (rows, next) = svc
        .list_records(&repo, TEXT, Some(&keys[4]), 3, false)
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        keys[5..8].to_vec()
    );
    assert_eq!(next.as_deref(), Some(keys[7].as_str()));
    let (rows, _) = svc
        .list_records(&repo, TEXT, Some(&keys[4]), 3, true)
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        vec![keys[3].clone(), keys[2].clone(), keys[1].clone()]
    );
    let (rows, next) = svc.list_records(&repo, TEXT, None, 50, false).unwrap();
    assert_eq!(rows.len(), 23);
    assert_eq!(next, None);
    let (_, cid, value) = &rows[0];
    let (c, v) = svc.get_record(&repo, TEXT, &keys[0], None).unwrap();
    assert_eq!((*cid, value), (c, &v));
}

fn repo_car_since_holds_the_new_blocks<B: Backend>(b: &B) {
    let key = Keypair::generate().unwrap();
    let svc = service(b.open(), &key);
    let repo = svc.repo_key(svc.did(), &Space::Public).unwrap();
    let old = apply(
        &svc,
        &repo,
        (0..20)
            .map(|i| create(TEXT, None, text(&format!("old {i}"))))
            .collect(),
        None,
    )
    .unwrap();
    let since = old.rev.as_str().to_string();
    let mut new_cids = Vec::new();
    let mut last = None;
    for j in 0..3 {
        let o = apply(
            &svc,
            &repo,
            vec![create(TEXT, None, text(&format!("new {j}")))],
            None,
        )
        .unwrap();
        new_cids.push(o.results[0].cid.unwrap());
        last = Some(o);
    }
    let last = last.unwrap();
    let car = read_car(&svc.repo_car(&repo, Some(&since)).unwrap()).unwrap();
    assert_eq!(car.roots, vec![last.commit]);
    assert!(car.blocks.get(&last.commit).is_some());
    for c in &new_cids {
        assert!(car.blocks.get(c).is_some(), "new record {c} in the diff");
    }
    for r in &old.results {
        let c = r.cid.unwrap();
        assert!(
            car.blocks.get(&c).is_none(),
            "unchanged record {c} not in the diff"
        );
    }
    assert!(matches!(
        svc.repo_car(&repo, Some(&tid(1))),
        Err(ServiceError::InvalidRequest(_))
    ));
    assert!(matches!(
        svc.repo_car(&repo, Some("not-a-tid")),
        Err(ServiceError::InvalidRequest(_))
    ));
}

/// AT's `validate`: `Some(true)` requires a lexicon, `Some(false)` skips it, `None` validates
/// the types it knows.
fn validate_flag_on_the_public_repo<B: Backend>(b: &B) {
    let key = Keypair::generate().unwrap();
    let svc = service(b.open(), &key);
    let repo = svc.repo_key(svc.did(), &Space::Public).unwrap();
    let status = |record: Value, collection: &str, validate: Option<bool>| {
        apply(
            &svc,
            &repo,
            vec![create(collection, None, record)],
            validate,
        )
        .map(|o| o.results[0].validation_status)
    };
    // Known type, valid.
    assert_eq!(status(text("ok"), TEXT, None).unwrap(), Some("valid"));
    assert_eq!(status(text("ok"), TEXT, Some(true)).unwrap(), Some("valid"));
    assert_eq!(
        status(text("ok"), TEXT, Some(false)).unwrap(),
        Some("unknown")
    );
    // Known type, invalid.
    for v in [None, Some(true)] {
        match status(no_body(), TEXT, v) {
            Err(ServiceError::InvalidRecord { path, message }) => {
                assert!(path.starts_with(TEXT), "{path}");
                assert!(message.contains("body"), "{message}");
            }
            other => panic!("validate {v:?}: {other:?}"),
        }
    }
    assert_eq!(
        status(no_body(), TEXT, Some(false)).unwrap(),
        Some("unknown")
    );
    // Unknown type.
    assert_eq!(status(note("n"), NOTE, None).unwrap(), Some("unknown"));
    assert_eq!(
        status(note("n"), NOTE, Some(false)).unwrap(),
        Some("unknown")
    );
    assert!(matches!(
        status(note("n"), NOTE, Some(true)),
        Err(ServiceError::InvalidRecord { .. })
    ));
    // Whatever the flag: the data model, the $type and the key syntax are checked.
    for v in [None, Some(false), Some(true)] {
        assert!(matches!(
            status(json!({"$type": NOTE, "f": 1.5}), NOTE, v),
            Err(ServiceError::InvalidRecord { .. })
        ));
        assert!(matches!(
            status(text("x"), NOTE, v),
            Err(ServiceError::InvalidRecord { .. })
        ));
        assert!(matches!(
            status(json!({"text": "untyped"}), NOTE, v),
            Err(ServiceError::InvalidRecord { .. })
        ));
        assert!(matches!(
            apply(&svc, &repo, vec![create(NOTE, Some("a/b"), note("x"))], v),
            Err(ServiceError::InvalidRequest(_))
        ));
        assert!(matches!(
            apply(&svc, &repo, vec![create("not an nsid", None, note("x"))], v),
            Err(ServiceError::InvalidRequest(_))
        ));
    }
    // The lexicon's key type is part of validation: skipped with validate false only.
    assert!(matches!(
        apply(
            &svc,
            &repo,
            vec![create(TEXT, Some("essay"), text("x"))],
            None
        ),
        Err(ServiceError::InvalidRecord { .. })
    ));
    apply(
        &svc,
        &repo,
        vec![create(TEXT, Some("essay"), text("x"))],
        Some(false),
    )
    .unwrap();
    assert_eq!(svc.store().record_count(&repo).unwrap(), 7);
    assert_car_matches_index(&svc, &repo);
}

/// Collective spaces always require a lexicon, and begin with the space declaration.
fn collective_spaces_always_validate<B: Backend>(b: &B) {
    let key = Keypair::generate().unwrap();
    let svc = service(b.open(), &key);
    let space = svc.repo_key(svc.did(), &space()).unwrap();
    // The first commit must declare the space, naming this collective.
    assert!(matches!(
        apply(&svc, &space, vec![create(TEXT, None, text("early"))], None),
        Err(ServiceError::InvalidRequest(_))
    ));
    let other = "bafyreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
    assert!(matches!(
        apply(
            &svc,
            &space,
            vec![create(DECL, Some("self"), declaration(other))],
            None
        ),
        Err(ServiceError::InvalidRequest(_))
    ));
    assert!(svc.store().head(&space).unwrap().is_none());
    let o = declare_with_text(&svc, &space, Some(false));
    assert_eq!(o.results[0].validation_status, Some("valid"));
    assert_eq!(o.results[1].validation_status, Some("valid"));
    for v in [None, Some(false), Some(true)] {
        assert!(
            matches!(
                apply(&svc, &space, vec![create(NOTE, None, note("unknown"))], v),
                Err(ServiceError::InvalidRecord { .. })
            ),
            "unknown type, validate {v:?}"
        );
        assert!(
            matches!(
                apply(&svc, &space, vec![create(TEXT, None, no_body())], v),
                Err(ServiceError::InvalidRecord { .. })
            ),
            "invalid record, validate {v:?}"
        );
        let o = apply(&svc, &space, vec![create(TEXT, None, text("fine"))], v).unwrap();
        assert_eq!(o.results[0].validation_status, Some("valid"));
    }
    // The declaration can't be rewritten to name another collective.
    assert!(matches!(
        apply(
            &svc,
            &space,
            vec![put(DECL, "self", declaration(other))],
            None
        ),
        Err(ServiceError::InvalidRequest(_))
    ));
    assert_eq!(svc.store().record_count(&space).unwrap(), 5);
    assert_car_matches_index(&svc, &space);
    // The public repo is untouched.
    let public = svc.repo_key(svc.did(), &Space::Public).unwrap();
    assert!(svc.store().head(&public).unwrap().is_none());
}

/// A collective repo's space declaration can't be deleted (alone, in a batch, with a
/// `swapRecord`) nor rewritten to name another collective (put or update); each refusal
/// writes nothing. Rewriting it with the same collective is allowed.
fn declaration_cannot_be_deleted_or_replaced<B: Backend>(b: &B) {
    let key = Keypair::generate().unwrap();
    let svc = service(b.open(), &key);
    let space = svc.repo_key(svc.did(), &space()).unwrap();
    let o = declare_with_text(&svc, &space, None);
    let decl_cid = o.results[0].cid.unwrap();
    let before = snapshot(&svc, &space);
    let other = "bafyreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
    let deletes = [
        vec![delete(DECL, "self")],
        vec![create(TEXT, None, text("second")), delete(DECL, "self")],
        vec![WriteOp::Delete {
            collection: DECL.to_string(),
            rkey: "self".to_string(),
            swap_record: Some(decl_cid),
        }],
    ];
    for writes in deletes {
        match apply(&svc, &space, writes, None) {
            Err(e @ ServiceError::DeclarationDelete(_)) => {
                assert!(e.to_string().contains("cannot be deleted"), "{e}");
            }
            other => panic!("a declaration delete answered {other:?}"),
        }
        assert_eq!(snapshot(&svc, &space), before);
    }
    let replaces = [
        put(DECL, "self", declaration(other)),
        WriteOp::Update {
            collection: DECL.to_string(),
            rkey: "self".to_string(),
            record: declaration(other),
        },
    ];
    for w in replaces {
        assert!(matches!(
            apply(&svc, &space, vec![w], None),
            Err(ServiceError::InvalidRequest(_))
        ));
        assert_eq!(snapshot(&svc, &space), before);
    }
    let mut same = declaration(SPACE);
    same["createdAt"] = json!("2024-06-01T12:00:00.000Z");
    apply(&svc, &space, vec![put(DECL, "self", same)], None).unwrap();
    assert_eq!(svc.store().record_count(&space).unwrap(), 2);
}

/// Membership as a test sets it: departed from the collectives in the map.
#[derive(Debug, Default)]
struct FakeMemberships(std::sync::Mutex<BTreeMap<String, Departed>>);

impl Memberships for FakeMemberships {
    fn departed(&self, collective: &guild_core::Cid) -> Option<Departed> {
        self.0.lock().unwrap().get(&collective.to_string()).cloned()
    }
}

/// Regression (issue 13, finding 5): a member who left (or was removed) could still write to
/// the collective's space, and those records were never replicated, without a word. Such a
/// write is now refused, names the collective and the date, and changes nothing; the public
/// repo is not affected.
fn writes_refused_after_leaving_the_collective<B: Backend>(b: &B) {
    let key = Keypair::generate().unwrap();
    let svc = service(b.open(), &key);
    let memberships = Arc::new(FakeMemberships::default());
    assert!(svc.check_memberships(memberships.clone()));
    let space = svc.repo_key(svc.did(), &space()).unwrap();
    declare_with_text(&svc, &space, None);
    let before = snapshot(&svc, &space);
    for (removed, how) in [(false, "you left"), (true, "you were removed from")] {
        memberships.0.lock().unwrap().insert(
            SPACE.to_string(),
            Departed {
                removed,
                at: Datetime::parse("2025-02-03T04:05:06.000Z").unwrap(),
            },
        );
        match apply(&svc, &space, vec![create(TEXT, None, text("after"))], None) {
            Err(ServiceError::InvalidRequest(m)) => {
                assert!(m.contains(how), "{m}");
                assert!(m.contains(SPACE), "{m}");
                assert!(m.contains("2025-02-03T04:05:06.000Z"), "{m}");
                assert!(m.contains("no longer accepted"), "{m}");
            }
            other => panic!("a departed member's write answered {other:?}"),
        }
        assert_eq!(snapshot(&svc, &space), before);
    }
    let public = svc.repo_key(svc.did(), &Space::Public).unwrap();
    apply(
        &svc,
        &public,
        vec![create(TEXT, None, text("public"))],
        None,
    )
    .unwrap();
    memberships.0.lock().unwrap().clear();
    apply(&svc, &space, vec![create(TEXT, None, text("back"))], None).unwrap();
}

/// Regression (issue 13, finding 5): a `coop.guild.data.file` whose `mimeType` disagreed with
/// its blob's own was accepted. It is now refused, naming both, in the public repo and in a
/// collective space, and changes nothing; an agreeing pair (case and parameters aside) lands.
fn file_mime_type_must_agree_with_its_blob<B: Backend>(b: &B) {
    let key = Keypair::generate().unwrap();
    let svc = service(b.open(), &key);
    let file = |declared: &str, blob: &str| {
        json!({
            "$type": "coop.guild.data.file",
            "file": {
                "$type": "blob",
                "ref": {"$link": "bafkreih2fsgmj4ubo2565vfxg3pvngruy6ong4r6t3cc7ftuwtkgvrvyxa"},
                "mimeType": blob,
                "size": 1234,
            },
            "mimeType": declared,
            "createdAt": "2024-05-01T12:00:00.000Z",
        })
    };
    let collective = svc.repo_key(svc.did(), &space()).unwrap();
    declare_with_text(&svc, &collective, None);
    let public = svc.repo_key(svc.did(), &Space::Public).unwrap();
    for repo in [&public, &collective] {
        let before = snapshot(&svc, repo);
        match apply(
            &svc,
            repo,
            vec![create(
                "coop.guild.data.file",
                None,
                file("image/png", "image/jpeg"),
            )],
            None,
        ) {
            Err(ServiceError::InvalidRecord { message, .. }) => {
                assert!(message.contains("\"image/png\""), "{message}");
                assert!(message.contains("\"image/jpeg\""), "{message}");
            }
            other => panic!("a disagreeing mimeType answered {other:?}"),
        }
        assert_eq!(snapshot(&svc, repo), before);
        apply(
            &svc,
            repo,
            vec![create(
                "coop.guild.data.file",
                None,
                file("audio/FLAC", "audio/flac; rate=48000"),
            )],
            None,
        )
        .unwrap();
    }
}

/// A lexicon violation in the 3rd of 5 writes: the commit is refused and nothing changes.
fn failed_write_changes_nothing<B: Backend>(b: &B) {
    let key = Keypair::generate().unwrap();
    let svc = service(b.open(), &key);
    let repo = svc.repo_key(svc.did(), &Space::Public).unwrap();
    let batch = |base: u64| {
        vec![
            create(TEXT, Some(&tid(base + 1)), text("a")),
            put(NOTE, &format!("n{base}"), note("b")),
            create(TEXT, Some(&tid(base + 3)), no_body()),
            create(TEXT, None, text("d")),
            delete(TEXT, &tid(1)),
        ]
    };
    // On an empty repo: no repo appears.
    let before = snapshot(&svc, &repo);
    assert!(matches!(
        apply(&svc, &repo, batch(100), None),
        Err(ServiceError::InvalidRecord { .. })
    ));
    assert_eq!(snapshot(&svc, &repo), before);
    assert!(before.head.is_none());

    // On a repo with records.
    apply(
        &svc,
        &repo,
        vec![
            create(TEXT, Some(&tid(1)), text("existing")),
            create(NOTE, Some("keep"), note("k")),
        ],
        None,
    )
    .unwrap();
    let before = snapshot(&svc, &repo);
    assert_eq!(before.count, 2);
    assert!(matches!(
        apply(&svc, &repo, batch(200), None),
        Err(ServiceError::InvalidRecord { .. })
    ));
    assert_eq!(snapshot(&svc, &repo), before);
    assert_car_matches_index(&svc, &repo);
    // Reads still see the old records.
    svc.get_record(&repo, TEXT, &tid(1), None).unwrap();
    assert!(matches!(
        svc.get_record(&repo, TEXT, &tid(201), None),
        Err(ServiceError::RecordNotFound(_))
    ));
    // And the same batch, fixed, commits all five.
    let mut fixed = batch(300);
    fixed[2] = create(TEXT, Some(&tid(303)), text("c"));
    let o = apply(&svc, &repo, fixed, None).unwrap();
    assert_eq!(o.results.len(), 5);
    assert_eq!(svc.store().record_count(&repo).unwrap(), 2 + 4 - 1);
    assert_car_matches_index(&svc, &repo);
}

/// Other refusals in a batch (a create over an existing record, a delete of a missing one,
/// swaps that do not match) also change nothing.
fn swaps_and_missing_records_change_nothing<B: Backend>(b: &B) {
    let key = Keypair::generate().unwrap();
    let svc = service(b.open(), &key);
    let repo = svc.repo_key(svc.did(), &Space::Public).unwrap();
    let o = apply(
        &svc,
        &repo,
        vec![create(TEXT, Some(&tid(1)), text("one"))],
        None,
    )
    .unwrap();
    let cid1 = o.results[0].cid.unwrap();
    let o2 = apply(
        &svc,
        &repo,
        vec![create(TEXT, Some(&tid(2)), text("two"))],
        None,
    )
    .unwrap();
    let before = snapshot(&svc, &repo);
    let failing: Vec<(Vec<WriteOp>, Option<&cid::Cid>)> = vec![
        (
            vec![
                create(TEXT, None, text("x")),
                create(TEXT, Some(&tid(1)), text("dup")),
            ],
            None,
        ),
        (
            vec![create(TEXT, None, text("x")), delete(TEXT, &tid(9))],
            None,
        ),
        (vec![create(TEXT, None, text("x"))], Some(&o.commit)),
        (
            vec![
                create(TEXT, None, text("x")),
                WriteOp::Put {
                    collection: TEXT.into(),
                    rkey: tid(1),
                    record: text("y"),
                    swap_record: Some(None),
                },
            ],
            None,
        ),
        (
            vec![WriteOp::Delete {
                collection: TEXT.into(),
                rkey: tid(1),
                swap_record: Some(o2.results[0].cid.unwrap()),
            }],
            None,
        ),
        (vec![], None),
    ];
    for (i, (writes, swap)) in failing.into_iter().enumerate() {
        let r = svc.apply_writes(&repo, writes, None, swap);
        assert!(r.is_err(), "case {i} should fail: {r:?}");
        assert_eq!(snapshot(&svc, &repo), before, "case {i} changed the repo");
    }
    // The matching swaps pass.
    svc.apply_writes(
        &repo,
        vec![WriteOp::Delete {
            collection: TEXT.into(),
            rkey: tid(1),
            swap_record: Some(cid1),
        }],
        None,
        Some(&o2.commit),
    )
    .unwrap();
    assert_car_matches_index(&svc, &repo);
}

fn concurrent_writes_all_land_with_distinct_revs<B: Backend>(b: &B) {
    const THREADS: usize = 8;
    const EACH: usize = 15;
    let key = Keypair::generate().unwrap();
    let svc = Arc::new(service(b.open(), &key));
    let repo = svc.repo_key(svc.did(), &Space::Public).unwrap();
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (svc, repo, barrier) = (svc.clone(), repo.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                (0..EACH)
                    .map(|i| {
                        let w = if i.is_multiple_of(3) {
                            vec![
                                create(TEXT, None, text(&format!("{t}/{i}a"))),
                                create(TEXT, None, text(&format!("{t}/{i}b"))),
                            ]
                        } else {
                            vec![create(TEXT, None, text(&format!("{t}/{i}")))]
                        };
                        apply(&svc, &repo, w, None)
                            .unwrap_or_else(|e| panic!("thread {t} write {i}: {e}"))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let outcomes: Vec<WriteOutcome> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("writer thread"))
        .collect();
    let revs: BTreeSet<String> = outcomes
        .iter()
        .map(|o| o.rev.as_str().to_string())
        .collect();
    assert_eq!(
        revs.len(),
        THREADS * EACH,
        "every commit has its own revision"
    );
    let commits: BTreeSet<String> = outcomes.iter().map(|o| o.commit.to_string()).collect();
    assert_eq!(commits.len(), THREADS * EACH);
    let paths: BTreeSet<String> = outcomes
        .iter()
        .flat_map(|o| o.results.iter().map(|r| r.uri.clone()))
        .collect();
    let per_thread = EACH + EACH.div_ceil(3);
    assert_eq!(
        paths.len(),
        THREADS * per_thread,
        "every record has its own key"
    );
    let head = svc.head(&repo).unwrap();
    assert_eq!(
        head.rev.as_str(),
        revs.iter().next_back().unwrap(),
        "the head is the last commit"
    );
    assert_eq!(
        svc.store().record_count(&repo).unwrap(),
        (THREADS * per_thread) as u64
    );
    assert_car_matches_index(&svc, &repo);
    for o in &outcomes {
        for r in &o.results {
            let k = rkey_of(&r.uri);
            assert_eq!(
                svc.get_record(&repo, TEXT, &k, None).unwrap().0,
                r.cid.unwrap()
            );
        }
    }
}

/// New revisions are after every revision the store has seen, whether it learned of them from
/// a repo head or from the saved clock.
fn tid_clock_resumes_after_reopen<B: Backend>(b: &B) {
    let key = Keypair::generate().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let (did, first_rev) = {
        let svc = service(b.open(), &key);
        let repo = svc.repo_key(svc.did(), &Space::Public).unwrap();
        let o = apply(&svc, &repo, vec![create(TEXT, None, text("before"))], None).unwrap();
        (svc.did().to_string(), o.rev)
    };
    // Reopened: later.
    let second_rev = {
        let svc = service(b.open(), &key);
        let repo = svc.repo_key(&did, &Space::Public).unwrap();
        let o = apply(&svc, &repo, vec![create(TEXT, None, text("after"))], None).unwrap();
        assert!(
            o.rev > first_rev,
            "{} then {}",
            first_rev.as_str(),
            o.rev.as_str()
        );
        o.rev
    };
    // A head from the future (an hour ahead, in a collective space of this member): the
    // clock resumes after it, for revisions and for the keys it picks.
    let future = Tid::from_parts(now + 3_600_000_000, 5);
    {
        let store = b.open();
        let space = RepoKey::new(guild_store::Did::parse(&did).unwrap(), space());
        let mut r = Repo::empty(Staged::new(&*store), did.clone());
        let result = r
            .apply(
                &key,
                future.clone(),
                vec![Write::Create {
                    collection: Nsid::parse(DECL).unwrap(),
                    rkey: RecordKey::parse("self").unwrap(),
                    record: guild_core::data::from_json(&declaration(SPACE)).unwrap(),
                }],
            )
            .unwrap();
        store
            .commit(
                &space,
                None,
                &(&result.head).into(),
                &result.blocks,
                &IndexOp::from_record_ops(&result.ops).unwrap(),
            )
            .unwrap();
    }
    let third = {
        let svc = service(b.open(), &key);
        let repo = svc.repo_key(&did, &Space::Public).unwrap();
        let o = apply(
            &svc,
            &repo,
            vec![create(TEXT, None, text("after the future"))],
            None,
        )
        .unwrap();
        assert!(
            o.rev > future,
            "rev {} is not after the stored head {}",
            o.rev.as_str(),
            future.as_str()
        );
        assert!(o.rev > second_rev);
        let k = rkey_of(&o.results[0].uri);
        assert!(
            k.as_str() > future.as_str(),
            "key {k} is not after {}",
            future.as_str()
        );
        // The saved clock holds the last TID issued.
        svc.save_clock().unwrap();
        let saved = svc.store().last_tid().unwrap().expect("a saved clock");
        assert!(saved >= o.rev);
        o.rev
    };
    // A saved clock even further ahead (two hours): resumed after it too.
    let further = Tid::from_parts(now + 7_200_000_000, 5);
    b.open().set_last_tid(&further).unwrap();
    {
        let svc = service(b.open(), &key);
        let repo = svc.repo_key(&did, &Space::Public).unwrap();
        let o = apply(&svc, &repo, vec![create(TEXT, None, text("last"))], None).unwrap();
        assert!(
            o.rev > further,
            "rev {} is not after the saved clock {}",
            o.rev.as_str(),
            further.as_str()
        );
        assert!(o.rev > third);
        assert_car_matches_index(&svc, &repo);
    }
}

fn other_repos_and_bad_spaces<B: Backend>(b: &B) {
    let key = Keypair::generate().unwrap();
    let svc = service(b.open(), &key);
    let other = Keypair::generate().unwrap();
    assert!(matches!(
        svc.repo_key(&other.did(), &Space::Public),
        Err(ServiceError::RepoNotFound(_))
    ));
    assert!(matches!(
        svc.repo_key("alice.example.com", &Space::Public),
        Err(ServiceError::RepoNotFound(_))
    ));
    for bad in [
        "",
        "Public",
        "../x",
        "not-a-cid",
        "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
    ] {
        // A space is parsed where it comes in; a bad one is an invalid request.
        assert!(
            matches!(
                Space::parse(bad)
                    .map_err(ServiceError::from)
                    .and_then(|space| svc.repo_key(svc.did(), &space)),
                Err(ServiceError::InvalidRequest(_))
            ),
            "space {bad:?}"
        );
    }
    // Reads of a repo that does not exist yet.
    let space = svc.repo_key(svc.did(), &space()).unwrap();
    assert!(matches!(
        svc.get_record(&space, TEXT, &tid(1), None),
        Err(ServiceError::RepoNotFound(_))
    ));
    assert!(matches!(
        svc.list_records(&space, TEXT, None, 10, false),
        Err(ServiceError::RepoNotFound(_))
    ));
    assert!(matches!(
        svc.collections(&space),
        Err(ServiceError::RepoNotFound(_))
    ));
    assert!(matches!(
        svc.repo_car(&space, None),
        Err(ServiceError::RepoNotFound(_))
    ));
    assert!(matches!(
        svc.record_proof(&space, DECL, "self"),
        Err(ServiceError::RepoNotFound(_))
    ));
}
