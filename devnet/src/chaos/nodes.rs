//! The nodes' set-up: fixed P2P ports, the test-only settings in `config.toml`, and the tmpfs
//! whose disk the full-disk fault fills.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, bail};

use super::*;

/// A free TCP port on loopback (bound, read, released), below the kernel's ephemeral range
/// (Linux: 32768–60999). A port the kernel handed out for `:0` lies inside that range, where
/// any outgoing connection made before the node binds it (another node's dial, a link
/// proxy's) may take it as its source port: a chaos run once failed so ("cannot listen on
/// /ip4/127.0.0.1/tcp/39649"). Ports are tried from a random start in 20000–32767.
pub(super) fn free_port() -> Result<u16> {
    use std::hash::{BuildHasher, RandomState};
    const LOW: u16 = 20_000;
    const SPAN: u16 = 12_768;
    let start = (RandomState::new().hash_one(std::process::id()) % u64::from(SPAN)) as u16;
    for i in 0..SPAN {
        let port = LOW + (start + i) % SPAN;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            return Ok(l.local_addr()?.port());
        }
    }
    bail!(
        "no free TCP port on 127.0.0.1 between {LOW} and {}",
        LOW + SPAN - 1
    )
}

/// Edits a node's `config.toml` in place.
pub(super) fn edit_config(
    dir: &Path,
    f: impl FnOnce(&mut toml::Table) -> Result<()>,
) -> Result<()> {
    let path = dir.join("config.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut table: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not TOML", path.display()))?;
    f(&mut table)?;
    let out = toml::to_string(&table).context("cannot write the configuration as TOML")?;
    std::fs::write(&path, out).with_context(|| format!("cannot write {}", path.display()))
}

/// The sub-table `key` of `t`, made when missing.
pub(super) fn sub<'a>(t: &'a mut toml::Table, key: &str) -> Result<&'a mut toml::Table> {
    t.entry(key.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .ok_or_else(|| anyhow!("config.toml: `{key}` is not a table"))
}

/// A member node's chaos configuration: a fixed P2P port (its links' proxies forward there),
/// every dial through its own links, quick anti-entropy, and its clock offset.
pub(super) fn configure(
    dir: &Path,
    port: u16,
    via: &[(u16, u16)],
    clock_offset_secs: i64,
) -> Result<()> {
    edit_config(dir, |t| {
        let net = sub(t, "net")?;
        net.insert(
            "listen".into(),
            toml::Value::Array(vec![format!("/ip4/127.0.0.1/tcp/{port}").into()]),
        );
        let entries = via
            .iter()
            .map(|(to, via)| {
                let mut e = toml::Table::new();
                e.insert("to".into(), format!("127.0.0.1:{to}").into());
                e.insert("via".into(), format!("127.0.0.1:{via}").into());
                toml::Value::Table(e)
            })
            .collect();
        net.insert("dial_via".into(), toml::Value::Array(entries));
        let sync = sub(t, "sync")?;
        sync.insert("interval_secs".into(), 5.into());
        sync.insert("jitter_secs".into(), 5.into());
        sub(t, "testing")?.insert("clock_offset_secs".into(), clock_offset_secs.into());
        // For a post-mortem: the nodes' log filter (`GUILD_CHAOS_LOG=info,guild_net=debug`).
        if let Ok(filter) = std::env::var("GUILD_CHAOS_LOG") {
            sub(t, "log")?.insert("filter".into(), filter.into());
        }
        Ok(())
    })
}

/// Mounts a small tmpfs on `dir` (keeping its files): the node whose disk can fill up.
pub(super) fn mount_tmpfs(dir: &Path) -> Result<()> {
    let aside = dir.with_extension("before-tmpfs");
    std::fs::rename(dir, &aside).context("cannot move the data directory aside")?;
    std::fs::create_dir(dir)?;
    let status = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={TMPFS_MIB}m,mode=0700"),
            "tmpfs",
        ])
        .arg(dir)
        .stderr(Stdio::null())
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        std::fs::remove_dir(dir)?;
        std::fs::rename(&aside, dir)?;
        bail!("cannot mount a tmpfs (not root?)");
    }
    // `cp -a`: the store is a directory tree, and modes must stay (private key, token).
    let copied = Command::new("cp")
        .arg("-a")
        .arg(aside.join("."))
        .arg(dir)
        .status()
        .context("cannot run cp")?;
    if !copied.success() {
        bail!("cannot copy {} onto the tmpfs", aside.display());
    }
    std::fs::remove_dir_all(&aside)?;
    // The node's log lives off the tmpfs: what it says while its disk is full is kept, and
    // outlives the unmount at the end.
    let name = dir
        .file_name()
        .ok_or_else(|| anyhow!("{} has no name", dir.display()))?;
    let log = dir.with_file_name(format!("{}.log", name.to_string_lossy()));
    std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    std::os::unix::fs::symlink(&log, dir.join("node.log")).context("cannot link the node's log")?;
    Ok(())
}

/// Unmounts every mount under `root` (a chaos run's tmpfs left by an earlier, killed run).
pub(super) fn unmount_under(root: &Path) {
    let Ok(root) = root.canonicalize() else {
        return;
    };
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return;
    };
    for line in mounts.lines() {
        if let Some(point) = line.split_whitespace().nth(1)
            && Path::new(point).starts_with(&root)
        {
            let _ = Command::new("umount").arg(point).status();
        }
    }
}

/// Fills the file system of `dir` with a ballast file; returns its size.
pub(super) fn fill_disk(dir: &Path) -> Result<u64> {
    let path = dir.join("ballast");
    let mut f = std::fs::File::create(&path).context("cannot create the ballast")?;
    let chunk = vec![0u8; 1 << 20];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => return Err(e).context("cannot write the ballast"),
        }
    }
    let _ = f.sync_all();
    Ok(written)
}
