//! Guild's `coop.guild.*` XRPC methods against their lexicons, through the real router served
//! over loopback HTTP: every route has a lexicon of its kind; requests that break the lexicon
//! are refused with `InvalidRequest` naming the path and the rule (after authentication); and
//! the typed client calls every collective and node method on two in-process nodes
//! (libp2p memory transport), each answer checked against the method's output lexicon.

use std::sync::Arc;
use std::time::{Duration, Instant};

use guild_api::methods::collective::{
    ConsentInput, close_election, create, create_invite, get_remote_heads, get_status,
    grant_consent, join, leave, list_collectives, open_election, revoke_consent, vote,
};
use guild_api::methods::node::{get_peers, get_status as node_status};
use guild_api::{
    ApiState, Bodies, Client, ClientError, Clock, Kind, Limits, Method, RepoService, router,
};
use guild_core::Keypair;
use guild_gov::DriverConfig;
use guild_lexicon::Registry;
use guild_lexicon::schema::Def;
use guild_net::{Engine, EngineConfig, Net, NetCollectives, NetConfig};
use guild_store::MemoryStore;
use serde_json::{Value, json};

const TOKEN: &str = "test-admin-token";
/// The methods that need no token (`validation::PUBLIC`; docs/agreements.md).
const PUBLIC: &[&str] = &[
    "coop.guild.agreement.getOffer",
    "coop.guild.agreement.submitAccept",
    "coop.guild.agreement.listAgreements",
    // A builder's login and receipts (the op's signature authenticates a receipt).
    "coop.guild.feed.getChallenge",
    "coop.guild.feed.login",
    "coop.guild.feed.submitReceipt",
    // The admin token or a builder's bearer token, checked by the handler.
    "coop.guild.bundle.get",
];
const DID: &str = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK";
const CID: &str = "bafyreibemwqsrsrqf3k5hi5cyizpu2ev6awgf63dfxvtggj6uewuejg3u4";

/// A node's API served on a loopback port by `rt`.
struct Node {
    url: String,
    did: String,
    service: Arc<RepoService<MemoryStore>>,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
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
        repo_sync_interval: Duration::from_millis(500),
        ..EngineConfig::default()
    }
}

/// Starts node `n`: its store, repo service and API; with its swarm and collectives engine if
/// `networking`.
fn start(rt: &tokio::runtime::Runtime, n: u8, networking: bool) -> Node {
    let key = Keypair::from_secret_bytes(&[n; 32]);
    let store = Arc::new(MemoryStore::new());
    let service = Arc::new(
        RepoService::new(store.clone(), key.clone(), Arc::new(Registry::builtin())).unwrap(),
    );
    let url = rt.block_on(async {
        let collectives = if networking {
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
            let announcer = engine.clone();
            service.on_commit(move |c, h| {
                announcer.announce_commit(c, h.rev.to_string(), h.commit);
            });
            Some(Arc::new(NetCollectives { engine, net }) as guild_api::collective::Collectives)
        } else {
            None
        };
        let limits = Limits {
            max_body_bytes: 1_000_000,
            ..Limits::default()
        };
        let state = Arc::new(ApiState {
            service: service.clone(),
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
        url
    });
    Node {
        url,
        did: key.did(),
        service,
    }
}

/// A raw request: (status, JSON body).
fn send(req: reqwest::blocking::RequestBuilder) -> (u16, Value) {
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::new()
}

impl Node {
    fn xrpc(&self, nsid: &str) -> String {
        format!("{}/xrpc/{nsid}", self.url)
    }

    /// POSTs `body` as text with a content type, with the token.
    fn post_raw(&self, nsid: &str, content_type: &str, body: &str) -> (u16, Value) {
        send(
            http()
                .post(self.xrpc(nsid))
                .bearer_auth(TOKEN)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body.to_owned()),
        )
    }

    fn post(&self, nsid: &str, body: &Value) -> (u16, Value) {
        self.post_raw(nsid, "application/json", &body.to_string())
    }

    fn get(&self, nsid: &str, params: &[(&str, &str)]) -> (u16, Value) {
        send(http().get(self.xrpc(nsid)).bearer_auth(TOKEN).query(params))
    }

    fn client(&self) -> Client {
        Client::new(self.url.clone(), Some(TOKEN.into())).unwrap()
    }
}

/// Asserts an `InvalidRequest` whose message contains every one of `parts`.
#[track_caller]
fn assert_invalid(got: &(u16, Value), parts: &[&str]) {
    let (status, body) = got;
    assert_eq!(*status, 400, "{body}");
    assert_eq!(body["error"], "InvalidRequest", "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    for p in parts {
        assert!(message.contains(p), "{message:?} should contain {p:?}");
    }
}

/// Checks a typed answer against its method's output lexicon, and returns it.
#[track_caller]
fn checked<M: Method>(out: M::Output) -> M::Output {
    let json = serde_json::to_value(&out).unwrap();
    let value = guild_core::data::from_json(&json).unwrap();
    if let Err(e) = Registry::builtin().validate_output(M::NSID, &value) {
        panic!("{} answered {json}, which breaks its lexicon: {e}", M::NSID);
    }
    out
}

/// `client.call::<M>(input)`, its answer checked against the lexicon.
#[track_caller]
fn call<M: Method>(client: &Client, input: &M::Input) -> M::Output {
    match client.call::<M>(input) {
        Ok(out) => checked::<M>(out),
        Err(e) => panic!("{}: {e}", M::NSID),
    }
}

/// Guild's methods the router serves.
fn guild_methods() -> Vec<(String, Kind)> {
    guild_api::server::methods::<MemoryStore>()
        .into_iter()
        .filter(|(nsid, _)| nsid.starts_with("coop.guild."))
        .collect()
}

#[test]
fn every_guild_route_has_a_lexicon_of_its_kind() {
    let registry = Registry::builtin();
    let methods = guild_methods();
    assert_eq!(methods.len(), 39, "{methods:?}");
    for (nsid, kind) in &methods {
        let def = registry
            .get(nsid)
            .and_then(|d| d.main())
            .unwrap_or_else(|| panic!("no lexicon for {nsid}"));
        match (kind, def) {
            (Kind::Query, Def::Query(_)) | (Kind::Procedure, Def::Procedure(_)) => {}
            _ => panic!(
                "{nsid} is served as a {kind:?} but its lexicon is a {}",
                def.kind()
            ),
        }
    }
    // The list is the router's: every method answers (here: asks for the token), none is
    // unknown (501) or on the wrong HTTP method (405).
    let rt = runtime();
    let node = start(&rt, 1, false);
    for (nsid, kind) in &methods {
        let req = match kind {
            Kind::Query => http().get(node.xrpc(nsid)),
            Kind::Procedure => http().post(node.xrpc(nsid)).json(&json!({})),
        };
        let (status, body) = send(req);
        if PUBLIC.contains(&nsid.as_str()) {
            // No token needed: the request goes on to the lexicon and the handler.
            assert!(
                ![401, 404, 405].contains(&status),
                "{nsid}: {status} {body}"
            );
        } else {
            assert_eq!(status, 401, "{nsid}: {body}");
            assert_eq!(body["error"], "AuthenticationRequired", "{nsid}: {body}");
        }
        // The other HTTP method is not this method, whoever asks.
        let other = match kind {
            Kind::Query => http().post(node.xrpc(nsid)).json(&json!({})),
            Kind::Procedure => http().get(node.xrpc(nsid)),
        };
        let (status, body) = send(other.bearer_auth(TOKEN));
        assert_eq!(status, 405, "{nsid}: {body}");
        assert_eq!(body["error"], "MethodNotAllowed", "{nsid}: {body}");
    }
}

#[test]
fn inputs_that_break_the_lexicon_are_invalid_requests() {
    let rt = runtime();
    let node = start(&rt, 1, false);
    let invite = "coop.guild.collective.createInvite";

    // The reproduced bugs: a non-string invitee made an invite anyone could use; a string
    // expiresInDays fell back to the charter's default.
    assert_invalid(
        &node.post(invite, &json!({"invitee": 5})),
        &["/invitee", "expected string, found integer"],
    );
    assert_invalid(
        &node.post(invite, &json!({"expiresInDays": "1"})),
        &["/expiresInDays", "expected integer, found string"],
    );
    assert_invalid(
        &node.post(invite, &json!({"invitee": "not a did"})),
        &["/invitee", "not a valid did"],
    );
    assert_invalid(
        &node.post(invite, &json!({"expiresInDays": 0})),
        &["/expiresInDays", "less than the minimum 1"],
    );
    assert_invalid(
        &node.post(
            "coop.guild.collective.create",
            &json!({"name": "X", "admission": 3}),
        ),
        &["/admission", "expected string, found integer"],
    );
    assert_invalid(
        &node.post(
            "coop.guild.collective.create",
            &json!({"name": "X", "admission": "open"}),
        ),
        &["/admission", "enum"],
    );
    assert_invalid(
        &node.post("coop.guild.collective.openElection", &json!({"seats": "2"})),
        &["/seats", "expected integer, found string"],
    );
    assert_invalid(
        &node.post(
            "coop.guild.collective.vote",
            &json!({"election": CID, "approvals": [5]}),
        ),
        &["/approvals/0", "expected string, found integer"],
    );
    assert_invalid(
        &node.post(
            "coop.guild.collective.grantConsent",
            &json!({"templates": []}),
        ),
        &["/templates", "at least 1"],
    );
    // A body that is not an object, to every procedure.
    let procedures: Vec<String> = guild_methods()
        .into_iter()
        .filter(|(_, k)| *k == Kind::Procedure)
        .map(|(n, _)| n)
        .collect();
    assert_eq!(procedures.len(), 20, "{procedures:?}");
    for nsid in &procedures {
        for body in ["[1]", "\"text\"", "7", "null"] {
            assert_invalid(
                &node.post_raw(nsid, "application/json", body),
                &["invalid input", "/: expected object"],
            );
        }
    }
    // The content type is JSON, exactly, whatever the method.
    for nsid in procedures
        .iter()
        .map(String::as_str)
        .chain(["com.atproto.repo.createRecord"])
    {
        for ct in ["application/jsonx", "application/json-seq", "text/json"] {
            assert_invalid(
                &node.post_raw(nsid, ct, "{}"),
                &["content-type must be application/json"],
            );
        }
    }
    // Query parameters too.
    assert_invalid(
        &node.get(
            "coop.guild.collective.getRemoteHeads",
            &[("peer", "not-a-did")],
        ),
        &["invalid parameters", "/peer", "not a valid did"],
    );
    assert_invalid(
        &node.get("coop.guild.collective.getRemoteHeads", &[]),
        &["/peer", "required"],
    );
    assert_invalid(
        &node.get("coop.guild.collective.getStatus", &[("collective", "x")]),
        &["/collective", "not a valid cid"],
    );
    assert_invalid(
        &node.get(
            "coop.guild.repo.listRecords",
            &[
                ("repo", DID),
                ("space", CID),
                ("collection", "coop.guild.data.text"),
                ("limit", "1000"),
            ],
        ),
        &["/limit", "more than the maximum 100"],
    );
    assert_invalid(
        &node.post(
            "coop.guild.repo.createRecord",
            &json!({"repo": DID, "space": CID, "collection": "coop.guild.data.text", "record": {"$type": "coop.guild.data.text"}, "rkey": 12}),
        ),
        &["/rkey", "expected string, found integer"],
    );

    // The token comes first: without it, a bad request is still a 401.
    let (status, body) = send(
        http()
            .post(node.xrpc(invite))
            .header(reqwest::header::CONTENT_TYPE, "application/jsonx")
            .body("[1]"),
    );
    assert_eq!(
        (status, &body["error"]),
        (401, &json!("AuthenticationRequired"))
    );
    let (status, body) = send(
        http()
            .get(node.xrpc("coop.guild.collective.getRemoteHeads"))
            .query(&[("peer", "x")]),
    );
    assert_eq!(
        (status, &body["error"]),
        (401, &json!("AuthenticationRequired"))
    );

    // A valid request reaches the handler: this node runs without networking.
    let (status, body) = node.post(invite, &json!({"invitee": DID, "expiresInDays": 1}));
    assert_eq!(
        (status, &body["error"]),
        (501, &json!("MethodNotImplemented"))
    );
    // So does an empty body (read as {}), and a JSON content type with parameters.
    let (status, _) = node.post_raw(invite, "Application/JSON; charset=utf-8", "");
    assert_eq!(status, 501);
}

#[test]
fn records_keep_their_own_errors_in_a_space() {
    let rt = runtime();
    let node = start(&rt, 1, false);
    let id = CID.parse::<guild_core::Cid>().unwrap();
    node.service.declare_space(&id, Some("A space")).unwrap();
    // A float inside the record breaks the data model: the record's error, as on the public
    // repo, not the request's.
    let (status, body) = node.post(
        "coop.guild.repo.createRecord",
        &json!({"repo": node.did, "space": CID, "collection": "coop.guild.data.text",
                "record": {"$type": "coop.guild.data.text", "body": "x", "n": 1.5, "createdAt": "2025-01-01T00:00:00Z"}}),
    );
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("InvalidRecord")),
        "{body}"
    );
    // A lexicon violation inside the record, likewise.
    let (status, body) = node.post(
        "coop.guild.repo.createRecord",
        &json!({"repo": node.did, "space": CID, "collection": "coop.guild.data.text",
                "record": {"$type": "coop.guild.data.text", "createdAt": "2025-01-01T00:00:00Z"}}),
    );
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("InvalidRecord")),
        "{body}"
    );
    // A valid write goes through; its answer matches the lexicon (the debug build's layer
    // checks every answer too).
    let (status, out) = node.post(
        "coop.guild.repo.createRecord",
        &json!({"repo": node.did, "space": CID, "collection": "coop.guild.data.text", "validate": null,
                "record": {"$type": "coop.guild.data.text", "body": "x", "createdAt": "2025-01-01T00:00:00Z"}}),
    );
    assert_eq!(status, 200, "{out}");
    let registry = Registry::builtin();
    let ipld = guild_core::data::from_json(&out).unwrap();
    registry
        .validate_output("coop.guild.repo.createRecord", &ipld)
        .unwrap();
    let (status, out) = node.get(
        "coop.guild.repo.describeRepo",
        &[("repo", &node.did), ("space", CID)],
    );
    assert_eq!(status, 200, "{out}");
    registry
        .validate_output(
            "coop.guild.repo.describeRepo",
            &guild_core::data::from_json(&out).unwrap(),
        )
        .unwrap();
    let status = checked::<node_status::GetStatus>(
        node.client()
            .call::<node_status::GetStatus>(&node_status::Params {})
            .unwrap(),
    );
    assert_eq!(status.did, node.did);
    assert_eq!(status.repos.len(), 1);
    assert_eq!(status.repos[0].records, 2);
}

/// Polls `check` every 100 ms for up to 30 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn typed_calls_of_every_collective_and_node_method() {
    let rt = runtime();
    let a = start(&rt, 1, true);
    let b = start(&rt, 2, true);
    let (ca, cb) = (a.client(), b.client());

    let listed = call::<list_collectives::ListCollectives>(&ca, &list_collectives::Params {});
    assert!(listed.collectives.is_empty());
    let id = call::<create::Create>(
        &ca,
        &create::Input {
            name: "Typed Poets".into(),
            purpose: Some("Tests".into()),
            seats: Some(2),
            countersignatures: None,
            admission: Some(create::Admission::Approval),
            templates: vec!["research-open".into(), "eval-public".into()],
            ..Default::default()
        },
    )
    .collective;
    // The handler's own rules still apply: a blank name, an unknown template.
    for bad in [
        create::Input {
            name: "  ".into(),
            ..Default::default()
        },
        create::Input {
            name: "X".into(),
            templates: vec!["no-such-template".into()],
            ..Default::default()
        },
    ] {
        match ca.call::<create::Create>(&bad) {
            Err(ClientError::Xrpc {
                status: 400, error, ..
            }) => assert_eq!(error, "InvalidRequest"),
            other => panic!("{other:?}"),
        }
    }
    let invite = call::<create_invite::CreateInvite>(
        &ca,
        &create_invite::Input {
            collective: Some(id.clone()),
            invitee: Some(b.did.clone()),
            expires_in_days: Some(2),
        },
    );
    assert_eq!(invite.collective, id);
    let joined = call::<join::Join>(
        &cb,
        &join::Input {
            invite: invite.invite,
        },
    );
    assert_eq!(joined.collective, id);

    let status = |client: &Client| {
        call::<get_status::GetStatus>(
            client,
            &get_status::Params {
                collective: Some(id.clone()),
                limit: None,
                members_after: None,
                consents_of: None,
            },
        )
    };
    eventually("both members on both nodes", || {
        status(&ca).members.len() == 2 && status(&cb).members.len() == 2
    });
    let s = status(&ca);
    assert_eq!(s.name.as_deref(), Some("Typed Poets"));
    assert_eq!(s.role.as_deref(), Some("steward"));
    assert_eq!(s.stewards, vec![a.did.clone()]);
    assert_eq!(
        s.templates,
        Some(vec!["eval-public".to_string(), "research-open".to_string()])
    );

    let granted = call::<grant_consent::GrantConsent>(
        &cb,
        &ConsentInput {
            collective: None,
            templates: vec!["research-open".into()],
            collections: vec!["coop.guild.data.text".into()],
        },
    );
    assert_eq!(granted.collective, id);
    call::<revoke_consent::RevokeConsent>(
        &cb,
        &ConsentInput {
            templates: vec!["research-open".into()],
            ..Default::default()
        },
    );
    // A limit cuts the long lists (members, departed, consents), not their counts.
    let limited = |limit: u64| {
        call::<get_status::GetStatus>(
            &cb,
            &get_status::Params {
                collective: Some(id.clone()),
                limit: Some(limit),
                members_after: None,
                consents_of: None,
            },
        )
    };
    eventually("B holds its consent register", || {
        status(&cb).consent_count == 1
    });
    let full = status(&cb);
    assert_eq!(full.member_count, 2);
    assert_eq!(full.members.len(), 2);
    assert_eq!(full.consents.len(), 1);
    assert_eq!(full.departed_count, full.departed.len() as u64);
    let (one, none) = (limited(1), limited(0));
    assert_eq!((one.members.len(), one.member_count), (1, 2));
    assert_eq!(one.members[0], full.members[0]);
    assert_eq!((one.consents.len(), one.consent_count), (1, 1));
    assert!(none.members.is_empty() && none.consents.is_empty() && none.departed.is_empty());
    assert_eq!(
        (none.member_count, none.consent_count, none.departed_count),
        (2, 1, full.departed_count)
    );
    assert_eq!(none.collective, full.collective);
    // Pages of members: `membersAfter` the last one listed, while a `membersCursor` says more
    // follow.
    let page = |after: Option<String>| {
        call::<get_status::GetStatus>(
            &cb,
            &get_status::Params {
                collective: Some(id.clone()),
                limit: Some(1),
                members_after: after,
                consents_of: None,
            },
        )
    };
    let first = page(None);
    assert_eq!(first.members, full.members[..1]);
    assert_eq!(first.members_cursor.as_ref(), Some(&full.members[0].did));
    let second = page(first.members_cursor.clone());
    assert_eq!(second.members, full.members[1..]);
    assert_eq!(second.members_cursor, None, "the last page has no cursor");
    assert_eq!(second.member_count, 2);
    assert!(limited(2).members_cursor.is_none() && full.members_cursor.is_none());
    // A cursor that is not a DID is refused, with the parameter named.
    let refused = cb
        .call::<get_status::GetStatus>(&get_status::Params {
            collective: Some(id.clone()),
            limit: Some(1),
            members_after: Some("not a did".into()),
            consents_of: None,
        })
        .unwrap_err();
    assert!(refused.to_string().contains("membersAfter"), "{refused}");
    // `consentsOf` lists one member's registers; the count is still everyone's.
    let of = |did: &str| {
        call::<get_status::GetStatus>(
            &cb,
            &get_status::Params {
                collective: Some(id.clone()),
                limit: None,
                members_after: None,
                consents_of: Some(did.to_owned()),
            },
        )
    };
    let (of_a, of_b) = (of(&a.did), of(&b.did));
    assert!(of_a.consents.is_empty());
    assert_eq!(of_b.consents, full.consents);
    assert_eq!((of_a.consent_count, of_b.consent_count), (1, 1));
    assert_eq!(of_a.members, full.members);
    let election = call::<open_election::OpenElection>(
        &ca,
        &open_election::Input {
            seats: Some(1),
            candidates: vec![a.did.clone(), b.did.clone()],
            closes_in_secs: Some(4),
            ..Default::default()
        },
    )
    .op;
    eventually("the election reaches B", || {
        status(&cb).elections.iter().any(|e| e.id == election)
    });
    call::<vote::Vote>(
        &cb,
        &vote::Input {
            election: election.clone(),
            approvals: vec![b.did.clone()],
            ..Default::default()
        },
    );
    call::<vote::Vote>(
        &ca,
        &vote::Input {
            election: election.clone(),
            approvals: vec![b.did.clone()],
            ..Default::default()
        },
    );
    eventually("both ballots reach the teller", || {
        status(&ca).elections.iter().any(|e| e.voters == 2)
    });
    // The teller closes it as soon as its node accepts the close (refused as too early
    // before the close time).
    let close = close_election::Input {
        collective: Some(id.clone()),
        election: election.clone(),
    };
    eventually("the teller's close is accepted", || match ca
        .call::<close_election::CloseElection>(&close)
    {
        Ok(out) => {
            checked::<close_election::CloseElection>(out);
            true
        }
        Err(ClientError::Xrpc { error, message, .. })
            if error == "Refused" && message.contains("before its close time") =>
        {
            false
        }
        Err(e) => panic!("the teller's close was refused: {e}"),
    });
    eventually("B is the steward", || {
        status(&ca).stewards == vec![b.did.clone()]
    });
    let s = status(&ca);
    let certified = s.elections[0].certified.as_ref().unwrap();
    assert_eq!(certified.outcome, "adopted");
    assert_eq!(certified.elected, vec![b.did.clone()]);

    let listed = call::<list_collectives::ListCollectives>(&cb, &list_collectives::Params {});
    assert_eq!(listed.collectives.len(), 1);
    assert_eq!(listed.collectives[0].members, 2);
    let heads = call::<get_remote_heads::GetRemoteHeads>(
        &ca,
        &get_remote_heads::Params {
            peer: b.did.clone(),
            collective: None,
        },
    );
    assert_eq!(heads.peer, b.did);
    assert!(heads.heads.iter().any(|h| h.did == b.did), "{heads:?}");
    let peers = call::<get_peers::GetPeers>(&ca, &get_peers::Params {});
    assert!(
        peers
            .peers
            .iter()
            .any(|p| p.did.as_deref() == Some(b.did.as_str())),
        "{peers:?}"
    );
    let node = call::<node_status::GetStatus>(&cb, &node_status::Params {});
    assert_eq!(node.did, b.did);
    assert!(node.repos.iter().any(|r| r.space == id));

    let left = call::<leave::Leave>(&ca, &leave::Input { collective: None });
    assert_eq!(left.collective, id);
    eventually("A has left, as B sees it", || {
        status(&cb)
            .departed
            .iter()
            .any(|d| d.did == a.did && d.how == "left")
    });
}
