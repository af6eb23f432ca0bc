//! Account identifiers that are either a DID or a handle (lexicon `at-identifier`).

use serde::{Deserialize, Serialize};

use super::{Did, Handle, SyntaxError, string_conversions};

/// A DID or a handle, as accepted where either names an account (the authority of an AT-URI,
/// the lexicon `at-identifier` format). Strings starting with `did:` are parsed as DIDs,
/// everything else as handles.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum AtIdentifier {
    /// A DID.
    Did(Did),
    /// A handle.
    Handle(Handle),
}

impl AtIdentifier {
    /// Parses and validates a DID or handle.
    pub fn parse(s: &str) -> Result<Self, SyntaxError> {
        let result = if s.starts_with("did:") {
            Did::parse(s).map(AtIdentifier::Did)
        } else {
            Handle::parse(s).map(AtIdentifier::Handle)
        };
        result.map_err(|err| SyntaxError::new("at-identifier", s, err.reason))
    }

    /// The identifier as a string slice.
    pub fn as_str(&self) -> &str {
        match self {
            AtIdentifier::Did(did) => did.as_str(),
            AtIdentifier::Handle(handle) => handle.as_str(),
        }
    }

    /// The identifier as an owned string.
    pub fn into_string(self) -> String {
        match self {
            AtIdentifier::Did(did) => did.into_string(),
            AtIdentifier::Handle(handle) => handle.into_string(),
        }
    }

    /// The DID, if this is one.
    pub fn as_did(&self) -> Option<&Did> {
        match self {
            AtIdentifier::Did(did) => Some(did),
            AtIdentifier::Handle(_) => None,
        }
    }

    /// The handle, if this is one.
    pub fn as_handle(&self) -> Option<&Handle> {
        match self {
            AtIdentifier::Did(_) => None,
            AtIdentifier::Handle(handle) => Some(handle),
        }
    }
}

string_conversions!(AtIdentifier);

impl From<Did> for AtIdentifier {
    fn from(did: Did) -> Self {
        AtIdentifier::Did(did)
    }
}

impl From<Handle> for AtIdentifier {
    fn from(handle: Handle) -> Self {
        AtIdentifier::Handle(handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatches_on_prefix() {
        let did = AtIdentifier::parse("did:plc:abc").unwrap();
        assert_eq!(did.as_did().map(Did::method), Some("plc"));
        assert!(did.as_handle().is_none());
        let handle = AtIdentifier::parse("alice.test").unwrap();
        assert_eq!(handle.as_handle().map(Handle::as_str), Some("alice.test"));
        // A bad DID is not retried as a handle.
        let err = AtIdentifier::parse("did:thing.test").unwrap_err();
        assert_eq!(err.kind, "at-identifier");
    }

    #[test]
    fn serde_is_a_plain_string() {
        let id = AtIdentifier::parse("alice.test").unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, r#""alice.test""#);
        assert_eq!(serde_json::from_str::<AtIdentifier>(&json).unwrap(), id);
        assert!(serde_json::from_str::<AtIdentifier>(r#""@alice""#).is_err());
    }
}
