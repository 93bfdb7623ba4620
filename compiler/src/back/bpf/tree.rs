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

/// The tree minimising `sum(weight[i] * depth(i))` (the weighted path length) among those where every range `i`
/// with `bounds[i] == Some(b)` sits at depth `b` or less; `None` when no tree does.
/// The unbounded optimum when it keeps the bounds (the common case, O(n²)); else a
/// dynamic programme over (ranges i..=j, depth of their subtree's root), O(n³·D) for
/// the largest bound D, where a subtree without bounded ranges is the unbounded one.
pub fn bounded(weights: &[u64], bounds: &[Option<usize>]) -> Option<Tree> {
    assert_eq!(weights.len(), bounds.len(), "one bound per range");
    let unbounded = Unbounded::new(weights);
    let n = weights.len();
    let tree = unbounded.tree(0, n - 1);
    if depths(&tree)
        .iter()
        .zip(bounds)
        .all(|(&d, b)| b.is_none_or(|b| d <= b))
    {
        return Some(tree);
    }
    let deepest = bounds.iter().flatten().copied().max()?;
    // tightest[i][j]: the smallest bound among the ranges i..=j.
    let mut tightest = vec![vec![None::<usize>; n]; n];
    for i in 0..n {
        let mut t = None;
        for j in i..n {
            t = match (t, bounds[j]) {
                (Some(a), Some(b)) => Some(usize::min(a, b)),
                (a, b) => a.or(b),
            };
            tightest[i][j] = t;
        }
    }
    const INFEASIBLE: u64 = u64::MAX;
    // For the subtree of i..=j rooted at depth d (only where i..=j holds a bounded
    // range): its least cost, kept for d and d + 1 only, and its split, kept for
    // every d. Below `deepest` no bounded range fits, so the depth under it starts
    // infeasible.
    let at = |i: usize, j: usize| i * n + j;
    let mut below = vec![INFEASIBLE; n * n];
    let mut here = vec![INFEASIBLE; n * n];
    let mut splits = vec![vec![0u32; n * n]; deepest + 1];
    for d in (0..=deepest).rev() {
        for len in 1..=n {
            for i in 0..=n - len {
                let j = i + len - 1;
                here[at(i, j)] = INFEASIBLE;
                let Some(tight) = tightest[i][j] else {
                    continue;
                };
                if len == 1 {
                    if d <= tight {
                        here[at(i, j)] = 0;
                    }
                    continue;
                }
                if d + 1 > tight {
                    continue;
                }
                let child = |a: usize, b: usize| match tightest[a][b] {
                    Some(_) => below[at(a, b)],
                    None => unbounded.cost[a][b],
                };
                let mut best = (INFEASIBLE, 0);
                for k in i + 1..=j {
                    let (left, right) = (child(i, k - 1), child(k, j));
                    if left != INFEASIBLE && right != INFEASIBLE && left + right < best.0 {
                        best = (left + right, k);
                    }
                }
                if best.0 != INFEASIBLE {
                    here[at(i, j)] = best.0 + unbounded.total(i, j);
                    splits[d][at(i, j)] = u32::try_from(best.1).expect("fewer than 2^32 ranges");
                }
            }
        }
        std::mem::swap(&mut here, &mut below);
    }
    if below[at(0, n - 1)] == INFEASIBLE {
        return None;
    }
    let split = |d: usize, i: usize, j: usize| splits[d][at(i, j)] as usize;
    Some(build_bounded(&split, &tightest, &unbounded, 0, 0, n - 1))
}

fn build_bounded(
    split: &impl Fn(usize, usize, usize) -> usize,
    tightest: &[Vec<Option<usize>>],
    unbounded: &Unbounded,
    depth: usize,
    i: usize,
    j: usize,
) -> Tree {
    if tightest[i][j].is_none() {
        return unbounded.tree(i, j);
    }
    if i == j {
        return Tree::Leaf(i);
    }
    let k = split(depth, i, j);
    Tree::Node {
        split: k,
        left: Box::new(build_bounded(
            split,
            tightest,
            unbounded,
            depth + 1,
            i,
            k - 1,
        )),
        right: Box::new(build_bounded(split, tightest, unbounded, depth + 1, k, j)),
    }
}

/// Kraft's inequality, a necessary condition for a binary tree whose leaves sit no
/// deeper than `bounds` (alphabetic order can ask for one level more): when it fails,
/// `bounded` would find nothing.
pub fn may_fit(bounds: &[Option<usize>]) -> bool {
    let Some(&deepest) = bounds.iter().flatten().max() else {
        return true;
    };
    if deepest >= 127 {
        return true;
    }
    // Counted in leaves of depth `deepest`.
    let share = bounds
        .iter()
        .flatten()
        .fold(0u128, |sum, &b| sum.saturating_add(1 << (deepest - b)));
    let whole = 1u128 << deepest;
    let others = bounds.iter().any(Option::is_none);
    if others {
        share < whole
    } else {
        share <= whole
    }
}

/// The depth of each range's leaf, by range.
pub fn depths(tree: &Tree) -> Vec<usize> {
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

/// The optimal unbounded subtrees for every run of ranges i..=j.
struct Unbounded {
    prefix: Vec<u64>,
    /// cost[i][j], root[i][j] for the ranges i..=j.
    cost: Vec<Vec<u64>>,
    root: Vec<Vec<usize>>,
}

impl Unbounded {
    fn new(weights: &[u64]) -> Unbounded {
        let n = weights.len();
        assert!(n > 0, "a search needs at least one range");
        let mut prefix = vec![0u64; n + 1];
        for (i, w) in weights.iter().enumerate() {
            prefix[i + 1] = prefix[i] + w;
        }
        let mut cost = vec![vec![0u64; n]; n];
        let mut root = vec![vec![0usize; n]; n];
        for (i, row) in root.iter_mut().enumerate() {
            row[i] = i;
        }
        for len in 2..=n {
            for i in 0..=n - len {
                let j = i + len - 1;
                // The split `k` puts i..k left and k..=j right; Knuth: root[i][j-1] <=
                // root[i][j] <= root[i+1][j] (with the root stored as the split).
                let lo = if len == 2 {
                    i + 1
                } else {
                    root[i][j - 1].max(i + 1)
                };
                let hi = if len == 2 { j } else { root[i + 1][j].min(j) };
                let mut best = (u64::MAX, 0);
                for k in lo..=hi {
                    let c = cost[i][k - 1] + cost[k][j];
                    if c < best.0 {
                        best = (c, k);
                    }
                }
                cost[i][j] = best.0 + prefix[j + 1] - prefix[i];
                root[i][j] = best.1;
            }
        }
        Unbounded { prefix, cost, root }
    }

    /// The weight of the ranges i..=j.
    fn total(&self, i: usize, j: usize) -> u64 {
        self.prefix[j + 1] - self.prefix[i]
    }

    fn tree(&self, i: usize, j: usize) -> Tree {
        if i == j {
            return Tree::Leaf(i);
        }
        let split = self.root[i][j];
        Tree::Node {
            split,
            left: Box::new(self.tree(i, split - 1)),
            right: Box::new(self.tree(split, j)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn optimal(weights: &[u64]) -> Tree {
        bounded(weights, &vec![None; weights.len()]).expect("no bounds")
    }

    fn cost(weights: &[u64], tree: &Tree) -> u64 {
        depths(tree)
            .iter()
            .zip(weights)
            .map(|(&d, &w)| w * d as u64)
            .sum()
    }

    /// The exhaustive optimum over every tree keeping the bounds, for checking the
    /// fast one.
    fn brute(
        weights: &[u64],
        bounds: &[Option<usize>],
        i: usize,
        j: usize,
        depth: usize,
    ) -> Option<u64> {
        if i == j {
            return bounds[i].is_none_or(|b| depth <= b).then_some(0);
        }
        let total: u64 = weights[i..=j].iter().sum();
        (i + 1..=j)
            .filter_map(|k| {
                Some(
                    brute(weights, bounds, i, k - 1, depth + 1)?
                        + brute(weights, bounds, k, j, depth + 1)?,
                )
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
        (0..300)
            .map(|_| {
                let n = 1 + next(9) as usize;
                let weights = (0..n)
                    .map(|_| [1, 1, 1, 5, 21, 90][next(6) as usize])
                    .collect();
                let bounds = (0..n)
                    .map(|_| (next(3) == 0).then(|| next(5) as usize))
                    .collect();
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
        for weights in [
            vec![1, 50, 1, 1, 9, 1, 1],
            vec![5, 1, 1, 1, 1, 1, 1, 30],
            vec![3, 3, 1, 7, 1, 2, 8, 1, 1],
        ] {
            let none = vec![None; weights.len()];
            let brute = brute(&weights, &none, 0, weights.len() - 1, 0);
            assert_eq!(
                Some(cost(&weights, &optimal(&weights))),
                brute,
                "{weights:?}"
            );
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
                        d.iter()
                            .zip(&bounds)
                            .all(|(&d, b)| b.is_none_or(|b| d <= b)),
                        "{weights:?} {bounds:?}: {d:?}"
                    );
                    assert_eq!(cost(&weights, tree), least, "{weights:?} {bounds:?}");
                    feasible += 1;
                    if least > cost(&weights, &optimal(&weights)) {
                        binding += 1;
                    }
                }
                (None, None) => infeasible += 1,
                _ => panic!(
                    "{weights:?} {bounds:?}: found {found:?}, the optimum costs {expected:?}"
                ),
            }
            // Kraft's inequality is necessary: when it fails, nothing fits.
            assert!(
                may_fit(&bounds) || found.is_none(),
                "{bounds:?} fit against Kraft"
            );
        }
        // The cases exercise all three outcomes.
        assert!(
            feasible > 50 && infeasible > 10 && binding > 10,
            "{feasible} {infeasible} {binding}"
        );
    }

    #[test]
    fn a_middle_leaf_cannot_sit_at_depth_one_among_three() {
        assert_eq!(bounded(&[1, 100, 1], &[None, Some(1), None]), None);
        assert!(!may_fit(&[Some(1), Some(1), None]));
        assert!(may_fit(&[None, Some(1), None]));
        let tree = bounded(&[1, 1, 1, 100], &[None, None, None, Some(1)]).expect("fits");
        assert_eq!(depths(&tree)[3], 1);
    }
}
