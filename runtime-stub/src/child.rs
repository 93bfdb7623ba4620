//! The child between clone and exec: session, signal mask, Landlock, rlimits,
//! no_new_privs, seccomp, exec.
//!
//! The child is created with `CLONE_VFORK | CLONE_FILES` (and its own copy of memory):
//! the parent sleeps until the child has exec'd or exited, and the seccomp listener the
//! child creates lands in the descriptor table it shares with the parent. So nothing
//! but `execve` runs after the filter is installed: no `sendmsg` for the filter to deny,
//! notify or kill. Results come back through a shared anonymous page, written with
//! plain stores, also without system calls.

use rustix::process::{Resource, Rlimit};
use std::ffi::{CString, c_char};
use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;

use crate::sandbox::LandlockPlan;
use crate::seccomp::Program;
use crate::{EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND, EXIT_SETUP_FAILURE, Failure};

const NOTES_CAPACITY: usize = 8192;
const ERROR_CAPACITY: usize = 4096;

/// Everything the child needs, prepared by the parent so the child allocates little.
pub(crate) struct ChildPlan {
    pub exec_path: CString,
    /// Null-terminated pointer arrays into `_argv` and `_envp`.
    pub argv: Vec<*const c_char>,
    pub envp: Vec<*const c_char>,
    pub _argv: Vec<CString>,
    pub _envp: Vec<CString>,
    pub signal_mask: libc::sigset_t,
    pub landlock: LandlockPlan,
    pub rlimits: Vec<(Resource, u64, &'static str)>,
    pub program: Program,
    pub user_notif: bool,
    /// Written to the report after the filter is installed: prepared here because the
    /// filter may forbid the allocator's system calls.
    pub seccomp_note: String,
    /// A network namespace holding only loopback and the proxy's socket.
    pub netns: Option<crate::netns::NetnsPlan>,
    /// The proxy's settings, for the parent once the child has exec'd.
    pub proxy: Option<crate::proxy::Config>,
}

#[repr(C)]
struct Report {
    failure_exit: i32,
    exec_errno: i32,
    listener_fd: RawFd,
    proxy_fd: RawFd,
    notes_len: u32,
    error_len: u32,
    notes: [u8; NOTES_CAPACITY],
    error: [u8; ERROR_CAPACITY],
}

/// What the child left for the parent.
#[derive(Debug)]
pub(crate) struct ChildReport {
    pub failure: Option<Failure>,
    pub exec_errno: i32,
    pub listener_fd: Option<RawFd>,
    /// The proxy's listening socket in the command's network namespace.
    pub proxy_fd: Option<RawFd>,
    pub notes: Vec<String>,
}

/// A `MAP_SHARED` anonymous page the child writes and the parent reads once the child
/// has exec'd or exited (the vfork wait orders the two).
pub(crate) struct SharedReport {
    report: NonNull<Report>,
}

impl SharedReport {
    pub(crate) fn new() -> io::Result<SharedReport> {
        // SAFETY: an anonymous shared mapping of the report's size; no existing memory is
        // touched. The kernel zero-fills it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size_of::<Report>(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let report = NonNull::new(ptr.cast::<Report>()).expect("mmap does not return null on success");
        let mut shared = SharedReport { report };
        shared.get().listener_fd = -1;
        shared.get().proxy_fd = -1;
        Ok(shared)
    }

    fn get(&mut self) -> &mut Report {
        // SAFETY: the mapping is valid and sized for a Report for the life of `self`;
        // all-zero bytes are a valid Report; only one process touches it at a time
        // (the parent is suspended while the child runs).
        unsafe { self.report.as_mut() }
    }

    fn note(&mut self, text: &str) {
        let report = self.get();
        let start = report.notes_len as usize;
        let line = text.as_bytes();
        let end = (start + line.len() + 1).min(NOTES_CAPACITY);
        if end > start + 1 {
            report.notes[start..end - 1].copy_from_slice(&line[..end - 1 - start]);
            report.notes[end - 1] = b'\n';
            report.notes_len = end as u32;
        }
    }

    fn fail(&mut self, exit_code: i32, message: &str) {
        let report = self.get();
        let len = message.len().min(ERROR_CAPACITY);
        report.error[..len].copy_from_slice(&message.as_bytes()[..len]);
        report.error_len = len as u32;
        report.failure_exit = exit_code;
    }

    pub(crate) fn read(&mut self) -> ChildReport {
        let report = self.get();
        let notes =
            String::from_utf8_lossy(&report.notes[..report.notes_len as usize]).lines().map(str::to_owned).collect();
        let message = String::from_utf8_lossy(&report.error[..report.error_len as usize]).into_owned();
        ChildReport {
            failure: (report.failure_exit != 0).then(|| Failure::new(report.failure_exit, message)),
            exec_errno: report.exec_errno,
            listener_fd: (report.listener_fd >= 0).then_some(report.listener_fd),
            proxy_fd: (report.proxy_fd >= 0).then_some(report.proxy_fd),
            notes,
        }
    }
}

impl Drop for SharedReport {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`, which nothing uses afterwards.
        unsafe {
            libc::munmap(self.report.as_ptr().cast(), size_of::<Report>());
        }
    }
}

/// Starts the child and returns its pid once it has exec'd or failed.
pub(crate) fn spawn(plan: &ChildPlan, report: &mut SharedReport) -> io::Result<libc::pid_t> {
    let flags = (libc::CLONE_VFORK | libc::CLONE_FILES | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: clone without CLONE_VM and with a null stack behaves like fork: the child
    // gets a copy of the address space and continues on its copy of this stack. The
    // child never returns from `run_child`, so it cannot run the parent's code.
    // The launcher calls this from a single thread, so no lock is held in the copy.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    match pid {
        p if p < 0 => Err(io::Error::last_os_error()),
        0 => run_child(plan, report),
        p => Ok(p as libc::pid_t),
    }
}

fn run_child(plan: &ChildPlan, report: &mut SharedReport) -> ! {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| setup_and_exec(plan, report)));
    let code = match outcome {
        Ok(failure) => {
            // Before the filter this records the reason; after it only plain stores run.
            if report.get().failure_exit == 0 {
                report.fail(failure.exit_code, &failure.message);
            }
            failure.exit_code
        }
        Err(_) => {
            report.fail(EXIT_SETUP_FAILURE, "the launcher's child panicked during setup");
            EXIT_SETUP_FAILURE
        }
    };
    // SAFETY: _exit ends the child without running the parent's atexit handlers or
    // flushing its copy of the parent's buffers.
    unsafe { libc::_exit(code) }
}

/// Returns only on failure.
/// The command runs with no capabilities, even as root: a root process keeping
/// CAP_SYS_ADMIN or CAP_PERFMON passes Landlock's ptrace check and can read
/// /proc/PID/environ of processes outside the sandbox. The bounding set is emptied
/// (when this process may: CAP_SETPCAP), so exec cannot give root its capabilities
/// back; then the ambient, inheritable, permitted and effective sets are cleared.
/// Only system calls: no allocation.
fn drop_capabilities() -> Result<(), String> {
    use rustix::thread::{CapabilitySet, CapabilitySets};
    let held = rustix::thread::capabilities(None).map_err(|e| format!("cannot read the capabilities: {e}"))?;
    if held.effective.contains(CapabilitySet::SETPCAP) {
        for cap in CapabilitySet::all().iter() {
            match rustix::thread::remove_capability_from_bounding_set(cap) {
                // EINVAL: a capability this kernel does not have.
                Ok(()) | Err(rustix::io::Errno::INVAL) => {}
                Err(e) => return Err(format!("cannot empty the capability bounding set: {e}")),
            }
        }
    }
    rustix::thread::clear_ambient_capability_set()
        .map_err(|e| format!("cannot clear the ambient capabilities: {e}"))?;
    let none = CapabilitySets {
        effective: CapabilitySet::empty(),
        permitted: CapabilitySet::empty(),
        inheritable: CapabilitySet::empty(),
    };
    rustix::thread::set_capabilities(None, none).map_err(|e| format!("cannot drop the capabilities: {e}"))
}

fn setup_and_exec(plan: &ChildPlan, report: &mut SharedReport) -> Failure {
    let setup = |e: String| Failure::new(EXIT_SETUP_FAILURE, e);

    // A new session has no controlling terminal, so TIOCSTI cannot type into the caller's.
    if let Err(e) = rustix::process::setsid() {
        return setup(format!("setsid failed: {e}"));
    }
    // The launcher ignores SIGPIPE (Rust's runtime does, so a closed stderr cannot kill
    // the supervisor), and an ignored signal stays ignored across exec. The command
    // gets the default back, as `std::process::Command` gives it, so `yes | head -1`
    // ends quietly instead of reporting a broken pipe.
    // SAFETY: sets the disposition of one signal to SIG_DFL; no handler is involved.
    if unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) } == libc::SIG_ERR {
        return setup("cannot restore SIGPIPE's default action".to_owned());
    }
    // SAFETY: restores the caller's signal mask from a valid sigset_t; the old mask is not read.
    if unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &plan.signal_mask, std::ptr::null_mut()) } != 0 {
        return setup("cannot restore the signal mask".to_owned());
    }
    // Before Landlock and seccomp, which would forbid unshare and the socket set-up.
    if let Some(netns) = &plan.netns {
        match crate::netns::enter(netns) {
            Ok((fd, note)) => {
                report.get().proxy_fd = fd;
                report.note(&note);
            }
            Err(e) => return setup(e),
        }
    }
    match plan.landlock.apply() {
        Ok(note) => report.note(&note),
        Err(e) => return setup(e),
    }
    for &(resource, value, name) in &plan.rlimits {
        let limit = Rlimit { current: Some(value), maximum: Some(value) };
        if let Err(e) = rustix::process::setrlimit(resource, limit) {
            let hint = if e == rustix::io::Errno::PERM { " (raising a hard limit needs CAP_SYS_RESOURCE)" } else { "" };
            return setup(format!("cannot set the {name} limit to {value}: {e}{hint}"));
        }
    }
    if let Err(e) = drop_capabilities() {
        return setup(e);
    }
    // SAFETY: prctl with integer arguments only.
    let nnp = unsafe {
        libc::prctl(
            libc::PR_SET_NO_NEW_PRIVS,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    // SAFETY: as above.
    let nnp_now = unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) };
    if nnp != 0 || nnp_now != 1 {
        return setup(format!("cannot set no_new_privs: {}", io::Error::last_os_error()));
    }

    // From here on the filter applies: no allocation, no system call but execve.
    match plan.program.install(plan.user_notif) {
        Ok(listener) => {
            report.get().listener_fd = listener.unwrap_or(-1);
            report.note(&plan.seccomp_note);
        }
        Err(e) => return setup(format!("the kernel refused the seccomp filter: {e}")),
    }
    // SAFETY: the path and both arrays are null-terminated and point into CStrings that
    // the plan keeps alive.
    unsafe {
        libc::execve(plan.exec_path.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr());
    }
    let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
    report.get().exec_errno = errno;
    let code = if errno == libc::ENOENT || errno == libc::ENOTDIR { EXIT_NOT_FOUND } else { EXIT_CANNOT_EXECUTE };
    report.get().failure_exit = code;
    // Not stored: the message is built by the parent from exec_errno, without allocating here.
    Failure::new(code, String::new())
}
