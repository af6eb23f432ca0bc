//! `guild feed`: a model builder follows a steward node's feed ([`crate::feed_client`]).

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;

use crate::client_cmd::{connect, explain};
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
    /// On a steward's node: its delivery log (which builder downloaded which bundle, which
    /// feed events were sent to it, when, from where), oldest first, one JSON object per line.
    Deliveries {
        /// Only this builder's (a DID).
        #[arg(long, value_name = "DID")]
        builder: Option<String>,
        /// Only those of this bundle (its manifest CID).
        #[arg(long, value_name = "CID")]
        bundle: Option<String>,
    },
}

/// Runs a `guild feed` command.
pub fn run(data_dir: &Path, cmd: FeedCmd) -> Result<ExitCode> {
    match cmd {
        FeedCmd::Deliveries { builder, bundle } => {
            use guild_api::methods::feed::list_deliveries::{ListDeliveries, MAX_LIMIT, Params};
            let (client, _) = connect(data_dir)?;
            let mut params = Params {
                builder,
                bundle,
                cursor: None,
                limit: Some(MAX_LIMIT),
            };
            loop {
                let page = client.call::<ListDeliveries>(&params).map_err(explain)?;
                for d in &page.deliveries {
                    println!("{}", serde_json::to_string(d)?);
                }
                match page.cursor {
                    Some(c) => params.cursor = Some(c),
                    None => break,
                }
            }
            Ok(ExitCode::SUCCESS)
        }
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
