//! Deny-wins resolution: drop the rules of a syscall that can never decide because an
//! unconditional rule always beats them.
//!
//! The decision (`ir::decide_rules`) is the most restrictive matching deny (the first
//! written between equally restrictive ones), else audit, else allow. So:
//! - an unconditional deny removes every allow and audit rule, and every deny rule it
//!   always beats: a less restrictive one, an equally restrictive one written after it,
//!   or one with the very same action;
//! - an unconditional audit removes every allow rule and every other audit rule;
//! - an unconditional allow removes every other allow rule;
//! - a rule identical to an earlier one (same kind, same condition) is dropped.

use crate::ir::{Cond, Policy, Rule, RuleKind};

pub fn run(policy: &mut Policy) {
    super::for_each_syscall(policy, |syscall| syscall.rules = resolve(std::mem::take(&mut syscall.rules)));
}

fn resolve(rules: Vec<Rule>) -> Vec<Rule> {
    let mut kept: Vec<Rule> = Vec::with_capacity(rules.len());
    for rule in rules {
        if !kept.iter().any(|k| k.kind == rule.kind && k.cond == rule.cond) {
            kept.push(rule);
        }
    }
    let unconditional = |kind: fn(RuleKind) -> bool| kept.iter().position(|r| r.cond == Cond::True && kind(r.kind));
    if let Some(winner) = kept
        .iter()
        .enumerate()
        .filter(|(_, r)| r.cond == Cond::True && matches!(r.kind, RuleKind::Deny(_)))
        .min_by_key(|(i, r)| (r.kind.precedence(), *i))
        .map(|(i, _)| i)
    {
        let RuleKind::Deny(best) = kept[winner].kind else { unreachable!("filtered on deny") };
        let precedence = kept[winner].kind.precedence();
        // An equally restrictive deny with another action between `i` and the winner
        // is what `i`, written first, beats: dropping `i` would let it decide.
        let shields = |i: usize| {
            kept[i + 1..winner].iter().any(|r| r.kind.precedence() == precedence && r.kind != RuleKind::Deny(best))
        };
        let beaten = |i: usize, rule: &Rule| match rule.kind {
            RuleKind::Allow | RuleKind::Audit => true,
            RuleKind::Deny(action) => {
                i != winner
                    && ((action == best && (i > winner || !shields(i)))
                        || rule.kind.precedence() > precedence
                        || (rule.kind.precedence() == precedence && i > winner))
            }
        };
        let beaten: Vec<bool> = kept.iter().enumerate().map(|(i, r)| beaten(i, r)).collect();
        return kept.into_iter().zip(beaten).filter(|(_, b)| !b).map(|(r, _)| r).collect();
    }
    if let Some(winner) = unconditional(|k| k == RuleKind::Audit) {
        return drop_where(kept, |i, r| i != winner && matches!(r.kind, RuleKind::Allow | RuleKind::Audit));
    }
    if let Some(winner) = unconditional(|k| k == RuleKind::Allow) {
        return drop_where(kept, |i, r| i != winner && r.kind == RuleKind::Allow);
    }
    kept
}

fn drop_where(rules: Vec<Rule>, dropped: impl Fn(usize, &Rule) -> bool) -> Vec<Rule> {
    rules.into_iter().enumerate().filter(|(i, r)| !dropped(*i, r)).map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Action, Test};
    use crate::passes::testing::*;

    fn kinds(rules: &[Rule]) -> Vec<RuleKind> {
        rules.iter().map(|r| r.kind).collect()
    }

    #[test]
    fn unconditional_deny_removes_weaker_rules() {
        let cond = test(SOCKET, 0, Test::Eq(16));
        let rules = vec![
            allow(Cond::True),
            deny(EACCES, cond.clone()),
            deny(Action::KillProcess, cond.clone()),
            deny(EPERM, Cond::True),
            deny(EACCES, cond.clone()),
            audit(cond),
        ];
        // The earlier EACCES still wins when it matches; the later one never does.
        assert_eq!(
            kinds(&resolve(rules)),
            vec![RuleKind::Deny(EACCES), RuleKind::Deny(Action::KillProcess), RuleKind::Deny(EPERM)]
        );
    }

    /// Found by `the_filter_decides_like_the_ir`: an earlier conditional deny with the
    /// winner's errno still decides against an EACCES written between the two.
    #[test]
    fn a_same_action_deny_before_another_errno_is_kept() {
        let zero = test(SOCKET, 0, Test::Eq(0));
        let rules = vec![deny(EPERM, zero.clone()), deny(EACCES, zero), deny(EPERM, Cond::True)];
        assert_eq!(kinds(&resolve(rules)), vec![RuleKind::Deny(EPERM), RuleKind::Deny(EACCES), RuleKind::Deny(EPERM)]);
    }

    #[test]
    fn unconditional_audit_removes_allows() {
        let cond = test(SOCKET, 0, Test::Eq(1));
        let rules = vec![allow(cond.clone()), audit(Cond::True), audit(cond.clone()), deny(EPERM, cond)];
        assert_eq!(kinds(&resolve(rules)), vec![RuleKind::Audit, RuleKind::Deny(EPERM)]);
    }

    #[test]
    fn duplicates_are_dropped() {
        let cond = test(SOCKET, 0, Test::Eq(1));
        let rules = vec![allow(cond.clone()), allow(cond.clone()), allow(Cond::True)];
        assert_eq!(kinds(&resolve(rules)), vec![RuleKind::Allow]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        #[test]
        fn preserves_decisions(policy in arb_policy()) {
            check_pass_preserves(&policy, run);
        }
    }
}
