//! The proxy's relay on Linux: the bytes move between the two sockets with `splice(2)`
//! through a pipe per direction, never copied into the launcher.

use super::{poll_pair, relay_copying};
use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The most one `splice(2)` into a pipe asks for: the pipe's room bounds it anyway.
const SPLICE_CHUNK: usize = 1 << 20;

/// Copies both ways on this thread until both sides are done: returns (client to
/// upstream, upstream to client) bytes, counted as handed to the receiving socket.
/// Non-blocking sockets and poll(2); the bytes move with `splice(2)` through a pipe
/// per direction, so the payload is never copied into the launcher (the kernel moves
/// page references from one socket to the other). Ends when both sides have
/// finished, or when one cannot take what is left for it. Chosen by measurement
/// against read and write through a buffer, a thread per direction (splicing or
/// copying) and larger pipes and socket buffers (docs/benchmarks.md).
pub(super) fn relay(client: &TcpStream, upstream: &TcpStream) -> (u64, u64) {
    let (Ok(up), Ok(down)) = (Pipe::new(), Pipe::new()) else {
        // Out of descriptors: copy through a buffer instead.
        return relay_copying(client, upstream);
    };
    let _ = client.set_nonblocking(true);
    let _ = upstream.set_nonblocking(true);
    let new = |pipe| Spliced { pipe, held: 0, full: false, open: true, ended: false, total: 0 };
    let mut dirs = [new(up), new(down)];
    // Slot 0 is the client, slot 1 the upstream; direction d reads slot d.
    let sockets = [client, upstream];
    let mut failed = false;
    // Whether any byte has gone into a pipe yet: until then, the copying relay can
    // still take over.
    let mut moved = false;
    while !failed {
        let mut events = [0i16; 2];
        for (d, dir) in dirs.iter().enumerate() {
            if dir.held > 0 {
                events[1 - d] |= libc::POLLOUT;
            }
            if dir.open && !dir.full {
                events[d] |= libc::POLLIN;
            }
        }
        if events == [0, 0] {
            break;
        }
        let Some(ready) = poll_pair(client, upstream, events) else { break };
        for (d, dir) in dirs.iter_mut().enumerate() {
            let (src, dst) = (sockets[d], sockets[1 - d]);
            // Only what poll reported ready is tried: a splice that would block is a
            // system call for nothing, and measurably so at these rates.
            let mut readable = ready[d] & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
            let mut writable = ready[1 - d] & (libc::POLLOUT | libc::POLLHUP | libc::POLLERR) != 0;
            while readable || (writable && dir.held > 0) {
                if readable && dir.open {
                    match splice(src.as_raw_fd(), dir.pipe.write.as_raw_fd(), SPLICE_CHUNK) {
                        Ok(0) => {
                            dir.open = false;
                            readable = false;
                        }
                        Ok(n) => {
                            dir.held += n;
                            writable = true;
                            moved = true;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            // With bytes held, the pipe may be what is full: wait for
                            // the destination before reading again.
                            dir.full = dir.held > 0;
                            readable = false;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        // splice(2) refused as such (a kernel or an outer seccomp
                        // profile without it) before anything moved: copy instead.
                        Err(e) if !moved && splice_unavailable(&e) => {
                            return relay_copying(client, upstream);
                        }
                        // The source is done (reset, or cut when the proxy stops).
                        Err(_) => {
                            dir.open = false;
                            readable = false;
                        }
                    }
                } else {
                    readable = false;
                }
                if writable && dir.held > 0 {
                    match splice(dir.pipe.read.as_raw_fd(), dst.as_raw_fd(), dir.held) {
                        Ok(n) if n > 0 => {
                            dir.held -= n;
                            dir.total += n as u64;
                            dir.full = false;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => writable = false,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        // The receiving side is gone: nothing more can be delivered.
                        _ => {
                            failed = true;
                            break;
                        }
                    }
                }
            }
            if failed {
                break;
            }
            if !dir.open && dir.held == 0 && !dir.ended {
                dir.ended = true;
                let _ = dst.shutdown(Shutdown::Write);
            }
        }
    }
    (dirs[0].total, dirs[1].total)
}

/// One direction of [`relay`]: a pipe holding bytes spliced from the source and not
/// yet spliced to the destination.
struct Spliced {
    pipe: Pipe,
    /// Bytes in the pipe.
    held: usize,
    /// The pipe took nothing more while holding bytes: read again once some have gone.
    full: bool,
    /// The source has not ended.
    open: bool,
    /// The destination's sending side has been shut.
    ended: bool,
    total: u64,
}

/// A non-blocking pipe for `splice(2)`, at its default size (64 KiB): measured about as
/// fast as 256 KiB and 1 MiB ones, and larger pipes count against the user's pipe
/// allowance, which the sandboxed command (the same user) shares.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2 writes two descriptors into a live local array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: two new descriptors that nothing else owns.
        Ok(unsafe { Pipe { read: OwnedFd::from_raw_fd(fds[0]), write: OwnedFd::from_raw_fd(fds[1]) } })
    }
}

/// The errors of a `splice(2)` the kernel or a seccomp profile does not offer for these
/// descriptors, as opposed to the end of a connection.
fn splice_unavailable(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP | libc::EPERM))
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
    // SAFETY: splice between two open descriptors (a socket and a pipe), no offsets.
    let n = unsafe { libc::splice(from, std::ptr::null_mut(), to, std::ptr::null_mut(), len, flags) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}
