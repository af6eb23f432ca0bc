//! End-to-end tests of the `guild` binary's offline tools, run as a user would in a temporary
//! directory: `key generate` / `key show`, and `repo build → inspect → verify → prove →
//! verify-proof`. Every bad input must give a non-zero exit, exactly one `error:` line on
//! stderr, no panic, and no file left behind (neither the output nor a `.guild-*.tmp`).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use guild_core::Keypair;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_guild");

fn guild(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("GUILD_LOG")
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Asserts success and returns stdout.
#[track_caller]
fn ok(o: &Output) -> String {
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

/// Asserts a clean failure: non-zero exit, no panic, exactly one line on stderr and it starts
/// with `error: `. Returns that line.
#[track_caller]
fn fails(o: &Output, what: &str) -> String {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "{what}: succeeded\nstdout: {}\nstderr: {err}",
        stdout(o)
    );
    assert!(!err.contains("panicked"), "{what}: panicked: {err}");
    assert_ne!(o.status.code(), Some(101), "{what}: exit code 101 (panic)");
    assert!(o.status.code().is_some(), "{what}: killed by a signal");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: expected one error line, got:\n{err}"
    );
    assert!(lines[0].starts_with("error: "), "{what}: {err}");
    assert!(
        lines[0].len() > "error: ".len() + 5,
        "{what}: unclear: {err}"
    );
    lines[0].to_string()
}

/// File names in `dir`, including hidden ones.
fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

#[track_caller]
fn assert_no_tmp(dir: &Path) {
    let l = listing(dir);
    assert!(
        !l.iter()
            .any(|f| f.starts_with(".guild-") || f.ends_with(".tmp")),
        "temporary files left behind: {l:?}"
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A temporary directory holding a deterministic key file `key.json` (mode 0600).
struct Work {
    dir: tempfile::TempDir,
    key: Keypair,
}

impl Work {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = Keypair::from_secret_bytes(&[42; 32]);
        let path = dir.path().join("key.json");
        std::fs::write(&path, key.to_key_file()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        Work { dir, key }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    fn write(&self, name: &str, contents: impl AsRef<[u8]>) {
        std::fs::write(self.file(name), contents).unwrap();
    }

    fn run(&self, args: &[&str]) -> Output {
        guild(self.path(), args)
    }

    fn build(&self, jsonl: &str, out: &str) -> Output {
        self.write("in.jsonl", jsonl);
        self.run(&[
            "repo",
            "build",
            "--records",
            "in.jsonl",
            "--key",
            "key.json",
            "--out",
            out,
        ])
    }
}

fn line(collection: &str, rkey: Option<&str>, record: Value) -> String {
    let mut v = json!({"collection": collection, "record": record});
    if let Some(r) = rkey {
        v["rkey"] = json!(r);
    }
    format!("{v}\n")
}

fn post(text: &str) -> Value {
    json!({"$type": "com.example.post", "text": text, "n": 1, "tags": ["a", "b"], "ok": true, "none": null})
}

/// A JSONL file of `n` posts with explicit rkeys, plus two with generated (TID) rkeys and one
/// in another collection carrying bytes and a link.
fn sample_jsonl(n: usize) -> (String, Vec<(String, Value)>) {
    let mut text = String::new();
    let mut explicit = Vec::new();
    for i in 0..n {
        let rkey = format!("r{i:03}");
        let rec = post(&format!("post {i}"));
        text.push_str(&line("com.example.post", Some(&rkey), rec.clone()));
        explicit.push((format!("com.example.post/{rkey}"), rec));
    }
    text.push_str(&line("com.example.post", None, post("tid 1")));
    text.push_str(&line("com.example.post", None, post("tid 2")));
    let like = json!({
        "$type": "com.example.like",
        "subject": {"$link": "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua"},
        "sig": {"$bytes": "AAECAwQ"},
    });
    text.push_str(&line("com.example.like", Some("self"), like.clone()));
    explicit.push(("com.example.like/self".into(), like));
    (text, explicit)
}

// ---------------------------------------------------------------------------------------------
// key

#[test]
fn key_generate_and_show() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = ok(&guild(d, &["key", "generate", "--out", "id.key"]));
    let did = out.trim();
    assert!(did.starts_with("did:key:z6Mk"), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    guild_core::PublicKey::from_did(did).unwrap();
    assert_eq!(mode(&d.join("id.key")), 0o600);
    assert_eq!(listing(d), BTreeSet::from(["id.key".to_string()]));
    // The file holds the key for that DID.
    let text = std::fs::read_to_string(d.join("id.key")).unwrap();
    assert_eq!(Keypair::from_key_file(&text).unwrap().did(), did);

    let shown = ok(&guild(d, &["key", "show", "id.key"]));
    assert_eq!(shown.trim(), did);

    // Refuses to overwrite, and leaves the file as it was.
    let o = guild(d, &["key", "generate", "--out", "id.key"]);
    fails(&o, "overwrite");
    assert_eq!(std::fs::read_to_string(d.join("id.key")).unwrap(), text);
    assert_eq!(listing(d), BTreeSet::from(["id.key".to_string()]));

    // Two keys are different.
    let other = ok(&guild(d, &["key", "generate", "--out", "other.key"]));
    assert_ne!(other.trim(), did);
    assert_eq!(mode(&d.join("other.key")), 0o600);
    assert_no_tmp(d);
}

#[test]
fn key_generate_into_a_missing_directory_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let o = guild(dir.path(), &["key", "generate", "--out", "nope/id.key"]);
    fails(&o, "missing directory");
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn key_show_refuses_bad_key_files() {
    let w = Work::new();
    let base = listing(w.path());
    // Missing.
    fails(&w.run(&["key", "show", "absent.json"]), "missing key file");
    // Readable by others.
    std::fs::set_permissions(w.file("key.json"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = fails(&w.run(&["key", "show", "key.json"]), "mode 0644");
    assert!(e.contains("644") || e.contains("mode"), "{e}");
    std::fs::set_permissions(w.file("key.json"), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(ok(&w.run(&["key", "show", "key.json"])).trim(), w.key.did());
    // Not a key file.
    w.write("junk.json", "{\"version\": 1}");
    std::fs::set_permissions(w.file("junk.json"), std::fs::Permissions::from_mode(0o600)).unwrap();
    fails(&w.run(&["key", "show", "junk.json"]), "junk key file");
    let mut want = base;
    want.insert("junk.json".into());
    assert_eq!(listing(w.path()), want);
}

// ---------------------------------------------------------------------------------------------
// repo: the happy path

#[test]
fn build_inspect_verify_prove_verify_proof() {
    let w = Work::new();
    let (jsonl, explicit) = sample_jsonl(25);
    let out = ok(&w.build(&jsonl, "repo.car"));
    assert!(!out.is_empty());
    assert_no_tmp(w.path());
    assert_eq!(
        listing(w.path()),
        BTreeSet::from(["in.jsonl", "key.json", "repo.car"].map(String::from))
    );

    // inspect --json: exactly the five keys.
    let doc: Value =
        serde_json::from_str(&ok(&w.run(&["repo", "inspect", "repo.car", "--json"]))).unwrap();
    let keys: BTreeSet<&str> = doc
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["did", "rev", "commit", "data", "count"])
    );
    assert_eq!(doc["did"], json!(w.key.did()));
    assert_eq!(doc["count"], json!(explicit.len() + 2));
    guild_core::syntax::Tid::parse(doc["rev"].as_str().unwrap()).unwrap();
    let commit: guild_core::Cid = doc["commit"].as_str().unwrap().parse().unwrap();
    let data: guild_core::Cid = doc["data"].as_str().unwrap().parse().unwrap();

    // inspect --json --records: the same plus records [{path, cid}].
    let full: Value = serde_json::from_str(&ok(&w.run(&[
        "repo",
        "inspect",
        "repo.car",
        "--json",
        "--records",
    ])))
    .unwrap();
    let keys: BTreeSet<&str> = full
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["did", "rev", "commit", "data", "count", "records"])
    );
    for k in ["did", "rev", "commit", "data", "count"] {
        assert_eq!(full[k], doc[k], "{k}");
    }
    let records = full["records"].as_array().unwrap();
    assert_eq!(records.len(), explicit.len() + 2);
    let mut listed = BTreeMap::new();
    for r in records {
        let keys: BTreeSet<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["path", "cid"]));
        listed.insert(
            r["path"].as_str().unwrap().to_string(),
            r["cid"].as_str().unwrap().to_string(),
        );
    }
    // Paths are listed in key order, and each record's CID is the one the library computes.
    let paths: Vec<&str> = records
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
    for (path, rec) in &explicit {
        let (cid, _) =
            guild_core::data::encode_record(&guild_core::data::from_json(rec).unwrap()).unwrap();
        assert_eq!(listed.get(path), Some(&cid.to_string()), "{path}");
    }
    assert_eq!(
        listed
            .keys()
            .filter(|p| p.starts_with("com.example.post/") && !p.starts_with("com.example.post/r"))
            .count(),
        2,
        "two generated TID rkeys: {listed:?}"
    );
    // Generated keys follow the lines' order (the lines are parsed in parallel).
    let path_of = |text: &str| {
        let (cid, _) =
            guild_core::data::encode_record(&guild_core::data::from_json(&post(text)).unwrap())
                .unwrap();
        listed
            .iter()
            .find(|(_, c)| **c == cid.to_string())
            .map(|(p, _)| p.clone())
            .unwrap()
    };
    assert!(path_of("tid 1") < path_of("tid 2"), "TIDs in line order");

    // The library agrees with the CLI about the CAR.
    let bytes = std::fs::read(w.file("repo.car")).unwrap();
    let car = guild_repo::read_car(&bytes).unwrap();
    let summary = guild_repo::verify_car(&car).unwrap();
    assert_eq!(summary.commit, commit);
    assert_eq!(summary.data, data);
    assert_eq!(summary.did, w.key.did());
    assert_eq!(summary.records.len(), records.len());

    // Plain inspect mentions the same facts.
    let plain = ok(&w.run(&["repo", "inspect", "repo.car", "--records"]));
    for needle in [w.key.did(), commit.to_string(), data.to_string()] {
        assert!(plain.contains(&needle), "{plain}");
    }
    for p in listed.keys() {
        assert!(plain.contains(p.as_str()), "{p} not in plain inspect");
    }

    ok(&w.run(&["repo", "verify", "repo.car"]));

    // Prove a few records (first, middle, last, generated) and verify each proof.
    let chosen: Vec<&String> = vec![
        listed.keys().next().unwrap(),
        listed.keys().nth(listed.len() / 2).unwrap(),
        listed.keys().last().unwrap(),
        listed
            .keys()
            .find(|p| !p.starts_with("com.example.post/r") && p.starts_with("com.example.post/"))
            .unwrap(),
    ];
    for (i, path) in chosen.iter().enumerate() {
        let proof = format!("proof{i}.car");
        ok(&w.run(&["repo", "prove", "repo.car", path, "--out", &proof]));
        ok(&w.run(&["repo", "verify-proof", &proof, path]));
        // The proof is much smaller than the repository.
        assert!(std::fs::metadata(w.file(&proof)).unwrap().len() < bytes.len() as u64);
        // And it proves that record only.
        let other = listed.keys().find(|p| p != path).unwrap();
        let e = fails(
            &w.run(&["repo", "verify-proof", &proof, other]),
            "verify-proof for the wrong path",
        );
        assert!(e.contains(&proof) || e.contains(other.as_str()), "{e}");
        fails(
            &w.run(&["repo", "verify-proof", &proof, "com.example.post/absent"]),
            "verify-proof for an absent path",
        );
    }
    assert_no_tmp(w.path());
}

#[test]
fn build_is_deterministic_for_explicit_rkeys() {
    let w = Work::new();
    let jsonl: String = (0..10)
        .map(|i| line("com.example.post", Some(&format!("k{i}")), post("x")))
        .collect();
    ok(&w.build(&jsonl, "a.car"));
    ok(&w.build(&jsonl, "b.car"));
    let a: Value =
        serde_json::from_str(&ok(&w.run(&["repo", "inspect", "a.car", "--json"]))).unwrap();
    let b: Value =
        serde_json::from_str(&ok(&w.run(&["repo", "inspect", "b.car", "--json"]))).unwrap();
    // Same records, same tree (the revision, and so the commit, may differ).
    assert_eq!(a["data"], b["data"]);
    assert_eq!(a["count"], json!(10));
}

// ---------------------------------------------------------------------------------------------
// repo build: bad inputs

#[test]
fn build_refuses_bad_inputs_without_leaving_files() {
    let good = line("com.example.post", Some("ok1"), post("fine"));
    let cases: Vec<(&str, String)> = vec![
        (
            "malformed JSON line",
            format!("{good}{{\"collection\": \"com.example.post\", \n"),
        ),
        ("line not an object", format!("{good}[1, 2]\n")),
        (
            "record with a float",
            line(
                "com.example.post",
                Some("f"),
                json!({"$type": "com.example.post", "x": 1.5}),
            ),
        ),
        (
            "float nested deep",
            line(
                "com.example.post",
                Some("f"),
                json!({"$type": "com.example.post", "a": [{"b": [0.25]}]}),
            ),
        ),
        (
            "$type does not match the collection",
            line(
                "com.example.post",
                Some("t"),
                json!({"$type": "com.example.like", "x": 1}),
            ),
        ),
        (
            "record without $type",
            line("com.example.post", Some("t"), json!({"x": 1})),
        ),
        (
            "record not an object",
            line("com.example.post", Some("t"), json!("text")),
        ),
        (
            "invalid NSID",
            line("not an nsid", Some("a"), json!({"$type": "not an nsid"})),
        ),
        (
            "NSID with one segment",
            line("post", Some("a"), json!({"$type": "post"})),
        ),
        (
            "invalid rkey (slash)",
            line("com.example.post", Some("a/b"), post("x")),
        ),
        (
            "invalid rkey (dot)",
            line("com.example.post", Some("."), post("x")),
        ),
        (
            "invalid rkey (empty)",
            line("com.example.post", Some(""), post("x")),
        ),
        (
            "invalid rkey (space)",
            line("com.example.post", Some("a b"), post("x")),
        ),
        ("duplicate path", format!("{good}{good}")),
        ("empty file", String::new()),
        ("blank lines only", "\n\n  \n".to_string()),
        (
            "missing collection",
            format!("{}\n", json!({"record": post("x")})),
        ),
        (
            "missing record",
            format!("{}\n", json!({"collection": "com.example.post"})),
        ),
        (
            "integer out of range",
            line(
                "com.example.post",
                Some("big"),
                json!({"$type": "com.example.post", "n": u64::MAX}),
            ),
        ),
        (
            "bad $link",
            line(
                "com.example.post",
                Some("l"),
                json!({"$type": "com.example.post", "l": {"$link": "nope"}}),
            ),
        ),
        (
            "bad $bytes",
            line(
                "com.example.post",
                Some("b"),
                json!({"$type": "com.example.post", "b": {"$bytes": 5}}),
            ),
        ),
        (
            "blob without ref",
            line(
                "com.example.post",
                Some("b"),
                json!({"$type": "com.example.post", "img": {"$type": "blob", "mimeType": "image/png", "size": 3}}),
            ),
        ),
        ("NUL bytes", "\u{0}\u{0}\n".to_string()),
    ];
    for (what, jsonl) in cases {
        let w = Work::new();
        let o = w.build(&jsonl, "out.car");
        fails(&o, what);
        assert_eq!(
            listing(w.path()),
            BTreeSet::from(["in.jsonl", "key.json"].map(String::from)),
            "{what}"
        );
    }
    // Invalid UTF-8 bytes.
    let w = Work::new();
    w.write("in.jsonl", b"\xff\xfe{}\n");
    let o = w.run(&[
        "repo",
        "build",
        "--records",
        "in.jsonl",
        "--key",
        "key.json",
        "--out",
        "out.car",
    ]);
    fails(&o, "invalid UTF-8");
    assert!(!w.file("out.car").exists());
}

#[test]
fn build_error_names_the_line() {
    let w = Work::new();
    let mut jsonl = String::new();
    for i in 0..4 {
        jsonl.push_str(&line("com.example.post", Some(&format!("k{i}")), post("x")));
    }
    jsonl.push_str(&line(
        "com.example.post",
        Some("bad"),
        json!({"$type": "com.example.post", "x": 0.5}),
    ));
    let e = fails(&w.build(&jsonl, "out.car"), "float on line 5");
    assert!(e.contains('5'), "{e}");
}

#[test]
fn build_refuses_bad_key_files() {
    let jsonl = line("com.example.post", Some("a"), post("x"));
    // Missing key file.
    let w = Work::new();
    w.write("in.jsonl", &jsonl);
    let o = w.run(&[
        "repo",
        "build",
        "--records",
        "in.jsonl",
        "--key",
        "absent.json",
        "--out",
        "out.car",
    ]);
    fails(&o, "missing key file");
    assert!(!w.file("out.car").exists());
    assert_no_tmp(w.path());
    // Key file readable by others.
    for m in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(w.file("key.json"), std::fs::Permissions::from_mode(m)).unwrap();
        let o = w.run(&[
            "repo",
            "build",
            "--records",
            "in.jsonl",
            "--key",
            "key.json",
            "--out",
            "out.car",
        ]);
        fails(&o, &format!("key file mode {m:o}"));
        assert_eq!(
            listing(w.path()),
            BTreeSet::from(["in.jsonl", "key.json"].map(String::from))
        );
    }
    // A corrupt key file.
    std::fs::set_permissions(w.file("key.json"), std::fs::Permissions::from_mode(0o600)).unwrap();
    w.write("key.json", "{\"version\": 1, \"algorithm\": \"ed25519\"}");
    let o = w.run(&[
        "repo",
        "build",
        "--records",
        "in.jsonl",
        "--key",
        "key.json",
        "--out",
        "out.car",
    ]);
    fails(&o, "corrupt key file");
    assert!(!w.file("out.car").exists());
    // Missing records file.
    let o = w.run(&[
        "repo",
        "build",
        "--records",
        "absent.jsonl",
        "--key",
        "key.json",
        "--out",
        "out.car",
    ]);
    fails(&o, "missing records file");
    assert!(!w.file("out.car").exists());
}

#[test]
fn a_failed_build_leaves_an_existing_output_untouched() {
    let w = Work::new();
    w.write("out.car", b"previous contents");
    let o = w.build(
        &line(
            "com.example.post",
            Some("f"),
            json!({"$type": "com.example.post", "x": 1.5}),
        ),
        "out.car",
    );
    fails(&o, "float");
    assert_eq!(
        std::fs::read(w.file("out.car")).unwrap(),
        b"previous contents"
    );
    assert_no_tmp(w.path());
}

// ---------------------------------------------------------------------------------------------
// corrupt CARs

/// A small valid repository CAR in a fresh work directory.
fn work_with_repo() -> (Work, Vec<u8>) {
    let w = Work::new();
    let (jsonl, _) = sample_jsonl(6);
    ok(&w.build(&jsonl, "repo.car"));
    let bytes = std::fs::read(w.file("repo.car")).unwrap();
    (w, bytes)
}

/// Runs every reading command on a corrupt CAR `bad.car` and checks each fails cleanly and
/// writes nothing.
fn assert_all_commands_refuse(w: &Work, what: &str, path: &str) {
    let before = listing(w.path());
    fails(
        &w.run(&["repo", "verify", "bad.car"]),
        &format!("{what}: verify"),
    );
    fails(
        &w.run(&["repo", "prove", "bad.car", path, "--out", "proof.car"]),
        &format!("{what}: prove"),
    );
    fails(
        &w.run(&["repo", "verify-proof", "bad.car", path]),
        &format!("{what}: verify-proof"),
    );
    assert_eq!(listing(w.path()), before, "{what}: files changed");
}

#[test]
fn corrupt_cars_are_refused() {
    let (w, bytes) = work_with_repo();
    let path = "com.example.post/r001";
    ok(&w.run(&["repo", "verify", "repo.car"]));

    // Truncated at several places, including inside the header and at the very end.
    for cut in [
        0,
        1,
        5,
        40,
        bytes.len() / 3,
        bytes.len() / 2,
        bytes.len() - 1,
    ] {
        w.write("bad.car", &bytes[..cut]);
        assert_all_commands_refuse(&w, &format!("truncated at {cut}"), path);
        fails(
            &w.run(&["repo", "inspect", "bad.car", "--json"]),
            &format!("truncated at {cut}: inspect"),
        );
    }
    // Bit flips spread over the file: verify must refuse every one.
    let step = (bytes.len() / 40).max(1);
    for i in (0..bytes.len()).step_by(step) {
        let mut m = bytes.clone();
        m[i] ^= 1 << (i % 8);
        w.write("bad.car", &m);
        fails(
            &w.run(&["repo", "verify", "bad.car"]),
            &format!("bit flip at {i}"),
        );
    }
    // A flip in the last byte (inside a block), through every command.
    let mut m = bytes.clone();
    let n = m.len();
    m[n - 1] ^= 0x01;
    w.write("bad.car", &m);
    assert_all_commands_refuse(&w, "last byte flipped", path);
    // Not a CAR at all, and an empty file.
    w.write("bad.car", b"hello world, this is not a CAR file");
    assert_all_commands_refuse(&w, "text file", path);
    w.write("bad.car", b"");
    assert_all_commands_refuse(&w, "empty file", path);
    // A missing file.
    std::fs::remove_file(w.file("bad.car")).unwrap();
    fails(&w.run(&["repo", "verify", "bad.car"]), "missing CAR");
    fails(
        &w.run(&["repo", "inspect", "bad.car"]),
        "missing CAR: inspect",
    );
    assert_no_tmp(w.path());
}

#[test]
fn prove_refuses_absent_and_invalid_paths() {
    let (w, _) = work_with_repo();
    let before = listing(w.path());
    for path in [
        "com.example.post/absent",
        "not-a-path",
        "",
        "com.example.post/",
    ] {
        fails(
            &w.run(&["repo", "prove", "repo.car", path, "--out", "proof.car"]),
            &format!("prove {path:?}"),
        );
        assert_eq!(listing(w.path()), before, "prove {path:?}");
    }
}

#[test]
fn verify_proof_refuses_a_repo_car_for_a_different_path_and_a_tampered_proof() {
    let (w, _) = work_with_repo();
    ok(&w.run(&[
        "repo",
        "prove",
        "repo.car",
        "com.example.post/r002",
        "--out",
        "proof.car",
    ]));
    ok(&w.run(&["repo", "verify-proof", "proof.car", "com.example.post/r002"]));
    fails(
        &w.run(&["repo", "verify-proof", "proof.car", "com.example.post/r003"]),
        "wrong path",
    );
    fails(
        &w.run(&["repo", "verify-proof", "proof.car", "com.example.like/self"]),
        "wrong collection",
    );
    // Every bit flip at a spread of positions in the proof is refused.
    let proof = std::fs::read(w.file("proof.car")).unwrap();
    let step = (proof.len() / 30).max(1);
    for i in (0..proof.len()).step_by(step) {
        let mut m = proof.clone();
        m[i] ^= 1 << (i % 8);
        w.write("bad.car", &m);
        fails(
            &w.run(&["repo", "verify-proof", "bad.car", "com.example.post/r002"]),
            &format!("proof flip at {i}"),
        );
    }
    // A full repository CAR is also a valid proof of any of its records.
    ok(&w.run(&["repo", "verify-proof", "repo.car", "com.example.post/r003"]));
}

/// A line without an `rkey` gets a TID, and the lexicon checks that key: a record type keyed
/// by TIDs builds, one keyed `literal:self` is refused, naming the line.
#[test]
fn build_checks_generated_keys_against_the_lexicon() {
    let w = Work::new();
    let text = json!({"$type": "coop.guild.data.text", "body": "b", "createdAt": "2026-12-05T00:00:00.000Z"});
    let jsonl = format!(
        "{}{}",
        line("coop.guild.data.text", None, text.clone()),
        line("coop.guild.data.text", None, text)
    );
    ok(&w.build(&jsonl, "tid.car"));
    let declaration = json!({
        "$type": "coop.guild.space.declaration",
        "collective": "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua",
        "createdAt": "2026-12-05T00:00:00.000Z",
    });
    let jsonl = format!(
        "{}{}",
        line("com.example.post", Some("p1"), post("x")),
        line("coop.guild.space.declaration", None, declaration)
    );
    let e = fails(
        &w.build(&jsonl, "self.car"),
        "a TID for a literal:self record",
    );
    assert!(e.contains("line 2") && e.contains("record key"), "{e}");
}
