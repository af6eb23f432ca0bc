//! Selection at a causal cut: who is in, who is out and why; the consent edge cases; the
//! agreement checks; evaluation data never in a training bundle.

mod common;

use common::*;
use guild_bundle::{
    BundleError, CutState, EvaluationLedger, Exclusion, Manifest, ManifestParams, Replica,
    SelectRequest, Selection, select,
};
use guild_core::Cid;
use guild_core::syntax::Nsid;
use guild_gov::Inserted;
use guild_gov::body::{BundleKind, Scope};
use guild_license::Refusal;

fn request(agreement: Cid, kind: BundleKind) -> SelectRequest {
    SelectRequest {
        agreement,
        kind: kind.into(),
    }
}

fn run(
    fx: &Fx,
    heads: &[Cid],
    req: &SelectRequest,
    replicas: &[Replica],
) -> Result<Selection, BundleError> {
    let cut = CutState::at(&fx.log, heads)?;
    select(&fx.log, &cut, req, replicas, &EvaluationLedger::empty())
}

/// A training selection at the current heads.
fn train_now(fx: &Fx, a: Cid, replicas: &[Replica]) -> Selection {
    run(fx, &fx.heads(), &request(a, BundleKind::Training), replicas).unwrap()
}

fn authors(s: &Selection) -> Vec<String> {
    let mut a: Vec<String> = s.records.iter().map(|r| r.author.to_string()).collect();
    a.dedup();
    a
}

/// Members 1..=3 consent to training on their whole repo; member 4 never does.
fn training_fx() -> (Fx, Cid, Vec<Replica>) {
    let mut fx = Fx::new(5);
    for i in 1..=3 {
        fx.grant(i, TRAIN);
    }
    let a = fx.agreement(TRAIN);
    let replicas = (1..=4).map(|i| replica(&fx, i, 3)).collect();
    (fx, a, replicas)
}

#[test]
fn selects_every_consented_record_in_canonical_order() {
    let (fx, a, replicas) = training_fx();
    let s = train_now(&fx, a, &replicas);
    assert_eq!(s.records.len(), 3 * 4);
    let mut want: Vec<String> = (1..=3).map(|i| fx.member(i).to_string()).collect();
    want.sort();
    assert_eq!(authors(&s), want);
    // By author, then path bytes: the file collection sorts before the text collection.
    let keys: Vec<(String, String)> = s
        .records
        .iter()
        .map(|r| (r.author.to_string(), r.path.clone()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert!(s.records[0].path.starts_with(FILE));
    assert_eq!(s.ignored, vec![fx.member(4)]);
    assert_eq!(s.replicas.len(), 3);
    assert!(s.excluded.is_empty());
    // Each record cites its author's grant op.
    let state = fx.log.state();
    for r in &s.records {
        assert_eq!(
            state
                .effective_consent(r.author.as_str(), TRAIN)
                .unwrap()
                .op(),
            r.consent
        );
    }
}

#[test]
fn a_grant_after_the_cut_is_out() {
    let (mut fx, a, replicas) = training_fx();
    let cut = fx.heads();
    fx.grant(4, TRAIN);
    let s = run(&fx, &cut, &request(a, BundleKind::Training), &replicas).unwrap();
    assert!(!authors(&s).contains(&fx.member(4).to_string()));
    assert_eq!(s.ignored, vec![fx.member(4)]);
    // At the new cut it is in.
    let s = train_now(&fx, a, &replicas);
    assert!(authors(&s).contains(&fx.member(4).to_string()));
}

#[test]
fn a_grant_effective_after_the_cut_time_is_out() {
    let (mut fx, a, replicas) = training_fx();
    let later = at(fx.clock + 3_600);
    fx.grant_scoped(4, TRAIN, Scope::Repo {}, later);
    let s = train_now(&fx, a, &replicas);
    assert!(!authors(&s).contains(&fx.member(4).to_string()));
    let (who, _, why) = &s.excluded[0];
    assert_eq!(who, &fx.member(4));
    assert_eq!(why, &Exclusion::Consent(Refusal::ConsentNotYetEffective));
    assert_eq!(s.excluded.len(), 4);
}

#[test]
fn a_revocation_before_the_cut_is_out() {
    let (mut fx, a, replicas) = training_fx();
    fx.revoke(2, TRAIN);
    let s = train_now(&fx, a, &replicas);
    assert!(!authors(&s).contains(&fx.member(2).to_string()));
    assert!(s.ignored.contains(&fx.member(2)));
    assert_eq!(s.records.len(), 2 * 4);
}

/// A revocation concurrent with the cut (not in its causal past) is not seen by the
/// selection, which is a function of the cut alone; guild-gov's rule "revocation wins over a
/// concurrent use" voids the bundle proposed at that cut, its approval is refused, and the
/// next cut leaves the member out.
#[test]
fn a_revocation_concurrent_with_the_cut_voids_the_bundle_and_the_next_cut_leaves_it_out() {
    let (mut fx, a, replicas) = training_fx();
    let cut = fx.heads();
    let req = request(a, BundleKind::Training);
    let s = run(&fx, &cut, &req, &replicas).unwrap();
    assert!(authors(&s).contains(&fx.member(2).to_string()));
    let proposal = fx.propose(a, BundleKind::Training, s.replicas.clone());
    // Member 2 revokes concurrently: the revoke's past is the cut, not the proposal.
    let revoke = fx.revoke_after(2, TRAIN, &cut);
    assert!(!fx.log.is_ancestor(revoke.id(), proposal.id()));
    let (req2, heads, params) = ManifestParams::from_proposal(&proposal).unwrap();
    assert_eq!((req2, heads), (req.clone(), cut.clone()));
    let (manifest, _) = Manifest::build(&s, &params).unwrap().encode().unwrap();
    let state = fx.log.state();
    assert_eq!(
        state.bundles.get(proposal.id()).unwrap().voided,
        Some(*revoke.id())
    );
    assert!(matches!(
        fx.approve(*proposal.id(), manifest),
        Inserted::Rejected(_)
    ));
    let s = run(&fx, &fx.heads(), &req, &replicas).unwrap();
    assert!(!authors(&s).contains(&fx.member(2).to_string()));
}

#[test]
fn a_bundle_without_concurrent_revocation_seals() {
    let (mut fx, a, replicas) = training_fx();
    let s = train_now(&fx, a, &replicas);
    let proposal = fx.propose(a, BundleKind::Training, s.replicas.clone());
    let (_, _, params) = ManifestParams::from_proposal(&proposal).unwrap();
    let (manifest, _) = Manifest::build(&s, &params).unwrap().encode().unwrap();
    assert_eq!(fx.approve(*proposal.id(), manifest), Inserted::Applied);
    let sealed = fx
        .log
        .state()
        .bundles
        .get(proposal.id())
        .unwrap()
        .sealed
        .clone();
    assert_eq!(sealed.unwrap().0, manifest);
}

#[test]
fn consent_scoped_by_collection_covers_only_those_collections() {
    let mut fx = Fx::new(3);
    let text = Nsid::parse(TEXT).unwrap();
    fx.grant_scoped(
        1,
        TRAIN,
        Scope::Collections {
            collections: vec![text],
        },
        at(0),
    );
    let a = fx.agreement(TRAIN);
    let s = train_now(&fx, a, &[replica(&fx, 1, 2)]);
    assert_eq!(s.records.len(), 2);
    assert!(
        s.records
            .iter()
            .all(|r| r.path.starts_with(&format!("{TEXT}/")))
    );
    assert_eq!(s.excluded.len(), 1);
    assert_eq!(s.excluded[0].1, format!("{FILE}/3kfile0000000"));
    assert_eq!(
        s.excluded[0].2,
        Exclusion::Consent(Refusal::OutsideConsentScope)
    );
}

#[test]
fn consent_scoped_by_record_covers_only_those_records() {
    let mut fx = Fx::new(3);
    let d = fx.member(1);
    let one = uri(&d, TEXT, "3k00000000001");
    fx.grant_scoped(1, TRAIN, Scope::Records { records: vec![one] }, at(0));
    let a = fx.agreement(TRAIN);
    let s = train_now(&fx, a, &[replica(&fx, 1, 3)]);
    let paths: Vec<&str> = s.records.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, vec![format!("{TEXT}/3k00000000001")]);
}

#[test]
fn consent_to_another_template_does_not_count() {
    let mut fx = Fx::new(3);
    fx.grant(1, "research-open");
    let a = fx.agreement(TRAIN);
    let s = train_now(&fx, a, &[replica(&fx, 1, 1)]);
    assert!(s.records.is_empty());
    assert_eq!(s.ignored, vec![fx.member(1)]);
}

#[test]
fn the_agreement_must_be_in_force_and_license_the_kind() {
    let (mut fx, a, replicas) = training_fx();
    let offered = fx.offer(TRAIN);
    let err = run(
        &fx,
        &fx.heads(),
        &request(offered, BundleKind::Training),
        &replicas,
    )
    .unwrap_err();
    assert!(matches!(err, BundleError::AgreementNotInForce(c) if c == offered));
    let unknown = cid_of("no such agreement");
    assert!(matches!(
        run(
            &fx,
            &fx.heads(),
            &request(unknown, BundleKind::Training),
            &replicas
        ),
        Err(BundleError::UnknownAgreement(_))
    ));
    // Training-Commercial-Standard grants training only.
    let err = run(
        &fx,
        &fx.heads(),
        &request(a, BundleKind::Evaluation),
        &replicas,
    )
    .unwrap_err();
    assert!(
        matches!(err, BundleError::NotLicensed(Refusal::UseNotGranted(_))),
        "{err}"
    );
    // Eval-Public never yields a training bundle, even with no record at all.
    let e = fx.agreement(EVAL);
    let err = run(&fx, &fx.heads(), &request(e, BundleKind::Training), &[]).unwrap_err();
    assert!(
        matches!(err, BundleError::NotLicensed(Refusal::EvaluationOnly)),
        "{err}"
    );
    // An agreement not yet in force at the cut.
    let before = fx.heads();
    let late = fx.agreement(TRAIN);
    assert!(matches!(
        run(
            &fx,
            &before,
            &request(late, BundleKind::Training),
            &replicas
        ),
        Err(BundleError::UnknownAgreement(_))
    ));
    let kind = SelectRequest {
        agreement: a,
        kind: guild_gov::body::Open::Unknown("fine-tuning".into()),
    };
    assert!(matches!(
        run(&fx, &fx.heads(), &kind, &replicas),
        Err(BundleError::UnknownKind(_))
    ));
}

#[test]
fn bad_cuts_and_listings_are_refused() {
    let (fx, a, mut replicas) = training_fx();
    let req = request(a, BundleKind::Training);
    assert!(matches!(
        run(&fx, &[], &req, &replicas),
        Err(BundleError::EmptyCut)
    ));
    let ghost = cid_of("ghost");
    assert!(
        matches!(run(&fx, &[ghost], &req, &replicas), Err(BundleError::UnknownHead(c)) if c == ghost)
    );
    let head = fx.heads()[0];
    let parent = fx.log.get(&head).unwrap().prev()[0];
    assert!(
        matches!(run(&fx, &[head, parent], &req, &replicas), Err(BundleError::NotHeads(c)) if c == parent)
    );
    // Heads twice or in another order name the same cut.
    let twice = [head, head];
    assert_eq!(
        run(&fx, &twice, &req, &replicas).unwrap(),
        run(&fx, &[head], &req, &replicas).unwrap()
    );
    let mut dup = replicas[0].clone();
    dup.rev = replicas[1].rev.clone();
    replicas.push(dup);
    assert!(matches!(
        run(&fx, &fx.heads(), &req, &replicas),
        Err(BundleError::DuplicateReplica(_))
    ));
    replicas.pop();
    let again = replicas[0].records[0].clone();
    replicas[0].records.push(again);
    assert!(matches!(
        run(&fx, &fx.heads(), &req, &replicas),
        Err(BundleError::DuplicateRecord(..))
    ));
}

#[test]
fn a_member_who_left_is_out() {
    let (mut fx, a, replicas) = training_fx();
    fx.write(guild_gov::body::OpBody::Leave(Default::default()), Some(3));
    let s = train_now(&fx, a, &replicas);
    assert!(!authors(&s).contains(&fx.member(3).to_string()));
}

/// Evaluation data never enters a training bundle: an evaluation bundle is sealed; a training
/// selection at a later cut cannot be made without its manifest, and with it leaves out its
/// records, by path and by CID (a copy under another path).
#[test]
fn records_delivered_for_evaluation_never_enter_a_training_bundle() {
    let mut fx = Fx::new(4);
    for i in 1..=2 {
        fx.grant(i, EVAL);
        fx.grant(i, TRAIN);
    }
    fx.grant(3, TRAIN);
    let eval = fx.agreement(EVAL);
    let train = fx.agreement(TRAIN);
    // Member 1's replica holds the records evaluated; member 2 evaluates one record only.
    let mut replicas: Vec<Replica> = (1..=3).map(|i| replica(&fx, i, 2)).collect();
    let eval_listing = vec![replicas[0].clone(), {
        let mut r = replicas[1].clone();
        r.records.truncate(1);
        r
    }];
    let cut = CutState::at(&fx.log, &fx.heads()).unwrap();
    let es = select(
        &fx.log,
        &cut,
        &request(eval, BundleKind::Evaluation),
        &eval_listing,
        &EvaluationLedger::empty(),
    )
    .unwrap();
    assert_eq!(es.records.len(), 3 + 1);
    let proposal = fx.propose(eval, BundleKind::Evaluation, es.replicas.clone());
    let (_, _, params) = ManifestParams::from_proposal(&proposal).unwrap();
    let em = Manifest::build(&es, &params).unwrap();
    let guid = em.guid.clone().unwrap();
    assert!(em.canary.as_deref().unwrap().ends_with(&guid));
    assert_eq!(guid, guild_bundle::canary_guid(proposal.id()));
    let (ecid, _) = em.encode().unwrap();
    let ebytes = em.to_car().unwrap();
    assert_eq!(fx.approve(*proposal.id(), ecid), Inserted::Applied);

    // Member 3 copies one of member 1's evaluated records under a path of their own.
    let copied = replicas[0].records[0].cid;
    replicas[2].records.push(guild_bundle::RecordListing {
        cid: copied,
        ..listing(TEXT, "3kcopy0000000", "")
    });

    let cut = CutState::at(&fx.log, &fx.heads()).unwrap();
    let req = request(train, BundleKind::Training);
    assert!(matches!(
        EvaluationLedger::for_cut(&cut, &[]),
        Err(BundleError::MissingEvaluationManifest(c)) if c == ecid
    ));
    let mut bad = ebytes.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert!(matches!(
        EvaluationLedger::for_cut(&cut, &[(ecid, &bad)]),
        Err(BundleError::ManifestDecode(..))
    ));
    let mut other = em.clone();
    other.records.pop();
    assert!(matches!(
        EvaluationLedger::for_cut(&cut, &[(ecid, &other.to_car().unwrap())]),
        Err(BundleError::ManifestMismatch(_))
    ));
    let ledger = EvaluationLedger::for_cut(&cut, &[(ecid, &ebytes)]).unwrap();
    let ts = select(&fx.log, &cut, &req, &replicas, &ledger).unwrap();
    for r in &ts.records {
        assert!(ledger.delivered(&r.author, &r.path, &r.cid).is_none());
        assert!(
            !es.records
                .iter()
                .any(|e| e.cid == r.cid || (e.author == r.author && e.path == r.path))
        );
    }
    let left_out: Vec<_> = ts
        .excluded
        .iter()
        .filter(|(_, _, w)| *w == guild_bundle::Exclusion::DeliveredForEvaluation(ecid))
        .collect();
    assert_eq!(left_out.len(), 3 + 1 + 1);
    // Member 2's records not evaluated are in; all of member 3's but the copy are in.
    assert_eq!(ts.records.len(), 2 + 3);
    // The training manifest carries no canary.
    let (_, _, p) = ManifestParams::from_proposal(&proposal).unwrap();
    let tm = Manifest::build(&ts, &p).unwrap();
    assert!(tm.canary.is_none() && tm.guid.is_none());
}

#[test]
fn only_works_are_selected_not_the_space_declaration() {
    let (fx, a, mut replicas) = training_fx();
    replicas[0].records.push(listing(
        "coop.guild.space.declaration",
        "self",
        "member 1's declaration",
    ));
    let s = train_now(&fx, a, &replicas);
    assert_eq!(s.records.len(), 3 * 4, "the declaration is not a work");
    assert!(
        s.records
            .iter()
            .all(|r| !r.path.starts_with("coop.guild.space.declaration")),
    );
    assert_eq!(s.excluded.len(), 1);
    assert!(matches!(
        &s.excluded[0].2,
        guild_bundle::Exclusion::NotAWork(c) if c.as_str() == "coop.guild.space.declaration"
    ));
}
