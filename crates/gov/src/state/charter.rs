//! The charter in force: the genesis charter with every adopted amendment applied, and the
//! rule values the other families read from it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use guild_core::Cid;
use guild_core::syntax::{Did, Nsid};

use super::{Member, Role, State, WHOLE_BP};
use crate::body::{
    AdmissionPolicy, ApprovalMode, CharterBody, Open, PayoutPolicy, TellerRule, Template,
};

/// The charter in force.
#[derive(Debug, Clone, PartialEq)]
pub struct Charter {
    /// The collective's name.
    pub name: String,
    /// Who may ask to join.
    pub admission_policy: Open<AdmissionPolicy>,
    /// Who admits a candidate who asked.
    pub admission_approval: Open<ApprovalMode>,
    /// How long invites stay valid when they carry no `expiresAt`.
    pub invite_ttl_days: Option<i64>,
    /// Steward seats (1 to 100).
    pub seats: u32,
    /// A steward's term, in days (informative: terms end by election, not by clock).
    pub term_days: u32,
    /// Who tells elections.
    pub tellers: Open<TellerRule>,
    /// The share of yes votes an amendment needs, in basis points of the votes cast.
    pub amendment_bp: u32,
    /// The share of yes votes a removal needs; `None` means stewards remove directly.
    pub removal_bp: Option<u32>,
    /// The turnout a vote needs, in basis points of its electorate.
    pub turnout_bp: u32,
    /// How many steward countersignatures an agreement or a bundle needs (capped by the
    /// number of stewards).
    pub countersignatures: u32,
    /// The record types members may contribute.
    pub accepted_lexicons: BTreeSet<Nsid>,
    /// The licence templates offered, by id.
    pub templates: BTreeMap<String, Template>,
    /// The payout period and method.
    pub payout: PayoutPolicy,
    /// The charter as a body: the genesis op's, with the adopted amendments' changes applied.
    pub body: CharterBody,
    /// The adopted amendments, in the order they were adopted.
    pub amendments: Vec<Cid>,
}

impl Charter {
    /// The charter a body sets, after `amendments`.
    pub fn from_body(body: CharterBody, amendments: Vec<Cid>) -> Charter {
        let bp = |v: u32| v.min(WHOLE_BP as u32);
        Charter {
            name: body.name.clone(),
            admission_policy: body.admission.policy.clone(),
            admission_approval: body.admission.approval.clone(),
            invite_ttl_days: body.admission.invite_ttl_days,
            seats: body.stewardship.seats.clamp(1, 100) as u32,
            term_days: body.stewardship.term_days.clamp(0, i64::from(u32::MAX)) as u32,
            tellers: body
                .stewardship
                .tellers
                .clone()
                .unwrap_or(Open::Known(TellerRule::Stewards)),
            amendment_bp: bp(body.quorum.amendment),
            removal_bp: body.quorum.removal.map(bp),
            turnout_bp: bp(body.quorum.turnout),
            countersignatures: body.quorum.countersignatures.clamp(1, 1000),
            accepted_lexicons: body.accepted_lexicons.iter().cloned().collect(),
            templates: body
                .licence_templates
                .iter()
                .map(|t| (t.id.clone(), t.clone()))
                .collect(),
            payout: body.payout_policy.clone(),
            body,
            amendments,
        }
    }
}

impl State {
    pub(super) fn apply_charter(&mut self, author: Did, id: Cid, body: &CharterBody) {
        self.charter = Some(Arc::new(Charter::from_body(body.clone(), Vec::new())));
        self.members.insert(author, Member::new(Role::Steward, &id));
    }
}
