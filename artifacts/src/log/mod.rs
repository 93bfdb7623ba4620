//! The audit log: format, writer, verifier and proofs.
//!
//! `capsule.log` is JSON Lines, one canonical record a line ([`canonical`],
//! [`record`]); each record names the previous record's leaf hash, and the records
//! are the leaves of an RFC 9162 Merkle tree ([`merkle`]) whose root is written into
//! the log as C2SP checkpoints, optionally Ed25519-signed ([`note`]). The writer
//! ([`writer`]) appends under `flock`; the verifier ([`verify`]) checks a whole log in
//! one streaming pass; [`proof`] makes and checks inclusion and consistency proofs;
//! [`aggregate`] keeps a storm of denied syscalls from filling the disk.
//! docs/audit-log.md is the specification.

pub mod aggregate;
pub mod canonical;
pub mod chain;
pub mod merkle;
pub mod note;
pub mod proof;
pub mod record;
pub mod verify;
pub mod writer;

pub use aggregate::SyscallAggregator;
pub use canonical::Value;
pub use chain::Problem;
pub use merkle::Hash;
pub use note::{Checkpoint, NoteSigner, NoteVerifier, SignedCheckpoint};
pub use record::{
    ConnectionEvent, ExitStatus, InvocationEnd, InvocationRefused, InvocationStart, LogLine, Record, SyscallEvent,
};
pub use verify::{Report, Verdict, VerifyOptions, verify};
pub use writer::{Appended, Durability, LogError, LogWriter, WriterOptions};

/// The `format` of `log.genesis`; bumped on any incompatible change.
pub const FORMAT_VERSION: i64 = 1;
/// The tree hash named in `log.genesis`.
pub const HASH_NAME: &str = "blake3";
/// Checkpoint origins are this prefix followed by the log id.
pub const ORIGIN_PREFIX: &str = "capsule.log/";
/// No record line is longer (the writer refuses, the verifier rejects).
pub const MAX_LINE_LEN: usize = 1 << 20;
/// The default log's file name, in the per-user state directory
/// (`$XDG_STATE_HOME/capsule/`, else `~/.local/state/capsule/`; see
/// `capsule_launch::audit::default_log_path`), and the default of a policy's `audit: log:`.
pub const DEFAULT_LOG_PATH: &str = "capsule.log";
