//! `capsule._native`: the Rust half of the Python SDK.
//!
//! Every function here is a thin adapter over the crates the command line uses: the
//! front-end checks policies, the build and its cache compile them, `capsule run`'s own
//! code launches commands, and the audit log's writer and verifier handle records. The
//! pure-Python package (`python/capsule/`) holds the decorator, the worker and the
//! types; nothing here re-implements a parser or a sandbox.

use capsule_artifacts::log::canonical::{Object, Value};
use capsule_artifacts::log::record::{Record, tool_record};
use capsule_artifacts::log::verify::{Verdict, VerifyOptions, verify as verify_log};
use capsule_artifacts::log::writer::Durability;
use capsule_artifacts::log::writer::LogWriter;
use capsule_compiler::diagnostic::{self, SourceFile};
use capsule_compiler::front::Format;
use clap::Parser;
use pyo3::exceptions::{PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyInt, PyList, PyString, PyTuple};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;

/// Diagnostics of one policy source, as `capsulec check --format json` gives them,
/// each with `rendered`: the text `capsulec check` prints for it.
#[pyfunction]
#[pyo3(signature = (source, name))]
fn check(py: Python<'_>, source: &[u8], name: &str) -> PyResult<Py<PyAny>> {
    let checked = capsule_compiler::check_policy(source, Format::from_path(name));
    let text = String::from_utf8_lossy(source);
    let file = SourceFile { name, text: &text };
    let mut json = diagnostic::to_json(&checked.diagnostics, &file);
    if let Some(items) = json.get_mut("diagnostics").and_then(|d| d.as_array_mut()) {
        for (item, d) in items.iter_mut().zip(&checked.diagnostics) {
            let rendered = diagnostic::render_plain(std::slice::from_ref(d), &file);
            item["rendered"] = serde_json::Value::String(rendered);
        }
    }
    json["rendered"] = serde_json::Value::String(diagnostic::render_plain(&checked.diagnostics, &file));
    to_python(py, &json)
}

/// The built-in default policy of `capsule run`, as YAML.
#[pyfunction]
fn default_policy() -> &'static str {
    capsule_cli::run::DEFAULT_POLICY
}

/// Compiles `source` through `capsule run`'s cache; returns `(artifact_dir, pin,
/// log_path)`. The log is the policy's `audit: log:` resolved as `capsule run` does
/// it for `workspace`.
#[pyfunction]
#[pyo3(signature = (source, name, workspace))]
fn build(py: Python<'_>, source: &[u8], name: &str, workspace: PathBuf) -> PyResult<(PathBuf, String, PathBuf)> {
    py.detach(|| {
        let target = capsule_artifacts::Target::host()
            .ok_or_else(|| PyOSError::new_err("this host is not a platform capsule supports"))?;
        let root = capsule_cli::cache::cache_root()
            .ok_or_else(|| PyOSError::new_err("capsule's cache directory cannot be located (is HOME set?)"))?;
        let format = Format::from_path(name);
        let dir = root.join(capsule_cli::cache::key(source));
        let (artifact, _) = capsule_cli::cache::load_or_build(source, format, &dir, target)
            .map_err(|e| PyValueError::new_err(format!("{e:#}")))?;
        let log =
            capsule_launch::audit::policy_log_path(artifact.launch(), Some(&workspace)).map_err(PyOSError::new_err)?;
        Ok((dir, artifact.pin.clone(), log))
    })
}

#[derive(Parser)]
#[command(name = "capsule run", no_binary_name = true)]
struct RunCommand {
    #[command(flatten)]
    args: capsule_cli::run::RunArgs,
}

/// `capsule run ARGS...` in this process, returning its exit code. Call it only from
/// a process of its own (the SDK's launcher process): the launch forks without fork's
/// handlers and must be the only thread.
#[pyfunction]
fn run_cli(py: Python<'_>, args: Vec<String>) -> PyResult<i32> {
    let parsed = RunCommand::try_parse_from(&args).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(py.detach(|| capsule_cli::run::run(parsed.args)))
}

/// The JSON form of a policy without errors (`capsulec convert --to json`);
/// ValueError with the rendered diagnostics otherwise.
#[pyfunction]
fn to_json(source: &[u8], name: &str) -> PyResult<String> {
    capsule_compiler::front::convert::to_json_bytes(source, Format::from_path(name)).map_err(|diagnostics| {
        let text = String::from_utf8_lossy(source);
        PyValueError::new_err(diagnostic::render_plain(&diagnostics, &SourceFile { name, text: &text }))
    })
}

/// The JSON Schema of the policy language (`capsulec schema`).
#[pyfunction]
fn schema() -> String {
    capsule_compiler::front::schema::json_schema_string()
}

/// Where `capsule run` caches compiled artifacts (the SDK keeps policy files there).
#[pyfunction]
fn cache_root() -> PyResult<PathBuf> {
    capsule_cli::cache::cache_root()
        .ok_or_else(|| PyOSError::new_err("capsule's cache directory cannot be located (is HOME set?)"))
}

/// The per-user default log (`$XDG_STATE_HOME/capsule/capsule.log`, else under HOME).
#[pyfunction]
fn default_log_path() -> PyResult<PathBuf> {
    capsule_launch::audit::default_log_path().map_err(PyOSError::new_err)
}

/// Verifies a log as `capsule verify` does: a dict with `status`, `exit_code`,
/// `records`, `first_bad` and `reason`.
#[pyfunction]
fn verify(py: Python<'_>, log: PathBuf) -> PyResult<Py<PyAny>> {
    let report = py.detach(|| verify_log(&log, &VerifyOptions::default()));
    let (status, first_bad, reason) = match &report.verdict {
        Verdict::Intact => ("intact", None, None),
        Verdict::Tampered { record, reason, .. } => ("tampered", Some(*record), Some(reason.to_string())),
        Verdict::Unreadable { reason } => ("unreadable", None, Some(reason.clone())),
        Verdict::Incomplete { intact_records, torn_bytes } => (
            "incomplete",
            Some(*intact_records),
            Some(format!("a torn last line of {torn_bytes} bytes after {intact_records} intact records")),
        ),
    };
    let json = serde_json::json!({
        "status": status,
        "exit_code": report.verdict.exit_code(),
        "records": report.records,
        "first_bad": first_bad,
        "reason": reason,
    });
    to_python(py, &json)
}

/// Open logs, kept between appends: opening re-reads the whole chain, an append only
/// what other writers added since. A log replaced on disk (another inode) is reopened.
static WRITERS: Mutex<BTreeMap<PathBuf, (LogWriter, (u64, u64))>> = Mutex::new(BTreeMap::new());

fn file_id(path: &std::path::Path) -> std::io::Result<(u64, u64)> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

/// Appends `tool.call` / `tool.result` records (`(kind, invocation, fields)` each) to
/// the log at `log` under one lock; with `sync`, one `fdatasync` covers them. Returns
/// their sequence numbers.
#[pyfunction]
#[pyo3(signature = (log, records, sync = false))]
fn append_tool_records(
    py: Python<'_>,
    log: PathBuf,
    records: Vec<(String, Option<u64>, Bound<'_, PyDict>)>,
    sync: bool,
) -> PyResult<Vec<u64>> {
    let records: Vec<Record> = records
        .into_iter()
        .map(|(kind, invocation, fields)| {
            if kind != "tool.call" && kind != "tool.result" {
                return Err(PyValueError::new_err(format!("the SDK writes tool.call and tool.result, not {kind}")));
            }
            let Value::Object(fields) = to_value(fields.as_any())? else {
                unreachable!("a dict converts to an object")
            };
            Ok(tool_record(&kind, invocation, fields))
        })
        .collect::<PyResult<_>>()?;
    let durability = if sync { Durability::Sync } else { Durability::Buffered };
    py.detach(|| {
        let mut writers = WRITERS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = file_id(&log).ok();
        let reuse = matches!((writers.get(&log), current), (Some((_, id)), Some(now)) if *id == now);
        if !reuse {
            writers.remove(&log);
            let writer = capsule_launch::audit::open_log(&log).map_err(PyOSError::new_err)?;
            let id = file_id(&log).map_err(|e| PyOSError::new_err(format!("{}: {e}", log.display())))?;
            writers.insert(log.clone(), (writer, id));
        }
        let (writer, _) = writers.get_mut(&log).expect("inserted above");
        match writer.append_all(&records, durability) {
            Ok(appended) => Ok(appended.into_iter().map(|a| a.seq).collect()),
            Err(e) => {
                writers.remove(&log);
                Err(PyOSError::new_err(format!("cannot append to the audit log: {e}")))
            }
        }
    })
}

/// The system call the seccomp filter killed process `pid` for, from the kernel's log
/// of seccomp actions (`/dev/kmsg`, the audit record of type 1326): `(nr, name)`.
/// `None` when the log cannot be read (it needs CAP_SYSLOG where dmesg_restrict is
/// set, and auditd, when running, takes the records) or holds no such record. Only
/// records logged at or after `since_us` (the kernel's clock, microseconds since boot,
/// as CLOCK_MONOTONIC) count, so a reused pid is not confused with an older process.
#[pyfunction]
fn seccomp_kill(py: Python<'_>, pid: u32, since_us: u64) -> Option<(u32, Option<String>)> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    py.detach(|| {
        let mut kmsg = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open("/dev/kmsg").ok()?;
        let needle = format!(" pid={pid} ");
        let mut found = None;
        let mut record = vec![0u8; 8192];
        // One record per read; EAGAIN at the end of the buffer, EPIPE when a record
        // was overwritten while reading (skip it and go on).
        loop {
            let n = match kmsg.read(&mut record) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(_) => break,
            };
            let text = String::from_utf8_lossy(&record[..n]);
            let Some((prefix, message)) = text.split_once(';') else { continue };
            let at: u64 = prefix.split(',').nth(2).and_then(|t| t.parse().ok()).unwrap_or(0);
            if at < since_us
                || !message.contains("type=1326")
                || !message.contains(&needle)
                || !message.contains(" sig=31 ")
            {
                continue;
            }
            let field = |name: &str| message.split_whitespace().find_map(|w| w.strip_prefix(name)).map(str::to_owned);
            let arch = field("arch=").and_then(|a| u32::from_str_radix(&a, 16).ok());
            let nr = field("syscall=").and_then(|n| n.parse::<u32>().ok());
            if let (Some(arch), Some(nr)) = (arch, nr) {
                found = Some((nr, capsule_cli::run::syscall_name(arch, nr).map(str::to_owned)));
            }
        }
        found
    })
}

/// The Blake3 digest of `data`, as hex (what the records hold for arguments and results).
#[pyfunction]
fn blake3_hex(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

/// Python → a canonical log value: None, bool, int (within the safe range; larger
/// as a decimal string), str, list/tuple, dict with str keys.
fn to_value(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        return Ok(match obj.extract::<i64>() {
            Ok(n) if n.unsigned_abs() <= capsule_artifacts::log::canonical::MAX_SAFE_INT.unsigned_abs() => {
                Value::Int(n)
            }
            _ => Value::Str(obj.str()?.to_string()),
        });
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::Str(s.extract::<String>()?));
    }
    if let Ok(list) = obj.cast::<PyList>() {
        return list.iter().map(|item| to_value(&item)).collect::<PyResult<_>>().map(Value::Array);
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        return tuple.iter().map(|item| to_value(&item)).collect::<PyResult<_>>().map(Value::Array);
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        let mut object = Object::new();
        for (key, value) in dict.iter() {
            let key: String = key.extract().map_err(|_| PyTypeError::new_err("record keys are strings"))?;
            object.insert(key, to_value(&value)?);
        }
        return Ok(Value::Object(object));
    }
    Err(PyTypeError::new_err(format!("a log record cannot hold a {}", obj.get_type().name()?)))
}

fn to_python(py: Python<'_>, value: &serde_json::Value) -> PyResult<Py<PyAny>> {
    let json = py.import("json")?;
    let text = serde_json::to_string(value).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(json.call_method1("loads", (text,))?.unbind())
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(check, m)?)?;
    m.add_function(wrap_pyfunction!(default_policy, m)?)?;
    m.add_function(wrap_pyfunction!(build, m)?)?;
    m.add_function(wrap_pyfunction!(run_cli, m)?)?;
    m.add_function(wrap_pyfunction!(default_log_path, m)?)?;
    m.add_function(wrap_pyfunction!(verify, m)?)?;
    m.add_function(wrap_pyfunction!(append_tool_records, m)?)?;
    m.add_function(wrap_pyfunction!(blake3_hex, m)?)?;
    m.add_function(wrap_pyfunction!(to_json, m)?)?;
    m.add_function(wrap_pyfunction!(schema, m)?)?;
    m.add_function(wrap_pyfunction!(cache_root, m)?)?;
    m.add_function(wrap_pyfunction!(seccomp_kill, m)?)?;
    m.add("COMPILER_ID", capsule_compiler::build::compiler_id())?;
    Ok(())
}
