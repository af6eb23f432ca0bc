//! Typed, parsed AT Protocol identifiers and string formats.
//!
//! Every type here is a validated string: it can only be built through `parse` (or a
//! constructor that cannot produce an invalid value), keeps the exact input for `Display`,
//! serializes as a plain string and validates again when deserialized.
//!
//! The rules follow the AT Protocol specs (atproto.com/specs: did, handle, nsid, record-key,
//! tid, at-uri-scheme, lexicon string formats) and are checked against the interop fixtures in
//! `fixtures/atproto-interop/syntax/` by `tests/syntax_fixtures.rs`. Checks are hand-written
//! byte loops rather than regular expressions.
//!
//! Nothing here reads a clock: [`TidClock::next`] and [`Datetime::from_unix_micros`] take the
//! time as an argument.

mod at_identifier;
mod at_uri;
mod cid_str;
mod datetime;
mod did;
mod handle;
mod language;
mod nsid;
mod record_key;
mod tid;
mod uri;

pub use at_identifier::AtIdentifier;
pub use at_uri::AtUri;
pub use cid_str::{parse_cid_str, validate_cid_str};
pub use datetime::Datetime;
pub use did::Did;
pub use handle::Handle;
pub use language::Language;
pub use nsid::Nsid;
pub use record_key::RecordKey;
pub use tid::{Tid, TidClock};
pub use uri::validate_uri;

/// How many characters of the rejected input a [`SyntaxError`] keeps.
const ERROR_INPUT_CHARS: usize = 100;

/// A string that is not a valid identifier of the expected kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {input:?}: {reason}")]
pub struct SyntaxError {
    /// The kind of identifier that was expected, named as its lexicon string format (`"did"`).
    pub kind: &'static str,
    /// The rejected input, truncated to its first 100 characters.
    pub input: String,
    /// Why the input was rejected.
    pub reason: String,
}

impl SyntaxError {
    /// Builds an error for `input` (truncated to 100 characters) rejected as a `kind`.
    pub fn new(kind: &'static str, input: &str, reason: impl Into<String>) -> Self {
        let input = match input.char_indices().nth(ERROR_INPUT_CHARS) {
            Some((end, _)) => input[..end].to_owned(),
            None => input.to_owned(),
        };
        SyntaxError {
            kind,
            input,
            reason: reason.into(),
        }
    }
}

/// Implements the string conversions every identifier shares, given `parse`, `as_str` and
/// `into_string` inherent methods: `Display`, `FromStr`, `AsRef<str>`, `TryFrom<String>`,
/// `TryFrom<&str>` and `From<Self> for String` (the last two drive serde).
macro_rules! string_conversions {
    ($ty:ident) => {
        impl ::core::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::core::str::FromStr for $ty {
            type Err = $crate::syntax::SyntaxError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl TryFrom<String> for $ty {
            type Error = $crate::syntax::SyntaxError;

            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = $crate::syntax::SyntaxError;

            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Self::parse(s)
            }
        }

        impl From<$ty> for String {
            fn from(value: $ty) -> String {
                value.into_string()
            }
        }
    };
}

/// For single-`String` newtypes, whose derived `Eq`, `Ord` and `Hash` agree with `str`'s:
/// `Borrow<str>`, so that maps keyed by the type can be looked up with a `&str`.
macro_rules! borrow_str {
    ($ty:ident) => {
        impl ::core::borrow::Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

pub(crate) use borrow_str;
pub(crate) use string_conversions;

/// True if `label` is a DNS-style label: 1 to 63 ASCII letters, digits and hyphens, neither
/// starting nor ending with a hyphen. Shared by handles and NSID domain authorities.
pub(crate) fn is_domain_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            bytes.len() <= 63
                && first != b'-'
                && last != b'-'
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn error_display_quotes_the_input() {
        let err = SyntaxError::new("did", "did:foo", "method must be lowercase letters");
        assert_eq!(
            err.to_string(),
            r#"invalid did "did:foo": method must be lowercase letters"#
        );
    }

    #[test]
    fn error_truncates_long_input_on_a_char_boundary() {
        let long = "é".repeat(150);
        let err = SyntaxError::new("handle", &long, "too long");
        assert_eq!(err.input.chars().count(), 100);
        assert!(err.input.chars().all(|c| c == 'é'));
        let short = SyntaxError::new("handle", "ab", "x");
        assert_eq!(short.input, "ab");
    }

    #[test]
    fn domain_labels() {
        for ok in ["a", "a-b", "0", "xn--ls8h", &"o".repeat(63)] {
            assert!(is_domain_label(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a_b", "a.b", "é", &"o".repeat(64)] {
            assert!(!is_domain_label(bad), "{bad}");
        }
    }

    /// Parses `s` as `T`; if accepted, checks that it displays and serializes as `s`.
    fn round_trips<T>(s: &str) -> Result<bool, TestCaseError>
    where
        T: core::str::FromStr + core::fmt::Display + serde::Serialize + serde::de::DeserializeOwned,
        T: PartialEq + core::fmt::Debug,
    {
        let Ok(value) = s.parse::<T>() else {
            return Ok(false);
        };
        prop_assert_eq!(value.to_string(), s);
        let json = serde_json::to_string(&value).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&json, &serde_json::to_string(s).unwrap());
        prop_assert_eq!(serde_json::from_str::<T>(&json).ok(), Some(value));
        Ok(true)
    }

    proptest! {
        #[test]
        fn spec_shaped_strings_parse(
            did in "did:[a-z]{1,8}:[a-zA-Z0-9._:%-]{0,30}[a-zA-Z0-9._-]",
            handle in "([a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?\\.){1,4}[a-zA-Z]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?",
            nsid in "[a-z]([a-z0-9-]{0,10}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?){1,3}\\.[a-zA-Z][a-zA-Z0-9]{0,20}",
            rkey in "[a-zA-Z0-9._:~-]{1,40}",
        ) {
            prop_assume!(rkey != "." && rkey != "..");
            prop_assert!(round_trips::<Did>(&did)?, "{}", did);
            prop_assert!(round_trips::<Handle>(&handle)?, "{}", handle);
            prop_assert!(round_trips::<AtIdentifier>(&handle)?, "{}", handle);
            prop_assert!(round_trips::<Nsid>(&nsid)?, "{}", nsid);
            prop_assert!(round_trips::<RecordKey>(&rkey)?, "{}", rkey);
            let uri = format!("at://{did}/{nsid}/{rkey}");
            prop_assert!(round_trips::<AtUri>(&uri)?, "{}", uri);
        }

        #[test]
        fn whatever_parses_round_trips(s in "[a-zA-Z0-9:./_%~#@+= -]{0,40}") {
            round_trips::<Did>(&s)?;
            round_trips::<Handle>(&s)?;
            round_trips::<Nsid>(&s)?;
            round_trips::<Tid>(&s)?;
            round_trips::<RecordKey>(&s)?;
            round_trips::<AtIdentifier>(&s)?;
            round_trips::<AtUri>(&format!("at://{s}"))?;
            round_trips::<Datetime>(&s)?;
            round_trips::<Language>(&s)?;
        }
    }
}
