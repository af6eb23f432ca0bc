//! Writes small valid inputs as seed corpora for the fuzz targets:
//! `corpus/{dag_cbor,car,mst_node,commit}/`. Run from `fuzz/`: `cargo run --example gen_seeds`.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use guild_core::data::{encode, encode_record, from_json};
use guild_core::syntax::{Nsid, RecordKey, Tid};
use guild_core::{Ipld, Keypair};
use guild_repo::{CarWriter, MemoryBlockStore, Repo, RepoError, StoreError, car, prove};

fn save(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn record(collection: &str, i: usize) -> Ipld {
    from_json(&serde_json::json!({
        "$type": collection,
        "text": format!("record {i}"),
        "n": i,
        "tags": ["a", "b"],
        "ok": true,
        "none": null,
        "raw": {"$bytes": "AAECAwQ"},
        "ref": {"$link": "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua"},
    }))
    .unwrap()
}

fn repo(n: usize) -> Repo<MemoryBlockStore> {
    let key = Keypair::from_secret_bytes(&[7; 32]);
    let records = (0..n)
        .map(|i| {
            let c = if i % 3 == 0 {
                "com.example.like"
            } else {
                "com.example.post"
            };
            let r = format!("3jzfcijpj{i:04}");
            guild_repo::prepare_record(
                &Nsid::parse(c).unwrap(),
                &RecordKey::parse(&r).unwrap(),
                &record(c, i),
            )
            .unwrap()
        })
        .collect();
    let rev = Tid::from_parts(1_700_000_000_000_000, 1);
    Repo::import(MemoryBlockStore::new(), &key, rev, records)
        .unwrap()
        .0
}

fn export(repo: &Repo<MemoryBlockStore>) -> Vec<u8> {
    let mut w = CarWriter::new(Vec::new(), &[repo.head().unwrap().commit]).unwrap();
    repo.for_each_block(|c, d| {
        w.write_block(c, d)
            .map_err(|e| RepoError::Store(StoreError(e.to_string())))
    })
    .unwrap();
    w.finish().unwrap()
}

fn main() {
    // dag_cbor: the interop fixtures' CBOR, small values, records.
    let fixtures: Vec<serde_json::Value> = serde_json::from_str(include_str!(
        "../../fixtures/atproto-interop/data-model/data-model-fixtures.json"
    ))
    .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
    for (i, f) in fixtures.iter().enumerate() {
        let bytes = b64.decode(f["cbor_base64"].as_str().unwrap()).unwrap();
        save("dag_cbor", &format!("fixture-{i}"), &bytes);
    }
    let small = [
        Ipld::Null,
        Ipld::Bool(true),
        Ipld::Integer(-1),
        Ipld::Integer(i64::MAX.into()),
        Ipld::String("héllo".into()),
        Ipld::Bytes(vec![0, 1, 2]),
        Ipld::List(vec![Ipld::Integer(1), Ipld::List(vec![])]),
        Ipld::Map(BTreeMap::from([
            ("a".to_string(), Ipld::Integer(1)),
            ("bb".to_string(), Ipld::Map(BTreeMap::new())),
        ])),
    ];
    for (i, v) in small.iter().enumerate() {
        save("dag_cbor", &format!("small-{i}"), &encode(v).unwrap());
    }
    for i in 0..3 {
        let (_, bytes) = encode_record(&record("com.example.post", i)).unwrap();
        save("dag_cbor", &format!("record-{i}"), &bytes);
    }

    // car, mst_node, commit: from repositories of a few sizes.
    for n in [1, 3, 12, 40] {
        let r = repo(n);
        let bytes = export(&r);
        save("car", &format!("repo-{n}"), &bytes);
        let head = r.head().unwrap().clone();
        let commit = r.store().get(&head.commit).unwrap().to_vec();
        save("commit", &format!("commit-{n}"), &commit);
        save("dag_cbor", &format!("commit-{n}"), &commit);
        let path = r.records().unwrap()[n / 2].0.clone();
        let blocks = prove(r.store(), head.commit, &path).unwrap();
        let proof = car::car_bytes(&[head.commit], blocks.iter().map(|(c, b)| (c, b.as_ref())));
        save("car", &format!("proof-{n}"), &proof);
        let mut k = 0;
        for (cid, bytes) in r.store().iter() {
            if guild_repo::mst::decode_node(cid, bytes).is_ok() {
                save("mst_node", &format!("node-{n}-{k}"), bytes);
                if k < 2 {
                    save("dag_cbor", &format!("node-{n}-{k}"), bytes);
                }
                k += 1;
            }
        }
    }
    // A tiny CAR with one raw block, and the empty MST node.
    let raw = b"raw block".to_vec();
    let cid = guild_core::cids::cid_for_raw(&raw);
    save(
        "car",
        "raw-1",
        &car::car_bytes(&[cid], [(&cid, raw.as_slice())]),
    );
    let mut empty = Vec::new();
    guild_repo::mst::encode_node(None, std::iter::empty(), &mut empty);
    save("mst_node", "empty", &empty);
    for t in ["dag_cbor", "car", "mst_node", "commit"] {
        let n = std::fs::read_dir(Path::new("corpus").join(t))
            .unwrap()
            .count();
        println!("corpus/{t}: {n} seeds");
    }
}
