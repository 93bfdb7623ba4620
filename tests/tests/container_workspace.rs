//! `CAPSULE_WORKSPACE_MOUNT`, set by the container image (docs/containers.md): `capsule
//! run` in that folder refuses to start when nothing is mounted on it, and notes a
//! read-only mount. `make docker-test` checks the same in a real container; this runs
//! it on the host, as root and as the unprivileged user (the mounted cases as root, in
//! a private mount namespace).

use capsule_tests::{Sandbox, assert_exit, bin, identities, is_root, text};

#[test]
fn an_unmounted_workspace_is_refused_before_anything_runs() {
    for identity in identities("an_unmounted_workspace_is_refused_before_anything_runs") {
        let sandbox = Sandbox::new(&identity);
        let ran = sandbox.workspace.path().join("ran");
        let refused = sandbox.run_with(&[], &["touch", "ran"], |cmd| {
            cmd.env("CAPSULE_WORKSPACE_MOUNT", sandbox.workspace.path());
        });
        assert_exit(&refused, 125);
        let stderr = text(&refused.stderr);
        assert!(stderr.contains("nothing is mounted on") && stderr.contains("-v \"$(pwd)\":"), "{stderr}");
        assert!(!ran.exists(), "the command ran");

        // Another folder than the one named: not checked.
        let elsewhere = sandbox.run_with(&[], &["touch", "ran"], |cmd| {
            cmd.env("CAPSULE_WORKSPACE_MOUNT", "/workspace-elsewhere");
        });
        assert_exit(&elsewhere, 0);
        assert!(ran.exists());
    }
}

#[test]
fn a_mounted_workspace_runs_and_a_read_only_one_is_noted() {
    if !is_root() {
        eprintln!("a_mounted_workspace_runs_and_a_read_only_one_is_noted: skipped, needs root to bind-mount");
        return;
    }
    let sandbox = Sandbox::new(&identities("a_mounted_workspace_runs_and_a_read_only_one_is_noted")[0]);
    let ws = sandbox.workspace.path();
    for (remount, expect_note, expect_written) in
        [("", false, true), ("mount -o remount,bind,ro \"$1\" \"$1\" && ", true, false)]
    {
        let _ = std::fs::remove_file(ws.join("ran"));
        // cd after mounting: a cwd taken before refers to the folder under the mount.
        let script = format!("mount --bind \"$1\" \"$1\" && {remount}cd \"$1\" && shift && exec \"$@\"");
        let output = std::process::Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script, "sh"])
            .arg(ws)
            .arg(bin("capsule"))
            .args(["run", "--workspace"])
            .arg(ws)
            .args(["--", "sh", "-c", "ls >/dev/null && touch ran || true"])
            .current_dir(ws)
            .env("HOME", sandbox.home.path())
            .env("XDG_CACHE_HOME", sandbox.cache_home())
            .env("CAPSULE_WORKSPACE_MOUNT", ws)
            .output()
            .expect("run unshare");
        assert_exit(&output, 0);
        let stderr = text(&output.stderr);
        assert_eq!(stderr.contains("is mounted read-only"), expect_note, "{remount:?}: {stderr}");
        assert_eq!(ws.join("ran").exists(), expect_written, "{remount:?}: {stderr}");
    }
}
