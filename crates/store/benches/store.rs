//! Store benchmarks: one durable single-record commit (4 blocks of 150 to 450 bytes, one index
//! op, the new head, then a flush) on sled and in memory; and the same through the real path,
//! `guild_repo::Repo::apply` over `Staged` then `RepoStore::commit`, into a 1 000-record repo.
//!
//! Run: `cargo bench -p guild-store -- --warm-up-time 1 --measurement-time 5`.
//!
//! With `GUILD_BENCH_OPEN_FILE=<history file>` (written by the gov bench's
//! `GUILD_BENCH_REPLAY_WRITE`, e.g. in the order a node accepted the ops with
//! `GUILD_BENCH_REPLAY_ORDER=accepted`): only a node's restart path, timed. The ops are
//! appended to a sled store once (in batches of 10 000, as a node saves them; kept in
//! `GUILD_BENCH_OPEN_DIR` if set, so that later runs reuse it), then each run opens the store
//! in a fresh handle and times `Log::open_shared` (as a node opens its logs: it reads the store
//! a page at a time while it loads, and keeps only the newest ops in memory), prints the
//! process's RSS before and with the log, then times the reads alone (`stored_ops`),
//! `GUILD_BENCH_OPEN_RUNS` times (default 1). The open comes first in each run, so that its
//! memory is not memory the reads freed.
//!
//! `import_commits` (issue 18's `guild import` floor): 100 commits of 2 000 small records
//! each through `SledStore::commit` (per record a ~110-byte record block and an index entry,
//! plus ~550 MST-node-sized blocks per commit), durable, timed once; `GUILD_BENCH_IMPORT_RUNS`
//! runs (default 1). This is the sled share of `guild import`, without HTTP, JSON or the MST.

use std::cell::RefCell;
use std::time::Duration;

/// The allocator the `guild` binary uses, so that these figures are the product's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use guild_core::Keypair;
use guild_core::cids::cid_for_raw;
use guild_core::syntax::{Nsid, RecordKey, Tid};
use guild_repo::{Repo, Write};
use guild_store::{
    Bytes, Cid, IndexOp, MemoryStore, RepoHead, RepoKey, RepoStore, SledStore, Staged,
};

const T0: u64 = 1_700_000_000_000_000;

/// The blocks, index op and head of the `n`th commit: a ~200-byte record, two MST nodes
/// (~450 and ~300 bytes) and a ~150-byte commit, as a one-record commit into a small repo has.
fn one_commit(n: u64) -> (RepoHead, Vec<(Cid, Bytes)>, IndexOp) {
    let make = |tag: &str, len: usize| {
        let mut bytes = format!("{tag} {n} ").into_bytes();
        bytes.resize(len, b'x');
        let bytes = Bytes::from(bytes);
        (cid_for_raw(&bytes), bytes)
    };
    let blocks = vec![
        make("record", 200),
        make("leaf", 450),
        make("root", 300),
        make("commit", 150),
    ];
    let rev = Tid::from_parts(T0 + n, 1);
    let op = IndexOp::Put {
        collection: "coop.guild.data.text".into(),
        rkey: rev.to_string(),
        cid: blocks[0].0,
    };
    let head = RepoHead {
        commit: blocks[3].0,
        rev,
        data: blocks[2].0,
    };
    (head, blocks, op)
}

/// Commits one record per iteration on top of the previous iteration's head.
fn bench_commits<S: RepoStore>(c: &mut Criterion, name: &str, store: &S) {
    let repo = RepoKey::public(guild_store::Did::parse("did:key:bench").unwrap());
    let last: RefCell<Option<Cid>> = RefCell::new(None);
    let mut n = 0u64;
    c.bench_function(name, |b| {
        b.iter_batched(
            || {
                n += 1;
                one_commit(n)
            },
            |(head, blocks, op)| {
                let expected = *last.borrow();
                store
                    .commit(&repo, expected.as_ref(), &head, &blocks, &[op])
                    .unwrap();
                *last.borrow_mut() = Some(head.commit);
            },
            BatchSize::SmallInput,
        )
    });
}

fn raw_commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let sled = SledStore::open(dir.path()).unwrap();
    bench_commits(c, "sled_durable_commit_1_record", &sled);
    bench_commits(c, "memory_commit_1_record", &MemoryStore::new());
}

/// A node saving one accepted governance op (the gossip path: `Log::save` after each op),
/// durably: on sled its record is written and synced, then its index committed.
fn gov_append_one(c: &mut Criterion) {
    use guild_gov::OpStore;
    let dir = tempfile::tempdir().unwrap();
    let sled = SledStore::open(dir.path()).unwrap();
    let memory = MemoryStore::new();
    let collective = cid_for_raw(b"bench collective");
    for (name, store) in [
        (
            "sled_gov_append_1_op",
            &sled as &dyn OpStore<Error = guild_store::StoreError>,
        ),
        ("memory_gov_append_1_op", &memory),
    ] {
        let mut n = 0u64;
        c.bench_function(name, |b| {
            b.iter_batched(
                || {
                    n += 1;
                    let bytes = format!("{n:0500}").into_bytes();
                    (guild_core::cids::cid_for_cbor(&bytes), bytes)
                },
                |(id, bytes)| store.append_ops(&collective, &[(id, &bytes)]).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
}

/// The node's write path: `Repo::apply` (encode, MST update, sign) over a `Staged` view,
/// then `RepoStore::commit`, into a repo of 1 000 records.
fn bench_repo_path<S: RepoStore>(c: &mut Criterion, name: &str, store: &S) {
    let key = Keypair::from_secret_bytes(&[3; 32]);
    let repo_key = RepoKey::public(guild_store::Did::parse(&key.did()).unwrap());
    let collection = Nsid::parse("coop.guild.data.text").unwrap();
    let record = |i: u64| {
        guild_core::data::from_json(&serde_json::json!({
            "$type": "coop.guild.data.text",
            "title": format!("work {i}"),
            "body": "lorem ipsum ".repeat(12),
            "createdAt": "2026-01-01T00:00:00.000Z",
        }))
        .unwrap()
    };
    let write = |i: u64| Write::Create {
        collection: collection.clone(),
        rkey: RecordKey::parse(Tid::from_parts(T0 + i, 2).as_str()).unwrap(),
        record: record(i),
    };
    let mut repo = Repo::empty(Staged::new(store), key.did());
    let first = repo
        .apply(&key, Tid::from_parts(T0, 1), (0..1000).map(write).collect())
        .unwrap();
    store
        .commit(
            &repo_key,
            None,
            &(&first.head).into(),
            &first.blocks,
            &IndexOp::from_record_ops(&first.ops).unwrap(),
        )
        .unwrap();
    repo.store().clear();
    let mut n = 1000u64;
    c.bench_function(name, |b| {
        b.iter(|| {
            n += 1;
            let expected = repo.head().map(|h| h.commit);
            let result = repo
                .apply(&key, Tid::from_parts(T0 + n, 1), vec![write(n)])
                .unwrap();
            store
                .commit(
                    &repo_key,
                    expected.as_ref(),
                    &(&result.head).into(),
                    &result.blocks,
                    &IndexOp::from_record_ops(&result.ops).unwrap(),
                )
                .unwrap();
            repo.store().clear();
        })
    });
}

fn repo_path(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let sled = SledStore::open(dir.path()).unwrap();
    bench_repo_path(c, "sled_repo_apply_and_commit_1_record", &sled);
    bench_repo_path(
        c,
        "memory_repo_apply_and_commit_1_record",
        &MemoryStore::new(),
    );
}

/// Appends the ops of a history file to an empty store, as a node saves them; returns the
/// collective and the count.
fn store_history(store: &SledStore, file: &std::ffi::OsStr) -> (Cid, usize) {
    use guild_gov::OpStore;
    let bytes = std::fs::read(file).expect("the history file");
    let mut ops: Vec<&[u8]> = Vec::new();
    let mut rest = bytes.as_slice();
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let (op, tail) = tail.split_at(u32::from_le_bytes(*len) as usize);
        ops.push(op);
        rest = tail;
    }
    // The genesis charter is the first op accepted; its id is the collective's.
    let collective = guild_core::cids::cid_for_cbor(ops[0]);
    let t0 = std::time::Instant::now();
    for batch in ops.chunks(10_000) {
        let batch: Vec<(Cid, &[u8])> = batch
            .iter()
            .map(|op| (guild_core::cids::cid_for_cbor(op), *op))
            .collect();
        store.append_ops(&collective, &batch).expect("append");
    }
    eprintln!(
        "open_log: stored {} ops in {:.1} s",
        ops.len(),
        t0.elapsed().as_secs_f64()
    );
    (collective, ops.len())
}

/// The restart path on a large stored log (see the module's doc); nothing without
/// `GUILD_BENCH_OPEN_FILE`.
fn open_log(_: &mut Criterion) {
    use guild_gov::{Log, OpStore};
    use std::time::Instant;
    let Some(file) = std::env::var_os("GUILD_BENCH_OPEN_FILE") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = std::env::var_os("GUILD_BENCH_OPEN_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    // A store an earlier run left in `GUILD_BENCH_OPEN_DIR` is used as it is, without reading
    // the history file, so that the first run is a restart in a fresh process.
    let (collective, n) = {
        let store = SledStore::open(&dir).expect("sled store");
        let kept = match store.collectives().expect("collectives")[..] {
            [collective] => Some((
                collective,
                store.stored_op_count(&collective).expect("count"),
            )),
            _ => None,
        };
        match kept {
            Some(kept) => kept,
            None => store_history(&store, &file),
        }
    };
    let runs: usize = std::env::var("GUILD_BENCH_OPEN_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    // The store's page cache, as the node's `[store] cache_mib` sets it.
    let cache_mib: u64 = std::env::var("GUILD_BENCH_CACHE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(guild_store::DEFAULT_CACHE_BYTES / (1024 * 1024));
    eprintln!("open_log: store page cache {cache_mib} MiB");
    for run in 0..runs.max(1) {
        let t0 = Instant::now();
        let store = std::sync::Arc::new(
            SledStore::open_with_cache(&dir, cache_mib * 1024 * 1024).expect("sled store"),
        );
        let opened = t0.elapsed();
        let rss_before = rss_mib();
        let anon_before = status_mib("RssAnon:");
        let t1 = Instant::now();
        // As a node opens its logs: through its verify cache, reading stored ops back from
        // the store rather than keeping them in memory.
        let cache = guild_gov::VerifyCache::default();
        let log = Log::open_shared(collective, &store, &cache).expect("log");
        let took = t1.elapsed();
        assert_eq!(log.len(), n, "every stored op enters the log");
        eprintln!(
            "open_log run {run}: RSS {rss_before} MiB before Log::open ({anon_before} MiB \
             anonymous), {} MiB with the log ({} MiB anonymous)",
            rss_mib(),
            status_mib("RssAnon:")
        );
        // What a copy of the log costs (`Engine::log` hands its callers one).
        let t3 = Instant::now();
        let copy = log.clone();
        let copied = t3.elapsed();
        eprintln!(
            "open_log run {run}: a copy of the log {:.1} ms; RSS with it {} MiB",
            copied.as_secs_f64() * 1000.0,
            rss_mib()
        );
        drop(copy);
        drop(log);
        // `GUILD_BENCH_OPEN_READS=0` skips the reads alone (whose ~1 GB would be a heap
        // profile's peak).
        if std::env::var("GUILD_BENCH_OPEN_READS").is_ok_and(|v| v == "0") {
            eprintln!(
                "open_log run {run}: sled open {:.2} s; Log::open (reading and loading) {:.2} s",
                opened.as_secs_f64(),
                took.as_secs_f64()
            );
            continue;
        }
        let t2 = Instant::now();
        let stored = store.stored_ops(&collective).expect("stored ops");
        let read = t2.elapsed();
        assert_eq!(stored.len(), n);
        drop(stored);
        eprintln!(
            "open_log run {run}: sled open {:.2} s; Log::open (reading and loading) {:.2} s; \
             reading the {n} ops alone {:.2} s",
            opened.as_secs_f64(),
            took.as_secs_f64(),
            read.as_secs_f64()
        );
    }
}

/// This process's resident memory, in MiB (0 where `/proc` is not there).
fn rss_mib() -> u64 {
    status_mib("VmRSS:")
}

/// A line of this process's `/proc/self/status`, in MiB (0 where it is not there).
fn status_mib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}

/// The store's share of a bulk import (see the module's doc).
fn import_commits(_: &mut Criterion) {
    let runs: usize = std::env::var("GUILD_BENCH_IMPORT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    const PER_COMMIT: u64 = 2_000;
    const COMMITS: u64 = 100;
    for run in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let repo = RepoKey::public(guild_store::Did::parse("did:key:bench").unwrap());
        let mut prev: Option<Cid> = None;
        let block = |tag: &str, n: u64, len: usize| {
            let mut bytes = format!("{tag} {n} ").into_bytes();
            bytes.resize(len, b'x');
            let bytes = Bytes::from(bytes);
            (cid_for_raw(&bytes), bytes)
        };
        let t = std::time::Instant::now();
        for c in 0..COMMITS {
            let mut blocks = Vec::new();
            let mut index = Vec::new();
            for i in c * PER_COMMIT..(c + 1) * PER_COMMIT {
                let (cid, bytes) = block("record", i, 110);
                index.push(IndexOp::Put {
                    collection: "coop.guild.data.text".into(),
                    rkey: Tid::from_parts(T0 + i, 1).to_string(),
                    cid,
                });
                blocks.push((cid, bytes));
            }
            for i in 0..PER_COMMIT * 27 / 100 {
                blocks.push(block("mst", c * PER_COMMIT + i, 400));
            }
            let commit = block("commit", c, 150);
            blocks.push(commit.clone());
            let head = RepoHead {
                commit: commit.0,
                rev: Tid::from_parts(T0 + c, 2),
                data: blocks[blocks.len() - 2].0,
            };
            store
                .commit(&repo, prev.as_ref(), &head, &blocks, &index)
                .unwrap();
            prev = Some(head.commit);
        }
        let took = t.elapsed().as_secs_f64();
        let records = (PER_COMMIT * COMMITS) as f64;
        eprintln!(
            "import_commits run {run}: {records} records in {COMMITS} commits: {took:.2} s, \
             {:.0} records/s",
            records / took
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = raw_commit, gov_append_one, repo_path, open_log, import_commits
}
criterion_main!(benches);
