//! Repository benchmarks: bulk MST build (100 k and 1 M records), one commit into a 1 M-record
//! repo, and CAR write + verified read of a ~100 MB repository.
//!
//! Run: `cargo bench -p guild-repo --bench repo` (figures in BENCHMARKS.md).

use std::time::Duration;

/// The allocator the `guild` binary uses, so that these figures are the product's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use cid::Cid;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use guild_core::Keypair;
use guild_core::syntax::{Nsid, RecordKey, Tid};
use guild_repo::{
    CarWriter, MemoryBlockStore, Mst, PreparedRecord, Repo, Write, read_car, verify_car,
};

/// `n` records shaped like a member's works: TID keys, a title and a body.
fn records(n: usize, body_len: usize) -> Vec<PreparedRecord> {
    let base = 1_700_000_000_000_000u64;
    (0..n)
        .map(|i| {
            let tid = Tid::from_parts(base + i as u64 * 1000, 7);
            let body: String = std::iter::repeat_n("lorem ipsum ", body_len / 12 + 1)
                .collect::<String>()[..body_len]
                .to_string();
            let json = serde_json::json!({
                "$type": "coop.guild.data.text",
                "title": format!("work {i}"),
                "body": body,
                "createdAt": "2026-01-01T00:00:00.000Z",
            });
            let (cid, bytes) = guild_core::data::encode_record_json(&json).unwrap();
            PreparedRecord {
                path: format!("coop.guild.data.text/{tid}"),
                cid,
                bytes: bytes.into(),
            }
        })
        .collect()
}

fn bulk(c: &mut Criterion) {
    let key = Keypair::from_secret_bytes(&[1; 32]);
    let mut g = c.benchmark_group("bulk_import");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    for n in [100_000usize, 1_000_000] {
        let recs = records(n, 40);
        g.throughput(Throughput::Elements(n as u64));
        // The import path: sort, tree build, encode every node, sign, store every block.
        g.bench_function(format!("repo_import_{n}"), |b| {
            b.iter_batched(
                || recs.clone(),
                |r| {
                    Repo::import(
                        MemoryBlockStore::new(),
                        &key,
                        Tid::from_parts(1_800_000_000_000_000, 1),
                        r,
                    )
                    .unwrap()
                },
                BatchSize::LargeInput,
            )
        });
        // The tree alone: build and hash every node.
        let entries: Vec<(Vec<u8>, Cid)> = recs
            .iter()
            .map(|r| (r.path.as_bytes().to_vec(), r.cid))
            .collect();
        g.bench_function(format!("mst_from_sorted_{n}"), |b| {
            b.iter_batched(
                || entries.clone(),
                |e| {
                    let mut mst = Mst::from_sorted(e).unwrap();
                    let mut blocks = Vec::new();
                    mst.root_cid(&mut blocks)
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn single_commit(c: &mut Criterion) {
    let key = Keypair::from_secret_bytes(&[1; 32]);
    let recs = records(1_000_000, 40);
    let (repo, _) = Repo::import(
        MemoryBlockStore::new(),
        &key,
        Tid::from_parts(1_800_000_000_000_000, 1),
        recs,
    )
    .unwrap();
    let head = repo.head().unwrap().commit;
    let store = repo.into_store();
    let collection = Nsid::parse("coop.guild.data.text").unwrap();
    let mut g = c.benchmark_group("commit_into_1m");
    let mut i = 0u64;
    // A fresh lazily-loaded repo each time: the commit loads only the path it touches.
    g.bench_function("one_create", |b| {
        b.iter_batched(
            || {
                i += 1;
                let repo = Repo::open(store.clone(), head).unwrap();
                let rkey = RecordKey::from(Tid::from_parts(1_900_000_000_000_000 + i, 3));
                (repo, rkey, Tid::from_parts(1_900_000_000_000_000 + i, 1))
            },
            // The repo is returned, so that dropping its (cloned) store is not timed.
            |(mut repo, rkey, rev)| {
                let result = repo
                    .apply(
                        &key,
                        rev,
                        vec![Write::Create {
                            collection: collection.clone(),
                            rkey,
                            record: guild_core::data::from_json(&serde_json::json!({
                                "$type": "coop.guild.data.text", "title": "new", "body": "x"
                            }))
                            .unwrap(),
                        }],
                    )
                    .unwrap();
                (repo, result)
            },
            BatchSize::LargeInput,
        )
    });
    // The MST insert alone, on an already-open tree.
    let mst_root = Repo::open(store.clone(), head)
        .unwrap()
        .head()
        .unwrap()
        .data;
    g.bench_function("mst_insert_and_root", |b| {
        let mut j = 0u64;
        b.iter(|| {
            j += 1;
            let mut mst = Mst::load(mst_root);
            let k = format!(
                "coop.guild.data.text/{}",
                Tid::from_parts(1_950_000_000_000_000 + j, 3)
            );
            mst.insert(&store, k.as_bytes(), mst_root).unwrap();
            let mut blocks = Vec::new();
            mst.root_cid(&mut blocks)
        })
    });
    g.finish();
}

fn car(c: &mut Criterion) {
    let key = Keypair::from_secret_bytes(&[1; 32]);
    // ~100 MB: 100 k records of ~1 KB.
    let recs = records(100_000, 1000);
    let (repo, _) = Repo::import(
        MemoryBlockStore::new(),
        &key,
        Tid::from_parts(1_800_000_000_000_000, 1),
        recs,
    )
    .unwrap();
    let head = repo.head().unwrap().commit;
    let mut bytes = Vec::new();
    {
        let mut w = CarWriter::new(&mut bytes, &[head]).unwrap();
        repo.for_each_block(|cid, data| {
            w.write_block(cid, data).unwrap();
            Ok(())
        })
        .unwrap();
    }
    let mut g = c.benchmark_group("car_100mb");
    g.sample_size(10).measurement_time(Duration::from_secs(15));
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("write", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(bytes.len());
            let mut w = CarWriter::new(&mut out, &[head]).unwrap();
            repo.for_each_block(|cid, data| {
                w.write_block(cid, data).unwrap();
                Ok(())
            })
            .unwrap();
            out.len()
        })
    });
    g.bench_function("read_and_verify", |b| {
        b.iter(|| {
            let car = read_car(&bytes).unwrap();
            verify_car(&car).unwrap().records.len()
        })
    });
    g.bench_function("sha256_same_bytes", |b| {
        b.iter(|| guild_core::cids::sha256(&bytes))
    });
    g.finish();
}

criterion_group!(benches, bulk, single_commit, car);
criterion_main!(benches);
