//! The kernel's seccomp action cache (Linux >= 5.11), reproduced.
//!
//! When a filter is attached, `seccomp_cache_prepare_bitmap` (kernel/seccomp.c) runs
//! `seccomp_is_const_allow` for every syscall number of the native arch and of the
//! compat arch. It emulates the *original* classic program knowing only `arch` and
//! `nr`, and sets the number's bit when the emulation reaches `ret #SECCOMP_RET_ALLOW`.
//! While a bit is set the filter is never run for that (arch, nr).
//!
//! The emulation is deliberately small. It follows only:
//! - `ld [0]` and `ld [4]` (nr, arch); a load of any other offset (arguments,
//!   instruction pointer) gives up;
//! - `ret #k`, which caches only when `k` is exactly `SECCOMP_RET_ALLOW` (an allow
//!   carrying data, `0x7fff0001`, is not cached);
//! - `ja`, and `jeq`/`jgt`/`jge`/`jset` against a constant (`BPF_K`);
//! - `and #k` on A.
//!
//! Anything else (`ret a`, every other ALU operation, X, scratch memory, immediate
//! loads, jumps against X) gives up. So a filter that does `add #1` on nr before
//! comparing is correct but never cached.
//!
//! What this module does not model, because it is not a property of the filter:
//! - which arches the kernel emulates: the native one (`AUDIT_ARCH_X86_64`,
//!   `AUDIT_ARCH_AARCH64`) and the compat one (`AUDIT_ARCH_I386` with
//!   IA32_EMULATION, `AUDIT_ARCH_ARM` with COMPAT). Any other `arch` is never cached.
//! - the bitmap's size: only numbers below the arch's `NR_syscalls` are cached, so x32
//!   numbers (`nr >= 0x40000000`) never are.
//! - the uprobe exception: the kernel treats `uretprobe`/`uprobe` on the native arch as
//!   always allowed whatever the filter says (`seccomp_uprobe_exception`).
//! - stacking: a bit is kept only if every earlier filter also had it.

use super::interp::{AluOp, JmpOp, Op, Program, Src};
use super::{OFFSET_ARCH, OFFSET_NR, SECCOMP_RET_ALLOW};

/// Whether the kernel's emulation (`seccomp_is_const_allow`) proves that `program`
/// returns exactly `SECCOMP_RET_ALLOW` for every call with this `arch` and `nr`,
/// whatever the arguments and instruction pointer: then Linux skips the filter for it.
pub fn kernel_would_cache(program: &Program, arch: u32, nr: u32) -> bool {
    let ops = program.ops();
    let mut a: u32 = 0;
    let mut pc = 0;
    // The checked program ends in a return and jumps only forward, so this ends.
    while let Some(op) = ops.get(pc) {
        match *op {
            Op::LdAbs(OFFSET_NR) => a = nr,
            Op::LdAbs(OFFSET_ARCH) => a = arch,
            Op::RetK(k) => return k == SECCOMP_RET_ALLOW,
            Op::Ja(k) => pc += k as usize,
            Op::Jmp { op, src: Src::K(k), jt, jf } => {
                let taken = match op {
                    JmpOp::Eq => a == k,
                    JmpOp::Ge => a >= k,
                    JmpOp::Gt => a > k,
                    JmpOp::Set => a & k != 0,
                };
                pc += usize::from(if taken { jt } else { jf });
            }
            Op::Alu(AluOp::And, Src::K(k)) => a &= k,
            _ => return false,
        }
        pc += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::{BPF_ABS, BPF_ALU, BPF_AND, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, Insn};

    fn program(insns: &[Insn]) -> Program {
        Program::new(insns.to_vec()).expect("test program is valid")
    }

    #[test]
    fn allow_with_data_is_not_cached() {
        let p = program(&[Insn::stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW | 1)]);
        assert!(!kernel_would_cache(&p, 0, 0));
        let p = program(&[Insn::stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)]);
        assert!(kernel_would_cache(&p, 0, 0));
    }

    #[test]
    fn and_on_nr_is_followed() {
        // Allow every even syscall number.
        let p = program(&[
            Insn::stmt(BPF_LD | BPF_W | BPF_ABS, OFFSET_NR),
            Insn::stmt(BPF_ALU | BPF_AND | BPF_K, 1),
            Insn::jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1),
            Insn::stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
            Insn::stmt(BPF_RET | BPF_K, 0),
        ]);
        assert!(kernel_would_cache(&p, 0, 2));
        assert!(!kernel_would_cache(&p, 0, 3));
    }
}
