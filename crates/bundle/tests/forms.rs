//! The dataset forms (Croissant, the dataset card, the disclosure file): golden files under
//! `tests/golden/` for a small training bundle and a small evaluation bundle, checked byte for
//! byte; `GUILD_BLESS=1 cargo test -p guild-bundle --test forms` rewrites them. The golden
//! directory is also what `scripts/conformance/run crates/bundle/tests/golden` validates with
//! the formats' own tools (mlcroissant, PyYAML).

mod common;

use std::path::PathBuf;

use common::*;
use guild_bundle::{
    BundleError, CarInfo, CutState, EvaluationLedger, Manifest, ManifestParams, SelectRequest,
    UNKNOWN, card, croissant, disclosure, select,
};
use guild_gov::body::BundleKind;
use guild_license::Publication;

fn check(name: &str, actual: &str) -> Option<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("GUILD_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return None;
    }
    match std::fs::read_to_string(&path) {
        Ok(expected) if expected == actual => None,
        Ok(_) => Some(format!("{name}: differs (GUILD_BLESS=1 to accept)")),
        Err(e) => Some(format!("{name}: {e} (GUILD_BLESS=1 to write)")),
    }
}

/// A collective of a steward and four members; members 1..=3 consent to `template`; an
/// agreement on it; replicas of members 1..=4 with two text records and a file each.
fn manifest(template: &str, kind: BundleKind, publication: bool) -> Manifest {
    let mut fx = Fx::new(5);
    for i in 1..=3 {
        fx.grant(i, template);
    }
    let agreement = fx.agreement(template);
    let replicas: Vec<_> = (1..=4).map(|i| replica(&fx, i, 2)).collect();
    let heads = fx.heads();
    let cut = CutState::at(&fx.log, &heads).unwrap();
    let req = SelectRequest {
        agreement,
        kind: kind.into(),
    };
    let sel = select(&fx.log, &cut, &req, &replicas, &EvaluationLedger::empty()).unwrap();
    let params = ManifestParams {
        proposal: cid_of("a proposal"),
        created_at: at(fx.clock + 1),
        publication: publication.then(Publication::example),
        estimates: Vec::new(),
        deterministic_licence: false,
    };
    Manifest::build(&sel, &params).unwrap()
}

fn car(name: &str) -> CarInfo {
    CarInfo {
        sha256: core::array::from_fn(|i| i as u8 * 7),
        bytes: 123_456,
        file_name: name.to_owned(),
    }
}

fn cases() -> Vec<(&'static str, Manifest, CarInfo)> {
    vec![
        (
            "training",
            manifest(TRAIN, BundleKind::Training, true),
            car("training-bundle.car"),
        ),
        (
            "evaluation",
            manifest(EVAL, BundleKind::Evaluation, false),
            car("evaluation-bundle.car"),
        ),
    ]
}

#[test]
fn golden_forms() {
    let mut failures = Vec::new();
    for (name, m, c) in cases() {
        failures.extend(check(
            &format!("{name}.croissant.json"),
            &croissant::emit(&m, &c).unwrap(),
        ));
        failures.extend(check(
            &format!("{name}.card.md"),
            &card::emit(&m, &c).unwrap(),
        ));
        failures.extend(check(
            &format!("{name}.disclosure.json"),
            &disclosure::emit(&m, &c).unwrap(),
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn forms_are_deterministic() {
    let a = cases();
    let b = cases();
    for ((_, m1, c1), (_, m2, c2)) in a.iter().zip(&b) {
        assert_eq!(m1.encode().unwrap(), m2.encode().unwrap());
        assert_eq!(
            croissant::emit(m1, c1).unwrap(),
            croissant::emit(m2, c2).unwrap()
        );
        assert_eq!(card::emit(m1, c1).unwrap(), card::emit(m2, c2).unwrap());
        assert_eq!(
            disclosure::emit(m1, c1).unwrap(),
            disclosure::emit(m2, c2).unwrap()
        );
    }
}

#[test]
fn croissant_names_the_car_the_agreement_and_every_commit() {
    for (_, m, c) in cases() {
        let v: serde_json::Value = serde_json::from_str(&croissant::emit(&m, &c).unwrap()).unwrap();
        assert_eq!(v["conformsTo"][0], "http://mlcommons.org/croissant/1.1");
        let file = &v["distribution"][0];
        assert_eq!(file["@type"], "cr:FileObject");
        assert_eq!(file["contentUrl"], c.file_name.as_str());
        assert_eq!(file["encodingFormat"], "application/vnd.ipld.car");
        assert_eq!(file["sha256"], c.sha256_hex().as_str());
        let agreement = format!("urn:guild:agreement:{}", m.agreement.0);
        assert_eq!(v["license"]["@id"], agreement.as_str());
        assert_eq!(v["usageInfo"]["url"], agreement.as_str());
        assert_eq!(v["license"]["identifier"], m.terms.id.as_str());
        let derived = v["prov:wasDerivedFrom"].as_array().unwrap();
        let authors: std::collections::BTreeSet<_> =
            m.records.iter().map(|e| e.author.clone()).collect();
        assert_eq!(derived.len(), authors.len());
        for r in m.cut.replicas.iter().filter(|r| authors.contains(&r.did)) {
            assert!(
                derived
                    .iter()
                    .any(|d| d["identifier"] == r.commit.0.to_string().as_str()
                        && d["prov:specializationOf"]["@id"] == format!("at://{}", r.did).as_str())
            );
        }
        let rows = v["recordSet"][0]["data"].as_array().unwrap();
        assert_eq!(rows.len(), m.records.len());
        assert_eq!(v["creator"].as_array().unwrap().len(), m.credits.len());
        let text = v.to_string();
        match &m.canary {
            Some(canary) => {
                assert!(v["description"].as_str().unwrap().contains(canary.as_str()));
                let lim = v["rai:dataLimitations"].to_string();
                assert!(lim.contains(canary.as_str()) && lim.contains(m.guid.as_deref().unwrap()));
            }
            None => assert!(!text.contains("canary")),
        }
    }
}

#[test]
fn card_front_matter_is_json_valued_yaml() {
    for (_, m, c) in cases() {
        let out = card::emit(&m, &c).unwrap();
        let front = out
            .strip_prefix("---\n")
            .unwrap()
            .split("\n---\n")
            .next()
            .unwrap();
        let mut keys = Vec::new();
        for line in front.lines() {
            let (k, v) = line.split_once(": ").unwrap();
            keys.push(k);
            if !matches!(v, "other" | "false") {
                serde_json::from_str::<serde_json::Value>(v).unwrap();
            }
        }
        assert_eq!(
            keys,
            [
                "license",
                "license_name",
                "license_link",
                "pretty_name",
                "tags",
                "size_categories",
                "viewer"
            ]
        );
        assert!(out.contains("guild bundle verify"));
        assert_eq!(m.is_evaluation(), out.contains("## Evaluation canary"));
    }
}

#[test]
fn size_categories_follow_hugging_face() {
    assert_eq!(card::size_category(0), "n<1K");
    assert_eq!(card::size_category(999), "n<1K");
    assert_eq!(card::size_category(1_000), "1K<n<10K");
    assert_eq!(card::size_category(2_500), "1K<n<10K");
    assert_eq!(card::size_category(1_000_000), "1M<n<10M");
    assert_eq!(card::size_category(u64::MAX), "n>1T");
}

#[test]
fn disclosure_has_twelve_ab2013_items_and_names_the_gaps() {
    for (_, m, c) in cases() {
        let v: serde_json::Value =
            serde_json::from_str(&disclosure::emit(&m, &c).unwrap()).unwrap();
        assert_eq!(v["$type"], "coop.guild.bundle.disclosure");
        assert_eq!(v["version"], 1);
        let items = v["californiaAb2013"]["items"].as_array().unwrap();
        assert_eq!(items.len(), 12);
        for (i, it) in items.iter().enumerate() {
            assert_eq!(it["item"], i as u64 + 1);
        }
        assert_eq!(items[2]["answer"]["records"], m.records.len() as u64);
        assert_eq!(items[5]["answer"]["licensed"], true);
        assert_eq!(items[1]["answer"]["purpose"], UNKNOWN);
        assert_eq!(items[10]["answer"]["firstUsed"], UNKNOWN);
        let eu = &v["euAiActTrainingSummary"];
        assert_eq!(eu["section1GeneralInformation"]["provider"], UNKNOWN);
        let licensed = &eu["section2DataSources"]["2.2.1DataLicensedFromRightholders"];
        assert_eq!(licensed["records"], m.records.len() as u64);
        assert_eq!(licensed["rightsholders"], m.credits.len() as u64);
        // Collection period: from the earliest TID record key or revision to the latest.
        let start = licensed["collectionPeriod"]["start"].as_str().unwrap();
        let end = licensed["collectionPeriod"]["end"].as_str().unwrap();
        assert!(start <= end, "{start} {end}");
    }
}

#[test]
fn a_car_file_name_must_be_plain() {
    let (_, m, _) = cases().remove(0);
    for bad in [
        "",
        ".car",
        "../x.car",
        "a b.car",
        "x.tar",
        "x/y.car",
        "\"x\".car",
    ] {
        let err = croissant::emit(&m, &car(bad)).unwrap_err();
        assert!(matches!(err, BundleError::CarFileName(_)), "{bad}: {err}");
        assert!(card::emit(&m, &car(bad)).is_err());
        assert!(disclosure::emit(&m, &car(bad)).is_err());
    }
}

#[test]
fn croissant_lists_records_inline_up_to_its_cap_only() {
    let mut m = manifest(TRAIN, BundleKind::Training, false);
    let one = m.records[0].clone();
    for (n, present) in [
        (croissant::INLINE_RECORDS, true),
        (croissant::INLINE_RECORDS + 1, false),
    ] {
        m.records = vec![one.clone(); n];
        let v: serde_json::Value =
            serde_json::from_str(&croissant::emit(&m, &car("bundle.car")).unwrap()).unwrap();
        assert_eq!(v.get("recordSet").is_some(), present, "{n} records");
    }
}
