//! The seccomp-BPF back-end for linux-x86_64 and linux-aarch64.
//!
//! Program shape:
//!
//! ```text
//!   ld [arch]; jeq AUDIT_ARCH_<target> else → foreign-arch
//!   ld [nr]
//!   search tree of `jge` over number ranges; each leaf either returns, or (the
//!   range above the table, on x86_64) `jset 0x40000000` → foreign-arch for the x32
//!   numbers (and -1), else newer-syscalls, or evaluates one syscall's rules on its
//!   arguments:
//!     deny rules, most restrictive first   cond → ret deny action
//!     audit rules                          cond → ret audit (notify or allow)
//!     allow rules                          cond → ret allow
//!     ret default
//! ```
//!
//! A syscall allowed without conditions is a leaf that returns `SECCOMP_RET_ALLOW`
//! after loading only the arch and the number, so the kernel's action cache skips the
//! filter for it. Arguments are loaded only inside a syscall's rules: 32-bit arguments
//! by their low word only, 64-bit ones high word first.

mod asm;
mod paths;
mod ranges;
mod tree;

pub use paths::longest_path;
pub use ranges::{Fallbacks, Leaf, NrRange, action_ret, ranges, ret_value};

use crate::bpf::interp::Program;
use crate::bpf::{self, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JSET, Insn, MAX_INSNS, OFFSET_ARCH, OFFSET_NR};
use crate::ir::{Action, Arg, Cond, Policy, Rule, RuleKind, Test, Width};
use crate::valid::{PolicyInfo, TargetInfo, visit_tests};
use asm::{Asm, AsmError, Label};
use capsule_artifacts::Target;
use capsule_artifacts::target::X32_SYSCALL_BIT;
use std::collections::BTreeMap;
use tree::Tree;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodegenError {
    #[error("{0} has no seccomp-BPF back-end")]
    NotLinux(Target),
    #[error("the policy has no syscall rules for {0}")]
    NoSuchTarget(Target),
    #[error(
        "the {target} filter needs {len} instructions, the kernel accepts at most {MAX_INSNS}; \
         the syscalls with the most argument tests are {heaviest}: merge their conditions \
         (fewer distinct values, ranges instead of lists)"
    )]
    TooLong { target: Target, len: usize, heaviest: String },
    #[error("internal error in the BPF assembler: {0}")]
    Assembler(#[from] AsmError),
}

/// Compile one Linux target's syscall policy to a seccomp filter.
pub fn compile(policy: &Policy, info: &PolicyInfo, target: Target) -> Result<Vec<Insn>, CodegenError> {
    let arch = target.audit_arch().ok_or(CodegenError::NotLinux(target))?;
    let syscalls = policy.syscalls_for(target).ok_or(CodegenError::NoSuchTarget(target))?;
    let info = info.target(target).ok_or(CodegenError::NoSuchTarget(target))?;
    let fallbacks = Fallbacks { default: policy.default, newer: policy.newer_syscalls, foreign: policy.foreign_arch };
    let ranges = ranges(syscalls, info, fallbacks);

    let mut code = Gen { asm: Asm::new(), rets: BTreeMap::new() };
    // The notify table answers native calls only: a foreign call is never notified.
    let foreign = code.ret_label(ranges::action_ret(policy.foreign_arch));
    let native = code.asm.label();
    code.asm.load(OFFSET_ARCH);
    code.asm.jump(BPF_JEQ, arch, native, foreign);
    code.asm.bind(native);
    code.asm.load(OFFSET_NR);
    let weights: Vec<u64> = ranges.iter().map(|r| weight(r, info)).collect();
    let tails = tails(&ranges, policy, syscalls, info)?;
    // The tightest budget from MAX_ALLOWED_PATH up that some tree keeps (with a
    // large enough budget the unbounded optimum does), and the cheapest tree for it.
    let tree = (MAX_ALLOWED_PATH..)
        .find_map(|budget| {
            let bounds: Vec<Option<usize>> =
                tails.iter().map(|tail| tail.map(|t| budget.saturating_sub(PROLOGUE + t))).collect();
            tree::bounded(&weights, &bounds)
        })
        .expect("a budget past the unbounded tree's depth is kept");
    code.search(&tree, &ranges, policy, syscalls, info);
    code.emit_returns();

    let program = code.asm.finish()?;
    if program.len() > MAX_INSNS {
        return Err(CodegenError::TooLong { target, len: program.len(), heaviest: heaviest(syscalls) });
    }
    Ok(program)
}

/// The filter as the kernel's `struct sock_filter[]`.
pub fn compile_bytes(policy: &Policy, info: &PolicyInfo, target: Target) -> Result<Vec<u8>, CodegenError> {
    compile(policy, info, target).map(|program| bpf::encode(&program))
}

/// The most instructions an allowed call executes, whatever its arguments, when the
/// policy's argument tests leave room for it: the issue's target for Docker's profile.
pub const MAX_ALLOWED_PATH: usize = 14;

/// The instructions before the search: `ld [arch]; jeq arch; ld [nr]`.
const PROLOGUE: usize = 3;

/// Whether a return value lets the call run without the supervisor.
fn allows(ret: u32) -> bool {
    matches!(ret, bpf::SECCOMP_RET_ALLOW | bpf::SECCOMP_RET_LOG)
}

/// For each range, the longest path an allowed call takes after the search tree (its
/// `ret`, or the syscall's argument tests and their `ret`); `None` when the range
/// allows nothing. A range at depth d then costs `PROLOGUE + d + tail` instructions.
fn tails(
    ranges: &[NrRange],
    policy: &Policy,
    syscalls: &crate::ir::SyscallPolicy,
    info: &TargetInfo,
) -> Result<Vec<Option<usize>>, CodegenError> {
    ranges
        .iter()
        .map(|range| match range.leaf {
            Leaf::Ret(value) => Ok(allows(value).then_some(1)),
            Leaf::X32Split { native, x32 } => Ok((allows(native) || allows(x32)).then_some(2)),
            Leaf::Rules(nr) => rules_path(&syscalls.syscalls[&nr].rules, nr, policy, info),
        })
        .collect()
}

/// The longest allowed path through one syscall's rules, its `ret` included, with
/// the number already loaded; `None` when the rules allow nothing.
fn rules_path(rules: &[Rule], nr: u32, policy: &Policy, info: &TargetInfo) -> Result<Option<usize>, CodegenError> {
    let mut alone = Gen { asm: Asm::new(), rets: BTreeMap::new() };
    alone.asm.load(OFFSET_NR);
    alone.rules(rules, nr, policy, info);
    alone.emit_returns();
    // Too long for the kernel: the whole program is too, and says so after the search.
    let Ok(program) = Program::new(alone.asm.finish()?) else {
        return Ok(None);
    };
    let arch = info.target.audit_arch().unwrap_or_default();
    Ok(longest_path(&program, arch, nr, allows).map(|n| n - 1))
}

/// Every range costs one; each number it lets run (possibly, for conditional rules)
/// costs four more, so allowed calls sit nearer the root while the depth stays within
/// a few levels of log2(ranges).
fn weight(range: &NrRange, info: &TargetInfo) -> u64 {
    let allowed = match range.leaf {
        Leaf::Ret(bpf::SECCOMP_RET_ALLOW | bpf::SECCOMP_RET_LOG) => {
            u64::from(range.hi.min(info.max_nr).saturating_sub(range.lo)) + 1
        }
        Leaf::Ret(_) | Leaf::X32Split { .. } => 0,
        Leaf::Rules(_) => 1,
    };
    1 + 4 * allowed
}

/// The five syscalls with the most argument tests, for the too-long error.
fn heaviest(syscalls: &crate::ir::SyscallPolicy) -> String {
    let mut counts: Vec<(usize, &str)> = syscalls
        .syscalls
        .values()
        .map(|s| {
            let mut n = 0;
            s.rules.iter().for_each(|r| visit_tests(&r.cond, &mut |_, t| n += test_weight(t)));
            (n, s.name)
        })
        .filter(|&(n, _)| n > 0)
        .collect();
    counts.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    counts.iter().take(5).map(|(n, name)| format!("{name} ({n} tests)")).collect::<Vec<_>>().join(", ")
}

fn test_weight(test: &Test) -> usize {
    match test {
        Test::In(xs) | Test::NotIn(xs) => xs.len(),
        _ => 1,
    }
}

struct Gen {
    asm: Asm,
    /// One shared `ret` per distinct value, emitted at the end.
    rets: BTreeMap<u32, Label>,
}

impl Gen {
    fn ret_label(&mut self, value: u32) -> Label {
        if let Some(&l) = self.rets.get(&value) {
            return l;
        }
        let l = self.asm.label();
        self.rets.insert(value, l);
        l
    }

    fn emit_returns(&mut self) {
        for (value, label) in std::mem::take(&mut self.rets) {
            self.asm.bind(label);
            self.asm.ret(value);
        }
    }

    /// The code that starts at the returned label and decides for the numbers of
    /// `tree`'s ranges (the accumulator holds the number).
    fn search(
        &mut self,
        tree: &Tree,
        ranges: &[NrRange],
        policy: &Policy,
        syscalls: &crate::ir::SyscallPolicy,
        info: &TargetInfo,
    ) {
        match tree {
            Tree::Leaf(i) => match ranges[*i].leaf {
                Leaf::Ret(value) => {
                    let l = self.ret_label(value);
                    self.asm.ja(l);
                }
                Leaf::Rules(nr) => self.rules(&syscalls.syscalls[&nr].rules, nr, policy, info),
                Leaf::X32Split { native, x32 } => {
                    let (native, x32) = (self.ret_label(native), self.ret_label(x32));
                    self.asm.jump(BPF_JSET, X32_SYSCALL_BIT, x32, native);
                }
            },
            Tree::Node { split, left, right } => {
                let right_label = self.subtree_label(right, ranges);
                let left_label = self.subtree_label(left, ranges);
                self.asm.jump(BPF_JGE, ranges[*split].lo, right_label, left_label);
                for (sub, label) in [(left, left_label), (right, right_label)] {
                    if !matches!(**sub, Tree::Leaf(i) if matches!(ranges[i].leaf, Leaf::Ret(_))) {
                        self.asm.bind(label);
                        self.search(sub, ranges, policy, syscalls, info);
                    }
                }
            }
        }
    }

    /// A leaf that returns is jumped to directly at its shared `ret`.
    fn subtree_label(&mut self, tree: &Tree, ranges: &[NrRange]) -> Label {
        match *tree {
            Tree::Leaf(i) => match ranges[i].leaf {
                Leaf::Ret(value) => self.ret_label(value),
                Leaf::Rules(_) | Leaf::X32Split { .. } => self.asm.label(),
            },
            Tree::Node { .. } => self.asm.label(),
        }
    }

    /// One syscall's rules as a decision list equal to `ir::decide_rules`: deny rules
    /// from the most restrictive (first written among equals), then audit, then allow,
    /// then the default.
    fn rules(&mut self, rules: &[Rule], nr: u32, policy: &Policy, info: &TargetInfo) {
        let mut ordered: Vec<&Rule> = rules.iter().collect();
        ordered.sort_by_key(|r| r.kind.precedence());
        for rule in ordered {
            let (action, audited) = match rule.kind {
                RuleKind::Deny(action) => (action, false),
                RuleKind::Audit => (Action::Allow, true),
                RuleKind::Allow => (Action::Allow, false),
            };
            let decided = self.ret_label(ret_value(info, nr, action, audited));
            let next = self.asm.label();
            self.cond(&rule.cond, decided, next);
            self.asm.bind(next);
        }
        let default = self.ret_label(ret_value(info, nr, policy.default, false));
        self.asm.ja(default);
    }

    /// Jump to `t` when `cond` holds, else to `f`.
    fn cond(&mut self, cond: &Cond, t: Label, f: Label) {
        match cond {
            Cond::True => self.asm.ja(t),
            Cond::False => self.asm.ja(f),
            Cond::Not(inner) => self.cond(inner, f, t),
            Cond::And(children) | Cond::Or(children) => {
                let is_and = matches!(cond, Cond::And(_));
                let Some((last, init)) = children.split_last() else {
                    return self.asm.ja(if is_and { t } else { f });
                };
                for child in init {
                    let next = self.asm.label();
                    if is_and {
                        self.cond(child, next, f)
                    } else {
                        self.cond(child, t, next)
                    }
                    self.asm.bind(next);
                }
                self.cond(last, t, f);
            }
            Cond::Test { arg, test } => self.test(*arg, test, t, f),
        }
    }

    fn test(&mut self, arg: Arg, test: &Test, t: Label, f: Label) {
        match arg.width {
            Width::W32 => self.test32(bpf::offset_arg_lo(arg.index), test, t, f),
            Width::W64 => self.test64(arg.index, test, t, f),
        }
    }

    /// A test on one 32-bit word (the whole of a 32-bit argument).
    fn test32(&mut self, offset: u32, test: &Test, t: Label, f: Label) {
        let word = |v: u64| v as u32;
        self.asm.load(offset);
        match test {
            Test::Eq(x) => self.asm.jump(BPF_JEQ, word(*x), t, f),
            Test::Ne(x) => self.asm.jump(BPF_JEQ, word(*x), f, t),
            Test::Lt(x) => self.asm.jump(BPF_JGE, word(*x), f, t),
            Test::Le(x) => self.asm.jump(BPF_JGT, word(*x), f, t),
            Test::Gt(x) => self.asm.jump(BPF_JGT, word(*x), t, f),
            Test::Ge(x) => self.asm.jump(BPF_JGE, word(*x), t, f),
            Test::MaskedEq { mask, value } => self.masked32(word(*mask), word(*value), t, f),
            Test::MaskedNe { mask, value } => self.masked32(word(*mask), word(*value), f, t),
            Test::In(xs) => self.one_of32(xs.iter().map(|&x| word(x)), t, f),
            Test::NotIn(xs) => self.one_of32(xs.iter().map(|&x| word(x)), f, t),
        }
    }

    /// `A & mask == value` with the word already loaded.
    fn masked32(&mut self, mask: u32, value: u32, t: Label, f: Label) {
        if value & !mask != 0 {
            return self.asm.ja(f);
        }
        if value == 0 {
            return self.asm.jump(BPF_JSET, mask, f, t);
        }
        if mask.is_power_of_two() {
            return self.asm.jump(BPF_JSET, mask, t, f);
        }
        if mask != u32::MAX {
            self.asm.and(mask);
        }
        self.asm.jump(BPF_JEQ, value, t, f);
    }

    /// The loaded word is one of `values`.
    fn one_of32(&mut self, values: impl Iterator<Item = u32>, t: Label, f: Label) {
        let mut values: Vec<u32> = values.collect();
        values.sort_unstable();
        values.dedup();
        self.one_of_sorted32(&values, t, f);
    }

    /// A chain of `jeq` for up to three values; from four on, a `jge` on the middle
    /// value halves the list first, so the longest path grows with the log of the
    /// list rather than its length.
    fn one_of_sorted32(&mut self, values: &[u32], t: Label, f: Label) {
        if values.len() >= 4 {
            let (low, high) = values.split_at(values.len() / 2);
            let (low_label, high_label) = (self.asm.label(), self.asm.label());
            self.asm.jump(BPF_JGE, high[0], high_label, low_label);
            self.asm.bind(low_label);
            self.one_of_sorted32(low, t, f);
            self.asm.bind(high_label);
            return self.one_of_sorted32(high, t, f);
        }
        let Some((last, init)) = values.split_last() else {
            return self.asm.ja(f);
        };
        for &v in init {
            let next = self.asm.label();
            self.asm.jump(BPF_JEQ, v, t, next);
            self.asm.bind(next);
        }
        self.asm.jump(BPF_JEQ, *last, t, f);
    }

    /// A test on a 64-bit argument: the high word decides unless it equals the
    /// constant's, then the low word does.
    fn test64(&mut self, index: u8, test: &Test, t: Label, f: Label) {
        let (hi_off, lo_off) = (bpf::offset_arg_hi(index), bpf::offset_arg_lo(index));
        let hi = |v: u64| (v >> 32) as u32;
        let lo = |v: u64| v as u32;
        match test {
            Test::Eq(x) | Test::Ne(x) => {
                let (t, f) = if matches!(test, Test::Eq(_)) { (t, f) } else { (f, t) };
                let low = self.asm.label();
                self.asm.load(hi_off);
                self.asm.jump(BPF_JEQ, hi(*x), low, f);
                self.asm.bind(low);
                self.asm.load(lo_off);
                self.asm.jump(BPF_JEQ, lo(*x), t, f);
            }
            // arg > x  ⇔  hi > hi(x) ∨ (hi == hi(x) ∧ lo > lo(x)); ≥ likewise.
            Test::Gt(x) | Test::Ge(x) | Test::Lt(x) | Test::Le(x) => {
                let (low_op, t, f) = match test {
                    Test::Gt(_) => (BPF_JGT, t, f),
                    Test::Ge(_) => (BPF_JGE, t, f),
                    Test::Le(_) => (BPF_JGT, f, t),
                    _ => (BPF_JGE, f, t),
                };
                let (same, low) = (self.asm.label(), self.asm.label());
                self.asm.load(hi_off);
                self.asm.jump(BPF_JGT, hi(*x), t, same);
                self.asm.bind(same);
                self.asm.jump(BPF_JEQ, hi(*x), low, f);
                self.asm.bind(low);
                self.asm.load(lo_off);
                self.asm.jump(low_op, lo(*x), t, f);
            }
            Test::MaskedEq { mask, value } | Test::MaskedNe { mask, value } => {
                let (t, f) = if matches!(test, Test::MaskedEq { .. }) { (t, f) } else { (f, t) };
                let low = self.asm.label();
                if hi(*mask) == 0 {
                    if hi(*value) != 0 {
                        return self.asm.ja(f);
                    }
                    self.asm.ja(low);
                } else {
                    self.asm.load(hi_off);
                    self.masked32(hi(*mask), hi(*value), low, f);
                }
                self.asm.bind(low);
                if lo(*mask) == 0 {
                    return if lo(*value) == 0 { self.asm.ja(t) } else { self.asm.ja(f) };
                }
                self.asm.load(lo_off);
                self.masked32(lo(*mask), lo(*value), t, f);
            }
            Test::In(xs) | Test::NotIn(xs) => {
                let (t, f) = if matches!(test, Test::In(_)) { (t, f) } else { (f, t) };
                // The sorted values grouped by high word.
                let mut groups: Vec<(u32, Vec<u32>)> = Vec::new();
                for &x in xs {
                    match groups.last_mut() {
                        Some((h, los)) if *h == hi(x) => los.push(lo(x)),
                        _ => groups.push((hi(x), vec![lo(x)])),
                    }
                }
                if groups.is_empty() {
                    return self.asm.ja(f);
                }
                self.asm.load(hi_off);
                let labels: Vec<Label> = groups.iter().map(|_| self.asm.label()).collect();
                self.one_of_targets(groups.iter().map(|g| g.0).zip(labels.iter().copied()), f);
                for ((_, los), label) in groups.into_iter().zip(labels) {
                    self.asm.bind(label);
                    self.asm.load(lo_off);
                    self.one_of32(los.into_iter(), t, f);
                }
            }
        }
    }

    /// Jump to the label of the value the loaded word equals, else to `f`.
    fn one_of_targets(&mut self, cases: impl ExactSizeIterator<Item = (u32, Label)>, f: Label) {
        let n = cases.len();
        for (i, (v, target)) in cases.enumerate() {
            let next = if i + 1 == n { f } else { self.asm.label() };
            self.asm.jump(BPF_JEQ, v, target, next);
            if i + 1 != n {
                self.asm.bind(next);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::back::validate::validate;
    use crate::passes::testing::{X86, arb_policy};
    use capsule_artifacts::launch::Record;

    fn compile_and_validate(original: &Policy, optimise: bool) {
        let optimised = if optimise { crate::passes::run_all(original) } else { original.clone() };
        let info = crate::valid::verify(&optimised).expect("valid IR");
        let program = compile(&optimised, &info, X86).expect("compiles");
        if let Err(e) = validate(original, &info, X86, &program) {
            panic!("{e}\npolicy: {:#?}", original.syscalls[0].syscalls);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// The back-end is correct on any valid IR, normalised or not, and whatever
        /// the policy records.
        #[test]
        fn the_filter_decides_like_the_ir(mut policy in arb_policy(), records in 0..4usize, optimise: bool) {
            policy.launch.audit.record = match records {
                0 => vec![],
                1 => vec![Record::Denials],
                2 => vec![Record::AuditedSyscalls],
                _ => vec![Record::Denials, Record::AuditedSyscalls],
            };
            compile_and_validate(&policy, optimise);
        }
    }
}
