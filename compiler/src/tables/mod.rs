//! Syscall tables and constants per target, generated from the kernel sources by
//! `compiler/tools/gen-tables.py` (see its header for the pinned source versions).
//! Do not edit the generated files (`linux_x86_64.rs`, `linux_aarch64.rs`,
//! `common.rs`) by hand: rerun the generator (docs/tables.md says how).
//!
//! Every lookup is a binary search over a static sorted slice: no allocation, no
//! hashing, and the same answer on every run.

use capsule_artifacts::Target;

// Generated files: `cargo fmt` leaves them as the generator wrote them, so that the
// freshness test compares like with like.
#[rustfmt::skip]
mod common;
#[rustfmt::skip]
mod linux_aarch64;
#[rustfmt::skip]
mod linux_x86_64;

pub use common::{KERNEL_VERSION, TABLES_SOURCE};

/// A string of the tables: an offset and a length into `common::STRINGS`.
///
/// The tables hold these instead of `&'static str`: a reference in a static is a
/// load-time relocation in a position-independent binary, and the tables' thousands of
/// them made every start of `capsule` write (and so copy) dozens of pages before `main`
/// (docs/benchmarks.md, "`capsule run` at the launcher's speed").
#[derive(Clone, Copy, PartialEq, Eq)]
struct Str(u32, u16);

impl Str {
    fn get(self) -> &'static str {
        let start = self.0 as usize;
        &common::STRINGS[start..start + usize::from(self.1)]
    }
}

/// A syscall's argument list: a start and a length into `common::ARGS`.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Args(u16, u8);

/// One syscall argument, from the kernel's `SYSCALL_DEFINE` signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ArgDef {
    kernel_name: Str,
    man_name: Option<Str>,
    c_type: Str,
    /// How many bits the kernel reads: 16, 32 or 64.
    pub bits: u8,
    /// The argument is a user-space pointer: seccomp sees only the address.
    pub pointer: bool,
}

impl ArgDef {
    /// The kernel's name (`SYSCALL_DEFINE3(socket, int, family, ...)`: `family`).
    pub fn kernel_name(&self) -> &'static str {
        self.kernel_name.get()
    }

    /// The manual page's name (socket(2): `domain`), when it differs and is known.
    pub fn man_name(&self) -> Option<&'static str> {
        self.man_name.map(Str::get)
    }

    /// The C type as written in the kernel signature, without `__user`.
    pub fn c_type(&self) -> &'static str {
        self.c_type.get()
    }

    /// The name to show: the manual page's when it has one, else the kernel's.
    pub fn display_name(&self) -> &'static str {
        self.man_name().unwrap_or(self.kernel_name())
    }

    /// Whether a policy may call this argument `name` (the manual's or the kernel's name).
    pub fn answers_to(&self, name: &str) -> bool {
        self.kernel_name() == name || self.man_name() == Some(name)
    }
}

impl std::fmt::Debug for ArgDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArgDef")
            .field("kernel_name", &self.kernel_name())
            .field("man_name", &self.man_name())
            .field("c_type", &self.c_type())
            .field("bits", &self.bits)
            .field("pointer", &self.pointer)
            .finish()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SyscallDef {
    name: Str,
    pub nr: u32,
    args: Args,
    /// False when the target's entry point has no `SYSCALL_DEFINE`: numbers the kernel
    /// reserves but answers with ENOSYS (`uselib`, `tuxcall`; `map_shadow_stack` on
    /// aarch64). Their arguments have no names or widths; only `arg0`..`arg5` (64-bit)
    /// can name them.
    pub args_known: bool,
}

impl SyscallDef {
    pub fn name(&self) -> &'static str {
        self.name.get()
    }

    /// The arguments, in order. Empty both for a syscall that takes none (`getpid`)
    /// and for one whose signature is unknown (see `args_known`).
    pub fn args(&self) -> &'static [ArgDef] {
        let Args(start, len) = self.args;
        &common::ARGS[usize::from(start)..][..usize::from(len)]
    }
}

impl std::fmt::Debug for SyscallDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyscallDef")
            .field("name", &self.name())
            .field("nr", &self.nr)
            .field("args", &self.args())
            .field("args_known", &self.args_known)
            .finish()
    }
}

/// A named constant policies may use (`AF_INET`, `O_WRONLY`, `EPERM`, ...).
///
/// `value` is the C expression converted to `unsigned long long`, so a negative
/// constant is its 64-bit two's complement (`AT_FDCWD` is `0xffff_ffff_ffff_ff9c`):
/// compared with a 32-bit argument, only its low 32 bits count.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ConstDef {
    name: Str,
    pub value: u64,
}

impl ConstDef {
    pub fn name(&self) -> &'static str {
        self.name.get()
    }
}

impl std::fmt::Debug for ConstDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConstDef").field("name", &self.name()).field("value", &self.value).finish()
    }
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
    /// Indices into `syscalls`, sorted by the syscall's name.
    by_name: &'static [u16],
}

impl Table {
    /// The syscall called `name` on this target.
    pub fn by_name(&self, name: &str) -> Option<&'static SyscallDef> {
        let syscalls = self.syscalls;
        let i = self.by_name.binary_search_by(|&i| syscalls[usize::from(i)].name().cmp(name)).ok()?;
        Some(&syscalls[usize::from(self.by_name[i])])
    }

    /// The syscall numbered `nr` on this target.
    pub fn by_nr(&self, nr: u32) -> Option<&'static SyscallDef> {
        let syscalls = self.syscalls;
        syscalls.binary_search_by_key(&nr, |s| s.nr).ok().map(|i| &syscalls[i])
    }

    /// The value of the constant `name` on this target (`O_DIRECTORY` differs between
    /// targets; `MAP_32BIT` exists on x86_64 only).
    pub fn constant(&self, name: &str) -> Option<u64> {
        let constants = self.constants;
        constants.binary_search_by(|c| c.name().cmp(name)).ok().map(|i| constants[i].value)
    }
}

/// The table of a Linux target.
///
/// # Panics
///
/// On `Target::Macos`, which has no syscall table: callers iterate `Target::LINUX`.
pub fn table(target: Target) -> &'static Table {
    match target {
        Target::LinuxX86_64 => &linux_x86_64::TABLE,
        Target::LinuxAarch64 => &linux_aarch64::TABLE,
        Target::Macos => panic!("macos has no syscall table"),
    }
}

/// The name of an errno value (`1` → `EPERM`), the same on every Linux target. Where
/// two names share a value the first of constants.txt wins (`EAGAIN`, not `EWOULDBLOCK`).
pub fn errno_name(value: u16) -> Option<&'static str> {
    let errnos = common::ERRNO_BY_VALUE;
    errnos.binary_search_by_key(&value, |&(v, _)| v).ok().map(|i| errnos[i].1.get())
}

/// The value of an errno name, aliases included (`EWOULDBLOCK` → 11).
pub fn errno_value(name: &str) -> Option<u16> {
    let errnos = common::ERRNO_BY_NAME;
    errnos.binary_search_by(|&(n, _)| n.get().cmp(name)).ok().map(|i| errnos[i].1)
}

/// Every syscall name some Linux target has, sorted and without duplicates (for "did
/// you mean" suggestions).
pub fn all_syscall_names() -> impl Iterator<Item = &'static str> {
    common::ALL_SYSCALL_NAMES.iter().map(|s| s.get())
}
