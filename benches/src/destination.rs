//! The supervisor's destination check under `network: domains:` (docs/network.md,
//! "Direct attempts"): what it adds to a `connect`. A C program times `connect(2)` on a
//! UDP socket in a loop (the kernel's UDP connect is a local route lookup, so the
//! difference between the sides is the notification round trip):
//!
//! - without domains (no proxy, nothing notified): the baseline under `capsule run`;
//! - with domains, to the proxy's address: notified, read, let through, not recorded;
//! - with domains, to another address: notified, read, refused and recorded (the first
//!   1,024 one by one, the rest counted).

use anyhow::ensure;
use std::path::{Path, PathBuf};
use std::process::Stdio;

#[derive(clap::Args)]
pub struct Options {
    /// Connects per run.
    #[arg(long, default_value_t = 20_000)]
    connects: usize,
    /// Runs per side (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

const CONNECTS: &str = r#"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &to.sin_addr) != 1) return 2;
    long n = atol(argv[3]);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0) { perror("socket"); return 1; }
    for (int i = 0; i < 100; i++) connect(s, (struct sockaddr *)&to, sizeof to);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) connect(s, (struct sockaddr *)&to, sizeof to);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
    printf("%.3f\n", ns / n / 1000.0);
    return 0;
}
"#;

const POLICY: &str = r#"version: 1
name: destination-bench
syscalls:
  allow: ["@default", "@basic-io", "@file-system", "@io-event", "@process", "@signal",
          "@timer", "@memory", "@network-io"]
  deny:
    - socket: domain not in [AF_INET, AF_INET6]
filesystem:
  read: [/usr, /lib, /lib64, /bin, /etc, /proc, /dev/null, "${WORKSPACE}"]
  write: ["${WORKSPACE}", /dev/null]
  execute: [/usr, /bin, /lib, /lib64, "${WORKSPACE}"]
NETWORK
"#;

pub fn run(options: &Options) -> anyhow::Result<()> {
    let capsule = crate::bin("capsule")?;
    let scratch = crate::Scratch::new()?;
    let program = crate::compile_c(&scratch.work, "connects", CONNECTS)?;
    let write_policy = |name: &str, network: &str| -> anyhow::Result<PathBuf> {
        let path = scratch.path(name);
        std::fs::write(&path, POLICY.replace("NETWORK", network))?;
        Ok(path)
    };
    let plain = write_policy("plain.yaml", "")?;
    let proxied = write_policy("proxied.yaml", "network:\n  domains: [localhost]")?;
    let n = options.connects.to_string();
    let per_connect = |policy: &Path, ip: &str| -> anyhow::Result<f64> {
        let log = scratch.path("bench.log");
        let _ = std::fs::remove_file(&log);
        let o = scratch
            .capsule_run(&capsule, policy)
            .arg("--log")
            .arg(&log)
            .arg("--")
            .arg(&program)
            .args([ip, "3128", n.as_str()])
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .output()?;
        ensure!(o.status.success(), "{} failed: {}", program.display(), String::from_utf8_lossy(&o.stderr));
        Ok(String::from_utf8(o.stdout)?.trim().parse::<f64>()?)
    };
    let (mut plain_times, mut proxy_times, mut direct_times) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..options.runs {
        plain_times.push(per_connect(&plain, "127.0.0.1")?);
        proxy_times.push(per_connect(&proxied, "127.0.0.1")?);
        direct_times.push(per_connect(&proxied, "127.0.0.2")?);
    }
    let (plain, proxy, direct) = (crate::median(plain_times), crate::median(proxy_times), crate::median(direct_times));
    println!(
        "connect(2) on a UDP socket (median of {} x {}): without domains {plain:.2} µs; with domains, to the proxy's \
         address {proxy:.2} µs (+{:.2} µs, {:.1}x); to another address (refused and recorded) {direct:.2} µs (+{:.2} µs)",
        options.runs,
        options.connects,
        proxy - plain,
        proxy / plain,
        direct - plain
    );
    Ok(())
}
