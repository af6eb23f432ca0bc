//! Bundles: a steward's proposal of a bundle from a causal cut, the stewards' approvals of
//! its manifest, and the consent rule: a revocation not in the proposal's past voids it
//! unless a quorum sealed it first.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use guild_core::Cid;
use guild_core::syntax::Did;

use super::{AgreementStatus, Causal, Reason, Revokes, State};
use crate::body::{ApprovalBody, BundleKind, Open, ProposalBody, ReplicaHead};
use crate::op::SignedOp;

/// A proposed bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    /// The agreement it is for.
    pub agreement: Cid,
    /// The agreement's template.
    pub template: String,
    /// Training or evaluation.
    pub kind: Open<BundleKind>,
    /// The causal cut it is assembled against (the proposal's `prev`).
    pub heads: Vec<Cid>,
    /// The replica heads named.
    pub replicas: Arc<Vec<ReplicaHead>>,
    /// The members whose consent covered the template at the cut, with the op that wrote it.
    pub contributors: Arc<BTreeMap<Did, Cid>>,
    /// Each steward's approval: (approval op, manifest CID).
    pub approvals: BTreeMap<Did, (Cid, Cid)>,
    /// Stewards who approved two different manifests: their approvals count for nothing.
    pub equivocating: BTreeSet<Did>,
    /// The manifest sealed by a quorum, with the approvals that sealed it.
    pub sealed: Option<(Cid, Vec<Cid>)>,
    /// The revocation that voided the bundle: a revoke of a contributor's consent that is not
    /// in the proposal's causal past and not after the seal.
    pub voided: Option<Cid>,
}

impl State {
    fn bundle(&self, id: &Cid) -> Result<&Bundle, Reason> {
        self.bundles.get(id).ok_or(Reason::UnknownRef("proposal"))
    }

    /// A revocation of a contributor's consent to the bundle's template that is not in the
    /// causal past of the bundle's proposal.
    fn revoked_since(&self, proposal: Cid, b: &Bundle, causal: &dyn Causal) -> Option<Cid> {
        for did in b.contributors.keys() {
            let key = (did.clone(), Arc::from(b.template.as_str()));
            for r in self
                .revocations
                .get(&key)
                .into_iter()
                .flat_map(Revokes::iter)
            {
                if !causal.is_ancestor(&r, &proposal) {
                    return Some(r);
                }
            }
        }
        None
    }

    pub(super) fn authorize_proposal(&self, author: &str, b: &ProposalBody) -> Result<(), Reason> {
        self.steward(author)?;
        let a = self.agreement(&b.agreement.0, "agreement")?;
        if !matches!(a.status, AgreementStatus::InForce(_)) {
            return Err(Reason::AgreementNotInForce);
        }
        Ok(())
    }

    /// The cut's heads must be the proposal's `prev` and its replicas those of contributors;
    /// returns the contributors (members whose consent covers the template at the cut).
    pub(super) fn check_proposal(
        &self,
        op: &SignedOp,
        b: &ProposalBody,
    ) -> Result<Arc<BTreeMap<Did, Cid>>, Reason> {
        let a = self.agreement(&b.agreement.0, "agreement")?;
        let heads: BTreeSet<Cid> = b.cut.heads.iter().map(|c| c.0).collect();
        let prev: BTreeSet<Cid> = op.prev().iter().copied().collect();
        if heads != prev {
            return Err(Reason::BadCut(
                "the cut's heads must be the proposal's prev",
            ));
        }
        let contributors = self.consenting(&a.template);
        for r in &b.cut.replicas {
            if !contributors.contains_key(r.did.as_str()) {
                return Err(Reason::BadCut("a replica of a member without consent"));
            }
        }
        Ok(Arc::new(contributors))
    }

    pub(super) fn authorize_approval(&self, author: &str, b: &ApprovalBody) -> Result<(), Reason> {
        self.steward(author)?;
        let bundle = self.bundle(&b.proposal.0)?;
        if bundle.voided.is_some() {
            return Err(Reason::BundleState("void"));
        }
        if bundle.sealed.is_some() {
            return Err(Reason::BundleState("sealed"));
        }
        Ok(())
    }

    pub(super) fn check_approval(
        &self,
        author: &str,
        b: &ApprovalBody,
        causal: &dyn Causal,
    ) -> Result<(), Reason> {
        let bundle = self.bundle(&b.proposal.0)?;
        if bundle.approvals.contains_key(author) || bundle.equivocating.contains(author) {
            return Err(Reason::AlreadySigned(author.to_owned()));
        }
        if self.revoked_since(b.proposal.0, bundle, causal).is_some() {
            return Err(Reason::ConsentRevoked);
        }
        Ok(())
    }

    /// A builder's receipt: by the agreement's builder, for exactly one of a bundle sealed
    /// under the agreement and a revoke of a member's consent to the agreement's template,
    /// once per (agreement, subject).
    pub(super) fn authorize_receipt(
        &self,
        op: &SignedOp,
        b: &crate::body::ReceiptBody,
    ) -> Result<(), Reason> {
        let a = self.agreement(&b.agreement.0, "agreement")?;
        if a.builder != *op.author_did() {
            return Err(Reason::NotBuilder(op.author().to_owned()));
        }
        let subject = match (&b.bundle, &b.revoke) {
            (Some(m), None) => {
                let sealed = self.bundles.values().any(|x| {
                    x.agreement == b.agreement.0
                        && x.sealed.as_ref().is_some_and(|(s, _)| *s == m.0)
                });
                if !sealed {
                    return Err(Reason::BadReceipt(
                        "no bundle sealed under the agreement has this manifest",
                    ));
                }
                m.0
            }
            (None, Some(r)) => {
                let known = self
                    .revocations
                    .iter()
                    .any(|((_, template), ops)| **template == *a.template && ops.contains(&r.0));
                if !known {
                    return Err(Reason::BadReceipt(
                        "no revoke of consent to the agreement's template has this id",
                    ));
                }
                r.0
            }
            _ => {
                return Err(Reason::BadReceipt(
                    "it names exactly one of a bundle and a revoke",
                ));
            }
        };
        if self.receipts.contains_key(&(b.agreement.0, subject)) {
            return Err(Reason::BadReceipt("already acknowledged"));
        }
        Ok(())
    }

    pub(super) fn apply_receipt(&mut self, id: Cid, b: &crate::body::ReceiptBody) {
        let subject = b.bundle.or(b.revoke).map(|c| c.0);
        if let Some(subject) = subject {
            self.receipts.entry((b.agreement.0, subject)).or_insert(id);
        }
    }

    pub(super) fn apply_proposal(&mut self, op: &SignedOp, b: &ProposalBody, causal: &dyn Causal) {
        let id = *op.id();
        let agreement = b.agreement.0;
        // authorize_proposal found the agreement.
        let Some(template) = self.agreements.get(&agreement).map(|a| a.template.clone()) else {
            return;
        };
        let contributors = causal
            .meta(&id)
            .and_then(|m| m.contributors.clone())
            .unwrap_or_else(|| Arc::new(self.consenting(&template)));
        let mut bundle = Bundle {
            agreement,
            template,
            kind: b.kind.clone(),
            heads: op.prev().to_vec(),
            replicas: Arc::new(b.cut.replicas.clone()),
            contributors,
            approvals: BTreeMap::new(),
            equivocating: BTreeSet::new(),
            sealed: None,
            voided: None,
        };
        // A revocation concurrent with the proposal (ordered before it) wins.
        bundle.voided = self.revoked_since(id, &bundle, causal);
        self.bundles.insert(id, bundle);
    }

    pub(super) fn apply_approval(
        &mut self,
        author: Did,
        id: Cid,
        b: &ApprovalBody,
        causal: &dyn Causal,
    ) {
        let (pid, manifest) = (b.proposal.0, b.manifest.0);
        let quorum = self.quorum();
        let Some(bundle) = self.bundles.get(&pid) else {
            return;
        };
        // A revocation concurrent with this approval (ordered before it) voids the bundle.
        let revoked = self.revoked_since(pid, bundle, causal);
        let Some(bundle) = self.bundles.get_mut(&pid) else {
            return;
        };
        if let Some(r) = revoked {
            bundle.voided = Some(r);
            return;
        }
        if bundle.equivocating.contains(&author) {
            return;
        }
        if let Some((_, m)) = bundle.approvals.get(&author) {
            if *m != manifest {
                bundle.approvals.remove(&author);
                bundle.equivocating.insert(author);
            }
            return;
        }
        bundle.approvals.insert(author, (id, manifest));
        let agreeing: Vec<Cid> = bundle
            .approvals
            .values()
            .filter(|(_, m)| *m == manifest)
            .map(|(a, _)| *a)
            .collect();
        if agreeing.len() >= quorum {
            bundle.sealed = Some((manifest, agreeing));
        }
    }
}
