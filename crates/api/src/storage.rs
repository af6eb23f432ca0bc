//! A failed store at the HTTP surface. While the node's store refuses work (it failed on an
//! I/O error, a full disk most often, and has not recovered yet: see guild-store's
//! `RepoStore::unavailable`), `_health` answers 503 with the reason, and an answer that the
//! failure turned into an `InternalServerError` is sent as 503 `StorageUnavailable` with the
//! store's reason instead. The store recovers by itself once the disk takes writes again; then
//! both go back to normal.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use guild_service::NodeStore;
use serde_json::json;

use crate::server::{ApiState, XrpcError};

/// The XRPC error name of a refusal because the store failed.
pub const STORAGE_UNAVAILABLE: &str = "StorageUnavailable";

/// Why the store refuses work now, if it does (asking may try a recovery: off the runtime).
async fn unavailable<S: NodeStore>(state: &ApiState<S>) -> Option<String> {
    let store = state.service.store().clone();
    tokio::task::spawn_blocking(move || store.unavailable())
        .await
        .unwrap_or_else(|e| Some(format!("the storage check failed: {e}")))
}

/// `GET /xrpc/_health`: 200 `{"version", "status": "ok"}`, or 503 with `"status": "degraded"`
/// and the store's reason while it refuses work.
pub(crate) async fn health<S: NodeStore>(State(state): State<Arc<ApiState<S>>>) -> Response {
    let version = env!("CARGO_PKG_VERSION");
    match unavailable(&state).await {
        None => axum::Json(json!({"version": version, "status": "ok"})).into_response(),
        Some(message) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({
                "version": version,
                "status": "degraded",
                "error": STORAGE_UNAVAILABLE,
                "message": message,
            })),
        )
            .into_response(),
    }
}

/// A router layer: an internal error while the store refuses work becomes 503
/// `StorageUnavailable`, saying what happened and what to do.
pub(crate) async fn gate<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    req: Request,
    next: Next,
) -> Response {
    let resp = next.run(req).await;
    if resp.status() != StatusCode::INTERNAL_SERVER_ERROR {
        return resp;
    }
    match unavailable(&state).await {
        Some(message) => XrpcError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            STORAGE_UNAVAILABLE,
            message,
        )
        .into_response(),
        None => resp,
    }
}
