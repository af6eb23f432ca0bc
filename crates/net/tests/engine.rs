//! Several real nodes in one process (libp2p memory transport), each with its collectives
//! engine and its own store: a collective is founded, members join with invites, ops spread,
//! a non-member gets nothing, a removed member is cut off, and a node that was away catches up.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use guild_gov::body::{OpBody, RemoveBody};
use guild_gov::make::{self, CharterParams};
use guild_gov::{DriverConfig, OpKind, OpStore};
use guild_net::collective::topic;
use guild_net::collective::wire::{Reply, Request};
use guild_net::{Clock, EngineConfig, EngineError};
use guild_store::MemoryStore;

mod common;
use common::engine::{Member, addr, engine_config, member_on, members_of};
use common::eventually_within;

async fn member_with(n: u8, store: Arc<MemoryStore>) -> Member {
    member_on(n, store, engine_config()).await
}

async fn member(n: u8) -> Member {
    member_with(n, Arc::new(MemoryStore::new())).await
}

/// Polls `check` every 20 ms for up to 20 s.
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(what, Duration::from_secs(20), check).await;
}

/// A member cut off right after joining (its inviter restarted, a partition) must still know
/// where a member is: the invite's addresses go into the address book at the join, before any
/// redial tick could learn them from a connection (the chaos run's node-4 once had none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_remembers_the_invites_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let book = dir.path().join("peers.txt");
    let a = member(1).await;
    let b = member_on(
        2,
        Arc::new(MemoryStore::new()),
        EngineConfig {
            address_book: Some(book.clone()),
            // No redial tick during the test: only the join can write the book.
            redial: Duration::from_secs(3600),
            ..engine_config()
        },
    )
    .await;
    let id = a.engine.create(CharterParams::new("Poets")).await.unwrap();
    let code = a.engine.invite(id, None, None).await.unwrap();
    b.engine.join(code.clone()).await.unwrap();
    let text = std::fs::read_to_string(&book).unwrap();
    for p in &code.peers {
        assert!(text.lines().any(|l| l == p), "{p} not in {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn found_invite_join_and_spread() {
    let a = member(1).await;
    let b = member(2).await;
    let c = member(3).await;
    let id = a.engine.create(CharterParams::new("Poets")).await.unwrap();

    let code = a.engine.invite(id, None, None).await.unwrap();
    assert!(
        !code.peers.is_empty(),
        "the invite carries the founder's address"
    );
    assert_eq!(b.engine.join(code.clone()).await.unwrap(), id);
    // The same invite admits one member only.
    let err = c.engine.join(code).await.unwrap_err();
    assert!(matches!(err, EngineError::Invite(_)), "{err:?}");
    let code = a.engine.invite(id, None, None).await.unwrap();
    c.engine.join(code).await.unwrap();

    let all = {
        let mut v = vec![a.key.did(), b.key.did(), c.key.did()];
        v.sort();
        v
    };
    for m in [&a, &b, &c] {
        eventually("three members everywhere", || async {
            members_of(m, &id).await == all
        })
        .await;
    }

    // B consents; the grant reaches A and C.
    let templates = vec!["research-open".to_owned()];
    b.engine
        .write(
            id,
            OpKind::ConsentGrant,
            Box::new(move |st, me| {
                let at = guild_core::syntax::Datetime::from_unix_micros(1_800_000_000_000_000);
                Ok(OpBody::ConsentGrant(Box::new(make::consent(
                    st,
                    &guild_core::syntax::Did::parse(me).unwrap(),
                    &templates,
                    &[],
                    &at,
                ))))
            }),
        )
        .await
        .unwrap();
    for m in [&a, &c] {
        eventually("the grant spreads", || async {
            m.engine.status(id).await.is_ok_and(|s| {
                s.state
                    .effective_consent(&b.key.did(), "research-open")
                    .is_some()
            })
        })
        .await;
    }
    // Same heads and state everywhere, and the ops are stored.
    eventually("identical states", || async {
        let sa = a.engine.status(id).await.unwrap();
        let sb = b.engine.status(id).await.unwrap();
        let sc = c.engine.status(id).await.unwrap();
        sa.heads == sb.heads && sb.heads == sc.heads && sa.state == sc.state
    })
    .await;
    // Ops are stored every tick; flush what the last tick has not stored yet.
    a.engine.flush().await.unwrap();
    let stored = a.store.stored_ops(&id).unwrap();
    assert_eq!(stored.len(), a.engine.status(id).await.unwrap().ops);

    // A member who is not a steward cannot invite.
    let err = b.engine.invite(id, None, None).await.unwrap_err();
    assert!(matches!(err, EngineError::Refused(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_member_gets_nothing_and_a_removed_member_is_cut_off() {
    let a = member(11).await;
    let b = member(12).await;
    let stranger = member(13).await;
    let id = a.engine.create(CharterParams::new("Closed")).await.unwrap();
    let code = a.engine.invite(id, None, None).await.unwrap();
    b.engine.join(code).await.unwrap();
    eventually("b is a member at a", || async {
        members_of(&a, &id).await.len() == 2
    })
    .await;

    // A stranger dials in and asks for the log: refused, nothing returned.
    stranger.net.dial(addr(&a).await).await.unwrap();
    let sync = guild_gov::Message::Want(vec![id]).encode();
    let body = Request::Sync(sync).encode().unwrap();
    let answer = stranger
        .net
        .request(a.net.peer_id(), &topic(&id), body.clone())
        .await
        .unwrap();
    assert_eq!(
        Reply::decode(&answer),
        Ok(Reply::refused("not-a-member")),
        "a typed refusal and nothing else"
    );
    // Fetching with a made-up invite is refused too.
    let fake = make::InviteCode {
        collective: id,
        invite: id,
        secret: vec![1; 32],
        peers: vec![addr(&a).await.to_string()],
    };
    let err = stranger.engine.join(fake).await.unwrap_err();
    assert!(matches!(err, EngineError::Invite(_)), "{err:?}");
    assert!(stranger.engine.collectives().await.unwrap().is_empty());

    // An expired invite's secret does not download the log either (judged by A's clock): the
    // candidate is refused at the fetch and holds no collective afterwards.
    let past = guild_core::syntax::Datetime::from_unix_micros(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64
            - 60_000_000,
    );
    let expired = a.engine.invite(id, None, Some(past)).await.unwrap();
    let err = stranger.engine.join(expired).await.unwrap_err();
    assert!(
        matches!(&err, EngineError::Invite(m) if m.contains("expired")),
        "{err:?}"
    );
    assert!(stranger.engine.collectives().await.unwrap().is_empty());

    // A removes B: B's requests are refused from then on.
    let b_did = b.key.did();
    a.engine
        .write(
            id,
            OpKind::Remove,
            Box::new(move |_, _| {
                Ok(OpBody::Remove(Box::new(RemoveBody {
                    member: guild_core::syntax::Did::parse(&b_did)
                        .map_err(|e| EngineError::Invalid(e.to_string()))?,
                    reason: None,
                    election: None,
                })))
            }),
        )
        .await
        .unwrap();
    let answer = b
        .net
        .request(a.net.peer_id(), &topic(&id), body)
        .await
        .unwrap();
    assert_eq!(Reply::decode(&answer), Ok(Reply::refused("not-a-member")));
    // B learns of its removal (by gossip or sync before the cut) or not at all; either way it
    // can no longer write anything A accepts.
    let members = members_of(&a, &id).await;
    assert_eq!(members, vec![a.key.did()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_was_away_catches_up_and_a_restart_keeps_the_log() {
    let a = member(21).await;
    let b = member(22).await;
    let id = a.engine.create(CharterParams::new("Away")).await.unwrap();
    let code = a.engine.invite(id, None, None).await.unwrap();
    b.engine.join(code).await.unwrap();
    eventually("joined", || async { members_of(&a, &id).await.len() == 2 }).await;

    // B goes away (its node shuts down); A writes 200 ops meanwhile.
    let b_store = b.store.clone();
    b.net.shutdown().await.unwrap();
    drop(b);
    write_invites(&a, id, 200).await;
    let a_status = a.engine.status(id).await.unwrap();
    assert_eq!(a_status.ops, 3 + 200);

    // B comes back with the same store and key: it reloads its log and catches up by
    // anti-entropy once it reconnects.
    let b = member_with(22, b_store).await;
    assert_eq!(b.engine.status(id).await.unwrap().ops, 3);
    b.net.dial(addr(&a).await).await.unwrap();
    eventually("b catches up", || async {
        b.engine
            .status(id)
            .await
            .is_ok_and(|s| s.heads == a_status.heads)
    })
    .await;
    assert_eq!(
        b.engine.status(id).await.unwrap().state,
        a.engine.status(id).await.unwrap().state
    );
}

/// `n` invites written by `m` (distinct secrets).
async fn write_invites(m: &Member, id: guild_core::Cid, n: u32) {
    for i in 0..n {
        m.engine
            .write(
                id,
                OpKind::Invite,
                Box::new(move |_, _| Ok(make::invite(&[i as u8; 32], None, None))),
            )
            .await
            .unwrap();
    }
}

/// A member whose clock is off by `offset` (settable while it runs).
async fn member_with_clock(n: u8, offset: Arc<AtomicI64>) -> Member {
    let config = EngineConfig {
        clock: Clock::offset(offset),
        ..engine_config()
    };
    member_on(n, Arc::new(MemoryStore::new()), config).await
}

/// Joins are judged by the admitting member's clock. A candidate whose clock runs 1.5 days
/// slow still joins (its join is dated no earlier than the invite it answers, so within the
/// tolerance of the member's clock); one whose clock runs an hour fast is refused at the
/// member's node, and joins with the same invite once its clock is right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_is_judged_by_the_admitting_members_clock() {
    const HOUR: i64 = 3_600_000_000;
    let a = member(1).await;
    let slow = Arc::new(AtomicI64::new(-36 * HOUR));
    let b = member_with_clock(2, Arc::clone(&slow)).await;
    let fast = Arc::new(AtomicI64::new(HOUR));
    let c = member_with_clock(3, Arc::clone(&fast)).await;
    let id = a.engine.create(CharterParams::new("Clocks")).await.unwrap();

    let code = a.engine.invite(id, None, None).await.unwrap();
    assert_eq!(b.engine.join(code).await.unwrap(), id);

    let code = a.engine.invite(id, None, None).await.unwrap();
    let err = c.engine.join(code.clone()).await.unwrap_err();
    assert!(format!("{err}").contains("more than 5 minutes"), "{err}");
    fast.store(0, Ordering::Relaxed);
    assert_eq!(c.engine.join(code).await.unwrap(), id);

    let all = {
        let mut v = vec![a.key.did(), b.key.did(), c.key.did()];
        v.sort();
        v
    };
    for m in [&a, &c] {
        eventually(
            "three members on the nodes whose clocks are right",
            || async { members_of(m, &id).await == all },
        )
        .await;
    }
    // B's clock runs 36 hours slow: every op from the others is dated ahead of it and waits
    // there. Once its clock is right, they enter its log.
    slow.store(0, Ordering::Relaxed);
    eventually("three members on B once its clock is right", || async {
        members_of(&b, &id).await == all
    })
    .await;
}

/// Ten members, each joining with an invite from the founder, whose nodes tell each other
/// where members listen: with `member_peers` 3 a node dials learnt members only while it has
/// fewer than 3 member connections, so the ten form a sparse graph (at most the founder's 9
/// links and 2 more per joiner: 27) through which an op still reaches everyone; with room for
/// every member the same exchange makes a full mesh (45 links), the witness that the bound is
/// what keeps the first graph sparse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_dial_learnt_members_only_up_to_member_peers() {
    let dir = tempfile::tempdir().unwrap();
    let mut linked = Vec::new();
    for (base, member_peers) in [(40u8, 3usize), (60, 32)] {
        let mut ms = Vec::new();
        for i in 0..10u8 {
            let config = EngineConfig {
                member_peers,
                redial: Duration::from_millis(50),
                address_book: Some(dir.path().join(format!("book-{base}-{i}.txt"))),
                ..engine_config()
            };
            ms.push(member_on(base + i, Arc::new(MemoryStore::new()), config).await);
        }
        let id = ms[0]
            .engine
            .create(CharterParams::new("Sparse"))
            .await
            .unwrap();
        for m in &ms[1..] {
            let code = ms[0].engine.invite(id, None, None).await.unwrap();
            m.engine.join(code).await.unwrap();
        }
        let links = || async {
            let mut sum = 0;
            for m in &ms {
                sum += m.net.peers().await.unwrap().len();
            }
            sum / 2
        };
        // The last joiner learnt every member's address from the founder.
        let last_book = dir.path().join(format!("book-{base}-9.txt"));
        eventually(
            "the last joiner's book holds every other member",
            || async {
                let text = std::fs::read_to_string(&last_book).unwrap_or_default();
                let n = ms[..9]
                    .iter()
                    .filter(|m| text.contains(&m.net.peer_id().to_string()))
                    .count();
                n == 9
            },
        )
        .await;
        let writer = &ms[5];
        let op = writer
            .engine
            .write(
                id,
                OpKind::ConsentGrant,
                Box::new(|st, me| {
                    let at = guild_core::syntax::Datetime::from_unix_micros(1_800_000_000_000_000);
                    let did = guild_core::syntax::Did::parse(me)
                        .map_err(|e| EngineError::Invalid(e.to_string()))?;
                    let templates = ["research-open".to_owned()];
                    Ok(OpBody::ConsentGrant(Box::new(make::consent(
                        st,
                        &did,
                        &templates,
                        &[],
                        &at,
                    ))))
                }),
            )
            .await
            .unwrap();
        eventually("the grant reaches every node", || async {
            let mut all = true;
            for m in &ms {
                let s = m.engine.status(id).await.unwrap();
                all &= s.heads.contains(&op);
            }
            let n = links().await;
            assert!(
                member_peers > 9 || n <= 27,
                "{n} links among 10 nodes keeping 3 member connections each"
            );
            all
        })
        .await;
        if member_peers > 9 {
            eventually("a full mesh when every member fits", || async {
                links().await == 45
            })
            .await;
        }
        linked.push(links().await);
    }
    assert!(linked[0] < linked[1], "{linked:?}");
}

/// A joining node fetches the log a page at a time: with pages of at most 2 KiB, a log of
/// 60 ops (~20 KiB) takes a dozen or more requests, and the joiner ends with every op, the
/// same heads and state as the member, and all of them in its own store. Neither node runs
/// anti-entropy here, so the fetch alone must bring every op.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_fetches_a_large_log_in_pages() {
    let no_sync = || DriverConfig {
        sync_interval_micros: 3_600_000_000,
        sync_jitter_micros: 0,
        ..engine_config().driver
    };
    let a = member_on(
        71,
        Arc::new(MemoryStore::new()),
        EngineConfig {
            fetch_page_bytes: 2048,
            driver: no_sync(),
            ..engine_config()
        },
    )
    .await;
    let b = member_on(
        72,
        Arc::new(MemoryStore::new()),
        EngineConfig {
            driver: no_sync(),
            ..engine_config()
        },
    )
    .await;
    let id = a.engine.create(CharterParams::new("Pages")).await.unwrap();
    write_invites(&a, id, 60).await;
    a.engine.flush().await.unwrap();
    let bytes: usize = a.store.stored_ops(&id).unwrap().iter().map(Vec::len).sum();
    assert!(
        bytes > 10 * 2048,
        "{bytes} bytes of log: more than ten pages"
    );
    let code = a.engine.invite(id, None, None).await.unwrap();
    b.engine.join(code).await.unwrap();
    let (sa, sb) = (
        a.engine.status(id).await.unwrap(),
        b.engine.status(id).await.unwrap(),
    );
    assert_eq!(sb.ops, 1 + 61 + 1, "charter, 61 invites, the join");
    assert_eq!((sa.heads, sa.state), (sb.heads, sb.state));
    b.engine.flush().await.unwrap();
    assert_eq!(b.store.stored_ops(&id).unwrap().len(), sb.ops);
}
