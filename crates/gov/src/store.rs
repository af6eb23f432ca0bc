//! What the log needs from persistence. `guild-store` implements [`OpStore`] on sled and in
//! memory; this crate never touches a disk itself.

use guild_core::Cid;

use crate::log::Log;

/// Durable storage of collectives' accepted ops.
pub trait OpStore {
    /// The store's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Appends accepted ops of a collective as `(id, signed bytes)`, parents before children,
    /// atomically and durably. An op already stored is skipped.
    fn append_ops(&self, collective: &Cid, ops: &[(Cid, &[u8])]) -> Result<(), Self::Error>;

    /// Every op stored for the collective, in the order appended (parents first).
    fn stored_ops(&self, collective: &Cid) -> Result<Vec<Vec<u8>>, Self::Error>;

    /// The collectives that have stored ops.
    fn collectives(&self) -> Result<Vec<Cid>, Self::Error>;
}

impl Log {
    /// Writes the ops accepted since the last save (or load) to `store`, in the order they were
    /// accepted. Returns how many. On error nothing is forgotten: the next save retries.
    pub fn save<S: OpStore + ?Sized>(&mut self, store: &S) -> Result<usize, S::Error> {
        let unsaved = self.unsaved();
        if unsaved.is_empty() {
            return Ok(0);
        }
        let ops: Vec<(Cid, &[u8])> = unsaved
            .iter()
            .filter_map(|id| self.get(id).map(|op| (*id, op.bytes())))
            .collect();
        store.append_ops(self.collective(), &ops)?;
        let n = ops.len();
        self.mark_saved(n);
        Ok(n)
    }

    /// Opens a collective's log from `store` (ops this node verified when they arrived:
    /// see [`Log::load_trusted`]).
    pub fn open<S: OpStore + ?Sized>(collective: Cid, store: &S) -> Result<Log, S::Error> {
        let ops = store.stored_ops(&collective)?;
        Ok(Log::load_trusted(collective, ops.iter().map(Vec::as_slice)))
    }

    /// [`Log::open`] through a [`crate::driver::VerifyCache`] ([`Log::load_trusted_cached`]).
    pub fn open_cached<S: OpStore + ?Sized>(
        collective: Cid,
        store: &S,
        cache: &crate::driver::VerifyCache,
    ) -> Result<Log, S::Error> {
        let ops = store.stored_ops(&collective)?;
        Ok(Log::load_trusted_cached(
            collective,
            ops.iter().map(Vec::as_slice),
            cache,
        ))
    }
}
