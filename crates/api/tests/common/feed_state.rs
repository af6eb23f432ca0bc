//! The API state the feed tests serve: a repository service and a feed hub over one store,
//! on the system clock, with a steward's bundle desk over `dir` when an engine is given.
//! Shared by `tests/feeds.rs`, `tests/tls.rs`, `benches/feed.rs` and `node/tests/feed_client.rs`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use guild_api::{ApiState, Bodies, Clock, FeedConfig, FeedHub, Limits, RepoService, router};
use guild_core::Keypair;
use guild_lexicon::Registry;
use guild_service::CollectiveEngine;
use guild_store::MemoryStore;

/// The node's DID: the audience of its login challenges.
pub const NODE: &str = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK";

/// The state, and its feed hub.
pub fn feed_state(
    store: Arc<MemoryStore>,
    config: FeedConfig,
    desk: Option<(PathBuf, Arc<dyn CollectiveEngine>)>,
    limits: &Limits,
) -> (Arc<ApiState<MemoryStore>>, Arc<FeedHub<MemoryStore>>) {
    let clock = Clock::system();
    let service = Arc::new(
        RepoService::new(
            store.clone(),
            Keypair::from_secret_bytes(&[9; 32]),
            Arc::new(Registry::builtin()),
        )
        .unwrap()
        .with_clock(clock.clone()),
    );
    let hub = Arc::new(FeedHub::open(store, clock.clone(), NODE, config).unwrap());
    let bundles = desk.map(|(dir, engine)| {
        Arc::new(guild_service::Stewardship::new(service.clone(), engine, dir).unwrap())
    });
    let state = Arc::new(ApiState {
        service,
        admin_token: "admin".into(),
        bodies: Bodies::new(limits),
        started: Instant::now(),
        clock,
        collectives: None,
        bundles,
        feeds: Some(hub.clone()),
    });
    (state, hub)
}

/// Serves `state`'s admin router over plain HTTP on a free loopback port; its URL.
pub async fn serve_http(state: Arc<ApiState<MemoryStore>>, limits: Limits) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        guild_api::serve(listener, router(state), &limits, std::future::pending()).await
    });
    url
}
