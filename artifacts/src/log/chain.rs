//! The rules that link one line to the next, shared by the verifier (from the first
//! line) and the writer (from the last checkpoint): canonical form, sequence numbers,
//! the `prev` chain, genesis, checkpoints against the recomputed tree, and the sealing
//! of torn lines by `log.recovered`.

use std::fmt;

use super::canonical::{self, Object, Value};
use super::merkle::{Frontier, Hash, leaf_hash};
use super::note::{Checkpoint, NoteSignature, NoteVerifier, SignatureCheck, SignedCheckpoint};
use super::record::{Envelope, LogLine, Record, kind};
use super::{FORMAT_VERSION, HASH_NAME, MAX_LINE_LEN};

/// What is wrong with a log, at the first place it goes wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The line is not a record in canonical form.
    NotCanonical(String),
    LineTooLong,
    EmptyLine,
    /// The log does not start with `log.genesis` (or holds no records at all).
    MissingGenesis,
    BadGenesis(&'static str),
    UnexpectedGenesis,
    WrongSequence {
        expected: u64,
        found: u64,
    },
    /// `prev` is not the leaf hash of the record before.
    BrokenChain,
    BadCheckpoint(&'static str),
    /// The checkpoint's root differs from the root recomputed from the records.
    CheckpointRootMismatch {
        size: u64,
    },
    /// A public key was given and this checkpoint has no signature by it.
    UnsignedCheckpoint,
    /// A public key was given and this checkpoint's signature by it does not verify.
    BadSignature,
    BadRecovery(&'static str),
    /// The log holds fewer records than a saved checkpoint: its tail was cut or the
    /// file was rolled back to an older copy.
    Truncated {
        records: u64,
        checkpoint_size: u64,
    },
    /// The tree over the first `size` records differs from the saved checkpoint's:
    /// records up to there were changed (and the chain recomputed), or the log forked.
    DiffersFromSavedCheckpoint {
        size: u64,
    },
    /// The log's id is not the saved checkpoint's origin: a different (or recreated) log.
    WrongLog {
        log_origin: String,
        checkpoint_origin: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NotCanonical(why) => write!(f, "not a record in canonical form: {why}"),
            Problem::LineTooLong => write!(f, "line longer than {MAX_LINE_LEN} bytes"),
            Problem::EmptyLine => write!(f, "empty line"),
            Problem::MissingGenesis => write!(f, "the log does not begin with a log.genesis record"),
            Problem::BadGenesis(why) => write!(f, "bad log.genesis record: {why}"),
            Problem::UnexpectedGenesis => write!(f, "a second log.genesis record (spliced from another log?)"),
            Problem::WrongSequence { expected, found } => write!(
                f,
                "sequence number {found}, expected {expected} (record inserted, deleted, duplicated or reordered)"
            ),
            Problem::BrokenChain => write!(
                f,
                "prev does not match the hash of the previous record (the previous record was changed, or this one was moved)"
            ),
            Problem::BadCheckpoint(why) => write!(f, "bad checkpoint: {why}"),
            Problem::CheckpointRootMismatch { size } => {
                write!(f, "checkpoint root differs from the Merkle root recomputed over the first {size} records")
            }
            Problem::UnsignedCheckpoint => write!(f, "checkpoint is not signed by the given public key"),
            Problem::BadSignature => write!(
                f,
                "checkpoint signature by the given public key does not verify (forged or re-signed checkpoint)"
            ),
            Problem::BadRecovery(why) => write!(f, "bad log.recovered record: {why}"),
            Problem::Truncated { records, checkpoint_size } => write!(
                f,
                "the log holds {records} records but the saved checkpoint covers {checkpoint_size}: truncated or rolled back"
            ),
            Problem::DiffersFromSavedCheckpoint { size } => write!(
                f,
                "the Merkle root over the first {size} records differs from the saved checkpoint: records were changed and the chain recomputed, or the log was replaced"
            ),
            Problem::WrongLog { log_origin, checkpoint_origin } => write!(
                f,
                "the log is {log_origin} but the saved checkpoint is for {checkpoint_origin}: the log was replaced or recreated"
            ),
        }
    }
}

/// Where a problem is: the 1-based line and the record number (seq) expected there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tamper {
    pub line: u64,
    pub record: u64,
    pub problem: Problem,
}

/// A line's position in the file. The writer, which reads only the tail, has no line
/// numbers and passes 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: u64,
    pub offset: u64,
}

/// The torn tail: the lines after the last intact record that are not records (a
/// crash mid-append, possibly followed by a crash mid-seal). A `log.recovered` record
/// must seal it next; its bytes are the lines joined by their newlines.
#[derive(Clone, Debug)]
pub struct TornLine {
    /// Where its first line starts.
    pub at: Position,
    pub length: u64,
    hasher: blake3::Hasher,
    /// Whether a newline follows the torn bytes (if not, the sealer writes one).
    pub terminated: bool,
    why: String,
}

impl TornLine {
    /// BLAKE3 of the torn bytes (plain, not a leaf hash: they are not a record).
    pub fn hash(&self) -> Hash {
        Hash(*self.hasher.finalize().as_bytes())
    }
}

/// A torn line that a later writer sealed off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    pub line: u64,
    pub offset: u64,
    pub length: u64,
}

/// The state after a prefix of the log.
#[derive(Clone, Debug)]
pub struct Chain {
    pub next_seq: u64,
    pub last_leaf: Hash,
    pub frontier: Frontier,
    pub log_id: Option<String>,
    pub pending_torn: Option<TornLine>,
    /// Records since the last checkpoint record (the writer's cadence counter).
    pub since_checkpoint: u64,
    pub checkpoints: u64,
    pub signed_checkpoints: u64,
    /// Tree size covered by the last checkpoint verified with the public key.
    pub last_signed_size: Option<u64>,
    pub last_checkpoint: Option<SignedCheckpoint>,
    pub recovered: Vec<Recovered>,
    verifier: Option<NoteVerifier>,
}

impl Chain {
    /// The state before the first line.
    pub fn new(verifier: Option<NoteVerifier>) -> Chain {
        Chain {
            next_seq: 0,
            last_leaf: Hash::ZERO,
            frontier: Frontier::new(),
            log_id: None,
            pending_torn: None,
            since_checkpoint: 0,
            checkpoints: 0,
            signed_checkpoints: 0,
            last_signed_size: None,
            last_checkpoint: None,
            recovered: Vec::new(),
            verifier,
        }
    }

    /// The state just before a checkpoint record, rebuilt from the frontier it stores
    /// (how an appender avoids reading the whole log). The checkpoint line itself must
    /// then be applied, which checks it against that state.
    pub fn resume_before(checkpoint: &LogLine) -> Option<Chain> {
        let data = &checkpoint.record.data;
        let frontier = parse_frontier(data.get("frontier")?, checkpoint.seq)?;
        let origin = data.get("origin")?.as_str()?;
        let log_id = origin.strip_prefix(super::ORIGIN_PREFIX)?;
        let mut chain = Chain::new(None);
        chain.next_seq = checkpoint.seq;
        chain.last_leaf = checkpoint.prev;
        chain.frontier = frontier;
        chain.log_id = Some(log_id.to_owned());
        Some(chain)
    }

    pub fn origin(&self) -> Option<String> {
        self.log_id.as_ref().map(|id| format!("{}{id}", super::ORIGIN_PREFIX))
    }

    /// The checkpoint over every record so far.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        Some(Checkpoint { origin: self.origin()?, size: self.frontier.size(), root: self.frontier.root() })
    }

    fn tamper(&self, at: Position, problem: Problem) -> Tamper {
        Tamper { line: at.line, record: self.next_seq, problem }
    }

    /// Accepts a line (without its newline) that is followed by a newline.
    pub fn apply(&mut self, line: &[u8], at: Position) -> Result<(), Tamper> {
        if line.is_empty() && self.pending_torn.is_none() {
            return Err(self.tamper(at, Problem::EmptyLine));
        }
        if line.len() > MAX_LINE_LEN {
            return Err(self.tamper(at, Problem::LineTooLong));
        }
        match Envelope::parse(line) {
            Ok(envelope) => self.apply_record(line, &envelope, at),
            Err(e) => self.stash_torn(line, at, true, e.to_string()),
        }
    }

    /// Accepts a line that may be part of a torn tail: an unparsable line, or the
    /// unterminated last line. It becomes tampering if a record other than
    /// `log.recovered` follows.
    pub fn stash_torn(&mut self, line: &[u8], at: Position, terminated: bool, why: String) -> Result<(), Tamper> {
        match &mut self.pending_torn {
            Some(torn) => {
                torn.hasher.update(b"\n");
                torn.hasher.update(line);
                torn.length += 1 + line.len() as u64;
                torn.terminated = terminated;
            }
            None => {
                let mut hasher = blake3::Hasher::new();
                hasher.update(line);
                self.pending_torn = Some(TornLine { at, length: line.len() as u64, hasher, terminated, why });
            }
        }
        Ok(())
    }

    fn apply_record(&mut self, line: &[u8], record: &Envelope, at: Position) -> Result<(), Tamper> {
        // Only the kinds the chain gives meaning to need their data decoded.
        let data = || canonical::parse_object(record.data).map_err(|e| Problem::NotCanonical(e.to_string()));
        if let Some(torn) = self.pending_torn.take() {
            if record.kind != kind::RECOVERED {
                return Err(self.tamper(torn.at, Problem::NotCanonical(torn.why)));
            }
            data().and_then(|data| check_recovery(&data, &torn)).map_err(|p| self.tamper(at, p))?;
            self.recovered.push(Recovered { line: torn.at.line, offset: torn.at.offset, length: torn.length });
        } else if record.kind == kind::RECOVERED {
            return Err(self.tamper(at, Problem::BadRecovery("no torn line precedes it")));
        }
        if record.seq != self.next_seq {
            if self.next_seq == 0 {
                return Err(self.tamper(at, Problem::MissingGenesis));
            }
            return Err(self.tamper(at, Problem::WrongSequence { expected: self.next_seq, found: record.seq }));
        }
        if record.prev != self.last_leaf {
            return Err(self.tamper(at, Problem::BrokenChain));
        }
        match (self.next_seq, record.kind) {
            (0, kind::GENESIS) => data().and_then(|data| self.check_genesis(&data)).map_err(|p| self.tamper(at, p))?,
            (0, _) => return Err(self.tamper(at, Problem::MissingGenesis)),
            (_, kind::GENESIS) => return Err(self.tamper(at, Problem::UnexpectedGenesis)),
            (_, kind::CHECKPOINT) => {
                data().and_then(|data| self.check_checkpoint(&data)).map_err(|p| self.tamper(at, p))?
            }
            _ => {}
        }
        let leaf = leaf_hash(line);
        self.frontier.push(leaf);
        self.last_leaf = leaf;
        self.next_seq += 1;
        self.since_checkpoint = if record.kind == kind::CHECKPOINT { 0 } else { self.since_checkpoint + 1 };
        Ok(())
    }

    fn check_genesis(&mut self, data: &Object) -> Result<(), Problem> {
        if data.get("format").and_then(Value::as_int) != Some(FORMAT_VERSION) {
            return Err(Problem::BadGenesis("unsupported format version"));
        }
        if data.get("hash").and_then(Value::as_str) != Some(HASH_NAME) {
            return Err(Problem::BadGenesis("unsupported hash (expected \"blake3\")"));
        }
        let log_id =
            data.get("log_id").and_then(Value::as_str).filter(|id| super::canonical::parse_hex::<16>(id).is_some());
        let log_id = log_id.ok_or(Problem::BadGenesis("log_id must be 32 lower-case hex digits"))?;
        self.log_id = Some(log_id.to_owned());
        Ok(())
    }

    fn check_checkpoint(&mut self, data: &Object) -> Result<(), Problem> {
        let size = data
            .get("size")
            .and_then(Value::as_u64_str)
            .ok_or(Problem::BadCheckpoint("size must be a decimal string"))?;
        if size != self.frontier.size() {
            return Err(Problem::BadCheckpoint("size is not the number of records before the checkpoint"));
        }
        if data.get("origin").and_then(Value::as_str) != self.origin().as_deref() {
            return Err(Problem::BadCheckpoint("origin is not capsule.log/<this log's id>"));
        }
        let root = data
            .get("root")
            .and_then(Value::as_str)
            .and_then(Hash::from_hex)
            .ok_or(Problem::BadCheckpoint("root must be 64 hex digits"))?;
        if root != self.frontier.root() {
            return Err(Problem::CheckpointRootMismatch { size });
        }
        let frontier = data
            .get("frontier")
            .and_then(|f| parse_frontier(f, size))
            .ok_or(Problem::BadCheckpoint("malformed frontier"))?;
        if frontier != self.frontier {
            return Err(Problem::BadCheckpoint("frontier differs from the recomputed tree"));
        }
        let signatures =
            parse_signatures(data.get("signatures")).ok_or(Problem::BadCheckpoint("malformed signatures"))?;
        let signed = SignedCheckpoint {
            checkpoint: Checkpoint { origin: self.origin().expect("checked above"), size, root },
            signatures,
        };
        if let Some(verifier) = &self.verifier {
            match verifier.verify(&signed) {
                SignatureCheck::Valid => {
                    self.signed_checkpoints += 1;
                    self.last_signed_size = Some(size);
                }
                SignatureCheck::Missing => return Err(Problem::UnsignedCheckpoint),
                SignatureCheck::Invalid => return Err(Problem::BadSignature),
            }
        }
        self.checkpoints += 1;
        self.last_checkpoint = Some(signed);
        Ok(())
    }
}

fn check_recovery(data: &Object, torn: &TornLine) -> Result<(), Problem> {
    if data.get("length").and_then(Value::as_u64_str) != Some(torn.length) {
        return Err(Problem::BadRecovery("length differs from the torn line's"));
    }
    if data.get("hash").and_then(Value::as_str).and_then(Hash::from_hex) != Some(torn.hash()) {
        return Err(Problem::BadRecovery("hash differs from the torn line's"));
    }
    // The writer, reading only the tail, knows byte offsets exactly; so does the verifier.
    if data.get("offset").and_then(Value::as_u64_str) != Some(torn.at.offset) {
        return Err(Problem::BadRecovery("offset differs from the torn line's"));
    }
    Ok(())
}

fn parse_frontier(value: &Value, size: u64) -> Option<Frontier> {
    let hashes = value.as_array()?.iter().map(|h| h.as_str().and_then(Hash::from_hex)).collect::<Option<Vec<_>>>()?;
    Frontier::from_parts(size, hashes)
}

fn parse_signatures(value: Option<&Value>) -> Option<Vec<NoteSignature>> {
    let Some(value) = value else { return Some(Vec::new()) };
    value
        .as_array()?
        .iter()
        .map(|sig| {
            let sig = sig.as_object()?;
            NoteSignature::decode(sig.get("key")?.as_str()?, sig.get("sig")?.as_str()?).ok()
        })
        .collect()
}

/// The `checkpoint` record for the current state, signed if a signer is given.
pub fn checkpoint_record(
    chain: &Chain,
    signer: Option<&super::note::NoteSigner>,
) -> Option<(Record, SignedCheckpoint)> {
    let checkpoint = chain.checkpoint()?;
    let signatures: Vec<NoteSignature> = signer.map(|s| s.sign(&checkpoint)).into_iter().collect();
    let mut record = Record::new(kind::CHECKPOINT)
        .with("origin", checkpoint.origin.as_str())
        .with("size", Value::u64(checkpoint.size))
        .with("root", checkpoint.root.to_hex())
        .with("frontier", Value::Array(chain.frontier.subtrees().iter().map(|h| Value::Str(h.to_hex())).collect()));
    if !signatures.is_empty() {
        let sigs = signatures
            .iter()
            .map(|s| {
                Value::Object(
                    [("key".to_owned(), Value::from(s.key_name.as_str())), ("sig".to_owned(), Value::Str(s.encoded()))]
                        .into(),
                )
            })
            .collect();
        record = record.with("signatures", Value::Array(sigs));
    }
    Some((record, SignedCheckpoint { checkpoint, signatures }))
}

/// The `log.recovered` record sealing `torn`.
pub fn recovered_record(torn: &TornLine) -> Record {
    Record::new(kind::RECOVERED)
        .with("offset", Value::u64(torn.at.offset))
        .with("length", Value::u64(torn.length))
        .with("hash", torn.hash().to_hex())
}
