//! Joining with an invite, both sides: the candidate's node fetches the log from a member's
//! node with the invite's secret, adopts it, writes its join op and submits it to that node;
//! the member's node serves the fetch and accepts the join only as `guild-gov` allows, by its
//! own clock.

use std::time::{Duration, Instant};

use guild_core::Cid;
use guild_gov::make::{self, InviteCode};
use guild_gov::{Log, OpKind, OpStore, Reason, SignedOp};
use libp2p::{Multiaddr, PeerId};
use serde_bytes::ByteBuf;
use tracing::debug;

use super::peers::p2p_of;
use super::wire::{Reply, ReplyError, Request};
use super::{Cmd, Engine, EngineError, NOT_A_MEMBER, Task, topic};

impl Engine {
    /// Joins a collective with an invite: dials the invite's peers, fetches the log from the
    /// first that answers, writes the join op, and submits it to that peer. Returns the
    /// collective's id.
    pub async fn join(&self, code: InviteCode) -> Result<Cid, EngineError> {
        let peers: Vec<(PeerId, Multiaddr)> = code
            .peers
            .iter()
            .filter_map(|p| p.parse::<Multiaddr>().ok())
            .filter_map(|addr| p2p_of(&addr).map(|peer| (peer, addr)))
            .collect();
        if peers.is_empty() {
            return Err(EngineError::NoPeers(
                "the invite names no member's address".into(),
            ));
        }
        let fetch = Request::Fetch {
            invite: code.invite,
            secret: code.secret.clone(),
        }
        .encode()
        .map_err(|e| EngineError::Invalid(e.to_string()))?;
        let t = topic(&code.collective);
        let deadline = Instant::now() + self.join_timeout;
        let mut last = String::from("no answer");
        loop {
            for (peer, addr) in &peers {
                let _ = self.net.dial(addr.clone()).await;
                match self.net.request(*peer, &t, fetch.clone()).await {
                    Ok(body) => {
                        let ops = Reply::read_ops(&body).map_err(invite_error)?;
                        return self.join_with(&code, *peer, ops).await;
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            if Instant::now() >= deadline {
                return Err(EngineError::NoPeers(last));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Adopts the log `peer` sent, writes the join op and submits it to `peer`.
    async fn join_with(
        &self,
        code: &InviteCode,
        peer: PeerId,
        ops: Vec<Vec<u8>>,
    ) -> Result<Cid, EngineError> {
        let join = self
            .call(|reply| Cmd::Adopt {
                code: code.clone(),
                ops,
                reply,
            })
            .await??;
        let answer = match Request::Submit(join).encode() {
            Ok(body) => self
                .net
                .request(peer, &topic(&code.collective), body)
                .await
                .map_err(|e| EngineError::NoPeers(e.to_string()))
                .and_then(|a| Reply::read_ops(&a).map_err(invite_error)),
            Err(e) => Err(EngineError::Invalid(e.to_string())),
        };
        if let Err(e) = answer {
            // The member refused the join (or never answered): this node is no member, and
            // forgets the log it fetched for the join.
            self.call(|r| Cmd::Abandon(code.collective, r)).await?;
            return Err(e);
        }
        self.call(|r| Cmd::Joined(code.collective, r)).await?;
        Ok(code.collective)
    }
}

fn invite_error(e: ReplyError) -> EngineError {
    EngineError::Invite(e.to_string())
}

impl<S: OpStore + Send + Sync + 'static> Task<S> {
    /// Adopts a log fetched with an invite and writes this member's join op.
    pub(super) async fn adopt(
        &mut self,
        code: InviteCode,
        ops: Vec<Vec<u8>>,
    ) -> Result<Vec<u8>, EngineError> {
        let id = code.collective;
        if !self.collectives.contains_key(&id) {
            let mut log = Log::new(id).with_pending_bounds(usize::MAX, i64::MAX);
            let now = self.now();
            for bytes in &ops {
                log.insert_bytes(bytes, now);
            }
            if log.is_empty() {
                return Err(EngineError::Invite("the peer sent no valid ops".into()));
            }
            self.add_collective(id, log);
        }
        if self.am_member(&id) {
            return Err(EngineError::Invalid("you are already a member".into()));
        }
        self.joining.insert(id);
        let body = make::join(Some((&code.invite, &code.secret)));
        let join = self.write(id, &body).await?;
        let bytes = self
            .collectives
            .get(&id)
            .and_then(|c| c.driver.log().get(&join))
            .map(|op| op.bytes().to_vec())
            .ok_or(EngineError::Stopped)?;
        self.reconcile_peers().await;
        Ok(bytes)
    }

    /// The join was refused: forget the log fetched for it.
    pub(super) fn abandon(&mut self, id: &Cid) {
        if self.joining.remove(id) {
            self.collectives.remove(id);
            self.refresh_membership(id);
            self.dirty.remove(id);
            self.wakes.remove(id);
        }
    }

    /// A member accepted the join: store the log (the caller then subscribes).
    pub(super) fn joined(&mut self, id: &Cid) {
        self.joining.remove(id);
        self.save(id);
    }

    /// A candidate fetching the log with an invite's secret.
    pub(super) fn serve_fetch(
        &self,
        id: Cid,
        peer: PeerId,
        did: Option<&str>,
        invite: &Cid,
        secret: &[u8],
    ) -> Result<Reply, String> {
        let Some(c) = self.collectives.get(&id) else {
            return Err(NOT_A_MEMBER.into());
        };
        // guild-gov decides, by this node's clock (not the candidate's).
        let state = c.driver.log().state_ref();
        if let Err(reason) =
            state.may_fetch_with_invite(invite, secret, did.unwrap_or(""), self.now())
        {
            debug!(peer = %peer, %reason, "refused an invite fetch");
            return Err(match reason {
                Reason::InviteUsed => "this invite has already been used".into(),
                Reason::InviteExpired => "this invite has expired".into(),
                _ => "unknown or expired invite".into(),
            });
        }
        Ok(Reply::Ops(
            c.driver
                .log()
                .export()
                .into_iter()
                .map(|b| ByteBuf::from(b.to_vec()))
                .collect(),
        ))
    }

    /// A candidate submitting its own join op.
    pub(super) async fn serve_submit(
        &mut self,
        id: Cid,
        peer: PeerId,
        did: Option<&str>,
        bytes: &[u8],
    ) -> Result<Reply, String> {
        let op = SignedOp::decode(bytes).map_err(|e| e.to_string())?;
        if op.kind() != OpKind::Join || Some(op.author()) != did {
            return Err("only a candidate's own join may be submitted".into());
        }
        let now = self.now();
        let Some(c) = self.collectives.get_mut(&id) else {
            return Err(NOT_A_MEMBER.into());
        };
        // guild-gov decides, by this node's clock: a join dated far from it, or with an
        // invite expired by it, does not enter the collective here.
        if let Err(reason) = c.driver.log().state_ref().may_accept_join(&op, now) {
            debug!(peer = %peer, %reason, "refused a submitted join");
            return Err(reason.to_string());
        }
        let mut out = Vec::new();
        let result = c.driver.submit(op, now, &mut out);
        self.perform(id, out).await;
        self.save(&id);
        self.reconcile_peers().await;
        result
            .map(|_| Reply::Ops(Vec::new()))
            .map_err(|r| r.to_string())
    }
}
