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
use guild_gov::body::Token as _;

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
        /// Also compute the file's SHA-256 (what the bundle's Croissant file names it by;
        /// not needed to trust the bundle, whose layout is canonical), on a second core.
        #[arg(long)]
        sha256: bool,
    },
    /// Trace a leak: search files (a leaked dataset, a model's outputs) for the per-licensee
    /// canaries of every bundle this node knows sealed, and name the builder each found
    /// canary was made for. Exits 0 when one is found, 1 when none is.
    Trace {
        /// The files to search (read as text).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The collective (default: the only one this node holds).
        #[arg(long)]
        collective: Option<String>,
        /// Print one JSON object per canary found.
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

/// Calls `M` on the running node.
pub(crate) fn call<M: Method>(data_dir: &Path, input: &M::Input) -> Result<M::Output> {
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
            sha256,
        } => return verify(&file, agreement.as_deref(), json, sha256),
        BundleCmd::Trace {
            files,
            collective,
            json,
        } => return trace(data_dir, &files, collective, json),
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
                    match &n.receipt {
                        Some(r) => println!("    acknowledged by the builder: receipt {r}"),
                        None => println!("    not acknowledged by the builder yet"),
                    }
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
        println!(
            "    packaged: {n} bytes (guild bundle export {})",
            b.manifest.as_deref().unwrap_or("?")
        );
    }
    if let Some(n) = &b.note {
        println!("    {n}");
    }
}

/// Writes `bytes` to `path` through a temporary file renamed over it.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("part");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Verifies the bundle file at `path`.
fn check_file(
    path: &Path,
    file_sha256: bool,
) -> Result<std::result::Result<guild_bundle::Report, String>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    // Unbuffered: verify_bundle reads in large chunks itself.
    let options = guild_bundle::VerifyOptions { file_sha256 };
    Ok(guild_bundle::verify_bundle_with(file, &options).map_err(|e| e.to_string()))
}

/// The report as JSON.
fn report_json(r: &guild_bundle::Report) -> serde_json::Value {
    serde_json::json!({
        "manifest": r.manifest.to_string(),
        "collective": r.collective.to_string(),
        "agreement": r.agreement.to_string(),
        "builder": r.builder.to_string(),
        "template": r.template,
        "kind": r.kind.as_str(),
        "records": r.records,
        "credits": r.credits.iter().map(|c| serde_json::json!({
            "did": c.did.to_string(),
            "name": c.name,
            "records": c.records,
        })).collect::<Vec<_>>(),
        "estimates": r.estimates.iter().map(|e| serde_json::json!({
            "member": e.member.to_string(),
            "method": e.method,
            "value": e.value,
            "parameters": e.parameters,
            "evaluationSet": e.evaluation_set,
            "baseline": e.baseline,
        })).collect::<Vec<_>>(),
        "stewards": r.stewards.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "approvals": r.approvals.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "licenseeCanaries": r.licensee_canaries.len(),
        "ops": r.ops,
        "blocks": r.blocks,
        "bytes": r.bytes,
        "sha256": r.sha256_hex(),
        "summary": r.summary,
    })
}

/// Whether the file is a commons snapshot (its root block says so), not a bundle.
fn is_snapshot_file(path: &Path) -> Result<bool> {
    use std::io::Read as _;
    let mut head = Vec::new();
    std::fs::File::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .take(4 << 20)
        .read_to_end(&mut head)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(guild_bundle::snapshot::is_snapshot(&head))
}

/// `guild bundle verify` of a commons snapshot: every record and licence record proven
/// against its author's signed commit.
fn verify_snapshot(path: &Path, agreement: Option<&str>, json: bool) -> Result<ExitCode> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let report = match guild_bundle::snapshot::verify(&bytes) {
        Ok(r) => r,
        Err(why) => {
            eprintln!(
                "commons snapshot {} FAILED verification: {why}",
                path.display()
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Some(want) = agreement {
        eprintln!(
            "commons snapshot {} FAILED verification: it is a commons snapshot, under each record's own licence, not agreement {want}",
            path.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    if json {
        let counts = |v: &[(String, u64)]| {
            v.iter()
                .map(|(k, n)| serde_json::json!({"id": k, "records": n}))
                .collect::<Vec<_>>()
        };
        println!(
            "{}",
            serde_json::json!({
                "kind": "commons-snapshot",
                "manifest": report.manifest.to_string(),
                "createdAt": report.created_at.as_str(),
                "records": report.records,
                "authors": report.authors.iter().map(|(d, n)| serde_json::json!({"did": d.as_str(), "records": n})).collect::<Vec<_>>(),
                "licences": counts(&report.templates),
                "collections": counts(&report.collections),
                "repos": report.repos.iter().map(|r| serde_json::json!({"did": r.did.as_str(), "rev": r.rev.as_str(), "commit": r.commit.to_string()})).collect::<Vec<_>>(),
                "blocks": report.blocks,
                "bytes": report.bytes,
                "sha256": report.sha256_hex(),
            })
        );
    } else {
        println!(
            "OK {}: commons snapshot of {} record{} by {} author{} under {}; every commit signature, inclusion proof and licence record checked",
            report.manifest,
            report.records,
            if report.records == 1 { "" } else { "s" },
            report.authors.len(),
            if report.authors.len() == 1 { "" } else { "s" },
            report
                .templates
                .iter()
                .map(|(t, n)| format!("{t} ({n})"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!("sha256 {}  {} bytes", report.sha256_hex(), report.bytes);
    }
    Ok(ExitCode::SUCCESS)
}

/// `guild bundle verify FILE`: exit 0 and a summary line, or exit 1 and one line saying
/// what failed and where.
fn verify(path: &Path, agreement: Option<&str>, json: bool, sha256: bool) -> Result<ExitCode> {
    if is_snapshot_file(path)? {
        return verify_snapshot(path, agreement, json);
    }
    let report = match check_file(path, sha256)? {
        Ok(r) => r,
        Err(why) => {
            eprintln!("bundle {} FAILED verification: {why}", path.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Some(want) = agreement
        && report.agreement.to_string() != want
    {
        eprintln!(
            "bundle {} FAILED verification: it is delivered under agreement {}, not {want}",
            path.display(),
            report.agreement
        );
        return Ok(ExitCode::FAILURE);
    }
    if json {
        println!("{}", report_json(&report));
    } else {
        println!(
            "OK {}: {} {} records by {} members under agreement {} ({}), sealed by {} stewards; every signature, proof, consent and hash checked",
            report.manifest,
            report.records,
            report.kind.as_str(),
            report.credits.len(),
            report.agreement,
            report.template,
            report.stewards.len()
        );
        match report.sha256_hex() {
            Some(h) => println!("sha256 {h}  {} bytes", report.bytes),
            None => println!("{} bytes", report.bytes),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `guild bundle show FILE`: the verified bundle's summary.
fn show_file(path: &Path, json: bool) -> Result<ExitCode> {
    let report = match check_file(path, true)? {
        Ok(r) => r,
        Err(why) => {
            eprintln!("bundle {} FAILED verification: {why}", path.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    // The canaries' texts, from the file (verified: each block hashes to its CID).
    let canaries: Vec<(String, String)> = if report.licensee_canaries.is_empty() {
        Vec::new()
    } else {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let car = guild_repo::read_car(&bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
        report
            .licensee_canaries
            .iter()
            .map(|c| {
                let record = car
                    .blocks
                    .get(c)
                    .and_then(|b| guild_core::data::decode(b).ok())
                    .map(|v| guild_core::data::to_json(&v))
                    .with_context(|| format!("canary {c} is not a record in the file"))?;
                Ok((
                    c.to_string(),
                    record["body"].as_str().unwrap_or_default().to_owned(),
                ))
            })
            .collect::<Result<_>>()?
    };
    if json {
        let mut v = report_json(&report);
        v["licenseeCanaries"] = canaries
            .iter()
            .map(|(cid, body)| serde_json::json!({"cid": cid, "body": body}))
            .collect();
        println!("{v}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "bundle   {} ({} bundle, verified)",
        report.manifest,
        report.kind.as_str()
    );
    println!("collective {}", report.collective);
    println!("agreement  {} with {}", report.agreement, report.builder);
    println!("licence    {}: {}", report.template, report.summary);
    println!(
        "records    {} by {} members; sealed by {}",
        report.records,
        report.credits.len(),
        report
            .stewards
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("credits:");
    for c in &report.credits {
        println!(
            "  {:>6}  {}{}",
            c.records.unwrap_or(0),
            c.did,
            if c.name != c.did.as_str() {
                format!(" ({})", c.name)
            } else {
                String::new()
            }
        );
    }
    if !report.estimates.is_empty() {
        println!("contribution estimates (on the builder's evaluation set):");
        for e in &report.estimates {
            println!("  {:>24}  {:<28}  {}", e.value, e.method, e.member);
        }
    }
    if !canaries.is_empty() {
        println!(
            "canaries   {} made for {} alone (part of the licensed data; they trace a leak)",
            canaries.len(),
            report.builder
        );
    }
    println!(
        "sha256     {}  {} bytes",
        report.sha256_hex().unwrap_or_default(),
        report.bytes
    );
    Ok(ExitCode::SUCCESS)
}

/// `guild bundle trace`: every sealed bundle's canaries (the most a charter may ask for:
/// canaries past a bundle's own count were never delivered, so never found), searched for in
/// each file.
fn trace(
    data_dir: &Path,
    files: &[PathBuf],
    collective: Option<String>,
    json: bool,
) -> Result<ExitCode> {
    use guild_api::methods::agreement::list_agreements;
    use guild_bundle::canary::{MAX_LICENSEE_CANARIES, find_canaries, licensee_canaries};
    let bundles = call::<list_bundles::ListBundles>(
        data_dir,
        &list_bundles::Params {
            collective: collective.clone(),
        },
    )?;
    let agreements =
        call::<list_agreements::ListAgreements>(data_dir, &list_agreements::Params { collective })?;
    let texts: Vec<(String, String)> = files
        .iter()
        .map(|f| {
            let bytes = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
            Ok((
                f.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ))
        })
        .collect::<Result<_>>()?;
    // Every sealed bundle's canaries, with where each comes from: each file is then
    // normalised and searched once.
    let mut canaries = Vec::new();
    let mut origin = Vec::new();
    for b in bundles.bundles.iter().filter(|b| b.status == "sealed") {
        let Some(a) = agreements
            .agreements
            .iter()
            .find(|a| a.offer == b.agreement)
        else {
            continue;
        };
        let proposal = guild_core::syntax::parse_cid_str(&b.proposal)
            .map_err(|e| anyhow::anyhow!("the node's proposal id {}: {e}", b.proposal))?;
        let builder = guild_core::syntax::Did::parse(&a.builder)
            .map_err(|e| anyhow::anyhow!("the node's builder DID {}: {e}", a.builder))?;
        let at = guild_core::syntax::Datetime::parse(&b.proposed_at)
            .map_err(|e| anyhow::anyhow!("the node's proposal time {}: {e}", b.proposed_at))?;
        let made = licensee_canaries(&proposal, &builder, &at, MAX_LICENSEE_CANARIES)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        origin.extend((0..made.len()).map(|i| (b, a, i)));
        canaries.extend(made);
    }
    let mut found = 0usize;
    for (file, text) in &texts {
        for k in find_canaries(text, &canaries) {
            let (Some((b, a, i)), Some(c)) = (origin.get(k), canaries.get(k)) else {
                continue;
            };
            found += 1;
            let manifest = b.manifest.as_deref().unwrap_or_default();
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "file": file,
                        "canary": i,
                        "cid": c.cid.to_string(),
                        "bundle": manifest,
                        "proposal": b.proposal,
                        "agreement": b.agreement,
                        "builder": a.builder,
                    })
                );
            } else {
                println!(
                    "{file}: canary {i} of bundle {manifest} (agreement {}), made for builder {}",
                    b.agreement, a.builder
                );
            }
        }
    }
    if found == 0 {
        eprintln!(
            "no canary of the {} sealed bundle(s) found in {} file(s)",
            bundles
                .bundles
                .iter()
                .filter(|b| b.status == "sealed")
                .count(),
            texts.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `guild bundle export`: the CAR from the node, checked, and its Croissant metadata,
/// dataset card and disclosure file beside it.
/// Writes a verified bundle's `croissant.json`, `README.md` (its dataset card) and
/// `disclosure.json` into `out`, for the CAR at `car_path` (named `bundle.car` in them).
pub(crate) fn write_forms(
    car_path: &Path,
    report: &guild_bundle::Report,
    out: &Path,
) -> Result<()> {
    let bytes =
        std::fs::read(car_path).with_context(|| format!("cannot read {}", car_path.display()))?;
    let car = guild_repo::read_car(&bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
    // (`read_car` checked every block's hash; `verify_bundle` everything else.)
    let m = guild_bundle::Manifest::decode_blocks(&report.manifest, |c| {
        car.blocks.get(c).map(<[u8]>::to_vec)
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(sha256) = report.sha256 else {
        bail!("the bundle's SHA-256 was not computed");
    };
    let info = guild_bundle::CarInfo {
        sha256,
        bytes: report.bytes,
        file_name: "bundle.car".to_owned(),
    };
    let forms = [
        ("croissant.json", guild_bundle::croissant::emit(&m, &info)),
        ("README.md", guild_bundle::card::emit(&m, &info)),
        ("disclosure.json", guild_bundle::disclosure::emit(&m, &info)),
    ];
    for (name, text) in forms {
        let text = text.map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        write_file(&out.join(name), text.as_bytes())?;
    }
    Ok(())
}

fn export(data_dir: &Path, manifest: &str, out: &Path) -> Result<()> {
    let (client, _) = connect(data_dir)?;
    let bytes = client
        .query_bytes("coop.guild.bundle.get", &[("cid", manifest)])
        .map_err(explain)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let car_path = out.join("bundle.car");
    // Verified under a temporary name; only a bundle that verifies gets its final one.
    let unchecked = out.join("bundle.car.unverified");
    write_file(&unchecked, &bytes)?;
    let report = match check_file(&unchecked, true)? {
        Ok(r) => r,
        Err(why) => {
            let _ = std::fs::remove_file(&unchecked);
            bail!("the node's bundle fails verification: {why}");
        }
    };
    if report.manifest.to_string() != manifest {
        let _ = std::fs::remove_file(&unchecked);
        bail!("the node sent bundle {}, not {manifest}", report.manifest);
    }
    write_forms(&unchecked, &report, out)?;
    // The node serves the forms it wrote when it packaged the bundle: they must be the ones
    // computed here from the verified CAR (a node that packaged the bundle before it wrote
    // forms serves none; that is not an error).
    for (file, name) in [
        ("croissant", "croissant.json"),
        ("card", "README.md"),
        ("disclosure", "disclosure.json"),
    ] {
        let served = match client.query_bytes(
            "coop.guild.bundle.get",
            &[("cid", manifest), ("file", file)],
        ) {
            Ok(b) => b,
            Err(e) if e.to_string().contains("was packaged without its") => continue,
            Err(e) => {
                let _ = std::fs::remove_file(&unchecked);
                return Err(explain(e)).context(format!("the node's {name}"));
            }
        };
        let ours = std::fs::read(out.join(name))
            .with_context(|| format!("cannot read {}", out.join(name).display()))?;
        if served != ours {
            let _ = std::fs::remove_file(&unchecked);
            bail!(
                "the node's {name} differs from the one the verified bundle gives: do not trust the node's forms"
            );
        }
    }
    std::fs::rename(&unchecked, &car_path)
        .with_context(|| format!("cannot write {}", car_path.display()))?;
    println!("{}", car_path.display());
    eprintln!(
        "exported {} ({} records, {} bytes) with croissant.json, README.md and disclosure.json into {}",
        report.manifest,
        report.records,
        report.bytes,
        out.display()
    );
    Ok(())
}
