//! Repo replication on a collective's topic (protocol.md §5, "Repo sync"): the transfers the
//! collectives engine runs for it. Who may ask, and who pulls, is decided by the engine
//! (`collective::pulls`); whether a CAR is a valid replica by the node's [`Repos`]. The frames
//! are typed in [`crate::collective::wire`]:
//!
//! - **Announcement** (gossip): `{"repoHead": {"did", "rev", "commit"}, "v": 1}`, published by
//!   a member's node after each commit to its repo in the collective's space. It is a map
//!   without `$type`, so it is never taken for a governance op.
//! - **Heads** (request `repoHeads`): the heads of every repo the responder holds in the
//!   collective's space (its own and its replicas), a `heads` reply. Stewards ask it of each
//!   member peer on connect and of one member peer every `repo_sync_interval`, so a steward
//!   that was offline catches up, from the author or from another replica.
//! - **Public repos**: a head or a repo request with `public: true` is about a member's public
//!   repo (its commons). A member's node announces its public commits on every collective it
//!   belongs to; a heads reply lists the public repos held of the collective's members; a
//!   steward's node replicates them beside the space repos, verified the same way (no space
//!   declaration; records of unknown types kept unchecked, as in any AT public repo).
//! - **Repo** (request `repo: {did, public?, since?, offset}`): one page of the CAR of `did`'s repo
//!   (whole, or since a revision), a `page` reply `{car, total, commit, rev}`. Pages are at
//!   most `repo_page_bytes` (default 2 MB, the protocol's limit per sync message); the
//!   responder keeps the last few exports for a while so that later pages are slices of the
//!   same bytes, and the requester starts again if the commit changes between pages.
//!
//! Refusals are `refused` replies: `not-a-member` for a requester who is not a current member
//! (and nothing else), `not-found`, `unknown-rev` (the requester then asks for the whole
//! repo), `bad-offset`, `busy` (too many repo requests served at once; the steward tries
//! another peer, or again at its next heads sync).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use guild_core::Cid;
use guild_core::syntax::{Did, Tid};
use libp2p::PeerId;
use tracing::{debug, warn};

use crate::collective::wire::{Head, MAX_HEADS, Page, Reply, ReplyError, Request};
use crate::handle::NetHandle;
use crate::repos::{RepoHead, RepoKind, RepoSyncError, Repos};

/// The refusal for a repo that the responder does not hold.
pub const NOT_FOUND: &str = "not-found";
/// The refusal for a `since` the responder has not seen.
pub const UNKNOWN_REV: &str = "unknown-rev";
/// The refusal for a page offset past the end.
pub const BAD_OFFSET: &str = "bad-offset";
/// The refusal when the responder serves as many repo requests as it allows.
pub const BUSY: &str = "busy";

/// Exports kept for paging, and for how long.
const EXPORTS_KEPT: usize = 4;
const EXPORT_TTL: Duration = Duration::from_secs(120);
/// A requester starts a paged download again at most this often when the head moves.
const MAX_RESTARTS: u32 = 3;

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RepoSyncError> + Send + 'static,
) -> Result<T, RepoSyncError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RepoSyncError::Store(format!("worker failed: {e}")))?
}

/// The answer to a heads request (the requester is a member: the engine checked): the repos
/// held in the collective's space, and the public repos held of the members `public_of`
/// admits (the collective's members, as the engine's state has them). A head whose revision
/// does not parse is left out.
pub async fn serve_heads(
    repos: Option<Arc<dyn Repos>>,
    collective: Cid,
    public_of: impl Fn(&Did) -> bool + Send + 'static,
) -> Reply {
    let heads = match repos {
        None => Vec::new(),
        Some(r) => match blocking(move || {
            let mut heads = r.heads(&collective)?;
            heads.extend(r.public_heads()?.into_iter().filter(|h| public_of(&h.did)));
            Ok(heads)
        })
        .await
        {
            Ok(h) => h,
            Err(e) => return Reply::refused(e.to_string()),
        },
    };
    let heads = heads
        .iter()
        .filter_map(|h| match Head::try_from(h) {
            Ok(h) => Some(h),
            Err(e) => {
                warn!(did = %h.did, error = %e, "a repo head left out of a heads reply");
                None
            }
        })
        .take(MAX_HEADS)
        .collect();
    Reply::Heads(heads)
}

struct Export {
    collective: Cid,
    did: Did,
    kind: RepoKind,
    since: Option<String>,
    head: RepoHead,
    car: Arc<Vec<u8>>,
    at: Instant,
}

/// The last few CARs exported, so that the pages of one download are slices of one export.
#[derive(Default)]
pub struct Exports(Mutex<VecDeque<Export>>);

impl std::fmt::Debug for Exports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Exports")
    }
}

impl Exports {
    fn get(
        &self,
        collective: &Cid,
        did: &Did,
        kind: RepoKind,
        since: Option<&str>,
    ) -> Option<(RepoHead, Arc<Vec<u8>>)> {
        let mut q = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        q.retain(|e| e.at.elapsed() < EXPORT_TTL);
        q.iter()
            .find(|e| {
                e.collective == *collective
                    && e.did == *did
                    && e.kind == kind
                    && e.since.as_deref() == since
            })
            .map(|e| (e.head.clone(), Arc::clone(&e.car)))
    }

    fn put(&self, e: Export) {
        let mut q = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        q.retain(|x| {
            !(x.collective == e.collective
                && x.did == e.did
                && x.kind == e.kind
                && x.since == e.since)
        });
        while q.len() >= EXPORTS_KEPT {
            q.pop_front();
        }
        q.push_back(e);
    }
}

/// What a repo request asks for: whose repo, which one, since which revision.
#[derive(Debug, Clone)]
pub struct Wanted {
    /// Whose repo.
    pub did: Did,
    /// Which of the member's repos.
    pub kind: RepoKind,
    /// Only what is new since this revision.
    pub since: Option<String>,
}

/// The answer to a repo request (the requester is a member, and for a public repo `did` is
/// a member: the engine checked).
pub async fn serve_repo(
    repos: Option<Arc<dyn Repos>>,
    exports: Arc<Exports>,
    collective: Cid,
    wanted: Wanted,
    offset: u64,
    page_bytes: usize,
) -> Reply {
    let Some(repos) = repos else {
        return Reply::refused(NOT_FOUND);
    };
    let Wanted { did, kind, since } = wanted;
    let cached = if offset > 0 {
        exports.get(&collective, &did, kind, since.as_deref())
    } else {
        None
    };
    let (head, car) = match cached {
        Some(c) => c,
        None => {
            let (d, s) = (did.clone(), since.clone());
            match blocking(move || repos.export_since(&d, &collective, kind, s.as_deref())).await {
                Ok((head, car)) => {
                    let car = Arc::new(car);
                    exports.put(Export {
                        collective,
                        did,
                        kind,
                        since,
                        head: head.clone(),
                        car: Arc::clone(&car),
                        at: Instant::now(),
                    });
                    (head, car)
                }
                Err(RepoSyncError::NotFound) => return Reply::refused(NOT_FOUND),
                Err(RepoSyncError::UnknownRev) => return Reply::refused(UNKNOWN_REV),
                Err(e) => return Reply::refused(e.to_string()),
            }
        }
    };
    let Ok(rev) = Tid::parse(&head.rev) else {
        warn!(did = %head.did, rev = %head.rev, "an export whose revision is not a TID");
        return Reply::refused(NOT_FOUND);
    };
    let total = car.len();
    let Some(start) = usize::try_from(offset).ok().filter(|o| *o <= total) else {
        return Reply::refused(BAD_OFFSET);
    };
    let end = start.saturating_add(page_bytes.max(1)).min(total);
    Reply::Page(Page {
        car: car[start..end].to_vec(),
        total: total as u64,
        commit: head.commit,
        rev,
    })
}

/// Why a pull brought nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullFailure {
    /// The last peer's failure, as `<peer>: <error>`.
    pub last: String,
    /// Why this node's import refused the last repo a peer sent in full (its verification,
    /// its records' lexicons, its space declaration), if any got that far.
    pub refused: Option<String>,
}

impl std::fmt::Display for PullFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.last)
    }
}

/// Bounds on one pull.
#[derive(Debug, Clone, Copy)]
pub struct PullLimits {
    /// The largest CAR accepted.
    pub max_bytes: u64,
}

/// Why a download from one peer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownloadError {
    /// The request could not be made or was not answered.
    #[error("{0}")]
    Request(String),
    /// The peer refused, or answered with something else than a page.
    #[error(transparent)]
    Reply(#[from] ReplyError),
    /// The CAR is larger than this node accepts.
    #[error("the repo's CAR is {total} bytes; this node accepts at most {max}")]
    TooLarge {
        /// The CAR's length.
        total: u64,
        /// The limit.
        max: u64,
    },
    /// The head moved between pages more than [`MAX_RESTARTS`] times.
    #[error("the repo kept changing during the download")]
    KeptChanging,
    /// A page does not fit the CAR's announced length.
    #[error("a page does not fit the CAR's length")]
    BadPage,
}

impl DownloadError {
    fn is_unknown_rev(&self) -> bool {
        matches!(self, DownloadError::Reply(ReplyError::Refused(e)) if e == UNKNOWN_REV)
    }
}

/// Downloads `did`'s repo from `peer`, page by page.
async fn download(
    net: &NetHandle,
    peer: PeerId,
    topic: &str,
    did: &Did,
    kind: RepoKind,
    since: Option<&Tid>,
    limits: PullLimits,
) -> Result<Vec<u8>, DownloadError> {
    let mut buf: Vec<u8> = Vec::new();
    let mut at: Option<(Cid, u64)> = None;
    let mut restarts = 0;
    loop {
        let req = Request::Repo {
            did: did.clone(),
            public: kind == RepoKind::Public,
            since: since.cloned(),
            offset: buf.len() as u64,
        };
        let body = req
            .encode()
            .map_err(|e| DownloadError::Request(e.to_string()))?;
        let answer = net
            .request(peer, topic, body)
            .await
            .map_err(|e| DownloadError::Request(e.to_string()))?;
        let page = Reply::read_page(&answer)?;
        if page.total > limits.max_bytes {
            return Err(DownloadError::TooLarge {
                total: page.total,
                max: limits.max_bytes,
            });
        }
        match at {
            None => at = Some((page.commit, page.total)),
            Some(x) if x == (page.commit, page.total) => {}
            Some(_) => {
                // The head moved between two pages: start again from the new one.
                restarts += 1;
                if restarts > MAX_RESTARTS {
                    return Err(DownloadError::KeptChanging);
                }
                buf.clear();
                at = None;
                continue;
            }
        }
        let total = page.total;
        if page.car.is_empty() && (buf.len() as u64) < total
            || buf.len() as u64 + page.car.len() as u64 > total
        {
            return Err(DownloadError::BadPage);
        }
        buf.extend_from_slice(&page.car);
        if buf.len() as u64 == total {
            return Ok(buf);
        }
    }
}

/// Brings this node's replica of `did`'s repo of `kind` (`repo`) up to `rev` (or to whatever
/// the peers hold, if `rev` is `None`): asks each peer in turn for the diff since the replica's revision (the
/// whole repo if there is no replica, or if the peer has not seen that revision), and imports
/// the first CAR that verifies. Returns the replica's head afterwards, or why every peer
/// failed (with the import's last refusal apart, for the engine to report).
pub async fn pull(
    repos: Arc<dyn Repos>,
    net: NetHandle,
    collective: Cid,
    repo: (Did, RepoKind),
    rev: Option<String>,
    peers: Vec<PeerId>,
    limits: PullLimits,
) -> Result<Option<RepoHead>, PullFailure> {
    let (did, kind) = repo;
    let topic = crate::collective::topic(&collective);
    let held = {
        let (r, d) = (Arc::clone(&repos), did.clone());
        blocking(move || r.head(&d, &collective, kind))
            .await
            .map_err(|e| PullFailure {
                last: e.to_string(),
                refused: None,
            })?
    };
    if let (Some(h), Some(r)) = (&held, &rev)
        && h.rev >= *r
    {
        return Ok(held);
    }
    let mut last = String::from("no peer to ask");
    let mut refused = None;
    for peer in peers {
        // A held revision that is not a TID is no revision to diff from: the whole repo.
        let mut since = held.as_ref().and_then(|h| Tid::parse(&h.rev).ok());
        loop {
            match download(&net, peer, &topic, &did, kind, since.as_ref(), limits).await {
                Ok(car) => {
                    let (r, d) = (Arc::clone(&repos), did.clone());
                    match blocking(move || r.import_replica(&d, &collective, kind, &car)).await {
                        Ok(head) => {
                            debug!(did = %did, rev = %head.rev, peer = %peer, "replica updated");
                            return Ok(Some(head));
                        }
                        Err(e) => {
                            last = format!("{peer}: {e}");
                            debug!(did = %did, peer = %peer, error = %e, "replica refused");
                            refused = Some(e.to_string());
                        }
                    }
                }
                Err(e) if e.is_unknown_rev() && since.is_some() => {
                    since = None;
                    continue;
                }
                Err(e) => last = format!("{peer}: {e}"),
            }
            break;
        }
    }
    Err(PullFailure { last, refused })
}
