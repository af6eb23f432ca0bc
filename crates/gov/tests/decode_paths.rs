//! The two ways an op is decoded must agree: `SignedOp::decode` (bytes from the network: a
//! map of every field, the lexicon, the signature) and `SignedOp::decode_trusted` (the node's
//! own store: the envelope's fields read straight from the bytes, borrowed). A node that
//! restarts must rebuild exactly the ops it accepted, and trusted bytes whose envelope is
//! broken must still be refused, for the envelope's reason (the lexicon and the signature,
//! which would refuse them on the other path, are not checked on this one).

use std::collections::BTreeSet;

use guild_core::{Ipld, data};
use guild_gov::history::{History, HistoryConfig};
use guild_gov::{OpError, OpKind, SignedOp};

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

/// Which error the trusted path must give.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// A field the envelope needs is missing or wrong (`OpError::Field`).
    Field(&'static str),
    /// `$type` is missing or unknown.
    UnknownKind,
    /// A field of another type than the envelope's, or not a map: refused while decoding.
    Decode,
}

fn gives(err: &OpError, want: Want) -> bool {
    match want {
        Want::Field(name) => matches!(err, OpError::Field { field, .. } if *field == name),
        Want::UnknownKind => matches!(err, OpError::UnknownKind(_)),
        Want::Decode => matches!(err, OpError::Cbor(_)),
    }
}

#[test]
fn trusted_decoding_still_refuses_a_broken_envelope() {
    let history = History::with_ops(HistoryConfig::new(5), 40);
    let charter = &history.ops()[0];
    let op = &history.ops()[1];
    assert!(SignedOp::decode_trusted(op).is_ok());
    let text = |t: &str| Some(Ipld::String(t.into()));
    let cases = [
        (op, "author", None, Want::Field("author")),
        (op, "author", Some(Ipld::Integer(7)), Want::Decode),
        (op, "author", text("not a did"), Want::Field("author")),
        (op, "$type", None, Want::UnknownKind),
        (
            op,
            "$type",
            text("coop.guild.gov.nothing"),
            Want::UnknownKind,
        ),
        (op, "prev", None, Want::Field("prev")),
        (
            op,
            "prev",
            Some(Ipld::List(vec![Ipld::String("x".into())])),
            Want::Field("prev"),
        ),
        (op, "createdAt", None, Want::Field("createdAt")),
        (op, "createdAt", text("yesterday"), Want::Field("createdAt")),
        (op, "collective", None, Want::Field("collective")),
        (op, "collective", Some(Ipld::Null), Want::Decode),
        (
            op,
            "collective",
            text("not a cid"),
            Want::Field("collective"),
        ),
        // The genesis charter names no collective: `null` is not "none".
        (charter, "collective", Some(Ipld::Null), Want::Decode),
    ];
    for (bytes, field, value, want) in cases {
        let broken = with_field(bytes, field, value.clone());
        match SignedOp::decode_trusted(&broken) {
            Err(err) => assert!(
                gives(&err, want),
                "{field} = {value:?}: {err:?}, not {want:?}"
            ),
            Ok(op) => panic!("{field} = {value:?} decoded trusted: {op:?}"),
        }
    }
    // Not a map at all.
    let list = data::encode(&Ipld::List(vec![])).expect("encodable");
    let err = SignedOp::decode_trusted(&list).expect_err("a list is no op");
    assert!(gives(&err, Want::Decode), "{err:?}");
}
