//! The validator, rule by rule, through one small `check` helper; the registry's loading
//! rules; and the check that a Rust type's serialization validates against its lexicon.

use std::collections::BTreeMap;

use guild_core::Ipld;
use guild_lexicon::{LoadErrorKind, Registry, Rule, Unit, ValidationError};
use serde_json::{Value, json};

/// A registry with one test document `org.example.test` (whose defs are given) on top of an
/// empty set, plus any other documents.
fn registry(defs: Value, others: &[Value]) -> Registry {
    let mut r = Registry::new();
    let mut sources = vec![(
        "test".to_owned(),
        json!({"lexicon": 1, "id": "org.example.test", "defs": defs}).to_string(),
    )];
    for (i, o) in others.iter().enumerate() {
        sources.push((format!("other{i}"), o.to_string()));
    }
    let errors = r.extend(sources);
    assert!(errors.is_empty(), "{errors:#?}");
    r
}

fn ipld(v: Value) -> Ipld {
    guild_core::data::from_json(&v).unwrap()
}

/// A record type whose only property is `f`, of the given schema.
fn one_field(schema: Value) -> Registry {
    registry(
        json!({"main": {"type": "record", "key": "tid", "record": {
            "type": "object", "nullable": ["n"],
            "properties": {"f": schema, "n": {"type": "integer"}}}}}),
        &[],
    )
}

/// Validates `{"$type": "org.example.test", "f": value}`: `Ok` or the error's display.
fn check(r: &Registry, value: Value) -> Result<(), String> {
    let mut record = json!({"$type": "org.example.test"});
    record["f"] = value;
    r.validate_record(&ipld(record)).map_err(|e| e.to_string())
}

#[track_caller]
fn ok(r: &Registry, value: Value) {
    if let Err(e) = check(r, value.clone()) {
        panic!("{value} refused: {e}");
    }
}

#[track_caller]
fn bad(r: &Registry, value: Value, want: &str) {
    match check(r, value.clone()) {
        Ok(()) => panic!("{value} accepted"),
        Err(e) => assert_eq!(e, want, "{value}"),
    }
}

const CID: &str = "bafyreid5hrvy2unmr3dzukw37gaelfcpsngbe6nfp5ujzvootf74ei5ury";

#[test]
fn strings() {
    let r = one_field(json!({"type": "string", "maxLength": 6, "minGraphemes": 2}));
    ok(&r, json!("ab"));
    ok(&r, json!("éé")); // 4 bytes, 2 graphemes
    bad(
        &r,
        json!("a"),
        "/f: too short: 1 grapheme; at least 2 required (minGraphemes)",
    );
    bad(
        &r,
        json!("ééé£"),
        "/f: too long: 8 bytes; at most 6 allowed (maxLength)",
    );
    bad(&r, json!(3), "/f: expected string, found integer");

    let r = one_field(json!({"type": "string", "knownValues": ["a"], "enum": ["a", "b"]}));
    ok(&r, json!("b"));
    bad(&r, json!("c"), r#"/f: must be one of "a", "b" (enum)"#);

    let r = one_field(json!({"type": "string", "const": "x", "default": "x"}));
    bad(&r, json!("y"), r#"/f: must be "x" (const)"#);

    let r = one_field(json!({"type": "string", "format": "datetime"}));
    ok(&r, json!("2025-03-14T09:26:53Z"));
    // The reason is guild-core's; only its prefix is this crate's.
    let e = check(&r, json!("2025-02-30T00:00:00Z")).unwrap_err();
    assert!(
        e.starts_with("/f: \"2025-02-30T00:00:00Z\" is not a valid datetime: "),
        "{e}"
    );
}

#[test]
fn integers_booleans_bytes_links() {
    let r = one_field(json!({"type": "integer", "minimum": -3, "maximum": 3}));
    ok(&r, json!(-3));
    bad(&r, json!(4), "/f: 4 is more than the maximum 3");
    bad(&r, json!("4"), "/f: expected integer, found string");

    let r = one_field(json!({"type": "boolean", "const": true}));
    ok(&r, json!(true));
    bad(&r, json!(false), "/f: must be true (const)");

    let r = one_field(json!({"type": "bytes", "maxLength": 2}));
    ok(&r, json!({"$bytes": "AQI"}));
    bad(
        &r,
        json!({"$bytes": "AQID"}),
        "/f: too long: 3 bytes; at most 2 allowed (maxLength)",
    );

    let r = one_field(json!({"type": "cid-link"}));
    ok(&r, json!({"$link": CID}));
    bad(&r, json!(CID), "/f: expected cid-link, found string");
}

#[test]
fn null_and_absent_differ() {
    let r = one_field(json!({"type": "integer"}));
    let rec = |v: Value| r.validate_record(&ipld(v)).map_err(|e| e.to_string());
    assert_eq!(rec(json!({"$type": "org.example.test"})), Ok(()));
    assert_eq!(rec(json!({"$type": "org.example.test", "n": null})), Ok(()));
    assert_eq!(
        rec(json!({"$type": "org.example.test", "f": null})),
        Err("/f: must not be null (the field is not nullable)".into())
    );
    // Undeclared fields are ignored (evolution), whatever they hold.
    assert_eq!(
        rec(json!({"$type": "org.example.test", "later": {"x": [1, null]}})),
        Ok(())
    );
}

#[test]
fn blobs() {
    let blob = |mime: &str, size: i64| json!({"$type": "blob", "ref": {"$link": CID}, "mimeType": mime, "size": size});
    let r = one_field(json!({"type": "blob", "accept": ["image/*", "audio/flac"], "maxSize": 100}));
    ok(&r, blob("image/webp", 100));
    ok(&r, blob("audio/flac", 1));
    bad(
        &r,
        blob("audio/mpeg", 1),
        r#"/f: blob type "audio/mpeg" is not accepted (accept: image/*, audio/flac)"#,
    );
    bad(
        &r,
        blob("image/png", 101),
        "/f: blob is 101 bytes: at most 100 allowed (maxSize)",
    );
    bad(
        &r,
        json!({"ref": {"$link": CID}, "mimeType": "image/png", "size": 1}),
        "/f: expected blob, found object",
    );
}

#[test]
fn unknown_must_be_an_object_and_not_a_blob() {
    let r = one_field(json!({"type": "unknown"}));
    ok(&r, json!({"anything": [1, 2]}));
    ok(&r, json!({"$type": "org.example.whatever", "x": 1}));
    bad(&r, json!(false), "/f: expected object, found boolean");
    bad(
        &r,
        json!({"$bytes": "AQI"}),
        "/f: expected object, found bytes",
    );
    bad(&r, json!([]), "/f: expected object, found array");
    bad(
        &r,
        json!({"$type": "blob", "ref": {"$link": CID}, "mimeType": "a/b", "size": 1}),
        "/f: expected object, found blob",
    );
}

#[test]
fn arrays_and_paths() {
    let r = registry(
        json!({
            "main": {"type": "record", "key": "tid", "record": {"type": "object", "properties": {
                "entries": {"type": "array", "maxLength": 5, "items": {"type": "ref", "ref": "#entry"}}}}},
            "entry": {"type": "object", "required": ["title"], "properties": {
                "title": {"type": "string", "maxLength": 3}}},
        }),
        &[],
    );
    let mut entries = vec![json!({"title": "ok"}); 4];
    entries[3] = json!({"title": "too long"});
    let err = r
        .validate_record(&ipld(
            json!({"$type": "org.example.test", "entries": entries}),
        ))
        .unwrap_err();
    assert_eq!(err.path(), Some("/entries/3/title"));
    assert_eq!(
        err.rule(),
        Some(&Rule::TooLong {
            max: 3,
            actual: 8,
            unit: Unit::Bytes
        })
    );
}

#[test]
fn unions_open_closed_and_main_normalisation() {
    let other = json!({"lexicon": 1, "id": "org.example.other", "defs": {
        "main": {"type": "object", "required": ["x"], "properties": {"x": {"type": "integer"}}}}});
    let r = registry(
        json!({
            "main": {"type": "record", "key": "tid", "record": {"type": "object", "properties": {
                "open": {"type": "union", "refs": ["#a", "org.example.other"]},
                "closed": {"type": "union", "refs": ["#a", "org.example.other#main"], "closed": true}}}},
            "a": {"type": "object", "required": ["y"], "properties": {"y": {"type": "string"}}},
        }),
        &[other],
    );
    let rec = |field: &str, v: Value| {
        let mut record = json!({"$type": "org.example.test"});
        record[field] = v;
        r.validate_record(&ipld(record)).map_err(|e| e.to_string())
    };
    // `nsid#main` and `nsid` are the same type, in data and in the schema.
    for t in ["org.example.other", "org.example.other#main"] {
        for field in ["open", "closed"] {
            assert_eq!(
                rec(field, json!({"$type": t, "x": 1})),
                Ok(()),
                "{field} {t}"
            );
            assert!(
                rec(field, json!({"$type": t, "x": "1"})).is_err(),
                "{field} {t}"
            );
        }
    }
    assert_eq!(
        rec("open", json!({"$type": "org.example.test#a", "y": "s"})),
        Ok(())
    );
    // Open unions let unknown types through; closed ones do not.
    assert_eq!(
        rec("open", json!({"$type": "org.example.elsewhere", "z": 1})),
        Ok(())
    );
    assert_eq!(
        rec("closed", json!({"$type": "org.example.elsewhere"})),
        Err("/closed/$type: $type \"org.example.elsewhere\" is not allowed here (closed union of org.example.test#a, org.example.other)".into())
    );
    assert_eq!(
        rec("open", json!({"y": "s"})),
        Err("/open: must be an object with a $type naming its lexicon type".into())
    );
    assert_eq!(
        rec("open", json!({"$type": "#a"})),
        Err("/open/$type: $type \"#a\" is not a lexicon type name".into())
    );
}

#[test]
fn records_by_type() {
    let r = one_field(json!({"type": "integer"}));
    let v = |j: Value| ipld(j);
    assert_eq!(
        r.validate_record(&v(json!({"$type": "org.example.test#main"}))),
        Ok(())
    );
    assert_eq!(
        r.validate_record(&v(json!({"$type": "org.example.unknown"}))),
        Err(ValidationError::UnknownType("org.example.unknown".into()))
    );
    assert_eq!(
        r.validate_record(&v(json!({"f": 1})))
            .unwrap_err()
            .to_string(),
        "/: must be an object with a $type naming its lexicon type"
    );
    assert_eq!(
        r.validate_record(&v(json!([1]))).unwrap_err().to_string(),
        "/: expected object (a record), found array"
    );
    assert_eq!(
        r.validate_record_as(
            "org.example.other",
            &v(json!({"$type": "org.example.test"}))
        )
        .unwrap_err()
        .to_string(),
        "/$type: $type is \"org.example.test\", expected \"org.example.other\""
    );
    assert_eq!(
        r.validate_record_as("org.example.test", &v(json!({"$type": "org.example.test"}))),
        Ok(())
    );
    // Floats never reach the lexicon walk.
    let float = Ipld::Map(BTreeMap::from([
        ("$type".to_owned(), Ipld::String("org.example.test".into())),
        ("f".to_owned(), Ipld::Float(1.5)),
    ]));
    assert_eq!(
        r.validate_record(&float).unwrap_err().to_string(),
        "/f: floats are not allowed"
    );
}

#[test]
fn record_keys() {
    let key = |k: &str| {
        registry(
            json!({"main": {"type": "record", "key": k, "record": {"type": "object", "properties": {}}}}),
            &[],
        )
    };
    assert!(
        key("tid")
            .validate_record_key("org.example.test", "3kznmn7xqxl22")
            .is_ok()
    );
    assert!(
        key("tid")
            .validate_record_key("org.example.test", "self")
            .is_err()
    );
    assert!(
        key("literal:self")
            .validate_record_key("org.example.test", "self")
            .is_ok()
    );
    assert_eq!(
        key("literal:self")
            .validate_record_key("org.example.test", "other")
            .unwrap_err()
            .to_string(),
        "record key \"other\" does not fit org.example.test, whose keys are literal:self"
    );
    assert!(
        key("nsid")
            .validate_record_key("org.example.test", "a.b.c")
            .is_ok()
    );
    assert!(
        key("any")
            .validate_record_key("org.example.test", "..")
            .is_err()
    );
}

#[test]
fn tokens_and_refs_to_records() {
    let r = registry(
        json!({
            "main": {"type": "record", "key": "tid", "record": {"type": "object", "properties": {
                "t": {"type": "ref", "ref": "#tok"},
                "known": {"type": "string", "knownValues": ["org.example.test#tok"]},
                "embedded": {"type": "ref", "ref": "org.example.test"}}}},
            "tok": {"type": "token", "description": "A token."},
        }),
        &[],
    );
    let rec = |v: Value| r.validate_record(&ipld(v)).map_err(|e| e.to_string());
    assert_eq!(
        rec(json!({"$type": "org.example.test", "t": "org.example.test#tok"})),
        Ok(())
    );
    assert_eq!(
        rec(json!({"$type": "org.example.test", "t": "tok"})),
        Err("/t: must be the token \"org.example.test#tok\"".into())
    );
    assert_eq!(
        rec(json!({"$type": "org.example.test", "embedded": {"t": 1}})),
        Err("/embedded/t: must be the token \"org.example.test#tok\"".into())
    );
}

fn xrpc() -> Registry {
    let query = json!({"lexicon": 1, "id": "org.example.query", "defs": {"main": {
        "type": "query",
        "parameters": {"type": "params", "required": ["q"], "properties": {
            "q": {"type": "string", "maxLength": 10},
            "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50},
            "deep": {"type": "boolean"},
            "tags": {"type": "array", "maxLength": 2, "items": {"type": "string"}},
            "ids": {"type": "array", "items": {"type": "integer"}}}},
        "output": {"encoding": "application/json", "schema": {"type": "object",
            "required": ["items"], "properties": {"items": {"type": "array", "items": {"type": "integer"}}}}}}}});
    let procedure = json!({"lexicon": 1, "id": "org.example.procedure", "defs": {"main": {
        "type": "procedure",
        "input": {"encoding": "application/json", "schema": {"type": "ref", "ref": "org.example.test#in"}},
        "output": {"encoding": "application/octet-stream"}}}});
    let subscription = json!({"lexicon": 1, "id": "org.example.subscribe", "defs": {
        "main": {"type": "subscription",
            "parameters": {"type": "params", "properties": {"cursor": {"type": "integer", "minimum": 0}}},
            "message": {"schema": {"type": "union", "refs": ["#event", "#info"]}}},
        "event": {"type": "object", "required": ["seq"], "properties": {"seq": {"type": "integer"}}},
        "info": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}}});
    registry(
        json!({"in": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}}),
        &[query, procedure, subscription],
    )
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn params_are_read_from_query_strings() {
    let r = xrpc();
    let got = r
        .validate_params(
            "org.example.query",
            &pairs(&[
                ("q", "fish"),
                ("deep", "true"),
                ("tags", "a"),
                ("tags", "b"),
                ("ids", "-7"),
                ("other", "x"),
            ]),
        )
        .unwrap();
    assert_eq!(got["q"], Ipld::String("fish".into()));
    assert_eq!(got["limit"], Ipld::Integer(50)); // default filled in
    assert_eq!(got["deep"], Ipld::Bool(true));
    assert_eq!(
        got["tags"],
        Ipld::List(vec![Ipld::String("a".into()), Ipld::String("b".into())])
    );
    assert_eq!(got["ids"], Ipld::List(vec![Ipld::Integer(-7)]));
    assert!(!got.contains_key("other")); // undeclared: ignored

    let err = |p: &[(&str, &str)]| {
        r.validate_params("org.example.query", &pairs(p))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(err(&[]), "/q: required field is missing");
    assert_eq!(
        err(&[("q", "a"), ("limit", "0")]),
        "/limit: 0 is less than the minimum 1"
    );
    assert_eq!(
        err(&[("q", "a"), ("limit", "+5")]),
        "/limit: cannot read \"+5\" as an integer"
    );
    assert_eq!(
        err(&[("q", "a"), ("limit", "99999999999999999999")]),
        "/limit: cannot read \"99999999999999999999\" as a 64-bit signed integer"
    );
    assert_eq!(
        err(&[("q", "a"), ("deep", "yes")]),
        "/deep: cannot read \"yes\" as a boolean (true or false)"
    );
    assert_eq!(
        err(&[("q", "a"), ("q", "b")]),
        "/q: given more than once, but is not an array"
    );
    assert_eq!(
        err(&[("q", "a"), ("tags", "1"), ("tags", "2"), ("tags", "3")]),
        "/tags: too long: 3 items; at most 2 allowed (maxLength)"
    );
    assert_eq!(
        err(&[("q", "a"), ("ids", "x")]),
        "/ids/0: cannot read \"x\" as an integer"
    );
    assert_eq!(
        r.validate_params("org.example.test", &[]).unwrap_err(),
        ValidationError::WrongKind {
            reference: "org.example.test".into(),
            expected: "record, query, procedure or subscription",
            found: "set of definitions without main"
        }
    );
    assert_eq!(
        r.validate_params("org.example.subscribe", &pairs(&[("cursor", "5")]))
            .unwrap()["cursor"],
        Ipld::Integer(5)
    );
}

#[test]
fn inputs_outputs_and_messages() {
    let r = xrpc();
    assert_eq!(
        r.validate_input("org.example.procedure", &ipld(json!({"name": "n"}))),
        Ok(())
    );
    assert_eq!(
        r.validate_input("org.example.procedure", &ipld(json!({})))
            .unwrap_err()
            .to_string(),
        "/name: required field is missing"
    );
    assert_eq!(
        r.validate_output("org.example.procedure", &ipld(json!({})))
            .unwrap_err()
            .to_string(),
        "org.example.procedure has no data-model output body"
    );
    assert_eq!(
        r.validate_output("org.example.query", &ipld(json!({"items": [1]}))),
        Ok(())
    );
    assert!(
        r.validate_input("org.example.query", &ipld(json!({})))
            .is_err()
    );

    let msg = |v: Value| {
        r.validate_message("org.example.subscribe", &ipld(v))
            .map_err(|e| e.to_string())
    };
    assert_eq!(
        msg(json!({"$type": "org.example.subscribe#event", "seq": 1})),
        Ok(())
    );
    assert_eq!(
        msg(json!({"$type": "org.example.subscribe#event"})),
        Err("/seq: required field is missing".into())
    );
    assert_eq!(
        msg(json!({"$type": "org.example.subscribe#future", "x": 1})),
        Ok(())
    );
    // The type from a frame header (`t`), relative to the subscription.
    let framed = |t: &str, v: Value| {
        r.validate_message_as("org.example.subscribe", t, &ipld(v))
            .map_err(|e| e.to_string())
    };
    assert_eq!(framed("#info", json!({"name": "OutdatedCursor"})), Ok(()));
    assert_eq!(
        framed("#info", json!({})),
        Err("/name: required field is missing".into())
    );
    assert_eq!(
        framed("#info", json!({"$type": "org.example.subscribe#event", "name": "x"})),
        Err("/$type: $type is \"org.example.subscribe#event\", expected \"org.example.subscribe#info\"".into())
    );
}

#[test]
fn deep_values_are_refused_not_overflowed() {
    let r = one_field(json!({"type": "unknown"}));
    let mut v = Ipld::Map(BTreeMap::new());
    for _ in 0..10_000 {
        v = Ipld::List(vec![v]);
    }
    let record = Ipld::Map(BTreeMap::from([
        ("$type".to_owned(), Ipld::String("org.example.test".into())),
        ("f".to_owned(), v),
    ]));
    let err = r.validate_record(&record).unwrap_err();
    assert_eq!(err.rule(), Some(&Rule::TooDeep), "{err}");
    // Drop iteratively-ish: unwrap the nesting by hand so the test itself cannot overflow.
    let Ipld::Map(mut m) = record else {
        unreachable!()
    };
    let mut cur = m.remove("f");
    while let Some(Ipld::List(mut items)) = cur {
        cur = items.pop();
    }
}

// ---------------------------------------------------------------------------------------------
// Loading

#[test]
fn extensions_conflicting_invalid_or_dangling_are_refused_and_the_rest_load() {
    let mut r = Registry::builtin();
    let n = r.len();
    let text = |id: &str, extra: Value| {
        json!({"lexicon": 1, "id": id, "defs": {"main": {"type": "object", "properties": extra}}})
            .to_string()
    };
    let builtin_copy = guild_lexicon::embedded::sources()
        .find(|(p, _)| *p == "coop/guild/data/text.json")
        .unwrap()
        .1
        .to_owned();
    let errors = r.extend(vec![
        (
            "good.json".to_owned(),
            text(
                "org.example.good",
                json!({"m": {"type": "ref", "ref": "coop.guild.defs#money"}}),
            ),
        ),
        (
            "uses-good.json".to_owned(),
            text(
                "org.example.usesgood",
                json!({"g": {"type": "ref", "ref": "org.example.good"}}),
            ),
        ),
        ("same.json".to_owned(), builtin_copy),
        (
            "conflict.json".to_owned(),
            text("coop.guild.data.text", json!({})),
        ),
        ("broken.json".to_owned(), "{\"lexicon\": 1,".to_owned()),
        (
            "dangling.json".to_owned(),
            text(
                "org.example.dangling",
                json!({"x": {"type": "ref", "ref": "org.example.nowhere"}}),
            ),
        ),
        (
            "chain.json".to_owned(),
            text(
                "org.example.chain",
                json!({"d": {"type": "ref", "ref": "org.example.dangling#main"}}),
            ),
        ),
        ("dup.json".to_owned(), text("org.example.good", json!({}))),
    ]);
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 5, "{lines:#?}");
    assert!(lines[0].starts_with("conflict.json: coop.guild.data.text is already defined by built-in lexicons/coop/guild/data/text.json, differently"), "{}", lines[0]);
    assert!(
        lines[1].starts_with("broken.json: not a valid lexicon: not valid JSON"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("dup.json: org.example.good is already defined by good.json"),
        "{}",
        lines[2]
    );
    assert_eq!(
        lines[3],
        "dangling.json: refused: org.example.dangling /defs/main/properties/x/ref: refers to org.example.nowhere, but no loaded lexicon defines org.example.nowhere"
    );
    assert_eq!(
        lines[4],
        "chain.json: refused: org.example.chain /defs/main/properties/d/ref: refers to org.example.dangling, but no loaded lexicon defines org.example.dangling (its lexicon was refused)"
    );
    assert!(matches!(errors[3].kind, LoadErrorKind::Inconsistent(_)));
    assert_eq!(r.len(), n + 2);
    assert!(r.contains("org.example.good") && r.contains("org.example.usesgood"));
    assert!(r.check().is_empty());
    assert_eq!(
        r.origin("coop.guild.data.text").unwrap(),
        "built-in lexicons/coop/guild/data/text.json"
    );
}

#[test]
fn wrong_kinds_of_reference_are_problems() {
    let mut r = Registry::new();
    r.add(
        "t",
        &json!({"lexicon": 1, "id": "org.example.test", "defs": {
            "main": {"type": "query"},
            "o": {"type": "object", "properties": {
                "a": {"type": "ref", "ref": "#main"},
                "b": {"type": "union", "refs": ["#tok", "#nope"]}}},
            "tok": {"type": "token"}}})
        .to_string(),
    )
    .unwrap();
    let problems: Vec<String> = r.check().iter().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        [
            "org.example.test /defs/o/properties/a/ref: refers to org.example.test, a query, which is not a data type",
            "org.example.test /defs/o/properties/b/refs/0: union member org.example.test#tok is a token; union members must be objects or records",
            "org.example.test /defs/o/properties/b/refs/1: refers to org.example.test#nope, but org.example.test has no definition \"nope\"",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Typed records cannot drift from their lexicons

/// A Rust type shaped like `coop.guild.data.text`, as the crate that owns it will write it.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Text<'a> {
    #[serde(rename = "$type")]
    kind: &'a str,
    title: Option<&'a str>,
    body: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<&'a str>,
    created_at: &'a str,
}

#[test]
fn serialized_rust_values_are_validated_through_dag_cbor() {
    let r = Registry::builtin();
    let mut text = Text {
        kind: "coop.guild.data.text",
        title: Some("Ode"),
        body: "Grey water",
        tags: vec!["sea"],
        created_at: "2025-03-14T09:26:53Z",
    };
    assert_eq!(r.validate_serialized(&text), Ok(()));
    // `None` serializes as null, which the lexicon does not allow for `title`: the kind of
    // drift this check exists to catch (the Rust side must skip absent fields).
    text.title = None;
    assert_eq!(
        r.validate_serialized(&text).unwrap_err().to_string(),
        "/title: must not be null (the field is not nullable)"
    );
}
