//! ODRL 2.2 JSON-LD: the whole contract as an `Offer` (a template published by a collective)
//! or an `Agreement` (with the builder as assignee), with the Guild profile
//! (`context/guild-licence-v1.jsonld`) for what ODRL lacks.

use serde_json::{Map, Value, json};

use super::Publication;
use crate::error::LicenceError;
use crate::terms::{Compensation, Contract, Money, Territory, UseKind};

/// The ODRL 2.2 JSON-LD context.
pub const ODRL_CONTEXT: &str = "http://www.w3.org/ns/odrl.jsonld";
/// The Guild profile's IRI.
pub const GUILD_PROFILE: &str = "https://guild.coop/ns/licence/v1#";
/// The Guild profile document: its JSON-LD context (inlined into every ODRL form, so that it
/// expands offline) and the definitions of its terms.
pub const GUILD_CONTEXT: &str = include_str!("../../context/guild-licence-v1.jsonld");

fn action(u: UseKind) -> &'static str {
    match u {
        UseKind::Train => "train",
        UseKind::RetrieveAndDisplay => "retrieveAndDisplay",
        UseKind::Index => "index",
        UseKind::Evaluate => "evaluate",
    }
}

fn typed(value: impl Into<String>, datatype: &str) -> Value {
    json!({"@value": value.into(), "@type": datatype})
}

fn duration_days(days: u32) -> Value {
    typed(format!("P{days}D"), "xsd:duration")
}

fn eq(left: &str, right: Value) -> Value {
    json!({"leftOperand": left, "operator": "eq", "rightOperand": right})
}

fn pay(operator: &str, m: &Money) -> Value {
    json!({
        "leftOperand": "payAmount",
        "operator": operator,
        "rightOperand": typed(m.decimal(), "xsd:decimal"),
        "unit": format!("urn:iso:std:iso:4217:{}", m.currency.code()),
    })
}

/// An action with refinements, or the bare action when there are none.
fn refined(action_iri: &str, short: &str, refinements: Vec<Value>) -> Value {
    if refinements.is_empty() {
        json!(short)
    } else {
        json!([{"rdf:value": {"@id": action_iri}, "refinement": refinements}])
    }
}

/// The ODRL form.
pub fn odrl(c: &Contract, p: &Publication) -> Result<String, LicenceError> {
    let profile: Value = serde_json::from_str(GUILD_CONTEXT).map_err(|e| LicenceError::Emit {
        format: "odrl",
        message: e.to_string(),
    })?;
    let guild_context = profile.get("@context").cloned().unwrap_or(Value::Null);

    let mut constraints = vec![json!({
        "leftOperand": "userClass",
        "operator": "isAnyOf",
        "rightOperand": c.user_classes.iter().map(|u| u.as_str()).collect::<Vec<_>>(),
    })];
    if let Territory::Only(list) = &c.territory {
        constraints.push(json!({
            "leftOperand": "spatial",
            "operator": "isAnyOf",
            "rightOperand": list.iter().map(|c| c.code()).collect::<Vec<_>>(),
        }));
    }
    if let Some(days) = c.term_days {
        constraints.push(json!({
            "leftOperand": "elapsedTime",
            "operator": "lteq",
            "rightOperand": duration_days(days),
        }));
    }
    if let Some(a) = &p.agreement {
        constraints.push(json!({
            "leftOperand": "dateTime",
            "operator": "gteq",
            "rightOperand": typed(a.start.as_str(), "xsd:dateTime"),
        }));
    }

    let permissions: Vec<Value> = c
        .uses
        .iter()
        .map(|u| {
            json!({
                "target": p.target,
                "action": action(*u),
                "constraint": constraints,
            })
        })
        .collect();

    let mut obligations = Vec::new();
    match &c.compensation {
        Compensation::FixedFee { fee, period } => obligations.push(refined(
            "odrl:compensate",
            "compensate",
            vec![pay("eq", fee), eq("paymentPeriod", json!(period.as_str()))],
        )),
        Compensation::PerQuery { fee_per_thousand } => obligations.push(refined(
            "odrl:compensate",
            "compensate",
            vec![
                pay("eq", fee_per_thousand),
                eq("perQueries", typed("1000", "xsd:integer")),
            ],
        )),
        Compensation::RevenueShare {
            share,
            base,
            minimum,
        } => {
            let mut r = vec![
                eq(
                    "revenueSharePercentage",
                    typed(share.percent(), "xsd:decimal"),
                ),
                eq("revenueBase", json!(base.as_str())),
            ];
            if let Some(m) = minimum {
                r.push(pay("gteq", m));
            }
            obligations.push(refined("odrl:compensate", "compensate", r));
        }
        Compensation::NoFee { .. } => {}
    }
    if c.attribution.required {
        let mut r = Vec::new();
        if let Some(f) = c.attribution.form {
            r.push(eq("attributionForm", json!(f.as_str())));
        }
        if let Some(t) = &c.attribution.text {
            r.push(eq("attributionText", json!(t)));
        }
        obligations.push(refined("odrl:attribute", "attribute", r));
    }
    if c.flow_down.synthetic_data {
        obligations.push(json!("flowDownToSyntheticData"));
    }
    if c.flow_down.downstream_models {
        obligations.push(json!("flowDownToDownstreamModels"));
    }
    if c.reporting.required {
        let mut r = Vec::new();
        if let Some(d) = c.reporting.interval_days {
            r.push(eq("reportingInterval", duration_days(d)));
        }
        if let Some(contents) = c.reporting.contents.as_ref().filter(|l| !l.is_empty()) {
            r.push(json!({
                "leftOperand": "reportContents",
                "operator": "isAllOf",
                "rightOperand": contents.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
            }));
        }
        obligations.push(refined("guild:report", "report", r));
    }
    let obligations: Vec<Value> = obligations
        .into_iter()
        .map(|action| json!({"action": action}))
        .collect();

    let mut policy = Map::new();
    policy.insert("@context".into(), json!([ODRL_CONTEXT, guild_context]));
    let kind = if p.agreement.is_some() {
        "Agreement"
    } else {
        "Offer"
    };
    policy.insert("@type".into(), json!(kind));
    policy.insert("uid".into(), json!(p.policy_uid(c)));
    policy.insert("profile".into(), json!(GUILD_PROFILE));
    policy.insert("assigner".into(), json!(p.assigner));
    if let Some(a) = &p.agreement {
        policy.insert("assignee".into(), json!(a.assignee.as_str()));
    }
    policy.insert("dct:title".into(), json!(c.title));
    policy.insert("dct:description".into(), json!(crate::text::summary(c)));
    policy.insert("licenceTemplate".into(), json!(c.id.as_str()));
    policy.insert("templateVersion".into(), json!(c.version.to_string()));
    policy.insert("noticePeriod".into(), json!(format!("P{}D", c.notice_days)));
    policy.insert("onTermination".into(), json!(c.on_termination.as_str()));
    if let Some(canary) = c.canary {
        policy.insert("canary".into(), json!(canary.to_string()));
    }
    policy.insert("permission".into(), json!(permissions));
    if c.is_evaluation_only() {
        policy.insert(
            "prohibition".into(),
            json!([{"target": p.target, "action": "train"}]),
        );
    }
    if !obligations.is_empty() {
        policy.insert("obligation".into(), json!(obligations));
    }
    super::pretty_json("odrl", &Value::Object(policy))
}
