//! Simulated convergence of 50 nodes (seeded, virtual time): a 50-member collective's 99 ops
//! written at the founder's node spread by gossip and anti-entropy over a ring-with-chords
//! mesh with 10–80 ms links and 10 % loss. Criterion times the whole simulation (wall clock,
//! signature checks included); the virtual time to convergence is printed once.
//!
//! Run: `cargo bench -p guild-gov --bench sim`.

use criterion::{Criterion, criterion_group, criterion_main};
use guild_core::syntax::Datetime;
use guild_core::{Cid, Keypair};
use guild_gov::make::{self, CharterParams};
use guild_gov::sim::{Mesh, Sim, SimConfig};
use guild_gov::{Log, Op, SignedOp};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MS: i64 = 1_000;

fn keys(n: usize) -> Vec<Keypair> {
    (0..n)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            Keypair::from_secret_bytes(&seed)
        })
        .collect()
}

/// The collective's ops: charter, then an invite and a join per member.
fn collective(keys: &[Keypair], start: i64) -> (Cid, Vec<SignedOp>) {
    let at = |s: i64| Datetime::from_unix_micros(start + s * MS);
    let genesis = Op::write(
        &CharterParams::new("Sim").body(),
        None,
        &keys[0],
        &[],
        &at(0),
    )
    .unwrap();
    let id = *genesis.id();
    let mut log = Log::new(id);
    let mut ops = vec![genesis.clone()];
    log.insert(genesis, 0);
    for (i, k) in keys.iter().enumerate().skip(1) {
        let secret = vec![i as u8; 32];
        let inv = Op::write(
            &make::invite(&secret, None, None),
            Some(&id),
            &keys[0],
            &log.heads(),
            &at(2 * i as i64),
        )
        .unwrap();
        log.insert(inv.clone(), 0);
        let join = Op::write(
            &make::join(Some((inv.id(), &secret))),
            Some(&id),
            k,
            &log.heads(),
            &at(2 * i as i64 + 1),
        )
        .unwrap();
        log.insert(join.clone(), 0);
        ops.push(inv);
        ops.push(join);
    }
    (id, ops)
}

fn run(keys: &[Keypair], id: Cid, ops: &[SignedOp], config: &SimConfig) -> i64 {
    let mut sim = Sim::new(config.clone(), id, keys.to_vec());
    for op in ops {
        sim.submit(0, op.clone()).unwrap();
    }
    let start = sim.now();
    let done = sim
        .run_until_converged(start + 600_000 * MS)
        .expect("converges");
    assert!(sim.states_equal());
    done - start
}

fn bench(c: &mut Criterion) {
    let keys = keys(50);
    let config = SimConfig {
        seed: 0x5eed_0050,
        loss: 0.10,
        latency_micros: (10 * MS, 80 * MS),
        jitter_micros: 20 * MS,
        mesh: Mesh::Ring { chords: 2 },
        ..SimConfig::default()
    };
    let (id, ops) = collective(&keys, config.start_micros);
    let virtual_us = run(&keys, id, &ops, &config);
    println!(
        "sim: 50 nodes, {} ops, 10 % loss: converged after {:.1} ms of virtual time",
        ops.len(),
        virtual_us as f64 / 1000.0
    );
    let mut g = c.benchmark_group("sim");
    g.sample_size(10);
    g.bench_function("converge_50_nodes", |b| {
        b.iter(|| run(&keys, id, &ops, &config))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
