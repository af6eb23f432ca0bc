//! The MST node's wire form: `{l: link|null, e: [{p, k, v, t: link|null}]}` in canonical
//! DAG-CBOR, and the key-height rule.

use cid::Cid;
#[cfg(test)]
use serde::{Deserialize, Serialize};
#[cfg(test)]
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};

use guild_core::cbor::{write_head, write_link};

use super::MstError;

/// The most entries a node may hold when read from untrusted input. With fanout 4 a node has
/// 4 entries on average; a node of thousands is only possible by grinding keys.
pub const MAX_NODE_ENTRIES: usize = 4096;

/// The MST height of a key: leading zero bits of SHA-256(key), divided by two (fanout 4).
pub fn key_height(key: &[u8]) -> u32 {
    let digest = Sha256::digest(key);
    let mut zeros = 0u32;
    for &b in digest.iter() {
        if b == 0 {
            zeros += 8;
        } else {
            zeros += b.leading_zeros();
            break;
        }
    }
    zeros / 2
}

/// Length of the common prefix of two byte strings.
pub fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// One entry as it is on the wire (serde form; the tests hold the direct codec to it).
#[cfg(test)]
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct EntryData {
    pub k: ByteBuf,
    pub p: u64,
    pub t: Option<Cid>,
    pub v: Cid,
}

/// A node as it is on the wire (serde form; the tests hold the direct codec to it).
#[cfg(test)]
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct NodeData {
    pub e: Vec<EntryData>,
    pub l: Option<Cid>,
}

/// A decoded node: full keys, values, children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedNode {
    /// The subtree left of the first entry.
    pub left: Option<Cid>,
    /// `(full key, value, right subtree)` in key order.
    pub entries: Vec<(Vec<u8>, Cid, Option<Cid>)>,
}

/// One entry as read: key suffix, prefix length, right subtree, value.
type RawEntry<'a> = (&'a [u8], u64, Option<Cid>, Cid);

/// A cursor that accepts only the canonical byte layout of an MST node.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn expect(&mut self, bytes: &[u8]) -> Result<(), &'static str> {
        if self.buf.get(self.pos..self.pos + bytes.len()) == Some(bytes) {
            self.pos += bytes.len();
            Ok(())
        } else {
            Err("not the canonical layout {e, l} / {k, p, t, v}")
        }
    }

    /// A minimally encoded head of the given major type.
    fn head(&mut self, major: u8) -> Result<u64, &'static str> {
        let (m, arg, next) =
            guild_core::cbor::read_head(self.buf, self.pos).map_err(|e| e.reason)?;
        if m != major {
            return Err("unexpected CBOR type");
        }
        self.pos = next;
        Ok(arg)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], &'static str> {
        let n = usize::try_from(n).map_err(|_| "length too large")?;
        let out = self
            .buf
            .get(self.pos..self.pos.saturating_add(n))
            .ok_or("truncated")?;
        self.pos += n;
        Ok(out)
    }

    fn link(&mut self) -> Result<Cid, &'static str> {
        self.expect(&[0xd8, 0x2a])?;
        let len = self.head(2)?;
        let bytes = self.take(len)?;
        let Some((&0, cid_bytes)) = bytes.split_first() else {
            return Err("CID link must start with 0x00");
        };
        let mut cursor = std::io::Cursor::new(cid_bytes);
        let cid = Cid::read_bytes(&mut cursor).map_err(|_| "invalid CID")?;
        // Exactly one CID, with a digest, in its one encoding (varints can be padded).
        if cursor.position() as usize != cid_bytes.len()
            || cid.hash().size() == 0
            || !guild_core::cbor::cid_encoding_is(&cid, cid_bytes)
        {
            return Err("invalid CID");
        }
        Ok(cid)
    }

    fn link_or_null(&mut self) -> Result<Option<Cid>, &'static str> {
        if self.buf.get(self.pos) == Some(&0xf6) {
            self.pos += 1;
            Ok(None)
        } else {
            self.link().map(Some)
        }
    }
}

/// Strictly decodes a node from untrusted bytes: exactly the canonical DAG-CBOR layout (so no
/// second encoding of one node is accepted), keys in strictly increasing order, maximal prefix
/// compression, at most [`MAX_NODE_ENTRIES`] entries.
pub fn decode_node(cid: &Cid, bytes: &[u8]) -> Result<DecodedNode, MstError> {
    let bad = |reason: String| MstError::BadNode { cid: *cid, reason };
    let mut r = Reader { buf: bytes, pos: 0 };
    let at = |r: &Reader<'_>, e: &str| format!("{e} at byte {}", r.pos);
    r.expect(&[0xa2, 0x61, b'e']).map_err(|e| bad(at(&r, e)))?;
    let n = r.head(4).map_err(|e| bad(at(&r, e)))?;
    if n > MAX_NODE_ENTRIES as u64 {
        return Err(bad(format!(
            "{n} entries, more than the limit of {MAX_NODE_ENTRIES}"
        )));
    }
    let mut entries: Vec<(Vec<u8>, Cid, Option<Cid>)> = Vec::with_capacity(n as usize);
    for i in 0..n as usize {
        let mut entry = || -> Result<RawEntry<'_>, &'static str> {
            r.expect(&[0xa4, 0x61, b'k'])?;
            let klen = r.head(2)?;
            let k = r.take(klen)?;
            r.expect(&[0x61, b'p'])?;
            let p = r.head(0)?;
            r.expect(&[0x61, b't'])?;
            let t = r.link_or_null()?;
            r.expect(&[0x61, b'v'])?;
            let v = r.link()?;
            Ok((k, p, t, v))
        };
        let (k, p, t, v) = entry().map_err(|e| bad(format!("entry {i}: {e}")))?;
        let p = usize::try_from(p).unwrap_or(usize::MAX);
        let key = match entries.last() {
            None => {
                if p != 0 {
                    return Err(bad("the first entry's prefix length must be 0".into()));
                }
                k.to_vec()
            }
            Some((prev, _, _)) => {
                if p > prev.len() {
                    return Err(bad(format!(
                        "entry {i}: prefix length {p} is longer than the previous key"
                    )));
                }
                let mut key = Vec::with_capacity(p + k.len());
                key.extend_from_slice(&prev[..p]);
                key.extend_from_slice(k);
                if common_prefix_len(prev, &key) != p {
                    return Err(bad(format!("entry {i}: prefix compression is not maximal")));
                }
                if key.as_slice() <= prev.as_slice() {
                    return Err(bad(format!(
                        "entry {i}: keys are not in strictly increasing order"
                    )));
                }
                key
            }
        };
        entries.push((key, v, t));
    }
    r.expect(&[0x61, b'l']).map_err(|e| bad(at(&r, e)))?;
    let left = r.link_or_null().map_err(|e| bad(at(&r, e)))?;
    if r.pos != bytes.len() {
        return Err(bad(at(&r, "trailing bytes")));
    }
    Ok(DecodedNode { left, entries })
}

/// Canonical encoding of a node, written directly (the hot path of every commit).
pub fn encode_node<'a>(
    left: Option<&Cid>,
    entries: impl ExactSizeIterator<Item = (&'a [u8], &'a Cid, Option<&'a Cid>)>,
    out: &mut Vec<u8>,
) {
    out.clear();
    // {"e": [...], "l": ...}: keys sorted length-first then bytewise.
    out.push(0xa2);
    out.extend_from_slice(&[0x61, b'e']);
    write_head(out, 4, entries.len() as u64);
    let mut prev: &[u8] = &[];
    for (key, val, right) in entries {
        let p = common_prefix_len(prev, key);
        // {"k", "p", "t", "v"}
        out.push(0xa4);
        out.extend_from_slice(&[0x61, b'k']);
        write_head(out, 2, (key.len() - p) as u64);
        out.extend_from_slice(&key[p..]);
        out.extend_from_slice(&[0x61, b'p']);
        write_head(out, 0, p as u64);
        out.extend_from_slice(&[0x61, b't']);
        write_link_or_null(out, right);
        out.extend_from_slice(&[0x61, b'v']);
        write_link(out, val);
        prev = key;
    }
    out.extend_from_slice(&[0x61, b'l']);
    write_link_or_null(out, left);
}

fn write_link_or_null(out: &mut Vec<u8>, cid: Option<&Cid>) {
    match cid {
        Some(c) => write_link(out, c),
        None => out.push(0xf6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_encoder_matches_serde() {
        let v = guild_core::cids::cid_for_cbor(b"\xa0");
        let t = guild_core::cids::cid_for_cbor(b"\x80");
        let keys: Vec<Vec<u8>> = vec![
            b"app.bsky.feed.post/aaa".to_vec(),
            b"app.bsky.feed.post/abb".to_vec(),
            b"com.x/y".to_vec(),
        ];
        let mut out = Vec::new();
        encode_node(
            Some(&t),
            keys.iter()
                .enumerate()
                .map(|(i, k)| (k.as_slice(), &v, if i == 1 { Some(&t) } else { None })),
            &mut out,
        );
        let mut prev: &[u8] = &[];
        let data = NodeData {
            e: keys
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    let p = common_prefix_len(prev, k);
                    prev = k;
                    EntryData {
                        k: ByteBuf::from(k[p..].to_vec()),
                        p: p as u64,
                        t: if i == 1 { Some(t) } else { None },
                        v,
                    }
                })
                .collect(),
            l: Some(t),
        };
        assert_eq!(out, serde_ipld_dagcbor::to_vec(&data).unwrap());
        let cid = guild_core::cids::cid_for_cbor(&out);
        let back = decode_node(&cid, &out).unwrap();
        assert_eq!(back.entries.len(), 3);
        assert_eq!(back.entries[1].0, keys[1]);
    }

    #[test]
    fn empty_node_is_the_well_known_block() {
        let mut out = Vec::new();
        encode_node(None, std::iter::empty(), &mut out);
        // The empty MST root of AT Protocol.
        assert_eq!(
            guild_core::cids::cid_for_cbor(&out).to_string(),
            "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
        );
    }
}
