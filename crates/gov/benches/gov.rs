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
//! [`guild_gov::history::History`] writes it (its documentation says what it holds), with
//! `HistoryConfig::new(1000)` or `GUILD_BENCH_MEMBERS` founding members.
//!
//! The mix actually written is printed when a history is made (and recorded in BENCHMARKS.md).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The allocator the `guild` binary uses, so that these figures are the product's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use guild_core::{Cid, Ipld, cids, data};
use guild_gov::history::{History, HistoryConfig};
use guild_gov::{Inserted, Log, OpKind, SignedOp};

/// Members admitted by invite + join before the mix starts (the founder is one more): 1 000,
/// or `GUILD_BENCH_MEMBERS` (50 000 for issue 18's collective).
fn config() -> HistoryConfig {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    HistoryConfig::new(*N.get_or_init(|| {
        std::env::var("GUILD_BENCH_MEMBERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000)
    }))
}
/// Ops written after the base log for the `apply` benches (their timed ops).
const TAIL: usize = 10_000;

/// True when only the large replay runs (`GUILD_BENCH_REPLAY_1M` is set).
fn large_replay_only() -> bool {
    std::env::var_os("GUILD_BENCH_REPLAY_1M").is_some()
}

/// A history of about `n` ops, made once per run.
fn history(n: usize) -> &'static History {
    static MADE: Mutex<BTreeMap<usize, &'static History>> = Mutex::new(BTreeMap::new());
    let mut made = MADE.lock().unwrap();
    made.entry(n).or_insert_with(|| {
        let t0 = Instant::now();
        let g = History::with_ops(config(), n);
        eprintln!("{}", g.report(&format!("~{n}"), t0.elapsed()));
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
        let mut base = gen_base.log().clone();
        let Ok(_) = base.save(&Discard);
        let label = format!("{}k", n / 1000);
        // Ops extending all the heads: the same mix, without concurrent groups.
        let extending = Batches::new(gen_base.clone().extending_tail(TAIL));
        // A consent op concurrent with the last three ops (refolds from a checkpoint).
        let concurrent = Batches::new(gen_base.clone().concurrent_tail(TAIL / 4));
        // The history's own mix, concurrent groups and merges included.
        let mixed = Batches::new(gen_base.clone().mixed_tail(TAIL));
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
        gen_.ops()
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
    let exported = gen_.log().export();
    let bytes: Vec<&[u8]> = exported.iter().map(|b| &**b).collect();
    let collective = gen_.collective();
    let n = bytes.len();
    assert_same(
        &Log::load_trusted(collective, bytes.iter().copied()),
        gen_.log(),
    );
    let small = history(10_000);
    let small_exported = small.log().export();
    let small_bytes: Vec<&[u8]> = small_exported.iter().map(|b| &**b).collect();
    assert_same(
        &Log::load(small.collective(), small_bytes.iter().copied()),
        small.log(),
    );

    let mut g = c.benchmark_group("replay");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("load_trusted/100k", |b| {
        b.iter_with_large_drop(|| Log::load_trusted(collective, bytes.iter().copied()))
    });
    g.throughput(Throughput::Elements(small_bytes.len() as u64));
    g.bench_function("load_verified/10k", |b| {
        b.iter_with_large_drop(|| Log::load(small.collective(), small_bytes.iter().copied()))
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
            let g = History::with_ops(config(), size);
            eprintln!("{}", g.report(&format!("~{size}"), t0.elapsed()));
            eprintln!("RSS with the generator's log: {} MiB", rss_mib());
            // `GUILD_BENCH_REPLAY_ORDER=accepted`: the ops in the order the generator's log
            // accepted them, as a node's store holds them (a concurrent op can land before
            // ops accepted earlier), not in the log's order.
            let stored: Vec<Vec<u8>> =
                if std::env::var("GUILD_BENCH_REPLAY_ORDER").is_ok_and(|o| o == "accepted") {
                    assert_eq!(
                        g.log().unsaved().len(),
                        g.log().len(),
                        "the generator never saved"
                    );
                    g.log()
                        .unsaved()
                        .iter()
                        .filter_map(|id| g.log().get(id))
                        .map(|op| op.bytes().to_vec())
                        .collect()
                } else {
                    g.log()
                        .export()
                        .into_iter()
                        .map(std::borrow::Cow::into_owned)
                        .collect()
                };
            // Only the state and heads are kept, so that two large logs never coexist.
            (stored, Some((g.log().state(), g.log().heads())))
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
    let state = gen_.log().state_ref();
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
