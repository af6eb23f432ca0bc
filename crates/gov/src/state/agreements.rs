//! Licence agreements: a steward's offer to a builder, the builder's accept, and the
//! stewards' countersignatures that put it in force.

use std::collections::BTreeSet;
use std::sync::Arc;

use guild_core::Cid;
use guild_core::syntax::Datetime;
use guild_core::syntax::Did;

use super::{Charter, Reason, State};
use crate::body::{AcceptBody, CountersignBody, OfferBody, Template};
use crate::op::SignedOp;

/// Where an agreement stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgreementStatus {
    /// Offered by a steward.
    Offered,
    /// Accepted by the builder (the accept op).
    Accepted(Cid),
    /// Countersigned by a quorum of stewards.
    InForce(Cid),
}

/// A licence agreement with one builder.
#[derive(Debug, Clone, PartialEq)]
pub struct Agreement {
    /// The builder's DID (not a member).
    pub builder: Did,
    /// The template id.
    pub template: String,
    /// The terms offered.
    pub terms: Arc<Template>,
    /// When the offer lapses (by the accept's `createdAt`).
    pub expires_at: Option<Datetime>,
    /// The steward who offered it.
    pub offered_by: Did,
    /// The stewards who countersigned.
    pub countersigned: BTreeSet<Did>,
    /// Where it stands.
    pub status: AgreementStatus,
}

impl State {
    /// Whether this node takes `op`, signed elsewhere and submitted to it by a builder (who
    /// has a key, not a node), at `now_micros` by its clock: only an accept, dated within
    /// [`super::MAX_CLOCK_SKEW_MICROS`] of this node's clock (so that an accept cannot be
    /// backdated to beat the offer's expiry), by the offer's builder, of an offer still open
    /// and not expired by this node's clock. The log's rules then decide as for any op.
    ///
    /// A builder's receipt (`coop.guild.bundle.receipt`) is taken the same way: dated within
    /// the skew, by the agreement's builder, for what the agreement delivered.
    pub fn may_take_accept(&self, op: &SignedOp, now_micros: i64) -> Result<(), Reason> {
        let b = match op.body() {
            crate::body::OpBody::AgreementAccept(b) => b,
            crate::body::OpBody::BundleReceipt(r) => {
                let created = op.created_at().to_unix_micros();
                if created.abs_diff(now_micros) > super::MAX_CLOCK_SKEW_MICROS.unsigned_abs() {
                    return Err(Reason::AcceptMisdated {
                        created_at: op.created_at().as_str().to_owned(),
                        now: Datetime::from_unix_micros(now_micros).as_str().to_owned(),
                    });
                }
                return self.authorize_receipt(op, r);
            }
            _ => return Err(Reason::NotSubmittable(op.kind().nsid().to_owned())),
        };
        let created = op.created_at().to_unix_micros();
        if created.abs_diff(now_micros) > super::MAX_CLOCK_SKEW_MICROS.unsigned_abs() {
            return Err(Reason::AcceptMisdated {
                created_at: op.created_at().as_str().to_owned(),
                now: Datetime::from_unix_micros(now_micros).as_str().to_owned(),
            });
        }
        self.authorize_accept(op, b)?;
        if let Some(expiry) = &self.agreement(&b.offer.0, "offer")?.expires_at
            && now_micros >= expiry.to_unix_micros()
        {
            return Err(Reason::OfferExpired);
        }
        Ok(())
    }

    pub(super) fn agreement(&self, id: &Cid, field: &'static str) -> Result<&Agreement, Reason> {
        self.agreements.get(id).ok_or(Reason::UnknownRef(field))
    }

    pub(super) fn authorize_offer(
        &self,
        author: &str,
        b: &OfferBody,
        charter: &Charter,
    ) -> Result<(), Reason> {
        self.steward(author)?;
        if !charter.templates.contains_key(&b.template) {
            return Err(Reason::UnknownTemplate(b.template.clone()));
        }
        if self.members.contains_key(b.builder.as_str()) {
            return Err(Reason::NotBuilder(b.builder.to_string()));
        }
        Ok(())
    }

    pub(super) fn authorize_accept(&self, op: &SignedOp, b: &AcceptBody) -> Result<(), Reason> {
        let a = self.agreement(&b.offer.0, "offer")?;
        if a.builder != *op.author_did() {
            return Err(Reason::NotBuilder(op.author().to_owned()));
        }
        if a.status != AgreementStatus::Offered {
            return Err(Reason::AgreementState("already accepted"));
        }
        if let Some(expiry) = &a.expires_at
            && op.created_at().to_unix_micros() >= expiry.to_unix_micros()
        {
            return Err(Reason::OfferExpired);
        }
        if let Some(e) = &b.evaluation {
            check_evaluation(e)?;
        }
        Ok(())
    }

    pub(super) fn authorize_countersign(
        &self,
        author: &str,
        b: &CountersignBody,
    ) -> Result<(), Reason> {
        self.steward(author)?;
        let a = self.agreement(&b.offer.0, "offer")?;
        match a.status {
            AgreementStatus::Accepted(acc) if b.accept.0 == acc => Ok(()),
            AgreementStatus::Accepted(_) => Err(Reason::UnknownRef("accept")),
            AgreementStatus::Offered => Err(Reason::AgreementState("not accepted")),
            AgreementStatus::InForce(_) => Err(Reason::AgreementState("in force")),
        }
    }

    pub(super) fn check_countersign(
        &self,
        author: &str,
        b: &CountersignBody,
    ) -> Result<(), Reason> {
        let a = self.agreement(&b.offer.0, "offer")?;
        if a.countersigned.contains(author) {
            return Err(Reason::AlreadySigned(author.to_owned()));
        }
        Ok(())
    }

    pub(super) fn apply_offer(&mut self, author: Did, id: Cid, b: &OfferBody) {
        self.agreements.insert(
            id,
            Agreement {
                builder: b.builder.clone(),
                template: b.template.clone(),
                terms: Arc::new(b.terms.clone()),
                expires_at: b.expires_at.clone(),
                offered_by: author,
                countersigned: BTreeSet::new(),
                status: AgreementStatus::Offered,
            },
        );
    }

    pub(super) fn apply_accept(&mut self, id: Cid, b: &AcceptBody) {
        if let Some(a) = self.agreements.get_mut(&b.offer.0) {
            a.status = AgreementStatus::Accepted(id);
        }
    }

    pub(super) fn apply_countersign(&mut self, author: Did, id: Cid, b: &CountersignBody) {
        let quorum = self.quorum();
        if let Some(a) = self.agreements.get_mut(&b.offer.0) {
            a.countersigned.insert(author);
            if a.countersigned.len() >= quorum {
                a.status = AgreementStatus::InForce(id);
            }
        }
    }
}

/// The most evaluation (and baseline) points an accept carries (the lexicon's bound).
pub const MAX_EVALUATION_POINTS: usize = 1000;

/// An evaluation set the stewards can value with: K in 1..=100, 1..=1000 points, at most
/// 1000 baseline points, a known metric.
fn check_evaluation(e: &crate::body::Evaluation) -> Result<(), Reason> {
    if !(1..=100).contains(&e.k) {
        return Err(Reason::BadEvaluation("k must be between 1 and 100"));
    }
    if e.points.is_empty() || e.points.len() > MAX_EVALUATION_POINTS {
        return Err(Reason::BadEvaluation(
            "between 1 and 1000 evaluation points",
        ));
    }
    if e.baseline.len() > MAX_EVALUATION_POINTS {
        return Err(Reason::BadEvaluation("at most 1000 baseline points"));
    }
    if !matches!(e.metric.as_deref(), None | Some("cosine" | "l2")) {
        return Err(Reason::BadEvaluation("the metric is cosine or l2"));
    }
    Ok(())
}
