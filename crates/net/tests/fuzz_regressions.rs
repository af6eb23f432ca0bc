//! Replays every saved fuzz input under `tests/regressions/<target>/` through the same checks
//! as guild-net's fuzz targets (`fuzz/fuzz_targets/net_*.rs`; the checks are shared:
//! `tests/fuzz_checks/mod.rs`). The seeds (one valid frame of each kind) are stored there too;
//! to rewrite them into `tests/regressions/` and `fuzz/corpus/`:
//! `GUILD_WRITE_FUZZ_SEEDS=1 cargo test -p guild-net --test fuzz_regressions seed_files`;
//! without the variable the same test checks that the stored seeds are current.

mod fuzz_checks;
#[path = "../../../fuzz/replay.rs"]
mod replay;

const CRATE: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn net_request_regressions() {
    replay::replay_panics(CRATE, "net_request", fuzz_checks::request);
}

#[test]
fn net_reply_regressions() {
    replay::replay_panics(CRATE, "net_reply", fuzz_checks::reply);
}

#[test]
fn net_gossip_regressions() {
    replay::replay_panics(CRATE, "net_gossip", fuzz_checks::gossip);
}

#[test]
fn seed_files_are_current() {
    let write = std::env::var_os("GUILD_WRITE_FUZZ_SEEDS").is_some();
    for (target, name, bytes) in fuzz_checks::seeds() {
        let file = replay::folder(CRATE, target).join(format!("seed-{name}"));
        if write {
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, &bytes).unwrap();
            let corpus: std::path::PathBuf = [CRATE, "..", "..", "fuzz", "corpus", target]
                .iter()
                .collect();
            std::fs::create_dir_all(&corpus).unwrap();
            std::fs::write(corpus.join(format!("seed-{name}")), &bytes).unwrap();
        } else {
            let stored = std::fs::read(&file)
                .unwrap_or_else(|e| panic!("{}: {e} (write the seeds, see above)", file.display()));
            assert_eq!(stored, bytes, "{} is not the current seed", file.display());
        }
    }
}
