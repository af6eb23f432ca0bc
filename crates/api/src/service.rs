//! The node's repository service: what the XRPC handlers call. It composes the pieces that own
//! the rules (guild-repo applies writes and signs commits, guild-lexicon validates records,
//! guild-store persists atomically) and holds none of those rules itself.

use std::sync::{Arc, Mutex};

use cid::Cid;
use guild_core::Keypair;
use guild_core::data::{Ipld, from_json};
use guild_core::syntax::{Nsid, RecordKey, Tid, TidClock};
use guild_lexicon::Registry;
use guild_repo::{Action, BlockStore, Bytes, Repo, RepoError, StoreError, Write};
use guild_store::{CommitError, IndexOp, KvOp, KvStore, RepoHead, RepoKey, RepoStore, Staged};

/// The space of a member's public repository.
pub const PUBLIC: &str = "public";
/// The collection whose `self` record opens every collective (space) repository.
pub const SPACE_DECLARATION: &str = "coop.guild.space.declaration";

/// Why a service call failed; the HTTP layer maps each to an XRPC error.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed or breaks a rule.
    #[error("{0}")]
    InvalidRequest(String),
    /// A record fails its lexicon.
    #[error("invalid record at {path}: {message}")]
    InvalidRecord {
        /// The record's path in the repo.
        path: String,
        /// What the validator said.
        message: String,
    },
    /// No such repository on this node.
    #[error("could not find repo: {0}")]
    RepoNotFound(String),
    /// No such record.
    #[error("could not locate record: {0}")]
    RecordNotFound(String),
    /// A swap (compare-and-swap) precondition failed.
    #[error("{0}")]
    InvalidSwap(String),
    /// The store or the repo layer failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        ServiceError::Internal(e.to_string())
    }
}

impl From<RepoError> for ServiceError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::Exists(p) => {
                ServiceError::InvalidRequest(format!("record {p} already exists"))
            }
            RepoError::NotFound(p) => ServiceError::RecordNotFound(p),
            RepoError::Duplicate(_)
            | RepoError::InvalidPath { .. }
            | RepoError::Record { .. }
            | RepoError::Empty => ServiceError::InvalidRequest(e.to_string()),
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

/// One write, as the API receives it (records in the JSON form of the data model).
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// A new record; a TID key is chosen when `rkey` is `None`.
    Create {
        /// Its collection.
        collection: String,
        /// Its key, if the caller chose one.
        rkey: Option<String>,
        /// The record.
        record: serde_json::Value,
    },
    /// Replace a record that must exist (AT's `applyWrites#update`).
    Update {
        /// Its collection.
        collection: String,
        /// Its key.
        rkey: String,
        /// The new record.
        record: serde_json::Value,
    },
    /// Create or replace (AT's `putRecord`).
    Put {
        /// Its collection.
        collection: String,
        /// Its key.
        rkey: String,
        /// The record.
        record: serde_json::Value,
        /// If given, the record's current CID must be this (`None` inside: must not exist).
        swap_record: Option<Option<Cid>>,
    },
    /// Remove.
    Delete {
        /// Its collection.
        collection: String,
        /// Its key.
        rkey: String,
        /// If given, the record's current CID must be this.
        swap_record: Option<Cid>,
    },
}

/// The result of one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteResult {
    /// `at://did/collection/rkey`.
    pub uri: String,
    /// The record's new CID (none for deletes).
    pub cid: Option<Cid>,
    /// `valid` when checked against a lexicon, `unknown` when its type has none.
    pub validation_status: Option<&'static str>,
}

/// A commit made by a write call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The new commit's CID.
    pub commit: Cid,
    /// The new revision.
    pub rev: Tid,
    /// One result per write, in order.
    pub results: Vec<WriteResult>,
}

/// A listed record: its rkey, CID and value.
pub type ListedRecord = (String, Cid, Ipld);

/// Every store the service needs.
pub trait NodeStore: RepoStore + KvStore + BlockStore + 'static {}
impl<T: RepoStore + KvStore + BlockStore + 'static> NodeStore for T {}

/// The member's repositories on this node.
pub struct RepoService<S> {
    store: Arc<S>,
    key: Keypair,
    did: String,
    registry: Arc<Registry>,
    clock: Mutex<TidClock>,
    /// Writes are serialised: one commit at a time per node.
    write_lock: Mutex<()>,
}

impl<S> std::fmt::Debug for RepoService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoService")
            .field("did", &self.did)
            .finish_non_exhaustive()
    }
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The KV tree that maps each repo's revisions to their commits (for `getRepo?since=`).
const REVS_TREE: &str = "revs";

fn rev_key(repo: &RepoKey, rev: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(repo.did.len() + repo.space.len() + rev.len() + 2);
    k.extend_from_slice(repo.did.as_bytes());
    k.push(0);
    k.extend_from_slice(repo.space.as_bytes());
    k.push(0);
    k.extend_from_slice(rev.as_bytes());
    k
}

impl<S: NodeStore> RepoService<S> {
    /// A service over `store` for the member whose key is `key`. The TID clock resumes after
    /// every revision the store has seen, so TIDs stay monotonic across restarts.
    pub fn new(store: Arc<S>, key: Keypair, registry: Arc<Registry>) -> Result<Self, ServiceError> {
        let did = key.did();
        let clock_id = {
            let pk = key.public().to_bytes();
            u16::from_le_bytes([pk[0], pk[1]]) & 0x3ff
        };
        let mut last = store.last_tid()?;
        for (_, head) in store.repos()? {
            if last.as_ref().is_none_or(|l| head.rev > *l) {
                last = Some(head.rev);
            }
        }
        Ok(RepoService {
            store,
            did,
            key,
            registry,
            clock: Mutex::new(TidClock::resume(clock_id, last.as_ref())),
            write_lock: Mutex::new(()),
        })
    }

    /// The member's DID.
    pub fn did(&self) -> &str {
        &self.did
    }

    /// The store.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// The lexicon registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Persists the clock (called at shutdown).
    pub fn save_clock(&self) -> Result<(), ServiceError> {
        let last = self.clock.lock().map_err(|_| poisoned())?.last();
        if let Some(t) = last {
            self.store.set_last_tid(&t)?;
        }
        Ok(())
    }

    fn next_tid(&self) -> Result<Tid, ServiceError> {
        Ok(self
            .clock
            .lock()
            .map_err(|_| poisoned())?
            .next(now_micros()))
    }

    /// The repo key for `space` of this node's member, checking the repo parameter.
    pub fn repo_key(&self, repo: &str, space: &str) -> Result<RepoKey, ServiceError> {
        if repo != self.did {
            return Err(ServiceError::RepoNotFound(repo.chars().take(200).collect()));
        }
        if space != PUBLIC && guild_core::syntax::parse_cid_str(space).is_err() {
            return Err(ServiceError::InvalidRequest(format!(
                "space must be \"public\" or a collective id (a CID), not {:?}",
                space.chars().take(100).collect::<String>()
            )));
        }
        Ok(RepoKey::space(self.did.clone(), space.to_string()))
    }

    /// The head of a repo, or `RepoNotFound`.
    pub fn head(&self, repo: &RepoKey) -> Result<RepoHead, ServiceError> {
        self.store
            .head(repo)?
            .ok_or_else(|| ServiceError::RepoNotFound(format!("{} ({})", repo.did, repo.space)))
    }

    /// Applies writes as one commit. `validate`: `Some(true)` requires a lexicon for every
    /// record, `Some(false)` skips lexicons, `None` validates the types it knows. Collective
    /// spaces always require lexicons.
    pub fn apply_writes(
        &self,
        repo: &RepoKey,
        writes: Vec<WriteOp>,
        validate: Option<bool>,
        swap_commit: Option<&Cid>,
    ) -> Result<WriteOutcome, ServiceError> {
        if writes.is_empty() {
            return Err(ServiceError::InvalidRequest("no writes".into()));
        }
        if writes.len() > 10_000 {
            return Err(ServiceError::InvalidRequest(format!(
                "{} writes in one commit; the limit is 10000",
                writes.len()
            )));
        }
        let validate = if repo.space == PUBLIC {
            validate
        } else {
            Some(true)
        };
        let _guard = self.write_lock.lock().map_err(|_| poisoned())?;
        let head = self.store.head(repo)?;
        if let Some(swap) = swap_commit
            && head.as_ref().map(|h| &h.commit) != Some(swap)
        {
            return Err(ServiceError::InvalidSwap(format!(
                "commit was at {}",
                head.as_ref()
                    .map_or("nothing".to_string(), |h| h.commit.to_string())
            )));
        }
        let staged = Staged::new(&*self.store);
        let mut r = match &head {
            Some(h) => Repo::open(staged, h.commit)?,
            None => Repo::empty(staged, self.did.clone()),
        };
        let mut repo_writes = Vec::with_capacity(writes.len());
        let mut statuses = Vec::with_capacity(writes.len());
        let mut declares_space = false;
        enum Mode {
            Create,
            Update,
            Put,
        }
        for w in writes {
            let (collection, rkey, record, swap_record, delete, mode) = match w {
                WriteOp::Create {
                    collection,
                    rkey,
                    record,
                } => (collection, rkey, Some(record), None, false, Mode::Create),
                WriteOp::Update {
                    collection,
                    rkey,
                    record,
                } => (
                    collection,
                    Some(rkey),
                    Some(record),
                    None,
                    false,
                    Mode::Update,
                ),
                WriteOp::Put {
                    collection,
                    rkey,
                    record,
                    swap_record,
                } => (
                    collection,
                    Some(rkey),
                    Some(record),
                    swap_record,
                    false,
                    Mode::Put,
                ),
                WriteOp::Delete {
                    collection,
                    rkey,
                    swap_record,
                } => (
                    collection,
                    Some(rkey),
                    None,
                    swap_record.map(Some),
                    true,
                    Mode::Put,
                ),
            };
            let nsid = Nsid::parse(&collection)
                .map_err(|e| ServiceError::InvalidRequest(format!("collection: {e}")))?;
            let rkey = match rkey {
                Some(k) => RecordKey::parse(&k)
                    .map_err(|e| ServiceError::InvalidRequest(format!("rkey: {e}")))?,
                None => RecordKey::from(self.next_tid()?),
            };
            let path = format!("{nsid}/{rkey}");
            if let Some(expected) = swap_record {
                let current = r.get(&nsid, &rkey)?;
                if current != expected {
                    return Err(ServiceError::InvalidSwap(format!(
                        "record {path} was at {}",
                        current.map_or("nothing".to_string(), |c| c.to_string())
                    )));
                }
            }
            if delete {
                statuses.push((path, None));
                repo_writes.push(Write::Delete {
                    collection: nsid,
                    rkey,
                });
                continue;
            }
            let record = record.unwrap_or(serde_json::Value::Null);
            let value = self.check_record(&nsid, &rkey, &path, &record, validate)?;
            let status = if self.registry.is_record_type(nsid.as_str()) && validate != Some(false) {
                "valid"
            } else {
                "unknown"
            };
            if nsid.as_str() == SPACE_DECLARATION && rkey.as_str() == "self" {
                declares_space = true;
                if repo.space != PUBLIC {
                    check_declaration(&value, &repo.space)?;
                }
            }
            statuses.push((path, Some(status)));
            repo_writes.push(match mode {
                Mode::Create => Write::Create {
                    collection: nsid,
                    rkey,
                    record: value,
                },
                Mode::Update => Write::Update {
                    collection: nsid,
                    rkey,
                    record: value,
                },
                Mode::Put => Write::Put {
                    collection: nsid,
                    rkey,
                    record: value,
                },
            });
        }
        if head.is_none() && repo.space != PUBLIC && !declares_space {
            return Err(ServiceError::InvalidRequest(format!(
                "the first commit of a collective repo must write {SPACE_DECLARATION}/self naming the collective"
            )));
        }
        let rev = self.next_tid()?;
        let result = r.apply(&self.key, rev.clone(), repo_writes)?;
        let index: Vec<IndexOp> = result
            .ops
            .iter()
            .filter_map(|op| {
                let (c, k) = op.path.split_once('/')?;
                Some(match op.action {
                    Action::Delete => IndexOp::Delete {
                        collection: c.to_string(),
                        rkey: k.to_string(),
                    },
                    _ => IndexOp::Put {
                        collection: c.to_string(),
                        rkey: k.to_string(),
                        cid: op.cid?,
                    },
                })
            })
            .collect();
        let new_head = RepoHead {
            commit: result.head.commit,
            rev: result.head.rev.clone(),
            data: result.head.data,
        };
        // The revision log first (made durable by the commit's own flush): an entry for a
        // commit that never became head is harmless.
        self.store.kv_stage(
            REVS_TREE,
            &[KvOp::Put(
                rev_key(repo, rev.as_str()),
                Bytes::from(new_head.commit.to_bytes()),
            )],
        )?;
        self.store
            .commit(
                repo,
                head.as_ref().map(|h| &h.commit),
                &new_head,
                &result.blocks,
                &index,
            )
            .map_err(|e| match e {
                CommitError::Conflict { .. } => {
                    ServiceError::InvalidSwap("the repo changed during the write".into())
                }
                CommitError::Store(s) => ServiceError::Internal(s.to_string()),
            })?;
        tracing::debug!(repo = %repo.space, rev = %rev, writes = statuses.len(), "committed");
        let results = statuses
            .into_iter()
            .zip(&result.ops)
            .map(|((path, status), op)| WriteResult {
                uri: format!("at://{}/{path}", self.did),
                cid: op.cid,
                validation_status: status,
            })
            .collect();
        Ok(WriteOutcome {
            commit: new_head.commit,
            rev,
            results,
        })
    }

    /// Data model, `$type`, record key and lexicon checks for one record.
    fn check_record(
        &self,
        nsid: &Nsid,
        rkey: &RecordKey,
        path: &str,
        record: &serde_json::Value,
        validate: Option<bool>,
    ) -> Result<Ipld, ServiceError> {
        let invalid = |message: String| ServiceError::InvalidRecord {
            path: path.to_string(),
            message,
        };
        let value = from_json(record).map_err(|e| invalid(e.to_string()))?;
        match &value {
            Ipld::Map(m) => match m.get("$type") {
                Some(Ipld::String(t)) if t == nsid.as_str() => {}
                Some(Ipld::String(t)) => {
                    return Err(invalid(format!(
                        "$type {t:?} does not match the collection {nsid}"
                    )));
                }
                _ => return Err(invalid("a record needs a $type string".into())),
            },
            _ => return Err(invalid("a record must be an object".into())),
        }
        let known = self.registry.is_record_type(nsid.as_str());
        match (validate, known) {
            (Some(false), _) => {}
            (Some(true), false) => {
                return Err(invalid(format!(
                    "no lexicon for {nsid}; this repo accepts only known record types"
                )));
            }
            (_, true) => {
                self.registry
                    .validate_record_key(nsid.as_str(), rkey.as_str())
                    .map_err(|e| invalid(e.to_string()))?;
                self.registry
                    .validate_record(&value)
                    .map_err(|e| invalid(e.to_string()))?;
            }
            (None, false) => {}
        }
        Ok(value)
    }

    /// A record: its CID and value.
    pub fn get_record(
        &self,
        repo: &RepoKey,
        collection: &str,
        rkey: &str,
        cid: Option<&Cid>,
    ) -> Result<(Cid, Ipld), ServiceError> {
        self.head(repo)?;
        let path = format!("{collection}/{rkey}");
        let found = self
            .store
            .index_get(repo, collection, rkey)?
            .ok_or_else(|| ServiceError::RecordNotFound(path.clone()))?;
        if cid.is_some_and(|c| *c != found) {
            return Err(ServiceError::RecordNotFound(format!("{path} at that CID")));
        }
        Ok((found, self.read_record(&found)?))
    }

    fn read_record(&self, cid: &Cid) -> Result<Ipld, ServiceError> {
        let bytes = self
            .store
            .get_block(cid)?
            .ok_or_else(|| ServiceError::Internal(format!("record block {cid} is missing")))?;
        guild_core::data::decode(&bytes).map_err(|e| ServiceError::Internal(e.to_string()))
    }

    /// Records of a collection, from the index: `(rkey, cid, value)` and the next cursor.
    pub fn list_records(
        &self,
        repo: &RepoKey,
        collection: &str,
        cursor: Option<&str>,
        limit: usize,
        reverse: bool,
    ) -> Result<(Vec<ListedRecord>, Option<String>), ServiceError> {
        self.head(repo)?;
        let rows = self
            .store
            .index_list(repo, collection, cursor, limit, reverse)?;
        let next = if rows.len() == limit {
            rows.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        let out = rows
            .into_iter()
            .map(|(rkey, cid)| Ok((rkey, cid, self.read_record(&cid)?)))
            .collect::<Result<_, ServiceError>>()?;
        Ok((out, next))
    }

    /// The collections of a repo.
    pub fn collections(&self, repo: &RepoKey) -> Result<Vec<String>, ServiceError> {
        self.head(repo)?;
        Ok(self.store.collections(repo)?)
    }

    /// The whole repository as a CAR (commit first), or, with `since`, the blocks that are new
    /// since that revision (the commit, changed MST nodes and new records).
    pub fn repo_car(&self, repo: &RepoKey, since: Option<&str>) -> Result<Vec<u8>, ServiceError> {
        let head = self.head(repo)?;
        // Read-only: nothing is staged.
        let r = Repo::open(Staged::new(&*self.store), head.commit)?;
        let mut out = Vec::new();
        let mut car = guild_repo::CarWriter::new(&mut out, &[head.commit])
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let io = |e: std::io::Error| ServiceError::Internal(e.to_string());
        match since {
            None => {
                r.for_each_block(|cid, data| {
                    car.write_block(cid, data)
                        .map_err(|e| RepoError::Store(StoreError(e.to_string())))
                })?;
            }
            Some(since) => {
                Tid::parse(since)
                    .map_err(|e| ServiceError::InvalidRequest(format!("since: {e}")))?;
                let old = self
                    .store
                    .kv_get(REVS_TREE, &rev_key(repo, since))?
                    .ok_or_else(|| {
                        ServiceError::InvalidRequest(format!("unknown revision {since}"))
                    })?;
                let old = Cid::try_from(old.as_ref())
                    .map_err(|e| ServiceError::Internal(e.to_string()))?;
                let old_commit = self
                    .store
                    .get_block(&old)?
                    .ok_or_else(|| ServiceError::Internal(format!("commit {old} is missing")))?;
                let old_data = guild_repo::verify_commit(&old, &old_commit)
                    .map_err(|e| ServiceError::Internal(e.to_string()))?
                    .data;
                let commit_bytes = self.store.get_block(&head.commit)?.ok_or_else(|| {
                    ServiceError::Internal(format!("commit {} is missing", head.commit))
                })?;
                car.write_block(&head.commit, &commit_bytes).map_err(io)?;
                let (ops, nodes) = guild_repo::mst::diff(&*self.store, old_data, head.data)
                    .map_err(RepoError::from)?;
                for cid in nodes {
                    if let Some(b) = self.store.get_block(&cid)? {
                        car.write_block(&cid, &b).map_err(io)?;
                    }
                }
                for op in ops {
                    let cid = match op {
                        guild_repo::mst::DiffOp::Add { cid, .. }
                        | guild_repo::mst::DiffOp::Update { cid, .. } => cid,
                        guild_repo::mst::DiffOp::Delete { .. } => continue,
                    };
                    if let Some(b) = self.store.get_block(&cid)? {
                        car.write_block(&cid, &b).map_err(io)?;
                    }
                }
            }
        }
        car.finish().map_err(io)?;
        Ok(out)
    }

    /// An inclusion proof of one record, as a CAR.
    pub fn record_proof(
        &self,
        repo: &RepoKey,
        collection: &str,
        rkey: &str,
    ) -> Result<Vec<u8>, ServiceError> {
        let head = self.head(repo)?;
        let path = format!("{collection}/{rkey}");
        let blocks = guild_repo::prove(&*self.store, head.commit, &path).map_err(|e| match e {
            guild_repo::ProofError::Absent(p) => ServiceError::RecordNotFound(p),
            other => ServiceError::Internal(other.to_string()),
        })?;
        let refs = blocks.iter().map(|(c, b)| (c, b.as_ref()));
        Ok(guild_repo::car::car_bytes(&[head.commit], refs))
    }
}

fn check_declaration(value: &Ipld, space: &str) -> Result<(), ServiceError> {
    let collective = match value {
        Ipld::Map(m) => m.get("collective"),
        _ => None,
    };
    match collective {
        Some(Ipld::String(c)) if c == space => Ok(()),
        _ => Err(ServiceError::InvalidRequest(format!(
            "{SPACE_DECLARATION}/self must name this space's collective ({space})"
        ))),
    }
}

fn poisoned() -> ServiceError {
    ServiceError::Internal("a lock was poisoned by an earlier panic".into())
}
