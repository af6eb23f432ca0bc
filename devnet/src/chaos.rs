//! The chaos run: a devnet collective keeps working (members write records, grant and revoke
//! consents, vote in elections; stewards replicate) while faults chosen from a seed hit it,
//! and invariants are checked throughout and after the last heal.
//!
//! Faults: `kill -9` and restart of a node; a partition of the nodes into two groups and its
//! heal; added latency on chosen links; a node restarted with its clock shifted (the node's
//! test-only `testing.clock_offset_secs`) and later set right; a full disk (one node's data
//! directory on a small tmpfs filled by a ballast file, when the devnet runs as root).
//!
//! Links: every node reaches every other only through a TCP proxy of its own (proxy A→B,
//! listed in node A's test-only `net.dial_via`), so partitions and latency need no root.
//! An outsider node (initialised, never a member) keeps asking the stewards for the space's
//! repo heads, and must always be refused.
//!
//! Invariants: no acknowledged record, consent or ballot lost; after the last heal every node
//! converges to identical governance heads and state, and every steward's replica equals its
//! member's repo; no panic in any log; each node's RSS stays under a bound; nothing the
//! outsider asked for was served.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::SplitMix64;
use serde_json::{Value, json};

use crate::{Devnet, Exe, fmt_d, replicas_match, shared_view};

/// What `guild-devnet chaos` runs.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    /// The program that runs `guild` commands.
    pub exe: Exe,
    /// The devnet's directory (an earlier devnet there is removed first).
    pub root: PathBuf,
    /// Member nodes, at least 4 (an outsider node comes on top).
    pub nodes: usize,
    /// How long faults are injected, before the final heal.
    pub duration: Duration,
    /// The seed every choice derives from.
    pub seed: u64,
    /// A node's resident memory above this is a violation, in MiB.
    pub max_rss_mib: u64,
    /// Whether to try the full-disk fault (needs root to mount a tmpfs).
    pub disk_full: bool,
}

/// What a chaos run saw.
#[derive(Debug, Clone, Default)]
pub struct ChaosReport {
    /// The seed.
    pub seed: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Records acknowledged by the nodes.
    pub records: u64,
    /// Record writes that failed (node down, disk full, …).
    pub record_failures: u64,
    /// Consent grants and revocations acknowledged.
    pub consents: u64,
    /// Ballots acknowledged.
    pub ballots: u64,
    /// Elections opened and certified.
    pub elections: (u64, u64),
    /// Outsider probes, all refused when there is no violation.
    pub probes: u64,
    /// Of those, refused by a steward as not-a-member (the others failed before reaching one).
    pub probes_refused: u64,
    /// From the last heal to identical heads and state on every node.
    pub convergence: Option<Duration>,
    /// From convergence to every replica equal to its member's repo.
    pub replicas: Option<Duration>,
    /// Each node's highest RSS seen, in KiB.
    pub max_rss_kib: BTreeMap<String, u64>,
    /// Why writes failed during faults (the most frequent reasons, with counts).
    pub failures: Vec<(String, u64)>,
    /// Each invariant violation, described.
    pub violations: Vec<String>,
    /// Wall time of the whole run.
    pub wall: Duration,
}

/// How long the collective may take to converge after the last heal before it is a violation.
const HEAL_DEADLINE: Duration = Duration::from_secs(240);
/// The tmpfs size of the full-disk node's data directory.
const TMPFS_MIB: u64 = 256;
/// Consent templates members toggle.
const TEMPLATES: [&str; 2] = ["research-open", "training-commercial-attribution"];

// ---------------------------------------------------------------------------------------------
// Links: one TCP proxy per ordered pair of nodes.

/// One proxy's switches and open connections.
#[derive(Debug, Default)]
struct LinkState {
    blocked: AtomicBool,
    latency_ms: AtomicU64,
    closed: AtomicBool,
    next: AtomicU64,
    conns: Mutex<HashMap<u64, TcpStream>>,
}

impl LinkState {
    fn cut(&self) {
        if let Ok(mut conns) = self.conns.lock() {
            for (_, c) in conns.drain() {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }
}

/// The proxy on which node `from` reaches node `to`.
#[derive(Debug)]
struct Link {
    from: usize,
    to: usize,
    port: u16,
    state: Arc<LinkState>,
}

impl Link {
    fn start(from: usize, to: usize, target: SocketAddr) -> Result<Link> {
        let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a link proxy")?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(LinkState::default());
        let s = state.clone();
        std::thread::Builder::new()
            .name(format!("link-{from}-{to}"))
            .spawn(move || accept_loop(&listener, target, &s))
            .context("cannot start a link proxy")?;
        Ok(Link {
            from,
            to,
            port,
            state,
        })
    }

    fn set_blocked(&self, blocked: bool) {
        self.state.blocked.store(blocked, Ordering::SeqCst);
        if blocked {
            self.state.cut();
        }
    }

    fn close(&self) {
        self.state.closed.store(true, Ordering::SeqCst);
        self.state.cut();
        // Wakes the accept loop so that it sees `closed`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn accept_loop(listener: &TcpListener, target: SocketAddr, state: &Arc<LinkState>) {
    for inbound in listener.incoming() {
        if state.closed.load(Ordering::SeqCst) {
            return;
        }
        let Ok(inbound) = inbound else { continue };
        if state.blocked.load(Ordering::SeqCst) {
            let _ = inbound.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(outbound) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
            let _ = inbound.shutdown(Shutdown::Both);
            continue;
        };
        if let Err(e) = connect_pumps(inbound, outbound, state) {
            tracing_free_note(&format!("link proxy: {e}"));
        }
    }
}

/// Registers a proxied connection (so that a cut closes it) and pumps both directions.
fn connect_pumps(a: TcpStream, b: TcpStream, state: &Arc<LinkState>) -> std::io::Result<()> {
    a.set_nodelay(true)?;
    b.set_nodelay(true)?;
    let (a_read, b_read) = (a.try_clone()?, b.try_clone()?);
    let id = state.next.fetch_add(2, Ordering::SeqCst);
    if let Ok(mut conns) = state.conns.lock() {
        conns.insert(id, a.try_clone()?);
        conns.insert(id + 1, b.try_clone()?);
    }
    // A cut between the check and the registration would leave this one open.
    if state.blocked.load(Ordering::SeqCst) {
        state.cut();
    }
    for (from, to) in [(a_read, b), (b_read, a)] {
        let s = state.clone();
        std::thread::Builder::new()
            .name("link-pump".into())
            .spawn(move || pump(from, to, &s, id))?;
    }
    Ok(())
}

/// Copies `from` to `to`, each chunk held back by the link's latency, until either end
/// closes; then closes both.
fn pump(mut from: TcpStream, mut to: TcpStream, state: &LinkState, id: u64) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let latency = state.latency_ms.load(Ordering::Relaxed);
        if latency > 0 {
            std::thread::sleep(Duration::from_millis(latency));
        }
        if state.blocked.load(Ordering::SeqCst) || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    if let Ok(mut conns) = state.conns.lock() {
        conns.remove(&id);
        conns.remove(&(id + 1));
    }
}

/// The devnet's harness has no tracing subscriber: rare proxy troubles go to stderr.
fn tracing_free_note(what: &str) {
    eprintln!("  (chaos) {what}");
}

// ---------------------------------------------------------------------------------------------
// The nodes' set-up.

/// A free TCP port on loopback (bound, read, released).
fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(l.local_addr()?.port())
}

/// Edits a node's `config.toml` in place.
fn edit_config(dir: &Path, f: impl FnOnce(&mut toml::Table) -> Result<()>) -> Result<()> {
    let path = dir.join("config.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut table: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not TOML", path.display()))?;
    f(&mut table)?;
    let out = toml::to_string(&table).context("cannot write the configuration as TOML")?;
    std::fs::write(&path, out).with_context(|| format!("cannot write {}", path.display()))
}

/// The sub-table `key` of `t`, made when missing.
fn sub<'a>(t: &'a mut toml::Table, key: &str) -> Result<&'a mut toml::Table> {
    t.entry(key.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .ok_or_else(|| anyhow!("config.toml: `{key}` is not a table"))
}

/// A member node's chaos configuration: a fixed P2P port (its links' proxies forward there),
/// every dial through its own links, quick anti-entropy, and its clock offset.
fn configure(dir: &Path, port: u16, via: &[(u16, u16)], clock_offset_secs: i64) -> Result<()> {
    edit_config(dir, |t| {
        let net = sub(t, "net")?;
        net.insert(
            "listen".into(),
            toml::Value::Array(vec![format!("/ip4/127.0.0.1/tcp/{port}").into()]),
        );
        let entries = via
            .iter()
            .map(|(to, via)| {
                let mut e = toml::Table::new();
                e.insert("to".into(), format!("127.0.0.1:{to}").into());
                e.insert("via".into(), format!("127.0.0.1:{via}").into());
                toml::Value::Table(e)
            })
            .collect();
        net.insert("dial_via".into(), toml::Value::Array(entries));
        let sync = sub(t, "sync")?;
        sync.insert("interval_secs".into(), 5.into());
        sync.insert("jitter_secs".into(), 5.into());
        sub(t, "testing")?.insert("clock_offset_secs".into(), clock_offset_secs.into());
        Ok(())
    })
}

/// Mounts a small tmpfs on `dir` (keeping its files): the node whose disk can fill up.
fn mount_tmpfs(dir: &Path) -> Result<()> {
    let aside = dir.with_extension("before-tmpfs");
    std::fs::rename(dir, &aside).context("cannot move the data directory aside")?;
    std::fs::create_dir(dir)?;
    let status = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={TMPFS_MIB}m,mode=0700"),
            "tmpfs",
        ])
        .arg(dir)
        .stderr(Stdio::null())
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        std::fs::remove_dir(dir)?;
        std::fs::rename(&aside, dir)?;
        bail!("cannot mount a tmpfs (not root?)");
    }
    // `cp -a`: the store is a directory tree, and modes must stay (private key, token).
    let copied = Command::new("cp")
        .arg("-a")
        .arg(aside.join("."))
        .arg(dir)
        .status()
        .context("cannot run cp")?;
    if !copied.success() {
        bail!("cannot copy {} onto the tmpfs", aside.display());
    }
    std::fs::remove_dir_all(&aside)?;
    // The node's log lives off the tmpfs: what it says while its disk is full is kept, and
    // outlives the unmount at the end.
    let name = dir
        .file_name()
        .ok_or_else(|| anyhow!("{} has no name", dir.display()))?;
    let log = dir.with_file_name(format!("{}.log", name.to_string_lossy()));
    std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    std::os::unix::fs::symlink(&log, dir.join("node.log")).context("cannot link the node's log")?;
    Ok(())
}

/// Unmounts every mount under `root` (a chaos run's tmpfs left by an earlier, killed run).
fn unmount_under(root: &Path) {
    let Ok(root) = root.canonicalize() else {
        return;
    };
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return;
    };
    for line in mounts.lines() {
        if let Some(point) = line.split_whitespace().nth(1)
            && Path::new(point).starts_with(&root)
        {
            let _ = Command::new("umount").arg(point).status();
        }
    }
}

/// Fills the file system of `dir` with a ballast file; returns its size.
fn fill_disk(dir: &Path) -> Result<u64> {
    let path = dir.join("ballast");
    let mut f = std::fs::File::create(&path).context("cannot create the ballast")?;
    let chunk = vec![0u8; 1 << 20];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => return Err(e).context("cannot write the ballast"),
        }
    }
    let _ = f.sync_all();
    Ok(written)
}

// ---------------------------------------------------------------------------------------------
// The workload: members write records, toggle consents and vote, as people would, through the
// `guild` CLI.

/// What a write's answer said: acknowledged, or unknown (it failed, and may or may not have
/// happened, e.g. the node was killed while answering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Acked,
    Unknown,
}

/// What the workload did, for the invariants.
#[derive(Debug, Default)]
struct Ledger {
    /// Acknowledged records: (member, uri, cid).
    records: Vec<(usize, String, String)>,
    record_failures: u64,
    /// Consent attempts per (member, template), in order: (granted, outcome).
    consents: BTreeMap<(usize, &'static str), Vec<(bool, Outcome)>>,
    /// Ballots per election: (acknowledged, attempted) voters.
    ballots: BTreeMap<String, (BTreeSet<usize>, BTreeSet<usize>)>,
    elections_opened: u64,
    /// Why writes failed: (what, first line of the error) → count.
    failures: BTreeMap<String, u64>,
    /// Outsider probes, and what was served to it (violations).
    probes: u64,
    /// Probes the steward answered with a refusal naming why (not-a-member).
    probes_refused: u64,
    served: Vec<String>,
}

impl Ledger {
    fn failed(&mut self, what: &str, error: &str) {
        // Addresses and ids differ between failures of one kind: counted as one.
        let line: Vec<&str> = error
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .map(|w| {
                if w.starts_with("http://") {
                    "<url>"
                } else if w.starts_with("bafy") || w.starts_with("did:") {
                    "<id>"
                } else {
                    w
                }
            })
            .collect();
        let line: String = line.join(" ").chars().take(110).collect();
        *self.failures.entry(format!("{what}: {line}")).or_default() += 1;
    }
}

/// Runs `guild` commands against the nodes' data directories (each finds its node itself, so
/// restarts on new API ports are transparent).
#[derive(Debug, Clone)]
struct Cli {
    exe: Exe,
    dirs: Vec<PathBuf>,
}

impl Cli {
    fn run(&self, i: usize, args: &[&str]) -> Result<String, String> {
        let out = self
            .exe
            .command()
            .args(args)
            .arg("--data-dir")
            .arg(&self.dirs[i])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

/// Sleeps up to `d`, waking early when `stop` is set; whether to go on.
fn nap(stop: &AtomicBool, d: Duration) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
    }
    !stop.load(Ordering::SeqCst)
}

fn between(rng: &mut SplitMix64, lo: u64, hi: u64) -> u64 {
    lo + rng.next_u64() % (hi - lo + 1)
}

/// One member's writes until `stop`: mostly records, sometimes a consent toggled.
fn member_loop(
    cli: &Cli,
    i: usize,
    id: &str,
    seed: u64,
    stop: &AtomicBool,
    ledger: &Mutex<Ledger>,
) {
    let mut rng = SplitMix64::seed_from_u64(seed ^ (0x9e37 + i as u64));
    let mut granted = [false; TEMPLATES.len()];
    let mut n = 0u64;
    while nap(stop, Duration::from_millis(between(&mut rng, 150, 600))) {
        if rng.next_u64() % 100 < 85 {
            n += 1;
            let record = json!({
                "$type": "coop.guild.data.text",
                "title": format!("chaos {i}-{n}"),
                "body": format!("Written by member {i} during the chaos run (seed {seed}), number {n}."),
                "topic": "chaos",
                "createdAt": "2026-12-01T00:00:00.000Z",
            })
            .to_string();
            let args = [
                "record",
                "add",
                "--space",
                id,
                "--collection",
                "coop.guild.data.text",
                "--json",
                &record,
            ];
            let got = cli.run(i, &args);
            let mut l = ledger
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match got.as_deref().map(|s| s.split_once(' ')) {
                Ok(Some((uri, cid))) => l.records.push((i, uri.to_string(), cid.to_string())),
                Ok(None) => l.failed("record add", "no `uri cid` in the answer"),
                Err(e) => {
                    l.record_failures += 1;
                    l.failed("record add", e);
                }
            }
        } else {
            let t = (rng.next_u64() % TEMPLATES.len() as u64) as usize;
            let grant = !granted[t];
            let verb = if grant { "grant" } else { "revoke" };
            let got = cli.run(i, &["consent", verb, "--template", TEMPLATES[t]]);
            let outcome = if got.is_ok() {
                Outcome::Acked
            } else {
                Outcome::Unknown
            };
            if got.is_ok() {
                granted[t] = grant;
            }
            let mut l = ledger
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            l.consents
                .entry((i, TEMPLATES[t]))
                .or_default()
                .push((grant, outcome));
        }
    }
}

/// Elections, one after another until `stop`: a random member opens one for the three seats
/// with three random candidates, every member votes, the founder (the teller) closes it after
/// its close time.
fn election_loop(cli: &Cli, dids: &[String], seed: u64, stop: &AtomicBool, ledger: &Mutex<Ledger>) {
    let n = dids.len();
    let mut rng = SplitMix64::seed_from_u64(seed ^ 0xe1ec);
    while nap(stop, Duration::from_secs(between(&mut rng, 2, 6))) {
        let opener = (rng.next_u64() % n as u64) as usize;
        let mut pool: Vec<usize> = (0..n).collect();
        let mut candidates = Vec::new();
        for _ in 0..3 {
            let k = (rng.next_u64() % pool.len() as u64) as usize;
            candidates.push(pool.swap_remove(k));
        }
        let mut open = vec!["election", "open", "--seats", "3", "--closes-in", "15s"];
        for &c in &candidates {
            open.extend(["--candidate", dids[c].as_str()]);
        }
        let Ok(election) = cli.run(opener, &open) else {
            continue;
        };
        let opened = Instant::now();
        ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elections_opened += 1;
        for m in 0..n {
            let mut vote = vec!["election", "vote", "--election", election.as_str()];
            for &c in &candidates {
                vote.extend(["--approve", dids[c].as_str()]);
            }
            // The voter's node may not have the election yet: it retries for a while.
            let mut got = cli.run(m, &vote);
            let retry_until = opened + Duration::from_secs(12);
            while got.is_err()
                && Instant::now() < retry_until
                && nap(stop, Duration::from_millis(500))
            {
                got = cli.run(m, &vote);
            }
            let mut l = ledger
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let entry = l.ballots.entry(election.clone()).or_default();
            entry.1.insert(m);
            match &got {
                Ok(_) => {
                    entry.0.insert(m);
                }
                Err(e) => l.failed("vote", e),
            }
        }
        // Each teller seals after the close time, by its own clock; a result needs a majority
        // of them. They keep trying for a minute (a node may be down or its clock slow).
        let close_from = opened + Duration::from_secs(16);
        if !nap(stop, close_from.saturating_duration_since(Instant::now())) {
            return;
        }
        close_election(cli, dids, &election, stop, ledger);
    }
}

/// Every teller of `election` runs `guild election close` until the election is certified
/// (or a minute passes).
fn close_election(
    cli: &Cli,
    dids: &[String],
    election: &str,
    stop: &AtomicBool,
    ledger: &Mutex<Ledger>,
) {
    let give_up = Instant::now() + Duration::from_secs(60);
    let mut sealed = BTreeSet::new();
    let mut k = 0usize;
    while Instant::now() < give_up && nap(stop, Duration::from_secs(1)) {
        k += 1;
        let Ok(status) = cli.run(k % dids.len(), &["collective", "status", "--json"]) else {
            continue;
        };
        let Ok(status) = serde_json::from_str::<Value>(&status) else {
            continue;
        };
        let Some(e) = status["elections"]
            .as_array()
            .and_then(|es| es.iter().find(|e| e["id"] == election))
        else {
            continue;
        };
        if !e["certified"].is_null() {
            return;
        }
        let tellers = e["tellers"].as_array().cloned().unwrap_or_default();
        for t in tellers.iter().filter_map(Value::as_str) {
            let Some(i) = dids.iter().position(|d| d == t) else {
                continue;
            };
            if sealed.contains(&i) {
                continue;
            }
            match cli.run(i, &["election", "close", "--election", election]) {
                Ok(_) => {
                    sealed.insert(i);
                }
                Err(e) => ledger
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .failed("close", &e),
            }
        }
    }
}

/// The outsider keeps asking a steward for the space's repo heads: it must always be refused.
fn outsider_loop(
    cli: &Cli,
    outsider: usize,
    members: usize,
    id: &str,
    stop: &AtomicBool,
    ledger: &Mutex<Ledger>,
) {
    let mut k = 0usize;
    while nap(stop, Duration::from_secs(2)) {
        k += 1;
        let Ok(status) = cli.run(k % members, &["collective", "status", "--json"]) else {
            continue;
        };
        let Ok(status) = serde_json::from_str::<Value>(&status) else {
            continue;
        };
        let stewards: Vec<String> = status["stewards"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let Some(steward) = stewards.get(k % stewards.len().max(1)) else {
            continue;
        };
        let got = cli.run(
            outsider,
            &[
                "collective",
                "heads",
                "--from",
                steward,
                "--collective",
                id,
                "--json",
            ],
        );
        let mut l = ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        l.probes += 1;
        match got {
            Ok(out) => l.served.push(format!(
                "the outsider was served repo heads by {steward}: {out}"
            )),
            Err(e) if e.contains("not-a-member") => l.probes_refused += 1,
            Err(_) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Faults.

/// The kinds of fault, as named in the summary.
const KILL: &str = "kill -9 and restart";
const PARTITION: &str = "partition and heal";
const LATENCY: &str = "added latency";
const CLOCK: &str = "clock skew";
const DISK: &str = "full disk";

/// The running collective under test.
struct Run {
    d: Devnet,
    links: Vec<Link>,
    ports: Vec<u16>,
    /// Member nodes (the outsider is node `n`).
    n: usize,
    /// The node whose data directory is a tmpfs, if any.
    disk_node: Option<usize>,
    rng: SplitMix64,
    report: ChaosReport,
    max_rss_kib: u64,
    /// The collective's id.
    id: String,
    /// Fault kinds not yet drawn in this round.
    deck: Vec<&'static str>,
}

impl Run {
    fn pick(&mut self, n: usize) -> usize {
        (self.rng.next_u64() % n as u64) as usize
    }

    /// Waits `d`, sampling every node's RSS once a second.
    fn hold(&mut self, d: Duration) -> Result<()> {
        let until = Instant::now() + d;
        loop {
            self.d.check_stop()?;
            self.sample_rss();
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(Duration::from_secs(1)));
        }
    }

    fn sample_rss(&mut self) {
        for (name, rss) in self.d.rss_kib() {
            let Some(rss) = rss else { continue };
            let max = self.report.max_rss_kib.entry(name.clone()).or_default();
            if rss > *max {
                *max = rss;
                if rss > self.max_rss_kib {
                    self.report
                        .violations
                        .push(format!("{name}: RSS {} MiB over the bound", rss / 1024));
                }
            }
        }
    }

    fn via(&self, from: usize) -> Vec<(u16, u16)> {
        self.links
            .iter()
            .filter(|l| l.from == from)
            .map(|l| (self.ports[l.to], l.port))
            .collect()
    }

    /// Restarts member `i` with its clock shifted by `offset` seconds.
    fn restart_with_clock(&mut self, i: usize, offset: i64) -> Result<()> {
        self.d.kill(i)?;
        configure(&self.d.nodes[i].dir, self.ports[i], &self.via(i), offset)?;
        self.d.start(i)
    }

    /// One fault, held for a while, then healed.
    fn fault(&mut self) -> Result<()> {
        let mut kinds = vec![KILL, PARTITION, LATENCY, CLOCK];
        if self.disk_node.is_some() {
            kinds.push(DISK);
        }
        // A deck: every kind once, in a seeded order, before any repeats.
        if self.deck.is_empty() {
            self.deck = kinds;
        }
        let k = self.pick(self.deck.len());
        let kind = self.deck.swap_remove(k);
        let hold = Duration::from_secs(between(&mut self.rng, 4, 15));
        *self.report.faults.entry(kind).or_default() += 1;
        match kind {
            KILL => {
                let i = self.pick(self.n);
                println!(
                    "  fault: kill -9 {} for {}",
                    self.d.nodes[i].name,
                    fmt_d(hold)
                );
                self.d.kill(i)?;
                self.hold(hold)?;
                self.d.start(i)?;
            }
            PARTITION => {
                let mut side: Vec<bool> = (0..self.n)
                    .map(|_| self.rng.next_u64().is_multiple_of(2))
                    .collect();
                if side.iter().all(|s| *s) || side.iter().all(|s| !*s) {
                    let k = self.pick(self.n);
                    side[k] = !side[k];
                }
                let a: Vec<&str> = (0..self.n)
                    .filter(|&i| side[i])
                    .map(|i| self.d.nodes[i].name.as_str())
                    .collect();
                println!(
                    "  fault: partition {{{}}} from the rest for {}",
                    a.join(", "),
                    fmt_d(hold)
                );
                for l in &self.links {
                    l.set_blocked(side[l.from] != side[l.to]);
                }
                self.hold(hold)?;
                for l in &self.links {
                    l.set_blocked(false);
                }
            }
            LATENCY => {
                let ms = between(&mut self.rng, 50, 400);
                let count = between(&mut self.rng, 1, 3) as usize;
                let mut chosen = Vec::new();
                for _ in 0..count {
                    let (x, y) = (self.pick(self.n), self.pick(self.n));
                    if x != y {
                        chosen.push((x, y));
                    }
                }
                println!(
                    "  fault: {ms} ms latency on {} link(s) for {}",
                    chosen.len(),
                    fmt_d(hold)
                );
                for l in &self.links {
                    if chosen
                        .iter()
                        .any(|&(x, y)| (l.from, l.to) == (x, y) || (l.from, l.to) == (y, x))
                    {
                        l.state.latency_ms.store(ms, Ordering::SeqCst);
                    }
                }
                self.hold(hold)?;
                for l in &self.links {
                    l.state.latency_ms.store(0, Ordering::SeqCst);
                }
            }
            CLOCK => {
                let i = self.pick(self.n);
                let secs = between(&mut self.rng, 20, 280) as i64;
                let offset = if self.rng.next_u64().is_multiple_of(2) {
                    secs
                } else {
                    -secs
                };
                println!(
                    "  fault: {}'s clock {offset:+} s for {}",
                    self.d.nodes[i].name,
                    fmt_d(hold)
                );
                self.restart_with_clock(i, offset)?;
                self.hold(hold)?;
                self.restart_with_clock(i, 0)?;
            }
            _ => self.disk_full(hold)?,
        }
        Ok(())
    }

    /// Fills the tmpfs node's disk, holds, frees it; the node must serve again (by itself, or
    /// after a restart, which the summary counts).
    fn disk_full(&mut self, hold: Duration) -> Result<()> {
        let Some(i) = self.disk_node else {
            return Ok(());
        };
        let dir = self.d.nodes[i].dir.clone();
        let size = fill_disk(&dir)?;
        println!(
            "  fault: {}'s disk full ({} MiB ballast) for {}",
            self.d.nodes[i].name,
            size >> 20,
            fmt_d(hold)
        );
        self.hold(hold)?;
        std::fs::remove_file(dir.join("ballast")).context("cannot remove the ballast")?;
        // Serving again: its health, and its collective engine (which a storage error must
        // not have stopped).
        let healthy = |d: &Devnet| -> bool {
            d.nodes[i].api.is_some()
                && d.nodes[i].query("_health", &[]).is_ok()
                && d.collective_status(i).is_ok()
        };
        let until = Instant::now() + Duration::from_secs(30);
        while !healthy(&self.d) && Instant::now() < until {
            self.hold(Duration::from_millis(500))?;
        }
        if !healthy(&self.d) {
            *self
                .report
                .faults
                .entry("restart after a full disk")
                .or_default() += 1;
            self.d.kill(i)?;
            self.d.start(i)?;
        }
        Ok(())
    }

    /// Heals everything: links open and fast, every member running with a right clock.
    fn heal_all(&mut self) -> Result<()> {
        for l in &self.links {
            l.set_blocked(false);
            l.state.latency_ms.store(0, Ordering::SeqCst);
        }
        if let Some(i) = self.disk_node {
            let _ = std::fs::remove_file(self.d.nodes[i].dir.join("ballast"));
        }
        for i in 0..self.n {
            if self.d.nodes[i].api.is_none() {
                self.d.start(i)?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The run.

/// Runs the chaos run and prints its summary; the report's `violations` are empty when every
/// invariant held (the caller exits non-zero otherwise).
pub fn chaos(opts: ChaosOptions) -> Result<ChaosReport> {
    if opts.nodes < 4 {
        bail!(
            "the chaos run needs at least 4 nodes (--nodes {})",
            opts.nodes
        );
    }
    let stop = crate::interrupt_flag();
    let wall = Instant::now();
    let n = opts.nodes;
    println!(
        "Guild chaos run: {n} member nodes and an outsider in {}, seed {}, faults for {}",
        opts.root.display(),
        opts.seed,
        fmt_d(opts.duration)
    );
    unmount_under(&opts.root);
    let mut run = set_up(&opts, stop)?;
    let done = Arc::new(AtomicBool::new(false));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let threads = start_workload(&run, &opts, &done, &ledger);
    let faults = run_faults(&mut run, &opts);
    let outcome = faults.and_then(|()| finish(&mut run, &done, threads, &ledger));
    done.store(true, Ordering::SeqCst);
    for l in &run.links {
        l.close();
    }
    run.d.stop_all();
    if run.disk_node.is_some() {
        unmount_under(run.d.root());
    }
    outcome?;
    run.report.wall = wall.elapsed();
    print_summary(&run.report, &opts);
    Ok(run.report)
}

/// Nodes, links and the collective: every member joined by invite, the outsider running.
fn set_up(opts: &ChaosOptions, stop: Arc<AtomicBool>) -> Result<Run> {
    let n = opts.nodes;
    let mut d = Devnet::create(opts.exe.clone(), &opts.root, n + 1, stop)?;
    d.nodes[n].name = "outsider".into();
    let ports: Vec<u16> = (0..=n).map(|_| free_port()).collect::<Result<_>>()?;
    let mut links = Vec::new();
    for from in 0..n {
        for to in (0..n).filter(|&to| to != from) {
            links.push(Link::start(
                from,
                to,
                SocketAddr::from(([127, 0, 0, 1], ports[to])),
            )?);
        }
    }
    let disk_node = if opts.disk_full {
        match mount_tmpfs(&d.nodes[n - 1].dir) {
            Ok(()) => Some(n - 1),
            Err(e) if std::env::var("GUILD_REQUIRE_TMPFS").as_deref() == Ok("1") => {
                return Err(e.context("GUILD_REQUIRE_TMPFS=1: the full-disk faults must run"));
            }
            Err(e) => {
                println!("  (no full-disk faults: {e:#})");
                None
            }
        }
    } else {
        None
    };
    let mut run = Run {
        d,
        links,
        ports,
        n,
        disk_node,
        rng: SplitMix64::seed_from_u64(opts.seed),
        report: ChaosReport {
            seed: opts.seed,
            ..ChaosReport::default()
        },
        max_rss_kib: opts.max_rss_mib * 1024,
        id: String::new(),
        deck: Vec::new(),
    };
    for i in 0..n {
        configure(&run.d.nodes[i].dir, run.ports[i], &run.via(i), 0)?;
        run.d.start(i)?;
    }
    let id = run.d.guild(
        0,
        &[
            "collective",
            "create",
            "--name",
            "Chaos Writers",
            "--seats",
            "3",
            "--admission",
            "invite",
        ],
    )?;
    for i in 1..n {
        let invite = run.d.guild(0, &["collective", "invite"])?;
        run.d.guild(i, &["collective", "join", &invite])?;
    }
    let all: Vec<usize> = (0..n).collect();
    run.d.converge(&all)?;
    // The outsider: never a member, connected straight to every member's node.
    let mut bootstrap = Vec::new();
    for i in 0..n {
        let peers = run.d.nodes[i].query("coop.guild.node.getPeers", &[])?;
        let peer = peers["peer"]
            .as_str()
            .ok_or_else(|| anyhow!("getPeers: no peer id"))?;
        bootstrap.push(format!("/ip4/127.0.0.1/tcp/{}/p2p/{peer}", run.ports[i]));
    }
    let outsider_port = run.ports[n];
    edit_config(&run.d.nodes[n].dir, |t| {
        let net = sub(t, "net")?;
        net.insert(
            "listen".into(),
            toml::Value::Array(vec![format!("/ip4/127.0.0.1/tcp/{outsider_port}").into()]),
        );
        net.insert(
            "bootstrap".into(),
            toml::Value::Array(bootstrap.into_iter().map(Into::into).collect()),
        );
        Ok(())
    })?;
    run.d.start(n)?;
    run.report.faults.clear();
    println!("  {n} members joined {id}; every link proxied; the outsider is up");
    run.id = id;
    Ok(run)
}

type Workers = Vec<std::thread::JoinHandle<()>>;

/// The members' writers, the elections and the outsider's probes, each on its own thread.
fn start_workload(
    run: &Run,
    opts: &ChaosOptions,
    done: &Arc<AtomicBool>,
    ledger: &Arc<Mutex<Ledger>>,
) -> Workers {
    let cli = Cli {
        exe: opts.exe.clone(),
        dirs: run.d.nodes.iter().map(|n| n.dir.clone()).collect(),
    };
    let dids: Vec<String> = run.d.nodes[..run.n].iter().map(|n| n.did.clone()).collect();
    let (n, seed) = (run.n, opts.seed);
    let mut threads = Vec::new();
    for i in 0..n {
        let (cli, id, done, ledger) = (cli.clone(), run.id.clone(), done.clone(), ledger.clone());
        threads.push(std::thread::spawn(move || {
            member_loop(&cli, i, &id, seed, &done, &ledger)
        }));
    }
    {
        let (cli, done, ledger) = (cli.clone(), done.clone(), ledger.clone());
        threads.push(std::thread::spawn(move || {
            election_loop(&cli, &dids, seed, &done, &ledger)
        }));
    }
    let (id, done, ledger) = (run.id.clone(), done.clone(), ledger.clone());
    threads.push(std::thread::spawn(move || {
        outsider_loop(&cli, n, n, &id, &done, &ledger)
    }));
    threads
}

/// Faults one after another, with quiet gaps, until the run's duration is over.
fn run_faults(run: &mut Run, opts: &ChaosOptions) -> Result<()> {
    let end = Instant::now() + opts.duration;
    while Instant::now() < end {
        let gap = Duration::from_secs(between(&mut run.rng, 2, 8));
        run.hold(gap.min(end.saturating_duration_since(Instant::now())))?;
        if Instant::now() >= end {
            break;
        }
        run.fault()?;
    }
    Ok(())
}

/// The last heal, the workload stopped, then every invariant checked.
fn finish(
    run: &mut Run,
    done: &AtomicBool,
    threads: Workers,
    ledger: &Mutex<Ledger>,
) -> Result<()> {
    done.store(true, Ordering::SeqCst);
    for t in threads {
        if t.join().is_err() {
            run.report
                .violations
                .push("a workload thread panicked".into());
        }
    }
    run.heal_all()?;
    println!("  healed everything; waiting for convergence");
    let healed = Instant::now();
    let all: Vec<usize> = (0..run.n).collect();
    match wait_within(&run.d, HEAL_DEADLINE, |d| {
        let views: Vec<Value> = all
            .iter()
            .map(|&i| d.collective_status(i).map(|s| shared_view(&s)))
            .collect::<Result<_>>()?;
        Ok(views.windows(2).all(|w| w[0] == w[1]))
    }) {
        Ok(()) => run.report.convergence = Some(healed.elapsed()),
        Err(e) => run
            .report
            .violations
            .push(format!("no convergence after the last heal: {e:#}")),
    }
    let converged = Instant::now();
    let id = run.id.clone();
    match wait_within(&run.d, HEAL_DEADLINE, |d| replicas_match(d, &all, &id)) {
        Ok(()) => run.report.replicas = Some(converged.elapsed()),
        Err(e) => run
            .report
            .violations
            .push(format!("replicas differ from members' repos: {e:#}")),
    }
    run.sample_rss();
    let ledger = std::mem::take(
        &mut *ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    check_ledger(run, &ledger)?;
    check_logs(run);
    Ok(())
}

/// Polls `check` until it holds, for up to `deadline`.
fn wait_within(
    d: &Devnet,
    deadline: Duration,
    mut check: impl FnMut(&Devnet) -> Result<bool>,
) -> Result<()> {
    let started = Instant::now();
    let mut last;
    loop {
        d.check_stop()?;
        match check(d) {
            Ok(true) => return Ok(()),
            Ok(false) => last = "not yet".into(),
            Err(e) => last = format!("{e:#}"),
        }
        if started.elapsed() > deadline {
            bail!("not within {} ({last})", fmt_d(deadline));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Every member's records in the space, from its own node: uri → cid.
fn records_of(d: &Devnet, i: usize, id: &str) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut params = vec![
            ("repo", d.nodes[i].did.as_str()),
            ("collection", "coop.guild.data.text"),
            ("space", id),
            ("limit", "100"),
        ];
        if let Some(c) = cursor.as_deref() {
            params.push(("cursor", c));
        }
        let page = d.nodes[i].query("coop.guild.repo.listRecords", &params)?;
        let records = page["records"].as_array().cloned().unwrap_or_default();
        for r in &records {
            if let (Some(uri), Some(cid)) = (r["uri"].as_str(), r["cid"].as_str()) {
                out.insert(uri.to_string(), cid.to_string());
            }
        }
        cursor = page["cursor"].as_str().map(str::to_owned);
        if records.is_empty() || cursor.is_none() {
            return Ok(out);
        }
    }
}

/// No acknowledged record, consent or ballot lost, and nothing served to the outsider.
fn check_ledger(run: &mut Run, ledger: &Ledger) -> Result<()> {
    let r = &mut run.report;
    r.records = ledger.records.len() as u64;
    r.record_failures = ledger.record_failures;
    r.probes = ledger.probes;
    r.probes_refused = ledger.probes_refused;
    let mut failures: Vec<(String, u64)> = ledger
        .failures
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    failures.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    failures.truncate(12);
    r.failures = failures;
    r.violations.extend(ledger.served.iter().cloned());
    for i in 0..run.n {
        let held = records_of(&run.d, i, &run.id)?;
        let lost: Vec<&str> = ledger
            .records
            .iter()
            .filter(|(m, uri, cid)| *m == i && held.get(uri) != Some(cid))
            .map(|(_, uri, _)| uri.as_str())
            .collect();
        if !lost.is_empty() {
            r.violations.push(format!(
                "{}: {} acknowledged record(s) missing or changed, e.g. {}",
                run.d.nodes[i].name,
                lost.len(),
                lost[0]
            ));
        }
    }
    let status = run.d.collective_status(0)?;
    let consents = status["consents"].as_array().cloned().unwrap_or_default();
    for (&(m, template), attempts) in &ledger.consents {
        r.consents += attempts
            .iter()
            .filter(|(_, o)| *o == Outcome::Acked)
            .count() as u64;
        let Some(last) = attempts.iter().rposition(|(_, o)| *o == Outcome::Acked) else {
            continue;
        };
        let allowed: BTreeSet<bool> = attempts[last..]
            .iter()
            .enumerate()
            .filter(|(k, (_, o))| *k == 0 || *o == Outcome::Unknown)
            .map(|(_, (g, _))| *g)
            .collect();
        let did = &run.d.nodes[m].did;
        let now = consents
            .iter()
            .find(|c| c["member"] == did.as_str() && c["template"] == template)
            .is_some_and(|c| c["granted"] == true);
        if !allowed.contains(&now) {
            r.violations.push(format!(
                "{}'s {template} consent is {now}, but its last acknowledged change set it {}",
                run.d.nodes[m].name, attempts[last].0
            ));
        }
    }
    let elections = status["elections"].as_array().cloned().unwrap_or_default();
    r.elections = (
        ledger.elections_opened,
        elections
            .iter()
            .filter(|e| !e["certified"].is_null())
            .count() as u64,
    );
    for (election, (acked, attempted)) in &ledger.ballots {
        r.ballots += acked.len() as u64;
        let Some(e) = elections.iter().find(|e| e["id"] == election.as_str()) else {
            r.violations.push(format!(
                "election {election} (opened, acknowledged) is unknown"
            ));
            continue;
        };
        let voters = e["voters"].as_u64().unwrap_or(0) as usize;
        let counted = e["certified"]["ballots"].as_u64().map(|b| b as usize);
        if voters < acked.len() || voters > attempted.len() {
            r.violations.push(format!(
                "election {election}: {voters} ballots held, {} acknowledged, {} attempted",
                acked.len(),
                attempted.len()
            ));
        }
        // A certified result counts only ballots cast before the close, all of which are here.
        if counted.is_some_and(|c| c > voters) {
            r.violations.push(format!(
                "election {election}: counted more ballots than it holds"
            ));
        }
    }
    Ok(())
}

/// No panic in any node's log.
fn check_logs(run: &mut Run) {
    for node in &run.d.nodes {
        let Ok(log) = std::fs::read_to_string(node.log()) else {
            continue;
        };
        if let Some(line) = log.lines().find(|l| l.contains("panicked")) {
            run.report
                .violations
                .push(format!("{} panicked: {line}", node.name));
        }
    }
}

fn print_summary(r: &ChaosReport, opts: &ChaosOptions) {
    println!();
    println!(
        "Chaos summary (seed {}, {} member nodes, {} of faults, {} in all)",
        r.seed,
        opts.nodes,
        fmt_d(opts.duration),
        fmt_d(r.wall)
    );
    let total: u64 = r.faults.values().sum();
    println!("  faults injected: {total}");
    for (kind, count) in &r.faults {
        println!("    {kind:<28} {count}");
    }
    println!(
        "  records acknowledged:        {} ({} writes refused or failed while faulted)",
        r.records, r.record_failures
    );
    println!("  consent changes acknowledged: {}", r.consents);
    println!(
        "  ballots acknowledged:        {} in {} elections opened, {} certified",
        r.ballots, r.elections.0, r.elections.1
    );
    println!(
        "  outsider probes:             {} ({} refused by a steward as not-a-member; anything served is a violation)",
        r.probes, r.probes_refused
    );
    if !r.failures.is_empty() {
        println!("  why writes failed (most frequent):");
        for (why, count) in &r.failures {
            println!("    {count:>5}  {why}");
        }
    }
    let d = |x: Option<Duration>| x.map_or("never".to_string(), fmt_d);
    println!("  convergence after last heal: {}", d(r.convergence));
    println!("  replicas equal after that:   {}", d(r.replicas));
    let rss: Vec<String> = r
        .max_rss_kib
        .iter()
        .map(|(n, k)| format!("{n} {} MiB", k / 1024))
        .collect();
    println!("  highest RSS:                 {}", rss.join(", "));
    if r.violations.is_empty() {
        println!("  invariant violations:        0");
    } else {
        println!("  invariant violations:        {}", r.violations.len());
        for v in &r.violations {
            println!("    - {v}");
        }
        println!(
            "  replay: guild-devnet chaos --nodes {} --duration {}s --seed {}",
            opts.nodes,
            opts.duration.as_secs(),
            r.seed
        );
    }
}
