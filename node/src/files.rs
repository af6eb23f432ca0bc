//! File helpers: atomic writes that never leave a partial output behind, and key files.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use guild_core::Keypair;

/// [`write_atomic`] for a file that is not secret (a CAR, an export): readable by others
/// (mode 0644), as `cp` would make it.
pub fn write_public(
    path: &Path,
    fill: impl FnOnce(&mut std::io::BufWriter<&std::fs::File>) -> Result<()>,
) -> Result<()> {
    write_atomic_mode(path, false, Some(0o644), fill)
}

/// Writes `path` atomically: a temporary file in the same directory, flushed and synced, then
/// renamed over the target. On any error the target is untouched and the temporary is removed.
/// With `no_clobber`, an existing target is an error. The file is created with mode 0600 (keys,
/// tokens); see [`write_public`] for files meant to be shared.
pub fn write_atomic(
    path: &Path,
    no_clobber: bool,
    fill: impl FnOnce(&mut std::io::BufWriter<&std::fs::File>) -> Result<()>,
) -> Result<()> {
    write_atomic_mode(path, no_clobber, None, fill)
}

fn write_atomic_mode(
    path: &Path,
    no_clobber: bool,
    mode: Option<u32>,
    fill: impl FnOnce(&mut std::io::BufWriter<&std::fs::File>) -> Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // tempfile creates the file with mode 0600 on Unix.
    let tmp = tempfile::Builder::new()
        .prefix(".guild-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file());
        fill(&mut w)?;
        w.flush()
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    #[cfg(unix)]
    if let Some(mode) = mode {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set permissions on {}", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("cannot sync {}", path.display()))?;
    if no_clobber {
        tmp.persist_noclobber(path)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot create {}", path.display()))?;
    } else {
        tmp.persist(path)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Refuses a secret file (`what`: "key file", "admin token") that anyone but its owner can
/// read or write.
pub fn check_private(path: &Path, what: &str) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read {what} {}", path.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "{what} {} has mode {mode:o}; it must not be readable by others (chmod 600 {})",
                path.display(),
                path.display()
            );
        }
    }
    Ok(())
}

/// Reads a key file, refusing one that others can read. Each problem has its own message: a
/// file that cannot be read (missing, permission denied: the system's reason), a mode that
/// lets others read it ([`check_private`]), and content that is no Guild key file (not JSON,
/// a key of the wrong length, a DID that does not match, …).
pub fn read_key_file(path: &Path) -> Result<Keypair> {
    check_private(path, "key file")?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    Keypair::from_key_file(&text)
        .with_context(|| format!("{} is not a valid Guild key file", path.display()))
}

/// Reads a file the data directory must hold (made by `guild init`), refusing one others can
/// read (`what`: "key file", "admin token"): a missing file says to run `guild init`, any other
/// problem says what it is.
pub fn check_init_file(data_dir: &Path, path: &Path, what: &str) -> Result<()> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no {what} in {}: {} does not exist (run `guild init --data-dir {}` first)",
            data_dir.display(),
            path.display(),
            data_dir.display()
        ),
        Err(e) => Err(e).with_context(|| format!("cannot read {what} {}", path.display())),
        Ok(_) => check_private(path, what),
    }
}

/// Reads a whole input file with a clear error.
pub fn read_input(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}
