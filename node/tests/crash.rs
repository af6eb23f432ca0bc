//! The crash test: a child `guild node` receives writes (createRecord and applyWrites over HTTP
//! from several client threads, and `guild import` batches) and is killed with SIGKILL at a
//! random moment, many times. After each kill:
//!
//! - the store reopens cleanly in this process (`SledStore::open` checks every head), and its
//!   record index agrees exactly with the repo's MST;
//! - the node restarts on the same data directory;
//! - every write it acknowledged (an HTTP 200 received before the kill) is present with the
//!   same CID, and every `guild import` that exited 0 is wholly present;
//! - `guild export` then `guild repo verify` pass on the export;
//! - the head did not go back, and the revisions of new commits are after every revision
//!   acknowledged before the crash (the TID clock resumes).
//!
//! `GUILD_CRASH_ROUNDS` (default 20) sets the number of kills, `GUILD_CRASH_SEED` the seed of
//! the random delays, batch sizes and kill moments (printed, so a failure replays).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use guild_core::syntax::Tid;
use guild_store::{RepoKey, RepoStore, SledStore};
use serde_json::{Value, json};

const TEXT: &str = "coop.guild.data.text";
/// A collection with no lexicon, for the HTTP writers (kept apart from the imports, whose
/// resume step lists their collection).
const NOTE: &str = "com.example.crash.note";
const IMPORT_RECORDS: usize = 300;
const WRITER_THREADS: usize = 3;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One acknowledged write: path, record CID, commit revision.
type Ack = (String, String, String);

/// What the test knows must survive.
#[derive(Default)]
struct Ledger {
    /// path → CID of every acknowledged record (never updated or deleted by the test).
    records: BTreeMap<String, String>,
    /// Paths of imports that exited 0 (their CIDs join `records` at the next check).
    imported: BTreeSet<String>,
    /// The greatest acknowledged revision.
    max_rev: String,
}

/// An import file not yet wholly imported: its path and the paths of its records.
struct ImportFile {
    file: PathBuf,
    paths: Vec<String>,
}

/// Writes `n` records with fixed TID keys (so their paths are known in advance).
fn make_import_file(data: &DataDir, seq: usize, n: usize) -> ImportFile {
    let file = data.file(&format!("import-{seq}.jsonl"));
    let mut w = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    let mut paths = Vec::with_capacity(n);
    for i in 0..n {
        // Clock id 1 and old timestamps: never a key the node's own clock would pick.
        let rkey = Tid::from_parts(1_600_000_000_000_000 + (seq * 100_000 + i) as u64, 1);
        let line = json!({"collection": TEXT, "rkey": rkey.as_str(), "record": {
            "$type": TEXT,
            "title": format!("import {seq} item {i}"),
            "body": format!("Body of item {i} of import file {seq}."),
            "createdAt": "2024-05-01T12:00:00.000Z",
        }});
        writeln!(w, "{line}").unwrap();
        paths.push(format!("{TEXT}/{}", rkey.as_str()));
    }
    w.flush().unwrap();
    ImportFile { file, paths }
}

/// A writer thread: createRecord (or applyWrites batches) until stopped or the node is gone.
fn writer(
    url: String,
    token: String,
    did: String,
    id: usize,
    round: usize,
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
) {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let batch = id == 0 && i.is_multiple_of(2);
        let (nsid, body) = if batch {
            let writes: Vec<Value> = (0..8)
                .map(|j| json!({"$type": "com.atproto.repo.applyWrites#create", "collection": NOTE, "value": {"$type": NOTE, "text": format!("round {round} writer {id} batch {i} item {j}")}}))
                .collect();
            (
                "com.atproto.repo.applyWrites",
                json!({"repo": did, "writes": writes}),
            )
        } else {
            (
                "com.atproto.repo.createRecord",
                json!({"repo": did, "collection": NOTE, "record": {"$type": NOTE, "text": format!("round {round} writer {id} record {i}")}}),
            )
        };
        let resp = http
            .post(format!("{url}/xrpc/{nsid}"))
            .bearer_auth(&token)
            .json(&body)
            .send();
        let Ok(resp) = resp else {
            // The node is gone (refused, reset): the write is not acknowledged.
            return;
        };
        let status = resp.status().as_u16();
        let Ok(text) = resp.text() else {
            // Killed while sending the answer: not acknowledged.
            return;
        };
        assert_eq!(status, 200, "writer {id}: {nsid} answered {status}: {text}");
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("writer {id}: {e}: {text}"));
        let rev = v["commit"]["rev"].as_str().unwrap().to_string();
        let mut out = Vec::new();
        if batch {
            for r in v["results"].as_array().unwrap() {
                out.push((
                    uri_path(r["uri"].as_str().unwrap()),
                    r["cid"].as_str().unwrap().to_string(),
                    rev.clone(),
                ));
            }
        } else {
            out.push((
                uri_path(v["uri"].as_str().unwrap()),
                v["cid"].as_str().unwrap().to_string(),
                rev,
            ));
        }
        acks.lock().unwrap().extend(out);
    }
}

fn uri_path(uri: &str) -> String {
    uri.strip_prefix("at://")
        .unwrap()
        .split_once('/')
        .unwrap()
        .1
        .to_string()
}

/// Runs `guild import` to completion (or kills it after a deadline); whether it exited 0.
fn run_import(data_dir: PathBuf, file: PathBuf, batch: usize) -> (bool, String) {
    let log = file.with_extension(format!("log-{}", std::process::id()));
    let mut child = command()
        .args([
            "import",
            file.to_str().unwrap(),
            "--batch",
            &batch.to_string(),
            "--data-dir",
        ])
        .arg(&data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("guild import did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let err = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!err.contains("panicked"), "guild import panicked: {err}");
    (status.success(), err)
}

/// The records of the public repo, read straight from the store (the node is not running):
/// opening checks every head; the index must list exactly what the MST holds.
fn reopen_store(data: &DataDir) -> Option<(String, BTreeMap<String, String>, u64)> {
    let store = SledStore::open(&data.dir.join("store"))
        .unwrap_or_else(|e| panic!("the store does not reopen after SIGKILL: {e}"));
    let repo = RepoKey::public(guild_store::Did::parse(&data.did).unwrap());
    let head = store.head(&repo).unwrap()?;
    let mut index = BTreeMap::new();
    for c in store.collections(&repo).unwrap() {
        for (k, cid) in store
            .index_list(&repo, &c, None, 10_000_000, false)
            .unwrap()
        {
            index.insert(format!("{c}/{k}"), cid.to_string());
        }
    }
    let count = store.record_count(&repo).unwrap();
    // The MST behind the head, verified from the store's own blocks.
    let summary = guild_repo::verify_repo(&store, head.commit)
        .unwrap_or_else(|e| panic!("the stored head does not verify: {e}"));
    let mst: BTreeMap<String, String> = summary
        .records
        .iter()
        .map(|(p, c)| (p.clone(), c.to_string()))
        .collect();
    assert_eq!(
        index.len(),
        mst.len(),
        "index and MST differ in size after a crash"
    );
    assert_eq!(
        index, mst,
        "the record index disagrees with the MST after a crash"
    );
    assert_eq!(
        count,
        mst.len() as u64,
        "the head's record count disagrees with the MST"
    );
    assert_eq!(summary.rev, head.rev);
    Some((head.rev.as_str().to_string(), mst, count))
}

/// After a restart: export, verify, and check everything acknowledged.
fn check(
    data: &DataDir,
    node: &Node,
    ledger: &mut Ledger,
    round: usize,
    stored: Option<&(String, BTreeMap<String, String>, u64)>,
) {
    let lc = node.get("com.atproto.sync.getLatestCommit", &[("did", &node.did)]);
    if lc.0 != 200 {
        assert!(
            ledger.records.is_empty() && ledger.imported.is_empty(),
            "round {round}: no repo after restart, but writes were acknowledged: {:?}",
            lc
        );
        assert!(stored.is_none());
        return;
    }
    let rev = lc.1["rev"].as_str().unwrap().to_string();
    assert!(
        rev >= ledger.max_rev,
        "round {round}: the head went back from {} to {rev}",
        ledger.max_rev
    );
    let car = data.file(&format!("export-{round}.car"));
    ok(&data.guild(&["export", "--out", car.to_str().unwrap()]));
    let out = ok(&guild_plain(&["repo", "verify", car.to_str().unwrap()]));
    assert!(out.starts_with("ok: "), "{out}");
    let bytes = std::fs::read(&car).unwrap();
    let parsed = guild_repo::read_car(&bytes).unwrap();
    let summary = guild_repo::verify_car(&parsed).unwrap();
    let records: BTreeMap<String, String> = summary
        .records
        .iter()
        .map(|(p, c)| (p.clone(), c.to_string()))
        .collect();
    if let Some((stored_rev, stored_records, _)) = stored {
        assert_eq!(
            *stored_rev, rev,
            "round {round}: the node serves another head than the store holds"
        );
        assert_eq!(*stored_records, records);
    }
    let mut missing = Vec::new();
    for (path, cid) in &ledger.records {
        match records.get(path) {
            Some(c) if c == cid => {}
            Some(c) => panic!("round {round}: acknowledged {path} changed CID from {cid} to {c}"),
            None => missing.push(path.clone()),
        }
    }
    assert!(
        missing.is_empty(),
        "round {round}: {} acknowledged records lost after SIGKILL, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    for path in std::mem::take(&mut ledger.imported) {
        let cid = records
            .get(&path)
            .unwrap_or_else(|| panic!("round {round}: {path} of a finished import is missing"));
        ledger.records.insert(path, cid.clone());
    }
    std::fs::remove_file(&car).unwrap();
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let rounds: usize = env_or("GUILD_CRASH_ROUNDS", 20);
    let seed: u64 = env_or("GUILD_CRASH_SEED", 0x6775_696c_6421);
    eprintln!("crash test: {rounds} rounds, GUILD_CRASH_SEED={seed}");
    let mut rng = Rng::new(seed);
    let data = DataDir::init();
    let mut ledger = Ledger::default();
    let mut pending: Option<ImportFile> = None;
    let mut import_seq = 0usize;
    let mut imports_finished = 0usize;
    let mut imports_interrupted = 0usize;
    let started = Instant::now();

    for round in 0..=rounds {
        // The node is down: the store must reopen and be consistent.
        let stored = reopen_store(&data);
        let mut node = data.start();
        check(&data, &node, &mut ledger, round, stored.as_ref());
        if round == rounds {
            break;
        }
        let rev_before = ledger.max_rev.clone();

        // Writers over HTTP.
        let stop = Arc::new(AtomicBool::new(false));
        let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
        let writers: Vec<_> = (0..WRITER_THREADS)
            .map(|id| {
                let (url, token, did) = (node.url.clone(), node.token.clone(), node.did.clone());
                let (stop, acks) = (stop.clone(), acks.clone());
                std::thread::spawn(move || writer(url, token, did, id, round, stop, acks))
            })
            .collect();
        // An import: the interrupted one again (it resumes), or a new file.
        let file = pending.take().unwrap_or_else(|| {
            import_seq += 1;
            make_import_file(&data, import_seq, IMPORT_RECORDS)
        });
        let batch = rng.range(10, 120) as usize;
        let importer = {
            let (dir, path) = (data.dir.clone(), file.file.clone());
            std::thread::spawn(move || run_import(dir, path, batch))
        };

        // Kill at a random moment: sometimes almost at once, usually within 1.2 s.
        let delay = if rng.range(0, 5) == 0 {
            rng.range(0, 30)
        } else {
            rng.range(30, 1200)
        };
        std::thread::sleep(Duration::from_millis(delay));
        assert!(
            node.is_running(),
            "round {round}: the node died by itself:\n{}",
            node.log_text()
        );
        node.kill();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().expect("a writer thread failed");
        }
        let (import_ok, import_err) = importer.join().expect("the import thread failed");
        if import_ok {
            imports_finished += 1;
            ledger.imported.extend(file.paths.iter().cloned());
        } else {
            assert!(
                import_err.contains("cannot reach the node") || import_err.contains("error:"),
                "round {round}: import failed oddly: {import_err}"
            );
            imports_interrupted += 1;
            pending = Some(file);
        }
        let acks = std::mem::take(&mut *acks.lock().unwrap());
        for (path, cid, rev) in acks {
            assert!(
                rev > rev_before,
                "round {round}: revision {rev} after a restart is not after {rev_before}, acknowledged before the crash"
            );
            if rev > ledger.max_rev {
                ledger.max_rev = rev;
            }
            assert!(
                ledger.records.insert(path.clone(), cid).is_none(),
                "{path} acknowledged twice"
            );
        }
        eprintln!(
            "round {round}: killed after {delay} ms; {} records acknowledged so far; import {}",
            ledger.records.len(),
            if import_ok { "finished" } else { "interrupted" }
        );
    }
    eprintln!(
        "crash test: {rounds} kills in {:.1} s; {} records acknowledged; imports finished {imports_finished}, interrupted {imports_interrupted}",
        started.elapsed().as_secs_f64(),
        ledger.records.len()
    );
    assert!(
        !ledger.records.is_empty(),
        "nothing was ever acknowledged: the test tested nothing"
    );
}
