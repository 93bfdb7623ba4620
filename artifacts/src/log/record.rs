//! Records: what one line of the log says.
//!
//! A line is the canonical JSON object
//! `{"data":{...},"kind":"<kind>","prev":"<64 hex>","seq":"<decimal>"}`: the
//! envelope (`kind`, `prev`, `seq`) is the same for every kind and is what the chain
//! and the verifier need; `data` holds the kind's fields. The writer fills in `seq`
//! and `prev`; callers build a [`Record`] (kind + data) with the constructors here or,
//! for the SDK's free-form kinds, with [`Record::new`] and [`Record::with`].

use super::canonical::{self, CanonicalError, Object, Value};
use super::merkle::Hash;

/// Record kinds the verifier and writer give meaning to; other kinds are carried as is.
pub mod kind {
    pub const GENESIS: &str = "log.genesis";
    pub const RECOVERED: &str = "log.recovered";
    pub const CHECKPOINT: &str = "checkpoint";
    pub const INVOCATION_START: &str = "invocation.start";
    pub const INVOCATION_END: &str = "invocation.end";
    pub const INVOCATION_REFUSED: &str = "invocation.refused";
    pub const SYSCALL_DENIED: &str = "syscall.denied";
    pub const SYSCALL_AUDITED: &str = "syscall.audited";
    pub const TOOL_CALL: &str = "tool.call";
    pub const TOOL_RESULT: &str = "tool.result";
    pub const NETWORK_CONNECTION: &str = "network.connection";
}

/// A record before the writer places it in the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub kind: String,
    pub data: Object,
}

impl Record {
    pub fn new(kind: impl Into<String>) -> Record {
        Record { kind: kind.into(), data: Object::new() }
    }

    /// Adds or replaces one field of `data`.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Record {
        self.data.insert(key.to_owned(), value.into());
        self
    }

    /// The canonical line (without newline) for this record at `seq` after `prev`.
    pub fn to_line(&self, seq: u64, prev: &Hash) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"{\"data\":");
        canonical::write_object(&self.data, &mut out);
        out.extend_from_slice(b",\"kind\":");
        Value::Str(self.kind.clone()).write_canonical(&mut out);
        out.extend_from_slice(b",\"prev\":\"");
        out.extend_from_slice(prev.to_hex().as_bytes());
        out.extend_from_slice(b"\",\"seq\":\"");
        out.extend_from_slice(seq.to_string().as_bytes());
        out.extend_from_slice(b"\"}");
        out
    }
}

/// A parsed, canonical record line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub seq: u64,
    pub prev: Hash,
    pub record: Record,
}

impl LogLine {
    /// Parses one line (without newline), accepting only the canonical form with
    /// exactly the envelope keys.
    pub fn parse(line: &[u8]) -> Result<LogLine, CanonicalError> {
        let envelope = Envelope::parse(line)?;
        let data = canonical::parse_object(envelope.data)?;
        Ok(LogLine { seq: envelope.seq, prev: envelope.prev, record: Record { kind: envelope.kind.to_owned(), data } })
    }

    pub fn kind(&self) -> &str {
        &self.record.kind
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.record.data.get(key)
    }
}

/// A record line checked for canonical form, with its envelope decoded and its data
/// left as (validated) bytes: what the verifier needs for most records, allocation-free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub seq: u64,
    pub prev: Hash,
    pub kind: &'a str,
    /// The canonical `data` object's bytes.
    pub data: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// The envelope's keys and their order are fixed, so its canonical form is a
    /// fixed byte pattern around the data object, the kind, the hash and the number.
    pub fn parse(line: &'a [u8]) -> Result<Envelope<'a>, CanonicalError> {
        let mut at = 0;
        let literal = |bytes: &[u8], at: &mut usize, message| {
            if line[*at..].starts_with(bytes) {
                *at += bytes.len();
                Ok(())
            } else {
                Err(CanonicalError { offset: *at, message })
            }
        };
        let field = |at: &mut usize, message| {
            let len = line[*at..].iter().position(|&b| b == b'"').ok_or(CanonicalError { offset: *at, message })?;
            let text =
                std::str::from_utf8(&line[*at..*at + len]).map_err(|_| CanonicalError { offset: *at, message })?;
            *at += len;
            Ok::<&'a str, CanonicalError>(text)
        };
        literal(b"{\"data\":", &mut at, "a record starts with {\"data\":")?;
        let data_len = canonical::object_len(&line[at..])
            .map_err(|e| CanonicalError { offset: at + e.offset, message: e.message })?;
        let data = &line[at..at + data_len];
        at += data_len;
        literal(b",\"kind\":\"", &mut at, "expected ,\"kind\":\" after the data")?;
        let kind_at = at;
        let kind = field(&mut at, "unterminated kind")?;
        if !is_valid_kind(kind) {
            return Err(CanonicalError { offset: kind_at, message: "\"kind\" must be dotted lower-case words" });
        }
        literal(b"\",\"prev\":\"", &mut at, "expected ,\"prev\":\" after the kind")?;
        let prev = field(&mut at, "unterminated prev").ok().and_then(Hash::from_hex);
        let prev = prev.ok_or(CanonicalError { offset: at, message: "\"prev\" must be 64 lower-case hex digits" })?;
        literal(b"\",\"seq\":\"", &mut at, "expected ,\"seq\":\" after prev")?;
        let seq = field(&mut at, "unterminated seq").ok().and_then(canonical::parse_canonical_u64);
        let seq = seq.ok_or(CanonicalError { offset: at, message: "\"seq\" must be a canonical decimal string" })?;
        literal(b"\"}", &mut at, "expected \"} after seq")?;
        if at != line.len() {
            return Err(CanonicalError { offset: at, message: "trailing bytes after the record" });
        }
        Ok(Envelope { seq, prev, kind, data })
    }
}

/// `[a-z0-9_]+` words joined by dots.
pub fn is_valid_kind(kind: &str) -> bool {
    !kind.is_empty()
        && kind.split('.').all(|word| {
            !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

/// Nanoseconds since the Unix epoch, as the records store time.
pub fn unix_time_ns(time: std::time::SystemTime) -> u64 {
    // Before 1970 only on a badly wrong clock; record 0 rather than fail the audit.
    time.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn now_ns() -> u64 {
    unix_time_ns(std::time::SystemTime::now())
}

/// `invocation.start`: written by the launcher before the command runs.
#[derive(Clone, Debug)]
pub struct InvocationStart {
    pub argv: Vec<Vec<u8>>,
    pub cwd: Vec<u8>,
    pub policy: String,
    /// The manifest's BLAKE3 pin (hex).
    pub manifest_pin: String,
    pub pid: u32,
    pub uid: u32,
    pub user: Option<String>,
    pub time_ns: u64,
}

impl InvocationStart {
    /// The current process's pid, uid and time; fill in argv, cwd, policy, pin and
    /// the user's name (the launcher's `invoking_user`).
    pub fn now(
        argv: Vec<Vec<u8>>,
        cwd: Vec<u8>,
        policy: String,
        manifest_pin: String,
        user: Option<String>,
    ) -> InvocationStart {
        InvocationStart {
            argv,
            cwd,
            policy,
            manifest_pin,
            pid: std::process::id(),
            uid: rustix::process::getuid().as_raw(),
            user,
            time_ns: now_ns(),
        }
    }
}

impl From<&InvocationStart> for Record {
    fn from(s: &InvocationStart) -> Record {
        Record::new(kind::INVOCATION_START)
            .with("argv", Value::Array(s.argv.iter().map(|a| Value::bytes(a)).collect()))
            .with("cwd", Value::bytes(&s.cwd))
            .with("policy", s.policy.as_str())
            .with("manifest_pin", s.manifest_pin.as_str())
            .with("pid", s.pid)
            .with("uid", s.uid)
            .with("user", s.user.clone().map_or(Value::Null, Value::Str))
            .with("time_ns", Value::u64(s.time_ns))
    }
}

/// `invocation.refused`: a command that was not run because its sandbox could not be
/// set up as pinned (a tampered or unpinned artifact, a policy with errors). Written in
/// place of `invocation.start`; no `invocation.end` follows.
#[derive(Clone, Debug)]
pub struct InvocationRefused {
    pub argv: Vec<Vec<u8>>,
    pub cwd: Vec<u8>,
    /// Why, in the words the launcher printed.
    pub reason: String,
    /// What was to be loaded: the manifest or policy path as given.
    pub source: Vec<u8>,
    /// The pin the caller required, if any.
    pub expected_pin: Option<String>,
    pub pid: u32,
    pub uid: u32,
    pub user: Option<String>,
    pub time_ns: u64,
}

impl InvocationRefused {
    /// The current process's pid, uid and time; fill in the rest.
    pub fn now(
        argv: Vec<Vec<u8>>,
        cwd: Vec<u8>,
        reason: String,
        source: Vec<u8>,
        expected_pin: Option<String>,
        user: Option<String>,
    ) -> InvocationRefused {
        InvocationRefused {
            argv,
            cwd,
            reason,
            source,
            expected_pin,
            pid: std::process::id(),
            uid: rustix::process::getuid().as_raw(),
            user,
            time_ns: now_ns(),
        }
    }
}

impl From<&InvocationRefused> for Record {
    fn from(r: &InvocationRefused) -> Record {
        Record::new(kind::INVOCATION_REFUSED)
            .with("argv", Value::Array(r.argv.iter().map(|a| Value::bytes(a)).collect()))
            .with("cwd", Value::bytes(&r.cwd))
            .with("reason", r.reason.as_str())
            .with("source", Value::bytes(&r.source))
            .with("expected_pin", r.expected_pin.clone().map_or(Value::Null, Value::Str))
            .with("pid", r.pid)
            .with("uid", r.uid)
            .with("user", r.user.clone().map_or(Value::Null, Value::Str))
            .with("time_ns", Value::u64(r.time_ns))
    }
}

/// How the command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
    /// The launcher failed before or while starting the command (exit 125/126/127).
    LaunchFailed(i32),
}

/// `invocation.end`: written by the launcher after the command ends.
#[derive(Clone, Debug)]
pub struct InvocationEnd {
    /// The seq of this invocation's `invocation.start`.
    pub invocation: u64,
    pub status: ExitStatus,
    /// Why capsule itself failed, when it did.
    pub error: Option<String>,
    pub duration_ns: u64,
    pub user_time_us: u64,
    pub sys_time_us: u64,
    pub max_rss_kib: u64,
    pub time_ns: u64,
}

impl From<&InvocationEnd> for Record {
    fn from(e: &InvocationEnd) -> Record {
        let (key, n) = match e.status {
            ExitStatus::Code(code) => ("exit_code", code),
            ExitStatus::Signal(signal) => ("signal", signal),
            ExitStatus::LaunchFailed(code) => ("launch_failed", code),
        };
        let mut record = Record::new(kind::INVOCATION_END)
            .with("invocation", Value::u64(e.invocation))
            .with(key, n)
            .with("duration_ns", Value::u64(e.duration_ns))
            .with("user_time_us", Value::u64(e.user_time_us))
            .with("sys_time_us", Value::u64(e.sys_time_us))
            .with("max_rss_kib", Value::u64(e.max_rss_kib))
            .with("time_ns", Value::u64(e.time_ns));
        if let Some(error) = &e.error {
            record = record.with("error", error.as_str());
        }
        record
    }
}

/// One denied or audited system call as the supervisor saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyscallEvent {
    pub invocation: u64,
    /// `syscall.denied` or `syscall.audited`.
    pub kind: &'static str,
    /// The syscall's name, when the writer has a syscall table (`capsule run` does;
    /// `capsule-launch` links none and writes `null`: readers resolve `nr` and `arch`).
    pub name: Option<String>,
    pub nr: u32,
    /// The target name, e.g. `linux-x86_64` or `linux-i386`.
    pub arch: String,
    pub args: [u64; 6],
    pub pid: u32,
    /// The policy action, e.g. `errno:EPERM`, `kill`, `log`.
    pub action: String,
}

impl From<&SyscallEvent> for Record {
    fn from(e: &SyscallEvent) -> Record {
        Record::new(e.kind)
            .with("invocation", Value::u64(e.invocation))
            .with("name", e.name.clone().map_or(Value::Null, Value::Str))
            .with("nr", e.nr)
            .with("arch", e.arch.as_str())
            .with("args", Value::Array(e.args.iter().map(|a| Value::hex64(*a)).collect()))
            .with("pid", e.pid)
            .with("action", e.action.as_str())
            .with("count", Value::u64(1))
    }
}

/// One connection attempt through the launcher's proxy (`network.connection`).
/// Header values never appear: only the names of the headers a route added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionEvent {
    pub invocation: u64,
    /// `CONNECT`, `GET`, ... as the command sent it.
    pub method: String,
    /// The name (or address) asked for, as the command wrote it (lower case).
    pub host: String,
    pub port: u16,
    /// The address connected to (or refused), `ip:port`.
    pub address: Option<String>,
    /// `allowed` or `refused`.
    pub verdict: &'static str,
    /// Why it was refused: `not-listed`, `private-address`, `sni-mismatch`, ...
    pub reason: Option<String>,
    /// Bytes from the command to the upstream, and back.
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub duration_ns: u64,
    /// The route's prefix, for a route.
    pub route: Option<String>,
    /// The names of the headers the route added.
    pub injected_headers: Vec<String>,
    pub time_ns: u64,
}

impl From<&ConnectionEvent> for Record {
    fn from(e: &ConnectionEvent) -> Record {
        let opt = |v: &Option<String>| v.clone().map_or(Value::Null, Value::Str);
        Record::new(kind::NETWORK_CONNECTION)
            .with("invocation", Value::u64(e.invocation))
            .with("method", e.method.as_str())
            .with("host", e.host.as_str())
            .with("port", u32::from(e.port))
            .with("address", opt(&e.address))
            .with("verdict", e.verdict)
            .with("reason", opt(&e.reason))
            .with("bytes_up", Value::u64(e.bytes_up))
            .with("bytes_down", Value::u64(e.bytes_down))
            .with("duration_ns", Value::u64(e.duration_ns))
            .with("route", opt(&e.route))
            .with("injected_headers", Value::Array(e.injected_headers.iter().map(|h| Value::Str(h.clone())).collect()))
            .with("time_ns", Value::u64(e.time_ns))
    }
}

/// `tool.call` / `tool.result` for the Python SDK: caller-chosen canonical fields.
pub fn tool_record(kind: &str, invocation: Option<u64>, fields: Object) -> Record {
    let mut record = Record { kind: kind.to_owned(), data: fields };
    if let Some(invocation) = invocation {
        record = record.with("invocation", Value::u64(invocation));
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_round_trips_and_envelope_is_strict() {
        let record = Record::new("tool.call").with("name", "fetch").with("n", 3);
        let line = record.to_line(7, &Hash([0xab; 32]));
        let parsed = LogLine::parse(&line).unwrap();
        assert_eq!((parsed.seq, parsed.prev, &parsed.record), (7, Hash([0xab; 32]), &record));

        let text = String::from_utf8(line).unwrap();
        for bad in [
            text.replace("\"seq\":\"7\"", "\"seq\":\"07\""),
            text.replace("\"seq\":\"7\"", "\"seq\":7"),
            text.replace("\"kind\":\"tool.call\"", "\"kind\":\"Tool\""),
            text.replace("abab", "ABAB"),
            text.replace("}", ",\"x\":1}"),
        ] {
            assert!(LogLine::parse(bad.as_bytes()).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn a_syscall_without_a_known_name_records_null() {
        let event = SyscallEvent {
            invocation: 5,
            kind: kind::SYSCALL_DENIED,
            name: None,
            nr: 101,
            arch: "linux-x86_64".into(),
            args: [16, 1, 0, 0, 0, u64::MAX],
            pid: 42,
            action: "errno:1".into(),
        };
        let line = String::from_utf8(Record::from(&event).to_line(9, &Hash::ZERO)).unwrap();
        assert!(line.contains("\"name\":null"), "{line}");
        assert!(line.contains("\"args\":[\"0x10\",\"0x1\",\"0x0\",\"0x0\",\"0x0\",\"0xffffffffffffffff\"]"), "{line}");
        assert!(LogLine::parse(line.as_bytes()).is_ok());
    }
}
