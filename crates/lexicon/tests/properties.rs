//! Property tests: no input makes the parser or the validator panic, and validation is a pure
//! function of the value.

use std::collections::BTreeMap;

use guild_core::{Cid, Ipld};
use guild_lexicon::{Def, LexiconDoc, Registry};
use proptest::prelude::*;
use serde_json::Value;

/// Names that lexicons and records use, so that arbitrary values often hit real fields.
const KEYS: &[&str] = &[
    "$type",
    "ref",
    "mimeType",
    "size",
    "title",
    "body",
    "createdAt",
    "f",
    "a",
    "b",
    "seq",
    "collective",
    "author",
    "prev",
    "sig",
    "templates",
    "scope",
    "records",
    "metadata",
    "compensation",
    "integer",
    "union",
    "closedUnion",
    "unknown",
    "formats",
    "did",
    "uri",
    "cid",
];

const TYPES: &[&str] = &[
    "blob",
    "coop.guild.data.text",
    "coop.guild.data.file#audio",
    "coop.guild.consent.grant#collections",
    "coop.guild.licence.template#revenueShare",
    "coop.guild.feed.subscribe#bundle",
    "example.lexicon.record",
    "example.lexicon.record#demoObject",
    "x",
    "",
];

fn cid() -> Cid {
    Cid::try_from("bafyreid5hrvy2unmr3dzukw37gaelfcpsngbe6nfp5ujzvootf74ei5ury").unwrap()
}

fn leaf() -> impl Strategy<Value = Ipld> {
    prop_oneof![
        Just(Ipld::Null),
        any::<bool>().prop_map(Ipld::Bool),
        any::<i64>().prop_map(|i| Ipld::Integer(i.into())),
        (-5i64..20_000).prop_map(|i| Ipld::Integer(i.into())),
        any::<f64>().prop_map(Ipld::Float),
        ".{0,40}".prop_map(Ipld::String),
        "did:[a-z]{1,5}:[a-zA-Z0-9.]{1,20}".prop_map(Ipld::String),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z".prop_map(Ipld::String),
        prop::sample::select(TYPES).prop_map(|t| Ipld::String(t.into())),
        prop::collection::vec(any::<u8>(), 0..80).prop_map(Ipld::Bytes),
        Just(Ipld::Link(cid())),
    ]
}

fn value() -> impl Strategy<Value = Ipld> {
    leaf().prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Ipld::List),
            prop::collection::btree_map(
                prop::sample::select(KEYS).prop_map(String::from),
                inner,
                0..8
            )
            .prop_map(Ipld::Map),
        ]
    })
}

/// A record-ish value: a map with a `$type` drawn from real and fake types.
fn record() -> impl Strategy<Value = Ipld> {
    (prop::sample::select(TYPES), value()).prop_map(|(t, v)| {
        let mut m = match v {
            Ipld::Map(m) => m,
            other => BTreeMap::from([("f".to_owned(), other)]),
        };
        m.insert("$type".into(), Ipld::String(t.into()));
        Ipld::Map(m)
    })
}

/// Every data definition of a registry, as references.
fn data_refs(registry: &Registry) -> Vec<String> {
    let mut out = Vec::new();
    for (doc, _) in registry.iter() {
        for (name, def) in &doc.defs {
            if matches!(def, Def::Type(_) | Def::Record(_) | Def::Token(_)) {
                out.push(format!("{}#{name}", doc.id));
            }
        }
    }
    out
}

/// Guild's set and the interop catalog, built once.
fn everything() -> &'static Registry {
    static REGISTRY: std::sync::LazyLock<Registry> = std::sync::LazyLock::new(|| {
        let mut registry = Registry::builtin();
        let catalog = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/atproto-interop/lexicon/catalog");
        registry.extend_from_path(&catalog);
        registry
    });
    &REGISTRY
}

/// Every way of replacing one node of `v` with `with`.
fn replacements(v: &Ipld, with: &Ipld, out: &mut Vec<Ipld>) {
    out.push(with.clone());
    match v {
        Ipld::List(items) => {
            for (i, item) in items.iter().enumerate() {
                let mut inner = Vec::new();
                replacements(item, with, &mut inner);
                for r in inner {
                    let mut copy = items.clone();
                    copy[i] = r;
                    out.push(Ipld::List(copy));
                }
            }
        }
        Ipld::Map(map) => {
            for (k, item) in map {
                let mut inner = Vec::new();
                replacements(item, with, &mut inner);
                for r in inner {
                    let mut copy = map.clone();
                    copy.insert(k.clone(), r);
                    out.push(Ipld::Map(copy));
                }
                let mut without = map.clone();
                without.remove(k);
                out.push(Ipld::Map(without));
            }
        }
        _ => {}
    }
}

/// Each valid example with each node in turn replaced by an odd value, or removed: the
/// validator answers every time, through every entry point.
#[test]
fn mutated_examples_never_panic() {
    let registry = everything();
    let odd = [
        Ipld::Null,
        Ipld::Bool(true),
        Ipld::Integer(-1),
        Ipld::Integer(i64::MAX.into()),
        Ipld::String(String::new()),
        Ipld::String("é".repeat(5000)),
        Ipld::Bytes(vec![0; 70]),
        Ipld::Link(cid()),
        Ipld::List(vec![Ipld::Null]),
        Ipld::Map(BTreeMap::new()),
        Ipld::Map(BTreeMap::from([(
            "$type".to_owned(),
            Ipld::String("blob".into()),
        )])),
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/examples");
    let mut checked = 0usize;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(reference) = name.strip_suffix(".valid.json") else {
            continue;
        };
        let json: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let Ok(valid) = guild_core::data::from_json(&json) else {
            continue;
        };
        for with in &odd {
            let mut variants = Vec::new();
            replacements(&valid, with, &mut variants);
            for v in variants {
                let _ = registry.validate_record(&v);
                let _ = registry.validate_value(reference, &v);
                let _ = registry.validate_message(reference, &v);
                checked += 1;
            }
        }
    }
    assert!(checked > 5_000, "{checked}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn validating_any_value_never_panics_and_is_deterministic(v in record(), plain in value()) {
        let registry = everything();
        let first = registry.validate_record(&v);
        prop_assert_eq!(&first, &registry.validate_record(&v));
        for reference in data_refs(registry) {
            let _ = registry.validate_value(&reference, &plain);
            let _ = registry.validate_value(&reference, &v);
        }
        let _ = registry.validate_message("coop.guild.feed.subscribe", &v);
        let _ = registry.validate_input("coop.guild.bundle.get", &v);
    }

    #[test]
    fn params_never_panic(
        pairs in prop::collection::vec(
            (prop::sample::select(&["cid", "cursor", "q", "x"][..]).prop_map(String::from), ".{0,20}"),
            0..6,
        )
    ) {
        let registry = everything();
        for nsid in ["coop.guild.bundle.get", "coop.guild.feed.subscribe", "example.lexicon.query", "coop.guild.data.text"] {
            let _ = registry.validate_params(nsid, &pairs);
        }
    }
}

/// Lexicon-like JSON: objects with lexicon vocabulary, so that parsing goes deep.
fn lexicon_json() -> impl Strategy<Value = Value> {
    const WORDS: &[&str] = &[
        "type",
        "description",
        "properties",
        "required",
        "nullable",
        "items",
        "ref",
        "refs",
        "closed",
        "maxLength",
        "minLength",
        "maxGraphemes",
        "minGraphemes",
        "format",
        "enum",
        "const",
        "default",
        "knownValues",
        "minimum",
        "maximum",
        "accept",
        "maxSize",
        "key",
        "record",
        "parameters",
        "input",
        "output",
        "message",
        "schema",
        "encoding",
        "errors",
        "name",
        "permissions",
        "resource",
        "collection",
        "lxm",
        "main",
        "x",
    ];
    const TYPES: &[&str] = &[
        "object",
        "string",
        "integer",
        "boolean",
        "bytes",
        "cid-link",
        "blob",
        "unknown",
        "array",
        "ref",
        "union",
        "token",
        "record",
        "query",
        "procedure",
        "subscription",
        "params",
        "permission-set",
        "permission",
        "did",
        "tid",
        "any",
        "#x",
        "org.example.a#main",
        "application/json",
        "image/*",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-3i64..30).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(Value::from(1.5)),
        prop::sample::select(TYPES).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(7, 96, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop::sample::select(WORDS).prop_map(String::from),
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsing_any_document_never_panics(defs in prop::collection::btree_map("main|x|y", lexicon_json(), 0..3), v in value()) {
        let doc = serde_json::json!({"lexicon": 1, "id": "org.example.a", "defs": defs});
        if let Ok(parsed) = LexiconDoc::from_json(&doc) {
            let mut registry = Registry::new();
            prop_assert!(registry.add_doc("p", parsed).is_ok());
            let _ = registry.check();
            for reference in data_refs(&registry) {
                let _ = registry.validate_value(&reference, &v);
            }
            let _ = registry.validate_record(&v);
            let _ = registry.validate_params("org.example.a", &[("x".into(), "1".into())]);
            let _ = registry.validate_message("org.example.a", &v);
        }
    }

    #[test]
    fn parsing_any_json_never_panics(j in lexicon_json()) {
        let _ = LexiconDoc::from_json(&j);
        let _ = LexiconDoc::parse(&j.to_string());
    }
}
