//! The parent's side of `SECCOMP_RET_USER_NOTIF`: receiving notifications from the
//! listener and answering them through a [`Supervisor`].
//!
//! The audit trail wraps it (`audit::Recording`). Invariant: a supervisor never allows a call
//! because of what it read from the child's memory (it could change after the check);
//! notification is for observing and denying. The one answer that reads memory,
//! `destination` (`destination.rs`), is given only for calls the policy allows: what it
//! reads can make it refuse one, never run one the policy refuses.

use capsule_artifacts::notify::{NotifyAnswer, NotifyTable};
#[cfg(target_os = "linux")]
use std::io;
#[cfg(target_os = "linux")]
use std::os::fd::{AsRawFd, OwnedFd};

/// One intercepted system call, as `struct seccomp_notif` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notification {
    pub id: u64,
    pub pid: u32,
    pub arch: u32,
    pub syscall: i32,
    pub instruction_pointer: u64,
    pub args: [u64; 6],
    /// The listener it came from, to check that it is still pending after reading the
    /// caller's memory (`None` outside a live launch, e.g. in tests).
    pub listener: Option<i32>,
}

#[cfg(target_os = "linux")]
impl Notification {
    /// Up to `len` bytes at `addr` in the calling thread's memory (`process_vm_readv`),
    /// read only while the notification is still pending: afterwards its thread may
    /// have died and its pid been reused by another process.
    ///
    /// What is read is a snapshot the command can change before the kernel reads it:
    /// good for a record or a refusal, never for letting a call run.
    pub fn read_memory(&self, addr: u64, len: usize) -> io::Result<Vec<u8>> {
        let listener =
            self.listener.ok_or_else(|| io::Error::other("no listener to check the notification against"))?;
        let mut buf = vec![0u8; len];
        let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: len };
        let remote = libc::iovec { iov_base: addr as usize as *mut libc::c_void, iov_len: len };
        // SAFETY: the local iovec covers `buf`, which lives for the call; the kernel
        // checks the remote range against the other process's address space.
        let read = unsafe { libc::process_vm_readv(self.pid as libc::pid_t, &local, 1, &remote, 1, 0) };
        if read < 0 {
            return Err(io::Error::last_os_error());
        }
        buf.truncate(read as usize);
        let mut id = self.id;
        // SAFETY: SECCOMP_IOCTL_NOTIF_ID_VALID reads one u64, a live local.
        if unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &mut id as *mut u64) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(buf)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    /// Fail the call with this errno (positive, e.g. `libc::EPERM`).
    Deny { errno: i32 },
    /// Let the kernel run the call (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`): only for calls
    /// the policy audits, never on the strength of the child's memory.
    Continue,
    /// Fail the call with this errno: a direct connection attempt (an address that is
    /// not the proxy's) while the proxy runs, recorded as a `network.connection`.
    RefuseDirect { errno: i32, syscall: &'static str, destination: std::net::SocketAddr },
    /// Let the kernel run the call, recording nothing here: the destination check found
    /// the proxy's address (the proxy records the connection) or no internet address.
    /// The network namespace still decides where the call can reach.
    Pass,
}

/// Decides notifications for one launch.
pub trait Supervisor {
    fn decide(&mut self, notification: &Notification) -> Response;

    /// Why the launch must stop (the audit log could not be written): the launcher
    /// kills the command and fails with exit 125.
    fn failure(&self) -> Option<String> {
        None
    }

    /// One connection attempt through the proxy has ended (recorded by the audit trail).
    fn connection(&mut self, _event: capsule_artifacts::log::ConnectionEvent) {}
}

/// Denies every notified call with `EPERM`: the stand-in until the audit log supervises.
#[derive(Debug, Default, Clone, Copy)]
pub struct DenyAll;

impl Supervisor for DenyAll {
    fn decide(&mut self, _: &Notification) -> Response {
        Response::Deny { errno: libc::EPERM }
    }
}

/// Answers with the policy's own decision, from the manifest's notification table
/// (computed by the compiler together with the filter and validated against it).
/// A notification the table has no answer for cannot happen with a validated
/// artifact; it is denied with EPERM, failing closed.
#[derive(Debug, Clone, Copy)]
pub struct PolicyAnswers<'a> {
    pub table: &'a NotifyTable,
    /// The target's `AUDIT_ARCH_*`: the table answers native calls only.
    pub native_arch: u32,
    /// The proxy's listening address in the command's namespace, when the policy runs
    /// one: the only destination [`NotifyAnswer::Destination`] lets through.
    pub proxy: Option<std::net::SocketAddr>,
}

impl PolicyAnswers<'_> {
    pub fn answer(&self, notification: &Notification) -> Response {
        if notification.arch != self.native_arch {
            return Response::Deny { errno: libc::EPERM };
        }
        match u32::try_from(notification.syscall).ok().and_then(|nr| self.table.answer(nr)) {
            Some(NotifyAnswer::Continue) => Response::Continue,
            Some(NotifyAnswer::Errno(errno)) => Response::Deny { errno: i32::from(errno) },
            #[cfg(target_os = "linux")]
            Some(NotifyAnswer::Destination) => match self.proxy {
                Some(proxy) => crate::destination::answer(notification, proxy),
                // A manifest that checks destinations without a proxy: fail closed.
                None => Response::Deny { errno: libc::EPERM },
            },
            #[cfg(not(target_os = "linux"))]
            Some(NotifyAnswer::Destination) => Response::Deny { errno: libc::EPERM },
            None => Response::Deny { errno: libc::EPERM },
        }
    }
}

impl Supervisor for PolicyAnswers<'_> {
    fn decide(&mut self, notification: &Notification) -> Response {
        self.answer(notification)
    }
}

/// A listener descriptor with buffers sized as the running kernel asks (Linux only).
#[cfg(target_os = "linux")]
pub(crate) struct Listener {
    fd: OwnedFd,
    notif_size: usize,
    resp_size: usize,
}

#[cfg(target_os = "linux")]
impl Listener {
    pub(crate) fn new(fd: OwnedFd) -> io::Result<Listener> {
        let mut sizes = libc::seccomp_notif_sizes { seccomp_notif: 0, seccomp_notif_resp: 0, seccomp_data: 0 };
        // SAFETY: SECCOMP_GET_NOTIF_SIZES writes one `struct seccomp_notif_sizes` to the
        // pointer, which is valid for the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_GET_NOTIF_SIZES,
                0,
                &mut sizes as *mut libc::seccomp_notif_sizes,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        // A newer kernel may use larger structures: the buffers take the larger size.
        let notif_size = usize::from(sizes.seccomp_notif).max(size_of::<libc::seccomp_notif>());
        let resp_size = usize::from(sizes.seccomp_notif_resp).max(size_of::<libc::seccomp_notif_resp>());
        Ok(Listener { fd, notif_size, resp_size })
    }

    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Receives one notification and sends the supervisor's answer. A target that died
    /// meanwhile (ENOENT) is not an error.
    pub(crate) fn answer_one(&self, supervisor: &mut dyn Supervisor) -> io::Result<()> {
        // u64 elements keep the buffers aligned for the kernel structures.
        let mut notif_buf = vec![0u64; self.notif_size.div_ceil(8)];
        // SAFETY: the buffer is zeroed (the kernel requires it), at least as large as the
        // kernel's `struct seccomp_notif`, and 8-byte aligned.
        let ret = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, notif_buf.as_mut_ptr()) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::EINTR) => Ok(()),
                _ => Err(err),
            };
        }
        // SAFETY: the buffer is aligned and holds at least a `struct seccomp_notif`,
        // which the kernel just filled in.
        let raw = unsafe { std::ptr::read(notif_buf.as_ptr().cast::<libc::seccomp_notif>()) };
        let notification = Notification {
            id: raw.id,
            pid: raw.pid,
            arch: raw.data.arch,
            syscall: raw.data.nr,
            instruction_pointer: raw.data.instruction_pointer,
            args: raw.data.args,
            listener: Some(self.fd.as_raw_fd()),
        };
        let (error, flags) = match supervisor.decide(&notification) {
            // errno 0 (a policy's `errno(0)`) makes the call return 0 without running.
            Response::Deny { errno } | Response::RefuseDirect { errno, .. } => (-errno.abs(), 0),
            Response::Continue | Response::Pass => (0, libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32),
        };
        let resp = libc::seccomp_notif_resp { id: raw.id, val: 0, error, flags };
        let mut resp_buf = vec![0u64; self.resp_size.div_ceil(8)];
        // SAFETY: the buffer is aligned and at least `size_of::<seccomp_notif_resp>()` bytes;
        // the response goes at its start and the rest stays zero.
        unsafe {
            std::ptr::write(resp_buf.as_mut_ptr().cast::<libc::seccomp_notif_resp>(), resp);
        }
        // SAFETY: the buffer holds a complete response of the kernel's size.
        let ret = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, resp_buf.as_mut_ptr()) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::ENOENT) {
                return Err(err);
            }
        }
        Ok(())
    }
}
