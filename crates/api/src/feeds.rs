//! Builders' endpoints on a steward's node (protocol.md §7): the login
//! (`coop.guild.feed.getChallenge`, `coop.guild.feed.login`), the feed
//! (`coop.guild.feed.subscribe`, a WebSocket of AT Protocol event-stream frames, or JSON text
//! frames with `encoding=json`) and the bundle download (`coop.guild.bundle.get`, with range
//! requests and an `ETag`). None needs the admin token; the feed and the download take the
//! builder's bearer token instead, and show a builder only its own agreements' events and
//! bundles. The rules are guild-feed's, the log and the subscribers guild-service's
//! [`FeedHub`]; this module moves frames and bytes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use guild_core::syntax::Did;
use guild_feed::{Event, Frame};
use guild_service::{FeedError, FeedHub, NodeStore};
use std::net::SocketAddr;

use crate::collective::{err, ok};
use crate::methods::feed::{get_challenge, login};
use crate::server::{ApiState, XrpcError, query_params};
use crate::validation::Xrpc;

type XrpcResult = Result<Response, XrpcError>;

/// A WebSocket ping this often keeps idle subscriptions alive (well inside the 30 s after
/// which common clients give up on a silent stream).
const HEARTBEAT: Duration = Duration::from_secs(10);
/// A subscriber whose socket takes longer than this to take one frame is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

fn feeds<S>(state: &ApiState<S>) -> Result<&Arc<FeedHub<S>>, XrpcError> {
    state.feeds.as_ref().ok_or_else(|| {
        err(
            StatusCode::NOT_IMPLEMENTED,
            "MethodNotImplemented",
            "this node serves no feeds (it runs without networking)",
        )
    })
}

/// Refuses a client over its address's rate (logins and downloads).
fn limit<S: NodeStore>(
    hub: &FeedHub<S>,
    peer: Option<&ConnectInfo<SocketAddr>>,
) -> Result<(), XrpcError> {
    match peer {
        Some(ConnectInfo(addr)) => hub.allow(addr.ip()).map_err(feed_err),
        None => Ok(()),
    }
}

fn feed_err(e: FeedError) -> XrpcError {
    match e {
        FeedError::RateLimited { retry_after_ms, .. } => {
            let mut e = err(
                StatusCode::TOO_MANY_REQUESTS,
                "RateLimitExceeded",
                e.to_string(),
            );
            e.retry_after_secs = Some(retry_after_ms.div_ceil(1000).max(1));
            e
        }
        FeedError::Auth(guild_feed::AuthError::TooManyChallenges) => err(
            StatusCode::TOO_MANY_REQUESTS,
            "RateLimitExceeded",
            e.to_string(),
        ),
        FeedError::Auth(
            guild_feed::AuthError::UnknownToken | guild_feed::AuthError::ExpiredToken(_),
        ) => err(
            StatusCode::UNAUTHORIZED,
            "AuthenticationRequired",
            e.to_string(),
        ),
        FeedError::Auth(_) => err(StatusCode::BAD_REQUEST, "InvalidChallenge", e.to_string()),
        FeedError::FutureCursor { .. } => {
            err(StatusCode::BAD_REQUEST, "FutureCursor", e.to_string())
        }
        FeedError::Store(_) | FeedError::Random(_) => err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            e.to_string(),
        ),
    }
}

/// `coop.guild.feed.getChallenge`.
pub(crate) async fn get_challenge<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    Xrpc(_): Xrpc<get_challenge::GetChallenge>,
) -> XrpcResult {
    let hub = feeds(&state)?;
    limit(hub, peer.as_ref().map(|p| &p.0))?;
    let c = hub.challenge().map_err(feed_err)?;
    ok(get_challenge::Output {
        nonce: c.nonce,
        audience: c.audience,
        expires_at: c.expires_at.to_string(),
    })
}

/// `coop.guild.feed.login`.
pub(crate) async fn login<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    Xrpc(input): Xrpc<login::Login>,
) -> XrpcResult {
    let did = Did::parse(&input.did).map_err(|e| XrpcError::invalid(format!("did: {e}")))?;
    limit(feeds(&state)?, peer.as_ref().map(|p| &p.0))?;
    let s = feeds(&state)?
        .login(&did, &input.nonce, &input.signature.0)
        .map_err(feed_err)?;
    tracing::info!(builder = %s.did, "builder logged in");
    ok(login::Output {
        did: s.did.to_string(),
        token: s.token,
        expires_at: s.expires_at.to_string(),
    })
}

/// The bearer token of a request: the `Authorization` header, or the `token` parameter.
fn bearer<'a>(headers: &'a HeaderMap, params: &'a [(String, String)]) -> Option<&'a str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| {
            params
                .iter()
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.as_str())
        })
}

/// The builder a request authenticates as.
fn builder<S: NodeStore>(
    feeds: &FeedHub<S>,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> Result<Did, XrpcError> {
    let token = bearer(headers, params).ok_or_else(|| {
        err(
            StatusCode::UNAUTHORIZED,
            "AuthenticationRequired",
            "log in first (coop.guild.feed.getChallenge, then coop.guild.feed.login) and send \
             the token as Authorization: Bearer …",
        )
    })?;
    feeds.authenticate(token).map_err(feed_err)
}

/// One parameter, at most once.
fn param<'a>(params: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, XrpcError> {
    let mut found = params.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
    let first = found.next();
    if found.next().is_some() {
        return Err(XrpcError::invalid(format!("{name}: given more than once")));
    }
    Ok(first.map(String::as_str))
}

/// `coop.guild.feed.subscribe`: the builder's feed, over a WebSocket.
pub(crate) async fn subscribe<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> XrpcResult {
    let feeds = feeds(&state)?.clone();
    let params = query_params(raw.as_deref());
    if let Some((k, _)) = params
        .iter()
        .find(|(k, _)| !["cursor", "encoding", "token"].contains(&k.as_str()))
    {
        return Err(XrpcError::invalid(format!("{k}: no such parameter")));
    }
    let cursor = match param(&params, "cursor")? {
        None => None,
        Some(c) => Some(
            c.parse::<u64>()
                .ok()
                .filter(|c| *c <= i64::MAX as u64)
                .ok_or_else(|| {
                    XrpcError::invalid(format!("cursor: {c:?} is not a non-negative integer"))
                })?,
        ),
    };
    let json = match param(&params, "encoding")? {
        None | Some("cbor") => false,
        Some("json") => true,
        Some(other) => {
            return Err(XrpcError::invalid(format!(
                "encoding: {other:?} is neither cbor nor json"
            )));
        }
    };
    let did = builder(&feeds, &headers, &params)?;
    let ws = ws.map_err(|e| {
        XrpcError::invalid(format!(
            "coop.guild.feed.subscribe is a WebSocket: send an upgrade request ({e})"
        ))
    })?;
    // A subscriber only reads: small buffers for what it sends (BENCHMARKS.md has the memory
    // per subscriber), and a bound on any message it sends anyway.
    Ok(ws
        .read_buffer_size(4 * 1024)
        .max_message_size(64 * 1024)
        .max_frame_size(64 * 1024)
        .on_upgrade(move |socket| stream(socket, feeds, did, cursor, json))
        .into_response())
}

fn encode(frame: &Frame, json: bool) -> Option<Message> {
    let out = if json {
        frame.to_json().map(|t| Message::Text(t.into()))
    } else {
        frame.to_cbor().map(|b| Message::Binary(b.into()))
    };
    match out {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::error!("cannot encode a feed frame: {e}");
            None
        }
    }
}

/// Sends one frame; false when the subscriber is gone or too slow to take it.
async fn send(socket: &mut WebSocket, frame: &Frame, json: bool) -> bool {
    let Some(m) = encode(frame, json) else {
        return false;
    };
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, socket.send(m)).await,
        Ok(Ok(()))
    )
}

async fn close_with(socket: &mut WebSocket, frame: Frame, json: bool) {
    let _ = send(socket, &frame, json).await;
    let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Close(None))).await;
}

/// One subscriber's stream: the `#info` if outdated, the replay, then live events; errors
/// as error frames, then the socket closes.
async fn stream<S: NodeStore>(
    mut socket: WebSocket,
    feeds: Arc<FeedHub<S>>,
    did: Did,
    cursor: Option<u64>,
    json: bool,
) {
    let mut sub = match feeds.subscribe(&did, cursor) {
        Ok(s) => s,
        Err(e @ FeedError::FutureCursor { .. }) => {
            close_with(
                &mut socket,
                Frame::error("FutureCursor", e.to_string()),
                json,
            )
            .await;
            return;
        }
        Err(e) => {
            close_with(
                &mut socket,
                Frame::error("InternalServerError", e.to_string()),
                json,
            )
            .await;
            return;
        }
    };
    tracing::info!(builder = %did, ?cursor, replay = sub.replay.len(), "feed subscriber");
    if let Some(info) = sub.info.take()
        && !send(&mut socket, &Frame::Message(Event::Info(info)), json).await
    {
        return;
    }
    for e in std::mem::take(&mut sub.replay) {
        if !send(&mut socket, &Frame::Message(e), json).await {
            return;
        }
    }
    // The subscriber is caught up (a client run with `--once` stops here).
    let done = Frame::Message(Event::Info(guild_feed::InfoEvent {
        name: "ReplayComplete".into(),
        message: None,
    }));
    if !send(&mut socket, &done, json).await {
        return;
    }
    let mut beat = tokio::time::interval(HEARTBEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    beat.tick().await;
    loop {
        tokio::select! {
            next = sub.live.recv() => match next {
                Some(_) | None if sub.too_slow() => {
                    close_with(
                        &mut socket,
                        Frame::error(
                            "ConsumerTooSlow",
                            "the subscriber fell too far behind; reconnect with the last seq \
                             seen as the cursor",
                        ),
                        json,
                    )
                    .await;
                    return;
                }
                Some(e) => {
                    if !send(&mut socket, &Frame::Message(e), json).await {
                        return;
                    }
                }
                None => return,
            },
            _ = beat.tick() => {
                let ping = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Ping(Vec::new().into())));
                if !matches!(ping.await, Ok(Ok(()))) {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                // A subscriber sends nothing but control frames; the socket answers pings.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// `coop.guild.bundle.get`: the sealed bundle's CAR, for the admin (token) or for the
/// builder of the bundle's agreement (its bearer token); with `ETag` (the manifest CID: the
/// bytes never change) and range requests, so that a download resumes.
pub(crate) async fn get_bundle<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    req: axum::extract::Request,
) -> XrpcResult {
    let params = query_params(req.uri().query());
    let cid = param(&params, "cid")?.ok_or_else(|| XrpcError::invalid("cid: required"))?;
    let cid = crate::collective::parse_cid(cid, "cid")?;
    let desk = state.bundles.as_deref().ok_or_else(|| {
        err(
            StatusCode::NOT_IMPLEMENTED,
            "MethodNotImplemented",
            "this node runs without networking",
        )
    })?;
    let admin = crate::server::check_auth(&state, req.headers()).is_ok();
    if !admin {
        let feeds = feeds(&state)?;
        limit(feeds, req.extensions().get::<ConnectInfo<SocketAddr>>())?;
        let did = builder(feeds, req.headers(), &params)?;
        let agreement = desk
            .agreement_of(&cid)
            .await
            .map_err(crate::bundles::failed)?;
        if feeds.builder_of(&agreement).as_ref() != Some(&did) {
            return Err(err(
                StatusCode::FORBIDDEN,
                "NotAuthorized",
                format!("{did} is not the builder of bundle {cid}'s agreement"),
            ));
        }
    }
    let path = desk.car_path(&cid).await.map_err(crate::bundles::failed)?;
    serve_bundle_file(&path, &cid, req).await
}

/// The transfer half of `coop.guild.bundle.get`, once the caller is authorised: the CAR at
/// `path` with `ETag` (the manifest CID) and `If-None-Match`, and range requests
/// (`Range`, `If-Range`: 206 or 416), streamed from the file.
pub async fn serve_bundle_file(
    path: &std::path::Path,
    cid: &cid::Cid,
    req: axum::extract::Request,
) -> Result<Response, XrpcError> {
    use tower::ServiceExt as _;
    let etag = format!("\"{cid}\"");
    if req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let mut resp = tower_http::services::ServeFile::new(path)
        .oneshot(req)
        .await
        .map_err(|e| {
            err(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                format!("cannot read the bundle: {e}"),
            )
        })?
        .map(axum::body::Body::new);
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/vnd.ipld.car"),
    );
    if let Ok(v) = header::HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    headers.insert(
        header::ACCEPT_RANGES,
        header::HeaderValue::from_static("bytes"),
    );
    Ok(resp)
}
