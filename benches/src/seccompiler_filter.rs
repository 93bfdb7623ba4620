//! seccompiler (rust-vmm, used by Firecracker) building the filter of a Capsule
//! policy's syscall rules through its own API.
//!
//! seccompiler has one match action per filter: calls its rules match are allowed,
//! everything else gets the mismatch action (the policy's default). A deny rule whose
//! action differs from the default (Docker's `clone3: errno(ENOSYS)`) therefore gets
//! the default here; [`Built::notes`] lists them. Path lengths are not affected.

use crate::libseccomp::{Conj, dnf};
use anyhow::{Context, bail};
use capsule_artifacts::Target;
use capsule_compiler::bpf::Insn;
use capsule_compiler::ir::{Action, Cond, Policy, RuleKind, Test, Width};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

pub struct Built {
    pub program: Vec<Insn>,
    /// What the filter decides differently from the policy, and why.
    pub notes: Vec<String>,
}

fn action(action: Action) -> SeccompAction {
    match action {
        Action::KillProcess => SeccompAction::KillProcess,
        Action::KillThread => SeccompAction::KillThread,
        Action::Trap => SeccompAction::Trap,
        Action::Errno(e) => SeccompAction::Errno(u32::from(e)),
        Action::Log => SeccompAction::Log,
        Action::Allow => SeccompAction::Allow,
    }
}

/// The alternatives (any one is enough) of condition lists (all must hold) that say
/// one test.
fn test_alternatives(index: u8, width: Width, test: &Test) -> anyhow::Result<Vec<Vec<SeccompCondition>>> {
    let len = match width {
        Width::W32 => SeccompCmpArgLen::Dword,
        Width::W64 => SeccompCmpArgLen::Qword,
    };
    let cond = |op, value| SeccompCondition::new(index, len.clone(), op, value).context("seccompiler condition");
    Ok(match test {
        Test::Eq(x) => vec![vec![cond(SeccompCmpOp::Eq, *x)?]],
        Test::Ne(x) => vec![vec![cond(SeccompCmpOp::Ne, *x)?]],
        Test::Lt(x) => vec![vec![cond(SeccompCmpOp::Lt, *x)?]],
        Test::Le(x) => vec![vec![cond(SeccompCmpOp::Le, *x)?]],
        Test::Gt(x) => vec![vec![cond(SeccompCmpOp::Gt, *x)?]],
        Test::Ge(x) => vec![vec![cond(SeccompCmpOp::Ge, *x)?]],
        Test::MaskedEq { mask, value } => vec![vec![cond(SeccompCmpOp::MaskedEq(*mask), *value)?]],
        Test::MaskedNe { mask, value } => (0..64)
            .map(|b| 1u64 << b)
            .filter(|b| mask & b != 0)
            .map(|b| Ok(vec![cond(SeccompCmpOp::MaskedEq(b), !value & b)?]))
            .collect::<anyhow::Result<_>>()?,
        Test::In(xs) => xs.iter().map(|x| Ok(vec![cond(SeccompCmpOp::Eq, *x)?])).collect::<anyhow::Result<_>>()?,
        Test::NotIn(xs) => vec![xs.iter().map(|x| cond(SeccompCmpOp::Ne, *x)).collect::<anyhow::Result<_>>()?],
    })
}

/// seccompiler rules for one conjunction; `None` when it holds unconditionally.
fn conj_rules(conj: &Conj) -> anyhow::Result<Option<Vec<SeccompRule>>> {
    if conj.is_empty() {
        return Ok(None);
    }
    let mut combos: Vec<Vec<SeccompCondition>> = vec![vec![]];
    for (arg, test) in conj {
        let alternatives = test_alternatives(arg.index, arg.width, test)?;
        combos =
            combos.iter().flat_map(|c| alternatives.iter().map(move |alt| [c.clone(), alt.clone()].concat())).collect();
    }
    let rules =
        combos.into_iter().map(|c| SeccompRule::new(c).context("seccompiler rule")).collect::<anyhow::Result<_>>()?;
    Ok(Some(rules))
}

/// The policy's allowed calls for `target` as a seccompiler filter.
pub fn build(policy: &Policy, target: Target) -> anyhow::Result<Built> {
    let arch = match target {
        Target::LinuxX86_64 => TargetArch::x86_64,
        Target::LinuxAarch64 => TargetArch::aarch64,
        Target::Macos => bail!("seccompiler has no macOS"),
    };
    let syscalls = policy.syscalls_for(target).context("target not in policy")?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let mut notes = Vec::new();
    for sc in syscalls.syscalls.values() {
        let (mut allow, mut deny) = (Vec::new(), Vec::new());
        for rule in &sc.rules {
            match rule.kind {
                RuleKind::Allow | RuleKind::Audit => allow.push(rule.cond.clone()),
                RuleKind::Deny(a) => {
                    if a != policy.default {
                        notes.push(format!("{}: {a} becomes the default, {}", sc.name, policy.default));
                    }
                    deny.push(rule.cond.clone());
                }
            }
        }
        let allowed = Cond::And(vec![Cond::Or(allow), Cond::Not(Box::new(Cond::Or(deny)))]);
        let mut syscall_rules = Vec::new();
        let mut unconditional = false;
        for conj in dnf(&allowed, false) {
            match conj_rules(&conj)? {
                None => unconditional = true,
                Some(r) => syscall_rules.extend(r),
            }
        }
        if unconditional {
            rules.insert(i64::from(sc.nr), Vec::new());
        } else if !syscall_rules.is_empty() {
            rules.insert(i64::from(sc.nr), syscall_rules);
        }
    }
    let filter = SeccompFilter::new(rules, action(policy.default), SeccompAction::Allow, arch)
        .context("seccompiler refused the filter")?;
    let program: BpfProgram = filter.try_into().context("seccompiler could not compile the filter")?;
    let program = program.into_iter().map(|i| Insn { code: i.code, jt: i.jt, jf: i.jf, k: i.k }).collect();
    Ok(Built { program, notes })
}
