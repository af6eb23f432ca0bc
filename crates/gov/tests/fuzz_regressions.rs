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

use guild_gov::Inserted;

mod fuzz_fixture;

fn regressions(target: &str) -> PathBuf {
    [env!("CARGO_MANIFEST_DIR"), "tests", "regressions", target]
        .iter()
        .collect()
}

/// The saved inputs of one target, as `(file name, bytes)`.
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = regressions(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "README.md"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

fn replay(target: &str, check: fn(&[u8])) {
    let mut failures = Vec::new();
    for (name, bytes) in inputs(target) {
        if let Err(e) = std::panic::catch_unwind(|| check(&bytes)) {
            let msg = e
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| e.downcast_ref::<&str>().copied())
                .unwrap_or("panicked");
            failures.push(format!("{target}/{name}: {msg}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn gov_op_regressions() {
    replay("gov_op", fuzz_fixture::check);
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
    let corpus: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "..",
        "fuzz",
        "corpus",
        "gov_op",
    ]
    .iter()
    .collect();
    if std::env::var_os("GUILD_WRITE_FUZZ_SEEDS").is_some() {
        for dir in [regressions("gov_op"), corpus] {
            std::fs::create_dir_all(&dir).unwrap();
            for (name, bytes) in &fuzz_fixture::fixture().seeds {
                std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
            }
        }
        return;
    }
    for (name, bytes) in &fuzz_fixture::fixture().seeds {
        let path = regressions("gov_op").join(format!("seed-{name}"));
        let stored = std::fs::read(&path).unwrap_or_default();
        assert_eq!(
            &stored,
            bytes,
            "{} is stale: rewrite the seeds",
            path.display()
        );
    }
}
