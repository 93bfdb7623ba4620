//! The search tree over number ranges: an optimal alphabetic tree (every range a
//! leaf, every inner node one `jge`), minimising the weighted path length by dynamic
//! programming with Knuth's speed-up, O(n²) for n ranges; optionally with a bound on
//! the depth of some leaves (a length-limited optimal alphabetic tree).

/// A search tree over ranges `0..n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tree {
    Leaf(usize),
    /// Ranges `split..` go right (`nr >= lo of range split`), the others left.
    Node {
        split: usize,
        left: Box<Tree>,
        right: Box<Tree>,
    },
}

/// The tree minimising `sum(weight[i] * depth(i))` (the weighted path length) among
/// those where every range `i` with `bounds[i] == Some(b)` sits at depth `b` or less;
/// `None` when no tree does.
///
/// A dynamic programme over (ranges i..=j, depth d of their subtree's root), O(n³·D)
/// at worst for the largest bound D, but it only searches where it must: when the
/// unbounded optimum for i..=j keeps the bounds at depth d, no subtree costs less,
/// so most subproblems (and the whole tree, in the common case) are the unbounded
/// optimum, O(n²) with Knuth's speed-up.
pub fn bounded(weights: &[u64], bounds: &[Option<usize>]) -> Option<Tree> {
    assert_eq!(weights.len(), bounds.len(), "one bound per range");
    let n = weights.len();
    let free = Unbounded::new(weights);
    let at = |i: usize, j: usize| i * n + j;
    let bound = |k: usize| bounds[k].map_or(i64::MAX, |b| b as i64);
    // slack[i..=j]: the deepest root depth at which the unbounded subtree keeps the
    // bounds of its ranges (negative: none); tight[i..=j]: their smallest bound.
    let (mut slack, mut tight) = (vec![i64::MAX; n * n], vec![i64::MAX; n * n]);
    for len in 1..=n {
        for i in 0..=n - len {
            let j = i + len - 1;
            if len == 1 {
                (slack[at(i, i)], tight[at(i, i)]) = (bound(i), bound(i));
                continue;
            }
            let k = free.root[at(i, j)];
            slack[at(i, j)] = slack[at(i, k - 1)].min(slack[at(k, j)]).saturating_sub(1);
            tight[at(i, j)] = tight[at(i, i)].min(tight[at(i + 1, j)]);
        }
    }
    if slack[at(0, n - 1)] >= 0 {
        return Some(free.tree(0, n - 1));
    }
    const INFEASIBLE: u64 = u64::MAX;
    let deepest = bounds.iter().flatten().copied().max()?;
    let kraft = Kraft::new(bounds, deepest);
    if !kraft.fits(0, n - 1, 0) {
        return None;
    }
    // From the deepest bound up, the least cost of the subtree for a..=b rooted one
    // level below depth d (`child`, and transposed for the inner loop's sake), and
    // the split of each subtree the unbounded one does not do, for every d. At
    // `deepest + 1` only what the unbounded subtree does fits.
    let mut child = vec![INFEASIBLE; n * n];
    for a in 0..n {
        for b in a..n {
            if (deepest as i64) < slack[at(a, b)] {
                child[at(a, b)] = free.cost[at(a, b)];
            }
        }
    }
    let mut child_t = transpose(&child, n);
    let mut here = vec![INFEASIBLE; n * n];
    let mut splits = vec![vec![0u32; n * n]; deepest + 1];
    for d in (0..=deepest).rev() {
        let depth = d as i64;
        let (last_split, first_split) = kraft.windows(n, d);
        for len in 1..=n {
            for i in 0..=n - len {
                let j = i + len - 1;
                here[at(i, j)] = if depth <= slack[at(i, j)] {
                    free.cost[at(i, j)]
                } else if len == 1 || depth + 1 > tight[at(i, j)] || !kraft.fits(i, j, d) {
                    // A range deeper than its bound, ranges under a root at their
                    // tightest bound, or too many ranges for their bounds.
                    INFEASIBLE
                } else {
                    // left i..k-1 is child[i][k-1], right k..=j is child_t[j][k].
                    let (left, right) = (&child[at(i, 0)..], &child_t[at(j, 0)..]);
                    let (first, last) = (first_split[j].max(i + 1), last_split[i].min(j));
                    let mut best = (INFEASIBLE, 0);
                    if first <= last {
                        let sides = left[first - 1..last].iter().zip(&right[first..=last]);
                        for (k, (l, r)) in (first..).zip(sides) {
                            let c = l.saturating_add(*r);
                            if c < best.0 {
                                best = (c, k);
                            }
                        }
                    }
                    splits[d][at(i, j)] = u32::try_from(best.1).expect("fewer than 2^32 ranges");
                    best.0.saturating_add(free.total(i, j))
                };
            }
        }
        std::mem::swap(&mut here, &mut child);
        child_t = transpose(&child, n);
    }
    if child[at(0, n - 1)] == INFEASIBLE {
        return None;
    }
    let build = Rebuild { free: &free, slack: &slack, splits: &splits, n };
    Some(build.tree(0, 0, n - 1))
}

/// Kraft's inequality on runs of ranges: the bounded ranges i..=j fit under a root at
/// depth d only if the sum of 2^-(bound - d) is at most one. A necessary condition,
/// cheap to test, that spares the programme most subtrees that fit nowhere.
struct Kraft {
    /// The sum over the ranges before k of 2^(deepest - bound), counting a range at
    /// the deepest bound as one; `None` when the bounds are too deep to count this way.
    before: Option<Vec<u128>>,
    deepest: usize,
}

impl Kraft {
    fn new(bounds: &[Option<usize>], deepest: usize) -> Kraft {
        // Below 2^100 a range, the sums stay far from overflowing.
        let before = (deepest < 100).then(|| {
            let mut sum = 0u128;
            let mut before = vec![0];
            for b in bounds {
                sum += b.map_or(0, |b| 1 << (deepest - b));
                before.push(sum);
            }
            before
        });
        Kraft { before, deepest }
    }

    /// What a subtree rooted at `depth` holds: 2^(deepest - depth), none past `deepest`.
    fn room(&self, depth: usize) -> u128 {
        self.deepest.checked_sub(depth).map_or(0, |up| 1 << up)
    }

    fn fits(&self, i: usize, j: usize, depth: usize) -> bool {
        self.before.as_ref().is_none_or(|before| before[j + 1] - before[i] <= self.room(depth))
    }

    /// For the subtrees one level below `depth`: for each i, the last split k
    /// whose left side i..k-1 fits (at least i), and for each j, the first whose
    /// right side k..=j fits (at most j + 1). O(n), since both move with i and j.
    fn windows(&self, n: usize, depth: usize) -> (Vec<usize>, Vec<usize>) {
        let Some(before) = &self.before else {
            return ((0..n).map(|_| n).collect(), vec![0; n]);
        };
        let room = self.room(depth + 1);
        let (mut last, mut first) = (vec![0; n], vec![0; n]);
        let mut k = 0;
        for (i, last) in last.iter_mut().enumerate() {
            // Left fits: before[k] - before[i] <= room.
            k = k.max(i);
            while k < n && before[k + 1] - before[i] <= room {
                k += 1;
            }
            *last = k;
        }
        let mut k = 0;
        for (j, first) in first.iter_mut().enumerate() {
            // Right fits: before[j + 1] - before[k] <= room.
            while before[j + 1] - before[k] > room {
                k += 1;
            }
            *first = k;
        }
        (last, first)
    }
}

/// `m` (n × n, row-major) with rows and columns swapped.
fn transpose(m: &[u64], n: usize) -> Vec<u64> {
    let mut t = vec![0; n * n];
    for a in 0..n {
        for b in 0..n {
            t[b * n + a] = m[a * n + b];
        }
    }
    t
}

/// The tree the bounded programme chose, from its splits.
struct Rebuild<'a> {
    free: &'a Unbounded,
    slack: &'a [i64],
    splits: &'a [Vec<u32>],
    n: usize,
}

impl Rebuild<'_> {
    fn tree(&self, depth: usize, i: usize, j: usize) -> Tree {
        if depth as i64 <= self.slack[i * self.n + j] {
            return self.free.tree(i, j);
        }
        debug_assert!(i < j, "the programme placed range {i} below its bound");
        let split = self.splits[depth][i * self.n + j] as usize;
        Tree::Node {
            split,
            left: Box::new(self.tree(depth + 1, i, split - 1)),
            right: Box::new(self.tree(depth + 1, split, j)),
        }
    }
}

/// The optimal unbounded subtrees for every run of ranges i..=j.
struct Unbounded {
    n: usize,
    prefix: Vec<u64>,
    /// The least cost and the split of the subtree for i..=j, at `i * n + j`.
    cost: Vec<u64>,
    root: Vec<usize>,
}

impl Unbounded {
    fn new(weights: &[u64]) -> Unbounded {
        let n = weights.len();
        assert!(n > 0, "a search needs at least one range");
        let at = |i: usize, j: usize| i * n + j;
        let mut prefix = vec![0u64; n + 1];
        for (i, w) in weights.iter().enumerate() {
            prefix[i + 1] = prefix[i] + w;
        }
        let mut cost = vec![0u64; n * n];
        let mut root = vec![0usize; n * n];
        for i in 0..n {
            root[at(i, i)] = i;
        }
        for len in 2..=n {
            for i in 0..=n - len {
                let j = i + len - 1;
                // The split `k` puts i..k left and k..=j right; Knuth: root[i][j-1] <=
                // root[i][j] <= root[i+1][j] (with the root stored as the split).
                let (lo, hi) =
                    if len == 2 { (i + 1, j) } else { (root[at(i, j - 1)].max(i + 1), root[at(i + 1, j)].min(j)) };
                let mut best = (u64::MAX, 0);
                for k in lo..=hi {
                    let c = cost[at(i, k - 1)] + cost[at(k, j)];
                    if c < best.0 {
                        best = (c, k);
                    }
                }
                cost[at(i, j)] = best.0 + prefix[j + 1] - prefix[i];
                root[at(i, j)] = best.1;
            }
        }
        Unbounded { n, prefix, cost, root }
    }

    /// The weight of the ranges i..=j.
    fn total(&self, i: usize, j: usize) -> u64 {
        self.prefix[j + 1] - self.prefix[i]
    }

    fn tree(&self, i: usize, j: usize) -> Tree {
        if i == j {
            return Tree::Leaf(i);
        }
        let split = self.root[i * self.n + j];
        Tree::Node { split, left: Box::new(self.tree(i, split - 1)), right: Box::new(self.tree(split, j)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The depth of each range's leaf, by range.
    fn depths(tree: &Tree) -> Vec<usize> {
        fn walk(tree: &Tree, depth: usize, out: &mut Vec<usize>) {
            match tree {
                Tree::Leaf(_) => out.push(depth),
                Tree::Node { left, right, .. } => {
                    walk(left, depth + 1, out);
                    walk(right, depth + 1, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(tree, 0, &mut out);
        out
    }

    fn optimal(weights: &[u64]) -> Tree {
        bounded(weights, &vec![None; weights.len()]).expect("no bounds")
    }

    fn cost(weights: &[u64], tree: &Tree) -> u64 {
        depths(tree).iter().zip(weights).map(|(&d, &w)| w * d as u64).sum()
    }

    /// The exhaustive optimum over every tree keeping the bounds, for checking the
    /// fast one.
    fn brute(weights: &[u64], bounds: &[Option<usize>], i: usize, j: usize, depth: usize) -> Option<u64> {
        if i == j {
            return bounds[i].is_none_or(|b| depth <= b).then_some(0);
        }
        let total: u64 = weights[i..=j].iter().sum();
        (i + 1..=j)
            .filter_map(|k| {
                Some(brute(weights, bounds, i, k - 1, depth + 1)? + brute(weights, bounds, k, j, depth + 1)?)
            })
            .min()
            .map(|c| c + total)
    }

    /// A small deterministic generator (xorshift), for cases without a dependency.
    fn cases() -> Vec<(Vec<u64>, Vec<Option<usize>>)> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |m: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % m
        };
        (0..1000)
            .map(|_| {
                let n = 1 + next(10) as usize;
                let weights = (0..n).map(|_| [1, 1, 1, 5, 21, 90][next(6) as usize]).collect();
                let bounds = (0..n).map(|_| (next(3) == 0).then(|| next(5) as usize)).collect();
                (weights, bounds)
            })
            .collect()
    }

    #[test]
    fn equal_weights_give_a_balanced_tree() {
        let tree = optimal(&[1; 256]);
        assert!(depths(&tree).iter().all(|&depth| depth == 8));
    }

    #[test]
    fn the_fast_optimum_is_the_optimum() {
        for weights in [vec![1, 50, 1, 1, 9, 1, 1], vec![5, 1, 1, 1, 1, 1, 1, 30], vec![3, 3, 1, 7, 1, 2, 8, 1, 1]] {
            let none = vec![None; weights.len()];
            let brute = brute(&weights, &none, 0, weights.len() - 1, 0);
            assert_eq!(Some(cost(&weights, &optimal(&weights))), brute, "{weights:?}");
        }
    }

    #[test]
    fn the_bounded_optimum_keeps_the_bounds_at_the_least_cost() {
        let (mut feasible, mut infeasible, mut binding) = (0, 0, 0);
        for (weights, bounds) in cases() {
            let n = weights.len();
            let expected = brute(&weights, &bounds, 0, n - 1, 0);
            let found = bounded(&weights, &bounds);
            match (&found, expected) {
                (Some(tree), Some(least)) => {
                    let d = depths(tree);
                    assert_eq!(d.len(), n);
                    assert!(
                        d.iter().zip(&bounds).all(|(&d, b)| b.is_none_or(|b| d <= b)),
                        "{weights:?} {bounds:?}: {d:?}"
                    );
                    assert_eq!(cost(&weights, tree), least, "{weights:?} {bounds:?}");
                    feasible += 1;
                    if least > cost(&weights, &optimal(&weights)) {
                        binding += 1;
                    }
                }
                (None, None) => infeasible += 1,
                _ => panic!("{weights:?} {bounds:?}: found {found:?}, the optimum costs {expected:?}"),
            }
        }
        // The cases exercise all three outcomes.
        assert!(feasible > 50 && infeasible > 10 && binding > 10, "{feasible} {infeasible} {binding}");
    }

    #[test]
    fn a_middle_leaf_cannot_sit_at_depth_one_among_three() {
        assert_eq!(bounded(&[1, 100, 1], &[None, Some(1), None]), None);
        assert_eq!(bounded(&[1, 1, 1], &[Some(1), Some(1), Some(1)]), None);
        let tree = bounded(&[1, 1, 1, 100], &[None, None, None, Some(1)]).expect("fits");
        assert_eq!(depths(&tree)[3], 1);
    }
}
