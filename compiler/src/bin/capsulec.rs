//! capsulec: the policy compiler's command line. Thin: every command is a call into
//! the capsule_compiler library plus printing.

use anyhow::Context;
use capsule_artifacts::Target;
use capsule_compiler::bpf::disasm::DisasmContext;
use capsule_compiler::bpf::interp::Program;
use capsule_compiler::build::{BuildError, BuildOptions};
use capsule_compiler::diagnostic::{self, SourceFile};
use capsule_compiler::front::Format as SourceFormat;
use capsule_compiler::{filetest, front, tables};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use codespan_reporting::term::termcolor::{ColorChoice, StandardStream};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `capsulec --version`: the compiler and the pinned sources of its syscall tables,
/// since both decide what an artifact allows.
fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| format!("{}\n{}", env!("CARGO_PKG_VERSION"), tables::TABLES_SOURCE))
}

#[derive(Parser)]
#[command(name = "capsulec", version = version(), about = "Compile capsule.yaml policies into pinned sandbox artifacts")]
struct Cli {
    /// When to colour diagnostics: auto follows the terminal and NO_COLOR.
    #[arg(long, value_enum, default_value_t = Color::Auto, global = true)]
    color: Color,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and validate a policy (YAML, or its JSON form for a `.json` file); print
    /// diagnostics. Exit 0 clean (warnings allowed), 1 on errors.
    Check {
        policy: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Compile a policy (YAML, or JSON for a `.json` file) into an artifact folder; print
    /// the manifest's blake3 (the pin).
    Build {
        policy: PathBuf,
        /// The artifact folder to write.
        #[arg(short, long)]
        out: PathBuf,
        /// Only these targets (repeatable); default: the policy's targets.
        #[arg(long = "target", value_parser = parse_target)]
        targets: Vec<Target>,
    },
    /// Disassemble a compiled filter, with syscall and constant names resolved.
    Disasm {
        file: PathBuf,
        /// The filter's target (default: from the file name, e.g. linux-x86_64.bpf).
        #[arg(long, value_parser = parse_target)]
        target: Option<Target>,
    },
    /// The decision for one call and what made it. With an artifact folder, runs the
    /// compiled filter (or evaluates the pinned macos.sb); with a policy, evaluates the
    /// policy's rules (or the macOS profile compiled from it).
    Explain {
        /// An artifact folder (holding manifest.json) or a policy file.
        input: PathBuf,
        #[arg(long, value_parser = parse_target, required_unless_present = "domain")]
        target: Option<Target>,
        /// Whether the policy's proxy lets the command reach this name (instead of a syscall).
        #[arg(long, conflicts_with = "target")]
        domain: Option<String>,
        /// A syscall name or number; with `--target macos`, an SBPL operation
        /// (file-read-data, file-write-data, process-exec, network-outbound, network-bind,
        /// process-fork, signal, sysctl-read, mach-lookup).
        #[arg(required_unless_present = "domain")]
        syscall: Option<String>,
        /// Up to six arguments: numbers, constants (AF_INET), `A|B`, `-1`. With
        /// `--target macos`: a path, `tcp/PORT`, `udp/PORT`, `self|same-sandbox|others`
        /// or a name.
        args: Vec<String>,
    },
    /// What changed between two policies, per target: syscalls newly allowed or
    /// denied, conditions changed, files, network, limits, env and audit.
    /// Exit 0 when they decide alike, 1 when they differ.
    Diff {
        old: PathBuf,
        new: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Turn an OCI / Docker seccomp profile into a capsule.yaml (on stdout).
    ImportOci {
        profile: PathBuf,
        /// The Linux target to import for (default: this machine's).
        #[arg(long, value_parser = parse_target)]
        arch: Option<Target>,
        /// The capabilities the container has, comma-separated (default: Docker's default set).
        #[arg(long, value_delimiter = ',')]
        caps: Option<Vec<String>>,
    },
    /// Print a policy (YAML or JSON) as JSON (default) or YAML on stdout, canonical: the
    /// same document, keys in source order, values typed as the policy language reads
    /// them; comments are not kept. Exit 1 when the policy has errors.
    Convert {
        policy: PathBuf,
        /// The form to write.
        #[arg(long, value_enum, default_value_t = ConvertTo::Json)]
        to: ConvertTo,
    },
    /// Print the JSON Schema of the policy language (draft-07), for editors.
    Schema,
    /// List the syscall groups and their members per target.
    Groups {
        /// Only this group (without or with the leading @).
        name: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print a shell completion script: `capsulec completions bash >
    /// /usr/share/bash-completion/completions/capsulec`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (capsulec.1 and one per command) into DIR (`make man`).
    #[command(hide = true)]
    Man {
        #[arg(long)]
        out: PathBuf,
    },
}

/// The forms `capsulec convert` writes.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ConvertTo {
    Json,
    Yaml,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { policy, format } => check(&policy, format, cli.color),
        Command::Groups { name, format } => groups(name.as_deref(), format),
        Command::Convert { policy, to } => convert(&policy, to, cli.color),
        Command::Schema => {
            print!("{}", front::schema::json_schema_string());
            Ok(ExitCode::SUCCESS)
        }
        Command::Diff { old, new, format } => diff(&old, &new, format, cli.color),
        Command::ImportOci { profile, arch, caps } => import_oci(&profile, arch, caps),
        Command::Build { policy, out, targets } => build(&policy, &out, targets, cli.color),
        Command::Disasm { file, target } => disasm(&file, target),
        Command::Explain { input, domain: Some(domain), .. } => explain_domain(&input, &domain),
        Command::Explain { input, target: Some(target), syscall: Some(syscall), args, .. } => {
            explain(&input, target, &syscall, &args)
        }
        Command::Explain { .. } => Err(anyhow::anyhow!("explain needs --target and a syscall, or --domain NAME")),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "capsulec", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { out } => std::fs::create_dir_all(&out)
            .and_then(|()| clap_mangen::generate_to(Cli::command(), &out))
            .with_context(|| format!("cannot write the man pages to {}", out.display()))
            .map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("capsulec: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn parse_target(s: &str) -> Result<Target, String> {
    Target::from_name(s).ok_or_else(|| format!("unknown target `{s}` (linux-x86_64, linux-aarch64, macos)"))
}

/// Colour only on a terminal, and never with NO_COLOR set (https://no-color.org).
fn color_choice(color: Color) -> ColorChoice {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    match color {
        _ if no_color => ColorChoice::Never,
        Color::Always => ColorChoice::Always,
        Color::Never => ColorChoice::Never,
        Color::Auto if !std::io::stderr().is_terminal() => ColorChoice::Never,
        Color::Auto => ColorChoice::Auto,
    }
}

fn print_diagnostics(
    path: &Path,
    bytes: &[u8],
    diags: &[capsule_compiler::diagnostic::Diagnostic],
    color: Color,
) -> anyhow::Result<()> {
    let text = String::from_utf8_lossy(bytes);
    let name = path.display().to_string();
    let mut stderr = StandardStream::stderr(color_choice(color));
    diagnostic::render_to(&mut stderr, diags, &SourceFile { name: &name, text: &text })?;
    Ok(())
}

fn build(path: &Path, out: &Path, targets: Vec<Target>, color: Color) -> anyhow::Result<ExitCode> {
    let bytes = read_policy(path)?;
    let options = BuildOptions { targets };
    match capsule_compiler::build::build_source(&bytes, SourceFormat::from_path(path), &options) {
        Ok(artifacts) => {
            print_diagnostics(path, &bytes, &artifacts.diagnostics, color)?;
            capsule_compiler::build::write_dir(&artifacts, out)
                .with_context(|| format!("cannot write {}", out.display()))?;
            for warning in &artifacts.oci_warnings {
                eprintln!("capsulec: note: {warning}");
            }
            println!("{}", artifacts.pin);
            Ok(ExitCode::SUCCESS)
        }
        Err(BuildError::Policy(diags)) => {
            print_diagnostics(path, &bytes, &diags, color)?;
            Ok(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("capsulec: error: {e}");
            eprintln!("capsulec: nothing was written to {}", out.display());
            Ok(ExitCode::from(1))
        }
    }
}

/// Check and optimise a policy for `diff`; diagnostics go to stderr on failure.
fn optimised(path: &Path, color: Color) -> anyhow::Result<Option<capsule_compiler::ir::Policy>> {
    let bytes = read_policy(path)?;
    let checked = front::check_source_bytes(&bytes, SourceFormat::from_path(path));
    match checked.policy {
        Some(policy) => Ok(Some(capsule_compiler::passes::run_all(&policy))),
        None => {
            print_diagnostics(path, &bytes, &checked.diagnostics, color)?;
            Ok(None)
        }
    }
}

fn diff(old: &Path, new: &Path, format: Format, color: Color) -> anyhow::Result<ExitCode> {
    let (Some(o), Some(n)) = (optimised(old, color)?, optimised(new, color)?) else {
        return Ok(ExitCode::from(2));
    };
    let d = capsule_compiler::diff::diff(&o, &n);
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&d)?),
        Format::Text => print!("{}", capsule_compiler::diff::render(&d)),
    }
    Ok(if d.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn import_oci(profile: &Path, arch: Option<Target>, caps: Option<Vec<String>>) -> anyhow::Result<ExitCode> {
    use capsule_compiler::oci::{ImportOptions, import_oci};
    let json = std::fs::read_to_string(profile).with_context(|| format!("cannot read {}", profile.display()))?;
    let target = match arch.or_else(Target::host) {
        Some(t) if t.is_linux() => t,
        _ => anyhow::bail!("--arch must be linux-x86_64 or linux-aarch64"),
    };
    let mut options = ImportOptions::new(target);
    if let Some(caps) = caps {
        options.caps = caps.into_iter().map(|c| c.trim().to_ascii_uppercase()).filter(|c| !c.is_empty()).collect();
    }
    options.name = profile.file_stem().map_or_else(|| "imported".to_owned(), |s| s.to_string_lossy().into_owned());
    options.source = Some(profile.display().to_string());
    let imported = import_oci(&json, &options).map_err(|e| anyhow::anyhow!("{}: {e}", profile.display()))?;
    print!("{}", imported.yaml);
    let report = &imported.report;
    eprintln!(
        "capsulec: imported for {target}: {} syscall name(s) the target lacks were dropped, {} entries left out by includes/excludes (both listed in the header)",
        report.dropped_names.len(),
        report.filtered_entries
    );
    for note in &report.notes {
        eprintln!("capsulec: note: {note}");
    }
    Ok(ExitCode::SUCCESS)
}

fn disasm(file: &Path, target: Option<Target>) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let target = target.or_else(|| {
        let stem = file.file_stem()?.to_str()?;
        Target::from_name(stem)
    });
    let text = capsule_compiler::bpf::disasm::disassemble_bytes(&bytes, &DisasmContext { target })
        .with_context(|| format!("{} is not a BPF program", file.display()))?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn explain(input: &Path, target: Target, syscall: &str, args: &[String]) -> anyhow::Result<ExitCode> {
    if !target.is_linux() {
        return explain_macos(input, syscall, args);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let call = filetest::parse_call_parts(target, syscall, &args).map_err(|e| anyhow::anyhow!(e))?;
    if input.is_dir() {
        let manifest_path = input.join(capsule_artifacts::manifest::MANIFEST_FILE);
        let artifact = capsule_artifacts::manifest::load_pinned(&manifest_path, None, target)
            .with_context(|| format!("cannot load the {target} filter from {}", input.display()))?;
        let program =
            Program::from_bytes(&artifact.blob).map_err(|e| anyhow::anyhow!("the filter is not valid: {e}"))?;
        print!(
            "{}",
            capsule_compiler::explain::explain_program(&program, artifact.entry.notify.as_ref(), target, &call)
        );
    } else {
        let bytes = read_policy(input)?;
        let checked = front::check_source_bytes(&bytes, SourceFormat::from_path(input));
        let Some(policy) = checked.policy else {
            print_diagnostics(input, &bytes, &checked.diagnostics, Color::Auto)?;
            return Ok(ExitCode::from(1));
        };
        if policy.syscalls_for(target).is_none() {
            anyhow::bail!("{target} is not one of the policy's targets");
        }
        let text = String::from_utf8_lossy(&bytes);
        print!("{}", capsule_compiler::explain::explain_policy(&policy, &text, target, &call));
    }
    Ok(ExitCode::SUCCESS)
}

/// `explain --target macos`: evaluate the pinned macos.sb of a folder, or the profile
/// compiled from a policy, with the parameters bound as the launcher would bind them
/// here (the current directory, HOME, TMPDIR), `/tmp`, `/var` and `/etc` resolved.
fn explain_macos(input: &Path, operation: &str, args: &[String]) -> anyhow::Result<ExitCode> {
    use capsule_compiler::back::sbpl::{ast::Operation, eval::Bindings, map::resolve_firmlink, parse};
    let op = Operation::from_name(operation).ok_or_else(|| anyhow::anyhow!("unknown SBPL operation `{operation}`"))?;
    if args.len() > 1 {
        anyhow::bail!("--target macos takes one object after the operation");
    }
    let object = capsule_compiler::explain::macos_object(op, args.first().map(String::as_str))
        .map_err(|e| anyhow::anyhow!(e))?;
    let text = if input.is_dir() {
        let manifest_path = input.join(capsule_artifacts::manifest::MANIFEST_FILE);
        let artifact = capsule_artifacts::manifest::load_pinned(&manifest_path, None, Target::Macos)
            .with_context(|| format!("cannot load macos.sb from {}", input.display()))?;
        String::from_utf8(artifact.blob).context("macos.sb is not UTF-8")?
    } else {
        let bytes = read_policy(input)?;
        let options = BuildOptions { targets: vec![Target::Macos] };
        match capsule_compiler::build::build(&bytes, &options) {
            Ok(mut a) => String::from_utf8(a.files.remove(Target::Macos.artifact_file()).unwrap_or_default())?,
            Err(BuildError::Policy(diags)) => {
                print_diagnostics(input, &bytes, &diags, Color::Auto)?;
                return Ok(ExitCode::from(1));
            }
            Err(e) => anyhow::bail!("{e}"),
        }
    };
    let profile = parse::parse(&text).context("macos.sb is outside the SBPL subset capsulec reads")?;
    let resolved = |p: std::path::PathBuf| {
        let p = p.canonicalize().unwrap_or(p);
        resolve_firmlink(&p.to_string_lossy())
    };
    let env_path = |name: &str, fallback: &str| {
        std::env::var_os(name).filter(|v| !v.is_empty()).map_or_else(|| fallback.into(), std::path::PathBuf::from)
    };
    let bindings = Bindings {
        workspace: resolved(std::env::current_dir()?),
        home: resolved(env_path("HOME", "/var/empty")),
        tmpdir: resolved(env_path("TMPDIR", "/tmp")),
        // A profile for `proxy: port: 0` reaches the port the launcher finds free at
        // launch; explained here as 3128, the port `capsule-launch` uses on Linux.
        proxy_port: "3128".into(),
    };
    let out =
        capsule_compiler::explain::explain_sbpl(&profile, &bindings, op, &object).map_err(|e| anyhow::anyhow!(e))?;
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn explain_domain(input: &Path, domain: &str) -> anyhow::Result<ExitCode> {
    if input.is_dir() {
        anyhow::bail!("explain --domain reads a policy file, not an artifact folder");
    }
    let bytes = read_policy(input)?;
    let checked = front::check_source_bytes(&bytes, SourceFormat::from_path(input));
    let Some(policy) = checked.policy else {
        print_diagnostics(input, &bytes, &checked.diagnostics, Color::Auto)?;
        return Ok(ExitCode::from(1));
    };
    print!("{}", capsule_compiler::explain::explain_domain(&policy, domain));
    Ok(ExitCode::SUCCESS)
}

fn read_policy(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    // Read at most one byte past the limit: a huge file is refused without loading it.
    use std::io::Read;
    let file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(front::MAX_POLICY_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(bytes)
}

fn check(path: &std::path::Path, format: Format, color: Color) -> anyhow::Result<ExitCode> {
    let bytes = read_policy(path)?;
    let checked = capsule_compiler::check_policy(&bytes, SourceFormat::from_path(path));
    let text = String::from_utf8_lossy(&bytes);
    let name = path.display().to_string();
    let src = SourceFile { name: &name, text: &text };
    match format {
        Format::Json => {
            let json = diagnostic::to_json(&checked.diagnostics, &src);
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
        Format::Text => {
            let mut stderr = StandardStream::stderr(color_choice(color));
            diagnostic::render_to(&mut stderr, &checked.diagnostics, &src)?;
            let errors = checked.diagnostics.iter().filter(|d| d.is_error()).count();
            let warnings = checked.diagnostics.len() - errors;
            if errors == 0 {
                writeln!(stderr, "{name}: ok ({warnings} warning(s) or note(s))")?;
            } else {
                writeln!(stderr, "{name}: {errors} error(s), {warnings} warning(s) or note(s)")?;
            }
        }
    }
    Ok(if checked.has_errors() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn convert(path: &Path, to: ConvertTo, color: Color) -> anyhow::Result<ExitCode> {
    let bytes = read_policy(path)?;
    let format = SourceFormat::from_path(path);
    let converted = match to {
        ConvertTo::Json => front::convert::to_json_bytes(&bytes, format),
        ConvertTo::Yaml => front::convert::to_yaml_bytes(&bytes, format),
    };
    match converted {
        Ok(json) => {
            print!("{json}");
            Ok(ExitCode::SUCCESS)
        }
        Err(diags) => {
            print_diagnostics(path, &bytes, &diags, color)?;
            Ok(ExitCode::from(1))
        }
    }
}

fn groups(name: Option<&str>, format: Format) -> anyhow::Result<ExitCode> {
    use capsule_compiler::groups;
    let selected: Vec<&groups::Group> = match name.map(|n| n.trim_start_matches('@')) {
        None => groups::groups().iter().collect(),
        Some(n) => match groups::group(n) {
            Some(g) => vec![g],
            None => anyhow::bail!("unknown group `@{n}`"),
        },
    };
    let mut out = std::io::stdout().lock();
    if format == Format::Json {
        let json: Vec<_> = selected
            .iter()
            .map(|g| {
                let per_target: serde_json::Map<String, serde_json::Value> = Target::LINUX
                    .iter()
                    .map(|&t| {
                        let names: Vec<&str> = groups::expand(g.name, t).iter().map(|d| d.name()).collect();
                        (t.name().to_owned(), serde_json::json!(names))
                    })
                    .collect();
                serde_json::json!({ "name": format!("@{}", g.name), "description": g.description, "members": g.members, "syscalls": per_target })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    for g in selected {
        writeln!(out, "@{}: {}", g.name, g.description)?;
        let nested: Vec<&str> = g.members.iter().copied().filter(|m| m.starts_with('@')).collect();
        if !nested.is_empty() {
            writeln!(out, "  includes: {}", nested.join(" "))?;
        }
        for t in Target::LINUX {
            let names: Vec<&str> = groups::expand(g.name, t).iter().map(|d| d.name()).collect();
            writeln!(out, "  {t} ({}): {}", names.len(), names.join(" "))?;
        }
        writeln!(out)?;
    }
    Ok(ExitCode::SUCCESS)
}
