//! The web pages in a real browser: the demo's collective on 5 real node processes (kept
//! running), then Debian's headless Chromium driven by `tests/browser/pages.mjs`
//! (playwright-core) opens a member's dashboard with `guild dashboard`'s one-time link, loads
//! every page at a desktop and a phone width, runs axe-core on each (no serious or critical
//! violation, no sideways scrolling of the page), saves screenshots, and grants or revokes a
//! consent through the consent page's buttons and its confirmation; the node's own state
//! (`coop.guild.collective.getStatus`) must show the change. The member then puts a work in
//! the commons with the CLI, and a steward's commons page must list it with its licence and
//! its author; the commons snapshot downloaded through that page's link must pass
//! `guild bundle verify`.
//!
//! Needs `/usr/bin/chromium` (or `GUILD_CHROMIUM`), Node.js and `npm ci` in `tests/browser`;
//! skips with a reason otherwise, unless `GUILD_REQUIRE_BROWSER=1` (set by `.ci/run`, which
//! installs them). Screenshots go to `GUILD_SHOTS` (default `target/browser-shots`).

use std::path::{Path, PathBuf};
use std::process::Command;

use guild_devnet::{DemoOptions, Exe};
use serde_json::Value;

const GUILD: &str = env!("CARGO_BIN_EXE_guild-e2e");
const TEMPLATE: &str = "training-commercial-attribution";

fn guild(args: &[&str]) -> String {
    let out = Command::new(GUILD).args(args).output().expect("run guild");
    assert!(
        out.status.success(),
        "guild {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(args: &[&str]) -> Value {
    serde_json::from_str(guild(args).trim()).expect("JSON")
}

/// Whether `member`'s consent to `TEMPLATE` is granted, as the node reports it.
fn granted(dir: &str) -> bool {
    let s = json(&["collective", "status", "--data-dir", dir, "--json"]);
    let you = s["you"].as_str().unwrap_or_default().to_owned();
    s["consents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["member"] == you && c["template"] == TEMPLATE)
        .any(|c| c["granted"] == true)
}

/// Stops the kept devnet however the test ends.
struct Down(PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = guild_devnet::down(&self.0);
    }
}

fn which(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_pages_work_in_a_real_browser() {
    let required = std::env::var("GUILD_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let chromium = std::env::var("GUILD_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    let missing = if !Path::new(&chromium).exists() {
        Some(format!(
            "no browser at {chromium} (apt-get install chromium)"
        ))
    } else if !which("node") {
        Some("no Node.js".to_owned())
    } else if !browser_dir.join("node_modules/playwright-core").is_dir()
        || !browser_dir.join("node_modules/axe-core").is_dir()
    {
        Some(format!(
            "no playwright-core or axe-core (npm ci in {})",
            browser_dir.display()
        ))
    } else {
        None
    };
    if let Some(why) = missing {
        assert!(!required, "GUILD_REQUIRE_BROWSER=1 but {why}");
        eprintln!("skipped: {why}");
        return;
    }

    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("devnet");
    let _down = Down(root.clone());
    guild_devnet::demo(DemoOptions {
        exe: Exe::guild(GUILD),
        root: root.clone(),
        nodes: 5,
        records: Some(60),
        keep: true,
        corpus: guild_devnet::CORPUS.to_string(),
    })
    .unwrap_or_else(|e| panic!("the demo failed: {e:#}"));

    let dirs: Vec<String> = (1..=5)
        .map(|i| {
            root.join(format!("node-{i}"))
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let member = dirs
        .iter()
        .find(|d| json(&["collective", "status", "--data-dir", d, "--json"])["role"] == "member")
        .expect("a member who is not a steward");
    let login = json(&["dashboard", "--data-dir", member, "--json"])["login"]
        .as_str()
        .expect("login link")
        .to_owned();
    let contracts = json(&["dashboard", "--data-dir", &dirs[0], "--json"])["contracts"]
        .as_str()
        .expect("contracts page")
        .to_owned();
    let before = granted(member);
    // A steward with payout lines, for the statements page's charts.
    let earner = json(&["dashboard", "--data-dir", &dirs[0], "--json"])["login"]
        .as_str()
        .expect("login link")
        .to_owned();
    // The member puts a work in the commons (the CLI's `record add --commons`); the browser
    // must find it, with its licence, on a steward's (node-1's) commons page.
    let title = format!(
        "Harbour soundings {}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default()
    );
    let work = serde_json::json!({
        "$type": "coop.guild.data.text",
        "title": title,
        "body": "Depths sounded at low water, for anyone's evaluation sets.",
        "createdAt": "2026-12-03T10:00:00.000Z",
    })
    .to_string();
    guild(&[
        "record",
        "add",
        "--data-dir",
        member,
        "--commons",
        "--licence",
        "eval-public",
        "--collection",
        "coop.guild.data.text",
        "--json",
        &work,
    ]);
    let member_did = json(&["collective", "status", "--data-dir", member, "--json"])["you"]
        .as_str()
        .expect("the member's DID")
        .to_owned();
    let steward_commons = contracts.replace("/contracts", "/commons");

    let shots = std::env::var("GUILD_SHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/browser-shots"));
    let out = Command::new("node")
        .arg(browser_dir.join("pages.mjs"))
        .env("GUILD_LOGIN", &login)
        .env("GUILD_CONTRACTS", &contracts)
        .env("GUILD_TEMPLATE", TEMPLATE)
        .env("GUILD_SHOTS", &shots)
        .env("GUILD_CHROMIUM", &chromium)
        .env("GUILD_STEWARD_COMMONS", &steward_commons)
        .env("GUILD_EARNER_LOGIN", &earner)
        .env("GUILD_COMMONS_TITLE", &title)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pages.mjs failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let pages: Vec<&Value> = lines.iter().filter(|l| l.get("page").is_some()).collect();
    assert_eq!(pages.len(), 16, "8 pages at 2 widths: {stdout}");
    for p in &pages {
        let name = format!("{} at {}px", p["page"], p["width"]);
        eprintln!(
            "{name}: HTTP {}, loaded in {} ms, axe {}",
            p["status"], p["ms"], p["axe"]
        );
        assert_eq!(p["status"], 200, "{name}");
        assert_eq!(p["axe"]["critical"], 0, "{name}: {}", p["violations"]);
        assert_eq!(p["axe"]["serious"], 0, "{name}: {}", p["violations"]);
        assert!(
            p["overflow"].as_i64().is_some_and(|o| o <= 0),
            "{name} scrolls sideways by {} px",
            p["overflow"]
        );
        let shot = shots.join(format!(
            "{}-{}.png",
            p["page"].as_str().unwrap_or(""),
            p["width"]
        ));
        assert!(shot.is_file(), "{} missing", shot.display());
    }
    let flip = lines
        .iter()
        .find(|l| l.get("consent").is_some())
        .expect("the consent flip");
    let (word_before, word_after) = if before {
        ("granted", "not granted")
    } else {
        ("not granted", "granted")
    };
    assert_eq!(flip["before"], word_before, "{flip}");
    assert_eq!(flip["after"], word_after, "{flip}");
    let import = lines
        .iter()
        .find(|l| l.get("imported").is_some())
        .expect("the folder import");
    assert_eq!(import["progress"], serde_json::json!([3, 3]), "{import}");
    assert_eq!(
        import["listed"], 3,
        "the imported works are found: {import}"
    );
    let commons = lines
        .iter()
        .find(|l| l.get("stewardCommons").is_some())
        .expect("the steward's commons page");
    assert_eq!(commons["stewardCommons"], 1, "{commons}");
    assert!(
        commons["licence"]
            .as_str()
            .is_some_and(|l| l.contains("Evaluation")),
        "{commons}"
    );
    assert!(
        commons["provenance"]
            .as_str()
            .is_some_and(|p| p.contains(&member_did)),
        "the author's DID in the provenance: {commons}"
    );
    let earner: Vec<&Value> = lines.iter().filter(|l| l.get("earner").is_some()).collect();
    assert_eq!(
        earner.len(),
        2,
        "the earner's statements at two widths: {stdout}"
    );
    for e in earner {
        assert_eq!(e["status"], 200, "{e}");
        assert_eq!(e["charts"], 2, "earnings and contribution charts: {e}");
        assert!(e["bars"].as_u64().is_some_and(|b| b > 0), "{e}");
        assert_eq!(e["serious"], 0, "{e}");
        assert!(e["overflow"].as_i64().is_some_and(|o| o <= 0), "{e}");
    }
    // The snapshot the browser downloaded from the steward's commons page verifies offline
    // and holds the member's works.
    let snap = lines
        .iter()
        .find(|l| l.get("snapshot").is_some())
        .expect("the snapshot download");
    assert_eq!(snap["name"], "commons-snapshot.car", "{snap}");
    let report = json(&[
        "bundle",
        "verify",
        snap["snapshot"].as_str().expect("a path"),
        "--json",
    ]);
    assert_eq!(report["kind"], "commons-snapshot", "{report}");
    assert!(
        report["authors"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["did"] == member_did.as_str())),
        "{report}"
    );
    eprintln!(
        "commons snapshot: {} records, {} bytes, verified",
        report["records"], report["bytes"]
    );
    // The node's own state changed: the same answer the CLI reads.
    assert_eq!(
        granted(member),
        !before,
        "the node's consent state after the page's action"
    );
}
