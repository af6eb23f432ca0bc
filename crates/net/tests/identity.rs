//! Peer id ⇔ DID for guild-core keys.

use guild_core::Keypair;
use guild_net::{did_from_peer_id, peer_id_from_did};
use proptest::prelude::*;

proptest! {
    #[test]
    fn did_peer_id_round_trip(secret in any::<[u8; 32]>()) {
        let did = Keypair::from_secret_bytes(&secret).did();
        let peer = peer_id_from_did(&did).unwrap();
        prop_assert_eq!(did_from_peer_id(&peer), Some(did));
        // Ed25519 peer ids inline the key: the familiar 12D3KooW prefix.
        prop_assert!(peer.to_base58().starts_with("12D3KooW"));
    }
}

#[test]
fn a_node_s_peer_id_is_its_member_key() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let key = Keypair::from_secret_bytes(&[42; 32]);
        let (handle, _events) =
            guild_net::Net::spawn(&key, guild_net::NetConfig::memory()).unwrap();
        assert_eq!(handle.peer_id(), peer_id_from_did(&key.did()).unwrap());
        assert_eq!(handle.did(), Some(key.did()));
        handle.shutdown().await.unwrap();
    });
}
