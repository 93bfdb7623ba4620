//! Appending to the log: one exclusive `flock` around read-tail-then-write, one
//! `write()` per record line, `fdatasync` on request.
//!
//! The writer never reads the whole log. Under the lock it compares the file length
//! with where its last write ended; when another process appended meanwhile it reads
//! just those bytes, and when it knows nothing (first open, or the file shrank) it
//! reads backwards to the last `checkpoint` record, rebuilds the Merkle state from the
//! frontier stored there, and applies the records after it (at most the checkpoint
//! interval's worth, by default 1000).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use super::canonical::{self, Value};
use super::chain::{self, Chain, Position, Tamper};
use super::merkle::Hash;
use super::note::{NoteSigner, SignedCheckpoint};
use super::record::{LogLine, Record, is_valid_kind, kind};
use super::{FORMAT_VERSION, HASH_NAME, MAX_LINE_LEN};

/// Whether an append returns before or after the data reaches stable storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// `fdatasync` before returning: the records survive a power loss.
    Sync,
    /// Written to the page cache only (survives a crash of this process, not of the machine).
    Buffered,
}

/// The checkpoint interval used unless configured otherwise.
pub const DEFAULT_CHECKPOINT_EVERY: u64 = 1000;

/// How a writer behaves.
#[derive(Debug)]
pub struct WriterOptions {
    /// Write a checkpoint after this many records since the last one (0: only on request).
    pub checkpoint_every: u64,
    /// Signs every checkpoint this writer writes.
    pub signer: Option<NoteSigner>,
    /// How long an append waits for the lock before it fails (see [`LOCK_WAIT`]).
    pub lock_wait: std::time::Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions { checkpoint_every: DEFAULT_CHECKPOINT_EVERY, signer: None, lock_wait: LOCK_WAIT }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: the log is damaged near byte {offset}: {tamper}; run `capsule verify`", tamper = .tamper.problem)]
    Damaged { path: PathBuf, offset: u64, tamper: Tamper },
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    #[error("record of {0} bytes is larger than the limit of {MAX_LINE_LEN}")]
    RecordTooLarge(usize),
}

/// Where an appended record landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    pub leaf: Hash,
}

/// An open log, appendable by this process alongside any others.
#[derive(Debug)]
pub struct LogWriter {
    file: File,
    path: PathBuf,
    options: WriterOptions,
    /// The chain up to `end`, the file length after our last read or write.
    state: Option<(Chain, u64)>,
}

/// Holds the exclusive lock (through a duplicate of the log's descriptor: flock
/// locks belong to the shared open file description); dropping it unlocks.
struct Locked(File);

/// How long an append waits for the lock. Writers hold it for one read of the tail and
/// one write, so this only runs out when something holds it on purpose (anyone who can
/// open the log for reading can flock it): then the append fails rather than hangs,
/// and the launcher fails closed.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Locked {
    fn new(file: &File, wait: std::time::Duration) -> io::Result<Locked> {
        let file = file.try_clone()?;
        let deadline = std::time::Instant::now() + wait;
        let mut pause = std::time::Duration::from_micros(100);
        loop {
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(Locked(file)),
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::WOULDBLOCK) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(20));
                }
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the log stayed locked for {:?}", wait),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        // Closing the descriptor would release it too; an unlock error leaves nothing to do.
        let _ = flock(&self.0, FlockOperation::Unlock);
    }
}

impl LogWriter {
    /// Opens (creating with a genesis record if missing) the log at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<LogWriter, LogError> {
        LogWriter::open_with(path, WriterOptions::default())
    }

    pub fn open_with(path: impl AsRef<Path>, options: WriterOptions) -> Result<LogWriter, LogError> {
        let path = path.as_ref().to_path_buf();
        let io_err = |source| LogError::Io { path: path.clone(), source };
        // Created at most once: a path that is still missing after its creation (a
        // dangling symlink, which the creating link does not replace) is an error, not
        // a reason to try again forever.
        let mut created = false;
        let file = loop {
            match OpenOptions::new().read(true).append(true).open(&path) {
                Ok(file) => break file,
                Err(e) if e.kind() == io::ErrorKind::NotFound && !created => {
                    create_with_genesis(&path).map_err(io_err)?;
                    created = true;
                }
                Err(e) => return Err(io_err(e)),
            }
        };
        let _lock = Locked::new(&file, options.lock_wait).map_err(io_err)?;
        let mut writer = LogWriter { file, path, options, state: None };
        writer.refresh()?;
        Ok(writer)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io_err(&self, source: io::Error) -> LogError {
        LogError::Io { path: self.path.clone(), source }
    }

    /// Appends one record.
    pub fn append(&mut self, record: &Record, durability: Durability) -> Result<Appended, LogError> {
        let appended = self.append_all(std::slice::from_ref(record), durability)?;
        Ok(appended[0])
    }

    /// Appends records under one lock; with [`Durability::Sync`] one `fdatasync`
    /// covers them all (group commit).
    pub fn append_all(&mut self, records: &[Record], durability: Durability) -> Result<Vec<Appended>, LogError> {
        for record in records {
            validate(record)?;
        }
        let _lock = Locked::new(&self.file, self.options.lock_wait).map_err(|e| self.io_err(e))?;
        self.refresh()?;
        self.seal_torn_tail()?;
        let mut appended = Vec::with_capacity(records.len());
        for record in records {
            appended.push(self.write_record(record)?);
            let every = self.options.checkpoint_every;
            if every > 0 && self.chain().since_checkpoint >= every {
                self.write_checkpoint()?;
            }
        }
        if durability == Durability::Sync {
            self.sync()?;
        }
        Ok(appended)
    }

    /// Writes a checkpoint over every record so far (signed if the writer has a key)
    /// and returns it; the launcher calls this at the end of each invocation.
    pub fn checkpoint(&mut self, durability: Durability) -> Result<SignedCheckpoint, LogError> {
        let _lock = Locked::new(&self.file, self.options.lock_wait).map_err(|e| self.io_err(e))?;
        self.refresh()?;
        self.seal_torn_tail()?;
        let checkpoint = self.write_checkpoint()?;
        if durability == Durability::Sync {
            self.sync()?;
        }
        Ok(checkpoint)
    }

    /// `fdatasync`: everything appended so far reaches stable storage.
    #[cfg(not(target_vendor = "apple"))]
    pub fn sync(&self) -> Result<(), LogError> {
        rustix::fs::fdatasync(&self.file).map_err(|e| self.io_err(e.into()))
    }

    /// macOS has no `fdatasync`, and its `fsync` stops at the drive's cache:
    /// `F_FULLFSYNC` is what reaches stable storage there.
    #[cfg(target_vendor = "apple")]
    pub fn sync(&self) -> Result<(), LogError> {
        rustix::fs::fcntl_fullfsync(&self.file).map_err(|e| self.io_err(e.into()))
    }

    /// The number of records in the log as of this writer's last read or write.
    pub fn size(&self) -> u64 {
        self.state.as_ref().map_or(0, |(chain, _)| chain.next_seq)
    }

    fn chain(&self) -> &Chain {
        &self.state.as_ref().expect("refreshed under the lock").0
    }

    /// Brings `state` up to the current end of the file. Call with the lock held.
    fn refresh(&mut self) -> Result<(), LogError> {
        let len = self.file.metadata().map_err(|e| self.io_err(e))?.len();
        match self.state.take() {
            Some((chain, end)) if end == len => self.state = Some((chain, end)),
            Some((mut chain, end)) if end < len => {
                let mut bytes = vec![0; usize::try_from(len - end).expect("fits in memory")];
                self.file.read_exact_at(&mut bytes, end).map_err(|e| self.io_err(e))?;
                let unterminated =
                    apply_forward(&mut chain, &bytes, end).map_err(|(offset, tamper)| self.damaged(offset, tamper))?;
                self.state = Some((chain, len));
                if unterminated {
                    self.terminate_last_record()?;
                }
            }
            _ if len == 0 => {
                // An empty file someone else created: start it.
                let line = genesis_line().map_err(|e| self.io_err(e))?;
                self.file.write_all(&line).map_err(|e| self.io_err(e))?;
                self.state = None;
                return self.refresh();
            }
            _ => {
                let (chain, unterminated) = load_tail(&self.file, len).map_err(|e| match e {
                    TailError::Io(e) => self.io_err(e),
                    TailError::Damaged(offset, tamper) => self.damaged(offset, tamper),
                })?;
                self.state = Some((chain, len));
                if unterminated {
                    self.terminate_last_record()?;
                }
            }
        }
        Ok(())
    }

    /// Writes the newline a whole last record is missing.
    fn terminate_last_record(&mut self) -> Result<(), LogError> {
        (&self.file).write_all(b"\n").map_err(|e| self.io_err(e))?;
        self.state.as_mut().expect("just set").1 += 1;
        Ok(())
    }

    fn damaged(&self, offset: u64, tamper: Tamper) -> LogError {
        LogError::Damaged { path: self.path.clone(), offset, tamper }
    }

    /// Writes `line` plus newline (prefixed by `lead`) with one `write()` and applies it.
    fn write_line(&mut self, lead: &[u8], line: &[u8]) -> Result<(), LogError> {
        let (chain, end) = self.state.as_mut().expect("refreshed under the lock");
        let mut bytes = Vec::with_capacity(lead.len() + line.len() + 1);
        bytes.extend_from_slice(lead);
        bytes.extend_from_slice(line);
        bytes.push(b'\n');
        let at = Position { line: 0, offset: *end + lead.len() as u64 };
        // A short write leaves a torn line; `end` no longer matches the file, so the
        // next append re-reads the tail and seals it.
        let written = (&self.file).write_all(&bytes);
        if let Err(e) = written {
            self.state = None;
            return Err(self.io_err(e));
        }
        *end += bytes.len() as u64;
        chain.apply(line, at).map_err(|tamper| {
            LogError::InvalidRecord(format!("the writer produced a line its verifier rejects: {}", tamper.problem))
        })
    }

    fn write_record(&mut self, record: &Record) -> Result<Appended, LogError> {
        let chain = self.chain();
        let seq = chain.next_seq;
        let line = record.to_line(seq, &chain.last_leaf);
        self.write_line(b"", &line)?;
        Ok(Appended { seq, leaf: self.chain().last_leaf })
    }

    fn write_checkpoint(&mut self) -> Result<SignedCheckpoint, LogError> {
        let (record, signed) = chain::checkpoint_record(self.chain(), self.options.signer.as_ref())
            .expect("a refreshed log has a genesis record");
        self.write_record(&record)?;
        Ok(signed)
    }

    fn seal_torn_tail(&mut self) -> Result<(), LogError> {
        let Some(torn) = self.chain().pending_torn.clone() else { return Ok(()) };
        let lead: &[u8] = if torn.terminated { b"" } else { b"\n" };
        if !torn.terminated {
            // The torn line now ends with the newline written before the seal.
            self.state.as_mut().expect("refreshed").0.pending_torn.as_mut().expect("pending").terminated = true;
        }
        let chain = self.chain();
        let line = chain::recovered_record(&torn).to_line(chain.next_seq, &chain.last_leaf);
        self.write_line(lead, &line)
    }
}

/// Checks what [`Record::to_line`] cannot guarantee by construction.
fn validate(record: &Record) -> Result<(), LogError> {
    if !is_valid_kind(&record.kind) {
        return Err(LogError::InvalidRecord(format!("kind {:?} is not dotted lower-case words", record.kind)));
    }
    if matches!(record.kind.as_str(), kind::GENESIS | kind::CHECKPOINT | kind::RECOVERED) {
        return Err(LogError::InvalidRecord(format!("{} records are written by the log itself", record.kind)));
    }
    let line = record.to_line(u64::MAX, &Hash::ZERO);
    if line.len() > MAX_LINE_LEN {
        return Err(LogError::RecordTooLarge(line.len()));
    }
    LogLine::parse(&line).map_err(|e| {
        LogError::InvalidRecord(format!("not canonical: {e} (keys are [A-Za-z0-9_.-], integers within ±(2^53-1))"))
    })?;
    Ok(())
}

fn genesis_line() -> io::Result<Vec<u8>> {
    let mut log_id = [0u8; 16];
    getrandom::fill(&mut log_id).map_err(|e| io::Error::other(format!("no system randomness for the log id: {e}")))?;
    let record = Record::new(kind::GENESIS)
        .with("format", Value::Int(FORMAT_VERSION))
        .with("hash", HASH_NAME)
        .with("log_id", canonical::hex(&log_id))
        .with("time_ns", Value::u64(super::record::unix_time_ns(std::time::SystemTime::now())));
    let mut line = record.to_line(0, &Hash::ZERO);
    line.push(b'\n');
    Ok(line)
}

/// Creates the log atomically: genesis is written and synced in a temporary file that
/// is then hard-linked into place, so no reader ever sees an empty or partial log, and
/// of two racing creators exactly one wins.
fn create_with_genesis(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name =
        path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the log path names no file"))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.new", std::process::id()));
    let temp = dir.join(temp_name);
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temp)?;
        file.write_all(&genesis_line()?)?;
        file.sync_data()?;
        match std::fs::hard_link(&temp, path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
            other => other?,
        }
        File::open(dir)?.sync_all()
    })();
    let _ = std::fs::remove_file(&temp);
    result
}

/// Applies complete and torn lines of `bytes` (which start at file offset `start`).
/// Returns whether the last line is a whole record that lacks only its newline (a
/// crash between the record's bytes and its terminator reaching the disk): such a
/// line is applied, and the caller must write the newline.
fn apply_forward(chain: &mut Chain, bytes: &[u8], start: u64) -> Result<bool, (u64, Tamper)> {
    let mut offset = 0usize;
    while offset < bytes.len() {
        let at = Position { line: 0, offset: start + offset as u64 };
        let rest = &bytes[offset..];
        let result = match rest.iter().position(|&b| b == b'\n') {
            Some(n) => {
                offset += n + 1;
                chain.apply(&rest[..n], at)
            }
            None => {
                offset = bytes.len();
                if LogLine::parse(rest).is_ok() {
                    let mut trial = chain.clone();
                    if trial.apply(rest, at).is_ok() {
                        *chain = trial;
                        return Ok(true);
                    }
                }
                chain.stash_torn(rest, at, false, "no newline at the end".into())
            }
        };
        result.map_err(|tamper| (at.offset, tamper))?;
    }
    Ok(false)
}

enum TailError {
    Io(io::Error),
    Damaged(u64, Tamper),
}

/// Rebuilds the chain state at the end of a log of `len` bytes from its tail.
fn load_tail(file: &File, len: u64) -> Result<(Chain, bool), TailError> {
    // Every launch opens the log here, and its last line is usually the checkpoint the
    // previous invocation ended with (about 1.5 KB): read a small chunk first, then
    // double up to 64 KiB, so a launch does not read and zero 64 KiB it never looks at.
    let mut chunk_len: u64 = 8 * 1024;
    const MAX_CHUNK: u64 = 64 * 1024;
    // `buf` holds file[start..len); its last `examined` bytes are whole lines already
    // looked at. Read backwards until a checkpoint line (or the file start) is found.
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    let mut examined = 0usize;
    loop {
        let mut end = buf.len() - examined;
        while end > 0 {
            // The line ending at `end` (its newline, if any, is buf[end - 1]).
            let line_start = match buf[..end - 1].iter().rposition(|&b| b == b'\n') {
                Some(newline) => newline + 1,
                None if start == 0 => 0,
                None => break,
            };
            let line = &buf[line_start..end];
            if let Ok(parsed) = LogLine::parse(line.strip_suffix(b"\n").unwrap_or(line))
                && parsed.kind() == kind::CHECKPOINT
                && let Some(mut chain) = Chain::resume_before(&parsed)
            {
                let unterminated = apply_forward(&mut chain, &buf[line_start..], start + line_start as u64)
                    .map_err(|(o, t)| TailError::Damaged(o, t))?;
                return Ok((chain, unterminated));
            }
            end = line_start;
        }
        examined = buf.len() - end;
        if start == 0 {
            let mut chain = Chain::new(None);
            let unterminated = apply_forward(&mut chain, &buf, 0).map_err(|(o, t)| TailError::Damaged(o, t))?;
            return Ok((chain, unterminated));
        }
        if end > MAX_LINE_LEN + 1 {
            let tamper = Tamper { line: 0, record: 0, problem: super::chain::Problem::LineTooLong };
            return Err(TailError::Damaged(start, tamper));
        }
        let n = chunk_len.min(start);
        chunk_len = (chunk_len * 2).min(MAX_CHUNK);
        start -= n;
        let mut chunk = vec![0u8; usize::try_from(n).expect("chunk fits")];
        file.read_exact_at(&mut chunk, start).map_err(TailError::Io)?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
    }
}

/// Reads the whole log; used by tools (`capsule log show`), never by appenders.
pub fn read_all(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}
