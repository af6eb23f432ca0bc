//! What the API needs of the node's collectives engine, as a trait: the API calls it, the
//! network crate implements it (`guild_net::NetCollectives`), and neither knows the other.
//!
//! The types here are the engine's answers as the API reads them: a collective's [`Status`],
//! the node's [`NodePeers`], an [`EngineError`]. An op to write is its [`OpKind`] and a
//! [`FieldsFn`] that builds its fields ([`OpFields`]) from the governance state at the moment
//! the engine writes it.

use std::future::Future;
use std::pin::Pin;

use cid::Cid;
use guild_core::syntax::{Datetime, Did};
use guild_gov::body::OpBody;
use guild_gov::make::{CharterParams, InviteCode};
use guild_gov::{OpKind, Reason, State};

use crate::repos::RepoHead;

/// A future the engine answers with; boxed so that [`CollectiveEngine`] can be a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An op's body, as [`FieldsFn`] builds it (the op's envelope, `author`, `prev`,
/// `createdAt` and `sig`, is the engine's).
pub type OpFields = OpBody;

/// Builds an op's fields from the collective's current state and this member's DID.
pub type FieldsFn = Box<dyn FnOnce(&State, &str) -> Result<OpFields, EngineError> + Send>;

/// Why an engine call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// This node holds no such collective.
    #[error("unknown collective {0}")]
    UnknownCollective(Cid),
    /// This node's member is not (or no longer) a member of the collective.
    #[error("you are not a member of this collective")]
    NotMember,
    /// The collective's rules refused the op.
    #[error("refused: {0}")]
    Refused(Reason),
    /// The op's fields could not be built or signed.
    #[error("{0}")]
    Invalid(String),
    /// The invite is expired, used, or not one the peers know.
    #[error("invite refused by the collective: {0}")]
    Invite(String),
    /// No member's node could be reached.
    #[error("no peers reachable: {0}")]
    NoPeers(String),
    /// A peer's node answered with a refusal (`not-a-member`, say).
    #[error("the peer refused: {0}")]
    PeerRefused(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
    /// The engine stopped.
    #[error("the node's network engine stopped")]
    Stopped,
}

/// A collective as this node sees it.
#[derive(Debug, Clone)]
pub struct Status {
    /// The collective's id.
    pub collective: Cid,
    /// Its state (members, stewards, consents, elections…).
    pub state: State,
    /// The log's heads.
    pub heads: Vec<Cid>,
    /// Ops in the log.
    pub ops: usize,
    /// Ops waiting for parents.
    pub pending: usize,
    /// Ops asked of peers and not yet received.
    pub wanted: usize,
    /// Connected peers that are members, by DID.
    pub peers: Vec<String>,
    /// Members' repos refused as replicas: by this node's steward (of other members' repos),
    /// and by other stewards (of this node's member's repo, as they told it). The latest
    /// refusal per member and steward; cleared when a later pull succeeds.
    pub replica_refusals: Vec<ReplicaRefusal>,
}

/// A steward's node refusing a member's repo as a replica: the member's new records in the
/// collective's space do not reach that steward until the repo is fixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRefusal {
    /// The member whose repo is refused.
    pub member: Did,
    /// The steward whose node refuses it.
    pub steward: Did,
    /// Why (the replica import's error).
    pub reason: String,
    /// When this node learnt it (the pull, on the steward's node; the notice, on the
    /// member's).
    pub at: Datetime,
}

/// How and when this node's member stopped being a member of a collective.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Departed {
    /// True if a steward or a vote removed them; false if they left.
    pub removed: bool,
    /// The date of the leave or remove op (of the certifying seal, for a vote).
    pub at: Datetime,
}

/// Membership as the write path reads it: synchronous, from a snapshot the engine keeps up to
/// date as ops are applied (implemented by `guild_net::Memberships`).
pub trait Memberships: Send + Sync + std::fmt::Debug + 'static {
    /// If this node's member was a member of `collective` and is no longer, how and when it
    /// stopped; `None` for a member, or for a collective the engine does not hold.
    fn departed(&self, collective: &Cid) -> Option<Departed>;
}

/// The node's place in the network: its peer id, where it listens, whom it is connected to,
/// and the bytes its swarm moved since it started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodePeers {
    /// This node's peer id.
    pub peer: String,
    /// The addresses it listens on.
    pub listen: Vec<String>,
    /// The peers it is connected to.
    pub peers: Vec<Peer>,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
}

/// A connected peer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Peer {
    /// Its peer id.
    pub peer: String,
    /// Its DID, when its peer id inlines an ed25519 key.
    pub did: Option<String>,
    /// The addresses it is connected on and those it reports listening on.
    pub addrs: Vec<String>,
    /// Its gossipsub score as seen by this node.
    pub score: Option<f64>,
}

/// The node's collectives engine, as the API uses it. Every method talks to a running engine
/// and may wait on the network; none decides policy (the rules are `guild-gov`'s).
pub trait CollectiveEngine: Send + Sync + std::fmt::Debug + 'static {
    /// The collectives this node holds.
    fn collectives(&self) -> BoxFuture<'_, Result<Vec<Cid>, EngineError>>;

    /// Founds a collective with this node's member as founder and first steward.
    fn create(&self, params: CharterParams) -> BoxFuture<'_, Result<Cid, EngineError>>;

    /// Writes an invite (the caller must be a steward) and returns the code to hand over.
    fn invite(
        &self,
        collective: Cid,
        invitee: Option<Did>,
        expires_at: Option<Datetime>,
    ) -> BoxFuture<'_, Result<InviteCode, EngineError>>;

    /// Joins a collective with an invite; returns the collective's id.
    fn join(&self, code: InviteCode) -> BoxFuture<'_, Result<Cid, EngineError>>;

    /// Writes an op of `kind` whose fields `fields` builds from the current state; returns
    /// the op's id.
    fn write(
        &self,
        collective: Cid,
        kind: OpKind,
        fields: FieldsFn,
    ) -> BoxFuture<'_, Result<Cid, EngineError>>;

    /// The collective as this node sees it.
    fn status(&self, collective: Cid) -> BoxFuture<'_, Result<Status, EngineError>>;

    /// A snapshot of the collective's op log (a bundle's selection is computed from the
    /// causal past of its cut, off the engine).
    fn log(&self, collective: Cid) -> BoxFuture<'_, Result<guild_gov::Log, EngineError>>;

    /// The repo heads the node of `peer` (a DID) holds in the collective's space, asked of
    /// that node.
    fn remote_heads<'a>(
        &'a self,
        collective: Cid,
        peer: &'a str,
    ) -> BoxFuture<'a, Result<Vec<RepoHead>, EngineError>>;

    /// The node's peers and traffic.
    fn peers(&self) -> BoxFuture<'_, Result<NodePeers, EngineError>>;

    /// Takes an op signed elsewhere (a builder's accept: a builder has a key, not a node):
    /// decoded strictly (`SignedOp::decode`: lexicon, signature), its parents already in the
    /// log, then submitted to the collective's rules, stored and gossiped like a local write.
    /// Returns the op's id (the same id again for an op already held); a refusal by the rules
    /// is [`EngineError::Refused`].
    fn submit(&self, collective: Cid, op: Vec<u8>) -> BoxFuture<'_, Result<Cid, EngineError>> {
        let _ = (collective, op);
        Box::pin(async {
            Err(EngineError::Invalid(
                "this engine takes no ops signed elsewhere".into(),
            ))
        })
    }

    /// The signed bytes of op `id` of the collective, if this node holds it.
    fn op(&self, collective: Cid, id: Cid) -> BoxFuture<'_, Result<Option<Vec<u8>>, EngineError>> {
        let _ = (collective, id);
        Box::pin(async { Ok(None) })
    }
}
