//! `capsule profile` against `strace -f`: first the mechanisms alone (a C program,
//! compiled by the benchmark, times N getppid() calls directly, under
//! `SECCOMP_RET_USER_NOTIF` answered with `SECCOMP_USER_NOTIF_FLAG_CONTINUE`, and
//! under `SECCOMP_RET_TRACE` + ptrace with `PTRACE_GET_SYSCALL_INFO` at the entry
//! only and at the entry and the exit); then a syscall-heavy command, `find /usr/share
//! -name '*.txt'`, run directly, under `strace -f -o /dev/null` and under `capsule
//! profile --no-verify` (with and without `--all-results`), interleaved so that
//! machine noise hits each alike.

use anyhow::{Context, ensure};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Options {
    /// Runs of each whole-command measurement.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Calls per mechanism measurement.
    #[arg(long, default_value_t = 200_000)]
    calls: u64,
}

const MECHANISMS_C: &str = r#"
#define _GNU_SOURCE
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long n;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static double loop(void) {
    double start = now();
    for (long i = 0; i < n; i++) syscall(SYS_getppid);
    return now() - start;
}

static int install(unsigned int action, unsigned int flags) {
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, action),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

/* The child times its loop and writes the seconds to the pipe. */
static double child_time(int fd) {
    double t;
    if (read(fd, &t, sizeof t) != sizeof t) exit(2);
    return t;
}

static double user_notif(void) {
    int p[2], sv[2];
    if (pipe(p) || socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) exit(2);
    pid_t pid = fork();
    if (pid == 0) {
        int listener = install(SECCOMP_RET_USER_NOTIF, SECCOMP_FILTER_FLAG_NEW_LISTENER);
        char cmsgbuf[CMSG_SPACE(sizeof(int))];
        char byte = 0;
        struct iovec iov = {&byte, 1};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cmsgbuf, .msg_controllen = sizeof cmsgbuf};
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET; c->cmsg_type = SCM_RIGHTS; c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &listener, sizeof(int));
        if (sendmsg(sv[0], &msg, 0) < 0) exit(2);
        close(listener);
        double t = loop();
        if (write(p[1], &t, sizeof t) != sizeof t) exit(2);
        exit(0);
    }
    char cmsgbuf[CMSG_SPACE(sizeof(int))];
    char byte;
    struct iovec iov = {&byte, 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cmsgbuf, .msg_controllen = sizeof cmsgbuf};
    if (recvmsg(sv[1], &msg, 0) < 0) exit(2);
    int listener;
    memcpy(&listener, CMSG_DATA(CMSG_FIRSTHDR(&msg)), sizeof(int));
    for (long i = 0; i < n; i++) {
        struct seccomp_notif req;
        struct seccomp_notif_resp resp;
        memset(&req, 0, sizeof req);
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) exit(3);
        memset(&resp, 0, sizeof resp);
        resp.id = req.id;
        resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) < 0) exit(3);
    }
    double t = child_time(p[0]);
    waitpid(pid, NULL, 0);
    return t;
}

static double traced(int with_exit) {
    int p[2];
    if (pipe(p)) exit(2);
    pid_t pid = fork();
    if (pid == 0) {
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        raise(SIGSTOP);
        install(SECCOMP_RET_TRACE, 0);
        double t = loop();
        if (write(p[1], &t, sizeof t) != sizeof t) exit(2);
        exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_TRACESECCOMP | PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL);
    ptrace(PTRACE_CONT, pid, 0, 0);
    struct __ptrace_syscall_info info;
    for (;;) {
        if (waitpid(pid, &status, 0) < 0 || WIFEXITED(status) || WIFSIGNALED(status)) break;
        int sig = WSTOPSIG(status), event = status >> 16;
        if (sig == SIGTRAP && event == PTRACE_EVENT_SECCOMP) {
            ptrace(PTRACE_GET_SYSCALL_INFO, pid, sizeof info, &info);
            ptrace(with_exit ? PTRACE_SYSCALL : PTRACE_CONT, pid, 0, 0);
        } else if (sig == (SIGTRAP | 0x80)) {
            ptrace(PTRACE_GET_SYSCALL_INFO, pid, sizeof info, &info);
            ptrace(PTRACE_CONT, pid, 0, 0);
        } else {
            ptrace(PTRACE_CONT, pid, 0, sig == SIGSTOP ? 0 : sig);
        }
    }
    return child_time(p[0]);
}

int main(int argc, char **argv) {
    n = argc > 1 ? atol(argv[1]) : 100000;
    setvbuf(stdout, NULL, _IONBF, 0); /* the forked children must not flush a copy */
    printf("direct %.6f\n", loop());
    printf("user-notif %.6f\n", user_notif());
    printf("trace-entry %.6f\n", traced(0));
    printf("trace-entry-exit %.6f\n", traced(1));
    return 0;
}
"#;

fn wall(cmd: &mut Command) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let status = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status()?;
    let elapsed = start.elapsed();
    ensure!(status.success(), "{cmd:?} failed: {status}");
    Ok(elapsed)
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let program = crate::compile_c(dir.path(), "mechanisms", MECHANISMS_C)?;
    let output = Command::new(&program).arg(options.calls.to_string()).output()?;
    ensure!(output.status.success(), "the mechanism benchmark failed: {}", String::from_utf8_lossy(&output.stderr));
    println!("## Mechanisms: {} getppid() calls, µs per call\n", options.calls);
    println!("| mechanism | µs per call | × direct |\n| --- | ---: | ---: |");
    let mut direct = None;
    for line in String::from_utf8(output.stdout)?.lines() {
        let (name, seconds) = line.split_once(' ').context("a result line")?;
        let per_call = seconds.parse::<f64>()? * 1e6 / options.calls as f64;
        let base = *direct.get_or_insert(per_call);
        println!("| {name} | {per_call:.3} | {:.1} |", per_call / base);
    }

    let capsule = std::env::current_exe()?.parent().context("no parent")?.join("capsule");
    ensure!(capsule.exists(), "{} is missing: run `cargo build --release` first", capsule.display());
    let out = dir.path().join("out");
    let find = ["find", "/usr/share", "-name", "*.txt"];
    let strace_ok = Command::new("strace").arg("-V").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    ensure!(strace_ok, "strace is missing (.ci/run installs it)");
    // Warm the page cache once.
    wall(Command::new(find[0]).args(&find[1..]))?;
    let mut times: [Vec<Duration>; 4] = Default::default();
    for _ in 0..options.runs {
        times[0].push(wall(Command::new(find[0]).args(&find[1..]))?);
        times[1].push(wall(Command::new("strace").args(["-f", "-o", "/dev/null"]).args(find))?);
        times[2].push(wall(
            Command::new(&capsule).args(["profile", "-q", "--no-verify", "--out-dir"]).arg(&out).arg("--").args(find),
        )?);
        times[3].push(wall(
            Command::new(&capsule)
                .args(["profile", "-q", "--no-verify", "--all-results", "--out-dir"])
                .arg(dir.path().join("out-all"))
                .arg("--")
                .args(find),
        )?);
    }
    let calls = std::fs::read_to_string(out.join("01-find.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .map(|v| {
            v["syscalls"]
                .as_object()
                .into_iter()
                .flat_map(|a| a.values())
                .flat_map(|m| m.as_object().into_iter().flat_map(|m| m.values()))
                .map(|c| c["count"].as_u64().unwrap_or(0))
                .sum::<u64>()
        })
        .unwrap_or(0);
    println!("\n## `find /usr/share -name '*.txt'` ({calls} syscalls), {} runs, median wall time\n", options.runs);
    println!("| command | median | × direct | × strace -f |\n| --- | ---: | ---: | ---: |");
    let medians: Vec<f64> = times
        .iter_mut()
        .map(|t| {
            t.sort();
            t[t.len() / 2].as_secs_f64()
        })
        .collect();
    let names = [
        "direct",
        "`strace -f -o /dev/null`",
        "`capsule profile --no-verify`",
        "`capsule profile --no-verify --all-results`",
    ];
    for (name, m) in names.iter().zip(&medians) {
        println!("| {name} | {:.0} ms | {:.2} | {:.2} |", m * 1e3, m / medians[0], m / medians[1]);
    }
    Ok(())
}
