//! Argument-rule merging: fewer, larger tests.
//!
//! - Rules of one syscall with the same kind become one rule whose condition is the
//!   `Or` of theirs (alternatives of a section). Two errno deny rules with the same
//!   errno merge only when no deny rule with another errno lies between them, since
//!   the first written errno wins a tie.
//! - Tests on the same argument combine: under `Or`, values into one `in` set and
//!   bounds into the widest range; under `And`, sets intersect, excluded values into
//!   one `not in`, bounds into the narrowest range. A set next to other tests of its
//!   argument is filtered by them (`x in S && t(x)` is `x in {s in S | t(s)}`).
//! - Tests common to every alternative of an `Or` are shared:
//!   `(a && b) || (a && c)` becomes `a && (b || c)`.
//!
//! The result is normalised again by the next pass.

use super::normalise::{and, fold_test, normalise_cond, or};
use crate::ir::{Action, Arg, Cond, Policy, Rule, RuleKind, Test};
use std::collections::BTreeMap;

pub fn run(policy: &mut Policy) {
    super::for_each_syscall(policy, |syscall| {
        syscall.rules = merge_rules(std::mem::take(&mut syscall.rules));
        for rule in &mut syscall.rules {
            rule.cond = merge_cond(normalise_cond(std::mem::replace(&mut rule.cond, Cond::True)));
        }
    });
}

fn merge_rules(rules: Vec<Rule>) -> Vec<Rule> {
    // (index of the first merged rule in `rules`, the merged rule)
    let mut merged: Vec<(usize, Rule)> = Vec::new();
    for (j, rule) in rules.iter().enumerate() {
        let errno_between = |first: usize, errno: u16| {
            rules[first + 1..j].iter().any(|r| matches!(r.kind, RuleKind::Deny(Action::Errno(e)) if e != errno))
        };
        let into = merged.iter_mut().find(|(first, m)| {
            m.kind == rule.kind
                && match rule.kind {
                    RuleKind::Deny(Action::Errno(errno)) => !errno_between(*first, errno),
                    _ => true,
                }
        });
        match into {
            Some((_, m)) => m.cond = Cond::Or(vec![std::mem::replace(&mut m.cond, Cond::True), rule.cond.clone()]),
            None => merged.push((j, rule.clone())),
        }
    }
    merged.into_iter().map(|(_, r)| r).collect()
}

/// Merge tests inside a normalised condition; the result is normalised.
pub(crate) fn merge_cond(cond: Cond) -> Cond {
    match cond {
        Cond::And(children) => {
            let children = children.into_iter().map(merge_cond).collect();
            and(combine(children, combine_and))
        }
        Cond::Or(children) => {
            let children: Vec<Cond> = children.into_iter().map(merge_cond).collect();
            let combined = combine(children, combine_or);
            match or(combined) {
                Cond::Or(children) => factor_common(children),
                other => other,
            }
        }
        other => other,
    }
}

/// Replace the tests of each argument among `children` by `combine_tests` of them.
fn combine(children: Vec<Cond>, combine_tests: fn(Arg, Vec<Test>) -> Vec<Cond>) -> Vec<Cond> {
    let mut by_arg: BTreeMap<Arg, Vec<Test>> = BTreeMap::new();
    let mut rest = Vec::new();
    for child in children {
        match child {
            Cond::Test { arg, test } => by_arg.entry(arg).or_default().push(test),
            other => rest.push(other),
        }
    }
    for (arg, tests) in by_arg {
        if tests.len() == 1 {
            rest.extend(tests.into_iter().map(|test| fold_test(arg, test)));
        } else {
            rest.extend(combine_tests(arg, tests));
        }
    }
    rest
}

fn in_set(test: &Test) -> Option<Vec<u64>> {
    match test {
        Test::Eq(x) => Some(vec![*x]),
        Test::In(xs) => Some(xs.clone()),
        _ => None,
    }
}

fn not_in_set(test: &Test) -> Option<Vec<u64>> {
    match test {
        Test::Ne(x) => Some(vec![*x]),
        Test::NotIn(xs) => Some(xs.clone()),
        _ => None,
    }
}

/// Bounds as an inclusive range: `Some(Ok(lo))` for a lower bound, `Some(Err(hi))`
/// for an upper one, `None` for other tests. Callers fold `< 0` and `> max` first.
fn bound(test: &Test) -> Option<Result<u64, u64>> {
    match *test {
        Test::Ge(x) => Some(Ok(x)),
        Test::Gt(x) => Some(Ok(x + 1)),
        Test::Le(x) => Some(Err(x)),
        Test::Lt(x) => Some(Err(x - 1)),
        _ => None,
    }
}

fn is_constant(arg: Arg, test: &Test) -> Option<bool> {
    match fold_test(arg, test.clone()) {
        Cond::True => Some(true),
        Cond::False => Some(false),
        _ => None,
    }
}

fn combine_and(arg: Arg, tests: Vec<Test>) -> Vec<Cond> {
    if tests.iter().any(|t| is_constant(arg, t) == Some(false)) {
        return vec![Cond::False];
    }
    let tests: Vec<Test> = tests.into_iter().filter(|t| is_constant(arg, t).is_none()).collect();
    if let Some(first) = tests.iter().position(|t| in_set(t).is_some()) {
        let set = in_set(&tests[first]).expect("a set");
        let others: Vec<&Test> = tests.iter().enumerate().filter(|(i, _)| *i != first).map(|(_, t)| t).collect();
        let kept = set.into_iter().filter(|&v| others.iter().all(|t| t.eval(v))).collect();
        return vec![fold_test(arg, Test::In(kept))];
    }
    let (mut lo, mut hi) = (0, arg.width.mask());
    let mut excluded = Vec::new();
    let mut out = Vec::new();
    for test in tests {
        if let Some(xs) = not_in_set(&test) {
            excluded.extend(xs);
        } else {
            match bound(&test) {
                Some(Ok(l)) => lo = lo.max(l),
                Some(Err(h)) => hi = hi.min(h),
                None => out.push(test),
            }
        }
    }
    if lo > hi {
        return vec![Cond::False];
    }
    excluded.retain(|&v| (lo..=hi).contains(&v));
    excluded.sort();
    excluded.dedup();
    out.extend([Test::Ge(lo), Test::Le(hi), Test::NotIn(excluded)]);
    out.into_iter().map(|t| fold_test(arg, t)).collect()
}

fn combine_or(arg: Arg, tests: Vec<Test>) -> Vec<Cond> {
    if tests.iter().any(|t| is_constant(arg, t) == Some(true)) {
        return vec![Cond::True];
    }
    let tests: Vec<Test> = tests.into_iter().filter(|t| is_constant(arg, t).is_none()).collect();
    if let Some(first) = tests.iter().position(|t| not_in_set(t).is_some()) {
        let set = not_in_set(&tests[first]).expect("a set");
        let others: Vec<&Test> = tests.iter().enumerate().filter(|(i, _)| *i != first).map(|(_, t)| t).collect();
        let still_excluded = set.into_iter().filter(|&v| !others.iter().any(|t| t.eval(v))).collect();
        return vec![fold_test(arg, Test::NotIn(still_excluded))];
    }
    // Below `upto` (inclusive) or from `from` on; `None`: no such bound.
    let (mut upto, mut from): (Option<u64>, Option<u64>) = (None, None);
    let mut included = Vec::new();
    let mut out = Vec::new();
    for test in tests {
        if let Some(xs) = in_set(&test) {
            included.extend(xs);
        } else {
            match bound(&test) {
                Some(Ok(l)) => from = Some(from.map_or(l, |f| f.min(l))),
                Some(Err(h)) => upto = Some(upto.map_or(h, |u| u.max(h))),
                None => out.push(test),
            }
        }
    }
    if let (Some(u), Some(f)) = (upto, from)
        && f <= u.saturating_add(1)
    {
        return vec![Cond::True];
    }
    included.retain(|&v| upto.is_none_or(|u| v > u) && from.is_none_or(|f| v < f));
    included.sort();
    included.dedup();
    out.extend(upto.map(Test::Le));
    out.extend(from.map(Test::Ge));
    let mut out: Vec<Cond> = out.into_iter().map(|t| fold_test(arg, t)).collect();
    if !included.is_empty() {
        out.push(fold_test(arg, Test::In(included)));
    }
    out
}

/// `(a && b) || (a && c)` → `a && (b || c)`, for every `a` common to all alternatives.
fn factor_common(alternatives: Vec<Cond>) -> Cond {
    let conjuncts = |c: &Cond| match c {
        Cond::And(cs) => cs.clone(),
        other => vec![other.clone()],
    };
    let mut common = conjuncts(&alternatives[0]);
    for alt in &alternatives[1..] {
        let these = conjuncts(alt);
        common.retain(|c| these.contains(c));
    }
    if common.is_empty() {
        return Cond::Or(alternatives);
    }
    let rest = alternatives
        .iter()
        .map(|alt| and(conjuncts(alt).into_iter().filter(|c| !common.contains(c)).collect()))
        .collect();
    let mut factored = common;
    factored.push(merge_cond(or(rest)));
    and(factored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Test;
    use crate::passes::testing::*;

    #[test]
    fn alternatives_on_one_argument_become_a_set() {
        let rules = vec![
            allow(test(SOCKET, 0, Test::Eq(2))),
            allow(test(SOCKET, 0, Test::Eq(1))),
            allow(test(SOCKET, 0, Test::In(vec![10, 2]))),
        ];
        let mut policy = policy_with(vec![(SOCKET, rules)]);
        run(&mut policy);
        let rules = &policy.syscalls[0].syscalls[&SOCKET].rules;
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].cond, test(SOCKET, 0, Test::In(vec![1, 2, 10])));
    }

    #[test]
    fn errno_rules_merge_only_when_order_cannot_matter() {
        let c = |v| test(SOCKET, 0, Test::Eq(v));
        let merged = merge_rules(vec![deny(EPERM, c(1)), deny(EACCES, c(2)), deny(EPERM, c(3)), deny(EACCES, c(4))]);
        assert_eq!(merged.len(), 4);
        let merged = merge_rules(vec![deny(EPERM, c(1)), allow(c(2)), deny(EPERM, c(3))]);
        assert_eq!(merged.len(), 2);
    }

    #[test]
    fn conjunctions_narrow_and_filter() {
        let a = |t| test(SOCKET, 0, t);
        let cond = Cond::And(vec![a(Test::Ge(2)), a(Test::Lt(10)), a(Test::Ne(5)), a(Test::Ne(20))]);
        assert_eq!(merge_cond(cond), Cond::And(vec![a(Test::Ne(5)), a(Test::Le(9)), a(Test::Ge(2))]));
        let cond = Cond::And(vec![a(Test::In(vec![1, 5, 9])), a(Test::Gt(1)), a(Test::Ne(9))]);
        assert_eq!(merge_cond(cond), a(Test::Eq(5)));
        let cond = Cond::And(vec![a(Test::Gt(7)), a(Test::Lt(3))]);
        assert_eq!(merge_cond(cond), Cond::False);
    }

    #[test]
    fn common_tests_are_shared() {
        let (a, b) = (|t| test(SOCKET, 0, t), |t| test(SOCKET, 1, t));
        let cond = Cond::Or(vec![
            Cond::And(vec![a(Test::Eq(2)), b(Test::Eq(1))]),
            Cond::And(vec![a(Test::Eq(2)), b(Test::Eq(5))]),
        ]);
        assert_eq!(merge_cond(cond), Cond::And(vec![a(Test::Eq(2)), b(Test::In(vec![1, 5]))]));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        #[test]
        fn preserves_decisions(policy in arb_policy()) {
            check_pass_preserves(&policy, run);
        }

        #[test]
        fn the_whole_pipeline_preserves_decisions(policy in arb_policy()) {
            check_pass_preserves(&policy, |p| *p = crate::passes::run_all(p));
        }
    }
}
