//! What the launcher applies besides the seccomp filter: filesystem and network
//! rules (Landlock), resource limits, the environment and audit settings.
//!
//! The compiler lowers the policy's non-syscall sections straight into these types,
//! and the manifest carries them to the launcher unchanged. Paths keep their
//! variables (`${WORKSPACE}`, `${HOME}`, `${TMPDIR}`) unresolved: the launcher
//! resolves them at launch time, so one artifact serves every checkout.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchSettings {
    pub filesystem: Filesystem,
    pub network: Network,
    pub limits: Limits,
    pub env: Env,
    pub audit: Audit,
    pub landlock: Landlock,
}

/// Paths the command may use; everything else is denied once any rule is given.
/// `None` means the policy left that access class unrestricted (no Landlock rule for it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filesystem {
    pub read: Option<Vec<String>>,
    pub write: Option<Vec<String>>,
    pub execute: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortRule {
    pub protocol: Protocol,
    pub port: u16,
}

/// TCP ports the command may connect to and bind. `None`: not restricted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub connect: Option<Vec<PortRule>>,
    pub bind: Option<Vec<PortRule>>,
}

/// setrlimit values (soft = hard), in the kernel's units: seconds and bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub cpu_seconds: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub processes: Option<u64>,
    pub open_files: Option<u64>,
    pub file_size_bytes: Option<u64>,
}

/// The command's environment: only `pass` variables survive, then `set` is applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Env {
    pub pass: Vec<String>,
    pub set: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Record {
    Invocations,
    Denials,
    AuditedSyscalls,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audit {
    /// Where the log goes unless the command line says otherwise.
    pub log: String,
    pub record: Vec<Record>,
}

impl Default for Audit {
    fn default() -> Self {
        Audit { log: "capsule.log".to_owned(), record: vec![Record::Invocations] }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LandlockMode {
    /// The kernel must provide `min_abi` or the command does not run.
    Enforce,
    /// Apply what the kernel offers, report what was left out.
    BestEffort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Landlock {
    /// The lowest Landlock ABI that enforces everything the policy asks for
    /// (1 for files, 4 for TCP ports, 6 for signal and abstract-socket scoping),
    /// or a higher one the policy demands explicitly.
    pub min_abi: u8,
    pub mode: LandlockMode,
    /// Scope signals and abstract UNIX sockets to the sandbox (ABI 6).
    pub scope: bool,
}

impl Default for Landlock {
    fn default() -> Self {
        Landlock { min_abi: 1, mode: LandlockMode::Enforce, scope: true }
    }
}
