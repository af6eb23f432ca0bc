//! CID computation for the two block kinds AT Protocol uses: DAG-CBOR (`0x71`) and raw (`0x55`),
//! both CIDv1 over SHA2-256.

use cid::Cid;
use multihash::Multihash;
use sha2::{Digest, Sha256};

/// Multicodec code of DAG-CBOR blocks (records, MST nodes, commits, ops).
pub const DAG_CBOR: u64 = 0x71;
/// Multicodec code of raw blocks (blobs).
pub const RAW: u64 = 0x55;
/// Multihash code of SHA2-256, the only hash Guild accepts.
pub const SHA2_256: u64 = 0x12;

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The CIDv1 of a block with the given codec and SHA-256 digest.
pub fn cid_from_digest(codec: u64, digest: &[u8; 32]) -> Cid {
    // A 32-byte digest always fits the 64-byte multihash: this cannot fail.
    let mh = Multihash::<64>::wrap(SHA2_256, digest).unwrap_or_default();
    Cid::new_v1(codec, mh)
}

/// The SHA-256 digest of a CIDv1 DAG-CBOR block's CID (the inverse of
/// [`cid_from_digest`] with [`DAG_CBOR`]); `None` for a CID of another form.
pub fn dag_cbor_digest(cid: &Cid) -> Option<[u8; 32]> {
    let hash = cid.hash();
    if cid.version() != cid::Version::V1 || cid.codec() != DAG_CBOR || hash.code() != SHA2_256 {
        return None;
    }
    hash.digest().try_into().ok()
}

/// The CID of a DAG-CBOR block.
pub fn cid_for_cbor(bytes: &[u8]) -> Cid {
    cid_from_digest(DAG_CBOR, &sha256(bytes))
}

/// The CID of a raw block (a blob).
pub fn cid_for_raw(bytes: &[u8]) -> Cid {
    cid_from_digest(RAW, &sha256(bytes))
}

/// Why a block does not match the CID it was stored or sent under.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidCheckError {
    /// The CID is not version 1.
    #[error("CID {0} is not CIDv1")]
    NotV1(Cid),
    /// The CID uses a hash other than SHA2-256.
    #[error("CID {cid} uses hash 0x{code:x}; only sha2-256 (0x12) is accepted")]
    UnsupportedHash {
        /// The CID.
        cid: Cid,
        /// Its multihash code.
        code: u64,
    },
    /// The CID uses a codec other than DAG-CBOR or raw.
    #[error("CID {cid} uses codec 0x{codec:x}; only dag-cbor (0x71) and raw (0x55) are accepted")]
    UnsupportedCodec {
        /// The CID.
        cid: Cid,
        /// Its codec.
        codec: u64,
    },
    /// The bytes hash to something else.
    #[error("block bytes do not hash to CID {claimed} (they hash to {actual})")]
    Mismatch {
        /// The CID the block claimed.
        claimed: Cid,
        /// The CID of the bytes actually received.
        actual: Cid,
    },
}

/// Checks that `bytes` are exactly the block named by `cid` (CIDv1, SHA2-256, dag-cbor or raw).
pub fn verify_block(cid: &Cid, bytes: &[u8]) -> Result<(), CidCheckError> {
    if cid.version() != cid::Version::V1 {
        return Err(CidCheckError::NotV1(*cid));
    }
    let code = cid.hash().code();
    if code != SHA2_256 || cid.hash().size() != 32 {
        return Err(CidCheckError::UnsupportedHash { cid: *cid, code });
    }
    let codec = cid.codec();
    if codec != DAG_CBOR && codec != RAW {
        return Err(CidCheckError::UnsupportedCodec { cid: *cid, codec });
    }
    let digest = sha256(bytes);
    if cid.hash().digest() != digest {
        return Err(CidCheckError::Mismatch {
            claimed: *cid,
            actual: cid_from_digest(codec, &digest),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_cbor_map_cid() {
        // 0xa0 is the empty DAG-CBOR map; its CID is well known.
        let cid = cid_for_cbor(&[0xa0]);
        assert_eq!(
            cid.to_string(),
            "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua"
        );
        assert!(verify_block(&cid, &[0xa0]).is_ok());
        assert!(matches!(
            verify_block(&cid, &[0xa1]),
            Err(CidCheckError::Mismatch { .. })
        ));
    }
}
