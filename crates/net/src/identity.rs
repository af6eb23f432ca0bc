//! Peer id ⇔ DID (protocol.md §1): the node's libp2p identity is its member key.
//!
//! An ed25519 public key is short enough that libp2p inlines it in the peer id (an identity
//! multihash over the key's protobuf encoding), so the DID is read straight out of a peer id,
//! and a `did:key` gives the peer id, with no registry. The noise handshake proves that the
//! remote holds the key of its peer id, hence of its DID.

use guild_core::keys::KeyError;
use guild_core::{Keypair, PublicKey};
use libp2p::PeerId;
use libp2p::identity;

/// The multihash code of the identity "hash" (the digest is the input itself).
const IDENTITY_MULTIHASH: u64 = 0x00;

/// A DID that names no libp2p peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DidError {
    /// Not an ed25519 `did:key` (guild-core says why).
    #[error(transparent)]
    Did(#[from] KeyError),
    /// libp2p refused the key bytes.
    #[error("libp2p refused the ed25519 key of {0}")]
    Key(String),
}

/// The peer id of a member's node, from the member's `did:key`.
pub fn peer_id_from_did(did: &str) -> Result<PeerId, DidError> {
    let key = PublicKey::from_did(did)?;
    let ed = identity::ed25519::PublicKey::try_from_bytes(&key.to_bytes())
        .map_err(|_| DidError::Key(did.chars().take(100).collect()))?;
    Ok(identity::PublicKey::from(ed).to_peer_id())
}

/// The `did:key` of a peer, if its peer id inlines an ed25519 key (every Guild node's does;
/// a peer with an RSA or secp256k1 identity, or a hashed peer id, has none).
pub fn did_from_peer_id(peer: &PeerId) -> Option<String> {
    let mh: &libp2p::multihash::Multihash<64> = peer.as_ref();
    if mh.code() != IDENTITY_MULTIHASH {
        return None;
    }
    let key = identity::PublicKey::try_decode_protobuf(mh.digest()).ok()?;
    let ed = key.try_into_ed25519().ok()?;
    PublicKey::from_bytes(&ed.to_bytes())
        .ok()
        .map(|k| k.to_did())
}

/// The libp2p key pair of a member key: the same 32-byte ed25519 secret.
pub(crate) fn libp2p_keypair(key: &Keypair) -> Result<identity::Keypair, identity::DecodingError> {
    let mut secret = key.secret_bytes();
    // `ed25519_from_bytes` zeroes its argument; it fails only on a length other than 32.
    identity::Keypair::ed25519_from_bytes(&mut secret)
}

/// The last eight characters of a peer id: enough to tell the nodes of one test apart in logs.
pub fn short_id(peer: &PeerId) -> String {
    let s = peer.to_base58();
    s[s.len().saturating_sub(8)..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libp2p_key_is_the_member_key() {
        let key = Keypair::from_secret_bytes(&[7; 32]);
        let kp = libp2p_keypair(&key).unwrap();
        let peer = kp.public().to_peer_id();
        assert_eq!(did_from_peer_id(&peer), Some(key.did()));
        assert_eq!(peer_id_from_did(&key.did()), Ok(peer));
    }

    #[test]
    fn non_ed25519_dids_are_refused() {
        assert!(matches!(
            peer_id_from_did("did:web:example.com"),
            Err(DidError::Did(KeyError::NotDidKey(_)))
        ));
    }

    #[test]
    fn hashed_peer_ids_have_no_did() {
        // A peer id whose multihash is sha2-256, as for RSA keys.
        let mh = libp2p::multihash::Multihash::<64>::wrap(0x12, &[1; 32]).unwrap();
        let peer = PeerId::from_multihash(mh).unwrap();
        assert_eq!(did_from_peer_id(&peer), None);
    }
}
