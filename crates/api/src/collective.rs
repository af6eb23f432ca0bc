//! Guild's collective endpoints (`coop.guild.collective.*`, `coop.guild.node.getPeers`): the
//! member's daily commands, served by the node's collectives engine (`guild-net`). Every one
//! needs the admin token. Handlers parse and shape; the rules live in `guild-gov`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use cid::Cid;
use guild_core::syntax::Datetime;
use guild_gov::make::{self, CharterParams, InviteCode};
use guild_gov::{
    AgreementStatus, Departure, ElectionKind, OpKind, Reason, Role, State as GovState,
};
use guild_net::{Engine, EngineError, NetHandle};
use serde_json::{Value, json};

use crate::server::{ApiState, Params, XrpcError, check_auth, query_params};

type XrpcResult = Result<axum::response::Response, XrpcError>;

/// The networking side of the node, when it runs one.
#[derive(Debug, Clone)]
pub struct Collectives {
    /// The collectives engine.
    pub engine: Engine,
    /// The swarm (for the peer list).
    pub net: NetHandle,
}

fn err(status: StatusCode, error: &'static str, message: impl Into<String>) -> XrpcError {
    XrpcError::new(status, error, message)
}

/// An engine error, in words a member can act on.
fn explain(e: EngineError) -> XrpcError {
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

fn net(state: &ApiState<impl Sized>) -> Result<&Collectives, XrpcError> {
    state.collectives.as_ref().ok_or_else(|| {
        err(
            StatusCode::NOT_IMPLEMENTED,
            "MethodNotImplemented",
            "this node runs without networking",
        )
    })
}

fn body_str<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.get(name).and_then(Value::as_str)
}

fn body_strings(body: &Value, name: &str) -> Result<Vec<String>, XrpcError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| XrpcError::invalid(format!("{name}: strings expected")))
            })
            .collect(),
        Some(_) => Err(XrpcError::invalid(format!("{name}: a list expected"))),
    }
}

fn parse_cid(s: &str, what: &str) -> Result<Cid, XrpcError> {
    guild_core::syntax::parse_cid_str(s).map_err(|e| XrpcError::invalid(format!("{what}: {e}")))
}

/// A required CID field of the body.
fn required_cid(body: &Value, name: &str) -> Result<Cid, XrpcError> {
    let s = body_str(body, name).ok_or_else(|| XrpcError::invalid(format!("{name} is missing")))?;
    parse_cid(s, name)
}

/// The collective named, or the only one this node holds.
async fn which(c: &Collectives, named: Option<&str>) -> Result<Cid, XrpcError> {
    if let Some(s) = named {
        return parse_cid(s, "collective");
    }
    let all = c.engine.collectives().await.map_err(explain)?;
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

fn now() -> Datetime {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    Datetime::from_unix_micros(micros)
}

fn ok(v: Value) -> XrpcResult {
    Ok(axum::Json(v).into_response())
}

async fn json_body<S>(
    state: &ApiState<S>,
    headers: &HeaderMap,
    body: axum::body::Bytes,
) -> Result<Value, XrpcError> {
    check_auth(state, headers)?;
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&body).map_err(|e| XrpcError::invalid(format!("body is not JSON: {e}")))
}

/// `coop.guild.collective.create`: `{name, purpose?, seats?, admission?: invite|approval|vote,
/// templates?: [id]}` → `{collective}`.
pub(crate) async fn create<S: crate::service::NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> XrpcResult {
    let body = json_body(&state, &headers, body).await?;
    let c = net(&state)?;
    let name = body_str(&body, "name")
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| XrpcError::invalid("a collective needs a name (--name)"))?;
    let mut params = CharterParams::new(name);
    params.purpose = body_str(&body, "purpose").map(str::to_owned);
    if let Some(seats) = body.get("seats") {
        let n = seats
            .as_i64()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| XrpcError::invalid("seats must be between 1 and 100"))?;
        params.seats = n;
    }
    match body_str(&body, "admission").unwrap_or("invite") {
        "invite" => {
            params.admission_policy = "invite-only".into();
            params.admission_approval = "steward".into();
        }
        "approval" => {
            params.admission_policy = "invite-or-request".into();
            params.admission_approval = "steward".into();
        }
        "vote" => {
            params.admission_policy = "invite-or-request".into();
            params.admission_approval = "vote".into();
        }
        other => {
            return Err(XrpcError::invalid(format!(
                "admission must be invite, approval or vote, not {other:?}"
            )));
        }
    }
    let wanted = body_strings(&body, "templates")?;
    if !wanted.is_empty() {
        let all = make::standard_templates();
        let mut chosen = Vec::new();
        for w in &wanted {
            let t = all
                .iter()
                .find(|t| matches!(t, guild_core::Ipld::Map(m) if m.get("id") == Some(&guild_core::Ipld::String(w.clone()))))
                .ok_or_else(|| XrpcError::invalid(format!("unknown licence template {w:?}")))?;
            chosen.push(t.clone());
        }
        params.templates = chosen;
    }
    let name = params.name.clone();
    let id = c.engine.create(params).await.map_err(explain)?;
    declare_space(&state, id, Some(name)).await;
    ok(json!({"collective": id.to_string()}))
}

/// `coop.guild.collective.createInvite`: `{collective?, invitee?, expiresInDays?}` →
/// `{invite, collective}`.
pub(crate) async fn create_invite<S: crate::service::NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> XrpcResult {
    let body = json_body(&state, &headers, body).await?;
    let c = net(&state)?;
    let id = which(c, body_str(&body, "collective")).await?;
    let invitee = body_str(&body, "invitee").map(str::to_owned);
    if let Some(d) = &invitee {
        guild_core::syntax::Did::parse(d)
            .map_err(|e| XrpcError::invalid(format!("invitee: {e}")))?;
    }
    let expires = match body.get("expiresInDays").and_then(Value::as_i64) {
        Some(d) if d > 0 => Some(Datetime::from_unix_micros(
            now()
                .to_unix_micros()
                .saturating_add(d.saturating_mul(86_400_000_000)),
        )),
        Some(_) => return Err(XrpcError::invalid("expiresInDays must be positive")),
        None => None,
    };
    let code = c
        .engine
        .invite(id, invitee, expires)
        .await
        .map_err(explain)?;
    ok(json!({"invite": code.encode(), "collective": id.to_string()}))
}

/// `coop.guild.collective.join`: `{invite}` → `{collective}`.
pub(crate) async fn join<S: crate::service::NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> XrpcResult {
    let body = json_body(&state, &headers, body).await?;
    let c = net(&state)?;
    let text = body_str(&body, "invite").ok_or_else(|| XrpcError::invalid("invite is missing"))?;
    let code = InviteCode::decode(text)
        .map_err(|e| err(StatusCode::BAD_REQUEST, "InvalidInvite", e.to_string()))?;
    let id = c.engine.join(code).await.map_err(explain)?;
    let name = c
        .engine
        .status(id)
        .await
        .ok()
        .and_then(|s| s.state.charter.as_ref().map(|ch| ch.name.clone()));
    declare_space(&state, id, name).await;
    ok(json!({"collective": id.to_string()}))
}

/// Opens the member's repo in the collective's space with its declaration, so that records
/// can be added to it at once (and stewards replicate it). The member is in the collective
/// whatever happens here, so a failure is logged, not returned: the first `record add
/// --space` then says what is missing.
async fn declare_space<S: crate::service::NodeStore>(
    state: &ApiState<S>,
    id: Cid,
    name: Option<String>,
) {
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
async fn write(c: &Collectives, id: Cid, kind: OpKind, fields: guild_net::FieldsFn) -> XrpcResult {
    let op = c.engine.write(id, kind, fields).await.map_err(explain)?;
    ok(json!({"op": op.to_string(), "collective": id.to_string()}))
}

/// `coop.guild.collective.leave`: `{collective?}` → `{op}`.
pub(crate) async fn leave<S: crate::service::NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> XrpcResult {
    let body = json_body(&state, &headers, body).await?;
    let c = net(&state)?;
    let id = which(c, body_str(&body, "collective")).await?;
    write(
        c,
        id,
        OpKind::Leave,
        Box::new(|_, _| Ok(Default::default())),
    )
    .await
}

/// `coop.guild.collective.grantConsent` / `revokeConsent`: `{collective?, templates,
/// collections?}` → `{op}`.
async fn consent<S>(
    state: &ApiState<S>,
    headers: &HeaderMap,
    body: axum::body::Bytes,
    kind: OpKind,
) -> XrpcResult {
    let body = json_body(state, headers, body).await?;
    let c = net(state)?;
    let id = which(c, body_str(&body, "collective")).await?;
    let templates = body_strings(&body, "templates")?;
    if templates.is_empty() {
        return Err(XrpcError::invalid(
            "name at least one licence template (--template)",
        ));
    }
    let collections = body_strings(&body, "collections")?;
    for n in &collections {
        guild_core::syntax::Nsid::parse(n)
            .map_err(|e| XrpcError::invalid(format!("collection {n:?}: {e}")))?;
    }
    let at = now();
    write(
        c,
        id,
        kind,
        Box::new(move |st, me| Ok(make::consent(st, me, &templates, &collections, &at))),
    )
    .await
}

pub(crate) async fn grant_consent<S: crate::service::NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> XrpcResult {
    consent(&state, &headers, body, OpKind::ConsentGrant).await
}

pub(crate) async fn revoke_consent<S: crate::service::NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> XrpcResult {
    consent(&state, &headers, body, OpKind::ConsentRevoke).await
}

/// `coop.guild.collective.openElection`: `{collective?, seats, candidates, closesInSecs?}` →
/// `{op}` (the election's id).
pub(crate) async fn open_election<S: crate::service::NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> XrpcResult {
    let body = json_body(&state, &headers, body).await?;
    let c = net(&state)?;
    let id = which(c, body_str(&body, "collective")).await?;
    let candidates = body_strings(&body, "candidates")?;
    let seats = body.get("seats").and_then(Value::as_i64);
    let secs = body
        .get("closesInSecs")
        .and_then(Value::as_i64)
        .unwrap_or(24 * 3600);
    if secs < 0 {
        return Err(XrpcError::invalid("closesInSecs must not be negative"));
    }
    let closes = Datetime::from_unix_micros(
        now()
            .to_unix_micros()
            .saturating_add(secs.saturating_mul(1_000_000)),
    );
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
            Ok(make::election_open(
                st,
                ElectionKind::Stewards,
                Some(seats),
                &candidates,
                None,
                &closes,
            ))
        }),
    )
    .await
}

/// `coop.guild.collective.vote`: `{collective?, election, approvals}` → `{op}`.
pub(crate) async fn vote<S: crate::service::NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> XrpcResult {
    let body = json_body(&state, &headers, body).await?;
    let c = net(&state)?;
    let id = which(c, body_str(&body, "collective")).await?;
    let election = required_cid(&body, "election")?;
    let approvals = body_strings(&body, "approvals")?;
    write(
        c,
        id,
        OpKind::Ballot,
        Box::new(move |st, me| Ok(make::ballot(st, &election, me, &approvals))),
    )
    .await
}

/// `coop.guild.collective.closeElection`: `{collective?, election}` → `{op}` (a teller's seal).
pub(crate) async fn close_election<S: crate::service::NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> XrpcResult {
    let body = json_body(&state, &headers, body).await?;
    let c = net(&state)?;
    let id = which(c, body_str(&body, "collective")).await?;
    let election = required_cid(&body, "election")?;
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

/// `coop.guild.collective.getStatus?collective=`: members, stewards, consents, elections,
/// agreements, peers and sync state.
pub(crate) async fn get_status<S: crate::service::NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> XrpcResult {
    check_auth(&state, &headers)?;
    let c = net(&state)?;
    let p = query_params(raw);
    let named = p
        .iter()
        .find(|(k, _)| k == "collective")
        .map(|(_, v)| v.as_str());
    let id = which(c, named).await?;
    let s = c.engine.status(id).await.map_err(explain)?;
    let me = state.service.did().to_string();
    ok(status_json(&s, &me))
}

fn role(r: Role) -> &'static str {
    match r {
        Role::Steward => "steward",
        Role::Member => "member",
    }
}

fn status_json(s: &guild_net::Status, me: &str) -> Value {
    let st: &GovState = &s.state;
    let charter = st.charter.as_deref();
    let members: Vec<Value> = st
        .members
        .iter()
        .map(|(d, m)| json!({"did": d, "role": role(m.role), "since": m.since.to_string()}))
        .collect();
    let departed: Vec<Value> = st
        .departed
        .iter()
        .map(|(d, how)| match how {
            Departure::Left(op) => json!({"did": d, "how": "left", "op": op.to_string()}),
            Departure::Removed(op) => json!({"did": d, "how": "removed", "op": op.to_string()}),
        })
        .collect();
    let consents: Vec<Value> = st
        .consents
        .iter()
        .map(|((d, t), c)| {
            json!({"member": d, "template": t, "granted": c.granted, "rev": c.rev, "op": c.op.to_string()})
        })
        .collect();
    let elections: Vec<Value> = st
        .elections
        .iter()
        .map(|(id, e)| {
            let certified = e.certified.as_ref().map(|c| {
                json!({
                    "outcome": match c.tally.outcome {
                        guild_gov::Outcome::Adopted => "adopted",
                        guild_gov::Outcome::Rejected => "rejected",
                        guild_gov::Outcome::NoQuorum => "no-quorum",
                    },
                    "elected": c.tally.elected,
                    "tally": c.tally.counts.iter().map(|(k, n)| json!({"choice": k, "approvals": n})).collect::<Vec<_>>(),
                    "ballots": c.ballots.len(),
                })
            });
            json!({
                "id": id.to_string(),
                "kind": format!("{:?}", e.kind).to_lowercase(),
                "seats": e.seats,
                "candidates": *e.candidates,
                "tellers": *e.tellers,
                "closesAfter": e.closes_after.as_str(),
                "voters": e.ballots.len(),
                "seals": e.seals.len(),
                "certified": certified,
            })
        })
        .collect();
    let agreements: Vec<Value> = st
        .agreements
        .iter()
        .map(|(id, a)| {
            let status = match a.status {
                AgreementStatus::Offered => "offered",
                AgreementStatus::Accepted(_) => "accepted",
                AgreementStatus::InForce(_) => "in-force",
            };
            json!({"id": id.to_string(), "builder": a.builder, "template": a.template, "status": status})
        })
        .collect();
    json!({
        "collective": s.collective.to_string(),
        "name": charter.map(|c| c.name.clone()),
        "you": me,
        "member": st.members.contains_key(me),
        "role": st.role(me).map(role),
        "members": members,
        "departed": departed,
        "stewards": st.stewards().collect::<Vec<_>>(),
        "quorum": st.quorum(),
        "templates": charter.map(|c| c.templates.keys().cloned().collect::<Vec<_>>()),
        "openInvites": st.invites.len(),
        "consents": consents,
        "elections": elections,
        "agreements": agreements,
        "peers": s.peers,
        "sync": {
            "ops": s.ops,
            "heads": s.heads.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "pending": s.pending,
            "wanted": s.wanted,
        },
    })
}

/// `coop.guild.collective.getRemoteHeads?peer=DID[&collective=ID]`: `{peer, heads: [{did, rev,
/// commit}]}`, the repo heads another member's node holds in the collective's space, asked of
/// that node over the network. A node that is no longer a member is refused (`PeerRefused`).
pub(crate) async fn get_remote_heads<S: crate::service::NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> XrpcResult {
    check_auth(&state, &headers)?;
    let c = net(&state)?;
    let p = Params::parse(raw);
    let peer = p.req("peer")?;
    guild_core::syntax::Did::parse(peer).map_err(|e| XrpcError::invalid(format!("peer: {e}")))?;
    let id = which(c, p.opt("collective")).await?;
    let heads = tokio::time::timeout(Duration::from_secs(30), c.engine.remote_heads(id, peer))
        .await
        .map_err(|_| {
            err(
                StatusCode::SERVICE_UNAVAILABLE,
                "NoPeers",
                "the peer's node did not answer",
            )
        })?
        .map_err(explain)?;
    let heads: Vec<Value> = heads
        .iter()
        .map(|h| json!({"did": h.did, "rev": h.rev, "commit": h.commit.to_string()}))
        .collect();
    ok(json!({"peer": peer, "collective": id.to_string(), "heads": heads}))
}

/// `coop.guild.collective.listCollectives`: `{collectives: [{collective, name, member}]}`.
pub(crate) async fn list<S: crate::service::NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    headers: HeaderMap,
) -> XrpcResult {
    check_auth(&state, &headers)?;
    let c = net(&state)?;
    let me = state.service.did().to_string();
    let mut out = Vec::new();
    for id in c.engine.collectives().await.map_err(explain)? {
        let s = c.engine.status(id).await.map_err(explain)?;
        out.push(json!({
            "collective": id.to_string(),
            "name": s.state.charter.as_ref().map(|c| c.name.clone()),
            "member": s.state.members.contains_key(&me),
            "members": s.state.members.len(),
        }));
    }
    ok(json!({"collectives": out}))
}

/// `coop.guild.node.getPeers`: `{peer, listen, peers: [{peer, did, addrs, score}], bytesIn,
/// bytesOut}` (bytes the swarm moved since the node started).
pub(crate) async fn peers<S: crate::service::NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    headers: HeaderMap,
) -> XrpcResult {
    check_auth(&state, &headers)?;
    let c = net(&state)?;
    let peers = tokio::time::timeout(Duration::from_secs(5), c.net.peers())
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
    let listen = c.net.listen_addrs().await.unwrap_or_default();
    let peers: Vec<Value> = peers
        .into_iter()
        .map(|p| {
            json!({
                "peer": p.peer.to_string(),
                "did": p.did,
                "addrs": p.addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "score": p.score,
            })
        })
        .collect();
    let traffic = c.net.traffic();
    ok(json!({
        "peer": c.net.peer_id().to_string(),
        "listen": listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "peers": peers,
        "bytesIn": traffic.bytes_in,
        "bytesOut": traffic.bytes_out,
    }))
}
