//! The collectives engine as the API sees it: [`NetCollectives`] implements
//! `guild_service::CollectiveEngine` over an [`Engine`] and its swarm's [`NetHandle`], so that
//! `guild-api` serves the collective endpoints without depending on this crate.
//!
//! The engine's answers and errors are guild-service's own types, so nothing is converted
//! but the peer list.

use guild_core::Cid;
use guild_core::syntax::Datetime;
use guild_gov::OpKind;
use guild_gov::make::{CharterParams, InviteCode};
use guild_service::engine::{self as api, BoxFuture, CollectiveEngine};

use crate::collective::Engine;
use crate::handle::NetHandle;
use crate::repos::RepoHead;

/// The node's collectives engine and swarm, behind `guild_service::CollectiveEngine`.
#[derive(Debug, Clone)]
pub struct NetCollectives {
    /// The collectives engine.
    pub engine: Engine,
    /// The swarm (for the peer list and traffic).
    pub net: NetHandle,
}

impl CollectiveEngine for NetCollectives {
    fn collectives(&self) -> BoxFuture<'_, Result<Vec<Cid>, api::EngineError>> {
        Box::pin(async move { self.engine.collectives().await })
    }

    fn create(&self, params: CharterParams) -> BoxFuture<'_, Result<Cid, api::EngineError>> {
        Box::pin(async move { self.engine.create(params).await })
    }

    fn invite(
        &self,
        collective: Cid,
        invitee: Option<guild_core::syntax::Did>,
        expires_at: Option<Datetime>,
    ) -> BoxFuture<'_, Result<InviteCode, api::EngineError>> {
        Box::pin(async move { self.engine.invite(collective, invitee, expires_at).await })
    }

    fn join(&self, code: InviteCode) -> BoxFuture<'_, Result<Cid, api::EngineError>> {
        Box::pin(async move { self.engine.join(code).await })
    }

    fn write(
        &self,
        collective: Cid,
        kind: OpKind,
        fields: api::FieldsFn,
    ) -> BoxFuture<'_, Result<Cid, api::EngineError>> {
        Box::pin(async move { self.engine.write(collective, kind, fields).await })
    }

    fn log(&self, collective: Cid) -> BoxFuture<'_, Result<guild_gov::Log, api::EngineError>> {
        Box::pin(async move { self.engine.log(collective).await })
    }

    fn status(&self, collective: Cid) -> BoxFuture<'_, Result<api::Status, api::EngineError>> {
        Box::pin(async move { self.engine.status(collective).await })
    }

    fn remote_heads<'a>(
        &'a self,
        collective: Cid,
        peer: &'a str,
    ) -> BoxFuture<'a, Result<Vec<RepoHead>, api::EngineError>> {
        Box::pin(async move { self.engine.remote_heads(collective, peer).await })
    }

    fn peers(&self) -> BoxFuture<'_, Result<api::NodePeers, api::EngineError>> {
        Box::pin(async move {
            let peers = self
                .net
                .peers()
                .await
                .map_err(|_| api::EngineError::Stopped)?;
            let listen = self.net.listen_addrs().await.unwrap_or_default();
            let traffic = self.net.traffic();
            Ok(api::NodePeers {
                peer: self.net.peer_id().to_string(),
                listen: listen.iter().map(ToString::to_string).collect(),
                peers: peers
                    .into_iter()
                    .map(|p| api::Peer {
                        peer: p.peer.to_string(),
                        did: p.did,
                        addrs: p.addrs.iter().map(ToString::to_string).collect(),
                        score: p.score,
                    })
                    .collect(),
                bytes_in: traffic.bytes_in,
                bytes_out: traffic.bytes_out,
            })
        })
    }

    fn submit(&self, collective: Cid, op: Vec<u8>) -> BoxFuture<'_, Result<Cid, api::EngineError>> {
        Box::pin(async move { self.engine.submit(collective, op).await })
    }

    fn op(
        &self,
        collective: Cid,
        id: Cid,
    ) -> BoxFuture<'_, Result<Option<Vec<u8>>, api::EngineError>> {
        Box::pin(async move { self.engine.op(collective, id).await })
    }
}
