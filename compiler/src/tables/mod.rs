//! Syscall tables and constants per target, generated from the kernel sources by
//! `compiler/tools/gen-tables.py` (see its header for the pinned source versions).
//! Do not edit the generated files by hand: rerun the generator.

use capsule_artifacts::Target;

/// One syscall argument, from the kernel's `SYSCALL_DEFINE` signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgDef {
    /// The kernel's name (`SYSCALL_DEFINE3(socket, int, family, ...)`: `family`).
    pub kernel_name: &'static str,
    /// The manual page's name (socket(2): `domain`), when it differs and is known.
    pub man_name: Option<&'static str>,
    /// The C type as written in the kernel signature.
    pub c_type: &'static str,
    /// How many bits the kernel reads: 8, 16, 32 or 64.
    pub bits: u8,
    /// The argument is a user-space pointer: seccomp sees only the address.
    pub pointer: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyscallDef {
    pub name: &'static str,
    pub nr: u32,
    pub args: &'static [ArgDef],
}

/// A named constant policies may use (`AF_INET`, `O_WRONLY`, `EPERM`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConstDef {
    pub name: &'static str,
    pub value: u64,
}

/// Everything the compiler knows about one Linux target.
#[derive(Debug)]
pub struct Table {
    pub target: Target,
    /// Sorted by number.
    pub syscalls: &'static [SyscallDef],
    /// The highest syscall number in the table; numbers above get `newer-syscalls`.
    pub max_nr: u32,
    /// Sorted by name.
    pub constants: &'static [ConstDef],
}

/// The version of the kernel the tables describe, as printed by `capsulec --version`.
pub const KERNEL_VERSION: &str = "6.18";

// TEMPORARY until the generator lands: empty tables so the workspace builds.
static EMPTY_X86_64: Table = Table { target: Target::LinuxX86_64, syscalls: &[], max_nr: 0, constants: &[] };
static EMPTY_AARCH64: Table = Table { target: Target::LinuxAarch64, syscalls: &[], max_nr: 0, constants: &[] };

/// The table of a Linux target. Panics on `Target::Macos`, which has no syscall table.
pub fn table(target: Target) -> &'static Table {
    match target {
        Target::LinuxX86_64 => &EMPTY_X86_64,
        Target::LinuxAarch64 => &EMPTY_AARCH64,
        Target::Macos => panic!("macos has no syscall table"),
    }
}

/// The name of an errno value (`1` → `EPERM`), the same on every Linux target.
pub fn errno_name(_value: u16) -> Option<&'static str> {
    None
}
