//! CAR reading of untrusted bytes: `read_car` then, on success, `verify_car`. Neither may
//! panic; every block of an accepted CAR hashes to its CID; and a repository that verifies
//! yields working inclusion proofs for its records.
#![no_main]

use guild_repo::{car, prove, read_car, verify_car, verify_proof};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(parsed) = read_car(input) else {
        return;
    };
    assert!(!parsed.roots.is_empty());
    for (cid, bytes) in parsed.blocks.iter() {
        guild_core::cids::verify_block(cid, bytes).expect("accepted block matches its CID");
    }
    let Ok(summary) = verify_car(&parsed) else {
        return;
    };
    assert_eq!(summary.commit, parsed.roots[0]);
    if let Some((path, cid)) = summary.records.first() {
        let blocks = prove(&parsed.blocks, summary.commit, path).expect("prove a listed record");
        let proof = car::car_bytes(
            &[summary.commit],
            blocks.iter().map(|(c, b)| (c, b.as_ref())),
        );
        let proof = read_car(&proof).expect("read our own proof");
        let proven = verify_proof(&proof, path).expect("verify our own proof");
        assert_eq!(proven.cid, *cid);
    }
});
