//! The commons snapshot (`docs/commons-snapshot.md`): every record of the commons this node
//! lists, with its licence record and both inclusion proofs, as one CAR anyone downloads
//! (`/commons/commons-snapshot.car`) and checks with `guild bundle verify`, beside its
//! Croissant file (`/commons/snapshot/croissant.json`) and dataset card
//! (`/commons/snapshot/README.md`).
//!
//! A snapshot is assembled when first asked for after the commons changed (a new commit to
//! any public repo the node holds), once at a time however many ask, and kept in memory
//! until the commons changes again: so it is always the current commons. Its proofs are read
//! through `com.atproto.sync.getRecord` like any AT client's; the file is made and checked by
//! `guild_bundle::snapshot`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use guild_bundle::snapshot::{self, SnapshotEntry, SnapshotRepo, SnapshotReport};
use guild_core::syntax::{Datetime, Did};
use guild_repo::MemoryBlockStore;

use super::{PageError, Web, origin};
use crate::methods::Kind;

/// A snapshot of the commons at the public repos' commits it was made from.
pub(crate) struct Snapshot {
    /// The (DID, commit) of each public repo the commons index was read from.
    repos: Vec<(String, String)>,
    pub car: bytes::Bytes,
    pub report: SnapshotReport,
}

fn internal(message: impl Into<String>) -> PageError {
    PageError::Xrpc {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        error: "InternalServerError".into(),
        message: message.into(),
    }
}

fn empty() -> PageError {
    PageError::Xrpc {
        status: StatusCode::NOT_FOUND,
        error: "NotFound".into(),
        message: "the commons is empty: there is no snapshot yet".into(),
    }
}

impl Web {
    /// The snapshot of the current commons: the one held if the commons has not changed
    /// since, else a new one (one assembly at a time).
    pub(crate) async fn snapshot(&self) -> Result<Arc<Snapshot>, PageError> {
        // Up to three tries: a repo may move between the index and its proofs.
        let mut last = None;
        for _ in 0..3 {
            let index = self.commons_index().await?;
            let mut held = self.snapshot.lock().await;
            if let Some(s) = held.as_ref()
                && s.repos == index.repos
            {
                return Ok(Arc::clone(s));
            }
            if index.items.is_empty() {
                return Err(empty());
            }
            match self.assemble(&index).await {
                Ok(s) => {
                    let s = Arc::new(s);
                    *held = Some(Arc::clone(&s));
                    return Ok(s);
                }
                Err(Assembly::Moved(why)) => last = Some(why),
                Err(Assembly::Failed(e)) => return Err(e),
            }
        }
        Err(PageError::Xrpc {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error: "Busy".into(),
            message: format!(
                "the commons kept changing while its snapshot was made ({}); try again",
                last.unwrap_or_default()
            ),
        })
    }

    async fn assemble(&self, index: &super::CommonsIndex) -> Result<Snapshot, Assembly> {
        let mut blocks = MemoryBlockStore::new();
        let mut repos: BTreeMap<String, SnapshotRepo> = BTreeMap::new();
        let mut entries = Vec::with_capacity(index.items.len());
        for item in &index.items {
            let record_path = format!("{}/{}", item.collection, item.rkey);
            for path in [&record_path, &item.licence_path] {
                let (collection, rkey) = path
                    .split_once('/')
                    .ok_or_else(|| internal(format!("a commons path {path}")))?;
                let proof = self
                    .send(
                        "com.atproto.sync.getRecord",
                        Kind::Query,
                        &[
                            ("did", item.did.as_str()),
                            ("collection", collection),
                            ("rkey", rkey),
                        ],
                        false,
                    )
                    .await
                    .map_err(|e| match e {
                        // Deleted since the index was read.
                        PageError::Xrpc { status, .. } if status == StatusCode::NOT_FOUND => {
                            Assembly::Moved(format!("{} {path} is gone", item.did))
                        }
                        e => Assembly::Failed(e),
                    })?;
                let car = guild_repo::read_car(&proof)
                    .map_err(|e| internal(format!("the proof of {path}: {e}")))?;
                let [commit] = car.roots[..] else {
                    return Err(internal(format!("the proof of {path} has no single root")).into());
                };
                match repos.get(&item.did) {
                    Some(r) if r.commit != commit => {
                        return Err(Assembly::Moved(format!("{} committed", item.did)));
                    }
                    Some(_) => {}
                    None => {
                        let bytes = car.blocks.get(&commit).ok_or_else(|| {
                            internal(format!("the proof of {path} lacks its commit"))
                        })?;
                        let c = guild_repo::verify_commit(&commit, bytes)
                            .map_err(|e| internal(format!("the commit of {}: {e}", item.did)))?;
                        let did = Did::parse(&item.did)
                            .map_err(|e| internal(format!("author {}: {e}", item.did)))?;
                        repos.insert(
                            item.did.clone(),
                            SnapshotRepo {
                                did,
                                rev: c.rev,
                                commit,
                            },
                        );
                    }
                }
                for (cid, bytes) in car.blocks.iter() {
                    blocks.insert(*cid, bytes.to_vec());
                }
            }
            let cid = |s: &str| {
                s.parse::<cid::Cid>()
                    .map_err(|e| internal(format!("CID {s}: {e}")))
            };
            entries.push(SnapshotEntry {
                author: Did::parse(&item.did)
                    .map_err(|e| internal(format!("author {}: {e}", item.did)))?,
                path: record_path,
                cid: cid(&item.cid)?,
                licence: item.licence_path.clone(),
                licence_cid: cid(&item.licence_cid)?,
                template: item.template.clone(),
                restricted_to: item.restricted_to.clone(),
            });
        }
        let created_at = Datetime::from_unix_micros(self.now());
        let repos: Vec<SnapshotRepo> = repos.into_values().collect();
        let made = tokio::task::spawn_blocking(move || {
            let (_, car) = snapshot::build(created_at, repos, entries, &blocks)?;
            // Checked as a downloader will check it.
            let report = snapshot::verify(&car)?;
            Ok::<_, snapshot::SnapshotError>((car, report))
        })
        .await
        .map_err(|e| internal(format!("worker failed: {e}")))?;
        let (car, report) = made.map_err(|e| internal(format!("the snapshot: {e}")))?;
        tracing::info!(
            records = report.records,
            authors = report.authors.len(),
            bytes = report.bytes,
            manifest = %report.manifest,
            "commons snapshot assembled"
        );
        Ok(Snapshot {
            repos: index.repos.clone(),
            car: bytes::Bytes::from(car),
            report,
        })
    }
}

/// Why an assembly stopped: a repo moved under it (try again), or it failed.
enum Assembly {
    Moved(String),
    Failed(PageError),
}

impl From<PageError> for Assembly {
    fn from(e: PageError) -> Assembly {
        Assembly::Failed(e)
    }
}

/// `/commons/commons-snapshot.car`.
pub(crate) async fn car(State(web): State<Arc<Web>>) -> Result<Response, PageError> {
    let s = web.snapshot().await?;
    let disposition = format!("attachment; filename=\"{}\"", snapshot::FILE_NAME);
    Ok((
        [
            (
                header::CONTENT_TYPE,
                guild_bundle::croissant::CAR_MEDIA_TYPE.to_owned(),
            ),
            (header::CONTENT_DISPOSITION, disposition),
            (header::ETAG, format!("\"{}\"", s.report.manifest)),
        ],
        s.car.clone(),
    )
        .into_response())
}

/// `/commons/snapshot/croissant.json`.
pub(crate) async fn croissant(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let s = web.snapshot().await?;
    let me = web.member().await?;
    let base = format!("{}/commons/", origin(&headers));
    let doc = snapshot::croissant(&s.report, &me, &base)
        .map_err(|e| internal(format!("the Croissant file: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/ld+json")], doc).into_response())
}

/// `/commons/snapshot/README.md`.
pub(crate) async fn card(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let s = web.snapshot().await?;
    let base = format!("{}/commons/", origin(&headers));
    Ok((
        [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
        snapshot::card(&s.report, &base),
    )
        .into_response())
}
