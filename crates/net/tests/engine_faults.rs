//! Faults between real in-process nodes (libp2p memory transport): a member whose node sends
//! forged ops is scored down and cut off, and its ops reach nobody; a collective split in two
//! (links cut by the test) with ops on both sides converges after the links heal.

use std::sync::Arc;
use std::time::Duration;

use guild_core::Cid;
use guild_gov::OpKind;
use guild_gov::make::{self, CharterParams};
use guild_net::EngineConfig;
use guild_net::collective::topic;
use guild_store::MemoryStore;

mod common;
use common::engine::{Member, addr, connected, engine_config, member_on};
use common::eventually_within;

async fn member(n: u8) -> Member {
    let config = EngineConfig {
        // The partition test holds its cut itself; no redial undoes it meanwhile.
        redial: Duration::from_secs(3600),
        join_timeout: EngineConfig::default().join_timeout,
        ..engine_config()
    };
    member_on(n, Arc::new(MemoryStore::new()), config).await
}

/// Polls `check` every 20 ms for up to 30 s.
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(what, Duration::from_secs(30), check).await;
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

async fn grant(m: &Member, id: Cid, template: &str) -> Cid {
    let templates = vec![template.to_owned()];
    m.engine
        .write(
            id,
            OpKind::ConsentGrant,
            Box::new(move |st, me| {
                let at = guild_core::syntax::Datetime::from_unix_micros(1_800_000_000_000_000);
                Ok(guild_gov::body::OpBody::ConsentGrant(Box::new(
                    make::consent(
                        st,
                        &guild_core::syntax::Did::parse(me).unwrap(),
                        &templates,
                        &[],
                        &at,
                    ),
                )))
            }),
        )
        .await
        .unwrap()
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
    let before = a.engine.status(id).await.unwrap();
    let heads = before.heads.clone();
    let mut forged = Vec::new();
    for i in 0..6u8 {
        let op = guild_gov::Op::write(
            &guild_gov::body::OpBody::ConsentGrant(Box::new(make::consent(
                &a.engine.status(id).await.unwrap().state,
                &guild_core::syntax::Did::parse(&c.key.did()).unwrap(),
                &["research-open".to_owned()],
                &[],
                &guild_core::syntax::Datetime::from_unix_micros(1_800_000_000_000_000 + i as i64),
            ))),
            Some(&id),
            &c.key,
            &heads,
            &guild_core::syntax::Datetime::from_unix_micros(1_800_000_000_000_000 + i as i64),
        )
        .unwrap();
        // Re-sign with B's key while keeping C as the author: the signature cannot verify.
        let mut map = op.fields().unwrap();
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
    eventually("A cuts B off", || async { !connected(&a, &b).await }).await;
    // C had its chance too: it rejected the forged ops B flooded to it (B's score at C falls,
    // and C may ban B as well), or it has no link to B at all.
    eventually("C rejected B's forged ops, or has no link to B", || async {
        !connected(&c, &b).await
            || c.net
                .score(b.net.peer_id())
                .await
                .ok()
                .flatten()
                .is_some_and(|s| s < 0.0)
    })
    .await;
    // The honest members go on: C's real grant spreads to A, and A and C come to hold the
    // same log (anti-entropy compares their sets, so an op in either is in both).
    let real = grant(&c, id, "research-open").await;
    eventually("C's own grant reaches A, and A and C agree", || async {
        let (sa, sc) = (
            a.engine.status(id).await.unwrap(),
            c.engine.status(id).await.unwrap(),
        );
        sa.heads == sc.heads
            && sa
                .state
                .effective_consent(&c.key.did(), "research-open")
                .is_some_and(|g| g.op() == real)
    })
    .await;
    // No forged op entered either log (each holds one op more: C's grant), and C's consent
    // is its own grant, not a forged one.
    for m in [&a, &c] {
        let s = m.engine.status(id).await.unwrap();
        assert_eq!(s.ops, before.ops + 1);
        for f in &forged {
            assert!(!s.heads.contains(f));
        }
        assert_eq!(
            s.state
                .effective_consent(&c.key.did(), "research-open")
                .map(|g| g.op()),
            Some(real)
        );
    }
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
    // Everyone joined through A, and the members' nodes then find each other (they share
    // addresses). Side X = {A, B, C}, side Y = {D, E, F}: every link between the sides is cut,
    // and held cut by each node refusing the other side (requests and address answers would
    // dial across otherwise).
    b.net.dial(addr(&c).await).await.unwrap();
    e.net.dial(addr(&d).await).await.unwrap();
    f.net.dial(addr(&d).await).await.unwrap();
    f.net.dial(addr(&e).await).await.unwrap();
    let (side_x, side_y) = ([&a, &b, &c], [&d, &e, &f]);
    for y in side_y {
        for x in side_x {
            y.net.block(x.net.peer_id()).await.unwrap();
            x.net.block(y.net.peer_id()).await.unwrap();
        }
    }
    eventually("the sides are apart, and each side linked", || async {
        let mut ok = connected(&b, &c).await
            && connected(&e, &d).await
            && connected(&f, &d).await
            && connected(&f, &e).await;
        for y in side_y {
            for x in side_x {
                ok &= !connected(y, x).await && !connected(x, y).await;
            }
        }
        ok
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

    // Heal: the refusals lifted, one link back.
    for y in side_y {
        for x in side_x {
            y.net.unblock(x.net.peer_id()).await.unwrap();
            x.net.unblock(y.net.peer_id()).await.unwrap();
        }
    }
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
