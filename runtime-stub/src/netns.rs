//! The command's network namespace: loopback only, with the proxy's listening socket
//! created inside it. Runs in the child, before Landlock and seccomp.
//!
//! A new network namespace holds one interface, `lo`, down; nothing routes out of
//! it. The child brings `lo` up, binds `127.0.0.1:PORT` and listens; the descriptor
//! lands in the table it shares with the launcher (`CLONE_FILES`), close-on-exec, and
//! the launcher's proxy accepts on it from its own namespace. So the command can
//! connect to the proxy and to nothing else: not the proxy's port on another loopback
//! address, not a server on the host's loopback, no UDP (DNS included) anywhere.
//!
//! Root creates the network namespace directly. Anyone else first creates a user
//! namespace that maps only its own uid and gid (as `unshare -rn` does; the kernel
//! allows it unprivileged where `user.max_user_namespaces` is not 0), which gives the
//! capability a network namespace needs; every capability is dropped again before
//! exec (child.rs).

use std::ffi::CString;
use std::os::fd::{IntoRawFd, RawFd};

/// Prepared by the parent, so the child allocates little.
#[derive(Debug, Clone)]
pub(crate) struct NetnsPlan {
    pub port: u16,
    /// `"<uid> <uid> 1\n"` and `"<gid> <gid> 1\n"`, for the user namespace.
    pub uid_map: CString,
    pub gid_map: CString,
}

impl NetnsPlan {
    pub(crate) fn new(port: u16) -> NetnsPlan {
        // SAFETY: geteuid and getegid cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        NetnsPlan {
            port,
            uid_map: CString::new(format!("{uid} {uid} 1\n")).expect("digits"),
            gid_map: CString::new(format!("{gid} {gid} 1\n")).expect("digits"),
        }
    }
}

/// Enters a new network namespace (after a user namespace if need be) and returns
/// the listening socket and a note for `--verbose`.
pub(crate) fn enter(plan: &NetnsPlan) -> Result<(RawFd, String), String> {
    // SAFETY: unshare with flags only.
    let direct = unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0;
    let how = if direct {
        "a network namespace"
    } else {
        let first = std::io::Error::last_os_error();
        // SAFETY: as above. The child is single-threaded, as CLONE_NEWUSER requires.
        if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) } != 0 {
            let second = std::io::Error::last_os_error();
            return Err(format!(
                "cannot give the command a network namespace of its own (unshare(CLONE_NEWNET): {first}; with a user \
                 namespace: {second}); `network: domains:` needs one to keep the command from every address but the \
                 proxy's (is user.max_user_namespaces 0?)"
            ));
        }
        write_file(c"/proc/self/setgroups", c"deny")?;
        write_file(c"/proc/self/uid_map", &plan.uid_map)?;
        write_file(c"/proc/self/gid_map", &plan.gid_map)?;
        "a user and a network namespace"
    };
    loopback_up()?;
    let listener = std::net::TcpListener::bind(("127.0.0.1", plan.port))
        .map_err(|e| format!("cannot listen on 127.0.0.1:{} in the command's namespace: {e}", plan.port))?;
    let note =
        format!("network: isolated in {how} holding only loopback; the proxy listens on 127.0.0.1:{} there", plan.port);
    Ok((listener.into_raw_fd(), note))
}

fn write_file(path: &std::ffi::CStr, text: &std::ffi::CStr) -> Result<(), String> {
    // SAFETY: open with a NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(format!("cannot open {}: {}", path.to_string_lossy(), std::io::Error::last_os_error()));
    }
    let bytes = text.to_bytes();
    // SAFETY: writes `bytes` (live for the call) to the descriptor just opened.
    let written = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    let error = std::io::Error::last_os_error();
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(fd) };
    if written != bytes.len() as isize {
        return Err(format!("cannot write {}: {error}", path.to_string_lossy()));
    }
    Ok(())
}

fn loopback_up() -> Result<(), String> {
    // SAFETY: socket with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!("cannot bring up loopback: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: an all-zero ifreq is valid; the name and flags are set below.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_LOOPBACK | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads the ifreq, which lives for the call.
    let ret = unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &ifr) };
    let error = std::io::Error::last_os_error();
    // SAFETY: closes the socket opened above.
    unsafe { libc::close(fd) };
    if ret != 0 {
        return Err(format!("cannot bring up loopback in the command's namespace: {error}"));
    }
    Ok(())
}
