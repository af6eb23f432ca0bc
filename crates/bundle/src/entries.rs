//! A manifest's entries as verification holds them: compactly, since a bundle names a
//! million records. An [`crate::Entry`] is ~336 bytes and two allocations (three inline
//! 64-byte-multihash CIDs, the author's DID and the path); here an entry is 52 bytes: the
//! record's SHA-256 digest, its path in one shared string, and its author, commit and
//! consent op as indexes into tables that hold each distinct value once. The memory, and
//! a fresh process's page faults for it, were the largest cost of verification that is
//! not hashing (BENCHMARKS.md, "Bundles").
//!
//! A record entry's CID must be a CIDv1 of DAG-CBOR with a SHA-256 digest, as every AT
//! record's is (the repository's data model); any other is refused when its page is read.

use guild_core::Cid;
use guild_core::cids::{DAG_CBOR, SHA2_256, cid_from_digest};
use guild_core::syntax::Did;
use rustc_hash::FxHashMap;

use crate::manifest::{EntrySink, Records};
use crate::package::{Key, block_key};

/// One entry, its values by reference to the tables of [`Entries`].
#[derive(Clone, Copy)]
struct Slim {
    /// The record CID's digest.
    digest: [u8; 32],
    /// The path: `paths[path_at .. path_at + path_len]`.
    path_at: u32,
    path_len: u32,
    /// Indexes into `authors` and `cids`.
    author: u32,
    commit: u32,
    consent: u32,
}

/// A manifest's entries, in order (or one page's, with tables of its own, until
/// [`Records::append`] merges it).
#[derive(Default)]
pub(crate) struct Entries {
    items: Vec<Slim>,
    /// The authors, each run once (entries are in author order).
    authors: Vec<Did>,
    /// The commits and consent ops, each once.
    cids: Vec<Cid>,
    interned: FxHashMap<Cid, u32>,
    /// Every entry's path, one after another.
    paths: String,
}

/// One entry, read from [`Entries`].
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    /// Its author.
    pub author: &'a Did,
    /// Its author's index: entries of one author share it (consecutive runs only).
    pub author_id: u32,
    /// Its path, `collection/rkey`.
    pub path: &'a str,
    /// The commit it is proven against.
    pub commit: &'a Cid,
    /// The consent op that covers it.
    pub consent: &'a Cid,
    digest: &'a [u8; 32],
}

impl View<'_> {
    /// The record's CID.
    pub fn cid(&self) -> Cid {
        cid_from_digest(DAG_CBOR, self.digest)
    }

    /// Whether `cid` is the record's CID.
    pub fn is(&self, cid: &Cid) -> bool {
        cid.version() == cid::Version::V1
            && cid.codec() == DAG_CBOR
            && cid.hash().code() == SHA2_256
            && cid.hash().digest() == self.digest
    }
}

fn index(n: usize, what: &str) -> Result<u32, String> {
    u32::try_from(n).map_err(|_| format!("more than 2^32 {what} in one manifest"))
}

impl Entries {
    /// How many entries.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Entry `i`.
    pub(crate) fn get(&self, i: usize) -> Option<View<'_>> {
        let e = self.items.get(i)?;
        let at = e.path_at as usize;
        Some(View {
            author: self.authors.get(e.author as usize)?,
            author_id: e.author,
            path: self.paths.get(at..at + e.path_len as usize)?,
            commit: self.cids.get(e.commit as usize)?,
            consent: self.cids.get(e.consent as usize)?,
            digest: &e.digest,
        })
    }

    /// Every entry, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = View<'_>> {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// The record block keys, in entry order.
    pub(crate) fn key(&self, i: usize) -> Option<Key> {
        self.items
            .get(i)
            .map(|e| block_key(&cid_from_digest(DAG_CBOR, &e.digest)))
    }

    /// The author runs: each author's entries' index range, in order.
    pub(crate) fn runs(&self) -> Vec<std::ops::Range<usize>> {
        let mut runs = Vec::new();
        let mut from = 0;
        for i in 1..=self.items.len() {
            let next = self.items.get(i).map(|e| e.author);
            if next != self.items.get(from).map(|e| e.author) {
                runs.push(from..i);
                from = i;
            }
        }
        runs
    }

    fn intern(&mut self, cid: &Cid) -> Result<u32, String> {
        if let Some(last) = self.cids.last()
            && last == cid
        {
            return index(self.cids.len() - 1, "CIDs");
        }
        if let Some(&i) = self.interned.get(cid) {
            return Ok(i);
        }
        let i = index(self.cids.len(), "CIDs")?;
        self.cids.push(*cid);
        self.interned.insert(*cid, i);
        Ok(i)
    }

    fn author(&mut self, did: &Did) -> Result<u32, String> {
        match self.authors.last() {
            Some(last) if last == did => index(self.authors.len() - 1, "authors"),
            _ => {
                self.authors.push(did.clone());
                index(self.authors.len() - 1, "authors")
            }
        }
    }
}

impl EntrySink for Entries {
    fn entry(
        &mut self,
        author: &Did,
        commit: &Cid,
        path: &str,
        cid: &Cid,
        consent: &Cid,
    ) -> Result<(), String> {
        let digest: [u8; 32] = match cid.hash().digest().try_into() {
            Ok(d)
                if cid.codec() == DAG_CBOR
                    && cid.hash().code() == SHA2_256
                    && cid.version() == cid::Version::V1 =>
            {
                d
            }
            _ => {
                return Err(format!(
                    "the record {cid} of {path} is not a CIDv1 of DAG-CBOR with a SHA-256 \
                     digest, as every AT record's is"
                ));
            }
        };
        let path_at = index(self.paths.len(), "path bytes")?;
        let path_len = index(path.len(), "path bytes")?;
        self.paths.push_str(path);
        let slim = Slim {
            digest,
            path_at,
            path_len,
            author: self.author(author)?,
            commit: self.intern(commit)?,
            consent: self.intern(consent)?,
        };
        self.items.push(slim);
        Ok(())
    }
}

impl Records for Entries {
    type Page = Entries;

    fn reserve(&mut self, n: usize) {
        self.items.reserve(n);
    }

    fn append(&mut self, page: Entries) -> Result<usize, String> {
        // The page's tables, as indexes into ours.
        let authors = page
            .authors
            .iter()
            .map(|d| self.author(d))
            .collect::<Result<Vec<u32>, String>>()?;
        let cids = page
            .cids
            .iter()
            .map(|c| self.intern(c))
            .collect::<Result<Vec<u32>, String>>()?;
        let base = index(self.paths.len(), "path bytes")?;
        index(self.paths.len() + page.paths.len(), "path bytes")?;
        self.paths.push_str(&page.paths);
        let n = page.items.len();
        for e in page.items {
            let (Some(&author), Some(&commit), Some(&consent)) = (
                authors.get(e.author as usize),
                cids.get(e.commit as usize),
                cids.get(e.consent as usize),
            ) else {
                return Err("a page's entry refers outside its tables".into());
            };
            self.items.push(Slim {
                path_at: base + e.path_at,
                author,
                commit,
                consent,
                ..e
            });
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn did(s: &str) -> Did {
        Did::parse(s).unwrap()
    }

    #[test]
    fn pages_merge_into_one_table_of_each() {
        let (a, b) = (did("did:plc:aaaa"), did("did:plc:bbbb"));
        let c1 = guild_core::cids::cid_for_cbor(b"\x01");
        let c2 = guild_core::cids::cid_for_cbor(b"\x02");
        let r = |i: u8| guild_core::cids::cid_for_cbor(&[0x18, i]);
        let mut one = Entries::default();
        one.entry(&a, &c1, "x.y/1", &r(1), &c2).unwrap();
        one.entry(&a, &c1, "x.y/2", &r(2), &c2).unwrap();
        let mut two = Entries::default();
        two.entry(&a, &c1, "x.y/3", &r(3), &c2).unwrap();
        two.entry(&b, &c2, "x.y/1", &r(4), &c1).unwrap();
        let mut all = Entries::default();
        assert_eq!(all.append(one).unwrap(), 2);
        assert_eq!(all.append(two).unwrap(), 2);
        assert_eq!(all.len(), 4);
        assert_eq!(all.authors.len(), 2);
        assert_eq!(all.cids.len(), 2);
        let got: Vec<(String, String, Cid, Cid, Cid)> = all
            .iter()
            .map(|v| {
                (
                    v.author.to_string(),
                    v.path.to_owned(),
                    *v.commit,
                    v.cid(),
                    *v.consent,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (a.to_string(), "x.y/1".into(), c1, r(1), c2),
                (a.to_string(), "x.y/2".into(), c1, r(2), c2),
                (a.to_string(), "x.y/3".into(), c1, r(3), c2),
                (b.to_string(), "x.y/1".into(), c2, r(4), c1),
            ]
        );
        assert_eq!(all.runs(), vec![0..3, 3..4]);
        assert!(all.get(3).unwrap().is(&r(4)));
        assert!(!all.get(3).unwrap().is(&r(3)));
        assert_eq!(all.key(0), Some(block_key(&r(1))));
    }

    #[test]
    fn a_record_cid_of_another_codec_or_hash_is_refused() {
        let raw = Cid::new_v1(0x55, *guild_core::cids::cid_for_cbor(b"\x01").hash());
        let c = guild_core::cids::cid_for_cbor(b"\x01");
        let err = Entries::default()
            .entry(&did("did:plc:aaaa"), &c, "x.y/1", &raw, &c)
            .unwrap_err();
        assert!(err.contains("not a CIDv1 of DAG-CBOR"), "{err}");
    }
}
