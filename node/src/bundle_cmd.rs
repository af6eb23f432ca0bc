//! `guild bundle …`: bundles. `propose`, `list`, `revocations` and `export` talk to the
//! running node (a steward's, for `propose` and `export`); `verify` and `show FILE.car` work
//! offline on a bundle file, with nothing but the file: what a model builder runs.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use guild_api::Method;
use guild_api::methods::bundle::{list_bundles, list_revocations, propose_bundle};

use crate::client_cmd::{connect, explain};

/// `guild bundle …`
#[derive(Debug, Subcommand)]
pub enum BundleCmd {
    /// Propose a bundle under an agreement in force (stewards only). Every steward's node
    /// recomputes it from its own replicas and approves it; a quorum seals it. Prints the
    /// proposal's id.
    Propose {
        /// The agreement (its offer's CID).
        #[arg(long)]
        agreement: String,
        /// `training` or `evaluation`.
        #[arg(long, default_value = "training", value_parser = ["training", "evaluation"])]
        kind: String,
        /// A note to the other stewards.
        #[arg(long)]
        note: Option<String>,
        /// The collective (default: the only one this node holds).
        #[arg(long)]
        collective: Option<String>,
    },
    /// The collective's bundles: status, approvals, records.
    List {
        /// The collective (default: the only one this node holds).
        #[arg(long)]
        collective: Option<String>,
        /// Print the node's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// A bundle: a CAR file (offline: records, authors, credits, licence summary), or a
    /// proposal or manifest CID (as the running node knows it).
    Show {
        /// A bundle file, or a proposal or manifest CID.
        bundle: String,
        /// The collective (default: the only one this node holds).
        #[arg(long)]
        collective: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a sealed bundle from the running node into a directory: the CAR, its Croissant
    /// metadata, its dataset card and its disclosure file.
    Export {
        /// The sealed bundle's manifest CID.
        manifest: String,
        /// The directory to write into (created if absent).
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Check a bundle offline: steward signatures and quorum against the election results it
    /// carries, every record's author signature and inclusion proof, every record's consent
    /// at the cut, the licence equal to the agreement's, every hash. Exits non-zero with one
    /// line naming what failed and where.
    Verify {
        /// The bundle file (`.car`).
        file: PathBuf,
        /// Also require this agreement (its offer's CID).
        #[arg(long)]
        agreement: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revocations after sealed bundles, with the records they delivered.
    Revocations {
        /// The collective (default: the only one this node holds).
        #[arg(long)]
        collective: Option<String>,
        /// Print the node's JSON answer.
        #[arg(long)]
        json: bool,
    },
}

fn call<M: Method>(data_dir: &Path, input: &M::Input) -> Result<M::Output> {
    let (client, _) = connect(data_dir)?;
    client.call::<M>(input).map_err(explain)
}

/// `guild bundle`
pub fn bundle(data_dir: &Path, cmd: BundleCmd) -> Result<ExitCode> {
    match cmd {
        BundleCmd::Propose {
            agreement,
            kind,
            note,
            collective,
        } => {
            let input = propose_bundle::Input {
                collective,
                agreement,
                kind: Some(kind),
                note,
            };
            let out = call::<propose_bundle::ProposeBundle>(data_dir, &input)?;
            println!("{}", out.op);
            eprintln!(
                "proposed; stewards' nodes recompute and approve it: watch with `guild bundle list`"
            );
        }
        BundleCmd::List { collective, json } => {
            let out =
                call::<list_bundles::ListBundles>(data_dir, &list_bundles::Params { collective })?;
            if json {
                println!("{}", serde_json::to_string(&out)?);
            } else {
                print_list(&out);
            }
        }
        BundleCmd::Show {
            bundle,
            collective,
            json,
        } => {
            let path = Path::new(&bundle);
            if path.is_file() {
                return show_file(path, json);
            }
            let out =
                call::<list_bundles::ListBundles>(data_dir, &list_bundles::Params { collective })?;
            let Some(b) = out
                .bundles
                .iter()
                .find(|b| b.proposal == bundle || b.manifest.as_deref() == Some(&bundle))
            else {
                bail!("no file {bundle} and no bundle with that proposal or manifest CID");
            };
            if json {
                println!("{}", serde_json::to_string(b)?);
            } else {
                print_one(b);
            }
        }
        BundleCmd::Export { manifest, out } => export(data_dir, &manifest, &out)?,
        BundleCmd::Verify {
            file,
            agreement,
            json,
        } => return verify(&file, agreement.as_deref(), json),
        BundleCmd::Revocations { collective, json } => {
            let out = call::<list_revocations::ListRevocations>(
                data_dir,
                &list_revocations::Params { collective },
            )?;
            if json {
                println!("{}", serde_json::to_string(&out)?);
            } else if out.notices.is_empty() {
                println!("no revocation after a sealed bundle");
            } else {
                for n in &out.notices {
                    println!(
                        "{}  {} revoked {} ({}): {} record(s) of bundle {} (agreement {})",
                        n.at,
                        n.member,
                        n.template,
                        n.revocation,
                        n.records.len(),
                        n.bundle,
                        n.agreement
                    );
                    for r in &n.records {
                        println!("    {}  {}", r.uri, r.cid);
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_list(out: &list_bundles::Output) {
    if out.bundles.is_empty() {
        println!("no bundle proposed yet (propose one with `guild bundle propose --agreement …`)");
        return;
    }
    for b in &out.bundles {
        print_one(b);
    }
}

fn print_one(b: &list_bundles::BundleView) {
    println!(
        "{}  {} {} bundle, agreement {} ({}), proposed by {} at {}",
        b.proposal, b.status, b.kind, b.agreement, b.template, b.proposed_by, b.proposed_at
    );
    if let Some(m) = &b.manifest {
        let size = match (b.records, b.authors) {
            (Some(r), Some(a)) => format!(": {r} records by {a} members"),
            _ => String::new(),
        };
        println!("    manifest {m}{size}");
    }
    println!(
        "    approvals {}/{}: {}",
        b.approvals.len(),
        b.quorum,
        b.approvals
            .iter()
            .map(|a| a.steward.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(n) = b.car_bytes {
        println!("    packaged: {n} bytes (guild bundle export {})", b.manifest.as_deref().unwrap_or("?"));
    }
    if let Some(n) = &b.note {
        println!("    {n}");
    }
}

/// Writes `bytes` to `path` through a temporary file renamed over it.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("part");
    let mut f = std::fs::File::create(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}
