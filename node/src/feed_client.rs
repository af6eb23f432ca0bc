//! The model builder's client of a steward node's feed (`guild feed subscribe`), usable as a
//! library: log in with the builder's key (a signed challenge), subscribe from the cursor
//! kept in the output directory, download each announced bundle (resuming a partial
//! download with a range request), verify it offline (`guild_bundle::verify_bundle`), write
//! it with its Croissant file, dataset card and disclosure file, print revocation notices
//! with what they require, and record the cursor durably after each event, so that a client
//! killed at any point resumes with nothing lost or handled twice. Disconnections are retried
//! with exponential backoff and jitter.
//!
//! An `https://` node is reached over TLS (rustls): downloads and receipts over https, the
//! feed over wss, both with one client configuration that trusts the usual web roots
//! (webpki-roots) and, with [`FollowOptions::ca`], the certificates of a PEM file (a devnet's
//! self-signed certificate, a private CA). A certificate the client does not trust stops it at
//! once (retrying cannot help); `http://` is plain, as before.
//!
//! The output directory:
//! - `cursor`: the `seq` of the last event handled (written to a temporary file and renamed);
//! - `bundles/<manifest CID>/`: `bundle.car`, `croissant.json`, `README.md`,
//!   `disclosure.json` (only bundles that verified);
//! - `downloads/<manifest CID>.car.part`: a download in progress (resumed with a range
//!   request; if the resumed whole does not verify, the partial file is discarded and the
//!   bundle downloaded once more from its start);
//! - `events.jsonl`: every event handled, as the feed's JSON form, one per line (revocation
//!   notices and agreement changes included), with `rejected` bundles marked.
//!
//! A bundle that does not verify (tampered, truncated, another bundle) is never kept: its
//! file is deleted, it is reported as [`Handled::Rejected`] with the verifier's reason and
//! marked in `events.jsonl`, and the cursor moves past its event (the node would serve the
//! same bytes again: retrying forever cannot help; the builder sends no receipt for it).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt as _;
use guild_core::keys::Keypair;
use guild_feed::{Event, Frame};
use guild_gov::body::ReceiptBody;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

/// What to follow and where to keep it.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// The steward node's base URL (`http://host:port`, or `https://host:port` for a node
    /// serving its public address over TLS).
    pub node: String,
    /// A PEM file of certificates to trust besides the usual web roots (a node's self-signed
    /// certificate, or the CA that signed it).
    pub ca: Option<PathBuf>,
    /// The builder's key.
    pub key: Keypair,
    /// The output directory.
    pub out: PathBuf,
    /// Stop once caught up (after the node's `#info ReplayComplete`).
    pub once: bool,
    /// Show download progress bars (on a terminal).
    pub progress: bool,
    /// With no cursor kept yet, start with live events only (otherwise a fresh directory
    /// replays every event still in the node's window).
    pub live: bool,
}

/// One event handled, as the client reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// A bundle downloaded and verified, and where it was written.
    Bundle {
        /// Its `seq`.
        seq: u64,
        /// The manifest CID.
        cid: String,
        /// The agreement.
        agreement: String,
        /// Records in it.
        records: u64,
        /// The CAR's bytes.
        bytes: u64,
        /// Its directory.
        dir: PathBuf,
        /// The receipt op the node took.
        receipt: String,
    },
    /// A bundle that failed verification (deleted; not used).
    Rejected {
        /// Its `seq`.
        seq: u64,
        /// The manifest CID announced.
        cid: String,
        /// What failed.
        why: String,
    },
    /// A revocation notice.
    Revocation {
        /// Its `seq`.
        seq: u64,
        /// The agreement.
        agreement: String,
        /// The member who revoked.
        member: String,
        /// Records covered.
        records: usize,
        /// From when.
        effective: String,
        /// What the builder must do.
        duty: String,
        /// The receipt op the node took.
        receipt: String,
    },
    /// An agreement's state changed.
    Agreement {
        /// Its `seq`.
        seq: u64,
        /// The agreement.
        agreement: String,
        /// Its new state.
        state: String,
    },
    /// Information about the stream.
    Info {
        /// Its name.
        name: String,
        /// Its message.
        message: String,
    },
}

impl std::fmt::Display for Handled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Handled::Bundle {
                seq,
                cid,
                agreement,
                records,
                bytes,
                dir,
                receipt,
            } => write!(
                f,
                "bundle {cid} seq={seq} agreement={agreement} records={records} bytes={bytes} \
                 verified {} receipt={receipt}",
                dir.display()
            ),
            Handled::Rejected { seq, cid, why } => write!(f, "rejected {cid} seq={seq}: {why}"),
            Handled::Revocation {
                seq,
                agreement,
                member,
                records,
                effective,
                duty,
                receipt,
            } => write!(
                f,
                "revocation seq={seq} agreement={agreement} member={member} records={records} \
                 effective={effective} duty={duty} receipt={receipt}"
            ),
            Handled::Agreement {
                seq,
                agreement,
                state,
            } => write!(f, "agreement seq={seq} {agreement} {state}"),
            Handled::Info { name, message } => write!(f, "info {name}: {message}"),
        }
    }
}

/// Why a session ended.
enum End {
    /// Caught up, in `--once` mode.
    CaughtUp,
    /// Retry: the connection dropped, the node was unreachable, the subscriber was too slow.
    Retry(anyhow::Error),
    /// Stop: retrying cannot help (a cursor ahead of the stream, a login refused).
    Fatal(anyhow::Error),
}

/// The TLS client configuration for `https://` and `wss://`: the web's usual roots
/// (webpki-roots) and, if given, every certificate in the PEM file `ca`.
pub fn tls_config(ca: Option<&Path>) -> Result<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
        let mut added = 0;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| anyhow!("{} is not valid PEM: {e}", ca.display()))?;
            roots
                .add(cert)
                .map_err(|e| anyhow!("{}: a certificate cannot be trusted: {e}", ca.display()))?;
            added += 1;
        }
        if added == 0 {
            bail!(
                "{} holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)",
                ca.display()
            );
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("cannot make a TLS client: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The reason, if `e` (or an error it wraps) is the node's certificate failing verification.
fn certificate_problem(e: &anyhow::Error) -> Option<String> {
    for cause in e.chain() {
        let rustls_error = cause.downcast_ref::<rustls::Error>().or_else(|| {
            cause
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls::Error::InvalidCertificate(why)) = rustls_error {
            return Some(format!("{why:?}"));
        }
    }
    // (the rustls error is not always reachable by downcasting through the HTTP client's
    // wrappers; its text is)
    let text = format!("{e:#}");
    text.split_once("invalid peer certificate: ")
        .map(|(_, why)| why.to_owned())
}

/// The cursor kept in `out`.
pub fn read_cursor(out: &Path) -> Result<Option<u64>> {
    let p = out.join("cursor");
    match std::fs::read_to_string(&p) {
        Ok(s) => s
            .trim()
            .parse::<u64>()
            .map(Some)
            .with_context(|| format!("{} does not hold a cursor", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
    }
}

/// Writes `bytes` to `path` durably: a temporary file, synced, renamed over it.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

fn append_line(path: &Path, line: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(f, "{line}")?;
    f.sync_all()?;
    Ok(())
}

/// Logs in: a challenge from the node, signed with the key, for a bearer token.
pub async fn login(http: &reqwest::Client, node: &str, key: &Keypair) -> Result<String> {
    let url = format!("{node}/xrpc/coop.guild.feed.getChallenge");
    let resp = http
        .get(&url)
        .send()
        .await
        .with_context(|| format!("cannot reach {node}"))?;
    let c: serde_json::Value = xrpc_json(resp).await.context("getChallenge")?;
    let field = |name: &str| -> Result<String> {
        c.get(name)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("getChallenge: no {name} in the answer"))
    };
    let (nonce, audience, expires) = (field("nonce")?, field("audience")?, field("expiresAt")?);
    let did = key.did();
    let msg = guild_feed::auth::signed_message(&audience, &did, &nonce, &expires);
    let sig = key.sign(&msg);
    let body = serde_json::json!({
        "did": did,
        "nonce": nonce,
        "signature": guild_core::data::to_json(&guild_core::Ipld::Bytes(sig.to_vec())),
    });
    let resp = http
        .post(format!("{node}/xrpc/coop.guild.feed.login"))
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach {node}"))?;
    let s: serde_json::Value = xrpc_json(resp).await.context("login")?;
    s.get("token")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("login: no token in the answer"))
}

/// An XRPC answer's JSON, or its error as an error.
async fn xrpc_json(resp: reqwest::Response) -> Result<serde_json::Value> {
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.context("the answer is not JSON")?;
    if !status.is_success() {
        bail!(
            "{} ({status}): {}",
            body.get("error")
                .and_then(|v| v.as_str())
                .unwrap_or("error"),
            body.get("message").and_then(|v| v.as_str()).unwrap_or("")
        );
    }
    Ok(body)
}

/// Follows the feed until `--once` catches up, or forever; calls `report` with each event
/// handled (after its cursor is recorded).
pub async fn follow(opts: &FollowOptions, mut report: impl FnMut(&Handled)) -> Result<()> {
    for d in ["bundles", "downloads"] {
        std::fs::create_dir_all(opts.out.join(d))
            .with_context(|| format!("cannot create {}", opts.out.join(d).display()))?;
    }
    if !opts.node.starts_with("http://") && !opts.node.starts_with("https://") {
        bail!(
            "{}: the node's URL starts with http:// or https://",
            opts.node
        );
    }
    let tls = tls_config(opts.ca.as_deref())?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .use_preconfigured_tls(tls.clone())
        .build()
        .context("cannot make an HTTP client")?;
    let tls = Arc::new(tls);
    let mut backoff = Duration::from_millis(250);
    let mut seed = u64::from_le_bytes(
        opts.key.public().to_bytes()[..8]
            .try_into()
            .unwrap_or([0; 8]),
    );
    loop {
        match session(opts, &http, &tls, &mut report, &mut backoff).await {
            End::CaughtUp => return Ok(()),
            End::Fatal(e) => return Err(e),
            End::Retry(e) => {
                // Exponential backoff with full jitter (xorshift; no need for a strong RNG).
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let ms = backoff.as_millis() as u64;
                let wait = Duration::from_millis(ms / 2 + seed % (ms / 2 + 1));
                tracing::warn!("feed: {e:#}; reconnecting in {} ms", wait.as_millis());
                eprintln!("feed: {e:#}; reconnecting in {} ms", wait.as_millis());
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// One connection: login, subscribe from the cursor, handle events until it ends.
async fn session(
    opts: &FollowOptions,
    http: &reqwest::Client,
    tls: &Arc<rustls::ClientConfig>,
    report: &mut impl FnMut(&Handled),
    backoff: &mut Duration,
) -> End {
    let token = match login(http, &opts.node, &opts.key).await {
        Ok(t) => t,
        Err(e) if format!("{e:#}").contains("InvalidChallenge") => return End::Fatal(e),
        Err(e) => return untrusted_or_retry(e),
    };
    let cursor = match read_cursor(&opts.out) {
        Ok(c) => c,
        Err(e) => return End::Fatal(e),
    };
    let ws_base = opts
        .node
        .replacen("http://", "ws://", 1)
        .replacen("https://", "wss://", 1);
    let mut url = format!("{ws_base}/xrpc/coop.guild.feed.subscribe");
    match (cursor, opts.live) {
        (Some(c), _) => url.push_str(&format!("?cursor={c}")),
        // A fresh directory: every event still in the window.
        (None, false) => url.push_str("?cursor=0"),
        (None, true) => {}
    }
    let mut request = match url.as_str().into_client_request() {
        Ok(r) => r,
        Err(e) => return End::Fatal(anyhow!("{url}: {e}")),
    };
    match format!("Bearer {token}").parse() {
        Ok(v) => {
            request.headers_mut().insert("authorization", v);
        }
        Err(e) => return End::Fatal(anyhow!("the token is not a header value: {e}")),
    }
    // The same TLS configuration as the HTTP client's (used for wss:// only).
    let connector = tokio_tungstenite::Connector::Rustls(tls.clone());
    let (mut ws, _) = match tokio_tungstenite::connect_async_tls_with_config(
        request,
        None,
        false,
        Some(connector),
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            return untrusted_or_retry(
                anyhow::Error::new(e).context(format!("cannot subscribe at {url}")),
            );
        }
    };
    tracing::info!(%url, "subscribed");
    while let Some(msg) = ws.next().await {
        let bytes = match msg {
            Ok(Message::Binary(b)) => b,
            Ok(Message::Close(_)) => break,
            Ok(_) => continue,
            Err(e) => return End::Retry(anyhow!("the feed connection failed: {e}")),
        };
        *backoff = Duration::from_millis(250);
        let frame = match Frame::from_cbor(&bytes) {
            Ok(f) => f,
            Err(guild_feed::FrameError::UnknownType(t)) => {
                tracing::debug!("skipping a message of unknown type {t}");
                continue;
            }
            Err(e) => return End::Retry(anyhow!("a malformed frame from the node: {e}")),
        };
        let event = match frame {
            Frame::Message(e) => e,
            Frame::Error { error, message } => {
                let e = anyhow!("{error}: {}", message.unwrap_or_default());
                return if error == "FutureCursor" {
                    End::Fatal(e.context(
                        "the node's feed is behind this client's cursor (a different node, or \
                         its feed log was reset)",
                    ))
                } else {
                    End::Retry(e)
                };
            }
        };
        if let Event::Info(i) = &event {
            let done = i.name == "ReplayComplete";
            report(&Handled::Info {
                name: i.name.clone(),
                message: i.message.clone().unwrap_or_default(),
            });
            if done && opts.once {
                let _ = ws.close(None).await;
                return End::CaughtUp;
            }
            continue;
        }
        match handle(opts, http, &token, &event).await {
            Ok(h) => {
                if let Some(seq) = event.seq()
                    && let Err(e) =
                        write_durably(&opts.out.join("cursor"), seq.to_string().as_bytes())
                {
                    return End::Fatal(e);
                }
                report(&h);
            }
            // (a download cut short: the cursor stays, the event comes again)
            Err(e) => return End::Retry(e),
        }
    }
    End::Retry(anyhow!("the node closed the feed"))
}

/// A certificate the client does not trust ends the session for good (retrying cannot
/// help); anything else is retried.
fn untrusted_or_retry(e: anyhow::Error) -> End {
    match certificate_problem(&e) {
        Some(why) if why.contains("CaUsedAsEndEntity") => End::Fatal(e.context(
            "the node's TLS certificate is not trusted: it is a CA certificate serving as the \
             node's own (a self-signed certificate for a node needs basicConstraints CA:FALSE; \
             docs/feeds.md shows how to make one)",
        )),
        Some(_) => End::Fatal(e.context(
            "the node's TLS certificate is not trusted; for a self-signed certificate or a \
             private CA, pass its PEM file with --ca FILE",
        )),
        None => End::Retry(e),
    }
}

/// Handles one event (not `#info`): a bundle is downloaded and verified; every event is
/// appended to `events.jsonl`.
async fn handle(
    opts: &FollowOptions,
    http: &reqwest::Client,
    token: &str,
    event: &Event,
) -> Result<Handled> {
    let json = Frame::Message(event.clone())
        .to_json()
        .map_err(|e| anyhow!("{e}"))?;
    let handled = match event {
        Event::Bundle(b) => {
            let cid = b.bundle.0.to_string();
            match fetch_bundle(opts, http, token, &cid, b.size).await? {
                Ok((dir, report)) => {
                    // Acknowledged: prev is the approvals that sealed what was verified.
                    let body = ReceiptBody {
                        agreement: b.agreement,
                        bundle: Some(b.bundle),
                        revoke: None,
                    };
                    let receipt =
                        send_receipt(opts, http, &report.collective, body, &report.approvals)
                            .await?;
                    Handled::Bundle {
                        seq: b.seq,
                        cid,
                        agreement: b.agreement.0.to_string(),
                        records: b.records,
                        bytes: b.size,
                        dir,
                        receipt,
                    }
                }
                Err(why) => {
                    append_line(
                        &opts.out.join("events.jsonl"),
                        &serde_json::json!({"rejected": cid, "seq": b.seq, "why": why}).to_string(),
                    )?;
                    Handled::Rejected {
                        seq: b.seq,
                        cid,
                        why,
                    }
                }
            }
        }
        Event::Revocation(r) => {
            let collective = r
                .collective
                .ok_or_else(|| anyhow!("the revocation notice names no collective"))?;
            let body = ReceiptBody {
                agreement: r.agreement,
                bundle: None,
                revoke: Some(r.revoke),
            };
            let receipt = send_receipt(opts, http, &collective.0, body, &[r.revoke.0]).await?;
            Handled::Revocation {
                seq: r.seq,
                agreement: r.agreement.0.to_string(),
                member: r.member.to_string(),
                records: r.records.len(),
                effective: r.effective_from.to_string(),
                duty: r.duty.clone(),
                receipt,
            }
        }
        Event::Agreement(a) => Handled::Agreement {
            seq: a.seq,
            agreement: a.agreement.0.to_string(),
            state: a.state.clone(),
        },
        Event::Info(i) => Handled::Info {
            name: i.name.clone(),
            message: i.message.clone().unwrap_or_default(),
        },
    };
    append_line(&opts.out.join("events.jsonl"), &json)?;
    Ok(handled)
}

/// Downloads a bundle (resuming a partial download), verifies it and writes it with its
/// metadata files. `Ok(Err(why))`: it does not verify (the file is deleted).
async fn fetch_bundle(
    opts: &FollowOptions,
    http: &reqwest::Client,
    token: &str,
    cid: &str,
    size: u64,
) -> Result<std::result::Result<(PathBuf, guild_bundle::Report), String>> {
    let dir = opts.out.join("bundles").join(cid);
    if dir.join("bundle.car").is_file() {
        // Verified before (the client stopped before recording the cursor): checked again
        // for the report the receipt needs.
        return match verify_file(&dir.join("bundle.car")).await? {
            Ok(r) => Ok(Ok((dir, r))),
            Err(why) => Ok(Err(why)),
        };
    }
    let part = opts.out.join("downloads").join(format!("{cid}.car.part"));
    // A resumed download trusts the bytes already on disk; if the whole does not verify, the
    // partial file may be what is wrong (a disk error, a different file left there), so it is
    // discarded and the bundle downloaded once more from its start before it is rejected.
    let mut resume = true;
    let report = loop {
        let (resumed, verdict) = download(opts, http, token, cid, size, &part, resume).await?;
        match verdict {
            Ok(r) if r.manifest.to_string() == cid => break r,
            Ok(r) => {
                let _ = std::fs::remove_file(&part);
                return Ok(Err(format!(
                    "the node sent bundle {}, not {cid}",
                    r.manifest
                )));
            }
            Err(why) => {
                let _ = std::fs::remove_file(&part);
                if resumed {
                    tracing::warn!(
                        "bundle {cid}: the resumed download does not verify ({why}); \
                         discarding the partial file and downloading it again"
                    );
                    resume = false;
                    continue;
                }
                return Ok(Err(why));
            }
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    crate::bundle_cmd::write_forms(&part, &report, &dir)?;
    std::fs::rename(&part, dir.join("bundle.car"))
        .with_context(|| format!("cannot move the bundle into {}", dir.display()))?;
    Ok(Ok((dir, report)))
}

/// Downloads the bundle into `part` (resuming what is there when `resume`) and verifies
/// it: whether bytes already on disk were kept, and the verdict.
async fn download(
    opts: &FollowOptions,
    http: &reqwest::Client,
    token: &str,
    cid: &str,
    size: u64,
    part: &Path,
    resume: bool,
) -> Result<(bool, std::result::Result<guild_bundle::Report, String>)> {
    let have = if resume {
        std::fs::metadata(part).map(|m| m.len()).unwrap_or(0)
    } else {
        0
    };
    let mut req = http
        .get(format!("{}/xrpc/coop.guild.bundle.get", opts.node))
        .query(&[("cid", cid)])
        .bearer_auth(token);
    if have > 0 && have < size {
        req = req
            .header("range", format!("bytes={have}-"))
            .header("if-range", format!("\"{cid}\""));
    }
    let mut resp = req
        .send()
        .await
        .with_context(|| format!("cannot download bundle {cid}"))?;
    let status = resp.status();
    let append = match status {
        reqwest::StatusCode::PARTIAL_CONTENT => true,
        reqwest::StatusCode::OK => false,
        reqwest::StatusCode::RANGE_NOT_SATISFIABLE => {
            let _ = std::fs::remove_file(part);
            bail!("the partial download of {cid} does not fit the bundle; starting again");
        }
        _ => {
            let body = resp.text().await.unwrap_or_default();
            bail!("downloading bundle {cid}: {status}: {body}");
        }
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(part)
        .with_context(|| format!("cannot write {}", part.display()))?;
    let start = if append { have } else { 0 };
    let bar = if opts.progress {
        let b = indicatif::ProgressBar::new(size);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_message(format!("bundle {}", &cid[cid.len().saturating_sub(8)..]));
        b.set_position(start);
        Some(b)
    } else {
        None
    };
    let mut got = start;
    while let Some(chunk) = resp
        .chunk()
        .await
        .with_context(|| format!("the download of {cid} was cut"))?
    {
        f.write_all(&chunk)?;
        got += chunk.len() as u64;
        if let Some(b) = &bar {
            b.set_position(got);
        }
    }
    f.sync_all()?;
    drop(f);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if got < size {
        bail!("the download of {cid} stopped at {got} of {size} bytes");
    }
    Ok((append && start > 0, verify_file(part).await?))
}

/// Verifies a bundle file offline, off the async runtime (with its SHA-256, which the
/// Croissant file records).
async fn verify_file(path: &Path) -> Result<std::result::Result<guild_bundle::Report, String>> {
    let check = path.to_owned();
    let report = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&check)?;
        Ok::<_, std::io::Error>(guild_bundle::verify_bundle(file))
    })
    .await
    .map_err(|e| anyhow!("verification stopped: {e}"))?
    .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(report.map_err(|e| e.to_string()))
}

/// Signs a receipt op (`coop.guild.bundle.receipt`) whose `prev` is what it acknowledges,
/// and posts it to the node (`coop.guild.feed.submitReceipt`). A receipt the collective
/// already holds for the same delivery (a client restarted after sending it) is not an
/// error. Returns the receipt op's id, `acknowledged` for one held already, or
/// `refused(<why>)` when the node answered with a refusal; an unreachable node is an error
/// (the event is handled again after reconnecting).
async fn send_receipt(
    opts: &FollowOptions,
    http: &reqwest::Client,
    collective: &guild_core::Cid,
    body: ReceiptBody,
    prev: &[guild_core::Cid],
) -> Result<String> {
    let now = guild_core::syntax::Datetime::from_unix_micros(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            .unwrap_or(0),
    );
    let op = guild_gov::Op::write(
        &guild_gov::body::OpBody::BundleReceipt(Box::new(body)),
        Some(collective),
        &opts.key,
        prev,
        &now,
    )
    .map_err(|e| anyhow!("cannot sign the receipt: {e}"))?;
    let resp = http
        .post(format!("{}/xrpc/coop.guild.feed.submitReceipt", opts.node))
        .json(&serde_json::json!({
            "collective": collective.to_string(),
            "op": guild_core::data::to_json(&guild_core::Ipld::Bytes(op.bytes().to_vec())),
        }))
        .send()
        .await
        .with_context(|| format!("cannot reach {}", opts.node))?;
    match xrpc_json(resp).await {
        Ok(v) => Ok(v["op"].as_str().unwrap_or_default().to_owned()),
        Err(e) if format!("{e:#}").contains("already acknowledged") => Ok("acknowledged".into()),
        // The node answered and refused (a clock more than five minutes off, say): retrying
        // the same receipt cannot help, so the event is handled and the refusal reported.
        Err(e) => {
            let why = format!("{e:#}");
            tracing::warn!("the node refused the receipt: {why}");
            Ok(format!("refused({})", why.replace(' ', "_")))
        }
    }
}
