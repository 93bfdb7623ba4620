//! The supervisor's destination check under a proxy (`NotifyAnswer::Destination`):
//! an allowed `connect`, or `sendto` with an address, reaches the supervisor, which
//! reads the address from the calling thread's memory. The proxy's listening address
//! continues (the proxy records the connection); any other IPv4 or IPv6 address is a
//! direct attempt: refused with the errno the command's network namespace would give,
//! and recorded as a `network.connection` with the reason `direct-connect`.
//!
//! Enforcement stays with the namespace (docs/network.md, "Direct attempts"): the
//! address is read from memory the command can change before the kernel reads it, so
//! nothing here lets a call run that the namespace would not refuse; it can only
//! refuse more, and make a record.

use crate::supervisor::{Notification, Response};
use capsule_artifacts::notify::DESTINATION_SYSCALLS;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Why a direct attempt is refused, as `network.connection` records name it.
pub const DIRECT_CONNECT: &str = "direct-connect";

/// `sizeof(struct sockaddr_storage)`: no address family needs more.
const SOCKADDR_STORAGE: usize = 128;

/// The proxy's listening address in the command's namespace.
pub fn proxy_address(proxy: &capsule_artifacts::launch::Proxy) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, crate::proxy::listen_port(proxy)))
}

/// The name and the address arguments of a native destination syscall.
fn destination_syscall(nr: i32) -> Option<(&'static str, usize, usize)> {
    let name = match i64::from(nr) {
        n if n == libc::SYS_connect => "connect",
        n if n == libc::SYS_sendto => "sendto",
        _ => return None,
    };
    DESTINATION_SYSCALLS.iter().copied().find(|(n, _, _)| *n == name)
}

/// The answer to a notification the table answers with `Destination`. Fails closed
/// for a number that is not a destination syscall (the manifest is inconsistent).
/// An address that cannot be read because the pointer is bad or the thread is gone
/// lets the call run unrecorded: the kernel reads it again and fails, or there is no
/// call left to answer. Any other read failure (the launcher may not read the
/// command's memory: Yama's `ptrace_scope` 3, a security module) refuses the call
/// with EACCES, recorded as a denial: attempts are not let through unchecked.
pub fn answer(notification: &Notification, proxy: SocketAddr) -> Response {
    let Some((syscall, addr_arg, len_arg)) = destination_syscall(notification.syscall) else {
        return Response::Deny { errno: libc::EPERM };
    };
    let len = (notification.args[len_arg] as u32 as usize).min(SOCKADDR_STORAGE);
    let bytes = match notification.read_memory(notification.args[addr_arg], len) {
        Ok(bytes) => bytes,
        Err(e) if matches!(e.raw_os_error(), Some(libc::EFAULT | libc::ESRCH | libc::ENOENT)) => {
            return Response::Pass;
        }
        Err(_) => return Response::Deny { errno: libc::EACCES },
    };
    match socket_address(&bytes) {
        Some(destination) if !is_proxy(destination, proxy) => {
            Response::RefuseDirect { errno: refusal_errno(destination), syscall, destination }
        }
        // The proxy (which records the connection), or not an internet address
        // (AF_UNSPEC to disconnect, AF_UNIX, AF_NETLINK): not a network destination.
        _ => Response::Pass,
    }
}

/// An IPv4 or IPv6 `struct sockaddr` as the kernel reads it (native byte order for the
/// family, network order for the port and address); `None` for other families and
/// for addresses too short for their family (the kernel refuses those with EINVAL).
pub fn socket_address(bytes: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes(bytes.get(0..2)?.try_into().ok()?);
    let port = u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?);
    match i32::from(family) {
        libc::AF_INET => {
            let ip: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
            // The kernel requires the whole `struct sockaddr_in` (16 bytes).
            bytes.get(..size_of::<libc::sockaddr_in>())?;
            Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
        }
        libc::AF_INET6 => {
            let flowinfo = u32::from_be_bytes(bytes.get(4..8)?.try_into().ok()?);
            let ip: [u8; 16] = bytes.get(8..24)?.try_into().ok()?;
            // RFC 2133's 24-byte form, without the scope id, is accepted by the kernel.
            let scope = bytes.get(24..28).map_or(0, |s| u32::from_ne_bytes(s.try_into().unwrap_or_default()));
            Some(SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, flowinfo, scope)))
        }
        _ => None,
    }
}

/// The proxy's address, also as an IPv4-mapped IPv6 address (a dual-stack socket
/// reaches the IPv4 listener through it).
fn is_proxy(destination: SocketAddr, proxy: SocketAddr) -> bool {
    let ip = match destination {
        SocketAddr::V6(v6) => v6.ip().to_ipv4_mapped().map_or(destination.ip(), std::net::IpAddr::V4),
        SocketAddr::V4(v4) => std::net::IpAddr::V4(*v4.ip()),
    };
    ip == proxy.ip() && destination.port() == proxy.port()
}

/// What the namespace answers a connect there: nothing listens on loopback but the
/// proxy (ECONNREFUSED), and nothing else is routed (ENETUNREACH).
fn refusal_errno(destination: SocketAddr) -> i32 {
    let loopback = match destination {
        SocketAddr::V4(v4) => v4.ip().is_loopback() || v4.ip().is_unspecified(),
        SocketAddr::V6(v6) => {
            v6.ip().is_loopback()
                || v6.ip().is_unspecified()
                || v6.ip().to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    };
    if loopback { libc::ECONNREFUSED } else { libc::ENETUNREACH }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(ip: [u8; 4], port: u16) -> Vec<u8> {
        let mut b = vec![0u8; 16];
        b[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        b[2..4].copy_from_slice(&port.to_be_bytes());
        b[4..8].copy_from_slice(&ip);
        b
    }

    fn v6(ip: Ipv6Addr, port: u16, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        b[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        b[2..4].copy_from_slice(&port.to_be_bytes());
        b[8..24].copy_from_slice(&ip.octets());
        b
    }

    #[test]
    fn reads_ipv4_and_ipv6_addresses_and_nothing_else() {
        assert_eq!(socket_address(&v4([127, 0, 0, 2], 8080)), Some("127.0.0.2:8080".parse().unwrap()));
        assert_eq!(socket_address(&v6(Ipv6Addr::LOCALHOST, 443, 28)), Some("[::1]:443".parse().unwrap()));
        assert_eq!(socket_address(&v6(Ipv6Addr::LOCALHOST, 443, 24)), Some("[::1]:443".parse().unwrap()));
        assert_eq!(socket_address(&v4([127, 0, 0, 1], 1)[..15]), None, "shorter than sockaddr_in");
        assert_eq!(socket_address(&v6(Ipv6Addr::LOCALHOST, 1, 24)[..23]), None);
        let mut unix = vec![0u8; 110];
        unix[0..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        assert_eq!(socket_address(&unix), None);
        assert_eq!(socket_address(&[0u8; 16]), None, "AF_UNSPEC disconnects");
        assert_eq!(socket_address(&[]), None);
    }

    #[test]
    fn only_the_proxys_own_address_is_the_proxy() {
        let proxy: SocketAddr = "127.0.0.1:3128".parse().unwrap();
        let is = |a: &str| is_proxy(a.parse().unwrap(), proxy);
        assert!(is("127.0.0.1:3128"));
        assert!(is("[::ffff:127.0.0.1]:3128"), "IPv4-mapped, from a dual-stack socket");
        for other in ["127.0.0.2:3128", "127.0.0.1:3129", "0.0.0.0:3128", "[::1]:3128", "10.0.0.1:3128"] {
            assert!(!is(other), "{other}");
        }
    }

    #[test]
    fn refusals_say_what_the_namespace_would() {
        let errno = |a: &str| refusal_errno(a.parse().unwrap());
        assert_eq!(errno("127.0.0.2:80"), libc::ECONNREFUSED);
        assert_eq!(errno("[::1]:80"), libc::ECONNREFUSED);
        assert_eq!(errno("[::ffff:127.0.0.1]:80"), libc::ECONNREFUSED);
        assert_eq!(errno("93.184.216.34:443"), libc::ENETUNREACH);
        assert_eq!(errno("[2001:db8::1]:443"), libc::ENETUNREACH);
    }
}
