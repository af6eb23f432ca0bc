//! `guild`: the member's node and its command-line tools.
//!
//! This binary wires libraries together; it holds no protocol logic of its own. Offline tools
//! (`key`, `repo`, `lexicon`) work on files; the daemon and the commands that talk to it come
//! with later issues.

mod files;
mod key_cmd;
mod lexicon_cmd;
mod repo_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: bulk imports allocate and free millions of small buffers across threads, where
/// glibc's allocator showed up as a fifth of the profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Guild: data collectives for creators, with no central server.
#[derive(Debug, Parser)]
#[command(name = "guild", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Identity keys: generate one, or show the DID of one.
    #[command(subcommand)]
    Key(key_cmd::KeyCmd),
    /// Offline repository tools: build, inspect, verify, prove.
    #[command(subcommand)]
    Repo(repo_cmd::RepoCmd),
    /// Lexicons: check schema files, validate a record, list the known set.
    #[command(subcommand)]
    Lexicon(lexicon_cmd::LexiconCmd),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GUILD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Key(cmd) => key_cmd::run(cmd),
        Command::Repo(cmd) => repo_cmd::run(cmd),
        Command::Lexicon(cmd) => lexicon_cmd::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
