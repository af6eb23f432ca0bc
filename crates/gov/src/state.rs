//! The collective's state and the rules that authorise and apply one op to it.

use std::collections::{BTreeMap, BTreeSet};

use guild_core::syntax::Datetime;
use guild_core::{Cid, Ipld, cids};

use crate::op::{OpKind, SignedOp};

/// Microseconds in a day.
const DAY_MICROS: i64 = 86_400_000_000;

/// A member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A steward: invites, admits, removes.
    Steward,
    /// A member.
    Member,
}

/// A current member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member's role.
    pub role: Role,
    /// The op that made them a member (the charter, their join, or the admit).
    pub since: Cid,
}

/// Why someone is no longer a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Departure {
    /// They left (the leave op).
    Left(Cid),
    /// A steward removed them (the remove op).
    Removed(Cid),
}

/// The parts of the charter this crate uses so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charter {
    /// The collective's name.
    pub name: String,
    /// Who may ask to join (`invite-only`, `invite-or-request`, …).
    pub admission_policy: String,
    /// Who admits a candidate (`steward`, `vote`, …).
    pub admission_approval: String,
    /// How long invites stay valid when they carry no `expiresAt`.
    pub invite_ttl_days: Option<i64>,
    /// The ids of the licence templates the collective offers.
    pub templates: BTreeSet<String>,
}

/// An open invite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// The steward who wrote it.
    pub by: String,
    /// SHA-256 of the one-time secret.
    pub secret_hash: Vec<u8>,
    /// After this instant (by the join's `createdAt`) it no longer admits anyone.
    pub expires_at: Option<Datetime>,
    /// The person invited, if named.
    pub invitee: Option<String>,
}

/// One (member, template) consent register.
#[derive(Debug, Clone, PartialEq)]
pub struct Consent {
    /// Whether consent is given (a grant) or withdrawn (a revoke).
    pub granted: bool,
    /// The register's revision: 1 for its first write, +1 for each write applied after.
    pub rev: u64,
    /// The scope of the last write (`None` for a revoke without scope: everything).
    pub scope: Option<Ipld>,
    /// The last write's `effectiveFrom`.
    pub effective_from: Option<Datetime>,
    /// The op that last wrote the register.
    pub op: Cid,
}

/// The collective's state, as folded from a set of ops.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// The collective's id.
    pub collective: Cid,
    /// The charter, once the genesis op is applied.
    pub charter: Option<Charter>,
    /// Current members by DID.
    pub members: BTreeMap<String, Member>,
    /// Former members by DID.
    pub departed: BTreeMap<String, Departure>,
    /// Open invites by op id.
    pub invites: BTreeMap<Cid, Invite>,
    /// Invites that have admitted their one member.
    pub used_invites: BTreeSet<Cid>,
    /// Join requests awaiting admission: join op id → candidate DID.
    pub candidates: BTreeMap<Cid, String>,
    /// Consent registers by (member DID, template id).
    pub consents: BTreeMap<(String, String), Consent>,
}

/// Why an op is not authorised (against the state of its causal past), or why it is ignored
/// when the full state is folded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// The bytes are not a valid signed op.
    #[error("invalid op: {0}")]
    Invalid(#[from] crate::op::OpError),
    /// The op belongs to another collective (or is another collective's genesis).
    #[error("op belongs to another collective")]
    WrongCollective,
    /// The op's causal past does not start at this collective's charter.
    #[error("op's causal past has no charter")]
    NoCharter,
    /// A second charter.
    #[error("the collective already has a charter")]
    SecondCharter,
    /// The author is not a member (in the op's causal past).
    #[error("author {0} is not a member")]
    UnknownAuthor(String),
    /// The op needs a steward.
    #[error("author {0} is not a steward")]
    NotSteward(String),
    /// The target is not a member.
    #[error("{0} is not a member")]
    NotMember(String),
    /// The candidate is already a member.
    #[error("{0} is already a member")]
    AlreadyMember(String),
    /// The join names an invite that does not exist (in its causal past).
    #[error("no such invite")]
    UnknownInvite,
    /// The invite has already admitted someone.
    #[error("invite already used")]
    InviteUsed,
    /// The join was written after the invite expired.
    #[error("invite expired")]
    InviteExpired,
    /// The revealed secret does not hash to the invite's `secretHash`.
    #[error("secret does not match the invite")]
    SecretMismatch,
    /// The invite names someone else.
    #[error("the invite is for someone else")]
    NotInvitee,
    /// A join without an invite where the charter accepts only invites.
    #[error("the charter admits by invite only")]
    RequestsNotAllowed,
    /// The admit names no pending join request of that member.
    #[error("no pending join request")]
    NoSuchRequest,
    /// The charter needs a certified vote for this (not yet implemented).
    #[error("the charter requires a vote")]
    VoteRequired,
    /// A consent op names a template the charter does not offer.
    #[error("template {0:?} is not offered by the charter")]
    UnknownTemplate(String),
}

impl State {
    /// The empty state of a collective, before its charter.
    pub fn new(collective: Cid) -> State {
        State {
            collective,
            charter: None,
            members: BTreeMap::new(),
            departed: BTreeMap::new(),
            invites: BTreeMap::new(),
            used_invites: BTreeSet::new(),
            candidates: BTreeMap::new(),
            consents: BTreeMap::new(),
        }
    }

    /// The member's role, if they are a member.
    pub fn role(&self, did: &str) -> Option<Role> {
        self.members.get(did).map(|m| m.role)
    }

    /// The current stewards.
    pub fn stewards(&self) -> impl Iterator<Item = &str> {
        self.members
            .iter()
            .filter(|(_, m)| m.role == Role::Steward)
            .map(|(d, _)| d.as_str())
    }

    /// The member's consent for a template, if they are a member and it is granted.
    pub fn effective_consent(&self, did: &str, template: &str) -> Option<&Consent> {
        if !self.members.contains_key(did) {
            return None;
        }
        self.consents
            .get(&(did.to_owned(), template.to_owned()))
            .filter(|c| c.granted)
    }

    fn member(&self, did: &str) -> Result<&Member, Reason> {
        self.members
            .get(did)
            .ok_or_else(|| Reason::UnknownAuthor(did.to_owned()))
    }

    fn steward(&self, did: &str) -> Result<(), Reason> {
        match self.member(did)?.role {
            Role::Steward => Ok(()),
            Role::Member => Err(Reason::NotSteward(did.to_owned())),
        }
    }

    /// Checks that `op` may be applied to this state.
    pub fn authorize(&self, op: &SignedOp) -> Result<(), Reason> {
        let author = op.author();
        if op.kind() == OpKind::Charter {
            if *op.id() != self.collective {
                return Err(Reason::WrongCollective);
            }
            if self.charter.is_some() {
                return Err(Reason::SecondCharter);
            }
            return Ok(());
        }
        if op.collective() != Some(&self.collective) {
            return Err(Reason::WrongCollective);
        }
        let Some(charter) = &self.charter else {
            return Err(Reason::NoCharter);
        };
        match op.kind() {
            OpKind::Charter => Ok(()),
            OpKind::Invite => self.steward(author),
            OpKind::Join => {
                if self.members.contains_key(author) {
                    return Err(Reason::AlreadyMember(author.to_owned()));
                }
                let Some(invite_id) = op.op_ref("invite") else {
                    return if charter.admission_policy == "invite-or-request" {
                        Ok(())
                    } else {
                        Err(Reason::RequestsNotAllowed)
                    };
                };
                let Some(invite) = self.invites.get(&invite_id) else {
                    return Err(if self.used_invites.contains(&invite_id) {
                        Reason::InviteUsed
                    } else {
                        Reason::UnknownInvite
                    });
                };
                let secret = op.bytes_field("secret").unwrap_or_default();
                if cids::sha256(secret).as_slice() != invite.secret_hash.as_slice() {
                    return Err(Reason::SecretMismatch);
                }
                if invite.invitee.as_deref().is_some_and(|i| i != author) {
                    return Err(Reason::NotInvitee);
                }
                if let Some(expiry) = &invite.expires_at
                    && op.created_at().to_unix_micros() >= expiry.to_unix_micros()
                {
                    return Err(Reason::InviteExpired);
                }
                Ok(())
            }
            OpKind::Admit => {
                self.steward(author)?;
                if charter.admission_approval != "steward" {
                    return Err(Reason::VoteRequired);
                }
                let member = op.str_field("member").unwrap_or_default();
                if self.members.contains_key(member) {
                    return Err(Reason::AlreadyMember(member.to_owned()));
                }
                match op.op_ref("join").and_then(|j| self.candidates.get(&j)) {
                    Some(candidate) if candidate == member => Ok(()),
                    _ => Err(Reason::NoSuchRequest),
                }
            }
            OpKind::Remove => {
                self.steward(author)?;
                let member = op.str_field("member").unwrap_or_default();
                if op.body().contains_key("election") {
                    return Err(Reason::VoteRequired);
                }
                if !self.members.contains_key(member) {
                    return Err(Reason::NotMember(member.to_owned()));
                }
                Ok(())
            }
            OpKind::Leave => self.member(author).map(|_| ()),
            OpKind::ConsentGrant | OpKind::ConsentRevoke => {
                self.member(author)?;
                for t in op.str_list("templates") {
                    if !charter.templates.contains(&t) {
                        return Err(Reason::UnknownTemplate(t));
                    }
                }
                Ok(())
            }
        }
    }

    /// Applies an authorised op. `is_ancestor(a, b)` says whether op `a` is in the causal past
    /// of op `b` (used by the rule that a revocation wins over a concurrent grant).
    pub(crate) fn apply(&mut self, op: &SignedOp, is_ancestor: &dyn Fn(&Cid, &Cid) -> bool) {
        let author = op.author().to_owned();
        match op.kind() {
            OpKind::Charter => {
                self.charter = Some(parse_charter(op));
                self.members.insert(
                    author,
                    Member {
                        role: Role::Steward,
                        since: *op.id(),
                    },
                );
            }
            OpKind::Invite => {
                let ttl = self.charter.as_ref().and_then(|c| c.invite_ttl_days);
                let expires_at = op.datetime_field("expiresAt").or_else(|| {
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
                        by: author,
                        secret_hash: op.bytes_field("secretHash").unwrap_or_default().to_vec(),
                        expires_at,
                        invitee: op.str_field("invitee").map(str::to_owned),
                    },
                );
            }
            OpKind::Join => match op.op_ref("invite") {
                Some(invite) => {
                    self.invites.remove(&invite);
                    self.used_invites.insert(invite);
                    self.admit(author, *op.id());
                }
                None => {
                    self.candidates.insert(*op.id(), author);
                }
            },
            OpKind::Admit => {
                if let Some(join) = op.op_ref("join") {
                    self.candidates.remove(&join);
                }
                let member = op.str_field("member").unwrap_or_default().to_owned();
                self.admit(member, *op.id());
            }
            OpKind::Remove => {
                let member = op.str_field("member").unwrap_or_default().to_owned();
                self.members.remove(&member);
                self.departed.insert(member, Departure::Removed(*op.id()));
            }
            OpKind::Leave => {
                self.members.remove(&author);
                self.departed.insert(author, Departure::Left(*op.id()));
            }
            OpKind::ConsentGrant | OpKind::ConsentRevoke => {
                let granted = op.kind() == OpKind::ConsentGrant;
                for t in op.str_list("templates") {
                    let key = (author.clone(), t);
                    let rev = match self.consents.get(&key) {
                        // A revocation wins over a concurrent grant.
                        Some(prev)
                            if granted && !prev.granted && !is_ancestor(&prev.op, op.id()) =>
                        {
                            continue;
                        }
                        Some(prev) => prev.rev + 1,
                        None => 1,
                    };
                    self.consents.insert(
                        key,
                        Consent {
                            granted,
                            rev,
                            scope: op.body().get("scope").cloned(),
                            effective_from: op.datetime_field("effectiveFrom"),
                            op: *op.id(),
                        },
                    );
                }
            }
        }
    }

    fn admit(&mut self, did: String, since: Cid) {
        self.departed.remove(&did);
        self.members.insert(
            did,
            Member {
                role: Role::Member,
                since,
            },
        );
    }
}

fn parse_charter(op: &SignedOp) -> Charter {
    let body = op.body();
    let admission = match body.get("admission") {
        Some(Ipld::Map(m)) => Some(m),
        _ => None,
    };
    let adm_str = |k: &str| match admission.and_then(|m| m.get(k)) {
        Some(Ipld::String(s)) => s.clone(),
        _ => String::new(),
    };
    let invite_ttl_days = match admission.and_then(|m| m.get("inviteTtlDays")) {
        Some(Ipld::Integer(i)) => i64::try_from(*i).ok(),
        _ => None,
    };
    let templates = match body.get("licenceTemplates") {
        Some(Ipld::List(items)) => items
            .iter()
            .filter_map(|t| match t {
                Ipld::Map(m) => match m.get("id") {
                    Some(Ipld::String(id)) => Some(id.clone()),
                    _ => None,
                },
                _ => None,
            })
            .collect(),
        _ => BTreeSet::new(),
    };
    Charter {
        name: op.str_field("name").unwrap_or_default().to_owned(),
        admission_policy: adm_str("policy"),
        admission_approval: adm_str("approval"),
        invite_ttl_days,
        templates,
    }
}
