//! The lexicon stays the wire contract of the typed op bodies (`guild_gov::body`): for every
//! op kind, a minimal and a maximal instance written from the lexicon (every optional field
//! set) validates against the kind's lexicon, decodes into the typed body, and encodes back to
//! the same fields; and what a typed body serializes validates against its lexicon.

use std::collections::BTreeMap;

use guild_core::{Ipld, data};
use guild_gov::OpKind;
use guild_gov::body::{Compensation, OpBody, Template};
use guild_lexicon::Registry;
use serde_json::{Value, json};

const CID: &str = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm";
const DID: &str = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK";
const DID2: &str = "did:plc:7iza6de2dwap2sbkpav7c6c6";
const AT: &str = "2026-12-02T10:00:00.000Z";

fn template() -> Value {
    json!({
        "id": "research-open", "title": "Research, open", "version": 2,
        "uses": ["train", "evaluate"], "userClasses": ["research"], "territories": ["DE", "FR"],
        "flowDown": {"syntheticData": true, "downstreamModels": false},
        "attribution": {"required": true, "form": "model-card", "text": "By the Poets"},
        "compensation": {"$type": "coop.guild.licence.template#revenueShare", "share": 300,
            "base": "gross-revenue", "minimum": {"amount": 1000, "currency": "EUR"}},
        "termDays": 365, "noticeDays": 90, "onTermination": "retain-trained-models",
        "reporting": {"required": true, "intervalDays": 90, "contents": ["usage-counts"]},
        "canary": true
    })
}

fn charter_fields() -> Value {
    json!({
        "name": "Poets", "purpose": "Licensing poems",
        "admission": {"policy": "invite-or-request", "approval": "vote", "inviteTtlDays": 7},
        "stewardship": {"seats": 3, "termDays": 365, "electionMethod": "approval",
            "tellers": "stewards"},
        "quorum": {"amendment": 6667, "removal": 5001, "turnout": 3000, "countersignatures": 2},
        "acceptedLexicons": ["coop.guild.data.text"],
        "licenceTemplates": [template()],
        "payoutPolicy": {"period": "monthly", "method": "equal", "stewardShare": 500,
            "reserveShare": 200},
        "privatePrices": true,
        "canaries": {"perBundle": 3}
    })
}

/// (kind, minimal body, maximal body).
fn instances() -> Vec<(OpKind, Value, Value)> {
    let money = json!({"amount": 1200, "currency": "EUR"});
    vec![
        (
            OpKind::Charter,
            json!({
                "name": "P",
                "admission": {"policy": "invite-only", "approval": "steward"},
                "stewardship": {"seats": 1, "termDays": 1, "electionMethod": "approval"},
                "quorum": {"amendment": 5000, "turnout": 0, "countersignatures": 1},
                "acceptedLexicons": ["coop.guild.data.text"],
                "licenceTemplates": [],
                "payoutPolicy": {"period": "monthly", "method": "equal"}
            }),
            charter_fields(),
        ),
        (
            OpKind::Amendment,
            json!({"changes": {"name": "Q"}}),
            json!({"changes": charter_fields(), "rationale": "why"}),
        ),
        (
            OpKind::Invite,
            json!({"secretHash": {"$bytes": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}),
            json!({"secretHash": {"$bytes": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
                "invitee": DID2, "expiresAt": AT, "note": "welcome"}),
        ),
        (
            OpKind::Join,
            json!({}),
            json!({"invite": CID, "secret": {"$bytes": "AAAAAAAAAAAAAAAAAAAAAA"},
                "statement": "hello"}),
        ),
        (
            OpKind::Admit,
            json!({"member": DID2, "join": CID}),
            json!({"member": DID2, "join": CID, "election": CID}),
        ),
        (
            OpKind::Remove,
            json!({"member": DID2}),
            json!({"member": DID2, "reason": "spam", "election": CID}),
        ),
        (OpKind::Leave, json!({}), json!({"reason": "moving on"})),
        (
            OpKind::ConsentGrant,
            json!({"templates": ["research-open"], "rev": 1,
                "scope": {"$type": "coop.guild.consent.grant#repo"}, "effectiveFrom": AT}),
            json!({"templates": ["research-open", "eval-public"], "rev": 7,
                "scope": {"$type": "coop.guild.consent.grant#collections",
                    "collections": ["coop.guild.data.text"]},
                "effectiveFrom": AT, "note": "ok"}),
        ),
        (
            OpKind::ConsentRevoke,
            json!({"templates": ["research-open"], "rev": 2, "effectiveFrom": AT}),
            json!({"templates": ["research-open"], "rev": 2, "grant": CID,
                "scope": {"$type": "coop.guild.consent.grant#records",
                    "records": [format!("at://{DID2}/coop.guild.data.text/3jzfcijpj2z2a")]},
                "effectiveFrom": AT, "reason": "changed my mind"}),
        ),
        (
            OpKind::ElectionOpen,
            json!({"kind": "removal", "method": "approval", "electorate": CID,
                "tellers": [DID], "closesAfter": AT}),
            json!({"kind": "stewards", "method": "approval", "seats": 2,
                "candidates": [DID, DID2], "proposal": CID, "electorate": CID,
                "tellers": [DID, DID2], "closesAfter": AT}),
        ),
        (
            OpKind::Ballot,
            json!({"election": CID, "rev": 0, "approvals": []}),
            json!({"election": CID, "rev": 3, "approvals": ["yes", DID, "something else"]}),
        ),
        (
            OpKind::Seal,
            json!({"election": CID, "ballotSet": CID, "ballotCount": 0, "result": {"tally": []}}),
            json!({"election": CID, "ballotSet": CID, "ballotCount": 1,
                "result": {"tally": [{"choice": DID, "approvals": 1},
                    {"choice": "no", "approvals": 0}],
                    "elected": [DID], "outcome": "adopted"}}),
        ),
        (
            OpKind::AgreementOffer,
            json!({"builder": DID2, "template": "research-open", "terms": template()}),
            json!({"builder": DID2, "template": "research-open", "terms": template(),
                "expiresAt": AT, "note": "for you"}),
        ),
        (
            OpKind::AgreementAccept,
            json!({"offer": CID}),
            json!({"offer": CID, "contact": "ops@example.com"}),
        ),
        (
            OpKind::AgreementCountersign,
            json!({"offer": CID, "accept": CID}),
            json!({"offer": CID, "accept": CID}),
        ),
        (
            OpKind::BundleProposal,
            json!({"agreement": CID, "cut": {"heads": [CID], "replicas": []},
                "kind": "training"}),
            json!({"agreement": CID, "cut": {"heads": [CID], "replicas": [
                    {"did": DID2, "rev": "3jzfcijpj2z2a", "commit": CID}]},
                "kind": "evaluation", "note": "first"}),
        ),
        (
            OpKind::BundleApproval,
            json!({"proposal": CID, "manifest": CID}),
            json!({"proposal": CID, "manifest": CID}),
        ),
        (
            OpKind::PayoutStatement,
            json!({"period": {"id": "2026-11", "start": AT, "end": AT}, "total": money,
                "method": "largest-remainder", "lines": []}),
            json!({"agreement": CID, "period": {"id": "2026-11", "start": AT, "end": AT},
                "total": money, "method": "largest-remainder", "lines": [
                    {"member": DID2, "weight": 3, "memberDays": 30, "amount": 1200}]}),
        ),
        (
            OpKind::BundleReceipt,
            json!({"agreement": CID, "revoke": CID}),
            json!({"agreement": CID, "bundle": CID}),
        ),
    ]
}

/// The body's fields with an envelope, as a record of the kind.
fn with_envelope(kind: OpKind, body: &BTreeMap<String, Ipld>) -> Ipld {
    let mut m = body.clone();
    m.insert("$type".into(), Ipld::String(kind.nsid().into()));
    m.insert("author".into(), Ipld::String(DID.into()));
    m.insert("createdAt".into(), Ipld::String(AT.into()));
    m.insert("sig".into(), Ipld::Bytes(vec![0; 64]));
    if kind == OpKind::Charter {
        m.insert("prev".into(), Ipld::List(Vec::new()));
    } else {
        let cid = guild_core::syntax::parse_cid_str(CID).unwrap();
        m.insert("collective".into(), Ipld::String(CID.into()));
        m.insert("prev".into(), Ipld::List(vec![Ipld::Link(cid)]));
    }
    Ipld::Map(m)
}

fn fields(v: &Value) -> BTreeMap<String, Ipld> {
    match data::from_json(v).unwrap() {
        Ipld::Map(m) => m,
        other => panic!("not a map: {other:?}"),
    }
}

#[test]
fn every_kind_has_instances_here() {
    let covered: Vec<OpKind> = instances().iter().map(|(k, _, _)| *k).collect();
    assert_eq!(covered, OpKind::ALL.to_vec());
}

#[test]
fn lexicon_instances_decode_into_typed_bodies_and_back_unchanged() {
    let registry = Registry::builtin();
    for (kind, min, max) in instances() {
        for (which, v) in [("minimal", min), ("maximal", max)] {
            let f = fields(&v);
            registry
                .validate_record(&with_envelope(kind, &f))
                .unwrap_or_else(|e| panic!("{kind:?} {which} breaks its lexicon: {e}"));
            let body = OpBody::from_fields(kind, &f)
                .unwrap_or_else(|e| panic!("{kind:?} {which} does not decode: {e}"));
            assert_eq!(body.kind(), kind);
            let again = body.to_fields().unwrap();
            assert_eq!(again, f, "{kind:?} {which} does not round-trip");
            registry
                .validate_record(&with_envelope(kind, &again))
                .unwrap_or_else(|e| panic!("{kind:?} {which} re-encoded breaks its lexicon: {e}"));
        }
    }
}

#[test]
fn a_later_compensation_kind_is_kept_as_received() {
    let mut t = template();
    t["compensation"] = json!({"$type": "coop.guild.licence.template#perToken",
        "feePerMillion": {"amount": 5, "currency": "EUR"}});
    let parsed: Template = ipld_core_free_decode(&t);
    assert!(matches!(parsed.compensation, Compensation::Other(_)));
    let back = data::decode(&data::encode_serde(&parsed).unwrap()).unwrap();
    assert_eq!(back, data::from_json(&t).unwrap());
}

fn ipld_core_free_decode<T: serde::de::DeserializeOwned>(v: &Value) -> T {
    let bytes = data::encode(&data::from_json(v).unwrap()).unwrap();
    data::decode_as(&bytes).unwrap()
}

#[test]
fn a_body_that_breaks_a_rule_the_lexicon_cannot_express_is_a_body_error() {
    // `format: cid` accepts CID-shaped strings that do not decode; the typed body refuses them.
    let f = fields(&json!({"offer": "bafyfakecidstringthatdoesnotdecode"}));
    assert!(matches!(
        OpBody::from_fields(OpKind::AgreementAccept, &f),
        Err(guild_gov::OpError::Body(_))
    ));
}
