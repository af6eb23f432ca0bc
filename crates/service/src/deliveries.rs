//! The delivery log of a steward's node: which builder got what, and when. One entry per
//! authorised bundle download (`coop.guild.bundle.get`: the file, the range asked for, the
//! status, the bytes the node actually handed to the connection and whether the body was sent
//! to its end), and one per feed event sent to a builder over its subscription (`#bundle`,
//! `#revocation`, `#agreement`; `#info` is about the stream and is not logged).
//!
//! "Sent" means handed to the connection (the socket took the frame, the body's last chunk was
//! written): the node cannot know what the builder's machine kept. The builder's signed
//! receipt (`coop.guild.bundle.receipt`) is the proof of receipt; this log is the node's own
//! account, for the stewards.
//!
//! Append-only, in its own key-value tree, [`TREE`]: `d/<seq, 8 bytes big-endian>` → the
//! entry as JSON ([`Delivery`], with its `version`), `m/next` → the next `seq`. Entries and
//! the next `seq` are written in one atomic batch; entries older than the retention
//! (`[feeds] delivery_retention_days`) are deleted, oldest first, in the same batches.
//! Nothing else ever changes an entry.
//!
//! Writes never hold the feed's lock and never run on the subscription's send path: a
//! subscription buffers the events it sent and hands them over in one batch every
//! [`FLUSH_EVERY`] events, at each heartbeat and when it ends; the caller runs
//! [`DeliveryLog::append`] on a blocking thread.

use std::sync::{Arc, Mutex, PoisonError};

use guild_store::KvOp;
use serde::{Deserialize, Serialize};

use crate::service::NodeStore;

/// The key-value tree of the delivery log.
pub const TREE: &str = "deliveries";

/// The version of the stored entries this code writes and reads.
pub const VERSION: u32 = 1;

/// A subscription hands its sent events to the log at least every this many events.
pub const FLUSH_EVERY: usize = 64;

/// Entries deleted per append at most (the rest go with the next appends).
const PRUNE_BATCH: usize = 256;

/// One delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The entry format's version ([`VERSION`]).
    pub version: u32,
    /// Its place in the log (set by [`DeliveryLog::append`]).
    pub seq: u64,
    /// The builder's DID.
    pub builder: String,
    /// When, by the node's clock (microseconds since the Unix epoch).
    pub time_micros: i64,
    /// The client's address, when the server knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// What was delivered.
    pub what: Delivered,
}

/// What a delivery was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Delivered {
    /// A file of a sealed bundle, downloaded.
    #[serde(rename_all = "camelCase")]
    Download {
        /// The bundle's manifest CID.
        bundle: String,
        /// Which file: `car` (the bundle itself), `croissant`, `card` or `disclosure`.
        file: String,
        /// The `Range` header the request sent, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        range: Option<String>,
        /// The HTTP status answered (200, 206, 304, 416).
        status: u16,
        /// The body's bytes handed to the connection.
        bytes: u64,
        /// Whether the body was sent to its end (false: the client went away).
        complete: bool,
    },
    /// A feed event, sent over the builder's subscription.
    #[serde(rename_all = "camelCase")]
    Event {
        /// The event's `seq` in the feed log.
        event_seq: u64,
        /// Its type: `#bundle`, `#revocation`, `#agreement`.
        event_type: String,
        /// The bundle a `#bundle` event announces.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bundle: Option<String>,
        /// The subscription it was sent on (a number the node gives each connection, unique
        /// while it runs).
        connection: u64,
    },
}

impl Delivery {
    /// The bundle this delivery concerns, if any.
    pub fn bundle(&self) -> Option<&str> {
        match &self.what {
            Delivered::Download { bundle, .. } => Some(bundle),
            Delivered::Event { bundle, .. } => bundle.as_deref(),
        }
    }
}

/// Why the delivery log failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The store failed, or holds an entry this version cannot read.
    #[error("delivery log: {0}")]
    Store(String),
}

fn store_err(e: impl std::fmt::Display) -> DeliveryError {
    DeliveryError::Store(e.to_string())
}

fn entry_key(seq: u64) -> Vec<u8> {
    let mut k = b"d/".to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// A page of the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// The entries, oldest first.
    pub deliveries: Vec<Delivery>,
    /// The `seq` to continue after, when there may be more.
    pub cursor: Option<u64>,
}

/// Which entries to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this builder's.
    pub builder: Option<String>,
    /// Only those of this bundle (downloads of it, `#bundle` events announcing it).
    pub bundle: Option<String>,
}

/// The delivery log over the node's store (see the module doc).
pub struct DeliveryLog<S> {
    store: Arc<S>,
    /// Entries older than this leave the log (microseconds).
    retention_micros: i64,
    /// The next `seq`; held while a batch is written, so that `seq`s follow write order.
    next: Mutex<u64>,
}

impl<S> std::fmt::Debug for DeliveryLog<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryLog")
            .field("retention_micros", &self.retention_micros)
            .finish_non_exhaustive()
    }
}

impl<S: NodeStore> DeliveryLog<S> {
    /// The log in `store`, keeping entries `retention_micros`.
    pub fn open(store: Arc<S>, retention_micros: i64) -> Result<Self, DeliveryError> {
        let next = match store.kv_get(TREE, b"m/next").map_err(store_err)? {
            Some(b) => {
                let b: [u8; 8] = b.as_ref().try_into().map_err(|_| {
                    DeliveryError::Store(format!("m/next: {} bytes, not 8", b.len()))
                })?;
                u64::from_be_bytes(b)
            }
            None => 1,
        };
        Ok(DeliveryLog {
            store,
            retention_micros,
            next: Mutex::new(next),
        })
    }

    /// Appends `entries` (their `seq` and `version` are set here) in one atomic, durable
    /// batch, with the deletion of entries older than the retention at `now_micros`. A
    /// blocking call: run it off the async runtime.
    pub fn append(&self, entries: Vec<Delivery>, now_micros: i64) -> Result<(), DeliveryError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let mut seq = *next;
        let mut ops = Vec::with_capacity(entries.len() + 2);
        for mut e in entries {
            e.seq = seq;
            e.version = VERSION;
            let json = serde_json::to_vec(&e).map_err(store_err)?;
            ops.push(KvOp::Put(entry_key(seq), json.into()));
            seq += 1;
        }
        let cutoff = now_micros.saturating_sub(self.retention_micros);
        for (k, v) in self
            .store
            .kv_scan(TREE, b"d/", None, PRUNE_BATCH)
            .map_err(store_err)?
        {
            match serde_json::from_slice::<Delivery>(&v) {
                Ok(old) if old.time_micros < cutoff => ops.push(KvOp::Delete(k)),
                _ => break,
            }
        }
        ops.push(KvOp::Put(
            b"m/next".to_vec(),
            seq.to_be_bytes().to_vec().into(),
        ));
        self.store.kv_apply(TREE, &ops).map_err(store_err)?;
        *next = seq;
        Ok(())
    }

    /// Entries after `cursor` that pass `filter`, oldest first, at most `limit`; at most
    /// `scan_budget` entries are read per call (the page then ends early with a cursor).
    pub fn list(
        &self,
        filter: &Filter,
        cursor: Option<u64>,
        limit: usize,
        scan_budget: usize,
    ) -> Result<Page, DeliveryError> {
        let mut page = Page::default();
        let mut after = cursor.map(entry_key);
        let mut read = 0usize;
        loop {
            let batch = self
                .store
                .kv_scan(TREE, b"d/", after.as_deref(), 256)
                .map_err(store_err)?;
            let Some((last, _)) = batch.last() else {
                return Ok(page);
            };
            after = Some(last.clone());
            for (k, v) in &batch {
                read += 1;
                let d: Delivery = serde_json::from_slice(v).map_err(|e| {
                    DeliveryError::Store(format!("entry {}: {e}", String::from_utf8_lossy(k)))
                })?;
                if d.version != VERSION {
                    return Err(DeliveryError::Store(format!(
                        "entry {}: version {}, this node reads {VERSION}",
                        d.seq, d.version
                    )));
                }
                let seq = d.seq;
                let keep = filter.builder.as_ref().is_none_or(|b| *b == d.builder)
                    && filter
                        .bundle
                        .as_ref()
                        .is_none_or(|b| d.bundle() == Some(b.as_str()));
                if keep {
                    page.deliveries.push(d);
                }
                if page.deliveries.len() >= limit || read >= scan_budget {
                    page.cursor = Some(seq);
                    return Ok(page);
                }
            }
        }
    }
}
