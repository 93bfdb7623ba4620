//! Nothing the command starts outlives the launcher, and an inherited "ignore SIGCHLD"
//! does not make it lose the command's status. Real processes on the real kernel; run
//! as this user and, as root with `CAPSULE_TEST_USER` set, as that user too.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod common;

use common::*;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a hang may take before a test gives up: far above what any step needs.
const DEADLINE: Duration = Duration::from_secs(20);

/// A background job in its own session, the classic escape from "wait for the child":
/// it records its pid, writes late.txt a second later, and stays around.
const ESCAPE: &str = "echo $$ > command.pid; \
    (setsid sh -c 'echo $$ > grandchild.pid; sleep 1; echo late > late.txt; sleep 30' &); \
    while [ ! -s grandchild.pid ]; do sleep 0.01; done";

/// Who runs the launcher: this process's user, or an unprivileged one through setpriv.
struct Runner {
    name: String,
    setpriv: Option<(PathBuf, u32, u32)>,
}

impl Runner {
    fn launcher(&self) -> Command {
        let binary = env!("CARGO_BIN_EXE_capsule-launch");
        match &self.setpriv {
            None => Command::new(binary),
            Some((setpriv, uid, gid)) => {
                let mut cmd = Command::new(setpriv);
                cmd.arg(format!("--reuid={uid}")).arg(format!("--regid={gid}")).args(["--init-groups", "--", binary]);
                cmd
            }
        }
    }

    fn launch_in(&self, cwd: &Path, artifact: &Artifact, command: &[&str]) -> Output {
        let mut cmd = self.launcher();
        cmd.current_dir(cwd).arg("--manifest").arg(artifact.manifest()).arg("--").args(command);
        output_within_deadline(cmd)
    }
}

/// Like `Command::output`, but into files, so a process left holding the launcher's
/// stdout cannot make it wait, and failing instead of hanging past the deadline.
fn output_within_deadline(mut cmd: Command) -> Output {
    let stdout = tempfile::tempfile().unwrap();
    let stderr = tempfile::tempfile().unwrap();
    cmd.stdin(Stdio::null()).stdout(stdout.try_clone().unwrap()).stderr(stderr.try_clone().unwrap());
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > DEADLINE {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the launcher did not return within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |mut file: std::fs::File| {
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut bytes).unwrap();
        bytes
    };
    Output { status, stdout: read(stdout), stderr: read(stderr) }
}

/// Kills what a failed test left behind (each session's first process group), so a
/// failure does not leave a job running; a test that passes has nothing left to kill.
struct Leftovers<'a>(&'a Path);

impl Drop for Leftovers<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for file in ["command.pid", "grandchild.pid"] {
            let pid = std::fs::read_to_string(self.0.join(file)).ok().and_then(|p| p.trim().parse().ok());
            if let Some(group) = pid.and_then(rustix::process::Pid::from_raw) {
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            }
        }
    }
}

/// This user, and `CAPSULE_TEST_USER` when this process is root and can enter it.
fn runners(test: &str) -> Vec<Runner> {
    let mut all = vec![Runner { name: "this user".to_owned(), setpriv: None }];
    if !is_root() {
        return all;
    }
    let Some(name) = std::env::var("CAPSULE_TEST_USER").ok().filter(|n| !n.is_empty()) else {
        eprintln!("{test}: SKIPPED the unprivileged half: running as root and CAPSULE_TEST_USER is not set");
        return all;
    };
    let Some(setpriv) = which("setpriv") else {
        eprintln!("{test}: SKIPPED the unprivileged half: setpriv is not installed");
        return all;
    };
    let id = |flag: &str| -> u32 {
        let output = Command::new("id").arg(flag).arg(&name).output().unwrap();
        assert!(output.status.success(), "CAPSULE_TEST_USER={name} is not a user: {}", text(&output.stderr));
        text(&output.stdout).trim().parse().unwrap()
    };
    let (uid, gid) = (id("-u"), id("-g"));
    assert_ne!(uid, 0, "CAPSULE_TEST_USER must not be root");
    let binary = env!("CARGO_BIN_EXE_capsule-launch");
    let probe = Command::new(&setpriv)
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .args(["--init-groups", "test", "-x", binary])
        .status()
        .unwrap();
    if !probe.success() {
        eprintln!("{test}: SKIPPED the unprivileged half: {name} cannot execute {binary}");
        return all;
    }
    all.push(Runner { name, setpriv: Some((setpriv, uid, gid)) });
    all
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|path| path.is_file())
}

fn read_pid(dir: &Path, file: &str) -> i32 {
    let path = dir.join(file);
    let content = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    content.trim().parse().unwrap_or_else(|e| panic!("{}: {content:?}: {e}", path.display()))
}

/// Every process (zombies included) in one of these sessions, as "pid comm state".
/// The command leads its own session and the escaped job another, so together they
/// hold everything both started.
fn processes_in_sessions(sessions: &[i32]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if !entry.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        // After the comm: state, ppid, pgrp, session.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let session = fields.get(3).and_then(|s| s.parse::<i32>().ok());
        if session.is_some_and(|s| sessions.contains(&s)) {
            found.push(format!("{head}) {}", fields[0]));
        }
    }
    found
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < DEADLINE, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_background_job_in_its_own_session_outlives_a_plain_shell() {
    // The control for the test below: without the launcher the job escapes.
    let dir = shared_tempdir();
    let _leftovers = Leftovers(dir.path());
    let status = Command::new("sh").args(["-c", ESCAPE]).current_dir(dir.path()).status().unwrap();
    assert!(status.success());
    let grandchild = read_pid(dir.path(), "grandchild.pid");
    wait_until("late.txt from the escaped job", || dir.path().join("late.txt").exists());
    assert!(!processes_in_sessions(&[grandchild]).is_empty());
    // The job leads its own process group: end it and the sleep it runs.
    let group = rustix::process::Pid::from_raw(grandchild).unwrap();
    rustix::process::kill_process_group(group, rustix::process::Signal::KILL).unwrap();
}

#[test]
fn background_jobs_end_with_the_command() {
    let artifact = artifact(open_settings(), &allow_all(), false);
    for runner in runners("background_jobs_end_with_the_command") {
        let workspace = shared_tempdir();
        let _leftovers = Leftovers(workspace.path());
        let output = runner.launch_in(workspace.path(), &artifact, &["sh", "-c", ESCAPE]);
        assert_code(&output, 0);
        let sessions = [read_pid(workspace.path(), "command.pid"), read_pid(workspace.path(), "grandchild.pid")];
        // Gone as soon as the launcher has returned ...
        assert_eq!(processes_in_sessions(&sessions), Vec::<String>::new(), "as {}", runner.name);
        // ... and late.txt, due a second after the job started, never comes.
        std::thread::sleep(Duration::from_secs(2));
        assert!(!workspace.path().join("late.txt").exists(), "as {}", runner.name);
        assert_eq!(processes_in_sessions(&sessions), Vec::<String>::new(), "as {}", runner.name);
    }
}

#[test]
fn a_forking_tree_is_ended_when_a_signal_ends_the_command() {
    // The job keeps handing new orphans to the launcher while it is being killed; the
    // notification listener is there so its path is the one that ends.
    let script = "echo $$ > command.pid; \
        (setsid sh -c 'echo $$ > grandchild.pid; i=0; \
            while [ $i -lt 300 ]; do (sleep 30 &); i=$((i+1)); echo $i > count; sleep 0.01; done' &); \
        until [ \"$(cat count 2>/dev/null)\" -ge 5 ] 2>/dev/null; do sleep 0.01; done; \
        kill -TERM $$";
    const SYS_MKDIR: u32 = 83;
    let artifact = artifact(open_settings(), &program(RET_USER_NOTIF, &[SYS_MKDIR]), true);
    for runner in runners("a_forking_tree_is_ended_when_a_signal_ends_the_command") {
        let workspace = shared_tempdir();
        let _leftovers = Leftovers(workspace.path());
        let output = runner.launch_in(workspace.path(), &artifact, &["sh", "-c", script]);
        assert_code(&output, 128 + libc::SIGTERM);
        let sessions = [read_pid(workspace.path(), "command.pid"), read_pid(workspace.path(), "grandchild.pid")];
        assert_eq!(processes_in_sessions(&sessions), Vec::<String>::new(), "as {}", runner.name);
    }
}

#[test]
fn orphans_that_end_while_the_command_runs_are_reaped_at_once() {
    // Each `(true &)` leaves an orphan that the launcher inherits; the command waits
    // until none of the launcher's children is a zombie (exit 0), or gives up (exit 1).
    let script = "for i in 1 2 3 4 5 6 7 8 9 10; do (true &); done; \
        n=0; while [ $n -lt 500 ]; do \
            z=0; \
            for f in /proc/[0-9]*/stat; do \
                read -r p c s pp rest 2>/dev/null < $f && [ \"$pp\" = \"$PPID\" ] && [ \"$s\" = Z ] && z=$((z+1)); \
            done; \
            [ $z = 0 ] && exit 0; \
            n=$((n+1)); sleep 0.02; \
        done; exit 1";
    let artifact = artifact(open_settings(), &allow_all(), false);
    for runner in runners("orphans_that_end_while_the_command_runs_are_reaped_at_once") {
        let workspace = shared_tempdir();
        let output = runner.launch_in(workspace.path(), &artifact, &["sh", "-c", script]);
        assert_code(&output, 0);
    }
}

/// Starts `cmd` with SIGCHLD ignored, as `perl -e '$SIG{CHLD}="IGNORE"; exec ...'` would.
fn ignore_sigchld(cmd: &mut Command) {
    // SAFETY: signal() is async-signal-safe and changes only the forked child's own
    // disposition; exec keeps an ignored SIGCHLD, which is the point.
    unsafe {
        cmd.pre_exec(|| {
            if libc::signal(libc::SIGCHLD, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Runs the launcher with SIGCHLD ignored and returns its exit code; fails instead of hanging.
fn launch_with_sigchld_ignored(artifact: &Artifact, command: &[&str]) -> Option<i32> {
    let mut cmd = launcher();
    cmd.arg("--manifest").arg(artifact.manifest()).arg("--").args(command);
    ignore_sigchld(&mut cmd);
    output_within_deadline(cmd).status.code()
}

#[test]
fn an_ignored_sigchld_does_not_lose_the_status() {
    // The command is still running when the launcher starts to wait: the case that hung.
    let command = ["sh", "-c", "sleep 0.5; exit 3"];
    let plain = artifact(open_settings(), &allow_all(), false);
    assert_eq!(launch_with_sigchld_ignored(&plain, &command), Some(3));
    const SYS_MKDIR: u32 = 83;
    let notifying = artifact(open_settings(), &program(RET_USER_NOTIF, &[SYS_MKDIR]), true);
    assert_eq!(launch_with_sigchld_ignored(&notifying, &command), Some(3));
}

#[test]
fn the_command_does_not_inherit_an_ignored_sigchld() {
    // The launcher resets SIGCHLD to its default before starting the command, and exec
    // keeps that: the command can wait for its own children.
    // SigIgn is a hex mask in which signal N is bit N-1.
    let script = "grep SigIgn /proc/$$/status";
    let artifact = artifact(open_settings(), &allow_all(), false);
    let mut cmd = launcher();
    cmd.arg("--manifest").arg(artifact.manifest()).args(["--", "sh", "-c", script]);
    ignore_sigchld(&mut cmd);
    let output = output_within_deadline(cmd);
    assert_code(&output, 0);
    let line = text(&output.stdout);
    let mask = u64::from_str_radix(line.trim().trim_start_matches("SigIgn:").trim(), 16).unwrap();
    assert_eq!(mask & (1 << (libc::SIGCHLD - 1)), 0, "{line}");
}

/// A tracer that attaches to the pid in argv[1] and then never waits for it.
const LAZY_TRACER: &str = "import ctypes, sys, time
libc = ctypes.CDLL(None, use_errno=True)
PTRACE_SEIZE = 0x4206
if libc.ptrace(PTRACE_SEIZE, int(sys.argv[1]), 0, 0) != 0:
    sys.exit('ptrace: errno %d' % ctypes.get_errno())
open('traced', 'w').write('yes')
time.sleep(30)
";

#[test]
fn a_traced_orphan_does_not_hang_the_launcher() {
    // The orphan is the launcher's child, its tracer a grandchild: the orphan, once
    // killed, cannot be reaped until the tracer is killed too, in a later round.
    // The system's, which every user can run (a version manager's shim may not be).
    let system = Path::new("/usr/bin/python3");
    let Some(python) = system.is_file().then(|| system.to_path_buf()).or_else(|| which("python3")) else {
        eprintln!("a_traced_orphan_does_not_hang_the_launcher: SKIPPED, python3 is not installed");
        return;
    };
    let script = format!(
        "echo $$ > command.pid; sleep 30 & echo $! > tracee.pid; \
         (setsid sh -c 'echo $$ > grandchild.pid; {} tracer.py $(cat tracee.pid)' &); \
         while [ ! -s traced ]; do sleep 0.01; done",
        python.display()
    );
    let artifact = artifact(open_settings(), &allow_all(), false);
    for runner in runners("a_traced_orphan_does_not_hang_the_launcher") {
        let workspace = shared_tempdir();
        let _leftovers = Leftovers(workspace.path());
        std::fs::write(workspace.path().join("tracer.py"), LAZY_TRACER).unwrap();
        let output = runner.launch_in(workspace.path(), &artifact, &["sh", "-c", &script]);
        assert_code(&output, 0);
        let sessions = [read_pid(workspace.path(), "command.pid"), read_pid(workspace.path(), "grandchild.pid")];
        assert_eq!(processes_in_sessions(&sessions), Vec::<String>::new(), "as {}", runner.name);
    }
}
