//! Where blocks live: a small trait the MST and repo code read and write through, and an
//! in-memory implementation. The sled implementation lives in `guild-store`.
//!
//! Blocks are [`Bytes`]: cloning one is a reference-count increment, so reading a block out of
//! a store, or out of a CAR file held in memory, copies nothing.

use std::collections::HashMap;

pub use bytes::Bytes;
use cid::Cid;

/// Hash maps keyed by CID. CIDs are SHA-256 digests, so a fast non-cryptographic hasher is
/// enough (and SipHash showed up in profiles).
pub type CidMap<V> = HashMap<Cid, V, rustc_hash::FxBuildHasher>;

/// A block-store failure (the backend's own error, rendered).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("block store: {0}")]
pub struct StoreError(pub String);

/// Read access to blocks by CID.
pub trait BlockSource {
    /// The block's bytes, if present.
    fn get_block(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError>;

    /// Whether the block is present.
    fn has_block(&self, cid: &Cid) -> Result<bool, StoreError> {
        Ok(self.get_block(cid)?.is_some())
    }
}

/// Read and write access to blocks. `put_blocks` is the unit of atomicity: a backend stores all
/// of the given blocks or none.
pub trait BlockStore: BlockSource {
    /// Stores blocks whose CIDs the caller has computed from their bytes.
    fn put_blocks(&mut self, blocks: Vec<(Cid, Bytes)>) -> Result<(), StoreError>;
}

impl<T: BlockSource + ?Sized> BlockSource for &T {
    fn get_block(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        (**self).get_block(cid)
    }
}

impl<T: BlockSource + ?Sized> BlockSource for &mut T {
    fn get_block(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        (**self).get_block(cid)
    }
}

impl<T: BlockStore + ?Sized> BlockStore for &mut T {
    fn put_blocks(&mut self, blocks: Vec<(Cid, Bytes)>) -> Result<(), StoreError> {
        (**self).put_blocks(blocks)
    }
}

/// Blocks in a hash map.
#[derive(Debug, Default, Clone)]
pub struct MemoryBlockStore {
    blocks: CidMap<Bytes>,
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
    pub fn insert(&mut self, cid: Cid, bytes: impl Into<Bytes>) {
        self.blocks.insert(cid, bytes.into());
    }

    /// Borrows one block.
    pub fn get(&self, cid: &Cid) -> Option<&[u8]> {
        self.blocks.get(cid).map(|b| b.as_ref())
    }

    /// Iterates over every block.
    pub fn iter(&self) -> impl Iterator<Item = (&Cid, &[u8])> {
        self.blocks.iter().map(|(c, b)| (c, b.as_ref()))
    }

    /// Reserves room for `n` more blocks.
    pub fn reserve(&mut self, n: usize) {
        self.blocks.reserve(n);
    }
}

impl BlockSource for MemoryBlockStore {
    fn get_block(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        Ok(self.blocks.get(cid).cloned())
    }
    fn has_block(&self, cid: &Cid) -> Result<bool, StoreError> {
        Ok(self.blocks.contains_key(cid))
    }
}

impl BlockStore for MemoryBlockStore {
    fn put_blocks(&mut self, blocks: Vec<(Cid, Bytes)>) -> Result<(), StoreError> {
        self.blocks.reserve(blocks.len());
        self.blocks.extend(blocks);
        Ok(())
    }
}
