//! A small collective built op by op: the founder (steward) `keys[0]`, members `keys[1..]`,
//! a builder with key 20; consent, agreements, proposals and approvals; replica listings.
#![allow(dead_code)]

use guild_bundle::{RecordListing, Replica};
use guild_core::syntax::{AtUri, Datetime, Did, Nsid, RecordKey, Tid};
use guild_core::{Cid, Keypair, cids};
use guild_gov::body::{
    AcceptBody, ApprovalBody, BundleKind, CidRef, ConsentBody, CountersignBody, Cut, OfferBody,
    OpBody, ProposalBody, Scope,
};
use guild_gov::{Inserted, Log, Op, SignedOp};

pub const START: i64 = 1_700_000_000_000_000;
pub const TRAIN: &str = "training-commercial-standard";
pub const EVAL: &str = "eval-public";
pub const TEXT: &str = "coop.guild.data.text";
pub const FILE: &str = "coop.guild.data.file";

pub fn key(n: u8) -> Keypair {
    Keypair::from_secret_bytes(&[n; 32])
}

pub fn did(k: &Keypair) -> Did {
    Did::parse(&k.did()).unwrap()
}

pub fn at(secs: i64) -> Datetime {
    Datetime::from_unix_micros(START + secs * 1_000_000)
}

pub struct Fx {
    pub log: Log,
    pub id: Cid,
    pub keys: Vec<Keypair>,
    pub builder: Keypair,
    /// Seconds since START of the next op.
    pub clock: i64,
}

impl Fx {
    /// A collective of `n` keys (1 steward + n-1 members).
    pub fn new(n: u8) -> Fx {
        let keys: Vec<Keypair> = (1..=n).map(key).collect();
        let (id, ops) = guild_gov::make::invited_collective("Poets", &keys, START).unwrap();
        let log = Log::load(id, ops.iter().map(Vec::as_slice));
        Fx {
            log,
            id,
            keys,
            builder: key(20),
            clock: 100,
        }
    }

    pub fn member(&self, i: usize) -> Did {
        did(&self.keys[i])
    }

    pub fn heads(&self) -> Vec<Cid> {
        self.log.heads()
    }

    /// Writes `body` by `keys[by]` (or the builder when `by` is `None`) after `prev`.
    pub fn write_after(&mut self, body: OpBody, by: Option<usize>, prev: &[Cid]) -> SignedOp {
        self.clock += 1;
        let k = match by {
            Some(i) => &self.keys[i],
            None => &self.builder,
        };
        let op = Op::write(&body, Some(&self.id), k, prev, &at(self.clock)).unwrap();
        assert_eq!(
            self.log.insert(op.clone(), 0),
            Inserted::Applied,
            "{:?}",
            op.kind()
        );
        op
    }

    pub fn write(&mut self, body: OpBody, by: Option<usize>) -> SignedOp {
        let prev = self.heads();
        self.write_after(body, by, &prev)
    }

    fn consent_body(
        &self,
        i: usize,
        template: &str,
        scope: Option<Scope>,
        from: Datetime,
    ) -> ConsentBody {
        let mut b = guild_gov::make::consent(
            self.log.state_ref(),
            &self.member(i),
            &[template.to_owned()],
            &[],
            &from,
        );
        b.scope = scope.map(std::sync::Arc::new);
        b
    }

    /// Member `i` grants `template` on `scope`, effective from `from`.
    pub fn grant_scoped(
        &mut self,
        i: usize,
        template: &str,
        scope: Scope,
        from: Datetime,
    ) -> SignedOp {
        let b = self.consent_body(i, template, Some(scope), from);
        self.write(OpBody::ConsentGrant(Box::new(b)), Some(i))
    }

    /// Member `i` grants `template` on their whole repo, effective now.
    pub fn grant(&mut self, i: usize, template: &str) -> SignedOp {
        self.grant_scoped(i, template, Scope::Repo {}, at(0))
    }

    /// Member `i` revokes `template`, after `prev`.
    pub fn revoke_after(&mut self, i: usize, template: &str, prev: &[Cid]) -> SignedOp {
        let b = self.consent_body(i, template, None, at(self.clock));
        self.write_after(OpBody::ConsentRevoke(Box::new(b)), Some(i), prev)
    }

    pub fn revoke(&mut self, i: usize, template: &str) -> SignedOp {
        let prev = self.heads();
        self.revoke_after(i, template, &prev)
    }

    /// An agreement on `template` offered to the builder, accepted, countersigned: in force.
    pub fn agreement(&mut self, template: &str) -> Cid {
        let offer = self.offer(template);
        let accept = self.write(
            OpBody::AgreementAccept(Box::new(AcceptBody {
                offer: CidRef(offer),
                contact: None,
                evaluation: None,
            })),
            None,
        );
        self.write(
            OpBody::AgreementCountersign(Box::new(CountersignBody {
                offer: CidRef(offer),
                accept: CidRef(*accept.id()),
            })),
            Some(0),
        );
        offer
    }

    /// An offer only (not in force).
    pub fn offer(&mut self, template: &str) -> Cid {
        let terms = guild_gov::make::standard_templates()
            .into_iter()
            .find(|t| t.id == template)
            .unwrap();
        let op = self.write(
            OpBody::AgreementOffer(Box::new(OfferBody {
                builder: did(&self.builder),
                template: template.to_owned(),
                terms,
                expires_at: None,
                note: None,
            })),
            Some(0),
        );
        *op.id()
    }

    /// A proposal of a bundle for `agreement` at the current heads, naming `replicas`.
    pub fn propose(
        &mut self,
        agreement: Cid,
        kind: BundleKind,
        replicas: Vec<guild_gov::body::ReplicaHead>,
    ) -> SignedOp {
        let heads = self.heads();
        let body = OpBody::BundleProposal(Box::new(ProposalBody {
            agreement: CidRef(agreement),
            cut: Cut {
                heads: heads.iter().copied().map(CidRef).collect(),
                replicas,
            },
            kind: kind.into(),
            note: None,
        }));
        self.write_after(body, Some(0), &heads)
    }

    /// The steward approves `manifest` for `proposal`.
    pub fn approve(&mut self, proposal: Cid, manifest: Cid) -> Inserted {
        self.clock += 1;
        let body = OpBody::BundleApproval(Box::new(ApprovalBody {
            proposal: CidRef(proposal),
            manifest: CidRef(manifest),
        }));
        let op = Op::write(
            &body,
            Some(&self.id),
            &self.keys[0],
            &self.heads(),
            &at(self.clock),
        )
        .unwrap();
        self.log.insert(op, 0)
    }
}

pub fn cid_of(s: &str) -> Cid {
    cids::cid_for_cbor(s.as_bytes())
}

pub fn listing(collection: &str, rkey: &str, content: &str) -> RecordListing {
    RecordListing {
        collection: Nsid::parse(collection).unwrap(),
        rkey: RecordKey::parse(rkey).unwrap(),
        cid: cid_of(content),
    }
}

/// Member `i`'s replica: `n` text records and one file record, contents unique to them.
pub fn replica(fx: &Fx, i: usize, n: usize) -> Replica {
    let d = fx.member(i);
    let mut records: Vec<RecordListing> = (0..n)
        .map(|k| listing(TEXT, &format!("3k{k:011}",), &format!("{d} text {k}")))
        .collect();
    records.push(listing(FILE, "3kfile0000000", &format!("{d} file")));
    Replica {
        did: d.clone(),
        rev: Tid::from_parts(START as u64 + i as u64, 0),
        commit: cid_of(&format!("{d} commit")),
        name: Some(format!("Poet {i}")),
        records,
    }
}

pub fn uri(did: &Did, collection: &str, rkey: &str) -> AtUri {
    AtUri::parse(&format!("at://{did}/{collection}/{rkey}")).unwrap()
}
