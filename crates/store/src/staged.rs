//! A block store for building commits without writing twice.

use std::fmt;
use std::sync::{Mutex, PoisonError};

use cid::Cid;
use guild_repo::blockstore::CidMap;

use crate::{BlockSource, BlockStore, Bytes, StoreError};

/// A [`BlockStore`] for a [`guild_repo::Repo`] whose commits are persisted through
/// [`RepoStore::commit`](crate::RepoStore::commit): reads look at the staged blocks, then at
/// the store; writes are staged in memory, not written.
///
/// ```text
/// let mut repo = Repo::open(Staged::new(&store), head.commit)?;
/// let result = repo.apply(&key, rev, writes)?;
/// store.commit(&repo_key, Some(&head.commit), &(&result.head).into(), &result.blocks,
///              &IndexOp::from_record_ops(&result.ops)?)?;
/// repo.store().clear(); // the blocks are in the store now
/// ```
///
/// So each block is written once, by the commit, with one flush. If a commit fails, drop the
/// repo (its in-memory tree has moved past the stored head) and reopen it from the store.
pub struct Staged<'a, S: ?Sized> {
    store: &'a S,
    staged: Mutex<CidMap<Bytes>>,
}

impl<S: ?Sized> fmt::Debug for Staged<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Staged")
            .field("staged_blocks", &self.len())
            .finish_non_exhaustive()
    }
}

impl<'a, S: BlockSource + ?Sized> Staged<'a, S> {
    /// Nothing staged yet, over `store`.
    pub fn new(store: &'a S) -> Self {
        Staged {
            store,
            staged: Mutex::new(CidMap::default()),
        }
    }
}

impl<S: ?Sized> Staged<'_, S> {
    /// The store underneath.
    pub fn store(&self) -> &S {
        self.store
    }

    /// Forgets the staged blocks (once a commit has stored them).
    pub fn clear(&self) {
        self.staged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Number of staged blocks.
    pub fn len(&self) -> usize {
        self.staged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no block is staged.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<S: BlockSource + ?Sized> BlockSource for Staged<'_, S> {
    fn get_block(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        let staged = self
            .staged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(cid)
            .cloned();
        match staged {
            Some(b) => Ok(Some(b)),
            None => self.store.get_block(cid),
        }
    }
}

impl<S: BlockSource + ?Sized> BlockStore for Staged<'_, S> {
    fn put_blocks(&mut self, blocks: Vec<(Cid, Bytes)>) -> Result<(), StoreError> {
        self.staged
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(blocks);
        Ok(())
    }
}
