//! Packaging and verifying a large bundle, read from a real on-disk store.
//!
//!     GUILD_BENCH_RECORDS=1000000 cargo bench -p guild-bundle --bench bundle
//!
//! `GUILD_BENCH_RECORDS` records (default 10 000) of about 1 KB of text each, spread over
//! `GUILD_BENCH_MEMBERS` members (default 100), are built with guild-repo's `Repo::import`
//! into a `SledStore` under `GUILD_BENCH_DIR` (default `target/bundle-bench/<records>`), once:
//! a later run reuses the store. Then: a collective of the members (the founder its one
//! steward, quorum 1), every member's consent, an agreement in force, a proposal naming every
//! replica, the selection, the manifest, the steward's approval (the seal); then timed:
//! `write_bundle` to a file (read from the store), `verify_bundle` of the file, and a plain
//! SHA-256 of the file (the floor). Peak RSS of each step is VmHWM, reset before it.
//! `verify_bundle` is timed without and with the whole file's SHA-256.
//!
//!     GUILD_BENCH_VERIFY_FILE=target/bundle-bench/1000000/bundle.car cargo bench -p guild-bundle --bench bundle
//!
//! times the verification alone of a file an earlier run kept (`GUILD_BENCH_KEEP=1`).

use std::io::{Read, Write};

/// The allocator the `guild` binary uses, so that the figures are those of `guild bundle
/// verify` and of a steward's node.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use guild_bundle::{
    CutState, EvaluationLedger, Manifest, ManifestParams, RecordListing, Replica, VerifyOptions,
    select, verify_bundle, verify_bundle_with, write_bundle,
};
use guild_core::syntax::{Datetime, Did, Nsid, RecordKey, Tid};
use guild_core::{Cid, Ipld, Keypair};
use guild_gov::body::{
    AcceptBody, ApprovalBody, BundleKind, CidRef, CountersignBody, Cut, OfferBody, OpBody,
    ProposalBody, ReplicaHead,
};
use guild_gov::{Inserted, Log, Op, SignedOp, make};
use guild_repo::{Repo, prepare_record};
use guild_store::SledStore;
use sha2::{Digest, Sha256};

const START: i64 = 1_700_000_000_000_000;
const TEXT: &str = "coop.guild.data.text";
const TEMPLATE: &str = "training-commercial-standard";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn at(secs: i64) -> Datetime {
    Datetime::from_unix_micros(START + secs * 1_000_000)
}

fn member_key(i: usize) -> Keypair {
    let mut secret = [7u8; 32];
    secret[..8].copy_from_slice(&(i as u64).to_le_bytes());
    Keypair::from_secret_bytes(&secret)
}

fn did(k: &Keypair) -> Did {
    Did::parse(&k.did()).expect("a did:key")
}

/// About 1 KB of words, different for every record.
fn text(member: usize, n: usize) -> String {
    const WORDS: [&str; 16] = [
        "river", "stone", "light", "under", "winter", "open", "quiet", "salt", "harbour",
        "morning", "ash", "letter", "garden", "rain", "glass", "north",
    ];
    let mut x = (member as u64) << 32 | n as u64 | 1;
    let mut s = format!("Poem {n} by member {member}.\n");
    while s.len() < 1000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(WORDS[(x % 16) as usize]);
        s.push(if x.is_multiple_of(11) { '\n' } else { ' ' });
    }
    s
}

/// Peak RSS since the last reset, in MiB.
fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The members' repos in the store (built now unless a previous run left them).
fn build_store(dir: &Path, members: usize, per: usize) -> (SledStore, Vec<(Did, Tid, Cid)>) {
    let heads_file = dir.join("heads.txt");
    // The node's default page cache unless GUILD_BENCH_CACHE_MIB says otherwise (the
    // node's `[store] cache_mib`).
    let cache_mib = env("GUILD_BENCH_CACHE_MIB", 64) as u64;
    println!("store page cache: {cache_mib} MiB");
    let store = SledStore::open_with_cache(&dir.join("sled"), cache_mib * 1024 * 1024)
        .expect("open the store");
    if let Ok(text) = std::fs::read_to_string(&heads_file) {
        let heads: Vec<(Did, Tid, Cid)> = text
            .lines()
            .filter_map(|l| {
                let mut p = l.split(' ');
                Some((
                    Did::parse(p.next()?).ok()?,
                    Tid::parse(p.next()?).ok()?,
                    Cid::try_from(p.next()?).ok()?,
                ))
            })
            .collect();
        if heads.len() == members {
            eprintln!("reusing the store in {}", dir.display());
            return (store, heads);
        }
    }
    let t = Instant::now();
    let collection = Nsid::parse(TEXT).expect("nsid");
    let mut heads = Vec::new();
    for m in 1..=members {
        let k = member_key(m);
        let records = (0..per)
            .map(|n| {
                let rec = Ipld::Map(
                    [
                        ("$type".to_owned(), Ipld::String(TEXT.to_owned())),
                        ("text".to_owned(), Ipld::String(text(m, n))),
                        (
                            "createdAt".to_owned(),
                            Ipld::String(at(n as i64).to_string()),
                        ),
                    ]
                    .into_iter()
                    .collect(),
                );
                let rkey = RecordKey::parse(&format!("3k{n:011}")).expect("rkey");
                prepare_record(&collection, &rkey, &rec).expect("a record")
            })
            .collect();
        let rev = Tid::from_parts(START as u64 + m as u64, 0);
        let (_, done) = Repo::import(&store, &k, rev.clone(), records).expect("import");
        heads.push((did(&k), rev, done.head.commit));
        if m.is_multiple_of(10) {
            eprintln!("built {m}/{members} repos ({:.0?})", t.elapsed());
        }
    }
    store.flush().expect("flush");
    let lines: String = heads
        .iter()
        .map(|(d, r, c)| format!("{d} {} {c}\n", r.as_str()))
        .collect();
    std::fs::write(&heads_file, lines).expect("write heads");
    eprintln!("built the store in {:.1?}", t.elapsed());
    (store, heads)
}

/// The store, timing its reads.
struct Timed<'a> {
    store: &'a SledStore,
    nanos: AtomicU64,
    reads: AtomicU64,
}

impl guild_repo::BlockSource for Timed<'_> {
    fn get_block(
        &self,
        cid: &Cid,
    ) -> Result<Option<bytes::Bytes>, guild_repo::blockstore::StoreError> {
        let t = Instant::now();
        let r = self.store.get_block(cid);
        self.nanos
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.reads.fetch_add(1, Ordering::Relaxed);
        r
    }
}

struct Gov {
    log: Log,
    id: Cid,
    clock: i64,
}

impl Gov {
    fn write(&mut self, body: OpBody, k: &Keypair) -> SignedOp {
        self.clock += 1;
        let prev = self.log.heads();
        let op = Op::write(&body, Some(&self.id), k, &prev, &at(self.clock)).expect("op");
        assert_eq!(self.log.insert(op.clone(), 0), Inserted::Applied);
        op
    }
}

/// SHA-256 of a file read in 1 MiB pieces, and the time it took.
fn sha_file(path: &Path) -> ([u8; 32], f64) {
    let t = Instant::now();
    let mut r = std::fs::File::open(path).expect("open");
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    (h.finalize().into(), t.elapsed().as_secs_f64())
}

/// `verify_bundle` of the file without and with the file's SHA-256: (seconds, peak MiB)
/// of each.
fn verify_file(path: &Path, records: usize, sha256: [u8; 32]) -> [(f64, f64); 2] {
    [false, true].map(|file_sha256| {
        reset_peak();
        let t = Instant::now();
        let report = verify_bundle_with(
            std::fs::File::open(path).expect("open"),
            &VerifyOptions { file_sha256 },
        )
        .expect("verify_bundle");
        let time = t.elapsed().as_secs_f64();
        let peak = peak_mib();
        assert_eq!(report.records as usize, records);
        assert_eq!(report.sha256, file_sha256.then_some(sha256));
        (time, peak)
    })
}

fn print_verify(out: &mut impl Write, mb: f64, sha_time: f64, timings: &[(f64, f64); 2]) {
    for ((time, peak), what) in timings.iter().zip(["", " + file SHA-256"]) {
        let _ = writeln!(
            out,
            "verify_bundle{what:16} {time:7.2} s  {:7.1} MB/s  peak RSS {peak:.0} MiB  \
             ({:.0} % of SHA-256)",
            mb / time,
            100.0 * sha_time / time
        );
    }
}

fn main() {
    // Verification alone, of a file kept by an earlier run (GUILD_BENCH_KEEP=1).
    if let Some(path) = std::env::var_os("GUILD_BENCH_VERIFY_FILE") {
        let path = PathBuf::from(path);
        let (sha, sha_time) = sha_file(&path);
        let report = verify_bundle(std::fs::File::open(&path).expect("open")).expect("verify");
        let timings = verify_file(&path, report.records as usize, sha);
        let mb = std::fs::metadata(&path).expect("metadata").len() as f64 / 1e6;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "{}: {} records, {mb:.1} MB",
            path.display(),
            report.records
        );
        print_verify(&mut out, mb, sha_time, &timings);
        let _ = writeln!(
            out,
            "sha256 (plain) {sha_time:7.2} s  {:7.1} MB/s",
            mb / sha_time
        );
        return;
    }
    let total = env("GUILD_BENCH_RECORDS", 10_000);
    let members = env("GUILD_BENCH_MEMBERS", 100).max(1);
    let per = total.div_ceil(members);
    let dir = std::env::var_os("GUILD_BENCH_DIR").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/bundle-bench")
                .join(format!("{members}x{per}"))
        },
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).expect("bench dir");
    let (store, heads) = build_store(&dir, members, per);

    // The collective: the founder (steward) and the members; consent; an agreement.
    let t = Instant::now();
    let founder = member_key(0);
    let builder = member_key(usize::MAX);
    let mut keys = vec![founder.clone()];
    keys.extend((1..=members).map(member_key));
    let (id, ops) = make::invited_collective("Bench", &keys, START).expect("collective");
    let mut g = Gov {
        log: Log::load(id, ops.iter().map(Vec::as_slice)),
        id,
        clock: 100,
    };
    for k in &keys[1..] {
        let b = make::consent(
            g.log.state_ref(),
            &did(k),
            &[TEMPLATE.to_owned()],
            &[],
            &at(0),
        );
        g.write(OpBody::ConsentGrant(Box::new(b)), k);
    }
    let terms = make::standard_templates()
        .into_iter()
        .find(|t| t.id == TEMPLATE)
        .expect("template");
    let offer = *g
        .write(
            OpBody::AgreementOffer(Box::new(OfferBody {
                builder: did(&builder),
                template: TEMPLATE.to_owned(),
                terms,
                expires_at: None,
                note: None,
            })),
            &founder,
        )
        .id();
    let accept = *g
        .write(
            OpBody::AgreementAccept(Box::new(AcceptBody {
                offer: CidRef(offer),
                contact: None,
                evaluation: None,
            })),
            &builder,
        )
        .id();
    g.write(
        OpBody::AgreementCountersign(Box::new(CountersignBody {
            offer: CidRef(offer),
            accept: CidRef(accept),
        })),
        &founder,
    );
    let cut_heads = g.log.heads();
    let proposal = g.write(
        OpBody::BundleProposal(Box::new(ProposalBody {
            agreement: CidRef(offer),
            cut: Cut {
                heads: cut_heads.iter().copied().map(CidRef).collect(),
                replicas: heads
                    .iter()
                    .map(|(d, r, c)| ReplicaHead {
                        did: d.clone(),
                        rev: r.clone(),
                        commit: CidRef(*c),
                    })
                    .collect(),
            },
            kind: BundleKind::Training.into(),
            note: None,
        })),
        &founder,
    );
    let gov_time = t.elapsed();

    // The listings, the selection, the manifest, the seal.
    let t = Instant::now();
    let replicas: Vec<Replica> = heads
        .iter()
        .map(|(d, r, c)| {
            let repo = Repo::open(&store, *c).expect("open repo");
            let records = repo
                .records()
                .expect("records")
                .into_iter()
                .map(|(path, cid)| {
                    let (collection, rkey) = guild_repo::parse_path(&path).expect("path");
                    RecordListing {
                        collection,
                        rkey,
                        cid,
                    }
                })
                .collect();
            Replica {
                did: d.clone(),
                rev: r.clone(),
                commit: *c,
                name: None,
                records,
            }
        })
        .collect();
    let listing_time = t.elapsed();
    let t = Instant::now();
    let (request, cut, params) = ManifestParams::from_proposal(&proposal).expect("params");
    let cut = CutState::at(&g.log, &cut).expect("cut");
    let selection = select(
        &g.log,
        &cut,
        &request,
        &replicas,
        &EvaluationLedger::empty(),
    )
    .expect("selection");
    drop(replicas);
    let select_time = t.elapsed();
    let t = Instant::now();
    let manifest = Manifest::build(&selection, &params).expect("manifest");
    drop(selection);
    let (root, _) = manifest.encode().expect("encode");
    let manifest_time = t.elapsed();
    g.write(
        OpBody::BundleApproval(Box::new(ApprovalBody {
            proposal: CidRef(*proposal.id()),
            manifest: CidRef(root),
        })),
        &founder,
    );
    let records = manifest.records.len();

    // Timed: packaging from the store.
    let path = dir.join("bundle.car");
    let t = Instant::now();
    let n_blocks = manifest.blocks().expect("blocks").len();
    let blocks_time = t.elapsed();
    reset_peak();
    let timed = Timed {
        store: &store,
        nanos: 0.into(),
        reads: 0.into(),
    };
    let t = Instant::now();
    let file = std::fs::File::create(&path).expect("create");
    let summary = write_bundle(&manifest, &g.log, &timed, file).expect("write_bundle");
    let write_time = t.elapsed().as_secs_f64();
    let write_peak = peak_mib();
    let read_time = timed.nanos.load(Ordering::Relaxed) as f64 / 1e9;
    drop(manifest);
    let mb = summary.bytes as f64 / 1e6;

    // Timed: plain SHA-256 of the file (the floor), then verification.
    let (plain, sha_time) = sha_file(&path);
    assert_eq!(plain, summary.sha256);
    let timings = verify_file(&path, records, plain);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "bundle: {records} records by {members} members, {} blocks, {mb:.1} MB \
         (setup: governance {gov_time:.1?}, listings {listing_time:.1?}, selection \
         {select_time:.1?}, manifest {manifest_time:.1?})",
        summary.blocks
    );
    let _ = writeln!(
        out,
        "write_bundle   {write_time:7.2} s  {:7.1} MB/s  peak RSS {write_peak:.0} MiB  \
         (of which: store reads {read_time:.2} s in all threads for {} blocks; the manifest's {n_blocks} \
         blocks take {blocks_time:.2?} to encode)",
        mb / write_time,
        timed.reads.load(Ordering::Relaxed)
    );
    print_verify(&mut out, mb, sha_time, &timings);
    if std::env::var_os("GUILD_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_file(&path);
    }
}
