//! # guild-valuation
//!
//! What a member's data is worth to a builder's task (protocol.md §8), computed with methods
//! the data-valuation field trusts.
//!
//! It owns
//! - labelled point sets ([`Points`]) and the two metrics ([`Metric`]): squared L2 and cosine
//!   distance, computed by a GEMM ([`Backend::Gemm`], ndarray's matrixmultiply kernels) or by
//!   plain scalar loops whose results are the same on every machine ([`Backend::Portable`],
//!   for values several stewards must agree on to the bit);
//! - exact KNN-Shapley of every training point (Jia et al., PVLDB 2019) and leave-one-out
//!   ([`knn`]), both optionally over a baseline set that is always present (the commons);
//! - the same KNN utility over groups of points (a group is a member's records) ([`groups`]):
//!   exact group Shapley over all 2^k coalitions, Monte-Carlo permutation sampling with a
//!   Hoeffding bound beyond that, per-group ablation and summed leave-one-out, and the
//!   collective's ablation over the baseline;
//! - a deterministic text featurizer ([`text`]): feature-hashed TF-IDF over word and character
//!   n-grams, at a fixed dimension;
//! - the definitional (slow) implementations the fast ones are tested against ([`reference`]),
//!   and seeded synthetic labelled data ([`synth`]) for tests, benchmarks and demonstrations.
//!
//! Ties in distance are broken by input order: training points before baseline points, each
//! in the order given. It must not do I/O (no files, sockets, clocks or global randomness:
//! sampling takes a seed), and never turns bad input into a panic: every constructor checks
//! its input and returns a [`ValuationError`].
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod distance;
pub mod error;
pub mod groups;
pub mod knn;
pub mod points;
pub mod reference;
pub mod synth;
pub mod text;

pub use distance::{Backend, Metric};
pub use error::ValuationError;
pub use groups::{GroupGame, GroupValues};
pub use knn::{Problem, knn_shapley, leave_one_out};
pub use points::Points;
pub use text::{TextFeaturizer, TfIdf};
