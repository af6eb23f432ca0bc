//! A strict, non-recursive structural check of DAG-CBOR bytes, run on every untrusted input
//! before it is decoded.
//!
//! serde_ipld_dagcbor's decoder already rejects unsorted and duplicate map keys, non-minimal
//! integers and indefinite lengths, but it recurses without a depth limit and accepts floats.
//! This scanner walks the bytes iteratively and enforces what AT Protocol's data model and
//! Guild add on top: no floats, no simple values other than `false`/`true`/`null`, no tags other
//! than 42 (CID links, whose bytes must start with the `0x00` multibase prefix), string map keys
//! in canonical order (length first, then bytewise) with no duplicates, valid UTF-8 in every
//! text string, `$type` values that are non-empty strings, integers within `i64`, bounded
//! nesting, no trailing bytes, and lengths that fit in the input. Every error names the byte
//! offset where the problem starts. After `check` passes, serde decoding cannot fail on
//! structure, and the bytes are the one canonical encoding of their value.

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

/// Reads the CBOR head starting at `pos` (the head byte): (major type, argument, offset after
/// the head). Rejects truncation, indefinite lengths, reserved values and non-minimal
/// encodings (floats, major type 7, have no minimal form to check). This is the one head reader
/// of Guild's decoders: [`check`], [`head`] and the MST node decoder all read heads with it.
pub fn read_head(buf: &[u8], pos: usize) -> Result<(u8, u64, usize), CborError> {
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
    /// The previous key of a map, as (offset, length) of its bytes.
    last_key: Option<(usize, usize)>,
}

/// Checks that `buf` holds exactly one well-formed DAG-CBOR item within Guild's rules.
pub fn check(buf: &[u8]) -> Result<(), CborError> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut pos = 0usize;
    // Set when the previous item was the map key "$type".
    let mut type_value = false;
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
        if std::mem::take(&mut type_value) && (major != 3 || arg == 0) {
            return err(start, "$type must be a non-empty string");
        }
        pos = next;
        match major {
            0 | 1 => {
                if arg > i64::MAX as u64 {
                    return err(start, "integer is out of the 64-bit signed range");
                }
            }
            2 | 3 => {
                let text = string_body(buf, start, pos, major, arg)?;
                if is_key {
                    check_key_order(buf, &mut stack, start, pos, text)?;
                    type_value = text == b"$type";
                }
                pos += text.len();
            }
            4 | 5 => {
                if open_container(&mut stack, buf, start, pos, major, arg)? {
                    continue;
                }
            }
            6 => pos = check_link(buf, start, pos, arg)?,
            _ => check_simple(b_info(buf[start]), start)?,
        }
        if close_completed(&mut stack, buf, pos)? {
            return Ok(());
        }
    }
}

/// The body of the byte (major 2) or text (major 3) string of length `arg` at `pos`, whose
/// head starts at `start`: it must fit in the input, and text must be valid UTF-8.
#[inline]
fn string_body(
    buf: &[u8],
    start: usize,
    pos: usize,
    major: u8,
    arg: u64,
) -> Result<&[u8], CborError> {
    let len = usize::try_from(arg).unwrap_or(usize::MAX);
    if buf.len().saturating_sub(pos) < len {
        return err(start, "string length runs past the end of input");
    }
    let text = &buf[pos..pos + len];
    if major == 3 && std::str::from_utf8(text).is_err() {
        return err(start, "text string is not valid UTF-8");
    }
    Ok(text)
}

/// Checks that the map key `text` (at `pos`, head at `start`) comes strictly after the
/// previous key of the innermost map in canonical order, and records it as that key.
#[inline]
fn check_key_order(
    buf: &[u8],
    stack: &mut [Frame],
    start: usize,
    pos: usize,
    text: &[u8],
) -> Result<(), CborError> {
    let Some(frame) = stack.last_mut() else {
        return Ok(());
    };
    let len = text.len();
    if let Some((o, l)) = frame.last_key {
        let prev = &buf[o..o + l];
        if (l, prev) >= (len, text) {
            return err(
                start,
                if prev == text {
                    "duplicate map key"
                } else {
                    "map keys are not in canonical order"
                },
            );
        }
    }
    frame.last_key = Some((pos, len));
    Ok(())
}

/// Opens the list (major 4) or map (major 5) of `arg` items or entries whose head starts at
/// `start`; returns whether a frame was pushed (false for an empty container, which is
/// complete at once).
#[inline]
fn open_container(
    stack: &mut Vec<Frame>,
    buf: &[u8],
    start: usize,
    pos: usize,
    major: u8,
    arg: u64,
) -> Result<bool, CborError> {
    let items = if major == 5 {
        arg.saturating_mul(2)
    } else {
        arg
    };
    // Every item takes at least one byte.
    if items > (buf.len() - pos) as u64 {
        return err(start, "container length runs past the end of input");
    }
    if items == 0 {
        return Ok(false);
    }
    if stack.len() >= MAX_DEPTH {
        return err(start, "nesting is deeper than the limit");
    }
    stack.push(Frame {
        remaining: items,
        is_map: major == 5,
        index: 0,
        last_key: None,
    });
    Ok(true)
}

/// Checks the tag with number `arg` whose head starts at `start`: only a CID link (tag 42
/// around `0x00` and exactly one CID) is allowed. Returns the offset after the link.
fn check_link(buf: &[u8], start: usize, pos: usize, arg: u64) -> Result<usize, CborError> {
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
    if !is_exact_cid(&buf[p + 1..p + len]) {
        return err(p, "CID link bytes are not exactly one valid CID");
    }
    Ok(p + len)
}

/// Checks the major-type-7 item with additional information `info` at `start`: only
/// `false`, `true` and `null`.
#[inline]
fn check_simple(info: u8, start: usize) -> Result<(), CborError> {
    match info {
        20..=22 => Ok(()),
        23 => err(start, "undefined is not allowed"),
        25..=27 => err(start, "floats are not allowed"),
        _ => err(
            start,
            "simple values other than false, true and null are not allowed",
        ),
    }
}

/// Counts a complete item (ending at `pos`) against its containers, closing every container
/// it completes; returns whether the top-level item is complete, with no trailing bytes.
#[inline]
fn close_completed(stack: &mut Vec<Frame>, buf: &[u8], pos: usize) -> Result<bool, CborError> {
    loop {
        let Some(top) = stack.last_mut() else {
            if pos != buf.len() {
                return err(pos, "trailing bytes after the item");
            }
            return Ok(true);
        };
        top.remaining -= 1;
        top.index += 1;
        if top.remaining > 0 {
            return Ok(false);
        }
        stack.pop();
    }
}

/// Whether `bytes` are exactly one valid CID (no trailing bytes, a non-empty digest) in its
/// canonical encoding.
fn is_exact_cid(bytes: &[u8]) -> bool {
    let mut cursor = std::io::Cursor::new(bytes);
    match cid::Cid::read_bytes(&mut cursor) {
        Ok(cid) => {
            cursor.position() as usize == bytes.len()
                && cid.hash().size() > 0
                && cid_encoding_is(&cid, bytes)
        }
        Err(_) => false,
    }
}

/// Whether `bytes` are the canonical encoding of `cid` (the varint reader accepts padded and
/// overflowing varints, so a parsed CID can come from other bytes). No heap allocation.
pub fn cid_encoding_is(cid: &cid::Cid, bytes: &[u8]) -> bool {
    let mut buf = [0u8; 160];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    match cid.write_bytes(&mut cursor) {
        Ok(n) => buf.get(..n) == Some(bytes),
        Err(_) => false,
    }
}

fn b_info(b: u8) -> u8 {
    b & 0x1f
}

/// Reads the head at `pos` of input that [`check`] accepted: (major type, argument, offset
/// after the head); `None` where [`read_head`] finds an error.
pub fn head(buf: &[u8], pos: usize) -> Option<(u8, u64, usize)> {
    read_head(buf, pos).ok()
}

/// Skips one item of input that [`check`] accepted; returns the offset after it.
pub fn skip(buf: &[u8], pos: usize) -> Option<usize> {
    let mut pending: u64 = 1;
    let mut pos = pos;
    while pending > 0 {
        let (major, arg, next) = head(buf, pos)?;
        pending -= 1;
        pos = next;
        match major {
            2 | 3 => pos = pos.checked_add(usize::try_from(arg).ok()?)?,
            4 => pending = pending.checked_add(arg)?,
            5 => pending = pending.checked_add(arg.checked_mul(2)?)?,
            6 => pending += 1,
            _ => {}
        }
    }
    Some(pos)
}

/// The top-level map entries of input that [`check`] accepted, as (key, value bytes).
pub fn map_entries(buf: &[u8]) -> Option<Vec<(&str, &[u8])>> {
    let (major, count, mut pos) = head(buf, 0)?;
    if major != 5 {
        return None;
    }
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let (m, len, p) = head(buf, pos)?;
        if m != 3 {
            return None;
        }
        let key_end = p + usize::try_from(len).ok()?;
        let key = std::str::from_utf8(buf.get(p..key_end)?).ok()?;
        let val_end = skip(buf, key_end)?;
        out.push((key, buf.get(key_end..val_end)?));
        pos = val_end;
    }
    Some(out)
}

/// Writes a minimal CBOR head.
pub fn write_head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    if arg < 24 {
        out.push(m | arg as u8);
    } else if arg <= 0xff {
        out.extend_from_slice(&[m | 24, arg as u8]);
    } else if arg <= 0xffff {
        out.push(m | 25);
        out.extend_from_slice(&(arg as u16).to_be_bytes());
    } else if arg <= 0xffff_ffff {
        out.push(m | 26);
        out.extend_from_slice(&(arg as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&arg.to_be_bytes());
    }
}

/// Writes a CID link: tag 42 around the byte string `0x00 ‖ cid bytes`.
pub fn write_link(out: &mut Vec<u8>, cid: &cid::Cid) {
    out.extend_from_slice(&[0xd8, 0x2a]);
    write_head(out, 2, (cid.encoded_len() + 1) as u64);
    out.push(0);
    // Writing into a Vec cannot fail.
    let _ = cid.write_bytes(&mut *out);
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
        bad(&[0xa2, 0x61, b'b', 0x01, 0x61, b'a', 0x01], 4); // unsorted keys
        bad(&[0xa2, 0x61, b'a', 0x01, 0x61, b'a', 0x01], 4); // duplicate keys
        bad(&[0xa2, 0x62, b'a', b'a', 0x01, 0x61, b'b', 0x01], 5); // length-first order
        bad(&[0x62, 0xff, 0xfe], 0); // bad UTF-8
        bad(&[0xa1, 0x65, b'$', b't', b'y', b'p', b'e', 0x01], 7); // $type not a string
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
