//! `coop.guild.node.getPeers`: the node's peer-to-peer view.

use serde::{Deserialize, Serialize};

/// The method's NSID.
pub const NSID: &str = "coop.guild.node.getPeers";

crate::methods::method!(
    /// `coop.guild.node.getPeers`.
    query GetPeers
);

/// No parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {}

/// The node's peers and traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// The node's libp2p peer id.
    pub peer: String,
    /// The addresses the node listens on.
    pub listen: Vec<String>,
    /// The connected peers.
    pub peers: Vec<Peer>,
    /// Bytes the swarm received since the node started.
    pub bytes_in: u64,
    /// Bytes the swarm sent since the node started.
    pub bytes_out: u64,
}

/// A connected peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Peer {
    /// Its libp2p peer id.
    pub peer: String,
    /// Its DID, when its peer id carries an ed25519 key.
    pub did: Option<String>,
    /// The addresses it is connected on and reports listening on.
    pub addrs: Vec<String>,
    /// Its gossipsub score as the node sees it, as a decimal string (the data model has no
    /// floats).
    pub score: Option<String>,
}
