//! Property and unit tests of guild-repo's public API: the `Repo` write path against a model,
//! atomicity of failed batches, revision and key rules, CAR round trips, whole-repo export and
//! verification, tamper detection (every single-bit corruption of a repo CAR), inclusion proofs
//! and their tampering, and `verify_repo` on hand-built non-canonical trees.

use std::collections::{BTreeMap, BTreeSet};

use guild_core::cids::{cid_for_cbor, cid_for_raw};
use guild_core::syntax::{Nsid, RecordKey, Tid};
use guild_core::{Cid, Ipld, Keypair};
use guild_repo::mst::{common_prefix_len, encode_node, key_height};
use guild_repo::{
    Action, BlockSource, BlockStore, CarWriter, MemoryBlockStore, Mst, MstError, ProofError, Repo,
    RepoError, StoreError, VerifyError, Write, car, prove, read_car, sign_commit, verify_car,
    verify_proof, verify_repo,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Helpers

const COLLECTIONS: [&str; 2] = ["com.example.post", "com.example.like"];
const RKEYS: [&str; 6] = ["3jzfcijpj2z2a", "3jzfcijpj2z2b", "self", "a", "b:c", "zz~"];

fn key(n: u8) -> Keypair {
    Keypair::from_secret_bytes(&[n; 32])
}

fn rev(n: u64) -> Tid {
    Tid::from_parts(1_700_000_000_000_000 + n * 1000, 7)
}

fn nsid(s: &str) -> Nsid {
    Nsid::parse(s).unwrap()
}

fn rkey(s: &str) -> RecordKey {
    RecordKey::parse(s).unwrap()
}

/// A record whose content names its path and a version, so that records at different paths
/// never share a CID.
fn record(collection: &str, rkey: &str, version: u64) -> Ipld {
    let mut m = BTreeMap::new();
    m.insert("$type".to_string(), Ipld::String(collection.to_string()));
    m.insert(
        "text".to_string(),
        Ipld::String(format!("{collection}/{rkey} v{version}")),
    );
    m.insert("v".to_string(), Ipld::Integer(version.into()));
    Ipld::Map(m)
}

fn record_cid(r: &Ipld) -> Cid {
    guild_core::data::encode_record(r).unwrap().0
}

fn create(c: &str, r: &str, v: u64) -> Write {
    Write::Create {
        collection: nsid(c),
        rkey: rkey(r),
        record: record(c, r, v),
    }
}

fn update(c: &str, r: &str, v: u64) -> Write {
    Write::Update {
        collection: nsid(c),
        rkey: rkey(r),
        record: record(c, r, v),
    }
}

fn put(c: &str, r: &str, v: u64) -> Write {
    Write::Put {
        collection: nsid(c),
        rkey: rkey(r),
        record: record(c, r, v),
    }
}

fn delete(c: &str, r: &str) -> Write {
    Write::Delete {
        collection: nsid(c),
        rkey: rkey(r),
    }
}

/// Everything observable about a repository, to compare before and after a failed write.
#[derive(Debug, PartialEq)]
struct Snapshot {
    head: Option<guild_repo::Head>,
    records: Vec<(String, Cid)>,
    blocks: usize,
}

fn snapshot(repo: &Repo<MemoryBlockStore>) -> Snapshot {
    Snapshot {
        head: repo.head().cloned(),
        records: repo.records().unwrap(),
        blocks: repo.store().len(),
    }
}

/// The repository at its head as CAR bytes, through `for_each_block` and `CarWriter`.
fn export(repo: &Repo<MemoryBlockStore>) -> Vec<u8> {
    let head = repo.head().unwrap().commit;
    let mut w = CarWriter::new(Vec::new(), &[head]).unwrap();
    repo.for_each_block(|cid, data| {
        w.write_block(cid, data)
            .map_err(|e| RepoError::Store(StoreError(e.to_string())))
    })
    .unwrap();
    w.finish().unwrap()
}

/// The MST root of a model, computed by the bulk builder.
fn model_root(model: &BTreeMap<String, Ipld>) -> Cid {
    let entries = model
        .iter()
        .map(|(p, r)| (p.as_bytes().to_vec(), record_cid(r)))
        .collect();
    Mst::from_sorted(entries).unwrap().root_cid(&mut Vec::new())
}

fn model_records(model: &BTreeMap<String, Ipld>) -> Vec<(String, Cid)> {
    model
        .iter()
        .map(|(p, r)| (p.clone(), record_cid(r)))
        .collect()
}

/// A repo with `n` records in one commit (revision 1), signed by `key(1)`.
fn small_repo(n: usize) -> Repo<MemoryBlockStore> {
    let k = key(1);
    let mut repo = Repo::empty(MemoryBlockStore::new(), k.did());
    let writes = (0..n)
        .map(|i| {
            let c = COLLECTIONS[i % 2];
            create(c, &format!("r{i:03}"), i as u64)
        })
        .collect();
    repo.apply(&k, rev(1), writes).unwrap();
    repo
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The write path against a model

#[derive(Debug, Clone)]
enum Op {
    Create(usize, usize, u64),
    Update(usize, usize, u64),
    Put(usize, usize, u64),
    Delete(usize, usize),
    /// A create whose record holds a float (breaks the data model).
    BadFloat(usize, usize),
    /// A create whose `$type` is not an NSID.
    BadType(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    let c = 0..COLLECTIONS.len();
    let r = 0..RKEYS.len();
    let v = 0u64..4;
    prop_oneof![
        4 => (c.clone(), r.clone(), v.clone()).prop_map(|(c, r, v)| Op::Create(c, r, v)),
        2 => (c.clone(), r.clone(), v.clone()).prop_map(|(c, r, v)| Op::Update(c, r, v)),
        2 => (c.clone(), r.clone(), v).prop_map(|(c, r, v)| Op::Put(c, r, v)),
        2 => (c.clone(), r.clone()).prop_map(|(c, r)| Op::Delete(c, r)),
        1 => (c.clone(), r.clone()).prop_map(|(c, r)| Op::BadFloat(c, r)),
        1 => (c, r).prop_map(|(c, r)| Op::BadType(c, r)),
    ]
}

impl Op {
    fn path(&self) -> (usize, usize) {
        match *self {
            Op::Create(c, r, _)
            | Op::Update(c, r, _)
            | Op::Put(c, r, _)
            | Op::Delete(c, r)
            | Op::BadFloat(c, r)
            | Op::BadType(c, r) => (c, r),
        }
    }

    fn write(&self) -> Write {
        let (ci, ri) = self.path();
        let (c, r) = (COLLECTIONS[ci], RKEYS[ri]);
        match *self {
            Op::Create(_, _, v) => create(c, r, v),
            Op::Update(_, _, v) => update(c, r, v),
            Op::Put(_, _, v) => put(c, r, v),
            Op::Delete(..) => delete(c, r),
            Op::BadFloat(..) => {
                let mut rec = record(c, r, 0);
                if let Ipld::Map(m) = &mut rec {
                    m.insert("f".into(), Ipld::Float(0.5));
                }
                Write::Create {
                    collection: nsid(c),
                    rkey: rkey(r),
                    record: rec,
                }
            }
            Op::BadType(..) => {
                let mut rec = record(c, r, 0);
                if let Ipld::Map(m) = &mut rec {
                    m.insert("$type".into(), Ipld::String("not an nsid".into()));
                }
                Write::Create {
                    collection: nsid(c),
                    rkey: rkey(r),
                    record: rec,
                }
            }
        }
    }
}

/// What the batch should do to the model: the new model and the expected ops, or `None` if
/// the batch must fail.
#[allow(clippy::type_complexity)]
fn expected(
    model: &BTreeMap<String, Ipld>,
    batch: &[Op],
) -> Option<(
    BTreeMap<String, Ipld>,
    Vec<(String, Action, Option<Cid>, Option<Cid>)>,
)> {
    let mut seen = BTreeSet::new();
    let mut next = model.clone();
    let mut ops = Vec::new();
    if batch.is_empty() {
        return None;
    }
    for op in batch {
        let (ci, ri) = op.path();
        let (c, r) = (COLLECTIONS[ci], RKEYS[ri]);
        let path = format!("{c}/{r}");
        if !seen.insert(path.clone()) {
            return None;
        }
        let prev = model.get(&path).map(record_cid);
        match *op {
            Op::Create(_, _, v) | Op::Update(_, _, v) | Op::Put(_, _, v) => {
                match (op, prev) {
                    (Op::Create(..), Some(_)) | (Op::Update(..), None) => return None,
                    _ => {}
                }
                let rec = record(c, r, v);
                let action = if prev.is_some() {
                    Action::Update
                } else {
                    Action::Create
                };
                ops.push((path.clone(), action, Some(record_cid(&rec)), prev));
                next.insert(path, rec);
            }
            Op::Delete(..) => {
                prev?;
                ops.push((path.clone(), Action::Delete, None, prev));
                next.remove(&path);
            }
            Op::BadFloat(..) | Op::BadType(..) => return None,
        }
    }
    Some((next, ops))
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn repo_matches_a_model(batches in prop::collection::vec(prop::collection::vec(op(), 0..6), 1..12)) {
        let k = key(1);
        let mut repo = Repo::empty(MemoryBlockStore::new(), k.did());
        let mut model: BTreeMap<String, Ipld> = BTreeMap::new();
        let mut n = 0u64;
        for batch in &batches {
            let before = snapshot(&repo);
            let writes: Vec<Write> = batch.iter().map(Op::write).collect();
            n += 1;
            let result = repo.apply(&k, rev(n), writes);
            match expected(&model, batch) {
                None => {
                    prop_assert!(result.is_err(), "batch {:?} should fail", batch);
                    prop_assert_eq!(snapshot(&repo), before);
                }
                Some((next, ops)) => {
                    let result = result.unwrap();
                    model = next;
                    let got: Vec<_> = result.ops.iter().map(|o| (o.path.clone(), o.action, o.cid, o.prev)).collect();
                    prop_assert_eq!(got, ops);
                    prop_assert_eq!(&result.head.rev, &rev(n));
                    prop_assert_eq!(result.since, before.head.map(|h| h.rev));
                    prop_assert_eq!(repo.head(), Some(&result.head));
                    // Every returned block is stored and hashes to its CID.
                    for (cid, bytes) in &result.blocks {
                        guild_core::cids::verify_block(cid, bytes).unwrap();
                        prop_assert_eq!(repo.store().get(cid), Some(&bytes[..]));
                    }
                    prop_assert_eq!(result.head.data, model_root(&model));
                }
            }
            // Read back: records, get, get_record, list.
            prop_assert_eq!(repo.records().unwrap(), model_records(&model));
            for c in COLLECTIONS {
                for r in RKEYS {
                    let path = format!("{c}/{r}");
                    let want = model.get(&path);
                    let got = repo.get_record(&nsid(c), &rkey(r)).unwrap();
                    match (want, got) {
                        (None, None) => {}
                        (Some(w), Some((cid, bytes))) => {
                            prop_assert_eq!(cid, record_cid(w));
                            prop_assert_eq!(&guild_core::data::decode_record(&bytes).unwrap(), w);
                            prop_assert_eq!(repo.get(&nsid(c), &rkey(r)).unwrap(), Some(cid));
                        }
                        (w, g) => prop_assert!(false, "{}: model {:?}, repo {:?}", path, w, g),
                    }
                }
                let listed = repo.list(&nsid(c), None, usize::MAX).unwrap();
                let want: Vec<_> = model.iter()
                    .filter_map(|(p, r)| p.strip_prefix(&format!("{c}/")).map(|k| (rkey(k), record_cid(r))))
                    .collect();
                prop_assert_eq!(&listed, &want);
                // Paging with `after` and a limit of 1 walks the same list.
                let mut paged = Vec::new();
                let mut after: Option<RecordKey> = None;
                loop {
                    let page = repo.list(&nsid(c), after.as_ref(), 1).unwrap();
                    let Some(last) = page.last() else { break };
                    after = Some(last.0.clone());
                    paged.extend(page);
                }
                prop_assert_eq!(paged, want);
            }
        }
        if let Some(head) = repo.head().cloned() {
            // The whole store verifies, and a CAR export verifies and lists the same records.
            let summary = verify_repo(repo.store(), head.commit).unwrap();
            prop_assert_eq!(&summary.records, &model_records(&model));
            let car = read_car(&export(&repo)).unwrap();
            let summary = verify_car(&car).unwrap();
            prop_assert_eq!(summary.records, model_records(&model));
            prop_assert_eq!(summary.commit, head.commit);
            prop_assert_eq!(summary.data, head.data);
            prop_assert_eq!(&summary.rev, &head.rev);
            prop_assert_eq!(summary.did, k.did());
            // Reopening from the store gives the same repository.
            let reopened = Repo::open(repo.store().clone(), head.commit).unwrap();
            prop_assert_eq!(reopened.records().unwrap(), model_records(&model));
            prop_assert_eq!(reopened.head(), Some(&head));
            // A bulk import of the model gives the same tree, and (signatures being
            // deterministic) the same commit.
            let prepared = model.iter().map(|(p, r)| {
                let (c, k2) = p.split_once('/').unwrap();
                guild_repo::prepare_record(&nsid(c), &rkey(k2), r).unwrap()
            }).collect();
            if !model.is_empty() {
                let (imported, res) = Repo::import(MemoryBlockStore::new(), &k, head.rev.clone(), prepared).unwrap();
                prop_assert_eq!(res.head.data, head.data);
                prop_assert_eq!(res.head.commit, head.commit);
                prop_assert_eq!(imported.records().unwrap(), model_records(&model));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Atomicity, revisions, keys

#[test]
fn a_bad_write_in_the_middle_leaves_the_repo_unchanged() {
    let k = key(1);
    let c = COLLECTIONS[0];
    let bad_writes: Vec<(&str, Write)> = vec![
        ("update of a missing record", update(c, "missing", 1)),
        ("delete of a missing record", delete(c, "missing")),
        ("create of an existing record", create(c, "r000", 9)),
        ("duplicate path", create(c, "new1", 1)),
        ("float in a record", {
            let mut r = record(c, "float", 0);
            if let Ipld::Map(m) = &mut r {
                m.insert("f".into(), Ipld::Float(1.5));
            }
            Write::Create {
                collection: nsid(c),
                rkey: rkey("float"),
                record: r,
            }
        }),
        ("$type not an NSID", {
            let mut r = record(c, "t", 0);
            if let Ipld::Map(m) = &mut r {
                m.insert("$type".into(), Ipld::String("nope".into()));
            }
            Write::Put {
                collection: nsid(c),
                rkey: rkey("t"),
                record: r,
            }
        }),
        (
            "record not a map",
            Write::Put {
                collection: nsid(c),
                rkey: rkey("list"),
                record: Ipld::List(vec![]),
            },
        ),
        ("integer out of range", {
            let mut r = record(c, "big", 0);
            if let Ipld::Map(m) = &mut r {
                m.insert("n".into(), Ipld::Integer(i128::from(u64::MAX)));
            }
            Write::Create {
                collection: nsid(c),
                rkey: rkey("big"),
                record: r,
            }
        }),
    ];
    for (what, bad) in bad_writes {
        let mut repo = small_repo(6);
        let before = snapshot(&repo);
        // Good writes before and after the bad one, touching several parts of the tree.
        let batch = vec![
            create(c, "new1", 1),
            update(c, "r002", 7),
            delete(COLLECTIONS[1], "r001"),
            bad,
            put(c, "new2", 1),
            create(COLLECTIONS[1], "new3", 1),
        ];
        let err = repo.apply(&k, rev(2), batch).unwrap_err();
        assert_eq!(snapshot(&repo), before, "{what}: {err}");
        match what {
            "update of a missing record" | "delete of a missing record" => {
                assert!(matches!(err, RepoError::NotFound(_)), "{what}: {err:?}")
            }
            "create of an existing record" => {
                assert!(matches!(err, RepoError::Exists(_)), "{what}: {err:?}")
            }
            "duplicate path" => assert!(matches!(err, RepoError::Duplicate(_)), "{what}: {err:?}"),
            _ => assert!(matches!(err, RepoError::Record { .. }), "{what}: {err:?}"),
        }
        // No commit other than the head is in the store.
        let commits = repo
            .store()
            .iter()
            .filter(|(cid, b)| guild_repo::verify_commit(cid, b).is_ok())
            .count();
        assert_eq!(commits, 1, "{what}");
        // The repo still works, and ends where a fresh one with the same writes ends.
        repo.apply(&k, rev(3), vec![create(c, "after", 1)]).unwrap();
        let mut fresh = small_repo(6);
        fresh
            .apply(&k, rev(3), vec![create(c, "after", 1)])
            .unwrap();
        assert_eq!(repo.head(), fresh.head(), "{what}");
        assert_eq!(repo.records().unwrap(), fresh.records().unwrap());
        verify_repo(repo.store(), repo.head().unwrap().commit).unwrap();
    }
}

#[test]
fn an_empty_batch_is_refused() {
    let mut repo = small_repo(2);
    let before = snapshot(&repo);
    assert!(matches!(
        repo.apply(&key(1), rev(5), vec![]),
        Err(RepoError::Empty)
    ));
    assert_eq!(snapshot(&repo), before);
}

#[test]
fn revisions_must_increase() {
    let k = key(1);
    let mut repo = small_repo(3);
    repo.apply(&k, rev(10), vec![create(COLLECTIONS[0], "x", 1)])
        .unwrap();
    let before = snapshot(&repo);
    for r in [rev(10), rev(9), rev(1), rev(0), Tid::from_parts(0, 0)] {
        let err = repo
            .apply(&k, r.clone(), vec![create(COLLECTIONS[0], "y", 1)])
            .unwrap_err();
        assert!(
            matches!(err, RepoError::RevNotIncreasing { .. }),
            "{r}: {err:?}"
        );
        assert_eq!(snapshot(&repo), before);
    }
    // Same timestamp, larger clock id: later.
    let later = Tid::from_parts(1_700_000_000_000_000 + 10 * 1000, 8);
    repo.apply(&k, later.clone(), vec![create(COLLECTIONS[0], "y", 1)])
        .unwrap();
    assert_eq!(repo.head().unwrap().rev, later);
}

#[test]
fn a_wrong_key_is_refused() {
    let mut repo = small_repo(3);
    let before = snapshot(&repo);
    let err = repo
        .apply(&key(2), rev(5), vec![create(COLLECTIONS[0], "x", 1)])
        .unwrap_err();
    assert!(matches!(err, RepoError::WrongKey { .. }), "{err:?}");
    assert_eq!(snapshot(&repo), before);
    // Also on a repository with no commit yet.
    let mut empty = Repo::empty(MemoryBlockStore::new(), key(1).did());
    let err = empty
        .apply(&key(3), rev(1), vec![create(COLLECTIONS[0], "x", 1)])
        .unwrap_err();
    assert!(matches!(err, RepoError::WrongKey { .. }), "{err:?}");
    assert!(empty.head().is_none());
    assert!(empty.store().is_empty());
}

#[test]
fn open_refuses_a_missing_or_forged_head() {
    let repo = small_repo(3);
    let head = repo.head().unwrap().clone();
    let store = repo.into_store();
    assert!(Repo::open(MemoryBlockStore::new(), head.commit).is_err());
    // A commit block stored under its CID but whose signature was tampered with.
    let mut bytes = store.get(&head.commit).unwrap().to_vec();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    let forged = cid_for_cbor(&bytes);
    let mut bad = store.clone();
    bad.insert(forged, bytes);
    assert!(matches!(Repo::open(bad, forged), Err(RepoError::Commit(_))));
    assert!(Repo::open(store, head.commit).is_ok());
}

#[test]
fn import_refuses_duplicates_and_matches_incremental() {
    let k = key(1);
    let recs: Vec<_> = (0..40)
        .map(|i| {
            let c = COLLECTIONS[i % 2];
            let r = format!("r{i:03}");
            guild_repo::prepare_record(&nsid(c), &rkey(&r), &record(c, &r, i as u64)).unwrap()
        })
        .collect();
    let mut dup = recs.clone();
    dup.push(recs[5].clone());
    assert!(matches!(
        Repo::import(MemoryBlockStore::new(), &k, rev(1), dup),
        Err(RepoError::Duplicate(_))
    ));
    let (imported, _) = Repo::import(MemoryBlockStore::new(), &k, rev(1), recs).unwrap();
    let incremental = small_repo(40);
    assert_eq!(imported.head(), incremental.head());
    assert_eq!(export(&imported), export(&incremental));
}

// ---------------------------------------------------------------------------------------------
// CAR

fn block() -> impl Strategy<Value = (Cid, Vec<u8>)> {
    (prop::collection::vec(any::<u8>(), 0..300), any::<bool>()).prop_map(|(b, raw)| {
        let cid = if raw {
            cid_for_raw(&b)
        } else {
            cid_for_cbor(&b)
        };
        (cid, b)
    })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn car_round_trips_with_duplicates_and_any_order(
        blocks in prop::collection::vec(block(), 0..30),
        dups in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        nroots in 1usize..4,
        seed in any::<u64>(),
    ) {
        let mut all = blocks.clone();
        if !blocks.is_empty() {
            for d in &dups {
                all.push(d.get(&blocks).clone());
            }
        }
        // Seeded shuffle.
        let mut s = seed | 1;
        for i in (1..all.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            all.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let roots: Vec<Cid> = (0..nroots)
            .map(|i| blocks.get(i).map_or_else(|| cid_for_cbor(&[i as u8]), |b| b.0))
            .collect();
        let bytes = car::car_bytes(&roots, all.iter().map(|(c, b)| (c, b.as_slice())));
        // The streaming writer gives the same bytes.
        let mut w = CarWriter::new(Vec::new(), &roots).unwrap();
        for (c, b) in &all {
            w.write_block(c, b).unwrap();
        }
        prop_assert_eq!(&w.finish().unwrap(), &bytes);
        let car = read_car(&bytes).unwrap();
        prop_assert_eq!(&car.roots, &roots);
        let want: BTreeMap<Cid, Vec<u8>> = blocks.iter().cloned().collect();
        prop_assert_eq!(car.blocks.len(), want.len());
        for (c, b) in &want {
            prop_assert_eq!(car.blocks.get(c), Some(b.as_slice()));
        }
        // Truncations never panic; one inside the last section is an error.
        for cut in (0..bytes.len()).step_by(bytes.len() / 16 + 1) {
            let _ = read_car(&bytes[..cut]);
        }
        if !all.is_empty() {
            prop_assert!(read_car(&bytes[..bytes.len() - 1]).is_err());
        }
    }

    #[test]
    fn car_reader_never_panics_on_mutations(
        blocks in prop::collection::vec(block(), 1..6),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        mode in 0u8..3,
    ) {
        let roots = [blocks[0].0];
        let mut bytes = car::car_bytes(&roots, blocks.iter().map(|(c, b)| (c, b.as_slice())));
        let i = at.index(bytes.len());
        match mode {
            0 => bytes[i] = byte,
            1 => bytes.insert(i, byte),
            _ => { bytes.remove(i); }
        }
        if let Ok(car) = read_car(&bytes) {
            // Whatever is accepted is internally consistent.
            for (c, b) in car.blocks.iter() {
                guild_core::cids::verify_block(c, b).unwrap();
            }
            let _ = verify_car(&car);
        }
    }
}

#[test]
fn car_header_problems_are_refused() {
    let a = b"\xa0".to_vec();
    let ca = cid_for_cbor(&a);
    assert!(read_car(&car::car_bytes(&[], [(&ca, a.as_slice())])).is_err());
    assert!(read_car(&[]).is_err());
    assert!(read_car(&[0x00]).is_err());
    assert!(read_car(&[0x01, 0xa0]).is_err());
    // A block under a CID of an unsupported hash or codec.
    let good = car::car_bytes(&[ca], [(&ca, a.as_slice())]);
    assert!(read_car(&good).is_ok());
    let mh = cid::multihash::Multihash::<64>::wrap(0x13, &[0u8; 64]).unwrap();
    let sha512 = Cid::new_v1(0x71, mh);
    assert!(read_car(&car::car_bytes(&[ca], [(&sha512, a.as_slice())])).is_err());
    let dagpb = Cid::new_v1(0x70, *ca.hash());
    assert!(read_car(&car::car_bytes(&[ca], [(&dagpb, a.as_slice())])).is_err());
}

// ---------------------------------------------------------------------------------------------
// Export and tamper detection

#[test]
fn exported_repo_verifies_and_lists_exactly_the_records() {
    let repo = small_repo(30);
    let bytes = export(&repo);
    let car = read_car(&bytes).unwrap();
    let summary = verify_car(&car).unwrap();
    assert_eq!(summary.records, repo.records().unwrap());
    assert_eq!(summary.records.len(), 30);
    // Every block in the CAR is needed: dropping any one makes verification fail.
    let blocks: Vec<(Cid, Vec<u8>)> = car.blocks.iter().map(|(c, b)| (*c, b.to_vec())).collect();
    for (drop, _) in &blocks {
        let mut store = MemoryBlockStore::new();
        for (c, b) in &blocks {
            if c != drop {
                store.insert(*c, b.clone());
            }
        }
        assert!(
            verify_repo(&store, summary.commit).is_err(),
            "verified without block {drop}"
        );
    }
    // A CAR with two roots is not a repository.
    let two = car::car_bytes(
        &[summary.commit, summary.data],
        blocks.iter().map(|(c, b)| (c, b.as_slice())),
    );
    assert!(matches!(
        verify_car(&read_car(&two).unwrap()),
        Err(VerifyError::Roots(2))
    ));
}

/// The result of reading and verifying possibly corrupt repo CAR bytes; a panic is reported as
/// an error string too, so that the test can name the position.
fn read_and_verify(bytes: &[u8]) -> Result<guild_repo::RepoSummary, String> {
    std::panic::catch_unwind(|| {
        let car = read_car(bytes).map_err(|e| e.to_string())?;
        verify_car(&car).map_err(|e| e.to_string())
    })
    .unwrap_or_else(|_| Err("PANIC".into()))
}

#[test]
fn every_single_bit_corruption_of_a_repo_car_is_rejected() {
    let repo = small_repo(10);
    let bytes = export(&repo);
    assert!(
        (1500..=3500).contains(&bytes.len()),
        "CAR is {} bytes",
        bytes.len()
    );
    read_and_verify(&bytes).unwrap();
    let mut false_accepts = Vec::new();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut m = bytes.clone();
            m[i] ^= 1 << bit;
            match read_and_verify(&m) {
                Ok(_) => false_accepts.push((i, bit)),
                Err(e) => assert_ne!(e, "PANIC", "panic at byte {i} bit {bit}"),
            }
        }
    }
    assert!(
        false_accepts.is_empty(),
        "corruptions accepted (byte, bit): {false_accepts:?}"
    );
    // And every truncation.
    for cut in 0..bytes.len() {
        let r = read_and_verify(&bytes[..cut]);
        assert!(r.is_err(), "truncation at {cut} accepted");
        assert_ne!(r.unwrap_err(), "PANIC");
    }
}

// ---------------------------------------------------------------------------------------------
// Proofs

fn proof_car(repo: &Repo<MemoryBlockStore>, path: &str) -> (Vec<(Cid, Vec<u8>)>, Vec<u8>) {
    let head = repo.head().unwrap().commit;
    let blocks: Vec<(Cid, Vec<u8>)> = prove(repo.store(), head, path)
        .unwrap()
        .into_iter()
        .map(|(c, b)| (c, b.to_vec()))
        .collect();
    let bytes = car::car_bytes(&[head], blocks.iter().map(|(c, b)| (c, b.as_slice())));
    (blocks, bytes)
}

fn check_proof(bytes: &[u8], path: &str) -> Result<guild_repo::ProvenRecord, String> {
    std::panic::catch_unwind(|| {
        let car = read_car(bytes).map_err(|e| e.to_string())?;
        verify_proof(&car, path).map_err(|e| e.to_string())
    })
    .unwrap_or_else(|_| Err("PANIC".into()))
}

#[test]
fn proofs_verify_and_tampered_proofs_do_not() {
    let repo = small_repo(40);
    let head = repo.head().unwrap().clone();
    let records = repo.records().unwrap();
    // Every third record and the last (signature checks are slow in debug builds).
    let chosen = records
        .iter()
        .step_by(3)
        .chain(records.last())
        .collect::<Vec<_>>();
    for (path, cid) in chosen {
        let (blocks, bytes) = proof_car(&repo, path);
        let proven = check_proof(&bytes, path).unwrap();
        assert_eq!(proven.cid, *cid);
        assert_eq!(proven.commit, head.commit);
        assert_eq!(proven.rev, head.rev);
        assert_eq!(proven.did, repo.did());
        let (c, r) = path.split_once('/').unwrap();
        let (_, rec_bytes) = repo.get_record(&nsid(c), &rkey(r)).unwrap().unwrap();
        assert_eq!(
            proven.record,
            guild_core::data::decode_record(&rec_bytes).unwrap()
        );

        // Any block removed.
        for skip in 0..blocks.len() {
            let fewer = car::car_bytes(
                &[head.commit],
                blocks
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != skip)
                    .map(|(_, (c, b))| (c, b.as_slice())),
            );
            let r = check_proof(&fewer, path);
            assert!(r.is_err(), "{path}: proof without block {skip} accepted");
            assert_ne!(r.unwrap_err(), "PANIC");
        }
        // Other paths: the neighbours in key order (which share the most of the MST path)
        // and the two ends of the tree.
        let i = records.iter().position(|(p, _)| p == path).unwrap();
        let others = [0, i.saturating_sub(1), i + 1, records.len() - 1];
        for (other, _) in others
            .iter()
            .filter_map(|&j| records.get(j))
            .filter(|(p, _)| p != path)
        {
            let r = check_proof(&bytes, other);
            assert!(r.is_err(), "proof of {path} accepted for {other}");
            assert_ne!(r.unwrap_err(), "PANIC");
        }
        for absent in ["com.example.post/zzzz", "com.example.none/r001", "x"] {
            assert!(check_proof(&bytes, absent).is_err());
        }
    }
}

#[test]
fn every_single_bit_corruption_of_a_proof_is_rejected() {
    let repo = small_repo(40);
    let records = repo.records().unwrap();
    // A few paths, including the first and last (the ends of the tree).
    for (path, _) in [
        &records[0],
        &records[records.len() / 2],
        &records[records.len() - 1],
    ] {
        let (_, bytes) = proof_car(&repo, path);
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut m = bytes.clone();
                m[i] ^= 1 << bit;
                let r = check_proof(&m, path);
                assert!(r.is_err(), "{path}: flip of byte {i} bit {bit} accepted");
                assert_ne!(r.unwrap_err(), "PANIC", "{path}: byte {i} bit {bit}");
            }
        }
    }
}

#[test]
fn proofs_of_absent_records_are_not_made() {
    let repo = small_repo(10);
    let head = repo.head().unwrap().commit;
    assert!(matches!(
        prove(repo.store(), head, "com.example.post/nope"),
        Err(ProofError::Absent(_))
    ));
    assert!(prove(&MemoryBlockStore::new(), head, "com.example.post/r000").is_err());
}

proptest! {
    #![proptest_config(config(32))]

    #[test]
    fn proofs_hold_for_random_repos(
        paths in prop::collection::btree_set("com\\.[a-c]{1,3}\\.[a-c]{1,3}/[a-z0-9]{1,8}", 1..60),
        pick in any::<prop::sample::Index>(),
        other in any::<prop::sample::Index>(),
    ) {
        let k = key(4);
        let paths: Vec<String> = paths.into_iter().collect();
        let prepared = paths.iter().map(|p| {
            let (c, r) = p.split_once('/').unwrap();
            guild_repo::prepare_record(&nsid(c), &rkey(r), &record(c, r, 0)).unwrap()
        }).collect();
        let (repo, _) = Repo::import(MemoryBlockStore::new(), &k, rev(1), prepared).unwrap();
        let path = pick.get(&paths);
        let (blocks, bytes) = proof_car(&repo, path);
        prop_assert!(check_proof(&bytes, path).is_ok());
        let other = other.get(&paths);
        if other != path {
            prop_assert!(check_proof(&bytes, other).is_err());
        }
        for skip in 0..blocks.len() {
            let fewer = car::car_bytes(
                &[repo.head().unwrap().commit],
                blocks.iter().enumerate().filter(|(i, _)| *i != skip).map(|(_, (c, b))| (c, b.as_slice())),
            );
            prop_assert!(check_proof(&fewer, path).is_err());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-built trees: verify_repo must refuse every non-canonical shape

/// Builds blocks by hand: records, MST nodes (correct or not), and a signed commit.
struct Forge {
    store: MemoryBlockStore,
    key: Keypair,
}

/// One wire entry: `(p, k suffix, v, t)`.
type RawEntry = (u64, Vec<u8>, Cid, Option<Cid>);

impl Forge {
    fn new() -> Self {
        Forge {
            store: MemoryBlockStore::new(),
            key: key(9),
        }
    }

    fn put(&mut self, bytes: Vec<u8>) -> Cid {
        let cid = cid_for_cbor(&bytes);
        self.store.insert(cid, bytes);
        cid
    }

    /// Stores a record for `path` and returns its CID.
    fn record(&mut self, path: &str) -> Cid {
        let (c, r) = path.split_once('/').unwrap();
        let (cid, bytes) = guild_core::data::encode_record(&record(c, r, 0)).unwrap();
        self.store.insert(cid, bytes);
        cid
    }

    /// A node with exactly these wire entries.
    fn raw_node(&mut self, left: Option<Cid>, entries: &[RawEntry]) -> Cid {
        let link = |c: &Option<Cid>| c.map_or(Ipld::Null, Ipld::Link);
        let e = entries
            .iter()
            .map(|(p, k, v, t)| {
                let mut m = BTreeMap::new();
                m.insert("k".to_string(), Ipld::Bytes(k.clone()));
                m.insert("p".to_string(), Ipld::Integer(i128::from(*p)));
                m.insert("t".to_string(), link(t));
                m.insert("v".to_string(), Ipld::Link(*v));
                Ipld::Map(m)
            })
            .collect();
        let mut m = BTreeMap::new();
        m.insert("e".to_string(), Ipld::List(e));
        m.insert("l".to_string(), link(&left));
        let bytes = guild_core::data::encode(&Ipld::Map(m)).unwrap();
        self.put(bytes)
    }

    /// A correctly compressed node over full keys `(key, right subtree)`; records are created.
    fn node(&mut self, left: Option<Cid>, entries: &[(&str, Option<Cid>)]) -> Cid {
        let vals: Vec<Cid> = entries.iter().map(|(k, _)| self.record(k)).collect();
        let mut out = Vec::new();
        encode_node(
            left.as_ref(),
            entries
                .iter()
                .zip(&vals)
                .map(|((k, t), v)| (k.as_bytes(), v, t.as_ref())),
            &mut out,
        );
        // The direct encoder and the generic one agree.
        let mut prev: &[u8] = &[];
        let raw: Vec<RawEntry> = entries
            .iter()
            .zip(&vals)
            .map(|((k, t), v)| {
                let p = common_prefix_len(prev, k.as_bytes());
                prev = k.as_bytes();
                (p as u64, k.as_bytes()[p..].to_vec(), *v, *t)
            })
            .collect();
        let via_raw = self.raw_node(left, &raw);
        assert_eq!(cid_for_cbor(&out), via_raw);
        via_raw
    }

    fn commit(&mut self, data: Cid) -> Cid {
        let (cid, bytes) = sign_commit(&self.key, data, &rev(1));
        self.store.insert(cid, bytes);
        cid
    }

    fn verify(&mut self, root: Cid) -> Result<guild_repo::RepoSummary, VerifyError> {
        let commit = self.commit(root);
        verify_repo(&self.store, commit)
    }
}

/// `n` valid record paths of key height `h`, in order.
fn keys_of_height(h: u32, n: usize) -> Vec<String> {
    let mut out: Vec<String> = (0..)
        .map(|i| format!("com.example.post/k{i:05}"))
        .filter(|k| key_height(k.as_bytes()) == h)
        .take(n)
        .collect();
    out.sort();
    out
}

fn is_bad_node(e: &VerifyError, what: &str) -> bool {
    matches!(e, VerifyError::Mst(MstError::BadNode { reason, .. }) if reason.contains(what))
}

#[test]
fn hand_built_canonical_tree_verifies() {
    // Layer 1 root with one key; layer 0 subtrees left and right of it.
    let top = keys_of_height(1, 1).remove(0);
    let low: Vec<String> = keys_of_height(0, 40);
    let below: Vec<&str> = low
        .iter()
        .map(String::as_str)
        .filter(|k| *k < top.as_str())
        .take(3)
        .collect();
    let above: Vec<&str> = low
        .iter()
        .map(String::as_str)
        .filter(|k| *k > top.as_str())
        .take(3)
        .collect();
    assert!(!below.is_empty() && !above.is_empty());
    let mut f = Forge::new();
    let l = f.node(None, &below.iter().map(|k| (*k, None)).collect::<Vec<_>>());
    let r = f.node(None, &above.iter().map(|k| (*k, None)).collect::<Vec<_>>());
    let root = f.node(Some(l), &[(&top, Some(r))]);
    let summary = f.verify(root).unwrap();
    let mut all: Vec<&str> = below.clone();
    all.push(&top);
    all.extend(&above);
    assert_eq!(
        summary
            .records
            .iter()
            .map(|(p, _)| p.as_str())
            .collect::<Vec<_>>(),
        all
    );
    // It is the tree the library builds for the same records.
    let entries = summary
        .records
        .iter()
        .map(|(p, c)| (p.as_bytes().to_vec(), *c))
        .collect();
    assert_eq!(
        Mst::from_sorted(entries).unwrap().root_cid(&mut Vec::new()),
        root
    );
}

#[test]
fn wrong_prefix_compression_is_refused() {
    let ks = keys_of_height(0, 3);
    let mut f = Forge::new();
    let v: Vec<Cid> = ks.iter().map(|k| f.record(k)).collect();
    let p = common_prefix_len(ks[0].as_bytes(), ks[1].as_bytes());
    assert!(p > 2);
    let k1 = ks[1].as_bytes();
    let cases: Vec<(&str, Vec<RawEntry>)> = vec![
        (
            "not maximal",
            vec![
                (0, ks[0].as_bytes().to_vec(), v[0], None),
                (0, k1.to_vec(), v[1], None),
            ],
        ),
        (
            "not maximal",
            vec![
                (0, ks[0].as_bytes().to_vec(), v[0], None),
                ((p - 1) as u64, k1[p - 1..].to_vec(), v[1], None),
            ],
        ),
        (
            "longer than the previous key",
            vec![
                (0, ks[0].as_bytes().to_vec(), v[0], None),
                (ks[0].len() as u64 + 1, b"x".to_vec(), v[1], None),
            ],
        ),
        (
            "first entry",
            vec![(1, ks[0].as_bytes()[1..].to_vec(), v[0], None)],
        ),
    ];
    for (what, entries) in cases {
        let root = f.raw_node(None, &entries);
        let e = f.verify(root).unwrap_err();
        assert!(is_bad_node(&e, what), "{what}: {e:?}");
    }
}

#[test]
fn keys_at_the_wrong_layer_are_refused() {
    let h0 = keys_of_height(0, 10);
    let h1 = keys_of_height(1, 4);
    let mut f = Forge::new();
    // One node mixing heights 0 and 1.
    let mut mixed: Vec<&str> = vec![&h0[0], &h1[0]];
    mixed.sort();
    let root = f.node(None, &mixed.iter().map(|k| (*k, None)).collect::<Vec<_>>());
    let e = f.verify(root).unwrap_err();
    assert!(
        matches!(e, VerifyError::Mst(MstError::WrongLayer { .. })),
        "{e:?}"
    );
    // A height-1 key in a child of a layer-1 node (the child must be layer 0).
    let child = f.node(None, &[(&h1[0], None)]);
    let root = f.node(Some(child), &[(&h1[1], None)]);
    let e = f.verify(root).unwrap_err();
    assert!(
        matches!(&e, VerifyError::Structure { reason, .. } if reason.contains("layer")),
        "{e:?}"
    );
    // A layer-0 node with a subtree.
    let leaf = f.node(None, &[(&h0[0], None)]);
    let root = f.node(Some(leaf), &[(&h0[1], None)]);
    let e = f.verify(root).unwrap_err();
    assert!(
        matches!(&e, VerifyError::Structure { reason, .. } if reason.contains("layer-0")),
        "{e:?}"
    );
    // A layer-2 root whose child skips layer 1 (holds height-0 keys directly).
    let h2 = keys_of_height(2, 1).remove(0);
    let lows: Vec<&str> = h0
        .iter()
        .map(String::as_str)
        .filter(|k| *k < h2.as_str())
        .take(2)
        .collect();
    if !lows.is_empty() {
        let child = f.node(None, &lows.iter().map(|k| (*k, None)).collect::<Vec<_>>());
        let root = f.node(Some(child), &[(&h2, None)]);
        let e = f.verify(root).unwrap_err();
        assert!(
            matches!(&e, VerifyError::Structure { reason, .. } if reason.contains("layer")),
            "{e:?}"
        );
    }
}

#[test]
fn unsorted_keys_are_refused() {
    let h0 = keys_of_height(0, 4);
    let mut f = Forge::new();
    // Within one node: descending, and a repeated key.
    let v: Vec<Cid> = h0.iter().map(|k| f.record(k)).collect();
    let root = f.raw_node(
        None,
        &[
            (0, h0[1].as_bytes().to_vec(), v[1], None),
            (0, h0[0].as_bytes().to_vec(), v[0], None),
        ],
    );
    let e = f.verify(root).unwrap_err();
    assert!(
        matches!(e, VerifyError::Mst(MstError::BadNode { .. })),
        "{e:?}"
    );
    let p = h0[0].len() as u64;
    let root = f.raw_node(
        None,
        &[
            (0, h0[0].as_bytes().to_vec(), v[0], None),
            (p, Vec::new(), v[1], None),
        ],
    );
    let e = f.verify(root).unwrap_err();
    assert!(
        matches!(e, VerifyError::Mst(MstError::BadNode { .. })),
        "{e:?}"
    );
    // Across nodes: a left subtree holding a key greater than its parent's first key.
    let h1 = keys_of_height(1, 1).remove(0);
    let greater: Vec<String> = keys_of_height(0, 60)
        .into_iter()
        .filter(|k| *k > h1)
        .take(2)
        .collect();
    let child = f.node(None, &[(&greater[0], None)]);
    let root = f.node(Some(child), &[(&h1, None)]);
    let e = f.verify(root).unwrap_err();
    assert!(matches!(e, VerifyError::Order { .. }), "{e:?}");
}

#[test]
fn empty_and_untrimmed_nodes_are_refused() {
    let h1 = keys_of_height(1, 1).remove(0);
    let h0 = keys_of_height(0, 2);
    let mut f = Forge::new();
    // An inner node with no entries and no subtree.
    let empty = f.raw_node(None, &[]);
    let root = f.node(Some(empty), &[(&h1, None)]);
    let e = f.verify(root).unwrap_err();
    assert!(
        matches!(&e, VerifyError::Structure { reason, .. } if reason.contains("no entries")),
        "{e:?}"
    );
    // An untrimmed root: no entries, only a left subtree.
    let leaf = f.node(None, &[(&h0[0], None), (&h0[1], None)]);
    let root = f.raw_node(Some(leaf), &[]);
    let e = f.verify(root).unwrap_err();
    assert!(
        matches!(&e, VerifyError::Structure { reason, .. } if reason.contains("trimmed")),
        "{e:?}"
    );
    // The empty tree itself is fine.
    let root = f.raw_node(None, &[]);
    assert!(f.verify(root).unwrap().records.is_empty());
    // A node that appears twice in the tree.
    let h1s = keys_of_height(1, 2);
    let sub_keys: Vec<String> = keys_of_height(0, 200)
        .into_iter()
        .filter(|k| *k < h1s[0])
        .take(1)
        .collect();
    let sub = f.node(None, &[(&sub_keys[0], None)]);
    let root = f.node(Some(sub), &[(&h1s[0], Some(sub)), (&h1s[1], None)]);
    assert!(f.verify(root).is_err());
}

#[test]
fn bad_keys_and_records_are_refused() {
    let mut f = Forge::new();
    // A key that is not a record path.
    let not_path = (0..)
        .map(|i| format!("nopath{i}"))
        .find(|k| key_height(k.as_bytes()) == 0)
        .unwrap();
    let v = f.record("com.example.post/x");
    let root = f.raw_node(None, &[(0, not_path.into_bytes(), v, None)]);
    assert!(matches!(
        f.verify(root).unwrap_err(),
        VerifyError::BadKey { .. }
    ));
    // A record block that is missing.
    let k = keys_of_height(0, 1).remove(0);
    let missing = cid_for_cbor(b"\xa0nothing");
    let root = f.raw_node(None, &[(0, k.as_bytes().to_vec(), missing, None)]);
    assert!(matches!(
        f.verify(root).unwrap_err(),
        VerifyError::Missing { .. }
    ));
    // A record block that is not a record (no $type).
    let not_record = f.put(guild_core::data::encode(&Ipld::Map(BTreeMap::new())).unwrap());
    let root = f.raw_node(None, &[(0, k.as_bytes().to_vec(), not_record, None)]);
    assert!(matches!(
        f.verify(root).unwrap_err(),
        VerifyError::BadRecord { .. }
    ));
    // A raw (non-dag-cbor) record block.
    let raw_bytes = b"raw".to_vec();
    let raw = cid_for_raw(&raw_bytes);
    f.store.insert(raw, raw_bytes);
    let root = f.raw_node(None, &[(0, k.as_bytes().to_vec(), raw, None)]);
    assert!(matches!(
        f.verify(root).unwrap_err(),
        VerifyError::BadRecord { .. }
    ));
    // A missing root and a missing commit.
    let commit = f.commit(cid_for_cbor(b"\x80"));
    assert!(matches!(
        verify_repo(&f.store, commit).unwrap_err(),
        VerifyError::Missing { .. }
    ));
    assert!(matches!(
        verify_repo(&f.store, cid_for_cbor(b"\x81\x01")).unwrap_err(),
        VerifyError::Missing { .. }
    ));
}

#[test]
fn block_source_is_used_through_references() {
    // verify_repo takes any BlockSource, including a reference to a store.
    let repo = small_repo(3);
    let store: &MemoryBlockStore = repo.store();
    let head = repo.head().unwrap().commit;
    assert!(store.has_block(&head).unwrap());
    let mut copy = MemoryBlockStore::new();
    copy.put_blocks(store.iter().map(|(c, b)| (*c, b.to_vec().into())).collect())
        .unwrap();
    assert_eq!(verify_repo(&copy, head).unwrap().records.len(), 3);
}

/// The bytes of `cid` (a CIDv1 dag-cbor sha2-256) with its multihash code 0x12 written as a
/// 10-byte varint whose last byte overflows 64 bits (`92 80 80 80 80 80 80 80 80 02`). The
/// `cid` crate reads these bytes as the very same CID, so a decoder that does not compare the
/// bytes with the CID's own encoding accepts a second encoding of one value.
fn overlong_cid_bytes(cid: &Cid) -> Vec<u8> {
    let canon = cid.to_bytes();
    assert_eq!(canon[..4], [0x01, 0x71, 0x12, 0x20]);
    let mut out = vec![
        0x01, 0x71, 0x92, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02,
    ];
    out.extend_from_slice(&canon[3..]);
    assert_eq!(Cid::read_bytes(out.as_slice()).unwrap(), *cid);
    out
}

#[test]
fn a_node_with_a_non_canonical_cid_encoding_is_refused() {
    let mut f = Forge::new();
    let k = keys_of_height(0, 1).remove(0);
    let good_cid = f.node(None, &[(&k, None)]);
    let good = f.store.get(&good_cid).unwrap().to_vec();
    guild_repo::mst::decode_node(&good_cid, &good).unwrap();
    f.verify(good_cid).unwrap();
    // The same node with its one value link written in the overlong form.
    let v = f.record(&k);
    let mut canon_link = vec![0xd8, 0x2a, 0x58, 0x25, 0x00];
    canon_link.extend_from_slice(&v.to_bytes());
    let at = good
        .windows(canon_link.len())
        .position(|w| w == canon_link.as_slice())
        .unwrap();
    let long = overlong_cid_bytes(&v);
    let mut bad = good[..at].to_vec();
    bad.extend_from_slice(&[0xd8, 0x2a, 0x58, (long.len() + 1) as u8, 0x00]);
    bad.extend_from_slice(&long);
    bad.extend_from_slice(&good[at + canon_link.len()..]);
    let bad_cid = f.put(bad.clone());
    assert_ne!(bad_cid, good_cid);
    // The generic strict decoder refuses it ...
    assert!(guild_core::data::decode(&bad).is_err());
    // ... and so must the MST node decoder and full verification: otherwise one tree has two
    // root CIDs.
    assert!(
        guild_repo::mst::decode_node(&bad_cid, &bad).is_err(),
        "decode_node accepted a non-canonical CID encoding"
    );
    assert!(
        f.verify(bad_cid).is_err(),
        "verify_repo accepted a tree whose node is not canonically encoded"
    );
}

#[test]
fn records_with_non_canonical_links_are_refused() {
    let target = cid_for_cbor(b"\xa0");
    let mut canon = vec![0x00];
    canon.extend_from_slice(&target.to_bytes());
    let mut trailing = canon.clone();
    trailing.push(0x00);
    let mut overlong = vec![0x00];
    overlong.extend_from_slice(&overlong_cid_bytes(&target));
    let record_with = |link: &[u8]| {
        // {"l": link, "$type": "com.example.post"} (canonical key order: shorter first).
        let mut r = vec![0xa2, 0x61, b'l', 0xd8, 0x2a, 0x58, link.len() as u8];
        r.extend_from_slice(link);
        r.extend_from_slice(&[0x65, b'$', b't', b'y', b'p', b'e', 0x70]);
        r.extend_from_slice(b"com.example.post");
        r
    };
    let k = keys_of_height(0, 1).remove(0);
    for (what, link, ok) in [
        ("canonical", canon, true),
        ("trailing byte", trailing, false),
        ("overlong varint", overlong, false),
    ] {
        let mut f = Forge::new();
        let bytes = record_with(&link);
        assert_eq!(
            guild_core::data::decode_record(&bytes).is_ok(),
            ok,
            "{what}"
        );
        let rec = f.put(bytes);
        let root = f.raw_node(None, &[(0, k.as_bytes().to_vec(), rec, None)]);
        let r = f.verify(root);
        if ok {
            r.unwrap();
        } else {
            assert!(
                matches!(r, Err(VerifyError::BadRecord { .. })),
                "{what}: {r:?}"
            );
        }
    }
}
