//! The compile cache of `capsule run`: artifact folders keyed by the policy source and
//! the compiler, so a warm run does no compiling.
//!
//! Layout: `$XDG_CACHE_HOME/capsule/artifacts/<key>/` (else `~/.cache/...`) holds an
//! artifact folder plus `pin`, the blake3 of its manifest. `key` is the blake3 of the
//! compiler's id, the sources it was built from (`build::SOURCE_ID`) and the policy's
//! bytes, so a rebuilt compiler or an edited policy misses: a compiler fixed without a
//! new version number must not keep launching what its predecessor compiled.
//! A hit is loaded through `load_pinned` with that pin, which re-checks every file;
//! anything that does not verify is rebuilt. A hit reads no YAML: whatever `capsule
//! run` needs of the policy it takes from the manifest's launch settings.
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
    hasher.update(build::SOURCE_ID.as_bytes());
    hasher.update(&[0]);
    hasher.update(source);
    hasher.finalize().to_hex().to_string()
}

/// What happened, for `--verbose`.
pub enum Origin {
    Hit,
    Built,
}

/// The artifact cached in `dir`, when its pin file is there and every file verifies
/// against it (`load_pinned`, as `capsule-launch` loads). Nothing is parsed but the
/// manifest: a warm run neither reads the policy's YAML nor lowers it.
pub fn load(dir: &Path, target: Target) -> Option<VerifiedArtifact> {
    let pin = std::fs::read_to_string(dir.join("pin")).ok()?;
    load_pinned(&dir.join(MANIFEST_FILE), Some(pin.trim()), target).ok()
}

/// Compile `source`, written as `format` says; a policy with errors gives its
/// diagnostics back. The key need not name the format: bytes that are both a YAML and
/// a JSON policy are the same policy either way.
pub fn compile(source: &[u8], format: Format) -> Result<build::Artifacts, build::BuildError> {
    build::build_source(source, format, &BuildOptions::default())
}

/// The artifact for `source` from `dir`, compiled and stored there first when missing
/// or not verifying (the Python SDK).
pub fn load_or_build(
    source: &[u8],
    format: Format,
    dir: &Path,
    target: Target,
) -> anyhow::Result<(VerifiedArtifact, Origin)> {
    if let Some(artifact) = load(dir, target) {
        return Ok((artifact, Origin::Hit));
    }
    let artifacts = compile(source, format).map_err(|e| match e {
        build::BuildError::Policy(_) => anyhow::anyhow!("the policy has errors (run `capsulec check` on it)"),
        other => anyhow::anyhow!(other),
    })?;
    Ok((store(&artifacts, dir, target)?, Origin::Built))
}

/// Write `artifacts` into `dir` with its pin file, and load it back verified.
pub fn store(artifacts: &build::Artifacts, dir: &Path, target: Target) -> anyhow::Result<VerifiedArtifact> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    build::write_dir(artifacts, dir).with_context(|| format!("cannot write {}", dir.display()))?;
    let pin_file = dir.join("pin");
    std::fs::write(&pin_file, format!("{}\n", artifacts.pin))
        .with_context(|| format!("cannot write {}", pin_file.display()))?;
    Ok(load_pinned(&dir.join(MANIFEST_FILE), Some(&artifacts.pin), target)?)
}
