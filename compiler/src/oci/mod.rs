//! Interoperability with the OCI runtime-spec seccomp format (docker, podman, runc,
//! Kubernetes localhost profiles), in both directions:
//!
//! - [`import_oci`] turns a profile into a `capsule.yaml` for one target, resolving
//!   Docker's `includes`/`excludes` for that architecture and capability set.
//! - [`export_oci`] writes a policy's syscall half as a profile usable with
//!   `docker run --security-opt seccomp=FILE`.
//! - [`kubernetes::export_seccomp_profile`] wraps that profile in the Security
//!   Profiles Operator's `SeccompProfile` resource (`seccompprofile.yaml`).
//!
//! The model of how runc and libseccomp evaluate a profile, which both directions rely
//! on, is written down in docs/oci.md; the parts that matter in code are commented
//! where they are applied.

mod export;
mod import;
pub mod kubernetes;

pub use export::{Exported, export_oci};
pub use import::{DOCKER_DEFAULT_CAPS, ImportError, ImportOptions, ImportReport, Imported, import_oci};

use crate::ir::Action;
use capsule_artifacts::Target;
use serde::{Deserialize, Serialize};

/// A seccomp profile as docker and runc read it: the runtime-spec `linux.seccomp`
/// object plus Docker's `archMap`, `includes` and `excludes`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Profile {
    pub default_action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    /// containers/common's spelling of `defaultErrnoRet` as a name (`"ENOSYS"`);
    /// podman's profile gives both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architectures: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch_map: Option<Vec<ArchMapEntry>>,
    /// `SECCOMP_FILTER_FLAG_*`: how the filter is loaded, not what it decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<Vec<String>>,
    /// Only meaningful with `SCMP_ACT_NOTIFY`, which the importer refuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_metadata: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscalls: Option<Vec<SyscallEntry>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArchMapEntry {
    pub architecture: String,
    #[serde(default)]
    pub sub_architectures: Option<Vec<String>>,
}

/// One entry of `syscalls`: an action for some names, under conditions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyscallEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<String>>,
    /// The pre-runtime-spec-1.0 spelling of a single name; Docker still reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    /// containers/common's spelling of `errnoRet` as a name (`"EPERM"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<ArgCondition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub includes: Option<Filter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excludes: Option<Filter>,
}

/// Docker's `includes` / `excludes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arches: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caps: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_kernel: Option<String>,
}

/// One argument comparison. For `SCMP_CMP_MASKED_EQ`, `value` is the mask and
/// `valueTwo` the value it must equal after masking (libseccomp's datum_a/datum_b).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArgCondition {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: String,
}

/// The comparison operators of the format (libseccomp's `enum scmp_compare`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    MaskedEq,
}

impl Op {
    pub const ALL: [Op; 7] = [Op::Ne, Op::Lt, Op::Le, Op::Eq, Op::Ge, Op::Gt, Op::MaskedEq];

    pub fn oci_name(self) -> &'static str {
        match self {
            Op::Ne => "SCMP_CMP_NE",
            Op::Lt => "SCMP_CMP_LT",
            Op::Le => "SCMP_CMP_LE",
            Op::Eq => "SCMP_CMP_EQ",
            Op::Ge => "SCMP_CMP_GE",
            Op::Gt => "SCMP_CMP_GT",
            Op::MaskedEq => "SCMP_CMP_MASKED_EQ",
        }
    }

    pub fn from_oci_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.oci_name() == name)
    }
}

/// `SCMP_ACT_*` for a Capsule action; the errno goes to `errnoRet`.
pub fn action_oci_name(action: Action) -> (&'static str, Option<u32>) {
    match action {
        Action::KillProcess => ("SCMP_ACT_KILL_PROCESS", None),
        Action::KillThread => ("SCMP_ACT_KILL_THREAD", None),
        Action::Trap => ("SCMP_ACT_TRAP", None),
        Action::Errno(n) => ("SCMP_ACT_ERRNO", Some(u32::from(n))),
        Action::Log => ("SCMP_ACT_LOG", None),
        Action::Allow => ("SCMP_ACT_ALLOW", None),
    }
}

/// Why an `SCMP_ACT_*` name has no Capsule action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionProblem {
    Unknown,
    /// `SCMP_ACT_TRACE` and `SCMP_ACT_NOTIFY` hand the decision to another process.
    Delegated,
    /// An errno above the kernel's MAX_ERRNO (4095).
    ErrnoOutOfRange,
}

/// The Capsule action of an `SCMP_ACT_*` name with its `errnoRet`. As in runc, an
/// `SCMP_ACT_ERRNO` without `errnoRet` means EPERM, and `SCMP_ACT_KILL` is libseccomp's
/// old name for kill-thread.
pub fn action_from_oci(name: &str, errno_ret: Option<u32>) -> Result<Action, ActionProblem> {
    const EPERM: u16 = 1;
    const MAX_ERRNO: u32 = 4095;
    Ok(match name {
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Action::KillThread,
        "SCMP_ACT_KILL_PROCESS" => Action::KillProcess,
        "SCMP_ACT_TRAP" => Action::Trap,
        "SCMP_ACT_ERRNO" => match errno_ret {
            None => Action::Errno(EPERM),
            Some(n) if n <= MAX_ERRNO => Action::Errno(n as u16),
            Some(_) => return Err(ActionProblem::ErrnoOutOfRange),
        },
        "SCMP_ACT_LOG" => Action::Log,
        "SCMP_ACT_ALLOW" => Action::Allow,
        "SCMP_ACT_TRACE" | "SCMP_ACT_NOTIFY" => return Err(ActionProblem::Delegated),
        _ => return Err(ActionProblem::Unknown),
    })
}

/// libseccomp's name of a target's native architecture.
pub fn scmp_arch(target: Target) -> Option<&'static str> {
    match target {
        Target::LinuxX86_64 => Some("SCMP_ARCH_X86_64"),
        Target::LinuxAarch64 => Some("SCMP_ARCH_AARCH64"),
        Target::Macos => None,
    }
}

/// The other ABIs a target's kernel accepts calls through (i386 and x32 on x86_64,
/// 32-bit arm on aarch64): what Capsule's `foreign-arch` covers.
pub fn scmp_sub_arches(target: Target) -> &'static [&'static str] {
    match target {
        Target::LinuxX86_64 => &["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        Target::LinuxAarch64 => &["SCMP_ARCH_ARM"],
        Target::Macos => &[],
    }
}

/// The name Docker matches `includes.arches` / `excludes.arches` against: Go's
/// `runtime.GOARCH` as moby spells it (`amd64`, `arm64`).
pub fn docker_arch(target: Target) -> Option<&'static str> {
    match target {
        Target::LinuxX86_64 => Some("amd64"),
        Target::LinuxAarch64 => Some("arm64"),
        Target::Macos => None,
    }
}
