//! Valuation benchmarks (issue 16), on seeded Gaussian blobs ([`guild_valuation::synth::Blobs`],
//! 10 classes, spread 1, 10 % of training labels flipped), K = 5, squared L2:
//!
//! - `knn_shapley`: exact KNN-Shapley of 20 000 training points × 200 evaluation points,
//!   d = 256, with the GEMM and the portable backends, and leave-one-out for comparison;
//! - `groups_exact`: 16 members × 10 000 records each (160 000 points, d = 256), evaluated
//!   on 200 points (`GUILD_BENCH_EVAL=1000` for 1 000): `GroupGame::new` (distances, one
//!   sort per evaluation point, each group's K nearest), then `exact()` over the 65 536
//!   coalitions on the built game, then both together;
//! - `groups_sample`: the 20 000 points above in 64 groups, 200 random permutations;
//! - `tfidf`: the default featurizer (1 024 columns, word 1–2-grams, char 3–5-grams) fitted
//!   on, and transforming, 1 000 documents of ~1 KB (random words): docs/s.
//!
//! Run: `cargo bench -p guild-valuation --bench valuation` (2 min 20 s on 2 cores; with
//! `GUILD_BENCH_EVAL=1000` the `groups_exact` group alone takes about 3 min).

use std::time::Duration;

/// The allocator the `guild` binary uses, so that these figures are the product's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use guild_valuation::synth::Blobs;
use guild_valuation::{
    Backend, GroupGame, Metric, Points, Problem, TextFeaturizer, knn_shapley, leave_one_out,
};
use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

const K: usize = 5;
const DIM: usize = 256;
const CLASSES: usize = 10;

/// `n_train` training points (10 % of labels flipped) and `n_test` clean evaluation points.
fn data(seed: u64, n_train: usize, n_test: usize) -> (Points, Points) {
    let mut blobs = Blobs::new(seed, CLASSES, DIM, 1.0);
    let train = blobs.points(n_train);
    let (train, _) = blobs.flip(&train, 0.1);
    let test = blobs.points(n_test);
    (train, test)
}

fn problem<'a>(train: &'a Points, test: &'a Points, backend: Backend) -> Problem<'a> {
    Problem {
        train,
        test,
        baseline: None,
        k: K,
        metric: Metric::L2,
        backend,
    }
}

fn bench_knn(c: &mut Criterion) {
    let (train, test) = data(1, 20_000, 200);
    let mut g = c.benchmark_group("knn_shapley");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    g.bench_function("20000x200x256 gemm", |b| {
        b.iter(|| knn_shapley(&problem(&train, &test, Backend::Gemm), None).unwrap())
    });
    g.bench_function("20000x200x256 portable", |b| {
        b.iter(|| knn_shapley(&problem(&train, &test, Backend::Portable), None).unwrap())
    });
    g.bench_function("leave_one_out 20000x200x256 gemm", |b| {
        b.iter(|| leave_one_out(&problem(&train, &test, Backend::Gemm), None).unwrap())
    });
    g.finish();
}

fn bench_groups_exact(c: &mut Criterion) {
    const MEMBERS: usize = 16;
    const RECORDS: usize = 10_000;
    let eval: usize = std::env::var("GUILD_BENCH_EVAL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let (train, test) = data(2, MEMBERS * RECORDS, eval);
    // Member m holds records m·10 000 .. (m+1)·10 000 (labels cycle, so each holds all classes).
    let group_of: Vec<usize> = (0..train.len()).map(|i| i / RECORDS).collect();
    let p = problem(&train, &test, Backend::Gemm);
    let game = GroupGame::new(&p, &group_of, MEMBERS, None).unwrap();
    let mut g = c.benchmark_group("groups_exact");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(if eval > 200 { 30 } else { 10 }));
    let name = format!("16x10000x256, {eval} eval");
    g.bench_function(format!("GroupGame::new {name}"), |b| {
        b.iter(|| GroupGame::new(&p, &group_of, MEMBERS, None).unwrap())
    });
    g.bench_function(format!("exact {name}"), |b| {
        b.iter(|| game.exact().unwrap())
    });
    g.bench_function(format!("new + exact {name}"), |b| {
        b.iter(|| {
            GroupGame::new(&p, &group_of, MEMBERS, None)
                .unwrap()
                .exact()
                .unwrap()
        })
    });
    g.finish();
}

fn bench_groups_sample(c: &mut Criterion) {
    const GROUPS: usize = 64;
    let (train, test) = data(1, 20_000, 200);
    let group_of: Vec<usize> = (0..train.len()).map(|i| i * GROUPS / train.len()).collect();
    let p = problem(&train, &test, Backend::Gemm);
    let game = GroupGame::new(&p, &group_of, GROUPS, None).unwrap();
    let mut g = c.benchmark_group("groups_sample");
    g.sample_size(20);
    g.bench_function("64 groups (20000x200x256), 200 permutations", |b| {
        b.iter(|| game.sample(200, 7, None).unwrap())
    });
    g.finish();
}

/// `n` documents of ~1 KB: random words (2–9 letters) from a 5 000-word vocabulary.
fn docs(n: usize) -> Vec<String> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    let vocab: Vec<String> = (0..5000)
        .map(|_| {
            let len = 2 + (rng.next_u64() % 8) as usize;
            (0..len)
                .map(|_| char::from(b'a' + (rng.next_u64() % 26) as u8))
                .collect()
        })
        .collect();
    (0..n)
        .map(|_| {
            let mut d = String::new();
            while d.len() < 1000 {
                d.push_str(&vocab[(rng.next_u64() % vocab.len() as u64) as usize]);
                d.push(' ');
            }
            d
        })
        .collect()
}

fn bench_tfidf(c: &mut Criterion) {
    let corpus = docs(1000);
    let f = TextFeaturizer::default();
    let fitted = f.fit(&corpus).unwrap();
    let mut g = c.benchmark_group("tfidf");
    g.sample_size(10)
        .throughput(Throughput::Elements(corpus.len() as u64));
    g.bench_function("fit 1000 docs of ~1 KB", |b| {
        b.iter(|| f.fit(&corpus).unwrap())
    });
    g.bench_function("transform 1000 docs of ~1 KB", |b| {
        b.iter(|| {
            corpus
                .iter()
                .map(|d| fitted.transform(d))
                .collect::<Vec<_>>()
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_knn,
    bench_groups_exact,
    bench_groups_sample,
    bench_tfidf
);
criterion_main!(benches);
