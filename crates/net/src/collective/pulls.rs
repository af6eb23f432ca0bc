//! Repo replication, the engine's side (the transfers are in [`crate::replica`]): this
//! member's heads announced on the topic, announcements judged, and on a steward's node one
//! pull per member's repo at a time, on each announcement, on connect and every
//! `repo_sync_interval`; heads and repo requests served to members only.

use std::collections::HashMap;
use std::sync::Arc;

use guild_core::Cid;
use guild_core::syntax::{Datetime, Did};
use guild_gov::{OpStore, Role};
use libp2p::PeerId;
use tracing::{debug, info, warn};

use super::wire::{Announcement, Flag, MAX_REASON_BYTES, Reply, Request, WireError};
use super::{Internal, NOT_A_MEMBER, Pull, Task, collective_of, topic};
use crate::handle::{ResponseToken, Validation};
use crate::identity::did_from_peer_id;
use crate::replica::{self, PullLimits};
use crate::repos::{RepoHead, RepoKind};
use guild_service::ReplicaRefusal;

impl<S: OpStore + Send + Sync + 'static> Task<S> {
    /// Whether this node keeps replicas of the collective's members' repos: it has repos to
    /// keep them in and its member is a steward there.
    pub(super) fn replicates(&self, id: &Cid) -> bool {
        self.repos.is_some()
            && !self.joining.contains(id)
            && self
                .collectives
                .get(id)
                .is_some_and(|c| c.driver.log().state_ref().role(&self.me) == Some(Role::Steward))
    }

    /// Publishes a new head of this member's repo in a collective's space.
    pub(super) fn announce(&mut self, id: Cid, head: RepoHead) {
        if head.did.as_str() != self.me || !self.am_member(&id) || self.joining.contains(&id) {
            return;
        }
        let bytes = match Announcement::new(&head).and_then(|a| a.encode()) {
            Ok(bytes) => bytes,
            Err(e) => {
                warn!(error = %e, "cannot announce this repo head");
                return;
            }
        };
        let net = self.net.clone();
        let t = topic(&id);
        debug!(collective = %id, rev = %head.rev, "announcing a repo head");
        tokio::spawn(async move {
            if let Err(e) = net.publish(&t, bytes).await {
                debug!(error = %e, "announcement not published; stewards catch up by heads sync");
            }
        });
    }

    /// The verdict on a repo-head announcement, and a pull if this node replicates. Only a
    /// member's own node may announce its head (the gossip author is the repo's owner).
    pub(super) fn on_announcement(
        &mut self,
        source: PeerId,
        author: Option<PeerId>,
        topic: &str,
        announcement: Result<Announcement, WireError>,
    ) -> Validation {
        let Some(id) = collective_of(topic) else {
            return Validation::Ignore;
        };
        let head = match announcement {
            Ok(a) => RepoHead::from(a.head),
            Err(e) => {
                debug!(peer = %source, error = %e, "a malformed announcement");
                return Validation::Reject;
            }
        };
        let Some(author) = author else {
            return Validation::Reject;
        };
        if did_from_peer_id(&author).as_deref() != Some(head.did.as_str()) {
            debug!(peer = %source, "an announcement of someone else's repo");
            return Validation::Reject;
        }
        let forwarder = did_from_peer_id(&source);
        if !self.is_member(&id, head.did.as_str())
            || !self.is_member_did(&id, forwarder.as_deref())
            || !self.am_member(&id)
        {
            return Validation::Ignore;
        }
        if head.did.as_str() != self.me && self.replicates(&id) {
            let peers = if author == source {
                vec![author]
            } else {
                vec![author, source]
            };
            self.want_pull(id, head.did, head.kind, Some(head.rev), peers);
        }
        Validation::Accept
    }

    /// Starts a pull of `did`'s repo up to `rev`, unless the replica is there already or a
    /// pull of that repo is running (then it runs again after).
    pub(super) fn want_pull(
        &mut self,
        id: Cid,
        did: Did,
        kind: RepoKind,
        rev: Option<String>,
        peers: Vec<PeerId>,
    ) {
        let key = (id, did, kind);
        if let (Some(held), Some(rev)) = (self.held.get(&key), &rev)
            && held >= rev
        {
            return;
        }
        if let Some(p) = self.pulls.get_mut(&key) {
            p.again = Some((rev, peers));
            return;
        }
        let Some(repos) = self.repos.clone() else {
            return;
        };
        let (id, did, _) = key.clone();
        self.pulls.insert(key, Pull { again: None });
        let net = self.net.clone();
        let internal = self.internal.clone();
        let permits = Arc::clone(&self.pull_permits);
        let limits = PullLimits {
            max_bytes: self.config.max_replica_bytes,
        };
        tokio::spawn(async move {
            let outcome = match permits.acquire_owned().await {
                Ok(_permit) => {
                    match replica::pull(repos, net, id, (did.clone(), kind), rev, peers, limits)
                        .await
                    {
                        Ok(head) => PullOutcome::Held(head.map(|h| h.rev)),
                        Err(e) => {
                            debug!(collective = %id, did = %did, error = %e, "pull failed");
                            match e.refused {
                                Some(reason) => PullOutcome::Refused(reason),
                                None => PullOutcome::Failed,
                            }
                        }
                    }
                }
                Err(_) => PullOutcome::Failed,
            };
            let _ = internal
                .send(Internal::Pulled {
                    collective: id,
                    did,
                    kind,
                    outcome,
                })
                .await;
        });
    }

    /// Asks a member peer which repos it holds in the collective's space.
    pub(super) fn ask_heads(&self, id: Cid, peer: PeerId) {
        let Ok(permit) = Arc::clone(&self.requests).try_acquire_owned() else {
            return;
        };
        let body = match Request::RepoHeads(Flag).encode() {
            Ok(body) => body,
            Err(e) => {
                warn!(error = %e, "could not encode a heads request");
                return;
            }
        };
        let net = self.net.clone();
        let internal = self.internal.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let answer = net.request(peer, &topic(&id), body).await;
            match answer
                .map_err(|e| e.to_string())
                .and_then(|a| Reply::read_heads(&a).map_err(|e| e.to_string()))
            {
                Ok(heads) => {
                    let _ = internal
                        .send(Internal::Heads {
                            collective: id,
                            peer,
                            heads,
                        })
                        .await;
                }
                Err(e) => debug!(peer = %peer, error = %e, "heads request failed"),
            }
        });
    }

    /// Every `repo_sync_interval`: each collective this node replicates asks one member peer
    /// (in turn) for its heads.
    pub(super) fn repo_sync(&mut self) {
        self.repo_sync_turn = self.repo_sync_turn.wrapping_add(1);
        let ids: Vec<Cid> = self.collectives.keys().copied().collect();
        for id in ids {
            if !self.replicates(&id) {
                continue;
            }
            let peers: Vec<PeerId> = self
                .collectives
                .get(&id)
                .map(|c| c.driver.peers().copied().collect())
                .unwrap_or_default();
            if let Some(p) = peers.get(self.repo_sync_turn % peers.len().max(1)) {
                self.ask_heads(id, *p);
            }
        }
    }

    /// Asks member peers for their heads when this node replicates: the peers just connected,
    /// or every member peer when this node's member has just become a steward.
    pub(super) fn heads_on_connect(&mut self, id: Cid, new: Vec<PeerId>) {
        if !self.replicates(&id) {
            self.replicating.remove(&id);
            return;
        }
        let ask: Vec<PeerId> = if self.replicating.insert(id) {
            // Newly a steward here: every member peer, not only the new ones.
            self.collectives
                .get(&id)
                .map(|c| c.driver.peers().copied().collect())
                .unwrap_or_default()
        } else {
            new
        };
        for p in ask {
            self.ask_heads(id, p);
        }
    }

    /// A pull ended: remember the revision held, report a refusal of the member's repo (see
    /// [`Refusals`]), and pull again if a newer head was announced meanwhile.
    pub(super) fn pulled(
        &mut self,
        collective: Cid,
        did: Did,
        kind: RepoKind,
        outcome: PullOutcome,
    ) {
        let pull_key = (collective, did, kind);
        if let PullOutcome::Held(Some(rev)) = &outcome {
            self.held.insert(pull_key.clone(), rev.clone());
        }
        let again = self.pulls.remove(&pull_key).and_then(|p| p.again);
        let (collective, did, _) = pull_key;
        if let Some((rev, peers)) = again {
            self.want_pull(collective, did.clone(), kind, rev, peers);
        }
        if kind == RepoKind::Public {
            // A public repo is not the member's contribution to the collective: a refusal
            // is logged, not told as a replica verdict.
            if let PullOutcome::Refused(reason) = &outcome {
                debug!(collective = %collective, did = %did, reason = %reason, "a member's public repo refused as a replica");
            }
            return;
        }
        let key = (collective, did);
        let now = self.now();
        match self.refusals.note(&key, &outcome, now) {
            Some(Change::Refused(reason)) => warn!(
                collective = %key.0,
                did = %key.1,
                reason = %reason,
                "this steward's node refuses the member's repo as a replica: its new records don't reach this node until the member's repo is fixed"
            ),
            Some(Change::Accepted) => {
                info!(
                    collective = %key.0,
                    did = %key.1,
                    "the member's repo, refused before, is accepted as a replica again"
                );
                self.tell_member(key.0, &key.1, None);
            }
            None => {}
        }
        // Every refusal is told (not only a new reason): the member's node may have been
        // away when the first was. Pulls run on the member's announcements and heads syncs,
        // so this is no more frequent than they are.
        if let PullOutcome::Refused(reason) = &outcome {
            self.tell_member(key.0, &key.1, Some(reason.clone()));
        }
    }

    /// Tells a member's node how this steward's node judged its repo as a replica: refused,
    /// and why, or accepted again. Best effort: a member's node that is not reachable now
    /// hears of the next refusal.
    fn tell_member(&self, collective: Cid, member: &Did, refused: Option<String>) {
        let Ok(peer) = crate::identity::peer_id_from_did(member.as_str()) else {
            return;
        };
        let mut refused = refused;
        if let Some(r) = refused.as_mut() {
            truncate_reason(r);
        }
        let body = match (Request::ReplicaVerdict { refused }).encode() {
            Ok(body) => body,
            Err(e) => {
                warn!(error = %e, "could not encode a replica verdict");
                return;
            }
        };
        let net = self.net.clone();
        tokio::spawn(async move {
            if let Err(e) = net.request(peer, &topic(&collective), body).await {
                debug!(peer = %peer, error = %e, "the member's node was not told of its replica");
            }
        });
    }

    /// A steward's verdict on this member's repo as a replica, from the steward's node
    /// (`did` is the requester's, from its connection's peer id): kept for the status while it
    /// is a refusal, forgotten when accepted. Only a current steward's verdict counts.
    pub(super) fn serve_verdict(
        &mut self,
        id: Cid,
        did: Option<&str>,
        refused: Option<String>,
    ) -> Result<Reply, String> {
        let steward = did
            .filter(|d| {
                self.am_member(&id)
                    && self
                        .collectives
                        .get(&id)
                        .is_some_and(|c| c.driver.log().state_ref().role(d) == Some(Role::Steward))
            })
            .and_then(|d| Did::parse(d).ok())
            .ok_or_else(|| "not-a-steward".to_string())?;
        let key = (id, steward);
        match refused {
            Some(reason) => {
                if self.refused_by.get(&key).map(|r| &r.reason) != Some(&reason) {
                    warn!(
                        collective = %id,
                        steward = %key.1,
                        reason = %reason,
                        "a steward's node refuses this member's repo as a replica: new records in the collective's space don't reach it"
                    );
                }
                let at = self.now();
                self.refused_by.insert(key, Refusal { reason, at });
            }
            None => {
                if self.refused_by.remove(&key).is_some() {
                    info!(collective = %id, steward = %key.1, "a steward's node accepts this member's repo again");
                }
            }
        }
        Ok(Reply::Ops(Vec::new()))
    }

    /// The refusals of members' repos as replicas in a collective, both ways: by this node's
    /// steward, and of this node's member's repo by other stewards.
    pub(super) fn replica_refusals(&self, id: &Cid) -> Vec<ReplicaRefusal> {
        let Ok(me) = Did::parse(&self.me) else {
            return Vec::new();
        };
        let refusal = |member: &Did, steward: &Did, r: &Refusal| ReplicaRefusal {
            member: member.clone(),
            steward: steward.clone(),
            reason: r.reason.clone(),
            at: Datetime::from_unix_micros(r.at),
        };
        let mine = self
            .refusals
            .0
            .iter()
            .filter(|((c, _), _)| c == id)
            .map(|((_, member), r)| refusal(member, &me, r));
        let theirs = self
            .refused_by
            .iter()
            .filter(|((c, _), _)| c == id)
            .map(|((_, steward), r)| refusal(&me, steward, r));
        mine.chain(theirs).collect()
    }

    /// A peer told which repos it holds: pull those of members newer than the replicas.
    pub(super) fn heads_known(&mut self, collective: Cid, peer: PeerId, heads: Vec<RepoHead>) {
        if !self.replicates(&collective) {
            return;
        }
        for h in heads {
            if h.did.as_str() != self.me && self.is_member(&collective, h.did.as_str()) {
                self.want_pull(collective, h.did, h.kind, Some(h.rev), vec![peer]);
            }
        }
    }

    /// Serves a heads or repo request: to current members only (as this node's state has
    /// them), and only while this node's member is one.
    pub(super) async fn on_repo_request(
        &mut self,
        peer: PeerId,
        did: Option<&str>,
        topic: &str,
        req: Request,
        token: ResponseToken,
    ) {
        let id = collective_of(topic);
        let allowed = id.is_some_and(|id| self.is_member_did(&id, did) && self.am_member(&id));
        let Some(id) = id.filter(|_| allowed) else {
            debug!(peer = %peer, "refused a non-member's repo request");
            super::respond(&self.net, token, Reply::refused(NOT_A_MEMBER)).await;
            return;
        };
        let Ok(permit) = Arc::clone(&self.serve_permits).try_acquire_owned() else {
            super::respond(&self.net, token, Reply::refused(replica::BUSY)).await;
            return;
        };
        // A public repo is served to a collective's members only if its owner is one too; a
        // heads reply lists only the members' public repos (not which other collectives'
        // members this node holds).
        let members: Option<std::collections::HashSet<Did>> = match &req {
            Request::RepoHeads(_) => self
                .collectives
                .get(&id)
                .map(|c| c.driver.log().state_ref().members.keys().cloned().collect()),
            _ => None,
        };
        if let Request::Repo {
            did, public: true, ..
        } = &req
            && !self.is_member(&id, did.as_str())
        {
            super::respond(&self.net, token, Reply::refused(replica::NOT_FOUND)).await;
            return;
        }
        let net = self.net.clone();
        let repos = self.repos.clone();
        let exports = Arc::clone(&self.exports);
        let page = self.config.repo_page_bytes;
        tokio::spawn(async move {
            let _permit = permit;
            let reply = match req {
                Request::Repo {
                    did,
                    public,
                    since,
                    offset,
                } => {
                    let wanted = replica::Wanted {
                        did,
                        kind: if public {
                            RepoKind::Public
                        } else {
                            RepoKind::Space
                        },
                        since: since.map(|t| t.into_string()),
                    };
                    replica::serve_repo(repos, exports, id, wanted, offset, page).await
                }
                Request::RepoHeads(_) => {
                    let members = members.unwrap_or_default();
                    replica::serve_heads(repos, id, move |d| members.contains(d)).await
                }
                _ => Reply::refused("not a repo request"),
            };
            super::respond(&net, token, reply).await;
        });
    }
}

/// How a pull of a member's repo ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PullOutcome {
    /// The replica is (now) at this revision, if there is one.
    Held(Option<String>),
    /// A peer sent the repo, and this node's import refused it, for this reason.
    Refused(String),
    /// No peer's repo got as far as the import (unreachable peers, refused requests…).
    Failed,
}

/// A change in whether a member's repo is refused as a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Change {
    /// Refused, for a reason other than the last one logged.
    Refused(String),
    /// Accepted after a refusal.
    Accepted,
}

/// A refusal of a member's repo as a replica: why, and when (microseconds since the epoch,
/// by the engine's clock) it was last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    pub(super) reason: String,
    pub(super) at: i64,
}

/// The last refusal of each member's repo, for the status, and so that a refusal is logged
/// (at `warn`) when it first happens or its reason changes, not on each of the pulls that
/// repeat it.
#[derive(Debug, Default)]
pub(super) struct Refusals(HashMap<(Cid, Did), Refusal>);

impl Refusals {
    /// Notes a pull's outcome at `now`; the change to report, if any. A pull that reached no
    /// repo changes nothing.
    pub(super) fn note(
        &mut self,
        key: &(Cid, Did),
        outcome: &PullOutcome,
        now: i64,
    ) -> Option<Change> {
        match outcome {
            PullOutcome::Refused(reason) => {
                let old = self.0.insert(
                    key.clone(),
                    Refusal {
                        reason: reason.clone(),
                        at: now,
                    },
                );
                if old.is_some_and(|o| o.reason == *reason) {
                    return None;
                }
                Some(Change::Refused(reason.clone()))
            }
            PullOutcome::Held(_) => self.0.remove(key).map(|_| Change::Accepted),
            PullOutcome::Failed => None,
        }
    }
}

/// Cuts a refusal's reason to what a verdict may carry ([`MAX_REASON_BYTES`]), on a
/// character boundary.
fn truncate_reason(reason: &mut String) {
    if reason.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_reported_once_per_reason_until_accepted() {
        let mut r = Refusals::default();
        let collective: Cid = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
            .parse()
            .unwrap();
        let a = (collective, Did::parse("did:key:z6MkAlice").unwrap());
        let b = (collective, Did::parse("did:key:z6MkBob").unwrap());
        let gone = PullOutcome::Refused("no space declaration".into());
        assert_eq!(r.note(&a, &PullOutcome::Held(None), 0), None);
        assert_eq!(
            r.note(&a, &gone, 0),
            Some(Change::Refused("no space declaration".into()))
        );
        // The same refusal again, or a pull that reached no repo: nothing new to say.
        assert_eq!(r.note(&a, &gone, 0), None);
        assert_eq!(r.note(&a, &PullOutcome::Failed, 0), None);
        assert_eq!(r.note(&a, &gone, 0), None);
        // Another member's refusal is its own.
        assert_eq!(
            r.note(&b, &gone, 0),
            Some(Change::Refused("no space declaration".into()))
        );
        // A new reason is reported.
        let other = PullOutcome::Refused("bad signature".into());
        assert_eq!(
            r.note(&a, &other, 0),
            Some(Change::Refused("bad signature".into()))
        );
        // Accepted: reported once, then a refusal is news again.
        assert_eq!(
            r.note(&a, &PullOutcome::Held(Some("r".into())), 0),
            Some(Change::Accepted)
        );
        assert_eq!(r.note(&a, &PullOutcome::Held(Some("r".into())), 0), None);
        assert_eq!(
            r.note(&a, &gone, 0),
            Some(Change::Refused("no space declaration".into()))
        );
    }
}
