//! Exact KNN-Shapley and leave-one-out of every training point.
//!
//! The utility is Jia et al.'s (PVLDB 2019): for one evaluation point `y` and a set `S`,
//! `U(S) = (1/K) Σ_{k ≤ min(K, |S|)} 1[label of the k-th nearest point of S = label of y]`,
//! averaged over the evaluation set; `U(∅) = 0`.
//!
//! **Without a baseline** the values are Jia's recursion: sort the training points by
//! distance, farthest `α_N`, then `s(α_N) = 1[y_{α_N} = y]/N` and
//! `s(α_i) = s(α_{i+1}) + (1[y_{α_i} = y] − 1[y_{α_{i+1}} = y])/K · min(K, i)/i`.
//!
//! **With a baseline** `B` (points always present, such as the commons) the game is
//! `v(S) = U(B ∪ S) − U(B)` over the training points. This crate computes it (and the plain
//! game, which is the case `B = ∅`) from one decomposition: `K·U(B ∪ S)` is a sum over the
//! points `j` of `B ∪ S` of `a_j · 1[j is among the K nearest of B ∪ S]`, and each term is a
//! threshold game whose Shapley values have a closed form. For a training point `j` with `m_j`
//! training and `b_j` baseline points nearer, and `t_j = K − b_j`: `j` itself gets
//! `a_j · min(t_j, m_j + 1)/(m_j + 1)` and each of the `m_j` nearer training points gets
//! `−a_j · t_j / ((m_j + 1) m_j)` when `m_j ≥ t_j` (else nothing); for a baseline point `j` with
//! `q_j` training and `r_j` baseline points nearer and `t_j = K − r_j > 0`, each of the `q_j`
//! nearer training points gets `−a_j / q_j` when `q_j ≥ t_j`. A point with `t_j ≤ 0` plays no
//! part. One pass from the farthest point with a running sum gives every value in `O(N)` after
//! the sort; without a baseline it reduces to Jia's recursion, and both are tested against
//! enumeration of every subset ([`crate::reference`]).

use std::borrow::Cow;

use rayon::prelude::*;

use crate::distance::{Prepared, same_dim};
use crate::{Backend, Metric, Points, ValuationError};

/// Evaluation points per distance block (a block is one GEMM and one task). The GEMM packs
/// the whole pool once per block, so a block must be wide enough to pay for that; its
/// distances take `BLOCK × pool × 8` bytes (51 MB for a pool of 100 k).
const BLOCK: usize = 64;
/// Blocks whose partial sums are held at once before they are added in order.
const BLOCKS_IN_FLIGHT: usize = 4;

/// One valuation problem.
#[derive(Debug, Clone, Copy)]
pub struct Problem<'a> {
    /// The points valued.
    pub train: &'a Points,
    /// The labelled evaluation set (the builder's task, or a declared held-out sample).
    pub test: &'a Points,
    /// Points always present (the commons), if any.
    pub baseline: Option<&'a Points>,
    /// K of the KNN classifier.
    pub k: usize,
    /// The metric.
    pub metric: Metric,
    /// How the dot products are computed.
    pub backend: Backend,
}

impl Problem<'_> {
    pub(crate) fn check(&self) -> Result<(), ValuationError> {
        if self.k == 0 {
            return Err(ValuationError::ZeroK);
        }
        if self.train.is_empty() {
            return Err(ValuationError::Empty("training"));
        }
        if self.test.is_empty() {
            return Err(ValuationError::Empty("evaluation"));
        }
        same_dim("evaluation", self.test, self.train)?;
        if let Some(b) = self.baseline {
            same_dim("baseline", b, self.train)?;
        }
        let pool = self.train.len() + self.baseline.map_or(0, Points::len);
        if u32::try_from(pool).is_err() {
            return Err(ValuationError::TooManyPoints(pool));
        }
        Ok(())
    }

    /// The pool: training points, then baseline points.
    pub(crate) fn pool(&self) -> Prepared<'_> {
        match self.baseline {
            Some(b) if !b.is_empty() => {
                Prepared::new(Cow::Owned(self.train.concat(b)), self.metric)
            }
            _ => Prepared::new(Cow::Borrowed(self.train), self.metric),
        }
    }

    /// Calls `per_test(accumulator, test index, pool order)` for every evaluation point, where
    /// the order lists (distance, pool index) nearest first, ties by index; blocks run in parallel and
    /// `fold` adds each block's accumulator into the total in block order (deterministic).
    pub(crate) fn for_each_ordered<A: Send>(
        &self,
        progress: Option<&(dyn Fn(usize) + Sync)>,
        init: impl Fn() -> A + Sync,
        per_test: impl Fn(&mut A, usize, &[(f64, u32)]) + Sync,
        mut fold: impl FnMut(A),
        partial: bool,
    ) {
        let pool = self.pool();
        let tests = Prepared::new(Cow::Borrowed(self.test), self.metric);
        let n = pool.points.len();
        let blocks: Vec<(usize, usize)> = (0..self.test.len())
            .step_by(BLOCK)
            .map(|t0| (t0, (t0 + BLOCK).min(self.test.len())))
            .collect();
        let keep = self.k + 1;
        for chunk in blocks.chunks(BLOCKS_IN_FLIGHT) {
            let accs: Vec<A> = chunk
                .par_iter()
                .map(|&(t0, t1)| {
                    let dist = pool.block(&tests, t0, t1, self.backend);
                    let mut acc = init();
                    let mut keys: Vec<(f64, u32)> = Vec::with_capacity(n);
                    let mut scratch = Scratch::default();
                    for (r, t) in (t0..t1).enumerate() {
                        let row = &dist[r * n..(r + 1) * n];
                        if partial && keep < n {
                            keys.clear();
                            keys.extend(row.iter().enumerate().map(|(j, d)| (*d, j as u32)));
                            keys.select_nth_unstable_by(keep, by_distance_then_index);
                            keys.truncate(keep);
                            keys.sort_unstable_by(by_distance_then_index);
                        } else {
                            sort_row(row, &mut keys, &mut scratch);
                        }
                        per_test(&mut acc, t, &keys);
                    }
                    if let Some(p) = progress {
                        p(t1 - t0);
                    }
                    acc
                })
                .collect();
            for acc in accs {
                fold(acc);
            }
        }
    }
}

/// The exact KNN-Shapley value of every training point, in input order (see the module
/// documentation for the baseline case). `progress` is told how many evaluation points each
/// finished block held.
pub fn knn_shapley(
    p: &Problem<'_>,
    progress: Option<&(dyn Fn(usize) + Sync)>,
) -> Result<Vec<f64>, ValuationError> {
    p.check()?;
    let n = p.train.len();
    let k = p.k;
    let train_labels = p.train.labels();
    let base_labels = p.baseline.map(|b| b.labels()).unwrap_or(&[]);
    let n_base = base_labels.len();
    let mut total = vec![0.0f64; n];
    p.for_each_ordered(
        progress,
        || vec![0.0f64; n],
        |acc, t, order| {
            let y = p.test.labels()[t];
            // Walk from the farthest: `d` training and `b` baseline points are nearer than
            // the current one once it is taken off.
            let (mut d, mut b) = (n, n_base);
            let inv_k = 1.0 / k as f64;
            let mut suffix = 0.0f64;
            for &(_, j) in order.iter().rev() {
                let j = j as usize;
                if j < n {
                    d -= 1;
                    if b >= k {
                        continue;
                    }
                    if train_labels[j] != y {
                        // a_j = 0: no own term and nothing passed to nearer points.
                        acc[j] += suffix * inv_k;
                        continue;
                    }
                    let t_j = (k - b) as f64;
                    let m = d as f64;
                    let own = t_j.min(m + 1.0) / (m + 1.0);
                    acc[j] += (own + suffix) * inv_k;
                    if d >= k - b {
                        suffix -= t_j / ((m + 1.0) * m);
                    }
                } else {
                    b -= 1;
                    if b >= k || base_labels[j - n] != y {
                        continue;
                    }
                    if d >= k - b && d > 0 {
                        suffix -= 1.0 / d as f64;
                    }
                }
            }
        },
        |acc| {
            for (t, a) in total.iter_mut().zip(acc) {
                *t += a;
            }
        },
        false,
    );
    let tests = p.test.len() as f64;
    Ok(total.into_iter().map(|v| v / tests).collect())
}

/// The leave-one-out value of every training point, `U(B ∪ D) − U(B ∪ D ∖ {i})`, in input
/// order: only the K nearest points of each evaluation point can matter, so it needs a partial
/// sort of K + 1 keys per evaluation point.
pub fn leave_one_out(
    p: &Problem<'_>,
    progress: Option<&(dyn Fn(usize) + Sync)>,
) -> Result<Vec<f64>, ValuationError> {
    p.check()?;
    let n = p.train.len();
    let k = p.k;
    let train_labels = p.train.labels();
    let base_labels = p.baseline.map(|b| b.labels()).unwrap_or(&[]);
    let label = |j: usize| {
        if j < n {
            train_labels[j]
        } else {
            base_labels[j - n]
        }
    };
    let mut total = vec![0.0f64; n];
    p.for_each_ordered(
        progress,
        Vec::<(usize, f64)>::new,
        |acc, t, order| {
            let y = p.test.labels()[t];
            let a = |j: usize| f64::from(u8::from(label(j) == y));
            let next = order.get(k).map(|&(_, j)| a(j as usize)).unwrap_or(0.0);
            for &(_, j) in order.iter().take(k) {
                let j = j as usize;
                if j < n {
                    acc.push((j, (a(j) - next) / k as f64));
                }
            }
        },
        |acc| {
            for (j, v) in acc {
                total[j] += v;
            }
        },
        true,
    );
    let tests = p.test.len() as f64;
    Ok(total.into_iter().map(|v| v / tests).collect())
}

/// `(distance, index)` order: the tie-break by input order.
fn by_distance_then_index(a: &(f64, u32), b: &(f64, u32)) -> std::cmp::Ordering {
    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
}

/// Reusable buffers of [`sort_row`].
#[derive(Default)]
struct Scratch {
    starts: Vec<u32>,
}

/// Sorts one row of distances into `(distance, index)` pairs, nearest first, ties by index:
/// a bucket pass (buckets are equal slices of [min, max], so bucket order is distance order;
/// points enter their bucket in index order) then a sort within each bucket. About four
/// points to a bucket: two linear passes and many tiny sorts, several times faster than a
/// comparison or LSD radix sort of the whole row.
fn sort_row(row: &[f64], out: &mut Vec<(f64, u32)>, scratch: &mut Scratch) {
    let n = row.len();
    out.clear();
    if n == 0 {
        return;
    }
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for &d in row {
        lo = lo.min(d);
        hi = hi.max(d);
    }
    let buckets = (n / 4).max(1);
    let scale = if hi > lo {
        (buckets - 1) as f64 / (hi - lo)
    } else {
        0.0
    };
    // Monotone in d: (d − lo) and the product by a positive scale never decrease as d grows.
    let bucket = |d: f64| (((d - lo) * scale) as usize).min(buckets - 1);
    let starts = &mut scratch.starts;
    starts.clear();
    starts.resize(buckets + 1, 0);
    for &d in row {
        starts[bucket(d) + 1] += 1;
    }
    for b in 0..buckets {
        starts[b + 1] += starts[b];
    }
    out.resize(n, (0.0, 0));
    // `starts[b]` is now where bucket b begins; fill with a moving cursor per bucket.
    let mut cursor: Vec<u32> = starts[..buckets].to_vec();
    for (j, &d) in row.iter().enumerate() {
        let b = bucket(d);
        out[cursor[b] as usize] = (d, j as u32);
        cursor[b] += 1;
    }
    for b in 0..buckets {
        let (s, e) = (starts[b] as usize, starts[b + 1] as usize);
        if e - s > 1 {
            out[s..e].sort_unstable_by(by_distance_then_index);
        }
    }
}
