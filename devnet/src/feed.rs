//! The demo's feed steps: the builder subscribes to a steward node's feed with its key before
//! the first bundle is sealed (`guild feed subscribe`, a process of its own), receives and
//! verifies the bundle through it, is killed with SIGKILL and restarted, and resumes from
//! its cursor; after a member revokes, it receives the revocation notice and the next
//! bundle, with no event lost or handled twice (checked against a fresh client's replay of
//! the whole feed). Node-1 serves its builders' feed on a public address over TLS, with a
//! self-signed certificate the builder trusts with `--ca`: the feed arrives over wss, the
//! bundles over https.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::Story;
use super::licensing::{BundleOut, short};

/// Per-licensee canaries the demo's charter asks for in every bundle.
pub(super) const CANARIES: usize = 2;

/// The builder's `guild feed subscribe` process.
pub(super) struct Follower {
    child: Option<Child>,
    /// Its output directory.
    out: PathBuf,
    node: String,
    key: PathBuf,
    /// The node's self-signed certificate, trusted with `--ca`.
    ca: PathBuf,
    starts: usize,
}

impl Drop for Follower {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The `seq`s of the events a client handled, in order (`events.jsonl`, rejections aside).
fn seqs(out: &std::path::Path) -> Result<Vec<u64>> {
    let text = match std::fs::read_to_string(out.join("events.jsonl")) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).context("events.jsonl: not JSON"))
        .filter(|v| v.as_ref().map_or(true, |v| v.get("rejected").is_none()))
        .map(|v| {
            v.and_then(|v| {
                v["seq"]
                    .as_u64()
                    .context("events.jsonl: an event without seq")
            })
        })
        .collect()
}

fn events(out: &std::path::Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(out.join("events.jsonl")).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).context("events.jsonl: not JSON"))
        .collect()
}

/// Node-1's certificate and key, in its data directory.
pub(super) const TLS_CERT: &str = "tls/cert.pem";
const TLS_KEY: &str = "tls/key.pem";

/// Gives `node` (not started yet) a public address for builders on a free port, served over
/// TLS with a self-signed certificate for 127.0.0.1 written into its data directory.
pub(super) fn serve_tls(node: &super::Node) -> Result<()> {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .context("cannot make a self-signed certificate")?;
    std::fs::create_dir_all(node.dir.join("tls"))?;
    std::fs::write(node.dir.join(TLS_CERT), cert.pem())?;
    std::fs::write(node.dir.join(TLS_KEY), key_pair.serialize_pem())?;
    let path = node.dir.join("config.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut config: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not TOML", path.display()))?;
    let feeds = config
        .entry("feeds")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let Some(feeds) = feeds.as_table_mut() else {
        bail!("{}: [feeds] is not a table", path.display());
    };
    feeds.insert("listen".into(), "127.0.0.1:0".into());
    feeds.insert("tls_cert".into(), TLS_CERT.into());
    feeds.insert("tls_key".into(), TLS_KEY.into());
    std::fs::write(&path, toml::to_string(&config)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The builders' URL `node` logged last (`serving builders url=…`).
pub(super) fn public_url(node: &super::Node) -> Result<String> {
    let log = std::fs::read_to_string(node.log())
        .with_context(|| format!("cannot read {}", node.log().display()))?;
    log.lines()
        .rev()
        .filter(|l| l.contains("serving builders"))
        .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("url=")))
        .map(str::to_owned)
        .context("node-1 did not log its builders' address")
}

impl Story {
    fn spawn_follower(&self, f: &mut Follower) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(f.out.with_extension("log"))
            .context("cannot open the feed client's log")?;
        let err = log.try_clone()?;
        let child = self
            .d
            .exe
            .command()
            .args(["feed", "subscribe", "--node", &f.node, "--key"])
            .arg(&f.key)
            .arg("--ca")
            .arg(&f.ca)
            .arg("--out")
            .arg(&f.out)
            .current_dir(&self.d.root)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .context("cannot start guild feed subscribe")?;
        f.child = Some(child);
        f.starts += 1;
        Ok(())
    }

    /// The builder subscribes to node-1's feed, before any bundle is sealed.
    pub(super) fn subscribe(&mut self) -> Result<Follower> {
        let t = Instant::now();
        let builder = self.d.root.join("builder");
        let node = public_url(&self.d.nodes[0])?;
        if !node.starts_with("https://") {
            bail!("node-1 serves builders at {node}, not over TLS");
        }
        let mut f = Follower {
            child: None,
            out: builder.join("feed"),
            node,
            key: builder.join("builder.key"),
            ca: self.d.nodes[0].dir.join(TLS_CERT),
            starts: 0,
        };
        let _ = std::fs::remove_dir_all(&f.out);
        self.spawn_follower(&mut f)?;
        // Subscribed: its login and the agreement's events reached it.
        let c = self
            .d
            .wait_for("the builder's feed client subscribed", |_| {
                Ok(events(&f.out)?.iter().any(|e| {
                    e["$type"] == "coop.guild.feed.subscribe#agreement" && e["state"] == "in-force"
                }))
            })?;
        self.steps.done(
            t.elapsed(),
            "the builder subscribed to node-1's feed with its key (`guild feed subscribe --node https://… --ca`: wss, and https downloads), before any bundle was sealed; the agreement's changes arrived on it",
            Some(c),
        );
        Ok(f)
    }

    /// The builder receives the sealed bundle through its feed and verifies it; killed with
    /// SIGKILL and restarted, it resumes from its cursor.
    pub(super) fn feed_bundle(&mut self, f: &mut Follower, bundle: &BundleOut) -> Result<()> {
        let t = Instant::now();
        let car = f
            .out
            .join("bundles")
            .join(&bundle.manifest)
            .join("bundle.car");
        let c = self
            .d
            .wait_for("the bundle through the builder's feed", |_| {
                Ok(car.is_file())
            })?;
        let exported = self.d.root.join("builder").join("first").join("bundle.car");
        if std::fs::read(&car)? != std::fs::read(&exported)? {
            bail!("check `feed download`: the bundle from the feed differs from the export");
        }
        for form in ["croissant.json", "README.md", "disclosure.json"] {
            if !car.with_file_name(form).is_file() {
                bail!(
                    "check `feed download`: {form} missing beside {}",
                    car.display()
                );
            }
        }
        let cursor = std::fs::read_to_string(f.out.join("cursor")).unwrap_or_default();
        // Killed mid-stream (no chance to tidy up), then started again.
        if let Some(mut child) = f.child.take() {
            child.kill().context("cannot kill the feed client")?;
            let _ = child.wait();
        }
        self.spawn_follower(f)?;
        self.steps.done(
            t.elapsed(),
            &format!(
                "the builder received bundle {} through its feed, verified it offline and wrote it with its Croissant file (cursor {}); its client was killed with SIGKILL and restarted",
                short(&bundle.manifest),
                cursor.trim()
            ),
            Some(c),
        );
        Ok(())
    }

    /// The charter asks for per-licensee canaries: the builder's copy carries them, and a
    /// leak of that copy is traced to the builder by a steward's node.
    pub(super) fn trace_leak(&mut self, f: &Follower, bundle: &BundleOut) -> Result<()> {
        let t = Instant::now();
        let car = f
            .out
            .join("bundles")
            .join(&bundle.manifest)
            .join("bundle.car");
        let car_s = car.to_string_lossy().into_owned();
        let shown = self.d.guild_bare(&["bundle", "show", &car_s, "--json"])?;
        let shown: serde_json::Value =
            serde_json::from_str(&shown).context("bundle show: not JSON")?;
        let builder = shown["builder"].as_str().unwrap_or_default().to_owned();
        let canaries: Vec<String> = shown["licenseeCanaries"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c["body"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if canaries.len() != CANARIES {
            bail!(
                "check `licensee canaries`: the builder's copy carries {} canaries, the charter asks for {CANARIES}",
                canaries.len()
            );
        }
        // A "leak": some of the builder's copy pasted into a web page, re-wrapped and
        // upper-cased, with one canary's second sentence in it.
        let sentence = canaries[1]
            .split_terminator('.')
            .nth(1)
            .context("a canary has three sentences")?
            .trim()
            .to_uppercase()
            .replacen(' ', "\n  ", 3);
        let dir = self.d.root.join("leak");
        std::fs::create_dir_all(&dir)?;
        let leak = dir.join("scraped.html");
        std::fs::write(
            &leak,
            format!("<html><body><p>Found online:</p><p>{sentence}.</p></body></html>\n"),
        )?;
        let clean = dir.join("clean.txt");
        std::fs::write(&clean, "Nothing from the collective here.\n")?;
        let traced = self
            .d
            .guild(0, &["bundle", "trace", &leak.to_string_lossy(), "--json"])?;
        let hit: serde_json::Value = serde_json::from_str(traced.lines().next().unwrap_or(""))
            .with_context(|| format!("bundle trace: not JSON: {traced}"))?;
        if hit["builder"] != builder.as_str() || hit["bundle"] != bundle.manifest.as_str() {
            bail!(
                "check `trace a leak`: expected builder {builder} and bundle {}, got {hit}",
                bundle.manifest
            );
        }
        self.d
            .guild_fails(0, &["bundle", "trace", &clean.to_string_lossy()])?;
        self.steps.done(
            t.elapsed(),
            &format!(
                "the builder's copy of bundle {} carries {CANARIES} canary records made for it alone; a leaked sentence of one, re-wrapped, is traced by node-1 to builder {} (and a clean file to no one)",
                short(&bundle.manifest),
                short(&builder)
            ),
            None,
        );
        Ok(())
    }

    /// After the revocation: the restarted client receives the notice and the next bundle,
    /// and has handled every event of the feed exactly once.
    pub(super) fn feed_revocation(&mut self, f: &mut Follower, second: &BundleOut) -> Result<()> {
        let t = Instant::now();
        let car = f
            .out
            .join("bundles")
            .join(&second.manifest)
            .join("bundle.car");
        let c = self.d.wait_for(
            "the revocation notice and the next bundle through the feed",
            |_| {
                let got = events(&f.out)?;
                Ok(car.is_file()
                    && got
                        .iter()
                        .any(|e| e["$type"] == "coop.guild.feed.subscribe#revocation"))
            },
        )?;
        let notice = events(&f.out)?
            .into_iter()
            .find(|e| e["$type"] == "coop.guild.feed.subscribe#revocation")
            .context("the revocation notice vanished")?;
        // The builder's receipt for the notice reaches the log: the stewards' list shows it.
        let member = notice["member"].as_str().unwrap_or_default().to_owned();
        let receipt = self
            .d
            .wait_for("the builder's receipt on the revocation notice", |d| {
                let out = d.guild(0, &["bundle", "revocations", "--json"])?;
                let v: Value = serde_json::from_str(&out).context("revocations: not JSON")?;
                Ok(v["notices"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|n| n["member"] == member.as_str() && n["receipt"].is_string()))
            })?;
        let _ = receipt;
        // A fresh client replays the whole feed once: the same events, in the same order.
        let fresh = f.out.with_file_name("feed-replay");
        let _ = std::fs::remove_dir_all(&fresh);
        self.d.guild_bare(&[
            "feed",
            "subscribe",
            "--node",
            &f.node,
            "--key",
            &f.key.to_string_lossy(),
            "--out",
            &fresh.to_string_lossy(),
            "--ca",
            &f.ca.to_string_lossy(),
            "--once",
        ])?;
        let (mine, all) = (seqs(&f.out)?, seqs(&fresh)?);
        if mine != all || mine.windows(2).any(|w| w[0] >= w[1]) {
            bail!(
                "check `feed resume`: the restarted client handled seqs {mine:?}, the feed holds {all:?}"
            );
        }
        self.steps.done(
            t.elapsed(),
            &format!(
                "the restarted client resumed: it received the revocation notice ({} records of {}, duty {}), acknowledged it (node-1 shows the builder's receipt), and bundle {}; {} events handled, none lost or twice (a fresh replay agrees)",
                notice["records"].as_array().map_or(0, Vec::len),
                self.name_of(notice["member"].as_str().unwrap_or_default()),
                notice["duty"].as_str().unwrap_or_default(),
                short(&second.manifest),
                mine.len()
            ),
            Some(c),
        );
        Ok(())
    }
}
