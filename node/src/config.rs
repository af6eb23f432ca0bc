//! The node's data directory and `config.toml`.
//!
//! Precedence, lowest to highest: built-in defaults, `<data-dir>/config.toml`, `GUILD_*`
//! environment variables, command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The file names inside a data directory.
pub mod files {
    /// The member's identity key (mode 0600).
    pub const KEY: &str = "identity.key";
    /// The configuration.
    pub const CONFIG: &str = "config.toml";
    /// The local admin token (mode 0600), sent by the CLI as a bearer token.
    pub const TOKEN: &str = "admin-token";
    /// The sled database.
    pub const STORE: &str = "store";
    /// Written by a running node: the base URL it serves on.
    pub const ADDR: &str = "node.addr";
    /// Where members' nodes were last reached (kept by the running node), dialled at start.
    pub const PEERS: &str = "peers.txt";
    /// Import journals of `guild import`, for resuming.
    pub const IMPORTS: &str = "imports";
}

/// The default data directory: `$GUILD_DATA_DIR`, else `~/.guild`.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("GUILD_DATA_DIR") {
        return PathBuf::from(d);
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".guild"),
        None => PathBuf::from(".guild"),
    }
}

/// `config.toml`. Every field is optional.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
#[derive(Default)]
pub struct Config {
    /// The HTTP API.
    pub http: HttpConfig,
    /// Extension lexicons.
    pub lexicons: LexiconConfig,
    /// Logging.
    pub log: LogConfig,
    /// Peer-to-peer networking (libp2p).
    pub net: guild_net::NetConfig,
    /// The store.
    pub store: StoreConfig,
    /// Anti-entropy between members' nodes.
    pub sync: SyncConfig,
    /// Test-only settings (the devnet's chaos run); production configs leave them out.
    pub testing: TestingConfig,
    /// Builders' feeds and downloads.
    pub feeds: FeedsConfig,
}

/// `[feeds]`: what a steward's node serves model builders.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FeedsConfig {
    /// The public address builders reach the feeds and downloads at (only those: the admin API
    /// stays on `[http] listen`). Empty: served on `[http] listen` only.
    pub listen: String,
    /// The PEM certificate chain (end-entity certificate first) served on `listen` over TLS;
    /// set with `tls_key`, or neither (plain HTTP). Relative paths are in the data directory.
    pub tls_cert: String,
    /// The PEM private key (PKCS#8, SEC1 or RSA) of `tls_cert`.
    pub tls_key: String,
    /// Days an event stays replayable.
    pub retention_days: u64,
    /// Events kept replayable at most.
    pub max_events: usize,
    /// Events a subscriber may lag behind before it is dropped with `ConsumerTooSlow`.
    pub queue: usize,
    /// Seconds a login challenge lives.
    pub challenge_ttl_secs: u64,
    /// Seconds a builder's bearer token lives.
    pub token_ttl_secs: u64,
    /// Logins and downloads one client address may start per minute.
    pub requests_per_minute: u32,
    /// Days the delivery log keeps an entry (which builder got which bundle or event, when).
    pub delivery_retention_days: u64,
}

impl Default for FeedsConfig {
    fn default() -> Self {
        FeedsConfig {
            listen: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            retention_days: 7,
            max_events: 100_000,
            queue: 256,
            challenge_ttl_secs: 120,
            token_ttl_secs: 3600,
            requests_per_minute: 60,
            delivery_retention_days: 30,
        }
    }
}

impl FeedsConfig {
    /// The feeds' settings.
    pub fn settings(&self) -> guild_service::FeedConfig {
        let secs = |s: u64| i64::try_from(s.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
        guild_service::FeedConfig {
            retention: guild_feed::Retention {
                max_age_micros: secs(self.retention_days.saturating_mul(86_400)),
                max_events: self.max_events.max(1),
            },
            queue: self.queue.max(1),
            challenge_ttl_micros: secs(self.challenge_ttl_secs.max(1)),
            token_ttl_micros: secs(self.token_ttl_secs.max(1)),
            requests_per_minute: self.requests_per_minute.max(1),
            delivery_retention_micros: secs(self.delivery_retention_days.saturating_mul(86_400)),
            ..guild_service::FeedConfig::default()
        }
    }

    /// The public address, if one is set.
    pub fn public_listen(&self) -> Result<Option<SocketAddr>> {
        if self.listen.trim().is_empty() {
            return Ok(None);
        }
        self.listen
            .trim()
            .parse()
            .map(Some)
            .with_context(|| format!("[feeds] listen = {:?} is not an address", self.listen))
    }

    /// The TLS certificate and key files, when both are set (relative paths are in
    /// `data_dir`); an error when only one is, or when there is no public address to serve
    /// them on.
    pub fn tls_files(&self, data_dir: &Path) -> Result<Option<(PathBuf, PathBuf)>> {
        let path = |p: &str| {
            let p = PathBuf::from(p.trim());
            if p.is_relative() { data_dir.join(p) } else { p }
        };
        match (
            self.tls_cert.trim().is_empty(),
            self.tls_key.trim().is_empty(),
        ) {
            (true, true) => Ok(None),
            (false, true) => {
                bail!("[feeds] tls_cert is set but tls_key is not: set both (TLS) or neither")
            }
            (true, false) => {
                bail!("[feeds] tls_key is set but tls_cert is not: set both (TLS) or neither")
            }
            (false, false) if self.listen.trim().is_empty() => bail!(
                "[feeds] tls_cert and tls_key are set but [feeds] listen is not: TLS is served on \
                 the public address only (the admin API stays plain HTTP on loopback)"
            ),
            (false, false) => Ok(Some((path(&self.tls_cert), path(&self.tls_key)))),
        }
    }

    /// The public address's TLS configuration, read from `tls_cert` and `tls_key`, if set.
    pub fn server_tls(&self, data_dir: &Path) -> Result<Option<guild_api::ServerTls>> {
        let Some((cert, key)) = self.tls_files(data_dir)? else {
            return Ok(None);
        };
        guild_api::ServerTls::from_pem_files(&cert, &key)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("[feeds] tls_cert / tls_key: {e}"))
    }
}

/// `[testing]`: **test-only** settings, for rehearsing faults on one machine. A production
/// node leaves the section out; a node started with any of them set says so in its log.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TestingConfig {
    /// Seconds added to the machine's clock for everything the node reads the time for (its
    /// engine, API and repo service): a node whose clock runs fast (positive) or slow
    /// (negative). Default 0.
    pub clock_offset_secs: i64,
}

/// `[store]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The store's page cache, in MiB (8 to 65536). A steward's node that assembles large
    /// bundles reads every block of its members' replicas: a larger cache makes that faster
    /// (BENCHMARKS.md has the figures).
    pub cache_mib: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            cache_mib: guild_store::DEFAULT_CACHE_BYTES / (1024 * 1024),
        }
    }
}

/// `[sync]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// Seconds between two anti-entropy rounds with a random member's node (at least 1).
    pub interval_secs: u64,
    /// Up to this many seconds more, at random, so that nodes do not sync in lockstep.
    pub jitter_secs: u64,
    /// How many members' nodes the node keeps connections to (it dials more only while it has
    /// fewer; a steward's node dials every member). At least 1.
    pub member_peers: usize,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            interval_secs: 30,
            jitter_secs: 30,
            member_peers: guild_net::DEFAULT_MEMBER_PEERS,
        }
    }
}

/// `[http]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Where to serve the XRPC API (loopback only; port 0 picks a free port).
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Connections served at once; more wait in the listen backlog (at least 1).
    pub max_connections: usize,
    /// Seconds a connection has to send a request's headers, else it is closed (at least 1).
    pub header_read_timeout_secs: u64,
    /// Seconds a request body has to arrive once the node reads it (at least 1).
    pub body_read_timeout_secs: u64,
    /// Bytes of request bodies read or handled at once, all requests together (at least
    /// `max_body_bytes`).
    pub max_inflight_body_bytes: usize,
    /// Seconds a body waits for room in that budget before the request is refused (503).
    pub inflight_wait_secs: u64,
}

impl HttpConfig {
    /// The API server's bounds.
    pub fn limits(&self) -> guild_api::Limits {
        use std::time::Duration;
        guild_api::Limits {
            max_body_bytes: self.max_body_bytes,
            max_connections: self.max_connections,
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            body_read_timeout: Duration::from_secs(self.body_read_timeout_secs),
            max_inflight_body_bytes: self.max_inflight_body_bytes,
            inflight_wait: Duration::from_secs(self.inflight_wait_secs),
        }
    }
}

/// `[lexicons]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LexiconConfig {
    /// Directories of extension lexicons (relative paths are inside the data dir).
    pub dirs: Vec<PathBuf>,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter such as `info` or `guild=debug` (`GUILD_LOG` overrides it).
    pub filter: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        let limits = guild_api::Limits::default();
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 2583)),
            max_body_bytes: limits.max_body_bytes,
            max_connections: limits.max_connections,
            header_read_timeout_secs: limits.header_read_timeout.as_secs(),
            body_read_timeout_secs: limits.body_read_timeout.as_secs(),
            max_inflight_body_bytes: limits.max_inflight_body_bytes,
            inflight_wait_secs: limits.inflight_wait.as_secs(),
        }
    }
}

impl Default for LexiconConfig {
    fn default() -> Self {
        LexiconConfig {
            dirs: vec![PathBuf::from("lexicons")],
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            filter: "info,libp2p_gossipsub=error".into(),
        }
    }
}

/// What `guild init` chooses for a new data directory's `config.toml`.
#[derive(Debug, Clone)]
pub struct InitChoices {
    /// The peer-to-peer listen address (a fixed port, so that other members' nodes find this
    /// one again after a restart).
    pub p2p_listen: String,
    /// Whether mDNS discovery is on.
    pub mdns: bool,
    /// Whether peers sharing an IP address are penalised (off when every node runs on one
    /// machine).
    pub ip_colocation_penalty: bool,
}

impl Default for InitChoices {
    fn default() -> Self {
        InitChoices {
            p2p_listen: "/ip4/0.0.0.0/tcp/0".into(),
            mdns: true,
            ip_colocation_penalty: true,
        }
    }
}

/// The text `guild init` writes: every field commented; the values are the defaults except
/// where `choices` differ from [`InitChoices::default`].
pub fn template(choices: &InitChoices) -> String {
    TEMPLATE
        .replace(
            "listen = [\"/ip4/0.0.0.0/tcp/0\"]",
            &format!("listen = [{:?}]", choices.p2p_listen),
        )
        .replace("mdns = true", &format!("mdns = {}", choices.mdns))
        .replace(
            "ip_colocation_penalty = true",
            &format!("ip_colocation_penalty = {}", choices.ip_colocation_penalty),
        )
}

/// The template with every value at its default.
const TEMPLATE: &str = r#"# Guild node configuration. Every field is optional; the values shown are the defaults, except
# where `guild init` chose otherwise (the peer-to-peer port, and what its flags set).
# Environment variables override this file (GUILD_HTTP_LISTEN, GUILD_MAX_BODY_BYTES,
# GUILD_LOG), and command-line flags override both.

[http]
# Where the node serves its XRPC API. Loopback only: the local admin API is never exposed.
# Port 0 picks a free port; the node writes its address to <data-dir>/node.addr either way.
listen = "127.0.0.1:2583"
# Largest request body accepted, in bytes (PayloadTooLarge beyond).
max_body_bytes = 5000000
# Connections served at once; further clients wait in the listen backlog until one closes.
max_connections = 512
# Seconds a connection has to send a request's headers (also the idle time allowed between
# two requests on one connection); it is closed after that.
header_read_timeout_secs = 10
# Seconds a request body has to arrive once the node starts reading it (RequestTimeout after).
body_read_timeout_secs = 30
# Request bodies being read or handled at once share this many bytes (64 MiB): each reserves
# its Content-Length (max_body_bytes when it gives none) and waits inflight_wait_secs at most
# for room, else is refused with NotEnoughResources (503). At least max_body_bytes.
max_inflight_body_bytes = 67108864
inflight_wait_secs = 10

[feeds]
# What a steward's node serves model builders: their feeds (coop.guild.feed.subscribe) and
# bundle downloads (coop.guild.bundle.get), after a signed-challenge login. `listen` is the
# public address for those alone (say "0.0.0.0:2584"; the admin API stays on [http] listen);
# empty serves them on [http] listen only.
listen = ""
# TLS on that address (rustls): a PEM certificate chain (end-entity first) and its PEM private
# key (PKCS#8, SEC1 or RSA). Set both, or neither for plain HTTP (say behind a TLS-terminating
# proxy). Relative paths are inside the data directory. The admin API stays plain HTTP.
tls_cert = ""
tls_key = ""
# Events stay replayable for retention_days, at most max_events of them.
retention_days = 7
max_events = 100000
# Events a subscriber may lag behind before it is dropped with ConsumerTooSlow.
queue = 256
# Seconds a login challenge, and a builder's bearer token, live.
challenge_ttl_secs = 120
token_ttl_secs = 3600
# Logins (challenge, sign-in) and downloads one client address may start per minute, in a burst
# of as many; more are refused with RateLimitExceeded (429, Retry-After).
requests_per_minute = 60
# The delivery log (which builder downloaded which bundle, which feed events were sent to it,
# when, from where; `guild feed deliveries`) keeps an entry this many days.
delivery_retention_days = 30

[lexicons]
# Directories of extension lexicons (*.json), loaded at start. Relative paths are inside the
# data directory. A missing directory is skipped; an invalid lexicon is refused with a warning.
dirs = ["lexicons"]

[log]
# A tracing filter: error, warn, info, debug, trace, or per module (guild_api=debug).
# gossipsub warns about every re-publish of an op it already has, which is normal here.
filter = "info,libp2p_gossipsub=error"

[net]
# Where the node listens for other members' nodes (libp2p multiaddresses). `guild init` picks a
# free port once and writes it here, so that members who know this node's address find it again
# after a restart; port 0 would pick a new one at every start. GUILD_P2P_LISTEN
# (comma-separated) overrides it.
listen = ["/ip4/0.0.0.0/tcp/0"]
# Members' nodes to dial at start and while disconnected (each ending in /p2p/<peer id>).
# Invites carry the inviter's addresses, so joining needs none.
bootstrap = []
# Find other members' nodes on the local network (GUILD_MDNS=0 turns it off).
mdns = true
# Close idle connections after this many seconds (at least 60).
idle_timeout_secs = 60
# Penalise many peers behind one IP address (turn off when every node runs on one machine).
ip_colocation_penalty = true

[store]
# The store's page cache in MiB (8 to 65536). A steward's node assembling large bundles reads
# every block of the members' replicas; give it more (say 1024) if the machine has the memory.
cache_mib = 64

[sync]
# Anti-entropy: every interval_secs (plus up to jitter_secs at random) the node compares its
# governance log with a random member's node and fetches what it lacks, so that nothing gossip
# missed stays missing. A steward's node also asks one member's node per round (interval +
# jitter) which repo heads it holds, and pulls what its replicas lack. GUILD_SYNC_INTERVAL_SECS
# overrides both (jitter = interval).
interval_secs = 30
jitter_secs = 30
# How many members' nodes this node keeps connections to: it dials members it learns of only
# while it has fewer, so a large collective's nodes form a sparse graph, not a full mesh.
# Gossip and anti-entropy reach every member through it. A steward's node dials every member.
member_peers = 8
"#;

impl Config {
    /// Loads `<data_dir>/config.toml` (defaults if absent), then applies `GUILD_*` variables.
    pub fn load(data_dir: &Path) -> Result<Config> {
        let path = data_dir.join(files::CONFIG);
        let mut config = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .with_context(|| format!("invalid configuration in {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::default(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        if let Ok(v) = std::env::var("GUILD_HTTP_LISTEN") {
            config.http.listen = v
                .parse()
                .with_context(|| format!("GUILD_HTTP_LISTEN={v:?} is not an address"))?;
        }
        if let Ok(v) = std::env::var("GUILD_MAX_BODY_BYTES") {
            config.http.max_body_bytes = v
                .parse()
                .with_context(|| format!("GUILD_MAX_BODY_BYTES={v:?} is not a number"))?;
        }
        if let Ok(v) = std::env::var("GUILD_LOG") {
            config.log.filter = v;
        }
        if let Ok(v) = std::env::var("GUILD_P2P_LISTEN") {
            config.net.listen = v
                .split(',')
                .filter(|a| !a.trim().is_empty())
                .map(|a| {
                    a.trim()
                        .parse()
                        .with_context(|| format!("GUILD_P2P_LISTEN: {a:?} is not a multiaddress"))
                })
                .collect::<Result<_>>()?;
        }
        if let Ok(v) = std::env::var("GUILD_SYNC_INTERVAL_SECS") {
            let secs: u64 = v
                .parse()
                .with_context(|| format!("GUILD_SYNC_INTERVAL_SECS={v:?} is not a number"))?;
            config.sync.interval_secs = secs;
            config.sync.jitter_secs = secs;
        }
        if let Ok(v) = std::env::var("GUILD_MDNS") {
            config.net.mdns = !matches!(v.as_str(), "0" | "false" | "off" | "no");
        }
        Ok(config)
    }

    /// Checks what the types cannot.
    pub fn check(&self) -> Result<()> {
        if !self.http.listen.ip().is_loopback() {
            bail!(
                "http.listen is {}: the node's admin API is served on loopback only (127.0.0.1 or ::1)",
                self.http.listen
            );
        }
        if !(8..=65536).contains(&self.store.cache_mib) {
            bail!(
                "store.cache_mib is {}: it must be 8 to 65536",
                self.store.cache_mib
            );
        }
        let http = &self.http;
        if http.max_body_bytes < 1024 {
            bail!("http.max_body_bytes must be at least 1024");
        }
        if http.max_connections == 0 {
            bail!("http.max_connections must be at least 1");
        }
        if http.header_read_timeout_secs == 0 || http.body_read_timeout_secs == 0 {
            bail!(
                "http.header_read_timeout_secs and http.body_read_timeout_secs must be at least 1"
            );
        }
        if http.max_inflight_body_bytes < http.max_body_bytes {
            bail!(
                "http.max_inflight_body_bytes ({}) must be at least http.max_body_bytes ({})",
                http.max_inflight_body_bytes,
                http.max_body_bytes
            );
        }
        if self.sync.interval_secs == 0 {
            bail!("sync.interval_secs must be at least 1");
        }
        if self.sync.member_peers == 0 {
            bail!("sync.member_peers must be at least 1");
        }
        self.feeds.public_listen()?;
        // Both or neither (the files themselves are read when the node starts).
        self.feeds.tls_files(Path::new(""))?;
        self.net
            .validate()
            .map_err(|e| anyhow::anyhow!("[net]: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_is_the_defaults() {
        let parsed: Config = toml::from_str(TEMPLATE).unwrap();
        assert_eq!(parsed, Config::default());
        let same: Config = toml::from_str(&template(&InitChoices::default())).unwrap();
        assert_eq!(same, Config::default());
    }

    #[test]
    fn init_choices_are_written() {
        let text = template(&InitChoices {
            p2p_listen: "/ip4/127.0.0.1/tcp/4711".into(),
            mdns: false,
            ip_colocation_penalty: false,
        });
        let c: Config = toml::from_str(&text).unwrap();
        assert_eq!(
            c.net.listen,
            vec!["/ip4/127.0.0.1/tcp/4711".parse().unwrap()]
        );
        assert!(!c.net.mdns && !c.net.ip_colocation_penalty);
        assert_eq!(c.http, HttpConfig::default());
    }

    #[test]
    fn the_test_only_settings_are_read() {
        let c: Config = toml::from_str(
            "[testing]\nclock_offset_secs = -90\n\n[net]\n\n[[net.dial_via]]\n\
             to = \"127.0.0.1:4001\"\nvia = \"127.0.0.1:5012\"\n",
        )
        .unwrap();
        assert_eq!(c.testing.clock_offset_secs, -90);
        assert_eq!(
            c.net.dial_via,
            vec![guild_net::DialVia {
                to: "127.0.0.1:4001".parse().unwrap(),
                via: "127.0.0.1:5012".parse().unwrap(),
            }]
        );
        assert!(toml::from_str::<Config>("[testing]\nclock_offset = 1").is_err());
    }

    #[test]
    fn http_bounds_are_checked() {
        let ok: Config = toml::from_str("[http]\nmax_connections = 1\nheader_read_timeout_secs = 1\nbody_read_timeout_secs = 1\nmax_body_bytes = 4096\nmax_inflight_body_bytes = 4096\ninflight_wait_secs = 0").unwrap();
        ok.check().unwrap();
        assert_eq!(ok.http.limits().max_connections, 1);
        for bad in [
            "max_connections = 0",
            "header_read_timeout_secs = 0",
            "body_read_timeout_secs = 0",
            "max_inflight_body_bytes = 4999999",
        ] {
            let c: Config = toml::from_str(&format!("[http]\n{bad}")).unwrap();
            let e = c.check().unwrap_err().to_string();
            assert!(e.contains(bad.split(' ').next().unwrap()), "{bad}: {e}");
        }
    }

    #[test]
    fn tls_needs_both_files_and_a_public_address() {
        let c = |text: &str| toml::from_str::<Config>(&format!("[feeds]\n{text}")).unwrap();
        c("listen = \"0.0.0.0:2584\"").check().unwrap();
        let both = c("listen = \"0.0.0.0:2584\"\ntls_cert = \"c.pem\"\ntls_key = \"/k.pem\"");
        both.check().unwrap();
        assert_eq!(
            both.feeds.tls_files(Path::new("/data")).unwrap(),
            Some((PathBuf::from("/data/c.pem"), PathBuf::from("/k.pem")))
        );
        for (bad, says) in [
            (
                "listen = \"0.0.0.0:1\"\ntls_key = \"k.pem\"",
                "tls_key is set but tls_cert",
            ),
            (
                "listen = \"0.0.0.0:1\"\ntls_cert = \"c.pem\"",
                "tls_cert is set but tls_key",
            ),
            ("tls_cert = \"c.pem\"\ntls_key = \"k.pem\"", "listen is not"),
        ] {
            let e = c(bad).check().unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let e = both
            .feeds
            .server_tls(Path::new("/nonexistent"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/c.pem"), "{e}");
    }

    #[test]
    fn unknown_fields_and_public_addresses_are_refused() {
        assert!(toml::from_str::<Config>("[http]\nlisten_on = \"x\"").is_err());
        let c: Config = toml::from_str("[http]\nlisten = \"0.0.0.0:1\"").unwrap();
        assert!(c.check().is_err());
    }
}
