//! The IR verifier: checks every invariant the passes and back-ends rely on, and
//! returns the facts they need ([`PolicyInfo`]). Every back-end takes a `&PolicyInfo`,
//! so none can run on IR that was not verified.
//!
//! Invariants checked, per policy:
//!
//! 1. `syscalls` holds exactly one [`SyscallPolicy`] per Linux target in `targets`,
//!    in [`Target::LINUX`] order, and `targets` has no duplicates.
//! 2. Every action (`default`, `newer_syscalls`, `foreign_arch`, deny rules) is a
//!    concrete seccomp action with an errno in `0..=4095` (the kernel's `MAX_ERRNO`).
//! 3. A deny rule's action is never `Allow`.
//!
//! and per syscall of a target:
//!
//! 4. The map key equals `nr`, the number is in the target's table, and `name` is the
//!    table's name for it.
//! 5. It has at least one rule (a syscall no rule names is absent, not empty).
//! 6. Every argument index is below the syscall's argument count in the table
//!    (`arg0`..`arg5` when the table does not know its arguments), and its width is
//!    the table's width when the table knows it (32 bits for `int`-sized and smaller types, else 64).
//! 7. Every constant fits the argument's width (masks and masked values included).
//! 8. `In`/`NotIn` value lists are non-empty, sorted and deduplicated.
//!
//! The verifier does not demand normalised conditions (`Not`, nested `And`/`Or`,
//! `True`/`False` are all valid IR): every back-end must handle them.

use crate::ir::{Action, Cond, Policy, RuleKind, SyscallPolicy, Test, Width};
use crate::tables;
use capsule_artifacts::Target;
use capsule_artifacts::launch::Record;
use std::collections::{BTreeMap, BTreeSet};

/// The largest errno the kernel passes through (`MAX_ERRNO`).
pub const MAX_ERRNO: u16 = 4095;

/// What the back-ends need to know about a verified policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    /// One per Linux target of the policy, in the policy's order.
    pub targets: Vec<TargetInfo>,
}

impl PolicyInfo {
    pub fn target(&self, target: Target) -> Option<&TargetInfo> {
        self.targets.iter().find(|t| t.target == target)
    }
}

/// Facts about one target's syscall policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetInfo {
    pub target: Target,
    /// The table's highest number; numbers above get `newer-syscalls`.
    pub max_nr: u32,
    /// Syscalls with at least one rule whose condition is not `True`: their decision
    /// may depend on the arguments, so their filter path loads arguments.
    pub arg_checked: BTreeSet<u32>,
    /// Every argument some rule tests, per syscall: index → width.
    pub arg_widths: BTreeMap<u32, BTreeMap<u8, Width>>,
    /// Which outcomes go to the launcher's supervisor (`SECCOMP_RET_USER_NOTIF`), and
    /// what it must answer.
    pub notify: NotifyTable,
}

impl TargetInfo {
    /// The launcher must install the filter with a notification listener.
    pub fn needs_user_notif(&self) -> bool {
        !self.notify.is_empty()
    }
}

pub use capsule_artifacts::notify::{NotifyAnswer, NotifyTable};

/// Whether the audited calls of syscall `name` go to the supervisor's destination
/// check ([`NotifyAnswer::Destination`]): the policy runs the proxy and the syscall
/// names a destination address.
pub fn checks_destination(policy: &Policy, name: &str) -> bool {
    policy.launch.network.proxy.is_some()
        && capsule_artifacts::notify::DESTINATION_SYSCALLS.iter().any(|(n, _, _)| *n == name)
}

/// How the policy's records turn a concrete outcome into a notification.
fn build_notify_table(policy: &Policy, syscalls: &SyscallPolicy, max_nr: u32) -> NotifyTable {
    let record = &policy.launch.audit.record;
    let audits = record.contains(&Record::AuditedSyscalls);
    let denials = record.contains(&Record::Denials);
    let denial = |action: Action| match action {
        Action::Errno(e) if denials => Some(NotifyAnswer::Errno(e)),
        _ => None,
    };
    let default = denial(policy.default);
    let mut answers = BTreeMap::new();
    for (&nr, rules) in &syscalls.syscalls {
        // Every outcome the syscall may reach (an over-approximation is safe: it
        // only makes a conflict, and so a direct return, more likely).
        let unconditional = rules.rules.iter().any(|r| r.cond == Cond::True);
        let mut candidates: Vec<NotifyAnswer> = Vec::new();
        let audited = rules.rules.iter().any(|r| r.kind == RuleKind::Audit);
        if audited && checks_destination(policy, rules.name) {
            // Its audited calls (the proxy's implied rule, or the policy's own) go to
            // the supervisor's destination check, whatever `audit: record:` lists.
            candidates.push(NotifyAnswer::Destination);
        } else if audits && audited {
            // An audited call must always reach the supervisor; denials of the
            // same number are then returned by the filter itself.
            candidates.push(NotifyAnswer::Continue);
        } else {
            if !unconditional {
                candidates.extend(default);
            }
            for rule in &rules.rules {
                if let RuleKind::Deny(action) = rule.kind {
                    candidates.extend(denial(action));
                }
            }
        }
        // Between several errnos, the default's keeps the number out of the
        // table; otherwise the first written one is notified.
        let answer = if let Some(&run) =
            candidates.iter().find(|a| matches!(a, NotifyAnswer::Continue | NotifyAnswer::Destination))
        {
            Some(run)
        } else if default.is_some() && candidates.contains(&default.unwrap()) {
            default
        } else {
            candidates.first().copied()
        };
        if answer != default {
            answers.insert(nr, answer);
        }
    }
    NotifyTable::new(max_nr, default, denial(policy.newer_syscalls), &answers)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("target list has {0} twice")]
    DuplicateTarget(Target),
    #[error("syscall policies are for {found:?}, expected one per Linux target, in order: {expected:?}")]
    TargetMismatch { expected: Vec<Target>, found: Vec<Target> },
    #[error("{what}: errno {errno} is above the kernel's MAX_ERRNO (4095)")]
    ErrnoTooLarge { what: String, errno: u16 },
    #[error("{target}: syscall keyed {key} says it is number {nr}")]
    KeyMismatch { target: Target, key: u32, nr: u32 },
    #[error("{target}: {name} (number {nr}) is not in the table")]
    UnknownSyscall { target: Target, name: &'static str, nr: u32 },
    #[error("{target}: number {nr} is {expected} in the table, not {name}")]
    NameMismatch { target: Target, nr: u32, name: &'static str, expected: &'static str },
    #[error("{target}: {name} has no rules (a syscall no rule names must be absent)")]
    NoRules { target: Target, name: &'static str },
    #[error("{target}: a deny rule of {name} has the action allow")]
    DenyAllows { target: Target, name: &'static str },
    #[error("{target}: {name} has no argument {index} (it takes {count})")]
    NoSuchArg { target: Target, name: &'static str, index: u8, count: usize },
    #[error("{target}: argument {index} of {name} is {expected:?} wide, the rule says {found:?}")]
    WidthMismatch { target: Target, name: &'static str, index: u8, expected: Width, found: Width },
    #[error("{target}: constant {value:#x} does not fit argument {index} of {name} ({width:?})")]
    ValueTooWide { target: Target, name: &'static str, index: u8, value: u64, width: Width },
    #[error(
        "{target}: argument {index} of {name} is {bits} bits to the kernel, and a test on it must mask the bits above: {test:?}"
    )]
    NarrowArgUnmasked { target: Target, name: &'static str, index: u8, bits: u8, test: Test },
    #[error("{target}: a value list on argument {index} of {name} is empty, unsorted or has duplicates")]
    BadValueList { target: Target, name: &'static str, index: u8 },
}

/// A masked test whose mask lies within `low`: blind to every bit above.
fn masks_within(test: &Test, low: u64) -> bool {
    matches!(test, Test::MaskedEq { mask, .. } | Test::MaskedNe { mask, .. } if mask & !low == 0)
}

/// The values an argument the kernel reads `bits` bits of can take: `0..=low_bits(bits)`.
pub fn low_bits(bits: u32) -> u64 {
    u64::MAX >> (64 - bits)
}

/// The width the kernel reads an argument of `bits` bits with.
pub fn width_of_bits(bits: u8) -> Width {
    if bits <= 32 { Width::W32 } else { Width::W64 }
}

/// Check every invariant listed in the module doc.
pub fn verify(policy: &Policy) -> Result<PolicyInfo, VerifyError> {
    let mut seen = BTreeSet::new();
    for &t in &policy.targets {
        if !seen.insert(t) {
            return Err(VerifyError::DuplicateTarget(t));
        }
    }
    let expected: Vec<Target> = Target::LINUX.into_iter().filter(|t| seen.contains(t)).collect();
    let found: Vec<Target> = policy.syscalls.iter().map(|s| s.target).collect();
    if expected != found {
        return Err(VerifyError::TargetMismatch { expected, found });
    }
    for (what, action) in
        [("default", policy.default), ("newer-syscalls", policy.newer_syscalls), ("foreign-arch", policy.foreign_arch)]
    {
        check_errno(what.to_owned(), action)?;
    }
    let targets = policy.syscalls.iter().map(|s| verify_target(policy, s)).collect::<Result<_, _>>()?;
    Ok(PolicyInfo { targets })
}

fn check_errno(what: String, action: Action) -> Result<(), VerifyError> {
    match action {
        Action::Errno(errno) if errno > MAX_ERRNO => Err(VerifyError::ErrnoTooLarge { what, errno }),
        _ => Ok(()),
    }
}

fn verify_target(policy: &Policy, syscalls: &SyscallPolicy) -> Result<TargetInfo, VerifyError> {
    let target = syscalls.target;
    let table = tables::table(target);
    let mut arg_checked = BTreeSet::new();
    let mut arg_widths: BTreeMap<u32, BTreeMap<u8, Width>> = BTreeMap::new();
    for (&key, sc) in &syscalls.syscalls {
        let name = sc.name;
        if key != sc.nr {
            return Err(VerifyError::KeyMismatch { target, key, nr: sc.nr });
        }
        let Ok(i) = table.syscalls.binary_search_by_key(&sc.nr, |d| d.nr) else {
            return Err(VerifyError::UnknownSyscall { target, name, nr: sc.nr });
        };
        let def = &table.syscalls[i];
        if def.name() != name {
            return Err(VerifyError::NameMismatch { target, nr: sc.nr, name, expected: def.name() });
        }
        if sc.rules.is_empty() {
            return Err(VerifyError::NoRules { target, name });
        }
        for rule in &sc.rules {
            if let RuleKind::Deny(action) = rule.kind {
                if action == Action::Allow {
                    return Err(VerifyError::DenyAllows { target, name });
                }
                check_errno(format!("{target}: a deny rule of {name}"), action)?;
            }
            if rule.cond != Cond::True {
                arg_checked.insert(sc.nr);
            }
            let mut err = None;
            visit_tests(&rule.cond, &mut |arg, test| {
                if err.is_some() {
                    return;
                }
                let index = arg.index;
                let count = if def.args_known { def.args().len() } else { 6 };
                let bits = def.args().get(index as usize).map(|a| a.bits);
                let expected = bits.map(width_of_bits);
                if index as usize >= count {
                    err = Some(VerifyError::NoSuchArg { target, name, index, count });
                } else if let Some(expected) = expected.filter(|&w| w != arg.width) {
                    err = Some(VerifyError::WidthMismatch { target, name, index, expected, found: arg.width });
                } else if let Some(value) = test_values(test).find(|v| v & !arg.width.mask() != 0) {
                    err = Some(VerifyError::ValueTooWide { target, name, index, value, width: arg.width });
                } else if let Some(bits) = bits.filter(|&b| b < 32)
                    && !masks_within(test, low_bits(u32::from(bits)))
                {
                    // The kernel truncates the argument; a test that reads the bits above
                    // could be bypassed by setting them (see `lower::on_low_bits`).
                    err = Some(VerifyError::NarrowArgUnmasked { target, name, index, bits, test: test.clone() });
                } else if let Test::In(xs) | Test::NotIn(xs) = test
                    && (xs.is_empty() || xs.windows(2).any(|w| w[0] >= w[1]))
                {
                    err = Some(VerifyError::BadValueList { target, name, index });
                }
                arg_widths.entry(sc.nr).or_default().insert(index, arg.width);
            });
            if let Some(e) = err {
                return Err(e);
            }
        }
    }
    let notify = build_notify_table(policy, syscalls, table.max_nr);
    Ok(TargetInfo { target, max_nr: table.max_nr, arg_checked, arg_widths, notify })
}

/// Call `f` on every argument test of a condition.
pub fn visit_tests<'a>(cond: &'a Cond, f: &mut impl FnMut(crate::ir::Arg, &'a Test)) {
    match cond {
        Cond::True | Cond::False => {}
        Cond::Test { arg, test } => f(*arg, test),
        Cond::Not(c) => visit_tests(c, f),
        Cond::And(cs) | Cond::Or(cs) => cs.iter().for_each(|c| visit_tests(c, f)),
    }
}

/// Every constant a test compares with.
pub fn test_values(test: &Test) -> impl Iterator<Item = u64> + '_ {
    let (pair, list): ([Option<u64>; 2], &[u64]) = match test {
        Test::Eq(x) | Test::Ne(x) | Test::Lt(x) | Test::Le(x) | Test::Gt(x) | Test::Ge(x) => ([Some(*x), None], &[]),
        Test::MaskedEq { mask, value } | Test::MaskedNe { mask, value } => ([Some(*mask), Some(*value)], &[]),
        Test::In(xs) | Test::NotIn(xs) => ([None, None], xs),
    };
    pair.into_iter().flatten().chain(list.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only lowering's masked form may test a 16-bit argument: a plain comparison on the
    /// 32-bit word would read bits the kernel ignores.
    #[test]
    fn a_narrow_argument_tested_without_its_mask_is_refused() {
        let source = "version: 1\ntargets: [linux-x86_64]\nsyscalls:\n  allow:\n    - fchmodat: mode == 0o777\n";
        let mut policy = crate::front::check(source).policy.expect("a valid policy");
        assert!(verify(&policy).is_ok());
        let rules = policy.syscalls[0].syscalls.values_mut().next().expect("fchmodat");
        let Cond::Test { arg, .. } = rules.rules[0].cond else { panic!("one test: {:?}", rules.rules[0].cond) };
        rules.rules[0].cond = Cond::Test { arg, test: Test::Eq(0o777) };
        assert!(
            matches!(verify(&policy), Err(VerifyError::NarrowArgUnmasked { bits: 16, .. })),
            "{:?}",
            verify(&policy)
        );
    }
}
