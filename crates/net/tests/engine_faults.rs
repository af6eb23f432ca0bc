//! Faults between real in-process nodes (libp2p memory transport): a member whose node sends
//! forged ops is scored down and cut off, and its ops reach nobody; a collective split in two
//! (links cut by the test) with ops on both sides converges after the links heal.

use std::sync::Arc;
use std::time::Duration;

use guild_core::{Cid, Keypair};
use guild_gov::make::{self, CharterParams};
use guild_gov::{DriverConfig, OpKind};
use guild_net::collective::topic;
use guild_net::{Engine, EngineConfig, Multiaddr, Net, NetConfig, NetHandle};
use guild_store::MemoryStore;

struct Member {
    key: Keypair,
    net: NetHandle,
    engine: Engine,
}

async fn member(n: u8) -> Member {
    let key = Keypair::from_secret_bytes(&[n; 32]);
    let (net, events) = Net::spawn(&key, NetConfig::memory()).unwrap();
    let config = EngineConfig {
        driver: DriverConfig {
            sync_interval_micros: 1_000_000,
            sync_jitter_micros: 500_000,
            request_timeout_micros: 1_000_000,
            ..DriverConfig::default()
        },
        tick: Duration::from_millis(50),
        // The partition test holds its cut itself; no redial undoes it meanwhile.
        redial: Duration::from_secs(3600),
        ..EngineConfig::default()
    };
    let engine = Engine::spawn(
        key.clone(),
        net.clone(),
        events,
        Arc::new(MemoryStore::new()),
        config,
    )
    .await
    .unwrap();
    Member { key, net, engine }
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

async fn addr(m: &Member) -> Multiaddr {
    let a = m.net.listen_addrs().await.unwrap();
    a[0].clone()
        .with(guild_net::multiaddr::Protocol::P2p(m.net.peer_id()))
}

async fn join_all(founder: &Member, others: &[&Member]) -> Cid {
    let id = founder
        .engine
        .create(CharterParams::new("Faults"))
        .await
        .unwrap();
    for m in others {
        let code = founder.engine.invite(id, None, None).await.unwrap();
        m.engine.join(code).await.unwrap();
    }
    let n = others.len() + 1;
    for m in std::iter::once(founder).chain(others.iter().copied()) {
        eventually("everyone sees every member", || async {
            m.engine
                .status(id)
                .await
                .is_ok_and(|s| s.state.members.len() == n)
        })
        .await;
    }
    id
}

async fn grant(m: &Member, id: Cid, template: &str) {
    let templates = vec![template.to_owned()];
    m.engine
        .write(
            id,
            OpKind::ConsentGrant,
            Box::new(move |st, me| {
                let at = guild_core::syntax::Datetime::from_unix_micros(1_800_000_000_000_000);
                Ok(guild_gov::body::OpBody::ConsentGrant(make::consent(
                    st,
                    me,
                    &templates,
                    &[],
                    &at,
                )))
            }),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_sending_forged_ops_is_cut_off_and_its_ops_reach_nobody() {
    let a = member(31).await;
    let b = member(32).await;
    let c = member(33).await;
    let id = join_all(&a, &[&b, &c]).await;
    // Wait until B is in A's mesh for the topic, so its gossip reaches A.
    eventually("B in A's gossip mesh", || async {
        a.net
            .mesh_peers(&topic(&id))
            .await
            .is_ok_and(|p| p.contains(&b.net.peer_id()))
    })
    .await;

    // B's node turns bad: it publishes ops it signs with another key while claiming to be C.
    let heads = a.engine.status(id).await.unwrap().heads;
    let mut forged = Vec::new();
    for i in 0..6u8 {
        let op = guild_gov::Op::write(
            &guild_gov::body::OpBody::ConsentGrant(make::consent(
                &a.engine.status(id).await.unwrap().state,
                &c.key.did(),
                &["research-open".to_owned()],
                &[],
                &guild_core::syntax::Datetime::from_unix_micros(1_800_000_000_000_000 + i as i64),
            )),
            Some(&id),
            &c.key,
            &heads,
            &guild_core::syntax::Datetime::from_unix_micros(1_800_000_000_000_000 + i as i64),
        )
        .unwrap();
        // Re-sign with B's key while keeping C as the author: the signature cannot verify.
        let mut map = op.fields().clone();
        map.remove("sig");
        let unsigned = guild_core::data::encode(&guild_core::Ipld::Map(map.clone())).unwrap();
        map.insert(
            "sig".into(),
            guild_core::Ipld::Bytes(b.key.sign_object(&unsigned).to_vec()),
        );
        let bytes = guild_core::data::encode(&guild_core::Ipld::Map(map)).unwrap();
        forged.push(guild_core::cids::cid_for_cbor(&bytes));
        let _ = b.net.publish(&topic(&id), bytes).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A rejects each, scores B down and bans it.
    eventually("A cuts B off", || async {
        !a.net
            .peers()
            .await
            .unwrap()
            .iter()
            .any(|p| p.peer == b.net.peer_id())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for m in [&a, &c] {
        let s = m.engine.status(id).await.unwrap();
        for f in &forged {
            assert!(!s.heads.contains(f));
        }
        assert!(
            s.state
                .effective_consent(&c.key.did(), "research-open")
                .is_none()
        );
    }
    // The honest members go on: C's real grant spreads to A.
    grant(&c, id, "research-open").await;
    eventually("C's own grant reaches A", || async {
        a.engine.status(id).await.is_ok_and(|s| {
            s.state
                .effective_consent(&c.key.did(), "research-open")
                .is_some()
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_collective_converges_after_healing() {
    let a = member(41).await;
    let b = member(42).await;
    let c = member(43).await;
    let d = member(44).await;
    let e = member(45).await;
    let f = member(46).await;
    let id = join_all(&a, &[&b, &c, &d, &e, &f]).await;
    // Everyone joined through A, and the members' nodes then found each other (they share
    // addresses). Side X = {A, B, C}, side Y = {D, E, F}: every link between the sides is cut.
    b.net.dial(addr(&c).await).await.unwrap();
    e.net.dial(addr(&d).await).await.unwrap();
    f.net.dial(addr(&d).await).await.unwrap();
    f.net.dial(addr(&e).await).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (side_x, side_y) = ([&a, &b, &c], [&d, &e, &f]);
    for y in side_y {
        for x in side_x {
            y.net.disconnect(x.net.peer_id()).await.unwrap();
        }
    }
    eventually("the sides are apart", || async {
        let mut apart = true;
        for x in side_x {
            let peers = x.net.peers().await.unwrap();
            apart &= !side_y
                .iter()
                .any(|y| peers.iter().any(|p| p.peer == y.net.peer_id()));
        }
        apart
    })
    .await;

    // Ops on both sides.
    grant(&b, id, "research-open").await;
    grant(&c, id, "eval-public").await;
    for i in 0..20u8 {
        a.engine
            .write(
                id,
                OpKind::Invite,
                Box::new(move |_, _| Ok(make::invite(&[i; 32], None, None))),
            )
            .await
            .unwrap();
    }
    grant(&d, id, "research-open").await;
    grant(&e, id, "training-commercial-standard").await;
    grant(&f, id, "research-open").await;
    eventually("each side settles on its own", || async {
        let (sa, sd) = (
            a.engine.status(id).await.unwrap(),
            d.engine.status(id).await.unwrap(),
        );
        let (sb, se) = (
            b.engine.status(id).await.unwrap(),
            e.engine.status(id).await.unwrap(),
        );
        sa.heads == sb.heads && sd.heads == se.heads && sa.heads != sd.heads
    })
    .await;

    // Heal: one link back.
    d.net.dial(addr(&a).await).await.unwrap();
    let all = [&a, &b, &c, &d, &e, &f];
    eventually("all six identical after the heal", || async {
        let first = a.engine.status(id).await.unwrap();
        let mut same = true;
        for m in &all[1..] {
            let s = m.engine.status(id).await.unwrap();
            same &= s.heads == first.heads && s.state == first.state;
        }
        same && first.state.consents.len() == 5
    })
    .await;
    let s = f.engine.status(id).await.unwrap();
    assert_eq!(s.state.invites.len(), 20);
}
