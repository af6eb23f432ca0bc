//! The collectives engine: runs one governance [`Driver`] per collective over the swarm.
//!
//! It maps the drivers' actions to the network (gossip publish and validation verdicts,
//! requests on `/guild/sync/1`) and the network's events to the drivers, persists every
//! accepted op through an [`OpStore`], and enforces the access rule of protocol.md §5: a node
//! answers a collective's sync requests only from peers whose DID is a current member of that
//! collective *in its own state*, and disconnects a peer that subscribes to the topic of a
//! collective it is not a member of (so gossip never reaches it). A candidate holding an
//! invite may fetch the log once and submit its own join op; nothing else.
//!
//! It also replicates members' repos in the collective's space (the [`crate::replica`]
//! module has the wire formats): it announces this member's new heads on the topic, and on a
//! steward's node it pulls every member's repo into a verified replica through the node's
//! [`Repos`], on each announcement and, to catch up, from each member peer on connect and
//! from one member peer every `repo_sync_interval`. Repo requests get the same access rule as
//! sync requests.
//!
//! Whether an op is valid, and who is a member, is decided by `guild-gov`; this module only
//! asks.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use guild_core::syntax::{Datetime, Did};
use guild_core::{Cid, Ipld, Keypair, data};
use guild_gov::body::OpBody;
use guild_gov::driver::{Action, Driver, DriverConfig, Event, Message, VerifyCache};
use guild_gov::make::{self, CharterParams, InviteCode};
use guild_gov::{Inserted, Log, Op, OpKind, OpStore, Reason, Role, SignedOp, State};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::clock::Clock;
use crate::handle::{MsgId, NetEvent, NetHandle, Validation};
use crate::identity::did_from_peer_id;
use crate::replica::{self, Exports, PullLimits, RepoReq};
use crate::repos::{RepoHead, Repos};

/// The gossip topic of a collective.
pub fn topic(collective: &Cid) -> String {
    format!("guild/collective/{collective}")
}

fn collective_of(topic: &str) -> Option<Cid> {
    topic
        .strip_prefix("guild/collective/")
        .and_then(|c| guild_core::syntax::parse_cid_str(c).ok())
}

/// Why an engine call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// This node holds no such collective.
    #[error("unknown collective {0}")]
    UnknownCollective(Cid),
    /// This node's member is not (or no longer) a member of the collective.
    #[error("you are not a member of this collective")]
    NotMember,
    /// The collective's rules refused the op.
    #[error("refused: {0}")]
    Refused(Reason),
    /// The op's fields could not be built or signed.
    #[error("{0}")]
    Invalid(String),
    /// The invite is expired, used, or not one the peers know.
    #[error("invite refused by the collective: {0}")]
    Invite(String),
    /// No member's node could be reached.
    #[error("no peers reachable: {0}")]
    NoPeers(String),
    /// A peer's node answered with a refusal (`not-a-member`, say).
    #[error("the peer refused: {0}")]
    PeerRefused(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
    /// The engine stopped.
    #[error("the node's network engine stopped")]
    Stopped,
}

/// The engine's settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The drivers' settings (anti-entropy interval, bounds).
    pub driver: DriverConfig,
    /// How often timers and peer bookkeeping run.
    pub tick: Duration,
    /// How many sync requests may be in flight at once (more are dropped; anti-entropy
    /// repairs).
    pub max_requests_in_flight: usize,
    /// How long a join waits for a connection to the invite's peers.
    pub join_timeout: Duration,
    /// Addresses to put in invites (default: the swarm's listen addresses).
    pub advertise: Vec<Multiaddr>,
    /// How often to redial members this node was connected to and lost (their addresses are
    /// remembered while the node runs).
    pub redial: Duration,
    /// A file where the addresses of members' nodes are kept across restarts (one multiaddress
    /// ending in `/p2p/<peer id>` per line, rewritten atomically when they change), so that a
    /// restarted node dials the members it knew at once. `None`: remembered while running only.
    pub address_book: Option<std::path::PathBuf>,
    /// How often a steward asks one member peer per collective for the heads of the repos it
    /// holds (it also asks each member peer when it connects).
    pub repo_sync_interval: Duration,
    /// Largest page of a repo CAR in one response (protocol.md §2: at most 2 MB per sync
    /// message).
    pub repo_page_bytes: usize,
    /// Largest repo CAR a steward downloads for one pull.
    pub max_replica_bytes: u64,
    /// How many pulls run at once (more wait their turn; one at a time per member's repo),
    /// and how many repo requests are served at once (more are refused as `busy`).
    pub max_pulls_in_flight: usize,
    /// The memo of verified ops the engine's drivers and logs share (default: a new one of
    /// [`guild_gov::driver::DEFAULT_VERIFY_CACHE`] ops). Several engines in one process (a
    /// devnet, a benchmark) may share one, and then hold each op they all know once.
    pub verify_cache: Option<VerifyCache>,
    /// Where the engine reads the time (default: the system clock). Every rule that depends on
    /// "now" (op dates, invite expiry, deferred ops) reads this one.
    pub clock: Clock,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            driver: DriverConfig::default(),
            tick: Duration::from_millis(250),
            max_requests_in_flight: 256,
            join_timeout: Duration::from_secs(20),
            advertise: Vec::new(),
            redial: Duration::from_secs(10),
            address_book: None,
            repo_sync_interval: Duration::from_secs(60),
            repo_page_bytes: 2_000_000,
            max_replica_bytes: 512 * 1024 * 1024,
            max_pulls_in_flight: 4,
            verify_cache: None,
            clock: Clock::system(),
        }
    }
}

/// A collective as this node sees it.
#[derive(Debug, Clone)]
pub struct Status {
    /// The collective's id.
    pub collective: Cid,
    /// Its state (members, stewards, consents, elections…).
    pub state: State,
    /// The log's heads.
    pub heads: Vec<Cid>,
    /// Ops in the log.
    pub ops: usize,
    /// Ops waiting for parents.
    pub pending: usize,
    /// Ops asked of peers and not yet received.
    pub wanted: usize,
    /// Connected peers that are members, by DID.
    pub peers: Vec<String>,
}

/// Builds an op's typed body from the current state and this member's DID.
pub type FieldsFn = Box<dyn FnOnce(&State, &str) -> Result<OpBody, EngineError> + Send>;

enum Cmd {
    Create(CharterParams, oneshot::Sender<Result<Cid, EngineError>>),
    Invite {
        collective: Cid,
        invitee: Option<Did>,
        expires_at: Option<Datetime>,
        reply: oneshot::Sender<Result<InviteCode, EngineError>>,
    },
    Write {
        collective: Cid,
        kind: OpKind,
        fields: FieldsFn,
        reply: oneshot::Sender<Result<Cid, EngineError>>,
    },
    /// The join task fetched the log: adopt it and write the join op.
    Adopt {
        code: InviteCode,
        ops: Vec<Vec<u8>>,
        reply: oneshot::Sender<Result<Vec<u8>, EngineError>>,
    },
    /// The join op was accepted by the member it was submitted to: store the log, start
    /// gossiping.
    Joined(Cid, oneshot::Sender<()>),
    /// The join op was refused: forget the collective fetched for it.
    Abandon(Cid, oneshot::Sender<()>),
    Status(Cid, oneshot::Sender<Result<Status, EngineError>>),
    Flush(oneshot::Sender<()>),
    List(oneshot::Sender<Vec<Cid>>),
    /// This member committed to its repo in a collective's space.
    Announce(Cid, RepoHead),
}

/// What the engine's own tasks report back.
enum Internal {
    /// A pull of `did`'s repo ended; `held` is the replica's revision now, if any.
    Pulled {
        collective: Cid,
        did: String,
        held: Option<String>,
    },
    /// A member's node told where the other members' nodes it is connected to listen.
    Addrs(Vec<(PeerId, Multiaddr)>),
    /// A peer told which repos it holds.
    Heads {
        collective: Cid,
        peer: PeerId,
        heads: Vec<RepoHead>,
    },
}

/// A pull in flight; a newer head announced meanwhile is pulled after it.
struct Pull {
    again: Option<(Option<String>, Vec<PeerId>)>,
}

/// The wire format of a sync request body (DAG-CBOR map).
enum Req {
    /// A driver message between members.
    Sync(Vec<u8>),
    /// A candidate fetching the log with an invite's secret.
    Fetch { invite: Cid, secret: Vec<u8> },
    /// A candidate submitting its join op.
    Submit(Vec<u8>),
    /// A member asking for the addresses of the other members' nodes this node is connected
    /// to (so that members on different networks form a mesh, not a star around the inviter).
    Addrs,
}

impl Req {
    fn encode(&self) -> Vec<u8> {
        let m: BTreeMap<String, Ipld> = match self {
            Req::Sync(m) => [("sync".into(), Ipld::Bytes(m.clone()))].into(),
            Req::Fetch { invite, secret } => [
                ("fetch".into(), Ipld::Link(*invite)),
                ("secret".into(), Ipld::Bytes(secret.clone())),
            ]
            .into(),
            Req::Submit(op) => [("submit".into(), Ipld::Bytes(op.clone()))].into(),
            Req::Addrs => [("addrs".into(), Ipld::Bool(true))].into(),
        };
        data::encode(&Ipld::Map(m)).unwrap_or_default()
    }

    fn decode(bytes: &[u8]) -> Option<Req> {
        let Ok(Ipld::Map(m)) = data::decode(bytes) else {
            return None;
        };
        if m.len() == 1 && m.get("addrs") == Some(&Ipld::Bool(true)) {
            return Some(Req::Addrs);
        }
        match (
            m.get("sync"),
            m.get("fetch"),
            m.get("secret"),
            m.get("submit"),
        ) {
            (Some(Ipld::Bytes(b)), None, None, None) => Some(Req::Sync(b.clone())),
            (None, Some(Ipld::Link(c)), Some(Ipld::Bytes(s)), None) => Some(Req::Fetch {
                invite: *c,
                secret: s.clone(),
            }),
            (None, None, None, Some(Ipld::Bytes(b))) => Some(Req::Submit(b.clone())),
            _ => None,
        }
    }
}

/// A response body: `{ok: true, ops?: [bytes]}` or `{ok: false, error: string}`.
fn response(result: Result<Vec<Vec<u8>>, String>) -> Vec<u8> {
    let m: BTreeMap<String, Ipld> = match result {
        Ok(ops) => [
            ("ok".into(), Ipld::Bool(true)),
            (
                "ops".into(),
                Ipld::List(ops.into_iter().map(Ipld::Bytes).collect()),
            ),
        ]
        .into(),
        Err(e) => [
            ("ok".into(), Ipld::Bool(false)),
            ("error".into(), Ipld::String(e)),
        ]
        .into(),
    };
    data::encode(&Ipld::Map(m)).unwrap_or_default()
}

fn read_response(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let Ok(Ipld::Map(m)) = data::decode(bytes) else {
        return Err("malformed response".into());
    };
    match (m.get("ok"), m.get("error"), m.get("ops")) {
        (Some(Ipld::Bool(true)), _, Some(Ipld::List(ops))) => Ok(ops
            .iter()
            .filter_map(|o| match o {
                Ipld::Bytes(b) => Some(b.clone()),
                _ => None,
            })
            .collect()),
        (Some(Ipld::Bool(false)), Some(Ipld::String(e)), _) => Err(e.clone()),
        _ => Err("malformed response".into()),
    }
}

/// The refusal a non-member gets.
pub const NOT_A_MEMBER: &str = "not-a-member";

/// A handle on the engine task. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    tx: mpsc::Sender<Cmd>,
    net: NetHandle,
    join_timeout: Duration,
    applied: broadcast::Sender<AppliedOp>,
}

/// An op that entered one of the engine's logs (see [`Engine::applied`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppliedOp {
    /// The collective.
    pub collective: Cid,
    /// The op's id.
    pub op: Cid,
    /// When the engine applied it.
    pub at: Instant,
}

/// How many applied-op notices a slow [`Engine::applied`] receiver may fall behind by before
/// it misses some (it is told how many: `RecvError::Lagged`).
pub const APPLIED_BACKLOG: usize = 4096;

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cmd")
    }
}

struct Collective {
    driver: Driver<PeerId>,
    /// Gossip messages awaiting our verdict: id → the peer that forwarded it.
    unvalidated: HashMap<MsgId, PeerId>,
    subscribed: bool,
}

struct Task<S> {
    key: Keypair,
    me: String,
    net: NetHandle,
    store: Arc<S>,
    config: EngineConfig,
    collectives: BTreeMap<Cid, Collective>,
    connected: HashMap<PeerId, Option<String>>,
    requests: Arc<Semaphore>,
    cache: VerifyCache,
    applied: broadcast::Sender<AppliedOp>,
    dirty: BTreeSet<Cid>,
    /// Where members' nodes were reached (learnt while connected), for redialling.
    known_addrs: HashMap<PeerId, Vec<Multiaddr>>,
    last_redial: Instant,
    /// Collectives whose join op is written but not yet accepted by a member: no gossip yet
    /// (members who have not seen the join would take the subscription for a stranger's).
    joining: BTreeSet<Cid>,
    /// The node's repos, when it replicates.
    repos: Option<Arc<dyn Repos>>,
    /// Pulls in flight, by (collective, member).
    pulls: HashMap<(Cid, String), Pull>,
    /// The revision of each replica held, as last seen (saves a store read per announcement).
    held: HashMap<(Cid, String), String>,
    pull_permits: Arc<Semaphore>,
    serve_permits: Arc<Semaphore>,
    exports: Arc<Exports>,
    internal: mpsc::Sender<Internal>,
    last_repo_sync: Instant,
    repo_sync_turn: usize,
    /// Collectives this node replicated at the last peer reconciliation: when its member
    /// becomes a steward (an election certified), it asks every member peer for heads at once
    /// instead of at the next `repo_sync_interval`.
    replicating: BTreeSet<Cid>,
    /// Peers cut off for subscribing before this node saw their join, with where they listen:
    /// dialled back as soon as their join arrives here.
    cut_off: HashMap<PeerId, (Vec<Multiaddr>, Instant)>,
    /// When each collective's driver asked to be woken ([`Action::Wake`]).
    wakes: BTreeMap<Cid, i64>,
}

impl Engine {
    /// Starts the engine over a running swarm: loads every collective stored, subscribes to
    /// the topics of those this member belongs to, and serves the swarm's events. It keeps no
    /// replicas and serves no repos (see [`Engine::spawn_with_repos`]).
    pub async fn spawn<S>(
        key: Keypair,
        net: NetHandle,
        events: mpsc::Receiver<NetEvent>,
        store: Arc<S>,
        config: EngineConfig,
    ) -> Result<Engine, EngineError>
    where
        S: OpStore + Send + Sync + 'static,
    {
        Self::spawn_with_repos(key, net, events, store, None, config).await
    }

    /// Like [`Engine::spawn`], with the node's repos: the engine then serves its member's
    /// collective repos (and the replicas it holds) to members, announces heads passed to
    /// [`Engine::announce`], and, where its member is a steward, keeps verified replicas of
    /// every member's repo in the collective's space.
    pub async fn spawn_with_repos<S>(
        key: Keypair,
        net: NetHandle,
        events: mpsc::Receiver<NetEvent>,
        store: Arc<S>,
        repos: Option<Arc<dyn Repos>>,
        config: EngineConfig,
    ) -> Result<Engine, EngineError>
    where
        S: OpStore + Send + Sync + 'static,
    {
        let cache = config.verify_cache.clone().unwrap_or_default();
        let mut collectives = BTreeMap::new();
        let ids = store
            .collectives()
            .map_err(|e| EngineError::Store(e.to_string()))?;
        for (i, id) in ids.into_iter().enumerate() {
            let log = Log::open_cached(id, &*store, &cache)
                .map_err(|e| EngineError::Store(e.to_string()))?;
            let mut dc = config.driver.clone();
            dc.seed = dc.seed.wrapping_add(i as u64);
            collectives.insert(
                id,
                Collective {
                    driver: Driver::new(log, dc).with_cache(cache.clone()),
                    unvalidated: HashMap::new(),
                    subscribed: false,
                },
            );
        }
        let (tx, rx) = mpsc::channel(64);
        let (internal, internal_rx) = mpsc::channel(64);
        let (applied, _) = broadcast::channel(APPLIED_BACKLOG);
        let me = key.did();
        let join_timeout = config.join_timeout;
        let known_addrs = load_address_book(config.address_book.as_deref());
        let first_redial = Instant::now()
            .checked_sub(config.redial)
            .unwrap_or_else(Instant::now);
        let config_pulls = config.max_pulls_in_flight.max(1);
        let mut task = Task {
            key,
            me,
            net: net.clone(),
            store,
            requests: Arc::new(Semaphore::new(config.max_requests_in_flight)),
            cache,
            applied: applied.clone(),
            config,
            collectives,
            connected: HashMap::new(),
            dirty: BTreeSet::new(),
            joining: BTreeSet::new(),
            wakes: BTreeMap::new(),
            known_addrs,
            // The first tick redials the members known from before a restart.
            last_redial: first_redial,
            repos,
            pulls: HashMap::new(),
            held: HashMap::new(),
            pull_permits: Arc::new(Semaphore::new(config_pulls)),
            serve_permits: Arc::new(Semaphore::new(config_pulls)),
            exports: Arc::new(Exports::default()),
            internal,
            last_repo_sync: Instant::now(),
            repo_sync_turn: 0,
            replicating: BTreeSet::new(),
            cut_off: HashMap::new(),
        };
        task.subscribe_all().await;
        tokio::spawn(task.run(rx, events, internal_rx));
        Ok(Engine {
            tx,
            net,
            join_timeout,
            applied,
        })
    }

    /// Notices of the ops entering this node's logs from now on (local writes, gossip,
    /// anti-entropy), for watchers: a UI, a test, a benchmark timing an op's spread. A receiver
    /// that falls more than [`APPLIED_BACKLOG`] notices behind loses the oldest.
    pub fn applied(&self) -> broadcast::Receiver<AppliedOp> {
        self.applied.subscribe()
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Cmd,
    ) -> Result<T, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| EngineError::Stopped)?;
        answer.await.map_err(|_| EngineError::Stopped)
    }

    /// Founds a collective with this node's member as founder and first steward.
    pub async fn create(&self, params: CharterParams) -> Result<Cid, EngineError> {
        self.call(|r| Cmd::Create(params, r)).await?
    }

    /// Writes an invite (the caller must be a steward) and returns the code to hand over.
    pub async fn invite(
        &self,
        collective: Cid,
        invitee: Option<Did>,
        expires_at: Option<Datetime>,
    ) -> Result<InviteCode, EngineError> {
        self.call(|reply| Cmd::Invite {
            collective,
            invitee,
            expires_at,
            reply,
        })
        .await?
    }

    /// Writes an op of `kind` whose body `fields` builds from the current state (a body of
    /// another kind is refused as invalid).
    pub async fn write(
        &self,
        collective: Cid,
        kind: OpKind,
        fields: FieldsFn,
    ) -> Result<Cid, EngineError> {
        self.call(|reply| Cmd::Write {
            collective,
            kind,
            fields,
            reply,
        })
        .await?
    }

    /// The collective as this node sees it.
    pub async fn status(&self, collective: Cid) -> Result<Status, EngineError> {
        self.call(|r| Cmd::Status(collective, r)).await?
    }

    /// Stores every op received and not yet stored (they are stored every tick anyway; call
    /// this before the process exits).
    pub async fn flush(&self) -> Result<(), EngineError> {
        self.call(Cmd::Flush).await
    }

    /// The collectives this node holds.
    pub async fn collectives(&self) -> Result<Vec<Cid>, EngineError> {
        self.call(Cmd::List).await
    }

    /// Announces a new head of this member's repo in a collective's space to the collective
    /// (call it after each commit). Never waits: returns false if the engine is busy or
    /// stopped, in which case stewards learn of the head at their next heads sync.
    pub fn announce(&self, collective: Cid, rev: String, commit: Cid) -> bool {
        let did = self.net.did().unwrap_or_default();
        self.tx
            .try_send(Cmd::Announce(collective, RepoHead { did, rev, commit }))
            .is_ok()
    }

    /// Asks the node of `peer` (a DID) which repo heads it holds in the collective's space (its
    /// member's own repo and the replicas it keeps). The peer answers members only: a node whose
    /// member left or was removed gets [`EngineError::PeerRefused`] with `not-a-member`.
    pub async fn remote_heads(
        &self,
        collective: Cid,
        peer: &str,
    ) -> Result<Vec<RepoHead>, EngineError> {
        let peer_id = crate::identity::peer_id_from_did(peer)
            .map_err(|e| EngineError::Invalid(format!("{peer}: {e}")))?;
        let answer = self
            .net
            .request(peer_id, &topic(&collective), RepoReq::Heads.encode())
            .await
            .map_err(|e| EngineError::NoPeers(e.to_string()))?;
        replica::read_heads(&answer).map_err(EngineError::PeerRefused)
    }

    /// Joins a collective with an invite: dials the invite's peers, fetches the log from the
    /// first that answers, writes the join op, and submits it to that peer. Returns the
    /// collective's id.
    pub async fn join(&self, code: InviteCode) -> Result<Cid, EngineError> {
        let mut peers: Vec<(PeerId, Multiaddr)> = Vec::new();
        for p in &code.peers {
            let Ok(addr) = p.parse::<Multiaddr>() else {
                continue;
            };
            let peer = addr.iter().find_map(|proto| match proto {
                libp2p::multiaddr::Protocol::P2p(id) => Some(id),
                _ => None,
            });
            if let Some(peer) = peer {
                peers.push((peer, addr));
            }
        }
        if peers.is_empty() {
            return Err(EngineError::NoPeers(
                "the invite names no member's address".into(),
            ));
        }
        let deadline = Instant::now() + self.join_timeout;
        let mut last = String::from("no answer");
        loop {
            for (peer, addr) in &peers {
                let _ = self.net.dial(addr.clone()).await;
                let req = Req::Fetch {
                    invite: code.invite,
                    secret: code.secret.clone(),
                };
                let t = topic(&code.collective);
                match self.net.request(*peer, &t, req.encode()).await {
                    Ok(body) => match read_response(&body) {
                        Ok(ops) => {
                            let join = self
                                .call(|reply| Cmd::Adopt {
                                    code: code.clone(),
                                    ops,
                                    reply,
                                })
                                .await??;
                            let answer = self
                                .net
                                .request(*peer, &t, Req::Submit(join).encode())
                                .await
                                .map_err(|e| EngineError::NoPeers(e.to_string()))
                                .and_then(|a| read_response(&a).map_err(EngineError::Invite));
                            if let Err(e) = answer {
                                // The member refused the join (or never answered): this node
                                // is no member, and forgets the log it fetched for the join.
                                self.call(|r| Cmd::Abandon(code.collective, r)).await?;
                                return Err(e);
                            }
                            self.call(|r| Cmd::Joined(code.collective, r)).await?;
                            return Ok(code.collective);
                        }
                        Err(e) => return Err(EngineError::Invite(e)),
                    },
                    Err(e) => last = e.to_string(),
                }
            }
            if Instant::now() >= deadline {
                return Err(EngineError::NoPeers(last));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl<S: OpStore + Send + Sync + 'static> Task<S> {
    async fn run(
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

    fn save_all(&mut self) {
        for id in std::mem::take(&mut self.dirty) {
            self.save(&id);
        }
    }

    fn save(&mut self, id: &Cid) -> bool {
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
            Ok(_) => true,
            Err(e) => {
                warn!(collective = %id, error = %e, "could not store ops; will retry");
                self.dirty.insert(*id);
                false
            }
        }
    }

    /// Now, by the engine's clock.
    fn now(&self) -> i64 {
        self.config.clock.now_micros()
    }

    fn is_member(&self, collective: &Cid, did: &str) -> bool {
        self.collectives
            .get(collective)
            .is_some_and(|c| c.driver.log().state_ref().members.contains_key(did))
    }

    async fn subscribe_all(&mut self) {
        let ids: Vec<Cid> = self.collectives.keys().copied().collect();
        for id in ids {
            self.sync_subscription(&id).await;
        }
    }

    /// Subscribed to the topic exactly while this member is a member.
    async fn sync_subscription(&mut self, id: &Cid) {
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

    async fn on_cmd(&mut self, cmd: Cmd) {
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
            Cmd::Adopt { code, ops, reply } => {
                let _ = reply.send(self.adopt(code, ops).await);
            }
            Cmd::Abandon(id, reply) => {
                if self.joining.remove(&id) {
                    self.collectives.remove(&id);
                    self.dirty.remove(&id);
                    self.wakes.remove(&id);
                }
                let _ = reply.send(());
            }
            Cmd::Joined(id, reply) => {
                self.joining.remove(&id);
                self.save(&id);
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
            Cmd::List(reply) => {
                let _ = reply.send(self.collectives.keys().copied().collect());
            }
            Cmd::Announce(id, head) => self.announce(id, head),
        }
    }

    fn status(&self, id: &Cid) -> Result<Status, EngineError> {
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
            .filter(|d| state.members.contains_key(*d))
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
            state,
        })
    }

    async fn create(&mut self, params: CharterParams) -> Result<Cid, EngineError> {
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
        self.sync_subscription(&id).await;
        info!(collective = %id, "founded a collective");
        Ok(id)
    }

    async fn invite(
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
    async fn write(&mut self, collective: Cid, body: &OpBody) -> Result<Cid, EngineError> {
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

    /// Adopts a log fetched with an invite and writes this member's join op.
    async fn adopt(&mut self, code: InviteCode, ops: Vec<Vec<u8>>) -> Result<Vec<u8>, EngineError> {
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
        if self.is_member(&id, &self.me.clone()) {
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

    /// How long until the earliest wake-up a driver asked for.
    fn next_wake_in(&self) -> Option<Duration> {
        let at = self.wakes.values().min()?;
        let micros = at.saturating_sub(self.now()).max(0);
        Some(Duration::from_micros(micros.unsigned_abs()))
    }

    /// Ticks the drivers whose wake-up time has come.
    async fn on_wake(&mut self) {
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

    async fn on_tick(&mut self) {
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

    /// Remembers where connected members are, and dials the members known but not connected
    /// (after a partition or a restart of theirs), so that anti-entropy can run again.
    async fn redial(&mut self) {
        let Ok(peers) = self.net.peers().await else {
            return;
        };
        let mut changed = false;
        for p in &peers {
            let addrs: Vec<Multiaddr> = p
                .addrs
                .iter()
                .filter(|a| !is_unspecified(a))
                .take(8)
                .cloned()
                .collect();
            if !addrs.is_empty() && self.known_addrs.get(&p.peer) != Some(&addrs) {
                self.known_addrs.insert(p.peer, addrs);
                changed = true;
            }
        }
        if changed {
            self.save_addrs();
        }
        let is_member_anywhere = |did: &str| {
            self.collectives
                .values()
                .any(|c| c.driver.log().state_ref().members.contains_key(did))
        };
        let lost: Vec<(PeerId, Vec<Multiaddr>)> = self
            .known_addrs
            .iter()
            .filter(|(peer, _)| !self.connected.contains_key(peer))
            .filter(|(peer, _)| did_from_peer_id(peer).is_some_and(|d| is_member_anywhere(&d)))
            .map(|(p, a)| (*p, a.clone()))
            .collect();
        for (peer, addrs) in lost {
            for a in addrs {
                let a = if a
                    .iter()
                    .any(|x| matches!(x, libp2p::multiaddr::Protocol::P2p(_)))
                {
                    a
                } else {
                    a.with(libp2p::multiaddr::Protocol::P2p(peer))
                };
                if self.net.dial(a).await.is_ok() {
                    debug!(peer = %peer, "redialling a member");
                    break;
                }
            }
        }
    }

    /// Tells each driver which connected peers are its collective's members.
    async fn reconcile_peers(&mut self) {
        let now = self.now();
        let ids: Vec<Cid> = self.collectives.keys().copied().collect();
        for id in ids {
            self.sync_subscription(&id).await;
            let Some(c) = self.collectives.get_mut(&id) else {
                continue;
            };
            let state = c.driver.log().state_ref();
            let me_member = state.members.contains_key(&self.me) && !self.joining.contains(&id);
            let want: BTreeSet<PeerId> = if me_member {
                self.connected
                    .iter()
                    .filter(|(_, d)| d.as_ref().is_some_and(|d| state.members.contains_key(d)))
                    .map(|(p, _)| *p)
                    .collect()
            } else {
                BTreeSet::new()
            };
            let have: BTreeSet<PeerId> = c.driver.peers().copied().collect();
            let mut out = Vec::new();
            for p in have.difference(&want) {
                c.driver
                    .handle_into(Event::PeerDisconnected(*p), now, &mut out);
            }
            let new: Vec<PeerId> = want.difference(&have).copied().collect();
            for p in &new {
                c.driver
                    .handle_into(Event::PeerConnected(*p), now, &mut out);
            }
            self.perform(id, out).await;
            for p in &new {
                self.ask_addrs(id, *p);
            }
            if self.replicates(&id) {
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
            } else {
                self.replicating.remove(&id);
            }
        }
    }

    async fn on_event(&mut self, ev: NetEvent) {
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
            NetEvent::Subscribed { peer, topic } => {
                let Some(id) = collective_of(&topic) else {
                    return;
                };
                let did = did_from_peer_id(&peer).unwrap_or_default();
                if self.is_member(&id, &did) {
                    // A member (re)subscribed: what was published before its subscription
                    // arrived did not reach it, so sync with it now rather than in 30–60 s.
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
                if self.collectives.contains_key(&id) {
                    // Gossip must not reach a non-member: cut the connection. It may be a new
                    // member whose join has not reached this node yet: sync with the members
                    // now, and dial it back once its join is here.
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
            NetEvent::Gossip {
                msg_id,
                source,
                author,
                topic,
                data,
            } => {
                if let Some(announcement) = replica::decode_announcement(&data) {
                    let verdict = self.on_announcement(source, author, &topic, announcement);
                    let _ = self.net.report_validation(msg_id, source, verdict).await;
                } else {
                    self.on_gossip(msg_id, source, &topic, data).await;
                }
            }
            NetEvent::Request {
                peer,
                did,
                topic,
                body,
                token,
            } => {
                let did = did.or_else(|| did_from_peer_id(&peer)).unwrap_or_default();
                if let Some(req) = RepoReq::decode(&body) {
                    self.on_repo_request(peer, &did, &topic, req, token).await;
                    return;
                }
                let answer = self.on_request(peer, &did, &topic, &body).await;
                let _ = self.net.respond(token, response(answer)).await;
            }
            NetEvent::Banned { peer, score } => {
                warn!(peer = %peer, score, "peer banned for invalid messages");
            }
            NetEvent::Listening(_) | NetEvent::Unsubscribed { .. } | NetEvent::Penalised { .. } => {
            }
        }
    }

    /// Whether this node keeps replicas of the collective's members' repos: it has repos to
    /// keep them in and its member is a steward there.
    fn replicates(&self, id: &Cid) -> bool {
        self.repos.is_some()
            && !self.joining.contains(id)
            && self
                .collectives
                .get(id)
                .is_some_and(|c| c.driver.log().state_ref().role(&self.me) == Some(Role::Steward))
    }

    /// Publishes a new head of this member's repo in a collective's space.
    fn announce(&mut self, id: Cid, head: RepoHead) {
        if head.did != self.me
            || !self.is_member(&id, &self.me.clone())
            || self.joining.contains(&id)
        {
            return;
        }
        let net = self.net.clone();
        let t = topic(&id);
        let bytes = replica::encode_announcement(&head);
        debug!(collective = %id, rev = %head.rev, "announcing a repo head");
        tokio::spawn(async move {
            if let Err(e) = net.publish(&t, bytes).await {
                debug!(error = %e, "announcement not published; stewards catch up by heads sync");
            }
        });
    }

    /// The verdict on a repo-head announcement, and a pull if this node replicates. Only a
    /// member's own node may announce its head (the gossip author is the repo's owner).
    fn on_announcement(
        &mut self,
        source: PeerId,
        author: Option<PeerId>,
        topic: &str,
        announcement: Option<RepoHead>,
    ) -> Validation {
        let Some(id) = collective_of(topic) else {
            return Validation::Ignore;
        };
        let Some(head) = announcement else {
            return Validation::Reject;
        };
        let Some(author) = author else {
            return Validation::Reject;
        };
        if did_from_peer_id(&author).as_deref() != Some(head.did.as_str()) {
            debug!(peer = %source, "an announcement of someone else's repo");
            return Validation::Reject;
        }
        let forwarder = did_from_peer_id(&source).unwrap_or_default();
        if !self.is_member(&id, &head.did)
            || !self.is_member(&id, &forwarder)
            || !self.is_member(&id, &self.me.clone())
        {
            return Validation::Ignore;
        }
        if head.did != self.me && self.replicates(&id) {
            let peers = if author == source {
                vec![author]
            } else {
                vec![author, source]
            };
            self.want_pull(id, head.did, Some(head.rev), peers);
        }
        Validation::Accept
    }

    /// Starts a pull of `did`'s repo up to `rev`, unless the replica is there already or a
    /// pull of that repo is running (then it runs again after).
    fn want_pull(&mut self, id: Cid, did: String, rev: Option<String>, peers: Vec<PeerId>) {
        let key = (id, did);
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
        let (id, did) = key.clone();
        self.pulls.insert(key, Pull { again: None });
        let net = self.net.clone();
        let internal = self.internal.clone();
        let permits = Arc::clone(&self.pull_permits);
        let limits = PullLimits {
            max_bytes: self.config.max_replica_bytes,
        };
        tokio::spawn(async move {
            let held = match permits.acquire_owned().await {
                Ok(_permit) => {
                    match replica::pull(repos, net, id, did.clone(), rev, peers, limits).await {
                        Ok(head) => head.map(|h| h.rev),
                        Err(e) => {
                            debug!(collective = %id, did = %did, error = %e, "pull failed");
                            None
                        }
                    }
                }
                Err(_) => None,
            };
            let _ = internal
                .send(Internal::Pulled {
                    collective: id,
                    did,
                    held,
                })
                .await;
        });
    }

    /// Asks a member peer which repos it holds in the collective's space.
    fn ask_heads(&self, id: Cid, peer: PeerId) {
        let Ok(permit) = Arc::clone(&self.requests).try_acquire_owned() else {
            return;
        };
        let net = self.net.clone();
        let internal = self.internal.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let answer = net
                .request(peer, &topic(&id), RepoReq::Heads.encode())
                .await;
            match answer
                .map_err(|e| e.to_string())
                .and_then(|a| replica::read_heads(&a))
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

    /// Dials the peers cut off for subscribing early whose join has arrived since; forgets
    /// those still strangers after a minute.
    fn dial_back(&mut self) {
        if self.cut_off.is_empty() {
            return;
        }
        let now_members: Vec<PeerId> = self
            .cut_off
            .keys()
            .filter(|p| {
                did_from_peer_id(p).is_some_and(|d| {
                    self.collectives
                        .values()
                        .any(|c| c.driver.log().state_ref().members.contains_key(&d))
                })
            })
            .copied()
            .collect();
        for peer in now_members {
            if let Some((addrs, _)) = self.cut_off.remove(&peer) {
                debug!(peer = %peer, "its join arrived; dialling it back");
                for a in addrs.into_iter().filter(|a| !is_unspecified(a)) {
                    let net = self.net.clone();
                    let a = with_p2p(a, peer);
                    tokio::spawn(async move {
                        let _ = net.dial(a).await;
                    });
                }
            }
        }
        self.cut_off
            .retain(|_, (_, at)| at.elapsed() < Duration::from_secs(60));
    }

    /// Rewrites the address book (when the engine has one).
    fn save_addrs(&self) {
        let Some(path) = &self.config.address_book else {
            return;
        };
        let mut text = String::new();
        for (peer, addrs) in &self.known_addrs {
            for a in addrs {
                text.push_str(&with_p2p(a.clone(), *peer).to_string());
                text.push('\n');
            }
        }
        let tmp = path.with_extension("tmp");
        let result = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = result {
            warn!(path = %path.display(), error = %e, "could not save the address book");
        }
    }

    /// Asks a member peer where the other members' nodes it knows listen.
    fn ask_addrs(&self, id: Cid, peer: PeerId) {
        let Ok(permit) = Arc::clone(&self.requests).try_acquire_owned() else {
            return;
        };
        let net = self.net.clone();
        let internal = self.internal.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let answer = net.request(peer, &topic(&id), Req::Addrs.encode()).await;
            match answer
                .map_err(|e| e.to_string())
                .and_then(|a| read_response(&a))
            {
                Ok(items) => {
                    let addrs = items
                        .into_iter()
                        .filter_map(|b| Multiaddr::try_from(b).ok())
                        .filter_map(|a| p2p_of(&a).map(|p| (p, a)))
                        .take(256)
                        .collect();
                    let _ = internal.send(Internal::Addrs(addrs)).await;
                }
                Err(e) => debug!(peer = %peer, error = %e, "addresses request failed"),
            }
        });
    }

    /// Every `repo_sync_interval`: each collective this node replicates asks one member peer
    /// (in turn) for its heads.
    fn repo_sync(&mut self) {
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

    fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::Addrs(addrs) => {
                let me = self.net.peer_id();
                let mut changed = false;
                for (peer, addr) in addrs {
                    if peer == me {
                        continue;
                    }
                    let known = self.known_addrs.entry(peer).or_default();
                    if !known.contains(&addr) && known.len() < 8 {
                        known.push(addr.clone());
                        changed = true;
                    }
                    if !self.connected.contains_key(&peer) {
                        let net = self.net.clone();
                        tokio::spawn(async move {
                            let _ = net.dial(addr).await;
                        });
                    }
                }
                if changed {
                    self.save_addrs();
                }
            }
            Internal::Pulled {
                collective,
                did,
                held,
            } => {
                let key = (collective, did);
                if let Some(rev) = held {
                    self.held.insert(key.clone(), rev);
                }
                if let Some(Pull {
                    again: Some((rev, peers)),
                }) = self.pulls.remove(&key)
                {
                    self.want_pull(key.0, key.1, rev, peers);
                }
            }
            Internal::Heads {
                collective,
                peer,
                heads,
            } => {
                if !self.replicates(&collective) {
                    return;
                }
                for h in heads {
                    if h.did != self.me && self.is_member(&collective, &h.did) {
                        self.want_pull(collective, h.did, Some(h.rev), vec![peer]);
                    }
                }
            }
        }
    }

    /// Serves a heads or repo request: to current members only (as this node's state has
    /// them), and only while this node's member is one.
    async fn on_repo_request(
        &mut self,
        peer: PeerId,
        did: &str,
        topic: &str,
        req: RepoReq,
        token: crate::handle::ResponseToken,
    ) {
        let id = collective_of(topic);
        let allowed =
            id.is_some_and(|id| self.is_member(&id, did) && self.is_member(&id, &self.me.clone()));
        let Some(id) = id.filter(|_| allowed) else {
            debug!(peer = %peer, "refused a non-member's repo request");
            let _ = self
                .net
                .respond(token, replica::refusal(NOT_A_MEMBER))
                .await;
            return;
        };
        let Ok(permit) = Arc::clone(&self.serve_permits).try_acquire_owned() else {
            let _ = self
                .net
                .respond(token, replica::refusal(replica::BUSY))
                .await;
            return;
        };
        let net = self.net.clone();
        let repos = self.repos.clone();
        let exports = Arc::clone(&self.exports);
        let page = self.config.repo_page_bytes;
        tokio::spawn(async move {
            let _permit = permit;
            let body = match req {
                RepoReq::Heads => replica::serve_heads(repos, id).await,
                RepoReq::Repo { did, since, offset } => {
                    replica::serve_repo(repos, exports, id, did, since, offset, page).await
                }
            };
            let _ = net.respond(token, body).await;
        });
    }

    async fn on_gossip(&mut self, msg_id: MsgId, source: PeerId, topic: &str, data: Vec<u8>) {
        let Some(id) = collective_of(topic) else {
            let _ = self
                .net
                .report_validation(msg_id, source, Validation::Ignore)
                .await;
            return;
        };
        let did = did_from_peer_id(&source).unwrap_or_default();
        if !self.is_member(&id, &did) || !self.is_member(&id, &self.me.clone()) {
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

    async fn on_request(
        &mut self,
        peer: PeerId,
        did: &str,
        topic: &str,
        body: &[u8],
    ) -> Result<Vec<Vec<u8>>, String> {
        let Some(id) = collective_of(topic) else {
            return Err("unknown topic".into());
        };
        let Some(c) = self.collectives.get(&id) else {
            return Err(NOT_A_MEMBER.into());
        };
        let Some(req) = Req::decode(body) else {
            return Err("malformed request".into());
        };
        match req {
            Req::Sync(msg) => {
                if !self.is_member(&id, did) || !self.is_member(&id, &self.me.clone()) {
                    debug!(peer = %peer, "refused a non-member's sync request");
                    return Err(NOT_A_MEMBER.into());
                }
                let msg = Message::decode(&msg).map_err(|e| e.to_string())?;
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
                Ok(Vec::new())
            }
            Req::Fetch { invite, secret } => {
                // guild-gov decides, by this node's clock (not the candidate's).
                let state = c.driver.log().state_ref();
                if let Err(reason) = state.may_fetch_with_invite(&invite, &secret, did, self.now())
                {
                    debug!(peer = %peer, %reason, "refused an invite fetch");
                    return Err(match reason {
                        Reason::InviteUsed => "this invite has already been used".into(),
                        Reason::InviteExpired => "this invite has expired".into(),
                        _ => "unknown or expired invite".into(),
                    });
                }
                Ok(c.driver
                    .log()
                    .export()
                    .into_iter()
                    .map(<[u8]>::to_vec)
                    .collect())
            }
            Req::Addrs => {
                if !self.is_member(&id, did) || !self.is_member(&id, &self.me.clone()) {
                    return Err(NOT_A_MEMBER.into());
                }
                let peers = self.net.peers().await.map_err(|e| e.to_string())?;
                let state = c.driver.log().state_ref();
                let mut out = Vec::new();
                for p in peers {
                    if p.peer == peer
                        || !p
                            .did
                            .as_ref()
                            .is_some_and(|d| state.members.contains_key(d))
                    {
                        continue;
                    }
                    for a in p.addrs.iter().filter(|a| !is_unspecified(a)).take(4) {
                        out.push(with_p2p(a.clone(), p.peer).to_vec());
                    }
                }
                Ok(out)
            }
            Req::Submit(bytes) => {
                let op = SignedOp::decode(&bytes).map_err(|e| e.to_string())?;
                if op.kind() != OpKind::Join || op.author() != did {
                    return Err("only a candidate's own join may be submitted".into());
                }
                let now = self.now();
                let Some(c) = self.collectives.get_mut(&id) else {
                    return Err(NOT_A_MEMBER.into());
                };
                // guild-gov decides, by this node's clock: a join dated far from it, or with
                // an invite expired by it, does not enter the collective here.
                if let Err(reason) = c.driver.log().state_ref().may_accept_join(&op, now) {
                    debug!(peer = %peer, %reason, "refused a submitted join");
                    return Err(reason.to_string());
                }
                let mut out = Vec::new();
                let result = c.driver.submit(op, now, &mut out);
                self.perform(id, out).await;
                self.save(&id);
                self.reconcile_peers().await;
                result.map(|_| Vec::new()).map_err(|r| r.to_string())
            }
        }
    }

    /// Carries out a driver's actions.
    async fn perform(&mut self, id: Cid, actions: Vec<Action<PeerId>>) {
        let t = topic(&id);
        let joining = self.joining.contains(&id);
        for action in actions {
            match action {
                // A candidate's join goes to a member by request only: gossiped before any
                // member knows it, each member would ignore it and mark its id as seen, and
                // then could not publish it on when it accepts the join.
                Action::Publish(_) if joining => {}
                Action::Publish(bytes) => {
                    let msg_id = MsgId::of(&bytes);
                    let forwarded = self
                        .collectives
                        .get_mut(&id)
                        .and_then(|c| c.unvalidated.remove(&msg_id));
                    match forwarded {
                        Some(src) => {
                            let _ = self
                                .net
                                .report_validation(msg_id, src, Validation::Accept)
                                .await;
                        }
                        None => {
                            let net = self.net.clone();
                            let t = t.clone();
                            let peers: Vec<PeerId> = self
                                .collectives
                                .get(&id)
                                .map(|c| c.driver.peers().copied().collect())
                                .unwrap_or_default();
                            tokio::spawn(async move {
                                if let Err(e) = net.publish(&t, bytes.clone()).await {
                                    // Not gossiped (no subscribed peer yet, or gossipsub saw
                                    // the id already): hand it to each member peer directly.
                                    debug!(error = %e, "publish failed; sending the op to member peers");
                                    let body =
                                        Req::Sync(Message::Ops(vec![bytes]).encode()).encode();
                                    for p in peers {
                                        let _ = net.request(p, &t, body.clone()).await;
                                    }
                                }
                            });
                        }
                    }
                }
                Action::Send { to, msg } => {
                    let Ok(permit) = Arc::clone(&self.requests).try_acquire_owned() else {
                        debug!("too many sync requests in flight; dropping one");
                        continue;
                    };
                    let net = self.net.clone();
                    let t = t.clone();
                    let body = Req::Sync(msg.encode()).encode();
                    tokio::spawn(async move {
                        let _permit = permit;
                        match net.request(to, &t, body).await {
                            Ok(answer) => {
                                if let Err(e) = read_response(&answer) {
                                    debug!(peer = %to, error = %e, "sync request refused");
                                }
                            }
                            Err(e) => debug!(peer = %to, error = %e, "sync request failed"),
                        }
                    });
                }
                Action::Applied(op) => {
                    self.dirty.insert(id);
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

/// Sleeps for `d`, or for ever when there is nothing to wait for.
async fn sleep_for(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// The address book's entries; an unreadable file or line is skipped with a warning (the
/// addresses are relearnt from invites and members).
fn load_address_book(path: Option<&std::path::Path>) -> HashMap<PeerId, Vec<Multiaddr>> {
    let mut out: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
    let Some(path) = path else {
        return out;
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read the address book");
            return out;
        }
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match line.trim().parse::<Multiaddr>() {
            Ok(a) => match p2p_of(&a) {
                Some(p) => {
                    let v = out.entry(p).or_default();
                    if v.len() < 8 && !v.contains(&a) {
                        v.push(a);
                    }
                }
                None => warn!(line, "address book: no /p2p/ peer id; skipped"),
            },
            Err(e) => warn!(line, error = %e, "address book: not a multiaddress; skipped"),
        }
    }
    out
}

/// The address with `/p2p/<peer>` at its end (added if absent).
fn with_p2p(a: Multiaddr, peer: PeerId) -> Multiaddr {
    if p2p_of(&a).is_some() {
        a
    } else {
        a.with(libp2p::multiaddr::Protocol::P2p(peer))
    }
}

/// The peer id an address ends with.
fn p2p_of(a: &Multiaddr) -> Option<PeerId> {
    a.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

fn is_unspecified(a: &Multiaddr) -> bool {
    a.iter().any(|p| match p {
        libp2p::multiaddr::Protocol::Ip4(ip) => ip.is_unspecified(),
        libp2p::multiaddr::Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

fn short(did: &str) -> &str {
    did.get(did.len().saturating_sub(8)..).unwrap_or(did)
}
