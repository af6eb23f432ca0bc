//! DAG-CBOR decoding of untrusted bytes: `data::decode`, `data::decode_record`, `cbor::check`
//! and `keys::split_signed` must never panic, and the decoder must be strict: whatever it
//! accepts is exactly the canonical encoding of the value it returns (no second encoding of
//! one value, so no second CID).
#![no_main]

use guild_core::data;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let checked = guild_core::cbor::check(input);
    let record = data::decode_record(input);
    let _ = guild_core::keys::split_signed(input);
    match data::decode(input) {
        Ok(value) => {
            assert!(checked.is_ok(), "decode accepted what check refused");
            let again = data::encode_serde(&value).expect("a decoded value re-encodes");
            assert!(
                again == input,
                "non-canonical input accepted: {value:?} re-encodes differently"
            );
            let canon: data::Ipld = data::decode_canonical(input).expect("canonical");
            assert_eq!(canon, value);
            // Only valid values round-trip through the JSON form; those must come back equal.
            if data::validate(&value).is_ok() {
                let json = data::to_json(&value);
                if let Ok(back) = data::from_json(&json) {
                    assert_eq!(back, value, "JSON form round trip");
                }
            }
        }
        Err(_) => assert!(
            record.is_err(),
            "decode_record accepted what decode refused"
        ),
    }
});
