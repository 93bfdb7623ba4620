//! `capsulec build`: the whole pipeline from policy bytes to the artifact folder.
//!
//! check → passes → verify → back-ends → translation validation → manifest. Nothing is
//! returned (so nothing is written) unless every back-end's output has been checked
//! against the IR before the passes. The output depends on the source bytes and the
//! compiler version only: no time, path, locale or map order reaches it.

use crate::back::validate::{ValidationError, ValidationReport};
use crate::back::{bpf, sbpl, validate};
use crate::diagnostic::Diagnostic;
use crate::ir::Policy;
use crate::{front, passes, tables, valid};
use capsule_artifacts::Target;
use capsule_artifacts::manifest::{self, FileEntry, Manifest};
use capsule_artifacts::notify::NotifyTable;
use std::collections::BTreeMap;
use std::path::Path;

/// The compiler as the manifest names it: the version and the syscall tables, since
/// both decide what an artifact allows.
pub fn compiler_id() -> String {
    format!("capsulec {} (syscall tables: Linux {})", env!("CARGO_PKG_VERSION"), tables::KERNEL_VERSION)
}

/// The blake3 of the sources this compiler was built from (compiler/build.rs): what
/// `capsule run`'s cache keys on besides the policy's bytes, since two builds with one
/// [`compiler_id`] can compile a policy differently. Not in the manifest, so that an
/// artifact's bytes depend on the policy and the compiler's version only.
pub const SOURCE_ID: &str = env!("CAPSULE_COMPILER_SOURCE_ID");

#[derive(Debug, Default, Clone)]
pub struct BuildOptions {
    /// Only these targets (each must be one of the policy's); all of them when empty.
    pub targets: Vec<Target>,
}

/// A built artifact folder, in memory.
#[derive(Debug, Clone)]
pub struct Artifacts {
    /// File name → bytes, the manifest included.
    pub files: BTreeMap<String, Vec<u8>>,
    /// The blake3 of manifest.json.
    pub pin: String,
    pub manifest: Manifest,
    /// The policy before the passes (the reference the output was validated against).
    pub policy: Policy,
    /// The policy after the passes.
    pub optimised: Policy,
    pub validation: Vec<ValidationReport>,
    /// What the macOS profile's validation covered, when macos.sb was built.
    pub macos_validation: Option<sbpl::validate::SbplReport>,
    /// Warnings and notes from the front-end.
    pub diagnostics: Vec<Diagnostic>,
    /// Where oci-seccomp.json (or seccompprofile.yaml) approximates the policy, each
    /// prefixed with the file's name.
    pub oci_warnings: Vec<String>,
}

/// The OCI runtime-spec seccomp profile's file name in the folder.
pub const OCI_FILE: &str = "oci-seccomp.json";
/// The Kubernetes SeccompProfile's file name in the folder.
pub const KUBE_FILE: &str = "seccompprofile.yaml";

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the policy has errors")]
    Policy(Vec<Diagnostic>),
    #[error("--target {0} is not one of the policy's targets")]
    TargetNotInPolicy(Target),
    #[error("internal error: the optimised IR does not verify: {0}")]
    Verify(#[from] valid::VerifyError),
    #[error(transparent)]
    Codegen(#[from] bpf::CodegenError),
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error(transparent)]
    Sbpl(#[from] sbpl::SbplError),
    #[error(transparent)]
    SbplValidation(#[from] sbpl::validate::SbplValidationError),
}

/// The macOS back-end's output: the profile, its text, and what its validation covered.
pub struct MacosProfile {
    pub profile: sbpl::ast::Profile,
    pub text: String,
    pub report: sbpl::validate::SbplReport,
}

/// Compile and validate a verified policy's macOS profile. `facts` come from the
/// policy before a `--target` selection dropped its Linux rules.
pub fn macos_profile(
    policy: &Policy,
    info: &valid::PolicyInfo,
    facts: &sbpl::SyscallFacts,
) -> Result<MacosProfile, BuildError> {
    let profile = sbpl::compile(policy, info, facts)?;
    let text = sbpl::emit::emit(&profile);
    let report = sbpl::validate::validate(policy, facts, &profile, &text)?;
    Ok(MacosProfile { profile, text, report })
}

/// Compile a YAML policy into its artifact folder, validated, in memory.
pub fn build(source: &[u8], options: &BuildOptions) -> Result<Artifacts, BuildError> {
    build_source(source, front::Format::Yaml, options)
}

/// Compile a policy written in `format` (YAML or its JSON form). The two forms of one
/// policy give byte-identical files; the manifests differ only in `source_blake3`,
/// the hash of the bytes compiled.
pub fn build_source(source: &[u8], format: front::Format, options: &BuildOptions) -> Result<Artifacts, BuildError> {
    let checked = front::check_source_bytes(source, format);
    let diagnostics = checked.diagnostics;
    let Some(mut policy) = checked.policy else { return Err(BuildError::Policy(diagnostics)) };
    // Read before a --target selection drops the Linux rules the profile reads.
    let facts = sbpl::SyscallFacts::of(&policy);
    if !options.targets.is_empty() {
        if let Some(&t) = options.targets.iter().find(|t| !policy.targets.contains(t)) {
            return Err(BuildError::TargetNotInPolicy(t));
        }
        policy.targets.retain(|t| options.targets.contains(t));
        policy.syscalls.retain(|s| options.targets.contains(&s.target));
    }
    valid::verify(&policy)?;
    let optimised = passes::run_all(&policy);
    let info = valid::verify(&optimised)?;

    let mut files = BTreeMap::new();
    let mut entries = Vec::new();
    let mut validation = Vec::new();
    let mut oci_warnings = Vec::new();
    for target in policy.targets.iter().copied().filter(|t| t.is_linux()) {
        let program = bpf::compile(&optimised, &info, target)?;
        validation.push(validate::validate(&policy, &info, target, &program)?);
        let bytes = crate::bpf::encode(&program);
        let notify = info.target(target).filter(|t| t.needs_user_notif()).map(|t| t.notify.clone());
        entries.push(entry(target.artifact_file(), Some(target), &bytes, notify));
        files.insert(target.artifact_file().to_owned(), bytes);
    }

    let mut macos_validation = None;
    if policy.targets.contains(&Target::Macos) {
        let macos = macos_profile(&policy, &info, &facts)?;
        let bytes = macos.text.into_bytes();
        entries.push(entry(Target::Macos.artifact_file(), Some(Target::Macos), &bytes, None));
        files.insert(Target::Macos.artifact_file().to_owned(), bytes);
        macos_validation = Some(macos.report);
    }

    if policy.targets.iter().any(|t| t.is_linux()) {
        let oci = crate::oci::export_oci(&policy);
        let bytes = oci.json.into_bytes();
        entries.push(entry(OCI_FILE, None, &bytes, None));
        files.insert(OCI_FILE.to_owned(), bytes);
        oci_warnings = oci.warnings.into_iter().map(|w| format!("{OCI_FILE}: {w}")).collect();
        // The same decisions as a Kubernetes SeccompProfile (docs/kubernetes.md).
        let kube = crate::oci::kubernetes::export_seccomp_profile(&policy);
        entries.push(entry(KUBE_FILE, None, kube.yaml.as_bytes(), None));
        files.insert(KUBE_FILE.to_owned(), kube.yaml.into_bytes());
        oci_warnings.extend(kube.warnings.into_iter().map(|w| format!("{KUBE_FILE}: {w}")));
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));

    let manifest = Manifest {
        format: manifest::FORMAT.to_owned(),
        version: manifest::VERSION,
        policy: manifest::PolicyInfo {
            name: policy.name.clone(),
            source_blake3: blake3::hash(source).to_hex().to_string(),
        },
        compiler: compiler_id(),
        files: entries,
        launch: policy.launch.clone(),
    };
    let manifest_bytes = manifest.to_bytes();
    let pin = Manifest::pin(&manifest_bytes);
    files.insert(manifest::MANIFEST_FILE.to_owned(), manifest_bytes);
    Ok(Artifacts { files, pin, manifest, policy, optimised, validation, macos_validation, diagnostics, oci_warnings })
}

fn entry(name: &str, target: Option<Target>, bytes: &[u8], notify: Option<NotifyTable>) -> FileEntry {
    FileEntry {
        name: name.to_owned(),
        target,
        blake3: blake3::hash(bytes).to_hex().to_string(),
        size: bytes.len() as u64,
        notify,
    }
}

/// Write the folder: every file to a temporary name first, then renamed into place,
/// the manifest last, so a reader never pins a manifest whose files are half written.
pub fn write_dir(artifacts: &Artifacts, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let manifest_name = manifest::MANIFEST_FILE;
    let order = artifacts
        .files
        .keys()
        .filter(|n| *n != manifest_name)
        .chain(std::iter::once(&manifest_name.to_owned()))
        .cloned()
        .collect::<Vec<_>>();
    for name in order {
        let bytes = &artifacts.files[&name];
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, dir.join(&name))?;
    }
    Ok(())
}
