//! The workload: members write records, toggle consents and vote, as people would, through
//! the `guild` CLI; an outsider keeps asking the stewards for the collective's data.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::SplitMix64;
use serde_json::{Value, json};

use crate::Exe;

use super::*;

/// What a write's answer said: acknowledged, or unknown (it failed, and may or may not have
/// happened, e.g. the node was killed while answering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Acked,
    Unknown,
}

/// What the workload did, for the invariants.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    /// Acknowledged records: (member, uri, cid).
    pub(super) records: Vec<(usize, String, String)>,
    pub(super) record_failures: u64,
    /// Consent attempts per (member, template), in order: (granted, outcome).
    pub(super) consents: BTreeMap<(usize, &'static str), Vec<(bool, Outcome)>>,
    /// Ballots per election: (acknowledged, attempted) voters.
    pub(super) ballots: BTreeMap<String, (BTreeSet<usize>, BTreeSet<usize>)>,
    pub(super) elections_opened: u64,
    /// Why writes failed: (what, first line of the error) → count.
    pub(super) failures: BTreeMap<String, u64>,
    /// Outsider probes, and what was served to it (violations).
    pub(super) probes: u64,
    /// Probes the steward answered with a refusal naming why (not-a-member).
    pub(super) probes_refused: u64,
    pub(super) served: Vec<String>,
}

impl Ledger {
    pub(super) fn failed(&mut self, what: &str, error: &str) {
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
                } else if w.starts_with(|c: char| c.is_ascii_digit())
                    && (w.contains(':') || w.chars().all(|c| c.is_ascii_digit()))
                {
                    // Times and counts ("closed at 2026-…Z", "failed 3 s ago").
                    "<n>"
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
pub(super) struct Cli {
    pub(super) exe: Exe,
    pub(super) dirs: Vec<PathBuf>,
}

impl Cli {
    pub(super) fn run(&self, i: usize, args: &[&str]) -> Result<String, String> {
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
pub(super) fn nap(stop: &AtomicBool, d: Duration) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
    }
    !stop.load(Ordering::SeqCst)
}

pub(super) fn between(rng: &mut SplitMix64, lo: u64, hi: u64) -> u64 {
    lo + rng.next_u64() % (hi - lo + 1)
}

/// One member's writes until `stop`: mostly records, sometimes a consent toggled.
pub(super) fn member_loop(
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
pub(super) fn election_loop(
    cli: &Cli,
    dids: &[String],
    seed: u64,
    stop: &AtomicBool,
    ledger: &Mutex<Ledger>,
) {
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
pub(super) fn close_election(
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
pub(super) fn outsider_loop(
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
