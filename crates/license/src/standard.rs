//! The standard licence templates (protocol.md §6), with the ids the charter already uses.
//!
//! These are data, not code paths: every emitted form and every piece of text is generated
//! from the [`Contract`] fields, so a collective's own charter templates get the same.
//! `tests/gov_templates.rs` holds them equal to `guild_gov::make::standard_templates()`.

use crate::terms::{
    Attribution, AttributionForm, BasisPoints, Compensation, Contract, Currency, FlowDown, Money,
    OnTermination, Reporting, RevenueBase, TemplateId, Territory, UseKind, UserClass,
};

/// The ids of the standard templates, in charter order.
pub const STANDARD_IDS: [&str; 5] = [
    "training-commercial-standard",
    "training-commercial-attribution",
    "retrieval-attribution",
    "research-open",
    "eval-public",
];

/// What sets one standard template apart from the others.
struct Spec {
    id: &'static str,
    title: &'static str,
    uses: &'static [UseKind],
    classes: &'static [UserClass],
    attribution: bool,
    compensation: Compensation,
    on_termination: OnTermination,
    canary: bool,
}

/// The five standard templates: version 1, worldwide, flowing down to synthetic data but not
/// to downstream models, attribution (when required) in the model card, a year's term with
/// 90 days' notice, reports every 90 days.
pub fn standard() -> Vec<Contract> {
    use UseKind::*;
    use UserClass::*;
    let revenue_share = |bp| Compensation::RevenueShare {
        share: BasisPoints::clamped(bp),
        base: RevenueBase::GrossRevenue,
        minimum: None,
    };
    let no_fee = |why: &str| Compensation::NoFee {
        reason: Some(why.to_owned()),
    };
    let specs = [
        Spec {
            id: STANDARD_IDS[0],
            title: "Training, commercial",
            uses: &[Train],
            classes: &[Commercial],
            attribution: false,
            compensation: revenue_share(300),
            on_termination: OnTermination::RetainTrainedModels,
            canary: false,
        },
        Spec {
            id: STANDARD_IDS[1],
            title: "Training, commercial, with attribution",
            uses: &[Train],
            classes: &[Commercial],
            attribution: true,
            compensation: revenue_share(250),
            on_termination: OnTermination::RetainTrainedModels,
            canary: false,
        },
        Spec {
            id: STANDARD_IDS[2],
            title: "Retrieval and display, with attribution",
            uses: &[RetrieveAndDisplay, Index],
            classes: &[Commercial, Research],
            attribution: true,
            compensation: Compensation::PerQuery {
                fee_per_thousand: Money {
                    amount: 100,
                    currency: Currency::EUR,
                },
            },
            on_termination: OnTermination::DeleteRecords,
            canary: false,
        },
        Spec {
            id: STANDARD_IDS[3],
            title: "Research, open",
            uses: &[Train, Evaluate],
            classes: &[Research, NonProfit],
            attribution: true,
            compensation: no_fee("open research"),
            on_termination: OnTermination::RetainTrainedModels,
            canary: false,
        },
        Spec {
            id: STANDARD_IDS[4],
            title: "Evaluation, public",
            uses: &[Evaluate],
            classes: &[Commercial, Research, NonProfit],
            attribution: true,
            compensation: no_fee("public evaluation"),
            on_termination: OnTermination::RetainAll,
            canary: true,
        },
    ];
    specs
        .into_iter()
        .filter_map(|s| {
            Some(Contract {
                id: TemplateId::parse(s.id).ok()?,
                title: s.title.to_owned(),
                version: 1,
                uses: s.uses.to_vec(),
                user_classes: s.classes.to_vec(),
                territory: Territory::Worldwide,
                flow_down: FlowDown {
                    synthetic_data: true,
                    downstream_models: false,
                },
                attribution: Attribution {
                    required: s.attribution,
                    form: s.attribution.then_some(AttributionForm::ModelCard),
                    text: None,
                },
                compensation: s.compensation,
                term_days: Some(365),
                notice_days: 90,
                on_termination: s.on_termination,
                reporting: Reporting {
                    required: true,
                    interval_days: Some(90),
                    contents: None,
                },
                canary: s.canary.then_some(true),
                collections: None,
            })
        })
        .collect()
}

/// The standard template with this id.
pub fn standard_template(id: &str) -> Option<Contract> {
    standard().into_iter().find(|c| c.id.as_str() == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_valid_templates_with_the_charter_ids() {
        let all = standard();
        assert_eq!(
            all.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            STANDARD_IDS
        );
        for c in &all {
            c.validate().unwrap();
            let back = Contract::from_record_json(&c.to_record_json()).unwrap();
            assert_eq!(&back, c);
        }
    }
}
