//! RFC 9162 Merkle trees: tree hashing, the frontier an appender keeps, and
//! inclusion and consistency proofs with their verification.
//!
//! The tree shape is RFC 9162 section 2.1.1 (split at the largest power of two
//! smaller than n); the hash is pluggable ([`TreeHasher`]) so the algorithms are
//! tested against the RFC 6962 SHA-256 vectors, while the log uses [`Blake3`]:
//! leaf = BLAKE3(0x00 || line), node = BLAKE3(0x01 || left || right).

use std::fmt;
use std::marker::PhantomData;

/// A 32-byte tree hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub const ZERO: Hash = Hash([0; 32]);

    pub fn to_hex(&self) -> String {
        super::canonical::hex(&self.0)
    }

    pub fn from_hex(s: &str) -> Option<Hash> {
        super::canonical::parse_hex(s).map(Hash)
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({self})")
    }
}

/// The two domain-separated hash functions of a Merkle tree.
pub trait TreeHasher {
    fn leaf(data: &[u8]) -> Hash;
    fn node(left: &Hash, right: &Hash) -> Hash;
    /// The root of the empty tree (the hash of the empty string, per RFC 9162).
    fn empty() -> Hash;
}

/// The log's hasher.
#[derive(Clone, Copy, Debug)]
pub enum Blake3 {}

impl TreeHasher for Blake3 {
    fn leaf(data: &[u8]) -> Hash {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&[0x00]);
        hasher.update(data);
        Hash(*hasher.finalize().as_bytes())
    }

    fn node(left: &Hash, right: &Hash) -> Hash {
        let mut block = [0u8; 65];
        block[0] = 0x01;
        block[1..33].copy_from_slice(&left.0);
        block[33..].copy_from_slice(&right.0);
        Hash(*blake3::hash(&block).as_bytes())
    }

    fn empty() -> Hash {
        Hash(*blake3::hash(b"").as_bytes())
    }
}

/// The leaf hash of one record line (without its newline).
pub fn leaf_hash(line: &[u8]) -> Hash {
    Blake3::leaf(line)
}

/// The largest power of two strictly smaller than `n` (n >= 2).
fn split_point(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// MTH(D[n]) over leaf hashes.
pub fn root<H: TreeHasher>(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => H::empty(),
        [leaf] => *leaf,
        _ => {
            let k = split_point(leaves.len());
            H::node(&root::<H>(&leaves[..k]), &root::<H>(&leaves[k..]))
        }
    }
}

/// The right edge of a tree: the roots of the perfect subtrees that cover
/// `[0, size)`, largest first (one per set bit of `size`). It is all an appender
/// needs to add leaves and compute the root, in O(log n) memory.
#[derive(Clone)]
pub struct Frontier<H: TreeHasher = Blake3> {
    size: u64,
    subtrees: Vec<Hash>,
    hasher: PhantomData<H>,
}

impl<H: TreeHasher> fmt::Debug for Frontier<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frontier").field("size", &self.size).field("subtrees", &self.subtrees).finish()
    }
}

impl<H: TreeHasher> PartialEq for Frontier<H> {
    fn eq(&self, other: &Self) -> bool {
        self.size == other.size && self.subtrees == other.subtrees
    }
}

impl<H: TreeHasher> Eq for Frontier<H> {}

impl<H: TreeHasher> Default for Frontier<H> {
    fn default() -> Self {
        Frontier { size: 0, subtrees: Vec::new(), hasher: PhantomData }
    }
}

impl<H: TreeHasher> Frontier<H> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a frontier from stored subtree roots; `None` if their number does not
    /// match the set bits of `size`.
    pub fn from_parts(size: u64, subtrees: Vec<Hash>) -> Option<Self> {
        (subtrees.len() == size.count_ones() as usize).then_some(Frontier { size, subtrees, hasher: PhantomData })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn subtrees(&self) -> &[Hash] {
        &self.subtrees
    }

    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut size = self.size;
        // Each trailing one bit of the old size is a perfect subtree of the new leaf's
        // width that now has a right sibling: merge them.
        while size & 1 == 1 {
            let left = self.subtrees.pop().expect("one subtree per set bit");
            hash = H::node(&left, &hash);
            size >>= 1;
        }
        self.subtrees.push(hash);
        self.size += 1;
    }

    pub fn root(&self) -> Hash {
        let mut subtrees = self.subtrees.iter().rev();
        match subtrees.next() {
            None => H::empty(),
            Some(last) => subtrees.fold(*last, |right, left| H::node(left, &right)),
        }
    }
}

/// RFC 9162 2.1.3.1: the inclusion proof of leaf `index` in the tree over `leaves`.
pub fn inclusion_proof<H: TreeHasher>(index: usize, leaves: &[Hash]) -> Option<Vec<Hash>> {
    fn path<H: TreeHasher>(m: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
        if leaves.len() <= 1 {
            return;
        }
        let k = split_point(leaves.len());
        if m < k {
            path::<H>(m, &leaves[..k], out);
            out.push(root::<H>(&leaves[k..]));
        } else {
            path::<H>(m - k, &leaves[k..], out);
            out.push(root::<H>(&leaves[..k]));
        }
    }
    if index >= leaves.len() {
        return None;
    }
    let mut proof = Vec::new();
    path::<H>(index, leaves, &mut proof);
    Some(proof)
}

/// RFC 9162 2.1.4.1: the consistency proof between the tree of the first `old_size`
/// leaves and the tree over all of `leaves`.
pub fn consistency_proof<H: TreeHasher>(old_size: usize, leaves: &[Hash]) -> Option<Vec<Hash>> {
    fn subproof<H: TreeHasher>(m: usize, leaves: &[Hash], complete: bool, out: &mut Vec<Hash>) {
        let n = leaves.len();
        if m == n {
            if !complete {
                out.push(root::<H>(leaves));
            }
            return;
        }
        let k = split_point(n);
        if m <= k {
            subproof::<H>(m, &leaves[..k], complete, out);
            out.push(root::<H>(&leaves[k..]));
        } else {
            subproof::<H>(m - k, &leaves[k..], false, out);
            out.push(root::<H>(&leaves[..k]));
        }
    }
    if old_size > leaves.len() {
        return None;
    }
    let mut proof = Vec::new();
    if old_size > 0 {
        subproof::<H>(old_size, leaves, true, &mut proof);
    }
    Some(proof)
}

/// RFC 9162 2.1.3.2: whether `proof` shows `leaf` at `index` in the tree of `size` with `root`.
pub fn verify_inclusion<H: TreeHasher>(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = H::node(p, &r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            r = H::node(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && r == *root
}

/// RFC 9162 2.1.4.2: whether `proof` shows that the tree (`new_size`, `new_root`)
/// extends the tree (`old_size`, `old_root`).
pub fn verify_consistency<H: TreeHasher>(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    if old_size == 0 {
        // Every tree extends the empty tree; there is nothing to prove.
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut f_n, mut s_n) = (old_size - 1, new_size - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut f_r, mut s_r) = (*first, *first);
    for c in rest {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = H::node(c, &f_r);
            s_r = H::node(c, &s_r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            s_r = H::node(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    f_r == *old_root && s_r == *new_root && s_n == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// RFC 6962's hasher, to check the tree shape and proofs against published vectors.
    enum Sha256Tree {}

    impl TreeHasher for Sha256Tree {
        fn leaf(data: &[u8]) -> Hash {
            Hash(Sha256::new().chain_update([0u8]).chain_update(data).finalize().into())
        }
        fn node(left: &Hash, right: &Hash) -> Hash {
            Hash(Sha256::new().chain_update([1u8]).chain_update(left.0).chain_update(right.0).finalize().into())
        }
        fn empty() -> Hash {
            Hash(Sha256::digest(b"").into())
        }
    }

    fn h(hex: &str) -> Hash {
        Hash::from_hex(hex).unwrap()
    }

    /// The leaf inputs of the RFC 6962 test vectors (certificate-transparency, merkle_tree_test).
    fn rfc6962_leaves() -> Vec<Hash> {
        let inputs: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        inputs.iter().map(|d| Sha256Tree::leaf(d)).collect()
    }

    #[test]
    fn roots_match_rfc6962_vectors() {
        let leaves = rfc6962_leaves();
        let expected = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        for (n, want) in expected.iter().enumerate() {
            assert_eq!(root::<Sha256Tree>(&leaves[..=n]), h(want), "tree size {}", n + 1);
            let mut frontier = Frontier::<Sha256Tree>::new();
            leaves[..=n].iter().for_each(|l| frontier.push(*l));
            assert_eq!(frontier.root(), h(want), "frontier, tree size {}", n + 1);
        }
        assert_eq!(
            Frontier::<Sha256Tree>::new().root(),
            h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
    }

    #[test]
    fn proofs_match_rfc6962_vectors() {
        let leaves = rfc6962_leaves();
        // (leaf index, tree size, proof) from the RFC 6962 reference tests.
        let inclusion: [(usize, usize, &[&str]); 3] = [
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (2, 3, &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
        ];
        for (index, size, want) in inclusion {
            let proof = inclusion_proof::<Sha256Tree>(index, &leaves[..size]).unwrap();
            assert_eq!(proof, want.iter().map(|x| h(x)).collect::<Vec<_>>(), "inclusion {index} in {size}");
            let tree_root = root::<Sha256Tree>(&leaves[..size]);
            assert!(verify_inclusion::<Sha256Tree>(index as u64, size as u64, &leaves[index], &proof, &tree_root));
        }
        let consistency: [(usize, usize, &[&str]); 3] = [
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (old, new, want) in consistency {
            let proof = consistency_proof::<Sha256Tree>(old, &leaves[..new]).unwrap();
            assert_eq!(proof, want.iter().map(|x| h(x)).collect::<Vec<_>>(), "consistency {old} -> {new}");
            let (old_root, new_root) = (root::<Sha256Tree>(&leaves[..old]), root::<Sha256Tree>(&leaves[..new]));
            assert!(verify_consistency::<Sha256Tree>(old as u64, new as u64, &old_root, &new_root, &proof));
        }
    }

    /// Every proof the generator makes verifies, and none does for another leaf, with
    /// one hash changed or dropped, or against another old root.
    #[test]
    fn all_small_proofs_verify_and_tampered_ones_do_not() {
        let leaves: Vec<Hash> = (0u32..40).map(|i| Blake3::leaf(&i.to_le_bytes())).collect();
        let flip = |proof: &[Hash], i: usize| {
            let mut bad = proof.to_vec();
            bad[i].0[7] ^= 1;
            bad
        };
        for n in 1..=leaves.len() {
            let tree = &leaves[..n];
            let tree_root = root::<Blake3>(tree);
            for m in 0..n {
                let proof = inclusion_proof::<Blake3>(m, tree).unwrap();
                assert!(verify_inclusion::<Blake3>(m as u64, n as u64, &tree[m], &proof, &tree_root));
                if n > 1 {
                    assert!(!verify_inclusion::<Blake3>(m as u64, n as u64, &tree[(m + 1) % n], &proof, &tree_root));
                }
                for i in 0..proof.len() {
                    assert!(!verify_inclusion::<Blake3>(m as u64, n as u64, &tree[m], &flip(&proof, i), &tree_root));
                }
                if !proof.is_empty() {
                    assert!(!verify_inclusion::<Blake3>(m as u64, n as u64, &tree[m], &proof[1..], &tree_root));
                }
            }
            for m in 1..=n {
                let old_root = root::<Blake3>(&tree[..m]);
                let proof = consistency_proof::<Blake3>(m, tree).unwrap();
                assert!(verify_consistency::<Blake3>(m as u64, n as u64, &old_root, &tree_root, &proof), "{m} -> {n}");
                for i in 0..proof.len() {
                    assert!(!verify_consistency::<Blake3>(m as u64, n as u64, &old_root, &tree_root, &flip(&proof, i)));
                }
                if m < n {
                    let wrong_old = root::<Blake3>(&leaves[1..=m]);
                    assert!(!verify_consistency::<Blake3>(m as u64, n as u64, &wrong_old, &tree_root, &proof));
                }
            }
        }
    }

    #[test]
    fn frontier_round_trips_through_its_parts() {
        let mut frontier = Frontier::<Blake3>::new();
        for i in 0u32..77 {
            frontier.push(Blake3::leaf(&i.to_le_bytes()));
        }
        let rebuilt = Frontier::<Blake3>::from_parts(frontier.size(), frontier.subtrees().to_vec()).unwrap();
        assert_eq!(rebuilt.root(), frontier.root());
        assert!(Frontier::<Blake3>::from_parts(79, frontier.subtrees().to_vec()).is_none());
    }
}
