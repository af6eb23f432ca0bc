//! Node benchmarks, against the real `guild` binary on loopback:
//! - time from start to serving, and idle RSS;
//! - durable single-record create over HTTP (`com.atproto.repo.createRecord`), p50/p99;
//! - bulk import throughput of small records with `guild import` (default 1 M records;
//!   `GUILD_BENCH_IMPORT=N` to change).
//!
//! Run: `cargo bench -p guild-node --bench node` (figures in BENCHMARKS.md). The binary must be
//! built in release mode first (`cargo build --release -p guild-node`); the bench uses
//! `target/release/guild`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn guild() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin = root.join("target/release/guild");
    assert!(
        bin.exists(),
        "build the release binary first: cargo build --release -p guild-node"
    );
    bin
}

struct Node {
    child: Child,
    url: String,
    token: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path) -> (Node, Duration) {
    let _ = std::fs::remove_file(dir.join("node.addr"));
    let t0 = Instant::now();
    let child = Command::new(guild())
        .args(["node", "--data-dir"])
        .arg(dir)
        .args(["--listen", "127.0.0.1:0"])
        .env("GUILD_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .expect("start guild node");
    let addr = dir.join("node.addr");
    let url = loop {
        if let Ok(s) = std::fs::read_to_string(&addr)
            && s.ends_with('\n')
        {
            break s.trim().to_string();
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "node did not start");
        std::thread::sleep(Duration::from_micros(200));
    };
    let ready = t0.elapsed();
    let token = std::fs::read_to_string(dir.join("admin-token"))
        .unwrap()
        .trim()
        .to_string();
    (Node { child, url, token }, ready)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    // `cargo bench` passes --bench; ignore arguments.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let out = Command::new(guild())
        .args(["init", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let did = String::from_utf8(out.stdout).unwrap().trim().to_string();

    // Start to serving, median of 5 starts.
    let mut readies = Vec::new();
    for _ in 0..5 {
        let (node, ready) = start(&data);
        readies.push(ready);
        drop(node);
    }
    readies.sort();
    let (node, _) = start(&data);
    std::thread::sleep(Duration::from_secs(2));
    let idle_rss = rss_kib(node.child.id());
    println!(
        "start to serving: median {:.1} ms (of 5: {:?})",
        percentile(&readies, 0.5).as_secs_f64() * 1e3,
        readies
            .iter()
            .map(|d| format!("{:.1}", d.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
    );
    println!("idle RSS: {:.1} MB", idle_rss as f64 / 1024.0);

    // Durable single-record creates over HTTP, one client, sequential.
    let http = reqwest::blocking::Client::new();
    let url = format!("{}/xrpc/com.atproto.repo.createRecord", node.url);
    let n = 2000;
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let body = serde_json::json!({
            "repo": did,
            "collection": "coop.guild.data.text",
            "record": {
                "$type": "coop.guild.data.text",
                "title": format!("bench {i}"),
                "body": "A short work, about a hundred bytes long, to measure the write path.",
                "createdAt": "2026-11-27T10:00:00.000Z",
            }
        });
        let t = Instant::now();
        let resp = http
            .post(&url)
            .bearer_auth(&node.token)
            .json(&body)
            .send()
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.text().unwrap());
        let _ = resp.bytes();
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "createRecord over HTTP (durable), {n} sequential: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3
    );

    // Bulk import of small records through `guild import`.
    let count: usize = std::env::var("GUILD_BENCH_IMPORT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let jsonl = dir.path().join("small.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&jsonl).unwrap());
        for i in 0..count {
            writeln!(
                f,
                r#"{{"collection":"coop.guild.data.text","record":{{"$type":"coop.guild.data.text","title":"t{i}","body":"small record number {i}","createdAt":"2026-11-27T10:00:00.000Z"}}}}"#
            )
            .unwrap();
        }
    }
    let t = Instant::now();
    let out = Command::new(guild())
        .args(["import", "--data-dir"])
        .arg(&data)
        .arg(&jsonl)
        .output()
        .unwrap();
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "guild import of {count} small records: {:.1} s, {:.0} records/s (node RSS after: {:.0} MB)",
        took.as_secs_f64(),
        count as f64 / took.as_secs_f64(),
        rss_kib(node.child.id()) as f64 / 1024.0
    );
}
