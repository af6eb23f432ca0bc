//! Why a cut, a selection or a manifest was refused.

use guild_core::Cid;
use guild_core::syntax::Did;
use guild_license::{LicenceError, Refusal};

/// Why a bundle cannot be selected or its manifest built.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The contribution estimates cannot be computed (guild-valuation's reason).
    #[error("valuation: {0}")]
    Valuation(String),
    /// The cut's state has no charter (a log always starts with one: a bug or a forged cut).
    #[error("the cut's state has no charter")]
    NoCharter,
    /// A cut names no head.
    #[error("the cut names no op")]
    EmptyCut,
    /// A cut's head is not in the log (this node lacks ops the proposer had).
    #[error("the cut's head {0} is not in the log")]
    UnknownHead(Cid),
    /// A head of the cut is in the causal past of another: a cut is named by its heads only.
    #[error("the cut's head {0} is an ancestor of another head")]
    NotHeads(Cid),
    /// The agreement is not known at the cut.
    #[error("no agreement {0} at the cut")]
    UnknownAgreement(Cid),
    /// The agreement is not in force at the cut.
    #[error("the agreement {0} is not in force at the cut")]
    AgreementNotInForce(Cid),
    /// The op that put the agreement in force is missing from the log (a log bug).
    #[error("the countersignature {0} is missing from the log")]
    MissingOp(Cid),
    /// The agreement's terms do not read as a valid contract.
    #[error("the agreement's terms: {0}")]
    Terms(#[from] LicenceError),
    /// A bundle kind this version does not know.
    #[error("unknown bundle kind {0:?}")]
    UnknownKind(String),
    /// The agreement does not license this bundle (its kind, its term, its builder).
    #[error("the agreement does not license this bundle: {0}")]
    NotLicensed(Refusal),
    /// Two replicas were given for one member.
    #[error("two replicas given for {0}")]
    DuplicateReplica(Did),
    /// A replica lists one path twice.
    #[error("{0} lists {1} twice")]
    DuplicateRecord(Did, String),
    /// A training bundle needs the manifest of every evaluation bundle sealed at the cut.
    #[error("the manifest of the sealed evaluation bundle {0} is missing")]
    MissingEvaluationManifest(Cid),
    /// Manifest bytes given do not hash to the CID they were given for.
    #[error("the manifest given for {0} does not hash to it")]
    ManifestMismatch(Cid),
    /// Manifest bytes do not decode as a manifest.
    #[error("manifest {0} does not decode: {1}")]
    ManifestDecode(Cid, String),
    /// A contribution estimate is about a member with no record in the bundle, or twice.
    #[error("estimate for {0}: {1}")]
    Estimate(Did, &'static str),
    /// The manifest breaks its lexicon (a name too long, a record page over 1 MB, …).
    #[error("the manifest breaks its lexicon: {0}")]
    Lexicon(String),
    /// The op given as a proposal is another kind of op.
    #[error("op {0} is not a bundle proposal")]
    NotAProposal(Cid),
    /// The manifest does not encode (a bug: every field is a string, integer or list).
    #[error("the manifest does not encode: {0}")]
    Encode(String),
    /// The CAR file name a dataset form would name is not a plain `*.car` file name.
    #[error("the CAR file name {0:?} is not a plain file name ending .car")]
    CarFileName(String),
    /// The log does not seal this manifest for its proposal (no quorum of approvals of it).
    #[error("the manifest {manifest} is not sealed for proposal {proposal} in the log")]
    NotSealed {
        /// The manifest's proposal.
        proposal: Cid,
        /// The manifest's CID.
        manifest: Cid,
    },
    /// A block the bundle needs is not in the replicas given.
    #[error("block {0} is missing from the replicas")]
    MissingBlock(Cid),
    /// A record cannot be proven against its entry's commit.
    #[error("record {path} of {author}: {reason}")]
    Proof {
        /// The author.
        author: String,
        /// The record's path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The block store failed.
    #[error("{0}")]
    Store(String),
    /// Writing the bundle failed.
    #[error("writing the bundle: {0}")]
    Io(#[from] std::io::Error),
}
