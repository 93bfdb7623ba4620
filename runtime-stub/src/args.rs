//! The command line, parsed by hand: the launcher stays small and links no parser.

use std::ffi::OsString;
use std::path::PathBuf;

pub const USAGE: &str = "\
usage: capsule-launch --manifest DIR/manifest.json [--pin HASH] [--log FILE]
                      [--workspace DIR] [--verbose] [--explain] -- CMD [ARG...]

Verifies a pinned artifact folder, applies its environment, resource limits,
Landlock rules, no_new_privs and seccomp filter, and runs CMD as its child.

  --manifest PATH   the artifact folder or its manifest.json
  --pin HASH        the blake3 of manifest.json that must match
  --log FILE        append this invocation to the audit log FILE (without it,
                    nothing is logged); refused if the policy lets CMD write FILE
  --workspace DIR   the value of ${WORKSPACE} (default: the current directory)
  -v, --verbose     print what was enforced
  --explain         print every rule as well
  -h, --help        print this help
  -V, --version     print the version

Exit status: CMD's own; 128+N if signal N ended it (159 for a seccomp kill);
125 if capsule-launch failed; 126 if CMD cannot be executed; 127 if not found.
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliArgs {
    pub manifest: PathBuf,
    pub pin: Option<String>,
    pub log: Option<PathBuf>,
    pub workspace: Option<PathBuf>,
    pub verbose: bool,
    pub explain: bool,
    pub command: Vec<OsString>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Run(CliArgs),
    Help,
    Version,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}\n\n{USAGE}")]
pub struct UsageError(pub String);

pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, UsageError> {
    let mut args = args.into_iter();
    let mut manifest = None;
    let mut pin = None;
    let mut log = None;
    let mut workspace = None;
    let mut verbose = false;
    let mut explain = false;

    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            return Err(UsageError(format!("unexpected argument {arg:?} (the command goes after `--`)")));
        };
        let (flag, inline) = match text.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(OsString::from(value))),
            _ => (text, None),
        };
        let mut value = |name: &str| -> Result<OsString, UsageError> {
            inline.clone().or_else(|| args.next()).ok_or_else(|| UsageError(format!("{name} needs a value")))
        };
        match flag {
            "--" => {
                let command: Vec<OsString> = args.collect();
                if command.is_empty() {
                    return Err(UsageError("no command after `--`".to_owned()));
                }
                let manifest = manifest.ok_or_else(|| UsageError("--manifest is required".to_owned()))?;
                return Ok(Parsed::Run(CliArgs { manifest, pin, log, workspace, verbose, explain, command }));
            }
            "--manifest" => manifest = Some(PathBuf::from(value(flag)?)),
            "--pin" => {
                let hash = value(flag)?;
                let hash = hash.into_string().map_err(|_| UsageError("--pin is not text".to_owned()))?;
                pin = Some(hash);
            }
            "--log" => log = Some(PathBuf::from(value(flag)?)),
            "--workspace" => workspace = Some(PathBuf::from(value(flag)?)),
            "--verbose" | "-v" if inline.is_none() => verbose = true,
            "--explain" if inline.is_none() => explain = true,
            "--help" | "-h" if inline.is_none() => return Ok(Parsed::Help),
            "--version" | "-V" if inline.is_none() => return Ok(Parsed::Version),
            _ => return Err(UsageError(format!("unexpected argument {text:?} (the command goes after `--`)"))),
        }
    }
    Err(UsageError("missing `-- CMD [ARG...]`".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flags in a text: words that start with `-` and a letter (`--pin`, `-V`).
    fn flags_in(text: &str) -> std::collections::BTreeSet<String> {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.starts_with('-') && w.trim_start_matches('-').starts_with(|c: char| c.is_ascii_alphabetic()))
            .map(str::to_owned)
            .collect()
    }

    /// The hand-written man page (runtime-stub/man/capsule-launch.1) names exactly the
    /// flags of USAGE, each of which the parser accepts, and carries the crate's version.
    #[test]
    fn man_page_matches_the_parser() {
        let page = include_str!("../man/capsule-launch.1");
        let options =
            page.split(".SH OPTIONS").nth(1).and_then(|s| s.split(".SH ").next()).expect("an OPTIONS section");
        let page_flags = flags_in(&options.replace("\\fB", " ").replace("\\fR", " ").replace("\\-", "-"));
        let usage_options = USAGE.split("\n\n").find(|p| p.trim_start().starts_with("--manifest")).unwrap();
        let usage_flags = flags_in(usage_options);
        assert_eq!(page_flags, usage_flags, "the man page's OPTIONS and USAGE list different flags");
        for flag in &usage_flags {
            let needs_value = ["--manifest", "--pin", "--log", "--workspace"].contains(&flag.as_str());
            let mut args = vec![flag.as_str()];
            if needs_value {
                args.push("v");
            }
            if flag != "--manifest" {
                args.extend(["--manifest", "m"]);
            }
            args.extend(["--", "true"]);
            assert!(parse_str(&args).is_ok(), "the parser refuses {flag}, which the man page documents");
        }
        let title = format!("\"capsule-launch {}\"", env!("CARGO_PKG_VERSION"));
        assert!(page.contains(&title), "the man page's .TH line should name {title}");
    }

    fn parse_str(args: &[&str]) -> Result<Parsed, UsageError> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn full_command_line() {
        let parsed = parse_str(&[
            "--manifest",
            "a/manifest.json",
            "--pin=ab",
            "--log",
            "x.log",
            "--workspace",
            "/w",
            "--verbose",
            "--explain",
            "--",
            "ls",
            "--",
            "-l",
        ])
        .unwrap();
        assert_eq!(
            parsed,
            Parsed::Run(CliArgs {
                manifest: "a/manifest.json".into(),
                pin: Some("ab".to_owned()),
                log: Some("x.log".into()),
                workspace: Some("/w".into()),
                verbose: true,
                explain: true,
                command: ["ls", "--", "-l"].iter().map(OsString::from).collect(),
            })
        );
    }

    #[test]
    fn usage_errors() {
        for (args, message) in [
            (&["--", "ls"][..], "--manifest is required"),
            (&["--manifest", "m"][..], "missing `-- CMD"),
            (&["--manifest", "m", "--"][..], "no command"),
            (&["--manifest"][..], "--manifest needs a value"),
            (&["--manifest", "m", "ls"][..], "unexpected argument \"ls\""),
            (&["--verbose=1"][..], "unexpected argument"),
        ] {
            let err = parse_str(args).unwrap_err();
            assert!(err.0.contains(message), "{args:?}: {}", err.0);
        }
        assert_eq!(parse_str(&["--help"]).unwrap(), Parsed::Help);
    }
}
