//! `capsulec check` on a 1,000-rule policy: process time (user + system, from the
//! kernel's rusage of the child) against baselines measured in the same run: the
//! cost of starting any process (`/bin/true`) and of checking a one-line policy.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Options {
    /// Runs per command (the minimum and median are reported).
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// The capsulec binary (default: target/release/capsulec beside this binary).
    #[arg(long)]
    capsulec: Option<PathBuf>,
}

/// A policy of `rules` conditional rules over syscalls with integer arguments,
/// deterministic so every run measures the same input.
pub fn thousand_rule_policy(rules: usize) -> String {
    const SYSCALLS: [(&str, &str, &str); 8] = [
        ("socket", "domain", "type"),
        ("ioctl", "fd", "request"),
        ("fcntl", "fd", "cmd"),
        ("prctl", "option", "arg2"),
        ("kill", "pid", "sig"),
        ("setsockopt", "level", "optname"),
        ("getpriority", "which", "who"),
        ("lseek", "fd", "whence"),
    ];
    let constants =
        ["AF_UNIX", "AF_INET", "AF_INET6", "SOCK_STREAM", "SOCK_DGRAM", "O_RDONLY", "SIGTERM", "PR_SET_NAME"];
    let mut out = String::from("version: 1\nname: thousand-rules\nsyscalls:\n  allow:\n");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..rules {
        // xorshift: deterministic variety without a dependency.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let (name, a, b) = SYSCALLS[i % SYSCALLS.len()];
        let c = constants[(x % constants.len() as u64) as usize];
        out.push_str(&format!(
            "    - {name}: {a} == {} || ({b} in [{c}, {}] && {a} != {})\n",
            x % 4000,
            (x >> 8) % 100,
            (x >> 16) % 50
        ));
    }
    out
}

fn process_time(cmd: &mut Command) -> anyhow::Result<Duration> {
    let start = rusage_children();
    let status = cmd.status().context("cannot run the command")?;
    anyhow::ensure!(status.code().is_some(), "the command died: {status}");
    Ok(rusage_children() - start)
}

fn rusage_children() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one struct rusage to the valid pointer.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn stats(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    (times[0], times[times.len() / 2])
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    let capsulec = match &options.capsulec {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.parent().context("no parent")?.join("capsulec"),
    };
    anyhow::ensure!(capsulec.exists(), "{} is missing: run `cargo build --release` first", capsulec.display());
    let dir = tempfile::tempdir()?;
    let big = dir.path().join("thousand.yaml");
    let small = dir.path().join("minimal.yaml");
    std::fs::write(&big, thousand_rule_policy(1000))?;
    std::fs::write(&small, "version: 1\n")?;
    let check = |policy: &Path| {
        let mut c = Command::new(&capsulec);
        c.arg("check").arg(policy).stderr(std::process::Stdio::null());
        c
    };
    // Interleaved, so machine noise hits every command alike.
    let mut rows: Vec<(String, Vec<Duration>)> = vec![
        ("/bin/true".into(), vec![]),
        ("capsulec check (1-line policy)".into(), vec![]),
        ("capsulec check (1,000 rules)".into(), vec![]),
    ];
    for _ in 0..options.runs {
        rows[0].1.push(process_time(&mut Command::new("/bin/true"))?);
        rows[1].1.push(process_time(&mut check(&small))?);
        rows[2].1.push(process_time(&mut check(&big))?);
    }
    // In-process: the front-end alone, without process start-up; the same policy's
    // JSON form beside it, interleaved.
    let source = std::fs::read(&big)?;
    let json = capsule_compiler::front::convert::to_json_bytes(&source, capsule_compiler::front::Format::Yaml)
        .map_err(|_| anyhow::anyhow!("the generated policy has errors"))?;
    let mut inproc = Vec::new();
    let mut inproc_json = Vec::new();
    for _ in 0..options.runs {
        let t = std::time::Instant::now();
        let checked = capsule_compiler::front::check_bytes(&source);
        inproc.push(t.elapsed());
        anyhow::ensure!(!checked.has_errors(), "the generated policy has errors");
        let t = std::time::Instant::now();
        let checked = capsule_compiler::front::check_source(&json, capsule_compiler::front::Format::Json);
        inproc_json.push(t.elapsed());
        anyhow::ensure!(!checked.has_errors(), "the JSON form has errors");
    }
    println!("capsulec check, {} runs each, process time (user+sys) of the child", options.runs);
    println!("{:<34} {:>10} {:>10}", "command", "min", "median");
    for (name, times) in rows {
        let (min, median) = stats(times);
        println!("{name:<34} {:>8.2}ms {:>8.2}ms", min.as_secs_f64() * 1e3, median.as_secs_f64() * 1e3);
    }
    let (min, median) = stats(inproc);
    println!(
        "{:<34} {:>8.2}ms {:>8.2}ms",
        "front::check in process (wall)",
        min.as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3
    );
    let (json_min, json_median) = stats(inproc_json);
    println!(
        "{:<34} {:>8.2}ms {:>8.2}ms  ({:.2}x the YAML's median)",
        "front::check_source, JSON form",
        json_min.as_secs_f64() * 1e3,
        json_median.as_secs_f64() * 1e3,
        json_median.as_secs_f64() / median.as_secs_f64()
    );
    println!("policy: {} bytes, 1,000 rules; its JSON form: {} bytes", source.len(), json.len());
    Ok(())
}
