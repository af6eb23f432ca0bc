//! The devnet demo as a test: the collective's whole story on 5 real node processes (5
//! members, 3 of them elected stewards) with a smaller corpus, every step checked (founding,
//! joins, imports, consents, an election, replicas on the stewards, a SIGKILLed node catching
//! up, a builder with only a key accepting an agreement the stewards countersign, a bundle
//! recomputed by every steward and sealed over the network, verified offline, a revocation
//! and the next bundle leaving the member out, a member leaving and being refused).
//! Every wait polls a condition with a generous deadline.

use guild_devnet::{DemoOptions, Exe};

#[test]
fn the_devnet_demo_passes_on_five_nodes() {
    let root = tempfile::tempdir().expect("tempdir");
    let report = guild_devnet::demo(DemoOptions {
        exe: Exe::guild(env!("CARGO_BIN_EXE_guild-e2e")),
        root: root.path().join("devnet"),
        nodes: 5,
        records: Some(60),
        keep: false,
        corpus: guild_devnet::CORPUS.to_string(),
    })
    .unwrap_or_else(|e| panic!("the demo failed: {e:#}"));
    assert!(
        report.convergence.len() >= 6,
        "convergence was measured after every step: {:?}",
        report.convergence
    );
    assert_eq!(report.rss_kib.len(), 5);
}
