//! Multi-node figures for a collective over real in-process swarms (libp2p memory transport),
//! each node with its own collectives engine and store (protocol.md §5; goals.md "gossip
//! convergence"):
//!
//! - `spread`: N members (default 1 000); each link gets an injected one-way latency (default
//!   50 ms: every event a node receives is delayed that long before its engine sees it); a
//!   member writes an op; the time until every node has validated and applied it (as each
//!   engine reports it, `Engine::applied`), over several ops (p50 / p99 / max), and the
//!   process RSS. The nodes share one memo of verified ops (`EngineConfig::verify_cache`), so
//!   an op's decoded form is held once in the process.
//! - `heal`: a 30 % partition (links cut, redial off) with ops on both sides; the time from
//!   re-linking until all N nodes have identical heads and state.
//! - `catchup`: a node offline while 10 000 ops are written; the time from its reconnection
//!   until it holds them all (anti-entropy only).
//!
//! - `join --history FILE`: a node holding a large collective's log (a file the gov bench
//!   writes: `GUILD_BENCH_REPLAY_1M=1 GUILD_BENCH_REPLAY_WRITE=FILE cargo bench -p guild-gov
//!   --bench gov`) invites a new member; the time from the new member's `join` until its node
//!   holds the whole log (loopback TCP, production timers, each node its own verify cache).
//! - `memory`: one node's governance log of an N-member collective, several ways (`--ops`
//!   copies, RSS); `swarms`: N swarms bare, then linked (`--degree` connections each).
//!
//! Run: `cargo bench -p guild-net --bench collective -- [spread|heal|catchup|memory|swarms|all]
//! [--nodes N] [--latency-ms L] [--ops K] [--missed M] [--degree D] [--settle-secs S]
//! [--history FILE]`
//! (`--settle-secs`: how long `spread` lets the meshes form before the first op, default 5).

use std::sync::Arc;
use std::time::{Duration, Instant};

use guild_core::syntax::Datetime;
use guild_core::{Cid, Keypair};
use guild_gov::make;
use guild_gov::{DriverConfig, Log, OpKind, OpStore, VerifyCache};
use guild_net::{Engine, EngineConfig, Multiaddr, Net, NetConfig, NetEvent, NetHandle};
use guild_store::MemoryStore;
use tokio::sync::mpsc;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    what: String,
    nodes: usize,
    latency_ms: u64,
    ops: usize,
    missed: usize,
    degree: usize,
    settle_secs: u64,
    history: Option<std::path::PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        what: "all".into(),
        nodes: 1000,
        latency_ms: 50,
        ops: 10,
        missed: 10_000,
        degree: 8,
        settle_secs: 5,
        history: None,
    };
    let mut it = std::env::args().skip(1).filter(|s| s != "--bench");
    while let Some(x) = it.next() {
        let mut num = |name: &str| -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match x.as_str() {
            "--nodes" => a.nodes = num("--nodes"),
            "--latency-ms" => a.latency_ms = num("--latency-ms") as u64,
            "--ops" => a.ops = num("--ops"),
            "--missed" => a.missed = num("--missed"),
            "--degree" => a.degree = num("--degree"),
            "--settle-secs" => a.settle_secs = num("--settle-secs") as u64,
            "--history" => a.history = it.next().map(Into::into),
            "spread" | "heal" | "catchup" | "all" | "memory" | "swarms" | "join" => a.what = x,
            _ => {}
        }
    }
    a
}

fn rss_mb() -> f64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn key(i: usize) -> Keypair {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(i as u64 + 7).to_le_bytes());
    Keypair::from_secret_bytes(&seed)
}

/// A collective of `n` members built offline (charter, then an invite and a join per member),
/// as the signed op bytes every node's store starts with.
/// It is dated a day before the system clock: the engines check ops against it (an op dated
/// more than 5 minutes ahead of a node's clock waits there, and an op may not be dated
/// before its parents), so the ops the benches write are dated now ([`now_micros`]).
fn collective(keys: &[Keypair]) -> (Cid, Vec<Vec<u8>>) {
    make::invited_collective("Bench", keys, now_micros() - 86_400_000_000).unwrap()
}

/// The system clock, the engines' default, in microseconds since the UNIX epoch.
fn now_micros() -> i64 {
    guild_service::Clock::system().now_micros()
}

/// The body of a consent grant to the charter's template by the writing member, dated now.
fn grant_now() -> guild_service::FieldsFn {
    Box::new(|st, me| {
        let at = Datetime::from_unix_micros(now_micros());
        let member = guild_core::syntax::Did::parse(me).unwrap();
        let templates = ["research-open".to_owned()];
        let body = make::consent(st, &member, &templates, &[], &at);
        Ok(guild_gov::body::OpBody::ConsentGrant(Box::new(body)))
    })
}

struct Node {
    net: NetHandle,
    engine: Engine,
    addr: Multiaddr,
}

/// Forwards the swarm's events to the engine, each `latency` later (a one-way link delay).
fn delayed(mut rx: mpsc::Receiver<NetEvent>, latency: Duration) -> mpsc::Receiver<NetEvent> {
    let (tx, out) = mpsc::channel(4096);
    tokio::spawn(async move {
        let (dtx, mut drx) = mpsc::channel::<(Instant, NetEvent)>(4096);
        tokio::spawn(async move {
            while let Some((at, ev)) = drx.recv().await {
                tokio::time::sleep_until(at.into()).await;
                if tx.send(ev).await.is_err() {
                    break;
                }
            }
        });
        while let Some(ev) = rx.recv().await {
            if dtx.send((Instant::now() + latency, ev)).await.is_err() {
                break;
            }
        }
    });
    out
}

/// One memo of verified ops for every node of the process: each op is verified once and its
/// decoded form is shared by every node's log, and its bytes by every node's in-memory store
/// (each node's indexes, its state and its store's index of op ids are its own).
fn shared_cache(ops: &[Vec<u8>]) -> VerifyCache {
    let cache = VerifyCache::new(ops.len() * 2 + 20_000);
    for b in ops {
        cache.verify(b).unwrap();
    }
    cache
}

async fn spawn_node(
    key: &Keypair,
    id: Cid,
    ops: &[Vec<u8>],
    latency: Duration,
    cache: &VerifyCache,
) -> Node {
    let store = Arc::new(MemoryStore::new());
    // The node's store holds the ops as a node whose log saved them would: the buffers of
    // the decoded ops (shared by every node of the process through `cache`), not copies.
    let stored: Vec<(Cid, guild_store::Bytes)> = ops
        .iter()
        .map(|b| {
            let op = cache.verify(b).unwrap();
            (*op.id(), op.shared_bytes())
        })
        .collect();
    store.append_shared(&id, &stored).unwrap();
    // Scores are checked as often as a real node checks them (once a second), not at the
    // 10 Hz of `NetConfig::memory()`'s tests: 1 000 nodes at 10 Hz were ~6 % of the CPU.
    let config = NetConfig {
        heartbeat_ms: 700,
        score: guild_net::ScoreConfig::default(),
        ..NetConfig::memory()
    };
    let (net, events) = Net::spawn(key, config).unwrap();
    let events = if latency.is_zero() {
        events
    } else {
        delayed(events, latency)
    };
    let engine = Engine::spawn(
        key.clone(),
        net.clone(),
        events,
        store,
        EngineConfig {
            driver: DriverConfig {
                sync_interval_micros: 2_000_000,
                sync_jitter_micros: 2_000_000,
                ..DriverConfig::default()
            },
            tick: Duration::from_millis(200),
            redial: Duration::from_secs(3600),
            verify_cache: Some(cache.clone()),
            ..EngineConfig::default()
        },
    )
    .await
    .unwrap();
    let addr = dial_addr(&net).await;
    Node { net, engine, addr }
}

/// Where others dial a swarm: its first listen address, with `/p2p/<peer id>`.
async fn dial_addr(net: &NetHandle) -> Multiaddr {
    let a = net.listen_addrs().await.unwrap();
    a[0].clone()
        .with(guild_net::multiaddr::Protocol::P2p(net.peer_id()))
}

/// A random graph: node i dials `degree / 2` nodes chosen by a seeded PRNG, plus node i + 1
/// (a ring, so the graph is connected); every node has about `degree` links.
async fn link(nodes: &[Node], degree: usize) {
    let n = nodes.len();
    let mut rng = guild_gov::driver::SplitMix64::new(0x5eed);
    for i in 0..n {
        let _ = nodes[i].net.dial(nodes[(i + 1) % n].addr.clone()).await;
        for _ in 1..degree / 2 {
            let j = rng.below(n as u64) as usize;
            if j != i {
                let _ = nodes[i].net.dial(nodes[j].addr.clone()).await;
            }
        }
    }
}

/// Starts watching every node's applied ops: each notice comes with the node's index and the
/// instant the node's engine applied the op.
fn watch(nodes: &[Node]) -> mpsc::UnboundedReceiver<(usize, guild_net::AppliedOp)> {
    let (tx, rx) = mpsc::unbounded_channel();
    for (i, n) in nodes.iter().enumerate() {
        let mut applied = n.engine.applied();
        let tx = tx.clone();
        tokio::spawn(async move {
            loop {
                match applied.recv().await {
                    Ok(a) => {
                        if tx.send((i, a)).is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(k)) => {
                        eprintln!("node {i}: watcher lagged by {k} notices");
                    }
                    Err(_) => return,
                }
            }
        });
    }
    rx
}

/// Waits until every node applied `op`; returns when each did (from `start`), as its engine
/// timed it. A node that never did counts as an hour.
async fn spread_times(
    nodes: &[Node],
    rx: &mut mpsc::UnboundedReceiver<(usize, guild_net::AppliedOp)>,
    op: &Cid,
    start: Instant,
) -> Vec<Duration> {
    let mut done: Vec<Option<Duration>> = vec![None; nodes.len()];
    let mut left = nodes.len();
    let deadline = start + Duration::from_secs(60);
    while left > 0 {
        let Ok(Some((i, a))) = tokio::time::timeout_at(deadline.into(), rx.recv()).await else {
            break;
        };
        if a.op == *op && done[i].is_none() {
            done[i] = Some(a.at.saturating_duration_since(start));
            left -= 1;
        }
    }
    done.into_iter()
        .map(|d| d.unwrap_or(Duration::from_secs(3600)))
        .collect()
}

/// Bytes sent by all nodes' swarms so far.
fn sent(nodes: &[Node]) -> u64 {
    nodes.iter().map(|n| n.net.traffic().bytes_out).sum()
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn spread(a: &Args) {
    let n = a.nodes;
    let latency = Duration::from_millis(a.latency_ms);
    let t0 = Instant::now();
    let keys: Vec<Keypair> = (0..n).map(key).collect();
    let (id, ops) = collective(&keys);
    let built = t0.elapsed();
    let cache = shared_cache(&ops);
    let mut nodes = Vec::with_capacity(n);
    for k in &keys {
        nodes.push(spawn_node(k, id, &ops, latency, &cache).await);
    }
    link(&nodes, a.degree).await;
    // Let meshes form.
    tokio::time::sleep(Duration::from_secs(a.settle_secs)).await;
    println!(
        "spread: {n} nodes, degree ~{}, {} ms per link; collective of {} ops built in {:.1?}; started in {:.1?}; RSS {:.0} MB",
        a.degree,
        a.latency_ms,
        ops.len(),
        built,
        t0.elapsed(),
        rss_mb()
    );
    let mut rx = watch(&nodes);
    let mut all = Vec::new();
    let mut per_op_p99 = Vec::new();
    // The background: heartbeats, gossip control, anti-entropy, pings, with no op written.
    let (b0, t0) = (sent(&nodes), Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rate = (sent(&nodes) - b0) as f64 / t0.elapsed().as_secs_f64() / n as f64;
    println!("  background traffic: {idle_rate:.0} bytes sent per node per second");
    let mut op_bytes = Vec::new();
    for r in 0..a.ops {
        let writer = &nodes[(r * 7919 + 13) % n];
        while rx.try_recv().is_ok() {}
        let before = sent(&nodes);
        let start = Instant::now();
        let op = writer
            .engine
            .write(id, OpKind::ConsentGrant, grant_now())
            .await
            .unwrap();
        let mut times = spread_times(&nodes, &mut rx, &op, start).await;
        let window = start.elapsed().as_secs_f64();
        let total = (sent(&nodes) - before) as f64 / n as f64;
        let per_op = total - idle_rate * window;
        op_bytes.push(per_op);
        times.sort();
        per_op_p99.push(pct(&times, 0.99));
        println!(
            "  op {r}: p50 {:?}  p99 {:?}  max {:?}; sent per node {total:.0} bytes in {window:.2} s, {per_op:.0} above the background",
            pct(&times, 0.5),
            pct(&times, 0.99),
            times.last().copied().unwrap_or_default()
        );
        all.extend(times);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    all.sort();
    println!(
        "spread: bytes sent per op per node (above the background): mean {:.0}",
        op_bytes.iter().sum::<f64>() / op_bytes.len().max(1) as f64
    );
    println!(
        "spread: over {} ops x {n} nodes: p50 {:?}  p99 {:?}  max {:?}; RSS {:.0} MB",
        a.ops,
        pct(&all, 0.5),
        pct(&all, 0.99),
        all.last().copied().unwrap_or_default(),
        rss_mb()
    );
    for nd in &nodes {
        let _ = nd.net.shutdown().await;
    }
}

async fn same_everywhere(nodes: &[Node], id: &Cid) -> bool {
    let Ok(first) = nodes[0].engine.status(*id).await else {
        return false;
    };
    for n in &nodes[1..] {
        match n.engine.status(*id).await {
            Ok(s) if s.heads == first.heads && s.state == first.state => {}
            _ => return false,
        }
    }
    true
}

async fn heal(a: &Args) {
    let n = a.nodes;
    let keys: Vec<Keypair> = (0..n).map(key).collect();
    let (id, ops) = collective(&keys);
    let latency = Duration::from_millis(a.latency_ms);
    let cache = shared_cache(&ops);
    let mut nodes = Vec::with_capacity(n);
    for k in &keys {
        nodes.push(spawn_node(k, id, &ops, latency, &cache).await);
    }
    let cut = n * 3 / 10;
    // Two groups, each linked within itself; no link across.
    let (left, right) = nodes.split_at(cut);
    link(left, a.degree).await;
    link(right, a.degree).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Ops on both sides.
    for (side, group) in [(0usize, left), (1, right)] {
        for r in 0..5 {
            let w = &group[(r * 31 + side) % group.len()];
            w.engine
                .write(id, OpKind::ConsentGrant, grant_now())
                .await
                .unwrap();
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let start = Instant::now();
    for i in 0..cut.min(right.len()) {
        if i % 3 == 0 {
            let _ = left[i].net.dial(right[i].addr.clone()).await;
        }
    }
    let deadline = start + Duration::from_secs(120);
    while !same_everywhere(&nodes, &id).await {
        assert!(Instant::now() < deadline, "no convergence within 120 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "heal: {n} nodes, {cut} cut off, 10 ops across the sides, {} ms per link: identical everywhere {:?} after re-linking; RSS {:.0} MB",
        a.latency_ms,
        start.elapsed(),
        rss_mb()
    );
    for nd in &nodes {
        let _ = nd.net.shutdown().await;
    }
}

async fn catchup(a: &Args) {
    let keys: Vec<Keypair> = (0..3).map(key).collect();
    let (id, ops) = collective(&keys);
    // Separate caches: the node catching up verifies every op it receives.
    let nodes = [
        spawn_node(&keys[0], id, &ops, Duration::ZERO, &VerifyCache::default()).await,
        spawn_node(&keys[1], id, &ops, Duration::ZERO, &VerifyCache::default()).await,
    ];
    // The founder writes `missed` ops while member 1 is offline (not linked).
    let t = Instant::now();
    for i in 0..a.missed {
        let s = (i as u64).to_le_bytes().repeat(4);
        nodes[0]
            .engine
            .write(
                id,
                OpKind::Invite,
                Box::new(move |_, _| Ok(make::invite(&s, None, None))),
            )
            .await
            .unwrap();
    }
    let wrote = t.elapsed();
    let target = nodes[0].engine.status(id).await.unwrap().heads;
    let start = Instant::now();
    nodes[1].net.dial(nodes[0].addr.clone()).await.unwrap();
    let deadline = start + Duration::from_secs(120);
    loop {
        let s = nodes[1].engine.status(id).await.unwrap();
        if s.heads == target {
            break;
        }
        assert!(Instant::now() < deadline, "no catch-up within 120 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "catchup: {} ops written in {wrote:.1?} while a node was away; it held them all {:?} after reconnecting",
        a.missed,
        start.elapsed()
    );
}

/// The gov bench's history file: each op's bytes after its length (u32, little-endian).
fn read_history(path: &std::path::Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut ops = Vec::new();
    let mut rest = bytes.as_slice();
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let (op, tail) = tail.split_at(u32::from_le_bytes(*len) as usize);
        ops.push(op.to_vec());
        rest = tail;
    }
    ops
}

/// The gov bench's people: person `i`'s key.
fn history_key(person: usize) -> Keypair {
    let mut seed = [0x47u8; 32];
    seed[..8].copy_from_slice(&(person as u64).to_le_bytes());
    Keypair::from_secret_bytes(&seed)
}

/// A node on loopback TCP with the node binary's engine timers (anti-entropy every 30 s plus
/// up to 30 s, 250 ms ticks), its own verify cache, and a clock `offset` µs ahead.
async fn tcp_node(key: &Keypair, store: Arc<MemoryStore>, offset: i64) -> (NetHandle, Engine) {
    let config = NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        mdns: false,
        ip_colocation_penalty: false,
        ..NetConfig::default()
    };
    let (net, events) = Net::spawn(key, config).unwrap();
    let clock = guild_service::Clock::offset(Arc::new(std::sync::atomic::AtomicI64::new(offset)));
    let engine = Engine::spawn(
        key.clone(),
        net.clone(),
        events,
        store,
        EngineConfig {
            clock,
            ..EngineConfig::default()
        },
    )
    .await
    .unwrap();
    (net, engine)
}

async fn join(a: &Args) {
    let path = a
        .history
        .as_deref()
        .expect("join needs --history FILE (the gov bench's GUILD_BENCH_REPLAY_WRITE)");
    let ops = read_history(path);
    let id = guild_core::cids::cid_for_cbor(&ops[0]);
    // The history is dated by its generator: both nodes' clocks are set a minute past its
    // last op.
    let last = ops
        .iter()
        .map(|b| {
            guild_gov::SignedOp::decode_trusted(b)
                .unwrap()
                .created_at()
                .to_unix_micros()
        })
        .max()
        .unwrap();
    let offset = last + 60_000_000 - now_micros();
    let bytes: usize = ops.iter().map(Vec::len).sum();
    // The inviting node: a steward of the history's collective, holding its log.
    let store = Arc::new(MemoryStore::new());
    let refs: Vec<(Cid, &[u8])> = ops
        .iter()
        .map(|b| (guild_core::cids::cid_for_cbor(b), b.as_slice()))
        .collect();
    store.append_ops(&id, &refs).unwrap();
    drop(refs);
    let n = ops.len();
    drop(ops);
    let state = Log::open(id, &*store).unwrap().state();
    let steward = (0..100_000)
        .map(history_key)
        .find(|k| state.role(&k.did()) == Some(guild_gov::state::Role::Steward))
        .expect("a steward among the history's first 100 000 people");
    drop(state);
    let t = Instant::now();
    let (_net_a, engine_a) = tcp_node(&steward, store, offset).await;
    let loaded = t.elapsed();
    let target = engine_a.status(id).await.unwrap();
    println!(
        "join: {n} ops ({:.0} MB); the inviting node loaded its log in {loaded:.1?}; RSS {:.0} MB",
        bytes as f64 / 1e6,
        rss_mb()
    );
    let code = engine_a.invite(id, None, None).await.unwrap();
    let newcomer = Keypair::generate().unwrap();
    let (_net_b, engine_b) = tcp_node(&newcomer, Arc::new(MemoryStore::new()), offset).await;
    let start = Instant::now();
    engine_b.join(code).await.unwrap();
    let joined = start.elapsed();
    let deadline = start + Duration::from_secs(1800);
    let mut last_report = Instant::now();
    loop {
        let s = engine_b.status(id).await.unwrap();
        // Everything the inviter held then, plus the invite and the join.
        if s.ops >= target.ops + 2 && s.pending == 0 {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            println!(
                "  {:.0?}: {} ops held, {} pending, {} wanted; RSS {:.0} MB",
                start.elapsed(),
                s.ops,
                s.pending,
                s.wanted,
                rss_mb()
            );
        }
        assert!(Instant::now() < deadline, "no catch-up within 30 min");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = start.elapsed();
    let b = engine_b.status(id).await.unwrap();
    let a_now = engine_a.status(id).await.unwrap();
    assert_eq!(
        b.heads, a_now.heads,
        "the newcomer's heads are the inviter's"
    );
    println!(
        "join: the join returned after {joined:.1?}; the newcomer held all {} ops {took:.1?} after joining ({:.0} ops/s); RSS {:.0} MB",
        b.ops,
        b.ops as f64 / took.as_secs_f64(),
        rss_mb()
    );
}

/// Where a node's memory goes: `ops` logs of an N-member collective, then N swarms alone.
async fn memory(a: &Args) {
    let keys: Vec<Keypair> = (0..a.nodes).map(key).collect();
    let (id, ops) = collective(&keys);
    let base = rss_mb();
    let logs: Vec<Log> = (0..a.ops)
        .map(|_| Log::load_trusted(id, ops.iter().map(Vec::as_slice)))
        .collect();
    let per_log = (rss_mb() - base) / a.ops as f64;
    println!(
        "memory: a log of {} ops ({} members): {per_log:.2} MB ({:.0} bytes per op); op bytes {} in all",
        ops.len(),
        a.nodes,
        per_log * 1024.0 * 1024.0 / ops.len() as f64,
        ops.iter().map(Vec::len).sum::<usize>()
    );
    // Where it goes: the decoded ops alone; a log without checkpoints.
    let base = rss_mb();
    let decoded: Vec<Vec<guild_gov::SignedOp>> = (0..a.ops)
        .map(|_| {
            ops.iter()
                .map(|b| guild_gov::SignedOp::decode_trusted(b).unwrap())
                .collect()
        })
        .collect();
    let per = (rss_mb() - base) / a.ops as f64;
    println!(
        "memory:   of which decoded ops alone: {per:.2} MB ({:.0} bytes per op)",
        per * 1024.0 * 1024.0 / ops.len() as f64
    );
    let base = rss_mb();
    let bare_logs: Vec<Log> = (0..a.ops)
        .map(|_| {
            let mut log = Log::new(id).with_checkpoints(usize::MAX, 0);
            for b in &ops {
                log.insert(guild_gov::SignedOp::decode_trusted(b).unwrap(), 0);
            }
            log
        })
        .collect();
    let per = (rss_mb() - base) / a.ops as f64;
    println!(
        "memory:   a log without checkpoints: {per:.2} MB ({:.0} bytes per op)",
        per * 1024.0 * 1024.0 / ops.len() as f64
    );
    let cache = shared_cache(&ops);
    let base = rss_mb();
    let shared: Vec<Log> = (0..a.ops)
        .map(|_| Log::load_trusted_cached(id, ops.iter().map(Vec::as_slice), &cache))
        .collect();
    let per = (rss_mb() - base) / a.ops as f64;
    println!(
        "memory: a log sharing its decoded ops with the other nodes of the process: {per:.2} MB ({:.0} bytes per op)",
        per * 1024.0 * 1024.0 / ops.len() as f64
    );
    drop((logs, bare_logs, decoded, shared));
}

/// What swarms cost, alone and linked (run apart from `memory`, whose freed logs the
/// allocator would reuse): `--nodes` swarms.
async fn swarms(a: &Args) {
    let keys: Vec<Keypair> = (0..a.nodes).map(key).collect();
    let base = rss_mb();
    let mut nets = Vec::new();
    for k in &keys {
        let (net, events) = Net::spawn(k, NetConfig::memory()).unwrap();
        nets.push((net, events));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(
        "swarms: a bare swarm: {:.2} MB",
        (rss_mb() - base) / a.nodes as f64
    );
    // The same swarms linked (each dials ~degree/2 others plus its ring neighbour), events
    // drained: what connections cost.
    let base = rss_mb();
    let mut addrs = Vec::new();
    for (net, _) in &nets {
        addrs.push(dial_addr(net).await);
    }
    let mut handles = Vec::new();
    for (net, mut events) in nets {
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        handles.push(net);
    }
    let n = handles.len();
    let mut rng = guild_gov::driver::SplitMix64::new(0x5eed);
    for i in 0..n {
        let _ = handles[i].dial(addrs[(i + 1) % n].clone()).await;
        for _ in 1..a.degree / 2 {
            let j = rng.below(n as u64) as usize;
            if j != i {
                let _ = handles[i].dial(addrs[j].clone()).await;
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let links: usize = {
        let mut t = 0;
        for h in &handles {
            t += h.peers().await.map(|p| p.len()).unwrap_or(0);
        }
        t
    };
    println!(
        "swarms: linked ({:.1} connections each): {:.2} MB more per swarm",
        links as f64 / n as f64,
        (rss_mb() - base) / n as f64
    );
}

fn main() {
    // `RUST_LOG=guild_net=info` shows, for `join`, how the fetch and the checks divide.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if a.what == "memory" {
            memory(&a).await;
        }
        if a.what == "join" {
            join(&a).await;
        }
        if a.what == "swarms" {
            swarms(&a).await;
        }
        if a.what == "catchup" || a.what == "all" {
            catchup(&a).await;
        }
        if a.what == "spread" || a.what == "all" {
            spread(&a).await;
        }
        if a.what == "heal" || a.what == "all" {
            heal(&a).await;
        }
    });
}
