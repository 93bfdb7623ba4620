//! What the launcher writes for each invocation, where, and what it refuses: real
//! `capsule run` and `capsule-launch` processes.

use std::os::unix::fs::PermissionsExt;

use capsule_tests::audit_support::{AuditSandbox, Programs, assert_ok, of_kind, records};
use capsule_tests::{Identity, Sandbox, bin, current_uid, identities, is_root, text};

#[test]
fn an_invocation_is_recorded_with_start_end_and_a_checkpoint_in_the_per_user_log() {
    let sandbox = AuditSandbox::new();
    let output = sandbox.run(&[], &["/bin/sh", "-c", "exit 7"]);
    assert_eq!(output.status.code(), Some(7), "{}", text(&output.stderr));

    // The default log is in XDG_STATE_HOME, in a private directory, not in the workspace.
    let log = sandbox.log();
    let mode = std::fs::metadata(log.parent().unwrap()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    assert!(!sandbox.workspace().join("capsule.log").exists());

    let all = records(&log);
    let kinds: Vec<&str> = all.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["log.genesis", "invocation.start", "invocation.end", "checkpoint"]);
    let start = &all[1]["data"];
    assert_eq!(start["argv"], serde_json::json!(["/bin/sh", "-c", "exit 7"]));
    assert_eq!(start["cwd"], sandbox.workspace().canonicalize().unwrap().to_str().unwrap());
    assert_eq!(start["policy"], "capsule-default");
    assert_eq!(start["manifest_pin"].as_str().unwrap().len(), 64);
    assert_eq!(start["uid"].as_u64(), Some(u64::from(capsule_tests::current_uid())));
    assert!(start["pid"].as_u64().unwrap() > 0 && start["time_ns"].as_str().unwrap().len() >= 19);
    let end = &all[2]["data"];
    assert_eq!(end["invocation"], "1");
    assert_eq!(end["exit_code"], 7);
    for field in ["duration_ns", "user_time_us", "sys_time_us", "max_rss_kib", "time_ns"] {
        assert!(end[field].as_str().is_some_and(|v| v.parse::<u64>().is_ok()), "{field}: {end}");
    }
    assert!(end["max_rss_kib"].as_str().unwrap().parse::<u64>().unwrap() > 0);
    assert_eq!(all[3]["data"]["size"], "3");
    let (code, report) = sandbox.verify(&log, &[]);
    assert_eq!(code, 0, "{report}");
    // `capsule verify` without a file checks the same default log.
    let plain = sandbox.capsule().arg("verify").output().unwrap();
    assert_ok(&plain);
    assert!(text(&plain.stdout).contains(log.to_str().unwrap()), "{}", text(&plain.stdout));
}

/// `user` in `invocation.start`, for each run of `capsule run true` in `sandbox`.
fn recorded_users(sandbox: &Sandbox) -> Vec<(serde_json::Value, serde_json::Value)> {
    let log = sandbox.home.path().join(".local/state/capsule/capsule.log");
    let all = records(&log);
    of_kind(&all, "invocation.start").iter().map(|r| (r["data"]["uid"].clone(), r["data"]["user"].clone())).collect()
}

/// Next to the uid, the record names the user: `USER` when the caller set it, else
/// the password database's name for the uid (a container sets no `USER`), and null for
/// a uid with no entry, whose uid is still recorded.
#[test]
fn the_invocation_names_its_user_from_user_or_the_password_database() {
    for identity in identities("the_invocation_names_its_user_from_user_or_the_password_database") {
        let (uid, name) = match &identity {
            Identity::Current => {
                let id = std::process::Command::new("id").arg("-un").output().unwrap();
                (current_uid(), text(&id.stdout).trim().to_owned())
            }
            Identity::User { uid, name, .. } => (*uid, name.clone()),
        };
        let sandbox = Sandbox::new(&identity);
        for user in [None, Some(""), Some("set-by-the-caller")] {
            let output = sandbox.run_with(&[], &["/bin/true"], |cmd| {
                cmd.env_remove("XDG_STATE_HOME");
                match user {
                    Some(user) => cmd.env("USER", user),
                    None => cmd.env_remove("USER"),
                };
            });
            assert_ok(&output);
        }
        let uid = serde_json::json!(uid);
        assert_eq!(
            recorded_users(&sandbox),
            [
                (uid.clone(), serde_json::json!(name)),
                (uid.clone(), serde_json::json!(name)),
                (uid, serde_json::json!("set-by-the-caller")),
            ],
            "as {}",
            identity.describe()
        );
    }
    if !is_root() {
        eprintln!(
            "the_invocation_names_its_user_from_user_or_the_password_database: SKIPPED a uid with no entry (needs root)"
        );
        return;
    }
    // `docker run --user 54321:54321`: no passwd entry, no USER.
    let nobody = 54_321;
    assert!(
        !std::process::Command::new("getent").args(["passwd", &nobody.to_string()]).status().unwrap().success(),
        "uid {nobody} has a passwd entry here"
    );
    let identity = Identity::User { name: "(no entry)".to_owned(), uid: nobody, gid: nobody };
    let sandbox = Sandbox::new(&identity);
    let output = std::process::Command::new("setpriv")
        .args([format!("--reuid={nobody}"), format!("--regid={nobody}"), "--clear-groups".to_owned(), "--".to_owned()])
        .arg(bin("capsule"))
        .args(["run", "--workspace"])
        .arg(sandbox.workspace.path())
        .args(["--", "/bin/true"])
        .current_dir(sandbox.workspace.path())
        .env_remove("USER")
        .env_remove("XDG_STATE_HOME")
        .env("HOME", sandbox.home.path())
        .env("XDG_CACHE_HOME", sandbox.cache_home())
        .env("PATH", capsule_tests::SYSTEM_PATH)
        .output()
        .unwrap();
    assert_ok(&output);
    assert_eq!(recorded_users(&sandbox), [(serde_json::json!(nobody), serde_json::Value::Null)]);
}

#[test]
fn signals_seccomp_kills_and_launch_failures_are_recorded_in_the_end() {
    let sandbox = AuditSandbox::new();
    let killed = sandbox.run(&[], &["/bin/sh", "-c", "kill -TERM $$"]);
    assert_eq!(killed.status.code(), Some(128 + 15));
    let missing = sandbox.run(&[], &["no-such-command-here"]);
    assert_eq!(missing.status.code(), Some(127));

    let policy = std::fs::read_to_string(capsule_tests::workspace_root().join("cli/src/default-policy.yaml")).unwrap();
    let kill_rule = "    - bpf\n";
    assert!(policy.contains(kill_rule));
    let policy = policy.replace(kill_rule, "    - bpf\n    - getppid: { action: kill-process }\n");
    sandbox.use_policy(&policy);
    const GETPPID: &str = "#include <unistd.h>\nint main(void) { return getppid() > 0; }\n";
    let sigsys = sandbox.run(&[], &Programs::get().command("getppid", GETPPID, &[]));
    assert_eq!(sigsys.status.code(), Some(159), "{}", text(&sigsys.stderr));

    let all = records(&sandbox.log());
    let ends = of_kind(&all, "invocation.end");
    assert_eq!(ends.len(), 3);
    assert_eq!(ends[0]["data"]["signal"], 15);
    assert_eq!(ends[1]["data"]["launch_failed"], 127);
    assert!(ends[1]["data"]["error"].as_str().unwrap().contains("no-such-command-here"), "{}", ends[1]);
    assert_eq!(ends[2]["data"]["signal"], 31);
    assert_eq!(ends[2]["data"]["seccomp_kill"], true);
    assert_eq!(of_kind(&all, "checkpoint").len(), 3, "a checkpoint ends every invocation");
}

#[test]
fn the_command_holds_no_descriptor_to_the_log() {
    let sandbox = AuditSandbox::new();
    let output = sandbox.run(&[], &["/bin/ls", "-l", "/proc/self/fd/"]);
    assert_ok(&output);
    let listing = text(&output.stdout);
    assert!(listing.lines().count() >= 4, "ls saw its descriptors: {listing}");
    assert!(!listing.contains("capsule.log") && !listing.contains("/state/"), "{listing}");
    assert!(sandbox.log().exists());
    // Through capsule-launch too.
    let artifact = build_default_artifact();
    let log = sandbox.state_home().join("launch.log");
    let output = std::process::Command::new(bin("capsule-launch"))
        .current_dir(sandbox.workspace())
        .arg("--manifest")
        .arg(artifact.path())
        .arg("--log")
        .arg(&log)
        .args(["--", "/bin/ls", "-l", "/proc/self/fd/"])
        .output()
        .unwrap();
    assert_ok(&output);
    assert!(!text(&output.stdout).contains("launch.log"), "{}", text(&output.stdout));
    assert_eq!(of_kind(&records(&log), "invocation.end").len(), 1);
}

/// `capsulec build` of the default policy into a fresh folder.
fn build_default_artifact() -> tempfile::TempDir {
    let dir = capsule_tests::outside_dir("capsule-artifact-");
    let policy = capsule_tests::workspace_root().join("cli/src/default-policy.yaml");
    let output = std::process::Command::new(bin("capsulec"))
        .arg("build")
        .arg(policy)
        .arg("-o")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_ok(&output);
    dir
}

#[test]
fn a_log_the_command_could_write_is_refused_and_nothing_runs() {
    let sandbox = AuditSandbox::new();
    let marker = sandbox.workspace().join("marker");
    let touch = ["/usr/bin/touch", marker.to_str().unwrap()];
    let in_workspace = sandbox.workspace().join("audit.log");
    let in_tmp = format!("/tmp/capsule-audit-{}.log", std::process::id());
    for log in [in_workspace.to_str().unwrap(), &in_tmp, "relative.log"] {
        let output = sandbox.run(&["--log", log], &touch);
        assert_eq!(output.status.code(), Some(125), "{log}: {}", text(&output.stderr));
        assert!(
            text(&output.stderr).contains("which the policy lets the command read or write"),
            "{}",
            text(&output.stderr)
        );
        assert!(!marker.exists(), "{log}: the command ran");
    }
    assert!(!in_workspace.exists() && !std::path::Path::new(&in_tmp).exists());

    // The policy's own `audit: log:` is checked the same way.
    let policy = std::fs::read_to_string(capsule_tests::workspace_root().join("cli/src/default-policy.yaml")).unwrap();
    let log_rule = "  log: capsule.log ";
    assert!(policy.contains(log_rule), "the default policy's audit section changed");
    let in_policy = policy.replace(log_rule, "  log: ${WORKSPACE}/capsule.log ");
    sandbox.use_policy(&in_policy);
    let output = sandbox.run(&[], &touch);
    assert_eq!(output.status.code(), Some(125), "{}", text(&output.stderr));
    assert!(!marker.exists() && !sandbox.workspace().join("capsule.log").exists());

    // A policy that does not restrict writes cannot keep the command off the log.
    let write_rule = policy.lines().find(|l| l.trim_start().starts_with("write:")).expect("a write rule");
    let unrestricted = policy.replace(&format!("{write_rule}\n"), "");
    sandbox.use_policy(&unrestricted);
    let output = sandbox.run(&[], &touch);
    assert_eq!(output.status.code(), Some(125), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("does not restrict writes"), "{}", text(&output.stderr));
    assert!(!marker.exists());
    // Refused before the launch: recorded as refused, never as started.
    let all = records(&sandbox.log());
    assert!(of_kind(&all, "invocation.start").is_empty(), "nothing ran: {all:?}");
    let refused = of_kind(&all, "invocation.refused");
    assert_eq!(refused.len(), 1, "{all:?}");
    assert!(refused[0]["data"]["reason"].as_str().unwrap().contains("does not restrict writes"));
}

#[test]
fn checkpoints_are_signed_with_the_configured_key_and_proofs_link_them() {
    let sandbox = AuditSandbox::new();
    let keys = tempfile::tempdir().unwrap();
    let prefix = keys.path().join("audit");
    assert_ok(&sandbox.capsule().arg("keygen").arg("--out").arg(&prefix).output().unwrap());
    let run = |command: &[&str]| {
        let mut cmd = sandbox.capsule();
        cmd.env("CAPSULE_LOG_SIGNING_KEY", prefix.with_extension("key"));
        cmd.arg("run").arg("--workspace").arg(sandbox.workspace()).arg("--").args(command);
        assert_ok(&cmd.output().unwrap());
    };
    run(&["/bin/true"]);
    let first = keys.path().join("first.checkpoint");
    sandbox.save_checkpoint(&sandbox.log(), &first);
    run(&["/bin/echo", "two"]);
    let second = keys.path().join("second.checkpoint");
    sandbox.save_checkpoint(&sandbox.log(), &second);

    let public = prefix.with_extension("pub");
    let (code, report) = sandbox
        .verify(&sandbox.log(), &["--public-key", public.to_str().unwrap(), "--checkpoint", first.to_str().unwrap()]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["signed_checkpoints"], 2);
    assert_eq!(report["unsigned_tail"], 0);

    let prove =
        |args: &[&str]| sandbox.capsule().args(["log", "prove"]).arg(sandbox.log()).args(args).output().unwrap();
    assert_ok(&prove(&["--from", first.to_str().unwrap(), "--to", second.to_str().unwrap()]));
    assert_ok(&prove(&["--record", "1", "--checkpoint", first.to_str().unwrap()]));
    let out_of_range = prove(&["--record", "6", "--checkpoint", first.to_str().unwrap()]);
    assert_ne!(out_of_range.status.code(), Some(0), "record 6 came after the first checkpoint");

    // A bad key file stops the launch before anything runs.
    let mut cmd = sandbox.capsule();
    cmd.env("CAPSULE_LOG_SIGNING_KEY", &public).args(["run", "--", "/bin/true"]);
    let output = cmd.output().unwrap();
    assert_eq!(output.status.code(), Some(125), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("signing key"), "{}", text(&output.stderr));
}

/// A command refused before anything runs (an artifact that does not verify, a policy
/// with errors) is evidence too: `invocation.refused` says who asked for what and why.
#[test]
fn refused_invocations_are_recorded() {
    let sandbox = AuditSandbox::new();
    let marker = sandbox.workspace().join("marker");
    let touch = ["/usr/bin/touch", marker.to_str().unwrap()];

    // capsule-launch with a tampered blob: the pin still matches the manifest, but the
    // manifest's hash of the blob does not.
    let artifact = build_default_artifact();
    let pin = blake3_hex(&std::fs::read(artifact.path().join("manifest.json")).unwrap());
    let blob = artifact.path().join("linux-x86_64.bpf");
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&blob, bytes).unwrap();
    let log = sandbox.state_home().join("launch.log");
    let output = std::process::Command::new(bin("capsule-launch"))
        .current_dir(sandbox.workspace())
        .arg("--manifest")
        .arg(artifact.path())
        .args(["--pin", &pin, "--log"])
        .arg(&log)
        .arg("--")
        .args(touch)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(125), "{}", text(&output.stderr));
    assert!(!marker.exists(), "the command ran");
    let all = records(&log);
    let kinds: Vec<&str> = all.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["log.genesis", "invocation.refused", "checkpoint"]);
    let refused = &all[1]["data"];
    assert_eq!(refused["argv"], serde_json::json!(touch));
    assert!(refused["reason"].as_str().unwrap().contains("linux-x86_64.bpf hashes to"), "{refused}");
    assert_eq!(refused["expected_pin"], pin.as_str());
    assert_eq!(refused["source"], artifact.path().to_str().unwrap());
    assert_eq!(refused["uid"].as_u64(), Some(u64::from(capsule_tests::current_uid())));
    let (code, report) = sandbox.verify(&log, &[]);
    assert_eq!(code, 0, "{report}");

    // capsule run with a policy that has errors: to the default log.
    std::fs::write(sandbox.workspace().join("capsule.yaml"), "version: 1\nsyscalls:\n  allow: [no_such_call]\n")
        .unwrap();
    let output = sandbox.run(&[], &touch);
    assert_eq!(output.status.code(), Some(125), "{}", text(&output.stderr));
    assert!(!marker.exists(), "the command ran");
    let all = records(&sandbox.log());
    let refused = of_kind(&all, "invocation.refused");
    assert_eq!(refused.len(), 1, "{all:?}");
    assert_eq!(refused[0]["data"]["reason"], "refusing to run: ./capsule.yaml has errors");
    assert_eq!(refused[0]["data"]["source"], "./capsule.yaml");
    assert_eq!(refused[0]["data"]["expected_pin"], serde_json::Value::Null);

    // A policy that cannot be read at all.
    let output = sandbox.run(&["--policy", "missing.yaml"], &touch);
    assert_eq!(output.status.code(), Some(125), "{}", text(&output.stderr));
    let all = records(&sandbox.log());
    let refused = of_kind(&all, "invocation.refused");
    assert_eq!(refused.len(), 2, "{all:?}");
    assert!(refused[1]["data"]["reason"].as_str().unwrap().contains("cannot read the policy missing.yaml"));
    assert!(!marker.exists(), "the command ran");
    let (code, report) = sandbox.verify(&sandbox.log(), &[]);
    assert_eq!(code, 0, "{report}");
}

fn blake3_hex(bytes: &[u8]) -> String {
    capsule_artifacts::manifest::Manifest::pin(bytes)
}

/// From the home directory, the default log would lie in the writable workspace: the
/// refusal says why and what to do instead.
#[test]
fn running_from_home_is_refused_with_a_hint() {
    let home = capsule_tests::outside_dir("capsule-home-");
    let marker = home.path().join("marker");
    let output = std::process::Command::new(bin("capsule"))
        .current_dir(home.path())
        .env("HOME", home.path())
        .env_remove("XDG_STATE_HOME")
        .env_remove("CAPSULE_LOG_SIGNING_KEY")
        .args(["run", "--", "/usr/bin/touch"])
        .arg(&marker)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(125), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("the workspace is your home directory"), "{}", text(&output.stderr));
    assert!(!marker.exists(), "the command ran");
}
