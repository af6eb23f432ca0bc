//! Bundle verification of untrusted bytes: `verify_bundle` must never panic, and a bundle
//! it accepts has a report consistent with its bytes (its size and SHA-256).
#![no_main]

use std::io::Cursor;

use guild_bundle::verify_bundle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(report) = verify_bundle(Cursor::new(input)) else {
        return;
    };
    assert_eq!(report.bytes, input.len() as u64);
    assert_eq!(report.sha256, Some(guild_core::cids::sha256(input)));
    assert_eq!(report.records, report.credits.iter().filter_map(|c| c.records).sum::<u64>());
});
