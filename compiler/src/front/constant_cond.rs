//! Whole-condition constancy: is a rule's condition true for every call, or false for
//! every call? `a == 1 && a == 2` is, though neither test alone is.
//!
//! The answer is exact, by representative values. For each argument, the values are
//! split into classes on which every test on that argument has the same truth, and
//! one value is taken from each class; [`Cond::eval`] then runs on every combination.
//! The truth of the whole condition depends only on the truth of its tests, and the
//! arguments are independent registers, so the combinations reach every truth
//! assignment that some real call reaches, and no other: the condition is constant
//! exactly when it is constant on the combinations.
//!
//! The classes of one argument, read with width mask `max`:
//! - A comparison (`==`, `!=`, `<`, `<=`, `>`, `>=`, `in`, `not in`) with constant `c`
//!   has one truth on each of `0..c`, `c`, `c+1..=max`. So cutting `0..=max` before
//!   every `c` and every `c + 1` gives intervals ("cells") on which every comparison
//!   is constant: a cell holding some `c` begins at it and ends before `c + 1`, and
//!   the others hold no constant at all.
//! - A masked test `v & m == x` depends only on `v & m`, so all of them together
//!   depend only on `v & U`, `U` the union of their masks.
//!
//! The class of `v` is thus its cell and `v & U`. For each cell and each subset `s`
//! of `U`, the least `v` at least the cell's start with `v & U == s` is the class's
//! representative when it lies in the cell; when it does not, the class is empty.
//!
//! The analysis gives up (`None`) when `U` has more than 12 bits, when one argument is
//! read with two widths, when an argument's cells times `2^bits(U)`, or the number of
//! combinations, exceeds 65,536, or when the combinations times the cost of one
//! evaluation (its nodes) exceed the caller's work budget: a hostile policy must not
//! make `check` slow.

use crate::ir::{Cond, Test, Width};
use std::collections::{BTreeMap, BTreeSet};

/// Combinations evaluated at most: a bounded cost per rule, far above real policies.
const MAX_VECTORS: usize = 1 << 16;
/// `2^12` subsets of a mask union at most.
const MAX_MASK_BITS: u32 = 12;

/// `Some(truth)` when `cond` has that truth for every argument vector; `None` when it
/// depends on the arguments or the analysis gives up (see the module comment),
/// including when it would cost more than `budget` test evaluations (the cost is taken
/// off `budget`; nothing is evaluated when it does not fit).
pub fn constant_truth_within(cond: &Cond, budget: &mut u64) -> Option<bool> {
    // Bounded before any class is computed: classes cost work too.
    let cost = eval_cost(cond);
    let axes = representatives(cond, usize::try_from(*budget / cost).unwrap_or(usize::MAX))?;
    let vectors: u64 = axes.iter().map(|(_, values)| values.len() as u64).product();
    *budget = budget.checked_sub(vectors * cost)?;
    let mut position = vec![0usize; axes.len()];
    let mut args = [0u64; 6];
    let mut truth = None;
    loop {
        for ((index, values), &p) in axes.iter().zip(&position) {
            args[*index] = values[p];
        }
        let now = cond.eval(&args);
        if truth.is_some_and(|t| t != now) {
            return None;
        }
        truth = Some(now);
        // Advance the odometer; when every digit wraps, every combination was seen.
        let mut digit = 0;
        loop {
            let Some((_, values)) = axes.get(digit) else { return truth };
            position[digit] += 1;
            if position[digit] < values.len() {
                break;
            }
            position[digit] = 0;
            digit += 1;
        }
    }
}

/// For each argument the condition tests, its index and representative values; `None`
/// when the analysis gives up.
/// `limit`: the most combinations the caller can pay for (capped at `MAX_VECTORS`),
/// checked against an upper bound before the values are computed.
fn representatives(cond: &Cond, limit: usize) -> Option<Vec<(usize, Vec<u64>)>> {
    let limit = limit.min(MAX_VECTORS);
    let mut tests = BTreeMap::new();
    collect(cond, &mut tests);
    let keys: Vec<&(u8, Width)> = tests.keys().collect();
    // Two widths on one register would need classes of the low half and of the whole.
    if keys.windows(2).any(|pair| pair[0].0 == pair[1].0) {
        return None;
    }
    let mut classes = Vec::new();
    let mut bound = 1usize;
    for (&(index, width), tests) in &tests {
        if index >= 6 {
            return None;
        }
        let (starts, union) = argument_classes(width.mask(), tests)?;
        bound = bound.checked_mul(starts.len().checked_shl(union.count_ones())?).filter(|&n| n <= limit)?;
        classes.push((usize::from(index), width.mask(), starts, union));
    }
    Some(classes.into_iter().map(|(index, max, starts, union)| (index, class_values(max, &starts, union))).collect())
}

/// What one evaluation of `cond` costs, in steps: one per node, plus the binary search
/// of each value list. Charged per combination, so nesting (`!!!!a`) is paid for too.
fn eval_cost(cond: &Cond) -> u64 {
    match cond {
        Cond::True | Cond::False => 1,
        Cond::Test { test: Test::In(xs) | Test::NotIn(xs), .. } => 2 + u64::from(xs.len().max(1).ilog2()),
        Cond::Test { .. } => 1,
        Cond::Not(inner) => 1 + eval_cost(inner),
        Cond::And(cs) | Cond::Or(cs) => 1 + cs.iter().map(eval_cost).sum::<u64>(),
    }
}

fn collect<'a>(cond: &'a Cond, tests: &mut BTreeMap<(u8, Width), Vec<&'a Test>>) {
    match cond {
        Cond::True | Cond::False => {}
        Cond::Test { arg, test } => tests.entry((arg.index, arg.width)).or_default().push(test),
        Cond::Not(inner) => collect(inner, tests),
        Cond::And(cs) | Cond::Or(cs) => cs.iter().for_each(|c| collect(c, tests)),
    }
}

/// The cells' starts and the mask union of one argument's tests; `None` when the union
/// has more than `MAX_MASK_BITS` bits.
fn argument_classes(max: u64, tests: &[&Test]) -> Option<(Vec<u64>, u64)> {
    let mut union = 0u64;
    let mut starts = BTreeSet::from([0u64]);
    for test in tests {
        let constants: &[u64] = match test {
            Test::Eq(c) | Test::Ne(c) | Test::Lt(c) | Test::Le(c) | Test::Gt(c) | Test::Ge(c) => {
                std::slice::from_ref(c)
            }
            Test::In(cs) | Test::NotIn(cs) => cs,
            Test::MaskedEq { mask, .. } | Test::MaskedNe { mask, .. } => {
                union |= mask;
                &[]
            }
        };
        // A constant above `max` cuts nothing: every value is below it.
        for &c in constants.iter().filter(|&&c| c <= max) {
            starts.insert(c);
            if c < max {
                starts.insert(c + 1);
            }
        }
    }
    let union = union & max;
    (union.count_ones() <= MAX_MASK_BITS).then(|| (starts.into_iter().collect(), union))
}

/// One value of each non-empty class of `0..=max` (see the module comment).
fn class_values(max: u64, starts: &[u64], union: u64) -> Vec<u64> {
    let subsets = subsets(union);
    let mut values = Vec::new();
    for (k, &start) in starts.iter().enumerate() {
        let end = starts.get(k + 1).map_or(max, |next| next - 1);
        let in_cell = subsets.iter().filter_map(|&s| least_at_least(start, union, s)).filter(|&v| v <= end);
        values.extend(in_cell);
    }
    values
}

/// Every subset of the bits of `set`, in increasing order.
fn subsets(set: u64) -> Vec<u64> {
    let mut out = vec![0];
    let mut s = 0u64;
    while s != set {
        // Adding 1 with the bits outside `set` forced on carries through them.
        s = (s | !set).wrapping_add(1) & set;
        out.push(s);
    }
    out
}

/// The least `v >= low` with `v & mask == bits` (`bits` within `mask`), if any.
fn least_at_least(low: u64, mask: u64, bits: u64) -> Option<u64> {
    if low & mask == bits {
        return Some(low);
    }
    // A larger `v` first differs from `low`, from the top, at a bit `i` that `low` has
    // clear and `v` may set; above `i` it copies `low`, below it is least with just
    // `bits`. A lower such `i` shares more of `low`, so gives the smaller `v`.
    (0..64).find_map(|i| {
        let bit = 1u64 << i;
        let above = u64::MAX.checked_shl(i + 1).unwrap_or(0);
        let settable = mask & bit == 0 || bits & bit != 0;
        let fits = low & bit == 0 && settable && low & above & mask == bits & above;
        fits.then_some((low & above) | bit | (bits & (bit - 1)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a work limit: the tests below are about exactness.
    fn constant_truth(cond: &Cond) -> Option<bool> {
        let mut unlimited = u64::MAX;
        constant_truth_within(cond, &mut unlimited)
    }

    #[test]
    fn the_work_budget_is_spent_and_respected() {
        // 3 tests on one argument with constants 1 and 2: cells start at 0, 1, 2, 3, and
        // an evaluation visits 4 nodes.
        let cond = and([a(Test::Eq(1)), a(Test::Eq(2)), a(Test::Ne(1))]);
        let mut budget = 16;
        assert_eq!(constant_truth_within(&cond, &mut budget), Some(false));
        assert_eq!(budget, 0);
        assert_eq!(constant_truth_within(&cond, &mut budget), None, "nothing left");
        let mut budget = 15;
        assert_eq!(constant_truth_within(&cond, &mut budget), None);
        assert_eq!(budget, 15, "a condition that does not fit costs nothing");
    }
    use crate::ir::Arg;

    fn on(index: u8, width: Width, test: Test) -> Cond {
        Cond::Test { arg: Arg { index, width }, test }
    }
    fn a(test: Test) -> Cond {
        on(0, Width::W64, test)
    }
    fn b(test: Test) -> Cond {
        on(1, Width::W64, test)
    }
    fn and(cs: impl IntoIterator<Item = Cond>) -> Cond {
        Cond::And(cs.into_iter().collect())
    }
    fn or(cs: impl IntoIterator<Item = Cond>) -> Cond {
        Cond::Or(cs.into_iter().collect())
    }
    fn not(c: Cond) -> Cond {
        Cond::Not(Box::new(c))
    }
    fn masked_eq(mask: u64, value: u64) -> Test {
        Test::MaskedEq { mask, value }
    }

    #[test]
    fn trivial_conditions() {
        assert_eq!(constant_truth(&Cond::True), Some(true));
        assert_eq!(constant_truth(&Cond::False), Some(false));
        assert_eq!(constant_truth(&not(Cond::False)), Some(true));
        assert_eq!(constant_truth(&and([])), Some(true));
        assert_eq!(constant_truth(&or([])), Some(false));
    }

    #[test]
    fn constant_combinations_are_found() {
        use Test::*;
        assert_eq!(constant_truth(&and([a(Eq(1)), a(Eq(2))])), Some(false));
        assert_eq!(constant_truth(&and([a(Lt(5)), a(Gt(10))])), Some(false));
        assert_eq!(constant_truth(&or([a(Ne(1)), a(Ne(2))])), Some(true));
        assert_eq!(constant_truth(&and([a(In(vec![1, 2])), a(NotIn(vec![1, 2]))])), Some(false));
        assert_eq!(constant_truth(&and([a(masked_eq(3, 1)), a(masked_eq(3, 2))])), Some(false));
        assert_eq!(constant_truth(&or([a(Lt(5)), a(Ge(5))])), Some(true));
        assert_eq!(constant_truth(&and([a(Eq(1)), b(Lt(0))])), Some(false));
    }

    #[test]
    fn conditions_that_depend_on_the_arguments() {
        use Test::*;
        assert_eq!(constant_truth(&and([a(Eq(1)), b(Eq(2))])), None);
        assert_eq!(constant_truth(&or([a(Lt(5)), a(Gt(10))])), None);
        assert_eq!(constant_truth(&or([a(masked_eq(3, 1)), a(masked_eq(0xf0, 0x20))])), None);
        // 0x21 satisfies it.
        assert_eq!(constant_truth(&and([a(masked_eq(0xf, 1)), a(masked_eq(0xf0, 0x20))])), None);
        assert_eq!(constant_truth(&a(Eq(7))), None);
    }

    #[test]
    fn the_width_bounds_the_values() {
        let le_max = |width| constant_truth(&on(0, width, Test::Le(0xffff_ffff)));
        assert_eq!(le_max(Width::W32), Some(true));
        assert_eq!(le_max(Width::W64), None);
        let gt_max = |width| constant_truth(&on(0, width, Test::Gt(0xffff_ffff)));
        assert_eq!(gt_max(Width::W32), Some(false));
        assert_eq!(gt_max(Width::W64), None);
        // The high half of the mask is out of a 32-bit argument's reach.
        assert_eq!(constant_truth(&on(0, Width::W32, masked_eq(1 << 40, 0))), Some(true));
    }

    #[test]
    fn masked_and_comparison_tests_on_one_argument() {
        use Test::*;
        // `a < 1` leaves only 0, which is even.
        assert_eq!(constant_truth(&and([a(masked_eq(1, 1)), a(Lt(1))])), Some(false));
        assert_eq!(constant_truth(&and([a(masked_eq(1, 1)), a(Lt(2))])), None);
        // 0x30..0x100 has no value whose second digit is 2; 0x120 lies above it.
        assert_eq!(constant_truth(&and([a(masked_eq(0xf0, 0x20)), a(Gt(0x2f)), a(Lt(0x100))])), Some(false));
        assert_eq!(constant_truth(&and([a(masked_eq(0xf0, 0x20)), a(Gt(0x2f))])), None);
        // 0x20 and 0x21 both have second digit 2.
        assert_eq!(constant_truth(&or([a(masked_eq(0xf0, 0x20)), a(NotIn(vec![0x20, 0x21]))])), Some(true));
        assert_eq!(constant_truth(&or([a(masked_eq(0xf0, 0x20)), a(NotIn(vec![0x20, 0x30]))])), None);
    }

    #[test]
    fn the_analysis_gives_up_rather_than_guess() {
        use Test::*;
        // Constant, but 16 mask bits are too many to enumerate.
        assert_eq!(constant_truth(&and([a(masked_eq(0xffff, 1)), a(masked_eq(0xffff, 2))])), None);
        // One register read with two widths.
        assert_eq!(constant_truth(&and([on(0, Width::W32, Eq(1)), on(0, Width::W64, Eq(2))])), None);
        // Too many cells.
        let many: Vec<u64> = (0..40_000).map(|i| i * 3).collect();
        assert_eq!(constant_truth(&and([a(In(many.clone())), a(NotIn(many))])), None);
        // Too many combinations.
        let six = and((0..6).map(|i| on(i, Width::W64, In((0..10).collect()))));
        assert_eq!(constant_truth(&six), None);
    }

    #[test]
    fn least_at_least_is_the_least() {
        for low in 0..64u64 {
            for mask in [0u64, 1, 5, 0x12, 0x3c] {
                for bits in subsets(mask) {
                    let brute = (low..256).find(|v| v & mask == bits);
                    assert_eq!(least_at_least(low, mask, bits), brute, "{low} {mask:#x} {bits:#x}");
                }
            }
        }
        assert_eq!(least_at_least(u64::MAX, 1, 0), None);
        assert_eq!(least_at_least(u64::MAX - 1, 1, 0), Some(u64::MAX - 1));
    }

    const POOL: [u64; 16] = [
        0,
        1,
        2,
        3,
        5,
        0x10,
        0x20,
        0x21,
        0xff,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_ffff,
        0x1_0000_0000,
        0x8000_0000_0000_0000,
        u64::MAX - 1,
        u64::MAX,
    ];
    const MASKS: [u64; 7] = [1, 3, 0xf, 0x30, 0xf0, 0x8000_0001, 0x8000_0000_0000_0001];

    struct XorShift(u64);
    impl XorShift {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
        fn pick(&mut self, from: &[u64]) -> u64 {
            from[self.below(from.len())]
        }
    }

    fn random_test(rng: &mut XorShift, max: u64) -> Test {
        let c = rng.pick(&POOL) & max;
        let mut list: Vec<u64> = (0..1 + rng.below(3)).map(|_| rng.pick(&POOL) & max).collect();
        list.sort_unstable();
        list.dedup();
        let mask = rng.pick(&MASKS) & max;
        // Sometimes a value with bits outside the mask, which never matches.
        let value = if rng.below(8) == 0 { rng.pick(&POOL) & max } else { rng.pick(&POOL) & mask };
        match rng.below(10) {
            0 => Test::Eq(c),
            1 => Test::Ne(c),
            2 => Test::Lt(c),
            3 => Test::Le(c),
            4 => Test::Gt(c),
            5 => Test::Ge(c),
            6 => Test::In(list),
            7 => Test::NotIn(list),
            8 => Test::MaskedEq { mask, value },
            _ => Test::MaskedNe { mask, value },
        }
    }

    fn random_cond(rng: &mut XorShift, widths: [Width; 2], depth: u32) -> Cond {
        match if depth == 0 { 0 } else { rng.below(6) } {
            0 | 1 if rng.below(20) == 0 => [Cond::True, Cond::False][rng.below(2)].clone(),
            0 | 1 => {
                let index = rng.below(2);
                // Rarely the other width, to exercise giving up on mixed widths.
                let width = if rng.below(30) == 0 { Width::W32 } else { widths[index] };
                on(index as u8, width, random_test(rng, width.mask()))
            }
            2 => not(random_cond(rng, widths, depth - 1)),
            k => {
                let cs = (0..2 + rng.below(2)).map(|_| random_cond(rng, widths, depth - 1));
                if k % 2 == 0 { and(cs) } else { or(cs) }
            }
        }
    }

    fn reads(cond: &Cond, index: u8) -> bool {
        match cond {
            Cond::True | Cond::False => false,
            Cond::Test { arg, .. } => arg.index == index,
            Cond::Not(inner) => reads(inner, index),
            Cond::And(cs) | Cond::Or(cs) => cs.iter().any(|c| reads(c, index)),
        }
    }

    fn brute_force_values() -> Vec<u64> {
        let edges = [(1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 32, 1 << 63, u64::MAX];
        let near_pool = POOL.iter().flat_map(|&c| [c.wrapping_sub(1), c, c.wrapping_add(1)]);
        let mut values: Vec<u64> = (0..=300).chain(edges).chain(near_pool).collect();
        values.sort_unstable();
        values.dedup();
        values
    }

    #[test]
    fn random_conditions_agree_with_brute_force() {
        let values = brute_force_values();
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let (mut constant, mut decided, mut both) = (0, 0, 0);
        for _ in 0..2000 {
            let widths = [[Width::W32, Width::W64][rng.below(2)], [Width::W32, Width::W64][rng.below(2)]];
            let t = random_cond(&mut rng, widths, 3);
            let gave_up = representatives(&t, MAX_VECTORS).is_none();
            if !gave_up {
                decided += 1;
                // The analysis is exact when it does not give up.
                assert_eq!(constant_truth(&and([t.clone(), not(t.clone())])), Some(false), "{t:?}");
                assert_eq!(constant_truth(&or([t.clone(), not(t.clone())])), Some(true), "{t:?}");
            }
            let Some(truth) = constant_truth(&t) else { continue };
            constant += 1;
            both += usize::from(reads(&t, 0) && reads(&t, 1));
            // An argument the condition never reads need not vary.
            let [xs, ys] = [0, 1].map(|i| if reads(&t, i) { &values[..] } else { &[0][..] });
            for &x in xs {
                for &y in ys {
                    assert_eq!(t.eval(&[x, y, 0, 0, 0, 0]), truth, "{t:?} at ({x:#x}, {y:#x})");
                }
            }
        }
        // Guards against a generator that makes the test vacuous.
        assert!(decided > 1700 && both > 100, "decided {decided}, constant {constant}, on both arguments {both}");
    }
}
