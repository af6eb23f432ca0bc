//! Consent: each (member, template) register is a last-writer-wins register written only by
//! the member, ordered by the member's `rev`, a revoke winning a tie; a revocation voids the
//! bundles built on the consent it withdraws unless they were sealed before it.

use std::sync::Arc;

use guild_core::Cid;
use guild_core::syntax::Datetime;
use guild_core::syntax::Did;
use imbl::OrdMap;

use super::{Causal, Charter, ConsentKey, Reason, State};
use crate::body::{ConsentBody, Scope};
use crate::table::{Digest, digest_of, op_digest, op_id};

/// A member's revoke ops for one template, in ascending order, each once. A shared sorted
/// list rather than an `OrdSet`: most members revoke a template once or twice, and an
/// `imbl` set allocates a whole B-tree node even for one id (~1 KB per register in the
/// 50 000-member history, 104 MB at the peak of its replay). A state's copy shares the list;
/// a write to a shared list copies it ([`Arc::make_mut`]), one not shared grows in place.
/// Each op is held by its 32-byte digest (an op id is a CIDv1 DAG-CBOR SHA-256, so digest
/// order is the ids' byte order), a third of an in-memory CID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revokes(Arc<Vec<Digest>>);

impl Revokes {
    /// Adds a revoke op; false if it was there.
    pub fn insert(&mut self, id: Cid) -> bool {
        let d = op_digest(&id);
        match self.0.binary_search(&d) {
            Ok(_) => false,
            Err(at) => {
                let list = Arc::make_mut(&mut self.0);
                // One more place, not the four a first insert reserves.
                list.reserve_exact(1);
                list.insert(at, d);
                true
            }
        }
    }

    /// Whether the revoke op is one of these.
    pub fn contains(&self, id: &Cid) -> bool {
        digest_of(id).is_some_and(|d| self.0.binary_search(&d).is_ok())
    }

    /// The revoke ops, in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = Cid> + '_ {
        self.0.iter().map(op_id)
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A member's consent registers by template, sorted, shared between states until written.
type MemberRegisters = Arc<Vec<(Arc<str>, Consent)>>;

/// The consent registers, by member and then template: one small shared list per member
/// rather than one map entry per (member, template). Most members write a register or two, so
/// a write copies its member's short list and a path of a map of members (24-byte entries)
/// instead of a B-tree leaf of 64 (key, register) pairs of 128 bytes; in the 50 000-member
/// history the registers took ~46 MB of the state and its checkpoints as one map.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Consents {
    by_member: OrdMap<Did, MemberRegisters>,
    len: usize,
}

impl Consents {
    /// The register of (member, template).
    pub fn get(&self, key: &ConsentKey) -> Option<&Consent> {
        self.register(key.0.as_str(), &key.1)
    }

    /// The register of `did` for `template`.
    pub fn register(&self, did: &str, template: &str) -> Option<&Consent> {
        let list = self.by_member.get(did)?;
        list.binary_search_by(|(t, _)| (**t).cmp(template))
            .ok()
            .and_then(|i| list.get(i))
            .map(|(_, c)| c)
    }

    /// How many registers there are.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// One member's registers, by template.
    pub fn of<'a>(
        &'a self,
        did: &str,
    ) -> impl Iterator<Item = ((&'a Did, &'a Arc<str>), &'a Consent)> + 'a {
        self.by_member
            .get_key_value(did)
            .into_iter()
            .flat_map(|(d, list)| list.iter().map(move |(t, c)| ((d, t), c)))
    }

    /// Every register, by member and then template.
    pub fn iter(&self) -> impl Iterator<Item = ((&Did, &Arc<str>), &Consent)> + '_ {
        self.by_member
            .iter()
            .flat_map(|(d, list)| list.iter().map(move |(t, c)| ((d, t), c)))
    }

    /// Writes `written` to the register of `key` if it wins over the register's value (see
    /// [`State::apply_consent`]).
    fn write(&mut self, key: &ConsentKey, written: Consent) {
        // One search of the member map when the member has registers (`imbl`'s `entry` makes
        // two or three, each ~16 DID comparisons in a 50 000-member collective).
        let Some(list) = self.by_member.get_mut(&key.0) else {
            self.by_member
                .insert(key.0.clone(), Arc::new(vec![(key.1.clone(), written)]));
            self.len += 1;
            return;
        };
        match list.binary_search_by(|(t, _)| t.cmp(&key.1)) {
            // Last writer wins by rev; at equal revs a revoke wins, then the larger CID.
            // (Op ids are all CIDv1 DAG-CBOR SHA-256: digest order is their byte order.)
            Ok(i) => {
                let wins = list.get(i).is_some_and(|(_, c)| {
                    (written.rev, !written.granted, written.op) > (c.rev, !c.granted, c.op)
                });
                if wins && let Some((_, c)) = Arc::make_mut(list).get_mut(i) {
                    *c = written;
                }
            }
            Err(i) => {
                let list = Arc::make_mut(list);
                list.reserve_exact(1);
                list.insert(i, (key.1.clone(), written));
                self.len += 1;
            }
        }
    }
}

/// One (member, template) consent register.
#[derive(Debug, Clone, PartialEq)]
pub struct Consent {
    /// Whether consent is given (a grant) or withdrawn (a revoke).
    pub granted: bool,
    /// The winning write's revision.
    pub rev: u64,
    /// The scope of the winning write (`None` for a revoke without scope: everything).
    pub scope: Option<Arc<Scope>>,
    /// The winning write's `effectiveFrom`.
    pub effective_from: Option<Datetime>,
    /// The digest of the op that wrote the register ([`Consent::op`]): an op id is a CIDv1
    /// DAG-CBOR SHA-256, and its 32-byte digest is a third of the in-memory CID's 96 bytes,
    /// in every register of every checkpoint.
    op: Digest,
}

impl Consent {
    /// The op that wrote the register.
    pub fn op(&self) -> Cid {
        op_id(&self.op)
    }
}

impl State {
    /// The member's consent for a template, if they are a member and it is granted.
    pub fn effective_consent(&self, did: &str, template: &str) -> Option<&Consent> {
        if !self.members.contains_key(did) {
            return None;
        }
        self.consents.register(did, template).filter(|c| c.granted)
    }

    /// The members whose consent covers a template, with the op that granted it.
    pub fn consenting(&self, template: &str) -> std::collections::BTreeMap<Did, Cid> {
        self.consents
            .iter()
            .filter(|&((did, t), c)| {
                **t == *template && c.granted && self.members.contains_key(did.as_str())
            })
            .map(|((did, _), c)| (did.clone(), c.op()))
            .collect()
    }

    pub(super) fn authorize_consent(
        &self,
        author: &str,
        b: &ConsentBody,
        charter: &Charter,
    ) -> Result<(), Reason> {
        self.member(author)?;
        for t in &b.templates {
            if !charter.templates.contains_key(&**t) {
                return Err(Reason::UnknownTemplate(t.to_string()));
            }
        }
        Ok(())
    }

    /// A write's `rev` must be above the register's in the op's causal past.
    pub(super) fn check_consent(&self, author: &Did, b: &ConsentBody) -> Result<(), Reason> {
        for t in &b.templates {
            if let Some(c) = self.consents.register(author.as_str(), t)
                && b.rev <= c.rev
            {
                return Err(Reason::StaleRev {
                    rev: b.rev,
                    current: c.rev,
                });
            }
        }
        Ok(())
    }

    pub(super) fn apply_consent(
        &mut self,
        author: Did,
        id: Cid,
        granted: bool,
        b: &ConsentBody,
        causal: &dyn Causal,
    ) {
        // Every op id is one (`SignedOp` computes it from the op's bytes).
        let Some(op) = digest_of(&id) else {
            return;
        };
        let scope = b.scope.clone();
        for t in &b.templates {
            let key: ConsentKey = (author.clone(), t.clone());
            let written = Consent {
                granted,
                rev: b.rev,
                scope: scope.clone(),
                effective_from: Some(b.effective_from.clone()),
                op,
            };
            self.consents.write(&key, written);
            if !granted {
                self.revoke(key, id, causal);
            }
        }
    }

    /// Records a revocation and voids every bundle built on this member's consent to the
    /// template that was not sealed before it: a revocation wins over a concurrent use.
    fn revoke(&mut self, key: ConsentKey, id: Cid, causal: &dyn Causal) {
        // One search when the register was revoked before (`entry` makes two or three).
        match self.revocations.get_mut(&key) {
            Some(revokes) => {
                revokes.insert(id);
            }
            None => {
                let mut revokes = Revokes::default();
                revokes.insert(id);
                self.revocations.insert(key.clone(), revokes);
            }
        }
        let (author, template) = (&key.0, &*key.1);
        let ids: Vec<Cid> = self.bundles.keys().copied().collect();
        for bid in ids {
            let Some(b) = self.bundles.get(&bid) else {
                continue;
            };
            if b.voided.is_some() || b.template != template || !b.contributors.contains_key(author)
            {
                continue;
            }
            let sealed_before = b
                .sealed
                .as_ref()
                .is_some_and(|(_, approvals)| approvals.iter().all(|a| causal.is_ancestor(a, &id)));
            if !sealed_before && let Some(b) = self.bundles.get_mut(&bid) {
                b.voided = Some(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{Consent, Consents, Revokes};
    use guild_core::cids::cid_for_cbor;
    use guild_core::syntax::Did;

    fn register(rev: u64, granted: bool, op: u8) -> Consent {
        Consent {
            granted,
            rev,
            scope: None,
            effective_from: None,
            op: [op; 32],
        }
    }

    #[test]
    fn consents_keep_the_winning_write_per_register_and_copies_do_not_see_later_writes() {
        let (a, b) = (
            Did::parse("did:key:a").unwrap(),
            Did::parse("did:key:b").unwrap(),
        );
        let (t1, t2): (Arc<str>, Arc<str>) = (Arc::from("t1"), Arc::from("t2"));
        let mut c = Consents::default();
        c.write(&(b.clone(), t1.clone()), register(1, true, 1));
        c.write(&(a.clone(), t2.clone()), register(1, true, 2));
        c.write(&(a.clone(), t1.clone()), register(2, true, 3));
        let copy = c.clone();
        // A lower rev loses; at an equal rev a revoke wins.
        c.write(&(a.clone(), t1.clone()), register(1, false, 9));
        c.write(&(b.clone(), t1.clone()), register(1, false, 4));
        assert_eq!(c.len(), 3);
        assert_eq!(c.register("did:key:a", "t1"), Some(&register(2, true, 3)));
        assert_eq!(c.register("did:key:b", "t1"), Some(&register(1, false, 4)));
        assert_eq!(c.get(&(a.clone(), t2.clone())), Some(&register(1, true, 2)));
        assert_eq!(c.register("did:key:b", "t2"), None);
        let order: Vec<(String, String)> = c
            .iter()
            .map(|((d, t), _)| (d.to_string(), t.to_string()))
            .collect();
        assert_eq!(
            order,
            [
                ("did:key:a", "t1"),
                ("did:key:a", "t2"),
                ("did:key:b", "t1")
            ]
            .map(|(d, t)| (d.to_owned(), t.to_owned()))
        );
        assert_eq!(
            copy.register("did:key:b", "t1"),
            Some(&register(1, true, 1))
        );
        assert_eq!(copy.len(), 3);
        let of_a: Vec<&str> = c.of("did:key:a").map(|((_, t), _)| &**t).collect();
        assert_eq!(of_a, ["t1", "t2"]);
        assert_eq!(c.of("did:key:c").count(), 0);
    }

    #[test]
    fn revokes_stay_sorted_once_each_and_copies_do_not_see_later_writes() {
        // Op ids: CIDv1 DAG-CBOR SHA-256.
        let ids: Vec<_> = (0u8..5).map(|i| cid_for_cbor(&[i])).collect();
        let mut r = Revokes::default();
        for id in [ids[3], ids[1], ids[4], ids[1]] {
            r.insert(id);
        }
        assert_eq!(r.len(), 3, "a second insert of an id adds nothing");
        let mut sorted = vec![ids[1], ids[3], ids[4]];
        sorted.sort();
        assert_eq!(r.iter().collect::<Vec<_>>(), sorted);
        let copy = r.clone();
        assert!(r.insert(ids[0]));
        assert!(r.contains(&ids[0]) && !copy.contains(&ids[0]));
        assert_eq!(copy.len(), 3);
    }
}
