//! Generic URIs (the lexicon `uri` format, RFC 3986 syntax).

use super::SyntaxError;

/// The longest URI accepted, in bytes (8 KB).
const MAX_LEN: usize = 8 * 1024;

/// Checks a string against the lexicon `uri` format: an RFC 3986 scheme (a letter, then
/// letters, digits, `+`, `-` or `.`), `:`, then a non-empty rest made only of characters RFC
/// 3986 allows (unreserved, reserved and `%` followed by two hex digits) with at most one `#`.
/// At most 8 KB. No whitespace or non-ASCII anywhere; the scheme and the parts are not
/// otherwise interpreted (`dns:example.com` and `did:key:z...` are URIs).
pub fn validate_uri(s: &str) -> Result<(), SyntaxError> {
    check(s).map_err(|reason| SyntaxError::new("uri", s, reason))
}

fn check(s: &str) -> Result<(), &'static str> {
    if s.len() > MAX_LEN {
        return Err("longer than 8 KB");
    }
    let (scheme, rest) = s.split_once(':').ok_or("missing scheme")?;
    if !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return Err("scheme must be a letter followed by letters, digits, +, - or .");
    }
    if rest.is_empty() {
        return Err("nothing after the scheme");
    }
    let bytes = rest.as_bytes();
    let mut i = 0;
    let mut fragment = false;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or("incomplete %-escape")?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return Err("% must be followed by two hex digits");
                }
                i += 3;
                continue;
            }
            b'#' if fragment => return Err("more than one #"),
            b'#' => fragment = true,
            _ if is_uri_byte(b) => {}
            _ => {
                return Err(
                    "contains a character not allowed in URIs (whitespace, non-ASCII, or one of \"<>\\^`{|})",
                );
            }
        }
        i += 1;
    }
    Ok(())
}

/// RFC 3986 unreserved and reserved characters (other than `%` and `#`, handled apart).
fn is_uri_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b':'
                | b'/'
                | b'?'
                | b'['
                | b']'
                | b'@'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects() {
        for ok in [
            "https://example.com/a%20b?q=1#frag",
            "mailto:someone@example.com",
            "urn:isbn:0451450523",
            "HTTPS://EXAMPLE.COM",
        ] {
            assert!(validate_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ":x",
            "1http://x",
            "http:",
            "https://example.com/a b",
            "https://example.com/%2",
            "https://example.com/%zz",
            "https://example.com/#a#b",
            "https://example.com/<tag>",
            "https://exämple.com",
        ] {
            assert!(validate_uri(bad).is_err(), "{bad}");
        }
    }
}
