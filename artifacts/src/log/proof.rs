//! Inclusion and consistency proofs over a log file (RFC 9162 2.1.3 and 2.1.4).

use std::io::{BufRead, BufReader};
use std::path::Path;

use super::chain::{Chain, Position};
use super::merkle::{self, Blake3, Hash};
use super::note::Checkpoint;

/// The leaf hashes of every intact record of a log, checked on the way.
#[derive(Clone, Debug)]
pub struct LogTree {
    pub origin: String,
    pub leaves: Vec<Hash>,
}

impl LogTree {
    /// Reads the log at `path`; refuses a log that does not verify (a torn last line is fine).
    pub fn read(path: &Path) -> Result<LogTree, String> {
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut chain = Chain::new(None);
        let mut leaves = Vec::new();
        let mut line = Vec::new();
        let mut at = Position { line: 0, offset: 0 };
        loop {
            line.clear();
            at.line += 1;
            let n = reader.read_until(b'\n', &mut line).map_err(|e| format!("{}: {e}", path.display()))?;
            if n == 0 {
                break;
            }
            let before = chain.next_seq;
            let result = match line.strip_suffix(b"\n") {
                Some(content) => chain.apply(content, at),
                None => chain.stash_torn(&line, at, false, "no newline at the end".into()),
            };
            result.map_err(|t| {
                format!(
                    "{}: line {} (record {}): {}; run `capsule verify`",
                    path.display(),
                    t.line,
                    t.record,
                    t.problem
                )
            })?;
            if chain.next_seq > before {
                leaves.push(chain.last_leaf);
            }
            at.offset += n as u64;
        }
        let origin = chain.origin().ok_or_else(|| format!("{}: no log.genesis record", path.display()))?;
        Ok(LogTree { origin, leaves })
    }

    pub fn size(&self) -> u64 {
        self.leaves.len() as u64
    }

    /// The checkpoint over the first `size` records.
    pub fn checkpoint(&self, size: u64) -> Option<Checkpoint> {
        let leaves = self.leaves.get(..usize::try_from(size).ok()?)?;
        Some(Checkpoint { origin: self.origin.clone(), size, root: merkle::root::<Blake3>(leaves) })
    }

    pub fn inclusion(&self, record: u64, size: u64) -> Option<InclusionProof> {
        let checkpoint = self.checkpoint(size)?;
        let index = usize::try_from(record).ok()?;
        let path = merkle::inclusion_proof::<Blake3>(index, &self.leaves[..checkpoint.size as usize])?;
        Some(InclusionProof { record, leaf: self.leaves[index], checkpoint, path })
    }

    pub fn consistency(&self, old_size: u64, new_size: u64) -> Option<ConsistencyProof> {
        let (old, new) = (self.checkpoint(old_size)?, self.checkpoint(new_size)?);
        let path = merkle::consistency_proof::<Blake3>(old_size as usize, &self.leaves[..new_size as usize])?;
        Some(ConsistencyProof { old, new, path })
    }
}

/// Record `record` (leaf hash `leaf`) is in the tree of `checkpoint`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InclusionProof {
    pub record: u64,
    pub leaf: Hash,
    pub checkpoint: Checkpoint,
    pub path: Vec<Hash>,
}

impl InclusionProof {
    pub fn verify(&self) -> bool {
        merkle::verify_inclusion::<Blake3>(
            self.record,
            self.checkpoint.size,
            &self.leaf,
            &self.path,
            &self.checkpoint.root,
        )
    }
}

/// The tree of `new` extends the tree of `old`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsistencyProof {
    pub old: Checkpoint,
    pub new: Checkpoint,
    pub path: Vec<Hash>,
}

impl ConsistencyProof {
    pub fn verify(&self) -> bool {
        self.old.origin == self.new.origin
            && merkle::verify_consistency::<Blake3>(
                self.old.size,
                self.new.size,
                &self.old.root,
                &self.new.root,
                &self.path,
            )
    }
}
