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
//!
//! The engine is split by concern: [`wire`] (the frames), `task` (the engine task's loop,
//! commands and local writes), `drivers` (the drivers' actions and gossip verdicts), `access`
//! (who is answered what), `joins` (a candidate's fetch and join, both sides), `peers`
//! (finding, remembering and redialling members' nodes) and `pulls` (repo replication).

mod access;
mod drivers;
mod joins;
mod peers;
mod pulls;
mod signed;
mod task;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use guild_core::syntax::{Datetime, Did};
use guild_core::{Cid, Keypair};
use guild_gov::driver::{Driver, DriverConfig, VerifyCache};
use guild_gov::make::{CharterParams, InviteCode};
use guild_gov::{Log, OpKind, OpStore};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};
use tracing::warn;

use crate::clock::Clock;
use crate::handle::{MsgId, NetEvent, NetHandle, ResponseToken};
use crate::replica::Exports;
use crate::repos::{RepoHead, RepoKind, Repos};
use wire::{Flag, Reply, Request};

/// The gossip topic of a collective.
pub fn topic(collective: &Cid) -> String {
    format!("guild/collective/{collective}")
}

/// Sends `reply` for `token`. A reply that cannot be encoded (never expected: every field is a
/// valid value by type) is logged and not sent; the requester's request then fails.
async fn respond(net: &NetHandle, token: ResponseToken, reply: Reply) {
    match reply.encode() {
        Ok(body) => {
            let _ = net.respond(token, body).await;
        }
        Err(e) => warn!(error = %e, "could not encode a reply; none sent"),
    }
}

fn collective_of(topic: &str) -> Option<Cid> {
    topic
        .strip_prefix("guild/collective/")
        .and_then(|c| guild_core::syntax::parse_cid_str(c).ok())
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
    /// The most op bytes in one page of the log this node serves to a joining candidate
    /// (default [`wire::FETCH_PAGE_BYTES`]; at least one op per page).
    pub fetch_page_bytes: usize,
    /// Addresses to put in invites (default: the swarm's listen addresses).
    pub advertise: Vec<Multiaddr>,
    /// How often to redial members this node was connected to and lost (their addresses are
    /// remembered while the node runs).
    pub redial: Duration,
    /// How many members' nodes this node keeps connections to: it dials members it learns of
    /// (from invites, other members and its address book) only while it has fewer, so that a
    /// collective's nodes form a sparse random graph rather than a full mesh (connections,
    /// memory and background traffic per node stay flat as the collective grows). Inbound
    /// connections are all answered. A steward's node dials every member it learns of: it
    /// pulls each member's repo from the member's own node.
    pub member_peers: usize,
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
            fetch_page_bytes: wire::FETCH_PAGE_BYTES,
            advertise: Vec::new(),
            redial: Duration::from_secs(10),
            member_peers: DEFAULT_MEMBER_PEERS,
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

/// The engine's answers and errors are guild-service's (the API reads them through
/// `guild_service::CollectiveEngine`, which [`crate::NetCollectives`] implements).
pub use guild_service::{Departed, EngineError, FieldsFn, Status};

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
        log: Box<Log>,
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
    /// A snapshot of a collective's op log (for work done off the engine task: bundles).
    Log(Cid, oneshot::Sender<Result<guild_gov::Log, EngineError>>),
    /// This member committed to its repo in a collective's space.
    Announce(Cid, RepoHead),
    /// This member committed to its public repo: announced on every collective it belongs to.
    AnnouncePublic(RepoHead),
    /// An op signed elsewhere, to submit (see [`Engine::submit`]).
    Submit {
        collective: Cid,
        op: Vec<u8>,
        reply: oneshot::Sender<Result<Cid, EngineError>>,
    },
    /// The signed bytes of one op, if held.
    GetOp(
        Cid,
        Cid,
        oneshot::Sender<Result<Option<Vec<u8>>, EngineError>>,
    ),
}

/// What the engine's own tasks report back.
enum Internal {
    /// A pull of `did`'s repo ended, so.
    Pulled {
        collective: Cid,
        did: Did,
        kind: RepoKind,
        outcome: pulls::PullOutcome,
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

/// This node's member's departures from the collectives it holds, as the engine last saw them:
/// the synchronous view the repo service's write path reads (`guild_service::Memberships`),
/// refreshed whenever an op enters a log. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Memberships(Arc<std::sync::RwLock<HashMap<Cid, Departed>>>);

impl guild_service::Memberships for Memberships {
    fn departed(&self, collective: &Cid) -> Option<Departed> {
        // A poisoned lock only means a writer panicked mid-insert of a whole value.
        let map = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(collective).cloned()
    }
}

impl Memberships {
    /// Sets (or clears) the departure recorded for `collective`.
    fn set(&self, collective: Cid, departed: Option<Departed>) {
        let mut map = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match departed {
            Some(d) => map.insert(collective, d),
            None => map.remove(&collective),
        };
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
    memberships: Memberships,
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
/// it misses some (it is told how many: `RecvError::Lagged`). tokio's broadcast channel
/// allocates every slot up front (~240 bytes each): 4 096 slots were ~1 MB on every node,
/// watched or not (13 % of a node's memory in the 1 000-node bench).
pub const APPLIED_BACKLOG: usize = 256;

/// [`EngineConfig::member_peers`]'s default: above gossipsub's mesh size (6), so that a node's
/// mesh can be full of members, and far below a collective's size.
pub const DEFAULT_MEMBER_PEERS: usize = 8;

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
    /// Members' nodes dialled for the connections this node keeps, and when (see
    /// `peers::DIAL_GRACE`).
    dialled: HashMap<PeerId, Instant>,
    /// Orders the members dialled at random.
    rng: guild_gov::driver::SplitMix64,
    /// Collectives whose join op is written but not yet accepted by a member: no gossip yet
    /// (members who have not seen the join would take the subscription for a stranger's).
    joining: BTreeSet<Cid>,
    /// The node's repos, when it replicates.
    repos: Option<Arc<dyn Repos>>,
    /// Pulls in flight, by (collective, member, which repo).
    pulls: HashMap<(Cid, Did, RepoKind), Pull>,
    /// The revision of each replica held, as last seen (saves a store read per announcement).
    held: HashMap<(Cid, Did, RepoKind), String>,
    /// The last refusal of each member's repo as a replica by this node's steward, for the
    /// log and the status.
    refusals: pulls::Refusals,
    /// Stewards' refusals of this node's member's repo, as their nodes told it, by
    /// (collective, steward).
    refused_by: HashMap<(Cid, Did), pulls::Refusal>,
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
    /// This member's departures, for the repo service's write path.
    memberships: Memberships,
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
            let log = Log::open_shared(id, &store, &cache)
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
        let known_addrs = peers::load_address_book(config.address_book.as_deref());
        let first_redial = Instant::now()
            .checked_sub(config.redial)
            .unwrap_or_else(Instant::now);
        let config_pulls = config.max_pulls_in_flight.max(1);
        // The order members are dialled in is seeded by the node's key, so that nodes differ.
        let rng_seed = {
            let b = net.peer_id().to_bytes();
            b.iter()
                .rev()
                .take(8)
                .fold(0u64, |acc, x| acc << 8 | u64::from(*x))
        };
        let memberships = Memberships::default();
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
            dialled: HashMap::new(),
            rng: guild_gov::driver::SplitMix64::new(rng_seed),
            repos,
            pulls: HashMap::new(),
            held: HashMap::new(),
            refusals: pulls::Refusals::default(),
            refused_by: HashMap::new(),
            pull_permits: Arc::new(Semaphore::new(config_pulls)),
            serve_permits: Arc::new(Semaphore::new(config_pulls)),
            exports: Arc::new(Exports::default()),
            internal,
            last_repo_sync: Instant::now(),
            repo_sync_turn: 0,
            replicating: BTreeSet::new(),
            cut_off: HashMap::new(),
            memberships: memberships.clone(),
        };
        let ids: Vec<Cid> = task.collectives.keys().copied().collect();
        for id in ids {
            task.refresh_membership(&id);
        }
        task.subscribe_all().await;
        tokio::spawn(task.run(rx, events, internal_rx));
        Ok(Engine {
            tx,
            net,
            join_timeout,
            applied,
            memberships,
        })
    }

    /// Whether this node's member still belongs to each collective, read synchronously (the
    /// node installs it in its repo service, which refuses writes to a collective's space once
    /// its member left or was removed).
    pub fn memberships(&self) -> Memberships {
        self.memberships.clone()
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

    /// Writes an op of `kind` whose fields `fields` builds from the current state.
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

    /// A snapshot of a collective's op log, to compute on without holding the engine (a
    /// bundle's selection reads the log's causal past; the engine goes on meanwhile).
    pub async fn log(&self, collective: Cid) -> Result<guild_gov::Log, EngineError> {
        self.call(|r| Cmd::Log(collective, r)).await?
    }

    /// The collectives this node holds.
    pub async fn collectives(&self) -> Result<Vec<Cid>, EngineError> {
        self.call(Cmd::List).await
    }

    /// Takes an op signed elsewhere (a builder's accept): decoded strictly, its parents
    /// already in the log, then submitted to the collective's rules, stored and gossiped like
    /// a local write. Returns the op's id.
    pub async fn submit(&self, collective: Cid, op: Vec<u8>) -> Result<Cid, EngineError> {
        self.call(|reply| Cmd::Submit {
            collective,
            op,
            reply,
        })
        .await?
    }

    /// The signed bytes of op `id` of the collective, if this node holds it.
    pub async fn op(&self, collective: Cid, id: Cid) -> Result<Option<Vec<u8>>, EngineError> {
        self.call(|r| Cmd::GetOp(collective, id, r)).await?
    }

    /// Announces a new head of this member's repo in a collective's space to the collective
    /// (call it after each commit). Never waits: returns false if the engine is busy or
    /// stopped, in which case stewards learn of the head at their next heads sync.
    pub fn announce(&self, collective: Cid, rev: String, commit: Cid) -> bool {
        // An ed25519 peer id always names a did:key; without one there is nothing to announce.
        let Some(did) = self.net.did().and_then(|d| Did::parse(&d).ok()) else {
            return false;
        };
        let head = RepoHead {
            did,
            kind: RepoKind::Space,
            rev,
            commit,
        };
        self.tx.try_send(Cmd::Announce(collective, head)).is_ok()
    }

    /// Announces a commit to one of this member's repos: [`Engine::announce`] for a
    /// collective's space, [`Engine::announce_public`] for the public repo.
    pub fn announce_commit(&self, space: &guild_service::Space, rev: String, commit: Cid) -> bool {
        match space {
            guild_service::Space::Collective(c) => self.announce(*c, rev, commit),
            guild_service::Space::Public => self.announce_public(rev, commit),
        }
    }

    /// Announces a new head of this member's public repo (its commons) on every collective
    /// its member belongs to, so that their stewards' nodes replicate it and list its commons
    /// records. Never waits, like [`Engine::announce`].
    pub fn announce_public(&self, rev: String, commit: Cid) -> bool {
        let Some(did) = self.net.did().and_then(|d| Did::parse(&d).ok()) else {
            return false;
        };
        let head = RepoHead {
            did,
            kind: RepoKind::Public,
            rev,
            commit,
        };
        self.tx.try_send(Cmd::AnnouncePublic(head)).is_ok()
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
        let body = Request::RepoHeads(Flag)
            .encode()
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        let answer = self
            .net
            .request(peer_id, &topic(&collective), body)
            .await
            .map_err(|e| EngineError::NoPeers(e.to_string()))?;
        Reply::read_heads(&answer).map_err(|e| EngineError::PeerRefused(e.to_string()))
    }
}
