//! The edges of "may record R be used for use U by builder B at time T".

use guild_core::syntax::{AtUri, Datetime, Did, Nsid};
use guild_license::{
    Agreement, Answer, Consent, ConsentScope, Contract, Country, Refusal, Territory, UseKind,
    UseRequest, UserClass, may, standard_template,
};

const AUTHOR: &str = "did:plc:7iza6de2dwap2sbkpav7c6c6";
const BUILDER: &str = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK";
const START: &str = "2027-01-01T00:00:00.000Z";

fn t(s: &str) -> Datetime {
    Datetime::parse(s).unwrap()
}

fn did(s: &str) -> Did {
    Did::parse(s).unwrap()
}

fn record() -> AtUri {
    AtUri::parse(&format!("at://{AUTHOR}/coop.guild.data.text/3jzfcijpj2z2a")).unwrap()
}

fn granted(from: &str, scope: ConsentScope) -> Consent {
    Consent::Granted {
        member: did(AUTHOR),
        effective_from: t(from),
        scope,
    }
}

/// One question: by default the builder asks, country unknown, and the author consented
/// from before the start to their whole repo.
struct Case {
    terms: Contract,
    asker: Did,
    country: Option<Country>,
    use_kind: UseKind,
    class: UserClass,
    at: &'static str,
    consent: Consent,
    notice: Option<Datetime>,
}

impl Case {
    fn new(id: &str, use_kind: UseKind, class: UserClass, at: &'static str) -> Case {
        Case {
            terms: standard_template(id).unwrap(),
            asker: did(BUILDER),
            country: None,
            use_kind,
            class,
            at,
            consent: granted("2026-06-01T00:00:00Z", ConsentScope::Repo),
            notice: None,
        }
    }

    fn run(&self) -> Answer {
        let builder = did(BUILDER);
        let start = t(START);
        let agreement = Agreement {
            terms: &self.terms,
            builder: &builder,
            start: &start,
            notice_given: self.notice.as_ref(),
        };
        let record = record();
        let at = t(self.at);
        let request = UseRequest {
            record: &record,
            use_kind: self.use_kind,
            builder: &self.asker,
            user_class: self.class,
            country: self.country.as_ref(),
            at: &at,
        };
        may(&agreement, &self.consent, &request)
    }
}

fn ask(id: &str, use_kind: UseKind, class: UserClass, at: &'static str) -> Answer {
    Case::new(id, use_kind, class, at).run()
}

fn ask_with(
    id: &str,
    use_kind: UseKind,
    class: UserClass,
    at: &'static str,
    consent: &Consent,
    notice: Option<&Datetime>,
) -> Answer {
    let mut case = Case::new(id, use_kind, class, at);
    case.consent = consent.clone();
    case.notice = notice.cloned();
    case.run()
}

const TCS: &str = "training-commercial-standard";
const MID: &str = "2027-06-01T00:00:00Z";

#[test]
fn within_the_term_with_consent_yes() {
    assert_eq!(
        ask(TCS, UseKind::Train, UserClass::Commercial, MID),
        Answer::Yes
    );
    assert_eq!(
        ask(TCS, UseKind::Train, UserClass::Commercial, START),
        Answer::Yes
    );
}

#[test]
fn before_and_after_the_term() {
    let no = |at| ask(TCS, UseKind::Train, UserClass::Commercial, at);
    assert_eq!(
        no("2026-12-31T23:59:59.999Z"),
        Answer::No(Refusal::BeforeTerm)
    );
    // 365 days after 2027-01-01 is 2028-01-01 (exclusive).
    assert_eq!(no("2027-12-31T23:59:59.999Z"), Answer::Yes);
    assert_eq!(no("2028-01-01T00:00:00Z"), Answer::No(Refusal::AfterTerm));
}

#[test]
fn termination_ends_after_the_notice_period() {
    let notice = t("2027-03-01T00:00:00Z");
    let consent = granted("2026-06-01T00:00:00Z", ConsentScope::Repo);
    let at = |s| {
        ask_with(
            TCS,
            UseKind::Train,
            UserClass::Commercial,
            s,
            &consent,
            Some(&notice),
        )
    };
    assert_eq!(at("2027-05-29T23:59:59Z"), Answer::Yes);
    assert_eq!(at("2027-05-30T00:00:00Z"), Answer::No(Refusal::AfterTerm));
}

#[test]
fn revoked_or_missing_consent() {
    let revoked = Consent::Revoked {
        member: did(AUTHOR),
        effective_from: t("2027-02-01T00:00:00Z"),
    };
    let a = ask_with(
        TCS,
        UseKind::Train,
        UserClass::Commercial,
        MID,
        &revoked,
        None,
    );
    assert_eq!(a, Answer::No(Refusal::ConsentRevoked));
    let a = ask_with(
        TCS,
        UseKind::Train,
        UserClass::Commercial,
        MID,
        &Consent::Never,
        None,
    );
    assert_eq!(a, Answer::No(Refusal::NoConsent));
    let late = granted("2027-07-01T00:00:00Z", ConsentScope::Repo);
    let a = ask_with(TCS, UseKind::Train, UserClass::Commercial, MID, &late, None);
    assert_eq!(a, Answer::No(Refusal::ConsentNotYetEffective));
    let others = Consent::Granted {
        member: did(BUILDER),
        effective_from: t("2026-01-01T00:00:00Z"),
        scope: ConsentScope::Repo,
    };
    let a = ask_with(
        TCS,
        UseKind::Train,
        UserClass::Commercial,
        MID,
        &others,
        None,
    );
    assert_eq!(a, Answer::No(Refusal::NotTheAuthorsConsent));
}

#[test]
fn consent_scope() {
    let text = Nsid::parse("coop.guild.data.text").unwrap();
    let file = Nsid::parse("coop.guild.data.file").unwrap();
    let ask_scope = |scope| {
        let c = granted("2026-06-01T00:00:00Z", scope);
        ask_with(TCS, UseKind::Train, UserClass::Commercial, MID, &c, None)
    };
    assert_eq!(
        ask_scope(ConsentScope::Collections(vec![text])),
        Answer::Yes
    );
    assert_eq!(
        ask_scope(ConsentScope::Collections(vec![file])),
        Answer::No(Refusal::OutsideConsentScope)
    );
    assert_eq!(
        ask_scope(ConsentScope::Records(vec![record()])),
        Answer::Yes
    );
}

#[test]
fn wrong_user_class_or_builder() {
    assert_eq!(
        ask(TCS, UseKind::Train, UserClass::Research, MID),
        Answer::No(Refusal::UserClassNotAllowed(UserClass::Research))
    );
    let mut case = Case::new(TCS, UseKind::Train, UserClass::Commercial, MID);
    case.asker = did(AUTHOR);
    assert_eq!(case.run(), Answer::No(Refusal::OtherBuilder));
}

#[test]
fn use_not_granted_and_evaluation_versus_training() {
    assert_eq!(
        ask(TCS, UseKind::Evaluate, UserClass::Commercial, MID),
        Answer::No(Refusal::UseNotGranted(UseKind::Evaluate))
    );
    assert_eq!(
        ask("eval-public", UseKind::Evaluate, UserClass::Commercial, MID),
        Answer::Yes
    );
    assert_eq!(
        ask("eval-public", UseKind::Train, UserClass::Commercial, MID),
        Answer::No(Refusal::EvaluationOnly)
    );
    assert_eq!(
        ask("research-open", UseKind::Evaluate, UserClass::Research, MID),
        Answer::Yes
    );
    assert_eq!(
        ask("research-open", UseKind::Train, UserClass::NonProfit, MID),
        Answer::Yes
    );
}

#[test]
fn territory() {
    let mut case = Case::new(TCS, UseKind::Train, UserClass::Commercial, MID);
    case.terms.territory = Territory::Only(vec![Country::parse("DE").unwrap()]);
    case.country = Some(Country::parse("DE").unwrap());
    assert_eq!(case.run(), Answer::Yes);
    case.country = Some(Country::parse("FR").unwrap());
    assert_eq!(case.run(), Answer::No(Refusal::OutsideTerritory));
    case.country = None;
    assert_eq!(case.run(), Answer::No(Refusal::OutsideTerritory));
}
