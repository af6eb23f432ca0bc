//! The engine's wire formats on a collective's topic: typed, versioned DAG-CBOR frames.
//!
//! - A **request** on `/guild/sync/1` is `{"v": 1, "req": <Request>}`: a driver message
//!   between members (`sync`), a candidate's invite fetch (`fetch`) and join submission
//!   (`submit`), a member asking where the other members' nodes listen (`addrs`), and the repo
//!   replication requests (`repoHeads`, `repo`; see [`crate::replica`]; a head or a repo
//!   request with `public: true` is about the member's public repo, the commons), and a steward's
//!   verdict on a member's repo as a replica (`replicaVerdict`: refused and why, or accepted
//!   again), sent to that member's node.
//! - A **reply** is `{"v": 1, "res": <Reply>}`: ops, addresses, repo heads, a page of a repo's
//!   CAR, or a refusal (`not-a-member`, `busy`, …, or why a join was refused).
//! - A repo-head **announcement** (gossip) is `{"repoHead": {did, rev, commit, public?}, "v": 1}`: a map
//!   without `$type`, so never taken for a governance op ([`classify_gossip`]).
//!
//! Every decoder reads untrusted bytes: the size first, then the strict DAG-CBOR scanner and
//! serde ([`guild_core::data::decode_canonical`]: a frame has exactly one encoding), then the
//! version and the bounds. Each returns a [`WireError`] saying what was wrong; none panics.
//! Encoding goes through serde too and returns its (never expected) error rather than an empty
//! body.

use guild_core::Cid;
use guild_core::data::{self, DecodeError, EncodeError};
use guild_core::syntax::{Did, Tid};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::repos::{RepoHead, RepoKind};

/// The version of every frame this module writes and reads.
pub const VERSION: u64 = 1;

/// The largest frame a decoder reads. The swarm's request-response limits are smaller (by
/// default 1 MiB per request, 10 MiB per response, 128 KiB per gossip message); this bound
/// holds for any configuration.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// Most heads in one heads reply.
pub const MAX_HEADS: usize = 50_000;

/// Most addresses in one addresses reply.
pub const MAX_ADDRS: usize = 256;

/// Longest reason in a replica verdict, in bytes.
pub const MAX_REASON_BYTES: usize = 2048;

/// The most op bytes in one page of a [`Request::Fetch`] reply: a large collective's log is
/// fetched in pages well under a response's limit (`NetConfig::max_response_bytes`, 10 MiB).
pub const FETCH_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// Why a frame could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Larger than [`MAX_FRAME_BYTES`].
    #[error("a frame of {0} bytes is over the limit")]
    TooLarge(usize),
    /// Not strict DAG-CBOR, or not the shape of the frame (a missing, unknown or mistyped
    /// field, a DID or TID that does not parse, a non-canonical encoding).
    #[error("malformed frame: {0}")]
    Malformed(#[from] DecodeError),
    /// A version this node does not speak.
    #[error("unsupported frame version {0} (this node speaks {VERSION})")]
    Version(u64),
    /// A list over its limit.
    #[error("{field} holds {count} items; the limit is {limit}")]
    TooMany {
        /// The list's field.
        field: &'static str,
        /// How many items it holds.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A value that cannot go on the wire (a head whose DID or revision does not parse, say).
    #[error("cannot encode: {0}")]
    Encode(#[from] EncodeError),
    /// A local value that is not a valid wire value.
    #[error("not a valid {0}")]
    Invalid(&'static str),
}

/// A request on a collective's topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Request {
    /// A driver message between members (a `guild_gov::driver::Message`'s bytes).
    Sync(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A candidate fetching the log with an invite's secret, a page at a time: the reply
    /// holds the ops from position `from` of the responder's order, at most its page size of
    /// them ([`FETCH_PAGE_BYTES`] by default; at least one op); none once `from` is past the
    /// end.
    Fetch {
        /// The invite op's id.
        invite: Cid,
        /// The invite's secret.
        #[serde(with = "serde_bytes")]
        secret: Vec<u8>,
        /// The page's first position in the responder's order (0: the charter).
        #[serde(default, skip_serializing_if = "is_zero")]
        from: u64,
    },
    /// A candidate submitting its join op (the op's bytes).
    Submit(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A member asking for the addresses of the other members' nodes this node is connected
    /// to (so that members on different networks form a mesh, not a star around the inviter).
    Addrs(Flag),
    /// The heads of the repos the responder holds in the collective's space.
    RepoHeads(Flag),
    /// A page of a repo's CAR.
    Repo {
        /// Whose repo.
        did: Did,
        /// The member's public repo rather than its repo in the collective's space.
        #[serde(default, skip_serializing_if = "is_false")]
        public: bool,
        /// Only what is new since this revision.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<Tid>,
        /// The page's first byte in the CAR.
        offset: u64,
    },
    /// A steward's node telling a member's node how it judged the member's repo as a
    /// replica (the steward is the requester, authenticated by its connection's peer id).
    ReplicaVerdict {
        /// Why the repo was refused; absent: accepted again after a refusal.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refused: Option<String>,
    },
}

/// The value of a request that carries nothing (`true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag;

impl Serialize for Flag {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(true)
    }
}

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Flag, D::Error> {
        if bool::deserialize(d)? {
            Ok(Flag)
        } else {
            Err(serde::de::Error::custom("must be true"))
        }
    }
}

impl Request {
    /// Whether the request is one of repo replication's (answered by the repo server).
    pub fn is_repo(&self) -> bool {
        matches!(self, Request::RepoHeads(_) | Request::Repo { .. })
    }

    /// The request's frame.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        encode(&RequestFrame {
            v: VERSION,
            req: self.clone(),
        })
    }

    /// Decodes a request frame from untrusted bytes, and checks its bounds.
    pub fn decode(bytes: &[u8]) -> Result<Request, WireError> {
        let f: RequestFrame = decode(bytes)?;
        version(f.v)?;
        if let Request::ReplicaVerdict {
            refused: Some(reason),
        } = &f.req
        {
            bound(
                "replica verdict reason bytes",
                reason.len(),
                MAX_REASON_BYTES,
            )?;
        }
        Ok(f.req)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestFrame {
    v: u64,
    req: Request,
}

/// A repo head on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    /// The repo's owner.
    pub did: Did,
    /// The member's public repo rather than its repo in the collective's space (absent:
    /// false, the only encoding of false).
    #[serde(default, skip_serializing_if = "is_false")]
    pub public: bool,
    /// The head commit's revision.
    pub rev: Tid,
    /// The head commit's CID.
    pub commit: Cid,
}

impl From<Head> for RepoHead {
    fn from(h: Head) -> RepoHead {
        RepoHead {
            did: h.did,
            kind: if h.public {
                RepoKind::Public
            } else {
                RepoKind::Space
            },
            rev: h.rev.into_string(),
            commit: h.commit,
        }
    }
}

impl TryFrom<&RepoHead> for Head {
    type Error = WireError;

    fn try_from(h: &RepoHead) -> Result<Head, WireError> {
        Ok(Head {
            did: h.did.clone(),
            public: h.kind == RepoKind::Public,
            rev: Tid::parse(&h.rev).map_err(|_| WireError::Invalid("revision in a repo head"))?,
            commit: h.commit,
        })
    }
}

/// One page of a repo's CAR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// The page's bytes.
    #[serde(with = "serde_bytes")]
    pub car: Vec<u8>,
    /// The whole CAR's length.
    pub total: u64,
    /// The head commit the CAR was cut at.
    pub commit: Cid,
    /// Its revision.
    pub rev: Tid,
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Reply {
    /// Ops (a log export for a fetch; empty for a sync or a submitted join).
    Ops(Vec<ByteBuf>),
    /// Multiaddresses (bytes) of other members' nodes.
    Addrs(Vec<ByteBuf>),
    /// The repo heads the responder holds.
    Heads(Vec<Head>),
    /// A page of a repo's CAR.
    Page(Page),
    /// The request was refused, and why (`not-a-member`, `busy`, …).
    Refused(String),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyFrame {
    res: Reply,
    v: u64,
}

/// Why a reply did not bring what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The peer refused, saying why.
    #[error("{0}")]
    Refused(String),
    /// The reply is not a valid frame.
    #[error("malformed response: {0}")]
    Malformed(#[from] WireError),
    /// A valid reply of another kind than the request's.
    #[error("malformed response: {0} expected")]
    Unexpected(&'static str),
}

impl Reply {
    /// A refusal.
    pub fn refused(why: impl Into<String>) -> Reply {
        Reply::Refused(why.into())
    }

    /// The reply's frame.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        encode(&ReplyFrame {
            v: VERSION,
            res: self.clone(),
        })
    }

    /// Decodes a reply frame from untrusted bytes, and checks its bounds.
    pub fn decode(bytes: &[u8]) -> Result<Reply, WireError> {
        let f: ReplyFrame = decode(bytes)?;
        version(f.v)?;
        match &f.res {
            Reply::Heads(h) => bound("heads", h.len(), MAX_HEADS)?,
            Reply::Addrs(a) => bound("addrs", a.len(), MAX_ADDRS)?,
            _ => {}
        }
        Ok(f.res)
    }

    fn read(bytes: &[u8]) -> Result<Reply, ReplyError> {
        match Reply::decode(bytes)? {
            Reply::Refused(e) => Err(ReplyError::Refused(e)),
            r => Ok(r),
        }
    }

    /// Reads a reply that should hold ops.
    pub fn read_ops(bytes: &[u8]) -> Result<Vec<Vec<u8>>, ReplyError> {
        match Reply::read(bytes)? {
            Reply::Ops(ops) => Ok(ops.into_iter().map(ByteBuf::into_vec).collect()),
            _ => Err(ReplyError::Unexpected("ops")),
        }
    }

    /// Reads a reply that should hold addresses (as bytes).
    pub fn read_addrs(bytes: &[u8]) -> Result<Vec<Vec<u8>>, ReplyError> {
        match Reply::read(bytes)? {
            Reply::Addrs(a) => Ok(a.into_iter().map(ByteBuf::into_vec).collect()),
            _ => Err(ReplyError::Unexpected("addresses")),
        }
    }

    /// Reads a reply that should hold repo heads.
    pub fn read_heads(bytes: &[u8]) -> Result<Vec<RepoHead>, ReplyError> {
        match Reply::read(bytes)? {
            Reply::Heads(h) => Ok(h.into_iter().map(RepoHead::from).collect()),
            _ => Err(ReplyError::Unexpected("heads")),
        }
    }

    /// Reads a reply that should hold a page of a CAR.
    pub fn read_page(bytes: &[u8]) -> Result<Page, ReplyError> {
        match Reply::read(bytes)? {
            Reply::Page(p) => Ok(p),
            _ => Err(ReplyError::Unexpected("a page")),
        }
    }
}

/// A repo-head announcement (gossip).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Announcement {
    /// The member's new head.
    #[serde(rename = "repoHead")]
    pub head: Head,
    /// The frame's version.
    pub v: u64,
}

impl Announcement {
    /// The announcement of `head`.
    pub fn new(head: &RepoHead) -> Result<Announcement, WireError> {
        Ok(Announcement {
            head: Head::try_from(head)?,
            v: VERSION,
        })
    }

    /// The announcement's frame.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        encode(self)
    }

    /// Decodes an announcement from untrusted bytes.
    pub fn decode(bytes: &[u8]) -> Result<Announcement, WireError> {
        let a: Announcement = decode(bytes)?;
        version(a.v)?;
        Ok(a)
    }
}

/// What a gossip message on a collective's topic is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gossip {
    /// A repo-head announcement: a map without `$type` that has `repoHead`, well formed or
    /// not.
    Announcement(Result<Announcement, WireError>),
    /// Anything else: for the governance driver (an op, or bytes it refuses).
    Op,
}

/// The top-level keys that tell an announcement from an op.
#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "$type")]
    kind: Option<IgnoredAny>,
    #[serde(rename = "repoHead")]
    head: Option<IgnoredAny>,
}

/// Tells a repo-head announcement from a governance op.
pub fn classify_gossip(bytes: &[u8]) -> Gossip {
    if bytes.len() > MAX_FRAME_BYTES {
        return Gossip::Op;
    }
    match data::decode_as::<Probe>(bytes) {
        Ok(Probe {
            kind: None,
            head: Some(_),
        }) => Gossip::Announcement(Announcement::decode(bytes)),
        _ => Gossip::Op,
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn version(v: u64) -> Result<(), WireError> {
    if v == VERSION {
        Ok(())
    } else {
        Err(WireError::Version(v))
    }
}

fn bound(field: &'static str, count: usize, limit: usize) -> Result<(), WireError> {
    if count > limit {
        return Err(WireError::TooMany {
            field,
            count,
            limit,
        });
    }
    Ok(())
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, WireError> {
    Ok(data::encode_serde(value)?)
}

fn decode<T: serde::de::DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<T, WireError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(WireError::TooLarge(bytes.len()));
    }
    Ok(data::decode_canonical(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use guild_core::Ipld;

    fn head() -> RepoHead {
        RepoHead {
            did: Did::parse("did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK").unwrap(),
            kind: RepoKind::Space,
            rev: "3jzfcijpj2z2a".into(),
            commit: guild_core::cids::cid_for_cbor(b"\xa0"),
        }
    }

    fn requests() -> Vec<Request> {
        let h = Head::try_from(&head()).unwrap();
        vec![
            Request::Sync(vec![1, 2, 3]),
            Request::Fetch {
                invite: h.commit,
                secret: vec![7; 32],
                from: 0,
            },
            Request::Fetch {
                invite: h.commit,
                secret: vec![7; 32],
                from: 4096,
            },
            Request::Submit(vec![0xa0]),
            Request::Addrs(Flag),
            Request::RepoHeads(Flag),
            Request::Repo {
                did: h.did.clone(),
                public: false,
                since: None,
                offset: 0,
            },
            Request::Repo {
                did: h.did.clone(),
                public: true,
                since: None,
                offset: 0,
            },
            Request::Repo {
                did: h.did,
                public: false,
                since: Some(h.rev),
                offset: 4096,
            },
            Request::ReplicaVerdict {
                refused: Some("no space declaration".into()),
            },
            Request::ReplicaVerdict { refused: None },
        ]
    }

    #[test]
    fn a_replica_verdict_reason_is_bounded() {
        let long = Request::ReplicaVerdict {
            refused: Some("x".repeat(MAX_REASON_BYTES + 1)),
        };
        assert!(matches!(
            Request::decode(&long.encode().unwrap()),
            Err(WireError::TooMany { .. })
        ));
        // Absent, not null: `{"replicaVerdict": {}}` is the one encoding of "accepted".
        let null = map(vec![
            ("v", Ipld::Integer(1)),
            (
                "req",
                Ipld::Map(
                    [(
                        "replicaVerdict".to_owned(),
                        Ipld::Map([("refused".to_owned(), Ipld::Null)].into()),
                    )]
                    .into(),
                ),
            ),
        ]);
        assert!(Request::decode(&null).is_err());
    }

    #[test]
    fn a_public_head_round_trips_and_false_has_one_encoding() {
        let mut public = head();
        public.kind = RepoKind::Public;
        let h = Head::try_from(&public).unwrap();
        assert!(h.public);
        let a = Announcement::new(&public).unwrap();
        let back = Announcement::decode(&a.encode().unwrap()).unwrap();
        assert_eq!(RepoHead::from(back.head), public);
        // A space head carries no `public` key; `public: false` spelt out is not canonical.
        let space = Head::try_from(&head()).unwrap();
        let bytes = data::encode_serde(&space).unwrap();
        let v: Ipld = data::decode_as(&bytes).unwrap();
        let Ipld::Map(mut m) = v else { panic!() };
        assert!(!m.contains_key("public"));
        m.insert("public".into(), Ipld::Bool(false));
        let frame = map(vec![("repoHead", Ipld::Map(m)), ("v", Ipld::Integer(1))]);
        assert!(Announcement::decode(&frame).is_err());
    }

    #[test]
    fn requests_round_trip() {
        for r in requests() {
            let bytes = r.encode().unwrap();
            guild_core::cbor::check(&bytes).unwrap();
            assert_eq!(Request::decode(&bytes), Ok(r));
        }
    }

    #[test]
    fn replies_round_trip() {
        let h = Head::try_from(&head()).unwrap();
        for r in [
            Reply::Ops(vec![ByteBuf::from(vec![1u8])]),
            Reply::Addrs(Vec::new()),
            Reply::Heads(vec![h.clone()]),
            Reply::Page(Page {
                car: vec![9; 10],
                total: 10,
                commit: h.commit,
                rev: h.rev,
            }),
            Reply::refused("not-a-member"),
        ] {
            let bytes = r.encode().unwrap();
            assert_eq!(Reply::decode(&bytes), Ok(r));
        }
        let refused = Reply::refused("busy").encode().unwrap();
        assert_eq!(
            Reply::read_heads(&refused),
            Err(ReplyError::Refused("busy".into()))
        );
        let ops = Reply::Ops(Vec::new()).encode().unwrap();
        assert_eq!(
            Reply::read_heads(&ops),
            Err(ReplyError::Unexpected("heads"))
        );
    }

    fn map(entries: Vec<(&str, Ipld)>) -> Vec<u8> {
        data::encode(&Ipld::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        ))
        .unwrap()
    }

    #[test]
    fn malformed_requests_are_refused_with_a_reason() {
        // Another version.
        let other = map(vec![
            ("v", Ipld::Integer(2)),
            (
                "req",
                Ipld::Map([("sync".to_owned(), Ipld::Bytes(vec![1]))].into()),
            ),
        ]);
        assert_eq!(Request::decode(&other), Err(WireError::Version(2)));
        // Unknown kinds and extra keys.
        let unknown = map(vec![
            ("v", Ipld::Integer(1)),
            ("req", Ipld::Map([("nope".to_owned(), Ipld::Null)].into())),
        ]);
        assert!(matches!(
            Request::decode(&unknown),
            Err(WireError::Malformed(_))
        ));
        let extra = map(vec![
            ("v", Ipld::Integer(1)),
            ("x", Ipld::Null),
            (
                "req",
                Ipld::Map([("addrs".to_owned(), Ipld::Bool(true))].into()),
            ),
        ]);
        assert!(matches!(
            Request::decode(&extra),
            Err(WireError::Malformed(_))
        ));
        // A DID that does not parse, a `false` flag, garbage.
        let bad_did = map(vec![
            ("v", Ipld::Integer(1)),
            (
                "req",
                Ipld::Map(
                    [(
                        "repo".to_owned(),
                        Ipld::Map(
                            [
                                ("did".to_owned(), Ipld::String("nope".into())),
                                ("offset".to_owned(), Ipld::Integer(0)),
                            ]
                            .into(),
                        ),
                    )]
                    .into(),
                ),
            ),
        ]);
        assert!(Request::decode(&bad_did).is_err());
        let no = map(vec![
            ("v", Ipld::Integer(1)),
            (
                "req",
                Ipld::Map([("addrs".to_owned(), Ipld::Bool(false))].into()),
            ),
        ]);
        assert!(Request::decode(&no).is_err());
        assert!(Request::decode(b"garbage").is_err());
    }

    #[test]
    fn announcements_round_trip_and_are_not_ops() {
        let h = head();
        let a = Announcement::new(&h).unwrap();
        let bytes = a.encode().unwrap();
        assert_eq!(classify_gossip(&bytes), Gossip::Announcement(Ok(a.clone())));
        assert_eq!(RepoHead::from(a.head.clone()), h);
        let head_ipld = data::decode(&data::encode_serde(&a.head).unwrap()).unwrap();
        // A map with $type is an op, whatever else it holds.
        let op = map(vec![
            ("$type", Ipld::String("coop.guild.membership.join".into())),
            ("repoHead", head_ipld.clone()),
        ]);
        assert_eq!(classify_gossip(&op), Gossip::Op);
        // Malformed: an extra key, no version, a bad rev.
        let extra = map(vec![
            ("repoHead", head_ipld.clone()),
            ("v", Ipld::Integer(1)),
            ("x", Ipld::Null),
        ]);
        assert!(matches!(
            classify_gossip(&extra),
            Gossip::Announcement(Err(_))
        ));
        let unversioned = map(vec![("repoHead", head_ipld)]);
        assert!(matches!(
            classify_gossip(&unversioned),
            Gossip::Announcement(Err(_))
        ));
        let mut bad = h.clone();
        bad.rev = "not-a-tid".into();
        assert_eq!(
            Announcement::new(&bad),
            Err(WireError::Invalid("revision in a repo head"))
        );
        assert_eq!(classify_gossip(b"garbage"), Gossip::Op);
    }
}
