//! The difference between two stored trees, walking only the parts that differ.

use cid::Cid;

use super::{MstError, decode_node, key_height};
use crate::blockstore::BlockSource;

/// One change from the old tree to the new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffOp {
    /// A key present only in the new tree.
    Add {
        /// The key.
        key: Vec<u8>,
        /// Its value.
        cid: Cid,
    },
    /// A key whose value changed.
    Update {
        /// The key.
        key: Vec<u8>,
        /// The old value.
        prev: Cid,
        /// The new value.
        cid: Cid,
    },
    /// A key present only in the old tree.
    Delete {
        /// The key.
        key: Vec<u8>,
        /// Its old value.
        prev: Cid,
    },
}

/// An item of a tree in key order: a leaf, or a whole subtree not yet opened.
enum Item {
    Leaf(Vec<u8>, Cid),
    Tree(Cid, Option<u32>),
}

/// A cursor over a tree: a stack of pending items, next item last.
struct Walker<'a> {
    src: &'a dyn BlockSource,
    pending: Vec<Item>,
    /// CIDs of the nodes this walker opened (new blocks, on the new side).
    opened: Vec<Cid>,
}

impl<'a> Walker<'a> {
    fn new(src: &'a dyn BlockSource, root: Cid) -> Self {
        Walker {
            src,
            pending: vec![Item::Tree(root, None)],
            opened: Vec::new(),
        }
    }

    fn peek(&self) -> Option<&Item> {
        self.pending.last()
    }

    /// Replaces the subtree on top with its items.
    fn open(&mut self) -> Result<(), MstError> {
        let Some(Item::Tree(cid, layer)) = self.pending.pop() else {
            return Ok(());
        };
        let bytes = self
            .src
            .get_block(&cid)?
            .ok_or(MstError::MissingBlock(cid))?;
        let node = decode_node(&cid, &bytes)?;
        self.opened.push(cid);
        let layer = match (node.entries.first(), layer) {
            (Some((k, _, _)), _) => key_height(k),
            (None, Some(l)) => l,
            (None, None) => 0,
        };
        let child = layer.checked_sub(1);
        let mut items = Vec::with_capacity(node.entries.len() * 2 + 1);
        if let Some(l) = node.left {
            items.push(Item::Tree(l, child));
        }
        for (k, v, t) in node.entries {
            items.push(Item::Leaf(k, v));
            if let Some(t) = t {
                items.push(Item::Tree(t, child));
            }
        }
        self.pending.extend(items.into_iter().rev());
        Ok(())
    }

    fn layer(&self) -> Option<u32> {
        match self.peek() {
            Some(Item::Tree(_, l)) => Some(l.unwrap_or(u32::MAX)),
            _ => None,
        }
    }
}

/// The changes that turn the tree at `old` into the tree at `new`, in key order, plus the CIDs
/// of the nodes of `new` that the walk had to open (the new tree's blocks that `old` lacks,
/// give or take the few nodes shared by position).
pub fn diff(
    src: &dyn BlockSource,
    old: Cid,
    new: Cid,
) -> Result<(Vec<DiffOp>, Vec<Cid>), MstError> {
    let mut a = Walker::new(src, old);
    let mut b = Walker::new(src, new);
    let mut ops = Vec::new();
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(Item::Tree(x, _)), Some(Item::Tree(y, _))) if x == y => {
                a.pending.pop();
                b.pending.pop();
            }
            (Some(Item::Tree(..)), Some(Item::Tree(..))) => {
                let (la, lb) = (a.layer(), b.layer());
                if la >= lb {
                    a.open()?;
                }
                if lb >= la {
                    b.open()?;
                }
            }
            (Some(Item::Tree(..)), _) => a.open()?,
            (_, Some(Item::Tree(..))) => b.open()?,
            (Some(Item::Leaf(ka, va)), Some(Item::Leaf(kb, vb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => {
                    ops.push(DiffOp::Delete {
                        key: ka.clone(),
                        prev: *va,
                    });
                    a.pending.pop();
                }
                std::cmp::Ordering::Greater => {
                    ops.push(DiffOp::Add {
                        key: kb.clone(),
                        cid: *vb,
                    });
                    b.pending.pop();
                }
                std::cmp::Ordering::Equal => {
                    if va != vb {
                        ops.push(DiffOp::Update {
                            key: kb.clone(),
                            prev: *va,
                            cid: *vb,
                        });
                    }
                    a.pending.pop();
                    b.pending.pop();
                }
            },
            (Some(Item::Leaf(ka, va)), None) => {
                ops.push(DiffOp::Delete {
                    key: ka.clone(),
                    prev: *va,
                });
                a.pending.pop();
            }
            (None, Some(Item::Leaf(kb, vb))) => {
                ops.push(DiffOp::Add {
                    key: kb.clone(),
                    cid: *vb,
                });
                b.pending.pop();
            }
        }
    }
    Ok((ops, b.opened))
}
