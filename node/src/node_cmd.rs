//! `guild init` and `guild node`: the member's data directory and the daemon.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use guild_api::{ApiState, Bodies, Clock, RepoService, router};
use guild_core::Keypair;
use guild_lexicon::Registry;
use guild_store::{OpenError, SledStore};
use tracing::Instrument as _;

use crate::config::{Config, InitChoices, files, template};
use crate::files::{check_init_file, read_key_file, write_atomic, write_public};

/// Creates a data directory: identity key (0600), admin token (0600), config, store. A
/// peer-to-peer listen address on TCP port 0 gets a free port now, written to the config, so
/// that the node listens on the same port at every start.
pub fn init(data_dir: &Path, choices: InitChoices) -> Result<ExitCode> {
    let key_path = data_dir.join(files::KEY);
    if key_path.exists() {
        bail!(
            "{} already has an identity ({}); refusing to overwrite it",
            data_dir.display(),
            key_path.display()
        );
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot set permissions on {}", data_dir.display()))?;
    }
    let key = Keypair::generate().context("cannot generate a key")?;
    write_atomic(&key_path, true, |w| {
        w.write_all(key.to_key_file().as_bytes())?;
        Ok(())
    })?;
    let token_path = data_dir.join(files::TOKEN);
    let token = new_token()?;
    write_atomic(&token_path, false, |w| {
        writeln!(w, "{token}")?;
        Ok(())
    })?;
    let config_path = data_dir.join(files::CONFIG);
    if !config_path.exists() {
        let choices = InitChoices {
            p2p_listen: fix_p2p_port(&choices.p2p_listen)?,
            ..choices
        };
        write_atomic(&config_path, true, |w| {
            w.write_all(template(&choices).as_bytes())?;
            Ok(())
        })?;
    }
    // Create the store now, so that `guild node` finds everything in place.
    SledStore::open(&data_dir.join(files::STORE))
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot create the store in {}", data_dir.display()))?;
    println!("{}", key.did());
    eprintln!(
        "initialised {} (identity, admin token, config.toml, store); start the node with: guild node --data-dir {}",
        data_dir.display(),
        data_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `/ip4/<ip>/tcp/0` (or ip6) with port 0 replaced by a port free now; other addresses as
/// given (checked to be multiaddresses).
fn fix_p2p_port(addr: &str) -> Result<String> {
    use guild_net::multiaddr::Protocol;
    let parsed: guild_net::Multiaddr = addr
        .parse()
        .with_context(|| format!("--p2p-listen {addr:?} is not a multiaddress"))?;
    let parts: Vec<Protocol<'_>> = parsed.iter().collect();
    let ip: std::net::IpAddr = match parts.first() {
        Some(Protocol::Ip4(ip)) => (*ip).into(),
        Some(Protocol::Ip6(ip)) => (*ip).into(),
        _ => return Ok(addr.to_string()),
    };
    if parts.len() != 2 || !matches!(parts[1], Protocol::Tcp(0)) {
        return Ok(addr.to_string());
    }
    let port = std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .with_context(|| format!("cannot find a free TCP port on {ip}"))?
        .port();
    let fixed = guild_net::Multiaddr::empty()
        .with(parts[0].clone())
        .with(Protocol::Tcp(port));
    Ok(fixed.to_string())
}

/// 32 random bytes as hex.
fn new_token() -> Result<String> {
    let key = Keypair::generate().context("cannot read the random source")?;
    Ok(key
        .secret_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Reads the admin token, refusing a token file that others can read (as the key is).
pub fn read_token(data_dir: &Path) -> Result<String> {
    let path = data_dir.join(files::TOKEN);
    check_init_file(data_dir, &path, "admin token")?;
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read admin token {}", path.display()))?;
    let token = text.trim().to_string();
    if token.len() < 32 {
        bail!("the admin token in {} is too short", path.display());
    }
    Ok(token)
}

/// Why a second node on `data_dir` cannot start: the first one holds the store, and serves at
/// the address in `node.addr`, if it wrote one.
fn already_running(data_dir: &Path) -> String {
    let serving = std::fs::read_to_string(data_dir.join(files::ADDR))
        .ok()
        .map(|url| format!(", serving at {}", url.trim()))
        .unwrap_or_default();
    format!(
        "another guild node is already running on {}{serving} (it holds the store); stop it first, or use another --data-dir",
        data_dir.display()
    )
}

/// Options of `guild node` that override the configuration.
#[derive(Debug, Clone, Default)]
pub struct NodeFlags {
    /// `--listen`
    pub listen: Option<std::net::SocketAddr>,
    /// `--lexicons`
    pub lexicons: Vec<PathBuf>,
}

/// Runs the daemon until SIGINT or SIGTERM.
pub fn run(data_dir: &Path, flags: NodeFlags) -> Result<ExitCode> {
    let started = Instant::now();
    let mut config = Config::load(data_dir)?;
    if let Some(l) = flags.listen {
        config.http.listen = l;
    }
    config.check()?;
    // The public address's certificate and key, read now: a node given files it cannot
    // serve refuses to start, naming the file and the problem.
    let tls = config.feeds.server_tls(data_dir)?;
    crate::init_logging(&config.log.filter);
    let key_path = data_dir.join(files::KEY);
    check_init_file(data_dir, &key_path, "key file")?;
    let key = read_key_file(&key_path)?;
    let token = read_token(data_dir)?;
    let store = SledStore::open_with_cache(
        &data_dir.join(files::STORE),
        config.store.cache_mib * 1024 * 1024,
    )
    .map_err(|e| match e {
        OpenError::Locked { .. } => anyhow::anyhow!(already_running(data_dir)),
        e => anyhow::anyhow!("cannot open the store in {}: {e}", data_dir.display()),
    })?;
    let registry = load_lexicons(&config, data_dir, flags.lexicons);
    let short = key
        .did()
        .trim_start_matches("did:key:z6Mk")
        .chars()
        .take(8)
        .collect::<String>();
    let net_key = key.clone();
    let gov_store = Arc::new(store.clone());
    // One clock for the engine, the API and the repo service.
    let clock = match config.testing.clock_offset_secs {
        0 => Clock::system(),
        secs => {
            tracing::warn!(
                offset_secs = secs,
                "test-only setting: this node's clock is shifted by testing.clock_offset_secs"
            );
            Clock::offset(Arc::new(AtomicI64::new(secs.saturating_mul(1_000_000))))
        }
    };
    let service = Arc::new(
        RepoService::new(Arc::new(store), key, Arc::new(registry))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .with_clock(clock.clone()),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let addr_path = data_dir.join(files::ADDR);
    let node = Node {
        data_dir,
        config: &config,
        net_key,
        gov_store,
        service: service.clone(),
        admin_token: token,
        started,
        clock,
        addr_path: &addr_path,
        tls,
    };
    let result: Result<()> = runtime.block_on(
        node.serve()
            .instrument(tracing::info_span!("node", id = %short)),
    );
    // Every acknowledged write was flushed before its answer; this only tidies up.
    let _ = std::fs::remove_file(&addr_path);
    if let Err(e) = service.save_clock() {
        tracing::warn!("could not save the TID clock: {e}");
    }
    tracing::info!("stopped");
    result?;
    Ok(ExitCode::SUCCESS)
}

/// The configured lexicon directories (relative ones in the data directory, those that
/// exist) and `--lexicons`, loaded; each lexicon refused is logged.
fn load_lexicons(config: &Config, data_dir: &Path, extra: Vec<PathBuf>) -> Registry {
    let mut dirs: Vec<PathBuf> = config
        .lexicons
        .dirs
        .iter()
        .map(|d| {
            if d.is_relative() {
                data_dir.join(d)
            } else {
                d.clone()
            }
        })
        .filter(|d| d.exists())
        .collect();
    dirs.extend(extra);
    let (registry, problems) = Registry::load_dirs(&dirs);
    for p in &problems {
        tracing::warn!("lexicon refused: {p}");
    }
    registry
}

/// What the running node is made of, before networking starts.
struct Node<'a> {
    data_dir: &'a Path,
    config: &'a Config,
    net_key: Keypair,
    gov_store: Arc<SledStore>,
    service: Arc<RepoService<SledStore>>,
    admin_token: String,
    started: Instant,
    clock: Clock,
    /// Where the API's URL is written once it listens.
    addr_path: &'a Path,
    /// TLS for the public address (`[feeds] tls_cert`, `tls_key`).
    tls: Option<guild_api::ServerTls>,
}

impl Node<'_> {
    /// Starts networking and the collectives engine, serves the API until a shutdown signal,
    /// then stores the last ops and leaves the swarm.
    async fn serve(self) -> Result<()> {
        let config = self.config;
        let did = self.net_key.did();
        // Networking first: the collectives engine serves the collective endpoints.
        let (net, events) = guild_net::Net::spawn(&self.net_key, config.net.clone())
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("cannot start peer-to-peer networking")?;
        let engine_config = engine_config(config, self.data_dir, &self.clock, &net);
        let engine = guild_net::Engine::spawn_with_repos(
            self.net_key,
            net.clone(),
            events,
            self.gov_store,
            Some(self.service.clone() as Arc<dyn guild_net::Repos>),
            engine_config,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("cannot load the collectives")?;
        // Each commit to a collective space is announced to the collective, and each commit
        // to the public repo (the commons) to every collective, so that their stewards pull
        // it into their replicas.
        let announcer = engine.clone();
        self.service.on_commit(move |space, head| {
            if !announcer.announce_commit(space, head.rev.to_string(), head.commit) {
                tracing::debug!("head not announced now; stewards catch up by heads sync");
            }
        });
        // A write to a collective's space is refused once this member left or was removed.
        self.service
            .check_memberships(Arc::new(engine.memberships()));
        // Bundles: this node proposes on request, and, while its member is a steward,
        // recomputes every proposal from its own replicas, approves it and packages what a
        // quorum sealed.
        let collectives: Arc<dyn guild_service::CollectiveEngine> =
            Arc::new(guild_net::NetCollectives {
                engine: engine.clone(),
                net: net.clone(),
            });
        let bundles = Arc::new(
            guild_service::Stewardship::new(
                self.service.clone(),
                collectives.clone(),
                self.data_dir.join("bundles"),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
        // Builders' feeds: events derived from the collectives' state after each pass.
        let feeds = Arc::new(
            guild_service::Feeds::open(
                self.service.clone(),
                collectives.clone(),
                bundles.clone(),
                &did,
                config.feeds.settings(),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("cannot open the feed log")?,
        );
        let worker = bundles.clone();
        let feed_worker = feeds.clone();
        let bundle_task = tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_millis(500));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                worker.step().await;
                if let Err(e) = feed_worker.refresh().await {
                    tracing::warn!("feed refresh: {e}");
                }
            }
        });
        let limits = config.http.limits();
        let state = Arc::new(ApiState {
            service: self.service.clone(),
            admin_token: self.admin_token,
            bodies: Bodies::new(&limits),
            started: self.started,
            clock: self.clock,
            collectives: Some(collectives),
            bundles: Some(bundles),
            feeds: Some(feeds.hub().clone()),
        });
        let listener = tokio::net::TcpListener::bind(config.http.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.http.listen))?;
        let bound = listener.local_addr()?;
        let url = format!("http://{bound}");
        write_public(self.addr_path, |w| {
            writeln!(w, "{url}")?;
            Ok(())
        })?;
        tracing::info!(
            %url,
            did = %did,
            lexicons = self.service.registry().len(),
            ready_ms = self.started.elapsed().as_millis() as u64,
            "serving"
        );
        let p2p = net.listen_addrs().await.unwrap_or_default();
        tracing::info!(
            peer = %net.peer_id(),
            listen = ?p2p.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "peer-to-peer"
        );
        // Builders' feeds and downloads on the public address, when one is set.
        let public = match config.feeds.public_listen()? {
            Some(addr) => {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} ([feeds] listen)"))?;
                let scheme = if self.tls.is_some() { "https" } else { "http" };
                tracing::info!(
                    url = %format!("{scheme}://{}", l.local_addr()?),
                    "serving builders"
                );
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                let app = guild_api::public_router(state.clone());
                let limits = limits.clone();
                let tls = self.tls.clone();
                let task = tokio::spawn(async move {
                    let stop = async {
                        let _ = rx.await;
                    };
                    match tls {
                        Some(tls) => guild_api::serve_tls(l, app, &limits, tls, stop).await,
                        None => guild_api::serve(l, app, &limits, stop).await,
                    }
                });
                Some((tx, task))
            }
            None => None,
        };
        // Until a shutdown signal; then requests in progress finish.
        guild_api::serve(listener, router(state), &limits, shutdown_signal()).await;
        if let Some((stop, task)) = public {
            let _ = stop.send(());
            let _ = task.await;
        }
        bundle_task.abort();
        // Store what arrived since the last tick, then leave the swarm.
        if let Err(e) = engine.flush().await {
            tracing::warn!("could not store the last ops: {e}");
        }
        let _ = net.shutdown().await;
        Ok(())
    }
}

/// The collectives engine's settings from the node's configuration.
fn engine_config(
    config: &Config,
    data_dir: &Path,
    clock: &Clock,
    net: &guild_net::NetHandle,
) -> guild_net::EngineConfig {
    guild_net::EngineConfig {
        driver: guild_gov::DriverConfig {
            // Seeded by the peer id's last bytes (its key), so nodes differ.
            seed: {
                let b = net.peer_id().to_bytes();
                u64::from_le_bytes(b[b.len().saturating_sub(8)..].try_into().unwrap_or([0; 8]))
            },
            sync_interval_micros: (config.sync.interval_secs as i64).saturating_mul(1_000_000),
            sync_jitter_micros: (config.sync.jitter_secs as i64).saturating_mul(1_000_000),
            ..guild_gov::DriverConfig::default()
        },
        // A steward asks a member's node for its repo heads once per round.
        repo_sync_interval: std::time::Duration::from_secs(
            config
                .sync
                .interval_secs
                .saturating_add(config.sync.jitter_secs),
        ),
        address_book: Some(data_dir.join(files::PEERS)),
        member_peers: config.sync.member_peers,
        clock: clock.clone(),
        ..guild_net::EngineConfig::default()
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn an_admin_token_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(files::TOKEN);
        std::fs::write(&path, "a".repeat(64)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_token(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("admin token") && err.contains("chmod 600"),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_token(dir.path()).unwrap(), "a".repeat(64));
    }
}
