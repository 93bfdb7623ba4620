//! `capsule profile`: run commands traced, record what they do, write a profile and a
//! minimal policy per command plus one merged policy, and prove the policies by
//! replaying the commands under them.
//!
//! `trace.rs` is the kernel-facing tracer (ptrace + seccomp RET_TRACE); `record.rs`
//! turns stops into a bounded [`record::Profile`]; `generate.rs` writes policies;
//! `replay.rs` traces `capsule run --policy` on them; `output.rs` writes the output
//! folder (its layout is a contract: docs/profile.md).

pub mod commands;
pub mod generate;
pub mod output;
mod progress;
pub mod record;
pub mod replay;
pub mod trace;

use anyhow::Context as _;
use capsule_artifacts::Target;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Usage errors and inputs refused before anything runs.
pub const EXIT_USAGE: i32 = 2;

#[derive(clap::Args)]
pub struct ProfileArgs {
    /// A file with one command a line, split like a POSIX shell (`-`: standard input).
    /// Blank lines and `#` comments are skipped; pipes and redirections need an explicit
    /// `sh -c '...'`.
    #[arg(conflicts_with = "command", required_unless_present = "command")]
    file: Option<PathBuf>,
    /// Where the profiles, the policies, index.json and summary.md go.
    #[arg(long)]
    out_dir: PathBuf,
    /// Run the commands in this directory (`${WORKSPACE}`; default: the current one).
    #[arg(long)]
    workspace: Option<PathBuf>,
    /// Send the commands' stdin, stdout and stderr to /dev/null.
    #[arg(short, long)]
    quiet: bool,
    /// Profile each command this many times and take the union.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
    /// Per command (and per run and per replay): kill it and all its descendants after
    /// this long (`90s`, `10m`, `1h`, or seconds).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    timeout: Duration,
    /// Count the failed calls of every syscall, not only of those whose results make
    /// the profile (files, sockets, exec): two stops a call instead of one.
    #[arg(long)]
    all_results: bool,
    /// Do not replay the commands under their generated policies.
    #[arg(long)]
    no_verify: bool,
    /// Trace only what this policy would not allow unconditionally (re-profiling);
    /// its allowed syscalls are kept in the generated policies.
    #[arg(long, value_name = "POLICY")]
    from: Option<PathBuf>,
    /// Run the commands under this policy at the same time, as `capsule run --policy`
    /// does (audited to its log); calls it denies are not seen.
    #[arg(long, value_name = "POLICY")]
    within: Option<PathBuf>,
    /// `text` (a line per command on stderr) or `json` (the summary on stdout).
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// One command to profile, after `--`.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = number.parse().map_err(|_| format!("`{text}` is not a duration (`90s`, `10m`, `1h`)"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "ms" => return Ok(Duration::from_millis(n)).and_then(nonzero),
        _ => return Err(format!("unknown unit `{unit}` in `{text}` (use ms, s, m or h)")),
    };
    nonzero(Duration::from_secs(seconds))
}

fn nonzero(d: Duration) -> Result<Duration, String> {
    if d.is_zero() { Err("the timeout must be more than zero".to_owned()) } else { Ok(d) }
}

pub fn run(args: ProfileArgs) -> i32 {
    match profile(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("capsule profile: {e:#}");
            EXIT_USAGE
        }
    }
}

/// One command's results, for index.json and the summary.
pub struct Outcome {
    pub command: commands::Command,
    pub stem: String,
    pub profile: record::Profile,
    pub exit: i32,
    pub duration_ms: u128,
    pub timed_out: bool,
    pub killed: u64,
    pub not_found: Option<String>,
    pub policy: String,
    pub replay: Option<replay::Replay>,
    pub merged_replay: Option<replay::Replay>,
}

impl Outcome {
    /// The replay under its own policy and under the merged one gave the same exit
    /// status, no refusal and no timeout (or was not asked for).
    pub fn replayed(&self) -> bool {
        [&self.replay, &self.merged_replay].iter().all(|r| r.as_ref().is_none_or(|r| r.ok(self.exit)))
    }
}

fn profile(args: ProfileArgs) -> anyhow::Result<i32> {
    let target = Target::host().filter(|t| t.is_linux()).context("capsule profile runs on Linux x86_64 or aarch64")?;
    let list = match &args.file {
        Some(file) => commands::read(file)?,
        None => vec![commands::Command { line: 0, argv: args.command.clone() }],
    };
    if list.is_empty() {
        anyhow::bail!(
            "{} has no commands (only blank lines and comments)",
            args.file.as_deref().unwrap_or(Path::new("-")).display()
        );
    }
    let out_dir = absolute(&args.out_dir)?;
    output::prepare(&out_dir)?;
    // Read before entering the workspace: relative paths are the caller's.
    let known = match &args.from {
        Some(path) => known_syscalls(path, target)?,
        None => Vec::new(),
    };
    let within = match &args.within {
        Some(path) => {
            let path =
                std::fs::canonicalize(path).with_context(|| format!("cannot read the policy {}", path.display()))?;
            let source = std::fs::read(&path).with_context(|| format!("cannot read the policy {}", path.display()))?;
            if capsule_compiler::front::check_bytes(&source).has_errors() {
                anyhow::bail!("{} has errors (run `capsulec check` on it)", path.display());
            }
            let capsule = std::env::current_exe().context("cannot find the capsule binary")?;
            Some((capsule, path))
        }
        None => None,
    };
    if let Some(w) = &args.workspace {
        std::env::set_current_dir(w).with_context(|| format!("cannot enter the workspace {}", w.display()))?;
    }
    let workspace = std::env::current_dir().context("cannot read the current directory")?;
    let workspace = std::fs::canonicalize(&workspace).unwrap_or(workspace);
    trace::become_subreaper();
    let ctx = generate::Context::from_env(workspace.clone(), target);
    let stems = output::stems(&list);

    let mut bar = progress::Progress::new(args.format == Format::Text);

    let mut outcomes = Vec::new();
    for (i, (command, stem)) in list.iter().zip(&stems).enumerate() {
        bar.set_prefix(format!("command {} of {}", i + 1, list.len()));
        let outcome = profile_one(command, stem, &args, &known, within.as_ref(), target, &ctx, &mut bar);
        if args.format == Format::Text {
            bar.suspend(|| eprintln!("capsule profile: {}", output::status_line(&outcome)));
        }
        outcomes.push(outcome);
    }
    bar.finish_and_clear();

    let merged_policy = output::merged_policy(&outcomes, &ctx, &known, target);
    if !args.no_verify {
        let capsule = std::env::current_exe().context("cannot find the capsule binary")?;
        let options = replay::ReplayOptions {
            capsule: &capsule,
            workspace: &workspace,
            quiet: args.quiet,
            timeout: args.timeout,
            target,
        };
        for o in outcomes.iter_mut() {
            if o.not_found.is_some() || o.timed_out {
                continue;
            }
            o.replay = Some(replay::replay(&o.policy, &o.command.argv, &options, &o.profile));
            o.merged_replay = Some(replay::replay(&merged_policy, &o.command.argv, &options, &o.profile));
            if args.format == Format::Text && !o.replayed() {
                eprintln!("capsule profile: {}", output::replay_line(o));
            }
        }
    }
    output::write_all(&out_dir, &outcomes, &merged_policy, &workspace, args.runs, !args.no_verify)?;
    let ok = outcomes.iter().all(|o| o.exit == 0 && !o.timed_out && o.replayed());
    if args.format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&output::summary_json(&outcomes, !args.no_verify)).unwrap_or_default()
        );
    } else {
        eprintln!(
            "capsule profile: wrote {} ({} command{}{})",
            out_dir.display(),
            outcomes.len(),
            if outcomes.len() == 1 { "" } else { "s" },
            if args.no_verify { ", not replayed" } else { ", replayed" }
        );
    }
    Ok(if ok { 0 } else { 1 })
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir()?.join(path) })
}

#[allow(clippy::too_many_arguments)]
fn profile_one(
    command: &commands::Command,
    stem: &str,
    args: &ProfileArgs,
    known: &[u32],
    within: Option<&(PathBuf, PathBuf)>,
    target: Target,
    ctx: &generate::Context,
    bar: &mut progress::Progress,
) -> Outcome {
    let mut outcome = Outcome {
        command: command.clone(),
        stem: stem.to_owned(),
        profile: record::Profile::default(),
        exit: 0,
        duration_ms: 0,
        timed_out: false,
        killed: 0,
        not_found: None,
        policy: String::new(),
        replay: None,
        merged_replay: None,
    };
    let path_var = std::env::var_os("PATH");
    let program = match capsule_launch::command::resolve(command.argv[0].as_ref(), path_var.as_deref()) {
        Ok(p) => p,
        Err(failure) => {
            outcome.exit = failure.exit_code;
            outcome.not_found = Some(failure.message.clone());
            outcome.profile.notes.insert(failure.message);
            outcome.policy = output::policy_for(&outcome, ctx, known, target);
            return outcome;
        }
    };
    let name = command.argv.join(" ");
    // --within: the traced root is `capsule run --policy POLICY -- CMD`, and only what
    // runs from its child's exec of CMD on is recorded.
    let (program, argv) = match within {
        Some((capsule, policy)) => {
            let mut argv: Vec<String> = ["capsule", "run", "--policy"].map(str::to_owned).to_vec();
            argv.push(policy.to_string_lossy().into_owned());
            argv.push("--workspace".to_owned());
            argv.push(ctx.workspace.to_string_lossy().into_owned());
            argv.push("--".to_owned());
            argv.extend(command.argv.iter().cloned());
            (capsule.clone(), argv)
        }
        None => (program, command.argv.clone()),
    };
    for run in 0..args.runs {
        let mut recorder = record::Recorder::new(target);
        if within.is_some() {
            recorder.gate_below_root();
        }
        if args.all_results {
            recorder.see_all_results();
        }
        let mut progress = |calls: u64| bar.set_message(format!("{calls} syscalls: {name}"));
        let traced = trace::trace(
            trace::TraceOptions {
                program: &program,
                argv: &argv,
                cwd: &ctx.workspace,
                quiet: args.quiet,
                timeout: args.timeout,
                known,
                full_env: within.is_some(),
                progress: &mut progress,
            },
            &mut recorder,
        );
        let mut profile = recorder.finish();
        match traced {
            Ok(t) => {
                let exit = t.exit.code();
                if run == 0 {
                    outcome.exit = exit;
                } else if exit != outcome.exit {
                    profile.notes.insert(format!("run {} exited {exit}, the first run {}", run + 1, outcome.exit));
                }
                outcome.duration_ms = outcome.duration_ms.max(t.duration.as_millis());
                if t.timed_out {
                    outcome.timed_out = true;
                    profile.notes.insert(format!(
                        "timed out after {:?}: the command and all its descendants were killed",
                        args.timeout
                    ));
                }
                if t.killed > 0 {
                    outcome.killed += t.killed;
                    profile.notes.insert(format!(
                        "{} background process(es) were still running {:?} after the command ended and were killed",
                        t.killed,
                        trace::LINGER
                    ));
                }
            }
            Err(e) => {
                outcome.exit = capsule_launch::EXIT_SETUP_FAILURE;
                profile.notes.insert(format!("could not be traced: {e}"));
            }
        }
        outcome.profile.merge(&profile);
    }
    outcome.policy = output::policy_for(&outcome, ctx, known, target);
    outcome
}

/// The syscalls `--from POLICY` allows whatever their arguments, minus those whose
/// paths, addresses or exec the profiler must see.
fn known_syscalls(path: &Path, target: Target) -> anyhow::Result<Vec<u32>> {
    use capsule_compiler::ir::{Cond, RuleKind};
    let source = std::fs::read(path).with_context(|| format!("cannot read the policy {}", path.display()))?;
    let checked = capsule_compiler::front::check_bytes(&source);
    let Some(policy) = checked.policy else {
        let text = String::from_utf8_lossy(&source);
        let name = path.display().to_string();
        eprint!(
            "{}",
            capsule_compiler::diagnostic::render_plain(
                &checked.diagnostics,
                &capsule_compiler::diagnostic::SourceFile { name: &name, text: &text }
            )
        );
        anyhow::bail!("{} has errors", path.display());
    };
    let Some(syscalls) = policy.syscalls_for(target) else { return Ok(Vec::new()) };
    let table = capsule_compiler::tables::table(target);
    let always_traced: Vec<u32> = ALWAYS_TRACED.iter().filter_map(|n| table.by_name(n)).map(|d| d.nr).collect();
    Ok(syscalls
        .syscalls
        .values()
        .filter(|r| {
            r.rules.iter().any(|rule| rule.kind == RuleKind::Allow && rule.cond == Cond::True)
                && !r.rules.iter().any(|rule| matches!(rule.kind, RuleKind::Deny(_)))
        })
        .map(|r| r.nr)
        .filter(|nr| !always_traced.contains(nr))
        .collect())
}

/// Calls the profiler traces even when `--from` allows them: their paths, addresses,
/// argument values and exec make the profile's files, network and exec tree.
pub const ALWAYS_TRACED: &[&str] = &[
    "open",
    "creat",
    "openat",
    "openat2",
    "execve",
    "execveat",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "symlink",
    "symlinkat",
    "link",
    "linkat",
    "unlink",
    "unlinkat",
    "rmdir",
    "rename",
    "renameat",
    "renameat2",
    "truncate",
    "connect",
    "bind",
    "socket",
    "socketpair",
    "clone",
    "clone3",
    "unshare",
    "ioctl",
    "prctl",
    "personality",
    "fcntl",
    "arch_prctl",
    "memfd_create",
    "seccomp",
    "ptrace",
];
