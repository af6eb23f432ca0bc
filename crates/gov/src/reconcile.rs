//! Range-based set reconciliation of op ids (protocol.md §5), with the `negentropy` crate.
//!
//! Each op of a log is one negentropy item: its timestamp is the op's `createdAt` in
//! microseconds since the Unix epoch (clamped at zero), its id the 32-byte SHA-256 digest of the
//! op's CID (every op id is a CIDv1 `dag-cbor` SHA-256 CID, so the digest gives the CID back:
//! [`cid_of`]). Items are ordered by timestamp, then id; because `createdAt` roughly follows
//! causality, the ids one side misses come out roughly parents first, and ranges of old ops
//! that both sides hold match on their fingerprints at once.
//!
//! [`OpSet`] keeps the items sorted as ops arrive (an op usually lands near the end), and
//! implements negentropy's storage trait over that vector. The three steps of an exchange are
//! pure functions of a set and a message: [`initiate`] (the initiator's first query),
//! [`answer`] (the responder, stateless: one reply per query) and [`step`] (the initiator reads
//! a reply, learns the ids it has and the peer lacks and those it lacks, and gets the next
//! query, or `None` when the sets are reconciled). Frames are bounded by [`FRAME_LIMIT`].
//!
//! Messages come from peers: every step returns a typed [`ReconcileError`] on malformed
//! input, and a panic inside the protocol code (none is known; this is defence in depth) is
//! caught and reported as [`ReconcileError::Panicked`].

use std::panic::{AssertUnwindSafe, catch_unwind};

use guild_core::{Cid, cids};
use negentropy::{Bound, Id, Item, Negentropy, NegentropyStorageBase};

use crate::op::SignedOp;
use guild_core::chunked::Chunked;

/// The largest negentropy frame this node builds, in bytes (the crate's frame size limit).
/// A reply names at most about `FRAME_LIMIT / 32` ids.
pub const FRAME_LIMIT: u64 = 256 * 1024;

/// Why a reconciliation message could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReconcileError {
    /// The negentropy protocol code refused the message (malformed, wrong version, bad range).
    #[error("negentropy: {0}")]
    Protocol(String),
    /// The protocol code panicked on the message.
    #[error("negentropy panicked on a peer's message")]
    Panicked,
}

impl From<negentropy::Error> for ReconcileError {
    fn from(e: negentropy::Error) -> ReconcileError {
        ReconcileError::Protocol(format!("{e:?}"))
    }
}

/// The negentropy item of an op: (`createdAt` in µs, the digest of its CID).
pub fn item_of(op: &SignedOp) -> Item {
    let micros = op.created_at().to_unix_micros().max(0) as u64;
    Item::with_timestamp_and_id(micros, Id::from_byte_array(digest_of(op.id())))
}

/// The SHA-256 digest inside an op id.
pub fn digest_of(id: &Cid) -> [u8; 32] {
    let mut out = [0u8; 32];
    let digest = id.hash().digest();
    let n = digest.len().min(32);
    out[..n].copy_from_slice(&digest[..n]);
    out
}

/// The op id (CIDv1, `dag-cbor`, SHA-256) whose digest is `id`.
pub fn cid_of(id: &Id) -> Cid {
    cids::cid_from_digest(cids::DAG_CBOR, id.as_bytes())
}

/// A log's op ids as negentropy items, sorted and without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpSet {
    /// In chunks: a node's set grows by one chunk, not by a copy of a million items.
    items: Chunked<Item>,
}

impl OpSet {
    /// An empty set.
    pub fn new() -> OpSet {
        OpSet::default()
    }

    /// The set of these ops.
    pub fn from_ops<'a>(ops: impl IntoIterator<Item = &'a SignedOp>) -> OpSet {
        OpSet::sorted(ops.into_iter().map(item_of).collect())
    }

    /// The set of a log's ops (read from the log's index: no op is decoded).
    pub fn from_log(log: &crate::Log) -> OpSet {
        OpSet::sorted(
            log.times_and_digests()
                .map(|(micros, d)| {
                    Item::with_timestamp_and_id(micros.max(0) as u64, Id::from_byte_array(d))
                })
                .collect(),
        )
    }

    /// A set of raw items: (timestamp in µs, 32-byte id) pairs, in any order (for tests,
    /// fuzzing and benchmarks; a node builds its set from ops).
    pub fn from_items(items: impl IntoIterator<Item = (u64, [u8; 32])>) -> OpSet {
        OpSet::sorted(
            items
                .into_iter()
                .map(|(t, id)| Item::with_timestamp_and_id(t, Id::from_byte_array(id)))
                .collect(),
        )
    }

    fn sorted(mut items: Vec<Item>) -> OpSet {
        items.sort_unstable();
        items.dedup();
        OpSet {
            items: items.into_iter().collect(),
        }
    }

    /// Adds an op's item (no change if it is there already).
    pub fn insert(&mut self, op: &SignedOp) {
        self.insert_item(item_of(op));
    }

    fn insert_item(&mut self, item: Item) {
        // Ops mostly arrive in createdAt order: look from the end first.
        if self.items.last().is_none_or(|last| *last < item) {
            self.items.push(item);
            return;
        }
        if let Err(at) = self.items.binary_search(&item) {
            self.items.insert(at, item);
        }
    }

    /// How many items the set holds.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True if the set is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl NegentropyStorageBase for OpSet {
    fn size(&self) -> Result<usize, negentropy::Error> {
        Ok(self.items.len())
    }

    fn get_item(&self, i: usize) -> Result<Option<Item>, negentropy::Error> {
        Ok(self.items.get(i).copied())
    }

    fn iterate(
        &self,
        begin: usize,
        end: usize,
        cb: &mut dyn FnMut(Item, usize) -> Result<bool, negentropy::Error>,
    ) -> Result<(), negentropy::Error> {
        if begin > end || end > self.items.len() {
            return Err(negentropy::Error::BadRange);
        }
        for (i, item) in self.items.range(begin, end).enumerate() {
            if !cb(*item, begin + i)? {
                break;
            }
        }
        Ok(())
    }

    fn find_lower_bound(&self, first: usize, last: usize, value: &Bound) -> usize {
        let last = last.min(self.items.len());
        let first = first.min(last);
        self.items
            .partition_point(first, last, |item| *item < value.item)
    }
}

fn guarded<T>(f: impl FnOnce() -> Result<T, negentropy::Error>) -> Result<T, ReconcileError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result.map_err(ReconcileError::from),
        Err(_) => Err(ReconcileError::Panicked),
    }
}

/// The initiator's first query over its set.
pub fn initiate(set: &OpSet) -> Result<Vec<u8>, ReconcileError> {
    guarded(|| Negentropy::borrowed(set, FRAME_LIMIT)?.initiate())
}

/// The responder's reply to one query (stateless).
pub fn answer(set: &OpSet, query: &[u8]) -> Result<Vec<u8>, ReconcileError> {
    guarded(|| Negentropy::borrowed(set, FRAME_LIMIT)?.reconcile(query))
}

/// What one reply taught the initiator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// Ops this side has and the peer lacks, in the set's order (by `createdAt`).
    pub have: Vec<Cid>,
    /// Ops the peer has and this side lacks, in the order of their ids' digests.
    pub need: Vec<Cid>,
    /// The next query, or `None` once the sets are reconciled.
    pub next: Option<Vec<u8>>,
}

/// The initiator reads a reply (over the same set it initiated with).
pub fn step(set: &OpSet, reply: &[u8]) -> Result<Step, ReconcileError> {
    let (mut have, mut need) = (Vec::new(), Vec::new());
    let next = guarded(|| {
        let mut neg = Negentropy::borrowed(set, FRAME_LIMIT)?;
        neg.set_initiator();
        neg.reconcile_with_ids(reply, &mut have, &mut need)
    })?;
    // `negentropy` collects the ids this side lacks through a `std` hash set, so they come out
    // in an order that differs from process to process: sorted, a node asks for them in the
    // same order every time (and a seeded simulation is the same run in every process).
    need.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(Step {
        have: have.iter().map(cid_of).collect(),
        need: need.iter().map(cid_of).collect(),
        next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_of(items: &[(u64, u8)]) -> OpSet {
        OpSet::from_items(items.iter().map(|(t, b)| (*t, [*b; 32])))
    }

    /// Runs a whole exchange; returns (have, need) as the initiator learnt them.
    fn run(a: &OpSet, b: &OpSet) -> (Vec<Cid>, Vec<Cid>, usize) {
        let mut query = initiate(a).unwrap();
        let (mut have, mut need, mut rounds) = (Vec::new(), Vec::new(), 0);
        loop {
            rounds += 1;
            let reply = answer(b, &query).unwrap();
            let s = step(a, &reply).unwrap();
            have.extend(s.have);
            need.extend(s.need);
            match s.next {
                Some(q) => query = q,
                None => break,
            }
            assert!(rounds < 100);
        }
        have.sort_by_key(|c| c.to_bytes());
        need.sort_by_key(|c| c.to_bytes());
        (have, need, rounds)
    }

    fn cid(b: u8) -> Cid {
        cid_of(&Id::from_byte_array([b; 32]))
    }

    #[test]
    fn finds_both_differences() {
        let a = set_of(&[(1, 1), (2, 2), (3, 3), (5, 5)]);
        let b = set_of(&[(1, 1), (3, 3), (4, 4), (6, 6)]);
        let (have, need, _) = run(&a, &b);
        let mut want_have = vec![cid(2), cid(5)];
        want_have.sort_by_key(|c| c.to_bytes());
        let mut want_need = vec![cid(4), cid(6)];
        want_need.sort_by_key(|c| c.to_bytes());
        assert_eq!(have, want_have);
        assert_eq!(need, want_need);
    }

    #[test]
    fn large_sets_take_several_frames() {
        // 20 000 items on one side, none on the other: more ids than one frame holds.
        let mut a = OpSet::new();
        for i in 0..20_000u64 {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&i.to_be_bytes());
            a.items.push(Item::with_timestamp_and_id(
                1000 + i,
                Id::from_byte_array(id),
            ));
        }
        let b = OpSet::new();
        let (_, need, rounds) = run(&b, &a);
        assert_eq!(need.len(), 20_000);
        assert!(rounds > 1, "one frame cannot name 20 000 ids");
        let (have, _, _) = run(&a, &b);
        assert_eq!(have.len(), 20_000);
    }

    #[test]
    fn what_a_step_finds_missing_comes_in_digest_order() {
        // The same reply gives the same list, whatever order negentropy's hash set holds the
        // ids in (a seeded simulation is then the same run in every process).
        let a = OpSet::from_items((0..3_000u64).map(|i| {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
            (1_000 + i, id)
        }));
        let b = OpSet::new();
        let mut query = initiate(&b).unwrap();
        let mut needed = 0;
        for _ in 0..100 {
            let s = step(&b, &answer(&a, &query).unwrap()).unwrap();
            let digests: Vec<[u8; 32]> = s.need.iter().map(digest_of).collect();
            assert!(digests.windows(2).all(|w| w[0] < w[1]), "sorted, each once");
            needed += s.need.len();
            match s.next {
                Some(q) => query = q,
                None => break,
            }
        }
        assert_eq!(needed, 3_000);
    }

    #[test]
    fn insert_keeps_order_and_dedups() {
        let mut s = OpSet::new();
        for (t, b) in [(5u64, 5u8), (1, 1), (3, 3), (5, 5), (9, 9)] {
            s.insert_item(Item::with_timestamp_and_id(t, Id::from_byte_array([b; 32])));
        }
        assert_eq!(s.len(), 4);
        let v: Vec<Item> = s.items.iter().copied().collect();
        assert!(v.windows(2).all(|w| w[0] < w[1]));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Any two sets (from a shared universe with clustered timestamps): the exchange finds
        /// exactly A \ B as "have" and B \ A as "need".
        #[test]
        fn reconciles_any_two_sets(
            universe in proptest::collection::vec((0u64..50, proptest::prelude::any::<[u8; 4]>()), 0..600),
            in_a in proptest::collection::vec(proptest::prelude::any::<bool>(), 600),
            in_b in proptest::collection::vec(proptest::prelude::any::<bool>(), 600),
        ) {
            let item = |(t, b): &(u64, [u8; 4])| {
                let mut id = [0u8; 32];
                id[..4].copy_from_slice(b);
                Item::with_timestamp_and_id(*t, Id::from_byte_array(id))
            };
            let (mut a, mut b) = (OpSet::new(), OpSet::new());
            let (mut only_a, mut only_b) = (std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
            let mut seen = std::collections::BTreeSet::new();
            for (i, u) in universe.iter().enumerate() {
                let it = item(u);
                if !seen.insert(it) {
                    continue;
                }
                if in_a[i] { a.insert_item(it); }
                if in_b[i] { b.insert_item(it); }
                if in_a[i] && !in_b[i] { only_a.insert(cid_of(&it.id).to_bytes()); }
                if in_b[i] && !in_a[i] { only_b.insert(cid_of(&it.id).to_bytes()); }
            }
            let (have, need, _) = run(&a, &b);
            let have: std::collections::BTreeSet<Vec<u8>> = have.iter().map(|c| c.to_bytes()).collect();
            let need: std::collections::BTreeSet<Vec<u8>> = need.iter().map(|c| c.to_bytes()).collect();
            proptest::prop_assert_eq!(have, only_a);
            proptest::prop_assert_eq!(need, only_b);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let a = set_of(&[(1, 1), (2, 2)]);
        for bad in [
            &b""[..],
            &[0x61][..],
            &[0x61, 0xff, 0xff, 0xff][..],
            &[
                0x61, 0x00, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f,
            ][..],
            &[0x10, 1, 2, 3][..],
        ] {
            let _ = answer(&a, bad);
            let _ = step(&a, bad);
        }
        assert!(answer(&a, b"").is_err());
    }
}
