//! The devnet: a local Guild collective of real `guild` node processes on loopback, each with
//! its own key, data directory, ports and log under one directory (`.devnet/` by default).
//!
//! Owns: starting, watching and stopping node processes, and the demo story that drives them
//! only through what a person uses (the `guild` CLI, and the same XRPC endpoints to watch the
//! nodes converge). Must not: reach into a node's store or state, or hold protocol logic; it is
//! a harness, depended on by nothing but the end-to-end tests.
//!
//! Nodes run with mDNS off and no bootstrap peers, as members on different networks would:
//! they find each other through invites and the addresses members learn from each other.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use guild_api::Client;
use serde_json::{Value, json};

mod chaos;
mod feed;
mod licensing;
mod web;

pub use chaos::{ChaosOptions, ChaosReport, chaos};

/// The sample corpus shipped in `devnet/data/` (texts written for the project, each labelled
/// with its topic).
pub const CORPUS: &str = include_str!("../data/corpus.jsonl");
/// The demo builder's labelled evaluation set (`{"label", "text"}` lines; see data/README.md).
pub const EVAL: &str = include_str!("../data/eval.jsonl");
/// Open data the demo builder already has in one topic (the commons baseline).
pub const COMMONS: &str = include_str!("../data/commons.jsonl");

/// How long any one wait may take before the check fails.
const DEADLINE: Duration = Duration::from_secs(90);
/// How often conditions are polled.
const POLL: Duration = Duration::from_millis(50);

/// The program that runs `guild` commands: the devnet binary itself (`guild-devnet guild …`),
/// or a `guild` binary.
#[derive(Debug, Clone)]
pub struct Exe {
    /// The executable.
    pub program: PathBuf,
    /// Arguments before the `guild` command's own.
    pub prefix: Vec<OsString>,
}

impl Exe {
    /// This devnet binary, whose `guild` subcommand is the node's CLI.
    pub fn current() -> Result<Exe> {
        Ok(Exe {
            program: std::env::current_exe().context("cannot find the devnet's own executable")?,
            prefix: vec!["guild".into()],
        })
    }

    /// A `guild` binary.
    pub fn guild(program: impl Into<PathBuf>) -> Exe {
        Exe {
            program: program.into(),
            prefix: Vec::new(),
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.prefix);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("GUILD_") {
                c.env_remove(&k);
            }
        }
        c
    }
}

/// One node of the devnet.
#[derive(Debug)]
pub struct Node {
    /// `node-1` (the founder), `node-2`, …
    pub name: String,
    /// Its data directory.
    pub dir: PathBuf,
    /// Its member's DID.
    pub did: String,
    /// Its API base URL while it runs.
    pub api: Option<String>,
    child: Option<Child>,
    token: String,
}

impl Node {
    /// The node's log file.
    pub fn log(&self) -> PathBuf {
        self.dir.join("node.log")
    }

    /// The last `n` lines of its log (or why they cannot be read).
    pub fn log_tail(&self, n: usize) -> String {
        match std::fs::read_to_string(self.log()) {
            Ok(text) => {
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(n)..].join("\n")
            }
            Err(e) => format!("(cannot read it: {e})"),
        }
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn client(&self) -> Result<Client> {
        let api = self
            .api
            .as_ref()
            .ok_or_else(|| anyhow!("{} is not running", self.name))?;
        Client::new(api.clone(), Some(self.token.clone())).map_err(|e| anyhow!("{e}"))
    }

    fn query(&self, nsid: &str, params: &[(&str, &str)]) -> Result<Value> {
        self.client()?
            .query(nsid, params)
            .map_err(|e| anyhow!("{}: {nsid}: {e}", self.name))
    }
}

/// A running devnet. Dropping it stops every node it started (unless kept).
#[derive(Debug)]
pub struct Devnet {
    exe: Exe,
    root: PathBuf,
    /// The nodes, founder first.
    pub nodes: Vec<Node>,
    stop: Arc<AtomicBool>,
    keep: bool,
    detached: bool,
}

/// The file that records a devnet's processes, for `down` and `status`.
const STATE: &str = "devnet.json";

impl Devnet {
    /// Removes an earlier devnet in `root` (stopping its processes), then makes `n` data
    /// directories with `guild init`.
    pub fn create(exe: Exe, root: &Path, n: usize, stop: Arc<AtomicBool>) -> Result<Devnet> {
        if root.exists() {
            stop_recorded(root)?;
            std::fs::remove_dir_all(root)
                .with_context(|| format!("cannot remove the old devnet in {}", root.display()))?;
        }
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        let root = root
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", root.display()))?;
        let mut nodes = Vec::new();
        for i in 1..=n {
            let name = format!("node-{i}");
            let dir = root.join(&name);
            let out = exe
                .command()
                .arg("init")
                .arg("--data-dir")
                .arg(&dir)
                .args([
                    "--p2p-listen",
                    "/ip4/127.0.0.1/tcp/0",
                    "--no-mdns",
                    "--single-machine",
                ])
                .stdin(Stdio::null())
                .output()
                .context("cannot run guild init")?;
            if !out.status.success() {
                bail!(
                    "guild init for {name} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            let did = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let token = std::fs::read_to_string(dir.join("admin-token"))
                .with_context(|| format!("{name}: no admin token"))?
                .trim()
                .to_string();
            nodes.push(Node {
                name,
                dir,
                did,
                api: None,
                child: None,
                token,
            });
        }
        Ok(Devnet {
            exe,
            root,
            nodes,
            stop,
            keep: false,
            detached: false,
        })
    }

    /// The devnet's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn check_stop(&self) -> Result<()> {
        if self.stop.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        Ok(())
    }

    /// Starts node `i`'s daemon and waits until it serves.
    pub fn start(&mut self, i: usize) -> Result<()> {
        let node = &self.nodes[i];
        let addr_file = node.dir.join("node.addr");
        let _ = std::fs::remove_file(&addr_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.log())
            .with_context(|| format!("cannot open {}", node.log().display()))?;
        let mut cmd = self.exe.command();
        cmd.arg("node")
            .arg("--data-dir")
            .arg(&node.dir)
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        #[cfg(unix)]
        if self.detached {
            // Out of the terminal's process group: a later Ctrl-C there leaves it running.
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", node.name))?;
        let name = node.name.clone();
        self.nodes[i].child = Some(child);
        self.record()?;
        let started = Instant::now();
        loop {
            self.check_stop()?;
            if let Some(c) = self.nodes[i].child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                // The log's end in the error itself: a test's devnet directory is often
                // gone by the time anyone reads it.
                bail!(
                    "{name} exited at start ({status}); see {}; it ends:\n{}",
                    self.nodes[i].log().display(),
                    self.nodes[i].log_tail(20)
                );
            }
            if let Ok(url) = std::fs::read_to_string(&addr_file) {
                let url = url.trim().to_string();
                self.nodes[i].api = Some(url);
                if self.nodes[i].query("_health", &[]).is_ok() {
                    break;
                }
            }
            if started.elapsed() > DEADLINE {
                bail!("{name} did not start serving within {DEADLINE:?}");
            }
            std::thread::sleep(POLL);
        }
        self.record()
    }

    /// Kills node `i` with SIGKILL (no chance to tidy up), and reaps it.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        if let Some(mut c) = self.nodes[i].child.take() {
            c.kill()
                .with_context(|| format!("cannot kill {}", self.nodes[i].name))?;
            let _ = c.wait();
        }
        self.nodes[i].api = None;
        self.record()
    }

    /// Stops every node (SIGTERM, then SIGKILL after 10 s).
    pub fn stop_all(&mut self) {
        for n in &mut self.nodes {
            if let Some(c) = n.child.as_mut() {
                terminate(c.id());
            }
        }
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    match c.try_wait() {
                        Ok(Some(_)) => break,
                        Ok(None) if Instant::now() < deadline => {
                            std::thread::sleep(POLL);
                        }
                        _ => {
                            let _ = c.kill();
                            let _ = c.wait();
                            break;
                        }
                    }
                }
            }
            n.api = None;
        }
        let _ = std::fs::remove_file(self.root.join(STATE));
    }

    /// Writes the devnet's processes to `devnet.json`.
    fn record(&self) -> Result<()> {
        let nodes: Vec<Value> = self
            .nodes
            .iter()
            .map(|n| {
                json!({
                    "name": n.name, "dir": n.dir, "did": n.did,
                    "pid": n.pid(), "api": n.api,
                })
            })
            .collect();
        let path = self.root.join(STATE);
        let tmp = self.root.join(format!("{STATE}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(&json!({"nodes": nodes}))?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Runs `guild <args> --data-dir <node i>` to completion.
    fn run(&self, i: usize, args: &[&str]) -> Result<std::process::Output> {
        self.check_stop()?;
        self.exe
            .command()
            .args(args)
            .arg("--data-dir")
            .arg(&self.nodes[i].dir)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run guild {}", args.join(" ")))
    }

    /// Runs `guild <args> --data-dir <node i>` and returns its standard output, trimmed.
    pub fn guild(&self, i: usize, args: &[&str]) -> Result<String> {
        let out = self.run(i, args)?;
        if !out.status.success() {
            bail!(
                "{}: `guild {}` failed: {}",
                self.nodes[i].name,
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Like [`Devnet::guild`], for a command that must fail: returns its error output.
    pub fn guild_fails(&self, i: usize, args: &[&str]) -> Result<String> {
        let out = self.run(i, args)?;
        if out.status.success() {
            bail!(
                "{}: `guild {}` succeeded where it must fail: {}",
                self.nodes[i].name,
                args.join(" "),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }

    /// Node `i`'s view of the collective (`coop.guild.collective.getStatus`).
    pub fn collective_status(&self, i: usize) -> Result<Value> {
        self.nodes[i].query("coop.guild.collective.getStatus", &[])
    }

    /// [`Devnet::collective_status`] with at most `limit` members, former members and
    /// consent registers listed (a large collective's are megabytes).
    pub fn collective_status_limited(&self, i: usize, limit: u64) -> Result<Value> {
        let limit = limit.to_string();
        self.nodes[i].query("coop.guild.collective.getStatus", &[("limit", &limit)])
    }

    /// Node `i`'s repositories (`coop.guild.node.getStatus`).
    pub fn node_status(&self, i: usize) -> Result<Value> {
        self.nodes[i].query("coop.guild.node.getStatus", &[])
    }

    /// Polls until `check` holds (it may fail transiently: errors count as "not yet"), for up
    /// to [`DEADLINE`]; returns how long it took, or the last reason it did not hold.
    pub fn wait_for(
        &self,
        what: &str,
        mut check: impl FnMut(&Devnet) -> Result<bool>,
    ) -> Result<Duration> {
        let started = Instant::now();
        let mut last;
        loop {
            self.check_stop()?;
            match check(self) {
                Ok(true) => return Ok(started.elapsed()),
                Ok(false) => last = "not yet".into(),
                Err(e) => last = format!("{e:#}"),
            }
            if started.elapsed() > DEADLINE {
                bail!("{what}: not within {DEADLINE:?} ({last})");
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until the nodes `among` report the same governance heads and state.
    pub fn converge(&self, among: &[usize]) -> Result<Duration> {
        self.wait_for("the same governance heads and state on every node", |d| {
            let views: Vec<Value> = among
                .iter()
                .map(|&i| d.collective_status(i).map(|s| shared_view(&s)))
                .collect::<Result<_>>()?;
            Ok(views.windows(2).all(|w| w[0] == w[1]))
        })
    }

    /// Each running node's resident memory, in KiB (Linux).
    pub fn rss_kib(&self) -> Vec<(String, Option<u64>)> {
        self.nodes
            .iter()
            .map(|n| (n.name.clone(), n.pid().and_then(rss_of)))
            .collect()
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        if !self.keep {
            self.stop_all();
        }
    }
}

/// What must be equal on every node: the log's heads and size, and the folded state (not the
/// node's own role, peers or sync backlog).
pub fn shared_view(s: &Value) -> Value {
    json!({
        "heads": s["sync"]["heads"],
        "ops": s["sync"]["ops"],
        "members": s["members"],
        "departed": s["departed"],
        "stewards": s["stewards"],
        "consents": s["consents"],
        "elections": s["elections"],
        "agreements": s["agreements"],
        "openInvites": s["openInvites"],
        "templates": s["templates"],
    })
}

fn rss_of(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn terminate(pid: u32) {
    #[cfg(unix)]
    {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        if let Ok(pid) = i32::try_from(pid) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    #[cfg(not(unix))]
    let _ = pid;
}

fn alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        use nix::sys::signal::kill;
        use nix::unistd::Pid;
        i32::try_from(pid).is_ok_and(|p| kill(Pid::from_raw(p), None).is_ok())
            && std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(true)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        false
    }
}

/// Stops the processes a devnet in `root` recorded (from an earlier run or `up`).
fn stop_recorded(root: &Path) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(root.join(STATE)) else {
        return Ok(());
    };
    let state: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not the devnet's state", root.join(STATE).display()))?;
    let pids: Vec<u32> = state["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["pid"].as_u64())
        .filter_map(|p| u32::try_from(p).ok())
        .filter(|p| alive(*p))
        .collect();
    for p in &pids {
        terminate(*p);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
    #[cfg(unix)]
    for p in pids.iter().filter(|p| alive(**p)) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        if let Ok(pid) = i32::try_from(*p) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    let _ = std::fs::remove_file(root.join(STATE));
    Ok(())
}

/// What `demo` runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// How to run `guild`.
    pub exe: Exe,
    /// The devnet's directory (removed first if it exists).
    pub root: PathBuf,
    /// Nodes, at least 4.
    pub nodes: usize,
    /// Only the corpus's first N records.
    pub records: Option<usize>,
    /// Leave the nodes running.
    pub keep: bool,
    /// The corpus (JSONL: `{"collection", "record"}` with a `topic` in each record).
    pub corpus: String,
}

/// What a demo measured.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// Each step's convergence time (every node the same heads and state), by step.
    pub convergence: Vec<(String, Duration)>,
    /// Each node's RSS at the end, KiB.
    pub rss_kib: Vec<(String, Option<u64>)>,
    /// The whole demo's wall time.
    pub wall: Duration,
}

/// Prints a step's line: what was done and verified, and how long it took.
struct Steps {
    started: Instant,
    convergence: Vec<(String, Duration)>,
    n: usize,
}

impl Steps {
    fn done(&mut self, took: Duration, what: &str, converged: Option<Duration>) {
        self.n += 1;
        let conv = match converged {
            Some(c) => {
                self.convergence.push((what.to_string(), c));
                format!("; converged in {}", fmt_d(c))
            }
            None => String::new(),
        };
        println!("{:>2}. ok  {what}  ({}{conv})", self.n, fmt_d(took));
    }
}

fn fmt_d(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// The corpus split among `n` members: blocks of ten lines (one topic each) dealt in turn.
fn split_corpus(corpus: &str, n: usize, limit: Option<usize>) -> Result<Vec<Vec<Value>>> {
    let mut out = vec![Vec::new(); n];
    for (i, line) in corpus
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(limit.unwrap_or(usize::MAX))
        .enumerate()
    {
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("corpus line {}: not JSON", i + 1))?;
        if v["record"]["topic"].as_str().is_none() {
            bail!("corpus line {}: the record has no topic", i + 1);
        }
        out[(i / 10) % n].push(v);
    }
    Ok(out)
}

fn topics(records: &[Value]) -> BTreeMap<String, usize> {
    let mut t = BTreeMap::new();
    for r in records {
        if let Some(topic) = r["record"]["topic"].as_str() {
            *t.entry(topic.to_string()).or_insert(0) += 1;
        }
    }
    t
}

/// The repo entry (`coop.guild.node.getStatus`'s `repos`) of `did` in `space` on a node.
fn repo_entry(node_status: &Value, did: &str, space: &str) -> Option<(String, u64)> {
    node_status["repos"].as_array()?.iter().find_map(|r| {
        (r["did"] == did && r["space"] == space).then(|| {
            (
                r["commit"].as_str().unwrap_or_default().to_string(),
                r["records"].as_u64().unwrap_or(0),
            )
        })
    })
}

/// Every steward's node holds, for every member, a replica whose head and record count equal
/// the member's own.
fn replicas_match(d: &Devnet, members: &[usize], space: &str) -> Result<bool> {
    let s = d.collective_status(members[0])?;
    let stewards: Vec<String> = s["stewards"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let own: Vec<(String, Option<(String, u64)>)> = members
        .iter()
        .map(|&i| {
            let did = d.nodes[i].did.clone();
            d.node_status(i).map(|ns| {
                let e = repo_entry(&ns, &did, space);
                (did, e)
            })
        })
        .collect::<Result<_>>()?;
    for steward in &stewards {
        let Some(si) = d.nodes.iter().position(|n| &n.did == steward) else {
            bail!("steward {steward} is not a devnet node");
        };
        let ns = d.node_status(si)?;
        for (did, head) in &own {
            if head.is_none() || repo_entry(&ns, did, space) != *head {
                return Ok(false);
            }
        }
    }
    Ok(!stewards.is_empty())
}

/// A flag that Ctrl-C sets, and that every poll loop checks.
fn interrupt_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // A second handler (the tests run several runs in one process) is refused; that process's
    // first run's flag is then the one Ctrl-C sets.
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    stop
}

/// Runs the collective's story on fresh nodes and checks every step. Prints one line per step
/// and a summary; fails naming the check that failed.
pub fn demo(opts: DemoOptions) -> Result<DemoReport> {
    if opts.nodes < 4 {
        bail!("the demo needs at least 4 nodes (--nodes {})", opts.nodes);
    }
    let stop = interrupt_flag();
    let wall = Instant::now();
    let n = opts.nodes;
    println!(
        "Guild devnet: a collective of {n} real node processes on loopback, in {}",
        opts.root.display()
    );
    let mut steps = Steps {
        started: wall,
        convergence: Vec::new(),
        n: 0,
    };
    let d = start_nodes(&opts, stop, &mut steps)?;
    let id = found(&d, &mut steps)?;
    let mut story = Story {
        d,
        steps,
        n,
        all: (0..n).collect(),
        id,
        quorum: 2,
    };
    story.join()?;
    story.import(&opts.corpus, opts.records)?;
    story.consent()?;
    story.elect()?;
    story.replicas()?;
    story.kill_and_restart()?;
    let offer = story.agreement()?;
    let mut follower = story.subscribe()?;
    let first = story.bundle(&offer, "first")?;
    story.contributions(&first)?;
    story.feed_bundle(&mut follower, &first)?;
    story.trace_leak(&follower, &first)?;
    story.payouts(&offer)?;
    let second = story.revoke_and_rebundle(&offer, &first)?;
    story.feed_revocation(&mut follower, &second)?;
    drop(follower);
    story.web()?;
    story.leave()?;
    let Story { d, steps, id, .. } = story;
    let rss = d.rss_kib();
    summary(&d, &id, &steps, &rss, opts.keep);
    Ok(DemoReport {
        convergence: steps.convergence.clone(),
        rss_kib: rss,
        wall: wall.elapsed(),
    })
}

/// The demo's first step: a fresh devnet of `opts.nodes` nodes, all started.
fn start_nodes(opts: &DemoOptions, stop: Arc<AtomicBool>, steps: &mut Steps) -> Result<Devnet> {
    let n = opts.nodes;
    let t = Instant::now();
    let mut d = Devnet::create(opts.exe.clone(), &opts.root, n, stop)?;
    d.keep = opts.keep;
    // Kept nodes outlive the demo: out of the terminal's process group, so a later Ctrl-C
    // there does not stop them.
    d.detached = opts.keep;
    feed::serve_tls(&d.nodes[0])?;
    for i in 0..n {
        d.start(i)?;
    }
    steps.done(
        t.elapsed(),
        &format!(
            "started {n} nodes, each with its own key, data directory and ports (mDNS off); node-1 serves builders on a public address over TLS (a self-signed certificate)"
        ),
        None,
    );
    Ok(d)
}

/// The founder (node-1) creates the collective; returns its id.
fn found(d: &Devnet, steps: &mut Steps) -> Result<String> {
    let t = Instant::now();
    let id = d.guild(
        0,
        &[
            "collective",
            "create",
            "--name",
            "Devnet Writers",
            "--purpose",
            "Rehearsing a charter",
            "--seats",
            "3",
            "--countersignatures",
            "2",
            "--admission",
            "invite",
            "--canaries",
            &feed::CANARIES.to_string(),
        ],
    )?;
    let s = d.collective_status(0)?;
    let templates = s["templates"].as_array().map_or(0, Vec::len);
    if s["stewards"] != json!([d.nodes[0].did]) || templates < 5 {
        bail!(
            "check `collective created`: founder should be the only steward with 5 templates: {s}"
        );
    }
    steps.done(
        t.elapsed(),
        &format!(
            "node-1 founded {id}: 3 steward seats, 2 countersignatures, invite admission, {templates} licence templates, {} licensee canaries per bundle",
            feed::CANARIES
        ),
        None,
    );
    Ok(id)
}

/// What the demo's steps after the founding share.
struct Story {
    d: Devnet,
    steps: Steps,
    /// How many nodes.
    n: usize,
    /// Every node's index.
    all: Vec<usize>,
    /// The collective's id.
    id: String,
    /// Steward signatures an agreement or a bundle needs (the charter's countersignatures).
    quorum: usize,
}

impl Story {
    /// Members join by invite, one at a time.
    fn join(&mut self) -> Result<()> {
        let (d, id) = (&self.d, &self.id);
        let mut joined = vec![0];
        for i in 1..self.n {
            let t = Instant::now();
            let invite = d.guild(0, &["collective", "invite"])?;
            let got = d.guild(i, &["collective", "join", &invite])?;
            if got != *id {
                bail!("check `join`: {} joined {got}, not {id}", d.nodes[i].name);
            }
            joined.push(i);
            let c = d.converge(&joined)?;
            let members = d.collective_status(i)?["members"]
                .as_array()
                .map_or(0, Vec::len);
            if members != joined.len() {
                bail!("check `join`: {members} members, expected {}", joined.len());
            }
            self.steps.done(
                t.elapsed(),
                &format!(
                    "{} joined by invite; {members} members on every node",
                    d.nodes[i].name
                ),
                Some(c),
            );
        }
        Ok(())
    }

    /// Every member imports sample works (its share of the corpus) into the collective's
    /// space.
    fn import(&mut self, corpus: &str, records: Option<usize>) -> Result<()> {
        let (d, id, n) = (&self.d, &self.id, self.n);
        let t = Instant::now();
        let shares = split_corpus(corpus, n, records)?;
        let mut total = 0;
        for (i, share) in shares.iter().enumerate() {
            let file = d.nodes[i].dir.join("works.jsonl");
            let text: String = share.iter().map(|v| format!("{v}\n")).collect();
            std::fs::write(&file, text)
                .with_context(|| format!("cannot write {}", file.display()))?;
            let path = file.to_string_lossy().into_owned();
            d.guild(i, &["import", &path, "--space", id])?;
            total += share.len();
        }
        for (i, share) in shares.iter().enumerate() {
            let ns = d.node_status(i)?;
            let (_, records) = repo_entry(&ns, &d.nodes[i].did, id).ok_or_else(|| {
                anyhow!(
                    "check `import`: {} has no repo in the space",
                    d.nodes[i].name
                )
            })?;
            // The space's declaration record comes first.
            if records != share.len() as u64 + 1 {
                bail!(
                    "check `import`: {} holds {records} records in the space, expected {} + its declaration",
                    d.nodes[i].name,
                    share.len()
                );
            }
        }
        let all_topics = topics(&shares.concat());
        let c = d.converge(&self.all)?;
        self.steps.done(
            t.elapsed(),
            &format!(
                "{n} members imported {total} works in {} topics ({}) into the collective's space",
                all_topics.len(),
                all_topics.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
            Some(c),
        );
        Ok(())
    }

    /// Consents differ: node-2 grants research only, node-3 nothing, the others commercial
    /// training with attribution.
    fn consent(&mut self) -> Result<()> {
        let d = &self.d;
        let t = Instant::now();
        d.guild(1, &["consent", "grant", "--template", "research-open"])?;
        let commercial: Vec<usize> = std::iter::once(0).chain(3..self.n).collect();
        for &i in &commercial {
            d.guild(
                i,
                &[
                    "consent",
                    "grant",
                    "--template",
                    "training-commercial-attribution",
                ],
            )?;
        }
        let c = d.converge(&self.all)?;
        let s = d.collective_status(0)?;
        let consents = s["consents"].as_array().cloned().unwrap_or_default();
        let has = |i: usize, t: &str| {
            consents.iter().any(|c| {
                c["member"] == d.nodes[i].did && c["template"] == t && c["granted"] == true
            })
        };
        if !has(1, "research-open")
            || consents.iter().any(|c| c["member"] == d.nodes[2].did)
            || !commercial
                .iter()
                .all(|&i| has(i, "training-commercial-attribution"))
        {
            bail!("check `consents`: not as granted: {consents:?}");
        }
        self.steps.done(
            t.elapsed(),
            &format!(
                "consents: node-2 research only, node-3 none yet, {} others commercial training with attribution",
                commercial.len()
            ),
            Some(c),
        );
        Ok(())
    }

    /// An election fills the three seats: every member approves node-1, node-2 and node-4;
    /// the founder tells it after its close time.
    fn elect(&mut self) -> Result<()> {
        let (d, n) = (&self.d, self.n);
        let t = Instant::now();
        let candidates = [0usize, 1, 3];
        let mut open = vec!["election", "open", "--seats", "3", "--closes-in", "3s"];
        for &c in &candidates {
            open.push("--candidate");
            open.push(&d.nodes[c].did);
        }
        let opened = Instant::now();
        let election = d.guild(1, &open)?;
        d.converge(&self.all)?;
        for i in 0..n {
            let mut vote = vec!["election", "vote", "--election", election.as_str()];
            for &c in &candidates {
                vote.push("--approve");
                vote.push(&d.nodes[c].did);
            }
            d.guild(i, &vote)?;
        }
        d.wait_for("every ballot reaches the teller", |d| {
            Ok(d.collective_status(0)?["elections"][0]["voters"] == n)
        })?;
        // The teller may seal only after the close time (judged by its node's clock).
        d.wait_for("the teller closes the election after its close time", |d| {
            if opened.elapsed() < Duration::from_secs(3) {
                return Ok(false);
            }
            match d.guild(0, &["election", "close", "--election", &election]) {
                Ok(_) => Ok(true),
                Err(e) if format!("{e:#}").contains("before its close time") => Ok(false),
                Err(e) => Err(e),
            }
        })?;
        let mut expected: Vec<String> =
            candidates.iter().map(|&c| d.nodes[c].did.clone()).collect();
        expected.sort();
        let c = d.wait_for("the certified result on every node", |d| {
            certified_everywhere(d, n, &expected)
        })?;
        let c = c + d.converge(&self.all)?;
        self.steps.done(
            t.elapsed(),
            &format!(
                "election certified on every node: node-1, node-2, node-4 fill the 3 steward seats ({n} ballots)"
            ),
            Some(c),
        );
        Ok(())
    }

    /// Stewards hold verified replicas of every member's space.
    fn replicas(&mut self) -> Result<()> {
        let t = Instant::now();
        let (all, id) = (&self.all, &self.id);
        let c = self
            .d
            .wait_for("every steward holds every member's replica", |d| {
                replicas_match(d, all, id)
            })?;
        self.steps.done(
            t.elapsed(),
            "each steward's replica of every member's space has the member's head and record count",
            Some(c),
        );
        Ok(())
    }

    /// A member's node (node-3) is killed while the others write; it restarts and catches up.
    fn kill_and_restart(&mut self) -> Result<()> {
        let t = Instant::now();
        let victim = 2;
        self.d.kill(victim)?;
        let live: Vec<usize> = self.all.iter().copied().filter(|&i| i != victim).collect();
        let (d, id) = (&self.d, &self.id);
        d.guild(1, &["consent", "revoke", "--template", "research-open"])?;
        let extra = json!({
            "$type": "coop.guild.data.text",
            "title": "Written while node-3 was down",
            "body": "A late addition to the collective, added while one member's node was offline.",
            "topic": "music",
            "createdAt": "2026-11-30T12:00:00.000Z",
        })
        .to_string();
        for _ in 0..3 {
            d.guild(
                3,
                &[
                    "record",
                    "add",
                    "--space",
                    id,
                    "--collection",
                    "coop.guild.data.text",
                    "--json",
                    &extra,
                ],
            )?;
        }
        d.converge(&live)?;
        self.d.start(victim)?;
        let (d, id, all) = (&self.d, &self.id, &self.all);
        let c = d.converge(all)?;
        let r = d.wait_for("replicas after the restart", |d| replicas_match(d, all, id))?;
        self.steps.done(
            t.elapsed(),
            &format!(
                "node-3 killed (SIGKILL) while others wrote a revocation and 3 records; restarted and caught up (replicas equal {} later)",
                fmt_d(r)
            ),
            Some(c),
        );
        Ok(())
    }

    /// The last member leaves; from then on its node is refused the collective's data.
    fn leave(&mut self) -> Result<()> {
        let (d, n) = (&self.d, self.n);
        let t = Instant::now();
        let leaver = n - 1;
        let steward = d.nodes[1].did.clone();
        let before = d.guild(
            leaver,
            &["collective", "heads", "--from", &steward, "--json"],
        )?;
        let before: Value = serde_json::from_str(&before).context("heads: not JSON")?;
        // The space's repos (the members' public repos the steward holds are marked public).
        let held = before["heads"].as_array().map_or(0, |h| {
            h.iter()
                .filter(|h| h["public"] != Value::Bool(true))
                .count()
        });
        if held != n {
            bail!("check `heads before leaving`: the steward answered {held} heads, expected {n}");
        }
        d.guild(leaver, &["collective", "leave"])?;
        let c = d.converge(&self.all)?;
        let refused = d.guild_fails(leaver, &["collective", "heads", "--from", &steward])?;
        if !refused.contains("not-a-member") {
            bail!("check `refused after leaving`: expected not-a-member, got: {refused}");
        }
        self.steps.done(
            t.elapsed(),
            &format!(
                "{} left; asked node-2 for the space's repo heads it is refused (not-a-member), as a member it got {held}",
                d.nodes[leaver].name
            ),
            Some(c),
        );
        Ok(())
    }
}

/// Each of the `n` nodes has the election's certified result and `expected` (sorted) as its
/// stewards.
fn certified_everywhere(d: &Devnet, n: usize, expected: &[String]) -> Result<bool> {
    for i in 0..n {
        let s = d.collective_status(i)?;
        let mut stewards: Vec<String> = s["stewards"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        stewards.sort();
        if s["elections"][0]["certified"].is_null() || stewards != expected {
            return Ok(false);
        }
    }
    Ok(true)
}

fn summary(d: &Devnet, id: &str, steps: &Steps, rss: &[(String, Option<u64>)], keep: bool) {
    let mut conv: Vec<Duration> = steps.convergence.iter().map(|(_, c)| *c).collect();
    conv.sort();
    let p50 = conv.get(conv.len() / 2).copied().unwrap_or_default();
    let max = conv.last().copied().unwrap_or_default();
    println!();
    println!(
        "All {} checks passed in {}. Convergence after a step: p50 {}, max {} ({} steps).",
        steps.n,
        fmt_d(steps.started.elapsed()),
        fmt_d(p50),
        fmt_d(max),
        conv.len()
    );
    println!("Collective {id}");
    for (node, (_, kib)) in d.nodes.iter().zip(rss) {
        println!(
            "  {}  {}  api {}  rss {}",
            node.name,
            node.did,
            node.api.as_deref().unwrap_or("-"),
            kib.map_or("-".into(), |k| format!("{:.1} MB", k as f64 / 1024.0))
        );
    }
    let r = d.root().display();
    // The command a person runs `guild` with here: this very binary (nothing is installed).
    let mut g = d.exe.program.display().to_string();
    for p in &d.exe.prefix {
        g.push(' ');
        g.push_str(&p.to_string_lossy());
    }
    println!(
        "Data directories: {r}/node-N (identity.key, config.toml, store/); logs: {r}/node-N/node.log"
    );
    if keep {
        println!("The nodes keep running; try (`{g}` is the `guild` CLI):");
        println!("  {g} collective status --data-dir {r}/node-1");
        println!(
            "  {g} record list --data-dir {r}/node-2 --space {id} --did {} --collection coop.guild.data.text",
            d.nodes[0].did
        );
        println!("  {g} peers --data-dir {r}/node-1");
        println!("  cargo run --release -p guild-devnet -- down");
    } else {
        println!(
            "The nodes are stopped. `cargo run --release -p guild-devnet -- up` keeps a devnet running;"
        );
        println!("then try (`{g}` is the `guild` CLI):");
        println!("  {g} collective status --data-dir {r}/node-1");
        println!("  {g} peers --data-dir {r}/node-1");
        println!("  cargo run --release -p guild-devnet -- down");
    }
}

/// `up`: a devnet with a founded collective that every node joined, left running.
pub fn up(exe: Exe, root: &Path, n: usize) -> Result<()> {
    if n < 1 {
        bail!("--nodes must be at least 1");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut d = Devnet::create(exe, root, n, stop)?;
    d.detached = true;
    for i in 0..n {
        d.start(i)?;
    }
    let id = d.guild(
        0,
        &[
            "collective",
            "create",
            "--name",
            "Devnet Writers",
            "--seats",
            "3",
        ],
    )?;
    for i in 1..n {
        let invite = d.guild(0, &["collective", "invite"])?;
        d.guild(i, &["collective", "join", &invite])?;
    }
    let all: Vec<usize> = (0..n).collect();
    let c = d.converge(&all)?;
    let invite = d.guild(0, &["collective", "invite"])?;
    d.keep = true;
    println!(
        "devnet up: collective {id}, {n} nodes, converged in {}",
        fmt_d(c)
    );
    for node in &d.nodes {
        println!(
            "  {}  api {}  data {}  did {}",
            node.name,
            node.api.as_deref().unwrap_or("-"),
            node.dir.display(),
            node.did
        );
    }
    println!("A fresh invite (for your own node: guild collective join '<invite>'):");
    println!("{invite}");
    println!("Stop it with: cargo run --release -p guild-devnet -- down");
    Ok(())
}

/// `down`: stops the devnet's nodes.
pub fn down(root: &Path) -> Result<()> {
    if !root.join(STATE).exists() {
        println!("no devnet running in {}", root.display());
        return Ok(());
    }
    stop_recorded(root)?;
    println!(
        "devnet in {} stopped (its data stays until the next demo or up)",
        root.display()
    );
    Ok(())
}

/// `status`: each node's process and view of the collective.
pub fn status(root: &Path) -> Result<()> {
    let path = root.join(STATE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no devnet in {} (start one with `up`)", root.display()))?;
    let state: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not the devnet's state", path.display()))?;
    for n in state["nodes"].as_array().into_iter().flatten() {
        let name = n["name"].as_str().unwrap_or("?");
        let pid = n["pid"].as_u64().and_then(|p| u32::try_from(p).ok());
        let running = pid.is_some_and(alive);
        let view = match (running, n["api"].as_str(), n["dir"].as_str()) {
            (true, Some(api), Some(dir)) => {
                let token =
                    std::fs::read_to_string(Path::new(dir).join("admin-token")).unwrap_or_default();
                match Client::new(api, Some(token.trim().to_string()))
                    .and_then(|c| c.query("coop.guild.collective.getStatus", &[]))
                {
                    Ok(s) => format!(
                        "{} members, {} ops, role {}, {} peers",
                        s["members"].as_array().map_or(0, Vec::len),
                        s["sync"]["ops"],
                        s["role"].as_str().unwrap_or("none"),
                        s["peers"].as_array().map_or(0, Vec::len)
                    ),
                    Err(e) => format!("no collective view ({e})"),
                }
            }
            _ => "stopped".into(),
        };
        println!(
            "{name}  {}  pid {}  api {}  {view}",
            if running { "running" } else { "down   " },
            pid.map_or("-".into(), |p| p.to_string()),
            n["api"].as_str().unwrap_or("-"),
        );
    }
    Ok(())
}
