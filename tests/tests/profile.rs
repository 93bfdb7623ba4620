//! `capsule profile` on the real kernel: real programs (a shell pipeline, Python, tar,
//! git, find) are profiled, their generated policies check clean and replay, as root
//! and as the unprivileged user; the bad inputs of issue 9 (missing, empty, unreadable
//! or unsplittable FILE, a command not found, a hang, a daemon, a command that uses
//! ptrace or seccomp itself, an unwritable out-dir, millions of calls) each give a
//! clear report and the documented exit status.

use capsule_tests::{Identity, Sandbox, identities, text};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `capsule profile ARGS` in the sandbox's workspace.
fn profile(sandbox: &Sandbox, args: &[&str]) -> Output {
    let mut cmd = sandbox.capsule();
    cmd.arg("profile").args(args);
    cmd.output().expect("run capsule profile")
}

fn out_dir(sandbox: &Sandbox) -> PathBuf {
    sandbox.home.path().join("profile-out")
}

fn write_commands(sandbox: &Sandbox, text: &str) -> PathBuf {
    let path = sandbox.home.path().join("commands.txt");
    std::fs::write(&path, text).expect("write commands.txt");
    sandbox.identity.own(&path);
    path
}

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn explain(output: &Output) -> String {
    format!("status {:?}\nstdout:\n{}\nstderr:\n{}", output.status, text(&output.stdout), text(&output.stderr))
}

/// Every generated policy checks with no diagnostic at all (no error, warning or note).
fn assert_checks_clean(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with(".yaml") {
            let source = std::fs::read_to_string(&path).unwrap();
            let checked = capsule_compiler::front::check(&source);
            assert!(
                checked.policy.is_some() && checked.diagnostics.is_empty(),
                "{} does not check clean: {:?}\n{source}",
                path.display(),
                checked.diagnostics
            );
        }
    }
}

fn syscall_count(profile: &Value, name: &str) -> u64 {
    profile["syscalls"]["linux-x86_64"][name]["count"].as_u64().unwrap_or(0)
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

#[test]
fn real_programs_are_profiled_and_replay_under_their_generated_policies() {
    let commands = "\
# issue 9: a shell pipeline, Python, tar, git, find
sh -c 'printf \"b\\na\\n\" | sort > sorted.txt && cat sorted.txt'
python3 -c 'import json, pathlib; pathlib.Path(\"py.json\").write_text(json.dumps([1, 2]))'
tar -cf archive.tar -C /usr/share/doc dpkg

sh -c 'git init -q repo && cd repo && echo x > f && git add f && git -c user.name=t -c user.email=t@example.org commit -q --allow-empty -m m'
find /usr/share/doc/dpkg -name '*.gz'
";
    for identity in identities("real_programs_are_profiled_and_replay_under_their_generated_policies") {
        let sandbox = Sandbox::new(&identity);
        let file = write_commands(&sandbox, commands);
        let out = out_dir(&sandbox);
        // Two runs: git's second commit in an existing repository makes calls its first
        // did not (utimensat on the index), as the replay would show.
        let output =
            profile(&sandbox, &["-q", "--runs", "2", file.to_str().unwrap(), "--out-dir", out.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(0), "{} as {}", explain(&output), identity.describe());

        let index = json(&out.join("index.json"));
        assert_eq!(index["version"], 1);
        assert_eq!(index["merged"], "capsule.yaml");
        let listed = index["commands"].as_array().unwrap();
        assert_eq!(listed.len(), 5);
        let stems = ["01-sh", "02-python3", "03-tar", "04-sh", "05-find"];
        for (entry, (stem, line)) in listed.iter().zip(stems.iter().zip([2, 3, 4, 6, 7])) {
            assert_eq!(entry["line"], line, "{entry}");
            assert_eq!(entry["exit"], 0, "{entry}");
            assert_eq!(entry["profile"], format!("{stem}.json"));
            assert_eq!(entry["policy"], format!("{stem}.capsule.yaml"));
            assert_eq!(entry["replay"]["ok"], true, "{entry}");
            assert_eq!(entry["merged_replay"]["ok"], true, "{entry}");
            assert!(out.join(format!("{stem}.json")).is_file() && out.join(format!("{stem}.capsule.yaml")).is_file());
        }
        assert!(out.join("capsule.yaml").is_file() && out.join("summary.md").is_file());
        assert_checks_clean(&out);

        // What was recorded, across descendants.
        let sh = json(&out.join("01-sh.json"));
        assert_eq!(sh["version"], 1);
        assert_eq!(sh["argv"][0], "sh");
        let execs: Vec<String> =
            sh["exec"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap().to_owned()).collect();
        assert!(execs.iter().any(|p| p.ends_with("/sort")), "the pipeline's sort is in the exec tree: {execs:?}");
        assert!(sh["processes"].as_u64().unwrap() >= 2, "{}", sh["processes"]);
        let created = strings(&sh["files"]["create"]);
        assert!(created.iter().any(|p| p.ends_with("/sorted.txt")), "{created:?}");
        assert!(syscall_count(&sh, "execve") >= 2);

        let tar = json(&out.join("03-tar.json"));
        assert!(
            strings(&tar["files"]["read"]).iter().any(|p| p.starts_with("/usr/share/doc/dpkg/")),
            "{}",
            tar["files"]
        );
        assert!(strings(&tar["files"]["write"]).iter().any(|p| p.ends_with("/archive.tar")), "{}", tar["files"]);

        let find = json(&out.join("05-find.json"));
        assert!(strings(&find["files"]["list"]).contains(&"/usr/share/doc/dpkg".to_owned()), "{}", find["files"]);
        assert!(find["syscalls"]["linux-x86_64"]["getdents64"]["count"].as_u64().unwrap() >= 2);

        // The generated policy names what the command needed, generalised.
        let policy = std::fs::read_to_string(out.join("03-tar.capsule.yaml")).unwrap();
        assert!(policy.contains("default: errno(EPERM)") && policy.contains("newer-syscalls: errno(ENOSYS)"));
        assert!(policy.contains("foreign-arch: kill-process"));
        assert!(policy.contains("\"${WORKSPACE}\""), "{policy}");
        assert!(!policy.contains("- ptrace") && !policy.contains("- mount"), "{policy}");

        let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
        assert!(summary.contains("## 02-python3"), "{summary}");
        assert!(sandbox.workspace.path().join("repo/.git").is_dir());
    }
}

#[test]
fn a_generated_policy_denies_what_the_command_did_not_do() {
    for identity in identities("a_generated_policy_denies_what_the_command_did_not_do") {
        let sandbox = Sandbox::new(&identity);
        let out = out_dir(&sandbox);
        let output =
            profile(&sandbox, &["-q", "--out-dir", out.to_str().unwrap(), "--", "sh", "-c", "echo hi > mine.txt"]);
        assert_eq!(output.status.code(), Some(0), "{}", explain(&output));
        let policy = out.join("01-sh.capsule.yaml");
        let outside = capsule_tests::outside_dir("capsule-profile-outside-");
        identity.own(outside.path());
        let target = outside.path().join("escaped.txt");
        let script = format!("echo hi > mine.txt && echo x > {}", target.display());

        // Without the sandbox the write outside the workspace works...
        let plain =
            identity.command("sh").arg("-c").arg(&script).current_dir(sandbox.workspace.path()).output().unwrap();
        assert!(plain.status.success() && target.exists(), "{}", explain(&plain));
        std::fs::remove_file(&target).unwrap();
        // ...under the generated policy the workspace write still works and the other fails.
        let run = sandbox.run_with(&["--policy", policy.to_str().unwrap()], &["sh", "-c", &script], |_| {});
        assert_ne!(run.status.code(), Some(0), "{}", explain(&run));
        assert!(!target.exists(), "the policy let the command write outside what it was profiled doing");
        assert_eq!(std::fs::read_to_string(sandbox.workspace.path().join("mine.txt")).unwrap(), "hi\n");

        // A socket was never observed: socket() fails under the policy of a Python
        // command that imported the module but made none.
        let py = profile(
            &sandbox,
            &["-q", "--out-dir", out.to_str().unwrap(), "--", "python3", "-c", "import socket, sys; print(0)"],
        );
        assert_eq!(py.status.code(), Some(0), "{}", explain(&py));
        let policy = out.join("01-python3.capsule.yaml");
        let text_policy = std::fs::read_to_string(&policy).unwrap();
        assert!(!text_policy.contains("- socket"), "{text_policy}");
        let probe =
            "import socket, sys\ntry:\n    socket.socket()\nexcept OSError as e:\n    print(e.errno); sys.exit(3)\n";
        let unsandboxed = identity.command("/usr/bin/python3").arg("-c").arg(probe).output().unwrap();
        assert_eq!(unsandboxed.status.code(), Some(0), "{}", explain(&unsandboxed));
        let run = sandbox.run_with(&["--policy", policy.to_str().unwrap()], &["python3", "-c", probe], |_| {});
        assert_eq!(run.status.code(), Some(3), "{}", explain(&run));
        assert_eq!(text(&run.stdout).trim(), libc::EPERM.to_string());
    }
}

#[test]
fn bad_inputs_are_refused_before_anything_runs() {
    for identity in identities("bad_inputs_are_refused_before_anything_runs") {
        let sandbox = Sandbox::new(&identity);
        let out = out_dir(&sandbox);
        let out_s = out.to_str().unwrap();
        let marker = sandbox.workspace.path().join("ran");

        let missing = profile(&sandbox, &["/nonexistent/commands.txt", "--out-dir", out_s]);
        assert_eq!(missing.status.code(), Some(2), "{}", explain(&missing));
        assert!(text(&missing.stderr).contains("cannot read /nonexistent/commands.txt"), "{}", explain(&missing));

        let empty = write_commands(&sandbox, "\n# nothing but a comment\n   \n");
        let output = profile(&sandbox, &[empty.to_str().unwrap(), "--out-dir", out_s]);
        assert_eq!(output.status.code(), Some(2), "{}", explain(&output));
        assert!(text(&output.stderr).contains("has no commands"), "{}", explain(&output));

        // A line that cannot be split: its number, and the first line did not run.
        let file = write_commands(&sandbox, &format!("touch {}\necho 'unclosed\n", marker.display()));
        let output = profile(&sandbox, &[file.to_str().unwrap(), "--out-dir", out_s]);
        assert_eq!(output.status.code(), Some(2), "{}", explain(&output));
        assert!(text(&output.stderr).contains("commands.txt:2: cannot split"), "{}", explain(&output));
        let file = write_commands(&sandbox, &format!("touch {}\nls | wc -l\n", marker.display()));
        let output = profile(&sandbox, &[file.to_str().unwrap(), "--out-dir", out_s]);
        assert_eq!(output.status.code(), Some(2), "{}", explain(&output));
        assert!(text(&output.stderr).contains(":2: unquoted `|`"), "{}", explain(&output));
        assert!(!marker.exists(), "a command ran although the file had an error");

        // An out-dir that cannot be written: nothing runs.
        let file = write_commands(&sandbox, &format!("touch {}\n", marker.display()));
        let blocker = sandbox.home.path().join("a-file");
        std::fs::write(&blocker, "").unwrap();
        let output = profile(&sandbox, &[file.to_str().unwrap(), "--out-dir", blocker.join("out").to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(2), "{}", explain(&output));
        assert!(text(&output.stderr).contains("cannot create the output folder"), "{}", explain(&output));
        assert!(!marker.exists());

        // Usage errors: no FILE and no command; both.
        let output = profile(&sandbox, &["--out-dir", out_s]);
        assert_eq!(output.status.code(), Some(2), "{}", explain(&output));
        let output = profile(&sandbox, &[file.to_str().unwrap(), "--out-dir", out_s, "--", "true"]);
        assert_eq!(output.status.code(), Some(2), "{}", explain(&output));

        if !identity.is_root() {
            // Unreadable FILE, and an out-dir in a directory the user cannot write.
            let secret = outside_file("capsule-profile-secret", "true\n");
            let output = profile(&sandbox, &[secret.1.to_str().unwrap(), "--out-dir", out_s]);
            assert_eq!(output.status.code(), Some(2), "{}", explain(&output));
            assert!(text(&output.stderr).contains("Permission denied"), "{}", explain(&output));
            let output = profile(&sandbox, &[file.to_str().unwrap(), "--out-dir", "/usr/capsule-profile-out"]);
            assert_eq!(output.status.code(), Some(2), "{}", explain(&output));
            assert!(!marker.exists());
        }

        // Standard input.
        let mut cmd = sandbox.capsule();
        cmd.args(["profile", "-", "-q", "--no-verify", "--out-dir", out_s]).stdin(Stdio::piped());
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(format!("touch {}\n", marker.display()).as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", explain(&output));
        assert!(marker.exists());
    }
}

/// A root-owned file of mode 0600 in /var/tmp.
fn outside_file(prefix: &str, contents: &str) -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = capsule_tests::outside_dir(prefix);
    let path = dir.path().join("commands.txt");
    std::fs::write(&path, contents).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    (dir, path)
}

#[test]
fn a_command_not_found_is_recorded_with_127_and_the_others_go_on() {
    let sandbox = Sandbox::new(&Identity::Current);
    let file = write_commands(&sandbox, "no-such-command-capsule --flag\ntrue\n");
    let out = out_dir(&sandbox);
    let output = profile(&sandbox, &["-q", file.to_str().unwrap(), "--out-dir", out.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", explain(&output));
    let index = json(&out.join("index.json"));
    assert_eq!(index["commands"][0]["exit"], 127);
    assert_eq!(index["commands"][1]["exit"], 0);
    assert_eq!(index["commands"][1]["replay"]["ok"], true);
    let first = json(&out.join("01-no-such-command-capsule.json"));
    assert!(strings(&first["notes"]).iter().any(|n| n.contains("command not found")), "{first}");
    assert_checks_clean(&out);
}

fn processes_with_arg(arg: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|cmdline| cmdline.split(|&b| b == 0).any(|a| a == arg.as_bytes()))
        .count()
}

#[test]
fn a_hanging_command_and_all_its_descendants_are_killed_at_the_timeout() {
    for identity in identities("a_hanging_command_and_all_its_descendants_are_killed_at_the_timeout") {
        let sandbox = Sandbox::new(&identity);
        let out = out_dir(&sandbox);
        // A distinct duration names the sleeps so that the test can look for them.
        let naps = "4242.5";
        let started = Instant::now();
        let output = profile(
            &sandbox,
            &[
                "-q",
                "--timeout",
                "1s",
                "--out-dir",
                out.to_str().unwrap(),
                "--",
                "sh",
                "-c",
                &format!("sleep {naps} & setsid sleep {naps} & sleep {naps}"),
            ],
        );
        assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
        assert_eq!(output.status.code(), Some(1), "{}", explain(&output));
        assert!(text(&output.stderr).contains("timed out"), "{}", explain(&output));
        let profile = json(&out.join("01-sh.json"));
        assert_eq!(profile["timed_out"], true);
        assert!(strings(&profile["notes"]).iter().any(|n| n.contains("timed out")), "{profile}");
        assert_eq!(processes_with_arg(naps), 0, "a sleep outlived the timeout");
    }
}

#[test]
fn a_daemonising_command_is_followed_and_its_stragglers_reaped() {
    for identity in identities("a_daemonising_command_is_followed_and_its_stragglers_reaped") {
        let sandbox = Sandbox::new(&identity);
        let out = out_dir(&sandbox);
        let naps = "4343.5";
        // The background child writes after its parent has exited; a second one never ends.
        let script = format!("(sleep 0.3; echo late > daemon.txt) & setsid sleep {naps} & exit 0");
        let started = Instant::now();
        let output =
            profile(&sandbox, &["-q", "--no-verify", "--out-dir", out.to_str().unwrap(), "--", "sh", "-c", &script]);
        assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
        assert_eq!(output.status.code(), Some(0), "{}", explain(&output));
        assert_eq!(std::fs::read_to_string(sandbox.workspace.path().join("daemon.txt")).unwrap(), "late\n");
        let profile = json(&out.join("01-sh.json"));
        assert!(
            strings(&profile["files"]["create"]).iter().any(|p| p.ends_with("/daemon.txt")),
            "{}",
            profile["files"]
        );
        assert!(profile["killed_background_processes"].as_u64().unwrap() >= 1, "{profile}");
        assert_eq!(processes_with_arg(naps), 0, "the daemon outlived the profile");
    }
}

#[test]
fn a_command_that_uses_ptrace_or_seccomp_itself_is_reported() {
    for identity in identities("a_command_that_uses_ptrace_or_seccomp_itself_is_reported") {
        let sandbox = Sandbox::new(&identity);
        let out = out_dir(&sandbox);
        // PTRACE_TRACEME from a process that is already traced fails (EPERM).
        let tracer = "import ctypes, sys\nlibc = ctypes.CDLL(None, use_errno=True)\nr = libc.ptrace(0, 0, 0, 0)\nprint(r, ctypes.get_errno())\nsys.exit(0 if r == 0 else 4)\n";
        let unprofiled = identity.command("/usr/bin/python3").arg("-c").arg(tracer).output().unwrap();
        assert_eq!(unprofiled.status.code(), Some(0), "PTRACE_TRACEME works unprofiled: {}", explain(&unprofiled));
        let started = Instant::now();
        let output = profile(
            &sandbox,
            &["-q", "--no-verify", "--out-dir", out.to_str().unwrap(), "--", "python3", "-c", tracer],
        );
        assert!(started.elapsed() < Duration::from_secs(60));
        assert_eq!(output.status.code(), Some(1), "{}", explain(&output));
        let recorded = json(&out.join("01-python3.json"));
        assert_eq!(recorded["exit"], 4);
        assert!(strings(&recorded["notes"]).iter().any(|n| n.contains("called ptrace")), "{recorded}");

        // A command that installs its own filter (libseccomp's Python binding).
        let filter = "import os, seccomp\nf = seccomp.SyscallFilter(seccomp.ALLOW)\nf.add_rule(seccomp.ERRNO(1), 'getcwd')\nf.load()\ntry:\n    os.getcwd(); print('allowed')\nexcept OSError as e:\n    print('denied', e.errno)\n";
        let output =
            profile(&sandbox, &["--no-verify", "--out-dir", out.to_str().unwrap(), "--", "python3", "-c", filter]);
        assert_eq!(output.status.code(), Some(0), "{}", explain(&output));
        // The command's own filter answered getcwd: its errno takes precedence over the
        // profiler's trace, so the profile does not see that call.
        assert!(text(&output.stdout).contains("denied 1"), "{}", explain(&output));
        let recorded = json(&out.join("01-python3.json"));
        assert!(strings(&recorded["notes"]).iter().any(|n| n.contains("seccomp filter of its own")), "{recorded}");
    }
}

#[test]
fn millions_of_calls_keep_memory_bounded() {
    let calls: u64 = if std::env::var_os("CAPSULE_SLOW_TESTS").is_some() { 2_000_000 } else { 200_000 };
    let sandbox = Sandbox::new(&Identity::Current);
    let out = out_dir(&sandbox);
    // Many calls and many distinct paths (each a failed open).
    let script = format!(
        "import os\nfor i in range({calls}):\n    os.getppid()\nfor i in range(3000):\n    try: open('/nonexistent/%d' % i)\n    except OSError: pass\n"
    );
    // Run through wait4 to read the peak memory of capsule (and the command).
    let mut cmd = sandbox.capsule();
    cmd.args(["profile", "-q", "--no-verify", "--out-dir", out.to_str().unwrap(), "--", "python3", "-c", &script]);
    #[allow(clippy::zombie_processes)] // reaped by the wait4 below
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("run capsule profile");
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; wait4 writes the status and the child's resource
    // usage into live locals.
    let waited = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(waited, child.id() as i32);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "status {status:#x}");
    let profile = json(&out.join("01-python3.json"));
    assert!(syscall_count(&profile, "getppid") >= calls, "{}", profile["syscalls"]);
    assert_eq!(profile["files"]["failed"].as_array().unwrap().len(), 1000, "failed paths are capped");
    assert!(strings(&profile["truncated"]).iter().any(|t| t.contains("failed paths")), "{profile}");
    // Counts, not lists: capsule's peak stays far from what a list of every call needs.
    assert!(usage.ru_maxrss < 64 * 1024, "max RSS {} KiB", usage.ru_maxrss);
}

#[test]
fn runs_json_format_from_and_rerunning_into_the_same_folder() {
    let sandbox = Sandbox::new(&Identity::Current);
    let out = out_dir(&sandbox);
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("notes-of-mine.txt"), "keep").unwrap();
    let file = write_commands(&sandbox, "true\nls /usr/share/doc\n");
    let output = profile(
        &sandbox,
        &["-q", "--runs", "2", "--format", "json", file.to_str().unwrap(), "--out-dir", out.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(0), "{}", explain(&output));
    let summary: Value = serde_json::from_slice(&output.stdout).expect("--format json prints JSON");
    assert_eq!(summary["ok"], true);
    assert_eq!(summary["commands"].as_array().unwrap().len(), 2);
    let ls = json(&out.join("02-ls.json"));
    assert_eq!(ls["runs"], 2);
    // By default only the calls whose results make the profile count failures
    // (with --all-results every call does: below).
    assert!(ls["syscalls"]["linux-x86_64"]["openat"]["failed"].is_u64(), "{}", ls["syscalls"]);
    assert!(ls["syscalls"]["linux-x86_64"]["mmap"]["failed"].is_null(), "{}", ls["syscalls"]);
    assert!(out.join("02-ls.capsule.yaml").exists());

    // Re-running with one command replaces what profile wrote and nothing else.
    let output = profile(&sandbox, &["-q", "--out-dir", out.to_str().unwrap(), "--", "true"]);
    assert_eq!(output.status.code(), Some(0), "{}", explain(&output));
    assert!(!out.join("02-ls.json").exists() && !out.join("02-ls.capsule.yaml").exists());
    assert!(out.join("01-true.json").exists());
    assert_eq!(std::fs::read_to_string(out.join("notes-of-mine.txt")).unwrap(), "keep");

    // --from: what the default policy allows is not traced, and the policy still replays.
    let default_policy = sandbox.home.path().join("default.yaml");
    std::fs::write(&default_policy, capsule_tests::default_policy()).unwrap();
    let output = profile(
        &sandbox,
        &[
            "-q",
            "--from",
            default_policy.to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
            "--",
            "ls",
            "/usr/share/doc",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", explain(&output));
    let ls = json(&out.join("01-ls.json"));
    assert_eq!(syscall_count(&ls, "mmap"), 0, "mmap is allowed by the default policy: {}", ls["syscalls"]);
    assert!(syscall_count(&ls, "openat") > 0);
    assert_eq!(json(&out.join("index.json"))["commands"][0]["replay"]["ok"], true);
    assert_checks_clean(&out);
    // --all-results: every call that returns counts its failures.
    let output = profile(
        &sandbox,
        &["-q", "--no-verify", "--all-results", "--out-dir", out.to_str().unwrap(), "--", "ls", "/nonexistent-capsule"],
    );
    assert_eq!(output.status.code(), Some(1), "{}", explain(&output));
    let all = json(&out.join("01-ls.json"));
    for (name, counts) in all["syscalls"]["linux-x86_64"].as_object().unwrap() {
        // exit_group never returns: it has no result.
        assert!(counts["failed"].is_u64() || name == "exit_group", "{name}: {counts}");
    }
    assert!(all["syscalls"]["linux-x86_64"]["statx"]["failed"].as_u64().unwrap() >= 1, "{}", all["syscalls"]);
}

#[test]
fn tcp_ports_are_recorded_and_become_the_network_lists() {
    let sandbox = Sandbox::new(&Identity::Current);
    let out = out_dir(&sandbox);
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let script = format!(
        "import socket\ns = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('127.0.0.1', {port})); s.listen()\nc = socket.create_connection(('127.0.0.1', {port}))\nprint('connected')\n"
    );
    let output = profile(&sandbox, &["-q", "--out-dir", out.to_str().unwrap(), "--", "python3", "-c", &script]);
    assert_eq!(output.status.code(), Some(0), "{}", explain(&output));
    let recorded = json(&out.join("01-python3.json"));
    let connect = &recorded["network"]["connect"];
    assert!(connect.as_array().unwrap().iter().any(|c| c["port"] == port && c["protocol"] == "tcp"), "{connect}");
    let policy = std::fs::read_to_string(out.join("01-python3.capsule.yaml")).unwrap();
    assert!(policy.contains(&format!("connect: [tcp/{port}]")), "{policy}");
    assert!(policy.contains(&format!("bind: [tcp/{port}]")), "{policy}");
    assert!(policy.contains("socket: domain in [AF_INET"), "{policy}");
    assert_eq!(json(&out.join("index.json"))["commands"][0]["replay"]["ok"], true);
}

#[test]
fn help_says_profiling_does_not_confine() {
    let output = Command::new(capsule_tests::bin("capsule")).args(["profile", "--help"]).output().unwrap();
    assert!(text(&output.stdout).contains("Profiling observes; it does not confine"), "{}", explain(&output));
}

#[test]
fn within_a_policy_only_the_command_is_recorded_and_what_the_policy_denies_is_not_seen() {
    for identity in identities("within_a_policy_only_the_command_is_recorded_and_what_the_policy_denies_is_not_seen") {
        let sandbox = Sandbox::new(&identity);
        let out = out_dir(&sandbox);
        let outer = sandbox.home.path().join("outer.yaml");
        std::fs::write(&outer, capsule_tests::default_policy()).unwrap();
        identity.own(&outer);
        let script = "echo hi > within.txt; python3 -c 'import socket; socket.socket(socket.AF_INET)'";
        let output = profile(
            &sandbox,
            &[
                "-q",
                "--no-verify",
                "--within",
                outer.to_str().unwrap(),
                "--out-dir",
                out.to_str().unwrap(),
                "--",
                "sh",
                "-c",
                script,
            ],
        );
        // The outer policy denies AF_INET sockets: Python fails, so the command does.
        assert_eq!(output.status.code(), Some(1), "{}", explain(&output));
        let recorded = json(&out.join("01-sh.json"));
        assert_eq!(recorded["exit"], 1, "{recorded}");
        assert_eq!(sandbox.workspace.path().join("within.txt").metadata().unwrap().len(), 3);
        // The launcher's own calls (Landlock, the filter) are not the command's...
        for launcher_call in ["landlock_create_ruleset", "landlock_restrict_self", "seccomp"] {
            assert_eq!(syscall_count(&recorded, launcher_call), 0, "{launcher_call}: {}", recorded["syscalls"]);
        }
        // ...nor is the call the outer policy answered.
        assert_eq!(syscall_count(&recorded, "socket"), 0, "{}", recorded["syscalls"]);
        let execs: Vec<String> =
            recorded["exec"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap().to_owned()).collect();
        assert!(execs.first().is_some_and(|p| p.ends_with("/dash") || p.ends_with("/sh")), "{execs:?}");
        assert!(execs.iter().any(|p| p.contains("python3")), "{execs:?}");
        assert!(!execs.iter().any(|p| p.ends_with("/capsule")), "{execs:?}");
    }
}

#[test]
fn the_workspace_option_sets_where_commands_run_and_what_workspace_means() {
    let sandbox = Sandbox::new(&Identity::Current);
    let elsewhere = capsule_tests::outside_dir("capsule-profile-ws-");
    // Run from the home directory; the commands run in --workspace.
    let mut cmd = sandbox.capsule();
    cmd.current_dir(sandbox.home.path()).args(["profile", "-q", "--workspace"]).arg(elsewhere.path());
    cmd.args(["--out-dir", "relative-out", "--", "sh", "-c", "pwd > where.txt"]);
    let output = cmd.output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", explain(&output));
    let written = std::fs::read_to_string(elsewhere.path().join("where.txt")).unwrap();
    assert_eq!(Path::new(written.trim()).canonicalize().unwrap(), elsewhere.path().canonicalize().unwrap());
    // The out-dir is relative to where capsule was started, not to the workspace.
    let out = sandbox.home.path().join("relative-out");
    assert!(out.join("index.json").is_file() && !elsewhere.path().join("relative-out").exists());
    let policy = std::fs::read_to_string(out.join("01-sh.capsule.yaml")).unwrap();
    assert!(policy.contains("\"${WORKSPACE}\""), "{policy}");
}

/// A command that reads, only at replay time, a file its policy does not grant, and
/// ignores the failure (exit 0 either way): the exit status cannot show the refusal,
/// the replay's trace does (Landlock answers EACCES, and no seccomp denial is involved).
#[test]
fn a_replay_reports_a_refused_path_even_when_the_command_exits_0() {
    for identity in identities("a_replay_reports_a_refused_path_even_when_the_command_exits_0") {
        let sandbox = Sandbox::new(&identity);
        let out = out_dir(&sandbox);
        let outside = capsule_tests::outside_dir("capsule-profile-refused-");
        identity.own(outside.path());
        let secret = outside.path().join("secret.txt");
        std::fs::write(&secret, "s3cret\n").unwrap();
        identity.own(&secret);
        std::fs::write(sandbox.workspace.path().join("allowed.txt"), "ok\n").unwrap();
        identity.own(&sandbox.workspace.path().join("allowed.txt"));
        // The first run reads allowed.txt and leaves a marker; any later run reads the
        // secret instead, with the same programs and calls.
        let script = format!(
            "if [ -e marker ]; then f={}; else f=allowed.txt; touch marker; fi; cat \"$f\"; exit 0",
            secret.display()
        );

        // Without the sandbox both runs exit 0, and the second really reads the secret.
        for expected in ["ok\n", "s3cret\n"] {
            let plain =
                identity.command("sh").arg("-c").arg(&script).current_dir(sandbox.workspace.path()).output().unwrap();
            assert_eq!(plain.status.code(), Some(0), "{}", explain(&plain));
            assert_eq!(text(&plain.stdout), expected, "{}", explain(&plain));
        }
        std::fs::remove_file(sandbox.workspace.path().join("marker")).unwrap();

        let output = profile(
            &sandbox,
            &["-q", "--format", "json", "--out-dir", out.to_str().unwrap(), "--", "sh", "-c", &script],
        );
        assert_eq!(output.status.code(), Some(1), "{} as {}", explain(&output), identity.describe());
        let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
        let index = json(&out.join("index.json"));
        for entry in [&summary["commands"][0], &index["commands"][0]] {
            assert_eq!(entry["exit"], 0, "{entry}");
            for replay in [&entry["replay"], &entry["merged_replay"]] {
                assert_eq!(replay["exit"], 0, "the command ignored the failure: {replay}");
                assert_eq!(replay["ok"], false, "{replay}");
                assert_eq!(replay["refused"], serde_json::json!({}), "no seccomp denial: {replay}");
                assert_eq!(replay["timed_out"], false, "{replay}");
                let paths = replay["refused_paths"].as_array().unwrap();
                assert!(
                    paths.iter().any(|p| p["path"] == secret.to_str().unwrap()
                        && p["errno"] == "EACCES"
                        && p["syscall"].as_str().is_some_and(|s| s.starts_with("open"))),
                    "{replay}"
                );
                // Only what was refused at replay and not while profiled is named.
                assert!(!paths.iter().any(|p| p["path"].as_str().unwrap().ends_with("/allowed.txt")), "{replay}");
            }
        }
        assert_eq!(summary["ok"], false);
        let report = std::fs::read_to_string(out.join("summary.md")).unwrap();
        assert!(report.contains(&format!("refused paths openat {} (EACCES)", secret.display())), "{report}");
    }
}

/// A command that hangs only at replay time is killed at the `--timeout`, with its
/// descendants, and the replay says so.
#[test]
fn a_replay_that_hangs_is_killed_at_the_timeout() {
    for identity in identities("a_replay_that_hangs_is_killed_at_the_timeout") {
        let sandbox = Sandbox::new(&identity);
        let out = out_dir(&sandbox);
        let naps = "4343.5";
        let script = format!("if [ -e marker ]; then t={naps}; else t=0.01; touch marker; fi; sleep $t; exit 0");
        let started = Instant::now();
        let output = profile(
            &sandbox,
            &["-q", "--timeout", "2s", "--out-dir", out.to_str().unwrap(), "--", "sh", "-c", &script],
        );
        assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
        assert_eq!(output.status.code(), Some(1), "{} as {}", explain(&output), identity.describe());
        assert!(text(&output.stderr).contains("timed out"), "{}", explain(&output));
        let index = json(&out.join("index.json"));
        let entry = &index["commands"][0];
        assert_eq!(entry["exit"], 0, "profiled, it did not hang: {entry}");
        for replay in [&entry["replay"], &entry["merged_replay"]] {
            assert_eq!(replay["timed_out"], true, "{replay}");
            assert_eq!(replay["ok"], false, "{replay}");
        }
        assert_eq!(processes_with_arg(naps), 0, "a sleep outlived the replay's timeout");
        let report = std::fs::read_to_string(out.join("summary.md")).unwrap();
        assert!(report.contains("timed out"), "{report}");
    }
}

/// A call the generated filter denies, made only at replay time and ignored (exit 0
/// either way), is counted from the replay's audit log.
#[test]
fn a_replay_reports_a_call_the_filter_refused_even_when_the_command_exits_0() {
    for identity in identities("a_replay_reports_a_call_the_filter_refused_even_when_the_command_exits_0") {
        let sandbox = Sandbox::new(&identity);
        let out = out_dir(&sandbox);
        // The first run only leaves a marker (no write(2) at all); any later run writes.
        let script = "if [ -e marker ]; then echo hi; else touch marker; fi; exit 0";
        for expected in ["", "hi\n"] {
            let plain =
                identity.command("sh").arg("-c").arg(script).current_dir(sandbox.workspace.path()).output().unwrap();
            assert_eq!(plain.status.code(), Some(0), "{}", explain(&plain));
            assert_eq!(text(&plain.stdout), expected, "{}", explain(&plain));
        }
        std::fs::remove_file(sandbox.workspace.path().join("marker")).unwrap();

        let output = profile(&sandbox, &["-q", "--out-dir", out.to_str().unwrap(), "--", "sh", "-c", script]);
        assert_eq!(output.status.code(), Some(1), "{} as {}", explain(&output), identity.describe());
        let profiled = json(&out.join("01-sh.json"));
        assert_eq!(syscall_count(&profiled, "write"), 0, "{profiled}");
        let entry = &json(&out.join("index.json"))["commands"][0];
        for replay in [&entry["replay"], &entry["merged_replay"]] {
            assert_eq!(replay["exit"], 0, "{replay}");
            assert!(replay["refused"]["write"].as_u64().is_some_and(|n| n >= 1), "{replay}");
            assert_eq!(replay["ok"], false, "{replay}");
        }
        assert!(text(&output.stderr).contains("refused write"), "{}", explain(&output));
    }
}

/// On a terminal, a progress line (command i of N, elapsed time, syscalls so far) is
/// drawn and cleared again; written to a pipe, there is none.
#[test]
fn a_terminal_gets_a_progress_line_and_a_pipe_does_not() {
    let sandbox = Sandbox::new(&Identity::Current);
    let list = write_commands(&sandbox, "true\necho hi\n");
    let out = out_dir(&sandbox);
    let capsule = capsule_tests::bin("capsule");
    let line = format!("{} profile {} --out-dir {} --no-verify", capsule.display(), list.display(), out.display());
    // script(1) runs the command on a new pseudo-terminal and copies what it writes.
    let on_terminal = Command::new("script")
        .args(["--quiet", "--return", "--command", &line, "/dev/null"])
        .current_dir(sandbox.workspace.path())
        .env("HOME", sandbox.home.path())
        .env("XDG_CACHE_HOME", sandbox.cache_home())
        .env("PATH", capsule_tests::SYSTEM_PATH)
        .stdin(Stdio::null())
        .output()
        .expect("run script(1)");
    assert!(on_terminal.status.success(), "{}", explain(&on_terminal));
    let screen = text(&on_terminal.stdout);
    for drawn in ["command 1 of 2 [00:00:", "command 2 of 2 [00:00:", "syscalls: echo hi", "\x1b[2K"] {
        assert!(screen.contains(drawn), "{drawn:?} is not on the terminal:\n{screen:?}");
    }
    assert!(screen.contains("capsule profile: "), "the status lines are printed too:\n{screen:?}");

    let piped = profile(&sandbox, &[list.to_str().unwrap(), "--out-dir", out.to_str().unwrap(), "--no-verify"]);
    assert!(piped.status.success(), "{}", explain(&piped));
    let stderr = text(&piped.stderr);
    assert!(!stderr.contains("command 1 of 2") && !stderr.contains('\x1b'), "{stderr:?}");
}
