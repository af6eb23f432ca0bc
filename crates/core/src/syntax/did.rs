//! Decentralized identifiers (atproto.com/specs/did).

use serde::{Deserialize, Serialize};

use super::{SyntaxError, borrow_str, string_conversions};

/// The longest DID the AT Protocol accepts, in characters (2 KB).
const MAX_LEN: usize = 2048;

/// A syntactically valid DID, such as `did:plc:7iza6de2dwap2sbkpav7c6c6`.
///
/// Syntax: `did:`, a method of lowercase ASCII letters, `:`, then a method-specific
/// identifier of ASCII letters, digits and `._:%-` that does not end in `:` or `%`; at most
/// 2048 characters. Only the syntax is checked, not the method (so `did:example:123` passes).
/// DIDs are case-sensitive.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Did(std::sync::Arc<str>);

impl Did {
    /// Parses and validates a DID.
    pub fn parse(s: &str) -> Result<Self, SyntaxError> {
        validate(s).map_err(|reason| SyntaxError::new("did", s, reason))?;
        Ok(Did(s.into()))
    }

    /// The DID as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The DID as an owned string.
    pub fn into_string(self) -> String {
        self.0.to_string()
    }

    /// The method name: `plc` in `did:plc:abc`.
    pub fn method(&self) -> &str {
        let rest = self.0.get(4..).unwrap_or_default();
        rest.split_once(':').map_or(rest, |(method, _)| method)
    }

    /// The method-specific identifier: `abc` in `did:plc:abc`.
    pub fn identifier(&self) -> &str {
        let rest = self.0.get(4..).unwrap_or_default();
        rest.split_once(':').map_or("", |(_, id)| id)
    }
}

string_conversions!(Did);
borrow_str!(Did);

fn validate(s: &str) -> Result<(), &'static str> {
    if s.len() > MAX_LEN {
        return Err("longer than 2048 characters");
    }
    let rest = s.strip_prefix("did:").ok_or("must start with \"did:\"")?;
    let (method, id) = rest
        .split_once(':')
        .ok_or("missing \":\" after the method")?;
    if method.is_empty() {
        return Err("method is empty");
    }
    if !method.bytes().all(|b| b.is_ascii_lowercase()) {
        return Err("method must be lowercase letters");
    }
    let last = *id
        .as_bytes()
        .last()
        .ok_or("method-specific identifier is empty")?;
    if !id.bytes().all(is_id_byte) {
        return Err("method-specific identifier may only contain letters, digits and ._:%-");
    }
    if last == b':' || last == b'%' {
        return Err("must not end with \":\" or \"%\"");
    }
    Ok(())
}

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'%' | b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors() {
        let did = Did::parse("did:plc:7iza6de2dwap2sbkpav7c6c6").unwrap();
        assert_eq!(did.method(), "plc");
        assert_eq!(did.identifier(), "7iza6de2dwap2sbkpav7c6c6");
        assert_eq!(did.to_string(), "did:plc:7iza6de2dwap2sbkpav7c6c6");
        let web = Did::parse("did:web:localhost%3A1234").unwrap();
        assert_eq!(web.method(), "web");
        assert_eq!(web.identifier(), "localhost%3A1234");
        let colons = Did::parse("did:method::::val").unwrap();
        assert_eq!(colons.method(), "method");
        assert_eq!(colons.identifier(), ":::val");
    }

    #[test]
    fn errors_say_why() {
        let err = Did::parse("did:METHOD:val").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid did "did:METHOD:val": method must be lowercase letters"#
        );
        assert_eq!(err.kind, "did");
        assert!(Did::parse("did:plc:abc%").is_err());
        assert!(Did::parse("did:plc:").is_err());
        assert!(Did::parse("did::abc").is_err());
    }

    #[test]
    fn serde_round_trip_and_validation() {
        let did = Did::parse("did:key:zQ3sh").unwrap();
        let json = serde_json::to_string(&did).unwrap();
        assert_eq!(json, r#""did:key:zQ3sh""#);
        assert_eq!(serde_json::from_str::<Did>(&json).unwrap(), did);
        assert!(serde_json::from_str::<Did>(r#""did:KEY:x""#).is_err());
    }

    #[test]
    fn max_length() {
        let ok = format!("did:plc:{}", "a".repeat(MAX_LEN - 8));
        assert!(Did::parse(&ok).is_ok());
        let too_long = format!("{ok}a");
        assert!(Did::parse(&too_long).is_err());
    }
}
