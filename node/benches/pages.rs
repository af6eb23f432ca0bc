//! Web page figures (BENCHMARKS.md): a real `guild node` (release build) holding 10 000
//! records in its collective space and 10 000 commons records (each with its licence) in its
//! public repo; each page fetched over HTTP on loopback, as a browser would (the dashboard
//! with a session from `guild dashboard`'s one-time link), 5 warm-up then 30 timed requests:
//! median, p95 and max time to the last byte, and the page's size.
//!
//! Run: `cargo build --release -p guild-node && cargo bench -p guild-node --bench pages`
//! (`GUILD_BENCH_RECORDS=N` to change the 10 000).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn guild() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/guild");
    assert!(
        bin.exists(),
        "build the release binary first: cargo build --release -p guild-node"
    );
    bin
}

fn run(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(guild())
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("run guild");
    assert!(
        out.status.success(),
        "guild {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let n: usize = std::env::var("GUILD_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let init = Command::new(guild())
        .args(["init", "--data-dir"])
        .arg(&dir)
        .output()
        .expect("guild init");
    assert!(init.status.success());
    let did = String::from_utf8_lossy(&init.stdout).trim().to_owned();
    let token = std::fs::read_to_string(dir.join("admin-token"))
        .expect("token")
        .trim()
        .to_owned();
    let _node = Node(
        Command::new(guild())
            .args(["node", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&dir)
            .env("GUILD_LOG", "warn")
            .env("GUILD_MDNS", "0")
            .env("GUILD_P2P_LISTEN", "/ip4/127.0.0.1/tcp/0")
            .stderr(Stdio::null())
            .spawn()
            .expect("guild node"),
    );
    let t0 = Instant::now();
    let base = loop {
        if let Ok(s) = std::fs::read_to_string(dir.join("node.addr"))
            && s.ends_with('\n')
        {
            break s.trim().to_owned();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the node did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let collective = run(&dir, &["collective", "create", "--name", "Bench"])
        .trim()
        .to_owned();
    run(
        &dir,
        &[
            "consent",
            "grant",
            "--template",
            "training-commercial-attribution",
        ],
    );

    // The collective space: n text records through `guild import`.
    let text = |i: usize| {
        format!(
            "Work {i}: a paragraph of some length about tides, harbours and the people who \
             kept their records, written for the page benchmark, number {i}."
        )
    };
    let jsonl = tmp.path().join("works.jsonl");
    let mut f = std::fs::File::create(&jsonl).expect("jsonl");
    for i in 0..n {
        let rec = json!({"collection": "coop.guild.data.text", "record": {
            "$type": "coop.guild.data.text", "title": format!("Work {i}"), "body": text(i),
            "language": "en", "tags": ["bench"], "createdAt": "2026-12-03T10:00:00.000Z"}});
        writeln!(f, "{rec}").expect("write");
    }
    drop(f);
    let t = Instant::now();
    let jsonl_s = jsonl.to_string_lossy().into_owned();
    run(&dir, &["import", &jsonl_s, "--space", &collective]);
    eprintln!("{n} records imported into the space in {:.1?}", t.elapsed());

    // The commons: n records with their licences, 50 of each per commit.
    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    let t = Instant::now();
    let mut tids = guild_core::syntax::TidClock::new(7);
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        let mut writes = Vec::new();
        for &i in chunk {
            let rkey = tids
                .next(1_764_000_000_000_000 + i as u64)
                .as_str()
                .to_owned();
            writes.push(json!({"$type": "com.atproto.repo.applyWrites#create",
                "collection": "coop.guild.data.text", "rkey": rkey,
                "value": {"$type": "coop.guild.data.text", "title": format!("Commons work {i}"),
                    "body": text(i), "language": if i % 2 == 0 { "en" } else { "fr" },
                    "createdAt": "2026-12-03T10:00:00.000Z"}}));
            writes.push(json!({"$type": "com.atproto.repo.applyWrites#create",
                "collection": "coop.guild.commons.licence",
                "value": {"$type": "coop.guild.commons.licence",
                    "subject": format!("at://{did}/coop.guild.data.text/{rkey}"),
                    "template": if i % 3 == 0 { "eval-public" } else { "research-open" },
                    "createdAt": "2026-12-03T10:00:00.000Z"}}));
        }
        let r = http
            .post(format!("{base}/xrpc/com.atproto.repo.applyWrites"))
            .bearer_auth(&token)
            .json(&json!({"repo": did, "writes": writes}))
            .send()
            .expect("applyWrites");
        assert!(r.status().is_success(), "{}", r.text().unwrap_or_default());
    }
    eprintln!(
        "{n} commons records with their licences written in {:.1?}",
        t.elapsed()
    );

    let links: Value = serde_json::from_str(run(&dir, &["dashboard", "--json"]).trim()).unwrap();
    let login = links["login"].as_str().unwrap();
    let r = http.get(login).send().expect("login");
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();

    println!("| page ({n} space records, {n} commons records) | median | p95 | max | size |");
    println!("|---|---|---|---|---|");
    for path in [
        "/dashboard",
        "/dashboard/works",
        "/dashboard/consent",
        "/dashboard/collective",
        "/dashboard/bundles",
        "/dashboard/statements",
        "/contracts",
        "/commons",
        "/commons?licence=eval-public&lang=fr",
        "/commons?q=work%209999",
        "/robots.txt",
        "/.well-known/tdmrep.json",
    ] {
        let mut times = Vec::new();
        let mut size = 0;
        for i in 0..35 {
            let t = Instant::now();
            let r = http
                .get(format!("{base}{path}"))
                .header("cookie", &cookie)
                .send()
                .expect("GET");
            let status = r.status();
            let body = r.bytes().expect("body");
            let took = t.elapsed();
            assert!(status.is_success(), "{path}: {status}");
            size = body.len();
            if i >= 5 {
                times.push(took);
            }
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "| `{path}` | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} KB |",
            ms(times[times.len() / 2]),
            ms(times[times.len() * 95 / 100]),
            ms(times[times.len() - 1]),
            size as f64 / 1024.0
        );
    }
    // The commons page right after a commit: the index is read again (every licence, every
    // licensed record's collection).
    let mut times = Vec::new();
    for i in 0..7 {
        let rkey = tids.next(1_765_000_000_000_000 + i).as_str().to_owned();
        let writes = json!([{"$type": "com.atproto.repo.applyWrites#create",
            "collection": "coop.guild.data.text", "rkey": rkey,
            "value": {"$type": "coop.guild.data.text", "title": "One more", "body": "x",
                "createdAt": "2026-12-03T10:00:00.000Z"}},
            {"$type": "com.atproto.repo.applyWrites#create",
            "collection": "coop.guild.commons.licence",
            "value": {"$type": "coop.guild.commons.licence",
                "subject": format!("at://{did}/coop.guild.data.text/{rkey}"),
                "template": "research-open", "createdAt": "2026-12-03T10:00:00.000Z"}}]);
        let r = http
            .post(format!("{base}/xrpc/com.atproto.repo.applyWrites"))
            .bearer_auth(&token)
            .json(&json!({"repo": did, "writes": writes}))
            .send()
            .expect("applyWrites");
        assert!(r.status().is_success());
        let t = Instant::now();
        let r = http.get(format!("{base}/commons")).send().expect("GET");
        let _ = r.bytes();
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "| `/commons` right after a commit (index read again; 7 runs) | {:.1} ms | | {:.1} ms | |",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3
    );
    // The commons snapshot: the first download after the commits assembles it (a proof per
    // record and per licence, the file built and verified); later ones are served as held.
    let get_snapshot = || {
        let t = Instant::now();
        let r = http
            .get(format!("{base}/commons/commons-snapshot.car"))
            .send()
            .expect("GET snapshot");
        assert!(r.status().is_success(), "{}", r.status());
        let bytes = r.bytes().expect("snapshot bytes");
        (t.elapsed(), bytes)
    };
    let (first, bytes) = get_snapshot();
    let (again, _) = get_snapshot();
    let file = tmp.path().join("commons-snapshot.car");
    std::fs::write(&file, &bytes).expect("write snapshot");
    let t = Instant::now();
    let verify = Command::new(guild())
        .args(["bundle", "verify"])
        .arg(&file)
        .output()
        .expect("guild bundle verify");
    let verified = t.elapsed();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    println!(
        "| `/commons/commons-snapshot.car`, first download after a commit (assembled: {} records) | {:.0} ms | | | {:.1} MB |",
        n + 7,
        first.as_secs_f64() * 1e3,
        bytes.len() as f64 / 1e6
    );
    println!(
        "| the same, held (no commit since) | {:.1} ms | | | |",
        again.as_secs_f64() * 1e3
    );
    println!(
        "| `guild bundle verify` of that snapshot (the CLI, start to exit) | {:.0} ms | | | |",
        verified.as_secs_f64() * 1e3
    );
}
