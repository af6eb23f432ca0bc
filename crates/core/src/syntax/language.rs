//! Language tags in the lexicon `language` format: BCP 47 (RFC 5646).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{SyntaxError, borrow_str, string_conversions};

/// The irregular grandfathered tags of RFC 5646 §2.2.8: well-formed although they do not
/// follow the `langtag` production. (The regular ones, like `zh-hakka`, do follow it.)
const IRREGULAR: [&str; 17] = [
    "en-GB-oed",
    "i-ami",
    "i-bnn",
    "i-default",
    "i-enochian",
    "i-hak",
    "i-klingon",
    "i-lux",
    "i-mingo",
    "i-navajo",
    "i-pwn",
    "i-tao",
    "i-tay",
    "i-tsu",
    "sgn-BE-FR",
    "sgn-BE-NL",
    "sgn-CH-DE",
];

/// A valid language tag, such as `en`, `pt-BR` or `zh-Hant`.
///
/// Syntax ([`Language::is_valid_syntax`]): a well-formed BCP 47 tag, with the AT Protocol's
/// narrowing that the primary language subtag is 2 or 3 lowercase letters (`JA` and the
/// reserved four-letter form `jaja` are rejected). Extended language, script, region,
/// variant, extension and private-use subtags follow RFC 5646 §2.1 and are case-insensitive,
/// as are the grandfathered tags (`i-default`) apart from their first subtag, and private-use
/// tags (`x-whatever`, `X-fr-CH`).
///
/// [`Language::parse`] also requires the tag to be "valid" in the sense of RFC 5646 §2.2.9:
/// no variant subtag and no extension singleton appears twice (ignoring case). It does not
/// check subtags against the IANA registry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Language(String);

impl Language {
    /// Parses a language tag, checking its syntax and that no variant or extension repeats.
    pub fn parse(s: &str) -> Result<Self, SyntaxError> {
        check(s, true).map_err(|reason| SyntaxError::new("language", s, reason))?;
        Ok(Language(s.to_owned()))
    }

    /// True if `s` is a well-formed tag, without the duplicate checks of [`Language::parse`]
    /// (`de-DE-1901-1901` passes this check but not `parse`).
    pub fn is_valid_syntax(s: &str) -> bool {
        check(s, false).is_ok()
    }

    /// The tag as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tag as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The primary language subtag: `pt` in `pt-BR`, `i` in `i-default`, `x` for private use.
    pub fn primary(&self) -> &str {
        self.0.split('-').next().unwrap_or_default()
    }
}

string_conversions!(Language);
borrow_str!(Language);

fn is_alpha(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphabetic())
}

fn is_digits(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}

/// Checks well-formedness, and with `strict` also RFC 5646 validity (no duplicates).
fn check(s: &str, strict: bool) -> Result<(), &'static str> {
    let subtags: Vec<&str> = s.split('-').collect();
    if !subtags
        .iter()
        .all(|t| (1..=8).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        return Err("subtags must be 1-8 ASCII letters or digits, separated by single hyphens");
    }
    let first = subtags.first().copied().unwrap_or_default();
    if first != "X" && first.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("primary language subtag must be lowercase");
    }
    if IRREGULAR.iter().any(|tag| tag.eq_ignore_ascii_case(s)) {
        return Ok(());
    }
    let mut rest = subtags.as_slice();
    if first.eq_ignore_ascii_case("x") {
        return private_use(rest);
    }
    if !((2..=3).contains(&first.len()) && is_alpha(first)) {
        return Err("primary language subtag must be 2 or 3 lowercase letters");
    }
    rest = &rest[1..];

    // Extended language subtags: up to three of three letters.
    let mut extlangs = 0;
    while let [tag, tail @ ..] = rest
        && extlangs < 3
        && tag.len() == 3
        && is_alpha(tag)
    {
        rest = tail;
        extlangs += 1;
    }
    // Script: four letters.
    if let [tag, tail @ ..] = rest
        && tag.len() == 4
        && is_alpha(tag)
    {
        rest = tail;
    }
    // Region: two letters or three digits.
    if let [tag, tail @ ..] = rest
        && ((tag.len() == 2 && is_alpha(tag)) || (tag.len() == 3 && is_digits(tag)))
    {
        rest = tail;
    }
    // Variants: 5-8 letters or digits, or a digit and three letters or digits.
    let mut variants = BTreeSet::new();
    while let [tag, tail @ ..] = rest
        && (tag.len() >= 5 || (tag.len() == 4 && tag.starts_with(|c: char| c.is_ascii_digit())))
    {
        if strict && !variants.insert(tag.to_ascii_lowercase()) {
            return Err("a variant subtag appears twice");
        }
        rest = tail;
    }
    // Extensions: a singleton other than x, then one or more subtags of 2-8 characters.
    let mut singletons = BTreeSet::new();
    while let [tag, tail @ ..] = rest
        && tag.len() == 1
        && !tag.eq_ignore_ascii_case("x")
    {
        if strict && !singletons.insert(tag.to_ascii_lowercase()) {
            return Err("an extension singleton appears twice");
        }
        let body = tail.iter().take_while(|t| t.len() >= 2).count();
        if body == 0 {
            return Err("an extension singleton must be followed by subtags of 2-8 characters");
        }
        rest = &tail[body..];
    }
    match rest {
        [] => Ok(()),
        [x, ..] if x.eq_ignore_ascii_case("x") => private_use(rest),
        _ => Err("subtags out of order or of the wrong length"),
    }
}

/// Checks `x-...`: the singleton and at least one subtag (all already 1-8 alphanumerics).
fn private_use(subtags: &[&str]) -> Result<(), &'static str> {
    if subtags.len() < 2 {
        return Err("a private-use singleton must be followed by subtags");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structure() {
        for ok in [
            "en",
            "zh-yue-HK",
            "zh-min-nan",
            "sr-Latn-RS",
            "es-419",
            "de-1996",
            "en-a-bbb-x-a-ccc",
            "x-private",
            "i-klingon",
            "en-GB-oed",
            "en-gb-OED",
        ] {
            assert!(Language::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "en-",
            "-en",
            "en--GB",
            "e",
            "english",
            "EN",
            "i-foo",
            "en-a",
            "en-a-b",
            "x",
            "en-x",
            "de-419-DE",
            "I-klingon",
            "EN-GB-oed",
            "en-GB-x",
            "en-toolongsubtag",
            "é",
        ] {
            assert!(!Language::is_valid_syntax(bad), "{bad}");
        }
    }

    #[test]
    fn duplicates_are_syntax_but_not_valid() {
        for dup in ["de-DE-1901-1901", "en-a-foo-A-bar", "sl-rozaj-Rozaj"] {
            assert!(Language::is_valid_syntax(dup), "{dup}");
            let err = Language::parse(dup).unwrap_err();
            assert!(err.reason.contains("twice"), "{err}");
        }
        // Repeats inside private use are fine.
        assert!(Language::parse("en-x-a-a").is_ok());
    }

    #[test]
    fn primary() {
        assert_eq!(Language::parse("pt-BR").unwrap().primary(), "pt");
        assert_eq!(Language::parse("X-fr-CH").unwrap().primary(), "X");
    }
}
