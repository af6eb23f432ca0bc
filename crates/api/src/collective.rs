//! Guild's collective endpoints (`coop.guild.collective.*`, `coop.guild.node.getPeers`): the
//! member's daily commands, served by the node's collectives engine (reached through
//! [`CollectiveEngine`]; `guild-net` implements it). Every one
//! needs the admin token. The router layer (`validation.rs`) has authenticated the
//! request and validated it against the method's lexicon; handlers read it typed
//! ([`crate::methods`]), act, and shape a typed answer; the rules live in `guild-gov`.

use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use cid::Cid;
use guild_core::syntax::{Datetime, Did, Nsid};
use guild_gov::body::{AdmissionPolicy, ApprovalMode, Choice, OpBody};
use guild_gov::make::{self, CharterParams, InviteCode};
use guild_gov::{
    AgreementStatus, Certified, Departure, Election, ElectionKind, OpKind, Reason, Role,
    State as GovState,
};
use guild_service::{CollectiveEngine, EngineError, FieldsFn, NodeStore, Status};
use serde::Serialize;

use crate::methods::collective::{
    ConsentInput, OpWritten, close_election, create, create_invite, get_remote_heads, get_status,
    grant_consent, join, leave, list_collectives, open_election, revoke_consent, vote,
};
use crate::methods::node::get_peers;
use crate::server::{ApiState, XrpcError};
use crate::validation::Xrpc;

type XrpcResult = Result<axum::response::Response, XrpcError>;

/// The networking side of the node, when it runs one: its collectives engine and swarm.
pub type Collectives = Arc<dyn CollectiveEngine>;

pub(crate) fn err(
    status: StatusCode,
    error: &'static str,
    message: impl Into<String>,
) -> XrpcError {
    XrpcError::new(status, error, message)
}

/// An engine error, in words a member can act on.
pub(crate) fn explain(e: EngineError) -> XrpcError {
    match e {
        EngineError::UnknownCollective(c) => err(
            StatusCode::BAD_REQUEST,
            "CollectiveNotFound",
            format!("this node holds no collective {c}"),
        ),
        EngineError::NotMember => err(
            StatusCode::FORBIDDEN,
            "NotMember",
            "you are not a member of this collective",
        ),
        EngineError::Refused(reason) => err(StatusCode::BAD_REQUEST, "Refused", refusal(&reason)),
        EngineError::Invalid(m) => err(StatusCode::BAD_REQUEST, "InvalidRequest", m),
        EngineError::Invite(m) => err(
            StatusCode::BAD_REQUEST,
            "InvalidInvite",
            format!("the invite was refused: {m}"),
        ),
        EngineError::NoPeers(m) => err(
            StatusCode::SERVICE_UNAVAILABLE,
            "NoPeers",
            format!(
                "no member's node could be reached ({m}); check the address in the invite and that their node is running"
            ),
        ),
        EngineError::PeerRefused(m) => err(
            StatusCode::FORBIDDEN,
            "PeerRefused",
            format!("the peer's node refused the request: {m}"),
        ),
        EngineError::Store(m) => err(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", m),
        EngineError::Stopped => err(
            StatusCode::SERVICE_UNAVAILABLE,
            "NodeStopping",
            "the node's network engine stopped",
        ),
    }
}

fn refusal(reason: &Reason) -> String {
    match reason {
        Reason::NotSteward(_) => "only a steward can do this".into(),
        Reason::UnknownAuthor(_) => "you are not a member of this collective".into(),
        Reason::InviteExpired => "the invite has expired".into(),
        Reason::InviteUsed => "the invite has already been used".into(),
        Reason::NotInElectorate(_) => {
            "you were not a member when this election opened, so you cannot vote in it".into()
        }
        Reason::NotTeller(_) => "only the election's tellers can close it".into(),
        Reason::TooEarly => "the election cannot be closed before its close time".into(),
        other => other.to_string(),
    }
}

pub(crate) fn net(state: &ApiState<impl Sized>) -> Result<&dyn CollectiveEngine, XrpcError> {
    state.collectives.as_deref().ok_or_else(|| {
        err(
            StatusCode::NOT_IMPLEMENTED,
            "MethodNotImplemented",
            "this node runs without networking",
        )
    })
}

pub(crate) fn parse_cid(s: &str, what: &str) -> Result<Cid, XrpcError> {
    guild_core::syntax::parse_cid_str(s).map_err(|e| XrpcError::invalid(format!("{what}: {e}")))
}

/// The collective named, or the only one this node holds.
pub(crate) async fn which(c: &dyn CollectiveEngine, named: Option<&str>) -> Result<Cid, XrpcError> {
    if let Some(s) = named {
        return parse_cid(s, "collective");
    }
    let all = c.collectives().await.map_err(explain)?;
    match all.as_slice() {
        [one] => Ok(*one),
        [] => Err(err(
            StatusCode::BAD_REQUEST,
            "CollectiveNotFound",
            "this node holds no collective yet: create one or join one with an invite",
        )),
        many => Err(XrpcError::invalid(format!(
            "this node holds {} collectives: name one with --collective",
            many.len()
        ))),
    }
}

/// Now, by the node's clock.
pub(crate) fn now<S>(state: &ApiState<S>) -> Datetime {
    Datetime::from_unix_micros(state.clock.now_micros())
}

/// `now` plus `amount` units of `unit_micros`, saturating.
pub(crate) fn from_now<S>(state: &ApiState<S>, amount: i64, unit_micros: i64) -> Datetime {
    Datetime::from_unix_micros(
        now(state)
            .to_unix_micros()
            .saturating_add(amount.saturating_mul(unit_micros)),
    )
}

/// A DID from a request field the lexicon checked (`format: did`).
pub(crate) fn parse_did(s: &str, field: &str) -> Result<Did, XrpcError> {
    Did::parse(s).map_err(|e| XrpcError::invalid(format!("{field}: {e}")))
}

pub(crate) fn ok<T: Serialize>(out: T) -> XrpcResult {
    Ok(axum::Json(out).into_response())
}

/// `coop.guild.collective.create`.
pub(crate) async fn create<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    Xrpc(input): Xrpc<create::Create>,
) -> XrpcResult {
    let c = net(&state)?;
    if input.name.trim().is_empty() {
        return Err(XrpcError::invalid("a collective needs a name (--name)"));
    }
    let mut params = CharterParams::new(&input.name);
    params.purpose = input.purpose;
    if let Some(seats) = input.seats {
        params.seats = seats;
    }
    if let Some(n) = input.countersignatures {
        params.countersignatures =
            u32::try_from(n).map_err(|_| XrpcError::invalid("countersignatures: 1 to 100"))?;
    }
    let (policy, approval) = match input.admission.unwrap_or_default() {
        create::Admission::Invite => (AdmissionPolicy::InviteOnly, ApprovalMode::Steward),
        create::Admission::Approval => (AdmissionPolicy::InviteOrRequest, ApprovalMode::Steward),
        create::Admission::Vote => (AdmissionPolicy::InviteOrRequest, ApprovalMode::Vote),
    };
    params.private_prices = input.private_prices.unwrap_or(false);
    if let Some(n) = input.canaries_per_bundle {
        params.canaries_per_bundle = u32::try_from(n)
            .ok()
            .filter(|n| *n <= guild_bundle::canary::MAX_LICENSEE_CANARIES)
            .ok_or_else(|| XrpcError::invalid("canariesPerBundle: 0 to 64"))?;
    }
    params.admission_policy = policy;
    params.admission_approval = approval;
    if !input.templates.is_empty() {
        let all = make::standard_templates();
        let mut chosen = Vec::new();
        for w in &input.templates {
            let t = all
                .iter()
                .find(|t| t.id == *w)
                .ok_or_else(|| XrpcError::invalid(format!("unknown licence template {w:?}")))?;
            chosen.push(t.clone());
        }
        params.templates = chosen;
    }
    let name = params.name.clone();
    let id = c.create(params).await.map_err(explain)?;
    declare_space(&state, id, Some(name)).await;
    ok(create::Output {
        collective: id.to_string(),
    })
}

/// `coop.guild.collective.createInvite`.
pub(crate) async fn create_invite<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    Xrpc(input): Xrpc<create_invite::CreateInvite>,
) -> XrpcResult {
    let c = net(&state)?;
    let id = which(c, input.collective.as_deref()).await?;
    let expires = input
        .expires_in_days
        .map(|d| from_now(&state, d, 86_400_000_000));
    let invitee = input
        .invitee
        .as_deref()
        .map(|d| parse_did(d, "invitee"))
        .transpose()?;
    let code = c.invite(id, invitee, expires).await.map_err(explain)?;
    let invite = code.encode().map_err(|e| {
        err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            e.to_string(),
        )
    })?;
    ok(create_invite::Output {
        invite,
        collective: id.to_string(),
    })
}

/// `coop.guild.collective.join`.
pub(crate) async fn join<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    Xrpc(input): Xrpc<join::Join>,
) -> XrpcResult {
    let c = net(&state)?;
    let code = InviteCode::decode(&input.invite)
        .map_err(|e| err(StatusCode::BAD_REQUEST, "InvalidInvite", e.to_string()))?;
    let id = c.join(code).await.map_err(explain)?;
    let name = c
        .status(id)
        .await
        .ok()
        .and_then(|s| s.state.charter.as_ref().map(|ch| ch.name.clone()));
    declare_space(&state, id, name).await;
    ok(join::Output {
        collective: id.to_string(),
    })
}

/// Opens the member's repo in the collective's space with its declaration, so that records
/// can be added to it at once (and stewards replicate it). The member is in the collective
/// whatever happens here, so a failure is logged, not returned: the first `record add
/// --space` then says what is missing.
async fn declare_space<S: NodeStore>(state: &ApiState<S>, id: Cid, name: Option<String>) {
    let service = state.service.clone();
    let done =
        tokio::task::spawn_blocking(move || service.declare_space(&id, name.as_deref())).await;
    match done {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(collective = %id, error = %e, "space declaration not written"),
        Err(e) => tracing::warn!(collective = %id, error = %e, "space declaration not written"),
    }
}

/// Writes an op whose fields are built from the state.
pub(crate) async fn write(
    c: &dyn CollectiveEngine,
    id: Cid,
    kind: OpKind,
    fields: FieldsFn,
) -> XrpcResult {
    let op = c.write(id, kind, fields).await.map_err(explain)?;
    ok(OpWritten {
        op: op.to_string(),
        collective: id.to_string(),
    })
}

/// `coop.guild.collective.leave`.
pub(crate) async fn leave<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    Xrpc(input): Xrpc<leave::Leave>,
) -> XrpcResult {
    let c = net(&state)?;
    let id = which(c, input.collective.as_deref()).await?;
    write(
        c,
        id,
        OpKind::Leave,
        Box::new(|_, _| Ok(OpBody::Leave(Default::default()))),
    )
    .await
}

/// `coop.guild.collective.grantConsent` / `revokeConsent`.
async fn consent<S>(state: &ApiState<S>, input: ConsentInput, kind: OpKind) -> XrpcResult {
    let c = net(state)?;
    let id = which(c, input.collective.as_deref()).await?;
    let ConsentInput {
        templates,
        collections,
        ..
    } = input;
    let collections = collections
        .iter()
        .map(|n| Nsid::parse(n).map_err(|e| XrpcError::invalid(format!("collections: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let at = now(state);
    write(
        c,
        id,
        kind,
        Box::new(move |st, me| {
            let me = Did::parse(me).map_err(|e| EngineError::Invalid(e.to_string()))?;
            let body = make::consent(st, &me, &templates, &collections, &at);
            Ok(if kind == OpKind::ConsentGrant {
                OpBody::ConsentGrant(Box::new(body))
            } else {
                OpBody::ConsentRevoke(Box::new(body))
            })
        }),
    )
    .await
}

/// `coop.guild.collective.grantConsent`.
pub(crate) async fn grant_consent<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    Xrpc(input): Xrpc<grant_consent::GrantConsent>,
) -> XrpcResult {
    consent(&state, input, OpKind::ConsentGrant).await
}

/// `coop.guild.collective.revokeConsent`.
pub(crate) async fn revoke_consent<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    Xrpc(input): Xrpc<revoke_consent::RevokeConsent>,
) -> XrpcResult {
    consent(&state, input, OpKind::ConsentRevoke).await
}

/// `coop.guild.collective.openElection`: the op is the election's id.
pub(crate) async fn open_election<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    Xrpc(input): Xrpc<open_election::OpenElection>,
) -> XrpcResult {
    let c = net(&state)?;
    let id = which(c, input.collective.as_deref()).await?;
    let seats = input.seats;
    let candidates = input
        .candidates
        .iter()
        .map(|d| parse_did(d, "candidates"))
        .collect::<Result<Vec<_>, _>>()?;
    let closes = from_now(&state, input.closes_in_secs.unwrap_or(24 * 3600), 1_000_000);
    write(
        c,
        id,
        OpKind::ElectionOpen,
        Box::new(move |st, _| {
            let seats =
                seats.unwrap_or_else(|| st.charter.as_ref().map_or(1, |ch| i64::from(ch.seats)));
            let candidates = if candidates.is_empty() {
                st.members.keys().cloned().collect()
            } else {
                candidates
            };
            make::election_open(
                st,
                ElectionKind::Stewards,
                Some(seats),
                &candidates,
                None,
                &closes,
            )
            .map_err(|e| EngineError::Invalid(e.to_string()))
        }),
    )
    .await
}

/// `coop.guild.collective.vote`.
pub(crate) async fn vote<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    Xrpc(input): Xrpc<vote::Vote>,
) -> XrpcResult {
    let c = net(&state)?;
    let id = which(c, input.collective.as_deref()).await?;
    let election = parse_cid(&input.election, "election")?;
    let approvals: Vec<Choice> = input.approvals.iter().map(|a| Choice::parse(a)).collect();
    write(
        c,
        id,
        OpKind::Ballot,
        Box::new(move |st, me| Ok(make::ballot(st, &election, me, &approvals))),
    )
    .await
}

/// `coop.guild.collective.closeElection`: the op is a teller's seal.
pub(crate) async fn close_election<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    Xrpc(input): Xrpc<close_election::CloseElection>,
) -> XrpcResult {
    let c = net(&state)?;
    let id = which(c, input.collective.as_deref()).await?;
    let election = parse_cid(&input.election, "election")?;
    write(
        c,
        id,
        OpKind::Seal,
        Box::new(move |st, _| {
            make::seal(st, &election)
                .ok_or_else(|| EngineError::Invalid(format!("no election {election}")))
        }),
    )
    .await
}

/// `coop.guild.collective.getStatus`: members, stewards, consents, elections, agreements,
/// peers and sync state.
pub(crate) async fn get_status<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    Xrpc(params): Xrpc<get_status::GetStatus>,
) -> XrpcResult {
    let c = net(&state)?;
    let id = which(c, params.collective.as_deref()).await?;
    let s = c.status(id).await.map_err(explain)?;
    let me = state.service.did().to_string();
    let limit = params
        .limit
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let after = params
        .members_after
        .as_deref()
        .map(|d| Did::parse(d).map_err(|e| XrpcError::invalid(format!("membersAfter: {e}"))))
        .transpose()?;
    ok(status_output(
        &s,
        &me,
        Lists {
            limit,
            members_after: after.as_ref(),
            consents_of: params.consents_of.as_deref(),
        },
    ))
}

/// How much of a status's long lists to give.
#[derive(Debug, Clone, Copy)]
struct Lists<'a> {
    /// At most this many items in each of them.
    limit: usize,
    /// Members after this DID only.
    members_after: Option<&'a Did>,
    /// Only this member's consent registers.
    consents_of: Option<&'a str>,
}

fn role(r: Role) -> &'static str {
    match r {
        Role::Steward => "steward",
        Role::Member => "member",
    }
}

/// A count as the data model's integer.
fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// A status, with at most `lists.limit` items in each of its long lists (members, departed,
/// consents), the members after `lists.members_after` only, and only the consents of
/// `lists.consents_of` if it names a member.
fn status_output(s: &Status, me: &str, lists: Lists<'_>) -> get_status::Output {
    let Lists {
        limit,
        members_after,
        consents_of,
    } = lists;
    let (members, members_cursor) = members_output(&s.state, limit, members_after);
    use get_status as g;
    let st: &GovState = &s.state;
    let charter = st.charter.as_deref();
    g::Output {
        collective: s.collective.to_string(),
        name: charter.map(|c| c.name.clone()),
        you: me.to_owned(),
        member: st.members.contains_key(me),
        role: st.role(me).map(|r| role(r).to_owned()),
        members,
        member_count: count(st.members.len()),
        members_cursor,
        departed: departures_output(st, limit),
        departed_count: count(st.departed.len()),
        stewards: st.stewards().map(str::to_owned).collect(),
        quorum: count(st.quorum()),
        templates: charter.map(|c| c.templates.keys().cloned().collect()),
        open_invites: count(st.invites.len()),
        consents: consents_output(st, limit, consents_of),
        consent_count: count(st.consents.len()),
        elections: st
            .elections
            .iter()
            .map(|(id, e)| election_output(id, e))
            .collect(),
        agreements: agreements_output(st),
        peers: s.peers.clone(),
        sync: g::Sync {
            ops: count(s.ops),
            heads: s.heads.iter().map(ToString::to_string).collect(),
            pending: count(s.pending),
            wanted: count(s.wanted),
        },
        replica_refusals: s
            .replica_refusals
            .iter()
            .map(|r| g::ReplicaRefusal {
                member: r.member.to_string(),
                steward: r.steward.to_string(),
                reason: r.reason.clone(),
                at: r.at.to_string(),
            })
            .collect(),
    }
}

/// The members in a status, with their roles: at most `limit` of them, after `after` (DID
/// order) if given; and the cursor of the next page if more follow.
fn members_output(
    st: &GovState,
    limit: usize,
    after: Option<&Did>,
) -> (Vec<get_status::Member>, Option<String>) {
    let from = after.map_or(Bound::Unbounded, Bound::Excluded);
    let mut page = st
        .members
        .range::<(Bound<&Did>, Bound<&Did>), Did>((from, Bound::Unbounded));
    let members: Vec<get_status::Member> = page
        .by_ref()
        .take(limit)
        .map(|(d, m)| get_status::Member {
            did: d.to_string(),
            role: role(m.role).into(),
            since: m.since().to_string(),
        })
        .collect();
    let cursor = match (members.last(), page.next()) {
        (Some(last), Some(_)) => Some(last.did.clone()),
        _ => None,
    };
    (members, cursor)
}

/// The former members in a status: who left and who was removed, by which op.
fn departures_output(st: &GovState, limit: usize) -> Vec<get_status::Departure> {
    st.departed
        .iter()
        .take(limit)
        .map(|(d, how)| {
            let (how, op) = match how {
                Departure::Left(op) => ("left", op),
                Departure::Removed(op) => ("removed", op),
            };
            get_status::Departure {
                did: d.to_string(),
                how: how.into(),
                op: op.to_string(),
            }
        })
        .collect()
}

/// The consent register in a status.
fn consents_output(st: &GovState, limit: usize, of: Option<&str>) -> Vec<get_status::Consent> {
    let registers: Box<dyn Iterator<Item = _>> = match of {
        Some(did) => Box::new(st.consents.of(did)),
        None => Box::new(st.consents.iter()),
    };
    registers
        .take(limit)
        .map(|((d, t), c)| get_status::Consent {
            member: d.to_string(),
            template: t.to_string(),
            granted: c.granted,
            rev: c.rev,
            op: c.op().to_string(),
        })
        .collect()
}

/// One election in a status, with its certified result once there is one.
fn election_output(id: &Cid, e: &Election) -> get_status::Election {
    get_status::Election {
        id: id.to_string(),
        kind: format!("{:?}", e.kind).to_lowercase(),
        seats: u64::from(e.seats),
        candidates: e.candidates.iter().map(Did::to_string).collect(),
        tellers: e.tellers.iter().map(Did::to_string).collect(),
        closes_after: e.closes_after.as_str().to_owned(),
        voters: e
            .certified
            .as_ref()
            .map_or_else(|| count(e.ballots.len()), |c| c.voters),
        seals: count(e.seals.len()),
        certified: e.certified.as_deref().map(certified_output),
    }
}

/// An election's certified result in a status.
fn certified_output(c: &Certified) -> get_status::Certified {
    get_status::Certified {
        outcome: match c.tally.outcome {
            guild_gov::Outcome::Adopted => "adopted",
            guild_gov::Outcome::Rejected => "rejected",
            guild_gov::Outcome::NoQuorum => "no-quorum",
        }
        .into(),
        elected: c.tally.elected.iter().map(Did::to_string).collect(),
        tally: c
            .tally
            .counts
            .iter()
            .map(|(k, n)| get_status::Count {
                choice: k.to_string(),
                approvals: *n,
            })
            .collect(),
        ballots: count(c.ballots.len()),
    }
}

/// The builder agreements in a status.
fn agreements_output(st: &GovState) -> Vec<get_status::Agreement> {
    st.agreements
        .iter()
        .map(|(id, a)| get_status::Agreement {
            id: id.to_string(),
            builder: a.builder.to_string(),
            template: a.template.clone(),
            status: match a.status {
                AgreementStatus::Offered => "offered",
                AgreementStatus::Accepted(_) => "accepted",
                AgreementStatus::InForce(_) => "in-force",
            }
            .into(),
        })
        .collect()
}

/// `coop.guild.collective.getRemoteHeads`: the repo heads another member's node holds in the
/// collective's space, asked of that node over the network. A node that is no longer a member
/// is refused (`PeerRefused`).
pub(crate) async fn get_remote_heads<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    Xrpc(params): Xrpc<get_remote_heads::GetRemoteHeads>,
) -> XrpcResult {
    let c = net(&state)?;
    let id = which(c, params.collective.as_deref()).await?;
    let heads = tokio::time::timeout(Duration::from_secs(30), c.remote_heads(id, &params.peer))
        .await
        .map_err(|_| {
            err(
                StatusCode::SERVICE_UNAVAILABLE,
                "NoPeers",
                "the peer's node did not answer",
            )
        })?
        .map_err(explain)?;
    ok(get_remote_heads::Output {
        peer: params.peer,
        collective: id.to_string(),
        heads: heads
            .iter()
            .map(|h| get_remote_heads::Head {
                did: h.did.to_string(),
                rev: h.rev.clone(),
                commit: h.commit.to_string(),
                public: h.kind == guild_service::RepoKind::Public,
            })
            .collect(),
    })
}

/// `coop.guild.collective.listCollectives`.
pub(crate) async fn list<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    Xrpc(list_collectives::Params {}): Xrpc<list_collectives::ListCollectives>,
) -> XrpcResult {
    let c = net(&state)?;
    let me = state.service.did().to_string();
    let mut collectives = Vec::new();
    for id in c.collectives().await.map_err(explain)? {
        let s = c.status(id).await.map_err(explain)?;
        collectives.push(list_collectives::Collective {
            collective: id.to_string(),
            name: s.state.charter.as_ref().map(|c| c.name.clone()),
            member: s.state.members.contains_key(me.as_str()),
            members: count(s.state.members.len()),
        });
    }
    ok(list_collectives::Output { collectives })
}

/// `coop.guild.node.getPeers`: bytes in and out are what the swarm moved since the node
/// started; a peer's gossipsub score is a decimal string (the data model has no floats).
pub(crate) async fn peers<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    Xrpc(get_peers::Params {}): Xrpc<get_peers::GetPeers>,
) -> XrpcResult {
    let c = net(&state)?;
    let node = tokio::time::timeout(Duration::from_secs(5), c.peers())
        .await
        .map_err(|_| {
            err(
                StatusCode::SERVICE_UNAVAILABLE,
                "NodeStopping",
                "the swarm did not answer",
            )
        })?
        .map_err(|_| {
            err(
                StatusCode::SERVICE_UNAVAILABLE,
                "NodeStopping",
                "the swarm stopped",
            )
        })?;
    ok(get_peers::Output {
        peer: node.peer,
        listen: node.listen,
        peers: node
            .peers
            .into_iter()
            .map(|p| get_peers::Peer {
                peer: p.peer,
                did: p.did,
                addrs: p.addrs,
                score: p.score.map(|s| s.to_string()),
            })
            .collect(),
        bytes_in: node.bytes_in,
        bytes_out: node.bytes_out,
    })
}
