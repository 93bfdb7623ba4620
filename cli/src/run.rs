//! `capsule run`: pick the policy, compile it through the cache, and launch it with
//! the launcher library (the same code path as `capsule-launch`, without a second exec).

use crate::{cache, trust};
use anyhow::Context;
use capsule_artifacts::Target;
use capsule_compiler::front::Format;
use capsule_launch::{EXIT_SETUP_FAILURE, LaunchOptions};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The built-in default policy (and what `capsule init` writes).
pub const DEFAULT_POLICY: &str = include_str!("default-policy.yaml");
/// The policy `capsule run` looks for in the current directory without --policy.
const LOCAL_POLICY: &str = "capsule.yaml";
const LOCAL_POLICY_NAME: &str = "./capsule.yaml";
const BUILT_IN_NAME: &str = "the built-in default policy";

/// Compile a policy (cached) and run a command under it.
///
/// The policy is --policy, else ./capsule.yaml if trusted (`capsule trust`), else the
/// built-in default policy (`capsule init` writes it out). Exit code: the command's; 128+N when signal N
/// ended it (159: killed by the seccomp filter); 125 when capsule failed; 126 when
/// the command cannot be executed; 127 when it is not found.
#[derive(clap::Args, Debug, PartialEq, Eq)]
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
    /// For the Python SDK: write the invocation's id in the log to this inherited
    /// descriptor once its start is on disk.
    #[arg(long, hide = true)]
    announce_fd: Option<i32>,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<OsString>,
}

impl RunArgs {
    /// `capsule run`'s arguments (those after `run`) when they take only the plain
    /// forms: `--policy`, `--log` and `--workspace` with a value (`--flag VALUE` or
    /// `--flag=VALUE`), `-v`/`--verbose`, `--announce-fd N`, each at most once, then the
    /// command, after `--` or from the first word that is not an option. Anything else
    /// (help, an unknown, repeated or non-UTF-8 option, a missing or empty value, no
    /// command) is `None`, and clap parses it, answering as the full command tree does.
    ///
    /// Why by hand: clap takes about 80 µs to build and run its parser, most of it the
    /// first touch of its code and heap, and `capsule run` is every tool call of an agent
    /// (docs/benchmarks.md). A test checks that clap reads every argument list this
    /// accepts the same way.
    pub fn parse_plain(args: &[OsString]) -> Option<RunArgs> {
        let mut parsed = RunArgs {
            policy: None,
            log: None,
            workspace: None,
            verbose: false,
            announce_fd: None,
            command: Vec::new(),
        };
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            let text = arg.to_str()?;
            if text == "--" {
                parsed.command = rest.cloned().collect();
                break;
            }
            if !text.starts_with('-') {
                parsed.command = std::iter::once(arg).chain(rest).cloned().collect();
                break;
            }
            let (flag, inline) = match text.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag, Some(value)),
                _ => (text, None),
            };
            if matches!(flag, "-v" | "--verbose") {
                if inline.is_some() || std::mem::replace(&mut parsed.verbose, true) {
                    return None;
                }
                continue;
            }
            // A value that looks like an option is left to clap, which decides what it is.
            let value = match inline {
                Some(value) => value,
                None => rest.next()?.to_str()?,
            };
            if value.is_empty() || value.starts_with('-') {
                return None;
            }
            let slot = match flag {
                "--policy" => &mut parsed.policy,
                "--log" => &mut parsed.log,
                "--workspace" => &mut parsed.workspace,
                "--announce-fd" => {
                    if parsed.announce_fd.replace(value.parse().ok()?).is_some() {
                        return None;
                    }
                    continue;
                }
                _ => return None,
            };
            if slot.replace(PathBuf::from(value)).is_some() {
                return None;
            }
        }
        (!parsed.command.is_empty()).then_some(parsed)
    }
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
    check_mounted_workspace(&workspace)?;

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
            // A `--policy x.json` is the policy's JSON form; ./capsule.yaml and the default are YAML.
            let format = args.policy.as_deref().map_or(Format::Yaml, Format::from_path);
            let artifacts = match cache::compile(&source, format) {
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
        announce_fd: args.announce_fd,
    };
    let outcome = capsule_launch::launch(&artifact, &options);
    if let Some(failure) = &outcome.failure {
        eprintln!("capsule: {}", failure.message);
    }
    drop(private);
    Ok(outcome.exit_code)
}

/// Set by the container image (docs/containers.md): the folder users are expected to
/// mount their workspace on.
const WORKSPACE_MOUNT_ENV: &str = "CAPSULE_WORKSPACE_MOUNT";

/// In a container whose image sets CAPSULE_WORKSPACE_MOUNT, running in that folder
/// with nothing mounted on it would run the command on the image's empty directory:
/// refuse, saying how to mount one. A read-only mount is allowed (reading is a fair
/// use) with a note, so a failed write is not a surprise.
fn check_mounted_workspace(workspace: &Path) -> anyhow::Result<()> {
    let Some(expected) = std::env::var_os(WORKSPACE_MOUNT_ENV).filter(|v| !v.is_empty()) else { return Ok(()) };
    let expected = PathBuf::from(expected);
    if workspace != expected {
        return Ok(());
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").context("cannot read /proc/self/mountinfo")?;
    match mount_options(&mountinfo, workspace) {
        None => anyhow::bail!(
            "nothing is mounted on {dir} (this image runs commands on a folder mounted there): \
             run `docker run --rm -v \"$(pwd)\":{dir} capsule run CMD`, or give `volumes: [\"./:{dir}\"]` in \
             docker-compose.yml",
            dir = workspace.display()
        ),
        Some(options) if options.split(',').any(|o| o == "ro") => eprintln!(
            "capsule: note: the workspace {} is mounted read-only: the command can read it but not change it",
            workspace.display()
        ),
        Some(_) => {}
    }
    Ok(())
}

/// The mount options of the last mount on exactly `dir` in a /proc/self/mountinfo
/// text (fields: id parent major:minor root mount-point options ...; octal escapes).
fn mount_options(mountinfo: &str, dir: &Path) -> Option<String> {
    let unescape = |field: &str| -> String {
        let mut out = Vec::new();
        let bytes = field.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let octal = bytes.get(i + 1..i + 4).and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
            match (bytes[i], octal) {
                (b'\\', Some(byte)) => {
                    out.push(byte);
                    i += 4;
                }
                (b, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    // The last mount on a folder is the one in effect.
    mountinfo.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let (point, options) = (fields.get(4)?, fields.get(5)?);
        (Path::new(&unescape(point)) == dir).then(|| (*options).to_owned())
    })
}

/// The name of syscall `nr` of the target whose `AUDIT_ARCH_*` is `arch`.
pub fn syscall_name(arch: u32, nr: u32) -> Option<&'static str> {
    let target = Target::LINUX.into_iter().find(|t| t.audit_arch() == Some(arch))?;
    capsule_compiler::tables::table(target).by_nr(nr).map(|s| s.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's reading of `capsule run ARGS` (as `parse_run` in main.rs builds it).
    fn clap_parse(args: &[OsString]) -> Result<RunArgs, clap::Error> {
        use clap::{Args, FromArgMatches};
        let command = RunArgs::augment_args(clap::Command::new("run").bin_name("capsule run"));
        let matches =
            command.try_get_matches_from(std::iter::once(OsString::from("run")).chain(args.iter().cloned()))?;
        RunArgs::from_arg_matches(&matches)
    }

    fn os(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    /// Every argument list the plain parser accepts, clap reads the same way: all lists of
    /// up to three words from a vocabulary of options, values and edge cases, and 30,000
    /// longer ones drawn from it (a fixed-seed generator, so a failure reproduces).
    #[test]
    fn the_plain_parser_agrees_with_clap() {
        const WORDS: &[&str] = &[
            "--policy",
            "--policy=p.yaml",
            "p.yaml",
            "--log",
            "--log=a=b",
            "--workspace",
            "/w",
            "-v",
            "--verbose",
            "--verbose=x",
            "-vv",
            "--announce-fd",
            "3",
            "--announce-fd=+4",
            "--announce-fd=x",
            "--",
            "ls",
            "-l",
            "--help",
            "-h",
            "",
            "--policy=",
            "x=y",
            "-",
            "--unknown",
            "--pol",
        ];
        let mut accepted = 0;
        let mut check = |words: Vec<&str>| {
            let args = os(&words);
            if let Some(plain) = RunArgs::parse_plain(&args) {
                accepted += 1;
                match clap_parse(&args) {
                    Ok(full) => assert_eq!(plain, full, "{words:?}"),
                    Err(e) => panic!("{words:?}: the plain parser accepts what clap refuses: {e}"),
                }
            }
        };
        for a in WORDS {
            check(vec![a]);
            for b in WORDS {
                check(vec![a, b]);
                for c in WORDS {
                    check(vec![a, b, c]);
                }
            }
        }
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..30_000 {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let len = 4 + (state >> 60) as usize % 5;
            let words =
                (0..len).map(|i| WORDS[((state >> (i * 7)) as usize ^ (i * 31)) % WORDS.len()]).collect::<Vec<_>>();
            check(words);
        }
        assert!(accepted > 1_000, "the vocabulary should exercise the plain forms ({accepted} accepted)");
    }

    /// The forms `capsule run` is called with in practice stay off clap's path.
    #[test]
    fn the_usual_command_lines_are_plain() {
        for words in [
            &["ls", "-l"][..],
            &["--policy", "capsule.yaml", "--", "python3", "-c", "print(1)"],
            &["--policy=p.json", "--log", "/var/log/x.log", "-v", "make", "--jobs=2"],
            &["--workspace", "/w", "--announce-fd", "5", "--", "--weird-name"],
        ] {
            let plain = RunArgs::parse_plain(&os(words)).unwrap_or_else(|| panic!("{words:?} went to clap"));
            assert_eq!(plain, clap_parse(&os(words)).unwrap());
        }
        for words in [&["--help"][..], &[], &["--policy"], &["-v", "-v", "ls"], &["--log=", "ls"]] {
            assert_eq!(RunArgs::parse_plain(&os(words)), None, "{words:?}");
        }
    }

    #[test]
    fn finds_the_last_mount_on_a_folder() {
        let info = "\
22 1 0:21 / / rw,relatime - overlay overlay rw
30 22 8:1 /home/u/proj /workspace ro,relatime - ext4 /dev/sda1 rw
31 22 8:1 /home/u/proj /workspace rw,relatime - ext4 /dev/sda1 rw
32 22 8:1 /x /my\\040dir rw - ext4 /dev/sda1 rw
";
        assert_eq!(mount_options(info, Path::new("/workspace")).as_deref(), Some("rw,relatime"));
        assert_eq!(mount_options(info, Path::new("/my dir")).as_deref(), Some("rw"));
        assert_eq!(mount_options(info, Path::new("/work")), None);
        assert_eq!(mount_options(info, Path::new("/")).as_deref(), Some("rw,relatime"));
    }
}
