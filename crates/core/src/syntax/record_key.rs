//! Record keys: the last segment of a record's path (atproto.com/specs/record-key).

use serde::{Deserialize, Serialize};

use super::{SyntaxError, borrow_str, string_conversions};

/// The longest record key, in characters.
const MAX_LEN: usize = 512;

/// A syntactically valid record key, such as a TID, `self` or `literal:self`.
///
/// Syntax: 1 to 512 characters from ASCII letters, digits and `._:~-`, except the
/// path-like `.` and `..`. Record keys are case-sensitive. Whether a key suits a collection
/// (`tid`, `nsid`, `literal:...`, `any`) is the lexicon's business, not this type's.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RecordKey(String);

impl RecordKey {
    /// Parses and validates a record key.
    pub fn parse(s: &str) -> Result<Self, SyntaxError> {
        validate(s).map_err(|reason| SyntaxError::new("record-key", s, reason))?;
        Ok(RecordKey(s.to_owned()))
    }

    /// The record key as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The record key as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

string_conversions!(RecordKey);
borrow_str!(RecordKey);

impl From<super::Tid> for RecordKey {
    /// Every TID is a valid record key.
    fn from(tid: super::Tid) -> Self {
        RecordKey(tid.into_string())
    }
}

fn validate(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("empty");
    }
    if s.len() > MAX_LEN {
        return Err("longer than 512 characters");
    }
    if s == "." || s == ".." {
        return Err("\".\" and \"..\" are not allowed");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'~' | b'-'))
    {
        return Err("may only contain letters, digits and ._:~-");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::Tid;

    #[test]
    fn accepts_and_rejects() {
        for ok in ["self", "literal:self", "3jzfcijpj2z2a", "_", "...", "a~b"] {
            assert!(RecordKey::parse(ok).is_ok(), "{ok:?}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "a#b", "%20", "é"] {
            assert!(RecordKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn from_tid() {
        let tid = Tid::from_parts(1_700_000_000_000_000, 7);
        let key = RecordKey::from(tid.clone());
        assert_eq!(key.as_str(), tid.as_str());
    }
}
