//! Replays every saved fuzz input under `tests/regressions/<target>/` through the same checks
//! as the fuzz target of that name (`fuzz/fuzz_targets/<target>.rs`), with the replay shared
//! by every crate (`fuzz/replay.rs`).

use guild_feed::Frame;

#[path = "../../../fuzz/replay.rs"]
mod replay;

/// The checks of `fuzz/fuzz_targets/feed_frame.rs`.
fn feed_frame(input: &[u8]) -> Result<(), String> {
    if let Ok(frame) = Frame::from_cbor(input) {
        let again = frame.to_cbor().map_err(|e| e.to_string())?;
        if again != input {
            return Err(format!(
                "accepted non-canonical frame re-encodes to {again:02x?}"
            ));
        }
    }
    let text = String::from_utf8_lossy(input);
    if let Ok(frame) = Frame::from_json(&text) {
        let again = frame.to_json().map_err(|e| e.to_string())?;
        if Frame::from_json(&again).map_err(|e| e.to_string())? != frame {
            return Err("the JSON round trip changed the frame".into());
        }
    }
    Ok(())
}

#[test]
fn feed_frame_regressions() {
    replay::replay(env!("CARGO_MANIFEST_DIR"), "feed_frame", feed_frame);
}
