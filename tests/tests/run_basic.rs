//! `capsule run` works out of the box under the built-in default policy: the README's
//! commands, a shell, a Python script with threads; in a fresh directory with a fresh
//! cache, as root and as the unprivileged user. The first run compiles, the second
//! hits the cache.

use capsule_tests::{Sandbox, assert_exit, bin, identities, text};
use std::process::Command;

#[test]
fn echo_and_ls_work_and_the_second_run_is_cached() {
    for identity in identities("echo_and_ls_work_and_the_second_run_is_cached") {
        let sandbox = Sandbox::new(&identity);
        let first = sandbox.run(&["-v"], &["echo", "hello world"]);
        assert_exit(&first, 0);
        assert_eq!(text(&first.stdout), "hello world\n");
        assert!(text(&first.stderr).contains(": compiled artifact "), "{}", text(&first.stderr));

        std::fs::write(sandbox.workspace.path().join("notes.txt"), "x").unwrap();
        let second = sandbox.run(&["-v"], &["ls", "-l"]);
        assert_exit(&second, 0);
        let listing = text(&second.stdout);
        assert!(listing.starts_with("total ") && listing.contains("notes.txt"), "{listing}");
        assert!(text(&second.stderr).contains(": cached artifact "), "{}", text(&second.stderr));
        let cache = sandbox.cache_home().join("capsule").join("artifacts");
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1, "one cache entry in {}", cache.display());

        // Without -v, nothing but the command's output.
        let quiet = sandbox.run(&[], &["echo", "hello world"]);
        assert_exit(&quiet, 0);
        assert_eq!(text(&quiet.stdout), "hello world\n");
        assert_eq!(text(&quiet.stderr), "");
    }
}

#[test]
fn a_shell_pipeline_works_and_writes_the_workspace() {
    for identity in identities("a_shell_pipeline_works_and_writes_the_workspace") {
        let sandbox = Sandbox::new(&identity);
        let output =
            sandbox.run(&[], &["sh", "-c", "printf 'b\\na\\n' | sort > sorted && cat sorted && echo $CAPSULE"]);
        assert_exit(&output, 0);
        assert_eq!(text(&output.stdout), "a\nb\n1\n");
        assert_eq!(std::fs::read_to_string(sandbox.workspace.path().join("sorted")).unwrap(), "a\nb\n");
    }
}

#[test]
fn a_python_script_with_threads_works() {
    // glibc tries clone3 first and falls back to clone only on ENOSYS: the policy's
    // clone3 answer must reach the program as ENOSYS for threads to start.
    let script = r#"
import json, pathlib, threading
results = []
threads = [threading.Thread(target=lambda i=i: results.append(i * i)) for i in range(4)]
for t in threads: t.start()
for t in threads: t.join()
pathlib.Path("out.json").write_text(json.dumps(sorted(results)))
print("squares", sorted(results))
"#;
    for identity in identities("a_python_script_with_threads_works") {
        let sandbox = Sandbox::new(&identity);
        std::fs::write(sandbox.workspace.path().join("script.py"), script).unwrap();
        let output = sandbox.run(&[], &["python3", "script.py"]);
        assert_exit(&output, 0);
        assert_eq!(text(&output.stdout), "squares [0, 1, 4, 9]\n");
        assert_eq!(std::fs::read_to_string(sandbox.workspace.path().join("out.json")).unwrap(), "[0, 1, 4, 9]");
    }
}

/// `capsule run` is parsed against its own arguments only (cli/src/main.rs,
/// `parse_run`); what a user reads must not change for it.
#[test]
fn run_help_and_usage_errors_read_as_the_full_command_trees() {
    let fast = Command::new(bin("capsule")).args(["run", "--help"]).output().unwrap();
    let full = Command::new(bin("capsule")).args(["help", "run"]).output().unwrap();
    assert!(fast.status.success() && full.status.success());
    assert_eq!(text(&fast.stdout), text(&full.stdout));
    assert!(text(&fast.stdout).starts_with("Compile a policy (cached) and run a command under it."));
    assert!(text(&fast.stdout).contains("Usage: capsule run [OPTIONS] <COMMAND>..."));

    let bad = Command::new(bin("capsule")).args(["run", "--policy"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "a usage error exits 2");
    assert!(text(&bad.stderr).contains("a value is required for '--policy <POLICY>'"), "{}", text(&bad.stderr));
    let missing = Command::new(bin("capsule")).arg("run").output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("Usage: capsule run <COMMAND>..."), "{}", text(&missing.stderr));
}

/// The command's signal dispositions are those it would have outside: the launcher
/// ignores SIGPIPE for itself, and an ignored signal stays ignored across exec, so
/// without care a pipeline's writer reports a broken pipe instead of ending quietly.
#[test]
fn the_command_gets_sigpipes_default_action() {
    let script = "yes | head -1 >/dev/null; grep SigIgn /proc/self/status";
    let outside = Command::new("sh").args(["-c", script]).output().unwrap();
    assert_exit(&outside, 0);
    assert_eq!(text(&outside.stderr), "", "outside the sandbox, `yes` ends on SIGPIPE quietly");
    for identity in identities("the_command_gets_sigpipes_default_action") {
        let sandbox = Sandbox::new(&identity);
        let inside = sandbox.run(&[], &["sh", "-c", script]);
        assert_exit(&inside, 0);
        assert_eq!(text(&inside.stderr), "", "no `yes: standard output: Broken pipe`");
        assert!(!sigpipe_ignored(&inside.stdout), "{}", text(&inside.stdout));
    }
    assert!(!sigpipe_ignored(&outside.stdout), "{}", text(&outside.stdout));
}

/// Whether a `SigIgn:` line of /proc/PID/status has SIGPIPE's bit.
fn sigpipe_ignored(status: &[u8]) -> bool {
    let mask = text(status).trim().strip_prefix("SigIgn:").map(str::trim).map(str::to_owned).unwrap();
    u64::from_str_radix(&mask, 16).unwrap() & (1 << (libc::SIGPIPE - 1)) != 0
}

/// With its standard error closed, `capsule run` keeps its messages out of the files it
/// opens: the first of them would otherwise take descriptor 2, and `-v`'s report would
/// be written into it, here the audit log (capsule_launch::entry opens /dev/null on a
/// closed 0, 1 or 2, as Rust's own start-up does).
#[test]
fn a_closed_stderr_does_not_become_the_audit_log() {
    for identity in identities("a_closed_stderr_does_not_become_the_audit_log") {
        let sandbox = Sandbox::new(&identity);
        let output = sandbox
            .command("/bin/sh")
            .args(["-c", "exec \"$@\" 2>&-", "sh"])
            .arg(bin("capsule"))
            .args(["run", "-v", "--workspace"])
            .arg(sandbox.workspace.path())
            .args(["--", "true"])
            .output()
            .unwrap();
        assert_exit(&output, 0);
        let verify = sandbox.capsule().arg("verify").output().unwrap();
        assert_exit(&verify, 0);
        // Genesis, the invocation's start and end, and its checkpoint; nothing torn.
        let report = text(&verify.stdout);
        assert!(report.contains(": intact: 4 records, 1 checkpoints"), "{report}");
        assert!(!report.contains("torn"), "{report}");
    }
}
