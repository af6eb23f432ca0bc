//! A small blocking XRPC client, for the `guild` command line talking to its own node.

use std::time::Duration;

use serde_json::Value;

use crate::methods::{Kind, Method};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answered at the address (the daemon is not running, or on another port).
    #[error("cannot reach the node at {url}: {reason}")]
    Unreachable {
        /// The address tried.
        url: String,
        /// What the HTTP stack said.
        reason: String,
    },
    /// The node answered with an XRPC error.
    #[error("{error}: {message}")]
    Xrpc {
        /// HTTP status.
        status: u16,
        /// The XRPC error name.
        error: String,
        /// Its message.
        message: String,
    },
    /// The answer could not be read.
    #[error("unexpected answer from the node: {0}")]
    Decode(String),
}

/// A client for one node.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::blocking::Client,
}

impl Client {
    /// A client for the node at `base` (e.g. `http://127.0.0.1:2583`), with the admin token if
    /// given.
    pub fn new(base: impl Into<String>, token: Option<String>) -> Result<Self, ClientError> {
        let base = base.into().trim_end_matches('/').to_string();
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(300))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ClientError::Unreachable {
                url: base.clone(),
                reason: e.to_string(),
            })?;
        Ok(Client { base, token, http })
    }

    /// The node's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, nsid: &str) -> String {
        format!("{}/xrpc/{nsid}", self.base)
    }

    fn send(
        &self,
        req: reqwest::blocking::RequestBuilder,
    ) -> Result<reqwest::blocking::Response, ClientError> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().map_err(|e| ClientError::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body: Value = resp
            .json()
            .map_err(|e| ClientError::Decode(format!("HTTP {status}: {e}")))?;
        Err(ClientError::Xrpc {
            status,
            error: body["error"].as_str().unwrap_or("Error").to_string(),
            message: body["message"].as_str().unwrap_or_default().to_string(),
        })
    }

    /// A query (GET) returning JSON.
    pub fn query(&self, nsid: &str, params: &[(&str, &str)]) -> Result<Value, ClientError> {
        let resp = self.send(self.http.get(self.url(nsid)).query(params))?;
        resp.json().map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// A query (GET) returning bytes (a CAR).
    pub fn query_bytes(&self, nsid: &str, params: &[(&str, &str)]) -> Result<Vec<u8>, ClientError> {
        let resp = self.send(self.http.get(self.url(nsid)).query(params))?;
        resp.bytes()
            .map(|b| b.to_vec())
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Calls one of Guild's typed methods ([`crate::methods`]): a query sends `input` as its
    /// query string, a procedure as its JSON body; the answer is read as the method's output.
    pub fn call<M: Method>(&self, input: &M::Input) -> Result<M::Output, ClientError> {
        let url = self.url(M::NSID);
        let req = match M::KIND {
            Kind::Query => self.http.get(url).query(input),
            Kind::Procedure => {
                let bytes =
                    serde_json::to_vec(input).map_err(|e| ClientError::Decode(e.to_string()))?;
                self.http
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(bytes)
            }
        };
        let resp = self.send(req)?;
        resp.json()
            .map_err(|e| ClientError::Decode(format!("{}: {e}", M::NSID)))
    }

    /// A procedure (POST) with a JSON body, returning JSON.
    pub fn procedure(&self, nsid: &str, body: &Value) -> Result<Value, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::Decode(e.to_string()))?;
        let resp = self.send(
            self.http
                .post(self.url(nsid))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes),
        )?;
        resp.json().map_err(|e| ClientError::Decode(e.to_string()))
    }
}
