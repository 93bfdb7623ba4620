//! TLS to a route's `https://` upstream: the command speaks plain HTTP to the proxy,
//! the proxy speaks TLS to the upstream (rustls with the ring provider).
//!
//! Nothing here runs unless a route's upstream is `https://`: the trust store is read
//! once at launch, only then ([`client_config`]), and a connection takes this path only
//! for such a route. The upstream's certificate is verified against the system trust
//! store as rustls-native-certs finds it: `SSL_CERT_FILE` or `SSL_CERT_DIR` when set
//! (then only those), otherwise the distribution's bundle (openssl-probe's list) on
//! Linux and the keychains on macOS. The server name sent (SNI) and checked against the
//! certificate is the upstream's host as written in the policy.

use rustls::pki_types::ServerName;
use rustls::{CertificateError, ClientConfig, ClientConnection, RootCertStore};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// Plaintext read at a time from either side.
const CHUNK: usize = 64 * 1024;

/// The client configuration for every https route of this launch: the system's roots,
/// rustls's safe defaults (TLS 1.2 and 1.3), no client certificate.
pub(crate) fn client_config() -> Result<Arc<ClientConfig>, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _unparsable) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found.errors.first().map(|e| format!(": {e}")).unwrap_or_default();
        return Err(format!(
            "a route's upstream is https://, but no trusted certificate could be loaded from the system store \
             (or SSL_CERT_FILE / SSL_CERT_DIR){why}"
        ));
    }
    // rustls 0.23.48 deprecates the ring provider because it has no post-quantum key
    // exchange (X25519MLKEM768 is aws-lc-rs's); ring is kept for its build (a C
    // compiler only, also for the macOS type check) and size (docs/network.md).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("the TLS client cannot be configured: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Whether `host` (a route upstream's host, as the compiler checked it) can be a TLS
/// server name: a DNS name or an IP address.
pub(crate) fn valid_server_name(host: &str) -> bool {
    ServerName::try_from(host).is_ok()
}

/// Completes the TLS handshake with the upstream on `tcp`, verifying its certificate
/// for `host`. Errors are the record's reason.
pub(crate) fn handshake(
    config: &Arc<ClientConfig>,
    host: &str,
    tcp: &mut TcpStream,
    timeout: Duration,
) -> Result<ClientConnection, &'static str> {
    let name = ServerName::try_from(host.to_owned()).map_err(|_| "upstream-tls-failed")?;
    let mut conn = ClientConnection::new(config.clone(), name).map_err(|_| "upstream-tls-failed")?;
    tcp.set_read_timeout(Some(timeout)).map_err(|_| "upstream-tls-failed")?;
    tcp.set_write_timeout(Some(timeout)).map_err(|_| "upstream-tls-failed")?;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(tcp) {
            return Err(reason(&e));
        }
    }
    Ok(conn)
}

/// The record's reason for a failed handshake.
fn reason(error: &io::Error) -> &'static str {
    let tls = error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::InvalidCertificate(cert)) => match cert {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "upstream-certificate-wrong-name"
            }
            // No chain to a trusted root, or one that names a trusted CA falsely.
            CertificateError::UnknownIssuer | CertificateError::BadSignature => "upstream-certificate-untrusted",
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "upstream-certificate-expired",
            _ => "upstream-certificate-invalid",
        },
        _ => "upstream-tls-failed",
    }
}

/// Sends `first` (the rewritten request head and any body bytes already read) over
/// `conn`, then copies both ways until the upstream has finished and everything it
/// sent has reached the client, or either side fails. Returns (client to upstream,
/// upstream to client) plaintext bytes. Poll(2) on non-blocking sockets, one thread,
/// as the plain relay.
///
/// The client's end reaches the upstream as the plain relays pass it on: its FIN as a
/// close_notify and a FIN, its reset at once (the connection is dropped). An upstream
/// still answering a client that went away (a model streaming tokens) so learns it now,
/// not when the invocation ends.
pub(crate) fn relay(client: &TcpStream, upstream: &TcpStream, conn: &mut ClientConnection, first: &[u8]) -> (u64, u64) {
    let _ = client.set_nonblocking(true);
    let _ = upstream.set_nonblocking(true);
    let (mut up, mut down) = (first.to_vec(), vec![0u8; CHUNK]);
    let (mut up_at, mut down_at, mut down_end) = (0, 0, 0);
    let (mut client_open, mut upstream_open, mut upstream_eof) = (true, true, false);
    // Whether the upstream's sending side has been shut after the client's FIN.
    let mut upstream_shut = false;
    let (mut sent, mut delivered) = (0u64, 0u64);
    loop {
        // Plaintext from the client into the TLS session, as much as it takes.
        while up_at < up.len() {
            match conn.writer().write(&up[up_at..]) {
                Ok(n) if n > 0 => {
                    up_at += n;
                    sent += n as u64;
                }
                _ => break,
            }
        }
        // Records out to the upstream.
        while conn.wants_write() {
            match conn.write_tls(&mut &*upstream) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return (sent, delivered),
            }
        }
        // The client's FIN, passed on once the close_notify has gone out.
        if !client_open && !upstream_shut && !conn.wants_write() {
            let _ = upstream.shutdown(Shutdown::Write);
            upstream_shut = true;
        }
        // Plaintext from the upstream, then out to the client.
        if upstream_open && down_at == down_end {
            match conn.reader().read(&mut down) {
                Ok(0) => upstream_open = false,
                Ok(n) => (down_at, down_end) = (0, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if upstream_eof {
                        upstream_open = false;
                    }
                }
                // Closed without close_notify: what arrived was delivered; nothing follows.
                Err(_) => upstream_open = false,
            }
        }
        while down_at < down_end {
            match (&*client).write(&down[down_at..down_end]) {
                Ok(n) if n > 0 => {
                    down_at += n;
                    delivered += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => return (sent, delivered),
            }
        }
        if !upstream_open && down_at == down_end {
            let _ = client.shutdown(Shutdown::Write);
            return (sent, delivered);
        }
        let client_events = (if client_open && up_at == up.len() { libc::POLLIN } else { 0 })
            | (if down_at < down_end { libc::POLLOUT } else { 0 });
        let upstream_events =
            (if !upstream_eof && down_at == down_end && conn.wants_read() { libc::POLLIN } else { 0 })
                | (if conn.wants_write() { libc::POLLOUT } else { 0 });
        if client_events == 0 && upstream_events == 0 {
            return (sent, delivered);
        }
        let Some(ready) = super::poll_pair(client, upstream, [client_events, upstream_events]) else {
            return (sent, delivered);
        };
        if ready[1] != 0 && !upstream_eof {
            match conn.read_tls(&mut &*upstream) {
                Ok(0) => upstream_eof = true,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
                Err(_) => upstream_eof = true,
            }
            if conn.process_new_packets().is_err() {
                // rustls queued an alert; send it if the socket takes it, then stop.
                let _ = conn.write_tls(&mut &*upstream);
                return (sent, delivered);
            }
        }
        if ready[0] != 0 && client_open && up_at == up.len() {
            up.resize(CHUNK, 0);
            match (&*client).read(&mut up) {
                Ok(0) => {
                    client_open = false;
                    up.clear();
                    conn.send_close_notify();
                }
                Ok(n) => up.truncate(n),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => up.clear(),
                // Reset: the client is gone, and nothing can reach it any more.
                Err(_) => return (sent, delivered),
            }
            up_at = 0;
        }
    }
}
