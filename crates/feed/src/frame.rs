//! Event-stream frames exactly as AT Protocol's (`subscribeRepos`): each binary WebSocket
//! message is two concatenated DAG-CBOR objects, a header then a body. A message's header is
//! `{op: 1, t: "#bundle"}` and its body the event; an error's header is `{op: -1}` and its
//! body `{error, message}`, after which the server closes. A stock AT subscription client
//! decodes them unchanged. The JSON variant sends one JSON object per text message: the event
//! with `$type` (`coop.guild.feed.subscribe#bundle`), or `{error, message}`.
//!
//! Decoding is strict: both objects must be canonical DAG-CBOR (`guild_core::cbor::check`),
//! nothing may follow the body, and the body must be exactly its lexicon type.

use guild_core::cbor;
use serde::{Deserialize, Serialize};

use crate::SUBSCRIBE_NSID;
use crate::event::{AgreementEvent, BundleEvent, Event, InfoEvent, RevocationEvent};

/// A frame of the stream.
// (frames are made and sent one at a time: the size of the larger variant costs nothing)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// An event (`op: 1`).
    Message(Event),
    /// An error (`op: -1`); the stream ends after it.
    Error {
        /// Its name (`FutureCursor`, `ConsumerTooSlow`, …).
        error: String,
        /// What happened, for people.
        message: Option<String>,
    },
}

/// Why a frame could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The header or the body is not canonical DAG-CBOR, or bytes follow the body.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The header is not `{op: 1, t}` or `{op: -1}`.
    #[error("bad frame header: {0}")]
    Header(String),
    /// A message of a type this version does not know (clients skip these).
    #[error("unknown message type {0}")]
    UnknownType(String),
    /// The body does not fit its type.
    #[error("bad {t} body: {reason}")]
    Body {
        /// The message type.
        t: String,
        /// Why.
        reason: String,
    },
    /// Encoding failed (a value outside the data model).
    #[error("cannot encode the frame: {0}")]
    Encode(String),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    op: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorBody {
    error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, FrameError> {
    guild_core::data::encode_serde(v).map_err(|e| FrameError::Encode(e.to_string()))
}

impl Frame {
    /// An error frame.
    pub fn error(error: &str, message: impl Into<String>) -> Frame {
        Frame::Error {
            error: error.to_owned(),
            message: Some(message.into()),
        }
    }

    /// The binary form: header then body, DAG-CBOR.
    pub fn to_cbor(&self) -> Result<Vec<u8>, FrameError> {
        let (header, mut body) = match self {
            Frame::Message(e) => {
                e.check().map_err(FrameError::Encode)?;
                let header = Header {
                    op: 1,
                    t: Some(e.t().to_owned()),
                };
                let body = match e {
                    Event::Bundle(b) => encode(b)?,
                    Event::Revocation(r) => encode(r)?,
                    Event::Agreement(a) => encode(a)?,
                    Event::Info(i) => encode(i)?,
                };
                (encode(&header)?, body)
            }
            Frame::Error { error, message } => (
                encode(&Header { op: -1, t: None })?,
                encode(&ErrorBody {
                    error: error.clone(),
                    message: message.clone(),
                })?,
            ),
        };
        let mut out = header;
        out.append(&mut body);
        Ok(out)
    }

    /// Decodes a binary frame (strictly: see the module doc).
    pub fn from_cbor(bytes: &[u8]) -> Result<Frame, FrameError> {
        let split = cbor::skip(bytes, 0)
            .ok_or_else(|| FrameError::Malformed("the header is not one DAG-CBOR item".into()))?;
        let (head, body) = bytes
            .split_at_checked(split)
            .ok_or_else(|| FrameError::Malformed("truncated in the header".into()))?;
        cbor::check(head).map_err(|e| FrameError::Malformed(format!("header: {e}")))?;
        if body.is_empty() {
            return Err(FrameError::Malformed("no body after the header".into()));
        }
        cbor::check(body).map_err(|e| FrameError::Malformed(format!("body: {e}")))?;
        let header: Header =
            guild_core::data::decode_as(head).map_err(|e| FrameError::Header(e.to_string()))?;
        let body_err = |t: &str| {
            let t = t.to_owned();
            move |e: guild_core::data::DecodeError| FrameError::Body {
                t: t.clone(),
                reason: e.to_string(),
            }
        };
        match (header.op, header.t.as_deref()) {
            (1, Some(t)) => {
                let event = match t {
                    "#bundle" => Event::Bundle(
                        guild_core::data::decode_as::<BundleEvent>(body).map_err(body_err(t))?,
                    ),
                    "#revocation" => Event::Revocation(
                        guild_core::data::decode_as::<RevocationEvent>(body)
                            .map_err(body_err(t))?,
                    ),
                    "#agreement" => Event::Agreement(
                        guild_core::data::decode_as::<AgreementEvent>(body).map_err(body_err(t))?,
                    ),
                    "#info" => Event::Info(
                        guild_core::data::decode_as::<InfoEvent>(body).map_err(body_err(t))?,
                    ),
                    other => return Err(FrameError::UnknownType(other.to_owned())),
                };
                event.check().map_err(|reason| FrameError::Body {
                    t: t.to_owned(),
                    reason,
                })?;
                Ok(Frame::Message(event))
            }
            (1, None) => Err(FrameError::Header("op 1 without t".into())),
            (-1, None) => {
                let e: ErrorBody = guild_core::data::decode_as(body).map_err(body_err("error"))?;
                Ok(Frame::Error {
                    error: e.error,
                    message: e.message,
                })
            }
            (-1, Some(_)) => Err(FrameError::Header("an error header with t".into())),
            (op, _) => Err(FrameError::Header(format!("op {op}"))),
        }
    }

    /// The JSON variant's text.
    pub fn to_json(&self) -> Result<String, FrameError> {
        let value = match self {
            Frame::Message(e) => {
                e.check().map_err(FrameError::Encode)?;
                let body = match e {
                    Event::Bundle(b) => serde_json::to_value(b),
                    Event::Revocation(r) => serde_json::to_value(r),
                    Event::Agreement(a) => serde_json::to_value(a),
                    Event::Info(i) => serde_json::to_value(i),
                }
                .map_err(|e| FrameError::Encode(e.to_string()))?;
                let serde_json::Value::Object(fields) = body else {
                    return Err(FrameError::Encode("an event is not an object".into()));
                };
                let mut out = serde_json::Map::new();
                out.insert(
                    "$type".into(),
                    serde_json::Value::String(format!("{SUBSCRIBE_NSID}{}", e.t())),
                );
                out.extend(fields);
                serde_json::Value::Object(out)
            }
            Frame::Error { error, message } => serde_json::to_value(ErrorBody {
                error: error.clone(),
                message: message.clone(),
            })
            .map_err(|e| FrameError::Encode(e.to_string()))?,
        };
        serde_json::to_string(&value).map_err(|e| FrameError::Encode(e.to_string()))
    }

    /// Decodes the JSON variant's text.
    pub fn from_json(text: &str) -> Result<Frame, FrameError> {
        let mut value: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|e| FrameError::Malformed(e.to_string()))?;
        let Some(t) = value.remove("$type") else {
            let e: ErrorBody =
                serde_json::from_value(serde_json::Value::Object(value)).map_err(|e| {
                    FrameError::Body {
                        t: "error".into(),
                        reason: e.to_string(),
                    }
                })?;
            return Ok(Frame::Error {
                error: e.error,
                message: e.message,
            });
        };
        let serde_json::Value::String(t) = t else {
            return Err(FrameError::Header("$type is not a string".into()));
        };
        let short = t
            .strip_prefix(SUBSCRIBE_NSID)
            .ok_or_else(|| FrameError::UnknownType(t.clone()))?;
        let body = serde_json::Value::Object(value);
        let bad = |e: serde_json::Error| FrameError::Body {
            t: short.to_owned(),
            reason: e.to_string(),
        };
        let event = match short {
            "#bundle" => Event::Bundle(serde_json::from_value(body).map_err(bad)?),
            "#revocation" => Event::Revocation(serde_json::from_value(body).map_err(bad)?),
            "#agreement" => Event::Agreement(serde_json::from_value(body).map_err(bad)?),
            "#info" => Event::Info(serde_json::from_value(body).map_err(bad)?),
            _ => return Err(FrameError::UnknownType(t)),
        };
        event.check().map_err(|reason| FrameError::Body {
            t: short.to_owned(),
            reason,
        })?;
        Ok(Frame::Message(event))
    }
}
