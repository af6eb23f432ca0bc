//! `guild feed`: a model builder follows a steward node's feed ([`crate::feed_client`]).

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;

use crate::feed_client::{FollowOptions, follow};
use crate::files::read_key_file;

/// `guild feed …`
#[derive(Debug, Subcommand)]
pub enum FeedCmd {
    /// Follow a steward node's feed as a model builder: log in with your key, then download,
    /// verify and keep every bundle sealed under your agreements (with its Croissant file,
    /// dataset card and disclosure file) and print every revocation notice, resuming from
    /// the cursor kept in DIR after any interruption. One line per event on stdout.
    Subscribe {
        /// The steward node's base URL (its `[feeds] listen` address, or its API):
        /// `https://…` when the node serves TLS there, else `http://…`.
        #[arg(long, value_name = "URL")]
        node: String,
        /// A PEM file of certificates to trust besides the usual web roots: the node's
        /// self-signed certificate (a devnet) or the CA that signed it.
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
        /// Your key file (`guild key generate --out FILE`): the DID your agreements name.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Where bundles, the cursor and the event log are kept.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Exit once caught up (every event up to now handled), instead of following.
        #[arg(long)]
        once: bool,
        /// With no cursor in DIR yet, start with live events only (by default a fresh DIR
        /// replays every event still in the node's window).
        #[arg(long)]
        live: bool,
    },
}

/// Runs a `guild feed` command.
pub fn run(cmd: FeedCmd) -> Result<ExitCode> {
    match cmd {
        FeedCmd::Subscribe {
            node,
            ca,
            key,
            out,
            once,
            live,
        } => {
            let key = read_key_file(&key)?;
            let opts = FollowOptions {
                node: node.trim_end_matches('/').to_owned(),
                ca,
                key,
                out,
                once,
                progress: std::io::stderr().is_terminal(),
                live,
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            rt.block_on(async {
                tokio::select! {
                    r = follow(&opts, |h| println!("{h}")) => r,
                    _ = tokio::signal::ctrl_c() => Ok(()),
                }
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
