//! Denied syscalls in the audit log, through real `capsule run`s: a command that tries
//! ptrace and a netlink socket gets its errno and leaves `syscall.denied` records with
//! the syscall's name, number, arch and arguments; the policy's `record:` list decides
//! whether they are written; a storm is bounded.

use capsule_tests::audit_support::{AuditSandbox, Programs, assert_ok, of_kind, records};
use capsule_tests::text;

/// ptrace(PTRACE_ATTACH, parent, 0x1234, 0x5678) and socket(AF_NETLINK, SOCK_RAW,
/// NETLINK_ROUTE), with every argument explicit so the log's six are known; prints
/// each result and errno name.
const TRY_DENIED: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static void report(const char *what, long r) {
    printf("%s %ld %s\n", what, r, r < 0 ? strerrorname_np(errno) : "OK");
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 1;
    long parent = getppid();
    for (int i = 0; i < rounds; i++) {
        report("ptrace", syscall(SYS_ptrace, 16L, parent, 0x1234L, 0x5678L, 0L, 0L));
        report("socket", syscall(SYS_socket, 16L, 3L, 0L, 0L, 0L, 0L));
    }
    return 0;
}
"#;

const PTRACE_NR: u64 = 101;
const SOCKET_NR: u64 = 41;

fn denied_for(records: &[serde_json::Value], nr: u64) -> Vec<&serde_json::Value> {
    of_kind(records, "syscall.denied").into_iter().filter(|r| r["data"]["nr"].as_u64() == Some(nr)).collect()
}

#[test]
fn ptrace_and_a_netlink_socket_are_denied_with_their_errno_and_logged_with_arguments() {
    let sandbox = AuditSandbox::new();
    let command = Programs::get().command("try_denied", TRY_DENIED, &[]);
    let output = sandbox.run(&[], &command);
    assert_ok(&output);
    let stdout = text(&output.stdout);
    assert!(stdout.contains("ptrace -1 EPERM\n") && stdout.contains("socket -1 EPERM\n"), "{stdout}");

    let log = records(&sandbox.log());
    let start = &of_kind(&log, "invocation.start")[0];
    let invocation = start["seq"].as_str().unwrap();
    let end = &of_kind(&log, "invocation.end")[0];
    let child_pid = end["data"]["pid"].as_u64().expect("the end names the command's pid");

    let ptrace = denied_for(&log, PTRACE_NR);
    assert_eq!(ptrace.len(), 1, "{log:#?}");
    let data = &ptrace[0]["data"];
    assert_eq!(data["name"], "ptrace");
    assert_eq!(data["arch"], "linux-x86_64");
    assert_eq!(data["action"], "errno:EPERM");
    assert_eq!(data["invocation"], invocation);
    assert_eq!(data["pid"].as_u64(), Some(child_pid));
    let launcher_pid = start["data"]["pid"].as_u64().unwrap();
    let args: Vec<&str> = data["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    // The command's parent is the launcher: PTRACE_ATTACH aimed at it.
    assert_eq!(args, ["0x10", &format!("{launcher_pid:#x}"), "0x1234", "0x5678", "0x0", "0x0"]);

    let socket = denied_for(&log, SOCKET_NR);
    assert_eq!(socket.len(), 1, "{log:#?}");
    let data = &socket[0]["data"];
    assert_eq!(data["name"], "socket");
    assert_eq!(data["action"], "errno:EPERM");
    let args: Vec<&str> = data["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args, ["0x10", "0x3", "0x0", "0x0", "0x0", "0x0"]);

    // `capsule log show` filters by kind and shows the names.
    let shown =
        sandbox.capsule().args(["log", "show", "--kind", "syscall.denied"]).arg(sandbox.log()).output().unwrap();
    assert_ok(&shown);
    let shown = text(&shown.stdout);
    assert!(shown.contains("name=ptrace") && shown.contains("name=socket"), "{shown}");
    assert!(!shown.contains("invocation.start"), "{shown}");
}

#[test]
fn the_policys_own_errno_is_returned_and_logged() {
    let sandbox = AuditSandbox::new();
    let policy = capsule_tests::workspace_root().join("cli/src/default-policy.yaml");
    let policy = std::fs::read_to_string(policy).unwrap();
    let rule = "    - socket: domain != AF_UNIX\n";
    assert!(policy.contains(rule), "the default policy's socket rule changed");
    let policy = policy.replace(rule, "    - socket: { when: \"domain != AF_UNIX\", action: errno(EACCES) }\n");
    sandbox.use_policy(&policy);

    let output = sandbox.run(&[], &Programs::get().command("try_denied", TRY_DENIED, &[]));
    assert_ok(&output);
    let stdout = text(&output.stdout);
    assert!(stdout.contains("socket -1 EACCES\n") && stdout.contains("ptrace -1 EPERM\n"), "{stdout}");
    let log = records(&sandbox.log());
    assert_eq!(denied_for(&log, SOCKET_NR)[0]["data"]["action"], "errno:EACCES");
}

#[test]
fn without_denials_in_record_only_the_invocation_is_logged() {
    let sandbox = AuditSandbox::new();
    let policy = std::fs::read_to_string(capsule_tests::workspace_root().join("cli/src/default-policy.yaml")).unwrap();
    let record = "  record: [invocations, denials]\n";
    assert!(policy.contains(record), "the default policy's audit section changed");
    sandbox.use_policy(&policy.replace(record, "  record: [invocations]\n"));

    let output = sandbox.run(&[], &Programs::get().command("try_denied", TRY_DENIED, &[]));
    assert_ok(&output);
    assert!(text(&output.stdout).contains("ptrace -1 EPERM\n"), "the call is still denied");
    let log = records(&sandbox.log());
    assert!(of_kind(&log, "syscall.denied").is_empty(), "{log:#?}");
    assert_eq!(of_kind(&log, "invocation.start").len(), 1);
    assert_eq!(of_kind(&log, "invocation.end").len(), 1);
}

#[test]
fn a_storm_of_denials_is_bounded_and_counted() {
    let sandbox = AuditSandbox::new();
    let rounds = 5000;
    let output = sandbox.run(&[], &Programs::get().command("try_denied", TRY_DENIED, &[&rounds.to_string()]));
    assert_ok(&output);
    let stdout = text(&output.stdout);
    assert_eq!(stdout.matches("ptrace -1 EPERM\n").count(), rounds, "every call got its errno");

    let log = records(&sandbox.log());
    for nr in [PTRACE_NR, SOCKET_NR] {
        let events = denied_for(&log, nr);
        let (summaries, single): (Vec<&serde_json::Value>, Vec<&serde_json::Value>) =
            events.into_iter().partition(|r| r["data"]["summary"] == true);
        assert_eq!(single.len(), 16, "the first 16 are logged one by one");
        assert_eq!(summaries.len(), 1, "then one summary");
        assert_eq!(summaries[0]["data"]["count"], (rounds - 16).to_string());
    }
    assert!(log.len() < 60, "the storm wrote {} records", log.len());
    let (code, report) = sandbox.verify(&sandbox.log(), &[]);
    assert_eq!(code, 0, "{report}");
}

/// Calls `rounds` distinct numbers above every syscall table (each gets the policy's
/// newer-syscalls errno through the supervisor) and prints how many failed.
const TRY_NEWER: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long rounds = argc > 1 ? atol(argv[1]) : 1, failed = 0;
    for (long i = 0; i < rounds; i++) failed += syscall(100000L + i) < 0;
    printf("failed %ld\n", failed);
    return 0;
}
"#;

/// Distinct keys are not bounded by the syscall table: every number above it is its own
/// syscall to the kernel. A command cycling through them must not grow the log (or the
/// supervisor's memory) with the number of calls.
#[test]
fn a_storm_over_distinct_numbers_is_bounded_and_counted() {
    let sandbox = AuditSandbox::new();
    let rounds: u64 = 20_000;
    let output = sandbox.run(&[], &Programs::get().command("try_newer", TRY_NEWER, &[&rounds.to_string()]));
    assert_ok(&output);
    assert_eq!(text(&output.stdout), format!("failed {rounds}\n"), "every call got its errno");

    let log = records(&sandbox.log());
    let denied = of_kind(&log, "syscall.denied");
    let counted: u64 = denied
        .iter()
        .map(|r| match r["data"]["count"].as_str() {
            Some(count) if r["data"]["summary"] == true => count.parse::<u64>().unwrap(),
            _ => 1,
        })
        .sum();
    assert_eq!(counted, rounds, "every call is in the log, one by one or counted");
    assert!(denied.len() < 6000, "{} records for {rounds} calls", denied.len());
    let (code, report) = sandbox.verify(&sandbox.log(), &[]);
    assert_eq!(code, 0, "{report}");
}
