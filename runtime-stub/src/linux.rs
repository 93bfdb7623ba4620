//! Linux: the launch under seccomp and Landlock (see the crate documentation for the
//! order of the steps). Only built for Linux; macOS launches through [`crate::macos`].

use crate::{
    EXIT_SETUP_FAILURE, Failure, LaunchOptions, LaunchOutcome, Supervisor, audit, exit_code_for, policy_env, say,
};
use crate::{child, command, netns, paths, proxy, sandbox, seccomp, supervisor};
use capsule_artifacts::Target;
use capsule_artifacts::manifest::VerifiedArtifact;
use rustix::process::Resource;
use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// Launches and answers seccomp notifications with `supervisor`.
///
/// Call it from a single-threaded process: the child is a copy of the caller made
/// without fork's atfork handlers. Descriptors above 2 are marked close-on-exec so the
/// command inherits none of them.
pub fn launch_supervised(
    artifact: &VerifiedArtifact,
    options: &LaunchOptions,
    supervisor: &mut dyn Supervisor,
) -> LaunchOutcome {
    let started = std::time::Instant::now();
    let (vars, landlock) = match sandbox_plan(artifact, options) {
        Ok(plan) => plan,
        Err(failure) => return LaunchOutcome::failed(failure),
    };
    let workspace = options.workspace.clone().or_else(|| std::env::current_dir().ok());
    let write = landlock.fs.iter().find(|class| class.name == "write").map(|class| class.resolved.as_slice());
    if let Err(e) = audit::refuse_writable_capsule_dirs(write, workspace.as_deref()) {
        return LaunchOutcome::failed(Failure::setup(e));
    }
    let Some(log) = &options.log else {
        return prepare(artifact, options, vars, landlock)
            .and_then(|plan| run(plan, options, supervisor))
            .unwrap_or_else(LaunchOutcome::failed);
    };
    // Nothing runs unless the log is safe from the command and the start is on disk.
    let mut trail = match audit::AuditTrail::begin(log, artifact, options, &landlock, workspace.as_deref()) {
        Ok(trail) => trail,
        Err(failure) => return LaunchOutcome::failed(failure),
    };
    if options.verbose || options.explain {
        say(&format!("audit log: {} (invocation {})", trail.path().display(), trail.invocation()));
    }
    let announced = match options.announce_fd {
        Some(fd) => {
            // SAFETY: the caller keeps the descriptor open for the whole launch.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            let line = format!("{}\n", trail.invocation());
            rustix::io::write(fd, line.as_bytes())
                .map(drop)
                .map_err(|e| Failure::setup(format!("cannot announce the invocation: {e}")))
        }
        None => Ok(()),
    };
    let mut recording = audit::Recording { inner: supervisor, trail: &mut trail };
    let mut outcome = announced
        .and_then(|()| prepare(artifact, options, vars, landlock))
        .and_then(|plan| run(plan, options, &mut recording))
        .unwrap_or_else(LaunchOutcome::failed);
    outcome.invocation = Some(trail.invocation());
    let status = match (outcome.status, &outcome.failure) {
        (Some(status), _) => match (status.code(), status.signal()) {
            (Some(code), _) => capsule_artifacts::log::ExitStatus::Code(code),
            (None, Some(signal)) => capsule_artifacts::log::ExitStatus::Signal(signal),
            (None, None) => capsule_artifacts::log::ExitStatus::LaunchFailed(outcome.exit_code),
        },
        (None, _) => capsule_artifacts::log::ExitStatus::LaunchFailed(outcome.exit_code),
    };
    let error = outcome.failure.as_ref().map(|f| f.message.as_str());
    let resources = outcome.resources.unwrap_or_default();
    if let Err(e) = trail.finish(status, error, outcome.pid, started.elapsed(), resources) {
        // The command ran, but its evidence is incomplete: say so with capsule's code.
        outcome.exit_code = EXIT_SETUP_FAILURE;
        outcome.failure = Some(Failure::setup(e));
    }
    outcome
}

/// Path variables and the Landlock plan: needed before the log is opened, to check
/// that the command cannot write it.
fn sandbox_plan(
    artifact: &VerifiedArtifact,
    options: &LaunchOptions,
) -> Result<(paths::PathVars, sandbox::LandlockPlan), Failure> {
    let vars = paths::PathVars::from_env(options.workspace.as_deref()).map_err(Failure::setup)?;
    let landlock =
        sandbox::LandlockPlan::new(artifact.launch(), &vars, sandbox::kernel_abi()).map_err(Failure::setup)?;
    Ok((vars, landlock))
}

fn prepare(
    artifact: &VerifiedArtifact,
    options: &LaunchOptions,
    vars: paths::PathVars,
    landlock: sandbox::LandlockPlan,
) -> Result<child::ChildPlan, Failure> {
    let verbose = options.verbose || options.explain;
    let host = Target::host().ok_or_else(|| Failure::setup("this host is not a platform capsule supports"))?;
    if artifact.target != host {
        return Err(Failure::setup(format!(
            "the artifact was verified for {}, but this host is {host}",
            artifact.target
        )));
    }
    if !host.is_linux() {
        return Err(Failure::setup(format!("capsule-launch applies seccomp and Landlock; {host} has neither")));
    }
    let settings = artifact.launch();
    let program = seccomp::Program::from_blob(&artifact.blob).map_err(Failure::setup)?;

    let mut env = policy_env(settings);
    let proxy = match &settings.network.proxy {
        Some(p) => {
            proxy::refuse_passed_credentials(p, &env).map_err(Failure::setup)?;
            let config = proxy::Config::new(p, |name| std::env::var(name).ok()).map_err(Failure::setup)?;
            proxy::command_env(&mut env, config.port);
            Some(config)
        }
        None => None,
    };

    let (program_name, _) = options.command.split_first().ok_or_else(|| Failure::setup("no command to run"))?;
    let exec_path = command::resolve(program_name, env.get(&OsString::from("PATH")).map(OsString::as_os_str))?;
    let machine_notes = command::check_machine(&exec_path, host, &artifact.manifest.targets())?;

    let limits = &settings.limits;
    let rlimits: Vec<(Resource, u64, &'static str)> = [
        (Resource::Cpu, limits.cpu_seconds, "cpu seconds"),
        (Resource::As, limits.memory_bytes, "address space (memory)"),
        (Resource::Nproc, limits.processes, "processes"),
        (Resource::Nofile, limits.open_files, "open files"),
        (Resource::Fsize, limits.file_size_bytes, "file size"),
    ]
    .into_iter()
    .filter_map(|(resource, value, name)| value.map(|v| (resource, v, name)))
    .collect();

    let blob_hash = blake3::hash(&artifact.blob).to_hex();
    let seccomp_note = format!(
        "seccomp: {} installed: {} instructions, blake3 {blob_hash}{}",
        artifact.entry.name,
        program.instruction_count(),
        if artifact.entry.user_notif() { ", with a notification listener" } else { "" }
    );

    if verbose {
        say(&format!(
            "artifact {} (policy {:?}, {}), manifest pin {}",
            artifact.dir.display(),
            artifact.manifest.policy.name,
            artifact.manifest.compiler,
            artifact.pin
        ));
        say(&format!("command: {}", exec_path.display()));
        machine_notes.iter().for_each(|n| say(n));
        say(&format!("workspace: {}", vars.workspace.display()));
        landlock.describe(options.explain).iter().for_each(|l| say(l));
        if rlimits.is_empty() {
            say("rlimits: none");
        }
        for (_, value, name) in &rlimits {
            say(&format!("rlimit: {name} = {value} (soft = hard)"));
        }
        if let Some(config) = &proxy {
            config.describe().iter().for_each(|l| say(l));
            let checked = artifact.entry.notify.as_ref().is_some_and(|table| {
                table.runs().iter().any(|run| run.2 == Some(capsule_artifacts::notify::NotifyAnswer::Destination))
            });
            if checked {
                say(
                    "network: the supervisor refuses and records connect and addressed sendto calls to anything but the proxy",
                );
            }
        }
        let names: Vec<String> = env.keys().map(|k| k.to_string_lossy().into_owned()).collect();
        say(&format!("env: {}", if names.is_empty() { "(empty)".to_owned() } else { names.join(" ") }));
        if options.explain {
            for (name, value) in &env {
                say(&format!("env:   {}={}", name.to_string_lossy(), value.to_string_lossy()));
            }
        }
    }
    landlock.check_kernel().map_err(Failure::setup)?;

    let to_cstring = |bytes: Vec<u8>, what: &str| {
        CString::new(bytes).map_err(|_| Failure::setup(format!("{what} contains a NUL byte")))
    };
    let argv_strings: Vec<CString> = options
        .command
        .iter()
        .map(|arg| to_cstring(arg.as_bytes().to_vec(), "an argument"))
        .collect::<Result<_, _>>()?;
    let envp_strings: Vec<CString> = env
        .into_iter()
        .map(|(name, value)| {
            let mut entry = name.into_vec();
            entry.push(b'=');
            entry.extend(value.into_vec());
            to_cstring(entry, "an environment variable")
        })
        .collect::<Result<_, _>>()?;
    let pointers = |strings: &[CString]| {
        strings.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect::<Vec<_>>()
    };

    Ok(child::ChildPlan {
        exec_path: to_cstring(exec_path.into_os_string().into_vec(), "the command path")?,
        argv: pointers(&argv_strings),
        envp: pointers(&envp_strings),
        _argv: argv_strings,
        _envp: envp_strings,
        // Replaced by the caller's mask in `run`, once it is known.
        // SAFETY: an all-zero sigset_t is the empty set on Linux.
        signal_mask: unsafe { std::mem::zeroed() },
        landlock,
        rlimits,
        program,
        user_notif: artifact.entry.user_notif(),
        seccomp_note,
        netns: proxy.as_ref().map(|c| netns::NetnsPlan::new(c.port)),
        proxy,
    })
}

/// Blocks the forwarded signals (and SIGCHLD) for the launch and reads them from a
/// signalfd, so none is lost between starting the child and waiting for it.
struct BlockedSignals {
    previous: libc::sigset_t,
    fd: OwnedFd,
}

const FORWARDED_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

impl BlockedSignals {
    fn new() -> io::Result<BlockedSignals> {
        // SAFETY: sigset_t values are initialised by sigemptyset before use; the calls
        // only read and write the sets passed to them.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in FORWARDED_SIGNALS.into_iter().chain([libc::SIGCHLD]) {
                libc::sigaddset(&mut set, signal);
            }
            let mut previous: libc::sigset_t = std::mem::zeroed();
            let err = libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut previous);
            if err != 0 {
                return Err(io::Error::from_raw_os_error(err));
            }
            let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
            if fd < 0 {
                let error = io::Error::last_os_error();
                libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
                return Err(error);
            }
            Ok(BlockedSignals { previous, fd: OwnedFd::from_raw_fd(fd) })
        }
    }

    /// Sleeps until a blocked signal is pending or `timeout_ms` has passed.
    fn wait(&self, timeout_ms: libc::c_int) -> io::Result<()> {
        let mut fds = [libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        // SAFETY: `fds` is a live array of one pollfd record.
        if unsafe { libc::poll(fds.as_mut_ptr(), 1, timeout_ms) } < 0 {
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
        Ok(())
    }

    /// The signals that arrived since the last call.
    fn drain(&self) -> Vec<libc::c_int> {
        let mut signals = Vec::new();
        loop {
            // SAFETY: an all-zero signalfd_siginfo is valid; read writes at most its size.
            let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            let size = size_of::<libc::signalfd_siginfo>();
            // SAFETY: the buffer is `size` bytes of a live local.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), (&mut info as *mut libc::signalfd_siginfo).cast(), size) };
            if n != size as isize {
                return signals;
            }
            signals.push(info.ssi_signo as libc::c_int);
        }
    }
}

impl Drop for BlockedSignals {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `new`.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut());
        }
    }
}

/// SIGCHLD at its default action for the launch. Inherited as ignored (or with
/// SA_NOCLDWAIT), it would make the kernel reap the command by itself: no SIGCHLD would
/// reach the signalfd, the wait would hang, and the status would be lost. The command
/// inherits the default too: exec keeps an ignored SIGCHLD, and a command that waits for
/// its own children should not find them reaped by a setting of capsule's caller.
struct DefaultChildSignal {
    previous: libc::sigaction,
}

impl DefaultChildSignal {
    fn new() -> io::Result<DefaultChildSignal> {
        // SAFETY: both sigaction values are all-zero (valid) with the mask emptied by
        // sigemptyset; sigaction reads the first and writes the second, both live locals.
        unsafe {
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigemptyset(&mut default.sa_mask);
            let mut previous: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGCHLD, &default, &mut previous) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(DefaultChildSignal { previous })
        }
    }
}

impl Drop for DefaultChildSignal {
    fn drop(&mut self) {
        // SAFETY: restores the action saved in `new`.
        unsafe {
            libc::sigaction(libc::SIGCHLD, &self.previous, std::ptr::null_mut());
        }
    }
}

/// The launcher as child subreaper for the launch: the command's descendants that lose
/// their parent become the launcher's children instead of init's, so they can be found
/// and ended with the command. The caller's own setting comes back on drop.
struct Subreaper {
    was_set: bool,
}

impl Subreaper {
    fn new() -> io::Result<Subreaper> {
        let was_set = rustix::process::child_subreaper()?.is_some();
        // rustix passes the flag as an optional pid: any nonzero value sets it.
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
        Ok(Subreaper { was_set })
    }
}

impl Drop for Subreaper {
    fn drop(&mut self) {
        if !self.was_set {
            let _ = rustix::process::set_child_subreaper(None);
        }
    }
}

/// The launcher lists its children from /proc (the kernel has no other interface), so
/// /proc must show this process under its own pid. Checked before the command starts:
/// a command whose background processes could not be ended must not run.
fn check_proc_is_ours() -> Result<(), String> {
    let me = std::process::id().to_string();
    match std::fs::read_link("/proc/self") {
        Ok(link) if link.as_os_str() == me.as_str() => Ok(()),
        Ok(link) => Err(format!(
            "/proc belongs to another PID namespace (/proc/self is {}, this process is {me}): the launcher could not \
             find the command's background processes to end them",
            link.display()
        )),
        Err(e) => Err(format!(
            "cannot read /proc/self ({e}): the launcher needs /proc to find the command's background processes"
        )),
    }
}

/// Whether the launcher has any child, ended or not (nothing is reaped).
fn has_children() -> io::Result<bool> {
    use rustix::process::{WaitId, WaitIdOptions};
    loop {
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
        match rustix::process::waitid(WaitId::All, options) {
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::CHILD) => return Ok(false),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// The launcher's children, ended ones included, by the parent field of /proc/PID/stat
/// (which names the process, not the thread, that is the parent). A pid listed here
/// stays the launcher's child until the launcher reaps it, so it is safe to signal.
fn launcher_children() -> io::Result<Vec<libc::pid_t>> {
    let me = std::process::id().to_string();
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<libc::pid_t>().ok()) else {
            continue;
        };
        // A process reaped since the directory was read has no stat any more.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...", where comm may hold spaces and parentheses.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1));
        if ppid == Some(me.as_str()) {
            children.push(pid);
        }
    }
    Ok(children)
}

/// The caller's own children, which the launch must neither reap nor end. None when the
/// launcher is the whole process (`capsule-launch`, `capsule run`).
fn callers_children() -> io::Result<Vec<libc::pid_t>> {
    if has_children()? { launcher_children() } else { Ok(Vec::new()) }
}

/// Reaps descendants of the command that were handed to the launcher and have already
/// ended, so they do not pile up as zombies while the command runs. A peek (WNOWAIT)
/// names an ended child without reaping it; it is reaped only if it is neither the
/// command (whose status `try_wait` takes) nor one of the caller's. The peek always
/// names the same child first, so the loop stops at the first one it must leave: the
/// orphans behind it are reaped when the command has ended.
fn reap_ended_orphans(command: libc::pid_t, callers: &[libc::pid_t]) {
    loop {
        // SAFETY: an all-zero siginfo_t is valid; waitid writes into the live local.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let ret = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) };
        if ret != 0 {
            return;
        }
        // SAFETY: a successful waitid for WEXITED fills si_pid (0 when no child has ended).
        let pid = unsafe { info.si_pid() };
        if pid == 0 || pid == command || callers.contains(&pid) {
            return;
        }
        let Some(orphan) = rustix::process::Pid::from_raw(pid) else { return };
        if !matches!(rustix::process::waitpid(Some(orphan), rustix::process::WaitOptions::NOHANG), Ok(Some(_))) {
            return;
        }
    }
}

/// Ends every descendant of the command still alive once the command has ended (or
/// was stopped), and reaps them, the command too if it was stopped: nothing the command
/// started may outlive the invocation, keep editing the workspace unsupervised, or race
/// the next run.
///
/// Each round kills the launcher's current children (the caller's excepted) and reaps
/// those that have ended; their own children are handed to the launcher (the
/// subreaper) as they die, and a process that is being killed cannot fork any more, so
/// the rounds run out. No round waits for one particular child: a ptraced child that
/// has died is not reapable until its tracer, perhaps a grandchild still to be killed
/// in a later round, lets go of it. Between rounds the launcher sleeps until a SIGCHLD
/// (or a short timeout, as a safety net).
fn end_descendants(callers: &[libc::pid_t], signals: &BlockedSignals) -> io::Result<()> {
    const ROUND_TIMEOUT_MS: libc::c_int = 100;
    loop {
        if callers.is_empty() && !has_children()? {
            return Ok(());
        }
        let ours: Vec<libc::pid_t> = launcher_children()?.into_iter().filter(|pid| !callers.contains(pid)).collect();
        if ours.is_empty() {
            if callers.is_empty() {
                return Err(io::Error::other("the kernel reports children of the launcher that /proc does not list"));
            }
            return Ok(());
        }
        let ours: Vec<rustix::process::Pid> = ours.into_iter().filter_map(rustix::process::Pid::from_raw).collect();
        for &child in &ours {
            // An ended child is still ours until reaped: the signal reaches no other process.
            let _ = rustix::process::kill_process(child, rustix::process::Signal::KILL);
        }
        // Drained before the reaping, so a child that ends after its check still wakes the wait.
        signals.drain();
        let mut reaped = false;
        for &child in &ours {
            reaped |=
                matches!(rustix::process::waitpid(Some(child), rustix::process::WaitOptions::NOHANG), Ok(Some(_)));
        }
        if !reaped {
            signals.wait(ROUND_TIMEOUT_MS)?;
        }
    }
}

fn run(
    mut plan: child::ChildPlan,
    options: &LaunchOptions,
    supervisor: &mut dyn Supervisor,
) -> Result<LaunchOutcome, Failure> {
    let verbose = options.verbose || options.explain;
    // Declared before `signals`, so it is restored after the mask is.
    let _default_sigchld =
        DefaultChildSignal::new().map_err(|e| Failure::setup(format!("cannot reset SIGCHLD to its default: {e}")))?;
    let signals = BlockedSignals::new().map_err(|e| Failure::setup(format!("cannot block signals: {e}")))?;
    plan.signal_mask = signals.previous;
    let mut report =
        child::SharedReport::new().map_err(|e| Failure::setup(format!("cannot map the report page: {e}")))?;

    // The child shares this descriptor table until it execs; close-on-exec everywhere
    // above stderr is what keeps every inherited descriptor from reaching the command.
    // SAFETY: close_range with the CLOEXEC flag only changes descriptor flags.
    if unsafe { libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int) } != 0 {
        return Err(Failure::setup(format!(
            "cannot mark inherited descriptors close-on-exec: {}",
            io::Error::last_os_error()
        )));
    }

    check_proc_is_ours().map_err(Failure::setup)?;
    let callers =
        callers_children().map_err(|e| Failure::setup(format!("cannot list the launcher's children: {e}")))?;
    let subreaper = Subreaper::new().map_err(|e| Failure::setup(format!("cannot become the child subreaper: {e}")))?;
    let pid = child::spawn(&plan, &mut report).map_err(|e| Failure::setup(format!("cannot start the command: {e}")))?;
    let outcome = supervise(pid, &plan, &mut report, &signals, &callers, verbose, supervisor);
    // Before the outcome goes back, so the end of the invocation is recorded after it.
    let ended = end_descendants(&callers, &signals);
    drop(subreaper);
    let Err(e) = ended else { return outcome };
    let problem = format!("the command's background processes could not be ended: {e}");
    let joined = |failure: Option<Failure>| match failure {
        Some(failure) => format!("{}; {problem}", failure.message),
        None => problem.clone(),
    };
    match outcome {
        Ok(mut outcome) => {
            outcome.exit_code = EXIT_SETUP_FAILURE;
            outcome.failure = Some(Failure::setup(joined(outcome.failure.take())));
            Ok(outcome)
        }
        Err(failure) => Err(Failure::setup(joined(Some(failure)))),
    }
}

/// From the started command to its status: answers notifications, forwards signals,
/// and reaps the command and the orphans that end meanwhile. On a failure path the
/// command is killed, and reaped by `end_descendants`.
fn supervise(
    pid: libc::pid_t,
    plan: &child::ChildPlan,
    report: &mut child::SharedReport,
    signals: &BlockedSignals,
    callers: &[libc::pid_t],
    verbose: bool,
    supervisor: &mut dyn Supervisor,
) -> Result<LaunchOutcome, Failure> {
    let result = report.read();
    // SAFETY: the child created this descriptor in the table it shared with us, and
    // nothing else owns it.
    let listener_fd = result.listener_fd.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
    // SAFETY: likewise for the proxy's listening socket.
    let proxy_fd = result.proxy_fd.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
    if verbose {
        result.notes.iter().for_each(|n| say(n));
    }
    if let Some(mut failure) = result.failure {
        let _ = wait_blocking(pid);
        if result.exec_errno != 0 {
            let path = plan.exec_path.to_string_lossy();
            failure.message = format!("cannot execute {path}: {}", io::Error::from_raw_os_error(result.exec_errno));
        }
        return Ok(LaunchOutcome::failed(failure));
    }
    if plan.user_notif && listener_fd.is_none() {
        kill_command(pid);
        return Err(Failure::setup("the seccomp filter has no notification listener"));
    }
    let mut listener = match listener_fd.map(supervisor::Listener::new).transpose() {
        Ok(listener) => listener,
        Err(e) => {
            kill_command(pid);
            return Err(Failure::setup(format!("cannot use the notification listener: {e}")));
        }
    };
    let proxy = match (&plan.proxy, proxy_fd) {
        (None, _) => None,
        (Some(config), Some(fd)) => match proxy::Running::start(fd.into_raw_fd(), config.clone()) {
            Ok(running) => Some(running),
            Err(e) => {
                kill_command(pid);
                return Err(Failure::setup(format!("cannot start the proxy: {e}")));
            }
        },
        (Some(_), None) => {
            kill_command(pid);
            return Err(Failure::setup("the command's network namespace has no proxy socket"));
        }
    };
    let outcome = supervise_loop(pid, signals, callers, verbose, supervisor, &mut listener, proxy.as_ref());
    if let Some(proxy) = proxy {
        for event in proxy.stop() {
            supervisor.connection(event);
        }
    }
    outcome
}

#[allow(clippy::too_many_arguments)]
fn supervise_loop(
    pid: libc::pid_t,
    signals: &BlockedSignals,
    callers: &[libc::pid_t],
    verbose: bool,
    supervisor: &mut dyn Supervisor,
    listener: &mut Option<supervisor::Listener>,
    proxy: Option<&proxy::Running>,
) -> Result<LaunchOutcome, Failure> {
    let (status, resources) = loop {
        match try_wait(pid) {
            Ok(Some(ended)) => break ended,
            Ok(None) => reap_ended_orphans(pid, callers),
            // Not killed by pid: if it is no longer ours, the pid may be another process's.
            // If it still is, `end_descendants` finds it among the launcher's children.
            Err(e) => return Err(Failure::setup(format!("waiting for the command: {e}"))),
        }
        let mut fds = vec![libc::pollfd { fd: signals.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        // The listener's slot is always 1 (-1, ignored by poll, once it is gone).
        let listener_raw = listener.as_ref().map_or(-1, |l| l.fd().as_fd().as_raw_fd());
        fds.push(libc::pollfd { fd: listener_raw, events: libc::POLLIN, revents: 0 });
        if let Some(proxy) = proxy {
            fds.push(libc::pollfd { fd: proxy.wake_fd(), events: libc::POLLIN, revents: 0 });
        }
        // SAFETY: `fds` is a live array of `fds.len()` pollfd records.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if ready < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            kill_command(pid);
            return Err(Failure::setup(format!("poll failed: {error}")));
        }
        for signal in signals.drain() {
            if FORWARDED_SIGNALS.contains(&signal) {
                // SAFETY: kill with the child's pid, which we have not reaped yet.
                unsafe {
                    libc::kill(pid, signal);
                }
            }
        }
        if let Some(proxy) = proxy
            && fds.get(2).is_some_and(|p| p.revents & libc::POLLIN != 0)
        {
            for event in proxy.drain() {
                supervisor.connection(event);
            }
            if let Some(reason) = supervisor.failure() {
                // A connection that cannot be recorded stops the command, as a call does.
                kill_command(pid);
                return Err(Failure::setup(format!("the command was stopped: {reason}")));
            }
        }
        if let (Some(revents), Some(current)) = (fds.get(1).map(|p| p.revents), listener.as_ref()) {
            if revents & libc::POLLIN != 0
                && let Err(e) = current.answer_one(supervisor)
            {
                // A notification nobody answers would hang the command: stop it instead.
                kill_command(pid);
                return Err(Failure::setup(format!("supervising seccomp notifications failed: {e}")));
            }
            if let Some(reason) = supervisor.failure() {
                kill_command(pid);
                return Err(Failure::setup(format!("the command was stopped: {reason}")));
            }
            if revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
                *listener = None;
            }
        }
    };
    if verbose && status.signal() == Some(libc::SIGSYS) {
        say("the command was killed by SIGSYS: the seccomp filter forbids a system call it made");
    }
    Ok(LaunchOutcome {
        exit_code: exit_code_for(status),
        status: Some(status),
        failure: None,
        pid: u32::try_from(pid).ok(),
        resources: Some(resources),
        invocation: None,
    })
}

fn try_wait(pid: libc::pid_t) -> io::Result<Option<(ExitStatus, audit::Resources)>> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 writes the status and the usage to
    // live locals.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    match unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) } {
        0 => Ok(None),
        p if p == pid => {
            let micros = |t: libc::timeval| (t.tv_sec.max(0) as u64) * 1_000_000 + t.tv_usec.max(0) as u64;
            let resources = audit::Resources {
                user_time_us: micros(usage.ru_utime),
                sys_time_us: micros(usage.ru_stime),
                // Linux reports ru_maxrss in KiB.
                max_rss_kib: usage.ru_maxrss.max(0) as u64,
            };
            Ok(Some((ExitStatus::from_raw(status), resources)))
        }
        _ => {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted { Ok(None) } else { Err(error) }
        }
    }
}

fn wait_blocking(pid: libc::pid_t) -> io::Result<ExitStatus> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status to a live local.
        let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
        if ret == pid {
            return Ok(ExitStatus::from_raw(status));
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Stops the command on a failure path; `end_descendants` reaps it with the rest, as no
/// blocking wait for this one pid can be trusted to return (a descendant may trace it).
fn kill_command(pid: libc::pid_t) {
    // SAFETY: kill with the unreaped child's pid.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}
