//! Trusted policies: which `./capsule.yaml` files `capsule run` may use without
//! `--policy`.
//!
//! The built-in default policy lets the command write its workspace, so a sandboxed
//! command can leave a `capsule.yaml` there, and the next `capsule run` in that
//! directory would run under it. So a policy found in the current directory is used
//! only when its exact bytes were trusted by the user: `capsule trust` (or
//! `capsule init`, which writes it) records the blake3 of the file with its absolute
//! path, in the per-user state directory; editing the file means trusting it again.
//!
//! The store is one line per trusted file, `<blake3 hex>  <absolute path>`: trusting a
//! file replaces its earlier line, so a command cannot roll a tightened policy back to
//! bytes that were trusted before.
//! It lives beside the audit log, and a policy that lets the command write it is
//! refused like one that lets it write the log (see `run.rs`).

use anyhow::Context;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const STORE_FILE: &str = "trusted-policies";

/// Where the trusted hashes are kept.
pub fn store_path() -> anyhow::Result<PathBuf> {
    Ok(capsule_launch::audit::state_dir().map_err(anyhow::Error::msg)?.join(STORE_FILE))
}

/// The store's line for `source` at `path`: the file's own absolute path (its directory
/// resolved, the name itself not followed), which may hold no control character, since
/// a newline in it would forge a second line.
fn entry(path: &Path, source: &[u8]) -> anyhow::Result<Vec<u8>> {
    let name = path.file_name().with_context(|| format!("{} names no file", path.display()))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let absolute = dir.canonicalize().with_context(|| format!("cannot resolve {}", dir.display()))?.join(name);
    anyhow::ensure!(
        !absolute.as_os_str().as_bytes().iter().any(u8::is_ascii_control),
        "{} has a control character in its path; move the policy to a plain path",
        absolute.display()
    );
    let mut line = blake3::hash(source).to_hex().as_bytes().to_vec();
    line.extend_from_slice(b"  ");
    line.extend_from_slice(absolute.as_os_str().as_bytes());
    Ok(line)
}

/// The store's bytes; empty before anything was trusted.
fn read_store(store: &Path) -> anyhow::Result<Vec<u8>> {
    match std::fs::read(store) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read the trusted policies {}", store.display())),
    }
}

fn lines(store: &[u8]) -> impl Iterator<Item = &[u8]> {
    store.split(|&b| b == b'\n').filter(|line| !line.is_empty())
}

/// Whether these exact bytes of the file at `path` were trusted.
pub fn is_trusted(path: &Path, source: &[u8]) -> anyhow::Result<bool> {
    let wanted = entry(path, source)?;
    Ok(lines(&read_store(&store_path()?)?).any(|line| line == wanted.as_slice()))
}

/// Reads a policy file that must not be a symlink: a link in the workspace could
/// borrow a policy trusted for another directory (or follow one the command swaps).
pub fn read_plain(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    // Non-blocking, so that a FIFO in its place cannot hang the open.
    let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK;
    let mut file = std::fs::OpenOptions::new().read(true).custom_flags(flags).open(path).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            std::io::Error::new(e.kind(), "it is a symlink; trust and use the file it points to instead")
        } else {
            e
        }
    })?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "it is not a regular file"));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Trusts the current bytes of the policy at `path`; returns their blake3.
pub fn trust(path: &Path) -> anyhow::Result<String> {
    let source = read_plain(path).with_context(|| format!("cannot read {}", path.display()))?;
    let hash = blake3::hash(&source).to_hex().to_string();
    let line = entry(path, &source)?;
    let store = store_path()?;
    let old = read_store(&store)?;
    if lines(&old).any(|l| l == line.as_slice()) {
        return Ok(hash);
    }
    let dir = store.parent().context("the store has no directory")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    // The path part of a line starts after the hash and two spaces.
    let same_path = |other: &[u8]| other.len() > 66 && other[66..] == line[66..];
    let mut new: Vec<u8> = Vec::with_capacity(old.len() + line.len() + 1);
    for kept in lines(&old).filter(|l| !same_path(l)) {
        new.extend_from_slice(kept);
        new.push(b'\n');
    }
    new.extend_from_slice(&line);
    new.push(b'\n');
    // Replaced whole (write a temporary, then rename), so a reader sees the old list or
    // the new one.
    let temp = dir.join(format!(".{STORE_FILE}.{}.new", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|mut file| file.write_all(&new).and_then(|()| file.sync_data()))
        .and_then(|()| std::fs::rename(&temp, &store))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&temp);
        })
        .with_context(|| format!("cannot write {}", store.display()))?;
    Ok(hash)
}
