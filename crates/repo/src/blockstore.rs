//! Where blocks live: a small trait the MST and repo code read and write through, and an
//! in-memory implementation. The sled implementation lives in `guild-store`.

use std::collections::HashMap;

use cid::Cid;

/// A block-store failure (the backend's own error, rendered).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("block store: {0}")]
pub struct StoreError(pub String);

/// Read access to blocks by CID.
pub trait BlockSource {
    /// The block's bytes, if present.
    fn get_block(&self, cid: &Cid) -> Result<Option<Vec<u8>>, StoreError>;

    /// Whether the block is present.
    fn has_block(&self, cid: &Cid) -> Result<bool, StoreError> {
        Ok(self.get_block(cid)?.is_some())
    }
}

/// Read and write access to blocks. `put_blocks` is the unit of atomicity: a backend stores all
/// of the given blocks or none.
pub trait BlockStore: BlockSource {
    /// Stores blocks whose CIDs the caller has computed from their bytes.
    fn put_blocks(&mut self, blocks: Vec<(Cid, Vec<u8>)>) -> Result<(), StoreError>;
}

impl<T: BlockSource + ?Sized> BlockSource for &T {
    fn get_block(&self, cid: &Cid) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get_block(cid)
    }
}

impl<T: BlockSource + ?Sized> BlockSource for &mut T {
    fn get_block(&self, cid: &Cid) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get_block(cid)
    }
}

impl<T: BlockStore + ?Sized> BlockStore for &mut T {
    fn put_blocks(&mut self, blocks: Vec<(Cid, Vec<u8>)>) -> Result<(), StoreError> {
        (**self).put_blocks(blocks)
    }
}

/// Blocks in a hash map.
#[derive(Debug, Default, Clone)]
pub struct MemoryBlockStore {
    blocks: HashMap<Cid, Vec<u8>>,
}

impl MemoryBlockStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of blocks held.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether no block is held.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Stores one block.
    pub fn insert(&mut self, cid: Cid, bytes: Vec<u8>) {
        self.blocks.insert(cid, bytes);
    }

    /// Borrows one block.
    pub fn get(&self, cid: &Cid) -> Option<&[u8]> {
        self.blocks.get(cid).map(Vec::as_slice)
    }

    /// Iterates over every block.
    pub fn iter(&self) -> impl Iterator<Item = (&Cid, &[u8])> {
        self.blocks.iter().map(|(c, b)| (c, b.as_slice()))
    }
}

impl BlockSource for MemoryBlockStore {
    fn get_block(&self, cid: &Cid) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.blocks.get(cid).cloned())
    }
    fn has_block(&self, cid: &Cid) -> Result<bool, StoreError> {
        Ok(self.blocks.contains_key(cid))
    }
}

impl BlockStore for MemoryBlockStore {
    fn put_blocks(&mut self, blocks: Vec<(Cid, Vec<u8>)>) -> Result<(), StoreError> {
        self.blocks.extend(blocks);
        Ok(())
    }
}
