//! The AT Protocol data model: canonical DAG-CBOR, strict decoding, and the JSON form.
//!
//! Values are [`Ipld`] (from `ipld-core`), the type serde_ipld_dagcbor encodes natively. Guild's
//! rules on top of IPLD: no floats anywhere, integers within `i64`, `$type` (where present) a
//! non-empty string, blobs (`{"$type": "blob", ref, mimeType, size}`) well formed. In JSON,
//! links are `{"$link": "<cid>"}` and bytes are `{"$bytes": "<base64, no padding>"}`.
//!
//! Encoding is canonical by construction (serde_ipld_dagcbor sorts map keys length-first, then
//! bytewise, and writes minimal heads). Decoding of untrusted bytes runs [`crate::cbor::check`]
//! first, so malformed, float-bearing, over-deep or non-canonical input is refused with the byte
//! offset of the fault.

use std::collections::BTreeMap;

use base64::Engine as _;
use cid::Cid;
pub use ipld_core::ipld::Ipld;
use serde::{Serialize, de::DeserializeOwned};

use crate::cbor::{self, CborError};
use crate::cids;

/// The largest record Guild accepts, in encoded bytes (protocol.md §2: "record ≤ 1 MB").
pub const MAX_RECORD_BYTES: usize = 1_000_000;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes break the structural rules (see [`crate::cbor`]).
    #[error(transparent)]
    Cbor(#[from] CborError),
    /// The bytes are structurally fine but do not decode as the expected value (for example,
    /// unsorted or duplicate map keys, invalid UTF-8, a missing field).
    #[error("invalid DAG-CBOR: {0}")]
    Invalid(String),
    /// The value decodes but is not the canonical encoding of itself.
    #[error("DAG-CBOR is not in canonical form")]
    NotCanonical,
}

/// Why a value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The value breaks the data model (a float, an out-of-range integer).
    #[error(transparent)]
    DataModel(#[from] DataModelError),
    /// The serializer refused the value.
    #[error("cannot encode as DAG-CBOR: {0}")]
    Serialize(String),
}

/// A value that breaks the AT data model, with the path to the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} at {path}")]
pub struct DataModelError {
    /// JSON-pointer-style path into the value (`/entries/3/title`); `/` is the root.
    pub path: String,
    /// The rule that was broken.
    pub reason: String,
}

impl DataModelError {
    fn new(path: &Path<'_>, reason: impl Into<String>) -> Self {
        DataModelError {
            path: path.render(),
            reason: reason.into(),
        }
    }
}

/// A lazily rendered path into a value, for error messages.
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    fn render(&self) -> String {
        let mut parts = Vec::new();
        let mut cur = self;
        loop {
            match cur {
                Path::Root => break,
                Path::Key(p, k) => {
                    parts.push((*k).to_string());
                    cur = p;
                }
                Path::Index(p, i) => {
                    parts.push(i.to_string());
                    cur = p;
                }
            }
        }
        if parts.is_empty() {
            return "/".into();
        }
        parts.reverse();
        let mut s = String::new();
        for p in parts {
            s.push('/');
            s.push_str(&p);
        }
        s
    }
}

/// Strictly decodes untrusted bytes into a data-model value.
pub fn decode(bytes: &[u8]) -> Result<Ipld, DecodeError> {
    decode_as(bytes)
}

/// Strictly decodes untrusted bytes into `T` (structural check first, then serde).
pub fn decode_as<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    cbor::check(bytes)?;
    serde_ipld_dagcbor::from_slice(bytes).map_err(|e| DecodeError::Invalid(e.to_string()))
}

/// Strictly decodes `bytes` into `T` and checks that they are the canonical encoding of the
/// result (re-encoding gives the same bytes). Use for structures whose every field is known
/// (MST nodes, commits), where a non-canonical encoding would give a second CID for one value.
pub fn decode_canonical<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<T, DecodeError> {
    let value: T = decode_as(bytes)?;
    let again = serde_ipld_dagcbor::to_vec(&value).map_err(|_| DecodeError::NotCanonical)?;
    if again != bytes {
        return Err(DecodeError::NotCanonical);
    }
    Ok(value)
}

/// Canonically encodes a data-model value, refusing floats and out-of-range integers.
pub fn encode(value: &Ipld) -> Result<Vec<u8>, EncodeError> {
    validate(value)?;
    serde_ipld_dagcbor::to_vec(value).map_err(|e| EncodeError::Serialize(e.to_string()))
}

/// Canonically encodes any serializable value (typed records, ops, commits).
pub fn encode_serde<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, EncodeError> {
    serde_ipld_dagcbor::to_vec(value).map_err(|e| EncodeError::Serialize(e.to_string()))
}

/// Encodes a value and returns its bytes with their CID.
pub fn encode_with_cid(value: &Ipld) -> Result<(Cid, Vec<u8>), EncodeError> {
    let bytes = encode(value)?;
    Ok((cids::cid_for_cbor(&bytes), bytes))
}

/// Checks the AT data-model rules on a value: no floats, integers within `i64`, `$type` a
/// non-empty string where present, blobs well formed.
pub fn validate(value: &Ipld) -> Result<(), DataModelError> {
    validate_at(value, &Path::Root, 0)
}

fn validate_at(value: &Ipld, path: &Path<'_>, depth: usize) -> Result<(), DataModelError> {
    if depth > cbor::MAX_DEPTH {
        return Err(DataModelError::new(
            path,
            "nesting is deeper than the limit",
        ));
    }
    match value {
        Ipld::Float(_) => Err(DataModelError::new(path, "floats are not allowed")),
        Ipld::Integer(i) if i64::try_from(*i).is_err() => Err(DataModelError::new(
            path,
            "integer is out of the 64-bit signed range",
        )),
        Ipld::List(items) => {
            for (i, item) in items.iter().enumerate() {
                validate_at(item, &Path::Index(path, i), depth + 1)?;
            }
            Ok(())
        }
        Ipld::Map(map) => {
            check_type_field(map, path)?;
            for (k, v) in map {
                validate_at(v, &Path::Key(path, k), depth + 1)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// `$type`, where present, must be a non-empty string; a blob must have its four fields.
fn check_type_field(map: &BTreeMap<String, Ipld>, path: &Path<'_>) -> Result<(), DataModelError> {
    let Some(t) = map.get("$type") else {
        return Ok(());
    };
    let Ipld::String(t) = t else {
        return Err(DataModelError::new(
            &Path::Key(path, "$type"),
            "$type must be a string",
        ));
    };
    if t.is_empty() {
        return Err(DataModelError::new(
            &Path::Key(path, "$type"),
            "$type must not be empty",
        ));
    }
    if t == "blob" {
        match map.get("ref") {
            Some(Ipld::Link(_)) => {}
            Some(_) => {
                return Err(DataModelError::new(
                    &Path::Key(path, "ref"),
                    "blob ref must be a CID link",
                ));
            }
            None => return Err(DataModelError::new(path, "blob is missing `ref`")),
        }
        match map.get("mimeType") {
            Some(Ipld::String(m)) if !m.is_empty() => {}
            Some(_) => {
                return Err(DataModelError::new(
                    &Path::Key(path, "mimeType"),
                    "blob mimeType must be a non-empty string",
                ));
            }
            None => return Err(DataModelError::new(path, "blob is missing `mimeType`")),
        }
        match map.get("size") {
            Some(Ipld::Integer(n)) if *n >= 0 => {}
            Some(_) => {
                return Err(DataModelError::new(
                    &Path::Key(path, "size"),
                    "blob size must be a non-negative integer",
                ));
            }
            None => return Err(DataModelError::new(path, "blob is missing `size`")),
        }
    }
    Ok(())
}

/// Checks that a value is a record: a map whose `$type` is an NSID, within the size limit, and
/// valid in the data model. Returns its canonical bytes and CID.
pub fn encode_record(value: &Ipld) -> Result<(Cid, Vec<u8>), EncodeError> {
    check_record_shape(value)?;
    let (cid, bytes) = encode_with_cid(value)?;
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(DataModelError {
            path: "/".into(),
            reason: format!(
                "record is {} bytes; the limit is {MAX_RECORD_BYTES}",
                bytes.len()
            ),
        }
        .into());
    }
    Ok((cid, bytes))
}

/// Strictly decodes untrusted record bytes and checks the record rules.
pub fn decode_record(bytes: &[u8]) -> Result<Ipld, RecordDecodeError> {
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(RecordDecodeError::TooLarge(bytes.len()));
    }
    let value = decode(bytes)?;
    check_record_shape(&value)?;
    validate(&value)?;
    Ok(value)
}

/// Why record bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordDecodeError {
    /// Over [`MAX_RECORD_BYTES`].
    #[error("record is {0} bytes; the limit is {MAX_RECORD_BYTES}")]
    TooLarge(usize),
    /// Not valid DAG-CBOR.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Valid DAG-CBOR but not a valid record.
    #[error(transparent)]
    DataModel(#[from] DataModelError),
}

fn check_record_shape(value: &Ipld) -> Result<(), DataModelError> {
    let Ipld::Map(map) = value else {
        return Err(DataModelError {
            path: "/".into(),
            reason: "a record must be an object".into(),
        });
    };
    match map.get("$type") {
        Some(Ipld::String(t)) => {
            crate::syntax::Nsid::parse(t).map_err(|e| DataModelError {
                path: "/$type".into(),
                reason: format!("record $type must be an NSID: {e}"),
            })?;
            Ok(())
        }
        Some(_) => Err(DataModelError {
            path: "/$type".into(),
            reason: "$type must be a string".into(),
        }),
        None => Err(DataModelError {
            path: "/".into(),
            reason: "a record must have a $type".into(),
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// JSON form

/// Converts the JSON form of the data model into a value, checking every rule on the way.
pub fn from_json(json: &serde_json::Value) -> Result<Ipld, DataModelError> {
    json_to_ipld(json, &Path::Root, 0)
}

fn json_to_ipld(
    json: &serde_json::Value,
    path: &Path<'_>,
    depth: usize,
) -> Result<Ipld, DataModelError> {
    use serde_json::Value as J;
    if depth > cbor::MAX_DEPTH {
        return Err(DataModelError::new(
            path,
            "nesting is deeper than the limit",
        ));
    }
    Ok(match json {
        J::Null => Ipld::Null,
        J::Bool(b) => Ipld::Bool(*b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ipld::Integer(i.into())
            } else if n.is_u64() {
                return Err(DataModelError::new(
                    path,
                    "integer is out of the 64-bit signed range",
                ));
            } else {
                // An integer written with a fraction part of zero (`123.0`) is still an integer
                // in the AT data model; anything else is a float, which is not allowed.
                match n.as_f64() {
                    Some(f)
                        if f.fract() == 0.0
                            && f.is_finite()
                            && f >= -9_007_199_254_740_992.0
                            && f <= 9_007_199_254_740_992.0 =>
                    {
                        Ipld::Integer((f as i64).into())
                    }
                    _ => return Err(DataModelError::new(path, "floats are not allowed")),
                }
            }
        }
        J::String(s) => Ipld::String(s.clone()),
        J::Array(items) => Ipld::List(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| json_to_ipld(v, &Path::Index(path, i), depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        J::Object(obj) => {
            if let Some(link) = obj.get("$link") {
                if obj.len() != 1 {
                    return Err(DataModelError::new(
                        path,
                        "a $link object must have no other fields",
                    ));
                }
                let J::String(s) = link else {
                    return Err(DataModelError::new(path, "$link must be a string"));
                };
                let cid = parse_link(s).map_err(|r| DataModelError::new(path, r))?;
                return Ok(Ipld::Link(cid));
            }
            if let Some(b) = obj.get("$bytes") {
                if obj.len() != 1 {
                    return Err(DataModelError::new(
                        path,
                        "a $bytes object must have no other fields",
                    ));
                }
                let J::String(s) = b else {
                    return Err(DataModelError::new(path, "$bytes must be a base64 string"));
                };
                let bytes = decode_base64(s)
                    .ok_or_else(|| DataModelError::new(path, "$bytes is not valid base64"))?;
                return Ok(Ipld::Bytes(bytes));
            }
            let mut map = BTreeMap::new();
            for (k, v) in obj {
                map.insert(k.clone(), json_to_ipld(v, &Path::Key(path, k), depth + 1)?);
            }
            check_type_field(&map, path)?;
            Ipld::Map(map)
        }
    })
}

/// Parses a CID string as used in `$link` (CIDv1, base32 or any multibase the `cid` crate
/// reads; CIDv0 `Qm…` strings are accepted as legacy links).
fn parse_link(s: &str) -> Result<Cid, String> {
    Cid::try_from(s).map_err(|e| format!("$link is not a valid CID: {e}"))
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
    STANDARD_NO_PAD
        .decode(s)
        .or_else(|_| STANDARD.decode(s))
        .ok()
}

/// Converts a value to its JSON form (`$link`, `$bytes`). Floats, which Guild never produces,
/// become JSON numbers.
pub fn to_json(value: &Ipld) -> serde_json::Value {
    use base64::engine::general_purpose::STANDARD_NO_PAD;
    use serde_json::Value as J;
    match value {
        Ipld::Null => J::Null,
        Ipld::Bool(b) => J::Bool(*b),
        Ipld::Integer(i) => match i64::try_from(*i) {
            Ok(i) => J::from(i),
            Err(_) => J::String(i.to_string()),
        },
        Ipld::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Ipld::String(s) => J::String(s.clone()),
        Ipld::Bytes(b) => {
            let mut m = serde_json::Map::new();
            m.insert("$bytes".into(), J::String(STANDARD_NO_PAD.encode(b)));
            J::Object(m)
        }
        Ipld::List(items) => J::Array(items.iter().map(to_json).collect()),
        Ipld::Map(map) => J::Object(map.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
        Ipld::Link(cid) => {
            let mut m = serde_json::Map::new();
            m.insert("$link".into(), J::String(cid.to_string()));
            J::Object(m)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trip_keeps_links_and_bytes() {
        let j = json!({
            "$type": "com.example.x",
            "l": {"$link": "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua"},
            "b": {"$bytes": "AQID"},
            "n": [1, -2, null, true, "s"]
        });
        let v = from_json(&j).unwrap();
        assert_eq!(to_json(&v), j);
        let bytes = encode(&v).unwrap();
        assert_eq!(decode(&bytes).unwrap(), v);
    }

    #[test]
    fn floats_are_refused_everywhere() {
        let e = from_json(&json!({"a": [1, {"b": 1.5}]})).unwrap_err();
        assert_eq!(e.path, "/a/1/b");
        assert!(encode(&Ipld::Float(1.5)).is_err());
        assert!(from_json(&json!({"a": 2.0})).is_ok());
    }

    #[test]
    fn non_canonical_bytes_are_refused() {
        // {"b":1,"a":2}: keys out of order.
        let unsorted = [0xa2, 0x61, b'b', 0x01, 0x61, b'a', 0x02];
        assert!(decode(&unsorted).is_err());
        // duplicate keys
        let dup = [0xa2, 0x61, b'a', 0x01, 0x61, b'a', 0x02];
        assert!(decode(&dup).is_err());
    }

    #[test]
    fn records_need_an_nsid_type() {
        assert!(encode_record(&from_json(&json!({"a": 1})).unwrap()).is_err());
        assert!(encode_record(&from_json(&json!({"$type": "nope"})).unwrap()).is_err());
        assert!(encode_record(&from_json(&json!({"$type": "com.example.a"})).unwrap()).is_ok());
    }
}
