//! The fast valuations against the definitional ones (every subset enumerated), and the
//! Shapley axioms the values must satisfy.

use guild_valuation::groups::summed_leave_one_out;
use guild_valuation::{
    Backend, GroupGame, Metric, Points, Problem, knn_shapley, leave_one_out, reference,
};
use proptest::prelude::*;

fn points(dim: usize, rows: &[(Vec<f64>, u32)]) -> Points {
    let (r, l): (Vec<Vec<f64>>, Vec<u32>) = rows.iter().cloned().unzip();
    Points::new(dim, &r, l).unwrap()
}

fn set(dim: usize, max: usize, min: usize) -> impl Strategy<Value = Vec<(Vec<f64>, u32)>> {
    prop::collection::vec(
        (prop::collection::vec(-4i32..=4, dim), 0u32..3)
            .prop_map(|(v, l)| (v.into_iter().map(|x| f64::from(x) * 0.5).collect(), l)),
        min..=max,
    )
}

#[derive(Debug)]
struct Case {
    train: Points,
    test: Points,
    base: Option<Points>,
    k: usize,
    metric: Metric,
}

impl Case {
    fn problem(&self, backend: Backend) -> Problem<'_> {
        Problem {
            train: &self.train,
            test: &self.test,
            baseline: self.base.as_ref(),
            k: self.k,
            metric: self.metric,
            backend,
        }
    }
}

fn case(max_train: usize) -> impl Strategy<Value = Case> {
    (
        set(3, max_train, 1),
        set(3, 4, 1),
        prop::option::of(set(3, 4, 0)),
        1usize..5,
        prop::bool::ANY,
    )
        .prop_map(|(tr, te, b, k, cos)| Case {
            train: points(3, &tr),
            test: points(3, &te),
            base: b.map(|b| points(3, &b)),
            k,
            metric: if cos { Metric::Cosine } else { Metric::L2 },
        })
}

fn close(a: &[f64], b: &[f64], tol: f64) -> Result<(), TestCaseError> {
    prop_assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        prop_assert!(
            (x - y).abs() <= tol,
            "index {}: {} vs {} ({:?} vs {:?})",
            i,
            x,
            y,
            a,
            b
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Point values equal brute-force Shapley to 1e-9, with and without a baseline, for both
    /// metrics (the coordinates are on a half-integer grid, so distances tie often and the
    /// tie-break is exercised). The reference computes distances as the portable backend
    /// does; the GEMM backend computes squared L2 on the grid exactly too, but may round a
    /// cosine differently and so break a tie between parallel vectors the other way.
    #[test]
    fn knn_shapley_is_brute_force_shapley(c in case(9)) {
        let want = reference::shapley(&c.problem(Backend::Portable)).unwrap();
        let backends: &[Backend] = match c.metric {
            Metric::L2 => &[Backend::Portable, Backend::Gemm],
            Metric::Cosine => &[Backend::Portable],
        };
        for &backend in backends {
            let got = knn_shapley(&c.problem(backend), None).unwrap();
            close(&got, &want, 1e-9)?;
        }
    }

    /// Efficiency: the values sum to v(D) = U(B ∪ D) − U(B).
    #[test]
    fn values_sum_to_the_collectives_utility(c in case(40)) {
        let p = c.problem(Backend::Portable);
        let v = knn_shapley(&p, None).unwrap();
        let n = c.train.len();
        let total = reference::utility(&p, &vec![true; n]) - reference::utility(&p, &vec![false; n]);
        prop_assert!((v.iter().sum::<f64>() - total).abs() < 1e-9);
    }

    /// Leave-one-out is U(B ∪ D) − U(B ∪ D ∖ {i}).
    #[test]
    fn leave_one_out_is_its_definition(c in case(12)) {
        let p = c.problem(Backend::Portable);
        let got = leave_one_out(&p, None).unwrap();
        let n = c.train.len();
        let all = reference::utility(&p, &vec![true; n]);
        let want: Vec<f64> = (0..n).map(|i| {
            let mut s = vec![true; n];
            s[i] = false;
            all - reference::utility(&p, &s)
        }).collect();
        close(&got, &want, 1e-9)?;
    }

    /// Exact group Shapley, ablation and summed LOO against their definitions, with the
    /// baseline fixed when there is one.
    #[test]
    fn group_values_are_their_definitions(c in case(14), assign in prop::collection::vec(0usize..5, 14)) {
        let p = c.problem(Backend::Portable);
        let n = c.train.len();
        let groups = 5;
        let group_of: Vec<usize> = (0..n).map(|i| assign[i]).collect();
        let members: Vec<Vec<usize>> = (0..groups)
            .map(|g| (0..n).filter(|i| group_of[*i] == g).collect())
            .collect();
        let game = GroupGame::new(&p, &group_of, groups, None).unwrap();
        let want = reference::shapley_of(&p, &members).unwrap();
        close(&game.exact().unwrap().values, &want, 1e-9)?;
        // Efficiency over groups.
        prop_assert!((want.iter().sum::<f64>() - game.collective()).abs() < 1e-9);
        // Null player: a group with no points is worth nothing.
        for (g, m) in members.iter().enumerate() {
            if m.is_empty() {
                prop_assert_eq!(game.exact().unwrap().values[g], 0.0);
            }
        }
        let all = reference::utility(&p, &vec![true; n]);
        let abl: Vec<f64> = members.iter().map(|m| {
            let mut s = vec![true; n];
            for &j in m { s[j] = false; }
            all - reference::utility(&p, &s)
        }).collect();
        close(&game.ablation().values, &abl, 1e-9)?;
        let loo = leave_one_out(&p, None).unwrap();
        let summed: Vec<f64> = members.iter().map(|m| m.iter().map(|j| loo[*j]).sum()).collect();
        close(&summed_leave_one_out(&p, &group_of, groups, None).unwrap().values, &summed, 1e-12)?;
    }
}

/// Symmetry: two identical points with the same label get the same value.
#[test]
fn identical_points_are_worth_the_same() {
    let train = points(
        2,
        &[
            (vec![0.0, 0.0], 1),
            (vec![1.0, 1.0], 0),
            (vec![1.0, 1.0], 0),
            (vec![2.0, 0.5], 1),
            (vec![3.0, 3.0], 0),
        ],
    );
    let test = points(2, &[(vec![0.9, 0.9], 0), (vec![0.1, 0.0], 1)]);
    for k in 1..5 {
        let p = Problem {
            train: &train,
            test: &test,
            baseline: None,
            k,
            metric: Metric::L2,
            backend: Backend::Gemm,
        };
        let v = knn_shapley(&p, None).unwrap();
        assert!((v[1] - v[2]).abs() < 1e-15, "k = {k}: {v:?}");
    }
}

/// Null player over a baseline: when K baseline points are nearer to every evaluation point
/// than a training point, it can never be among the K nearest, and its value is exactly 0;
/// without the baseline the same point is worth something (the witness).
#[test]
fn a_point_behind_k_baseline_points_is_worth_nothing() {
    let train = points(1, &[(vec![5.0], 0), (vec![0.2], 0)]);
    let base = points(1, &[(vec![0.0], 0), (vec![0.1], 1)]);
    let test = points(1, &[(vec![0.0], 0)]);
    let p = |baseline| Problem {
        train: &train,
        test: &test,
        baseline,
        k: 2,
        metric: Metric::L2,
        backend: Backend::Portable,
    };
    let with = knn_shapley(&p(Some(&base)), None).unwrap();
    assert_eq!(with, vec![0.0, 0.0]);
    let without = knn_shapley(&p(None), None).unwrap();
    assert!(without[0] > 0.0 && without[1] > 0.0, "{without:?}");
}

/// Sampled group Shapley with a fixed seed lands within its stated bound of the exact values,
/// and the same seed gives the same bits.
#[test]
fn sampled_group_shapley_is_within_its_bound() {
    let mut rows = Vec::new();
    let mut assign = Vec::new();
    for i in 0..120u32 {
        let x = f64::from(i % 17) * 0.37 - f64::from(i % 5);
        rows.push((vec![x, f64::from(i % 7)], i % 3));
        assign.push((i % 8) as usize);
    }
    let train = points(2, &rows);
    let test = points(
        2,
        &(0..30u32)
            .map(|i| (vec![f64::from(i) * 0.5 - 4.0, f64::from(i % 6)], i % 3))
            .collect::<Vec<_>>(),
    );
    let p = Problem {
        train: &train,
        test: &test,
        baseline: None,
        k: 3,
        metric: Metric::L2,
        backend: Backend::Gemm,
    };
    let game = GroupGame::new(&p, &assign, 8, None).unwrap();
    let exact = game.exact().unwrap().values;
    let s = game.sample(2000, 7, None).unwrap();
    let bound = s.bound.unwrap();
    assert!(bound < 0.2, "{bound}");
    for (a, b) in s.values.iter().zip(&exact) {
        assert!((a - b).abs() <= bound, "{a} vs {b} (bound {bound})");
    }
    assert_eq!(game.sample(2000, 7, None).unwrap(), s);
}

/// The portable backend gives the same bits whatever the thread count.
#[test]
fn portable_values_do_not_depend_on_threads() {
    let rows: Vec<(Vec<f64>, u32)> = (0..300u32)
        .map(|i| {
            (
                vec![f64::from(i).sin(), f64::from(i).cos(), f64::from(i % 11)],
                i % 4,
            )
        })
        .collect();
    let train = points(3, &rows);
    let test = points(
        3,
        &(0..70u32)
            .map(|i| (vec![f64::from(i).cos(), f64::from(i % 3), 0.5], i % 4))
            .collect::<Vec<_>>(),
    );
    let p = Problem {
        train: &train,
        test: &test,
        baseline: None,
        k: 5,
        metric: Metric::Cosine,
        backend: Backend::Portable,
    };
    let run = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| knn_shapley(&p, None).unwrap())
    };
    let one = run(1);
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&one), bits(&run(2)));
    assert_eq!(bits(&one), bits(&run(4)));
}

/// Bad input is a typed error.
#[test]
fn bad_input_is_refused() {
    assert!(Points::new(2, &[vec![1.0]], vec![0]).is_err());
    assert!(Points::new(1, &[vec![f64::NAN]], vec![0]).is_err());
    assert!(Points::new(1, &[vec![1.0]], vec![]).is_err());
    let a = points(1, &[(vec![1.0], 0)]);
    let b = points(2, &[(vec![1.0, 2.0], 0)]);
    let p = |test, k| Problem {
        train: &a,
        test,
        baseline: None,
        k,
        metric: Metric::L2,
        backend: Backend::Gemm,
    };
    assert!(knn_shapley(&p(&b, 1), None).is_err());
    assert!(knn_shapley(&p(&a, 0), None).is_err());
    let empty = Points::empty(1);
    assert!(knn_shapley(&p(&empty, 1), None).is_err());
    assert!(GroupGame::new(&p(&a, 1), &[3], 2, None).is_err());
    assert!(GroupGame::new(&p(&a, 1), &[], 2, None).is_err());
}

/// On continuous data the GEMM and portable backends agree (only near-ties could differ).
#[test]
fn gemm_and_portable_backends_agree() {
    let mut blobs = guild_valuation::synth::Blobs::new(9, 4, 24, 0.8);
    let train = blobs.points(700);
    let test = blobs.points(60);
    let base = blobs.points(90);
    for metric in [Metric::L2, Metric::Cosine] {
        for baseline in [None, Some(&base)] {
            let p = |backend| Problem {
                train: &train,
                test: &test,
                baseline,
                k: 7,
                metric,
                backend,
            };
            let a = knn_shapley(&p(Backend::Gemm), None).unwrap();
            let b = knn_shapley(&p(Backend::Portable), None).unwrap();
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-12, "{metric:?}: {x} vs {y}");
            }
        }
    }
}
