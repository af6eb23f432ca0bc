//! The KNN utility over groups of training points (a group is one member's records).
//!
//! A coalition `S` of groups stands for the union of their points, with the baseline (if any)
//! always present: `v(S) = U(B ∪ ⋃S) − U(B)`. Every quantity here is computed from integer
//! counts (`K · T · U` is the number of label matches among the K nearest, summed over the T
//! evaluation points), so coalition utilities are exact and the same on every machine given
//! the same neighbour order; only the final division and the Shapley weights are floating.
//!
//! Only each group's K nearest points (and the baseline's) can be among the K nearest of any
//! coalition, so each evaluation point keeps at most `(groups + 1) · K` candidates.

use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;

use crate::knn::Problem;
use crate::{ValuationError, knn};

/// The owner of a baseline candidate.
const BASE: u32 = u32::MAX;

/// The most groups [`GroupGame::exact`] enumerates (2^20 coalitions).
pub const MAX_EXACT_GROUPS: usize = 20;

/// The confidence of [`GroupValues::bound`]: it holds for every group at once with probability
/// at least 1 − `BOUND_DELTA`.
pub const BOUND_DELTA: f64 = 0.05;

/// Values of groups.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupValues {
    /// One value per group, in group order.
    pub values: Vec<f64>,
    /// For sampled values: the Hoeffding half-width ε such that, with probability at least
    /// 1 − [`BOUND_DELTA`], every value is within ε of the exact Shapley value. Marginal
    /// contributions lie in [−1, 1], so `ε = sqrt(2 ln(2g/δ) / m)` for g groups and m
    /// permutations.
    pub bound: Option<f64>,
}

/// The group game of one valuation problem.
#[derive(Debug, Clone)]
pub struct GroupGame {
    groups: usize,
    k: usize,
    tests: usize,
    /// Per evaluation point, its candidates nearest first: (owner group or BASE, label match).
    cands: Vec<Vec<(u32, bool)>>,
}

impl GroupGame {
    /// The game of `p` where training point `i` belongs to group `group_of[i] < groups`.
    pub fn new(
        p: &Problem<'_>,
        group_of: &[usize],
        groups: usize,
        progress: Option<&(dyn Fn(usize) + Sync)>,
    ) -> Result<Self, ValuationError> {
        p.check()?;
        if group_of.len() != p.train.len() {
            return Err(ValuationError::Groups("one group per training point"));
        }
        if groups >= BASE as usize {
            return Err(ValuationError::Groups("too many groups"));
        }
        if group_of.iter().any(|g| *g >= groups) {
            return Err(ValuationError::Groups("a group index is out of range"));
        }
        let n = p.train.len();
        let k = p.k;
        let train_labels = p.train.labels();
        let base_labels = p.baseline.map(|b| b.labels()).unwrap_or(&[]);
        let mut cands: Vec<Vec<(u32, bool)>> = vec![Vec::new(); p.test.len()];
        p.for_each_ordered(
            progress,
            Vec::<(usize, Vec<(u32, bool)>)>::new,
            |acc, t, order| {
                let y = p.test.labels()[t];
                let mut taken = vec![0usize; groups + 1];
                let mut list = Vec::with_capacity((groups + 1) * k);
                for &(_, j) in order {
                    let j = j as usize;
                    let (owner, slot, label) = if j < n {
                        (group_of[j] as u32, group_of[j], train_labels[j])
                    } else {
                        (BASE, groups, base_labels[j - n])
                    };
                    if taken[slot] < k {
                        taken[slot] += 1;
                        list.push((owner, label == y));
                    }
                }
                acc.push((t, list));
            },
            |acc| {
                for (t, list) in acc {
                    cands[t] = list;
                }
            },
            false,
        );
        Ok(Self {
            groups,
            k,
            tests: p.test.len(),
            cands,
        })
    }

    /// How many groups.
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// The matches among the K nearest of B ∪ S, summed over the evaluation points.
    fn count(&self, member: impl Fn(u32) -> bool) -> i64 {
        let mut total = 0i64;
        for list in &self.cands {
            let mut seen = 0;
            for &(owner, hit) in list {
                if owner == BASE || member(owner) {
                    total += i64::from(hit);
                    seen += 1;
                    if seen == self.k {
                        break;
                    }
                }
            }
        }
        total
    }

    fn scale(&self) -> f64 {
        (self.k * self.tests) as f64
    }

    /// `U(B ∪ S)` for the coalition of groups `in_coalition[g]`.
    pub fn utility(&self, in_coalition: &[bool]) -> f64 {
        self.count(|g| in_coalition.get(g as usize).copied().unwrap_or(false)) as f64 / self.scale()
    }

    /// `v(N) = U(B ∪ D) − U(B)`: the whole collective's value (over the baseline, if any).
    pub fn collective(&self) -> f64 {
        (self.count(|_| true) - self.count(|_| false)) as f64 / self.scale()
    }

    /// `U(B)`: what the baseline alone is worth (0 without a baseline).
    pub fn baseline_utility(&self) -> f64 {
        self.count(|_| false) as f64 / self.scale()
    }

    /// Exact group Shapley values over all 2^groups coalitions.
    pub fn exact(&self) -> Result<GroupValues, ValuationError> {
        let g = self.groups;
        if g > MAX_EXACT_GROUPS {
            return Err(ValuationError::TooManyGroups {
                groups: g,
                max: MAX_EXACT_GROUPS,
            });
        }
        let masks = 1usize << g;
        let counts: Vec<i64> = (0..masks)
            .into_par_iter()
            .with_min_len(64)
            .map(|mask| self.count(|o| mask >> o & 1 == 1))
            .collect();
        // Per group and coalition size, the summed marginal counts (exact integers).
        let mut by_size = vec![vec![0i64; g.max(1)]; g];
        for mask in 0..masks {
            let size = mask.count_ones() as usize;
            for (i, row) in by_size.iter_mut().enumerate() {
                if mask >> i & 1 == 0 {
                    row[size] += counts[mask | 1 << i] - counts[mask];
                }
            }
        }
        let weights = shapley_weights(g);
        let values = by_size
            .iter()
            .map(|row| {
                row.iter()
                    .zip(&weights)
                    .map(|(d, w)| *d as f64 * w)
                    .sum::<f64>()
                    / self.scale()
            })
            .collect();
        Ok(GroupValues {
            values,
            bound: None,
        })
    }

    /// Group Shapley values estimated from `permutations` random orders of the groups (each
    /// order drawn from its own generator, seeded by `seed` and its index, so the result does
    /// not depend on the thread count). `progress` is told of each finished permutation.
    pub fn sample(
        &self,
        permutations: usize,
        seed: u64,
        progress: Option<&(dyn Fn(usize) + Sync)>,
    ) -> Result<GroupValues, ValuationError> {
        if permutations == 0 {
            return Err(ValuationError::NoPermutations);
        }
        let g = self.groups;
        let empty = self.count(|_| false);
        let sums = (0..permutations)
            .into_par_iter()
            .map(|p| {
                let mut rng = Xoshiro256PlusPlus::seed_from_u64(
                    seed ^ (p as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                );
                let mut order: Vec<usize> = (0..g).collect();
                for i in (1..g).rev() {
                    let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                    order.swap(i, j);
                }
                let mut inside = vec![false; g];
                let mut marg = vec![0i64; g];
                let mut prev = empty;
                for &i in &order {
                    inside[i] = true;
                    let c = self.count(|o| inside[o as usize]);
                    marg[i] = c - prev;
                    prev = c;
                }
                if let Some(f) = progress {
                    f(1);
                }
                marg
            })
            .reduce(
                || vec![0i64; g],
                |mut a, b| {
                    for (x, y) in a.iter_mut().zip(b) {
                        *x += y;
                    }
                    a
                },
            );
        let m = permutations as f64;
        let values = sums.iter().map(|s| *s as f64 / m / self.scale()).collect();
        let bound = (2.0 * (2.0 * g.max(1) as f64 / BOUND_DELTA).ln() / m).sqrt();
        Ok(GroupValues {
            values,
            bound: Some(bound),
        })
    }

    /// Each group's ablation `v(N) − v(N ∖ {g})`: what the collective loses without it.
    pub fn ablation(&self) -> GroupValues {
        let all = self.count(|_| true);
        let values = (0..self.groups)
            .into_par_iter()
            .map(|g| (all - self.count(|o| o as usize != g)) as f64 / self.scale())
            .collect();
        GroupValues {
            values,
            bound: None,
        }
    }
}

/// Each group's summed leave-one-out: the sum of its points' [`knn::leave_one_out`] values.
pub fn summed_leave_one_out(
    p: &Problem<'_>,
    group_of: &[usize],
    groups: usize,
    progress: Option<&(dyn Fn(usize) + Sync)>,
) -> Result<GroupValues, ValuationError> {
    if group_of.len() != p.train.len() {
        return Err(ValuationError::Groups("one group per training point"));
    }
    if group_of.iter().any(|g| *g >= groups) {
        return Err(ValuationError::Groups("a group index is out of range"));
    }
    let loo = knn::leave_one_out(p, progress)?;
    let mut values = vec![0.0; groups];
    for (v, g) in loo.iter().zip(group_of) {
        values[*g] += v;
    }
    Ok(GroupValues {
        values,
        bound: None,
    })
}

/// `w(s) = s! (g − s − 1)! / g!` for s in 0..g, computed as `1 / (g · C(g − 1, s))`.
fn shapley_weights(g: usize) -> Vec<f64> {
    (0..g.max(1))
        .map(|s| {
            let mut c = 1.0f64;
            for i in 0..s {
                c = c * (g - 1 - i) as f64 / (i + 1) as f64;
            }
            1.0 / (g as f64 * c)
        })
        .collect()
}
