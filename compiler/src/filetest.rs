//! File tests: expectations written as comments in fixture policies, in the manner
//! of cranelift's file tests.
//!
//! ```text
//! # expect: E0201 W0303                 diagnostics the policy must produce
//! # run: linux-x86_64 socket(AF_NETLINK, SOCK_RAW, 0) => errno(EPERM)
//! ```
//!
//! A `run:` line names a target, a call (syscall name and up to six arguments:
//! numbers, constants of that target, `-N`, and `A | B`) and the expected action
//! (`allow`, `audit`, `errno(NAME|N)`, `kill-process`, `kill-thread`, `trap`, `log`).
//! The same line is checked against the IR before the passes, after them, and
//! against the emitted BPF.

use crate::front::parse::parse_u64;
use crate::ir::{Action, Call};
use crate::tables;
use capsule_artifacts::Target;

/// The expected outcome of a `run:` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub action: Action,
    pub audited: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLine {
    /// 1-based line number in the fixture.
    pub line: usize,
    pub text: String,
    pub target: Target,
    pub call: Call,
    pub expected: Expected,
}

/// The diagnostic codes listed on `# expect:` lines.
pub fn expected_codes(src: &str) -> Vec<String> {
    src.lines()
        .filter_map(|l| l.trim_start().strip_prefix("# expect:"))
        .flat_map(|rest| rest.split_whitespace().map(str::to_owned))
        .collect()
}

/// Every `# run:` line of a fixture.
pub fn run_lines(src: &str) -> Result<Vec<RunLine>, String> {
    let mut out = Vec::new();
    for (i, line) in src.lines().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("# run:") else { continue };
        let parsed = parse_run(rest.trim()).map_err(|e| format!("line {}: {e}: `{}`", i + 1, rest.trim()))?;
        out.push(RunLine { line: i + 1, text: rest.trim().to_owned(), ..parsed });
    }
    Ok(out)
}

fn parse_run(text: &str) -> Result<RunLine, String> {
    let (lhs, rhs) = text.split_once("=>").ok_or("expected `TARGET CALL => ACTION`")?;
    let (target, call) = lhs.trim().split_once(' ').ok_or("expected a target then a call")?;
    let target =
        Target::from_name(target).filter(|t| t.is_linux()).ok_or(format!("unknown Linux target `{target}`"))?;
    let call = parse_call(target, call.trim())?;
    let expected = parse_expected(rhs.trim())?;
    Ok(RunLine { line: 0, text: String::new(), target, call, expected })
}

/// `name(arg, ...)` on a target: the call as seccomp sees it from the native ABI.
pub fn parse_call(target: Target, text: &str) -> Result<Call, String> {
    let (name, args) = match text.split_once('(') {
        Some((name, rest)) => (name.trim(), rest.strip_suffix(')').ok_or("missing `)`")?),
        None => (text, ""),
    };
    let args: Vec<&str> = if args.trim().is_empty() { Vec::new() } else { args.split(',').collect() };
    parse_call_parts(target, name, &args)
}

/// A syscall name (or number) and argument texts, as `capsulec explain` takes them.
pub fn parse_call_parts(target: Target, name: &str, args: &[&str]) -> Result<Call, String> {
    let table = tables::table(target);
    let nr = match table.by_name(name) {
        Some(def) => def.nr,
        None => parse_u64(name)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(format!("`{name}` is not a syscall of {target}"))?,
    };
    if args.len() > 6 {
        return Err("a syscall has at most six arguments".into());
    }
    let mut values = [0u64; 6];
    for (slot, arg) in values.iter_mut().zip(args) {
        *slot = parse_value(target, arg.trim())?;
    }
    let arch = target.audit_arch().expect("Linux targets have an audit arch");
    Ok(Call { arch, nr, args: values })
}

/// A number, `-N` (two's complement, 64 bits), a constant, or several joined by `|`.
pub fn parse_value(target: Target, text: &str) -> Result<u64, String> {
    let mut acc = 0u64;
    for part in text.split('|').map(str::trim) {
        let v = if let Some(n) = part.strip_prefix('-') {
            parse_u64(n).map(u64::wrapping_neg)
        } else {
            parse_u64(part).or_else(|| tables::table(target).constant(part))
        };
        acc |= v.ok_or(format!("`{part}` is neither a number nor a constant of {target}"))?;
    }
    Ok(acc)
}

fn parse_expected(text: &str) -> Result<Expected, String> {
    let action = match text {
        "allow" | "audit" => Action::Allow,
        "kill-process" => Action::KillProcess,
        "kill-thread" => Action::KillThread,
        "trap" => Action::Trap,
        "log" => Action::Log,
        _ => {
            let inner = text
                .strip_prefix("errno(")
                .and_then(|t| t.strip_suffix(')'))
                .ok_or(format!("unknown action `{text}`"))?;
            let n = parse_u64(inner)
                .and_then(|n| u16::try_from(n).ok())
                .or_else(|| tables::errno_value(inner))
                .ok_or(format!("unknown errno `{inner}`"))?;
            Action::Errno(n)
        }
    };
    Ok(Expected { action, audited: text == "audit" })
}
