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
use tracing::{debug, info};

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
        let t = topic(&code.collective);
        let deadline = Instant::now() + self.join_timeout;
        let mut last = String::from("no answer");
        loop {
            for (peer, addr) in &peers {
                let _ = self.net.dial(addr.clone()).await;
                let started = Instant::now();
                match self.fetch_log(&code, *peer, &t).await {
                    Ok(ops) => {
                        let fetched = started.elapsed();
                        let bytes: usize = ops.iter().map(Vec::len).sum();
                        let count = ops.len();
                        // Every op is checked (lexicon, signature) on every core, off the
                        // engine's task: a large collective's log is a million ops.
                        let id = code.collective;
                        let log = tokio::task::spawn_blocking(move || {
                            // Fetched, not read from this node's store: all to be stored.
                            Log::load(id, ops.iter().map(Vec::as_slice)).all_unsaved()
                        })
                        .await
                        .map_err(|e| EngineError::Invalid(format!("loading the log: {e}")))?;
                        info!(
                            collective = %code.collective,
                            ops = count,
                            bytes,
                            fetch_ms = fetched.as_millis() as u64,
                            check_ms = (started.elapsed() - fetched).as_millis() as u64,
                            kept = log.len(),
                            "fetched the log with the invite"
                        );
                        return self.join_with(&code, *peer, log).await;
                    }
                    Err(FetchError::Refused(e)) => return Err(e),
                    Err(FetchError::Failed(e)) => last = e,
                }
            }
            if Instant::now() >= deadline {
                return Err(EngineError::NoPeers(last));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Fetches the log from `peer` with the invite, page after page (each at most the
    /// member's `fetch_page_bytes`), until an empty page; at most [`MAX_JOIN_LOG_BYTES`] in
    /// all.
    async fn fetch_log(
        &self,
        code: &InviteCode,
        peer: PeerId,
        topic: &str,
    ) -> Result<Vec<Vec<u8>>, FetchError> {
        let mut ops: Vec<Vec<u8>> = Vec::new();
        let mut bytes = 0u64;
        loop {
            let fetch = Request::Fetch {
                invite: code.invite,
                secret: code.secret.clone(),
                from: ops.len() as u64,
            }
            .encode()
            .map_err(|e| FetchError::Refused(EngineError::Invalid(e.to_string())))?;
            let body = self
                .net
                .request(peer, topic, fetch)
                .await
                .map_err(|e| FetchError::Failed(e.to_string()))?;
            let page = Reply::read_ops(&body).map_err(|e| FetchError::Refused(invite_error(e)))?;
            if page.is_empty() {
                return Ok(ops);
            }
            bytes += page.iter().map(|b| b.len() as u64).sum::<u64>();
            if bytes > MAX_JOIN_LOG_BYTES {
                return Err(FetchError::Refused(EngineError::Invite(format!(
                    "the member's node sent more than {MAX_JOIN_LOG_BYTES} bytes of log"
                ))));
            }
            ops.extend(page);
        }
    }

    /// Adopts the log `peer` sent, writes the join op and submits it to `peer`.
    async fn join_with(
        &self,
        code: &InviteCode,
        peer: PeerId,
        log: Log,
    ) -> Result<Cid, EngineError> {
        let join = self
            .call(|reply| Cmd::Adopt {
                code: code.clone(),
                log: Box::new(log),
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

/// The most log bytes a joining node takes from a member's node (a collective of a million
/// ops is ~0.5 GB).
pub const MAX_JOIN_LOG_BYTES: u64 = 4 << 30;

/// Why fetching the log with an invite stopped.
enum FetchError {
    /// The member's node answered with a refusal (or too much): no other node is tried.
    Refused(EngineError),
    /// No answer: the next of the invite's nodes is tried.
    Failed(String),
}

impl<S: OpStore + Send + Sync + 'static> Task<S> {
    /// Adopts a log fetched with an invite and writes this member's join op.
    pub(super) async fn adopt(
        &mut self,
        code: InviteCode,
        log: Box<Log>,
    ) -> Result<Vec<u8>, EngineError> {
        let id = code.collective;
        if !self.collectives.contains_key(&id) {
            if log.is_empty() {
                return Err(EngineError::Invite("the peer sent no valid ops".into()));
            }
            self.add_collective(id, *log);
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

    /// A candidate fetching a page of the log with an invite's secret.
    pub(super) fn serve_fetch(
        &self,
        id: Cid,
        peer: PeerId,
        did: Option<&str>,
        (invite, secret): (&Cid, &[u8]),
        from: u64,
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
        let from = usize::try_from(from).unwrap_or(usize::MAX);
        Ok(Reply::Ops(
            c.driver
                .log()
                .export_page(from, self.config.fetch_page_bytes)
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
