//! The macOS launch path (`capsule_launch::macos::launch_with`, which `launch` is on
//! macOS) run on Linux with a real compiled macos.sb: the sandbox-exec command line is
//! inspected instead of run, and the command it names is then run for real by
//! `run_sandboxed`, so the status and the log records are real. What only a Mac can
//! show (that Seatbelt enforces the profile) is .github/workflows/macos.yml's.

use capsule_artifacts::Target;
use capsule_artifacts::log::verify::{Verdict, verify};
use capsule_artifacts::manifest::VerifiedArtifact;
use capsule_compiler::front::Format;
use capsule_launch::LaunchOptions;
use capsule_launch::macos::{SANDBOX_EXEC, launch_with, run_sandboxed};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

const POLICY: &str = r#"version: 1
name: macos-launch-test
filesystem:
  read: [/usr, /bin, /lib, /lib64, /etc, "${WORKSPACE}"]
  write: ["${WORKSPACE}"]
  execute: [/usr, /bin]
env:
  pass: [PATH]
  set: { CAPSULE: "1" }
"#;

fn artifact(policy: &str, dir: &Path, target: Target) -> VerifiedArtifact {
    let artifacts = capsule_cli::cache::compile(policy.as_bytes(), Format::Yaml).expect("the policy compiles");
    capsule_cli::cache::store(&artifacts, dir, target).expect("the artifact stores and verifies")
}

struct Setup {
    _tmp: tempfile::TempDir,
    artifact: VerifiedArtifact,
    workspace: PathBuf,
    log: PathBuf,
}

fn setup(policy: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let workspace = tmp.path().join("work space");
    std::fs::create_dir(&workspace).unwrap();
    let artifact = artifact(policy, &tmp.path().join("artifact"), Target::Macos);
    let log = tmp.path().join("state/capsule.log");
    Setup { _tmp: tmp, artifact, workspace, log }
}

fn options(s: &Setup, command: &[&str], log: Option<PathBuf>) -> LaunchOptions {
    LaunchOptions {
        command: command.iter().map(OsString::from).collect(),
        workspace: Some(s.workspace.clone()),
        log,
        ..LaunchOptions::default()
    }
}

/// `run_sandboxed` installs process-wide signal handlers for its command: one at a
/// time, as in the launcher (the tests of this file run in parallel threads).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

type Seen = RefCell<Option<(Vec<OsString>, BTreeMap<OsString, OsString>)>>;

#[test]
fn the_pinned_profile_goes_to_sandbox_exec_with_resolved_parameters_and_the_run_is_logged() {
    let s = setup(POLICY);
    assert_eq!(s.artifact.entry.name, "macos.sb");
    let _serial = serial();
    let seen: Seen = RefCell::new(None);
    let outcome = launch_with(&s.artifact, &options(&s, &["sh", "-c", "exit 3"], Some(s.log.clone())), |argv, env| {
        *seen.borrow_mut() = Some((argv.to_vec(), env.clone()));
        // Run the command sandbox-exec would run (argv[9..]), for a real status.
        run_sandboxed(&argv[9..], env)
    });
    assert_eq!((outcome.exit_code, outcome.failure.as_ref()), (3, None), "{outcome:?}");
    let (argv, env) = seen.into_inner().expect("the command was started");

    let profile = std::fs::read(s.artifact.dir.join("macos.sb")).unwrap();
    assert!(profile.starts_with(b"(version 1)"), "a real SBPL profile");
    assert_eq!(argv[0], OsString::from(SANDBOX_EXEC));
    assert_eq!(argv[1], OsString::from("-p"));
    assert_eq!(argv[2].as_encoded_bytes(), &profile[..], "exactly the pinned bytes");
    let real = |p: &Path| p.canonicalize().unwrap().into_os_string();
    let param = |name: &str, value: OsString| {
        let mut d = OsString::from(format!("{name}="));
        d.push(value);
        [OsString::from("-D"), d]
    };
    let home = PathBuf::from(std::env::var_os("HOME").expect("HOME is set"));
    let tmpdir = std::env::var_os("TMPDIR").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    assert_eq!(argv[3..5], param("WORKSPACE", real(&s.workspace)));
    assert_eq!(argv[5..7], param("HOME", real(&home)));
    assert_eq!(argv[7..9], param("TMPDIR", real(&tmpdir)));
    let command = Path::new(&argv[9]);
    assert!(command.is_absolute() && command.ends_with("sh"), "resolved on the policy's PATH: {command:?}");
    assert_eq!(argv[10..], [OsString::from("-c"), OsString::from("exit 3")]);
    let names: Vec<&str> = env.keys().map(|k| k.to_str().unwrap()).collect();
    assert!(names.iter().all(|n| ["PATH", "CAPSULE"].contains(n)) && names.contains(&"CAPSULE"), "{names:?}");

    let text = std::fs::read_to_string(&s.log).unwrap();
    let start = text.lines().find(|l| l.contains("\"invocation.start\"")).expect("invocation.start");
    let end = text.lines().find(|l| l.contains("\"invocation.end\"")).expect("invocation.end");
    assert!(start.contains(&s.artifact.pin), "{start}");
    assert!(end.contains(&format!("\"invocation\":\"{}\"", outcome.invocation.unwrap())), "{end}");
    assert!(end.contains("\"exit_code\":3"), "{end}");
    assert_eq!(verify(&s.log, &Default::default()).verdict, Verdict::Intact);
}

#[test]
fn a_missing_command_is_recorded_with_127_and_nothing_starts() {
    let s = setup(POLICY);
    let outcome = launch_with(&s.artifact, &options(&s, &["no-such-command-x"], Some(s.log.clone())), |_, _| {
        panic!("nothing may start")
    });
    assert_eq!(outcome.exit_code, capsule_launch::EXIT_NOT_FOUND, "{outcome:?}");
    let text = std::fs::read_to_string(&s.log).unwrap();
    assert_eq!(text.matches("\"invocation.start\"").count(), 1);
    let end = text.lines().find(|l| l.contains("\"invocation.end\"")).expect("invocation.end");
    assert!(end.contains("127") && end.contains("no-such-command-x"), "{end}");
}

#[test]
fn refusals_happen_before_anything_starts() {
    let s = setup(POLICY);
    let refused = |artifact: &VerifiedArtifact, log: Option<PathBuf>, what: &str| {
        let outcome = launch_with(artifact, &options(&s, &["true"], log), |_, _| panic!("nothing may start"));
        assert_eq!(outcome.exit_code, capsule_launch::EXIT_SETUP_FAILURE, "{outcome:?}");
        let message = outcome.failure.unwrap().message;
        assert!(message.contains(what), "{message}");
    };
    // A log the command can write.
    refused(&s.artifact, Some(s.workspace.join("capsule.log")), "lies beneath");
    assert!(!s.workspace.join("capsule.log").exists());
    // A Linux artifact on the macOS path.
    let linux = artifact(POLICY, &s.workspace.join("linux-artifact"), Target::LinuxX86_64);
    refused(&linux, None, "not macos");
    // A policy that lets the command write capsule's state directory (beneath HOME).
    let home_writable = setup(&POLICY.replace(r#"write: ["${WORKSPACE}"]"#, r#"write: ["${WORKSPACE}", "${HOME}"]"#));
    let outcome = launch_with(&home_writable.artifact, &options(&home_writable, &["true"], None), |_, _| {
        panic!("nothing may start")
    });
    assert_eq!(outcome.exit_code, capsule_launch::EXIT_SETUP_FAILURE);
    assert!(outcome.failure.unwrap().message.contains("capsule state directory"));
}

/// `run_sandboxed` starts the command in its own session (as the Linux child's setsid
/// does) with exactly the given environment, and forwards SIGTERM sent to the launcher.
#[test]
#[cfg(target_os = "linux")] // /proc
fn run_sandboxed_starts_a_new_session_and_forwards_sigterm() {
    let _serial = serial();
    let env: BTreeMap<OsString, OsString> = [("ONLY".into(), "this".into())].into();
    let argv = |script: &str| -> Vec<OsString> { vec!["/bin/sh".into(), "-c".into(), script.into()] };
    // Field 6 of /proc/PID/stat is the session id: the shell leads its own.
    let status = run_sandboxed(
        &argv(r#"set -- $(/bin/cat /proc/$$/stat); [ "$6" = "$$" ] || exit 10; [ "$ONLY" = this ] || exit 11; exit 0"#),
        &env,
    )
    .unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    // Without the sandbox-exec front the exit code is the command's own.
    assert_eq!(run_sandboxed(&argv("exit 4"), &env).unwrap().code(), Some(4));
    // The command signals its parent (the launcher); the launcher forwards it back.
    // The pause lets the launcher learn the pid before the signal (the test harness
    // has other threads, which the launcher's signal mask does not cover).
    use std::os::unix::process::ExitStatusExt;
    let status = run_sandboxed(&argv("/bin/sleep 0.3; kill -TERM $PPID; /bin/sleep 5; exit 7"), &env).unwrap();
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
}

/// Network by name on the macOS path: the launcher starts the proxy on 127.0.0.1 of
/// the host, binds its port into the profile (`-D PROXY_PORT=N`, the profile's one
/// TCP rule), points the command at it, and records its connections before
/// `invocation.end`. Seatbelt itself is not run here: the command (curl) runs
/// unsandboxed through the proxy, which is the proxy's part of the launch.
#[test]
fn a_policy_with_domains_gets_the_proxy_and_its_port_in_the_profile() {
    use std::io::{Read, Write};
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server_port = server.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in server.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).map(|n| n == 1).unwrap_or(false) {
                head.push(byte[0]);
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello\n");
        }
    });
    let network = "network:\n  domains: [localhost]\n  proxy: { allow-private: true }\n";
    let policy =
        POLICY.replace("env:\n", &format!("syscalls:\n  allow: [\"@default\", \"@network-io\"]\n{network}env:\n"));
    let s = setup(&policy);
    let profile = std::fs::read_to_string(s.artifact.dir.join("macos.sb")).unwrap();
    assert!(
        profile.contains("(allow network-outbound (remote tcp (string-append \"localhost:\" (param \"PROXY_PORT\"))))"),
        "{profile}"
    );
    let _serial = serial();
    let seen: Seen = RefCell::new(None);
    let url = format!("http://localhost:{server_port}/x");
    let unlisted = format!("http://127.0.0.1:{server_port}/x");
    let script = format!("curl -sS -m 5 {url}; curl -sS -m 5 -o /dev/null -w '%{{http_code}}\\n' {unlisted}");
    let outcome = launch_with(&s.artifact, &options(&s, &["sh", "-c", &script], Some(s.log.clone())), |argv, env| {
        *seen.borrow_mut() = Some((argv.to_vec(), env.clone()));
        let mut env = env.clone();
        env.insert("PATH".into(), "/usr/bin:/bin".into());
        let out = std::process::Command::new(&argv[11]).args(&argv[12..]).env_clear().envs(&env).output()?;
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n403\n", "{out:?}");
        Ok(out.status)
    });
    assert_eq!((outcome.exit_code, outcome.failure.as_ref()), (0, None), "{outcome:?}");
    let (argv, env) = seen.into_inner().unwrap();
    let port_param = argv[10].to_str().unwrap().strip_prefix("PROXY_PORT=").expect("-D PROXY_PORT=N").to_owned();
    assert_eq!(argv[9], OsString::from("-D"));
    assert_eq!(env[&OsString::from("HTTP_PROXY")], OsString::from(format!("http://127.0.0.1:{port_param}")));
    assert_eq!(env[&OsString::from("NO_PROXY")], OsString::new());
    // The proxy is gone with the command.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port_param.parse::<u16>().unwrap())).is_err());

    let text = std::fs::read_to_string(&s.log).unwrap();
    let connections: Vec<&str> = text.lines().filter(|l| l.contains("\"network.connection\"")).collect();
    assert_eq!(connections.len(), 2, "{text}");
    assert!(connections[0].contains("\"verdict\":\"allowed\"") && connections[0].contains("localhost"), "{text}");
    assert!(connections[1].contains("\"reason\":\"not-listed\""), "{text}");
    let end_at = text.find("\"invocation.end\"").unwrap();
    assert!(text.rfind("\"network.connection\"").unwrap() < end_at, "recorded before the end");
    assert_eq!(verify(&s.log, &Default::default()).verdict, Verdict::Intact);
}
