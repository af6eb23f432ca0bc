//! The in-memory store's governance ops: per collective, the ops' buffers in the order
//! appended and an index from op id to position (see the parent module's docs).

use std::collections::HashMap;

use cid::Cid;
use guild_core::chunked::Chunked;
use guild_core::cids::dag_cbor_digest;
use guild_repo::{Bytes, StoreError};

/// One collective's ops in memory.
#[derive(Debug, Default)]
pub(crate) struct MemoryOps {
    /// The ops' signed bytes in the order appended, in chunks (the list grows a chunk at a
    /// time, not by doubling). The buffers are the callers': an op a log saves is the same
    /// buffer its decoded op holds (`OpStore::append_shared`), not a copy.
    ops: Chunked<Bytes>,
    /// Ids that are DAG-CBOR SHA-256 CIDs (every op's id) by their digest alone: 36 bytes an
    /// entry where a `Cid` key would take 104.
    by_digest: HashMap<[u8; 32], u32>,
    /// Any other id (only tests and tools append such ids).
    other: HashMap<Cid, u32>,
}

impl MemoryOps {
    fn position(&self, id: &Cid) -> Option<u32> {
        match dag_cbor_digest(id) {
            Some(d) => self.by_digest.get(&d).copied(),
            None => self.other.get(id).copied(),
        }
    }

    /// Appends the ops not stored yet, each once, in the order given. All or nothing: the
    /// only failure (more ops than a position can count) is found before anything changes.
    pub(crate) fn append(&mut self, ops: &[(Cid, Bytes)]) -> Result<(), StoreError> {
        let mut new: Vec<usize> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, (id, _)) in ops.iter().enumerate() {
            if self.position(id).is_none() && seen.insert(*id) {
                new.push(i);
            }
        }
        let total = self.ops.len() + new.len();
        if u32::try_from(total).is_err() {
            return Err(StoreError(format!(
                "gov: {total} ops of one collective are more than the in-memory store counts"
            )));
        }
        for i in new {
            let (id, bytes) = &ops[i];
            // Cannot truncate: the total was checked above.
            let at = self.ops.len() as u32;
            match dag_cbor_digest(id) {
                Some(d) => self.by_digest.insert(d, at),
                None => self.other.insert(*id, at),
            };
            self.ops.push(bytes.clone());
        }
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.ops.len()
    }

    /// Up to `max` ops from the `from`th.
    pub(crate) fn page(&self, from: usize, max: usize) -> Vec<Vec<u8>> {
        self.ops
            .range(from, from.saturating_add(max))
            .map(|b| b.to_vec())
            .collect()
    }

    pub(crate) fn one(&self, id: &Cid) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(at) = self.position(id) else {
            return Ok(None);
        };
        match self.ops.get(at as usize) {
            Some(bytes) => Ok(Some(bytes.to_vec())),
            None => Err(StoreError(format!(
                "gov: op {id} is indexed at {at} but only {} ops are stored",
                self.ops.len()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guild_core::chunked::CHUNK;

    fn dag_cbor_id(bytes: &[u8]) -> Cid {
        guild_core::cids::cid_for_cbor(bytes)
    }

    /// An op id is found by its digest; an id of another codec with the same digest is
    /// another op; a buffer appended is kept, not copied; an op appended twice is stored once.
    #[test]
    fn ids_by_digest_and_others_apart_buffers_shared() {
        let mut ops = MemoryOps::default();
        let a = Bytes::from_static(b"op a");
        let id_a = dag_cbor_id(&a);
        let same_digest_raw = Cid::new_v1(0x55, *id_a.hash());
        let b = Bytes::from_static(b"op b");
        ops.append(&[(id_a, a.clone()), (same_digest_raw, b.clone())])
            .unwrap();
        ops.append(&[(id_a, b.clone())]).unwrap();
        assert_eq!(ops.len(), 2);
        assert_eq!(ops.one(&id_a).unwrap().as_deref(), Some(&b"op a"[..]));
        assert_eq!(
            ops.one(&same_digest_raw).unwrap().as_deref(),
            Some(&b"op b"[..])
        );
        assert_eq!(ops.one(&dag_cbor_id(b"other")).unwrap(), None);
        assert_eq!(ops.ops.get(0).map(|b| b.as_ptr()), Some(a.as_ptr()));
        assert_eq!(ops.page(1, 5), vec![b"op b".to_vec()]);
        assert!(ops.page(2, 5).is_empty());
    }

    /// Pages and ids across chunk boundaries.
    #[test]
    fn pages_across_chunks() {
        let mut ops = MemoryOps::default();
        let all: Vec<(Cid, Bytes)> = (0..CHUNK * 2 + 3)
            .map(|i| {
                let b = Bytes::from(format!("op {i}"));
                (dag_cbor_id(&b), b)
            })
            .collect();
        ops.append(&all[..CHUNK - 1]).unwrap();
        ops.append(&all[CHUNK - 2..]).unwrap();
        assert_eq!(ops.len(), all.len());
        let want: Vec<Vec<u8>> = all.iter().map(|(_, b)| b.to_vec()).collect();
        for from in [
            0,
            1,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            2 * CHUNK,
            all.len(),
            all.len() + 9,
        ] {
            for max in [0, 1, 7, CHUNK, usize::MAX] {
                let end = from.saturating_add(max).min(all.len());
                let want = want.get(from..end).unwrap_or_default();
                assert_eq!(ops.page(from, max), want, "from {from} max {max}");
            }
        }
        for (id, b) in &all {
            assert_eq!(ops.one(id).unwrap().as_deref(), Some(&b[..]));
        }
    }
}
