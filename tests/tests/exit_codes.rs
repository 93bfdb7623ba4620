//! Exit codes of `capsule run` and `capsule-launch` (design/cli.md): the command's
//! status; 128+N for signal N (159: the seccomp filter killed it); 125 when capsule
//! failed; 126 when the command cannot be executed; 127 when it is not found.

use capsule_tests::{
    Artifact, Attack, EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND, EXIT_SECCOMP_KILL, EXIT_SETUP_FAILURE, Identity, Sandbox,
    assert_exit, default_policy, identities, text,
};
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::process::Output;

/// The two front doors, both under the built-in default policy.
#[derive(Clone, Copy)]
enum Front<'a> {
    Run,
    Launch(&'a Artifact),
}

impl Front<'_> {
    fn exec(self, sandbox: &Sandbox, command: &[OsString]) -> Output {
        match self {
            Front::Run => sandbox.run(&[], command),
            Front::Launch(artifact) => sandbox.launch(artifact, &["--pin", &artifact.pin], command),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Front::Run => "capsule run",
            Front::Launch(_) => "capsule-launch",
        }
    }
}

/// Every front door, as every identity.
fn each(test: &str, check: impl Fn(Front, &Identity)) {
    let artifact = Artifact::build(&default_policy());
    for identity in identities(test) {
        for front in [Front::Run, Front::Launch(&artifact)] {
            check(front, &identity);
        }
    }
}

fn args(words: &[&str]) -> Vec<OsString> {
    words.iter().map(OsString::from).collect()
}

#[test]
fn the_commands_own_status() {
    each("the_commands_own_status", |front, identity| {
        let output = front.exec(&Sandbox::new(identity), &args(&["sh", "-c", "exit 7"]));
        assert_exit(&output, 7);
        let output = front.exec(&Sandbox::new(identity), &args(&["sh", "-c", "echo ran"]));
        assert_exit(&output, 0);
        assert_eq!(text(&output.stdout), "ran\n", "{}", front.name());
    });
}

#[test]
fn a_signal_is_128_plus_its_number() {
    each("a_signal_is_128_plus_its_number", |front, identity| {
        let output = front.exec(&Sandbox::new(identity), &args(&["sh", "-c", "kill -TERM $$"]));
        assert_exit(&output, 128 + libc::SIGTERM);
    });
}

#[test]
fn a_seccomp_kill_is_159() {
    // The i386 int 0x80 program: the default policy's foreign-arch is kill-process.
    let attack = Attack::new("int80");
    each("a_seccomp_kill_is_159", |front, identity| {
        let command = vec![capsule_tests::LOADER.into(), attack.program.clone().into_os_string()];
        let output = front.exec(&Sandbox::new(identity), &command);
        assert_exit(&output, EXIT_SECCOMP_KILL);
    });
}

#[test]
fn a_policy_whose_default_is_kill_process_gives_159() {
    // Everything a dynamically linked C program needs, and nothing for the keyring:
    // add_key falls to `default: kill-process`.
    let policy = r#"version: 1
name: kill-by-default
default: kill-process
syscalls:
  allow: ["@default", "@basic-io", "@file-system", "@process", "@signal", "@memory", ioctl]
filesystem:
  read: [/usr, /lib, /lib64, /etc, /tmp, "${WORKSPACE}"]
  write: ["${WORKSPACE}"]
  execute: [/usr, /lib, /lib64]
"#;
    let keyring = Attack::new("keyring");
    let command = vec![capsule_tests::LOADER.into(), keyring.program.clone().into_os_string()];
    let artifact = Artifact::build(policy);
    for identity in identities("a_policy_whose_default_is_kill_process_gives_159") {
        let sandbox = Sandbox::new(&identity);
        // capsule run picks up a trusted ./capsule.yaml.
        sandbox.use_policy(policy);
        let output = sandbox.run(&[], &command);
        assert_exit(&output, EXIT_SECCOMP_KILL);
        assert!(!text(&output.stdout).contains("ESCAPED"));
        let output = sandbox.launch(&artifact, &["--pin", &artifact.pin], &command);
        assert_exit(&output, EXIT_SECCOMP_KILL);
        // The same program under the default policy only sees EPERM: the kill is the policy's.
        assert_exit(&Sandbox::new(&identity).run(&[], &command), 1);
    }
}

#[test]
fn a_missing_command_is_127() {
    each("a_missing_command_is_127", |front, identity| {
        let output = front.exec(&Sandbox::new(identity), &args(&["capsule-no-such-command"]));
        assert_exit(&output, EXIT_NOT_FOUND);
        let output = front.exec(&Sandbox::new(identity), &args(&["/usr/bin/capsule-no-such-command"]));
        assert_exit(&output, EXIT_NOT_FOUND);
    });
}

#[test]
fn a_file_that_cannot_be_executed_is_126() {
    each("a_file_that_cannot_be_executed_is_126", |front, identity| {
        let sandbox = Sandbox::new(identity);
        // A script with its interpreter, but no execute bit.
        let script = sandbox.workspace.path().join("not-executable.sh");
        std::fs::write(&script, "#!/bin/sh\ntouch ran\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
        let output = front.exec(&sandbox, &[script.into_os_string()]);
        assert_exit(&output, EXIT_CANNOT_EXECUTE);
        assert!(!sandbox.workspace.path().join("ran").exists());
        // A directory.
        let output = front.exec(&sandbox, &args(&["/usr/bin"]));
        assert_exit(&output, EXIT_CANNOT_EXECUTE);
    });
}

#[test]
fn a_bad_policy_is_125_with_the_diagnostic_on_stderr() {
    for identity in identities("a_bad_policy_is_125_with_the_diagnostic_on_stderr") {
        let sandbox = Sandbox::new(&identity);
        let policy = sandbox.home.path().join("bad.yaml");
        std::fs::write(&policy, "version: 1\nname: bad\ndefault: explode\n").unwrap();
        std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o644)).unwrap();
        let policy_arg = policy.to_str().unwrap();
        let output = sandbox.run(&["--policy", policy_arg], &sandbox.touch_marker());
        assert_exit(&output, EXIT_SETUP_FAILURE);
        let stderr = text(&output.stderr);
        // The rendered diagnostic: file:line:col and the offending word.
        assert!(stderr.contains(&format!("{policy_arg}:3:")), "{stderr}");
        assert!(stderr.contains("explode"), "{stderr}");
        assert!(!sandbox.marker().exists(), "the command must not run");
    }
}

#[test]
fn a_tampered_artifact_is_125() {
    for identity in identities("a_tampered_artifact_is_125") {
        let artifact = Artifact::build(&default_policy());
        let sandbox = Sandbox::new(&identity);
        // Untouched, it runs.
        assert_exit(&sandbox.launch(&artifact, &["--pin", &artifact.pin], &sandbox.touch_marker()), 0);
        std::fs::remove_file(sandbox.marker()).unwrap();

        let mut blob = std::fs::read(artifact.blob()).unwrap();
        // The k field of an instruction in the middle of the program.
        let at = (blob.len() / 16) * 8 + 4;
        blob[at] ^= 0x01;
        std::fs::write(artifact.blob(), &blob).unwrap();
        for extra in [vec!["--pin", artifact.pin.as_str()], vec![]] {
            let output = sandbox.launch(&artifact, &extra, &sandbox.touch_marker());
            assert_exit(&output, EXIT_SETUP_FAILURE);
            let stderr = text(&output.stderr);
            assert!(stderr.contains("linux-x86_64.bpf"), "the message names the file: {stderr}");
            assert!(!sandbox.marker().exists(), "the command must not run ({extra:?})");
        }
    }
}
