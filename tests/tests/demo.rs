//! The devnet demo as a test: the collective's whole story on 4 real node processes with a
//! smaller corpus, every step checked (founding, joins, imports, consents, an election,
//! replicas on the stewards, a SIGKILLed node catching up, a member leaving and being refused).
//! Every wait polls a condition with a generous deadline.

use guild_devnet::{DemoOptions, Exe};

#[test]
fn the_devnet_demo_passes_on_four_nodes() {
    let root = tempfile::tempdir().expect("tempdir");
    let report = guild_devnet::demo(DemoOptions {
        exe: Exe::guild(env!("CARGO_BIN_EXE_guild-e2e")),
        root: root.path().join("devnet"),
        nodes: 4,
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
    assert_eq!(report.rss_kib.len(), 4);
}
