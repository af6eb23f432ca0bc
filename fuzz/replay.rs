//! The replay of saved fuzz inputs, shared by the crates' `tests/fuzz_regressions.rs` (each
//! includes this file with `#[path = "../../../fuzz/replay.rs"] mod replay;`).
//!
//! A target's saved inputs are the files of `<crate>/tests/regressions/<target>/` (files named
//! `README.md` are skipped; an empty folder passes). Each goes through the same check as the
//! fuzz target of that name; a check fails by returning an error or by panicking.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The folder of a target's saved inputs in the crate at `manifest_dir`.
pub fn folder(manifest_dir: &str, target: &str) -> PathBuf {
    Path::new(manifest_dir)
        .join("tests")
        .join("regressions")
        .join(target)
}

/// The saved inputs of one target, as `(file name, bytes)`, sorted by name.
pub fn inputs(manifest_dir: &str, target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = folder(manifest_dir, target);
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

/// Runs `check` on every saved input of `target`; fails listing every input whose check
/// returned an error or panicked (with the panic's message).
pub fn replay(manifest_dir: &str, target: &str, check: impl Fn(&[u8]) -> Result<(), String>) {
    let mut failures = Vec::new();
    for (name, bytes) in inputs(manifest_dir, target) {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&bytes)))
            .unwrap_or_else(|e| {
                Err(e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "panicked".to_owned()))
            });
        if let Err(e) = r {
            failures.push(format!("{target}/{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// [`replay`] for a check that fails only by panicking.
pub fn replay_panics(manifest_dir: &str, target: &str, check: fn(&[u8])) {
    replay(manifest_dir, target, |b| {
        check(b);
        Ok(())
    });
}
