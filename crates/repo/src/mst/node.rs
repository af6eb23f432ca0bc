//! The MST node's wire form: `{l: link|null, e: [{p, k, v, t: link|null}]}` in canonical
//! DAG-CBOR, and the key-height rule.

use cid::Cid;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};

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

/// One entry as it is on the wire (serde form, used for strict decoding).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct EntryData {
    pub k: ByteBuf,
    pub p: u64,
    pub t: Option<Cid>,
    pub v: Cid,
}

/// A node as it is on the wire (serde form, used for strict decoding).
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

/// Strictly decodes a node from untrusted bytes: canonical DAG-CBOR, keys in strictly
/// increasing order, maximal prefix compression, bounded size.
pub fn decode_node(cid: &Cid, bytes: &[u8]) -> Result<DecodedNode, MstError> {
    let bad = |reason: String| MstError::BadNode { cid: *cid, reason };
    let data: NodeData =
        guild_core::data::decode_canonical(bytes).map_err(|e| bad(e.to_string()))?;
    if data.e.len() > MAX_NODE_ENTRIES {
        return Err(bad(format!(
            "{} entries, more than the limit of {MAX_NODE_ENTRIES}",
            data.e.len()
        )));
    }
    let mut entries: Vec<(Vec<u8>, Cid, Option<Cid>)> = Vec::with_capacity(data.e.len());
    for (i, e) in data.e.into_iter().enumerate() {
        let p = usize::try_from(e.p).unwrap_or(usize::MAX);
        let key = match entries.last() {
            None => {
                if p != 0 {
                    return Err(bad("the first entry's prefix length must be 0".into()));
                }
                e.k.into_vec()
            }
            Some((prev, _, _)) => {
                if p > prev.len() {
                    return Err(bad(format!(
                        "entry {i}: prefix length {p} is longer than the previous key"
                    )));
                }
                let mut key = Vec::with_capacity(p + e.k.len());
                key.extend_from_slice(&prev[..p]);
                key.extend_from_slice(&e.k);
                if common_prefix_len(prev, &key) != p {
                    return Err(bad(format!(
                        "entry {i}: prefix compression is not maximal"
                    )));
                }
                if key.as_slice() <= prev.as_slice() {
                    return Err(bad(format!("entry {i}: keys are not in strictly increasing order")));
                }
                key
            }
        };
        entries.push((key, e.v, e.t));
    }
    Ok(DecodedNode {
        left: data.l,
        entries,
    })
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

/// Writes a CID link: tag 42 around the byte string `0x00 ‖ cid bytes`.
pub(crate) fn write_link(out: &mut Vec<u8>, cid: &Cid) {
    out.extend_from_slice(&[0xd8, 0x2a]);
    let len = cid.encoded_len();
    write_head(out, 2, (len + 1) as u64);
    out.push(0);
    // Writing into a Vec cannot fail.
    let _ = cid.write_bytes(&mut *out);
}

pub(crate) fn write_head(out: &mut Vec<u8>, major: u8, arg: u64) {
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
