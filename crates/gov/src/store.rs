//! What the log needs from persistence. `guild-store` implements [`OpStore`] on sled and in
//! memory; this crate never touches a disk itself.

use std::sync::Arc;

use bytes::Bytes;
use guild_core::Cid;

use crate::log::{DEFAULT_DECODED_KEPT, LOAD_CHUNK, Log, decode_cached};
use crate::op::SignedOp;

/// Durable storage of collectives' accepted ops.
pub trait OpStore {
    /// The store's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Appends accepted ops of a collective as `(id, signed bytes)`, parents before children,
    /// atomically and durably. An op already stored is skipped.
    fn append_ops(&self, collective: &Cid, ops: &[(Cid, &[u8])]) -> Result<(), Self::Error>;

    /// [`OpStore::append_ops`] of shared buffers, which a store may keep without copying them
    /// (the in-memory store does; a store on disk writes them and lets go). [`Log::save`]
    /// appends through this, with the bytes its decoded ops hold.
    fn append_shared(&self, collective: &Cid, ops: &[(Cid, Bytes)]) -> Result<(), Self::Error> {
        let refs: Vec<(Cid, &[u8])> = ops.iter().map(|(id, b)| (*id, &b[..])).collect();
        self.append_ops(collective, &refs)
    }

    /// Every op stored for the collective, in the order appended (parents first).
    fn stored_ops(&self, collective: &Cid) -> Result<Vec<Vec<u8>>, Self::Error>;

    /// The collectives that have stored ops.
    fn collectives(&self) -> Result<Vec<Cid>, Self::Error>;

    /// How many ops are stored for the collective. [`Log::open`] places its checkpoints by
    /// it; a wrong count costs time, not correctness.
    fn stored_op_count(&self, collective: &Cid) -> Result<usize, Self::Error> {
        Ok(self.stored_ops(collective)?.len())
    }

    /// Up to `max` of the collective's stored ops, skipping the first `from`, in the order
    /// appended: [`Log::open`] reads the store a page at a time while it loads. Fewer than
    /// `max` (none at the end) only when no more are stored.
    fn stored_ops_page(
        &self,
        collective: &Cid,
        from: usize,
        max: usize,
    ) -> Result<Vec<Vec<u8>>, Self::Error> {
        let mut ops = self.stored_ops(collective)?;
        ops.truncate(from.saturating_add(max));
        Ok(ops.split_off(from.min(ops.len())))
    }

    /// The signed bytes of one stored op of the collective, by id (`None` if it is not
    /// stored): a log reads back the older ops it does not keep in memory ([`StoreReader`]).
    /// The default scans every stored op; stores index their ops by id.
    fn stored_op(&self, collective: &Cid, id: &Cid) -> Result<Option<Vec<u8>>, Self::Error> {
        Ok(self
            .stored_ops(collective)?
            .into_iter()
            .find(|bytes| guild_core::cids::cid_for_cbor(bytes) == *id))
    }
}

/// Where a log reads back the signed bytes of the older ops it does not keep in memory once
/// they are stored (see [`crate::log::DEFAULT_DECODED_KEPT`]): the node's own store, through
/// [`StoreReader`].
pub trait OpReader: Send + Sync {
    /// The signed bytes of a stored op of the collective; `Ok(None)` if it is not stored.
    fn read_op(&self, collective: &Cid, id: &Cid) -> Result<Option<Vec<u8>>, String>;
}

/// An [`OpStore`] shared with a log, as its [`OpReader`].
pub struct StoreReader<S: ?Sized>(pub Arc<S>);

impl<S: ?Sized> std::fmt::Debug for StoreReader<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreReader")
    }
}

impl<S: OpStore + Send + Sync + ?Sized> OpReader for StoreReader<S> {
    fn read_op(&self, collective: &Cid, id: &Cid) -> Result<Option<Vec<u8>>, String> {
        self.0.stored_op(collective, id).map_err(|e| e.to_string())
    }
}

/// A log's [`OpReader`], if it has one.
#[derive(Clone)]
pub(crate) struct Reader(pub(crate) Arc<dyn OpReader>);

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reader")
    }
}

/// A collective's stored ops a page at a time; the first error ends the pages and is kept.
struct Pages<'s, S: OpStore + ?Sized> {
    store: &'s S,
    collective: Cid,
    from: usize,
    page: usize,
    done: bool,
    error: Option<S::Error>,
}

impl<S: OpStore + ?Sized> Iterator for Pages<'_, S> {
    type Item = Vec<Vec<u8>>;

    fn next(&mut self) -> Option<Vec<Vec<u8>>> {
        if self.done {
            return None;
        }
        match self
            .store
            .stored_ops_page(&self.collective, self.from, self.page)
        {
            Ok(ops) => {
                self.done = ops.len() < self.page;
                self.from += ops.len();
                Some(ops).filter(|ops| !ops.is_empty())
            }
            Err(e) => {
                self.done = true;
                self.error = Some(e);
                None
            }
        }
    }
}

impl Log {
    /// Writes the ops accepted since the last save (or load) to `store`, in the order they were
    /// accepted. Returns how many. On error nothing is forgotten: the next save retries.
    pub fn save<S: OpStore + ?Sized>(&mut self, store: &S) -> Result<usize, S::Error> {
        let unsaved = self.unsaved();
        if unsaved.is_empty() {
            return Ok(0);
        }
        let ops: Vec<(Cid, Bytes)> = unsaved
            .iter()
            .filter_map(|id| self.shared_bytes_of(id).map(|bytes| (*id, bytes)))
            .collect();
        store.append_shared(self.collective(), &ops)?;
        let n = ops.len();
        self.mark_saved(n);
        Ok(n)
    }

    /// Opens a collective's log from `store` (ops this node verified when they arrived:
    /// see [`Log::load_trusted`]). A large log is read a page at a time while the previous
    /// page loads, so the reads overlap the load and the store's bytes are never all in
    /// memory at once.
    pub fn open<S: OpStore + Sync + ?Sized>(collective: Cid, store: &S) -> Result<Log, S::Error> {
        Log::open_with(collective, store, &SignedOp::decode_trusted, LOAD_CHUNK)
    }

    /// [`Log::open`] through a [`crate::driver::VerifyCache`] ([`Log::load_trusted_cached`]).
    pub fn open_cached<S: OpStore + Sync + ?Sized>(
        collective: Cid,
        store: &S,
        cache: &crate::driver::VerifyCache,
    ) -> Result<Log, S::Error> {
        Log::open_with(collective, store, &decode_cached(cache), LOAD_CHUNK)
    }

    /// [`Log::open_cached`] of a store the log keeps ([`Log::with_reader`]): the log holds
    /// only its recent ops in memory and reads older ones back from `store` when a fold or a
    /// caller needs them. What a node opens its logs with.
    pub fn open_shared<S: OpStore + Send + Sync + 'static>(
        collective: Cid,
        store: &Arc<S>,
        cache: &crate::driver::VerifyCache,
    ) -> Result<Log, S::Error> {
        let reader: Arc<dyn OpReader> = Arc::new(StoreReader(Arc::clone(store)));
        Log::open_reading(
            collective,
            &**store,
            &decode_cached(cache),
            LOAD_CHUNK,
            Some(Reader(reader)),
            DEFAULT_DECODED_KEPT,
        )
    }

    /// [`Log::open`] reading pages of `chunk` ops.
    pub(crate) fn open_with<S: OpStore + Sync + ?Sized>(
        collective: Cid,
        store: &S,
        decode: &(dyn Fn(&[u8]) -> Result<SignedOp, crate::op::OpError> + Sync),
        chunk: usize,
    ) -> Result<Log, S::Error> {
        Log::open_reading(collective, store, decode, chunk, None, DEFAULT_DECODED_KEPT)
    }

    /// [`Log::open_with`] reading stored ops back through `reader`, keeping `kept` decoded.
    pub(crate) fn open_reading<S: OpStore + Sync + ?Sized>(
        collective: Cid,
        store: &S,
        decode: &(dyn Fn(&[u8]) -> Result<SignedOp, crate::op::OpError> + Sync),
        chunk: usize,
        reader: Option<Reader>,
        kept: usize,
    ) -> Result<Log, S::Error> {
        let chunk = chunk.max(1);
        let total = store.stored_op_count(&collective)?;
        if total <= chunk {
            let ops = store.stored_ops(&collective)?;
            return Ok(Log::load_reading(
                collective,
                ops.iter().map(Vec::as_slice),
                decode,
                chunk,
                true,
                reader,
                kept,
            ));
        }
        let mut pages = Pages {
            store,
            collective,
            from: 0,
            page: chunk,
            done: false,
            error: None,
        };
        let log = Log::load_chunks(collective, total, &mut pages, decode, true, reader, kept);
        match pages.error {
            Some(e) => Err(e),
            None => Ok(log),
        }
    }
}
