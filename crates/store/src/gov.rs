//! The governance op log's persistence ([`guild_gov::OpStore`]) on any [`KvStore`].
//!
//! One key-value tree, `gov`, so that an append is one atomic, durable `kv_apply`:
//!
//! | key | value |
//! |---|---|
//! | `n` ‖ collective | the next sequence number (u64, big-endian) |
//! | `o` ‖ collective ‖ sequence (u64, big-endian) | the op's signed bytes |
//! | `i` ‖ collective ‖ op id bytes | the op's sequence number |
//!
//! where *collective* is the length of the collective's CID bytes (one byte) and the bytes.
//! Appends for one collective must come from one writer at a time (the node's governance
//! task); the store does not lock.

use cid::Cid;
use guild_repo::{Bytes, StoreError};

use crate::{KvOp, KvStore, MemoryStore, SledStore};

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

fn append<S: KvStore + ?Sized>(
    store: &S,
    collective: &Cid,
    ops: &[(Cid, &[u8])],
) -> Result<(), StoreError> {
    let next_key = collective_key(b'n', collective);
    let mut next = match store.kv_get(TREE, &next_key)? {
        Some(v) => u64_of(&v)?,
        None => 0,
    };
    let mut batch = Vec::with_capacity(ops.len() * 2 + 1);
    let mut seen = std::collections::HashSet::new();
    for (id, bytes) in ops {
        let mut id_key = collective_key(b'i', collective);
        id_key.extend_from_slice(&id.to_bytes());
        if !seen.insert(id_key.clone()) || store.kv_get(TREE, &id_key)?.is_some() {
            continue;
        }
        let mut op_key = collective_key(b'o', collective);
        op_key.extend_from_slice(&next.to_be_bytes());
        batch.push(KvOp::Put(op_key, Bytes::copy_from_slice(bytes)));
        batch.push(KvOp::Put(
            id_key,
            Bytes::copy_from_slice(&next.to_be_bytes()),
        ));
        next += 1;
    }
    if batch.is_empty() {
        return Ok(());
    }
    batch.push(KvOp::Put(
        next_key,
        Bytes::copy_from_slice(&next.to_be_bytes()),
    ));
    store.kv_apply(TREE, &batch)
}

fn stored<S: KvStore + ?Sized>(store: &S, collective: &Cid) -> Result<Vec<Vec<u8>>, StoreError> {
    let prefix = collective_key(b'o', collective);
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.kv_scan(TREE, &prefix, after.as_deref(), PAGE)?;
        let full = page.len() == PAGE;
        for (k, v) in page {
            out.push(v.to_vec());
            after = Some(k);
        }
        if !full {
            return Ok(out);
        }
    }
}

fn count<S: KvStore + ?Sized>(store: &S, collective: &Cid) -> Result<usize, StoreError> {
    // Sequence numbers start at 0 and every append takes the next ones: the next one is
    // the count.
    match store.kv_get(TREE, &collective_key(b'n', collective))? {
        Some(v) => usize::try_from(u64_of(&v)?)
            .map_err(|_| StoreError("gov: an op count beyond this machine's memory".into())),
        None => Ok(0),
    }
}

fn page<S: KvStore + ?Sized>(
    store: &S,
    collective: &Cid,
    from: usize,
    max: usize,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let prefix = collective_key(b'o', collective);
    // The scan starts after the key of the op before `from` (sequence numbers are dense).
    let after = from.checked_sub(1).map(|before| {
        let mut k = prefix.clone();
        k.extend_from_slice(&(before as u64).to_be_bytes());
        k
    });
    let page = store.kv_scan(TREE, &prefix, after.as_deref(), max)?;
    Ok(page.into_iter().map(|(_, v)| v.to_vec()).collect())
}

fn one<S: KvStore + ?Sized>(
    store: &S,
    collective: &Cid,
    id: &Cid,
) -> Result<Option<Vec<u8>>, StoreError> {
    let mut id_key = collective_key(b'i', collective);
    id_key.extend_from_slice(&id.to_bytes());
    let Some(seq) = store.kv_get(TREE, &id_key)? else {
        return Ok(None);
    };
    let mut op_key = collective_key(b'o', collective);
    op_key.extend_from_slice(&u64_of(&seq)?.to_be_bytes());
    match store.kv_get(TREE, &op_key)? {
        Some(bytes) => Ok(Some(bytes.to_vec())),
        None => Err(StoreError(format!(
            "gov: op {id} is indexed but its bytes are missing"
        ))),
    }
}

fn collectives<S: KvStore + ?Sized>(store: &S) -> Result<Vec<Cid>, StoreError> {
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.kv_scan(TREE, b"n", after.as_deref(), PAGE)?;
        let full = page.len() == PAGE;
        for (k, _) in page {
            let cid = k
                .get(2..)
                .and_then(|b| Cid::try_from(b).ok())
                .ok_or_else(|| StoreError("gov: a corrupt collective key".into()))?;
            out.push(cid);
            after = Some(k);
        }
        if !full {
            return Ok(out);
        }
    }
}

macro_rules! op_store {
    ($t:ty) => {
        impl guild_gov::OpStore for $t {
            type Error = StoreError;

            fn append_ops(&self, collective: &Cid, ops: &[(Cid, &[u8])]) -> Result<(), StoreError> {
                append(self, collective, ops)
            }

            fn stored_ops(&self, collective: &Cid) -> Result<Vec<Vec<u8>>, StoreError> {
                stored(self, collective)
            }

            fn collectives(&self) -> Result<Vec<Cid>, StoreError> {
                collectives(self)
            }

            fn stored_op_count(&self, collective: &Cid) -> Result<usize, StoreError> {
                count(self, collective)
            }

            fn stored_ops_page(
                &self,
                collective: &Cid,
                from: usize,
                max: usize,
            ) -> Result<Vec<Vec<u8>>, StoreError> {
                page(self, collective, from, max)
            }

            fn stored_op(&self, collective: &Cid, id: &Cid) -> Result<Option<Vec<u8>>, StoreError> {
                one(self, collective, id)
            }
        }
    };
}

op_store!(SledStore);
op_store!(MemoryStore);
