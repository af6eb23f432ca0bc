//! The op log: a grow-only causal DAG of authorised ops, a bounded buffer of ops waiting for
//! their parents, and the state folded from any causal cut.
//!
//! # The order and the fold
//! The log keeps every op in one deterministic topological order: Kahn's algorithm taking, of
//! the ops whose parents are all placed, the one with the smallest CID bytes. The state of a
//! set of ops is the *fold* of that order: each op that is not suppressed (below) is applied
//! if [`State::authorize`] accepts it against the running state. The state at a causal cut
//! is the fold of the cut's ancestors; their order is the restriction of the whole order
//! (the ops outside a down-closed set never make one inside it ready), so it is the same
//! on every node and at every later time.
//!
//! A new op has no children yet, so inserting it moves no other op: it lands at the first
//! place after its last parent where the op already there has a larger CID. Only the fold
//! from that place on changes, so the log keeps checkpoints of the running state (cheap: the
//! state's maps are persistent) and refolds from the last one before the change. An op
//! that extends every head lands at the end and costs one authorise + apply.
//!
//! # Removal wins
//! A direct removal (a steward's remove op) *suppresses* every op of the removed member that
//! is neither in its causal past nor in its causal future: those ops are kept in the log
//! (they were authorised against their own past, and they are relayed), but the fold skips
//! them. Every removal suppresses, even one that is itself suppressed by a removal of its
//! author: when removals conflict, more is ignored rather than less.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustc_hash::{FxHashMap as HashMap, FxHashSet};

use guild_core::Cid;
use guild_core::syntax::Did;

use crate::body::OpBody;
use crate::op::{OpKind, SignedOp};
use crate::state::{Causal, Meta, Reason, State};
use crate::store::Reader;
use crate::table::{Digest, OpTable, Seq, op_digest};
use guild_core::chunked::Chunked;

/// A set of op ids (a fast, non-cryptographic hash: the ids are already hashes).
pub type CidSet = FxHashSet<Cid>;

/// How many ops wait for missing parents, by default (a catch-up receives thousands of ops
/// in chunks that may arrive out of order).
pub const DEFAULT_PENDING_LIMIT: usize = 16_384;

/// How many bytes of ops wait for missing parents, at most, whatever their count.
pub const MAX_PENDING_BYTES: usize = 64 << 20;

/// How long an op waits for missing parents, by default, in microseconds (one hour).
pub const DEFAULT_PENDING_TTL_MICROS: i64 = 3_600_000_000;

/// How many of the ops that entered the log last it keeps decoded, by default; the others
/// it keeps as their signed bytes only, with their parents and date (what walks of the DAG
/// read), and decodes again when a fold or a caller needs them. A running node's folds
/// touch recent ops (a concurrent op's past is folded from a checkpoint a few positions
/// back), so this bounds a large log's memory without slowing them; a decoded op takes about
/// as much memory again as its bytes. 4 096 (was 16 384 while a read back went through sled's
/// cache; an op file read is ~0.4 µs per op): ~16 MiB less for a large log, and still eight
/// times the spacing of the nearest sparse checkpoints (512 positions).
pub const DEFAULT_DECODED_KEPT: usize = 4_096;

/// How many rejected op ids the log remembers, so that a re-sent bad op is refused without
/// folding its past again. A rejection is final: it depends on the op's causal past only.
pub const REJECTED_MEMORY: usize = 4096;

/// How many stored ops [`Log::load`] decodes at a time, in parallel, while it inserts the
/// previous chunk.
pub(crate) const LOAD_CHUNK: usize = 4096;

/// Decoding an op of this node's store: the op `cache` holds, or the bytes decoded as
/// trusted ([`SignedOp::decode_trusted`]).
pub(crate) fn decode_cached(
    cache: &crate::driver::VerifyCache,
) -> impl Fn(&[u8]) -> Result<SignedOp, crate::op::OpError> + Sync + '_ {
    |bytes: &[u8]| match cache.get(&guild_core::cids::cid_for_cbor(bytes)) {
        Some(op) => Ok(op),
        None => SignedOp::decode_trusted(bytes),
    }
}

/// The facts of an op's past when it has none (most ops).
static NO_META: Meta = Meta {
    electorate: None,
    ballots: None,
    contributors: None,
    direct_removal: false,
};

/// The most op-map entries a load reserves from its count (a store's count is a hint).
const MAX_RESERVED_OPS: usize = 1 << 26;

/// A checkpoint of the running state every this many positions of the order. An op
/// concurrent with the last few ops (15 % of a busy collective's ops) is checked against
/// its past folded from the newest checkpoint inside that past, so the spacing bounds that
/// fold: at 64, replaying a 1 M-op history took 40 s; at 16, 27 s; at 8, 24 s; at 4, 24 s.
const CHECKPOINT_EVERY: usize = 8;

/// How many checkpoints are kept: the most recent [`DENSE_CHECKPOINTS`] at every
/// `CHECKPOINT_EVERY` positions, older ones sparse, [`SPARSE_PER_LEVEL`] at every
/// `CHECKPOINT_EVERY * SPARSE_EVERY` positions, as many at twice that spacing, and so on
/// (each checkpoint is a state that shares structure with the tip, but a state with large
/// maps diverges from it in most of their leaves within 64 ops). An op concurrent with `d`
/// ops then refolds at most about `2 d` positions, up to about
/// `CHECKPOINT_EVERY * SPARSE_EVERY * SPARSE_PER_LEVEL * (2^levels - 1)` (30 720 with 16
/// sparse checkpoints in 4 levels); one concurrent with more refolds the log from the start.
/// (64 checkpoints at one sparse spacing covered 28 672 positions and held ~60 MB more of a
/// 50 000-member state.)
const CHECKPOINTS_KEPT: usize = DENSE_CHECKPOINTS + 4 * SPARSE_PER_LEVEL;

/// How many sparse checkpoints are kept at each spacing (see [`CHECKPOINTS_KEPT`]).
const SPARSE_PER_LEVEL: usize = 4;

/// How many of the most recent checkpoints are kept at every `CHECKPOINT_EVERY` positions.
const DENSE_CHECKPOINTS: usize = 8;

/// Older checkpoints are kept at every `CHECKPOINT_EVERY * SPARSE_EVERY` positions.
const SPARSE_EVERY: usize = 64;

/// While a log loads from the node's own store, far from the end and from any op that asks
/// for the state of its past, a checkpoint is taken only every this many positions (a
/// multiple of `CHECKPOINT_EVERY * SPARSE_EVERY`).
const LOAD_FALLBACK_EVERY: usize = 65_536;

/// How many ops [`Reorder`] holds back while a log loads from the node's own store.
const REORDER_WINDOW: usize = 1024;

/// Puts ops that come in the order a node accepted them back in the log's order, within a
/// window of recent positions: each op is placed by the log's own rule (after its last parent
/// in the window, before the first later op with a greater digest), and the window's first op
/// leaves once it holds more than `window`. An op whose place is before the window (it is
/// concurrent with ops that already left) goes last in it; the log then places it itself
/// (and refolds). Pure: it only reorders, and every op that enters leaves exactly once.
pub(crate) struct Reorder {
    window: VecDeque<(Digest, SignedOp)>,
    size: usize,
}

impl Reorder {
    pub(crate) fn new(size: usize) -> Reorder {
        Reorder {
            window: VecDeque::new(),
            size,
        }
    }

    /// Takes a decoded chunk and returns the ops that leave the window meanwhile, in order
    /// (ops that did not decode are dropped: the log would leave them out anyway).
    pub(crate) fn feed(&mut self, ops: Vec<Option<SignedOp>>) -> Vec<Option<SignedOp>> {
        let mut out = Vec::with_capacity(ops.len());
        for op in ops.into_iter().flatten() {
            if self.size == 0 {
                out.push(Some(op));
                continue;
            }
            let digest = op_digest(op.id());
            let parents: Vec<Digest> = op.prev().iter().map(op_digest).collect();
            let after = self
                .window
                .iter()
                .rposition(|(d, _)| parents.contains(d))
                .map_or(0, |i| i + 1);
            let k = (after..self.window.len())
                .find(|&t| self.window[t].0 > digest)
                .unwrap_or(self.window.len());
            self.window.insert(k, (digest, op));
            while self.window.len() > self.size {
                if let Some((_, op)) = self.window.pop_front() {
                    out.push(Some(op));
                }
            }
        }
        out
    }

    /// The ops still in the window, in order.
    pub(crate) fn flush(&mut self) -> Vec<Option<SignedOp>> {
        self.window.drain(..).map(|(_, op)| Some(op)).collect()
    }
}

/// What [`Log::insert`] did with an op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// Authorised against its causal past and added.
    Applied,
    /// Some parents are unknown; the op waits in the pending buffer.
    Pending {
        /// The unknown parents.
        missing: Vec<Cid>,
    },
    /// Not authorised, or not valid; not added and not to be relayed.
    Rejected(Reason),
    /// Already in the log.
    Duplicate,
}

#[derive(Debug, Clone)]
struct Waiting {
    op: SignedOp,
    arrived_micros: i64,
}

#[derive(Debug, Clone)]
struct Entry {
    /// The op, decoded while it is among the last ops to enter the log (see
    /// [`DEFAULT_DECODED_KEPT`]), else its signed bytes.
    op: Held,
    /// Its parents' indexes: walks of the DAG read them without decoding the op.
    prev: Parents,
    /// Its `createdAt`, in microseconds since the epoch.
    created_micros: i64,
    /// Its index in the order (below [`Seq::MAX`], as the number of ops is).
    pos: Seq,
    /// The facts of its past the fold needs; `None` for the default (no facts), which is
    /// all but about one op in a thousand (boxed, so that the op map's buckets stay small).
    meta: Option<Box<Meta>>,
    /// Every op with an index ([`Seq`]: when it entered this log, a count of the ops before
    /// it; local, unlike `pos`, and never changed) below this is a strict ancestor of this op. An op that extends
    /// every head has its own `seq` (every op then in the log is in its past); another has
    /// its parents' greatest. It answers most [`Log::is_ancestor`] questions without a walk.
    floor: Seq,
}

/// An op's parents' indexes: in the entry for up to two (almost every op), else boxed. An
/// entry is 56 bytes instead of 72, and a million ops make no million small allocations.
#[derive(Debug, Clone)]
enum Parents {
    /// Up to two; [`NO_PARENT`] fills the unused places.
    Inline([Seq; 2]),
    /// Three or more.
    Boxed(Box<[Seq]>),
}

/// Whether a sparse checkpoint at position `at` stays, the newest being at `newest`: at an
/// age below `band = SPARSE_PER_LEVEL * sparse` every `sparse` positions, below `3 band` every
/// `2 sparse`, below `7 band` every `4 sparse`, and so on. A checkpoint that fails the rule
/// fails it at every later age (each spacing divides the next), so none is needed again.
fn sparse_kept(at: usize, newest: usize, sparse: usize) -> bool {
    let band = sparse.saturating_mul(SPARSE_PER_LEVEL).max(1);
    let level = (newest.saturating_sub(at) / band).saturating_add(1).ilog2();
    1usize
        .checked_shl(level)
        .and_then(|m| sparse.checked_mul(m))
        .and_then(|gap| at.checked_rem(gap))
        == Some(0)
}

/// Not an index: the log holds fewer than [`Seq::MAX`] ops ([`Reason::LogFull`]).
const NO_PARENT: Seq = Seq::MAX;

impl Parents {
    fn from_seqs(seqs: impl Iterator<Item = Seq>) -> Parents {
        let mut two = [NO_PARENT; 2];
        let mut more: Vec<Seq> = Vec::new();
        for (i, s) in seqs.enumerate() {
            match two.get_mut(i) {
                Some(place) => *place = s,
                None => {
                    if more.is_empty() {
                        more.extend_from_slice(&two);
                    }
                    more.push(s);
                }
            }
        }
        if more.is_empty() {
            Parents::Inline(two)
        } else {
            Parents::Boxed(more.into())
        }
    }

    fn as_slice(&self) -> &[Seq] {
        match self {
            Parents::Inline(two) => {
                let n = two.iter().take_while(|&&s| s != NO_PARENT).count();
                &two[..n]
            }
            Parents::Boxed(all) => all,
        }
    }

    fn iter(&self) -> std::slice::Iter<'_, Seq> {
        self.as_slice().iter()
    }
}

/// An op as the log holds it.
#[derive(Debug, Clone)]
enum Held {
    Decoded(SignedOp),
    /// Only the signed bytes, which this log accepted: decoding them again is
    /// [`SignedOp::decode_trusted`].
    // (Boxed twice: a thin pointer keeps `Held`, and so every entry, 8 bytes smaller.)
    #[allow(clippy::redundant_allocation)]
    Bytes(Box<Box<[u8]>>),
    /// Nothing: the op is in the node's store, read back through the log's [`Reader`].
    Stored,
}

/// How many times a log could not read back an op it had left in the store.
#[derive(Debug, Default)]
struct ReadFailures(AtomicU64);

impl Clone for ReadFailures {
    fn clone(&self) -> ReadFailures {
        ReadFailures(AtomicU64::new(self.0.load(Ordering::Relaxed)))
    }
}

/// The running state after the first `at` ops of the order.
#[derive(Debug, Clone)]
struct Checkpoint {
    at: usize,
    state: State,
    /// The maximal ops of that prefix.
    heads: Vec<Cid>,
}

/// A collective's op log.
#[derive(Debug, Clone)]
pub struct Log {
    collective: Cid,
    /// Every op in the log, by index ([`OpTable`]).
    ops: OpTable<Entry>,
    heads: BTreeSet<Cid>,
    /// Every op in the deterministic topological order, by index.
    order: Chunked<Seq>,
    /// Ops by author (for the removal rule), by index.
    by_author: HashMap<Did, Vec<Seq>>,
    /// Direct removals by the removed member's DID.
    removals: HashMap<String, Vec<Cid>>,
    /// Suppressed ops, each with the removals that suppress it.
    suppressed: HashMap<Cid, Vec<Cid>>,
    checkpoints: VecDeque<Checkpoint>,
    checkpoint_every: usize,
    checkpoints_kept: usize,
    /// The running state after the whole order.
    tip: State,
    pending: BTreeMap<u64, Waiting>,
    pending_index: HashMap<Cid, u64>,
    /// Pending ops by a parent they miss.
    waiting_on: HashMap<Cid, Vec<u64>>,
    next_seq: u64,
    pending_limit: usize,
    /// The signed bytes of the pending ops, in all.
    pending_bytes: usize,
    pending_ttl_micros: i64,
    released: Vec<Cid>,
    rejected: HashMap<Cid, Reason>,
    rejected_order: VecDeque<Cid>,
    /// Ops accepted since the last save, in the order accepted.
    unsaved: Vec<Cid>,
    /// How many ops entered this log (the next op's [`Entry::seq`]).
    entered: u64,
    /// While [`Log::load_with`] inserts (accepted ops are then not counted as unsaved: a
    /// load's log starts with none); `None` otherwise.
    loading: Option<Loading>,
    /// The ops kept decoded, in the order they entered (the oldest is the next to go back to
    /// bytes).
    decoded: VecDeque<Seq>,
    /// How many ops are kept decoded.
    decoded_kept: usize,
    /// The node's store, if the log has one to read stored ops back from: then an op that
    /// leaves the decoded ones and is stored is not kept in memory at all ([`Held::Stored`]).
    reader: Option<Reader>,
    /// Every op whose [`Entry::seq`] is below this is stored.
    saved_below: u64,
    read_failures: ReadFailures,
}

/// How a log being loaded inserts its ops.
#[derive(Debug, Clone, Default)]
struct Loading {
    /// The ops are this node's own store's ([`Log::load_trusted`]): the store holds only ops
    /// the log accepted, and acceptance depends on an op's past alone, so such an op is not
    /// checked against its past again unless the fold needs facts of that past
    /// ([`State::needs_past_meta`]). The fold still authorises every op.
    trusting_store: bool,
    /// Far from any op that asks for the state of its past, in such a load: the spacing of
    /// the checkpoints taken, rather than every `checkpoint_every` positions.
    checkpoint_every: Option<usize>,
    /// An op landed inside the order: from then on the load takes every checkpoint, as a
    /// running node does.
    out_of_order: bool,
    /// Decoded ops no longer kept decoded (they are stored), to be freed on the thread that
    /// decodes the next chunk rather than on the inserting one, the load's critical path.
    evicted: Vec<SignedOp>,
}

impl Causal for Log {
    fn is_ancestor(&self, a: &Cid, b: &Cid) -> bool {
        Log::is_ancestor(self, a, b)
    }

    fn meta(&self, id: &Cid) -> Option<&Meta> {
        self.ops
            .get(id)
            .map(|e| e.meta.as_deref().unwrap_or(&NO_META))
    }
}

impl Log {
    /// An empty log of the collective whose genesis charter has id `collective`.
    pub fn new(collective: Cid) -> Log {
        Log {
            collective,
            ops: OpTable::default(),
            heads: BTreeSet::new(),
            order: Chunked::new(),
            by_author: HashMap::default(),
            removals: HashMap::default(),
            suppressed: HashMap::default(),
            checkpoints: VecDeque::new(),
            checkpoint_every: CHECKPOINT_EVERY,
            checkpoints_kept: CHECKPOINTS_KEPT,
            tip: State::new(collective),
            pending: BTreeMap::new(),
            pending_index: HashMap::default(),
            waiting_on: HashMap::default(),
            next_seq: 0,
            pending_limit: DEFAULT_PENDING_LIMIT,
            pending_bytes: 0,
            pending_ttl_micros: DEFAULT_PENDING_TTL_MICROS,
            released: Vec::new(),
            rejected: HashMap::default(),
            rejected_order: VecDeque::new(),
            unsaved: Vec::new(),
            entered: 0,
            loading: None,
            decoded: VecDeque::new(),
            decoded_kept: DEFAULT_DECODED_KEPT,
            reader: None,
            saved_below: 0,
            read_failures: ReadFailures::default(),
        }
    }

    /// Gives the log the node's store to read its stored ops back from: from then on, the
    /// ops that are stored and not among the recent ones kept decoded are not kept in memory.
    /// The log must be the one saved to that store ([`Log::save`], [`Log::open`]).
    pub fn with_reader(mut self, reader: Arc<dyn crate::OpReader>) -> Log {
        self.reader = Some(Reader(reader));
        let saved = usize::try_from(self.saved_below).unwrap_or(usize::MAX);
        for s in (0..self.ops.len().min(saved)).filter_map(|s| Seq::try_from(s).ok()) {
            if let Some(e) = self.ops.entry_mut(s)
                && matches!(e.op, Held::Bytes(_))
            {
                e.op = Held::Stored;
            }
        }
        self
    }

    /// How many times the log could not read back an op it had left in the node's store (a
    /// store error, or an op missing from it). Each such op was left out of a fold or an
    /// answer: the log's state is then not to be trusted, and the node reopens the log.
    pub fn read_failures(&self) -> u64 {
        self.read_failures.0.load(Ordering::Relaxed)
    }

    /// The op `id` (whose entry is `e`), decoded again from its bytes if it is not recent.
    fn op_of<'a>(&'a self, id: &Cid, e: &'a Entry) -> Option<Cow<'a, SignedOp>> {
        match &e.op {
            Held::Decoded(op) => Some(Cow::Borrowed(op)),
            Held::Bytes(b) => self.decoded_again(b).map(Cow::Owned),
            Held::Stored => self
                .read_back(id)
                .and_then(|b| self.decoded_again(&b))
                .map(Cow::Owned),
        }
    }

    /// Bytes this log accepted, decoded again (`None` only if they no longer decode, which
    /// would be a bug; counted as a failure).
    fn decoded_again(&self, bytes: &[u8]) -> Option<SignedOp> {
        match SignedOp::decode_trusted(bytes) {
            Ok(op) => Some(op),
            Err(_) => {
                self.read_failures.0.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// The signed bytes of the op `id` (whose entry is `e`).
    fn bytes_in<'a>(&'a self, id: &Cid, e: &'a Entry) -> Option<Cow<'a, [u8]>> {
        match &e.op {
            Held::Decoded(op) => Some(Cow::Borrowed(op.bytes())),
            Held::Bytes(b) => Some(Cow::Borrowed(b)),
            Held::Stored => self.read_back(id).map(Cow::Owned),
        }
    }

    /// [`Log::bytes_of`] as a shared buffer: the decoded op's own bytes, without a copy.
    pub(crate) fn shared_bytes_of(&self, id: &Cid) -> Option<bytes::Bytes> {
        let e = self.ops.get(id)?;
        match &e.op {
            Held::Decoded(op) => Some(op.shared_bytes()),
            Held::Bytes(b) => Some(bytes::Bytes::copy_from_slice(b)),
            Held::Stored => self.read_back(id).map(bytes::Bytes::from),
        }
    }

    /// Reads a stored op's bytes back from the store; a failure is counted.
    fn read_back(&self, id: &Cid) -> Option<Vec<u8>> {
        let read = self
            .reader
            .as_ref()
            .map(|r| r.0.read_op(&self.collective, id));
        match read {
            Some(Ok(Some(bytes))) => Some(bytes),
            _ => {
                self.read_failures.0.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Sets how many of the ops that entered last are kept decoded (see
    /// [`DEFAULT_DECODED_KEPT`]); takes effect as the next op enters.
    pub fn with_decoded_kept(mut self, kept: usize) -> Log {
        self.decoded_kept = kept;
        self
    }

    /// Sets the pending buffer's bounds: at most `limit` ops, each waiting at most
    /// `ttl_micros`; past either, the oldest are evicted first.
    pub fn with_pending_bounds(mut self, limit: usize, ttl_micros: i64) -> Log {
        self.pending_limit = limit;
        self.pending_ttl_micros = ttl_micros;
        self
    }

    /// Sets how often the running state is checkpointed (every `every` positions) and how
    /// many checkpoints are kept. More checkpoints make ops concurrent with older ops cheaper
    /// to fold, at the cost of memory. Takes effect for checkpoints made from now on.
    pub fn with_checkpoints(mut self, every: usize, kept: usize) -> Log {
        self.checkpoint_every = every.max(1);
        self.checkpoints_kept = kept;
        self
    }

    /// The collective's id.
    pub fn collective(&self) -> &Cid {
        &self.collective
    }

    /// How many ops the log holds (pending ops excluded).
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True if the log holds no op.
    pub fn is_empty(&self) -> bool {
        self.ops.len() == 0
    }

    /// How many ops wait for parents.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// The parents the pending ops wait for (what to ask peers for), in CID order.
    pub fn missing(&self) -> Vec<Cid> {
        let mut m: Vec<Cid> = self.waiting_on.keys().copied().collect();
        m.sort_unstable_by_key(|c| c.to_bytes());
        m
    }

    /// The op's index in the log's order.
    fn pos_of(&self, id: &Cid) -> Option<usize> {
        self.ops.get(id).map(|e| e.pos as usize)
    }

    /// The position in the log's order of the op with index `s`.
    fn pos_at(&self, s: Seq) -> Option<usize> {
        self.ops.entry(s).map(|e| e.pos as usize)
    }

    /// The id of the op at position `t` of the order.
    fn id_at(&self, t: usize) -> Option<Cid> {
        self.ops.id(*self.order.get(t)?)
    }

    /// The lowest position of these ops in the order (0 if none is in the log).
    fn lowest_pos(&self, ids: &[Cid]) -> usize {
        ids.iter()
            .filter_map(|id| self.pos_of(id))
            .min()
            .unwrap_or(0)
    }

    /// True if the op is in the log.
    pub fn contains(&self, id: &Cid) -> bool {
        self.ops.contains_key(id)
    }

    /// An op of the log by id (decoded again from its bytes unless it is recent; see
    /// [`DEFAULT_DECODED_KEPT`]). To ask whether the log holds an op, [`Log::contains`] is
    /// cheaper; for its bytes, [`Log::bytes_of`].
    pub fn get(&self, id: &Cid) -> Option<SignedOp> {
        self.ops
            .get(id)
            .and_then(|e| self.op_of(id, e))
            .map(Cow::into_owned)
    }

    /// How many ops the log holds decoded (a walk of the whole log: for tests).
    #[cfg(test)]
    pub(crate) fn decoded_len(&self) -> usize {
        self.order
            .iter()
            .filter(|&&s| {
                self.ops
                    .entry(s)
                    .is_some_and(|e| matches!(e.op, Held::Decoded(_)))
            })
            .count()
    }

    /// How many ops the log leaves in the store (a walk of the whole log: for tests).
    #[cfg(test)]
    pub(crate) fn stored_len(&self) -> usize {
        self.order
            .iter()
            .filter(|&&s| {
                self.ops
                    .entry(s)
                    .is_some_and(|e| matches!(e.op, Held::Stored))
            })
            .count()
    }

    /// The signed bytes of an op of the log (read back from the node's store if the log
    /// left them there).
    pub fn bytes_of(&self, id: &Cid) -> Option<Cow<'_, [u8]>> {
        self.ops.get(id).and_then(|e| self.bytes_in(id, e))
    }

    /// Every op's `createdAt` (µs since the epoch) and id digest, in the log's order (what
    /// reconciliation's item set is made of).
    pub(crate) fn times_and_digests(&self) -> impl Iterator<Item = (i64, Digest)> + '_ {
        self.order.iter().filter_map(|&s| {
            let e = self.ops.entry(s)?;
            Some((e.created_micros, *self.ops.digest(s)?))
        })
    }

    /// True if the fold skips the op because a removal of its author is concurrent with it.
    pub fn is_suppressed(&self, id: &Cid) -> bool {
        self.suppressed.contains_key(id)
    }

    /// Decodes untrusted bytes and inserts the op; bytes that do not decode are rejected.
    pub fn insert_bytes(&mut self, bytes: &[u8], now_micros: i64) -> Inserted {
        match SignedOp::decode(bytes) {
            Ok(op) => self.insert(op, now_micros),
            Err(e) => Inserted::Rejected(Reason::Invalid(e)),
        }
    }

    /// Inserts an op received or created at `now_micros`. An op whose parents are all known
    /// is authorised against the state of its causal past and added, and any pending op it
    /// completes follows; an op with unknown parents waits.
    pub fn insert(&mut self, op: SignedOp, now_micros: i64) -> Inserted {
        self.expire(now_micros);
        if self.ops.contains_key(op.id()) {
            return Inserted::Duplicate;
        }
        if let Some(reason) = self.rejected.get(op.id()) {
            return Inserted::Rejected(reason.clone());
        }
        let right_collective = match op.kind() {
            OpKind::Charter => *op.id() == self.collective,
            _ => op.collective() == Some(&self.collective),
        };
        if !right_collective {
            return Inserted::Rejected(Reason::WrongCollective);
        }
        let missing: Vec<Cid> = op
            .prev()
            .iter()
            .filter(|p| !self.ops.contains_key(p))
            .copied()
            .collect();
        if !missing.is_empty() {
            if !self.pending_index.contains_key(op.id()) {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.pending_index.insert(*op.id(), seq);
                for m in &missing {
                    self.waiting_on.entry(*m).or_default().push(seq);
                }
                self.pending_bytes += op.bytes().len();
                self.pending.insert(
                    seq,
                    Waiting {
                        op,
                        arrived_micros: now_micros,
                    },
                );
                while !self.pending.is_empty()
                    && (self.pending.len() > self.pending_limit
                        || self.pending_bytes > MAX_PENDING_BYTES)
                {
                    self.evict_oldest();
                }
            }
            return Inserted::Pending { missing };
        }
        let id = *op.id();
        match self.accept(op) {
            Ok(()) => {
                self.release(id);
                Inserted::Applied
            }
            Err(reason) => Inserted::Rejected(reason),
        }
    }

    fn remember_rejection(&mut self, id: Cid, reason: &Reason) {
        if self.rejected.insert(id, reason.clone()).is_none() {
            self.rejected_order.push_back(id);
        }
        while self.rejected_order.len() > REJECTED_MEMORY {
            if let Some(old) = self.rejected_order.pop_front() {
                self.rejected.remove(&old);
            }
        }
    }

    fn unindex_pending(&mut self, w: &Waiting, seq: u64) {
        self.pending_bytes = self.pending_bytes.saturating_sub(w.op.bytes().len());
        self.pending_index.remove(w.op.id());
        for p in w.op.prev() {
            if let Some(list) = self.waiting_on.get_mut(p) {
                list.retain(|s| *s != seq);
                if list.is_empty() {
                    self.waiting_on.remove(p);
                }
            }
        }
    }

    fn evict_oldest(&mut self) {
        if let Some((seq, w)) = self.pending.pop_first() {
            self.unindex_pending(&w, seq);
        }
    }

    fn expire(&mut self, now_micros: i64) {
        while let Some((_, w)) = self.pending.first_key_value() {
            if now_micros.saturating_sub(w.arrived_micros) > self.pending_ttl_micros {
                self.evict_oldest();
            } else {
                break;
            }
        }
    }

    /// Authorises an op whose parents are all present against the state of its causal past,
    /// and adds it.
    fn accept(&mut self, op: SignedOp) -> Result<(), Reason> {
        let id = *op.id();
        if self.ops.len() >= Seq::MAX as usize {
            // Not remembered: the op is not at fault.
            return Err(Reason::LogFull);
        }
        let checked = if self.loading.as_ref().is_some_and(|l| l.trusting_store) {
            // Accepted when it arrived, and its past is the same now (see `Loading`):
            // only the facts of its past that the fold needs are computed.
            if State::needs_past_meta(&op) {
                self.state_at(op.prev()).past_meta(&op)
            } else {
                Ok(Meta::default())
            }
        } else {
            self.check_against_past(&op)
        };
        match checked {
            Ok(meta) => {
                self.add(op, meta);
                Ok(())
            }
            Err(reason) => {
                self.remember_rejection(id, &reason);
                Err(reason)
            }
        }
    }

    /// Checks an op against the state of its causal past, returning the facts of that past
    /// the fold needs.
    fn check_against_past(&self, op: &SignedOp) -> Result<Meta, Reason> {
        // Time runs forward along the DAG: an op is not dated before any of its parents (so a
        // date can be moved back no further than what the author had seen).
        let created = op.created_at().to_unix_micros();
        for p in op.prev() {
            if self.ops.get(p).is_some_and(|e| e.created_micros > created) {
                return Err(Reason::BeforeItsPast {
                    created_at: op.created_at().as_str().to_owned(),
                    parent: *p,
                    parent_at: self.get(p).map_or_else(
                        || format!("{} µs after the epoch", parent_micros(self, p)),
                        |parent| parent.created_at().as_str().to_owned(),
                    ),
                });
            }
        }
        // The past (often a clone of the tip) is dropped on return, before the op is applied,
        // so that the tip's maps are not shared and are updated in place rather than copied.
        self.state_at(op.prev()).check_past(op, self)
    }

    /// Adds an authorised op: places it in the order, applies the removal rule, and refolds
    /// from the first place that changed.
    fn add(&mut self, op: SignedOp, meta: Meta) {
        let id = *op.id();
        let n = self.order.len();
        let after = op
            .prev()
            .iter()
            .filter_map(|p| self.pos_of(p))
            .max()
            .map_or(0, |p| p + 1);
        // Every op id is a CIDv1 DAG-CBOR SHA-256: their byte order is their digests' order.
        let digest = op_digest(&id);
        let k = (after..n)
            .find(|&t| {
                self.order
                    .get(t)
                    .and_then(|&s| self.ops.digest(s))
                    .is_some_and(|d| *d > digest)
            })
            .unwrap_or(n);
        let extends_every_head = self.heads.iter().all(|h| op.prev().contains(h));
        // `accept` made sure the log holds fewer than `Seq::MAX` ops: `entered` is below.
        let floor = if extends_every_head {
            self.entered as Seq
        } else {
            op.prev()
                .iter()
                .filter_map(|p| self.ops.get(p))
                .map(|e| e.floor)
                .max()
                .unwrap_or(0)
        };
        let prev = Parents::from_seqs(op.prev().iter().filter_map(|p| self.ops.seq_of(p)));
        let created_micros = op.created_at().to_unix_micros();
        let target = match op.body() {
            OpBody::Remove(r) if meta.direct_removal => Some(r.member.to_string()),
            _ => None,
        };
        // The author's DID shares its text with the op's (and, through the decoder's table,
        // with every op of that author): no copy of the text per op.
        let author = op.author_did().clone();
        // `accept` made sure there is room, and every op id is an op id (CIDv1 DAG-CBOR SHA-256).
        let Some(seq) = self.ops.push(
            &id,
            Entry {
                op: Held::Decoded(op),
                prev,
                created_micros,
                pos: k as Seq,
                meta: Some(meta).filter(|m| *m != NO_META).map(Box::new),
                floor,
            },
        ) else {
            return;
        };
        self.entered += 1;
        if k < n
            && let Some(loading) = self.loading.as_mut()
        {
            loading.out_of_order = true;
        }
        self.order.insert(k, seq);
        for t in k + 1..self.order.len() {
            let Some(&s) = self.order.get(t) else { break };
            if let Some(e) = self.ops.entry_mut(s) {
                e.pos = t as Seq;
            }
        }
        if let Some(e) = self.ops.entry(seq) {
            for p in e.prev.iter().filter_map(|&p| self.ops.id(p)) {
                self.heads.remove(&p);
            }
        }
        self.heads.insert(id);
        // (The author's id is copied only for a new author: most ops are by known ones.)
        if !self.by_author.contains_key(&author) {
            self.by_author.insert(author.clone(), Vec::new());
        }
        if let Some(mine) = self.by_author.get_mut(&author) {
            // Most authors write a few ops: grow short lists one at a time (long ones double).
            if mine.len() < 8 {
                mine.reserve_exact(1);
            }
            mine.push(seq);
        }
        // Removals of the author (this op, if it removes its own author, is left out below).
        let author_removals = self.removals.get(author.as_str()).cloned();
        if self.loading.is_none() {
            self.unsaved.push(id);
        }
        self.decoded.push_back(seq);
        // Ops loaded from the store are stored; others once saved.
        let from_store = self.loading.as_ref().is_some_and(|l| l.trusting_store);
        let readable = self.reader.is_some();
        let saved_below = self.saved_below;
        while self.decoded.len() > self.decoded_kept {
            let Some(old) = self.decoded.pop_front() else {
                break;
            };
            let stored = readable && (from_store || u64::from(old) < saved_below);
            if let Some(e) = self.ops.entry_mut(old) {
                let held = std::mem::replace(&mut e.op, Held::Stored);
                e.op = match held {
                    // While loading, freed on the decoding thread (`Loading::evicted`).
                    Held::Decoded(op) if stored => {
                        if let Some(loading) = self.loading.as_mut() {
                            loading.evicted.push(op);
                        }
                        Held::Stored
                    }
                    Held::Decoded(op) => Held::Bytes(Box::new(op.into_bytes())),
                    other => other,
                };
            }
        }

        // The removal rule: ops newly suppressed move the refold's start back.
        let mut dirty = k;
        if let Some(target) = target {
            if let Some(theirs) = self.by_author.get(target.as_str()) {
                // The removed member's ops that the removal's floor does not place in its past
                // (its floor is that of the op that extended every head last: often all; the
                // removal itself is never below its own floor).
                let unsure: Vec<Cid> = theirs
                    .iter()
                    .filter(|&&y| y >= floor)
                    .filter_map(|&y| self.ops.id(y))
                    .collect();
                if !unsure.is_empty() {
                    // The removal's past, walked only down to the lowest of those.
                    let lo = self.lowest_pos(&unsure);
                    let mut past = PastWalk::new(self, &[id]);
                    past.lower_to(self, lo);
                    for y in unsure {
                        if y != id && !self.pos_of(&y).is_some_and(|p| past.contains(p)) {
                            self.suppressed.entry(y).or_default().push(id);
                            dirty = dirty.min(self.pos_of(&y).unwrap_or(0));
                        }
                    }
                }
            }
            self.removals.entry(target).or_default().push(id);
        }
        if let Some(removals) = author_removals {
            let concurrent: Vec<Cid> = removals
                .into_iter()
                .filter(|r| *r != id && !self.is_ancestor(r, &id))
                .collect();
            if !concurrent.is_empty() {
                self.suppressed.entry(id).or_default().extend(concurrent);
            }
        }
        self.refold_from(dirty);
    }

    /// Recomputes the running state (checkpoints and tip) from position `from` on.
    fn refold_from(&mut self, from: usize) {
        let n = self.order.len();
        while self.checkpoints.back().is_some_and(|c| c.at > from) {
            self.checkpoints.pop_back();
        }
        // Start from the tip when only the newest position changed (the usual case), else
        // from the last checkpoint at or before `from`, else from nothing.
        let (mut state, start, mut heads) = if from + 1 == n {
            let empty = State::new(self.collective);
            (std::mem::replace(&mut self.tip, empty), from, None)
        } else if let Some(c) = self.checkpoints.back() {
            (
                c.state.clone(),
                c.at,
                Some(c.heads.iter().copied().collect()),
            )
        } else {
            (State::new(self.collective), 0, Some(BTreeSet::new()))
        };
        let mut new_checkpoints = Vec::new();
        for t in start..n {
            let Some(id) = self.id_at(t) else { continue };
            if let Some(h) = heads.as_mut() {
                self.advance_heads(h, &id);
            }
            self.fold_one(&mut state, &id);
            let at = t + 1;
            let every = self
                .loading
                .as_ref()
                .and_then(|l| l.checkpoint_every)
                .unwrap_or(self.checkpoint_every)
                .max(1);
            if at % every == 0 {
                // Without tracked heads this is the tip path, where `at` is the whole log.
                let h = match heads.as_ref() {
                    Some(h) => h.iter().copied().collect(),
                    None => self.heads.iter().copied().collect(),
                };
                new_checkpoints.push(Checkpoint {
                    at,
                    state: state.clone(),
                    heads: h,
                });
            }
        }
        self.checkpoints.extend(new_checkpoints);
        self.thin_checkpoints();
        self.tip = state;
    }

    /// While loading: sets the spacing of the checkpoints the next op's fold takes, from
    /// whether an op landed inside the order yet (see [`Log::load_with`]).
    fn plan_checkpoints(&mut self, spacing: impl FnOnce(bool) -> Option<usize>) {
        if let Some(loading) = self.loading.as_mut() {
            loading.checkpoint_every = spacing(loading.out_of_order);
        }
    }

    /// Keeps the most recent checkpoints dense and older ones sparse, at most
    /// `checkpoints_kept` in all; while a log loads far from its end (fallback checkpoints
    /// only, see [`Log::load_with`]), only the `DENSE_CHECKPOINTS` most recent: fallback
    /// checkpoints lie so far apart that each shares almost no map node with the next
    /// (30–50 MB each with 50 000 members), and none of them is kept at the end anyway.
    fn thin_checkpoints(&mut self) {
        let kept = if self
            .loading
            .as_ref()
            .and_then(|l| l.checkpoint_every)
            .is_some_and(|every| every >= LOAD_FALLBACK_EVERY)
        {
            DENSE_CHECKPOINTS
        } else {
            self.checkpoints_kept
        };
        let dense_from = self.checkpoints.len().saturating_sub(DENSE_CHECKPOINTS);
        let sparse = self.checkpoint_every.saturating_mul(SPARSE_EVERY).max(1);
        let newest = self.checkpoints.back().map_or(0, |c| c.at);
        let mut i = 0;
        self.checkpoints.retain(|c| {
            let keep = i >= dense_from || sparse_kept(c.at, newest, sparse);
            i += 1;
            keep
        });
        while self.checkpoints.len() > kept {
            self.checkpoints.pop_front();
        }
    }

    /// How far back (in positions) the checkpoints a log keeps reach, about.
    fn checkpoints_reach(&self) -> usize {
        let sparse = self.checkpoint_every.saturating_mul(SPARSE_EVERY);
        let levels = self.checkpoints_kept.saturating_sub(DENSE_CHECKPOINTS) / SPARSE_PER_LEVEL;
        let levels = u32::try_from(levels).unwrap_or(u32::MAX);
        let spans = 1usize
            .checked_shl(levels)
            .map_or(usize::MAX, |n| n.saturating_sub(1));
        sparse
            .saturating_mul(SPARSE_PER_LEVEL)
            .saturating_mul(spans)
            .saturating_add((DENSE_CHECKPOINTS + 1).saturating_mul(self.checkpoint_every))
    }

    fn advance_heads(&self, heads: &mut BTreeSet<Cid>, id: &Cid) {
        if let Some(e) = self.ops.get(id) {
            for p in e.prev.iter().filter_map(|&p| self.ops.id(p)) {
                heads.remove(&p);
            }
        }
        heads.insert(*id);
    }

    /// Applies one op of the order to a running state, unless it is suppressed or not
    /// authorised against that state.
    fn fold_one(&self, state: &mut State, id: &Cid) {
        if self.suppressed.contains_key(id) {
            return;
        }
        let Some(op) = self.ops.get(id).and_then(|e| self.op_of(id, e)) else {
            return;
        };
        if state.authorize(&op, self).is_ok() {
            state.apply(&op, self);
        }
    }

    /// Moves every pending op that `arrived` completes into the log (or drops it, if
    /// rejected), and so on for the ops those complete.
    fn release(&mut self, arrived: Cid) {
        let mut queue = vec![arrived];
        while let Some(parent) = queue.pop() {
            let Some(seqs) = self.waiting_on.remove(&parent) else {
                continue;
            };
            for seq in seqs {
                let ready = self
                    .pending
                    .get(&seq)
                    .is_some_and(|w| w.op.prev().iter().all(|p| self.ops.contains_key(p)));
                if !ready {
                    continue;
                }
                if let Some(w) = self.pending.remove(&seq) {
                    self.unindex_pending(&w, seq);
                    let id = *w.op.id();
                    // A rejected pending op is dropped, as it would have been on arrival.
                    if !self.ops.contains_key(&id) && self.accept(w.op).is_ok() {
                        self.released.push(id);
                        queue.push(id);
                    }
                }
            }
        }
    }

    /// The ids of the pending ops that entered the log since the last call, in the order
    /// they entered (for relaying them).
    pub fn drain_released(&mut self) -> Vec<Cid> {
        std::mem::take(&mut self.released)
    }

    /// Every op's signed bytes, in the log's order (parents first): what a store keeps.
    /// [`Log::load`] reads it back.
    pub fn export(&self) -> Vec<Cow<'_, [u8]>> {
        self.order
            .iter()
            .filter_map(|&s| {
                let e = self.ops.entry(s)?;
                self.bytes_in(&self.ops.id(s)?, e)
            })
            .collect()
    }

    /// A page of [`Log::export`]: the signed bytes of the ops from position `from` of the
    /// order on, as many as fit in `max_bytes` (at least one, whatever its size); none when
    /// `from` is past the end. Costs the page, not the log.
    pub fn export_page(&self, from: usize, max_bytes: usize) -> Vec<Cow<'_, [u8]>> {
        let mut total = 0usize;
        let mut page = Vec::new();
        for &s in self.order.range(from, usize::MAX) {
            let Some(bytes) = self
                .ops
                .entry(s)
                .zip(self.ops.id(s))
                .and_then(|(e, id)| self.bytes_in(&id, e))
            else {
                continue;
            };
            if !page.is_empty() && total + bytes.len() > max_bytes {
                break;
            }
            total += bytes.len();
            page.push(bytes);
        }
        page
    }

    /// Rebuilds a log from stored op bytes (any order). Every op is checked again, signature
    /// included; ops that do not decode, are not authorised or stay without parents are
    /// left out.
    pub fn load<'a>(collective: Cid, ops: impl IntoIterator<Item = &'a [u8]>) -> Log {
        Log::load_with(collective, ops, &SignedOp::decode, LOAD_CHUNK, false)
    }

    /// Like [`Log::load`], for the ops of this node's own store, which it verified and
    /// accepted when they arrived ([`crate::OpStore`] holds accepted ops only): lexicons
    /// and signatures are not checked again (see [`SignedOp::decode_trusted`]), nor is an
    /// op checked against the state of its past (acceptance depends on that past alone, so
    /// it would pass again), except where the fold needs facts of that past (an election's
    /// electorate, a seal's ballots, a proposal's contributors, a removal's kind). The fold
    /// authorises every op as always, so the state is the one [`Log::load`] gives.
    pub fn load_trusted<'a>(collective: Cid, ops: impl IntoIterator<Item = &'a [u8]>) -> Log {
        Log::load_with(collective, ops, &SignedOp::decode_trusted, LOAD_CHUNK, true)
    }

    /// [`Log::load_trusted`], taking the ops `cache` holds (verified) from it instead of
    /// decoding them again: the log then shares them with the cache's other users (the
    /// node's drivers; in one process, every node given the same cache).
    pub fn load_trusted_cached<'a>(
        collective: Cid,
        ops: impl IntoIterator<Item = &'a [u8]>,
        cache: &crate::driver::VerifyCache,
    ) -> Log {
        Log::load_with(collective, ops, &decode_cached(cache), LOAD_CHUNK, true)
    }

    /// Inserts the ops in their given order. A log of more than `chunk` ops ([`LOAD_CHUNK`]) is
    /// decoded on other threads meanwhile: each chunk is decoded in parallel while this
    /// thread inserts the previous one (decoding is pure; inserting stays sequential and on
    /// the calling thread, so the log is the same as one built op by op, and its state is
    /// allocated by the thread that keeps using it). Smaller logs are decoded inline.
    /// `trusting_store`: the ops are this node's own store's (see [`Log::load_trusted`]).
    pub(crate) fn load_with<'a>(
        collective: Cid,
        ops: impl IntoIterator<Item = &'a [u8]>,
        decode: &(dyn Fn(&[u8]) -> Result<SignedOp, crate::op::OpError> + Sync),
        chunk: usize,
        trusting_store: bool,
    ) -> Log {
        let kept = DEFAULT_DECODED_KEPT;
        Log::load_reading(collective, ops, decode, chunk, trusting_store, None, kept)
    }

    /// [`Log::load_with`], the log reading its stored ops back through `reader` (the store
    /// the ops come from) from the start.
    pub(crate) fn load_reading<'a>(
        collective: Cid,
        ops: impl IntoIterator<Item = &'a [u8]>,
        decode: &(dyn Fn(&[u8]) -> Result<SignedOp, crate::op::OpError> + Sync),
        chunk: usize,
        trusting_store: bool,
        reader: Option<Reader>,
        kept: usize,
    ) -> Log {
        let chunk = chunk.max(1);
        let ops: Vec<&[u8]> = ops.into_iter().collect();
        if ops.len() <= chunk {
            let mut log = Log::for_load(collective, ops.len(), trusting_store, reader, kept);
            for bytes in ops {
                if let Ok(op) = decode(bytes) {
                    log.insert(op, 0);
                }
            }
            return log.loaded();
        }
        let total = ops.len();
        Log::load_chunks(
            collective,
            total,
            ops.chunks(chunk).map(<[&[u8]]>::to_vec),
            decode,
            trusting_store,
            reader,
            kept,
        )
    }

    /// A log about to load `total` ops (a hint: the op map is reserved at that size).
    fn for_load(
        collective: Cid,
        total: usize,
        trusting_store: bool,
        reader: Option<Reader>,
        kept: usize,
    ) -> Log {
        let mut log = Log::new(collective)
            .with_pending_bounds(usize::MAX, i64::MAX)
            .with_decoded_kept(kept);
        log.reader = reader;
        log.loading = Some(Loading {
            trusting_store,
            ..Loading::default()
        });
        // The op map at its final size at once: growing it by doubling copied every entry
        // into fresh pages again and again (~5 % of a 1 M-op load). A count from a corrupt
        // store must not ask for more than the map could ever hold.
        log.ops.reserve(total.min(MAX_RESERVED_OPS));
        log
    }

    /// [`Log::load_with`] over ops that come in chunks, about `total` of them: each chunk
    /// is taken from `chunks` and decoded in parallel on other threads while this thread
    /// inserts the previous one, so a store's reads overlap the load too
    /// ([`Log::open`]). `total` only places checkpoints; a wrong count costs time, not
    /// correctness.
    pub(crate) fn load_chunks<B: AsRef<[u8]> + Sync>(
        collective: Cid,
        total: usize,
        mut chunks: impl Iterator<Item = Vec<B>> + Send,
        decode: &(dyn Fn(&[u8]) -> Result<SignedOp, crate::op::OpError> + Sync),
        trusting_store: bool,
        reader: Option<Reader>,
        kept: usize,
    ) -> Log {
        use rayon::prelude::*;
        let mut log = Log::for_load(collective, total, trusting_store, reader, kept);
        let decode_chunk = |chunk: Vec<B>| -> Vec<Option<SignedOp>> {
            chunk
                .par_iter()
                .map(|bytes| decode(bytes.as_ref()).ok())
                .collect()
        };
        let dense = (DENSE_CHECKPOINTS + 1) * log.checkpoint_every;
        let sparse = log.checkpoint_every * SPARSE_EVERY;
        let kept = log.checkpoints_reach();
        let spacing = |metas: &[usize], j: usize, at: usize, out_of_order: bool| {
            let soon = metas
                .get(metas.partition_point(|&m| m < j))
                .is_some_and(|&m| m - j <= dense);
            let left = total.saturating_sub(at);
            if !trusting_store || soon || left <= dense || out_of_order {
                None
            } else if left <= kept {
                Some(sparse)
            } else {
                Some(LOAD_FALLBACK_EVERY)
            }
        };
        let needing_past = |ops: &[Option<SignedOp>], offset: usize| -> Vec<usize> {
            ops.iter()
                .enumerate()
                .filter(|(_, op)| op.as_ref().is_some_and(State::needs_past_meta))
                .map(|(j, _)| offset + j)
                .collect()
        };
        let mut done = 0;
        // A node's store holds ops in the order accepted, where a concurrent op can come
        // after ops that precede it in the log's order; inserted as stored, it would land
        // inside the order and refold from a checkpoint far back. The ops are put back in
        // the log's order first, within a window (see `Reorder`). An op that still lands
        // inside the order (its place was before the window) makes the load take every
        // checkpoint from then on (`Loading::out_of_order`), as a running node does.
        let mut reorder = Reorder::new(if trusting_store { REORDER_WINDOW } else { 0 });
        let mut next = chunks.next().map(decode_chunk).map(|c| reorder.feed(c));
        while let Some(current) = next.take() {
            let len = current.len();
            let mut metas = needing_past(&current, 0);
            // The last `dense` ops look ahead into the next chunk: they are inserted once
            // it is decoded.
            let split = len.saturating_sub(dense);
            let mut ops = current.into_iter().enumerate();
            let decoded = std::thread::scope(|scope| {
                // The next chunk is taken (read, for a store) and decoded meanwhile.
                let evicted = log.take_evicted();
                let decoding = scope.spawn(|| {
                    drop(evicted);
                    chunks.next().map(decode_chunk)
                });
                for (j, op) in ops.by_ref().take(split) {
                    log.plan_checkpoints(|out_of_order| spacing(&metas, j, done + j, out_of_order));
                    if let Some(op) = op {
                        log.insert(op, 0);
                    }
                }
                // A panic while decoding is a bug; it resumes here rather than being lost.
                decoding
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            });
            next = match decoded {
                Some(c) => Some(reorder.feed(c)),
                // The window's last ops, once every chunk went through it.
                None => Some(reorder.flush()).filter(|rest| !rest.is_empty()),
            };
            if let Some(following) = &next {
                let head = &following[..following.len().min(dense)];
                metas.extend(needing_past(head, len));
            }
            for (j, op) in ops {
                log.plan_checkpoints(|out_of_order| spacing(&metas, j, done + j, out_of_order));
                if let Some(op) = op {
                    log.insert(op, 0);
                }
            }
            done += len;
        }
        log.loaded()
    }

    /// The decoded ops evicted since the last call while loading, for the caller to free.
    fn take_evicted(&mut self) -> Vec<SignedOp> {
        self.loading
            .as_mut()
            .map(|l| std::mem::take(&mut l.evicted))
            .unwrap_or_default()
    }

    /// Ends a load: ops inserted from here on (from peers) are checked in full, with every
    /// checkpoint.
    fn loaded(mut self) -> Log {
        self.pending.clear();
        self.pending_index.clear();
        self.waiting_on.clear();
        self.released.clear();
        self.unsaved = Vec::new();
        // The ops of a load from this node's store are stored; a log loaded from other bytes
        // counts none as stored until it saves them.
        if self.loading.as_ref().is_some_and(|l| l.trusting_store) {
            self.saved_below = self.entered;
        }
        self.pending_bytes = 0;
        // A loaded log grows slowly from here: give back what growing it left over.
        self.ops.shrink_to_fit();
        for ops in self.by_author.values_mut() {
            ops.shrink_to_fit();
        }
        self.pending_limit = DEFAULT_PENDING_LIMIT;
        self.pending_ttl_micros = DEFAULT_PENDING_TTL_MICROS;
        self.loading = None;
        self
    }

    /// The ops accepted since the last [`Log::save`] (or load), in the order accepted.
    pub fn unsaved(&self) -> &[Cid] {
        &self.unsaved
    }

    /// The log with every op counted as not yet stored, parents first: for a log loaded from
    /// a peer's bytes (a join's fetch) rather than from this node's store.
    pub fn all_unsaved(mut self) -> Log {
        self.unsaved = self.order.iter().filter_map(|&s| self.ops.id(s)).collect();
        self.saved_below = 0;
        self
    }

    /// Forgets the first `n` unsaved ops (they are stored).
    pub(crate) fn mark_saved(&mut self, n: usize) {
        let saved: Vec<Cid> = self.unsaved.drain(..n.min(self.unsaved.len())).collect();
        if self.unsaved.is_empty() {
            self.unsaved = Vec::new();
            self.saved_below = self.entered;
        }
        // Saved ops kept as bytes only (they left the decoded ones before this save) need
        // not stay in memory if the store can give them back.
        if self.reader.is_some() {
            for id in &saved {
                if let Some(e) = self.ops.seq_of(id).and_then(|s| self.ops.entry_mut(s))
                    && matches!(e.op, Held::Bytes(_))
                {
                    e.op = Held::Stored;
                }
            }
        }
    }

    /// The heads of the DAG, in CID order.
    pub fn heads(&self) -> Vec<Cid> {
        self.heads.iter().copied().collect()
    }

    /// The known ops in the causal past of `heads`, the heads included (unknown heads are
    /// ignored).
    pub fn ancestors(&self, heads: &[Cid]) -> CidSet {
        self.ancestors_from(heads, 0)
    }

    /// The ancestors of `heads` (included) at positions `lo` or later. Exact: a path from a
    /// head down to an op at position `lo` or later only passes through such positions.
    fn ancestors_from(&self, heads: &[Cid], lo: usize) -> CidSet {
        let mut seen: FxHashSet<Seq> = FxHashSet::default();
        let mut stack: Vec<Seq> = heads
            .iter()
            .filter(|h| self.pos_of(h).is_some_and(|p| p >= lo))
            .filter_map(|h| self.ops.seq_of(h))
            .collect();
        while let Some(s) = stack.pop() {
            if !seen.insert(s) {
                continue;
            }
            if let Some(e) = self.ops.entry(s) {
                stack.extend(
                    e.prev.iter().filter(|&&p| {
                        !seen.contains(&p) && self.pos_at(p).is_some_and(|q| q >= lo)
                    }),
                );
            }
        }
        seen.iter().filter_map(|&s| self.ops.id(s)).collect()
    }

    /// True if `a` is a strict ancestor of `b`. Most answers come from `b`'s floor (see
    /// [`Entry::floor`]); otherwise the walk from `b` stops at the first op whose floor
    /// answers, and visits only the ops between the two in the order.
    pub fn is_ancestor(&self, a: &Cid, b: &Cid) -> bool {
        if a == b {
            return false;
        }
        let (Some(sa), Some(sb)) = (self.ops.seq_of(a), self.ops.seq_of(b)) else {
            return false;
        };
        let (Some(ea), Some(eb)) = (self.ops.entry(sa), self.ops.entry(sb)) else {
            return false;
        };
        if ea.pos > eb.pos {
            return false;
        }
        let pa = ea.pos as usize;
        if sa < eb.floor {
            return true;
        }
        let mut seen: FxHashSet<Seq> = FxHashSet::default();
        let mut stack: Vec<Seq> = eb.prev.as_slice().to_vec();
        while let Some(s) = stack.pop() {
            if s == sa {
                return true;
            }
            if !seen.insert(s) {
                continue;
            }
            if let Some(e) = self.ops.entry(s) {
                if sa < e.floor {
                    return true;
                }
                stack.extend(
                    e.prev
                        .iter()
                        .filter(|&&p| self.pos_at(p).is_some_and(|q| q >= pa)),
                );
            }
        }
        false
    }

    /// The ops not in the causal past of `heads`, parents first.
    pub fn ops_since(&self, heads: &[Cid]) -> Vec<SignedOp> {
        let known = self.ancestors(heads);
        self.order
            .iter()
            .filter_map(|&s| Some((self.ops.id(s)?, self.ops.entry(s)?)))
            .filter(|(id, _)| !known.contains(id))
            .filter_map(|(id, e)| self.op_of(&id, e).map(Cow::into_owned))
            .collect()
    }

    /// Every op, parents first, ties broken by CID bytes (all decoded: for small logs and
    /// tests; [`Log::export`] gives the bytes).
    pub fn ops_in_order(&self) -> Vec<SignedOp> {
        self.order
            .iter()
            .filter_map(|&s| {
                let (id, e) = (self.ops.id(s)?, self.ops.entry(s)?);
                self.op_of(&id, e).map(Cow::into_owned)
            })
            .collect()
    }

    /// Deterministic topological order of a set of known ops: the log's order restricted to
    /// the set (parents first, ties broken by the CIDs' bytes). Unknown ids are left out.
    pub fn topo_order(&self, set: &CidSet) -> Vec<Cid> {
        let mut ids: Vec<(usize, Cid)> = set
            .iter()
            .filter_map(|id| self.pos_of(id).map(|p| (p, *id)))
            .collect();
        ids.sort_unstable_by_key(|(p, _)| *p);
        ids.into_iter().map(|(_, id)| id).collect()
    }

    /// The state of the whole log.
    pub fn state(&self) -> State {
        self.tip.clone()
    }

    /// A reference to the state of the whole log.
    pub fn state_ref(&self) -> &State {
        &self.tip
    }

    /// The state at a causal cut: the fold of the ops in the causal past of `heads` only
    /// (unknown heads are ignored).
    pub fn state_at(&self, heads: &[Cid]) -> State {
        let known: BTreeSet<Cid> = heads
            .iter()
            .filter(|h| self.ops.contains_key(h))
            .copied()
            .collect();
        if known.is_empty() {
            return State::new(self.collective);
        }
        if known == self.heads {
            return self.tip.clone();
        }
        let known: Vec<Cid> = known.into_iter().collect();
        // One walk of the cut's past, extended down as older checkpoints are tried.
        let mut walk = PastWalk::new(self, &known);
        for c in self.checkpoints.iter().rev() {
            walk.lower_to(self, self.lowest_pos(&c.heads));
            if let Some(state) = self.state_from_checkpoint(c, &walk) {
                return state;
            }
        }
        self.fold_set(&self.ancestors(&known))
    }

    /// The state at the cut whose past `walk` holds by refolding from checkpoint `c`, if
    /// `c`'s prefix lies wholly in the cut and no op of the prefix is suppressed by a removal
    /// outside it. `walk` reaches down to the lowest position of `c`'s heads at least.
    fn state_from_checkpoint(&self, c: &Checkpoint, walk: &PastWalk) -> Option<State> {
        if !c
            .heads
            .iter()
            .all(|h| self.pos_of(h).is_some_and(|p| walk.contains(p)))
        {
            return None;
        }
        // Is the op at position `p` in the cut? Positions before the checkpoint are (the
        // prefix lies in it).
        let in_cut = |id: &Cid| {
            self.pos_of(id)
                .is_some_and(|p| p < c.at || walk.contains(p))
        };
        for (x, by) in &self.suppressed {
            if self.pos_of(x).is_some_and(|p| p < c.at) && !by.iter().any(&in_cut) {
                return None;
            }
        }
        let mut state = c.state.clone();
        for (t, &s) in (c.at..).zip(self.order.range(c.at, usize::MAX)) {
            if !walk.contains(t) {
                continue;
            }
            let Some(id) = &self.ops.id(s) else { continue };
            if let Some(by) = self.suppressed.get(id)
                && by.iter().any(&in_cut)
            {
                continue;
            }
            if let Some(op) = self.ops.get(id).and_then(|e| self.op_of(id, e))
                && state.authorize(&op, self).is_ok()
            {
                state.apply(&op, self);
            }
        }
        Some(state)
    }

    /// Folds an ancestor-closed set of ops from nothing: the reference definition of the
    /// state of a cut.
    pub(crate) fn fold_set(&self, set: &CidSet) -> State {
        let mut state = State::new(self.collective);
        for id in self.topo_order(set) {
            if let Some(by) = self.suppressed.get(&id)
                && by.iter().any(|r| set.contains(r))
            {
                continue;
            }
            if let Some(op) = self.ops.get(&id).and_then(|e| self.op_of(&id, e))
                && state.authorize(&op, self).is_ok()
            {
                state.apply(&op, self);
            }
        }
        state
    }
}

/// The causal past of a cut (its heads included) at positions `lo` or later of the order,
/// as a bitmap over positions, extended downward when `lo` falls. Exact for every position
/// from `lo` on: positions fall along parent edges, so a path from a head down to a position
/// at or after `lo` passes only through such positions; the parents found below `lo` wait in
/// `deferred` until `lo` reaches them. Cheaper than a set of CIDs: no 96-byte keys hashed,
/// and the walk to an older checkpoint continues the walk to a newer one.
struct PastWalk {
    /// The length of the order.
    n: usize,
    lo: usize,
    /// `seen[n - 1 - p]`: position `p` is in the past.
    seen: Vec<bool>,
    /// Positions reached below `lo`, not yet visited.
    deferred: Vec<usize>,
}

impl PastWalk {
    fn new(log: &Log, heads: &[Cid]) -> PastWalk {
        let n = log.order.len();
        PastWalk {
            n,
            lo: n,
            seen: Vec::new(),
            deferred: heads.iter().filter_map(|h| log.pos_of(h)).collect(),
        }
    }

    /// True if the op at position `p` (at or after `lo`) is in the past.
    fn contains(&self, p: usize) -> bool {
        p >= self.lo && p < self.n && self.seen[self.n - 1 - p]
    }

    /// Extends the walk down to position `lo`.
    fn lower_to(&mut self, log: &Log, lo: usize) {
        if lo >= self.lo {
            return;
        }
        self.lo = lo;
        self.seen.resize(self.n - lo, false);
        let mut stack: Vec<usize> = Vec::new();
        self.deferred.retain(|&p| {
            if p >= lo {
                stack.push(p);
                false
            } else {
                true
            }
        });
        while let Some(p) = stack.pop() {
            let i = self.n - 1 - p;
            if self.seen[i] {
                continue;
            }
            self.seen[i] = true;
            let Some(e) = log.order.get(p).and_then(|&s| log.ops.entry(s)) else {
                continue;
            };
            for q in e.prev.iter().filter_map(|&x| log.pos_at(x)) {
                if q >= lo {
                    if !self.seen[self.n - 1 - q] {
                        stack.push(q);
                    }
                } else {
                    self.deferred.push(q);
                }
            }
        }
    }
}

/// An op's `createdAt` in µs (0 if the log does not hold it).
fn parent_micros(log: &Log, id: &Cid) -> i64 {
    log.ops.get(id).map_or(0, |e| e.created_micros)
}

#[cfg(test)]
mod order_tests {
    use super::{Entry, Parents, SPARSE_PER_LEVEL, Seq, op_digest, sparse_kept};
    use crate::table::op_id;
    use guild_core::cids;

    /// Sparse checkpoints thin out geometrically: a few per spacing, each spacing twice the
    /// last, so that any depth has a checkpoint not much further back, and a checkpoint once
    /// dropped is never wanted again.
    #[test]
    fn sparse_checkpoints_thin_out_geometrically() {
        let sparse = 512;
        let mut kept: Vec<usize> = Vec::new();
        for t in 0..=2_000usize {
            let newest = t * sparse;
            kept.push(newest);
            let before = kept.clone();
            kept.retain(|&at| sparse_kept(at, newest, sparse));
            // Stateless: the same as thinning every position ever taken.
            let fresh: Vec<usize> = (0..=t)
                .map(|i| i * sparse)
                .filter(|&at| sparse_kept(at, newest, sparse))
                .collect();
            assert_eq!(kept, fresh, "at {t}");
            assert!(before.len() >= kept.len());
            // About SPARSE_PER_LEVEL per doubling of the reach.
            let levels = (t / SPARSE_PER_LEVEL + 1).ilog2() as usize + 1;
            assert!(
                kept.len() <= SPARSE_PER_LEVEL * levels + 1,
                "{} at {t}",
                kept.len()
            );
            // Any depth d has a checkpoint at most about 2 d (plus a band) back.
            for d in (0..=newest).step_by(sparse * 7) {
                let found = kept.iter().rev().find(|&&at| newest - at >= d);
                if let Some(&at) = found {
                    assert!(
                        newest - at <= 2 * d + SPARSE_PER_LEVEL * sparse,
                        "{d} at {t}"
                    );
                }
            }
        }
    }

    /// An op's parents in its entry, and the entry's size.
    #[test]
    fn parents_keep_every_index_in_order_and_an_entry_stays_small() {
        for n in 0u32..6 {
            let seqs: Vec<Seq> = (0..n).map(|i| 7 * i + 1).collect();
            let p = Parents::from_seqs(seqs.iter().copied());
            assert_eq!(p.as_slice(), &seqs[..], "{n} parents");
            assert_eq!(matches!(p, Parents::Inline(_)), n <= 2);
        }
        // What a million ops cost in the log's table, per op (see `Parents`, `Held`).
        assert!(std::mem::size_of::<Entry>() <= 56);
    }

    /// Op ids' digests order them as their bytes do, and give them back.
    #[test]
    fn op_digests_order_as_bytes_and_round_trip() {
        let ids: Vec<_> = (0u32..300)
            .map(|i| cids::cid_for_cbor(&i.to_be_bytes()))
            .collect();
        for a in &ids {
            assert_eq!(op_id(&op_digest(a)), *a);
            for b in ids.iter().step_by(7) {
                assert_eq!(
                    op_digest(a).cmp(&op_digest(b)),
                    a.to_bytes().cmp(&b.to_bytes())
                );
            }
        }
    }
}
