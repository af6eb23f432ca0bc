//! The manifest: lexicon-valid canonical DAG-CBOR; the same inputs, in any order, give
//! byte-identical bytes and the same CID.

mod common;

use common::*;
use guild_bundle::{
    BundleError, CutState, Estimate, EvaluationLedger, Manifest, ManifestParams, Replica,
    SelectRequest, select,
};
use guild_core::{Cid, cids, data};
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

fn manifest_bytes(
    s: &Setup,
    kind: BundleKind,
    replicas: &[Replica],
    params: &ManifestParams,
) -> (Cid, Vec<u8>) {
    let mut heads = s.fx.heads();
    heads.reverse();
    let cut = CutState::at(&s.fx.log, &heads).unwrap();
    let req = SelectRequest {
        agreement: s.agreement,
        kind: kind.into(),
    };
    let sel = select(&s.fx.log, &cut, &req, replicas, &EvaluationLedger::empty()).unwrap();
    Manifest::build(&sel, params).unwrap().encode().unwrap()
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
        let m = Manifest::decode(&a.1).unwrap();
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
    let (_, bytes) = manifest_bytes(&s, BundleKind::Evaluation, &s.replicas, &s.params);
    let value = data::decode_record(&bytes).unwrap();
    guild_lexicon::Registry::builtin()
        .validate_record(&value)
        .unwrap();
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
    };
    params.estimates = vec![
        est(&m2, "leave-one-out", "0.25"),
        est(&m1, "knn-shapley", "-0.0125"),
    ];
    let (_, bytes) = manifest_bytes(&s, BundleKind::Training, &s.replicas, &params);
    let m = Manifest::decode(&bytes).unwrap();
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
        Err(BundleError::Estimate(..))
    ));
    params.estimates = vec![est(&m1, "knn-shapley", "1"), est(&m1, "knn-shapley", "2")];
    assert!(matches!(
        Manifest::build(&sel, &params),
        Err(BundleError::Estimate(..))
    ));
}

#[test]
fn more_records_than_a_manifest_holds_are_refused_by_the_lexicon() {
    let s = setup();
    let mut big = replica(&s.fx, 1, 2_500);
    big.name = None;
    let cut = CutState::at(&s.fx.log, &s.fx.heads()).unwrap();
    let req = SelectRequest {
        agreement: s.agreement,
        kind: BundleKind::Training.into(),
    };
    let sel = select(&s.fx.log, &cut, &req, &[big], &EvaluationLedger::empty()).unwrap();
    assert_eq!(sel.records.len(), 2_501);
    assert!(matches!(
        Manifest::build(&sel, &s.params),
        Err(BundleError::Lexicon(_))
    ));
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
