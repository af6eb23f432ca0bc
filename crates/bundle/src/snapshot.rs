//! The **commons snapshot** (`docs/commons-snapshot.md`): every record of a collective's
//! commons (members' public records, each under the licence its author gave it with a
//! `coop.guild.commons.licence` record) as one CAR v1 file that anyone downloads and checks
//! offline, with its Croissant 1.1 file and dataset card.
//!
//! Unlike a bundle, a snapshot needs no agreement, consent or stewards' seal: what makes a
//! record usable is its author's own licence record, signed in the same repository. So the
//! file proves, for every entry, that the author's signed commit holds the record and the
//! licence record, and that the licence names that record and that template:
//!
//! - the root block is the manifest `coop.guild.commons.snapshot` (`createdAt`,
//!   `recordCount`, `repos`: `{did, rev, commit}` per author in DID order, `pages`: the entry
//!   pages' CIDs);
//! - each page `coop.guild.commons.snapshotPage` holds up to [`PAGE_ENTRIES`] entries
//!   `{author, path, cid, licence, licenceCid, template, restrictedTo?}`, all entries sorted
//!   by author then path, no two alike;
//! - then, per repo in DID order, its signed commit, and per entry in order the MST nodes on
//!   the paths to the record and to its licence, the record and the licence record, each
//!   block once, in first-use order.
//!
//! [`build`] makes the file from the manifest's facts and a block source holding those blocks
//! (it proves every entry as it writes, so it never writes a file [`verify`] refuses);
//! [`verify`] checks one from its bytes alone. Both are pure.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use cid::Cid;
use guild_core::data::{self, Ipld};
use guild_core::syntax::{Datetime, Did, Tid};
use guild_repo::{BlockSource, Bytes};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The manifest's `$type`.
pub const SNAPSHOT: &str = "coop.guild.commons.snapshot";
/// A page's `$type`.
pub const SNAPSHOT_PAGE: &str = "coop.guild.commons.snapshotPage";
/// A commons licence record's `$type`.
pub const LICENCE: &str = "coop.guild.commons.licence";
/// Entries per page (the last page holds the rest).
pub const PAGE_ENTRIES: usize = 1_000;
/// Most entries a snapshot holds.
pub const MAX_ENTRIES: usize = 1_000_000;
/// The file name a snapshot is published under.
pub const FILE_NAME: &str = "commons-snapshot.car";

/// Why a snapshot could not be built or does not verify. Every message names what failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Not a CAR, or a block that does not hash to its CID.
    #[error("bad CAR: {0}")]
    Car(String),
    /// The file's root is not one snapshot manifest.
    #[error("not a commons snapshot: {0}")]
    NotASnapshot(String),
    /// A manifest or page that does not decode as its type.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which block.
        what: String,
        /// Why.
        reason: String,
    },
    /// Entries or repos out of order, repeated, miscounted or badly paged.
    #[error("{0}")]
    Layout(String),
    /// A block the manifest needs is not in the file.
    #[error("block {0} is missing")]
    Missing(Cid),
    /// An author's commit does not verify (signature, shape) or is not the repo listed.
    #[error("the commit of {did}: {reason}")]
    Commit {
        /// The repo's DID.
        did: String,
        /// Why.
        reason: String,
    },
    /// An entry's record or licence is not what the author's tree holds.
    #[error("{author} {path}: {reason}")]
    Entry {
        /// The author.
        author: String,
        /// The record's path.
        path: String,
        /// Why.
        reason: String,
    },
    /// A block no check uses.
    #[error("{0} blocks are not used by any entry (a snapshot holds only what it proves)")]
    Unused(usize),
    /// The manifest or a page could not be encoded.
    #[error("cannot encode: {0}")]
    Encode(String),
}

/// One author's repository, at the commit its entries are proven against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRepo {
    /// The author.
    pub did: Did,
    /// The commit's revision.
    pub rev: Tid,
    /// The signed commit.
    pub commit: Cid,
}

/// One record of the commons and its licence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotEntry {
    /// The record's author.
    pub author: Did,
    /// The record's path, `collection/rkey`.
    pub path: String,
    /// The record's CID.
    pub cid: Cid,
    /// The licence record's path (`coop.guild.commons.licence/<rkey>`).
    pub licence: String,
    /// The licence record's CID.
    pub licence_cid: Cid,
    /// The licence's template id.
    pub template: String,
    /// The user classes the licence restricts use to (empty: anyone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restricted_to: Vec<String>,
}

/// The manifest, the file's root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotManifest {
    /// [`SNAPSHOT`].
    #[serde(rename = "$type")]
    pub kind: String,
    /// When it was assembled.
    pub created_at: Datetime,
    /// How many entries.
    pub record_count: u64,
    /// The authors' repos, in DID order.
    pub repos: Vec<SnapshotRepo>,
    /// The entry pages, in order.
    pub pages: Vec<Cid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    #[serde(rename = "$type")]
    kind: String,
    entries: Vec<SnapshotEntry>,
}

/// What a verified snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotReport {
    /// The manifest's CID (the snapshot's id).
    pub manifest: Cid,
    /// The manifest.
    pub created_at: Datetime,
    /// The authors' repos.
    pub repos: Vec<SnapshotRepo>,
    /// Entries per author, in DID order.
    pub authors: Vec<(Did, u64)>,
    /// Entries per licence template, in id order.
    pub templates: Vec<(String, u64)>,
    /// Entries per collection, in NSID order.
    pub collections: Vec<(String, u64)>,
    /// How many entries.
    pub records: u64,
    /// Blocks in the file.
    pub blocks: usize,
    /// The file's length.
    pub bytes: u64,
    /// The file's SHA-256.
    pub sha256: [u8; 32],
}

impl SnapshotReport {
    /// The SHA-256 in hex.
    pub fn sha256_hex(&self) -> String {
        self.sha256.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

fn encode<T: Serialize>(what: &str, value: &T) -> Result<(Cid, Vec<u8>), SnapshotError> {
    let bytes =
        data::encode_serde(value).map_err(|e| SnapshotError::Encode(format!("{what}: {e}")))?;
    Ok((guild_core::cids::cid_for_cbor(&bytes), bytes))
}

fn order(a: &SnapshotEntry) -> (&str, &str) {
    (a.author.as_str(), a.path.as_str())
}

/// Assembles the snapshot of `entries` (any order; sorted here) proven against `repos` (one
/// per author with an entry), reading the blocks from `src`. Returns the manifest's CID and
/// the file's bytes.
pub fn build(
    created_at: Datetime,
    mut repos: Vec<SnapshotRepo>,
    mut entries: Vec<SnapshotEntry>,
    src: &dyn BlockSource,
) -> Result<(Cid, Vec<u8>), SnapshotError> {
    entries.sort_by(|a, b| order(a).cmp(&order(b)));
    entries.dedup_by(|a, b| order(a) == order(b));
    if entries.len() > MAX_ENTRIES {
        return Err(SnapshotError::Layout(format!(
            "{} entries; a snapshot holds at most {MAX_ENTRIES}",
            entries.len()
        )));
    }
    let authors: HashSet<&str> = entries.iter().map(|e| e.author.as_str()).collect();
    repos.retain(|r| authors.contains(r.did.as_str()));
    repos.sort_by(|a, b| a.did.cmp(&b.did));
    repos.dedup_by(|a, b| a.did == b.did);
    let mut pages = Vec::new();
    let mut page_cids = Vec::new();
    for chunk in entries.chunks(PAGE_ENTRIES) {
        let (cid, bytes) = encode(
            "a page",
            &Page {
                kind: SNAPSHOT_PAGE.to_owned(),
                entries: chunk.to_vec(),
            },
        )?;
        page_cids.push(cid);
        pages.push((cid, bytes));
    }
    let manifest = SnapshotManifest {
        kind: SNAPSHOT.to_owned(),
        created_at,
        record_count: entries.len() as u64,
        repos: repos.clone(),
        pages: page_cids,
    };
    let (root, manifest_bytes) = encode("the manifest", &manifest)?;
    let mut out: Vec<(Cid, Bytes)> = vec![(root, Bytes::from(manifest_bytes))];
    out.extend(pages.into_iter().map(|(c, b)| (c, Bytes::from(b))));
    let mut written: HashSet<Cid> = out.iter().map(|(c, _)| *c).collect();
    let by_author = group(&entries);
    for repo in &repos {
        let mine = by_author
            .get(repo.did.as_str())
            .map_or(&[][..], Vec::as_slice);
        let blocks = prove_repo(repo, mine, src)?;
        for (cid, bytes) in blocks {
            if written.insert(cid) {
                out.push((cid, bytes));
            }
        }
    }
    for e in &entries {
        if !repos.iter().any(|r| r.did == e.author) {
            return Err(SnapshotError::Layout(format!(
                "no repo listed for {}, the author of {}",
                e.author, e.path
            )));
        }
    }
    let bytes = guild_repo::car::car_bytes(&[root], out.iter().map(|(c, b)| (c, b.as_ref())));
    Ok((root, bytes))
}

fn group(entries: &[SnapshotEntry]) -> BTreeMap<&str, Vec<&SnapshotEntry>> {
    let mut by: BTreeMap<&str, Vec<&SnapshotEntry>> = BTreeMap::new();
    for e in entries {
        by.entry(e.author.as_str()).or_default().push(e);
    }
    by
}

/// The blocks proving `entries` in `repo`, in first-use order: the commit, then per entry the
/// MST nodes to the record, the record, the nodes to the licence, the licence (repeats kept:
/// the caller writes each block once). Checks every entry on the way.
fn prove_repo(
    repo: &SnapshotRepo,
    entries: &[&SnapshotEntry],
    src: &dyn BlockSource,
) -> Result<Vec<(Cid, Bytes)>, SnapshotError> {
    let get = |cid: &Cid| -> Result<Bytes, SnapshotError> {
        src.get_block(cid)
            .map_err(|e| SnapshotError::Car(e.to_string()))?
            .ok_or(SnapshotError::Missing(*cid))
    };
    let commit_bytes = get(&repo.commit)?;
    let commit = guild_repo::verify_commit(&repo.commit, &commit_bytes).map_err(|e| {
        SnapshotError::Commit {
            did: repo.did.to_string(),
            reason: e.to_string(),
        }
    })?;
    if commit.did != repo.did.as_str() || commit.rev != repo.rev {
        return Err(SnapshotError::Commit {
            did: repo.did.to_string(),
            reason: format!(
                "the commit is {}'s at revision {}, not the repo listed (revision {})",
                commit.did, commit.rev, repo.rev
            ),
        });
    }
    let mut out = vec![(repo.commit, commit_bytes)];
    for e in entries {
        let fail = |reason: String| SnapshotError::Entry {
            author: e.author.to_string(),
            path: e.path.clone(),
            reason,
        };
        for (path, want) in [(&e.path, e.cid), (&e.licence, e.licence_cid)] {
            let (nodes, found) = guild_repo::proof::walk_path(src, commit.data, path)
                .map_err(|err| fail(format!("{path}: {err}")))?;
            if found != Some(want) {
                return Err(fail(format!(
                    "{path} is {} in the author's tree, not {want}",
                    found.map_or("absent".to_owned(), |c| c.to_string())
                )));
            }
            out.extend(nodes);
            out.push((want, get(&want)?));
        }
        let record = out
            .iter()
            .rev()
            .find(|(c, _)| *c == e.cid)
            .map(|(_, b)| b.clone())
            .ok_or(SnapshotError::Missing(e.cid))?;
        let licence = get(&e.licence_cid)?;
        check_entry(e, &record, &licence).map_err(fail)?;
    }
    Ok(out)
}

/// The record is a record of its collection, the licence a commons licence of that record
/// under the entry's template and restrictions.
fn check_entry(e: &SnapshotEntry, record: &[u8], licence: &[u8]) -> Result<(), String> {
    let collection = e
        .path
        .split_once('/')
        .map(|(c, _)| c)
        .ok_or_else(|| "the path is not collection/rkey".to_owned())?;
    let record = data::decode_record(record).map_err(|err| format!("the record: {err}"))?;
    if type_of(&record) != Some(collection) {
        return Err(format!("the record's $type is not {collection}"));
    }
    if !e.licence.starts_with(&format!("{LICENCE}/")) {
        return Err(format!(
            "the licence {} is not a {LICENCE} record",
            e.licence
        ));
    }
    let licence = data::decode_record(licence).map_err(|err| format!("the licence: {err}"))?;
    if type_of(&licence) != Some(LICENCE) {
        return Err(format!("the licence's $type is not {LICENCE}"));
    }
    let Ipld::Map(m) = &licence else {
        return Err("the licence is not a map".into());
    };
    let text = |k: &str| match m.get(k) {
        Some(Ipld::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let subject = format!("at://{}/{}", e.author, e.path);
    if text("subject") != Some(subject.as_str()) {
        return Err(format!("the licence {} does not name {subject}", e.licence));
    }
    if text("template") != Some(e.template.as_str()) {
        return Err(format!(
            "the licence {} is under {}, not {}",
            e.licence,
            text("template").unwrap_or("no template"),
            e.template
        ));
    }
    let restricted: Vec<String> = match m.get("restrictedTo") {
        None => Vec::new(),
        Some(Ipld::List(l)) => l
            .iter()
            .map(|x| match x {
                Ipld::String(s) => Ok(s.clone()),
                _ => Err("the licence's restrictedTo holds a non-string".to_owned()),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("the licence's restrictedTo is not a list".into()),
    };
    if restricted != e.restricted_to {
        return Err(format!(
            "the licence {} restricts use to {restricted:?}, not {:?}",
            e.licence, e.restricted_to
        ));
    }
    Ok(())
}

fn type_of(v: &Ipld) -> Option<&str> {
    match v {
        Ipld::Map(m) => match m.get("$type") {
            Some(Ipld::String(s)) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

/// A manifest or page valid against its lexicon (`lexicons/coop/guild/commons/`).
fn lexicon(what: &str, value: &Ipld) -> Result<(), SnapshotError> {
    crate::manifest::registry()
        .validate_record(value)
        .map_err(|e| SnapshotError::Malformed {
            what: what.to_owned(),
            reason: e.to_string(),
        })
}

/// Verifies a snapshot file from its bytes alone: the manifest and its pages, every
/// author's signed commit, every entry's record and licence proven in its author's tree and
/// agreeing with the entry, and no block left unused.
pub fn verify(bytes: &[u8]) -> Result<SnapshotReport, SnapshotError> {
    let car = guild_repo::read_car(bytes).map_err(|e| SnapshotError::Car(e.to_string()))?;
    let [root] = car.roots[..] else {
        return Err(SnapshotError::NotASnapshot(format!(
            "{} roots, not one",
            car.roots.len()
        )));
    };
    let block = |cid: &Cid| -> Result<Bytes, SnapshotError> {
        car.blocks
            .get_block(cid)
            .map_err(|e| SnapshotError::Car(e.to_string()))?
            .ok_or(SnapshotError::Missing(*cid))
    };
    let manifest_bytes = block(&root)?;
    let value =
        data::decode(&manifest_bytes).map_err(|e| SnapshotError::NotASnapshot(e.to_string()))?;
    if type_of(&value) != Some(SNAPSHOT) {
        return Err(SnapshotError::NotASnapshot(format!(
            "the root's $type is not {SNAPSHOT}"
        )));
    }
    lexicon("manifest", &value)?;
    let manifest: SnapshotManifest =
        data::decode_canonical(&manifest_bytes).map_err(|e| SnapshotError::Malformed {
            what: "manifest".into(),
            reason: e.to_string(),
        })?;
    let count = usize::try_from(manifest.record_count)
        .ok()
        .filter(|n| *n <= MAX_ENTRIES)
        .ok_or_else(|| {
            SnapshotError::Layout(format!(
                "recordCount {} is over {MAX_ENTRIES}",
                manifest.record_count
            ))
        })?;
    if manifest.pages.len() != count.div_ceil(PAGE_ENTRIES) {
        return Err(SnapshotError::Layout(format!(
            "{} pages for {count} entries (pages hold {PAGE_ENTRIES})",
            manifest.pages.len()
        )));
    }
    let mut used: HashSet<Cid> = HashSet::from([root]);
    let mut entries: Vec<SnapshotEntry> = Vec::with_capacity(count);
    for (i, p) in manifest.pages.iter().enumerate() {
        let bytes = block(p)?;
        let page: Page = data::decode_canonical(&bytes).map_err(|e| SnapshotError::Malformed {
            what: format!("page {i}"),
            reason: e.to_string(),
        })?;
        if let Ok(v) = data::decode(&bytes) {
            lexicon(&format!("page {i}"), &v)?;
        }
        let last = i + 1 == manifest.pages.len();
        if page.kind != SNAPSHOT_PAGE
            || page.entries.is_empty()
            || page.entries.len() > PAGE_ENTRIES
            || (!last && page.entries.len() != PAGE_ENTRIES)
        {
            return Err(SnapshotError::Layout(format!(
                "page {i} holds {} entries (every page but the last holds {PAGE_ENTRIES})",
                page.entries.len()
            )));
        }
        used.insert(*p);
        entries.extend(page.entries);
    }
    if entries.len() != count {
        return Err(SnapshotError::Layout(format!(
            "the pages hold {} entries, the manifest says {count}",
            entries.len()
        )));
    }
    if let Some(w) = entries.windows(2).find(|w| order(&w[0]) >= order(&w[1])) {
        return Err(SnapshotError::Layout(format!(
            "entries out of order or repeated at {} {}",
            w[1].author, w[1].path
        )));
    }
    if let Some(w) = manifest.repos.windows(2).find(|w| w[0].did >= w[1].did) {
        return Err(SnapshotError::Layout(format!(
            "repos out of order or repeated at {}",
            w[1].did
        )));
    }
    let by_author = group(&entries);
    for repo in &manifest.repos {
        let Some(mine) = by_author.get(repo.did.as_str()) else {
            return Err(SnapshotError::Layout(format!(
                "repo {} is listed with no entry",
                repo.did
            )));
        };
        for (cid, _) in prove_repo(repo, mine, &car.blocks)? {
            used.insert(cid);
        }
    }
    if let Some(e) = entries
        .iter()
        .find(|e| !manifest.repos.iter().any(|r| r.did == e.author))
    {
        return Err(SnapshotError::Layout(format!(
            "no repo listed for {}, the author of {}",
            e.author, e.path
        )));
    }
    if used.len() != car.blocks.len() {
        return Err(SnapshotError::Unused(car.blocks.len() - used.len()));
    }
    let mut templates: BTreeMap<String, u64> = BTreeMap::new();
    let mut collections: BTreeMap<String, u64> = BTreeMap::new();
    for e in &entries {
        *templates.entry(e.template.clone()).or_default() += 1;
        let c = e.path.split_once('/').map_or("", |(c, _)| c);
        *collections.entry(c.to_owned()).or_default() += 1;
    }
    Ok(SnapshotReport {
        manifest: root,
        created_at: manifest.created_at,
        authors: by_author
            .iter()
            .filter_map(|(d, es)| Some((Did::parse(d).ok()?, es.len() as u64)))
            .collect(),
        repos: manifest.repos,
        templates: templates.into_iter().collect(),
        collections: collections.into_iter().collect(),
        records: count as u64,
        blocks: car.blocks.len(),
        bytes: bytes.len() as u64,
        sha256: Sha256::digest(bytes).into(),
    })
}

/// Whether `bytes` (a file's beginning, at least its header and first block) is a commons
/// snapshot: its first block is its root and has `$type` [`SNAPSHOT`]. Reads nothing else.
pub fn is_snapshot(bytes: &[u8]) -> bool {
    first_block(bytes)
        .and_then(|b| data::decode(b).ok())
        .is_some_and(|v| type_of(&v) == Some(SNAPSHOT))
}

fn varint(b: &[u8], mut pos: usize) -> Option<(usize, usize)> {
    let mut v: u64 = 0;
    for i in 0..9 {
        let x = *b.get(pos)?;
        v |= u64::from(x & 0x7f) << (7 * i);
        pos += 1;
        if x & 0x80 == 0 {
            return Some((usize::try_from(v).ok()?, pos));
        }
    }
    None
}

/// The data of a CAR's first section.
fn first_block(b: &[u8]) -> Option<&[u8]> {
    let (hlen, pos) = varint(b, 0)?;
    let pos = pos.checked_add(hlen)?;
    let (slen, pos) = varint(b, pos)?;
    let section = b.get(pos..pos.checked_add(slen)?)?;
    // A CIDv1 of SHA-256: version, codec, hash code, length (one byte each here), 32 bytes.
    section.get(36..)
}

/// The snapshot's Croissant 1.1 JSON-LD (with RAI fields), for the file `report` verified.
/// `base` is where the file is published (its `contentUrl` is `base` + [`FILE_NAME`]).
pub fn croissant(
    report: &SnapshotReport,
    publisher: &str,
    base: &str,
) -> Result<String, SnapshotError> {
    let derived: Vec<Value> = report
        .repos
        .iter()
        .map(|r| {
            json!({
                "@type": "prov:Entity",
                "@id": crate::facts::commit_iri(&r.commit),
                "name": format!("The public repository of {} at revision {}", r.did, r.rev),
                "identifier": r.commit.to_string(),
                "prov:specializationOf": {"@id": format!("at://{}", r.did)}
            })
        })
        .collect();
    let licences: Vec<Value> = report
        .templates
        .iter()
        .map(|(t, n)| {
            let (title, summary, version) = guild_license::standard_template(t)
                .map(|c| (c.title.clone(), guild_license::text::summary(&c), c.version))
                .unwrap_or_else(|| (t.clone(), String::new(), 0));
            json!({
                "@type": "sc:CreativeWork",
                "@id": format!("{base}licences/{t}/v{version}/odrl.jsonld"),
                "name": format!("{title} ({t}), {n} record{}", crate::facts::plural(*n)),
                "identifier": t,
                "description": summary
            })
        })
        .collect();
    let creators: Vec<Value> = report
        .authors
        .iter()
        .map(|(d, _)| json!({"@type": "sc:Person", "identifier": d.as_str(), "name": d.as_str()}))
        .collect();
    let doc = json!({
        "@context": crate::croissant::context(),
        "@type": "sc:Dataset",
        "name": format!("Guild commons snapshot {}", report.manifest),
        "description": format!(
            "{} records that {} member{} of a Guild data collective put in the commons, each \
             under the licence its author gave it ({}). Anyone may use each record on its \
             licence's terms, without negotiating; `guild bundle verify` checks every record \
             and licence against its author's signed repository.",
            report.records,
            report.authors.len(),
            crate::facts::plural(report.authors.len() as u64),
            report.templates.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>().join(", ")
        ),
        "conformsTo": [crate::croissant::CONFORMS_TO, crate::croissant::RAI_CONFORMS_TO],
        "identifier": format!("urn:guild:commons-snapshot:{}", report.manifest),
        "version": "1.0.0",
        "citeAs": format!(
            "@misc{{guild-commons-{m},\n  title = {{{{Guild commons snapshot {m}}}}},\n  author = {{{authors}}},\n  year = {{{year}}},\n  note = {{{{Each record under its own licence}}}}\n}}",
            m = report.manifest,
            authors = report.authors.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>().join(" and "),
            year = report.created_at.as_str().get(..4).unwrap_or("")
        ),
        "license": licences,
        "isAccessibleForFree": true,
        "creator": creators,
        "publisher": {"@type": "sc:Organization", "name": format!("The Guild node of {publisher}"), "identifier": publisher},
        "datePublished": report.created_at.as_str(),
        "keywords": ["guild", "commons", "open data", "licensed"],
        "prov:wasDerivedFrom": derived,
        "rai:dataCollection": "Each record is a work its author wrote to their own AT Protocol \
            repository, signed, and put in the commons with a licence record in the same \
            repository. The snapshot takes every such record the publishing node holds, as written.",
        "rai:dataCollectionType": ["Direct contribution by the rights holders (open licences)"],
        "rai:dataCollectionRawData": "The records are the raw data: unmodified, each proven \
            against its author's signed commit.",
        "rai:dataPreprocessingProtocol": ["None."],
        "rai:dataUseCases": ["The uses each record's licence grants (see license)."],
        "rai:dataLimitations": ["Each record is bound by its own licence; a use-restricted \
            licence names the only users it admits. An author may delete a record or its \
            licence later: later snapshots leave it out."],
        "rai:dataBiases": [format!("{}: the records are what the members chose to publish.", crate::facts::UNKNOWN)],
        "rai:personalSensitiveInformation": [format!("The snapshot names its authors (DIDs). Guild does not inspect the works: {}.", crate::facts::UNKNOWN)],
        "rai:dataReleaseMaintenancePlan": "A snapshot is immutable; the node assembles a new \
            one when the commons changes.",
        "distribution": [{
            "@type": "cr:FileObject",
            "@id": FILE_NAME,
            "name": FILE_NAME,
            "description": "The snapshot: one CAR (v1) whose root is the manifest, with every \
                record, its licence record, and their inclusion proofs in the authors' signed commits.",
            "contentUrl": format!("{base}{FILE_NAME}"),
            "contentSize": format!("{} B", report.bytes),
            "encodingFormat": crate::croissant::CAR_MEDIA_TYPE,
            "sha256": report.sha256_hex()
        }]
    });
    let mut out =
        serde_json::to_string_pretty(&doc).map_err(|e| SnapshotError::Encode(e.to_string()))?;
    out.push('\n');
    Ok(out)
}

/// The snapshot's dataset card (`README.md` with YAML front matter as the Hugging Face Hub
/// reads it).
pub fn card(report: &SnapshotReport, base: &str) -> String {
    let q = |s: &str| Value::String(s.to_owned()).to_string();
    let mut out = String::from("---\n");
    let _ = writeln!(
        out,
        "pretty_name: {}",
        q(&format!("Guild commons snapshot {}", report.manifest))
    );
    let _ = writeln!(out, "license: \"other\"");
    let _ = writeln!(out, "license_name: {}", q("guild-commons-per-record"));
    let _ = writeln!(out, "license_link: {}", q(&format!("{base}licences")));
    let _ = writeln!(out, "tags: [\"guild\", \"commons\", \"open-data\"]");
    let _ = writeln!(
        out,
        "size_categories: [{}]",
        q(crate::card::size_category(report.records))
    );
    let _ = writeln!(out, "viewer: false");
    out.push_str("---\n\n");
    let _ = writeln!(out, "# Guild commons snapshot `{}`\n", report.manifest);
    let _ = writeln!(
        out,
        "{} records by {} author{}, assembled {}. Each record is under the licence its author gave it; \
         anyone may use it on those terms without negotiating.\n",
        report.records,
        report.authors.len(),
        crate::facts::plural(report.authors.len() as u64),
        report.created_at.as_str()
    );
    out.push_str("## Licences\n\n| licence | records | in plain words |\n| --- | --- | --- |\n");
    for (t, n) in &report.templates {
        let summary = guild_license::standard_template(t)
            .map(|c| {
                guild_license::text::summary(&c)
                    .replace('|', "\\|")
                    .replace('\n', " ")
            })
            .unwrap_or_default();
        let _ = writeln!(out, "| `{t}` | {n} | {summary} |");
    }
    out.push_str("\n## What is in it\n\n| type | records |\n| --- | --- |\n");
    for (c, n) in &report.collections {
        let _ = writeln!(out, "| `{c}` | {n} |");
    }
    out.push_str("\n## Authors\n\n| author | records |\n| --- | --- |\n");
    for (d, n) in &report.authors {
        let _ = writeln!(out, "| `{d}` | {n} |");
    }
    let _ = writeln!(
        out,
        "\n## Verify it\n\n```\nguild bundle verify {FILE_NAME}\n```\n\nchecks every record and its \
         licence against its author's signed repository commit, offline. SHA-256 of the file: \
         `{}` ({} bytes).",
        report.sha256_hex(),
        report.bytes
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use guild_core::Keypair;
    use guild_core::syntax::{Nsid, RecordKey};
    use guild_repo::{BlockStore, MemoryBlockStore, Repo, Write};

    const TEXT: &str = "coop.guild.data.text";

    struct Author {
        key: Keypair,
        repo: SnapshotRepo,
        entries: Vec<SnapshotEntry>,
    }

    fn record(v: serde_json::Value) -> Ipld {
        data::from_json(&v).unwrap()
    }

    /// An author's public repo: `n` texts, each licensed (the last one under `other`
    /// restricted to researchers), and one unlicensed text, in one commit.
    fn author(seed: u8, n: usize, all: &mut MemoryBlockStore) -> Author {
        let key = Keypair::from_secret_bytes(&[seed; 32]);
        let did = key.did();
        let mut writes = Vec::new();
        let mut entries = Vec::new();
        for i in 0..=n {
            let rkey = format!("3jzfcijpj2z{i:02}");
            let text = record(
                json!({"$type": TEXT, "body": format!("work {i} of {did}"), "createdAt": "2026-12-03T10:00:00.000Z"}),
            );
            let cid = guild_core::cids::cid_for_cbor(&data::encode(&text).unwrap());
            writes.push(Write::Create {
                collection: Nsid::parse(TEXT).unwrap(),
                rkey: RecordKey::parse(&rkey).unwrap(),
                record: text,
            });
            if i == n {
                continue; // public, not in the commons
            }
            let (template, restricted): (&str, Vec<String>) = if i + 1 == n {
                ("eval-public", vec!["researcher".into()])
            } else {
                ("research-open", vec![])
            };
            let mut lic = json!({"$type": LICENCE, "subject": format!("at://{did}/{TEXT}/{rkey}"), "template": template, "createdAt": "2026-12-03T10:00:00.000Z"});
            if !restricted.is_empty() {
                lic["restrictedTo"] = json!(restricted);
            }
            let lic = record(lic);
            let lrkey = format!("3kzfcijpj2z{i:02}");
            let licence_cid = guild_core::cids::cid_for_cbor(&data::encode(&lic).unwrap());
            writes.push(Write::Create {
                collection: Nsid::parse(LICENCE).unwrap(),
                rkey: RecordKey::parse(&lrkey).unwrap(),
                record: lic,
            });
            entries.push(SnapshotEntry {
                author: Did::parse(&did).unwrap(),
                path: format!("{TEXT}/{rkey}"),
                cid,
                licence: format!("{LICENCE}/{lrkey}"),
                licence_cid,
                template: template.into(),
                restricted_to: restricted,
            });
        }
        let mut repo = Repo::empty(MemoryBlockStore::new(), did.clone());
        let rev = Tid::from_parts(1_764_000_000_000_000, u16::from(seed));
        let result = repo.apply(&key, rev.clone(), writes).unwrap();
        all.put_blocks(result.blocks.clone()).unwrap();
        Author {
            key,
            repo: SnapshotRepo {
                did: Did::parse(&did).unwrap(),
                rev,
                commit: result.head.commit,
            },
            entries,
        }
    }

    fn at() -> Datetime {
        Datetime::parse("2026-12-04T00:00:00.000Z").unwrap()
    }

    fn fixture() -> (Vec<Author>, MemoryBlockStore) {
        let mut all = MemoryBlockStore::new();
        let authors = vec![author(7, 3, &mut all), author(9, 1200, &mut all)];
        (authors, all)
    }

    fn inputs(authors: &[Author]) -> (Vec<SnapshotRepo>, Vec<SnapshotEntry>) {
        let repos = authors.iter().map(|a| a.repo.clone()).collect();
        let mut entries: Vec<SnapshotEntry> =
            authors.iter().flat_map(|a| a.entries.clone()).collect();
        entries.reverse(); // any order in
        (repos, entries)
    }

    #[test]
    fn a_snapshot_verifies_and_is_deterministic() {
        let (authors, all) = fixture();
        let (repos, entries) = inputs(&authors);
        let (root, bytes) = build(at(), repos.clone(), entries.clone(), &all).unwrap();
        assert!(is_snapshot(&bytes));
        let r = verify(&bytes).unwrap();
        assert_eq!(r.manifest, root);
        assert_eq!(r.records, 3 + 1200);
        assert_eq!(r.authors.len(), 2);
        assert_eq!(
            r.templates,
            vec![("eval-public".into(), 2), ("research-open".into(), 1201)]
        );
        // Same inputs, shuffled: the same bytes.
        let mut shuffled = entries;
        shuffled.rotate_left(17);
        let (_, again) = build(at(), repos.into_iter().rev().collect(), shuffled, &all).unwrap();
        assert_eq!(again, bytes);
        // The forms.
        let c: serde_json::Value = serde_json::from_str(
            &croissant(&r, "did:key:z6Mkx", "https://n.example/commons/").unwrap(),
        )
        .unwrap();
        assert_eq!(c["distribution"][0]["sha256"], r.sha256_hex());
        assert!(card(&r, "https://n.example/commons/").contains("guild bundle verify"));
        // A bundle file is not a snapshot.
        assert!(!is_snapshot(b"\x01\x02"));
    }

    #[test]
    fn a_lying_entry_is_refused_when_built() {
        let (authors, all) = fixture();
        let (repos, mut entries) = inputs(&authors);
        // Another template than the author's licence says.
        entries[0].template = "training-commercial-standard".into();
        let err = build(at(), repos.clone(), entries.clone(), &all).unwrap_err();
        assert!(matches!(err, SnapshotError::Entry { .. }), "{err}");
        // A restriction dropped.
        let (_, mut entries) = inputs(&authors);
        let i = entries
            .iter()
            .position(|e| !e.restricted_to.is_empty())
            .unwrap();
        entries[i].restricted_to.clear();
        assert!(matches!(
            build(at(), repos.clone(), entries, &all),
            Err(SnapshotError::Entry { .. })
        ));
        // One author's licence claimed for another record.
        let (_, mut entries) = inputs(&authors);
        let (a, b) = (entries[0].licence.clone(), entries[0].licence_cid);
        entries[1].licence = a;
        entries[1].licence_cid = b;
        assert!(matches!(
            build(at(), repos.clone(), entries, &all),
            Err(SnapshotError::Entry { .. })
        ));
        // An unlicensed record, or a record the tree does not hold at that CID.
        let (_, mut entries) = inputs(&authors);
        entries[0].cid = entries[1].cid;
        assert!(matches!(
            build(at(), repos.clone(), entries, &all),
            Err(SnapshotError::Entry { .. })
        ));
        // A commit that is not the author's.
        let (mut repos, entries) = inputs(&authors);
        repos[0].commit = authors[1].repo.commit;
        assert!(matches!(
            build(at(), repos, entries, &all),
            Err(SnapshotError::Commit { .. })
        ));
        let _ = &authors[0].key;
    }

    /// Rewrites the file with `f` applied to its blocks (root first), keeping the root.
    fn rewrite(bytes: &[u8], f: impl FnOnce(&mut Vec<(Cid, Vec<u8>)>)) -> Vec<u8> {
        let car = guild_repo::read_car(bytes).unwrap();
        let mut blocks: Vec<(Cid, Vec<u8>)> = Vec::new();
        let mut pos = 0;
        // Keep the file's order: walk the sections.
        let (hlen, p) = varint(bytes, pos).unwrap();
        pos = p + hlen;
        while pos < bytes.len() {
            let (slen, p) = varint(bytes, pos).unwrap();
            let cid = Cid::read_bytes(&bytes[p..p + 36]).unwrap();
            blocks.push((cid, car.blocks.get_block(&cid).unwrap().unwrap().to_vec()));
            pos = p + slen;
        }
        f(&mut blocks);
        let root = car.roots[0];
        guild_repo::car::car_bytes(&[root], blocks.iter().map(|(c, b)| (c, b.as_slice())))
    }

    #[test]
    fn a_tampered_file_is_refused() {
        let (authors, all) = fixture();
        let (repos, entries) = inputs(&authors);
        let (_, bytes) = build(at(), repos, entries, &all).unwrap();
        // A flipped byte anywhere in a block: its hash fails.
        let mut flipped = bytes.clone();
        let n = flipped.len();
        flipped[n - 3] ^= 1;
        assert!(matches!(verify(&flipped), Err(SnapshotError::Car(_))));
        // An extra block.
        let extra = rewrite(&bytes, |b| {
            let x = data::encode(&record(json!({"$type": TEXT, "body": "smuggled"}))).unwrap();
            b.push((guild_core::cids::cid_for_cbor(&x), x));
        });
        assert_eq!(verify(&extra), Err(SnapshotError::Unused(1)));
        // A record removed.
        let last = authors[1].entries[0].cid;
        let missing = rewrite(&bytes, |b| b.retain(|(c, _)| *c != last));
        assert_eq!(verify(&missing), Err(SnapshotError::Missing(last)));
        // Truncated, empty, not a CAR.
        for bad in [&bytes[..bytes.len() / 2], &b""[..], b"not a car"] {
            assert!(verify(bad).is_err());
        }
    }

    /// The forms of the fixture's snapshot under `tests/golden/` (`GUILD_BLESS=1` rewrites
    /// them), which `scripts/conformance/run crates/bundle/tests/golden` validates with
    /// mlcroissant and the Hugging Face card rules.
    #[test]
    fn golden_forms() {
        let (authors, all) = fixture();
        let (repos, entries) = inputs(&authors);
        let (_, bytes) = build(at(), repos, entries, &all).unwrap();
        let r = verify(&bytes).unwrap();
        let base = "https://node.example/commons/";
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
        for (name, text) in [
            (
                "commons-snapshot.croissant.json",
                croissant(
                    &r,
                    "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
                    base,
                )
                .unwrap(),
            ),
            ("commons-snapshot.card.md", card(&r, base)),
        ] {
            let path = dir.join(name);
            if std::env::var_os("GUILD_BLESS").is_some() {
                std::fs::write(&path, &text).unwrap();
            } else {
                let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                    panic!("{}: {e} (GUILD_BLESS=1 writes it)", path.display())
                });
                assert_eq!(text, want, "{name} changed (GUILD_BLESS=1 rewrites it)");
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = verify(&bytes);
            let _ = is_snapshot(&bytes);
        }
    }
}
