//! `capsule run`: pick the policy, compile it through the cache, and launch it with
//! the launcher library (the same code path as `capsule-launch`, without a second exec).

use crate::{cache, trust};
use anyhow::Context;
use capsule_artifacts::Target;
use capsule_launch::{EXIT_SETUP_FAILURE, LaunchOptions};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The built-in default policy (and what `capsule init` writes).
pub const DEFAULT_POLICY: &str = include_str!("default-policy.yaml");
/// The policy `capsule run` looks for in the current directory without --policy.
const LOCAL_POLICY: &str = "capsule.yaml";
const LOCAL_POLICY_NAME: &str = "./capsule.yaml";
const BUILT_IN_NAME: &str = "the built-in default policy";

#[derive(clap::Args)]
pub struct RunArgs {
    /// The policy to run under (default: ./capsule.yaml, else the built-in default).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// The audit log (default: the policy's `audit: log:`; a relative one, like the
    /// default `capsule.log`, lives in $XDG_STATE_HOME/capsule, else
    /// ~/.local/state/capsule). Refused if the policy lets the command write it.
    #[arg(long)]
    log: Option<PathBuf>,
    /// `${WORKSPACE}` (default: the current directory).
    #[arg(long)]
    workspace: Option<PathBuf>,
    /// Print what was enforced.
    #[arg(short, long)]
    verbose: bool,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<OsString>,
}

pub fn run(args: RunArgs) -> i32 {
    let (log, command) = (args.log.clone(), args.command.clone());
    let source = match &args.policy {
        Some(path) => path.clone(),
        None if Path::new(LOCAL_POLICY).exists() => PathBuf::from(LOCAL_POLICY_NAME),
        None => PathBuf::from(format!("({BUILT_IN_NAME})")),
    };
    match prepare_and_launch(args) {
        Ok(code) => code,
        Err(e) => {
            // Nothing ran: the policy could not be read or compiled, or its log path
            // resolved. The policy's own `audit: log:` may be what failed, so the
            // refusal goes to --log, else the default log.
            let reason = format!("refusing to run: {e:#}");
            eprintln!("capsule: {reason}");
            let recorded = log
                .map_or_else(capsule_launch::audit::default_log_path, Ok)
                .and_then(|log| capsule_launch::audit::record_refusal(&log, &command, &reason, &source, None));
            if let Err(e) = recorded {
                eprintln!("capsule: the refusal is not in the audit log: {e}");
            }
            EXIT_SETUP_FAILURE
        }
    }
}

fn policy_source(args: &RunArgs) -> anyhow::Result<(Vec<u8>, String)> {
    if let Some(path) = &args.policy {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read the policy {}", path.display()))?;
        return Ok((bytes, path.display().to_string()));
    }
    match trust::read_plain(Path::new(LOCAL_POLICY)) {
        Ok(bytes) => Ok((bytes, LOCAL_POLICY_NAME.to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok((DEFAULT_POLICY.as_bytes().to_vec(), BUILT_IN_NAME.to_owned()))
        }
        Err(e) => Err(e).context("cannot read ./capsule.yaml"),
    }
}

fn prepare_and_launch(args: RunArgs) -> anyhow::Result<i32> {
    let target = Target::host().context("this host is not a platform capsule supports")?;
    let (source, source_name) = policy_source(&args)?;
    // Trust is a matter of the bytes alone, so a warm run settles it without parsing; a
    // cold one reports the policy's errors first, as before.
    let refuse_untrusted = || -> anyhow::Result<()> {
        if args.policy.is_none()
            && source_name == LOCAL_POLICY_NAME
            && !trust::is_trusted(Path::new(LOCAL_POLICY), &source)?
        {
            anyhow::bail!(
                "{source_name} (blake3 {}) is not trusted: a sandboxed command may write its workspace, so a \
                 policy found there need not be yours; review it and run `capsule trust`, or pass --policy FILE",
                blake3::hash(&source).to_hex()
            );
        }
        Ok(())
    };
    let workspace = match &args.workspace {
        Some(w) => w.clone(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };

    // A warm run reads the artifact the cache holds for these bytes and this compiler,
    // verified as `capsule-launch` verifies it, and parses no YAML: every check below
    // that needs the policy reads the manifest's launch settings.
    // A policy that lets the command write the cache or the trusted-policy list is
    // refused by the launcher (`refuse_writable_capsule_dirs`), for both front doors.
    let cache_dir = cache::cache_root().map(|root| root.join(cache::key(&source)));
    // A private directory (mode 0700, deleted after the command has run) is used when
    // the cache cannot be written (a read-only HOME).
    let mut private: Option<tempfile::TempDir> = None;
    let hit = cache_dir.as_ref().and_then(|dir| cache::load(dir, target).map(|artifact| (dir.clone(), artifact)));
    let (dir, artifact, origin) = match hit {
        Some((dir, artifact)) => {
            refuse_untrusted()?;
            (dir, artifact, cache::Origin::Hit)
        }
        None => {
            let artifacts = match cache::compile(&source) {
                Ok(artifacts) => artifacts,
                Err(capsule_compiler::build::BuildError::Policy(diagnostics)) => {
                    let text = String::from_utf8_lossy(&source);
                    let rendered = capsule_compiler::diagnostic::render_plain(
                        &diagnostics,
                        &capsule_compiler::diagnostic::SourceFile { name: &source_name, text: &text },
                    );
                    eprint!("{rendered}");
                    anyhow::bail!("{source_name} has errors");
                }
                Err(e) => return Err(e.into()),
            };
            refuse_untrusted()?;
            match cache_dir.and_then(|dir| cache::store(&artifacts, &dir, target).ok().map(|a| (dir, a))) {
                Some((dir, artifact)) => (dir, artifact, cache::Origin::Built),
                None => {
                    let made = tempfile::Builder::new()
                        .prefix("capsule-build-")
                        .tempdir()
                        .context("cannot create a private build directory")?;
                    let dir = made.path().to_path_buf();
                    let artifact = cache::store(&artifacts, &dir, target)?;
                    private = Some(made);
                    (dir, artifact, cache::Origin::Built)
                }
            }
        }
    };
    // A cache the command could write is one it could poison for a later run under
    // another policy (every entry's key is public: the blake3 of the compiler and the
    // source). Falling back to a private directory would protect this run only, so the
    // run is refused instead, as a log the command could write is.
    if artifact.launch().filesystem.write.is_none() {
        anyhow::bail!(
            "the policy does not restrict writes (no `filesystem: write:`), so the command could rewrite the compile \
             cache, the trusted policies and the audit log; list the writable paths in the policy"
        );
    }
    if args.verbose {
        let how = match origin {
            cache::Origin::Hit => "cached",
            cache::Origin::Built => "compiled",
        };
        eprintln!("capsule: {source_name}: {how} artifact {} (pin {})", dir.display(), artifact.pin);
    }
    // Every invocation is audited: the command line's log, else the policy's.
    let log = match args.log {
        Some(log) => log,
        None => {
            capsule_launch::audit::policy_log_path(artifact.launch(), Some(&workspace)).map_err(anyhow::Error::msg)?
        }
    };
    let options = LaunchOptions {
        command: args.command,
        workspace: Some(workspace),
        log: Some(log),
        names: Some(capsule_launch::audit::Names {
            syscall: syscall_name,
            errno: capsule_compiler::tables::errno_name,
        }),
        verbose: args.verbose,
        explain: false,
    };
    let outcome = capsule_launch::launch(&artifact, &options);
    if let Some(failure) = &outcome.failure {
        eprintln!("capsule: {}", failure.message);
    }
    drop(private);
    Ok(outcome.exit_code)
}

/// The name of syscall `nr` of the target whose `AUDIT_ARCH_*` is `arch`.
pub fn syscall_name(arch: u32, nr: u32) -> Option<&'static str> {
    let target = Target::LINUX.into_iter().find(|t| t.audit_arch() == Some(arch))?;
    capsule_compiler::tables::table(target).by_nr(nr).map(|s| s.name)
}
