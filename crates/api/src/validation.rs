//! The checks every `coop.guild.*` method goes through before its handler, in one router
//! layer ([`check`]): the admin token first (but for the few [`PUBLIC`] methods), then the query parameters against the method's
//! lexicon (`Registry::validate_params`) and, for a procedure, the JSON input
//! (`Registry::validate_input`). A request that breaks its lexicon is refused with
//! `InvalidRequest` naming the path into the request and the rule broken. Handlers then read
//! the validated request, typed, with the [`Xrpc`] extractor (or, for the `coop.guild.repo.*`
//! twins of AT's handlers, the parsed body).
//!
//! In debug builds the layer also checks every JSON answer of a `coop.guild.*` method against
//! the lexicon's output (`Registry::validate_output`) and turns a mismatch into an
//! `InternalServerError`, so that the tests catch a handler and its lexicon drifting apart.
//!
//! The `com.atproto.*` methods pass through untouched: AT's lexicons are not embedded.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method as HttpMethod, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use guild_core::Ipld;
use guild_lexicon::schema::{Def, Field};
use guild_lexicon::{LexiconDoc, Registry, ValidationError};
use serde_json::Value;

use crate::methods::{Kind, Method};
use crate::serve::{Bodies, BodyPermit};
use crate::server::{ApiState, XrpcError, check_auth, query_params};
use guild_service::NodeStore;

/// A procedure's JSON body, parsed (and validated against its lexicon, unless a record in it
/// breaks the data model: see [`check_input`]).
#[derive(Debug, Clone)]
struct ParsedBody(Value);

/// A method's query parameters, validated and read as their lexicon types, defaults filled in.
#[derive(Debug, Clone)]
struct ValidatedParams(BTreeMap<String, Ipld>);

/// The NSID of a `coop.guild.*` XRPC path.
fn guild_nsid(path: &str) -> Option<&str> {
    path.strip_prefix("/xrpc/")
        .filter(|n| n.starts_with("coop.guild."))
}

/// The router layer: see the module's documentation.
pub(crate) async fn check<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(nsid) = guild_nsid(req.uri().path()).map(str::to_owned) else {
        return next.run(req).await;
    };
    // The body's room in the in-flight budget is kept until the handler has answered.
    let (req, _room) = match prepare(&state, &nsid, req).await {
        Ok(prepared) => prepared,
        Err(e) => return e.into_response(),
    };
    let resp = next.run(req).await;
    if cfg!(debug_assertions) {
        check_output(state.service.registry(), &nsid, resp).await
    } else {
        resp
    }
}

/// The `coop.guild.*` methods anyone may call, without the admin token: a builder (who has
/// a key, not a node, and no token) fetches an offer and posts its signed accept (the op's
/// signature is the authentication), and anyone reads a collective's agreements (contract
/// transparency). They show agreements only. `getOffer` asks for the token itself when the
/// charter keeps prices private. Every other method needs the token.
pub(crate) const PUBLIC: &[&str] = &[
    crate::methods::agreement::get_offer::NSID,
    crate::methods::agreement::submit_accept::NSID,
    crate::methods::agreement::list_agreements::NSID,
    crate::methods::feed::get_challenge::NSID,
    crate::methods::feed::login::NSID,
    crate::methods::feed::submit_receipt::NSID,
    // (the admin token or the builder's bearer token: `feeds::get_bundle` checks)
    "coop.guild.bundle.get",
];

/// Authenticates and validates a request to `nsid`; the request to hand on, with what was
/// validated in its extensions, and its body's room in the in-flight budget.
async fn prepare<S: NodeStore>(
    state: &ApiState<S>,
    nsid: &str,
    req: Request,
) -> Result<(Request, BodyPermit), XrpcError> {
    if !PUBLIC.contains(&nsid) {
        check_auth(state, req.headers())?;
    }
    let registry = state.service.registry();
    let kind = match registry.get(nsid).and_then(LexiconDoc::main) {
        Some(Def::Query(_)) => Kind::Query,
        Some(Def::Procedure(_)) => Kind::Procedure,
        _ => {
            return Err(internal(format!(
                "the node has no query or procedure lexicon for {nsid}"
            )));
        }
    };
    let pairs = query_params(req.uri().query());
    let params = registry
        .validate_params(nsid, &pairs)
        .map_err(|e| refused("parameters", e))?;
    let (mut parts, body) = req.into_parts();
    let mut room = BodyPermit::none();
    let body = match (kind, &parts.method) {
        (Kind::Query, &HttpMethod::GET) => {
            parts.extensions.insert(ValidatedParams(params));
            body
        }
        (Kind::Procedure, &HttpMethod::POST) => {
            let (bytes, permit) = read_body(&state.bodies, &parts.headers, body).await?;
            room = permit;
            let value = if bytes.is_empty() {
                Value::Object(serde_json::Map::new())
            } else {
                parse_json(&bytes)?
            };
            check_input(registry, nsid, &value)?;
            parts.extensions.insert(ParsedBody(value));
            Body::from(bytes)
        }
        // The wrong HTTP method: the router answers MethodNotAllowed.
        _ => body,
    };
    Ok((Request::from_parts(parts, body), room))
}

/// Whether a `Content-Type` is JSON: exactly `application/json` (any case), optionally
/// followed by `;` and parameters.
pub(crate) fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split_once(';')
        .map_or(content_type, |(e, _)| e);
    essence.trim().eq_ignore_ascii_case("application/json")
}

/// Reads a request body whose content type, if given, is JSON, within the bounds of `bodies`
/// (size, time, in-flight budget); the permit holds its room in the budget.
pub(crate) async fn read_body(
    bodies: &Bodies,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Bytes, BodyPermit), XrpcError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = String::from_utf8_lossy(ct.as_bytes());
        if !is_json(&ct) {
            return Err(XrpcError::invalid(format!(
                "content-type must be application/json, not {:?}",
                ct.chars().take(100).collect::<String>()
            )));
        }
    }
    bodies.read(headers, body).await
}

/// Parses a JSON body.
pub(crate) fn parse_json(bytes: &[u8]) -> Result<Value, XrpcError> {
    serde_json::from_slice(bytes)
        .map_err(|e| XrpcError::invalid(format!("body is not valid JSON: {e}")))
}

/// Validates a procedure's input against its lexicon.
///
/// A record inside the input (a field the lexicon declares `unknown`, such as
/// `coop.guild.repo.createRecord`'s `record`) that breaks the data model (a float, say) is the
/// record's problem, not the request's: the input is then handed on unvalidated, and the write
/// path refuses the record with `InvalidRecord`, as it does on the `com.atproto.*` methods.
fn check_input(registry: &Registry, nsid: &str, value: &Value) -> Result<(), XrpcError> {
    let ipld = match guild_core::data::from_json(value) {
        Ok(v) => v,
        Err(e) if inside_unknown(registry, nsid, &e.path) => return Ok(()),
        Err(e) => {
            return Err(XrpcError::invalid(format!(
                "invalid input: {}: {}",
                e.path, e.reason
            )));
        }
    };
    registry
        .validate_input(nsid, &ipld)
        .map_err(|e| refused("input", e))
}

/// Whether the JSON pointer `pointer` into the input of `nsid` lies inside a field its lexicon
/// declares `unknown`.
fn inside_unknown(registry: &Registry, nsid: &str, pointer: &str) -> bool {
    let Some(Def::Procedure(p)) = registry.get(nsid).and_then(LexiconDoc::main) else {
        return false;
    };
    let Some(mut field) = p.input.as_ref().and_then(|b| b.schema.as_ref()) else {
        return false;
    };
    let mut segments = pointer.split('/').skip(1).filter(|s| !s.is_empty());
    // Each step follows references (a bounded number: a cycle must not loop) then descends.
    for _ in 0..=guild_core::cbor::MAX_DEPTH {
        for _ in 0..32 {
            match field {
                Field::Ref(r) => match registry.def(&r.target) {
                    Some(Def::Type(f)) => field = f,
                    _ => return false,
                },
                _ => break,
            }
        }
        let Some(segment) = segments.next() else {
            return matches!(field, Field::Unknown(_));
        };
        field = match field {
            Field::Unknown(_) => return true,
            Field::Object(o) => {
                let name = segment.replace("~1", "/").replace("~0", "~");
                match o.properties.get(&name) {
                    Some(f) => f,
                    None => return false,
                }
            }
            Field::Array(a) => &a.items,
            _ => return false,
        };
    }
    false
}

/// A validation failure as an XRPC error: a request that breaks its lexicon is an
/// `InvalidRequest`; a lexicon set that cannot validate it is the node's fault.
fn refused(what: &str, e: ValidationError) -> XrpcError {
    match e {
        ValidationError::Invalid { .. } => XrpcError::invalid(format!("invalid {what}: {e}")),
        other => internal(format!("cannot validate the {what}: {other}")),
    }
}

fn internal(message: String) -> XrpcError {
    tracing::error!(%message, "lexicon problem");
    XrpcError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalServerError",
        message,
    )
}

/// Debug builds: a successful JSON answer must match the method's output lexicon.
async fn check_output(registry: &Registry, nsid: &str, resp: Response) -> Response {
    let json_output = match registry.get(nsid).and_then(LexiconDoc::main) {
        Some(Def::Query(x) | Def::Procedure(x)) => x
            .output
            .as_ref()
            .is_some_and(|o| o.encoding == "application/json"),
        _ => false,
    };
    if !resp.status().is_success() || !json_output {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            return internal(format!("cannot read the answer of {nsid}: {e}")).into_response();
        }
    };
    let problem = serde_json::from_slice::<Value>(&bytes)
        .map_err(|e| e.to_string())
        .and_then(|v| guild_core::data::from_json(&v).map_err(|e| e.to_string()))
        .and_then(|v| {
            registry
                .validate_output(nsid, &v)
                .map_err(|e| e.to_string())
        });
    match problem {
        Ok(()) => Response::from_parts(parts, Body::from(bytes)),
        Err(p) => internal(format!("the answer of {nsid} breaks its lexicon: {p}")).into_response(),
    }
}

/// The JSON body of a `coop.guild.*` procedure as the router layer parsed it, taken out of the
/// request (`None` for a request the layer did not read, such as a `com.atproto.*` one).
#[derive(Debug)]
pub(crate) struct Parsed(pub(crate) Option<Value>);

impl<St: Send + Sync> FromRequestParts<St> for Parsed {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &St) -> Result<Self, Self::Rejection> {
        Ok(Parsed(parts.extensions.remove::<ParsedBody>().map(|b| b.0)))
    }
}

/// A typed, validated request of method `M`: its parameters (a query) or its input (a
/// procedure), as the router layer validated them.
#[derive(Debug)]
pub(crate) struct Xrpc<M: Method>(pub(crate) M::Input);

impl<M: Method, St: Send + Sync> FromRequestParts<St> for Xrpc<M> {
    type Rejection = XrpcError;

    async fn from_request_parts(parts: &mut Parts, _: &St) -> Result<Self, XrpcError> {
        let value = match M::KIND {
            Kind::Query => parts
                .extensions
                .remove::<ValidatedParams>()
                .map(|p| guild_core::data::to_json(&Ipld::Map(p.0))),
            Kind::Procedure => parts.extensions.remove::<ParsedBody>().map(|b| b.0),
        };
        let value = value.ok_or_else(|| {
            internal(format!(
                "{} reached its handler without the router's checks",
                M::NSID
            ))
        })?;
        serde_json::from_value(value)
            .map(Xrpc)
            .map_err(|e| XrpcError::invalid(format!("invalid input: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
            "application/json ; charset=utf-8",
        ] {
            assert!(is_json(ok), "{ok}");
        }
        for bad in [
            "application/jsonx",
            "application/json-seq",
            "application/jsonl; charset=utf-8",
            "text/json",
            "application/ld+json",
            "",
            "application",
        ] {
            assert!(!is_json(bad), "{bad}");
        }
    }
}
