//! The audit trail of one launch: where the log lives, the check that the command
//! cannot write it, and what the launcher records.
//!
//! Order of events (docs/audit-log.md, "The launcher's records"):
//! 1. Before anything runs, the log path is resolved and refused (exit 125) when it
//!    lies beneath a path the policy lets the command write, or when writes are not
//!    restricted at all: the command must not be able to edit its own evidence.
//! 2. The log is opened by the launcher (close-on-exec, so the command never holds
//!    it) and `invocation.start` is appended and `fdatasync`ed before the command
//!    is started.
//! 3. While the command runs, every notified call is recorded *before* it is
//!    answered, as `syscall.denied` or `syscall.audited`; a storm is bounded by
//!    [`SyscallAggregator`]. Under a proxy, a direct connection attempt the
//!    supervisor refuses is a `network.connection` (`direct-connect`), bounded with
//!    the proxy's connection records by [`MAX_CONNECTION_RECORDS`].
//! 4. Afterwards the storm summaries, `invocation.end` and a checkpoint are appended
//!    and synced.
//!
//! Every invocation is recorded, whatever `audit: record:` lists: `invocations` is
//! implied. `denials` and `audited-syscalls` select the syscall records.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use capsule_artifacts::launch::LaunchSettings;
use capsule_artifacts::log::{DEFAULT_LOG_PATH, Durability, InvocationRefused, LogWriter, Record, WriterOptions};

use crate::paths::PathVars;

// The audit trail of a seccomp-supervised launch (Linux only; macOS: crate::macos).
#[cfg(target_os = "linux")]
use {
    crate::sandbox::LandlockPlan,
    crate::supervisor::{Notification, Response, Supervisor},
    crate::{Failure, LaunchOptions},
    capsule_artifacts::launch::Record as RecordClass,
    capsule_artifacts::log::aggregate::DEFAULT_MAX_INDIVIDUAL,
    capsule_artifacts::log::record::kind,
    capsule_artifacts::log::{ExitStatus, InvocationEnd, InvocationStart, SyscallAggregator, SyscallEvent},
    capsule_artifacts::manifest::VerifiedArtifact,
    std::time::Duration,
};

/// What the launcher cannot name by itself, since it links no syscall table:
/// `capsule run` fills these in from the compiler's tables. Without them, records
/// carry `"name": null` and `errno:<number>`, and `capsule log show` resolves them.
#[derive(Debug, Clone, Copy)]
pub struct Names {
    /// The name of syscall `nr` for the `AUDIT_ARCH_*` value `arch`.
    pub syscall: fn(arch: u32, nr: u32) -> Option<&'static str>,
    /// The name of an errno value (`1` → `EPERM`).
    pub errno: fn(errno: u16) -> Option<&'static str>,
}

/// The per-user state directory for capsule: `$XDG_STATE_HOME/capsule`, else
/// `$HOME/.local/state/capsule` (relative values are ignored, as the XDG spec says).
pub fn state_dir() -> Result<PathBuf, String> {
    state_dir_in(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))
}

fn state_dir_in(xdg_state_home: Option<OsString>, home: Option<OsString>) -> Result<PathBuf, String> {
    capsule_dir(xdg_state_home, home, STATE_HOME_DEFAULT).ok_or_else(|| {
        "no place for the audit log: neither XDG_STATE_HOME nor HOME is an absolute path (pass --log FILE)".to_owned()
    })
}

/// What an unset XDG_STATE_HOME and XDG_CACHE_HOME stand for, under HOME.
const STATE_HOME_DEFAULT: &str = ".local/state";
const CACHE_HOME_DEFAULT: &str = ".cache";

/// `capsule` in an XDG base directory: the variable's value when absolute (relative
/// values are ignored, as the XDG spec says), else `default` under an absolute HOME.
fn capsule_dir(xdg: Option<OsString>, home: Option<OsString>, default: &str) -> Option<PathBuf> {
    let absolute = |value: Option<OsString>| value.map(PathBuf::from).filter(|p| p.is_absolute());
    absolute(xdg).or_else(|| absolute(home).map(|home| home.join(default))).map(|base| base.join("capsule"))
}

/// The log `capsule run` writes when neither `--log` nor the policy's `audit: log:`
/// names one: `capsule.log` in [`state_dir`], outside every workspace.
pub fn default_log_path() -> Result<PathBuf, String> {
    Ok(state_dir()?.join(DEFAULT_LOG_PATH))
}

/// The log a policy's `audit: log:` names. A relative path (the default is
/// `capsule.log`) is relative to [`state_dir`], not to the current directory, which
/// is usually the writable workspace; `${WORKSPACE}`, `${HOME}` and `${TMPDIR}` are
/// resolved as in filesystem rules.
pub fn policy_log_path(settings: &LaunchSettings, workspace: Option<&Path>) -> Result<PathBuf, String> {
    let rule = settings.audit.log.as_str();
    if rule.is_empty() {
        return Err("the policy's audit log path is empty".to_owned());
    }
    if is_state_relative(rule) { Ok(state_dir()?.join(rule)) } else { PathVars::from_env(workspace)?.resolve(rule) }
}

fn is_state_relative(rule: &str) -> bool {
    !rule.contains("${") && !Path::new(rule).is_absolute()
}

/// Refuses a log the command could write: beneath a path of the policy's `write`
/// class, or anywhere when writes are not restricted (no `filesystem: write:`, or
/// Landlock missing in best-effort mode). Returns the resolved log path.
/// `workspace`, when known, only words the refusal.
#[cfg(target_os = "linux")]
pub(crate) fn protected_log_path(
    log: &Path,
    landlock: &LandlockPlan,
    workspace: Option<&Path>,
) -> Result<PathBuf, String> {
    let resolved = crate::paths::resolve_existing(log).map_err(|e| format!("the audit log path {e}"))?;
    let Some(write) = landlock.fs.iter().find(|class| class.name == "write") else {
        return Err(format!(
            "the policy does not restrict writes (no `filesystem: write:`), so the command could rewrite the audit log {}; \
             list the writable paths in the policy",
            resolved.display()
        ));
    };
    if landlock.kernel_abi == 0 {
        return Err(format!(
            "this kernel has no Landlock, so nothing keeps the command from rewriting the audit log {}",
            resolved.display()
        ));
    }
    // Readable paths too: a command that can open the log can read every earlier
    // invocation's record and hold its lock (flock needs only a read descriptor).
    let readable = landlock.fs.iter().filter(|class| class.name == "read").flat_map(|class| &class.resolved);
    for granted in write.resolved.iter().chain(readable) {
        if resolved.starts_with(granted) {
            // The usual way here: `capsule run` from the home directory, whose state
            // directory then lies in the writable workspace.
            let is_workspace = workspace.and_then(|w| w.canonicalize().ok()).as_deref() == Some(granted.as_path());
            let hint = if is_workspace { home_workspace_hint(granted) } else { "" };
            return Err(format!(
                "the audit log {} lies beneath {}, which the policy lets the command read or write; \
                 keep the log outside the policy's paths (--log FILE, or the policy's `audit: log:`){hint}",
                resolved.display(),
                granted.display()
            ));
        }
    }
    Ok(resolved)
}

/// The per-user compile cache of `capsule run`: `$XDG_CACHE_HOME/capsule`, else
/// `$HOME/.cache/capsule` (relative values are ignored, as the XDG spec says).
pub fn cache_dir() -> Result<PathBuf, String> {
    capsule_dir(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"), CACHE_HOME_DEFAULT)
        .ok_or_else(|| "neither XDG_CACHE_HOME nor HOME is an absolute path".to_owned())
}

/// The password database's entry for the user the launcher runs as (its real uid):
/// the name and the home directory. `None` for a uid with no entry, as in a container
/// run with `--user 12345`.
fn passwd_entry() -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid out-parameter; getpwuid_r writes it and the
    // strings it points to into `buf`, which outlives every use of `pw` below.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are to live locals of the sizes passed.
    let rc = unsafe { libc::getpwuid_r(libc::getuid(), &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() {
        return None;
    }
    let field = |p: *const libc::c_char| {
        // SAFETY: non-null pw_name and pw_dir point to NUL-terminated strings in `buf`.
        (!p.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(p) }.to_bytes().to_vec())
    };
    Some((field(pw.pw_name).unwrap_or_default(), field(pw.pw_dir).unwrap_or_default()))
}

/// The home directory of the user the launcher runs as, from the password database:
/// where the default state and cache directories are, whatever the environment says.
fn passwd_home() -> Option<PathBuf> {
    let (_, dir) = passwd_entry()?;
    Some(PathBuf::from(OsString::from_vec(dir))).filter(|p| p.is_absolute())
}

/// The name an invocation's record gives its user (next to the uid, which is the
/// authority): `USER` when set, else the password database's name for the uid (a
/// container sets no `USER`), else none (a uid with no entry).
pub(crate) fn invoking_user() -> Option<String> {
    std::env::var("USER").ok().filter(|name| !name.is_empty()).or_else(|| {
        let (name, _) = passwd_entry()?;
        String::from_utf8(name).ok().filter(|name| !name.is_empty())
    })
}

/// Refuses a policy that lets the command write capsule's per-user directories, whose
/// contents decide later runs: the state directory (the trusted policies, the default
/// log) and the compile cache. A command that could write them could trust a policy it
/// planted, or plant an artifact under another policy's public cache key. Checked for
/// every launch, through either front door, for the directories this environment names
/// and for the defaults under the home directory (a later run with other XDG variables
/// uses those). A policy that does not restrict writes at all
/// has made its own choice (the log check refuses it when there is a log).
/// `write` holds the writable paths with their symlinks and `..` resolved (on Linux,
/// the Landlock plan's `write` class, `FsClass::resolved`; on macOS, the policy's
/// `filesystem: write:` resolved); `None` when writes are not restricted.
pub(crate) fn refuse_writable_capsule_dirs(write: Option<&[PathBuf]>, workspace: Option<&Path>) -> Result<(), String> {
    const STATE: &str = "the capsule state directory (trusted policies, the default log)";
    const CACHE: &str = "the compile cache";
    let mut dirs = vec![(STATE, state_dir()), (CACHE, cache_dir())];
    // The defaults under the home directory too, which a run with other XDG variables
    // uses. HOME names it; only without HOME is the password database asked (its
    // lookup may load NSS modules, a cost every launch would pay).
    let home = std::env::var_os("HOME").map(PathBuf::from).filter(|h| h.is_absolute()).or_else(passwd_home);
    match home.map(PathBuf::into_os_string) {
        Some(home) => {
            for (what, default) in [(STATE, STATE_HOME_DEFAULT), (CACHE, CACHE_HOME_DEFAULT)] {
                let dir = capsule_dir(None, Some(home.clone()), default);
                dirs.push((what, dir.ok_or_else(|| "HOME is not an absolute path".to_owned())));
            }
        }
        None => dirs.push((STATE, Err("this user has no home directory in the password database".to_owned()))),
    }
    // Without XDG variables the defaults are the same directories: check each once.
    let mut seen = std::collections::BTreeSet::new();
    dirs.retain(|(_, dir)| dir.as_ref().map_or(true, |dir| seen.insert(dir.clone())));
    refuse_writable_dirs(write, &dirs, workspace)
}

fn refuse_writable_dirs(
    write: Option<&[PathBuf]>,
    dirs: &[(&str, Result<PathBuf, String>)],
    workspace: Option<&Path>,
) -> Result<(), String> {
    let Some(granted) = write else { return Ok(()) };
    for (what, dir) in dirs {
        // What cannot be located or resolved cannot be shown safe: a command may have
        // made a directory unsearchable (Landlock does not govern chmod).
        let cannot_check =
            |e: &dyn std::fmt::Display| format!("cannot check that the policy keeps the command out of {what}: {e}");
        let dir = dir.as_ref().map_err(|e| cannot_check(e))?;
        let dir = crate::paths::resolve_existing(dir).map_err(|e| cannot_check(&e))?;
        for granted in granted {
            // Either way round: a grant beneath the directory (one entry) is as bad.
            if dir.starts_with(granted) || granted.starts_with(&dir) {
                let hint = workspace.map_or("", home_workspace_hint);
                return Err(format!(
                    "the policy lets the command write {what} {}, where it could plant something for a later \
                     run; narrow `filesystem: write:`{hint}",
                    dir.display()
                ));
            }
        }
    }
    Ok(())
}

/// Words for a refusal caused by a workspace that is the home directory, the usual
/// way a command is granted the state and cache directories: `capsule run` from `~`.
pub fn home_workspace_hint(workspace: &Path) -> &'static str {
    let home = std::env::var_os("HOME").map(PathBuf::from).and_then(|h| h.canonicalize().ok());
    if home.is_some() && home == workspace.canonicalize().ok() {
        "; the workspace is your home directory, which would let the command rewrite all of it: \
         run from a project directory, or pass --workspace DIR"
    } else {
        ""
    }
}

/// The target name of an `AUDIT_ARCH_*` value, as records store it.
pub fn arch_name(arch: u32) -> String {
    use capsule_artifacts::target::{AUDIT_ARCH_AARCH64, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64};
    match arch {
        AUDIT_ARCH_X86_64 => "linux-x86_64".to_owned(),
        AUDIT_ARCH_AARCH64 => "linux-aarch64".to_owned(),
        AUDIT_ARCH_I386 => "linux-i386".to_owned(),
        other => format!("{other:#010x}"),
    }
}

/// Resource use of the ended command, from `wait4`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    pub user_time_us: u64,
    pub sys_time_us: u64,
    pub max_rss_kib: u64,
}

/// Why the default state directory cannot be made, when the user has no home of its
/// own: `HOME=/`, as Docker gives a `--user UID` with no passwd entry.
fn homeless_hint() -> String {
    let home = std::env::var_os("HOME");
    let entry = passwd_entry();
    if home.as_deref() != Some(std::ffi::OsStr::new("/")) && entry.is_some() {
        return String::new();
    }
    let uid = rustix::process::getuid().as_raw();
    let why = if entry.is_none() {
        format!("uid {uid} has no entry in the password database (a container run with --user {uid}?), so HOME is /")
    } else {
        "HOME is /".to_owned()
    };
    format!(
        "; {why}: give it a home it may write, outside the workspace (`-e HOME=/home/me --tmpfs \
         /home/me:uid={uid}`, or a folder of the host mounted there, to keep the log), or set XDG_STATE_HOME \
         and XDG_CACHE_HOME"
    )
}

/// Opens (or creates) the log at `path`, with the signing key from the environment.
pub fn open_log(path: &Path) -> Result<LogWriter, String> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        // A new state directory is private: the log's records name commands and paths.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create {} for the audit log: {e}{}", dir.display(), homeless_hint()))?;
    }
    let signer = capsule_artifacts::log::note::signer_from_env()
        .map_err(|e| format!("the log signing key cannot be used: {e}"))?;
    LogWriter::open_with(path, WriterOptions { signer, ..WriterOptions::default() })
        .map_err(|e| format!("cannot open the audit log: {e}"))
}

/// The command line and the current directory as an invocation's record holds them.
pub(crate) fn argv_and_cwd(command: &[OsString]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let cwd = std::env::current_dir().map(|d| d.as_os_str().as_bytes().to_vec()).unwrap_or_default();
    (command.iter().map(|a| a.as_bytes().to_vec()).collect(), cwd)
}

/// Records a command that was refused before anything ran (its artifact did not
/// verify, its policy has errors): `invocation.refused` and a checkpoint, synced.
/// The log's safety from the command is not checked: there is no command.
pub fn record_refusal(
    log: &Path,
    command: &[OsString],
    reason: &str,
    source: &Path,
    expected_pin: Option<&str>,
) -> Result<(), String> {
    // Opened first, so the record's time follows a new log's genesis.
    let mut writer = open_log(log)?;
    let (argv, cwd) = argv_and_cwd(command);
    let refused = InvocationRefused::now(
        argv,
        cwd,
        reason.to_owned(),
        source.as_os_str().as_bytes().to_vec(),
        expected_pin.map(str::to_owned),
        invoking_user(),
    );
    writer
        .append(&Record::from(&refused), Durability::Buffered)
        .and_then(|_| writer.checkpoint(Durability::Sync))
        .map(|_| ())
        .map_err(|e| format!("cannot write to the audit log: {e}"))
}

/// The open log and what this invocation has recorded so far.
#[cfg(target_os = "linux")]
pub(crate) struct AuditTrail {
    writer: LogWriter,
    /// The seq of this invocation's `invocation.start`.
    invocation: u64,
    record_denials: bool,
    record_audited: bool,
    aggregator: SyscallAggregator,
    names: Option<Names>,
    /// `network.connection` records written one by one so far.
    connections: u64,
    /// Connections past [`MAX_CONNECTION_RECORDS`].
    held_connections: HeldConnections,
    /// The first write that failed; the launch is stopped when set.
    failure: Option<String>,
}

/// `network.connection` records written one by one per invocation; further attempts
/// are counted per verdict and reason, one summary record each at the end.
pub const MAX_CONNECTION_RECORDS: u64 = 1024;

/// Connections past [`MAX_CONNECTION_RECORDS`], counted per (verdict, reason): count,
/// bytes up, bytes down; one summary record each at the end of the invocation (Linux's
/// audit trail and the macOS launch alike).
#[derive(Debug, Default)]
pub struct HeldConnections(std::collections::BTreeMap<(&'static str, String), (u64, u64, u64)>);

impl HeldConnections {
    pub fn count(&mut self, event: &capsule_artifacts::log::ConnectionEvent) {
        let held = self.0.entry((event.verdict, event.reason.clone().unwrap_or_default())).or_default();
        held.0 += 1;
        held.1 += event.bytes_up;
        held.2 += event.bytes_down;
    }

    /// The summary records of invocation `invocation`, in (verdict, reason) order.
    pub fn records(self, invocation: u64) -> impl Iterator<Item = Record> {
        use capsule_artifacts::log::Value;
        self.0.into_iter().map(move |((verdict, reason), (count, up, down))| {
            Record::new(capsule_artifacts::log::record::kind::NETWORK_CONNECTION)
                .with("invocation", Value::u64(invocation))
                .with("verdict", verdict)
                .with("reason", if reason.is_empty() { Value::Null } else { Value::Str(reason) })
                .with("count", Value::u64(count))
                .with("bytes_up", Value::u64(up))
                .with("bytes_down", Value::u64(down))
                .with("summary", true)
        })
    }
}

#[cfg(target_os = "linux")]
impl AuditTrail {
    /// Checks and opens the log, and appends `invocation.start`, synced.
    pub(crate) fn begin(
        log: &Path,
        artifact: &VerifiedArtifact,
        options: &LaunchOptions,
        landlock: &LandlockPlan,
        workspace: Option<&Path>,
    ) -> Result<AuditTrail, Failure> {
        let path = protected_log_path(log, landlock, workspace).map_err(Failure::setup)?;
        let mut writer = open_log(&path).map_err(Failure::setup)?;

        let (argv, cwd) = argv_and_cwd(&options.command);
        let start = InvocationStart::now(
            argv,
            cwd,
            artifact.manifest.policy.name.clone(),
            artifact.pin.clone(),
            invoking_user(),
        );
        let appended = writer
            .append(&Record::from(&start), Durability::Sync)
            .map_err(|e| Failure::setup(format!("cannot write to the audit log: {e}")))?;
        let classes = &artifact.launch().audit.record;
        Ok(AuditTrail {
            writer,
            invocation: appended.seq,
            record_denials: classes.contains(&RecordClass::Denials),
            record_audited: classes.contains(&RecordClass::AuditedSyscalls),
            aggregator: SyscallAggregator::new(appended.seq, DEFAULT_MAX_INDIVIDUAL),
            names: options.names,
            connections: 0,
            held_connections: HeldConnections::default(),
            failure: None,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        self.writer.path()
    }

    pub(crate) fn invocation(&self) -> u64 {
        self.invocation
    }

    /// Records one notified call and the answer about to be sent. Written to the page
    /// cache only (the checkpoint at the end syncs everything), so a storm costs one
    /// `write()` per logged event and nothing per counted one.
    fn observe(&mut self, notification: &Notification, response: Response) {
        let (event_kind, action, wanted) = match response {
            Response::Deny { errno } => {
                let errno = u16::try_from(errno.unsigned_abs()).unwrap_or(u16::MAX);
                let name = self.names.and_then(|n| (n.errno)(errno));
                let action = name.map_or_else(|| format!("errno:{errno}"), |name| format!("errno:{name}"));
                (kind::SYSCALL_DENIED, action, self.record_denials)
            }
            Response::Continue => (kind::SYSCALL_AUDITED, "allow".to_owned(), self.record_audited),
            // A `network.connection`, written by `direct_connection`.
            Response::RefuseDirect { .. } => return,
            // The proxy's own address: the proxy records the connection.
            Response::Pass => return,
        };
        if !wanted || self.failure.is_some() {
            return;
        }
        // A negative number cannot come from a native call; it is recorded as is.
        let nr = notification.syscall as u32;
        let event = SyscallEvent {
            invocation: self.invocation,
            kind: event_kind,
            name: self.names.and_then(|n| (n.syscall)(notification.arch, nr)).map(str::to_owned),
            nr,
            arch: arch_name(notification.arch),
            args: notification.args,
            pid: notification.pid,
            action,
        };
        if let Some(record) = self.aggregator.observe(&event)
            && let Err(e) = self.writer.append(&record, Durability::Buffered)
        {
            self.failure = Some(format!("cannot write to the audit log: {e}"));
        }
    }

    /// Records a direct connection attempt the supervisor refused (an address that is
    /// not the proxy's): a `network.connection` with the reason `direct-connect`, the
    /// syscall as its method and the calling thread's pid, bounded with the proxy's
    /// records.
    fn direct_connection(&mut self, notification: &Notification, syscall: &str, destination: std::net::SocketAddr) {
        let mut event = crate::proxy::new_event();
        event.method = syscall.to_owned();
        event.host = destination.ip().to_string();
        event.port = destination.port();
        event.address = Some(destination.to_string());
        event.reason = Some(crate::destination::DIRECT_CONNECT.to_owned());
        self.record_connection(event, Some(notification.pid));
    }

    /// Records one connection attempt through the proxy (page cache only, like
    /// syscall records); past [`MAX_CONNECTION_RECORDS`] it is only counted.
    fn connection(&mut self, event: capsule_artifacts::log::ConnectionEvent) {
        self.record_connection(event, None);
    }

    fn record_connection(&mut self, mut event: capsule_artifacts::log::ConnectionEvent, pid: Option<u32>) {
        if self.failure.is_some() {
            return;
        }
        if self.connections >= MAX_CONNECTION_RECORDS {
            self.held_connections.count(&event);
            return;
        }
        self.connections += 1;
        event.invocation = self.invocation;
        let mut record = Record::from(&event);
        if let Some(pid) = pid {
            record = record.with("pid", pid);
        }
        if let Err(e) = self.writer.append(&record, Durability::Buffered) {
            self.failure = Some(format!("cannot write to the audit log: {e}"));
        }
    }

    /// Appends the storm summaries, `invocation.end` and a checkpoint, synced.
    pub(crate) fn finish(
        mut self,
        status: ExitStatus,
        error: Option<&str>,
        child_pid: Option<u32>,
        duration: Duration,
        resources: Resources,
    ) -> Result<(), String> {
        let end = InvocationEnd {
            invocation: self.invocation,
            status,
            error: error.map(str::to_owned),
            duration_ns: u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX),
            user_time_us: resources.user_time_us,
            sys_time_us: resources.sys_time_us,
            max_rss_kib: resources.max_rss_kib,
            time_ns: capsule_artifacts::log::record::unix_time_ns(std::time::SystemTime::now()),
        };
        let mut end = Record::from(&end);
        if let Some(pid) = child_pid {
            end = end.with("pid", pid);
        }
        if status == ExitStatus::Signal(libc::SIGSYS) {
            // The filter's kill actions end the command with SIGSYS; the kernel does
            // not say which call it was.
            end = end.with("seccomp_kill", true);
        }
        let invocation = self.invocation;
        let mut records = std::mem::replace(&mut self.aggregator, SyscallAggregator::new(invocation, 0)).finish();
        records.extend(std::mem::take(&mut self.held_connections).records(invocation));
        records.push(end);
        self.writer
            .append_all(&records, Durability::Buffered)
            .and_then(|_| self.writer.checkpoint(Durability::Sync))
            .map(|_| ())
            .map_err(|e| format!("cannot write the end of invocation {invocation} to the audit log: {e}"))
    }
}

/// Answers through `inner` and records each notification before the answer is sent.
/// The answer is `inner`'s alone (with `PolicyAnswers`, the manifest's table): what
/// is recorded never changes it, except that a call is denied when it cannot be
/// recorded.
#[cfg(target_os = "linux")]
pub(crate) struct Recording<'a> {
    pub inner: &'a mut dyn Supervisor,
    pub trail: &'a mut AuditTrail,
}

#[cfg(target_os = "linux")]
impl Supervisor for Recording<'_> {
    fn decide(&mut self, notification: &Notification) -> Response {
        let response = self.inner.decide(notification);
        match response {
            Response::RefuseDirect { syscall, destination, .. } => {
                self.trail.direct_connection(notification, syscall, destination)
            }
            _ => self.trail.observe(notification, response),
        }
        if self.trail.failure.is_some() {
            // Fail closed: an audited call that cannot be recorded does not run.
            return Response::Deny { errno: libc::EPERM };
        }
        response
    }

    fn failure(&self) -> Option<String> {
        self.trail.failure.clone()
    }

    fn connection(&mut self, event: capsule_artifacts::log::ConnectionEvent) {
        self.trail.connection(event);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::sandbox::FsClass;
    use capsule_artifacts::launch::LandlockMode;
    use std::collections::BTreeMap;

    fn write_grants(plan: &LandlockPlan) -> Option<&[PathBuf]> {
        plan.fs.iter().find(|class| class.name == "write").map(|class| class.resolved.as_slice())
    }

    fn plan(write: Option<Vec<PathBuf>>, kernel_abi: u8) -> LandlockPlan {
        LandlockPlan {
            mode: LandlockMode::BestEffort,
            min_abi: 1,
            kernel_abi,
            fs: write
                .map(|paths| {
                    FsClass::new(
                        "write",
                        landlock::AccessFs::from_write(landlock::ABI::V1),
                        paths,
                        &mut BTreeMap::new(),
                    )
                })
                .into_iter()
                .collect(),
            connect: None,
            bind: None,
            scope: false,
            skipped: Vec::new(),
        }
    }

    #[test]
    fn a_log_beneath_a_writable_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let writable = dir.path().join("ws");
        std::fs::create_dir(&writable).unwrap();
        let outside = dir.path().join("state");
        std::fs::create_dir(&outside).unwrap();
        let plan = plan(Some(vec![writable.clone()]), 7);

        let err = protected_log_path(&writable.join("capsule.log"), &plan, None).unwrap_err();
        assert!(err.contains("lets the command read or write"), "{err}");
        // Not yet existing directories, `..` and symlinks are resolved before comparing.
        assert!(protected_log_path(&writable.join("new/dir/capsule.log"), &plan, None).is_err());
        assert!(protected_log_path(&outside.join("../ws/capsule.log"), &plan, None).is_err());
        std::os::unix::fs::symlink(&writable, outside.join("link")).unwrap();
        assert!(protected_log_path(&outside.join("link/capsule.log"), &plan, None).is_err());

        let fine = protected_log_path(&outside.join("capsule.log"), &plan, None).unwrap();
        assert_eq!(fine, outside.canonicalize().unwrap().join("capsule.log"));

        // Readable is refused too: the command could read the log and hold its lock.
        let mut readable = plan.clone();
        readable.fs.push(FsClass::new(
            "read",
            landlock::AccessFs::from_read(landlock::ABI::V1),
            vec![outside.clone()],
            &mut BTreeMap::new(),
        ));
        let err = protected_log_path(&outside.join("capsule.log"), &readable, None).unwrap_err();
        assert!(err.contains("lets the command read or write"), "{err}");
    }

    #[test]
    fn a_grant_over_or_beneath_capsules_own_directories_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (state, cache, other) = (tmp.path().join("state"), tmp.path().join("cache"), tmp.path().join("other"));
        for dir in [&state, &other] {
            std::fs::create_dir(dir).unwrap();
        }
        std::os::unix::fs::symlink(&state, tmp.path().join("link")).unwrap();
        let dirs = || [("the state", Ok(state.clone())), ("the cache", Ok(cache.join("capsule")))];
        let refused = |grant: PathBuf| refuse_writable_dirs(write_grants(&plan(Some(vec![grant]), 7)), &dirs(), None);
        assert!(refused(tmp.path().to_path_buf()).unwrap_err().contains("the state"));
        assert!(refused(state.join("trusted-policies")).is_err(), "a grant beneath counts");
        assert!(refused(tmp.path().join("link")).is_err(), "through a symlink");
        assert!(refused(cache.clone()).unwrap_err().contains("the cache"), "a cache not made yet");
        assert!(refused(other).is_ok());
        assert!(
            refuse_writable_dirs(write_grants(&plan(None, 7)), &dirs(), None).is_ok(),
            "unrestricted: the policy's choice"
        );
        let unknown = [("the state", Err("no home".to_owned()))];
        assert!(
            refuse_writable_dirs(write_grants(&plan(Some(vec![tmp.path().join("other")]), 7)), &unknown, None).is_err(),
            "fails closed"
        );
    }

    #[test]
    fn unrestricted_writes_or_no_landlock_refuse_every_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("capsule.log");
        assert!(protected_log_path(&log, &plan(None, 7), None).unwrap_err().contains("does not restrict writes"));
        assert!(protected_log_path(&log, &plan(Some(vec![]), 0), None).unwrap_err().contains("no Landlock"));
        assert!(protected_log_path(&log, &plan(Some(vec![]), 7), None).is_ok());
    }

    #[test]
    fn the_state_directory_follows_xdg() {
        let some = |s: &str| Some(OsString::from(s));
        assert_eq!(state_dir_in(some("/state"), some("/home/u")).unwrap(), Path::new("/state/capsule"));
        // A relative XDG_STATE_HOME is ignored, as the XDG spec says.
        assert_eq!(state_dir_in(some("rel"), some("/home/u")).unwrap(), Path::new("/home/u/.local/state/capsule"));
        assert!(state_dir_in(None, some("")).is_err());
        assert!(state_dir_in(None, None).is_err());
    }

    #[test]
    fn only_plain_relative_policy_logs_go_to_the_state_directory() {
        assert!(is_state_relative("capsule.log"));
        assert!(is_state_relative("audit/tool.log"));
        assert!(!is_state_relative("/var/log/capsule.log"));
        assert!(!is_state_relative("${HOME}/capsule.log"));
    }
}
