//! Replays every saved fuzz input under `tests/regressions/<target>/` through the same checks
//! as the fuzz target of that name (`fuzz/fuzz_targets/<target>.rs`), with the replay shared
//! by every crate (`fuzz/replay.rs`). Files named `README.md`
//! are skipped; an empty folder passes.

use guild_core::data;

#[path = "../../../fuzz/replay.rs"]
mod replay;

/// The checks of `fuzz/fuzz_targets/dag_cbor.rs`.
fn dag_cbor(input: &[u8]) -> Result<(), String> {
    let checked = guild_core::cbor::check(input);
    let record = data::decode_record(input);
    let _ = guild_core::keys::split_signed(input);
    match data::decode(input) {
        Ok(value) => {
            if checked.is_err() {
                return Err("decode accepted what check refused".into());
            }
            let again = data::encode_serde(&value).map_err(|e| e.to_string())?;
            if again != input {
                return Err(format!(
                    "non-canonical input accepted: {value:?} re-encodes to {again:02x?}"
                ));
            }
            let canon: data::Ipld = data::decode_canonical(input).map_err(|e| e.to_string())?;
            if canon != value {
                return Err("decode_canonical disagrees with decode".into());
            }
            if data::validate(&value).is_ok()
                && let Ok(back) = data::from_json(&data::to_json(&value))
                && back != value
            {
                return Err("JSON form round trip changed the value".into());
            }
            Ok(())
        }
        Err(_) if record.is_ok() => Err("decode_record accepted what decode refused".into()),
        Err(_) => Ok(()),
    }
}

#[test]
fn dag_cbor_regressions() {
    replay::replay(env!("CARGO_MANIFEST_DIR"), "dag_cbor", dag_cbor);
}
