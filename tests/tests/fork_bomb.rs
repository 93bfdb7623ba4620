//! A fork bomb under the default policy's `processes` limit (RLIMIT_NPROC), as the
//! unprivileged user. Its own test binary: while it runs, every other process of that
//! user counts against the same limit, so nothing else of this suite may run as the
//! user at the same time (cargo runs test binaries one after another).
//!
//! Root is not held by RLIMIT_NPROC (the kernel exempts CAP_SYS_RESOURCE and
//! CAP_SYS_ADMIN), so there is no root half: docs/security-model.md says so.

use capsule_tests::{Attack, Identity, Sandbox, skip_unprivileged, unprivileged, workspace_root};

/// The default policy's `limits: processes:`, read from the policy itself.
fn policy_process_limit() -> u64 {
    let policy = std::fs::read_to_string(workspace_root().join("cli/src/default-policy.yaml")).unwrap();
    policy
        .lines()
        .find_map(|line| line.trim().strip_prefix("processes:"))
        .and_then(|rest| rest.split('#').next())
        .map(|n| n.trim().parse().expect("a number after processes:"))
        .expect("the default policy sets limits: processes:")
}

/// Processes whose real uid is `uid`, from /proc.
fn processes_of(uid: u32) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let real_uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().next())
            .and_then(|id| id.parse::<u32>().ok());
        if real_uid == Some(uid) {
            pids.push(pid);
        }
    }
    pids
}

/// Fails the test if the user has processes left, after killing exactly those.
fn assert_no_leftovers(identity: &Identity) {
    let Identity::User { uid, name, .. } = identity else {
        return;
    };
    let leftovers = processes_of(*uid);
    for &pid in &leftovers {
        // SAFETY: kill with a pid; the processes belong to the test user.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    assert!(leftovers.is_empty(), "processes of {name} left behind (killed now): {leftovers:?}");
}

#[test]
fn fork_bomb_is_held_by_the_process_limit() {
    let Some(user) = unprivileged() else {
        skip_unprivileged("fork_bomb_is_held_by_the_process_limit");
        return;
    };
    let limit = policy_process_limit();
    let attack = Attack::new("fork_bomb");
    assert_no_leftovers(&user);

    // Without the sandbox the same program goes past the limit (the cap keeps it tame).
    let cap = limit + 64;
    let bare = attack.unsandboxed(&user, &[cap.to_string()]);
    bare.assert_escaped();
    assert!(bare.stdout().contains(&format!("forked {cap}")), "{}", bare.stdout());
    assert_no_leftovers(&user);

    let sandbox = Sandbox::new(&user);
    let report = attack.sandboxed(&sandbox, &[(limit * 4).to_string()]);
    let line = report.stdout().lines().find(|l| l.starts_with("BLOCKED fork-after-")).map(str::to_owned);
    let Some(line) = line else { panic!("fork never failed under the sandbox:\n{}", report.stdout()) };
    let (count, errno) = line["BLOCKED fork-after-".len()..].split_once(' ').expect("BLOCKED fork-after-N ERRNO");
    let children: u64 = count.parse().expect("a count");
    assert_eq!(errno, "EAGAIN", "{line}");
    assert_eq!(report.code(), Some(1), "{line}");
    // The limit counts every process of the user: the launcher and the program too.
    assert!(children + 2 <= limit, "{children} children with a limit of {limit}");
    assert!(children > 0, "the program could not fork at all: {line}");

    assert_no_leftovers(&user);
    let fine = user.command("true").status().expect("run true");
    assert!(fine.success(), "the user can still start a process");
}
