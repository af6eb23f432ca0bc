//! Namespaced identifiers for lexicon schemas (atproto.com/specs/nsid).

use serde::{Deserialize, Serialize};

use super::{SyntaxError, borrow_str, is_domain_label, string_conversions};

/// The longest NSID, in characters (253 for the domain authority, a dot, 63 for the name).
const MAX_LEN: usize = 317;

/// A syntactically valid NSID, such as `coop.guild.data.text`.
///
/// Syntax: at least three `.`-separated segments. All but the last form the domain authority
/// in reverse order; each is a DNS label (1 to 63 ASCII letters, digits and hyphens, no
/// leading or trailing hyphen), and the first starts with a letter. The last segment, the
/// name, has 1 to 63 ASCII letters and digits and starts with a letter. At most 317
/// characters in all. The authority is case-insensitive, the name case-sensitive; this type
/// keeps the input as given.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Nsid(String);

impl Nsid {
    /// Parses and validates an NSID.
    pub fn parse(s: &str) -> Result<Self, SyntaxError> {
        validate(s).map_err(|reason| SyntaxError::new("nsid", s, reason))?;
        Ok(Nsid(s.to_owned()))
    }

    /// The NSID as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The NSID as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }

    /// Everything before the last segment: `coop.guild.data` in `coop.guild.data.text`.
    pub fn authority(&self) -> &str {
        self.0
            .rsplit_once('.')
            .map_or("", |(authority, _)| authority)
    }

    /// The last segment: `text` in `coop.guild.data.text`.
    pub fn name(&self) -> &str {
        self.0.rsplit_once('.').map_or(&self.0, |(_, name)| name)
    }
}

string_conversions!(Nsid);
borrow_str!(Nsid);

fn validate(s: &str) -> Result<(), &'static str> {
    if s.len() > MAX_LEN {
        return Err("longer than 317 characters");
    }
    let (authority, name) = s.rsplit_once('.').ok_or("needs at least three segments")?;
    let mut segments = 0usize;
    for segment in authority.split('.') {
        if !is_domain_label(segment) {
            return Err(
                "authority segments must be 1-63 letters, digits or hyphens, not starting or ending with a hyphen",
            );
        }
        segments += 1;
    }
    if segments < 2 {
        return Err("needs at least three segments");
    }
    if !s.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err("the first segment must start with a letter");
    }
    if name.is_empty() || name.len() > 63 {
        return Err("the name must be 1-63 characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err("the name must start with a letter");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err("the name may only contain letters and digits");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_and_name() {
        let nsid = Nsid::parse("coop.guild.data.text").unwrap();
        assert_eq!(nsid.authority(), "coop.guild.data");
        assert_eq!(nsid.name(), "text");
        let short = Nsid::parse("a.b.c").unwrap();
        assert_eq!(short.authority(), "a.b");
        assert_eq!(short.name(), "c");
    }

    #[test]
    fn rejects() {
        for bad in [
            "a.b", "a.b.", "a..b.c", "a.b.1c", "a.b.c-d", "1a.b.c", "a.b-.c", "a.b.c ",
        ] {
            assert!(Nsid::parse(bad).is_err(), "{bad:?}");
        }
    }
}
