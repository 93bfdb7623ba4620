//! Helpers of the audit-log tests (tests/tests/audit_*.rs): sandboxes whose state
//! directory (and so default log) is their own, `capsule verify` as JSON, the log's
//! records as JSON, and small C programs compiled once per test binary.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

use crate::{Identity, LOADER, Sandbox, bin, text};

/// A sandbox (own workspace, HOME, compile cache) with its own `XDG_STATE_HOME`, so
/// its `capsule run`s share one fresh default log.
pub struct AuditSandbox {
    pub sandbox: Sandbox,
}

impl Default for AuditSandbox {
    fn default() -> Self {
        AuditSandbox::new()
    }
}

impl AuditSandbox {
    pub fn new() -> AuditSandbox {
        AuditSandbox { sandbox: Sandbox::new(&Identity::Current) }
    }

    pub fn workspace(&self) -> &Path {
        self.sandbox.workspace.path()
    }

    pub fn state_home(&self) -> PathBuf {
        self.sandbox.home.path().join("state")
    }

    /// Where `capsule run` logs by default.
    pub fn log(&self) -> PathBuf {
        self.state_home().join("capsule").join("capsule.log")
    }

    /// `capsule ...` in the workspace with this sandbox's HOME, cache and state.
    pub fn capsule(&self) -> Command {
        let mut cmd = self.sandbox.capsule();
        cmd.env("XDG_STATE_HOME", self.state_home()).env_remove("CAPSULE_LOG_SIGNING_KEY");
        cmd
    }

    /// Writes `./capsule.yaml` in the workspace and trusts it (`capsule trust`), so
    /// `capsule run` without --policy uses it.
    pub fn use_policy(&self, policy: &str) {
        std::fs::write(self.workspace().join("capsule.yaml"), policy).expect("write capsule.yaml");
        assert_ok(&self.capsule().arg("trust").output().expect("run capsule trust"));
    }

    /// `capsule run [extra] --workspace W -- command...`.
    pub fn run(&self, extra: &[&str], command: &[impl AsRef<OsStr>]) -> Output {
        let mut cmd = self.capsule();
        cmd.arg("run").args(extra).arg("--workspace").arg(self.workspace()).arg("--").args(command);
        cmd.output().expect("run capsule")
    }

    /// Runs `capsule run -- /bin/true` and asserts it worked (warms the compile cache).
    pub fn run_true(&self) {
        let output = self.run(&[], &["/bin/true"]);
        assert_ok(&output);
    }

    /// `capsule verify FILE [extra] --format json`: the exit code and the report.
    pub fn verify(&self, file: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
        let output = self
            .capsule()
            .arg("verify")
            .arg(file)
            .args(extra)
            .args(["--format", "json"])
            .output()
            .expect("run capsule verify");
        let code = output.status.code().expect("capsule verify exits");
        let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!("verify printed no JSON ({e}): {}\n{}", text(&output.stdout), text(&output.stderr))
        });
        (code, report)
    }

    /// `capsule log checkpoint FILE`, saved to `to`.
    pub fn save_checkpoint(&self, file: &Path, to: &Path) {
        let output = self.capsule().args(["log", "checkpoint"]).arg(file).output().expect("run capsule log checkpoint");
        assert_ok(&output);
        std::fs::write(to, &output.stdout).expect("save the checkpoint");
    }
}

#[track_caller]
pub fn assert_ok(output: &Output) {
    assert!(
        output.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// The log's lines, each with its newline.
pub fn raw_lines(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    bytes.split_inclusive(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
}

pub fn write_lines(path: &Path, lines: &[Vec<u8>]) {
    std::fs::write(path, lines.concat()).expect("write the log");
}

/// Every whole line of the log parsed as JSON (the records).
pub fn records(path: &Path) -> Vec<serde_json::Value> {
    raw_lines(path).iter().filter(|l| l.ends_with(b"\n")).filter_map(|l| serde_json::from_slice(l).ok()).collect()
}

pub fn kind(record: &serde_json::Value) -> &str {
    record["kind"].as_str().unwrap_or("")
}

/// The records of one kind.
pub fn of_kind<'a>(records: &'a [serde_json::Value], wanted: &str) -> Vec<&'a serde_json::Value> {
    records.iter().filter(|r| kind(r) == wanted).collect()
}

/// C programs compiled once per test binary into a world-readable directory under
/// /tmp (readable under the default policy), run through the loader.
pub struct Programs {
    dir: tempfile::TempDir,
    built: Mutex<Vec<String>>,
}

impl Programs {
    pub fn get() -> &'static Programs {
        static PROGRAMS: OnceLock<Programs> = OnceLock::new();
        PROGRAMS.get_or_init(|| {
            let dir =
                tempfile::Builder::new().prefix("capsule-audit-progs-").tempdir_in("/tmp").expect("create /tmp dir");
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
            Programs { dir, built: Mutex::new(Vec::new()) }
        })
    }

    /// The command line that runs program `name` (compiled from `source`) with `args`
    /// under the default policy: the loader, the program, the arguments.
    pub fn command(&self, name: &str, source: &str, args: &[&str]) -> Vec<String> {
        let path = self.dir.path().join(name);
        let mut built = self.built.lock().expect("not poisoned");
        if !built.iter().any(|n| n == name) {
            let c = self.dir.path().join(format!("{name}.c"));
            std::fs::write(&c, source).expect("write the C source");
            let output = Command::new("cc")
                .args(["-O1", "-Wall", "-Wextra", "-Werror", "-o"])
                .arg(&path)
                .arg(&c)
                .stdin(Stdio::null())
                .output()
                .expect("run cc");
            assert!(output.status.success(), "cc {name}: {}", text(&output.stderr));
            built.push(name.to_owned());
        }
        let mut command = vec![LOADER.to_owned(), path.display().to_string()];
        command.extend(args.iter().map(|a| (*a).to_owned()));
        command
    }
}

/// The capsule binary, for tests that spawn it themselves.
pub fn capsule_bin() -> PathBuf {
    bin("capsule")
}
