//! How many instructions a call can execute: the length of the longest path through a
//! filter to a return of interest, for the search tree's depth bounds and for tests.

use crate::bpf::interp::{AluOp, JmpOp, Op, Program, Src};
use crate::bpf::{OFFSET_ARCH, OFFSET_NR};
use std::collections::BTreeMap;

/// The most instructions a call with this `arch` and `nr` can execute up to and
/// including a `ret #k` with `ends(k)`, whatever its arguments; `None` when no such
/// return is reachable.
///
/// Jumps on the number and the arch go the one way they go; on anything else
/// (arguments, the instruction pointer, X) they may go either way, so this is an
/// upper bound: it may count a path that no argument vector takes. A `ret a` counts
/// as a return of interest.
pub fn longest_path(program: &Program, arch: u32, nr: u32, ends: impl Fn(u32) -> bool) -> Option<usize> {
    let ops = program.ops();
    // For each instruction, the accumulator values it can be reached with (`None`:
    // unknown), each with the most instructions executed before it. Jumps only go
    // forward, so one pass in program order sees every way into an instruction
    // before the instruction itself.
    let mut reach: Vec<BTreeMap<Option<u32>, usize>> = vec![BTreeMap::new(); ops.len()];
    reach[0].insert(Some(0), 0);
    let mut longest = None;
    for pc in 0..ops.len() {
        let states = std::mem::take(&mut reach[pc]);
        for (acc, before) in states {
            let len = before + 1;
            let mut go = |to: usize, acc: Option<u32>| {
                let best = reach[to].entry(acc).or_insert(len);
                *best = (*best).max(len);
            };
            match ops[pc] {
                Op::RetK(k) => {
                    if ends(k) {
                        longest = longest.max(Some(len));
                    }
                }
                Op::RetA => longest = longest.max(Some(len)),
                Op::Ja(k) => go(pc + 1 + k as usize, acc),
                Op::Jmp { op, src, jt, jf } => {
                    let (taken, not_taken) = (pc + 1 + usize::from(jt), pc + 1 + usize::from(jf));
                    match (acc, src) {
                        (Some(a), Src::K(k)) => {
                            let taken_now = match op {
                                JmpOp::Eq => a == k,
                                JmpOp::Gt => a > k,
                                JmpOp::Ge => a >= k,
                                JmpOp::Set => a & k != 0,
                            };
                            go(if taken_now { taken } else { not_taken }, acc);
                        }
                        _ => {
                            go(taken, acc);
                            go(not_taken, acc);
                        }
                    }
                }
                Op::LdAbs(OFFSET_NR) => go(pc + 1, Some(nr)),
                Op::LdAbs(OFFSET_ARCH) => go(pc + 1, Some(arch)),
                Op::LdImm(k) => go(pc + 1, Some(k)),
                Op::Alu(AluOp::And, Src::K(k)) => go(pc + 1, acc.map(|a| a & k)),
                // Stores and X leave A alone.
                Op::LdxLen | Op::LdxImm(_) | Op::LdxMem(_) | Op::St(_) | Op::Stx(_) | Op::Tax => go(pc + 1, acc),
                Op::LdAbs(_) | Op::LdLen | Op::LdMem(_) | Op::Alu(..) | Op::Neg | Op::Txa => go(pc + 1, None),
            }
        }
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::{
        BPF_ABS, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, Insn, SECCOMP_RET_ALLOW, offset_arg_lo,
    };

    fn ld(offset: u32) -> Insn {
        Insn::stmt(BPF_LD | BPF_W | BPF_ABS, offset)
    }
    fn jump(op: u16, k: u32, jt: u8, jf: u8) -> Insn {
        Insn::jump(BPF_JMP | op | BPF_K, k, jt, jf)
    }
    fn ret(k: u32) -> Insn {
        Insn::stmt(BPF_RET | BPF_K, k)
    }

    #[test]
    fn the_number_picks_its_branch_and_arguments_take_both() {
        const DENY: u32 = 0x0005_0001;
        let program = Program::new(vec![
            ld(OFFSET_NR),           // 0
            jump(BPF_JGE, 10, 0, 2), // 1: nr >= 10 → 2, else 4
            ld(offset_arg_lo(0)),    // 2
            jump(BPF_JEQ, 7, 2, 0),  // 3: arg0 == 7 → 6, else 4
            jump(BPF_JEQ, 3, 0, 2),  // 4: nr == 3 (or arg0 == 3) → 5, else 7
            ret(SECCOMP_RET_ALLOW),  // 5
            ret(SECCOMP_RET_ALLOW),  // 6
            ret(DENY),               // 7
        ])
        .expect("valid");
        let allows = |k| k == SECCOMP_RET_ALLOW;
        // nr 12: both arguments' ways; the longest allowing one is 0 1 2 3 4 5.
        assert_eq!(longest_path(&program, 0, 12, allows), Some(6));
        // nr 3: 0 1 4 5.
        assert_eq!(longest_path(&program, 0, 3, allows), Some(4));
        // nr 4 reaches no allowing return.
        assert_eq!(longest_path(&program, 0, 4, allows), None);
        assert_eq!(longest_path(&program, 0, 4, |k| k == DENY), Some(4));
    }
}
