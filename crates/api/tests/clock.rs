//! The API reads "now" from its configuration's clock (`ApiState::clock`), not the machine's:
//! served over loopback HTTP with a clock set years ahead and a recording
//! `CollectiveEngine` (no network), the dates the handlers put into ops and invites (an
//! invite's expiry, an election's close, a consent's start) are that clock's time plus the
//! requested delay.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use cid::Cid;
use guild_api::methods::collective::{ConsentInput, create_invite, grant_consent, open_election};
use guild_api::{ApiState, Bodies, Client, Clock, CollectiveEngine, Limits, RepoService, router};
use guild_core::Keypair;
use guild_core::syntax::Datetime;
use guild_gov::make::{CharterParams, InviteCode};
use guild_gov::{OpKind, State};
use guild_lexicon::Registry;
use guild_service::{BoxFuture, EngineError, FieldsFn, NodePeers, OpFields, RepoHead, Status};
use guild_store::MemoryStore;

const TOKEN: &str = "test-admin-token";
const COLLECTIVE: &str = "bafyreibemwqsrsrqf3k5hi5cyizpu2ev6awgf63dfxvtggj6uewuejg3u4";
/// 2040-01-01T00:00:00Z: far from the machine's clock, so that a handler reading the system
/// clock could not pass by chance.
const NOW_MICROS: i64 = 2_208_988_800_000_000;

fn collective() -> Cid {
    guild_core::syntax::parse_cid_str(COLLECTIVE).unwrap()
}

/// An engine that records what the handlers ask of it.
#[derive(Debug, Default)]
struct Recorder {
    /// Invites' expiry dates.
    invites: Mutex<Vec<Option<Datetime>>>,
    /// Ops written, with the fields their `FieldsFn` built from an empty state.
    ops: Mutex<Vec<(OpKind, OpFields)>>,
}

impl CollectiveEngine for Recorder {
    fn collectives(&self) -> BoxFuture<'_, Result<Vec<Cid>, EngineError>> {
        Box::pin(async { Ok(vec![collective()]) })
    }

    fn create(&self, _: CharterParams) -> BoxFuture<'_, Result<Cid, EngineError>> {
        Box::pin(async { Err(EngineError::Stopped) })
    }

    fn invite(
        &self,
        collective: Cid,
        _: Option<guild_core::syntax::Did>,
        expires_at: Option<Datetime>,
    ) -> BoxFuture<'_, Result<InviteCode, EngineError>> {
        self.invites.lock().unwrap().push(expires_at);
        Box::pin(async move {
            Ok(InviteCode {
                collective,
                invite: collective,
                secret: vec![7; 32],
                peers: Vec::new(),
            })
        })
    }

    fn join(&self, _: InviteCode) -> BoxFuture<'_, Result<Cid, EngineError>> {
        Box::pin(async { Err(EngineError::Stopped) })
    }

    fn write(
        &self,
        collective: Cid,
        kind: OpKind,
        fields: FieldsFn,
    ) -> BoxFuture<'_, Result<Cid, EngineError>> {
        let built = fields(&State::new(collective), "did:key:z6MkTest");
        Box::pin(async move {
            self.ops.lock().unwrap().push((kind, built?));
            Ok(collective)
        })
    }

    fn status(&self, _: Cid) -> BoxFuture<'_, Result<Status, EngineError>> {
        Box::pin(async { Err(EngineError::Stopped) })
    }

    fn log(&self, _: Cid) -> BoxFuture<'_, Result<guild_gov::Log, EngineError>> {
        Box::pin(async { Err(EngineError::Stopped) })
    }

    fn remote_heads<'a>(
        &'a self,
        _: Cid,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Vec<RepoHead>, EngineError>> {
        Box::pin(async { Err(EngineError::Stopped) })
    }

    fn peers(&self) -> BoxFuture<'_, Result<NodePeers, EngineError>> {
        Box::pin(async { Ok(NodePeers::default()) })
    }
}

fn field(body: &OpFields, name: &str) -> String {
    match body.to_fields().unwrap().get(name) {
        Some(guild_core::Ipld::String(s)) => s.clone(),
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn handlers_date_ops_and_invites_by_the_configured_clock() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let key = Keypair::from_secret_bytes(&[9; 32]);
    let clock = Clock::from_fn(|| NOW_MICROS);
    let service = Arc::new(
        RepoService::new(
            Arc::new(MemoryStore::new()),
            key,
            Arc::new(Registry::builtin()),
        )
        .unwrap()
        .with_clock(clock.clone()),
    );
    let engine = Arc::new(Recorder::default());
    let limits = Limits {
        max_body_bytes: 1_000_000,
        ..Limits::default()
    };
    let state = Arc::new(ApiState {
        service,
        admin_token: TOKEN.into(),
        bodies: Bodies::new(&limits),
        started: Instant::now(),
        clock,
        collectives: Some(engine.clone() as Arc<dyn CollectiveEngine>),
        bundles: None,
        feeds: None,
    });
    let url = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            guild_api::serve(listener, router(state), &limits, std::future::pending()).await
        });
        url
    });
    let client = Client::new(url, Some(TOKEN.into())).unwrap();
    let at = |micros: i64| Datetime::from_unix_micros(micros).as_str().to_owned();

    client
        .call::<create_invite::CreateInvite>(&create_invite::Input {
            expires_in_days: Some(2),
            ..Default::default()
        })
        .unwrap();
    let invites = engine.invites.lock().unwrap().clone();
    assert_eq!(
        invites,
        [Some(Datetime::from_unix_micros(
            NOW_MICROS + 2 * 86_400_000_000
        ))]
    );

    client
        .call::<open_election::OpenElection>(&open_election::Input {
            closes_in_secs: Some(3600),
            seats: Some(1),
            candidates: vec!["did:key:z6MkTest".into()],
            ..Default::default()
        })
        .unwrap();
    client
        .call::<grant_consent::GrantConsent>(&ConsentInput {
            templates: vec!["cc-by-4.0".into()],
            ..Default::default()
        })
        .unwrap();
    let ops = engine.ops.lock().unwrap().clone();
    assert_eq!(ops.len(), 2, "{ops:?}");
    assert_eq!(ops[0].0, OpKind::ElectionOpen);
    assert_eq!(
        field(&ops[0].1, "closesAfter"),
        at(NOW_MICROS + 3_600_000_000)
    );
    assert_eq!(ops[1].0, OpKind::ConsentGrant);
    assert_eq!(field(&ops[1].1, "effectiveFrom"), at(NOW_MICROS));
}
