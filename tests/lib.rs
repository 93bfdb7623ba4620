//! Helpers shared by the integration tests: the workspace's binaries, the identities a
//! test runs as (root, and the unprivileged user CI names in `CAPSULE_TEST_USER`),
//! sandboxes with their own workspace and cache, and the escape programs of
//! `tests/escapes/*.c`, compiled once per test binary.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The exit code of `capsule run` and `capsule-launch` when capsule itself failed.
pub const EXIT_SETUP_FAILURE: i32 = 125;
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
pub const EXIT_NOT_FOUND: i32 = 127;
/// 128 + SIGSYS: the seccomp filter killed the command.
pub const EXIT_SECCOMP_KILL: i32 = 128 + 31;

/// The checkout's root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// The profile directory this test binary was built into (`target/debug`), which
/// honours `CARGO_TARGET_DIR` and `--release` without reading either.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test>-<hash>
    exe.parent().and_then(Path::parent).expect("the test binary lives in <target>/<profile>/deps").to_path_buf()
}

/// The path of one of the workspace's binaries (`capsule`, `capsule-launch`,
/// `capsulec`). The first call builds the three with the test's own profile, so a test
/// never runs binaries older than the sources (`make test` builds them first, which
/// makes this a no-op).
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let profile = profile_dir();
    let built = BUILT.get_or_init(|| {
        let target_dir = profile.parent().expect("the profile directory has a parent");
        let mut cargo = Command::new(env!("CARGO"));
        // The packages of the three binaries the tests run, not the whole workspace.
        cargo
            .args(["build", "--quiet", "--bins", "-p", "capsule-cli", "-p", "capsule-launch", "-p", "capsule-compiler"])
            .current_dir(workspace_root());
        cargo.env("CARGO_TARGET_DIR", target_dir);
        if profile.file_name() == Some(OsStr::new("release")) {
            cargo.arg("--release");
        }
        let output = cargo.output().map_err(|e| format!("cannot run cargo: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!("building the binaries failed:\n{}", text(&output.stderr)))
        }
    });
    if let Err(e) = built {
        panic!("{e}");
    }
    let path = profile.join(name);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Who runs a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// This test process, as it is (root on CI).
    Current,
    /// An unprivileged user, entered through `setpriv` (needs root).
    User { name: String, uid: u32, gid: u32 },
}

impl Identity {
    pub fn is_root(&self) -> bool {
        match self {
            Identity::Current => is_root(),
            Identity::User { uid, .. } => *uid == 0,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Identity::Current if is_root() => "root".to_owned(),
            Identity::Current => format!("uid {}", current_uid()),
            Identity::User { name, uid, .. } => format!("{name} (uid {uid})"),
        }
    }

    /// `program args` run as this identity.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        match self {
            Identity::Current => Command::new(program),
            Identity::User { uid, gid, .. } => {
                let mut cmd = Command::new("setpriv");
                cmd.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--init-groups")
                    .arg("--")
                    .arg(program);
                cmd
            }
        }
    }

    /// Makes `path` belong to this identity (a no-op for `Current`).
    pub fn own(&self, path: &Path) {
        if let Identity::User { uid, gid, .. } = self {
            std::os::unix::fs::chown(path, Some(*uid), Some(*gid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
        }
    }
}

pub fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

pub fn is_root() -> bool {
    current_uid() == 0
}

fn id_of(name: &str, flag: &str) -> u32 {
    let output = Command::new("id").arg(flag).arg(name).output().expect("run id");
    assert!(output.status.success(), "CAPSULE_TEST_USER={name} is not a user: {}", text(&output.stderr));
    text(&output.stdout).trim().parse().expect("id prints a number")
}

/// The unprivileged user, when there is one to run as: `CAPSULE_TEST_USER` as root, or
/// this process itself when it is not root. As root without the variable, `None`:
/// the caller prints a skip line (the tests create no user themselves).
pub fn unprivileged() -> Option<Identity> {
    if !is_root() {
        return Some(Identity::Current);
    }
    let name = std::env::var("CAPSULE_TEST_USER").ok().filter(|n| !n.is_empty())?;
    let identity = Identity::User { uid: id_of(&name, "-u"), gid: id_of(&name, "-g"), name };
    assert!(!identity.is_root(), "CAPSULE_TEST_USER must not be root");
    Some(identity)
}

/// Every identity a test runs as: this process, and the unprivileged user when this
/// process is root and CI named one. Prints the skip line for `test` otherwise.
pub fn identities(test: &str) -> Vec<Identity> {
    let mut all = vec![Identity::Current];
    if is_root() {
        match unprivileged() {
            Some(user) => all.push(user),
            None => skip_unprivileged(test),
        }
    }
    all
}

pub fn skip_unprivileged(test: &str) {
    eprintln!("{test}: SKIPPED the unprivileged half: running as root and CAPSULE_TEST_USER is not set");
}

/// A directory under /var/tmp: outside the default policy's readable and writable
/// paths (which include /tmp), and outside every workspace.
pub fn outside_dir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir_in("/var/tmp").expect("create a directory in /var/tmp");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// The PATH of sandboxed commands: the caller's may name directories (a version
/// manager's shims under $HOME) that the default policy does not let run.
pub const SYSTEM_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A fresh workspace and compile cache for one identity, and `capsule run` in it.
///
/// Both live under /var/tmp, not /tmp: the default policy lets the command write /tmp,
/// and `capsule run` bypasses a cache the command could write.
pub struct Sandbox {
    pub identity: Identity,
    pub workspace: tempfile::TempDir,
    /// `$HOME` and `$XDG_CACHE_HOME` (its `cache` subdirectory) of the runs.
    pub home: tempfile::TempDir,
}

impl Sandbox {
    pub fn new(identity: &Identity) -> Sandbox {
        let workspace = outside_dir("capsule-ws-");
        let home = outside_dir("capsule-home-");
        identity.own(workspace.path());
        identity.own(home.path());
        Sandbox { identity: identity.clone(), workspace, home }
    }

    pub fn cache_home(&self) -> PathBuf {
        self.home.path().join("cache")
    }

    /// `capsule ARGS...` as this sandbox's identity, in its workspace, with its HOME and
    /// cache.
    pub fn capsule(&self) -> Command {
        self.command(bin("capsule"))
    }

    /// `program` as this sandbox's identity, in its workspace, with its HOME, cache and
    /// the system PATH: what starts `capsule` here, or a wrapper that then starts it.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = self.identity.command(program);
        cmd.current_dir(self.workspace.path())
            .env("HOME", self.home.path())
            .env("XDG_CACHE_HOME", self.cache_home())
            .env("PATH", SYSTEM_PATH)
            .stdin(Stdio::null());
        cmd
    }

    /// Writes `./capsule.yaml` in the workspace and trusts it (`capsule trust`), so
    /// `capsule run` without --policy uses it.
    pub fn use_policy(&self, policy: &str) {
        let path = self.workspace.path().join("capsule.yaml");
        std::fs::write(&path, policy).expect("write capsule.yaml");
        self.identity.own(&path);
        let output = self.capsule().arg("trust").output().expect("run capsule trust");
        assert!(output.status.success(), "capsule trust: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// `capsule run [extra] --workspace W -- command...` under the built-in default
    /// policy (the workspace has no capsule.yaml).
    pub fn run(&self, extra: &[&str], command: &[impl AsRef<OsStr>]) -> Output {
        self.run_with(extra, command, |_| {})
    }

    /// `capsule run` started by `sh -c script sh script_args... capsule run ...`: the
    /// script prepares the caller (say, opens a descriptor), then runs the rest with
    /// `shift N; exec "$@"`.
    pub fn run_from_shell(&self, script: &str, script_args: &[&OsStr], command: &[impl AsRef<OsStr>]) -> Output {
        let mut cmd = self.command("/bin/sh");
        cmd.arg("-c")
            .arg(script)
            .arg("sh")
            .args(script_args)
            .arg(bin("capsule"))
            .arg("run")
            .arg("--workspace")
            .arg(self.workspace.path())
            .arg("--")
            .args(command);
        cmd.output().expect("run sh")
    }

    /// As `run`, with a last change to the command (stdin, environment).
    pub fn run_with(&self, extra: &[&str], command: &[impl AsRef<OsStr>], adjust: impl FnOnce(&mut Command)) -> Output {
        let mut cmd = self.capsule();
        cmd.arg("run").args(extra).arg("--workspace").arg(self.workspace.path()).arg("--");
        cmd.args(command);
        adjust(&mut cmd);
        cmd.output().expect("run capsule")
    }
}

/// The dynamic loader. The default policy lets the command execute files only beneath
/// the system directories, so a sandboxed command runs a program from /tmp through
/// the loader (which maps it; Landlock's execute right covers execve only). The
/// escape suite tests what seccomp and the rest of Landlock stop, not exec rights.
pub const LOADER: &str = "/lib64/ld-linux-x86-64.so.2";

/// The escape programs, compiled once per test binary into a world-readable
/// directory under /tmp (readable under the default policy).
pub struct EscapePrograms {
    dir: tempfile::TempDir,
}

impl EscapePrograms {
    pub fn get() -> &'static EscapePrograms {
        static PROGRAMS: OnceLock<EscapePrograms> = OnceLock::new();
        PROGRAMS.get_or_init(EscapePrograms::compile)
    }

    fn compile() -> EscapePrograms {
        let dir = tempfile::Builder::new().prefix("capsule-escapes-").tempdir_in("/tmp").expect("create /tmp dir");
        // A static is never dropped: remove the directory when the test binary exits.
        static DIR: OnceLock<PathBuf> = OnceLock::new();
        extern "C" fn remove_dir() {
            if let Some(dir) = DIR.get() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        DIR.set(dir.path().to_path_buf()).expect("compiled once");
        // SAFETY: registers a function without arguments that touches only a static.
        unsafe {
            libc::atexit(remove_dir);
        }
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let sources = workspace_root().join("tests").join("escapes");
        let mut names: Vec<PathBuf> = std::fs::read_dir(&sources)
            .expect("tests/escapes")
            .map(|e| e.expect("read tests/escapes").path())
            .filter(|p| p.extension() == Some(OsStr::new("c")))
            .collect();
        names.sort();
        // One compiler process per program, all at once: the suite stays fast.
        let children: Vec<(PathBuf, std::process::Child)> = names
            .iter()
            .map(|source| {
                let out = dir.path().join(source.file_stem().expect("a file name"));
                let child = Command::new("cc")
                    .args(["-O1", "-Wall", "-Wextra", "-Werror", "-o"])
                    .arg(&out)
                    .arg(source)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("run cc");
                (source.clone(), child)
            })
            .collect();
        for (source, child) in children {
            let output = child.wait_with_output().expect("wait for cc");
            assert!(output.status.success(), "cc {} failed:\n{}", source.display(), text(&output.stderr));
        }
        EscapePrograms { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        assert!(path.is_file(), "no escape program {name} (tests/escapes/{name}.c)");
        path
    }
}

/// What an escape program reported (see tests/escapes/escape.h).
#[derive(Debug)]
pub struct Report {
    pub output: Output,
}

impl Report {
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    pub fn stdout(&self) -> String {
        text(&self.output.stdout)
    }

    fn explain(&self) -> String {
        format!("status {:?}\nstdout:\n{}\nstderr:\n{}", self.output.status, self.stdout(), text(&self.output.stderr))
    }

    /// The attack worked: exit 0 and an `ESCAPED` line.
    #[track_caller]
    pub fn assert_escaped(&self) {
        assert!(
            self.code() == Some(0) && self.stdout().lines().any(|l| l.starts_with("ESCAPED ")),
            "the attack should work without the sandbox:\n{}",
            self.explain()
        );
    }

    /// The attack failed at `step` with `errno` (a name such as "EPERM"): exit 1.
    #[track_caller]
    pub fn assert_blocked(&self, step: &str, errno: &str) {
        let expected = format!("BLOCKED {step} {errno}");
        assert!(
            self.code() == Some(1) && self.stdout().lines().any(|l| l == expected),
            "expected `{expected}` and exit 1:\n{}",
            self.explain()
        );
        assert!(!self.stdout().contains("ESCAPED"), "{}", self.explain());
    }

    /// The command ended with exit code `code` and printed no verdict (killed).
    #[track_caller]
    pub fn assert_killed_with(&self, code: i32) {
        assert!(
            self.code() == Some(code) && !self.stdout().contains("ESCAPED"),
            "expected exit {code} and no ESCAPED line:\n{}",
            self.explain()
        );
    }
}

/// An escape program and the ways to run it.
pub struct Attack {
    pub program: PathBuf,
}

impl Attack {
    pub fn new(name: &str) -> Attack {
        Attack { program: EscapePrograms::get().path(name) }
    }

    /// Without the sandbox, as `identity`.
    pub fn unsandboxed(&self, identity: &Identity, args: &[impl AsRef<OsStr>]) -> Report {
        self.unsandboxed_with(identity, args, |_| {})
    }

    pub fn unsandboxed_with(
        &self,
        identity: &Identity,
        args: &[impl AsRef<OsStr>],
        adjust: impl FnOnce(&mut Command),
    ) -> Report {
        let mut cmd = identity.command(&self.program);
        cmd.args(args).stdin(Stdio::null());
        adjust(&mut cmd);
        Report { output: cmd.output().expect("run the escape program") }
    }

    /// Through `wrapper` (e.g. `["unshare", "-m"]`): `wrapper... -- program args`.
    pub fn unsandboxed_wrapped(&self, identity: &Identity, wrapper: &[&str], args: &[impl AsRef<OsStr>]) -> Report {
        let (first, rest) = wrapper.split_first().expect("a wrapper command");
        let mut cmd = identity.command(first);
        cmd.args(rest).arg("--").arg(&self.program).args(args).stdin(Stdio::null());
        Report { output: cmd.output().expect("run the wrapper") }
    }

    /// Under a `sh` that stays its parent, so an attack on the parent hits a
    /// throwaway shell instead of the test.
    pub fn unsandboxed_under_shell(&self, identity: &Identity, args: &[impl AsRef<OsStr>]) -> Report {
        let mut cmd = identity.command("/bin/sh");
        // `; exit` keeps the shell from exec'ing the program in its place.
        cmd.arg("-c").arg("\"$0\" \"$@\"; exit $?").arg(&self.program).args(args).stdin(Stdio::null());
        Report { output: cmd.output().expect("run sh") }
    }

    /// Under `capsule run` and the built-in default policy, in `sandbox`.
    pub fn sandboxed(&self, sandbox: &Sandbox, args: &[impl AsRef<OsStr>]) -> Report {
        self.sandboxed_with(sandbox, args, |_| {})
    }

    pub fn sandboxed_with(
        &self,
        sandbox: &Sandbox,
        args: &[impl AsRef<OsStr>],
        adjust: impl FnOnce(&mut Command),
    ) -> Report {
        let mut command: Vec<OsString> = vec![LOADER.into(), self.program.clone().into()];
        command.extend(args.iter().map(|a| a.as_ref().to_owned()));
        Report { output: sandbox.run_with(&[], &command, adjust) }
    }
}

/// The built-in default policy's source.
pub fn default_policy() -> String {
    std::fs::read_to_string(workspace_root().join("cli/src/default-policy.yaml")).expect("read the default policy")
}

/// An artifact folder built by `capsulec build`, readable by every user.
pub struct Artifact {
    pub root: tempfile::TempDir,
    /// What `capsulec build` printed.
    pub pin: String,
}

impl Artifact {
    pub fn build(policy_source: &str) -> Artifact {
        let root = tempfile::Builder::new().prefix("capsule-artifact-").tempdir().expect("create a temp dir");
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let policy = root.path().join("capsule.yaml");
        std::fs::write(&policy, policy_source).expect("write the policy");
        let output = Command::new(bin("capsulec"))
            .arg("build")
            .arg(&policy)
            .arg("-o")
            .arg(root.path().join("out"))
            .output()
            .expect("run capsulec");
        assert!(output.status.success(), "capsulec build failed:\n{}", text(&output.stderr));
        let pin = text(&output.stdout).trim().to_owned();
        assert_eq!(pin.len(), 64, "capsulec build prints the pin: {pin:?}");
        Artifact { root, pin }
    }

    pub fn dir(&self) -> PathBuf {
        self.root.path().join("out")
    }

    pub fn manifest(&self) -> PathBuf {
        self.dir().join("manifest.json")
    }

    /// The host's seccomp program.
    pub fn blob(&self) -> PathBuf {
        self.dir().join("linux-x86_64.bpf")
    }
}

impl Sandbox {
    /// `capsule-launch --manifest M [extra] --workspace W -- command...` as this
    /// sandbox's identity, in its workspace.
    pub fn launch(&self, artifact: &Artifact, extra: &[&str], command: &[impl AsRef<OsStr>]) -> Output {
        let mut cmd = self.identity.command(bin("capsule-launch"));
        cmd.current_dir(self.workspace.path())
            .env("HOME", self.home.path())
            .env("PATH", SYSTEM_PATH)
            .stdin(Stdio::null())
            .arg("--manifest")
            .arg(artifact.manifest())
            .args(extra)
            .arg("--workspace")
            .arg(self.workspace.path())
            .arg("--")
            .args(command);
        cmd.output().expect("run capsule-launch")
    }

    /// A file in the workspace that a command under test creates to show it ran.
    pub fn marker(&self) -> PathBuf {
        self.workspace.path().join("command-ran")
    }

    /// The command that creates `marker()`.
    pub fn touch_marker(&self) -> Vec<OsString> {
        vec!["/usr/bin/touch".into(), self.marker().into()]
    }
}

/// The process's exit code, with the whole output in the message when it differs.
#[track_caller]
pub fn assert_exit(output: &Output, expected: i32) {
    assert_eq!(
        output.status.code(),
        Some(expected),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
}
pub mod audit_support;
