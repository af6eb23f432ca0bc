//! Seeded synthetic labelled data for tests, benchmarks and demonstrations: Gaussian blobs,
//! one per class, and label noise. The same seed gives the same points on every machine.

use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::Points;

/// A generator of labelled blobs.
#[derive(Debug)]
pub struct Blobs {
    rng: Xoshiro256PlusPlus,
    centres: Vec<Vec<f64>>,
    spread: f64,
}

impl Blobs {
    /// `classes` blob centres in `dim` dimensions (each coordinate uniform in [−1, 1]), with
    /// points drawn around them with standard deviation `spread`.
    pub fn new(seed: u64, classes: usize, dim: usize, spread: f64) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let centres = (0..classes)
            .map(|_| (0..dim).map(|_| uniform(&mut rng) * 2.0 - 1.0).collect())
            .collect();
        Self {
            rng,
            centres,
            spread,
        }
    }

    /// `n` points, labels cycling through the classes.
    pub fn points(&mut self, n: usize) -> Points {
        let dim = self.centres.first().map_or(0, Vec::len);
        let classes = self.centres.len().max(1);
        let mut data = Vec::with_capacity(n * dim);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let c = i % classes;
            for j in 0..dim {
                let x =
                    self.centres.get(c).map_or(0.0, |v| v[j]) + self.spread * normal(&mut self.rng);
                data.push(x);
            }
            labels.push(c as u32);
        }
        Points::from_flat(dim, data, labels).unwrap_or_else(|_| Points::empty(dim))
    }

    /// Flips the labels of a `fraction` of the points (chosen at random) to another class;
    /// returns which were flipped.
    pub fn flip(&mut self, points: &Points, fraction: f64) -> (Points, Vec<bool>) {
        let classes = self.centres.len().max(2) as u64;
        let mut labels = points.labels().to_vec();
        let mut flipped = vec![false; labels.len()];
        for (l, f) in labels.iter_mut().zip(flipped.iter_mut()) {
            if uniform(&mut self.rng) < fraction {
                let shift = 1 + self.rng.next_u64() % (classes - 1);
                *l = ((u64::from(*l) + shift) % classes) as u32;
                *f = true;
            }
        }
        let out = Points::from_flat(points.dim(), points.data().to_vec(), labels)
            .unwrap_or_else(|_| points.clone());
        (out, flipped)
    }
}

/// Uniform in [0, 1).
fn uniform(rng: &mut Xoshiro256PlusPlus) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Standard normal (Box–Muller).
fn normal(rng: &mut Xoshiro256PlusPlus) -> f64 {
    let u1 = 1.0 - uniform(rng);
    let u2 = uniform(rng);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}
