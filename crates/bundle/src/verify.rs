//! Offline verification of a bundle file (`docs/bundle-format.md`): everything a model
//! builder must trust, from the file alone.
//!
//! Two passes over the input. The first reads the CAR sequentially, checks every block
//! against its CID, hashes the whole file, decodes the manifest (the first block, the one
//! root) and its record pages (the blocks right after it) and keeps the governance ops
//! (small), and indexes every other block by its digest
//! (offset and length only). The second reads commits and MST nodes back by seek, checking
//! their hashes again (the file may have changed between the passes); record bytes are never
//! held, and never read twice.
//!
//! What is checked, in order (the first failure is returned):
//! 1. the file: a CAR v1 with one root, every block matching its CID, no block twice;
//! 2. the manifest: the first block is the root, the next ones its record pages in the
//!    order it names them; each decodes strictly and is valid against its lexicon, the pages
//!    full but the last, their entries adding up to `recordCount`;
//! 3. the governance ops: each decodes and is signed by its author, and the fold accepts it
//!    (guild-gov's authorisation against its causal past), inserted in file order from the
//!    collective's charter (its CID is the manifest's `collective`): stewards, elections and
//!    consent come from the fold, never from trust;
//! 4. the seal: in the folded state the manifest's proposal is sealed by a quorum of
//!    stewards' approvals with exactly the root as manifest, and the file carries no op
//!    outside the causal past of those approvals;
//! 5. each record: its commit is the cut's replica head of its author, signed by the
//!    author, and its tree holds the record's CID at its path (the inclusion proof);
//! 6. consent and the licence: the selection re-run over the proven records at the
//!    proposal's cut (with no evaluation ledger) selects exactly the manifest's entries
//!    with their consent ops, and the manifest rebuilt from it, with the deterministic
//!    publication, is byte for byte the root;
//! 7. every block in the file was used by one of the above.

use std::io::{BufReader, Read, Seek, SeekFrom};

use guild_core::cids::{self, CidCheckError};
use guild_core::syntax::Did;
use guild_core::{Cid, Ipld};
use guild_gov::body::BundleKind;
use guild_gov::{Inserted, Log, SignedOp};
use guild_repo::verify_commit;
use rustc_hash::FxHashMap;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::canary::EvaluationLedger;
use crate::cut::CutState;
use crate::manifest::{self, Credit, Manifest, ManifestParams};
use crate::package::{block_key, hex};
use crate::select::{Exclusion, RecordListing, Replica, select};
use crate::walk::{PathCache, WalkError};

/// The largest block read (a record is at most 1 MB; MST nodes and commits are smaller).
const MAX_BLOCK: usize = 2 * 1024 * 1024;
/// The largest CAR header read.
const MAX_HEADER: usize = 64 * 1024;

/// Why a bundle file was refused. Each names what failed and where, on one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Reading the input failed.
    #[error("reading the bundle: {0}")]
    Io(String),
    /// The file is not a well-formed CAR v1 (truncated, a bad length, a bad header).
    #[error("not a valid CAR file at byte {offset}: {reason}")]
    Car {
        /// Where.
        offset: u64,
        /// What.
        reason: String,
    },
    /// The header must name exactly one root, the manifest.
    #[error("the CAR header names {0} roots; a bundle has exactly one (its manifest)")]
    Roots(usize),
    /// A block's bytes do not hash to its CID (or the CID is not CIDv1/SHA-256/dag-cbor|raw).
    #[error("block at byte {offset}: {reason}")]
    BlockHash {
        /// Where the section starts.
        offset: u64,
        /// The mismatch.
        reason: String,
    },
    /// A block appears twice.
    #[error("block {cid} at byte {offset} appears twice")]
    DuplicateBlock {
        /// The block.
        cid: Cid,
        /// Where its second copy starts.
        offset: u64,
    },
    /// The first block is not the root.
    #[error("the first block is {found}, not the root {root}")]
    RootNotFirst {
        /// The root.
        root: Cid,
        /// The first block.
        found: Cid,
    },
    /// The root does not decode as a manifest or breaks its lexicon.
    #[error("manifest {cid}: {reason}")]
    Manifest {
        /// The root.
        cid: Cid,
        /// Why.
        reason: String,
    },
    /// A block of the governance section does not decode as a signed op (or its signature
    /// does not verify).
    #[error("governance op {op}: {reason}")]
    OpInvalid {
        /// The block.
        op: Cid,
        /// Why.
        reason: String,
    },
    /// The fold refused an op (not authorised against its causal past, a forged election
    /// result, an approval by a non-steward, …) or the op's parents are not before it.
    #[error("governance op {op} ({kind}) refused: {reason}")]
    OpRefused {
        /// The op.
        op: Cid,
        /// Its kind (NSID).
        kind: String,
        /// Why.
        reason: String,
    },
    /// The collective's charter (the op whose CID is the manifest's `collective`) is not in
    /// the bundle.
    #[error("the charter {0} of the manifest's collective is not in the bundle")]
    NoCharter(Cid),
    /// The folded log does not seal the root for the manifest's proposal.
    #[error("proposal {proposal}: {reason}")]
    NotSealed {
        /// The proposal.
        proposal: Cid,
        /// What the fold found instead.
        reason: String,
    },
    /// An op outside the causal past of the sealing approvals.
    #[error("governance op {0} is not in the causal past of the sealing approvals")]
    ExtraOp(Cid),
    /// A block the verification needs is not in the file.
    #[error("block {cid} ({what}) is missing, for record {path} of {author}")]
    MissingBlock {
        /// The block.
        cid: Cid,
        /// What it is.
        what: &'static str,
        /// The record's author.
        author: Did,
        /// The record's path.
        path: String,
    },
    /// A record's commit is not its author's replica head in the cut, or not signed by the
    /// author.
    #[error("commit {commit} of record {path} of {author}: {reason}")]
    Commit {
        /// The commit.
        commit: Cid,
        /// The author.
        author: Did,
        /// The record's path.
        path: String,
        /// Why.
        reason: String,
    },
    /// A record's inclusion proof fails (a bad node, or the tree does not hold the record's
    /// CID at its path).
    #[error("inclusion proof of record {path} of {author}: {reason}")]
    Proof {
        /// The author.
        author: Did,
        /// The record's path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The selection cannot be re-run (the cut, the agreement, its terms).
    #[error("re-running the selection: {0}")]
    Selection(String),
    /// A record is not covered by its author's consent at the cut, or by another consent op
    /// than the manifest names.
    #[error("record {path} of {author}: {reason}")]
    Consent {
        /// The author.
        author: Did,
        /// The record's path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The manifest rebuilt from the proven records, the cut and the agreement differs from
    /// the root.
    #[error("manifest field {field} is not what the agreement, the cut and the records give")]
    ManifestField {
        /// The first differing field (`licence.odrl`, `records[3].cid`, …).
        field: String,
    },
    /// A block no check used.
    #[error("block {0} is not part of the bundle (nothing refers to it)")]
    UnusedBlock(Cid),
}

/// What a verified bundle is.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The manifest's CID (the bundle's id).
    pub manifest: Cid,
    /// The collective.
    pub collective: Cid,
    /// The agreement (its offer op).
    pub agreement: Cid,
    /// The agreement's builder.
    pub builder: Did,
    /// The licence template's id.
    pub template: String,
    /// The template's plain-language summary, from the terms.
    pub summary: String,
    /// Training or evaluation.
    pub kind: BundleKind,
    /// Records.
    pub records: u64,
    /// The members credited, with their record counts.
    pub credits: Vec<Credit>,
    /// The stewards whose approvals sealed it, in DID order.
    pub stewards: Vec<Did>,
    /// The sealing approval ops.
    pub approvals: Vec<Cid>,
    /// Governance ops carried.
    pub ops: u64,
    /// Blocks in the file.
    pub blocks: u64,
    /// The file's size.
    pub bytes: u64,
    /// SHA-256 of the file.
    pub sha256: [u8; 32],
}

impl Report {
    /// The file's SHA-256 in lower-case hex.
    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256)
    }
}

/// How far the manifest is read in the first pass.
enum Reading {
    /// Nothing read: the next block is the root.
    Start,
    /// The root is read; its pages come next.
    Pages(Box<manifest::Reading>),
    /// The manifest is whole.
    Done(Box<Manifest>),
}

/// Where a block is in the file.
struct Slot {
    offset: u64,
    len: u32,
    used: bool,
}

/// A reader that hashes and counts what goes through it.
struct Hashing<R> {
    inner: R,
    /// The whole file's SHA-256 is computed on a second thread (the first one hashes every
    /// block against its CID meanwhile): what is read is sent there in chunks.
    to_hasher: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    hasher: Option<std::thread::JoinHandle<Sha256>>,
    pos: u64,
}

impl<R> Hashing<R> {
    fn new(inner: R) -> Result<Hashing<R>, VerifyError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
        let hasher = std::thread::Builder::new()
            .name("bundle-sha256".into())
            .spawn(move || {
                let mut h = Sha256::new();
                for chunk in rx {
                    h.update(&chunk);
                }
                h
            })
            .map_err(|e| {
                VerifyError::Io(format!("cannot start the thread hashing the file: {e}"))
            })?;
        Ok(Hashing {
            inner,
            to_hasher: Some(tx),
            hasher: Some(hasher),
            pos: 0,
        })
    }

    /// The reader back, the bytes read and their SHA-256.
    fn finish(mut self) -> Result<(R, u64, [u8; 32]), VerifyError> {
        drop(self.to_hasher.take());
        let digest = self
            .hasher
            .take()
            .ok_or_else(|| VerifyError::Io("the file's hash was already taken".into()))?
            .join()
            .map_err(|_| VerifyError::Io("the thread hashing the file failed".into()))?
            .finalize()
            .into();
        Ok((self.inner, self.pos, digest))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let got = buf.get(..n).unwrap_or(buf);
        if !got.is_empty()
            && let Some(tx) = &self.to_hasher
            && tx.send(got.to_vec()).is_err()
        {
            return Err(std::io::Error::other("the thread hashing the file stopped"));
        }
        self.pos += got.len() as u64;
        Ok(n)
    }
}

#[derive(Deserialize)]
struct Header {
    roots: Vec<Cid>,
    version: u64,
}

fn io(e: std::io::Error) -> VerifyError {
    VerifyError::Io(e.to_string())
}

/// Reads a varint; `Ok(None)` at a clean end of input.
fn varint<R: Read>(r: &mut R, at: u64) -> Result<Option<u64>, VerifyError> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let mut b = [0u8; 1];
        let n = loop {
            match r.read(&mut b) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io(e)),
            }
        };
        if n == 0 {
            if i == 0 {
                return Ok(None);
            }
            return Err(VerifyError::Car {
                offset: at,
                reason: "truncated in a length".into(),
            });
        }
        let b = b[0];
        if i == 9 && b > 1 {
            break;
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if i > 0 && b == 0 {
                break;
            }
            return Ok(Some(v));
        }
    }
    Err(VerifyError::Car {
        offset: at,
        reason: "a length is not a minimal varint".into(),
    })
}

fn read_exact<R: Read>(r: &mut R, buf: &mut [u8], at: u64, what: &str) -> Result<(), VerifyError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => VerifyError::Car {
            offset: at,
            reason: format!("truncated in {what}"),
        },
        _ => io(e),
    })
}

/// The first differing field of two data-model values, as a path.
fn first_difference(a: &Ipld, b: &Ipld, path: &str) -> Option<String> {
    match (a, b) {
        (Ipld::Map(x), Ipld::Map(y)) => {
            for (k, va) in x {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match y.get(k) {
                    None => return Some(p),
                    Some(vb) => {
                        if let Some(d) = first_difference(va, vb, &p) {
                            return Some(d);
                        }
                    }
                }
            }
            y.keys().find(|k| !x.contains_key(*k)).map(|k| {
                if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                }
            })
        }
        (Ipld::List(x), Ipld::List(y)) => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                if let Some(d) = first_difference(va, vb, &format!("{path}[{i}]")) {
                    return Some(d);
                }
            }
            (x.len() != y.len()).then(|| format!("{path} (length)"))
        }
        _ => (a != b).then(|| path.to_owned()),
    }
}

/// The first differing field of two manifests: in the records (`records[3].consent`), else
/// in the root block.
fn manifest_difference(a: &Manifest, b: &Manifest) -> Result<String, crate::BundleError> {
    let entry = |e: &crate::manifest::Entry| {
        ipld_core::serde::to_ipld(e).map_err(|e| crate::BundleError::Encode(e.to_string()))
    };
    for (i, (x, y)) in a.records.iter().zip(&b.records).enumerate() {
        if x != y
            && let Some(d) = first_difference(&entry(x)?, &entry(y)?, &format!("records[{i}]"))
        {
            return Ok(d);
        }
    }
    if a.records.len() != b.records.len() {
        return Ok("records (length)".to_owned());
    }
    let (x, y) = (a.to_ipld()?, b.to_ipld()?);
    Ok(first_difference(&x, &y, "").unwrap_or_else(|| "(encoding)".to_owned()))
}

/// Verifies the bundle file read from `input` (see the module documentation for what is
/// checked). Reads it once sequentially, then seeks back to read commits and MST nodes.
/// Hand it an unbuffered reader (a `File`): the sequential pass buffers itself, and the reads
/// back go to each block's offset, where a `BufReader` would discard its buffer every time.
pub fn verify_bundle<R: Read + Seek>(input: R) -> Result<Report, VerifyError> {
    // Pass 1: the header, every block hashed and indexed, the manifest and the ops kept.
    let mut r = BufReader::with_capacity(1 << 20, Hashing::new(input)?);
    let hlen = varint(&mut r, 0)?.ok_or(VerifyError::Car {
        offset: 0,
        reason: "empty input".into(),
    })?;
    let hlen = usize::try_from(hlen).unwrap_or(usize::MAX);
    if hlen > MAX_HEADER {
        return Err(VerifyError::Car {
            offset: 0,
            reason: format!("a header of {hlen} bytes"),
        });
    }
    let mut hbytes = vec![0u8; hlen];
    read_exact(&mut r, &mut hbytes, 0, "the header")?;
    let header: Header = guild_core::data::decode_as(&hbytes).map_err(|e| VerifyError::Car {
        offset: 0,
        reason: format!("the header: {e}"),
    })?;
    if header.version != 1 {
        return Err(VerifyError::Car {
            offset: 0,
            reason: format!("version {} (a bundle is CAR v1)", header.version),
        });
    }
    let [root] = header.roots[..] else {
        return Err(VerifyError::Roots(header.roots.len()));
    };
    let mut pos = (hbytes.len() + varint_len(hlen as u64)) as u64;
    let mut index: FxHashMap<(u64, [u8; 32]), Slot> = FxHashMap::default();
    let mut manifest = Reading::Start;
    let mut manifest_bytes = Vec::new();
    // The governance section: every block after the manifest up to the first entry's commit.
    let mut ops: Vec<(Cid, Vec<u8>)> = Vec::new();
    let mut in_ops = true;
    let mut section = Vec::new();
    let mut blocks = 0u64;
    while let Some(len) = varint(&mut r, pos)? {
        let start = pos;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > MAX_BLOCK + 128 {
            return Err(VerifyError::Car {
                offset: start,
                reason: format!("a section of {len} bytes"),
            });
        }
        let data_start = start + varint_len(len as u64) as u64;
        section.resize(len, 0);
        read_exact(&mut r, &mut section, start, "a block")?;
        pos = data_start + len as u64;
        let mut cursor = std::io::Cursor::new(&section[..]);
        let cid = Cid::read_bytes(&mut cursor).map_err(|e| VerifyError::Car {
            offset: start,
            reason: format!("a block's CID: {e}"),
        })?;
        let cid_len = usize::try_from(cursor.position()).unwrap_or(usize::MAX);
        let (cid_bytes, data) = section.split_at(cid_len.min(section.len()));
        if !guild_core::cbor::cid_encoding_is(&cid, cid_bytes) {
            return Err(VerifyError::Car {
                offset: start,
                reason: "a block's CID is not in its canonical encoding".into(),
            });
        }
        cids::verify_block(&cid, data).map_err(|e: CidCheckError| VerifyError::BlockHash {
            offset: start,
            reason: e.to_string(),
        })?;
        blocks += 1;
        let slot = Slot {
            offset: data_start + cid_len as u64,
            len: data.len() as u32,
            used: false,
        };
        if index.insert(block_key(&cid), slot).is_some() {
            return Err(VerifyError::DuplicateBlock { cid, offset: start });
        }
        let used = match &mut manifest {
            Reading::Start => {
                if cid != root {
                    return Err(VerifyError::RootNotFirst { root, found: cid });
                }
                let bad = |reason: String| VerifyError::Manifest { cid, reason };
                let reading = manifest::Reading::root(&cid, data, true).map_err(bad)?;
                manifest_bytes = data.to_vec();
                manifest = Reading::Pages(Box::new(reading));
                true
            }
            Reading::Pages(reading) => {
                reading
                    .page(&cid, data, true)
                    .map_err(|reason| VerifyError::Manifest { cid: root, reason })?;
                true
            }
            Reading::Done(m) => {
                if in_ops && m.records.first().is_some_and(|e| e.commit.0 == cid) {
                    in_ops = false;
                }
                if in_ops {
                    ops.push((cid, data.to_vec()));
                }
                in_ops
            }
        };
        if used && let Some(s) = index.get_mut(&block_key(&cid)) {
            s.used = true;
        }
        if let Reading::Pages(reading) = &manifest
            && reading.next_page().is_none()
            && let Reading::Pages(reading) = std::mem::replace(&mut manifest, Reading::Start)
        {
            let m = reading
                .finish()
                .map_err(|reason| VerifyError::Manifest { cid: root, reason })?;
            manifest = Reading::Done(Box::new(m));
        }
    }
    let manifest = match manifest {
        Reading::Done(m) => *m,
        Reading::Start => {
            return Err(VerifyError::Car {
                offset: pos,
                reason: "no block (the manifest is missing)".into(),
            });
        }
        Reading::Pages(reading) => {
            return Err(VerifyError::Manifest {
                cid: root,
                reason: format!(
                    "the file ends before the record page {}",
                    reading.next_page().map(Cid::to_string).unwrap_or_default()
                ),
            });
        }
    };
    let (mut file, bytes, sha256) = r.into_inner().finish()?;

    // The governance ops, folded from the charter.
    let collective = manifest.collective.0;
    let mut log = Log::new(collective);
    for (cid, bytes) in &ops {
        let op = SignedOp::decode(bytes).map_err(|e| VerifyError::OpInvalid {
            op: *cid,
            reason: e.to_string(),
        })?;
        let refused = |reason: String| VerifyError::OpRefused {
            op: *cid,
            kind: op.kind().nsid().to_owned(),
            reason,
        };
        match log.insert(op.clone(), 0) {
            Inserted::Applied => {}
            Inserted::Duplicate => return Err(refused("a second copy".into())),
            Inserted::Rejected(reason) => return Err(refused(reason.to_string())),
            Inserted::Pending { missing } => {
                let list: Vec<String> = missing.iter().map(Cid::to_string).collect();
                return Err(refused(format!(
                    "its parents {} are not before it in the bundle",
                    list.join(", ")
                )));
            }
        }
    }
    if log.get(&collective).is_none() {
        return Err(VerifyError::NoCharter(collective));
    }

    // The seal.
    let proposal = manifest.proposal.0;
    let not_sealed = |reason: String| VerifyError::NotSealed { proposal, reason };
    let state = log.state_ref();
    let bundle = state
        .bundles
        .get(&proposal)
        .ok_or_else(|| not_sealed("no such proposal in the bundle's governance ops".into()))?;
    let approvals = match &bundle.sealed {
        Some((m, approvals)) if *m == root => approvals.clone(),
        Some((m, _)) => {
            return Err(not_sealed(format!(
                "a quorum sealed manifest {m}, not the root {root}"
            )));
        }
        None => {
            let agreeing = bundle
                .approvals
                .values()
                .filter(|(_, m)| *m == root)
                .count();
            return Err(not_sealed(match bundle.voided {
                Some(r) => format!("voided by the revocation {r}"),
                None => format!(
                    "not sealed: {agreeing} steward approval(s) of the root, {} needed",
                    state.quorum()
                ),
            }));
        }
    };
    let past = log.ancestors(&approvals);
    if let Some((extra, _)) = ops.iter().find(|(c, _)| !past.contains(c)) {
        return Err(VerifyError::ExtraOp(*extra));
    }
    let mut stewards: Vec<Did> = approvals
        .iter()
        .filter_map(|a| log.get(a))
        .map(|op| op.author_did().clone())
        .collect();
    stewards.sort();

    // The records: commits, inclusion proofs.
    let heads: FxHashMap<&Did, &guild_gov::body::ReplicaHead> =
        manifest.cut.replicas.iter().map(|r| (&r.did, r)).collect();
    let mut listings: FxHashMap<Did, Vec<RecordListing>> = FxHashMap::default();
    let mut cache = PathCache::default();
    let mut current: Option<(Cid, Cid)> = None;
    let mut buf = Vec::new();
    for e in &manifest.records {
        let commit = e.commit.0;
        let commit_err = |reason: String| VerifyError::Commit {
            commit,
            author: e.author.clone(),
            path: e.path.clone(),
            reason,
        };
        let data = match current {
            Some((c, data)) if c == commit => data,
            _ => {
                let head = heads.get(&e.author).ok_or_else(|| {
                    commit_err("the author has no replica head in the cut".into())
                })?;
                if head.commit.0 != commit {
                    return Err(commit_err(format!(
                        "the cut's replica head of the author is {}",
                        head.commit.0
                    )));
                }
                let bytes = read_block(&mut file, &mut index, &commit, &mut buf)?.ok_or(
                    VerifyError::MissingBlock {
                        cid: commit,
                        what: "commit",
                        author: e.author.clone(),
                        path: e.path.clone(),
                    },
                )?;
                let c = verify_commit(&commit, bytes).map_err(|err| commit_err(err.to_string()))?;
                if c.did != e.author.as_str() {
                    return Err(commit_err(format!("signed by {}, not the author", c.did)));
                }
                if c.rev != head.rev {
                    return Err(commit_err(format!(
                        "revision {} is not the cut's {}",
                        c.rev.as_str(),
                        head.rev.as_str()
                    )));
                }
                cache.clear();
                current = Some((commit, c.data));
                c.data
            }
        };
        let proof_err = |reason: String| VerifyError::Proof {
            author: e.author.clone(),
            path: e.path.clone(),
            reason,
        };
        let walked = cache
            .walk(data, e.path.as_bytes(), |cid| {
                read_block(&mut file, &mut index, cid, &mut buf).map(|b| b.map(<[u8]>::to_vec))
            })
            .map_err(|err| match err {
                WalkError::Fetch(v) => v,
                WalkError::Missing(cid) => VerifyError::MissingBlock {
                    cid,
                    what: "MST node",
                    author: e.author.clone(),
                    path: e.path.clone(),
                },
                WalkError::Node(m) => proof_err(m.to_string()),
            })?;
        match walked.found {
            Some(c) if c == e.cid.0 => {}
            Some(c) => {
                return Err(proof_err(format!(
                    "the tree holds {c} there, not the manifest's {}",
                    e.cid.0
                )));
            }
            None => return Err(proof_err("the tree holds no record there".into())),
        }
        match index.get_mut(&block_key(&e.cid.0)) {
            Some(s) => s.used = true,
            None => {
                return Err(VerifyError::MissingBlock {
                    cid: e.cid.0,
                    what: "record",
                    author: e.author.clone(),
                    path: e.path.clone(),
                });
            }
        }
        let (collection, rkey) =
            guild_repo::parse_path(&e.path).map_err(|err| proof_err(err.to_string()))?;
        listings
            .entry(e.author.clone())
            .or_default()
            .push(RecordListing {
                collection,
                rkey,
                cid: e.cid.0,
            });
    }
    if let Some((k, _)) = index.iter().find(|(_, s)| !s.used) {
        return Err(VerifyError::UnusedBlock(cids::cid_from_digest(k.0, &k.1)));
    }

    // Consent and the licence: the selection re-run, the manifest rebuilt.
    let selection_err = |e: crate::BundleError| VerifyError::Selection(e.to_string());
    let proposal_op = log.get(&proposal).ok_or_else(|| {
        not_sealed("the proposal op is not in the bundle's governance ops".into())
    })?;
    let (request, cut_heads, mut params) =
        ManifestParams::from_proposal(proposal_op).map_err(selection_err)?;
    params.estimates = manifest.estimates.clone();
    let cut = CutState::at(&log, &cut_heads).map_err(selection_err)?;
    let names: FxHashMap<&Did, &str> = manifest
        .credits
        .iter()
        .map(|c| (&c.did, c.name.as_str()))
        .collect();
    let replicas: Vec<Replica> = manifest
        .cut
        .replicas
        .iter()
        .map(|h| Replica {
            did: h.did.clone(),
            rev: h.rev.clone(),
            commit: h.commit.0,
            name: names.get(&h.did).map(|n| (*n).to_owned()),
            records: listings.remove(&h.did).unwrap_or_default(),
        })
        .collect();
    let selection = select(&log, &cut, &request, &replicas, &EvaluationLedger::empty())
        .map_err(selection_err)?;
    let chosen: FxHashMap<(&Did, &str), Cid> = selection
        .records
        .iter()
        .map(|s| ((&s.author, s.path.as_str()), s.consent))
        .collect();
    let left_out: FxHashMap<(&Did, &str), &Exclusion> = selection
        .excluded
        .iter()
        .map(|(a, p, why)| ((a, p.as_str()), why))
        .collect();
    for e in &manifest.records {
        let consent_err = |reason: String| VerifyError::Consent {
            author: e.author.clone(),
            path: e.path.clone(),
            reason,
        };
        match chosen.get(&(&e.author, e.path.as_str())) {
            Some(c) if *c == e.consent.0 => {}
            Some(c) => {
                return Err(consent_err(format!(
                    "covered by consent op {c}, not the manifest's {}",
                    e.consent.0
                )));
            }
            None => {
                return Err(consent_err(
                    match left_out.get(&(&e.author, e.path.as_str())) {
                        Some(Exclusion::Consent(r)) => {
                            format!("not covered by consent at the cut: {r}")
                        }
                        Some(Exclusion::DeliveredForEvaluation(m)) => {
                            format!("delivered for evaluation in {m}")
                        }
                        Some(Exclusion::NotAWork(c)) => {
                            format!("{c} is not a record type the charter accepts as a work")
                        }
                        None => "the author's consent to the template is not granted at the cut"
                            .to_owned(),
                    },
                ));
            }
        }
    }
    let rebuilt = Manifest::build(&selection, &params).map_err(selection_err)?;
    // The pages are a function of the records: when the rebuilt records equal the file's
    // (whose pages were checked against the root's links and for canonical bytes), only the
    // root needs encoding again, with the file's page links.
    let (_, rebuilt_bytes) = if rebuilt.records == manifest.records {
        let pages = Manifest::record_pages_of(&root, &manifest_bytes)
            .map_err(|reason| VerifyError::Manifest { cid: root, reason })?;
        rebuilt.encode_root_with(pages).map_err(selection_err)?
    } else {
        rebuilt.encode().map_err(selection_err)?
    };
    if rebuilt_bytes != manifest_bytes {
        let field =
            manifest_difference(&manifest, &rebuilt).map_err(|e| VerifyError::Manifest {
                cid: root,
                reason: e.to_string(),
            })?;
        return Err(VerifyError::ManifestField { field });
    }

    Ok(Report {
        manifest: root,
        collective,
        agreement: manifest.agreement.0,
        builder: selection.builder.clone(),
        template: selection.template.clone(),
        summary: guild_license::text::summary(&selection.contract),
        kind: selection.kind,
        records: manifest.records.len() as u64,
        credits: manifest.credits.clone(),
        stewards,
        approvals,
        ops: ops.len() as u64,
        blocks,
        bytes,
        sha256,
    })
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Reads an indexed block back (marking it used), checking its hash again. `None`: not in
/// the file.
fn read_block<'b, R: Read + Seek>(
    file: &mut R,
    index: &mut FxHashMap<(u64, [u8; 32]), Slot>,
    cid: &Cid,
    buf: &'b mut Vec<u8>,
) -> Result<Option<&'b [u8]>, VerifyError> {
    let Some(slot) = index.get_mut(&block_key(cid)) else {
        return Ok(None);
    };
    slot.used = true;
    buf.resize(slot.len as usize, 0);
    file.seek(SeekFrom::Start(slot.offset)).map_err(io)?;
    read_exact(file, buf, slot.offset, "a block read back")?;
    cids::verify_block(cid, buf).map_err(|e| VerifyError::BlockHash {
        offset: slot.offset,
        reason: format!("changed since it was first read: {e}"),
    })?;
    Ok(Some(&buf[..]))
}
