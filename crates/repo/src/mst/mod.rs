//! The Merkle Search Tree of AT Protocol repo v3.
//!
//! A key's height is the number of leading zero bits of SHA-256(key) divided by two; a node at
//! layer `L` holds the keys of height `L` in its range, and the gaps between them point to
//! subtrees at layer `L - 1` (possibly nodes with no entries of their own, whose only content
//! is a left subtree). The shape is a function of the key set alone, so the root CID is too.
//!
//! [`Mst`] is an in-memory view over a [`BlockSource`]: nodes load lazily on first touch and
//! carry their CID until modified. [`Mst::root_cid`] encodes the modified nodes bottom-up and
//! hands back the new blocks. [`Mst::from_sorted`] builds a whole tree at once for imports and
//! gives exactly the tree that one-by-one inserts give.
//!
//! If an operation returns an error (a missing or corrupt block), the in-memory view may be
//! partly modified: discard it and load the tree again from its last root CID.

mod diff;
mod node;

use bytes::Bytes;
use cid::Cid;

pub use diff::{DiffOp, diff};
pub use node::{
    DecodedNode, MAX_NODE_ENTRIES, common_prefix_len, decode_node, encode_node, key_height,
};

use crate::blockstore::{BlockSource, StoreError};

/// Everything that can go wrong reading or changing an MST.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MstError {
    /// A node the tree links to is not in the block source.
    #[error("MST node {0} is missing from the block store")]
    MissingBlock(Cid),
    /// A node's bytes are not a valid, canonical MST node.
    #[error("MST node {cid} is invalid: {reason}")]
    BadNode {
        /// The node.
        cid: Cid,
        /// What is wrong with it.
        reason: String,
    },
    /// A key sits at a layer that its height does not allow.
    #[error("MST node {cid}: key {key:?} has height {height} but sits at layer {layer}")]
    WrongLayer {
        /// The node.
        cid: Cid,
        /// The key (lossy UTF-8).
        key: String,
        /// The key's height.
        height: u32,
        /// The node's layer.
        layer: u32,
    },
    /// Input to the bulk builder was not sorted and unique.
    #[error("bulk build input is not strictly sorted at key {0:?}")]
    Unsorted(String),
    /// The block source failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A child pointer: either only a CID, or a node in memory.
#[derive(Debug, Clone)]
enum Sub {
    Stored(Cid),
    Loaded(Box<Node>),
}

#[derive(Debug, Clone)]
struct Entry {
    key: Vec<u8>,
    val: Cid,
    right: Option<Sub>,
}

#[derive(Debug, Clone)]
struct Node {
    layer: u32,
    left: Option<Sub>,
    entries: Vec<Entry>,
    /// The node's CID while it is unmodified since load or last flush.
    cid: Option<Cid>,
}

impl Node {
    fn empty(layer: u32) -> Self {
        Node {
            layer,
            left: None,
            entries: Vec::new(),
            cid: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.left.is_none()
    }

    /// The subtree slot before entry `i` (`i == entries.len()` is the last gap).
    fn gap(&mut self, i: usize) -> &mut Option<Sub> {
        if i == 0 {
            &mut self.left
        } else {
            &mut self.entries[i - 1].right
        }
    }

    fn gap_ref(&self, i: usize) -> Option<&Sub> {
        if i == 0 {
            self.left.as_ref()
        } else {
            self.entries[i - 1].right.as_ref()
        }
    }

    fn into_sub(self) -> Option<Sub> {
        if self.is_empty() {
            None
        } else {
            Some(Sub::Loaded(Box::new(self)))
        }
    }

    fn position(&self, key: &[u8]) -> usize {
        self.entries.partition_point(|e| e.key.as_slice() < key)
    }
}

/// Loads and checks one node. `layer` is the layer its parent implies (`None` for a root).
fn load_node(src: &dyn BlockSource, cid: &Cid, layer: Option<u32>) -> Result<Node, MstError> {
    let bytes = src.get_block(cid)?.ok_or(MstError::MissingBlock(*cid))?;
    let decoded = decode_node(cid, &bytes)?;
    node_from_decoded(cid, decoded, layer)
}

fn node_from_decoded(
    cid: &Cid,
    decoded: DecodedNode,
    layer: Option<u32>,
) -> Result<Node, MstError> {
    let layer = match (decoded.entries.first(), layer) {
        (Some((k, _, _)), _) => {
            let h = key_height(k);
            if let Some(expected) = layer
                && h != expected
            {
                return Err(wrong_layer(cid, k, h, expected));
            }
            h
        }
        (None, Some(l)) => {
            if decoded.left.is_none() {
                return Err(MstError::BadNode {
                    cid: *cid,
                    reason: "an inner node with no entries and no subtree must be null".into(),
                });
            }
            l
        }
        (None, None) => {
            if decoded.left.is_some() {
                return Err(MstError::BadNode {
                    cid: *cid,
                    reason: "a root with no entries must have no subtree (the tree is not trimmed)"
                        .into(),
                });
            }
            0
        }
    };
    let mut entries = Vec::with_capacity(decoded.entries.len());
    for (key, val, right) in decoded.entries {
        let h = key_height(&key);
        if h != layer {
            return Err(wrong_layer(cid, &key, h, layer));
        }
        entries.push(Entry {
            key,
            val,
            right: right.map(Sub::Stored),
        });
    }
    if layer == 0 && (decoded.left.is_some() || entries.iter().any(|e| e.right.is_some())) {
        return Err(MstError::BadNode {
            cid: *cid,
            reason: "a layer-0 node cannot have subtrees".into(),
        });
    }
    Ok(Node {
        layer,
        left: decoded.left.map(Sub::Stored),
        entries,
        cid: Some(*cid),
    })
}

fn wrong_layer(cid: &Cid, key: &[u8], height: u32, layer: u32) -> MstError {
    MstError::WrongLayer {
        cid: *cid,
        key: String::from_utf8_lossy(key).into_owned(),
        height,
        layer,
    }
}

fn ensure_loaded<'a>(
    slot: &'a mut Sub,
    src: &dyn BlockSource,
    layer: u32,
) -> Result<&'a mut Node, MstError> {
    if let Sub::Stored(cid) = slot {
        let node = load_node(src, cid, Some(layer))?;
        *slot = Sub::Loaded(Box::new(node));
    }
    match slot {
        Sub::Loaded(node) => Ok(node),
        // Just replaced above.
        Sub::Stored(cid) => Err(MstError::MissingBlock(*cid)),
    }
}

fn into_node(sub: Sub, src: &dyn BlockSource, layer: u32) -> Result<Node, MstError> {
    match sub {
        Sub::Loaded(n) => Ok(*n),
        Sub::Stored(cid) => load_node(src, &cid, Some(layer)),
    }
}

/// Splits a subtree around `key` (which it does not contain) into the parts below and above.
fn split(
    sub: Option<Sub>,
    src: &dyn BlockSource,
    key: &[u8],
    layer: u32,
) -> Result<(Option<Sub>, Option<Sub>), MstError> {
    let Some(sub) = sub else {
        return Ok((None, None));
    };
    let mut node = into_node(sub, src, layer)?;
    let i = node.position(key);
    let gap = node.gap(i).take();
    let (gl, gr) = split(gap, src, key, layer.saturating_sub(1))?;
    let right_entries = node.entries.split_off(i);
    let mut left = Node {
        layer,
        left: node.left.take(),
        entries: std::mem::take(&mut node.entries),
        cid: None,
    };
    *left.gap(i) = gl;
    let right = Node {
        layer,
        left: gr,
        entries: right_entries,
        cid: None,
    };
    Ok((left.into_sub(), right.into_sub()))
}

/// Joins two adjacent subtrees of the same layer (all keys of `a` below all keys of `b`).
fn merge(
    a: Option<Sub>,
    b: Option<Sub>,
    src: &dyn BlockSource,
    layer: u32,
) -> Result<Option<Sub>, MstError> {
    match (a, b) {
        (None, x) | (x, None) => Ok(x),
        (Some(a), Some(b)) => {
            let mut a = into_node(a, src, layer)?;
            let mut b = into_node(b, src, layer)?;
            let n = a.entries.len();
            let a_last = a.gap(n).take();
            let b_left = b.left.take();
            let mid = merge(a_last, b_left, src, layer.saturating_sub(1))?;
            *a.gap(n) = mid;
            a.entries.append(&mut b.entries);
            a.cid = None;
            Ok(a.into_sub())
        }
    }
}

fn insert_into(
    node: &mut Node,
    src: &dyn BlockSource,
    key: &[u8],
    height: u32,
    val: Cid,
) -> Result<Option<Cid>, MstError> {
    let i = node.position(key);
    if let Some(e) = node.entries.get_mut(i)
        && e.key == key
    {
        let old = std::mem::replace(&mut e.val, val);
        if old != val {
            node.cid = None;
        }
        return Ok(Some(old));
    }
    if height == node.layer {
        let gap = node.gap(i).take();
        let (l, r) = split(gap, src, key, node.layer.saturating_sub(1))?;
        *node.gap(i) = l;
        node.entries.insert(
            i,
            Entry {
                key: key.to_vec(),
                val,
                right: r,
            },
        );
        node.cid = None;
        return Ok(None);
    }
    // height < layer: the key belongs in the gap's subtree.
    let child_layer = node.layer - 1;
    let slot = node.gap(i);
    let sub = slot.get_or_insert_with(|| Sub::Loaded(Box::new(Node::empty(child_layer))));
    let child = ensure_loaded(sub, src, child_layer)?;
    let old = insert_into(child, src, key, height, val)?;
    if child.cid.is_none() {
        node.cid = None;
    }
    Ok(old)
}

fn delete_from(
    node: &mut Node,
    src: &dyn BlockSource,
    key: &[u8],
    height: u32,
) -> Result<Option<Cid>, MstError> {
    let i = node.position(key);
    if node.entries.get(i).is_some_and(|e| e.key == key) {
        let removed = node.entries.remove(i);
        let left_gap = node.gap(i).take();
        let merged = merge(left_gap, removed.right, src, node.layer.saturating_sub(1))?;
        *node.gap(i) = merged;
        node.cid = None;
        return Ok(Some(removed.val));
    }
    if height >= node.layer {
        return Ok(None);
    }
    let child_layer = node.layer - 1;
    let slot = node.gap(i);
    let Some(sub) = slot else {
        return Ok(None);
    };
    let child = ensure_loaded(sub, src, child_layer)?;
    let old = delete_from(child, src, key, height)?;
    if old.is_some() {
        if child.is_empty() {
            *slot = None;
        }
        node.cid = None;
    }
    Ok(old)
}

fn flush(node: &mut Node, out: &mut Vec<(Cid, Bytes)>) -> Cid {
    if let Some(cid) = node.cid {
        return cid;
    }
    let (left, rights) = flush_children(node, out);
    let mut bytes = Vec::with_capacity(16 + node.entries.len() * 80);
    encode_node(
        left.as_ref(),
        node.entries
            .iter()
            .zip(&rights)
            .map(|(e, r)| (e.key.as_slice(), &e.val, r.as_ref())),
        &mut bytes,
    );
    let cid = guild_core::cids::cid_for_cbor(&bytes);
    node.cid = Some(cid);
    out.push((cid, Bytes::from(bytes)));
    cid
}

/// Flushes a node's subtrees: the left one and each entry's right one.
#[cfg(not(feature = "parallel"))]
fn flush_children(node: &mut Node, out: &mut Vec<(Cid, Bytes)>) -> (Option<Cid>, Vec<Option<Cid>>) {
    let left = node.left.as_mut().map(|s| flush_sub(s, out));
    let rights = node
        .entries
        .iter_mut()
        .map(|e| e.right.as_mut().map(|s| flush_sub(s, out)))
        .collect();
    (left, rights)
}

/// Blocks produced by a flush.
#[cfg(feature = "parallel")]
type NewBlocks = Vec<(Cid, Bytes)>;

/// Flushes a node's subtrees; high in a big tree, the subtrees are flushed on all cores (each
/// into its own block list, appended in order, so the output is the same as sequentially).
#[cfg(feature = "parallel")]
fn flush_children(node: &mut Node, out: &mut Vec<(Cid, Bytes)>) -> (Option<Cid>, Vec<Option<Cid>>) {
    use rayon::prelude::*;
    // A node at layer 4 heads about 4^4 = 256 keys: below that, threads cost more than they save.
    const PARALLEL_FROM_LAYER: u32 = 4;
    let mut slots: Vec<&mut Option<Sub>> = std::iter::once(&mut node.left)
        .chain(node.entries.iter_mut().map(|e| &mut e.right))
        .collect();
    let mut cids: Vec<Option<Cid>> = if node.layer < PARALLEL_FROM_LAYER {
        slots
            .iter_mut()
            .map(|s| s.as_mut().map(|s| flush_sub(s, out)))
            .collect()
    } else {
        let parts: Vec<(Option<Cid>, NewBlocks)> = slots
            .par_iter_mut()
            .map(|s| {
                let mut blocks = Vec::new();
                let cid = s.as_mut().map(|s| flush_sub(s, &mut blocks));
                (cid, blocks)
            })
            .collect();
        parts
            .into_iter()
            .map(|(cid, mut blocks)| {
                out.append(&mut blocks);
                cid
            })
            .collect()
    };
    let left = cids.remove(0);
    (left, cids)
}

fn flush_sub(sub: &mut Sub, out: &mut Vec<(Cid, Bytes)>) -> Cid {
    match sub {
        Sub::Stored(cid) => *cid,
        Sub::Loaded(node) => flush(node, out),
    }
}

/// Where a lookup goes next.
enum Step<'a> {
    Found(Cid),
    Absent,
    Child(&'a Sub, u32),
}

fn step<'a>(node: &'a Node, key: &[u8]) -> Step<'a> {
    let i = node.position(key);
    if let Some(e) = node.entries.get(i)
        && e.key == key
    {
        return Step::Found(e.val);
    }
    match node.gap_ref(i) {
        None => Step::Absent,
        Some(sub) => Step::Child(sub, node.layer.saturating_sub(1)),
    }
}

/// A Merkle Search Tree over a block source.
#[derive(Debug, Clone)]
pub struct Mst {
    root: Sub,
}

impl Default for Mst {
    fn default() -> Self {
        Self::new()
    }
}

impl Mst {
    /// An empty tree.
    pub fn new() -> Self {
        Mst {
            root: Sub::Loaded(Box::new(Node::empty(0))),
        }
    }

    /// The tree whose root node is `root` (loaded lazily).
    pub fn load(root: Cid) -> Self {
        Mst {
            root: Sub::Stored(root),
        }
    }

    fn root_node(&mut self, src: &dyn BlockSource) -> Result<&mut Node, MstError> {
        if let Sub::Stored(cid) = &self.root {
            let node = load_node(src, cid, None)?;
            self.root = Sub::Loaded(Box::new(node));
        }
        match &mut self.root {
            Sub::Loaded(n) => Ok(n),
            Sub::Stored(cid) => Err(MstError::MissingBlock(*cid)),
        }
    }

    /// Builds the tree of a whole key→value set at once. `entries` must be sorted by key with
    /// no duplicates. Gives the same tree as inserting the entries one by one.
    pub fn from_sorted(entries: Vec<(Vec<u8>, Cid)>) -> Result<Self, MstError> {
        for w in entries.windows(2) {
            if w[0].0 >= w[1].0 {
                return Err(MstError::Unsorted(
                    String::from_utf8_lossy(&w[1].0).into_owned(),
                ));
            }
        }
        let mut items = with_heights(entries);
        let top = items.iter().map(|i| i.2).max().unwrap_or(0);
        Ok(Mst {
            root: Sub::Loaded(Box::new(build(&mut items, top))),
        })
    }

    /// The value stored under `key`.
    pub fn get(&self, src: &dyn BlockSource, key: &[u8]) -> Result<Option<Cid>, MstError> {
        enum Cur<'a> {
            Ref(&'a Node),
            Own(Box<Node>),
        }
        let mut cur = match &self.root {
            Sub::Loaded(n) => Cur::Ref(n),
            Sub::Stored(cid) => Cur::Own(Box::new(load_node(src, cid, None)?)),
        };
        loop {
            cur = match cur {
                Cur::Ref(n) => match step(n, key) {
                    Step::Found(v) => return Ok(Some(v)),
                    Step::Absent => return Ok(None),
                    Step::Child(Sub::Loaded(c), _) => Cur::Ref(c),
                    Step::Child(Sub::Stored(cid), l) => {
                        Cur::Own(Box::new(load_node(src, cid, Some(l))?))
                    }
                },
                Cur::Own(n) => match step(&n, key) {
                    Step::Found(v) => return Ok(Some(v)),
                    Step::Absent => return Ok(None),
                    Step::Child(Sub::Loaded(c), _) => Cur::Own(c.clone()),
                    Step::Child(Sub::Stored(cid), l) => {
                        Cur::Own(Box::new(load_node(src, cid, Some(l))?))
                    }
                },
            };
        }
    }

    /// Sets `key` to `val`; returns the previous value.
    pub fn insert(
        &mut self,
        src: &dyn BlockSource,
        key: &[u8],
        val: Cid,
    ) -> Result<Option<Cid>, MstError> {
        let height = key_height(key);
        let root = self.root_node(src)?;
        if root.is_empty() {
            *root = Node {
                layer: height,
                left: None,
                entries: vec![Entry {
                    key: key.to_vec(),
                    val,
                    right: None,
                }],
                cid: None,
            };
            return Ok(None);
        }
        while height > root.layer {
            let layer = root.layer + 1;
            let old = std::mem::replace(root, Node::empty(layer));
            root.left = Some(Sub::Loaded(Box::new(old)));
        }
        insert_into(root, src, key, height, val)
    }

    /// Removes `key`; returns its value if it was present.
    pub fn delete(&mut self, src: &dyn BlockSource, key: &[u8]) -> Result<Option<Cid>, MstError> {
        let height = key_height(key);
        let root = self.root_node(src)?;
        if height > root.layer {
            return Ok(None);
        }
        let old = delete_from(root, src, key, height)?;
        // Trim: a root with no entries is replaced by its only subtree.
        while root.entries.is_empty() {
            let Some(sub) = root.left.take() else {
                root.layer = 0;
                break;
            };
            let layer = root.layer.saturating_sub(1);
            *root = into_node(sub, src, layer)?;
        }
        Ok(old)
    }

    /// The root CID, encoding every node changed since the last call; the new blocks are
    /// appended to `blocks`.
    pub fn root_cid(&mut self, blocks: &mut Vec<(Cid, Bytes)>) -> Cid {
        flush_sub(&mut self.root, blocks)
    }

    /// Entries in key order: keys starting with `prefix`, strictly after `after` if given, at
    /// most `limit` of them.
    pub fn list(
        &self,
        src: &dyn BlockSource,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Cid)>, MstError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let bounds = Bounds {
            prefix,
            after,
            limit,
        };
        match &self.root {
            Sub::Loaded(n) => visit(n, src, &bounds, &mut out)?,
            Sub::Stored(cid) => visit(&load_node(src, cid, None)?, src, &bounds, &mut out)?,
        };
        Ok(out)
    }

    /// Every entry in key order.
    pub fn entries(&self, src: &dyn BlockSource) -> Result<Vec<(Vec<u8>, Cid)>, MstError> {
        self.list(src, b"", None, usize::MAX)
    }
}

/// Pairs every entry with its key height (SHA-256 of every key: on all cores when parallel).
fn with_heights(entries: Vec<(Vec<u8>, Cid)>) -> Vec<(Vec<u8>, Cid, u32)> {
    #[cfg(feature = "parallel")]
    use rayon::prelude::*;
    #[cfg(feature = "parallel")]
    let iter = entries.into_par_iter();
    #[cfg(not(feature = "parallel"))]
    let iter = entries.into_iter();
    iter.map(|(k, v)| {
        let h = key_height(&k);
        (k, v, h)
    })
    .collect()
}

fn build(items: &mut [(Vec<u8>, Cid, u32)], layer: u32) -> Node {
    let mut node = Node::empty(layer);
    let mut gap_start = 0;
    for j in 0..items.len() {
        if items[j].2 == layer {
            let gap = &mut items[gap_start..j];
            if !gap.is_empty() {
                let sub = build(gap, layer - 1);
                *node.gap(node.entries.len()) = Some(Sub::Loaded(Box::new(sub)));
            }
            node.entries.push(Entry {
                key: std::mem::take(&mut items[j].0),
                val: items[j].1,
                right: None,
            });
            gap_start = j + 1;
        }
    }
    let gap = &mut items[gap_start..];
    if !gap.is_empty() {
        let sub = build(gap, layer - 1);
        *node.gap(node.entries.len()) = Some(Sub::Loaded(Box::new(sub)));
    }
    node
}

struct Bounds<'a> {
    prefix: &'a [u8],
    after: Option<&'a [u8]>,
    limit: usize,
}

/// In-order visit; returns `false` once the listing is complete.
fn visit(
    node: &Node,
    src: &dyn BlockSource,
    b: &Bounds<'_>,
    out: &mut Vec<(Vec<u8>, Cid)>,
) -> Result<bool, MstError> {
    // First entry that may be listed: >= prefix and > after.
    let mut start = node
        .entries
        .partition_point(|e| e.key.as_slice() < b.prefix);
    if let Some(after) = b.after {
        start = start.max(node.entries.partition_point(|e| e.key.as_slice() <= after));
    }
    let child_layer = node.layer.saturating_sub(1);
    for i in start..=node.entries.len() {
        if let Some(sub) = node.gap_ref(i) {
            let more = match sub {
                Sub::Loaded(c) => visit(c, src, b, out)?,
                Sub::Stored(cid) => visit(&load_node(src, cid, Some(child_layer))?, src, b, out)?,
            };
            if !more {
                return Ok(false);
            }
        }
        let Some(e) = node.entries.get(i) else {
            break;
        };
        if !e.key.starts_with(b.prefix) {
            return Ok(false);
        }
        out.push((e.key.clone(), e.val));
        if out.len() >= b.limit {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests;
