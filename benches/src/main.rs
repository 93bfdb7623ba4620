//! `capsule-bench`: the project's benchmarks, one subcommand each. Results and how to
//! reproduce them are in docs/benchmarks.md.

use clap::{Parser, Subcommand};

mod audit;
mod bpf;
mod check;
mod destination;
mod kernel;
mod launch;
#[path = "../../compiler/tests/libseccomp/mod.rs"]
mod libseccomp;
mod network;
mod profile;
#[path = "../../compiler/tests/profiles/mod.rs"]
mod profiles;
mod sbpl;
mod seccompiler_filter;

#[derive(Parser)]
#[command(name = "capsule-bench", about = "Capsule's benchmarks (see docs/benchmarks.md)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// BPF program quality on Docker's and podman's default profiles (x86_64, each
    /// engine's default capabilities): capsulec against libseccomp (linear and tree)
    /// and seccompiler; real-kernel cost per call; capsulec build time.
    Bpf(bpf::Options),
    /// `capsulec check` on a 1,000-rule policy, against process start-up.
    Check(check::Options),
    /// Launch cost: direct, capsule-launch (with and without a log), capsule run, bwrap;
    /// filter install time.
    Launch(launch::Options),
    /// Network by name: 100 MB through the proxy against direct, the cost of a
    /// connection through it, and the launch with and without `domains`.
    Network(network::Options),
    /// The destination check under `domains`: what the supervisor adds to a `connect`,
    /// to the proxy's address and to another one, against a policy without domains.
    Destination(destination::Options),
    /// The audit log: appends per second, `capsule verify` on 1,000,000 records, and
    /// a logged denial against an unlogged one.
    Audit,
    /// `capsule profile`: the tracing mechanisms per call (user notification, ptrace
    /// entry only, entry and exit), and a syscall-heavy command against `strace -f`.
    Profile(profile::Options),
    /// The macOS back-end: build time with and without macos.sb, profile size and the
    /// number of decisions its validation compares.
    Sbpl(sbpl::Options),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Bpf(options) => bpf::run(&options),
        Command::Check(options) => check::run(&options),
        Command::Launch(options) => launch::run(&options),
        Command::Network(options) => network::run(&options),
        Command::Destination(options) => destination::run(&options),
        Command::Audit => audit::run(),
        Command::Profile(options) => profile::run(&options),
        Command::Sbpl(options) => sbpl::run(&options),
    }
}

/// The release binary `name` beside this benchmark's own.
pub(crate) fn bin(name: &str) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context;
    let path = std::env::current_exe()?.parent().context("no parent")?.join(name);
    anyhow::ensure!(path.exists(), "{} is missing: run `cargo build --release` first", path.display());
    Ok(path)
}

/// A benchmark's scratch folder, beside the binaries and not under /tmp: the default
/// policy lets commands write /tmp, and the launcher refuses a log or a cache the
/// command could rewrite. `work` is the commands' current directory.
pub(crate) struct Scratch {
    dir: tempfile::TempDir,
    pub work: std::path::PathBuf,
}

impl Scratch {
    pub fn new() -> anyhow::Result<Scratch> {
        use anyhow::Context;
        let dir = tempfile::tempdir_in(std::env::current_exe()?.parent().context("no parent")?)?;
        let work = dir.path().join("work");
        std::fs::create_dir(&work)?;
        Ok(Scratch { dir, work })
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// `program` in `work`, with this folder's compile cache and state directory (where a
    /// relative log goes). Both front doors start this way, so each checks the same
    /// capsule directories (the launcher refuses a policy that could write them).
    pub fn command(&self, program: &std::path::Path) -> std::process::Command {
        let mut c = std::process::Command::new(program);
        c.current_dir(&self.work).env("XDG_CACHE_HOME", self.path("cache")).env("XDG_STATE_HOME", self.path("state"));
        c
    }

    /// `capsule run --policy POLICY` started as [`Scratch::command`] starts it; its
    /// further arguments are the caller's.
    pub fn capsule_run(&self, capsule: &std::path::Path, policy: &std::path::Path) -> std::process::Command {
        let mut c = self.command(capsule);
        c.arg("run").arg("--policy").arg(policy);
        c
    }
}

/// The median of `v` (the upper one of an even count).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Compiles the C program `source` to `dir/name` with `cc -O2`.
pub(crate) fn compile_c(dir: &std::path::Path, name: &str, source: &str) -> anyhow::Result<std::path::PathBuf> {
    let (file, binary) = (dir.join(format!("{name}.c")), dir.join(name));
    std::fs::write(&file, source)?;
    let cc = std::process::Command::new("cc").args(["-O2", "-o"]).arg(&binary).arg(&file).status()?;
    anyhow::ensure!(cc.success(), "cc failed on {}", file.display());
    Ok(binary)
}
