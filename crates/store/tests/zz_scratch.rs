use guild_store::*;
#[test]
fn scratch_commits() {
    let dir = tempfile::tempdir_in("/work/main/target").unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    let repo = RepoKey::public("did:x");
    let mut last: Option<Cid> = None;
    let n: u64 = std::env::var("N").unwrap().parse().unwrap();
    let t = std::time::Instant::now();
    for i in 0..n {
        let b: Vec<(Cid, Bytes)> = (0..4).map(|j| { let v = Bytes::from(format!("{i} {j} {}", "x".repeat(200))); (guild_core::cids::cid_for_raw(&v), v) }).collect();
        let head = RepoHead { commit: b[3].0, rev: Tid::from_parts(1_700_000_000_000_000 + i, 1), data: b[2].0 };
        let op = IndexOp::Put { collection: "a.b.c".into(), rkey: format!("{i:08}"), cid: b[0].0 };
        s.commit(&repo, last.as_ref(), &head, &b, &[op]).unwrap();
        last = Some(head.commit);
    }
    eprintln!("per commit: {:?}", t.elapsed() / n as u32);
}
