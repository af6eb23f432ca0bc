//! # guild-store
//!
//! Everything a node keeps on disk, behind small traits: blocks by CID ([`BlockSource`],
//! [`BlockStore`]); repositories by (DID, space), each with its head commit, revision and MST
//! root, and a record index (collection/rkey → record CID) for listing without walking the
//! tree ([`RepoStore`]); the TID clock's last value; and named ordered key-value trees for
//! later domains such as governance ops, feed logs and bundles ([`KvStore`]).
//!
//! Two implementations of every trait, with the same semantics and the same test suite:
//! [`SledStore`] (sled 0.34, durable) and [`MemoryStore`] (for tests and tools). This is the
//! only crate that knows sled.
//!
//! It must not hold protocol logic: it never decides whether a write is allowed, never parses
//! or checks records, commits or signatures. It stores what `guild-repo` and the governance
//! layer produced, atomically, and says so when stored data is missing or corrupt.
//!
//! ## Guarantees
//!
//! - [`RepoStore::commit`] is one atomic compare-and-swap on the repo's head: the index ops
//!   and the new head are applied together only if the head is still the expected one, and
//!   nothing is applied otherwise. It returns only once the commit is durable.
//! - [`KvStore::kv_apply`] applies all its ops to one tree atomically and durably.
//! - Every method takes `&self`; both stores are `Send + Sync` and cheap to clone (a handle).
//!
//! ## Sled layout
//!
//! | tree | key | value |
//! |---|---|---|
//! | `blocks` | CID bytes (binary CID) | the block |
//! | `heads` | repo key (below) | head record (below) |
//! | `index` | repo key ‖ collection component ‖ rkey | record CID bytes |
//! | `meta` | `schema_version` | u32, big-endian (currently [`SCHEMA_VERSION`]) |
//! | `meta` | `last_tid` | the TID clock's last value, 13 ASCII characters |
//! | `kv:<name>` | caller's key | caller's value |
//! | `kv:gov-index` | the index of the governance ops, whose bytes are records in `gov-ops/<collective>.ops` beside the database (see the `gov` module: [`guild_gov::OpStore`]; `kv:gov` held the ops themselves before, and is migrated and dropped on open) | |
//!
//! *Components.* A string component is its bytes with every `0x00` written as `0x00 0xFF`,
//! followed by the terminator `0x00 0x01`. The terminator sorts before any byte that can
//! continue a component, so the encoding keeps byte order, no component is a prefix of
//! another's encoding (DID `did:a` and DID `did:ab` have disjoint prefixes), and it is
//! unambiguous whatever bytes a string holds.
//!
//! *Repo key* = component(DID) ‖ component(space), where the space is written as its string
//! form ([`Space`]: `public`, or the collective id as its canonical CID string); a stored key
//! that does not decode to a DID and a space is reported as corrupt. An index key is the repo key, then
//! component(collection), then the rkey's raw bytes (last, so it needs no terminator). So one
//! prefix scan lists a repo's index and another a collection in rkey order; the collections of
//! a repo are found by skipping from one collection to the next.
//!
//! *Head record*: `0x01` (format) ‖ record count (u64 big-endian) ‖ rev length (u8) ‖ rev ‖
//! commit CID length (u8) ‖ commit CID ‖ root CID length (u8) ‖ root CID. The record count is
//! kept in the head so that [`RepoStore::record_count`] is one read.
//!
//! *A commit* is one sled transaction over `heads`, `index` and `blocks` that checks the
//! expected head (compare-and-swap), then applies the index ops, the new head and the blocks;
//! then the database is flushed before `commit` returns. The blocks are in the transaction,
//! rather than in a batch of their own before it, only for speed: every sled batch or
//! transaction costs two log-buffer writes and syncs, so a separate batch would double a
//! commit's I/O (measured: ~1.1 ms → ~0.5 ms per single-record commit). Blocks are
//! content-addressed, so a block already present is simply written again.
//!
//! *After an I/O error* (a full disk, most often) sled refuses all work on the database until
//! it is reopened. [`SledStore`] then refuses every operation with a `storage unavailable`
//! message ([`RepoStore::unavailable`] says why) and recovers by itself: at most once a
//! second, when used, it checks that the disk takes a write again and reopens the database in
//! place. Nothing acknowledged is lost: a commit or `kv_apply` answers only after its flush.
//!
//! *On open* the store creates the trees, writes or checks the schema version, and checks that
//! every head's commit block and MST root block exist ([`OpenError`] names the repo and the
//! missing block).
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod encoding;
mod gov;
mod health;
mod memory;
mod sled_store;
mod staged;

use std::fmt;
use std::path::PathBuf;

pub use cid::Cid;
pub use guild_core::syntax::{Did, Tid};
pub use guild_repo::{BlockSource, BlockStore, Bytes, StoreError};

pub use memory::MemoryStore;
pub use sled_store::{DEFAULT_CACHE_BYTES, PROBE_BYTES, SledStore};
pub use staged::Staged;

/// The version of the on-disk layout described in the crate docs. [`SledStore::open`] refuses
/// a database written with another.
pub const SCHEMA_VERSION: u32 = 1;

/// The space of a repo: a member's public repo, or their repo in one collective.
///
/// Its string form ([`fmt::Display`], [`Space::parse`]) is `public` or the collective id's
/// canonical CID string (CIDv1, base32: `bafy…`), and is what the store writes into its keys
/// (see the crate docs), so parsing and printing are exact inverses: a CID written in another
/// base would name a different stored repo, and is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Space {
    /// The member's public repo (AT's `com.atproto.*` methods act on it).
    Public,
    /// The member's repo in the collective with this id.
    Collective(Cid),
}

impl Space {
    /// The string form of [`Space::Public`].
    const PUBLIC: &'static str = "public";

    /// Parses `public` or a collective id (a CIDv1 in its canonical base32 string form).
    pub fn parse(s: &str) -> Result<Space, SpaceError> {
        if s == Self::PUBLIC {
            return Ok(Space::Public);
        }
        let refuse = || SpaceError(s.chars().take(100).collect());
        let cid = guild_core::syntax::parse_cid_str(s).map_err(|_| refuse())?;
        // Only the canonical spelling, so that a space has one string form (and one key).
        if cid.to_string() != s {
            return Err(refuse());
        }
        Ok(Space::Collective(cid))
    }

    /// The collective's id, for a collective space.
    pub fn collective(&self) -> Option<&Cid> {
        match self {
            Space::Public => None,
            Space::Collective(id) => Some(id),
        }
    }

    /// Whether this is the public space.
    pub fn is_public(&self) -> bool {
        matches!(self, Space::Public)
    }
}

impl fmt::Display for Space {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Space::Public => f.write_str(Self::PUBLIC),
            Space::Collective(id) => write!(f, "{id}"),
        }
    }
}

impl std::str::FromStr for Space {
    type Err = SpaceError;

    fn from_str(s: &str) -> Result<Space, SpaceError> {
        Space::parse(s)
    }
}

impl From<Cid> for Space {
    fn from(id: Cid) -> Space {
        Space::Collective(id)
    }
}

/// Spaces sort by their string form, the order of the store's keys (so [`RepoStore::repos`]
/// lists repos in the same order from every store).
impl Ord for Space {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (self, other) {
            (Space::Public, Space::Public) => std::cmp::Ordering::Equal,
            _ => self.to_string().cmp(&other.to_string()),
        }
    }
}

impl PartialOrd for Space {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A string that is not a space: neither `public` nor a collective id in canonical form.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("space must be \"public\" or a collective id (a CID), not {0:?}")]
pub struct SpaceError(
    /// The refused string (its first 100 characters).
    pub String,
);

/// Which repo: a member's DID and a space.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoKey {
    /// The owner's DID.
    pub did: Did,
    /// Public, or a collective.
    pub space: Space,
}

impl RepoKey {
    /// The member's public repo.
    pub fn public(did: Did) -> Self {
        RepoKey {
            did,
            space: Space::Public,
        }
    }

    /// The member's repo in the collective `id`.
    pub fn collective(did: Did, id: Cid) -> Self {
        RepoKey {
            did,
            space: Space::Collective(id),
        }
    }

    /// The member's repo in `space`.
    pub fn new(did: Did, space: Space) -> Self {
        RepoKey { did, space }
    }
}

impl fmt::Display for RepoKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (space {})", self.did, self.space)
    }
}

/// The head of a stored repo: its latest commit, that commit's revision and MST root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoHead {
    /// The commit block's CID.
    pub commit: Cid,
    /// The commit's revision.
    pub rev: Tid,
    /// The MST root's CID.
    pub data: Cid,
}

impl From<guild_repo::Head> for RepoHead {
    fn from(h: guild_repo::Head) -> Self {
        RepoHead {
            commit: h.commit,
            rev: h.rev,
            data: h.data,
        }
    }
}

impl From<&guild_repo::Head> for RepoHead {
    fn from(h: &guild_repo::Head) -> Self {
        h.clone().into()
    }
}

/// One change to a repo's record index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexOp {
    /// Set `collection/rkey` to `cid` (create or replace).
    Put {
        /// The record's collection (an NSID).
        collection: String,
        /// The record key.
        rkey: String,
        /// The record's CID.
        cid: Cid,
    },
    /// Remove `collection/rkey` (nothing happens if it is absent).
    Delete {
        /// The record's collection.
        collection: String,
        /// The record key.
        rkey: String,
    },
}

impl IndexOp {
    /// The index op for one record change of a [`guild_repo::CommitResult`]: a delete for
    /// [`guild_repo::Action::Delete`], a put of the new CID otherwise.
    pub fn from_record_op(op: &guild_repo::RecordOp) -> Result<IndexOp, StoreError> {
        let (collection, rkey) = op.path.split_once('/').ok_or_else(|| {
            StoreError(format!(
                "record op path {:?} is not <collection>/<rkey>",
                op.path
            ))
        })?;
        let (collection, rkey) = (collection.to_owned(), rkey.to_owned());
        match (op.action, op.cid) {
            (guild_repo::Action::Delete, _) => Ok(IndexOp::Delete { collection, rkey }),
            (_, Some(cid)) => Ok(IndexOp::Put {
                collection,
                rkey,
                cid,
            }),
            (_, None) => Err(StoreError(format!(
                "record op {:?} for {} has no CID",
                op.action, op.path
            ))),
        }
    }

    /// The index ops for all record changes of a commit, in order.
    pub fn from_record_ops(ops: &[guild_repo::RecordOp]) -> Result<Vec<IndexOp>, StoreError> {
        ops.iter().map(IndexOp::from_record_op).collect()
    }
}

/// Why [`RepoStore::commit`] wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The repo's head is not the one the commit was built on (another commit won the race,
    /// or the repo already exists, or does not exist yet). Nothing was applied.
    #[error("repo head changed: expected {}, found {}", show_head(.expected), show_head(.actual))]
    Conflict {
        /// The head commit the caller expected (`None`: no repo).
        expected: Option<Cid>,
        /// The head commit found (`None`: no repo).
        actual: Option<Cid>,
    },
    /// The backend failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn show_head(cid: &Option<Cid>) -> String {
    match cid {
        Some(c) => format!("commit {c}"),
        None => "no repo".to_owned(),
    }
}

/// Why [`SledStore::open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Sled could not open the database or one of its trees.
    #[error("cannot open the store at {}: {source}", .path.display())]
    Sled {
        /// The database directory.
        path: PathBuf,
        /// The backend's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Another process holds the database open (sled's file lock): another node on the same
    /// data directory, most likely.
    #[error("the store at {} is in use by another process", .path.display())]
    Locked {
        /// The database directory.
        path: PathBuf,
    },
    /// The database was written with another layout version.
    #[error(
        "the store at {} has schema version {found}; this build reads version {expected}",
        .path.display()
    )]
    SchemaVersion {
        /// The database directory.
        path: PathBuf,
        /// The version found, or a description of the unreadable stored value.
        found: String,
        /// The version this build reads.
        expected: u32,
    },
    /// A repo's head names a block the store does not have.
    #[error(
        "the store at {} is missing the {what} block {cid} of repo {repo}",
        .path.display()
    )]
    MissingBlock {
        /// The database directory.
        path: PathBuf,
        /// The repo whose head names the block (boxed: a key holds a CID, and so does this).
        repo: Box<RepoKey>,
        /// Which block: `"commit"` or `"MST root"`.
        what: &'static str,
        /// The missing block's CID.
        cid: Cid,
    },
    /// Stored data could not be decoded (a corrupt head record, for instance).
    #[error("the store at {} is corrupt: {source}", .path.display())]
    Corrupt {
        /// The database directory.
        path: PathBuf,
        /// What could not be decoded, and where.
        source: StoreError,
    },
}

/// Everything the node persists about repositories.
pub trait RepoStore: BlockSource + Send + Sync {
    /// The repo's head, if the repo exists.
    fn head(&self, repo: &RepoKey) -> Result<Option<RepoHead>, StoreError>;

    /// Every repo with its head, in key order (DID, then space).
    fn repos(&self) -> Result<Vec<(RepoKey, RepoHead)>, StoreError>;

    /// One commit, atomically and durably: store `blocks`, apply `index` ops (in order), and
    /// set the head to `new_head`, only if the current head's commit CID equals `expected`
    /// (`None`: the repo must not exist yet). Returns only once the write is durable (flushed
    /// to disk for sled). On [`CommitError::Conflict`] nothing is written. (Callers may rely
    /// on no more than an unchanged head and index: a block stored without a head pointing to
    /// it is harmless, since blocks are content-addressed.)
    fn commit(
        &self,
        repo: &RepoKey,
        expected: Option<&Cid>,
        new_head: &RepoHead,
        blocks: &[(Cid, Bytes)],
        index: &[IndexOp],
    ) -> Result<(), CommitError>;

    /// The CID of the record `collection/rkey` in the repo's index.
    fn index_get(
        &self,
        repo: &RepoKey,
        collection: &str,
        rkey: &str,
    ) -> Result<Option<Cid>, StoreError>;

    /// Records of one collection in rkey order (`reverse`: descending), strictly after
    /// (`reverse`: before) `cursor` (an rkey) if given, at most `limit`.
    fn index_list(
        &self,
        repo: &RepoKey,
        collection: &str,
        cursor: Option<&str>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<(String, Cid)>, StoreError>;

    /// The collections that have at least one record, in order.
    fn collections(&self, repo: &RepoKey) -> Result<Vec<String>, StoreError>;

    /// Number of records in the repo's index (0 for an unknown repo).
    fn record_count(&self, repo: &RepoKey) -> Result<u64, StoreError>;

    /// The TID clock's last issued value (persisted so TIDs stay monotonic across restarts).
    fn last_tid(&self) -> Result<Option<Tid>, StoreError>;

    /// Records the TID clock's last issued value; a value at or before the stored one is
    /// ignored, so the stored value never goes backwards.
    ///
    /// Durability: the value is durable once this returns, or, for [`SledStore`], no later
    /// than the next [`RepoStore::commit`] or [`KvStore::kv_apply`] returns (each flushes
    /// every earlier write). So a TID recorded here before it is used in a commit is never
    /// issued again after a crash, at no extra flush.
    fn set_last_tid(&self, tid: &Tid) -> Result<(), StoreError>;

    /// Why the store refuses to work now (it failed on an I/O error, such as a full disk, and
    /// has not recovered yet), or `None` when it works. A failed [`SledStore`] may try to
    /// recover first, so this can take a moment.
    fn unavailable(&self) -> Option<String> {
        None
    }
}

/// One write to a key-value tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOp {
    /// Set a key.
    Put(Vec<u8>, Bytes),
    /// Remove a key (nothing happens if it is absent).
    Delete(Vec<u8>),
}

/// Room for later domains (governance ops, feed logs, bundles): named ordered key-value trees.
/// A tree springs into being at its first write; reading an unknown tree finds nothing.
pub trait KvStore: Send + Sync {
    /// The value at `key` in `tree`.
    fn kv_get(&self, tree: &str, key: &[u8]) -> Result<Option<Bytes>, StoreError>;

    /// Several puts/deletes in one tree, in order, atomically and durably.
    fn kv_apply(&self, tree: &str, ops: &[KvOp]) -> Result<(), StoreError>;

    /// Like [`KvStore::kv_apply`], atomically, but without waiting for the disk: the ops become
    /// durable when the next durable write ([`RepoStore::commit`], `kv_apply`) returns, since
    /// writes reach the disk in order. For bookkeeping that rides along with a commit.
    fn kv_stage(&self, tree: &str, ops: &[KvOp]) -> Result<(), StoreError>;

    /// Entries with keys starting with `prefix`, in key order, strictly after `after`, at most
    /// `limit`.
    fn kv_scan(
        &self,
        tree: &str,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Bytes)>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_parse_and_print_as_public_or_a_cid_string() {
        assert_eq!(Space::parse("public").unwrap(), Space::Public);
        assert_eq!(Space::Public.to_string(), "public");
        let id = guild_core::cids::cid_for_raw(b"a collective");
        let s = id.to_string();
        assert_eq!(Space::parse(&s).unwrap(), Space::Collective(id));
        assert_eq!(s.parse::<Space>().unwrap().to_string(), s);
        assert_eq!(Space::from(id).collective(), Some(&id));
        assert!(Space::Public.is_public() && Space::Public.collective().is_none());
    }

    #[test]
    fn other_strings_are_not_spaces() {
        let id = guild_core::cids::cid_for_raw(b"a collective");
        let base58 = id
            .to_string_of_base(cid::multibase::Base::Base58Btc)
            .unwrap();
        for s in [
            "",
            "Public",
            "public ",
            "collective-1",
            "did:key:z6Mk",
            "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
            &base58,
        ] {
            let err = Space::parse(s).unwrap_err();
            assert_eq!(err, SpaceError(s.to_owned()));
            assert!(err.to_string().contains("space must be"), "{err}");
        }
    }

    #[test]
    fn spaces_sort_as_their_strings() {
        let mut spaces: Vec<Space> = (0u8..20)
            .map(|n| Space::Collective(guild_core::cids::cid_for_raw(&[n])))
            .chain([Space::Public])
            .collect();
        spaces.sort();
        let strings: Vec<String> = spaces.iter().map(Space::to_string).collect();
        let mut sorted = strings.clone();
        sorted.sort();
        assert_eq!(strings, sorted);
    }
}
