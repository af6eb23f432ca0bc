//! Real `guild node` processes driven through the CLI, over loopback TCP: the three-terminal
//! flow of the README (create, invite, join, consent, the same status everywhere), errors a
//! person understands, and an election.

mod common;

use std::time::{Duration, Instant};

use common::{DataDir, fails, ok};
use serde_json::Value;

fn status(d: &DataDir) -> Value {
    serde_json::from_str(&ok(&d.guild(&["collective", "status", "--json"]))).expect("JSON")
}

/// Polls until `check` holds, for up to 60 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What must be equal on every node: members and roles, consents, the log's heads.
fn view(s: &Value) -> (Value, Value, Value) {
    (
        s["members"].clone(),
        s["consents"].clone(),
        s["sync"]["heads"].clone(),
    )
}

#[test]
fn three_members_form_a_collective_through_the_cli() {
    let (a, b, c) = (DataDir::init(), DataDir::init(), DataDir::init());
    let (_na, _nb, _nc) = (a.start(), b.start(), c.start());

    // Before anything exists, the errors say what to do.
    let e = fails(
        &a.guild(&["collective", "status"]),
        "status without a collective",
    );
    assert!(e.contains("no collective yet"), "{e}");
    let e = fails(&b.guild(&["collective", "join", "hello"]), "a bad invite");
    assert!(e.contains("not a Guild invite"), "{e}");

    let id = ok(&a.guild(&["collective", "create", "--name", "Northern Poets"]))
        .trim()
        .to_string();
    assert!(id.starts_with("bafyrei"), "{id}");
    let invite = ok(&a.guild(&["collective", "invite"])).trim().to_string();
    assert!(invite.starts_with("guild-invite:"));
    assert_eq!(ok(&b.guild(&["collective", "join", &invite])).trim(), id);
    // An invite admits one member.
    let e = fails(&c.guild(&["collective", "join", &invite]), "a used invite");
    assert!(e.contains("already been used"), "{e}");
    let invite = ok(&a.guild(&["collective", "invite"])).trim().to_string();
    assert_eq!(ok(&c.guild(&["collective", "join", &invite])).trim(), id);
    // Only stewards invite.
    let e = fails(&b.guild(&["collective", "invite"]), "a member inviting");
    assert!(e.contains("only a steward"), "{e}");

    ok(&b.guild(&["consent", "grant", "--template", "research-open"]));
    ok(&c.guild(&[
        "consent",
        "grant",
        "--template",
        "training-commercial-attribution",
        "--collection",
        "coop.guild.data.text",
    ]));
    let e = fails(
        &c.guild(&["consent", "grant", "--template", "no-such-template"]),
        "an unknown template",
    );
    assert!(e.contains("no-such-template"), "{e}");

    // The same status everywhere: three members, one steward, two consents, equal heads.
    eventually("the same collective status on all three nodes", || {
        let (sa, sb, sc) = (status(&a), status(&b), status(&c));
        view(&sa) == view(&sb)
            && view(&sb) == view(&sc)
            && sa["members"].as_array().map(Vec::len) == Some(3)
            && sa["consents"].as_array().map(Vec::len) == Some(2)
    });
    let s = status(&b);
    assert_eq!(s["stewards"], serde_json::json!([a.did]));
    assert_eq!(s["role"], "member");
    let text = ok(&c.guild(&["collective", "status"]));
    assert!(
        text.contains("Northern Poets") && text.contains("members:    3"),
        "{text}"
    );
    let peers = ok(&a.guild(&["peers"]));
    assert!(peers.contains(&b.did) && peers.contains(&c.did), "{peers}");

    // An election: B opens one for one seat between B and C; everyone votes for C; the
    // founder (the only teller) closes it once the close time has passed.
    let election = ok(&b.guild(&[
        "election",
        "open",
        "--seats",
        "1",
        "--candidate",
        &b.did,
        "--candidate",
        &c.did,
        "--closes-in",
        "2s",
    ]))
    .trim()
    .to_string();
    eventually("the election reaches everyone", || {
        [&a, &c].iter().all(|d| {
            status(d)["elections"]
                .as_array()
                .is_some_and(|e| e.len() == 1)
        })
    });
    for d in [&a, &b, &c] {
        ok(&d.guild(&[
            "election",
            "vote",
            "--election",
            &election,
            "--approve",
            &c.did,
        ]));
    }
    let e = fails(
        &c.guild(&["election", "close", "--election", &election]),
        "a non-teller closing",
    );
    assert!(e.contains("tellers"), "{e}");
    eventually("every ballot reaches the teller", || {
        status(&a)["elections"][0]["voters"] == 3
    });
    // The founder closes it as soon as its node accepts the close: refused as too early until
    // the close time has passed (any other refusal fails the test).
    eventually("the teller's close is accepted", || {
        let out = a.guild(&["election", "close", "--election", &election]);
        if out.status.success() {
            return true;
        }
        let err = fails(&out, "an early close");
        assert!(err.contains("before its close time"), "{err}");
        false
    });
    eventually("C is the steward everywhere", || {
        [&a, &b, &c]
            .iter()
            .all(|d| status(d)["stewards"] == serde_json::json!([c.did]))
    });
    let results = ok(&b.guild(&["election", "results", "--election", &election]));
    assert!(
        results.contains("adopted") && results.contains(&c.did),
        "{results}"
    );

    // C leaves; everyone sees two members.
    ok(&c.guild(&["collective", "leave"]));
    eventually("two members after C leaves", || {
        [&a, &b]
            .iter()
            .all(|d| status(d)["members"].as_array().map(Vec::len) == Some(2))
    });
}
