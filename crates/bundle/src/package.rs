//! Packaging: a sealed bundle as one CAR v1 file (`docs/bundle-format.md`).
//!
//! The file's one root is the manifest's CID. Its blocks, in this order, each once:
//! 1. the manifest: its root block, then its record pages in order;
//! 2. every governance op in the causal past of the approvals that sealed the manifest (the
//!    approvals included), in the log's topological order, each as its exact signed bytes;
//! 3. for each manifest entry in manifest order: the entry's commit and the MST nodes from
//!    the root to the node holding its path, leaving out any block written earlier;
//! 4. every entry's record block and every per-licensee canary record the manifest lists, in
//!    the order of the CIDs' bytes (the store's key order, so that a large bundle's records
//!    are read leaf by leaf).
//!
//! The same manifest, log and replicas give byte-identical files. Record bytes are read from
//! the block source and written one at a time; what is held in memory is the set of written
//! block digests, the record CIDs to write (sorted), and one MST path.

use std::io::{BufWriter, Write};

use guild_core::Cid;
use guild_gov::Log;
use guild_repo::{BlockSource, CarWriter, verify_commit};
use rustc_hash::{FxHashMap, FxHashSet};
use sha2::{Digest, Sha256};

use crate::canary::licensee_canaries;
use crate::error::BundleError;
use crate::manifest::Manifest;
use crate::walk::{PathCache, WalkError};

/// What [`write_bundle`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageSummary {
    /// The root: the manifest's CID (the bundle's id).
    pub manifest: Cid,
    /// The file's size in bytes.
    pub bytes: u64,
    /// SHA-256 of the whole file.
    pub sha256: [u8; 32],
    /// Blocks written (the manifest and its pages, the ops and the proof blocks).
    pub blocks: u64,
    /// Governance ops written.
    pub ops: u64,
    /// Records (manifest entries) proven.
    pub records: u64,
}

impl PackageSummary {
    /// The file's SHA-256 in lower-case hex.
    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256)
    }
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A sink that hashes and counts what goes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        let done = buf.get(..n).unwrap_or(buf);
        self.hasher.update(done);
        self.bytes += done.len() as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A block's key: its codec and digest, the digest as two big-endian integers (compared
/// and hashed as integers). For the CIDs a bundle holds (CIDv1, SHA-256, a one-byte codec)
/// the order of keys is the order of the CIDs' bytes.
pub(crate) type Key = (u64, u128, u128);

pub(crate) fn block_key(cid: &Cid) -> Key {
    let mut d = [0u8; 32];
    let digest = cid.hash().digest();
    let n = digest.len().min(32);
    d[..n].copy_from_slice(&digest[..n]);
    let (hi, lo) = d.split_at(16);
    let half = |b: &[u8]| {
        let mut x = [0u8; 16];
        x.copy_from_slice(b);
        u128::from_be_bytes(x)
    };
    // (the multihash code and size are checked with the block's hash; a key of another
    // hash never matches a block)
    (cid.codec() ^ (cid.hash().code() << 32), half(hi), half(lo))
}

/// The manifest's blocks (root first, then its pages), as [`Manifest::blocks`] gives them.
pub type ManifestBlocks = Vec<(Cid, Vec<u8>)>;

/// The governance ops a bundle of `manifest` carries, in the log's order: the causal past
/// of the approvals that sealed it. Also returns the manifest's CID and its blocks (root
/// first, then its pages).
pub fn sealing_ops(
    manifest: &Manifest,
    log: &Log,
) -> Result<(Cid, ManifestBlocks, Vec<guild_gov::SignedOp>), BundleError> {
    let blocks = manifest.blocks()?;
    let cid = blocks
        .first()
        .map(|(c, _)| *c)
        .ok_or_else(|| BundleError::Encode("no root block".into()))?;
    let proposal = manifest.proposal.0;
    let state = log.state_ref();
    let sealed = state.bundles.get(&proposal).and_then(|b| b.sealed.as_ref());
    let approvals = match sealed {
        Some((m, approvals)) if *m == cid => approvals.clone(),
        _ => {
            return Err(BundleError::NotSealed {
                proposal,
                manifest: cid,
            });
        }
    };
    let ids = log.topo_order(&log.ancestors(&approvals));
    let mut ops = Vec::with_capacity(ids.len());
    for id in ids {
        ops.push(log.get(&id).ok_or(BundleError::MissingOp(id))?);
    }
    Ok((cid, blocks, ops))
}

/// The blocks of the per-licensee canaries `manifest` lists, made again from its proposal,
/// its agreement's builder (in `log`) and its `createdAt`; fails if they are not the ones
/// listed.
fn licensee_canary_blocks(
    manifest: &Manifest,
    log: &Log,
) -> Result<FxHashMap<Cid, Vec<u8>>, BundleError> {
    if manifest.licensee_canaries.is_empty() {
        return Ok(FxHashMap::default());
    }
    let agreement = manifest.agreement.0;
    let builder = &log
        .state_ref()
        .agreements
        .get(&agreement)
        .ok_or(BundleError::UnknownAgreement(agreement))?
        .builder;
    let count = u32::try_from(manifest.licensee_canaries.len()).unwrap_or(u32::MAX);
    let made = licensee_canaries(&manifest.proposal.0, builder, &manifest.created_at, count)?;
    let ours: Vec<Cid> = made.iter().map(|c| c.cid).collect();
    if manifest.licensee_canaries != ours {
        return Err(BundleError::Encode(
            "the manifest's licensee canaries are not the ones its proposal and builder make"
                .into(),
        ));
    }
    Ok(made.into_iter().map(|c| (c.cid, c.bytes)).collect())
}

/// Writes the bundle of the sealed `manifest` as one CAR v1 to `out`: the manifest, the
/// governance ops that seal it (from `log`), and every record's inclusion proof read from
/// `repos` (the replicas' blocks). Fails if the manifest is not sealed in `log`, or if a
/// block is missing, a commit is not the entry's author's, or a record is not at its path.
pub fn write_bundle<W: Write>(
    manifest: &Manifest,
    log: &Log,
    repos: &dyn BlockSource,
    out: W,
) -> Result<PackageSummary, BundleError> {
    let (root, manifest_blocks, ops) = sealing_ops(manifest, log)?;
    let sink = Hashing {
        inner: out,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut car = CarWriter::new(BufWriter::with_capacity(1 << 20, sink), &[root])?;
    let mut written: FxHashSet<Key> = FxHashSet::default();
    let mut blocks = 0u64;
    for (cid, bytes) in &manifest_blocks {
        if written.insert(block_key(cid)) {
            car.write_block(cid, bytes)?;
            blocks += 1;
        }
    }
    drop(manifest_blocks);
    for op in &ops {
        if written.insert(block_key(op.id())) {
            car.write_block(op.id(), op.bytes())?;
            blocks += 1;
        }
    }
    let get = |cid: &Cid| {
        repos
            .get_block(cid)
            .map_err(|e| BundleError::Store(e.to_string()))
    };
    let mut cache = PathCache::default();
    // The record blocks to write after every proof's commit and MST nodes.
    let mut records: Vec<Cid> = Vec::with_capacity(manifest.records.len());
    // The commit whose tree the cache holds, and its MST root.
    let mut current: Option<(Cid, Cid)> = None;
    for e in &manifest.records {
        let commit = e.commit.0;
        let data = match current {
            Some((c, data)) if c == commit => data,
            _ => {
                let bytes = get(&commit)?.ok_or(BundleError::MissingBlock(commit))?;
                let c = verify_commit(&commit, &bytes).map_err(|err| BundleError::Proof {
                    author: e.author.to_string(),
                    path: e.path.clone(),
                    reason: err.to_string(),
                })?;
                if c.did != e.author.as_str() {
                    return Err(BundleError::Proof {
                        author: e.author.to_string(),
                        path: e.path.clone(),
                        reason: format!("commit {commit} is signed by {}", c.did),
                    });
                }
                if written.insert(block_key(&commit)) {
                    car.write_block(&commit, &bytes)?;
                    blocks += 1;
                }
                cache.clear();
                current = Some((commit, c.data));
                c.data
            }
        };
        let walked = cache
            .walk(data, e.path.as_bytes(), get)
            .map_err(|err| match err {
                WalkError::Fetch(b) => b,
                WalkError::Missing(c) => BundleError::MissingBlock(c),
                WalkError::Node(m) => BundleError::Proof {
                    author: e.author.to_string(),
                    path: e.path.clone(),
                    reason: m.to_string(),
                },
            })?;
        for (cid, bytes) in &walked.fresh {
            if written.insert(block_key(cid)) {
                car.write_block(cid, bytes)?;
                blocks += 1;
            }
        }
        if walked.found != Some(e.cid.0) {
            return Err(BundleError::Proof {
                author: e.author.to_string(),
                path: e.path.clone(),
                reason: match walked.found {
                    Some(c) => format!("the commit holds {c} there, not {}", e.cid.0),
                    None => "the commit holds no record there".to_owned(),
                },
            });
        }
        if written.insert(block_key(&e.cid.0)) {
            records.push(e.cid.0);
        }
    }
    // The per-licensee canaries: made again from the proposal and the builder, and they
    // must be the ones the manifest lists.
    let canaries = licensee_canary_blocks(manifest, log)?;
    for cid in canaries.keys() {
        if written.insert(block_key(cid)) {
            records.push(*cid);
        }
    }
    // The record blocks last, in the order of their CIDs' bytes: the store keys blocks by
    // those bytes, so reading them in that order walks its tree leaf by leaf instead of
    // jumping (a million records: most of the assembly time is these reads).
    records.sort_by_cached_key(|c| c.to_bytes());
    for cid in &records {
        match canaries.get(cid) {
            Some(bytes) => car.write_block(cid, bytes)?,
            None => {
                let bytes = get(cid)?.ok_or(BundleError::MissingBlock(*cid))?;
                car.write_block(cid, &bytes)?;
            }
        }
        blocks += 1;
    }
    let sink = car
        .finish()?
        .into_inner()
        .map_err(|e| BundleError::Io(e.into_error()))?;
    Ok(PackageSummary {
        manifest: root,
        bytes: sink.bytes,
        sha256: sink.hasher.finalize().into(),
        blocks,
        ops: ops.len() as u64,
        records: manifest.records.len() as u64,
    })
}
