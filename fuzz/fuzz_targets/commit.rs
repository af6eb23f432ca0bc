//! Commit verification of untrusted bytes: `verify_commit` must never panic; an accepted
//! commit names a `did:key` and a valid TID revision.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let cid = guild_core::cids::cid_for_cbor(input);
    if let Ok(c) = guild_repo::verify_commit(&cid, input) {
        guild_core::PublicKey::from_did(&c.did).expect("accepted commit has a did:key");
        guild_core::syntax::Tid::parse(c.rev.as_str()).expect("accepted commit has a TID");
        assert_eq!(c.sig.len(), 64);
    }
});
