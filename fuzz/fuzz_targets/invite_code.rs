//! Invite codes from untrusted text: `guild_gov::make::InviteCode::decode` must never panic,
//! and a code that decodes must encode to a code that decodes to the same value. The check is
//! shared with the regression replay (`cargo test -p guild-gov --test fuzz_regressions`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/gov/tests/fuzz_fixture/mod.rs"]
mod fuzz_fixture;

fuzz_target!(|input: &[u8]| {
    fuzz_fixture::check_invite_code(input);
});
