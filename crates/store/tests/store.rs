//! One test suite for every store: each test is a generic function over the store traits,
//! run by `both!` against `MemoryStore` and against `SledStore` in a temporary directory.
//! Sled-only tests (reopen, checks on open, an end-to-end repo) follow.

use std::collections::BTreeSet;
use std::sync::Barrier;

use guild_core::cids::cid_for_raw;
use guild_core::syntax::{Nsid, RecordKey};
use guild_core::{Ipld, Keypair};
use guild_repo::{Repo, Write};
use guild_store::{
    BlockSource, BlockStore, Bytes, Cid, CommitError, IndexOp, KvOp, KvStore, MemoryStore,
    OpenError, RepoHead, RepoKey, RepoStore, SledStore, Space, Staged, Tid,
};

/// What every test needs of a store: the traits, and blocks writable through `&S`.
trait TestStore: RepoStore + KvStore + BlockStore
where
    for<'a> &'a Self: BlockStore,
{
}
impl<S: RepoStore + KvStore + BlockStore> TestStore for S where for<'a> &'a S: BlockStore {}

/// Runs each named generic test against both backends.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[test]
            fn $name() {
                super::$name(&guild_store::MemoryStore::new());
            })*
        }
        mod sled {
            $(#[test]
            fn $name() {
                let dir = tempfile::tempdir().unwrap();
                let store = guild_store::SledStore::open(dir.path()).unwrap();
                super::$name(&store);
            })*
        }
    };
}

both!(
    blocks_put_and_get,
    commit_creates_a_repo,
    conflict_changes_nothing,
    index_lists_in_order_with_cursors_and_limits,
    updates_and_deletes,
    repos_and_spaces_are_isolated,
    tid_clock_only_moves_forward,
    kv_ops_and_scans,
    concurrent_commits_one_winner_per_head,
    repo_commits_round_trip,
    large_commits,
    gov_ops_append_in_order_once,
);

const T0: u64 = 1_700_000_000_000_000;

fn block(tag: &str) -> (Cid, Bytes) {
    let bytes = Bytes::from(format!("block {tag}").into_bytes());
    (cid_for_raw(&bytes), bytes)
}

fn did(s: &str) -> guild_store::Did {
    guild_store::Did::parse(s).unwrap()
}

/// The id of a made-up collective.
fn collective(tag: &str) -> Cid {
    cid_for_raw(format!("collective {tag}").as_bytes())
}

fn rev(n: u64) -> Tid {
    Tid::from_parts(T0 + n, 1)
}

/// A fake commit numbered `n`: a commit block and a root block (the store checks neither).
fn fake_commit(repo: &RepoKey, n: u64) -> (RepoHead, Vec<(Cid, Bytes)>) {
    let commit = block(&format!("commit {repo} {n}"));
    let root = block(&format!("root {repo} {n}"));
    let head = RepoHead {
        commit: commit.0,
        rev: rev(n),
        data: root.0,
    };
    (head, vec![commit, root])
}

fn put(collection: &str, rkey: &str) -> IndexOp {
    IndexOp::Put {
        collection: collection.into(),
        rkey: rkey.into(),
        cid: record_cid(collection, rkey),
    }
}

fn del(collection: &str, rkey: &str) -> IndexOp {
    IndexOp::Delete {
        collection: collection.into(),
        rkey: rkey.into(),
    }
}

fn record_cid(collection: &str, rkey: &str) -> Cid {
    cid_for_raw(format!("record {collection}/{rkey}").as_bytes())
}

/// Commits `ops` on top of the current head (whatever it is); returns the new head.
fn advance<S: TestStore>(store: &S, repo: &RepoKey, ops: &[IndexOp]) -> RepoHead
where
    for<'a> &'a S: BlockStore,
{
    let current = store.head(repo).unwrap();
    let n = current
        .as_ref()
        .map_or(0, |h| h.rev.timestamp_micros() - T0 + 1);
    let (head, blocks) = fake_commit(repo, n);
    store
        .commit(
            repo,
            current.as_ref().map(|h| &h.commit),
            &head,
            &blocks,
            ops,
        )
        .unwrap();
    head
}

fn rkeys(list: &[(String, Cid)]) -> Vec<&str> {
    list.iter().map(|(k, _)| k.as_str()).collect()
}

fn blocks_put_and_get<S: TestStore>(store: &S)
where
    for<'a> &'a S: BlockStore,
{
    let a = block("a");
    let b = block("b");
    assert_eq!(store.get_block(&a.0).unwrap(), None);
    assert!(!store.has_block(&a.0).unwrap());
    let mut handle = store;
    handle.put_blocks(vec![a.clone(), b.clone()]).unwrap();
    assert_eq!(store.get_block(&a.0).unwrap(), Some(a.1.clone()));
    assert_eq!(store.get_block(&b.0).unwrap(), Some(b.1));
    assert!(store.has_block(&a.0).unwrap());
    // Writing a block again is harmless.
    handle.put_blocks(vec![a.clone()]).unwrap();
    assert_eq!(store.get_block(&a.0).unwrap(), Some(a.1));
    handle.put_blocks(Vec::new()).unwrap();
    assert!(!store.has_block(&block("c").0).unwrap());
}

fn commit_creates_a_repo<S: TestStore>(store: &S)
where
    for<'a> &'a S: BlockStore,
{
    let repo = RepoKey::public(did("did:key:alice"));
    assert_eq!(store.head(&repo).unwrap(), None);
    assert!(store.repos().unwrap().is_empty());
    assert_eq!(store.record_count(&repo).unwrap(), 0);
    let (head, blocks) = fake_commit(&repo, 0);
    store
        .commit(
            &repo,
            None,
            &head,
            &blocks,
            &[put("app.x", "k1"), put("app.x", "k2")],
        )
        .unwrap();
    assert_eq!(store.head(&repo).unwrap(), Some(head.clone()));
    assert_eq!(store.repos().unwrap(), vec![(repo.clone(), head.clone())]);
    for (cid, bytes) in &blocks {
        assert_eq!(store.get_block(cid).unwrap().as_ref(), Some(bytes));
    }
    assert_eq!(
        store.index_get(&repo, "app.x", "k1").unwrap(),
        Some(record_cid("app.x", "k1"))
    );
    assert_eq!(store.index_get(&repo, "app.x", "k3").unwrap(), None);
    assert_eq!(store.record_count(&repo).unwrap(), 2);
    assert_eq!(store.collections(&repo).unwrap(), vec!["app.x"]);

    // A second commit on top of the first.
    let (head2, blocks2) = fake_commit(&repo, 1);
    store
        .commit(
            &repo,
            Some(&head.commit),
            &head2,
            &blocks2,
            &[put("app.y", "k")],
        )
        .unwrap();
    assert_eq!(store.head(&repo).unwrap(), Some(head2));
    assert_eq!(store.record_count(&repo).unwrap(), 3);
    assert_eq!(store.collections(&repo).unwrap(), vec!["app.x", "app.y"]);

    // A commit with no index ops still moves the head.
    let head3 = advance(store, &repo, &[]);
    assert_eq!(store.head(&repo).unwrap(), Some(head3));
    assert_eq!(store.record_count(&repo).unwrap(), 3);
}

fn conflict_changes_nothing<S: TestStore>(store: &S)
where
    for<'a> &'a S: BlockStore,
{
    let repo = RepoKey::public(did("did:key:alice"));
    let head = advance(store, &repo, &[put("app.x", "a"), put("app.x", "b")]);
    let before = (
        store.index_list(&repo, "app.x", None, 100, false).unwrap(),
        store.collections(&repo).unwrap(),
        store.record_count(&repo).unwrap(),
    );
    let ops = [put("app.x", "c"), del("app.x", "a"), put("app.z", "z")];
    let (other, blocks) = fake_commit(&repo, 99);

    // The repo exists, but the caller thinks it does not.
    match store.commit(&repo, None, &other, &blocks, &ops) {
        Err(CommitError::Conflict { expected, actual }) => {
            assert_eq!(expected, None);
            assert_eq!(actual, Some(head.commit));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    // The caller expects a head that is not the current one.
    let stale = block("stale").0;
    let err = store
        .commit(&repo, Some(&stale), &other, &blocks, &ops)
        .unwrap_err();
    assert!(err.to_string().contains(&stale.to_string()), "{err}");
    match err {
        CommitError::Conflict { expected, actual } => {
            assert_eq!(expected, Some(stale));
            assert_eq!(actual, Some(head.commit));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.head(&repo).unwrap(), Some(head.clone()));
    let after = (
        store.index_list(&repo, "app.x", None, 100, false).unwrap(),
        store.collections(&repo).unwrap(),
        store.record_count(&repo).unwrap(),
    );
    assert_eq!(before, after);
    assert_eq!(store.index_get(&repo, "app.z", "z").unwrap(), None);

    // A repo that does not exist, but the caller expects a head.
    let missing = RepoKey::public(did("did:key:nobody"));
    match store.commit(&missing, Some(&head.commit), &other, &blocks, &ops) {
        Err(CommitError::Conflict { expected, actual }) => {
            assert_eq!(expected, Some(head.commit));
            assert_eq!(actual, None);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.head(&missing).unwrap(), None);
    assert_eq!(store.record_count(&missing).unwrap(), 0);
    assert!(store.collections(&missing).unwrap().is_empty());
    assert_eq!(store.repos().unwrap().len(), 1);
}

fn index_lists_in_order_with_cursors_and_limits<S: TestStore>(store: &S)
where
    for<'a> &'a S: BlockStore,
{
    let repo = RepoKey::public(did("did:key:alice"));
    // Written out of order, over two commits; a neighbouring collection whose name extends
    // this one's must not leak in.
    let keys = ["3k", "3a", "3z", "2b", "3b", "a", "3kz"];
    advance(
        store,
        &repo,
        &keys[..4]
            .iter()
            .map(|k| put("app.x", k))
            .collect::<Vec<_>>(),
    );
    let mut ops: Vec<IndexOp> = keys[4..].iter().map(|k| put("app.x", k)).collect();
    ops.push(put("app.xy", "3c"));
    ops.push(put("app.w", "zz"));
    advance(store, &repo, &ops);

    let mut sorted: Vec<&str> = keys.to_vec();
    sorted.sort();
    let list = |cursor: Option<&str>, limit: usize, reverse: bool| {
        store
            .index_list(&repo, "app.x", cursor, limit, reverse)
            .unwrap()
    };
    let all = list(None, 100, false);
    assert_eq!(rkeys(&all), sorted);
    for (k, cid) in &all {
        assert_eq!(*cid, record_cid("app.x", k));
    }
    let mut desc = sorted.clone();
    desc.reverse();
    assert_eq!(rkeys(&list(None, 100, true)), desc);

    // Limits.
    assert_eq!(rkeys(&list(None, 3, false)), sorted[..3]);
    assert_eq!(rkeys(&list(None, 2, true)), desc[..2]);
    assert!(list(None, 0, false).is_empty());
    assert!(list(None, 0, true).is_empty());

    // Cursors are exclusive, need not exist, and page through everything.
    assert_eq!(rkeys(&list(Some("3k"), 100, false)), ["3kz", "3z", "a"]);
    assert_eq!(rkeys(&list(Some("3k"), 100, true)), ["3b", "3a", "2b"]);
    assert_eq!(rkeys(&list(Some("3c"), 2, false)), ["3k", "3kz"]);
    assert_eq!(rkeys(&list(Some("3c"), 2, true)), ["3b", "3a"]);
    assert!(list(Some("a"), 100, false).is_empty());
    assert!(list(Some("2b"), 100, true).is_empty());
    assert_eq!(rkeys(&list(Some("0"), 1, false)), ["2b"]);
    assert_eq!(rkeys(&list(Some("zz"), 1, true)), ["a"]);
    for reverse in [false, true] {
        let mut paged = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = list(cursor.as_deref(), 2, reverse);
            if page.is_empty() {
                break;
            }
            cursor = page.last().map(|(k, _)| k.clone());
            paged.extend(page);
        }
        let want = if reverse { &desc } else { &sorted };
        assert_eq!(&rkeys(&paged), want);
    }

    assert_eq!(
        rkeys(&store.index_list(&repo, "app.xy", None, 10, false).unwrap()),
        ["3c"]
    );
    assert!(
        store
            .index_list(&repo, "app.nothing", None, 10, false)
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .index_list(&repo, "app", None, 10, true)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.collections(&repo).unwrap(),
        vec!["app.w", "app.x", "app.xy"]
    );
    assert_eq!(store.record_count(&repo).unwrap(), keys.len() as u64 + 2);
}

fn updates_and_deletes<S: TestStore>(store: &S)
where
    for<'a> &'a S: BlockStore,
{
    let repo = RepoKey::public(did("did:key:alice"));
    advance(
        store,
        &repo,
        &[put("app.x", "a"), put("app.x", "b"), put("app.y", "c")],
    );
    assert_eq!(store.record_count(&repo).unwrap(), 3);

    // Replacing a record keeps the count.
    let new_cid = block("new a").0;
    advance(
        store,
        &repo,
        &[IndexOp::Put {
            collection: "app.x".into(),
            rkey: "a".into(),
            cid: new_cid,
        }],
    );
    assert_eq!(store.index_get(&repo, "app.x", "a").unwrap(), Some(new_cid));
    assert_eq!(store.record_count(&repo).unwrap(), 3);

    // Deleting an absent record changes nothing; deleting a present one removes it.
    advance(store, &repo, &[del("app.x", "nope"), del("app.q", "a")]);
    assert_eq!(store.record_count(&repo).unwrap(), 3);
    advance(store, &repo, &[del("app.x", "b")]);
    assert_eq!(store.index_get(&repo, "app.x", "b").unwrap(), None);
    assert_eq!(store.record_count(&repo).unwrap(), 2);

    // A collection whose last record goes is no longer listed.
    advance(store, &repo, &[del("app.y", "c")]);
    assert_eq!(store.collections(&repo).unwrap(), vec!["app.x"]);
    assert!(
        store
            .index_list(&repo, "app.y", None, 10, false)
            .unwrap()
            .is_empty()
    );

    // Ops apply in order within one commit.
    advance(
        store,
        &repo,
        &[
            put("app.z", "1"),
            del("app.z", "1"),
            put("app.z", "2"),
            put("app.z", "2"),
            del("app.x", "a"),
            put("app.x", "a"),
        ],
    );
    assert_eq!(store.index_get(&repo, "app.z", "1").unwrap(), None);
    assert_eq!(
        store.index_get(&repo, "app.x", "a").unwrap(),
        Some(record_cid("app.x", "a"))
    );
    assert_eq!(store.collections(&repo).unwrap(), vec!["app.x", "app.z"]);
    assert_eq!(store.record_count(&repo).unwrap(), 2);
}

fn repos_and_spaces_are_isolated<S: TestStore>(store: &S)
where
    for<'a> &'a S: BlockStore,
{
    // DIDs that are prefixes of each other, and one DID's public repo and collective
    // spaces, must never see each other's records. (Strings holding the component separator
    // byte are the encoding's unit tests: no DID or space can hold one.)
    let repos = [
        RepoKey::public(did("did:x:a")),
        RepoKey::public(did("did:x:ab")),
        RepoKey::public(did("did:x:a.b")),
        RepoKey::public(did("did:xy:a")),
        RepoKey::collective(did("did:x:a"), collective("1")),
        RepoKey::collective(did("did:x:a"), collective("2")),
        RepoKey::collective(did("did:x:ab"), collective("1")),
        RepoKey::collective(did("did:y:public"), collective("1")),
        RepoKey::collective(did("did:x:b"), collective("1")),
    ];
    for (i, repo) in repos.iter().enumerate() {
        let mut ops: Vec<IndexOp> = (0..=i)
            .map(|j| put("app.x", &format!("r{i}-{j}")))
            .collect();
        ops.push(put(&format!("app.only{i}"), "k"));
        advance(store, repo, &ops);
    }
    assert_eq!(
        store
            .repos()
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect::<BTreeSet<_>>(),
        repos.iter().cloned().collect()
    );
    for (i, repo) in repos.iter().enumerate() {
        let listed = store.index_list(repo, "app.x", None, 100, false).unwrap();
        let want: Vec<String> = (0..=i).map(|j| format!("r{i}-{j}")).collect();
        assert_eq!(rkeys(&listed), want, "{repo}");
        let reversed = store.index_list(repo, "app.x", None, 100, true).unwrap();
        assert_eq!(reversed.len(), i + 1, "{repo}");
        assert_eq!(
            store.collections(repo).unwrap(),
            vec![format!("app.only{i}"), "app.x".to_owned()],
            "{repo}"
        );
        assert_eq!(store.record_count(repo).unwrap(), i as u64 + 2, "{repo}");
        let head = store.head(repo).unwrap().unwrap();
        assert_eq!(head, fake_commit(repo, 0).0);
        for (j, other) in repos.iter().enumerate() {
            let found = store
                .index_get(other, &format!("app.only{i}"), "k")
                .unwrap();
            assert_eq!(found.is_some(), i == j, "{repo} / {other}");
        }
    }
    // A commit to one repo's space leaves the others' heads alone.
    let before: Vec<_> = store.repos().unwrap();
    advance(store, &repos[0], &[del("app.x", "r0-0")]);
    let after: Vec<_> = store.repos().unwrap();
    for ((k1, h1), (k2, h2)) in before.iter().zip(&after) {
        assert_eq!(k1, k2);
        assert_eq!(h1 == h2, *k1 != repos[0], "{k1}");
    }
}

fn large_commits<S: TestStore>(store: &S)
where
    for<'a> &'a S: BlockStore,
{
    // An import-sized commit: thousands of blocks and index ops at once.
    let repo = RepoKey::public(did("did:key:importer"));
    let (head, mut blocks) = fake_commit(&repo, 0);
    let ops: Vec<IndexOp> = (0..3000)
        .map(|i| put(&format!("app.c{}", i % 3), &format!("{i:05}")))
        .collect();
    blocks.extend((0..3000).map(|i| block(&format!("record {i}"))));
    store.commit(&repo, None, &head, &blocks, &ops).unwrap();
    assert_eq!(store.record_count(&repo).unwrap(), 3000);
    assert_eq!(
        store.collections(&repo).unwrap(),
        vec!["app.c0", "app.c1", "app.c2"]
    );
    let c1 = store
        .index_list(&repo, "app.c1", None, 5000, false)
        .unwrap();
    assert_eq!(c1.len(), 1000);
    assert!(c1.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(c1[0].0, "00001");
    assert!(store.has_block(&block("record 2999").0).unwrap());
    // Delete them all again in one commit.
    let deletes: Vec<IndexOp> = (0..3000)
        .map(|i| del(&format!("app.c{}", i % 3), &format!("{i:05}")))
        .collect();
    advance(store, &repo, &deletes);
    assert_eq!(store.record_count(&repo).unwrap(), 0);
    assert!(store.collections(&repo).unwrap().is_empty());
}

fn tid_clock_only_moves_forward<S: TestStore>(store: &S)
where
    for<'a> &'a S: BlockStore,
{
    assert_eq!(store.last_tid().unwrap(), None);
    store.set_last_tid(&rev(10)).unwrap();
    assert_eq!(store.last_tid().unwrap(), Some(rev(10)));
    store.set_last_tid(&rev(5)).unwrap();
    assert_eq!(store.last_tid().unwrap(), Some(rev(10)));
    store.set_last_tid(&rev(11)).unwrap();
    assert_eq!(store.last_tid().unwrap(), Some(rev(11)));
}

fn kv_ops_and_scans<S: TestStore>(store: &S)
where
    for<'a> &'a S: BlockStore,
{
    let b = |s: &str| Bytes::from(s.as_bytes().to_vec());
    let keys = |v: &[(Vec<u8>, Bytes)]| -> Vec<String> {
        v.iter()
            .map(|(k, _)| String::from_utf8(k.clone()).unwrap())
            .collect()
    };
    assert_eq!(store.kv_get("ops", b"a").unwrap(), None);
    assert!(store.kv_scan("ops", b"", None, 10).unwrap().is_empty());

    let puts: Vec<KvOp> = ["a/1", "a/2", "a/3", "ab/1", "b/1", "a"]
        .iter()
        .map(|k| KvOp::Put(k.as_bytes().to_vec(), b(&format!("v {k}"))))
        .collect();
    store.kv_apply("ops", &puts).unwrap();
    store
        .kv_apply("feeds", &[KvOp::Put(b"a/1".to_vec(), b("feed"))])
        .unwrap();
    assert_eq!(store.kv_get("ops", b"a/2").unwrap(), Some(b("v a/2")));
    assert_eq!(store.kv_get("feeds", b"a/1").unwrap(), Some(b("feed")));
    assert_eq!(store.kv_get("feeds", b"a/2").unwrap(), None);

    let scan = |prefix: &str, after: Option<&str>, limit| {
        keys(
            &store
                .kv_scan("ops", prefix.as_bytes(), after.map(str::as_bytes), limit)
                .unwrap(),
        )
    };
    assert_eq!(
        scan("", None, 100),
        ["a", "a/1", "a/2", "a/3", "ab/1", "b/1"]
    );
    assert_eq!(scan("a/", None, 100), ["a/1", "a/2", "a/3"]);
    assert_eq!(scan("a/", None, 2), ["a/1", "a/2"]);
    assert_eq!(scan("a/", Some("a/1"), 100), ["a/2", "a/3"]);
    assert_eq!(scan("a/", Some("a/15"), 1), ["a/2"]);
    assert!(scan("a/", Some("a/3"), 100).is_empty());
    assert!(scan("a/", Some("b"), 100).is_empty());
    // `after` before the prefix starts at the prefix.
    assert_eq!(scan("a/", Some("0"), 100), ["a/1", "a/2", "a/3"]);
    assert!(scan("a/", None, 0).is_empty());
    assert!(scan("c", None, 10).is_empty());
    let values = store.kv_scan("ops", b"b/", None, 10).unwrap();
    assert_eq!(values, vec![(b"b/1".to_vec(), b("v b/1"))]);

    // Deletes and overwrites, in order, in one call.
    store
        .kv_apply(
            "ops",
            &[
                KvOp::Delete(b"a/2".to_vec()),
                KvOp::Delete(b"missing".to_vec()),
                KvOp::Put(b"a/3".to_vec(), b("new")),
                KvOp::Put(b"x".to_vec(), b("1")),
                KvOp::Delete(b"x".to_vec()),
            ],
        )
        .unwrap();
    assert_eq!(scan("a/", None, 100), ["a/1", "a/3"]);
    assert_eq!(store.kv_get("ops", b"a/3").unwrap(), Some(b("new")));
    assert_eq!(store.kv_get("ops", b"x").unwrap(), None);
    // Binary keys.
    store
        .kv_apply("bin", &[KvOp::Put(vec![0, 0xFF, 1], b("bin"))])
        .unwrap();
    assert_eq!(store.kv_get("bin", &[0, 0xFF, 1]).unwrap(), Some(b("bin")));
    assert_eq!(store.kv_scan("bin", &[0], None, 5).unwrap().len(), 1);
}

fn concurrent_commits_one_winner_per_head<S: TestStore>(store: &S)
where
    for<'a> &'a S: BlockStore,
{
    const THREADS: usize = 4;
    const ROUNDS: u64 = 20;
    let repo = RepoKey::public(did("did:key:alice"));
    let other = RepoKey::collective(did("did:key:alice"), collective("c1"));
    let barrier = Barrier::new(THREADS);
    let wins: Vec<Vec<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (repo, other, barrier) = (&repo, &other, &barrier);
                s.spawn(move || {
                    let mut won = Vec::new();
                    for round in 0..ROUNDS {
                        // Everyone reads the head at the same point, then races.
                        barrier.wait();
                        let expected = store.head(repo).unwrap().map(|h| h.commit);
                        barrier.wait();
                        let (mut head, blocks) = fake_commit(repo, round * 100 + t as u64);
                        head.rev = rev(round * 100 + t as u64);
                        let op = put("app.x", &format!("r{round}-t{t}"));
                        match store.commit(repo, expected.as_ref(), &head, &blocks, &[op]) {
                            Ok(()) => won.push(round),
                            Err(CommitError::Conflict { .. }) => {}
                            Err(e) => panic!("{e}"),
                        }
                        // Commits to another repo never conflict with these.
                        let mine =
                            RepoKey::collective(other.did.clone(), collective(&format!("c{t}")));
                        advance(store, &mine, &[put("app.y", &format!("{round}"))]);
                    }
                    won
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut rounds: Vec<u64> = wins.into_iter().flatten().collect();
    rounds.sort();
    assert_eq!(rounds, (0..ROUNDS).collect::<Vec<_>>());
    assert_eq!(store.record_count(&repo).unwrap(), ROUNDS);
    for t in 0..THREADS {
        let mine = RepoKey::collective(other.did.clone(), collective(&format!("c{t}")));
        assert_eq!(store.record_count(&mine).unwrap(), ROUNDS);
    }
}

/// A real repo: commits built by `guild_repo::Repo` over a `Staged` view of the store and
/// persisted through `RepoStore::commit`, then read back through the index and the MST.
fn repo_commits_round_trip<S: TestStore>(store: &S)
where
    for<'a> &'a S: BlockStore,
{
    let (repo, key) = persist_real_commits(store);
    check_real_repo(store, &repo, &key);
}

fn text(title: &str) -> Ipld {
    guild_core::data::from_json(&serde_json::json!({
        "$type": "coop.guild.data.text",
        "title": title,
        "createdAt": "2026-01-01T00:00:00.000Z",
    }))
    .unwrap()
}

fn persist_real_commits<S: RepoStore>(store: &S) -> (RepoKey, Keypair) {
    let key = Keypair::from_secret_bytes(&[7; 32]);
    let repo = RepoKey::public(did(&key.did()));
    let collection = Nsid::parse("coop.guild.data.text").unwrap();
    let mut clock = guild_core::syntax::TidClock::new(3);
    let mut now = T0;
    let mut next_rev = || {
        now += 10;
        let tid = clock.next(now);
        store.set_last_tid(&tid).unwrap();
        tid
    };

    // First commit: a new repo with five records.
    let mut r = Repo::empty(Staged::new(store), key.did());
    let writes: Vec<Write> = (0..5)
        .map(|i| Write::Create {
            collection: collection.clone(),
            rkey: RecordKey::parse(&format!("rec{i}")).unwrap(),
            record: text(&format!("work {i}")),
        })
        .collect();
    let result = r.apply(&key, next_rev(), writes).unwrap();
    store
        .commit(
            &repo,
            None,
            &(&result.head).into(),
            &result.blocks,
            &IndexOp::from_record_ops(&result.ops).unwrap(),
        )
        .unwrap();
    r.store().clear();
    assert!(r.store().is_empty());

    // Second commit on a repo reopened from the store: update one, delete one, add one.
    let head = store.head(&repo).unwrap().unwrap();
    let mut r = Repo::open(Staged::new(store), head.commit).unwrap();
    let writes = vec![
        Write::Update {
            collection: collection.clone(),
            rkey: RecordKey::parse("rec1").unwrap(),
            record: text("work 1, revised"),
        },
        Write::Delete {
            collection: collection.clone(),
            rkey: RecordKey::parse("rec2").unwrap(),
        },
        Write::Create {
            collection: collection.clone(),
            rkey: RecordKey::parse("rec9").unwrap(),
            record: text("work 9"),
        },
    ];
    let result = r.apply(&key, next_rev(), writes).unwrap();
    store
        .commit(
            &repo,
            Some(&head.commit),
            &result.head.clone().into(),
            &result.blocks,
            &IndexOp::from_record_ops(&result.ops).unwrap(),
        )
        .unwrap();
    (repo, key)
}

fn check_real_repo<S: RepoStore>(store: &S, repo: &RepoKey, key: &Keypair)
where
    for<'a> &'a S: BlockStore,
{
    let head = store.head(repo).unwrap().unwrap();
    assert!(store.last_tid().unwrap().unwrap() >= head.rev);
    let listed = store
        .index_list(repo, "coop.guild.data.text", None, 100, false)
        .unwrap();
    assert_eq!(rkeys(&listed), ["rec0", "rec1", "rec3", "rec4", "rec9"]);
    assert_eq!(store.record_count(repo).unwrap(), 5);
    assert_eq!(
        store.collections(repo).unwrap(),
        vec!["coop.guild.data.text"]
    );

    // The MST at the stored head agrees with the index, record by record.
    let r = Repo::open(store, head.commit).unwrap();
    assert_eq!(r.did(), key.did());
    assert_eq!(r.head().map(RepoHead::from), Some(head));
    let from_mst = r.records().unwrap();
    assert_eq!(from_mst.len(), listed.len());
    for ((path, cid), (rkey, indexed)) in from_mst.iter().zip(&listed) {
        assert_eq!(path, &format!("coop.guild.data.text/{rkey}"));
        assert_eq!(cid, indexed);
        let bytes = store.get_block(cid).unwrap().unwrap();
        let record = guild_core::data::decode_record(&bytes).unwrap();
        let want = if rkey == "rec1" {
            text("work 1, revised")
        } else {
            text(&format!("work {}", &rkey[3..]))
        };
        assert_eq!(record, want);
    }
    // Every block of the repo is in the store.
    let mut blocks = 0;
    r.for_each_block(|_, _| {
        blocks += 1;
        Ok(())
    })
    .unwrap();
    assert!(blocks >= 7);
}

// ---------------------------------------------------------------------------------------
// Sled only.

fn open(dir: &tempfile::TempDir) -> SledStore {
    SledStore::open(dir.path()).unwrap()
}

#[test]
fn sled_everything_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let alice = RepoKey::public(did("did:key:alice"));
    let bob = RepoKey::collective(did("did:key:bob"), collective("1"));
    let (h_alice, h_bob, real, key) = {
        let store = open(&dir);
        advance(&store, &alice, &[put("app.x", "a"), put("app.y", "b")]);
        let h_alice = advance(&store, &alice, &[put("app.x", "c"), del("app.y", "b")]);
        advance(&store, &bob, &[put("app.x", "z")]);
        let mut handle = &store;
        handle.put_blocks(vec![block("loose")]).unwrap();
        store
            .kv_apply("ops", &[KvOp::Put(b"k".to_vec(), Bytes::from_static(b"v"))])
            .unwrap();
        let (real, key) = persist_real_commits(&store);
        store.set_last_tid(&rev(1_000_000_000_000)).unwrap();
        // A commit flushes everything written before it, the TID included.
        advance(&store, &bob, &[]);
        (h_alice, store.head(&bob).unwrap().unwrap(), real, key)
    };
    assert_ne!(h_bob, fake_commit(&bob, 0).0);

    let store = open(&dir);
    assert_eq!(store.head(&alice).unwrap(), Some(h_alice));
    assert_eq!(store.head(&bob).unwrap(), Some(h_bob));
    assert_eq!(store.repos().unwrap().len(), 3);
    assert_eq!(
        rkeys(&store.index_list(&alice, "app.x", None, 10, false).unwrap()),
        ["a", "c"]
    );
    assert_eq!(store.collections(&alice).unwrap(), vec!["app.x"]);
    assert_eq!(store.record_count(&alice).unwrap(), 2);
    assert_eq!(store.record_count(&bob).unwrap(), 1);
    assert!(store.has_block(&block("loose").0).unwrap());
    assert_eq!(
        store.kv_get("ops", b"k").unwrap(),
        Some(Bytes::from_static(b"v"))
    );
    assert_eq!(store.last_tid().unwrap(), Some(rev(1_000_000_000_000)));
    check_real_repo(&store, &real, &key);
    // And the store goes on from there.
    let h = advance(&store, &alice, &[put("app.x", "d")]);
    drop(store);
    assert_eq!(open(&dir).head(&alice).unwrap(), Some(h));
}

#[test]
fn sled_clones_share_one_database() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let clone = store.clone();
    let repo = RepoKey::public(did("did:x:a"));
    advance(&clone, &repo, &[put("app.x", "a")]);
    assert_eq!(store.record_count(&repo).unwrap(), 1);
    assert_eq!(store.path(), dir.path());
    // A second open of the same directory while it is in use fails, saying where and why.
    let err = SledStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, OpenError::Locked { .. }), "{err}");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
    assert!(err.to_string().contains(&dir.path().display().to_string()));
}

#[test]
fn memory_clones_share_one_store() {
    let store = MemoryStore::new();
    let clone = store.clone();
    let repo = RepoKey::public(did("did:x:a"));
    advance(&clone, &repo, &[put("app.x", "a")]);
    assert_eq!(store.record_count(&repo).unwrap(), 1);
}

/// Builds a store with one repo and returns its head; the store is closed on return.
fn store_with_one_repo(dir: &tempfile::TempDir, repo: &RepoKey) -> RepoHead {
    let store = open(dir);
    advance(&store, repo, &[put("app.x", "a")])
}

fn raw_tree(dir: &tempfile::TempDir, name: &str, f: impl FnOnce(&::sled::Tree)) {
    // A store dropped a moment ago may still hold sled's file lock while its background
    // threads wind down (`SledStore::open` retries the same way): poll with a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let db = loop {
        match ::sled::open(dir.path()) {
            Ok(db) => break db,
            Err(::sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("opening {} raw: {e}", dir.path().display()),
        }
    };
    f(&db.open_tree(name).unwrap());
    db.flush().unwrap();
}

#[test]
fn sled_open_reports_a_missing_commit_block() {
    let dir = tempfile::tempdir().unwrap();
    let repo = RepoKey::collective(did("did:key:alice"), collective("7"));
    let head = store_with_one_repo(&dir, &repo);
    raw_tree(&dir, "blocks", |t| {
        t.remove(head.commit.to_bytes()).unwrap().unwrap();
    });
    let err = SledStore::open(dir.path()).unwrap_err();
    match &err {
        OpenError::MissingBlock {
            repo: r, what, cid, ..
        } => {
            assert_eq!(**r, repo);
            assert_eq!(*what, "commit");
            assert_eq!(cid, &head.commit);
        }
        other => panic!("expected a missing block, got {other:?}"),
    }
    let msg = err.to_string();
    for part in [
        "did:key:alice",
        &collective("7").to_string(),
        "commit",
        &head.commit.to_string(),
    ] {
        assert!(msg.contains(part), "{msg:?} lacks {part:?}");
    }
}

#[test]
fn sled_open_reports_a_missing_root_block() {
    let dir = tempfile::tempdir().unwrap();
    let repo = RepoKey::public(did("did:key:bob"));
    let head = store_with_one_repo(&dir, &repo);
    raw_tree(&dir, "blocks", |t| {
        t.remove(head.data.to_bytes()).unwrap().unwrap();
    });
    match SledStore::open(dir.path()).unwrap_err() {
        OpenError::MissingBlock {
            repo: r, what, cid, ..
        } => {
            assert_eq!(*r, repo);
            assert_eq!(what, "MST root");
            assert_eq!(cid, head.data);
        }
        other => panic!("expected a missing block, got {other:?}"),
    }
}

#[test]
fn sled_open_reports_a_corrupt_head_record() {
    let dir = tempfile::tempdir().unwrap();
    let repo = RepoKey::public(did("did:key:carol"));
    store_with_one_repo(&dir, &repo);
    raw_tree(&dir, "heads", |t| {
        let (k, v) = t.iter().next().unwrap().unwrap();
        t.insert(k, &v[..v.len() - 3]).unwrap();
    });
    let err = SledStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, OpenError::Corrupt { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("did:key:carol") && msg.contains("corrupt"),
        "{msg}"
    );
}

#[test]
fn sled_keeps_the_repo_key_bytes_and_refuses_a_corrupt_one() {
    let dir = tempfile::tempdir().unwrap();
    let public = RepoKey::public(did("did:key:dave"));
    let space = RepoKey::new(did("did:key:dave"), Space::Collective(collective("9")));
    {
        let store = open(&dir);
        advance(&store, &public, &[put("app.x", "a")]);
        advance(&store, &space, &[put("app.x", "b")]);
    }
    // The keys are the DID and space strings, each ended by 0x00 0x01 (schema version 1).
    let mut keys = Vec::new();
    raw_tree(&dir, "heads", |t| {
        keys = t.iter().keys().map(|k| k.unwrap().to_vec()).collect();
    });
    let mut want = vec![
        b"did:key:dave\0\x01public\0\x01".to_vec(),
        format!("did:key:dave\0\x01{}\0\x01", collective("9")).into_bytes(),
    ];
    want.sort();
    assert_eq!(keys, want);
    // A stored key whose space is not a space is a typed error on open, not a panic.
    raw_tree(&dir, "heads", |t| {
        let v = t.get(&keys[0]).unwrap().unwrap();
        t.insert(&b"did:key:dave\0\x01collective-1\0\x01"[..], v)
            .unwrap();
    });
    let err = SledStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, OpenError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("collective-1"), "{err}");
}

#[test]
fn sled_open_checks_the_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(&dir));
    raw_tree(&dir, "meta", |t| {
        assert_eq!(
            t.get("schema_version").unwrap().unwrap().as_ref(),
            guild_store::SCHEMA_VERSION.to_be_bytes()
        );
        t.insert("schema_version", &99u32.to_be_bytes()).unwrap();
    });
    let err = SledStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, OpenError::SchemaVersion { .. }), "{err:?}");
    assert!(err.to_string().contains("99"), "{err}");
}

#[test]
fn sled_put_blocks_through_a_repo_is_durable() {
    // `Repo` over `&SledStore` directly (each `put_blocks` a batch and a flush).
    let dir = tempfile::tempdir().unwrap();
    let key = Keypair::from_secret_bytes(&[9; 32]);
    let commit = {
        let store = open(&dir);
        let mut r = Repo::empty(&store, key.did());
        let result = r
            .apply(
                &key,
                rev(1),
                vec![Write::Create {
                    collection: Nsid::parse("coop.guild.data.text").unwrap(),
                    rkey: RecordKey::parse("one").unwrap(),
                    record: text("one"),
                }],
            )
            .unwrap();
        result.head.commit
    };
    let store = open(&dir);
    let r = Repo::open(&store, commit).unwrap();
    assert_eq!(r.records().unwrap().len(), 1);
}

#[test]
fn index_ops_from_record_ops() {
    let cid = record_cid("a.b.c", "k");
    let op = |action, cid, path: &str| guild_repo::RecordOp {
        path: path.into(),
        action,
        cid,
        prev: None,
    };
    use guild_repo::Action;
    assert_eq!(
        IndexOp::from_record_op(&op(Action::Create, Some(cid), "a.b.c/k")).unwrap(),
        put("a.b.c", "k")
    );
    assert_eq!(
        IndexOp::from_record_op(&op(Action::Update, Some(cid), "a.b.c/k")).unwrap(),
        put("a.b.c", "k")
    );
    assert_eq!(
        IndexOp::from_record_op(&op(Action::Delete, None, "a.b.c/k")).unwrap(),
        del("a.b.c", "k")
    );
    assert!(IndexOp::from_record_op(&op(Action::Create, None, "a.b.c/k")).is_err());
    assert!(IndexOp::from_record_op(&op(Action::Create, Some(cid), "nokey")).is_err());
}

/// Governance ops: appended in order, each once, per collective; listed back in order.
fn gov_ops_append_in_order_once<S: TestStore + guild_gov::OpStore>(store: &S)
where
    for<'a> &'a S: BlockStore,
{
    let (c1, c2) = (cid_for_raw(b"collective 1"), cid_for_raw(b"collective 2"));
    assert!(store.stored_ops(&c1).unwrap().is_empty());
    let ops: Vec<(Cid, Vec<u8>)> = (0..5u8).map(|i| (cid_for_raw(&[i]), vec![i; 3])).collect();
    let refs: Vec<(Cid, &[u8])> = ops.iter().map(|(c, b)| (*c, b.as_slice())).collect();
    store.append_ops(&c1, &refs[..3]).unwrap();
    // Re-appending stored ops (and a duplicate within a batch) writes each once.
    store
        .append_ops(&c1, &[refs[1], refs[3], refs[3], refs[4]])
        .unwrap();
    store.append_ops(&c2, &refs[4..]).unwrap();
    let want: Vec<Vec<u8>> = ops.iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(store.stored_ops(&c1).unwrap(), want);
    assert_eq!(store.stored_ops(&c2).unwrap(), vec![want[4].clone()]);
    // Counted, and read a page at a time, as `Log::open` reads them.
    assert_eq!(store.stored_op_count(&c1).unwrap(), 5);
    assert_eq!(store.stored_op_count(&c2).unwrap(), 1);
    assert_eq!(store.stored_op_count(&cid_for_raw(b"none")).unwrap(), 0);
    for (from, max) in [(0, 2), (2, 2), (4, 2), (5, 2), (9, 2), (0, 9), (1, 3)] {
        let end = (from + max).min(5);
        let expected = want.get(from.min(5)..end).unwrap_or_default().to_vec();
        assert_eq!(
            store.stored_ops_page(&c1, from, max).unwrap(),
            expected,
            "{from}+{max}"
        );
    }
    assert_eq!(
        store.stored_ops_page(&c2, 0, 4).unwrap(),
        vec![want[4].clone()]
    );
    let mut cs = store.collectives().unwrap();
    cs.sort();
    let mut expected = vec![c1, c2];
    expected.sort();
    assert_eq!(cs, expected);
}

/// A governance log saved to sled reopens with the same heads and state.
#[test]
fn sled_gov_log_persists_across_reopen() {
    use guild_gov::{Inserted, Log, Op, OpKind};
    let dir = tempfile::tempdir().unwrap();
    let founder = Keypair::from_secret_bytes(&[1; 32]);
    let at = guild_core::syntax::Datetime::from_unix_micros(T0 as i64);
    let genesis = Op::sign(OpKind::Charter, None, charter(), &founder, &[], &at).unwrap();
    let id = *genesis.id();
    let mut log = Log::new(id);
    assert_eq!(log.insert(genesis.clone(), 0), Inserted::Applied);
    let leave_prev = [id];
    let invite = Op::sign(
        OpKind::Invite,
        Some(&id),
        [(
            "secretHash".to_owned(),
            Ipld::Bytes(guild_core::cids::sha256(b"secret").to_vec()),
        )]
        .into(),
        &founder,
        &leave_prev,
        &at,
    )
    .unwrap();
    assert_eq!(log.insert(invite, 0), Inserted::Applied);
    {
        let store = open(&dir);
        assert_eq!(log.save(&store).unwrap(), 2);
        assert_eq!(log.save(&store).unwrap(), 0);
    }
    let store = open(&dir);
    let back = Log::open(id, &store).unwrap();
    assert_eq!(back.heads(), log.heads());
    assert_eq!(back.state(), log.state());
    assert!(back.unsaved().is_empty());
}

/// Ops for the op-file tests: `n` ops of varied sizes, each with its bytes' CID as its id (as
/// a log saves them).
fn numbered_ops(n: usize) -> Vec<(Cid, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let bytes = format!("op {i} {}", "x".repeat(i % 700)).into_bytes();
            (guild_core::cids::cid_for_cbor(&bytes), bytes)
        })
        .collect()
}

fn refs(ops: &[(Cid, Vec<u8>)]) -> Vec<(Cid, &[u8])> {
    ops.iter().map(|(c, b)| (*c, b.as_slice())).collect()
}

/// Pages that start and end on either side of the stride of 256 ops the store keeps offsets
/// at, and lookups by id, across a reopen.
#[test]
fn sled_gov_ops_pages_cross_strides_and_survive_reopen() {
    use guild_gov::OpStore;
    let dir = tempfile::tempdir().unwrap();
    let c = collective("ops");
    let ops = numbered_ops(700);
    {
        let store = open(&dir);
        // Appended in batches of uneven sizes.
        for chunk in refs(&ops).chunks(97) {
            store.append_ops(&c, chunk).unwrap();
        }
    }
    let store = open(&dir);
    let want: Vec<Vec<u8>> = ops.iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(store.stored_op_count(&c).unwrap(), 700);
    assert_eq!(store.stored_ops(&c).unwrap(), want);
    for (from, max) in [
        (0, 256),
        (255, 2),
        (256, 1),
        (257, 300),
        (511, 2),
        (600, 200),
        (699, 5),
        (700, 1),
    ] {
        let end = (from + max).min(700);
        assert_eq!(
            store.stored_ops_page(&c, from, max).unwrap(),
            want[from..end],
            "{from}+{max}"
        );
    }
    for i in [0, 255, 256, 699] {
        assert_eq!(
            store.stored_op(&c, &ops[i].0).unwrap().as_deref(),
            Some(&ops[i].1[..])
        );
    }
    assert_eq!(store.stored_op(&c, &cid_for_raw(b"absent")).unwrap(), None);
    assert_eq!(store.collectives().unwrap(), vec![c]);
}

/// Records written past the committed end (an append whose index batch never landed) are
/// not ops: a reopened store reads exactly the committed ones and the next append writes
/// over the stray bytes.
#[test]
fn sled_gov_ops_ignore_an_uncommitted_tail() {
    use guild_gov::OpStore;
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let c = collective("tail");
    let ops = numbered_ops(10);
    {
        let store = open(&dir);
        store.append_ops(&c, &refs(&ops[..5])).unwrap();
    }
    let file = dir.path().join("gov-ops").join(format!("{c}.ops"));
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap()
        .write_all(&[0xAB; 333])
        .unwrap();
    let store = open(&dir);
    let want: Vec<Vec<u8>> = ops.iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(store.stored_ops(&c).unwrap(), want[..5]);
    store.append_ops(&c, &refs(&ops[5..])).unwrap();
    assert_eq!(store.stored_ops(&c).unwrap(), want);
    assert!(std::fs::metadata(&file).unwrap().len() > len);
}

/// A record whose bytes changed on disk is reported as a corrupt store, not returned.
#[test]
fn sled_gov_ops_refuse_a_damaged_record() {
    use guild_gov::OpStore;
    let dir = tempfile::tempdir().unwrap();
    let c = collective("damaged");
    let ops = numbered_ops(3);
    {
        let store = open(&dir);
        store.append_ops(&c, &refs(&ops)).unwrap();
    }
    let file = dir.path().join("gov-ops").join(format!("{c}.ops"));
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x01;
    std::fs::write(&file, bytes).unwrap();
    let store = open(&dir);
    let err = store.stored_ops(&c).unwrap_err().to_string();
    assert!(err.contains("CRC"), "{err}");
    let err = store.stored_op(&c, &ops[2].0).unwrap_err().to_string();
    assert!(err.contains("CRC"), "{err}");
    assert_eq!(
        store.stored_op(&c, &ops[0].0).unwrap().as_deref(),
        Some(&ops[0].1[..])
    );
}

/// Any one byte of an op file changed, or the file cut short anywhere: reads give the
/// stored ops or an error, never other bytes and never a panic.
#[test]
fn sled_gov_ops_never_read_a_changed_or_cut_file_as_other_ops() {
    use guild_gov::OpStore;
    let dir = tempfile::tempdir().unwrap();
    let c = collective("every byte");
    let ops = numbered_ops(4);
    let store = open(&dir);
    store.append_ops(&c, &refs(&ops)).unwrap();
    let want: Vec<Vec<u8>> = ops.iter().map(|(_, b)| b.clone()).collect();
    let file = dir.path().join("gov-ops").join(format!("{c}.ops"));
    let good = std::fs::read(&file).unwrap();
    let mut errors = 0;
    for at in 0..good.len() {
        for changed in [
            {
                let mut b = good.clone();
                b[at] ^= 0x5A;
                b
            },
            good[..at].to_vec(),
        ] {
            std::fs::write(&file, &changed).unwrap();
            match store.stored_ops(&c) {
                Ok(read) => assert_eq!(read, want, "byte {at}"),
                Err(_) => errors += 1,
            }
            for (id, bytes) in &ops {
                match store.stored_op(&c, id) {
                    Ok(read) => assert_eq!(read.as_deref(), Some(&bytes[..]), "byte {at}"),
                    Err(_) => errors += 1,
                }
            }
        }
    }
    // Past the magic (which is checked when the file is first opened), every change and
    // every cut is caught by the full read.
    assert!(
        errors >= 2 * (good.len() - 8),
        "{errors} errors for {} bytes",
        good.len()
    );
    std::fs::write(&file, &good).unwrap();
    assert_eq!(store.stored_ops(&c).unwrap(), want);
}

/// A store whose ops are sled values (the layout before op files) is migrated when opened:
/// the same ops in the same order, found by id (one of them under an id that is not its
/// bytes' CID), none left as sled values, and appends go on after them.
#[test]
fn sled_gov_ops_of_the_old_layout_are_migrated_on_open() {
    use guild_gov::OpStore;
    let dir = tempfile::tempdir().unwrap();
    drop(open(&dir));
    let c = collective("old");
    let mut ops = numbered_ops(5000);
    ops[4321].0 = cid_for_raw(b"an id that is not the bytes' CID");
    let mut ck = vec![c.to_bytes().len() as u8];
    ck.extend_from_slice(&c.to_bytes());
    raw_tree(&dir, "kv:gov", |t| {
        for (seq, (id, bytes)) in ops.iter().enumerate() {
            let seq = (seq as u64).to_be_bytes();
            t.insert([&b"o"[..], &ck, &seq].concat(), bytes.as_slice())
                .unwrap();
            t.insert([&b"i"[..], &ck, &id.to_bytes()].concat(), &seq)
                .unwrap();
        }
        t.insert([&b"n"[..], &ck].concat(), &5000u64.to_be_bytes())
            .unwrap();
    });
    let store = open(&dir);
    let want: Vec<Vec<u8>> = ops.iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(store.stored_op_count(&c).unwrap(), 5000);
    assert_eq!(store.stored_ops(&c).unwrap(), want);
    for i in [0, 4095, 4096, 4321, 4999] {
        assert_eq!(
            store.stored_op(&c, &ops[i].0).unwrap().as_deref(),
            Some(&ops[i].1[..]),
            "{i}"
        );
    }
    assert!(store.kv_scan("gov", b"o", None, 1).unwrap().is_empty());
    assert!(store.kv_scan("gov", b"i", None, 1).unwrap().is_empty());
    let more = numbered_ops(5001);
    store.append_ops(&c, &refs(&more[5000..])).unwrap();
    // Re-appending a migrated op stores nothing.
    store.append_ops(&c, &refs(&ops[..1])).unwrap();
    assert_eq!(store.stored_op_count(&c).unwrap(), 5001);
    drop(store);
    let store = open(&dir);
    assert_eq!(
        store.stored_ops_page(&c, 4999, 9).unwrap(),
        vec![want[4999].clone(), more[5000].1.clone()]
    );
}

fn charter() -> std::collections::BTreeMap<String, Ipld> {
    let json = serde_json::json!({
        "name": "Store test",
        "admission": {"policy": "invite-only", "approval": "steward"},
        "stewardship": {"seats": 1, "termDays": 365, "electionMethod": "approval"},
        "quorum": {"amendment": 5000, "turnout": 0, "countersignatures": 1},
        "acceptedLexicons": ["coop.guild.data.text"],
        "licenceTemplates": [],
        "payoutPolicy": {"period": "monthly", "method": "equal"}
    });
    match guild_core::data::from_json(&json).unwrap() {
        Ipld::Map(m) => m,
        _ => unreachable!(),
    }
}
