//! The builders' feed over real sockets: a node's API served on loopback with a feed hub over
//! a memory store, events published into it, builders logging in with their keys and
//! subscribing with a stock WebSocket client (tokio-tungstenite).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use guild_api::{Clock, FeedConfig, FeedHub, Found, Limits};
use guild_core::Keypair;
use guild_core::syntax::{Datetime, Did};
use guild_feed::{BundleEvent, Event, Frame, RecordRef, Retention, RevocationEvent};
use guild_gov::body::CidRef;
use guild_store::MemoryStore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

#[path = "common/feed_login.rs"]
mod feed_login;
#[path = "common/feed_state.rs"]
mod feed_state;
#[path = "common/sealed.rs"]
mod sealed;
use feed_login::{challenge, login, login_body};
use feed_state::{NODE, feed_state, serve_http};

struct Net {
    rt: tokio::runtime::Runtime,
    url: String,
    hub: Arc<FeedHub<MemoryStore>>,
}

fn cid(s: &str) -> cid::Cid {
    guild_core::cids::cid_for_raw(s.as_bytes())
}

fn start(config: FeedConfig) -> Net {
    start_on(Arc::new(MemoryStore::new()), config)
}

/// A node's API over `store` (a restarted node: the same store again).
fn start_on(store: Arc<MemoryStore>, config: FeedConfig) -> Net {
    start_full(store, config, None)
}

/// A node's API over `store`, serving the sealed bundles `engine` names from `dir` (their
/// CARs at `dir/sealed/<manifest>.car`).
fn start_full(
    store: Arc<MemoryStore>,
    config: FeedConfig,
    sealed: Option<(std::path::PathBuf, sealed::Sealed)>,
) -> Net {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let desk = sealed.map(|(dir, engine)| (dir, Arc::new(engine) as Arc<_>));
    let limits = Limits::default();
    let (state, hub) = feed_state(store, config, desk, &limits);
    let url = rt.block_on(serve_http(state, limits));
    Net { rt, url, hub }
}

fn builder(n: u8) -> (Keypair, Did) {
    let k = Keypair::from_secret_bytes(&[n; 32]);
    let did = Did::parse(&k.did()).unwrap();
    (k, did)
}

/// Agreement `A` is builder 1's, `X` builder 2's.
fn builders() -> BTreeMap<cid::Cid, Did> {
    BTreeMap::from([(cid("A"), builder(1).1), (cid("X"), builder(2).1)])
}

fn bundle(agreement: &str, n: usize) -> (String, Event) {
    (
        format!("bundle:{agreement}{n}"),
        Event::Bundle(BundleEvent {
            collective: None,
            seq: 0,
            time: Datetime::from_unix_micros(0),
            agreement: CidRef(cid(agreement)),
            bundle: CidRef(cid(&format!("{agreement}{n}"))),
            size: 1000 + n as u64,
            records: n as u64,
        }),
    )
}

fn publish(net: &Net, events: Vec<(String, Event)>) {
    net.hub
        .publish(Found {
            events,
            builders: builders(),
        })
        .unwrap();
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn subscribe(url: &str, token: Option<&str>, query: &str) -> Result<Ws, String> {
    let ws = url.replacen("http://", "ws://", 1);
    let mut req = format!("{ws}/xrpc/coop.guild.feed.subscribe{query}")
        .into_client_request()
        .unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
        .map_err(|e| e.to_string())
}

/// The next frame (skipping pings), within a generous deadline.
async fn next(ws: &mut Ws) -> Option<Frame> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a frame within 30 s")?;
        match m.ok()? {
            Message::Binary(b) => return Some(Frame::from_cbor(&b).expect("a valid frame")),
            Message::Text(t) => return Some(Frame::from_json(&t).expect("a valid JSON frame")),
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

/// The `seq`s of a replay, up to `#info ReplayComplete`.
async fn replay(ws: &mut Ws) -> Vec<u64> {
    let mut got = Vec::new();
    loop {
        let f = next(ws).await.unwrap();
        if is_info(&f, "ReplayComplete") {
            return got;
        }
        got.push(seq(&f).unwrap());
    }
}

fn seq(f: &Frame) -> Option<u64> {
    match f {
        Frame::Message(e) => e.seq(),
        Frame::Error { .. } => None,
    }
}

fn is_info(f: &Frame, name: &str) -> bool {
    matches!(f, Frame::Message(Event::Info(i)) if i.name == name)
}

#[test]
fn a_builder_replays_its_own_events_then_follows_live() {
    let net = start(FeedConfig::default());
    // Builder 1's agreement A gets bundles 1..=3, builder 2's X one.
    publish(&net, vec![bundle("A", 1), bundle("X", 1), bundle("A", 2)]);
    publish(&net, vec![bundle("A", 3)]);
    let (k1, _) = builder(1);
    net.rt.block_on(async {
        let t = login(&net.url, &k1).await;
        let mut ws = subscribe(&net.url, Some(&t), "?cursor=0").await.unwrap();
        let got = replay(&mut ws).await;
        // Builder 2's event (seq 2) is not builder 1's to see.
        assert_eq!(got, [1, 3, 4]);
        // From a cursor: only what follows it.
        let mut from = subscribe(&net.url, Some(&t), "?cursor=3").await.unwrap();
        assert_eq!(seq(&next(&mut from).await.unwrap()), Some(4));
        assert!(is_info(&next(&mut from).await.unwrap(), "ReplayComplete"));
        // Live, on both.
        publish(&net, vec![bundle("A", 4), bundle("X", 2)]);
        assert_eq!(seq(&next(&mut ws).await.unwrap()), Some(5));
        assert_eq!(seq(&next(&mut from).await.unwrap()), Some(5));
        // Without a cursor: live only.
        let mut live = subscribe(&net.url, Some(&t), "").await.unwrap();
        assert!(is_info(&next(&mut live).await.unwrap(), "ReplayComplete"));
        publish(&net, vec![bundle("A", 5)]);
        assert_eq!(seq(&next(&mut live).await.unwrap()), Some(7));
        // The JSON variant: text frames of the same events.
        let mut json = subscribe(&net.url, Some(&t), "?cursor=6&encoding=json")
            .await
            .unwrap();
        let first = tokio::time::timeout(Duration::from_secs(30), json.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let Message::Text(text) = first else {
            panic!("{first:?}")
        };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["$type"], "coop.guild.feed.subscribe#bundle");
        assert_eq!(v["seq"], 7);
    });
}

#[test]
fn the_switch_from_replay_to_live_loses_and_repeats_nothing() {
    let net = Arc::new(start(FeedConfig::default()));
    let (k1, _) = builder(1);
    publish(&net, (0..20).map(|n| bundle("A", n)).collect());
    let t = net.rt.block_on(login(&net.url, &k1));
    // Subscribers connect from different cursors while events keep coming.
    let publisher = {
        let net = net.clone();
        std::thread::spawn(move || {
            for n in 20..220 {
                publish(&net, vec![bundle("A", n)]);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    net.rt.block_on(async {
        let mut tasks = Vec::new();
        for cursor in [0u64, 5, 19] {
            let (url, t) = (net.url.clone(), t.clone());
            tasks.push(tokio::spawn(async move {
                let mut ws = subscribe(&url, Some(&t), &format!("?cursor={cursor}"))
                    .await
                    .unwrap();
                let mut got = Vec::new();
                while got.last() != Some(&220) {
                    let f = next(&mut ws).await.unwrap();
                    if let Some(s) = seq(&f) {
                        got.push(s);
                    }
                }
                (cursor, got)
            }));
        }
        for task in tasks {
            let (cursor, got) = task.await.unwrap();
            let want: Vec<u64> = (cursor + 1..=220).collect();
            assert_eq!(got, want, "from cursor {cursor}");
        }
    });
    publisher.join().unwrap();
}

#[test]
fn future_and_outdated_cursors() {
    let net = start(FeedConfig {
        retention: Retention {
            max_age_micros: i64::MAX,
            max_events: 3,
        },
        ..FeedConfig::default()
    });
    publish(&net, (1..=6).map(|n| bundle("A", n)).collect());
    let (k1, _) = builder(1);
    net.rt.block_on(async {
        let t = login(&net.url, &k1).await;
        // Ahead of the stream: an error frame, then the socket closes.
        let mut ws = subscribe(&net.url, Some(&t), "?cursor=99").await.unwrap();
        match next(&mut ws).await.unwrap() {
            Frame::Error { error, message } => {
                assert_eq!(error, "FutureCursor");
                assert!(message.unwrap().contains("99"));
            }
            other => panic!("{other:?}"),
        }
        assert!(next(&mut ws).await.is_none(), "closed after the error");
        // Older than the window (events 1..=3 left it): #info, then the whole window.
        let mut ws = subscribe(&net.url, Some(&t), "?cursor=1").await.unwrap();
        assert!(is_info(&next(&mut ws).await.unwrap(), "OutdatedCursor"));
        let got = replay(&mut ws).await;
        assert_eq!(got, [4, 5, 6]);
    });
}

#[test]
fn strangers_bad_tokens_and_replayed_challenges_are_refused() {
    let net = start(FeedConfig::default());
    publish(&net, vec![bundle("A", 1), bundle("X", 1)]);
    net.rt.block_on(async {
        // No token, a made-up token: refused before the upgrade.
        let e = subscribe(&net.url, None, "?cursor=0").await.unwrap_err();
        assert!(e.contains("401"), "{e}");
        let e = subscribe(&net.url, Some("made-up"), "?cursor=0")
            .await
            .unwrap_err();
        assert!(e.contains("401"), "{e}");
        // Builder 2's token: only builder 2's event.
        let (k2, _) = builder(2);
        let t2 = login(&net.url, &k2).await;
        let mut ws = subscribe(&net.url, Some(&t2), "?cursor=0").await.unwrap();
        assert_eq!(seq(&next(&mut ws).await.unwrap()), Some(2));
        assert!(is_info(&next(&mut ws).await.unwrap(), "ReplayComplete"));
        // A builder with no agreement sees nothing.
        let (k3, _) = builder(3);
        let t3 = login(&net.url, &k3).await;
        let mut ws = subscribe(&net.url, Some(&t3), "?cursor=0").await.unwrap();
        assert!(is_info(&next(&mut ws).await.unwrap(), "ReplayComplete"));
        // A challenge signed twice, or by another key: refused.
        let http = reqwest::Client::new();
        let c = challenge(&net.url).await;
        let (k1, _) = builder(1);
        let body = |key: &Keypair| login_body(&c, &k1.did(), key);
        let login_url = format!("{}/xrpc/coop.guild.feed.login", net.url);
        let forged = http.post(&login_url).json(&body(&k2)).send().await.unwrap();
        assert_eq!(forged.status(), 400);
        let v: serde_json::Value = forged.json().await.unwrap();
        assert_eq!(v["error"], "InvalidChallenge");
        // (the forged attempt used the challenge up: the genuine signature is now a replay)
        let replayed = http.post(&login_url).json(&body(&k1)).send().await.unwrap();
        assert_eq!(replayed.status(), 400);
    });
}

#[test]
fn a_stalled_subscriber_is_dropped_while_others_keep_receiving() {
    let net = start(FeedConfig {
        queue: 4,
        ..FeedConfig::default()
    });
    let (k1, _) = builder(1);
    // Large events (5,000 records each), so that a subscriber that stops reading fills the
    // socket's buffers after a few.
    let big = |n: usize| {
        let (_, did) = builder(7);
        (
            format!("revocation:{n}"),
            Event::Revocation(RevocationEvent {
                collective: None,
                seq: 0,
                time: Datetime::from_unix_micros(0),
                agreement: CidRef(cid("A")),
                member: did.clone(),
                revoke: CidRef(cid(&format!("r{n}"))),
                effective_from: Datetime::from_unix_micros(0),
                records: (0..5000)
                    .map(|i| RecordRef {
                        uri: format!("at://{did}/coop.guild.data.text/{n}-{i}"),
                        cid: CidRef(cid(&format!("{n}-{i}"))),
                    })
                    .collect(),
                duty: "delete-records".into(),
            }),
        )
    };
    net.rt.block_on(async {
        let t = login(&net.url, &k1).await;
        let mut stalled = subscribe(&net.url, Some(&t), "").await.unwrap();
        let mut reader = subscribe(&net.url, Some(&t), "").await.unwrap();
        assert!(is_info(
            &next(&mut stalled).await.unwrap(),
            "ReplayComplete"
        ));
        assert!(is_info(&next(&mut reader).await.unwrap(), "ReplayComplete"));
        let mut sent = 0u64;
        // Publish one at a time; the reader takes each; the stalled one reads nothing.
        let deadline = Instant::now() + Duration::from_secs(120);
        while net.hub.subscribers() == 2 {
            assert!(
                Instant::now() < deadline,
                "the stalled subscriber was never dropped"
            );
            sent += 1;
            publish(&net, vec![big(sent as usize)]);
            assert_eq!(seq(&next(&mut reader).await.unwrap()), Some(sent));
        }
        // The reader keeps receiving.
        publish(&net, vec![big(10_000)]);
        assert_eq!(seq(&next(&mut reader).await.unwrap()), Some(sent + 1));
        // The stalled one, once it reads: what was queued, then ConsumerTooSlow, then the end.
        let mut last = None;
        loop {
            match next(&mut stalled).await {
                Some(Frame::Error { error, .. }) => {
                    assert_eq!(error, "ConsumerTooSlow");
                    break;
                }
                Some(f) => last = seq(&f),
                None => panic!("closed without ConsumerTooSlow (last seq {last:?})"),
            }
        }
        assert!(last.is_some_and(|l| l < sent), "{last:?} of {sent}");
        let _ = stalled.close(None).await;
    });
}

#[test]
fn logins_are_rate_limited_per_address() {
    let net = start(FeedConfig {
        requests_per_minute: 3,
        ..FeedConfig::default()
    });
    net.rt.block_on(async {
        let http = reqwest::Client::new();
        let url = format!("{}/xrpc/coop.guild.feed.getChallenge", net.url);
        for _ in 0..3 {
            assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
        }
        let refused = http.get(&url).send().await.unwrap();
        assert_eq!(refused.status(), 429);
        let wait: u64 = refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=20).contains(&wait), "{wait}");
        let v: serde_json::Value = refused.json().await.unwrap();
        assert_eq!(v["error"], "RateLimitExceeded");
    });
}

#[test]
fn a_subscriber_resumes_across_a_server_restart_with_nothing_lost_or_twice() {
    let store = Arc::new(MemoryStore::new());
    let (k1, _) = builder(1);
    let net = start_on(store.clone(), FeedConfig::default());
    publish(&net, vec![bundle("A", 1), bundle("A", 2), bundle("A", 3)]);
    // The subscriber handles two events, then the node goes away.
    let cursor = net.rt.block_on(async {
        let t = login(&net.url, &k1).await;
        let mut ws = subscribe(&net.url, Some(&t), "?cursor=0").await.unwrap();
        let a = seq(&next(&mut ws).await.unwrap()).unwrap();
        let b = seq(&next(&mut ws).await.unwrap()).unwrap();
        assert_eq!((a, b), (1, 2));
        b
    });
    drop(net);
    // Restarted on the same store: the state derives bundle 3 again (no new event) and two
    // new ones; the subscriber logs in again and resumes from its cursor.
    let net = start_on(store, FeedConfig::default());
    publish(&net, vec![bundle("A", 3), bundle("A", 4), bundle("A", 5)]);
    net.rt.block_on(async {
        let t = login(&net.url, &k1).await;
        let mut ws = subscribe(&net.url, Some(&t), &format!("?cursor={cursor}"))
            .await
            .unwrap();
        assert_eq!(replay(&mut ws).await, [3, 4, 5]);
    });
}

#[test]
fn the_log_survives_a_restart_and_derives_nothing_twice() {
    let store = Arc::new(MemoryStore::new());
    let open =
        || FeedHub::open(store.clone(), Clock::system(), NODE, FeedConfig::default()).unwrap();
    let hub = open();
    let found = |events| Found {
        events,
        builders: builders(),
    };
    assert_eq!(
        hub.publish(found(vec![bundle("A", 1), bundle("A", 2)]))
            .unwrap(),
        2
    );
    drop(hub);
    let hub = open();
    assert_eq!(hub.last_seq(), 2);
    assert_eq!(
        hub.publish(found(vec![bundle("A", 2), bundle("A", 3)]))
            .unwrap(),
        1
    );
    assert_eq!(hub.last_seq(), 3);
    let seqs: Vec<_> = hub.events().iter().filter_map(Event::seq).collect();
    assert_eq!(seqs, [1, 2, 3]);
}

/// The Python AT Protocol SDK's interpreter: `GUILD_ATPROTO_PYTHON` (set by `.ci/run`, which
/// installs `scripts/atclient/requirements.txt` into a venv), or `None` with the reason.
fn atproto_python() -> Result<String, String> {
    match std::env::var("GUILD_ATPROTO_PYTHON") {
        Ok(p) if !p.is_empty() => Ok(p),
        _ => Err(
            "GUILD_ATPROTO_PYTHON is not set (.ci/run installs the Python atproto SDK \
                  into target/atclient-venv and sets it)"
                .into(),
        ),
    }
}

#[test]
fn a_stock_at_client_reads_the_feed() {
    let python = match atproto_python() {
        Ok(p) => p,
        Err(why) if std::env::var_os("GUILD_REQUIRE_ATPROTO").is_none() => {
            eprintln!("skipped: {why}");
            return;
        }
        Err(why) => panic!("GUILD_REQUIRE_ATPROTO=1: {why}"),
    };
    let net = start(FeedConfig::default());
    publish(&net, vec![bundle("A", 1), bundle("X", 1), bundle("A", 2)]);
    let (k1, _) = builder(1);
    let token = net.rt.block_on(login(&net.url, &k1));
    let base = format!("{}/xrpc", net.url.replacen("http://", "ws://", 1));
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/atclient/read_feed.py"
    );
    let out = std::process::Command::new(&python)
        .args([script, &base, &token, "0"])
        .output()
        .expect("runs the Python client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<(String, Option<u64>)> = lines
        .iter()
        .map(|l| (l["t"].as_str().unwrap_or("?").to_owned(), l["seq"].as_u64()))
        .collect();
    assert_eq!(
        got,
        [
            ("#bundle".to_owned(), Some(1)),
            ("#bundle".to_owned(), Some(3)),
            ("#info".to_owned(), None),
        ],
        "{lines:?}"
    );
    assert_eq!(lines[0]["body"]["bundle"], cid("A1").to_string());
    assert_eq!(lines[0]["body"]["records"], 1);
    // Its error frames too: a cursor ahead of the stream.
    let out = std::process::Command::new(&python)
        .args([script, &base, &token, "99"])
        .output()
        .expect("runs the Python client");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FutureCursor"), "{text}");
}

/// The delivery log's entries, through the admin method.
async fn deliveries(url: &str, query: &str) -> Vec<serde_json::Value> {
    let resp = reqwest::Client::new()
        .get(format!("{url}/xrpc/coop.guild.feed.listDeliveries{query}"))
        .bearer_auth("admin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    v["deliveries"].as_array().unwrap().clone()
}

/// Polls the delivery log (written off the request path) until `done` holds.
async fn deliveries_until(
    url: &str,
    query: &str,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = deliveries(url, query).await;
        if done(&got) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "the delivery log still holds {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn a_bundles_forms_are_served_to_its_builder_beside_the_car() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = cid("A1");
    std::fs::create_dir_all(dir.path().join("sealed")).unwrap();
    std::fs::write(dir.path().join(format!("sealed/{manifest}.car")), b"car").unwrap();
    let croissant = br#"{"@type": "sc:Dataset"}"#;
    std::fs::write(
        dir.path().join(format!("sealed/{manifest}.croissant.json")),
        croissant,
    )
    .unwrap();
    let engine = sealed::Sealed {
        collective: cid("collective"),
        bundles: vec![(manifest, cid("A"))],
    };
    let net = start_full(
        Arc::new(MemoryStore::new()),
        FeedConfig::default(),
        Some((dir.path().to_owned(), engine)),
    );
    publish(&net, vec![bundle("A", 1)]);
    let (k1, _) = builder(1);
    let (k2, _) = builder(2);
    let get = |token: String, file: &'static str| {
        let url = net.url.clone();
        async move {
            let resp = reqwest::Client::new()
                .get(format!("{url}/xrpc/coop.guild.bundle.get"))
                .query(&[("cid", manifest.to_string()), ("file", file.to_owned())])
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            (status, headers, resp.bytes().await.unwrap())
        }
    };
    net.rt.block_on(async {
        let t1 = login(&net.url, &k1).await;
        let t2 = login(&net.url, &k2).await;
        let (status, headers, body) = get(t1.clone(), "croissant").await;
        assert_eq!((status, &body[..]), (200, &croissant[..]));
        assert_eq!(headers["content-type"], "application/ld+json");
        assert_eq!(
            headers["etag"],
            format!("\"{manifest}-croissant\"").as_str()
        );
        let (status, headers, body) = get(t1.clone(), "car").await;
        assert_eq!((status, &body[..]), (200, &b"car"[..]));
        assert_eq!(headers["content-type"], "application/vnd.ipld.car");
        // Another builder is refused the forms as the CAR.
        let (status, _, _) = get(t2, "croissant").await;
        assert_eq!(status, 403);
        // A form the node did not write, and a file that is not one.
        let (status, _, body) = get(t1.clone(), "card").await;
        assert_eq!(status, 500, "{}", String::from_utf8_lossy(&body));
        assert!(String::from_utf8_lossy(&body).contains("without its card file"));
        let (status, _, body) = get(t1.clone(), "keys").await;
        assert_eq!(status, 400);
        assert!(String::from_utf8_lossy(&body).contains("not one of car, croissant"));
        // The form's download is a delivery, with its file.
        let got = deliveries_until(&net.url, "", |got| {
            got.iter().any(|e| e["file"] == "croissant")
        })
        .await;
        let form = got.iter().find(|e| e["file"] == "croissant").unwrap();
        assert_eq!(
            (form["status"].as_u64(), form["complete"].as_bool()),
            (Some(200), Some(true))
        );
    });
}

#[test]
fn the_delivery_log_lists_what_each_builder_downloaded_and_was_sent() {
    let dir = tempfile::tempdir().unwrap();
    // Bundle A1 is sealed under builder 1's agreement A; its CAR is 5,000 bytes.
    let manifest = cid("A1");
    let car: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    std::fs::create_dir_all(dir.path().join("sealed")).unwrap();
    std::fs::write(dir.path().join(format!("sealed/{manifest}.car")), &car).unwrap();
    let engine = || sealed::Sealed {
        collective: cid("collective"),
        bundles: vec![(manifest, cid("A"))],
    };
    let store = Arc::new(MemoryStore::new());
    let net = start_full(
        store.clone(),
        FeedConfig::default(),
        Some((dir.path().to_owned(), engine())),
    );
    publish(&net, vec![bundle("A", 1), bundle("X", 1)]);
    let (k1, d1) = builder(1);
    let (k2, d2) = builder(2);
    let get = |url: String, token: String, range: Option<&'static str>| async move {
        let mut req = reqwest::Client::new()
            .get(format!("{url}/xrpc/coop.guild.bundle.get"))
            .query(&[("cid", manifest.to_string())])
            .bearer_auth(token);
        if let Some(r) = range {
            req = req.header("range", r);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.bytes().await.unwrap())
    };
    net.rt.block_on(async {
        let t1 = login(&net.url, &k1).await;
        let t2 = login(&net.url, &k2).await;
        // Builder 1: the whole CAR, then a resumed range.
        let (status, body) = get(net.url.clone(), t1.clone(), None).await;
        assert_eq!((status, body.len()), (200, 5000));
        let (status, body) = get(net.url.clone(), t1.clone(), Some("bytes=4000-")).await;
        assert_eq!((status, &body[..]), (206, &car[4000..]));
        // Builder 2 is not the builder of A: refused, and not a delivery.
        let (status, _) = get(net.url.clone(), t2.clone(), None).await;
        assert_eq!(status, 403);
        // Builder 1's feed: the #bundle event of A1 (seq 1), not X1's (seq 2).
        let mut ws = subscribe(&net.url, Some(&t1), "?cursor=0").await.unwrap();
        assert_eq!(replay(&mut ws).await, [1]);
        drop(ws);

        let mine = |e: &serde_json::Value| e["builder"] == d1.to_string();
        let got = deliveries_until(&net.url, "", |got| got.len() >= 3).await;
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(got.iter().all(mine), "{got:#?}");
        assert!(got.iter().all(|e| e["builder"] != d2.to_string()));
        assert!(
            got.iter()
                .all(|e| e["remote"].as_str().unwrap().starts_with("127.0.0.1:"))
        );
        let downloads: Vec<_> = got.iter().filter(|e| e["kind"] == "download").collect();
        assert_eq!(downloads.len(), 2, "{got:#?}");
        let full = downloads.iter().find(|e| e["status"] == 200).unwrap();
        assert_eq!(full["bundle"], manifest.to_string());
        assert_eq!(full["file"], "car");
        assert_eq!(full["bytes"], 5000);
        assert_eq!(full["complete"], true);
        assert!(full.get("range").is_none());
        let part = downloads.iter().find(|e| e["status"] == 206).unwrap();
        assert_eq!(part["range"], "bytes=4000-");
        assert_eq!(part["bytes"], 1000);
        assert_eq!(part["complete"], true);
        let event = got.iter().find(|e| e["kind"] == "event").unwrap();
        assert_eq!(event["eventSeq"], 1);
        assert_eq!(event["eventType"], "#bundle");
        assert_eq!(event["bundle"], manifest.to_string());
        // Filters: by builder, by bundle; paging with a cursor.
        let q = format!("?builder={}", d2);
        assert!(deliveries(&net.url, &q).await.is_empty());
        let q = format!("?bundle={manifest}&limit=2");
        let resp: serde_json::Value = reqwest::Client::new()
            .get(format!(
                "{}/xrpc/coop.guild.feed.listDeliveries{q}",
                net.url
            ))
            .bearer_auth("admin")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(resp["deliveries"].as_array().unwrap().len(), 2);
        let cursor = resp["cursor"].as_str().unwrap();
        let rest = deliveries(&net.url, &format!("?bundle={manifest}&cursor={cursor}")).await;
        assert_eq!(rest.len(), 1);
        // The admin method needs the admin token: a builder's bearer token is not it.
        let resp = reqwest::Client::new()
            .get(format!("{}/xrpc/coop.guild.feed.listDeliveries", net.url))
            .bearer_auth(&t1)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    });
    // A restarted node (the same store) still lists them, and numbers on after them.
    drop(net);
    let net = start_full(
        store,
        FeedConfig::default(),
        Some((dir.path().to_owned(), engine())),
    );
    net.rt.block_on(async {
        let got = deliveries(&net.url, "").await;
        assert_eq!(got.len(), 3, "{got:#?}");
        // (the restarted node learns the agreements' builders again from its state)
        publish(&net, Vec::new());
        let t1 = login(&net.url, &k1).await;
        let (status, _) = get(net.url.clone(), t1, Some("bytes=0-9")).await;
        assert_eq!(status, 206);
        let got = deliveries_until(&net.url, "", |got| got.len() >= 4).await;
        let seqs: Vec<u64> = got.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, [1, 2, 3, 4]);
        assert_eq!(got[3]["bytes"], 10);
    });
}

#[test]
fn the_delivery_log_forgets_entries_past_its_retention() {
    use guild_service::{Delivered, Delivery, DeliveryLog};
    let store = Arc::new(MemoryStore::new());
    let log = DeliveryLog::open(store.clone(), 1_000).unwrap();
    let entry = |t: i64| Delivery {
        version: 0,
        seq: 0,
        builder: builder(1).1.to_string(),
        time_micros: t,
        remote: None,
        what: Delivered::Event {
            event_seq: 1,
            event_type: "#bundle".into(),
            bundle: None,
            connection: 1,
        },
    };
    log.append(vec![entry(0), entry(10)], 10).unwrap();
    log.append(vec![entry(2_000)], 2_000).unwrap();
    let page = log
        .list(&Default::default(), None, 100, usize::MAX)
        .unwrap();
    let kept: Vec<(u64, i64)> = page
        .deliveries
        .iter()
        .map(|d| (d.seq, d.time_micros))
        .collect();
    // Entries 1 and 2 are older than 1 ms at 2 ms; entry 3 is new. Reopened, it counts on.
    assert_eq!(kept, [(3, 2_000)]);
    let log = DeliveryLog::open(store, 1_000).unwrap();
    log.append(vec![entry(2_001)], 2_001).unwrap();
    let page = log
        .list(&Default::default(), None, 100, usize::MAX)
        .unwrap();
    assert_eq!(page.deliveries.last().unwrap().seq, 4);
    assert_eq!(page.deliveries.last().unwrap().version, 1);
}
