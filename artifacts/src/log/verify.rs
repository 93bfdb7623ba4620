//! Verifying a whole log in one streaming pass: O(log n) memory (a Merkle frontier),
//! every line re-checked for canonical form, chain, checkpoints and signatures.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use super::MAX_LINE_LEN;
use super::chain::{Chain, Position, Problem, Recovered, Tamper};
use super::merkle::Hash;
use super::note::{NoteVerifier, SignedCheckpoint};

/// What to check the log against besides itself.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// Every checkpoint record must carry a valid signature by this key.
    pub public_key: Option<NoteVerifier>,
    /// A checkpoint saved earlier, outside the log: the log must extend it.
    pub checkpoint: Option<SignedCheckpoint>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every line checks out (sealed torn lines are listed in the report).
    Intact,
    /// The first bad place: `record` is the record number expected at `line`.
    Tampered { line: u64, record: u64, reason: Problem },
    /// Intact records followed by a torn last line (a crash mid-append), never sealed.
    Incomplete { intact_records: u64, torn_bytes: u64 },
    /// The file could not be read.
    Unreadable { reason: String },
}

impl Verdict {
    /// The `capsule verify` exit code: 0 intact, 1 tampered, 2 unreadable, 3 incomplete.
    pub fn exit_code(&self) -> i32 {
        match self {
            Verdict::Intact => 0,
            Verdict::Tampered { .. } => 1,
            Verdict::Unreadable { .. } => 2,
            Verdict::Incomplete { .. } => 3,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub verdict: Verdict,
    /// Records checked before the verdict was reached (all of them unless tampered).
    pub records: u64,
    pub log_id: Option<String>,
    /// The checkpoint over every intact record (size and root).
    pub head: Option<super::note::Checkpoint>,
    pub checkpoints: u64,
    /// Checkpoints whose signature was verified with the public key.
    pub signed_checkpoints: u64,
    /// With a public key: records after the last signed checkpoint, which a forger
    /// without the key could have rewritten or cut.
    pub unsigned_tail: Option<u64>,
    /// Whether a saved checkpoint was given and the log extends it.
    pub extends_saved_checkpoint: Option<bool>,
    /// Torn lines found and sealed by `log.recovered` records.
    pub recovered: Vec<Recovered>,
}

/// Verifies the log at `path`.
pub fn verify(path: &Path, options: &VerifyOptions) -> Report {
    match File::open(path) {
        Ok(file) => verify_reader(file, options),
        Err(e) => unreadable(format!("{}: {e}", path.display())),
    }
}

fn unreadable(reason: String) -> Report {
    Report {
        verdict: Verdict::Unreadable { reason },
        records: 0,
        log_id: None,
        head: None,
        checkpoints: 0,
        signed_checkpoints: 0,
        unsigned_tail: None,
        extends_saved_checkpoint: None,
        recovered: Vec::new(),
    }
}

/// Verifies a log read from `reader`.
pub fn verify_reader(reader: impl Read, options: &VerifyOptions) -> Report {
    let mut chain = Chain::new(options.public_key.clone());
    let outcome = stream(BufReader::with_capacity(1 << 20, reader), &mut chain, options);
    let verdict = match outcome {
        Err(e) => Verdict::Unreadable { reason: e.to_string() },
        Ok(Err(Tamper { line, record, problem })) => Verdict::Tampered { line, record, reason: problem },
        Ok(Ok(())) => match &chain.pending_torn {
            Some(torn) => Verdict::Incomplete {
                intact_records: chain.next_seq,
                torn_bytes: torn.length + u64::from(torn.terminated),
            },
            None => Verdict::Intact,
        },
    };
    let intact = matches!(verdict, Verdict::Intact | Verdict::Incomplete { .. });
    Report {
        records: chain.next_seq,
        log_id: chain.log_id.clone(),
        head: if intact { chain.checkpoint() } else { None },
        checkpoints: chain.checkpoints,
        signed_checkpoints: chain.signed_checkpoints,
        unsigned_tail: options
            .public_key
            .as_ref()
            .map(|_| chain.next_seq - chain.last_signed_size.map_or(0, |size| size + 1)),
        extends_saved_checkpoint: options.checkpoint.as_ref().map(|_| intact),
        recovered: chain.recovered.clone(),
        verdict,
    }
}

fn stream(mut reader: impl BufRead, chain: &mut Chain, options: &VerifyOptions) -> std::io::Result<Result<(), Tamper>> {
    let saved = options.checkpoint.as_ref().map(|s| &s.checkpoint);
    let mut line = Vec::with_capacity(4096);
    let mut at = Position { line: 0, offset: 0 };
    // The saved checkpoint's root is compared once, when the tree reaches its size.
    let mut unchecked_saved = saved.filter(|s| s.size > 0);
    loop {
        line.clear();
        at.line += 1;
        // Read at most one byte past the limit, so a hostile file cannot exhaust memory.
        let n = (&mut reader).take(MAX_LINE_LEN as u64 + 2).read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        let result = match line.strip_suffix(b"\n") {
            Some(content) => chain.apply(content, at),
            None if line.len() > MAX_LINE_LEN + 1 => {
                Err(Tamper { line: at.line, record: chain.next_seq, problem: Problem::LineTooLong })
            }
            None => chain.stash_torn(&line, at, false, "no newline at the end".into()),
        };
        if let Err(tamper) = result {
            return Ok(Err(tamper));
        }
        at.offset += n as u64;
        if at.line == 1
            && chain.next_seq == 1
            && let Some(saved) = saved
        {
            let origin = chain.origin().expect("genesis sets the log id");
            if origin != saved.origin {
                return Ok(Err(Tamper {
                    line: 1,
                    record: 0,
                    problem: Problem::WrongLog { log_origin: origin, checkpoint_origin: saved.origin.clone() },
                }));
            }
        }
        if let Some(expected) = unchecked_saved
            && chain.frontier.size() == expected.size
        {
            if chain.frontier.root() != expected.root {
                return Ok(Err(Tamper {
                    line: at.line,
                    record: expected.size - 1,
                    problem: Problem::DiffersFromSavedCheckpoint { size: expected.size },
                }));
            }
            unchecked_saved = None;
        }
    }
    if let Some(saved) = saved {
        if chain.next_seq == 0 {
            return Ok(Err(Tamper { line: 1, record: 0, problem: Problem::MissingGenesis }));
        }
        if chain.frontier.size() < saved.size {
            return Ok(Err(Tamper {
                line: at.line,
                record: chain.next_seq,
                problem: Problem::Truncated { records: chain.next_seq, checkpoint_size: saved.size },
            }));
        }
        if saved.size == 0 && saved.root != Hash(*blake3::hash(b"").as_bytes()) {
            return Ok(Err(Tamper { line: 1, record: 0, problem: Problem::DiffersFromSavedCheckpoint { size: 0 } }));
        }
    }
    if chain.next_seq == 0 && chain.pending_torn.is_none() {
        return Ok(Err(Tamper { line: 1, record: 0, problem: Problem::MissingGenesis }));
    }
    Ok(Ok(()))
}
