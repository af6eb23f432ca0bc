//! A seeded, virtual-time simulator of many [`Driver`]s of one collective (house-style:
//! iroh-gossip's `proto::sim`).
//!
//! Nodes are linked by a mesh ([`Mesh`]); each link has a base latency drawn from
//! [`SimConfig::latency_micros`], and each message adds a jitter and may be lost or
//! duplicated ([`SimConfig::loss`], [`SimConfig::duplication`]), all drawn from one seeded
//! PRNG. [`Action::Publish`] delivers the op to every connected neighbour, which relays it
//! once its own log applied it (gossipsub-like; a per-node seen cache drops copies of an op
//! already received, as gossipsub's does, unless [`SimConfig::seen_cache`] is off).
//! [`Action::Send`] messages go through [`Message::encode`] and [`Message::decode`].
//! Partitions cut links (both ends see [`Event::PeerDisconnected`], and messages in flight on
//! a cut link are dropped) until they heal (both ends see [`Event::PeerConnected`]), or, with
//! [`SimConfig::partitions_disconnect`] off, silently drop what crosses them; a node
//! can go offline, and gossip can be turned off for a node (it then learns only through
//! anti-entropy).
//!
//! Events run in (virtual time, sequence) order, so a run is a function of the seed and the
//! script: ops written by a node at a time ([`Sim::schedule_create`], or [`Sim::create`] at
//! the current time), partitions, heals, messages injected from a node ([`Sim::inject`], for
//! misbehaving peers). All nodes share one [`VerifyCache`], so each op's signature is checked
//! once per run.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use guild_core::{Cid, Keypair, cids};

use crate::body::OpBody;
use crate::driver::{
    Action, DEFAULT_VERIFY_CACHE, Driver, DriverConfig, Event, Message, SplitMix64, VerifyCache,
};
use crate::log::Log;
use crate::op::SignedOp;
use crate::state::{Reason, State};

/// A node's index in the simulation (also its peer id).
pub type NodeId = usize;

/// How the nodes are linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mesh {
    /// Every node to every other.
    Full,
    /// A ring, plus `chords` links from each node to random others: a connected graph of
    /// degree about `2 + 2 × chords` (gossipsub's mesh keeps 6 to 12 peers).
    Ring {
        /// Random links added per node.
        chords: usize,
    },
}

/// The simulated network's settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seeds every random choice of the run (mesh, latencies, loss, drivers' PRNGs).
    pub seed: u64,
    /// The virtual time at the start, in microseconds since the Unix epoch (ops carry it as
    /// `createdAt`).
    pub start_micros: i64,
    /// A link's base latency is drawn from this range, in microseconds.
    pub latency_micros: (i64, i64),
    /// Each message adds a delay drawn from `0..=jitter_micros` (so messages reorder).
    pub jitter_micros: i64,
    /// The probability that a message is lost.
    pub loss: f64,
    /// The probability that a message is delivered twice (each copy with its own delay).
    pub duplication: f64,
    /// The links.
    pub mesh: Mesh,
    /// Whether each node drops gossip copies of an op it already received (gossipsub's seen
    /// cache).
    pub seen_cache: bool,
    /// Whether a partition closes the connections it cuts (both ends see
    /// [`Event::PeerDisconnected`], then [`Event::PeerConnected`] when it heals), or silently
    /// drops what crosses it while the drivers believe their peers connected (then only
    /// periodic anti-entropy and wants repair it). Silent partitions assume no node goes
    /// offline meanwhile.
    pub partitions_disconnect: bool,
    /// The drivers' settings (each node's seed is derived from [`SimConfig::seed`]).
    pub driver: DriverConfig,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            seed: 1,
            start_micros: 1_700_000_000_000_000,
            latency_micros: (10_000, 80_000),
            jitter_micros: 20_000,
            loss: 0.0,
            duplication: 0.0,
            mesh: Mesh::Ring { chords: 2 },
            seen_cache: true,
            partitions_disconnect: true,
            driver: DriverConfig::default(),
        }
    }
}

/// A peer penalised by a node.
#[derive(Debug, Clone, PartialEq)]
pub struct Penalty {
    /// When.
    pub at: i64,
    /// The node that penalised.
    pub node: NodeId,
    /// The peer penalised.
    pub peer: NodeId,
    /// Why.
    pub reason: Reason,
}

/// An op refused by a node.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// When.
    pub at: i64,
    /// The node that refused it.
    pub node: NodeId,
    /// The peer that sent it (`None` for a local op).
    pub from: Option<NodeId>,
    /// The op's id, if it has one.
    pub id: Option<Cid>,
    /// Why.
    pub reason: Reason,
}

/// An op a scheduled [`Sim::schedule_create`] or [`Sim::schedule_submit`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// When.
    pub at: i64,
    /// The node that wrote it.
    pub node: NodeId,
    /// Its id if the node's log applied it, or why not.
    pub result: Result<Cid, Reason>,
}

/// Counters over the whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Messages put on a link (gossip copies included, duplicates not).
    pub sent: u64,
    /// Bytes put on a link.
    pub bytes: u64,
    /// Messages lost.
    pub lost: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Messages dropped because their link was down when sent or when due.
    pub dropped: u64,
    /// Gossip copies dropped by a seen cache.
    pub suppressed: u64,
    /// Messages handed to a driver.
    pub delivered: u64,
    /// Messages that did not decode (the simulator only sends encoded messages, so a
    /// non-zero count is a codec bug).
    pub malformed: u64,
    /// [`Message::Reconcile`] sent.
    pub reconciles: u64,
    /// [`Message::ReconcileReply`] sent.
    pub reconcile_replies: u64,
    /// [`Message::Want`] sent.
    pub wants: u64,
    /// [`Message::Ops`] sent.
    pub ops: u64,
    /// Ops a driver deferred because they were dated ahead of its clock.
    pub deferred: u64,
}

/// Counters for one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Gossip messages handed to its driver.
    pub gossip_received: u64,
    /// [`Message::Ops`] handed to its driver.
    pub ops_messages_received: u64,
    /// Ops inside those messages.
    pub ops_received: u64,
}

#[derive(Debug)]
struct Node {
    driver: Driver<NodeId>,
    key: Keypair,
    online: bool,
    gossip: bool,
    wake: Option<i64>,
    seen: HashSet<Cid>,
    stats: NodeStats,
}

#[derive(Debug)]
enum Payload {
    Gossip { id: Cid, bytes: Vec<u8> },
    Wire(Vec<u8>),
}

#[derive(Debug)]
enum Script {
    Create {
        node: NodeId,
        body: Box<OpBody>,
    },
    Submit {
        node: NodeId,
        op: Box<SignedOp>,
    },
    Partition(BTreeSet<NodeId>),
    Heal,
    Online {
        node: NodeId,
        online: bool,
    },
    Gossip {
        node: NodeId,
        on: bool,
    },
    Inject {
        from: NodeId,
        to: NodeId,
        msg: Message,
    },
}

#[derive(Debug)]
enum Scheduled {
    Deliver {
        from: NodeId,
        to: NodeId,
        payload: Payload,
    },
    Tick(NodeId),
    Script(Script),
}

/// The simulator.
#[derive(Debug)]
pub struct Sim {
    config: SimConfig,
    now: i64,
    seq: u64,
    queue: BTreeMap<(i64, u64), Scheduled>,
    nodes: Vec<Node>,
    /// Links (lower id first) and their base latency.
    links: BTreeMap<(NodeId, NodeId), i64>,
    cut: BTreeSet<(NodeId, NodeId)>,
    rng: SplitMix64,
    cache: VerifyCache,
    stats: SimStats,
    penalties: Vec<Penalty>,
    rejections: Vec<Rejection>,
    written: Vec<Written>,
    scripted: usize,
    in_flight: usize,
    heads: Vec<Vec<Cid>>,
    changed: bool,
}

fn link(a: NodeId, b: NodeId) -> (NodeId, NodeId) {
    (a.min(b), a.max(b))
}

impl Sim {
    /// A network of `keys.len()` nodes of the collective `collective` (the id of its genesis
    /// charter), node `i` writing with `keys[i]`. Every node starts with an empty log; all
    /// links connect at the start time.
    pub fn new(config: SimConfig, collective: Cid, keys: Vec<Keypair>) -> Sim {
        let mut rng = SplitMix64::new(config.seed);
        let n = keys.len();
        let cache = VerifyCache::new(DEFAULT_VERIFY_CACHE.max(4 * n));
        let nodes: Vec<Node> = keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| {
                let driver_config = DriverConfig {
                    seed: SplitMix64::new(config.seed ^ (i as u64).wrapping_mul(0x9e37)).next_u64(),
                    ..config.driver.clone()
                };
                Node {
                    driver: Driver::new(Log::new(collective), driver_config)
                        .with_cache(cache.clone()),
                    key,
                    online: true,
                    gossip: true,
                    wake: None,
                    seen: HashSet::new(),
                    stats: NodeStats::default(),
                }
            })
            .collect();
        let mut links = BTreeSet::new();
        match config.mesh {
            Mesh::Full => {
                for a in 0..n {
                    for b in a + 1..n {
                        links.insert((a, b));
                    }
                }
            }
            Mesh::Ring { chords } => {
                if n > 1 {
                    for a in 0..n {
                        links.insert(link(a, (a + 1) % n));
                    }
                }
                for a in 0..n {
                    let mut added = 0;
                    for _ in 0..chords * 8 {
                        if added == chords {
                            break;
                        }
                        let b = rng.below(n as u64) as usize;
                        if b != a && links.insert(link(a, b)) {
                            added += 1;
                        }
                    }
                }
            }
        }
        let (lo, hi) = config.latency_micros;
        let links = links
            .into_iter()
            .map(|l| {
                let spread = hi.saturating_sub(lo).max(0) as u64;
                (l, lo + rng.below(spread + 1) as i64)
            })
            .collect();
        let now = config.start_micros;
        let mut sim = Sim {
            config,
            now,
            seq: 0,
            queue: BTreeMap::new(),
            heads: vec![Vec::new(); n],
            nodes,
            links,
            cut: BTreeSet::new(),
            rng,
            cache,
            stats: SimStats::default(),
            penalties: Vec::new(),
            rejections: Vec::new(),
            written: Vec::new(),
            scripted: 0,
            in_flight: 0,
            changed: false,
        };
        let all: Vec<(NodeId, NodeId)> = sim.links.keys().copied().collect();
        for (a, b) in all {
            sim.connect(a, b);
        }
        sim
    }

    /// The current virtual time.
    pub fn now(&self) -> i64 {
        self.now
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True if there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`'s key.
    pub fn key(&self, i: NodeId) -> &Keypair {
        &self.nodes[i].key
    }

    /// Node `i`'s driver.
    pub fn driver(&self, i: NodeId) -> &Driver<NodeId> {
        &self.nodes[i].driver
    }

    /// Node `i`'s log.
    pub fn log(&self, i: NodeId) -> &Log {
        self.nodes[i].driver.log()
    }

    /// Node `i`'s state.
    pub fn state(&self, i: NodeId) -> State {
        self.log(i).state()
    }

    /// Node `i`'s neighbours in the mesh (connected or not).
    pub fn neighbours(&self, i: NodeId) -> Vec<NodeId> {
        self.links
            .keys()
            .filter_map(|&(a, b)| {
                if a == i {
                    Some(b)
                } else if b == i {
                    Some(a)
                } else {
                    None
                }
            })
            .collect()
    }

    /// Whether the link between `a` and `b` exists, is not cut, and both ends are online.
    pub fn connected(&self, a: NodeId, b: NodeId) -> bool {
        let l = link(a, b);
        self.links.contains_key(&l)
            && !self.cut.contains(&l)
            && self.nodes.get(a).is_some_and(|n| n.online)
            && self.nodes.get(b).is_some_and(|n| n.online)
    }

    /// The shared verification cache.
    pub fn cache(&self) -> &VerifyCache {
        &self.cache
    }

    /// The run's counters.
    pub fn stats(&self) -> &SimStats {
        &self.stats
    }

    /// Node `i`'s counters.
    pub fn node_stats(&self, i: NodeId) -> &NodeStats {
        &self.nodes[i].stats
    }

    /// Every penalty so far.
    pub fn penalties(&self) -> &[Penalty] {
        &self.penalties
    }

    /// Every refused op so far.
    pub fn rejections(&self) -> &[Rejection] {
        &self.rejections
    }

    /// What the scheduled writes did, in the order they ran.
    pub fn written(&self) -> &[Written] {
        &self.written
    }

    /// Node `node` writes an op now; returns its id, or why its own log refused it.
    pub fn create(&mut self, node: NodeId, body: OpBody) -> Result<Cid, Reason> {
        let key = self.nodes[node].key.clone();
        let mut out = Vec::new();
        let result = self.nodes[node]
            .driver
            .create(&body, &key, self.now, &mut out);
        self.apply(node, out);
        result
    }

    /// Node `node` is handed an op signed elsewhere, now; returns its id (applied, or waiting
    /// for its parents), or why its log refused it.
    pub fn submit(&mut self, node: NodeId, op: SignedOp) -> Result<Cid, Reason> {
        let mut out = Vec::new();
        let result = self.nodes[node].driver.submit(op, self.now, &mut out);
        self.apply(node, out);
        result
    }

    /// Node `node` writes an op at virtual time `at` (see [`Sim::written`]).
    pub fn schedule_create(&mut self, at: i64, node: NodeId, body: OpBody) {
        self.script(
            at,
            Script::Create {
                node,
                body: Box::new(body),
            },
        );
    }

    /// Node `node` is handed an op signed elsewhere at virtual time `at`.
    pub fn schedule_submit(&mut self, at: i64, node: NodeId, op: SignedOp) {
        self.script(
            at,
            Script::Submit {
                node,
                op: Box::new(op),
            },
        );
    }

    /// At `at`, cuts every link between `group` and the other nodes.
    pub fn partition(&mut self, at: i64, group: &[NodeId]) {
        self.script(at, Script::Partition(group.iter().copied().collect()));
    }

    /// At `at`, restores every cut link.
    pub fn heal(&mut self, at: i64) {
        self.script(at, Script::Heal);
    }

    /// At `at`, takes a node offline (all its links close) or back online.
    pub fn set_online(&mut self, at: i64, node: NodeId, online: bool) {
        self.script(at, Script::Online { node, online });
    }

    /// At `at`, turns gossip off (or on) for a node: it neither receives nor publishes ops on
    /// the topic, and learns only through anti-entropy.
    pub fn set_gossip(&mut self, at: i64, node: NodeId, on: bool) {
        self.script(at, Script::Gossip { node, on });
    }

    /// At `at`, node `from` sends `msg` to `to` (whatever its driver would do), over the link
    /// with its latency but without loss or duplication: for misbehaving peers.
    pub fn inject(&mut self, at: i64, from: NodeId, to: NodeId, msg: Message) {
        self.script(at, Script::Inject { from, to, msg });
    }

    /// Runs every event up to `until` (inclusive); the clock then reads `until`.
    pub fn run_until(&mut self, until: i64) {
        while let Some(&(at, _)) = self.queue.keys().next() {
            if at > until {
                break;
            }
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// Runs until every scheduled write has run and all nodes have the same heads, or until
    /// `deadline`. Returns the time of convergence, or `None` at the deadline.
    pub fn run_until_converged(&mut self, deadline: i64) -> Option<i64> {
        let all: Vec<NodeId> = (0..self.len()).collect();
        self.run_until_converged_among(deadline, &all)
    }

    /// [`Sim::run_until_converged`] for some of the nodes only (the others may lag: offline,
    /// say).
    pub fn run_until_converged_among(&mut self, deadline: i64, nodes: &[NodeId]) -> Option<i64> {
        loop {
            if self.scripted == 0 && self.heads_equal_among(nodes) {
                return Some(self.now);
            }
            // Heads change only when an op is applied, and writes only when a script event
            // runs: run until one of those happens, then check again.
            self.changed = false;
            while !self.changed {
                match self.queue.keys().next() {
                    Some(&(at, _)) if at <= deadline => {
                        self.step();
                    }
                    _ => {
                        self.now = self.now.max(deadline);
                        return None;
                    }
                }
            }
        }
    }

    /// Runs until no message is in flight and every scheduled event of the script has run
    /// (only timers are left), or until `deadline`. Returns the time it went quiet, or `None`
    /// at the deadline.
    pub fn run_until_quiet(&mut self, deadline: i64) -> Option<i64> {
        loop {
            if self.in_flight == 0 && self.scripted == 0 {
                return Some(self.now);
            }
            match self.queue.keys().next() {
                Some(&(at, _)) if at <= deadline => {
                    self.step();
                }
                _ => {
                    self.now = self.now.max(deadline);
                    return None;
                }
            }
        }
    }

    /// How many messages are in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether every node has the same non-empty heads.
    pub fn heads_equal(&self) -> bool {
        let all: Vec<NodeId> = (0..self.len()).collect();
        self.heads_equal_among(&all)
    }

    /// Whether the given nodes have the same non-empty heads.
    pub fn heads_equal_among(&self, nodes: &[NodeId]) -> bool {
        let Some((first, rest)) = nodes.split_first() else {
            return true;
        };
        let first = &self.heads[*first];
        !first.is_empty() && rest.iter().all(|&i| self.heads[i] == *first)
    }

    /// Whether every node folds the same state (a full fold per node).
    pub fn states_equal(&self) -> bool {
        let states: Vec<State> = (0..self.len()).map(|i| self.state(i)).collect();
        states.windows(2).all(|w| w[0] == w[1])
    }

    fn script(&mut self, at: i64, script: Script) {
        self.scripted += 1;
        self.push(at, Scheduled::Script(script));
    }

    fn push(&mut self, at: i64, event: Scheduled) {
        if let Scheduled::Deliver { .. } = event {
            self.in_flight += 1;
        }
        let at = at.max(self.now);
        self.queue.insert((at, self.seq), event);
        self.seq += 1;
    }

    /// Runs the next event, if any.
    pub fn step(&mut self) -> bool {
        let Some(((at, _), event)) = self.queue.pop_first() else {
            return false;
        };
        self.now = self.now.max(at);
        match event {
            Scheduled::Deliver { from, to, payload } => {
                self.in_flight -= 1;
                self.deliver(from, to, payload);
            }
            Scheduled::Tick(node) => {
                if self.nodes[node].wake == Some(at) {
                    self.nodes[node].wake = None;
                    self.handle(node, Event::Tick);
                }
            }
            Scheduled::Script(script) => {
                self.scripted -= 1;
                self.changed = true;
                self.run_script(script);
            }
        }
        true
    }

    fn run_script(&mut self, script: Script) {
        match script {
            Script::Create { node, body } => {
                let result = self.create(node, *body);
                self.record(node, result);
            }
            Script::Submit { node, op } => {
                let result = self.submit(node, *op);
                self.record(node, result);
            }
            Script::Partition(group) => {
                let crossing: Vec<(NodeId, NodeId)> = self
                    .links
                    .keys()
                    .filter(|(a, b)| group.contains(a) != group.contains(b))
                    .copied()
                    .collect();
                for (a, b) in crossing {
                    let was = self.connected(a, b);
                    self.cut.insert((a, b));
                    if was && self.config.partitions_disconnect {
                        self.disconnect(a, b);
                    }
                }
            }
            Script::Heal => {
                let cut = std::mem::take(&mut self.cut);
                for (a, b) in cut {
                    if self.connected(a, b) && self.config.partitions_disconnect {
                        self.connect(a, b);
                    }
                }
            }
            Script::Online { node, online } => {
                if self.nodes[node].online == online {
                    return;
                }
                let peers = self.neighbours(node);
                if online {
                    self.nodes[node].online = true;
                    for p in peers {
                        if self.connected(node, p) {
                            self.connect(node, p);
                        }
                    }
                } else {
                    let up: Vec<NodeId> = peers
                        .into_iter()
                        .filter(|&p| self.connected(node, p))
                        .collect();
                    self.nodes[node].online = false;
                    for p in up {
                        self.disconnect(node, p);
                    }
                }
            }
            Script::Gossip { node, on } => self.nodes[node].gossip = on,
            Script::Inject { from, to, msg } => {
                let delay = self.links.get(&link(from, to)).copied().unwrap_or(0);
                self.stats.sent += 1;
                self.push(
                    self.now + delay,
                    Scheduled::Deliver {
                        from,
                        to,
                        payload: Payload::Wire(msg.encode()),
                    },
                );
            }
        }
    }

    fn record(&mut self, node: NodeId, result: Result<Cid, Reason>) {
        self.written.push(Written {
            at: self.now,
            node,
            result,
        });
    }

    fn connect(&mut self, a: NodeId, b: NodeId) {
        self.handle(a, Event::PeerConnected(b));
        self.handle(b, Event::PeerConnected(a));
    }

    fn disconnect(&mut self, a: NodeId, b: NodeId) {
        self.handle(a, Event::PeerDisconnected(b));
        self.handle(b, Event::PeerDisconnected(a));
    }

    fn handle(&mut self, node: NodeId, event: Event<NodeId>) {
        let actions = self.nodes[node].driver.handle(event, self.now);
        self.apply(node, actions);
    }

    fn deliver(&mut self, from: NodeId, to: NodeId, payload: Payload) {
        if !self.connected(from, to) {
            self.stats.dropped += 1;
            return;
        }
        let msg = match payload {
            Payload::Gossip { id, bytes } => {
                let node = &mut self.nodes[to];
                if !node.gossip {
                    self.stats.dropped += 1;
                    return;
                }
                if self.config.seen_cache && !node.seen.insert(id) {
                    self.stats.suppressed += 1;
                    return;
                }
                node.stats.gossip_received += 1;
                Message::Op(bytes)
            }
            Payload::Wire(bytes) => match Message::decode(&bytes) {
                Ok(msg) => msg,
                Err(_) => {
                    self.stats.malformed += 1;
                    return;
                }
            },
        };
        if let Message::Ops(ops) = &msg {
            let stats = &mut self.nodes[to].stats;
            stats.ops_messages_received += 1;
            stats.ops_received += ops.len() as u64;
        }
        self.stats.delivered += 1;
        self.handle(to, Event::Message { from, msg });
    }

    fn apply(&mut self, node: NodeId, actions: Vec<Action<NodeId>>) {
        let mut applied = false;
        for action in actions {
            match action {
                Action::Publish(bytes) => {
                    if !self.nodes[node].online || !self.nodes[node].gossip {
                        continue;
                    }
                    let id = cids::cid_for_cbor(&bytes);
                    self.nodes[node].seen.insert(id);
                    for peer in self.neighbours(node) {
                        if self.connected(node, peer) {
                            self.send(
                                node,
                                peer,
                                Payload::Gossip {
                                    id,
                                    bytes: bytes.clone(),
                                },
                            );
                        } else {
                            self.stats.dropped += 1;
                        }
                    }
                }
                Action::Send { to, msg } => {
                    match &msg {
                        Message::Reconcile(_) => self.stats.reconciles += 1,
                        Message::ReconcileReply(_) => self.stats.reconcile_replies += 1,
                        Message::Want(_) => self.stats.wants += 1,
                        Message::Ops(_) => self.stats.ops += 1,
                        Message::Op(_) => {}
                    }
                    if self.connected(node, to) {
                        self.send(node, to, Payload::Wire(msg.encode()));
                    } else {
                        self.stats.dropped += 1;
                    }
                }
                Action::Applied(_) => applied = true,
                Action::Rejected { from, id, reason } => self.rejections.push(Rejection {
                    at: self.now,
                    node,
                    from,
                    id,
                    reason,
                }),
                Action::Penalise { peer, reason } => self.penalties.push(Penalty {
                    at: self.now,
                    node,
                    peer,
                    reason,
                }),
                Action::Deferred { .. } => self.stats.deferred += 1,
                Action::Wake { at_micros } => {
                    let at = at_micros.max(self.now);
                    self.nodes[node].wake = Some(at);
                    self.push(at, Scheduled::Tick(node));
                }
            }
        }
        if applied {
            self.heads[node] = self.nodes[node].driver.log().heads();
            self.changed = true;
        }
    }

    fn send(&mut self, from: NodeId, to: NodeId, payload: Payload) {
        self.stats.sent += 1;
        self.stats.bytes += match &payload {
            Payload::Gossip { bytes, .. } | Payload::Wire(bytes) => bytes.len() as u64,
        };
        if self.rng.chance(self.config.loss) {
            self.stats.lost += 1;
            return;
        }
        let base = self.links.get(&link(from, to)).copied().unwrap_or(0);
        let jitter = self.config.jitter_micros.max(0) as u64;
        let copy = if self.rng.chance(self.config.duplication) {
            self.stats.duplicated += 1;
            let delay = base + self.rng.below(jitter + 1) as i64;
            Some((
                delay,
                match &payload {
                    Payload::Gossip { id, bytes } => Payload::Gossip {
                        id: *id,
                        bytes: bytes.clone(),
                    },
                    Payload::Wire(bytes) => Payload::Wire(bytes.clone()),
                },
            ))
        } else {
            None
        };
        let delay = base + self.rng.below(jitter + 1) as i64;
        self.push(self.now + delay, Scheduled::Deliver { from, to, payload });
        if let Some((delay, payload)) = copy {
            self.push(self.now + delay, Scheduled::Deliver { from, to, payload });
        }
    }
}
