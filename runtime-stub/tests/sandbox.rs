//! What the command sees under the launcher: environment, rlimits, Landlock, scoping,
//! descriptors and session, checked from inside the command on the real kernel.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod common;

use capsule_artifacts::launch::{LaunchSettings, PortRule, Protocol};
use common::*;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::process::Command;

/// Readable and executable system directories, so programs start under Landlock.
fn system_paths() -> Vec<String> {
    ["/usr", "/bin", "/lib", "/lib64", "/etc"].iter().map(|p| p.to_string()).collect()
}

fn landlocked(read_extra: &[&str], write: &[&str]) -> LaunchSettings {
    let mut settings = open_settings();
    let mut read = system_paths();
    read.extend(read_extra.iter().map(|p| p.to_string()));
    settings.filesystem.read = Some(read);
    settings.filesystem.write = Some(write.iter().map(|p| p.to_string()).collect());
    settings.filesystem.execute = Some(system_paths());
    settings
}

fn sh(cwd: &std::path::Path, artifact: &Artifact, script: &str) -> std::process::Output {
    launch_in(cwd, artifact, &[], &["sh", "-c", script])
}

#[test]
fn only_passed_variables_survive_then_set_applies() {
    let mut settings = open_settings();
    settings.env.pass = vec!["PATH".to_owned(), "CAPSULE_KEEP".to_owned()];
    settings.env.set.insert("CAPSULE_SET".to_owned(), "from-policy".to_owned());
    settings.env.set.insert("CAPSULE_KEEP".to_owned(), "overridden".to_owned());
    let artifact = artifact(settings, &allow_all(), false);
    let output = launcher()
        .env("CAPSULE_SECRET", "leak")
        .env("CAPSULE_KEEP", "kept")
        .arg("--manifest")
        .arg(artifact.manifest())
        .args(["--", "env"])
        .output()
        .unwrap();
    assert_code(&output, 0);
    let mut names: Vec<String> = text(&output.stdout).lines().map(str::to_owned).collect();
    names.sort();
    let path = std::env::var("PATH").unwrap();
    assert_eq!(
        names,
        vec!["CAPSULE_KEEP=overridden".to_owned(), "CAPSULE_SET=from-policy".to_owned(), format!("PATH={path}")]
    );
}

#[test]
fn without_path_the_default_search_path_is_used() {
    let mut settings = open_settings();
    settings.env.pass.clear();
    let artifact = artifact(settings, &allow_all(), false);
    let output = launch(&artifact, &["env"]);
    assert_code(&output, 0);
    assert_eq!(text(&output.stdout), "");
}

#[test]
fn rlimits_are_set_soft_and_hard() {
    let mut settings = open_settings();
    settings.limits.open_files = Some(37);
    settings.limits.file_size_bytes = Some(4096 * 512);
    settings.limits.cpu_seconds = Some(30);
    let artifact = artifact(settings, &allow_all(), false);
    let output = sh(&std::env::temp_dir(), &artifact, "ulimit -n; ulimit -Hn; ulimit -f; ulimit -t");
    assert_code(&output, 0);
    assert_eq!(text(&output.stdout), "37\n37\n4096\n30\n");
}

#[test]
fn writes_outside_the_writable_paths_fail_with_eacces() {
    let workspace = shared_tempdir();
    let outside = shared_tempdir();
    let target = outside.path().join("escaped");
    let artifact = artifact(landlocked(&["${WORKSPACE}"], &["${WORKSPACE}"]), &allow_all(), false);
    let output = sh(workspace.path(), &artifact, &format!("echo x > {}", target.display()));
    assert_ne!(output.status.code(), Some(0));
    assert!(text(&output.stderr).contains("Permission denied"), "{}", text(&output.stderr));
    assert!(!target.exists());
    // The control: the workspace itself is writable.
    assert_code(&sh(workspace.path(), &artifact, "echo x > inside"), 0);
    assert!(workspace.path().join("inside").exists());
}

#[test]
fn reads_outside_the_readable_paths_fail() {
    let workspace = shared_tempdir();
    let secret_dir = shared_tempdir();
    let secret = secret_dir.path().join("secret");
    std::fs::write(&secret, "secret").unwrap();
    let artifact = artifact(landlocked(&["${WORKSPACE}"], &[]), &allow_all(), false);
    let output = sh(workspace.path(), &artifact, &format!("cat {}", secret.display()));
    assert_ne!(output.status.code(), Some(0));
    assert!(text(&output.stderr).contains("Permission denied"), "{}", text(&output.stderr));
    assert!(!text(&output.stdout).contains("secret"));

    // A symlink inside the workspace does not lend its target the workspace's rights.
    std::os::unix::fs::symlink(&secret, workspace.path().join("link")).unwrap();
    let output = sh(workspace.path(), &artifact, "cat link");
    assert_ne!(output.status.code(), Some(0));
    assert!(text(&output.stderr).contains("Permission denied"), "{}", text(&output.stderr));

    // The control: granting the directory makes the same read work.
    let granted = artifact_with_read(secret_dir.path().to_str().unwrap());
    let output = sh(workspace.path(), &granted, "cat link");
    assert_code(&output, 0);
    assert_eq!(text(&output.stdout), "secret");
}

fn artifact_with_read(extra: &str) -> Artifact {
    artifact(landlocked(&["${WORKSPACE}", extra], &[]), &allow_all(), false)
}

#[test]
fn tcp_connect_is_limited_to_the_allowed_ports() {
    let allowed = TcpListener::bind("127.0.0.1:0").unwrap();
    let forbidden = TcpListener::bind("127.0.0.1:0").unwrap();
    let allowed_port = allowed.local_addr().unwrap().port();
    let forbidden_port = forbidden.local_addr().unwrap().port();
    let mut settings = open_settings();
    settings.network.connect = Some(vec![PortRule { protocol: Protocol::Tcp, port: allowed_port }]);
    let artifact = artifact(settings, &allow_all(), false);
    let connect = |port: u16| launch(&artifact, &["bash", "-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{port}")]);
    assert_code(&connect(allowed_port), 0);
    let output = connect(forbidden_port);
    assert_ne!(output.status.code(), Some(0));
    assert!(text(&output.stderr).contains("Permission denied"), "{}", text(&output.stderr));

    // `Some([])`: nothing may be connected to.
    let mut settings = open_settings();
    settings.network.connect = Some(vec![]);
    let closed = common::artifact(settings, &allow_all(), false);
    let output = launch(&closed, &["bash", "-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{allowed_port}")]);
    assert_ne!(output.status.code(), Some(0));
}

#[test]
fn signal_scoping_keeps_the_command_from_signalling_outside_its_domain() {
    let mut outsider = Command::new("sleep").arg("30").spawn().unwrap();
    let script =
        format!("kill -0 $PPID && echo parent-reachable; kill -0 {} && echo outsider-reachable; exit 0", outsider.id());

    let mut scoped = open_settings();
    scoped.landlock.scope = true;
    let output = launch(&artifact(scoped, &allow_all(), false), &["sh", "-c", &script]);
    // The control: without scoping both are reachable.
    let unscoped = launch(&artifact(open_settings(), &allow_all(), false), &["sh", "-c", &script]);
    outsider.kill().unwrap();
    outsider.wait().unwrap();

    assert_code(&output, 0);
    assert_eq!(text(&output.stdout), "", "stderr: {}", text(&output.stderr));
    assert!(text(&output.stderr).contains("Operation not permitted"), "{}", text(&output.stderr));
    assert_eq!(text(&unscoped.stdout), "parent-reachable\noutsider-reachable\n");
}

#[test]
fn inherited_descriptors_are_closed() {
    let file = tempfile::tempfile().unwrap();
    // A number far from those the shell opens itself (its glob reads the directory).
    const INHERITED: i32 = 100;
    // SAFETY: dup2 makes descriptor 100 without FD_CLOEXEC, which the test closes below.
    let inherited = unsafe { libc::dup2(file.as_raw_fd(), INHERITED) };
    assert_eq!(inherited, INHERITED);
    let script = "for fd in /proc/$$/fd/*; do echo ${fd##*/}; done";
    let artifact = artifact(open_settings(), &allow_all(), false);
    let output = launch(&artifact, &["sh", "-c", script]);
    // The control: a plain child does inherit it.
    let plain = Command::new("sh").args(["-c", script]).output().unwrap();
    // SAFETY: closes the descriptor dup'd above.
    unsafe { libc::close(inherited) };
    assert_code(&output, 0);
    let listed: Vec<String> = text(&output.stdout).lines().map(str::to_owned).collect();
    assert!(listed.starts_with(&["0".to_owned(), "1".to_owned(), "2".to_owned()]), "{listed:?}");
    assert!(!listed.contains(&INHERITED.to_string()), "{listed:?}");
    assert!(text(&plain.stdout).lines().any(|l| l == inherited.to_string()), "{}", text(&plain.stdout));
}

#[test]
fn the_command_leads_its_own_session() {
    let artifact = artifact(open_settings(), &allow_all(), false);
    // Fields 1 and 6 of /proc/PID/stat: the pid and the session id ("sh" has no spaces).
    let output =
        launch(&artifact, &["sh", "-c", "read -r pid comm state ppid pgrp sid rest < /proc/$$/stat; echo $pid $sid"]);
    assert_code(&output, 0);
    let stdout = text(&output.stdout);
    let fields: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(fields.len(), 2, "{stdout}");
    assert_eq!(fields[0], fields[1]);
    // Read from /proc rather than getsid(2): in a container whose session leader is outside
    // the PID namespace the session id is 0, which rustix's Pid cannot hold.
    let own_stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let own_sid = own_stat.rsplit_once(')').unwrap().1.split_whitespace().nth(3).unwrap().to_owned();
    assert_ne!(fields[1], own_sid);
}

/// The launcher needs no privilege: as `nobody`, Landlock and seccomp still apply.
#[test]
fn works_unprivileged() {
    if !is_root() {
        // Already unprivileged: the other tests cover it.
        eprintln!("works_unprivileged: not root, the other tests already run unprivileged");
        return;
    }
    let Ok(setpriv) = which("setpriv") else {
        eprintln!("works_unprivileged: skipped, setpriv is not installed");
        return;
    };
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_capsule-launch"));
    let probe = Command::new(&setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "test", "-x"])
        .arg(binary)
        .status()
        .unwrap();
    if !probe.success() {
        eprintln!("works_unprivileged: skipped, nobody cannot execute {}", binary.display());
        return;
    }
    let workspace = shared_tempdir();
    let outside = shared_tempdir();
    // nobody's own HOME: under root's, which nobody cannot search, the launcher cannot
    // check that the policy keeps the command out of capsule's directories, and refuses.
    let home = shared_tempdir();
    let mut settings = landlocked(&["${WORKSPACE}"], &["${WORKSPACE}"]);
    settings.limits.open_files = Some(50);
    let artifact = artifact(settings, &program(RET_KILL_PROCESS, &[83, 258]), false);
    let run = |script: &str| {
        Command::new(&setpriv)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(binary)
            .arg("--manifest")
            .arg(artifact.manifest())
            .args(["--", "sh", "-c", script])
            .env("HOME", home.path())
            .env_remove("XDG_STATE_HOME")
            .env_remove("XDG_CACHE_HOME")
            .current_dir(workspace.path())
            .output()
            .unwrap()
    };
    let output = run("id -u; ulimit -n; echo x > inside");
    assert_code(&output, 0);
    assert_eq!(text(&output.stdout), "65534\n50\n");
    assert!(workspace.path().join("inside").exists());
    let escaped = outside.path().join("escaped");
    let output = run(&format!("echo x > {}", escaped.display()));
    assert_ne!(output.status.code(), Some(0));
    assert!(!escaped.exists());
    assert_code(&run("mkdir made"), 159);
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::split_paths(&std::env::var_os("PATH").ok_or(())?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .ok_or(())
}
