//! The typed intermediate representation of a policy.
//!
//! One [`SyscallPolicy`] per target: for each syscall number, the ordered rules that
//! name it. Conditions are already resolved: arguments are indices with a known
//! width, values are numbers truncated to that width. The non-syscall sections are
//! the artifact contract's own types ([`LaunchSettings`]), since they pass through the
//! compiler unchanged.
//!
//! [`decide`] is the reference semantics. Passes must preserve it, and the BPF
//! back-end is validated against it.

use capsule_artifacts::{LaunchSettings, Target};
use std::collections::BTreeMap;
use std::fmt;

mod print;
use std::ops::Range;

/// A byte range in the policy source.
pub type Span = Range<usize>;

/// What seccomp does with a call. Ordered from most to least restrictive
/// in the kernel's own precedence, except that `Allow` is last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    KillProcess,
    KillThread,
    Trap,
    Errno(u16),
    /// Allowed, and the kernel logs it.
    Log,
    Allow,
}

impl Action {
    /// True when the call proceeds (allow, log, or errno(0) which fakes success
    /// without running the call is *not* counted: the call does not run).
    pub fn lets_call_run(self) -> bool {
        matches!(self, Action::Allow | Action::Log)
    }

    /// The kernel's precedence rank: lower wins when several deny rules match.
    pub fn precedence(self) -> u8 {
        match self {
            Action::KillProcess => 0,
            Action::KillThread => 1,
            Action::Trap => 2,
            Action::Errno(_) => 3,
            Action::Log => 4,
            Action::Allow => 5,
        }
    }

    /// The more restrictive of two deny actions; between two errnos, `self` (the
    /// one written first) wins.
    pub fn most_restrictive(self, other: Action) -> Action {
        if other.precedence() < self.precedence() { other } else { self }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::KillProcess => f.write_str("kill-process"),
            Action::KillThread => f.write_str("kill-thread"),
            Action::Trap => f.write_str("trap"),
            Action::Errno(n) => match crate::tables::errno_name(*n) {
                Some(name) => write!(f, "errno({name})"),
                None => write!(f, "errno({n})"),
            },
            Action::Log => f.write_str("log"),
            Action::Allow => f.write_str("allow"),
        }
    }
}

/// The width the kernel reads an argument with. Seccomp always sees the full 64-bit
/// register; the kernel truncates to the C type, so the filter must too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Width {
    W32,
    W64,
}

impl Width {
    pub fn mask(self) -> u64 {
        match self {
            Width::W32 => u32::MAX as u64,
            Width::W64 => u64::MAX,
        }
    }
    pub fn bits(self) -> u32 {
        match self {
            Width::W32 => 32,
            Width::W64 => 64,
        }
    }
}

/// One comparison of one argument against constants, on the argument's width.
/// All values are already truncated to the width.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Test {
    Eq(u64),
    Ne(u64),
    Lt(u64),
    Le(u64),
    Gt(u64),
    Ge(u64),
    /// `arg & mask == value`
    MaskedEq {
        mask: u64,
        value: u64,
    },
    /// `arg & mask != value`
    MaskedNe {
        mask: u64,
        value: u64,
    },
    /// Sorted, deduplicated.
    In(Vec<u64>),
    /// Sorted, deduplicated.
    NotIn(Vec<u64>),
}

impl Test {
    /// Evaluate on a value already truncated to the argument's width.
    pub fn eval(&self, v: u64) -> bool {
        match self {
            Test::Eq(x) => v == *x,
            Test::Ne(x) => v != *x,
            Test::Lt(x) => v < *x,
            Test::Le(x) => v <= *x,
            Test::Gt(x) => v > *x,
            Test::Ge(x) => v >= *x,
            Test::MaskedEq { mask, value } => v & mask == *value,
            Test::MaskedNe { mask, value } => v & mask != *value,
            Test::In(xs) => xs.binary_search(&v).is_ok(),
            Test::NotIn(xs) => xs.binary_search(&v).is_err(),
        }
    }
}

/// A reference to a syscall argument with the width the kernel reads it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Arg {
    /// 0..=5
    pub index: u8,
    pub width: Width,
}

/// A boolean condition over a call's arguments.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cond {
    True,
    False,
    Test { arg: Arg, test: Test },
    Not(Box<Cond>),
    And(Vec<Cond>),
    Or(Vec<Cond>),
}

impl Cond {
    /// Evaluate on the raw 64-bit argument registers, truncating each to its width
    /// as the kernel does.
    pub fn eval(&self, args: &[u64; 6]) -> bool {
        match self {
            Cond::True => true,
            Cond::False => false,
            Cond::Test { arg, test } => test.eval(args[arg.index as usize] & arg.width.mask()),
            Cond::Not(c) => !c.eval(args),
            Cond::And(cs) => cs.iter().all(|c| c.eval(args)),
            Cond::Or(cs) => cs.iter().any(|c| c.eval(args)),
        }
    }
}

/// Which section a rule came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleKind {
    /// `deny:` with its resolved action (never `Allow`).
    Deny(Action),
    /// `audit:` (allowed, and recorded in the audit log).
    Audit,
    /// `allow:`
    Allow,
}

impl RuleKind {
    /// The order rules decide in: deny rules by the kernel's precedence (between two
    /// errnos the caller keeps source order), then audit, then allow.
    pub fn precedence(self) -> u8 {
        match self {
            // 0..=4; verified IR has no allowing deny rule.
            RuleKind::Deny(action) => action.precedence(),
            RuleKind::Audit => 5,
            RuleKind::Allow => 6,
        }
    }
}

/// Where a rule was written, for `explain` and diagnostics.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The rule's span in the policy source.
    pub span: Span,
    /// The group the syscall came from, when the rule named a group.
    pub group: Option<String>,
    /// The setting that implies the rule, for a rule the policy does not write as one
    /// (`filesystem: setid: false`); `span` is then the setting's, or empty when the
    /// setting is not written and its default applies.
    pub implied_by: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    pub kind: RuleKind,
    pub cond: Cond,
    pub origin: Origin,
}

/// Every rule that names one syscall, in source order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyscallRules {
    pub name: &'static str,
    pub nr: u32,
    pub rules: Vec<Rule>,
}

/// The syscall half of a policy for one Linux target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyscallPolicy {
    pub target: Target,
    /// Keyed by syscall number; only syscalls some rule names.
    pub syscalls: BTreeMap<u32, SyscallRules>,
}

/// A whole policy after lowering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub description: Option<String>,
    /// For calls no rule matches. Never a bare "deny": always a concrete action.
    pub default: Action,
    /// For numbers above the target table's highest.
    pub newer_syscalls: Action,
    /// For calls through another ABI (AUDIT_ARCH mismatch; x32 on x86_64).
    pub foreign_arch: Action,
    pub targets: Vec<Target>,
    /// One per Linux target in `targets`, in `Target::LINUX` order.
    pub syscalls: Vec<SyscallPolicy>,
    pub launch: LaunchSettings,
}

impl Policy {
    pub fn syscalls_for(&self, target: Target) -> Option<&SyscallPolicy> {
        self.syscalls.iter().find(|s| s.target == target)
    }
}

/// The outcome of one call, with the rule that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// Allowed through an `audit:` rule: the supervisor records it.
    pub audited: bool,
    pub reason: Reason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// A rule matched (the deciding one: the most restrictive deny, or the first
    /// matching allow/audit).
    Rule(Origin),
    Default,
    NewerSyscall,
    ForeignArch,
}

/// One call as seccomp sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    pub arch: u32,
    pub nr: u32,
    pub args: [u64; 6],
}

/// The reference semantics of a policy for one target: deny wins, then audit, then
/// allow, then the default.
pub fn decide(policy: &Policy, target: Target, call: &Call) -> Decision {
    let decision = |action, reason| Decision { action, audited: false, reason };
    let table = crate::tables::table(target);
    let foreign = Some(call.arch) != target.audit_arch()
        || (target == Target::LinuxX86_64 && call.nr & capsule_artifacts::target::X32_SYSCALL_BIT != 0);
    if foreign {
        return decision(policy.foreign_arch, Reason::ForeignArch);
    }
    if call.nr > table.max_nr {
        return decision(policy.newer_syscalls, Reason::NewerSyscall);
    }
    let Some(rules) = policy.syscalls_for(target).and_then(|s| s.syscalls.get(&call.nr)) else {
        return decision(policy.default, Reason::Default);
    };
    decide_rules(&rules.rules, &call.args).unwrap_or(decision(policy.default, Reason::Default))
}

/// The decision of a syscall's rules alone, or `None` when none matches.
pub fn decide_rules(rules: &[Rule], args: &[u64; 6]) -> Option<Decision> {
    let mut deny: Option<(Action, &Origin)> = None;
    let mut allow: Option<&Origin> = None;
    let mut audit: Option<&Origin> = None;
    for rule in rules {
        if !rule.cond.eval(args) {
            continue;
        }
        match rule.kind {
            RuleKind::Deny(action) => {
                deny = Some(match deny {
                    Some((best, origin)) if best.most_restrictive(action) == best => (best, origin),
                    _ => (action, &rule.origin),
                })
            }
            RuleKind::Audit => audit = audit.or(Some(&rule.origin)),
            RuleKind::Allow => allow = allow.or(Some(&rule.origin)),
        }
    }
    if let Some((action, origin)) = deny {
        return Some(Decision { action, audited: false, reason: Reason::Rule(origin.clone()) });
    }
    if let Some(origin) = audit {
        return Some(Decision { action: Action::Allow, audited: true, reason: Reason::Rule(origin.clone()) });
    }
    allow.map(|origin| Decision { action: Action::Allow, audited: false, reason: Reason::Rule(origin.clone()) })
}
