//! ed25519 identities: keys, `did:key`, the key file, and the signing rule.
//!
//! protocol.md §1: every participant has an ed25519 key; its DID is `did:key:z6Mk…`
//! (multicodec `0xed01` + 32-byte public key, base58btc with the `z` multibase prefix). Commits,
//! ops and manifests are signed as `ed25519_sign(sha256(dag_cbor(object without "sig")))`.
//! Verification uses the strict ed25519 rules (no small-order keys, canonical `s`).

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use crate::cids::sha256;

/// Multicodec varint prefix of an ed25519 public key.
const ED25519_PUB: [u8; 2] = [0xed, 0x01];
/// Multicodec varint prefix of an ed25519 private key (0x1300).
const ED25519_PRIV: [u8; 2] = [0x80, 0x26];
/// Multicodec varint prefix of a P-256 public key (0x1200).
const P256_PUB: [u8; 2] = [0x80, 0x24];
/// Multicodec varint prefix of a secp256k1 public key (0xe7).
const K256_PUB: [u8; 2] = [0xe7, 0x01];

/// Everything that can go wrong with keys, DIDs and signatures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The string is not a `did:key` DID.
    #[error("not a did:key DID: {0:?}")]
    NotDidKey(String),
    /// The multibase or multicodec framing is broken.
    #[error("malformed did:key {did:?}: {reason}")]
    Malformed {
        /// The DID.
        did: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A well-formed `did:key` of a key type Guild does not use.
    #[error("did:key {did:?} is a {kind} key; Guild identities are ed25519")]
    UnsupportedKeyType {
        /// The DID.
        did: String,
        /// The key type found.
        kind: &'static str,
    },
    /// The bytes are not a valid ed25519 public key.
    #[error("invalid ed25519 public key")]
    InvalidPublicKey,
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// The signature is not 64 bytes.
    #[error("signature must be 64 bytes, got {0}")]
    SignatureLength(usize),
    /// A signed object's bytes are not a canonical map with a byte-string `sig`.
    #[error("malformed signed object: {0}")]
    MalformedSigned(&'static str),
    /// The operating system's random source failed.
    #[error("random source failed: {0}")]
    Random(String),
    /// The key file is malformed.
    #[error("invalid key file: {0}")]
    KeyFile(String),
}

/// An ed25519 public key: a Guild identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(VerifyingKey);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.to_did())
    }
}

impl PublicKey {
    /// From the 32 raw key bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        VerifyingKey::from_bytes(bytes)
            .map(PublicKey)
            .map_err(|_| KeyError::InvalidPublicKey)
    }

    /// The 32 raw key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Parses a `did:key` DID.
    pub fn from_did(did: &str) -> Result<Self, KeyError> {
        let Some(mb) = did.strip_prefix("did:key:") else {
            return Err(KeyError::NotDidKey(did.chars().take(100).collect()));
        };
        let malformed = |reason| KeyError::Malformed {
            did: did.chars().take(100).collect(),
            reason,
        };
        let Some(b58) = mb.strip_prefix('z') else {
            return Err(malformed("multibase prefix must be 'z' (base58btc)"));
        };
        let bytes = bs58::decode(b58)
            .into_vec()
            .map_err(|_| malformed("not valid base58btc"))?;
        match bytes.get(..2) {
            Some(p) if p == ED25519_PUB => {
                let key: [u8; 32] = bytes[2..]
                    .try_into()
                    .map_err(|_| malformed("an ed25519 key is 32 bytes"))?;
                Self::from_bytes(&key)
            }
            Some(p) if p == P256_PUB => Err(KeyError::UnsupportedKeyType {
                did: did.into(),
                kind: "P-256",
            }),
            Some(p) if p == K256_PUB => Err(KeyError::UnsupportedKeyType {
                did: did.into(),
                kind: "secp256k1",
            }),
            _ => Err(malformed("unknown multicodec key type")),
        }
    }

    /// The `did:key` DID of this key.
    pub fn to_did(&self) -> String {
        let mut bytes = Vec::with_capacity(34);
        bytes.extend_from_slice(&ED25519_PUB);
        bytes.extend_from_slice(self.0.as_bytes());
        format!("did:key:z{}", bs58::encode(bytes).into_string())
    }

    /// Verifies a raw ed25519 signature over `msg` (strict rules).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), KeyError> {
        let sig: [u8; 64] = sig
            .try_into()
            .map_err(|_| KeyError::SignatureLength(sig.len()))?;
        self.0
            .verify_strict(msg, &Signature::from_bytes(&sig))
            .map_err(|_| KeyError::BadSignature)
    }

    /// Verifies a Guild object signature: `sig` over `sha256(unsigned_cbor)`.
    pub fn verify_object(&self, unsigned_cbor: &[u8], sig: &[u8]) -> Result<(), KeyError> {
        self.verify(&sha256(unsigned_cbor), sig)
    }
}

/// An ed25519 key pair. Its `Debug` form shows only the DID.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keypair({})", self.did())
    }
}

impl Keypair {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self::from_secret_bytes(&secret))
    }

    /// From the 32-byte secret seed.
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Self {
        Keypair {
            signing: SigningKey::from_bytes(secret),
        }
    }

    /// The 32-byte secret seed. Handle with care.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key())
    }

    /// The DID of this key.
    pub fn did(&self) -> String {
        self.public().to_did()
    }

    /// A raw ed25519 signature over `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }

    /// A Guild object signature: over `sha256(unsigned_cbor)`.
    pub fn sign_object(&self, unsigned_cbor: &[u8]) -> [u8; 64] {
        self.sign(&sha256(unsigned_cbor))
    }

    /// The key file's text: a small JSON document holding the DID and the secret as multibase.
    ///
    /// ```json
    /// {"version":1,"algorithm":"ed25519","did":"did:key:z6Mk…","privateKeyMultibase":"z…"}
    /// ```
    /// The caller writes it with mode 0600.
    pub fn to_key_file(&self) -> String {
        let mut bytes = Vec::with_capacity(34);
        bytes.extend_from_slice(&ED25519_PRIV);
        bytes.extend_from_slice(&self.secret_bytes());
        let doc = serde_json::json!({
            "version": 1,
            "algorithm": "ed25519",
            "did": self.did(),
            "privateKeyMultibase": format!("z{}", bs58::encode(bytes).into_string()),
        });
        format!("{doc}\n")
    }

    /// Parses a key file, checking that the stated DID matches the key.
    pub fn from_key_file(text: &str) -> Result<Self, KeyError> {
        let bad = |m: &str| KeyError::KeyFile(m.to_string());
        let doc: serde_json::Value =
            serde_json::from_str(text).map_err(|e| KeyError::KeyFile(format!("not JSON: {e}")))?;
        if doc.get("version").and_then(|v| v.as_u64()) != Some(1) {
            return Err(bad("unsupported or missing version (expected 1)"));
        }
        if doc.get("algorithm").and_then(|v| v.as_str()) != Some("ed25519") {
            return Err(bad("algorithm must be \"ed25519\""));
        }
        let mb = doc
            .get("privateKeyMultibase")
            .and_then(|v| v.as_str())
            .ok_or_else(|| bad("missing privateKeyMultibase"))?;
        let b58 = mb
            .strip_prefix('z')
            .ok_or_else(|| bad("privateKeyMultibase must start with 'z'"))?;
        let bytes = bs58::decode(b58)
            .into_vec()
            .map_err(|_| bad("privateKeyMultibase is not base58btc"))?;
        if bytes.get(..2) != Some(&ED25519_PRIV[..]) {
            return Err(bad("privateKeyMultibase is not an ed25519 private key"));
        }
        let secret: [u8; 32] = bytes[2..]
            .try_into()
            .map_err(|_| bad("an ed25519 private key is 32 bytes"))?;
        let kp = Keypair::from_secret_bytes(&secret);
        match doc.get("did").and_then(|v| v.as_str()) {
            Some(did) if did == kp.did() => Ok(kp),
            Some(_) => Err(bad("the did does not match the private key")),
            None => Err(bad("missing did")),
        }
    }
}

/// Removes the top-level `"sig"` entry from the canonical DAG-CBOR bytes of a signed map,
/// returning the bytes that were signed and the signature bytes. Works on the bytes as
/// received, so verification never depends on re-encoding.
pub fn split_signed(signed: &[u8]) -> Result<(Vec<u8>, Vec<u8>), KeyError> {
    let err = KeyError::MalformedSigned;
    crate::cbor::check(signed).map_err(|_| err("signed object is not valid DAG-CBOR"))?;
    let (major, count, mut pos) = crate::cbor::head(signed, 0).ok_or(err("truncated"))?;
    if major != 5 {
        return Err(err("signed object must be a map"));
    }
    let mut out_entries = Vec::with_capacity(signed.len());
    let mut sig = None;
    for _ in 0..count {
        let key_start = pos;
        let key_end = crate::cbor::skip(signed, pos).ok_or(err("truncated"))?;
        let val_end = crate::cbor::skip(signed, key_end).ok_or(err("truncated"))?;
        // "sig" is encoded as 0x63 's' 'i' 'g'.
        if &signed[key_start..key_end] == b"\x63sig" {
            let (m, len, p) = crate::cbor::head(signed, key_end).ok_or(err("truncated"))?;
            if m != 2 {
                return Err(err("sig must be a byte string"));
            }
            sig = Some(signed[p..p + len as usize].to_vec());
        } else {
            out_entries.extend_from_slice(&signed[key_start..val_end]);
        }
        pos = val_end;
    }
    let sig = sig.ok_or(err("object has no sig field"))?;
    let mut out = Vec::with_capacity(out_entries.len() + 9);
    crate::cbor::write_head(&mut out, 5, count - 1);
    out.extend_from_slice(&out_entries);
    Ok((out, sig))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_key_round_trip() {
        let kp = Keypair::from_secret_bytes(&[7; 32]);
        let did = kp.did();
        assert!(did.starts_with("did:key:z6Mk"), "{did}");
        assert_eq!(PublicKey::from_did(&did).unwrap(), kp.public());
    }

    #[test]
    fn other_key_types_are_named() {
        let p256 = "did:key:zDnaembgSGUhZULN2Caob4HLJPaxBh92N7rtH21TErzqf8HQo";
        assert!(matches!(
            PublicKey::from_did(p256),
            Err(KeyError::UnsupportedKeyType { kind: "P-256", .. })
        ));
        let k256 = "did:key:zQ3shqwJEJyMBsBXCWyCBpUBMqxcon9oHB7mCvx4sSpMdLJwc";
        assert!(matches!(
            PublicKey::from_did(k256),
            Err(KeyError::UnsupportedKeyType {
                kind: "secp256k1",
                ..
            })
        ));
        assert!(PublicKey::from_did("did:web:example.com").is_err());
        assert!(PublicKey::from_did("did:key:z0OIl").is_err());
    }

    #[test]
    fn key_file_round_trip_and_tamper() {
        let kp = Keypair::generate().unwrap();
        let text = kp.to_key_file();
        let back = Keypair::from_key_file(&text).unwrap();
        assert_eq!(back.did(), kp.did());
        let other = Keypair::from_secret_bytes(&[1; 32]);
        let forged = text.replace(&kp.did(), &other.did());
        assert!(Keypair::from_key_file(&forged).is_err());
        assert!(Keypair::from_key_file("{").is_err());
    }

    #[test]
    fn split_signed_recovers_the_unsigned_bytes() {
        let kp = Keypair::from_secret_bytes(&[9; 32]);
        let mut map = std::collections::BTreeMap::new();
        map.insert("a".to_string(), crate::Ipld::Integer(1));
        map.insert("zz".to_string(), crate::Ipld::String("x".into()));
        let unsigned = crate::data::encode(&crate::Ipld::Map(map.clone())).unwrap();
        let sig = kp.sign_object(&unsigned);
        map.insert("sig".to_string(), crate::Ipld::Bytes(sig.to_vec()));
        let signed = crate::data::encode(&crate::Ipld::Map(map)).unwrap();
        let (u, s) = split_signed(&signed).unwrap();
        assert_eq!(u, unsigned);
        kp.public().verify_object(&u, &s).unwrap();
        let mut bad = s.clone();
        bad[0] ^= 1;
        assert!(kp.public().verify_object(&u, &bad).is_err());
    }
}
