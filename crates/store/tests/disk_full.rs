//! A real full disk (issue 13, finding 3): a small tmpfs, filled with a ballast file, under a
//! sled store. The store must refuse work with a clear error while the disk is full, recover
//! by itself once the ballast is removed, and lose no acknowledged write.
//!
//! Mounting needs root: elsewhere the test prints why it is skipped, unless
//! `GUILD_REQUIRE_TMPFS=1`, which makes a failed mount an error.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use guild_core::cids::cid_for_raw;
use guild_store::{BlockSource, Bytes, Cid, IndexOp, RepoHead, RepoKey, RepoStore, SledStore, Tid};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `mib` MiB, or says why it cannot.
    fn mount(mib: u32) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed (needs root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// The tmpfs, or `None` (printed) when the test must be skipped.
fn tmpfs_or_skip(mib: u32) -> Option<Tmpfs> {
    match Tmpfs::mount(mib) {
        Ok(t) => Some(t),
        Err(why) => {
            assert!(
                std::env::var("GUILD_REQUIRE_TMPFS").as_deref() != Ok("1"),
                "GUILD_REQUIRE_TMPFS=1 but {why}"
            );
            eprintln!("skipped: {why}");
            None
        }
    }
}

/// Fills the file system holding `dir` with a ballast file, until it is full.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("ballast");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xAAu8; 64 * 1024];
    loop {
        match f.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("ballast: {e}"),
        }
    }
    // The last partial chunk too.
    while f.write_all(&[0xAA; 512]).is_ok() {}
    path
}

fn repo() -> RepoKey {
    RepoKey::public(guild_store::Did::parse("did:key:z6MkDiskFull").unwrap())
}

/// Commit number `n` on top of `prev`: a commit block padded to ~8 KiB, a root block, and one
/// index entry `n`.
fn commit(store: &SledStore, prev: Option<&Cid>, n: u64) -> Result<RepoHead, String> {
    let mut padded = format!("commit {n} ").into_bytes();
    padded.resize(8 * 1024, b'.');
    let commit_block = Bytes::from(padded);
    let root_block = Bytes::from(format!("root {n}").into_bytes());
    let head = RepoHead {
        commit: cid_for_raw(&commit_block),
        rev: Tid::from_parts(1_700_000_000_000_000 + n, 1),
        data: cid_for_raw(&root_block),
    };
    let blocks = vec![(head.commit, commit_block), (head.data, root_block)];
    let index = [IndexOp::Put {
        collection: "app.test.note".into(),
        rkey: format!("{n:08}"),
        cid: head.commit,
    }];
    store
        .commit(&repo(), prev, &head, &blocks, &index)
        .map(|()| head)
        .map_err(|e| e.to_string())
}

/// Polls `f` until it is true, for up to 30 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every acknowledged commit's record is in the index, and the head is the last one.
fn check_acknowledged(store: &SledStore, acked: &[RepoHead]) {
    let last = acked.last().unwrap();
    assert_eq!(store.head(&repo()).unwrap().as_ref(), Some(last));
    assert_eq!(store.record_count(&repo()).unwrap(), acked.len() as u64);
    for (n, head) in acked.iter().enumerate() {
        let rkey = format!("{n:08}");
        assert_eq!(
            store.index_get(&repo(), "app.test.note", &rkey).unwrap(),
            Some(head.commit),
            "record {rkey}"
        );
        assert!(store.get_block(&head.commit).unwrap().is_some());
    }
}

#[test]
fn a_full_disk_refuses_writes_then_the_store_recovers_by_itself_and_loses_nothing() {
    let Some(fs) = tmpfs_or_skip(24) else { return };
    let store_dir = fs.path().join("store");
    let store = SledStore::open(&store_dir).unwrap();
    let mut acked: Vec<RepoHead> = Vec::new();
    for n in 0..20 {
        let prev = acked.last().map(|h| h.commit);
        acked.push(commit(&store, prev.as_ref(), n).unwrap());
    }

    let ballast = fill(fs.path());
    // Writes now fail; the first with the disk's error, the later ones refused outright.
    let mut refused = None;
    for _ in 0..2000 {
        let n = acked.len() as u64;
        let prev = acked.last().map(|h| h.commit);
        match commit(&store, prev.as_ref(), n) {
            Ok(head) => acked.push(head),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("a write on a full disk failed");
    assert!(
        refused.contains("No space left on device") || refused.contains("storage unavailable"),
        "{refused}"
    );
    let why = store
        .unavailable()
        .expect("the store says it is unavailable");
    assert!(why.contains("storage unavailable"), "{why}");
    let n = acked.len() as u64;
    let prev = acked.last().map(|h| h.commit);
    let again = commit(&store, prev.as_ref(), n).unwrap_err();
    assert!(again.contains("storage unavailable"), "{again}");
    // Still full when the next attempt is due: still refused, saying why the attempt failed.
    eventually("an attempt to recover was made and failed", || {
        store
            .unavailable()
            .is_some_and(|s| s.contains("last attempt"))
    });
    let still = store.unavailable().expect("still unavailable");
    assert!(still.contains("last attempt"), "{still}");

    std::fs::remove_file(&ballast).unwrap();
    eventually("the store recovers", || store.unavailable().is_none());
    check_acknowledged(&store, &acked);
    // A clone made before the failure works too: it is the same store.
    let clone = store.clone();
    for _ in 0..5 {
        let n = acked.len() as u64;
        let prev = acked.last().map(|h| h.commit);
        acked.push(commit(&clone, prev.as_ref(), n).unwrap());
    }
    check_acknowledged(&store, &acked);

    drop((store, clone));
    let reopened = SledStore::open(&store_dir).unwrap();
    check_acknowledged(&reopened, &acked);
}
