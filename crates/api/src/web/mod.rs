//! The node's web pages: server-rendered HTML (maud, compiled into the binary; the stylesheet
//! embedded), readable without JavaScript.
//!
//! - `/contracts` (public, on the admin address and on the public address): the collective's
//!   agreements, in force and past, with each template's plain summary; prices unless the
//!   charter keeps them private.
//! - `/dashboard/…` (the admin address only, which is loopback by default; refused from any
//!   other peer address): the member's overview, works, consent (grant and revoke, with a
//!   confirmation), collective, bundles and statements. Opened with a one-time login link that
//!   `guild dashboard` prints ([`login`]); live updates by server-sent events.
//!
//! Every page reads, and every action writes, through the same XRPC methods the CLI calls
//! (an in-process request to the node's own router, with the admin token for the dashboard
//! and without it for public pages, which use it only to learn the node's own DID): no rule
//! lives only in a page.

mod charts;
pub mod login;
mod pages;
mod snapshot;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Query, RawForm, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use futures::Stream;
use guild_core::syntax::Did;
use guild_service::Clock;
use serde::Deserialize;
use serde_json::Value;
use tower::ServiceExt as _;

use crate::methods::{Kind, Method};
pub use login::{LoginError, Sessions, login_code};

/// The largest XRPC answer a page reads.
const MAX_ANSWER: usize = 64 << 20;

/// What the pages share: the node's XRPC router (called in process), the admin token, the
/// clock, the dashboard's sessions.
pub struct Web {
    api: Router,
    admin_token: String,
    clock: Clock,
    sessions: Sessions,
    /// The commons index at the public repos' last commits read.
    commons: std::sync::Mutex<Option<Arc<CommonsIndex>>>,
    /// Each public repo's part of it, by DID.
    repo_commons: std::sync::Mutex<std::collections::HashMap<String, Arc<RepoCommons>>>,
    /// The commons snapshot last assembled (held while assembling: one at a time).
    snapshot: tokio::sync::Mutex<Option<Arc<snapshot::Snapshot>>>,
}

/// Why a page could not be shown.
#[derive(Debug)]
pub(crate) enum PageError {
    /// An XRPC method refused or failed.
    Xrpc {
        status: StatusCode,
        error: String,
        message: String,
    },
    /// Not logged in (or the session expired).
    Login,
    /// A login link refused.
    Link(LoginError),
    /// From a peer address that is not loopback.
    NotLocal,
    /// A form without its session's token.
    Form(String),
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            PageError::Xrpc {
                status,
                error,
                message,
            } => (status, error, message),
            PageError::Login => {
                return (StatusCode::UNAUTHORIZED, pages::html(pages::login_needed()))
                    .into_response();
            }
            PageError::Link(e) => (
                StatusCode::UNAUTHORIZED,
                "Login link refused".into(),
                e.to_string(),
            ),
            PageError::NotLocal => (
                StatusCode::FORBIDDEN,
                "Loopback only".into(),
                "the dashboard answers on the node's own machine only".into(),
            ),
            PageError::Form(m) => (StatusCode::BAD_REQUEST, "Form refused".into(), m),
        };
        (status, pages::html(pages::error(&title, &message))).into_response()
    }
}

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Web").finish_non_exhaustive()
    }
}

impl Web {
    /// Pages over `api` (the node's full XRPC router).
    pub fn new(api: Router, admin_token: String, clock: Clock) -> Arc<Web> {
        Arc::new(Web {
            api,
            admin_token,
            clock,
            sessions: Sessions::default(),
            commons: std::sync::Mutex::new(None),
            repo_commons: std::sync::Mutex::new(std::collections::HashMap::new()),
            snapshot: tokio::sync::Mutex::new(None),
        })
    }

    /// Calls a typed method in process.
    async fn call<M: Method>(&self, input: &M::Input, admin: bool) -> Result<M::Output, PageError> {
        let bytes = self.send(M::NSID, M::KIND, input, admin).await?;
        serde_json::from_slice(&bytes).map_err(|e| PageError::Xrpc {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "InternalServerError".into(),
            message: format!("{}: {e}", M::NSID),
        })
    }

    /// Calls a query by NSID with string parameters; its JSON.
    async fn query(&self, nsid: &str, params: &[(&str, &str)]) -> Result<Value, PageError> {
        let bytes = self.send(nsid, Kind::Query, &params, true).await?;
        serde_json::from_slice(&bytes).map_err(|e| PageError::Xrpc {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "InternalServerError".into(),
            message: format!("{nsid}: {e}"),
        })
    }

    async fn send<I: serde::Serialize + ?Sized>(
        &self,
        nsid: &str,
        kind: Kind,
        input: &I,
        admin: bool,
    ) -> Result<bytes::Bytes, PageError> {
        let internal = |message: String| PageError::Xrpc {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "InternalServerError".into(),
            message,
        };
        let mut req = match kind {
            Kind::Query => {
                let q = serde_urlencoded::to_string(input).map_err(|e| internal(e.to_string()))?;
                let uri = if q.is_empty() {
                    format!("/xrpc/{nsid}")
                } else {
                    format!("/xrpc/{nsid}?{q}")
                };
                Request::get(uri).body(Body::empty())
            }
            Kind::Procedure => {
                let body = serde_json::to_vec(input).map_err(|e| internal(e.to_string()))?;
                Request::post(format!("/xrpc/{nsid}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body))
            }
        }
        .map_err(|e| internal(e.to_string()))?;
        if admin {
            let value = HeaderValue::from_str(&format!("Bearer {}", self.admin_token))
                .map_err(|e| internal(e.to_string()))?;
            req.headers_mut().insert(header::AUTHORIZATION, value);
        }
        let resp = self
            .api
            .clone()
            .oneshot(req)
            .await
            .map_err(|e: Infallible| internal(e.to_string()))?;
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), MAX_ANSWER)
            .await
            .map_err(|e| internal(e.to_string()))?;
        if status.is_success() {
            return Ok(bytes);
        }
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Err(PageError::Xrpc {
            status,
            error: body["error"].as_str().unwrap_or("Error").to_owned(),
            message: body["message"].as_str().unwrap_or("").to_owned(),
        })
    }

    fn now(&self) -> i64 {
        self.clock.now_micros()
    }
}

/// The public pages (`/contracts`, `/commons` with its licences' forms, `robots.txt`,
/// `/.well-known/tdmrep.json`, the stylesheet), for the admin and the public address.
pub fn public_routes(web: Arc<Web>) -> Router {
    Router::new()
        .route("/contracts", get(contracts))
        .route("/commons", get(commons))
        .route("/commons/by-licence/{id}", get(commons_by_licence))
        .route("/commons/licences/{id}/{version}/{file}", get(licence_form))
        .route("/commons/commons-snapshot.car", get(snapshot::car))
        .route("/commons/snapshot/croissant.json", get(snapshot::croissant))
        .route("/commons/snapshot/README.md", get(snapshot::card))
        .route("/robots.txt", get(robots))
        .route("/.well-known/tdmrep.json", get(tdmrep))
        .route("/assets/guild.css", get(stylesheet))
        .with_state(web)
}

/// Every page: the public ones and the dashboard (the admin address only).
pub fn routes(web: Arc<Web>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard") }))
        .route("/dashboard/login", get(login))
        .route("/dashboard/logout", axum::routing::post(logout))
        .route("/dashboard", get(overview))
        .route("/dashboard/works", get(works).post(works_post))
        .route("/dashboard/consent", get(consent).post(consent_post))
        .route("/dashboard/collective", get(collective))
        .route("/dashboard/bundles", get(bundles))
        .route("/dashboard/statements", get(statements))
        .route("/dashboard/events", get(events))
        .with_state(web.clone())
        .merge(public_routes(web))
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        pages::CSS,
    )
        .into_response()
}

/// Which collective a page shows (`?collective=`; default: the node's only one), and which
/// page of its members (`?after=`: the members after this DID; the collective page's "next"
/// link).
#[derive(Debug, Default, Deserialize)]
struct Which {
    collective: Option<String>,
    after: Option<String>,
}

async fn contracts(
    State(web): State<Arc<Web>>,
    Query(w): Query<Which>,
) -> Result<Response, PageError> {
    use crate::methods::agreement::list_agreements as la;
    let list = web
        .call::<la::ListAgreements>(
            &la::Params {
                collective: w.collective,
            },
            false,
        )
        .await?;
    Ok(pages::html(pages::contracts(&list)).into_response())
}

/// The session of a dashboard request: from a loopback peer, with a live session cookie.
fn session(
    web: &Web,
    peer: Option<&ConnectInfo<SocketAddr>>,
    headers: &HeaderMap,
) -> Result<String, PageError> {
    local(peer)?;
    let id = cookie(headers, login::COOKIE).ok_or(PageError::Login)?;
    if web.sessions.valid(&id, web.now()) {
        Ok(id)
    } else {
        Err(PageError::Login)
    }
}

fn local(peer: Option<&ConnectInfo<SocketAddr>>) -> Result<(), PageError> {
    match peer {
        Some(ConnectInfo(a)) if !a.ip().is_loopback() => Err(PageError::NotLocal),
        _ => Ok(()),
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

type Peer = Option<axum::Extension<ConnectInfo<SocketAddr>>>;

fn peer_of(p: &Peer) -> Option<&ConnectInfo<SocketAddr>> {
    p.as_ref().map(|axum::Extension(c)| c)
}

#[derive(Deserialize)]
struct Code {
    code: String,
}

async fn login(
    State(web): State<Arc<Web>>,
    peer: Peer,
    Query(c): Query<Code>,
) -> Result<Response, PageError> {
    local(peer_of(&peer))?;
    let id = web
        .sessions
        .open(&web.admin_token, &c.code, web.now())
        .map_err(PageError::Link)?;
    let cookie = format!(
        "{}={id}; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age={}",
        login::COOKIE,
        login::SESSION_TTL_MICROS / 1_000_000
    );
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/dashboard".to_owned()),
            (header::SET_COOKIE, cookie),
        ],
    )
        .into_response())
}

async fn logout(
    State(web): State<Arc<Web>>,
    peer: Peer,
    headers: HeaderMap,
    RawForm(form): RawForm,
) -> Result<Response, PageError> {
    let id = session(&web, peer_of(&peer), &headers)?;
    let f = Fields::parse(&form);
    check_form(&web, &id, &f)?;
    web.sessions.close(&id);
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/dashboard".to_owned()),
            (
                header::SET_COOKIE,
                format!("{}=; Path=/dashboard; Max-Age=0", login::COOKIE),
            ),
        ],
    )
        .into_response())
}

/// A form's fields (repeated names kept in order).
struct Fields(Vec<(String, String)>);

impl Fields {
    fn parse(raw: &[u8]) -> Fields {
        Fields(form_urlencoded::parse(raw).into_owned().collect())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn check_form(web: &Web, session: &str, f: &Fields) -> Result<(), PageError> {
    match f.get("csrf") {
        Some(t) if Sessions::form_token_ok(&web.admin_token, session, t) => Ok(()),
        _ => Err(PageError::Form(
            "this form is not from this session's pages (reload the page and try again)".into(),
        )),
    }
}

/// What every dashboard page shows in its frame.
pub(crate) struct Frame {
    pub did: String,
    pub collective: Option<String>,
    pub csrf: String,
}

async fn frame(
    web: &Web,
    session: &str,
    which: &Which,
) -> Result<
    (
        Frame,
        Option<crate::methods::collective::get_status::Output>,
    ),
    PageError,
> {
    use crate::methods::collective::get_status as gs;
    use crate::methods::node::get_status as ns;
    let node = web.call::<ns::GetStatus>(&ns::Params {}, true).await?;
    let status = web
        .call::<gs::GetStatus>(
            &gs::Params {
                collective: which.collective.clone(),
                // A page lists one page of members and only this node's member's consents: a
                // collective of 50 000 members would otherwise be megabytes a page.
                limit: Some(pages::MEMBERS_LISTED),
                // Only the collective page pages its members (and refuses an `after` that is
                // not a DID); any other page ignores the parameter.
                members_after: which.after.clone().filter(|a| Did::parse(a).is_ok()),
                consents_of: Some(node.did.clone()),
            },
            true,
        )
        .await
        .ok();
    Ok((
        Frame {
            did: node.did,
            collective: status.as_ref().map(|s| s.collective.clone()),
            csrf: Sessions::form_token(&web.admin_token, session),
        },
        status,
    ))
}

async fn overview(
    State(web): State<Arc<Web>>,
    peer: Peer,
    headers: HeaderMap,
    Query(w): Query<Which>,
) -> Result<Response, PageError> {
    use crate::methods::collective::list_collectives as lc;
    use crate::methods::node::{get_peers as gp, get_status as ns};
    let id = session(&web, peer_of(&peer), &headers)?;
    let (frame, status) = frame(&web, &id, &w).await?;
    let node = web.call::<ns::GetStatus>(&ns::Params {}, true).await?;
    let peers = web.call::<gp::GetPeers>(&gp::Params {}, true).await?;
    let list = web
        .call::<lc::ListCollectives>(&lc::Params {}, true)
        .await?;
    Ok(pages::html(pages::overview(
        &frame,
        &node,
        &peers,
        &list,
        status.as_ref(),
    ))
    .into_response())
}

#[derive(Debug, Default, Deserialize)]
struct WorksQuery {
    collective: Option<String>,
    collection: Option<String>,
    cursor: Option<String>,
    q: Option<String>,
}

async fn works(
    State(web): State<Arc<Web>>,
    peer: Peer,
    headers: HeaderMap,
    Query(q): Query<WorksQuery>,
) -> Result<Response, PageError> {
    let id = session(&web, peer_of(&peer), &headers)?;
    let which = Which {
        collective: q.collective.clone(),
        after: None,
    };
    let (frame, _) = frame(&web, &id, &which).await?;
    let collection = q
        .collection
        .clone()
        .unwrap_or_else(|| "coop.guild.data.text".to_owned());
    let needle = q.q.as_deref().map(str::trim).unwrap_or("").to_lowercase();
    let listing = match &frame.collective {
        Some(space) if needle.is_empty() => {
            let mut params: Vec<(&str, &str)> = vec![
                ("space", space),
                ("repo", &frame.did),
                ("collection", &collection),
                ("limit", "50"),
            ];
            if let Some(c) = &q.cursor {
                params.push(("cursor", c));
            }
            Some(web.query("coop.guild.repo.listRecords", &params).await?)
        }
        Some(space) => Some(search_works(&web, space, &frame.did, &collection, &needle).await?),
        None => None,
    };
    let view = pages::WorksView {
        collection: &collection,
        listing: listing.as_ref(),
        q: &needle,
        done: None,
    };
    Ok(pages::html(pages::works(&frame, &view)).into_response())
}

/// The most records a works search reads.
const MAX_SEARCH: usize = 20_000;

/// The member's records whose title or body contains `needle` (lower case): the first 50,
/// reading the collection page by page through `listRecords`.
async fn search_works(
    web: &Web,
    space: &str,
    did: &str,
    collection: &str,
    needle: &str,
) -> Result<Value, PageError> {
    let mut found = Vec::new();
    let mut cursor: Option<String> = None;
    let mut scanned = 0usize;
    loop {
        let mut params: Vec<(&str, &str)> = vec![
            ("space", space),
            ("repo", did),
            ("collection", collection),
            ("limit", "100"),
        ];
        if let Some(c) = &cursor {
            params.push(("cursor", c));
        }
        let page = web.query("coop.guild.repo.listRecords", &params).await?;
        let records = page["records"].as_array().cloned().unwrap_or_default();
        scanned += records.len();
        for r in records {
            let v = &r["value"];
            let hit = ["title", "body", "text", "name"].iter().any(|f| {
                v[*f]
                    .as_str()
                    .is_some_and(|s| s.to_lowercase().contains(needle))
            });
            if hit && found.len() < PER_PAGE {
                found.push(r);
            }
        }
        cursor = page["cursor"].as_str().map(str::to_owned);
        if cursor.is_none() || found.len() >= PER_PAGE || scanned >= MAX_SEARCH {
            break;
        }
    }
    Ok(serde_json::json!({"records": found, "scanned": scanned}))
}

/// Adds one work to the collective's space (`coop.guild.repo.createRecord`, as `guild record
/// add --space` does).
async fn works_post(
    State(web): State<Arc<Web>>,
    peer: Peer,
    headers: HeaderMap,
    RawForm(form): RawForm,
) -> Result<Response, PageError> {
    let id = session(&web, peer_of(&peer), &headers)?;
    let f = Fields::parse(&form);
    check_form(&web, &id, &f)?;
    let which = Which {
        collective: f
            .get("collective")
            .map(str::to_owned)
            .filter(|s| !s.is_empty()),
        after: None,
    };
    let (frame, _) = frame(&web, &id, &which).await?;
    let Some(space) = frame.collective.clone() else {
        return Err(PageError::Form("this node is in no collective yet".into()));
    };
    let field = |k: &str| f.get(k).map(str::trim).unwrap_or("").to_owned();
    let created = guild_core::syntax::Datetime::from_unix_micros(web.now());
    let mut record = serde_json::json!({
        "$type": "coop.guild.data.text",
        "title": field("title"),
        "body": field("body"),
        "createdAt": created.as_str(),
    });
    if !field("language").is_empty() {
        record["language"] = Value::String(field("language"));
    }
    let tags: Vec<String> = field("tags")
        .split(',')
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    if !tags.is_empty() {
        record["tags"] = serde_json::json!(tags);
    }
    let body = serde_json::json!({
        "space": space, "repo": frame.did, "collection": "coop.guild.data.text", "record": record,
    });
    let out = web
        .send("coop.guild.repo.createRecord", Kind::Procedure, &body, true)
        .await?;
    let out: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
    let done = format!("Added {}", out["uri"].as_str().unwrap_or("the work"));
    let params: Vec<(&str, &str)> = vec![
        ("space", &space),
        ("repo", &frame.did),
        ("collection", "coop.guild.data.text"),
        ("limit", "50"),
    ];
    let listing = web.query("coop.guild.repo.listRecords", &params).await?;
    let view = pages::WorksView {
        collection: "coop.guild.data.text",
        listing: Some(&listing),
        q: "",
        done: Some(&done),
    };
    Ok(pages::html(pages::works(&frame, &view)).into_response())
}

async fn consent(
    State(web): State<Arc<Web>>,
    peer: Peer,
    headers: HeaderMap,
    Query(w): Query<Which>,
) -> Result<Response, PageError> {
    let id = session(&web, peer_of(&peer), &headers)?;
    let (frame, status) = frame(&web, &id, &w).await?;
    Ok(pages::html(pages::consent(&frame, status.as_ref(), None)).into_response())
}

async fn consent_post(
    State(web): State<Arc<Web>>,
    peer: Peer,
    headers: HeaderMap,
    RawForm(form): RawForm,
) -> Result<Response, PageError> {
    use crate::methods::collective::{ConsentInput, grant_consent, revoke_consent};
    let id = session(&web, peer_of(&peer), &headers)?;
    let f = Fields::parse(&form);
    check_form(&web, &id, &f)?;
    let which = Which {
        collective: f
            .get("collective")
            .map(str::to_owned)
            .filter(|s| !s.is_empty()),
        after: None,
    };
    let template = f
        .get("template")
        .ok_or_else(|| PageError::Form("no template chosen".into()))?
        .to_owned();
    let action = f.get("action").unwrap_or("");
    if !matches!(action, "grant" | "revoke") {
        return Err(PageError::Form(format!(
            "unknown action {action:?}: grant or revoke"
        )));
    }
    if f.get("confirmed") != Some("yes") {
        // First the confirmation page: what the change means, and the button that makes it.
        let (frame, status) = frame(&web, &id, &which).await?;
        return Ok(pages::html(pages::consent_confirm(
            &frame,
            status.as_ref(),
            action,
            &template,
        ))
        .into_response());
    }
    let input = ConsentInput {
        collective: which.collective.clone(),
        templates: vec![template.clone()],
        ..ConsentInput::default()
    };
    let written = if action == "grant" {
        web.call::<grant_consent::GrantConsent>(&input, true)
            .await?
    } else {
        web.call::<revoke_consent::RevokeConsent>(&input, true)
            .await?
    };
    let (frame, status) = frame(&web, &id, &which).await?;
    let done = format!(
        "{} {template}: op {}",
        if action == "grant" {
            "Granted"
        } else {
            "Revoked"
        },
        written.op
    );
    Ok(pages::html(pages::consent(&frame, status.as_ref(), Some(&done))).into_response())
}

async fn collective(
    State(web): State<Arc<Web>>,
    peer: Peer,
    headers: HeaderMap,
    Query(w): Query<Which>,
) -> Result<Response, PageError> {
    use crate::methods::agreement::list_agreements as la;
    let id = session(&web, peer_of(&peer), &headers)?;
    if let Some(after) = &w.after {
        // Said here, not as a page "in no collective" (the status call would refuse it).
        Did::parse(after).map_err(|e| PageError::Xrpc {
            status: StatusCode::BAD_REQUEST,
            error: "InvalidRequest".into(),
            message: format!("after: {e}"),
        })?;
    }
    let (frame, status) = frame(&web, &id, &w).await?;
    let agreements = match &frame.collective {
        Some(c) => Some(
            web.call::<la::ListAgreements>(
                &la::Params {
                    collective: Some(c.clone()),
                },
                true,
            )
            .await?,
        ),
        None => None,
    };
    Ok(pages::html(pages::collective(
        &frame,
        status.as_ref(),
        agreements.as_ref(),
    ))
    .into_response())
}

async fn bundles(
    State(web): State<Arc<Web>>,
    peer: Peer,
    headers: HeaderMap,
    Query(w): Query<Which>,
) -> Result<Response, PageError> {
    use crate::methods::bundle::list_bundles as lb;
    let id = session(&web, peer_of(&peer), &headers)?;
    let (frame, _) = frame(&web, &id, &w).await?;
    let list = match &frame.collective {
        Some(c) => Some(
            web.call::<lb::ListBundles>(
                &lb::Params {
                    collective: Some(c.clone()),
                },
                true,
            )
            .await?,
        ),
        None => None,
    };
    Ok(pages::html(pages::bundles(&frame, list.as_ref())).into_response())
}

async fn statements(
    State(web): State<Arc<Web>>,
    peer: Peer,
    headers: HeaderMap,
    Query(w): Query<Which>,
) -> Result<Response, PageError> {
    use crate::methods::payout::list_statements as ls;
    let id = session(&web, peer_of(&peer), &headers)?;
    let (frame, _) = frame(&web, &id, &w).await?;
    let list = match &frame.collective {
        Some(c) => Some(
            web.call::<ls::ListStatements>(
                &ls::Params {
                    collective: Some(c.clone()),
                    period: None,
                },
                true,
            )
            .await?,
        ),
        None => None,
    };
    Ok(pages::html(pages::statements(&frame, list.as_ref())).into_response())
}

/// Server-sent events: `change` whenever the collective's log or the node's repos change
/// (checked every second through the same status methods the pages read).
async fn events(
    State(web): State<Arc<Web>>,
    peer: Peer,
    headers: HeaderMap,
    Query(w): Query<Which>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, PageError> {
    let id = session(&web, peer_of(&peer), &headers)?;
    // State: the last fingerprint read (a failed read changes nothing), whether `hello`
    // went out, the session (rechecked: the stream ends at sign-out or expiry).
    let start = (web, w, None::<String>, false, id);
    let stream = futures::stream::unfold(start, |(web, w, mut last, hello, id)| async move {
        loop {
            if !web.sessions.valid(&id, web.now()) {
                return None;
            }
            let now = fingerprint(&web, &w).await;
            if !hello {
                let event = Event::default()
                    .event("hello")
                    .data(now.clone().unwrap_or_default());
                return Some((Ok(event), (web, w, now, true, id)));
            }
            if let Some(n) = &now {
                if last.as_ref().is_some_and(|l| l != n) {
                    let event = Event::default().event("change").data(n.clone());
                    return Some((Ok(event), (web, w, now, true, id)));
                }
                last = now;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// What changes when gossip or a write changes the state a page shows.
async fn fingerprint(web: &Web, w: &Which) -> Option<String> {
    use crate::methods::collective::get_status as gs;
    use crate::methods::node::get_status as ns;
    let node = web.call::<ns::GetStatus>(&ns::Params {}, true).await.ok()?;
    let repos: Vec<String> = node
        .repos
        .iter()
        .map(|r| format!("{}:{}", r.space, r.rev))
        .collect();
    let log = web
        .call::<gs::GetStatus>(
            &gs::Params {
                collective: w.collective.clone(),
                // Only the sync state is read: none of the long lists (megabytes in a
                // large collective, asked for every second while a page is open).
                limit: Some(0),
                members_after: None,
                consents_of: None,
            },
            true,
        )
        .await
        .map(|s| format!("{}:{}", s.sync.ops, s.sync.heads.join(",")))
        .unwrap_or_default();
    Some(format!("{log};{}", repos.join(",")))
}

/// A licence as read: (subject, template, restricted to, createdAt).
/// A commons licence record, as read: what it licenses and how, and where it is.
#[derive(Clone)]
struct LicenceRow {
    /// The licensed record's AT URI.
    subject: String,
    template: String,
    restricted: Vec<String>,
    at: String,
    /// The licence record's own path (`coop.guild.commons.licence/<rkey>`) and CID.
    path: String,
    cid: String,
}

/// The works' usual collection.
const TEXT: &str = "coop.guild.data.text";

/// The commons licence collection.
const LICENCE: &str = "coop.guild.commons.licence";
/// The most licence records a commons page reads.
const MAX_LICENCES: usize = 10_000;
/// Records per commons page.
const PER_PAGE: usize = 50;

/// One record of the commons: its licence and the record as the public repo serves it.
#[derive(Clone)]
pub(crate) struct CommonsItem {
    /// Its author (the public repo's owner).
    pub did: String,
    /// The repo's commit it was read at.
    pub commit: String,
    pub uri: String,
    pub collection: String,
    pub rkey: String,
    pub template: String,
    pub restricted_to: Vec<String>,
    pub licensed_at: String,
    /// The licence record's path and CID in the author's repo.
    pub licence_path: String,
    pub licence_cid: String,
    pub cid: String,
    pub value: Value,
}

/// The commons' listing filters (`?type=&licence=&lang=&tag=&q=&page=`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct CommonsQuery {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub licence: Option<String>,
    pub lang: Option<String>,
    pub tag: Option<String>,
    pub q: Option<String>,
    pub page: Option<usize>,
}

impl Web {
    /// The node's member DID (the owner of the public repo the commons is in).
    async fn member(&self) -> Result<String, PageError> {
        use crate::methods::node::get_status as ns;
        Ok(self.call::<ns::GetStatus>(&ns::Params {}, true).await?.did)
    }

    /// The commons' licences, newest per record, read with the public
    /// `com.atproto.repo.listRecords`.
    async fn licences(&self, did: &str) -> Result<Vec<LicenceRow>, PageError> {
        let mut by_subject: std::collections::BTreeMap<String, LicenceRow> =
            std::collections::BTreeMap::new();
        let mut cursor: Option<String> = None;
        let mut read = 0usize;
        loop {
            let mut params: Vec<(&str, &str)> =
                vec![("repo", did), ("collection", LICENCE), ("limit", "100")];
            if let Some(c) = &cursor {
                params.push(("cursor", c));
            }
            let page = match self
                .send("com.atproto.repo.listRecords", Kind::Query, &params, false)
                .await
            {
                Ok(p) => p,
                // No public commit yet: an empty commons.
                Err(PageError::Xrpc { error, .. }) if error == "RepoNotFound" => break,
                Err(e) => return Err(e),
            };
            let page: Value = serde_json::from_slice(&page).unwrap_or(Value::Null);
            let records = page["records"].as_array().cloned().unwrap_or_default();
            read += records.len();
            for r in &records {
                let v = &r["value"];
                let (Some(subject), Some(template)) =
                    (v["subject"].as_str(), v["template"].as_str())
                else {
                    continue;
                };
                let restricted: Vec<String> = v["restrictedTo"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                let at = v["createdAt"].as_str().unwrap_or_default().to_owned();
                let (Some(uri), Some(cid)) = (r["uri"].as_str(), r["cid"].as_str()) else {
                    continue;
                };
                let Some(rkey) = uri.rsplit('/').next() else {
                    continue;
                };
                // Records come in key (TID) order: a later licence of the same record wins.
                by_subject.insert(
                    subject.to_owned(),
                    LicenceRow {
                        subject: subject.to_owned(),
                        template: template.to_owned(),
                        restricted,
                        at,
                        path: format!("{LICENCE}/{rkey}"),
                        cid: cid.to_owned(),
                    },
                );
            }
            cursor = page["cursor"].as_str().map(str::to_owned);
            if cursor.is_none() || records.is_empty() || read >= MAX_LICENCES {
                break;
            }
        }
        Ok(by_subject.into_values().collect())
    }
}

fn matches(q: &CommonsQuery, item: &CommonsItem) -> bool {
    let v = &item.value;
    let lang_ok = q
        .lang
        .as_deref()
        .is_none_or(|l| l.is_empty() || v["language"].as_str() == Some(l));
    let tag_ok = q.tag.as_deref().is_none_or(|t| {
        t.is_empty()
            || v["tags"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(t)))
    });
    let q_ok = q.q.as_deref().is_none_or(|needle| {
        let needle = needle.trim().to_lowercase();
        needle.is_empty()
            || ["title", "body", "text", "name", "description"]
                .iter()
                .any(|f| {
                    v[*f]
                        .as_str()
                        .is_some_and(|s| s.to_lowercase().contains(&needle))
                })
    });
    lang_ok && tag_ok && q_ok
}

async fn commons_by_licence(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    Query(mut q): Query<CommonsQuery>,
) -> Result<Response, PageError> {
    q.licence = Some(id);
    commons(State(web), headers, Query(q)).await
}

async fn commons(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(q): Query<CommonsQuery>,
) -> Result<Response, PageError> {
    let index = web.commons_index().await?;
    let skip = q.page.unwrap_or(0).saturating_mul(PER_PAGE);
    let mut matched = 0usize;
    let mut items: Vec<&CommonsItem> = Vec::new();
    for item in &index.items {
        let kind_ok = q
            .kind
            .as_deref()
            .is_none_or(|k| k.is_empty() || k == item.collection);
        let licence_ok = q
            .licence
            .as_deref()
            .is_none_or(|l| l.is_empty() || l == item.template);
        if !(kind_ok && licence_ok && matches(&q, item)) {
            continue;
        }
        matched += 1;
        if matched > skip && items.len() < PER_PAGE {
            items.push(item);
        }
    }
    // The authors with a record in the commons (items are grouped by author).
    let mut authors: Vec<&str> = index.items.iter().map(|i| i.did.as_str()).collect();
    authors.dedup();
    let view = pages::CommonsView {
        did: &index.did,
        origin: &origin(&headers),
        items: &items,
        templates: &index.templates,
        kinds: &index.kinds,
        query: &q,
        authors: authors.len(),
        sole_author: match &authors[..] {
            [only] => Some(only),
            [] => Some(index.did.as_str()),
            _ => None,
        },
        total: index.items.len(),
        more: matched > skip + items.len(),
    };
    Ok(pages::html(pages::commons(&view)).into_response())
}

/// The commons this node holds: every licensed record of every public repo it holds (its
/// member's own and, on a steward's node, the replicas of members' public repos), joined with
/// its record.
pub(crate) struct CommonsIndex {
    /// The node's member.
    pub did: String,
    /// Each public repo's DID and the commit it was read at, in DID order.
    pub repos: Vec<(String, String)>,
    /// In author, then record order.
    pub items: Vec<CommonsItem>,
    pub templates: Vec<String>,
    pub kinds: Vec<String>,
}

/// One public repo's commons at one commit.
pub(crate) struct RepoCommons {
    commit: String,
    items: Vec<CommonsItem>,
    kinds: Vec<String>,
}

/// Most public repos the commons lists.
const MAX_REPOS: usize = 100_000;

impl Web {
    /// The public repos this node holds, with their head commits (`com.atproto.sync.listRepos`).
    async fn public_repos(&self) -> Result<Vec<(String, String)>, PageError> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut params: Vec<(&str, &str)> = vec![("limit", "1000")];
            if let Some(c) = &cursor {
                params.push(("cursor", c));
            }
            let page = self
                .send("com.atproto.sync.listRepos", Kind::Query, &params, false)
                .await?;
            let page: Value = serde_json::from_slice(&page).map_err(|e| PageError::Xrpc {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                error: "InternalServerError".into(),
                message: format!("listRepos answered no JSON: {e}"),
            })?;
            let repos = page["repos"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            for r in repos {
                if let (Some(did), Some(head)) = (r["did"].as_str(), r["head"].as_str()) {
                    out.push((did.to_owned(), head.to_owned()));
                }
            }
            cursor = page["cursor"].as_str().map(str::to_owned);
            if cursor.is_none() || repos.is_empty() || out.len() >= MAX_REPOS {
                break;
            }
        }
        Ok(out)
    }

    /// The commons index at the public repos' latest commits: each repo's part read once per
    /// commit, then served from memory until that repo changes.
    async fn commons_index(&self) -> Result<Arc<CommonsIndex>, PageError> {
        let did = self.member().await?;
        let repos = self.public_repos().await?;
        if let Some(held) = self
            .commons
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            && held.repos == repos
            && held.did == did
        {
            return Ok(Arc::clone(held));
        }
        let mut items = Vec::new();
        for (author, commit) in &repos {
            let cached = self
                .repo_commons
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(author)
                .cloned();
            let part = match cached {
                Some(p) if p.commit == *commit => p,
                previous => {
                    let kinds = previous.map(|p| p.kinds.clone());
                    let part = Arc::new(self.repo_commons(author, commit, kinds).await?);
                    self.repo_commons
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(author.clone(), Arc::clone(&part));
                    part
                }
            };
            items.extend(part.items.iter().cloned());
        }
        let mut templates: Vec<String> = items.iter().map(|i| i.template.clone()).collect();
        templates.sort();
        templates.dedup();
        let mut kinds: Vec<String> = items.iter().map(|i| i.collection.clone()).collect();
        kinds.sort();
        kinds.dedup();
        let index = Arc::new(CommonsIndex {
            did,
            repos,
            items,
            templates,
            kinds,
        });
        *self
            .commons
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::clone(&index));
        Ok(index)
    }

    /// One public repo's commons at `commit`: its licences, and beside them (concurrently)
    /// the collections its last index drew records from (`previous`; a new commit seldom
    /// adds a collection), then any other licensed collection, each listed whole.
    async fn repo_commons(
        &self,
        did: &str,
        commit: &str,
        previous: Option<Vec<String>>,
    ) -> Result<RepoCommons, PageError> {
        let previous = previous.unwrap_or_else(|| vec![TEXT.to_owned()]);
        let lists =
            futures::future::join_all(previous.iter().map(|c| self.whole_collection(did, c)));
        let (licences, lists) = futures::join!(self.licences(did), lists);
        let mut prefetched: std::collections::HashMap<String, _> = std::collections::HashMap::new();
        for (c, l) in previous.into_iter().zip(lists) {
            prefetched.insert(c, l?);
        }
        let licences = licences?;
        let prefix = format!("at://{did}/");
        let mut wanted: std::collections::BTreeMap<String, Vec<(String, LicenceRow)>> =
            std::collections::BTreeMap::new();
        for row in licences {
            let Some((collection, rkey)) = row
                .subject
                .strip_prefix(&prefix)
                .and_then(|rest| rest.split_once('/'))
                .map(|(c, k)| (c.to_owned(), k.to_owned()))
            else {
                continue; // a licence of someone else's record licenses nothing
            };
            wanted.entry(collection).or_default().push((rkey, row));
        }
        let mut items = Vec::new();
        for (collection, entries) in wanted {
            let records = match prefetched.remove(&collection) {
                Some(r) => r,
                None => self.whole_collection(did, &collection).await?,
            };
            for (rkey, row) in entries {
                let Some((cid, value)) = records.get(&rkey) else {
                    continue; // a licence of a record since deleted
                };
                items.push(CommonsItem {
                    did: did.to_owned(),
                    commit: commit.to_owned(),
                    uri: row.subject,
                    collection: collection.clone(),
                    rkey,
                    template: row.template,
                    restricted_to: row.restricted,
                    licensed_at: row.at,
                    licence_path: row.path,
                    licence_cid: row.cid,
                    cid: cid.clone(),
                    value: value.clone(),
                });
            }
        }
        items.sort_by(|a, b| a.uri.cmp(&b.uri));
        let mut kinds: Vec<String> = items.iter().map(|i| i.collection.clone()).collect();
        kinds.sort();
        kinds.dedup();
        Ok(RepoCommons {
            commit: commit.to_owned(),
            items,
            kinds,
        })
    }

    /// Every record of a public collection (up to [`MAX_LICENCES`]): rkey → (CID, value).
    async fn whole_collection(
        &self,
        did: &str,
        collection: &str,
    ) -> Result<std::collections::HashMap<String, (String, Value)>, PageError> {
        let mut out = std::collections::HashMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut params: Vec<(&str, &str)> =
                vec![("repo", did), ("collection", collection), ("limit", "100")];
            if let Some(c) = &cursor {
                params.push(("cursor", c));
            }
            let page = self
                .send("com.atproto.repo.listRecords", Kind::Query, &params, false)
                .await?;
            let page: Value = serde_json::from_slice(&page).unwrap_or(Value::Null);
            let records = page["records"].as_array().cloned().unwrap_or_default();
            for r in &records {
                let (Some(uri), Some(cid)) = (r["uri"].as_str(), r["cid"].as_str()) else {
                    continue;
                };
                if let Some(rkey) = uri.rsplit('/').next() {
                    out.insert(rkey.to_owned(), (cid.to_owned(), r["value"].clone()));
                }
            }
            cursor = page["cursor"].as_str().map(str::to_owned);
            if cursor.is_none() || records.is_empty() || out.len() >= MAX_LICENCES {
                break;
            }
        }
        Ok(out)
    }
}

/// `scheme://host` of the request, for the licences' IRIs (the node's own address).
fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https")
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

/// Where a commons' licence is published: its forms under `/commons/licences/`, the records
/// under it listed at `/commons/by-licence/<id>` (the location TDMRep and RSL name).
pub(crate) fn publication(origin: &str, did: &str, template: &str) -> guild_license::Publication {
    guild_license::Publication {
        base: format!("{origin}/commons/licences"),
        assigner: did.to_owned(),
        target: format!("{origin}/commons/by-licence/{template}"),
        location: format!("/commons/by-licence/{template}*"),
        agreement: None,
    }
}

#[derive(Deserialize)]
struct FormPath {
    id: String,
    version: String,
    file: String,
}

/// A standard template's form: `/commons/licences/<id>/v<version>/<odrl.jsonld|rsl.xml|…|terms.txt>`.
async fn licence_form(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    axum::extract::Path(p): axum::extract::Path<FormPath>,
) -> Result<Response, PageError> {
    let not_found = || PageError::Xrpc {
        status: StatusCode::NOT_FOUND,
        error: "NotFound".into(),
        message: format!("no licence form {}/{}/{}", p.id, p.version, p.file),
    };
    let contract = guild_license::standard_template(&p.id).ok_or_else(not_found)?;
    if p.version != format!("v{}", contract.version) {
        return Err(not_found());
    }
    let did = web.member().await?;
    let publication = publication(&origin(&headers), &did, &p.id);
    let (body, mime) = if p.file == "terms.txt" {
        (
            guild_license::text::terms(&contract),
            "text/plain; charset=utf-8",
        )
    } else {
        let format = guild_license::Format::ALL
            .into_iter()
            .find(|f| f.ext() == p.file)
            .ok_or_else(not_found)?;
        let mime = match format {
            guild_license::Format::Odrl => "application/ld+json",
            guild_license::Format::Rsl => "application/rsl+xml",
            guild_license::Format::CcSignals | guild_license::Format::Tdmrep => "application/json",
            guild_license::Format::ContentUsage | guild_license::Format::ContentSignal => {
                "text/plain; charset=utf-8"
            }
        };
        let body = format
            .emit(&contract, &publication)
            .map_err(|e| PageError::Xrpc {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                error: "InternalServerError".into(),
                message: e.to_string(),
            })?;
        (body, mime)
    };
    Ok(([(header::CONTENT_TYPE, mime)], body).into_response())
}

/// The templates of the commons' licences, as contracts.
async fn commons_contracts(
    web: &Web,
) -> Result<(String, Vec<guild_license::terms::Contract>), PageError> {
    let index = web.commons_index().await?;
    Ok((
        index.did.clone(),
        index
            .templates
            .iter()
            .filter_map(|t| guild_license::standard_template(t))
            .collect(),
    ))
}

fn emit_err(e: guild_license::LicenceError) -> PageError {
    PageError::Xrpc {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        error: "InternalServerError".into(),
        message: e.to_string(),
    }
}

/// `robots.txt`: the commons open to crawlers, with the AI-preferences `Content-Usage` line
/// and an RSL `License:` line per licence in use; the dashboard closed.
async fn robots(State(web): State<Arc<Web>>, headers: HeaderMap) -> Result<Response, PageError> {
    let (did, contracts) = commons_contracts(&web).await?;
    let origin = origin(&headers);
    let base = format!("{origin}/commons/licences");
    let usage = guild_license::emit::content_usage().map_err(emit_err)?;
    let mut out = format!(
        "# Guild node of {did}. Its commons is public: {origin}/commons lists each record with its licence.\n\
         # Every use the licences below do not grant is reserved (Content-Usage); each licence's RSL form follows.\n\
         User-Agent: *\n\
         Allow: /commons\n\
         Allow: /contracts\n\
         Allow: /xrpc/com.atproto.\n\
         Disallow: /dashboard\n\
         Disallow: /xrpc/coop.guild.\n\
         Content-Usage: {usage}\n"
    );
    for c in &contracts {
        out.push_str(&format!(
            "License: {base}/{}/v{}/rsl.xml\n",
            c.id, c.version
        ));
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], out).into_response())
}

/// `/.well-known/tdmrep.json`: one rule per licence in use (TDM reserved, the policy its ODRL
/// form); an empty list when the commons is empty.
async fn tdmrep(State(web): State<Arc<Web>>, headers: HeaderMap) -> Result<Response, PageError> {
    let (did, contracts) = commons_contracts(&web).await?;
    let origin = origin(&headers);
    let mut rules: Vec<Value> = Vec::new();
    for c in &contracts {
        let p = publication(&origin, &did, c.id.as_str());
        let one: Value = serde_json::from_str(
            &guild_license::emit::tdmrep(c, &p).map_err(emit_err)?,
        )
        .map_err(|e| {
            emit_err(guild_license::LicenceError::Emit {
                format: "tdmrep",
                message: e.to_string(),
            })
        })?;
        rules.extend(one.as_array().cloned().unwrap_or_default());
    }
    Ok(axum::Json(Value::Array(rules)).into_response())
}
