//! Replay: a generated policy is compiled and the command run under it through the
//! launcher library, as `capsule run` does, with a private audit log. The policy
//! records denials, so every call its filter refuses reaches the supervisor, which
//! counts them by name. Landlock refusals are not notified; they show as a changed
//! exit status.

use crate::cache;
use capsule_artifacts::Target;
use capsule_launch::{LaunchOptions, Notification, PolicyAnswers, Response, Supervisor};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::path::Path;

#[derive(Debug, Clone, Default)]
pub struct Replay {
    pub exit: i32,
    /// Syscall name → how many calls the filter refused.
    pub refused: BTreeMap<String, u64>,
    /// Why the command did not run under the policy, if it did not.
    pub failure: Option<String>,
}

struct Counting<'a> {
    inner: PolicyAnswers<'a>,
    refused: BTreeMap<String, u64>,
}

impl Supervisor for Counting<'_> {
    fn decide(&mut self, n: &Notification) -> Response {
        let answer = self.inner.decide(n);
        if let Response::Deny { .. } = answer {
            let name = u32::try_from(n.syscall)
                .ok()
                .and_then(|nr| crate::run::syscall_name(n.arch, nr))
                .map_or_else(|| format!("#{}", n.syscall), str::to_owned);
            *self.refused.entry(name).or_default() += 1;
        }
        answer
    }
}

/// Stdin, stdout and stderr pointed at /dev/null while alive (for --quiet).
struct Silenced {
    saved: Vec<(i32, std::os::fd::OwnedFd)>,
}

impl Silenced {
    fn new() -> std::io::Result<Silenced> {
        use std::os::fd::FromRawFd;
        let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?;
        let mut saved = Vec::new();
        for fd in 0..3 {
            // SAFETY: dup and dup2 on descriptors this process owns; the copy is owned
            // by an OwnedFd and put back on drop.
            unsafe {
                let copy = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3);
                if copy >= 0 {
                    saved.push((fd, std::os::fd::OwnedFd::from_raw_fd(copy)));
                    libc::dup2(null.as_raw_fd(), fd);
                }
            }
        }
        Ok(Silenced { saved })
    }
}

impl Drop for Silenced {
    fn drop(&mut self) {
        for (fd, copy) in &self.saved {
            // SAFETY: restores the descriptor saved in `new`.
            unsafe {
                libc::dup2(copy.as_raw_fd(), *fd);
            }
        }
    }
}

/// Compiles `source` and runs `argv` under it in the current directory.
pub fn replay(source: &str, argv: &[String], workspace: &Path, quiet: bool) -> Replay {
    let failed = |message: String| Replay {
        exit: capsule_launch::EXIT_SETUP_FAILURE,
        failure: Some(message),
        ..Replay::default()
    };
    let Some(target) = Target::host() else { return failed("this host is not a platform capsule supports".into()) };
    let dir = match tempfile::Builder::new().prefix("capsule-replay-").tempdir() {
        Ok(d) => d,
        Err(e) => return failed(format!("cannot create a private build directory: {e}")),
    };
    let artifact =
        match cache::load_or_build(source.as_bytes(), capsule_compiler::front::Format::Yaml, dir.path(), target) {
            Ok((artifact, _)) => artifact,
            Err(e) => return failed(format!("the generated policy does not compile: {e:#}")),
        };
    let empty = capsule_artifacts::notify::NotifyTable::default();
    let table = artifact.entry.notify.as_ref().unwrap_or(&empty);
    let mut supervisor = Counting {
        inner: PolicyAnswers { table, native_arch: target.audit_arch().unwrap_or(0) },
        refused: BTreeMap::new(),
    };
    let options = LaunchOptions {
        command: argv.iter().map(OsString::from).collect(),
        workspace: Some(workspace.to_path_buf()),
        log: Some(dir.path().join("replay.log")),
        names: Some(capsule_launch::audit::Names {
            syscall: crate::run::syscall_name,
            errno: capsule_compiler::tables::errno_name,
        }),
        verbose: false,
        explain: false,
        announce_fd: None,
    };
    let outcome = {
        let _silenced = if quiet { Silenced::new().ok() } else { None };
        capsule_launch::launch_supervised(&artifact, &options, &mut supervisor)
    };
    Replay {
        exit: outcome.exit_code,
        refused: supervisor.refused,
        failure: outcome.failure.map(|f| f.message).filter(|_| outcome.status.is_none()),
    }
}
