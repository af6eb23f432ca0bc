//! CIDs in their string form (the lexicon `cid` format).

use cid::{Cid, Version};

use super::SyntaxError;

/// The shortest and longest CID strings accepted, in characters.
const LEN: core::ops::RangeInclusive<usize> = 8..=256;

/// Checks a CID string against the AT Protocol's `cid` string format: 8 to 256 ASCII letters,
/// digits, `+` and `=`, and not a legacy CIDv0 (46 characters starting `Qm`).
///
/// Like the reference implementations, this is a syntax check only: it accepts any multibase
/// prefix and does not decode the bytes, so it accepts strings that are not real CIDs (the
/// interop fixtures include some, such as `mBcDxtdWx0aWhhc2g+`). Use [`parse_cid_str`] to
/// decode.
pub fn validate_cid_str(s: &str) -> Result<(), SyntaxError> {
    syntax(s).map_err(|reason| SyntaxError::new("cid", s, reason))
}

/// Decodes a CID string that passes [`validate_cid_str`]: any multibase the `cid` crate
/// knows, and the decoded CID must be version 1.
pub fn parse_cid_str(s: &str) -> Result<Cid, SyntaxError> {
    validate_cid_str(s)?;
    let cid = Cid::try_from(s).map_err(|err| SyntaxError::new("cid", s, err.to_string()))?;
    if cid.version() != Version::V1 {
        return Err(SyntaxError::new("cid", s, "only CIDv1 is supported"));
    }
    Ok(cid)
}

fn syntax(s: &str) -> Result<(), &'static str> {
    if !LEN.contains(&s.len()) {
        return Err("must be 8 to 256 characters");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'=')
    {
        return Err("may only contain letters, digits, + and =");
    }
    if s.len() == 46 && s.starts_with("Qm") {
        return Err("CIDv0 is not supported");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm";

    #[test]
    fn parses_v1_and_round_trips() {
        let cid = parse_cid_str(V1).unwrap();
        assert_eq!(cid.to_string(), V1);
    }

    #[test]
    fn rejects_v0_even_when_decodable() {
        let v0 = "QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR";
        let err = validate_cid_str(v0).unwrap_err();
        assert_eq!(err.reason, "CIDv0 is not supported");
        assert!(parse_cid_str(v0).is_err());
    }

    #[test]
    fn syntax_only_accepts_undecodable() {
        assert!(validate_cid_str("mBcDxtdWx0aWhhc2g+").is_ok());
        assert!(parse_cid_str("mBcDxtdWx0aWhhc2g+").is_err());
    }
}
