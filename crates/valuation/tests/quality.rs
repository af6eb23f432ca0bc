//! OpenDataVal's quality protocol: flip 20 % of the labels of a generated labelled set; the
//! lowest-valued points must be the flipped ones far more often than chance. Reports the F1 of
//! a 2-means split of the values and the AUC (the chance that a flipped point is valued below
//! a clean one).

use guild_valuation::synth::Blobs;
use guild_valuation::{Backend, Metric, Problem, knn_shapley};

/// The F1 of calling "noisy" the points of the lower of two 1-D k-means clusters.
fn two_means_f1(values: &[f64], truth: &[bool]) -> f64 {
    let (mut lo, mut hi) = (
        values.iter().copied().fold(f64::INFINITY, f64::min),
        values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let mut low = vec![false; values.len()];
    for _ in 0..100 {
        for (l, v) in low.iter_mut().zip(values) {
            *l = (v - lo).abs() < (v - hi).abs();
        }
        let mean = |want: bool| {
            let (s, n) = values
                .iter()
                .zip(&low)
                .filter(|(_, l)| **l == want)
                .fold((0.0, 0usize), |(s, n), (v, _)| (s + v, n + 1));
            if n == 0 { None } else { Some(s / n as f64) }
        };
        let (nlo, nhi) = (mean(true).unwrap_or(lo), mean(false).unwrap_or(hi));
        if nlo == lo && nhi == hi {
            break;
        }
        (lo, hi) = (nlo, nhi);
    }
    let tp = low.iter().zip(truth).filter(|(p, t)| **p && **t).count() as f64;
    let fp = low.iter().zip(truth).filter(|(p, t)| **p && !**t).count() as f64;
    let fneg = low.iter().zip(truth).filter(|(p, t)| !**p && **t).count() as f64;
    2.0 * tp / (2.0 * tp + fp + fneg)
}

/// P(value of a flipped point < value of a clean one), ties counting half.
fn auc(values: &[f64], truth: &[bool]) -> f64 {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|a, b| values[*a].total_cmp(&values[*b]));
    // Rank-sum (Mann–Whitney U) with average ranks for ties.
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && values[idx[j + 1]] == values[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &x in &idx[i..=j] {
            ranks[x] = r;
        }
        i = j + 1;
    }
    let pos = truth.iter().filter(|t| **t).count() as f64;
    let neg = truth.len() as f64 - pos;
    let clean_rank_sum: f64 = ranks
        .iter()
        .zip(truth)
        .filter(|(_, t)| !**t)
        .map(|(r, _)| r)
        .sum();
    (clean_rank_sum - neg * (neg + 1.0) / 2.0) / (pos * neg)
}

#[test]
fn flipped_labels_are_found() {
    let mut blobs = Blobs::new(2026, 5, 16, 0.9);
    let clean = blobs.points(2000);
    let test = blobs.points(400);
    let (train, flipped) = blobs.flip(&clean, 0.2);
    let share = flipped.iter().filter(|f| **f).count() as f64 / flipped.len() as f64;
    assert!((0.15..0.25).contains(&share), "{share}");
    for metric in [Metric::L2, Metric::Cosine] {
        let p = Problem {
            train: &train,
            test: &test,
            baseline: None,
            k: 10,
            metric,
            backend: Backend::Gemm,
        };
        let values = knn_shapley(&p, None).unwrap();
        let f1 = two_means_f1(&values, &flipped);
        let auc = auc(&values, &flipped);
        println!(
            "{metric:?}: noisy-label F1 {f1:.3}, AUC {auc:.3} ({:.1} % flipped)",
            share * 100.0
        );
        // Chance: AUC 0.5, F1 of a random split about 0.29.
        assert!(auc > 0.9, "AUC {auc}");
        assert!(f1 > 0.7, "F1 {f1}");
    }
}
