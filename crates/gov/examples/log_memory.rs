//! Where a governance log's memory goes, counted by a global allocator (live heap bytes, not
//! RSS): the decoded ops, the log's indexes, its tip state and its checkpoints, for a
//! collective of N members (charter, then an invite and a join per member).
//!
//! Run: `cargo run --release -p guild-gov --example log_memory -- [members]` (default 1 000).

use std::alloc::System;

use guild_core::{Cid, Keypair};
use guild_gov::make;
use guild_gov::{Log, SignedOp};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Live heap bytes.
fn live() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize + s.bytes_reallocated
}

fn key(i: usize) -> Keypair {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(i as u64 + 7).to_le_bytes());
    Keypair::from_secret_bytes(&seed)
}

fn collective(n: usize) -> (Cid, Vec<Vec<u8>>) {
    let keys: Vec<Keypair> = (0..n).map(key).collect();
    make::invited_collective("Memory", &keys, 1_800_000_000_000_000).expect("a valid collective")
}

fn report(what: &str, bytes: isize, ops: usize) {
    println!(
        "{what:<52} {:>9.2} MB {:>7.0} B/op",
        bytes as f64 / (1024.0 * 1024.0),
        bytes as f64 / ops as f64
    );
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let (id, ops) = collective(n);
    let count = ops.len();
    println!(
        "{n} members, {count} ops, {} bytes of signed ops; size_of Cid = {} B, SignedOp handle = {} B",
        ops.iter().map(Vec::len).sum::<usize>(),
        std::mem::size_of::<Cid>(),
        std::mem::size_of::<SignedOp>()
    );

    let base = live();
    let decoded: Vec<SignedOp> = ops
        .iter()
        .map(|b| SignedOp::decode_trusted(b).expect("decode"))
        .collect();
    report(
        "decoded ops (bytes + body + envelope)",
        live() - base,
        count,
    );

    let base = live();
    let mut bare = Log::new(id).with_checkpoints(usize::MAX, 0);
    for op in &decoded {
        bare.insert(op.clone(), 0);
    }
    let bare_bytes = live() - base;
    report("log without checkpoints (ops shared)", bare_bytes, count);

    let tip = bare.state();
    drop(bare);
    let tip_bytes = live() - base;
    report("  of which the tip state", tip_bytes, count);
    report(
        "  of which indexes, Meta and the rest",
        bare_bytes - tip_bytes,
        count,
    );
    drop(tip);

    let base = live();
    let mut full = Log::new(id);
    for op in &decoded {
        full.insert(op.clone(), 0);
    }
    let full_bytes = live() - base;
    report(
        "log with default checkpoints (ops shared)",
        full_bytes,
        count,
    );
    report("  of which checkpoints", full_bytes - bare_bytes, count);
    drop(full);

    drop(decoded);
    let base = live();
    let loaded = Log::load_trusted(id, ops.iter().map(Vec::as_slice));
    report(
        "Log::load_trusted (decodes its own ops)",
        live() - base,
        count,
    );
    drop(loaded);
    let decoded: Vec<SignedOp> = ops
        .iter()
        .map(|b| SignedOp::decode_trusted(b).expect("decode"))
        .collect();
    let cache = guild_gov::VerifyCache::new(count);
    for op in &decoded {
        cache.remember(op);
    }
    let base = live();
    let shared = Log::load_trusted_cached(id, ops.iter().map(Vec::as_slice), &cache);
    report(
        "Log::load_trusted_cached (ops shared with a cache)",
        live() - base,
        count,
    );
    drop(shared);
}
