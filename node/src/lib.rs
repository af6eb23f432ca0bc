//! `guild`: the member's node and its command-line tools, as a library so that other binaries
//! (the devnet, the end-to-end tests) run the very same CLI: [`main_with_args`] is the whole
//! `guild` command.
//!
//! This binary wires libraries together; it holds no protocol logic of its own. Offline tools
//! (`key`, `repo`, `lexicon`) work on files; `init` and `node` create and run the daemon;
//! `record`, `import`, `export` and `status` talk to a running daemon over its XRPC API;
//! `feed subscribe` is a model builder's client of a steward node's feed ([`feed_client`],
//! usable as a library).

pub mod agreement_cmd;
mod bundle_cmd;
mod client_cmd;
mod collective_cmd;
pub mod config;
pub mod feed_client;
mod feed_cmd;
mod files;
mod key_cmd;
mod lexicon_cmd;
mod node_cmd;
mod payout_cmd;
mod repo_cmd;
mod value_cmd;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Guild: data collectives for creators, with no central server.
#[derive(Debug, Parser)]
#[command(name = "guild", version, about, long_about = None)]
struct Cli {
    /// The node's data directory (default: $GUILD_DATA_DIR, else ~/.guild).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a data directory: identity key, admin token, config.toml, store.
    Init {
        /// The peer-to-peer listen address written to the config. A TCP port 0 is replaced by
        /// a port free now, so the node keeps one port across restarts.
        #[arg(long, default_value = "/ip4/0.0.0.0/tcp/0", value_name = "MULTIADDR")]
        p2p_listen: String,
        /// Turn mDNS discovery off in the config (nodes then find each other through invites,
        /// bootstrap peers and the addresses members share).
        #[arg(long)]
        no_mdns: bool,
        /// Every node runs on this machine: no penalty for peers sharing an IP address.
        #[arg(long)]
        single_machine: bool,
    },
    /// Run the node (until SIGINT or SIGTERM).
    Node {
        /// Serve the API here instead of the configured address (loopback only; port 0 picks
        /// a free port).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Extra extension lexicon directories.
        #[arg(long = "lexicons", value_name = "DIR")]
        lexicons: Vec<PathBuf>,
    },
    /// Show the running node's identity and repositories.
    Status {
        /// Print the node's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Records in the member's repositories, through the running node.
    #[command(subcommand)]
    Record(client_cmd::RecordCmd),
    /// Import a directory of text/Markdown files, or a JSONL file of records, through the
    /// running node (batched; re-running skips what was already imported).
    ///
    /// Every file and every non-blank JSONL line is its own record: identical lines are kept,
    /// each under its own key, since repeated content can be meant (two equal short notes) and
    /// an import should not silently drop data (`sort -u` first to deduplicate). A journal in
    /// `<data-dir>/imports/` keeps each record's key, so a re-run after an interruption at
    /// any point sends only what is missing, even if lines were added. Two lines naming the
    /// same collection and rkey are an error before anything is sent.
    Import {
        /// A directory (*.txt, *.md) or a .jsonl file (`{"collection", "rkey"?, "record"}`).
        path: PathBuf,
        /// Records per commit.
        #[arg(long, default_value_t = 2000)]
        batch: usize,
        /// The space: `public` or a collective id.
        #[arg(long, default_value = "public")]
        space: guild_store::Space,
    },
    /// Export a repository from the running node as a CAR file.
    Export {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
        /// The space: `public` or a collective id.
        #[arg(long, default_value = "public")]
        space: guild_store::Space,
        /// Only what changed since this revision.
        #[arg(long)]
        since: Option<String>,
        /// Another member's repo (in a collective space: this node's replica of it).
        #[arg(long)]
        did: Option<guild_core::syntax::Did>,
    },
    /// Bundles: propose, list, show, export (through the node); verify and show a bundle
    /// file offline.
    #[command(subcommand)]
    Bundle(bundle_cmd::BundleCmd),
    /// Collectives: create, invite, join, status, list, leave.
    #[command(subcommand)]
    Collective(collective_cmd::CollectiveCmd),
    /// Your consent to a collective's licence templates: grant, revoke.
    #[command(subcommand)]
    Consent(collective_cmd::ConsentCmd),
    /// Steward elections: open, vote, close, results.
    #[command(subcommand)]
    Election(collective_cmd::ElectionCmd),
    /// Licence agreements with model builders: offer, list, show, accept (a builder, with
    /// only a key), countersign.
    #[command(subcommand)]
    Agreement(agreement_cmd::AgreementCmd),
    /// Builders' feeds: follow a steward node's feed of your agreements (a model builder,
    /// with only a key).
    #[command(subcommand)]
    Feed(feed_cmd::FeedCmd),
    /// The node's peer-to-peer identity, listen addresses and connected peers.
    Peers {
        /// Print the node's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Prints a one-time link that opens the node's dashboard in a browser (it works once,
    /// for 10 minutes, on this machine), and the address of its public contracts page.
    Dashboard {
        /// Print `{"login": URL, "contracts": URL}`.
        #[arg(long)]
        json: bool,
    },
    /// Identity keys: generate one, or show the DID of one.
    #[command(subcommand)]
    Key(key_cmd::KeyCmd),
    /// Offline repository tools: build, inspect, verify, prove.
    #[command(subcommand)]
    Repo(repo_cmd::RepoCmd),
    /// Lexicons: check schema files, validate a record, list the known set.
    #[command(subcommand)]
    Lexicon(lexicon_cmd::LexiconCmd),
    /// Payouts: book a period's revenue for an agreement (stewards), list the statements.
    #[command(subcommand)]
    Payout(payout_cmd::PayoutCmd),
    /// What you earned: your lines of the collective's payout statements, by period and
    /// agreement, with the builders, bundles, your estimated contribution and the method.
    Statement {
        /// Only this period's (its id, such as 2026-Q4).
        #[arg(long)]
        period: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write your periodic report (which builders trained on the collective's data, your
    /// estimated contribution, your share of the revenue) as Markdown and JSON.
    Report {
        /// The period's id.
        #[arg(long)]
        period: String,
        /// The directory to write report-<period>.md and .json into.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Data valuation on JSONL files: KNN-Shapley, leave-one-out and group values, over an
    /// optional baseline (the commons).
    #[command(subcommand)]
    Value(value_cmd::ValueCmd),
}

/// Sets up logging to stderr; `GUILD_LOG` overrides `default`. Later calls are no-ops.
pub fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GUILD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .try_init();
}

/// Runs the `guild` command with these arguments (the first is the program name, as in
/// `std::env::args_os`) and returns its exit code.
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    // No transparent huge pages for this process: with them, every fresh allocator page is a
    // 2 MiB page zeroed on first touch, which tripled an idle node's RSS (10 → 50 MB) and cost
    // a third of a bulk import's time in the kernel.
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let data_dir = cli.data_dir.unwrap_or_else(config::default_data_dir);
    if !matches!(cli.command, Command::Node { .. }) {
        init_logging("warn");
    }
    let result = match cli.command {
        Command::Init {
            p2p_listen,
            no_mdns,
            single_machine,
        } => node_cmd::init(
            &data_dir,
            config::InitChoices {
                p2p_listen,
                mdns: !no_mdns,
                ip_colocation_penalty: !single_machine,
            },
        ),
        Command::Node { listen, lexicons } => {
            node_cmd::run(&data_dir, node_cmd::NodeFlags { listen, lexicons })
        }
        Command::Status { json } => client_cmd::status(&data_dir, json),
        Command::Record(cmd) => client_cmd::record(&data_dir, cmd),
        Command::Import { path, batch, space } => {
            client_cmd::import(&data_dir, &path, &space, batch.clamp(1, 10_000))
        }
        Command::Export {
            out,
            space,
            since,
            did,
        } => client_cmd::export(&data_dir, &out, &space, since.as_deref(), did.as_ref()),
        Command::Bundle(cmd) => bundle_cmd::bundle(&data_dir, cmd),
        Command::Collective(cmd) => collective_cmd::collective(&data_dir, cmd),
        Command::Consent(cmd) => collective_cmd::consent(&data_dir, cmd),
        Command::Election(cmd) => collective_cmd::election(&data_dir, cmd),
        Command::Agreement(cmd) => agreement_cmd::run(&data_dir, cmd),
        Command::Feed(cmd) => feed_cmd::run(&data_dir, cmd),
        Command::Peers { json } => collective_cmd::peers(&data_dir, json),
        Command::Dashboard { json } => client_cmd::dashboard(&data_dir, json),
        Command::Key(cmd) => key_cmd::run(cmd),
        Command::Repo(cmd) => repo_cmd::run(cmd),
        Command::Lexicon(cmd) => lexicon_cmd::run(cmd),
        Command::Value(cmd) => value_cmd::run(cmd),
        Command::Payout(cmd) => payout_cmd::run(&data_dir, cmd),
        Command::Statement { period, json } => payout_cmd::statement(&data_dir, period, json),
        Command::Report { period, out } => payout_cmd::report(&data_dir, period, out),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
