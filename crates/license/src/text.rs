//! The plain-language forms of a contract, rendered from its fields: a one-paragraph summary
//! ([`summary`]) and the full terms ([`terms`]). Nothing here is written per template, so a
//! collective's own charter templates read the same way as the standard ones.

use std::fmt::Write as _;

use crate::terms::{
    AttributionForm, Compensation, Contract, FeePeriod, OnTermination, ReportContent, RevenueBase,
    Territory, UseKind, UserClass,
};

/// A list in prose: `a`, `a and b`, `a, b and c`.
fn and_list<S: AsRef<str>>(items: &[S], conjunction: &str) -> String {
    match items {
        [] => String::new(),
        [one] => one.as_ref().to_owned(),
        [init @ .., last] => format!(
            "{} {conjunction} {}",
            init.iter()
                .map(AsRef::as_ref)
                .collect::<Vec<_>>()
                .join(", "),
            last.as_ref()
        ),
    }
}

fn use_verb(u: UseKind) -> &'static str {
    match u {
        UseKind::Train => "train models",
        UseKind::RetrieveAndDisplay => "retrieve and display them",
        UseKind::Index => "index them",
        UseKind::Evaluate => "evaluate models",
    }
}

fn use_definition(u: UseKind) -> &'static str {
    match u {
        UseKind::Train => {
            "train: using the works to set or change the learned parameters of a model, \
             including pre-training, fine-tuning and distillation"
        }
        UseKind::RetrieveAndDisplay => {
            "retrieve-and-display: fetching works at the time a user asks, and showing them, \
             excerpts of them or outputs made from them to that user"
        }
        UseKind::Index => {
            "index: keeping the works, or representations of them such as embeddings, in a \
             search or retrieval index"
        }
        UseKind::Evaluate => {
            "evaluate: measuring a model's behaviour on the works, without the works or the \
             results changing the parameters of any model"
        }
    }
}

fn class_noun(c: UserClass) -> &'static str {
    match c {
        UserClass::Commercial => "commercial",
        UserClass::Research => "research",
        UserClass::NonProfit => "non-profit",
        UserClass::PublicSector => "public-sector",
        UserClass::Personal => "personal",
    }
}

fn territory_phrase(t: &Territory) -> String {
    match t {
        Territory::Worldwide => "worldwide".to_owned(),
        Territory::Only(list) => {
            let names: Vec<String> = list
                .iter()
                .map(|c| format!("{} ({})", c.name(), c.code()))
                .collect();
            format!("only in {}", and_list(&names, "and"))
        }
    }
}

fn form_phrase(f: AttributionForm) -> &'static str {
    match f {
        AttributionForm::DatasetCard => "in the card of every dataset made from the works",
        AttributionForm::ModelCard => {
            "in the model card of every model trained or evaluated on the works"
        }
        AttributionForm::PerOutput => "next to every output that uses the works",
    }
}

fn base_phrase(b: RevenueBase) -> &'static str {
    match b {
        RevenueBase::GrossRevenue => "gross revenue",
        RevenueBase::NetRevenue => "net revenue",
    }
}

fn period_phrase(p: FeePeriod) -> &'static str {
    match p {
        FeePeriod::Once => "once",
        FeePeriod::Monthly => "every month",
        FeePeriod::Yearly => "every year",
    }
}

fn compensation_phrase(c: &Compensation) -> String {
    match c {
        Compensation::FixedFee { fee, period } => {
            format!(
                "The licensee pays the collective {fee} {}",
                period_phrase(*period)
            )
        }
        Compensation::PerQuery { fee_per_thousand } => {
            format!("The licensee pays the collective {fee_per_thousand} per thousand queries")
        }
        Compensation::RevenueShare {
            share,
            base,
            minimum,
        } => {
            let mut s = format!(
                "The licensee pays the collective {} % of its {} from what uses the works",
                share.percent(),
                base_phrase(*base)
            );
            if let Some(m) = minimum {
                let _ = write!(s, ", and at least {m} per reporting period");
            }
            s
        }
        Compensation::NoFee { reason } => match reason {
            Some(r) => format!("No fee is charged ({r})"),
            None => "No fee is charged".to_owned(),
        },
    }
}

fn termination_phrase(t: OnTermination) -> &'static str {
    match t {
        OnTermination::DeleteRecords => {
            "the licensee deletes the works it received and stops using anything made from them"
        }
        OnTermination::RetainTrainedModels => {
            "the licensee deletes the works it received but may keep and use models already \
             trained on them"
        }
        OnTermination::RetainAll => {
            "the licensee may keep what it already received, but receives nothing new"
        }
    }
}

fn report_phrase(r: ReportContent) -> &'static str {
    match r {
        ReportContent::UsageCounts => "how much the works were used",
        ReportContent::Revenue => "the revenue any share is computed from",
        ReportContent::ModelReleases => "the models released that used the works",
        ReportContent::Incidents => "any incident involving the works",
    }
}

fn days(n: u32) -> String {
    if n == 1 {
        "1 day".to_owned()
    } else {
        format!("{n} days")
    }
}

fn flow_down_sentence(c: &Contract) -> String {
    match (c.flow_down.synthetic_data, c.flow_down.downstream_models) {
        (true, true) => {
            "Synthetic data made from the works, and models derived from the licensee's \
             models, carry these same terms."
        }
        (true, false) => {
            "Synthetic data made from the works carries these same terms; models derived \
             from the licensee's models do not."
        }
        (false, true) => {
            "Models derived from the licensee's models carry these same terms; synthetic \
             data made from the works does not."
        }
        (false, false) => "Neither synthetic data nor derived models carry these terms.",
    }
    .to_owned()
}

fn attribution_sentence(c: &Contract) -> String {
    if !c.attribution.required {
        return "No attribution is required.".to_owned();
    }
    let mut s = "The licensee credits the collective and its members".to_owned();
    if let Some(f) = c.attribution.form {
        let _ = write!(s, " {}", form_phrase(f));
    }
    if let Some(t) = &c.attribution.text {
        let _ = write!(s, ", with the words \u{201c}{t}\u{201d}");
    }
    s.push('.');
    s
}

fn reporting_sentence(c: &Contract) -> String {
    if !c.reporting.required {
        return "No reports are required.".to_owned();
    }
    let mut s = "The licensee reports to the collective".to_owned();
    if let Some(d) = c.reporting.interval_days {
        let _ = write!(s, " every {}", days(d));
    }
    if let Some(contents) = c.reporting.contents.as_ref().filter(|l| !l.is_empty()) {
        let items: Vec<&str> = contents.iter().map(|r| report_phrase(*r)).collect();
        let _ = write!(s, " on {}", and_list(&items, "and"));
    }
    s.push('.');
    s
}

fn term_phrase(c: &Contract) -> String {
    match c.term_days {
        Some(d) => format!("for {}", days(d)),
        None => "until it is terminated".to_owned(),
    }
}

/// The one-paragraph plain-language summary.
pub fn summary(c: &Contract) -> String {
    summary_with(c, true)
}

/// The summary with the price left out (a collective whose charter keeps prices private
/// publishes its agreements' summaries this way).
pub fn summary_without_price(c: &Contract) -> String {
    summary_with(c, false)
}

fn summary_with(c: &Contract, price: bool) -> String {
    let classes: Vec<&str> = c.user_classes.iter().map(|u| class_noun(*u)).collect();
    let verbs: Vec<&str> = c.uses.iter().map(|u| use_verb(*u)).collect();
    let mut s = format!(
        "{} ({}, version {}): a {} licensee may use the members' consented works to {}, {}, {}. ",
        c.title,
        c.id,
        c.version,
        and_list(&classes, "or"),
        and_list(&verbs, "and"),
        territory_phrase(&c.territory),
        term_phrase(c),
    );
    if let Some(list) = &c.collections {
        let names: Vec<&str> = list.iter().map(|n| n.as_str()).collect();
        let _ = write!(
            s,
            "Only works of the collection{} {} are licensed. ",
            if names.len() == 1 { "" } else { "s" },
            and_list(&names, "and")
        );
    }
    if price {
        let _ = write!(s, "{}. ", compensation_phrase(&c.compensation));
    } else {
        s.push_str("The price is private to the collective and the licensee. ");
    }
    let _ = write!(s, "{} ", attribution_sentence(c));
    let _ = write!(s, "{} ", flow_down_sentence(c));
    if c.is_evaluation_only() {
        s.push_str("The works carry a canary and must never be trained on. ");
    }
    let _ = write!(
        s,
        "Either side may end the licence with {} of notice; when it ends, or when a member \
         withdraws consent, {}. {}",
        days(c.notice_days),
        termination_phrase(c.on_termination),
        reporting_sentence(c)
    );
    s
}

/// The full terms, as numbered sections of plain text.
pub fn terms(c: &Contract) -> String {
    let mut out = String::new();
    let mut n = 0;
    let mut section = |out: &mut String, title: &str, body: &str| {
        n += 1;
        let _ = write!(out, "\n{n}. {title}\n\n{body}\n");
    };
    let _ = writeln!(out, "{} \u{2014} licence terms", c.title);
    let _ = writeln!(out, "Template {}, version {}.", c.id, c.version);

    section(
        &mut out,
        "Parties and works",
        "The licensor is the data collective that offers this licence, acting for its \
         members. The licensee is the party named in the agreement that fixes these terms. \
         The works are the records whose authors, members of the collective, consented to \
         this template for them, at the time each bundle of works is assembled; a work whose \
         author's consent does not cover this template at that time is not licensed.",
    );
    if let Some(list) = &c.collections {
        let names: Vec<&str> = list.iter().map(|n| n.as_str()).collect();
        section(
            &mut out,
            "Scope",
            &format!(
                "Only works that are records of the collection{} {} are licensed; no other \
                 work is delivered under this agreement.",
                if names.len() == 1 { "" } else { "s" },
                and_list(&names, "and")
            ),
        );
    }

    let uses: Vec<String> = c
        .uses
        .iter()
        .map(|u| use_definition(*u).to_owned())
        .collect();
    let mut grant = format!(
        "The licensor grants the licensee a non-exclusive, non-transferable licence to use \
         the works for the following uses, and no other:\n\n- {}",
        uses.join(";\n- ")
    );
    let not_granted: Vec<&str> = UseKind::ALL
        .iter()
        .filter(|u| !c.grants(**u))
        .map(|u| u.as_str())
        .collect();
    if !not_granted.is_empty() {
        let _ = write!(
            grant,
            ".\n\nNot granted: {}. Any use not listed above needs a new agreement.",
            and_list(&not_granted, "and")
        );
    } else {
        grant.push('.');
    }
    section(&mut out, "Grant", &grant);

    let classes: Vec<&str> = c.user_classes.iter().map(|u| class_noun(*u)).collect();
    section(
        &mut out,
        "Who may use the works",
        &format!(
            "The licensee must be, and remain for the whole term, a {} user. The licence \
             does not pass to another party, and the licensee may not sublicense it.",
            and_list(&classes, "or")
        ),
    );

    section(
        &mut out,
        "Territory",
        &match &c.territory {
            Territory::Worldwide => "The works may be used worldwide.".to_owned(),
            Territory::Only(_) => format!(
                "The works may be used {}; use elsewhere is not licensed.",
                territory_phrase(&c.territory)
            ),
        },
    );

    section(
        &mut out,
        "Term, termination and withdrawn consent",
        &format!(
            "The licence runs from the day the agreement is in force {}. Either party may \
             end it by written notice; it then ends {} after the notice. When the licence \
             ends, {}. A member may withdraw consent at any time: their works enter no later \
             bundle, and for works already delivered {}.",
            term_phrase(c),
            days(c.notice_days),
            termination_phrase(c.on_termination),
            termination_phrase(c.on_termination),
        ),
    );

    section(
        &mut out,
        "Compensation",
        &format!(
            "{}. Amounts are in the minor units of the currency named, exactly; nothing is \
             rounded.",
            compensation_phrase(&c.compensation)
        ),
    );

    section(&mut out, "Attribution", &attribution_sentence(c));

    section(
        &mut out,
        "Derived data and models",
        &format!(
            "{} Where these terms carry over, the licensee passes them on in writing to \
             anyone who receives the derived data or models.",
            flow_down_sentence(c)
        ),
    );

    section(&mut out, "Reporting", &reporting_sentence(c));

    if c.is_evaluation_only() {
        section(
            &mut out,
            "Evaluation data",
            "Bundles delivered under this licence carry a canary string and a per-bundle \
             identifier. The licensee must never train a model on them, must keep them out \
             of every training set, and must treat the canary's appearance in a model's \
             output as evidence that they were trained on.",
        );
    }

    section(
        &mut out,
        "Machine-readable forms",
        "These terms are also published as ODRL 2.2 (the full contract, with the Guild \
         profile for what ODRL lacks), RSL 1.0, an AI-preferences Content-Usage value, \
         Content Signals, CC signals and TDMRep. Those forms express only part of these \
         terms; where they differ, these terms govern.",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::standard::standard;

    #[test]
    fn summaries_say_what_differs() {
        let all = standard();
        let s: Vec<String> = all.iter().map(summary).collect();
        assert!(s[0].contains("3 % of its gross revenue"), "{}", s[0]);
        assert!(s[0].contains("No attribution is required."));
        assert!(s[1].contains("2.5 %"));
        assert!(s[2].contains("1.00 EUR per thousand queries"), "{}", s[2]);
        assert!(s[4].contains("must never be trained on"));
        for (c, s) in all.iter().zip(&s) {
            assert!(!s.contains('\n'), "one paragraph: {s}");
            assert!(s.contains(c.id.as_str()));
        }
    }

    #[test]
    fn terms_list_what_is_not_granted() {
        let all = standard();
        let t = terms(&all[4]);
        assert!(
            t.contains("Not granted: train, retrieve-and-display and index."),
            "{t}"
        );
        assert!(t.contains("Evaluation data"));
        assert!(!terms(&all[0]).contains("Evaluation data"));
    }
}
