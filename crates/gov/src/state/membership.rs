//! Membership: invites, joins (by invite or by request), admits, removals and leaves, and
//! the access decisions the network layer asks about them.

use guild_core::syntax::{Datetime, Did};
use guild_core::{Cid, cids};

use super::{
    Causal, Charter, DAY_MICROS, Departure, ElectionKind, MAX_CLOCK_SKEW_MICROS, Member, Proposal,
    ProposalStatus, Reason, Role, State,
};
use crate::body::{AdmissionPolicy, AdmitBody, ApprovalMode, InviteBody, JoinBody, RemoveBody};
use crate::op::SignedOp;
use crate::table::digest_of;

/// An open invite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// The steward who wrote it.
    pub by: Did,
    /// SHA-256 of the one-time secret.
    pub secret_hash: Vec<u8>,
    /// After this instant (by the join's `createdAt`) it no longer admits anyone.
    pub expires_at: Option<Datetime>,
    /// The person invited, if named.
    pub invitee: Option<Did>,
}

impl Invite {
    fn expired_at(&self, micros: i64) -> bool {
        self.expires_at
            .as_ref()
            .is_some_and(|e| micros >= e.to_unix_micros())
    }

    /// Whether `secret` and `did` open this invite (expiry aside).
    fn opens(&self, secret: &[u8], did: &str) -> Result<(), Reason> {
        if cids::sha256(secret).as_slice() != self.secret_hash.as_slice() {
            return Err(Reason::SecretMismatch);
        }
        if self.invitee.as_ref().is_some_and(|i| i.as_str() != did) {
            return Err(Reason::NotInvitee);
        }
        Ok(())
    }
}

impl State {
    /// Whether a candidate `did` holding `secret` for the invite `invite` may fetch the
    /// collective's log from this node now (`now_micros`: the answering node's clock, not the
    /// candidate's): the invite is one of the state's open invites, the secret is its secret, the
    /// candidate is its invitee when it names one, and it has not expired. The network layer
    /// asks this; it holds no copy of the rule. (The join op itself is judged by
    /// [`State::check_past`]'s join rule.)
    pub fn may_fetch_with_invite(
        &self,
        invite: &Cid,
        secret: &[u8],
        did: &str,
        now_micros: i64,
    ) -> Result<(), Reason> {
        let open = self.open_invite(invite)?;
        open.opens(secret, did)?;
        if open.expired_at(now_micros) {
            return Err(Reason::InviteExpired);
        }
        Ok(())
    }

    /// Whether this node, a member's, may accept a join op that a candidate submits to it
    /// now (`now_micros`: this node's clock). The join must be dated within
    /// [`MAX_CLOCK_SKEW_MICROS`] of this node's clock, and its invite, if it names one, must
    /// not have expired by this node's clock. The log's own rule judges the join by its
    /// `createdAt` (every node must reach the same verdict whenever the op reaches it); this
    /// gate, at the one place a candidate's join enters the collective, keeps a candidate
    /// from dating its join back to before the invite's expiry. The network layer asks this.
    pub fn may_accept_join(&self, op: &SignedOp, now_micros: i64) -> Result<(), Reason> {
        let created = op.created_at().to_unix_micros();
        if created.abs_diff(now_micros) > MAX_CLOCK_SKEW_MICROS.unsigned_abs() {
            return Err(Reason::JoinMisdated {
                created_at: op.created_at().as_str().to_owned(),
                now: Datetime::from_unix_micros(now_micros).as_str().to_owned(),
            });
        }
        if let crate::body::OpBody::Join(join) = op.body()
            && let JoinBody {
                invite: Some(invite),
                ..
            } = &**join
            && let Some(open) = self.invites.get(&invite.0)
            && open.expired_at(now_micros)
        {
            return Err(Reason::InviteExpired);
        }
        Ok(())
    }

    fn open_invite(&self, invite: &Cid) -> Result<&Invite, Reason> {
        self.invites.get(invite).ok_or_else(|| {
            if digest_of(invite).is_some_and(|d| self.used_invites.contains(&d)) {
                Reason::InviteUsed
            } else {
                Reason::UnknownInvite
            }
        })
    }

    pub(super) fn authorize_join(
        &self,
        op: &SignedOp,
        b: &JoinBody,
        charter: &Charter,
    ) -> Result<(), Reason> {
        let author = op.author();
        if self.members.contains_key(author) {
            return Err(Reason::AlreadyMember(author.to_owned()));
        }
        let Some(invite_id) = b.invite else {
            return if charter
                .admission_policy
                .is(AdmissionPolicy::InviteOrRequest)
            {
                Ok(())
            } else {
                Err(Reason::RequestsNotAllowed)
            };
        };
        let invite = self.open_invite(&invite_id.0)?;
        let secret = b.secret.as_deref().ok_or(Reason::SecretMismatch)?;
        invite.opens(secret, author)?;
        if invite.expired_at(op.created_at().to_unix_micros()) {
            return Err(Reason::InviteExpired);
        }
        Ok(())
    }

    pub(super) fn authorize_admit(
        &self,
        author: &str,
        b: &AdmitBody,
        charter: &Charter,
    ) -> Result<(), Reason> {
        self.steward(author)?;
        if !charter.admission_approval.is(ApprovalMode::Steward) {
            return Err(Reason::VoteRequired);
        }
        let member = b.member.as_str();
        if self.members.contains_key(member) {
            return Err(Reason::AlreadyMember(member.to_owned()));
        }
        match self.candidates.get(&b.join.0) {
            Some(candidate) if *candidate == b.member => Ok(()),
            _ => Err(Reason::NoSuchRequest),
        }
    }

    pub(super) fn authorize_remove(
        &self,
        op: &SignedOp,
        b: &RemoveBody,
        charter: &Charter,
        causal: &dyn Causal,
    ) -> Result<(), Reason> {
        let direct = causal
            .meta(op.id())
            .map_or(charter.removal_bp.is_none(), |m| m.direct_removal);
        if direct {
            self.steward(op.author())?;
        } else {
            self.member(op.author())?;
        }
        if !self.members.contains_key(b.member.as_str()) {
            return Err(Reason::NotMember(b.member.to_string()));
        }
        Ok(())
    }

    pub(super) fn apply_invite(&mut self, op: &SignedOp, b: &InviteBody) {
        let ttl = self.charter.as_ref().and_then(|c| c.invite_ttl_days);
        let expires_at = b.expires_at.clone().or_else(|| {
            ttl.map(|d| {
                Datetime::from_unix_micros(
                    op.created_at()
                        .to_unix_micros()
                        .saturating_add(d.saturating_mul(DAY_MICROS)),
                )
            })
        });
        self.invites.insert(
            *op.id(),
            Invite {
                by: op.author_did().clone(),
                secret_hash: b.secret_hash.to_vec(),
                expires_at,
                invitee: b.invitee.clone(),
            },
        );
    }

    pub(super) fn apply_join(&mut self, author: Did, id: Cid, b: &JoinBody) {
        if let Some(invite) = b.invite {
            self.invites.remove(&invite.0);
            // An open invite's id is an op id.
            if let Some(d) = digest_of(&invite.0) {
                self.used_invites.insert(d);
            }
            self.admit(author, id);
            return;
        }
        self.candidates.insert(id, author.clone());
        let by_vote = self
            .charter
            .as_ref()
            .is_some_and(|c| c.admission_approval.is(ApprovalMode::Vote));
        if by_vote {
            self.proposals.insert(
                id,
                Proposal {
                    kind: ElectionKind::Admission,
                    by: author.clone(),
                    member: Some(author),
                    changes: None,
                    status: ProposalStatus::Open,
                },
            );
        }
    }

    pub(super) fn apply_admit(&mut self, id: Cid, b: &AdmitBody) {
        self.candidates.remove(&b.join.0);
        self.admit(b.member.clone(), id);
    }

    pub(super) fn apply_remove(
        &mut self,
        author: Did,
        id: Cid,
        b: &RemoveBody,
        causal: &dyn Causal,
    ) {
        let member = b.member.clone();
        let direct = causal.meta(&id).is_none_or(|m| m.direct_removal);
        if direct {
            self.depart(&member, Departure::Removed(id));
        } else {
            self.proposals.insert(
                id,
                Proposal {
                    kind: ElectionKind::Removal,
                    by: author,
                    member: Some(member),
                    changes: None,
                    status: ProposalStatus::Open,
                },
            );
        }
    }

    pub(super) fn admit(&mut self, did: Did, since: Cid) {
        self.departed.remove(&did);
        self.members.insert(did, Member::new(Role::Member, &since));
    }

    pub(super) fn depart(&mut self, did: &Did, how: Departure) {
        if self.members.remove(did).is_some() {
            self.departed.insert(did.clone(), how);
        }
    }
}
