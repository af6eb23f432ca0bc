//! `guild-devnet`: a local collective of real `guild` node processes.
//!
//! `demo` runs the collective's whole story and checks every step; `up` starts a devnet and
//! leaves it running, `status` shows it, `down` stops it. The binary links the `guild` CLI
//! (`guild-devnet guild …` is exactly `guild …`) and starts copies of itself as the nodes, so
//! `cargo run -p guild-devnet` builds everything the devnet runs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use guild_devnet::{DemoOptions, Exe};

/// The nodes' allocator, as in the `guild` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A local Guild collective of real node processes.
#[derive(Debug, Parser)]
#[command(name = "guild-devnet", version, about, long_about = None)]
struct Cli {
    /// Where the devnet keeps its nodes' data directories, logs and state.
    #[arg(long, global = true, default_value = ".devnet", value_name = "DIR")]
    dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the collective's story end to end on fresh nodes, checking every step; exits 0 only
    /// if every check passed. Removes an earlier devnet in the same directory first.
    Demo {
        /// Nodes (the founder and N-1 members), at least 4.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// Use only the first N records of the sample corpus.
        #[arg(long)]
        records: Option<usize>,
        /// Leave the nodes running at the end (stop them with `guild-devnet down`).
        #[arg(long)]
        keep: bool,
    },
    /// A chaos run: while members keep writing records, consents and ballots, inject faults
    /// chosen from a seed (kill -9 and restart, partitions, latency, clock skew, a full disk
    /// when root) and check the invariants; exits non-zero on any violation, printing the seed.
    Chaos {
        /// Member nodes (an outsider node comes on top), at least 4.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// How long faults are injected before the last heal (e.g. `90s`, `30m`).
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        /// The seed every choice derives from (default: from the time; printed to replay).
        #[arg(long)]
        seed: Option<u64>,
        /// A node's resident memory above this many MiB is a violation.
        #[arg(long, default_value_t = 1024)]
        max_rss_mib: u64,
        /// No full-disk faults (otherwise tried when root can mount a tmpfs).
        #[arg(long)]
        no_disk_full: bool,
    },
    /// Start a devnet (a founded collective, every node a member) and leave it running.
    Up {
        /// Nodes.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
    },
    /// Stop the devnet's nodes.
    Down,
    /// Each node's process, API address and view of the collective.
    Status,
}

fn main() -> ExitCode {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // `guild-devnet guild …`: the node's own CLI (how the devnet runs its nodes).
    if args.get(1).is_some_and(|a| a == "guild") {
        args.remove(0);
        return guild_node::main_with_args(args);
    }
    let cli = Cli::parse_from(args);
    let exe = match Exe::current() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Demo {
            nodes,
            records,
            keep,
        } => guild_devnet::demo(DemoOptions {
            exe,
            root: cli.dir,
            nodes,
            records,
            keep,
            corpus: guild_devnet::CORPUS.to_string(),
        })
        .map(|_| ()),
        Command::Chaos {
            nodes,
            duration,
            seed,
            max_rss_mib,
            no_disk_full,
        } => guild_devnet::chaos(guild_devnet::ChaosOptions {
            exe,
            root: cli.dir,
            nodes,
            duration,
            seed: seed.unwrap_or_else(time_seed),
            max_rss_mib,
            disk_full: !no_disk_full,
        })
        .and_then(|r| {
            if r.violations.is_empty() {
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "{} invariant violation(s); replay with --seed {}",
                    r.violations.len(),
                    r.seed
                ))
            }
        }),
        Command::Up { nodes } => guild_devnet::up(exe, &cli.dir, nodes),
        Command::Down => guild_devnet::down(&cli.dir),
        Command::Status => guild_devnet::status(&cli.dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A seed from the clock, for runs that name none.
fn time_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
