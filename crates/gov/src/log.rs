//! The op log: a grow-only causal DAG of authorised ops, a bounded buffer of ops waiting for
//! their parents, and the state folded from any causal cut.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};

use guild_core::Cid;

use crate::op::{OpKind, SignedOp};
use crate::state::{Reason, State};

/// How many ops wait for missing parents, by default (at most 64 MiB of ops).
pub const DEFAULT_PENDING_LIMIT: usize = 1024;

/// How long an op waits for missing parents, by default, in microseconds (one hour).
pub const DEFAULT_PENDING_TTL_MICROS: i64 = 3_600_000_000;

/// How many rejected op ids the log remembers, so that a re-sent bad op is refused without
/// folding its past again. A rejection is final: it depends on the op's causal past only.
pub const REJECTED_MEMORY: usize = 4096;

/// What [`Log::insert`] did with an op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// Authorised against its causal past and added.
    Applied,
    /// Some parents are unknown; the op waits in the pending buffer.
    Pending {
        /// The unknown parents.
        missing: Vec<Cid>,
    },
    /// Not authorised, or not valid; not added and not to be relayed.
    Rejected(Reason),
    /// Already in the log.
    Duplicate,
}

#[derive(Debug, Clone)]
struct Waiting {
    op: SignedOp,
    arrived_micros: i64,
}

/// A collective's op log.
#[derive(Debug, Clone)]
pub struct Log {
    collective: Cid,
    ops: HashMap<Cid, SignedOp>,
    children: HashMap<Cid, Vec<Cid>>,
    heads: BTreeSet<Cid>,
    pending: BTreeMap<u64, Waiting>,
    pending_index: HashMap<Cid, u64>,
    next_seq: u64,
    pending_limit: usize,
    pending_ttl_micros: i64,
    released: Vec<Cid>,
    rejected: HashMap<Cid, Reason>,
    rejected_order: VecDeque<Cid>,
    /// The state of the whole log, when known without a fold (kept while ops arrive in a
    /// line: each op's `prev` is all the current heads).
    tip: Option<State>,
}

impl Log {
    /// An empty log of the collective whose genesis charter has id `collective`.
    pub fn new(collective: Cid) -> Log {
        Log {
            collective,
            ops: HashMap::new(),
            children: HashMap::new(),
            heads: BTreeSet::new(),
            pending: BTreeMap::new(),
            pending_index: HashMap::new(),
            next_seq: 0,
            pending_limit: DEFAULT_PENDING_LIMIT,
            pending_ttl_micros: DEFAULT_PENDING_TTL_MICROS,
            released: Vec::new(),
            rejected: HashMap::new(),
            rejected_order: VecDeque::new(),
            tip: None,
        }
    }

    /// Sets the pending buffer's bounds: at most `limit` ops, each waiting at most
    /// `ttl_micros`; past either, the oldest are evicted first.
    pub fn with_pending_bounds(mut self, limit: usize, ttl_micros: i64) -> Log {
        self.pending_limit = limit;
        self.pending_ttl_micros = ttl_micros;
        self
    }

    /// The collective's id.
    pub fn collective(&self) -> &Cid {
        &self.collective
    }

    /// How many ops the log holds (pending ops excluded).
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True if the log holds no op.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// How many ops wait for parents.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// An op of the log by id.
    pub fn get(&self, id: &Cid) -> Option<&SignedOp> {
        self.ops.get(id)
    }

    /// Decodes untrusted bytes and inserts the op; bytes that do not decode are rejected.
    pub fn insert_bytes(&mut self, bytes: &[u8], now_micros: i64) -> Inserted {
        match SignedOp::decode(bytes) {
            Ok(op) => self.insert(op, now_micros),
            Err(e) => Inserted::Rejected(Reason::Invalid(e)),
        }
    }

    /// Inserts an op received or created at `now_micros`. An op whose parents are all known
    /// is authorised against the state of its causal past and added, and any pending op it
    /// completes follows; an op with unknown parents waits.
    pub fn insert(&mut self, op: SignedOp, now_micros: i64) -> Inserted {
        self.expire(now_micros);
        if self.ops.contains_key(op.id()) {
            return Inserted::Duplicate;
        }
        if let Some(reason) = self.rejected.get(op.id()) {
            return Inserted::Rejected(reason.clone());
        }
        let right_collective = match op.kind() {
            OpKind::Charter => *op.id() == self.collective,
            _ => op.collective() == Some(&self.collective),
        };
        if !right_collective {
            return Inserted::Rejected(Reason::WrongCollective);
        }
        let missing: Vec<Cid> = op
            .prev()
            .iter()
            .filter(|p| !self.ops.contains_key(p))
            .copied()
            .collect();
        if !missing.is_empty() {
            if !self.pending_index.contains_key(op.id()) {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.pending_index.insert(*op.id(), seq);
                self.pending.insert(
                    seq,
                    Waiting {
                        op,
                        arrived_micros: now_micros,
                    },
                );
                while self.pending.len() > self.pending_limit {
                    self.evict_oldest();
                }
            }
            return Inserted::Pending { missing };
        }
        match self.accept(op) {
            Ok(()) => {
                self.release();
                Inserted::Applied
            }
            Err(reason) => Inserted::Rejected(reason),
        }
    }

    fn remember_rejection(&mut self, id: Cid, reason: &Reason) {
        if self.rejected.insert(id, reason.clone()).is_none() {
            self.rejected_order.push_back(id);
        }
        while self.rejected_order.len() > REJECTED_MEMORY {
            if let Some(old) = self.rejected_order.pop_front() {
                self.rejected.remove(&old);
            }
        }
    }

    fn evict_oldest(&mut self) {
        if let Some((_, w)) = self.pending.pop_first() {
            self.pending_index.remove(w.op.id());
        }
    }

    fn expire(&mut self, now_micros: i64) {
        while let Some((_, w)) = self.pending.first_key_value() {
            if now_micros.saturating_sub(w.arrived_micros) > self.pending_ttl_micros {
                self.evict_oldest();
            } else {
                break;
            }
        }
    }

    /// Authorises an op whose parents are all present, and adds it.
    ///
    /// When the op's parents are exactly the current heads, every op of the log is in its
    /// causal past and none is concurrent with it, so the state of its past is the state of
    /// the whole log and folding the log with it is applying it last: the cached state is
    /// used and advanced. Otherwise the state of its past is folded, and the cache dropped.
    fn accept(&mut self, op: SignedOp) -> Result<(), Reason> {
        let id = *op.id();
        let result = self.accept_inner(op);
        if let Err(reason) = &result {
            self.remember_rejection(id, reason);
        }
        result
    }

    fn accept_inner(&mut self, op: SignedOp) -> Result<(), Reason> {
        let linear = !self.ops.is_empty()
            && op.prev().len() == self.heads.len()
            && op.prev().iter().all(|p| self.heads.contains(p));
        if linear {
            let mut state = match self.tip.take() {
                Some(state) => state,
                None => self.state(),
            };
            let checked = state.authorize(&op);
            if checked.is_ok() {
                state.apply(&op, &|_, _| true);
            }
            self.tip = Some(state);
            checked?;
        } else {
            let state = self.state_at(op.prev());
            state.authorize(&op)?;
            self.tip = None;
        }
        let id = *op.id();
        for p in op.prev() {
            self.heads.remove(p);
            self.children.entry(*p).or_default().push(id);
        }
        self.heads.insert(id);
        self.ops.insert(id, op);
        Ok(())
    }

    /// Moves every pending op whose parents have all arrived into the log (or drops it, if
    /// rejected), until none is left to move.
    fn release(&mut self) {
        loop {
            let ready: Vec<u64> = self
                .pending
                .iter()
                .filter(|(_, w)| w.op.prev().iter().all(|p| self.ops.contains_key(p)))
                .map(|(seq, _)| *seq)
                .collect();
            if ready.is_empty() {
                return;
            }
            for seq in ready {
                if let Some(w) = self.pending.remove(&seq) {
                    self.pending_index.remove(w.op.id());
                    let id = *w.op.id();
                    // A rejected pending op is dropped, as it would have been on arrival.
                    if !self.ops.contains_key(&id) && self.accept(w.op).is_ok() {
                        self.released.push(id);
                    }
                }
            }
        }
    }

    /// The ids of the pending ops that entered the log since the last call, in the order
    /// they entered (for relaying them).
    pub fn drain_released(&mut self) -> Vec<Cid> {
        std::mem::take(&mut self.released)
    }

    /// Every op's signed bytes, parents first: what a store keeps. [`Log::load`] reads it
    /// back.
    pub fn export(&self) -> Vec<&[u8]> {
        self.ops_in_order()
            .into_iter()
            .map(SignedOp::bytes)
            .collect()
    }

    /// Rebuilds a log from stored op bytes (any order). Every op is checked again; ops that
    /// do not decode, are not authorised or stay without parents are left out.
    pub fn load<'a>(collective: Cid, ops: impl IntoIterator<Item = &'a [u8]>) -> Log {
        let mut log = Log::new(collective);
        for bytes in ops {
            log.insert_bytes(bytes, 0);
        }
        log.pending.clear();
        log.pending_index.clear();
        log.released.clear();
        log
    }

    /// The heads of the DAG, in CID order.
    pub fn heads(&self) -> Vec<Cid> {
        self.heads.iter().copied().collect()
    }

    /// The known ops in the causal past of `heads`, the heads included (unknown heads are
    /// ignored).
    pub fn ancestors(&self, heads: &[Cid]) -> HashSet<Cid> {
        let mut seen = HashSet::new();
        let mut stack: Vec<Cid> = heads
            .iter()
            .filter(|h| self.ops.contains_key(h))
            .copied()
            .collect();
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            if let Some(op) = self.ops.get(&id) {
                stack.extend(op.prev().iter().filter(|p| !seen.contains(p)).copied());
            }
        }
        seen
    }

    /// True if `a` is a strict ancestor of `b`.
    pub fn is_ancestor(&self, a: &Cid, b: &Cid) -> bool {
        if a == b {
            return false;
        }
        let Some(op) = self.ops.get(b) else {
            return false;
        };
        self.ancestors(op.prev()).contains(a)
    }

    /// The ops not in the causal past of `heads`, parents first.
    pub fn ops_since(&self, heads: &[Cid]) -> Vec<&SignedOp> {
        let known = self.ancestors(heads);
        let rest: HashSet<Cid> = self
            .ops
            .keys()
            .filter(|id| !known.contains(id))
            .copied()
            .collect();
        self.topo_order(&rest)
            .iter()
            .filter_map(|id| self.ops.get(id))
            .collect()
    }

    /// Every op, parents first, ties broken by CID bytes.
    pub fn ops_in_order(&self) -> Vec<&SignedOp> {
        let all: HashSet<Cid> = self.ops.keys().copied().collect();
        self.topo_order(&all)
            .iter()
            .filter_map(|id| self.ops.get(id))
            .collect()
    }

    /// Deterministic topological order of a set of known ops: parents first, ties broken
    /// by the CIDs' bytes. Parents outside the set are ignored.
    pub fn topo_order(&self, set: &HashSet<Cid>) -> Vec<Cid> {
        let mut indegree: HashMap<Cid, usize> = HashMap::with_capacity(set.len());
        let mut ready = BinaryHeap::new();
        for id in set {
            let n = self
                .ops
                .get(id)
                .map_or(0, |op| op.prev().iter().filter(|p| set.contains(p)).count());
            if n == 0 {
                ready.push(Reverse((id.to_bytes(), *id)));
            } else {
                indegree.insert(*id, n);
            }
        }
        let mut order = Vec::with_capacity(set.len());
        while let Some(Reverse((_, id))) = ready.pop() {
            order.push(id);
            for child in self.children.get(&id).into_iter().flatten() {
                if let Some(n) = indegree.get_mut(child) {
                    *n -= 1;
                    if *n == 0 {
                        indegree.remove(child);
                        ready.push(Reverse((child.to_bytes(), *child)));
                    }
                }
            }
        }
        order
    }

    /// The state of the whole log.
    pub fn state(&self) -> State {
        if let Some(tip) = &self.tip {
            return tip.clone();
        }
        let all: HashSet<Cid> = self.ops.keys().copied().collect();
        self.fold(&all)
    }

    /// The state at a causal cut: folded from the ops in the causal past of `heads` only.
    pub fn state_at(&self, heads: &[Cid]) -> State {
        self.fold(&self.ancestors(heads))
    }

    /// Folds an ancestor-closed set of ops in topological order.
    ///
    /// First, the removals are visited in that order: each removal not itself suppressed
    /// suppresses every op of the removed member that is neither in its causal past nor in
    /// its future (removal wins over concurrent ops; of two concurrent removals of each
    /// other's authors, the first in the order wins). Then each op that is not suppressed
    /// applies if it is authorised against the running state (so, of concurrent joins with
    /// one invite, the first admits and the others are ignored). The result depends on the
    /// set alone. A removal suppresses even if a later removal in the order suppresses it in
    /// turn: when removals conflict, more is ignored rather than less.
    fn fold(&self, set: &HashSet<Cid>) -> State {
        let order = self.topo_order(set);
        let mut suppressed: HashSet<Cid> = HashSet::new();
        for id in &order {
            let Some(op) = self.ops.get(id) else { continue };
            if op.kind() != OpKind::Remove || suppressed.contains(id) {
                continue;
            }
            let removed = op.str_field("member").unwrap_or_default();
            let past = self.ancestors(op.prev());
            let future = self.descendants(id, set);
            for other in &order {
                if other != id
                    && !past.contains(other)
                    && !future.contains(other)
                    && self.ops.get(other).is_some_and(|o| o.author() == removed)
                {
                    suppressed.insert(*other);
                }
            }
        }
        let is_ancestor = |a: &Cid, b: &Cid| self.is_ancestor(a, b);
        let mut state = State::new(self.collective);
        for id in &order {
            if suppressed.contains(id) {
                continue;
            }
            let Some(op) = self.ops.get(id) else { continue };
            if state.authorize(op).is_ok() {
                state.apply(op, &is_ancestor);
            }
        }
        state
    }

    /// The strict descendants of `id` within `set`.
    fn descendants(&self, id: &Cid, set: &HashSet<Cid>) -> HashSet<Cid> {
        let mut seen = HashSet::new();
        let mut stack: Vec<Cid> = self.children.get(id).cloned().unwrap_or_default();
        while let Some(c) = stack.pop() {
            if !set.contains(&c) || !seen.insert(c) {
                continue;
            }
            stack.extend(self.children.get(&c).into_iter().flatten().copied());
        }
        seen
    }
}
