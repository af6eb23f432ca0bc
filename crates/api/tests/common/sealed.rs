//! A stand-in collectives engine for download tests: one collective whose state says that
//! the given bundles (manifest CID → agreement) are sealed, and nothing else. With a
//! `Stewardship` over a directory whose `sealed/<manifest>.car` the test writes, the real
//! `coop.guild.bundle.get` handler serves those files. Shared by `tests/feeds.rs` and the
//! feed client's tests in `node/tests/`.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use guild_core::Cid;
use guild_core::syntax::Did;
use guild_gov::State;
use guild_gov::body::{BundleKind, Open};
use guild_gov::make::{CharterParams, InviteCode};
use guild_gov::state::Bundle;
use guild_service::{
    BoxFuture, CollectiveEngine, EngineError, FieldsFn, NodePeers, RepoHead, Status,
};

/// The engine: `(manifest, agreement)` pairs sealed in one collective.
#[derive(Debug)]
pub struct Sealed {
    pub collective: Cid,
    pub bundles: Vec<(Cid, Cid)>,
}

impl Sealed {
    fn state(&self) -> State {
        let mut s = State::new(self.collective);
        for (i, (manifest, agreement)) in self.bundles.iter().enumerate() {
            let proposal = guild_core::cids::cid_for_raw(format!("proposal {i}").as_bytes());
            s.bundles.insert(
                proposal,
                Bundle {
                    agreement: *agreement,
                    template: "training-commercial-standard".into(),
                    kind: Open::Known(BundleKind::Training),
                    heads: Vec::new(),
                    replicas: Arc::new(Vec::new()),
                    contributors: Arc::new(BTreeMap::new()),
                    approvals: BTreeMap::new(),
                    equivocating: BTreeSet::new(),
                    sealed: Some((*manifest, Vec::new())),
                    voided: None,
                },
            );
        }
        s
    }
}

impl CollectiveEngine for Sealed {
    fn collectives(&self) -> BoxFuture<'_, Result<Vec<Cid>, EngineError>> {
        Box::pin(async { Ok(vec![self.collective]) })
    }

    fn create(&self, _: CharterParams) -> BoxFuture<'_, Result<Cid, EngineError>> {
        Box::pin(async { Err(EngineError::Stopped) })
    }

    fn invite(
        &self,
        _: Cid,
        _: Option<Did>,
        _: Option<guild_core::syntax::Datetime>,
    ) -> BoxFuture<'_, Result<InviteCode, EngineError>> {
        Box::pin(async { Err(EngineError::Stopped) })
    }

    fn join(&self, _: InviteCode) -> BoxFuture<'_, Result<Cid, EngineError>> {
        Box::pin(async { Err(EngineError::Stopped) })
    }

    fn write(
        &self,
        _: Cid,
        _: guild_gov::OpKind,
        _: FieldsFn,
    ) -> BoxFuture<'_, Result<Cid, EngineError>> {
        Box::pin(async { Err(EngineError::Stopped) })
    }

    fn status(&self, collective: Cid) -> BoxFuture<'_, Result<Status, EngineError>> {
        let state = self.state();
        Box::pin(async move {
            Ok(Status {
                collective,
                state,
                heads: Vec::new(),
                ops: 0,
                pending: 0,
                wanted: 0,
                peers: Vec::new(),
                replica_refusals: Vec::new(),
            })
        })
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
