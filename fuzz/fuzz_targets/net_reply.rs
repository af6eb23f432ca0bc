//! guild-net's reply frames from untrusted bytes (`guild_net::collective::wire`). Must hold: no
//! panic; what decodes re-encodes to exactly the input. The checks live in
//! `crates/net/tests/fuzz_checks/mod.rs`, shared with the regression replay
//! (`cargo test -p guild-net --test fuzz_regressions`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/net/tests/fuzz_checks/mod.rs"]
mod fuzz_checks;

fuzz_target!(|input: &[u8]| {
    fuzz_checks::reply(input);
});
