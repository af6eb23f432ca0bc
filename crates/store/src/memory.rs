//! The in-memory implementation: the same semantics as the sled one, nothing on disk.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use cid::Cid;
use guild_core::syntax::Tid;
use guild_repo::blockstore::CidMap;

use crate::gov::memory::MemoryOps;
use crate::{
    BlockSource, BlockStore, Bytes, CommitError, IndexOp, KvOp, KvStore, RepoHead, RepoKey,
    RepoStore, StoreError,
};

/// One repo's record index: collection → rkey → CID. Empty collections are removed.
type Index = BTreeMap<String, BTreeMap<String, Cid>>;

#[derive(Debug, Default)]
struct Inner {
    blocks: CidMap<Bytes>,
    heads: BTreeMap<RepoKey, RepoHead>,
    index: HashMap<RepoKey, Index>,
    last_tid: Option<Tid>,
    kv: HashMap<String, BTreeMap<Vec<u8>, Bytes>>,
    /// Governance ops by collective (`crate::gov`'s module docs).
    gov: HashMap<Cid, MemoryOps>,
}

/// A store in memory, for tests and tools. Cloning gives another handle to the same data.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    inner: Arc<RwLock<Inner>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    // Every mutation below checks before it changes anything and cannot panic halfway, so
    // the data behind a poisoned lock is still consistent.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the governance ops.
    pub(crate) fn with_gov<R>(&self, f: impl FnOnce(&HashMap<Cid, MemoryOps>) -> R) -> R {
        f(&self.read().gov)
    }

    /// Changes the governance ops.
    pub(crate) fn with_gov_mut<R>(&self, f: impl FnOnce(&mut HashMap<Cid, MemoryOps>) -> R) -> R {
        f(&mut self.write().gov)
    }
}

impl BlockSource for MemoryStore {
    fn get_block(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        Ok(self.read().blocks.get(cid).cloned())
    }

    fn has_block(&self, cid: &Cid) -> Result<bool, StoreError> {
        Ok(self.read().blocks.contains_key(cid))
    }
}

impl BlockStore for MemoryStore {
    fn put_blocks(&mut self, blocks: Vec<(Cid, Bytes)>) -> Result<(), StoreError> {
        (&*self).put_blocks(blocks)
    }
}

/// Lets a [`guild_repo::Repo`] work over a shared `&MemoryStore`.
impl BlockStore for &MemoryStore {
    fn put_blocks(&mut self, blocks: Vec<(Cid, Bytes)>) -> Result<(), StoreError> {
        self.write().blocks.extend(blocks);
        Ok(())
    }
}

impl RepoStore for MemoryStore {
    fn head(&self, repo: &RepoKey) -> Result<Option<RepoHead>, StoreError> {
        Ok(self.read().heads.get(repo).cloned())
    }

    fn repos(&self) -> Result<Vec<(RepoKey, RepoHead)>, StoreError> {
        Ok(self
            .read()
            .heads
            .iter()
            .map(|(k, h)| (k.clone(), h.clone()))
            .collect())
    }

    fn commit(
        &self,
        repo: &RepoKey,
        expected: Option<&Cid>,
        new_head: &RepoHead,
        blocks: &[(Cid, Bytes)],
        index: &[IndexOp],
    ) -> Result<(), CommitError> {
        let mut guard = self.write();
        let inner = &mut *guard;
        let actual = inner.heads.get(repo).map(|h| h.commit);
        if actual.as_ref() != expected {
            return Err(CommitError::Conflict {
                expected: expected.copied(),
                actual,
            });
        }
        inner
            .blocks
            .extend(blocks.iter().map(|(c, b)| (*c, b.clone())));
        let idx = inner.index.entry(repo.clone()).or_default();
        for op in index {
            match op {
                IndexOp::Put {
                    collection,
                    rkey,
                    cid,
                } => {
                    idx.entry(collection.clone())
                        .or_default()
                        .insert(rkey.clone(), *cid);
                }
                IndexOp::Delete { collection, rkey } => {
                    if let Some(c) = idx.get_mut(collection) {
                        c.remove(rkey);
                        if c.is_empty() {
                            idx.remove(collection);
                        }
                    }
                }
            }
        }
        inner.heads.insert(repo.clone(), new_head.clone());
        Ok(())
    }

    fn index_get(
        &self,
        repo: &RepoKey,
        collection: &str,
        rkey: &str,
    ) -> Result<Option<Cid>, StoreError> {
        Ok(self
            .read()
            .index
            .get(repo)
            .and_then(|i| i.get(collection))
            .and_then(|c| c.get(rkey))
            .copied())
    }

    fn index_list(
        &self,
        repo: &RepoKey,
        collection: &str,
        cursor: Option<&str>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<(String, Cid)>, StoreError> {
        let inner = self.read();
        let Some(records) = inner.index.get(repo).and_then(|i| i.get(collection)) else {
            return Ok(Vec::new());
        };
        let range = match (cursor, reverse) {
            (None, _) => records.range::<str, _>((Bound::Unbounded, Bound::Unbounded)),
            (Some(c), false) => records.range::<str, _>((Bound::Excluded(c), Bound::Unbounded)),
            (Some(c), true) => records.range::<str, _>((Bound::Unbounded, Bound::Excluded(c))),
        };
        let out = |(k, v): (&String, &Cid)| (k.clone(), *v);
        Ok(if reverse {
            range.rev().take(limit).map(out).collect()
        } else {
            range.take(limit).map(out).collect()
        })
    }

    fn collections(&self, repo: &RepoKey) -> Result<Vec<String>, StoreError> {
        Ok(self
            .read()
            .index
            .get(repo)
            .map(|i| i.keys().cloned().collect())
            .unwrap_or_default())
    }

    fn record_count(&self, repo: &RepoKey) -> Result<u64, StoreError> {
        Ok(self
            .read()
            .index
            .get(repo)
            .map_or(0, |i| i.values().map(|c| c.len() as u64).sum()))
    }

    fn last_tid(&self) -> Result<Option<Tid>, StoreError> {
        Ok(self.read().last_tid.clone())
    }

    fn set_last_tid(&self, tid: &Tid) -> Result<(), StoreError> {
        let mut inner = self.write();
        if inner.last_tid.as_ref().is_none_or(|t| t < tid) {
            inner.last_tid = Some(tid.clone());
        }
        Ok(())
    }
}

impl KvStore for MemoryStore {
    fn kv_get(&self, tree: &str, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        Ok(self.read().kv.get(tree).and_then(|t| t.get(key)).cloned())
    }

    fn kv_stage(&self, tree: &str, ops: &[KvOp]) -> Result<(), StoreError> {
        self.kv_apply(tree, ops)
    }

    fn kv_apply(&self, tree: &str, ops: &[KvOp]) -> Result<(), StoreError> {
        let mut inner = self.write();
        let t = inner.kv.entry(tree.to_owned()).or_default();
        for op in ops {
            match op {
                KvOp::Put(k, v) => {
                    t.insert(k.clone(), v.clone());
                }
                KvOp::Delete(k) => {
                    t.remove(k);
                }
            }
        }
        Ok(())
    }

    fn kv_scan(
        &self,
        tree: &str,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Bytes)>, StoreError> {
        let inner = self.read();
        let Some(t) = inner.kv.get(tree) else {
            return Ok(Vec::new());
        };
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        Ok(t.range::<[u8], _>((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}
