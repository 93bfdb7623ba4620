//! The process entry of `capsule` and `capsule-launch`, in place of Rust's runtime
//! start-up.
//!
//! Rust's `main` wrapper asks the C library for the main thread's stack bounds, to
//! report a stack overflow by name, and glibc finds them by reading and parsing
//! /proc/self/maps: 3 to 4% of a launch on the development machine (docs/benchmarks.md,
//! "Third round"). The two front doors start every tool call of an agent, so their C
//! `main` calls [`run`] instead, which does the rest of what that wrapper does and they
//! rely on. A stack overflow still ends the process, on the guard gap the kernel keeps
//! below the stack (SIGSEGV), without Rust's message.

use std::io::Write;

/// Runs `body` as a binary's `main` and returns its exit code. Before it: closed
/// standard descriptors are opened on /dev/null, and SIGPIPE is ignored (a write to a
/// closed pipe fails with EPIPE instead of killing the supervisor; the command gets the
/// default back before exec). After it: stdout is flushed. A panic is reported by the
/// panic hook, as always, and exits 101, as Rust's runtime exits.
pub fn run(body: impl FnOnce() -> i32) -> std::ffi::c_int {
    open_standard_descriptors();
    // SAFETY: sets one signal's disposition to SIG_IGN; no handler is involved.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(101);
    let _ = std::io::stdout().flush();
    code
}

/// Opens /dev/null on each of descriptors 0, 1 and 2 that is closed, as Rust's runtime
/// does: the next file opened would otherwise take that number, and a message meant for
/// stderr would be written into it (the audit log, say). Aborts if it cannot.
fn open_standard_descriptors() {
    for fd in 0..3 {
        // SAFETY: F_GETFD reads a descriptor's flags and touches no memory.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF)
        {
            // SAFETY: opens a NUL-terminated path; the lowest free number is `fd`.
            if unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) } != fd {
                std::process::abort();
            }
        }
    }
}
