//! Helpers shared by the launcher's tests: hand-assembled seccomp programs, artifact
//! folders written on the fly, and running the real binary.

#![allow(dead_code)]

use capsule_artifacts::Target;
use capsule_artifacts::launch::LaunchSettings;
use capsule_artifacts::manifest::{FORMAT, FileEntry, MANIFEST_FILE, Manifest, PolicyInfo, VERSION};
use capsule_artifacts::notify::NotifyTable;
use capsule_artifacts::target::AUDIT_ARCH_X86_64;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const RET_ALLOW: u32 = 0x7fff_0000;
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_USER_NOTIF: u32 = 0x7fc0_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;

const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const RET_K: u16 = 0x06;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> [u8; 8] {
    let mut raw = [0u8; 8];
    raw[..2].copy_from_slice(&code.to_le_bytes());
    raw[2] = jt;
    raw[3] = jf;
    raw[4..].copy_from_slice(&k.to_le_bytes());
    raw
}

/// A program that checks the arch (x86_64, else kill), answers `action` for the listed
/// syscall numbers and allows everything else.
pub fn program(action: u32, syscalls: &[u32]) -> Vec<u8> {
    let mut code =
        vec![insn(LD_W_ABS, 0, 0, 4), insn(JEQ_K, 1, 0, AUDIT_ARCH_X86_64), insn(RET_K, 0, 0, RET_KILL_PROCESS)];
    code.push(insn(LD_W_ABS, 0, 0, 0));
    let n = syscalls.len();
    for (i, &nr) in syscalls.iter().enumerate() {
        // On a match jump over the remaining compares and the ALLOW to the action.
        code.push(insn(JEQ_K, (n - i) as u8, 0, nr));
    }
    code.push(insn(RET_K, 0, 0, RET_ALLOW));
    code.push(insn(RET_K, 0, 0, action));
    code.concat()
}

pub fn allow_all() -> Vec<u8> {
    program(RET_ALLOW, &[])
}

/// Launch settings that restrict nothing, except what each test sets.
pub fn open_settings() -> LaunchSettings {
    let mut settings = LaunchSettings::default();
    settings.landlock.scope = false;
    settings.env.pass = vec!["PATH".to_owned()];
    settings
}

pub struct Artifact {
    pub dir: tempfile::TempDir,
    pub pin: String,
}

impl Artifact {
    pub fn manifest(&self) -> PathBuf {
        self.dir.path().join(MANIFEST_FILE)
    }

    pub fn bpf(&self) -> PathBuf {
        self.dir.path().join(Target::LinuxX86_64.artifact_file())
    }
}

/// Writes an artifact folder readable by every user (the non-root tests need it).
pub fn artifact(settings: LaunchSettings, blob: &[u8], user_notif: bool) -> Artifact {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let name = Target::LinuxX86_64.artifact_file();
    std::fs::write(dir.path().join(name), blob).unwrap();
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        version: VERSION,
        policy: PolicyInfo { name: "test".to_owned(), source_blake3: blake3::hash(b"test").to_hex().to_string() },
        compiler: "runtime-stub tests".to_owned(),
        files: vec![FileEntry {
            name: name.to_owned(),
            target: Some(Target::LinuxX86_64),
            blake3: blake3::hash(blob).to_hex().to_string(),
            size: blob.len() as u64,
            // The tests' supervisors decide for themselves; an empty table asks for a listener.
            notify: user_notif.then(NotifyTable::default),
        }],
        launch: settings,
    };
    let bytes = manifest.to_bytes();
    std::fs::write(dir.path().join(MANIFEST_FILE), &bytes).unwrap();
    Artifact { dir, pin: Manifest::pin(&bytes) }
}

pub fn launcher() -> Command {
    Command::new(env!("CARGO_BIN_EXE_capsule-launch"))
}

/// Runs `capsule-launch --manifest ... [extra] -- command...` in `cwd`.
pub fn launch_in(cwd: &Path, artifact: &Artifact, extra: &[&str], command: &[&str]) -> Output {
    let mut cmd = launcher();
    cmd.current_dir(cwd).arg("--manifest").arg(artifact.manifest()).args(extra).arg("--").args(command);
    cmd.output().unwrap()
}

pub fn launch(artifact: &Artifact, command: &[&str]) -> Output {
    launch_in(&std::env::temp_dir(), artifact, &[], command)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The process's exit code, and its stderr in the panic message when it differs.
#[track_caller]
pub fn assert_code(output: &Output, expected: i32) {
    assert_eq!(
        output.status.code(),
        Some(expected),
        "stdout: {}\nstderr: {}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A world-accessible temporary directory (tempdir makes 0700 ones).
pub fn shared_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}
