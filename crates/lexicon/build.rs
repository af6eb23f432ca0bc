//! Embeds Guild's lexicons: every `*.json` under the workspace's `lexicons/` directory, walked
//! in sorted order, skipping hidden entries and `examples` directories (the same rule as
//! `guild_lexicon::fs`), becomes an `include_str!` entry of `EMBEDDED` in `$OUT_DIR`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs, io};

fn main() -> io::Result<()> {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest.join("../../lexicons");
    println!("cargo::rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    if root.is_dir() {
        walk(&root, &mut files)?;
    }
    files.sort();
    let mut out = String::from(
        "/// Guild's lexicon files: (path under `lexicons/`, contents).\n\
         pub(crate) static EMBEDDED: &[(&str, &str)] = &[\n",
    );
    for file in &files {
        let rel = file.strip_prefix(&root).unwrap_or(file);
        let rel = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let abs = fs::canonicalize(file)?;
        let _ = writeln!(
            out,
            "    ({:?}, include_str!({:?})),",
            rel,
            abs.to_string_lossy()
        );
    }
    out.push_str("];\n");
    let dest = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default()).join("embedded.rs");
    fs::write(dest, out)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            if name != "examples" {
                walk(&path, files)?;
            }
        } else if name.ends_with(".json") {
            println!("cargo::rerun-if-changed={}", path.display());
            files.push(path);
        }
    }
    Ok(())
}
