//! Repo replication on a collective's topic (protocol.md §5, "Repo sync"): the wire formats
//! and the tasks the collectives engine runs for it. Who may ask, and who pulls, is decided
//! by the engine (`collective.rs`); whether a CAR is a valid replica by the node's [`Repos`].
//!
//! - **Announcement** (gossip): `{"repoHead": {"did", "rev", "commit"}}`, published by a
//!   member's node after each commit to its repo in the collective's space. It is a map
//!   without `$type`, so it is never taken for a governance op.
//! - **Heads** (request `{"repoHeads": true}`): the heads of every repo the responder holds in
//!   the collective's space (its own and its replicas): `{"ok": true, "heads": [{did, rev,
//!   commit}]}`. Stewards ask it of each member peer on connect and of one member peer every
//!   `repo_sync_interval`, so a steward that was offline catches up, from the author or from
//!   another replica.
//! - **Repo** (request `{"repo": {"did", "since"?, "offset"?}}`): one page of the CAR of
//!   `did`'s repo (whole, or since a revision): `{"ok": true, "car": bytes, "total": int,
//!   "commit": link, "rev": string}`. Pages are at most `repo_page_bytes` (default 2 MB, the
//!   protocol's limit per sync message); the responder keeps the last few exports for a while
//!   so that later pages are slices of the same bytes, and the requester starts again if the
//!   commit changes between pages.
//!
//! Refusals are `{"ok": false, "error": string}`: `not-a-member` for a requester who is not a
//! current member (and nothing else), `not-found`, `unknown-rev` (the requester then asks for
//! the whole repo), `bad-offset`, `busy` (too many repo requests served at once; the steward
//! tries another peer, or again at its next heads sync).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use guild_core::{Cid, Ipld, data};
use libp2p::PeerId;
use tracing::debug;

use crate::handle::NetHandle;
use crate::repos::{RepoHead, RepoSyncError, Repos};

/// The refusal for a repo that the responder does not hold.
pub const NOT_FOUND: &str = "not-found";
/// The refusal for a `since` the responder has not seen.
pub const UNKNOWN_REV: &str = "unknown-rev";
/// The refusal for a page offset past the end.
pub const BAD_OFFSET: &str = "bad-offset";
/// The refusal when the responder serves as many repo requests as it allows.
pub const BUSY: &str = "busy";

/// Most heads in one heads answer.
const MAX_HEADS: usize = 50_000;
/// Exports kept for paging, and for how long.
const EXPORTS_KEPT: usize = 4;
const EXPORT_TTL: Duration = Duration::from_secs(120);
/// A requester starts a paged download again at most this often when the head moves.
const MAX_RESTARTS: u32 = 3;

fn head_ipld(h: &RepoHead) -> Ipld {
    Ipld::Map(
        [
            ("did".to_owned(), Ipld::String(h.did.clone())),
            ("rev".to_owned(), Ipld::String(h.rev.clone())),
            ("commit".to_owned(), Ipld::Link(h.commit)),
        ]
        .into(),
    )
}

fn head_of(v: &Ipld) -> Option<RepoHead> {
    let Ipld::Map(m) = v else {
        return None;
    };
    if m.len() != 3 {
        return None;
    }
    match (m.get("did"), m.get("rev"), m.get("commit")) {
        (Some(Ipld::String(did)), Some(Ipld::String(rev)), Some(Ipld::Link(commit)))
            if guild_core::syntax::Did::parse(did).is_ok()
                && guild_core::syntax::Tid::parse(rev).is_ok() =>
        {
            Some(RepoHead {
                did: did.clone(),
                rev: rev.clone(),
                commit: *commit,
            })
        }
        _ => None,
    }
}

fn encode(m: BTreeMap<String, Ipld>) -> Vec<u8> {
    data::encode(&Ipld::Map(m)).unwrap_or_default()
}

/// The gossip announcement of a new head.
pub fn encode_announcement(h: &RepoHead) -> Vec<u8> {
    encode([("repoHead".to_owned(), head_ipld(h))].into())
}

/// `None`: the bytes are not an announcement (a governance op, say). `Some(None)`: an
/// announcement, malformed.
pub fn decode_announcement(bytes: &[u8]) -> Option<Option<RepoHead>> {
    let Ok(Ipld::Map(m)) = data::decode(bytes) else {
        return None;
    };
    if m.contains_key("$type") {
        return None;
    }
    let inner = m.get("repoHead")?;
    if m.len() != 1 {
        return Some(None);
    }
    Some(head_of(inner))
}

/// A replication request on `/guild/sync/1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoReq {
    /// The heads of the repos the responder holds in the collective's space.
    Heads,
    /// A page of a repo's CAR.
    Repo {
        /// Whose repo.
        did: String,
        /// Only what is new since this revision.
        since: Option<String>,
        /// The page's first byte in the CAR.
        offset: u64,
    },
}

impl RepoReq {
    /// The request body.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            RepoReq::Heads => encode([("repoHeads".to_owned(), Ipld::Bool(true))].into()),
            RepoReq::Repo { did, since, offset } => {
                let mut r: BTreeMap<String, Ipld> = [
                    ("did".to_owned(), Ipld::String(did.clone())),
                    ("offset".to_owned(), Ipld::Integer(i128::from(*offset))),
                ]
                .into();
                if let Some(s) = since {
                    r.insert("since".to_owned(), Ipld::String(s.clone()));
                }
                encode([("repo".to_owned(), Ipld::Map(r))].into())
            }
        }
    }

    /// `None` if the body is not a replication request.
    pub fn decode(bytes: &[u8]) -> Option<RepoReq> {
        let Ok(Ipld::Map(m)) = data::decode(bytes) else {
            return None;
        };
        if m.len() != 1 {
            return None;
        }
        match (m.get("repoHeads"), m.get("repo")) {
            (Some(Ipld::Bool(true)), None) => Some(RepoReq::Heads),
            (None, Some(Ipld::Map(r))) => {
                let did = match r.get("did") {
                    Some(Ipld::String(d)) if guild_core::syntax::Did::parse(d).is_ok() => d.clone(),
                    _ => return None,
                };
                let since = match r.get("since") {
                    None => None,
                    Some(Ipld::String(s)) => Some(s.clone()),
                    Some(_) => return None,
                };
                let offset = match r.get("offset") {
                    None => 0,
                    Some(Ipld::Integer(n)) => u64::try_from(*n).ok()?,
                    Some(_) => return None,
                };
                if r.keys()
                    .any(|k| !matches!(k.as_str(), "did" | "since" | "offset"))
                {
                    return None;
                }
                Some(RepoReq::Repo { did, since, offset })
            }
            _ => None,
        }
    }
}

fn ok_response(mut m: BTreeMap<String, Ipld>) -> Vec<u8> {
    m.insert("ok".to_owned(), Ipld::Bool(true));
    encode(m)
}

/// `{ok: false, error}`.
pub fn refusal(error: &str) -> Vec<u8> {
    encode(
        [
            ("ok".to_owned(), Ipld::Bool(false)),
            ("error".to_owned(), Ipld::String(error.to_owned())),
        ]
        .into(),
    )
}

/// The response's map if `ok` is true, its error otherwise.
fn read_ok(bytes: &[u8]) -> Result<BTreeMap<String, Ipld>, String> {
    let Ok(Ipld::Map(m)) = data::decode(bytes) else {
        return Err("malformed response".into());
    };
    match (m.get("ok"), m.get("error")) {
        (Some(Ipld::Bool(true)), _) => Ok(m),
        (Some(Ipld::Bool(false)), Some(Ipld::String(e))) => Err(e.clone()),
        _ => Err("malformed response".into()),
    }
}

/// Reads a heads answer.
pub fn read_heads(bytes: &[u8]) -> Result<Vec<RepoHead>, String> {
    let m = read_ok(bytes)?;
    match m.get("heads") {
        Some(Ipld::List(items)) if items.len() <= MAX_HEADS => items
            .iter()
            .map(|i| head_of(i).ok_or_else(|| "malformed head".to_string()))
            .collect(),
        _ => Err("malformed response".into()),
    }
}

struct Page {
    head: RepoHead,
    total: u64,
    car: Vec<u8>,
}

fn read_page(bytes: &[u8], did: &str) -> Result<Page, String> {
    let m = read_ok(bytes)?;
    match (m.get("car"), m.get("total"), m.get("commit"), m.get("rev")) {
        (
            Some(Ipld::Bytes(car)),
            Some(Ipld::Integer(total)),
            Some(Ipld::Link(commit)),
            Some(Ipld::String(rev)),
        ) => Ok(Page {
            head: RepoHead {
                did: did.to_owned(),
                rev: rev.clone(),
                commit: *commit,
            },
            total: u64::try_from(*total).map_err(|_| "malformed response".to_string())?,
            car: car.clone(),
        }),
        _ => Err("malformed response".into()),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RepoSyncError> + Send + 'static,
) -> Result<T, RepoSyncError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RepoSyncError::Store(format!("worker failed: {e}")))?
}

/// The answer to a heads request (the requester is a member: the engine checked).
pub async fn serve_heads(repos: Option<Arc<dyn Repos>>, collective: Cid) -> Vec<u8> {
    let heads = match repos {
        None => Vec::new(),
        Some(r) => match blocking(move || r.heads(&collective)).await {
            Ok(h) => h,
            Err(e) => return refusal(&e.to_string()),
        },
    };
    ok_response(
        [(
            "heads".to_owned(),
            Ipld::List(heads.iter().take(MAX_HEADS).map(head_ipld).collect()),
        )]
        .into(),
    )
}

struct Export {
    collective: Cid,
    did: String,
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
        did: &str,
        since: Option<&str>,
    ) -> Option<(RepoHead, Arc<Vec<u8>>)> {
        let mut q = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        q.retain(|e| e.at.elapsed() < EXPORT_TTL);
        q.iter()
            .find(|e| e.collective == *collective && e.did == did && e.since.as_deref() == since)
            .map(|e| (e.head.clone(), Arc::clone(&e.car)))
    }

    fn put(&self, e: Export) {
        let mut q = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        q.retain(|x| !(x.collective == e.collective && x.did == e.did && x.since == e.since));
        while q.len() >= EXPORTS_KEPT {
            q.pop_front();
        }
        q.push_back(e);
    }
}

/// The answer to a repo request (the requester is a member: the engine checked).
pub async fn serve_repo(
    repos: Option<Arc<dyn Repos>>,
    exports: Arc<Exports>,
    collective: Cid,
    did: String,
    since: Option<String>,
    offset: u64,
    page_bytes: usize,
) -> Vec<u8> {
    let Some(repos) = repos else {
        return refusal(NOT_FOUND);
    };
    let cached = if offset > 0 {
        exports.get(&collective, &did, since.as_deref())
    } else {
        None
    };
    let (head, car) = match cached {
        Some(c) => c,
        None => {
            let (d, s) = (did.clone(), since.clone());
            match blocking(move || repos.export_since(&d, &collective, s.as_deref())).await {
                Ok((head, car)) => {
                    let car = Arc::new(car);
                    exports.put(Export {
                        collective,
                        did,
                        since,
                        head: head.clone(),
                        car: Arc::clone(&car),
                        at: Instant::now(),
                    });
                    (head, car)
                }
                Err(RepoSyncError::NotFound) => return refusal(NOT_FOUND),
                Err(RepoSyncError::UnknownRev) => return refusal(UNKNOWN_REV),
                Err(e) => return refusal(&e.to_string()),
            }
        }
    };
    let total = car.len();
    let Some(start) = usize::try_from(offset).ok().filter(|o| *o <= total) else {
        return refusal(BAD_OFFSET);
    };
    let end = start.saturating_add(page_bytes.max(1)).min(total);
    ok_response(
        [
            ("car".to_owned(), Ipld::Bytes(car[start..end].to_vec())),
            ("total".to_owned(), Ipld::Integer(total as i128)),
            ("commit".to_owned(), Ipld::Link(head.commit)),
            ("rev".to_owned(), Ipld::String(head.rev)),
        ]
        .into(),
    )
}

/// Bounds on one pull.
#[derive(Debug, Clone, Copy)]
pub struct PullLimits {
    /// The largest CAR accepted.
    pub max_bytes: u64,
}

/// Downloads `did`'s repo from `peer`, page by page.
async fn download(
    net: &NetHandle,
    peer: PeerId,
    topic: &str,
    did: &str,
    since: Option<&str>,
    limits: PullLimits,
) -> Result<Vec<u8>, String> {
    let mut buf: Vec<u8> = Vec::new();
    let mut at: Option<(Cid, u64)> = None;
    let mut restarts = 0;
    loop {
        let req = RepoReq::Repo {
            did: did.to_owned(),
            since: since.map(str::to_owned),
            offset: buf.len() as u64,
        };
        let answer = net
            .request(peer, topic, req.encode())
            .await
            .map_err(|e| e.to_string())?;
        let page = read_page(&answer, did)?;
        if page.total > limits.max_bytes {
            return Err(format!(
                "the repo's CAR is {} bytes; this node accepts at most {}",
                page.total, limits.max_bytes
            ));
        }
        match at {
            None => at = Some((page.head.commit, page.total)),
            Some(x) if x == (page.head.commit, page.total) => {}
            Some(_) => {
                // The head moved between two pages: start again from the new one.
                restarts += 1;
                if restarts > MAX_RESTARTS {
                    return Err("the repo kept changing during the download".into());
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
            return Err("a page does not fit the CAR's length".into());
        }
        buf.extend_from_slice(&page.car);
        if buf.len() as u64 == total {
            return Ok(buf);
        }
    }
}

/// Brings this node's replica of `did`'s repo up to `rev` (or to whatever the peers hold, if
/// `rev` is `None`): asks each peer in turn for the diff since the replica's revision (the
/// whole repo if there is no replica, or if the peer has not seen that revision), and imports
/// the first CAR that verifies. Returns the replica's head afterwards, or why every peer
/// failed.
pub async fn pull(
    repos: Arc<dyn Repos>,
    net: NetHandle,
    collective: Cid,
    did: String,
    rev: Option<String>,
    peers: Vec<PeerId>,
    limits: PullLimits,
) -> Result<Option<RepoHead>, String> {
    let topic = crate::collective::topic(&collective);
    let held = {
        let (r, d) = (Arc::clone(&repos), did.clone());
        blocking(move || r.head(&d, &collective))
            .await
            .map_err(|e| e.to_string())?
    };
    if let (Some(h), Some(r)) = (&held, &rev)
        && h.rev >= *r
    {
        return Ok(held);
    }
    let mut last = String::from("no peer to ask");
    for peer in peers {
        let mut since = held.as_ref().map(|h| h.rev.clone());
        loop {
            match download(&net, peer, &topic, &did, since.as_deref(), limits).await {
                Ok(car) => {
                    let (r, d) = (Arc::clone(&repos), did.clone());
                    match blocking(move || r.import_replica(&d, &collective, &car)).await {
                        Ok(head) => {
                            debug!(did = %did, rev = %head.rev, peer = %peer, "replica updated");
                            return Ok(Some(head));
                        }
                        Err(e) => {
                            last = format!("{peer}: {e}");
                            debug!(did = %did, peer = %peer, error = %e, "replica refused");
                        }
                    }
                }
                Err(e) if e == UNKNOWN_REV && since.is_some() => {
                    since = None;
                    continue;
                }
                Err(e) => last = format!("{peer}: {e}"),
            }
            break;
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> RepoHead {
        RepoHead {
            did: "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK".into(),
            rev: "3jzfcijpj2z2a".into(),
            commit: guild_core::cids::cid_for_cbor(b"\xa0"),
        }
    }

    #[test]
    fn announcements_round_trip_and_are_not_ops() {
        let h = head();
        let bytes = encode_announcement(&h);
        assert_eq!(decode_announcement(&bytes), Some(Some(h.clone())));
        // A map with $type is an op, whatever else it holds.
        let op = encode(
            [
                (
                    "$type".to_owned(),
                    Ipld::String("coop.guild.membership.join".into()),
                ),
                ("repoHead".to_owned(), head_ipld(&h)),
            ]
            .into(),
        );
        assert_eq!(decode_announcement(&op), None);
        // Malformed: an extra key, a bad rev, a missing commit.
        let extra = encode(
            [
                ("repoHead".to_owned(), head_ipld(&h)),
                ("x".to_owned(), Ipld::Null),
            ]
            .into(),
        );
        assert_eq!(decode_announcement(&extra), Some(None));
        let mut bad = h.clone();
        bad.rev = "not-a-tid".into();
        assert_eq!(decode_announcement(&encode_announcement(&bad)), Some(None));
        assert_eq!(decode_announcement(b"garbage"), None);
    }

    #[test]
    fn requests_round_trip() {
        for r in [
            RepoReq::Heads,
            RepoReq::Repo {
                did: head().did,
                since: None,
                offset: 0,
            },
            RepoReq::Repo {
                did: head().did,
                since: Some("3jzfcijpj2z2a".into()),
                offset: 4096,
            },
        ] {
            assert_eq!(RepoReq::decode(&r.encode()), Some(r));
        }
        let sync = encode([("sync".to_owned(), Ipld::Bytes(vec![1]))].into());
        assert_eq!(RepoReq::decode(&sync), None);
    }
}
