//! capsule-launch: apply a pinned artifact and run a command as its parent.
//!
//! [`launch`] is the one code path for the `capsule-launch` binary and `capsule run`.
//! It takes an artifact that [`capsule_artifacts::manifest::load_pinned`] verified and,
//! in order: resolves the command on the clean environment's PATH and checks its
//! machine, resolves path variables, checks the kernel's Landlock ABI, then starts the
//! child, which calls setsid, applies Landlock and rlimits, sets no_new_privs,
//! installs the seccomp filter and execs. The parent forwards SIGINT, SIGTERM and
//! SIGHUP, answers seccomp notifications through a [`Supervisor`], and returns the
//! command's status as an exit code.
//!
//! Nothing the command starts outlives it: for the launch the launcher is the child
//! subreaper, so descendants whose parent dies become its children, and once the
//! command has ended (or was stopped) every one still alive is killed with SIGKILL and
//! reaped before the outcome, and so `invocation.end`, is produced. SIGCHLD is set to
//! its default action for the launch (an inherited "ignore" would lose the status).
//!
//! With a log ([`LaunchOptions::log`]) the launch is audited ([`audit`]): the log path
//! is checked against the writable paths before anything runs, `invocation.start` is
//! synced before the command starts, notified calls are recorded before they are
//! answered, and `invocation.end` plus a checkpoint follow.
//!
//! That is the Linux launch (`linux.rs`). On macOS, [`launch`] runs the artifact's
//! pinned `macos.sb` through `/usr/bin/sandbox-exec` instead ([`macos`]); the Linux
//! modules and dependencies (seccompiler, landlock) are built on Linux only.
//!
//! API boundary: this crate links no YAML parser, no pest and no compiler
//! (tests/dependency_tree.rs checks it).
//!
//! Fails closed: if any step cannot be done as the manifest demands, the command does
//! not run and the outcome carries exit code 125 (126, 127 for an unusable or missing
//! command) and the reason.

pub mod args;
pub mod audit;
#[cfg(target_os = "linux")]
mod child;
pub mod cli;
pub mod command;
#[cfg(target_os = "linux")]
mod destination;
pub mod entry;
#[cfg(target_os = "linux")]
mod linux;
pub mod macos;
#[cfg(target_os = "linux")]
mod netns;
pub mod paths;
pub mod proxy;
#[cfg(target_os = "linux")]
mod sandbox;
#[cfg(target_os = "linux")]
mod seccomp;
pub mod supervisor;

use capsule_artifacts::manifest::VerifiedArtifact;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;

#[cfg(target_os = "linux")]
pub use linux::launch_supervised;
pub use supervisor::{DenyAll, Notification, PolicyAnswers, Response, Supervisor};

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
compile_error!("capsule-launch sandboxes commands on Linux (seccomp, Landlock) and macOS (Seatbelt) only");

/// capsule itself failed: bad or tampered artifact, missing kernel feature, setup error.
pub const EXIT_SETUP_FAILURE: i32 = 125;
/// The command was found but cannot be executed.
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
/// The command was not found.
pub const EXIT_NOT_FOUND: i32 = 127;

/// Why the command did not run, and the exit code that says so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub exit_code: i32,
    pub message: String,
}

impl Failure {
    pub fn new(exit_code: i32, message: impl Into<String>) -> Failure {
        Failure { exit_code, message: message.into() }
    }

    fn setup(message: impl Into<String>) -> Failure {
        Failure::new(EXIT_SETUP_FAILURE, message)
    }
}

#[derive(Debug, Clone, Default)]
pub struct LaunchOptions {
    /// The command and its arguments; the first is looked up on the clean PATH.
    pub command: Vec<OsString>,
    /// `${WORKSPACE}`; the current directory when `None`.
    pub workspace: Option<PathBuf>,
    /// The audit log to append this invocation to; `None`: not audited.
    pub log: Option<PathBuf>,
    /// Syscall and errno names for the log's records (the launcher has no tables).
    pub names: Option<audit::Names>,
    /// Print what was enforced.
    pub verbose: bool,
    /// Print every rule as well.
    pub explain: bool,
    /// A descriptor to which the invocation's id in the log is written, as a decimal
    /// line, once `invocation.start` is on disk (for the Python SDK, whose records
    /// name the invocation that ran a tool). Written once; not closed here.
    pub announce_fd: Option<std::os::fd::RawFd>,
}

#[derive(Debug)]
pub struct LaunchOutcome {
    /// What the launcher exits with: the command's code, 128+N for signal N, or 125-127.
    pub exit_code: i32,
    /// How the command ended, if it ran.
    pub status: Option<ExitStatus>,
    /// Why the command did not run (or, with a status, why the audit failed after it ran,
    /// or why its background processes could not be ended).
    pub failure: Option<Failure>,
    /// The command's pid, once started.
    pub pid: Option<u32>,
    /// What the command used, from `wait4`.
    pub resources: Option<audit::Resources>,
    /// The invocation's id in the audit log (the seq of its `invocation.start`).
    pub invocation: Option<u64>,
}

impl LaunchOutcome {
    fn failed(failure: Failure) -> LaunchOutcome {
        LaunchOutcome {
            exit_code: failure.exit_code,
            status: None,
            failure: Some(failure),
            pid: None,
            resources: None,
            invocation: None,
        }
    }
}

/// The command's exit code, or 128+N when signal N ended it (159 for SIGSYS).
pub fn exit_code_for(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => EXIT_SETUP_FAILURE,
    }
}

/// Launches, answering seccomp notifications with the policy's own decisions (the
/// manifest's notification table).
#[cfg(target_os = "linux")]
pub fn launch(artifact: &VerifiedArtifact, options: &LaunchOptions) -> LaunchOutcome {
    let empty = capsule_artifacts::notify::NotifyTable::default();
    let table = artifact.entry.notify.as_ref().unwrap_or(&empty);
    let native_arch = artifact.target.audit_arch().unwrap_or(0);
    let proxy = artifact.launch().network.proxy.as_ref().map(destination::proxy_address);
    launch_supervised(artifact, options, &mut PolicyAnswers { table, native_arch, proxy })
}

/// Launches under the artifact's pinned macos.sb through `/usr/bin/sandbox-exec`
/// ([`macos::launch`]).
#[cfg(target_os = "macos")]
pub fn launch(artifact: &VerifiedArtifact, options: &LaunchOptions) -> LaunchOutcome {
    macos::launch(artifact, options)
}

/// The command's environment: only `env.pass` names survive, then `env.set` applies.
pub(crate) fn policy_env(settings: &capsule_artifacts::LaunchSettings) -> BTreeMap<OsString, OsString> {
    let mut env: BTreeMap<OsString, OsString> = std::env::vars_os()
        .filter(|(name, _)| name.to_str().is_some_and(|n| settings.env.pass.iter().any(|p| p == n)))
        .collect();
    for (name, value) in &settings.env.set {
        env.insert(name.into(), value.into());
    }
    env
}

fn say(line: &str) {
    eprintln!("capsule-launch: {line}");
}
