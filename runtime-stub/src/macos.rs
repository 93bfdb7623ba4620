//! macOS: the command runs under the artifact's `macos.sb` through
//! `/usr/bin/sandbox-exec`, by absolute path (never through PATH), with the three
//! profile parameters bound to resolved paths: Seatbelt compares resolved paths, so
//! `/var/folders/...` must be passed as `/private/var/folders/...`.
//!
//! The profile goes to sandbox-exec as text (`-p`), the very bytes the manifest's pin
//! was checked against: with `-f PATH`, sandbox-exec would read the file again, after
//! the check, and a file swapped in between would be applied unchecked.
//!
//! The argument vector is built here on every platform (and tested on Linux); only
//! the spawn is macOS code. This crate links seccompiler and landlock, which build on
//! Linux only, so nothing here is reachable from `capsule run` or `capsule-launch`
//! yet: see docs/macos.md ("The launcher on macOS") for what is done and what is not.

use crate::paths::PathVars;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

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

/// Run the command under the profile and wait for it. The environment is exactly
/// `env` (the policy's `env.pass` and `env.set`, worked out by the caller).
#[cfg(target_os = "macos")]
pub fn run_sandboxed(argv: &[OsString], env: &[(OsString, OsString)]) -> std::io::Result<std::process::ExitStatus> {
    let (program, rest) = argv.split_first().ok_or(std::io::ErrorKind::InvalidInput)?;
    std::process::Command::new(program).args(rest).env_clear().envs(env.iter().cloned()).status()
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
