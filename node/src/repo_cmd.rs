//! `guild repo`: offline repository tools over CAR files.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use rayon::prelude::*;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use guild_core::data::to_json;
use guild_core::syntax::{Nsid, RecordKey, TidClock};
use guild_repo::{
    CarWriter, MemoryBlockStore, Mst, PreparedRecord, Repo, prove, read_car_owned, verify_car,
    verify_commit, verify_proof,
};

use guild_lexicon::Registry;

use crate::files::{read_input, read_key_file, write_public};

/// `guild repo …`
#[derive(Debug, Subcommand)]
pub enum RepoCmd {
    /// Build a signed repository (one commit) from a JSONL file of records.
    ///
    /// Each line: {"collection": NSID, "rkey": optional record key (a TID if absent),
    /// "record": {AT JSON data model, with "$type" equal to the collection}}.
    Build {
        /// The JSONL input.
        #[arg(long)]
        records: PathBuf,
        /// The signing key file (see `guild key generate`).
        #[arg(long)]
        key: PathBuf,
        /// Where to write the repository CAR.
        #[arg(long)]
        out: PathBuf,
        /// Print timings as one JSON line on stderr (milliseconds). The lines are parsed,
        /// checked against the lexicons and encoded in one parallel pass: `encode_ms` is the
        /// encoding's share of it (each record's encoding timed, summed over the pool's
        /// threads, divided by the threads) and `parse_ms` the rest; `validate_ms` 0, kept
        /// for scripts from before parsing and checking were fused; `paths_ms` the keys
        /// given TIDs and the paths made; `mst_commit_ms`; `total_ms` = `encode_ms` +
        /// `paths_ms` + `mst_commit_ms` (the reference benchmark's scope; its loop makes the
        /// keys too); `write_ms` the CAR. `encode_ms` is thus an estimate of the encoding's
        /// wall time, not a measured span.
        #[arg(long)]
        stats: bool,
        /// Extension lexicon directories (or files) to load over the built-in set.
        #[arg(long = "lexicons", value_name = "DIR")]
        lexicons: Vec<PathBuf>,
        /// Lexicon validation, with AT Protocol's `validate` semantics: `auto` checks records
        /// of known types and lets unknown types through; `require` refuses unknown types;
        /// `skip` checks only the data model.
        #[arg(long, value_enum, default_value_t = Validate::Auto)]
        validate: Validate,
    },
    /// Show a repository CAR's DID, revision, commit, MST root and record count.
    Inspect {
        /// The CAR file.
        file: PathBuf,
        /// One JSON object: did, rev, commit, data, count (and records).
        #[arg(long)]
        json: bool,
        /// Also list every record path and CID.
        #[arg(long)]
        records: bool,
    },
    /// Fully verify a repository CAR: every block hash, the commit signature, MST canonicality,
    /// every record. Exit 0 if valid; otherwise one line saying what is wrong and where.
    Verify {
        /// The CAR file.
        file: PathBuf,
    },
    /// Write an inclusion proof (commit + MST path + record) for one record.
    Prove {
        /// The repository CAR.
        file: PathBuf,
        /// The record path, `<collection>/<rkey>`.
        path: String,
        /// Where to write the proof CAR.
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify an inclusion proof for a record path, using only the proof's blocks.
    VerifyProof {
        /// The proof CAR.
        file: PathBuf,
        /// The record path, `<collection>/<rkey>`.
        path: String,
        /// Print the proven record as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// How `repo build` applies the lexicons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Validate {
    /// Validate known types; let unknown types through.
    Auto,
    /// Validate every record; refuse unknown types.
    Require,
    /// Check the data model only.
    Skip,
}

/// Runs a `guild repo` command.
pub fn run(cmd: RepoCmd) -> Result<ExitCode> {
    match cmd {
        RepoCmd::Build {
            records,
            key,
            out,
            stats,
            lexicons,
            validate,
        } => build(records, key, out, stats, &lexicons, validate),
        RepoCmd::Inspect {
            file,
            json,
            records,
        } => inspect(file, json, records),
        RepoCmd::Verify { file } => {
            let bytes = read_input(&file)?;
            let car =
                read_car_owned(bytes.into()).with_context(|| format!("{}", file.display()))?;
            let summary = verify_car(&car).with_context(|| format!("{}", file.display()))?;
            println!(
                "ok: {} rev {} commit {} ({} records)",
                summary.did,
                summary.rev,
                summary.commit,
                summary.records.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        RepoCmd::Prove { file, path, out } => {
            let bytes = read_input(&file)?;
            let car =
                read_car_owned(bytes.into()).with_context(|| format!("{}", file.display()))?;
            let [root] = car.roots.as_slice() else {
                bail!(
                    "{}: a repository CAR has exactly one root (the commit)",
                    file.display()
                );
            };
            let blocks = prove(&car.blocks, *root, &path)?;
            write_public(&out, |w| {
                let mut car = CarWriter::new(w, &[*root])?;
                for (cid, data) in &blocks {
                    car.write_block(cid, data)?;
                }
                car.finish()?;
                Ok(())
            })?;
            println!(
                "wrote proof of {path} ({} blocks) to {}",
                blocks.len(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        RepoCmd::VerifyProof { file, path, json } => {
            let bytes = read_input(&file)?;
            let car =
                read_car_owned(bytes.into()).with_context(|| format!("{}", file.display()))?;
            let proven =
                verify_proof(&car, &path).with_context(|| format!("{}", file.display()))?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "did": proven.did,
                        "rev": proven.rev.as_str(),
                        "commit": proven.commit.to_string(),
                        "path": path,
                        "cid": proven.cid.to_string(),
                        "record": to_json(&proven.record),
                    })
                );
            } else {
                println!(
                    "ok: {path} = {} in commit {} signed by {} at rev {}",
                    proven.cid, proven.commit, proven.did, proven.rev
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// One parsed JSONL input line.
struct InputLine {
    collection: Nsid,
    rkey: RecordKey,
    record: serde_json::Value,
}

/// Parses one JSONL line; a line without an `rkey` gets a placeholder key here and its TID
/// afterwards, in line order (`Ok((line, false))`).
fn parse_line(line: &str) -> Result<(InputLine, bool)> {
    let mut v: serde_json::Value = serde_json::from_str(line).context("not valid JSON")?;
    let obj = v
        .as_object_mut()
        .context("each line must be a JSON object")?;
    let collection = obj
        .get("collection")
        .and_then(|c| c.as_str())
        .context("missing \"collection\" (an NSID string)")?;
    let collection = Nsid::parse(collection)?;
    let (rkey, keyed) = match obj.get("rkey") {
        None | Some(serde_json::Value::Null) => (RecordKey::parse("self")?, false),
        Some(serde_json::Value::String(s)) => (RecordKey::parse(s)?, true),
        Some(_) => bail!("\"rkey\" must be a string"),
    };
    let record = obj.remove("record").context("missing \"record\"")?;
    match record.get("$type") {
        Some(serde_json::Value::String(t)) if t == collection.as_str() => {}
        Some(serde_json::Value::String(t)) => {
            bail!("record $type {t:?} does not match collection {collection}")
        }
        _ => bail!("record must be an object with a \"$type\" string equal to the collection"),
    }
    Ok((
        InputLine {
            collection,
            rkey,
            record,
        },
        keyed,
    ))
}

/// One input line parsed, checked and encoded; its key is a placeholder until it gets its TID
/// unless `keyed`.
struct EncodedLine {
    collection: Nsid,
    rkey: RecordKey,
    keyed: bool,
    cid: guild_core::Cid,
    bytes: Vec<u8>,
}

/// Parses one line, checks it against the lexicons and encodes its record (the parallel
/// part of a build); adds the encoding's time to `encode_nanos` if there is one (`--stats`).
fn prepare_line(
    registry: &Registry,
    mode: Validate,
    line: &str,
    encode_nanos: Option<&std::sync::atomic::AtomicU64>,
) -> Result<EncodedLine> {
    let (line, keyed) = parse_line(line)?;
    validate_line(registry, mode, &line, keyed)?;
    let t = encode_nanos.map(|_| Instant::now());
    let (cid, bytes) = guild_core::data::encode_record_json(&line.record)?;
    if let (Some(total), Some(t)) = (encode_nanos, t) {
        let nanos = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
        total.fetch_add(nanos, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(EncodedLine {
        collection: line.collection,
        rkey: line.rkey,
        keyed,
        cid,
        bytes,
    })
}

/// Checks one record against the lexicons, and its key unless it has none yet (`keyed`
/// false: [`validate_key`] checks the TID it is given).
fn validate_line(registry: &Registry, mode: Validate, line: &InputLine, keyed: bool) -> Result<()> {
    if mode == Validate::Skip {
        return Ok(());
    }
    let known = registry.is_record_type(line.collection.as_str());
    if !known {
        if mode == Validate::Require {
            bail!(
                "no lexicon defines record type {} (use --lexicons DIR, or --validate auto)",
                line.collection
            );
        }
        return Ok(());
    }
    if keyed {
        validate_key(registry, mode, &line.collection, &line.rkey)?;
    }
    let value = guild_core::data::from_json(&line.record)?;
    registry
        .validate_record(&value)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// Checks a record's key against its lexicon (records of unknown types: nothing to check).
fn validate_key(
    registry: &Registry,
    mode: Validate,
    collection: &Nsid,
    rkey: &RecordKey,
) -> Result<()> {
    if mode == Validate::Skip || !registry.is_record_type(collection.as_str()) {
        return Ok(());
    }
    registry
        .validate_record_key(collection.as_str(), rkey.as_str())
        .map_err(|e| anyhow::anyhow!("record key: {e}"))
}

fn build(
    records: PathBuf,
    key: PathBuf,
    out: PathBuf,
    stats: bool,
    lexicons: &[PathBuf],
    validate: Validate,
) -> Result<ExitCode> {
    let key = read_key_file(&key)?;
    let (registry, problems) = Registry::load_dirs(lexicons);
    for p in &problems {
        tracing::warn!("lexicon refused: {p}");
        eprintln!("warning: lexicon refused: {p}");
    }
    let text = std::fs::read_to_string(&records)
        .with_context(|| format!("cannot read {}", records.display()))?;
    let mut clock = TidClock::new(clock_id(&key));
    let tp = Instant::now();
    // Each line is parsed, checked against the lexicons and encoded on every core, in one
    // pass: its JSON tree is freed on the thread that made it, as soon as it is encoded.
    // The first bad line (by number) is the error. With `--stats` each record's encoding is
    // timed, and the timed scope (the reference benchmark's: JSON already parsed) counts
    // their sum over the pool's threads divided by the threads.
    let numbered: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l))
        .collect();
    let encode_nanos = std::sync::atomic::AtomicU64::new(0);
    let lines: Vec<Result<EncodedLine>> = numbered
        .par_iter()
        .map(|(no, line)| {
            prepare_line(&registry, validate, line, stats.then_some(&encode_nanos))
                .with_context(|| format!("{} line {no}", records.display()))
        })
        .collect();
    let line_numbers: Vec<usize> = numbered.iter().map(|(no, _)| *no).collect();
    drop(numbered);
    drop(text);
    let t0 = Instant::now();
    let mut prepared = Vec::with_capacity(lines.len());
    for (l, no) in lines.into_iter().zip(&line_numbers) {
        let mut line = l?;
        // Lines without a key get TIDs in line order.
        if !line.keyed {
            line.rkey = RecordKey::parse(clock.next(now_micros()).as_str())?;
            validate_key(&registry, validate, &line.collection, &line.rkey)
                .with_context(|| format!("{} line {no}", records.display()))?;
        }
        prepared.push(PreparedRecord {
            path: format!("{}/{}", line.collection, line.rkey),
            cid: line.cid,
            bytes: line.bytes.into(),
        });
    }
    if prepared.is_empty() {
        bail!("{}: no records", records.display());
    }
    let n = prepared.len();
    let t1 = Instant::now();
    let rev = clock.next(now_micros());
    let (repo, result) = Repo::import(MemoryBlockStore::new(), &key, rev, prepared)
        .with_context(|| format!("{}", records.display()))?;
    let t2 = Instant::now();
    let head = result.head.clone();
    // The commit first, then the tree and the records, as the AT reference writes them.
    write_public(&out, |w| {
        let mut car = CarWriter::new(w, &[head.commit])?;
        for (cid, data) in result.blocks.iter().rev() {
            car.write_block(cid, data)?;
        }
        car.finish()?;
        Ok(())
    })?;
    if stats {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        // The encoding's share of the parallel pass: its summed time over the pool's threads.
        let encode_ms =
            encode_nanos.into_inner() as f64 / 1e6 / rayon::current_num_threads() as f64;
        let mut err = std::io::stderr().lock();
        writeln!(
            err,
            "{}",
            serde_json::json!({
                "records": n,
                "parse_ms": ms(t0 - tp) - encode_ms,
                "validate_ms": 0.0,
                "encode_ms": encode_ms,
                "paths_ms": ms(t1 - t0),
                "mst_commit_ms": ms(t2 - t1),
                "total_ms": encode_ms + ms(t1 - t0) + ms(t2 - t1),
                "write_ms": ms(t2.elapsed()),
            })
        )?;
    }
    println!(
        "wrote {} records to {} (did {}, rev {}, commit {})",
        n,
        out.display(),
        repo.did(),
        head.rev,
        head.commit
    );
    Ok(ExitCode::SUCCESS)
}

/// A TID clock id derived from the key, so two nodes rarely share one.
fn clock_id(key: &guild_core::Keypair) -> u16 {
    let pk = key.public().to_bytes();
    u16::from_le_bytes([pk[0], pk[1]]) & 0x3ff
}

fn inspect(file: PathBuf, json: bool, list: bool) -> Result<ExitCode> {
    let bytes = read_input(&file)?;
    let car = read_car_owned(bytes.into()).with_context(|| format!("{}", file.display()))?;
    let [root] = car.roots.as_slice() else {
        bail!(
            "{}: a repository CAR has exactly one root (the commit)",
            file.display()
        );
    };
    let commit_bytes = car
        .blocks
        .get(root)
        .with_context(|| format!("{}: the commit block {root} is missing", file.display()))?;
    let commit =
        verify_commit(root, commit_bytes).with_context(|| format!("{}", file.display()))?;
    let entries = Mst::load(commit.data)
        .entries(&car.blocks)
        .with_context(|| format!("{}", file.display()))?;
    let records: Vec<(String, String)> = entries
        .iter()
        .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.to_string()))
        .collect();
    if json {
        let mut doc = serde_json::json!({
            "did": commit.did,
            "rev": commit.rev.as_str(),
            "commit": root.to_string(),
            "data": commit.data.to_string(),
            "count": records.len(),
        });
        if list {
            doc["records"] = records
                .iter()
                .map(|(p, c)| serde_json::json!({"path": p, "cid": c}))
                .collect();
        }
        println!("{doc}");
    } else {
        let out = std::io::stdout();
        let mut out = std::io::BufWriter::new(out.lock());
        writeln!(out, "did:    {}", commit.did)?;
        writeln!(out, "rev:    {}", commit.rev)?;
        writeln!(out, "commit: {root}")?;
        writeln!(out, "data:   {}", commit.data)?;
        writeln!(out, "count:  {}", records.len())?;
        if list {
            for (p, c) in &records {
                writeln!(out, "{p} {c}")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
