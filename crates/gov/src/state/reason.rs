//! Why an op is refused: one reason per rule, shared by every family.

use guild_core::Cid;

/// Why an op is not authorised (against the state of its causal past), or why it is ignored
/// when the full state is folded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// The bytes are not a valid signed op.
    #[error("invalid op: {0}")]
    Invalid(#[from] crate::op::OpError),
    /// The op belongs to another collective (or is another collective's genesis).
    #[error("op belongs to another collective")]
    WrongCollective,
    /// The log holds as many ops as it can index (2³²); nothing more enters it.
    #[error("the log holds as many ops as it can index")]
    LogFull,
    /// The op's causal past does not start at this collective's charter.
    #[error("op's causal past has no charter")]
    NoCharter,
    /// A second charter.
    #[error("the collective already has a charter")]
    SecondCharter,
    /// The author is not a member (in the op's causal past).
    #[error("author {0} is not a member")]
    UnknownAuthor(String),
    /// The op needs a steward.
    #[error("author {0} is not a steward")]
    NotSteward(String),
    /// The target is not a member.
    #[error("{0} is not a member")]
    NotMember(String),
    /// The candidate is already a member.
    #[error("{0} is already a member")]
    AlreadyMember(String),
    /// The join names an invite that does not exist (in its causal past).
    #[error("no such invite")]
    UnknownInvite,
    /// The invite has already admitted someone.
    #[error("invite already used")]
    InviteUsed,
    /// The join was written after the invite expired.
    #[error("invite expired")]
    InviteExpired,
    /// The revealed secret does not hash to the invite's `secretHash`.
    #[error("secret does not match the invite")]
    SecretMismatch,
    /// The invite names someone else.
    #[error("the invite is for someone else")]
    NotInvitee,
    /// A join without an invite where the charter accepts only invites.
    #[error("the charter admits by invite only")]
    RequestsNotAllowed,
    /// The admit names no pending join request of that member.
    #[error("no pending join request")]
    NoSuchRequest,
    /// The charter makes this a vote, not a steward's decision.
    #[error("the charter requires a vote")]
    VoteRequired,
    /// A consent op, offer or agreement names a template the charter does not offer.
    #[error("template {0:?} is not offered by the charter")]
    UnknownTemplate(String),
    /// A consent write whose `rev` is not above the register's in its causal past.
    #[error("consent rev {rev} is not above the register's {current}")]
    StaleRev {
        /// The op's rev.
        rev: u64,
        /// The register's rev in the op's past.
        current: u64,
    },
    /// An op names an op (election, proposal, offer, bundle…) that is not in its causal past
    /// or is not of the right kind.
    #[error("{0} names no such op")]
    UnknownRef(&'static str),
    /// An election op is malformed (seats, candidates, proposal, method).
    #[error("bad election: {0}")]
    BadElection(&'static str),
    /// The open op's electorate CID is not the membership of its causal past.
    #[error("electorate does not match the membership")]
    WrongElectorate,
    /// The open op's tellers are not the stewards of its causal past.
    #[error("tellers do not match the stewards")]
    WrongTellers,
    /// A ballot from someone outside the election's frozen electorate.
    #[error("{0} is not in the electorate")]
    NotInElectorate(String),
    /// A ballot whose approvals are not choices of the election.
    #[error("ballot approves {0:?}, which is not a choice")]
    BadChoice(String),
    /// A ballot whose `rev` is not above the voter's earlier ballot in its past.
    #[error("ballot rev {rev} is not above the voter's {current}")]
    StaleBallot {
        /// The ballot's rev.
        rev: u64,
        /// The voter's highest rev in the ballot's past.
        current: u64,
    },
    /// The election already has a certified result (in the op's past).
    #[error("the election is closed")]
    ElectionClosed,
    /// A seal by someone who is not a teller of the election.
    #[error("{0} is not a teller")]
    NotTeller(String),
    /// A seal written before the election's close time.
    #[error("sealed before the close time")]
    TooEarly,
    /// A ballot dated at or after the election's close time.
    #[error("the election closed at {closes_after}; a ballot dated {created_at} is late")]
    BallotAfterClose {
        /// The election's close time.
        closes_after: String,
        /// The ballot's `createdAt`.
        created_at: String,
    },
    /// An op dated earlier than one of its parents: time runs forward along the causal DAG.
    #[error("op is dated {created_at}, before its parent {parent} ({parent_at})")]
    BeforeItsPast {
        /// The op's `createdAt`.
        created_at: String,
        /// The parent dated later.
        parent: Cid,
        /// That parent's `createdAt`.
        parent_at: String,
    },
    /// A join submitted to this node dated further from its clock than
    /// [`super::MAX_CLOCK_SKEW_MICROS`] (a candidate backdating a join to beat an invite's expiry).
    #[error("join is dated {created_at}, more than 5 minutes from this node's clock ({now})")]
    JoinMisdated {
        /// The join's `createdAt`.
        created_at: String,
        /// This node's clock.
        now: String,
    },
    /// A teller sealing again.
    #[error("{0} has already sealed")]
    AlreadySealed(String),
    /// A seal whose ballot set or result is not what its causal past gives.
    #[error("seal does not match the ballots: {0}")]
    SealMismatch(&'static str),
    /// An accept by someone other than the offer's builder, or an offer to a member.
    #[error("{0} is not the offer's builder")]
    NotBuilder(String),
    /// The offer has lapsed.
    #[error("offer expired")]
    OfferExpired,
    /// An agreement op out of order (accepting twice, countersigning before the accept…).
    #[error("agreement is {0}")]
    AgreementState(&'static str),
    /// A bundle for an agreement that is not in force (no quorum of countersignatures).
    #[error("agreement is not in force")]
    AgreementNotInForce,
    /// A bundle proposal whose cut is not its `prev`, or names replicas of non-contributors.
    #[error("bad bundle cut: {0}")]
    BadCut(&'static str),
    /// The bundle is sealed or void already.
    #[error("bundle is {0}")]
    BundleState(&'static str),
    /// An approval whose past holds a revocation of a contributor's consent made after the
    /// cut: the steward saw it.
    #[error("a contributor's consent was revoked after the cut")]
    ConsentRevoked,
    /// A steward approving or countersigning twice.
    #[error("{0} has already signed")]
    AlreadySigned(String),
    /// A receipt that acknowledges nothing this agreement delivered (not exactly one of a
    /// bundle and a revoke; a bundle not sealed for the agreement; a revoke of consent to
    /// another template), or acknowledges it twice.
    #[error("bad receipt: {0}")]
    BadReceipt(&'static str),
    /// An accept's evaluation set the stewards cannot value with.
    #[error("bad evaluation set: {0}")]
    BadEvaluation(&'static str),
    /// A payout statement whose lines do not sum to its total, or name strangers.
    #[error("bad payout statement: {0}")]
    BadPayout(&'static str),
    /// An op submitted to a node by someone who is not a member (a builder), of a kind only
    /// members write through their own node: only a builder's accept may be submitted.
    #[error("only a builder's accept or receipt may be submitted, not a {0} op")]
    NotSubmittable(String),
    /// An accept submitted to this node dated further from its clock than
    /// [`super::MAX_CLOCK_SKEW_MICROS`] (a builder backdating an accept to beat the offer's
    /// expiry).
    #[error("accept is dated {created_at}, more than 5 minutes from this node's clock ({now})")]
    AcceptMisdated {
        /// The accept's `createdAt`.
        created_at: String,
        /// This node's clock.
        now: String,
    },
}
