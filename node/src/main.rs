//! `guild`: the member's node and its command-line tools (see the `guild_node` library).

use std::process::ExitCode;

/// mimalloc: bulk imports allocate and free millions of small buffers across threads, where
/// glibc's allocator showed up as a fifth of the profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    guild_node::main_with_args(std::env::args_os())
}
