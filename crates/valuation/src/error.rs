//! The one error type of this crate.

use thiserror::Error;

/// Why a valuation could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValuationError {
    /// A point's vector has the wrong length.
    #[error("point {index} has {got} features, expected {expected}")]
    Dimension {
        /// The point's index in its set.
        index: usize,
        /// Its length.
        got: usize,
        /// The set's dimension.
        expected: usize,
    },
    /// A feature is NaN or infinite.
    #[error("point {index} has a feature that is not a finite number")]
    NotFinite {
        /// The point's index in its set.
        index: usize,
    },
    /// Two sets disagree on the dimension.
    #[error("the {what} set has dimension {got}, the training set {expected}")]
    SetDimension {
        /// Which set.
        what: &'static str,
        /// Its dimension.
        got: usize,
        /// The training set's.
        expected: usize,
    },
    /// A set that must not be empty is.
    #[error("the {0} set is empty")]
    Empty(&'static str),
    /// More training and baseline points than an index of 32 bits counts.
    #[error("{0} training and baseline points: at most 2^32 − 1")]
    TooManyPoints(usize),
    /// K must be at least 1.
    #[error("k must be at least 1")]
    ZeroK,
    /// The featurizer's dimension must be at least 1.
    #[error("the featurizer's dimension must be at least 1")]
    ZeroDimension,
    /// Labels and points differ in number.
    #[error("{points} points but {labels} labels")]
    Labels {
        /// Points.
        points: usize,
        /// Labels.
        labels: usize,
    },
    /// A group index is out of range, or groups and points differ in number.
    #[error("group assignment: {0}")]
    Groups(&'static str),
    /// Too many groups for exact enumeration.
    #[error(
        "{groups} groups: exact group Shapley enumerates 2^groups coalitions and stops at {max}; sample instead"
    )]
    TooManyGroups {
        /// How many groups.
        groups: usize,
        /// The most it enumerates.
        max: usize,
    },
    /// Sampling needs at least one permutation.
    #[error("sampling needs at least one permutation")]
    NoPermutations,
    /// The reference implementation enumerates subsets and refuses large sets.
    #[error("the reference enumerates 2^{n} subsets and stops at 2^{max}")]
    TooLargeForReference {
        /// Players.
        n: usize,
        /// The most it takes.
        max: usize,
    },
}
