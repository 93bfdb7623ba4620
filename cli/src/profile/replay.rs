//! Replay: the command runs again as `capsule run --policy GENERATED` would run it,
//! that very command, traced by the profiler's own tracer (as `--within` traces it).
//! Two kinds of refusal are reported:
//!
//! - seccomp: the generated policy records denials, so every call its filter refuses
//!   is a `syscall.denied` record in the replay's private audit log, counted by name;
//! - Landlock: a path call (open, exec, mkdir, unlink, rename, link, truncate...)
//!   that failed with EACCES or EPERM (EXDEV for rename and link) under the policy
//!   and not while profiled, named with its path. A command that handles the error
//!   and exits 0 is reported all the same.
//!
//! The replay has the profile's `--timeout`: past it, the command and all its
//! descendants are killed, and the replay says so.

use super::record::{Profile, Recorder};
use super::trace;
use capsule_artifacts::Target;
use capsule_artifacts::log::canonical::Value;
use capsule_artifacts::log::record::{LogLine, kind};
use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A path call refused under the policy that succeeded (or was not made) while profiled.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Refusal {
    pub syscall: String,
    pub errno: String,
    pub path: PathBuf,
}

#[derive(Debug, Clone, Default)]
pub struct Replay {
    pub exit: i32,
    /// Syscall name → how many calls the filter refused.
    pub refused: BTreeMap<String, u64>,
    /// Path calls refused (Landlock) that were not refused while profiled.
    pub refused_paths: Vec<Refusal>,
    /// Killed at the timeout, with all its descendants.
    pub timed_out: bool,
    /// Why the command did not run under the policy, if it did not.
    pub failure: Option<String>,
}

impl Replay {
    /// Ran under the policy with the profiled exit status and nothing refused.
    pub fn ok(&self, expected: i32) -> bool {
        self.failure.is_none()
            && !self.timed_out
            && self.exit == expected
            && self.refused.is_empty()
            && self.refused_paths.is_empty()
    }
}

pub struct ReplayOptions<'a> {
    /// The capsule binary (this one).
    pub capsule: &'a Path,
    pub workspace: &'a Path,
    pub quiet: bool,
    pub timeout: Duration,
    pub target: Target,
}

/// Runs `argv` under the policy `source` in the workspace; `profiled` is the command's
/// profile, whose own refusals are not reported again.
pub fn replay(source: &str, argv: &[String], options: &ReplayOptions<'_>, profiled: &Profile) -> Replay {
    let failed = |message: String| Replay {
        exit: capsule_launch::EXIT_SETUP_FAILURE,
        failure: Some(message),
        ..Replay::default()
    };
    if capsule_compiler::front::check_bytes(source.as_bytes()).has_errors() {
        return failed("the generated policy does not compile".into());
    }
    let dir = match tempfile::Builder::new().prefix("capsule-replay-").tempdir() {
        Ok(d) => d,
        Err(e) => return failed(format!("cannot create a private directory: {e}")),
    };
    let policy = dir.path().join("policy.capsule.yaml");
    let log = dir.path().join("replay.log");
    if let Err(e) = std::fs::write(&policy, source) {
        return failed(format!("cannot write the policy to {}: {e}", policy.display()));
    }
    let mut run_argv: Vec<String> = ["capsule", "run", "--policy"].map(str::to_owned).to_vec();
    for arg in [&policy, Path::new("--workspace"), options.workspace, Path::new("--log"), &log] {
        run_argv.push(arg.to_string_lossy().into_owned());
    }
    run_argv.push("--".to_owned());
    run_argv.extend(argv.iter().cloned());

    // Only the calls that name paths (and exec, clone...) stop: the filter lets the
    // others through, so a replay costs little more than an untraced run.
    let known: Vec<u32> = capsule_compiler::tables::table(options.target)
        .syscalls
        .iter()
        .filter(|d| !super::ALWAYS_TRACED.contains(&d.name()))
        .map(|d| d.nr)
        .collect();
    let mut recorder = Recorder::new(options.target);
    recorder.gate_below_root();
    let traced = trace::trace(
        trace::TraceOptions {
            program: options.capsule,
            argv: &run_argv,
            cwd: options.workspace,
            quiet: options.quiet,
            timeout: options.timeout,
            known: &known,
            full_env: true,
            progress: &mut |_| {},
        },
        &mut recorder,
    );
    let seen = recorder.finish();
    let traced = match traced {
        Ok(t) => t,
        Err(e) => return failed(format!("could not be traced: {e}")),
    };
    let exit = traced.exit.code();
    if seen.processes == 0 && !traced.timed_out {
        // `capsule run` ended before it exec'd the command: it refused to run it.
        return failed(format!("`capsule run` did not start the command (exit {exit}; its message is above)"));
    }
    let refused_paths = seen
        .refusals
        .iter()
        .filter(|r| !profiled.refusals.contains(*r))
        .map(|(syscall, errno, path)| Refusal { syscall: syscall.clone(), errno: errno.clone(), path: path.clone() })
        .collect();
    Replay { exit, refused: denials(&log), refused_paths, timed_out: traced.timed_out, failure: None }
}

/// The `syscall.denied` records of the replay's log, counted by syscall name.
fn denials(log: &Path) -> BTreeMap<String, u64> {
    let mut refused = BTreeMap::new();
    let Ok(file) = std::fs::File::open(log) else { return refused };
    for line in std::io::BufReader::new(file).split(b'\n').map_while(Result::ok) {
        let Ok(record) = LogLine::parse(&line) else { continue };
        if record.kind() != kind::SYSCALL_DENIED {
            continue;
        }
        let name = match (record.get("name").and_then(Value::as_str), record.get("nr").and_then(Value::as_int)) {
            (Some(name), _) => name.to_owned(),
            (None, Some(nr)) => format!("#{nr}"),
            (None, None) => "other syscalls".to_owned(),
        };
        let count = record.get("count").and_then(Value::as_u64_str).unwrap_or(1);
        *refused.entry(name).or_default() += count;
    }
    refused
}
