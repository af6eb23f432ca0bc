//! A member's repository: records under `<collection>/<rkey>` in an MST, one signed commit per
//! batch of writes.

use bytes::Bytes;
use cid::Cid;
use guild_core::data::{EncodeError, Ipld};
use guild_core::keys::Keypair;
use guild_core::syntax::{Nsid, RecordKey, Tid};

use crate::blockstore::{BlockStore, StoreError};
use crate::commit::{CommitError, sign_commit, verify_commit};
use crate::mst::{Mst, MstError, decode_node};

/// Why a repository operation failed. Nothing was written when it did.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoError {
    /// The tree could not be read or changed.
    #[error(transparent)]
    Mst(#[from] MstError),
    /// The head commit is invalid.
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// The block store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A record breaks the data model.
    #[error("record {path}: {source}")]
    Record {
        /// The record's path.
        path: String,
        /// Why.
        source: EncodeError,
    },
    /// A create names a path that already exists.
    #[error("record {0} already exists")]
    Exists(String),
    /// An update or delete names a path that does not exist.
    #[error("record {0} does not exist")]
    NotFound(String),
    /// One batch names the same path twice.
    #[error("record {0} appears twice in one commit")]
    Duplicate(String),
    /// A path that is not `<NSID>/<record key>`.
    #[error("invalid record path {path:?}: {reason}")]
    InvalidPath {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The new revision is not after the head's.
    #[error("revision {rev} is not after the head revision {head}")]
    RevNotIncreasing {
        /// The proposed revision.
        rev: String,
        /// The head's revision.
        head: String,
    },
    /// The signing key is not the repo owner's.
    #[error("key {got} cannot sign for repo {did}")]
    WrongKey {
        /// The repo's DID.
        did: String,
        /// The key's DID.
        got: String,
    },
    /// A commit with no writes.
    #[error("a commit needs at least one write")]
    Empty,
}

/// One write in a commit.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Add a record that must not exist yet.
    Create {
        /// Its collection.
        collection: Nsid,
        /// Its key.
        rkey: RecordKey,
        /// The record.
        record: Ipld,
    },
    /// Replace a record that must exist.
    Update {
        /// Its collection.
        collection: Nsid,
        /// Its key.
        rkey: RecordKey,
        /// The new record.
        record: Ipld,
    },
    /// Create or replace.
    Put {
        /// Its collection.
        collection: Nsid,
        /// Its key.
        rkey: RecordKey,
        /// The record.
        record: Ipld,
    },
    /// Remove a record that must exist.
    Delete {
        /// Its collection.
        collection: Nsid,
        /// Its key.
        rkey: RecordKey,
    },
}

impl Write {
    fn path(&self) -> String {
        let (c, r) = match self {
            Write::Create {
                collection, rkey, ..
            }
            | Write::Update {
                collection, rkey, ..
            }
            | Write::Put {
                collection, rkey, ..
            }
            | Write::Delete { collection, rkey } => (collection, rkey),
        };
        format!("{c}/{r}")
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A new record.
    Create,
    /// A changed record.
    Update,
    /// A removed record.
    Delete,
}

/// One record change in a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordOp {
    /// `<collection>/<rkey>`.
    pub path: String,
    /// What happened.
    pub action: Action,
    /// The new record CID (none for deletes).
    pub cid: Option<Cid>,
    /// The previous record CID (none for creates).
    pub prev: Option<Cid>,
}

/// The head of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The commit block's CID.
    pub commit: Cid,
    /// The commit's revision.
    pub rev: Tid,
    /// The MST root.
    pub data: Cid,
}

/// What a commit produced.
#[derive(Debug, Clone)]
pub struct CommitResult {
    /// The new head.
    pub head: Head,
    /// The previous revision, if any (AT's `since`).
    pub since: Option<Tid>,
    /// The record changes.
    pub ops: Vec<RecordOp>,
    /// Every new block (records, MST nodes, the commit), already stored.
    pub blocks: Vec<(Cid, Bytes)>,
}

/// A record encoded and ready to go into a tree.
#[derive(Debug, Clone)]
pub struct PreparedRecord {
    /// `<collection>/<rkey>`.
    pub path: String,
    /// The record's CID.
    pub cid: Cid,
    /// Its canonical DAG-CBOR bytes.
    pub bytes: Bytes,
}

/// Encodes a record for `collection/rkey`, checking the data model and the record rules.
pub fn prepare_record(
    collection: &Nsid,
    rkey: &RecordKey,
    record: &Ipld,
) -> Result<PreparedRecord, RepoError> {
    let path = format!("{collection}/{rkey}");
    let (cid, bytes) =
        guild_core::data::encode_record(record).map_err(|source| RepoError::Record {
            path: path.clone(),
            source,
        })?;
    Ok(PreparedRecord {
        path,
        cid,
        bytes: bytes.into(),
    })
}

/// Splits and checks a record path.
pub fn parse_path(path: &str) -> Result<(Nsid, RecordKey), RepoError> {
    let invalid = |reason: String| RepoError::InvalidPath {
        path: path.chars().take(200).collect(),
        reason,
    };
    let (c, r) = path
        .split_once('/')
        .ok_or_else(|| invalid("expected <collection>/<rkey>".into()))?;
    let c = Nsid::parse(c).map_err(|e| invalid(e.to_string()))?;
    let r = RecordKey::parse(r).map_err(|e| invalid(e.to_string()))?;
    Ok((c, r))
}

/// What a record-writing [`Write`] demands of the path's previous state.
enum Mode {
    /// The path must be free.
    Create,
    /// The path must hold a record.
    Update,
    /// Either.
    Put,
}

/// A repository over a block store.
#[derive(Debug)]
pub struct Repo<S: BlockStore> {
    store: S,
    did: String,
    head: Option<Head>,
    mst: Mst,
}

impl<S: BlockStore> Repo<S> {
    /// A repository with no commit yet, owned by `did`.
    pub fn empty(store: S, did: String) -> Self {
        Repo {
            store,
            did,
            head: None,
            mst: Mst::new(),
        }
    }

    /// Opens the repository whose head commit is `commit` (which must be in the store and
    /// carry a valid signature).
    pub fn open(store: S, commit: Cid) -> Result<Self, RepoError> {
        let bytes = store
            .get_block(&commit)?
            .ok_or(MstError::MissingBlock(commit))?;
        let c = verify_commit(&commit, &bytes)?;
        Ok(Repo {
            store,
            did: c.did,
            head: Some(Head {
                commit,
                rev: c.rev,
                data: c.data,
            }),
            mst: Mst::load(c.data),
        })
    }

    /// Builds a new repository from many records at once (the bulk path for imports): one tree
    /// build, one commit.
    pub fn import(
        mut store: S,
        key: &Keypair,
        rev: Tid,
        mut records: Vec<PreparedRecord>,
    ) -> Result<(Self, CommitResult), RepoError> {
        if !records.is_sorted_by(|a, b| a.path < b.path) {
            records.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        }
        for w in records.windows(2) {
            if w[0].path == w[1].path {
                return Err(RepoError::Duplicate(w[0].path.clone()));
            }
        }
        // Records of one collection are adjacent once sorted: parse each collection once.
        let mut last_collection = "";
        for r in &records {
            let (c, k) = r
                .path
                .split_once('/')
                .ok_or_else(|| RepoError::InvalidPath {
                    path: r.path.chars().take(200).collect(),
                    reason: "expected <collection>/<rkey>".into(),
                })?;
            if c != last_collection {
                parse_path(&r.path)?;
                last_collection = c;
            } else {
                RecordKey::parse(k).map_err(|e| RepoError::InvalidPath {
                    path: r.path.chars().take(200).collect(),
                    reason: e.to_string(),
                })?;
            }
        }
        let mut mst = Mst::from_sorted(
            records
                .iter()
                .map(|r| (r.path.as_bytes().to_vec(), r.cid))
                .collect(),
        )?;
        let mut blocks = Vec::with_capacity(records.len() + records.len() / 2);
        let data = mst.root_cid(&mut blocks);
        let (commit, commit_bytes) = sign_commit(key, data, &rev);
        let mut ops = Vec::with_capacity(records.len());
        blocks.reserve(records.len() + 1);
        for r in records {
            blocks.push((r.cid, r.bytes));
            ops.push(RecordOp {
                path: r.path,
                action: Action::Create,
                cid: Some(r.cid),
                prev: None,
            });
        }
        blocks.push((commit, commit_bytes));
        store.put_blocks(blocks.clone())?;
        let head = Head { commit, rev, data };
        let repo = Repo {
            store,
            did: key.did(),
            head: Some(head.clone()),
            mst,
        };
        Ok((
            repo,
            CommitResult {
                head,
                since: None,
                ops,
                blocks,
            },
        ))
    }

    /// Applies a batch of writes as one signed commit. On error nothing is stored and the
    /// repository is as it was.
    pub fn apply(
        &mut self,
        key: &Keypair,
        rev: Tid,
        writes: Vec<Write>,
    ) -> Result<CommitResult, RepoError> {
        let result = self.try_apply(key, rev, writes);
        if result.is_err() {
            // The in-memory tree may be half changed: go back to the stored head.
            self.mst = match &self.head {
                Some(h) => Mst::load(h.data),
                None => Mst::new(),
            };
        }
        result
    }

    fn try_apply(
        &mut self,
        key: &Keypair,
        rev: Tid,
        writes: Vec<Write>,
    ) -> Result<CommitResult, RepoError> {
        self.check_batch(key, &rev, &writes)?;
        let mut blocks = Vec::new();
        let mut ops = Vec::with_capacity(writes.len());
        for w in writes {
            let (op, block) = self.apply_write(w)?;
            ops.push(op);
            blocks.extend(block);
        }
        let data = self.mst.root_cid(&mut blocks);
        let (commit, commit_bytes) = sign_commit(key, data, &rev);
        blocks.push((commit, commit_bytes));
        self.store.put_blocks(blocks.clone())?;
        let since = self.head.as_ref().map(|h| h.rev.clone());
        let head = Head { commit, rev, data };
        self.head = Some(head.clone());
        Ok(CommitResult {
            head,
            since,
            ops,
            blocks,
        })
    }

    /// Refuses a batch before anything changes: empty, signed with another key, a revision
    /// not after the head's, or a path named twice.
    fn check_batch(&self, key: &Keypair, rev: &Tid, writes: &[Write]) -> Result<(), RepoError> {
        if writes.is_empty() {
            return Err(RepoError::Empty);
        }
        if key.did() != self.did {
            return Err(RepoError::WrongKey {
                did: self.did.clone(),
                got: key.did(),
            });
        }
        if let Some(h) = &self.head
            && *rev <= h.rev
        {
            return Err(RepoError::RevNotIncreasing {
                rev: rev.to_string(),
                head: h.rev.to_string(),
            });
        }
        let mut seen = std::collections::HashSet::with_capacity(writes.len());
        for w in writes {
            let path = w.path();
            if !seen.insert(path.clone()) {
                return Err(RepoError::Duplicate(path));
            }
        }
        Ok(())
    }

    /// Applies one write to the in-memory tree: its op, and the record block it adds if any.
    fn apply_write(&mut self, w: Write) -> Result<(RecordOp, Option<(Cid, Bytes)>), RepoError> {
        let path = w.path();
        let src = &self.store;
        let (mode, collection, rkey, record) = match w {
            Write::Delete { .. } => {
                let prev = self
                    .mst
                    .delete(src, path.as_bytes())?
                    .ok_or_else(|| RepoError::NotFound(path.clone()))?;
                let op = RecordOp {
                    path,
                    action: Action::Delete,
                    cid: None,
                    prev: Some(prev),
                };
                return Ok((op, None));
            }
            Write::Create {
                collection,
                rkey,
                record,
            } => (Mode::Create, collection, rkey, record),
            Write::Update {
                collection,
                rkey,
                record,
            } => (Mode::Update, collection, rkey, record),
            Write::Put {
                collection,
                rkey,
                record,
            } => (Mode::Put, collection, rkey, record),
        };
        let rec = prepare_record(&collection, &rkey, &record)?;
        let prev = self.mst.insert(src, path.as_bytes(), rec.cid)?;
        match (mode, prev) {
            (Mode::Create, Some(_)) => return Err(RepoError::Exists(path)),
            (Mode::Update, None) => return Err(RepoError::NotFound(path)),
            _ => {}
        }
        let op = RecordOp {
            path,
            action: if prev.is_some() {
                Action::Update
            } else {
                Action::Create
            },
            cid: Some(rec.cid),
            prev,
        };
        Ok((op, Some((rec.cid, rec.bytes))))
    }

    /// The owner's DID.
    pub fn did(&self) -> &str {
        &self.did
    }

    /// The head, if there is a commit.
    pub fn head(&self) -> Option<&Head> {
        self.head.as_ref()
    }

    /// The block store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Gives back the block store.
    pub fn into_store(self) -> S {
        self.store
    }

    /// The CID of the record at `collection/rkey`.
    pub fn get(&self, collection: &Nsid, rkey: &RecordKey) -> Result<Option<Cid>, RepoError> {
        let path = format!("{collection}/{rkey}");
        Ok(self.mst.get(&self.store, path.as_bytes())?)
    }

    /// The record at `collection/rkey`, as its CID and stored bytes.
    pub fn get_record(
        &self,
        collection: &Nsid,
        rkey: &RecordKey,
    ) -> Result<Option<(Cid, Bytes)>, RepoError> {
        let Some(cid) = self.get(collection, rkey)? else {
            return Ok(None);
        };
        let bytes = self
            .store
            .get_block(&cid)?
            .ok_or(MstError::MissingBlock(cid))?;
        Ok(Some((cid, bytes)))
    }

    /// Records of one collection in key order, after `after` (an rkey) if given.
    pub fn list(
        &self,
        collection: &Nsid,
        after: Option<&RecordKey>,
        limit: usize,
    ) -> Result<Vec<(RecordKey, Cid)>, RepoError> {
        let prefix = format!("{collection}/");
        let after = after.map(|a| format!("{prefix}{a}"));
        let entries = self.mst.list(
            &self.store,
            prefix.as_bytes(),
            after.as_deref().map(str::as_bytes),
            limit,
        )?;
        entries
            .into_iter()
            .map(|(k, v)| {
                let path = String::from_utf8_lossy(&k).into_owned();
                let (_, rkey) = parse_path(&path)?;
                Ok((rkey, v))
            })
            .collect()
    }

    /// Every `(path, record CID)` in key order.
    pub fn records(&self) -> Result<Vec<(String, Cid)>, RepoError> {
        Ok(self
            .mst
            .entries(&self.store)?
            .into_iter()
            .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v))
            .collect())
    }

    /// Calls `f` on every block of the repository at its head: the commit, every MST node and
    /// every record, each once.
    pub fn for_each_block(
        &self,
        mut f: impl FnMut(&Cid, &[u8]) -> Result<(), RepoError>,
    ) -> Result<(), RepoError> {
        let Some(head) = &self.head else {
            return Ok(());
        };
        let get = |cid: &Cid| -> Result<Bytes, RepoError> {
            Ok(self
                .store
                .get_block(cid)?
                .ok_or(MstError::MissingBlock(*cid))?)
        };
        f(&head.commit, &get(&head.commit)?)?;
        let mut stack = vec![head.data];
        let mut seen_records = std::collections::HashSet::new();
        while let Some(cid) = stack.pop() {
            let bytes = get(&cid)?;
            let node = decode_node(&cid, &bytes)?;
            f(&cid, &bytes)?;
            for (_, v, t) in node.entries.iter().rev() {
                if let Some(t) = t {
                    stack.push(*t);
                }
                if seen_records.insert(*v) {
                    f(v, &get(v)?)?;
                }
            }
            if let Some(l) = node.left {
                stack.push(l);
            }
        }
        Ok(())
    }
}
