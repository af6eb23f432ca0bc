//! Any valid contract: its record form round-trips, its ODRL form is JSON that carries the
//! contexts, its `Content-Usage` and Content Signals values parse back with `sfv` as
//! dictionaries of the labels the drafts define, its RSL is well-formed XML.

use guild_license::{
    Attribution, AttributionForm, BasisPoints, Compensation, Contract, Country, Currency,
    FeePeriod, FlowDown, Format, Money, OnTermination, Publication, ReportContent, Reporting,
    RevenueBase, TemplateId, Territory, UseKind, UserClass,
};
use proptest::prelude::*;
use proptest::sample::subsequence;

fn money() -> impl Strategy<Value = Money> {
    (
        0u64..=i64::MAX as u64,
        prop::sample::select(vec!["EUR", "USD", "JPY", "GBP", "KWD"]),
    )
        .prop_map(|(amount, code)| Money {
            amount,
            currency: Currency::parse(code).unwrap(),
        })
}

fn compensation() -> impl Strategy<Value = Compensation> {
    prop_oneof![
        (money(), prop::sample::select(FeePeriod::ALL.to_vec()))
            .prop_map(|(fee, period)| Compensation::FixedFee { fee, period }),
        money().prop_map(|fee_per_thousand| Compensation::PerQuery { fee_per_thousand }),
        (
            0u32..=10_000,
            prop::sample::select(RevenueBase::ALL.to_vec()),
            prop::option::of(money())
        )
            .prop_map(|(bp, base, minimum)| Compensation::RevenueShare {
                share: BasisPoints::new(bp).unwrap(),
                base,
                minimum,
            }),
        prop::option::of("[a-z <>&\"-]{0,20}").prop_map(|reason| Compensation::NoFee { reason }),
    ]
}

prop_compose! {
    fn contract()(
        id in "[a-z][a-z0-9-]{0,20}",
        title in "[A-Za-z][A-Za-z ,<&>-]{0,30}",
        version in 1u32..100,
        uses in subsequence(UseKind::ALL.to_vec(), 1..=4).prop_shuffle(),
        classes in subsequence(UserClass::ALL.to_vec(), 1..=5),
        countries in prop::option::of(subsequence(vec!["DE", "FR", "US", "JP", "BR"], 1..=3)),
        flow in (any::<bool>(), any::<bool>()),
        attribution in prop::option::of((prop::option::of(prop::sample::select(AttributionForm::ALL.to_vec())), prop::option::of("[a-z -]{1,20}"))),
        compensation in compensation(),
        term_days in prop::option::of(1u32..4000),
        notice_days in 0u32..400,
        on_termination in prop::sample::select(OnTermination::ALL.to_vec()),
        reporting in (any::<bool>(), prop::option::of(1u32..400), prop::option::of(subsequence(ReportContent::ALL.to_vec(), 0..=4))),
        canary in prop::option::of(any::<bool>()),
    ) -> Contract {
        let canary = if uses.contains(&UseKind::Train) { canary.filter(|c| !c) } else { canary };
        Contract {
            id: TemplateId::parse(&id).unwrap(),
            title,
            version,
            uses,
            user_classes: classes,
            territory: match countries {
                None => Territory::Worldwide,
                Some(list) => Territory::Only(list.iter().map(|c| Country::parse(c).unwrap()).collect()),
            },
            flow_down: FlowDown { synthetic_data: flow.0, downstream_models: flow.1 },
            attribution: match attribution {
                None => Attribution { required: false, form: None, text: None },
                Some((form, text)) => Attribution { required: true, form, text },
            },
            compensation,
            term_days,
            notice_days,
            on_termination,
            reporting: Reporting { required: reporting.0, interval_days: reporting.1, contents: reporting.2 },
            canary,
            collections: None,
        }
    }
}

fn dictionary_labels(value: &str) -> Vec<String> {
    let dict: sfv::Dictionary = sfv::Parser::new(value).parse().unwrap();
    dict.keys().map(|k| k.as_str().to_owned()).collect()
}

proptest! {
    #[test]
    fn every_valid_contract_emits_parseable_forms(c in contract()) {
        c.validate().unwrap();
        prop_assert_eq!(&Contract::from_record_json(&c.to_record_json()).unwrap(), &c);
        let p = Publication::example();

        let odrl: serde_json::Value = serde_json::from_str(&Format::Odrl.emit(&c, &p).unwrap()).unwrap();
        prop_assert_eq!(&odrl["@context"][0], "http://www.w3.org/ns/odrl.jsonld");
        prop_assert_eq!(odrl["permission"].as_array().unwrap().len(), c.uses.len());

        let usage = Format::ContentUsage.emit(&c, &p).unwrap();
        prop_assert_eq!(dictionary_labels(&usage), vec!["train-ai", "search"]);
        let dict: sfv::Dictionary = sfv::Parser::new(&usage).parse().unwrap();
        // A public preference: every category refused, whatever the licence grants (the
        // grant is the agreement's).
        for (_, entry) in dict.iter() {
            match entry {
                sfv::ListEntry::Item(item) => prop_assert_eq!(item.bare_item.as_token().unwrap().as_str(), "n"),
                sfv::ListEntry::InnerList(_) => prop_assert!(false, "inner list"),
            }
        }

        let signal = Format::ContentSignal.emit(&c, &p).unwrap();
        let line = signal.lines().find_map(|l| l.strip_prefix("Content-Signal: ")).unwrap();
        prop_assert_eq!(dictionary_labels(line), vec!["search", "ai-input", "ai-train"]);

        let cc: serde_json::Value = serde_json::from_str(&Format::CcSignals.emit(&c, &p).unwrap()).unwrap();
        match cc["contentUsage"].as_str() {
            Some(expr) => {
                prop_assert_eq!(dictionary_labels(expr), vec!["train-ai", "search"]);
                prop_assert!(cc["signal"].is_string());
                let carried = format!("exceptions={}", cc["signal"].as_str().unwrap());
                prop_assert!(expr.contains(&carried), "{} lacks {}", expr, carried);
            }
            None => {
                prop_assert!(cc["signal"].is_null());
                prop_assert!(cc["unsupported"].is_string());
            }
        }

        let rsl = Format::Rsl.emit(&c, &p).unwrap();
        let mut reader = quick_xml::Reader::from_str(&rsl);
        loop {
            match reader.read_event() {
                Ok(quick_xml::events::Event::Eof) => break,
                Ok(_) => {}
                Err(e) => prop_assert!(false, "{e}"),
            }
        }
        let tdm: serde_json::Value = serde_json::from_str(&Format::Tdmrep.emit(&c, &p).unwrap()).unwrap();
        prop_assert_eq!(&tdm[0]["tdm-reservation"], 1);
    }
}
