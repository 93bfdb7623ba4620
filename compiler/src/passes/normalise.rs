//! Normalisation: constant-fold conditions into a canonical form.
//!
//! `Not` is pushed down to the tests (and disappears: every test has a negation),
//! `And`/`Or` are flattened, sorted and deduplicated, `True`/`False` absorbed, tests
//! that are constant on their argument's width folded (`< 0`, `<= max`, a masked
//! value outside its mask), a one-value `in` becomes `==`. Rules whose condition is
//! `False` never match and are dropped.

use crate::ir::{Arg, Cond, Policy, Test};

pub fn run(policy: &mut Policy) {
    super::for_each_syscall(policy, |syscall| {
        for rule in &mut syscall.rules {
            rule.cond = normalise_cond(std::mem::replace(&mut rule.cond, Cond::True));
        }
        syscall.rules.retain(|rule| rule.cond != Cond::False);
    });
}

/// The canonical form of a condition: no `Not`, no nested `And` in `And` or `Or` in
/// `Or`, no `True`/`False` inside a composite, children sorted and unique.
pub fn normalise_cond(cond: Cond) -> Cond {
    push_not(cond, false)
}

fn push_not(cond: Cond, negate: bool) -> Cond {
    match cond {
        Cond::True | Cond::False => {
            if (cond == Cond::True) != negate {
                Cond::True
            } else {
                Cond::False
            }
        }
        Cond::Test { arg, test } => fold_test(arg, if negate { negate_test(test) } else { test }),
        Cond::Not(inner) => push_not(*inner, !negate),
        Cond::And(children) => {
            let children = children.into_iter().map(|c| push_not(c, negate)).collect();
            if negate { or(children) } else { and(children) }
        }
        Cond::Or(children) => {
            let children = children.into_iter().map(|c| push_not(c, negate)).collect();
            if negate { and(children) } else { or(children) }
        }
    }
}

/// The conjunction of already normalised conditions.
pub(super) fn and(children: Vec<Cond>) -> Cond {
    let mut flat = Vec::new();
    for child in children {
        match child {
            Cond::True => {}
            Cond::False => return Cond::False,
            Cond::And(inner) => flat.extend(inner),
            other => flat.push(other),
        }
    }
    composite(flat, Cond::True, Cond::And)
}

/// The disjunction of already normalised conditions.
pub(super) fn or(children: Vec<Cond>) -> Cond {
    let mut flat = Vec::new();
    for child in children {
        match child {
            Cond::False => {}
            Cond::True => return Cond::True,
            Cond::Or(inner) => flat.extend(inner),
            other => flat.push(other),
        }
    }
    composite(flat, Cond::False, Cond::Or)
}

fn composite(mut children: Vec<Cond>, empty: Cond, make: fn(Vec<Cond>) -> Cond) -> Cond {
    children.sort();
    children.dedup();
    match children.len() {
        0 => empty,
        1 => children.pop().expect("one child"),
        _ => make(children),
    }
}

pub(super) fn negate_test(test: Test) -> Test {
    match test {
        Test::Eq(x) => Test::Ne(x),
        Test::Ne(x) => Test::Eq(x),
        Test::Lt(x) => Test::Ge(x),
        Test::Ge(x) => Test::Lt(x),
        Test::Le(x) => Test::Gt(x),
        Test::Gt(x) => Test::Le(x),
        Test::MaskedEq { mask, value } => Test::MaskedNe { mask, value },
        Test::MaskedNe { mask, value } => Test::MaskedEq { mask, value },
        Test::In(xs) => Test::NotIn(xs),
        Test::NotIn(xs) => Test::In(xs),
    }
}

/// A test in its simplest form, or `True`/`False` when it is constant on the
/// argument's width.
pub(super) fn fold_test(arg: Arg, test: Test) -> Cond {
    let max = arg.width.mask();
    let constant = |b: bool| if b { Cond::True } else { Cond::False };
    let test = match test {
        Test::Lt(0) => return Cond::False,
        Test::Gt(x) if x == max => return Cond::False,
        Test::Ge(0) => return Cond::True,
        Test::Le(x) if x == max => return Cond::True,
        Test::MaskedEq { mask, value } | Test::MaskedNe { mask, value } => {
            let equal = matches!(test, Test::MaskedEq { .. });
            if value & !mask != 0 {
                // `arg & mask` can never have a bit outside the mask.
                return constant(!equal);
            }
            if mask == 0 {
                return constant(equal);
            }
            match (mask == max, equal) {
                (true, true) => Test::Eq(value),
                (true, false) => Test::Ne(value),
                _ => test,
            }
        }
        Test::In(ref xs) | Test::NotIn(ref xs) if xs.len() <= 1 => {
            let is_in = matches!(test, Test::In(_));
            match xs.first().copied() {
                None => return constant(!is_in),
                Some(x) if is_in => Test::Eq(x),
                Some(x) => Test::Ne(x),
            }
        }
        other => other,
    };
    Cond::Test { arg, test }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Width;
    use crate::passes::testing::*;

    const A0: Arg = Arg { index: 0, width: Width::W32 };
    const A1: Arg = Arg { index: 1, width: Width::W64 };

    fn t(arg: Arg, test: Test) -> Cond {
        Cond::Test { arg, test }
    }

    #[test]
    fn not_is_pushed_to_the_tests() {
        let cond = Cond::Not(Box::new(Cond::And(vec![t(A0, Test::Eq(1)), t(A1, Test::In(vec![2, 3]))])));
        assert_eq!(normalise_cond(cond), Cond::Or(vec![t(A0, Test::Ne(1)), t(A1, Test::NotIn(vec![2, 3]))]));
    }

    #[test]
    fn constants_are_absorbed_and_composites_flattened() {
        let cond = Cond::And(vec![
            Cond::True,
            Cond::And(vec![t(A0, Test::Eq(1)), Cond::Or(vec![Cond::False, t(A1, Test::Gt(2))])]),
            t(A0, Test::Eq(1)),
        ]);
        assert_eq!(normalise_cond(cond), Cond::And(vec![t(A0, Test::Eq(1)), t(A1, Test::Gt(2))]));
        assert_eq!(normalise_cond(Cond::Or(vec![t(A0, Test::Eq(1)), Cond::Not(Box::new(Cond::False))])), Cond::True);
        assert_eq!(normalise_cond(Cond::And(vec![])), Cond::True);
        assert_eq!(normalise_cond(Cond::Or(vec![])), Cond::False);
    }

    #[test]
    fn tests_constant_on_their_width_fold() {
        assert_eq!(fold_test(A0, Test::Lt(0)), Cond::False);
        assert_eq!(fold_test(A0, Test::Ge(0)), Cond::True);
        assert_eq!(fold_test(A0, Test::Le(u32::MAX as u64)), Cond::True);
        assert_eq!(fold_test(A0, Test::Gt(u32::MAX as u64)), Cond::False);
        assert_eq!(fold_test(A1, Test::Gt(u32::MAX as u64)), t(A1, Test::Gt(u32::MAX as u64)));
        assert_eq!(fold_test(A0, Test::MaskedEq { mask: 0xf0, value: 0x01 }), Cond::False);
        assert_eq!(fold_test(A0, Test::MaskedNe { mask: 0, value: 0 }), Cond::False);
        assert_eq!(fold_test(A0, Test::MaskedEq { mask: 0xffff_ffff, value: 7 }), t(A0, Test::Eq(7)));
        assert_eq!(fold_test(A0, Test::In(vec![5])), t(A0, Test::Eq(5)));
        assert_eq!(fold_test(A0, Test::NotIn(vec![5])), t(A0, Test::Ne(5)));
    }

    #[test]
    fn false_rules_are_dropped_and_empty_syscalls_removed() {
        let mut policy = policy_with(vec![(READ, vec![allow(Cond::Not(Box::new(Cond::True)))])]);
        run(&mut policy);
        assert!(policy.syscalls[0].syscalls.is_empty());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        #[test]
        fn preserves_decisions(policy in arb_policy()) {
            check_pass_preserves(&policy, run);
        }
    }
}
