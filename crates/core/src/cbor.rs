//! A strict, non-recursive structural check of DAG-CBOR bytes, run on every untrusted input
//! before it is decoded.
//!
//! serde_ipld_dagcbor's decoder already rejects unsorted and duplicate map keys, non-minimal
//! integers and indefinite lengths, but it recurses without a depth limit and accepts floats.
//! This scanner walks the bytes iteratively and enforces what AT Protocol's data model and
//! Guild add on top: no floats, no simple values other than `false`/`true`/`null`, no tags other
//! than 42 (CID links, whose bytes must start with the `0x00` multibase prefix), string map keys,
//! integers within `i64`, bounded nesting, no trailing bytes, and lengths that fit in the
//! input. Every error names the byte offset where the problem starts.

/// The deepest nesting of maps and lists accepted from untrusted input.
pub const MAX_DEPTH: usize = 128;

/// Why a byte string is not acceptable DAG-CBOR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid DAG-CBOR at byte {offset}: {reason}")]
pub struct CborError {
    /// Byte offset into the input where the problem starts.
    pub offset: usize,
    /// What is wrong there.
    pub reason: &'static str,
}

fn err<T>(offset: usize, reason: &'static str) -> Result<T, CborError> {
    Err(CborError { offset, reason })
}

/// Reads the argument of a CBOR head starting at `pos` (the head byte). Returns the argument
/// and the offset after the head. Rejects indefinite lengths, reserved values and non-minimal
/// encodings.
fn read_head(buf: &[u8], pos: usize) -> Result<(u8, u64, usize), CborError> {
    let Some(&b) = buf.get(pos) else {
        return err(pos, "unexpected end of input");
    };
    let major = b >> 5;
    let info = b & 0x1f;
    let (arg, len) = match info {
        0..=23 => (u64::from(info), 0usize),
        24..=27 => {
            let len = 1usize << (info - 24);
            let Some(bytes) = buf.get(pos + 1..pos + 1 + len) else {
                return err(pos, "unexpected end of input in a head");
            };
            let mut v = 0u64;
            for &x in bytes {
                v = (v << 8) | u64::from(x);
            }
            (v, len)
        }
        28..=30 => return err(pos, "reserved additional-information value"),
        _ => return err(pos, "indefinite lengths are not allowed"),
    };
    // Major type 7 with 25..27 are floats: their argument is not an integer, so minimality
    // does not apply; the caller rejects them anyway.
    if major != 7 {
        let minimal = match len {
            0 => true,
            1 => arg >= 24,
            2 => arg > 0xff,
            4 => arg > 0xffff,
            _ => arg > 0xffff_ffff,
        };
        if !minimal {
            return err(pos, "integer or length is not minimally encoded");
        }
    }
    Ok((major, arg, pos + 1 + len))
}

/// One open container: how many items remain, and whether it is a map (whose even items are
/// keys).
struct Frame {
    remaining: u64,
    is_map: bool,
    index: u64,
}

/// Checks that `buf` holds exactly one well-formed DAG-CBOR item within Guild's rules.
pub fn check(buf: &[u8]) -> Result<(), CborError> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut pos = 0usize;
    loop {
        // Is this item a map key?
        let is_key = stack
            .last()
            .is_some_and(|f| f.is_map && f.index.is_multiple_of(2));
        let start = pos;
        let (major, arg, next) = read_head(buf, pos)?;
        if is_key && major != 3 {
            return err(start, "map keys must be text strings");
        }
        pos = next;
        let mut opened = false;
        match major {
            0 => {
                if arg > i64::MAX as u64 {
                    return err(start, "integer is out of the 64-bit signed range");
                }
            }
            1 => {
                if arg > i64::MAX as u64 {
                    return err(start, "integer is out of the 64-bit signed range");
                }
            }
            2 | 3 => {
                let len = usize::try_from(arg).unwrap_or(usize::MAX);
                if buf.len().saturating_sub(pos) < len {
                    return err(start, "string length runs past the end of input");
                }
                pos += len;
            }
            4 | 5 => {
                let items = if major == 5 {
                    arg.checked_mul(2).unwrap_or(u64::MAX)
                } else {
                    arg
                };
                // Every item takes at least one byte.
                if items > (buf.len() - pos) as u64 {
                    return err(start, "container length runs past the end of input");
                }
                if items > 0 {
                    if stack.len() >= MAX_DEPTH {
                        return err(start, "nesting is deeper than the limit");
                    }
                    stack.push(Frame {
                        remaining: items,
                        is_map: major == 5,
                        index: 0,
                    });
                    opened = true;
                }
            }
            6 => {
                if arg != 42 {
                    return err(start, "only tag 42 (CID link) is allowed");
                }
                let (m, len, p) = read_head(buf, pos)?;
                if m != 2 {
                    return err(pos, "tag 42 must wrap a byte string");
                }
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                if buf.len().saturating_sub(p) < len {
                    return err(pos, "string length runs past the end of input");
                }
                if len < 2 || buf[p] != 0 {
                    return err(
                        p,
                        "CID link bytes must start with the 0x00 multibase prefix",
                    );
                }
                pos = p + len;
            }
            _ => match (b_info(buf[start]), arg) {
                (20..=22, _) => {}
                (23, _) => return err(start, "undefined is not allowed"),
                (25..=27, _) => return err(start, "floats are not allowed"),
                _ => {
                    return err(
                        start,
                        "simple values other than false, true and null are not allowed",
                    );
                }
            },
        }
        if !opened {
            // Close every container this item completed.
            loop {
                let Some(top) = stack.last_mut() else {
                    if pos != buf.len() {
                        return err(pos, "trailing bytes after the item");
                    }
                    return Ok(());
                };
                top.remaining -= 1;
                top.index += 1;
                if top.remaining > 0 {
                    break;
                }
                stack.pop();
            }
        }
    }
}

fn b_info(b: u8) -> u8 {
    b & 0x1f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(bytes: &[u8], offset: usize) {
        let e = check(bytes).unwrap_err();
        assert_eq!(e.offset, offset, "{e}");
    }

    #[test]
    fn accepts_simple_items() {
        for b in [
            &[0xa0][..],
            &[0x80],
            &[0xf6],
            &[0xf5],
            &[0x18, 0x18],
            &[0xa1, 0x61, b'a', 0x01],
            &[0x82, 0x01, 0x82, 0x02, 0x03],
        ] {
            check(b).unwrap();
        }
    }

    #[test]
    fn rejects_what_dag_cbor_forbids() {
        bad(&[0xfb, 0, 0, 0, 0, 0, 0, 0, 0], 0); // float64
        bad(&[0xf7], 0); // undefined
        bad(&[0x9f, 0xff], 0); // indefinite array
        bad(&[0x18, 0x17], 0); // non-minimal
        bad(&[0xa1, 0x01, 0x01], 1); // integer key
        bad(&[0xc1, 0x01], 0); // tag 1
        bad(&[0x01, 0x01], 1); // trailing
        bad(&[0x1b, 0xff, 0, 0, 0, 0, 0, 0, 0], 0); // > i64::MAX
        bad(&[0x9a, 0xff, 0xff, 0xff, 0xff], 0); // huge length
        bad(&[0x82, 0x01], 0); // truncated: fewer bytes than items
        bad(&[0x82, 0x01, 0x61], 2); // truncated string
    }

    #[test]
    fn depth_is_bounded_without_recursion() {
        let mut deep = vec![0x81; 100_000];
        deep.push(0x01);
        bad(&deep, MAX_DEPTH);
        let mut ok = vec![0x81; MAX_DEPTH];
        ok.push(0x01);
        check(&ok).unwrap();
    }
}
