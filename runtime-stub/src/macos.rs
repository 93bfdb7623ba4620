//! macOS: the command runs under the artifact's `macos.sb` through
//! `/usr/bin/sandbox-exec`, by absolute path (never through PATH), with the three
//! profile parameters bound to resolved paths: Seatbelt compares resolved paths, so
//! `/var/folders/...` must be passed as `/private/var/folders/...`.
//!
//! The profile goes to sandbox-exec as text (`-p`), the very bytes the manifest's pin
//! was checked against: with `-f PATH`, sandbox-exec would read the file again, after
//! the check, and a file swapped in between would be applied unchecked.
//!
//! Network by name (`network: domains:`/`routes:`): the same proxy as on Linux
//! ([`crate::proxy`]) listens on 127.0.0.1 of the host, on the policy's port or a free
//! one, for this invocation only ([`MacProxy`]); the profile lets the command reach
//! `localhost:PORT` and no other IP address, PORT being bound by `-D PROXY_PORT=N`
//! when the policy leaves the port to the launcher. Its connections are recorded as on
//! Linux, before `invocation.end`.
//!
//! [`crate::launch`], the one entry of `capsule-launch` and `capsule run`, is
//! `launch` on macOS. Everything but the last step is built on every platform and
//! tested on Linux ([`launch_with`] with the sandbox-exec command line inspected, and
//! [`run_sandboxed`] running real commands); only `launch`, which hands the command
//! line to `run_sandboxed`, is macOS code. It has been type-checked for macOS but
//! never run on a Mac: see docs/macos.md ("The launcher on macOS").

use crate::paths::PathVars;
use crate::{Failure, LaunchOptions, LaunchOutcome};
use capsule_artifacts::Target;
use capsule_artifacts::launch::LaunchSettings;
use capsule_artifacts::log::ConnectionEvent;
use capsule_artifacts::log::record::{InvocationEnd, InvocationStart, Record, unix_time_ns};
use capsule_artifacts::log::writer::Durability;
use capsule_artifacts::manifest::VerifiedArtifact;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Instant, SystemTime};

/// Where macOS keeps sandbox-exec. Absolute: a PATH entry must not choose the sandbox.
pub const SANDBOX_EXEC: &str = "/usr/bin/sandbox-exec";

/// The values of `(param "WORKSPACE")`, `(param "HOME")` and `(param "TMPDIR")`, and
/// of `(param "PROXY_PORT")` when the policy has a proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileParams {
    pub workspace: PathBuf,
    pub home: PathBuf,
    pub tmpdir: PathBuf,
    pub proxy_port: Option<u16>,
}

impl ProfileParams {
    /// Resolve the launch's variables as the kernel will report them to Seatbelt.
    /// A variable that does not resolve (HOME unset, a missing TMPDIR) is an error:
    /// an unbound parameter would make the profile fail to load or match nothing.
    pub fn resolve(vars: &PathVars) -> Result<ProfileParams, String> {
        let real = |what: &str, p: &Path| {
            p.canonicalize().map_err(|e| format!("{what} {} cannot be resolved: {e}", p.display()))
        };
        let home = vars.home.as_deref().ok_or("HOME is not set; the macOS profile needs it")?;
        Ok(ProfileParams {
            workspace: real("the workspace", &vars.workspace)?,
            home: real("HOME", home)?,
            tmpdir: real("TMPDIR", &vars.tmpdir)?,
            proxy_port: None,
        })
    }
}

/// The largest profile passed on the command line; far above any compiled profile (a
/// few KiB) and far below macOS's ARG_MAX (1 MiB).
pub const MAX_PROFILE_BYTES: usize = 256 << 10;

/// `sandbox-exec -p PROFILE -D WORKSPACE=... -D HOME=... -D TMPDIR=... [-D PROXY_PORT=N]
/// COMMAND ARGS...`,
/// `profile` being the pinned macos.sb as verified. `command` must be absolute
/// (resolved on the clean PATH by the caller), so it can never be read as an option
/// of sandbox-exec.
pub fn sandbox_exec_argv(
    profile: &[u8],
    params: &ProfileParams,
    command: &Path,
    args: &[OsString],
) -> Result<Vec<OsString>, String> {
    if !command.is_absolute() {
        return Err(format!("{} is not an absolute path", command.display()));
    }
    let profile = std::str::from_utf8(profile).map_err(|_| "macos.sb is not UTF-8".to_owned())?;
    if profile.len() > MAX_PROFILE_BYTES || profile.contains('\0') {
        return Err(format!("macos.sb is larger than {MAX_PROFILE_BYTES} bytes or holds NUL"));
    }
    let mut argv: Vec<OsString> = vec![SANDBOX_EXEC.into(), "-p".into(), profile.into()];
    for (name, value) in [("WORKSPACE", &params.workspace), ("HOME", &params.home), ("TMPDIR", &params.tmpdir)] {
        let mut d = OsString::from(format!("{name}="));
        d.push(value);
        argv.push("-D".into());
        argv.push(d);
    }
    if let Some(port) = params.proxy_port {
        argv.push("-D".into());
        argv.push(format!("PROXY_PORT={port}").into());
    }
    argv.push(command.into());
    argv.extend(args.iter().cloned());
    Ok(argv)
}

/// Refuses a log the command could reach, as on Linux: writes must be restricted
/// (`filesystem: write:`), and the log must lie beneath no path the policy lets the
/// command read or write (resolved: the same files Seatbelt compares). Returns the
/// resolved log path.
pub fn protected_log(log: &Path, settings: &LaunchSettings, vars: &PathVars) -> Result<PathBuf, String> {
    let resolved = crate::paths::resolve_existing(log).map_err(|e| format!("the audit log path {e}"))?;
    let fs = &settings.filesystem;
    let Some(write) = &fs.write else {
        return Err(format!(
            "the policy does not restrict writes (no `filesystem: write:`), so the command could rewrite the audit log {}",
            resolved.display()
        ));
    };
    for rule in write.iter().chain(fs.read.iter().flatten()) {
        let granted = crate::paths::resolved_grant(vars.resolve(rule)?);
        if resolved.starts_with(&granted) {
            return Err(format!(
                "the audit log {} lies beneath {}, which the policy lets the command read or write",
                resolved.display(),
                granted.display()
            ));
        }
    }
    Ok(resolved)
}

/// Runs `spawn` (on macOS, the command under [`run_sandboxed`]) between the
/// invocation's `invocation.start`, synced before anything runs, and its
/// `invocation.end` with a checkpoint, as the Linux launcher records them. A spawn
/// that fails (command not found, sandbox-exec missing) is recorded as a launch
/// failure with its code. What macOS cannot give is not invented: no syscall records
/// (Seatbelt writes its denials to the unified log, not to the parent) and no CPU
/// time or memory figures (zero in the record). `announce_fd`, as on Linux
/// ([`LaunchOptions::announce_fd`]), receives the invocation's id once its start is on
/// disk, before `spawn` runs. The proxy's connections (`connections`, asked for once
/// `spawn` has returned) are recorded before `invocation.end`.
pub fn run_recorded(
    log: &Path,
    policy: &str,
    pin: &str,
    command: &[OsString],
    announce_fd: Option<std::os::fd::RawFd>,
    spawn: impl FnOnce() -> Result<ExitStatus, Failure>,
    connections: impl FnOnce() -> ConnectionTally,
) -> LaunchOutcome {
    use capsule_artifacts::log::ExitStatus as Logged;
    let mut writer = match crate::audit::open_log(log) {
        Ok(writer) => writer,
        Err(e) => return LaunchOutcome::failed(Failure::setup(e)),
    };
    let (argv, cwd) = crate::audit::argv_and_cwd(command);
    let start = InvocationStart::now(argv, cwd, policy.to_owned(), pin.to_owned(), crate::audit::invoking_user());
    let invocation = match writer.append(&Record::from(&start), Durability::Sync) {
        Ok(appended) => appended.seq,
        Err(e) => return LaunchOutcome::failed(Failure::setup(format!("cannot write to the audit log: {e}"))),
    };
    let started = Instant::now();
    let announced = match announce_fd {
        Some(fd) => {
            // SAFETY: the caller keeps the descriptor open for the whole launch.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            rustix::io::write(fd, format!("{invocation}\n").as_bytes())
                .map(drop)
                .map_err(|e| Failure::setup(format!("cannot announce the invocation: {e}")))
        }
        None => Ok(()),
    };
    let mut outcome = outcome_of(announced.and_then(|()| spawn()));
    outcome.invocation = Some(invocation);
    let mut records = connections().records(invocation);
    let status = match outcome.status.map(|s| (s.code(), s.signal())) {
        Some((Some(code), _)) => Logged::Code(code),
        Some((None, Some(signal))) => Logged::Signal(signal),
        _ => Logged::LaunchFailed(outcome.exit_code),
    };
    let end = InvocationEnd {
        invocation,
        status,
        error: outcome.failure.as_ref().map(|f| f.message.clone()),
        duration_ns: u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
        user_time_us: 0,
        sys_time_us: 0,
        max_rss_kib: 0,
        time_ns: unix_time_ns(SystemTime::now()),
    };
    records.push(Record::from(&end));
    let written = writer.append_all(&records, Durability::Buffered).and_then(|_| writer.checkpoint(Durability::Sync));
    if let Err(e) = written {
        // The command ran, but its evidence is incomplete: say so with capsule's code.
        outcome.exit_code = crate::EXIT_SETUP_FAILURE;
        outcome.failure =
            Some(Failure::setup(format!("cannot write the end of invocation {invocation} to the audit log: {e}")));
    }
    outcome
}

fn outcome_of(ran: Result<ExitStatus, Failure>) -> LaunchOutcome {
    match ran {
        Ok(status) => LaunchOutcome {
            exit_code: crate::exit_code_for(status),
            status: Some(status),
            failure: None,
            pid: None,
            resources: None,
            invocation: None,
        },
        Err(failure) => LaunchOutcome::failed(failure),
    }
}

/// The pid SIGINT, SIGTERM and SIGHUP are forwarded to while [`run_sandboxed`] waits.
static FORWARD_TO: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(signal: libc::c_int) {
    let pid = FORWARD_TO.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe; `pid` is our unreaped child.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

const FORWARDED: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Runs `argv` (on macOS, the sandbox-exec command line) with exactly `env`, in a
/// new session as on Linux (the terminal's signals reach the launcher, which forwards
/// SIGINT, SIGTERM and SIGHUP to the command, as on Linux), and waits for it. Used
/// only on macOS; built everywhere so its spawning, forwarding and waiting are tested
/// on Linux too. The handlers are process-wide: one call at a time per process (the
/// launcher makes one).
pub fn run_sandboxed(argv: &[OsString], env: &BTreeMap<OsString, OsString>) -> std::io::Result<ExitStatus> {
    use std::os::unix::process::CommandExt;
    let (program, rest) = argv.split_first().ok_or(std::io::ErrorKind::InvalidInput)?;
    let mut command = std::process::Command::new(program);
    command.args(rest).env_clear().envs(env);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| if libc::setsid() < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) });
    }
    // SAFETY: sigset_t, sigaction and siginfo_t values are initialised (zeroed, then
    // emptied) before use; the calls read and write live locals only. The handler only loads an
    // atomic and calls kill. The signals are blocked until the child's pid is known
    // (the child starts with an empty mask: std resets it), so none is lost.
    unsafe {
        let mut blocked: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut blocked);
        for signal in FORWARDED {
            libc::sigaddset(&mut blocked, signal);
        }
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &blocked, &mut mask);
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = forward as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        let mut previous: [libc::sigaction; 3] = std::mem::zeroed();
        for (signal, previous) in FORWARDED.into_iter().zip(previous.iter_mut()) {
            libc::sigaction(signal, &action, previous);
        }
        let child = command.spawn();
        if let Ok(child) = &child {
            FORWARD_TO.store(child.id() as i32, Ordering::SeqCst);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &mask, std::ptr::null_mut());
        let status = child.and_then(|mut child| {
            // Wait without reaping, then stop forwarding, then reap: until it is reaped
            // the pid stays the command's, so a late forward reaches no other process.
            let mut info: libc::siginfo_t = std::mem::zeroed();
            while libc::waitid(libc::P_PID, child.id() as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) != 0 {
                let error = std::io::Error::last_os_error();
                if error.kind() != std::io::ErrorKind::Interrupted {
                    break; // `wait` below reports the problem, or reaps.
                }
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &blocked, std::ptr::null_mut());
            FORWARD_TO.store(0, Ordering::SeqCst);
            child.wait()
        });
        libc::pthread_sigmask(libc::SIG_BLOCK, &blocked, std::ptr::null_mut());
        FORWARD_TO.store(0, Ordering::SeqCst);
        for (signal, previous) in FORWARDED.into_iter().zip(previous.iter()) {
            libc::sigaction(signal, previous, std::ptr::null_mut());
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &mask, std::ptr::null_mut());
        status
    }
}

/// Everything about a macOS launch but the spawn, which is `spawn(argv, env)` (on
/// macOS [`run_sandboxed`]); built everywhere so it is tested on Linux with the
/// sandbox-exec command line inspected instead of run. In order: the artifact must
/// be macos.sb; the profile's parameters resolve; a policy that lets the command write
/// capsule's own directories is refused, as on Linux; with a log, the log must be out
/// of the command's reach and `invocation.start` is on disk before the command is
/// looked up on the policy's PATH and started. Limits (`limits:`) are not applied on
/// macOS (docs/macos.md).
pub fn launch_with(
    artifact: &VerifiedArtifact,
    options: &LaunchOptions,
    spawn: impl FnOnce(&[OsString], &BTreeMap<OsString, OsString>) -> std::io::Result<ExitStatus>,
) -> LaunchOutcome {
    if artifact.target != Target::Macos {
        let message = format!("the artifact loaded is for {}, not macos", artifact.target);
        return LaunchOutcome::failed(Failure::setup(message));
    }
    let settings = artifact.launch();
    let vars = match PathVars::from_env(options.workspace.as_deref()) {
        Ok(vars) => vars,
        Err(e) => return LaunchOutcome::failed(Failure::setup(e)),
    };
    let params = match ProfileParams::resolve(&vars) {
        Ok(params) => params,
        Err(e) => return LaunchOutcome::failed(Failure::setup(e)),
    };
    let resolve = |rule: &String| vars.resolve(rule).map(crate::paths::resolved_grant);
    let write: Option<Result<Vec<PathBuf>, String>> =
        settings.filesystem.write.as_ref().map(|rules| rules.iter().map(resolve).collect());
    let write = match write.transpose() {
        Ok(write) => write,
        Err(e) => return LaunchOutcome::failed(Failure::setup(e)),
    };
    if let Err(e) = crate::audit::refuse_writable_capsule_dirs(write.as_deref(), Some(&vars.workspace)) {
        return LaunchOutcome::failed(Failure::setup(e));
    }
    let verbose = options.verbose || options.explain;
    let mut env = crate::policy_env(settings);
    let profile = &artifact.blob;
    let proxy: std::cell::RefCell<Option<MacProxy>> = std::cell::RefCell::new(None);
    let running_proxy = &proxy;
    let run = move || -> Result<ExitStatus, Failure> {
        let (program, args) = options.command.split_first().ok_or_else(|| Failure::setup("no command to run"))?;
        let exec = crate::command::resolve(program, env.get(std::ffi::OsStr::new("PATH")).map(OsString::as_os_str))?;
        let mut params = params;
        if let Some(p) = &settings.network.proxy {
            let started = MacProxy::start(p, &mut env).map_err(Failure::setup)?;
            params.proxy_port = Some(started.port);
            if verbose {
                for line in &started.description {
                    crate::say(line);
                }
                crate::say(&format!(
                    "network: the profile lets the command reach localhost:{} (the proxy) and no other IP address",
                    started.port
                ));
            }
            *running_proxy.borrow_mut() = Some(started);
        }
        let argv = sandbox_exec_argv(profile, &params, &exec, args).map_err(Failure::setup)?;
        if verbose {
            crate::say(&format!(
                "artifact {} (policy {:?}), manifest pin {}",
                artifact.dir.display(),
                artifact.manifest.policy.name,
                artifact.pin
            ));
            crate::say(&format!("command: {}", exec.display()));
            crate::say(&format!(
                "seatbelt: {} applied through {SANDBOX_EXEC}, blake3 {}, WORKSPACE={} HOME={} TMPDIR={}",
                artifact.entry.name,
                blake3::hash(profile).to_hex(),
                params.workspace.display(),
                params.home.display(),
                params.tmpdir.display()
            ));
            crate::say(
                "limits, seccomp rules and Landlock do not apply on macOS; Seatbelt denials go to the unified log",
            );
        }
        spawn(&argv, &env).map_err(|e| Failure::setup(format!("cannot start {SANDBOX_EXEC}: {e}")))
    };
    let connections = || proxy.borrow_mut().take().map(MacProxy::stop).unwrap_or_default();
    match &options.log {
        None => {
            let outcome = outcome_of(run());
            connections();
            outcome
        }
        Some(log) => {
            let log = match protected_log(log, settings, &vars) {
                Ok(log) => log,
                Err(e) => return LaunchOutcome::failed(Failure::setup(e)),
            };
            if verbose {
                crate::say(&format!("audit log: {}", log.display()));
            }
            let policy = &artifact.manifest.policy.name;
            run_recorded(&log, policy, &artifact.pin, &options.command, options.announce_fd, run, connections)
        }
    }
}

/// The connections of a launch's proxy, bounded as on Linux: the first
/// [`crate::audit::MAX_CONNECTION_RECORDS`] kept whole, the others counted per verdict
/// and reason (count, bytes up, bytes down), one summary record each.
#[derive(Debug, Default)]
pub struct ConnectionTally {
    kept: Vec<ConnectionEvent>,
    held: crate::audit::HeldConnections,
}

impl ConnectionTally {
    pub fn add(&mut self, event: ConnectionEvent) {
        if (self.kept.len() as u64) < crate::audit::MAX_CONNECTION_RECORDS {
            self.kept.push(event);
        } else {
            self.held.count(&event);
        }
    }

    /// The `network.connection` records of invocation `invocation`, summaries last.
    pub fn records(self, invocation: u64) -> Vec<Record> {
        let kept = self.kept.into_iter().map(|mut event| {
            event.invocation = invocation;
            Record::from(&event)
        });
        kept.chain(self.held.records(invocation)).collect()
    }
}

/// The proxy of a macOS launch: [`crate::proxy`] on 127.0.0.1 of the host (no network
/// namespace there), on the policy's port or, for `port: 0`, a free one. A thread
/// collects its records as they come, so a storm of connections costs bounded memory.
pub struct MacProxy {
    /// The port it listens on, bound into the profile as `PROXY_PORT`.
    pub port: u16,
    /// For `--verbose`: domains, routes and the names of added headers, no values.
    pub description: Vec<String>,
    stopping: Arc<AtomicBool>,
    collector: std::thread::JoinHandle<ConnectionTally>,
    /// [::1]:PORT, bound and never listened on, for the invocation's length.
    _ipv6_guard: Option<std::os::fd::OwnedFd>,
}

/// The proxy's listener on 127.0.0.1:`port` (a free port for 0), and [::1] held at the
/// same port: the profile's `localhost:PORT` may also match [::1]:PORT, and no other
/// program's listener there may be reachable past the proxy. A free port whose [::1]
/// twin is taken is given up for another.
fn listen(port: u16) -> Result<(std::net::TcpListener, u16, Option<std::os::fd::OwnedFd>), String> {
    let attempts = if port == 0 { 8 } else { 1 };
    let mut last = String::new();
    for _ in 0..attempts {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))
            .map_err(|e| format!("the proxy cannot listen on 127.0.0.1:{port}: {e}"))?;
        let chosen = listener.local_addr().map_err(|e| format!("the proxy's address: {e}"))?.port();
        match hold_ipv6_loopback(chosen) {
            Ok(guard) => return Ok((listener, chosen, guard)),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Binds a TCP socket to [::1]:`port` without listening, so that no other program
/// listens there during the invocation and a connection to it is refused. `None` when
/// the host has no IPv6 (nothing can listen there either); an error when another
/// program holds the address.
fn hold_ipv6_loopback(port: u16) -> Result<Option<std::os::fd::OwnedFd>, String> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_STREAM, 0) };
    if fd < 0 {
        return Ok(None);
    }
    // SAFETY: a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_in6 is plain data; all zeroes is a valid value.
    let mut address: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    #[cfg(target_os = "macos")]
    {
        address.sin6_len = size_of::<libc::sockaddr_in6>() as u8;
    }
    address.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    address.sin6_port = port.to_be();
    address.sin6_addr.s6_addr = std::net::Ipv6Addr::LOCALHOST.octets();
    // SAFETY: bind reads one sockaddr_in6 from a live local of the length given.
    let bound = unsafe {
        libc::bind(fd.as_raw_fd(), (&raw const address).cast(), size_of::<libc::sockaddr_in6>() as libc::socklen_t)
    };
    if bound == 0 {
        return Ok(Some(fd));
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EADDRINUSE) => Err(format!(
            "[::1]:{port} is in use by another program, which the sandbox's localhost:{port} rule would let the \
             command reach past the proxy"
        )),
        // No IPv6 loopback: nothing can listen there either.
        _ => Ok(None),
    }
}

impl MacProxy {
    /// Refuses a route credential the policy also passes to the command, expands the
    /// routes' headers from the launcher's environment, listens, and points `env` (the
    /// command's) at the proxy.
    pub fn start(
        proxy: &capsule_artifacts::launch::Proxy,
        env: &mut BTreeMap<OsString, OsString>,
    ) -> Result<MacProxy, String> {
        use std::os::fd::IntoRawFd;
        crate::proxy::refuse_passed_credentials(proxy, env)?;
        let mut config = crate::proxy::Config::new(proxy, |name| std::env::var(name).ok())?;
        let (listener, port, ipv6_guard) = listen(proxy.port)?;
        config.port = port;
        let description = config.describe();
        let running = crate::proxy::Running::start(listener.into_raw_fd(), config)
            .map_err(|e| format!("cannot start the proxy: {e}"))?;
        crate::proxy::command_env(env, port);
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        let collector = std::thread::Builder::new()
            .name("capsule-proxy-records".into())
            .spawn(move || {
                let mut tally = ConnectionTally::default();
                while !stop.load(Ordering::SeqCst) {
                    let mut ready = libc::pollfd { fd: running.wake_fd(), events: libc::POLLIN, revents: 0 };
                    // SAFETY: one live pollfd; the timeout bounds how late `stop` is seen.
                    unsafe {
                        libc::poll(&mut ready, 1, 100);
                    }
                    running.drain().into_iter().for_each(|event| tally.add(event));
                }
                running.stop().into_iter().for_each(|event| tally.add(event));
                tally
            })
            .map_err(|e| format!("cannot start the proxy: {e}"))?;
        Ok(MacProxy { port, description, stopping, collector, _ipv6_guard: ipv6_guard })
    }

    /// Stops the proxy (open connections are cut) and returns its connections.
    pub fn stop(self) -> ConnectionTally {
        self.stopping.store(true, Ordering::SeqCst);
        self.collector.join().unwrap_or_default()
    }
}

/// `capsule-launch` and `capsule run` on macOS ([`crate::launch`]): [`launch_with`]
/// the command run under [`run_sandboxed`].
#[cfg(target_os = "macos")]
pub fn launch(artifact: &VerifiedArtifact, options: &LaunchOptions) -> LaunchOutcome {
    launch_with(artifact, options, run_sandboxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::fd::AsRawFd;

    /// The proxy's port is held on [::1] too: no other program can listen there, and a
    /// connection to it is refused; a port whose [::1] twin is taken is refused.
    #[test]
    fn the_proxy_port_is_held_on_the_ipv6_loopback_too() {
        let (listener, port, guard) = listen(0).unwrap();
        if guard.is_none() {
            eprintln!("SKIPPED: no IPv6 loopback on this host");
            return;
        }
        assert_eq!(listener.local_addr().unwrap().port(), port);
        let taken = std::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, port));
        assert_eq!(taken.unwrap_err().kind(), std::io::ErrorKind::AddrInUse);
        let refused = std::net::TcpStream::connect((std::net::Ipv6Addr::LOCALHOST, port));
        assert_eq!(refused.unwrap_err().kind(), std::io::ErrorKind::ConnectionRefused);

        let other = std::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, 0)).unwrap();
        let busy = other.local_addr().unwrap().port();
        let error = listen(busy).map(|_| ()).unwrap_err();
        assert!(error.contains("in use by another program"), "{error}");
    }

    #[test]
    fn argv_names_sandbox_exec_by_absolute_path_and_binds_the_three_parameters() {
        let params = ProfileParams {
            workspace: "/Users/u/w s".into(),
            home: "/Users/u".into(),
            tmpdir: "/private/var/folders/x/T".into(),
            proxy_port: None,
        };
        let profile = b"(version 1)\n(deny default)\n";
        let argv = sandbox_exec_argv(profile, &params, Path::new("/bin/cat"), &["-n".into()]).unwrap();
        let text: Vec<&str> = argv.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            text,
            [
                "/usr/bin/sandbox-exec",
                "-p",
                "(version 1)\n(deny default)\n",
                "-D",
                "WORKSPACE=/Users/u/w s",
                "-D",
                "HOME=/Users/u",
                "-D",
                "TMPDIR=/private/var/folders/x/T",
                "/bin/cat",
                "-n"
            ]
        );
        assert!(sandbox_exec_argv(profile, &params, Path::new("cat"), &[]).is_err());
        assert!(sandbox_exec_argv(b"\xff", &params, Path::new("/bin/cat"), &[]).is_err());
        assert!(sandbox_exec_argv(b"(version 1)\0", &params, Path::new("/bin/cat"), &[]).is_err());
        // A policy with a proxy: its port is the fourth parameter, before the command.
        let with_proxy = ProfileParams { proxy_port: Some(49152), ..params.clone() };
        let argv = sandbox_exec_argv(profile, &with_proxy, Path::new("/bin/cat"), &[]).unwrap();
        assert_eq!(argv[9..], [OsString::from("-D"), "PROXY_PORT=49152".into(), "/bin/cat".into()]);
        let huge = vec![b' '; MAX_PROFILE_BYTES + 1];
        assert!(sandbox_exec_argv(&huge, &params, Path::new("/bin/cat"), &[]).is_err());
    }

    #[test]
    fn a_run_is_recorded_between_start_and_end_in_a_log_that_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("state/capsule.log");
        let command: Vec<OsString> = vec!["/bin/sh".into(), "-c".into(), "exit 3".into()];
        let (read, write) = std::io::pipe().unwrap();
        let outcome = run_recorded(
            &log,
            "p",
            &"ab".repeat(32),
            &command,
            Some(write.as_raw_fd()),
            || Ok(std::process::Command::new("/bin/sh").args(["-c", "exit 3"]).status().unwrap()),
            ConnectionTally::default,
        );
        drop(write);
        let announced = std::io::read_to_string(read).unwrap();
        assert_eq!((outcome.exit_code, outcome.status.unwrap().code()), (3, Some(3)), "{outcome:?}");
        let invocation = outcome.invocation.unwrap();
        assert_eq!(announced, format!("{invocation}\n"), "the id announced is the log's");
        let text = std::fs::read_to_string(&log).unwrap();
        let start = text.lines().find(|l| l.contains("\"invocation.start\"")).expect("a start record");
        let end = text.lines().find(|l| l.contains("\"invocation.end\"")).expect("an end record");
        assert!(start.contains("exit 3") && start.contains(&"ab".repeat(32)), "{start}");
        assert!(end.contains(&format!("\"invocation\":\"{invocation}\"")), "{end}");
        assert!(end.contains("\"exit_code\":3"), "{end}");
        let report = capsule_artifacts::log::verify::verify(&log, &Default::default());
        assert_eq!(report.verdict, capsule_artifacts::log::verify::Verdict::Intact, "{report:?}");

        // A spawn that cannot start is recorded as a launch failure, and reported.
        let outcome = run_recorded(
            &log,
            "p",
            &"ab".repeat(32),
            &command,
            None,
            || Err(Failure::new(crate::EXIT_NOT_FOUND, "cannot start sandbox-exec: not found")),
            ConnectionTally::default,
        );
        assert_eq!(outcome.exit_code, crate::EXIT_NOT_FOUND);
        assert!(outcome.failure.unwrap().message.contains("cannot start sandbox-exec"));
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text.matches("\"invocation.end\"").count(), 2);
        assert!(text.contains("cannot start sandbox-exec"));
    }

    #[test]
    fn connections_past_the_bound_are_summarised_per_verdict_and_reason() {
        let event = |verdict: &'static str, reason: Option<&str>| ConnectionEvent {
            invocation: 0,
            method: "GET".into(),
            host: "a.example".into(),
            port: 80,
            address: None,
            verdict,
            reason: reason.map(str::to_owned),
            bytes_up: 10,
            bytes_down: 20,
            duration_ns: 1,
            route: None,
            injected_headers: Vec::new(),
            time_ns: 1,
        };
        let bound = crate::audit::MAX_CONNECTION_RECORDS as usize;
        let mut tally = ConnectionTally::default();
        for _ in 0..bound + 3 {
            tally.add(event("allowed", None));
        }
        for _ in 0..2 {
            tally.add(event("refused", Some("not-listed")));
        }
        let records = tally.records(7);
        assert_eq!(records.len(), bound + 2, "whole records, then one summary per verdict and reason");
        let line = |r: &Record| String::from_utf8(r.to_line(1, &capsule_artifacts::log::Hash([0; 32]))).unwrap();
        let summaries: Vec<String> = records[bound..].iter().map(line).collect();
        assert!(
            summaries[0].contains("\"count\":\"3\"") && summaries[0].contains("\"bytes_down\":\"60\""),
            "{summaries:?}"
        );
        assert!(summaries[1].contains("not-listed") && summaries[1].contains("\"count\":\"2\""), "{summaries:?}");
        assert!(line(&records[0]).contains("\"invocation\":\"7\""), "{}", line(&records[0]));
    }

    #[test]
    fn a_log_the_command_could_reach_is_refused() {
        use capsule_artifacts::launch::Filesystem;
        let dir = tempfile::tempdir().unwrap();
        let (ws, state) = (dir.path().join("ws"), dir.path().join("state"));
        std::fs::create_dir(&ws).unwrap();
        std::fs::create_dir(&state).unwrap();
        let vars = PathVars { workspace: ws.clone(), home: Some(dir.path().into()), tmpdir: "/tmp".into() };
        let mut settings = LaunchSettings::default();
        assert!(protected_log(&state.join("capsule.log"), &settings, &vars).is_err(), "writes unrestricted");
        settings.filesystem =
            Filesystem { read: Some(vec!["/usr".into()]), write: Some(vec!["${WORKSPACE}".into()]), execute: None };
        assert!(protected_log(&ws.join("capsule.log"), &settings, &vars).is_err());
        assert!(protected_log(&state.join("../ws/x.log"), &settings, &vars).is_err());
        assert!(protected_log(&state.join("capsule.log"), &settings, &vars).is_ok());
        settings.filesystem.read = Some(vec!["${HOME}".into()]);
        assert!(protected_log(&state.join("capsule.log"), &settings, &vars).is_err(), "readable is refused too");
    }

    #[test]
    fn parameters_are_resolved_paths_and_home_is_required() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        let vars = PathVars { workspace: link.clone(), home: Some(link.clone()), tmpdir: link.clone() };
        let p = ProfileParams::resolve(&vars).unwrap();
        let real = dir.path().canonicalize().unwrap();
        assert_eq!((p.workspace, p.home, p.tmpdir), (real.clone(), real.clone(), real));
        assert!(ProfileParams::resolve(&PathVars { home: None, ..vars.clone() }).is_err());
        assert!(ProfileParams::resolve(&PathVars { tmpdir: dir.path().join("missing"), ..vars }).is_err());
    }
}
