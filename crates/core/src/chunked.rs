//! A sequence kept in chunks of [`CHUNK`] items: indexed like a vector (every chunk but the
//! last is full), grown one chunk at a time. The governance log's order and indexes, its
//! reconciliation set and the in-memory store's ops are such sequences of up to a million
//! items; in one `Vec` each would reallocate and copy the whole
//! sequence when it outgrows its capacity (and hold up to as much again in spare capacity),
//! which every node of a collective does at the same op. Here growing allocates one chunk.
//! An insertion shifts the items after it within its chunk and carries one item into each
//! later chunk: cheap near the end, where the log's inserts land.
//!
//! Chunks are shared between copies: cloning a sequence copies one pointer per chunk, and a
//! copy's first change to a chunk copies that chunk alone (`Arc::make_mut`). A node hands
//! out copies of its logs (`Engine::log`): a million-op log's indexes were ~100 MB to copy.

use std::sync::Arc;

/// Items per chunk.
pub const CHUNK: usize = 1024;

/// See the module documentation. Equal sequences have equal chunks (all full but the last).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunked<T> {
    chunks: Vec<Arc<Vec<T>>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    /// An empty sequence.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many items it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The item at `i`.
    pub fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i / CHUNK)?.get(i % CHUNK)
    }

    /// The last item.
    pub fn last(&self) -> Option<&T> {
        self.chunks.last()?.last()
    }

    /// The items in order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// The items at `begin..end` (clamped to the length), in order.
    pub fn range(&self, begin: usize, end: usize) -> impl Iterator<Item = &T> {
        let end = end.min(self.len);
        let begin = begin.min(end);
        self.chunks
            .get(begin / CHUNK..)
            .unwrap_or_default()
            .iter()
            .flat_map(|c| c.iter())
            .skip(begin % CHUNK)
            .take(end - begin)
    }
}

impl<T: Clone> Chunked<T> {
    /// The item at `i`, to change (its chunk copied first if a copy of the sequence shares it).
    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        Arc::make_mut(self.chunks.get_mut(i / CHUNK)?).get_mut(i % CHUNK)
    }

    /// Appends an item.
    pub fn push(&mut self, item: T) {
        match self.chunks.last_mut() {
            Some(last) if last.len() < CHUNK => {
                let last = Arc::make_mut(last);
                grow(last);
                last.push(item);
            }
            _ => {
                // A chunk grows by doubling up to CHUNK (a power of two), so a small
                // sequence holds no more spare room than a vector would.
                self.chunks.push(Arc::new(vec![item]));
            }
        }
        self.len += 1;
    }

    /// Inserts an item at `at`, shifting the later ones up by one; past the end, appends.
    pub fn insert(&mut self, at: usize, item: T) {
        if at >= self.len {
            self.push(item);
            return;
        }
        let (mut c, mut i) = (at / CHUNK, at % CHUNK);
        let mut carry = item;
        while let Some(chunk) = self.chunks.get_mut(c) {
            let chunk = Arc::make_mut(chunk);
            if chunk.len() < CHUNK {
                grow(chunk);
                chunk.insert(i, carry);
                self.len += 1;
                return;
            }
            // Full: the last item moves on to the front of the next chunk.
            let Some(last) = chunk.pop() else {
                return;
            };
            chunk.insert(i, carry);
            carry = last;
            c += 1;
            i = 0;
        }
        // Every chunk from `at` on was full: the carried item starts a new one.
        self.push(carry);
    }
}

/// Makes room for one more item in a chunk that is not full: double its room, up to
/// [`CHUNK`]. (A chunk copied from a shared one has no spare room, and `Vec`'s own growth
/// would take it past `CHUNK`.)
fn grow<T>(chunk: &mut Vec<T>) {
    if chunk.len() == chunk.capacity() {
        let room = (chunk.len() * 2).clamp(1, CHUNK);
        chunk.reserve_exact(room.saturating_sub(chunk.len()));
    }
}

impl<T> Chunked<T> {
    /// The first index in `first..last` (clamped) whose item fails `pred`, given that the
    /// items there that satisfy it all come first (as [`slice::partition_point`]).
    pub fn partition_point(
        &self,
        first: usize,
        last: usize,
        mut pred: impl FnMut(&T) -> bool,
    ) -> usize {
        let (mut lo, mut hi) = (first.min(self.len), last.min(self.len));
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid) {
                Some(x) if pred(x) => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo
    }
}

impl<T: Ord> Chunked<T> {
    /// Where `item` is (`Ok`) or would go (`Err`), the items being sorted.
    pub fn binary_search(&self, item: &T) -> Result<usize, usize> {
        let at = self.partition_point(0, self.len, |x| x < item);
        match self.get(at) {
            Some(x) if x == item => Ok(at),
            _ => Err(at),
        }
    }
}

impl<T> std::ops::Index<usize> for Chunked<T> {
    type Output = T;

    fn index(&self, i: usize) -> &T {
        &self.chunks[i / CHUNK][i % CHUNK]
    }
}

impl<T: Clone> FromIterator<T> for Chunked<T> {
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Self {
        let mut out = Chunked::new();
        for x in items {
            out.push(x);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any mix of pushes and inserts gives the vector the same operations give, and every
        /// accessor agrees with the vector's.
        #[test]
        fn behaves_as_a_vector(
            ops in proptest::collection::vec((any::<bool>(), any::<usize>(), any::<u32>()), 0..3000),
            probes in proptest::collection::vec((any::<usize>(), any::<usize>()), 1..20),
        ) {
            let mut v: Vec<u32> = Vec::new();
            let mut c: Chunked<u32> = Chunked::new();
            for (push, at, x) in ops {
                if push {
                    v.push(x);
                    c.push(x);
                } else {
                    let at = at % (v.len() + 1);
                    v.insert(at, x);
                    c.insert(at, x);
                }
            }
            prop_assert_eq!(c.len(), v.len());
            prop_assert_eq!(c.last(), v.last());
            prop_assert_eq!(c.iter().copied().collect::<Vec<_>>(), v.clone());
            for (i, x) in v.iter().enumerate() {
                prop_assert_eq!(c[i], *x);
            }
            prop_assert_eq!(c.get(v.len()), None);
            let mut sorted = v.clone();
            sorted.sort_unstable();
            let s: Chunked<u32> = sorted.iter().copied().collect();
            for (a, b) in probes {
                let (a, b) = (a % (v.len() + 2), b % (v.len() + 2));
                let want: Vec<u32> = v.get(a.min(b.min(v.len()))..b.min(v.len())).unwrap_or(&[]).to_vec();
                prop_assert_eq!(c.range(a, b).copied().collect::<Vec<_>>(), want);
                let key = v.get(a).copied().unwrap_or(7);
                prop_assert_eq!(s.binary_search(&key).is_ok(), sorted.binary_search(&key).is_ok());
                let lo = a.min(b).min(sorted.len());
                let hi = b.min(sorted.len()).max(lo);
                prop_assert_eq!(
                    s.partition_point(lo, hi, |x| *x < key),
                    lo + sorted[lo..hi].partition_point(|x| *x < key)
                );
            }
        }
    }

    /// A copy shares its chunks until one side changes one: then that chunk alone is copied,
    /// and neither side sees the other's change.
    #[test]
    fn copies_share_chunks_until_changed() {
        let mut a: Chunked<u32> = (0..3 * CHUNK as u32).collect();
        let b = a.clone();
        assert!(
            a.chunks
                .iter()
                .zip(&b.chunks)
                .all(|(x, y)| Arc::ptr_eq(x, y))
        );
        *a.get_mut(CHUNK + 1).unwrap() = 7;
        a.push(9);
        a.insert(5, 11);
        assert_eq!(b.len(), 3 * CHUNK);
        assert_eq!(b[CHUNK + 1], CHUNK as u32 + 1);
        assert_eq!(b[5], 5);
        assert_eq!(a[CHUNK + 2], 7);
        assert_eq!(a[5], 11);
        assert_eq!(a.len(), 3 * CHUNK + 2);
        let c = a.clone();
        *a.get_mut(0).unwrap() = 1;
        assert!(Arc::ptr_eq(&a.chunks[3], &c.chunks[3]));
        assert!(!Arc::ptr_eq(&a.chunks[0], &c.chunks[0]));
        assert_eq!(c[0], 0);
        // A copied chunk grows to CHUNK items' room, no more.
        let mut d: Chunked<u32> = (0..CHUNK as u32 + 3).collect();
        let e = d.clone();
        for x in 0..CHUNK as u32 - 3 {
            d.push(x);
        }
        assert_eq!(d.chunks.len(), 2);
        assert!(d.chunks.iter().all(|k| k.capacity() == CHUNK));
        assert_eq!(e.len(), CHUNK + 3);
    }

    #[test]
    fn a_full_sequence_grows_by_one_chunk() {
        let mut c: Chunked<u8> = (0..3 * CHUNK).map(|i| i as u8).collect();
        c.insert(5, 9);
        assert_eq!(c.len(), 3 * CHUNK + 1);
        assert_eq!(c.chunks.len(), 4);
        assert!(
            c.chunks[..3]
                .iter()
                .all(|k| k.len() == CHUNK && k.capacity() == CHUNK)
        );
        assert_eq!(c[5], 9);
        assert_eq!(c[3 * CHUNK], ((3 * CHUNK - 1) as u8));
    }
}
