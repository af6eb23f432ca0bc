//! guild-license reads the lexicon shape itself; this holds it equal to guild-gov's reading:
//! every standard template the charter carries (`guild_gov::make::standard_templates()`)
//! converts to the [`Contract`] guild-license defines for the same id, and back to the same
//! JSON value, field for field.

use guild_license::{Contract, STANDARD_IDS, standard};

#[test]
fn every_gov_standard_template_round_trips() {
    let gov = guild_gov::make::standard_templates();
    assert_eq!(gov.len(), STANDARD_IDS.len());
    let ours = standard();
    for (g, mine) in gov.iter().zip(&ours) {
        let json = serde_json::to_value(g).unwrap();
        let contract = Contract::from_record_json(&json).unwrap();
        assert_eq!(&contract, mine, "{}", g.id);
        assert_eq!(contract.to_record_json(), json, "{}", g.id);
        let back: guild_gov::body::Template =
            serde_json::from_value(contract.to_record_json()).unwrap();
        assert_eq!(&back, g);
    }
}

#[test]
fn a_maximal_record_round_trips() {
    let json = serde_json::json!({
        "id": "my-template", "title": "Mine", "version": 3,
        "uses": ["evaluate", "index"], "userClasses": ["public-sector", "personal"],
        "territories": ["FR", "DE"],
        "flowDown": {"syntheticData": false, "downstreamModels": true},
        "attribution": {"required": true, "form": "per-output", "text": "By the Poets"},
        "compensation": {"$type": "coop.guild.licence.template#revenueShare", "share": 1250,
            "base": "net-revenue", "minimum": {"amount": 1000, "currency": "JPY"}},
        "termDays": 30, "noticeDays": 0, "onTermination": "delete-records",
        "reporting": {"required": true, "intervalDays": 7, "contents": ["revenue", "incidents"]},
        "canary": false
    });
    let c = Contract::from_record_json(&json).unwrap();
    assert_eq!(c.to_record_json(), json);
    let g: guild_gov::body::Template = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(serde_json::to_value(g).unwrap(), json);
}

#[test]
fn bad_records_are_refused_by_name() {
    let base = serde_json::to_value(&guild_gov::make::standard_templates()[0]).unwrap();
    let with = |path: &[&str], v: serde_json::Value| {
        let mut j = base.clone();
        let mut at = &mut j;
        for p in &path[..path.len() - 1] {
            at = at.get_mut(*p).unwrap();
        }
        at[path[path.len() - 1]] = v;
        Contract::from_record_json(&j).unwrap_err().to_string()
    };
    assert!(with(&["uses"], serde_json::json!(["dance"])).contains("dance"));
    assert!(with(&["compensation", "share"], serde_json::json!(10_001)).contains("10001"));
    assert!(with(&["territories"], serde_json::json!(["XX"])).contains("XX"));
    assert!(with(&["canary"], serde_json::json!(true)).contains("canary"));
    assert!(with(&["extra"], serde_json::json!(1)).contains("extra"));
    let mut fee = base.clone();
    fee["compensation"] = serde_json::json!({"$type": "coop.guild.licence.template#fixedFee",
        "fee": {"amount": 100, "currency": "EURO"}, "period": "monthly"});
    assert!(
        Contract::from_record_json(&fee)
            .unwrap_err()
            .to_string()
            .contains("EURO")
    );
    fee["compensation"]["$type"] = serde_json::json!("coop.guild.licence.template#barter");
    assert!(
        Contract::from_record_json(&fee)
            .unwrap_err()
            .to_string()
            .contains("barter")
    );
}
