//! The XRPC server: AT Protocol conventions (`/xrpc/<NSID>`, GET for queries, POST for
//! procedures, errors as `{"error", "message"}`), the standard `com.atproto.*` endpoints on the
//! member's public repo, and Guild's `coop.guild.*` endpoints for collective spaces and the node.
//!
//! Every `coop.guild.*` request passes the router layer of `validation.rs` first: the
//! admin token, then its parameters and input against the method's lexicon. Handlers parse
//! and check their input (Guild's own methods read it typed, as [`crate::methods`] declares
//! it), call the [`RepoService`] on a blocking thread, and shape the answer; they hold no
//! repository or lexicon rule.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use cid::Cid;
use guild_service::{Clock, NodeStore, RepoService, ServiceError, WriteOp, WriteOutcome};
use guild_store::Space;
use serde_json::{Value, json};
use subtle::ConstantTimeEq as _;

use crate::methods::node::get_status;
use crate::methods::{Kind, Method};
use crate::serve::BodyPermit;
use crate::validation::{Parsed, Xrpc};

/// Largest `limit` of `listRecords`.
pub const MAX_LIST_LIMIT: usize = 100;

/// An XRPC error response.
#[derive(Debug)]
pub struct XrpcError {
    status: StatusCode,
    error: &'static str,
    message: String,
    /// Sent as `Retry-After` (seconds), for a rate-limited request.
    pub(crate) retry_after_secs: Option<u64>,
}

impl XrpcError {
    pub(crate) fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        XrpcError {
            status,
            error,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidRequest", message)
    }

    /// Its HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Its XRPC error name.
    pub fn error(&self) -> &'static str {
        self.error
    }
}

impl IntoResponse for XrpcError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            axum::Json(json!({"error": self.error, "message": self.message})),
        )
            .into_response();
        if let Some(secs) = self.retry_after_secs {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        resp
    }
}

impl From<ServiceError> for XrpcError {
    fn from(e: ServiceError) -> Self {
        let message = e.to_string();
        match e {
            ServiceError::InvalidRequest(_) | ServiceError::DeclarationDelete(_) => {
                XrpcError::invalid(message)
            }
            ServiceError::InvalidRecord { .. } => {
                XrpcError::new(StatusCode::BAD_REQUEST, "InvalidRecord", message)
            }
            ServiceError::RepoNotFound(_) => {
                XrpcError::new(StatusCode::BAD_REQUEST, "RepoNotFound", message)
            }
            ServiceError::RecordNotFound(_) => {
                XrpcError::new(StatusCode::BAD_REQUEST, "RecordNotFound", message)
            }
            ServiceError::InvalidSwap(_) => {
                XrpcError::new(StatusCode::BAD_REQUEST, "InvalidSwap", message)
            }
            ServiceError::Internal(_) => {
                tracing::error!(%message, "internal error");
                XrpcError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalServerError",
                    message,
                )
            }
        }
    }
}

type XrpcResult = Result<Response, XrpcError>;

/// What every handler shares.
pub struct ApiState<S> {
    /// The repository service.
    pub service: Arc<RepoService<S>>,
    /// The local admin token (bearer).
    pub admin_token: String,
    /// How request bodies are read: largest size, read timeout, and the in-flight budget
    /// shared by all requests ([`crate::serve::Bodies`]).
    pub bodies: crate::serve::Bodies,
    /// When the node started.
    pub started: Instant,
    /// Where the handlers read "now" (op dates, invite expiry, election close times): the node
    /// passes the clock its engine and repo service read.
    pub clock: Clock,
    /// The collectives engine and swarm, when the node runs networking.
    pub collectives: Option<crate::collective::Collectives>,
    /// The node's bundle work (propose, approve, package), when it runs networking.
    pub bundles: Option<crate::bundles::Bundles<S>>,
    /// The builders' feeds and logins, when it runs networking.
    pub feeds: Option<Arc<guild_service::FeedHub<S>>>,
}

impl<S> std::fmt::Debug for ApiState<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("bodies", &self.bodies)
            .finish_non_exhaustive()
    }
}

/// A query string's parameters, in order.
pub(crate) fn query_params(raw: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

pub(crate) type Route<S> = (String, Kind, MethodRouter<Arc<ApiState<S>>>);

/// Every XRPC method the router serves: its NSID, its kind, and its handler.
fn routes<S: NodeStore>() -> Vec<Route<S>> {
    let mut out: Vec<Route<S>> = Vec::new();
    // The same methods twice: AT's own names act on the member's public repo, Guild's on a
    // collective space (always authenticated; see `is_guild`).
    for family in ["com.atproto", "coop.guild"] {
        let at = |method: &str| format!("{family}.{method}");
        out.extend([
            (at("repo.getRecord"), Kind::Query, get(get_record::<S>)),
            (at("repo.listRecords"), Kind::Query, get(list_records::<S>)),
            (
                at("repo.describeRepo"),
                Kind::Query,
                get(describe_repo::<S>),
            ),
            (
                at("repo.createRecord"),
                Kind::Procedure,
                post(create_record::<S>),
            ),
            (at("repo.putRecord"), Kind::Procedure, post(put_record::<S>)),
            (
                at("repo.deleteRecord"),
                Kind::Procedure,
                post(delete_record::<S>),
            ),
            (
                at("repo.applyWrites"),
                Kind::Procedure,
                post(apply_writes::<S>),
            ),
            (at("sync.getRepo"), Kind::Query, get(get_repo::<S>)),
            (
                at("sync.getLatestCommit"),
                Kind::Query,
                get(get_latest_commit::<S>),
            ),
            (
                at("sync.getRecord"),
                Kind::Query,
                get(get_record_proof::<S>),
            ),
        ]);
    }
    out.push((
        "com.atproto.sync.listRepos".to_owned(),
        Kind::Query,
        get(list_repos::<S>),
    ));
    use crate::collective as c;
    use crate::methods::collective as m;
    fn typed<M: Method, S>(r: MethodRouter<Arc<ApiState<S>>>) -> Route<S> {
        (M::NSID.to_owned(), M::KIND, r)
    }
    out.extend([
        typed::<m::create::Create, S>(post(c::create::<S>)),
        typed::<m::create_invite::CreateInvite, S>(post(c::create_invite::<S>)),
        typed::<m::join::Join, S>(post(c::join::<S>)),
        typed::<m::leave::Leave, S>(post(c::leave::<S>)),
        typed::<m::grant_consent::GrantConsent, S>(post(c::grant_consent::<S>)),
        typed::<m::revoke_consent::RevokeConsent, S>(post(c::revoke_consent::<S>)),
        typed::<m::open_election::OpenElection, S>(post(c::open_election::<S>)),
        typed::<m::vote::Vote, S>(post(c::vote::<S>)),
        typed::<m::close_election::CloseElection, S>(post(c::close_election::<S>)),
        typed::<m::get_status::GetStatus, S>(get(c::get_status::<S>)),
        typed::<m::list_collectives::ListCollectives, S>(get(c::list::<S>)),
        typed::<m::get_remote_heads::GetRemoteHeads, S>(get(c::get_remote_heads::<S>)),
        typed::<crate::methods::node::get_peers::GetPeers, S>(get(c::peers::<S>)),
        typed::<get_status::GetStatus, S>(get(node_status::<S>)),
        typed::<crate::methods::bundle::propose_bundle::ProposeBundle, S>(post(
            crate::bundles::propose::<S>,
        )),
        typed::<crate::methods::bundle::list_bundles::ListBundles, S>(get(
            crate::bundles::list::<S>,
        )),
        typed::<crate::methods::bundle::list_revocations::ListRevocations, S>(get(
            crate::bundles::revocations::<S>,
        )),
        typed::<crate::methods::payout::book_statement::BookStatement, S>(post(
            crate::bundles::book_statement::<S>,
        )),
        typed::<crate::methods::payout::list_statements::ListStatements, S>(get(
            crate::bundles::list_statements::<S>,
        )),
        (
            "coop.guild.bundle.get".to_owned(),
            Kind::Query,
            get(crate::feeds::get_bundle::<S>),
        ),
        typed::<crate::methods::feed::get_challenge::GetChallenge, S>(get(
            crate::feeds::get_challenge::<S>,
        )),
        typed::<crate::methods::feed::login::Login, S>(post(crate::feeds::login::<S>)),
        typed::<crate::methods::feed::list_deliveries::ListDeliveries, S>(get(
            crate::feeds::list_deliveries::<S>,
        )),
        typed::<crate::methods::feed::submit_receipt::SubmitReceipt, S>(post(
            crate::agreement::submit_receipt::<S>,
        )),
    ]);
    out.extend(crate::agreement::routes::<S>());
    out
}

/// Every XRPC method the router serves (`_health` aside): its NSID and kind (a query is
/// served on GET, a procedure on POST).
pub fn methods<S: NodeStore>() -> Vec<(String, Kind)> {
    routes::<S>()
        .into_iter()
        .map(|(nsid, kind, _)| (nsid, kind))
        .collect()
}

/// The methods a steward's node serves builders on its public address (`[feeds] listen`),
/// besides the feed itself.
const BUILDER_METHODS: &[&str] = &[
    crate::methods::feed::get_challenge::NSID,
    crate::methods::feed::login::NSID,
    crate::methods::feed::submit_receipt::NSID,
    "coop.guild.bundle.get",
];

/// The router for every XRPC endpoint.
/// With it, the web pages ([`crate::web`]): the dashboard and the public ones.
pub fn router<S: NodeStore>(state: Arc<ApiState<S>>) -> Router {
    let api = build(state.clone(), |_| true);
    let web = crate::web::Web::new(api.clone(), state.admin_token.clone(), state.clock.clone());
    api.merge(crate::web::routes(web))
}

/// AT's read methods, served on the public address too: they read public repos only (the
/// node's member's and the replicas of members' public repos a steward's node keeps), so
/// that stock AT tools read the commons.
const PUBLIC_AT_READS: &[&str] = &[
    "com.atproto.repo.getRecord",
    "com.atproto.repo.listRecords",
    "com.atproto.repo.describeRepo",
    "com.atproto.sync.getRepo",
    "com.atproto.sync.getLatestCommit",
    "com.atproto.sync.getRecord",
    "com.atproto.sync.listRepos",
];

/// The router for a steward's public address: builders' login, feed and downloads, and AT's
/// reads of public repos ([`PUBLIC_AT_READS`]). With them, the public pages (`/contracts`,
/// `/commons`, …), which read only what the public methods show.
pub fn public_router<S: NodeStore>(state: Arc<ApiState<S>>) -> Router {
    let web = crate::web::Web::new(
        build(state.clone(), |_| true),
        state.admin_token.clone(),
        state.clock.clone(),
    );
    build(state, |nsid| {
        BUILDER_METHODS.contains(&nsid) || PUBLIC_AT_READS.contains(&nsid)
    })
    .merge(crate::web::public_routes(web))
}

fn build<S: NodeStore>(state: Arc<ApiState<S>>, keep: impl Fn(&str) -> bool) -> Router {
    let mut router = Router::new();
    for (nsid, _, route) in routes::<S>() {
        if keep(&nsid) {
            router = router.route(&format!("/xrpc/{nsid}"), route);
        }
    }
    // Bodies are read by `validation::read_body`, within `max_body_bytes`; an axum extractor
    // reading one would get the same limit, not axum's default of 2 MB.
    let max_body = state.bodies.max_bytes();
    let bodies = state.bodies.clone();
    router
        // Only on matched routes: an unknown method stays 501, a wrong HTTP method 405.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::validation::check::<S>,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::storage::gate::<S>,
        ))
        .route("/xrpc/_health", get(crate::storage::health::<S>))
        // A subscription, not a query or procedure: it checks its own parameters and token.
        .route(
            "/xrpc/coop.guild.feed.subscribe",
            get(crate::feeds::subscribe::<S>),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            bodies,
            crate::serve::drain_unread,
        ))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    XrpcError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!(
            "{} does not take {method}: queries are GET, procedures are POST",
            uri.path().trim_start_matches("/xrpc/")
        ),
    )
    .into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/xrpc/") {
        XrpcError::new(
            StatusCode::NOT_IMPLEMENTED,
            "MethodNotImplemented",
            format!("no method {}", uri.path().trim_start_matches("/xrpc/")),
        )
        .into_response()
    } else {
        XrpcError::new(StatusCode::NOT_FOUND, "NotFound", "not found").into_response()
    }
}

/// Which family an endpoint belongs to: the AT ones act on the public repo, Guild's on a space.
fn is_guild(uri: &axum::http::Uri) -> bool {
    uri.path().starts_with("/xrpc/coop.guild.")
}

pub(crate) fn check_auth<S>(state: &ApiState<S>, headers: &HeaderMap) -> Result<(), XrpcError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if token_matches(t, &state.admin_token) => Ok(()),
        Some(_) => Err(XrpcError::new(
            StatusCode::UNAUTHORIZED,
            "AuthenticationRequired",
            "invalid admin token",
        )),
        None => Err(XrpcError::new(
            StatusCode::UNAUTHORIZED,
            "AuthenticationRequired",
            "this method needs the node's admin token (Authorization: Bearer …)",
        )),
    }
}

/// Whether `given` is the admin token, in time independent of where they differ (`subtle`;
/// the token's length is not secret).
fn token_matches(given: &str, token: &str) -> bool {
    bool::from(given.as_bytes().ct_eq(token.as_bytes()))
}

/// Query parameters, parsed once; repeated keys keep the last value.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(raw: Option<String>) -> Self {
        Params(query_params(raw.as_deref()))
    }

    fn opt(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn req(&self, name: &str) -> Result<&str, XrpcError> {
        self.opt(name)
            .ok_or_else(|| XrpcError::invalid(format!("missing parameter {name}")))
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, XrpcError> {
        match self.opt(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(v) => Err(XrpcError::invalid(format!(
                "parameter {name} must be true or false, not {v:?}"
            ))),
        }
    }
}

/// The space an endpoint acts on: `public` for AT endpoints; the `space` parameter for Guild's.
/// A `space` that is neither `public` nor a collective id is an invalid request.
fn space_of(guild: bool, given: Option<&str>) -> Result<Space, XrpcError> {
    match (guild, given) {
        (false, None) => Ok(Space::Public),
        (false, Some(_)) => Err(XrpcError::invalid(
            "com.atproto.* methods act on the public repo; use coop.guild.* for a space",
        )),
        (true, Some(s)) => Space::parse(s).map_err(|e| XrpcError::invalid(e.to_string())),
        (true, None) => Err(XrpcError::invalid("missing parameter space")),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, XrpcError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(XrpcError::from),
        Err(e) => Err(XrpcError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            format!("worker failed: {e}"),
        )),
    }
}

/// A write's JSON body: as the router layer parsed (and validated) it for a `coop.guild.*`
/// method, else read here, with its room in the in-flight budget (kept while the write runs).
async fn read_json<S>(
    state: &ApiState<S>,
    headers: &HeaderMap,
    Parsed(parsed): Parsed,
    body: Body,
) -> Result<(Value, BodyPermit), XrpcError> {
    let (v, permit) = match parsed {
        Some(v) => (v, BodyPermit::none()),
        None => {
            let (bytes, permit) =
                crate::validation::read_body(&state.bodies, headers, body).await?;
            (crate::validation::parse_json(&bytes)?, permit)
        }
    };
    if !v.is_object() {
        return Err(XrpcError::invalid("body must be a JSON object"));
    }
    Ok((v, permit))
}

fn str_field<'a>(v: &'a Value, name: &str) -> Result<Option<&'a str>, XrpcError> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(XrpcError::invalid(format!("{name} must be a string"))),
    }
}

fn req_str<'a>(v: &'a Value, name: &str) -> Result<&'a str, XrpcError> {
    str_field(v, name)?.ok_or_else(|| XrpcError::invalid(format!("missing field {name}")))
}

fn bool_field(v: &Value, name: &str) -> Result<Option<bool>, XrpcError> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(XrpcError::invalid(format!("{name} must be a boolean"))),
    }
}

fn cid_field(v: &Value, name: &str) -> Result<Option<Cid>, XrpcError> {
    str_field(v, name)?.map(|s| parse_cid(s, name)).transpose()
}

fn parse_cid(s: &str, name: &str) -> Result<Cid, XrpcError> {
    guild_core::syntax::parse_cid_str(s).map_err(|e| XrpcError::invalid(format!("{name}: {e}")))
}

fn record_field(v: &Value, name: &str) -> Result<Value, XrpcError> {
    match v.get(name) {
        Some(r @ Value::Object(_)) => Ok(r.clone()),
        Some(_) => Err(XrpcError::invalid(format!("{name} must be an object"))),
        None => Err(XrpcError::invalid(format!("missing field {name}"))),
    }
}

fn commit_meta(o: &WriteOutcome) -> Value {
    json!({"cid": o.commit.to_string(), "rev": o.rev.as_str()})
}

/// Runs writes for a POST handler: auth, body, repo and space, then the service.
async fn write<S: NodeStore>(
    state: Arc<ApiState<S>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    (parsed, body): (Parsed, Body),
    build: impl FnOnce(&Value) -> Result<Vec<WriteOp>, XrpcError>,
) -> Result<(Value, WriteOutcome), XrpcError> {
    check_auth(&state, &headers)?;
    let (v, _room) = read_json(&state, &headers, parsed, body).await?;
    let repo = req_str(&v, "repo")?.to_string();
    let space = space_of(is_guild(&uri), str_field(&v, "space")?)?;
    let validate = bool_field(&v, "validate")?;
    let swap_commit = cid_field(&v, "swapCommit")?;
    let writes = build(&v)?;
    let service = state.service.clone();
    let outcome = blocking(move || {
        let key = service.repo_key(&repo, &space)?;
        service.apply_writes(&key, writes, validate, swap_commit.as_ref())
    })
    .await?;
    Ok((v, outcome))
}

/// The answer of `createRecord` and `putRecord`: the one record's URI and CID, and the commit.
fn record_written(o: &WriteOutcome) -> Response {
    let r = o.results.first();
    axum::Json(json!({
        "uri": r.map(|r| r.uri.clone()),
        "cid": r.and_then(|r| r.cid).map(|c| c.to_string()),
        "commit": commit_meta(o),
        "validationStatus": validation_status(o, 0),
    }))
    .into_response()
}

fn validation_status(o: &WriteOutcome, i: usize) -> Value {
    o.results
        .get(i)
        .and_then(|r| r.validation_status)
        .map_or(Value::Null, |s| Value::String(s.into()))
}

async fn create_record<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    parsed: Parsed,
    body: Body,
) -> XrpcResult {
    let (_, o) = write(state, headers, uri, (parsed, body), |v| {
        Ok(vec![WriteOp::Create {
            collection: req_str(v, "collection")?.to_string(),
            rkey: str_field(v, "rkey")?.map(str::to_string),
            record: record_field(v, "record")?,
        }])
    })
    .await?;
    Ok(record_written(&o))
}

async fn put_record<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    parsed: Parsed,
    body: Body,
) -> XrpcResult {
    let (_, o) = write(state, headers, uri, (parsed, body), |v| {
        // swapRecord: null means "must not exist"; absent means "no check".
        let swap_record = match v.get("swapRecord") {
            None => None,
            Some(Value::Null) => Some(None),
            Some(_) => Some(cid_field(v, "swapRecord")?),
        };
        Ok(vec![WriteOp::Put {
            collection: req_str(v, "collection")?.to_string(),
            rkey: req_str(v, "rkey")?.to_string(),
            record: record_field(v, "record")?,
            swap_record,
        }])
    })
    .await?;
    Ok(record_written(&o))
}

async fn delete_record<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    parsed: Parsed,
    body: Body,
) -> XrpcResult {
    let (_, o) = write(state, headers, uri, (parsed, body), |v| {
        Ok(vec![WriteOp::Delete {
            collection: req_str(v, "collection")?.to_string(),
            rkey: req_str(v, "rkey")?.to_string(),
            swap_record: cid_field(v, "swapRecord")?,
        }])
    })
    .await?;
    Ok(axum::Json(json!({"commit": commit_meta(&o)})).into_response())
}

async fn apply_writes<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    parsed: Parsed,
    body: Body,
) -> XrpcResult {
    let (v, o) = write(state, headers, uri, (parsed, body), |v| {
        let Some(Value::Array(writes)) = v.get("writes") else {
            return Err(XrpcError::invalid("writes must be an array"));
        };
        writes
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let t = req_str(w, "$type").map_err(|e| XrpcError::invalid(format!("writes/{i}: {}", e.message)))?;
                let collection = req_str(w, "collection")?.to_string();
                Ok(match t.trim_start_matches("com.atproto.repo.applyWrites") {
                    "#create" => WriteOp::Create {
                        collection,
                        rkey: str_field(w, "rkey")?.map(str::to_string),
                        record: record_field(w, "value")?,
                    },
                    "#update" => WriteOp::Update {
                        collection,
                        rkey: req_str(w, "rkey")?.to_string(),
                        record: record_field(w, "value")?,
                    },
                    "#delete" => WriteOp::Delete {
                        collection,
                        rkey: req_str(w, "rkey")?.to_string(),
                        swap_record: None,
                    },
                    _ => {
                        return Err(XrpcError::invalid(format!(
                            "writes/{i}: unknown $type {t:?} (expected com.atproto.repo.applyWrites#create, #update or #delete)"
                        )));
                    }
                })
            })
            .collect()
    })
    .await?;
    let types: Vec<String> = v["writes"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .map(|w| w["$type"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    let results: Vec<Value> = o
        .results
        .iter()
        .zip(types)
        .enumerate()
        .map(|(i, (r, t))| {
            let kind = t.rsplit('#').next().unwrap_or_default().to_string();
            if kind == "delete" {
                json!({"$type": "com.atproto.repo.applyWrites#deleteResult"})
            } else {
                json!({
                    "$type": format!("com.atproto.repo.applyWrites#{kind}Result"),
                    "uri": r.uri,
                    "cid": r.cid.map(|c| c.to_string()),
                    "validationStatus": validation_status(&o, i),
                })
            }
        })
        .collect();
    Ok(axum::Json(json!({"commit": commit_meta(&o), "results": results})).into_response())
}

/// Reads: Guild's endpoints always need the token; AT's are open (the public repo).
async fn read_scope<S: NodeStore>(
    state: &ApiState<S>,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    raw: Option<String>,
    repo_param: &str,
) -> Result<(Params, guild_store::RepoKey), XrpcError> {
    let guild = is_guild(uri);
    if guild {
        check_auth(state, headers)?;
    }
    let params = Params::parse(raw);
    let repo = params.req(repo_param)?.to_string();
    let space = space_of(guild, params.opt("space"))?;
    let key = state.service.read_key(&repo, &space)?;
    Ok((params, key))
}

async fn get_record<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> XrpcResult {
    let (p, key) = read_scope(&state, &headers, &uri, raw, "repo").await?;
    let (collection, rkey) = record_path(&p)?;
    let cid = p.opt("cid").map(|c| parse_cid(c, "cid")).transpose()?;
    let service = state.service.clone();
    let uri = format!("at://{}/{collection}/{rkey}", key.did);
    let (cid, value) =
        blocking(move || service.get_record(&key, &collection, &rkey, cid.as_ref())).await?;
    Ok(axum::Json(json!({
        "uri": uri,
        "cid": cid.to_string(),
        "value": guild_core::data::to_json(&value),
    }))
    .into_response())
}

async fn list_records<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> XrpcResult {
    let (p, key) = read_scope(&state, &headers, &uri, raw, "repo").await?;
    let collection = p.req("collection")?.to_string();
    guild_core::syntax::Nsid::parse(&collection)
        .map_err(|e| XrpcError::invalid(format!("collection: {e}")))?;
    let limit = match p.opt("limit") {
        None => 50,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIST_LIMIT).contains(&n) => n,
            _ => {
                return Err(XrpcError::invalid(format!(
                    "limit must be an integer from 1 to {MAX_LIST_LIMIT}"
                )));
            }
        },
    };
    let reverse = p.bool("reverse")?.unwrap_or(false);
    let cursor = p.opt("cursor").map(str::to_string);
    let service = state.service.clone();
    let did = key.did.clone();
    let c2 = collection.clone();
    let (rows, next) =
        blocking(move || service.list_records(&key, &c2, cursor.as_deref(), limit, reverse))
            .await?;
    let records: Vec<Value> = rows
        .into_iter()
        .map(|(rkey, cid, value)| {
            json!({
                "uri": format!("at://{did}/{collection}/{rkey}"),
                "cid": cid.to_string(),
                "value": guild_core::data::to_json(&value),
            })
        })
        .collect();
    let mut out = json!({"records": records});
    if let Some(c) = next {
        out["cursor"] = Value::String(c);
    }
    Ok(axum::Json(out).into_response())
}

async fn describe_repo<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> XrpcResult {
    let (_, key) = read_scope(&state, &headers, &uri, raw, "repo").await?;
    let service = state.service.clone();
    let did = key.did.clone();
    let collections = blocking(move || service.collections(&key)).await?;
    Ok(axum::Json(json!({
        "handle": "handle.invalid",
        "did": did,
        "didDoc": {
            "@context": ["https://www.w3.org/ns/did/v1"],
            "id": did,
        },
        "collections": collections,
        "handleIsCorrect": false,
    }))
    .into_response())
}

/// The `collection` and `rkey` parameters, checked.
fn record_path(p: &Params) -> Result<(String, String), XrpcError> {
    let collection = p.req("collection")?;
    guild_core::syntax::Nsid::parse(collection)
        .map_err(|e| XrpcError::invalid(format!("collection: {e}")))?;
    let rkey = p.req("rkey")?;
    guild_core::syntax::RecordKey::parse(rkey)
        .map_err(|e| XrpcError::invalid(format!("rkey: {e}")))?;
    Ok((collection.to_string(), rkey.to_string()))
}

fn car_response(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/vnd.ipld.car")], bytes).into_response()
}

async fn get_repo<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> XrpcResult {
    let (p, key) = read_scope(&state, &headers, &uri, raw, "did").await?;
    let since = p.opt("since").map(str::to_string);
    let service = state.service.clone();
    let car = blocking(move || service.repo_car(&key, since.as_deref())).await?;
    Ok(car_response(car))
}

/// `com.atproto.sync.listRepos`: the public repos this node holds, in DID order (`limit`
/// 1–1000, default 500; `cursor` the last DID of the previous page).
async fn list_repos<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    RawQuery(raw): RawQuery,
) -> XrpcResult {
    let p = Params::parse(raw);
    let limit = match p.opt("limit") {
        None => 500,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(XrpcError::invalid(
                    "limit must be an integer from 1 to 1000",
                ));
            }
        },
    };
    let cursor = p.opt("cursor").map(str::to_owned);
    let service = state.service.clone();
    let repos = blocking(move || service.public_repos()).await?;
    let mut page: Vec<Value> = Vec::new();
    let mut more = false;
    for (did, head) in repos
        .iter()
        .filter(|(d, _)| cursor.as_deref().is_none_or(|c| d.as_str() > c))
    {
        if page.len() == limit {
            more = true;
            break;
        }
        page.push(json!({
            "did": did.as_str(),
            "head": head.commit.to_string(),
            "rev": head.rev.as_str(),
            "active": true,
        }));
    }
    let mut out = json!({ "repos": page });
    if more && let Some(last) = out["repos"].as_array().and_then(|a| a.last()).cloned() {
        out["cursor"] = last["did"].clone();
    }
    Ok(axum::Json(out).into_response())
}

async fn get_latest_commit<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> XrpcResult {
    let (_, key) = read_scope(&state, &headers, &uri, raw, "did").await?;
    let service = state.service.clone();
    let head = blocking(move || service.head(&key)).await?;
    Ok(
        axum::Json(json!({"cid": head.commit.to_string(), "rev": head.rev.as_str()}))
            .into_response(),
    )
}

async fn get_record_proof<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> XrpcResult {
    let (p, key) = read_scope(&state, &headers, &uri, raw, "did").await?;
    let (collection, rkey) = record_path(&p)?;
    let service = state.service.clone();
    let car = blocking(move || service.record_proof(&key, &collection, &rkey)).await?;
    Ok(car_response(car))
}

/// `coop.guild.node.getStatus`.
async fn node_status<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    Xrpc(get_status::Params {}): Xrpc<get_status::GetStatus>,
) -> XrpcResult {
    let service = state.service.clone();
    let uptime_secs = state.started.elapsed().as_secs();
    let repos = blocking(move || {
        let store = service.store();
        let mut out = Vec::new();
        for (key, head) in store.repos()? {
            let records = store.record_count(&key)?;
            out.push(get_status::Repo {
                did: key.did.into_string(),
                space: key.space.to_string(),
                commit: head.commit.to_string(),
                rev: head.rev.as_str().to_owned(),
                records,
            });
        }
        Ok(out)
    })
    .await?;
    Ok(axum::Json(get_status::Output {
        did: state.service.did().to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_secs,
        lexicons: state.service.registry().len() as u64,
        repos,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::{ServiceError, XrpcError, token_matches};

    #[test]
    fn a_declaration_delete_is_an_invalid_request() {
        let e = XrpcError::from(ServiceError::DeclarationDelete(
            "coop.guild.space.declaration/self".into(),
        ));
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(e.error, "InvalidRequest");
        assert!(
            e.message.contains("space declaration names the collective"),
            "{}",
            e.message
        );
        assert!(e.message.contains("cannot be deleted"), "{}", e.message);
    }

    #[test]
    fn only_the_exact_token_matches() {
        let token = "0123456789abcdef";
        assert!(token_matches(token, token));
        for wrong in [
            "",
            "0123456789abcdeF",
            "1123456789abcdef",
            "0123456789abcde",
            token.repeat(2).as_str(),
        ] {
            assert!(!token_matches(wrong, token), "{wrong:?}");
        }
    }
}
