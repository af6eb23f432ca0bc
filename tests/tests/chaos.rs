//! A short chaos run as a test: 4 member nodes and an outsider, 90 s of faults from a fixed
//! seed (kill -9 and restart, partitions, latency, clock skew, and a full disk when the test
//! runs as root), while members write records, consents and ballots. Every invariant is
//! checked after the last heal: no acknowledged write lost, identical heads and state on every
//! node, replicas equal to members' repos, no panic, bounded RSS, nothing served to the
//! outsider. The long run is `guild-devnet chaos --duration 30m` (BENCHMARKS.md).

use std::time::Duration;

use guild_devnet::{ChaosOptions, Exe};

#[test]
fn a_short_chaos_run_keeps_every_invariant() {
    let root = tempfile::tempdir().expect("tempdir");
    let seed = 20261202;
    let run = guild_devnet::chaos(ChaosOptions {
        exe: Exe::guild(env!("CARGO_BIN_EXE_guild-e2e")),
        root: root.path().join("chaos"),
        nodes: 4,
        duration: Duration::from_secs(90),
        seed,
        max_rss_mib: 1024,
        disk_full: true,
    });
    let report = match run {
        Ok(report) => report,
        Err(e) => {
            // Keep the nodes' data directories and logs for the post-mortem.
            let kept = root.keep();
            panic!(
                "the chaos run failed (seed {seed}; logs kept in {}): {e:#}",
                kept.display()
            )
        }
    };
    if !report.violations.is_empty() {
        let kept = root.keep();
        panic!(
            "seed {seed} (logs kept in {}): {:#?}",
            kept.display(),
            report.violations
        );
    }
    let faults: u64 = report.faults.values().sum();
    assert!(faults >= 5, "faults were injected: {:?}", report.faults);
    assert!(report.records > 0, "records were written");
    assert!(report.probes > 0, "the outsider probed");
    assert!(report.convergence.is_some() && report.replicas.is_some());
}
