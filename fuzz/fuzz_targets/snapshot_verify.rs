//! Commons snapshot verification of untrusted bytes: `snapshot::verify` must never panic,
//! and a snapshot it accepts has a report consistent with its bytes (size, SHA-256, entry
//! counts) and is recognised as a snapshot by `is_snapshot`.
#![no_main]

use guild_bundle::snapshot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let recognised = snapshot::is_snapshot(input);
    let Ok(report) = snapshot::verify(input) else {
        return;
    };
    assert!(recognised, "an accepted snapshot is recognised as one");
    assert_eq!(report.bytes, input.len() as u64);
    assert_eq!(report.sha256, guild_core::cids::sha256(input));
    assert_eq!(report.records, report.authors.iter().map(|(_, n)| n).sum::<u64>());
    assert_eq!(report.records, report.templates.iter().map(|(_, n)| n).sum::<u64>());
    assert_eq!(report.authors.len(), report.repos.len());
});
