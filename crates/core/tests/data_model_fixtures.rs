//! The AT Protocol interop data-model and crypto fixtures (`fixtures/atproto-interop/`).
//!
//! - `data-model/data-model-fixtures.json`: JSON → value → canonical DAG-CBOR must be byte
//!   identical to the reference, with the same CID; the reference bytes decode back to the same
//!   JSON.
//! - `data-model/data-model-valid.json`: every case is accepted (and every record in it passes
//!   the record rules).
//! - `data-model/data-model-invalid.json`: every case is refused by `from_json`, by the encoder
//!   (built without the JSON checks), by the strict decoder (from bytes written without Guild's
//!   checks), and where the fault is about records, by the record rules.
//! - `crypto/`: every `did:key` there is P-256 or secp256k1, which Guild (ed25519 only) must
//!   refuse with [`KeyError::UnsupportedKeyType`], never by panicking.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig, general_purpose::STANDARD_NO_PAD};
use guild_core::Ipld;
use guild_core::cids::cid_for_cbor;
use guild_core::data::{
    decode, decode_canonical, decode_record, encode, encode_record, encode_record_json,
    encode_with_cid, from_json, json_to_cbor, to_json, validate,
};
use guild_core::keys::{KeyError, PublicKey};
use serde_json::Value as J;

macro_rules! fixture {
    ($dir:literal, $name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/atproto-interop/",
            $dir,
            "/",
            $name
        ))
    };
}

fn cases(text: &str) -> Vec<J> {
    let v: J = serde_json::from_str(text).unwrap();
    let cases = v.as_array().unwrap().clone();
    assert!(!cases.is_empty());
    cases
}

/// Base64 with or without padding (the fixtures omit it).
fn b64(s: &str) -> Vec<u8> {
    const ANY_PAD: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    ANY_PAD.decode(s).unwrap()
}

fn note(case: &J) -> String {
    case.get("note")
        .and_then(J::as_str)
        .map_or_else(|| case["json"].to_string(), str::to_string)
}

#[test]
fn fixtures_encode_to_identical_cbor_and_cid() {
    let all = cases(fixture!("data-model", "data-model-fixtures.json"));
    for case in &all {
        let json = &case["json"];
        let want_bytes = b64(case["cbor_base64"].as_str().unwrap());
        let want_cid = case["cid"].as_str().unwrap();

        let value = from_json(json).unwrap_or_else(|e| panic!("{json}: {e}"));
        let bytes = encode(&value).unwrap();
        assert_eq!(
            STANDARD_NO_PAD.encode(&bytes),
            STANDARD_NO_PAD.encode(&want_bytes),
            "CBOR differs for {json}"
        );
        assert_eq!(cid_for_cbor(&bytes).to_string(), want_cid, "{json}");
        let (cid, again) = encode_with_cid(&value).unwrap();
        assert_eq!(cid.to_string(), want_cid);
        assert_eq!(again, want_bytes);
    }
}

#[test]
fn fixture_cbor_decodes_back_to_the_json() {
    for case in cases(fixture!("data-model", "data-model-fixtures.json")) {
        let json = &case["json"];
        let bytes = b64(case["cbor_base64"].as_str().unwrap());
        guild_core::cbor::check(&bytes).unwrap();
        let value = decode(&bytes).unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(&to_json(&value), json);
        assert_eq!(value, from_json(json).unwrap());
        // The reference bytes are canonical: the strict canonical decoder takes them and
        // re-encoding gives them back.
        let canon: Ipld = decode_canonical(&bytes).unwrap();
        assert_eq!(canon, value);
        assert_eq!(encode(&value).unwrap(), bytes);
        // The JSON text survives a trip through serde_json's text form too.
        let text = serde_json::to_string(&to_json(&value)).unwrap();
        let reparsed: J = serde_json::from_str(&text).unwrap();
        assert_eq!(from_json(&reparsed).unwrap(), value);
    }
}

/// Every object in `json` that carries a string `$type` other than `blob`: the records.
fn records_in(json: &J, out: &mut Vec<J>) {
    match json {
        J::Array(items) => items.iter().for_each(|i| records_in(i, out)),
        J::Object(obj) => {
            if let Some(J::String(t)) = obj.get("$type")
                && t != "blob"
            {
                out.push(json.clone());
            }
            obj.values().for_each(|v| records_in(v, out));
        }
        _ => {}
    }
}

#[test]
fn every_valid_case_is_accepted() {
    let all = cases(fixture!("data-model", "data-model-valid.json"));
    let mut records_seen = 0;
    for case in &all {
        let n = note(case);
        let json = &case["json"];
        let value = from_json(json).unwrap_or_else(|e| panic!("{n}: {e}"));
        validate(&value).unwrap_or_else(|e| panic!("{n}: {e}"));
        let bytes = encode(&value).unwrap_or_else(|e| panic!("{n}: {e}"));
        assert_eq!(decode(&bytes).unwrap(), value, "{n}");
        let canon: Ipld = decode_canonical(&bytes).unwrap();
        assert_eq!(canon, value, "{n}");
        // JSON → value → JSON → value is stable (the JSON itself may change: `123.0` → `123`).
        assert_eq!(from_json(&to_json(&value)).unwrap(), value, "{n}");

        let mut records = Vec::new();
        records_in(json, &mut records);
        for r in records {
            let rv = from_json(&r).unwrap();
            let (cid, rbytes) = encode_record(&rv).unwrap_or_else(|e| panic!("{n}: {e}"));
            assert_eq!(cid, cid_for_cbor(&rbytes));
            assert_eq!(decode_record(&rbytes).unwrap(), rv, "{n}");
            records_seen += 1;
        }
    }
    assert!(records_seen >= 3, "the valid fixtures hold records");
}

/// JSON → value without any of Guild's checks, to reach the encoder and decoder with values
/// that `from_json` would refuse. `None` if the JSON cannot be represented in the data model at
/// all (a malformed `$link` or `$bytes` object: a fault of the JSON form only).
fn lenient(json: &J) -> Option<Ipld> {
    Some(match json {
        J::Null => Ipld::Null,
        J::Bool(b) => Ipld::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Ipld::Integer(i.into()),
            None => Ipld::Float(n.as_f64()?),
        },
        J::String(s) => Ipld::String(s.clone()),
        J::Array(items) => Ipld::List(items.iter().map(lenient).collect::<Option<_>>()?),
        J::Object(obj) => {
            if let Some(l) = obj.get("$link") {
                let s = l.as_str().filter(|_| obj.len() == 1)?;
                return Some(Ipld::Link(s.parse().ok()?));
            }
            if let Some(b) = obj.get("$bytes") {
                let s = b.as_str().filter(|_| obj.len() == 1)?;
                return Some(Ipld::Bytes(STANDARD_NO_PAD.decode(s).ok()?));
            }
            let mut map = BTreeMap::new();
            for (k, v) in obj {
                map.insert(k.clone(), lenient(v)?);
            }
            Ipld::Map(map)
        }
    })
}

#[test]
fn every_invalid_case_is_rejected() {
    let all = cases(fixture!("data-model", "data-model-invalid.json"));
    let mut by_encoder = 0;
    for case in &all {
        let n = note(case);
        let json = &case["json"];

        // 1. The JSON form. A top-level value that is not an object is a valid data-model value
        //    but can never be a record: the record rules refuse it.
        match from_json(json) {
            Err(_) => {}
            Ok(v) => {
                assert!(!json.is_object(), "{n}: from_json accepted it");
                assert!(encode_record(&v).is_err(), "{n}: encode_record accepted it");
                let bytes = encode(&v).unwrap();
                assert!(
                    decode_record(&bytes).is_err(),
                    "{n}: decode_record accepted it"
                );
            }
        }

        // 2. The encoder and the strict decoder, reached without the JSON checks.
        let Some(v) = lenient(json) else {
            continue;
        };
        by_encoder += 1;
        if json.is_object() {
            assert!(encode(&v).is_err(), "{n}: encode accepted it");
            assert!(validate(&v).is_err(), "{n}: validate accepted it");
        }
        assert!(encode_record(&v).is_err(), "{n}: encode_record accepted it");
        // Bytes written by a plain DAG-CBOR encoder, as a peer that skips the rules would.
        let raw = serde_ipld_dagcbor::to_vec(&v).unwrap();
        assert!(
            decode_record(&raw).is_err(),
            "{n}: decode_record accepted it"
        );
        if json.is_object() {
            let accepted = decode(&raw).ok().filter(|d| validate(d).is_ok());
            assert!(accepted.is_none(), "{n}: decode + validate accepted it");
        }

        // 3. Inside a record, the fault still makes the record invalid.
        if json.is_object() {
            let mut rec = BTreeMap::new();
            rec.insert("$type".to_string(), Ipld::String("com.example.rec".into()));
            rec.insert("inner".to_string(), v.clone());
            let rec = Ipld::Map(rec);
            assert!(encode_record(&rec).is_err(), "{n}: nested, encode_record");
            let raw = serde_ipld_dagcbor::to_vec(&rec).unwrap();
            assert!(decode_record(&raw).is_err(), "{n}: nested, decode_record");
        }
    }
    // float, $type null / number / empty, blob with string size / missing ref, top level.
    assert!(
        by_encoder >= 7,
        "only {by_encoder} cases reached the encoder"
    );
}

#[test]
fn json_form_faults_are_named_by_path() {
    // The path in the error points at the offending part of each invalid fixture that nests
    // its fault one level down.
    for case in cases(fixture!("data-model", "data-model-invalid.json")) {
        let json = &case["json"];
        let Some(obj) = json.as_object() else {
            continue;
        };
        let top = obj.keys().next().unwrap();
        let e = from_json(json).unwrap_err();
        assert!(
            e.path.starts_with(&format!("/{top}")),
            "{}: error at {:?}: {e}",
            note(&case),
            e.path
        );
    }
}

/// Every `did:key` in the crypto fixtures, with the key type its prefix announces.
fn fixture_did_keys() -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    let kind = |did: &str| {
        if did.starts_with("did:key:zDn") {
            "P-256"
        } else if did.starts_with("did:key:zQ3s") {
            "secp256k1"
        } else {
            panic!("unexpected did:key {did}")
        }
    };
    for (text, field) in [
        (fixture!("crypto", "w3c_didkey_K256.json"), "publicDidKey"),
        (fixture!("crypto", "w3c_didkey_P256.json"), "publicDidKey"),
        (
            fixture!("crypto", "signature-fixtures.json"),
            "publicKeyDid",
        ),
    ] {
        for c in cases(text) {
            let did = c[field].as_str().unwrap().to_string();
            let k = kind(&did);
            out.push((did, k));
        }
    }
    out
}

#[test]
fn crypto_fixture_did_keys_are_unsupported_key_types() {
    let dids = fixture_did_keys();
    assert!(dids.len() >= 12, "{}", dids.len());
    assert!(dids.iter().any(|d| d.1 == "P-256"));
    assert!(dids.iter().any(|d| d.1 == "secp256k1"));
    for (did, want) in dids {
        match PublicKey::from_did(&did) {
            Err(KeyError::UnsupportedKeyType { did: d, kind }) => {
                assert_eq!(d, did);
                assert_eq!(kind, want, "{did}");
            }
            other => panic!("{did}: expected UnsupportedKeyType, got {other:?}"),
        }
    }
}

#[test]
fn mangled_fixture_did_keys_are_refused_without_panic() {
    for (did, _) in fixture_did_keys() {
        // Every truncation, and every single-character substitution in the base58 part.
        for cut in 0..did.len() {
            assert!(
                PublicKey::from_did(&did[..cut]).is_err(),
                "{:?}",
                &did[..cut]
            );
        }
        let base = "did:key:z".len();
        for i in base..did.len() {
            for c in ['1', 'z', '0', 'l', '_'] {
                let mut s = did.clone();
                s.replace_range(i..=i, &c.to_string());
                // A substitution may still land on a P-256/K-256 prefix or, in principle, any
                // other; it must never be accepted as an ed25519 key by accident of a panic.
                if let Ok(k) = PublicKey::from_did(&s) {
                    assert_eq!(k.to_did(), s, "{s} accepted but re-encodes differently");
                }
            }
        }
    }
}

/// The bulk-import path (`json_to_cbor`, `encode_record_json`) writes CBOR straight from JSON;
/// it must give the same bytes as `from_json` + `encode` and refuse the same inputs.
#[test]
fn json_fast_path_agrees_with_the_fixtures() {
    for case in cases(fixture!("data-model", "data-model-fixtures.json")) {
        let json = &case["json"];
        let want = b64(case["cbor_base64"].as_str().unwrap());
        assert_eq!(json_to_cbor(json).unwrap(), want, "{json}");
    }
    for case in cases(fixture!("data-model", "data-model-valid.json")) {
        let n = note(&case);
        let json = &case["json"];
        let want = encode(&from_json(json).unwrap()).unwrap();
        assert_eq!(json_to_cbor(json).unwrap(), want, "{n}");
        let mut records = Vec::new();
        records_in(json, &mut records);
        for r in records {
            let want = encode_record(&from_json(&r).unwrap()).unwrap();
            assert_eq!(encode_record_json(&r).unwrap(), want, "{n}");
        }
    }
    for case in cases(fixture!("data-model", "data-model-invalid.json")) {
        let n = note(&case);
        let json = &case["json"];
        assert_eq!(
            json_to_cbor(json).is_ok(),
            from_json(json).is_ok(),
            "{n}: json_to_cbor and from_json disagree"
        );
        assert!(encode_record_json(json).is_err(), "{n}: encode_record_json");
    }
}
