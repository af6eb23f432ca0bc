//! The sled store's governance ops: records in one file per collective, indexed in the
//! `gov-index` tree (layout, commit and migration in the parent module's docs).
//!
//! Records are read and written at offsets (`FileExt`: Unix), so readers share one handle.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError};

use cid::Cid;
use guild_repo::{Bytes, StoreError};

use super::{TREE as OLD, collective_key, u64_of};
use crate::{KvOp, KvStore, SledStore};

/// The directory of the op files, in the store's directory.
const DIR: &str = "gov-ops";
/// The first bytes of an op file.
const MAGIC: &[u8; 8] = b"guildop1";
/// Where the first record starts.
const START: u64 = MAGIC.len() as u64;
/// A record's length and CRC before its bytes.
const RECORD_HEAD: usize = 8;
/// Every how many ops a `p` key records a record's offset.
const STRIDE: u64 = 256;
/// The tree of the op files' index (the `gov` tree held the ops themselves before).
pub(super) const INDEX: &str = "gov-index";
/// The layout version in the `v` key.
const FORMAT_KEY: &[u8] = b"v";
const FORMAT: u8 = 3;
/// How many bytes a page read asks the file for at a time.
const READ_CHUNK: usize = 1 << 20;
/// How many ops a migration moves per batch.
const MIGRATE_CHUNK: usize = 4096;

fn io(what: impl std::fmt::Display, e: std::io::Error) -> StoreError {
    StoreError(format!("gov: {what}: {e}"))
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError(format!("gov: corrupt op store: {what}"))
}

fn path_of(store: &SledStore, collective: &Cid) -> PathBuf {
    store.path().join(DIR).join(format!("{collective}.ops"))
}

/// The key of an op's index entry before op files (`i` ‖ collective ‖ op id bytes).
fn old_id_key(collective: &Cid, id: &Cid) -> Vec<u8> {
    let mut k = collective_key(b'i', collective);
    k.extend_from_slice(&id.to_bytes());
    k
}

/// The key of the bucket that holds an op id's index entry: `b` ‖ collective ‖ the id's last
/// two bytes (its digest's, for the SHA-256 CIDs ops have). A million ops make 65 536 sled
/// keys of ~15 entries each rather than a million keys: sled's memory grows with its keys.
fn bucket_key(collective: &Cid, id: &[u8]) -> Vec<u8> {
    let mut k = collective_key(b'b', collective);
    let [.., a, b] = id else {
        k.extend_from_slice(id);
        return k;
    };
    k.extend_from_slice(&[*a, *b]);
    k
}

/// An index entry of a bucket: the id's length (one byte), the id's bytes, where its record
/// is ([`Located`], 20 bytes). `None` if the bucket has no entry for `id`.
fn find_in_bucket(bucket: &[u8], id: &[u8]) -> Result<Option<Located>, StoreError> {
    let mut rest = bucket;
    while let Some((&len, after)) = rest.split_first() {
        let len = usize::from(len);
        let (Some(entry_id), Some(at), Some(next)) = (
            after.get(..len),
            after.get(len..len + LOCATED),
            after.get(len + LOCATED..),
        ) else {
            return Err(corrupt("a truncated index bucket"));
        };
        if entry_id == id {
            return Located::decode(at).map(Some);
        }
        rest = next;
    }
    Ok(None)
}

/// The index buckets an append or a migration batch changes, read from the store once each.
struct Buckets<'s> {
    store: &'s SledStore,
    collective: Cid,
    changed: HashMap<Vec<u8>, Vec<u8>>,
}

impl<'s> Buckets<'s> {
    fn new(store: &'s SledStore, collective: &Cid) -> Buckets<'s> {
        Buckets {
            store,
            collective: *collective,
            changed: HashMap::new(),
        }
    }

    fn bucket(&mut self, id: &[u8]) -> Result<&mut Vec<u8>, StoreError> {
        let key = bucket_key(&self.collective, id);
        if !self.changed.contains_key(&key) {
            // No bucket yet: no op id ends so.
            let stored = match self.store.kv_get(INDEX, &key)? {
                Some(b) => b.to_vec(),
                None => Vec::new(),
            };
            self.changed.insert(key.clone(), stored);
        }
        self.changed
            .get_mut(&key)
            .ok_or_else(|| StoreError("gov: an index bucket vanished".into()))
    }

    fn contains(&mut self, id: &[u8]) -> Result<bool, StoreError> {
        Ok(find_in_bucket(self.bucket(id)?, id)?.is_some())
    }

    fn add(&mut self, id: &[u8], at: &Located) -> Result<(), StoreError> {
        let len = u8::try_from(id.len())
            .map_err(|_| StoreError("gov: an op id of 256 bytes or more".into()))?;
        let bucket = self.bucket(id)?;
        bucket.push(len);
        bucket.extend_from_slice(id);
        at.write(bucket);
        Ok(())
    }

    fn into_batch(self, batch: &mut Vec<KvOp>) {
        batch.extend(
            self.changed
                .into_iter()
                .map(|(k, v)| KvOp::Put(k, Bytes::from(v))),
        );
    }
}

fn page_key(collective: &Cid, stride: u64) -> Vec<u8> {
    let mut k = collective_key(b'p', collective);
    k.extend_from_slice(&stride.to_be_bytes());
    k
}

fn two_u64(count: u64, end: u64) -> Bytes {
    let mut v = Vec::with_capacity(16);
    v.extend_from_slice(&count.to_be_bytes());
    v.extend_from_slice(&end.to_be_bytes());
    Bytes::from(v)
}

fn parse_two_u64(v: &[u8], what: &str) -> Result<(u64, u64), StoreError> {
    match (v.get(..8), v.get(8..16), v.len()) {
        (Some(a), Some(b), 16) => Ok((u64_of(a)?, u64_of(b)?)),
        _ => Err(corrupt(format_args!("{what} is {} bytes, not 16", v.len()))),
    }
}

/// Where an op's record is: its sequence number, offset and length.
struct Located {
    seq: u64,
    offset: u64,
    len: u32,
}

/// A [`Located`]'s size in a bucket entry.
const LOCATED: usize = 20;

impl Located {
    fn write(&self, v: &mut Vec<u8>) {
        v.extend_from_slice(&self.seq.to_be_bytes());
        v.extend_from_slice(&self.offset.to_be_bytes());
        v.extend_from_slice(&self.len.to_be_bytes());
    }

    fn decode(v: &[u8]) -> Result<Located, StoreError> {
        let (Some(seq), Some(offset), Some(len), 20) =
            (v.get(..8), v.get(8..16), v.get(16..20), v.len())
        else {
            return Err(corrupt(format_args!(
                "an op's index entry is {} bytes, not 20",
                v.len()
            )));
        };
        let len: [u8; 4] = len.try_into().map_err(|_| corrupt("an op's index entry"))?;
        Ok(Located {
            seq: u64_of(seq)?,
            offset: u64_of(offset)?,
            len: u32::from_be_bytes(len),
        })
    }
}

/// How many of the collective's ops are committed, and where their records end.
pub(super) fn committed(store: &SledStore, collective: &Cid) -> Result<(u64, u64), StoreError> {
    match store.kv_get(INDEX, &collective_key(b'n', collective))? {
        Some(v) => parse_two_u64(&v, "an op count"),
        None => Ok((0, START)),
    }
}

/// The collective's op file, opened once per store and kept; created (with its magic,
/// synced, and the directory synced) only if `create`.
fn file(
    store: &SledStore,
    collective: &Cid,
    create: bool,
) -> Result<Option<Arc<File>>, StoreError> {
    let mut files = store
        .shared()
        .op_files
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(f) = files.get(collective) {
        return Ok(Some(Arc::clone(f)));
    }
    let path = path_of(store, collective);
    let shown = path.display().to_string();
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(&path);
    let f = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = store.path().join(DIR);
            std::fs::create_dir_all(&dir)
                .map_err(|e| io(format_args!("create {}", dir.display()), e))?;
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| io(format_args!("open {shown}"), e))?
        }
        Err(e) => return Err(io(format_args!("open {shown}"), e)),
    };
    let len = f
        .metadata()
        .map_err(|e| io(format_args!("read {shown}"), e))?
        .len();
    if len == 0 {
        // New (or created by an append that stopped before its magic was synced).
        f.write_all_at(MAGIC, 0)
            .and_then(|()| f.sync_all())
            .map_err(|e| io(format_args!("write {shown}"), e))?;
        if let Ok(dir) = File::open(store.path().join(DIR)) {
            dir.sync_all()
                .map_err(|e| io(format_args!("sync the directory of {shown}"), e))?;
        }
    } else {
        let mut magic = [0u8; 8];
        f.read_exact_at(&mut magic, 0)
            .map_err(|e| io(format_args!("read {shown}"), e))?;
        if &magic != MAGIC {
            return Err(corrupt(format_args!("{shown} is not an op file")));
        }
    }
    let f = Arc::new(f);
    files.insert(*collective, Arc::clone(&f));
    Ok(Some(f))
}

/// Appends records for `ops` (id bytes and op bytes, with their sequence numbers from
/// `count`) to `buf`, which will be written at `end`; adds each op's index entry to
/// `buckets` and pushes the `p` keys to `batch`.
fn add_records<'a>(
    collective: &Cid,
    ops: impl IntoIterator<Item = (Vec<u8>, &'a [u8])>,
    count: &mut u64,
    end: u64,
    buf: &mut Vec<u8>,
    buckets: &mut Buckets<'_>,
    batch: &mut Vec<KvOp>,
) -> Result<(), StoreError> {
    for (id, bytes) in ops {
        let len = u32::try_from(bytes.len())
            .map_err(|_| StoreError("gov: an op of 4 GiB or more".into()))?;
        let offset = end + buf.len() as u64;
        if count.is_multiple_of(STRIDE) {
            batch.push(KvOp::Put(
                page_key(collective, *count / STRIDE),
                Bytes::copy_from_slice(&offset.to_be_bytes()),
            ));
        }
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(&crc32fast::hash(bytes).to_le_bytes());
        buf.extend_from_slice(bytes);
        buckets.add(
            &id,
            &Located {
                seq: *count,
                offset,
                len,
            },
        )?;
        *count += 1;
    }
    Ok(())
}

/// Writes the records of `ops` at `end` of the collective's file and syncs it; pushes their
/// index buckets and `p` keys to `batch` (for the caller to commit) and returns the new end.
fn write_records(
    store: &SledStore,
    collective: &Cid,
    ops: Vec<(Vec<u8>, &[u8])>,
    count: &mut u64,
    end: u64,
    mut buckets: Buckets<'_>,
    batch: &mut Vec<KvOp>,
) -> Result<u64, StoreError> {
    let mut buf = Vec::with_capacity(ops.iter().map(|(_, b)| b.len() + RECORD_HEAD).sum());
    add_records(collective, ops, count, end, &mut buf, &mut buckets, batch)?;
    buckets.into_batch(batch);
    write_synced(store, collective, &buf, end)?;
    Ok(end + buf.len() as u64)
}

/// Writes `buf` at `end` of the collective's file and syncs it.
fn write_synced(
    store: &SledStore,
    collective: &Cid,
    buf: &[u8],
    end: u64,
) -> Result<(), StoreError> {
    let f = file(store, collective, true)?
        .ok_or_else(|| StoreError("gov: the op file was not created".into()))?;
    let shown = || path_of(store, collective).display().to_string();
    f.write_all_at(buf, end)
        .map_err(|e| io(format_args!("write {}", shown()), e))?;
    f.sync_data()
        .map_err(|e| io(format_args!("sync {}", shown()), e))
}

pub(super) fn append(
    store: &SledStore,
    collective: &Cid,
    ops: &[(Cid, &[u8])],
) -> Result<(), StoreError> {
    let _one_at_a_time = store
        .shared()
        .op_append
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let (mut count, end) = committed(store, collective)?;
    let first = count == 0;
    let mut buckets = Buckets::new(store, collective);
    let mut seen = HashSet::new();
    let mut new = Vec::with_capacity(ops.len());
    for (id, bytes) in ops {
        let id = id.to_bytes();
        if seen.contains(&id) || buckets.contains(&id)? {
            continue;
        }
        seen.insert(id.clone());
        new.push((id, *bytes));
    }
    if new.is_empty() {
        return Ok(());
    }
    let mut batch = Vec::with_capacity(new.len() / 8 + 8);
    let end = write_records(store, collective, new, &mut count, end, buckets, &mut batch)?;
    batch.push(KvOp::Put(
        collective_key(b'n', collective),
        two_u64(count, end),
    ));
    if first {
        // The layout's version, with the first ops of any collective.
        batch.push(KvOp::Put(
            FORMAT_KEY.to_vec(),
            Bytes::from_static(&[FORMAT]),
        ));
    }
    store.kv_apply(INDEX, &batch)
}

/// Reads records forward from an offset, a chunk of the file at a time, never past `end`.
struct Records<'f> {
    file: &'f File,
    end: u64,
    buf: Vec<u8>,
    pos: usize,
    /// The file offset of `buf[pos]`.
    at: u64,
}

impl Records<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], StoreError> {
        let have = self.buf.len() - self.pos;
        if have < n {
            self.buf.drain(..self.pos);
            self.pos = 0;
            let from = self.at + have as u64;
            let want = (n.max(READ_CHUNK) - have) as u64;
            let more = want.min(self.end.saturating_sub(from));
            if (have as u64) + more < n as u64 {
                return Err(corrupt(format_args!(
                    "a record at offset {} runs past the committed end {}",
                    self.at, self.end
                )));
            }
            let old = self.buf.len();
            self.buf.resize(old + more as usize, 0);
            self.file
                .read_exact_at(&mut self.buf[old..], from)
                .map_err(|e| io("read the op file", e))?;
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        self.at += n as u64;
        Ok(out)
    }

    /// The next record's bytes, checked.
    fn next_record(&mut self) -> Result<Vec<u8>, StoreError> {
        let at = self.at;
        let head: [u8; RECORD_HEAD] = self
            .take(RECORD_HEAD)?
            .try_into()
            .map_err(|_| corrupt("a record head"))?;
        let [l0, l1, l2, l3, c0, c1, c2, c3] = head;
        let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
        let crc = u32::from_le_bytes([c0, c1, c2, c3]);
        let bytes = self.take(len)?.to_vec();
        if crc32fast::hash(&bytes) != crc {
            return Err(corrupt(format_args!(
                "the record at offset {at} fails its CRC"
            )));
        }
        Ok(bytes)
    }
}

/// Up to `max` committed ops of the collective from sequence number `from`, in order.
pub(super) fn page(
    store: &SledStore,
    collective: &Cid,
    from: usize,
    max: usize,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let (count, end) = committed(store, collective)?;
    let from = from as u64;
    if from >= count || max == 0 {
        return Ok(Vec::new());
    }
    let take = (count - from).min(max as u64);
    let base = from / STRIDE;
    let offset = match store.kv_get(INDEX, &page_key(collective, base))? {
        Some(v) => u64_of(&v)?,
        None => return Err(corrupt(format_args!("no offset for op {}", base * STRIDE))),
    };
    let f = file(store, collective, false)?.ok_or_else(|| {
        corrupt(format_args!(
            "{} ops are committed but their file is missing",
            count
        ))
    })?;
    let mut records = Records {
        file: &f,
        end,
        buf: Vec::new(),
        pos: 0,
        at: offset,
    };
    for _ in base * STRIDE..from {
        records.next_record()?;
    }
    let mut out = Vec::with_capacity(usize::try_from(take).unwrap_or(0).min(1 << 16));
    for _ in 0..take {
        out.push(records.next_record()?);
    }
    Ok(out)
}

/// One committed op by id.
pub(super) fn one(
    store: &SledStore,
    collective: &Cid,
    id: &Cid,
) -> Result<Option<Vec<u8>>, StoreError> {
    let id_bytes = id.to_bytes();
    let Some(bucket) = store.kv_get(INDEX, &bucket_key(collective, &id_bytes))? else {
        return Ok(None);
    };
    let Some(at) = find_in_bucket(&bucket, &id_bytes)? else {
        return Ok(None);
    };
    let (_, end) = committed(store, collective)?;
    if at
        .offset
        .saturating_add(RECORD_HEAD as u64 + u64::from(at.len))
        > end
    {
        return Err(corrupt(format_args!(
            "op {id} is indexed past the committed end {end}"
        )));
    }
    let f = file(store, collective, false)?
        .ok_or_else(|| corrupt(format_args!("op {id} is indexed but its file is missing")))?;
    // Reads exactly the indexed record.
    let mut records = Records {
        file: &f,
        end: at.offset + RECORD_HEAD as u64 + u64::from(at.len),
        buf: Vec::new(),
        pos: 0,
        at: at.offset,
    };
    let bytes = records
        .next_record()
        .map_err(|e| StoreError(format!("op {id} (sequence {}): {}", at.seq, e.0)))?;
    if bytes.len() != at.len as usize {
        return Err(corrupt(format_args!(
            "op {id}'s record is not the indexed length"
        )));
    }
    Ok(Some(bytes))
}

/// Moves ops stored with the old layout (the `gov` tree) into op files indexed in the
/// `gov-index` tree, then drops the old tree (see the parent module's docs).
pub(super) fn migrate(store: &SledStore) -> Result<(), StoreError> {
    match store.kv_get(INDEX, FORMAT_KEY)?.as_deref() {
        Some([FORMAT]) => {
            // Migrated; the old tree may outlive a migration cut short after its end.
            return store.drop_kv_tree(OLD).map(drop);
        }
        Some(other) => {
            return Err(corrupt(format_args!("an unknown layout version {other:?}")));
        }
        None => {}
    }
    if store.kv_get(OLD, FORMAT_KEY)?.is_some() {
        return Err(corrupt(
            "op files indexed by a development build (layout 2): move the store aside and \
             let the node fetch its collectives' logs from peers again",
        ));
    }
    if store.kv_scan(OLD, b"", None, 1)?.is_empty() {
        // No governance ops in the old layout: nothing to move.
        return Ok(());
    }
    for collective in super::collectives(store, OLD)? {
        migrate_collective(store, &collective)?;
    }
    store.kv_apply(
        INDEX,
        &[KvOp::Put(
            FORMAT_KEY.to_vec(),
            Bytes::from_static(&[FORMAT]),
        )],
    )?;
    // Dropping the whole tree frees its pages: removing its keys one by one would leave
    // sled's emptied nodes (and their memory at every open) behind.
    store.drop_kv_tree(OLD).map(drop)
}

/// Moves one collective's ops from the old tree; resumes from its progress key.
fn migrate_collective(store: &SledStore, collective: &Cid) -> Result<(), StoreError> {
    let next_key = collective_key(b'n', collective);
    if store.kv_get(INDEX, &next_key)?.is_some() {
        return Ok(());
    }
    let Some(next) = store.kv_get(OLD, &next_key)? else {
        return Ok(());
    };
    let total = u64_of(&next)?;
    let progress_key = collective_key(b'm', collective);
    let (mut count, mut end) = match store.kv_get(INDEX, &progress_key)? {
        Some(v) => parse_two_u64(&v, "a migration's progress")?,
        None => (0, START),
    };
    tracing::info!(%collective, ops = total, from = count, "moving governance ops out of sled into their op file");
    let prefix = collective_key(b'o', collective);
    let id_prefix_len = collective_key(b'i', collective).len();
    // Ids by sequence number, read from the old index only if an op's id is not the CID of
    // its bytes (never, for ops a log saved).
    let mut ids: Option<HashMap<u64, Vec<u8>>> = None;
    while count < total {
        let after = count.checked_sub(1).map(|before| {
            let mut k = prefix.clone();
            k.extend_from_slice(&before.to_be_bytes());
            k
        });
        let old = store.kv_scan(OLD, &prefix, after.as_deref(), MIGRATE_CHUNK)?;
        if old.is_empty() {
            return Err(corrupt(format_args!(
                "{total} ops counted for {collective}, only {count} stored"
            )));
        }
        let mut keyed = Vec::with_capacity(old.len());
        for (i, (k, bytes)) in old.iter().enumerate() {
            let seq = count + i as u64;
            if k.get(prefix.len()..) != Some(&seq.to_be_bytes()[..]) {
                return Err(corrupt(format_args!("op {seq} of {collective} is missing")));
            }
            let guess = old_id_key(collective, &guild_core::cids::cid_for_cbor(bytes));
            let indexed = store.kv_get(OLD, &guess)?;
            let old_key = if indexed.as_deref() == Some(&seq.to_be_bytes()[..]) {
                guess
            } else {
                let ids = match &mut ids {
                    Some(ids) => ids,
                    None => ids.insert(old_ids(store, collective)?),
                };
                ids.remove(&seq).ok_or_else(|| {
                    corrupt(format_args!("op {seq} of {collective} is not indexed"))
                })?
            };
            let id = old_key
                .get(id_prefix_len..)
                .ok_or_else(|| corrupt("a short index key"))?
                .to_vec();
            keyed.push((id, bytes.as_ref()));
        }
        let mut batch = Vec::new();
        let buckets = Buckets::new(store, collective);
        end = write_records(
            store, collective, keyed, &mut count, end, buckets, &mut batch,
        )?;
        batch.push(KvOp::Put(progress_key.clone(), two_u64(count, end)));
        store.kv_apply(INDEX, &batch)?;
    }
    store.kv_apply(
        INDEX,
        &[
            KvOp::Put(next_key, two_u64(count, end)),
            KvOp::Delete(progress_key),
        ],
    )
}

/// The old index of a collective's ops: sequence number → index key.
fn old_ids(store: &SledStore, collective: &Cid) -> Result<HashMap<u64, Vec<u8>>, StoreError> {
    let mut out = HashMap::new();
    super::scan_all(store, OLD, &collective_key(b'i', collective), |k, v| {
        if v.len() == 8 {
            out.insert(u64_of(&v)?, k.to_vec());
        }
        Ok(())
    })?;
    Ok(out)
}
