//! Feed frames from a steward's node, as a builder's client reads them: the binary form
//! (`Frame::from_cbor`) and the JSON variant (`Frame::from_json`, the input as lossy UTF-8).
//! No panic; an accepted binary frame re-encodes to exactly the input; an accepted JSON frame
//! encodes to JSON that decodes to the same frame.
#![no_main]

use guild_feed::Frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if let Ok(frame) = Frame::from_cbor(input) {
        assert_eq!(frame.to_cbor().expect("re-encodes"), input);
    }
    let text = String::from_utf8_lossy(input);
    if let Ok(frame) = Frame::from_json(&text) {
        let again = frame.to_json().expect("re-encodes");
        assert_eq!(Frame::from_json(&again).expect("decodes"), frame);
    }
});
