//! Builder feeds on a steward's node (protocol.md §7): the feed log, persisted in the node's
//! store, the events derived from the collectives' state, the live subscribers, and builder
//! logins. The rules (frames, `seq`, the window, cursors, challenges) are guild-feed's; what
//! is decided here is the node's: which events a builder sees (those of the agreements it is
//! the builder of), how many events a subscriber may lag behind (its queue), and when the
//! log is refreshed (each pass of the daemon's bundle loop).
//!
//! The log lives in one key-value tree, [`TREE`], so that an event, its source and the next
//! `seq` are written in one atomic batch: `e/<seq, 8 bytes big-endian>` → the event as a
//! binary frame; `s/<source>` → its `seq`; `m/next` and `m/pruned` → `u64` big-endian.
//!
//! Subscribing and publishing take the same lock: a subscriber registers its queue and takes
//! its replay under it, so it misses nothing between the two and gets nothing twice.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use cid::Cid;
use guild_core::syntax::{Datetime, Did};
use guild_feed::{
    AgreementEvent, AuthError, BundleEvent, Challenge, Event, FeedLog, Frame, Gate, InfoEvent,
    RecordRef, Retention, RevocationEvent, Session, Start,
};
use guild_gov::body::CidRef;
use guild_gov::state::AgreementStatus;
use guild_store::KvOp;
use tokio::sync::mpsc;

use crate::bundles::{BundleStatus, Stewardship};
use crate::deliveries::{Delivery, DeliveryLog};
use crate::engine::CollectiveEngine;
use crate::service::{NodeStore, RepoService};

/// The key-value tree of the feed log.
pub const TREE: &str = "feed";

/// The feed's settings.
#[derive(Debug, Clone, Copy)]
pub struct FeedConfig {
    /// How long events stay replayable, and how many at most.
    pub retention: Retention,
    /// Events a subscriber may lag behind before it is dropped (`ConsumerTooSlow`).
    pub queue: usize,
    /// How long a login challenge lives, in microseconds.
    pub challenge_ttl_micros: i64,
    /// How long a bearer token lives, in microseconds.
    pub token_ttl_micros: i64,
    /// Challenges pending at once, at most.
    pub max_challenges: usize,
    /// Logins (challenges and sign-ins) and downloads one client address may start per
    /// minute (a burst of as many, then that rate).
    pub requests_per_minute: u32,
    /// How long the delivery log ([`crate::deliveries`]) keeps an entry, in microseconds.
    pub delivery_retention_micros: i64,
}

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig {
            retention: Retention::default(),
            queue: 256,
            challenge_ttl_micros: 120 * 1_000_000,
            token_ttl_micros: 3600 * 1_000_000,
            max_challenges: 10_000,
            requests_per_minute: 60,
            delivery_retention_micros: 30 * 24 * 3600 * 1_000_000,
        }
    }
}

/// Why a feed call failed.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The store failed, or holds a feed log this version cannot read.
    #[error("feed log: {0}")]
    Store(String),
    /// The cursor is ahead of the stream.
    #[error("the cursor {cursor} is ahead of the stream (latest seq {latest})")]
    FutureCursor {
        /// The cursor asked for.
        cursor: u64,
        /// The last `seq` issued.
        latest: u64,
    },
    /// Authentication failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The operating system gave no random bytes.
    #[error("no random bytes: {0}")]
    Random(String),
    /// The delivery log failed.
    #[error(transparent)]
    Delivery(#[from] crate::deliveries::DeliveryError),
    /// Too many requests from one address.
    #[error("too many requests from {ip}; retry in {retry_after_ms} ms")]
    RateLimited {
        /// The client's address.
        ip: std::net::IpAddr,
        /// When it may try again.
        retry_after_ms: u64,
    },
}

fn store_err(e: impl std::fmt::Display) -> FeedError {
    FeedError::Store(e.to_string())
}

/// A subscriber's queue.
struct Sub {
    builder: Did,
    tx: mpsc::Sender<Event>,
    slow: Arc<AtomicBool>,
}

struct Inner {
    log: FeedLog,
    subs: Vec<Sub>,
    /// Each agreement's builder.
    builders: BTreeMap<Cid, Did>,
}

/// A new subscription: what to send first, then the live queue.
#[derive(Debug)]
pub struct Subscription {
    /// `#info OutdatedCursor`, when the cursor is older than the window.
    pub info: Option<InfoEvent>,
    /// The builder's events after the cursor, oldest first.
    pub replay: Vec<Event>,
    /// Live events, in `seq` order, after the replay. It ends when the node drops the
    /// subscriber: see [`Subscription::too_slow`].
    pub live: mpsc::Receiver<Event>,
    /// The number the node gives this subscription in its delivery log.
    pub connection: u64,
    slow: Arc<AtomicBool>,
}

impl Subscription {
    /// Whether the node dropped this subscriber for lagging more than its queue.
    pub fn too_slow(&self) -> bool {
        self.slow.load(Ordering::Acquire)
    }
}

/// The feed log, its subscribers and the logins (see the module doc): what the API serves.
/// Events come in through [`FeedHub::publish`]; [`Feeds`] derives them from the node's state.
pub struct FeedHub<S> {
    store: Arc<S>,
    clock: crate::Clock,
    config: FeedConfig,
    inner: Mutex<Inner>,
    gate: Mutex<Gate>,
    limiter: governor::DefaultKeyedRateLimiter<std::net::IpAddr>,
    deliveries: Arc<DeliveryLog<S>>,
    connections: AtomicU64,
}

impl<S> std::fmt::Debug for FeedHub<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedHub")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A steward node's feeds: the [`FeedHub`], fed from the collectives' state (agreements,
/// sealed bundles, revocation notices) by [`Feeds::refresh`].
pub struct Feeds<S> {
    hub: Arc<FeedHub<S>>,
    engine: Arc<dyn CollectiveEngine>,
    stewardship: Arc<Stewardship<S>>,
}

impl<S> std::fmt::Debug for Feeds<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feeds").field("hub", &self.hub).finish()
    }
}

/// Events found in the node's state, by source, with each agreement's builder.
#[derive(Debug, Default)]
pub struct Found {
    /// `(source, event)`: the event as derived (its `seq` and `time` are the log's to set).
    pub events: Vec<(String, Event)>,
    /// Each agreement's builder.
    pub builders: BTreeMap<Cid, Did>,
}

fn seq_key(seq: u64) -> Vec<u8> {
    let mut k = b"e/".to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn u64_of(bytes: &[u8], what: &str) -> Result<u64, FeedError> {
    let b: [u8; 8] = bytes
        .try_into()
        .map_err(|_| FeedError::Store(format!("{what}: {} bytes, not 8", bytes.len())))?;
    Ok(u64::from_be_bytes(b))
}

fn random() -> Result<[u8; 32], FeedError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| FeedError::Random(e.to_string()))?;
    Ok(b)
}

fn status_name(s: &AgreementStatus) -> &'static str {
    match s {
        AgreementStatus::Offered => "offered",
        AgreementStatus::Accepted(_) => "accepted",
        AgreementStatus::InForce(_) => "in-force",
    }
}

impl<S: NodeStore> Feeds<S> {
    /// The feeds of the node whose DID is `audience`, their log read back from the store.
    pub fn open(
        service: Arc<RepoService<S>>,
        engine: Arc<dyn CollectiveEngine>,
        stewardship: Arc<Stewardship<S>>,
        audience: &str,
        config: FeedConfig,
    ) -> Result<Self, FeedError> {
        let hub = FeedHub::open(
            service.store().clone(),
            service.clock().clone(),
            audience,
            config,
        )?;
        Ok(Feeds {
            hub: Arc::new(hub),
            engine,
            stewardship,
        })
    }

    /// The hub the API serves.
    pub fn hub(&self) -> &Arc<FeedHub<S>> {
        &self.hub
    }

    /// Derives the events the collectives' state calls for and publishes those not logged
    /// yet (see [`FeedHub::publish`]). Returns how many were logged.
    pub async fn refresh(&self) -> Result<usize, FeedError> {
        let found = self.derive().await?;
        self.hub.publish(found)
    }

    /// The events the collectives' state calls for: each agreement's current state, each
    /// sealed bundle this node packaged, each revocation notice.
    pub async fn derive(&self) -> Result<Found, FeedError> {
        let mut found = Found::default();
        let blank = Datetime::from_unix_micros(0);
        for c in self.engine.collectives().await.map_err(store_err)? {
            let status = self.engine.status(c).await.map_err(store_err)?;
            let mut duty: BTreeMap<Cid, String> = BTreeMap::new();
            for (id, a) in status.state.agreements.iter() {
                found.builders.insert(*id, a.builder.clone());
                duty.insert(*id, a.terms.on_termination.clone());
                let state = status_name(&a.status);
                let op = match &a.status {
                    AgreementStatus::Offered => *id,
                    AgreementStatus::Accepted(op) | AgreementStatus::InForce(op) => *op,
                };
                found.events.push((
                    format!("agreement:{id}:{state}"),
                    Event::Agreement(AgreementEvent {
                        collective: Some(CidRef(c)),
                        seq: 0,
                        time: blank.clone(),
                        agreement: CidRef(*id),
                        state: state.to_owned(),
                        op: Some(CidRef(op)),
                    }),
                ));
            }
            // No agreement, nothing to announce (and no log to read for bundles or notices).
            if status.state.agreements.is_empty() {
                continue;
            }
            for b in self.stewardship.list(c).await.map_err(store_err)? {
                let (BundleStatus::Sealed, Some(manifest), Some((_, size)), Some((records, _))) =
                    (b.status, b.manifest, b.car, b.records)
                else {
                    continue;
                };
                found.events.push((
                    format!("bundle:{manifest}"),
                    Event::Bundle(BundleEvent {
                        collective: Some(CidRef(c)),
                        seq: 0,
                        time: blank.clone(),
                        agreement: CidRef(b.agreement),
                        bundle: CidRef(manifest),
                        size,
                        records,
                    }),
                ));
            }
            for n in self
                .stewardship
                .revocation_notices(c)
                .await
                .map_err(store_err)?
            {
                // (a notice's agreement is in the state it was derived from)
                let Some(duty) = duty.get(&n.agreement).cloned() else {
                    continue;
                };
                // The lexicon bounds an event's records: a large notice is several events.
                let records: Vec<RecordRef> = n
                    .records
                    .iter()
                    .map(|(uri, cid)| RecordRef {
                        uri: uri.clone(),
                        cid: CidRef(*cid),
                    })
                    .collect();
                for (i, part) in records
                    .chunks(guild_feed::event::MAX_REVOCATION_RECORDS)
                    .enumerate()
                {
                    found.events.push((
                        format!("revocation:{}:{}:{i}", n.revocation, n.bundle),
                        Event::Revocation(RevocationEvent {
                            collective: Some(CidRef(c)),
                            seq: 0,
                            time: blank.clone(),
                            agreement: CidRef(n.agreement),
                            member: n.member.clone(),
                            revoke: CidRef(n.revocation),
                            effective_from: n.at.clone(),
                            records: part.to_vec(),
                            duty: duty.clone(),
                        }),
                    ));
                }
            }
        }
        Ok(found)
    }
}

impl<S: NodeStore> FeedHub<S> {
    /// A hub over `store` (its log read back from it), for the node whose DID is
    /// `audience`, reading time from `clock`.
    pub fn open(
        store: Arc<S>,
        clock: crate::Clock,
        audience: &str,
        config: FeedConfig,
    ) -> Result<Self, FeedError> {
        let log = load(store.as_ref(), config.retention)?;
        let deliveries = Arc::new(DeliveryLog::open(
            store.clone(),
            config.delivery_retention_micros,
        )?);
        Ok(FeedHub {
            deliveries,
            connections: AtomicU64::new(1),
            gate: Mutex::new(Gate::new(
                audience,
                config.challenge_ttl_micros,
                config.token_ttl_micros,
                config.max_challenges,
            )),
            limiter: governor::RateLimiter::keyed(governor::Quota::per_minute(
                std::num::NonZeroU32::new(config.requests_per_minute.max(1))
                    .unwrap_or(std::num::NonZeroU32::MIN),
            )),
            store,
            clock,
            config,
            inner: Mutex::new(Inner {
                log,
                subs: Vec::new(),
                builders: BTreeMap::new(),
            }),
        })
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> i64 {
        self.clock.now_micros()
    }

    /// "Now" by the node's clock, in microseconds.
    pub fn now_micros(&self) -> i64 {
        self.now()
    }

    /// The delivery log.
    pub fn deliveries(&self) -> &Arc<DeliveryLog<S>> {
        &self.deliveries
    }

    /// Appends `entries` to the delivery log on a blocking thread of the current runtime,
    /// without waiting for it (a failure is logged); without a runtime, right here.
    pub fn record(&self, entries: Vec<Delivery>) {
        if entries.is_empty() {
            return;
        }
        let log = self.deliveries.clone();
        let now = self.now();
        let write = move || {
            if let Err(e) = log.append(entries, now) {
                tracing::error!("cannot record deliveries: {e}");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn_blocking(write);
            }
            Err(_) => write(),
        }
    }

    /// The last `seq` issued.
    pub fn last_seq(&self) -> u64 {
        self.inner().log.last_seq()
    }

    /// Whether a client at `ip` may start a login or a download now (see
    /// [`FeedConfig::requests_per_minute`]).
    pub fn allow(&self, ip: std::net::IpAddr) -> Result<(), FeedError> {
        use governor::clock::Clock as _;
        self.limiter.check_key(&ip).map_err(|not_until| {
            let now = governor::clock::DefaultClock::default().now();
            FeedError::RateLimited {
                ip,
                retry_after_ms: not_until.wait_time_from(now).as_millis() as u64,
            }
        })?;
        // Addresses that are back to a full allowance are forgotten (bounded memory).
        if self.limiter.len() > 10_000 {
            self.limiter.retain_recent();
        }
        Ok(())
    }

    /// Every event in the window (oldest first), whoever it is for.
    pub fn events(&self) -> Vec<Event> {
        self.inner().log.events().cloned().collect()
    }

    /// The builder of an agreement, as last published.
    pub fn builder_of(&self, agreement: &Cid) -> Option<Did> {
        self.inner().builders.get(agreement).cloned()
    }

    /// Logs the events not logged yet (durably, in one batch, before any subscriber sees
    /// them), hands them to the subscribers of their agreements' builders (dropping a
    /// subscriber whose queue is full: `ConsumerTooSlow`), and prunes the window. Returns
    /// how many were logged.
    pub fn publish(&self, found: Found) -> Result<usize, FeedError> {
        let now_micros = self.now();
        let now = Datetime::from_unix_micros(now_micros);
        let store = self.store.clone();
        let mut inner = self.inner();
        inner.builders = found.builders;
        // Appended to a copy first: the live log changes only once the batch is durable.
        let mut log = inner.log.clone();
        let mut new = Vec::new();
        let mut ops = Vec::new();
        for (source, event) in found.events {
            if let Some(e) = log.append(&source, event, &now) {
                let seq = e.seq().unwrap_or(0);
                let frame = Frame::Message(e.clone()).to_cbor().map_err(store_err)?;
                ops.push(KvOp::Put(seq_key(seq), frame.into()));
                let mut k = b"s/".to_vec();
                k.extend_from_slice(source.as_bytes());
                ops.push(KvOp::Put(k, seq.to_be_bytes().to_vec().into()));
                new.push(e);
            }
        }
        for seq in log.prune(now_micros) {
            ops.push(KvOp::Delete(seq_key(seq)));
        }
        if ops.is_empty() {
            return Ok(0);
        }
        ops.push(KvOp::Put(
            b"m/next".to_vec(),
            log.next_seq().to_be_bytes().to_vec().into(),
        ));
        ops.push(KvOp::Put(
            b"m/pruned".to_vec(),
            log.pruned_through().to_be_bytes().to_vec().into(),
        ));
        // (a short synchronous write under the lock: publishing and subscribing wait for it,
        // which is what keeps the replay and the live queue seamless)
        store.kv_apply(TREE, &ops).map_err(store_err)?;
        inner.log = log;
        let count = new.len();
        let Inner { subs, builders, .. } = &mut *inner;
        for e in new {
            let Some(builder) = e.agreement().and_then(|a| builders.get(a)) else {
                continue;
            };
            subs.retain(|s| {
                if s.builder != *builder {
                    return !s.tx.is_closed();
                }
                match s.tx.try_send(e.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        s.slow.store(true, Ordering::Release);
                        tracing::info!(builder = %s.builder, "feed subscriber too slow: dropped");
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                }
            });
        }
        if count > 0 {
            tracing::info!(
                events = count,
                last_seq = inner.log.last_seq(),
                "feed events"
            );
        }
        Ok(count)
    }

    /// Subscribes `builder` from `cursor` (see [`guild_feed::Start`]).
    pub fn subscribe(&self, builder: &Did, cursor: Option<u64>) -> Result<Subscription, FeedError> {
        let mut inner = self.inner();
        let mine = |inner: &Inner, e: &Event| {
            e.agreement()
                .and_then(|a| inner.builders.get(a))
                .is_some_and(|b| b == builder)
        };
        let (info, after) = match inner.log.start(cursor) {
            Start::Future { latest } => {
                return Err(FeedError::FutureCursor {
                    cursor: cursor.unwrap_or(0),
                    latest,
                });
            }
            Start::Live { after } | Start::Replay { after } => (None, after),
            Start::Outdated { after } => (
                Some(InfoEvent {
                    name: "OutdatedCursor".into(),
                    message: Some(format!(
                        "the cursor is older than the window (events up to seq {after} are \
                         gone); replaying the whole window"
                    )),
                }),
                after,
            ),
        };
        let replay: Vec<Event> = inner
            .log
            .after(after)
            .filter(|e| mine(&inner, e))
            .cloned()
            .collect();
        let (tx, live) = mpsc::channel(self.config.queue.max(1));
        let slow = Arc::new(AtomicBool::new(false));
        inner.subs.push(Sub {
            builder: builder.clone(),
            tx,
            slow: slow.clone(),
        });
        Ok(Subscription {
            info,
            replay,
            live,
            connection: self.connections.fetch_add(1, Ordering::Relaxed),
            slow,
        })
    }

    /// Live subscribers now.
    pub fn subscribers(&self) -> usize {
        let mut inner = self.inner();
        inner.subs.retain(|s| !s.tx.is_closed());
        inner.subs.len()
    }

    /// A login challenge.
    pub fn challenge(&self) -> Result<Challenge, FeedError> {
        let r = random()?;
        let now = self.now();
        Ok(self
            .gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .challenge(r, now)?)
    }

    /// Redeems a signed challenge for a session.
    pub fn login(&self, did: &Did, nonce: &str, signature: &[u8]) -> Result<Session, FeedError> {
        let r = random()?;
        let now = self.now();
        Ok(self
            .gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .login(did, nonce, signature, r, now)?)
    }

    /// The builder a bearer token stands for.
    pub fn authenticate(&self, token: &str) -> Result<Did, FeedError> {
        let now = self.now();
        Ok(self
            .gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .check(token, now)?)
    }
}

/// Reads the feed log back from the store.
fn load<S: NodeStore>(store: &S, retention: Retention) -> Result<FeedLog, FeedError> {
    let meta = |key: &[u8], default: u64| -> Result<u64, FeedError> {
        match store.kv_get(TREE, key).map_err(store_err)? {
            Some(b) => u64_of(&b, &String::from_utf8_lossy(key)),
            None => Ok(default),
        }
    };
    let (next, pruned) = (meta(b"m/next", 1)?, meta(b"m/pruned", 0)?);
    let mut events = Vec::new();
    scan_all(store, b"e/", |k, v| {
        let seq = u64_of(k, "an event key")?;
        match Frame::from_cbor(v) {
            Ok(Frame::Message(e)) if e.seq() == Some(seq) => {
                events.push(e);
                Ok(())
            }
            Ok(_) => Err(FeedError::Store(format!("event {seq}: not its event"))),
            Err(e) => Err(FeedError::Store(format!("event {seq}: {e}"))),
        }
    })?;
    let mut sources = Vec::new();
    scan_all(store, b"s/", |k, _| {
        let s = std::str::from_utf8(k)
            .map_err(|_| FeedError::Store("a source key is not UTF-8".into()))?;
        sources.push(s.to_owned());
        Ok(())
    })?;
    FeedLog::restore(retention, next, pruned, events, sources).map_err(store_err)
}

/// Every entry of [`TREE`] under `prefix`, in key order, a page at a time: `f` gets each key
/// without the prefix, and its value.
fn scan_all<S: NodeStore>(
    store: &S,
    prefix: &[u8],
    mut f: impl FnMut(&[u8], &[u8]) -> Result<(), FeedError>,
) -> Result<(), FeedError> {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store
            .kv_scan(TREE, prefix, after.as_deref(), 1000)
            .map_err(store_err)?;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        after = Some(last.clone());
        for (k, v) in &page {
            f(k.get(prefix.len()..).unwrap_or(&[]), v)?;
        }
    }
}
