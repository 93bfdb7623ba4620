//! Exit codes of capsule-launch, run as the real binary against the real kernel.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod common;

use capsule_artifacts::manifest::MANIFEST_FILE;
use common::*;
use std::os::unix::fs::PermissionsExt;

const SYS_MKDIR: u32 = 83;
const SYS_MKDIRAT: u32 = 258;

#[test]
fn the_commands_exit_status_passes_through() {
    let artifact = artifact(open_settings(), &allow_all(), false);
    assert_code(&launch(&artifact, &["sh", "-c", "exit 7"]), 7);
    assert_code(&launch(&artifact, &["true"]), 0);
}

#[test]
fn a_signal_gives_128_plus_its_number() {
    let artifact = artifact(open_settings(), &allow_all(), false);
    assert_code(&launch(&artifact, &["sh", "-c", "kill -TERM $$"]), 128 + libc::SIGTERM);
}

#[test]
fn a_seccomp_kill_gives_159() {
    let workspace = tempfile::tempdir().unwrap();
    let artifact = artifact(open_settings(), &program(RET_KILL_PROCESS, &[SYS_MKDIR, SYS_MKDIRAT]), false);
    let output = launch_in(workspace.path(), &artifact, &[], &["mkdir", "made"]);
    assert_code(&output, 159);
    assert!(!workspace.path().join("made").exists());
}

#[test]
fn a_filter_built_with_seccompiler_errno_denies() {
    use seccompiler::{SeccompAction, SeccompFilter, TargetArch};
    let rules = [(i64::from(SYS_MKDIR), vec![]), (i64::from(SYS_MKDIRAT), vec![])].into_iter().collect();
    let filter =
        SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), TargetArch::x86_64)
            .unwrap();
    let program: seccompiler::BpfProgram = filter.try_into().unwrap();
    let blob: Vec<u8> = program
        .iter()
        .flat_map(|i| [i.code.to_le_bytes().as_slice(), &[i.jt, i.jf], &i.k.to_le_bytes()].concat())
        .collect();
    let workspace = tempfile::tempdir().unwrap();
    let artifact = artifact(open_settings(), &blob, false);
    let output = launch_in(workspace.path(), &artifact, &[], &["mkdir", "made"]);
    assert_code(&output, 1);
    assert!(text(&output.stderr).contains("Operation not permitted"), "{}", text(&output.stderr));
    assert!(!workspace.path().join("made").exists());
}

#[test]
fn notified_calls_are_denied_by_the_stand_in_supervisor() {
    let workspace = tempfile::tempdir().unwrap();
    let artifact = artifact(open_settings(), &program(RET_USER_NOTIF, &[SYS_MKDIR, SYS_MKDIRAT]), true);
    let output = launch_in(workspace.path(), &artifact, &[], &["mkdir", "made"]);
    assert_code(&output, 1);
    assert!(text(&output.stderr).contains("Operation not permitted"), "{}", text(&output.stderr));
    assert!(!workspace.path().join("made").exists());
    // Calls the filter does not notify still run.
    assert_code(&launch_in(workspace.path(), &artifact, &[], &["sh", "-c", "echo ok > file"]), 0);
    assert!(workspace.path().join("file").exists());
}

#[test]
fn a_missing_command_gives_127() {
    let artifact = artifact(open_settings(), &allow_all(), false);
    let output = launch(&artifact, &["capsule-no-such-command"]);
    assert_code(&output, 127);
    assert!(text(&output.stderr).contains("not found"), "{}", text(&output.stderr));
    assert_code(&launch(&artifact, &["/nonexistent/capsule-cmd"]), 127);
}

#[test]
fn a_file_that_cannot_be_executed_gives_126() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-executable");
    std::fs::write(&file, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let artifact = artifact(open_settings(), &allow_all(), false);
    let output = launch(&artifact, &[file.to_str().unwrap()]);
    assert_code(&output, 126);
    assert!(text(&output.stderr).contains("Permission denied"), "{}", text(&output.stderr));
    // A directory is found but not executable either.
    assert_code(&launch(&artifact, &[dir.path().to_str().unwrap()]), 126);
}

/// Runs `touch MARKER` under the artifact and checks it exits 125 without running.
#[track_caller]
fn refuses_without_running(artifact: &Artifact, extra: &[&str], reason: &str) {
    let workspace = tempfile::tempdir().unwrap();
    let output = launch_in(workspace.path(), artifact, extra, &["touch", "marker"]);
    assert_code(&output, 125);
    assert!(text(&output.stderr).contains(reason), "expected {reason:?} in: {}", text(&output.stderr));
    assert!(!workspace.path().join("marker").exists(), "the command ran");
}

#[test]
fn the_control_run_creates_the_marker() {
    let artifact = artifact(open_settings(), &allow_all(), false);
    let workspace = tempfile::tempdir().unwrap();
    assert_code(&launch_in(workspace.path(), &artifact, &["--pin", &artifact.pin], &["touch", "marker"]), 0);
    assert!(workspace.path().join("marker").exists());
}

#[test]
fn a_tampered_blob_gives_125() {
    let artifact = artifact(open_settings(), &allow_all(), false);
    let mut blob = std::fs::read(artifact.bpf()).unwrap();
    blob[7] ^= 0x01;
    std::fs::write(artifact.bpf(), blob).unwrap();
    refuses_without_running(&artifact, &[], "the file was changed");
}

#[test]
fn a_tampered_manifest_gives_125() {
    let artifact = artifact(open_settings(), &allow_all(), false);
    let manifest = std::fs::read_to_string(artifact.manifest()).unwrap();
    std::fs::write(artifact.manifest(), manifest.replace("\"PATH\"", "\"PATH\", \"HOME\"")).unwrap();
    refuses_without_running(&artifact, &["--pin", &artifact.pin], "was changed or is not the one pinned");
}

#[test]
fn a_wrong_pin_gives_125() {
    let artifact = artifact(open_settings(), &allow_all(), false);
    let wrong = blake3::hash(b"another manifest").to_hex().to_string();
    refuses_without_running(&artifact, &["--pin", &wrong], "is not the one pinned");
    refuses_without_running(&artifact, &["--pin", "1234"], "is not a blake3 hash");
}

#[test]
fn an_unknown_manifest_version_gives_125() {
    let artifact = artifact(open_settings(), &allow_all(), false);
    let path = artifact.dir.path().join(MANIFEST_FILE);
    let (current, next) = (capsule_artifacts::manifest::VERSION, capsule_artifacts::manifest::VERSION + 1);
    let text = std::fs::read_to_string(&path).unwrap();
    let manifest = text.replacen(&format!("\"version\": {current}"), &format!("\"version\": {next}"), 1);
    assert_ne!(manifest, text, "the manifest names its version");
    std::fs::write(&path, manifest).unwrap();
    refuses_without_running(&artifact, &[], &format!("manifest version {next}"));
}

#[test]
fn a_landlock_abi_the_kernel_lacks_gives_125_in_enforce_mode() {
    let mut settings = open_settings();
    settings.landlock.min_abi = 99;
    let artifact = artifact(settings, &allow_all(), false);
    refuses_without_running(&artifact, &[], "needs Landlock ABI 99");
}

#[test]
fn best_effort_mode_runs_on_a_kernel_below_min_abi() {
    let mut settings = open_settings();
    settings.landlock.min_abi = 99;
    settings.landlock.mode = capsule_artifacts::launch::LandlockMode::BestEffort;
    let artifact = artifact(settings, &allow_all(), false);
    let workspace = tempfile::tempdir().unwrap();
    assert_code(&launch_in(workspace.path(), &artifact, &[], &["touch", "marker"]), 0);
    assert!(workspace.path().join("marker").exists());
}

#[test]
fn usage_errors_give_125() {
    let output = launcher().args(["--manifest", "x"]).output().unwrap();
    assert_code(&output, 125);
    assert!(text(&output.stderr).contains("usage:"));
}

#[test]
fn verbose_reports_what_was_enforced() {
    let mut settings = open_settings();
    settings.limits.open_files = Some(64);
    settings.filesystem.write = Some(vec!["${WORKSPACE}".to_owned(), "/nonexistent-capsule".to_owned()]);
    let artifact = artifact(settings, &allow_all(), false);
    let output = launch_in(&std::env::temp_dir(), &artifact, &["--verbose"], &["true"]);
    assert_code(&output, 0);
    let stderr = text(&output.stderr);
    for expected in [
        "landlock: kernel ABI",
        "landlock: write beneath 1 paths",
        "skipped write /nonexistent-capsule",
        "rlimit: open files = 64",
        "env: PATH",
        "seccomp: linux-x86_64.bpf installed: 6 instructions, blake3 ",
        "landlock: ruleset enforced",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
}

#[test]
fn termination_signals_are_forwarded_to_the_command() {
    use std::io::BufRead;
    let artifact = artifact(open_settings(), &allow_all(), false);
    let mut child = launcher()
        .arg("--manifest")
        .arg(artifact.manifest())
        .args(["--", "sh", "-c", "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    // SAFETY: kill with the pid of a child this test has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    // The command's own trap decided the exit code: the launcher passed the signal on.
    assert_eq!(status.code(), Some(42));
}
