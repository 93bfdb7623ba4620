//! Lowering a target's syscall policy to run-length ranges of numbers: every number
//! from 0 to `u32::MAX` falls in exactly one range, and consecutive numbers with the
//! same fixed return value share one.
//!
//! On x86_64 the numbers with the x32 bit are all above the table, so the range above
//! the table tests that bit (→ `foreign-arch`, else `newer-syscalls`): no separate
//! x32 test on every path, and since the range holds no allowed number, the weighted
//! tree keeps it off the allowed paths.

use crate::ir::{Action, Cond, SyscallPolicy, decide_rules};
use crate::valid::{NotifyAnswer, TargetInfo};
use capsule_artifacts::Target;
use capsule_artifacts::target::X32_SYSCALL_BIT;

/// What the filter does once it knows the number is in a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaf {
    /// Return this value without looking at the arguments.
    Ret(u32),
    /// Evaluate this syscall's rules on the arguments.
    Rules(u32),
    /// Return `x32` when the number has the x32 bit, else `native` (x86_64, above the
    /// table).
    X32Split { native: u32, x32: u32 },
}

/// Numbers `lo..=hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NrRange {
    pub lo: u32,
    pub hi: u32,
    pub leaf: Leaf,
}

/// The seccomp return value of a decision for `nr`: `SECCOMP_RET_USER_NOTIF` when the
/// notify table answers exactly this decision for `nr`, else the action itself.
pub fn ret_value(info: &TargetInfo, nr: u32, action: Action, audited: bool) -> u32 {
    let notified = match (info.notify.answer(nr), action) {
        (Some(NotifyAnswer::Continue | NotifyAnswer::Destination), Action::Allow) => audited,
        (Some(NotifyAnswer::Errno(e)), Action::Errno(a)) => e == a,
        _ => false,
    };
    if notified { crate::bpf::SECCOMP_RET_USER_NOTIF } else { action_ret(action) }
}

/// The seccomp return value of an action, never notified.
pub fn action_ret(action: Action) -> u32 {
    use crate::bpf::*;
    match action {
        Action::KillProcess => SECCOMP_RET_KILL_PROCESS,
        Action::KillThread => SECCOMP_RET_KILL_THREAD,
        Action::Trap => SECCOMP_RET_TRAP,
        Action::Errno(e) => SECCOMP_RET_ERRNO | u32::from(e),
        Action::Log => SECCOMP_RET_LOG,
        Action::Allow => SECCOMP_RET_ALLOW,
    }
}

/// The actions for the numbers no syscall rule decides.
#[derive(Debug, Clone, Copy)]
pub struct Fallbacks {
    /// For numbers of the table without a rule (or no matching one).
    pub default: Action,
    /// For numbers above the table.
    pub newer: Action,
    /// For x32 numbers on x86_64.
    pub foreign: Action,
}

/// The ranges covering `0..=u32::MAX`, in order, with no two neighbours returning the
/// same value.
pub fn ranges(syscalls: &SyscallPolicy, info: &TargetInfo, fallbacks: Fallbacks) -> Vec<NrRange> {
    let Fallbacks { default, newer, foreign } = fallbacks;
    let leaf_of = |nr: u32| match syscalls.syscalls.get(&nr) {
        None => Leaf::Ret(ret_value(info, nr, default, false)),
        Some(rules) if rules.rules.iter().all(|r| r.cond == Cond::True) => {
            let decision = decide_rules(&rules.rules, &[0; 6]);
            let (action, audited) = decision.map_or((default, false), |d| (d.action, d.audited));
            Leaf::Ret(ret_value(info, nr, action, audited))
        }
        Some(_) => Leaf::Rules(nr),
    };
    let mut out: Vec<NrRange> = Vec::new();
    let mut push = |lo: u32, hi: u32, leaf: Leaf| match out.last_mut() {
        Some(last) if last.leaf == leaf && matches!(leaf, Leaf::Ret(_)) => last.hi = hi,
        _ => out.push(NrRange { lo, hi, leaf }),
    };
    for nr in 0..=info.max_nr {
        push(nr, nr, leaf_of(nr));
    }
    if info.max_nr < u32::MAX {
        let newer = ret_value(info, info.max_nr + 1, newer, false);
        let foreign = action_ret(foreign);
        // On x86_64 the x32 numbers (bit 30 set, as `ir::decide` tests it) are all
        // above the table.
        debug_assert!(info.max_nr < X32_SYSCALL_BIT);
        let leaf = if info.target == Target::LinuxX86_64 && newer != foreign {
            Leaf::X32Split { native: newer, x32: foreign }
        } else {
            Leaf::Ret(newer)
        };
        push(info.max_nr + 1, u32::MAX, leaf);
    }
    out
}
