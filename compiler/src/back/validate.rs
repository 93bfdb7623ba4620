//! Translation validation: before an artifact is written, run the emitted filter in
//! the project's own BPF interpreter and check that it decides every probe exactly as
//! the reference semantics (`ir::decide`) decides it on the policy *before* the passes.
//!
//! Probes, per target:
//! - every number from 0 to the table's highest + 64, with zero arguments and with
//!   all-ones garbage in every argument;
//! - numbers through the x32 bit (`nr | 0x40000000`), negative numbers (`-1`,
//!   `0x80000000`), and calls with the i386 and other foreign `arch` values;
//! - for each syscall with argument tests, each tested argument varied alone (the
//!   others 0) over the policy's own constants for it (c-1, c, c+1, the complement
//!   of c) and the edges (0, 1, 2^31-1, 2^31, 2^32-1, 2^32, 2^63, 2^64-1), each with
//!   and without garbage in the high half; plus mixed vectors that pair the values of
//!   the tested arguments.
//!
//! A `SECCOMP_RET_USER_NOTIF` return is read through the target's notify table: the
//! supervisor's answer must be the IR's decision (an audited call continues, a
//! recorded denial gets its errno), and an audited call must be notified whenever the
//! policy records audited syscalls.
//!
//! It also checks, with the kernel's own emulation (`bpf::cache`), that every number
//! the post-pass policy allows without conditions is cached by the kernel.

use crate::bpf::Insn;
use crate::bpf::cache::kernel_would_cache;
use crate::bpf::interp::{InterpError, Program, RetAction, SeccompData};
use crate::ir::{Action, Call, Policy, decide};
use crate::valid::{NotifyAnswer, PolicyInfo, test_values, visit_tests};
use capsule_artifacts::Target;
use capsule_artifacts::launch::Record;
use capsule_artifacts::target::{AUDIT_ARCH_AARCH64, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT};
use std::collections::{BTreeMap, BTreeSet};

/// The most argument vectors tried per syscall number.
pub const MAX_VECTORS_PER_SYSCALL: usize = 2048;

/// What a successful validation covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationReport {
    pub target: Target,
    /// Calls run through the filter and compared with the IR.
    pub probes: usize,
    /// Numbers proven cached by the kernel's action cache.
    pub cached: usize,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("internal error: the kernel would reject the {target} filter: {error}")]
    Rejected { target: Target, error: InterpError },
    #[error("{0} has no seccomp-BPF filter to validate")]
    NoSuchTarget(Target),
    #[error(
        "internal error: the {target} filter disagrees with the policy for arch {arch:#x} nr {nr} \
         args {args:x?}: the policy says {expected}, the filter says {found}"
    )]
    Mismatch { target: Target, arch: u32, nr: u32, args: [u64; 6], expected: String, found: String },
    #[error("internal error: the {target} filter allows nr {nr} unconditionally but the kernel would not cache it")]
    NotCached { target: Target, nr: u32 },
}

/// Check `program` (compiled from the post-pass policy with `info`) against the
/// decisions of `original`, the policy before the passes.
pub fn validate(
    original: &Policy,
    info: &PolicyInfo,
    target: Target,
    program: &[Insn],
) -> Result<ValidationReport, ValidationError> {
    let tinfo = info.target(target).ok_or(ValidationError::NoSuchTarget(target))?;
    let native = target.audit_arch().ok_or(ValidationError::NoSuchTarget(target))?;
    let program = Program::new(program.to_vec()).map_err(|error| ValidationError::Rejected { target, error })?;
    let record = &original.launch.audit.record;
    let audits_recorded = record.contains(&Record::AuditedSyscalls);
    let vectors = argument_vectors(original, target);
    let plain = vec![[0u64; 6], [u64::MAX; 6], [0xdead_beef_0000_0000; 6]];

    let mut probes = 0;
    let mut check = |arch: u32, nr: u32, args: [u64; 6]| -> Result<(), ValidationError> {
        probes += 1;
        let ir = decide(original, target, &Call { arch, nr, args });
        let data = SeccompData { nr, arch, instruction_pointer: 0x7f00_dead_beef, args };
        let ret = program.run(&data).action();
        let answer = if arch == native { tinfo.notify.answer(nr) } else { None };
        let found: Option<(Action, bool)> = match ret {
            RetAction::UserNotif => match answer {
                Some(NotifyAnswer::Continue | NotifyAnswer::Destination) => Some((Action::Allow, true)),
                Some(NotifyAnswer::Errno(e)) => Some((Action::Errno(e), false)),
                None => None,
            },
            RetAction::KillProcess => Some((Action::KillProcess, false)),
            RetAction::KillThread => Some((Action::KillThread, false)),
            RetAction::Trap(0) => Some((Action::Trap, false)),
            RetAction::Errno(e) => Some((Action::Errno(e), false)),
            RetAction::Log => Some((Action::Log, false)),
            RetAction::Allow => Some((Action::Allow, false)),
            RetAction::Trap(_) | RetAction::Trace(_) | RetAction::Unknown(_) => None,
        };
        // Audited calls are notified exactly when the policy records them, or when
        // the proxy's destination check takes them.
        let name = crate::tables::table(target).by_nr(nr).map_or("", |s| s.name());
        let notified = audits_recorded || (arch == native && crate::valid::checks_destination(original, name));
        let expected = (ir.action, ir.audited && notified);
        if found != Some(expected) {
            let shown = match (ret, answer) {
                (RetAction::UserNotif, a) => format!("user-notif (supervisor answers {a:?})"),
                (r, _) => r.to_string(),
            };
            let audited = if ir.audited { ", audited" } else { "" };
            return Err(ValidationError::Mismatch {
                target,
                arch,
                nr,
                args,
                expected: format!("{}{audited}", ir.action),
                found: shown,
            });
        }
        Ok(())
    };

    for nr in 0..=tinfo.max_nr.saturating_add(64) {
        let args = vectors.get(&nr).unwrap_or(&plain);
        for &a in args {
            check(native, nr, a)?;
        }
    }
    let some_numbers = [0, 1, 2, 3, 20, 59, 60, 221, tinfo.max_nr, tinfo.max_nr + 1];
    let mut odd_numbers: Vec<u32> = some_numbers.iter().map(|n| n | X32_SYSCALL_BIT).collect();
    odd_numbers.extend([u32::MAX, u32::MAX - 1, 0x8000_0000, 0x7fff_ffff, 0xbfff_ffff, X32_SYSCALL_BIT]);
    for nr in odd_numbers {
        for &a in &plain {
            check(native, nr, a)?;
        }
    }
    let foreign_arches: Vec<u32> = [AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, AUDIT_ARCH_AARCH64, 0x4000_0028, 0, u32::MAX]
        .into_iter()
        .filter(|&a| a != native)
        .collect();
    for arch in foreign_arches {
        for nr in some_numbers.into_iter().chain([u32::MAX, X32_SYSCALL_BIT | 1]) {
            for &a in &plain {
                check(arch, nr, a)?;
            }
        }
    }

    let mut cached = 0;
    for nr in 0..=tinfo.max_nr {
        let unconditional = !tinfo.arg_checked.contains(&nr);
        let allows = program.run(&SeccompData { nr, arch: native, ..SeccompData::default() }).ret
            == crate::bpf::SECCOMP_RET_ALLOW;
        if unconditional && allows {
            if !kernel_would_cache(&program, native, nr) {
                return Err(ValidationError::NotCached { target, nr });
            }
            cached += 1;
        }
    }
    Ok(ValidationReport { target, probes, cached })
}

const EDGES: [u64; 8] = [0, 1, (1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 32, 1 << 63, u64::MAX];
const GARBAGE: u64 = 0xa5a5_5a5a_0000_0000;

/// Argument vectors per syscall with argument tests in the original policy.
fn argument_vectors(policy: &Policy, target: Target) -> BTreeMap<u32, Vec<[u64; 6]>> {
    let Some(syscalls) = policy.syscalls_for(target) else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for (&nr, rules) in &syscalls.syscalls {
        let mut per_arg: BTreeMap<u8, BTreeSet<u64>> = BTreeMap::new();
        for rule in &rules.rules {
            visit_tests(&rule.cond, &mut |arg, test| {
                let values = per_arg.entry(arg.index).or_default();
                for c in test_values(test) {
                    for v in [c.wrapping_sub(1), c, c.wrapping_add(1), !c & arg.width.mask(), !c] {
                        values.extend([v, v ^ GARBAGE, v | 0xffff_ffff_0000_0000]);
                    }
                }
                values.extend(EDGES.iter().flat_map(|&e| [e, e ^ GARBAGE]));
            });
        }
        if per_arg.is_empty() {
            continue;
        }
        let mut vectors = vec![[0u64; 6], [u64::MAX; 6], [GARBAGE; 6]];
        for (&index, values) in &per_arg {
            for &v in values {
                let mut args = [0; 6];
                args[index as usize] = v;
                vectors.push(args);
            }
        }
        // Mixed: each tested argument walks its own values, side by side, and with
        // every argument's values crossed pairwise on a few of them.
        let lists: Vec<(u8, Vec<u64>)> = per_arg.iter().map(|(&i, v)| (i, v.iter().copied().collect())).collect();
        let longest = lists.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
        for step in 0..longest {
            let mut args = [0; 6];
            for (index, values) in &lists {
                args[*index as usize] = values[(step * 7 + *index as usize) % values.len()];
            }
            vectors.push(args);
        }
        for (a, (ia, va)) in lists.iter().enumerate() {
            for (ib, vb) in &lists[a + 1..] {
                for &x in va.iter().step_by(va.len().div_ceil(12)) {
                    for &y in vb.iter().step_by(vb.len().div_ceil(12)) {
                        let mut args = [0; 6];
                        args[*ia as usize] = x;
                        args[*ib as usize] = y;
                        vectors.push(args);
                    }
                }
            }
        }
        vectors.sort();
        vectors.dedup();
        vectors.truncate(MAX_VECTORS_PER_SYSCALL);
        out.insert(nr, vectors);
    }
    out
}
