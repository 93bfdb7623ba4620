//! Network by name (docs/network.md), side by side on loopback:
//!
//! - throughput: a 100 MB download by curl, directly, in the sandbox without
//!   `domains` (the sandbox's own cost, apart from the proxy's) and through the proxy
//!   (curl's own `speed_download`, so the launch is not counted); with `--rates`, also
//!   from a server that paces its sends, as a link of that speed would;
//! - per-connection cost: Python's urllib making sequential requests, each on a new
//!   connection, on the same three sides, in one process each;
//! - launch cost: `/bin/true` under the same policy without and with `domains`, and
//!   with a route to an `http://` and to an `https://` upstream (the latter reads the
//!   trust store and configures the TLS client at launch).
//!
//! The server is this process, on 127.0.0.1; `localhost` is the name the policy lists
//! (`allow-private: true`, since it resolves to loopback).

use anyhow::ensure;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Options {
    /// Downloads per side.
    #[arg(long, default_value_t = 5)]
    downloads: usize,
    /// Requests per side for the per-connection cost.
    #[arg(long, default_value_t = 300)]
    requests: usize,
    /// Launches per side.
    #[arg(long, default_value_t = 50)]
    launches: usize,
    /// Also download from a server that sends no faster than each of these rates
    /// (MB/s, comma-separated), as a network link would: up to which rate does the
    /// proxy keep pace? The unpaced download measures its cost when the CPU is the limit.
    #[arg(long, value_delimiter = ',')]
    rates: Vec<u64>,
}

const BIG: usize = 100 * 1000 * 1000;

/// Serves `GET /big` (100 MB), `GET /big/RATE` (the same, sent at no more than RATE
/// MB/s) and anything else (a short body), one thread per connection.
fn serve() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).map(|n| n == 1).unwrap_or(false) {
                    head.push(byte[0]);
                }
                let _ = stream.set_nodelay(true);
                if let Some(rest) = head.strip_prefix(b"GET /big") {
                    // Bytes per second, for a path `/big/RATE` (RATE in MB/s).
                    let rate = std::str::from_utf8(rest)
                        .ok()
                        .and_then(|r| r.strip_prefix('/')?.split(' ').next()?.parse::<f64>().ok())
                        .map(|mb| mb * 1e6);
                    let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\nConnection: close\r\n\r\n");
                    let chunk = vec![b'x'; 1 << 20];
                    let (mut left, start) = (BIG, Instant::now());
                    while left > 0 {
                        let n = left.min(chunk.len());
                        if stream.write_all(&chunk[..n]).is_err() {
                            return;
                        }
                        left -= n;
                        if let Some(rate) = rate {
                            let due = Duration::from_secs_f64((BIG - left) as f64 / rate);
                            std::thread::sleep(due.saturating_sub(start.elapsed()));
                        }
                    }
                } else {
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n");
                }
            });
        }
    });
    Ok(port)
}

/// curl downloading `url` to nowhere, printing its own average rate (bytes per second).
fn download(url: &str) -> [&str; 7] {
    ["/usr/bin/curl", "-sS", "-o", "/dev/null", "-w", "%{speed_download}", url]
}

const POLICY: &str = r#"version: 1
name: network-bench
syscalls:
  allow: ["@default", "@basic-io", "@file-system", "@io-event", "@process", "@signal",
          "@timer", "@memory", "@ipc", "@network-io", ioctl, uname, sysinfo, getrusage, umask,
          sched_getaffinity, prlimit64, getrandom]
  deny:
    - socket: domain not in [AF_INET, AF_INET6]
filesystem:
  read: [/usr, /lib, /lib64, /bin, /etc, /proc, /dev/null, /dev/urandom, "${WORKSPACE}"]
  write: ["${WORKSPACE}", /dev/null]
  execute: [/usr, /bin, /lib, /lib64]
NETWORK
env:
  pass: [PATH, HOME, LANG]
"#;

const URLLIB: &str = r#"
import sys, time, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
opener = urllib.request.build_opener()
for _ in range(20):
    opener.open(url).read()
start = time.perf_counter()
for _ in range(n):
    opener.open(url).read()
print((time.perf_counter() - start) / n * 1e6)
"#;

pub fn run(options: &Options) -> anyhow::Result<()> {
    let capsule = crate::bin("capsule")?;
    let port = serve()?;
    let scratch = crate::Scratch::new()?;
    let write_policy = |name: &str, network: &str| -> anyhow::Result<PathBuf> {
        let path = scratch.path(name);
        std::fs::write(&path, POLICY.replace("NETWORK", network))?;
        Ok(path)
    };
    let plain = write_policy("plain.yaml", "")?;
    let proxied = write_policy("proxied.yaml", "network:\n  domains: [localhost]\n  proxy: { allow-private: true }")?;
    let route = |scheme: &str| format!("network:\n  routes: [{{ prefix: /r, upstream: \"{scheme}://localhost:1\" }}]");
    let http_route = write_policy("http-route.yaml", &route("http"))?;
    let https_route = write_policy("https-route.yaml", &route("https"))?;
    let sandboxed = |policy: &Path, command: &[&str]| {
        let mut c = scratch.capsule_run(&capsule, policy);
        c.arg("--").args(command);
        c
    };
    let output = |mut c: Command| -> anyhow::Result<String> {
        let o = c.stdin(Stdio::null()).stderr(Stdio::piped()).output()?;
        ensure!(o.status.success(), "{c:?} failed: {}", String::from_utf8_lossy(&o.stderr));
        Ok(String::from_utf8(o.stdout)?)
    };

    // Throughput. Three sides, interleaved: curl alone, curl in the sandbox without
    // `domains` (so the sandbox's own cost is seen apart from the proxy's), and curl
    // in the sandbox through the proxy.
    // curl's own rate in MB/s, and curl run directly, with no proxy taken from the
    // environment.
    let rate = |c: Command| -> anyhow::Result<f64> { Ok(output(c)?.trim().parse::<f64>()? / 1e6) };
    let direct_curl = |curl: &[&str]| {
        let mut c = Command::new(curl[0]);
        c.args(&curl[1..]).env("NO_PROXY", "*").env_remove("http_proxy").env_remove("HTTP_PROXY");
        c
    };
    let big = format!("http://localhost:{port}/big");
    let curl = download(&big);
    let (mut direct, mut sandboxed_direct, mut through) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..options.downloads {
        direct.push(rate(direct_curl(&curl))?);
        sandboxed_direct.push(rate(sandboxed(&plain, &curl))?);
        through.push(rate(sandboxed(&proxied, &curl))?);
    }
    let (d, s, t) = (crate::median(direct), crate::median(sandboxed_direct), crate::median(through));
    println!(
        "100 MB download (median of {}): direct {d:.0} MB/s, sandboxed without domains {s:.0} MB/s, through the \
         proxy {t:.0} MB/s: {:.2} of direct, {:.2} of sandboxed",
        options.downloads,
        t / d,
        t / s
    );

    // The same through links of a given speed: the server paces its sends.
    for sent in &options.rates {
        let paced = format!("http://localhost:{port}/big/{sent}");
        let curl = download(&paced);
        let (mut direct, mut through) = (Vec::new(), Vec::new());
        for _ in 0..options.downloads {
            direct.push(rate(direct_curl(&curl))?);
            through.push(rate(sandboxed(&proxied, &curl))?);
        }
        let (d, t) = (crate::median(direct), crate::median(through));
        println!("  sent at {sent} MB/s: direct {d:.0} MB/s, through the proxy {t:.0} MB/s: {:.2} of direct", t / d);
    }

    // Per-connection cost.
    let small = format!("http://localhost:{port}/small");
    let n = options.requests.to_string();
    let script = ["/usr/bin/python3", "-c", URLLIB, small.as_str(), n.as_str()];
    let (mut direct, mut sandboxed_direct, mut through) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        let mut c = Command::new(script[0]);
        c.args(&script[1..]).env("NO_PROXY", "*");
        direct.push(output(c)?.trim().parse::<f64>()?);
        sandboxed_direct.push(output(sandboxed(&plain, &script))?.trim().parse::<f64>()?);
        through.push(output(sandboxed(&proxied, &script))?.trim().parse::<f64>()?);
    }
    let (d, s, t) = (crate::median(direct), crate::median(sandboxed_direct), crate::median(through));
    println!(
        "one request on a new connection (median of 3 x {}): direct {d:.0} µs, sandboxed without domains {s:.0} µs, \
         through the proxy {t:.0} µs: +{:.0} µs over direct, +{:.0} µs over sandboxed",
        options.requests,
        t - d,
        t - s
    );

    // Launch cost without and with domains.
    let (mut without, mut with) = (Vec::new(), Vec::new());
    let time = |mut c: Command| -> anyhow::Result<Duration> {
        let start = Instant::now();
        let status = c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status()?;
        ensure!(status.success(), "{c:?} failed");
        Ok(start.elapsed())
    };
    for _ in 0..options.launches {
        without.push(time(sandboxed(&plain, &["/bin/true"]))?.as_secs_f64() * 1e3);
        with.push(time(sandboxed(&proxied, &["/bin/true"]))?.as_secs_f64() * 1e3);
    }
    let (a, b) = (crate::median(without), crate::median(with));
    println!(
        "capsule run /bin/true (median of {}): without domains {a:.2} ms, with domains {b:.2} ms: +{:.2} ms (namespace and proxy start)",
        options.launches,
        b - a
    );
    let (mut plain_route, mut tls_route) = (Vec::new(), Vec::new());
    for _ in 0..options.launches {
        plain_route.push(time(sandboxed(&http_route, &["/bin/true"]))?.as_secs_f64() * 1e3);
        tls_route.push(time(sandboxed(&https_route, &["/bin/true"]))?.as_secs_f64() * 1e3);
    }
    let (a, b) = (crate::median(plain_route), crate::median(tls_route));
    println!(
        "capsule run /bin/true (median of {}): with an http:// route {a:.2} ms, with an https:// route {b:.2} ms: +{:.2} ms (trust store and TLS client set-up)",
        options.launches,
        b - a
    );
    Ok(())
}
