//! The tracer: runs one command under ptrace with a seccomp filter that returns
//! `SECCOMP_RET_TRACE`, and feeds every stop to a [`Recorder`].
//!
//! Mechanism (docs/profile.md says why): the child asks to be traced
//! (`PTRACE_TRACEME`), stops itself, installs a filter that returns
//! `SECCOMP_RET_TRACE` for every call not already known (`--from`) and execs. The
//! tracer sets `PTRACE_O_TRACESECCOMP` (a stop at each traced call's entry, with
//! `PTRACE_GET_SYSCALL_INFO` giving the arch, number and arguments),
//! `TRACECLONE|TRACEFORK|TRACEVFORK` (every descendant is traced from its first
//! instruction), `TRACEEXEC` (the exec tree) and `EXITKILL` (nothing outlives the
//! profiler). For calls whose result matters it resumes with `PTRACE_SYSCALL` to
//! see the syscall-exit stop (the result, and for an open the descriptor it made).
//!
//! Profiling observes; it does not confine: the command runs with the profiler's
//! rights. As a non-root user the child sets no_new_privs (the kernel requires it
//! for an unprivileged filter), so set-user-ID programs do not gain privileges while
//! profiled (nor would they under ptrace).
//!
//! The tracer is single-threaded (ptrace binds a tracee to the tracing thread). An
//! interval timer (`SIGALRM`, 100 ms, no `SA_RESTART`) wakes the blocking `waitpid`
//! to check the timeout and redraw the progress bar.

use super::record::{Exit, Recorder};
use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long background processes are followed after the command itself has ended,
/// before they are killed (docs/profile.md).
pub const LINGER: Duration = Duration::from_secs(1);

pub struct TraceOptions<'a> {
    /// The resolved program and argv (argv[0] as written).
    pub program: &'a Path,
    pub argv: &'a [String],
    pub cwd: &'a Path,
    pub quiet: bool,
    pub timeout: Duration,
    /// Syscall numbers (native arch) the filter lets through without a stop.
    pub known: &'a [u32],
    /// Run with the profiler's whole environment (`--within`: `capsule run` filters
    /// it for the command by the outer policy), not only `ENV_PASS`.
    pub full_env: bool,
    /// Called about every 100 ms with the number of calls seen so far.
    pub progress: &'a mut dyn FnMut(u64),
}

pub struct Traced {
    pub exit: Exit,
    pub duration: Duration,
    pub timed_out: bool,
    /// Processes still alive when the command ended (or timed out), killed.
    pub killed: u64,
}

const PTRACE_EVENT_STOP_SYSGOOD: i32 = libc::SIGTRAP | 0x80;
const PTRACE_SYSCALL_INFO_ENTRY: u8 = 1;
const PTRACE_SYSCALL_INFO_EXIT: u8 = 2;
const PTRACE_SYSCALL_INFO_SECCOMP: u8 = 3;

/// `struct ptrace_syscall_info` (linux/ptrace.h): a header and a union of at most
/// 60 bytes, which `data` covers (entry/seccomp: nr, args[6], ret_data; exit: rval,
/// is_error).
#[repr(C)]
#[derive(Clone, Copy)]
struct SyscallInfo {
    op: u8,
    pad: [u8; 3],
    arch: u32,
    instruction_pointer: u64,
    stack_pointer: u64,
    data: [u64; 8],
}

/// What a stop reported.
pub enum Info {
    Entry { arch: u32, nr: u64, args: [u64; 6] },
    Exit { rval: i64, is_error: bool },
    Other,
}

fn syscall_info(pid: i32) -> io::Result<Info> {
    let mut info = SyscallInfo { op: 0, pad: [0; 3], arch: 0, instruction_pointer: 0, stack_pointer: 0, data: [0; 8] };
    // SAFETY: PTRACE_GET_SYSCALL_INFO writes at most `size` bytes (the size passed as
    // addr) into the buffer, a live local of that size.
    let ret = unsafe {
        libc::ptrace(
            libc::PTRACE_GET_SYSCALL_INFO,
            pid,
            size_of::<SyscallInfo>() as *mut libc::c_void,
            &mut info as *mut SyscallInfo,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let args = [info.data[1], info.data[2], info.data[3], info.data[4], info.data[5], info.data[6]];
    Ok(match info.op {
        PTRACE_SYSCALL_INFO_ENTRY | PTRACE_SYSCALL_INFO_SECCOMP => {
            Info::Entry { arch: info.arch, nr: info.data[0], args }
        }
        PTRACE_SYSCALL_INFO_EXIT => Info::Exit { rval: info.data[0] as i64, is_error: info.data[1] as u8 != 0 },
        _ => Info::Other,
    })
}

fn ptrace_resume(request: libc::c_uint, pid: i32, signal: i32) {
    // SAFETY: resuming a tracee passes no memory; a tracee that died meanwhile makes
    // it fail with ESRCH, which is harmless (its exit is reported by waitpid).
    unsafe {
        libc::ptrace(request, pid, std::ptr::null_mut::<libc::c_void>(), signal as usize as *mut libc::c_void);
    }
}

fn event_message(pid: i32) -> Option<u64> {
    let mut message: libc::c_ulong = 0;
    // SAFETY: PTRACE_GETEVENTMSG writes one unsigned long to the pointer, a live local.
    let ret = unsafe {
        libc::ptrace(libc::PTRACE_GETEVENTMSG, pid, std::ptr::null_mut::<libc::c_void>(), &mut message as *mut _)
    };
    (ret == 0).then_some(message as u64)
}

/// True when the stop is a group-stop, not a signal-delivery stop (PTRACE_GETSIGINFO
/// fails with EINVAL for a group-stop).
fn is_group_stop(pid: i32) -> bool {
    // SAFETY: siginfo_t is plain data; PTRACE_GETSIGINFO writes one into the local.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let ret = unsafe {
        libc::ptrace(libc::PTRACE_GETSIGINFO, pid, std::ptr::null_mut::<libc::c_void>(), &mut info as *mut _)
    };
    ret < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL)
}

/// Reads up to `max` bytes of the tracee's memory at `addr`, stopping at the first
/// unreadable page.
pub fn read_memory(pid: i32, addr: u64, max: usize) -> Vec<u8> {
    const PAGE: u64 = 4096;
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < max && at != 0 {
        let chunk = ((PAGE - at % PAGE) as usize).min(max - out.len());
        let mut buf = vec![0u8; chunk];
        let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: chunk };
        let remote = libc::iovec { iov_base: at as *mut libc::c_void, iov_len: chunk };
        // SAFETY: the local iovec covers `buf`, live and `chunk` bytes long; the remote
        // one is only an address in the tracee, which the kernel checks.
        let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
        if (n as usize) < chunk {
            break;
        }
        at += n as u64;
    }
    out
}

/// A NUL-terminated string of the tracee (at most PATH_MAX bytes); `None` when the
/// address cannot be read or no NUL comes within the limit.
pub fn read_c_string(pid: i32, addr: u64) -> Option<Vec<u8>> {
    const PAGE: u64 = 4096;
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < libc::PATH_MAX as usize && at != 0 {
        let chunk = (PAGE - at % PAGE) as usize;
        let bytes = read_memory(pid, at, chunk);
        if bytes.is_empty() {
            return None;
        }
        if let Some(end) = bytes.iter().position(|&b| b == 0) {
            out.extend_from_slice(&bytes[..end]);
            return Some(out);
        }
        out.extend_from_slice(&bytes);
        at += bytes.len() as u64;
    }
    None
}

/// The BPF filter: foreign arch and x32 numbers trace; `known` numbers are allowed;
/// everything else traces.
fn filter(native_arch: u32, known: &[u32]) -> Vec<libc::sock_filter> {
    let stmt = |code: u32, k: u32| libc::sock_filter { code: code as u16, jt: 0, jf: 0, k };
    let jump = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter { code: code as u16, jt, jf, k };
    let ld = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let ret = libc::BPF_RET | libc::BPF_K;
    let jeq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let jge = libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K;
    let mut program = vec![
        stmt(ld, 4), // seccomp_data.arch
        jump(jeq, native_arch, 1, 0),
        stmt(ret, libc::SECCOMP_RET_TRACE),
        stmt(ld, 0),                  // seccomp_data.nr
        jump(jge, 0x4000_0000, 0, 1), // x32 (and any number with the bit set)
        stmt(ret, libc::SECCOMP_RET_TRACE),
    ];
    for &nr in known {
        program.push(jump(jeq, nr, 0, 1));
        program.push(stmt(ret, libc::SECCOMP_RET_ALLOW));
    }
    program.push(stmt(ret, libc::SECCOMP_RET_TRACE));
    program
}

extern "C" fn on_alarm(_: libc::c_int) {}

/// The 100 ms interval timer that interrupts `waitpid`; stopped on drop.
struct Ticker {
    previous: libc::sigaction,
}

impl Ticker {
    fn start() -> io::Result<Ticker> {
        // SAFETY: both sigaction values are zeroed (valid) locals with an emptied mask;
        // the handler is an extern "C" function that does nothing. setitimer reads a
        // live local.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_alarm as *const () as usize;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = 0; // no SA_RESTART: waitpid returns EINTR
            let mut previous: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGALRM, &action, &mut previous) < 0 {
                return Err(io::Error::last_os_error());
            }
            let tick = libc::timeval { tv_sec: 0, tv_usec: 100_000 };
            let timer = libc::itimerval { it_interval: tick, it_value: tick };
            if libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut()) < 0 {
                let e = io::Error::last_os_error();
                libc::sigaction(libc::SIGALRM, &previous, std::ptr::null_mut());
                return Err(e);
            }
            Ok(Ticker { previous })
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        // SAFETY: a zero itimerval stops the timer; the saved action is restored.
        unsafe {
            let zero: libc::itimerval = std::mem::zeroed();
            libc::setitimer(libc::ITIMER_REAL, &zero, std::ptr::null_mut());
            libc::sigaction(libc::SIGALRM, &self.previous, std::ptr::null_mut());
        }
    }
}

/// The profiler process adopts orphaned descendants, so a daemonising command's
/// processes are reaped here rather than by init.
pub fn become_subreaper() {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer and touches no memory.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

fn has_cap_sys_admin() -> bool {
    // Bit 21 of the effective set in /proc/self/status.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("CapEff:").map(|v| v.trim().to_owned())))
        .and_then(|hex| u64::from_str_radix(&hex, 16).ok())
        .is_some_and(|caps| caps & (1 << 21) != 0)
}

#[derive(Default)]
struct Tracee {
    /// The entry of the call in progress, when its exit is wanted.
    pending: Option<super::record::Pending>,
    /// Its first stop (the SIGSTOP of an auto-attached child) is still to come.
    fresh: bool,
}

/// Runs the command traced and records what it does.
pub fn trace(options: TraceOptions<'_>, recorder: &mut Recorder) -> io::Result<Traced> {
    let to_c = |s: &[u8]| CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte"));
    use std::os::unix::ffi::OsStrExt;
    let program = to_c(options.program.as_os_str().as_bytes())?;
    let cwd = to_c(options.cwd.as_os_str().as_bytes())?;
    let argv: Vec<CString> = options.argv.iter().map(|a| to_c(a.as_bytes())).collect::<Result<_, _>>()?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    // The environment the generated policy will give (`env: pass:`), so that the
    // profile and the replay see the same command.
    let env: Vec<CString> = std::env::vars_os()
        .filter(|(name, _)| options.full_env || name.to_str().is_some_and(|n| super::generate::ENV_PASS.contains(&n)))
        .map(|(name, value)| {
            let mut entry = name.as_bytes().to_vec();
            entry.push(b'=');
            entry.extend_from_slice(value.as_bytes());
            to_c(&entry)
        })
        .collect::<Result<_, _>>()?;
    let mut env_ptrs: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    let native = recorder.native_arch();
    let program_filter = filter(native, options.known);
    let fprog = libc::sock_fprog { len: program_filter.len() as u16, filter: program_filter.as_ptr() as *mut _ };
    let devnull = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?;
    let devnull_fd = devnull.as_raw_fd();
    let quiet = options.quiet;
    let set_nnp = !has_cap_sys_admin();

    let started = Instant::now();
    // SAFETY: the profiler is single-threaded here (the progress bar has no ticking
    // thread), so the child may run the code below, which only makes async-signal-safe
    // calls on memory prepared before the fork, and ends in execve or _exit.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(io::Error::last_os_error());
    }
    if child == 0 {
        // SAFETY: the child: raw system calls on prepared buffers, then exec or _exit.
        unsafe {
            if quiet {
                libc::dup2(devnull_fd, 0);
                libc::dup2(devnull_fd, 1);
                libc::dup2(devnull_fd, 2);
            }
            if libc::chdir(cwd.as_ptr()) < 0 {
                libc::_exit(126);
            }
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) < 0 {
                libc::_exit(125);
            }
            libc::raise(libc::SIGSTOP);
            if set_nnp && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
                libc::_exit(125);
            }
            if libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &fprog as *const libc::sock_fprog) < 0
            {
                libc::_exit(125);
            }
            libc::execve(program.as_ptr(), argv_ptrs.as_ptr(), env_ptrs.as_ptr());
            let code = if *libc::__errno_location() == libc::ENOENT { 127 } else { 126 };
            libc::_exit(code);
        }
    }
    drop(devnull);
    let root = child;
    let mut status = 0;
    // SAFETY: waits for our own child's first stop; `status` is a live local.
    let got = unsafe { libc::waitpid(root, &mut status, libc::__WALL) };
    if got != root || !libc::WIFSTOPPED(status) {
        let scope = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").unwrap_or_default();
        return Err(io::Error::other(format!(
            "the command's process could not be traced (PTRACE_TRACEME refused{})",
            match scope.trim() {
                "2" | "3" => format!(": kernel.yama.ptrace_scope is {}", scope.trim()),
                _ => String::new(),
            }
        )));
    }
    let options_bits = libc::PTRACE_O_TRACESYSGOOD
        | libc::PTRACE_O_TRACESECCOMP
        | libc::PTRACE_O_TRACECLONE
        | libc::PTRACE_O_TRACEFORK
        | libc::PTRACE_O_TRACEVFORK
        | libc::PTRACE_O_TRACEEXEC
        | libc::PTRACE_O_EXITKILL;
    // SAFETY: PTRACE_SETOPTIONS takes the option bits as data, no memory.
    if unsafe { libc::ptrace(libc::PTRACE_SETOPTIONS, root, 0, options_bits as usize) } < 0 {
        let e = io::Error::last_os_error();
        // SAFETY: kills and reaps our own child.
        unsafe {
            libc::kill(root, libc::SIGKILL);
            libc::waitpid(root, &mut status, libc::__WALL);
        }
        return Err(e);
    }
    let ticker = Ticker::start()?;
    let mut tracees: std::collections::BTreeMap<i32, Tracee> = std::collections::BTreeMap::new();
    tracees.insert(root, Tracee::default());
    recorder.process_started(root, None);
    ptrace_resume(libc::PTRACE_CONT, root, 0);

    let deadline = started + options.timeout;
    let mut root_status: Option<i32> = None;
    let mut root_ended_at: Option<Instant> = None;
    let mut timed_out = false;
    let mut killed = 0u64;
    let kill_all = |tracees: &std::collections::BTreeMap<i32, Tracee>, killed: &mut u64| {
        for &pid in tracees.keys() {
            // SAFETY: SIGKILL to a traced descendant (its pid is still ours: it has not
            // been reaped, as it is in the map).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            *killed += 1;
        }
    };
    let mut stopped_killing = false;
    loop {
        // SAFETY: `status` is a live local.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::__WALL) };
        if pid < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => {
                    (options.progress)(recorder.calls());
                    let now = Instant::now();
                    if !stopped_killing && now >= deadline {
                        timed_out = root_status.is_none();
                        kill_all(&tracees, &mut killed);
                        stopped_killing = true;
                    } else if !stopped_killing && root_ended_at.is_some_and(|t| now >= t + LINGER) {
                        kill_all(&tracees, &mut killed);
                        stopped_killing = true;
                    }
                    continue;
                }
                Some(libc::ECHILD) => break,
                _ => return Err(e),
            }
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            tracees.remove(&pid);
            recorder.process_ended(pid);
            if pid == root {
                root_status = Some(status);
                root_ended_at = Some(Instant::now());
                if tracees.is_empty() {
                    continue;
                }
            }
            if root_status.is_some() && tracees.is_empty() {
                continue;
            }
            continue;
        }
        if !libc::WIFSTOPPED(status) {
            continue;
        }
        let signal = libc::WSTOPSIG(status);
        let event = (status >> 16) & 0xff;
        let tracee = tracees.entry(pid).or_insert_with(|| Tracee { pending: None, fresh: true });
        let resume = |tracee: &Tracee, sig: i32| {
            let request = if tracee.pending.is_some() { libc::PTRACE_SYSCALL } else { libc::PTRACE_CONT };
            ptrace_resume(request, pid, sig);
        };
        if signal == PTRACE_EVENT_STOP_SYSGOOD {
            if let (Some(pending), Ok(Info::Exit { rval, is_error })) = (tracee.pending.take(), syscall_info(pid)) {
                recorder.exit(pid, pending, rval, is_error);
            }
            tracee.pending = None;
            resume(tracee, 0);
            continue;
        }
        if signal == libc::SIGTRAP && event != 0 {
            match event {
                libc::PTRACE_EVENT_SECCOMP => {
                    if let Ok(Info::Entry { arch, nr, args }) = syscall_info(pid) {
                        tracee.pending = recorder.entry(pid, arch, nr, args);
                    }
                }
                libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK | libc::PTRACE_EVENT_CLONE => {
                    if let Some(new) = event_message(pid) {
                        let new = new as i32;
                        tracees.entry(new).or_insert(Tracee { pending: None, fresh: true });
                        recorder.process_started(new, Some(pid));
                    }
                }
                libc::PTRACE_EVENT_EXEC => {
                    // A thread other than the leader that execs takes the leader's pid.
                    if let Some(former) = event_message(pid).map(|p| p as i32)
                        && former != pid
                    {
                        let pending = tracees.remove(&former).and_then(|t| t.pending);
                        recorder.process_ended(former);
                        let tracee = tracees.entry(pid).or_default();
                        if pending.is_some() {
                            tracee.pending = pending;
                        }
                    }
                    recorder.exec(pid);
                }
                _ => {}
            }
            let tracee = tracees.entry(pid).or_default();
            tracee.fresh = false;
            resume(tracee, 0);
            continue;
        }
        if tracee.fresh && signal == libc::SIGSTOP {
            tracee.fresh = false;
            resume(tracee, 0);
            continue;
        }
        tracee.fresh = false;
        if is_group_stop(pid) {
            resume(tracee, 0);
        } else {
            resume(tracee, signal);
        }
    }
    drop(ticker);
    (options.progress)(recorder.calls());
    let exit = match root_status {
        Some(s) if libc::WIFEXITED(s) => {
            let code = libc::WEXITSTATUS(s);
            Exit::Code(code)
        }
        Some(s) if libc::WIFSIGNALED(s) => Exit::Signal(libc::WTERMSIG(s)),
        _ => Exit::Signal(libc::SIGKILL),
    };
    // Killing the stragglers counts them; the root (if killed by the timeout) is not one.
    let killed = if timed_out { killed.saturating_sub(1) } else { killed };
    Ok(Traced { exit, duration: started.elapsed(), timed_out, killed })
}

/// `readlink /proc/PID/...`, as a path, when it names a file (not `pipe:[..]`).
pub fn proc_link(pid: i32, what: &str) -> Option<PathBuf> {
    let target = std::fs::read_link(format!("/proc/{pid}/{what}")).ok()?;
    target.is_absolute().then_some(target)
}
