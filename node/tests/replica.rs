//! Repo replication between real `guild node` processes over loopback TCP: a member adds a
//! record to its collective space with the CLI, and the steward's node serves that record and
//! a proof of it that verifies offline, from its replica.

mod common;

use std::time::{Duration, Instant};

use common::{DataDir, assert_xrpc_error, fails, ok};

/// Polls until `check` holds, for up to 60 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_steward_serves_a_members_records_and_proofs_from_its_replica() {
    let (a, b) = (DataDir::init(), DataDir::init());
    // Short anti-entropy rounds: the steward's heads sync is the fallback if an announcement
    // is missed.
    let env = [("GUILD_SYNC_INTERVAL_SECS", "2")];
    let (na, nb) = (a.start_with(&env), b.start_with(&env));

    let id = ok(&a.guild(&["collective", "create", "--name", "Replicated Poets"]))
        .trim()
        .to_string();
    let invite = ok(&a.guild(&["collective", "invite"])).trim().to_string();
    assert_eq!(ok(&b.guild(&["collective", "join", &invite])).trim(), id);

    // Joining opened B's repo in the collective's space with its declaration, so a record
    // can be added straight away.
    let decl = ok(&b.guild(&[
        "record",
        "get",
        "coop.guild.space.declaration/self",
        "--space",
        &id,
    ]));
    assert!(decl.contains(&id), "{decl}");
    let out = ok(&b.guild(&[
        "record",
        "add",
        "--space",
        &id,
        "--collection",
        "coop.guild.data.text",
        "--json",
        r#"{"$type":"coop.guild.data.text","body":"The owl and the pussy-cat went to sea","createdAt":"2026-01-01T00:00:00.000Z"}"#,
    ]));
    let mut words = out.split_whitespace();
    let (uri, cid) = (words.next().unwrap(), words.next().unwrap());
    assert!(uri.starts_with(&format!("at://{}/", b.did)), "{uri}");
    let rkey = uri.rsplit('/').next().unwrap();
    let b_head = nb.get_ok(
        "coop.guild.sync.getLatestCommit",
        &[("did", &b.did), ("space", &id)],
    );

    // A (the founder, so the steward) pulls B's repo and serves B's record from it.
    let params = [
        ("repo", b.did.as_str()),
        ("space", id.as_str()),
        ("collection", "coop.guild.data.text"),
        ("rkey", rkey),
    ];
    eventually("A serves B's record", || {
        na.get("coop.guild.repo.getRecord", &params).0 == 200
    });
    let got = na.get_ok("coop.guild.repo.getRecord", &params);
    assert_eq!(got["uri"], uri);
    assert_eq!(got["cid"], cid);
    assert_eq!(
        got["value"]["body"],
        "The owl and the pussy-cat went to sea"
    );
    eventually("A's replica is at B's head", || {
        na.get(
            "coop.guild.sync.getLatestCommit",
            &[("did", &b.did), ("space", &id)],
        )
        .1 == b_head
    });

    // The proof verifies with nothing but its own blocks, and is B's signed commit.
    let proof = na.get_bytes(
        "coop.guild.sync.getRecord",
        &[
            ("did", b.did.as_str()),
            ("space", id.as_str()),
            ("collection", "coop.guild.data.text"),
            ("rkey", rkey),
        ],
    );
    let car = guild_repo::read_car(&proof).expect("a CAR");
    let proven = guild_repo::verify_proof(&car, &format!("coop.guild.data.text/{rkey}"))
        .expect("the proof verifies");
    assert_eq!(proven.did, b.did);
    assert_eq!(proven.cid.to_string(), cid);
    assert_eq!(proven.commit.to_string(), b_head["cid"].as_str().unwrap());

    // The same through A's CLI: the URI names B's repo; list and export take --did.
    let text = ok(&a.guild(&["record", "get", uri, "--space", &id]));
    assert!(text.contains("pussy-cat"), "{text}");
    let list = ok(&a.guild(&[
        "record",
        "list",
        "--collection",
        "coop.guild.data.text",
        "--did",
        &b.did,
        "--space",
        &id,
    ]));
    assert!(list.contains(uri), "{list}");
    let out_path = a.file("b.car");
    ok(&a.guild(&[
        "export",
        "--out",
        out_path.to_str().unwrap(),
        "--did",
        &b.did,
        "--space",
        &id,
    ]));
    let whole = guild_repo::read_car(&std::fs::read(&out_path).unwrap()).unwrap();
    let summary = guild_repo::verify_car(&whole).expect("the replica verifies");
    assert_eq!(summary.did, b.did);
    assert_eq!(summary.records.len(), 2, "the declaration and the poem");

    // Only B writes B's repo: A's node refuses, and A's own records are untouched.
    let e = fails(
        &a.guild(&["record", "delete", uri, "--space", &id]),
        "deleting a replica's record",
    );
    assert!(e.contains("replica"), "{e}");
    // A repo this node does not hold is not found, and the public space has no replicas.
    let stranger = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK";
    assert_xrpc_error(
        &na.get(
            "coop.guild.repo.getRecord",
            &[
                ("repo", stranger),
                ("space", &id),
                ("collection", "coop.guild.data.text"),
                ("rkey", rkey),
            ],
        ),
        400,
        "RepoNotFound",
    );
    assert_xrpc_error(
        &na.get(
            "com.atproto.repo.getRecord",
            &[
                ("repo", b.did.as_str()),
                ("collection", "coop.guild.data.text"),
                ("rkey", rkey),
            ],
        ),
        400,
        "RepoNotFound",
    );
}
