//! The cost of a system call under a filter, on the real kernel: each measurement runs
//! in a forked child that installs the filter (or none, for the baseline), checks the
//! call's outcome once, then times `iterations` calls with `libc::syscall`.

use anyhow::{Context, bail, ensure};
use capsule_compiler::bpf::Insn;
use std::time::Instant;

/// One system call, as the loop makes it.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    pub nr: libc::c_long,
    pub args: [u64; 6],
}

/// What the call returned the first time, in the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Returned {
    pub ret: i64,
    /// `errno` when `ret` is -1, else 0.
    pub errno: i32,
}

/// What the child reports through its pipe.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Report {
    nanos: u64,
    ret: i64,
    errno: i32,
    /// 0: measured; else the step that failed (1: no_new_privs, 2: seccomp).
    failed_step: i32,
    failed_errno: i32,
}

fn make_call(call: &Call) -> libc::c_long {
    let a = call.args.map(|a| a as libc::c_long);
    // SAFETY: the benchmark's calls are chosen to have no memory effects (numbers and
    // arguments that read or write no user memory: see bpf.rs).
    unsafe { libc::syscall(call.nr, a[0], a[1], a[2], a[3], a[4], a[5]) }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The child: install, check once, time the loop, report. Only system calls and no
/// allocation after the fork.
fn child(filter: Option<&libc::sock_fprog>, call: &Call, iterations: u64, out: libc::c_int) -> ! {
    let mut report = Report::default();
    'run: {
        if let Some(prog) = filter {
            // SAFETY: plain prctl with integer arguments.
            if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                (report.failed_step, report.failed_errno) = (1, errno());
                break 'run;
            }
            // SAFETY: `prog` points to a live sock_fprog whose filter outlives the call
            // (the kernel copies it).
            let rc = unsafe {
                libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, prog as *const libc::sock_fprog)
            };
            if rc != 0 {
                (report.failed_step, report.failed_errno) = (2, errno());
                break 'run;
            }
        }
        let ret = make_call(call);
        report.ret = ret;
        report.errno = if ret == -1 { errno() } else { 0 };
        for _ in 0..iterations / 100 {
            std::hint::black_box(make_call(std::hint::black_box(call)));
        }
        let start = Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(make_call(std::hint::black_box(call)));
        }
        report.nanos = start.elapsed().as_nanos() as u64;
    }
    // SAFETY: writing a plain-old-data struct to our pipe, then leaving without
    // running the parent's atexit handlers or destructors.
    unsafe {
        libc::write(out, (&raw const report).cast(), size_of::<Report>());
        libc::_exit(0)
    }
}

/// Nanoseconds per call, and what the call returned, with `filter` installed (none:
/// the unfiltered baseline).
pub fn ns_per_call(filter: Option<&[Insn]>, call: Call, iterations: u64) -> anyhow::Result<(f64, Returned)> {
    let insns: Vec<libc::sock_filter> = filter
        .unwrap_or_default()
        .iter()
        .map(|i| libc::sock_filter { code: i.code, jt: i.jt, jf: i.jf, k: i.k })
        .collect();
    let prog = libc::sock_fprog {
        len: u16::try_from(insns.len()).context("filter longer than 65535 instructions")?,
        filter: insns.as_ptr().cast_mut(),
    };
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    ensure!(unsafe { libc::pipe(fds.as_mut_ptr()) } == 0, "pipe: {}", std::io::Error::last_os_error());
    let [read_end, write_end] = fds;
    // SAFETY: the benchmark is single-threaded here, and the child only makes system
    // calls before `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        child(filter.map(|_| &prog), &call, iterations, write_end);
    }
    // SAFETY: closing our copy of the write end, which we own.
    unsafe { libc::close(write_end) };
    ensure!(pid > 0, "fork: {}", std::io::Error::last_os_error());
    let mut report = Report::default();
    // SAFETY: reading at most size_of::<Report>() bytes into a plain-old-data struct.
    let n = unsafe { libc::read(read_end, (&raw mut report).cast(), size_of::<Report>()) };
    // SAFETY: closing the read end, which we own.
    unsafe { libc::close(read_end) };
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    ensure!(
        n == size_of::<Report>() as isize && libc::WIFEXITED(status),
        "the measuring child died (wait status {status:#x}): the filter killed it?"
    );
    match report.failed_step {
        0 => {}
        1 => bail!("PR_SET_NO_NEW_PRIVS: {}", std::io::Error::from_raw_os_error(report.failed_errno)),
        _ => bail!("seccomp(SET_MODE_FILTER): {}", std::io::Error::from_raw_os_error(report.failed_errno)),
    }
    Ok((report.nanos as f64 / iterations as f64, Returned { ret: report.ret, errno: report.errno }))
}
