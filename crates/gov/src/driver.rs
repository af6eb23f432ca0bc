//! The sans-IO protocol driver: one per node per collective (protocol.md §5).
//!
//! A [`Driver`] owns a collective's [`Log`] and turns [`Event`]s (a peer connected or left, a
//! message arrived, the local member writes an op, a timer fired) into [`Action`]s (publish an
//! op on the collective's gossip topic, send a message to one peer, penalise a peer, wake me
//! at some time). It reads no clock (time is an argument), draws no ambient randomness (its
//! PRNG is seeded from [`DriverConfig::seed`]), and does no I/O: the network layer moves bytes
//! and timers, and maps its own peer ids to the type parameter `P`.
//!
//! The rules:
//! - gossip carries op bytes ([`Message::Op`]); an op is published or relayed
//!   ([`Action::Publish`]) only after the log applied it, so an invalid or unauthorised op is
//!   never forwarded (gossipsub's manual validation);
//! - an op whose parents are unknown waits in the log, and its missing parents are asked of
//!   the peer that sent it ([`Message::Want`]); an unanswered want is asked again of another
//!   peer after [`DriverConfig::request_timeout_micros`], a few times at most;
//! - an op the log rejects (bad bytes, bad signature, not authorised by its causal past)
//!   penalises the peer that sent it: an honest peer sends only ops its own log applied, and
//!   every node decides an op the same way;
//! - anti-entropy: on connect, and every [`DriverConfig::sync_interval_micros`] (plus a seeded
//!   jitter) with one random peer, the driver reconciles the set of its op ids with the
//!   peer's by Negentropy ([`crate::reconcile`]): it sends a query
//!   ([`Message::Reconcile`]), the peer answers each query statelessly
//!   ([`Message::ReconcileReply`]), and each answer tells the initiator which ops the peer
//!   lacks (sent to it at once, parents first, as [`Message::Ops`]) and which it lacks
//!   itself (asked for with [`Message::Want`], answered with [`Message::Ops`]), until the
//!   ranges' fingerprints agree. A node that missed ten thousand ops catches up in a few
//!   round trips without gossip.
//!
//! Every queue is bounded: outstanding wants ([`DriverConfig::max_wants`]), ops tracked while
//! they wait ([`DriverConfig::max_held`]), ops and bytes per message, ids per message,
//! remembered rejections ([`REJECTED_MEMORY`]), rounds and ops per sync exchange.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use guild_core::syntax::Datetime;
use guild_core::{Cid, Ipld, Keypair, cbor, cids, data};

use rand_core::{RngCore, SeedableRng};

use crate::body::OpBody;
use crate::log::{DEFAULT_PENDING_LIMIT, DEFAULT_PENDING_TTL_MICROS, Inserted, Log};
use crate::op::{MAX_OP_BYTES, MAX_PREV, Op, OpError, SignedOp};
use crate::reconcile::{self, OpSet};
use crate::state::{MAX_CLOCK_SKEW_MICROS, Reason};

/// The largest encoded [`Message`] accepted, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// The most op ids a [`Message::Want`] may carry.
pub const MAX_CIDS_PER_MESSAGE: usize = 1024;

/// The most ops a [`Message::Ops`] may carry.
pub const MAX_OPS_PER_MESSAGE: usize = 1024;

/// How many rejected op ids a driver remembers, so that a re-sent bad op is refused (and its
/// sender penalised again) without decoding it again.
pub const REJECTED_MEMORY: usize = 4096;

/// How many ops a [`VerifyCache`] holds by default.
pub const DEFAULT_VERIFY_CACHE: usize = 4096;

/// A received `Ops` message with at least this many ops to check has them checked on every
/// core before they are inserted (a catch-up reply); smaller ones are checked inline.
const PARALLEL_CHECK_MIN: usize = 32;

/// Room left in a message for everything but the ops' bytes.
const MESSAGE_OVERHEAD: usize = 64 * 1024;

/// The version of the [`Message`] format this node writes and reads.
pub const MESSAGE_VERSION: u64 = 1;

/// A message between two nodes of a collective.
///
/// On the wire it is a DAG-CBOR map of the format's version, `v` ([`MESSAGE_VERSION`]), and
/// one key naming the kind: `{"v": 1, "op": bytes}`, `{"v": 1, "reconcile": bytes}`,
/// `{"v": 1, "reconcileReply": bytes}`, `{"v": 1, "want": [link…]}` or
/// `{"v": 1, "ops": [bytes…]}`. Gossip carries the op's
/// bytes alone (the network layer wraps them in [`Message::Op`]); the other kinds go over
/// request-response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// One op's signed bytes (gossip).
    Op(Vec<u8>),
    /// A Negentropy query over the sender's op ids (anti-entropy; the sender initiated).
    Reconcile(Vec<u8>),
    /// The answer to a [`Message::Reconcile`].
    ReconcileReply(Vec<u8>),
    /// Ops the sender asks for by id.
    Want(Vec<Cid>),
    /// Ops' signed bytes, parents first (the answer to a [`Message::Want`], or the ops a
    /// reconciliation found the receiver lacks).
    Ops(Vec<Vec<u8>>),
}

/// Why bytes are not a [`Message`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The message is larger than [`MAX_MESSAGE_BYTES`].
    #[error("message is {0} bytes; the limit is {MAX_MESSAGE_BYTES}")]
    TooLarge(usize),
    /// The bytes are not strict DAG-CBOR.
    #[error("message is not strict DAG-CBOR: {0}")]
    Cbor(#[from] data::DecodeError),
    /// The value is not a map of a version and exactly one kind.
    #[error("message is not a map of a version and one kind")]
    NotAMessage,
    /// The message is of a format version this node does not read.
    #[error("message is version {0}; this node reads version {MESSAGE_VERSION}")]
    Version(i128),
    /// The key names no message kind.
    #[error("unknown message kind {0:?}")]
    UnknownKind(String),
    /// The value under the key has the wrong type.
    #[error("{field} must be {expected}")]
    Field {
        /// The message kind's key.
        field: &'static str,
        /// What it must hold.
        expected: &'static str,
    },
    /// A list is longer than its limit, or an op larger than [`MAX_OP_BYTES`].
    #[error("{field} holds {count}; the limit is {limit}")]
    TooMany {
        /// The message kind's key.
        field: &'static str,
        /// How many items (or bytes, for one op).
        count: usize,
        /// The limit.
        limit: usize,
    },
}

impl Message {
    /// The message's canonical DAG-CBOR encoding. Encoding cannot fail; a message built past
    /// the limits ([`MAX_CIDS_PER_MESSAGE`], [`MAX_OPS_PER_MESSAGE`], [`MAX_OP_BYTES`],
    /// [`MAX_MESSAGE_BYTES`]) is refused by [`Message::decode`], and the driver never builds one.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Canonical key order is shortest first: "v" precedes every kind's key.
        cbor::write_head(&mut out, 5, 2);
        cbor::write_head(&mut out, 3, 1);
        out.push(b'v');
        cbor::write_head(&mut out, 0, MESSAGE_VERSION);
        let key = self.key();
        cbor::write_head(&mut out, 3, key.len() as u64);
        out.extend_from_slice(key.as_bytes());
        match self {
            Message::Op(bytes) => {
                cbor::write_head(&mut out, 2, bytes.len() as u64);
                out.extend_from_slice(bytes);
            }
            Message::Reconcile(bytes) | Message::ReconcileReply(bytes) => {
                cbor::write_head(&mut out, 2, bytes.len() as u64);
                out.extend_from_slice(bytes);
            }
            Message::Want(cids) => {
                cbor::write_head(&mut out, 4, cids.len() as u64);
                for cid in cids {
                    cbor::write_link(&mut out, cid);
                }
            }
            Message::Ops(ops) => {
                cbor::write_head(&mut out, 4, ops.len() as u64);
                for bytes in ops {
                    cbor::write_head(&mut out, 2, bytes.len() as u64);
                    out.extend_from_slice(bytes);
                }
            }
        }
        out
    }

    /// Decodes untrusted bytes: size first, then strict DAG-CBOR, then the shape and limits of
    /// the kind. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Message, MessageError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(MessageError::TooLarge(bytes.len()));
        }
        let Ipld::Map(mut map) = data::decode(bytes)? else {
            return Err(MessageError::NotAMessage);
        };
        match map.remove("v") {
            Some(Ipld::Integer(v)) if v == i128::from(MESSAGE_VERSION) => {}
            Some(Ipld::Integer(v)) => return Err(MessageError::Version(v)),
            _ => return Err(MessageError::NotAMessage),
        }
        if map.len() != 1 {
            return Err(MessageError::NotAMessage);
        }
        let Some((key, value)) = map.into_iter().next() else {
            return Err(MessageError::NotAMessage);
        };
        match key.as_str() {
            "op" => match value {
                Ipld::Bytes(b) => {
                    check_op_size("op", &b)?;
                    Ok(Message::Op(b))
                }
                _ => Err(MessageError::Field {
                    field: "op",
                    expected: "bytes",
                }),
            },
            "reconcile" => frame("reconcile", value).map(Message::Reconcile),
            "reconcileReply" => frame("reconcileReply", value).map(Message::ReconcileReply),
            "want" => links("want", value).map(Message::Want),
            "ops" => {
                let Ipld::List(items) = value else {
                    return Err(MessageError::Field {
                        field: "ops",
                        expected: "a list of bytes",
                    });
                };
                limit("ops", items.len(), MAX_OPS_PER_MESSAGE)?;
                let mut ops = Vec::with_capacity(items.len());
                for item in items {
                    let Ipld::Bytes(b) = item else {
                        return Err(MessageError::Field {
                            field: "ops",
                            expected: "a list of bytes",
                        });
                    };
                    check_op_size("ops", &b)?;
                    ops.push(b);
                }
                Ok(Message::Ops(ops))
            }
            _ => Err(MessageError::UnknownKind(key)),
        }
    }

    /// The kind's key on the wire.
    pub fn key(&self) -> &'static str {
        match self {
            Message::Op(_) => "op",
            Message::Reconcile(_) => "reconcile",
            Message::ReconcileReply(_) => "reconcileReply",
            Message::Want(_) => "want",
            Message::Ops(_) => "ops",
        }
    }
}

fn limit(field: &'static str, count: usize, limit: usize) -> Result<(), MessageError> {
    if count > limit {
        return Err(MessageError::TooMany {
            field,
            count,
            limit,
        });
    }
    Ok(())
}

fn frame(field: &'static str, value: Ipld) -> Result<Vec<u8>, MessageError> {
    match value {
        Ipld::Bytes(b) => Ok(b),
        _ => Err(MessageError::Field {
            field,
            expected: "bytes",
        }),
    }
}

fn check_op_size(field: &'static str, bytes: &[u8]) -> Result<(), MessageError> {
    limit(field, bytes.len(), MAX_OP_BYTES)
}

fn links(field: &'static str, value: Ipld) -> Result<Vec<Cid>, MessageError> {
    let Ipld::List(items) = value else {
        return Err(MessageError::Field {
            field,
            expected: "a list of links",
        });
    };
    limit(field, items.len(), MAX_CIDS_PER_MESSAGE)?;
    items
        .into_iter()
        .map(|item| match item {
            Ipld::Link(c) => Ok(c),
            _ => Err(MessageError::Field {
                field,
                expected: "a list of links",
            }),
        })
        .collect()
}

/// A small seeded PRNG: `rand_xoshiro`'s SplitMix64 behind `rand_core`'s traits, with the two
/// draws the driver and the simulator make. Deterministic, for choosing sync peers and jitter
/// here and for the simulator. Not for secrets.
#[derive(Debug, Clone)]
pub struct SplitMix64(rand_xoshiro::SplitMix64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(rand_xoshiro::SplitMix64::seed_from_u64(seed))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < p
    }
}

/// A shared, bounded memo of op decoding (signature checks are the expensive part), keyed by
/// the CID of the bytes: decoding is a function of the bytes alone, so one node may share one
/// cache between its drivers, and the simulator shares one between all its nodes. Cloning
/// shares the cache.
#[derive(Clone)]
pub struct VerifyCache {
    inner: Arc<Mutex<CacheInner>>,
}

struct CacheInner {
    capacity: usize,
    map: HashMap<Cid, Result<SignedOp, OpError>>,
    order: VecDeque<Cid>,
}

impl fmt::Debug for VerifyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("VerifyCache")
            .field("len", &inner.map.len())
            .field("capacity", &inner.capacity)
            .finish()
    }
}

impl Default for VerifyCache {
    fn default() -> VerifyCache {
        VerifyCache::new(DEFAULT_VERIFY_CACHE)
    }
}

impl VerifyCache {
    /// An empty cache holding at most `capacity` results (the oldest go first).
    pub fn new(capacity: usize) -> VerifyCache {
        VerifyCache {
            inner: Arc::new(Mutex::new(CacheInner {
                capacity: capacity.max(1),
                map: HashMap::new(),
                order: VecDeque::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Decodes and checks op bytes ([`SignedOp::decode`]), or returns the remembered result.
    pub fn verify(&self, bytes: &[u8]) -> Result<SignedOp, OpError> {
        self.verify_with_id(&cids::cid_for_cbor(bytes), bytes)
    }

    /// [`VerifyCache::verify`] with the bytes' CID already computed by the caller.
    fn verify_with_id(&self, id: &Cid, bytes: &[u8]) -> Result<SignedOp, OpError> {
        if let Some(r) = self.lock().map.get(id) {
            return r.clone();
        }
        let result = SignedOp::decode(bytes);
        self.store(*id, result.clone());
        result
    }

    /// True if the cache holds a result for this id (verified or refused).
    pub fn contains(&self, id: &Cid) -> bool {
        self.lock().map.contains_key(id)
    }

    /// The op with this id, if the cache holds it verified.
    pub fn get(&self, id: &Cid) -> Option<SignedOp> {
        match self.lock().map.get(id) {
            Some(Ok(op)) => Some(op.clone()),
            _ => None,
        }
    }

    /// Remembers an op decoded elsewhere (one this node signed, say).
    pub fn remember(&self, op: &SignedOp) {
        self.store(*op.id(), Ok(op.clone()));
    }

    fn store(&self, id: Cid, result: Result<SignedOp, OpError>) {
        let mut inner = self.lock();
        if inner.map.insert(id, result).is_none() {
            inner.order.push_back(id);
        }
        while inner.order.len() > inner.capacity {
            if let Some(old) = inner.order.pop_front() {
                inner.map.remove(&old);
            }
        }
    }

    /// How many results the cache holds.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// True if the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The driver's settings. The defaults suit a real network.
#[derive(Debug, Clone, PartialEq)]
pub struct DriverConfig {
    /// Seeds the driver's PRNG (which peer to sync with, timer jitter).
    pub seed: u64,
    /// The shortest time between two anti-entropy rounds (default 30 s).
    pub sync_interval_micros: i64,
    /// The most added to [`DriverConfig::sync_interval_micros`] at random (default 30 s: a
    /// round every 30 to 60 s).
    pub sync_jitter_micros: i64,
    /// How long a want or a sync exchange waits for an answer (default 5 s).
    pub request_timeout_micros: i64,
    /// How many peers a missing op is asked of before the driver gives up on it and leaves it
    /// to anti-entropy (default 4).
    pub want_tries: u32,
    /// The most op ids wanted at once (default 1024).
    pub max_wants: usize,
    /// The most ops whose missing parents are tracked, to penalise their sender if they are
    /// rejected once the parents arrive (default: the log's pending limit).
    pub max_held: usize,
    /// How long such an op is tracked (default: the log's pending TTL).
    pub held_ttl_micros: i64,
    /// The most ops per [`Message::Ops`] sent (default 256; at most [`MAX_OPS_PER_MESSAGE`];
    /// longer answers take several messages).
    pub max_ops_per_reply: usize,
    /// The most op bytes per [`Message::Ops`] sent (default 512 KiB; at least one op is
    /// always sent, and a message stays within [`MAX_MESSAGE_BYTES`]).
    pub max_reply_bytes: usize,
    /// The most queries one sync exchange sends (default 64).
    pub max_sync_rounds: u32,
    /// The most ops one sync exchange sends to the peer, or asks of it (default 65 536; the
    /// rest waits for the next exchange).
    pub max_sync_ops: usize,
    /// Whether ops learnt through anti-entropy are also published (default true: after a
    /// partition heals, gossip spreads what one link brought across).
    pub relay_synced: bool,
    /// The most new ops one `Ops` message may bring for them to be relayed (default 32). A
    /// larger one is a catch-up (a node that was away, or a newcomer fetching the history):
    /// relaying it would flood every peer with ops it already holds, and a node catching up
    /// hundreds of thousands of ops overflowed its peers' gossip queues. What it brought
    /// reaches the nodes that lack it through their own anti-entropy.
    pub relay_synced_max: usize,
    /// Only ops dated at most this long before now are relayed when they come out of the
    /// pending buffer or from anti-entropy (default 10 minutes): gossip spreads news, and an
    /// older op is history a catch-up brought, which the nodes that lack it fetch by their own
    /// anti-entropy.
    pub relay_window_micros: i64,
}

impl Default for DriverConfig {
    fn default() -> DriverConfig {
        DriverConfig {
            seed: 0,
            sync_interval_micros: 30_000_000,
            sync_jitter_micros: 30_000_000,
            request_timeout_micros: 5_000_000,
            want_tries: 4,
            max_wants: 1024,
            max_held: DEFAULT_PENDING_LIMIT,
            held_ttl_micros: DEFAULT_PENDING_TTL_MICROS,
            max_ops_per_reply: 256,
            max_reply_bytes: 512 * 1024,
            max_sync_rounds: 64,
            max_sync_ops: 1 << 16,
            relay_synced: true,
            relay_synced_max: 32,
            relay_window_micros: 600_000_000,
        }
    }
}

/// What happens to a driver.
#[derive(Debug, Clone)]
pub enum Event<P> {
    /// A connection to a peer of the collective opened.
    PeerConnected(P),
    /// The connection to a peer closed.
    PeerDisconnected(P),
    /// A message arrived from a peer (gossip arrives as [`Message::Op`]).
    Message {
        /// The peer it came from (for gossip: the peer that forwarded it).
        from: P,
        /// The message.
        msg: Message,
    },
    /// The local member writes an op: the driver signs it with `prev` = its current heads
    /// (at most [`MAX_PREV`] of them) and `createdAt` = now, inserts it and publishes it.
    Create {
        /// The op's body (its kind is the body's).
        body: Box<OpBody>,
        /// The member's key.
        key: Box<Keypair>,
    },
    /// An op signed elsewhere (by the member's client): inserted and published like a created
    /// one.
    Submit(SignedOp),
    /// A timer fired (see [`Action::Wake`]); calling it at other times is harmless.
    Tick,
}

/// What the driver asks the network layer to do, or reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Action<P> {
    /// Publish (or forward) these op bytes on the collective's gossip topic. Only ops the log
    /// applied are published.
    Publish(Vec<u8>),
    /// Send a message to one peer (request-response).
    Send {
        /// The peer.
        to: P,
        /// The message.
        msg: Message,
    },
    /// An op entered the log.
    Applied(Cid),
    /// An op was refused: it never enters the log and is never relayed.
    Rejected {
        /// The peer that sent it (`None` for a local op).
        from: Option<P>,
        /// The op's id (the CID of its bytes); `None` when a local op could not be signed.
        id: Option<Cid>,
        /// Why.
        reason: Reason,
    },
    /// A peer sent an invalid, forged or unauthorised op.
    Penalise {
        /// The peer.
        peer: P,
        /// What was wrong with the op.
        reason: Reason,
    },
    /// A peer sent an op dated more than [`MAX_CLOCK_SKEW_MICROS`] ahead of this node's
    /// clock: it is neither applied nor relayed now, nor held against the peer; the driver
    /// keeps it and inserts it at `until_micros` (a [`Action::Wake`] follows), or anti-entropy
    /// brings it again.
    Deferred {
        /// The peer that sent it.
        from: Option<P>,
        /// The op's id.
        id: Cid,
        /// When this node's clock will have caught up with the op's date.
        until_micros: i64,
    },
    /// Call [`Event::Tick`] at (or soon after) this time; replaces any earlier wake.
    Wake {
        /// When, in microseconds.
        at_micros: i64,
    },
}

/// An op wanted by id.
#[derive(Debug, Clone)]
struct Wanted<P> {
    /// The peer last asked (`None` when none was connected).
    asked: Option<P>,
    /// When it was last asked.
    at: i64,
    /// How many times it was asked.
    tries: u32,
}

/// An op waiting in the log for its parents, kept to learn its fate.
#[derive(Debug, Clone)]
struct Held<P> {
    op: SignedOp,
    from: Option<P>,
    at: i64,
}

/// A sync exchange this driver started with a peer.
#[derive(Debug, Clone)]
struct Session {
    /// The op ids as they were when the exchange started (every query of an exchange is over
    /// the same set).
    set: Arc<OpSet>,
    /// How many queries were sent.
    rounds: u32,
    /// How many ops were sent to the peer or asked of it.
    ops: usize,
}

#[derive(Debug, Clone, Default)]
struct Peer {
    session: Option<Session>,
}

/// What became of one received op.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Received {
    /// Applied, or waiting for parents.
    New,
    /// Already in the log.
    Known,
    /// Rejected, for this reason.
    Bad(Reason),
}

/// A collective's protocol state machine on one node. `P` is the network layer's peer id.
#[derive(Debug)]
pub struct Driver<P> {
    log: Log,
    /// The log's op ids for reconciliation (rebuilt when ops entered the log around the
    /// driver).
    set: Arc<OpSet>,
    config: DriverConfig,
    rng: SplitMix64,
    cache: Option<VerifyCache>,
    peers: BTreeMap<P, Peer>,
    wants: BTreeMap<Cid, Wanted<P>>,
    held: BTreeMap<Cid, Held<P>>,
    /// Ops dated ahead of this node's clock, by the time they may enter the log.
    early: BTreeMap<(i64, Cid), Held<P>>,
    rejected: HashMap<Cid, Reason>,
    rejected_order: VecDeque<Cid>,
    next_sync: Option<i64>,
    wake: Option<i64>,
}

impl<P: Clone + Ord + fmt::Debug> Driver<P> {
    /// A driver over a log (empty, or loaded from a store).
    pub fn new(log: Log, config: DriverConfig) -> Driver<P> {
        Driver {
            set: Arc::new(OpSet::from_log(&log)),
            log,
            rng: SplitMix64::new(config.seed),
            config,
            cache: None,
            peers: BTreeMap::new(),
            wants: BTreeMap::new(),
            held: BTreeMap::new(),
            early: BTreeMap::new(),
            rejected: HashMap::new(),
            rejected_order: VecDeque::new(),
            next_sync: None,
            wake: None,
        }
    }

    /// Decodes received ops through a shared [`VerifyCache`].
    pub fn with_cache(mut self, cache: VerifyCache) -> Driver<P> {
        self.cache = Some(cache);
        self
    }

    /// The log.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// The log, to save it ([`Log::save`]): inserting ops here bypasses the driver (nothing
    /// is published or wanted).
    pub fn log_mut(&mut self) -> &mut Log {
        &mut self.log
    }

    /// The log, taking the driver apart (to store it, say).
    pub fn into_log(self) -> Log {
        self.log
    }

    /// The settings.
    pub fn config(&self) -> &DriverConfig {
        &self.config
    }

    /// The connected peers.
    pub fn peers(&self) -> impl Iterator<Item = &P> {
        self.peers.keys()
    }

    /// The ids wanted from peers and not yet received.
    pub fn wanted(&self) -> impl Iterator<Item = &Cid> {
        self.wants.keys()
    }

    /// Handles one event at `now_micros` and returns what to do.
    pub fn handle(&mut self, event: Event<P>, now_micros: i64) -> Vec<Action<P>> {
        let mut out = Vec::new();
        self.handle_into(event, now_micros, &mut out);
        out
    }

    /// [`Driver::handle`], pushing the actions onto `out`.
    pub fn handle_into(&mut self, event: Event<P>, now: i64, out: &mut Vec<Action<P>>) {
        match event {
            Event::PeerConnected(peer) => {
                self.peers.insert(peer.clone(), Peer::default());
                if self.next_sync.is_none() {
                    self.next_sync = Some(self.next_sync_time(now));
                }
                self.start_sync(&peer, out);
            }
            Event::PeerDisconnected(peer) => {
                self.peers.remove(&peer);
                // What was asked of it is asked again of another peer at the next tick.
                let due = now.saturating_sub(self.config.request_timeout_micros);
                for want in self.wants.values_mut() {
                    if want.asked.as_ref() == Some(&peer) {
                        want.at = due;
                    }
                }
            }
            Event::Message { from, msg } => self.on_message(from, msg, now, out),
            Event::Create { body, key } => {
                let _ = self.write(&body, &key, now, out);
            }
            Event::Submit(op) => {
                let _ = self.submit_op(op, now, out);
            }
            Event::Tick => self.on_tick(now, out),
        }
        self.schedule(out);
    }

    /// [`Event::Create`], returning the new op's id (the caller may want it: an API answering
    /// its client), or why the op could not be signed or was refused by the log.
    pub fn create(
        &mut self,
        body: &OpBody,
        key: &Keypair,
        now_micros: i64,
        out: &mut Vec<Action<P>>,
    ) -> Result<Cid, Reason> {
        let result = self.write(body, key, now_micros, out);
        self.schedule(out);
        result
    }

    /// [`Event::Submit`], returning the op's id if the log applied it, holds it already, or
    /// keeps it waiting for its parents (which it then asks of a peer); or why it refused it.
    pub fn submit(
        &mut self,
        op: SignedOp,
        now_micros: i64,
        out: &mut Vec<Action<P>>,
    ) -> Result<Cid, Reason> {
        let result = self.submit_op(op, now_micros, out);
        self.schedule(out);
        result
    }

    fn write(
        &mut self,
        body: &OpBody,
        key: &Keypair,
        now: i64,
        out: &mut Vec<Action<P>>,
    ) -> Result<Cid, Reason> {
        let mut heads = self.log.heads();
        heads.truncate(MAX_PREV);
        let collective = *self.log.collective();
        // Dated now, or with the latest parent if a peer's clock runs ahead of this one's
        // (an op may not be dated before its parents).
        let latest_parent = heads
            .iter()
            .filter_map(|h| self.log.get(h))
            .map(|op| op.created_at().to_unix_micros())
            .max()
            .unwrap_or(i64::MIN);
        let created_at = Datetime::from_unix_micros(now.max(latest_parent));
        // A bundle proposal's cut names the governance heads it is assembled against, which
        // must be its `prev` (guild-gov refuses any other): the writer fills them in here,
        // where `prev` is chosen.
        let filled;
        let body = match body {
            OpBody::BundleProposal(p) => {
                let mut p = p.clone();
                p.cut.heads = heads.iter().copied().map(crate::body::CidRef).collect();
                filled = OpBody::BundleProposal(p);
                &filled
            }
            other => other,
        };
        match Op::write(body, Some(&collective), key, &heads, &created_at) {
            Ok(op) => self.submit_op(op, now, out),
            Err(e) => {
                let reason = Reason::Invalid(e);
                out.push(Action::Rejected {
                    from: None,
                    id: None,
                    reason: reason.clone(),
                });
                Err(reason)
            }
        }
    }

    fn submit_op(
        &mut self,
        op: SignedOp,
        now: i64,
        out: &mut Vec<Action<P>>,
    ) -> Result<Cid, Reason> {
        let id = *op.id();
        if let Some(cache) = &self.cache {
            cache.remember(&op);
        }
        if self.log.contains(&id) {
            return Ok(id);
        }
        match self.insert(None, op, now, true, out) {
            Received::Bad(reason) => Err(reason),
            Received::New | Received::Known => Ok(id),
        }
    }

    fn on_message(&mut self, from: P, msg: Message, now: i64, out: &mut Vec<Action<P>>) {
        match msg {
            Message::Op(bytes) => {
                self.receive_op(Some(&from), &bytes, now, true, out);
            }
            Message::Reconcile(query) => self.on_reconcile(from, &query, out),
            Message::ReconcileReply(reply) => self.on_reconcile_reply(from, &reply, now, out),
            Message::Want(ids) => self.on_want(from, ids, out),
            Message::Ops(ops) => self.on_ops(from, ops, now, out),
        }
    }

    /// Decodes (or recognises) one received op and inserts it.
    fn receive_op(
        &mut self,
        from: Option<&P>,
        bytes: &[u8],
        now: i64,
        relay: bool,
        out: &mut Vec<Action<P>>,
    ) -> (Cid, Received) {
        let id = cids::cid_for_cbor(bytes);
        self.receive_op_with(from, id, bytes, None, now, relay, out)
    }

    /// [`Self::receive_op`] with the bytes' CID computed, and perhaps their decoding done
    /// already (`pre`).
    #[allow(clippy::too_many_arguments)]
    fn receive_op_with(
        &mut self,
        from: Option<&P>,
        id: Cid,
        bytes: &[u8],
        pre: Option<Result<SignedOp, OpError>>,
        now: i64,
        relay: bool,
        out: &mut Vec<Action<P>>,
    ) -> (Cid, Received) {
        if self.log.contains(&id) {
            self.wants.remove(&id);
            return (id, Received::Known);
        }
        if let Some(reason) = self.rejected.get(&id).cloned() {
            self.reject(from, id, reason.clone(), out);
            return (id, Received::Bad(reason));
        }
        let decoded = match (self.held.get(&id), pre) {
            (Some(held), _) => Ok(held.op.clone()),
            (None, Some(pre)) => pre,
            (None, None) => match &self.cache {
                Some(cache) => cache.verify_with_id(&id, bytes),
                None => SignedOp::decode(bytes),
            },
        };
        match decoded {
            Ok(op) => (id, self.insert(from, op, now, relay, out)),
            Err(e) => {
                let reason = Reason::Invalid(e);
                self.reject(from, id, reason.clone(), out);
                (id, Received::Bad(reason))
            }
        }
    }

    /// Inserts a decoded op and reports what the log did.
    fn insert(
        &mut self,
        from: Option<&P>,
        op: SignedOp,
        now: i64,
        relay: bool,
        out: &mut Vec<Action<P>>,
    ) -> Received {
        let id = *op.id();
        // The author's clock may not run ahead of this node's by more than the tolerance: such
        // an op waits here until it does not (an author's own op is dated by its own clock).
        let until = op
            .created_at()
            .to_unix_micros()
            .saturating_sub(MAX_CLOCK_SKEW_MICROS);
        if from.is_some() && until > now {
            if self.early.len() < self.config.max_held {
                self.early.insert(
                    (until, id),
                    Held {
                        op,
                        from: from.cloned(),
                        at: now,
                    },
                );
            }
            out.push(Action::Deferred {
                from: from.cloned(),
                id,
                until_micros: until,
            });
            return Received::New;
        }
        let waits = !self.held.contains_key(&id)
            && self.held.len() < self.config.max_held
            && op.prev().iter().any(|p| !self.log.contains(p));
        let kept = waits.then(|| op.clone());
        match self.log.insert(op, now) {
            Inserted::Applied => {
                self.applied(id, relay, now, out);
                self.settle(now, out);
                Received::New
            }
            Inserted::Pending { missing } => {
                if let Some(op) = kept {
                    self.held.insert(
                        id,
                        Held {
                            op,
                            from: from.cloned(),
                            at: now,
                        },
                    );
                }
                self.want(from, missing, now, out);
                Received::New
            }
            Inserted::Rejected(reason) => {
                self.reject(from, id, reason.clone(), out);
                Received::Bad(reason)
            }
            Inserted::Duplicate => {
                self.wants.remove(&id);
                Received::Known
            }
        }
    }

    /// An op entered the log. `relay`: publish it too (see [`DriverConfig::relay_synced`]),
    /// if it is recent ([`DriverConfig::relay_window_micros`]).
    fn applied(&mut self, id: Cid, relay: bool, now: i64, out: &mut Vec<Action<P>>) {
        self.wants.remove(&id);
        self.held.remove(&id);
        out.push(Action::Applied(id));
        if let Some(op) = self.log.get(&id) {
            Arc::make_mut(&mut self.set).insert(&op);
            let recent = op.created_at().to_unix_micros()
                >= now.saturating_sub(self.config.relay_window_micros);
            if relay && recent {
                out.push(Action::Publish(op.bytes().to_vec()));
            }
        }
    }

    /// The log's op ids, current (rebuilt if ops entered the log through [`Driver::log_mut`]).
    fn op_set(&mut self) -> Arc<OpSet> {
        if self.set.len() != self.log.len() {
            self.set = Arc::new(OpSet::from_log(&self.log));
        }
        Arc::clone(&self.set)
    }

    /// Reports the ops the last insert released from the pending buffer, and the fate of the
    /// held ops whose parents have all arrived: the log drops a released op it rejects
    /// without saying so, so the driver inserts its copy again to learn the reason (the log
    /// remembers it) and penalise the sender.
    fn settle(&mut self, now: i64, out: &mut Vec<Action<P>>) {
        loop {
            for id in self.log.drain_released() {
                self.applied(id, true, now, out);
            }
            let ready: Vec<Cid> = self
                .held
                .iter()
                .filter(|(_, h)| h.op.prev().iter().all(|p| self.log.contains(p)))
                .map(|(id, _)| *id)
                .collect();
            if ready.is_empty() {
                return;
            }
            for id in ready {
                let Some(held) = self.held.remove(&id) else {
                    continue;
                };
                if self.log.contains(&id) {
                    continue;
                }
                match self.log.insert(held.op, now) {
                    Inserted::Applied => self.applied(id, true, now, out),
                    Inserted::Rejected(reason) => self.reject(held.from.as_ref(), id, reason, out),
                    Inserted::Pending { .. } | Inserted::Duplicate => {}
                }
            }
        }
    }

    fn reject(&mut self, from: Option<&P>, id: Cid, reason: Reason, out: &mut Vec<Action<P>>) {
        self.wants.remove(&id);
        if self.rejected.insert(id, reason.clone()).is_none() {
            self.rejected_order.push_back(id);
        }
        while self.rejected_order.len() > REJECTED_MEMORY {
            if let Some(old) = self.rejected_order.pop_front() {
                self.rejected.remove(&old);
            }
        }
        if let Some(peer) = from {
            out.push(Action::Penalise {
                peer: peer.clone(),
                reason: reason.clone(),
            });
        }
        out.push(Action::Rejected {
            from: from.cloned(),
            id: Some(id),
            reason,
        });
    }

    /// Asks for missing parents not already wanted: of the peer that sent the child, or of a
    /// random peer for a local op.
    fn want(&mut self, from: Option<&P>, missing: Vec<Cid>, now: i64, out: &mut Vec<Action<P>>) {
        let asked = match from {
            Some(p) => Some(p.clone()),
            None => self.random_peer(),
        };
        let mut ask = Vec::new();
        for id in missing {
            if self.wants.len() >= self.config.max_wants {
                break;
            }
            if self.wants.contains_key(&id) || self.log.contains(&id) {
                continue;
            }
            self.wants.insert(
                id,
                Wanted {
                    asked: asked.clone(),
                    at: now,
                    tries: 1,
                },
            );
            ask.push(id);
        }
        if let Some(to) = asked {
            for chunk in ask.chunks(MAX_CIDS_PER_MESSAGE) {
                out.push(Action::Send {
                    to: to.clone(),
                    msg: Message::Want(chunk.to_vec()),
                });
            }
        }
    }

    fn on_want(&mut self, from: P, ids: Vec<Cid>, out: &mut Vec<Action<P>>) {
        let set: crate::log::CidSet = ids
            .into_iter()
            .take(MAX_CIDS_PER_MESSAGE)
            .filter(|id| self.log.contains(id))
            .collect();
        if set.is_empty() {
            return;
        }
        let order = self.log.topo_order(&set);
        self.send_ops(&from, &order, out);
    }

    /// Sends these known ops (in this order) in as many [`Message::Ops`] as they need.
    fn send_ops(&self, to: &P, order: &[Cid], out: &mut Vec<Action<P>>) {
        let mut rest = order;
        while !rest.is_empty() {
            let ops = self.chunk(rest.iter().filter_map(|id| self.log.bytes_of(id)));
            if ops.is_empty() {
                return;
            }
            rest = rest.split_at_checked(ops.len()).map_or(&[][..], |(_, r)| r);
            out.push(Action::Send {
                to: to.clone(),
                msg: Message::Ops(ops),
            });
        }
    }

    /// Answers a peer's reconciliation query (statelessly, over the current set). A malformed
    /// query is dropped: only the network layer's peers (members) can send one, and an
    /// answer reveals nothing but op ids.
    fn on_reconcile(&mut self, from: P, query: &[u8], out: &mut Vec<Action<P>>) {
        let set = self.op_set();
        if let Ok(reply) = reconcile::answer(&set, query) {
            out.push(Action::Send {
                to: from,
                msg: Message::ReconcileReply(reply),
            });
        }
    }

    /// Reads the answer to this driver's query: sends the peer the ops it lacks, asks it for
    /// those this node lacks, and sends the next query if the ranges do not agree yet.
    fn on_reconcile_reply(&mut self, from: P, reply: &[u8], now: i64, out: &mut Vec<Action<P>>) {
        let Some(mut session) = self.peers.get_mut(&from).and_then(|p| p.session.take()) else {
            return;
        };
        let Ok(step) = reconcile::step(&session.set, reply) else {
            return;
        };
        let budget = self.config.max_sync_ops.saturating_sub(session.ops);
        // What the peer lacks, parents first.
        let have: crate::log::CidSet = step.have.into_iter().take(budget).collect();
        let order = self.log.topo_order(&have);
        session.ops += order.len();
        self.send_ops(&from, &order, out);
        // What this node lacks: ask the peer for it (tracked as wants while there is room).
        let budget = self.config.max_sync_ops.saturating_sub(session.ops);
        let need: Vec<Cid> = step
            .need
            .into_iter()
            .filter(|id| !self.log.contains(id))
            .take(budget)
            .collect();
        session.ops += need.len();
        self.fetch(&from, need, now, out);
        if let Some(query) = step.next
            && session.rounds < self.config.max_sync_rounds
            && session.ops < self.config.max_sync_ops
        {
            session.rounds += 1;
            if let Some(p) = self.peers.get_mut(&from) {
                p.session = Some(session);
            }
            out.push(Action::Send {
                to: from,
                msg: Message::Reconcile(query),
            });
        }
    }

    /// Asks a peer for ops a reconciliation found missing: all of them, in messages of at
    /// most [`MAX_CIDS_PER_MESSAGE`] ids; those that fit under [`DriverConfig::max_wants`] are
    /// tracked (asked again elsewhere if unanswered), the others are left to the next
    /// exchange if this peer does not answer.
    fn fetch(&mut self, from: &P, ids: Vec<Cid>, now: i64, out: &mut Vec<Action<P>>) {
        for id in &ids {
            if self.wants.len() >= self.config.max_wants {
                break;
            }
            self.wants.entry(*id).or_insert_with(|| Wanted {
                asked: Some(from.clone()),
                at: now,
                tries: 1,
            });
        }
        for chunk in ids.chunks(MAX_CIDS_PER_MESSAGE) {
            out.push(Action::Send {
                to: from.clone(),
                msg: Message::Want(chunk.to_vec()),
            });
        }
    }

    fn on_ops(&mut self, from: P, ops: Vec<Vec<u8>>, now: i64, out: &mut Vec<Action<P>>) {
        use rayon::prelude::*;
        let ops = &ops[..ops.len().min(MAX_OPS_PER_MESSAGE)];
        // The ops this node must check (neither known, rejected, held nor remembered by the
        // cache) are checked on every core first: a catch-up's replies carry hundreds of
        // ops, each signature check ~60 µs. Decoding is a function of the bytes alone, so the
        // driver's behaviour is the same as checking them one by one below.
        let ids: Vec<Cid> = ops.iter().map(|b| cids::cid_for_cbor(b)).collect();
        let fresh: Vec<usize> = (0..ops.len())
            .filter(|&i| {
                let id = &ids[i];
                !self.log.contains(id)
                    && !self.rejected.contains_key(id)
                    && !self.held.contains_key(id)
                    && self.cache.as_ref().is_none_or(|c| !c.contains(id))
            })
            .collect();
        let relay = self.config.relay_synced && fresh.len() <= self.config.relay_synced_max;
        let mut decoded: Vec<Option<Result<SignedOp, OpError>>> = vec![None; ops.len()];
        // Only a catch-up's large replies: gossip brings one op at a time, and a driver runs
        // on an async runtime's thread, which should not wait on other threads for it.
        if fresh.len() >= PARALLEL_CHECK_MIN {
            let results: Vec<Result<SignedOp, OpError>> = fresh
                .par_iter()
                .map(|&i| SignedOp::decode(&ops[i]))
                .collect();
            for (i, r) in fresh.into_iter().zip(results) {
                if let Some(cache) = &self.cache {
                    cache.store(ids[i], r.clone());
                }
                decoded[i] = Some(r);
            }
        }
        for ((bytes, id), pre) in ops.iter().zip(ids).zip(decoded) {
            self.receive_op_with(Some(&from), id, bytes, pre, now, relay, out);
        }
    }

    /// Starts a sync exchange: sends the first reconciliation query.
    fn start_sync(&mut self, peer: &P, out: &mut Vec<Action<P>>) {
        let set = self.op_set();
        let Ok(query) = reconcile::initiate(&set) else {
            return;
        };
        if let Some(p) = self.peers.get_mut(peer) {
            p.session = Some(Session {
                set,
                rounds: 1,
                ops: 0,
            });
        }
        out.push(Action::Send {
            to: peer.clone(),
            msg: Message::Reconcile(query),
        });
    }

    /// The first ops of `ops` that fit one reply.
    fn chunk<'a>(&self, ops: impl Iterator<Item = std::borrow::Cow<'a, [u8]>>) -> Vec<Vec<u8>> {
        let max_ops = self.config.max_ops_per_reply.clamp(1, MAX_OPS_PER_MESSAGE);
        let max_bytes = self
            .config
            .max_reply_bytes
            .min(MAX_MESSAGE_BYTES - MESSAGE_OVERHEAD);
        let mut total = 0usize;
        let mut chunk = Vec::new();
        for bytes in ops {
            let len = bytes.len();
            if chunk.len() >= max_ops || (!chunk.is_empty() && total + len > max_bytes) {
                break;
            }
            total += len;
            chunk.push(bytes.into_owned());
        }
        chunk
    }

    fn on_tick(&mut self, now: i64, out: &mut Vec<Action<P>>) {
        if self.wake.is_some_and(|at| at <= now) {
            self.wake = None;
        }
        if self.next_sync.is_some_and(|at| at <= now) {
            match self.random_peer() {
                Some(peer) => {
                    self.start_sync(&peer, out);
                    self.next_sync = Some(self.next_sync_time(now));
                }
                None => self.next_sync = None,
            }
        }
        self.retry_wants(now, out);
        self.release_early(now, out);
        let ttl = self.config.held_ttl_micros;
        self.held.retain(|_, h| now.saturating_sub(h.at) <= ttl);
    }

    /// Inserts the deferred ops whose date this node's clock has caught up with.
    fn release_early(&mut self, now: i64, out: &mut Vec<Action<P>>) {
        while let Some(entry) = self.early.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let held = entry.remove();
            if !self.log.contains(held.op.id()) {
                self.insert(held.from.as_ref(), held.op, now, true, out);
            }
        }
    }

    /// Asks again, of the next peer, for every want unanswered past the timeout; gives up on
    /// those asked [`DriverConfig::want_tries`] times.
    fn retry_wants(&mut self, now: i64, out: &mut Vec<Action<P>>) {
        let timeout = self.config.request_timeout_micros;
        let due: Vec<Cid> = self
            .wants
            .iter()
            .filter(|(_, w)| now.saturating_sub(w.at) >= timeout)
            .map(|(id, _)| *id)
            .collect();
        let mut asks: BTreeMap<P, Vec<Cid>> = BTreeMap::new();
        for id in due {
            let Some(want) = self.wants.get(&id) else {
                continue;
            };
            if want.tries >= self.config.want_tries || self.log.contains(&id) {
                self.wants.remove(&id);
                continue;
            }
            let next = self.next_peer(want.asked.as_ref());
            if let Some(want) = self.wants.get_mut(&id) {
                want.tries += 1;
                want.at = now;
                want.asked = next.clone();
            }
            if let Some(peer) = next {
                asks.entry(peer).or_default().push(id);
            }
        }
        for (to, ids) in asks {
            for chunk in ids.chunks(MAX_CIDS_PER_MESSAGE) {
                out.push(Action::Send {
                    to: to.clone(),
                    msg: Message::Want(chunk.to_vec()),
                });
            }
        }
    }

    /// The connected peer after `after` in id order (wrapping), or the first one.
    fn next_peer(&self, after: Option<&P>) -> Option<P> {
        let next = after.and_then(|after| {
            self.peers
                .range((Bound::Excluded(after), Bound::Unbounded))
                .next()
        });
        next.or_else(|| self.peers.iter().next())
            .map(|(p, _)| p.clone())
    }

    fn random_peer(&mut self) -> Option<P> {
        let n = self.peers.len() as u64;
        if n == 0 {
            return None;
        }
        let i = self.rng.below(n) as usize;
        self.peers.keys().nth(i).cloned()
    }

    fn next_sync_time(&mut self, now: i64) -> i64 {
        let jitter = self.config.sync_jitter_micros.max(0) as u64;
        let extra = self.rng.below(jitter.saturating_add(1)) as i64;
        now.saturating_add(self.config.sync_interval_micros.max(1))
            .saturating_add(extra)
    }

    /// Emits [`Action::Wake`] when the next deadline changed.
    fn schedule(&mut self, out: &mut Vec<Action<P>>) {
        let timeout = self.config.request_timeout_micros;
        let sync = self.next_sync.filter(|_| !self.peers.is_empty());
        let wants = self
            .wants
            .values()
            .map(|w| w.at.saturating_add(timeout))
            .min();
        let early = self.early.keys().next().map(|(at, _)| *at);
        let next = [sync, wants, early].into_iter().flatten().min();
        if let Some(at) = next
            && self.wake != Some(at)
        {
            self.wake = Some(at);
            out.push(Action::Wake { at_micros: at });
        }
    }
}
