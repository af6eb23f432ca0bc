//! CAR v1: the file and wire format of repos, diffs and proofs.
//!
//! The reader takes the whole input as a slice, tolerates any block order, duplicate blocks and
//! blocks nothing links to, and checks every block's bytes against its CID (CIDv1, SHA2-256,
//! dag-cbor or raw). Every error names the byte offset where reading stopped.

use std::io::Write;

use bytes::Bytes;
use cid::Cid;
use serde::{Deserialize, Serialize};

use crate::blockstore::MemoryBlockStore;

/// Limits on what the reader accepts from untrusted input.
#[derive(Debug, Clone, Copy)]
pub struct CarLimits {
    /// Largest block, in bytes.
    pub max_block_bytes: usize,
    /// Most blocks.
    pub max_blocks: usize,
}

impl Default for CarLimits {
    fn default() -> Self {
        CarLimits {
            // A record is at most 1 MB; MST nodes and commits are far smaller.
            max_block_bytes: 2 * 1024 * 1024,
            max_blocks: 50_000_000,
        }
    }
}

/// Why a CAR file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CarError {
    /// The input ends in the middle of something.
    #[error("CAR is truncated at byte {offset}: {what}")]
    Truncated {
        /// Where.
        offset: usize,
        /// What was being read.
        what: &'static str,
    },
    /// A length prefix is not a valid varint.
    #[error("CAR has a bad varint at byte {0}")]
    Varint(usize),
    /// The header is not `{version: 1, roots: [...]}`.
    #[error("CAR header is invalid: {0}")]
    Header(String),
    /// A section's CID cannot be read.
    #[error("CAR section at byte {offset} has an invalid CID: {reason}")]
    Cid {
        /// Where.
        offset: usize,
        /// The parser's complaint.
        reason: String,
    },
    /// A block does not match its CID.
    #[error("CAR block at byte {offset}: {source}")]
    Block {
        /// Where.
        offset: usize,
        /// The mismatch.
        source: guild_core::cids::CidCheckError,
    },
    /// Over a limit.
    #[error("CAR exceeds a limit at byte {offset}: {what}")]
    Limit {
        /// Where.
        offset: usize,
        /// Which limit.
        what: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Header {
    roots: Vec<Cid>,
    version: u64,
}

/// A CAR file's contents, every block verified.
#[derive(Debug, Clone)]
pub struct Car {
    /// The roots named by the header.
    pub roots: Vec<Cid>,
    /// The blocks, by CID.
    pub blocks: MemoryBlockStore,
}

fn read_varint(buf: &[u8], pos: usize) -> Result<(u64, usize), CarError> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let Some(&b) = buf.get(pos + i) else {
            return Err(CarError::Truncated {
                offset: pos,
                what: "varint",
            });
        };
        if i == 9 && b > 1 {
            return Err(CarError::Varint(pos));
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if i > 0 && b == 0 {
                return Err(CarError::Varint(pos));
            }
            return Ok((v, pos + i + 1));
        }
    }
    Err(CarError::Varint(pos))
}

fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads and verifies a CAR v1 file with the default limits (copies the input once).
pub fn read_car(bytes: &[u8]) -> Result<Car, CarError> {
    read_car_with(Bytes::copy_from_slice(bytes), CarLimits::default())
}

/// Reads and verifies a CAR v1 file held in `bytes`; blocks are slices of it (no copies).
pub fn read_car_owned(bytes: Bytes) -> Result<Car, CarError> {
    read_car_with(bytes, CarLimits::default())
}

/// Reads and verifies a CAR v1 file.
pub fn read_car_with(input: Bytes, limits: CarLimits) -> Result<Car, CarError> {
    let bytes: &[u8] = &input;
    let (hlen, pos) = read_varint(bytes, 0)?;
    let hlen = usize::try_from(hlen).unwrap_or(usize::MAX);
    if hlen > 64 * 1024 {
        return Err(CarError::Limit {
            offset: 0,
            what: format!("header of {hlen} bytes"),
        });
    }
    let Some(hbytes) = bytes.get(pos..pos + hlen) else {
        return Err(CarError::Truncated {
            offset: pos,
            what: "header",
        });
    };
    let header: Header =
        guild_core::data::decode_as(hbytes).map_err(|e| CarError::Header(e.to_string()))?;
    if header.version != 1 {
        return Err(CarError::Header(format!(
            "version {} (only CAR v1 is read)",
            header.version
        )));
    }
    if header.roots.is_empty() {
        return Err(CarError::Header("no roots".into()));
    }
    let mut pos = pos + hlen;
    let mut blocks = MemoryBlockStore::new();
    let mut count = 0usize;
    while pos < bytes.len() {
        let start = pos;
        let (len, p) = read_varint(bytes, pos)?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > limits.max_block_bytes + 128 {
            return Err(CarError::Limit {
                offset: start,
                what: format!(
                    "section of {len} bytes (blocks are limited to {})",
                    limits.max_block_bytes
                ),
            });
        }
        let Some(section) = bytes.get(p..p + len) else {
            return Err(CarError::Truncated {
                offset: start,
                what: "block",
            });
        };
        let mut cursor = std::io::Cursor::new(section);
        let cid = Cid::read_bytes(&mut cursor).map_err(|e| CarError::Cid {
            offset: p,
            reason: e.to_string(),
        })?;
        let cid_len = cursor.position() as usize;
        if !guild_core::cbor::cid_encoding_is(&cid, &section[..cid_len]) {
            return Err(CarError::Cid {
                offset: p,
                reason: "not the canonical encoding of the CID".into(),
            });
        }
        let data = &section[cid_len..];
        if data.len() > limits.max_block_bytes {
            return Err(CarError::Limit {
                offset: start,
                what: format!("block of {} bytes", data.len()),
            });
        }
        guild_core::cids::verify_block(&cid, data).map_err(|source| CarError::Block {
            offset: start,
            source,
        })?;
        count += 1;
        if count > limits.max_blocks {
            return Err(CarError::Limit {
                offset: start,
                what: format!("more than {} blocks", limits.max_blocks),
            });
        }
        let offset = p + cursor.position() as usize;
        blocks.insert(cid, input.slice(offset..p + len));
        pos = p + len;
    }
    Ok(Car {
        roots: header.roots,
        blocks,
    })
}

/// Writes a CAR v1 stream: the header on creation, then one section per block.
#[derive(Debug)]
pub struct CarWriter<W: Write> {
    out: W,
    scratch: Vec<u8>,
}

impl<W: Write> CarWriter<W> {
    /// Starts a CAR with the given roots.
    pub fn new(mut out: W, roots: &[Cid]) -> std::io::Result<Self> {
        let header = Header {
            roots: roots.to_vec(),
            version: 1,
        };
        let hbytes = guild_core::data::encode_serde(&header)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut scratch = Vec::with_capacity(64);
        write_varint(&mut scratch, hbytes.len() as u64);
        out.write_all(&scratch)?;
        out.write_all(&hbytes)?;
        Ok(CarWriter { out, scratch })
    }

    /// Appends one block.
    pub fn write_block(&mut self, cid: &Cid, data: &[u8]) -> std::io::Result<()> {
        self.scratch.clear();
        let cid_bytes = cid.to_bytes();
        write_varint(&mut self.scratch, (cid_bytes.len() + data.len()) as u64);
        self.scratch.extend_from_slice(&cid_bytes);
        self.out.write_all(&self.scratch)?;
        self.out.write_all(data)
    }

    /// Finishes and returns the sink.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Writes a whole CAR into a byte vector.
pub fn car_bytes<'a>(
    roots: &[Cid],
    blocks: impl IntoIterator<Item = (&'a Cid, &'a [u8])>,
) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    if let Ok(mut w) = CarWriter::new(&mut out, roots) {
        for (cid, data) in blocks {
            let _ = w.write_block(cid, data);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tolerance() {
        let a = b"\xa1\x61a\x01".to_vec();
        let b = b"\x80".to_vec();
        let ca = guild_core::cids::cid_for_cbor(&a);
        let cb = guild_core::cids::cid_for_cbor(&b);
        // Out of order, a duplicate, and an unlinked block.
        let bytes = car_bytes(
            &[ca],
            [
                (&cb, b.as_slice()),
                (&ca, a.as_slice()),
                (&cb, b.as_slice()),
            ],
        );
        let car = read_car(&bytes).unwrap();
        assert_eq!(car.roots, vec![ca]);
        assert_eq!(car.blocks.len(), 2);
        assert_eq!(car.blocks.get(&ca), Some(a.as_slice()));
    }

    #[test]
    fn corrupt_inputs_are_refused() {
        let a = b"\xa1\x61a\x01".to_vec();
        let ca = guild_core::cids::cid_for_cbor(&a);
        let good = car_bytes(&[ca], [(&ca, a.as_slice())]);
        // Flip the last data byte: hash mismatch.
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 1] ^= 0xff;
        assert!(matches!(read_car(&bad), Err(CarError::Block { .. })));
        // Truncation anywhere.
        let header_end = 1 + good[0] as usize;
        for cut in (0..good.len()).filter(|&c| c != header_end) {
            assert!(read_car(&good[..cut]).is_err(), "cut at {cut}");
        }
        assert!(read_car(&[]).is_err());
        assert!(read_car(&[0xff; 11]).is_err());
    }
}
