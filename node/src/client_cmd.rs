//! Commands that talk to the running node over its XRPC API: `record`, `import`, `export`,
//! `status`.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use guild_api::methods::node::get_status;
use guild_api::{Client, ClientError};
use guild_core::syntax::{Datetime, Did, TidClock};
use guild_store::Space;
use serde_json::{Value, json};

use crate::config::files;
use crate::files::write_public;

/// Where the node is and how to reach it.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The space: `public` (the member's public repo) or a collective id.
    #[arg(long, default_value = "public", global = true)]
    pub space: Space,
}

/// A client for the node whose data directory is `data_dir`.
pub(crate) fn connect(data_dir: &Path) -> Result<(Client, String)> {
    let addr_path = data_dir.join(files::ADDR);
    let url = match std::fs::read_to_string(&addr_path) {
        Ok(s) => s.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::metadata(data_dir) {
            Ok(_) => bail!(
                "the node is not running: {} is missing (start it with `guild node --data-dir {}`)",
                addr_path.display(),
                data_dir.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "there is no data directory {} (create one with `guild init --data-dir {}`)",
                data_dir.display(),
                data_dir.display()
            ),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot read the data directory {}", data_dir.display())
                });
            }
        },
        // Not "not running": say what is wrong (permission denied on the directory, …).
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "cannot read the node's address file {}",
                    addr_path.display()
                )
            });
        }
    };
    let token = crate::node_cmd::read_token(data_dir)?;
    let client = Client::new(url, Some(token))?;
    let status = client
        .call::<get_status::GetStatus>(&get_status::Params {})
        .map_err(explain)?;
    Ok((client, status.did))
}

/// Turns a client error into one a person can act on.
pub(crate) fn explain(e: ClientError) -> anyhow::Error {
    match e {
        ClientError::Unreachable { url, .. } => anyhow::anyhow!(
            "cannot reach the node at {url}: is `guild node` running? (a stale node.addr is left behind if the node was killed)"
        ),
        other => anyhow::anyhow!("{other}"),
    }
}

/// The method family for a space: AT's for the public repo, Guild's for a collective.
fn nsid(space: &Space, method: &str) -> String {
    if space.is_public() {
        format!("com.atproto.{method}")
    } else {
        format!("coop.guild.{method}")
    }
}

fn with_space(mut body: Value, space: &Space) -> Value {
    if !space.is_public() {
        body["space"] = Value::String(space.to_string());
    }
    body
}

/// The `space` query parameter: none for the public repo (AT's methods take none).
fn space_param(space: &Space) -> Option<String> {
    space.collective().map(ToString::to_string)
}

/// `guild record …`
#[derive(Debug, Subcommand)]
pub enum RecordCmd {
    /// Add a record (JSON data model; its `$type` must be the collection).
    Add {
        /// The collection (an NSID).
        #[arg(long)]
        collection: String,
        /// The record key (a TID is chosen if absent).
        #[arg(long)]
        rkey: Option<String>,
        /// The record as JSON text.
        #[arg(long, conflicts_with = "file")]
        json: Option<String>,
        /// A file holding the record as JSON (`-` for standard input).
        file: Option<PathBuf>,
        /// Lexicon validation: true requires a lexicon, false skips it (default: validate known types).
        #[arg(long)]
        validate: Option<bool>,
        /// Publish it to the commons: in the public repo, with a `coop.guild.commons.licence`
        /// record naming `--licence`, both in one commit.
        #[arg(long, requires = "licence")]
        commons: bool,
        /// The commons licence: a standard template (research-open, eval-public, …).
        #[arg(long, requires = "commons")]
        licence: Option<String>,
        /// A use-restricted commons: only these classes of users (commercial, research,
        /// non-profit, public-sector, personal; repeatable).
        #[arg(long = "restricted-to", requires = "commons")]
        restricted_to: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Put a record already in the public repo in the commons, under a licence.
    Commons {
        /// `<collection>/<rkey>` of the public repo.
        path: String,
        /// The licence: a standard template (research-open, eval-public, …).
        #[arg(long)]
        licence: String,
        /// A use-restricted commons: only these classes of users (repeatable).
        #[arg(long = "restricted-to")]
        restricted_to: Vec<String>,
    },
    /// Print a record as JSON.
    Get {
        /// `<collection>/<rkey>`, or an `at://` URI (another member's, in a collective space,
        /// reads this node's replica of their repo: stewards' nodes keep one).
        path: String,
        #[command(flatten)]
        target: Target,
    },
    /// List the records of a collection.
    List {
        /// The collection (an NSID).
        #[arg(long)]
        collection: String,
        /// At most this many (1–100 per page; pages are followed up to this count).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Start after this rkey.
        #[arg(long)]
        cursor: Option<String>,
        /// Newest first.
        #[arg(long)]
        reverse: bool,
        /// Print JSON lines (`{"uri", "cid", "value"}`) instead of `uri cid`.
        #[arg(long)]
        json: bool,
        /// Another member's repo (in a collective space: this node's replica of it).
        #[arg(long)]
        did: Option<Did>,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a record.
    Delete {
        /// `<collection>/<rkey>`, or an `at://` URI.
        path: String,
        #[command(flatten)]
        target: Target,
    },
}

/// `<collection>/<rkey>` or `at://<did>/<collection>/<rkey>`: the DID (if any), the
/// collection and the rkey.
fn split_path(path: &str) -> Result<(Option<String>, String, String)> {
    let (did, p) = match path.strip_prefix("at://") {
        Some(rest) => match rest.split_once('/') {
            Some((d, p)) => (Some(d.to_string()), p),
            None => (None, rest),
        },
        None => (None, path),
    };
    let (c, k) = p
        .split_once('/')
        .with_context(|| format!("{path:?} is not <collection>/<rkey> or an at:// URI"))?;
    Ok((did, c.to_string(), k.to_string()))
}

/// Runs `guild record …`.
pub fn record(data_dir: &Path, cmd: RecordCmd) -> Result<ExitCode> {
    let (client, did) = connect(data_dir)?;
    match cmd {
        RecordCmd::Add {
            collection,
            rkey,
            json,
            file,
            validate,
            commons,
            licence,
            restricted_to,
            target,
        } => {
            let text = record_text(json, file)?;
            let record: Value =
                serde_json::from_str(&text).context("the record is not valid JSON")?;
            if commons {
                if !target.space.is_public() {
                    bail!("--commons publishes to the public repo: leave out --space");
                }
                let licence = licence.unwrap_or_default();
                let commons = Commons::new(&licence, restricted_to)?;
                let rkey = match rkey {
                    Some(k) => k,
                    None => TidClock::new(0x155).next(now_micros()).as_str().to_owned(),
                };
                let out =
                    commons.publish(&client, &did, &collection, &rkey, Some(record), validate)?;
                println!("{out}");
                return Ok(ExitCode::SUCCESS);
            }
            let mut body = json!({"repo": did, "collection": collection, "record": record});
            if let Some(k) = rkey {
                body["rkey"] = Value::String(k);
            }
            if let Some(v) = validate {
                body["validate"] = Value::Bool(v);
            }
            let out = client
                .procedure(
                    &nsid(&target.space, "repo.createRecord"),
                    &with_space(body, &target.space),
                )
                .map_err(explain)?;
            println!(
                "{} {}",
                out["uri"].as_str().unwrap_or_default(),
                out["cid"].as_str().unwrap_or_default()
            );
        }
        RecordCmd::Commons {
            path,
            licence,
            restricted_to,
        } => {
            let (repo, c, k) = split_path(&path)?;
            if repo.is_some_and(|r| r != did) {
                bail!("only your own records go to your commons");
            }
            let commons = Commons::new(&licence, restricted_to)?;
            println!("{}", commons.publish(&client, &did, &c, &k, None, None)?);
        }
        RecordCmd::Get { path, target } => get_record(&client, did, &path, &target.space)?,
        RecordCmd::List {
            collection,
            limit,
            cursor,
            reverse,
            json,
            did: repo,
            target,
        } => {
            let query = ListQuery {
                repo: repo.map_or(did, Did::into_string),
                collection,
                limit,
                cursor,
                reverse,
            };
            list_records(&client, query, json, &target.space)?;
        }
        RecordCmd::Delete { path, target } => {
            let (repo, c, k) = split_path(&path)?;
            // Another member's URI goes to the node as such (it refuses: only the owner
            // writes a repo), never to this member's record with the same path.
            let did = repo.unwrap_or(did);
            let body = json!({"repo": did, "collection": c, "rkey": k});
            client
                .procedure(
                    &nsid(&target.space, "repo.deleteRecord"),
                    &with_space(body, &target.space),
                )
                .map_err(explain)?;
            println!("deleted at://{did}/{c}/{k}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The text of `guild record add`'s record: `--json TEXT`, a FILE, or `-` for standard input.
fn record_text(json: Option<String>, file: Option<PathBuf>) -> Result<String> {
    Ok(match (json, file) {
        (Some(t), _) => t,
        (None, Some(f)) if f.as_os_str() == "-" => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
            s
        }
        (None, Some(f)) => {
            std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?
        }
        (None, None) => bail!("give the record as a FILE argument, `-`, or --json TEXT"),
    })
}

/// `guild record get PATH`: prints the record's value (in `did`'s repo unless the path is
/// an at:// URI).
fn get_record(client: &Client, did: String, path: &str, space: &Space) -> Result<()> {
    let (repo, c, k) = split_path(path)?;
    let repo = repo.unwrap_or(did);
    let mut params = vec![("repo", repo.as_str()), ("collection", &c), ("rkey", &k)];
    let space_param = space_param(space);
    if let Some(s) = &space_param {
        params.push(("space", s));
    }
    let out = client
        .query(&nsid(space, "repo.getRecord"), &params)
        .map_err(explain)?;
    println!("{}", serde_json::to_string_pretty(&out["value"])?);
    Ok(())
}

/// What `guild record list` asks for.
struct ListQuery {
    repo: String,
    collection: String,
    limit: usize,
    cursor: Option<String>,
    reverse: bool,
}

/// `guild record list`: up to `limit` records, fetched 100 a page, one line each (its URI
/// and CID, or with `json` the whole entry).
fn list_records(client: &Client, query: ListQuery, json: bool, space: &Space) -> Result<()> {
    let space_param = space_param(space);
    let mut cursor = query.cursor;
    let mut left = query.limit;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    while left > 0 {
        let page = left.min(100).to_string();
        let mut params = vec![
            ("repo", query.repo.as_str()),
            ("collection", query.collection.as_str()),
            ("limit", page.as_str()),
        ];
        if query.reverse {
            params.push(("reverse", "true"));
        }
        if let Some(c) = &cursor {
            params.push(("cursor", c));
        }
        if let Some(s) = &space_param {
            params.push(("space", s));
        }
        let resp = client
            .query(&nsid(space, "repo.listRecords"), &params)
            .map_err(explain)?;
        let records = resp["records"].as_array().cloned().unwrap_or_default();
        for r in &records {
            if json {
                writeln!(out, "{r}")?;
            } else {
                writeln!(
                    out,
                    "{} {}",
                    r["uri"].as_str().unwrap_or_default(),
                    r["cid"].as_str().unwrap_or_default()
                )?;
            }
        }
        left = left.saturating_sub(records.len());
        match resp["cursor"].as_str() {
            Some(c) if !records.is_empty() => cursor = Some(c.to_string()),
            _ => break,
        }
    }
    Ok(())
}

/// `guild status`
pub fn status(data_dir: &Path, json_out: bool) -> Result<ExitCode> {
    let (client, _) = connect(data_dir)?;
    let s = client
        .call::<get_status::GetStatus>(&get_status::Params {})
        .map_err(explain)?;
    if json_out {
        println!("{}", serde_json::to_string(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("did:      {}", s.did);
    println!("version:  {}", s.version);
    println!("uptime:   {} s", s.uptime_secs);
    println!("lexicons: {}", s.lexicons);
    if s.repos.is_empty() {
        println!("repos:    none yet");
    }
    for r in s.repos {
        println!(
            "repo:     {} — {} records, rev {}, commit {}",
            r.space, r.records, r.rev, r.commit
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `guild export`
pub fn export(
    data_dir: &Path,
    out: &Path,
    space: &Space,
    since: Option<&str>,
    repo: Option<&Did>,
) -> Result<ExitCode> {
    let (client, did) = connect(data_dir)?;
    let did = repo.map_or(did, Did::to_string);
    let mut params = vec![("did", did.as_str())];
    let space_param = space_param(space);
    if let Some(s) = &space_param {
        params.push(("space", s));
    }
    if let Some(s) = since {
        params.push(("since", s));
    }
    let car = client
        .query_bytes(&nsid(space, "sync.getRepo"), &params)
        .map_err(explain)?;
    write_public(out, |w| {
        w.write_all(&car)?;
        Ok(())
    })?;
    println!("wrote {} bytes to {}", car.len(), out.display());
    Ok(ExitCode::SUCCESS)
}

/// One item to import.
struct Item {
    /// A stable identity for resuming: SHA-256 of the source and its content.
    id: String,
    collection: String,
    rkey: Option<String>,
    record: Value,
    /// How many items before this one share its id (identical JSONL lines); set when planning.
    occurrence: usize,
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut all = Vec::new();
    for p in parts {
        all.extend_from_slice(&(p.len() as u64).to_be_bytes());
        all.extend_from_slice(p);
    }
    guild_core::cids::sha256(&all)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads the items of a JSONL file (lines like `guild repo build` takes) or a directory of
/// text and Markdown files (one `coop.guild.data.text` record each).
fn read_items(path: &Path) -> Result<Vec<Item>> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut items = Vec::new();
    if meta.is_dir() {
        let mut files = Vec::new();
        collect_text_files(path, &mut files)?;
        files.sort();
        for f in files {
            let body = std::fs::read_to_string(&f)
                .with_context(|| format!("{} is not UTF-8 text", f.display()))?;
            if body.trim().is_empty() {
                continue;
            }
            let rel = f
                .strip_prefix(path)
                .unwrap_or(&f)
                .to_string_lossy()
                .into_owned();
            let title = body
                .lines()
                .find(|l| !l.trim().is_empty())
                .map(|l| l.trim_start_matches('#').trim())
                .filter(|t| !t.is_empty())
                .unwrap_or(&rel)
                .chars()
                .take(300)
                .collect::<String>();
            let created = std::fs::metadata(&f)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_micros() as i64);
            items.push(Item {
                id: sha256_hex(&[rel.as_bytes(), body.as_bytes()]),
                collection: "coop.guild.data.text".into(),
                rkey: None,
                record: json!({
                    "$type": "coop.guild.data.text",
                    "title": title,
                    "body": body,
                    "createdAt": Datetime::from_unix_micros(created).as_str(),
                }),
                occurrence: 0,
            });
        }
        return Ok(items);
    }
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{} line {}", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let where_ = || format!("{} line {}", path.display(), i + 1);
        let v: Value =
            serde_json::from_str(&line).with_context(|| format!("{}: not valid JSON", where_()))?;
        let collection = v["collection"]
            .as_str()
            .with_context(|| format!("{}: missing \"collection\"", where_()))?
            .to_string();
        let rkey = match &v["rkey"] {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            _ => bail!("{}: \"rkey\" must be a string", where_()),
        };
        let record = v
            .get("record")
            .cloned()
            .with_context(|| format!("{}: missing \"record\"", where_()))?;
        items.push(Item {
            id: sha256_hex(&[line.as_bytes()]),
            collection,
            rkey,
            record,
            occurrence: 0,
        });
    }
    Ok(items)
}

fn collect_text_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        let p = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if entry.file_type()?.is_dir() {
            collect_text_files(&p, out)?;
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("txt" | "md" | "markdown")
        ) {
            out.push(p);
        }
    }
    Ok(())
}

/// `guild import PATH`: batches into large commits; a journal in the data directory makes a
/// re-run skip what an earlier run imported (even one that was interrupted).
pub fn import(data_dir: &Path, path: &Path, space: &Space, batch: usize) -> Result<ExitCode> {
    let (client, did) = connect(data_dir)?;
    let items = read_items(path)?;
    let source = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let journal_dir = data_dir.join(files::IMPORTS);
    std::fs::create_dir_all(&journal_dir)?;
    let journal_path = journal_dir.join(format!(
        "{}.log",
        &sha256_hex(&[
            space.to_string().as_bytes(),
            source.to_string_lossy().as_bytes()
        ])[..32]
    ));
    let planned = read_journal(&journal_path)?;
    let existing = existing_records(&client, &did, space, &planned)?;
    let (todo, skipped) = plan_import(items, &planned, &existing)?;
    let bar = indicatif::ProgressBar::new(todo.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} records  {per_sec}  eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut journal = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&journal_path)
        .with_context(|| format!("cannot write {}", journal_path.display()))?;
    if journal.metadata()?.len() == 0 {
        journal.write_all(format!("{JOURNAL_HEADER}\n").as_bytes())?;
    }
    // Batches are bounded by count and by bytes, under the node's request limit. Two are in
    // flight: while the node commits one, this side encodes the next and the node parses it
    // (each batch is journaled before it is sent, so a run stopped anywhere resumes).
    let max_bytes = 3_000_000usize;
    let (jobs, queue) = std::sync::mpsc::sync_channel::<(usize, usize, Value)>(1);
    // Only the senders hold the queue: when the last one stops (a failed batch), the next
    // send fails instead of waiting for a taker.
    let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
    let failed: std::sync::Mutex<Option<anyhow::Error>> = std::sync::Mutex::new(None);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let total = todo.len();
    let method = nsid(space, "repo.applyWrites");
    std::thread::scope(|scope| -> Result<()> {
        for queue in (0..IMPORT_IN_FLIGHT).map(|_| std::sync::Arc::clone(&queue)) {
            scope.spawn(|| {
                let queue = queue;
                loop {
                    // The lock is held only to take a job; a poisoned lock ends the sender.
                    let job = match queue.lock() {
                        Ok(q) => q.recv(),
                        Err(_) => return,
                    };
                    let Ok((i, j, body)) = job else { return };
                    match client.procedure(&method, &body) {
                        Ok(_) => {
                            done.fetch_add(j - i, std::sync::atomic::Ordering::Relaxed);
                            bar.inc((j - i) as u64);
                        }
                        Err(e) => {
                            let e = explain(e)
                                .context(format!("importing items {}–{j} of {total}", i + 1));
                            if let Ok(mut f) = failed.lock() {
                                f.get_or_insert(e);
                            }
                            return;
                        }
                    }
                }
            });
        }
        drop(queue);
        let mut i = 0;
        while i < todo.len() {
            if failed.lock().map_or(true, |f| f.is_some()) {
                break;
            }
            let mut j = i;
            let mut bytes = 0usize;
            while j < todo.len() && j - i < batch {
                let size = todo[j].0.record.to_string().len() + 200;
                if j > i && bytes + size > max_bytes {
                    break;
                }
                bytes += size;
                j += 1;
            }
            let chunk = &todo[i..j];
            write_journal(&mut journal, chunk)?;
            if jobs.send((i, j, batch_body(&did, space, chunk))).is_err() {
                break;
            }
            i = j;
        }
        drop(jobs);
        Ok(())
    })?;
    if let Some(e) = failed.into_inner().ok().flatten() {
        return Err(e);
    }
    let done = done.into_inner();
    bar.finish_and_clear();
    eprintln!(
        "imported {done} records from {} ({skipped} already imported)",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `applyWrites` batches of one `guild import` in flight at once.
const IMPORT_IN_FLIGHT: usize = 2;

/// The first line of an import journal in the current format. Each later line is
/// "<id> <n> <collection> <rkey>": the key planned for the n-th (from 0) item of the input
/// with identity `id` — so identical JSONL lines, which share an id, keep distinct keys.
const JOURNAL_HEADER: &str = "guild-import-journal 2";

/// Each planned item's collection and key, by (identity, occurrence).
type Planned = HashMap<(String, usize), (String, String)>;

/// An item to send, with its collection and key.
type ToSend = (Item, String, String);

/// Reads the import journal (empty when there is none yet). A torn last line — an import
/// killed while journaling a batch it had not yet sent — is dropped from the file. A journal
/// of the first format ("<id> <collection> <rkey>", which keyed identical lines together) is
/// rewritten in the current one; a journal that is neither is an error naming the file.
fn read_journal(journal_path: &Path) -> Result<Planned> {
    let text = match std::fs::read(journal_path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", journal_path.display())),
    };
    let corrupt = |n: usize, why: &str| {
        anyhow::anyhow!(
            "the import journal {} is damaged at line {n} ({why}); it records the keys earlier \
             runs gave this input's records: restore it, or remove it to import the whole input \
             again as new records",
            journal_path.display()
        )
    };
    // Only whole lines count; a torn tail was never sent (the journal is synced first).
    let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if whole < text.len() {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(journal_path)
            .with_context(|| format!("cannot write {}", journal_path.display()))?;
        f.set_len(whole as u64)?;
        f.sync_data()?;
    }
    let text = std::str::from_utf8(&text[..whole]).map_err(|_| corrupt(1, "not UTF-8"))?;
    let mut lines = text.lines();
    let mut planned = Planned::new();
    match lines.next() {
        None => {}
        Some(JOURNAL_HEADER) => {
            for (i, line) in lines.enumerate() {
                let parts: Vec<&str> = line.split(' ').collect();
                let n = match parts[..] {
                    [id, n, c, k] if is_item_id(id) && !c.is_empty() && !k.is_empty() => n
                        .parse::<usize>()
                        .map_err(|_| corrupt(i + 2, "bad occurrence number"))?,
                    _ => return Err(corrupt(i + 2, "not \"<id> <n> <collection> <rkey>\"")),
                };
                planned.insert(
                    (parts[0].to_string(), n),
                    (parts[2].to_string(), parts[3].to_string()),
                );
            }
        }
        Some(first) if first.starts_with("guild-import-journal ") => bail!(
            "the import journal {} is in a format this guild does not know ({first:?}); \
             use the guild that wrote it",
            journal_path.display()
        ),
        Some(_) => {
            planned =
                journal_v1(text).map_err(|n| corrupt(n, "not \"<id> <collection> <rkey>\""))?;
            rewrite_journal(journal_path, &planned)?;
        }
    }
    Ok(planned)
}

/// Whether `s` is an item identity (a SHA-256 in hex).
fn is_item_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Reads a first-format journal ("<id> <collection> <rkey>", identical lines under one id):
/// the distinct keys journaled for an id, in order, belong to its occurrences in order —
/// a first run plans occurrences in input order with fresh keys, and a later first-format run
/// only ever re-journaled a key already there. Errs with the number of a malformed line.
fn journal_v1(text: &str) -> std::result::Result<Planned, usize> {
    let mut seen: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let parts: Vec<&str> = line.split(' ').collect();
        let [id, c, k] = parts[..] else {
            return Err(i + 1);
        };
        if !is_item_id(id) || c.is_empty() || k.is_empty() {
            return Err(i + 1);
        }
        let keys = seen.entry(id.to_string()).or_default();
        if !keys.iter().any(|(c0, k0)| c0 == c && k0 == k) {
            keys.push((c.to_string(), k.to_string()));
        }
    }
    Ok(seen
        .into_iter()
        .flat_map(|(id, keys)| {
            keys.into_iter()
                .enumerate()
                .map(move |(n, ck)| ((id.clone(), n), ck))
        })
        .collect())
}

/// Replaces the journal with `planned` in the current format (written aside, synced, renamed).
fn rewrite_journal(journal_path: &Path, planned: &Planned) -> Result<()> {
    let mut entries: Vec<_> = planned.iter().collect();
    entries.sort();
    let mut out = format!("{JOURNAL_HEADER}\n");
    for ((id, n), (c, k)) in entries {
        out.push_str(&format!("{id} {n} {c} {k}\n"));
    }
    let tmp = journal_path.with_extension("log.tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(out.as_bytes())?;
    f.sync_data()?;
    std::fs::rename(&tmp, journal_path)
        .with_context(|| format!("cannot write {}", journal_path.display()))?;
    Ok(())
}

/// What the repo already holds, as (collection, rkey), for the collections the journal
/// mentions.
fn existing_records(
    client: &Client,
    did: &str,
    space: &Space,
    planned: &Planned,
) -> Result<HashSet<(String, String)>> {
    let space_param = space_param(space);
    let mut existing: HashSet<(String, String)> = HashSet::new();
    let collections: HashSet<&String> = planned.values().map(|(c, _)| c).collect();
    for c in collections {
        let mut cursor: Option<String> = None;
        loop {
            let mut params = vec![("repo", did), ("collection", c.as_str()), ("limit", "100")];
            if let Some(cur) = &cursor {
                params.push(("cursor", cur));
            }
            if let Some(s) = &space_param {
                params.push(("space", s));
            }
            let resp = match client.query(&nsid(space, "repo.listRecords"), &params) {
                Ok(r) => r,
                Err(ClientError::Xrpc { error, .. }) if error == "RepoNotFound" => break,
                Err(e) => return Err(explain(e)),
            };
            let recs = resp["records"].as_array().cloned().unwrap_or_default();
            for r in &recs {
                if let Some(uri) = r["uri"].as_str()
                    && let Some(k) = uri.rsplit('/').next()
                {
                    existing.insert((c.clone(), k.to_string()));
                }
            }
            match resp["cursor"].as_str() {
                Some(cur) if !recs.is_empty() => cursor = Some(cur.to_string()),
                _ => break,
            }
        }
    }
    Ok(existing)
}

/// The items still to import, each with its collection and key (the journal's for an item
/// an earlier run planned, else its own key or a fresh TID), and how many were already
/// imported. Every item is its own record: the n-th of several identical JSONL lines is
/// journaled as occurrence n of their shared id, so each keeps its own key across re-runs.
/// Two items that would write the same collection and key are an error, before anything is sent.
fn plan_import(
    items: Vec<Item>,
    planned: &Planned,
    existing: &HashSet<(String, String)>,
) -> Result<(Vec<ToSend>, usize)> {
    let mut clock = TidClock::new(0x155);
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64)
    };
    let mut todo = Vec::new();
    let mut skipped = 0usize;
    let mut occurrences: HashMap<String, usize> = HashMap::new();
    let mut keys: HashSet<(String, String)> = HashSet::new();
    for mut item in items {
        let n = occurrences.entry(item.id.clone()).or_default();
        item.occurrence = *n;
        *n += 1;
        let journaled = planned.get(&(item.id.clone(), item.occurrence));
        let (c, k) = match journaled {
            Some((c, k)) => (c.clone(), k.clone()),
            None => {
                let k = match &item.rkey {
                    Some(k) => k.clone(),
                    None => clock.next(now()).as_str().to_string(),
                };
                (item.collection.clone(), k)
            }
        };
        if !keys.insert((c.clone(), k.clone())) {
            bail!(
                "the input has more than one record for {c}/{k}; each record key may appear once"
            );
        }
        if journaled.is_some() && existing.contains(&(c.clone(), k.clone())) {
            skipped += 1;
            continue;
        }
        todo.push((item, c, k));
    }
    Ok((todo, skipped))
}

/// Journals a batch of the import before it is sent (synced, so that a re-run finds it).
fn write_journal(journal: &mut std::fs::File, chunk: &[(Item, String, String)]) -> Result<()> {
    let mut lines = String::new();
    for (item, c, k) in chunk {
        lines.push_str(&format!("{} {} {c} {k}\n", item.id, item.occurrence));
    }
    journal.write_all(lines.as_bytes())?;
    journal.sync_data()?;
    Ok(())
}

/// The `applyWrites` request creating a batch of the import's records.
fn batch_body(did: &str, space: &Space, chunk: &[(Item, String, String)]) -> Value {
    let writes: Vec<Value> = chunk
        .iter()
        .map(|(item, c, k)| {
            json!({
                "$type": "com.atproto.repo.applyWrites#create",
                "collection": c,
                "rkey": k,
                "value": item.record,
            })
        })
        .collect();
    with_space(json!({"repo": did, "writes": writes}), space)
}

/// `guild dashboard`: a one-time login link for the node's dashboard, minted with the admin
/// token read from the data directory (the node checks it; see `guild_api::web::login`).
pub fn dashboard(data_dir: &Path, json: bool) -> Result<std::process::ExitCode> {
    // (`connect` checks that the node is up and takes the token: a link to a dead node helps
    // nobody)
    let (client, _) = connect(data_dir)?;
    let token = crate::node_cmd::read_token(data_dir)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?;
    let now = i64::try_from(now.as_micros()).context("the system clock is past year 294 247")?;
    let code = guild_api::web::login_code(&token, now)?;
    let base = client.base().trim_end_matches('/');
    let login = format!("{base}/dashboard/login?code={code}");
    let contracts = format!("{base}/contracts");
    if json {
        println!(
            "{}",
            serde_json::json!({"login": login, "contracts": contracts})
        );
    } else {
        println!("Dashboard: {login}");
        println!("  (open it in a browser on this machine; the link works once, for 10 minutes)");
        println!("Contracts: {contracts}");
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A commons licence to write: a standard template, and the user classes of a
/// use-restricted commons.
struct Commons {
    template: String,
    restricted_to: Vec<String>,
}

impl Commons {
    fn new(template: &str, restricted_to: Vec<String>) -> Result<Commons> {
        if guild_license::standard_template(template).is_none() {
            bail!(
                "--licence {template:?} is not a standard template (one of: {})",
                guild_license::STANDARD_IDS.join(", ")
            );
        }
        for class in &restricted_to {
            class
                .parse::<guild_license::terms::UserClass>()
                .map_err(|e| anyhow::anyhow!("--restricted-to {class:?}: {e}"))?;
        }
        Ok(Commons {
            template: template.to_owned(),
            restricted_to,
        })
    }

    /// Writes the licence record (and the record itself, when given) in one commit of the
    /// public repo; prints `<record uri> <licence uri>`.
    fn publish(
        &self,
        client: &Client,
        did: &str,
        collection: &str,
        rkey: &str,
        record: Option<Value>,
        validate: Option<bool>,
    ) -> Result<String> {
        let subject = format!("at://{did}/{collection}/{rkey}");
        if record.is_none() {
            // The record must exist already.
            client
                .query(
                    "com.atproto.repo.getRecord",
                    &[("repo", did), ("collection", collection), ("rkey", rkey)],
                )
                .map_err(explain)?;
        }
        let created = Datetime::from_unix_micros(i64::try_from(now_micros()).unwrap_or(i64::MAX));
        let mut licence = json!({
            "$type": "coop.guild.commons.licence",
            "subject": subject,
            "template": self.template,
            "createdAt": created.as_str(),
        });
        if !self.restricted_to.is_empty() {
            licence["restrictedTo"] = json!(self.restricted_to);
        }
        let mut writes = Vec::new();
        if let Some(r) = record {
            writes.push(json!({
                "$type": "com.atproto.repo.applyWrites#create",
                "collection": collection,
                "rkey": rkey,
                "value": r,
            }));
        }
        writes.push(json!({
            "$type": "com.atproto.repo.applyWrites#create",
            "collection": "coop.guild.commons.licence",
            "value": licence,
        }));
        let mut body = json!({"repo": did, "writes": writes});
        if let Some(v) = validate {
            body["validate"] = Value::Bool(v);
        }
        let out = client
            .procedure("com.atproto.repo.applyWrites", &body)
            .map_err(explain)?;
        let uris: Vec<&str> = out["results"]
            .as_array()
            .map(|r| r.iter().filter_map(|x| x["uri"].as_str()).collect())
            .unwrap_or_default();
        Ok(format!(
            "{subject} {}",
            uris.last().copied().unwrap_or_default()
        ))
    }
}
