//! Compilation targets and their kernel-facing identities.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A platform the compiler emits an artifact for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Target {
    #[serde(rename = "linux-x86_64")]
    LinuxX86_64,
    #[serde(rename = "linux-aarch64")]
    LinuxAarch64,
    #[serde(rename = "macos")]
    Macos,
}

/// `AUDIT_ARCH_X86_64` from linux/audit.h: EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE.
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `AUDIT_ARCH_AARCH64`: EM_AARCH64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE.
pub const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
/// `AUDIT_ARCH_I386`: EM_386 | __AUDIT_ARCH_LE.
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// `__X32_SYSCALL_BIT`: x32 system calls on x86_64 carry this bit in their number.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

impl Target {
    /// Every target, in the order artifacts and reports list them.
    pub const ALL: [Target; 3] = [Target::LinuxX86_64, Target::LinuxAarch64, Target::Macos];
    /// The Linux targets, which get a seccomp-BPF program.
    pub const LINUX: [Target; 2] = [Target::LinuxX86_64, Target::LinuxAarch64];

    pub fn name(self) -> &'static str {
        match self {
            Target::LinuxX86_64 => "linux-x86_64",
            Target::LinuxAarch64 => "linux-aarch64",
            Target::Macos => "macos",
        }
    }

    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }

    pub fn is_linux(self) -> bool {
        !matches!(self, Target::Macos)
    }

    /// The `AUDIT_ARCH_*` value seccomp reports in `seccomp_data.arch`.
    pub fn audit_arch(self) -> Option<u32> {
        match self {
            Target::LinuxX86_64 => Some(AUDIT_ARCH_X86_64),
            Target::LinuxAarch64 => Some(AUDIT_ARCH_AARCH64),
            Target::Macos => None,
        }
    }

    /// The artifact file name holding this target's compiled policy.
    pub fn artifact_file(self) -> &'static str {
        match self {
            Target::LinuxX86_64 => "linux-x86_64.bpf",
            Target::LinuxAarch64 => "linux-aarch64.bpf",
            Target::Macos => "macos.sb",
        }
    }

    /// The target of the machine this code runs on, if Capsule supports it.
    pub fn host() -> Option<Target> {
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            Some(Target::LinuxX86_64)
        } else if cfg!(all(target_os = "linux", target_arch = "aarch64")) {
            Some(Target::LinuxAarch64)
        } else if cfg!(target_os = "macos") {
            Some(Target::Macos)
        } else {
            None
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
