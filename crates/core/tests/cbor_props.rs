//! Property tests of the DAG-CBOR data model: round trips, canonical and deterministic
//! encoding, the JSON form both ways, no panic on arbitrary bytes, and strictness (no two byte
//! strings are accepted for one value).

use std::collections::BTreeMap;

use guild_core::Ipld;
use guild_core::cids::{cid_for_cbor, cid_for_raw};
use guild_core::data::{
    check_record_bytes, decode, decode_canonical, decode_record, encode, encode_record,
    encode_record_json, encode_serde, from_json, json_to_cbor, to_json,
};
use guild_core::keys::split_signed;
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Generators

fn integer() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => any::<i64>(),
        4 => -30i64..30,
        2 => prop::sample::select(vec![
            i64::MIN,
            i64::MIN + 1,
            i64::MAX,
            -25,
            -24,
            23,
            24,
            255,
            256,
            -256,
            -257,
            65_535,
            65_536,
            -65_536,
            -65_537,
            4_294_967_295,
            4_294_967_296,
            -4_294_967_296,
            -4_294_967_297,
        ]),
    ]
}

fn link() -> impl Strategy<Value = guild_core::Cid> {
    (prop::collection::vec(any::<u8>(), 0..8), any::<bool>()).prop_map(|(b, raw)| {
        if raw {
            cid_for_raw(&b)
        } else {
            cid_for_cbor(&b)
        }
    })
}

/// Map keys: anything but the `$`-keys the JSON form reserves (`$link`, `$bytes`, `$type`).
fn map_key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-e]{0,3}",
        "[a-zA-Z0-9_.~é☎😀 -]{0,12}",
        "\\PC{0,6}".prop_filter("no $ keys", |s| !s.starts_with('$')),
    ]
}

fn leaf() -> impl Strategy<Value = Ipld> {
    prop_oneof![
        Just(Ipld::Null),
        any::<bool>().prop_map(Ipld::Bool),
        integer().prop_map(|i| Ipld::Integer(i.into())),
        "\\PC{0,24}".prop_map(Ipld::String),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(Ipld::Bytes),
        link().prop_map(Ipld::Link),
    ]
}

/// Data-model values: no floats, integers in `i64`, nested lists and maps up to depth 4.
fn value() -> impl Strategy<Value = Ipld> {
    leaf().prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Ipld::List),
            prop::collection::btree_map(map_key(), inner, 0..6).prop_map(Ipld::Map),
        ]
    })
}

fn nsid() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("com.example.record".to_string()),
        Just("app.bsky.feed.post".to_string()),
        "[a-z]{2,6}\\.[a-z]{2,6}\\.[a-z][a-zA-Z]{0,8}",
    ]
}

/// A record: a map with an NSID `$type` and arbitrary other fields.
fn record() -> impl Strategy<Value = Ipld> {
    (
        nsid(),
        prop::collection::btree_map(map_key(), value(), 0..6),
    )
        .prop_map(|(t, mut m)| {
            m.insert("$type".into(), Ipld::String(t));
            Ipld::Map(m)
        })
}

/// Bytes that look like CBOR often enough to get past the first head.
fn cborish_bytes() -> impl Strategy<Value = Vec<u8>> {
    let interesting = vec![
        0x00, 0x01, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x20, 0x38, 0x3b, 0x40, 0x41, 0x58, 0x5f, 0x60,
        0x61, 0x63, 0x78, 0x7f, 0x80, 0x81, 0x82, 0x98, 0x9f, 0xa0, 0xa1, 0xa2, 0xb8, 0xbf, 0xc0,
        0xd8, 0x2a, 0xf4, 0xf5, 0xf6, 0xf7, 0xf9, 0xfa, 0xfb, 0xff, b'a', b'b', b's', b'i', b'g',
        0x71, 0x12, 0x55,
    ];
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..96),
        prop::collection::vec(prop::sample::select(interesting), 0..48),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Flip bit `bit` of the byte at `at` (taken modulo the length).
    Flip { at: usize, bit: u8 },
    /// Keep only the first `at` bytes (modulo the length).
    Truncate { at: usize },
    /// Insert `byte` before position `at` (modulo the length + 1).
    Insert { at: usize, byte: u8 },
    /// Remove the byte at `at`.
    Remove { at: usize },
    /// Overwrite the byte at `at`.
    Set { at: usize, byte: u8 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        1 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        1 => any::<usize>().prop_map(|at| Mutation::Remove { at }),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let n = bytes.len();
    match *m {
        Mutation::Flip { at, bit } if n > 0 => bytes[at % n] ^= 1 << bit,
        Mutation::Truncate { at } if n > 0 => bytes.truncate(at % n),
        Mutation::Insert { at, byte } => bytes.insert(at % (n + 1), byte),
        Mutation::Remove { at } if n > 0 => {
            bytes.remove(at % n);
        }
        Mutation::Set { at, byte } if n > 0 => bytes[at % n] = byte,
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Checks shared by the properties

/// Runs every decoder on `bytes` (none may panic) and checks strictness: if the data-model
/// decoder accepts them, they are exactly the canonical encoding of what it returned.
fn check_untrusted(bytes: &[u8]) -> Result<(), TestCaseError> {
    let checked = guild_core::cbor::check(bytes);
    let _ = decode_record(bytes);
    let _ = split_signed(bytes);
    let canonical = decode_canonical::<Ipld>(bytes);
    // The fast record check used by repository verification accepts everything
    // `decode_record` accepts, and nothing that the strict decoder refuses.
    let fast = check_record_bytes(bytes);
    if decode_record(bytes).is_ok() {
        prop_assert!(fast.is_ok(), "check_record_bytes refused a valid record");
    }
    if fast.is_ok() {
        prop_assert!(
            decode(bytes).is_ok(),
            "check_record_bytes accepted undecodable bytes"
        );
    }
    match decode(bytes) {
        Ok(v) => {
            prop_assert!(checked.is_ok(), "decode accepted what check refused");
            let again = encode_serde(&v).unwrap();
            prop_assert_eq!(
                &again,
                &bytes.to_vec(),
                "accepted a non-canonical encoding of {:?}",
                v
            );
            prop_assert!(canonical.is_ok());
            prop_assert_eq!(canonical.unwrap(), v);
        }
        Err(_) => prop_assert!(canonical.is_err()),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Properties

/// `cases` cases; no failure-persistence file (integration tests have no `src/` to put it
/// beside: a failure prints its minimal input instead).
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn encode_decode_round_trips(v in value()) {
        let bytes = encode(&v).unwrap();
        prop_assert_eq!(decode(&bytes).unwrap(), v.clone());
        prop_assert!(guild_core::cbor::check(&bytes).is_ok());
        let canon: Ipld = decode_canonical(&bytes).unwrap();
        prop_assert_eq!(canon, v);
    }

    #[test]
    fn encoding_is_deterministic_and_canonical(v in value()) {
        let a = encode(&v).unwrap();
        let b = encode(&v.clone()).unwrap();
        prop_assert_eq!(&a, &b);
        // Guild's checked encoder and the plain serde encoder agree byte for byte.
        prop_assert_eq!(&a, &encode_serde(&v).unwrap());
        // Re-encoding what was decoded gives the same bytes.
        prop_assert_eq!(&encode(&decode(&a).unwrap()).unwrap(), &a);
        prop_assert_eq!(cid_for_cbor(&a), guild_core::data::encode_with_cid(&v).unwrap().0);
    }

    #[test]
    fn json_form_round_trips(v in value()) {
        let j = to_json(&v);
        prop_assert_eq!(from_json(&j).unwrap(), v.clone());
        // And through JSON text.
        let text = serde_json::to_string(&j).unwrap();
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(from_json(&back).unwrap(), v);
    }

    #[test]
    fn json_fast_path_matches_from_json_then_encode(v in value(), r in record()) {
        prop_assert_eq!(json_to_cbor(&to_json(&v)).unwrap(), encode(&v).unwrap());
        let (cid, bytes) = encode_record(&r).unwrap();
        prop_assert_eq!(encode_record_json(&to_json(&r)).unwrap(), (cid, bytes));
    }

    #[test]
    fn records_round_trip(r in record()) {
        let (cid, bytes) = encode_record(&r).unwrap();
        prop_assert_eq!(cid, cid_for_cbor(&bytes));
        prop_assert_eq!(decode_record(&bytes).unwrap(), r);
    }

    #[test]
    fn integers_outside_i64_are_refused(hi in (i64::MAX as i128 + 1)..=(u64::MAX as i128), neg in any::<bool>()) {
        let i = if neg { -hi - 1 } else { hi };
        prop_assert!(encode(&Ipld::Integer(i)).is_err());
        let mut m = BTreeMap::new();
        m.insert("$type".to_string(), Ipld::String("com.example.x".into()));
        m.insert("n".to_string(), Ipld::Integer(i));
        prop_assert!(encode_record(&Ipld::Map(m.clone())).is_err());
        // The same value written without the check is refused by the decoder.
        let raw = encode_serde(&Ipld::Map(m)).unwrap();
        prop_assert!(decode(&raw).is_err());
        prop_assert!(decode_record(&raw).is_err());
    }

    #[test]
    fn floats_are_refused_by_encoder_and_decoder(f in any::<f64>(), v in value()) {
        let nested = Ipld::List(vec![v, Ipld::Float(f)]);
        prop_assert!(encode(&nested).is_err());
        let raw = encode_serde(&nested).unwrap();
        prop_assert!(guild_core::cbor::check(&raw).is_err());
        prop_assert!(decode(&raw).is_err());
    }

    #[test]
    fn split_signed_recovers_unsigned_bytes(
        fields in prop::collection::btree_map(map_key(), value(), 0..6),
        sig in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        let mut fields = fields;
        fields.remove("sig");
        let unsigned = encode(&Ipld::Map(fields.clone())).unwrap();
        let mut signed = fields.clone();
        signed.insert("sig".into(), Ipld::Bytes(sig.clone()));
        let signed_bytes = encode(&Ipld::Map(signed)).unwrap();
        let (u, s) = split_signed(&signed_bytes).unwrap();
        prop_assert_eq!(u, unsigned.clone());
        prop_assert_eq!(s, sig);
        // Without a sig, or with a sig that is not bytes, it is refused.
        prop_assert!(split_signed(&unsigned).is_err());
        let mut bad = fields;
        bad.insert("sig".into(), Ipld::String("x".into()));
        prop_assert!(split_signed(&encode(&Ipld::Map(bad)).unwrap()).is_err());
    }
}

proptest! {
    #![proptest_config(config(4096))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in cborish_bytes()) {
        check_untrusted(&bytes)?;
    }

    #[test]
    fn mutated_encodings_are_rejected_or_exact(
        v in value(),
        muts in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut bytes = encode(&v).unwrap();
        for m in &muts {
            apply(&mut bytes, m);
        }
        check_untrusted(&bytes)?;
    }

    #[test]
    fn mutated_records_are_rejected_or_exact(
        r in record(),
        muts in prop::collection::vec(mutation(), 1..3),
    ) {
        let (_, mut bytes) = encode_record(&r).unwrap();
        for m in &muts {
            apply(&mut bytes, m);
        }
        check_untrusted(&bytes)?;
        if let Ok(d) = decode_record(&bytes) {
            prop_assert_eq!(encode_record(&d).unwrap().1, bytes);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-made edge cases

/// Every single-bit flip and every truncation of a value holding every kind of item.
#[test]
fn exhaustive_single_bit_flips_of_a_rich_value() {
    let j = serde_json::json!({
        "$type": "com.example.rich",
        "a": [1, -1, 24, -25, 256, 65536, 4294967296i64, i64::MIN, i64::MAX, null, true, false],
        "b": {"$bytes": "AAECAwQFBgcICQ"},
        "c": {"$link": "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua"},
        "d": {"nested": {"deeper": ["x", "yy", "zzz", ""]}},
        "text": "héllo ☎ 😀",
    });
    let v = from_json(&j).unwrap();
    let (_, bytes) = encode_record(&v).unwrap();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut m = bytes.clone();
            m[i] ^= 1 << bit;
            check_untrusted(&m).unwrap_or_else(|e| panic!("flip byte {i} bit {bit}: {e}"));
        }
        check_untrusted(&bytes[..i]).unwrap();
        assert!(decode(&bytes[..i]).is_err(), "truncated at {i} accepted");
    }
}

#[test]
fn deep_nesting_is_refused_without_overflow() {
    for opener in [0x81u8, 0xa1] {
        let mut deep = Vec::new();
        for _ in 0..200_000 {
            deep.push(opener);
            if opener == 0xa1 {
                deep.extend_from_slice(&[0x61, b'a']);
            }
        }
        deep.push(0x01);
        assert!(guild_core::cbor::check(&deep).is_err());
        assert!(decode(&deep).is_err());
        assert!(decode_record(&deep).is_err());
        assert!(split_signed(&deep).is_err());
    }
    // And values nested too deep are refused by the encoder rather than blowing the stack.
    let mut v = Ipld::Null;
    for _ in 0..1000 {
        v = Ipld::List(vec![v]);
    }
    assert!(encode(&v).is_err());
    let mut j = serde_json::Value::Null;
    for _ in 0..1000 {
        j = serde_json::Value::Array(vec![j]);
    }
    assert!(from_json(&j).is_err());
}

/// A link is tag 42 around `0x00 ‖ CID bytes`. Bytes after the CID inside the byte string are
/// not part of the CID; a strict decoder must refuse them, or one link value would have two
/// encodings (and a record two CIDs).
#[test]
fn link_with_trailing_bytes_inside_the_tag_is_refused() {
    let cid = cid_for_cbor(b"x");
    let good = encode(&Ipld::Link(cid)).unwrap();
    let cid_bytes = cid.to_bytes();
    assert_eq!(good[..4], [0xd8, 0x2a, 0x58, (cid_bytes.len() + 1) as u8]);
    let mut bad = vec![0xd8, 0x2a, 0x58, (cid_bytes.len() + 2) as u8, 0x00];
    bad.extend_from_slice(&cid_bytes);
    bad.push(0x00);
    assert!(
        decode(&bad).is_err(),
        "decode accepted a link with a trailing byte: {:?}",
        decode(&bad)
    );
    // The same inside a record.
    let mut rec = vec![0xa2, 0x61, b'l'];
    rec.extend_from_slice(&bad);
    rec.extend_from_slice(&[0x65, b'$', b't', b'y', b'p', b'e', 0x6d]);
    rec.extend_from_slice(b"com.example.x");
    assert!(
        decode_record(&rec).is_err(),
        "decode_record accepted a link with a trailing byte"
    );
}

#[test]
fn non_canonical_forms_are_refused() {
    let refused: &[(&str, &[u8])] = &[
        ("non-minimal int", &[0x18, 0x01]),
        ("non-minimal negative", &[0x38, 0x00]),
        ("non-minimal length", &[0x78, 0x01, b'a']),
        ("non-minimal map length", &[0xb8, 0x00]),
        ("indefinite string", &[0x7f, 0x61, b'a', 0xff]),
        ("indefinite map", &[0xbf, 0xff]),
        (
            "unsorted keys (length first)",
            &[0xa2, 0x62, b'a', b'a', 0x01, 0x61, b'b', 0x02],
        ),
        (
            "unsorted keys (bytewise)",
            &[0xa2, 0x61, b'b', 0x01, 0x61, b'a', 0x02],
        ),
        (
            "duplicate keys",
            &[0xa2, 0x61, b'a', 0x01, 0x61, b'a', 0x01],
        ),
        ("float16", &[0xf9, 0x3c, 0x00]),
        ("float32", &[0xfa, 0x3f, 0x80, 0x00, 0x00]),
        ("undefined", &[0xf7]),
        ("simple value", &[0xf0]),
        ("tag 0", &[0xc0, 0x60]),
        ("tag 42 around a string", &[0xd8, 0x2a, 0x61, 0x00]),
        (
            "tag 42 without multibase prefix",
            &[0xd8, 0x2a, 0x42, 0x01, 0x71],
        ),
        ("non-minimal tag", &[0xd9, 0x00, 0x2a, 0x41, 0x00]),
        ("invalid UTF-8", &[0x61, 0xff]),
        ("byte-string key", &[0xa1, 0x41, b'a', 0x01]),
        ("trailing byte", &[0xf6, 0xf6]),
        ("empty input", &[]),
    ];
    for (what, bytes) in refused {
        assert!(decode(bytes).is_err(), "{what}: accepted");
        assert!(decode_record(bytes).is_err(), "{what}: accepted as record");
        check_untrusted(bytes).unwrap();
    }
}
