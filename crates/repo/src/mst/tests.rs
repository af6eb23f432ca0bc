use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::blockstore::{BlockStore, MemoryBlockStore};

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../../fixtures/atproto-interop/mst/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn key_heights_match_the_interop_fixture() {
    let cases: Vec<serde_json::Value> = serde_json::from_str(&fixture("key_heights.json")).unwrap();
    assert!(!cases.is_empty());
    for c in cases {
        let key = c["key"].as_str().unwrap();
        let h = c["height"].as_u64().unwrap() as u32;
        assert_eq!(key_height(key.as_bytes()), h, "key {key:?}");
    }
}

#[test]
fn common_prefix_matches_the_interop_fixture() {
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(&fixture("common_prefix.json")).unwrap();
    for c in cases {
        let (l, r) = (c["left"].as_str().unwrap(), c["right"].as_str().unwrap());
        let n = c["len"].as_u64().unwrap() as usize;
        assert_eq!(
            common_prefix_len(l.as_bytes(), r.as_bytes()),
            n,
            "{l:?} {r:?}"
        );
    }
}

fn leaf_cid() -> Cid {
    "bafyreie5cvv4h45feadgeuwhbcutmh6t2ceseocckahdoe6uat64zmz454"
        .parse()
        .unwrap()
}

fn root_of(keys: &[&str]) -> String {
    let store = MemoryBlockStore::new();
    let mut mst = Mst::new();
    for k in keys {
        mst.insert(&store, k.as_bytes(), leaf_cid()).unwrap();
    }
    let mut blocks = Vec::new();
    mst.root_cid(&mut blocks).to_string()
}

/// Known answers from the AT Protocol reference implementation (its MST tests; re-checked
/// against npm `@atproto/repo` 0.10.14).
#[test]
fn known_roots_from_the_reference() {
    assert_eq!(
        root_of(&[]),
        "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
    );
    assert_eq!(
        root_of(&["com.example.record/3jqfcqzm3fo2j"]),
        "bafyreibj4lsc3aqnrvphp5xmrnfoorvru4wynt6lwidqbm2623a6tatzdu"
    );
    assert_eq!(
        root_of(&["com.example.record/3jqfcqzm3fx2j"]),
        "bafyreih7wfei65pxzhauoibu3ls7jgmkju4bspy4t2ha2qdjnzqvoy33ai"
    );
    assert_eq!(
        root_of(&[
            "com.example.record/3jqfcqzm3fp2j",
            "com.example.record/3jqfcqzm3fr2j",
            "com.example.record/3jqfcqzm3fs2j",
            "com.example.record/3jqfcqzm3ft2j",
            "com.example.record/3jqfcqzm4fc2j",
        ]),
        "bafyreicmahysq4n6wfuxo522m6dpiy7z7qzym3dzs756t5n7nfdgccwq7m"
    );
}

fn cid_n(n: u64) -> Cid {
    guild_core::cids::cid_for_cbor(&n.to_be_bytes())
}

fn build_incremental(store: &mut MemoryBlockStore, keys: &[(Vec<u8>, Cid)]) -> (Mst, Cid) {
    let mut mst = Mst::new();
    for (k, v) in keys {
        mst.insert(&*store, k, *v).unwrap();
    }
    let mut blocks = Vec::new();
    let root = mst.root_cid(&mut blocks);
    store.put_blocks(blocks).unwrap();
    (mst, root)
}

#[test]
fn example_keys_fixture_round_trips() {
    let text = fixture("example_keys.txt");
    let keys: Vec<(Vec<u8>, Cid)> = text
        .lines()
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, k)| (k.as_bytes().to_vec(), cid_n(i as u64)))
        .collect();
    let mut store = MemoryBlockStore::new();
    let (_, root) = build_incremental(&mut store, &keys);
    let mut sorted = keys.clone();
    sorted.sort();
    let mut bulk = Mst::from_sorted(sorted.clone()).unwrap();
    assert_eq!(bulk.root_cid(&mut Vec::new()), root);
    // Reload from the store and read everything back.
    let loaded = Mst::load(root);
    assert_eq!(loaded.entries(&store).unwrap(), sorted);
    for (k, v) in &keys {
        assert_eq!(loaded.get(&store, k).unwrap(), Some(*v));
    }
    assert_eq!(loaded.get(&store, b"A0/000000").unwrap(), None);
}

fn key_strategy() -> impl Strategy<Value = Vec<u8>> {
    // Realistic repo paths plus short keys with many shared prefixes.
    prop_oneof![
        "[a-c]{1,3}\\.[a-c]{1,3}/[2-7a-d]{1,6}".prop_map(String::into_bytes),
        "[ab]{0,8}".prop_map(String::into_bytes),
    ]
}

fn key_set() -> impl Strategy<Value = BTreeMap<Vec<u8>, u64>> {
    proptest::collection::btree_map(key_strategy(), any::<u64>(), 0..200)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn root_is_independent_of_insertion_order(set in key_set(), seed in any::<u64>()) {
        let mut items: Vec<(Vec<u8>, Cid)> = set.iter().map(|(k, v)| (k.clone(), cid_n(*v))).collect();
        let (_, sorted_root) = build_incremental(&mut MemoryBlockStore::new(), &items);
        // A seeded shuffle.
        let mut s = seed | 1;
        for i in (1..items.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            items.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let (_, shuffled_root) = build_incremental(&mut MemoryBlockStore::new(), &items);
        prop_assert_eq!(sorted_root, shuffled_root);
        let mut sorted: Vec<_> = items.clone();
        sorted.sort();
        let mut bulk = Mst::from_sorted(sorted).unwrap();
        prop_assert_eq!(bulk.root_cid(&mut Vec::new()), sorted_root);
    }

    #[test]
    fn insert_then_delete_restores_the_root(set in key_set(), extra in proptest::collection::vec(key_strategy(), 1..20)) {
        let items: Vec<(Vec<u8>, Cid)> = set.iter().map(|(k, v)| (k.clone(), cid_n(*v))).collect();
        let mut store = MemoryBlockStore::new();
        let (_, root) = build_incremental(&mut store, &items);
        // Through the store (lazy loading), add keys then remove them again.
        let mut mst = Mst::load(root);
        let mut added = Vec::new();
        for k in &extra {
            if !set.contains_key(k) && mst.insert(&store, k, cid_n(7)).unwrap().is_none() {
                added.push(k.clone());
            }
        }
        let mut blocks = Vec::new();
        let mid = mst.root_cid(&mut blocks);
        store.put_blocks(blocks).unwrap();
        let mut expect: Vec<_> = items.clone();
        expect.extend(added.iter().map(|k| (k.clone(), cid_n(7))));
        expect.sort();
        prop_assert_eq!(mid, Mst::from_sorted(expect).unwrap().root_cid(&mut Vec::new()));
        let mut mst = Mst::load(mid);
        for k in &added {
            prop_assert_eq!(mst.delete(&store, k).unwrap(), Some(cid_n(7)));
        }
        prop_assert_eq!(mst.root_cid(&mut Vec::new()), root);
    }

    #[test]
    fn diff_lists_exactly_the_changes(a in key_set(), b in key_set()) {
        let ia: Vec<_> = a.iter().map(|(k, v)| (k.clone(), cid_n(*v))).collect();
        let ib: Vec<_> = b.iter().map(|(k, v)| (k.clone(), cid_n(*v))).collect();
        let mut store = MemoryBlockStore::new();
        let (_, ra) = build_incremental(&mut store, &ia);
        let (_, rb) = build_incremental(&mut store, &ib);
        let (ops, _) = diff(&store, ra, rb).unwrap();
        let mut expect = Vec::new();
        let keys: std::collections::BTreeSet<_> = a.keys().chain(b.keys()).collect();
        for k in keys {
            match (a.get(k), b.get(k)) {
                (Some(x), None) => expect.push(DiffOp::Delete { key: k.clone(), prev: cid_n(*x) }),
                (None, Some(y)) => expect.push(DiffOp::Add { key: k.clone(), cid: cid_n(*y) }),
                (Some(x), Some(y)) if cid_n(*x) != cid_n(*y) => expect.push(DiffOp::Update { key: k.clone(), prev: cid_n(*x), cid: cid_n(*y) }),
                _ => {}
            }
        }
        prop_assert_eq!(ops, expect);
    }

    #[test]
    fn list_respects_prefix_after_and_limit(set in key_set(), prefix in "[ab]{0,2}", after in proptest::option::of(key_strategy()), limit in 1usize..50) {
        let items: Vec<_> = set.iter().map(|(k, v)| (k.clone(), cid_n(*v))).collect();
        let mut store = MemoryBlockStore::new();
        let (_, root) = build_incremental(&mut store, &items);
        let got = Mst::load(root).list(&store, prefix.as_bytes(), after.as_deref(), limit).unwrap();
        let expect: Vec<_> = items.iter()
            .filter(|(k, _)| k.starts_with(prefix.as_bytes()) && after.as_ref().is_none_or(|a| k > a))
            .take(limit).cloned().collect();
        prop_assert_eq!(got, expect);
    }
}

/// A tree tall enough that the parallel flush (feature `parallel`, layer 4 and up) takes part:
/// bulk and incremental builds, and a reload from the stored blocks, agree.
#[test]
fn large_bulk_build_equals_incremental() {
    let items: Vec<(Vec<u8>, Cid)> = (0..30_000u64)
        .map(|i| {
            (
                format!("coop.guild.data.text/{i:012}").into_bytes(),
                cid_n(i),
            )
        })
        .collect();
    let mut store = MemoryBlockStore::new();
    let (_, root) = build_incremental(&mut store, &items);
    let mut bulk = Mst::from_sorted(items.clone()).unwrap();
    let mut blocks = Vec::new();
    assert_eq!(bulk.root_cid(&mut blocks), root);
    let mut fresh = MemoryBlockStore::new();
    fresh.put_blocks(blocks).unwrap();
    assert_eq!(Mst::load(root).entries(&fresh).unwrap(), items);
}
