//! Offline verification of a bundle file (`docs/bundle-format.md`): everything a model
//! builder must trust, from the file alone, in one sequential pass over it.
//!
//! The file is read once, front to back, in large chunks (any `Read`: a file, a pipe, a
//! download in progress); every block is hashed against its CID as it passes, on every
//! core. The manifest, the governance ops and the proofs (commits and MST nodes) are kept;
//! record blocks are hashed and dropped. The layout is canonical (§2): the verifier checks
//! that every block is where the writer puts it, so that one manifest gives one file (and
//! a file's SHA-256 names it), and it needs no index of the file.
//!
//! What is checked, in order (the first failure is returned, whichever core found it):
//! 1. the file: a CAR v1 with one root, every block matching its CID, no block twice;
//! 2. the manifest: the first block is the root, the next ones its record pages in the
//!    order it names them; each decodes strictly and is valid against its lexicon, the pages
//!    full but the last, their entries adding up to `recordCount`, in strictly increasing
//!    (author, path) order;
//! 3. the governance ops: each decodes and is signed by its author, and the fold accepts it
//!    (guild-gov's authorisation against its causal past), inserted in file order from the
//!    collective's charter (its CID is the manifest's `collective`): stewards, elections and
//!    consent come from the fold, never from trust;
//! 4. the seal: in the folded state the manifest's proposal is sealed by a quorum of
//!    stewards' approvals with exactly the root as manifest, and the file carries no op
//!    outside the causal past of those approvals;
//! 5. each author's records: the commit is the cut's replica head of the author, signed by
//!    the author; the proof blocks under it form a well-formed partial MST (every key at the
//!    layer its hash gives, keys in order within the bounds of their subtree), which holds
//!    each of the author's entries' CIDs at its path (the inclusion proofs, all of an
//!    author's at once, in one walk of the tree in key order); the record blocks are exactly
//!    the entries' CIDs, once each, in CID-byte order;
//! 6. consent and the licence: each record is selected at the proposal's cut, by the same
//!    judge the stewards' selection uses (guild-license's `may`, the charter's works), with
//!    the consent op the entry names; and the manifest's root rebuilt from the agreement, the
//!    cut, the checked entries and the deterministic publication is byte for byte the root;
//! 7. every block is in its canonical place: the proofs in the order the writer emits them
//!    (per entry, its commit then the MST path from the root, each block once), no block
//!    that nothing refers to.
//!
//! The file is read ahead on a thread of its own. The work is spread over the cores with
//! rayon: the blocks of each chunk are hashed in parallel, the record pages decoded in
//! parallel, and each author's tree walked (its MST nodes decoded as the walk reaches them)
//! and its consent judged in parallel with the hashing of the record blocks. The entries are
//! held compactly (`crate::entries`): a million of them take ~80 MB. The
//! whole file's SHA-256 (for the Croissant file's `sha256`) is computed on a thread of its
//! own when asked for ([`VerifyOptions::file_sha256`]); it is not needed to trust the
//! bundle, since the canonical layout leaves no byte free.

use std::io::Read;
use std::ops::Range;
use std::sync::mpsc::{Receiver, Sender, SyncSender};

use guild_core::cids::{self, CidCheckError};
use guild_core::syntax::Did;
use guild_core::{Cid, Ipld};
use guild_gov::body::BundleKind;
use guild_gov::{Inserted, Log, SignedOp};
use guild_repo::mst::{DecodedNode, decode_node, key_height};
use guild_repo::verify_commit;
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::cut::CutState;
use crate::entries::{Entries, View};
use crate::manifest::{self, Credit, Manifest, ManifestParams};
use crate::package::{Key, block_key, hex};
use crate::select::{Exclusion, Selector};
use guild_license::{Consent, ConsentScope};

/// The largest block read (a record is at most 1 MB; MST nodes and commits are smaller).
const MAX_BLOCK: usize = 2 * 1024 * 1024;
/// The largest CAR header read.
const MAX_HEADER: usize = 64 * 1024;
/// How much is read at a time.
const CHUNK: usize = 8 << 20;

/// Why a bundle file was refused. Each names what failed and where, on one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Reading the input failed.
    #[error("reading the bundle: {0}")]
    Io(String),
    /// The file is not a well-formed CAR v1 (truncated, a bad length, a bad header).
    #[error("not a valid CAR file at byte {offset}: {reason}")]
    Car {
        /// Where.
        offset: u64,
        /// What.
        reason: String,
    },
    /// The header must name exactly one root, the manifest.
    #[error("the CAR header names {0} roots; a bundle has exactly one (its manifest)")]
    Roots(usize),
    /// A block's bytes do not hash to its CID (or the CID is not CIDv1/SHA-256/dag-cbor|raw).
    #[error("block at byte {offset}: {reason}")]
    BlockHash {
        /// Where the section starts.
        offset: u64,
        /// The mismatch.
        reason: String,
    },
    /// A block appears twice.
    #[error("block {cid} at byte {offset} appears twice")]
    DuplicateBlock {
        /// The block.
        cid: Cid,
        /// Where its second copy starts.
        offset: u64,
    },
    /// The first block is not the root.
    #[error("the first block is {found}, not the root {root}")]
    RootNotFirst {
        /// The root.
        root: Cid,
        /// The first block.
        found: Cid,
    },
    /// The root does not decode as a manifest or breaks its lexicon.
    #[error("manifest {cid}: {reason}")]
    Manifest {
        /// The root.
        cid: Cid,
        /// Why.
        reason: String,
    },
    /// A block of the governance section does not decode as a signed op (or its signature
    /// does not verify).
    #[error("governance op {op}: {reason}")]
    OpInvalid {
        /// The block.
        op: Cid,
        /// Why.
        reason: String,
    },
    /// The fold refused an op (not authorised against its causal past, a forged election
    /// result, an approval by a non-steward, …) or the op's parents are not before it.
    #[error("governance op {op} ({kind}) refused: {reason}")]
    OpRefused {
        /// The op.
        op: Cid,
        /// Its kind (NSID).
        kind: String,
        /// Why.
        reason: String,
    },
    /// The collective's charter (the op whose CID is the manifest's `collective`) is not in
    /// the bundle.
    #[error("the charter {0} of the manifest's collective is not in the bundle")]
    NoCharter(Cid),
    /// The folded log does not seal the root for the manifest's proposal.
    #[error("proposal {proposal}: {reason}")]
    NotSealed {
        /// The proposal.
        proposal: Cid,
        /// What the fold found instead.
        reason: String,
    },
    /// An op outside the causal past of the sealing approvals.
    #[error("governance op {0} is not in the causal past of the sealing approvals")]
    ExtraOp(Cid),
    /// A block the verification needs is not in the file.
    #[error("block {cid} ({what}) is missing, for record {path} of {author}")]
    MissingBlock {
        /// The block.
        cid: Cid,
        /// What it is.
        what: &'static str,
        /// The record's author.
        author: Did,
        /// The record's path.
        path: String,
    },
    /// A record's commit is not its author's replica head in the cut, or not signed by the
    /// author.
    #[error("commit {commit} of record {path} of {author}: {reason}")]
    Commit {
        /// The commit.
        commit: Cid,
        /// The author.
        author: Did,
        /// The record's path.
        path: String,
        /// Why.
        reason: String,
    },
    /// A record's inclusion proof fails (a bad node, or the tree does not hold the record's
    /// CID at its path).
    #[error("inclusion proof of record {path} of {author}: {reason}")]
    Proof {
        /// The author.
        author: Did,
        /// The record's path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The selection cannot be re-run (the cut, the agreement, its terms).
    #[error("re-running the selection: {0}")]
    Selection(String),
    /// A record is not covered by its author's consent at the cut, or by another consent op
    /// than the manifest names.
    #[error("record {path} of {author}: {reason}")]
    Consent {
        /// The author.
        author: Did,
        /// The record's path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The manifest rebuilt from the proven records, the cut and the agreement differs from
    /// the root.
    #[error("manifest field {field} is not what the agreement, the cut and the records give")]
    ManifestField {
        /// The first differing field (`licence.odrl`, `records[3].cid`, …).
        field: String,
    },
    /// A per-licensee canary record the manifest lists is not among the record blocks.
    #[error("licensee canary {index} ({cid}) is missing from the record blocks")]
    MissingCanary {
        /// Its index in the manifest's `licenseeCanaries`.
        index: usize,
        /// Its CID.
        cid: Cid,
    },
    /// A block no check used.
    #[error("block {0} is not part of the bundle (nothing refers to it)")]
    UnusedBlock(Cid),
    /// A block out of its place in the canonical order (`docs/bundle-format.md` §2).
    #[error("block {cid} at byte {offset} is out of place: {reason}")]
    Order {
        /// The block.
        cid: Cid,
        /// Where its section starts.
        offset: u64,
        /// What the order wants there.
        reason: String,
    },
}

/// What a verified bundle is.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The manifest's CID (the bundle's id).
    pub manifest: Cid,
    /// The collective.
    pub collective: Cid,
    /// The agreement (its offer op).
    pub agreement: Cid,
    /// The agreement's builder.
    pub builder: Did,
    /// The licence template's id.
    pub template: String,
    /// The template's plain-language summary, from the terms.
    pub summary: String,
    /// Training or evaluation.
    pub kind: BundleKind,
    /// Records.
    pub records: u64,
    /// The members credited, with their record counts.
    pub credits: Vec<Credit>,
    /// The members' contribution estimates, by member then method (the manifest's).
    pub estimates: Vec<crate::manifest::Estimate>,
    /// The stewards whose approvals sealed it, in DID order.
    pub stewards: Vec<Did>,
    /// The sealing approval ops.
    pub approvals: Vec<Cid>,
    /// The per-licensee canary records' CIDs (the manifest's `licenseeCanaries`).
    pub licensee_canaries: Vec<Cid>,
    /// Governance ops carried.
    pub ops: u64,
    /// Blocks in the file.
    pub blocks: u64,
    /// The file's size.
    pub bytes: u64,
    /// SHA-256 of the file, when [`VerifyOptions::file_sha256`] asked for it.
    pub sha256: Option<[u8; 32]>,
}

impl Report {
    /// The file's SHA-256 in lower-case hex, when it was computed.
    pub fn sha256_hex(&self) -> Option<String> {
        self.sha256.as_ref().map(|d| hex(d))
    }
}

/// How to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Also compute the whole file's SHA-256 (on a thread of its own): what the bundle's
    /// Croissant file and feed event name it by. Not needed to trust the bundle.
    pub file_sha256: bool,
}

impl Default for VerifyOptions {
    /// With the file's SHA-256.
    fn default() -> VerifyOptions {
        VerifyOptions { file_sha256: true }
    }
}

#[derive(Deserialize)]
struct Header {
    roots: Vec<Cid>,
    version: u64,
}

fn io(e: std::io::Error) -> VerifyError {
    VerifyError::Io(e.to_string())
}

/// A varint at the start of `buf`: `Ok(None)` when `buf` ends inside it (read more),
/// else its value and length. Refuses a non-minimal or overlong one.
fn varint(buf: &[u8], at: u64) -> Result<Option<(u64, usize)>, VerifyError> {
    let bad = || VerifyError::Car {
        offset: at,
        reason: "a length is not a minimal varint".into(),
    };
    let mut v: u64 = 0;
    for i in 0..10 {
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        if i == 9 && b > 1 {
            return Err(bad());
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if i > 0 && b == 0 {
                return Err(bad());
            }
            return Ok(Some((v, i + 1)));
        }
    }
    Err(bad())
}

/// The whole file's SHA-256, computed on a thread of its own from copies of what is read
/// (the buffers go back to be used again).
struct FileHasher {
    tx: Option<SyncSender<Vec<u8>>>,
    spare: Receiver<Vec<u8>>,
    handle: Option<std::thread::JoinHandle<Sha256>>,
}

impl FileHasher {
    fn start() -> Result<FileHasher, VerifyError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let (back, spare) = std::sync::mpsc::channel::<Vec<u8>>();
        let handle = std::thread::Builder::new()
            .name("bundle-sha256".into())
            .spawn(move || {
                let mut h = Sha256::new();
                for chunk in rx {
                    h.update(&chunk);
                    let _ = back.send(chunk);
                }
                h
            })
            .map_err(|e| {
                VerifyError::Io(format!("cannot start the thread hashing the file: {e}"))
            })?;
        Ok(FileHasher {
            tx: Some(tx),
            spare,
            handle: Some(handle),
        })
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<(), VerifyError> {
        let mut chunk = self.spare.try_recv().unwrap_or_default();
        chunk.clear();
        chunk.extend_from_slice(bytes);
        match &self.tx {
            Some(tx) if tx.send(chunk).is_ok() => Ok(()),
            _ => Err(VerifyError::Io(
                "the thread hashing the file stopped".into(),
            )),
        }
    }

    fn finish(mut self) -> Result<[u8; 32], VerifyError> {
        drop(self.tx.take());
        let h = self
            .handle
            .take()
            .ok_or_else(|| VerifyError::Io("the file's hash was already taken".into()))?
            .join()
            .map_err(|_| VerifyError::Io("the thread hashing the file failed".into()))?;
        Ok(h.finalize().into())
    }
}

/// One block of the file, as found in the read buffer.
struct Section {
    /// Where the section (its length) starts in the file.
    offset: u64,
    cid: Cid,
    /// The block's bytes, in the buffer.
    data: Range<usize>,
}

/// Room kept before each chunk's bytes, for the unparsed end of the previous chunk (at most
/// one section, which is at most a block and its CID and length).
const HEAD: usize = MAX_BLOCK + 256;
/// The first chunk read (they double up to [`CHUNK`], so that a small file takes small
/// buffers).
const FIRST_CHUNK: usize = 64 << 10;

/// The file's bytes, read ahead on a thread of their own (the kernel's copy of each chunk
/// overlaps the work on the previous one). Each chunk comes as a buffer whose bytes start
/// at [`HEAD`]; used buffers go back through `spare`. The channel closes at the end of
/// the input.
struct Source {
    chunks: Receiver<std::io::Result<Vec<u8>>>,
    spare: Sender<Vec<u8>>,
}

impl Source {
    /// Starts the reading thread in `scope`.
    fn start<'scope, R: Read + Send + 'scope>(
        scope: &'scope std::thread::Scope<'scope, '_>,
        input: R,
    ) -> Result<Source, VerifyError> {
        let (tx, chunks) = std::sync::mpsc::sync_channel(1);
        let (spare, used) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("bundle-read".into())
            .spawn_scoped(scope, move || read_ahead(input, &tx, &used))
            .map_err(|e| {
                VerifyError::Io(format!("cannot start the thread reading the file: {e}"))
            })?;
        Ok(Source { chunks, spare })
    }
}

/// Reads `input` to its end in chunks of [`FIRST_CHUNK`] doubling to [`CHUNK`] bytes, each
/// into a buffer at [`HEAD`] (a used one from `used` when there is one), and sends them;
/// stops at the end, at an error (sent), or when the receiver is gone.
fn read_ahead<R: Read>(
    mut input: R,
    tx: &SyncSender<std::io::Result<Vec<u8>>>,
    used: &Receiver<Vec<u8>>,
) {
    let mut size = FIRST_CHUNK;
    loop {
        // A used buffer's bytes are overwritten, not zeroed again; a new one is zeroed by
        // the allocator (fresh pages: the room before the bytes costs nothing until used).
        let mut buf = match used.try_recv() {
            Ok(b) if b.len() >= HEAD + size => b,
            _ => vec![0u8; HEAD + size],
        };
        let mut n = 0;
        while n < size {
            let Some(into) = buf.get_mut(HEAD + n..HEAD + size) else {
                break;
            };
            match input.read(into) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
        buf.truncate(HEAD + n);
        if n > 0 && tx.send(Ok(buf)).is_err() {
            return;
        }
        if n < size {
            return;
        }
        size = (size * 2).min(CHUNK);
    }
}

/// The file, read in chunks into one buffer, cut into sections.
struct Stream {
    source: Source,
    buf: Vec<u8>,
    /// The unparsed bytes are `buf[start..]`; `buf[start]` is at `offset` in the file.
    start: usize,
    offset: u64,
    eof: bool,
    hasher: Option<FileHasher>,
}

impl Stream {
    fn new(source: Source, file_sha256: bool) -> Result<Stream, VerifyError> {
        Ok(Stream {
            source,
            buf: Vec::new(),
            start: 0,
            offset: 0,
            eof: false,
            hasher: if file_sha256 {
                Some(FileHasher::start()?)
            } else {
                None
            },
        })
    }

    fn available(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or(&[])
    }

    /// Takes chunks until `want` bytes are unparsed or the input ends. The unparsed end of
    /// the buffer moves into the next chunk's room before its bytes (or, when it is larger
    /// than that room, the chunk's bytes are appended to it).
    fn fill(&mut self, want: usize) -> Result<(), VerifyError> {
        while self.buf.len() - self.start < want && !self.eof {
            let mut chunk = match self.source.chunks.recv() {
                Ok(Ok(chunk)) => chunk,
                Ok(Err(e)) => return Err(io(e)),
                Err(_) => {
                    self.eof = true;
                    continue;
                }
            };
            if let Some(h) = &mut self.hasher {
                h.feed(chunk.get(HEAD..).unwrap_or(&[]))?;
            }
            let left = self.buf.get(self.start..).unwrap_or(&[]);
            let room = HEAD.checked_sub(left.len()).and_then(|from| {
                let into = chunk.get_mut(from..HEAD)?;
                into.copy_from_slice(left);
                Some(from)
            });
            let used = match room {
                Some(from) => {
                    self.start = from;
                    std::mem::replace(&mut self.buf, chunk)
                }
                None => {
                    self.buf.drain(..self.start);
                    self.start = 0;
                    self.buf.extend_from_slice(chunk.get(HEAD..).unwrap_or(&[]));
                    chunk
                }
            };
            if used.capacity() > 0 {
                // (the reading thread may have stopped: then the buffer is dropped)
                let _ = self.source.spare.send(used);
            }
        }
        Ok(())
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.offset += n as u64;
    }

    /// The CAR header's roots.
    fn header(&mut self) -> Result<Vec<Cid>, VerifyError> {
        self.fill(10)?;
        let (hlen, vlen) = varint(self.available(), 0)?.ok_or(VerifyError::Car {
            offset: 0,
            reason: if self.available().is_empty() {
                "empty input".into()
            } else {
                "truncated in a length".into()
            },
        })?;
        let hlen = usize::try_from(hlen).unwrap_or(usize::MAX);
        if hlen > MAX_HEADER {
            return Err(VerifyError::Car {
                offset: 0,
                reason: format!("a header of {hlen} bytes"),
            });
        }
        self.fill(vlen + hlen)?;
        let Some(bytes) = self.available().get(vlen..vlen + hlen) else {
            return Err(VerifyError::Car {
                offset: 0,
                reason: "truncated in the header".into(),
            });
        };
        let header: Header = guild_core::data::decode_as(bytes).map_err(|e| VerifyError::Car {
            offset: 0,
            reason: format!("the header: {e}"),
        })?;
        if header.version != 1 {
            return Err(VerifyError::Car {
                offset: 0,
                reason: format!("version {} (a bundle is CAR v1)", header.version),
            });
        }
        self.consume(vlen + hlen);
        Ok(header.roots)
    }

    /// The next sections (at least one, about a chunk's worth), each block checked against
    /// its CID (in parallel); empty at the end of the input. The blocks' bytes stay valid
    /// in `self.buf` until the next call.
    fn batch(&mut self) -> Result<Vec<Section>, VerifyError> {
        self.fill(CHUNK)?;
        let mut out = Vec::new();
        let mut at = self.start;
        loop {
            let file_at = self.offset + (at - self.start) as u64;
            let rest = self.buf.get(at..).unwrap_or(&[]);
            if rest.is_empty() {
                if out.is_empty() && !self.eof {
                    self.fill(1)?;
                    at = self.start;
                    continue;
                }
                break;
            }
            let section = match varint(rest, file_at)? {
                None => None,
                Some((len, vlen)) => {
                    let len = usize::try_from(len).unwrap_or(usize::MAX);
                    if len > MAX_BLOCK + 128 {
                        return Err(VerifyError::Car {
                            offset: file_at,
                            reason: format!("a section of {len} bytes"),
                        });
                    }
                    rest.get(vlen..vlen + len).map(|s| (vlen, len, s))
                }
            };
            let Some((vlen, len, bytes)) = section else {
                // Incomplete in the buffer.
                if !out.is_empty() {
                    break;
                }
                if self.eof {
                    return Err(VerifyError::Car {
                        offset: file_at,
                        reason: "truncated in a block".into(),
                    });
                }
                // One section larger than what is buffered: read on (`fill` keeps
                // `buf[start..]`, and `at` is `start` here).
                let need = rest.len() + CHUNK;
                self.fill(need.min(MAX_BLOCK + 256))?;
                at = self.start;
                continue;
            };
            let mut cursor = std::io::Cursor::new(bytes);
            let cid = Cid::read_bytes(&mut cursor).map_err(|e| VerifyError::Car {
                offset: file_at,
                reason: format!("a block's CID: {e}"),
            })?;
            let cid_len = usize::try_from(cursor.position()).unwrap_or(usize::MAX);
            let cid_bytes = bytes.get(..cid_len).unwrap_or(&[]);
            if !guild_core::cbor::cid_encoding_is(&cid, cid_bytes) {
                return Err(VerifyError::Car {
                    offset: file_at,
                    reason: "a block's CID is not in its canonical encoding".into(),
                });
            }
            let data_at = at + vlen + cid_len;
            out.push(Section {
                offset: file_at,
                cid,
                data: data_at..at + vlen + len,
            });
            at += vlen + len;
            if at - self.start >= CHUNK {
                break;
            }
        }
        let buf = &self.buf;
        let checked: Vec<Result<(), VerifyError>> = out
            .par_iter()
            .map(|s| {
                let data = buf.get(s.data.clone()).unwrap_or(&[]);
                cids::verify_block(&s.cid, data).map_err(|e: CidCheckError| {
                    VerifyError::BlockHash {
                        offset: s.offset,
                        reason: e.to_string(),
                    }
                })
            })
            .collect();
        // The first failure in file order, whichever core found it.
        checked.into_iter().collect::<Result<Vec<()>, _>>()?;
        let used = at - self.start;
        self.consume(used);
        Ok(out)
    }

    fn bytes_of(&self, s: &Section) -> &[u8] {
        self.buf.get(s.data.clone()).unwrap_or(&[])
    }
}

/// The first differing field of two data-model values, as a path.
fn first_difference(a: &Ipld, b: &Ipld, path: &str) -> Option<String> {
    match (a, b) {
        (Ipld::Map(x), Ipld::Map(y)) => {
            for (k, va) in x {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match y.get(k) {
                    None => return Some(p),
                    Some(vb) => {
                        if let Some(d) = first_difference(va, vb, &p) {
                            return Some(d);
                        }
                    }
                }
            }
            y.keys().find(|k| !x.contains_key(*k)).map(|k| {
                if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                }
            })
        }
        (Ipld::List(x), Ipld::List(y)) => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                if let Some(d) = first_difference(va, vb, &format!("{path}[{i}]")) {
                    return Some(d);
                }
            }
            (x.len() != y.len()).then(|| format!("{path} (length)"))
        }
        _ => (a != b).then(|| path.to_owned()),
    }
}

/// The first differing field of two manifests' root blocks (their records are equal: the
/// verifier builds the expected one from the file's entries).
fn root_difference(a: &Manifest, b: &Manifest) -> Result<String, crate::BundleError> {
    let strip = |m: &Manifest| Manifest {
        records: Vec::new(),
        ..m.clone()
    };
    let (x, y) = (strip(a).to_ipld()?, strip(b).to_ipld()?);
    Ok(first_difference(&x, &y, "").unwrap_or_else(|| "(encoding)".to_owned()))
}

/// Where the first pass is.
enum Phase {
    /// Nothing read: the next block is the root.
    Root,
    /// The root is read; its pages come next.
    Pages(Box<manifest::Reading<Entries>>),
    /// The governance ops, up to the first entry's commit.
    Ops,
    /// The commits and MST nodes, up to the first record block.
    Proofs,
}

/// A proof block kept from the first pass: a commit, or an MST node (decoded when a walk
/// reaches it, on the core the record blocks' hashing leaves), its bytes in the proofs'
/// arena.
struct Kept {
    offset: u64,
    cid: Cid,
    bytes: Range<usize>,
    commit: bool,
}

/// Decodes the pages of this chunk taken so far (`pages`: their sections), on every core,
/// into `reading`, in order.
fn decode_pages(
    buf: &[u8],
    batch: &[Section],
    pages: &mut Vec<usize>,
    reading: &mut manifest::Reading<Entries>,
    root: &Cid,
) -> Result<(), VerifyError> {
    let decoded: Vec<Result<Entries, String>> = pages
        .par_iter()
        .filter_map(|&i| batch.get(i))
        .map(|s| {
            let mut page = Entries::default();
            let data = buf.get(s.data.clone()).unwrap_or(&[]);
            manifest::decode_page_into(&s.cid, data, true, &mut page).map(|_| page)
        })
        .collect();
    pages.clear();
    for entries in decoded {
        entries
            .and_then(|e| reading.push_decoded(e))
            .map_err(|reason| VerifyError::Manifest { cid: *root, reason })?;
    }
    Ok(())
}

/// Verifies the bundle file read from `input`, with the file's SHA-256 (see the module
/// documentation for what is checked). Reads it once, sequentially, in large chunks: hand
/// it the `File` itself, not a `BufReader`.
pub fn verify_bundle<R: Read + Send>(input: R) -> Result<Report, VerifyError> {
    verify_bundle_with(input, &VerifyOptions::default())
}

/// [`verify_bundle`], with options.
pub fn verify_bundle_with<R: Read + Send>(
    input: R,
    options: &VerifyOptions,
) -> Result<Report, VerifyError> {
    std::thread::scope(|scope| {
        let source = Source::start(scope, input)?;
        verify_stream(Stream::new(source, options.file_sha256)?)
    })
}

/// [`verify_bundle_with`], reading from `stream`.
fn verify_stream(mut stream: Stream) -> Result<Report, VerifyError> {
    let roots = stream.header()?;
    let [root] = roots[..] else {
        return Err(VerifyError::Roots(roots.len()));
    };

    // Pass 1, up to the record blocks: the manifest, the governance ops, the proofs. The
    // pages and the proofs of each chunk are decoded on every core, from the read buffer.
    let mut phase = Phase::Root;
    let mut manifest: Option<Manifest> = None;
    // The manifest's entries, once read (its `records` stays empty).
    let mut entries = Entries::default();
    let mut manifest_bytes = Vec::new();
    let mut page_cids: Vec<Cid> = Vec::new();
    // The entries' record keys, sorted, once each, with an entry of each: the record
    // section's exact order.
    let mut expected: Vec<(Key, usize)> = Vec::new();
    let mut commits: FxHashSet<Cid> = FxHashSet::default();
    let mut ops: Vec<(u64, Cid, Vec<u8>)> = Vec::new();
    let mut proofs: Vec<Kept> = Vec::new();
    // The proof blocks' bytes, one after another.
    let mut arena: Vec<u8> = Vec::new();
    let mut blocks = 0u64;
    // The manifest's blocks, where they are.
    let mut early: Vec<(u64, Cid)> = Vec::new();
    // Sections read but not taken by pass 1 (the first record blocks).
    let mut rest: Vec<Section> = Vec::new();
    loop {
        let batch = stream.batch()?;
        if batch.is_empty() {
            break;
        }
        // This chunk's pages and proof blocks, to decode together.
        let mut pages: Vec<usize> = Vec::new();
        let mut proof_sections: Vec<usize> = Vec::new();
        let mut split = batch.len();
        for (i, s) in batch.iter().enumerate() {
            let data = stream.bytes_of(s);
            if matches!(phase, Phase::Proofs)
                && expected
                    .first()
                    .is_some_and(|(k, _)| *k == block_key(&s.cid))
            {
                split = i;
                break;
            }
            blocks += 1;
            match &mut phase {
                Phase::Root => {
                    if s.cid != root {
                        return Err(VerifyError::RootNotFirst { root, found: s.cid });
                    }
                    let bad = |reason: String| VerifyError::Manifest { cid: root, reason };
                    let reading = manifest::Reading::root(&s.cid, data, true).map_err(bad)?;
                    page_cids = reading.page_cids().to_vec();
                    manifest_bytes = data.to_vec();
                    early.push((s.offset, s.cid));
                    phase = Phase::Pages(Box::new(reading));
                }
                Phase::Pages(reading) => {
                    reading
                        .expect_page(&s.cid)
                        .map_err(|reason| VerifyError::Manifest { cid: root, reason })?;
                    early.push((s.offset, s.cid));
                    pages.push(i);
                }
                Phase::Ops => {
                    let first = entries.get(0).map(|e| *e.commit);
                    if first == Some(s.cid) {
                        phase = Phase::Proofs;
                        proof_sections.push(i);
                    } else {
                        ops.push((s.offset, s.cid, data.to_vec()));
                    }
                }
                Phase::Proofs => proof_sections.push(i),
            }
            if let Phase::Pages(reading) = &mut phase
                && reading.next_page().is_none()
            {
                // The last page: the manifest is needed now (its first commit ends the
                // governance section, its records the proofs).
                decode_pages(&stream.buf, &batch, &mut pages, reading, &root)?;
                let Phase::Pages(reading) = std::mem::replace(&mut phase, Phase::Ops) else {
                    continue;
                };
                let (m, read) = reading
                    .finish_parts()
                    .map_err(|reason| VerifyError::Manifest { cid: root, reason })?;
                entries = read;
                let e = &entries;
                let disorder =
                    (1..e.len())
                        .into_par_iter()
                        .find_first(|&i| match (e.get(i - 1), e.get(i)) {
                            (Some(a), Some(b)) if a.author_id == b.author_id => {
                                a.path.as_bytes() >= b.path.as_bytes()
                            }
                            (Some(a), Some(b)) => a.author >= b.author,
                            _ => true,
                        });
                if let Some((Some(a), Some(b))) = disorder.map(|i| (e.get(i - 1), e.get(i))) {
                    return Err(VerifyError::Manifest {
                        cid: root,
                        reason: format!(
                            "entry {} of {} follows {} of {}: entries are in strictly \
                             increasing (author, path) order",
                            b.path, b.author, a.path, a.author
                        ),
                    });
                }
                expected = (0..e.len())
                    .into_par_iter()
                    .filter_map(|i| Some((e.key(i)?, i)))
                    .collect();
                // The per-licensee canaries' blocks are among the records (numbered after
                // the entries); which canaries they must be is checked with the root.
                let n = e.len();
                expected.extend(
                    m.licensee_canaries
                        .iter()
                        .enumerate()
                        .map(|(j, c)| (block_key(c), n + j)),
                );
                expected.par_sort_unstable();
                expected.dedup_by(|a, b| a.0 == b.0);
                // (the entries come in runs of one author, each of one commit)
                let mut last = None;
                for v in e.iter() {
                    if last != Some(v.commit) {
                        commits.insert(*v.commit);
                        last = Some(v.commit);
                    }
                }
                manifest = Some(m);
            }
        }
        if let Phase::Pages(reading) = &mut phase {
            decode_pages(&stream.buf, &batch, &mut pages, reading, &root)?;
        }
        // The proof blocks, as bytes: a commit, or what a tree walk decodes as an MST node
        // (a block that is not one fails only if a tree refers to it).
        for s in proof_sections.iter().filter_map(|&i| batch.get(i)) {
            let at = arena.len();
            arena.extend_from_slice(stream.bytes_of(s));
            proofs.push(Kept {
                offset: s.offset,
                cid: s.cid,
                bytes: at..arena.len(),
                commit: commits.contains(&s.cid),
            });
        }
        if split < batch.len() {
            rest = batch.into_iter().skip(split).collect();
            break;
        }
    }
    let manifest = match (manifest, phase) {
        (Some(m), _) => m,
        (None, Phase::Root) => {
            return Err(VerifyError::Car {
                offset: stream.offset,
                reason: "no block (the manifest is missing)".into(),
            });
        }
        (None, Phase::Pages(reading)) => {
            return Err(VerifyError::Manifest {
                cid: root,
                reason: format!(
                    "the file ends before the record page {}",
                    reading.next_page().map(Cid::to_string).unwrap_or_default()
                ),
            });
        }
        (None, _) => {
            return Err(VerifyError::Manifest {
                cid: root,
                reason: "not read".into(),
            });
        }
    };
    if rest.is_empty()
        && let Some(first) = entries.get(0)
    {
        // The file ended before the records.
        let (cid, what) = if proofs.is_empty() {
            (*first.commit, "commit")
        } else {
            let i = expected.first().map_or(0, |(_, i)| *i);
            (entries.get(i).unwrap_or(first).cid(), "record")
        };
        let e = entries
            .iter()
            .find(|e| e.is(&cid) || *e.commit == cid)
            .unwrap_or(first);
        return Err(VerifyError::MissingBlock {
            cid,
            what,
            author: e.author.clone(),
            path: e.path.to_owned(),
        });
    }

    // The governance ops, folded from the charter.
    let collective = manifest.collective.0;
    let mut log = Log::new(collective);
    for (_, cid, bytes) in &ops {
        let cid = *cid;
        let op = SignedOp::decode(bytes).map_err(|e| VerifyError::OpInvalid {
            op: cid,
            reason: e.to_string(),
        })?;
        let refused = |reason: String| VerifyError::OpRefused {
            op: cid,
            kind: op.kind().nsid().to_owned(),
            reason,
        };
        match log.insert(op.clone(), 0) {
            Inserted::Applied => {}
            Inserted::Duplicate => return Err(refused("a second copy".into())),
            Inserted::Rejected(reason) => return Err(refused(reason.to_string())),
            Inserted::Pending { missing } => {
                let list: Vec<String> = missing.iter().map(Cid::to_string).collect();
                return Err(refused(format!(
                    "its parents {} are not before it in the bundle",
                    list.join(", ")
                )));
            }
        }
    }
    if !log.contains(&collective) {
        return Err(VerifyError::NoCharter(collective));
    }

    // The seal.
    let proposal = manifest.proposal.0;
    let not_sealed = |reason: String| VerifyError::NotSealed { proposal, reason };
    let state = log.state_ref();
    let bundle = state
        .bundles
        .get(&proposal)
        .ok_or_else(|| not_sealed("no such proposal in the bundle's governance ops".into()))?;
    let approvals = match &bundle.sealed {
        Some((m, approvals)) if *m == root => approvals.clone(),
        Some((m, _)) => {
            return Err(not_sealed(format!(
                "a quorum sealed manifest {m}, not the root {root}"
            )));
        }
        None => {
            let agreeing = bundle
                .approvals
                .values()
                .filter(|(_, m)| *m == root)
                .count();
            return Err(not_sealed(match bundle.voided {
                Some(r) => format!("voided by the revocation {r}"),
                None => format!(
                    "not sealed: {agreeing} steward approval(s) of the root, {} needed",
                    state.quorum()
                ),
            }));
        }
    };
    let past = log.ancestors(&approvals);
    if let Some((_, extra, _)) = ops.iter().find(|(_, c, _)| !past.contains(c)) {
        return Err(VerifyError::ExtraOp(*extra));
    }
    let mut stewards: Vec<Did> = approvals
        .iter()
        .filter_map(|a| log.get(a))
        .map(|op| op.author_did().clone())
        .collect();
    stewards.sort();

    // The selection's agreement-level half at the proposal's cut, and the replicas.
    let selection_err = |e: crate::BundleError| VerifyError::Selection(e.to_string());
    let proposal_op = log.get(&proposal).ok_or_else(|| {
        not_sealed("the proposal op is not in the bundle's governance ops".into())
    })?;
    let (request, cut_heads, mut params) =
        ManifestParams::from_proposal(&proposal_op).map_err(selection_err)?;
    params.estimates = manifest.estimates.clone();
    let cut = CutState::at(&log, &cut_heads).map_err(selection_err)?;
    let selector = Selector::new(&log, &cut, &request).map_err(selection_err)?;
    let mut selection = selector.empty();
    let names: FxHashMap<&Did, &str> = manifest
        .credits
        .iter()
        .map(|c| (&c.did, c.name.as_str()))
        .collect();
    if let Some(w) = manifest
        .cut
        .replicas
        .windows(2)
        .find(|w| w[0].did >= w[1].did)
    {
        return Err(VerifyError::Selection(format!(
            "the cut's replicas are not in strictly increasing DID order at {}",
            w[1].did
        )));
    }
    let mut admitted: FxHashSet<&Did> = FxHashSet::default();
    for h in &manifest.cut.replicas {
        let name = names.get(&h.did).copied();
        if selector.admit(&mut selection, &h.did, &h.rev, h.commit.0, name) {
            admitted.insert(&h.did);
        }
    }
    let heads: FxHashMap<&Did, &guild_gov::body::ReplicaHead> =
        manifest.cut.replicas.iter().map(|r| (&r.did, r)).collect();

    // The proofs, decoded on every core (a block that is not an MST node fails here and
    // fails only if a tree refers to it).
    let index: FxHashMap<Key, usize> = proofs
        .iter()
        .enumerate()
        .map(|(i, k)| (block_key(&k.cid), i))
        .collect();
    if index.len() != proofs.len() {
        let mut seen = FxHashSet::default();
        if let Some(k) = proofs.iter().find(|k| !seen.insert(block_key(&k.cid))) {
            return Err(VerifyError::DuplicateBlock {
                cid: k.cid,
                offset: k.offset,
            });
        }
    }
    // Every block before the records, to refuse a record block that repeats one of them.
    let mut earlier: FxHashSet<Key> = index.keys().copied().collect();
    earlier.extend(early.iter().map(|(_, c)| block_key(c)));
    earlier.extend(ops.iter().map(|(_, c, _)| block_key(c)));
    if earlier.len() != early.len() + ops.len() + proofs.len() {
        // A page, an op or a proof block twice (the sections keep each other's order).
        let mut seen = FxHashSet::default();
        let all = early
            .iter()
            .copied()
            .chain(ops.iter().map(|(o, c, _)| (*o, *c)))
            .chain(proofs.iter().map(|k| (k.offset, k.cid)));
        for (offset, cid) in all {
            if !seen.insert(block_key(&cid)) {
                return Err(VerifyError::DuplicateBlock { cid, offset });
            }
        }
    }

    // Pass 1, the records (hashed on every core), beside the authors' trees and consent.
    let (tail, authors) = rayon::join(
        || {
            read_records(
                &mut stream,
                rest,
                &expected,
                &earlier,
                &entries,
                &manifest.licensee_canaries,
                &root,
            )
        },
        || {
            let tree = Tree {
                proofs: &proofs,
                arena: &arena,
                index: &index,
            };
            check_authors(&entries, &heads, &admitted, &selector, &tree)
        },
    );
    let (record_blocks, bytes) = tail?;
    blocks += record_blocks;
    let sequences = authors?;
    check_proof_order(&proofs, &sequences)?;
    let sha256 = match stream.hasher.take() {
        Some(h) => Some(h.finish()?),
        None => None,
    };

    // The root rebuilt from the agreement, the cut and the checked entries.
    let runs = entries.runs();
    let counts = runs
        .iter()
        .filter_map(|r| Some((entries.get(r.start)?.author, r.len() as u64)));
    let rebuilt = Manifest::build_counted(&selection, counts, entries.len(), &params)
        .map_err(selection_err)?;
    let (_, rebuilt_bytes) = rebuilt
        .encode_root_with(entries.len() as u64, page_cids.clone())
        .map_err(selection_err)?;
    if rebuilt_bytes != manifest_bytes {
        let field = root_difference(&manifest, &rebuilt).map_err(|e| VerifyError::Manifest {
            cid: root,
            reason: e.to_string(),
        })?;
        return Err(VerifyError::ManifestField { field });
    }

    Ok(Report {
        manifest: root,
        collective,
        agreement: manifest.agreement.0,
        builder: selection.builder.clone(),
        template: selection.template.clone(),
        summary: guild_license::text::summary(&selection.contract),
        kind: selection.kind,
        records: entries.len() as u64,
        credits: manifest.credits.clone(),
        estimates: manifest.estimates.clone(),
        stewards,
        approvals,
        licensee_canaries: manifest.licensee_canaries.clone(),
        ops: ops.len() as u64,
        blocks,
        bytes,
        sha256,
    })
}

/// The record section: exactly the entries' record CIDs and the licensee canaries' CIDs
/// (`expected`: their keys, sorted, once each, with an entry of each, a canary numbered
/// after the entries), in that order, none repeating an earlier block.
/// Returns the blocks read and the file's size. A record missing is reported before a
/// block that is not one (a record's bytes changed under a CID of their own are both).
fn read_records(
    stream: &mut Stream,
    first: Vec<Section>,
    expected: &[(Key, usize)],
    earlier: &FxHashSet<Key>,
    entries: &Entries,
    canaries: &[Cid],
    root: &Cid,
) -> Result<(u64, u64), VerifyError> {
    // A merge of the file's blocks with the expected keys: `next` is the first expected
    // key not passed yet; a key passed without its block is missing.
    let mut next = 0usize;
    let mut missing: Option<usize> = None;
    let mut last: Option<Key> = None;
    let mut unused: Option<Cid> = None;
    let mut blocks = 0u64;
    let mut batch = first;
    // The records' keys that are also earlier blocks' (none in a valid file): the blocks
    // that are not records are looked up among the earlier ones as they come.
    let repeats: FxHashSet<Key> = earlier
        .iter()
        .filter(|k| expected.binary_search_by(|(e, _)| e.cmp(k)).is_ok())
        .copied()
        .collect();
    let repeated = |key: &Key| !repeats.is_empty() && repeats.contains(key);
    let duplicate = |s: &Section| VerifyError::DuplicateBlock {
        cid: s.cid,
        offset: s.offset,
    };
    while !batch.is_empty() {
        for s in &batch {
            let key = block_key(&s.cid);
            blocks += 1;
            if repeated(&key) || last == Some(key) {
                return Err(duplicate(s));
            }
            if last.is_some_and(|l| l > key) {
                if expected.binary_search_by(|(k, _)| k.cmp(&key)).is_err() {
                    if earlier.contains(&key) {
                        return Err(duplicate(s));
                    }
                    // Not a record of the manifest: reported after any missing record.
                    unused.get_or_insert(s.cid);
                    continue;
                }
                return Err(VerifyError::Order {
                    cid: s.cid,
                    offset: s.offset,
                    reason: "the record blocks are in the order of their CIDs' bytes".into(),
                });
            }
            last = Some(key);
            while expected.get(next).is_some_and(|(k, _)| *k < key) {
                missing.get_or_insert(next);
                next += 1;
            }
            match expected.get(next) {
                Some((k, _)) if *k == key => next += 1,
                _ if earlier.contains(&key) => return Err(duplicate(s)),
                _ => {
                    unused.get_or_insert(s.cid);
                }
            }
        }
        batch = stream.batch()?;
    }
    if next < expected.len() {
        missing.get_or_insert(next);
    }
    if let Some(i) = missing
        && let Some((key, e)) = expected.get(i)
    {
        return Err(match entries.get(*e) {
            Some(e) => VerifyError::MissingBlock {
                cid: e.cid(),
                what: "record",
                author: e.author.clone(),
                path: e.path.to_owned(),
            },
            None => VerifyError::MissingCanary {
                index: e.saturating_sub(entries.len()),
                cid: canaries
                    .iter()
                    .find(|c| block_key(c) == *key)
                    .copied()
                    .unwrap_or(*root),
            },
        });
    }
    if let Some(cid) = unused {
        return Err(VerifyError::UnusedBlock(cid));
    }
    Ok((blocks, stream.offset))
}

/// An author's checks that failed: the first about the commit or a proof (check 5), the
/// first about consent (check 6).
#[derive(Default)]
struct Failures {
    proof: Option<VerifyError>,
    consent: Option<VerifyError>,
}

/// Every author's commit, tree and consent, in parallel. Returns each author's proof
/// blocks in the order the writer emits them (the commit, then the tree's nodes in
/// pre-order), authors in manifest order; or the first failure (every proof failure before
/// any consent failure, each in manifest order).
#[allow(clippy::too_many_arguments)]
fn check_authors(
    entries: &Entries,
    heads: &FxHashMap<&Did, &guild_gov::body::ReplicaHead>,
    admitted: &FxHashSet<&Did>,
    selector: &Selector<'_>,
    tree: &Tree<'_>,
) -> Result<Vec<Vec<Cid>>, VerifyError> {
    // The authors' runs (the entries are in author order).
    let runs = entries.runs();
    let results: Vec<(Vec<Cid>, Failures)> = runs
        .par_iter()
        .map(|run| {
            let run = Run {
                entries,
                range: run.clone(),
            };
            check_author(&run, heads, admitted, selector, tree)
        })
        .collect();
    let mut sequences = Vec::with_capacity(results.len());
    let mut consent = None;
    for (seq, f) in results {
        if let Some(e) = f.proof {
            return Err(e);
        }
        if consent.is_none() {
            consent = f.consent;
        }
        sequences.push(seq);
    }
    match consent {
        Some(e) => Err(e),
        None => Ok(sequences),
    }
}

/// The proof blocks.
struct Tree<'a> {
    proofs: &'a [Kept],
    arena: &'a [u8],
    index: &'a FxHashMap<Key, usize>,
}

impl<'a> Tree<'a> {
    /// A commit's bytes (`None`: not in the file, or not a commit).
    fn bytes(&self, cid: &Cid) -> Option<&'a [u8]> {
        let i = *self.index.get(&block_key(cid))?;
        let k = self.proofs.get(i).filter(|k| k.commit)?;
        self.arena.get(k.bytes.clone())
    }

    /// An MST node, decoded (`None`: not in the file).
    fn node(&self, cid: &Cid) -> Option<Result<DecodedNode, String>> {
        let i = *self.index.get(&block_key(cid))?;
        let k = self.proofs.get(i)?;
        if k.commit {
            return Some(Err(format!("{cid} is a commit, not an MST node")));
        }
        let bytes = self.arena.get(k.bytes.clone()).unwrap_or(&[]);
        Some(decode_node(cid, bytes).map_err(|e| e.to_string()))
    }
}

/// One author's entries.
struct Run<'e> {
    entries: &'e Entries,
    range: Range<usize>,
}

impl<'e> Run<'e> {
    /// Entry `i` (an index into all the entries) if it is in the run.
    fn get(&self, i: usize) -> Option<View<'e>> {
        if self.range.contains(&i) {
            self.entries.get(i)
        } else {
            None
        }
    }

    fn iter(&self) -> impl Iterator<Item = View<'e>> + '_ {
        self.range.clone().filter_map(|i| self.entries.get(i))
    }

    fn first(&self) -> Option<View<'e>> {
        self.get(self.range.start)
    }

    fn last(&self) -> Option<View<'e>> {
        self.range.end.checked_sub(1).and_then(|i| self.get(i))
    }
}

/// One author's run of entries: the commit, the tree, consent.
fn check_author(
    run: &Run<'_>,
    heads: &FxHashMap<&Did, &guild_gov::body::ReplicaHead>,
    admitted: &FxHashSet<&Did>,
    selector: &Selector<'_>,
    tree: &Tree<'_>,
) -> (Vec<Cid>, Failures) {
    let mut f = Failures::default();
    let Some(first) = run.first() else {
        return (Vec::new(), f);
    };
    let author = first.author;
    let commit = *first.commit;
    let commit_err = |e: View<'_>, reason: String| VerifyError::Commit {
        commit: *e.commit,
        author: e.author.clone(),
        path: e.path.to_owned(),
        reason,
    };
    let Some(head) = heads.get(author) else {
        f.proof = Some(commit_err(
            first,
            "the author has no replica head in the cut".into(),
        ));
        return (Vec::new(), f);
    };
    if let Some(e) = run.iter().find(|e| *e.commit != head.commit.0) {
        f.proof = Some(commit_err(
            e,
            format!("the cut's replica head of the author is {}", head.commit.0),
        ));
        return (Vec::new(), f);
    }
    let Some(bytes) = tree.bytes(&commit) else {
        f.proof = Some(VerifyError::MissingBlock {
            cid: commit,
            what: "commit",
            author: author.clone(),
            path: first.path.to_owned(),
        });
        return (Vec::new(), f);
    };
    let c = match verify_commit(&commit, bytes) {
        Ok(c) => c,
        Err(err) => {
            f.proof = Some(commit_err(first, err.to_string()));
            return (Vec::new(), f);
        }
    };
    if c.did != author.as_str() {
        f.proof = Some(commit_err(
            first,
            format!("signed by {}, not the author", c.did),
        ));
        return (Vec::new(), f);
    }
    if c.rev != head.rev {
        f.proof = Some(commit_err(
            first,
            format!(
                "revision {} is not the cut's {}",
                c.rev.as_str(),
                head.rev.as_str()
            ),
        ));
        return (Vec::new(), f);
    }
    let mut walk = Walk {
        tree,
        run,
        next: run.range.start,
        order: vec![commit],
    };
    if let Err(e) = walk.visit(c.data, None, None, None) {
        f.proof = Some(e);
        return (Vec::new(), f);
    }
    // Consent: each record judged at the cut as the stewards' selection judges it.
    let consent_err = |e: View<'_>, reason: String| VerifyError::Consent {
        author: e.author.clone(),
        path: e.path.to_owned(),
        reason,
    };
    if !admitted.contains(author) {
        f.consent = Some(consent_err(
            first,
            "the author's consent to the template is not granted at the cut".into(),
        ));
        return (walk.order, f);
    }
    let consent = selector.consent(author);
    // Under a grant of the whole repository or of collections (not of listed records) the
    // judge's answer depends on a record only by its collection (the author, the agreement
    // and the cut are the run's): judged once per collection, the entries being in path
    // order.
    let by_collection = !matches!(
        &consent.0,
        Consent::Granted {
            scope: ConsentScope::Records(_),
            ..
        }
    );
    let mut judged: Option<(guild_core::syntax::Nsid, Result<Cid, Exclusion>)> = None;
    for e in run.iter() {
        let (collection, rkey) = match guild_repo::parse_path(e.path) {
            Ok(p) => p,
            Err(err) => {
                f.consent = Some(VerifyError::Proof {
                    author: e.author.clone(),
                    path: e.path.to_owned(),
                    reason: err.to_string(),
                });
                break;
            }
        };
        let verdict = match &judged {
            Some((c, verdict)) if by_collection && *c == collection => verdict.clone(),
            _ => {
                let verdict = selector.judge(author, &consent, &collection, &rkey);
                if by_collection {
                    judged = Some((collection.clone(), verdict.clone()));
                }
                verdict
            }
        };
        let reason = match verdict {
            Ok(op) if op == *e.consent => continue,
            Ok(op) => format!(
                "covered by consent op {op}, not the manifest's {}",
                e.consent
            ),
            Err(Exclusion::Consent(r)) => format!("not covered by consent at the cut: {r}"),
            Err(Exclusion::DeliveredForEvaluation(m)) => {
                format!("delivered for evaluation in {m}")
            }
            Err(Exclusion::NotAWork(c)) => {
                format!("{c} is not a record type the charter accepts as a work")
            }
        };
        f.consent = Some(consent_err(e, reason));
        break;
    }
    (walk.order, f)
}

/// A walk of one author's partial MST in key order, matching the author's entries
/// (sorted by path) as it goes.
struct Walk<'t, 'a> {
    tree: &'t Tree<'a>,
    run: &'t Run<'t>,
    /// The first entry not matched yet (an index into all the entries).
    next: usize,
    /// The blocks visited, in pre-order (the writer's order), the commit first.
    order: Vec<Cid>,
}

impl<'t, 'a> Walk<'t, 'a> {
    fn proof_err(&self, e: View<'_>, reason: String) -> VerifyError {
        VerifyError::Proof {
            author: e.author.clone(),
            path: e.path.to_owned(),
            reason,
        }
    }

    /// The next unmatched entry, if its path is below `hi` (`None`: no bound).
    fn pending_below(&self, hi: Option<&[u8]>) -> Option<View<'t>> {
        self.run
            .get(self.next)
            .filter(|e| hi.is_none_or(|h| e.path.as_bytes() < h))
    }

    /// Visits the subtree `cid` whose keys lie strictly between `lo` and `hi`, one layer
    /// below `parent` (`None`: the root). Returns how many entries it matched.
    fn visit(
        &mut self,
        cid: Cid,
        parent: Option<u32>,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
    ) -> Result<usize, VerifyError> {
        let node = match self.tree.node(&cid) {
            None => {
                // Pruned: fine, unless an entry of ours lies in its range.
                if let Some(e) = self.pending_below(hi) {
                    return Err(VerifyError::MissingBlock {
                        cid,
                        what: "MST node",
                        author: e.author.clone(),
                        path: e.path.to_owned(),
                    });
                }
                return Ok(0);
            }
            Some(Err(reason)) => {
                let e = self.pending_below(hi).or(self.run.get(self.next));
                let e = e.or(self.run.last());
                return Err(match e {
                    Some(e) => self.proof_err(e, reason),
                    None => VerifyError::UnusedBlock(cid),
                });
            }
            Some(Ok(node)) => node,
        };
        let bad = |walk: &Self, reason: String| {
            let e = walk
                .pending_below(hi)
                .or(walk.run.get(walk.next))
                .or(walk.run.last());
            match e {
                Some(e) => walk.proof_err(e, format!("MST node {cid}: {reason}")),
                None => VerifyError::UnusedBlock(cid),
            }
        };
        let layer = match parent {
            None => node.entries.first().map_or(0, |(k, _, _)| key_height(k)),
            Some(p) => p.saturating_sub(1),
        };
        if parent.is_some() && node.entries.is_empty() && node.left.is_none() {
            return Err(bad(self, "an empty node below the root".into()));
        }
        if layer == 0 && (node.left.is_some() || node.entries.iter().any(|e| e.2.is_some())) {
            return Err(bad(self, "a subtree below layer 0".into()));
        }
        let mut prev = lo;
        for (k, _, _) in &node.entries {
            if prev.is_some_and(|p| k.as_slice() <= p) {
                return Err(bad(
                    self,
                    "keys out of order or outside the subtree's range".into(),
                ));
            }
            let h = key_height(k);
            if h != layer {
                return Err(bad(
                    self,
                    format!(
                        "key {} of height {h} in a node of layer {layer}",
                        String::from_utf8_lossy(k)
                    ),
                ));
            }
            prev = Some(k.as_slice());
        }
        if let (Some(p), Some(h)) = (prev, hi)
            && p >= h
        {
            return Err(bad(self, "a key outside the subtree's range".into()));
        }
        self.order.push(cid);
        let before = self.next;
        let first_key = node.entries.first().map(|(k, _, _)| k.as_slice()).or(hi);
        self.slot(node.left, layer, lo, first_key)?;
        for (i, (k, v, right)) in node.entries.iter().enumerate() {
            if let Some(e) = self.run.get(self.next)
                && e.path.as_bytes() == k.as_slice()
            {
                if !e.is(v) {
                    return Err(self.proof_err(
                        e,
                        format!("the tree holds {v} there, not the manifest's {}", e.cid()),
                    ));
                }
                self.next += 1;
            }
            let upper = node.entries.get(i + 1).map(|(k, _, _)| k.as_slice()).or(hi);
            self.slot(*right, layer, Some(k.as_slice()), upper)?;
        }
        let matched = self.next - before;
        if matched == 0 {
            // No entry lies under it: the writer would not have put it in the file.
            return Err(VerifyError::UnusedBlock(cid));
        }
        Ok(matched)
    }

    /// A subtree slot of a node at `layer` between `lo` and `hi`: the subtree if any, then
    /// no entry of ours may be left in the range.
    fn slot(
        &mut self,
        child: Option<Cid>,
        layer: u32,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
    ) -> Result<(), VerifyError> {
        if let Some(c) = child {
            self.visit(c, Some(layer), lo, hi)?;
        }
        if let Some(e) = self.pending_below(hi) {
            return Err(self.proof_err(e, "the tree holds no record there".into()));
        }
        Ok(())
    }
}

/// The proof section is the writer's: the authors' sequences in manifest order, each
/// block the first time it comes, and nothing else.
fn check_proof_order(proofs: &[Kept], sequences: &[Vec<Cid>]) -> Result<(), VerifyError> {
    let mut written: FxHashSet<Key> = FxHashSet::default();
    let mut at = 0usize;
    for cid in sequences.iter().flatten() {
        if !written.insert(block_key(cid)) {
            continue;
        }
        match proofs.get(at) {
            Some(k) if k.cid == *cid => at += 1,
            Some(k) => {
                let wanted = sequences.iter().flatten().any(|c| c == &k.cid);
                return Err(if wanted {
                    VerifyError::Order {
                        cid: k.cid,
                        offset: k.offset,
                        reason: format!(
                            "the proofs follow the manifest's entries, and {cid} comes first"
                        ),
                    }
                } else {
                    VerifyError::UnusedBlock(k.cid)
                });
            }
            // (every block of a sequence was found in the proof section)
            None => break,
        }
    }
    match proofs.get(at) {
        Some(k) => Err(VerifyError::UnusedBlock(k.cid)),
        None => Ok(()),
    }
}
