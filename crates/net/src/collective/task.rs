//! The engine task: its loop, the commands of [`Engine`](super::Engine)'s handles, local
//! writes, and the dispatch of network events and of its own tasks' reports.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use guild_core::Cid;
use guild_core::syntax::{Datetime, Did};
use guild_gov::body::OpBody;
use guild_gov::driver::{Driver, Event};
use guild_gov::make::{self, CharterParams, InviteCode};
use guild_gov::{Departure, Inserted, Log, Op, OpKind, OpStore, StoreReader};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::peers::is_unspecified;
use super::wire::{Gossip, Request, classify_gossip};
use super::{Cmd, Collective, Departed, EngineError, Internal, Status, Task, topic};
use crate::handle::NetEvent;
use crate::identity::did_from_peer_id;

impl<S: OpStore + Send + Sync + 'static> Task<S> {
    pub(super) async fn run(
        mut self,
        mut cmds: mpsc::Receiver<Cmd>,
        mut events: mpsc::Receiver<NetEvent>,
        mut internal: mpsc::Receiver<Internal>,
    ) {
        let span = tracing::info_span!("engine", did = %short(&self.me));
        let _guard = span.enter();
        let mut tick = tokio::time::interval(self.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(cmd) => self.on_cmd(cmd).await,
                    None => break,
                },
                ev = events.recv() => match ev {
                    Some(ev) => self.on_event(ev).await,
                    None => break,
                },
                Some(msg) = internal.recv() => self.on_internal(msg),
                _ = tick.tick() => self.on_tick().await,
                _ = sleep_for(self.next_wake_in()) => self.on_wake().await,
            }
        }
        self.save_all();
        info!("engine stopped");
    }

    pub(super) fn save_all(&mut self) {
        for id in std::mem::take(&mut self.dirty) {
            self.save(&id);
        }
    }

    pub(super) fn save(&mut self, id: &Cid) -> bool {
        // A log fetched for a join is kept in memory until a member accepts the join: a
        // refused candidate must not find itself a member of its own copy after a restart.
        if self.joining.contains(id) {
            self.dirty.insert(*id);
            return true;
        }
        let Some(c) = self.collectives.get_mut(id) else {
            return true;
        };
        match c.driver.log_mut().save(&*self.store) {
            Ok(_) => {
                let failures = c.driver.log().read_failures();
                if failures > 0 {
                    // An op left in the store could not be read back, so a fold or an answer
                    // went without it: the log is opened again from the store (every op
                    // is stored now), which gives the state the stored ops make.
                    error!(collective = %id, failures, "could not read ops back from the store; reopening the log");
                    match Log::open_shared(*id, &self.store, &self.cache) {
                        Ok(log) => *c.driver.log_mut() = log,
                        Err(e) => {
                            error!(collective = %id, error = %e, "could not reopen the log; will retry");
                            self.dirty.insert(*id);
                            return false;
                        }
                    }
                }
                true
            }
            Err(e) => {
                warn!(collective = %id, error = %e, "could not store ops; will retry");
                self.dirty.insert(*id);
                false
            }
        }
    }

    /// Now, by the engine's clock.
    pub(super) fn now(&self) -> i64 {
        self.config.clock.now_micros()
    }

    pub(super) fn is_member(&self, collective: &Cid, did: &str) -> bool {
        self.collectives
            .get(collective)
            .is_some_and(|c| c.driver.log().state_ref().members.contains_key(did))
    }

    /// Records whether this node's member left (or was removed from) `collective`, and when,
    /// for the repo service's write path.
    pub(super) fn refresh_membership(&self, collective: &Cid) {
        let departed = self.collectives.get(collective).and_then(|c| {
            let log = c.driver.log();
            let state = log.state_ref();
            if state.members.contains_key(self.me.as_str()) {
                return None;
            }
            let (op, removed) = match state.departed.get(self.me.as_str())? {
                Departure::Left(op) => (op, false),
                Departure::Removed(op) => (op, true),
            };
            let at = log.get(op)?.created_at().clone();
            Some(Departed { removed, at })
        });
        self.memberships.set(*collective, departed);
    }

    /// Runs a driver for a log this node did not hold (founded, or fetched to join).
    pub(super) fn add_collective(&mut self, id: Cid, log: Log) {
        // Stored ops are read back from the store rather than kept in memory.
        let log = log.with_reader(Arc::new(StoreReader(Arc::clone(&self.store))));
        let mut dc = self.config.driver.clone();
        dc.seed = dc.seed.wrapping_add(self.collectives.len() as u64);
        self.collectives.insert(
            id,
            Collective {
                driver: Driver::new(log, dc).with_cache(self.cache.clone()),
                unvalidated: HashMap::new(),
                subscribed: false,
            },
        );
    }

    /// Whether `did` (if the peer has one) is a member of the collective here.
    pub(super) fn is_member_did(&self, collective: &Cid, did: Option<&str>) -> bool {
        did.is_some_and(|d| self.is_member(collective, d))
    }

    /// Whether this node's member is a member of the collective.
    pub(super) fn am_member(&self, collective: &Cid) -> bool {
        self.is_member(collective, &self.me)
    }

    pub(super) async fn subscribe_all(&mut self) {
        let ids: Vec<Cid> = self.collectives.keys().copied().collect();
        for id in ids {
            self.sync_subscription(&id).await;
        }
    }

    /// Subscribed to the topic exactly while this member is a member.
    pub(super) async fn sync_subscription(&mut self, id: &Cid) {
        let member = self.is_member(id, &self.me.clone()) && !self.joining.contains(id);
        let Some(c) = self.collectives.get_mut(id) else {
            return;
        };
        if member && !c.subscribed {
            if self.net.subscribe(&topic(id)).await.is_ok() {
                c.subscribed = true;
            }
        } else if !member && c.subscribed {
            let _ = self.net.unsubscribe(&topic(id)).await;
            c.subscribed = false;
        }
    }

    pub(super) async fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Create(params, reply) => {
                let _ = reply.send(self.create(params).await);
            }
            Cmd::Invite {
                collective,
                invitee,
                expires_at,
                reply,
            } => {
                let _ = reply.send(self.invite(collective, invitee, expires_at).await);
            }
            Cmd::Write {
                collective,
                kind,
                fields,
                reply,
            } => {
                let result = match self.collectives.get(&collective) {
                    None => Err(EngineError::UnknownCollective(collective)),
                    Some(c) => fields(c.driver.log().state_ref(), &self.me),
                };
                let result = match result {
                    Ok(body) if body.kind() == kind => self.write(collective, &body).await,
                    Ok(body) => Err(EngineError::Invalid(format!(
                        "asked to write a {} op, built a {}",
                        kind.nsid(),
                        body.kind().nsid()
                    ))),
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
            Cmd::Adopt { code, log, reply } => {
                // The invite's member addresses go into the address book: a connection that
                // ends before the first redial tick (the member restarted, a partition)
                // must not leave this node with no member to dial.
                let bootstrap: Vec<_> = code
                    .peers
                    .iter()
                    .filter_map(|p| p.parse::<libp2p::Multiaddr>().ok())
                    .filter_map(|a| super::peers::p2p_of(&a).map(|peer| (peer, a)))
                    .collect();
                let adopted = self.adopt(code, log).await;
                if adopted.is_ok() {
                    self.learn_addrs(bootstrap);
                }
                let _ = reply.send(adopted);
            }
            Cmd::Abandon(id, reply) => {
                self.abandon(&id);
                let _ = reply.send(());
            }
            Cmd::Joined(id, reply) => {
                self.joined(&id);
                let _ = reply.send(());
                self.sync_subscription(&id).await;
                self.reconcile_peers().await;
            }
            Cmd::Status(id, reply) => {
                let _ = reply.send(self.status(&id));
            }
            Cmd::Flush(reply) => {
                self.save_all();
                let _ = reply.send(());
            }
            Cmd::Log(id, reply) => {
                let log = self
                    .collectives
                    .get(&id)
                    .map(|c| c.driver.log().clone())
                    .ok_or(EngineError::UnknownCollective(id));
                let _ = reply.send(log);
            }
            Cmd::List(reply) => {
                let _ = reply.send(self.collectives.keys().copied().collect());
            }
            Cmd::Announce(id, head) => self.announce(id, head),
            Cmd::AnnouncePublic(head) => {
                let ids: Vec<Cid> = self.collectives.keys().copied().collect();
                for id in ids {
                    self.announce(id, head.clone());
                }
            }
            Cmd::Submit {
                collective,
                op,
                reply,
            } => {
                let _ = reply.send(self.submit_signed(collective, &op).await);
            }
            Cmd::GetOp(collective, id, reply) => {
                let _ = reply.send(self.op_bytes(&collective, &id));
            }
        }
    }

    pub(super) fn status(&self, id: &Cid) -> Result<Status, EngineError> {
        let c = self
            .collectives
            .get(id)
            .ok_or(EngineError::UnknownCollective(*id))?;
        let log = c.driver.log();
        let state = log.state();
        let peers = self
            .connected
            .values()
            .flatten()
            .filter(|d| state.members.contains_key(d.as_str()))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        Ok(Status {
            collective: *id,
            heads: log.heads(),
            ops: log.len(),
            pending: log.pending_len(),
            wanted: c.driver.wanted().count(),
            peers,
            replica_refusals: self.replica_refusals(id),
            state,
        })
    }

    pub(super) async fn create(&mut self, params: CharterParams) -> Result<Cid, EngineError> {
        let at = Datetime::from_unix_micros(self.now());
        let genesis = Op::write(&params.body(), None, &self.key, &[], &at)
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        let id = *genesis.id();
        let mut log = Log::new(id);
        match log.insert(genesis, self.now()) {
            Inserted::Applied => {}
            Inserted::Rejected(r) => return Err(EngineError::Refused(r)),
            other => return Err(EngineError::Invalid(format!("{other:?}"))),
        }
        log.save(&*self.store)
            .map_err(|e| EngineError::Store(e.to_string()))?;
        self.add_collective(id, log);
        self.sync_subscription(&id).await;
        info!(collective = %id, "founded a collective");
        Ok(id)
    }

    pub(super) async fn invite(
        &mut self,
        collective: Cid,
        invitee: Option<Did>,
        expires_at: Option<Datetime>,
    ) -> Result<InviteCode, EngineError> {
        let mut secret = vec![0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| EngineError::Invalid(e.to_string()))?;
        let body = make::invite(&secret, invitee.as_ref(), expires_at.as_ref());
        let op = self.write(collective, &body).await?;
        let mut addrs = self.config.advertise.clone();
        if addrs.is_empty() {
            addrs = self.net.listen_addrs().await.unwrap_or_default();
        }
        let me = self.net.peer_id();
        let peers = addrs
            .into_iter()
            .filter(|a| !is_unspecified(a))
            .map(|a| {
                let has_p2p = a
                    .iter()
                    .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2p(_)));
                if has_p2p {
                    a.to_string()
                } else {
                    a.with(libp2p::multiaddr::Protocol::P2p(me)).to_string()
                }
            })
            .collect();
        Ok(InviteCode {
            collective,
            invite: op,
            secret,
            peers,
        })
    }

    /// Signs and inserts a local op, stores it, and sends what the driver asks.
    pub(super) async fn write(
        &mut self,
        collective: Cid,
        body: &OpBody,
    ) -> Result<Cid, EngineError> {
        let me = self.me.clone();
        if body.kind() != OpKind::Join && !self.is_member(&collective, &me) {
            if !self.collectives.contains_key(&collective) {
                return Err(EngineError::UnknownCollective(collective));
            }
            return Err(EngineError::NotMember);
        }
        let Some(c) = self.collectives.get_mut(&collective) else {
            return Err(EngineError::UnknownCollective(collective));
        };
        let mut out = Vec::new();
        let result = c
            .driver
            .create(body, &self.key, self.config.clock.now_micros(), &mut out);
        self.perform(collective, out).await;
        let id = result.map_err(EngineError::Refused)?;
        if !self.save(&collective) {
            return Err(EngineError::Store("the op was not stored".into()));
        }
        self.dirty.remove(&collective);
        self.sync_subscription(&collective).await;
        Ok(id)
    }

    /// How long until the earliest wake-up a driver asked for.
    pub(super) fn next_wake_in(&self) -> Option<Duration> {
        let at = self.wakes.values().min()?;
        let micros = at.saturating_sub(self.now()).max(0);
        Some(Duration::from_micros(micros.unsigned_abs()))
    }

    /// Ticks the drivers whose wake-up time has come.
    pub(super) async fn on_wake(&mut self) {
        let now = self.now();
        let due: Vec<Cid> = self
            .wakes
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.wakes.remove(&id);
            if let Some(c) = self.collectives.get_mut(&id) {
                let out = c.driver.handle(Event::Tick, now);
                self.perform(id, out).await;
            }
        }
    }

    pub(super) async fn on_tick(&mut self) {
        let now = self.now();
        let ids: Vec<Cid> = self.collectives.keys().copied().collect();
        for id in ids {
            if let Some(c) = self.collectives.get_mut(&id) {
                let out = c.driver.handle(Event::Tick, now);
                self.perform(id, out).await;
            }
        }
        self.reconcile_peers().await;
        self.save_all();
        self.dial_back();
        if self.last_redial.elapsed() >= self.config.redial {
            self.last_redial = Instant::now();
            self.redial().await;
        }
        if self.last_repo_sync.elapsed() >= self.config.repo_sync_interval {
            self.last_repo_sync = Instant::now();
            self.repo_sync();
        }
    }

    pub(super) async fn on_event(&mut self, ev: NetEvent) {
        match ev {
            NetEvent::PeerConnected { peer, did } => {
                let did = did.or_else(|| did_from_peer_id(&peer));
                self.connected.insert(peer, did);
                self.reconcile_peers().await;
            }
            NetEvent::PeerDisconnected { peer } => {
                self.connected.remove(&peer);
                self.reconcile_peers().await;
            }
            NetEvent::Subscribed { peer, topic } => self.on_subscribed(peer, &topic).await,
            NetEvent::Gossip {
                msg_id,
                source,
                author,
                topic,
                data,
            } => match classify_gossip(&data) {
                Gossip::Announcement(announcement) => {
                    let verdict = self.on_announcement(source, author, &topic, announcement);
                    let _ = self.net.report_validation(msg_id, source, verdict).await;
                }
                Gossip::Op => self.on_gossip(msg_id, source, &topic, data).await,
            },
            NetEvent::Request {
                peer,
                did,
                topic,
                body,
                token,
            } => {
                let did = did.or_else(|| did_from_peer_id(&peer));
                match Request::decode(&body) {
                    Ok(req) if req.is_repo() => {
                        self.on_repo_request(peer, did.as_deref(), &topic, req, token)
                            .await;
                    }
                    req => {
                        let reply = self.on_request(peer, did.as_deref(), &topic, req).await;
                        super::respond(&self.net, token, reply).await;
                    }
                }
            }
            NetEvent::Banned { peer, score } => {
                warn!(peer = %peer, score, "peer banned for invalid messages");
            }
            NetEvent::Listening(_)
            | NetEvent::Unsubscribed { .. }
            | NetEvent::Penalised { .. }
            | NetEvent::Refused { .. } => {}
        }
    }

    pub(super) fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::Addrs(addrs) => self.learn_addrs(addrs),
            Internal::Pulled {
                collective,
                did,
                kind,
                outcome,
            } => self.pulled(collective, did, kind, outcome),
            Internal::Heads {
                collective,
                peer,
                heads,
            } => self.heads_known(collective, peer, heads),
        }
    }
}

/// Sleeps for `d`, or for ever when there is nothing to wait for.
async fn sleep_for(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

fn short(did: &str) -> &str {
    did.get(did.len().saturating_sub(8)..).unwrap_or(did)
}
