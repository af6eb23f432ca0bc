//! The AT Protocol interop lexicon fixtures (`fixtures/atproto-interop/lexicon/`): valid
//! lexicons accepted, invalid ones refused, valid records accepted and every invalid record
//! rejected against the `catalog/` documents.

use std::path::PathBuf;

use guild_core::Ipld;
use guild_lexicon::{LexiconDoc, LoadErrorKind, Registry, ValidationError};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/atproto-interop/lexicon")
}

fn cases(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures().join(name)).unwrap();
    match serde_json::from_str(&text).unwrap() {
        Value::Array(cases) => cases,
        _ => panic!("{name} is not an array"),
    }
}

fn catalog() -> Registry {
    let mut registry = Registry::new();
    let errors = registry.extend_from_path(&fixtures().join("catalog"));
    // procedure.json refers to app.bsky.actor.defs#preferences, which the catalog does not
    // hold: it is refused for that alone, and the rest loads.
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        matches!(&errors[0].kind, LoadErrorKind::Inconsistent(p)
            if p.nsid.as_str() == "example.lexicon.procedure"
            && p.reason.contains("app.bsky.actor.defs")),
        "{}",
        errors[0]
    );
    for nsid in [
        "example.lexicon.record",
        "example.lexicon.query",
        "example.lexicon.subscription",
        "example.lexicon.permissionset",
    ] {
        assert!(registry.contains(nsid), "{nsid}");
    }
    registry
}

/// The JSON form of a record, as the data model (`$link`, `$bytes`, blobs).
fn to_ipld(json: &Value) -> Result<Ipld, String> {
    guild_core::data::from_json(json).map_err(|e| e.to_string())
}

#[test]
fn valid_lexicons_are_accepted() {
    let cases = cases("lexicon-valid.json");
    assert_eq!(cases.len(), 3);
    for case in cases {
        let doc = LexiconDoc::from_json(&case["lexicon"]);
        assert!(doc.is_ok(), "{}: {:?}", case["name"], doc.err());
    }
}

#[test]
fn invalid_lexicons_are_refused() {
    let cases = cases("lexicon-invalid.json");
    assert_eq!(cases.len(), 7);
    for case in cases {
        let name = &case["name"];
        // Alone, or (for the ref case) as part of a set that cannot resolve it.
        let doc = LexiconDoc::from_json(&case["lexicon"]);
        match doc {
            Err(e) => println!("{name}: {e}"),
            Ok(doc) => {
                let mut registry = Registry::new();
                registry.add_doc("fixture", doc).unwrap();
                let problems = registry.check();
                assert!(!problems.is_empty(), "{name} was accepted");
                println!("{name}: {}", problems[0]);
            }
        }
    }
}

#[test]
fn catalog_documents_parse() {
    for entry in std::fs::read_dir(fixtures().join("catalog")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        LexiconDoc::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn valid_records_are_accepted() {
    let registry = catalog();
    let cases = cases("record-data-valid.json");
    assert_eq!(cases.len(), 3);
    for case in cases {
        let value = to_ipld(&case["data"]).unwrap_or_else(|e| panic!("{}: {e}", case["name"]));
        registry
            .validate_record(&value)
            .unwrap_or_else(|e| panic!("{}: {e}", case["name"]));
        let rkey = case["rkey"].as_str().unwrap();
        registry
            .validate_record_key("example.lexicon.record", rkey)
            .unwrap();
    }
}

#[test]
fn invalid_records_are_rejected() {
    let registry = catalog();
    let cases = cases("record-data-invalid.json");
    assert_eq!(cases.len(), 50);
    let mut by_data_model = 0;
    for case in cases {
        let name = &case["name"];
        match to_ipld(&case["data"]) {
            // Values outside the data model are refused by guild-core before any lexicon is
            // consulted; none of the fixtures needs that.
            Err(e) => {
                by_data_model += 1;
                println!("{name}: data model: {e}");
            }
            Ok(value) => match registry.validate_record(&value) {
                Ok(()) => panic!("{name} was accepted"),
                Err(e @ ValidationError::Invalid { .. }) => println!("{name}: {e}"),
                Err(e) => panic!("{name}: unexpected error kind: {e}"),
            },
        }
    }
    assert_eq!(by_data_model, 0);
}

/// Each invalid record is refused for the field it is about, not by accident: with the
/// required `integer` added where a case lacks it (three "unknown wrong type" cases do), the
/// error still points at the case's own field.
#[test]
fn invalid_records_are_rejected_for_their_own_field() {
    let registry = catalog();
    for case in cases("record-data-invalid.json") {
        let name = case["name"].as_str().unwrap();
        let mut data = case["data"].clone();
        let subject = data
            .as_object()
            .unwrap()
            .keys()
            .find(|k| *k != "$type" && *k != "integer")
            .cloned()
            .unwrap_or_else(|| "integer".into());
        if name != "missing required field" && data.get("integer").is_none() {
            data["integer"] = 1.into();
        }
        let value = to_ipld(&data).unwrap();
        let err = registry.validate_record(&value).unwrap_err();
        let path = err.path().unwrap_or_default();
        assert!(
            path == format!("/{subject}") || path.starts_with(&format!("/{subject}/")),
            "{name}: {err}"
        );
    }
}

#[test]
fn record_of_unknown_type_is_its_own_error() {
    let registry = catalog();
    let value = to_ipld(&serde_json::json!({"$type": "example.lexicon.nope", "a": 1})).unwrap();
    assert_eq!(
        registry.validate_record(&value),
        Err(ValidationError::UnknownType("example.lexicon.nope".into()))
    );
    assert!(registry.is_record_type("example.lexicon.record"));
    assert!(!registry.is_record_type("example.lexicon.query"));
    assert!(!registry.is_record_type("example.lexicon.nope"));
}
