//! Handles: DNS names used as account names (atproto.com/specs/handle).

use serde::{Deserialize, Serialize};

use super::{SyntaxError, borrow_str, is_domain_label, string_conversions};

/// The longest handle, in characters (the DNS name limit).
const MAX_LEN: usize = 253;

/// A syntactically valid handle, such as `alice.example.com`.
///
/// Syntax: at least two DNS labels joined by `.`; each label has 1 to 63 ASCII letters,
/// digits and hyphens and neither starts nor ends with a hyphen; the last label (the TLD)
/// starts with a letter; at most 253 characters in all. Handles are case-insensitive: this
/// type keeps the input as given, so compare [`Handle::normalized`] forms. TLDs the spec
/// disallows for registration (`.local`, `.arpa`, ...) are syntactically valid and accepted.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Handle(String);

impl Handle {
    /// Parses and validates a handle.
    pub fn parse(s: &str) -> Result<Self, SyntaxError> {
        validate(s).map_err(|reason| SyntaxError::new("handle", s, reason))?;
        Ok(Handle(s.to_owned()))
    }

    /// The handle as a string slice, as it was given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The handle as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The normalized (lowercase) form of the handle.
    pub fn normalized(&self) -> Handle {
        Handle(self.0.to_ascii_lowercase())
    }
}

string_conversions!(Handle);
borrow_str!(Handle);

fn validate(s: &str) -> Result<(), &'static str> {
    if s.len() > MAX_LEN {
        return Err("longer than 253 characters");
    }
    let mut labels = 0usize;
    let mut last = "";
    for label in s.split('.') {
        if !is_domain_label(label) {
            return Err(
                "each label must be 1-63 letters, digits or hyphens, not starting or ending with a hyphen",
            );
        }
        labels += 1;
        last = label;
    }
    if labels < 2 {
        return Err("needs at least two labels");
    }
    if !last.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err("the last label must start with a letter");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalized_lowercases() {
        let handle = Handle::parse("XX.LCS.MIT.EDU").unwrap();
        assert_eq!(handle.as_str(), "XX.LCS.MIT.EDU");
        assert_eq!(handle.normalized().as_str(), "xx.lcs.mit.edu");
        assert_ne!(handle, handle.normalized());
    }

    #[test]
    fn rejects() {
        for bad in [
            "", "com", "a..b", "a.b.", ".a.b", "a.0b", "a.-b", "a_b.com", "a.b c",
        ] {
            assert!(Handle::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn max_length() {
        // 4 labels of 63 + 3 dots = 255; trim the first to reach exactly 253.
        let label = "a".repeat(63);
        let ok = format!("{}.{label}.{label}.{label}", "a".repeat(61));
        assert_eq!(ok.len(), 253);
        assert!(Handle::parse(&ok).is_ok());
        let too_long = format!("a{ok}");
        assert!(Handle::parse(&too_long).is_err());
    }
}
