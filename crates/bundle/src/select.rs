//! The deterministic selection: every record whose author's consent covers the agreement's
//! template at the cut, in canonical order.
//!
//! What is decided where:
//! - the agreement: known and in force at the cut (a quorum countersigned it in the cut's
//!   past); its terms read as a [`Contract`] by guild-license; the bundle's kind licensed by
//!   them (a training bundle needs `train`, an evaluation bundle `evaluate`; an
//!   evaluation-only contract never yields a training bundle); its term running at the cut's
//!   time. Each is [`guild_license::may`]'s answer, asked as the agreement's builder; the
//!   builder-side conditions (user class, territory) bind the builder at use and are asked
//!   here as a class and a country the terms allow;
//! - each record: `may` with its author's consent register for the agreement's template in
//!   the cut's state (a member's, granted, effective at the cut's time, its scope covering
//!   the record's path); a grant outside the cut's causal past is not in that state, so it
//!   does not count; a revoke in it wins;
//! - a training bundle leaves out what an evaluation bundle sealed at the cut delivered
//!   ([`EvaluationLedger`]);
//! - a revocation concurrent with the cut (not in its causal past) is not seen here: the
//!   selection is a function of the cut alone, so that every steward computes the same. Such
//!   a revocation voids the bundle in guild-gov (revocation wins over a concurrent use: the
//!   bundle is void unless a quorum sealed it in the revocation's past), and a later cut,
//!   which has the revocation in its past, leaves the member's records out.

use std::collections::{BTreeMap, BTreeSet};

use guild_core::Cid;
use guild_core::syntax::{AtIdentifier, AtUri, Datetime, Did, Nsid, RecordKey, Tid};
use guild_gov::body::{BundleKind, CidRef, Open, ReplicaHead, Scope, Template};
use guild_gov::{AgreementStatus, Log, State};

use guild_license::{
    Agreement, Answer, Consent, ConsentScope, Contract, Refusal, Territory, UseKind, UseRequest,
    may,
};

use crate::canary::EvaluationLedger;
use crate::cut::CutState;
use crate::error::BundleError;

/// One record of a replica: where it is and its CID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordListing {
    /// Its collection.
    pub collection: Nsid,
    /// Its record key.
    pub rkey: RecordKey,
    /// Its CID.
    pub cid: Cid,
}

impl RecordListing {
    /// Its path in the repo: `collection/rkey`.
    pub fn path(&self) -> String {
        format!("{}/{}", self.collection.as_str(), self.rkey.as_str())
    }
}

/// One member's replica, as a steward holds it: its head and its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// The member.
    pub did: Did,
    /// The revision of its head commit.
    pub rev: Tid,
    /// Its head commit.
    pub commit: Cid,
    /// The name to credit the member by (read from the replica; `None`: the DID).
    pub name: Option<String>,
    /// Its records, in any order.
    pub records: Vec<RecordListing>,
}

/// What to select for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectRequest {
    /// The agreement (its offer op).
    pub agreement: Cid,
    /// Training or evaluation.
    pub kind: Open<BundleKind>,
}

/// A record selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// Its author.
    pub author: Did,
    /// The author's commit it is taken from.
    pub commit: Cid,
    /// Its path, `collection/rkey`.
    pub path: String,
    /// Its CID.
    pub cid: Cid,
    /// The consent grant op that covers it.
    pub consent: Cid,
}

/// Why a listed record was left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exclusion {
    /// Its author's consent does not cover it at the cut (guild-license's reason).
    Consent(Refusal),
    /// A training bundle: the evaluation bundle with this manifest delivered it.
    DeliveredForEvaluation(Cid),
    /// Not a work: its collection is not among the record types the charter accepts
    /// (`coop.guild.space.declaration/self`, say).
    NotAWork(Nsid),
}

/// The outcome of a selection: everything the manifest is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// The collective.
    pub collective: Cid,
    /// The agreement (its offer op).
    pub agreement: Cid,
    /// The agreement's builder.
    pub builder: Did,
    /// When the agreement came into force: the `createdAt` of the countersign op that
    /// completed its quorum.
    pub start: Datetime,
    /// The charter template the agreement is made from (the consent registers' key).
    pub template: String,
    /// The agreement's terms as written.
    pub terms: Template,
    /// The same terms as guild-license reads them.
    pub contract: Contract,
    /// Training or evaluation.
    pub kind: BundleKind,
    /// The cut's heads, in CID order.
    pub heads: Vec<Cid>,
    /// The cut's time.
    pub time: Datetime,
    /// Per-licensee canary records the charter at the cut asks of each bundle (0: none).
    pub canaries: u32,
    /// The replica heads of the members whose consent register for the template is granted
    /// at the cut, in DID order (the replicas a proposal may name).
    pub replicas: Vec<ReplicaHead>,
    /// The names given for those members.
    pub names: BTreeMap<Did, String>,
    /// The records selected, by author DID then path bytes (the repo's key order).
    pub records: Vec<Selected>,
    /// The listed records left out, in the same order, and why.
    pub excluded: Vec<(Did, String, Exclusion)>,
    /// Replicas given for members without a granted consent register at the cut, in DID
    /// order: none of their records can be selected.
    pub ignored: Vec<Did>,
}

/// Refusals that are about the agreement and the bundle, not about one record's consent.
fn about_the_agreement(r: &Refusal) -> bool {
    !matches!(
        r,
        Refusal::NoConsent
            | Refusal::NotTheAuthorsConsent
            | Refusal::ConsentNotYetEffective
            | Refusal::ConsentRevoked
            | Refusal::OutsideConsentScope
    )
}

/// The member's consent register for `template` at the cut, as guild-license reads consent,
/// with the op that wrote it. Not a member at the cut (never was, left, removed): never.
fn consent_of(state: &State, did: &Did, template: &str) -> (Consent, Option<Cid>) {
    if !state.members.contains_key(did) {
        return (Consent::Never, None);
    }
    let Some(c) = state
        .consents
        .get(&(did.clone(), std::sync::Arc::from(template)))
    else {
        return (Consent::Never, None);
    };
    let Some(from) = c.effective_from.clone() else {
        return (Consent::Never, None);
    };
    if !c.granted {
        let revoked = Consent::Revoked {
            member: did.clone(),
            effective_from: from,
        };
        return (revoked, Some(c.op()));
    }
    let scope = match c.scope.as_deref() {
        Some(Scope::Repo {}) => ConsentScope::Repo,
        Some(Scope::Collections { collections }) => ConsentScope::Collections(collections.clone()),
        Some(Scope::Records { records }) => ConsentScope::Records(records.clone()),
        // A grant always carries a scope (the lexicon requires it); without one it covers
        // nothing.
        None => ConsentScope::Records(Vec::new()),
    };
    let granted = Consent::Granted {
        member: did.clone(),
        effective_from: from,
        scope,
    };
    (granted, Some(c.op()))
}

/// The agreement-level half of a selection, decided once: the agreement in force at the
/// cut, its terms read by guild-license, the bundle's kind licensed by them, and what each
/// record is then asked. [`select`] and the verifier share it, so that a record is judged by
/// the same code (and the same [`may`]) whichever side asks.
pub(crate) struct Selector<'a> {
    state: &'a guild_gov::State,
    cut: &'a CutState,
    id: Cid,
    builder: Did,
    start: Datetime,
    template: String,
    terms: Template,
    contract: Contract,
    kind: BundleKind,
    use_kind: UseKind,
    user_class: guild_license::UserClass,
    works: &'a BTreeSet<Nsid>,
    consenting: BTreeMap<Did, Cid>,
}

impl<'a> Selector<'a> {
    /// The agreement `request.agreement` at `cut` (a cut of `log`): known, in force, its
    /// terms licensing a bundle of `request.kind` at the cut's time.
    pub(crate) fn new(
        log: &Log,
        cut: &'a CutState,
        request: &SelectRequest,
    ) -> Result<Selector<'a>, BundleError> {
        let state = &cut.state;
        let id = request.agreement;
        let agreement = state
            .agreements
            .get(&id)
            .ok_or(BundleError::UnknownAgreement(id))?;
        let AgreementStatus::InForce(countersign) = agreement.status else {
            return Err(BundleError::AgreementNotInForce(id));
        };
        let start = log
            .get(&countersign)
            .ok_or(BundleError::MissingOp(countersign))?
            .created_at()
            .clone();
        let terms = agreement.terms.as_ref().clone();
        let json = serde_json::to_value(&terms).map_err(|e| BundleError::Encode(e.to_string()))?;
        let contract = Contract::from_record_json(&json)?;
        let kind = request
            .kind
            .known()
            .ok_or_else(|| BundleError::UnknownKind(request.kind.as_str().to_owned()))?;
        let use_kind = match kind {
            BundleKind::Training => UseKind::Train,
            BundleKind::Evaluation => UseKind::Evaluate,
        };
        let Some(&user_class) = contract.user_classes.first() else {
            return Err(BundleError::Terms(guild_license::LicenceError::Invalid(
                "userClasses: empty".into(),
            )));
        };
        let works: &BTreeSet<Nsid> = &state
            .charter
            .as_ref()
            .ok_or(BundleError::NoCharter)?
            .accepted_lexicons;
        let selector = Selector {
            state,
            cut,
            id,
            builder: agreement.builder.clone(),
            start,
            template: agreement.template.clone(),
            terms,
            contract,
            kind,
            use_kind,
            user_class,
            works,
            consenting: state.consenting(&agreement.template),
        };
        // The agreement-level checks, asked once with no consent so that a bundle with no
        // record is refused for the same reasons as one with records.
        let probe = AtUri::record(
            AtIdentifier::Did(selector.builder.clone()),
            Nsid::parse(crate::manifest::NSID).map_err(|e| BundleError::Encode(e.to_string()))?,
            RecordKey::parse("self").map_err(|e| BundleError::Encode(e.to_string()))?,
        );
        if let Answer::No(r) = selector.ask(&probe, &Consent::Never)
            && about_the_agreement(&r)
        {
            return Err(BundleError::NotLicensed(r));
        }
        Ok(selector)
    }

    /// [`may`], asked as the agreement's builder for the bundle's use at the cut's time.
    fn ask(&self, record: &AtUri, consent: &Consent) -> Answer {
        let country = match &self.contract.territory {
            Territory::Worldwide => None,
            Territory::Only(list) => list.first(),
        };
        let licence = Agreement {
            terms: &self.contract,
            builder: &self.builder,
            start: &self.start,
            notice_given: None,
        };
        may(
            &licence,
            consent,
            &UseRequest {
                record,
                use_kind: self.use_kind,
                builder: &self.builder,
                user_class: self.user_class,
                country,
                at: &self.cut.time,
            },
        )
    }

    /// The selection with no replica and no record yet.
    pub(crate) fn empty(&self) -> Selection {
        Selection {
            collective: self.state.collective,
            agreement: self.id,
            builder: self.builder.clone(),
            start: self.start.clone(),
            template: self.template.clone(),
            terms: self.terms.clone(),
            contract: self.contract.clone(),
            kind: self.kind,
            heads: self.cut.heads.clone(),
            time: self.cut.time.clone(),
            canaries: self
                .state
                .charter
                .as_ref()
                .map_or(0, |c| c.body.canaries_per_bundle()),
            replicas: Vec::new(),
            names: BTreeMap::new(),
            records: Vec::new(),
            excluded: Vec::new(),
            ignored: Vec::new(),
        }
    }

    /// The bundle's kind.
    pub(crate) fn kind(&self) -> BundleKind {
        self.kind
    }

    /// Adds a replica to `out` (given in DID order): among the replicas when its member's
    /// consent register for the template is granted at the cut (`true`), else among the
    /// ignored ones.
    pub(crate) fn admit(
        &self,
        out: &mut Selection,
        did: &Did,
        rev: &Tid,
        commit: Cid,
        name: Option<&str>,
    ) -> bool {
        if !self.consenting.contains_key(did) {
            out.ignored.push(did.clone());
            return false;
        }
        out.replicas.push(ReplicaHead {
            did: did.clone(),
            rev: rev.clone(),
            commit: CidRef(commit),
        });
        if let Some(name) = name {
            out.names.insert(did.clone(), name.to_owned());
        }
        true
    }

    /// The member's consent register for the template at the cut, with the op that wrote
    /// it (see [`Selector::judge`]).
    pub(crate) fn consent(&self, did: &Did) -> (Consent, Option<Cid>) {
        consent_of(self.state, did, &self.template)
    }

    /// Whether the record `collection/rkey` of `did`, whose consent register is `consent`
    /// (from [`Selector::consent`]), is selected (`Ok`: the consent op that covers it), or
    /// why not. The evaluation ledger is the caller's.
    pub(crate) fn judge(
        &self,
        did: &Did,
        consent: &(Consent, Option<Cid>),
        collection: &Nsid,
        rkey: &RecordKey,
    ) -> Result<Cid, Exclusion> {
        // Only works: records of the types the charter accepts from members (not the
        // space's declaration, nor any other bookkeeping record).
        if !self.works.contains(collection) {
            return Err(Exclusion::NotAWork(collection.clone()));
        }
        let uri = AtUri::record(
            AtIdentifier::Did(did.clone()),
            collection.clone(),
            rkey.clone(),
        );
        match (self.ask(&uri, &consent.0), consent.1) {
            (Answer::No(refusal), _) => Err(Exclusion::Consent(refusal)),
            (Answer::Yes, None) => Err(Exclusion::Consent(Refusal::NoConsent)),
            (Answer::Yes, Some(op)) => Ok(op),
        }
    }
}

/// Selects the records for a bundle of `request.kind` under `request.agreement` at `cut`
/// (a cut of `log`), from `replicas` (given in any order, records in any order), leaving out
/// of a training bundle what the evaluation bundles in `evaluations` delivered (it must hold
/// every evaluation bundle sealed at the cut: see [`EvaluationLedger::for_cut`]).
///
/// Deterministic: the same cut, agreement, kind, replica listings and ledger give the same
/// selection whatever the order of the inputs.
pub fn select(
    log: &Log,
    cut: &CutState,
    request: &SelectRequest,
    replicas: &[Replica],
    evaluations: &EvaluationLedger,
) -> Result<Selection, BundleError> {
    let selector = Selector::new(log, cut, request)?;
    let kind = selector.kind();
    let mut out = selector.empty();
    let mut sorted: Vec<&Replica> = replicas.iter().collect();
    sorted.sort_by(|a, b| a.did.cmp(&b.did));
    let mut seen: BTreeSet<&Did> = BTreeSet::new();
    for replica in sorted {
        let did = &replica.did;
        if !seen.insert(did) {
            return Err(BundleError::DuplicateReplica(did.clone()));
        }
        let mut records: Vec<(String, &RecordListing)> =
            replica.records.iter().map(|r| (r.path(), r)).collect();
        records.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        if let Some(w) = records.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(BundleError::DuplicateRecord(did.clone(), w[0].0.clone()));
        }
        if !selector.admit(
            &mut out,
            did,
            &replica.rev,
            replica.commit,
            replica.name.as_deref(),
        ) {
            continue;
        }
        let consent = selector.consent(did);
        for (path, r) in records {
            let why = match selector.judge(did, &consent, &r.collection, &r.rkey) {
                Err(why) => why,
                Ok(op) => {
                    let delivered = match kind {
                        BundleKind::Training => evaluations.delivered(did, &path, &r.cid),
                        BundleKind::Evaluation => None,
                    };
                    match delivered {
                        Some(m) => Exclusion::DeliveredForEvaluation(m),
                        None => {
                            out.records.push(Selected {
                                author: did.clone(),
                                commit: replica.commit,
                                path,
                                cid: r.cid,
                                consent: op,
                            });
                            continue;
                        }
                    }
                }
            };
            out.excluded.push((did.clone(), path, why));
        }
    }
    Ok(out)
}
