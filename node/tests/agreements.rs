//! Agreements end to end on two in-process stewards' nodes (libp2p memory transport, each
//! with its API on loopback HTTP): a steward offers a licence to a builder, the builder
//! fetches the offer without a token and accepts it with only its key (the CLI's own library
//! functions, no node of its own), the stewards countersign up to the charter's quorum of
//! two, and anyone lists the collective's agreements without a token. And the refusals: an
//! accept by another key, of an expired offer, garbled, replayed; a countersignature by a
//! non-steward; prices hidden when the charter keeps them private.

use std::sync::Arc;
use std::time::{Duration, Instant};

use guild_api::methods::agreement::{
    AtBytes, Money, countersign_agreement, get_offer, list_agreements, make_offer, submit_accept,
};
use guild_api::{ApiState, Bodies, Client, ClientError, Clock, Limits, RepoService, router};
use guild_core::syntax::{Datetime, Did};
use guild_core::{Cid, Keypair};
use guild_gov::body::{AcceptBody, Choice, OpBody};
use guild_gov::make::{self, CharterParams};
use guild_gov::{DriverConfig, ElectionKind, Op, OpKind, Reason};
use guild_lexicon::Registry;
use guild_net::{Engine, EngineConfig, EngineError, Net, NetCollectives, NetConfig};
use guild_node::agreement_cmd::{accept_op, submit_accept as post_accept, verify_offer};
use guild_store::MemoryStore;

const TOKEN: &str = "test-admin-token";

struct Node {
    url: String,
    key: Keypair,
    engine: Engine,
}

fn engine_config() -> EngineConfig {
    EngineConfig {
        driver: DriverConfig {
            sync_interval_micros: 1_000_000,
            sync_jitter_micros: 500_000,
            request_timeout_micros: 1_000_000,
            ..DriverConfig::default()
        },
        tick: Duration::from_millis(50),
        join_timeout: Duration::from_secs(10),
        ..EngineConfig::default()
    }
}

fn start(rt: &tokio::runtime::Runtime, n: u8) -> Node {
    let key = Keypair::from_secret_bytes(&[n; 32]);
    let store = Arc::new(MemoryStore::new());
    let service = Arc::new(
        RepoService::new(store.clone(), key.clone(), Arc::new(Registry::builtin())).unwrap(),
    );
    rt.block_on(async {
        let (net, events) = Net::spawn(&key, NetConfig::memory()).unwrap();
        let engine = Engine::spawn_with_repos(
            key.clone(),
            net.clone(),
            events,
            store.clone(),
            Some(service.clone() as Arc<dyn guild_net::Repos>),
            engine_config(),
        )
        .await
        .unwrap();
        let collectives = Some(Arc::new(NetCollectives {
            engine: engine.clone(),
            net,
        }) as guild_api::collective::Collectives);
        let limits = Limits {
            max_body_bytes: 200_000,
            ..Limits::default()
        };
        let state = Arc::new(ApiState {
            service,
            admin_token: TOKEN.into(),
            bodies: Bodies::new(&limits),
            started: Instant::now(),
            clock: Clock::system(),
            collectives,
            bundles: None,
            feeds: None,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            guild_api::serve(listener, router(state), &limits, std::future::pending()).await
        });
        Node { url, key, engine }
    })
}

impl Node {
    fn admin(&self) -> Client {
        Client::new(&self.url, Some(TOKEN.into())).unwrap()
    }
    fn public(&self) -> Client {
        Client::new(&self.url, None).unwrap()
    }
    fn did(&self) -> String {
        self.key.did()
    }
}

fn now_micros() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap()
}

/// Polls `check` every 50 ms for up to 20 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An XRPC error's name and message.
fn xrpc_err<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (u16, String, String) {
    match r {
        Err(ClientError::Xrpc {
            status,
            error,
            message,
        }) => (status, error, message),
        other => panic!("expected an XRPC error, got {other:?}"),
    }
}

/// Makes `b` a second steward: an election for two seats both win, sealed by `a` (the only
/// teller).
fn elect(rt: &tokio::runtime::Runtime, a: &Node, b: &Node, id: Cid) {
    let cands: Vec<Did> = [a.did(), b.did()]
        .iter()
        .map(|d| Did::parse(d).unwrap())
        .collect();
    let closes = Datetime::from_unix_micros(now_micros() + 1_000_000);
    let c2 = cands.clone();
    let election = rt
        .block_on(a.engine.write(
            id,
            OpKind::ElectionOpen,
            Box::new(move |st, _| {
                Ok(
                    make::election_open(st, ElectionKind::Stewards, Some(2), &c2, None, &closes)
                        .unwrap(),
                )
            }),
        ))
        .unwrap();
    for m in [a, b] {
        eventually("the election everywhere", || {
            rt.block_on(m.engine.status(id))
                .is_ok_and(|s| s.state.elections.contains_key(&election))
        });
        let approvals: Vec<Choice> = cands.iter().map(|d| Choice::parse(d.as_str())).collect();
        rt.block_on(m.engine.write(
            id,
            OpKind::Ballot,
            Box::new(move |st, me| Ok(make::ballot(st, &election, me, &approvals))),
        ))
        .unwrap();
    }
    eventually("both ballots at the teller", || {
        rt.block_on(a.engine.status(id))
            .is_ok_and(|s| s.state.elections[&election].ballots.len() == 2)
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seal = rt.block_on(a.engine.write(
            id,
            OpKind::Seal,
            Box::new(move |st, _| Ok(make::seal(st, &election).unwrap())),
        ));
        match seal {
            Ok(_) => break,
            Err(EngineError::Refused(Reason::TooEarly)) => {
                assert!(Instant::now() < deadline, "still too early");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("seal refused: {e}"),
        }
    }
    for m in [a, b] {
        eventually("two stewards everywhere", || {
            rt.block_on(m.engine.status(id))
                .is_ok_and(|s| s.state.stewards().count() == 2)
        });
    }
}

fn offer(n: &Node, id: Cid, builder: &str, expires: Option<i64>) -> make_offer::Output {
    n.admin()
        .call::<make_offer::MakeOffer>(&make_offer::Input {
            collective: Some(id.to_string()),
            builder: builder.into(),
            template: "training-commercial-attribution".into(),
            price: Some(Money {
                amount: 250_000,
                currency: "EUR".into(),
            }),
            term_days: Some(180),
            collections: vec!["coop.guild.data.text".into()],
            expires_in_secs: expires,
            note: Some("for the spring model".into()),
        })
        .unwrap()
}

fn list(n: &Node, id: Cid) -> list_agreements::Output {
    n.public()
        .call::<list_agreements::ListAgreements>(&list_agreements::Params {
            collective: Some(id.to_string()),
        })
        .unwrap()
}

fn post_raw(
    n: &Node,
    id: Cid,
    op: Vec<u8>,
) -> Result<guild_api::methods::collective::OpWritten, ClientError> {
    n.public()
        .call::<submit_accept::SubmitAccept>(&submit_accept::Input {
            collective: id.to_string(),
            op: AtBytes(op),
        })
}

#[test]
fn a_builder_accepts_with_only_a_key_and_two_stewards_put_it_in_force() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (a, b) = (start(&rt, 1), start(&rt, 2));
    let builder = Keypair::from_secret_bytes(&[9; 32]);
    let stranger = Keypair::from_secret_bytes(&[10; 32]);

    let mut params = CharterParams::new("Agreeing Poets");
    params.countersignatures = 2;
    let id = rt.block_on(a.engine.create(params)).unwrap();
    let code = rt.block_on(a.engine.invite(id, None, None)).unwrap();
    rt.block_on(b.engine.join(code)).unwrap();
    eventually("two members on both nodes", || {
        [&a, &b].iter().all(|n| {
            rt.block_on(n.engine.status(id))
                .is_ok_and(|s| s.state.members.len() == 2)
        })
    });

    // Offering needs the token; a member who is not a steward cannot offer.
    let e = xrpc_err(
        a.public()
            .call::<make_offer::MakeOffer>(&make_offer::Input {
                builder: builder.did(),
                template: "research-open".into(),
                ..Default::default()
            }),
    );
    assert_eq!((e.0, e.1.as_str()), (401, "AuthenticationRequired"));
    let e = xrpc_err(b.admin().call::<make_offer::MakeOffer>(&make_offer::Input {
        builder: builder.did(),
        template: "research-open".into(),
        ..Default::default()
    }));
    assert_eq!(e.1, "Refused", "{e:?}");
    // A price for a no-fee template is refused.
    let e = xrpc_err(a.admin().call::<make_offer::MakeOffer>(&make_offer::Input {
        builder: builder.did(),
        template: "research-open".into(),
        price: Some(Money {
            amount: 1,
            currency: "EUR".into(),
        }),
        ..Default::default()
    }));
    assert_eq!(e.1, "InvalidRequest", "{e:?}");

    let made = offer(&a, id, &builder.did(), Some(3600));
    let offer_id = made.op.clone();
    assert_eq!(made.offer.offer, offer_id);
    assert!(
        made.offer.summary.contains("coop.guild.data.text"),
        "{}",
        made.offer.summary
    );
    let (_, body) = verify_offer(&made.offer).unwrap();
    assert_eq!(body.terms.term_days, Some(180));

    // The builder fetches the offer without a token and gets the same document.
    let fetched = a
        .public()
        .call::<get_offer::GetOffer>(&get_offer::Params {
            collective: None,
            offer: offer_id.clone(),
        })
        .unwrap();
    assert_eq!(fetched, made.offer);

    // The offer reaches the second steward's node.
    eventually("the offer on b", || {
        list(&b, id).agreements.iter().any(|x| x.offer == offer_id)
    });

    // Refusals: another key's accept (the CLI's builder refuses it first), a garbled op.
    let now = Datetime::from_unix_micros(now_micros());
    let err = accept_op(&stranger, &fetched, None, None, &now).unwrap_err();
    assert!(err.to_string().contains("not to this key"), "{err}");
    let offer_cid = guild_core::syntax::parse_cid_str(&offer_id).unwrap();
    let forged = Op::write(
        &OpBody::AgreementAccept(Box::new(AcceptBody {
            offer: offer_cid.into(),
            contact: None,
            evaluation: None,
        })),
        Some(&id),
        &stranger,
        &[offer_cid],
        &now,
    )
    .unwrap();
    let e = xrpc_err(post_raw(&a, id, forged.bytes().to_vec()));
    assert_eq!(e.1, "Refused");
    assert!(e.2.contains("not the offer's builder"), "{e:?}");
    let mut garbled = forged.bytes().to_vec();
    let mid = garbled.len() / 2;
    garbled[mid] ^= 0x55;
    let e = xrpc_err(post_raw(&a, id, garbled));
    assert_eq!(e.1, "Refused", "{e:?}");
    let e = xrpc_err(post_raw(&a, id, vec![0xa1, 0x00]));
    assert_eq!(e.1, "Refused", "{e:?}");
    // Not an accept: a member's op signed elsewhere is not taken here.
    let leave = Op::write(
        &OpBody::Leave(Default::default()),
        Some(&id),
        &b.key,
        &[offer_cid],
        &now,
    )
    .unwrap();
    let e = xrpc_err(post_raw(&a, id, leave.bytes().to_vec()));
    assert!(e.2.contains("only a builder's accept"), "{e:?}");

    // The builder accepts with only its key: the CLI's own functions, posted to b's node.
    let accept = accept_op(
        &builder,
        &fetched,
        Some("ml@builder.example".into()),
        None,
        &now,
    )
    .unwrap();
    let accepted = post_accept(&b.url, &id.to_string(), accept.clone()).unwrap();
    // A replay of the same accept changes nothing and names the same op.
    assert_eq!(post_raw(&b, id, accept).unwrap().op, accepted.op);
    // A second accept is refused.
    let again = accept_op(
        &builder,
        &fetched,
        None,
        None,
        &Datetime::from_unix_micros(now_micros() + 1000),
    )
    .unwrap();
    let e = xrpc_err(post_raw(&b, id, again));
    assert!(e.2.contains("already accepted"), "{e:?}");
    eventually("the accept on a", || {
        list(&a, id).agreements[0].status == "accepted"
    });

    // b is not a steward yet: its countersignature is refused.
    let cs = |n: &Node| {
        n.admin()
            .call::<countersign_agreement::CountersignAgreement>(&countersign_agreement::Input {
                collective: None,
                offer: offer_id.clone(),
            })
    };
    let e = xrpc_err(cs(&b));
    assert!(e.2.contains("only a steward"), "{e:?}");

    elect(&rt, &a, &b, id);
    cs(&a).unwrap();
    let l = list(&a, id);
    assert_eq!(l.agreements[0].status, "accepted", "one of two signatures");
    assert_eq!(l.agreements[0].countersigned_by, vec![a.did()]);
    // A steward signs once.
    let e = xrpc_err(cs(&a));
    assert!(e.2.contains("already signed"), "{e:?}");
    eventually("a's countersignature on b", || {
        list(&b, id).agreements[0].countersigned_by.len() == 1
    });
    cs(&b).unwrap();

    // Anyone reads it, on either node, without a token: in force, with its price and terms.
    for n in [&a, &b] {
        eventually("in force everywhere", || {
            list(n, id).agreements[0].status == "in-force"
        });
    }
    let l = list(&a, id);
    assert!(!l.prices_private);
    let x = &l.agreements[0];
    assert_eq!(x.builder, builder.did());
    assert_eq!(x.template, "training-commercial-attribution");
    assert_eq!(x.template_version, 1);
    assert_eq!(x.term.days, Some(180));
    assert!(x.term.start.is_some() && x.term.end.is_some() && x.in_force_since.is_some());
    assert_eq!(
        x.collections.as_deref(),
        Some(&["coop.guild.data.text".to_owned()][..])
    );
    let mut signed = vec![a.did(), b.did()];
    signed.sort();
    assert_eq!(x.countersigned_by, signed);
    let p = x.price.as_ref().unwrap();
    assert_eq!(p.amount.as_ref().map(|m| m.amount), Some(250_000));
    assert!(
        x.summary.contains("2500.00 EUR") || x.summary.contains("2,500"),
        "{}",
        x.summary
    );

    // An expired offer: refused at the node (and by the builder's CLI).
    let short = offer(&a, id, &builder.did(), Some(1));
    std::thread::sleep(Duration::from_millis(1200));
    let late = Datetime::from_unix_micros(now_micros());
    let err = accept_op(&builder, &short.offer, None, None, &late).unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    let short_id = guild_core::syntax::parse_cid_str(&short.op).unwrap();
    let expired = Op::write(
        &OpBody::AgreementAccept(Box::new(AcceptBody {
            offer: short_id.into(),
            contact: None,
            evaluation: None,
        })),
        Some(&id),
        &builder,
        &[short_id],
        &late,
    )
    .unwrap();
    let e = xrpc_err(post_raw(&a, id, expired.bytes().to_vec()));
    assert!(e.2.contains("expired"), "{e:?}");
    // Backdating the accept to before the expiry does not help: this node's clock decides.
    let backdated = Op::write(
        &OpBody::AgreementAccept(Box::new(AcceptBody {
            offer: short_id.into(),
            contact: None,
            evaluation: None,
        })),
        Some(&id),
        &builder,
        &[short_id],
        &Datetime::from_unix_micros(now_micros() - 1_100_000),
    )
    .unwrap();
    let e = xrpc_err(post_raw(&a, id, backdated.bytes().to_vec()));
    assert!(e.2.contains("expired"), "{e:?}");
    assert_eq!(
        list(&a, id)
            .agreements
            .iter()
            .find(|x| x.offer == short.op)
            .unwrap()
            .status,
        "expired"
    );

    // A collective that keeps prices private: no price in the public list, a summary without
    // it, and the offer document only with the token.
    let mut params = CharterParams::new("Quiet Poets");
    params.private_prices = true;
    let quiet = rt.block_on(a.engine.create(params)).unwrap();
    let q = offer(&a, quiet, &builder.did(), None);
    let l = list(&a, quiet);
    assert!(l.prices_private);
    let x = &l.agreements[0];
    assert!(x.price.is_none());
    assert!(!x.summary.contains("EUR"), "{}", x.summary);
    assert!(x.summary.contains("private"), "{}", x.summary);
    let raw = a
        .public()
        .query(list_agreements::NSID, &[("collective", &quiet.to_string())])
        .unwrap();
    assert!(!raw.to_string().contains("250000"), "{raw}");
    let e = xrpc_err(a.public().call::<get_offer::GetOffer>(&get_offer::Params {
        collective: Some(quiet.to_string()),
        offer: q.op.clone(),
    }));
    assert_eq!(e.0, 401);
    a.admin()
        .call::<get_offer::GetOffer>(&get_offer::Params {
            collective: Some(quiet.to_string()),
            offer: q.op,
        })
        .unwrap();
}
