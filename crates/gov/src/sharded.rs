//! A map from op ids in [`SHARDS`] hash maps, chosen by a byte of the id's digest, each keyed
//! by the 32-byte digest alone. One hash map of a million ops grows by rehashing every entry
//! into a table twice the size, on every node at the same op (on the map alone: 1.0 s at
//! 1.8 M entries, with the old and new tables both held meanwhile); shards grow one at a
//! time, each a 64th of that. Keying by the digest rather than the 96-byte in-memory CID
//! saves 64 bytes per op and hashes a third of the bytes.

use guild_core::Cid;
use guild_core::cids::{DAG_CBOR, SHA2_256};
use rustc_hash::FxHashMap;

/// How many hash maps.
pub(crate) const SHARDS: usize = 64;

/// See the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct ShardedMap<V> {
    shards: Vec<FxHashMap<[u8; 32], V>>,
    /// Ids that are not CIDv1 DAG-CBOR SHA-256 (no op has one, but the map takes any id and
    /// never confuses two).
    other: FxHashMap<Cid, V>,
    len: usize,
}

/// The digest of an op id (CIDv1, DAG-CBOR, SHA-256), and its shard; `None` for any other id.
fn key(id: &Cid) -> Option<(usize, [u8; 32])> {
    if id.version() != cid::Version::V1 || id.codec() != DAG_CBOR || id.hash().code() != SHA2_256 {
        return None;
    }
    let digest: [u8; 32] = id.hash().digest().try_into().ok()?;
    Some((usize::from(digest[31]) % SHARDS, digest))
}

impl<V> Default for ShardedMap<V> {
    fn default() -> Self {
        ShardedMap {
            shards: (0..SHARDS).map(|_| FxHashMap::default()).collect(),
            other: FxHashMap::default(),
            len: 0,
        }
    }
}

impl<V> ShardedMap<V> {
    /// How many entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The value of `id`.
    pub(crate) fn get(&self, id: &Cid) -> Option<&V> {
        match key(id) {
            Some((s, k)) => self.shards.get(s)?.get(&k),
            None => self.other.get(id),
        }
    }

    /// The value of the op id (CIDv1, DAG-CBOR, SHA-256) whose digest is `digest`.
    pub(crate) fn get_digest(&self, digest: &[u8; 32]) -> Option<&V> {
        self.shards
            .get(usize::from(digest[31]) % SHARDS)?
            .get(digest)
    }

    /// [`Self::get_digest`], to change.
    pub(crate) fn get_digest_mut(&mut self, digest: &[u8; 32]) -> Option<&mut V> {
        self.shards
            .get_mut(usize::from(digest[31]) % SHARDS)?
            .get_mut(digest)
    }

    /// True if `id` has a value.
    pub(crate) fn contains_key(&self, id: &Cid) -> bool {
        self.get(id).is_some()
    }

    /// Sets the value of `id`; returns the previous one.
    pub(crate) fn insert(&mut self, id: Cid, value: V) -> Option<V> {
        let old = match key(&id) {
            Some((s, k)) => self.shards.get_mut(s)?.insert(k, value),
            None => self.other.insert(id, value),
        };
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Room for `additional` more entries spread evenly.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let each = additional.div_ceil(SHARDS);
        for s in &mut self.shards {
            s.reserve(each);
        }
    }

    /// Gives back spare room.
    pub(crate) fn shrink_to_fit(&mut self) {
        for s in &mut self.shards {
            s.shrink_to_fit();
        }
        self.other.shrink_to_fit();
    }

    /// How many values, counted shard by shard.
    #[cfg(test)]
    fn counted(&self) -> usize {
        self.shards.iter().map(|s| s.len()).sum::<usize>() + self.other.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Inserts, overwrites and lookups agree with one hash map.
        #[test]
        fn behaves_as_one_map(keys in proptest::collection::vec((any::<u16>(), any::<u32>()), 0..2000)) {
            let mut one: FxHashMap<Cid, u32> = FxHashMap::default();
            let mut sharded: ShardedMap<u32> = ShardedMap::default();
            // DAG-CBOR op ids, and for odd keys a raw CID with the same digest: the two
            // must stay apart.
            let cid = |k: u16| {
                let d = guild_core::cids::sha256(&(k / 2).to_le_bytes());
                let codec = if k.is_multiple_of(2) { DAG_CBOR } else { guild_core::cids::RAW };
                guild_core::cids::cid_from_digest(codec, &d)
            };
            for (k, v) in &keys {
                prop_assert_eq!(sharded.insert(cid(*k), *v), one.insert(cid(*k), *v));
                prop_assert_eq!(sharded.len(), one.len());
            }
            for (k, _) in &keys {
                prop_assert_eq!(sharded.get(&cid(*k)), one.get(&cid(*k)));
                prop_assert!(sharded.contains_key(&cid(*k)));
            }
            prop_assert!(!sharded.contains_key(&cid(u16::MAX)) || one.contains_key(&cid(u16::MAX)));
            prop_assert_eq!(sharded.counted(), one.len());
        }
    }
}
