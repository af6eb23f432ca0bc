//! The sled implementation (layout in the crate docs).

use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use cid::Cid;
use guild_core::syntax::Tid;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use crate::encoding::{
    collection_end, collection_prefix, decode_cid, decode_head, decode_index_suffix,
    decode_repo_key, decode_rkey, encode_head, hex, index_key, repo_key,
};
use crate::health::{Health, Unavailable};
use crate::{
    BlockSource, BlockStore, Bytes, CommitError, IndexOp, KvOp, KvStore, OpenError, RepoHead,
    RepoKey, RepoStore, SCHEMA_VERSION, StoreError,
};

const BLOCKS: &str = "blocks";
const HEADS: &str = "heads";
const INDEX: &str = "index";
const META: &str = "meta";
const KV_PREFIX: &str = "kv:";
const SCHEMA_KEY: &[u8] = b"schema_version";
const LAST_TID_KEY: &[u8] = b"last_tid";

/// The durable store: one sled database. Cloning gives another handle to the same database.
///
/// After an I/O error (a full disk, most often) sled refuses all work on the database for
/// good, so the store marks itself failed: every operation is refused with a message saying
/// so (and [`RepoStore::unavailable`] says why) until the store recovers by itself. At most
/// once a second, when it is used, it checks that the disk takes a write again (a probe file
/// of [`PROBE_BYTES`] in the store's directory, synced and removed) and then reopens the
/// database in place, for every clone: what was acknowledged (flushed) before the failure is
/// read back from disk; a write that failed was never acknowledged, and sled's recovery keeps
/// or drops each batch or transaction whole.
#[derive(Clone)]
pub struct SledStore {
    /// The page cache's size, kept for reopening.
    cache_bytes: u64,
    path: PathBuf,
    shared: Arc<Shared>,
}

/// What every clone of a store shares.
pub(crate) struct Shared {
    /// The database in use; `None` only after a failed database was closed and could not be
    /// reopened yet.
    open: RwLock<Option<Arc<Handles>>>,
    /// Whether the store is failed (a fast check of `health`).
    failed: AtomicBool,
    health: Mutex<Health>,
    /// The governance op files opened so far, by collective (see the `gov` module), and the
    /// lock that makes their appends one at a time.
    pub(crate) op_files: Mutex<std::collections::HashMap<Cid, Arc<std::fs::File>>>,
    pub(crate) op_append: Mutex<()>,
}

/// One opened database and its trees.
struct Handles {
    /// Which opening of the database (see [`Health`]).
    generation: u64,
    db: sled::Db,
    blocks: sled::Tree,
    heads: sled::Tree,
    index: sled::Tree,
    meta: sled::Tree,
}

/// The page cache of a personal node's store: 64 MiB (sled defaults to 1 GiB). The node's
/// `[store] cache_mib` sets another.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// The size of the probe file a failed store writes before it reopens its database: room for
/// sled to start a new log segment (512 KiB) and then some.
pub const PROBE_BYTES: usize = 1024 * 1024;

/// The probe file's name in the store's directory.
const PROBE_FILE: &str = "guild-space-probe.tmp";

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Renders a sled error as a [`StoreError`] saying what was being done.
fn render(what: impl fmt::Display, e: &sled::Error) -> StoreError {
    StoreError(format!("sled: {what}: {e}"))
}

/// Whether sled's error says the database lock is held (by another process, or by a store of
/// this process that is still winding down).
fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

impl SledStore {
    /// Opens (or creates) the store in the directory `path`: creates the trees, writes or
    /// checks the schema version, and checks that every repo head's commit block and MST root
    /// block are present. A store that another process holds open is [`OpenError::Locked`].
    pub fn open(path: &Path) -> Result<SledStore, OpenError> {
        SledStore::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// Like [`SledStore::open`], with a page cache of `cache_bytes` instead of
    /// [`DEFAULT_CACHE_BYTES`]: a steward's node assembling large bundles reads every block of
    /// its members' replicas, and each cache miss costs a page read and decode.
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<SledStore, OpenError> {
        let handles = open_handles(path, 0, cache_bytes)?;
        Ok(SledStore::over(path, handles, cache_bytes))
    }

    fn over(path: &Path, handles: Arc<Handles>, cache_bytes: u64) -> SledStore {
        SledStore {
            cache_bytes,
            path: path.to_owned(),
            shared: Arc::new(Shared {
                open: RwLock::new(Some(handles)),
                failed: AtomicBool::new(false),
                health: Mutex::new(Health::default()),
                op_files: Mutex::new(std::collections::HashMap::new()),
                op_append: Mutex::new(()),
            }),
        }
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Drops the key-value tree `tree` and all it holds, and flushes; false if there was no
    /// such tree.
    pub(crate) fn drop_kv_tree(&self, tree: &str) -> Result<bool, StoreError> {
        let h = self.h()?;
        let name = format!("{KV_PREFIX}{tree}");
        let dropped =
            h.db.drop_tree(name.as_bytes())
                .map_err(self.err(&h, format_args!("drop tree {name:?}")))?;
        if dropped {
            h.db.flush()
                .map_err(self.err(&h, format_args!("flush after dropping {name:?}")))?;
        }
        Ok(dropped)
    }

    /// What every clone of this store shares (the `gov` module's op files).
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Writes every buffered write to disk (fsync). Commits and KV writes already do this.
    pub fn flush(&self) -> Result<(), StoreError> {
        let h = self.h()?;
        h.db.flush().map_err(self.err(&h, "flush"))?;
        Ok(())
    }

    /// The database to work on, unless the store is failed and does not recover now.
    fn h(&self) -> Result<Arc<Handles>, StoreError> {
        if self.shared.failed.load(Ordering::Acquire) {
            self.recover()?;
        }
        self.shared
            .open
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| StoreError(format!("the store at {} is closed", self.path.display())))
    }

    /// Tries to recover a failed store, if an attempt is due; the refusal otherwise.
    fn recover(&self) -> Result<(), StoreError> {
        let mut health = self
            .shared
            .health
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match health.check(Instant::now(), |generation| self.reopen(generation)) {
            Ok(()) => {
                if self.shared.failed.swap(false, Ordering::AcqRel) {
                    tracing::warn!(path = %self.path.display(), "the store recovered: it can write again and reopened its database");
                }
                Ok(())
            }
            Err(u) => Err(StoreError(self.refusal(&u))),
        }
    }

    /// The message for a refused operation.
    fn refusal(&self, u: &Unavailable) -> String {
        let mut m = format!(
            "storage unavailable: the store at {} failed {} s ago ({}); it refuses reads and writes until the disk takes writes again (free some space), then recovers by itself within a second, losing nothing acknowledged",
            self.path.display(),
            u.for_secs,
            u.cause
        );
        if let Some(last) = &u.last_attempt {
            m.push_str(&format!("; last attempt: {last}"));
        }
        m
    }

    /// Checks that the disk takes a write, then closes the failed database and opens it again.
    fn reopen(&self, generation: u64) -> Result<(), String> {
        probe(&self.path).map_err(|e| {
            format!(
                "cannot write {PROBE_BYTES} bytes in {}: {e}",
                self.path.display()
            )
        })?;
        let mut open = self
            .shared
            .open
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // Its files close once the last operation still holding it lets go; opening waits
        // for the lock meanwhile.
        drop(open.take());
        let handles =
            open_handles(&self.path, generation, self.cache_bytes).map_err(|e| e.to_string())?;
        *open = Some(handles);
        Ok(())
    }

    /// Maps a sled error to a [`StoreError`] saying what was being done; an I/O error marks
    /// the store failed (see [`SledStore`]).
    fn err<'a>(
        &'a self,
        h: &'a Handles,
        what: impl fmt::Display + 'a,
    ) -> impl FnOnce(sled::Error) -> StoreError + 'a {
        move |e| {
            let rendered = render(what, &e);
            if let sled::Error::Io(io) = &e {
                let mut health = self
                    .shared
                    .health
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if health.fail(h.generation, io.to_string(), Instant::now()) {
                    self.shared.failed.store(true, Ordering::Release);
                    tracing::error!(path = %self.path.display(), error = %rendered, "the store failed; it refuses reads and writes until the disk takes writes again");
                }
            }
            rendered
        }
    }

    fn check_schema(&self) -> Result<(), OpenError> {
        let path = || self.path.clone();
        let h = self.h().map_err(|source| OpenError::Corrupt {
            path: path(),
            source,
        })?;
        let stored = h.meta.get(SCHEMA_KEY).map_err(|e| OpenError::Sled {
            path: path(),
            source: Box::new(e),
        })?;
        match stored {
            None => {
                h.meta
                    .insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())
                    .and_then(|_| h.db.flush())
                    .map_err(|e| OpenError::Sled {
                        path: path(),
                        source: Box::new(e),
                    })?;
                Ok(())
            }
            Some(v) => {
                let found = <[u8; 4]>::try_from(v.as_ref()).map(u32::from_be_bytes);
                match found {
                    Ok(SCHEMA_VERSION) => Ok(()),
                    Ok(other) => Err(OpenError::SchemaVersion {
                        path: path(),
                        found: other.to_string(),
                        expected: SCHEMA_VERSION,
                    }),
                    Err(_) => Err(OpenError::SchemaVersion {
                        path: path(),
                        found: format!("unreadable value {}", hex(&v)),
                        expected: SCHEMA_VERSION,
                    }),
                }
            }
        }
    }

    fn check_heads(&self) -> Result<(), OpenError> {
        let corrupt = |source: StoreError| OpenError::Corrupt {
            path: self.path.clone(),
            source,
        };
        for (repo, head) in self.repos().map_err(corrupt)? {
            for (what, cid) in [("commit", head.commit), ("MST root", head.data)] {
                if !self.has_block(&cid).map_err(corrupt)? {
                    return Err(OpenError::MissingBlock {
                        path: self.path.clone(),
                        repo: Box::new(repo),
                        what,
                        cid,
                    });
                }
            }
        }
        Ok(())
    }

    fn kv_tree(&self, h: &Handles, tree: &str) -> Result<sled::Tree, StoreError> {
        let name = format!("{KV_PREFIX}{tree}");
        h.db.open_tree(name.as_bytes())
            .map_err(self.err(h, format_args!("open tree {name:?}")))
    }

    /// The kv tree, or `None` if it was never written (reads do not create trees).
    fn existing_kv_tree(&self, h: &Handles, tree: &str) -> Result<Option<sled::Tree>, StoreError> {
        let name = format!("{KV_PREFIX}{tree}");
        if h.db.tree_names().iter().any(|n| n == name.as_bytes()) {
            self.kv_tree(h, tree).map(Some)
        } else {
            Ok(None)
        }
    }

    fn put_blocks_batch(&self, blocks: &[(Cid, Bytes)]) -> Result<(), StoreError> {
        let h = self.h()?;
        let mut batch = sled::Batch::default();
        for (cid, bytes) in blocks {
            batch.insert(cid.to_bytes(), bytes.as_ref());
        }
        h.blocks
            .apply_batch(batch)
            .map_err(self.err(&h, "write blocks"))
    }
}

/// Opens the database in `path` as opening number `generation` and checks it (see
/// [`SledStore::open`]).
fn open_handles(path: &Path, generation: u64, cache_bytes: u64) -> Result<Arc<Handles>, OpenError> {
    let sled_error = |source: sled::Error| OpenError::Sled {
        path: path.to_owned(),
        source: Box::new(source),
    };
    let config = sled::Config::new().path(path).cache_capacity(cache_bytes);
    // A store dropped a moment ago (in this process) may still hold the file lock while
    // sled's background threads wind down: retry a lock failure for up to two seconds.
    let started = Instant::now();
    let db = loop {
        match config.open() {
            Err(e) if is_lock_error(&e) => {
                if started.elapsed() >= Duration::from_secs(2) {
                    return Err(OpenError::Locked {
                        path: path.to_owned(),
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            other => break other.map_err(sled_error)?,
        }
    };
    let tree = |name: &str| db.open_tree(name).map_err(sled_error);
    let handles = Arc::new(Handles {
        generation,
        blocks: tree(BLOCKS)?,
        heads: tree(HEADS)?,
        index: tree(INDEX)?,
        meta: tree(META)?,
        db,
    });
    // Checked through a store of its own, so that an error here fails the opening, not a
    // store in use.
    let store = SledStore::over(path, handles.clone(), cache_bytes);
    store.check_schema()?;
    store.check_heads()?;
    crate::gov::migrate(&store).map_err(|source| OpenError::Corrupt {
        path: path.to_owned(),
        source,
    })?;
    Ok(handles)
}

/// Writes [`PROBE_BYTES`] to a probe file in `dir`, syncs it and removes it.
fn probe(dir: &Path) -> std::io::Result<()> {
    use std::io::Write as _;
    let path = dir.join(PROBE_FILE);
    let written = (|| {
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&vec![0u8; PROBE_BYTES])?;
        f.sync_all()
    })();
    let removed = std::fs::remove_file(&path);
    written?;
    removed
}

/// Why the commit transaction aborted.
enum Abort {
    Conflict {
        expected: Option<Cid>,
        actual: Option<Cid>,
    },
    Decode(StoreError),
}

/// Above this many blocks, a commit writes its blocks in a batch before the transaction.
const LARGE_COMMIT_BLOCKS: usize = 64;

impl RepoStore for SledStore {
    fn head(&self, repo: &RepoKey) -> Result<Option<RepoHead>, StoreError> {
        let h = self.h()?;
        let Some(v) = h
            .heads
            .get(repo_key(repo))
            .map_err(self.err(&h, format_args!("read head of {repo}")))?
        else {
            return Ok(None);
        };
        Ok(Some(decode_head(repo, &v)?.0))
    }

    fn repos(&self) -> Result<Vec<(RepoKey, RepoHead)>, StoreError> {
        let h = self.h()?;
        h.heads
            .iter()
            .map(|kv| {
                let (k, v) = kv.map_err(self.err(&h, "list heads"))?;
                let repo = decode_repo_key(&k)?;
                let (head, _) = decode_head(&repo, &v)?;
                Ok((repo, head))
            })
            .collect()
    }

    fn commit(
        &self,
        repo: &RepoKey,
        expected: Option<&Cid>,
        new_head: &RepoHead,
        blocks: &[(Cid, Bytes)],
        index: &[IndexOp],
    ) -> Result<(), CommitError> {
        let h = self.h()?;
        // Blocks go into the same transaction as the head and index: each sled batch or
        // transaction costs two log-buffer writes and syncs (`pin_log` rolls the buffer before
        // and after its reservation), so a separate block batch would double the commit's I/O.
        // Prepared outside the closure, which sled may run more than once.
        let block_kvs: Vec<(Vec<u8>, sled::IVec)> = blocks
            .iter()
            .map(|(cid, bytes)| (cid.to_bytes(), sled::IVec::from(bytes.as_ref())))
            .collect();
        let head_key = repo_key(repo);
        let keys: Vec<Vec<u8>> = index
            .iter()
            .map(|op| match op {
                IndexOp::Put {
                    collection, rkey, ..
                }
                | IndexOp::Delete { collection, rkey } => index_key(repo, collection, rkey),
            })
            .collect();
        // A large commit (an import batch) writes its blocks in one batch first: sled's
        // transactions apply writes one by one, and blocks are content-addressed, so an
        // orphan left by a crash or a lost compare-and-swap is harmless.
        let block_kvs = if block_kvs.len() > LARGE_COMMIT_BLOCKS {
            let mut batch = sled::Batch::default();
            for (k, v) in block_kvs {
                batch.insert(k, v);
            }
            h.blocks
                .apply_batch(batch)
                .map_err(|e| self.err(&h, format_args!("commit to {repo}: blocks"))(e))?;
            Vec::new()
        } else {
            block_kvs
        };
        let trees = (&h.heads, &h.index, &h.blocks);
        let result = trees.transaction(|(heads, idx, blks)| {
            let current = match heads.get(&head_key)? {
                Some(v) => Some(
                    decode_head(repo, &v)
                        .map_err(|e| ConflictableTransactionError::Abort(Abort::Decode(e)))?,
                ),
                None => None,
            };
            let actual = current.as_ref().map(|(h, _)| h.commit);
            if actual.as_ref() != expected {
                return Err(ConflictableTransactionError::Abort(Abort::Conflict {
                    expected: expected.copied(),
                    actual,
                }));
            }
            let mut count = current.map_or(0, |(_, n)| n);
            for (op, key) in index.iter().zip(&keys) {
                match op {
                    IndexOp::Put { cid, .. } => {
                        if idx.insert(key.as_slice(), cid.to_bytes())?.is_none() {
                            count += 1;
                        }
                    }
                    IndexOp::Delete { .. } => {
                        if idx.remove(key.as_slice())?.is_some() {
                            count = count.saturating_sub(1);
                        }
                    }
                }
            }
            let record = encode_head(new_head, count)
                .map_err(|e| ConflictableTransactionError::Abort(Abort::Decode(e)))?;
            heads.insert(head_key.as_slice(), record)?;
            for (k, v) in &block_kvs {
                blks.insert(k.as_slice(), v.clone())?;
            }
            Ok(())
        });
        match result {
            Ok(()) => {}
            Err(TransactionError::Abort(Abort::Conflict { expected, actual })) => {
                return Err(CommitError::Conflict { expected, actual });
            }
            Err(TransactionError::Abort(Abort::Decode(e))) => return Err(e.into()),
            Err(TransactionError::Storage(e)) => {
                return Err(self.err(&h, format_args!("commit to {repo}"))(e).into());
            }
        }
        h.db.flush()
            .map_err(self.err(&h, format_args!("flush commit to {repo}")))?;
        Ok(())
    }

    fn index_get(
        &self,
        repo: &RepoKey,
        collection: &str,
        rkey: &str,
    ) -> Result<Option<Cid>, StoreError> {
        let h = self.h()?;
        let what = || format!("index of {repo}: {collection}/{rkey}");
        let Some(v) = h
            .index
            .get(index_key(repo, collection, rkey))
            .map_err(|e| self.err(&h, what())(e))?
        else {
            return Ok(None);
        };
        decode_cid(&v, what).map(Some)
    }

    fn index_list(
        &self,
        repo: &RepoKey,
        collection: &str,
        cursor: Option<&str>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<(String, Cid)>, StoreError> {
        let h = self.h()?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let prefix = collection_prefix(repo, collection);
        let end = collection_end(&prefix);
        let at_cursor = |c: &str| {
            let mut k = prefix.clone();
            k.extend_from_slice(c.as_bytes());
            k
        };
        let range: (Bound<Vec<u8>>, Bound<Vec<u8>>) = match (cursor, reverse) {
            (None, _) => (Bound::Included(prefix.clone()), Bound::Excluded(end)),
            (Some(c), false) => (Bound::Excluded(at_cursor(c)), Bound::Excluded(end)),
            (Some(c), true) => (
                Bound::Included(prefix.clone()),
                Bound::Excluded(at_cursor(c)),
            ),
        };
        let iter = h.index.range(range);
        let iter: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> = if reverse {
            Box::new(iter.rev())
        } else {
            Box::new(iter)
        };
        iter.take(limit)
            .map(|kv| {
                let (k, v) =
                    kv.map_err(|e| self.err(&h, format!("index of {repo}: list {collection}"))(e))?;
                let rkey = decode_rkey(repo, &k[prefix.len()..])?;
                let cid = decode_cid(&v, || format!("index of {repo}: {collection}/{rkey}"))?;
                Ok((rkey, cid))
            })
            .collect()
    }

    fn collections(&self, repo: &RepoKey) -> Result<Vec<String>, StoreError> {
        let h = self.h()?;
        let prefix = repo_key(repo);
        let mut out = Vec::new();
        let mut from = prefix.clone();
        // One seek per collection: after finding one, jump past all of its keys.
        while let Some(kv) = h.index.range(from.clone()..).next() {
            let (k, _) = kv.map_err(self.err(&h, format_args!("collections of {repo}")))?;
            if !k.starts_with(&prefix) {
                break;
            }
            let (collection, _) = decode_index_suffix(&k[prefix.len()..])?;
            from = collection_end(&collection_prefix(repo, &collection));
            out.push(collection);
        }
        Ok(out)
    }

    fn record_count(&self, repo: &RepoKey) -> Result<u64, StoreError> {
        let h = self.h()?;
        let Some(v) = h
            .heads
            .get(repo_key(repo))
            .map_err(self.err(&h, format_args!("read head of {repo}")))?
        else {
            return Ok(0);
        };
        Ok(decode_head(repo, &v)?.1)
    }

    fn last_tid(&self) -> Result<Option<Tid>, StoreError> {
        let h = self.h()?;
        let Some(v) = h
            .meta
            .get(LAST_TID_KEY)
            .map_err(self.err(&h, "read the last TID"))?
        else {
            return Ok(None);
        };
        decode_tid(&v).map(Some)
    }

    fn set_last_tid(&self, tid: &Tid) -> Result<(), StoreError> {
        let h = self.h()?;
        loop {
            let old = h
                .meta
                .get(LAST_TID_KEY)
                .map_err(self.err(&h, "read the last TID"))?;
            if let Some(old) = &old
                && decode_tid(old)? >= *tid
            {
                return Ok(());
            }
            let swapped = h
                .meta
                .compare_and_swap(LAST_TID_KEY, old, Some(tid.as_str().as_bytes()))
                .map_err(self.err(&h, "write the last TID"))?;
            if swapped.is_ok() {
                return Ok(());
            }
        }
    }

    fn unavailable(&self) -> Option<String> {
        self.h().err().map(|e| e.0)
    }
}

fn decode_tid(bytes: &[u8]) -> Result<Tid, StoreError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| Tid::parse(s).ok())
        .ok_or_else(|| {
            StoreError(format!(
                "meta/last_tid is corrupt: {} is not a TID",
                hex(bytes)
            ))
        })
}

impl BlockSource for SledStore {
    fn get_block(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        let h = self.h()?;
        Ok(h.blocks
            .get(cid.to_bytes())
            .map_err(self.err(&h, format_args!("read block {cid}")))?
            .map(Bytes::from_owner))
    }

    fn has_block(&self, cid: &Cid) -> Result<bool, StoreError> {
        let h = self.h()?;
        h.blocks
            .contains_key(cid.to_bytes())
            .map_err(self.err(&h, format_args!("read block {cid}")))
    }
}

/// Stores the blocks in one batch and flushes: atomic and durable.
impl BlockStore for SledStore {
    fn put_blocks(&mut self, blocks: Vec<(Cid, Bytes)>) -> Result<(), StoreError> {
        (&*self).put_blocks(blocks)
    }
}

/// Stores the blocks in one batch and flushes: atomic and durable. Lets a
/// [`guild_repo::Repo`] work over a shared `&SledStore`.
impl BlockStore for &SledStore {
    fn put_blocks(&mut self, blocks: Vec<(Cid, Bytes)>) -> Result<(), StoreError> {
        self.put_blocks_batch(&blocks)?;
        self.flush()
    }
}

impl KvStore for SledStore {
    fn kv_get(&self, tree: &str, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        let h = self.h()?;
        let Some(t) = self.existing_kv_tree(&h, tree)? else {
            return Ok(None);
        };
        Ok(t.get(key)
            .map_err(self.err(&h, format_args!("kv:{tree}: read {}", hex(key))))?
            .map(Bytes::from_owner))
    }

    fn kv_apply(&self, tree: &str, ops: &[KvOp]) -> Result<(), StoreError> {
        let h = self.h()?;
        let t = self.kv_tree(&h, tree)?;
        let mut batch = sled::Batch::default();
        for op in ops {
            match op {
                KvOp::Put(k, v) => batch.insert(k.as_slice(), v.as_ref()),
                KvOp::Delete(k) => batch.remove(k.as_slice()),
            }
        }
        t.apply_batch(batch)
            .map_err(self.err(&h, format_args!("kv:{tree}: write")))?;
        h.db.flush()
            .map_err(self.err(&h, format_args!("kv:{tree}: flush")))?;
        Ok(())
    }

    fn kv_stage(&self, tree: &str, ops: &[KvOp]) -> Result<(), StoreError> {
        let h = self.h()?;
        let t = self.kv_tree(&h, tree)?;
        let mut batch = sled::Batch::default();
        for op in ops {
            match op {
                KvOp::Put(k, v) => batch.insert(k.as_slice(), v.as_ref()),
                KvOp::Delete(k) => batch.remove(k.as_slice()),
            }
        }
        t.apply_batch(batch)
            .map_err(self.err(&h, format_args!("kv:{tree}: write")))
    }

    fn kv_scan(
        &self,
        tree: &str,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Bytes)>, StoreError> {
        let h = self.h()?;
        let Some(t) = self.existing_kv_tree(&h, tree)? else {
            return Ok(Vec::new());
        };
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_vec()),
            _ => Bound::Included(prefix.to_vec()),
        };
        let mut out = Vec::new();
        for kv in t.range((start, Bound::Unbounded)) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = kv.map_err(self.err(&h, format_args!("kv:{tree}: scan")))?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), Bytes::from_owner(v)));
        }
        Ok(out)
    }
}
