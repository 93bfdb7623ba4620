//! The compile cache of `capsule run`: artifact folders keyed by the policy source and
//! the compiler, so a warm run does no compiling.
//!
//! Layout: `$XDG_CACHE_HOME/capsule/artifacts/<key>/` (else `~/.cache/...`) holds an
//! artifact folder plus `pin`, the blake3 of its manifest. `key` is the blake3 of the
//! compiler's id and the source bytes, so a new compiler or an edited policy misses.
//! A hit is loaded through `load_pinned` with that pin, which re-checks every file;
//! anything that does not verify is rebuilt.
//!
//! Trust: the cache belongs to the user running capsule, like the policy file itself.
//! A cache that lies inside a path the policy lets the command write could be poisoned
//! by the command for the next run, so it is not used then (see `run.rs`).

use anyhow::Context;
use capsule_artifacts::Target;
use capsule_artifacts::manifest::{MANIFEST_FILE, VerifiedArtifact, load_pinned};
use capsule_compiler::build::{self, BuildOptions};
use capsule_compiler::front::Format;
use std::path::{Path, PathBuf};

pub fn cache_root() -> Option<PathBuf> {
    capsule_launch::audit::cache_dir().ok().map(|dir| dir.join("artifacts"))
}

pub fn key(source: &[u8]) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(build::compiler_id().as_bytes());
    hasher.update(&[0]);
    hasher.update(source);
    hasher.finalize().to_hex().to_string()
}

/// What happened, for `--verbose`.
pub enum Origin {
    Hit,
    Built,
}

/// Load the artifact for `source` from `dir`, building it there first when missing or
/// not verifying. `format` says how the source is written; the key need not: bytes
/// that are both a YAML and a JSON policy are the same policy either way.
pub fn load_or_build(
    source: &[u8],
    format: Format,
    dir: &Path,
    target: Target,
) -> anyhow::Result<(VerifiedArtifact, Origin)> {
    let pin_file = dir.join("pin");
    if let Ok(pin) = std::fs::read_to_string(&pin_file)
        && let Ok(artifact) = load_pinned(&dir.join(MANIFEST_FILE), Some(pin.trim()), target)
    {
        return Ok((artifact, Origin::Hit));
    }
    let artifacts = build::build_source(source, format, &BuildOptions::default()).map_err(|e| match e {
        build::BuildError::Policy(_) => anyhow::anyhow!("the policy has errors (run `capsulec check` on it)"),
        other => anyhow::anyhow!(other),
    })?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    build::write_dir(&artifacts, dir).with_context(|| format!("cannot write {}", dir.display()))?;
    std::fs::write(&pin_file, format!("{}\n", artifacts.pin))
        .with_context(|| format!("cannot write {}", pin_file.display()))?;
    let artifact = load_pinned(&dir.join(MANIFEST_FILE), Some(&artifacts.pin), target)?;
    Ok((artifact, Origin::Built))
}
