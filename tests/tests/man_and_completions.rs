//! Man pages and shell completions come from the clap definitions of `capsule` and
//! `capsulec` (docs/cli.md); the image installs them (docs/containers.md).

use capsule_tests::{bin, text};
use std::process::Command;

#[test]
fn completions_for_every_shell_name_the_commands() {
    for (binary, command) in [("capsule", "verify"), ("capsulec", "import-oci")] {
        for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
            let out = Command::new(bin(binary)).args(["completions", shell]).output().unwrap();
            assert!(out.status.success(), "{binary} completions {shell}: {}", text(&out.stderr));
            let script = text(&out.stdout);
            assert!(script.contains(binary) && script.contains(command), "{binary} {shell}:\n{script}");
        }
        let bad = Command::new(bin(binary)).args(["completions", "tcsh"]).output().unwrap();
        assert_eq!(bad.status.code(), Some(2), "{binary}: an unknown shell is a usage error");
        assert!(text(&bad.stderr).contains("possible values"), "{}", text(&bad.stderr));
    }
}

#[test]
fn man_pages_cover_every_command() {
    let dir = tempfile::tempdir().unwrap();
    for binary in ["capsule", "capsulec"] {
        let out = Command::new(bin(binary)).arg("man").arg("--out").arg(dir.path()).output().unwrap();
        assert!(out.status.success(), "{binary} man: {}", text(&out.stderr));
    }
    for page in
        ["capsule.1", "capsule-run.1", "capsule-verify.1", "capsule-log-prove.1", "capsulec.1", "capsulec-build.1"]
    {
        let roff = std::fs::read_to_string(dir.path().join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(roff.starts_with(".ie \\n(.g .ds Aq") || roff.contains(".TH"), "{page} is not a man page");
    }
    let run = std::fs::read_to_string(dir.path().join("capsule-run.1")).unwrap();
    assert!(run.contains("workspace") && run.contains("policy"), "capsule-run.1 documents its options");
    // The hidden `man` command documents nothing of its own.
    assert!(!dir.path().join("capsule-man.1").exists() && !dir.path().join("capsulec-man.1").exists());
}
