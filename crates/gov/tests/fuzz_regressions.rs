//! Replays every saved fuzz input under `tests/regressions/<target>/` through the same checks
//! as the fuzz target of that name (`fuzz/fuzz_targets/<target>.rs`). Files named `README.md`
//! are skipped; an empty folder passes.
//!
//! The `gov_op` target and this test share their fixed collective and their checks
//! (`tests/fuzz_fixture/mod.rs`). To rewrite the seed inputs (the fixture's valid ops) into
//! `tests/regressions/gov_op/` and `fuzz/corpus/gov_op/`:
//! `GUILD_WRITE_FUZZ_SEEDS=1 cargo test -p guild-gov --test fuzz_regressions seed_files`; without
//! the variable the same test checks that the stored seeds are the fixture's.

use std::path::PathBuf;

use guild_gov::reconcile::{self, OpSet, ReconcileError};
use guild_gov::{Inserted, Message};

mod fuzz_fixture;
#[path = "../../../fuzz/replay.rs"]
mod replay;

const DIR: &str = env!("CARGO_MANIFEST_DIR");

fn regressions(target: &str) -> PathBuf {
    replay::folder(DIR, target)
}

#[test]
fn gov_op_regressions() {
    replay::replay_panics(DIR, "gov_op", fuzz_fixture::check);
}

/// The seeds are what the fuzz target starts from: each must be applied on the fixed log
/// (the other collective's charter excepted), so that the target reaches the state machine.
#[test]
fn gov_op_seeds_apply() {
    let fx = fuzz_fixture::fixture();
    for (name, bytes) in &fx.seeds {
        let mut log = fx.log.clone();
        let r = log.insert_bytes(bytes, 0);
        if *name == "other-charter" {
            assert!(matches!(r, Inserted::Rejected(_)), "{name}: {r:?}");
        } else {
            assert_eq!(r, Inserted::Applied, "seed {name}");
        }
        fuzz_fixture::check(bytes);
    }
}

#[test]
fn gov_op_seed_files_are_current() {
    let seeds = fuzz_fixture::fixture().seeds.clone();
    seed_files_are_current("gov_op", seeds);
}

/// With `GUILD_WRITE_FUZZ_SEEDS` set, writes a target's seeds as `seed-<name>` into its
/// regression folder and `fuzz/corpus/<target>/`; otherwise checks that the stored seeds are
/// these.
fn seed_files_are_current<'a>(target: &str, seeds: impl IntoIterator<Item = (&'a str, Vec<u8>)>) {
    let seeds: Vec<(&str, Vec<u8>)> = seeds.into_iter().collect();
    if std::env::var_os("GUILD_WRITE_FUZZ_SEEDS").is_some() {
        let corpus: PathBuf = [DIR, "..", "..", "fuzz", "corpus", target].iter().collect();
        for dir in [regressions(target), corpus] {
            std::fs::create_dir_all(&dir).unwrap();
            for (name, bytes) in &seeds {
                std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
            }
        }
        return;
    }
    for (name, bytes) in &seeds {
        let path = regressions(target).join(format!("seed-{name}"));
        let stored = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{} is missing ({e}): rewrite the seeds", path.display()));
        assert_eq!(
            &stored,
            bytes,
            "{} is stale: rewrite the seeds",
            path.display()
        );
    }
}

/// The set the `sync_message` target reconciles against (the target's own).
fn set() -> OpSet {
    OpSet::from_items((0..300u64).map(|i| (i / 3, guild_core::cids::sha256(&i.to_be_bytes()))))
}

/// The `sync_message` target's check (`fuzz/fuzz_targets/sync_message.rs`).
fn check_sync_message(input: &[u8]) {
    let set = set();
    let frame_ok = |frame: &[u8]| {
        for r in [
            reconcile::answer(&set, frame).map(|_| ()),
            reconcile::step(&set, frame).map(|_| ()),
        ] {
            assert_ne!(r, Err(ReconcileError::Panicked), "negentropy panicked");
        }
    };
    frame_ok(input);
    if let Ok(msg) = Message::decode(input) {
        assert_eq!(
            msg.encode(),
            input,
            "a decoded message re-encodes to its input"
        );
        if let Message::Reconcile(frame) | Message::ReconcileReply(frame) = &msg {
            frame_ok(frame);
        }
    }
}

/// One message of each kind, in the current format (version 1).
fn sync_message_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let cid = guild_core::cids::cid_for_cbor(b"\xa0");
    let set = set();
    let query = reconcile::initiate(&set).expect("a first query");
    let reply = reconcile::answer(&set, &query).expect("an answer");
    vec![
        ("op", Message::Op(vec![0xa0]).encode()),
        ("want", Message::Want(vec![cid]).encode()),
        ("ops", Message::Ops(vec![vec![0xa0], vec![0x80]]).encode()),
        ("reconcile", Message::Reconcile(query.clone()).encode()),
        ("reconcile-reply", Message::ReconcileReply(reply).encode()),
    ]
}

#[test]
fn sync_message_regressions() {
    replay::replay_panics(DIR, "sync_message", check_sync_message);
}

#[test]
fn sync_message_seed_files_are_current() {
    seed_files_are_current("sync_message", sync_message_seeds());
}

/// Invite codes: a valid one, and the kinds of damage a pasted code suffers.
fn invite_code_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let cid = guild_core::cids::cid_for_cbor(b"\xa0");
    let code = guild_gov::make::InviteCode {
        collective: cid,
        invite: cid,
        secret: vec![7; 32],
        peers: vec!["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWAbc".into()],
    }
    .encode()
    .expect("an invite code encodes");
    let cut = code[..code.len() / 2].to_owned();
    vec![
        ("valid", code.clone().into_bytes()),
        ("cut", cut.into_bytes()),
        ("no-prefix", code.replace("guild-invite:", "").into_bytes()),
        ("not-base58", b"guild-invite:0OIl".to_vec()),
    ]
}

#[test]
fn invite_code_regressions() {
    replay::replay_panics(DIR, "invite_code", fuzz_fixture::check_invite_code);
}

#[test]
fn invite_code_seed_files_are_current() {
    seed_files_are_current("invite_code", invite_code_seeds());
}
