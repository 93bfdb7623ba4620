//! Policy → OCI profile (`oci-seccomp.json`).
//!
//! Capsule's per-syscall decision (most restrictive matching deny, else allow when an
//! allow or audit rule matches, else the default) is cut into disjoint regions, one
//! per action, so that the profile never relies on how libseccomp settles two
//! overlapping rules with different actions: each deny action gets the calls its rules
//! match minus those of more restrictive actions, and allow gets what the allow rules
//! match minus every deny. Each region is written in disjunctive normal form, one OCI
//! entry per conjunction, with at most one comparison per argument (runc splits an
//! entry that compares one argument twice into alternatives). Everything is exact
//! except when a region would need more than [`MAX_ENTRIES_PER_SYSCALL`] entries: then
//! a denying region covers the whole syscall (minus stricter regions) and a region
//! whose calls run (allow, log) is left out, both of which allow less, and a warning
//! says so.

use super::{ArgCondition, Filter, Op, Profile, SyscallEntry, action_oci_name, docker_arch, scmp_arch};
use crate::ir::{Action, Arg, Cond, Policy, RuleKind, SyscallRules, Test, Width};
use capsule_artifacts::Target;
use std::collections::BTreeMap;

/// Far above what a hand-written policy needs (a 32-bit `!=` is 32 entries), low
/// enough that a profile stays loadable: libseccomp and the kernel cap a filter at
/// 4096 instructions.
pub const MAX_ENTRIES_PER_SYSCALL: usize = 256;

/// The profile and what it could not express exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// Pretty JSON with a trailing newline.
    pub json: String,
    /// One sentence each, in a stable order.
    pub warnings: Vec<String>,
}

/// One OCI rule for one syscall: an action under ANDed comparisons.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct OciRule {
    action: Action,
    args: Vec<ArgCondition>,
}

/// Write a policy's syscall rules for its Linux targets as an OCI seccomp profile.
pub fn export_oci(policy: &Policy) -> Exported {
    let mut warnings = Vec::new();
    let targets: Vec<Target> = policy.syscalls.iter().map(|s| s.target).collect();
    // Per target, per syscall name, the rules.
    let mut per_target: Vec<(Target, BTreeMap<&'static str, Vec<OciRule>>)> = Vec::new();
    for sp in &policy.syscalls {
        let mut by_name = BTreeMap::new();
        for rules in sp.syscalls.values() {
            let oci = syscall_rules(rules, policy.default, sp.target, &mut warnings);
            if !oci.is_empty() {
                by_name.insert(rules.name, oci);
            }
        }
        per_target.push((sp.target, by_name));
    }

    // A syscall whose rules are the same on every target that has rules for it gets
    // one entry; otherwise each target's rules are limited to it with Docker's
    // `includes.arches` (runc ignores names an architecture lacks).
    let mut names: Vec<&'static str> = per_target.iter().flat_map(|(_, m)| m.keys().copied()).collect();
    names.sort_unstable();
    names.dedup();
    let mut rows: Vec<(&'static str, OciRule, Option<Target>)> = Vec::new();
    for name in names {
        let versions: Vec<(Target, Option<&Vec<OciRule>>)> = per_target
            .iter()
            .filter(|(t, _)| crate::tables::table(*t).by_name(name).is_some())
            .map(|(t, m)| (*t, m.get(name)))
            .collect();
        let same = versions.windows(2).all(|w| w[0].1 == w[1].1);
        for (target, rules) in &versions {
            for rule in rules.iter().copied().flatten() {
                rows.push((name, rule.clone(), (!same).then_some(*target)));
            }
            if same {
                break;
            }
        }
    }

    // Group names with identical rules into one entry, in order of first appearance.
    let mut entries: Vec<SyscallEntry> = Vec::new();
    let mut index: BTreeMap<(OciRule, Option<Target>), usize> = BTreeMap::new();
    for (name, rule, only) in rows {
        let key = (rule, only);
        if let Some(&i) = index.get(&key) {
            entries[i].names.get_or_insert_with(Vec::new).push(name.to_string());
            continue;
        }
        let (rule, only) = key.clone();
        let (action, errno_ret) = action_oci_name(rule.action);
        index.insert(key, entries.len());
        entries.push(SyscallEntry {
            names: Some(vec![name.to_string()]),
            action: action.to_string(),
            errno_ret,
            args: (!rule.args.is_empty()).then_some(rule.args),
            includes: only.map(|t| Filter {
                arches: Some(vec![docker_arch(t).expect("linux").to_string()]),
                ..Default::default()
            }),
            ..Default::default()
        });
    }

    let audited = policy
        .syscalls
        .iter()
        .flat_map(|s| s.syscalls.values())
        // The rules `network: domains:` implies only feed the launcher's proxy records.
        .any(|r| {
            r.rules
                .iter()
                .any(|r| r.kind == RuleKind::Audit && r.origin.implied_by != Some(crate::front::lower::PROXY_SETTING))
        });
    if audited {
        warnings.push("audit rules are exported as SCMP_ACT_ALLOW: an OCI runtime has no Capsule audit log".into());
    }
    if policy.newer_syscalls != Action::Errno(38) {
        warnings.push(format!(
            "newer-syscalls: {} has no OCI equivalent; runc answers syscalls newer than it knows with ENOSYS",
            policy.newer_syscalls
        ));
    }
    if !matches!(policy.foreign_arch, Action::KillProcess | Action::KillThread) {
        warnings.push(format!(
            "foreign-arch: {} has no OCI equivalent; calls through an ABI not listed in `architectures` get libseccomp's bad-arch action (kill)",
            policy.foreign_arch
        ));
    }

    let (default_action, default_errno_ret) = action_oci_name(policy.default);
    let profile = Profile {
        default_action: default_action.to_string(),
        default_errno_ret,
        architectures: Some(targets.iter().filter_map(|t| scmp_arch(*t)).map(str::to_string).collect()),
        syscalls: Some(entries),
        ..Default::default()
    };
    let mut json = serde_json::to_string_pretty(&profile).expect("a profile always serialises");
    json.push('\n');
    Exported { json, warnings }
}

/// The OCI rules of one syscall, in a fixed order: deny regions from the most
/// restrictive action down, then the allow region.
fn syscall_rules(rules: &SyscallRules, default: Action, target: Target, warnings: &mut Vec<String>) -> Vec<OciRule> {
    // Deny actions in the order Capsule lets them win: the kernel's precedence, and
    // between two errnos the one written first.
    let mut deny: Vec<(Action, Vec<Cond>)> = Vec::new();
    let mut allow = Vec::new();
    for rule in &rules.rules {
        match rule.kind {
            RuleKind::Deny(action) => match deny.iter_mut().find(|(a, _)| *a == action) {
                Some((_, conds)) => conds.push(rule.cond.clone()),
                None => deny.push((action, vec![rule.cond.clone()])),
            },
            RuleKind::Allow | RuleKind::Audit => allow.push(rule.cond.clone()),
        }
    }
    deny.sort_by_key(|(action, _)| action.precedence()); // stable: errnos keep source order

    let mut out = Vec::new();
    let mut covered: Vec<Cond> = Vec::new();
    let mut regions: Vec<(Action, Cond)> = Vec::new();
    for (action, conds) in deny {
        regions.push((action, Cond::Or(conds)));
    }
    regions.push((Action::Allow, Cond::Or(allow)));
    for (action, cond) in regions {
        let region = Cond::And(vec![cond.clone(), Cond::Not(Box::new(Cond::Or(covered.clone())))]);
        let exact = dnf(&region, false).and_then(|conjuncts| {
            let mut rules = Vec::new();
            for conjunct in conjuncts {
                for args in express(&conjunct)? {
                    rules.push(args);
                    if rules.len() > MAX_ENTRIES_PER_SYSCALL {
                        return None;
                    }
                }
            }
            Some(rules)
        });
        match exact {
            Some(list) => {
                covered.push(cond);
                if action != default {
                    out.extend(list.into_iter().map(|args| OciRule { action, args }));
                }
            }
            // A region whose calls run (allow, log) may only shrink: leave it out, and
            // keep its calls out of later regions too.
            None if action.lets_call_run() => {
                warnings.push(format!(
                    "{target} `{}`: the {action} rules need more than {MAX_ENTRIES_PER_SYSCALL} OCI rules; they are left out (the default applies)",
                    rules.name
                ));
                covered.push(cond);
            }
            None => {
                warnings.push(format!(
                    "{target} `{}`: the {action} rules need more than {MAX_ENTRIES_PER_SYSCALL} OCI rules; {action} applies to every call not denied more strictly",
                    rules.name
                ));
                let rest = Cond::Not(Box::new(Cond::Or(covered.clone())));
                covered.push(Cond::True);
                if action != default {
                    match dnf(&rest, false).and_then(|cs| cs.iter().map(express).collect::<Option<Vec<_>>>()) {
                        Some(lists) => out.extend(lists.into_iter().flatten().map(|args| OciRule { action, args })),
                        // Even the rest is too complex: a conditional always-true rule,
                        // so libseccomp does not let it replace the stricter ones.
                        None => out.push(OciRule { action, args: vec![always_true()] }),
                    }
                }
            }
        }
    }
    // libseccomp lets an unconditional rule replace every other rule of its syscall:
    // keep the regions by making an unconditional rule among others conditional.
    if out.len() > 1 {
        for rule in &mut out {
            if rule.args.is_empty() {
                rule.args.push(always_true());
            }
        }
    }
    out
}

/// `arg0 & 0 == 0`: true for every call, yet a conditional rule for libseccomp.
fn always_true() -> ArgCondition {
    ArgCondition { index: 0, value: 0, value_two: 0, op: Op::MaskedEq.oci_name().into() }
}

/// A leaf of the normal form: a test libseccomp has an operator for, at IR semantics
/// (on the argument's width).
type Leaf = (Arg, Test);
type Conjunct = Vec<Leaf>;

/// The disjunctive normal form of `cond` (negated when `negate`), with negation pushed
/// to the leaves and `in`, `not in` and masked `!=` expanded; `None` when larger than
/// the cap. An empty list is false; a list holding an empty conjunct is true.
fn dnf(cond: &Cond, negate: bool) -> Option<Vec<Conjunct>> {
    let truth = |value: bool| if value { vec![vec![]] } else { vec![] };
    Some(match cond {
        Cond::True => truth(!negate),
        Cond::False => truth(negate),
        Cond::Not(inner) => dnf(inner, !negate)?,
        Cond::Test { arg, test } => leaf(*arg, test, negate),
        Cond::And(cs) | Cond::Or(cs) => {
            let conjunctive = matches!(cond, Cond::And(_)) != negate;
            if conjunctive {
                let mut acc = vec![vec![]];
                for c in cs {
                    let part = dnf(c, negate)?;
                    let mut next = Vec::new();
                    for a in &acc {
                        for p in &part {
                            next.push(a.iter().chain(p).cloned().collect::<Conjunct>());
                        }
                    }
                    if next.len() > MAX_ENTRIES_PER_SYSCALL {
                        return None;
                    }
                    acc = next;
                }
                acc
            } else {
                let mut acc = Vec::new();
                for c in cs {
                    let part = dnf(c, negate)?;
                    if part.iter().any(Vec::is_empty) {
                        return Some(truth(true));
                    }
                    acc.extend(part);
                    if acc.len() > MAX_ENTRIES_PER_SYSCALL {
                        return None;
                    }
                }
                acc
            }
        }
    })
}

fn leaf(arg: Arg, test: &Test, negate: bool) -> Vec<Conjunct> {
    let one = |t: Test| vec![vec![(arg, t)]];
    let test = if negate { negated(test) } else { test.clone() };
    match test {
        Test::In(vs) => vs.into_iter().map(|v| vec![(arg, Test::Eq(v))]).collect(),
        Test::NotIn(vs) => vec![vs.into_iter().map(|v| (arg, Test::Ne(v))).collect()],
        Test::MaskedNe { mask, value } if value & !mask != 0 => vec![vec![]],
        // Some bit under the mask differs from the wanted value.
        Test::MaskedNe { mask, value } => bits(mask & arg.width.mask())
            .map(|bit| vec![(arg, Test::MaskedEq { mask: bit, value: !value & bit })])
            .collect(),
        t => one(t),
    }
}

fn negated(test: &Test) -> Test {
    match test.clone() {
        Test::Eq(v) => Test::Ne(v),
        Test::Ne(v) => Test::Eq(v),
        Test::Lt(v) => Test::Ge(v),
        Test::Le(v) => Test::Gt(v),
        Test::Gt(v) => Test::Le(v),
        Test::Ge(v) => Test::Lt(v),
        Test::MaskedEq { mask, value } => Test::MaskedNe { mask, value },
        Test::MaskedNe { mask, value } => Test::MaskedEq { mask, value },
        Test::In(vs) => Test::NotIn(vs),
        Test::NotIn(vs) => Test::In(vs),
    }
}

fn bits(mask: u64) -> impl Iterator<Item = u64> {
    (0..64).map(|b| 1u64 << b).filter(move |bit| mask & bit != 0)
}

/// A conjunction as alternatives of OCI comparison lists with at most one comparison
/// per argument, exact at IR semantics (a 32-bit argument is compared on its low half,
/// with a mask, since libseccomp compares all 64 bits); `None` when too many.
fn express(conjunct: &Conjunct) -> Option<Vec<Vec<ArgCondition>>> {
    let mut by_index: BTreeMap<u8, (Width, Vec<&Test>)> = BTreeMap::new();
    for (arg, test) in conjunct {
        let slot = by_index.entry(arg.index).or_insert((arg.width, Vec::new()));
        // An argument has one width; if lowering ever disagreed, the narrower reading
        // is the one the kernel uses.
        slot.0 = slot.0.min(arg.width);
        slot.1.push(test);
    }
    let mut alternatives: Vec<Vec<ArgCondition>> = vec![vec![]];
    for (index, (width, tests)) in by_index {
        let options = one_argument(u32::from(index), width, &tests);
        let mut next = Vec::new();
        for a in &alternatives {
            for o in &options {
                let mut args = a.clone();
                args.push(o.clone());
                next.push(args);
            }
        }
        if next.len() > MAX_ENTRIES_PER_SYSCALL {
            return None;
        }
        alternatives = next;
    }
    Some(alternatives)
}

/// The ANDed tests of one argument as alternative single comparisons.
fn one_argument(index: u32, width: Width, tests: &[&Test]) -> Vec<ArgCondition> {
    let cmp = |op: Op, value: u64, value_two: u64| ArgCondition { index, value, value_two, op: op.oci_name().into() };
    if let [test] = tests {
        match (width, test) {
            (Width::W64, Test::Eq(v)) => return vec![cmp(Op::Eq, *v, 0)],
            (Width::W64, Test::Ne(v)) => return vec![cmp(Op::Ne, *v, 0)],
            (Width::W64, Test::Lt(v)) => return vec![cmp(Op::Lt, *v, 0)],
            (Width::W64, Test::Le(v)) => return vec![cmp(Op::Le, *v, 0)],
            (Width::W64, Test::Gt(v)) => return vec![cmp(Op::Gt, *v, 0)],
            (Width::W64, Test::Ge(v)) => return vec![cmp(Op::Ge, *v, 0)],
            _ => {}
        }
    }
    // Everything else as blocks `arg & mask == value`. Aligned blocks are nested or
    // disjoint, so intersecting ranges and masks stays small; a `!=` then only splits
    // the blocks that hold its value.
    let max = width.mask();
    let mut blocks = vec![(0u64, 0u64)];
    for test in tests.iter().filter(|t| !matches!(t, Test::Ne(_))) {
        let mine = test_blocks(test, width);
        let mut next = Vec::new();
        for &(m1, v1) in &blocks {
            for &(m2, v2) in &mine {
                if (v1 ^ v2) & m1 & m2 == 0 {
                    next.push((m1 | m2, v1 | v2));
                }
            }
        }
        blocks = next;
    }
    for test in tests {
        let Test::Ne(excluded) = **test else { continue };
        let excluded = excluded & max;
        let mut next = Vec::new();
        for (mask, value) in blocks {
            if excluded & mask != value {
                next.push((mask, value));
                continue;
            }
            // The block minus one value: fix the free bits one at a time, each time
            // branching off the half that differs from the excluded value there.
            let mut fixed = mask;
            for bit in bits(max & !mask) {
                next.push((fixed | bit, (excluded & fixed) | (!excluded & bit)));
                fixed |= bit;
            }
        }
        blocks = next;
    }
    blocks.sort_unstable();
    blocks.dedup();
    blocks
        .into_iter()
        .map(|(mask, value)| if mask == u64::MAX { cmp(Op::Eq, value, 0) } else { cmp(Op::MaskedEq, mask, value) })
        .collect()
}

/// The values (on `width` bits) a test accepts, as disjoint blocks `arg & mask == value`.
fn test_blocks(test: &Test, width: Width) -> Vec<(u64, u64)> {
    let max = width.mask();
    match *test {
        Test::Eq(v) => vec![(max, v & max)],
        Test::MaskedEq { mask, value } if value & !mask != 0 => vec![],
        Test::MaskedEq { mask, value } => vec![(mask & max, value)],
        Test::Ne(v) => bits(max).map(|bit| (bit, !v & bit)).collect(),
        Test::Lt(0) => vec![],
        Test::Lt(v) => range_blocks(0, v - 1, max),
        Test::Le(v) => range_blocks(0, v, max),
        Test::Gt(v) if v >= max => vec![],
        Test::Gt(v) => range_blocks(v + 1, max, max),
        Test::Ge(v) => range_blocks(v, max, max),
        Test::MaskedNe { .. } | Test::In(_) | Test::NotIn(_) => {
            unreachable!("the normal form expands these")
        }
    }
}

/// `lo..=hi` as aligned power-of-two blocks: at most two per bit of the width.
fn range_blocks(lo: u64, hi: u64, max: u64) -> Vec<(u64, u64)> {
    let (mut lo, hi) = (u128::from(lo), u128::from(hi.min(max)));
    let mut out = Vec::new();
    while lo <= hi {
        let mut size: u128 = if lo == 0 { u128::from(max) + 1 } else { 1 << lo.trailing_zeros() };
        while lo + size - 1 > hi {
            size >>= 1;
        }
        out.push((max & !((size - 1) as u64), lo as u64));
        lo += size;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_blocks(v: u64, blocks: &[(u64, u64)]) -> bool {
        blocks.iter().any(|(m, x)| v & m == *x)
    }

    #[test]
    fn range_blocks_cover_exactly_the_range() {
        for (lo, hi) in [(0u64, 37u64), (41, 0xffff_ffff), (5, 5), (0, 0xffff_ffff), (7, 300)] {
            let blocks = range_blocks(lo, hi, u32::MAX as u64);
            assert!(blocks.len() <= 64, "{lo}..={hi}: {} blocks", blocks.len());
            for v in [0, 1, 5, 6, 7, 36, 37, 38, 40, 41, 299, 300, 301, 0xffff_fffe, 0xffff_ffff] {
                assert_eq!(in_blocks(v, &blocks), (lo..=hi).contains(&v), "{v} in {lo}..={hi}");
            }
        }
        assert_eq!(range_blocks(0, u64::MAX, u64::MAX), vec![(0, 0)]);
    }

    #[test]
    fn a_32_bit_not_equal_is_one_block_per_bit() {
        let blocks = test_blocks(&Test::Ne(5), Width::W32);
        assert_eq!(blocks.len(), 32);
        for v in [0u64, 4, 5, 6, 0xffff_ffff] {
            assert_eq!(in_blocks(v, &blocks), v != 5);
        }
        // The high half is not looked at: the kernel does not read it.
        assert!(!in_blocks(0xdead_0000_0000_0005, &blocks));
    }

    #[test]
    fn masked_not_equal_expands_to_single_bit_masked_equals() {
        let arg = Arg { index: 1, width: Width::W64 };
        let test = Test::MaskedNe { mask: 0b1010, value: 0b1000 };
        let alternatives = leaf(arg, &test, false);
        assert_eq!(alternatives.len(), 2);
        for v in 0..16u64 {
            let any = alternatives.iter().any(|c| c.iter().all(|(_, t)| t.eval(v)));
            assert_eq!(any, test.eval(v), "{v}");
        }
    }
}
