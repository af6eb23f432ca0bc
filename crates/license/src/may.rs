//! The one decision: may record R be used for use U by builder B at time T? A pure function
//! of the agreement's terms, the record author's consent for the agreement's template at T,
//! and the request; every "no" names its reason.

use guild_core::syntax::{AtUri, Datetime, Did, Nsid};

use crate::terms::{Contract, Country, UseKind, UserClass};

/// Microseconds in a day.
const DAY_MICROS: i64 = 86_400_000_000;

/// An agreement in force: its terms, its builder and its dates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agreement<'a> {
    /// The terms (a template with its parameters fixed).
    pub terms: &'a Contract,
    /// The builder it was made with.
    pub builder: &'a Did,
    /// When it came into force (countersigned by a quorum of stewards).
    pub start: &'a Datetime,
    /// When a party gave notice of termination, if one did; the licence ends
    /// `terms.notice_days` later.
    pub notice_given: Option<&'a Datetime>,
}

impl Agreement<'_> {
    /// When the licence ends (microseconds since the epoch, exclusive): the earlier of the
    /// term's end and notice plus the notice period; `None`: not yet set to end.
    pub fn end_micros(&self) -> Option<i64> {
        let start = self.start.to_unix_micros();
        let by_term = self
            .terms
            .term_days
            .map(|d| start.saturating_add(i64::from(d).saturating_mul(DAY_MICROS)));
        let by_notice = self.notice_given.map(|n| {
            n.to_unix_micros()
                .saturating_add(i64::from(self.terms.notice_days).saturating_mul(DAY_MICROS))
        });
        match (by_term, by_notice) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Which of a member's records a consent covers (`coop.guild.consent.grant#…`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsentScope {
    /// Every record of the member's repo.
    Repo,
    /// Every record of these collections.
    Collections(Vec<Nsid>),
    /// Exactly these records.
    Records(Vec<AtUri>),
}

impl ConsentScope {
    /// Whether the scope covers `record`.
    pub fn covers(&self, record: &AtUri) -> bool {
        match self {
            ConsentScope::Repo => true,
            ConsentScope::Collections(list) => {
                record.collection().is_some_and(|c| list.contains(c))
            }
            ConsentScope::Records(list) => list.contains(record),
        }
    }
}

/// The author's consent register for the agreement's template, as folded at T (the winning
/// write: a revocation wins over a concurrent grant).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Consent {
    /// The author never wrote consent for the template.
    Never,
    /// The winning write is a grant.
    Granted {
        /// The member who wrote it.
        member: Did,
        /// From when it applies.
        effective_from: Datetime,
        /// What it covers.
        scope: ConsentScope,
    },
    /// The winning write is a revocation.
    Revoked {
        /// The member who wrote it.
        member: Did,
        /// From when it applies.
        effective_from: Datetime,
    },
}

/// The use asked about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UseRequest<'a> {
    /// The record.
    pub record: &'a AtUri,
    /// The use.
    pub use_kind: UseKind,
    /// The builder asking.
    pub builder: &'a Did,
    /// The builder's class.
    pub user_class: UserClass,
    /// Where the builder uses it (`None`: unknown, which only a worldwide licence allows).
    pub country: Option<&'a Country>,
    /// When.
    pub at: &'a Datetime,
}

/// Why a use is not allowed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The builder is not the agreement's.
    #[error("the agreement was made with another builder")]
    OtherBuilder,
    /// Before the agreement came into force.
    #[error("before the agreement came into force")]
    BeforeTerm,
    /// After its term or its termination.
    #[error("after the agreement ended")]
    AfterTerm,
    /// Evaluation data: never trained on.
    #[error("evaluation data (canary): never trained on")]
    EvaluationOnly,
    /// The use is not granted.
    #[error("use {0} not granted")]
    UseNotGranted(UseKind),
    /// The builder's class is not allowed.
    #[error("user class {0} not allowed")]
    UserClassNotAllowed(UserClass),
    /// Outside the licence's territory.
    #[error("outside the licence's territory")]
    OutsideTerritory,
    /// The record is of a collection the agreement's scope leaves out.
    #[error("the record's collection is outside the agreement's scope")]
    OutsideAgreementScope,
    /// The record's author never consented to the template.
    #[error("the author never consented to this template")]
    NoConsent,
    /// The consent given is another member's (a caller bug caught here).
    #[error("the consent is not the record author's")]
    NotTheAuthorsConsent,
    /// The author's consent does not apply yet at T.
    #[error("the author's consent applies only from a later time")]
    ConsentNotYetEffective,
    /// The author revoked consent.
    #[error("the author revoked consent")]
    ConsentRevoked,
    /// The consent's scope does not cover the record.
    #[error("the author's consent does not cover this record")]
    OutsideConsentScope,
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The use is allowed.
    Yes,
    /// It is not, and why.
    No(Refusal),
}

impl Answer {
    /// Whether the use is allowed.
    pub fn is_yes(&self) -> bool {
        matches!(self, Answer::Yes)
    }
}

/// May `request.record` be used for `request.use_kind` by `request.builder` at `request.at`,
/// under `agreement`, given its author's `consent` for the agreement's template at that time?
///
/// Checked in this order, the first failure answering: the builder, the term (start
/// inclusive, end exclusive), evaluation-only data never trained on, the use, the user class,
/// the territory, the agreement's collection scope, then the author's consent (theirs, granted, effective, covering the record).
pub fn may(agreement: &Agreement<'_>, consent: &Consent, request: &UseRequest<'_>) -> Answer {
    match check(agreement, consent, request) {
        Ok(()) => Answer::Yes,
        Err(r) => Answer::No(r),
    }
}

fn check(agreement: &Agreement<'_>, consent: &Consent, r: &UseRequest<'_>) -> Result<(), Refusal> {
    let terms = agreement.terms;
    if r.builder != agreement.builder {
        return Err(Refusal::OtherBuilder);
    }
    let at = r.at.to_unix_micros();
    if at < agreement.start.to_unix_micros() {
        return Err(Refusal::BeforeTerm);
    }
    if agreement.end_micros().is_some_and(|end| at >= end) {
        return Err(Refusal::AfterTerm);
    }
    if r.use_kind == UseKind::Train && terms.is_evaluation_only() {
        return Err(Refusal::EvaluationOnly);
    }
    if !terms.grants(r.use_kind) {
        return Err(Refusal::UseNotGranted(r.use_kind));
    }
    if !terms.user_classes.contains(&r.user_class) {
        return Err(Refusal::UserClassNotAllowed(r.user_class));
    }
    if !terms.territory.allows(r.country) {
        return Err(Refusal::OutsideTerritory);
    }
    if let Some(scope) = &terms.collections
        && !r.record.collection().is_some_and(|c| scope.contains(c))
    {
        return Err(Refusal::OutsideAgreementScope);
    }
    let author = r.record.authority().as_did();
    match consent {
        Consent::Never => Err(Refusal::NoConsent),
        Consent::Revoked { member, .. } | Consent::Granted { member, .. }
            if author != Some(member) =>
        {
            Err(Refusal::NotTheAuthorsConsent)
        }
        // A revocation is the winning write: whatever its date, the earlier grant it replaced
        // is not known here, and revocation wins.
        Consent::Revoked { .. } => Err(Refusal::ConsentRevoked),
        Consent::Granted {
            effective_from,
            scope,
            ..
        } => {
            if at < effective_from.to_unix_micros() {
                Err(Refusal::ConsentNotYetEffective)
            } else if !scope.covers(r.record) {
                Err(Refusal::OutsideConsentScope)
            } else {
                Ok(())
            }
        }
    }
}
