//! The MST walk packaging uses to emit each entry's proof: from a commit's tree root toward
//! one key, as guild-repo's inclusion proofs walk, remembering the nodes of the previous walk
//! so that a run of keys in order decodes each node once. (Verification checks the same
//! blocks with one in-order walk of each author's partial tree: `verify::Walk`.)

use guild_core::Cid;
use guild_repo::MstError;
use guild_repo::mst::{DecodedNode, decode_node, key_height};

/// Why a walk stopped.
#[derive(Debug)]
pub(crate) enum WalkError<E> {
    /// Fetching a node failed.
    Fetch(E),
    /// A node on the path is absent.
    Missing(Cid),
    /// A node on the path does not decode (or is not canonical).
    Node(MstError),
}

/// What a walk found.
pub(crate) struct Walked<B> {
    /// The nodes on the path from the root that were fetched (not remembered from the
    /// previous walk), root first, with their bytes.
    pub fresh: Vec<(Cid, B)>,
    /// The value under the key, if the tree holds it.
    pub found: Option<Cid>,
}

/// The nodes of the last walk, decoded.
#[derive(Default)]
pub(crate) struct PathCache {
    nodes: Vec<(Cid, DecodedNode)>,
}

impl PathCache {
    /// Forgets the last walk (at a new tree).
    pub fn clear(&mut self) {
        self.nodes.clear();
    }

    /// Walks the tree rooted at `root` toward `key`, fetching nodes with `fetch`.
    pub fn walk<B: AsRef<[u8]>, E>(
        &mut self,
        root: Cid,
        key: &[u8],
        mut fetch: impl FnMut(&Cid) -> Result<Option<B>, E>,
    ) -> Result<Walked<B>, WalkError<E>> {
        let mut old = std::mem::take(&mut self.nodes);
        let height = key_height(key);
        let mut fresh = Vec::new();
        let mut cur = Some(root);
        let mut layer: Option<u32> = None;
        while let Some(cid) = cur.take() {
            let node = match old.iter().position(|(c, _)| *c == cid) {
                Some(i) => old.swap_remove(i).1,
                None => {
                    let bytes = fetch(&cid)
                        .map_err(WalkError::Fetch)?
                        .ok_or(WalkError::Missing(cid))?;
                    let node = decode_node(&cid, bytes.as_ref()).map_err(WalkError::Node)?;
                    fresh.push((cid, bytes));
                    node
                }
            };
            let node_layer = match (node.entries.first(), layer) {
                (Some((k, _, _)), _) => key_height(k),
                (None, Some(l)) => l,
                (None, None) => 0,
            };
            let i = node.entries.partition_point(|e| e.0.as_slice() < key);
            let hit = node.entries.get(i).filter(|e| e.0 == key).map(|e| e.1);
            let next = if i == 0 {
                node.left
            } else {
                node.entries.get(i - 1).and_then(|e| e.2)
            };
            self.nodes.push((cid, node));
            if let Some(v) = hit {
                return Ok(Walked {
                    fresh,
                    found: Some(v),
                });
            }
            if height >= node_layer {
                break;
            }
            cur = next;
            layer = node_layer.checked_sub(1);
        }
        Ok(Walked { fresh, found: None })
    }
}
