//! Labelled points: the training set, the evaluation (test) set and the baseline.

use crate::ValuationError;

/// A set of labelled points of one dimension, stored row-major.
///
/// Labels are small integers: a caller with string labels interns them first (the same label
/// must map to the same integer across the training, test and baseline sets).
#[derive(Debug, Clone, PartialEq)]
pub struct Points {
    dim: usize,
    data: Vec<f64>,
    labels: Vec<u32>,
}

impl Points {
    /// A set from rows of features and their labels. Every row must have `dim` finite
    /// features; an empty set is allowed here (the valuations say which sets may be empty).
    pub fn new(dim: usize, rows: &[Vec<f64>], labels: Vec<u32>) -> Result<Self, ValuationError> {
        if rows.len() != labels.len() {
            return Err(ValuationError::Labels {
                points: rows.len(),
                labels: labels.len(),
            });
        }
        let mut data = Vec::with_capacity(rows.len() * dim);
        for (index, row) in rows.iter().enumerate() {
            if row.len() != dim {
                return Err(ValuationError::Dimension {
                    index,
                    got: row.len(),
                    expected: dim,
                });
            }
            if row.iter().any(|x| !x.is_finite()) {
                return Err(ValuationError::NotFinite { index });
            }
            data.extend_from_slice(row);
        }
        Ok(Self { dim, data, labels })
    }

    /// A set from a flat row-major buffer (`labels.len()` rows of `dim`).
    pub fn from_flat(dim: usize, data: Vec<f64>, labels: Vec<u32>) -> Result<Self, ValuationError> {
        if data.len() != labels.len() * dim {
            return Err(ValuationError::Labels {
                points: data.len().checked_div(dim).unwrap_or(0),
                labels: labels.len(),
            });
        }
        if let Some(i) = data.iter().position(|x| !x.is_finite()) {
            return Err(ValuationError::NotFinite {
                index: i.checked_div(dim).unwrap_or(0),
            });
        }
        Ok(Self { dim, data, labels })
    }

    /// An empty set of this dimension.
    pub fn empty(dim: usize) -> Self {
        Self {
            dim,
            data: Vec::new(),
            labels: Vec::new(),
        }
    }

    /// The dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// How many points.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Point `i`'s features.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// The features, row-major.
    pub fn data(&self) -> &[f64] {
        &self.data
    }

    /// The labels.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// The points at `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Self {
        let mut data = Vec::with_capacity(idx.len() * self.dim);
        let mut labels = Vec::with_capacity(idx.len());
        for &i in idx {
            data.extend_from_slice(self.row(i));
            labels.push(self.labels[i]);
        }
        Self {
            dim: self.dim,
            data,
            labels,
        }
    }

    /// This set followed by `other` (same dimension, checked by the caller).
    pub(crate) fn concat(&self, other: &Points) -> Self {
        let mut data = self.data.clone();
        data.extend_from_slice(&other.data);
        let mut labels = self.labels.clone();
        labels.extend_from_slice(&other.labels);
        Self {
            dim: self.dim,
            data,
            labels,
        }
    }
}
