//! Fail closed: when capsule cannot enforce what the artifact says, or cannot trust the
//! artifact, the command does not run (exit 125). Each test gives a command that would
//! leave a marker file, and checks the marker is absent.

use capsule_tests::{Artifact, EXIT_SETUP_FAILURE, Identity, Sandbox, assert_exit, default_policy, identities, text};
use std::os::unix::fs::PermissionsExt;
use std::process::Output;

#[track_caller]
fn assert_refused(sandbox: &Sandbox, output: &Output, reason: &str) {
    assert_exit(output, EXIT_SETUP_FAILURE);
    let stderr = text(&output.stderr);
    assert!(stderr.contains(reason), "stderr should say {reason:?}:\n{stderr}");
    assert!(!sandbox.marker().exists(), "the command ran although capsule refused");
}

/// The control: the same command under the same artifact runs when nothing is wrong.
fn assert_runs(sandbox: &Sandbox, artifact: &Artifact) {
    assert_exit(&sandbox.launch(artifact, &["--pin", &artifact.pin], &sandbox.touch_marker()), 0);
    assert!(sandbox.marker().exists());
    std::fs::remove_file(sandbox.marker()).unwrap();
}

#[test]
fn a_landlock_abi_the_kernel_lacks_is_125() {
    let policy = format!("{}\nlandlock:\n  abi: 99\n", default_policy());
    let artifact = Artifact::build(&policy);
    for identity in identities("a_landlock_abi_the_kernel_lacks_is_125") {
        let sandbox = Sandbox::new(&identity);
        let policy_file = sandbox.home.path().join("needs-abi-99.yaml");
        std::fs::write(&policy_file, &policy).unwrap();
        std::fs::set_permissions(&policy_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let output = sandbox.run(&["--policy", policy_file.to_str().unwrap()], &sandbox.touch_marker());
        assert_refused(&sandbox, &output, "Landlock ABI 99");

        let output = sandbox.launch(&artifact, &["--pin", &artifact.pin], &sandbox.touch_marker());
        assert_refused(&sandbox, &output, "Landlock ABI 99");
    }
}

#[test]
fn an_unreadable_blob_is_125() {
    for identity in identities("an_unreadable_blob_is_125") {
        // Root reads a mode-000 file anyway: a directory in the blob's place stops everyone.
        let artifact = Artifact::build(&default_policy());
        let sandbox = Sandbox::new(&identity);
        assert_runs(&sandbox, &artifact);
        std::fs::remove_file(artifact.blob()).unwrap();
        std::fs::create_dir(artifact.blob()).unwrap();
        let output = sandbox.launch(&artifact, &["--pin", &artifact.pin], &sandbox.touch_marker());
        assert_refused(&sandbox, &output, "linux-x86_64.bpf");

        if let Identity::User { .. } = identity {
            let artifact = Artifact::build(&default_policy());
            std::fs::set_permissions(artifact.blob(), std::fs::Permissions::from_mode(0o000)).unwrap();
            let output = sandbox.launch(&artifact, &["--pin", &artifact.pin], &sandbox.touch_marker());
            assert_refused(&sandbox, &output, "linux-x86_64.bpf");
        }
    }
}

#[test]
fn a_pin_mismatch_is_125() {
    let artifact = Artifact::build(&default_policy());
    // Another valid pin: a different last digit.
    let mut other = artifact.pin.clone();
    let last = other.pop().unwrap();
    other.push(if last == '0' { '1' } else { '0' });
    for identity in identities("a_pin_mismatch_is_125") {
        let sandbox = Sandbox::new(&identity);
        assert_runs(&sandbox, &artifact);
        let output = sandbox.launch(&artifact, &["--pin", &other], &sandbox.touch_marker());
        assert_refused(&sandbox, &output, &other);
        let output = sandbox.launch(&artifact, &["--pin", "not-a-pin"], &sandbox.touch_marker());
        assert_exit(&output, EXIT_SETUP_FAILURE);
        assert!(!sandbox.marker().exists());
    }
}

#[test]
fn a_tampered_cache_entry_is_rebuilt_not_used() {
    for identity in identities("a_tampered_cache_entry_is_rebuilt_not_used") {
        let sandbox = Sandbox::new(&identity);
        let first = sandbox.run(&["-v"], &["true"]);
        assert_exit(&first, 0);
        assert!(text(&first.stderr).contains(": compiled artifact "), "{}", text(&first.stderr));

        let cached = find_file(&sandbox.cache_home(), "linux-x86_64.bpf").expect("the cached blob");
        let pristine = std::fs::read(&cached).unwrap();
        let mut blob = pristine.clone();
        let at = (blob.len() / 16) * 8 + 4;
        blob[at] ^= 0x01;
        std::fs::write(&cached, &blob).unwrap();

        let second = sandbox.run(&["-v"], &sandbox.touch_marker());
        assert_exit(&second, 0);
        assert!(text(&second.stderr).contains(": compiled artifact "), "rebuilt: {}", text(&second.stderr));
        assert_eq!(std::fs::read(&cached).unwrap(), pristine, "the rebuild restores the blob");
        assert!(sandbox.marker().exists());
    }
}

fn find_file(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        } else if path.file_name().and_then(|n| n.to_str()) == Some(name) {
            return Some(path);
        }
    }
    None
}

/// A policy that lets the command write the compile cache is refused: the command could
/// plant a permissive artifact under another policy's (public) key for a later run.
/// First shown: with write access, a command can replace a cached entry's files.
#[test]
fn a_policy_that_could_write_the_compile_cache_is_refused() {
    for identity in identities("a_policy_that_could_write_the_compile_cache_is_refused") {
        let sandbox = Sandbox::new(&identity);
        assert_exit(&sandbox.run(&[], &["true"]), 0);
        let cached = find_file(&sandbox.cache_home(), "linux-x86_64.bpf").expect("the cached blob");
        // Without the sandbox, the user's own processes can write it: the attack's target.
        assert!(std::fs::OpenOptions::new().append(true).open(&cached).is_ok());

        let policy = std::fs::read_to_string(capsule_tests::workspace_root().join("cli/src/default-policy.yaml"))
            .unwrap()
            .replace("  write: [\"${WORKSPACE}\", /tmp,", "  write: [\"${WORKSPACE}\", \"${HOME}/cache\", /tmp,");
        assert!(policy.contains("${HOME}/cache"), "the default policy's write rule changed");
        let policy_file = sandbox.home.path().join("writes-cache.yaml");
        std::fs::write(&policy_file, policy).unwrap();
        identity.own(&policy_file);
        let output = sandbox.run(&["--policy", policy_file.to_str().unwrap()], &sandbox.touch_marker());
        assert_exit(&output, EXIT_SETUP_FAILURE);
        assert!(text(&output.stderr).contains("write the compile cache"), "{}", text(&output.stderr));
        assert!(!sandbox.marker().exists(), "the command ran");
    }
}

/// The default policy lets the command write its workspace, so it can leave a permissive
/// `capsule.yaml` there for the next `capsule run` in that directory. First shown: the
/// command writes it. Then the next run refuses the untrusted file and nothing runs;
/// once the user trusts it, it is used.
#[test]
fn a_policy_left_in_the_workspace_by_a_command_is_not_used_until_trusted() {
    for identity in identities("a_policy_left_in_the_workspace_by_a_command_is_not_used_until_trusted") {
        let sandbox = Sandbox::new(&identity);
        let planted = "version: 1\\nname: planted\\ndefault: allow\\nfilesystem:\\n  write:\\n    - ${WORKSPACE}\\n";
        let plant = sandbox.run(&[], &["sh", "-c", &format!("printf '{planted}' > capsule.yaml")]);
        assert_exit(&plant, 0);
        let policy = sandbox.workspace.path().join("capsule.yaml");
        assert!(std::fs::read_to_string(&policy).unwrap().contains("default: allow"), "the command wrote it");

        let next = sandbox.run(&[], &sandbox.touch_marker());
        assert_exit(&next, EXIT_SETUP_FAILURE);
        assert!(text(&next.stderr).contains("is not trusted"), "{}", text(&next.stderr));
        assert!(!sandbox.marker().exists(), "the command ran under the planted policy");

        let trust = sandbox.capsule().arg("trust").output().unwrap();
        assert_exit(&trust, 0);
        assert_exit(&sandbox.run(&[], &sandbox.touch_marker()), 0);
        assert!(sandbox.marker().exists(), "a trusted policy is used");
        // An edit needs trusting again, and trusting it revokes the earlier bytes: the
        // command cannot roll the policy back to them.
        let before = std::fs::read_to_string(&policy).unwrap();
        std::fs::write(&policy, before.clone() + "# edited\n").unwrap();
        assert_exit(&sandbox.run(&[], &["true"]), EXIT_SETUP_FAILURE);
        assert_exit(&sandbox.capsule().arg("trust").output().unwrap(), 0);
        assert_exit(&sandbox.run(&[], &["true"]), 0);
        std::fs::write(&policy, before).unwrap();
        assert_exit(&sandbox.run(&[], &["true"]), EXIT_SETUP_FAILURE);
    }
}

/// Trust is for one plain file at one path: a `capsule.yaml` symlink to a policy
/// trusted elsewhere is refused, and so is trusting a path with a newline (it would
/// forge a second line in the store).
#[test]
fn trust_cannot_be_borrowed_through_a_symlink_or_forged_with_a_newline() {
    for identity in identities("trust_cannot_be_borrowed_through_a_symlink_or_forged_with_a_newline") {
        let sandbox = Sandbox::new(&identity);
        let elsewhere = sandbox.home.path().join("project");
        std::fs::create_dir(&elsewhere).unwrap();
        identity.own(&elsewhere);
        let trusted = elsewhere.join("capsule.yaml");
        std::fs::write(&trusted, default_policy()).unwrap();
        identity.own(&trusted);
        assert_exit(&sandbox.capsule().arg("trust").arg(&trusted).output().unwrap(), 0);

        std::os::unix::fs::symlink(&trusted, sandbox.workspace.path().join("capsule.yaml")).unwrap();
        let output = sandbox.run(&[], &sandbox.touch_marker());
        assert_exit(&output, EXIT_SETUP_FAILURE);
        assert!(text(&output.stderr).contains("symlink"), "{}", text(&output.stderr));
        assert!(!sandbox.marker().exists());

        // A FIFO in its place is refused, not waited on.
        std::fs::remove_file(sandbox.workspace.path().join("capsule.yaml")).unwrap();
        let fifo = std::ffi::CString::new(sandbox.workspace.path().join("capsule.yaml").to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a live C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o666) }, 0);
        let output = sandbox.run(&[], &sandbox.touch_marker());
        assert_exit(&output, EXIT_SETUP_FAILURE);
        assert!(text(&output.stderr).contains("not a regular file"), "{}", text(&output.stderr));

        let odd = sandbox.home.path().join("odd\nname");
        std::fs::create_dir(&odd).unwrap();
        identity.own(&odd);
        std::fs::write(odd.join("capsule.yaml"), default_policy()).unwrap();
        identity.own(&odd.join("capsule.yaml"));
        let output = sandbox.capsule().arg("trust").arg(odd.join("capsule.yaml")).output().unwrap();
        assert_exit(&output, 1);
        assert!(text(&output.stderr).contains("control character"), "{}", text(&output.stderr));
    }
}

/// On Linux the launcher applies no Seatbelt profile, but macos.sb is a listed file
/// like any other: the folder runs with it, and a changed macos.sb refuses the whole
/// folder (exit 125), so an unpinned file never sits in a pinned folder.
#[test]
fn macos_sb_is_pinned_and_otherwise_ignored_on_linux() {
    for identity in identities("macos_sb_is_pinned_and_otherwise_ignored_on_linux") {
        let artifact = Artifact::build(&default_policy());
        let profile = artifact.dir().join("macos.sb");
        assert!(profile.exists(), "the default policy targets macos");
        let sandbox = Sandbox::new(&identity);
        assert_runs(&sandbox, &artifact);
        let mut bytes = std::fs::read(&profile).unwrap();
        bytes.extend_from_slice(b"(allow default)\n");
        std::fs::write(&profile, bytes).unwrap();
        let output = sandbox.launch(&artifact, &["--pin", &artifact.pin], &sandbox.touch_marker());
        assert_refused(&sandbox, &output, "macos.sb");
    }
}
