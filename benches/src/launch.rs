//! The cost of launching under Capsule: `/bin/true` run directly, under
//! `capsule-launch` (without and with an audit log), under `capsule run` with a warm
//! cache, and under bubblewrap, interleaved in one run (in a shuffled order each round)
//! so machine noise hits each alike; plus the time the kernel takes to install the default policy's filter.

use anyhow::{Context, ensure};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Options {
    /// Runs per command.
    #[arg(long, default_value_t = 200)]
    runs: usize,
    /// The audit log both `capsule-launch --log` and `capsule run --log` append to
    /// (default: a file in the benchmark's directory beside the binaries). A log on a
    /// tmpfs (`/dev/shm/...`) takes the disk's sync latency out of the comparison.
    #[arg(long)]
    log: Option<PathBuf>,
}

/// The user + system CPU time of every child reaped so far.
fn children_cpu() -> Duration {
    // SAFETY: getrusage writes one rusage into the zeroed local.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Wall time of one run, and the CPU time it and its children used (which the other
/// loads of a busy machine do not inflate as they inflate the wall time).
fn wall(cmd: &mut Command) -> anyhow::Result<(Duration, Duration)> {
    let cpu = children_cpu();
    let start = Instant::now();
    let status = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status()?;
    let elapsed = start.elapsed();
    ensure!(status.success(), "{cmd:?} failed: {status}");
    Ok((elapsed, children_cpu() - cpu))
}

fn summary(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    let mean = times.iter().sum::<Duration>().as_secs_f64() / times.len() as f64;
    (times[times.len() / 2].as_secs_f64() * 1e3, mean * 1e3)
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    let capsule = crate::bin("capsule")?;
    let launcher = crate::bin("capsule-launch")?;
    let scratch = crate::Scratch::new()?;
    let policy = scratch.path("default.yaml");
    let init = Command::new(&capsule).args(["init", "--out"]).arg(&policy).output()?;
    ensure!(init.status.success(), "capsule init failed");
    let artifact = scratch.path("artifact");
    let build = Command::new(crate::bin("capsulec")?).arg("build").arg(&policy).arg("-o").arg(&artifact).output()?;
    ensure!(build.status.success(), "capsulec build failed: {}", String::from_utf8_lossy(&build.stderr));
    let pin = String::from_utf8(build.stdout)?.trim().to_owned();
    let manifest = artifact.join("manifest.json");
    let log = options.log.clone().unwrap_or_else(|| scratch.path("state").join("bench.log"));
    std::fs::create_dir_all(log.parent().context("the log has no directory")?)?;

    let launch = |binary: &Path, with_log: bool| {
        let mut c = scratch.command(binary);
        c.arg("--manifest").arg(&manifest).arg("--pin").arg(&pin);
        if with_log {
            c.arg("--log").arg(&log);
        }
        c.args(["--", "/bin/true"]);
        c
    };
    let run = || {
        let mut c = scratch.capsule_run(&capsule, &policy);
        c.arg("--log").arg(&log).args(["--", "/bin/true"]);
        c
    };
    let spawn_floor = build_spawn_floor(scratch.dir())?;
    let static_launcher = static_launcher()?;
    let bwrap = Path::new("/usr/bin/bwrap").exists();

    type Make<'a> = Box<dyn Fn() -> Command + 'a>;
    /// A side of the comparison: its label, how to start one run, the phase it runs in,
    /// and each run's wall and CPU time.
    type Row<'a> = (&'static str, Make<'a>, Phase, Vec<(Duration, Duration)>);
    let mut rows: Vec<Row> = vec![
        ("/bin/true (direct)", Box::new(|| Command::new("/bin/true")), Phase::Compare, vec![]),
        (
            "floor: C posix_spawn + wait",
            Box::new(|| {
                let mut c = Command::new(&spawn_floor);
                c.arg("/bin/true");
                c
            }),
            Phase::Compare,
            vec![],
        ),
        ("capsule-launch, no log", Box::new(|| launch(&launcher, false)), Phase::Variants, vec![]),
        ("capsule-launch --log", Box::new(|| launch(&launcher, true)), Phase::Compare, vec![]),
        ("capsule run --log (warm cache)", Box::new(run), Phase::Compare, vec![]),
    ];
    if let Some(path) = &static_launcher {
        rows.insert(3, ("capsule-launch (static), no log", Box::new(|| launch(path, false)), Phase::Variants, vec![]));
    }
    if bwrap {
        rows.push((
            "bwrap --ro-bind / / --dev /dev",
            Box::new(|| {
                let mut c = Command::new("/usr/bin/bwrap");
                c.args(["--ro-bind", "/", "/", "--dev", "/dev", "/bin/true"]);
                c
            }),
            Phase::Compare,
            vec![],
        ));
    }
    wall(&mut run())?; // warm the cache
    // Each round runs every row of a phase once, in an order shuffled afresh. Rows run
    // in two phases so that in the comparison every binary runs equally often: a binary
    // run twice as often as another (`capsule-launch` with and without a log) stays
    // hotter in the caches, which took 3 to 4 points off its side of the run / launch
    // ratio (docs/benchmarks.md). The launcher's variants run in a phase of their own.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for phase in [Phase::Compare, Phase::Variants] {
        let mut order: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].2 == phase).collect();
        for _ in 0..options.runs {
            for i in (1..order.len()).rev() {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                order.swap(i, (seed >> 33) as usize % (i + 1));
            }
            for &row in &order {
                let (_, make, _, times) = &mut rows[row];
                times.push(wall(&mut make())?);
            }
        }
    }
    let walls = |times: &[(Duration, Duration)]| times.iter().map(|t| t.0).collect::<Vec<_>>();
    let cpu_mean = |times: &[(Duration, Duration)]| {
        times.iter().map(|t| t.1).sum::<Duration>().as_secs_f64() * 1e3 / times.len() as f64
    };
    let medians: Vec<f64> = rows.iter().map(|(_, _, _, times)| summary(walls(times)).0).collect();
    let (direct, floor) = (medians[0], medians[1]);
    println!(
        "launch cost, {} runs each, interleaved; wall time per run, and CPU time (user + system, the",
        options.runs
    );
    println!("command's included) per run; log: {}", log.display());
    println!("{:<34} {:>9} {:>9} {:>9} {:>8} {:>9}", "command", "median", "mean", "x direct", "x floor", "cpu mean");
    let mut by_name = std::collections::BTreeMap::new();
    for (name, _, phase, times) in &rows {
        let (median, mean) = summary(walls(times));
        let cpu = cpu_mean(times);
        by_name.insert(*name, (median, cpu));
        let label = if *phase == Phase::Variants { format!("{name} *") } else { name.to_string() };
        println!(
            "{label:<34} {median:>7.2}ms {mean:>7.2}ms {:>8.2}x {:>7.2}x {cpu:>7.2}ms",
            median / direct,
            median / floor
        );
    }
    println!("* in a second phase, interleaved with the launcher's other variants only");
    let run = by_name["capsule run --log (warm cache)"];
    let launch = by_name["capsule-launch --log"];
    println!("capsule run / capsule-launch, same log: wall {:.3}, cpu {:.3}", run.0 / launch.0, run.1 / launch.1);
    if let Some(bwrap) = by_name.get("bwrap --ro-bind / / --dev /dev") {
        println!("capsule run / bwrap: wall {:.3}, cpu {:.3}", run.0 / bwrap.0, run.1 / bwrap.1);
    }
    if static_launcher.is_none() {
        println!("(no static launcher: `make launcher-static` builds one)");
    }
    if !bwrap {
        println!("(bwrap not installed: apt-get install bubblewrap)");
    }
    let blob = std::fs::read(artifact.join("linux-x86_64.bpf"))?;
    let install = filter_install_time(&blob, options.runs)?;
    println!("filter install (default policy, {} instructions): median {:.1} us", blob.len() / 8, install * 1e6);
    Ok(())
}

/// Rows of a phase are interleaved with each other only.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// What the ratios compare, each binary run once a round.
    Compare,
    /// The launcher without a log (and the static one), after the comparison.
    Variants,
}

/// The least any launcher that stays the parent can cost: a C program that
/// posix_spawns its argument and waits for it.
fn build_spawn_floor(dir: &Path) -> anyhow::Result<PathBuf> {
    const SOURCE: &str = "#include <spawn.h>\n#include <sys/wait.h>\nextern char **environ;\n\
        int main(int argc, char **argv) { pid_t pid; int status;\n\
        if (argc < 2 || posix_spawn(&pid, argv[1], 0, 0, argv + 1, environ)) return 127;\n\
        waitpid(pid, &status, 0); return WEXITSTATUS(status); }\n";
    crate::compile_c(dir, "spawn-floor", SOURCE)
}

/// The launcher built by `make launcher-static`, if it was.
fn static_launcher() -> anyhow::Result<Option<PathBuf>> {
    let release = std::env::current_exe()?.parent().context("no parent")?.to_path_buf();
    let target = release.parent().context("no target dir")?;
    let path = target.join("x86_64-unknown-linux-gnu").join("release").join("capsule-launch");
    Ok(path.exists().then_some(path))
}

/// Median time of the seccomp(2) call that installs `blob`, each in a fresh child.
fn filter_install_time(blob: &[u8], runs: usize) -> anyhow::Result<f64> {
    let insns: Vec<libc::sock_filter> = blob
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_le_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let prog = libc::sock_fprog { len: insns.len() as u16, filter: insns.as_ptr() as *mut _ };
    let mut times = Vec::new();
    for _ in 0..runs {
        let mut fds = [0; 2];
        // SAFETY: pipe writes two descriptors into the array.
        ensure!(unsafe { libc::pipe(fds.as_mut_ptr()) } == 0, "pipe failed");
        // SAFETY: the child only makes system calls and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: system calls on live data; `prog` outlives the call.
            unsafe {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                let mut t0 = std::mem::zeroed::<libc::timespec>();
                let mut t1 = std::mem::zeroed::<libc::timespec>();
                libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t0);
                let rc = libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    0,
                    &prog as *const libc::sock_fprog,
                );
                libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t1);
                let nanos: i64 =
                    if rc == 0 { (t1.tv_sec - t0.tv_sec) * 1_000_000_000 + (t1.tv_nsec - t0.tv_nsec) } else { -1 };
                libc::write(fds[1], (&nanos as *const i64).cast(), 8);
                libc::_exit(0);
            }
        }
        let mut nanos: i64 = 0;
        // SAFETY: reads 8 bytes into a live i64; reaps the child.
        unsafe {
            libc::close(fds[1]);
            libc::read(fds[0], (&mut nanos as *mut i64).cast(), 8);
            libc::close(fds[0]);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        ensure!(nanos >= 0, "the kernel refused the filter");
        times.push(nanos as f64 / 1e9);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}
