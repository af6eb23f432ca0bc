//! Definitional, slow implementations: the utility evaluated on a subset from scratch, and
//! Shapley values by enumerating every subset. The fast paths are tested against these; they
//! are public so that anyone can check a result on a small set.

use crate::ValuationError;
use crate::distance::distance;
use crate::knn::Problem;

/// The most players the enumerations take (2^16 subsets).
pub const MAX_PLAYERS: usize = 16;

/// `U(B ∪ S)` from scratch, where `S` is the training points with `in_s[i]`: for each
/// evaluation point, sort `S` then `B` by distance (ties by that order), count label matches
/// among the K nearest, divide by K; the mean over the evaluation points.
pub fn utility(p: &Problem<'_>, in_s: &[bool]) -> f64 {
    let n = p.train.len();
    let mut total = 0.0;
    for t in 0..p.test.len() {
        let y = p.test.labels()[t];
        let tr = p.test.row(t);
        let mut near: Vec<(f64, usize, bool)> = Vec::new();
        for i in (0..n).filter(|i| in_s[*i]) {
            near.push((
                distance(p.metric, tr, p.train.row(i)),
                i,
                p.train.labels()[i] == y,
            ));
        }
        if let Some(b) = p.baseline {
            for i in 0..b.len() {
                near.push((distance(p.metric, tr, b.row(i)), n + i, b.labels()[i] == y));
            }
        }
        near.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let hits = near.iter().take(p.k).filter(|x| x.2).count();
        total += hits as f64 / p.k as f64;
    }
    total / p.test.len() as f64
}

/// Shapley values of the game `v(S) = utility(S) − utility(∅)` over players that are sets of
/// training points (`members[g]` lists group g's points), by enumerating all subsets.
pub fn shapley_of(p: &Problem<'_>, members: &[Vec<usize>]) -> Result<Vec<f64>, ValuationError> {
    p.check()?;
    let g = members.len();
    if g > MAX_PLAYERS {
        return Err(ValuationError::TooLargeForReference {
            n: g,
            max: MAX_PLAYERS,
        });
    }
    let n = p.train.len();
    let v: Vec<f64> = (0..1usize << g)
        .map(|mask| {
            let mut in_s = vec![false; n];
            for (i, pts) in members.iter().enumerate() {
                if mask >> i & 1 == 1 {
                    for &j in pts {
                        in_s[j] = true;
                    }
                }
            }
            utility(p, &in_s)
        })
        .collect();
    let fact = |x: usize| (1..=x).map(|i| i as f64).product::<f64>();
    let mut out = vec![0.0; g];
    for (i, o) in out.iter_mut().enumerate() {
        for mask in 0..1usize << g {
            if mask >> i & 1 == 0 {
                let s = mask.count_ones() as usize;
                let w = fact(s) * fact(g - s - 1) / fact(g);
                *o += w * (v[mask | 1 << i] - v[mask]);
            }
        }
    }
    Ok(out)
}

/// Shapley values of single training points, by enumeration.
pub fn shapley(p: &Problem<'_>) -> Result<Vec<f64>, ValuationError> {
    let members: Vec<Vec<usize>> = (0..p.train.len()).map(|i| vec![i]).collect();
    shapley_of(p, &members)
}
