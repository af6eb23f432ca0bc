//! What the collectives engine needs of the node's repositories to replicate members'
//! collective repos (protocol.md §5, "Repo sync") and their public repos (the commons, which
//! stewards' nodes list collective-wide).
//!
//! guild-net knows no repo, record or lexicon: it calls [`Repos`] (implemented here, on
//! [`crate::RepoService`]), and the engine only moves heads and CAR bytes between it and the
//! network. Whether a CAR is a valid replica is decided by the implementation.

use guild_core::Cid;
use guild_core::syntax::Did;

/// Which of a member's repos a head, a pull or an export is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RepoKind {
    /// The member's repo in the collective's space (private to the collective).
    Space,
    /// The member's public repo (its commons records and their licences).
    Public,
}

/// The head of one member's repo: in a collective's space, or its public repo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoHead {
    /// The repo's owner.
    pub did: Did,
    /// Which of the member's repos.
    pub kind: RepoKind,
    /// The head commit's revision (a TID).
    pub rev: String,
    /// The head commit's CID.
    pub commit: Cid,
}

/// Why a [`Repos`] call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoSyncError {
    /// This node holds no such repo.
    #[error("not-found")]
    NotFound,
    /// The `since` revision is not one this node has seen for that repo (ask for the whole
    /// repo instead).
    #[error("unknown-rev")]
    UnknownRev,
    /// The CAR is not a valid replica (bad bytes, signature, tree, records, not newer than the
    /// replica held, not this member's, not this collective's); nothing was written.
    #[error("refused: {0}")]
    Refused(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
}

/// The node's repositories, as the engine sees them. Every method may block on the store:
/// the engine calls them on blocking threads.
pub trait Repos: Send + Sync + 'static {
    /// The heads of every repo this node holds in the collective's space: its member's own
    /// and the replicas it keeps.
    fn heads(&self, collective: &Cid) -> Result<Vec<RepoHead>, RepoSyncError>;

    /// The heads of every public repo this node holds: its member's own and the replicas it
    /// keeps (the engine tells only a collective's members' to that collective).
    fn public_heads(&self) -> Result<Vec<RepoHead>, RepoSyncError>;

    /// The head of `did`'s repo of `kind` (in the collective's space, or public), if this
    /// node holds it.
    fn head(
        &self,
        did: &Did,
        collective: &Cid,
        kind: RepoKind,
    ) -> Result<Option<RepoHead>, RepoSyncError>;

    /// `did`'s repo as a CAR whose root is the head commit: the whole repo, or with `since`
    /// the blocks new since that revision (the commit, the changed MST nodes, the new
    /// records). Returns the head the CAR was cut at.
    fn export_since(
        &self,
        did: &Did,
        collective: &Cid,
        kind: RepoKind,
        since: Option<&str>,
    ) -> Result<(RepoHead, Vec<u8>), RepoSyncError>;

    /// Verifies a CAR of `did`'s repo (whole, or a diff on top of the replica held) and, if it
    /// is valid and newer, stores it as this node's replica. Writes nothing otherwise. A
    /// public repo needs no space declaration, and may hold records of types this node has no
    /// lexicon for (AT's rule for public repos); those of known types must be valid.
    fn import_replica(
        &self,
        did: &Did,
        collective: &Cid,
        kind: RepoKind,
        car: &[u8],
    ) -> Result<RepoHead, RepoSyncError>;
}
