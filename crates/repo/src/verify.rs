//! Full verification of a repository received as a CAR file.
//!
//! Checks, in order: one root, the commit block (canonical, version 3, `prev` null, a valid
//! TID `rev`, a `did:key` DID and a signature that verifies over the exact bytes); then the
//! whole MST from `data`: every node present, canonical (which covers prefix compression),
//! every key at the layer its height demands, keys strictly increasing across the whole tree,
//! every key a valid `<NSID>/<record key>` path of at most 1,024 bytes; then every record block
//! present, strict DAG-CBOR, and a map with an NSID `$type` (the lexicon layer checks the
//! rest). Every block's hash was already checked by the CAR reader.

use std::collections::HashSet;

use bytes::Bytes;
use cid::Cid;
use guild_core::syntax::Tid;

use crate::blockstore::BlockSource;
use crate::car::Car;
use crate::commit::{CommitError, verify_commit};
use crate::mst::{DecodedNode, MstError, decode_node, key_height};
use crate::repo::parse_path;

/// The longest MST key (repo path) accepted, as in the AT reference implementation.
pub const MAX_KEY_BYTES: usize = 1024;

/// What a verified repository contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSummary {
    /// The owner's DID.
    pub did: String,
    /// The head revision.
    pub rev: Tid,
    /// The commit CID.
    pub commit: Cid,
    /// The MST root CID.
    pub data: Cid,
    /// Every `(path, record CID)` in key order.
    pub records: Vec<(String, Cid)>,
}

/// Why a repository failed verification; each variant says where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The CAR must name exactly one root, the commit.
    #[error("the CAR must have exactly one root (the commit); it has {0}")]
    Roots(usize),
    /// A block the repo links to is absent.
    #[error("missing block {cid} ({what})")]
    Missing {
        /// The block.
        cid: Cid,
        /// What it should have been.
        what: String,
    },
    /// The commit is invalid.
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// An MST node is invalid.
    #[error(transparent)]
    Mst(#[from] MstError),
    /// Keys are out of order across nodes.
    #[error("MST node {node}: key {key:?} is not after the previous key {prev:?}")]
    Order {
        /// The node holding the key.
        node: Cid,
        /// The key.
        key: String,
        /// The key before it in tree order.
        prev: String,
    },
    /// A key is not a valid record path.
    #[error("MST node {node}: key {key:?} is not a valid record path: {reason}")]
    BadKey {
        /// The node holding the key.
        node: Cid,
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// A record block is invalid.
    #[error("record {path} ({cid}): {reason}")]
    BadRecord {
        /// The record's path.
        path: String,
        /// Its CID.
        cid: Cid,
        /// Why.
        reason: String,
    },
    /// The MST's structure is not canonical.
    #[error("MST node {node}: {reason}")]
    Structure {
        /// The node.
        node: Cid,
        /// What is wrong.
        reason: String,
    },
}

/// Verifies a whole repository CAR.
pub fn verify_car(car: &Car) -> Result<RepoSummary, VerifyError> {
    if car.roots.len() != 1 {
        return Err(VerifyError::Roots(car.roots.len()));
    }
    verify_repo(&car.blocks, car.roots[0])
}

/// Verifies the repository whose commit is `commit`, reading blocks from `src`.
pub fn verify_repo(src: &dyn BlockSource, commit: Cid) -> Result<RepoSummary, VerifyError> {
    verify_repo_with(src, commit, &mut |_, _| {})
}

/// Verifies like [`verify_repo`] and calls `visit` on every block the repository is made of
/// (the commit, each MST node, each record; a record shared by several keys once per key), as
/// it is read. A replica import uses it to store exactly the blocks of the verified tree and
/// nothing else a CAR carried.
pub fn verify_repo_with(
    src: &dyn BlockSource,
    commit: Cid,
    visit: &mut dyn FnMut(&Cid, &Bytes),
) -> Result<RepoSummary, VerifyError> {
    let mut reader = Reader { src, visit };
    let c = verify_commit(&commit, &reader.get(&commit, "the commit")?)?;
    let mut records = Vec::new();
    let mut prev_key: Option<Vec<u8>> = None;
    let mut stack = vec![Task::Node(c.data, None)];
    let mut seen_nodes = HashSet::new();
    while let Some(task) = stack.pop() {
        match task {
            Task::Node(cid, layer) => {
                if !seen_nodes.insert(cid) {
                    return Err(VerifyError::Structure {
                        node: cid,
                        reason: "the node appears twice in the tree".into(),
                    });
                }
                expand_node(&mut reader, cid, layer, &mut stack)?;
            }
            Task::Leaf(node, key, val) => {
                let path = check_leaf(&mut reader, node, &key, val, prev_key.as_deref())?;
                records.push((path, val));
                prev_key = Some(key);
            }
        }
    }
    Ok(RepoSummary {
        did: c.did,
        rev: c.rev,
        commit,
        data: c.data,
        records,
    })
}

/// Reads the repository's blocks, showing each to the caller's visitor as it is read.
struct Reader<'a> {
    src: &'a dyn BlockSource,
    visit: &'a mut dyn FnMut(&Cid, &Bytes),
}

impl Reader<'_> {
    /// The block `cid`, or [`VerifyError::Missing`] naming it as `what`.
    fn get(&mut self, cid: &Cid, what: &str) -> Result<Bytes, VerifyError> {
        let bytes = self
            .src
            .get_block(cid)
            .map_err(MstError::from)?
            .ok_or_else(|| VerifyError::Missing {
                cid: *cid,
                what: what.to_string(),
            })?;
        (self.visit)(cid, &bytes);
        Ok(bytes)
    }
}

/// One step of the iterative in-order MST walk: a node (with the layer its parent implies, or
/// `None` for the root) or a leaf (its node, key and record CID).
enum Task {
    Node(Cid, Option<u32>),
    Leaf(Cid, Vec<u8>, Cid),
}

/// Reads and checks the MST node `cid`, then pushes its subtrees and leaves onto `stack` so
/// that the walk pops them in key order.
fn expand_node(
    reader: &mut Reader<'_>,
    cid: Cid,
    layer: Option<u32>,
    stack: &mut Vec<Task>,
) -> Result<(), VerifyError> {
    let what = if layer.is_none() {
        "the MST root"
    } else {
        "an MST node"
    };
    let bytes = reader.get(&cid, what)?;
    let node = decode_node(&cid, &bytes)?;
    let node_layer = node_layer(cid, &node, layer)?;
    let child = node_layer.checked_sub(1);
    // Push in reverse so that the walk pops in key order.
    for (k, v, t) in node.entries.into_iter().rev() {
        if let Some(t) = t {
            stack.push(Task::Node(t, child));
        }
        let h = key_height(&k);
        if h != node_layer {
            return Err(MstError::WrongLayer {
                cid,
                key: String::from_utf8_lossy(&k).into_owned(),
                height: h,
                layer: node_layer,
            }
            .into());
        }
        stack.push(Task::Leaf(cid, k, v));
    }
    if let Some(l) = node.left {
        stack.push(Task::Node(l, child));
    }
    Ok(())
}

/// The layer of `node` (its first key's height; an empty node takes its parent's, or 0 as
/// the root), checked against the layer its parent implies and its having subtrees.
fn node_layer(cid: Cid, node: &DecodedNode, layer: Option<u32>) -> Result<u32, VerifyError> {
    let structure = |reason: String| VerifyError::Structure { node: cid, reason };
    let node_layer = match (node.entries.first(), layer) {
        (Some((k, _, _)), _) => key_height(k),
        (None, Some(l)) => {
            if node.left.is_none() {
                return Err(structure(
                    "an inner node with no entries and no subtree".into(),
                ));
            }
            l
        }
        (None, None) => {
            if node.left.is_some() {
                return Err(structure(
                    "the root has no entries but a subtree (not trimmed)".into(),
                ));
            }
            0
        }
    };
    if let Some(l) = layer
        && node_layer != l
    {
        return Err(structure(format!(
            "node is at layer {node_layer} but its parent implies {l}"
        )));
    }
    let has_children = node.left.is_some() || node.entries.iter().any(|e| e.2.is_some());
    if node_layer == 0 && has_children {
        return Err(structure("a layer-0 node has subtrees".into()));
    }
    Ok(node_layer)
}

/// Checks one leaf: its key after `prev` and a valid record path, its record present, a
/// dag-cbor block and a valid record. Returns the path.
fn check_leaf(
    reader: &mut Reader<'_>,
    node: Cid,
    key: &[u8],
    val: Cid,
    prev: Option<&[u8]>,
) -> Result<String, VerifyError> {
    let key_str = String::from_utf8_lossy(key).into_owned();
    if let Some(prev) = prev
        && key <= prev
    {
        return Err(VerifyError::Order {
            node,
            key: key_str,
            prev: String::from_utf8_lossy(prev).into_owned(),
        });
    }
    let bad_key = |key: String, reason: String| VerifyError::BadKey { node, key, reason };
    let path =
        std::str::from_utf8(key).map_err(|_| bad_key(key_str.clone(), "not UTF-8".into()))?;
    if key.len() > MAX_KEY_BYTES {
        return Err(bad_key(
            key_str,
            format!("longer than {MAX_KEY_BYTES} bytes"),
        ));
    }
    parse_path(path).map_err(|e| bad_key(key_str, e.to_string()))?;
    let bytes = reader.get(&val, &format!("record {path}"))?;
    let bad_record = |reason: String| VerifyError::BadRecord {
        path: path.to_string(),
        cid: val,
        reason,
    };
    if val.codec() != guild_core::cids::DAG_CBOR {
        return Err(bad_record("a record must be a dag-cbor block".into()));
    }
    guild_core::data::check_record_bytes(&bytes).map_err(|e| bad_record(e.to_string()))?;
    Ok(path.to_string())
}
