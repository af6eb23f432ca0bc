//! The log's ops by dense index: each op that enters a log gets the next [`Seq`], and its
//! entry and digest live in sequences indexed by it ([`Chunked`]), so the log's order, its
//! per-author lists and each op's parents are 4-byte indexes rather than 32-byte digests.
//! Finding an op by id goes through [`SHARDS`] hash tables of indexes alone, hashed by the
//! op's digest (which is already uniform): a table of a million ops is ~5 bytes a bucket,
//! where a map keyed by digest with the entry inline was ~110, and twice that much room when
//! the count sits just past a power of two. Shards grow one at a time, a 64th of the ops each
//! (one table of a million ops grows by rehashing every entry at once).

use std::sync::Arc;

use guild_core::Cid;
use guild_core::cids::DAG_CBOR;
use hashbrown::HashTable;

use guild_core::chunked::Chunked;

/// An op's dense index in a log: how many ops entered the log before it.
pub(crate) type Seq = u32;

/// An op id's SHA-256 digest (every op id is a CIDv1 DAG-CBOR SHA-256).
pub(crate) type Digest = [u8; 32];

/// How many hash tables.
pub(crate) const SHARDS: usize = 64;

/// See the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct OpTable<E> {
    /// Shared between copies as the sequences' chunks are ([`Chunked`]): a copy's first new
    /// op copies one table.
    shards: Vec<Arc<HashTable<Seq>>>,
    digests: Chunked<Digest>,
    entries: Chunked<E>,
}

/// The digest of an op id; `None` for an id that is not CIDv1 DAG-CBOR SHA-256 (no op has
/// one).
pub(crate) fn digest_of(id: &Cid) -> Option<Digest> {
    guild_core::cids::dag_cbor_digest(id)
}

/// An op id's digest. Every op id is a CIDv1 DAG-CBOR SHA-256 (`SignedOp` computes it), so
/// the digest is the whole id, and two ids' byte order is their digests' order. For ids that
/// may come from elsewhere, [`digest_of`] checks the form.
pub(crate) use crate::reconcile::digest_of as op_digest;

/// The op id whose digest is `d` (the inverse of [`digest_of`]).
pub(crate) fn op_id(d: &Digest) -> Cid {
    guild_core::cids::cid_from_digest(DAG_CBOR, d)
}

/// A digest's hash: its first 8 bytes (a SHA-256 digest is uniform already).
fn hash(d: &Digest) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

fn shard(d: &Digest) -> usize {
    usize::from(d[31]) % SHARDS
}

impl<E> Default for OpTable<E> {
    fn default() -> Self {
        OpTable {
            shards: (0..SHARDS).map(|_| Arc::new(HashTable::new())).collect(),
            digests: Chunked::new(),
            entries: Chunked::new(),
        }
    }
}

impl<E> OpTable<E> {
    /// How many ops.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The index of the op whose digest is `d`.
    pub(crate) fn seq_of_digest(&self, d: &Digest) -> Option<Seq> {
        let digests = &self.digests;
        self.shards
            .get(shard(d))?
            .find(hash(d), |&s| digests.get(s as usize) == Some(d))
            .copied()
    }

    /// The index of the op `id`.
    pub(crate) fn seq_of(&self, id: &Cid) -> Option<Seq> {
        self.seq_of_digest(&digest_of(id)?)
    }

    /// The entry of the op at index `s`.
    pub(crate) fn entry(&self, s: Seq) -> Option<&E> {
        self.entries.get(s as usize)
    }

    /// The digest of the op at index `s`.
    pub(crate) fn digest(&self, s: Seq) -> Option<&Digest> {
        self.digests.get(s as usize)
    }

    /// The id of the op at index `s`.
    pub(crate) fn id(&self, s: Seq) -> Option<Cid> {
        self.digest(s).map(op_id)
    }

    /// The entry of the op `id`.
    pub(crate) fn get(&self, id: &Cid) -> Option<&E> {
        self.entry(self.seq_of(id)?)
    }

    /// True if the op `id` is here.
    pub(crate) fn contains_key(&self, id: &Cid) -> bool {
        self.seq_of(id).is_some()
    }
}

impl<E: Clone> OpTable<E> {
    /// [`Self::entry`], to change.
    pub(crate) fn entry_mut(&mut self, s: Seq) -> Option<&mut E> {
        self.entries.get_mut(s as usize)
    }

    /// Adds the op `id` (not here yet) with its entry; returns its index, or `None` (and
    /// adds nothing) if the id is not an op id or the table is full.
    pub(crate) fn push(&mut self, id: &Cid, entry: E) -> Option<Seq> {
        let d = digest_of(id)?;
        let s = Seq::try_from(self.entries.len()).ok()?;
        let digests = &self.digests;
        let table = Arc::make_mut(self.shards.get_mut(shard(&d))?);
        // The hasher rehashes the indexes already in the table (by their digests) when it
        // grows; the new one's digest is pushed after.
        table.insert_unique(hash(&d), s, |&q| digests.get(q as usize).map_or(0, hash));
        self.digests.push(d);
        self.entries.push(entry);
        Some(s)
    }

    /// Room for `additional` more ops spread evenly over the tables.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let each = additional.div_ceil(SHARDS);
        let digests = &self.digests;
        for t in &mut self.shards {
            Arc::make_mut(t).reserve(each, |&q| digests.get(q as usize).map_or(0, hash));
        }
    }

    /// Gives back spare room.
    pub(crate) fn shrink_to_fit(&mut self) {
        let digests = &self.digests;
        for t in &mut self.shards {
            Arc::make_mut(t).shrink_to_fit(|&q| digests.get(q as usize).map_or(0, hash));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guild_core::cids;
    use proptest::prelude::*;

    proptest! {
        /// Every op pushed is found by id and by digest at the index it was given, in any
        /// number (shards growing as they fill); ids not pushed, and ids that are not op ids,
        /// are not found.
        #[test]
        fn finds_what_was_pushed(n in 0usize..3000, reserve in 0usize..2000) {
            let mut t: OpTable<usize> = OpTable::default();
            t.reserve(reserve);
            let ids: Vec<Cid> = (0..n as u32).map(|i| cids::cid_for_cbor(&i.to_be_bytes())).collect();
            for (i, id) in ids.iter().enumerate() {
                prop_assert_eq!(t.push(id, i * 7), Some(i as Seq));
            }
            t.shrink_to_fit();
            prop_assert_eq!(t.len(), n);
            for (i, id) in ids.iter().enumerate() {
                prop_assert_eq!(t.seq_of(id), Some(i as Seq));
                prop_assert_eq!(t.get(id), Some(&(i * 7)));
                prop_assert_eq!(t.id(i as Seq), Some(*id));
            }
            let absent = cids::cid_for_cbor(b"absent");
            prop_assert!(!t.contains_key(&absent));
            let raw = cids::cid_for_raw(b"raw");
            prop_assert_eq!(t.seq_of(&raw), None);
            prop_assert_eq!(t.push(&raw, 0), None);
            prop_assert_eq!(t.len(), n);
        }
    }
}
