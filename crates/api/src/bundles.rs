//! Guild's bundle endpoints (`coop.guild.bundle.*`) on a steward's node: propose a bundle,
//! list the collective's bundles, read the revocation notices, download a sealed bundle's
//! They call the node's [`Stewardship`]; the rules are guild-gov's and guild-bundle's.
//! Every one needs the admin token; the download, which builders use too, is in
//! [`crate::feeds`].

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use guild_gov::body::{BundleKind, Token as _};
use guild_service::{NodeStore, Stewardship, StewardshipError};

use crate::collective::{err, explain, net, ok, parse_cid, which};
use crate::methods::bundle::{list_bundles, list_revocations, propose_bundle};
use crate::methods::collective::OpWritten;
use crate::server::{ApiState, XrpcError};
use crate::validation::Xrpc;

type XrpcResult = Result<axum::response::Response, XrpcError>;

/// The node's bundle work, when it runs networking.
pub type Bundles<S> = Arc<Stewardship<S>>;

fn desk<S>(state: &ApiState<S>) -> Result<&Stewardship<S>, XrpcError> {
    state.bundles.as_deref().ok_or_else(|| {
        err(
            StatusCode::NOT_IMPLEMENTED,
            "MethodNotImplemented",
            "this node runs without networking",
        )
    })
}

pub(crate) fn failed(e: StewardshipError) -> XrpcError {
    match e {
        StewardshipError::Engine(e) => explain(e),
        StewardshipError::Bundle(e) => XrpcError::invalid(e.to_string()),
        StewardshipError::Payout(e) => XrpcError::invalid(e.to_string()),
        StewardshipError::NotFound(cid) => err(
            StatusCode::NOT_FOUND,
            "BundleNotFound",
            format!("no sealed bundle {cid} on this node"),
        ),
        StewardshipError::Io(m) => err(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", m),
        e @ StewardshipError::Voided { .. } => {
            err(StatusCode::NOT_FOUND, "BundleNotFound", e.to_string())
        }
    }
}

/// `coop.guild.bundle.proposeBundle`.
pub(crate) async fn propose<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    Xrpc(input): Xrpc<propose_bundle::ProposeBundle>,
) -> XrpcResult {
    let id = which(net(&state)?, input.collective.as_deref()).await?;
    let agreement = parse_cid(&input.agreement, "agreement")?;
    let kind = match input.kind.as_deref() {
        None => BundleKind::Training,
        Some(k) => BundleKind::from_wire(k).ok_or_else(|| {
            XrpcError::invalid(format!("kind: {k:?} is neither training nor evaluation"))
        })?,
    };
    let op = desk(&state)?
        .propose(id, agreement, kind, input.note)
        .await
        .map_err(failed)?;
    ok(OpWritten {
        op: op.to_string(),
        collective: id.to_string(),
    })
}

/// `coop.guild.bundle.listBundles`.
pub(crate) async fn list<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    Xrpc(params): Xrpc<list_bundles::ListBundles>,
) -> XrpcResult {
    let id = which(net(&state)?, params.collective.as_deref()).await?;
    let bundles = desk(&state)?.list(id).await.map_err(failed)?;
    ok(list_bundles::Output {
        collective: id.to_string(),
        bundles: bundles
            .into_iter()
            .map(|b| list_bundles::BundleView {
                proposal: b.proposal.to_string(),
                agreement: b.agreement.to_string(),
                template: b.template,
                kind: b.kind,
                proposed_by: b.proposed_by.to_string(),
                proposed_at: b.proposed_at.to_string(),
                status: b.status.as_str().to_owned(),
                manifest: b.manifest.map(|m| m.to_string()),
                computed: b.computed.map(|m| m.to_string()),
                approvals: b
                    .approvals
                    .into_iter()
                    .map(|(d, m)| list_bundles::Approval {
                        steward: d.to_string(),
                        manifest: m.to_string(),
                    })
                    .collect(),
                quorum: b.quorum as u64,
                records: b.records.map(|r| r.0),
                authors: b.records.map(|r| r.1),
                car_bytes: b.car.map(|c| c.1),
                note: b.note,
                builder: b.builder.map(|d| d.to_string()),
                mine: b.mine.map(|m| list_bundles::MyPart {
                    records: m.records,
                    paths: m.paths,
                    estimate: m
                        .estimate
                        .map(|(method, value)| list_bundles::Estimate { method, value }),
                }),
                receipt: b.receipt.map(|r| r.to_string()),
            })
            .collect(),
    })
}

/// `coop.guild.bundle.listRevocations`.
pub(crate) async fn revocations<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    Xrpc(params): Xrpc<list_revocations::ListRevocations>,
) -> XrpcResult {
    let id = which(net(&state)?, params.collective.as_deref()).await?;
    let notices = desk(&state)?.revocation_notices(id).await.map_err(failed)?;
    ok(list_revocations::Output {
        collective: id.to_string(),
        notices: notices
            .into_iter()
            .map(|n| list_revocations::Notice {
                revocation: n.revocation.to_string(),
                member: n.member.to_string(),
                template: n.template,
                at: n.at.to_string(),
                bundle: n.bundle.to_string(),
                agreement: n.agreement.to_string(),
                records: n
                    .records
                    .into_iter()
                    .map(|(uri, cid)| list_revocations::Record {
                        uri,
                        cid: cid.to_string(),
                    })
                    .collect(),
                receipt: n.receipt.map(|r| r.to_string()),
            })
            .collect(),
    })
}

/// `coop.guild.payout.bookStatement`.
pub(crate) async fn book_statement<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    Xrpc(input): Xrpc<crate::methods::payout::book_statement::BookStatement>,
) -> XrpcResult {
    use crate::methods::payout::book_statement as m;
    let id = which(net(&state)?, input.collective.as_deref()).await?;
    let agreement = parse_cid(&input.agreement, "agreement")?;
    let basis_text = input.basis.as_deref().unwrap_or("estimates:group-shapley");
    let basis = guild_payout::Basis::parse(basis_text).ok_or_else(|| {
        XrpcError::invalid(format!(
            "basis: {basis_text:?} is neither estimates:<method> nor records"
        ))
    })?;
    let (op, statement) = desk(&state)?
        .book_statement(id, agreement, input.period, input.total, basis)
        .await
        .map_err(failed)?;
    ok(m::Output {
        op: op.to_string(),
        collective: id.to_string(),
        statement,
    })
}

/// `coop.guild.payout.listStatements`.
pub(crate) async fn list_statements<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    Xrpc(params): Xrpc<crate::methods::payout::list_statements::ListStatements>,
) -> XrpcResult {
    use crate::methods::payout::list_statements as m;
    let id = which(net(&state)?, params.collective.as_deref()).await?;
    let all = desk(&state)?.statements(id).await.map_err(failed)?;
    ok(m::Output {
        collective: id.to_string(),
        statements: all
            .into_iter()
            .filter(|v| {
                params
                    .period
                    .as_ref()
                    .is_none_or(|p| &v.body.period.id == p)
            })
            .map(|v| m::StatementView {
                statement: v.body,
                builder: v.builder.map(|b| b.to_string()),
                published_by: v
                    .by
                    .into_iter()
                    .map(|(steward, op)| m::Publication {
                        steward: steward.to_string(),
                        op: op.to_string(),
                    })
                    .collect(),
            })
            .collect(),
    })
}
