//! Builders' feed figures (BENCHMARKS.md), a bench binary rather than criterion: one steward
//! node's API (the real router and server, a feed hub over a memory store) in a child
//! process, and in this process N WebSocket subscribers on loopback.
//!
//! - latency of one event to all N subscribers: the parent asks the child (over its stdin) to
//!   publish one event, and times until every subscriber has decoded it; p50/p99/max over
//!   every (event, subscriber) pair;
//! - the server's memory per subscriber: the child's RSS with N subscribers minus before, / N;
//! - download throughput of `coop.guild.bundle.get`'s transfer path
//!   (`guild_api::feeds::serve_bundle_file`, the handler's code after authorisation) on a
//!   bundle file, read whole by an HTTP client, and a resumed download (a range request).
//!
//! `cargo bench -p guild-api --bench feed` (GUILD_BENCH_SUBSCRIBERS, default 1000;
//! GUILD_BENCH_EVENTS, default 50; GUILD_BENCH_CAR: the file to download, default the 1 M
//! record bundle of the bundle bench if present, else a 512 MiB file written for the run).

use std::io::{BufRead as _, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use guild_api::{FeedConfig, Found, Limits, router};
use guild_core::Keypair;
use guild_core::syntax::{Datetime, Did};
use guild_feed::{BundleEvent, Event, Frame};
use guild_gov::body::CidRef;
use guild_store::MemoryStore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

#[path = "../tests/common/feed_login.rs"]
mod feed_login;
#[path = "../tests/common/feed_state.rs"]
mod feed_state;
use feed_state::feed_state;

fn cid(s: &str) -> cid::Cid {
    guild_core::cids::cid_for_raw(s.as_bytes())
}

fn builder() -> Keypair {
    Keypair::from_secret_bytes(&[1; 32])
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The child: serves the API, prints its URL, publishes one event per stdin line.
fn serve(car: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = FeedConfig {
        requests_per_minute: 1_000_000,
        queue: 1024,
        ..FeedConfig::default()
    };
    let limits = Limits {
        max_connections: 4096,
        ..Limits::default()
    };
    let (state, hub) = feed_state(Arc::new(MemoryStore::new()), config, None, &limits);
    let car = std::path::PathBuf::from(car);
    let app = router(state).route(
        "/bench/car",
        axum::routing::get(move |req: axum::extract::Request| {
            let car = car.clone();
            async move {
                guild_api::feeds::serve_bundle_file(&car, &cid("bench"), req)
                    .await
                    .map_err(axum::response::IntoResponse::into_response)
            }
        }),
    );
    let url = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            guild_api::serve(listener, app, &limits, std::future::pending()).await
        });
        url
    });
    println!("{url}");
    std::io::stdout().flush().unwrap();
    let did = Did::parse(&builder().did()).unwrap();
    let mut n = 0u64;
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
        n += 1;
        let e = Event::Bundle(BundleEvent {
            collective: None,
            seq: 0,
            time: Datetime::from_unix_micros(0),
            agreement: CidRef(cid("A")),
            bundle: CidRef(cid(&format!("b{n}"))),
            size: n,
            records: n,
        });
        hub.publish(Found {
            events: vec![(format!("bundle:{n}"), e)],
            builders: [(cid("A"), did.clone())].into(),
        })
        .unwrap();
    }
}

/// Reads a download's body to the end; its length.
async fn drain(mut resp: reqwest::Response) -> u64 {
    let mut got = 0u64;
    while let Some(c) = resp.chunk().await.unwrap() {
        got += c.len() as u64;
    }
    got
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        serve(&args[i + 1]);
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let n: usize = std::env::var("GUILD_BENCH_SUBSCRIBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let events: u64 = std::env::var("GUILD_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let default_car = root.join("target/bundle-bench/100x10000/bundle.car");
    let car = match std::env::var("GUILD_BENCH_CAR") {
        Ok(p) => std::path::PathBuf::from(p),
        Err(_) if default_car.is_file() => default_car,
        Err(_) => {
            let p = root.join("target/feed-bench.car");
            if std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0) != 512 << 20 {
                let mut f = std::fs::File::create(&p).unwrap();
                let mut x = 0x9e37_79b9_7f4a_7c15u64;
                let mut buf = vec![0u8; 1 << 20];
                for _ in 0..512 {
                    for b in buf.chunks_mut(8) {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
                    }
                    f.write_all(&buf).unwrap();
                }
            }
            p
        }
    };
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--serve", &car.to_string_lossy()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut url = String::new();
    stdout.read_line(&mut url).unwrap();
    let url = url.trim().to_owned();
    let mut stdin = child.stdin.take().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("feed bench: {n} subscribers, {events} events, server pid {pid} at {url}");

    let token = rt.block_on(feed_login::login(&url, &builder()));
    let before = rss_kib(pid);
    // Every subscriber decodes each frame and reports (event seq, when) on a channel.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let connect_started = Instant::now();
    rt.block_on(async {
        for _ in 0..n {
            let ws_url = format!(
                "{}/xrpc/coop.guild.feed.subscribe",
                url.replacen("http://", "ws://", 1)
            );
            let mut req = ws_url.into_client_request().unwrap();
            req.headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
            let (tx, ready) = (tx.clone(), ready_tx.clone());
            tokio::spawn(async move {
                while let Some(Ok(m)) = ws.next().await {
                    let Message::Binary(b) = m else { continue };
                    match Frame::from_cbor(&b) {
                        Ok(Frame::Message(Event::Info(_))) => {
                            let _ = ready.send(());
                        }
                        Ok(Frame::Message(e)) => {
                            let _ = tx.send((e.seq().unwrap_or(0), Instant::now()));
                        }
                        _ => break,
                    }
                }
            });
        }
        for _ in 0..n {
            ready_rx.recv().await.unwrap();
        }
    });
    let connected = connect_started.elapsed();
    let after = rss_kib(pid);
    let mut latencies = Vec::with_capacity(n * events as usize);
    let mut all = Vec::new();
    for seq in 1..=events {
        let t0 = Instant::now();
        writeln!(stdin, "publish").unwrap();
        stdin.flush().unwrap();
        let mut got = 0;
        rt.block_on(async {
            while got < n {
                let (s, at) = rx.recv().await.unwrap();
                assert_eq!(s, seq, "events arrive in order");
                latencies.push(at - t0);
                got += 1;
            }
        });
        all.push(t0.elapsed());
    }
    latencies.sort();
    all.sort();
    println!(
        "  {n} subscribers connected and caught up in {:.2} s",
        connected.as_secs_f64()
    );
    println!(
        "  one event to all {n}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (per subscriber); last subscriber: p50 {:.1} ms, p99 {:.1} ms",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
        percentile(&all, 0.5).as_secs_f64() * 1e3,
        percentile(&all, 0.99).as_secs_f64() * 1e3,
    );
    println!(
        "  server RSS {} KiB before, {} KiB with {n} subscribers: {:.1} KiB per subscriber",
        before,
        after,
        (after.saturating_sub(before)) as f64 / n as f64
    );

    // Downloads: the whole file, three times, then a resumed one.
    let size = std::fs::metadata(&car).unwrap().len();
    let http = reqwest::Client::new();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let got = rt.block_on(async {
            let resp = http.get(format!("{url}/bench/car")).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            drain(resp).await
        });
        assert_eq!(got, size);
        best = best.min(t.elapsed().as_secs_f64());
    }
    let half = size / 2;
    let resumed = rt.block_on(async {
        let resp = http
            .get(format!("{url}/bench/car"))
            .header("range", format!("bytes={half}-"))
            .header("if-range", format!("\"{}\"", cid("bench")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 206);
        drain(resp).await
    });
    assert_eq!(resumed, size - half);
    println!(
        "  download of {} ({:.0} MB): best of 3 {:.2} s = {:.0} MB/s; a range request from the middle returned the other {:.0} MB",
        car.display(),
        size as f64 / 1e6,
        best,
        size as f64 / 1e6 / best,
        resumed as f64 / 1e6
    );
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
}
