//! Network by name (docs/network.md): the per-invocation proxy, the command's
//! loopback-only network namespace, routes that add credentials the command never
//! sees, and the `network.connection` records. Loopback only: every server here is
//! started by the test on 127.0.0.x or ::1, and `localhost` is the name (it is in
//! every /etc/hosts), so the policies say `allow-private: true` except where the test
//! is that a loopback answer is refused.
//!
//! Each attack is first shown to work without the proxy (unsandboxed, or under port
//! rules alone), then to fail under a policy with `network: domains:`. As root and as
//! the unprivileged user (`CAPSULE_TEST_USER`), who gets a user namespace.

use capsule_tests::*;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// Tests that change a system setting take this for writing; the others for reading.
static SYSTEM: RwLock<()> = RwLock::new(());

const SECRET: &str = "s3cr3t-capsule-test-credential-91f2c";

/// A policy for commands that use the network by name: curl, python3, sh.
fn policy(network: &str) -> String {
    format!(
        r#"version: 1
name: network-test
syscalls:
  allow: ["@default", "@basic-io", "@file-system", "@io-event", "@process", "@signal",
          "@timer", "@memory", "@ipc", "@network-io", ioctl, uname, sysinfo, getrusage, umask,
          sched_getaffinity, prlimit64, getrandom]
  deny:
    - unshare
    - setns
    # No UNIX sockets to connect with: only the proxy is reachable (docs/network.md).
    - socket: domain not in [AF_INET, AF_INET6]
filesystem:
  read: [/usr, /lib, /lib64, /bin, /etc, /proc, /dev/null, /dev/urandom, "${{WORKSPACE}}"]
  write: ["${{WORKSPACE}}", /dev/null]
  execute: [/usr, /bin, /lib, /lib64]
network:
{network}
env:
  pass: [PATH, HOME, LANG]
"#
    )
}

/// An HTTP server on `addr` that answers every request with `hello from ADDR` and keeps
/// each request head it received.
struct HttpServer {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
}

impl HttpServer {
    fn start(ip: &str) -> HttpServer {
        let listener = TcpListener::bind((ip, 0)).expect("bind the test server");
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let seen = seen.clone();
                std::thread::spawn(move || {
                    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).map(|n| n == 1).unwrap_or(false) {
                        head.push(byte[0]);
                    }
                    seen.lock().unwrap().push(String::from_utf8_lossy(&head).into_owned());
                    let body = "hello from the test server\n";
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        HttpServer { port, heads }
    }

    fn requests(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// A sandbox with its policy file and log outside the policy's paths.
struct NetSandbox {
    sandbox: Sandbox,
    policy: PathBuf,
    log: PathBuf,
}

impl NetSandbox {
    fn new(identity: &Identity, network: &str) -> NetSandbox {
        let sandbox = Sandbox::new(identity);
        let policy = sandbox.home.path().join("policy.yaml");
        std::fs::write(&policy, policy_text(network)).unwrap();
        identity.own(&policy);
        let log = sandbox.home.path().join("net.log");
        NetSandbox { sandbox, policy, log }
    }

    fn run(&self, command: &[&str]) -> Output {
        self.run_env(command, &[])
    }

    /// The options of `capsule run` this sandbox runs with: its policy and its log.
    fn run_options(&self) -> [&str; 5] {
        ["--verbose", "--policy", self.policy.to_str().unwrap(), "--log", self.log.to_str().unwrap()]
    }

    fn run_env(&self, command: &[&str], env: &[(&str, &str)]) -> Output {
        self.sandbox.run_with(&self.run_options(), command, |cmd| {
            for (k, v) in env {
                cmd.env(k, v);
            }
        })
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The `network.connection` records of the log, as JSON.
    fn connections(&self) -> Vec<serde_json::Value> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["kind"] == "network.connection")
            .map(|v| v["data"].clone())
            .collect()
    }
}

fn policy_text(network: &str) -> String {
    policy(network)
}

fn out(o: &Output) -> String {
    format!("status {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), text(&o.stdout), text(&o.stderr))
}

fn curl() -> &'static str {
    "/usr/bin/curl"
}

fn python() -> &'static str {
    "/usr/bin/python3"
}

#[test]
fn a_listed_name_is_reached_through_the_proxy_and_an_unlisted_one_is_refused() {
    let _shared = SYSTEM.read().unwrap();
    let server = HttpServer::start("127.0.0.1");
    let url = format!("http://localhost:{}/file", server.port);
    for identity in identities("a_listed_name_is_reached_through_the_proxy_and_an_unlisted_one_is_refused") {
        // Without the proxy the name and the address both reach the server.
        let direct = identity.command(curl()).args(["-sS", "-m", "5", &url]).output().unwrap();
        assert!(text(&direct.stdout).contains("hello from the test server"), "{}", out(&direct));
        let before = server.requests().len();

        // `connect: []` too: the launcher adds the proxy's port to the port rules.
        let listed =
            NetSandbox::new(&identity, "  connect: []\n  domains: [localhost]\n  proxy: { allow-private: true }");
        let o = listed.run(&[curl(), "-sS", "-m", "5", &url]);
        assert_eq!(o.status.code(), Some(0), "{}", out(&o));
        assert!(text(&o.stdout).contains("hello from the test server"), "{}", out(&o));
        assert_eq!(server.requests().len(), before + 1, "the request went through");
        let stderr = text(&o.stderr);
        let mechanism = if identity.is_root() {
            "network: isolated in a network namespace holding only loopback"
        } else {
            "network: isolated in a user and a network namespace holding only loopback"
        };
        assert!(stderr.contains(mechanism), "--verbose names the mechanism: {stderr}");
        let records = listed.connections();
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0]["host"], "localhost");
        assert_eq!(records[0]["verdict"], "allowed");
        assert_eq!(records[0]["address"], format!("127.0.0.1:{}", server.port));
        assert!(records[0]["bytes_down"].as_str().unwrap().parse::<u64>().unwrap() > 0);

        // The same name under a policy that does not list it, and the address itself.
        let unlisted = NetSandbox::new(&identity, "  domains: [pypi.org]\n  proxy: { allow-private: true }");
        let ip_url = format!("http://127.0.0.1:{}/file", server.port);
        for target in [url.as_str(), ip_url.as_str()] {
            let o = unlisted.run(&[curl(), "-sS", "-m", "5", "-i", target]);
            assert!(text(&o.stdout).contains("403 Forbidden"), "{target}: {}", out(&o));
            assert!(text(&o.stdout).contains("X-Capsule-Refused: not-listed"), "{}", out(&o));
        }
        assert_eq!(server.requests().len(), before + 1, "nothing reached the server from the unlisted policy");
        let reasons: Vec<_> = unlisted.connections().iter().map(|r| r["reason"].clone()).collect();
        assert_eq!(reasons, ["not-listed", "not-listed"]);
    }
}

#[test]
fn a_name_resolving_to_loopback_is_refused_without_allow_private() {
    let _shared = SYSTEM.read().unwrap();
    let server = HttpServer::start("127.0.0.1");
    let url = format!("http://localhost:{}/", server.port);
    for identity in identities("a_name_resolving_to_loopback_is_refused_without_allow_private") {
        let sandbox = NetSandbox::new(&identity, "  domains: [localhost]");
        let o = sandbox.run(&[curl(), "-sS", "-m", "5", "-i", &url]);
        assert!(text(&o.stdout).contains("X-Capsule-Refused: private-address"), "{}", out(&o));
        assert!(server.requests().is_empty());
        let records = sandbox.connections();
        assert_eq!(records[0]["reason"], "private-address", "{records:?}");
        assert_eq!(records[0]["address"], format!("127.0.0.1:{}", server.port), "the refused address is recorded");
    }
}

/// A python3 program that tries the direct ways out and prints one line per attempt.
const DIRECT: &str = r#"
import socket, sys
tcp_port, hole_port, udp_port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def attempt(name, f):
    try:
        f()
        print(name, "connected")
    except OSError as e:
        print(name, "refused", e.errno)
def tcp(host, port, reply):
    s = socket.create_connection((host, port), timeout=3)
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    if reply:
        s.recv(100)
attempt("direct", lambda: tcp("127.0.0.1", tcp_port, True))
attempt("hole", lambda: tcp("127.0.0.2", hole_port, False))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.sendto(b"udp-escape", ("127.0.0.1", udp_port))
    print("udp sent")
except OSError as e:
    print("udp refused", e.errno)
"#;

#[test]
fn direct_tcp_the_proxy_port_on_another_address_and_udp_are_refused() {
    let _shared = SYSTEM.read().unwrap();
    let server = HttpServer::start("127.0.0.1");
    // A listener on the port the proxy will use, on another loopback address: what a
    // Landlock port rule alone lets the command reach.
    let hole = TcpListener::bind("127.0.0.2:0").unwrap();
    let hole_port = hole.local_addr().unwrap().port();
    hole.set_nonblocking(true).unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    let args = [server.port.to_string(), hole_port.to_string(), udp_port.to_string()];
    let received = |udp: &UdpSocket| {
        let mut buf = [0u8; 64];
        let mut got = 0;
        while let Ok((n, _)) = udp.recv_from(&mut buf) {
            if &buf[..n] == b"udp-escape" {
                got += 1;
            }
        }
        got
    };
    let accepted = |hole: &TcpListener| {
        let mut n = 0;
        while hole.accept().is_ok() {
            n += 1;
        }
        n
    };
    for identity in identities("direct_tcp_the_proxy_port_on_another_address_and_udp_are_refused") {
        let python_args = |_sandboxed: bool| {
            let mut v = vec![python(), "-c", DIRECT];
            v.extend(args.iter().map(String::as_str));
            v
        };

        // Unsandboxed, every way out works.
        let o = identity.command(python()).args(&python_args(false)[1..]).output().unwrap();
        let stdout = text(&o.stdout);
        assert!(stdout.contains("direct connected") && stdout.contains("hole connected"), "{}", out(&o));
        assert_eq!(received(&udp), 1, "the unsandboxed datagram arrives");
        assert_eq!(accepted(&hole), 1);

        // Port rules alone: `connect: [tcp/PORT]` opens that port on every address.
        let ports_only = NetSandbox::new(&identity, &format!("  connect: [tcp/{hole_port}, tcp/{}]", server.port));
        let o = ports_only.run(&python_args(true));
        assert!(text(&o.stdout).contains("hole connected"), "port rules alone let it through: {}", out(&o));
        assert_eq!(accepted(&hole), 1);
        let _ = received(&udp);

        // With the proxy on that very port, in the command's own namespace: nothing.
        let proxied = NetSandbox::new(
            &identity,
            &format!(
                "  connect: [tcp/{hole_port}, tcp/{}]\n  domains: [localhost]\n  proxy: {{ port: {hole_port}, allow-private: true }}",
                server.port
            ),
        );
        let before = server.requests().len();
        let o = proxied.run(&python_args(true));
        let stdout = text(&o.stdout);
        // ECONNREFUSED (111) for each: the supervisor refuses what the namespace would.
        assert!(stdout.contains("direct refused 111"), "{}", out(&o));
        assert!(stdout.contains("hole refused 111"), "{}", out(&o));
        assert!(stdout.contains("udp refused 111"), "{}", out(&o));
        assert!(text(&o.stderr).contains("the supervisor refuses and records connect"), "{}", out(&o));
        assert_eq!(accepted(&hole), 0, "nothing reached 127.0.0.2");
        assert_eq!(received(&udp), 0, "no datagram left the sandbox");
        assert_eq!(server.requests().len(), before, "nothing reached the server directly");

        // Each direct attempt is a record: the syscall, the address and port asked for.
        let records = proxied.connections();
        let direct: Vec<&serde_json::Value> = records.iter().filter(|r| r["reason"] == "direct-connect").collect();
        let attempts: Vec<(String, String, String, String)> = direct
            .iter()
            .map(|r| {
                let field = |k: &str| r[k].as_str().map_or_else(|| r[k].to_string(), str::to_owned);
                (field("method"), field("address"), field("port"), field("verdict"))
            })
            .collect();
        let expected = |method: &str, ip: &str, port: u16| {
            (method.to_owned(), format!("{ip}:{port}"), port.to_string(), "refused".to_owned())
        };
        assert_eq!(
            attempts,
            vec![
                expected("connect", "127.0.0.1", server.port),
                expected("connect", "127.0.0.2", hole_port),
                expected("sendto", "127.0.0.1", udp_port),
            ],
            "{records:#?}"
        );
        assert!(direct.iter().all(|r| r["pid"].as_u64().is_some_and(|p| p > 1)), "{direct:?}");
        assert_eq!(records.len(), 3, "no proxy connection was made: {records:#?}");

        // A connection through the proxy is the proxy's record, not a direct attempt.
        let url = format!("http://localhost:{}/through", server.port);
        let o = proxied.run(&[curl(), "-sS", "-m", "5", &url]);
        assert_eq!(o.status.code(), Some(0), "{}", out(&o));
        let records = proxied.connections();
        assert_eq!(records.iter().filter(|r| r["reason"] == "direct-connect").count(), 3, "{records:#?}");
        let through = records.last().unwrap();
        assert_eq!(through["verdict"], "allowed", "{records:#?}");
        assert_eq!(through["method"], "GET", "{records:#?}");

        let shown =
            std::process::Command::new(bin("capsule")).args(["log", "show"]).arg(&proxied.log).output().unwrap();
        let shown = text(&shown.stdout);
        assert!(
            shown.contains(&format!(
                "direct connect() to 127.0.0.2:{hole_port} refused (direct-connect: not through the proxy) by pid"
            )),
            "{shown}"
        );
        assert!(shown.contains(&format!("direct sendto() to 127.0.0.1:{udp_port} refused")), "{shown}");
        let verified = std::process::Command::new(bin("capsule")).args(["verify"]).arg(&proxied.log).output().unwrap();
        assert!(verified.status.success(), "{}", out(&verified));
    }
}

/// The supervisor reads a `connect` address from memory the command can rewrite before
/// the kernel reads it. A thread flipping the address between the proxy's and
/// 127.0.0.2 on the proxy's port (tests/escapes/connect_race.c) must still reach
/// nothing but the proxy: the namespace enforces, the supervisor only records. The
/// records are a lower bound on the direct attempts, and the log still verifies.
/// The destination check records direct attempts only: a connection through the proxy
/// is the proxy's record, and is not also a `syscall.audited` record when the policy
/// records audited calls.
#[test]
fn the_destination_check_adds_no_audited_syscall_records() {
    let _shared = SYSTEM.read().unwrap();
    let server = HttpServer::start("127.0.0.1");
    let url = format!("http://localhost:{}/file", server.port);
    for identity in identities("the_destination_check_adds_no_audited_syscall_records") {
        // `audit:` follows the network section as a key of its own.
        let sandbox = NetSandbox::new(
            &identity,
            "  domains: [localhost]\n  proxy: { allow-private: true }\naudit:\n  record: [invocations, denials, audited-syscalls]",
        );
        let o = sandbox.run(&[curl(), "-sS", "-m", "5", &url]);
        assert_eq!(o.status.code(), Some(0), "{}", out(&o));
        assert!(text(&o.stdout).contains("hello from the test server"), "{}", out(&o));
        assert_eq!(sandbox.connections().len(), 1, "the proxy's record");
        let audited: Vec<_> = sandbox
            .log_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["kind"] == "syscall.audited")
            .collect();
        assert!(audited.is_empty(), "the checked connect is not also an audited call: {audited:?}");
    }
}

#[test]
fn a_race_on_the_connect_address_reaches_nothing_but_the_proxy() {
    let _shared = SYSTEM.read().unwrap();
    let hole = TcpListener::bind("127.0.0.2:0").unwrap();
    let port = hole.local_addr().unwrap().port();
    hole.set_nonblocking(true).unwrap();
    let accepted = || std::iter::from_fn(|| hole.accept().ok()).count();
    let program = EscapePrograms::get().path("connect_race");
    for identity in identities("a_race_on_the_connect_address_reaches_nothing_but_the_proxy") {
        // Fewer attempts than the listener's backlog (128), which nothing accepts
        // meanwhile. A few tries: on a loaded machine the flipping thread may not run
        // at all during one.
        let mut bare = None;
        for _ in 0..5 {
            let report =
                Report { output: identity.command(&program).args([&port.to_string(), "100"]).output().unwrap() };
            let reached = accepted();
            if report.code() == Some(0) {
                assert!(reached > 0, "unsandboxed, the flipped address reaches 127.0.0.2");
                bare = Some(report);
                break;
            }
            bare = Some(report);
        }
        bare.expect("tried").assert_escaped();

        let sandbox = NetSandbox::new(
            &identity,
            &format!(
                "  connect: [tcp/{port}]\n  domains: [localhost]\n  proxy: {{ port: {port}, allow-private: true }}"
            ),
        );
        // Read through the loader from the workspace (the policy executes system paths only).
        let copy = sandbox.sandbox.workspace.path().join("connect_race");
        std::fs::copy(&program, &copy).unwrap();
        identity.own(&copy);
        let o = sandbox.run(&[LOADER, copy.to_str().unwrap(), &port.to_string(), "300"]);
        let report = Report { output: o };
        report.assert_blocked("connect", "ECONNREFUSED");
        assert_eq!(accepted(), 0, "nothing reached 127.0.0.2: {}", out(&report.output));
        let stdout = text(&report.output.stdout);
        let refused: usize = stdout
            .split("refused ")
            .nth(1)
            .and_then(|n| n.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{stdout}"));
        let records = sandbox.connections();
        let direct = records.iter().filter(|r| r["reason"] == "direct-connect").count();
        eprintln!("{identity:?}: {} {direct} direct-connect records", stdout.lines().next().unwrap_or(""));
        // A refusal the race won (the supervisor read the proxy's address) has no record.
        assert!(direct <= refused, "{direct} direct-connect records for {refused} refusals: {stdout}");
        assert!(
            records
                .iter()
                .filter(|r| r["reason"] == "direct-connect")
                .all(|r| r["address"] == format!("127.0.0.2:{port}")),
            "only the other address is recorded as direct"
        );
        let verified = std::process::Command::new(bin("capsule")).args(["verify"]).arg(&sandbox.log).output().unwrap();
        assert!(verified.status.success(), "{}", out(&verified));
    }
}

/// CONNECT localhost:443 through the proxy, then a TLS ClientHello naming `sni`.
const SNI: &str = r#"
import os, socket, ssl, sys
sni = sys.argv[1]
s = socket.create_connection(("127.0.0.1", 3128), timeout=5)
s.sendall(b"CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n")
reply = b""
while b"\r\n\r\n" not in reply:
    chunk = s.recv(1)
    if not chunk:
        break
    reply += chunk
print("proxy said", reply.split(b"\r\n")[0].decode())
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
try:
    ctx.wrap_socket(s, server_hostname=sni).do_handshake()
    print("handshake done")
except (OSError, ssl.SSLError) as e:
    print("handshake failed", type(e).__name__)
"#;

#[test]
fn a_connect_to_443_whose_tls_server_name_differs_is_refused() {
    let _shared = SYSTEM.read().unwrap();
    // The test server must be on port 443 of a loopback address `localhost` names.
    let listener = match TcpListener::bind("127.0.0.1:443") {
        Ok(l) => l,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!(
                "a_connect_to_443_whose_tls_server_name_differs_is_refused: SKIPPED: cannot bind 127.0.0.1:443: {e}"
            );
            return;
        }
        Err(e) => panic!("cannot bind 127.0.0.1:443 (CI runs as root): {e}"),
    };
    let hellos = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let seen = hellos.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
            let mut buf = vec![0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            seen.lock().unwrap().push(buf[..n].to_vec());
        }
    });
    for identity in identities("a_connect_to_443_whose_tls_server_name_differs_is_refused") {
        let sandbox = NetSandbox::new(&identity, "  domains: [localhost]\n  proxy: { allow-private: true }");
        let script = sandbox.sandbox.workspace.path().join("sni.py");
        std::fs::write(&script, SNI).unwrap();
        identity.own(&script);
        let script = script.to_str().unwrap();

        // Without the proxy nothing checks the name: a ClientHello for another host arrives.
        let mut direct = TcpStream::connect("127.0.0.1:443").unwrap();
        direct.write_all(b"\x16\x03\x01 direct").unwrap();
        drop(direct);
        std::thread::sleep(Duration::from_millis(200));
        let direct_count = hellos.lock().unwrap().len();
        assert_eq!(direct_count, 1);

        let o = sandbox.run(&[python(), script, "evil.example"]);
        assert!(text(&o.stdout).contains("proxy said HTTP/1.1 200"), "{}", out(&o));
        assert!(text(&o.stdout).contains("handshake failed"), "{}", out(&o));
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(hellos.lock().unwrap().len(), direct_count, "a mismatched ClientHello never reaches the server");
        assert_eq!(sandbox.connections()[0]["reason"], "sni-mismatch");

        // The matching name passes: the server gets the ClientHello (it is no TLS
        // server, so the handshake then fails).
        let o = sandbox.run(&[python(), script, "localhost"]);
        std::thread::sleep(Duration::from_millis(200));
        let hellos_now = hellos.lock().unwrap().clone();
        assert_eq!(hellos_now.len(), direct_count + 1, "{}", out(&o));
        assert_eq!(hellos_now.last().unwrap()[0], 0x16, "a TLS handshake record arrived");
        assert_eq!(sandbox.connections()[1]["verdict"], "allowed");
        hellos.lock().unwrap().clear();
    }
}

#[test]
fn a_route_adds_the_credential_upstream_and_the_command_never_holds_it() {
    let _shared = SYSTEM.read().unwrap();
    let server = HttpServer::start("127.0.0.1");
    for identity in identities("a_route_adds_the_credential_upstream_and_the_command_never_holds_it") {
        let network = format!(
            "  proxy: {{ allow-private: true }}\n  routes:\n    - prefix: /api\n      upstream: \"http://localhost:{}\"\n      headers: {{ Authorization: \"Bearer ${{env:CAPSULE_TEST_KEY}}\" }}",
            server.port
        );
        let sandbox = NetSandbox::new(&identity, &network);
        let before = server.requests().len();
        // The command asks through the route, then looks for the key wherever it can.
        let script = "curl -sS -m 5 -H 'Authorization: forged' \"$CAPSULE_PROXY_URL/api/v1/models?x=1\"; \
                      echo; env; cat /proc/self/environ; cat /proc/$PPID/environ 2>&1; \
                      grep -r \"$KEYWORD\" /proc/self/ 2>/dev/null | head -1; true";
        let o = sandbox.run_env(&["/bin/sh", "-c", script], &[("CAPSULE_TEST_KEY", SECRET)]);
        assert_eq!(o.status.code(), Some(0), "{}", out(&o));
        assert!(text(&o.stdout).contains("hello from the test server"), "{}", out(&o));
        let requests = server.requests();
        assert_eq!(requests.len(), before + 1);
        let head = &requests[before];
        assert!(head.starts_with("GET /v1/models?x=1 HTTP/1.1\r\n"), "{head}");
        assert!(head.contains(&format!("Authorization: Bearer {SECRET}\r\n")), "the upstream got the key: {head}");
        assert!(!head.contains("forged"), "the command's own header was replaced: {head}");
        // Nowhere on the command's side, nor in the log or the verbose output.
        assert!(!text(&o.stdout).contains(SECRET), "{}", out(&o));
        assert!(!text(&o.stderr).contains(SECRET), "{}", out(&o));
        assert!(text(&o.stderr).contains("adds headers: Authorization"), "{}", out(&o));
        assert!(!sandbox.log_text().contains(SECRET));
        let records = sandbox.connections();
        assert_eq!(records[0]["route"], "/api", "{records:?}");
        assert_eq!(records[0]["injected_headers"], serde_json::json!(["Authorization"]));

        // Without the variable, the command does not run, and the message names the
        // variable only.
        let o = sandbox.run(&["/bin/true"]);
        assert_eq!(o.status.code(), Some(EXIT_SETUP_FAILURE), "{}", out(&o));
        assert!(text(&o.stderr).contains("CAPSULE_TEST_KEY"), "{}", out(&o));
    }
}

/// A test CA named `ca_name` and two server certificates it signs, one for `localhost` and one for
/// another name, made with Debian's openssl: (ca.pem, [(cert, key) for localhost,
/// (cert, key) for wrong.example]).
fn test_ca(dir: &Path, ca_name: &str) -> (PathBuf, [(PathBuf, PathBuf); 2]) {
    let openssl = |args: &[&OsStr]| {
        let o = std::process::Command::new("openssl").args(args).output().expect("run openssl (.ci/run installs it)");
        assert!(o.status.success(), "openssl {args:?}: {}", out(&o));
    };
    let (ca, ca_key) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    openssl(&[
        "req".as_ref(),
        "-x509".as_ref(),
        "-newkey".as_ref(),
        "rsa:2048".as_ref(),
        "-nodes".as_ref(),
        "-days".as_ref(),
        "2".as_ref(),
        "-subj".as_ref(),
        format!("/CN={ca_name}").as_ref(),
        "-keyout".as_ref(),
        ca_key.as_os_str(),
        "-out".as_ref(),
        ca.as_os_str(),
    ]);
    let leaf = |name: &str| {
        let (cert, key, csr, ext) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}-key.pem")),
            dir.join(format!("{name}.csr")),
            dir.join(format!("{name}.ext")),
        );
        std::fs::write(&ext, format!("subjectAltName=DNS:{name}\nbasicConstraints=CA:FALSE\n")).unwrap();
        openssl(&[
            "req".as_ref(),
            "-newkey".as_ref(),
            "rsa:2048".as_ref(),
            "-nodes".as_ref(),
            "-subj".as_ref(),
            format!("/CN={name}").as_ref(),
            "-keyout".as_ref(),
            key.as_os_str(),
            "-out".as_ref(),
            csr.as_os_str(),
        ]);
        openssl(&[
            "x509".as_ref(),
            "-req".as_ref(),
            "-in".as_ref(),
            csr.as_os_str(),
            "-CA".as_ref(),
            ca.as_os_str(),
            "-CAkey".as_ref(),
            ca_key.as_os_str(),
            "-CAcreateserial".as_ref(),
            "-days".as_ref(),
            "2".as_ref(),
            "-extfile".as_ref(),
            ext.as_os_str(),
            "-out".as_ref(),
            cert.as_os_str(),
        ]);
        (cert, key)
    };
    let leaves = [leaf("localhost"), leaf("wrong.example")];
    (ca, leaves)
}

/// An HTTPS server on 127.0.0.1 that appends each request's head to `argv[3]`.
const HTTPS_RECORDING_SERVER: &str = r#"
import http.server, ssl, sys, time
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        got = self.rfile.read(int(self.headers["Content-Length"]))
        body = b"received %d bytes, %d of them y\n" % (len(got), got.count(b"y"))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path.startswith("/hang"):
            # A slow answer: its start, then nothing until the client is gone (the
            # read ends) or 10 s have passed; which, and when, goes into the file.
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            self.wfile.write(b"first\n")
            self.wfile.flush()
            self.connection.settimeout(10)
            start = time.monotonic()
            try:
                self.connection.recv(1)
                seen = "closed after %.1f s" % (time.monotonic() - start)
            except TimeoutError:
                seen = "open"
            except OSError:
                seen = "closed after %.1f s" % (time.monotonic() - start)
            with open(sys.argv[3], "a") as heads:
                heads.write(f"{self.path}: {seen}\n")
            self.close_connection = True
            return
        if self.path == "/big":
            self.send_response(200)
            self.send_header("Content-Length", str(5_000_000))
            self.end_headers()
            for _ in range(5):
                self.wfile.write(b"x" * 1_000_000)
            return
        with open(sys.argv[3], "a") as heads:
            heads.write(self.requestline + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in self.headers.items()) + "\r\n")
        body = b"hello from the https upstream\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

#[test]
fn a_route_to_an_https_upstream_verifies_it_and_delivers_the_credential_over_tls() {
    let _shared = SYSTEM.read().unwrap();
    let dir = outside_dir("capsule-route-tls-");
    let (ca, [(good_cert, good_key), (wrong_cert, wrong_key)]) = test_ca(dir.path(), "capsule test CA");
    // A certificate for `localhost` from another CA, which the launcher does not trust.
    let untrusted = dir.path().join("untrusted");
    std::fs::create_dir(&untrusted).unwrap();
    let (_, [(untrusted_cert, untrusted_key), _]) = test_ca(&untrusted, "capsule untrusted test CA");
    let heads = dir.path().join("heads.txt");
    let mut servers = Vec::new();
    let mut ports = Vec::new();
    for (cert, key) in [(&good_cert, &good_key), (&wrong_cert, &wrong_key), (&untrusted_cert, &untrusted_key)] {
        let (child, port) = python_server(&[
            OsStr::new("-c"),
            OsStr::new(HTTPS_RECORDING_SERVER),
            cert.as_os_str(),
            key.as_os_str(),
            heads.as_os_str(),
        ]);
        servers.push(child);
        ports.push(port.trim().to_owned());
    }
    let result = std::panic::catch_unwind(|| {
        let read_heads = || std::fs::read_to_string(&heads).unwrap_or_default();
        // Without the proxy: all three servers answer over TLS (so a refusal below is
        // the verification's doing), and only the first is trusted for `localhost`.
        for port in &ports {
            let o = std::process::Command::new(curl())
                .args(["-sS", "-m", "5", "-k", &format!("https://localhost:{port}/")])
                .output()
                .unwrap();
            assert_eq!(text(&o.stdout), "hello from the https upstream\n", "{}", out(&o));
        }
        let o = std::process::Command::new(curl())
            .args(["-sS", "-m", "5", "--cacert", ca.to_str().unwrap(), &format!("https://localhost:{}/", ports[0])])
            .output()
            .unwrap();
        assert_eq!(text(&o.stdout), "hello from the https upstream\n", "{}", out(&o));
        std::fs::write(&heads, "").unwrap();

        for identity in identities("a_route_to_an_https_upstream_verifies_it_and_delivers_the_credential_over_tls") {
            let route = |prefix: &str, port: &str| {
                format!(
                    "    - prefix: {prefix}\n      upstream: \"https://localhost:{port}\"\n      headers: {{ Authorization: \"Bearer ${{env:CAPSULE_TEST_KEY}}\" }}\n"
                )
            };
            let network = format!(
                "  proxy: {{ allow-private: true }}\n  routes:\n{}{}{}",
                route("/api", &ports[0]),
                route("/wrong", &ports[1]),
                route("/untrusted", &ports[2])
            );
            let sandbox = NetSandbox::new(&identity, &network);
            let script = "curl -sS -m 10 -H 'Authorization: forged' \"$CAPSULE_PROXY_URL/api/v1/models?x=1\"; \
                          curl -sS -m 10 -i \"$CAPSULE_PROXY_URL/wrong/\"; \
                          curl -sS -m 10 -i \"$CAPSULE_PROXY_URL/untrusted/\"; env; true";
            // The launcher's trust store is the test CA alone (an SSL_CERT_DIR of the
            // caller's, as on this machine, would be added to it: emptied here).
            let env = [("CAPSULE_TEST_KEY", SECRET), ("SSL_CERT_FILE", ca.to_str().unwrap()), ("SSL_CERT_DIR", "")];
            let o = sandbox.run_env(&["/bin/sh", "-c", script], &env);
            assert_eq!(o.status.code(), Some(0), "{}", out(&o));
            let stdout = text(&o.stdout);
            assert!(stdout.starts_with("hello from the https upstream\n"), "{}", out(&o));
            assert!(stdout.contains("X-Capsule-Refused: upstream-certificate-wrong-name"), "{}", out(&o));
            assert!(stdout.contains("X-Capsule-Refused: upstream-certificate-untrusted"), "{}", out(&o));
            assert!(text(&o.stderr).contains(&format!("route /api -> https://localhost:{}", ports[0])), "{}", out(&o));

            // The trusted upstream got one request, with the key, over TLS; the others
            // got nothing: the handshake failed before a byte of the request was sent.
            let got = read_heads();
            assert_eq!(got.matches("GET ").count(), 1, "{got}");
            assert!(got.starts_with("GET /v1/models?x=1 HTTP/1.1\r\n"), "{got}");
            assert!(got.contains(&format!("Authorization: Bearer {SECRET}\r\n")), "{got}");
            assert!(got.contains(&format!("Host: localhost:{}\r\n", ports[0])), "{got}");
            assert!(!got.contains("forged"), "{got}");
            std::fs::write(&heads, "").unwrap();

            // The key is nowhere on the command's side, in --verbose output or the log.
            assert!(!stdout.contains(SECRET), "{}", out(&o));
            assert!(!text(&o.stderr).contains(SECRET), "{}", out(&o));
            assert!(!sandbox.log_text().contains(SECRET));
            let records = sandbox.connections();
            let summary: Vec<_> =
                records.iter().map(|r| (r["route"].clone(), r["verdict"].clone(), r["reason"].clone())).collect();
            assert_eq!(
                summary,
                [
                    (serde_json::json!("/api"), serde_json::json!("allowed"), serde_json::Value::Null),
                    (
                        serde_json::json!("/wrong"),
                        serde_json::json!("refused"),
                        serde_json::json!("upstream-certificate-wrong-name")
                    ),
                    (
                        serde_json::json!("/untrusted"),
                        serde_json::json!("refused"),
                        serde_json::json!("upstream-certificate-untrusted")
                    ),
                ],
                "{records:?}"
            );
            assert!(records[0]["bytes_down"].as_str().unwrap().parse::<u64>().unwrap() > 0, "{records:?}");

            // Bodies larger than the relay's buffers, both ways, arrive whole.
            let script = "yes | tr -d '\\n' | head -c 3000000 > big && \
                          curl -sS -m 20 --data-binary @big \"$CAPSULE_PROXY_URL/api/upload\" && \
                          curl -sS -m 20 -o /dev/null -w '%{size_download}\\n' \"$CAPSULE_PROXY_URL/api/big\"";
            let o = sandbox.run_env(&["/bin/sh", "-c", script], &env);
            assert_eq!(text(&o.stdout), "received 3000000 bytes, 3000000 of them y\n5000000\n", "{}", out(&o));

            // The upstream's name passes the same address checks as a domain's.
            let private = NetSandbox::new(&identity, &network.replace("allow-private: true", "allow-private: false"));
            let o = private.run_env(&["/bin/sh", "-c", "curl -sS -m 10 -i \"$CAPSULE_PROXY_URL/api/\""], &env);
            assert!(text(&o.stdout).contains("X-Capsule-Refused: private-address"), "{}", out(&o));
            assert_eq!(read_heads(), "", "nothing reached the upstream");

            // A trust store that holds nothing usable: the launch fails before the
            // command runs, and says why.
            let empty = dir.path().join("empty.pem");
            std::fs::write(&empty, "").unwrap();
            let only_empty =
                [("CAPSULE_TEST_KEY", SECRET), ("SSL_CERT_FILE", empty.to_str().unwrap()), ("SSL_CERT_DIR", "")];
            let o = sandbox.run_env(&["/bin/true"], &only_empty);
            assert_eq!(o.status.code(), Some(EXIT_SETUP_FAILURE), "{}", out(&o));
            assert!(text(&o.stderr).contains("no trusted certificate"), "{}", out(&o));
            assert!(!text(&o.stderr).contains(SECRET), "{}", out(&o));
        }
    });
    for mut child in servers {
        let _ = child.kill();
        let _ = child.wait();
    }
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// A client that goes away in the middle of an answer from an https route: the proxy
/// ends its TLS connection upstream too (close_notify after the client's FIN, at once
/// after a reset), so a slow upstream (a model streaming tokens) stops working for
/// nobody. Directly, the server sees either end at once; through the proxy it must
/// too, and not only when the invocation ends (the command stays 4 s longer).
#[test]
fn a_client_that_goes_away_ends_its_https_upstream_connection() {
    let _shared = SYSTEM.read().unwrap();
    let dir = outside_dir("capsule-route-gone-");
    let (ca, [(cert, key), _]) = test_ca(dir.path(), "capsule test CA");
    let seen = dir.path().join("seen.txt");
    let (mut server, port) = python_server(&[
        OsStr::new("-c"),
        OsStr::new(HTTPS_RECORDING_SERVER),
        cert.as_os_str(),
        key.as_os_str(),
        seen.as_os_str(),
    ]);
    let port = port.trim().to_owned();
    // Reads the answer's start, then closes: with a FIN, or with a reset (SO_LINGER 0).
    const CLIENT: &str = r#"
import os, socket, ssl, struct, sys, urllib.parse
base, path, how = sys.argv[1], sys.argv[2], sys.argv[3]
u = urllib.parse.urlsplit(base)
s = socket.create_connection((u.hostname, u.port))
if u.scheme == "https":
    ctx = ssl.create_default_context(cafile=sys.argv[4])
    s = ctx.wrap_socket(s, server_hostname=u.hostname)
s.sendall(f"GET {u.path}{path} HTTP/1.1\r\nHost: {u.hostname}\r\n\r\n".encode())
got = b""
while b"first" not in got:
    got += s.recv(100)
if how == "reset":
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
print("went away")
"#;
    // Whether the server saw `path`'s connection end within 2 s of its answer's start.
    let soon = |text: &str, path: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{path}: closed after ")))
            .and_then(|rest| rest.trim_end_matches(" s").parse::<f64>().ok())
            .is_some_and(|seconds| seconds < 2.0)
    };
    // Both lines for `paths` in the file, waiting for the server's verdicts.
    let verdicts = |paths: &[&str]| -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let text = std::fs::read_to_string(&seen).unwrap_or_default();
            if paths.iter().all(|p| text.contains(&format!("{p}: "))) || std::time::Instant::now() > deadline {
                std::fs::write(&seen, "").unwrap();
                return text;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let result = std::panic::catch_unwind(|| {
        // Directly: the server notices either way of going away.
        let direct = format!("https://localhost:{port}");
        for (path, how) in [("/hang-direct-fin", "fin"), ("/hang-direct-reset", "reset")] {
            let o = std::process::Command::new(python())
                .args(["-c", CLIENT, &direct, path, how, ca.to_str().unwrap()])
                .output()
                .unwrap();
            assert_eq!(text(&o.stdout), "went away\n", "{}", out(&o));
        }
        let text_seen = verdicts(&["/hang-direct-fin", "/hang-direct-reset"]);
        for path in ["/hang-direct-fin", "/hang-direct-reset"] {
            assert!(soon(&text_seen, path), "{text_seen}");
        }

        for identity in identities("a_client_that_goes_away_ends_its_https_upstream_connection") {
            let network = format!(
                "  proxy: {{ allow-private: true }}\n  routes:\n    - prefix: /api\n      upstream: \"https://localhost:{port}\"\n"
            );
            let sandbox = NetSandbox::new(&identity, &network);
            let env = [("SSL_CERT_FILE", ca.to_str().unwrap()), ("SSL_CERT_DIR", "")];
            let script = format!(
                "{py} -c '{CLIENT}' \"$CAPSULE_PROXY_URL/api\" /hang-fin fin && \
                 {py} -c '{CLIENT}' \"$CAPSULE_PROXY_URL/api\" /hang-reset reset && sleep 4",
                py = python()
            );
            let o = sandbox.run_env(&["/bin/sh", "-c", &script], &env);
            assert_eq!(text(&o.stdout), "went away\nwent away\n", "{}", out(&o));
            let text_seen = verdicts(&["/hang-fin", "/hang-reset"]);
            assert!(soon(&text_seen, "/hang-fin"), "after the client's FIN: {text_seen}");
            assert!(soon(&text_seen, "/hang-reset"), "after the client's reset: {text_seen}");
        }
    });
    let _ = server.kill();
    let _ = server.wait();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// A self-signed certificate for `localhost`, made with Debian's openssl.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let o = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl (.ci/run installs it)");
    assert!(o.status.success(), "{}", out(&o));
    (cert, key)
}

const HTTPS_SERVER: &str = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello over tls\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

const URLLIB: &str = r#"
import ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[2])
print(urllib.request.urlopen(sys.argv[1], context=ctx, timeout=10).read().decode(), end="")
"#;

#[test]
fn curl_and_python_urllib_fetch_https_through_the_proxy() {
    let _shared = SYSTEM.read().unwrap();
    let dir = outside_dir("capsule-tls-");
    let (cert, key) = certificate(dir.path());
    let (mut child, port) =
        python_server(&[OsStr::new("-c"), OsStr::new(HTTPS_SERVER), cert.as_os_str(), key.as_os_str()]);
    let url = format!("https://localhost:{}/", port.trim());
    let result = std::panic::catch_unwind(|| {
        for identity in identities("curl_and_python_urllib_fetch_https_through_the_proxy") {
            let sandbox = NetSandbox::new(&identity, "  domains: [localhost]\n  proxy: { allow-private: true }");
            let ws = sandbox.sandbox.workspace.path();
            let ca = ws.join("ca.pem");
            std::fs::copy(&cert, &ca).unwrap();
            identity.own(&ca);
            let script = ws.join("fetch.py");
            std::fs::write(&script, URLLIB).unwrap();
            identity.own(&script);
            let o = sandbox.run(&[curl(), "-sS", "-m", "10", "--cacert", ca.to_str().unwrap(), &url]);
            assert_eq!(text(&o.stdout), "hello over tls\n", "{}", out(&o));
            let o = sandbox.run(&[python(), script.to_str().unwrap(), &url, ca.to_str().unwrap()]);
            assert_eq!(text(&o.stdout), "hello over tls\n", "{}", out(&o));
            let records = sandbox.connections();
            assert_eq!(records.len(), 2, "{records:?}");
            assert!(records.iter().all(|r| r["method"] == "CONNECT" && r["verdict"] == "allowed"), "{records:?}");
        }
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Runs the rest of the command line with unshare(2) failing with EPERM, as on a kernel
/// or container without (unprivileged) namespaces (python3-seccomp, from .ci/run).
const NO_NAMESPACES: &str = r#"
import os, sys, seccomp
f = seccomp.SyscallFilter(seccomp.ALLOW)
f.add_rule(seccomp.ERRNO(1), "unshare")
f.load()
os.execv(sys.argv[1], sys.argv[1:])
"#;

#[test]
fn without_a_network_namespace_the_launch_fails_closed() {
    let _shared = SYSTEM.read().unwrap();
    for identity in identities("without_a_network_namespace_the_launch_fails_closed") {
        let sandbox = NetSandbox::new(&identity, "  domains: [localhost]");
        let policy = sandbox.policy.to_str().unwrap().to_owned();
        let log = sandbox.log.to_str().unwrap().to_owned();
        let marker = sandbox.sandbox.workspace.path().join("ran");
        let o = sandbox
            .sandbox
            .identity
            .command(python())
            .current_dir(sandbox.sandbox.workspace.path())
            .env("HOME", sandbox.sandbox.home.path())
            .env("XDG_CACHE_HOME", sandbox.sandbox.cache_home())
            .env("PATH", SYSTEM_PATH)
            .args(["-c", NO_NAMESPACES])
            .arg(bin("capsule"))
            .args(["run", "--verbose", "--policy", &policy, "--log", &log, "--"])
            .args(["/usr/bin/touch", marker.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(EXIT_SETUP_FAILURE), "{}", out(&o));
        assert!(text(&o.stderr).contains("cannot give the command a network namespace"), "{}", out(&o));
        assert!(!marker.exists(), "the command did not run");
    }
}

#[test]
fn the_log_shows_connections_readably() {
    let _shared = SYSTEM.read().unwrap();
    let server = HttpServer::start("127.0.0.1");
    let identity = Identity::Current;
    let sandbox = NetSandbox::new(&identity, "  domains: [localhost]\n  proxy: { allow-private: true }");
    let url = format!("http://localhost:{}/", server.port);
    let o = sandbox.run(&[curl(), "-sS", "-m", "5", &url]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let shown = std::process::Command::new(bin("capsule")).args(["log", "show"]).arg(&sandbox.log).output().unwrap();
    let shown = text(&shown.stdout);
    assert!(shown.contains("network.connection"), "{shown}");
    assert!(shown.contains(&format!("GET localhost:{} -> 127.0.0.1:{} allowed", server.port, server.port)), "{shown}");
    let verified = std::process::Command::new(bin("capsule")).args(["verify"]).arg(&sandbox.log).output().unwrap();
    assert!(verified.status.success(), "{}", out(&verified));
}

#[test]
fn explain_and_diff_speak_of_domains_and_routes() {
    let dir = outside_dir("capsule-netpol-");
    let old = dir.path().join("old.yaml");
    let new = dir.path().join("new.yaml");
    std::fs::write(&old, policy("  domains: [pypi.org, \"*.pythonhosted.org\"]")).unwrap();
    std::fs::write(
        &new,
        policy("  domains: [pypi.org, github.com]\n  routes:\n    - prefix: /openai\n      upstream: \"http://api.example.org\""),
    )
    .unwrap();
    let explain = |name: &str| {
        let o = std::process::Command::new(bin("capsulec"))
            .arg("explain")
            .arg(&old)
            .args(["--domain", name])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", out(&o));
        text(&o.stdout)
    };
    assert!(explain("files.pythonhosted.org").contains("allowed through the proxy, by the entry `*.pythonhosted.org`"));
    assert!(explain("pythonhosted.org").contains("refused: not listed"));
    assert!(explain("10.0.0.1").contains("refused: an address"));
    let o = std::process::Command::new(bin("capsulec")).arg("diff").arg(&old).arg(&new).output().unwrap();
    let diff = text(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{diff}");
    assert!(diff.contains("network.proxy.domains: removed: *.pythonhosted.org -> added: github.com"), "{diff}");
    assert!(diff.contains("network.proxy.routes[/openai]: null -> {"), "a route added: {diff}");
}

/// Connection storms are bounded like syscall storms: 1,024 records one by one, the
/// rest counted per verdict and reason.
const STORM: &str = r#"
import socket, sys
for _ in range(int(sys.argv[1])):
    s = socket.create_connection(("127.0.0.1", 3128), timeout=5)
    s.sendall(b"GET http://unlisted.example/ HTTP/1.1\r\nHost: unlisted.example\r\n\r\n")
    while s.recv(4096):
        pass
    s.close()
"#;

#[test]
fn a_connection_storm_is_recorded_within_bounds() {
    let _shared = SYSTEM.read().unwrap();
    let sandbox = NetSandbox::new(&Identity::Current, "  domains: [localhost]");
    let o = sandbox.run(&[python(), "-c", STORM, "1100"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let records = sandbox.connections();
    let single: Vec<_> = records.iter().filter(|r| r.get("summary").is_none()).collect();
    let summaries: Vec<_> = records.iter().filter(|r| r.get("summary").is_some()).collect();
    assert_eq!(single.len(), 1024);
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    assert_eq!(summaries[0]["count"], "76");
    assert_eq!(summaries[0]["reason"], "not-listed");
}

/// Direct attempts share the bound: 1,024 records one by one, the rest one summary.
const DIRECT_STORM: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
refused = 0
for _ in range(int(sys.argv[1])):
    try:
        s.sendto(b"x", ("127.0.0.9", 9))
    except ConnectionRefusedError:
        refused += 1
print("refused", refused)
"#;

#[test]
fn a_storm_of_direct_attempts_is_recorded_within_bounds() {
    let _shared = SYSTEM.read().unwrap();
    let sandbox = NetSandbox::new(&Identity::Current, "  domains: [localhost]");
    let o = sandbox.run(&[python(), "-c", DIRECT_STORM, "1100"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(text(&o.stdout).contains("refused 1100"), "every one refused: {}", out(&o));
    let records = sandbox.connections();
    let single = records.iter().filter(|r| r.get("summary").is_none()).count();
    let summaries: Vec<_> = records.iter().filter(|r| r.get("summary").is_some()).collect();
    assert_eq!(single, 1024);
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    assert_eq!(summaries[0]["count"], "76");
    assert_eq!(summaries[0]["reason"], "direct-connect");
    let verified = std::process::Command::new(bin("capsule")).args(["verify"]).arg(&sandbox.log).output().unwrap();
    assert!(verified.status.success(), "{}", out(&verified));
}

/// A one-file wheel and a PEP 503 index for it, served by python3's http.server.
const INDEX: &str = r#"
import http.server, os, sys, zipfile
root = sys.argv[1]
os.makedirs(os.path.join(root, "simple", "capsule-demo"), exist_ok=True)
wheel = "capsule_demo-1.0-py3-none-any.whl"
with zipfile.ZipFile(os.path.join(root, wheel), "w") as z:
    z.writestr("capsule_demo.py", "HELLO = 'from the local index'\n")
    z.writestr("capsule_demo-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: capsule-demo\nVersion: 1.0\n")
    z.writestr("capsule_demo-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    z.writestr("capsule_demo-1.0.dist-info/RECORD", "")
with open(os.path.join(root, "simple", "capsule-demo", "index.html"), "w") as f:
    f.write('<html><body><a href="../../%s">%s</a></body></html>\n' % (wheel, wheel))
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: Quiet(*a, directory=root))
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

#[test]
fn pip_downloads_from_a_local_index_through_the_proxy() {
    let _shared = SYSTEM.read().unwrap();
    let pip_present =
        std::process::Command::new(python()).args(["-m", "pip", "--version"]).output().map(|o| o.status.success());
    if !pip_present.unwrap_or(false) {
        assert!(std::env::var_os("CI").is_none(), "pip is missing (.ci/run installs python3-pip)");
        eprintln!("pip_downloads_from_a_local_index_through_the_proxy: SKIPPED: no pip");
        return;
    }
    let root = outside_dir("capsule-index-");
    let (mut child, port) = python_server(&[OsStr::new("-c"), OsStr::new(INDEX), root.path().as_os_str()]);
    let index = format!("http://localhost:{}/simple/", port.trim());
    let result = std::panic::catch_unwind(|| {
        for identity in identities("pip_downloads_from_a_local_index_through_the_proxy") {
            let sandbox = NetSandbox::new(&identity, "  domains: [localhost]\n  proxy: { allow-private: true }");
            let script = format!(
                "TMPDIR=$PWD exec {} -m pip download --no-cache-dir --disable-pip-version-check --no-deps \
                 --index-url {index} -d $PWD/dl capsule-demo",
                python()
            );
            let o = sandbox.run(&["/bin/sh", "-c", &script]);
            assert_eq!(o.status.code(), Some(0), "{}", out(&o));
            let wheel = sandbox.sandbox.workspace.path().join("dl/capsule_demo-1.0-py3-none-any.whl");
            assert!(wheel.is_file(), "{}", out(&o));
            let records = sandbox.connections();
            assert!(records.len() >= 2, "the index page and the wheel: {records:?}");
            assert!(records.iter().all(|r| r["verdict"] == "allowed" && r["host"] == "localhost"), "{records:?}");
        }
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Both directions of a tunnel at once: 20 MB sent while the echo comes back.
const ECHO: &str = r#"
import socket, sys, threading
port, size = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", 3128), timeout=30)
s.sendall(b"CONNECT localhost:%d HTTP/1.1\r\n\r\n" % port)
reply = b""
while b"\r\n\r\n" not in reply:
    reply += s.recv(1)
assert reply.startswith(b"HTTP/1.1 200"), reply
def send():
    block = bytes(range(256)) * 256
    left = size
    while left:
        n = min(left, len(block))
        s.sendall(block[:n])
        left -= n
    s.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send)
t.start()
got = 0
while True:
    chunk = s.recv(1 << 16)
    if not chunk:
        break
    got += len(chunk)
t.join()
print("echoed", got)
"#;

#[test]
fn a_tunnel_carries_both_directions_at_once() {
    let _shared = SYSTEM.read().unwrap();
    let port = echo_server();
    let size = 20_000_000u64;
    let sandbox = NetSandbox::new(&Identity::Current, "  domains: [localhost]\n  proxy: { allow-private: true }");
    let o = sandbox.run(&[python(), "-c", ECHO, &port.to_string(), &size.to_string()]);
    assert_echoed_through_the_proxy(&sandbox, &o, size);
}

/// The launcher itself under a seccomp filter that refuses `splice(2)` (a kernel or a
/// container profile without it): the proxy's relay falls back to copying, and the
/// bytes still arrive whole, counted to the byte. The wrapper first shows that splice
/// is refused to it.
#[test]
fn without_splice_the_relay_copies_and_the_bytes_arrive_whole() {
    const NO_SPLICE: &str = r#"
import errno, os, sys, seccomp
f = seccomp.SyscallFilter(seccomp.ALLOW)
f.add_rule(seccomp.ERRNO(errno.EPERM), "splice")
f.load()
r, w = os.pipe()
r2, w2 = os.pipe()
os.write(w, b"x")
try:
    os.splice(r, w2, 1)
    sys.exit("splice was not refused")
except PermissionError:
    print("splice refused", file=sys.stderr, flush=True)
os.execv(sys.argv[1], sys.argv[1:])
"#;
    let _shared = SYSTEM.read().unwrap();
    let port = echo_server();
    let size = 5_000_000u64;
    for identity in identities("without_splice_the_relay_copies_and_the_bytes_arrive_whole") {
        let sandbox = NetSandbox::new(&identity, "  domains: [localhost]\n  proxy: { allow-private: true }");
        let o = sandbox
            .sandbox
            .command(python())
            .args(["-c", NO_SPLICE])
            .arg(capsule_tests::bin("capsule"))
            .arg("run")
            .args(sandbox.run_options())
            .arg("--workspace")
            .arg(sandbox.sandbox.workspace.path())
            .args(["--", python(), "-c", ECHO, &port.to_string(), &size.to_string()])
            .output()
            .unwrap();
        assert!(text(&o.stderr).contains("splice refused"), "{}", out(&o));
        assert_echoed_through_the_proxy(&sandbox, &o, size);
    }
}

/// A TCP server on 127.0.0.1 that echoes every connection back until its client stops
/// sending; returns its port.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = stream.try_clone().unwrap();
                let mut writer = stream;
                let _ = std::io::copy(&mut reader, &mut writer);
                let _ = writer.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    port
}

/// `ECHO` sent and got back `size` bytes through the proxy, and the connection's record
/// counts them to the byte each way.
fn assert_echoed_through_the_proxy(sandbox: &NetSandbox, o: &Output, size: u64) {
    assert_eq!(text(&o.stdout).trim(), format!("echoed {size}"), "{}", out(o));
    let records = sandbox.connections();
    assert_eq!(records[0]["bytes_up"], size.to_string(), "{records:?}");
    assert_eq!(records[0]["bytes_down"], size.to_string(), "{records:?}");
}

/// Starts `python3 ARGS...`, a test server that prints its port on its first line;
/// returns the child and that port.
fn python_server(args: &[&OsStr]) -> (std::process::Child, String) {
    let mut child =
        std::process::Command::new(python()).args(args).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut port = String::new();
    let mut stdout = child.stdout.take().unwrap();
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        port.push(byte[0] as char);
    }
    (child, port)
}
