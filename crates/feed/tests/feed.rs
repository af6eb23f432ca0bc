//! Frames, the feed log's cursor rules and builder authentication.

use guild_core::keys::Keypair;
use guild_core::syntax::{Datetime, Did};
use guild_feed::auth::signed_message;
use guild_feed::*;
use guild_gov::body::CidRef;
use proptest::prelude::*;

fn cid(s: &str) -> CidRef {
    CidRef(guild_core::cids::cid_for_raw(s.as_bytes()))
}

fn at(micros: i64) -> Datetime {
    Datetime::from_unix_micros(micros)
}

fn bundle(agreement: &str, manifest: &str) -> Event {
    Event::Bundle(BundleEvent {
        collective: None,
        seq: 0,
        time: at(0),
        agreement: cid(agreement),
        bundle: cid(manifest),
        size: 123_456,
        records: 42,
    })
}

fn revocation() -> Event {
    Event::Revocation(RevocationEvent {
        collective: None,
        seq: 7,
        time: at(1_000_000),
        agreement: cid("a"),
        member: Did::parse("did:key:z6Mkalice").unwrap(),
        revoke: cid("r"),
        effective_from: at(999_000),
        records: vec![RecordRef {
            uri: "at://did:key:z6Mkalice/coop.guild.data.text/one".into(),
            cid: cid("rec"),
        }],
        duty: "delete-records".into(),
    })
}

#[test]
fn frames_are_two_canonical_dag_cbor_objects_header_then_body() {
    let mut e = bundle("a", "m");
    if let Event::Bundle(b) = &mut e {
        b.seq = 3;
    }
    let bytes = Frame::Message(e.clone()).to_cbor().unwrap();
    let split = guild_core::cbor::skip(&bytes, 0).unwrap();
    let (head, body) = bytes.split_at(split);
    guild_core::cbor::check(head).unwrap();
    guild_core::cbor::check(body).unwrap();
    // The header is exactly {op: 1, t: "#bundle"}, as AT Protocol's.
    let h = guild_core::data::decode(head).unwrap();
    assert_eq!(
        guild_core::data::to_json(&h),
        serde_json::json!({"op": 1, "t": "#bundle"})
    );
    let b = guild_core::data::to_json(&guild_core::data::decode(body).unwrap());
    assert_eq!(b["seq"], 3);
    assert_eq!(b["records"], 42);
    assert_eq!(b["bundle"], cid("m").0.to_string());
    assert_eq!(Frame::from_cbor(&bytes).unwrap(), Frame::Message(e));
}

#[test]
fn every_event_and_an_error_round_trip_in_both_forms() {
    let frames = vec![
        Frame::Message(bundle("a", "m")),
        Frame::Message(revocation()),
        Frame::Message(Event::Agreement(AgreementEvent {
            collective: None,
            seq: 9,
            time: at(5),
            agreement: cid("a"),
            state: "terminated".into(),
            op: Some(cid("t")),
        })),
        Frame::Message(Event::Info(InfoEvent {
            name: "OutdatedCursor".into(),
            message: Some("the cursor is older than the window".into()),
        })),
        Frame::error(
            "FutureCursor",
            "the cursor 99 is ahead of the stream (latest 3)",
        ),
    ];
    for f in frames {
        assert_eq!(Frame::from_cbor(&f.to_cbor().unwrap()).unwrap(), f);
        let json = f.to_json().unwrap();
        assert_eq!(Frame::from_json(&json).unwrap(), f, "{json}");
    }
    let err = Frame::error("ConsumerTooSlow", "x").to_cbor().unwrap();
    let split = guild_core::cbor::skip(&err, 0).unwrap();
    let h = guild_core::data::decode(&err[..split]).unwrap();
    assert_eq!(guild_core::data::to_json(&h), serde_json::json!({"op": -1}));
    let json: serde_json::Value =
        serde_json::from_str(&Frame::Message(revocation()).to_json().unwrap()).unwrap();
    assert_eq!(json["$type"], "coop.guild.feed.subscribe#revocation");
    assert_eq!(json["effectiveFrom"], at(999_000).to_string());
}

#[test]
fn integers_beyond_the_data_model_are_refused_on_encoding() {
    let mut e = bundle("a", "m");
    if let Event::Bundle(b) = &mut e {
        b.size = u64::MAX;
    }
    assert!(matches!(
        Frame::Message(e.clone()).to_cbor(),
        Err(FrameError::Encode(m)) if m.contains("size")
    ));
    assert!(Frame::Message(e).to_json().is_err());
}

#[test]
fn malformed_frames_are_typed_errors() {
    let good = Frame::Message(bundle("a", "m")).to_cbor().unwrap();
    let split = guild_core::cbor::skip(&good, 0).unwrap();
    // Truncated anywhere: an error, never a panic.
    for n in 0..good.len() {
        assert!(Frame::from_cbor(&good[..n]).is_err(), "prefix of {n} bytes");
    }
    // Bytes after the body.
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(
        Frame::from_cbor(&trailing),
        Err(FrameError::Malformed(_))
    ));
    let enc = |v: serde_json::Value| {
        guild_core::data::encode(&guild_core::data::from_json(&v).unwrap()).unwrap()
    };
    let body = &good[split..];
    let with_header = |h: serde_json::Value| [enc(h), body.to_vec()].concat();
    assert!(matches!(
        Frame::from_cbor(&with_header(serde_json::json!({"op": 2, "t": "#bundle"}))),
        Err(FrameError::Header(_))
    ));
    assert!(matches!(
        Frame::from_cbor(&with_header(serde_json::json!({"op": 1}))),
        Err(FrameError::Header(_))
    ));
    assert!(matches!(
        Frame::from_cbor(&with_header(serde_json::json!({"op": 1, "t": "#commit"}))),
        Err(FrameError::UnknownType(t)) if t == "#commit"
    ));
    // A body with a field its lexicon lacks, or a field of the wrong type.
    let head = &good[..split];
    let mut b = guild_core::data::to_json(&guild_core::data::decode(body).unwrap());
    b["extra"] = serde_json::json!(1);
    assert!(matches!(
        Frame::from_cbor(&[head.to_vec(), enc(b.clone())].concat()),
        Err(FrameError::Body { .. })
    ));
    b.as_object_mut().unwrap().remove("extra");
    b["size"] = serde_json::json!("big");
    assert!(matches!(
        Frame::from_cbor(&[head.to_vec(), enc(b)].concat()),
        Err(FrameError::Body { .. })
    ));
    assert!(Frame::from_json("{").is_err());
    assert!(matches!(
        Frame::from_json(r#"{"$type": "app.bsky.feed.post"}"#),
        Err(FrameError::UnknownType(_))
    ));
}

proptest! {
    #[test]
    fn any_bytes_decode_to_a_frame_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Frame::from_cbor(&bytes);
    }

    #[test]
    fn bundle_events_round_trip(seq in 0..=i64::MAX as u64, size in 0..=i64::MAX as u64, records in 0..=i64::MAX as u64, t in 0i64..253_402_300_799_000_000) {
        let f = Frame::Message(Event::Bundle(BundleEvent {
            collective: Some(cid("c")), seq, time: at(t), agreement: cid("a"), bundle: cid("b"), size, records,
        }));
        prop_assert_eq!(Frame::from_cbor(&f.to_cbor().unwrap()).unwrap(), f.clone());
        prop_assert_eq!(Frame::from_json(&f.to_json().unwrap()).unwrap(), f);
    }
}

const DAY: i64 = 24 * 3600 * 1_000_000;

#[test]
fn the_log_stamps_each_source_once_with_increasing_seq() {
    let mut log = FeedLog::new(Retention::default());
    assert_eq!(log.last_seq(), 0);
    let e = log.append("bundle:m1", bundle("a", "m1"), &at(10)).unwrap();
    assert_eq!((e.seq(), log.last_seq()), (Some(1), 1));
    assert!(
        log.append("bundle:m1", bundle("a", "m1"), &at(11))
            .is_none()
    );
    let e = log.append("bundle:m2", bundle("a", "m2"), &at(12)).unwrap();
    assert_eq!(e.seq(), Some(2));
    let info = Event::Info(InfoEvent {
        name: "x".into(),
        message: None,
    });
    assert!(log.append("info", info, &at(13)).is_none());
    let seqs: Vec<_> = log.after(0).map(|e| e.seq().unwrap()).collect();
    assert_eq!(seqs, [1, 2]);
    let seqs: Vec<_> = log.after(1).map(|e| e.seq().unwrap()).collect();
    assert_eq!(seqs, [2]);
    assert_eq!(log.after(2).count(), 0);
}

#[test]
fn cursors_start_live_replay_outdated_or_future() {
    let mut log = FeedLog::new(Retention {
        max_age_micros: DAY,
        max_events: 3,
    });
    for i in 0..5 {
        log.append(
            &format!("bundle:{i}"),
            bundle("a", &i.to_string()),
            &at(i * 10),
        );
    }
    // Five events, at most three kept: 1 and 2 left the window.
    assert_eq!(log.prune(100), vec![1, 2]);
    assert_eq!(log.start(None), Start::Live { after: 5 });
    assert_eq!(log.start(Some(5)), Start::Replay { after: 5 });
    assert_eq!(log.start(Some(3)), Start::Replay { after: 3 });
    assert_eq!(log.start(Some(2)), Start::Replay { after: 2 });
    assert_eq!(log.start(Some(1)), Start::Outdated { after: 2 });
    assert_eq!(log.start(Some(0)), Start::Outdated { after: 2 });
    assert_eq!(log.start(Some(6)), Start::Future { latest: 5 });
    // By age: a day later every event leaves; a source seen is never derived again.
    assert_eq!(log.prune(DAY + 100), vec![3, 4, 5]);
    assert!(
        log.append("bundle:4", bundle("a", "4"), &at(DAY + 200))
            .is_none()
    );
    assert_eq!(log.start(Some(5)), Start::Replay { after: 5 });
    assert_eq!(log.start(Some(4)), Start::Outdated { after: 5 });
}

#[test]
fn a_restored_log_continues_and_refuses_inconsistency() {
    let mut log = FeedLog::new(Retention::default());
    for i in 0..3 {
        log.append(&format!("bundle:{i}"), bundle("a", &i.to_string()), &at(i));
    }
    let events: Vec<Event> = log.events().cloned().collect();
    let sources = (0..3).map(|i| format!("bundle:{i}"));
    let mut back = FeedLog::restore(
        Retention::default(),
        log.next_seq(),
        0,
        events.clone(),
        sources,
    )
    .unwrap();
    assert!(back.has("bundle:2"));
    assert_eq!(
        back.append("bundle:9", bundle("a", "9"), &at(9))
            .unwrap()
            .seq(),
        Some(4)
    );
    // A seq at or past `next`, or out of order: refused.
    assert!(FeedLog::restore(Retention::default(), 3, 0, events.clone(), []).is_err());
    let mut swapped = events;
    swapped.swap(0, 1);
    assert!(FeedLog::restore(Retention::default(), 4, 0, swapped, []).is_err());
    assert!(FeedLog::restore(Retention::default(), 0, 0, vec![], []).is_err());
}

fn gate() -> Gate {
    Gate::new("did:key:z6Mknode", 60_000_000, 3_600_000_000, 4)
}

#[test]
fn a_builder_logs_in_by_signing_a_challenge_once() {
    let key = Keypair::from_secret_bytes(&[7; 32]);
    let did = Did::parse(&key.did()).unwrap();
    let mut g = gate();
    let c = g.challenge([1; 32], 0).unwrap();
    assert_eq!(c.audience, "did:key:z6Mknode");
    let sig = key.sign(&c.message(did.as_str()));
    let s = g.login(&did, &c.nonce, &sig, [2; 32], 1_000).unwrap();
    assert_eq!(g.check(&s.token, 2_000).unwrap(), did);
    // Replayed: the challenge is used up.
    assert_eq!(
        g.login(&did, &c.nonce, &sig, [3; 32], 2_000),
        Err(AuthError::UnknownChallenge)
    );
    // The token lapses.
    assert!(matches!(
        g.check(&s.token, 3_600_001_000),
        Err(AuthError::ExpiredToken(_))
    ));
    assert_eq!(g.check("nope", 0), Err(AuthError::UnknownToken));
}

#[test]
fn forged_expired_or_misaddressed_logins_are_refused() {
    let key = Keypair::from_secret_bytes(&[7; 32]);
    let other = Keypair::from_secret_bytes(&[8; 32]);
    let did = Did::parse(&key.did()).unwrap();
    let mut g = gate();
    // Signed by another key.
    let c = g.challenge([1; 32], 0).unwrap();
    let sig = other.sign(&c.message(did.as_str()));
    assert!(matches!(
        g.login(&did, &c.nonce, &sig, [2; 32], 0),
        Err(AuthError::BadSignature(_))
    ));
    // Signed for another node.
    let c = g.challenge([3; 32], 0).unwrap();
    let sig = key.sign(&signed_message(
        "did:key:z6Mkother",
        did.as_str(),
        &c.nonce,
        c.expires_at.as_str(),
    ));
    assert!(matches!(
        g.login(&did, &c.nonce, &sig, [4; 32], 0),
        Err(AuthError::BadSignature(_))
    ));
    // Too late.
    let c = g.challenge([5; 32], 0).unwrap();
    let sig = key.sign(&c.message(did.as_str()));
    assert!(matches!(
        g.login(&did, &c.nonce, &sig, [6; 32], 60_000_001),
        Err(AuthError::ExpiredChallenge(_))
    ));
    // Not a did:key.
    let c = g.challenge([7; 32], 0).unwrap();
    let web = Did::parse("did:web:example.com").unwrap();
    assert!(matches!(
        g.login(&web, &c.nonce, &[0; 64], [8; 32], 0),
        Err(AuthError::NotDidKey(_))
    ));
    // Bounded: at most four pending.
    let mut g = gate();
    for i in 0..4 {
        g.challenge([i; 32], 0).unwrap();
    }
    assert_eq!(g.challenge([9; 32], 0), Err(AuthError::TooManyChallenges));
    // Expired ones make room.
    assert!(g.challenge([9; 32], 60_000_001).is_ok());
}
