//! The drivers' actions carried out on the network, and the gossip verdicts.

use std::sync::Arc;
use std::time::Instant;

use guild_core::Cid;
use guild_gov::OpStore;
use guild_gov::driver::{Action, Event, Message};
use libp2p::PeerId;
use tracing::{debug, warn};

use super::wire::{Reply, Request};
use super::{AppliedOp, Task, collective_of, topic};
use crate::handle::{MsgId, Validation};
use crate::identity::did_from_peer_id;

impl<S: OpStore + Send + Sync + 'static> Task<S> {
    /// Hands a gossiped message to its collective's driver; the verdict is reported when the
    /// driver applies or rejects the op, and as Ignore otherwise.
    pub(super) async fn on_gossip(
        &mut self,
        msg_id: MsgId,
        source: PeerId,
        topic: &str,
        data: Vec<u8>,
    ) {
        let Some(id) = collective_of(topic) else {
            let _ = self
                .net
                .report_validation(msg_id, source, Validation::Ignore)
                .await;
            return;
        };
        let did = did_from_peer_id(&source);
        if !self.is_member_did(&id, did.as_deref()) || !self.am_member(&id) {
            let _ = self
                .net
                .report_validation(msg_id, source, Validation::Ignore)
                .await;
            return;
        }
        let Some(c) = self.collectives.get_mut(&id) else {
            return;
        };
        c.unvalidated.insert(msg_id.clone(), source);
        let out = c.driver.handle(
            Event::Message {
                from: source,
                msg: Message::Op(data),
            },
            self.config.clock.now_micros(),
        );
        self.perform(id, out).await;
        // Not applied (waiting for parents, or known): not forwarded by us.
        if let Some(c) = self.collectives.get_mut(&id)
            && let Some(src) = c.unvalidated.remove(&msg_id)
        {
            let _ = self
                .net
                .report_validation(msg_id, src, Validation::Ignore)
                .await;
        }
        self.dirty.insert(id);
    }

    /// Carries out a driver's actions.
    pub(super) async fn perform(&mut self, id: Cid, actions: Vec<Action<PeerId>>) {
        let joining = self.joining.contains(&id);
        for action in actions {
            match action {
                // A candidate's join goes to a member by request only: gossiped before any
                // member knows it, each member would ignore it and mark its id as seen, and
                // then could not publish it on when it accepts the join.
                Action::Publish(_) if joining => {}
                Action::Publish(bytes) => self.publish(id, bytes).await,
                Action::Send { to, msg } => self.send(id, to, &msg),
                Action::Applied(op) => {
                    self.dirty.insert(id);
                    self.refresh_membership(&id);
                    // No receiver is fine: nobody is watching.
                    let _ = self.applied.send(AppliedOp {
                        collective: id,
                        op,
                        at: Instant::now(),
                    });
                }
                Action::Rejected {
                    from,
                    id: op,
                    reason,
                } => {
                    if let (Some(src), Some(op)) = (from, op) {
                        self.settle_gossip(id, op, src, Validation::Reject).await;
                        debug!(peer = %src, reason = %reason, "rejected an op");
                    }
                }
                Action::Penalise { peer, reason } => {
                    warn!(peer = %peer, reason = %reason, "peer sent an invalid op");
                }
                Action::Deferred {
                    from,
                    id: op,
                    until_micros,
                } => {
                    // Dated ahead of this node's clock: not forwarded now, not held against
                    // the sender (its clock, or this one, is off); inserted when it is due.
                    if let Some(src) = from {
                        self.settle_gossip(id, op, src, Validation::Ignore).await;
                        debug!(peer = %src, %op, until_micros, "an op dated ahead of this node's clock waits");
                    }
                }
                Action::Wake { at_micros } => {
                    self.wakes.insert(id, at_micros);
                }
            }
        }
    }

    /// An op the driver publishes: accepted, if it came by gossip; published otherwise, or
    /// sent to each member peer if gossipsub will not publish it.
    async fn publish(&mut self, id: Cid, bytes: Vec<u8>) {
        let msg_id = MsgId::of(&bytes);
        let forwarded = self
            .collectives
            .get_mut(&id)
            .and_then(|c| c.unvalidated.remove(&msg_id));
        if let Some(src) = forwarded {
            let _ = self
                .net
                .report_validation(msg_id, src, Validation::Accept)
                .await;
            return;
        }
        let net = self.net.clone();
        let t = topic(&id);
        let peers: Vec<PeerId> = self
            .collectives
            .get(&id)
            .map(|c| c.driver.peers().copied().collect())
            .unwrap_or_default();
        tokio::spawn(async move {
            let Err(e) = net.publish(&t, bytes.clone()).await else {
                return;
            };
            // Not gossiped (no subscribed peer yet, or gossipsub saw the id already): hand it
            // to each member peer directly.
            debug!(error = %e, "publish failed; sending the op to member peers");
            let body = match Request::Sync(Message::Ops(vec![bytes]).encode()).encode() {
                Ok(body) => body,
                Err(e) => {
                    warn!(error = %e, "could not encode a sync request");
                    return;
                }
            };
            for p in peers {
                let _ = net.request(p, &t, body.clone()).await;
            }
        });
    }

    /// A driver message to a member peer, as a sync request (dropped when too many are in
    /// flight: anti-entropy repairs).
    fn send(&self, id: Cid, to: PeerId, msg: &Message) {
        let Ok(permit) = Arc::clone(&self.requests).try_acquire_owned() else {
            debug!("too many sync requests in flight; dropping one");
            return;
        };
        let body = match Request::Sync(msg.encode()).encode() {
            Ok(body) => body,
            Err(e) => {
                warn!(error = %e, "could not encode a sync request");
                return;
            }
        };
        let net = self.net.clone();
        let t = topic(&id);
        tokio::spawn(async move {
            let _permit = permit;
            match net.request(to, &t, body).await {
                Ok(answer) => {
                    if let Err(e) = Reply::read_ops(&answer) {
                        debug!(peer = %to, error = %e, "sync request refused");
                    }
                }
                Err(e) => debug!(peer = %to, error = %e, "sync request failed"),
            }
        });
    }

    /// Reports the driver's verdict on a gossiped op that awaits validation, if it does.
    async fn settle_gossip(&mut self, id: Cid, op: Cid, src: PeerId, verdict: Validation) {
        let msg_id = MsgId(op.to_bytes());
        let pending = self
            .collectives
            .get_mut(&id)
            .and_then(|c| c.unvalidated.remove(&msg_id));
        if pending.is_some() {
            let _ = self.net.report_validation(msg_id, src, verdict).await;
        }
    }
}
