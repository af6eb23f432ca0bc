//! The machine-readable forms, each generated from the one [`Contract`] (never written per
//! template), and what each cannot express ([`unexpressed`]), which the forms that allow it
//! state in their own way (an XML comment, a robots.txt comment, a JSON field) and
//! `docs/licence-formats.md` lists.

mod odrl;
mod rsl;
mod signals;
mod tdmrep;

pub use odrl::{GUILD_CONTEXT, GUILD_PROFILE, ODRL_CONTEXT, odrl};
pub use rsl::{RSL_NAMESPACE, rsl};
pub use signals::{CC_SIGNALS_VERSION, cc_signals, content_signal, content_usage};
pub use tdmrep::tdmrep;

use guild_core::syntax::{Datetime, Did};

use crate::error::LicenceError;
use crate::terms::{Compensation, Contract, Territory, UseKind};

/// `value` as pretty JSON with a final newline.
fn pretty_json(format: &'static str, value: &serde_json::Value) -> Result<String, LicenceError> {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|e| LicenceError::Emit {
            format,
            message: e.to_string(),
        })
}

/// Where and by whom a contract is published: the IRIs the forms link to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publication {
    /// The base IRI of the collective's licences, without a trailing `/`; a template's
    /// policy is `{base}/{id}/v{version}`.
    pub base: String,
    /// The collective, as an IRI (ODRL assigner).
    pub assigner: String,
    /// The licensed works, as an IRI (ODRL target).
    pub target: String,
    /// The works' location as a robots.txt path pattern (RSL `content/@url`, TDMRep
    /// `location`).
    pub location: String,
    /// For an agreement rather than a template offer: the builder and when it came into force.
    pub agreement: Option<AgreementParty>,
}

/// The builder's side of an agreement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgreementParty {
    /// The agreement's IRI (its offer op, e.g. `at://…` or a URL of the public endpoint).
    pub uid: String,
    /// The builder.
    pub assignee: Did,
    /// When the agreement came into force (countersigned by a quorum of stewards).
    pub start: Datetime,
}

impl Publication {
    /// The example publication the golden files use.
    pub fn example() -> Publication {
        Publication {
            base: "https://guild.example/collectives/example/licences".to_owned(),
            assigner: "https://guild.example/collectives/example".to_owned(),
            target: "https://guild.example/collectives/example/records".to_owned(),
            location: "/collectives/example/records/*".to_owned(),
            agreement: None,
        }
    }

    /// The policy's IRI: the agreement's, or the template version's.
    pub fn policy_uid(&self, c: &Contract) -> String {
        match &self.agreement {
            Some(a) => a.uid.clone(),
            None => format!("{}/{}/v{}", self.base, c.id, c.version),
        }
    }

    /// Where the ODRL form is published.
    pub fn odrl_url(&self, c: &Contract) -> String {
        format!("{}/{}/v{}/odrl.jsonld", self.base, c.id, c.version)
    }

    /// Where the full terms in plain language are published.
    pub fn terms_url(&self, c: &Contract) -> String {
        format!("{}/{}/v{}/terms.txt", self.base, c.id, c.version)
    }
}

/// One machine-readable form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// ODRL 2.2 JSON-LD, the whole contract.
    Odrl,
    /// RSL 1.0 XML.
    Rsl,
    /// The IETF AI-preferences `Content-Usage` field value.
    ContentUsage,
    /// A robots.txt group with Cloudflare's `Content-Signal` line.
    ContentSignal,
    /// Creative Commons' CC signals, as JSON carrying the content usage expression.
    CcSignals,
    /// W3C TDMRep JSON (`/.well-known/tdmrep.json`).
    Tdmrep,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 6] = [
        Format::Odrl,
        Format::Rsl,
        Format::ContentUsage,
        Format::ContentSignal,
        Format::CcSignals,
        Format::Tdmrep,
    ];

    /// The golden-file extension: `<template-id>.<ext>`.
    pub fn ext(self) -> &'static str {
        match self {
            Format::Odrl => "odrl.jsonld",
            Format::Rsl => "rsl.xml",
            Format::ContentUsage => "content-usage.txt",
            Format::ContentSignal => "content-signal.txt",
            Format::CcSignals => "cc-signals.json",
            Format::Tdmrep => "tdmrep.json",
        }
    }

    /// The form of `c` published as `p`.
    pub fn emit(self, c: &Contract, p: &Publication) -> Result<String, LicenceError> {
        match self {
            Format::Odrl => odrl(c, p),
            Format::Rsl => rsl(c, p),
            Format::ContentUsage => content_usage(),
            Format::ContentSignal => content_signal(c, p),
            Format::CcSignals => cc_signals(c),
            Format::Tdmrep => tdmrep(c, p),
        }
    }
}

/// The terms of `c` that `format` cannot express, one phrase each (empty for ODRL with the
/// Guild profile, which carries every term).
pub fn unexpressed(format: Format, c: &Contract) -> Vec<String> {
    let mut gaps = Vec::new();
    let mut gap = |s: &str| gaps.push(s.to_owned());
    let signals = matches!(
        format,
        Format::ContentUsage | Format::ContentSignal | Format::CcSignals
    );
    if format == Format::Odrl {
        return gaps;
    }
    if format == Format::Tdmrep {
        gap("every term but the reservation itself: TDMRep points to the ODRL policy for them");
        return gaps;
    }
    if c.grants(UseKind::Evaluate) {
        gap("evaluation use (no vocabulary term)");
    }
    if c.is_evaluation_only() {
        gap("the canary: delivered data must never be trained on");
    }
    if signals {
        if c.grants(UseKind::RetrieveAndDisplay) && format != Format::ContentSignal {
            gap("retrieve-and-display use (no vocabulary term)");
        }
        if format == Format::CcSignals {
            gap(
                "that the use is granted only by an agreement with the collective (a CC signal \
                 offers it to anyone who meets the signal's conditions)",
            );
        } else {
            gap(
                "the uses the licence grants: only an agreement grants them, so every category \
                 is refused and the agreement overrides that for the licensee",
            );
        }
        gap("user classes");
        if c.territory != Territory::Worldwide {
            gap("territory");
        }
        gap("compensation");
        if c.attribution.required && format != Format::CcSignals {
            gap("attribution");
        }
    } else {
        // RSL.
        if c.attribution.required && c.compensation.is_paid() {
            gap("attribution alongside payment (one payment type per licence)");
        }
        if c.attribution.form.is_some() || c.attribution.text.is_some() {
            gap("the attribution form and text");
        }
        match &c.compensation {
            Compensation::RevenueShare { .. } => {
                gap("the revenue share, its base and minimum (no amount or percentage)");
            }
            Compensation::FixedFee { .. } => gap("the fee period (monthly or yearly)"),
            _ => {}
        }
        if c.user_classes.iter().any(|u| {
            matches!(
                u,
                crate::terms::UserClass::Research | crate::terms::UserClass::NonProfit
            )
        }) {
            gap("research and non-profit classes exactly (mapped to education and non-commercial)");
        }
    }
    if c.flow_down.synthetic_data || c.flow_down.downstream_models {
        gap("flow-down to synthetic data and downstream models");
    }
    gap("the term and the termination notice");
    gap("what happens to delivered data on termination or withdrawn consent");
    if c.reporting.required {
        gap("the reporting duty");
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::standard::standard_template;

    fn emit(f: Format, id: &str) -> String {
        let c = standard_template(id).unwrap();
        f.emit(&c, &Publication::example()).unwrap()
    }

    #[test]
    fn odrl_offer_and_agreement() {
        let v: serde_json::Value =
            serde_json::from_str(&emit(Format::Odrl, "eval-public")).unwrap();
        assert_eq!(v["@type"], "Offer");
        assert_eq!(v["permission"][0]["action"], "evaluate");
        assert_eq!(v["prohibition"][0]["action"], "train");
        assert_eq!(v["noticePeriod"], "P90D");
        let c = standard_template("training-commercial-standard").unwrap();
        let mut p = Publication::example();
        p.agreement = Some(AgreementParty {
            uid: "at://did:plc:7iza6de2dwap2sbkpav7c6c6/offer/1".into(),
            assignee: Did::parse("did:plc:7iza6de2dwap2sbkpav7c6c6").unwrap(),
            start: Datetime::parse("2027-01-01T00:00:00Z").unwrap(),
        });
        let v: serde_json::Value = serde_json::from_str(&odrl(&c, &p).unwrap()).unwrap();
        assert_eq!(v["@type"], "Agreement");
        assert_eq!(v["assignee"], "did:plc:7iza6de2dwap2sbkpav7c6c6");
        let refinement = &v["obligation"][0]["action"][0]["refinement"][0];
        assert_eq!(refinement["leftOperand"], "revenueSharePercentage");
        assert_eq!(refinement["rightOperand"]["@value"], "3");
    }

    #[test]
    fn rsl_maps_uses_users_and_payment() {
        let x = emit(Format::Rsl, "retrieval-attribution");
        assert!(
            x.contains(r#"<permits type="usage">ai-input ai-index</permits>"#),
            "{x}"
        );
        assert!(x.contains(r#"<permits type="user">commercial education</permits>"#));
        assert!(x.contains(r#"<payment type="use">"#));
        assert!(x.contains(r#"<amount currency="EUR">0.00100</amount>"#));
        let x = emit(Format::Rsl, "research-open");
        assert!(x.contains(r#"<payment type="attribution">"#));
        assert!(x.contains("evaluation use"));
    }

    #[test]
    fn signals() {
        // A preference speaks to everyone; every grant needs an agreement.
        for id in crate::standard::STANDARD_IDS {
            assert_eq!(emit(Format::ContentUsage, id), "train-ai=n, search=n");
            assert!(
                emit(Format::ContentSignal, id)
                    .ends_with("Content-Signal: search=no, ai-input=no, ai-train=no\n")
            );
        }
        assert!(
            emit(Format::ContentSignal, "research-open")
                .contains("agreement with the collective: https://guild.example/")
        );
        let cc: serde_json::Value =
            serde_json::from_str(&emit(Format::CcSignals, "research-open")).unwrap();
        assert_eq!(cc["signal"], "cc-cr");
        assert_eq!(cc["signalVersion"], "0.1");
        assert_eq!(cc["contentUsage"], "train-ai=n;exceptions=cc-cr, search=n");
        assert_eq!(cc.get("unsupported"), None);
        let cc: serde_json::Value =
            serde_json::from_str(&emit(Format::CcSignals, "training-commercial-standard")).unwrap();
        assert_eq!(cc["signal"], serde_json::Value::Null);
        assert!(cc["unsupported"].as_str().unwrap().contains("credit"));
        assert_eq!(cc.get("contentUsage"), None);
        let cc: serde_json::Value =
            serde_json::from_str(&emit(Format::CcSignals, "eval-public")).unwrap();
        assert!(cc["unsupported"].as_str().unwrap().contains("(evaluate)"));
    }

    #[test]
    fn tdmrep_reserves_and_links_the_policy() {
        let v: serde_json::Value =
            serde_json::from_str(&emit(Format::Tdmrep, "research-open")).unwrap();
        assert_eq!(v[0]["tdm-reservation"], 1);
        assert!(
            v[0]["tdm-policy"]
                .as_str()
                .unwrap()
                .ends_with("research-open/v1/odrl.jsonld")
        );
    }

    #[test]
    fn the_profile_file_is_json_ld_with_a_context() {
        let v: serde_json::Value = serde_json::from_str(GUILD_CONTEXT).unwrap();
        assert!(v["@context"]["guild"].as_str() == Some(GUILD_PROFILE));
    }
}
