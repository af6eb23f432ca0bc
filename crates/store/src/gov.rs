//! The governance op log's persistence ([`guild_gov::OpStore`]).
//!
//! **On sled** ([`SledStore`]) an op's signed bytes are not sled values: each collective's
//! ops are records appended to a file of their own, `gov-ops/<collective>.ops` in the
//! store's directory, and the key-value tree `gov-index` indexes them:
//!
//! | key | value |
//! |---|---|
//! | `v` | the layout's version, one byte: 3 |
//! | `n` ‖ collective | how many ops are committed and where the committed records end: two u64, big-endian |
//! | `b` ‖ collective ‖ the op id's last two bytes | the index entries of the ops whose ids end so: each the id's length (one byte), the id's bytes, the op's sequence number, its record's offset (u64 each) and its length (u32), big-endian |
//! | `p` ‖ collective ‖ sequence / 256 (u64, big-endian) | the offset of the record of op sequence × 256 (u64, big-endian) |
//!
//! where *collective* is the length of the collective's CID bytes (one byte) and the bytes.
//! The index is bucketed because sled's memory grows with its number of keys: a million ops
//! make 65 536 bucket keys of ~15 entries (~850 bytes) rather than a million keys.
//! The file starts with the 8 bytes `guildop1`; a record is the op's length (u32,
//! little-endian), the CRC-32 of its bytes (u32, little-endian) and the bytes.
//!
//! *An append* writes its records at the committed end, syncs the file, then applies the
//! index keys and the new `n` in one atomic, flushed sled batch: that batch is the commit.
//! Until it is applied the records past the committed end are not part of the log (nothing
//! reads past it), and the next append writes over them; so an append is atomic and durable
//! as a whole, as a `kv_apply` is. A record that reads back with another length or CRC is a
//! corrupt store ([`StoreError`]), never an op.
//!
//! Why not sled values, as before: a node's log of a million ops made a million sled values
//! and a million index keys, whose page table and page cache held ~190 MB of the node's
//! memory, and opening the log read every op through sled's cache. A store written with the
//! old layout (the tree `gov`: `o` ‖ collective ‖ sequence → bytes, `i` ‖ collective ‖ op
//! id → sequence, `n` → count) is migrated when it is opened, a chunk at a time: each chunk's
//! records are written and synced, then one batch writes their index entries and the
//! progress key `m` ‖ collective (count and end, as `n`) into `gov-index`; a migration cut
//! short resumes from `m`. Once every collective is moved, `v` is written and the old tree
//! dropped whole (removing its keys one by one would leave sled's emptied nodes behind, and
//! their memory at every open). (Version 2, op files indexed in the `gov` tree by one sled
//! key per op, lived for a day in development; such a store is refused as corrupt.)
//!
//! **In memory** ([`MemoryStore`]) a collective's ops are a list of their buffers in the order
//! appended, and a hash map from op id to position; an op id (always a DAG-CBOR SHA-256
//! CID) is keyed by its 32-byte digest. The buffers are shared, not copied: an op a log
//! saves ([`guild_gov::OpStore::append_shared`]) is the buffer its decoded op holds. (Until
//! 2026-12-06 these ops were values of a key-value tree with two B-tree keys per op: in a
//! process of 1 000 in-memory nodes that was ~1.55 MB per node.)
//!
//! Appends for one collective must come from one writer at a time (the node's governance
//! task); the sled store also takes a lock of its own around them.

use cid::Cid;
use guild_repo::{Bytes, StoreError};

use crate::{KvStore, MemoryStore, SledStore};

const TREE: &str = "gov";
const PAGE: usize = 4096;

fn collective_key(tag: u8, collective: &Cid) -> Vec<u8> {
    let c = collective.to_bytes();
    let mut k = Vec::with_capacity(2 + c.len() + 40);
    k.push(tag);
    k.push(c.len() as u8);
    k.extend_from_slice(&c);
    k
}

fn u64_of(v: &[u8]) -> Result<u64, StoreError> {
    let b: [u8; 8] = v
        .try_into()
        .map_err(|_| StoreError("gov: a sequence number is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(b))
}

/// Calls `f` with every key and value of the `gov` tree under `prefix`, in key order, a page
/// at a time.
fn scan_all<S: KvStore + ?Sized>(
    store: &S,
    tree: &str,
    prefix: &[u8],
    mut f: impl FnMut(&[u8], Bytes) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.kv_scan(tree, prefix, after.as_deref(), PAGE)?;
        let full = page.len() == PAGE;
        for (k, v) in page {
            f(&k, v)?;
            after = Some(k);
        }
        if !full {
            return Ok(());
        }
    }
}

fn collectives<S: KvStore + ?Sized>(store: &S, tree: &str) -> Result<Vec<Cid>, StoreError> {
    let mut out = Vec::new();
    scan_all(store, tree, b"n", |k, _| {
        let cid = k
            .get(2..)
            .and_then(|b| Cid::try_from(b).ok())
            .ok_or_else(|| StoreError("gov: a corrupt collective key".into()))?;
        out.push(cid);
        Ok(())
    })?;
    Ok(out)
}

/// The in-memory store's ops (see the module docs).
impl guild_gov::OpStore for MemoryStore {
    type Error = StoreError;

    fn append_ops(&self, collective: &Cid, ops: &[(Cid, &[u8])]) -> Result<(), StoreError> {
        let shared: Vec<(Cid, Bytes)> = ops
            .iter()
            .map(|(id, b)| (*id, Bytes::copy_from_slice(b)))
            .collect();
        self.append_shared(collective, &shared)
    }

    fn append_shared(&self, collective: &Cid, ops: &[(Cid, Bytes)]) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        self.with_gov_mut(|gov| {
            let stored = gov.entry(*collective).or_default();
            let appended = stored.append(ops);
            // A collective is listed only once it has an op, as on sled.
            if stored.len() == 0 {
                gov.remove(collective);
            }
            appended
        })
    }

    fn stored_ops(&self, collective: &Cid) -> Result<Vec<Vec<u8>>, StoreError> {
        self.stored_ops_page(collective, 0, usize::MAX)
    }

    fn collectives(&self) -> Result<Vec<Cid>, StoreError> {
        // In the sled store's order: by the length of the CID's bytes, then the bytes.
        let mut out: Vec<Cid> = self.with_gov(|gov| gov.keys().copied().collect());
        out.sort_by_cached_key(|c| {
            let b = c.to_bytes();
            (b.len(), b)
        });
        Ok(out)
    }

    fn stored_op_count(&self, collective: &Cid) -> Result<usize, StoreError> {
        Ok(self.with_gov(|gov| gov.get(collective).map_or(0, |ops| ops.len())))
    }

    fn stored_ops_page(
        &self,
        collective: &Cid,
        from: usize,
        max: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self.with_gov(|gov| match gov.get(collective) {
            Some(ops) => ops.page(from, max),
            None => Vec::new(),
        }))
    }

    fn stored_op(&self, collective: &Cid, id: &Cid) -> Result<Option<Vec<u8>>, StoreError> {
        self.with_gov(|gov| match gov.get(collective) {
            Some(ops) => ops.one(id),
            None => Ok(None),
        })
    }
}

impl guild_gov::OpStore for SledStore {
    type Error = StoreError;

    fn append_ops(&self, collective: &Cid, ops: &[(Cid, &[u8])]) -> Result<(), StoreError> {
        files::append(self, collective, ops)
    }

    fn stored_ops(&self, collective: &Cid) -> Result<Vec<Vec<u8>>, StoreError> {
        // A page that asks for everything is every committed op.
        files::page(self, collective, 0, usize::MAX)
    }

    fn collectives(&self) -> Result<Vec<Cid>, StoreError> {
        collectives(self, files::INDEX)
    }

    fn stored_op_count(&self, collective: &Cid) -> Result<usize, StoreError> {
        let (count, _) = files::committed(self, collective)?;
        usize::try_from(count)
            .map_err(|_| StoreError("gov: an op count beyond this machine's memory".into()))
    }

    fn stored_ops_page(
        &self,
        collective: &Cid,
        from: usize,
        max: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        files::page(self, collective, from, max)
    }

    fn stored_op(&self, collective: &Cid, id: &Cid) -> Result<Option<Vec<u8>>, StoreError> {
        files::one(self, collective, id)
    }
}

/// Migrates the `gov` tree of a store written with the old layout (see the module docs).
pub(crate) fn migrate(store: &SledStore) -> Result<(), StoreError> {
    files::migrate(store)
}

mod files;
pub(crate) mod memory;
