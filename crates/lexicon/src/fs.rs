//! Reading lexicon files from disk: the crate's only I/O, kept apart from the pure core.
//!
//! A lexicon directory is walked recursively in sorted order; every `*.json` file in it is a
//! document. Hidden entries (names starting with `.`) and subdirectories named `examples` are
//! skipped, so that a directory can carry example records next to its lexicons. A path given
//! directly may also be a single file, whatever its name.

use std::collections::BTreeSet;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::registry::{LoadError, LoadErrorKind, Registry};

/// The largest lexicon file read, in bytes. Real documents are a few kilobytes.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// How deep the walk goes below the given directory.
const MAX_WALK_DEPTH: usize = 32;

/// Reads the lexicon files at `path` (a directory or a single file): `(path, text)` pairs in
/// sorted order, and an error for each file that could not be read.
pub fn read_sources(path: &Path) -> (Vec<(String, String)>, Vec<LoadError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    if path.is_dir() {
        let mut seen = BTreeSet::new();
        walk(path, 0, &mut seen, &mut files, &mut errors);
    } else {
        files.push(path.to_path_buf());
    }
    let mut sources = Vec::with_capacity(files.len());
    for file in files {
        match read_limited(&file) {
            Ok(text) => sources.push((file.display().to_string(), text)),
            Err(e) => errors.push(io_error(&file, e)),
        }
    }
    (sources, errors)
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> LoadError {
    LoadError {
        origin: path.display().to_string(),
        kind: LoadErrorKind::Io(e.to_string()),
    }
}

fn walk(
    dir: &Path,
    depth: usize,
    seen: &mut BTreeSet<PathBuf>,
    files: &mut Vec<PathBuf>,
    errors: &mut Vec<LoadError>,
) {
    if depth > MAX_WALK_DEPTH {
        errors.push(io_error(dir, "directories are nested too deeply"));
        return;
    }
    // Each directory once, however many symlinks lead to it (no loops, no blow-up).
    match std::fs::canonicalize(dir) {
        Ok(real) => {
            if !seen.insert(real) {
                return;
            }
        }
        Err(e) => {
            errors.push(io_error(dir, e));
            return;
        }
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(io_error(dir, e));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => paths.push(entry.path()),
            Err(e) => errors.push(io_error(dir, e)),
        }
    }
    paths.sort();
    for path in paths {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            if name != "examples" {
                walk(&path, depth + 1, seen, files, errors);
            }
        } else if name.ends_with(".json") {
            files.push(path);
        }
    }
}

fn read_limited(path: &Path) -> std::io::Result<String> {
    let file = std::fs::File::open(path)?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_FILE_BYTES} bytes; not a lexicon"
        )));
    }
    Ok(text)
}

impl Registry {
    /// Guild's built-in lexicons plus the extension documents under `dir`. Documents that
    /// cannot be read, are invalid, conflict with a loaded lexicon or do not resolve are left
    /// out, each with an error; the rest load.
    pub fn load_dir(dir: &Path) -> (Registry, Vec<LoadError>) {
        Registry::load_dirs(&[dir])
    }

    /// [`Registry::load_dir`] over several directories (or files), in order.
    pub fn load_dirs<P: AsRef<Path>>(dirs: &[P]) -> (Registry, Vec<LoadError>) {
        let (mut registry, mut errors) = Registry::builtin_with_errors();
        for dir in dirs {
            errors.extend(registry.extend_from_path(dir.as_ref()));
        }
        (registry, errors)
    }

    /// Adds the lexicon documents under `path` (a directory or a file) as one batch; see
    /// [`Registry::extend`].
    pub fn extend_from_path(&mut self, path: &Path) -> Vec<LoadError> {
        let (sources, mut errors) = read_sources(path);
        errors.extend(self.extend(sources));
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_sorted_skipping_hidden_and_examples_and_symlink_loops() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for p in [
            "b/x.json",
            "a.json",
            "examples/e.json",
            ".hidden/h.json",
            "b/.h.json",
            "b/notes.txt",
        ] {
            let path = root.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "{}").unwrap();
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(root, root.join("b/loop")).unwrap();
            std::os::unix::fs::symlink(root, root.join("b/loop2")).unwrap();
        }
        let (sources, errors) = read_sources(root);
        assert!(errors.is_empty(), "{errors:?}");
        let names: Vec<String> = sources
            .iter()
            .map(|(p, _)| {
                p.strip_prefix(&root.display().to_string())
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(names, ["/a.json", "/b/x.json"]);
        // A file given directly is read whatever its name; a missing one is an error.
        let (sources, _) = read_sources(&root.join("b/notes.txt"));
        assert_eq!(sources.len(), 1);
        let (_, errors) = read_sources(&root.join("missing.json"));
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn large_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.json");
        std::fs::write(&path, vec![b' '; (MAX_FILE_BYTES + 1) as usize]).unwrap();
        let (sources, errors) = read_sources(&path);
        assert!(sources.is_empty());
        assert!(
            errors[0].to_string().contains("larger than"),
            "{}",
            errors[0]
        );
    }
}
