//! `guild-e2e`: the `guild` command, built inside the end-to-end test package so that its tests
//! run real node processes of the code under test.

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    guild_node::main_with_args(std::env::args_os())
}
