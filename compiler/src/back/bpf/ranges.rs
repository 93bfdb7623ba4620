//! Lowering a target's syscall policy to run-length ranges of numbers: every number
//! from 0 to `u32::MAX` (x32 numbers are caught before the search) falls in exactly
//! one range, and consecutive numbers with the same fixed return value share one.

use crate::ir::{Action, Cond, SyscallPolicy, decide_rules};
use crate::valid::{NotifyAnswer, TargetInfo};

/// What the filter does once it knows the number is in a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaf {
    /// Return this value without looking at the arguments.
    Ret(u32),
    /// Evaluate this syscall's rules on the arguments.
    Rules(u32),
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
        (Some(NotifyAnswer::Continue), Action::Allow) => audited,
        (Some(NotifyAnswer::Errno(e)), Action::Errno(a)) => e == a,
        _ => false,
    };
    if notified {
        crate::bpf::SECCOMP_RET_USER_NOTIF
    } else {
        action_ret(action)
    }
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

/// The ranges covering `0..=u32::MAX`, in order.
pub fn ranges(
    syscalls: &SyscallPolicy,
    info: &TargetInfo,
    default: Action,
    newer: Action,
) -> Vec<NrRange> {
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
    for nr in 0..=info.max_nr {
        let leaf = leaf_of(nr);
        match out.last_mut() {
            Some(last) if last.leaf == leaf && matches!(leaf, Leaf::Ret(_)) => last.hi = nr,
            _ => out.push(NrRange {
                lo: nr,
                hi: nr,
                leaf,
            }),
        }
    }
    if info.max_nr < u32::MAX {
        let leaf = Leaf::Ret(ret_value(info, info.max_nr + 1, newer, false));
        out.push(NrRange {
            lo: info.max_nr + 1,
            hi: u32::MAX,
            leaf,
        });
    }
    out
}
