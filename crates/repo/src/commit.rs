//! Signed commits: `{did, version: 3, data, rev, prev: null, sig}`.

use bytes::Bytes;
use cid::Cid;
use guild_core::keys::{KeyError, Keypair, PublicKey, split_signed};
use guild_core::syntax::Tid;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// The repo format version Guild writes and reads.
pub const REPO_VERSION: u64 = 3;

#[derive(Serialize)]
struct UnsignedCommit<'a> {
    did: &'a str,
    version: u64,
    data: Cid,
    rev: &'a str,
    prev: Option<Cid>,
}

#[derive(Serialize, Deserialize)]
struct SignedCommit {
    did: String,
    version: u64,
    data: Cid,
    rev: String,
    prev: Option<Cid>,
    sig: ByteBuf,
}

/// A decoded, signature-checked commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The author's DID (a `did:key`).
    pub did: String,
    /// The MST root.
    pub data: Cid,
    /// The revision, a TID, strictly increasing per repo.
    pub rev: Tid,
    /// The 64-byte signature.
    pub sig: Vec<u8>,
}

/// Why a commit was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// Not a canonical commit object.
    #[error("commit {cid} is malformed: {reason}")]
    Malformed {
        /// The commit block.
        cid: Cid,
        /// What is wrong.
        reason: String,
    },
    /// A version other than 3.
    #[error("commit {cid} has repo version {version}; only version 3 is supported")]
    Version {
        /// The commit block.
        cid: Cid,
        /// The version found.
        version: u64,
    },
    /// The signature does not verify against the DID's key.
    #[error("commit {cid} signature is invalid for {did}: {source}")]
    Signature {
        /// The commit block.
        cid: Cid,
        /// The DID it claims.
        did: String,
        /// The reason.
        source: KeyError,
    },
}

/// Encodes and signs a commit; returns its CID and bytes.
pub fn sign_commit(key: &Keypair, data: Cid, rev: &Tid) -> (Cid, Bytes) {
    let did = key.did();
    let unsigned = UnsignedCommit {
        did: &did,
        version: REPO_VERSION,
        data,
        rev: rev.as_str(),
        prev: None,
    };
    // A struct of strings, integers and CIDs always encodes.
    let unsigned_bytes = guild_core::data::encode_serde(&unsigned).unwrap_or_default();
    let sig = key.sign_object(&unsigned_bytes);
    let signed = SignedCommit {
        did,
        version: REPO_VERSION,
        data,
        rev: rev.as_str().to_string(),
        prev: None,
        sig: ByteBuf::from(sig.to_vec()),
    };
    let bytes = guild_core::data::encode_serde(&signed).unwrap_or_default();
    (guild_core::cids::cid_for_cbor(&bytes), Bytes::from(bytes))
}

/// Decodes a commit block strictly and verifies its signature against its own `did:key`,
/// over the exact bytes received.
pub fn verify_commit(cid: &Cid, bytes: &[u8]) -> Result<Commit, CommitError> {
    let malformed = |reason: String| CommitError::Malformed { cid: *cid, reason };
    let c: SignedCommit =
        guild_core::data::decode_canonical(bytes).map_err(|e| malformed(e.to_string()))?;
    if c.version != REPO_VERSION {
        return Err(CommitError::Version {
            cid: *cid,
            version: c.version,
        });
    }
    if c.prev.is_some() {
        return Err(malformed("prev must be null in repo version 3".into()));
    }
    let rev = Tid::parse(&c.rev).map_err(|e| malformed(e.to_string()))?;
    let key = PublicKey::from_did(&c.did).map_err(|source| CommitError::Signature {
        cid: *cid,
        did: c.did.clone(),
        source,
    })?;
    let (unsigned, sig) = split_signed(bytes).map_err(|e| malformed(e.to_string()))?;
    key.verify_object(&unsigned, &sig)
        .map_err(|source| CommitError::Signature {
            cid: *cid,
            did: c.did.clone(),
            source,
        })?;
    Ok(Commit {
        did: c.did,
        data: c.data,
        rev,
        sig: sig.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let key = Keypair::from_secret_bytes(&[3; 32]);
        let data = guild_core::cids::cid_for_cbor(&[0xa0]);
        let rev = Tid::from_parts(1_700_000_000_000_000, 1);
        let (cid, bytes) = sign_commit(&key, data, &rev);
        let c = verify_commit(&cid, &bytes).unwrap();
        assert_eq!(c.did, key.did());
        assert_eq!(c.data, data);
        assert_eq!(c.rev, rev);
        // A flipped signature bit is caught.
        let mut bad = bytes.to_vec();
        let at = bad.windows(4).position(|w| w == b"\x63sig").unwrap() + 4 + 2 + 10;
        bad[at] ^= 1;
        assert!(matches!(
            verify_commit(&cid, &bad),
            Err(CommitError::Signature { .. })
        ));
    }
}
