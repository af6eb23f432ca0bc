//! The feed log: every event a steward's node announces to builders, with a strictly
//! increasing `seq`, each derived once (an event is keyed by its *source*, what it reports,
//! such as `bundle:<manifest>`; deriving it again from the collective's state is a no-op,
//! also after the event left the window), a retention window, and the cursor rules of
//! `subscribeRepos`. A state machine: the caller persists what [`FeedLog::append`] returns
//! and what [`FeedLog::prune`] removes, and restores with [`FeedLog::restore`].

use std::collections::{BTreeSet, VecDeque};

use guild_core::syntax::Datetime;

use crate::event::Event;

/// How long events stay replayable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Events older than this (by their `time`) leave the window.
    pub max_age_micros: i64,
    /// At most this many events stay (the oldest leave first).
    pub max_events: usize,
}

impl Default for Retention {
    /// Seven days, at most 100,000 events.
    fn default() -> Self {
        Retention {
            max_age_micros: 7 * 24 * 3600 * 1_000_000,
            max_events: 100_000,
        }
    }
}

/// Where a subscription starts, from its cursor (the last `seq` the subscriber saw).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// No cursor: live events only, those after `after`.
    Live {
        /// The last `seq` issued when the subscriber connected.
        after: u64,
    },
    /// Replay the events after `after`, then live.
    Replay {
        /// The cursor.
        after: u64,
    },
    /// The cursor is older than the window: send `#info OutdatedCursor`, then every event in
    /// the window (those after `after`), then live.
    Outdated {
        /// The `seq` just before the window.
        after: u64,
    },
    /// The cursor is ahead of the stream: a `FutureCursor` error, then close.
    Future {
        /// The last `seq` issued.
        latest: u64,
    },
}

/// A feed log (see the module doc).
#[derive(Debug, Clone)]
pub struct FeedLog {
    retention: Retention,
    /// The next `seq` to issue (the first is 1).
    next: u64,
    /// The highest `seq` that left the window (0: none did).
    pruned_through: u64,
    events: VecDeque<Event>,
    sources: BTreeSet<String>,
}

/// Why a stored log cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the stored feed log is inconsistent: {0}")]
pub struct Inconsistent(String);

impl FeedLog {
    /// An empty log.
    pub fn new(retention: Retention) -> FeedLog {
        FeedLog {
            retention,
            next: 1,
            pruned_through: 0,
            events: VecDeque::new(),
            sources: BTreeSet::new(),
        }
    }

    /// A log as stored: the next `seq` to issue, the highest `seq` pruned, the events in the
    /// window (strictly increasing `seq`, each between the two) and every source seen.
    pub fn restore(
        retention: Retention,
        next: u64,
        pruned_through: u64,
        events: Vec<Event>,
        sources: impl IntoIterator<Item = String>,
    ) -> Result<FeedLog, Inconsistent> {
        if next == 0 || pruned_through >= next {
            return Err(Inconsistent(format!(
                "next seq {next}, pruned through {pruned_through}"
            )));
        }
        let mut last = pruned_through;
        for e in &events {
            let seq = e
                .seq()
                .ok_or_else(|| Inconsistent("an #info event in the log".into()))?;
            if seq <= last || seq >= next {
                return Err(Inconsistent(format!(
                    "event seq {seq} after {last}, next {next}"
                )));
            }
            last = seq;
        }
        Ok(FeedLog {
            retention,
            next,
            pruned_through,
            events: events.into(),
            sources: sources.into_iter().collect(),
        })
    }

    /// The last `seq` issued (0 before the first event).
    pub fn last_seq(&self) -> u64 {
        self.next - 1
    }

    /// The next `seq` to issue.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// The highest `seq` that left the window (0: none).
    pub fn pruned_through(&self) -> u64 {
        self.pruned_through
    }

    /// Whether an event with this source was ever appended.
    pub fn has(&self, source: &str) -> bool {
        self.sources.contains(source)
    }

    /// The events in the window, oldest first.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }

    /// Appends `event` as the report of `source`, stamped with the next `seq` and `now`;
    /// returns it, or `None` when that source was already reported (or `event` is `#info`,
    /// which is not logged).
    pub fn append(&mut self, source: &str, mut event: Event, now: &Datetime) -> Option<Event> {
        if matches!(event, Event::Info(_)) || self.sources.contains(source) {
            return None;
        }
        event.stamp(self.next, now.clone());
        self.next += 1;
        self.sources.insert(source.to_owned());
        self.events.push_back(event.clone());
        Some(event)
    }

    /// Drops the events outside the window at `now_micros`; returns their `seq`s.
    pub fn prune(&mut self, now_micros: i64) -> Vec<u64> {
        let mut gone = Vec::new();
        while let Some(first) = self.events.front() {
            let old = event_micros(first)
                .is_some_and(|t| now_micros.saturating_sub(t) > self.retention.max_age_micros);
            if !(old || self.events.len() > self.retention.max_events) {
                break;
            }
            if let Some(e) = self.events.pop_front()
                && let Some(seq) = e.seq()
            {
                self.pruned_through = seq;
                gone.push(seq);
            }
        }
        gone
    }

    /// Where a subscription with `cursor` starts.
    pub fn start(&self, cursor: Option<u64>) -> Start {
        let latest = self.last_seq();
        match cursor {
            None => Start::Live { after: latest },
            Some(c) if c > latest => Start::Future { latest },
            Some(c) if c < self.pruned_through => Start::Outdated {
                after: self.pruned_through,
            },
            Some(c) => Start::Replay { after: c },
        }
    }

    /// The events with `seq` greater than `after`, oldest first.
    pub fn after(&self, after: u64) -> impl Iterator<Item = &Event> {
        let from = self
            .events
            .partition_point(|e| e.seq().is_some_and(|s| s <= after));
        self.events.range(from..)
    }
}

fn event_micros(e: &Event) -> Option<i64> {
    match e {
        Event::Bundle(b) => Some(b.time.to_unix_micros()),
        Event::Revocation(r) => Some(r.time.to_unix_micros()),
        Event::Agreement(a) => Some(a.time.to_unix_micros()),
        Event::Info(_) => None,
    }
}
