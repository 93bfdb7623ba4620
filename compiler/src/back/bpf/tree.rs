//! The search tree over number ranges: an optimal alphabetic tree (every range a
//! leaf, every inner node one `jge`), minimising the weighted path length by dynamic
//! programming with Knuth's speed-up, O(n²) for n ranges.

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

/// The tree minimising `sum(weight[i] * depth(i))`. Ties go to the most balanced
/// split point found first, so the result is deterministic.
pub fn optimal(weights: &[u64]) -> Tree {
    let n = weights.len();
    assert!(n > 0, "a search needs at least one range");
    let mut prefix = vec![0u64; n + 1];
    for (i, w) in weights.iter().enumerate() {
        prefix[i + 1] = prefix[i] + w;
    }
    // cost[i][j], root[i][j] for the ranges i..=j.
    let mut cost = vec![vec![0u64; n]; n];
    let mut root = vec![vec![0usize; n]; n];
    for (i, row) in root.iter_mut().enumerate() {
        row[i] = i;
    }
    for len in 2..=n {
        for i in 0..=n - len {
            let j = i + len - 1;
            let total = prefix[j + 1] - prefix[i];
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
            cost[i][j] = best.0 + total;
            root[i][j] = best.1;
        }
    }
    build(&root, 0, n - 1)
}

fn build(root: &[Vec<usize>], i: usize, j: usize) -> Tree {
    if i == j {
        return Tree::Leaf(i);
    }
    let split = root[i][j];
    Tree::Node {
        split,
        left: Box::new(build(root, i, split - 1)),
        right: Box::new(build(root, split, j)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depths(tree: &Tree, depth: usize, out: &mut Vec<(usize, usize)>) {
        match tree {
            Tree::Leaf(i) => out.push((*i, depth)),
            Tree::Node { left, right, .. } => {
                depths(left, depth + 1, out);
                depths(right, depth + 1, out);
            }
        }
    }

    /// The exhaustive optimum, for checking the fast one.
    fn brute(weights: &[u64], i: usize, j: usize) -> u64 {
        if i == j {
            return 0;
        }
        let total: u64 = weights[i..=j].iter().sum();
        (i + 1..=j)
            .map(|k| brute(weights, i, k - 1) + brute(weights, k, j))
            .min()
            .expect("a split")
            + total
    }

    #[test]
    fn equal_weights_give_a_balanced_tree() {
        let mut d = Vec::new();
        depths(&optimal(&[1; 256]), 0, &mut d);
        assert!(d.iter().all(|&(_, depth)| depth == 8));
        assert_eq!(
            d.iter().map(|&(i, _)| i).collect::<Vec<_>>(),
            (0..256).collect::<Vec<_>>()
        );
    }

    #[test]
    fn the_fast_optimum_is_the_optimum() {
        for weights in [
            vec![1, 50, 1, 1, 9, 1, 1],
            vec![5, 1, 1, 1, 1, 1, 1, 30],
            vec![3, 3, 1, 7, 1, 2, 8, 1, 1],
        ] {
            let mut d = Vec::new();
            depths(&optimal(&weights), 0, &mut d);
            let cost: u64 = d.iter().map(|&(i, depth)| weights[i] * depth as u64).sum();
            assert_eq!(cost, brute(&weights, 0, weights.len() - 1), "{weights:?}");
        }
    }
}
