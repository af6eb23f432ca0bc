//! The manifest: lexicon-valid canonical DAG-CBOR, its records in fixed-size pages its root
//! names by CID; the same inputs, in any order, give byte-identical blocks and the same CID.

mod common;

use common::*;
use guild_bundle::manifest::PAGE_SIZE;
use guild_bundle::{
    CutState, Estimate, EvaluationLedger, Manifest, ManifestParams, Replica, SelectRequest, select,
};
use guild_core::{Cid, Ipld, cids, data};
use guild_gov::body::BundleKind;
use guild_license::Publication;
use proptest::prelude::*;

struct Setup {
    fx: Fx,
    agreement: Cid,
    replicas: Vec<Replica>,
    params: ManifestParams,
}

fn setup() -> Setup {
    let mut fx = Fx::new(6);
    for i in 1..=4 {
        fx.grant(i, "research-open");
    }
    let agreement = fx.agreement("research-open");
    let replicas: Vec<Replica> = (1..=5).map(|i| replica(&fx, i, 4)).collect();
    let params = ManifestParams {
        proposal: cid_of("a proposal"),
        created_at: at(fx.clock),
        publication: None,
        estimates: Vec::new(),
        deterministic_licence: false,
    };
    Setup {
        fx,
        agreement,
        replicas,
        params,
    }
}

fn manifest_of(
    s: &Setup,
    kind: BundleKind,
    replicas: &[Replica],
    params: &ManifestParams,
) -> Manifest {
    let mut heads = s.fx.heads();
    heads.reverse();
    let cut = CutState::at(&s.fx.log, &heads).unwrap();
    let req = SelectRequest {
        agreement: s.agreement,
        kind: kind.into(),
    };
    let sel = select(&s.fx.log, &cut, &req, replicas, &EvaluationLedger::empty()).unwrap();
    Manifest::build(&sel, params).unwrap()
}

fn manifest_bytes(
    s: &Setup,
    kind: BundleKind,
    replicas: &[Replica],
    params: &ManifestParams,
) -> (Cid, Vec<u8>) {
    manifest_of(s, kind, replicas, params).encode().unwrap()
}

#[test]
fn two_computations_give_the_same_bytes_and_cid() {
    let s = setup();
    for kind in [BundleKind::Training, BundleKind::Evaluation] {
        let a = manifest_bytes(&s, kind, &s.replicas, &s.params);
        let b = manifest_bytes(&s, kind, &s.replicas, &s.params);
        assert_eq!(a, b);
        assert_eq!(a.0, cids::cid_for_cbor(&a.1));
        // Canonical DAG-CBOR: the strict scanner accepts it, and it decodes to the same value.
        guild_core::cbor::check(&a.1).unwrap();
        let built = manifest_of(&s, kind, &s.replicas, &s.params);
        let blocks = built.blocks().unwrap();
        assert_eq!(blocks[0], a);
        assert_eq!(blocks.len(), 2, "the root and one page");
        // The root alone does not give the records.
        assert!(Manifest::decode(&a.1).is_err());
        let (root, m) = Manifest::from_car(&built.to_car().unwrap()).unwrap();
        assert_eq!(root, a.0);
        assert_eq!(m, built);
        assert_eq!(m.encode().unwrap(), a);
        assert_eq!(m.records.len(), 4 * 5);
        assert_eq!(m.credits.len(), 4);
        assert!(
            m.credits
                .iter()
                .all(|c| c.records == Some(5) && c.name.starts_with("Poet "))
        );
        assert_eq!(m.is_evaluation(), kind == BundleKind::Evaluation);
        assert_eq!(m.canary.is_some(), kind == BundleKind::Evaluation);
        assert_eq!(m.cut.replicas.len(), 4);
        assert_eq!(m.terms.id, "research-open");
    }
    // Different kinds, different manifests.
    assert_ne!(
        manifest_bytes(&s, BundleKind::Training, &s.replicas, &s.params).0,
        manifest_bytes(&s, BundleKind::Evaluation, &s.replicas, &s.params).0
    );
}

#[test]
fn the_manifest_is_a_valid_record_of_its_lexicon() {
    let s = setup();
    let m = manifest_of(&s, BundleKind::Evaluation, &s.replicas, &s.params);
    let registry = guild_lexicon::Registry::builtin();
    for (i, (cid, bytes)) in m.blocks().unwrap().iter().enumerate() {
        let value = data::decode_record(bytes).unwrap();
        registry.validate_record(&value).unwrap();
        let Ipld::Map(map) = &value else { panic!() };
        let want = if i == 0 {
            "coop.guild.bundle.manifest"
        } else {
            "coop.guild.bundle.page"
        };
        assert_eq!(map.get("$type"), Some(&Ipld::String(want.into())));
        assert_eq!(*cid, cids::cid_for_cbor(bytes));
    }
}

#[test]
fn licence_forms_and_estimates_fill_their_slots() {
    let s = setup();
    let mut params = s.params.clone();
    params.publication = Some(Publication::example());
    let m1 = s.fx.member(1);
    let m2 = s.fx.member(2);
    let est = |m: &guild_core::syntax::Did, method: &str, v: &str| Estimate {
        member: m.clone(),
        method: method.into(),
        value: v.into(),
        parameters: None,
        evaluation_set: None,
        baseline: None,
    };
    params.estimates = vec![
        est(&m2, "leave-one-out", "0.25"),
        est(&m1, "knn-shapley", "-0.0125"),
    ];
    let built = manifest_of(&s, BundleKind::Training, &s.replicas, &params);
    let (_, m) = Manifest::from_car(&built.to_car().unwrap()).unwrap();
    let forms = m.licence.unwrap();
    assert!(forms.odrl.unwrap().contains("odrl"));
    assert!(forms.rsl.is_some() && forms.tdmrep.is_some() && forms.content_usage.is_some());
    assert!(forms.content_signals.is_some() && forms.cc_signals.is_some());
    let order: Vec<_> = m.estimates.iter().map(|e| e.member.clone()).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);

    // An estimate for a member with no record, or twice, is refused.
    let cut = CutState::at(&s.fx.log, &s.fx.heads()).unwrap();
    let req = SelectRequest {
        agreement: s.agreement,
        kind: BundleKind::Training.into(),
    };
    let sel = select(
        &s.fx.log,
        &cut,
        &req,
        &s.replicas,
        &EvaluationLedger::empty(),
    )
    .unwrap();
    params.estimates = vec![est(&s.fx.member(5), "knn-shapley", "1")];
    assert!(matches!(
        Manifest::build(&sel, &params),
        Err(guild_bundle::BundleError::Estimate(..))
    ));
    params.estimates = vec![est(&m1, "knn-shapley", "1"), est(&m1, "knn-shapley", "2")];
    assert!(matches!(
        Manifest::build(&sel, &params),
        Err(guild_bundle::BundleError::Estimate(..))
    ));
}

/// A map's field.
fn field<'a>(v: &'a Ipld, k: &str) -> &'a Ipld {
    let Ipld::Map(m) = v else { panic!("not a map") };
    &m[k]
}

fn with_field(v: &Ipld, k: &str, x: Ipld) -> Ipld {
    let Ipld::Map(mut m) = v.clone() else {
        panic!("not a map")
    };
    m.insert(k.to_owned(), x);
    Ipld::Map(m)
}

#[test]
fn records_are_paged_in_fixed_pages_the_root_names() {
    let s = setup();
    let mut big = replica(&s.fx, 1, 2 * PAGE_SIZE);
    big.name = None;
    let cut = CutState::at(&s.fx.log, &s.fx.heads()).unwrap();
    let req = SelectRequest {
        agreement: s.agreement,
        kind: BundleKind::Training.into(),
    };
    let sel = select(&s.fx.log, &cut, &req, &[big], &EvaluationLedger::empty()).unwrap();
    assert_eq!(sel.records.len(), 2 * PAGE_SIZE + 1);
    let m = Manifest::build(&sel, &s.params).unwrap();
    let blocks = m.blocks().unwrap();
    assert_eq!(blocks.len(), 4, "the root and pages of 1,000, 1,000 and 1");
    let root = data::decode(&blocks[0].1).unwrap();
    assert_eq!(
        field(&root, "recordCount"),
        &Ipld::Integer(2 * PAGE_SIZE as i128 + 1)
    );
    let links: Vec<Ipld> = blocks[1..].iter().map(|(c, _)| Ipld::Link(*c)).collect();
    assert_eq!(field(&root, "recordPages"), &Ipld::List(links));
    let get = |c: &Cid| {
        blocks
            .iter()
            .find(|(b, _)| b == c)
            .map(|(_, bytes)| bytes.clone())
    };
    assert_eq!(Manifest::decode_blocks(&blocks[0].0, get).unwrap(), m);

    // A page missing, or one whose bytes are not its CID's, is refused.
    let missing = |c: &Cid| (*c != blocks[2].0).then(|| get(c)).flatten();
    assert!(Manifest::decode_blocks(&blocks[0].0, missing).is_err());
    let swapped = |c: &Cid| get(if *c == blocks[2].0 { &blocks[1].0 } else { c });
    assert!(Manifest::decode_blocks(&blocks[0].0, swapped).is_err());

    // The same records paged otherwise (the first page split in two) are refused: the
    // paging is fixed, so that every steward computes the same CIDs.
    let page0 = data::decode(&blocks[1].1).unwrap();
    let Ipld::List(entries) = field(&page0, "entries") else {
        panic!()
    };
    let half = |e: &[Ipld]| {
        data::encode_with_cid(&with_field(&page0, "entries", Ipld::List(e.to_vec()))).unwrap()
    };
    let (a, b) = (half(&entries[..500]), half(&entries[500..]));
    let mut pages = vec![a.clone(), b.clone()];
    pages.extend(blocks[2..].iter().cloned());
    let links = pages.iter().map(|(c, _)| Ipld::Link(*c)).collect();
    let new_root =
        data::encode_with_cid(&with_field(&root, "recordPages", Ipld::List(links))).unwrap();
    let get2 = |c: &Cid| {
        std::iter::once(&new_root)
            .chain(&pages)
            .find(|(b, _)| b == c)
            .map(|(_, bytes)| bytes.clone())
    };
    let err = Manifest::decode_blocks(&new_root.0, get2).unwrap_err();
    assert!(err.contains("4 record pages for 2001 records"), "{err}");

    // A recordCount that does not match the pages is refused.
    let wrong = with_field(&root, "recordCount", Ipld::Integer(2 * PAGE_SIZE as i128));
    let wrong = data::encode_with_cid(&wrong).unwrap();
    let get3 = |c: &Cid| {
        if *c == wrong.0 {
            Some(wrong.1.clone())
        } else {
            get(c)
        }
    };
    assert!(Manifest::decode_blocks(&wrong.0, get3).is_err());

    // A manifest CAR with a block that is not the manifest's is refused.
    let mut extra = blocks.clone();
    extra.push(a);
    let car =
        guild_repo::car::car_bytes(&[blocks[0].0], extra.iter().map(|(c, b)| (c, b.as_slice())));
    assert!(Manifest::from_car(&car).is_err());
    assert_eq!(Manifest::from_car(&m.to_car().unwrap()).unwrap().1, m);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The order of the replicas and of each replica's records does not change the manifest.
    #[test]
    fn input_order_does_not_change_the_manifest(seed in any::<u64>(), eval in any::<bool>()) {
        let s = setup();
        let kind = if eval { BundleKind::Evaluation } else { BundleKind::Training };
        let want = manifest_bytes(&s, kind, &s.replicas, &s.params);
        let mut rng = seed | 1;
        let mut next = move |n: usize| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % n as u64) as usize
        };
        let mut shuffled = s.replicas.clone();
        for r in &mut shuffled {
            for i in (1..r.records.len()).rev() {
                r.records.swap(i, next(i + 1));
            }
        }
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, next(i + 1));
        }
        prop_assert_eq!(manifest_bytes(&s, kind, &shuffled, &s.params), want);
    }
}
