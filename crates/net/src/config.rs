//! [`NetConfig`]: the `[net]` section of a node's configuration, with working defaults.
//!
//! Durations are whole seconds (`*_secs`) or milliseconds (`*_ms`), as elsewhere in the node's
//! `config.toml`. [`NetConfig::validate`] is called by [`crate::Net::spawn`]; a value the swarm
//! could not run with is refused there with a [`ConfigError`] naming the field.

use std::time::Duration;

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use serde::Deserialize;

pub use crate::via::DialVia;

/// The shortest idle-connection timeout allowed (protocol.md §5: "idle connection timeout ≥
/// 60 s"): a quiet collective's topic must not lose its mesh between two ops.
pub const MIN_IDLE_TIMEOUT_SECS: u64 = 60;

/// Which transport the swarm runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// TCP, authenticated and encrypted by noise, multiplexed by yamux (protocol.md §5).
    #[default]
    Tcp,
    /// libp2p's in-process memory transport (`/memory/<port>` addresses) with the same noise
    /// and yamux upgrades: several nodes in one process, for tests and benchmarks.
    Memory,
}

/// The network layer's configuration. Every field has a default; see each one.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetConfig {
    /// The transport. Default `tcp`.
    pub transport: TransportKind,
    /// Addresses to listen on. Default `["/ip4/0.0.0.0/tcp/0"]` (every interface, a free port).
    pub listen: Vec<Multiaddr>,
    /// Peers dialled at start and again every `bootstrap_retry_secs` while not connected. Each
    /// must end in `/p2p/<peer id>`. Default none.
    pub bootstrap: Vec<Multiaddr>,
    /// Seconds between two redials of an unconnected bootstrap peer. Default 30.
    pub bootstrap_retry_secs: u64,
    /// Discover and dial peers on the local network by mDNS (TCP transport only). Default true.
    pub mdns: bool,
    /// Seconds a connection with no open stream is kept. Default and minimum 60.
    pub idle_timeout_secs: u64,
    /// Milliseconds between two gossipsub heartbeats (mesh maintenance, gossip). Default 1000.
    pub heartbeat_ms: u64,
    /// Penalise peers that share an IP address (gossipsub's P6). Default true; turn it off when
    /// every node runs on one machine (tests, devnet), where all peers share 127.0.0.1.
    pub ip_colocation_penalty: bool,
    /// Largest gossip message data, in bytes (its signed envelope comes on top). Default 131072
    /// (128 KiB: a governance op is at most 64 KiB).
    pub max_message_bytes: usize,
    /// Largest request-response request body, in bytes. Default 1 MiB.
    pub max_request_bytes: u64,
    /// Largest request-response response body, in bytes. Default 10 MiB.
    pub max_response_bytes: u64,
    /// Seconds before an outbound request without an answer fails. Default 30.
    pub request_timeout_secs: u64,
    /// Capacity of the command channel from [`crate::NetHandle`]s to the swarm task. Default 256.
    pub command_capacity: usize,
    /// Capacity of the event channel from the swarm task to its owner. Default 1024. When it
    /// is full, further events are dropped (see [`crate::NetEvent`]).
    pub event_capacity: usize,
    /// Peer scoring and banning.
    pub score: ScoreConfig,
    /// **Test-only**: rewrite every outgoing TCP dial by this table (`[[net.dial_via]]` entries
    /// `{ to = "127.0.0.1:4001", via = "127.0.0.1:5012" }`) and refuse dials it does not
    /// cover. The devnet's chaos run uses it to put a TCP proxy on every link. Default empty
    /// (dials go where they name, and the rewriting transport is not built).
    pub dial_via: Vec<DialVia>,
}

/// Peer scoring (gossipsub v1.1) and the ban that follows a low score.
///
/// A peer's score falls by `invalid_message_weight × n²` for `n` messages the caller rejected
/// (gossipsub's P4, decaying over `invalid_message_decay_secs`), rises a little with time in the
/// mesh and first deliveries (capped at `positive_cap`), and with `ip_colocation_penalty` falls
/// when many peers share one IP address. Below `ban_threshold` the peer is disconnected and its
/// connections refused for `ban_secs`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoreConfig {
    /// Weight of the square of the count of rejected messages (negative). Default -10: three
    /// rejected messages in a short time cost -90.
    pub invalid_message_weight: f64,
    /// Seconds for that count to decay to a tenth of itself. Default 600.
    pub invalid_message_decay_secs: u64,
    /// Cap on the positive part of a score (time in mesh, first deliveries). Default 30.
    pub positive_cap: f64,
    /// Below this score no gossip (IHAVE/IWANT) is exchanged with the peer. Default -10.
    pub gossip_threshold: f64,
    /// Below this score nothing is published to the peer. Default -50.
    pub publish_threshold: f64,
    /// Below this score everything the peer sends is ignored. Default -80.
    pub graylist_threshold: f64,
    /// Below this score the peer is disconnected and refused for `ban_secs`. Default -50.
    pub ban_threshold: f64,
    /// Seconds a banned peer's connections are refused. Default 600.
    pub ban_secs: u64,
    /// Milliseconds between two checks of connected peers' scores. Default 1000.
    pub check_interval_ms: u64,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            transport: TransportKind::Tcp,
            listen: vec![
                Multiaddr::empty()
                    .with(Protocol::Ip4([0, 0, 0, 0].into()))
                    .with(Protocol::Tcp(0)),
            ],
            bootstrap: Vec::new(),
            bootstrap_retry_secs: 30,
            mdns: true,
            idle_timeout_secs: MIN_IDLE_TIMEOUT_SECS,
            heartbeat_ms: 1000,
            ip_colocation_penalty: true,
            max_message_bytes: 128 * 1024,
            max_request_bytes: 1024 * 1024,
            max_response_bytes: 10 * 1024 * 1024,
            request_timeout_secs: 30,
            command_capacity: 256,
            event_capacity: 1024,
            score: ScoreConfig::default(),
            dial_via: Vec::new(),
        }
    }
}

impl Default for ScoreConfig {
    fn default() -> Self {
        ScoreConfig {
            invalid_message_weight: -10.0,
            invalid_message_decay_secs: 600,
            positive_cap: 30.0,
            gossip_threshold: -10.0,
            publish_threshold: -50.0,
            graylist_threshold: -80.0,
            ban_threshold: -50.0,
            ban_secs: 600,
            check_interval_ms: 1000,
        }
    }
}

/// A configuration the swarm cannot run with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// `idle_timeout_secs` is below [`MIN_IDLE_TIMEOUT_SECS`].
    #[error("net.idle_timeout_secs is {0}; the minimum is {MIN_IDLE_TIMEOUT_SECS}")]
    IdleTimeoutTooShort(u64),
    /// A duration or capacity that must be positive is zero.
    #[error("net.{0} must be greater than zero")]
    Zero(&'static str),
    /// A bootstrap address does not end in `/p2p/<peer id>`.
    #[error("net.bootstrap address {0} does not end in /p2p/<peer id>")]
    BootstrapWithoutPeerId(Multiaddr),
    /// The score thresholds are out of order or of the wrong sign.
    #[error("net.score: {0}")]
    Score(String),
    /// mDNS was asked for on the memory transport.
    #[error("net.mdns needs the tcp transport")]
    MdnsOnMemory,
}

impl NetConfig {
    /// A configuration for in-process nodes: the memory transport listening on `/memory/0` (a
    /// free port), no mDNS, no IP-colocation penalty, 100 ms heartbeats and score checks.
    pub fn memory() -> Self {
        NetConfig {
            transport: TransportKind::Memory,
            listen: vec![Multiaddr::empty().with(Protocol::Memory(0))],
            mdns: false,
            ip_colocation_penalty: false,
            heartbeat_ms: 100,
            score: ScoreConfig {
                check_interval_ms: 100,
                ..ScoreConfig::default()
            },
            ..NetConfig::default()
        }
    }

    /// Checks the values the swarm cannot run with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.idle_timeout_secs < MIN_IDLE_TIMEOUT_SECS {
            return Err(ConfigError::IdleTimeoutTooShort(self.idle_timeout_secs));
        }
        for (name, value) in [
            ("bootstrap_retry_secs", self.bootstrap_retry_secs),
            ("heartbeat_ms", self.heartbeat_ms),
            ("request_timeout_secs", self.request_timeout_secs),
            ("max_request_bytes", self.max_request_bytes),
            ("max_response_bytes", self.max_response_bytes),
            ("max_message_bytes", self.max_message_bytes as u64),
            ("command_capacity", self.command_capacity as u64),
            ("event_capacity", self.event_capacity as u64),
            ("score.check_interval_ms", self.score.check_interval_ms),
            (
                "score.invalid_message_decay_secs",
                self.score.invalid_message_decay_secs,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if let Some(addr) = self.bootstrap.iter().find(|a| peer_of(a).is_none()) {
            return Err(ConfigError::BootstrapWithoutPeerId(addr.clone()));
        }
        if self.mdns && self.transport == TransportKind::Memory {
            return Err(ConfigError::MdnsOnMemory);
        }
        let s = &self.score;
        let checks = [
            (
                s.invalid_message_weight < 0.0,
                "invalid_message_weight must be negative",
            ),
            (s.positive_cap >= 0.0, "positive_cap must not be negative"),
            (
                s.gossip_threshold <= 0.0,
                "gossip_threshold must not be positive",
            ),
            (
                s.publish_threshold <= s.gossip_threshold,
                "publish_threshold must be at most gossip_threshold",
            ),
            (
                s.graylist_threshold <= s.publish_threshold,
                "graylist_threshold must be at most publish_threshold",
            ),
            (s.ban_threshold < 0.0, "ban_threshold must be negative"),
        ];
        if let Some((_, why)) = checks.iter().find(|(ok, _)| !ok) {
            return Err(ConfigError::Score((*why).into()));
        }
        Ok(())
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    pub(crate) fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }
}

/// The peer id an address ends in (`…/p2p/<peer id>`), if any.
pub(crate) fn peer_of(addr: &Multiaddr) -> Option<libp2p::PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        assert_eq!(NetConfig::default().validate(), Ok(()));
        assert_eq!(NetConfig::memory().validate(), Ok(()));
    }

    #[test]
    fn parses_from_toml() {
        let cfg: NetConfig = toml::from_str(
            r#"
            transport = "tcp"
            listen = ["/ip4/0.0.0.0/tcp/4001"]
            bootstrap = ["/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"]
            mdns = false
            idle_timeout_secs = 120

            [score]
            ban_threshold = -70.0
            "#,
        )
        .unwrap();
        assert_eq!(cfg.validate(), Ok(()));
        assert!(!cfg.mdns);
        assert_eq!(cfg.idle_timeout_secs, 120);
        assert_eq!(cfg.score.ban_threshold, -70.0);
        assert_eq!(cfg.score.ban_secs, ScoreConfig::default().ban_secs);
        assert!(peer_of(&cfg.bootstrap[0]).is_some());
        assert!(toml::from_str::<NetConfig>("colour = 1").is_err());
    }

    #[test]
    fn short_idle_timeout_is_refused() {
        let cfg = NetConfig {
            idle_timeout_secs: 10,
            ..NetConfig::default()
        };
        assert_eq!(cfg.validate(), Err(ConfigError::IdleTimeoutTooShort(10)));
    }

    #[test]
    fn bootstrap_needs_a_peer_id() {
        let cfg = NetConfig {
            bootstrap: vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()],
            ..NetConfig::default()
        };
        assert!(matches!(
            cfg.validate(),
            Err(ConfigError::BootstrapWithoutPeerId(_))
        ));
    }

    #[test]
    fn score_thresholds_are_ordered() {
        let mut cfg = NetConfig::default();
        cfg.score.publish_threshold = -5.0;
        assert!(matches!(cfg.validate(), Err(ConfigError::Score(_))));
    }
}
