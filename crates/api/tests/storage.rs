//! A store that fails (issue 13, finding 3) at the HTTP surface, without a disk: a
//! fault-injecting wrapper over `MemoryStore` refuses writes and reports itself unavailable,
//! as a `SledStore` does after a full disk. While it does, a write is refused with 503
//! `StorageUnavailable` naming the cause, `_health` answers 503 "degraded", and nothing of the
//! refused write exists; once it heals, writes and health are back without a restart.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use cid::Cid;
use guild_api::{
    ApiState, Bodies, Client, ClientError, Clock, Limits, RepoService, STORAGE_UNAVAILABLE, router,
};
use guild_core::Keypair;
use guild_lexicon::Registry;
use guild_repo::{BlockSource, BlockStore, Bytes, StoreError};
use guild_store::{
    CommitError, IndexOp, KvOp, KvStore, MemoryStore, RepoHead, RepoKey, RepoStore, Tid,
};
use serde_json::json;

const TOKEN: &str = "test-admin-token";

/// A `MemoryStore` whose writes fail while `broken` holds a cause.
#[derive(Default)]
struct Faulty {
    inner: MemoryStore,
    broken: Mutex<Option<String>>,
}

impl Faulty {
    fn check(&self) -> Result<(), StoreError> {
        match &*self.broken.lock().unwrap() {
            Some(cause) => Err(StoreError(format!("sled: commit: {cause}"))),
            None => Ok(()),
        }
    }
}

impl BlockSource for Faulty {
    fn get_block(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        self.inner.get_block(cid)
    }
}

impl BlockStore for Faulty {
    fn put_blocks(&mut self, blocks: Vec<(Cid, Bytes)>) -> Result<(), StoreError> {
        self.check()?;
        self.inner.put_blocks(blocks)
    }
}

impl RepoStore for Faulty {
    fn head(&self, repo: &RepoKey) -> Result<Option<RepoHead>, StoreError> {
        self.inner.head(repo)
    }
    fn repos(&self) -> Result<Vec<(RepoKey, RepoHead)>, StoreError> {
        self.inner.repos()
    }
    fn commit(
        &self,
        repo: &RepoKey,
        expected: Option<&Cid>,
        new_head: &RepoHead,
        blocks: &[(Cid, Bytes)],
        index: &[IndexOp],
    ) -> Result<(), CommitError> {
        self.check()?;
        self.inner.commit(repo, expected, new_head, blocks, index)
    }
    fn index_get(&self, repo: &RepoKey, c: &str, rkey: &str) -> Result<Option<Cid>, StoreError> {
        self.inner.index_get(repo, c, rkey)
    }
    fn index_list(
        &self,
        repo: &RepoKey,
        c: &str,
        cursor: Option<&str>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<(String, Cid)>, StoreError> {
        self.inner.index_list(repo, c, cursor, limit, reverse)
    }
    fn collections(&self, repo: &RepoKey) -> Result<Vec<String>, StoreError> {
        self.inner.collections(repo)
    }
    fn record_count(&self, repo: &RepoKey) -> Result<u64, StoreError> {
        self.inner.record_count(repo)
    }
    fn last_tid(&self) -> Result<Option<Tid>, StoreError> {
        self.inner.last_tid()
    }
    fn set_last_tid(&self, tid: &Tid) -> Result<(), StoreError> {
        self.check()?;
        self.inner.set_last_tid(tid)
    }
    fn unavailable(&self) -> Option<String> {
        self.broken
            .lock()
            .unwrap()
            .as_ref()
            .map(|cause| format!("storage unavailable: the store failed ({cause})"))
    }
}

impl KvStore for Faulty {
    fn kv_get(&self, tree: &str, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        self.inner.kv_get(tree, key)
    }
    fn kv_apply(&self, tree: &str, ops: &[KvOp]) -> Result<(), StoreError> {
        self.check()?;
        self.inner.kv_apply(tree, ops)
    }
    fn kv_stage(&self, tree: &str, ops: &[KvOp]) -> Result<(), StoreError> {
        self.check()?;
        self.inner.kv_stage(tree, ops)
    }
    fn kv_scan(
        &self,
        tree: &str,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Bytes)>, StoreError> {
        self.inner.kv_scan(tree, prefix, after, limit)
    }
}

fn create(client: &Client, did: &str, rkey: &str) -> Result<serde_json::Value, ClientError> {
    client.procedure(
        "com.atproto.repo.createRecord",
        &json!({
            "repo": did,
            "collection": "app.bsky.feed.post",
            "rkey": rkey,
            "record": {"$type": "app.bsky.feed.post", "text": rkey, "createdAt": "2024-01-01T00:00:00Z"},
        }),
    )
}

#[test]
fn a_failed_store_refuses_writes_with_503_and_health_says_so_until_it_heals() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let store = Arc::new(Faulty::default());
    let key = Keypair::from_secret_bytes(&[3; 32]);
    let did = key.did().to_string();
    let service =
        Arc::new(RepoService::new(store.clone(), key, Arc::new(Registry::builtin())).unwrap());
    let state = Arc::new(ApiState {
        service,
        admin_token: TOKEN.into(),
        bodies: Bodies::new(&Limits {
            max_body_bytes: 1_000_000,
            ..Limits::default()
        }),
        started: Instant::now(),
        clock: Clock::system(),
        collectives: None,
        bundles: None,
        feeds: None,
    });
    let url = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        url
    });
    let client = Client::new(url.clone(), Some(TOKEN.into())).unwrap();
    let health = client.query("_health", &[]).unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    create(&client, &did, "before").unwrap();

    *store.broken.lock().unwrap() = Some("No space left on device (os error 28)".into());
    match create(&client, &did, "during") {
        Err(ClientError::Xrpc {
            status,
            error,
            message,
        }) => {
            assert_eq!((status, error.as_str()), (503, STORAGE_UNAVAILABLE));
            assert!(message.contains("No space left on device"), "{message}");
        }
        other => panic!("expected 503 StorageUnavailable, got {other:?}"),
    }
    match client.query("_health", &[]) {
        Err(ClientError::Xrpc { status, error, .. }) => {
            assert_eq!((status, error.as_str()), (503, STORAGE_UNAVAILABLE))
        }
        other => panic!("expected a degraded health, got {other:?}"),
    }
    // An unauthenticated write is still refused for its token first.
    let anon = Client::new(url, None).unwrap();
    match create(&anon, &did, "anon") {
        Err(ClientError::Xrpc { status, .. }) => assert_eq!(status, 401),
        other => panic!("{other:?}"),
    }

    *store.broken.lock().unwrap() = None;
    assert_eq!(client.query("_health", &[]).unwrap()["status"], "ok");
    create(&client, &did, "after").unwrap();
    let get = |rkey: &str| {
        client.query(
            "com.atproto.repo.getRecord",
            &[
                ("repo", did.as_str()),
                ("collection", "app.bsky.feed.post"),
                ("rkey", rkey),
            ],
        )
    };
    get("before").unwrap();
    get("after").unwrap();
    assert!(get("during").is_err(), "a refused write must not exist");
}
