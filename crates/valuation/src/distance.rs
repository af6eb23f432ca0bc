//! Distances between evaluation points and a pool of points, a block at a time.

use std::borrow::Cow;

use ndarray::{Array2, ArrayView2, linalg::general_mat_mul};

use crate::{Points, ValuationError};

/// How distance is measured. Only the order of distances matters to the KNN utility.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Metric {
    /// Euclidean (ordered by its square, `|x|² + |y|² − 2 x·y`).
    #[default]
    L2,
    /// Cosine distance `1 − x·y / (|x| |y|)`; a zero vector is at distance 1 from everything.
    Cosine,
}

impl std::str::FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "l2" => Ok(Self::L2),
            "cosine" => Ok(Self::Cosine),
            other => Err(format!("unknown metric {other:?} (l2 or cosine)")),
        }
    }
}

/// How the dot products are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// A blocked GEMM (ndarray's matrixmultiply kernels): fast, but the kernel is chosen by
    /// the CPU's features, so the last bits of a distance may differ between machines.
    #[default]
    Gemm,
    /// One scalar loop per pair, in index order: the same bits on every IEEE 754 machine,
    /// for values several stewards compute and must agree on.
    Portable,
}

/// A pool (training points, then baseline points) prepared for a metric.
#[derive(Debug)]
pub(crate) struct Prepared<'a> {
    pub(crate) points: Cow<'a, Points>,
    norms: Vec<f64>,
    metric: Metric,
}

impl<'a> Prepared<'a> {
    /// Borrows the points for L2; keeps unit vectors for cosine.
    pub(crate) fn new(points: Cow<'a, Points>, metric: Metric) -> Self {
        let points = match metric {
            Metric::L2 => points,
            Metric::Cosine => Cow::Owned(normalised(&points)),
        };
        let norms = (0..points.len())
            .map(|i| dot(points.row(i), points.row(i)))
            .collect();
        Self {
            points,
            norms,
            metric,
        }
    }

    /// The distances from evaluation points `tests[t0..t1]` to every pool point, row-major
    /// (`t1 − t0` rows of `pool.len()`), never negative.
    pub(crate) fn block(
        &self,
        tests: &Prepared,
        t0: usize,
        t1: usize,
        backend: Backend,
    ) -> Vec<f64> {
        let n = self.points.len();
        let b = t1 - t0;
        let dim = self.points.dim();
        let mut out = match backend {
            Backend::Portable => {
                let mut out = vec![0.0f64; b * n];
                for (r, t) in (t0..t1).enumerate() {
                    let tr = tests.points.row(t);
                    for (j, o) in out[r * n..(r + 1) * n].iter_mut().enumerate() {
                        *o = dot(tr, self.points.row(j));
                    }
                }
                out
            }
            Backend::Gemm => {
                let tests_view =
                    ArrayView2::from_shape((b, dim), &tests.points.data()[t0 * dim..t1 * dim]);
                let pool_view = ArrayView2::from_shape((n, dim), self.points.data());
                let mut c = Array2::<f64>::zeros((b, n));
                if let (Ok(tv), Ok(pv)) = (tests_view, pool_view) {
                    general_mat_mul(1.0, &tv, &pv.t(), 0.0, &mut c);
                }
                // A fresh array is in standard (row-major) layout with no offset.
                c.into_raw_vec_and_offset().0
            }
        };
        for (r, t) in (t0..t1).enumerate() {
            let tn = tests.norms[t];
            for (j, o) in out[r * n..(r + 1) * n].iter_mut().enumerate() {
                let d = match self.metric {
                    Metric::L2 => self.norms[j] + tn - 2.0 * *o,
                    Metric::Cosine => 1.0 - *o,
                };
                // +0.0, never −0.0 or a rounding error below zero: the sort compares bits.
                *o = if d > 0.0 { d } else { 0.0 };
            }
        }
        out
    }
}

/// Checks that a set has the training set's dimension.
pub(crate) fn same_dim(
    what: &'static str,
    set: &Points,
    train: &Points,
) -> Result<(), ValuationError> {
    if set.dim() != train.dim() {
        return Err(ValuationError::SetDimension {
            what,
            got: set.dim(),
            expected: train.dim(),
        });
    }
    Ok(())
}

fn normalised(points: &Points) -> Points {
    let dim = points.dim();
    let mut data = Vec::with_capacity(points.data().len());
    for i in 0..points.len() {
        data.extend(unit(points.row(i)));
    }
    // Same shape and finite values as the input: cannot fail.
    Points::from_flat(dim, data, points.labels().to_vec()).unwrap_or_else(|_| points.clone())
}

/// A dot product in index order (the portable path's only arithmetic).
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut s = 0.0;
    for (x, y) in a.iter().zip(b) {
        s += x * y;
    }
    s
}

/// The distance of one pair, computed exactly as the portable path does (the reference
/// implementation uses it, so that both see the same ties).
pub fn distance(metric: Metric, a: &[f64], b: &[f64]) -> f64 {
    let d = match metric {
        Metric::L2 => dot(a, a) + dot(b, b) - 2.0 * dot(a, b),
        Metric::Cosine => 1.0 - dot(&unit(a), &unit(b)),
    };
    if d > 0.0 { d } else { 0.0 }
}

/// `x / |x|`, or `x` itself when it is zero.
fn unit(x: &[f64]) -> Vec<f64> {
    let norm = dot(x, x).sqrt();
    if norm > 0.0 {
        x.iter().map(|v| v / norm).collect()
    } else {
        x.to_vec()
    }
}
