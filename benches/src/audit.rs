//! Benchmarks of the audit log (docs/benchmarks.md, "Audit log (issue 5)"):
//!
//! 1. appends per second: one record per `fdatasync`, group commit (one `fdatasync`
//!    per batch), and buffered;
//! 2. `capsule verify` on a 1,000,000-record log: the process's CPU time (user + sys,
//!    from `wait4`) and wall time;
//! 3. a command looping on a denied syscall, side by side in one run: allowed (no
//!    filter verdict besides allow), denied by the filter's errno, and denied through
//!    the supervisor (seccomp user notification) with the denial logged.
//!
//! Run: `cargo build --release && ./target/release/capsule-bench audit` (prints
//! Markdown). Needs `cc`; the log files go under /var/tmp (a disk, not tmpfs) unless
//! `AUDIT_BENCH_DIR` says otherwise.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use capsule_artifacts::Target;
use capsule_artifacts::launch::{LaunchSettings, Record as AuditRecord};
use capsule_artifacts::log::{Durability, LogWriter, Record, WriterOptions};
use capsule_artifacts::manifest::{FORMAT, FileEntry, MANIFEST_FILE, Manifest, PolicyInfo, VERSION, load_pinned};
use capsule_artifacts::notify::{NotifyAnswer, NotifyTable};
use capsule_artifacts::target::AUDIT_ARCH_X86_64;
use capsule_launch::LaunchOptions;

fn record(n: u64) -> Record {
    // About the size of a syscall.denied record.
    Record::new("tool.call")
        .with("n", capsule_artifacts::log::Value::u64(n))
        .with("name", "fetch")
        .with("args", "0x10 0x3 0x0 0x0 0x0 0x0 padding to about 200 bytes")
}

fn per_second(n: u64, elapsed: Duration) -> String {
    format!("{:.0}", n as f64 / elapsed.as_secs_f64())
}

fn appends(dir: &Path) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    let path = dir.join("append.log");
    let mut writer = LogWriter::open(&path).expect("open the log");

    let n = 2_000;
    let start = Instant::now();
    for i in 0..n {
        writer.append(&record(i), Durability::Sync).expect("append");
    }
    rows.push(("one record per fdatasync".to_owned(), per_second(n, start.elapsed())));

    for batch in [16u64, 256] {
        let n = 256 * batch.min(64);
        let start = Instant::now();
        for b in 0..n / batch {
            let records: Vec<Record> = (0..batch).map(|i| record(b * batch + i)).collect();
            writer.append_all(&records, Durability::Sync).expect("append");
        }
        rows.push((format!("group commit, {batch} records per fdatasync"), per_second(n, start.elapsed())));
    }

    let n = 100_000;
    let start = Instant::now();
    for i in 0..n {
        writer.append(&record(i), Durability::Buffered).expect("append");
    }
    rows.push(("buffered (no fdatasync), one lock and write per record".to_owned(), per_second(n, start.elapsed())));
    rows
}

/// CPU (user + sys) and wall time of one child process.
// Reaped by wait4 (for its rusage), which std's Child cannot see.
#[allow(clippy::zombie_processes)]
fn timed(command: &mut Command) -> (i32, Duration, Duration) {
    let start = Instant::now();
    let child = command.stdout(std::process::Stdio::null()).spawn().expect("spawn");
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 writes the status and usage to locals.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; the pid is our unreaped child.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t, "wait4");
    let wall = start.elapsed();
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    (libc::WEXITSTATUS(status), tv(usage.ru_utime) + tv(usage.ru_stime), wall)
}

fn verify_million(dir: &Path, capsule: &Path) -> Vec<(String, String)> {
    let path = dir.join("million.log");
    let _ = std::fs::remove_file(&path);
    let mut writer = LogWriter::open_with(&path, WriterOptions::default()).expect("open");
    // Batches, then single records for the last stretch (the writer adds a checkpoint
    // every 1000 records on its own, so the size can end one above the target).
    while writer.size() < 1_000_000 {
        let batch = if writer.size() < 990_000 { 10_000 } else { 1 };
        let records: Vec<Record> = (0..batch).map(record).collect();
        writer.append_all(&records, Durability::Buffered).expect("append");
    }
    writer.sync().expect("sync");
    let size = writer.size();
    let bytes = std::fs::metadata(&path).expect("stat").len();
    let mut rows = vec![("log".to_owned(), format!("{size} records, {:.0} MiB", bytes as f64 / (1 << 20) as f64))];
    let mut best = None;
    for _ in 0..3 {
        let (code, cpu, wall) = timed(Command::new(capsule).arg("verify").arg(&path));
        assert_eq!(code, 0, "capsule verify failed on the benchmark log");
        best = Some(best.map_or((cpu, wall), |(c, w): (Duration, Duration)| (c.min(cpu), w.min(wall))));
    }
    let (cpu, wall) = best.expect("three runs");
    rows.push((
        "`capsule verify`: process CPU time (user + sys), best of 3".to_owned(),
        format!("{:.2} s", cpu.as_secs_f64()),
    ));
    rows.push(("`capsule verify`: wall time, best of 3".to_owned(), format!("{:.2} s", wall.as_secs_f64())));
    let _ = std::fs::remove_file(&path);
    rows
}

const LOOP: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    long n = atol(argv[1]), failed = 0;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++)
        if (syscall(SYS_getppid, 0L, 0L, 0L, 0L, 0L, 0L) < 0) failed++;
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
    FILE *out = fopen(argv[2], "w");
    if (!out) return 2;
    fprintf(out, "%.1f %ld\n", ns / n, failed);
    return fclose(out) != 0;
}
"#;

const GETPPID: u32 = 110;

/// x86_64 check, then `action` for getppid, allow for everything else.
fn program(action: u32) -> Vec<u8> {
    let insn = |code: u16, jt: u8, jf: u8, k: u32| {
        let mut raw = [0u8; 8];
        raw[..2].copy_from_slice(&code.to_le_bytes());
        raw[2] = jt;
        raw[3] = jf;
        raw[4..].copy_from_slice(&k.to_le_bytes());
        raw
    };
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    [
        insn(LD_W_ABS, 0, 0, 4),
        insn(JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        insn(RET_K, 0, 0, 0x8000_0000),
        insn(LD_W_ABS, 0, 0, 0),
        insn(JEQ_K, 0, 1, GETPPID),
        insn(RET_K, 0, 0, action),
        insn(RET_K, 0, 0, 0x7fff_0000),
    ]
    .concat()
}

fn artifact(dir: &Path, action: u32, notify: Option<NotifyTable>, writable: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    let blob = program(action);
    let name = Target::LinuxX86_64.artifact_file();
    std::fs::write(dir.join(name), &blob).expect("write blob");
    let mut launch = LaunchSettings::default();
    launch.filesystem.write = Some(vec![writable.display().to_string()]);
    launch.env.pass = vec!["PATH".to_owned()];
    launch.audit.record = vec![AuditRecord::Invocations, AuditRecord::Denials];
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        version: VERSION,
        policy: PolicyInfo {
            name: "audit-bench".to_owned(),
            source_blake3: blake3::hash(b"audit-bench").to_hex().to_string(),
        },
        compiler: "capsule-bench audit".to_owned(),
        files: vec![FileEntry {
            name: name.to_owned(),
            target: Some(Target::LinuxX86_64),
            blake3: blake3::hash(&blob).to_hex().to_string(),
            size: blob.len() as u64,
            notify,
        }],
        launch,
    };
    std::fs::write(dir.join(MANIFEST_FILE), manifest.to_bytes()).expect("write manifest");
    dir.join(MANIFEST_FILE)
}

fn denial_cost(dir: &Path) -> Vec<(String, String)> {
    let bin = crate::compile_c(dir, "loop", LOOP).expect("compile the C loop");
    let results = dir.join("results");
    std::fs::create_dir_all(&results).expect("mkdir");
    let log = dir.join("denials.log");
    let calls: u64 = 200_000;

    let notify_table = NotifyTable::new(1000, None, None, &BTreeMap::from([(GETPPID, Some(NotifyAnswer::Errno(1)))]));
    let variants: [(&str, u32, Option<NotifyTable>, Option<&Path>); 4] = [
        ("allowed (filter returns ALLOW)", 0x7fff_0000, None, None),
        ("denied by the filter (ERRNO, not logged)", 0x0005_0001, None, None),
        ("denied by the filter, launch logged (ERRNO, invocation records only)", 0x0005_0001, None, Some(&log)),
        ("denied through the supervisor and logged (USER_NOTIF)", 0x7fc0_0000, Some(notify_table), Some(&log)),
    ];
    // Rounds interleave the variants so that load from elsewhere hits them alike; the
    // best round of each is reported.
    const ROUNDS: usize = 3;
    let mut best: Vec<Option<(f64, Duration)>> = vec![None; variants.len()];
    let target = Target::host().expect("a supported host");
    let manifests: Vec<PathBuf> = variants
        .iter()
        .enumerate()
        .map(|(i, (_, action, notify, _))| {
            artifact(&dir.join(format!("artifact-{i}")), *action, notify.clone(), &results)
        })
        .collect();
    for _ in 0..ROUNDS {
        for (i, (label, action, _, log)) in variants.iter().enumerate() {
            let verified = load_pinned(&manifests[i], None, target).expect("the artifact verifies");
            let out = results.join(format!("out-{i}"));
            let options = LaunchOptions {
                command: vec![OsString::from(&bin), calls.to_string().into(), out.clone().into()],
                workspace: Some(dir.to_path_buf()),
                log: log.map(Path::to_path_buf),
                ..LaunchOptions::default()
            };
            let start = Instant::now();
            let outcome = capsule_launch::launch(&verified, &options);
            let wall = start.elapsed();
            assert_eq!(outcome.exit_code, 0, "{label}: {:?}", outcome.failure);
            let text = std::fs::read_to_string(&out).expect("the loop's result");
            let mut fields = text.split_whitespace();
            let ns: f64 = fields.next().and_then(|f| f.parse().ok()).expect("ns per call");
            let failed: u64 = fields.next().and_then(|f| f.parse().ok()).expect("failed calls");
            let expect_failures = if *action == 0x7fff_0000 { 0 } else { calls };
            assert_eq!(failed, expect_failures, "{label}: wrong number of failed calls");
            if best[i].is_none_or(|(b, _)| ns < b) {
                best[i] = Some((ns, wall));
            }
        }
    }
    let mut rows: Vec<(String, String)> = variants
        .iter()
        .zip(&best)
        .map(|((label, ..), best)| {
            let (ns, wall) = best.expect("measured");
            ((*label).to_owned(), format!("{ns:.0} ns/call (launch to exit {:.2} s)", wall.as_secs_f64()))
        })
        .collect();
    rows.push(("calls per run; rounds (best shown)".to_owned(), format!("{calls}; {ROUNDS}")));
    let log_text = std::fs::read_to_string(&log).expect("the log");
    let denied = log_text.lines().filter(|l| l.contains("\"kind\":\"syscall.denied\"")).count();
    let summaries = log_text.lines().filter(|l| l.contains("\"summary\":true")).count();
    rows.push((
        "syscall.denied records written per notified run (individual + summary)".to_owned(),
        format!("{} + {}", (denied - summaries) / ROUNDS, summaries / ROUNDS),
    ));
    rows
}

fn table(title: &str, rows: &[(String, String)]) {
    println!("### {title}\n\n| measure | value |\n|---|---:|");
    for (name, value) in rows {
        println!("| {name} | {value} |");
    }
    println!();
}

pub fn run() -> anyhow::Result<()> {
    let base = std::env::var_os("AUDIT_BENCH_DIR").map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from);
    let dir = tempfile::Builder::new().prefix("capsule-audit-bench-").tempdir_in(&base).expect("a scratch directory");
    let capsule = std::env::var_os("CAPSULE_BIN").map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("own path");
        // target/<profile>/capsule-bench -> target/<profile>/capsule
        exe.parent().expect("target/<profile>").join("capsule")
    });
    assert!(
        capsule.is_file(),
        "{} not found: build it first (cargo build --release -p capsule-cli) or set CAPSULE_BIN",
        capsule.display()
    );

    table("Appends per second", &appends(dir.path()));
    table("`capsule verify` on a 1,000,000-record log", &verify_million(dir.path(), &capsule));
    table("A command looping on a denied syscall (getppid)", &denial_cost(dir.path()));
    Ok(())
}
