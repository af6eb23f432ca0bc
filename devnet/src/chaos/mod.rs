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

use std::collections::BTreeMap;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use rand_core::SeedableRng;
use rand_xoshiro::SplitMix64;
use serde_json::Value;

use crate::{Devnet, Exe, fmt_d, replicas_match, shared_view};

mod checks;
mod faults;
mod links;
mod nodes;
mod workload;

use checks::*;
use faults::*;
use links::*;
use nodes::*;
use workload::*;

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
    // Distinct ports (each is released before the next is found).
    let mut ports: Vec<u16> = Vec::with_capacity(n + 1);
    while ports.len() <= n {
        let p = free_port()?;
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
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
