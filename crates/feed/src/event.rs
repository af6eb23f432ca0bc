//! The events of `coop.guild.feed.subscribe`, in their lexicon's shape (field names, formats,
//! limits). Each carries the `seq` the feed log gave it and the `time` it was emitted.

use guild_core::syntax::{Datetime, Did};
use guild_gov::body::CidRef;
use serde::{Deserialize, Serialize};

/// Most records a `#revocation` event lists (the lexicon's `maxLength`); a revocation that
/// covers more is announced in several events.
pub const MAX_REVOCATION_RECORDS: usize = 5000;

/// A bundle was sealed for the agreement (`#bundle`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundleEvent {
    /// The event's sequence number.
    pub seq: u64,
    /// When the event was emitted.
    pub time: Datetime,
    /// The collective whose agreement it is (where a receipt goes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collective: Option<CidRef>,
    /// The agreement.
    pub agreement: CidRef,
    /// The bundle's manifest CID (fetch it with `coop.guild.bundle.get`).
    pub bundle: CidRef,
    /// The CAR's size in bytes.
    pub size: u64,
    /// How many records it holds.
    pub records: u64,
}

/// One version of a record (`coop.guild.defs#recordRef`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordRef {
    /// `at://DID/collection/rkey`.
    pub uri: String,
    /// The record version's CID.
    pub cid: CidRef,
}

/// A member revoked consent covering delivered records (`#revocation`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevocationEvent {
    /// The event's sequence number.
    pub seq: u64,
    /// When the event was emitted.
    pub time: Datetime,
    /// The collective whose agreement it is (where a receipt goes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collective: Option<CidRef>,
    /// The agreement the records were delivered under.
    pub agreement: CidRef,
    /// The member who revoked.
    pub member: Did,
    /// The consent revoke op.
    pub revoke: CidRef,
    /// From when the consent no longer applies (the revoke op's `createdAt`).
    pub effective_from: Datetime,
    /// The delivered records it covers (at most [`MAX_REVOCATION_RECORDS`]).
    pub records: Vec<RecordRef>,
    /// What the template's termination terms require of the builder (`delete-records`,
    /// `retain-trained-models`, `retain-all`; open set).
    pub duty: String,
}

/// The agreement changed state (`#agreement`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgreementEvent {
    /// The event's sequence number.
    pub seq: u64,
    /// When the event was emitted.
    pub time: Datetime,
    /// The collective whose agreement it is (where a receipt goes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collective: Option<CidRef>,
    /// The agreement.
    pub agreement: CidRef,
    /// Its new state (`offered`, `accepted`, `in-force`, `terminated`, `expired`; open set).
    pub state: String,
    /// The op that changed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<CidRef>,
}

/// Information about the stream itself (`#info`); not logged, sent to one subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfoEvent {
    /// What happened (`OutdatedCursor`; open set).
    pub name: String,
    /// A human-readable explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One event of the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `#bundle`.
    Bundle(BundleEvent),
    /// `#revocation`.
    Revocation(RevocationEvent),
    /// `#agreement`.
    Agreement(AgreementEvent),
    /// `#info`.
    Info(InfoEvent),
}

impl Event {
    /// The frame header's `t`: the union member's short name (`#bundle`, …).
    pub fn t(&self) -> &'static str {
        match self {
            Event::Bundle(_) => "#bundle",
            Event::Revocation(_) => "#revocation",
            Event::Agreement(_) => "#agreement",
            Event::Info(_) => "#info",
        }
    }

    /// Its sequence number (`#info` has none).
    pub fn seq(&self) -> Option<u64> {
        match self {
            Event::Bundle(e) => Some(e.seq),
            Event::Revocation(e) => Some(e.seq),
            Event::Agreement(e) => Some(e.seq),
            Event::Info(_) => None,
        }
    }

    /// The agreement it concerns (`#info` concerns none).
    pub fn agreement(&self) -> Option<&cid::Cid> {
        match self {
            Event::Bundle(e) => Some(&e.agreement.0),
            Event::Revocation(e) => Some(&e.agreement.0),
            Event::Agreement(e) => Some(&e.agreement.0),
            Event::Info(_) => None,
        }
    }

    /// Gives the event its sequence number and emission time (the log does, on append).
    pub(crate) fn stamp(&mut self, seq: u64, time: Datetime) {
        match self {
            Event::Bundle(e) => (e.seq, e.time) = (seq, time),
            Event::Revocation(e) => (e.seq, e.time) = (seq, time),
            Event::Agreement(e) => (e.seq, e.time) = (seq, time),
            Event::Info(_) => {}
        }
    }

    /// Checks the lexicon's limits that the types do not carry.
    pub fn check(&self) -> Result<(), String> {
        // The data model's integers are 64-bit signed.
        let int = |name: &str, v: u64| {
            if v > i64::MAX as u64 {
                Err(format!("{name}: {v} is beyond the data model's integers"))
            } else {
                Ok(())
            }
        };
        if let Some(seq) = self.seq() {
            int("seq", seq)?;
        }
        if let Event::Bundle(b) = self {
            int("size", b.size)?;
            int("records", b.records)?;
        }
        match self {
            Event::Revocation(e) => {
                if e.records.len() > MAX_REVOCATION_RECORDS {
                    return Err(format!(
                        "a revocation event lists {} records (at most {MAX_REVOCATION_RECORDS})",
                        e.records.len()
                    ));
                }
                if e.duty.len() > 64 {
                    return Err("duty: longer than 64 bytes".into());
                }
                Ok(())
            }
            Event::Agreement(e) if e.state.len() > 64 => Err("state: longer than 64 bytes".into()),
            Event::Info(e) => {
                if e.name.len() > 64 {
                    return Err("name: longer than 64 bytes".into());
                }
                if e.message.as_ref().is_some_and(|m| m.len() > 10_000) {
                    return Err("message: longer than 10000 bytes".into());
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
