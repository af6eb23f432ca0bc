//! [`NetHandle`], [`NetEvent`] and the values they carry.

use std::sync::{Arc, Mutex, PoisonError};

use libp2p::request_response::ResponseChannel;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

use crate::error::{DialError, PublishError, RequestError, RespondError, Stopped, SubscribeError};
use crate::swarm::{Command, SyncResponse};

/// A gossip message's id: the bytes of the CID of its data as DAG-CBOR
/// (`guild_core::cids::cid_for_cbor(data).to_bytes()`), so a governance op's gossip id is its
/// op id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MsgId(pub Vec<u8>);

impl MsgId {
    /// The id of a message with these bytes.
    pub fn of(data: &[u8]) -> Self {
        MsgId(guild_core::cids::cid_for_cbor(data).to_bytes())
    }

    /// The id as a CID.
    pub fn to_cid(&self) -> Option<guild_core::Cid> {
        guild_core::Cid::try_from(self.0.as_slice()).ok()
    }
}

impl std::fmt::Debug for MsgId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.to_cid() {
            Some(cid) => write!(f, "MsgId({cid})"),
            None => write!(f, "MsgId({:02x?})", self.0),
        }
    }
}

/// The caller's verdict on a gossip message (gossipsub's manual validation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    /// Valid: deliver and forward it to the mesh.
    Accept,
    /// Invalid (a bad signature, a malformed op): drop it and penalise the peers that sent it
    /// (gossipsub's P4). Only for messages that are provably invalid, not for ones that merely
    /// cannot be checked yet.
    Reject,
    /// Neither forward nor penalise (a duplicate, an op waiting for its parents, a topic the
    /// node no longer follows).
    Ignore,
}

/// A connected peer.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerInfo {
    /// Its peer id.
    pub peer: PeerId,
    /// Its DID, when its peer id inlines an ed25519 key (every Guild node's does).
    pub did: Option<String>,
    /// The addresses it is connected on and those it reports listening on.
    pub addrs: Vec<Multiaddr>,
    /// Its gossipsub score as seen by this node.
    pub score: Option<f64>,
}

/// The way to answer one inbound request: pass it to [`NetHandle::respond`]. Dropping it
/// refuses the request (the requester sees [`RequestError::ConnectionClosed`] or a stream
/// error).
#[derive(Debug)]
pub struct ResponseToken(pub(crate) ResponseChannel<SyncResponse>);

/// What the swarm reports to its owner.
///
/// The channel is bounded (`event_capacity`). When the owner falls behind and it is full, an
/// event is dropped with a warning: a dropped gossip message is reported as
/// [`Validation::Ignore`] (it is neither forwarded nor penalised; anti-entropy fetches it
/// later), a dropped request is refused.
#[derive(Debug)]
pub enum NetEvent {
    /// The swarm listens on a new address.
    Listening(Multiaddr),
    /// A first connection to a peer is established.
    PeerConnected {
        /// The peer.
        peer: PeerId,
        /// Its DID, if its peer id inlines an ed25519 key.
        did: Option<String>,
    },
    /// The last connection to a peer closed.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
    },
    /// A connected peer subscribed to a topic. Wait for this before the first publish: gossipsub
    /// sends only to peers it knows are subscribed.
    Subscribed {
        /// The peer.
        peer: PeerId,
        /// The topic.
        topic: String,
    },
    /// A connected peer unsubscribed from a topic.
    Unsubscribed {
        /// The peer.
        peer: PeerId,
        /// The topic.
        topic: String,
    },
    /// A gossip message on a subscribed topic, not yet forwarded: report a [`Validation`] for
    /// it with [`NetHandle::report_validation`].
    Gossip {
        /// The message's id (the CID of its data).
        msg_id: MsgId,
        /// The peer that sent it to us (pass it back to `report_validation`).
        source: PeerId,
        /// The peer that signed it (its author node), if the message names one.
        author: Option<PeerId>,
        /// The topic.
        topic: String,
        /// The message's bytes.
        data: Vec<u8>,
    },
    /// A request on `/guild/sync/1`. Answer it with [`NetHandle::respond`], or drop the token
    /// to refuse it.
    Request {
        /// The requester.
        peer: PeerId,
        /// The requester's DID, if its peer id inlines an ed25519 key.
        did: Option<String>,
        /// The topic or collective the request is about.
        topic: String,
        /// The request body, opaque to this crate.
        body: Vec<u8>,
        /// The way to answer.
        token: ResponseToken,
    },
    /// A connected peer's score fell below zero, or fell further.
    Penalised {
        /// The peer.
        peer: PeerId,
        /// Its score now.
        score: f64,
    },
    /// A connection from a known peer was refused once established (a banned peer's, say).
    Refused {
        /// The peer.
        peer: PeerId,
    },
    /// A peer's score fell below `ban_threshold`: it is disconnected and its connections are
    /// refused for `ban_secs`.
    Banned {
        /// The peer.
        peer: PeerId,
        /// Its score at the ban.
        score: f64,
    },
}

impl NetEvent {
    /// The variant's name, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            NetEvent::Listening(_) => "Listening",
            NetEvent::PeerConnected { .. } => "PeerConnected",
            NetEvent::PeerDisconnected { .. } => "PeerDisconnected",
            NetEvent::Subscribed { .. } => "Subscribed",
            NetEvent::Unsubscribed { .. } => "Unsubscribed",
            NetEvent::Gossip { .. } => "Gossip",
            NetEvent::Request { .. } => "Request",
            NetEvent::Penalised { .. } => "Penalised",
            NetEvent::Refused { .. } => "Refused",
            NetEvent::Banned { .. } => "Banned",
        }
    }
}

/// The way to drive a running swarm. Cheap to clone; every method sends one command on a
/// bounded channel and waits for the swarm task's answer. When every handle is dropped the
/// swarm task stops.
#[derive(Debug, Clone)]
pub struct NetHandle {
    pub(crate) tx: mpsc::Sender<Command>,
    pub(crate) peer_id: PeerId,
    /// The swarm's byte counters (libp2p's bandwidth metrics).
    pub(crate) traffic: Arc<Mutex<libp2p::metrics::Registry>>,
}

/// Bytes this node's swarm moved since it started: every substream's payload (gossip with its
/// control messages, requests and responses, identify, ping), after noise and yamux framing
/// are taken off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
}

impl NetHandle {
    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, Stopped> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| Stopped)?;
        answer.await.map_err(|_| Stopped)
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// This node's DID.
    pub fn did(&self) -> Option<String> {
        crate::did_from_peer_id(&self.peer_id)
    }

    /// The addresses the swarm listens on (without the `/p2p/<peer id>` suffix).
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, Stopped> {
        self.call(Command::ListenAddrs).await
    }

    /// Dials an address. With a `/p2p/<peer id>` suffix, a peer already connected (or being
    /// dialled) is not dialled again. Returns once the dial has started; watch for
    /// [`NetEvent::PeerConnected`].
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), DialError> {
        self.call(|reply| Command::Dial { addr, reply }).await?
    }

    /// Subscribes to a topic. `Ok(false)` if already subscribed.
    pub async fn subscribe(&self, topic: &str) -> Result<bool, SubscribeError> {
        let topic = topic.to_string();
        self.call(|reply| Command::Subscribe { topic, reply })
            .await?
    }

    /// Unsubscribes from a topic. `Ok(false)` if not subscribed.
    pub async fn unsubscribe(&self, topic: &str) -> Result<bool, Stopped> {
        let topic = topic.to_string();
        self.call(|reply| Command::Unsubscribe { topic, reply })
            .await
    }

    /// Publishes a message on a topic and returns its id. A message the network has already
    /// seen (it was published, or received, within gossipsub's duplicate window) is a success:
    /// it is not sent again.
    pub async fn publish(&self, topic: &str, data: Vec<u8>) -> Result<MsgId, PublishError> {
        let topic = topic.to_string();
        self.call(|reply| Command::Publish { topic, data, reply })
            .await?
    }

    /// Reports the verdict on a [`NetEvent::Gossip`] message, once per message: only `Accept`
    /// forwards it. Returns false if the message is no longer in gossipsub's cache (already
    /// rejected or ignored, or reported after a few heartbeats), in which case nothing happens.
    pub async fn report_validation(
        &self,
        msg_id: MsgId,
        source: PeerId,
        verdict: Validation,
    ) -> Result<bool, Stopped> {
        self.call(|reply| Command::Report {
            msg_id,
            source,
            verdict,
            reply,
        })
        .await
    }

    /// Sends a request on `/guild/sync/1` and waits for the response (at most
    /// `request_timeout_secs`). Dials the peer if it is not connected and its address is known.
    pub async fn request(
        &self,
        peer: PeerId,
        topic: &str,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, RequestError> {
        let topic = topic.to_string();
        self.call(|reply| Command::Request {
            peer,
            topic,
            body,
            reply,
        })
        .await?
    }

    /// Answers a [`NetEvent::Request`].
    pub async fn respond(&self, token: ResponseToken, body: Vec<u8>) -> Result<(), RespondError> {
        self.call(|reply| Command::Respond { token, body, reply })
            .await?
    }

    /// The bytes this node's swarm has sent and received so far.
    pub fn traffic(&self) -> Traffic {
        let registry = self.traffic.lock().unwrap_or_else(PoisonError::into_inner);
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
            return Traffic::default();
        }
        drop(registry);
        let mut t = Traffic::default();
        // Lines like `libp2p_bandwidth_bytes_total{protocols="/memory/…",direction="Outbound"} 123`.
        for line in text
            .lines()
            .filter(|l| l.starts_with("libp2p_bandwidth_bytes_total{"))
        {
            let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
                continue;
            };
            if line.contains("direction=\"Outbound\"") {
                t.bytes_out += value as u64;
            } else if line.contains("direction=\"Inbound\"") {
                t.bytes_in += value as u64;
            }
        }
        t
    }

    /// The connected peers.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, Stopped> {
        self.call(Command::Peers).await
    }

    /// The connected peers known to be subscribed to a topic.
    pub async fn topic_peers(&self, topic: &str) -> Result<Vec<PeerId>, Stopped> {
        let topic = topic.to_string();
        self.call(|reply| Command::TopicPeers { topic, reply })
            .await
    }

    /// The peers in this node's gossipsub mesh for a topic: those it forwards to.
    pub async fn mesh_peers(&self, topic: &str) -> Result<Vec<PeerId>, Stopped> {
        let topic = topic.to_string();
        self.call(|reply| Command::MeshPeers { topic, reply }).await
    }

    /// A peer's gossipsub score as seen by this node (kept for a while after it disconnects).
    pub async fn score(&self, peer: PeerId) -> Result<Option<f64>, Stopped> {
        self.call(|reply| Command::Score { peer, reply }).await
    }

    /// Closes every connection to a peer. Returns false if it was not connected. (It may dial
    /// again; to refuse a peer, its score must fall below the ban threshold.)
    pub async fn disconnect(&self, peer: PeerId) -> Result<bool, Stopped> {
        self.call(|reply| Command::Disconnect { peer, reply }).await
    }

    /// Closes every connection to a peer and refuses it (both ways) until [`NetHandle::unblock`]:
    /// a partition held by the caller (a test's, say), whatever dials the peer meanwhile.
    pub async fn block(&self, peer: PeerId) -> Result<(), Stopped> {
        self.call(|reply| Command::Block {
            peer,
            blocked: true,
            reply,
        })
        .await
    }

    /// Lifts a [`NetHandle::block`] (a peer banned for its score stays refused until its ban
    /// ends).
    pub async fn unblock(&self, peer: PeerId) -> Result<(), Stopped> {
        self.call(|reply| Command::Block {
            peer,
            blocked: false,
            reply,
        })
        .await
    }

    /// Stops the swarm task, closing every connection; returns when it has stopped.
    pub async fn shutdown(&self) -> Result<(), Stopped> {
        self.call(Command::Shutdown).await
    }
}
