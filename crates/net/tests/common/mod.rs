//! Nodes in one process, and waits that always time out.
#![allow(dead_code)] // each test file uses part of this

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use guild_core::Keypair;
use guild_net::multiaddr::Protocol;
use guild_net::{Multiaddr, Net, NetConfig, NetEvent, NetHandle, PeerId};
use tokio::sync::mpsc;

pub mod engine;

/// The longest any single wait may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// One running node and its events.
pub struct Node {
    pub key: Keypair,
    pub handle: NetHandle,
    events: mpsc::Receiver<NetEvent>,
    /// Events received but not yet matched by a wait.
    backlog: VecDeque<NetEvent>,
    /// The first listen address, with `/p2p/<peer id>`.
    pub addr: Multiaddr,
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("GUILD_TEST_LOG"))
        .with_test_writer()
        .try_init();
}

impl Node {
    /// Spawns a node and waits until it listens.
    pub async fn spawn(config: NetConfig) -> Node {
        init_tracing();
        let key = Keypair::generate().unwrap();
        let (handle, events) = Net::spawn(&key, config).unwrap();
        let mut node = Node {
            key,
            handle,
            events,
            backlog: VecDeque::new(),
            addr: Multiaddr::empty(),
        };
        let listen = node
            .wait("listening", |e| match e {
                NetEvent::Listening(a) => Some(a.clone()),
                _ => None,
            })
            .await;
        node.addr = listen.with(Protocol::P2p(node.peer()));
        node
    }

    pub fn peer(&self) -> PeerId {
        self.handle.peer_id()
    }

    /// Waits for the first event (backlog first) that `f` maps to a value; consumes it and
    /// keeps every other event in the backlog.
    pub async fn wait<T>(&mut self, what: &str, mut f: impl FnMut(&NetEvent) -> Option<T>) -> T {
        if let Some(i) = self.backlog.iter().position(|e| f(e).is_some()) {
            let event = self.backlog.remove(i).unwrap();
            return f(&event).unwrap();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .unwrap_or_else(|| panic!("event channel closed waiting for {what}"));
            if let Some(v) = f(&event) {
                return v;
            }
            self.backlog.push_back(event);
        }
    }

    /// Like [`Node::wait`] but takes the event itself (for events that own a token).
    pub async fn take(&mut self, what: &str, f: impl Fn(&NetEvent) -> bool) -> NetEvent {
        if let Some(i) = self.backlog.iter().position(&f) {
            return self.backlog.remove(i).unwrap();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .unwrap_or_else(|| panic!("event channel closed waiting for {what}"));
            if f(&event) {
                return event;
            }
            self.backlog.push_back(event);
        }
    }

    /// Asserts that no event matching `f` arrives within `within` (and none is in the backlog).
    pub async fn assert_none(
        &mut self,
        what: &str,
        within: Duration,
        f: impl Fn(&NetEvent) -> bool,
    ) {
        assert!(
            !self.backlog.iter().any(&f),
            "unexpected {what}: {:?}",
            self.backlog.iter().find(|e| f(e))
        );
        let deadline = tokio::time::Instant::now() + within;
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            assert!(!f(&event), "unexpected {what}: {event:?}");
            self.backlog.push_back(event);
        }
    }

    /// Waits until `peer` announces its subscription to `topic`.
    pub async fn wait_subscribed(&mut self, peer: PeerId, topic: &str) {
        let what = format!("{peer} subscribing to {topic}");
        self.wait(&what, |e| match e {
            NetEvent::Subscribed { peer: p, topic: t } if *p == peer && t == topic => Some(()),
            _ => None,
        })
        .await
    }

    /// Waits until a connection to `peer` is established.
    pub async fn wait_connected(&mut self, peer: PeerId) {
        self.wait(&format!("{peer} connecting"), |e| match e {
            NetEvent::PeerConnected { peer: p, .. } if *p == peer => Some(()),
            _ => None,
        })
        .await
    }

    /// Waits for a gossip message on any topic; returns (msg id, source, author, data).
    pub async fn next_gossip(&mut self) -> Gossip {
        self.wait("a gossip message", |e| match e {
            NetEvent::Gossip {
                msg_id,
                source,
                author,
                topic,
                data,
            } => Some(Gossip {
                msg_id: msg_id.clone(),
                source: *source,
                author: *author,
                topic: topic.clone(),
                data: data.clone(),
            }),
            _ => None,
        })
        .await
    }

    /// Waits until `peer` is in this node's mesh for `topic` (polling).
    pub async fn wait_mesh(&self, peer: PeerId, topic: &str) {
        eventually(&format!("{peer} in the mesh of {topic}"), || async {
            self.handle.mesh_peers(topic).await.unwrap().contains(&peer)
        })
        .await
    }
}

/// A received gossip message.
#[derive(Debug, Clone)]
pub struct Gossip {
    pub msg_id: guild_net::MsgId,
    pub source: PeerId,
    pub author: Option<PeerId>,
    pub topic: String,
    pub data: Vec<u8>,
}

/// Polls `check` every 20 ms until it holds; panics after [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_within(what, WAIT, check).await;
}

/// Polls `check` every 20 ms until it holds; panics after `within`.
pub async fn eventually_within<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A memory-transport configuration bootstrapping to `peers`.
pub fn memory_config(bootstrap: &[&Node]) -> NetConfig {
    NetConfig {
        bootstrap: bootstrap.iter().map(|n| n.addr.clone()).collect(),
        bootstrap_retry_secs: 1,
        ..NetConfig::memory()
    }
}
