//! The node's repository service: what the XRPC handlers call. It composes the pieces that own
//! the rules (guild-repo applies writes and signs commits, guild-lexicon validates records,
//! guild-store persists atomically) and holds none of those rules itself, but for the few a
//! lexicon cannot state: the space declaration's, a file's `mimeType` agreeing with its blob's,
//! and no writes to a collective's space once its member left (see docs/protocol-notes.md).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use cid::Cid;
use guild_core::Keypair;
use guild_core::data::{Ipld, from_json};
use guild_core::syntax::{Did, Nsid, RecordKey, Tid, TidClock};
use guild_lexicon::Registry;
use guild_repo::{
    Action, BlockSource, BlockStore, Bytes, CarError, MemoryBlockStore, Repo, RepoError,
    StoreError, VerifyError, Write,
};
use guild_store::{
    CommitError, IndexOp, KvOp, KvStore, RepoHead, RepoKey, RepoStore, Space, SpaceError, Staged,
};

use crate::clock::Clock;
use crate::engine::Memberships;
use crate::repos::{self, RepoKind, RepoSyncError, Repos};

/// The collection whose `self` record opens every collective (space) repository.
pub const SPACE_DECLARATION: &str = "coop.guild.space.declaration";

/// A file work: its `mimeType` (the member's declaration) must agree with its blob's own
/// `file.mimeType`; the write path checks it, as a lexicon cannot relate two fields.
pub const FILE_RECORD: &str = "coop.guild.data.file";

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
    /// A delete of a collective space's declaration (`coop.guild.space.declaration/self`),
    /// whose path is given: a collective repo keeps it for its whole life, as stewards'
    /// replicas refuse a repo without it.
    #[error(
        "{0} cannot be deleted: the space declaration names the collective this repo belongs to, and stewards' replicas refuse a repo without it"
    )]
    DeclarationDelete(String),
    /// The store or the repo layer failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        ServiceError::Internal(e.to_string())
    }
}

impl From<SpaceError> for ServiceError {
    fn from(e: SpaceError) -> Self {
        ServiceError::InvalidRequest(e.to_string())
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

/// Why a replica was refused ([`RepoService::import_replica`]). Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The repo is this node's own member's: only its owner writes it.
    #[error("this is the node's own repo; only its owner writes it")]
    Own,
    /// The CAR cannot be read (truncated, a block that does not match its CID, …).
    #[error("bad CAR: {0}")]
    Car(#[from] CarError),
    /// The repo does not verify (signature, MST, missing blocks: a diff that does not chain
    /// onto the replica held).
    #[error("the repo does not verify: {0}")]
    Verify(#[from] VerifyError),
    /// The commit is signed by someone other than the repo's owner.
    #[error("the commit is by {found}, not by {expected}")]
    WrongDid {
        /// The repo's owner.
        expected: Did,
        /// The commit's DID.
        found: String,
    },
    /// The commit is not newer than the replica held.
    #[error("revision {got} is not newer than the replica's {held}")]
    NotNewer {
        /// The replica's revision.
        held: String,
        /// The CAR's.
        got: String,
    },
    /// The revision's timestamp is too far ahead of this node's clock.
    #[error("revision {0} is dated in the future")]
    FutureRev(String),
    /// A record has no lexicon, or breaks it.
    #[error("invalid record at {path}: {message}")]
    InvalidRecord {
        /// The record's path.
        path: String,
        /// Why.
        message: String,
    },
    /// The repo does not declare this collective.
    #[error("{0}")]
    Declaration(String),
    /// The replica changed during the import (another import won).
    #[error("the replica changed during the import")]
    Conflict,
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
}

impl From<StoreError> for ReplicaError {
    fn from(e: StoreError) -> Self {
        ReplicaError::Store(e.to_string())
    }
}

/// How far ahead of this node's clock a replica's revision may be dated.
const MAX_REV_AHEAD_MICROS: u64 = 10 * 60 * 1_000_000;

/// Blocks of a received CAR over the store's: what a diff's tree is read from.
struct Overlay<'a, S: ?Sized> {
    car: &'a MemoryBlockStore,
    store: &'a S,
}

impl<S: BlockSource + ?Sized> BlockSource for Overlay<'_, S> {
    fn get_block(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        match self.car.get_block(cid)? {
            Some(b) => Ok(Some(b)),
            None => self.store.get_block(cid),
        }
    }
}

/// Called after each commit to one of the member's collective spaces, with the collective.
pub type CommitHook = Box<dyn Fn(&Space, &RepoHead) + Send + Sync>;

/// Every store the service needs.
pub trait NodeStore: RepoStore + KvStore + BlockStore + 'static {}
impl<T: RepoStore + KvStore + BlockStore + 'static> NodeStore for T {}

/// The member's repositories on this node.
pub struct RepoService<S> {
    store: Arc<S>,
    key: Keypair,
    did: Did,
    registry: Arc<Registry>,
    tids: Mutex<TidClock>,
    /// Where "now" is read (TIDs, how far ahead a replica's revision may be dated).
    clock: Clock,
    /// Writes are serialised: one commit at a time per node.
    write_lock: Mutex<()>,
    on_commit: OnceLock<CommitHook>,
    /// Whether this node's member still belongs to each collective (see
    /// [`RepoService::check_memberships`]).
    memberships: OnceLock<Arc<dyn Memberships>>,
}

impl<S> std::fmt::Debug for RepoService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoService")
            .field("did", &self.did)
            .finish_non_exhaustive()
    }
}

/// The KV tree that maps each repo's revisions to their commits (for `getRepo?since=`).
const REVS_TREE: &str = "revs";

/// `did ‖ 0x00 ‖ space ‖ 0x00 ‖ rev`, the space as its string form (`public` or the
/// collective's CID string).
fn rev_key(repo: &RepoKey, rev: &str) -> Vec<u8> {
    let (did, space) = (repo.did.as_str(), repo.space.to_string());
    let mut k = Vec::with_capacity(did.len() + space.len() + rev.len() + 2);
    k.extend_from_slice(did.as_bytes());
    k.push(0);
    k.extend_from_slice(space.as_bytes());
    k.push(0);
    k.extend_from_slice(rev.as_bytes());
    k
}

impl<S: NodeStore> RepoService<S> {
    /// A service over `store` for the member whose key is `key`. The TID clock resumes after
    /// every revision the store has seen, so TIDs stay monotonic across restarts.
    pub fn new(store: Arc<S>, key: Keypair, registry: Arc<Registry>) -> Result<Self, ServiceError> {
        let did = Did::parse(&key.did()).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let clock_id = {
            let pk = key.public().to_bytes();
            u16::from_le_bytes([pk[0], pk[1]]) & 0x3ff
        };
        let mut last = store.last_tid()?;
        // Only the member's own repos: a replica's revisions come from its owner's clock.
        for (_, head) in store.repos()?.into_iter().filter(|(k, _)| k.did == did) {
            if last.as_ref().is_none_or(|l| head.rev > *l) {
                last = Some(head.rev);
            }
        }
        Ok(RepoService {
            store,
            did,
            key,
            registry,
            tids: Mutex::new(TidClock::resume(clock_id, last.as_ref())),
            clock: Clock::system(),
            write_lock: Mutex::new(()),
            on_commit: OnceLock::new(),
            memberships: OnceLock::new(),
        })
    }

    /// Installs the function called after each commit to one of the member's repos, a
    /// collective space's or the public one (the node announces the new head to the
    /// collective, or to every collective for the public repo, with it). Once only: returns
    /// false if one is installed already.
    pub fn on_commit(&self, hook: impl Fn(&Space, &RepoHead) + Send + Sync + 'static) -> bool {
        self.on_commit.set(Box::new(hook)).is_ok()
    }

    /// Installs where writes to a collective space learn whether this node's member still
    /// belongs to the collective: once it left or was removed, its records there reach no
    /// steward (they replicate members only), so the write is refused rather than kept
    /// unreplicated without a word. Once only: returns false if one is installed already.
    /// Without one (offline tools, tests), collective writes are not checked.
    pub fn check_memberships(&self, memberships: Arc<dyn Memberships>) -> bool {
        self.memberships.set(memberships).is_ok()
    }

    /// The service reading the time from `clock` (default: the system clock); the node passes
    /// the clock its engine and API read.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The service's clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Now, by the service's clock, as a TID timestamp (0 before the epoch).
    fn now_micros(&self) -> u64 {
        u64::try_from(self.clock.now_micros()).unwrap_or(0)
    }

    /// The member's DID.
    pub fn did(&self) -> &str {
        self.did.as_str()
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
        let last = self.tids.lock().map_err(|_| poisoned())?.last();
        if let Some(t) = last {
            self.store.set_last_tid(&t)?;
        }
        Ok(())
    }

    fn next_tid(&self) -> Result<Tid, ServiceError> {
        let now = self.now_micros();
        Ok(self.tids.lock().map_err(|_| poisoned())?.next(now))
    }

    /// The repo key for `space` of this node's member, checking the repo parameter (an AT
    /// identifier, as a request gives it: anything but the member's DID is `RepoNotFound`).
    /// (Writes go through it: a replica this node keeps of another member's repo is refused
    /// by name, since only its owner writes it.)
    pub fn repo_key(&self, repo: &str, space: &Space) -> Result<RepoKey, ServiceError> {
        if repo != self.did.as_str() {
            if let (Ok(did), Space::Collective(_)) = (Did::parse(repo), space)
                && self.store.head(&RepoKey::new(did, *space))?.is_some()
            {
                return Err(ServiceError::InvalidRequest(format!(
                    "this node writes only its member's repos; {repo} is held as a replica"
                )));
            }
            return Err(ServiceError::RepoNotFound(repo.chars().take(200).collect()));
        }
        Ok(RepoKey::new(self.did.clone(), *space))
    }

    /// The repo key for a read of `repo` in `space`: the member's own repos, and the replicas
    /// this node keeps of other members' repos, in a collective space or public (a steward's
    /// node does). A repo this node does not hold is `RepoNotFound` when it is read.
    pub fn read_key(&self, repo: &str, space: &Space) -> Result<RepoKey, ServiceError> {
        if repo == self.did.as_str() {
            return self.repo_key(repo, space);
        }
        let did = Did::parse(repo)
            .map_err(|_| ServiceError::RepoNotFound(repo.chars().take(200).collect()))?;
        Ok(RepoKey::new(did, *space))
    }

    /// Every public repo this node holds (its member's own and, on a steward's node, the
    /// replicas of members' public repos), in DID order.
    pub fn public_repos(&self) -> Result<Vec<(Did, RepoHead)>, ServiceError> {
        let mut out: Vec<(Did, RepoHead)> = self
            .store
            .repos()?
            .into_iter()
            .filter(|(k, _)| k.space.is_public())
            .map(|(k, h)| (k.did, h))
            .collect();
        out.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        Ok(out)
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
        self.check_write_request(repo, &writes)?;
        self.check_still_member(repo)?;
        let validate = if repo.space.is_public() {
            validate
        } else {
            Some(true)
        };
        let _guard = self.write_lock.lock().map_err(|_| poisoned())?;
        let head = self.store.head(repo)?;
        check_swap_commit(head.as_ref(), swap_commit)?;
        let staged = Staged::new(&*self.store);
        let mut r = match &head {
            Some(h) => Repo::open(staged, h.commit)?,
            None => Repo::empty(staged, self.did.to_string()),
        };
        let mut repo_writes = Vec::with_capacity(writes.len());
        let mut statuses = Vec::with_capacity(writes.len());
        let mut declares_space = false;
        for w in writes {
            let planned = self.plan_write(repo, &r, w, validate)?;
            declares_space |= planned.declares_space;
            statuses.push((planned.path, planned.status));
            repo_writes.push(planned.write);
        }
        if head.is_none() && !repo.space.is_public() && !declares_space {
            return Err(ServiceError::InvalidRequest(format!(
                "the first commit of a collective repo must write {SPACE_DECLARATION}/self naming the collective"
            )));
        }
        let rev = self.next_tid()?;
        let result = r.apply(&self.key, rev.clone(), repo_writes)?;
        let new_head = RepoHead {
            commit: result.head.commit,
            rev: result.head.rev.clone(),
            data: result.head.data,
        };
        self.store_head(
            repo,
            head.as_ref(),
            &new_head,
            &result.blocks,
            &index_ops(&result.ops),
        )
        .map_err(|e| match e {
            CommitError::Conflict { .. } => {
                ServiceError::InvalidSwap("the repo changed during the write".into())
            }
            CommitError::Store(s) => ServiceError::Internal(s.to_string()),
        })?;
        tracing::debug!(repo = %repo.space, rev = %rev, writes = statuses.len(), "committed");
        if let Some(hook) = self.on_commit.get() {
            hook(&repo.space, &new_head);
        }
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

    /// The checks of a write request before the repo is read: this node's own repo, and
    /// between 1 and 10000 writes.
    fn check_write_request(&self, repo: &RepoKey, writes: &[WriteOp]) -> Result<(), ServiceError> {
        if repo.did != self.did {
            // A replica: only its owner writes it, by a commit this node verifies.
            return Err(ServiceError::InvalidRequest(format!(
                "this node writes only its member's repos; {} is held as a replica",
                repo.did
            )));
        }
        if writes.is_empty() {
            return Err(ServiceError::InvalidRequest("no writes".into()));
        }
        if writes.len() > 10_000 {
            return Err(ServiceError::InvalidRequest(format!(
                "{} writes in one commit; the limit is 10000",
                writes.len()
            )));
        }
        Ok(())
    }

    /// A write to a collective space needs its writer to be a member still.
    fn check_still_member(&self, repo: &RepoKey) -> Result<(), ServiceError> {
        let Space::Collective(id) = &repo.space else {
            return Ok(());
        };
        match self.memberships.get().and_then(|m| m.departed(id)) {
            None => Ok(()),
            Some(d) => Err(ServiceError::InvalidRequest(format!(
                "you {} collective {id} on {}; records in its space are no longer accepted (stewards replicate members' repos only)",
                if d.removed {
                    "were removed from"
                } else {
                    "left"
                },
                d.at
            ))),
        }
    }

    /// One write checked and turned into the repo's [`Write`]: its collection and record key
    /// parsed (a fresh TID when it names none), its `swapRecord` checked against `r`, and its
    /// record checked (see [`Self::check_record`]).
    fn plan_write<B: BlockStore>(
        &self,
        repo: &RepoKey,
        r: &Repo<B>,
        w: WriteOp,
        validate: Option<bool>,
    ) -> Result<PlannedWrite, ServiceError> {
        let w = WriteParts::from(w);
        let nsid = Nsid::parse(&w.collection)
            .map_err(|e| ServiceError::InvalidRequest(format!("collection: {e}")))?;
        let rkey = match w.rkey {
            Some(k) => RecordKey::parse(&k)
                .map_err(|e| ServiceError::InvalidRequest(format!("rkey: {e}")))?,
            None => RecordKey::from(self.next_tid()?),
        };
        let path = format!("{nsid}/{rkey}");
        if let Some(expected) = w.swap_record {
            let current = r.get(&nsid, &rkey)?;
            if current != expected {
                return Err(ServiceError::InvalidSwap(format!(
                    "record {path} was at {}",
                    current.map_or("nothing".to_string(), |c| c.to_string())
                )));
            }
        }
        let declares_space = nsid.as_str() == SPACE_DECLARATION && rkey.as_str() == "self";
        if w.delete {
            if declares_space && !repo.space.is_public() {
                return Err(ServiceError::DeclarationDelete(path));
            }
            return Ok(PlannedWrite {
                path,
                status: None,
                write: Write::Delete {
                    collection: nsid,
                    rkey,
                },
                declares_space: false,
            });
        }
        let record = w.record.unwrap_or(serde_json::Value::Null);
        let value = self.check_record(&nsid, &rkey, &path, &record, validate)?;
        let status = if self.registry.is_record_type(nsid.as_str()) && validate != Some(false) {
            "valid"
        } else {
            "unknown"
        };
        if declares_space && let Space::Collective(id) = &repo.space {
            check_declaration(&value, id)?;
        }
        let write = match w.mode {
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
        };
        Ok(PlannedWrite {
            path,
            status: Some(status),
            write,
            declares_space,
        })
    }

    /// Stores a new head (of this node's own repo or a replica): its revision log entry first
    /// (made durable by the commit's own flush: an entry for a commit that never became head
    /// is harmless), then the blocks, index changes and head in one commit, which fails if the
    /// head moved from `old`. A store failure in either is [`CommitError::Store`].
    fn store_head(
        &self,
        repo: &RepoKey,
        old: Option<&RepoHead>,
        new_head: &RepoHead,
        blocks: &[(Cid, Bytes)],
        index: &[IndexOp],
    ) -> Result<(), CommitError> {
        self.store.kv_stage(
            REVS_TREE,
            &[KvOp::Put(
                rev_key(repo, new_head.rev.as_str()),
                Bytes::from(new_head.commit.to_bytes()),
            )],
        )?;
        self.store
            .commit(repo, old.map(|h| &h.commit), new_head, blocks, index)
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
                if nsid.as_str() == FILE_RECORD {
                    check_file_mime_type(&value).map_err(invalid)?;
                }
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
        Ok(self.repo_car_at(repo, since)?.1)
    }

    /// Like [`RepoService::repo_car`], with the head the CAR was cut at.
    pub fn repo_car_at(
        &self,
        repo: &RepoKey,
        since: Option<&str>,
    ) -> Result<(RepoHead, Vec<u8>), ServiceError> {
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
        Ok((head, out))
    }

    /// Whether this node has seen revision `rev` of the repo (as a commit of its own, or as a
    /// replica's head), so that `repo_car(since = rev)` can answer.
    pub fn knows_rev(&self, repo: &RepoKey, rev: &str) -> Result<bool, ServiceError> {
        Ok(self.store.kv_get(REVS_TREE, &rev_key(repo, rev))?.is_some())
    }

    /// Writes the member's space declaration for a collective (`coop.guild.space.declaration/
    /// self`, the first record every collective repo must have) unless the repo exists.
    /// The node calls it when its member founds or joins a collective, so that `record add
    /// --space` works at once and stewards can replicate the repo.
    pub fn declare_space(
        &self,
        collective: &Cid,
        name: Option<&str>,
    ) -> Result<Option<WriteOutcome>, ServiceError> {
        let key = RepoKey::collective(self.did.clone(), *collective);
        if self.store.head(&key)?.is_some() {
            return Ok(None);
        }
        let now = self.clock.now_micros();
        let mut record = serde_json::json!({
            "$type": SPACE_DECLARATION,
            "collective": collective.to_string(),
            "createdAt": guild_core::syntax::Datetime::from_unix_micros(now).as_str(),
        });
        if let Some(n) = name {
            record["name"] = serde_json::Value::String(n.chars().take(100).collect());
        }
        let write = WriteOp::Put {
            collection: SPACE_DECLARATION.to_string(),
            rkey: "self".to_string(),
            record,
            swap_record: Some(None),
        };
        match self.apply_writes(&key, vec![write], Some(true), None) {
            Ok(o) => Ok(Some(o)),
            // Written meanwhile by another call.
            Err(ServiceError::InvalidSwap(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Verifies a CAR of another member's repo, in a collective space or public, and stores it
    /// as this node's replica: the whole repo, or a diff on top of the replica held (blocks the diff
    /// leaves out are read from the store, so a diff that does not chain onto the replica
    /// fails with a missing block). Checks the commit's signature by the repo's owner, the
    /// whole MST of the new head, every record block, every new or changed record against its
    /// lexicon (collective repos take only known types; a public repo's records of unknown
    /// types are kept unchecked), in a collective space the declaration naming this
    /// collective, and that the revision is newer than the replica's and not dated in the
    /// future. Stores only the blocks of the verified tree, its index changes and the new
    /// head, in one atomic commit; writes nothing on any error.
    ///
    /// Cost: the whole tree is walked (every record block read and checked), not only the
    /// diff, so an import costs O(records in the repo).
    pub fn import_replica(&self, repo: &RepoKey, car: &[u8]) -> Result<RepoHead, ReplicaError> {
        if repo.did == self.did {
            return Err(ReplicaError::Own);
        }
        let public = repo.space.is_public();
        let car = guild_repo::read_car(car)?;
        let [commit] = car.roots[..] else {
            return Err(VerifyError::Roots(car.roots.len()).into());
        };
        let held = self.store.head(repo)?;
        if let Some(h) = &held
            && h.commit == commit
        {
            return Ok(h.clone());
        }
        let overlay = Overlay {
            car: &car.blocks,
            store: &*self.store,
        };
        let mut blocks: Vec<(Cid, Bytes)> = Vec::new();
        let mut seen = HashSet::new();
        let summary = guild_repo::verify_repo_with(&overlay, commit, &mut |cid, bytes| {
            if car.blocks.get(cid).is_some() && seen.insert(*cid) {
                blocks.push((*cid, bytes.clone()));
            }
        })?;
        self.check_replica_head(repo, held.as_ref(), &summary)?;
        let changes = replica_changes(&overlay, held.as_ref(), &summary)?;
        let index = self.replica_index(&overlay, changes, public)?;
        if let Space::Collective(collective) = &repo.space {
            check_replica_declaration(&overlay, &summary, collective)?;
        }
        let new_head = RepoHead {
            commit,
            rev: summary.rev.clone(),
            data: summary.data,
        };
        self.store_head(repo, held.as_ref(), &new_head, &blocks, &index)
            .map_err(|e| match e {
                CommitError::Conflict { .. } => ReplicaError::Conflict,
                CommitError::Store(s) => ReplicaError::Store(s.to_string()),
            })?;
        tracing::debug!(did = %repo.did, space = %repo.space, rev = %new_head.rev, blocks = blocks.len(), "replica updated");
        Ok(new_head)
    }

    /// A verified replica commit's owner is the repo's, its revision not dated in the future
    /// and newer than the one `held`.
    fn check_replica_head(
        &self,
        repo: &RepoKey,
        held: Option<&RepoHead>,
        summary: &guild_repo::RepoSummary,
    ) -> Result<(), ReplicaError> {
        if summary.did != repo.did.as_str() {
            return Err(ReplicaError::WrongDid {
                expected: repo.did.clone(),
                found: summary.did.clone(),
            });
        }
        if summary.rev.timestamp_micros() > self.now_micros().saturating_add(MAX_REV_AHEAD_MICROS) {
            return Err(ReplicaError::FutureRev(summary.rev.to_string()));
        }
        if let Some(h) = held
            && summary.rev <= h.rev
        {
            return Err(ReplicaError::NotNewer {
                held: h.rev.to_string(),
                got: summary.rev.to_string(),
            });
        }
        Ok(())
    }

    /// The index changes of a replica's record `changes`, each new or changed record read
    /// from `src` and checked (see [`Self::check_replica_record`]).
    fn replica_index(
        &self,
        src: &dyn BlockSource,
        changes: Vec<(String, Option<Cid>)>,
        public: bool,
    ) -> Result<Vec<IndexOp>, ReplicaError> {
        let mut index = Vec::with_capacity(changes.len());
        for (path, cid) in changes {
            let Some((collection, rkey)) = path.split_once('/') else {
                return Err(ReplicaError::InvalidRecord {
                    path,
                    message: "not <collection>/<rkey>".into(),
                });
            };
            let Some(cid) = cid else {
                index.push(IndexOp::Delete {
                    collection: collection.to_string(),
                    rkey: rkey.to_string(),
                });
                continue;
            };
            let value = read_replica_record(src, &path, &cid)?;
            self.check_replica_record(&path, collection, rkey, &value, public)?;
            index.push(IndexOp::Put {
                collection: collection.to_string(),
                rkey: rkey.to_string(),
                cid,
            });
        }
        Ok(index)
    }

    /// A replica's record: `$type` matching its collection, a lexicon for it (in a public
    /// repo, a record of a type this node has no lexicon for is kept unchecked, as AT does),
    /// valid.
    fn check_replica_record(
        &self,
        path: &str,
        collection: &str,
        rkey: &str,
        value: &Ipld,
        public: bool,
    ) -> Result<(), ReplicaError> {
        let invalid = |message: String| ReplicaError::InvalidRecord {
            path: path.to_string(),
            message,
        };
        match value {
            Ipld::Map(m) if m.get("$type") == Some(&Ipld::String(collection.to_string())) => {}
            _ => return Err(invalid("$type does not match the collection".into())),
        }
        if !self.registry.is_record_type(collection) {
            if public {
                return Ok(());
            }
            return Err(invalid(format!(
                "no lexicon for {collection}; collective repos accept only known record types"
            )));
        }
        self.registry
            .validate_record_key(collection, rkey)
            .map_err(|e| invalid(e.to_string()))?;
        self.registry
            .validate_record(value)
            .map_err(|e| invalid(e.to_string()))
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

/// The declaration must name the collective by its CID string, as the space is written.
fn check_declaration(value: &Ipld, space: &Cid) -> Result<(), ServiceError> {
    let collective = match value {
        Ipld::Map(m) => m.get("collective"),
        _ => None,
    };
    match collective {
        Some(Ipld::String(c)) if *c == space.to_string() => Ok(()),
        _ => Err(ServiceError::InvalidRequest(format!(
            "{SPACE_DECLARATION}/self must name this space's collective ({space})"
        ))),
    }
}

/// `coop.guild.data.file`'s lexicon says its `mimeType` "must agree with the blob's own
/// mimeType"; a lexicon cannot say that two fields agree, so the write path checks it here
/// (media types compared by essence: ASCII case and `;` parameters ignored). Called after the
/// lexicon passed, so both are strings when present.
fn check_file_mime_type(value: &Ipld) -> Result<(), String> {
    let Ipld::Map(m) = value else {
        return Ok(());
    };
    let blob = match m.get("file") {
        Some(Ipld::Map(f)) => f.get("mimeType"),
        _ => None,
    };
    let (Some(Ipld::String(declared)), Some(Ipld::String(blob))) = (m.get("mimeType"), blob) else {
        return Ok(());
    };
    let essence = |t: &str| t.split(';').next().unwrap_or(t).trim().to_ascii_lowercase();
    if essence(declared) == essence(blob) {
        return Ok(());
    }
    Err(format!(
        "mimeType {declared:?} disagrees with the blob's own mimeType {blob:?} (file.mimeType); they must agree"
    ))
}

fn poisoned() -> ServiceError {
    ServiceError::Internal("a lock was poisoned by an earlier panic".into())
}

/// The record changes of a replica since the head it `held` (every record for a first
/// import), each with its new CID (none when removed).
fn replica_changes(
    src: &dyn BlockSource,
    held: Option<&RepoHead>,
    summary: &guild_repo::RepoSummary,
) -> Result<Vec<(String, Option<Cid>)>, ReplicaError> {
    Ok(match held {
        None => summary
            .records
            .iter()
            .map(|(p, c)| (p.clone(), Some(*c)))
            .collect(),
        Some(h) => {
            let (ops, _) = guild_repo::mst::diff(src, h.data, summary.data)
                .map_err(|e| ReplicaError::Verify(e.into()))?;
            ops.into_iter()
                .map(|op| match op {
                    guild_repo::mst::DiffOp::Add { key, cid }
                    | guild_repo::mst::DiffOp::Update { key, cid, .. } => {
                        (String::from_utf8_lossy(&key).into_owned(), Some(cid))
                    }
                    guild_repo::mst::DiffOp::Delete { key, .. } => {
                        (String::from_utf8_lossy(&key).into_owned(), None)
                    }
                })
                .collect()
        }
    })
}

/// A replica's record block at `path`, decoded.
fn read_replica_record(src: &dyn BlockSource, path: &str, cid: &Cid) -> Result<Ipld, ReplicaError> {
    let bytes = src
        .get_block(cid)?
        .ok_or_else(|| ReplicaError::Store(format!("record {path} vanished")))?;
    guild_core::data::decode(&bytes).map_err(|e| ReplicaError::InvalidRecord {
        path: path.to_string(),
        message: e.to_string(),
    })
}

/// A replica's tree holds the space declaration naming `collective`.
fn check_replica_declaration(
    src: &dyn BlockSource,
    summary: &guild_repo::RepoSummary,
    collective: &Cid,
) -> Result<(), ReplicaError> {
    let declaration = format!("{SPACE_DECLARATION}/self");
    let Some((_, decl)) = summary.records.iter().find(|(p, _)| *p == declaration) else {
        return Err(ReplicaError::Declaration(format!(
            "the repo has no {declaration} (every collective repo begins with one)"
        )));
    };
    check_declaration(&read_replica_record(src, &declaration, decl)?, collective)
        .map_err(|e| ReplicaError::Declaration(e.to_string()))
}

/// `swapCommit`: the write applies only on the commit it names.
fn check_swap_commit(head: Option<&RepoHead>, swap: Option<&Cid>) -> Result<(), ServiceError> {
    if let Some(swap) = swap
        && head.map(|h| &h.commit) != Some(swap)
    {
        return Err(ServiceError::InvalidSwap(format!(
            "commit was at {}",
            head.map_or("nothing".to_string(), |h| h.commit.to_string())
        )));
    }
    Ok(())
}

/// How a write with a record puts it: fails if present, fails if absent, or either.
enum Mode {
    Create,
    Update,
    Put,
}

/// A [`WriteOp`]'s fields, the same for every kind (a delete is a put of no record).
struct WriteParts {
    collection: String,
    rkey: Option<String>,
    record: Option<serde_json::Value>,
    /// `Some(expected)` when the write names the record's current CID (`None`: absent).
    swap_record: Option<Option<Cid>>,
    delete: bool,
    mode: Mode,
}

impl From<WriteOp> for WriteParts {
    fn from(w: WriteOp) -> Self {
        let parts = |collection, rkey, record, swap_record, delete, mode| WriteParts {
            collection,
            rkey,
            record,
            swap_record,
            delete,
            mode,
        };
        match w {
            WriteOp::Create {
                collection,
                rkey,
                record,
            } => parts(collection, rkey, Some(record), None, false, Mode::Create),
            WriteOp::Update {
                collection,
                rkey,
                record,
            } => parts(
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
            } => parts(
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
            } => parts(
                collection,
                Some(rkey),
                None,
                swap_record.map(Some),
                true,
                Mode::Put,
            ),
        }
    }
}

/// One checked write: its path, its validation status (none for a delete), the repo write,
/// and whether it writes the space declaration.
struct PlannedWrite {
    path: String,
    status: Option<&'static str>,
    write: Write,
    declares_space: bool,
}

/// The index changes of a commit's record operations.
fn index_ops(ops: &[guild_repo::RecordOp]) -> Vec<IndexOp> {
    ops.iter()
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
        .collect()
}

fn sync_key(did: &Did, collective: &Cid, kind: RepoKind) -> RepoKey {
    match kind {
        RepoKind::Space => RepoKey::collective(did.clone(), *collective),
        RepoKind::Public => RepoKey::public(did.clone()),
    }
}

fn sync_head(did: &Did, kind: RepoKind, h: RepoHead) -> repos::RepoHead {
    repos::RepoHead {
        did: did.clone(),
        kind,
        rev: h.rev.into_string(),
        commit: h.commit,
    }
}

/// What the collectives engine replicates through: the member's own repos (collective and
/// public) are served, other members' are verified and kept as replicas.
impl<S: NodeStore> Repos for RepoService<S> {
    fn heads(&self, collective: &Cid) -> Result<Vec<repos::RepoHead>, RepoSyncError> {
        self.heads_in(&Space::Collective(*collective), RepoKind::Space)
    }

    fn public_heads(&self) -> Result<Vec<repos::RepoHead>, RepoSyncError> {
        self.heads_in(&Space::Public, RepoKind::Public)
    }

    fn head(
        &self,
        did: &Did,
        collective: &Cid,
        kind: RepoKind,
    ) -> Result<Option<repos::RepoHead>, RepoSyncError> {
        Ok(self
            .store
            .head(&sync_key(did, collective, kind))
            .map_err(|e| RepoSyncError::Store(e.to_string()))?
            .map(|h| sync_head(did, kind, h)))
    }

    fn export_since(
        &self,
        did: &Did,
        collective: &Cid,
        kind: RepoKind,
        since: Option<&str>,
    ) -> Result<(repos::RepoHead, Vec<u8>), RepoSyncError> {
        let key = sync_key(did, collective, kind);
        if let Some(s) = since
            && !self
                .knows_rev(&key, s)
                .map_err(|e| RepoSyncError::Store(e.to_string()))?
        {
            return Err(RepoSyncError::UnknownRev);
        }
        match self.repo_car_at(&key, since) {
            Ok((head, car)) => Ok((sync_head(did, kind, head), car)),
            Err(ServiceError::RepoNotFound(_)) => Err(RepoSyncError::NotFound),
            Err(ServiceError::InvalidRequest(_)) => Err(RepoSyncError::UnknownRev),
            Err(e) => Err(RepoSyncError::Store(e.to_string())),
        }
    }

    fn import_replica(
        &self,
        did: &Did,
        collective: &Cid,
        kind: RepoKind,
        car: &[u8],
    ) -> Result<repos::RepoHead, RepoSyncError> {
        match RepoService::import_replica(self, &sync_key(did, collective, kind), car) {
            Ok(h) => Ok(sync_head(did, kind, h)),
            Err(ReplicaError::Store(e)) => Err(RepoSyncError::Store(e)),
            Err(e) => Err(RepoSyncError::Refused(e.to_string())),
        }
    }
}

impl<S: NodeStore> RepoService<S> {
    /// The heads of every repo held in `space` (the member's own and the replicas).
    fn heads_in(
        &self,
        space: &Space,
        kind: RepoKind,
    ) -> Result<Vec<repos::RepoHead>, RepoSyncError> {
        Ok(self
            .store
            .repos()
            .map_err(|e| RepoSyncError::Store(e.to_string()))?
            .into_iter()
            .filter(|(k, _)| k.space == *space)
            .map(|(k, h)| sync_head(&k.did, kind, h))
            .collect())
    }
}
