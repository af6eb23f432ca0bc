//! Governance ops from untrusted bytes: `SignedOp::decode`, `Log::insert_bytes` into a small
//! fixed collective (a founder, two members, a grant, an amendment, an open election with a
//! ballot, an agreement in force), and the trusted path a node's own store takes
//! (`decode_trusted` + `Log::insert`, no lexicon or signature check) must never panic; an op
//! that enters the log is a duplicate the second time, and any delivery order of the log gives
//! the same state. The fixture and the checks live in `crates/gov/tests/fuzz_fixture/mod.rs`,
//! shared with the regression replay test (`cargo test -p guild-gov --test fuzz_regressions`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/gov/tests/fuzz_fixture/mod.rs"]
mod fuzz_fixture;

fuzz_target!(|input: &[u8]| {
    fuzz_fixture::check(input);
});
