//! Inclusion proofs: the signed commit, the MST nodes on the path from the root to a key, and
//! the record block, as a small CAR a builder can check without the rest of the repository.

use bytes::Bytes;
use cid::Cid;
use guild_core::data::Ipld;
use guild_core::syntax::Tid;

use crate::blockstore::BlockSource;
use crate::car::Car;
use crate::commit::{CommitError, verify_commit};
use crate::mst::{MstError, decode_node, key_height};

/// Why a proof could not be made or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The CAR must name exactly one root, the commit.
    #[error("a proof must have exactly one root (the commit); it has {0}")]
    Roots(usize),
    /// A block on the path is absent.
    #[error("the proof is incomplete: block {0} is missing")]
    Missing(Cid),
    /// The commit is invalid.
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// A node on the path is invalid.
    #[error(transparent)]
    Mst(#[from] MstError),
    /// The tree proves that the key is absent.
    #[error("the repository at this commit has no record at {0}")]
    Absent(String),
    /// The record block is not a valid record.
    #[error("record {path}: {reason}")]
    BadRecord {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
}

/// What a verified proof establishes.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvenRecord {
    /// The signer of the commit.
    pub did: String,
    /// The commit's revision.
    pub rev: Tid,
    /// The commit CID.
    pub commit: Cid,
    /// The record's CID.
    pub cid: Cid,
    /// The decoded record.
    pub record: Ipld,
}

/// Blocks as `(CID, bytes)` pairs.
pub type Blocks = Vec<(Cid, Bytes)>;

/// Walks from the MST root toward `key`, returning the nodes visited and the value if found.
fn walk(src: &dyn BlockSource, root: Cid, key: &[u8]) -> Result<(Blocks, Option<Cid>), ProofError> {
    let height = key_height(key);
    let mut path = Vec::new();
    let mut cur = Some(root);
    let mut layer: Option<u32> = None;
    while let Some(cid) = cur.take() {
        let bytes = src
            .get_block(&cid)
            .map_err(MstError::from)?
            .ok_or(ProofError::Missing(cid))?;
        let node = decode_node(&cid, &bytes)?;
        path.push((cid, bytes));
        let node_layer = match (node.entries.first(), layer) {
            (Some((k, _, _)), _) => key_height(k),
            (None, Some(l)) => l,
            (None, None) => 0,
        };
        let i = node.entries.partition_point(|e| e.0.as_slice() < key);
        if let Some((k, v, _)) = node.entries.get(i)
            && k == key
        {
            return Ok((path, Some(*v)));
        }
        if height >= node_layer {
            break;
        }
        cur = if i == 0 {
            node.left
        } else {
            node.entries[i - 1].2
        };
        layer = node_layer.checked_sub(1);
    }
    Ok((path, None))
}

/// The blocks of an inclusion proof for `path` in the repository whose commit is `commit`:
/// the commit, the MST path and the record, in that order.
pub fn prove(src: &dyn BlockSource, commit: Cid, path: &str) -> Result<Blocks, ProofError> {
    let commit_bytes = src
        .get_block(&commit)
        .map_err(MstError::from)?
        .ok_or(ProofError::Missing(commit))?;
    let c = verify_commit(&commit, &commit_bytes)?;
    let (nodes, found) = walk(src, c.data, path.as_bytes())?;
    let Some(record) = found else {
        return Err(ProofError::Absent(path.to_string()));
    };
    let record_bytes = src
        .get_block(&record)
        .map_err(MstError::from)?
        .ok_or(ProofError::Missing(record))?;
    let mut blocks = Vec::with_capacity(nodes.len() + 2);
    blocks.push((commit, commit_bytes));
    blocks.extend(nodes);
    blocks.push((record, record_bytes));
    Ok(blocks)
}

/// Walks the tree whose root is `root` (a verified commit's `data`) toward `path`: the MST
/// nodes on the way, in root-to-leaf order, and the value at `path` if the tree holds one
/// (`None`: the nodes prove it absent). For proofs of many paths under one commit, whose
/// signature is checked once.
pub fn walk_path(
    src: &dyn BlockSource,
    root: Cid,
    path: &str,
) -> Result<(Blocks, Option<Cid>), ProofError> {
    walk(src, root, path.as_bytes())
}

/// Verifies an inclusion proof for `path` using only the blocks in the proof CAR.
pub fn verify_proof(car: &Car, path: &str) -> Result<ProvenRecord, ProofError> {
    if car.roots.len() != 1 {
        return Err(ProofError::Roots(car.roots.len()));
    }
    let commit = car.roots[0];
    let commit_bytes = car.blocks.get(&commit).ok_or(ProofError::Missing(commit))?;
    let c = verify_commit(&commit, commit_bytes)?;
    let (_, found) = walk(&car.blocks, c.data, path.as_bytes())?;
    let Some(cid) = found else {
        return Err(ProofError::Absent(path.to_string()));
    };
    let bytes = car.blocks.get(&cid).ok_or(ProofError::Missing(cid))?;
    let record = guild_core::data::decode_record(bytes).map_err(|e| ProofError::BadRecord {
        path: path.to_string(),
        reason: e.to_string(),
    })?;
    Ok(ProvenRecord {
        did: c.did,
        rev: c.rev,
        commit,
        cid,
        record,
    })
}
