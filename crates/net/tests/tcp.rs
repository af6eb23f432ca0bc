//! Three nodes over loopback TCP (noise + yamux), as the node runs them.

mod common;

use common::Node;
use guild_net::multiaddr::Protocol;
use guild_net::{Multiaddr, NetConfig, NetEvent, Validation};

const TOPIC: &str = "coop.guild.collective/tcp";

fn loopback(bootstrap: &[&Node]) -> NetConfig {
    NetConfig {
        listen: vec![
            Multiaddr::empty()
                .with(Protocol::Ip4([127, 0, 0, 1].into()))
                .with(Protocol::Tcp(0)),
        ],
        bootstrap: bootstrap.iter().map(|n| n.addr.clone()).collect(),
        mdns: false,
        // Every node is 127.0.0.1.
        ip_colocation_penalty: false,
        heartbeat_ms: 100,
        ..NetConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_and_sync_over_loopback_tcp() {
    let mut a = Node::spawn(loopback(&[])).await;
    assert!(
        a.addr
            .iter()
            .any(|p| matches!(p, Protocol::Tcp(port) if port != 0))
    );
    let mut b = Node::spawn(loopback(&[&a])).await;
    let mut c = Node::spawn(loopback(&[&a])).await;
    for n in [&a, &b, &c] {
        n.handle.subscribe(TOPIC).await.unwrap();
    }
    a.wait_subscribed(b.peer(), TOPIC).await;
    a.wait_subscribed(c.peer(), TOPIC).await;
    b.wait_subscribed(a.peer(), TOPIC).await;
    c.wait_subscribed(a.peer(), TOPIC).await;
    a.wait_mesh(c.peer(), TOPIC).await;

    b.handle.publish(TOPIC, b"head".to_vec()).await.unwrap();
    let got = a.next_gossip().await;
    a.handle
        .report_validation(got.msg_id, got.source, Validation::Accept)
        .await
        .unwrap();
    let at_c = c.next_gossip().await;
    assert_eq!(
        (at_c.data.as_slice(), at_c.author),
        (&b"head"[..], Some(b.peer()))
    );

    let requester = c.handle.clone();
    let a_peer = a.peer();
    let call =
        tokio::spawn(async move { requester.request(a_peer, TOPIC, b"ping".to_vec()).await });
    let NetEvent::Request { did, token, .. } = a
        .take("a request", |e| matches!(e, NetEvent::Request { .. }))
        .await
    else {
        unreachable!()
    };
    assert_eq!(did, Some(c.key.did()));
    a.handle.respond(token, b"pong".to_vec()).await.unwrap();
    let answer = tokio::time::timeout(common::WAIT, call)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(answer, b"pong");
}

/// mDNS starts with the real transport (discovery itself depends on the host's multicast, so it
/// is not asserted here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mdns_starts_on_tcp() {
    let node = Node::spawn(NetConfig {
        mdns: true,
        ..loopback(&[])
    })
    .await;
    assert!(!node.handle.listen_addrs().await.unwrap().is_empty());
    node.handle.shutdown().await.unwrap();
}
