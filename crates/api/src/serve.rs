//! Serving the router over TCP within bounds, so that neither idle nor slow nor large requests
//! can exhaust the node:
//!
//! - at most [`Limits::max_connections`] connections are served at once; the accept loop
//!   takes no more until one closes, so further clients wait in the kernel's listen backlog;
//! - a connection must send a request's headers within [`Limits::header_read_timeout`] of
//!   opening (or of its previous answer, when kept alive), else it is closed; headers are
//!   bounded by hyper's read buffer ([`MAX_READ_BUFFER`]);
//! - a request body is read only after authentication, must be at most `max_body_bytes`
//!   (`PayloadTooLarge`) and arrive whole within [`Limits::body_read_timeout`]
//!   (`RequestTimeout`);
//! - request bodies being read or handled at once share a budget of
//!   [`Limits::max_inflight_body_bytes`] ([`Bodies`]): each reserves its declared length (the
//!   largest allowed when it declares none) before it is read, waits at most
//!   [`Limits::inflight_wait`] for room, else is refused with `NotEnoughResources` (503).
//!
//! [`serve_tls`] serves the same over TLS only (the public address, when a certificate is
//! configured): a connection holds its slot during its handshake, which must complete within
//! the configuration's handshake timeout.
//!
//! Every refusal is an XRPC error, `{"error", "message"}`. On shutdown the loop stops
//! accepting, lets every request in progress finish, and closes idle connections.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt as _;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::server::XrpcError;
use crate::tls::ServerTls;

/// The most a connection's read buffer holds, so the most a request's line and headers may
/// take (hyper answers 431 beyond); hyper's default is about 400 kB.
pub const MAX_READ_BUFFER: usize = 64 * 1024;

/// The server's bounds. [`Limits::default`] is what the node uses unless configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Connections served at once.
    pub max_connections: usize,
    /// Time a connection has to send a request's headers.
    pub header_read_timeout: Duration,
    /// Time a request's body has to arrive, once the server starts reading it.
    pub body_read_timeout: Duration,
    /// Bytes of request bodies read or handled at once, all connections together.
    pub max_inflight_body_bytes: usize,
    /// How long a body waits for room in that budget before the request is refused.
    pub inflight_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 5_000_000,
            max_connections: 512,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_inflight_body_bytes: 64 * 1024 * 1024,
            inflight_wait: Duration::from_secs(10),
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then stops
/// accepting and returns once every connection has finished its request in progress.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &Limits,
    shutdown: impl Future<Output = ()> + Send,
) {
    serve_with(listener, router, limits, None, shutdown).await;
}

/// As [`serve`], over TLS only: each connection first completes a TLS handshake within the
/// configuration's handshake timeout (a connection slot is held meanwhile); a client whose
/// handshake fails or stalls is dropped (logged at debug) and nothing else is affected.
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    limits: &Limits,
    tls: ServerTls,
    shutdown: impl Future<Output = ()> + Send,
) {
    serve_with(listener, router, limits, Some(tls), shutdown).await;
}

async fn serve_with(
    listener: TcpListener,
    router: Router,
    limits: &Limits,
    tls: Option<ServerTls>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let slots = Arc::new(Semaphore::new(
        limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_READ_BUFFER);
    // Graceful shutdown by hand: hyper-util's `GracefulShutdown` does not watch connections
    // that may upgrade (the builders' feed is a WebSocket).
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let tracker = tokio_util::task::TaskTracker::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A free slot first: until one is, new connections wait in the listen backlog.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // With upgrades: the builders' feed is a WebSocket (an upgraded connection leaves
        // this task, and its slot, once the upgrade is done).
        // The client's address, for handlers that rate-limit by it.
        let service = TowerToHyperService::new(tower::Layer::layer(
            &axum::Extension(axum::extract::ConnectInfo(peer)),
            router.clone(),
        ));
        match &tls {
            None => {
                let conn = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades();
                tracker.spawn(serve_connection(conn, stopped.clone(), slot));
            }
            Some(tls) => {
                let (tls, builder, mut stop) = (tls.clone(), builder.clone(), stopped.clone());
                tracker.spawn(async move {
                    let handshake = tokio::time::timeout(
                        tls.handshake_timeout(),
                        tls.acceptor().accept(stream),
                    );
                    let stream = tokio::select! {
                        done = handshake => match done {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, "TLS handshake failed: {e}");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(
                                    %peer,
                                    "no TLS handshake within {} s; connection closed",
                                    tls.handshake_timeout().as_secs_f64()
                                );
                                return;
                            }
                        },
                        () = stopping(&mut stop) => return,
                    };
                    let conn = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    serve_connection(conn, stop, slot).await;
                });
            }
        }
    }
    drop(listener);
    tracing::debug!(connections = tracker.len(), "waiting for open connections");
    let _ = stop.send(true);
    tracker.close();
    tracker.wait().await;
}

/// Completes once the server stops (or its stop signal is gone).
async fn stopping(stop: &mut tokio::sync::watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            break;
        }
    }
}

async fn serve_connection<C>(
    conn: C,
    mut stop: tokio::sync::watch::Receiver<bool>,
    slot: OwnedSemaphorePermit,
) where
    C: Future<Output = Result<(), hyper::Error>> + GracefulConn,
{
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stopping(&mut stop) => {
            conn.as_mut().shut_down();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!("connection closed: {e}");
    }
    drop(slot);
}

/// A connection that can finish its request in progress and then close.
trait GracefulConn {
    fn shut_down(self: std::pin::Pin<&mut Self>);
}

impl<I, S, B> GracefulConn for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shut_down(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// A failed `accept`: a connection reset before it was taken is nothing; anything else (too
/// many open files, say) is logged and the loop pauses, so as not to spin.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!("cannot accept a connection: {e}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// How request bodies are read: at most `max_body_bytes`, within `body_read_timeout`, inside
/// the shared in-flight budget. Clones share the budget.
#[derive(Debug, Clone)]
pub struct Bodies {
    max_bytes: usize,
    read_timeout: Duration,
    wait: Duration,
    budget: Arc<Semaphore>,
    /// The budget, in [`UNIT`]s.
    capacity: u32,
}

/// The budget counts kibibytes, so that a `u32` of permits covers any body.
const UNIT: usize = 1024;

/// Room reserved in the in-flight budget; released when dropped.
#[derive(Debug)]
pub struct BodyPermit(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl BodyPermit {
    /// No reservation (an empty body, or one read elsewhere).
    pub fn none() -> Self {
        BodyPermit(None)
    }
}

impl Bodies {
    /// The bounds of `limits` on bodies, with a fresh budget.
    pub fn new(limits: &Limits) -> Self {
        let capacity = units(limits.max_inflight_body_bytes).max(1);
        Bodies {
            max_bytes: limits.max_body_bytes,
            read_timeout: limits.body_read_timeout,
            wait: limits.inflight_wait,
            budget: Arc::new(Semaphore::new(capacity as usize)),
            capacity,
        }
    }

    /// Largest request body accepted, in bytes.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Bytes of the budget free now.
    pub fn available(&self) -> usize {
        self.budget.available_permits().saturating_mul(UNIT)
    }

    /// Reserves room for a body that declares `declared` bytes (`None`: no length given, so
    /// the largest allowed). A body over `max_body_bytes` is refused at once; otherwise this
    /// waits for room at most the configured wait.
    pub async fn reserve(&self, declared: Option<u64>) -> Result<BodyPermit, XrpcError> {
        let bytes = match declared {
            Some(n) if n > self.max_bytes as u64 => return Err(self.too_large()),
            Some(n) => n as usize,
            None => self.max_bytes,
        };
        if bytes == 0 {
            return Ok(BodyPermit::none());
        }
        // A body larger than the whole budget takes all of it rather than waiting forever.
        let want = units(bytes).min(self.capacity);
        match tokio::time::timeout(self.wait, self.budget.clone().acquire_many_owned(want)).await {
            Ok(Ok(permit)) => Ok(BodyPermit(Some(permit))),
            Ok(Err(_)) | Err(_) => Err(XrpcError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "NotEnoughResources",
                format!(
                    "the node is reading too many request bodies at once (waited {} s for room); try again",
                    self.wait.as_secs_f64()
                ),
            )),
        }
    }

    /// Reads a body: reserves room for it, then reads it whole within the read timeout. The
    /// permit must be kept while the body (or anything made from it) is in memory.
    pub(crate) async fn read(
        &self,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<(Bytes, BodyPermit), XrpcError> {
        let declared = match headers.get(header::CONTENT_LENGTH) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or_else(|| XrpcError::invalid("content-length is not a number"))?,
            ),
        };
        let permit = self.reserve(declared).await?;
        let capacity = declared.map_or(0, |n| n as usize);
        match tokio::time::timeout(self.read_timeout, self.collect(body, capacity)).await {
            Ok(Ok(bytes)) => Ok((bytes, permit)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(XrpcError::new(
                StatusCode::REQUEST_TIMEOUT,
                "RequestTimeout",
                format!(
                    "the request body did not arrive within {} s",
                    self.read_timeout.as_secs_f64()
                ),
            )),
        }
    }

    /// The body's bytes, refused as soon as they pass `max_body_bytes`.
    async fn collect(&self, mut body: Body, capacity: usize) -> Result<Bytes, XrpcError> {
        let mut out = Vec::with_capacity(capacity.min(self.max_bytes));
        while let Some(frame) = body.frame().await {
            let frame = frame
                .map_err(|e| XrpcError::invalid(format!("cannot read the request body: {e}")))?;
            if let Ok(data) = frame.into_data() {
                if out.len().saturating_add(data.len()) > self.max_bytes {
                    return Err(self.too_large());
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(Bytes::from(out))
    }

    fn too_large(&self) -> XrpcError {
        XrpcError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            format!("request body is larger than {} bytes", self.max_bytes),
        )
    }
}

/// The outermost router layer: lends the request's body to the router and, if the answer
/// comes before the body was read to its end (a refusal: no token, too large), reads the rest
/// and discards it, for at most the body read timeout, before answering. A client that sends
/// its whole body before reading the answer then gets the answer, not a reset connection.
/// Nothing is kept, so this costs time, not memory; a client that sent `Expect: 100-continue`
/// has not sent its body and is answered at once.
pub(crate) async fn drain_unread(
    axum::extract::State(bodies): axum::extract::State<Bodies>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let expects_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        return next.run(req).await;
    }
    let (back, mut returned) = tokio::sync::oneshot::channel();
    let req = req.map(|body| {
        Body::new(Lent {
            body,
            back: Some(back),
        })
    });
    let resp = next.run(req).await;
    if let Ok(mut rest) = returned.try_recv() {
        let drained = tokio::time::timeout(bodies.read_timeout, async {
            while let Some(Ok(_)) = rest.frame().await {}
        })
        .await;
        if drained.is_err() {
            tracing::debug!("an unread request body was still arriving; the connection closes");
        }
    }
    resp
}

/// A request body lent to the router: dropped before its end, it goes back to
/// [`drain_unread`].
struct Lent {
    body: Body,
    back: Option<tokio::sync::oneshot::Sender<Body>>,
}

impl axum::body::HttpBody for Lent {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if !axum::body::HttpBody::is_end_stream(&self.body)
            && let Some(back) = self.back.take()
        {
            let _ = back.send(std::mem::take(&mut self.body));
        }
    }
}

/// `bytes` in budget units, rounded up (at most `u32::MAX`, within a semaphore's range).
fn units(bytes: usize) -> u32 {
    let n = bytes.div_ceil(UNIT).min(Semaphore::MAX_PERMITS);
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn bodies(max_body: usize, budget: usize, wait_ms: u64) -> Bodies {
        Bodies::new(&Limits {
            max_body_bytes: max_body,
            max_inflight_body_bytes: budget,
            inflight_wait: Duration::from_millis(wait_ms),
            ..Limits::default()
        })
    }

    fn error_of(e: XrpcError) -> (StatusCode, &'static str) {
        (e.status(), e.error())
    }

    #[tokio::test]
    async fn a_body_waits_for_room_then_is_refused_with_503() {
        let b = bodies(8 * UNIT, 10 * UNIT, 50);
        let first = b.reserve(Some(6 * UNIT as u64)).await.unwrap();
        assert_eq!(b.available(), 4 * UNIT);
        let e = b.reserve(Some(6 * UNIT as u64)).await.unwrap_err();
        assert_eq!(
            error_of(e),
            (StatusCode::SERVICE_UNAVAILABLE, "NotEnoughResources")
        );
        // A small one still fits.
        let small = b.reserve(Some(100)).await.unwrap();
        drop(first);
        let second = b.reserve(Some(6 * UNIT as u64)).await.unwrap();
        drop((small, second));
        assert_eq!(b.available(), 10 * UNIT);
    }

    #[tokio::test]
    async fn a_waiting_body_gets_room_when_it_is_freed() {
        let b = bodies(8 * UNIT, 10 * UNIT, 60_000);
        let first = b.reserve(Some(8 * UNIT as u64)).await.unwrap();
        let b2 = b.clone();
        let waiting = tokio::spawn(async move { b2.reserve(Some(8 * UNIT as u64)).await });
        drop(first);
        let second = waiting.await.unwrap().unwrap();
        assert_eq!(b.available(), 2 * UNIT);
        drop(second);
    }

    #[tokio::test]
    async fn sizes_are_checked_before_any_wait() {
        let b = bodies(8 * UNIT, 10 * UNIT, 60_000);
        let _all = b.reserve(None).await.unwrap();
        // No length: the largest body allowed is reserved.
        assert_eq!(b.available(), 2 * UNIT);
        let e = b.reserve(Some(8 * UNIT as u64 + 1)).await.unwrap_err();
        assert_eq!(
            error_of(e),
            (StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge")
        );
        // An empty body needs no room.
        b.reserve(Some(0)).await.unwrap();
    }

    #[tokio::test]
    async fn a_body_larger_than_the_budget_takes_all_of_it() {
        let b = bodies(8 * UNIT, 4 * UNIT, 50);
        let all = b.reserve(Some(8 * UNIT as u64)).await.unwrap();
        assert_eq!(b.available(), 0);
        drop(all);
        assert_eq!(b.available(), 4 * UNIT);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_bodies_never_exceed_the_budget() {
        let b = bodies(4 * UNIT, 10 * UNIT, 60_000);
        let held = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let (b, held, peak) = (b.clone(), held.clone(), peak.clone());
                tokio::spawn(async move {
                    let size = (i % 4 + 1) * UNIT;
                    let permit = b.reserve(Some(size as u64)).await.unwrap();
                    let now = held.fetch_add(size, Ordering::SeqCst) + size;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    held.fetch_sub(size, Ordering::SeqCst);
                    drop(permit);
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let peak = peak.load(Ordering::SeqCst);
        assert!(peak <= 10 * UNIT, "{peak} bytes held at once");
        assert_eq!(b.available(), 10 * UNIT);
    }

    #[tokio::test]
    async fn reading_bounds_size_and_time() {
        let b = Bodies::new(&Limits {
            max_body_bytes: 10,
            body_read_timeout: Duration::from_millis(50),
            ..Limits::default()
        });
        let none = HeaderMap::new();
        let (bytes, _) = b.read(&none, Body::from("0123456789")).await.unwrap();
        assert_eq!(&bytes[..], b"0123456789");
        // No length declared: refused once past the limit.
        let e = b.read(&none, Body::from("0123456789x")).await.unwrap_err();
        assert_eq!(
            error_of(e),
            (StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge")
        );
        // A body that never ends.
        let endless = Body::new(
            http_body_util::Full::new(Bytes::from_static(b"01")).with_trailers(
                std::future::pending::<Option<Result<HeaderMap, std::convert::Infallible>>>(),
            ),
        );
        let e = b.read(&none, endless).await.unwrap_err();
        assert_eq!(error_of(e), (StatusCode::REQUEST_TIMEOUT, "RequestTimeout"));
        let mut bad = HeaderMap::new();
        bad.insert(header::CONTENT_LENGTH, "ten".parse().unwrap());
        let e = b.read(&bad, Body::empty()).await.unwrap_err();
        assert_eq!(error_of(e), (StatusCode::BAD_REQUEST, "InvalidRequest"));
    }
}
