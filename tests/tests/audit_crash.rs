//! Crashes of the launcher: SIGKILL in the middle of appends never makes the log look
//! tampered and never loses what was already in it; and when the supervisor dies, the
//! command's notified calls fail instead of succeeding.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use capsule_tests::audit_support::{AuditSandbox, Programs};
use capsule_tests::text;

/// Ten different denied syscalls (harmless even if one ran), `argv[1]` rounds: a
/// stream of notifications, each recorded (the first 16 of each) before it is answered.
const STORM: &str = r#"
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 1;
    for (int i = 0; i < rounds; i++) {
        syscall(SYS_ptrace, 16L, 0L, 0L, 0L, 0L, 0L);
        syscall(SYS_socket, 16L, 3L, 0L, 0L, 0L, 0L);
        syscall(SYS_bpf, -1L, 0L, 0L, 0L, 0L, 0L);
        syscall(SYS_userfaultfd, 0xffffL, 0L, 0L, 0L, 0L, 0L);
        syscall(SYS_add_key, 0L, 0L, 0L, 0L, 0L, 0L);
        syscall(SYS_mount, 0L, 0L, 0L, 0L, 0L, 0L);
        syscall(SYS_perf_event_open, 0L, 0L, -1L, -1L, 0L, 0L);
        syscall(SYS_unshare, 0L, 0L, 0L, 0L, 0L, 0L);
        syscall(SYS_setns, -1L, 0L, 0L, 0L, 0L, 0L);
        syscall(SYS_open_by_handle_at, -1L, 0L, 0L, 0L, 0L, 0L);
    }
    return 0;
}
"#;

/// A tiny deterministic generator: the kill times only need to vary.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn launchers_killed_mid_append_leave_intact_or_incomplete_logs_that_only_grow() {
    let sandbox = AuditSandbox::new();
    sandbox.run_true();
    let storm = Programs::get().command("storm", STORM, &["200"]);
    let mut random = XorShift(0x2545_f491_4f6c_dd1d);
    let mut snapshots = Vec::new();
    let mut verdicts = std::collections::BTreeMap::new();
    for round in 0..20 {
        // Two launchers at once, both killed: one mid-storm, one at another moment.
        let mut children: Vec<_> = (0..2)
            .map(|_| {
                let mut cmd = sandbox.capsule();
                cmd.arg("run").arg("--workspace").arg(sandbox.workspace()).arg("--").args(&storm);
                cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
            })
            .collect();
        for child in &mut children {
            std::thread::sleep(Duration::from_millis(5 + random.below(40)));
            child.kill().unwrap();
            child.wait().unwrap();
        }
        let (code, report) = sandbox.verify(&sandbox.log(), &[]);
        assert!(code == 0 || code == 3, "round {round}: a crash must never look like tampering: {report:#}");
        *verdicts.entry(report["verdict"].as_str().unwrap().to_owned()).or_insert(0) += 1;
        snapshots.push(std::fs::read(sandbox.log()).unwrap());
    }
    // The next run recovers: the log is whole again, and everything any earlier
    // reader saw is still there, byte for byte.
    sandbox.run_true();
    let (code, report) = sandbox.verify(&sandbox.log(), &[]);
    assert_eq!(code, 0, "{report:#}");
    let last = std::fs::read(sandbox.log()).unwrap();
    for (round, snapshot) in snapshots.iter().enumerate() {
        assert!(last.starts_with(snapshot), "round {round}: bytes written before the kill changed");
    }
    eprintln!(
        "verdicts after the kills: {verdicts:?}; torn lines sealed: {}",
        report["recovered"].as_array().unwrap().len()
    );
}

/// Loops on a denied (notified) socket call and prints each outcome, line by line,
/// until it has seen 50 results that are not the supervisor's EPERM.
const LOOP_ON_DENIED: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    int others = 0;
    for (int i = 0; i < 100000 && others < 50; i++) {
        long r = syscall(SYS_socket, 16L, 3L, 0L, 0L, 0L, 0L);
        const char *what = r >= 0 ? "OK" : strerrorname_np(errno);
        if (printf("%s\n", what) < 0) return 2;
        if (r >= 0 || errno != EPERM) others++;
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    return 0;
}
"#;

#[test]
fn when_the_supervisor_dies_notified_calls_fail_with_enosys() {
    let sandbox = AuditSandbox::new();
    let command = Programs::get().command("loop_on_denied", LOOP_ON_DENIED, &[]);
    let mut cmd = sandbox.capsule();
    cmd.arg("run").arg("--workspace").arg(sandbox.workspace()).arg("--").args(&command);
    let mut launcher = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(launcher.stdout.take().unwrap()).lines();
    let mut before = 0;
    while before < 20 {
        let line = lines.next().expect("the command prints").unwrap();
        assert_eq!(line, "EPERM", "while the supervisor lives, the policy's errno");
        before += 1;
    }
    launcher.kill().unwrap();
    let status = launcher.wait().unwrap();
    assert!(status.code().is_none(), "the launcher was killed");
    // The command (now an orphan) keeps calling; the pipe closes when it exits.
    let after: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(!after.iter().any(|l| l == "OK"), "a notified call succeeded without its supervisor: {after:?}");
    assert!(after.iter().all(|l| l == "EPERM" || l == "ENOSYS"), "{after:?}");
    assert_eq!(after.iter().filter(|l| *l == "ENOSYS").count(), 50, "{after:?}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut launcher.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!text(stderr.as_bytes()).contains("panicked"), "{stderr}");
}
