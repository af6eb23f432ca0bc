//! One error type per operation.

use libp2p::{Multiaddr, TransportError};

use crate::config::ConfigError;

/// Why [`crate::Net::spawn`] could not start the swarm.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The configuration is refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// libp2p refused the node's key.
    #[error("libp2p refused the node key: {0}")]
    Identity(#[source] libp2p::identity::DecodingError),
    /// The noise handshake could not be set up with the node's key.
    #[error("noise setup failed: {0}")]
    Noise(#[source] libp2p::noise::Error),
    /// gossipsub refused its configuration or its scoring parameters.
    #[error("gossipsub configuration refused: {0}")]
    Gossipsub(String),
    /// mDNS could not start (no network interface watcher).
    #[error("mDNS could not start: {0}")]
    Mdns(#[source] std::io::Error),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        #[source]
        source: TransportError<std::io::Error>,
    },
}

/// The swarm task has stopped (after [`crate::NetHandle::shutdown`], or a panic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the network task has stopped")]
pub struct Stopped;

/// Why a dial could not start. (A dial that starts and then fails is only logged: the
/// bootstrap retry and mDNS dial again.)
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The swarm task has stopped.
    #[error(transparent)]
    Stopped(#[from] Stopped),
    /// libp2p refused the dial (the address is our own, the peer is banned, no transport
    /// supports the address, …).
    #[error("dial refused: {0}")]
    Refused(#[source] libp2p::swarm::DialError),
}

/// Why a subscription failed.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// The swarm task has stopped.
    #[error(transparent)]
    Stopped(#[from] Stopped),
    /// gossipsub refused: too many topics (its default filter allows 100), or the subscription
    /// could not be announced.
    #[error("subscription refused: {0}")]
    Refused(String),
}

/// Why a publish failed. A message the network has already seen (same id, so the same bytes)
/// is not an error: [`crate::NetHandle::publish`] returns `Ok`.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The swarm task has stopped.
    #[error(transparent)]
    Stopped(#[from] Stopped),
    /// No connected peer is subscribed to the topic (with a good enough score). Retry once a
    /// peer's [`crate::NetEvent::Subscribed`] arrives; anti-entropy covers the gap meanwhile.
    #[error("no peer subscribed to topic {0:?}")]
    InsufficientPeers(String),
    /// The message's data exceeds `max_message_bytes`.
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The message's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Every peer's send queue is full; retry later.
    #[error("the send queues of all {0} peers are full")]
    QueuesFull(usize),
    /// Signing the message failed.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The swarm task has stopped.
    #[error(transparent)]
    Stopped(#[from] Stopped),
    /// The peer could not be reached.
    #[error("could not dial the peer")]
    DialFailure,
    /// No response within `request_timeout_secs`.
    #[error("no response in time")]
    Timeout,
    /// The connection closed first, or the responder dropped the request without answering.
    #[error("the connection closed before a response")]
    ConnectionClosed,
    /// The peer does not speak `/guild/sync/1`.
    #[error("the peer does not support the sync protocol")]
    UnsupportedProtocol,
    /// The stream failed (an oversized or malformed response, a reset, …).
    #[error("stream failed: {0}")]
    Io(#[source] std::io::Error),
}

/// Why a response could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespondError {
    /// The swarm task has stopped.
    #[error(transparent)]
    Stopped(#[from] Stopped),
    /// The request is gone: it timed out or its connection closed.
    #[error("the requester is gone")]
    Gone,
}
