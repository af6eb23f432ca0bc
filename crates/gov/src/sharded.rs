//! A map from op ids in [`SHARDS`] hash maps, chosen by a byte of the id's digest. One hash
//! map of a million ops grows by rehashing every entry into a table twice the size, on every
//! node at the same op (241 ms at 1 M ops, with the old and new tables both held meanwhile);
//! shards grow one at a time, each a 64th of that.

use guild_core::Cid;
use rustc_hash::FxHashMap;

/// How many hash maps.
pub(crate) const SHARDS: usize = 64;

/// See the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct ShardedMap<V> {
    shards: Vec<FxHashMap<Cid, V>>,
    len: usize,
}

/// The shard of an id: a byte of its digest (SHA-256 for every op id, so shards fill
/// evenly; any other id still has one, and is simply not found).
fn shard(id: &Cid) -> usize {
    id.hash()
        .digest()
        .last()
        .map_or(0, |b| usize::from(*b) % SHARDS)
}

impl<V> Default for ShardedMap<V> {
    fn default() -> Self {
        ShardedMap {
            shards: (0..SHARDS).map(|_| FxHashMap::default()).collect(),
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
        self.shards.get(shard(id))?.get(id)
    }

    /// The value of `id`, to change.
    pub(crate) fn get_mut(&mut self, id: &Cid) -> Option<&mut V> {
        self.shards.get_mut(shard(id))?.get_mut(id)
    }

    /// True if `id` has a value.
    pub(crate) fn contains_key(&self, id: &Cid) -> bool {
        self.get(id).is_some()
    }

    /// Sets the value of `id`; returns the previous one.
    pub(crate) fn insert(&mut self, id: Cid, value: V) -> Option<V> {
        let s = shard(&id);
        let old = self.shards.get_mut(s)?.insert(id, value);
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
    }

    /// Every entry, in no particular order.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Cid, &V)> {
        self.shards.iter().flatten()
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
            let cid = |k: u16| guild_core::cids::cid_for_cbor(&k.to_le_bytes());
            for (k, v) in &keys {
                prop_assert_eq!(sharded.insert(cid(*k), *v), one.insert(cid(*k), *v));
                prop_assert_eq!(sharded.len(), one.len());
            }
            for (k, _) in &keys {
                prop_assert_eq!(sharded.get(&cid(*k)), one.get(&cid(*k)));
                prop_assert!(sharded.contains_key(&cid(*k)));
            }
            prop_assert!(!sharded.contains_key(&cid(u16::MAX)) || one.contains_key(&cid(u16::MAX)));
            prop_assert_eq!(sharded.iter().count(), one.len());
        }
    }
}
