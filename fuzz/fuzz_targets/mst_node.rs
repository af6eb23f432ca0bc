//! MST node decoding of untrusted bytes: `mst::decode_node` must never panic, and whatever it
//! accepts must be exactly what `mst::encode_node` writes for the decoded node.
#![no_main]

use guild_repo::mst::{decode_node, encode_node};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    // A fixed CID: decode_node uses it only to name the node in errors.
    let cid = guild_core::cids::cid_for_cbor(b"mst-node-fuzz");
    let Ok(node) = decode_node(&cid, input) else {
        return;
    };
    let mut out = Vec::new();
    encode_node(
        node.left.as_ref(),
        node.entries
            .iter()
            .map(|(k, v, t)| (k.as_slice(), v, t.as_ref())),
        &mut out,
    );
    assert!(out == input, "decoded node re-encodes differently");
    for w in node.entries.windows(2) {
        assert!(w[0].0 < w[1].0, "keys out of order");
    }
});
