//! capsule: the user's front door. Thin: each command calls the libraries.
// Started by the C runtime's `main` below, not Rust's (capsule_launch::entry says why).
#![cfg_attr(not(test), no_main)]
// The test harness brings its own `main`; what only the C `main` uses is dead there.
#![cfg_attr(test, allow(dead_code))]

mod log_commands;
// Profiling traces with ptrace and seccomp: Linux only (docs/macos.md).
#[cfg(target_os = "linux")]
mod profile;

use capsule_cli::{run, trust};

use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "capsule", version, about = "Run tools in a sandbox, with an audit trail")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    // Its help is RunArgs' doc comment, which `parse_run` shows too.
    Run(run::RunArgs),
    /// Check the audit log: exit 0 intact, 1 tampered or rolled back (the first bad
    /// record and why), 2 unreadable or bad arguments, 3 incomplete (a torn last line).
    ///
    /// FILE defaults to the per-user log ($XDG_STATE_HOME/capsule/capsule.log, else
    /// ~/.local/state/capsule/capsule.log).
    Verify(log_commands::VerifyArgs),
    /// Read the audit log: show, checkpoint, prove.
    #[command(subcommand)]
    Log(log_commands::LogCommand),
    /// Create a key pair for signing the log's checkpoints (set
    /// CAPSULE_LOG_SIGNING_KEY=PREFIX.key for `capsule run`; verify with
    /// `capsule verify --public-key PREFIX.pub`).
    Keygen(log_commands::KeygenArgs),
    /// Trust the current contents of a policy file (default ./capsule.yaml), so that
    /// `capsule run` uses it without --policy. A sandboxed command may write its
    /// workspace, so a capsule.yaml found there is used only once its exact bytes are
    /// trusted; trust it again after each edit.
    Trust {
        #[arg(default_value = "capsule.yaml")]
        file: PathBuf,
    },
    /// Run commands traced, record what they do, and write a minimal policy for each
    /// (and one for all) that replaying them under it proves.
    ///
    /// Profiling observes; it does not confine: the commands run with your rights, as
    /// they would without capsule. Output: DIR/index.json, per command NN-name.json (the
    /// profile) and NN-name.capsule.yaml (its policy), DIR/capsule.yaml (all commands)
    /// and DIR/summary.md. Exit: 0 when every command exited 0 and replayed under its
    /// policies; 1 when some command failed, timed out or did not replay (the others
    /// are still profiled); 2 for usage errors and inputs refused before anything ran.
    #[cfg(target_os = "linux")]
    Profile(profile::ProfileArgs),
    /// Write the built-in default policy to ./capsule.yaml, commented, for editing, and
    /// trust it.
    Init {
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
        #[arg(long, default_value = "capsule.yaml")]
        out: PathBuf,
    },
    /// Print a shell completion script: `capsule completions bash >
    /// /usr/share/bash-completion/completions/capsule`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (capsule.1 and one per command) into DIR (`make man`).
    #[command(hide = true)]
    Man {
        #[arg(long)]
        out: PathBuf,
    },
}

// SAFETY: the one C entry point of this binary, called once by the C runtime; std
// reads the arguments itself, and `entry::run` sets up what Rust's start-up would.
#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: std::ffi::c_int, _argv: *const *const std::ffi::c_char) -> std::ffi::c_int {
    capsule_launch::entry::run(capsule)
}

fn capsule() -> i32 {
    if std::env::args_os().nth(1).is_some_and(|a| a == "run") {
        return exit(run::run(parse_run()));
    }
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run(args) => run::run(args),
        #[cfg(target_os = "linux")]
        Command::Profile(args) => profile::run(args),
        Command::Verify(args) => log_commands::run_verify(args),
        Command::Log(command) => log_commands::run_log(command),
        Command::Keygen(args) => log_commands::run_keygen(args),
        Command::Trust { file } => trust(&file),
        Command::Init { force, out } => init(force, &out),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "capsule", &mut std::io::stdout());
            0
        }
        Command::Man { out } => man(&out),
    };
    exit(code)
}

/// The exit status for `code`: 125 (capsule failed) for one the status cannot carry.
fn exit(code: i32) -> i32 {
    u8::try_from(code).map_or(125, i32::from)
}

/// `capsule run ...` parsed without clap in its plain forms (`RunArgs::parse_plain`),
/// else against `run`'s own arguments only. `capsule run` is the hot path (every tool
/// call of an agent), and clap builds the whole command tree, every subcommand's
/// arguments with it, before it parses (docs/benchmarks.md). Help, usage and errors
/// read as the full tree's do (a test compares them).
fn parse_run() -> run::RunArgs {
    use clap::{Args, FromArgMatches};
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(2).collect();
    if let Some(parsed) = run::RunArgs::parse_plain(&args) {
        return parsed;
    }
    let command = run::RunArgs::augment_args(clap::Command::new("run").bin_name("capsule run"));
    let matches = command.get_matches_from(std::env::args_os().skip(1));
    run::RunArgs::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn man(out: &std::path::Path) -> i32 {
    match std::fs::create_dir_all(out).and_then(|()| clap_mangen::generate_to(Cli::command(), out)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("capsule: cannot write the man pages to {}: {e}", out.display());
            1
        }
    }
}

fn trust(file: &std::path::Path) -> i32 {
    match trust::trust(file) {
        Ok(hash) => {
            eprintln!("capsule: trusted {} (blake3 {hash})", file.display());
            0
        }
        Err(e) => {
            eprintln!("capsule: {e:#}");
            1
        }
    }
}

fn init(force: bool, out: &std::path::Path) -> i32 {
    if out.exists() && !force {
        eprintln!("capsule: {} exists; use --force to overwrite it", out.display());
        return 1;
    }
    match std::fs::write(out, run::DEFAULT_POLICY) {
        Ok(()) => {
            eprintln!("capsule: wrote the default policy to {}", out.display());
            trust(out)
        }
        Err(e) => {
            eprintln!("capsule: cannot write {}: {e}", out.display());
            1
        }
    }
}
