//! Who is answered what (protocol.md §5): a collective's sync requests are served to current
//! members only, as this node's state has them; a candidate may fetch the log with an
//! invite's secret and submit its own join (`joins`); a non-member that subscribes to the
//! topic is cut off until its join arrives.

use std::time::Instant;

use guild_core::Cid;
use guild_gov::OpStore;
use guild_gov::driver::{Event, Message};
use libp2p::PeerId;
use serde_bytes::ByteBuf;
use tracing::{debug, info};

use super::peers::{is_unspecified, with_p2p};
use super::wire::{MAX_ADDRS, Reply, Request, WireError};
use super::{NOT_A_MEMBER, Task, collective_of};
use crate::identity::did_from_peer_id;

impl<S: OpStore + Send + Sync + 'static> Task<S> {
    /// The reply to a request on a collective's topic (repo requests aside).
    pub(super) async fn on_request(
        &mut self,
        peer: PeerId,
        did: Option<&str>,
        topic: &str,
        req: Result<Request, WireError>,
    ) -> Reply {
        let Some(id) = collective_of(topic) else {
            return Reply::refused("unknown topic");
        };
        if !self.collectives.contains_key(&id) {
            return Reply::refused(NOT_A_MEMBER);
        }
        let req = match req {
            Ok(req) => req,
            Err(e) => {
                debug!(peer = %peer, error = %e, "a malformed request");
                return Reply::refused(format!("malformed request: {e}"));
            }
        };
        let result = match req {
            Request::Sync(msg) => self.serve_sync(id, peer, did, &msg).await,
            Request::Fetch {
                invite,
                secret,
                from,
            } => self.serve_fetch(id, peer, did, (&invite, &secret), from),
            Request::Addrs(_) => self.serve_addrs(id, peer, did).await,
            Request::Submit(bytes) => self.serve_submit(id, peer, did, &bytes).await,
            Request::ReplicaVerdict { refused } => self.serve_verdict(id, did, refused),
            Request::RepoHeads(_) | Request::Repo { .. } => Err("not a sync request".into()),
        };
        result.unwrap_or_else(Reply::Refused)
    }

    /// A driver message from a member peer.
    async fn serve_sync(
        &mut self,
        id: Cid,
        peer: PeerId,
        did: Option<&str>,
        msg: &[u8],
    ) -> Result<Reply, String> {
        if !self.is_member_did(&id, did) || !self.am_member(&id) {
            debug!(peer = %peer, "refused a non-member's sync request");
            return Err(NOT_A_MEMBER.into());
        }
        let msg = Message::decode(msg).map_err(|e| e.to_string())?;
        let now = self.now();
        let Some(c) = self.collectives.get_mut(&id) else {
            return Err(NOT_A_MEMBER.into());
        };
        if !c.driver.peers().any(|p| *p == peer) {
            let out = c.driver.handle(Event::PeerConnected(peer), now);
            self.perform(id, out).await;
        }
        let Some(c) = self.collectives.get_mut(&id) else {
            return Err(NOT_A_MEMBER.into());
        };
        let out = c.driver.handle(Event::Message { from: peer, msg }, now);
        self.perform(id, out).await;
        self.dirty.insert(id);
        Ok(Reply::Ops(Vec::new()))
    }

    /// Where the other members' nodes this node is connected to listen (to members only).
    async fn serve_addrs(
        &mut self,
        id: Cid,
        peer: PeerId,
        did: Option<&str>,
    ) -> Result<Reply, String> {
        if !self.is_member_did(&id, did) || !self.am_member(&id) {
            return Err(NOT_A_MEMBER.into());
        }
        let peers = self.net.peers().await.map_err(|e| e.to_string())?;
        let Some(c) = self.collectives.get(&id) else {
            return Err(NOT_A_MEMBER.into());
        };
        let state = c.driver.log().state_ref();
        let mut out = Vec::new();
        for p in peers {
            if p.peer == peer
                || !p
                    .did
                    .as_ref()
                    .is_some_and(|d| state.members.contains_key(d.as_str()))
            {
                continue;
            }
            for a in p.addrs.iter().filter(|a| !is_unspecified(a)).take(4) {
                out.push(ByteBuf::from(with_p2p(a.clone(), p.peer).to_vec()));
            }
        }
        out.truncate(MAX_ADDRS);
        Ok(Reply::Addrs(out))
    }

    /// A peer subscribed to a collective's topic: a member is synced with at once; a
    /// non-member is disconnected (gossip must not reach it) and dialled back once its join
    /// is here.
    pub(super) async fn on_subscribed(&mut self, peer: PeerId, topic: &str) {
        let Some(id) = collective_of(topic) else {
            return;
        };
        if self.is_member_did(&id, did_from_peer_id(&peer).as_deref()) {
            // A member (re)subscribed: what was published before its subscription arrived did
            // not reach it, so sync with it now rather than in 30–60 s.
            if let Some(c) = self.collectives.get_mut(&id)
                && c.driver.peers().any(|p| *p == peer)
            {
                let out = c
                    .driver
                    .handle(Event::PeerConnected(peer), self.config.clock.now_micros());
                self.perform(id, out).await;
            }
            return;
        }
        if !self.collectives.contains_key(&id) {
            return;
        }
        // It may be a new member whose join has not reached this node yet: sync with the
        // members now, and dial it back once its join is here.
        info!(peer = %peer, collective = %id, "a non-member subscribed; disconnecting until its join arrives");
        let addrs = self
            .net
            .peers()
            .await
            .ok()
            .and_then(|ps| ps.into_iter().find(|p| p.peer == peer))
            .map(|p| p.addrs)
            .unwrap_or_default();
        let _ = self.net.disconnect(peer).await;
        if self.cut_off.len() < 1024 {
            self.cut_off.insert(peer, (addrs, Instant::now()));
        }
        if let Some(c) = self.collectives.get_mut(&id) {
            let members: Vec<PeerId> = c.driver.peers().copied().collect();
            let mut out = Vec::new();
            for p in members {
                c.driver.handle_into(
                    Event::PeerConnected(p),
                    self.config.clock.now_micros(),
                    &mut out,
                );
            }
            self.perform(id, out).await;
        }
    }
}
