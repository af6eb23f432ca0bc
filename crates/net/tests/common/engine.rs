//! Collectives engines over in-process nodes (memory transport), shared by the engine tests.

use std::sync::Arc;
use std::time::Duration;

use guild_core::{Cid, Keypair};
use guild_gov::DriverConfig;
use guild_net::{Engine, EngineConfig, Multiaddr, Net, NetConfig, NetHandle};
use guild_store::MemoryStore;

/// A member's node: its key, swarm, engine and store.
pub struct Member {
    pub key: Keypair,
    pub net: NetHandle,
    pub engine: Engine,
    pub store: Arc<MemoryStore>,
}

/// Fast timers: anti-entropy every second, ticks every 50 ms.
pub fn engine_config() -> EngineConfig {
    EngineConfig {
        driver: DriverConfig {
            sync_interval_micros: 1_000_000,
            sync_jitter_micros: 500_000,
            request_timeout_micros: 1_000_000,
            ..DriverConfig::default()
        },
        tick: Duration::from_millis(50),
        join_timeout: Duration::from_secs(10),
        ..EngineConfig::default()
    }
}

/// The member of key `[n; 32]`, with `store` and `config`.
pub async fn member_on(n: u8, store: Arc<MemoryStore>, config: EngineConfig) -> Member {
    let key = Keypair::from_secret_bytes(&[n; 32]);
    let (net, events) = Net::spawn(&key, NetConfig::memory()).unwrap();
    let engine = Engine::spawn(key.clone(), net.clone(), events, store.clone(), config)
        .await
        .unwrap();
    Member {
        key,
        net,
        engine,
        store,
    }
}

/// The node's first listen address, with `/p2p/<peer id>`.
pub async fn addr(m: &Member) -> Multiaddr {
    let a = m.net.listen_addrs().await.unwrap();
    a[0].clone()
        .with(guild_net::multiaddr::Protocol::P2p(m.net.peer_id()))
}

/// The members of a collective as `m` sees it (none if it holds no such collective).
pub async fn members_of(m: &Member, c: &Cid) -> Vec<String> {
    match m.engine.status(*c).await {
        Ok(s) => s.state.members.keys().map(|d| d.to_string()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Whether `a` and `b` are connected.
pub async fn connected(a: &Member, b: &Member) -> bool {
    a.net
        .peers()
        .await
        .is_ok_and(|ps| ps.iter().any(|p| p.peer == b.net.peer_id()))
}
