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
use guild_service::deliveries::FLUSH_EVERY;
use guild_service::{BundleFile, Delivered, Delivery, FeedError, FeedHub, NodeStore};
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
        FeedError::Store(_) | FeedError::Random(_) | FeedError::Delivery(_) => err(
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
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
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
        .on_upgrade(move |socket| {
            let remote = peer.map(|p| p.0.0.to_string());
            stream(socket, feeds, did, remote, cursor, json)
        })
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
    remote: Option<String>,
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
    // Every logged event sent is a delivery; they reach the log in batches, off this task
    // (and the rest when the subscription ends, whichever way: `Sent`'s drop).
    let mut sent = Sent {
        feeds: feeds.clone(),
        builder: did.to_string(),
        remote,
        connection: sub.connection,
        buf: Vec::new(),
    };
    if let Some(info) = sub.info.take()
        && !send(&mut socket, &Frame::Message(Event::Info(info)), json).await
    {
        return;
    }
    for e in std::mem::take(&mut sub.replay) {
        let delivered = sent.entry(&e);
        if !send(&mut socket, &Frame::Message(e), json).await {
            return;
        }
        sent.push(delivered);
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
                    let delivered = sent.entry(&e);
                    if !send(&mut socket, &Frame::Message(e), json).await {
                        return;
                    }
                    sent.push(delivered);
                }
                None => return,
            },
            _ = beat.tick() => {
                sent.flush();
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

/// The feed events a subscription has sent and not yet handed to the delivery log.
struct Sent<S: NodeStore> {
    feeds: Arc<FeedHub<S>>,
    builder: String,
    remote: Option<String>,
    connection: u64,
    buf: Vec<Delivery>,
}

impl<S: NodeStore> Sent<S> {
    /// The delivery of `e`, if it is a logged event (not `#info`).
    fn entry(&self, e: &Event) -> Option<Delivery> {
        let event_seq = e.seq()?;
        let (event_type, bundle) = match e {
            Event::Bundle(b) => ("#bundle", Some(b.bundle.0.to_string())),
            Event::Revocation(_) => ("#revocation", None),
            Event::Agreement(_) => ("#agreement", None),
            Event::Info(_) => return None,
        };
        Some(Delivery {
            version: guild_service::deliveries::VERSION,
            seq: 0,
            builder: self.builder.clone(),
            time_micros: self.feeds.now_micros(),
            remote: self.remote.clone(),
            what: Delivered::Event {
                event_seq,
                event_type: event_type.to_owned(),
                bundle,
                connection: self.connection,
            },
        })
    }

    fn push(&mut self, d: Option<Delivery>) {
        if let Some(d) = d {
            self.buf.push(d);
            if self.buf.len() >= FLUSH_EVERY {
                self.flush();
            }
        }
    }

    fn flush(&mut self) {
        self.feeds.record(std::mem::take(&mut self.buf));
    }
}

impl<S: NodeStore> Drop for Sent<S> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// A download's body, counting the bytes handed to the connection; when it ends or is
/// dropped (the client went away), one entry goes to the delivery log.
struct Counted<S: NodeStore> {
    inner: axum::body::BodyDataStream,
    sent: u64,
    /// The body's `Content-Length`: the server stops reading the body once that much is sent.
    expected: Option<u64>,
    complete: bool,
    entry: Option<(Arc<FeedHub<S>>, Delivery)>,
}

impl<S: NodeStore> futures::Stream for Counted<S> {
    type Item = Result<axum::body::Bytes, axum::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let next = std::pin::Pin::new(&mut self.inner).poll_next(cx);
        match &next {
            std::task::Poll::Ready(Some(Ok(b))) => self.sent += b.len() as u64,
            std::task::Poll::Ready(None) => {
                self.complete = true;
                self.finish();
            }
            _ => {}
        }
        next
    }
}

impl<S: NodeStore> Counted<S> {
    fn finish(&mut self) {
        if let Some((feeds, mut d)) = self.entry.take() {
            if let Delivered::Download {
                bytes, complete, ..
            } = &mut d.what
            {
                *bytes = self.sent;
                *complete = self.complete || self.expected.is_some_and(|n| self.sent >= n);
            }
            feeds.record(vec![d]);
        }
    }
}

impl<S: NodeStore> Drop for Counted<S> {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `resp` with its body counted into a delivery-log entry for `builder`.
fn logged<S: NodeStore>(
    feeds: Arc<FeedHub<S>>,
    builder: &Did,
    remote: Option<String>,
    cid: &cid::Cid,
    file: BundleFile,
    range: Option<String>,
    resp: Response,
) -> Response {
    let entry = Delivery {
        version: guild_service::deliveries::VERSION,
        seq: 0,
        builder: builder.to_string(),
        time_micros: feeds.now_micros(),
        remote,
        what: Delivered::Download {
            bundle: cid.to_string(),
            file: file.as_str().to_owned(),
            range,
            status: resp.status().as_u16(),
            bytes: 0,
            complete: false,
        },
    };
    let (parts, body) = resp.into_parts();
    let expected = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let counted = Counted {
        inner: body.into_data_stream(),
        sent: 0,
        expected,
        complete: false,
        entry: Some((feeds, entry)),
    };
    Response::from_parts(parts, axum::body::Body::from_stream(counted))
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
    let file = match param(&params, "file")? {
        None => BundleFile::Car,
        Some(f) => BundleFile::parse(f).ok_or_else(|| {
            XrpcError::invalid(format!(
                "file: {f:?} is not one of car, croissant, card, disclosure"
            ))
        })?,
    };
    let desk = state.bundles.as_deref().ok_or_else(|| {
        err(
            StatusCode::NOT_IMPLEMENTED,
            "MethodNotImplemented",
            "this node runs without networking",
        )
    })?;
    let admin = crate::server::check_auth(&state, req.headers()).is_ok();
    let mut delivery = None;
    if !admin {
        let feeds = feeds(&state)?;
        let peer = req.extensions().get::<ConnectInfo<SocketAddr>>();
        limit(feeds, peer)?;
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
        let remote = peer.map(|ConnectInfo(a)| a.to_string());
        delivery = Some((feeds.clone(), did, remote));
    }
    let path = desk
        .file_path(&cid, file)
        .await
        .map_err(crate::bundles::failed)?;
    let range = req
        .headers()
        .get(header::RANGE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let mut resp = serve_bundle_file(&path, &cid, req).await?;
    if file != BundleFile::Car {
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(file.media_type()),
        );
        // (one ETag per file of the bundle)
        if let Ok(v) = header::HeaderValue::from_str(&format!("\"{cid}-{}\"", file.as_str())) {
            headers.insert(header::ETAG, v);
        }
    }
    // A builder's download is a delivery (the admin's is not: no builder got anything).
    Ok(match delivery {
        Some((feeds, did, remote)) => logged(feeds, &did, remote, &cid, file, range, resp),
        None => resp,
    })
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

/// `coop.guild.feed.listDeliveries` (admin): the delivery log, a page at a time.
pub(crate) async fn list_deliveries<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    Xrpc(params): Xrpc<crate::methods::feed::list_deliveries::ListDeliveries>,
) -> XrpcResult {
    use crate::methods::feed::list_deliveries as m;
    let hub = feeds(&state)?.clone();
    let cursor = match params.cursor.as_deref() {
        None => None,
        Some(c) => Some(c.parse::<u64>().map_err(|_| {
            XrpcError::invalid(format!("cursor: {c:?} is not a cursor of this log"))
        })?),
    };
    let limit = params.limit.unwrap_or(50).clamp(1, m::MAX_LIMIT) as usize;
    let filter = guild_service::deliveries::Filter {
        builder: params.builder,
        bundle: params.bundle,
    };
    // (a filtered page reads at most this many entries, then ends early with a cursor)
    const SCAN_BUDGET: usize = 10_000;
    let page = tokio::task::spawn_blocking(move || {
        hub.deliveries().list(&filter, cursor, limit, SCAN_BUDGET)
    })
    .await
    .map_err(|e| {
        err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            e.to_string(),
        )
    })?
    .map_err(|e| feed_err(e.into()))?;
    ok(m::Output {
        deliveries: page.deliveries.into_iter().map(delivery_view).collect(),
        cursor: page.cursor.map(|c| c.to_string()),
    })
}

fn delivery_view(d: Delivery) -> crate::methods::feed::list_deliveries::Delivery {
    let mut v = crate::methods::feed::list_deliveries::Delivery {
        seq: d.seq,
        builder: d.builder,
        time: guild_core::syntax::Datetime::from_unix_micros(d.time_micros).to_string(),
        remote: d.remote,
        kind: String::new(),
        bundle: None,
        file: None,
        range: None,
        status: None,
        bytes: None,
        complete: None,
        event_seq: None,
        event_type: None,
        connection: None,
    };
    match d.what {
        Delivered::Download {
            bundle,
            file,
            range,
            status,
            bytes,
            complete,
        } => {
            v.kind = "download".into();
            v.bundle = Some(bundle);
            v.file = Some(file);
            v.range = range;
            v.status = Some(u64::from(status));
            v.bytes = Some(bytes);
            v.complete = Some(complete);
        }
        Delivered::Event {
            event_seq,
            event_type,
            bundle,
            connection,
        } => {
            v.kind = "event".into();
            v.bundle = bundle;
            v.event_seq = Some(event_seq);
            v.event_type = Some(event_type);
            v.connection = Some(connection);
        }
    }
    v
}
