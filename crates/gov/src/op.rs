//! Governance ops: signed DAG-CBOR maps `{$type, collective, author, prev, createdAt, …, sig}`
//! (protocol.md §4), their signing and their strict decoding.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};

use guild_core::keys::{self, KeyError};
use guild_core::syntax::{Datetime, Did};
use guild_core::{Cid, Ipld, Keypair, PublicKey, cids, data};
use guild_lexicon::{Registry, ValidationError};

use crate::body::{ENVELOPE, OpBody};

/// The largest signed op accepted, in encoded bytes.
pub const MAX_OP_BYTES: usize = 64 * 1024;

/// The most parents an op may name (the lexicon's `coop.guild.defs#heads` bound).
pub const MAX_PREV: usize = 256;

/// The kinds of governance op (protocol.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    /// `coop.guild.collective.charter`: the genesis op.
    Charter,
    /// `coop.guild.collective.amendment`: a member proposes changes to the charter (adopted
    /// by a vote).
    Amendment,
    /// `coop.guild.member.invite`: a steward invites with a one-time secret's hash.
    Invite,
    /// `coop.guild.member.join`: a candidate reveals the secret or asks for approval.
    Join,
    /// `coop.guild.member.admit`: a steward admits a candidate who asked to join.
    Admit,
    /// `coop.guild.member.remove`: a steward removes a member (or, where the charter makes
    /// removal votable, a member proposes a removal).
    Remove,
    /// `coop.guild.member.leave`: a member leaves.
    Leave,
    /// `coop.guild.consent.grant`: a member consents to some templates.
    ConsentGrant,
    /// `coop.guild.consent.revoke`: a member withdraws consent for some templates.
    ConsentRevoke,
    /// `coop.guild.election.open`: a member opens an election or a vote on a proposal.
    ElectionOpen,
    /// `coop.guild.election.ballot`: a voter's ballot.
    Ballot,
    /// `coop.guild.election.close`: a teller's seal (the ballot set counted and the result).
    Seal,
    /// `coop.guild.agreement.offer`: a steward offers a licence to a builder.
    AgreementOffer,
    /// `coop.guild.agreement.accept`: the builder accepts an offer.
    AgreementAccept,
    /// `coop.guild.agreement.countersign`: a steward countersigns an accepted offer.
    AgreementCountersign,
    /// `coop.guild.bundle.proposal`: a steward proposes a bundle from a causal cut.
    BundleProposal,
    /// `coop.guild.bundle.approval`: a steward approves a bundle's manifest.
    BundleApproval,
    /// `coop.guild.payout.statement`: a steward publishes a payout statement.
    PayoutStatement,
    /// `coop.guild.bundle.receipt`: a builder acknowledges a bundle or a revocation notice.
    BundleReceipt,
}

impl OpKind {
    /// Every kind.
    pub const ALL: [OpKind; 19] = [
        OpKind::Charter,
        OpKind::Amendment,
        OpKind::Invite,
        OpKind::Join,
        OpKind::Admit,
        OpKind::Remove,
        OpKind::Leave,
        OpKind::ConsentGrant,
        OpKind::ConsentRevoke,
        OpKind::ElectionOpen,
        OpKind::Ballot,
        OpKind::Seal,
        OpKind::AgreementOffer,
        OpKind::AgreementAccept,
        OpKind::AgreementCountersign,
        OpKind::BundleProposal,
        OpKind::BundleApproval,
        OpKind::PayoutStatement,
        OpKind::BundleReceipt,
    ];

    /// The kind's NSID (its `$type`).
    pub fn nsid(self) -> &'static str {
        match self {
            OpKind::Charter => "coop.guild.collective.charter",
            OpKind::Amendment => "coop.guild.collective.amendment",
            OpKind::Invite => "coop.guild.member.invite",
            OpKind::Join => "coop.guild.member.join",
            OpKind::Admit => "coop.guild.member.admit",
            OpKind::Remove => "coop.guild.member.remove",
            OpKind::Leave => "coop.guild.member.leave",
            OpKind::ConsentGrant => "coop.guild.consent.grant",
            OpKind::ConsentRevoke => "coop.guild.consent.revoke",
            OpKind::ElectionOpen => "coop.guild.election.open",
            OpKind::Ballot => "coop.guild.election.ballot",
            OpKind::Seal => "coop.guild.election.close",
            OpKind::AgreementOffer => "coop.guild.agreement.offer",
            OpKind::AgreementAccept => "coop.guild.agreement.accept",
            OpKind::AgreementCountersign => "coop.guild.agreement.countersign",
            OpKind::BundleProposal => "coop.guild.bundle.proposal",
            OpKind::BundleApproval => "coop.guild.bundle.approval",
            OpKind::PayoutStatement => "coop.guild.payout.statement",
            OpKind::BundleReceipt => "coop.guild.bundle.receipt",
        }
    }

    /// The kind named by an NSID, if this crate knows it.
    pub fn from_nsid(nsid: &str) -> Option<OpKind> {
        OpKind::ALL.into_iter().find(|k| k.nsid() == nsid)
    }
}

/// Why bytes or fields are not a valid signed op.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// The op is larger than [`MAX_OP_BYTES`].
    #[error("op is {0} bytes; the limit is {MAX_OP_BYTES}")]
    TooLarge(usize),
    /// The bytes are not strict, canonical DAG-CBOR.
    #[error("op is not strict DAG-CBOR: {0}")]
    Cbor(#[from] data::DecodeError),
    /// The value could not be encoded (signing).
    #[error("op cannot be encoded: {0}")]
    Encode(#[from] data::EncodeError),
    /// The op is not a map.
    #[error("op is not a map")]
    NotAMap,
    /// `$type` is missing or names a kind this crate does not know.
    #[error("unknown op type {0:?}")]
    UnknownKind(String),
    /// The op breaks its lexicon.
    #[error("op breaks its lexicon: {0}")]
    Lexicon(#[from] ValidationError),
    /// A field the envelope needs is missing or mistyped (after lexicon validation, this is a
    /// rule the lexicon cannot express).
    #[error("bad field {field}: {reason}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// The author is not a usable `did:key`.
    #[error("author is not an ed25519 did:key: {0}")]
    Author(KeyError),
    /// The signature does not verify over the received bytes.
    #[error("bad signature: {0}")]
    Signature(KeyError),
    /// `prev` names the same parent twice.
    #[error("prev names {0} twice")]
    DuplicatePrev(Cid),
    /// `prev` names the op itself.
    #[error("op names itself in prev")]
    SelfReference,
    /// The genesis charter must have an empty `prev` and no `collective`; every other op must
    /// have a non-empty `prev`.
    #[error("{0}")]
    Genesis(&'static str),
    /// A field passed to [`Op::sign`] is one the envelope sets itself.
    #[error("field {0:?} is set by the envelope, not by the caller")]
    ReservedField(String),
    /// The fields are valid for the lexicon but are not the kind's typed body (a CID string
    /// that is not a CID, a DID the lexicon's format check let through…).
    #[error("op body: {0}")]
    Body(String),
}

/// The op registry, parsed once.
fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::builtin)
}

/// Builds and signs ops.
#[derive(Debug, Clone, Copy)]
pub struct Op;

impl Op {
    /// Signs an op with the typed `body` (its kind is the body's), in `collective` (`None`
    /// for the genesis charter), by `key`, after the heads `prev`, written at `created_at`:
    /// how every writer makes ops. The result is decoded again with [`SignedOp::decode`].
    pub fn write(
        body: &OpBody,
        collective: Option<&Cid>,
        key: &Keypair,
        prev: &[Cid],
        created_at: &Datetime,
    ) -> Result<SignedOp, OpError> {
        Op::sign(
            body.kind(),
            collective,
            body.to_fields()?,
            key,
            prev,
            created_at,
        )
    }

    /// Signs an op of `kind` from raw `fields`: for tests and tools that must build any op,
    /// hostile ones included (production writers use [`Op::write`]), in `collective` (`None` for the genesis
    /// charter), by `key`, after the heads `prev`, written at `created_at`. The result is
    /// decoded again with [`SignedOp::decode`], so an op that this returns is one every node
    /// accepts structurally.
    pub fn sign(
        kind: OpKind,
        collective: Option<&Cid>,
        fields: BTreeMap<String, Ipld>,
        key: &Keypair,
        prev: &[Cid],
        created_at: &Datetime,
    ) -> Result<SignedOp, OpError> {
        let mut map = BTreeMap::new();
        for (name, value) in fields {
            if ENVELOPE.contains(&name.as_str()) {
                return Err(OpError::ReservedField(name));
            }
            map.insert(name, value);
        }
        map.insert("$type".into(), Ipld::String(kind.nsid().into()));
        if let Some(c) = collective {
            map.insert("collective".into(), Ipld::String(c.to_string()));
        }
        map.insert("author".into(), Ipld::String(key.did()));
        map.insert(
            "prev".into(),
            Ipld::List(prev.iter().map(|c| Ipld::Link(*c)).collect()),
        );
        map.insert(
            "createdAt".into(),
            Ipld::String(created_at.as_str().to_owned()),
        );
        let unsigned = data::encode(&Ipld::Map(map.clone()))?;
        let sig = key.sign_object(&unsigned);
        map.insert("sig".into(), Ipld::Bytes(sig.to_vec()));
        let bytes = data::encode(&Ipld::Map(map))?;
        SignedOp::decode(&bytes)
    }
}

/// A decoded, structurally valid, signature-checked op. Whether it is *authorised* depends on
/// the log it enters (see [`crate::Log`]).
///
/// Cheap to clone: the decoded op is shared (a node's caches, its log and, in one process,
/// several nodes hold the same op once).
#[derive(Debug, Clone, PartialEq)]
pub struct SignedOp(Arc<OpInner>);

#[derive(Debug, PartialEq)]
struct OpInner {
    id: Cid,
    /// Shared: a store in memory keeps the same bytes ([`SignedOp::shared_bytes`]).
    bytes: bytes::Bytes,
    kind: OpKind,
    /// Shared: every op of a collective names the same one (an inline CID is 96 bytes).
    collective: Option<Arc<Cid>>,
    author: Did,
    prev: Vec<Cid>,
    created_at: Datetime,
    body: OpBody,
}

impl SignedOp {
    /// Decodes and checks untrusted bytes: size, strict DAG-CBOR, the kind's lexicon, a
    /// `did:key` author whose signature verifies over the exact bytes, and a `prev` without
    /// duplicates or the op itself.
    pub fn decode(bytes: &[u8]) -> Result<SignedOp, OpError> {
        SignedOp::decode_inner(bytes, true)
    }

    fn decode_inner(bytes: &[u8], verify: bool) -> Result<SignedOp, OpError> {
        if bytes.len() > MAX_OP_BYTES {
            return Err(OpError::TooLarge(bytes.len()));
        }
        // Bytes from the network are decoded into a map of fields for the lexicon; trusted
        // bytes (the node's own store, which holds only ops it checked) only to the envelope's
        // fields, borrowed: their body is decoded into its typed form below either way, and
        // building, then freeing, a map of every field of a million ops was about a quarter
        // of the decoding threads' work when a node opened its log.
        let map;
        let envelope = if verify {
            let value = data::decode(bytes)?;
            let Ipld::Map(body) = value else {
                return Err(OpError::NotAMap);
            };
            let body_ipld = Ipld::Map(body);
            registry().validate_record(&body_ipld)?;
            let Ipld::Map(body) = body_ipld else {
                return Err(OpError::NotAMap);
            };
            map = body;
            Envelope::of_map(&map)?
        } else {
            data::decode_borrowed::<Envelope<'_>>(bytes)?
        };
        let kind = match envelope.kind {
            Some(t) => OpKind::from_nsid(t).ok_or_else(|| OpError::UnknownKind(t.to_owned()))?,
            None => return Err(OpError::UnknownKind(String::new())),
        };
        let author = match envelope.author {
            Some(a) => shared_did(a)?,
            None => return Err(field("author", "missing")),
        };
        if verify {
            let key = author_key(&author)?;
            let (unsigned, sig) = keys::split_signed(bytes).map_err(OpError::Signature)?;
            key.verify_object(&unsigned, &sig)
                .map_err(OpError::Signature)?;
        }

        let id = cids::cid_for_cbor(bytes);
        let prev = match &envelope.prev {
            Some(items) => check_prev(&id, items)?,
            None => return Err(field("prev", "missing")),
        };
        if prev.len() > MAX_PREV {
            return Err(field("prev", "too many parents"));
        }
        let created_at = match envelope.created_at {
            Some(s) => Datetime::parse(s).map_err(|_| field("createdAt", "not a datetime"))?,
            None => return Err(field("createdAt", "missing")),
        };
        let collective = match envelope.collective {
            None => None,
            Some(s) => Some(shared_collective(
                guild_core::syntax::parse_cid_str(s)
                    .map_err(|_| field("collective", "not a CID"))?,
            )),
        };
        match (kind, collective.is_some(), prev.is_empty()) {
            (OpKind::Charter, false, true) => {}
            (OpKind::Charter, true, _) => {
                return Err(OpError::Genesis("the genesis charter names no collective"));
            }
            (OpKind::Charter, _, false) => {
                return Err(OpError::Genesis("the genesis charter has no parents"));
            }
            (_, false, _) => return Err(field("collective", "missing")),
            (_, true, true) => {
                return Err(OpError::Genesis("only the genesis charter has no parents"));
            }
            (_, true, false) => {}
        }
        let typed = OpBody::decode(kind, bytes)?;
        Ok(SignedOp(Arc::new(OpInner {
            id,
            bytes: bytes::Bytes::copy_from_slice(bytes),
            kind,
            collective,
            author,
            prev,
            created_at,
            body: typed,
        })))
    }

    /// Decodes bytes this node verified before (from its own store): strict DAG-CBOR and the
    /// envelope's rules are checked again and the id is recomputed from the bytes, but the
    /// lexicon and the signature are not (they were checked when the op first arrived, and
    /// the id binds the bytes). Never use it for bytes from the network.
    pub fn decode_trusted(bytes: &[u8]) -> Result<SignedOp, OpError> {
        SignedOp::decode_inner(bytes, false)
    }

    /// The op id: the CID of the signed bytes.
    pub fn id(&self) -> &Cid {
        &self.0.id
    }

    /// The signed bytes, exactly as received.
    pub fn bytes(&self) -> &[u8] {
        &self.0.bytes
    }

    /// The signed bytes as a shared buffer: cloning it copies nothing (what
    /// [`crate::OpStore::append_shared`] is given).
    pub fn shared_bytes(&self) -> bytes::Bytes {
        self.0.bytes.clone()
    }

    /// The signed bytes, taken without a copy when no one else holds this op or its bytes.
    pub fn into_bytes(self) -> Box<[u8]> {
        match Arc::try_unwrap(self.0) {
            Ok(inner) => Vec::from(inner.bytes).into_boxed_slice(),
            Err(shared) => shared.bytes[..].into(),
        }
    }

    /// The op's kind.
    pub fn kind(&self) -> OpKind {
        self.0.kind
    }

    /// The collective named (`None` only for the genesis charter).
    pub fn collective(&self) -> Option<&Cid> {
        self.0.collective.as_deref()
    }

    /// The author's DID (a `did:key`).
    pub fn author(&self) -> &str {
        self.0.author.as_str()
    }

    /// The author's DID, typed.
    pub fn author_did(&self) -> &Did {
        &self.0.author
    }

    /// The op's parents.
    pub fn prev(&self) -> &[Cid] {
        &self.0.prev
    }

    /// When the author says they wrote it.
    pub fn created_at(&self) -> &Datetime {
        &self.0.created_at
    }

    /// The whole map, envelope included, decoded again from the signed bytes (for display
    /// and for tests that tamper with an op; the rules read [`SignedOp::body`]). Not kept in
    /// memory: a log of a million ops would hold ~2.5 GB of such maps.
    pub fn fields(&self) -> Result<BTreeMap<String, Ipld>, OpError> {
        match data::decode(&self.0.bytes)? {
            Ipld::Map(map) => Ok(map),
            _ => Err(OpError::NotAMap),
        }
    }

    /// The typed body.
    pub fn body(&self) -> &OpBody {
        &self.0.body
    }
}

/// How many authors' keys [`author_key`] remembers (a collective of 50 000 members fits).
const KEY_CACHE: usize = 65_536;

/// The public key of a `did:key` author, remembered: decompressing the curve point takes
/// ~5 µs, ~8 % of checking an op, and a collective's ops come from few authors each.
fn author_key(author: &Did) -> Result<PublicKey, OpError> {
    static KEYS: OnceLock<std::sync::Mutex<HashMap<Did, PublicKey>>> = OnceLock::new();
    let keys = KEYS.get_or_init(Default::default);
    if let Some(k) = keys
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(author)
    {
        return Ok(*k);
    }
    let key = PublicKey::from_did(author.as_str()).map_err(OpError::Author)?;
    let mut map = keys
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if map.len() >= KEY_CACHE {
        map.clear();
    }
    map.insert(author.clone(), key);
    Ok(key)
}

/// How many authors [`shared_did`] remembers.
const SHARED_DIDS: usize = 65_536;

/// The longest author DID [`shared_did`] shares (a `did:key` is 56 to 57 characters); a
/// longer one is copied per op. The table is filled before signatures are checked, so this
/// bounds what ops from anyone can make it hold (~6 MB).
const SHARED_DID_LEN: usize = 64;

/// How many collective ids [`shared_collective`] remembers.
const SHARED_COLLECTIVES: usize = 1024;

/// An op's author, sharing its text with the other ops of the same author decoded in this
/// process (a 50 000-member log of 1 M ops held ~87 MB of copies of its authors' DIDs).
fn shared_did(text: &str) -> Result<Did, OpError> {
    static DIDS: crate::shared::Table<Did> = crate::shared::Table::new(SHARED_DIDS);
    let parse = |t: &str| Did::parse(t).map_err(|_| field("author", "not a DID"));
    if text.len() > SHARED_DID_LEN {
        return parse(text);
    }
    DIDS.get_or_make(text, parse)
}

/// An op's collective, shared with the other ops of the collective decoded in this process.
fn shared_collective(id: Cid) -> Arc<Cid> {
    static IDS: crate::shared::Table<Arc<Cid>> = crate::shared::Table::new(SHARED_COLLECTIVES);
    IDS.get_or_insert(&id, |id| Arc::new(*id))
}

/// The envelope's fields of an op, as [`SignedOp::decode_inner`] reads them: from the map
/// of every field (bytes from the network), or straight from trusted bytes, borrowing their
/// text (a field that is present with another type is an error there, as decoding).
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "$type", borrow, default)]
    kind: Option<&'a str>,
    #[serde(borrow, default)]
    author: Option<&'a str>,
    #[serde(default)]
    prev: Option<Vec<Ipld>>,
    #[serde(rename = "createdAt", borrow, default)]
    created_at: Option<&'a str>,
    /// Absent is `None`; present, it must be a string (`null` is an error, as in the map).
    #[serde(borrow, default, deserialize_with = "present_str")]
    collective: Option<&'a str>,
}

fn present_str<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de str>, D::Error> {
    <&'de str as serde::Deserialize<'de>>::deserialize(d).map(Some)
}

impl<'a> Envelope<'a> {
    /// From a map of every field: a field of another type counts as missing, except
    /// `collective`, which must be a string when present.
    fn of_map(map: &'a BTreeMap<String, Ipld>) -> Result<Envelope<'a>, OpError> {
        let text = |name: &str| match map.get(name) {
            Some(Ipld::String(s)) => Some(s.as_str()),
            _ => None,
        };
        let collective = match map.get("collective") {
            None => None,
            Some(Ipld::String(s)) => Some(s.as_str()),
            Some(_) => return Err(field("collective", "must be a string")),
        };
        Ok(Envelope {
            kind: text("$type"),
            author: text("author"),
            prev: match map.get("prev") {
                Some(Ipld::List(items)) => Some(items.clone()),
                _ => None,
            },
            created_at: text("createdAt"),
            collective,
        })
    }
}

/// Checks an op's `prev` list: links only, no duplicates, not the op itself.
pub(crate) fn check_prev(id: &Cid, items: &[Ipld]) -> Result<Vec<Cid>, OpError> {
    let mut seen = BTreeSet::new();
    let mut prev = Vec::with_capacity(items.len());
    for item in items {
        let Ipld::Link(c) = item else {
            return Err(field("prev", "must hold links"));
        };
        if c == id {
            return Err(OpError::SelfReference);
        }
        if !seen.insert(*c) {
            return Err(OpError::DuplicatePrev(*c));
        }
        prev.push(*c);
    }
    Ok(prev)
}

fn field(field: &'static str, reason: &'static str) -> OpError {
    OpError::Field { field, reason }
}
