//! The artifact folder's `manifest.json`: format version, what was compiled, and the
//! blake3 pin of every other file. Its own blake3 is the pin users hand to
//! `capsule-launch --pin`. The serialisation is deterministic (fields in declaration
//! order, maps as BTreeMap) so the same policy gives the same bytes.
//!
//! The compiler writes it with [`Manifest::to_bytes`]; the launcher reads it with
//! [`load_pinned`], which trusts nothing it has not hashed. The format is documented in
//! `docs/artifact-format.md`.

use crate::notify::NotifyTable;
use crate::{LaunchSettings, Target};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The value of the manifest's `format` field.
pub const FORMAT: &str = "capsule-artifacts";
/// The one manifest version this code reads and writes.
pub const VERSION: u32 = 3;
/// The manifest's file name inside an artifact folder.
pub const MANIFEST_FILE: &str = "manifest.json";
/// A manifest larger than this is refused before it is parsed.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// One classic BPF instruction (`struct sock_filter`) is 8 bytes.
pub const BPF_INSTRUCTION_BYTES: u64 = 8;
/// The kernel's `BPF_MAXINSNS`: a seccomp program has at most this many instructions.
pub const MAX_BPF_INSTRUCTIONS: u64 = 4096;
/// The largest BPF blob accepted: `BPF_MAXINSNS` instructions.
pub const MAX_BPF_BYTES: u64 = MAX_BPF_INSTRUCTIONS * BPF_INSTRUCTION_BYTES;
/// Any other listed file (Seatbelt profile, OCI profile) larger than this is refused.
pub const MAX_OTHER_FILE_BYTES: u64 = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`] for manifests this code writes.
    pub version: u32,
    pub policy: PolicyInfo,
    /// The compiler that wrote the folder, e.g. `capsulec 0.1.0`.
    pub compiler: String,
    /// Every other file of the folder, with its pin.
    pub files: Vec<FileEntry>,
    /// What the launcher applies besides the seccomp filter.
    pub launch: LaunchSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyInfo {
    pub name: String,
    /// blake3 (lowercase hex) of the policy source the folder was compiled from.
    pub source_blake3: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// A plain file name inside the folder (no `/`, not `.` or `..`).
    pub name: String,
    /// The target this file serves; `None` for files that serve several
    /// (`oci-seccomp.json` holds every Linux target).
    pub target: Option<Target>,
    /// blake3 (lowercase hex) of the file's bytes.
    pub blake3: String,
    /// The file's length in bytes.
    pub size: u64,
    /// For a seccomp program that returns `SECCOMP_RET_USER_NOTIF` somewhere: what the
    /// supervisor answers per syscall number. The launcher installs such a program
    /// with a listener and supervises it.
    pub notify: Option<NotifyTable>,
}

impl FileEntry {
    /// The launcher must install this program with a notification listener.
    pub fn user_notif(&self) -> bool {
        self.notify.is_some()
    }
}

impl Manifest {
    /// The canonical bytes: pretty JSON, fields in declaration order, a trailing newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes =
            serde_json::to_vec_pretty(self).expect("a manifest always serialises: no maps with non-string keys");
        bytes.push(b'\n');
        bytes
    }

    /// The pin of a manifest file: the blake3 (lowercase hex) of its exact bytes.
    pub fn pin(bytes: &[u8]) -> String {
        blake3::hash(bytes).to_hex().to_string()
    }

    /// The entry holding `target`'s compiled policy (`linux-x86_64.bpf`, ...).
    pub fn entry_for(&self, target: Target) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.target == Some(target) && f.name == target.artifact_file())
    }

    /// The targets this folder has a compiled policy for, in manifest order.
    pub fn targets(&self) -> Vec<Target> {
        self.files.iter().filter_map(|f| f.target.filter(|t| f.name == t.artifact_file())).collect()
    }
}

/// An artifact whose manifest and every listed file matched their pins.
#[derive(Debug, Clone)]
pub struct VerifiedArtifact {
    /// The folder holding the manifest.
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// The blake3 of the manifest's bytes, whether or not the caller gave one to check.
    pub pin: String,
    pub target: Target,
    /// The target's manifest entry.
    pub entry: FileEntry,
    /// The target's compiled policy, checked against `entry`.
    pub blob: Vec<u8>,
}

impl VerifiedArtifact {
    pub fn launch(&self) -> &LaunchSettings {
        &self.manifest.launch
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("cannot read {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{} is {size} bytes, more than the {limit}-byte limit for {what}", path.display())]
    TooLarge { path: PathBuf, what: &'static str, size: u64, limit: u64 },
    #[error("{} is not a capsule manifest: {source}", path.display())]
    NotJson { path: PathBuf, source: serde_json::Error },
    #[error("{} has format {found:?}, expected {FORMAT:?}", path.display())]
    WrongFormat { path: PathBuf, found: String },
    #[error(
        "{} is manifest version {found}, and this launcher reads only version {VERSION}; \
         rebuild the artifacts with a matching capsulec or use a matching launcher",
        path.display()
    )]
    UnsupportedVersion { path: PathBuf, found: u64 },
    #[error("{} does not follow the version {VERSION} schema: {source}", path.display())]
    Schema { path: PathBuf, source: serde_json::Error },
    #[error("the pin {pin:?} is not a blake3 hash (64 hex digits)")]
    MalformedPin { pin: String },
    #[error(
        "the manifest's pin is {actual}, but {expected} was expected: the manifest was changed or is not the one pinned"
    )]
    PinMismatch { expected: String, actual: String },
    #[error("manifest field {field} is not a blake3 hash (64 lowercase hex digits): {value:?}")]
    MalformedHash { field: String, value: String },
    #[error("manifest lists the file name {name:?}, which is not a plain file name in the artifact folder")]
    BadFileName { name: String },
    #[error("manifest lists {name:?} twice")]
    DuplicateFile { name: String },
    #[error("the artifacts have no compiled policy for {target} (they have: {available})")]
    MissingTarget { target: Target, available: String },
    #[error("{name} is {size} bytes: a BPF program must be 8 to {MAX_BPF_BYTES} bytes, a multiple of 8")]
    BadBpfSize { name: String, size: u64 },
    #[error("{name} is {actual} bytes, but the manifest pins {expected} bytes: the file was changed")]
    SizeMismatch { name: String, expected: u64, actual: u64 },
    #[error("{name} hashes to {actual}, but the manifest pins {expected}: the file was changed")]
    HashMismatch { name: String, expected: String, actual: String },
}

/// Reads and verifies an artifact folder for `target`.
///
/// `path` is the folder or its `manifest.json`. With `expected_pin`, the manifest's own
/// blake3 must equal it. Every listed file must match its pinned size and hash, not only
/// the target's: a tampered file anywhere refuses the whole folder.
pub fn load_pinned(path: &Path, expected_pin: Option<&str>, target: Target) -> Result<VerifiedArtifact, ArtifactError> {
    let (dir, manifest_path) = if path.is_dir() {
        (path.to_path_buf(), path.join(MANIFEST_FILE))
    } else {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
        (dir, path.to_path_buf())
    };

    // The pin is checked before the bytes are parsed: a pinned launcher never feeds
    // unpinned bytes to the JSON parser.
    let expected_pin = expected_pin.map(normalise_pin).transpose()?;
    let bytes = read_capped(&manifest_path, MAX_MANIFEST_BYTES, "a manifest")?;
    let pin = Manifest::pin(&bytes);
    if let Some(expected) = expected_pin
        && expected != pin
    {
        return Err(ArtifactError::PinMismatch { expected, actual: pin });
    }

    let manifest = parse(&manifest_path, &bytes)?;
    check_entries(&manifest)?;

    let Some(entry) = manifest.entry_for(target).cloned() else {
        let available: Vec<&str> = manifest.targets().iter().map(|t| t.name()).collect();
        let available = if available.is_empty() { "none".to_owned() } else { available.join(", ") };
        return Err(ArtifactError::MissingTarget { target, available });
    };

    let mut blob = None;
    for file in &manifest.files {
        let bytes = read_listed(&dir, file)?;
        if file.name == entry.name {
            blob = Some(bytes);
        }
    }
    let blob = blob.expect("the target's entry is one of the listed files");

    Ok(VerifiedArtifact { dir, manifest, pin, target, entry, blob })
}

/// The format and version decide first: a newer manifest is refused for its version
/// rather than for a field this code does not know. A manifest of this version parses
/// in one pass (every launch reads one), and only a document that does not parse as
/// one is read again, on a minimal view, to say which of the three it is.
fn parse(path: &Path, bytes: &[u8]) -> Result<Manifest, ArtifactError> {
    #[derive(Deserialize)]
    struct Header {
        format: String,
        version: u64,
    }
    let check = |format: &str, version: u64| {
        if format != FORMAT {
            return Err(ArtifactError::WrongFormat { path: path.to_path_buf(), found: format.to_owned() });
        }
        if version != u64::from(VERSION) {
            return Err(ArtifactError::UnsupportedVersion { path: path.to_path_buf(), found: version });
        }
        Ok(())
    };
    match serde_json::from_slice::<Manifest>(bytes) {
        Ok(manifest) => check(&manifest.format, u64::from(manifest.version)).map(|()| manifest),
        Err(source) => {
            let header: Header = serde_json::from_slice(bytes)
                .map_err(|source| ArtifactError::NotJson { path: path.to_path_buf(), source })?;
            check(&header.format, header.version)?;
            Err(ArtifactError::Schema { path: path.to_path_buf(), source })
        }
    }
}

fn check_entries(manifest: &Manifest) -> Result<(), ArtifactError> {
    check_hash("policy.source_blake3", &manifest.policy.source_blake3)?;
    let mut seen = std::collections::BTreeSet::new();
    for file in &manifest.files {
        let name = &file.name;
        let plain =
            !name.is_empty() && name != "." && name != ".." && name != MANIFEST_FILE && !name.contains(['/', '\0']);
        if !plain {
            return Err(ArtifactError::BadFileName { name: name.clone() });
        }
        if !seen.insert(name.as_str()) {
            return Err(ArtifactError::DuplicateFile { name: name.clone() });
        }
        check_hash(&format!("files[{name}].blake3"), &file.blake3)?;
        if is_bpf(file) && !valid_bpf_size(file.size) {
            return Err(ArtifactError::BadBpfSize { name: name.clone(), size: file.size });
        }
    }
    Ok(())
}

fn is_bpf(file: &FileEntry) -> bool {
    file.name.ends_with(".bpf")
}

fn valid_bpf_size(size: u64) -> bool {
    size > 0 && size <= MAX_BPF_BYTES && size.is_multiple_of(BPF_INSTRUCTION_BYTES)
}

fn read_listed(dir: &Path, file: &FileEntry) -> Result<Vec<u8>, ArtifactError> {
    let limit = if is_bpf(file) { MAX_BPF_BYTES } else { MAX_OTHER_FILE_BYTES };
    let bytes = read_capped(&dir.join(&file.name), limit, "an artifact file")?;
    let actual_size = bytes.len() as u64;
    if actual_size != file.size {
        return Err(ArtifactError::SizeMismatch { name: file.name.clone(), expected: file.size, actual: actual_size });
    }
    let actual = blake3::hash(&bytes).to_hex().to_string();
    if actual != file.blake3 {
        return Err(ArtifactError::HashMismatch { name: file.name.clone(), expected: file.blake3.clone(), actual });
    }
    Ok(bytes)
}

/// Reads at most `limit` bytes; a file that is (or grows) larger is refused rather
/// than truncated.
fn read_capped(path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>, ArtifactError> {
    let io_error = |source| ArtifactError::Io { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(io_error)?;
    // Sized from fstat so the file comes in one read rather than a doubling series of
    // them (the launcher reads every pinned file on every launch); the cap still holds
    // if the file grows meanwhile.
    let hint = file.metadata().map(|m| m.len().min(limit) + 1).unwrap_or(0);
    let mut bytes = Vec::with_capacity(usize::try_from(hint).unwrap_or(0));
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io_error)?;
    let size = bytes.len() as u64;
    if size > limit {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(size).max(size);
        return Err(ArtifactError::TooLarge { path: path.to_path_buf(), what, size, limit });
    }
    Ok(bytes)
}

fn is_blake3_hex(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn check_hash(field: &str, value: &str) -> Result<(), ArtifactError> {
    if is_blake3_hex(value) {
        Ok(())
    } else {
        Err(ArtifactError::MalformedHash { field: field.to_owned(), value: value.to_owned() })
    }
}

/// Pins are compared in lowercase; users may paste them in either case.
fn normalise_pin(pin: &str) -> Result<String, ArtifactError> {
    let lower = pin.trim().to_ascii_lowercase();
    if is_blake3_hex(&lower) { Ok(lower) } else { Err(ArtifactError::MalformedPin { pin: pin.to_owned() }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOB: &[u8] = &[0x06, 0, 0, 0, 0, 0, 0xff, 0x7f]; // ret ALLOW

    fn hash(bytes: &[u8]) -> String {
        blake3::hash(bytes).to_hex().to_string()
    }

    fn manifest(files: Vec<FileEntry>) -> Manifest {
        Manifest {
            format: FORMAT.to_owned(),
            version: VERSION,
            policy: PolicyInfo { name: "test".to_owned(), source_blake3: hash(b"policy") },
            compiler: "test".to_owned(),
            files,
            launch: LaunchSettings::default(),
        }
    }

    fn entry(name: &str, target: Target, bytes: &[u8]) -> FileEntry {
        FileEntry {
            name: name.to_owned(),
            target: Some(target),
            blake3: hash(bytes),
            size: bytes.len() as u64,
            notify: None,
        }
    }

    /// Writes the files and the manifest; returns the folder and the pin.
    fn folder(files: &[(&str, &[u8])], manifest: &Manifest) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let bytes = manifest.to_bytes();
        std::fs::write(dir.path().join(MANIFEST_FILE), &bytes).unwrap();
        (dir, Manifest::pin(&bytes))
    }

    fn valid() -> (tempfile::TempDir, String) {
        let oci = b"{}";
        folder(
            &[("linux-x86_64.bpf", BLOB), ("oci-seccomp.json", oci)],
            &manifest(vec![
                entry("linux-x86_64.bpf", Target::LinuxX86_64, BLOB),
                entry("oci-seccomp.json", Target::LinuxX86_64, oci),
            ]),
        )
    }

    #[test]
    fn serialisation_is_canonical_and_round_trips() {
        let m = manifest(vec![entry("linux-x86_64.bpf", Target::LinuxX86_64, BLOB)]);
        let bytes = m.to_bytes();
        assert_eq!(bytes.last(), Some(&b'\n'));
        let text = std::str::from_utf8(&bytes).unwrap();
        let order: Vec<usize> = ["\"format\"", "\"version\"", "\"policy\"", "\"compiler\"", "\"files\"", "\"launch\""]
            .iter()
            .map(|key| text.find(key).unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
        let back: Manifest = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.to_bytes(), bytes);
    }

    #[test]
    fn loads_a_valid_folder_with_and_without_pin() {
        let (dir, pin) = valid();
        let artifact = load_pinned(dir.path(), Some(&pin.to_uppercase()), Target::LinuxX86_64).unwrap();
        assert_eq!(artifact.blob, BLOB);
        assert_eq!(artifact.pin, pin);
        let by_file = load_pinned(&dir.path().join(MANIFEST_FILE), None, Target::LinuxX86_64).unwrap();
        assert_eq!(by_file.dir, dir.path());
    }

    #[test]
    fn wrong_or_malformed_pin_refuses() {
        let (dir, pin) = valid();
        let other = hash(b"other");
        let err = load_pinned(dir.path(), Some(&other), Target::LinuxX86_64).unwrap_err();
        assert!(matches!(err, ArtifactError::PinMismatch { ref actual, .. } if *actual == pin), "{err}");
        let err = load_pinned(dir.path(), Some("abc"), Target::LinuxX86_64).unwrap_err();
        assert!(matches!(err, ArtifactError::MalformedPin { .. }), "{err}");
    }

    #[test]
    fn tampered_files_refuse_even_when_not_the_target() {
        let (dir, _) = valid();
        std::fs::write(dir.path().join("oci-seccomp.json"), b"[]").unwrap();
        let err = load_pinned(dir.path(), None, Target::LinuxX86_64).unwrap_err();
        assert!(matches!(err, ArtifactError::HashMismatch { ref name, .. } if name == "oci-seccomp.json"), "{err}");

        let (dir, _) = valid();
        std::fs::write(dir.path().join("linux-x86_64.bpf"), [BLOB, BLOB].concat()).unwrap();
        let err = load_pinned(dir.path(), None, Target::LinuxX86_64).unwrap_err();
        assert!(matches!(err, ArtifactError::SizeMismatch { expected: 8, actual: 16, .. }), "{err}");
    }

    #[test]
    fn unknown_version_and_format_refuse_with_reason() {
        let mut m = manifest(vec![]);
        for version in [VERSION - 1, VERSION + 1] {
            m.version = version;
            let (dir, _) = folder(&[], &m);
            let err = load_pinned(dir.path(), None, Target::LinuxX86_64).unwrap_err();
            assert!(err.to_string().contains(&format!("is manifest version {version}")), "{err}");
        }

        // A newer manifest with a field this code does not know: refused for its version.
        m.version = VERSION + 1;
        let (dir, _) = folder(&[], &m);
        let path = dir.path().join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).unwrap().replacen("\"compiler\"", "\"extra\": 1, \"compiler\"", 1);
        std::fs::write(&path, text).unwrap();
        let err = load_pinned(dir.path(), None, Target::LinuxX86_64).unwrap_err();
        assert!(matches!(err, ArtifactError::UnsupportedVersion { .. }), "{err}");

        let mut m = manifest(vec![]);
        m.format = "other".to_owned();
        let (dir, _) = folder(&[], &m);
        let err = load_pinned(dir.path(), None, Target::LinuxX86_64).unwrap_err();
        assert!(matches!(err, ArtifactError::WrongFormat { .. }), "{err}");
    }

    #[test]
    fn unknown_fields_refuse() {
        let (dir, _) = valid();
        let path = dir.path().join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).unwrap().replacen("\"compiler\"", "\"extra\": 1, \"compiler\"", 1);
        std::fs::write(&path, text).unwrap();
        let err = load_pinned(dir.path(), None, Target::LinuxX86_64).unwrap_err();
        assert!(matches!(err, ArtifactError::Schema { .. }), "{err}");
    }

    #[test]
    fn size_caps() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MANIFEST_FILE), vec![b' '; MAX_MANIFEST_BYTES as usize + 1]).unwrap();
        let err = load_pinned(dir.path(), None, Target::LinuxX86_64).unwrap_err();
        assert!(matches!(err, ArtifactError::TooLarge { .. }), "{err}");

        for bad in [vec![], vec![0u8; 12], vec![0u8; MAX_BPF_BYTES as usize + 8]] {
            let (dir, _) = folder(
                &[("linux-x86_64.bpf", &bad)],
                &manifest(vec![entry("linux-x86_64.bpf", Target::LinuxX86_64, &bad)]),
            );
            let err = load_pinned(dir.path(), None, Target::LinuxX86_64).unwrap_err();
            assert!(matches!(err, ArtifactError::BadBpfSize { .. }), "{err}");
        }
    }

    #[test]
    fn file_names_must_stay_in_the_folder() {
        for name in ["../linux-x86_64.bpf", "", "..", "manifest.json", "a/b"] {
            let (dir, _) = folder(&[], &manifest(vec![entry(name, Target::LinuxX86_64, BLOB)]));
            let err = load_pinned(dir.path(), None, Target::LinuxX86_64).unwrap_err();
            assert!(matches!(err, ArtifactError::BadFileName { .. }), "{name}: {err}");
        }
    }

    #[test]
    fn missing_target_names_the_available_ones() {
        let (dir, _) = valid();
        let err = load_pinned(dir.path(), None, Target::LinuxAarch64).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the artifacts have no compiled policy for linux-aarch64 (they have: linux-x86_64)"
        );
    }
}
