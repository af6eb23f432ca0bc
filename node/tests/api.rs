//! The node's XRPC API through a real HTTP client, against the real binary: `guild init`, then
//! `guild node --listen 127.0.0.1:0` as a child process (killed at the end of each test).
//!
//! Happy paths of every `com.atproto.*` endpoint on the public repo and of the `coop.guild.*`
//! ones on a collective space; every error class with its status and `{"error", "message"}`
//! body; the CARs of `sync.getRepo` (whole and `since`) and the proofs of `sync.getRecord`
//! checked with guild-repo's verifiers; responses read with atrium-api's generated AT types;
//! and the `guild record|import|export|status` commands through the running node.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::process::Stdio;

use common::*;
use guild_core::syntax::{Tid, parse_cid_str};
use guild_repo::{read_car, verify_car, verify_proof};
use serde_json::{Value, json};

const TEXT: &str = "coop.guild.data.text";
const DECL: &str = "coop.guild.space.declaration";
/// A valid NSID with no lexicon.
const NOTE: &str = "com.example.test.note";
const OTHER_DID: &str = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK";

fn tid(n: u64) -> String {
    Tid::from_parts(1_700_000_000_000_000 + n, 7)
        .as_str()
        .to_string()
}

fn rkey_of(uri: &str) -> String {
    uri.rsplit('/').next().unwrap().to_string()
}

fn path_of(uri: &str) -> String {
    let rest = uri.strip_prefix("at://").unwrap();
    rest.split_once('/').unwrap().1.to_string()
}

fn note(text: &str) -> Value {
    json!({"$type": NOTE, "text": text})
}

fn declaration(collective: &str) -> Value {
    json!({
        "$type": DECL,
        "collective": collective,
        "name": "The Test Collective",
        "createdAt": "2024-05-01T12:00:00.000Z",
    })
}

/// Creates a record on the public repo and returns the response.
fn create(node: &Node, collection: &str, rkey: Option<&str>, record: Value) -> Value {
    let mut body = json!({"repo": node.did, "collection": collection, "record": record});
    if let Some(k) = rkey {
        body["rkey"] = json!(k);
    }
    node.post_ok("com.atproto.repo.createRecord", &body)
}

fn latest(node: &Node) -> (String, String) {
    let v = node.get_ok("com.atproto.sync.getLatestCommit", &[("did", &node.did)]);
    (
        v["cid"].as_str().unwrap().to_string(),
        v["rev"].as_str().unwrap().to_string(),
    )
}

/// Every record of a collection, following cursors with the given page size.
fn list_all(
    node: &Node,
    nsid: &str,
    extra: &[(&str, &str)],
    collection: &str,
    limit: usize,
    reverse: bool,
) -> Vec<Value> {
    let limit_s = limit.to_string();
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let mut params: Vec<(&str, &str)> = vec![
            ("repo", node.did.as_str()),
            ("collection", collection),
            ("limit", &limit_s),
        ];
        params.extend_from_slice(extra);
        if reverse {
            params.push(("reverse", "true"));
        }
        if let Some(c) = &cursor {
            params.push(("cursor", c));
        }
        let page = node.get_ok(nsid, &params);
        let records = page["records"].as_array().unwrap().clone();
        assert!(
            records.len() <= limit,
            "page larger than limit: {}",
            records.len()
        );
        let n = records.len();
        out.extend(records);
        match page["cursor"].as_str() {
            Some(c) if n > 0 => cursor = Some(c.to_string()),
            _ => return out,
        }
    }
    panic!("listRecords never ended");
}

fn rkeys(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| rkey_of(r["uri"].as_str().unwrap()))
        .collect()
}

/// The records of a verified repo CAR, as path → CID string.
fn car_records(car: &[u8]) -> (guild_repo::RepoSummary, BTreeMap<String, String>) {
    let car = read_car(car).expect("a readable CAR");
    let summary = verify_car(&car).expect("the repo CAR verifies");
    let map = summary
        .records
        .iter()
        .map(|(p, c)| (p.clone(), c.to_string()))
        .collect();
    (summary, map)
}

// ---------------------------------------------------------------------------------------------
// Happy paths on the public repo
// ---------------------------------------------------------------------------------------------

#[test]
fn public_repo_writes_and_reads() {
    let data = DataDir::init();
    let node = data.start();
    let did = node.did.clone();

    // A fresh node has no public repo yet.
    assert_xrpc_error(
        &node.get("com.atproto.sync.getLatestCommit", &[("did", &did)]),
        400,
        "RepoNotFound",
    );

    // createRecord with a key chosen by the node.
    let c1 = create(&node, TEXT, None, text_record("first"));
    let uri1 = c1["uri"].as_str().unwrap().to_string();
    assert!(uri1.starts_with(&format!("at://{did}/{TEXT}/")), "{c1}");
    let rkey1 = rkey_of(&uri1);
    Tid::parse(&rkey1).expect("the node picks a TID key");
    let cid1 = c1["cid"].as_str().unwrap().to_string();
    parse_cid_str(&cid1).unwrap();
    assert_eq!(c1["validationStatus"], "valid");
    parse_cid_str(c1["commit"]["cid"].as_str().unwrap()).unwrap();
    let rev1 = c1["commit"]["rev"].as_str().unwrap().to_string();
    Tid::parse(&rev1).unwrap();
    assert_eq!(
        latest(&node),
        (
            c1["commit"]["cid"].as_str().unwrap().to_string(),
            rev1.clone()
        )
    );

    // getRecord: open to anyone (public repo), with or without the cid parameter.
    let params = [
        ("repo", did.as_str()),
        ("collection", TEXT),
        ("rkey", rkey1.as_str()),
    ];
    let (status, g) = node.get_as("com.atproto.repo.getRecord", &params, None);
    assert_eq!(status, 200, "{g}");
    assert_eq!(g["uri"], json!(uri1));
    assert_eq!(g["cid"], json!(cid1));
    assert_eq!(g["value"], text_record("first"));
    let with_cid = [params[0], params[1], params[2], ("cid", cid1.as_str())];
    assert_eq!(
        node.get_ok("com.atproto.repo.getRecord", &with_cid)["cid"],
        json!(cid1)
    );

    // createRecord with a caller's key and validate: true.
    let k2 = tid(2);
    let c2 = node.post_ok(
        "com.atproto.repo.createRecord",
        &json!({"repo": did, "collection": TEXT, "rkey": k2, "validate": true, "record": text_record("second")}),
    );
    assert_eq!(c2["uri"], json!(format!("at://{did}/{TEXT}/{k2}")));
    let rev2 = c2["commit"]["rev"].as_str().unwrap().to_string();
    assert!(rev2 > rev1, "revisions increase: {rev1} then {rev2}");
    // Creating it again is refused.
    let again = node.post(
        "com.atproto.repo.createRecord",
        &json!({"repo": did, "collection": TEXT, "rkey": k2, "record": text_record("dup")}),
    );
    assert_xrpc_error(&again, 400, "InvalidRequest");

    // A record type with no lexicon is accepted unvalidated (validate not given).
    let n1 = create(&node, NOTE, Some("note-1"), note("hello"));
    assert_eq!(n1["validationStatus"], "unknown", "{n1}");

    // putRecord replaces; with the right swapRecord; and creates with swapRecord null.
    let p1 = node.post_ok(
        "com.atproto.repo.putRecord",
        &json!({"repo": did, "collection": TEXT, "rkey": rkey1, "record": text_record("first, edited")}),
    );
    assert_eq!(p1["uri"], json!(uri1));
    assert_ne!(p1["cid"], json!(cid1), "new content, new CID");
    assert_eq!(p1["validationStatus"], "valid");
    let got = node.get_ok("com.atproto.repo.getRecord", &params);
    assert_eq!(got["value"], text_record("first, edited"));
    assert_eq!(got["cid"], p1["cid"]);
    let p2 = node.post_ok(
        "com.atproto.repo.putRecord",
        &json!({"repo": did, "collection": TEXT, "rkey": rkey1, "swapRecord": p1["cid"], "record": text_record("first, again")}),
    );
    let k3 = tid(3);
    node.post_ok(
        "com.atproto.repo.putRecord",
        &json!({"repo": did, "collection": TEXT, "rkey": k3, "swapRecord": null, "record": text_record("third")}),
    );

    // deleteRecord.
    let d = node.post_ok(
        "com.atproto.repo.deleteRecord",
        &json!({"repo": did, "collection": TEXT, "rkey": k3}),
    );
    parse_cid_str(d["commit"]["cid"].as_str().unwrap()).unwrap();
    assert_xrpc_error(
        &node.get(
            "com.atproto.repo.getRecord",
            &[("repo", &did), ("collection", TEXT), ("rkey", &k3)],
        ),
        400,
        "RecordNotFound",
    );
    // A CID that is not the record's current one: not found.
    let stale = [params[0], params[1], params[2], ("cid", cid1.as_str())];
    assert_xrpc_error(
        &node.get("com.atproto.repo.getRecord", &stale),
        400,
        "RecordNotFound",
    );

    // applyWrites: create (with and without key), update, delete in one commit.
    let before = latest(&node);
    let k4 = tid(4);
    let aw = node.post_ok(
        "com.atproto.repo.applyWrites",
        &json!({"repo": did, "writes": [
            {"$type": "com.atproto.repo.applyWrites#create", "collection": TEXT, "rkey": k4, "value": text_record("fourth")},
            {"$type": "com.atproto.repo.applyWrites#create", "collection": TEXT, "value": text_record("fifth")},
            {"$type": "com.atproto.repo.applyWrites#update", "collection": TEXT, "rkey": rkey1, "value": text_record("first, third edit")},
            {"$type": "com.atproto.repo.applyWrites#delete", "collection": NOTE, "rkey": "note-1"},
        ]}),
    );
    let results = aw["results"].as_array().unwrap();
    assert_eq!(results.len(), 4, "{aw}");
    assert_eq!(
        results[0]["$type"],
        "com.atproto.repo.applyWrites#createResult"
    );
    assert_eq!(results[0]["uri"], json!(format!("at://{did}/{TEXT}/{k4}")));
    assert_eq!(results[0]["validationStatus"], "valid");
    assert_eq!(
        results[1]["$type"],
        "com.atproto.repo.applyWrites#createResult"
    );
    let k5 = rkey_of(results[1]["uri"].as_str().unwrap());
    Tid::parse(&k5).unwrap();
    assert_eq!(
        results[2]["$type"],
        "com.atproto.repo.applyWrites#updateResult"
    );
    assert_eq!(results[2]["uri"], json!(uri1));
    assert_eq!(
        results[3]["$type"],
        "com.atproto.repo.applyWrites#deleteResult"
    );
    let after = latest(&node);
    assert_eq!(after.0, aw["commit"]["cid"].as_str().unwrap());
    assert_eq!(after.1, aw["commit"]["rev"].as_str().unwrap());
    assert!(after.1 > before.1);
    assert_ne!(p2["cid"], results[2]["cid"]);
    for (k, body) in [
        (&k4, "fourth"),
        (&k5, "fifth"),
        (&rkey1, "first, third edit"),
    ] {
        let v = node.get_ok(
            "com.atproto.repo.getRecord",
            &[("repo", &did), ("collection", TEXT), ("rkey", k)],
        );
        assert_eq!(v["value"], text_record(body));
    }
    assert_xrpc_error(
        &node.get(
            "com.atproto.repo.getRecord",
            &[("repo", &did), ("collection", NOTE), ("rkey", "note-1")],
        ),
        400,
        "RecordNotFound",
    );

    // describeRepo: the collections that hold records.
    let d = node.get_ok("com.atproto.repo.describeRepo", &[("repo", &did)]);
    assert_eq!(d["did"], json!(did));
    assert_eq!(d["collections"], json!([TEXT]), "{d}");
    assert!(d["handle"].is_string());
    assert!(d["handleIsCorrect"].is_boolean());
    create(&node, NOTE, Some("note-2"), note("again"));
    let d = node.get_ok("com.atproto.repo.describeRepo", &[("repo", &did)]);
    assert_eq!(d["collections"], json!([NOTE, TEXT]), "{d}");

    // Reads of the public repo need no token.
    for (nsid, p) in [
        (
            "com.atproto.repo.describeRepo",
            vec![("repo", did.as_str())],
        ),
        (
            "com.atproto.repo.listRecords",
            vec![("repo", did.as_str()), ("collection", TEXT)],
        ),
        (
            "com.atproto.sync.getLatestCommit",
            vec![("did", did.as_str())],
        ),
    ] {
        let (s, v) = node.get_as(nsid, &p, None);
        assert_eq!(s, 200, "{nsid}: {v}");
    }
    let resp = node
        .http
        .get(node.xrpc("com.atproto.sync.getRepo"))
        .query(&[("did", &did)])
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    // The status counts the records: 4 texts and 1 note.
    let s = node.get_ok("coop.guild.node.getStatus", &[]);
    assert_eq!(s["did"], json!(did));
    let repos = s["repos"].as_array().unwrap();
    assert_eq!(repos.len(), 1, "{s}");
    assert_eq!(repos[0]["space"], "public");
    assert_eq!(repos[0]["records"], 5, "{s}");
    assert_eq!(repos[0]["commit"].as_str(), Some(latest(&node).0.as_str()));
}

#[test]
fn list_records_with_cursor_limit_and_reverse() {
    let data = DataDir::init();
    let node = data.start();
    let did = node.did.clone();
    let writes: Vec<Value> = (0..25)
        .map(|i| json!({"$type": "com.atproto.repo.applyWrites#create", "collection": TEXT, "value": text_record(&format!("text {i}"))}))
        .collect();
    let aw = node.post_ok(
        "com.atproto.repo.applyWrites",
        &json!({"repo": did, "writes": writes}),
    );
    let mut expected: Vec<String> = aw["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| rkey_of(r["uri"].as_str().unwrap()))
        .collect();
    expected.sort();
    expected.dedup();
    assert_eq!(expected.len(), 25);
    // Records of another collection stay out of the listing.
    create(&node, NOTE, Some("zzz"), note("other collection"));

    let forward = list_all(&node, "com.atproto.repo.listRecords", &[], TEXT, 10, false);
    assert_eq!(rkeys(&forward), expected);
    let mut rev_expected = expected.clone();
    rev_expected.reverse();
    let backward = list_all(&node, "com.atproto.repo.listRecords", &[], TEXT, 10, true);
    assert_eq!(rkeys(&backward), rev_expected);
    for limit in [1, 7, 25, 100] {
        assert_eq!(
            rkeys(&list_all(
                &node,
                "com.atproto.repo.listRecords",
                &[],
                TEXT,
                limit,
                false
            )),
            expected,
            "limit {limit}"
        );
    }

    // One page: limit, cursor, the cursor is the last rkey of the page.
    let p = node.get_ok(
        "com.atproto.repo.listRecords",
        &[("repo", &did), ("collection", TEXT), ("limit", "10")],
    );
    assert_eq!(p["records"].as_array().unwrap().len(), 10);
    assert_eq!(p["cursor"].as_str(), Some(expected[9].as_str()));
    let p2 = node.get_ok(
        "com.atproto.repo.listRecords",
        &[
            ("repo", &did),
            ("collection", TEXT),
            ("limit", "10"),
            ("cursor", &expected[9]),
        ],
    );
    assert_eq!(
        rkeys(p2["records"].as_array().unwrap()),
        expected[10..20].to_vec()
    );
    // Reverse from a cursor: strictly before it.
    let p3 = node.get_ok(
        "com.atproto.repo.listRecords",
        &[
            ("repo", &did),
            ("collection", TEXT),
            ("limit", "3"),
            ("reverse", "true"),
            ("cursor", &expected[10]),
        ],
    );
    assert_eq!(
        rkeys(p3["records"].as_array().unwrap()),
        vec![
            expected[9].clone(),
            expected[8].clone(),
            expected[7].clone()
        ]
    );
    // The default limit (50) returns all 25 and no cursor.
    let all = node.get_ok(
        "com.atproto.repo.listRecords",
        &[("repo", &did), ("collection", TEXT)],
    );
    assert_eq!(rkeys(all["records"].as_array().unwrap()), expected);
    assert!(
        all.get("cursor").is_none() || all["cursor"].is_null(),
        "{}",
        all["cursor"]
    );
    // Each listed record carries its value and CID, as getRecord gives them.
    let r0 = &all["records"][0];
    let g = node.get_ok(
        "com.atproto.repo.getRecord",
        &[("repo", &did), ("collection", TEXT), ("rkey", &expected[0])],
    );
    assert_eq!(r0["cid"], g["cid"]);
    assert_eq!(r0["value"], g["value"]);
    // An empty collection lists nothing.
    let none = node.get_ok(
        "com.atproto.repo.listRecords",
        &[("repo", &did), ("collection", "com.example.empty")],
    );
    assert_eq!(none["records"], json!([]));
}

#[test]
fn get_repo_car_verifies_and_lists_exactly_the_records() {
    let data = DataDir::init();
    let node = data.start();
    let did = node.did.clone();
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..40 {
        let c = create(&node, TEXT, None, text_record(&format!("work {i}")));
        expected.insert(
            path_of(c["uri"].as_str().unwrap()),
            c["cid"].as_str().unwrap().to_string(),
        );
    }
    for i in 0..5 {
        let c = create(
            &node,
            NOTE,
            Some(&format!("n{i}")),
            note(&format!("note {i}")),
        );
        expected.insert(
            path_of(c["uri"].as_str().unwrap()),
            c["cid"].as_str().unwrap().to_string(),
        );
    }
    // Some updates and deletes.
    let paths: Vec<String> = expected.keys().cloned().collect();
    for p in paths.iter().take(12) {
        let (c, k) = p.split_once('/').unwrap();
        if c == TEXT {
            let r = node.post_ok(
                "com.atproto.repo.putRecord",
                &json!({"repo": did, "collection": c, "rkey": k, "record": text_record(&format!("edited {k}"))}),
            );
            expected.insert(p.clone(), r["cid"].as_str().unwrap().to_string());
        }
    }
    for p in paths.iter().skip(10).take(5) {
        let (c, k) = p.split_once('/').unwrap();
        node.post_ok(
            "com.atproto.repo.deleteRecord",
            &json!({"repo": did, "collection": c, "rkey": k}),
        );
        expected.remove(p);
    }

    let car = node.get_bytes("com.atproto.sync.getRepo", &[("did", &did)]);
    let (summary, records) = car_records(&car);
    assert_eq!(
        records, expected,
        "the CAR holds exactly the records written"
    );
    assert_eq!(summary.did, did);
    let (commit, rev) = latest(&node);
    assert_eq!(summary.commit.to_string(), commit);
    assert_eq!(summary.rev.as_str(), rev);
    // The node's own index agrees with the tree.
    let listed: BTreeMap<String, String> = [TEXT, NOTE]
        .iter()
        .flat_map(|c| list_all(&node, "com.atproto.repo.listRecords", &[], c, 100, false))
        .map(|r| {
            (
                path_of(r["uri"].as_str().unwrap()),
                r["cid"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(listed, expected);
}

#[test]
fn get_repo_since_returns_the_new_commit_and_records() {
    let data = DataDir::init();
    let node = data.start();
    let did = node.did.clone();
    let mut old_cids = Vec::new();
    for i in 0..10 {
        let c = create(&node, TEXT, None, text_record(&format!("old {i}")));
        old_cids.push(c["cid"].as_str().unwrap().to_string());
    }
    let (_, since) = latest(&node);
    let mut new_cids = Vec::new();
    for batch in 0..2 {
        let writes: Vec<Value> = (0..3)
            .map(|i| json!({"$type": "com.atproto.repo.applyWrites#create", "collection": TEXT, "value": text_record(&format!("new {batch} {i}"))}))
            .collect();
        let aw = node.post_ok(
            "com.atproto.repo.applyWrites",
            &json!({"repo": did, "writes": writes}),
        );
        for r in aw["results"].as_array().unwrap() {
            new_cids.push(r["cid"].as_str().unwrap().to_string());
        }
    }
    let (head, head_rev) = latest(&node);
    assert!(head_rev > since);

    let bytes = node.get_bytes(
        "com.atproto.sync.getRepo",
        &[("did", &did), ("since", &since)],
    );
    let car = read_car(&bytes).expect("a readable CAR");
    assert_eq!(
        car.roots
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec![head.clone()]
    );
    let blocks: BTreeSet<String> = car.blocks.iter().map(|(c, _)| c.to_string()).collect();
    assert!(blocks.contains(&head), "the diff holds the new commit");
    for c in &new_cids {
        assert!(blocks.contains(c), "the diff holds new record {c}");
    }
    for c in &old_cids {
        assert!(
            !blocks.contains(c),
            "the diff should not resend unchanged record {c}"
        );
    }
    let full = read_car(&node.get_bytes("com.atproto.sync.getRepo", &[("did", &did)])).unwrap();
    assert!(car.blocks.len() < full.blocks.len());

    // Since the head itself: just the commit.
    let same = read_car(&node.get_bytes(
        "com.atproto.sync.getRepo",
        &[("did", &did), ("since", &head_rev)],
    ))
    .unwrap();
    assert!(same.blocks.get(&same.roots[0]).is_some());
    assert!(
        same.blocks.len() <= 2,
        "nothing changed since the head: {} blocks",
        same.blocks.len()
    );

    // A revision this repo never had, and one that is not a TID.
    let unknown = tid(1);
    assert_xrpc_error(
        &node.get(
            "com.atproto.sync.getRepo",
            &[("did", &did), ("since", &unknown)],
        ),
        400,
        "InvalidRequest",
    );
    assert_xrpc_error(
        &node.get(
            "com.atproto.sync.getRepo",
            &[("did", &did), ("since", "yesterday")],
        ),
        400,
        "InvalidRequest",
    );
}

#[test]
fn sync_get_record_proof_verifies() {
    let data = DataDir::init();
    let node = data.start();
    let did = node.did.clone();
    let mut made = Vec::new();
    for i in 0..30 {
        let c = create(&node, TEXT, None, text_record(&format!("proved {i}")));
        made.push((
            path_of(c["uri"].as_str().unwrap()),
            c["cid"].as_str().unwrap().to_string(),
            i,
        ));
    }
    let (head, rev) = latest(&node);
    for (path, cid, i) in [&made[0], &made[17], &made[29]] {
        let (c, k) = path.split_once('/').unwrap();
        let bytes = node.get_bytes(
            "com.atproto.sync.getRecord",
            &[("did", &did), ("collection", c), ("rkey", k)],
        );
        let car = read_car(&bytes).expect("a readable proof CAR");
        let proven = verify_proof(&car, path).expect("the proof verifies");
        assert_eq!(proven.did, did);
        assert_eq!(proven.cid.to_string(), *cid);
        assert_eq!(proven.commit.to_string(), head);
        assert_eq!(proven.rev.as_str(), rev);
        assert_eq!(
            guild_core::data::to_json(&proven.record),
            text_record(&format!("proved {i}"))
        );
        // The proof is small: the commit, one MST node per layer of the tree (the layers
        // come from the keys' hashes, so the height is a property of these 30 keys), the
        // record.
        let height = made
            .iter()
            .map(|(p, _, _)| guild_repo::mst::key_height(p.as_bytes()))
            .max()
            .unwrap()
            + 1;
        assert!(
            car.blocks.len() <= 2 + height as usize,
            "{} blocks for a tree of height {height}",
            car.blocks.len()
        );
        // And it proves nothing about another path.
        assert!(verify_proof(&car, &made[5].0).is_err() || made[5].0 == *path);
    }
    // A record that does not exist, or no longer does.
    assert_xrpc_error(
        &node.get(
            "com.atproto.sync.getRecord",
            &[("did", &did), ("collection", TEXT), ("rkey", &tid(99))],
        ),
        400,
        "RecordNotFound",
    );
    let (c, k) = made[3].0.split_once('/').unwrap();
    node.post_ok(
        "com.atproto.repo.deleteRecord",
        &json!({"repo": did, "collection": c, "rkey": k}),
    );
    assert_xrpc_error(
        &node.get(
            "com.atproto.sync.getRecord",
            &[("did", &did), ("collection", c), ("rkey", k)],
        ),
        400,
        "RecordNotFound",
    );
    assert_xrpc_error(
        &node.get(
            "com.atproto.sync.getRecord",
            &[("did", &did), ("collection", TEXT)],
        ),
        400,
        "InvalidRequest",
    );
}

// ---------------------------------------------------------------------------------------------
// Collective spaces
// ---------------------------------------------------------------------------------------------

#[test]
fn collective_space_writes_and_reads() {
    let data = DataDir::init();
    let node = data.start();
    let did = node.did.clone();
    let sp = [("space", SPACE)];

    // Nothing there yet.
    assert_xrpc_error(
        &node.get(
            "coop.guild.sync.getLatestCommit",
            &[("did", &did), ("space", SPACE)],
        ),
        400,
        "RepoNotFound",
    );
    // The first commit must declare the space...
    let no_decl = node.post(
        "coop.guild.repo.createRecord",
        &json!({"repo": did, "space": SPACE, "collection": TEXT, "record": text_record("too early")}),
    );
    assert_xrpc_error(&no_decl, 400, "InvalidRequest");
    assert!(
        no_decl.1["message"].as_str().unwrap().contains(DECL),
        "{}",
        no_decl.1
    );
    // ...naming this collective, not another.
    let other = "bafyreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
    assert_xrpc_error(
        &node.post(
            "coop.guild.repo.createRecord",
            &json!({"repo": did, "space": SPACE, "collection": DECL, "rkey": "self", "record": declaration(other)}),
        ),
        400,
        "InvalidRequest",
    );
    let decl = node.post_ok(
        "coop.guild.repo.createRecord",
        &json!({"repo": did, "space": SPACE, "collection": DECL, "rkey": "self", "record": declaration(SPACE)}),
    );
    assert_eq!(decl["uri"], json!(format!("at://{did}/{DECL}/self")));
    assert_eq!(decl["validationStatus"], "valid");
    // The declaration stays: no delete (deleteRecord, applyWrites), no rewrite naming another
    // collective (putRecord, applyWrites#update); each refusal leaves the repo as it was.
    let space_head = || {
        node.get_ok(
            "coop.guild.sync.getLatestCommit",
            &[("did", &did), ("space", SPACE)],
        )
    };
    let head = space_head();
    for (method, body) in [
        (
            "coop.guild.repo.deleteRecord",
            json!({"repo": did, "space": SPACE, "collection": DECL, "rkey": "self"}),
        ),
        (
            "coop.guild.repo.applyWrites",
            json!({"repo": did, "space": SPACE, "writes": [
                {"$type": "com.atproto.repo.applyWrites#delete", "collection": DECL, "rkey": "self"},
            ]}),
        ),
    ] {
        let refused = node.post(method, &body);
        assert_xrpc_error(&refused, 400, "InvalidRequest");
        let message = refused.1["message"].as_str().unwrap();
        assert!(
            message.contains("space declaration") && message.contains("cannot be deleted"),
            "{method}: {message}"
        );
    }
    for (method, body) in [
        (
            "coop.guild.repo.putRecord",
            json!({"repo": did, "space": SPACE, "collection": DECL, "rkey": "self", "record": declaration(other)}),
        ),
        (
            "coop.guild.repo.applyWrites",
            json!({"repo": did, "space": SPACE, "writes": [
                {"$type": "com.atproto.repo.applyWrites#update", "collection": DECL, "rkey": "self", "value": declaration(other)},
            ]}),
        ),
    ] {
        assert_xrpc_error(&node.post(method, &body), 400, "InvalidRequest");
    }
    assert_eq!(space_head(), head);

    // Writes: create, put, applyWrites, delete.
    let c1 = node.post_ok(
        "coop.guild.repo.createRecord",
        &json!({"repo": did, "space": SPACE, "collection": TEXT, "record": text_record("for the collective")}),
    );
    let k1 = rkey_of(c1["uri"].as_str().unwrap());
    let k2 = tid(2);
    node.post_ok(
        "coop.guild.repo.putRecord",
        &json!({"repo": did, "space": SPACE, "collection": TEXT, "rkey": k2, "record": text_record("put")}),
    );
    let aw = node.post_ok(
        "coop.guild.repo.applyWrites",
        &json!({"repo": did, "space": SPACE, "writes": [
            {"$type": "com.atproto.repo.applyWrites#create", "collection": TEXT, "rkey": tid(3), "value": text_record("three")},
            {"$type": "com.atproto.repo.applyWrites#update", "collection": TEXT, "rkey": k2, "value": text_record("put, edited")},
        ]}),
    );
    assert_eq!(aw["results"].as_array().unwrap().len(), 2);
    node.post_ok(
        "coop.guild.repo.deleteRecord",
        &json!({"repo": did, "space": SPACE, "collection": TEXT, "rkey": tid(3)}),
    );

    // Reads, all with the token.
    let g = node.get_ok(
        "coop.guild.repo.getRecord",
        &[
            ("repo", &did),
            ("space", SPACE),
            ("collection", TEXT),
            ("rkey", &k1),
        ],
    );
    assert_eq!(g["value"], text_record("for the collective"));
    assert_eq!(g["cid"], c1["cid"]);
    let listed = list_all(&node, "coop.guild.repo.listRecords", &sp, TEXT, 1, false);
    let mut want = vec![k1.clone(), k2.clone()];
    want.sort();
    assert_eq!(rkeys(&listed), want);
    let d = node.get_ok(
        "coop.guild.repo.describeRepo",
        &[("repo", &did), ("space", SPACE)],
    );
    assert_eq!(d["collections"], json!([TEXT, DECL]), "{d}");
    let lc = node.get_ok(
        "coop.guild.sync.getLatestCommit",
        &[("did", &did), ("space", SPACE)],
    );
    let car = node.get_bytes(
        "coop.guild.sync.getRepo",
        &[("did", &did), ("space", SPACE)],
    );
    let (summary, records) = car_records(&car);
    assert_eq!(summary.commit.to_string(), lc["cid"].as_str().unwrap());
    assert_eq!(
        records.keys().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from([
            format!("{DECL}/self"),
            format!("{TEXT}/{}", want[0]),
            format!("{TEXT}/{}", want[1])
        ])
    );
    let proof = node.get_bytes(
        "coop.guild.sync.getRecord",
        &[
            ("did", &did),
            ("space", SPACE),
            ("collection", DECL),
            ("rkey", "self"),
        ],
    );
    let proven = verify_proof(&read_car(&proof).unwrap(), &format!("{DECL}/self"))
        .expect("space proof verifies");
    assert_eq!(
        guild_core::data::to_json(&proven.record),
        declaration(SPACE)
    );

    // The space is not the public repo: the public repo does not exist yet, and the status
    // shows the space with its 3 records.
    assert_xrpc_error(
        &node.get(
            "com.atproto.repo.getRecord",
            &[("repo", &did), ("collection", TEXT), ("rkey", &k1)],
        ),
        400,
        "RepoNotFound",
    );
    let s = node.get_ok("coop.guild.node.getStatus", &[]);
    let repos = s["repos"].as_array().unwrap();
    assert_eq!(repos.len(), 1, "{s}");
    assert_eq!(repos[0]["space"], json!(SPACE));
    assert_eq!(repos[0]["records"], 3);

    // Every collective read and write needs the token.
    for (nsid, p) in [
        (
            "coop.guild.repo.getRecord",
            vec![
                ("repo", did.as_str()),
                ("space", SPACE),
                ("collection", TEXT),
                ("rkey", k1.as_str()),
            ],
        ),
        (
            "coop.guild.repo.listRecords",
            vec![
                ("repo", did.as_str()),
                ("space", SPACE),
                ("collection", TEXT),
            ],
        ),
        (
            "coop.guild.repo.describeRepo",
            vec![("repo", did.as_str()), ("space", SPACE)],
        ),
        (
            "coop.guild.sync.getRepo",
            vec![("did", did.as_str()), ("space", SPACE)],
        ),
        (
            "coop.guild.sync.getLatestCommit",
            vec![("did", did.as_str()), ("space", SPACE)],
        ),
        (
            "coop.guild.sync.getRecord",
            vec![
                ("did", did.as_str()),
                ("space", SPACE),
                ("collection", DECL),
                ("rkey", "self"),
            ],
        ),
    ] {
        assert_xrpc_error(&node.get_as(nsid, &p, None), 401, "AuthenticationRequired");
        assert_xrpc_error(
            &node.get_as(nsid, &p, Some("not-the-token")),
            401,
            "AuthenticationRequired",
        );
    }
    assert_xrpc_error(
        &node.post_as(
            "coop.guild.repo.createRecord",
            &json!({"repo": did, "space": SPACE, "collection": TEXT, "record": text_record("x")}),
            None,
        ),
        401,
        "AuthenticationRequired",
    );

    // A type with no lexicon is refused in a space, whatever the validate flag says.
    for validate in [json!(null), json!(false), json!(true)] {
        let r = node.post(
            "coop.guild.repo.createRecord",
            &json!({"repo": did, "space": SPACE, "collection": NOTE, "rkey": "n1", "validate": validate, "record": note("unknown type")}),
        );
        assert_xrpc_error(&r, 400, "InvalidRecord");
    }
    // So is a lexicon violation, even with validate: false.
    let r = node.post(
        "coop.guild.repo.createRecord",
        &json!({"repo": did, "space": SPACE, "collection": TEXT, "validate": false, "record": {"$type": TEXT, "createdAt": "2024-05-01T12:00:00.000Z"}}),
    );
    assert_xrpc_error(&r, 400, "InvalidRecord");

    // The space parameter: required on coop.guild.*, refused on com.atproto.*, must be a CID.
    assert_xrpc_error(
        &node.get(
            "coop.guild.repo.getRecord",
            &[("repo", &did), ("collection", TEXT), ("rkey", &k1)],
        ),
        400,
        "InvalidRequest",
    );
    assert_xrpc_error(
        &node.get(
            "com.atproto.repo.getRecord",
            &[
                ("repo", &did),
                ("space", SPACE),
                ("collection", TEXT),
                ("rkey", &k1),
            ],
        ),
        400,
        "InvalidRequest",
    );
    assert_xrpc_error(
        &node.post(
            "com.atproto.repo.createRecord",
            &json!({"repo": did, "space": SPACE, "collection": TEXT, "record": text_record("x")}),
        ),
        400,
        "InvalidRequest",
    );
    assert_xrpc_error(
        &node.get(
            "coop.guild.repo.listRecords",
            &[("repo", &did), ("space", "not-a-cid"), ("collection", TEXT)],
        ),
        400,
        "InvalidRequest",
    );
    assert_xrpc_error(
        &node.post("coop.guild.repo.createRecord", &json!({"repo": did, "space": "../public", "collection": TEXT, "record": text_record("x")})),
        400,
        "InvalidRequest",
    );
    // The same collective id in another base than its canonical one is not a space, for
    // this node's own repo and for any other member's.
    let base58 = "zdpuAw4C1SotmvRQ8EPfs8qSEaDkiLEQZ8SamRuX8HyNSVxCr";
    assert_eq!(parse_cid_str(base58).unwrap().to_string(), SPACE);
    let other = guild_core::Keypair::from_secret_bytes(&[9; 32]).did();
    for repo in [&did, &other] {
        let r = node.get(
            "coop.guild.repo.listRecords",
            &[("repo", repo), ("space", base58), ("collection", TEXT)],
        );
        assert_xrpc_error(&r, 400, "InvalidRequest");
        let message = r.1["message"].as_str().unwrap_or_default();
        assert!(message.contains("space must be"), "{message}");
    }
}

// ---------------------------------------------------------------------------------------------
// Error classes
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_params_are_invalid_requests() {
    let data = DataDir::init();
    let node = data.start();
    let did = node.did.clone();
    let c = create(&node, TEXT, None, text_record("exists"));
    let k = rkey_of(c["uri"].as_str().unwrap());

    let gets: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "com.atproto.repo.getRecord",
            vec![("collection", TEXT), ("rkey", &k)],
        ),
        (
            "com.atproto.repo.getRecord",
            vec![("repo", &did), ("rkey", &k)],
        ),
        (
            "com.atproto.repo.getRecord",
            vec![("repo", &did), ("collection", TEXT)],
        ),
        (
            "com.atproto.repo.getRecord",
            vec![
                ("repo", &did),
                ("collection", TEXT),
                ("rkey", &k),
                ("cid", "not-a-cid"),
            ],
        ),
        ("com.atproto.repo.listRecords", vec![("repo", &did)]),
        ("com.atproto.repo.listRecords", vec![("collection", TEXT)]),
        (
            "com.atproto.repo.listRecords",
            vec![("repo", &did), ("collection", TEXT), ("limit", "0")],
        ),
        (
            "com.atproto.repo.listRecords",
            vec![("repo", &did), ("collection", TEXT), ("limit", "101")],
        ),
        (
            "com.atproto.repo.listRecords",
            vec![("repo", &did), ("collection", TEXT), ("limit", "-1")],
        ),
        (
            "com.atproto.repo.listRecords",
            vec![("repo", &did), ("collection", TEXT), ("limit", "ten")],
        ),
        (
            "com.atproto.repo.listRecords",
            vec![("repo", &did), ("collection", TEXT), ("limit", "")],
        ),
        (
            "com.atproto.repo.listRecords",
            vec![("repo", &did), ("collection", TEXT), ("reverse", "yes")],
        ),
        ("com.atproto.repo.describeRepo", vec![]),
        ("com.atproto.sync.getRepo", vec![]),
        ("com.atproto.sync.getLatestCommit", vec![]),
        (
            "com.atproto.sync.getRecord",
            vec![("did", &did), ("rkey", &k)],
        ),
    ];
    for (nsid, p) in &gets {
        let r = node.get(nsid, p);
        assert_xrpc_error(&r, 400, "InvalidRequest");
    }

    let posts: Vec<(&str, Value)> = vec![
        // Missing fields.
        (
            "com.atproto.repo.createRecord",
            json!({"collection": TEXT, "record": text_record("x")}),
        ),
        (
            "com.atproto.repo.createRecord",
            json!({"repo": did, "record": text_record("x")}),
        ),
        (
            "com.atproto.repo.createRecord",
            json!({"repo": did, "collection": TEXT}),
        ),
        (
            "com.atproto.repo.putRecord",
            json!({"repo": did, "collection": TEXT, "record": text_record("x")}),
        ),
        (
            "com.atproto.repo.deleteRecord",
            json!({"repo": did, "collection": TEXT}),
        ),
        ("com.atproto.repo.applyWrites", json!({"repo": did})),
        // Wrong types.
        (
            "com.atproto.repo.createRecord",
            json!({"repo": 42, "collection": TEXT, "record": text_record("x")}),
        ),
        (
            "com.atproto.repo.createRecord",
            json!({"repo": did, "collection": [TEXT], "record": text_record("x")}),
        ),
        (
            "com.atproto.repo.createRecord",
            json!({"repo": did, "collection": TEXT, "record": "a string"}),
        ),
        (
            "com.atproto.repo.createRecord",
            json!({"repo": did, "collection": TEXT, "record": text_record("x"), "rkey": 12}),
        ),
        (
            "com.atproto.repo.createRecord",
            json!({"repo": did, "collection": TEXT, "record": text_record("x"), "validate": "yes"}),
        ),
        (
            "com.atproto.repo.createRecord",
            json!({"repo": did, "collection": TEXT, "record": text_record("x"), "swapCommit": "not-a-cid"}),
        ),
        (
            "com.atproto.repo.putRecord",
            json!({"repo": did, "collection": TEXT, "rkey": k, "record": text_record("x"), "swapRecord": 5}),
        ),
        (
            "com.atproto.repo.applyWrites",
            json!({"repo": did, "writes": {"a": 1}}),
        ),
        (
            "com.atproto.repo.applyWrites",
            json!({"repo": did, "writes": []}),
        ),
        (
            "com.atproto.repo.applyWrites",
            json!({"repo": did, "writes": [{"collection": TEXT, "value": text_record("x")}]}),
        ),
        (
            "com.atproto.repo.applyWrites",
            json!({"repo": did, "writes": [{"$type": "com.atproto.repo.applyWrites#upsert", "collection": TEXT, "value": text_record("x")}]}),
        ),
        (
            "com.atproto.repo.applyWrites",
            json!({"repo": did, "writes": [{"$type": "com.atproto.repo.applyWrites#create", "value": text_record("x")}]}),
        ),
        (
            "com.atproto.repo.applyWrites",
            json!({"repo": did, "writes": [{"$type": "com.atproto.repo.applyWrites#update", "collection": TEXT, "value": text_record("x")}]}),
        ),
        (
            "com.atproto.repo.applyWrites",
            json!({"repo": did, "writes": ["not an object"]}),
        ),
        // Not an object at all.
        ("com.atproto.repo.createRecord", json!([1, 2, 3])),
        ("com.atproto.repo.createRecord", json!("text")),
    ];
    for (nsid, body) in &posts {
        let r = node.post(nsid, body);
        assert_xrpc_error(&r, 400, "InvalidRequest");
    }

    // A body that is not JSON, and a content type that is not JSON.
    let raw = |ct: &str, body: &str| {
        json_response(
            node.http
                .post(node.xrpc("com.atproto.repo.createRecord"))
                .bearer_auth(&node.token)
                .header(reqwest::header::CONTENT_TYPE, ct)
                .body(body.to_string())
                .send()
                .unwrap(),
        )
    };
    assert_xrpc_error(&raw("application/json", "{not json"), 400, "InvalidRequest");
    assert_xrpc_error(&raw("application/json", ""), 400, "InvalidRequest");
    let valid = json!({"repo": did, "collection": TEXT, "record": text_record("x")}).to_string();
    assert_xrpc_error(&raw("text/plain", &valid), 400, "InvalidRequest");

    // Nothing was written by any of it.
    let all = list_all(&node, "com.atproto.repo.listRecords", &[], TEXT, 100, false);
    assert_eq!(all.len(), 1);
}

#[test]
fn bad_collection_and_rkey_syntax() {
    let data = DataDir::init();
    let node = data.start();
    let did = node.did.clone();
    let c = create(&node, TEXT, None, text_record("exists"));
    let k = rkey_of(c["uri"].as_str().unwrap());

    for collection in [
        "not an nsid",
        "coop",
        "coop..guild.x",
        "",
        "coop.guild.data.text/x",
    ] {
        let r = node.post(
            "com.atproto.repo.createRecord",
            &json!({"repo": did, "collection": collection, "record": {"$type": collection, "body": "x"}}),
        );
        assert_xrpc_error(&r, 400, "InvalidRequest");
        let r = node.get(
            "com.atproto.repo.listRecords",
            &[("repo", &did), ("collection", collection)],
        );
        assert_xrpc_error(&r, 400, "InvalidRequest");
    }
    for rkey in ["a/b", "..", ".", "has space", "ünïcode", &"x".repeat(600)] {
        let r = node.post(
            "com.atproto.repo.createRecord",
            &json!({"repo": did, "collection": NOTE, "rkey": rkey, "record": note("x")}),
        );
        assert_xrpc_error(&r, 400, "InvalidRequest");
        let r = node.post(
            "com.atproto.repo.putRecord",
            &json!({"repo": did, "collection": NOTE, "rkey": rkey, "record": note("x")}),
        );
        assert_xrpc_error(&r, 400, "InvalidRequest");
    }
    // A valid key that breaks the lexicon's key type (coop.guild.data.text keys are TIDs).
    let r = node.post(
        "com.atproto.repo.createRecord",
        &json!({"repo": did, "collection": TEXT, "rkey": "my-essay", "record": text_record("x")}),
    );
    assert_xrpc_error(&r, 400, "InvalidRecord");
    // A collection with no lexicon: refused when validation is required, accepted otherwise.
    let r = node.post(
        "com.atproto.repo.createRecord",
        &json!({"repo": did, "collection": NOTE, "validate": true, "record": note("x")}),
    );
    assert_xrpc_error(&r, 400, "InvalidRecord");
    let ok = create(&node, NOTE, None, note("x"));
    assert_eq!(ok["validationStatus"], "unknown");
    // $type must be the collection, and present.
    let r = node.post(
        "com.atproto.repo.createRecord",
        &json!({"repo": did, "collection": NOTE, "record": text_record("x")}),
    );
    assert_xrpc_error(&r, 400, "InvalidRecord");
    let r = node.post(
        "com.atproto.repo.createRecord",
        &json!({"repo": did, "collection": NOTE, "record": {"text": "no type"}}),
    );
    assert_xrpc_error(&r, 400, "InvalidRecord");
    // The record that exists is still the only text.
    let all = list_all(&node, "com.atproto.repo.listRecords", &[], TEXT, 100, false);
    assert_eq!(rkeys(&all), vec![k]);
}

#[test]
fn get_record_with_malformed_collection_or_rkey_is_an_invalid_request() {
    let data = DataDir::init();
    let node = data.start();
    let did = node.did.clone();
    let c = create(&node, TEXT, None, text_record("exists"));
    let k = rkey_of(c["uri"].as_str().unwrap());
    // As listRecords does (and AT's lexicon for getRecord: collection is an NSID, rkey a
    // record key), a malformed parameter is a bad request, not a missing record.
    for (nsid, p) in [
        (
            "com.atproto.repo.getRecord",
            vec![
                ("repo", did.as_str()),
                ("collection", "not an nsid"),
                ("rkey", k.as_str()),
            ],
        ),
        (
            "com.atproto.repo.getRecord",
            vec![
                ("repo", did.as_str()),
                ("collection", TEXT),
                ("rkey", "a/b"),
            ],
        ),
        (
            "com.atproto.sync.getRecord",
            vec![
                ("did", did.as_str()),
                ("collection", "not an nsid"),
                ("rkey", k.as_str()),
            ],
        ),
        (
            "com.atproto.sync.getRecord",
            vec![("did", did.as_str()), ("collection", TEXT), ("rkey", "..")],
        ),
    ] {
        let r = node.get(nsid, &p);
        assert_xrpc_error(&r, 400, "InvalidRequest");
    }
}

#[test]
fn lexicon_violations_are_invalid_records() {
    let data = DataDir::init();
    let node = data.start();
    let did = node.did.clone();
    create(&node, TEXT, None, text_record("the first"));
    let head = latest(&node);

    // coop.guild.data.text without its required body.
    let no_body = json!({"$type": TEXT, "createdAt": "2024-05-01T12:00:00.000Z"});
    for validate in [None, Some(true)] {
        let mut body = json!({"repo": did, "collection": TEXT, "record": no_body});
        if let Some(v) = validate {
            body["validate"] = json!(v);
        }
        let r = node.post("com.atproto.repo.createRecord", &body);
        assert_xrpc_error(&r, 400, "InvalidRecord");
        assert!(r.1["message"].as_str().unwrap().contains("body"), "{}", r.1);
    }
    for bad in [
        json!({"$type": TEXT, "body": 42, "createdAt": "2024-05-01T12:00:00.000Z"}),
        json!({"$type": TEXT, "body": "", "createdAt": "2024-05-01T12:00:00.000Z"}),
        json!({"$type": TEXT, "body": "x", "createdAt": "yesterday"}),
        json!({"$type": TEXT, "body": "x", "createdAt": "2024-05-01T12:00:00.000Z", "tags": "not-an-array"}),
        json!({"$type": TEXT, "body": "x", "createdAt": "2024-05-01T12:00:00.000Z", "language": "not a language tag"}),
    ] {
        let r = node.post(
            "com.atproto.repo.createRecord",
            &json!({"repo": did, "collection": TEXT, "record": bad}),
        );
        assert_xrpc_error(&r, 400, "InvalidRecord");
    }
    // Data-model violations are invalid records whatever the flag (a float).
    let r = node.post(
        "com.atproto.repo.createRecord",
        &json!({"repo": did, "collection": NOTE, "validate": false, "record": {"$type": NOTE, "n": 1.5}}),
    );
    assert_xrpc_error(&r, 400, "InvalidRecord");
    // Through putRecord and applyWrites too; a failing write in a batch writes nothing.
    let r = node.post(
        "com.atproto.repo.putRecord",
        &json!({"repo": did, "collection": TEXT, "rkey": tid(1), "record": no_body}),
    );
    assert_xrpc_error(&r, 400, "InvalidRecord");
    let r = node.post(
        "com.atproto.repo.applyWrites",
        &json!({"repo": did, "writes": [
            {"$type": "com.atproto.repo.applyWrites#create", "collection": TEXT, "rkey": tid(2), "value": text_record("ok")},
            {"$type": "com.atproto.repo.applyWrites#create", "collection": TEXT, "rkey": tid(3), "value": text_record("ok")},
            {"$type": "com.atproto.repo.applyWrites#create", "collection": TEXT, "rkey": tid(4), "value": no_body},
            {"$type": "com.atproto.repo.applyWrites#create", "collection": TEXT, "rkey": tid(5), "value": text_record("ok")},
        ]}),
    );
    assert_xrpc_error(&r, 400, "InvalidRecord");
    assert_eq!(latest(&node), head, "nothing was committed");
    assert_eq!(
        list_all(&node, "com.atproto.repo.listRecords", &[], TEXT, 100, false).len(),
        1
    );

    // validate: false skips the lexicon; the record is stored as is, status unknown.
    let r = node.post_ok(
        "com.atproto.repo.createRecord",
        &json!({"repo": did, "collection": TEXT, "validate": false, "record": no_body}),
    );
    assert_eq!(r["validationStatus"], "unknown", "{r}");
    let k = rkey_of(r["uri"].as_str().unwrap());
    let g = node.get_ok(
        "com.atproto.repo.getRecord",
        &[("repo", &did), ("collection", TEXT), ("rkey", &k)],
    );
    assert_eq!(g["value"], no_body);
}

#[test]
fn missing_or_wrong_auth_is_refused() {
    let data = DataDir::init();
    let node = data.start();
    let did = node.did.clone();
    let c = create(&node, TEXT, None, text_record("exists"));
    let k = rkey_of(c["uri"].as_str().unwrap());
    let head = latest(&node);

    let writes: Vec<(&str, Value)> = vec![
        (
            "com.atproto.repo.createRecord",
            json!({"repo": did, "collection": TEXT, "record": text_record("x")}),
        ),
        (
            "com.atproto.repo.putRecord",
            json!({"repo": did, "collection": TEXT, "rkey": k, "record": text_record("x")}),
        ),
        (
            "com.atproto.repo.deleteRecord",
            json!({"repo": did, "collection": TEXT, "rkey": k}),
        ),
        (
            "com.atproto.repo.applyWrites",
            json!({"repo": did, "writes": [{"$type": "com.atproto.repo.applyWrites#delete", "collection": TEXT, "rkey": k}]}),
        ),
    ];
    let wrong = format!("{}x", node.token);
    let short = node.token[..node.token.len() - 1].to_string();
    for (nsid, body) in &writes {
        assert_xrpc_error(
            &node.post_as(nsid, body, None),
            401,
            "AuthenticationRequired",
        );
        for t in [wrong.as_str(), short.as_str(), "", "Bearer"] {
            assert_xrpc_error(
                &node.post_as(nsid, body, Some(t)),
                401,
                "AuthenticationRequired",
            );
        }
        // The token in another scheme is not a bearer token.
        let r = json_response(
            node.http
                .post(node.xrpc(nsid))
                .header(
                    reqwest::header::AUTHORIZATION,
                    format!("Basic {}", node.token),
                )
                .json(body)
                .send()
                .unwrap(),
        );
        assert_xrpc_error(&r, 401, "AuthenticationRequired");
        // Auth is checked before the body is read.
        let r = json_response(
            node.http
                .post(node.xrpc(nsid))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body("{garbage")
                .send()
                .unwrap(),
        );
        assert_xrpc_error(&r, 401, "AuthenticationRequired");
    }
    assert_xrpc_error(
        &node.get_as("coop.guild.node.getStatus", &[], None),
        401,
        "AuthenticationRequired",
    );
    assert_xrpc_error(
        &node.get_as("coop.guild.node.getStatus", &[], Some(&wrong)),
        401,
        "AuthenticationRequired",
    );
    assert_eq!(latest(&node), head, "nothing was written");
    // The record is still there.
    node.get_ok(
        "com.atproto.repo.getRecord",
        &[("repo", &did), ("collection", TEXT), ("rkey", &k)],
    );
}

#[test]
fn oversized_bodies_are_refused_with_413() {
    let data = DataDir::init();
    let node = data.start();
    let did = node.did.clone();
    // Just over the default max_body_bytes (5 000 000).
    let big = "x".repeat(5_000_100);
    let r = node.post(
        "com.atproto.repo.createRecord",
        &json!({"repo": did, "collection": TEXT, "record": text_record(&big)}),
    );
    assert_xrpc_error(&r, 413, "PayloadTooLarge");
    // A large body under the limit is fine (a 800 kB text).
    let r = create(&node, TEXT, None, text_record(&"y".repeat(800_000)));
    assert_eq!(r["validationStatus"], "valid");
    drop(node);

    // The limit comes from the configuration (here GUILD_MAX_BODY_BYTES).
    let node = data.start_with(&[("GUILD_MAX_BODY_BYTES", "4096")]);
    let r = node.post(
        "com.atproto.repo.createRecord",
        &json!({"repo": did, "collection": TEXT, "record": text_record(&"z".repeat(5000))}),
    );
    assert_xrpc_error(&r, 413, "PayloadTooLarge");
    let r = node.post(
        "com.atproto.repo.applyWrites",
        &json!({"repo": did, "writes": (0..100).map(|i| json!({"$type": "com.atproto.repo.applyWrites#create", "collection": TEXT, "value": text_record(&format!("w{i}"))})).collect::<Vec<_>>()}),
    );
    assert_xrpc_error(&r, 413, "PayloadTooLarge");
    create(&node, TEXT, None, text_record(&"z".repeat(3000)));
    assert_eq!(
        list_all(&node, "com.atproto.repo.listRecords", &[], TEXT, 100, false).len(),
        2
    );
}

#[test]
fn unknown_methods_are_501() {
    let data = DataDir::init();
    let node = data.start();
    for nsid in [
        "com.example.nothing",
        "com.atproto.server.createSession",
        "coop.guild.repo.nope",
    ] {
        assert_xrpc_error(&node.get(nsid, &[]), 501, "MethodNotImplemented");
        assert_xrpc_error(&node.post(nsid, &json!({})), 501, "MethodNotImplemented");
    }
    let r = json_response(
        node.http
            .get(format!("{}/not-xrpc", node.url))
            .send()
            .unwrap(),
    );
    assert_eq!(r.0, 404, "{}", r.1);
}

#[test]
fn wrong_http_method_is_an_xrpc_error() {
    let data = DataDir::init();
    let node = data.start();
    let did = node.did.clone();
    // A query sent as a POST, a procedure sent as a GET: refused with an XRPC error body.
    for nsid in [
        "com.atproto.repo.getRecord",
        "com.atproto.sync.getRepo",
        "coop.guild.node.getStatus",
    ] {
        let r = node.post(nsid, &json!({"repo": did}));
        assert!(r.0 == 405 || r.0 == 400, "POST {nsid}: {} {}", r.0, r.1);
        assert!(
            r.1["error"].is_string() && r.1["message"].is_string(),
            "POST {nsid}: {} body {}",
            r.0,
            r.1
        );
    }
    for nsid in [
        "com.atproto.repo.createRecord",
        "com.atproto.repo.applyWrites",
        "coop.guild.repo.deleteRecord",
    ] {
        let r = node.get(nsid, &[("repo", &did)]);
        assert!(r.0 == 405 || r.0 == 400, "GET {nsid}: {} {}", r.0, r.1);
        assert!(
            r.1["error"].is_string() && r.1["message"].is_string(),
            "GET {nsid}: {} body {}",
            r.0,
            r.1
        );
    }
}

#[test]
fn swap_mismatches_are_invalid_swaps() {
    let data = DataDir::init();
    let node = data.start();
    let did = node.did.clone();
    // swapCommit on a repo that does not exist yet.
    let some_cid = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm";
    let r = node.post(
        "com.atproto.repo.createRecord",
        &json!({"repo": did, "collection": TEXT, "record": text_record("x"), "swapCommit": some_cid}),
    );
    assert_xrpc_error(&r, 400, "InvalidSwap");

    let c1 = create(&node, TEXT, None, text_record("one"));
    let k1 = rkey_of(c1["uri"].as_str().unwrap());
    let commit1 = c1["commit"]["cid"].as_str().unwrap().to_string();
    // The right swapCommit passes...
    let c2 = node.post_ok(
        "com.atproto.repo.createRecord",
        &json!({"repo": did, "collection": TEXT, "record": text_record("two"), "swapCommit": commit1}),
    );
    // ...a stale one does not, on any write method.
    let stale: Vec<(&str, Value)> = vec![
        (
            "com.atproto.repo.createRecord",
            json!({"repo": did, "collection": TEXT, "record": text_record("x"), "swapCommit": commit1}),
        ),
        (
            "com.atproto.repo.putRecord",
            json!({"repo": did, "collection": TEXT, "rkey": k1, "record": text_record("x"), "swapCommit": commit1}),
        ),
        (
            "com.atproto.repo.deleteRecord",
            json!({"repo": did, "collection": TEXT, "rkey": k1, "swapCommit": commit1}),
        ),
        (
            "com.atproto.repo.applyWrites",
            json!({"repo": did, "swapCommit": commit1, "writes": [{"$type": "com.atproto.repo.applyWrites#delete", "collection": TEXT, "rkey": k1}]}),
        ),
    ];
    for (nsid, body) in &stale {
        assert_xrpc_error(&node.post(nsid, body), 400, "InvalidSwap");
    }
    // swapRecord: the wrong CID, or null (must not exist) for a record that exists.
    let cid2 = c2["cid"].as_str().unwrap();
    let r = node.post(
        "com.atproto.repo.putRecord",
        &json!({"repo": did, "collection": TEXT, "rkey": k1, "record": text_record("x"), "swapRecord": cid2}),
    );
    assert_xrpc_error(&r, 400, "InvalidSwap");
    let r = node.post(
        "com.atproto.repo.putRecord",
        &json!({"repo": did, "collection": TEXT, "rkey": k1, "record": text_record("x"), "swapRecord": null}),
    );
    assert_xrpc_error(&r, 400, "InvalidSwap");
    let r = node.post(
        "com.atproto.repo.deleteRecord",
        &json!({"repo": did, "collection": TEXT, "rkey": k1, "swapRecord": cid2}),
    );
    assert_xrpc_error(&r, 400, "InvalidSwap");
    // Nothing changed; the right swapRecord passes.
    let g = node.get_ok(
        "com.atproto.repo.getRecord",
        &[("repo", &did), ("collection", TEXT), ("rkey", &k1)],
    );
    assert_eq!(g["value"], text_record("one"));
    node.post_ok(
        "com.atproto.repo.deleteRecord",
        &json!({"repo": did, "collection": TEXT, "rkey": k1, "swapRecord": c1["cid"]}),
    );
}

#[test]
fn apply_writes_update_needs_an_existing_record() {
    // AT's applyWrites#update replaces a record that exists (the MST update fails otherwise);
    // creating is #create's job, and putRecord's.
    let data = DataDir::init();
    let node = data.start();
    let did = node.did.clone();
    create(&node, NOTE, Some("exists"), note("x"));
    let head = latest(&node);
    let r = node.post(
        "com.atproto.repo.applyWrites",
        &json!({"repo": did, "writes": [
            {"$type": "com.atproto.repo.applyWrites#update", "collection": NOTE, "rkey": "missing", "value": note("y")},
        ]}),
    );
    assert_eq!(r.0, 400, "update of a missing record: {}", r.1);
    assert!(
        r.1["error"] == "InvalidRequest" || r.1["error"] == "RecordNotFound",
        "{}",
        r.1
    );
    assert_eq!(latest(&node), head);
    assert_xrpc_error(
        &node.get(
            "com.atproto.repo.getRecord",
            &[("repo", &did), ("collection", NOTE), ("rkey", "missing")],
        ),
        400,
        "RecordNotFound",
    );
}

#[test]
fn another_repo_is_not_found() {
    let data = DataDir::init();
    let node = data.start();
    let did = node.did.clone();
    create(&node, TEXT, None, text_record("mine"));
    for other in [
        OTHER_DID,
        "alice.example.com",
        "did:plc:ewvi7nxzyoun6zhxrhs64oiz",
    ] {
        let reads: Vec<(&str, Vec<(&str, &str)>)> = vec![
            (
                "com.atproto.repo.getRecord",
                vec![
                    ("repo", other),
                    ("collection", TEXT),
                    ("rkey", "3jzfcijpj2z2a"),
                ],
            ),
            (
                "com.atproto.repo.listRecords",
                vec![("repo", other), ("collection", TEXT)],
            ),
            ("com.atproto.repo.describeRepo", vec![("repo", other)]),
            ("com.atproto.sync.getRepo", vec![("did", other)]),
            ("com.atproto.sync.getLatestCommit", vec![("did", other)]),
            (
                "com.atproto.sync.getRecord",
                vec![
                    ("did", other),
                    ("collection", TEXT),
                    ("rkey", "3jzfcijpj2z2a"),
                ],
            ),
        ];
        for (nsid, p) in &reads {
            assert_xrpc_error(&node.get(nsid, p), 400, "RepoNotFound");
        }
        let r = node.post(
            "com.atproto.repo.createRecord",
            &json!({"repo": other, "collection": TEXT, "record": text_record("not mine")}),
        );
        assert_xrpc_error(&r, 400, "RepoNotFound");
    }
    assert_eq!(
        list_all(&node, "com.atproto.repo.listRecords", &[], TEXT, 100, false).len(),
        1
    );
    // The node's own DID works.
    node.get_ok("com.atproto.repo.describeRepo", &[("repo", &did)]);
}

// ---------------------------------------------------------------------------------------------
// An AT client's types
// ---------------------------------------------------------------------------------------------

#[test]
fn atrium_types_read_and_write_the_repo() {
    use atrium_api::com::atproto::repo::{create_record, describe_repo, get_record, list_records};
    use atrium_api::com::atproto::sync::get_latest_commit;
    use atrium_api::types::Unknown;
    use atrium_api::types::string::{AtIdentifier, Did, Nsid, RecordKey};

    let data = DataDir::init();
    let node = data.start();
    let did = node.did.clone();

    // Writes built from atrium's createRecord input.
    let mut made = Vec::new();
    for i in 0..3 {
        let input: create_record::Input = create_record::InputData {
            collection: Nsid::new(TEXT.to_string()).unwrap(),
            record: serde_json::from_value::<Unknown>(text_record(&format!("from atrium {i}")))
                .unwrap(),
            repo: AtIdentifier::Did(Did::new(did.clone()).unwrap()),
            rkey: (i == 2).then(|| RecordKey::new(tid(42)).unwrap()),
            swap_commit: None,
            validate: Some(true),
        }
        .into();
        let body = serde_json::to_value(&input).unwrap();
        let out = node.post_ok(create_record::NSID, &body);
        let out: create_record::Output = serde_json::from_value(out.clone())
            .unwrap_or_else(|e| panic!("createRecord output {out}: {e}"));
        assert_eq!(out.validation_status.as_deref(), Some("valid"));
        assert!(out.commit.is_some());
        made.push(out);
    }
    assert!(made[2].uri.ends_with(&tid(42)));

    // getRecord
    let k = rkey_of(&made[0].uri);
    let v = node.get_ok(
        get_record::NSID,
        &[("repo", &did), ("collection", TEXT), ("rkey", &k)],
    );
    let rec: get_record::Output =
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("getRecord output {v}: {e}"));
    assert_eq!(rec.uri, made[0].uri);
    assert_eq!(
        rec.cid.as_ref().map(|c| c.as_ref().to_string()),
        Some(made[0].cid.as_ref().to_string())
    );
    assert_eq!(
        serde_json::to_value(&rec.value).unwrap(),
        text_record("from atrium 0")
    );

    // listRecords, with a cursor.
    let v = node.get_ok(
        list_records::NSID,
        &[("repo", &did), ("collection", TEXT), ("limit", "2")],
    );
    let page: list_records::Output =
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("listRecords output {v}: {e}"));
    assert_eq!(page.records.len(), 2);
    let cursor = page.cursor.clone().expect("a cursor after a full page");
    let v = node.get_ok(
        list_records::NSID,
        &[
            ("repo", &did),
            ("collection", TEXT),
            ("limit", "2"),
            ("cursor", &cursor),
        ],
    );
    let page2: list_records::Output =
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("listRecords output {v}: {e}"));
    assert_eq!(page2.records.len(), 1);
    let mut uris: Vec<String> = page
        .records
        .iter()
        .chain(&page2.records)
        .map(|r| r.uri.clone())
        .collect();
    uris.sort();
    let mut want: Vec<String> = made.iter().map(|m| m.uri.clone()).collect();
    want.sort();
    assert_eq!(uris, want);

    // describeRepo
    let v = node.get_ok(describe_repo::NSID, &[("repo", &did)]);
    let d: describe_repo::Output = serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("describeRepo output {v}: {e}"));
    assert_eq!(d.did.as_str(), did);
    assert_eq!(
        d.collections.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        vec![TEXT]
    );

    // sync.getLatestCommit
    let v = node.get_ok(get_latest_commit::NSID, &[("did", &did)]);
    let lc: get_latest_commit::Output = serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("getLatestCommit output {v}: {e}"));
    let last = made[2].commit.as_ref().unwrap();
    assert_eq!(lc.cid.as_ref().to_string(), last.cid.as_ref().to_string());
    assert_eq!(lc.rev.as_str(), last.rev.as_str());

    // The error body deserializes as atrium's error type too.
    let (status, v) = node.get(
        get_record::NSID,
        &[("repo", &did), ("collection", TEXT), ("rkey", &tid(7))],
    );
    assert_eq!(status, 400);
    let e: get_record::Error =
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("getRecord error {v}: {e}"));
    assert!(matches!(e, get_record::Error::RecordNotFound(Some(_))));
}

// ---------------------------------------------------------------------------------------------
// The CLI through the running node
// ---------------------------------------------------------------------------------------------

/// Runs `guild <args> --data-dir` with `input` on stdin.
fn guild_stdin(data: &DataDir, args: &[&str], input: &str) -> std::process::Output {
    let mut child = command()
        .args(args)
        .arg("--data-dir")
        .arg(&data.dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn cli_record_commands() {
    let data = DataDir::init();
    let node = data.start();
    let did = node.did.clone();

    // add: --json, a file, stdin, a chosen key.
    let rec1 = text_record("from the command line");
    let out = ok(&data.guild(&[
        "record",
        "add",
        "--collection",
        TEXT,
        "--json",
        &rec1.to_string(),
    ]));
    let (uri1, cid1) = out.trim().split_once(' ').expect("`uri cid`");
    assert!(uri1.starts_with(&format!("at://{did}/{TEXT}/")), "{out}");
    parse_cid_str(cid1).unwrap();
    let file = data.file("rec.json");
    std::fs::write(&file, text_record("from a file").to_string()).unwrap();
    ok(&data.guild(&[
        "record",
        "add",
        "--collection",
        TEXT,
        file.to_str().unwrap(),
    ]));
    ok(&guild_stdin(
        &data,
        &["record", "add", "--collection", TEXT, "-"],
        &text_record("from stdin").to_string(),
    ));
    let k = tid(5);
    let out = ok(&data.guild(&[
        "record",
        "add",
        "--collection",
        TEXT,
        "--rkey",
        &k,
        "--json",
        &text_record("keyed").to_string(),
    ]));
    assert!(out.starts_with(&format!("at://{did}/{TEXT}/{k} ")), "{out}");
    let out = ok(&data.guild(&[
        "record",
        "add",
        "--collection",
        NOTE,
        "--rkey",
        "n1",
        "--json",
        &note("a note").to_string(),
    ]));
    assert!(out.contains(&format!("{NOTE}/n1")));

    // get, by path and by URI.
    let got: Value =
        serde_json::from_str(&ok(&data.guild(&["record", "get", &format!("{TEXT}/{k}")]))).unwrap();
    assert_eq!(got, text_record("keyed"));
    let got: Value = serde_json::from_str(&ok(&data.guild(&["record", "get", uri1]))).unwrap();
    assert_eq!(got, rec1);

    // Clean failures: an invalid record, bad JSON, a missing record, a bad path.
    let err = fails(
        &data.guild(&[
            "record",
            "add",
            "--collection",
            TEXT,
            "--json",
            r#"{"$type":"coop.guild.data.text","createdAt":"2024-05-01T12:00:00Z"}"#,
        ]),
        "invalid record",
    );
    assert!(err.contains("InvalidRecord"), "{err}");
    fails(
        &data.guild(&["record", "add", "--collection", TEXT, "--json", "{not json"]),
        "bad JSON",
    );
    fails(
        &data.guild(&["record", "add", "--collection", TEXT]),
        "no record",
    );
    let err = fails(
        &data.guild(&["record", "get", &format!("{TEXT}/{}", tid(6))]),
        "missing record",
    );
    assert!(err.contains("RecordNotFound"), "{err}");
    fails(&data.guild(&["record", "get", "no-slash"]), "bad path");
    fails(
        &data.guild(&["record", "delete", &format!("{TEXT}/{}", tid(6))]),
        "delete missing",
    );

    // list: more than one page (120 records, pages of at most 100).
    let writes: Vec<Value> = (0..116)
        .map(|i| json!({"$type": "com.atproto.repo.applyWrites#create", "collection": TEXT, "value": text_record(&format!("bulk {i}"))}))
        .collect();
    node.post_ok(
        "com.atproto.repo.applyWrites",
        &json!({"repo": did, "writes": writes}),
    );
    let expected: Vec<String> = rkeys(&list_all(
        &node,
        "com.atproto.repo.listRecords",
        &[],
        TEXT,
        100,
        false,
    ));
    assert_eq!(expected.len(), 120);
    let lines = |out: String| out.lines().map(str::to_string).collect::<Vec<_>>();
    let all = lines(ok(&data.guild(&[
        "record",
        "list",
        "--collection",
        TEXT,
        "--limit",
        "500",
    ])));
    assert_eq!(
        all.iter()
            .map(|l| rkey_of(l.split(' ').next().unwrap()))
            .collect::<Vec<_>>(),
        expected
    );
    let default = lines(ok(&data.guild(&["record", "list", "--collection", TEXT])));
    assert_eq!(default.len(), 50);
    let some = lines(ok(&data.guild(&[
        "record",
        "list",
        "--collection",
        TEXT,
        "--limit",
        "3",
    ])));
    assert_eq!(some, all[..3].to_vec());
    let after = lines(ok(&data.guild(&[
        "record",
        "list",
        "--collection",
        TEXT,
        "--limit",
        "2",
        "--cursor",
        &expected[2],
    ])));
    assert_eq!(after, all[3..5].to_vec());
    let rev = lines(ok(&data.guild(&[
        "record",
        "list",
        "--collection",
        TEXT,
        "--limit",
        "500",
        "--reverse",
    ])));
    let mut want = all.clone();
    want.reverse();
    assert_eq!(rev, want);
    let json_lines = lines(ok(&data.guild(&[
        "record",
        "list",
        "--collection",
        TEXT,
        "--limit",
        "2",
        "--json",
    ])));
    for l in &json_lines {
        let v: Value = serde_json::from_str(l).unwrap();
        assert!(
            v["uri"].is_string() && v["cid"].is_string() && v["value"].is_object(),
            "{l}"
        );
    }

    // delete
    let out = ok(&data.guild(&["record", "delete", &format!("{TEXT}/{k}")]));
    assert!(out.contains(&k), "{out}");
    fails(
        &data.guild(&["record", "get", &format!("{TEXT}/{k}")]),
        "deleted record",
    );

    // status: 119 texts and a note.
    let out = ok(&data.guild(&["status"]));
    assert!(out.contains(&did), "{out}");
    assert!(out.contains("public — 120 records"), "{out}");
    let s: Value = serde_json::from_str(&ok(&data.guild(&["status", "--json"]))).unwrap();
    assert_eq!(s["repos"][0]["records"], 120);

    // A space or DID flag that is none is a usage error, before anything is asked of the node.
    for (args, what) in [
        (["--space", "not-a-cid"], "space must be"),
        (["--did", "alice"], "invalid did"),
    ] {
        let o = data.guild(&[&["record", "list", "--collection", TEXT][..], &args].concat());
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(what) && !err.contains("panicked"), "{err}");
    }

    // The same commands on a collective space.
    let sp = ["--space", SPACE];
    let err = fails(
        &data.guild(
            &[
                &[
                    "record",
                    "add",
                    "--collection",
                    TEXT,
                    "--json",
                    &text_record("x").to_string(),
                ][..],
                &sp,
            ]
            .concat(),
        ),
        "space without declaration",
    );
    assert!(err.contains(DECL), "{err}");
    ok(&data.guild(
        &[
            &[
                "record",
                "add",
                "--collection",
                DECL,
                "--rkey",
                "self",
                "--json",
                &declaration(SPACE).to_string(),
            ][..],
            &sp,
        ]
        .concat(),
    ));
    let out = ok(&data.guild(
        &[
            &[
                "record",
                "add",
                "--collection",
                TEXT,
                "--json",
                &text_record("shared").to_string(),
            ][..],
            &sp,
        ]
        .concat(),
    ));
    let uri = out.split(' ').next().unwrap().to_string();
    let got: Value = serde_json::from_str(&ok(
        &data.guild(&[&["record", "get", &path_of(&uri)][..], &sp].concat())
    ))
    .unwrap();
    assert_eq!(got, text_record("shared"));
    let listed = lines(ok(
        &data.guild(&[&["record", "list", "--collection", TEXT][..], &sp].concat())
    ));
    assert_eq!(listed.len(), 1);
    ok(&data.guild(&[&["record", "delete", &path_of(&uri)][..], &sp].concat()));
    let out = ok(&data.guild(&["status"]));
    assert!(out.contains(&format!("{SPACE} — 1 records")), "{out}");
    // Export of the space, verified.
    let car = data.file("space.car");
    ok(&data.guild(&[&["export", "--out", car.to_str().unwrap()][..], &sp].concat()));
    let out = ok(&guild_plain(&["repo", "verify", car.to_str().unwrap()]));
    assert!(out.contains("(1 records)"), "{out}");
}

#[test]
fn cli_import_export_and_verify() {
    let data = DataDir::init();
    let node = data.start();
    let did = node.did.clone();

    // A directory of texts: Markdown and plain text, nested; hidden, empty and other files
    // are skipped.
    let dir = data.file("works");
    std::fs::create_dir_all(dir.join("poems")).unwrap();
    std::fs::write(
        dir.join("essay.md"),
        "# On Guilds\n\nThey pool their works.\n",
    )
    .unwrap();
    std::fs::write(dir.join("notes.txt"), "Plain notes.\nSecond line.\n").unwrap();
    std::fs::write(dir.join("poems/sea.md"), "The sea, the sea.\n").unwrap();
    std::fs::write(dir.join(".draft.md"), "hidden\n").unwrap();
    std::fs::write(dir.join("empty.txt"), "  \n").unwrap();
    std::fs::write(dir.join("picture.png"), [0x89, b'P', b'N', b'G']).unwrap();
    let out = data.guild(&["import", dir.to_str().unwrap()]);
    ok(&out);
    assert!(
        stderr(&out).contains("imported 3 records"),
        "{}",
        stderr(&out)
    );
    let texts = list_all(&node, "com.atproto.repo.listRecords", &[], TEXT, 100, false);
    assert_eq!(texts.len(), 3);
    let titles: BTreeSet<String> = texts
        .iter()
        .map(|r| r["value"]["title"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(titles.contains("On Guilds"), "{titles:?}");
    let bodies: BTreeSet<String> = texts
        .iter()
        .map(|r| r["value"]["body"].as_str().unwrap().to_string())
        .collect();
    assert!(bodies.contains("The sea, the sea.\n"), "{bodies:?}");
    let out = data.guild(&["import", dir.to_str().unwrap()]);
    ok(&out);
    assert!(
        stderr(&out).contains("(3 already imported)"),
        "{}",
        stderr(&out)
    );

    // A JSONL file of 10 000 records.
    let jsonl = data.file("records.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&jsonl).unwrap());
    for i in 0..10_000 {
        let line = json!({"collection": TEXT, "record": {
            "$type": TEXT,
            "title": format!("Work {i}"),
            "body": format!("The text of work number {i}."),
            "createdAt": "2024-05-01T12:00:00.000Z",
        }});
        writeln!(f, "{line}").unwrap();
    }
    f.flush().unwrap();
    drop(f);
    let out = data.guild(&["import", jsonl.to_str().unwrap()]);
    ok(&out);
    assert!(
        stderr(&out).contains("imported 10000 records"),
        "{}",
        stderr(&out)
    );
    let out = data.guild(&["import", jsonl.to_str().unwrap()]);
    ok(&out);
    assert!(
        stderr(&out).contains("imported 0 records")
            && stderr(&out).contains("(10000 already imported)"),
        "{}",
        stderr(&out)
    );
    // A malformed JSONL line is a clean error naming the line.
    let bad = data.file("bad.jsonl");
    std::fs::write(
        &bad,
        format!(
            "{}\n{{oops\n",
            json!({"collection": TEXT, "record": text_record("x")})
        ),
    )
    .unwrap();
    let err = fails(&data.guild(&["import", bad.to_str().unwrap()]), "bad jsonl");
    assert!(err.contains("line 2"), "{err}");

    // status, export, verify.
    let out = ok(&data.guild(&["status"]));
    assert!(out.contains("public — 10003 records"), "{out}");
    let car = data.file("export.car");
    ok(&data.guild(&["export", "--out", car.to_str().unwrap()]));
    let out = ok(&guild_plain(&["repo", "verify", car.to_str().unwrap()]));
    assert!(out.contains("(10003 records)"), "{out}");
    assert!(out.contains(&did), "{out}");
    let (summary, records) = car_records(&std::fs::read(&car).unwrap());
    assert_eq!(records.len(), 10_003);
    assert_eq!(summary.commit.to_string(), latest(&node).0);
    // export --since: only the last commit's changes.
    let (_, rev) = latest(&node);
    create(&node, TEXT, None, text_record("after the export"));
    let diff = data.file("diff.car");
    ok(&data.guild(&["export", "--out", diff.to_str().unwrap(), "--since", &rev]));
    let diff_car = read_car(&std::fs::read(&diff).unwrap()).unwrap();
    assert_eq!(diff_car.roots[0].to_string(), latest(&node).0);
    assert!(
        diff_car.blocks.len() < 50,
        "{} blocks",
        diff_car.blocks.len()
    );
}

/// Issue 13: identical JSONL lines are each their own record, and an import of them that
/// was interrupted — its batch journaled but never committed — resumes without loss or
/// duplication (it used to fail forever with "appears twice in one commit"). A first-format
/// journal is carried over; a damaged one is a clear error.
#[test]
fn cli_import_resumes_with_duplicate_lines() {
    let data = DataDir::init();
    let node = data.start();
    let line = |body: &str| json!({"collection": TEXT, "record": text_record(body)}).to_string();
    let dup = line("the same line");
    // A record the node refuses (no body) stands in for the interruption: batch 1 commits,
    // batch 2 is journaled and then fails, as a kill between journal and commit leaves it.
    let refused = json!({"collection": TEXT, "record": {"$type": TEXT, "createdAt": "2024-05-01T12:00:00.000Z"}});
    let jsonl = data.file("dups.jsonl");
    let write = |last: &str| {
        std::fs::write(&jsonl, format!("{}\n{dup}\n{dup}\n{last}\n", line("first"))).unwrap()
    };
    write(&refused.to_string());
    let import = || data.guild(&["import", "--batch", "2", jsonl.to_str().unwrap()]);
    fails(&import(), "an import whose second batch is refused");
    assert_eq!(
        list_all(&node, "com.atproto.repo.listRecords", &[], TEXT, 100, false).len(),
        2,
        "the first batch committed"
    );
    // The user fixes the refused line and re-runs: every line is one record.
    write(&line("fixed"));
    let out = import();
    ok(&out);
    assert!(
        stderr(&out).contains("imported 2 records")
            && stderr(&out).contains("(2 already imported)"),
        "{}",
        stderr(&out)
    );
    let records = list_all(&node, "com.atproto.repo.listRecords", &[], TEXT, 100, false);
    assert_eq!(records.len(), 4, "{records:?}");
    let same = records
        .iter()
        .filter(|r| r["value"]["body"] == "the same line")
        .count();
    assert_eq!(same, 2, "{records:?}");
    let out = import();
    ok(&out);
    assert!(
        stderr(&out).contains("imported 0 records")
            && stderr(&out).contains("(4 already imported)"),
        "{}",
        stderr(&out)
    );

    // A journal of the first format ("<id> <collection> <rkey>") is carried over.
    let journals: Vec<_> = std::fs::read_dir(data.dir.join("imports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(journals.len(), 1, "{journals:?}");
    let journal = &journals[0];
    let current = std::fs::read_to_string(journal).unwrap();
    let v1: String = current
        .lines()
        .skip(1)
        .map(|l| {
            let p: Vec<&str> = l.split(' ').collect();
            format!("{} {} {}\n", p[0], p[2], p[3])
        })
        .collect();
    std::fs::write(journal, v1).unwrap();
    let out = import();
    ok(&out);
    assert!(
        stderr(&out).contains("(4 already imported)"),
        "{}",
        stderr(&out)
    );
    // A damaged journal is a clear error, not a wedged import.
    std::fs::write(journal, "guild-import-journal 2\nnot a journal line\n").unwrap();
    let err = fails(&import(), "a damaged journal");
    assert!(
        err.contains("import journal") && err.contains("line 2"),
        "{err}"
    );
    assert_eq!(
        list_all(&node, "com.atproto.repo.listRecords", &[], TEXT, 100, false).len(),
        4
    );
}

#[test]
fn client_commands_fail_cleanly_without_a_node() {
    let data = DataDir::init();
    let jsonl = data.file("r.jsonl");
    std::fs::write(
        &jsonl,
        format!(
            "{}\n",
            json!({"collection": TEXT, "record": text_record("x")})
        ),
    )
    .unwrap();
    let car = data.file("out.car");
    let path = format!("{TEXT}/{}", tid(1));
    let commands: Vec<Vec<&str>> = vec![
        vec!["status"],
        vec!["status", "--json"],
        vec![
            "record",
            "add",
            "--collection",
            TEXT,
            "--json",
            r#"{"$type":"coop.guild.data.text","body":"x","createdAt":"2024-05-01T12:00:00Z"}"#,
        ],
        vec!["record", "get", &path],
        vec!["record", "list", "--collection", TEXT],
        vec!["record", "delete", &path],
        vec!["import", jsonl.to_str().unwrap()],
        vec!["export", "--out", car.to_str().unwrap()],
    ];
    // Never started: no node.addr.
    for args in &commands {
        let err = fails(&data.guild(args), &format!("{args:?} without a node"));
        assert!(err.contains("not running"), "{args:?}: {err}");
    }
    // Started, then killed: a stale node.addr pointing at nothing.
    let mut node = data.start();
    node.kill();
    assert!(
        data.dir.join("node.addr").exists(),
        "a killed node leaves node.addr behind"
    );
    for args in &commands {
        let err = fails(
            &data.guild(args),
            &format!("{args:?} after the node was killed"),
        );
        assert!(err.contains("cannot reach the node"), "{args:?}: {err}");
    }
    assert!(!car.exists(), "no export file is left behind");
    // No data directory at all.
    let nowhere = data.file("nowhere");
    for args in &commands {
        let err = fails(
            &guild(&nowhere, args),
            &format!("{args:?} with no data dir"),
        );
        assert!(!err.is_empty());
    }
    // And a node stopped cleanly (SIGTERM) removes its address: the command says so.
    let node = data.start();
    let pid = node.pid();
    let status = std::process::Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    while data.dir.join("node.addr").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "node.addr still there after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let err = fails(&data.guild(&["status"]), "status after SIGTERM");
    assert!(err.contains("not running"), "{err}");
    drop(node);
}

#[test]
fn node_refuses_to_start_wrongly() {
    let data = DataDir::init();
    // init refuses to overwrite an identity.
    let err = fails(&data.guild(&["init"]), "second init");
    assert!(err.contains("refusing to overwrite"), "{err}");
    // A public address is refused: the admin API is loopback only.
    let err = fails(
        &data.guild(&["node", "--listen", "0.0.0.0:0"]),
        "public listen",
    );
    assert!(err.contains("loopback"), "{err}");
    // No identity: says to run init.
    let empty = data.file("empty");
    let err = fails(
        &guild(&empty, &["node", "--listen", "127.0.0.1:0"]),
        "no identity",
    );
    assert!(err.contains("guild init"), "{err}");

    // A second node on a data directory that a running node holds: a clean error, and the
    // running node keeps its address file and keeps serving.
    let node = data.start();
    let addr = std::fs::read_to_string(data.dir.join("node.addr")).unwrap();
    let mut second = command()
        .args(["node", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    let status = loop {
        if let Some(s) = second.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!("a second node on the same data directory is still running");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "second node: {status}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("error: "), "{err}");
    // Issue 13, finding 5: said plainly, not as sled's raw lock error.
    assert!(
        err.contains(&format!(
            "another guild node is already running on {}",
            data.dir.display()
        )),
        "{err}"
    );
    assert!(err.contains(addr.trim()), "names where it serves: {err}");
    assert!(!err.contains("WouldBlock"), "{err}");
    assert_eq!(
        std::fs::read_to_string(data.dir.join("node.addr")).unwrap(),
        addr
    );
    create(&node, NOTE, Some("still-serving"), note("x"));
}

/// Whether this process can read a file whose mode is 000 (root, or a process with
/// CAP_DAC_OVERRIDE): then permission tests prove nothing and are skipped.
fn ignores_permissions(scratch: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let probe = scratch.join("perm-probe");
    std::fs::write(&probe, "x").unwrap();
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o000)).unwrap();
    let readable = std::fs::read(&probe).is_ok();
    std::fs::remove_file(&probe).unwrap();
    if readable {
        eprintln!("skipped the chmod-based checks: this process reads files of mode 000 (root)");
    }
    readable
}

/// Issue 13, finding 5: each key-file problem has its own message; only a missing key says to
/// run `guild init`.
#[test]
fn key_file_problems_are_told_apart() {
    use std::os::unix::fs::PermissionsExt;
    let data = DataDir::init();
    let key = data.dir.join("identity.key");
    let start = || fails(&data.guild(&["node", "--listen", "127.0.0.1:0"]), "node");
    let valid = std::fs::read_to_string(&key).unwrap();

    // Malformed: not JSON; a key of the wrong length.
    std::fs::write(&key, "not a key").unwrap();
    let err = start();
    assert!(
        err.contains(&format!("{} is not a valid Guild key file", key.display())),
        "{err}"
    );
    assert!(!err.contains("guild init"), "{err}");
    let doc: Value = serde_json::from_str(&valid).unwrap();
    let mb = doc["privateKeyMultibase"].as_str().unwrap();
    let mut short = doc.clone();
    short["privateKeyMultibase"] = json!(&mb[..mb.len() - 4]);
    std::fs::write(&key, short.to_string()).unwrap();
    let err = start();
    assert!(err.contains("is not a valid Guild key file"), "{err}");
    assert!(!err.contains("guild init"), "{err}");

    // Readable by others: refused, saying how to fix it.
    std::fs::write(&key, &valid).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = start();
    assert!(err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Unreadable: the system's reason, no init hint. (A directory in its place; a mode-000
    // file too when permissions apply to this process.)
    std::fs::remove_file(&key).unwrap();
    std::fs::create_dir(&key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o700)).unwrap();
    let err = start();
    assert!(
        err.contains(&format!("cannot read key file {}", key.display())),
        "{err}"
    );
    assert!(!err.contains("guild init"), "{err}");
    std::fs::remove_dir(&key).unwrap();
    if !ignores_permissions(data.root.path()) {
        std::fs::write(&key, &valid).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o000)).unwrap();
        let err = start();
        assert!(err.contains("ermission denied"), "{err}");
        std::fs::remove_file(&key).unwrap();
    }

    // Missing: the only case that says to run `guild init`.
    let err = start();
    assert!(
        err.contains("does not exist") && err.contains("guild init"),
        "{err}"
    );
}

/// Issue 13, finding 5: a data directory the CLI cannot read is reported as such, not as "the
/// node is not running".
#[test]
fn an_unreadable_data_directory_is_not_reported_as_a_stopped_node() {
    use std::os::unix::fs::PermissionsExt;
    let data = DataDir::init();
    let addr = data.dir.join("node.addr");
    // Something in the way of the address file: the system's reason, naming the file.
    std::fs::create_dir(&addr).unwrap();
    let err = fails(&data.guild(&["status"]), "status");
    assert!(
        err.contains(&format!(
            "cannot read the node's address file {}",
            addr.display()
        )),
        "{err}"
    );
    assert!(!err.contains("not running"), "{err}");
    std::fs::remove_dir(&addr).unwrap();
    // No data directory: says so.
    let err = fails(&guild(&data.file("nowhere"), &["status"]), "no data dir");
    assert!(err.contains("there is no data directory"), "{err}");
    if !ignores_permissions(data.root.path()) {
        std::fs::set_permissions(&data.dir, std::fs::Permissions::from_mode(0o000)).unwrap();
        let err = fails(&data.guild(&["status"]), "unreadable data dir");
        std::fs::set_permissions(&data.dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(err.contains("ermission denied"), "{err}");
        assert!(!err.contains("not running"), "{err}");
    }
}

/// Issue 13, finding 3: on a full disk (a small tmpfs filled with a ballast file) writes are
/// refused with 503 `StorageUnavailable` naming the cause, `_health` and `guild status` say so;
/// once the ballast is removed the node recovers by itself (no restart): writes and `export`
/// work again, and every write acknowledged before the failure is there, then and after a
/// restart, while no refused write exists.
#[test]
fn a_full_disk_refuses_writes_clearly_and_the_node_recovers_when_space_returns() {
    let root = tempfile::tempdir().unwrap();
    // Only the data directory is on the small disk; the node's log is not.
    let Some(disk) = Tmpfs::mount_or_skip(&root.path().join("disk"), 32) else {
        return;
    };
    let dir = disk.path.join("data");
    let did = ok(&guild_plain(&["init", "--data-dir", dir.to_str().unwrap()]))
        .trim()
        .to_string();
    let token = std::fs::read_to_string(dir.join("admin-token"))
        .unwrap()
        .trim()
        .to_string();
    let data = DataDir {
        root,
        dir,
        did,
        token,
    };
    let mut node = data.start();
    let mut acked: Vec<String> = (0..5)
        .map(|i| {
            let v = create(&node, TEXT, None, text_record(&format!("before {i}")));
            rkey_of(v["uri"].as_str().unwrap())
        })
        .collect();

    let ballast = disk.fill();
    let mut refused = None;
    for i in 0..500 {
        let body = json!({"repo": node.did, "collection": TEXT, "record": text_record(&format!("filling {i}"))});
        let got = node.post("com.atproto.repo.createRecord", &body);
        if got.0 == 200 {
            acked.push(rkey_of(got.1["uri"].as_str().unwrap()));
        } else {
            refused = Some(got);
            break;
        }
    }
    let refused = refused.expect("a write on a full disk is refused");
    assert_xrpc_error(&refused, 503, "StorageUnavailable");
    let message = refused.1["message"].as_str().unwrap();
    assert!(message.contains("No space left on device"), "{message}");
    let health = node
        .http
        .get(format!("{}/xrpc/_health", node.url))
        .send()
        .unwrap();
    let (status, body) = json_response(health);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    let err = fails(
        &data.guild(&[
            "record",
            "add",
            "--collection",
            TEXT,
            "--json",
            &text_record("refused").to_string(),
        ]),
        "record add on a full disk",
    );
    assert!(
        err.contains("StorageUnavailable") && err.contains("free some space"),
        "{err}"
    );
    let err = fails(&data.guild(&["status"]), "status on a full disk");
    assert!(err.contains("storage unavailable"), "{err}");

    std::fs::remove_file(&ballast).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let health = node
            .http
            .get(format!("{}/xrpc/_health", node.url))
            .send()
            .unwrap();
        if health.status().as_u16() == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node did not recover: {}",
            node.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = ok(&data.guild(&[
        "record",
        "add",
        "--collection",
        TEXT,
        "--json",
        &text_record("after").to_string(),
    ]));
    acked.push(rkey_of(out.split_whitespace().next().unwrap()));
    let car = data.file("after.car");
    ok(&data.guild(&["export", "--out", car.to_str().unwrap()]));
    let (_, records) = car_records(&std::fs::read(&car).unwrap());
    assert_eq!(records.len(), acked.len(), "no refused write exists");

    let check = |node: &Node| {
        let out = ok(&data.guild(&["status"]));
        assert!(
            out.contains(&format!("public — {} records", acked.len())),
            "{out}"
        );
        for rkey in &acked {
            node.get_ok(
                "com.atproto.repo.getRecord",
                &[("repo", &node.did), ("collection", TEXT), ("rkey", rkey)],
            );
        }
    };
    check(&node);
    node.kill();
    let node = data.start();
    check(&node);
    assert!(!node.log_text().contains("panicked"));
}
