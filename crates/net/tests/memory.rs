//! Several nodes in one process over libp2p's memory transport.

mod common;

use std::time::Duration;

use common::{Node, eventually, memory_config};
use guild_net::{
    MsgId, NetConfig, NetEvent, PublishError, RequestError, Validation, peer_id_from_did,
};

const TOPIC: &str = "coop.guild.collective/test";

fn is_gossip(e: &NetEvent) -> bool {
    matches!(e, NetEvent::Gossip { .. })
}

/// A star B–A–C (B and C bootstrap to A): B's messages reach C only through A, and only those
/// A accepts. Ignored, rejected and never-validated messages stop at A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_forwarded_only_after_accept() {
    let mut a = Node::spawn(NetConfig::memory()).await;
    let mut b = Node::spawn(memory_config(&[&a])).await;
    let mut c = Node::spawn(memory_config(&[&a])).await;
    for n in [&a, &b, &c] {
        assert!(n.handle.subscribe(TOPIC).await.unwrap());
    }
    a.wait_subscribed(b.peer(), TOPIC).await;
    a.wait_subscribed(c.peer(), TOPIC).await;
    b.wait_subscribed(a.peer(), TOPIC).await;
    c.wait_subscribed(a.peer(), TOPIC).await;
    a.wait_mesh(c.peer(), TOPIC).await;

    // B and C never connected to each other: all traffic goes through A.
    let b_peers: Vec<_> = b
        .handle
        .peers()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.peer)
        .collect();
    assert_eq!(b_peers, vec![a.peer()]);

    // m1 ignored, m2 never validated, m3 rejected by A.
    for (data, verdict) in [
        (&b"m1"[..], Some(Validation::Ignore)),
        (b"m2", None),
        (b"m3", Some(Validation::Reject)),
    ] {
        let id = b.handle.publish(TOPIC, data.to_vec()).await.unwrap();
        assert_eq!(id, MsgId::of(data));
        let got = a.next_gossip().await;
        assert_eq!(
            (got.data.as_slice(), got.source, got.author),
            (data, b.peer(), Some(b.peer()))
        );
        assert_eq!(got.msg_id, id);
        if let Some(verdict) = verdict {
            assert!(
                a.handle
                    .report_validation(got.msg_id, got.source, verdict)
                    .await
                    .unwrap()
            );
        }
    }
    // Ten heartbeats: nothing unvalidated or refused reached C.
    c.assert_none("gossip at C", Duration::from_secs(1), is_gossip)
        .await;

    // m4 accepted by A: C gets it, from A, authored by B; it is m4 and nothing before it.
    let id = b.handle.publish(TOPIC, b"m4".to_vec()).await.unwrap();
    let got = a.next_gossip().await;
    assert_eq!(got.data, b"m4");
    c.assert_none(
        "gossip at C before A's verdict",
        Duration::from_millis(300),
        is_gossip,
    )
    .await;
    assert!(
        a.handle
            .report_validation(got.msg_id, got.source, Validation::Accept)
            .await
            .unwrap()
    );
    let at_c = c.next_gossip().await;
    assert_eq!(at_c.data, b"m4");
    assert_eq!(at_c.msg_id, id);
    assert_eq!(at_c.source, a.peer());
    assert_eq!(at_c.author, Some(b.peer()));
    assert_eq!(at_c.topic, TOPIC);
    // The gossip id is the CID of the data as DAG-CBOR: a governance op's id.
    assert_eq!(
        at_c.msg_id.to_cid(),
        Some(guild_core::cids::cid_for_cbor(b"m4"))
    );
    // A late Accept of the ignored m1 finds nothing to forward: it has left the cache.
    let m1 = MsgId::of(b"m1");
    assert!(
        !a.handle
            .report_validation(m1, b.peer(), Validation::Accept)
            .await
            .unwrap()
    );

    // A publishes: B and C both get it directly.
    a.handle.publish(TOPIC, b"from a".to_vec()).await.unwrap();
    for n in [&mut b, &mut c] {
        let got = n.next_gossip().await; // (for C, not m1: m1 was never forwarded)
        assert_eq!(
            (got.data.as_slice(), got.source),
            (&b"from a"[..], a.peer())
        );
    }
    for n in [&a, &b, &c] {
        n.handle.shutdown().await.unwrap();
    }
}

/// A publish of a message already seen is a success, whether this node published it or
/// received it; a publish with no subscribed peer is a typed error the caller may retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_publish_is_ok() {
    let mut a = Node::spawn(NetConfig::memory()).await;
    let mut b = Node::spawn(memory_config(&[&a])).await;
    a.handle.subscribe(TOPIC).await.unwrap();
    b.handle.subscribe(TOPIC).await.unwrap();
    assert!(
        !b.handle.subscribe(TOPIC).await.unwrap(),
        "already subscribed"
    );
    b.wait_subscribed(a.peer(), TOPIC).await;
    a.wait_subscribed(b.peer(), TOPIC).await;

    match b.handle.publish("nobody-here", b"x".to_vec()).await {
        Err(PublishError::InsufficientPeers(t)) => assert_eq!(t, "nobody-here"),
        other => panic!("expected InsufficientPeers, got {other:?}"),
    }

    let first = b.handle.publish(TOPIC, b"op".to_vec()).await.unwrap();
    let again = b.handle.publish(TOPIC, b"op".to_vec()).await.unwrap();
    assert_eq!(first, again);
    let got = a.next_gossip().await;
    assert_eq!(got.msg_id, first);
    a.handle
        .report_validation(got.msg_id, got.source, Validation::Accept)
        .await
        .unwrap();
    // A re-publishes what it received: a success, and nothing is sent.
    assert_eq!(
        a.handle.publish(TOPIC, b"op".to_vec()).await.unwrap(),
        first
    );
    a.assert_none("a second copy at A", Duration::from_millis(500), is_gossip)
        .await;
    b.assert_none("an echo at B", Duration::from_millis(100), is_gossip)
        .await;
}

/// Data of exactly `max_message_bytes` goes through (the envelope has room on top); one more
/// byte is refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_size_limit() {
    let mut a = Node::spawn(NetConfig::memory()).await;
    let mut b = Node::spawn(memory_config(&[&a])).await;
    a.handle.subscribe(TOPIC).await.unwrap();
    b.handle.subscribe(TOPIC).await.unwrap();
    b.wait_subscribed(a.peer(), TOPIC).await;
    let max = NetConfig::memory().max_message_bytes;
    match b.handle.publish(TOPIC, vec![7; max + 1]).await {
        Err(PublishError::TooLarge { size, max: m }) => assert_eq!((size, m), (max + 1, max)),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    b.handle.publish(TOPIC, vec![7; max]).await.unwrap();
    assert_eq!(a.next_gossip().await.data.len(), max);
}

/// Rejected messages lower the sender's score; past the ban threshold it is disconnected
/// and refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_sender_is_penalised_then_banned() {
    let mut b = Node::spawn(NetConfig::memory()).await;
    let mut a = Node::spawn(memory_config(&[&b])).await;
    a.handle.subscribe(TOPIC).await.unwrap();
    b.handle.subscribe(TOPIC).await.unwrap();
    a.wait_subscribed(b.peer(), TOPIC).await;

    let reject = async |a: &mut Node, b: &mut Node, data: &[u8]| {
        a.handle.publish(TOPIC, data.to_vec()).await.unwrap();
        let got = b.next_gossip().await;
        assert_eq!(got.data, data);
        b.handle
            .report_validation(got.msg_id, got.source, Validation::Reject)
            .await
            .unwrap();
    };
    reject(&mut a, &mut b, b"bad 1").await;
    let score = b
        .wait("A penalised", |e| match e {
            NetEvent::Penalised { peer, score } if *peer == a.peer() => Some(*score),
            _ => None,
        })
        .await;
    assert!(score < 0.0 && score > -50.0, "one rejection: {score}");
    assert!(
        b.handle
            .peers()
            .await
            .unwrap()
            .iter()
            .any(|p| p.peer == a.peer())
    );

    reject(&mut a, &mut b, b"bad 2").await;
    reject(&mut a, &mut b, b"bad 3").await;
    let score = b
        .wait("A banned", |e| match e {
            NetEvent::Banned { peer, score } if *peer == a.peer() => Some(*score),
            _ => None,
        })
        .await;
    assert!(score < -50.0, "three rejections: {score}");
    a.wait("B disconnecting", |e| match e {
        NetEvent::PeerDisconnected { peer } if *peer == b.peer() => Some(()),
        _ => None,
    })
    .await;
    assert!(b.handle.score(a.peer()).await.unwrap().unwrap() < -50.0);

    // A keeps trying (its bootstrap retry, and an explicit dial); B refuses every connection.
    a.handle.dial(b.addr.clone()).await.unwrap();
    assert!(
        b.handle.dial(a.addr.clone()).await.is_err(),
        "B must not dial a banned peer"
    );
    // The witness that A's connection had its chance: B refused it once established.
    b.wait("B refusing A's connection", |e| match e {
        NetEvent::Refused { peer } if *peer == a.peer() => Some(()),
        _ => None,
    })
    .await;
    assert!(
        !b.handle
            .peers()
            .await
            .unwrap()
            .iter()
            .any(|p| p.peer == a.peer())
    );
    let a_handle = a.handle.clone();
    eventually("A holding no connection", || async {
        a_handle.peers().await.unwrap().is_empty()
    })
    .await;
}

/// A request reaches the responder with the requester's DID; its response comes back. A
/// dropped token is a failed request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_response_round_trip() {
    let mut a = Node::spawn(NetConfig::memory()).await;
    let b = Node::spawn(memory_config(&[&a])).await;
    a.wait("B connecting", |e| match e {
        NetEvent::PeerConnected { peer, did } if *peer == b.peer() => Some(did.clone()),
        _ => None,
    })
    .await
    .map(|did| assert_eq!(did, b.key.did()))
    .unwrap();
    assert_eq!(peer_id_from_did(&b.key.did()).unwrap(), b.peer());
    assert_eq!(b.handle.did(), Some(b.key.did()));

    let requester = b.handle.clone();
    let a_peer = a.peer();
    let call = tokio::spawn(async move {
        requester
            .request(a_peer, "collective-1", b"have?".to_vec())
            .await
    });
    let NetEvent::Request {
        peer,
        did,
        topic,
        body,
        token,
    } = a
        .take("a request", |e| matches!(e, NetEvent::Request { .. }))
        .await
    else {
        unreachable!()
    };
    assert_eq!(peer, b.peer());
    assert_eq!(did.as_deref(), Some(b.key.did().as_str()));
    assert_eq!(topic, "collective-1");
    assert_eq!(body, b"have?");
    a.handle.respond(token, vec![0xff; 100_000]).await.unwrap();
    let answer = tokio::time::timeout(common::WAIT, call)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(answer, vec![0xff; 100_000]);
    // The byte counters saw the 100 kB answer leave A and reach B.
    let (ta, tb) = (a.handle.traffic(), b.handle.traffic());
    assert!(ta.bytes_out >= 100_000, "{ta:?}");
    assert!(tb.bytes_in >= 100_000, "{tb:?}");
    assert!(tb.bytes_out < 100_000 && tb.bytes_out > 0, "{tb:?}");

    // Refused by dropping the token.
    let requester = b.handle.clone();
    let call =
        tokio::spawn(async move { requester.request(a_peer, "c", b"secret?".to_vec()).await });
    let refused = a
        .take("a second request", |e| {
            matches!(e, NetEvent::Request { .. })
        })
        .await;
    drop(refused);
    let result = tokio::time::timeout(common::WAIT, call)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            result,
            Err(RequestError::ConnectionClosed | RequestError::Io(_))
        ),
        "{result:?}"
    );

    // PeerInfo names the peer's DID and score.
    let peers = a.handle.peers().await.unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].did.as_deref(), Some(b.key.did().as_str()));
    assert!(peers[0].score.is_some());
}

/// A bootstrap peer that drops the connection is dialled again on the retry interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_peer_is_redialled() {
    let a = Node::spawn(NetConfig::memory()).await;
    let mut b = Node::spawn(memory_config(&[&a])).await;
    b.wait_connected(a.peer()).await;
    eventually("A to see B", || async {
        a.handle
            .peers()
            .await
            .unwrap()
            .iter()
            .any(|p| p.peer == b.peer())
    })
    .await;
    assert!(a.handle.disconnect(b.peer()).await.unwrap());
    b.wait("A disconnected", |e| match e {
        NetEvent::PeerDisconnected { peer } if *peer == a.peer() => Some(()),
        _ => None,
    })
    .await;
    b.wait_connected(a.peer()).await;
}

/// Dropping every handle stops the task; a stopped task answers `Stopped`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_the_task() {
    let a = Node::spawn(NetConfig::memory()).await;
    let h = a.handle.clone();
    h.shutdown().await.unwrap();
    assert!(a.handle.peers().await.is_err());
    assert!(matches!(
        a.handle.publish(TOPIC, vec![1]).await,
        Err(PublishError::Stopped(_))
    ));
}
