//! The checks of guild-net's fuzz targets (`fuzz/fuzz_targets/net_*.rs`), shared with the
//! regression replay (`cargo test -p guild-net --test fuzz_regressions`), and their seeds.
//!
//! Each decoder reads untrusted bytes and must never panic; what it accepts re-encodes to
//! exactly the input (a frame has one encoding), and the typed readers agree with it.
#![allow(dead_code)]

use guild_core::Cid;
use guild_core::syntax::{Did, Tid};
use guild_net::collective::wire::{
    Announcement, Flag, Gossip, Head, Page, Reply, ReplyError, Request, classify_gossip,
};
use serde_bytes::ByteBuf;

/// `net_request`: a request frame.
pub fn request(input: &[u8]) {
    if let Ok(req) = Request::decode(input) {
        let again = req.encode().expect("a decoded request encodes");
        assert_eq!(again, input, "a decoded request re-encodes to its input");
    }
}

/// `net_reply`: a reply frame, and the typed readers of each kind.
pub fn reply(input: &[u8]) {
    let decoded = Reply::decode(input);
    let readers = [
        Reply::read_ops(input).map(|_| "ops"),
        Reply::read_addrs(input).map(|_| "addrs"),
        Reply::read_heads(input).map(|_| "heads"),
        Reply::read_page(input).map(|_| "page"),
    ];
    match &decoded {
        Ok(r) => {
            let again = r.encode().expect("a decoded reply encodes");
            assert_eq!(again, input, "a decoded reply re-encodes to its input");
            let accepted = readers.iter().filter(|x| x.is_ok()).count();
            let expected = usize::from(!matches!(r, Reply::Refused(_)));
            assert_eq!(
                accepted, expected,
                "exactly the reader of its kind accepts it"
            );
        }
        Err(_) => {
            for x in readers {
                assert!(
                    matches!(x, Err(ReplyError::Malformed(_))),
                    "a reader accepted what decode refused"
                );
            }
        }
    }
}

/// `net_gossip`: a gossip message on a collective's topic, told apart as an announcement or
/// an op.
pub fn gossip(input: &[u8]) {
    match classify_gossip(input) {
        Gossip::Announcement(Ok(a)) => {
            let again = a.encode().expect("a decoded announcement encodes");
            assert_eq!(
                again, input,
                "a decoded announcement re-encodes to its input"
            );
        }
        Gossip::Announcement(Err(_)) => {
            assert!(Announcement::decode(input).is_err());
        }
        Gossip::Op => {
            assert!(
                Announcement::decode(input).is_err(),
                "an announcement taken for an op"
            );
        }
    }
}

fn head() -> Head {
    Head {
        did: Did::parse("did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK").unwrap(),
        public: false,
        rev: Tid::parse("3jzfcijpj2z2a").unwrap(),
        commit: guild_core::cids::cid_for_cbor(b"\xa0"),
    }
}

fn cid() -> Cid {
    guild_core::cids::cid_for_cbor(b"\xa1")
}

/// Valid frames of each target, as `(target, name, bytes)`.
pub fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let h = head();
    let requests = [
        ("sync", Request::Sync(vec![0xa1, 0x62, 0x6f, 0x70, 0x41, 0])),
        (
            "fetch",
            Request::Fetch {
                invite: cid(),
                secret: vec![7; 32],
                from: 0,
            },
        ),
        (
            "fetch-page",
            Request::Fetch {
                invite: cid(),
                secret: vec![7; 32],
                from: 1024,
            },
        ),
        ("submit", Request::Submit(vec![0xa0])),
        ("addrs", Request::Addrs(Flag)),
        ("repo-heads", Request::RepoHeads(Flag)),
        (
            "repo-since",
            Request::Repo {
                did: h.did.clone(),
                public: false,
                since: Some(h.rev.clone()),
                offset: 4096,
            },
        ),
        (
            "repo-public",
            Request::Repo {
                did: h.did.clone(),
                public: true,
                since: None,
                offset: 0,
            },
        ),
        (
            "replica-refused",
            Request::ReplicaVerdict {
                refused: Some("no space declaration".into()),
            },
        ),
        (
            "replica-accepted",
            Request::ReplicaVerdict { refused: None },
        ),
    ];
    let replies = [
        ("ops", Reply::Ops(vec![ByteBuf::from(vec![0xa0]); 2])),
        (
            "addrs",
            Reply::Addrs(vec![ByteBuf::from(vec![4, 127, 0, 0, 1])]),
        ),
        ("heads", Reply::Heads(vec![h.clone()])),
        (
            "page",
            Reply::Page(Page {
                car: vec![1, 2, 3],
                total: 10,
                commit: h.commit,
                rev: h.rev.clone(),
            }),
        ),
        ("refused", Reply::refused("not-a-member")),
    ];
    let mut out = Vec::new();
    for (name, r) in requests {
        out.push(("net_request", name, r.encode().unwrap()));
    }
    for (name, r) in replies {
        out.push(("net_reply", name, r.encode().unwrap()));
    }
    let a = Announcement { head: h, v: 1 };
    out.push(("net_gossip", "announcement", a.encode().unwrap()));
    out
}
