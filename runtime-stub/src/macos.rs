//! macOS: the command runs under the artifact's `macos.sb` through
//! `/usr/bin/sandbox-exec`, by absolute path (never through PATH), with the three
//! profile parameters bound to resolved paths: Seatbelt compares resolved paths, so
//! `/var/folders/...` must be passed as `/private/var/folders/...`.
//!
//! The profile goes to sandbox-exec as text (`-p`), the very bytes the manifest's pin
//! was checked against: with `-f PATH`, sandbox-exec would read the file again, after
//! the check, and a file swapped in between would be applied unchecked.
//!
//! The argument vector, the log's protection and the invocation records are built
//! here on every platform (and tested on Linux); only the spawn and `launch`, which
//! ties them together, are macOS code. This crate links seccompiler and landlock,
//! which build on Linux only, so `capsule run` and `capsule-launch` do not reach
//! `launch` yet: see docs/macos.md ("The launcher on macOS").

use crate::paths::PathVars;
use capsule_artifacts::launch::LaunchSettings;
use capsule_artifacts::log::record::{InvocationEnd, InvocationStart, Record, unix_time_ns};
use capsule_artifacts::log::writer::Durability;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Instant, SystemTime};

/// Where macOS keeps sandbox-exec. Absolute: a PATH entry must not choose the sandbox.
pub const SANDBOX_EXEC: &str = "/usr/bin/sandbox-exec";

/// The values of `(param "WORKSPACE")`, `(param "HOME")` and `(param "TMPDIR")`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileParams {
    pub workspace: PathBuf,
    pub home: PathBuf,
    pub tmpdir: PathBuf,
}

impl ProfileParams {
    /// Resolve the launch's variables as the kernel will report them to Seatbelt.
    /// A variable that does not resolve (HOME unset, a missing TMPDIR) is an error:
    /// an unbound parameter would make the profile fail to load or match nothing.
    pub fn resolve(vars: &PathVars) -> Result<ProfileParams, String> {
        let real = |what: &str, p: &Path| {
            p.canonicalize().map_err(|e| format!("{what} {} cannot be resolved: {e}", p.display()))
        };
        let home = vars.home.as_deref().ok_or("HOME is not set; the macOS profile needs it")?;
        Ok(ProfileParams {
            workspace: real("the workspace", &vars.workspace)?,
            home: real("HOME", home)?,
            tmpdir: real("TMPDIR", &vars.tmpdir)?,
        })
    }
}

/// The largest profile passed on the command line; far above any compiled profile (a
/// few KiB) and far below macOS's ARG_MAX (1 MiB).
pub const MAX_PROFILE_BYTES: usize = 256 << 10;

/// `sandbox-exec -p PROFILE -D WORKSPACE=... -D HOME=... -D TMPDIR=... COMMAND ARGS...`,
/// `profile` being the pinned macos.sb as verified. `command` must be absolute
/// (resolved on the clean PATH by the caller), so it can never be read as an option
/// of sandbox-exec.
pub fn sandbox_exec_argv(
    profile: &[u8],
    params: &ProfileParams,
    command: &Path,
    args: &[OsString],
) -> Result<Vec<OsString>, String> {
    if !command.is_absolute() {
        return Err(format!("{} is not an absolute path", command.display()));
    }
    let profile = std::str::from_utf8(profile).map_err(|_| "macos.sb is not UTF-8".to_owned())?;
    if profile.len() > MAX_PROFILE_BYTES || profile.contains('\0') {
        return Err(format!("macos.sb is larger than {MAX_PROFILE_BYTES} bytes or holds NUL"));
    }
    let mut argv: Vec<OsString> = vec![SANDBOX_EXEC.into(), "-p".into(), profile.into()];
    for (name, value) in [("WORKSPACE", &params.workspace), ("HOME", &params.home), ("TMPDIR", &params.tmpdir)] {
        let mut d = OsString::from(format!("{name}="));
        d.push(value);
        argv.push("-D".into());
        argv.push(d);
    }
    argv.push(command.into());
    argv.extend(args.iter().cloned());
    Ok(argv)
}

/// Refuses a log the command could reach, as on Linux: writes must be restricted
/// (`filesystem: write:`), and the log must lie beneath no path the policy lets the
/// command read or write (resolved: the same files Seatbelt compares). Returns the
/// resolved log path.
pub fn protected_log(log: &Path, settings: &LaunchSettings, vars: &PathVars) -> Result<PathBuf, String> {
    let resolved = crate::paths::resolve_existing(log).map_err(|e| format!("the audit log path {e}"))?;
    let fs = &settings.filesystem;
    let Some(write) = &fs.write else {
        return Err(format!(
            "the policy does not restrict writes (no `filesystem: write:`), so the command could rewrite the audit log {}",
            resolved.display()
        ));
    };
    for rule in write.iter().chain(fs.read.iter().flatten()) {
        let granted = vars.resolve(rule)?;
        let granted = granted.canonicalize().unwrap_or(granted);
        if resolved.starts_with(&granted) {
            return Err(format!(
                "the audit log {} lies beneath {}, which the policy lets the command read or write",
                resolved.display(),
                granted.display()
            ));
        }
    }
    Ok(resolved)
}

/// Runs `spawn` (on macOS, [`run_sandboxed`]) between the invocation's
/// `invocation.start`, synced before anything runs, and its `invocation.end` with a
/// checkpoint, as the Linux launcher records them. Returns the command's status and
/// the invocation's seq. What macOS cannot give is not invented: no syscall records
/// (Seatbelt writes its denials to the unified log, not to the parent) and no CPU
/// time or memory figures (zero in the record).
pub fn run_recorded(
    log: &Path,
    policy: &str,
    pin: &str,
    command: &[OsString],
    spawn: impl FnOnce() -> std::io::Result<ExitStatus>,
) -> Result<(ExitStatus, u64), String> {
    use capsule_artifacts::log::ExitStatus as Logged;
    let mut writer = crate::audit::open_log(log)?;
    let (argv, cwd) = crate::audit::argv_and_cwd(command);
    let start = InvocationStart::now(argv, cwd, policy.to_owned(), pin.to_owned());
    let invocation = writer
        .append(&Record::from(&start), Durability::Sync)
        .map_err(|e| format!("cannot write to the audit log: {e}"))?
        .seq;
    let started = Instant::now();
    let ran = spawn();
    let (status, error) = match &ran {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => (Logged::Code(code), None),
            (None, Some(signal)) => (Logged::Signal(signal), None),
            (None, None) => (Logged::LaunchFailed(crate::EXIT_SETUP_FAILURE), Some("no exit status".to_owned())),
        },
        Err(e) => (Logged::LaunchFailed(crate::EXIT_SETUP_FAILURE), Some(format!("cannot start sandbox-exec: {e}"))),
    };
    let end = InvocationEnd {
        invocation,
        status,
        error: error.clone(),
        duration_ns: u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
        user_time_us: 0,
        sys_time_us: 0,
        max_rss_kib: 0,
        time_ns: unix_time_ns(SystemTime::now()),
    };
    writer
        .append(&Record::from(&end), Durability::Buffered)
        .and_then(|_| writer.checkpoint(Durability::Sync))
        .map_err(|e| format!("cannot write the end of invocation {invocation} to the audit log: {e}"))?;
    match (ran, error) {
        (Ok(s), None) => Ok((s, invocation)),
        (_, e) => Err(e.unwrap_or_default()),
    }
}

/// Run the command under the profile and wait for it. The environment is exactly
/// `env`.
#[cfg(target_os = "macos")]
pub fn run_sandboxed(
    argv: &[OsString],
    env: &std::collections::BTreeMap<OsString, OsString>,
) -> std::io::Result<ExitStatus> {
    let (program, rest) = argv.split_first().ok_or(std::io::ErrorKind::InvalidInput)?;
    std::process::Command::new(program).args(rest).env_clear().envs(env).status()
}

/// `capsule-launch` on macOS: the pinned macos.sb (loaded with `Target::Macos`),
/// the command resolved on the policy's PATH, the parameters resolved, and the run
/// recorded when there is a log. Limits are not applied (no setrlimit here yet).
#[cfg(target_os = "macos")]
pub fn launch(
    artifact: &capsule_artifacts::manifest::VerifiedArtifact,
    options: &crate::LaunchOptions,
) -> Result<ExitStatus, String> {
    if artifact.target != capsule_artifacts::Target::Macos {
        return Err(format!("the artifact loaded is for {}, not macos", artifact.target));
    }
    let settings = artifact.launch();
    let env = crate::policy_env(settings);
    let (program, args) = options.command.split_first().ok_or("no command to run")?;
    let exec = crate::command::resolve(program, env.get(std::ffi::OsStr::new("PATH")).map(OsString::as_os_str))
        .map_err(|f| f.message)?;
    let vars = PathVars::from_env(options.workspace.as_deref())?;
    let params = ProfileParams::resolve(&vars)?;
    let argv = sandbox_exec_argv(&artifact.blob, &params, &exec, args)?;
    match &options.log {
        None => run_sandboxed(&argv, &env).map_err(|e| format!("cannot start {SANDBOX_EXEC}: {e}")),
        Some(log) => {
            let log = protected_log(log, settings, &vars)?;
            let policy = &artifact.manifest.policy.name;
            run_recorded(&log, policy, &artifact.pin, &options.command, || run_sandboxed(&argv, &env)).map(|(s, _)| s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_names_sandbox_exec_by_absolute_path_and_binds_the_three_parameters() {
        let params = ProfileParams {
            workspace: "/Users/u/w s".into(),
            home: "/Users/u".into(),
            tmpdir: "/private/var/folders/x/T".into(),
        };
        let profile = b"(version 1)\n(deny default)\n";
        let argv = sandbox_exec_argv(profile, &params, Path::new("/bin/cat"), &["-n".into()]).unwrap();
        let text: Vec<&str> = argv.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            text,
            [
                "/usr/bin/sandbox-exec",
                "-p",
                "(version 1)\n(deny default)\n",
                "-D",
                "WORKSPACE=/Users/u/w s",
                "-D",
                "HOME=/Users/u",
                "-D",
                "TMPDIR=/private/var/folders/x/T",
                "/bin/cat",
                "-n"
            ]
        );
        assert!(sandbox_exec_argv(profile, &params, Path::new("cat"), &[]).is_err());
        assert!(sandbox_exec_argv(b"\xff", &params, Path::new("/bin/cat"), &[]).is_err());
        assert!(sandbox_exec_argv(b"(version 1)\0", &params, Path::new("/bin/cat"), &[]).is_err());
        let huge = vec![b' '; MAX_PROFILE_BYTES + 1];
        assert!(sandbox_exec_argv(&huge, &params, Path::new("/bin/cat"), &[]).is_err());
    }

    #[test]
    fn a_run_is_recorded_between_start_and_end_in_a_log_that_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("state/capsule.log");
        let command: Vec<OsString> = vec!["/bin/sh".into(), "-c".into(), "exit 3".into()];
        let (status, invocation) = run_recorded(&log, "p", &"ab".repeat(32), &command, || {
            std::process::Command::new("/bin/sh").args(["-c", "exit 3"]).status()
        })
        .unwrap();
        assert_eq!(status.code(), Some(3));
        let text = std::fs::read_to_string(&log).unwrap();
        let start = text.lines().find(|l| l.contains("\"invocation.start\"")).expect("a start record");
        let end = text.lines().find(|l| l.contains("\"invocation.end\"")).expect("an end record");
        assert!(start.contains("exit 3") && start.contains(&"ab".repeat(32)), "{start}");
        assert!(end.contains(&format!("\"invocation\":\"{invocation}\"")), "{end}");
        assert!(end.contains("\"exit_code\":3"), "{end}");
        let report = capsule_artifacts::log::verify::verify(&log, &Default::default());
        assert_eq!(report.verdict, capsule_artifacts::log::verify::Verdict::Intact, "{report:?}");

        // A spawn that cannot start is recorded as a launch failure, and reported.
        let err = run_recorded(&log, "p", &"ab".repeat(32), &command, || Err(std::io::ErrorKind::NotFound.into()));
        assert!(err.unwrap_err().contains("cannot start sandbox-exec"));
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text.matches("\"invocation.end\"").count(), 2);
        assert!(text.contains("cannot start sandbox-exec"));
    }

    #[test]
    fn a_log_the_command_could_reach_is_refused() {
        use capsule_artifacts::launch::Filesystem;
        let dir = tempfile::tempdir().unwrap();
        let (ws, state) = (dir.path().join("ws"), dir.path().join("state"));
        std::fs::create_dir(&ws).unwrap();
        std::fs::create_dir(&state).unwrap();
        let vars = PathVars { workspace: ws.clone(), home: Some(dir.path().into()), tmpdir: "/tmp".into() };
        let mut settings = LaunchSettings::default();
        assert!(protected_log(&state.join("capsule.log"), &settings, &vars).is_err(), "writes unrestricted");
        settings.filesystem =
            Filesystem { read: Some(vec!["/usr".into()]), write: Some(vec!["${WORKSPACE}".into()]), execute: None };
        assert!(protected_log(&ws.join("capsule.log"), &settings, &vars).is_err());
        assert!(protected_log(&state.join("../ws/x.log"), &settings, &vars).is_err());
        assert!(protected_log(&state.join("capsule.log"), &settings, &vars).is_ok());
        settings.filesystem.read = Some(vec!["${HOME}".into()]);
        assert!(protected_log(&state.join("capsule.log"), &settings, &vars).is_err(), "readable is refused too");
    }

    #[test]
    fn parameters_are_resolved_paths_and_home_is_required() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        let vars = PathVars { workspace: link.clone(), home: Some(link.clone()), tmpdir: link.clone() };
        let p = ProfileParams::resolve(&vars).unwrap();
        let real = dir.path().canonicalize().unwrap();
        assert_eq!((p.workspace, p.home, p.tmpdir), (real.clone(), real.clone(), real));
        assert!(ProfileParams::resolve(&PathVars { home: None, ..vars.clone() }).is_err());
        assert!(ProfileParams::resolve(&PathVars { tmpdir: dir.path().join("missing"), ..vars }).is_err());
    }
}
