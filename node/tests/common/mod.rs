//! Shared helpers for the tests that run the real `guild` binary as a daemon: a data directory
//! made by `guild init`, a child `guild node` on port 0 (killed when dropped), a blocking HTTP
//! client for its XRPC API, and CLI runs against it.
//!
//! Every wait has a deadline; nothing depends on a fixed port or on test order.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_guild");

/// How long a node may take to start serving (a loaded CI machine, a debug build).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A collective id for space tests: any valid CID string.
pub const SPACE: &str = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm";

/// A `guild` command with a clean environment (no `GUILD_*` variable from the caller leaks
/// into the test).
pub fn command() -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("GUILD_") {
            c.env_remove(&k);
        }
    }
    c.env_remove("RUST_LOG").env_remove("RUST_BACKTRACE");
    c
}

/// Runs `guild <args> --data-dir <dir>` to completion.
pub fn guild(dir: &Path, args: &[&str]) -> Output {
    command()
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run guild")
}

/// Runs `guild <args>` (no data dir) to completion.
pub fn guild_plain(args: &[&str]) -> Output {
    command()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run guild")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success (and no panic) and returns stdout.
#[track_caller]
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
    assert!(!stderr(o).contains("panicked"), "{}", stderr(o));
    stdout(o)
}

/// Asserts a clean failure: exit code 1 (not a panic's 101 or a signal), no panic message, and
/// an `error:` line on stderr. Returns stderr.
#[track_caller]
pub fn fails(o: &Output, what: &str) -> String {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "{what}: succeeded\nstdout: {}\nstderr: {err}",
        stdout(o)
    );
    assert!(!err.contains("panicked"), "{what}: panicked: {err}");
    assert_eq!(
        o.status.code(),
        Some(1),
        "{what}: exit {:?}: {err}",
        o.status
    );
    assert!(
        err.lines().any(|l| l.starts_with("error: ")),
        "{what}: no `error:` line: {err}"
    );
    err
}

/// A data directory made by `guild init`, inside a temporary directory that also holds the
/// node logs and test files.
#[derive(Debug)]
pub struct DataDir {
    pub root: tempfile::TempDir,
    pub dir: PathBuf,
    pub did: String,
    pub token: String,
}

impl DataDir {
    pub fn init() -> DataDir {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("data");
        let out = guild_plain(&["init", "--data-dir", dir.to_str().expect("utf-8 path")]);
        let did = ok(&out).trim().to_string();
        assert!(did.starts_with("did:key:z"), "init printed {did:?}");
        let token = std::fs::read_to_string(dir.join("admin-token"))
            .expect("admin-token")
            .trim()
            .to_string();
        assert!(token.len() >= 32);
        DataDir {
            root,
            dir,
            did,
            token,
        }
    }

    /// A path in the temporary directory, outside the data directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// Runs a `guild` command against this data directory.
    pub fn guild(&self, args: &[&str]) -> Output {
        guild(&self.dir, args)
    }

    /// Starts `guild node` on a free port and waits until it serves.
    pub fn start(&self) -> Node {
        self.start_with(&[])
    }

    /// Starts `guild node` with extra environment variables.
    pub fn start_with(&self, env: &[(&str, &str)]) -> Node {
        Node::start(self, env)
    }
}

static LOG_SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A running `guild node`; killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct Node {
    child: Option<Child>,
    pub url: String,
    pub did: String,
    pub token: String,
    pub log: PathBuf,
    pub http: reqwest::blocking::Client,
}

/// The blocking HTTP client the tests use.
pub fn http_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

impl Node {
    fn start(data: &DataDir, env: &[(&str, &str)]) -> Node {
        let addr_path = data.dir.join("node.addr");
        // A node killed earlier leaves its address behind; the new one writes its own.
        match std::fs::remove_file(&addr_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("cannot remove {}: {e}", addr_path.display()),
        }
        let n = LOG_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = data.file(&format!("node-{n}.log"));
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = command();
        cmd.args(["node", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data.dir)
            .env("GUILD_LOG", "info")
            // Tests on one machine: loopback only, no LAN discovery (each test decides whom
            // its nodes meet).
            .env("GUILD_MDNS", "0")
            .env("GUILD_P2P_LISTEN", "/ip4/127.0.0.1/tcp/0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn guild node");
        let mut node = Node {
            child: Some(child),
            url: String::new(),
            did: data.did.clone(),
            token: data.token.clone(),
            log,
            http: http_client(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = node
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "guild node exited with {status} before serving:\n{}",
                    node.log_text()
                );
            }
            if let Ok(text) = std::fs::read_to_string(&addr_path)
                && text.ends_with('\n')
            {
                node.url = text.trim().to_string();
                break;
            }
            assert!(
                Instant::now() < deadline,
                "guild node did not write node.addr within {START_TIMEOUT:?}:\n{}",
                node.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // The address is written once the socket is bound; wait until it answers too.
        loop {
            let health = node
                .http
                .get(format!("{}/xrpc/_health", node.url))
                .timeout(Duration::from_secs(5))
                .send();
            if matches!(&health, Ok(r) if r.status().is_success()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "guild node at {} did not answer within {START_TIMEOUT:?}: {health:?}\n{}",
                node.url,
                node.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        node
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id of the child.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn xrpc(&self, nsid: &str) -> String {
        format!("{}/xrpc/{nsid}", self.url)
    }

    /// GET a query with the admin token; the status and the JSON body.
    pub fn get(&self, nsid: &str, params: &[(&str, &str)]) -> (u16, Value) {
        self.get_as(nsid, params, Some(&self.token))
    }

    /// GET a query with the given bearer token (or none).
    pub fn get_as(&self, nsid: &str, params: &[(&str, &str)], token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(self.xrpc(nsid)).query(params);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        json_response(req.send().expect("GET"))
    }

    /// GET a query returning bytes (a CAR) with the admin token; panics with the error body
    /// if it fails.
    pub fn get_bytes(&self, nsid: &str, params: &[(&str, &str)]) -> Vec<u8> {
        let resp = self
            .http
            .get(self.xrpc(nsid))
            .query(params)
            .bearer_auth(&self.token)
            .send()
            .expect("GET");
        let status = resp.status();
        let ct = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = resp.bytes().expect("body").to_vec();
        assert!(
            status.is_success(),
            "{nsid} {params:?}: {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        assert_eq!(ct, "application/vnd.ipld.car", "{nsid}: content-type");
        bytes
    }

    /// POST a procedure with the admin token.
    pub fn post(&self, nsid: &str, body: &Value) -> (u16, Value) {
        self.post_as(nsid, body, Some(&self.token))
    }

    /// POST a procedure with the given bearer token (or none).
    pub fn post_as(&self, nsid: &str, body: &Value, token: Option<&str>) -> (u16, Value) {
        let mut req = self
            .http
            .post(self.xrpc(nsid))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(body).expect("json"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        json_response(req.send().expect("POST"))
    }

    /// POST and assert 200; the body.
    #[track_caller]
    pub fn post_ok(&self, nsid: &str, body: &Value) -> Value {
        let (status, v) = self.post(nsid, body);
        assert_eq!(status, 200, "{nsid} {body}: {v}");
        v
    }

    /// GET and assert 200; the body.
    #[track_caller]
    pub fn get_ok(&self, nsid: &str, params: &[(&str, &str)]) -> Value {
        let (status, v) = self.get(nsid, params);
        assert_eq!(status, 200, "{nsid} {params:?}: {v}");
        v
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The status and the JSON body of a response (`Value::Null` plus the raw text in a string
/// if the body is not JSON).
pub fn json_response(resp: reqwest::blocking::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().unwrap_or_default();
    let v =
        serde_json::from_str(&text).unwrap_or_else(|_| Value::String(format!("<not JSON> {text}")));
    (status, v)
}

/// Asserts an XRPC error: the status, the error name, and a non-empty message.
#[track_caller]
pub fn assert_xrpc_error(got: &(u16, Value), status: u16, error: &str) {
    let (s, v) = got;
    assert_eq!(
        (*s, v["error"].as_str()),
        (status, Some(error)),
        "expected {status} {error}, got {s} {v}"
    );
    let message = v["message"].as_str();
    assert!(
        message.is_some_and(|m| !m.is_empty()),
        "error body has no message: {v}"
    );
    let keys: Vec<&String> = v
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(
        keys.len(),
        2,
        "error body must be exactly {{error, message}}: {v}"
    );
}

/// A valid `coop.guild.data.text` record.
pub fn text_record(body: &str) -> Value {
    serde_json::json!({
        "$type": "coop.guild.data.text",
        "body": body,
        "createdAt": "2024-05-01T12:00:00.000Z",
    })
}

/// A small deterministic RNG (SplitMix64), so random choices replay from a seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }
}

/// A tmpfs mounted for a test (a small disk to fill), lazily unmounted when dropped.
#[derive(Debug)]
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `mib` MiB at `path` (created), or `None` after printing why it cannot
    /// (mounting needs root). With `GUILD_REQUIRE_TMPFS=1` a failed mount fails the test.
    pub fn mount_or_skip(path: &Path, mib: u32) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(path)
            .output();
        let why = match out {
            Ok(o) if o.status.success() => {
                return Some(Tmpfs {
                    path: path.to_owned(),
                });
            }
            Ok(o) => format!(
                "mount -t tmpfs failed (needs root): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => format!("cannot run mount: {e}"),
        };
        assert!(
            std::env::var("GUILD_REQUIRE_TMPFS").as_deref() != Ok("1"),
            "GUILD_REQUIRE_TMPFS=1 but {why}"
        );
        eprintln!("skipped: {why}");
        None
    }

    /// Fills the file system with a ballast file until a write fails with ENOSPC; returns
    /// the ballast's path (remove it to free the space).
    pub fn fill(&self) -> PathBuf {
        use std::io::Write as _;
        let path = self.path.join("ballast");
        let mut f = std::fs::File::create(&path).expect("ballast");
        for chunk in [64 * 1024, 512] {
            let bytes = vec![0xAAu8; chunk];
            loop {
                match f.write_all(&bytes) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(28) => break,
                    Err(e) => panic!("ballast: {e}"),
                }
            }
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
