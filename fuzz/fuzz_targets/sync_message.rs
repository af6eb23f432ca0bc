//! Anti-entropy messages from untrusted bytes: `guild_gov::Message::decode`, then, for the
//! input itself and for any `reconcile` / `reconcileReply` frame it decodes to, Negentropy's
//! responder (`reconcile::answer`) and initiator (`reconcile::step`) over a fixed set of 300
//! ids. Must hold: no panic (the wrappers catch one and call it an error, so a caught panic is
//! reported here as a failure); a message that decodes re-encodes to exactly the input.
#![no_main]

use std::sync::OnceLock;

use guild_gov::Message;
use guild_gov::reconcile::{self, OpSet, ReconcileError};
use libfuzzer_sys::fuzz_target;

fn set() -> &'static OpSet {
    static SET: OnceLock<OpSet> = OnceLock::new();
    SET.get_or_init(|| OpSet::from_items((0..300u64).map(|i| (i / 3, guild_core::cids::sha256(&i.to_be_bytes())))))
}

fn check(frame: &[u8]) {
    for r in [reconcile::answer(set(), frame).map(|_| ()), reconcile::step(set(), frame).map(|_| ())] {
        assert_ne!(r, Err(ReconcileError::Panicked), "negentropy panicked");
    }
}

fuzz_target!(|input: &[u8]| {
    check(input);
    if let Ok(msg) = Message::decode(input) {
        assert_eq!(msg.encode(), input, "a decoded message re-encodes to its input");
        if let Message::Reconcile(frame) | Message::ReconcileReply(frame) = &msg {
            check(frame);
        }
    }
});
