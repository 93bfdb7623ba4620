//! The per-invocation HTTP proxy: outbound access by name (`network: domains:`) and
//! reverse-proxy routes that add headers the command never sees (`network: routes:`).
//!
//! It runs in the launcher, on threads started after the command has exec'd. On Linux
//! it accepts on a listening socket the child created inside the command's network
//! namespace (`netns.rs`): the command reaches nothing else; upstream connections are
//! made from the launcher's own namespace. On macOS it accepts on 127.0.0.1 of the
//! host, and the Seatbelt profile lets the command reach that port only (`macos.rs`).
//! Per connection:
//!
//! - `CONNECT host:port`: the name must be listed; on port 443 the tunnel must start
//!   with a TLS ClientHello whose server name is the CONNECT host.
//! - `METHOD http://host[:port]/path`: plain HTTP, forwarded with `Connection: close`.
//! - `METHOD /prefix/...`: a route; the upstream gets the route's headers, over TLS
//!   for an `https://` upstream (`upstream_tls.rs`, whose certificate is verified
//!   against the system trust store for the upstream's name).
//!
//! Names are resolved here, once: every address must be acceptable
//! (`addr::refusal`), and the proxy connects to exactly the addresses it checked, so
//! a DNS answer that changes between two lookups cannot slip a private address in.
//! Each attempt becomes a `network.connection` record (names of added headers only).
//!
//! Secrets: header values live in [`Secret`], whose `Debug` prints nothing; no error
//! message, record or verbose line is built from one.

mod addr;
mod http;
#[cfg(target_os = "linux")]
mod splice;
mod tls;
mod upstream_tls;

#[cfg(target_os = "linux")]
use splice::relay;

use capsule_artifacts::launch::{self, TemplatePart};
use capsule_artifacts::log::ConnectionEvent;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// The proxy's port when the policy says 0: the command's namespace is its own, so
/// every port is free there, and a fixed one lets the environment be prepared before
/// the namespace exists.
pub const DEFAULT_PORT: u16 = 3128;
/// Connections handled at once, at most; more are answered 503 and recorded. Fewer
/// when the launcher's descriptor limit would not hold them (`max_active`).
const MAX_ACTIVE: usize = 256;
/// Descriptors one relayed connection holds: its two sockets and two pipes.
const FDS_PER_CONNECTION: u64 = 6;
/// Descriptors left for everything else of the launcher (log, listener, supervisor).
const FDS_RESERVED: u64 = 64;

/// How many connections the launcher's soft `RLIMIT_NOFILE` lets the proxy relay at
/// once, up to [`MAX_ACTIVE`]: beyond it, accepts and upstream connects would fail with
/// EMFILE instead of being answered 503. The limit is read, not raised, since the
/// launcher may be a library in someone else's process (the Python SDK).
fn max_active() -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into a live local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return MAX_ACTIVE;
    }
    let room = limit.rlim_cur.saturating_sub(FDS_RESERVED) / FDS_PER_CONNECTION;
    usize::try_from(room).unwrap_or(MAX_ACTIVE).clamp(1, MAX_ACTIVE)
}
/// How long a client has to send its request head (or ClientHello).
const HEAD_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const COPY_BUFFER: usize = 256 * 1024;

/// The port the proxy listens on in the command's namespace.
pub fn listen_port(proxy: &launch::Proxy) -> u16 {
    if proxy.port == 0 { DEFAULT_PORT } else { proxy.port }
}

/// Refuses a route whose `${env:NAME}` the policy also gives the command: its
/// credential must not reach the command, however the manifest was made (the
/// compiler refuses such a policy: E0145).
pub(crate) fn refuse_passed_credentials(
    proxy: &launch::Proxy,
    env: &BTreeMap<OsString, OsString>,
) -> Result<(), String> {
    for route in &proxy.routes {
        for (_, template) in &route.headers {
            for part in launch::parse_template(template)? {
                if let TemplatePart::Env(var) = part
                    && env.contains_key(&OsString::from(var))
                {
                    return Err(format!(
                        "the route {} reads {var}, which the policy also gives to the command",
                        route.prefix
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Points the command's HTTP clients at the proxy on 127.0.0.1:`port`: the proxy
/// variables in both cases, `NO_PROXY` empty, and `CAPSULE_PROXY_URL` for the routes.
pub(crate) fn command_env(env: &mut BTreeMap<OsString, OsString>, port: u16) {
    let url = format!("http://127.0.0.1:{port}");
    for name in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"] {
        env.insert(name.into(), url.clone().into());
    }
    for name in ["NO_PROXY", "no_proxy"] {
        env.insert(name.into(), OsString::new());
    }
    env.insert("CAPSULE_PROXY_URL".into(), url.into());
}

/// A header value with a credential in it. Never printed.
#[derive(Clone)]
pub(crate) struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

#[derive(Debug, Clone)]
pub(crate) struct RouteConfig {
    prefix: String,
    host: String,
    port: u16,
    /// An `https://` upstream: the proxy speaks TLS to it.
    https: bool,
    headers: Vec<(String, Secret)>,
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    domains: Vec<String>,
    allow_private: bool,
    routes: Vec<RouteConfig>,
    /// The TLS client for `https://` routes; none (and no trust store read) without one.
    tls: Option<Arc<rustls::ClientConfig>>,
    pub port: u16,
}

impl Config {
    /// Expands the routes' `${env:NAME}` from `lookup` (the launcher's environment).
    /// Errors name the variable and the route, never a value.
    pub(crate) fn new(proxy: &launch::Proxy, lookup: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let mut routes = Vec::new();
        for route in &proxy.routes {
            let (https, authority) =
                match (route.upstream.strip_prefix("https://"), route.upstream.strip_prefix("http://")) {
                    (Some(authority), _) => (true, authority),
                    (None, Some(authority)) => (false, authority),
                    (None, None) => {
                        return Err(format!(
                            "the route {} has an upstream that is neither http:// nor https://",
                            route.prefix
                        ));
                    }
                };
            let (host, port) = http::host_port(authority, Some(if https { 443 } else { 80 }))
                .filter(|(host, _)| !https || upstream_tls::valid_server_name(host))
                .ok_or_else(|| format!("the route {} has an invalid upstream", route.prefix))?;
            let mut headers = Vec::new();
            for (name, template) in &route.headers {
                let parts = launch::parse_template(template)
                    .map_err(|e| format!("the route {}'s header {name}: {e}", route.prefix))?;
                let mut value = String::new();
                for part in parts {
                    match part {
                        TemplatePart::Text(t) => value.push_str(t),
                        TemplatePart::Env(var) => match lookup(var) {
                            Some(v) if !v.contains(['\r', '\n', '\0']) => value.push_str(&v),
                            Some(_) => {
                                return Err(format!(
                                    "the route {}'s header {name} reads {var}, whose value holds a line break or NUL",
                                    route.prefix
                                ));
                            }
                            None => {
                                return Err(format!(
                                    "the route {}'s header {name} reads {var}, which is not set in the launcher's \
                                     environment",
                                    route.prefix
                                ));
                            }
                        },
                    }
                }
                headers.push((name.clone(), Secret(value)));
            }
            routes.push(RouteConfig { prefix: route.prefix.clone(), host, port, https, headers });
        }
        // Only a launch with an https:// route reads the trust store and builds a TLS
        // client; it fails here, before the command runs, when no root can be loaded.
        let tls = if routes.iter().any(|r| r.https) { Some(upstream_tls::client_config()?) } else { None };
        Ok(Config {
            domains: proxy.domains.clone(),
            allow_private: proxy.allow_private,
            routes,
            tls,
            port: listen_port(proxy),
        })
    }

    /// One line for `--verbose`: names and header names, no values.
    pub(crate) fn describe(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "proxy: {} domain(s): {}{}",
            self.domains.len(),
            if self.domains.is_empty() { "(none)".to_owned() } else { self.domains.join(" ") },
            if self.allow_private { "; private addresses allowed" } else { "" }
        )];
        for r in &self.routes {
            let names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
            lines.push(format!(
                "proxy: route {} -> {}://{}:{} (adds headers: {})",
                r.prefix,
                if r.https { "https" } else { "http" },
                r.host,
                r.port,
                if names.is_empty() { "none".to_owned() } else { names.join(", ") }
            ));
        }
        lines
    }
}

struct Shared {
    config: Config,
    stopping: AtomicBool,
    active: AtomicUsize,
    /// [`max_active`], read once at start.
    max_active: usize,
    next_id: AtomicU64,
    /// Sockets of open connections, shut down when the proxy stops.
    open: Mutex<BTreeMap<u64, Vec<TcpStream>>>,
    events: Mutex<mpsc::Sender<ConnectionEvent>>,
    /// A byte is written to `wake_tx` per record, so `wake_rx` polls readable while
    /// records wait (a socket pair, not an eventfd, so macOS builds it too).
    wake_tx: UnixStream,
    wake_rx: UnixStream,
}

impl Shared {
    fn emit(&self, event: ConnectionEvent) {
        if let Ok(sender) = self.events.lock() {
            let _ = sender.send(event);
        }
        // Non-blocking: when the buffer is full, the reader is already woken.
        let _ = (&self.wake_tx).write(&[1]);
    }
}

/// The running proxy. [`Running::stop`] ends it.
pub(crate) struct Running {
    shared: Arc<Shared>,
    listener: Arc<TcpListener>,
    accept: Option<std::thread::JoinHandle<()>>,
    events: mpsc::Receiver<ConnectionEvent>,
}

impl Running {
    /// Serves on `listener_fd` (a listening socket, owned from here on).
    pub(crate) fn start(listener_fd: RawFd, config: Config) -> io::Result<Running> {
        // SAFETY: the child created this listening socket in the descriptor table it
        // shared with us, and nothing else owns it.
        let listener = Arc::new(unsafe { TcpListener::from_raw_fd(listener_fd) });
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let (sender, events) = mpsc::channel();
        let shared = Arc::new(Shared {
            config,
            stopping: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            max_active: max_active(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(BTreeMap::new()),
            events: Mutex::new(sender),
            wake_tx,
            wake_rx,
        });
        let (l, s) = (listener.clone(), shared.clone());
        let accept = std::thread::Builder::new().name("capsule-proxy".into()).spawn(move || accept_loop(&l, &s))?;
        Ok(Running { shared, listener, accept: Some(accept), events })
    }

    /// The descriptor that becomes readable when records are waiting.
    pub(crate) fn wake_fd(&self) -> RawFd {
        self.shared.wake_rx.as_raw_fd()
    }

    /// The records of connections finished since the last call.
    pub(crate) fn drain(&self) -> Vec<ConnectionEvent> {
        let mut wakes = [0u8; 512];
        while matches!((&self.shared.wake_rx).read(&mut wakes), Ok(n) if n > 0) {}
        self.events.try_iter().collect()
    }

    /// Stops accepting, cuts every open connection, waits briefly for the handlers
    /// and returns the remaining records.
    pub(crate) fn stop(mut self) -> Vec<ConnectionEvent> {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // SAFETY: shutdown on a socket we own; on Linux it wakes the thread blocked in
        // accept.
        unsafe {
            libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR);
        }
        // Elsewhere (macOS) shutdown does not wake accept: a connection does, and the
        // loop, seeing `stopping`, ends without serving it.
        #[cfg(not(target_os = "linux"))]
        if let Ok(address) = self.listener.local_addr() {
            let _ = TcpStream::connect_timeout(&address, Duration::from_secs(1));
        }
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            if let Ok(open) = self.shared.open.lock() {
                for stream in open.values().flatten() {
                    let _ = stream.shutdown(Shutdown::Both);
                }
            }
            if self.shared.active.load(Ordering::SeqCst) == 0 || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.drain()
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    // The sender stays here: when this loop ends it is dropped, and the workers,
    // finding the channel closed, end too.
    let (sender, receiver) = mpsc::channel::<TcpStream>();
    let pool = Arc::new(Pool { jobs: Mutex::new(receiver), idle: AtomicUsize::new(0) });
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let mut client = match accepted {
            Ok((client, _)) => client,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                // Out of descriptors or memory: back off instead of spinning.
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        #[cfg(target_os = "macos")]
        if !same_user(&client) {
            // Closed unanswered and unrecorded: not this invocation's connection.
            continue;
        }
        if shared.active.fetch_add(1, Ordering::SeqCst) >= shared.max_active {
            shared.active.fetch_sub(1, Ordering::SeqCst);
            let _ = client.write_all(&refusal_response(503, "too-many-connections"));
            let mut event = new_event();
            event.reason = Some("too-many-connections".into());
            shared.emit(event);
            continue;
        }
        // An idle worker takes the connection; without one, a new worker is started
        // for it. Workers wait for the next connection when done, so a steady stream of
        // connections costs no thread start each (docs/benchmarks.md).
        let reserved = pool.idle.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if !reserved {
            let (s, p) = (shared.clone(), pool.clone());
            let spawned = std::thread::Builder::new().name("capsule-proxy-conn".into()).spawn(move || worker(&s, &p));
            if spawned.is_err() {
                shared.active.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
        }
        if sender.send(client).is_err() {
            shared.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Whether the peer of a connection to the proxy runs as this launcher's user. On
/// macOS the proxy listens on the host's loopback, where any local process can reach
/// it, and a route adds its credential to whatever it forwards: other users' processes
/// are turned away. (On Linux the listener is inside the command's network namespace,
/// which nothing else can reach.)
#[cfg(target_os = "macos")]
fn same_user(client: &TcpStream) -> bool {
    let (mut uid, mut gid) = (0, 0);
    // SAFETY: getpeereid writes two ids into live locals.
    let known = unsafe { libc::getpeereid(client.as_raw_fd(), &mut uid, &mut gid) } == 0;
    // SAFETY: geteuid has no preconditions.
    known && uid == unsafe { libc::geteuid() }
}

/// The proxy's workers: connections are handed to them through `jobs`.
struct Pool {
    jobs: Mutex<mpsc::Receiver<TcpStream>>,
    /// Workers waiting for a connection and not yet promised one.
    idle: AtomicUsize,
}

fn worker(shared: &Arc<Shared>, pool: &Pool) {
    loop {
        let next = match pool.jobs.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        // The channel closes when the accept loop ends: the proxy is stopping.
        let Ok(client) = next else { return };
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        let event = handle(shared, id, client);
        if let Ok(mut open) = shared.open.lock() {
            open.remove(&id);
        }
        shared.emit(event);
        shared.active.fetch_sub(1, Ordering::SeqCst);
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        pool.idle.fetch_add(1, Ordering::SeqCst);
    }
}

/// A connection attempt stamped now, refused until the caller says otherwise; the
/// caller fills in what it learns (the proxy as a request goes on, the supervisor for a
/// direct attempt).
pub(crate) fn new_event() -> ConnectionEvent {
    ConnectionEvent {
        invocation: 0,
        method: String::new(),
        host: String::new(),
        port: 0,
        address: None,
        verdict: "refused",
        reason: None,
        bytes_up: 0,
        bytes_down: 0,
        duration_ns: 0,
        route: None,
        injected_headers: Vec::new(),
        time_ns: capsule_artifacts::log::record::unix_time_ns(std::time::SystemTime::now()),
    }
}

fn refusal_response(status: u16, reason: &str) -> Vec<u8> {
    let text = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        502 => "Bad Gateway",
        _ => "Service Unavailable",
    };
    let body = format!("capsule proxy: {reason}\n");
    format!(
        "HTTP/1.1 {status} {text}\r\nX-Capsule-Refused: {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Handles one client connection and returns its record.
fn handle(shared: &Shared, id: u64, mut client: TcpStream) -> ConnectionEvent {
    let started = Instant::now();
    let mut event = new_event();
    let outcome = serve(shared, id, &mut client, &mut event);
    if let Err((status, reason)) = outcome {
        event.verdict = "refused";
        event.reason = Some(reason.to_owned());
        if status != 0 {
            let _ = client.write_all(&refusal_response(status, reason));
        }
    } else {
        event.verdict = "allowed";
    }
    let _ = client.shutdown(Shutdown::Both);
    event.duration_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    event
}

type Refusal = (u16, &'static str);

fn serve(shared: &Shared, id: u64, client: &mut TcpStream, event: &mut ConnectionEvent) -> Result<(), Refusal> {
    let config = &shared.config;
    client.set_read_timeout(Some(HEAD_TIMEOUT)).map_err(|_| (0, "socket-error"))?;
    register(shared, id, client);
    let head = http::read_head(client).map_err(|_| (400, "bad-request"))?;
    event.method = head.method.clone();
    if head.method == "CONNECT" {
        let (host, port) = http::host_port(&head.target, None).ok_or((400, "bad-request"))?;
        event.host = host.clone();
        event.port = port;
        check_name(config, &host)?;
        let mut first = head.rest;
        if port == 443 {
            // The answer comes first: the client sends its ClientHello only after it.
            client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").map_err(|_| (0, "client-gone"))?;
            match tls::read_client_hello(client, &mut first) {
                Ok(Some(name)) if name == host => {}
                Ok(_) | Err(_) => return Err((0, "sni-mismatch")),
            }
            let (upstream, address) = connect(config, &host, port).map_err(|(reason, address)| {
                event.address = address.map(|a| a.to_string());
                (0, reason)
            })?;
            event.address = Some(address.to_string());
            return pump(shared, id, client, upstream, &first, event);
        }
        let (upstream, address) = connect(config, &host, port).map_err(|(reason, address)| {
            event.address = address.map(|a| a.to_string());
            (if reason == "connect-failed" || reason == "resolve-failed" { 502 } else { 403 }, reason)
        })?;
        event.address = Some(address.to_string());
        client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").map_err(|_| (0, "client-gone"))?;
        return pump(shared, id, client, upstream, &first, event);
    }
    // A client told to use the proxy for everything (NO_PROXY is empty) sends a
    // route's request in absolute form, naming the proxy itself.
    let mut target = head.target.as_str();
    if let Some(rest) = target.strip_prefix("http://") {
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let own = [format!("127.0.0.1:{}", config.port), format!("localhost:{}", config.port)];
        if own.iter().any(|o| o.eq_ignore_ascii_case(authority)) {
            target = path;
        }
    }
    if let Some(rest) = target.strip_prefix("http://") {
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err((400, "bad-request"));
        }
        let (host, port) = http::host_port(authority, Some(80)).ok_or((400, "bad-request"))?;
        event.host = host.clone();
        event.port = port;
        check_name(config, &host)?;
        let (upstream, address) = connect(config, &host, port).map_err(|(reason, address)| {
            event.address = address.map(|a| a.to_string());
            (if reason == "connect-failed" || reason == "resolve-failed" { 502 } else { 403 }, reason)
        })?;
        event.address = Some(address.to_string());
        let drop_names: &[&str] = &[];
        let out = rewrite_head(&head, path, None, drop_names, &[]);
        return pump(shared, id, client, upstream, &[out, head.rest.clone()].concat(), event);
    }
    if target.starts_with('/') {
        let route = config
            .routes
            .iter()
            .find(|r| {
                target
                    .strip_prefix(r.prefix.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
            })
            .ok_or((404, "no-route"))?;
        event.route = Some(route.prefix.clone());
        event.host = route.host.clone();
        event.port = route.port;
        event.injected_headers = route.headers.iter().map(|(n, _)| n.clone()).collect();
        let rest = &target[route.prefix.len()..];
        let path = if rest.is_empty() || rest.starts_with('?') { format!("/{rest}") } else { rest.to_owned() };
        let (upstream, address) = connect(config, &route.host, route.port).map_err(|(reason, address)| {
            event.address = address.map(|a| a.to_string());
            (if reason == "connect-failed" || reason == "resolve-failed" { 502 } else { 403 }, reason)
        })?;
        event.address = Some(address.to_string());
        let default_port = if route.https { 443 } else { 80 };
        let host_header =
            if route.port == default_port { route.host.clone() } else { format!("{}:{}", route.host, route.port) };
        let names: Vec<&str> = route.headers.iter().map(|(n, _)| n.as_str()).collect();
        let added: Vec<(&str, &str)> = route.headers.iter().map(|(n, v)| (n.as_str(), v.0.as_str())).collect();
        let out = rewrite_head(&head, &path, Some(&host_header), &names, &added);
        let first = [out, head.rest.clone()].concat();
        if route.https {
            let tls = config.tls.as_ref().ok_or((502, "upstream-tls-failed"))?;
            return pump_tls(shared, id, client, upstream, tls, &route.host, &first, event);
        }
        return pump(shared, id, client, upstream, &first, event);
    }
    Err((400, "bad-request"))
}

fn register(shared: &Shared, id: u64, stream: &TcpStream) {
    if let (Ok(clone), Ok(mut open)) = (stream.try_clone(), shared.open.lock()) {
        open.entry(id).or_default().push(clone);
    }
}

/// The request head for the upstream: origin-form target, no proxy or hop-by-hop
/// headers, `Connection: close` (one request per connection, so every request is
/// checked), `Host` replaced when given, the route's headers replacing the client's.
fn rewrite_head(
    head: &http::Head,
    path: &str,
    host: Option<&str>,
    replaced: &[&str],
    added: &[(&str, &str)],
) -> Vec<u8> {
    let mut out = format!("{} {} {}\r\n", head.method, path, head.version);
    for (name, value) in &head.headers {
        let lower = name.to_ascii_lowercase();
        let hop = matches!(lower.as_str(), "connection" | "keep-alive" | "proxy-connection" | "proxy-authorization");
        let replaced_here =
            (host.is_some() && lower == "host") || replaced.iter().any(|r| r.eq_ignore_ascii_case(name));
        if !hop && !replaced_here {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    if let Some(host) = host {
        out.push_str(&format!("Host: {host}\r\n"));
    }
    for (name, value) in added {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

/// Whether the command may ask for `host` by name.
fn check_name(config: &Config, host: &str) -> Result<(), Refusal> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Err((403, "not-listed"));
    }
    if !launch::is_dns_name(host) {
        return Err((400, "bad-request"));
    }
    launch::matching_domain(&config.domains, host).map(drop).ok_or((403, "not-listed"))
}

/// Resolves `host` once, refuses it if any address is not acceptable, and connects
/// to the checked addresses themselves (no second lookup).
fn connect(
    config: &Config,
    host: &str,
    port: u16,
) -> Result<(TcpStream, SocketAddr), (&'static str, Option<SocketAddr>)> {
    let addresses = checked_addresses(config, host, port, |h, p| (h, p).to_socket_addrs().map(Iterator::collect))?;
    for address in &addresses {
        if let Ok(stream) = TcpStream::connect_timeout(address, CONNECT_TIMEOUT) {
            let _ = stream.set_nodelay(true);
            return Ok((stream, *address));
        }
    }
    Err(("connect-failed", addresses.first().copied()))
}

/// The addresses to connect to: one lookup through `resolve`, every answer checked,
/// and these very answers returned, so a name whose DNS answer changes between two
/// lookups (rebinding) cannot be checked on one address and connected on another.
fn checked_addresses(
    config: &Config,
    host: &str,
    port: u16,
    resolve: impl FnOnce(&str, u16) -> io::Result<Vec<SocketAddr>>,
) -> Result<Vec<SocketAddr>, (&'static str, Option<SocketAddr>)> {
    let addresses = resolve(host, port).map_err(|_| ("resolve-failed", None))?;
    if addresses.is_empty() {
        return Err(("resolve-failed", None));
    }
    for address in &addresses {
        if let Some(reason) = addr::refusal(address.ip(), config.allow_private) {
            return Err((reason, Some(*address)));
        }
    }
    Ok(addresses)
}

/// Readies a connection for its relay: `upstream` registered, so that stopping the
/// proxy cuts it, and the client streamed (no read timeout, no Nagle delay). Refused
/// when the proxy is already stopping.
fn begin_relay(shared: &Shared, id: u64, client: &TcpStream, upstream: &TcpStream) -> Result<(), Refusal> {
    register(shared, id, upstream);
    if shared.stopping.load(Ordering::SeqCst) {
        return Err((0, "stopped"));
    }
    let _ = client.set_read_timeout(None);
    let _ = client.set_nodelay(true);
    Ok(())
}

/// [`pump`] for an `https://` route: the handshake (the certificate verified for
/// `host`), then `first` and the copy both ways through the TLS session. A failed
/// handshake is answered 502 with its reason, and nothing was sent upstream.
#[allow(clippy::too_many_arguments)]
fn pump_tls(
    shared: &Shared,
    id: u64,
    client: &mut TcpStream,
    mut upstream: TcpStream,
    tls: &Arc<rustls::ClientConfig>,
    host: &str,
    first: &[u8],
    event: &mut ConnectionEvent,
) -> Result<(), Refusal> {
    begin_relay(shared, id, client, &upstream)?;
    let mut session =
        upstream_tls::handshake(tls, host, &mut upstream, CONNECT_TIMEOUT).map_err(|reason| (502, reason))?;
    let (up, down) = upstream_tls::relay(client, &upstream, &mut session, first);
    event.bytes_up = up;
    event.bytes_down = down;
    Ok(())
}

/// Sends `first` upstream, then copies both ways until both sides are done.
fn pump(
    shared: &Shared,
    id: u64,
    client: &mut TcpStream,
    mut upstream: TcpStream,
    first: &[u8],
    event: &mut ConnectionEvent,
) -> Result<(), Refusal> {
    begin_relay(shared, id, client, &upstream)?;
    upstream.write_all(first).map_err(|_| (0, "upstream-gone"))?;
    let (up, down) = relay(client, &upstream);
    event.bytes_up = first.len() as u64 + up;
    event.bytes_down = down;
    Ok(())
}

/// macOS has no `splice(2)`: the relay copies through a buffer there.
#[cfg(not(target_os = "linux"))]
fn relay(client: &TcpStream, upstream: &TcpStream) -> (u64, u64) {
    relay_copying(client, upstream)
}

/// Waits until the client (slot 0) or the upstream (slot 1) is ready for its `events`
/// (0 leaves a slot out): the events that are, per slot; `[0, 0]` when a signal
/// interrupted the wait (the caller looks again); `None` when poll(2) fails.
pub(super) fn poll_pair(client: &TcpStream, upstream: &TcpStream, events: [i16; 2]) -> Option<[i16; 2]> {
    let slot = |fd: RawFd, events: i16| libc::pollfd { fd: if events == 0 { -1 } else { fd }, events, revents: 0 };
    let mut fds = [slot(client.as_raw_fd(), events[0]), slot(upstream.as_raw_fd(), events[1])];
    // SAFETY: `fds` is a live array of two pollfd records.
    if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
        return (io::Error::last_os_error().kind() == io::ErrorKind::Interrupted).then_some([0, 0]);
    }
    Some([fds[0].revents, fds[1].revents])
}

/// One direction of [`relay_copying`]: bytes read from its source and not yet written.
struct Direction {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    open: bool,
    total: u64,
}

/// Copies both ways on this thread, with poll(2) on non-blocking sockets: returns
/// (client to upstream, upstream to client) bytes. Ends when both sides have finished,
/// or when one cannot take what is left for it. [`relay`]'s fallback when it gets no
/// pipes.
pub(super) fn relay_copying(client: &TcpStream, upstream: &TcpStream) -> (u64, u64) {
    let _ = client.set_nonblocking(true);
    let _ = upstream.set_nonblocking(true);
    let new = || Direction { buf: vec![0u8; COPY_BUFFER], start: 0, end: 0, open: true, total: 0 };
    let mut dirs = [new(), new()];
    let mut ends = [(client, upstream), (upstream, client)];
    let mut failed = false;
    while !failed {
        // Slot 0 is the client, slot 1 the upstream.
        let mut events = [0i16; 2];
        for (d, dir) in dirs.iter().enumerate() {
            let (src, dst) = (d, 1 - d);
            if dir.start < dir.end {
                events[dst] |= libc::POLLOUT;
            } else if dir.open {
                events[src] |= libc::POLLIN;
            }
        }
        if events == [0, 0] {
            break;
        }
        let Some(_) = poll_pair(client, upstream, events) else { break };
        for (d, dir) in dirs.iter_mut().enumerate() {
            let (src, dst) = &mut ends[d];
            loop {
                if dir.start < dir.end {
                    match dst.write(&dir.buf[dir.start..dir.end]) {
                        Ok(n) if n > 0 => {
                            dir.start += n;
                            dir.total += n as u64;
                            continue;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        // The receiving side is gone: nothing more can be delivered.
                        _ => {
                            failed = true;
                            break;
                        }
                    }
                }
                if !dir.open {
                    break;
                }
                match src.read(&mut dir.buf) {
                    Ok(0) => {
                        dir.open = false;
                        let _ = dst.shutdown(Shutdown::Write);
                        break;
                    }
                    Ok(n) => {
                        dir.start = 0;
                        dir.end = n;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        dir.open = false;
                        let _ = dst.shutdown(Shutdown::Write);
                        break;
                    }
                }
            }
        }
    }
    (dirs[0].total, dirs[1].total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(domains: &[&str]) -> launch::Proxy {
        launch::Proxy {
            domains: domains.iter().map(|d| (*d).to_owned()).collect(),
            port: 0,
            allow_private: false,
            routes: vec![launch::Route {
                prefix: "/api".into(),
                upstream: "http://api.example.org:8080".into(),
                headers: vec![("Authorization".into(), "Bearer ${env:KEY}".into())],
            }],
        }
    }

    #[test]
    fn secrets_stay_out_of_errors_and_debug_output() {
        let config = Config::new(&proxy(&["a.org"]), |_| Some("s3cr3t".to_owned())).unwrap();
        assert!(!format!("{config:?}").contains("s3cr3t"));
        assert!(!config.describe().join("\n").contains("s3cr3t"));
        let err = Config::new(&proxy(&["a.org"]), |_| None).unwrap_err();
        assert!(err.contains("KEY") && err.contains("/api"), "{err}");
        let err = Config::new(&proxy(&["a.org"]), |_| Some("s3cr3t\r\nX: y".to_owned())).unwrap_err();
        assert!(!err.contains("s3cr3t"), "{err}");
        assert_eq!(listen_port(&proxy(&[])), DEFAULT_PORT);
    }

    #[test]
    fn an_https_upstream_gets_port_443_and_a_tls_client_and_other_schemes_are_refused() {
        let mut p = proxy(&[]);
        p.routes[0].upstream = "https://api.example.org".into();
        let config = Config::new(&p, |_| Some("k".to_owned())).unwrap();
        assert!(config.tls.is_some(), "an https route builds the TLS client");
        assert_eq!((config.routes[0].port, config.routes[0].https), (443, true));
        assert!(config.describe()[1].contains("/api -> https://api.example.org:443"), "{:?}", config.describe());
        // Without an https route no trust store is read.
        assert!(Config::new(&proxy(&[]), |_| Some("k".to_owned())).unwrap().tls.is_none());
        for bad in ["ftp://api.example.org", "https://", "https://a b.org"] {
            p.routes[0].upstream = bad.into();
            assert!(Config::new(&p, |_| Some("k".to_owned())).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_answer_of_the_one_lookup_is_checked_and_only_those_are_used() {
        let config = Config::new(&proxy(&["a.example.org"]), |_| Some(String::new())).unwrap();
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        // A rebinding resolver: public on the first lookup, loopback on any later one.
        let lookups = std::cell::Cell::new(0);
        let rebinding = |_: &str, _: u16| {
            lookups.set(lookups.get() + 1);
            Ok(if lookups.get() == 1 { vec![addr("203.0.113.7:443")] } else { vec![addr("127.0.0.1:443")] })
        };
        let got = checked_addresses(&config, "a.example.org", 443, rebinding).unwrap();
        assert_eq!(got, [addr("203.0.113.7:443")], "the connection goes to what was checked");
        assert_eq!(lookups.get(), 1, "one lookup only");
        // One private answer among public ones refuses the name.
        let mixed = |_: &str, _: u16| Ok(vec![addr("203.0.113.7:443"), addr("10.0.0.5:443")]);
        assert_eq!(
            checked_addresses(&config, "a.example.org", 443, mixed),
            Err(("private-address", Some(addr("10.0.0.5:443"))))
        );
        let metadata = |_: &str, _: u16| Ok(vec![addr("169.254.169.254:80")]);
        assert_eq!(checked_addresses(&config, "a.example.org", 80, metadata).unwrap_err().0, "metadata-address");
        let nothing = |_: &str, _: u16| Ok(vec![]);
        assert_eq!(checked_addresses(&config, "a.example.org", 80, nothing).unwrap_err().0, "resolve-failed");
    }

    #[test]
    fn names_are_checked_before_any_lookup() {
        let config = Config::new(&proxy(&["*.example.org"]), |_| Some(String::new())).unwrap();
        assert_eq!(check_name(&config, "a.example.org"), Ok(()));
        assert_eq!(check_name(&config, "example.org"), Err((403, "not-listed")));
        assert_eq!(check_name(&config, "127.0.0.1"), Err((403, "not-listed")));
        assert_eq!(check_name(&config, "a_b.example.org"), Err((400, "bad-request")));
    }

    #[test]
    fn the_upstream_head_carries_the_route_headers_instead_of_the_clients() {
        let raw = b"GET /api/v1?q=1 HTTP/1.1\r\nHost: proxy\r\nauthorization: forged\r\nProxy-Connection: keep-alive\r\nAccept: */*\r\n\r\n";
        let head = http::read_head(&mut &raw[..]).unwrap();
        let out = rewrite_head(
            &head,
            "/v1?q=1",
            Some("api.example.org:8080"),
            &["Authorization"],
            &[("Authorization", "Bearer k")],
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "GET /v1?q=1 HTTP/1.1\r\nAccept: */*\r\nHost: api.example.org:8080\r\nAuthorization: Bearer k\r\nConnection: close\r\n\r\n"
        );
    }
}
