//! The swarm: its behaviour, how it is built, and the task that runs it.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt as _;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, MemoryTransport};
use libp2p::core::upgrade::Version;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageAuthenticity, TopicHash};
use libp2p::request_response::{self, OutboundFailure, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder, Transport as _, allow_block_list,
    identify, mdns, noise, ping, tcp, yamux,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::Instrument as _;

use crate::config::{NetConfig, TransportKind, peer_of};
use crate::error::{DialError, NetError, PublishError, RequestError, RespondError, SubscribeError};
use crate::handle::{MsgId, NetEvent, NetHandle, PeerInfo, ResponseToken, Validation};
use crate::identity::{did_from_peer_id, libp2p_keypair, short_id};
use crate::via::Via;

/// The request-response protocol.
pub const SYNC_PROTOCOL: &str = "/guild/sync/1";
/// The identify protocol version string.
const IDENTIFY_PROTOCOL: &str = "/guild/1.0.0";
/// Room for a gossip message's signed envelope (source, sequence number, topic, signature,
/// protobuf framing) on top of its data.
const ENVELOPE_BYTES: usize = 1024;
/// At most this many addresses are remembered per peer.
const MAX_ADDRS_PER_PEER: usize = 16;

/// A `/guild/sync/1` request: opaque bytes about a topic or collective.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SyncRequest {
    topic: String,
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
}

/// A `/guild/sync/1` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SyncResponse {
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
    gossipsub: gossipsub::Behaviour,
    sync: request_response::cbor::Behaviour<SyncRequest, SyncResponse>,
}

/// A command from a [`NetHandle`] to the swarm task.
pub(crate) enum Command {
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), DialError>>,
    },
    Subscribe {
        topic: String,
        reply: oneshot::Sender<Result<bool, SubscribeError>>,
    },
    Unsubscribe {
        topic: String,
        reply: oneshot::Sender<bool>,
    },
    Publish {
        topic: String,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<MsgId, PublishError>>,
    },
    Report {
        msg_id: MsgId,
        source: PeerId,
        verdict: Validation,
        reply: oneshot::Sender<bool>,
    },
    Request {
        peer: PeerId,
        topic: String,
        body: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, RequestError>>,
    },
    Respond {
        token: ResponseToken,
        body: Vec<u8>,
        reply: oneshot::Sender<Result<(), RespondError>>,
    },
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    TopicPeers {
        topic: String,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    MeshPeers {
        topic: String,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    Score {
        peer: PeerId,
        reply: oneshot::Sender<Option<f64>>,
    },
    Block {
        peer: PeerId,
        blocked: bool,
        reply: oneshot::Sender<()>,
    },
    Disconnect {
        peer: PeerId,
        reply: oneshot::Sender<bool>,
    },
    Shutdown(oneshot::Sender<()>),
}

/// Starts the swarm.
#[derive(Debug)]
pub struct Net;

impl Net {
    /// Builds the swarm for this node key, starts listening, and runs it in a tokio task inside
    /// a `net` tracing span carrying the short peer id. Must be called within a tokio runtime.
    ///
    /// Returns the handle that drives it and the receiver of its events. The task stops on
    /// [`NetHandle::shutdown`] or when every handle is dropped.
    pub fn spawn(
        key: &guild_core::Keypair,
        config: NetConfig,
    ) -> Result<(NetHandle, mpsc::Receiver<NetEvent>), NetError> {
        config.validate()?;
        let keypair = libp2p_keypair(key).map_err(NetError::Identity)?;
        let peer_id = keypair.public().to_peer_id();
        let behaviour = behaviour(&keypair, &config)?;
        let idle = config.idle_timeout();
        // Counts every byte of every substream (gossip, requests, identify, ping), in and out.
        let mut registry = libp2p::metrics::Registry::default();
        // The memory transport, and TCP through `net.dial_via` (test-only), are built here;
        // plain TCP by the builder's own `with_tcp`.
        let other = match config.transport {
            TransportKind::Tcp if config.dial_via.is_empty() => None,
            TransportKind::Tcp => Some(secured(
                Via::new(
                    tcp::tokio::Transport::new(tcp::Config::default().nodelay(true)),
                    &config.dial_via,
                ),
                &keypair,
            )?),
            TransportKind::Memory => Some(secured(MemoryTransport::default(), &keypair)?),
        };
        let mut swarm = match other {
            None => {
                let swarm = SwarmBuilder::with_existing_identity(keypair)
                    .with_tokio()
                    .with_tcp(
                        tcp::Config::default().nodelay(true),
                        noise::Config::new,
                        yamux::Config::default,
                    )
                    .map_err(NetError::Noise)?
                    .with_bandwidth_metrics(&mut registry)
                    .with_behaviour(|_| behaviour);
                infallible(swarm)
                    .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
                    .build()
            }
            Some(transport) => {
                let swarm = SwarmBuilder::with_existing_identity(keypair)
                    .with_tokio()
                    .with_other_transport(|_| transport);
                let swarm = infallible(swarm)
                    .with_bandwidth_metrics(&mut registry)
                    .with_behaviour(|_| behaviour);
                infallible(swarm)
                    .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
                    .build()
            }
        };
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|source| NetError::Listen {
                    addr: addr.clone(),
                    source,
                })?;
        }

        let (cmd_tx, cmd_rx) = mpsc::channel(config.command_capacity);
        let (event_tx, event_rx) = mpsc::channel(config.event_capacity);
        let bootstrap = config
            .bootstrap
            .iter()
            .filter_map(|a| Some((peer_of(a)?, a.clone())))
            .collect();
        let task = Task {
            swarm,
            topic_params: topic_params(&config),
            config,
            events: event_tx,
            commands: cmd_rx,
            bootstrap,
            pending: HashMap::new(),
            peers: HashMap::new(),
            scores: HashMap::new(),
            banned: HashMap::new(),
        };
        let span = tracing::info_span!("net", peer = %short_id(&peer_id));
        tokio::spawn(task.run().instrument(span));
        Ok((
            NetHandle {
                tx: cmd_tx,
                peer_id,
                traffic: std::sync::Arc::new(std::sync::Mutex::new(registry)),
            },
            event_rx,
        ))
    }
}

/// `transport` upgraded as the swarm's TCP is (noise, then yamux), and boxed.
fn secured<T>(
    transport: T,
    keypair: &libp2p::identity::Keypair,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, NetError>
where
    T: libp2p::Transport + Send + Unpin + 'static,
    T::Output: futures::AsyncRead + futures::AsyncWrite + Send + Unpin + 'static,
    T::Dial: Send + 'static,
    T::ListenerUpgrade: Send + 'static,
    T::Error: Send + Sync + 'static,
{
    let noise = noise::Config::new(keypair).map_err(NetError::Noise)?;
    Ok(transport
        .upgrade(Version::V1)
        .authenticate(noise)
        .multiplex(yamux::Config::default())
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
        .boxed())
}

/// The value of a builder step that cannot fail.
fn infallible<T>(result: Result<T, std::convert::Infallible>) -> T {
    match result {
        Ok(value) => value,
    }
}

fn behaviour(
    keypair: &libp2p::identity::Keypair,
    config: &NetConfig,
) -> Result<Behaviour, NetError> {
    let peer_id = keypair.public().to_peer_id();
    let gossip_config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(config.heartbeat())
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .message_id_fn(|m: &gossipsub::Message| gossipsub::MessageId(MsgId::of(&m.data).0))
        .max_transmit_size(config.max_message_bytes + ENVELOPE_BYTES)
        .build()
        .map_err(|e| NetError::Gossipsub(e.to_string()))?;
    let mut gossipsub =
        gossipsub::Behaviour::new(MessageAuthenticity::Signed(keypair.clone()), gossip_config)
            .map_err(|e| NetError::Gossipsub(e.into()))?;
    gossipsub
        .with_peer_score(peer_score_params(config), thresholds(config))
        .map_err(NetError::Gossipsub)?;

    let mdns = if config.mdns {
        Some(
            mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)
                .map_err(NetError::Mdns)?,
        )
    } else {
        None
    };
    let codec = request_response::cbor::codec::Codec::default()
        .set_request_size_maximum(config.max_request_bytes)
        .set_response_size_maximum(config.max_response_bytes);
    let sync = request_response::Behaviour::with_codec(
        codec,
        [(StreamProtocol::new(SYNC_PROTOCOL), ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(Duration::from_secs(config.request_timeout_secs)),
    );
    Ok(Behaviour {
        blocked: allow_block_list::Behaviour::default(),
        identify: identify::Behaviour::new(identify::Config::new(
            IDENTIFY_PROTOCOL.into(),
            keypair.public(),
        )),
        ping: ping::Behaviour::default(),
        mdns: Toggle::from(mdns),
        gossipsub,
        sync,
    })
}

/// Peer-level scoring: P5 (application) unused, P6 (IP colocation) as configured, P7
/// (behaviour penalties) at gossipsub's defaults, and no slow-peer penalty. Topic-level
/// parameters are set per topic on subscribe ([`topic_params`]).
///
/// gossipsub penalises a peer for every message its send queue could not take in time
/// (`slow_peer_weight`, -0.2 each). That measures congestion, this node's as much as the
/// peer's, not misbehaviour: five nodes catching up a 50 000-member log on one machine drove
/// every honest peer below the ban threshold within 20 s and cut the laggards off. Bans here
/// are for invalid messages and broken promises.
fn peer_score_params(config: &NetConfig) -> gossipsub::PeerScoreParams {
    let mut p = gossipsub::PeerScoreParams {
        topic_score_cap: config.score.positive_cap,
        slow_peer_weight: 0.0,
        ..Default::default()
    };
    if !config.ip_colocation_penalty {
        p.ip_colocation_factor_weight = 0.0;
    }
    p
}

/// Topic-level scoring. A collective's topic is quiet (a few ops a day), so P3 (mesh delivery
/// rate) and P3b are off: they would penalise every honest peer of a quiet topic. P1 (time in
/// mesh) and P2 (first deliveries) give a small positive score, capped; P4 (messages the caller
/// rejected) counts as configured.
fn topic_params(config: &NetConfig) -> gossipsub::TopicScoreParams {
    let decay = gossipsub::score_parameter_decay(Duration::from_secs(
        config.score.invalid_message_decay_secs,
    ));
    gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 1000.0,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: gossipsub::score_parameter_decay(Duration::from_secs(3600)),
        first_message_deliveries_cap: 20.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: config.score.invalid_message_weight,
        invalid_message_deliveries_decay: decay,
        ..Default::default()
    }
}

fn thresholds(config: &NetConfig) -> gossipsub::PeerScoreThresholds {
    gossipsub::PeerScoreThresholds {
        gossip_threshold: config.score.gossip_threshold,
        publish_threshold: config.score.publish_threshold,
        graylist_threshold: config.score.graylist_threshold,
        ..Default::default()
    }
}

/// What the task knows of a connected peer.
#[derive(Default)]
struct PeerState {
    addrs: Vec<Multiaddr>,
}

impl PeerState {
    fn add_addr(&mut self, addr: Multiaddr) {
        if !self.addrs.contains(&addr) && self.addrs.len() < MAX_ADDRS_PER_PEER {
            self.addrs.push(addr);
        }
    }
}

struct Task {
    swarm: Swarm<Behaviour>,
    config: NetConfig,
    topic_params: gossipsub::TopicScoreParams,
    events: mpsc::Sender<NetEvent>,
    commands: mpsc::Receiver<Command>,
    bootstrap: Vec<(PeerId, Multiaddr)>,
    /// Outbound requests waiting for their response.
    pending: HashMap<OutboundRequestId, oneshot::Sender<Result<Vec<u8>, RequestError>>>,
    /// Connected peers.
    peers: HashMap<PeerId, PeerState>,
    /// The score of each connected peer at the last check.
    scores: HashMap<PeerId, f64>,
    /// Banned peers and when their ban ends.
    banned: HashMap<PeerId, Instant>,
}

impl Task {
    async fn run(mut self) {
        tracing::info!(peer = %self.swarm.local_peer_id(), "network started");
        let mut bootstrap_tick =
            tokio::time::interval(Duration::from_secs(self.config.bootstrap_retry_secs));
        bootstrap_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut score_tick =
            tokio::time::interval(Duration::from_millis(self.config.score.check_interval_ms));
        score_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown(reply)) => {
                        let _ = reply.send(());
                        break;
                    }
                    Some(command) => self.on_command(command),
                    None => break,
                },
                _ = bootstrap_tick.tick() => self.dial_bootstrap(),
                _ = score_tick.tick() => self.check_scores(),
            }
        }
        tracing::info!("network stopped");
    }

    fn emit(&mut self, event: NetEvent) {
        match self.events.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(event)) => {
                tracing::warn!(event = event.kind(), "event channel full: event dropped");
                if let NetEvent::Gossip { msg_id, source, .. } = event {
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .report_message_validation_result(
                            &gossipsub::MessageId(msg_id.0),
                            &source,
                            MessageAcceptance::Ignore,
                        );
                }
            }
            Err(TrySendError::Closed(_)) => {
                tracing::trace!("event receiver dropped");
            }
        }
    }

    fn dial_bootstrap(&mut self) {
        for (peer, addr) in self.bootstrap.clone() {
            if !self.swarm.is_connected(&peer) {
                self.dial_peer(peer, vec![addr]);
            }
        }
    }

    fn dial_peer(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        if peer == *self.swarm.local_peer_id() || self.banned.contains_key(&peer) {
            return;
        }
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        match self.swarm.dial(opts) {
            Ok(()) | Err(libp2p::swarm::DialError::DialPeerConditionFalse(_)) => {}
            Err(e) => tracing::debug!(%peer, error = %e, "dial refused"),
        }
    }

    fn check_scores(&mut self) {
        let now = Instant::now();
        let expired: Vec<PeerId> = self
            .banned
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in expired {
            self.banned.remove(&peer);
            self.swarm.behaviour_mut().blocked.unblock_peer(peer);
            tracing::info!(%peer, "ban lifted");
        }

        let connected: Vec<PeerId> = self.peers.keys().copied().collect();
        for peer in connected {
            let Some(score) = self.swarm.behaviour().gossipsub.peer_score(&peer) else {
                continue;
            };
            let previous = self.scores.insert(peer, score);
            if score < self.config.score.ban_threshold {
                self.ban(peer, score);
            } else if score < 0.0 && previous.is_none_or(|p| score < p - 0.01) {
                tracing::info!(%peer, score, "peer penalised");
                self.emit(NetEvent::Penalised { peer, score });
            }
        }
    }

    fn ban(&mut self, peer: PeerId, score: f64) {
        tracing::warn!(%peer, score, "peer banned: score below the ban threshold");
        let until = Instant::now() + Duration::from_secs(self.config.score.ban_secs);
        self.banned.insert(peer, until);
        self.scores.remove(&peer);
        // Closes its connections and refuses new ones until the ban is lifted.
        self.swarm.behaviour_mut().blocked.block_peer(peer);
        self.emit(NetEvent::Banned { peer, score });
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::ListenAddrs(reply) => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::Dial { addr, reply } => {
                let _ = reply.send(self.dial(addr));
            }
            Command::Subscribe { topic, reply } => {
                let _ = reply.send(self.subscribe(topic));
            }
            Command::Unsubscribe { topic, reply } => {
                let t = IdentTopic::new(topic);
                let _ = reply.send(self.swarm.behaviour_mut().gossipsub.unsubscribe(&t));
            }
            Command::Publish { topic, data, reply } => {
                let _ = reply.send(self.publish(topic, data));
            }
            Command::Report {
                msg_id,
                source,
                verdict,
                reply,
            } => {
                let _ = reply.send(self.report(msg_id, &source, verdict));
            }
            Command::Request {
                peer,
                topic,
                body,
                reply,
            } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_request(&peer, SyncRequest { topic, body });
                self.pending.insert(id, reply);
            }
            Command::Respond { token, body, reply } => {
                let result = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_response(token.0, SyncResponse { body })
                    .map_err(|_| RespondError::Gone);
                let _ = reply.send(result);
            }
            Command::Peers(reply) => {
                let _ = reply.send(self.peer_infos());
            }
            Command::TopicPeers { topic, reply } => {
                let hash = TopicHash::from_raw(topic);
                let peers = self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .all_peers()
                    .filter(|(_, topics)| topics.contains(&&hash))
                    .map(|(p, _)| *p)
                    .collect();
                let _ = reply.send(peers);
            }
            Command::MeshPeers { topic, reply } => {
                let hash = TopicHash::from_raw(topic);
                let peers = self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .mesh_peers(&hash)
                    .copied()
                    .collect();
                let _ = reply.send(peers);
            }
            Command::Score { peer, reply } => {
                let _ = reply.send(self.swarm.behaviour().gossipsub.peer_score(&peer));
            }
            Command::Block {
                peer,
                blocked,
                reply,
            } => {
                self.set_blocked(peer, blocked);
                let _ = reply.send(());
            }
            Command::Disconnect { peer, reply } => {
                let _ = reply.send(self.swarm.disconnect_peer_id(peer).is_ok());
            }
            Command::Shutdown(reply) => {
                let _ = reply.send(());
            }
        }
    }

    /// Blocks a peer (closing its connections) or lifts the block (a banned peer stays
    /// blocked until its ban ends).
    fn set_blocked(&mut self, peer: PeerId, blocked: bool) {
        let list = &mut self.swarm.behaviour_mut().blocked;
        if blocked {
            list.block_peer(peer);
        } else if !self.banned.contains_key(&peer) {
            list.unblock_peer(peer);
        }
    }

    /// Dials an address (a banned peer's is refused; dialling a peer already connected or
    /// being dialled is a success).
    fn dial(&mut self, addr: Multiaddr) -> Result<(), DialError> {
        let result = match peer_of(&addr) {
            Some(peer) if self.banned.contains_key(&peer) => {
                Err(libp2p::swarm::DialError::Denied {
                    cause: libp2p::swarm::ConnectionDenied::new(Banned),
                })
            }
            Some(peer) => self.swarm.dial(
                DialOpts::peer_id(peer)
                    .addresses(vec![addr])
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build(),
            ),
            None => self.swarm.dial(addr),
        };
        match result {
            Ok(()) | Err(libp2p::swarm::DialError::DialPeerConditionFalse(_)) => Ok(()),
            Err(e) => Err(DialError::Refused(e)),
        }
    }

    /// Subscribes to a topic, with its scoring parameters; whether it is a new subscription.
    fn subscribe(&mut self, topic: String) -> Result<bool, SubscribeError> {
        let t = IdentTopic::new(topic);
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        match gossipsub.subscribe(&t) {
            Ok(new) => {
                if new && let Err(e) = gossipsub.set_topic_params(t, self.topic_params.clone()) {
                    tracing::error!(error = e, "topic scoring not set");
                }
                Ok(new)
            }
            Err(e) => Err(SubscribeError::Refused(e.to_string())),
        }
    }

    /// Publishes on a topic (re-publishing a known message is a success).
    fn publish(&mut self, topic: String, data: Vec<u8>) -> Result<MsgId, PublishError> {
        let id = MsgId::of(&data);
        let (size, max) = (data.len(), self.config.max_message_bytes);
        if size > max {
            return Err(PublishError::TooLarge { size, max });
        }
        let result = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(IdentTopic::new(topic.clone()), data);
        match result {
            Ok(_) | Err(gossipsub::PublishError::Duplicate) => Ok(id),
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                Err(PublishError::InsufficientPeers(topic))
            }
            Err(gossipsub::PublishError::MessageTooLarge) => {
                Err(PublishError::TooLarge { size, max })
            }
            Err(gossipsub::PublishError::AllQueuesFull(n)) => Err(PublishError::QueuesFull(n)),
            Err(e) => Err(PublishError::Signing(e.to_string())),
        }
    }

    /// Reports the caller's verdict on a gossip message; whether it was still awaiting one.
    fn report(&mut self, msg_id: MsgId, source: &PeerId, verdict: Validation) -> bool {
        let acceptance = match verdict {
            Validation::Accept => MessageAcceptance::Accept,
            Validation::Reject => MessageAcceptance::Reject,
            Validation::Ignore => MessageAcceptance::Ignore,
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&gossipsub::MessageId(msg_id.0), source, acceptance)
    }

    /// The connected peers, with their DIDs, addresses and scores.
    fn peer_infos(&self) -> Vec<PeerInfo> {
        let gossipsub = &self.swarm.behaviour().gossipsub;
        self.peers
            .iter()
            .map(|(peer, state)| PeerInfo {
                peer: *peer,
                did: did_from_peer_id(peer),
                addrs: state.addrs.clone(),
                score: gossipsub.peer_score(peer),
            })
            .collect()
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                self.emit(NetEvent::Listening(address));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                let state = self.peers.entry(peer_id).or_default();
                if endpoint.is_dialer() {
                    state.add_addr(endpoint.get_remote_address().clone());
                }
                if num_established.get() == 1 {
                    let did = did_from_peer_id(&peer_id);
                    tracing::debug!(peer = %peer_id, ?did, "peer connected");
                    self.emit(NetEvent::PeerConnected { peer: peer_id, did });
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                cause,
                ..
            } => {
                tracing::debug!(peer = %peer_id, ?cause, "peer disconnected");
                self.peers.remove(&peer_id);
                self.scores.remove(&peer_id);
                self.emit(NetEvent::PeerDisconnected { peer: peer_id });
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(peer = ?peer_id, %error, "dial failed");
            }
            SwarmEvent::IncomingConnectionError { error, peer_id, .. } => {
                tracing::debug!(peer = ?peer_id, %error, "incoming connection failed");
                if let Some(peer) = peer_id {
                    self.emit(NetEvent::Refused { peer });
                }
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(event) => self.on_gossip(event),
            BehaviourEvent::Sync(event) => self.on_sync(event),
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                for addr in info.listen_addrs {
                    self.swarm.add_peer_address(peer_id, addr.clone());
                    if let Some(state) = self.peers.get_mut(&peer_id) {
                        state.add_addr(addr);
                    }
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
                for (peer, addr) in found {
                    by_peer.entry(peer).or_default().push(addr);
                }
                for (peer, addrs) in by_peer {
                    tracing::debug!(%peer, "discovered by mDNS");
                    self.dial_peer(peer, addrs);
                }
            }
            BehaviourEvent::Identify(_) | BehaviourEvent::Mdns(_) | BehaviourEvent::Ping(_) => {}
            BehaviourEvent::Blocked(never) => match never {},
        }
    }

    fn on_gossip(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                tracing::trace!(id = %message_id, from = %propagation_source, "gossip received");
                self.emit(NetEvent::Gossip {
                    msg_id: MsgId(message_id.0),
                    source: propagation_source,
                    author: message.source,
                    topic: message.topic.into_string(),
                    data: message.data,
                });
            }
            gossipsub::Event::Subscribed { peer_id, topic } => {
                self.emit(NetEvent::Subscribed {
                    peer: peer_id,
                    topic: topic.into_string(),
                });
            }
            gossipsub::Event::Unsubscribed { peer_id, topic } => {
                self.emit(NetEvent::Unsubscribed {
                    peer: peer_id,
                    topic: topic.into_string(),
                });
            }
            gossipsub::Event::GossipsubNotSupported { peer_id } => {
                tracing::debug!(peer = %peer_id, "peer does not support gossipsub");
            }
            gossipsub::Event::SlowPeer { peer_id, .. } => {
                tracing::debug!(peer = %peer_id, "slow gossipsub peer");
            }
        }
    }

    fn on_sync(&mut self, event: request_response::Event<SyncRequest, SyncResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    self.emit(NetEvent::Request {
                        peer,
                        did: did_from_peer_id(&peer),
                        topic: request.topic,
                        body: request.body,
                        token: ResponseToken(channel),
                    });
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.pending.remove(&request_id) {
                        let _ = reply.send(Ok(response.body));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                tracing::debug!(%peer, %error, "request failed");
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(Err(match error {
                        OutboundFailure::DialFailure => RequestError::DialFailure,
                        OutboundFailure::Timeout => RequestError::Timeout,
                        OutboundFailure::ConnectionClosed => RequestError::ConnectionClosed,
                        OutboundFailure::UnsupportedProtocols => RequestError::UnsupportedProtocol,
                        OutboundFailure::Io(e) => RequestError::Io(e),
                    }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}

/// The reason a dial to a banned peer is refused.
#[derive(Debug, thiserror::Error)]
#[error("the peer is banned")]
struct Banned;
