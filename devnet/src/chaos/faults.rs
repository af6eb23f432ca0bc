//! The faults, each injected, held and healed, with every node's RSS sampled meanwhile.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand_core::RngCore;
use rand_xoshiro::SplitMix64;

use crate::{Devnet, fmt_d};

use super::links::*;
use super::nodes::*;
use super::workload::*;
use super::*;

/// The kinds of fault, as named in the summary.
pub(super) const KILL: &str = "kill -9 and restart";
pub(super) const PARTITION: &str = "partition and heal";
pub(super) const LATENCY: &str = "added latency";
pub(super) const CLOCK: &str = "clock skew";
pub(super) const DISK: &str = "full disk";

/// The running collective under test.
pub(super) struct Run {
    pub(super) d: Devnet,
    pub(super) links: Vec<Link>,
    pub(super) ports: Vec<u16>,
    /// Member nodes (the outsider is node `n`).
    pub(super) n: usize,
    /// The node whose data directory is a tmpfs, if any.
    pub(super) disk_node: Option<usize>,
    pub(super) rng: SplitMix64,
    pub(super) report: ChaosReport,
    pub(super) max_rss_kib: u64,
    /// The collective's id.
    pub(super) id: String,
    /// Fault kinds not yet drawn in this round.
    pub(super) deck: Vec<&'static str>,
}

impl Run {
    pub(super) fn pick(&mut self, n: usize) -> usize {
        (self.rng.next_u64() % n as u64) as usize
    }

    /// Waits `d`, sampling every node's RSS once a second.
    pub(super) fn hold(&mut self, d: Duration) -> Result<()> {
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

    pub(super) fn sample_rss(&mut self) {
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

    pub(super) fn via(&self, from: usize) -> Vec<(u16, u16)> {
        self.links
            .iter()
            .filter(|l| l.from == from)
            .map(|l| (self.ports[l.to], l.port))
            .collect()
    }

    /// Restarts member `i` with its clock shifted by `offset` seconds.
    pub(super) fn restart_with_clock(&mut self, i: usize, offset: i64) -> Result<()> {
        self.d.kill(i)?;
        configure(&self.d.nodes[i].dir, self.ports[i], &self.via(i), offset)?;
        self.d.start(i)
    }

    /// One fault, held for a while, then healed.
    pub(super) fn fault(&mut self) -> Result<()> {
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
            KILL => self.kill_and_restart(hold),
            PARTITION => self.partition(hold),
            LATENCY => self.latency(hold),
            CLOCK => self.clock_skew(hold),
            _ => self.disk_full(hold),
        }
    }

    /// `kill -9` of a random member's node, restarted after `hold`.
    fn kill_and_restart(&mut self, hold: Duration) -> Result<()> {
        let i = self.pick(self.n);
        println!(
            "  fault: kill -9 {} for {}",
            self.d.nodes[i].name,
            fmt_d(hold)
        );
        self.d.kill(i)?;
        self.hold(hold)?;
        self.d.start(i)?;
        Ok(())
    }

    /// The members split at random into two non-empty sides; every link across is cut for
    /// `hold` (open connections closed, new ones refused).
    fn partition(&mut self, hold: Duration) -> Result<()> {
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
        Ok(())
    }

    /// Up to three random pairs of nodes get 50–400 ms on their links, both ways.
    fn latency(&mut self, hold: Duration) -> Result<()> {
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
        Ok(())
    }

    /// A random member's node restarted with its clock 20–280 s fast or slow, set right
    /// after `hold`.
    fn clock_skew(&mut self, hold: Duration) -> Result<()> {
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
        Ok(())
    }

    /// Fills the tmpfs node's disk, holds, frees it; the node must serve again (by itself, or
    /// after a restart, which the summary counts).
    pub(super) fn disk_full(&mut self, hold: Duration) -> Result<()> {
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
    pub(super) fn heal_all(&mut self) -> Result<()> {
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
