//! The two ways an op is decoded must agree: `SignedOp::decode` (bytes from the network: a
//! map of every field, the lexicon, the signature) and `SignedOp::decode_trusted` (the node's
//! own store: the envelope's fields read straight from the bytes, borrowed). A node that
//! restarts must rebuild exactly the ops it accepted, and trusted bytes that are not an op must
//! still be refused.

use std::collections::BTreeSet;

use guild_core::{Ipld, data};
use guild_gov::history::{History, HistoryConfig};
use guild_gov::{OpKind, SignedOp};

#[test]
fn trusted_decoding_gives_the_same_op_as_full_decoding_for_every_op_of_a_history() {
    let history = History::with_ops(HistoryConfig::new(60), 4_000);
    let mut kinds = BTreeSet::new();
    for bytes in history.ops() {
        let full = SignedOp::decode(bytes).expect("the generator signs valid ops");
        let trusted = SignedOp::decode_trusted(bytes).expect("and they decode trusted");
        assert_eq!(trusted, full);
        kinds.insert(full.kind());
    }
    // The history holds the envelope's every shape: the genesis charter (no collective, no
    // parents), ops with one and with several parents, and most kinds.
    for kind in [
        OpKind::Charter,
        OpKind::Invite,
        OpKind::Join,
        OpKind::ConsentGrant,
        OpKind::ConsentRevoke,
        OpKind::ElectionOpen,
        OpKind::Ballot,
        OpKind::Seal,
    ] {
        assert!(kinds.contains(&kind), "no {kind:?} in {kinds:?}");
    }
}

/// Re-encodes `bytes` with `field` set to `value` (or removed, for `None`).
fn with_field(bytes: &[u8], field: &str, value: Option<Ipld>) -> Vec<u8> {
    let Ok(Ipld::Map(mut map)) = data::decode(bytes) else {
        panic!("an op is a map");
    };
    match value {
        Some(v) => map.insert(field.to_owned(), v),
        None => map.remove(field),
    };
    data::encode(&Ipld::Map(map)).expect("encodable")
}

#[test]
fn trusted_decoding_still_refuses_a_broken_envelope() {
    let history = History::with_ops(HistoryConfig::new(5), 40);
    let charter = &history.ops()[0];
    let op = &history.ops()[1];
    assert!(SignedOp::decode_trusted(op).is_ok());
    let cases = [
        (op, "author", None),
        (op, "author", Some(Ipld::Integer(7))),
        (op, "author", Some(Ipld::String("not a did".into()))),
        (op, "$type", None),
        (
            op,
            "$type",
            Some(Ipld::String("coop.guild.gov.nothing".into())),
        ),
        (op, "prev", None),
        (op, "prev", Some(Ipld::List(vec![Ipld::String("x".into())]))),
        (op, "createdAt", None),
        (op, "createdAt", Some(Ipld::String("yesterday".into()))),
        (op, "collective", None),
        (op, "collective", Some(Ipld::Null)),
        (op, "collective", Some(Ipld::String("not a cid".into()))),
        // The genesis charter names no collective: `null` is not "none".
        (charter, "collective", Some(Ipld::Null)),
    ];
    for (bytes, field, value) in cases {
        let broken = with_field(bytes, field, value.clone());
        let trusted = SignedOp::decode_trusted(&broken);
        assert!(
            trusted.is_err(),
            "{field} = {value:?} decoded trusted: {trusted:?}"
        );
        assert!(SignedOp::decode(&broken).is_err(), "{field} = {value:?}");
    }
    // Not a map at all.
    let list = data::encode(&Ipld::List(vec![])).expect("encodable");
    assert!(SignedOp::decode_trusted(&list).is_err());
}
