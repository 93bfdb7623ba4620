//! OCI profile → `capsule.yaml` for one target.
//!
//! The profile is first resolved the way Docker and runc resolve it on that machine
//! (includes/excludes, entries equal to the default dropped, same-index conditions
//! split), then libseccomp's rule for mixing rules of one syscall is applied (an
//! unconditional rule replaces every conditional one), and what is left is written as
//! Capsule rules whose decisions are the profile's. docs/oci.md has the details.

use super::{ActionProblem, Op, Profile, SyscallEntry, action_from_oci, docker_arch, scmp_arch, scmp_sub_arches};
use crate::ir::{Action, Test, Width};
use crate::tables::{self, SyscallDef};
use capsule_artifacts::Target;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// The capabilities Docker grants a container by default (moby's
/// `oci/caps/defaults.go`): the capability set to import Docker's profile with.
pub const DOCKER_DEFAULT_CAPS: [&str; 14] = [
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// How to resolve a profile's machine-dependent parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    /// The Linux target to import for: the profile's `arches` filters and syscall
    /// names are resolved for it.
    pub arch: Target,
    /// The capabilities the container would have (`includes.caps`/`excludes.caps`).
    pub caps: BTreeSet<String>,
    /// The policy's `name:`.
    pub name: String,
    /// Where the profile came from (a file name), for the header comment.
    pub source: Option<String>,
    /// The kernel version `minKernel` is compared with (major, minor).
    pub kernel: (u32, u32),
}

impl ImportOptions {
    /// Import for `arch` with Docker's default capabilities, against the kernel the
    /// compiler's tables describe.
    pub fn new(arch: Target) -> ImportOptions {
        ImportOptions {
            arch,
            caps: DOCKER_DEFAULT_CAPS.iter().map(|c| c.to_string()).collect(),
            name: "imported-oci-profile".to_string(),
            source: None,
            kernel: parse_kernel_version(tables::KERNEL_VERSION).expect("the tables' kernel version is major.minor"),
        }
    }
}

impl Default for ImportOptions {
    /// The host's target when it is a Linux one, else linux-x86_64.
    fn default() -> ImportOptions {
        let arch = Target::host().filter(|t| t.is_linux()).unwrap_or(Target::LinuxX86_64);
        ImportOptions::new(arch)
    }
}

/// A successful import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The `capsule.yaml` text.
    pub yaml: String,
    pub report: ImportReport,
}

/// What the import left out or changed, also written as comments in the YAML.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Names the target's table lacks (other architectures' calls, 32-bit-only calls),
    /// sorted: their rules are dropped.
    pub dropped_names: Vec<String>,
    /// Entries left out by their `includes`/`excludes` for this arch, caps and kernel.
    pub filtered_entries: usize,
    /// Entries whose action equals the default (runc skips them too).
    pub redundant_entries: usize,
    /// Everything else worth knowing, one sentence each.
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("not an OCI seccomp profile: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0} has no seccomp: import for linux-x86_64 or linux-aarch64")]
    NotLinux(Target),
    #[error("{place}: unknown action `{action}`")]
    UnknownAction { place: String, action: String },
    #[error("{place}: `{action}` leaves the decision to another process, which Capsule cannot express")]
    DelegatedAction { place: String, action: String },
    #[error("{place}: errnoRet {errno} is above the kernel's largest errno (4095)")]
    ErrnoOutOfRange { place: String, errno: u32 },
    #[error("{place}: unknown errno name `{name}`")]
    UnknownErrno { place: String, name: String },
    #[error("{place}: errnoRet {number} and errno `{name}` disagree")]
    ErrnoDisagrees { place: String, number: u32, name: String },
    #[error("{place}: unknown comparison `{op}`")]
    UnknownOp { place: String, op: String },
    #[error("{place}: argument index {index} is out of range (0..=5)")]
    ArgIndex { place: String, index: u32 },
    #[error("{place}: minKernel `{version}` is not a `MAJOR.MINOR` version")]
    MinKernel { place: String, version: String },
    #[error("{place}: names no syscall (give `names`)")]
    NoNames { place: String },
}

/// Import an OCI seccomp profile (the JSON text) as a `capsule.yaml` for one target.
pub fn import_oci(json: &str, opts: &ImportOptions) -> Result<Imported, ImportError> {
    let (Some(native), Some(go_arch)) = (scmp_arch(opts.arch), docker_arch(opts.arch)) else {
        return Err(ImportError::NotLinux(opts.arch));
    };
    let profile: Profile = serde_json::from_str(json)?;
    let table = tables::table(opts.arch);
    let mut report = ImportReport::default();

    let default_errno = errno_ret(profile.default_errno_ret, profile.default_errno.as_deref(), "defaultAction")?;
    let default = action(&profile.default_action, default_errno, "defaultAction")?;
    let mut dropped = BTreeSet::new();
    // Per syscall, the rules in profile order.
    let mut rules: BTreeMap<&'static str, Vec<Rule>> = BTreeMap::new();
    for (i, entry) in profile.syscalls.iter().flatten().enumerate() {
        let place = format!("syscalls[{i}]");
        if !applies(entry, go_arch, opts, &place)? {
            report.filtered_entries += 1;
            continue;
        }
        let entry_action = action(&entry.action, errno_ret(entry.errno_ret, entry.errno.as_deref(), &place)?, &place)?;
        let conditions = conditions(entry, &place)?;
        let names: Vec<&String> = entry.names.iter().flatten().chain(&entry.name).collect();
        if names.is_empty() {
            return Err(ImportError::NoNames { place });
        }
        if entry_action == default {
            // runc skips these (libseccomp refuses a rule whose action is the default).
            report.redundant_entries += 1;
            continue;
        }
        for name in names {
            let Some(def) = table.by_name(name) else {
                dropped.insert(name.clone());
                continue;
            };
            for conjunct in &conditions {
                if let Some(rule) = Rule::new(def, entry_action, conjunct, &mut report) {
                    rules.entry(def.name()).or_default().push(rule);
                }
            }
        }
    }
    for (name, list) in &mut rules {
        // libseccomp: once a syscall has an unconditional rule, conditional rules for
        // it are discarded, whichever came first, and a later unconditional rule adds
        // nothing to an earlier one.
        if let Some(first) = list.iter().position(|r| r.oci_unconditional) {
            if list.len() > 1 {
                report.notes.push(format!(
                    "`{name}`: an unconditional {} rule replaces {} other rule(s), as in libseccomp",
                    list[first].action,
                    list.len() - 1
                ));
            }
            let kept = list.swap_remove(first);
            *list = vec![kept];
        }
    }
    report.dropped_names = dropped.into_iter().collect();

    let foreign_abis = foreign_abis(&profile, opts.arch, native);
    let foreign_arch = match (&foreign_abis[..], default.lets_call_run()) {
        ([], _) => {
            report.notes.push(
                "the profile covers no other ABI, so libseccomp kills the thread of a foreign-ABI call; Capsule kills the process".into(),
            );
            Action::KillProcess
        }
        (abis, false) => {
            report.notes.push(format!(
                "the profile also applies its rules to {}; Capsule gives every call through another ABI `foreign-arch`, here the profile's default",
                abis.join(", ")
            ));
            default
        }
        (abis, true) => {
            report.notes.push(format!(
                "the profile applies its rules to {} too under an allowing default; Capsule cannot, and kills foreign-ABI calls instead",
                abis.join(", ")
            ));
            Action::KillProcess
        }
    };
    let yaml = render(&profile, default, foreign_arch, &rules, opts, &report);
    Ok(Imported { yaml, report })
}

/// One Capsule rule for one syscall.
#[derive(Debug, Clone)]
struct Rule {
    action: Action,
    /// The OCI rule had no conditions (libseccomp's "unconditional"), which matters
    /// even when a Capsule condition would have folded away.
    oci_unconditional: bool,
    /// ANDed; empty means always.
    tests: Vec<(u8, Width, Test)>,
}

impl Rule {
    /// `None` when the rule can never match on this target.
    fn new(def: &SyscallDef, action: Action, conjunct: &[Comparison], report: &mut ImportReport) -> Option<Rule> {
        let mut tests = Vec::new();
        for &(index, op, value, value_two) in conjunct {
            let Some(bits) = arg_bits(def, index) else {
                // The kernel ignores this register. An allow rule testing it is dropped
                // (allowing less); a deny rule ignores the test (denying more).
                let kept = !action.lets_call_run();
                report.notes.push(format!(
                    "`{}` has no argument {index}: {}",
                    def.name(),
                    if kept { "the deny rule ignores that test" } else { "the allow rule testing it is dropped" }
                ));
                if kept {
                    continue;
                }
                return None;
            };
            let width = crate::valid::width_of_bits(bits);
            match capsule_test(op, value, value_two, u32::from(bits)) {
                Folded::Test(test) => tests.push((index, width, test)),
                Folded::Always(true) => {}
                Folded::Always(false) => {
                    report.notes.push(format!(
                        "`{}`: a rule whose test can never hold for a {bits}-bit argument is dropped",
                        def.name(),
                    ));
                    return None;
                }
            }
        }
        Some(Rule { action, oci_unconditional: conjunct.is_empty(), tests })
    }
}

/// A comparison after narrowing to the argument's width.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Folded {
    Test(Test),
    Always(bool),
}

/// The Capsule test equivalent to an OCI comparison on an argument the kernel reads
/// `bits` bits of (16 for `umode_t`, 32, 64).
///
/// libseccomp compares the whole 64-bit register; the kernel reads a narrower
/// argument's low bits only. For such an argument the OCI test is read on a
/// zero-extended register (what a caller passing that value produces), so a value that
/// does not fit folds to always-true or always-false. A sign-extended negative constant
/// (`-100` written as 0xffff_ffff_ffff_ff9c) in `==`/`!=` on an int is read as the
/// 32-bit value it extends.
pub(crate) fn capsule_test(op: Op, value: u64, value_two: u64, bits: u32) -> Folded {
    let max = crate::valid::low_bits(bits);
    let narrow = |v: u64| -> Option<u64> {
        if v <= max {
            Some(v)
        } else if bits == 32 && (i32::MIN as i64..0).contains(&(v as i64)) {
            Some(v & max)
        } else {
            None
        }
    };
    let test = match op {
        Op::Eq => match narrow(value) {
            Some(v) => Test::Eq(v),
            None => return Folded::Always(false),
        },
        Op::Ne => match narrow(value) {
            Some(v) => Test::Ne(v),
            None => return Folded::Always(true),
        },
        Op::Lt if value > max => return Folded::Always(true),
        Op::Le if value >= max => return Folded::Always(true),
        Op::Gt if value >= max => return Folded::Always(false),
        Op::Ge if value > max => return Folded::Always(false),
        Op::Lt => Test::Lt(value),
        Op::Le => Test::Le(value),
        Op::Gt => Test::Gt(value),
        Op::Ge => Test::Ge(value),
        Op::MaskedEq => {
            let (mask, want) = (value, value_two);
            // The high half of a zero-extended register is 0: it matches a wanted 0
            // under any mask and never a wanted 1.
            if want & !mask != 0 || want > max {
                return Folded::Always(false);
            }
            Test::MaskedEq { mask: mask & max, value: want }
        }
    };
    match test {
        Test::Lt(0) => Folded::Always(false),
        Test::Ge(0) => Folded::Always(true),
        Test::MaskedEq { mask: 0, .. } => Folded::Always(true),
        test => Folded::Test(test),
    }
}

/// How many bits of argument `index` the kernel reads, or `None` when the syscall has
/// no such argument.
fn arg_bits(def: &SyscallDef, index: u8) -> Option<u8> {
    if !def.args_known {
        return Some(64);
    }
    def.args().get(usize::from(index)).map(|a| a.bits)
}

fn arg_name(def: &SyscallDef, index: u8) -> String {
    match def.args().get(usize::from(index)) {
        Some(a) if def.args_known => a.display_name().to_string(),
        _ => format!("arg{index}"),
    }
}

/// The errno an entry gives: `errnoRet`, or containers/common's `errno` name; when a
/// profile gives both (podman's does), they must agree.
fn errno_ret(number: Option<u32>, name: Option<&str>, place: &str) -> Result<Option<u32>, ImportError> {
    let Some(name) = name else { return Ok(number) };
    let Some(value) = tables::errno_value(name) else {
        return Err(ImportError::UnknownErrno { place: place.into(), name: name.into() });
    };
    match number {
        Some(number) if number != u32::from(value) => {
            Err(ImportError::ErrnoDisagrees { place: place.into(), number, name: name.into() })
        }
        _ => Ok(Some(u32::from(value))),
    }
}

fn action(name: &str, errno_ret: Option<u32>, place: &str) -> Result<Action, ImportError> {
    action_from_oci(name, errno_ret).map_err(|problem| match problem {
        ActionProblem::Unknown => ImportError::UnknownAction { place: place.into(), action: name.into() },
        ActionProblem::Delegated => ImportError::DelegatedAction { place: place.into(), action: name.into() },
        ActionProblem::ErrnoOutOfRange => {
            ImportError::ErrnoOutOfRange { place: place.into(), errno: errno_ret.unwrap_or_default() }
        }
    })
}

/// One OCI comparison: argument index, operator, `value`, `valueTwo`.
type Comparison = (u8, Op, u64, u64);

/// An entry's conditions as alternatives of conjunctions.
///
/// runc passes all of an entry's `args` as one ANDed rule, except when two of them
/// test the same argument, which libseccomp does not accept in one rule: then each
/// becomes its own rule, and they are alternatives.
fn conditions(entry: &SyscallEntry, place: &str) -> Result<Vec<Vec<Comparison>>, ImportError> {
    let mut all = Vec::new();
    for arg in entry.args.iter().flatten() {
        let op = Op::from_oci_name(&arg.op)
            .ok_or_else(|| ImportError::UnknownOp { place: place.into(), op: arg.op.clone() })?;
        let index = u8::try_from(arg.index)
            .ok()
            .filter(|i| *i < 6)
            .ok_or(ImportError::ArgIndex { place: place.into(), index: arg.index })?;
        all.push((index, op, arg.value, arg.value_two));
    }
    let indices: BTreeSet<u8> = all.iter().map(|c| c.0).collect();
    Ok(if indices.len() == all.len() { vec![all] } else { all.into_iter().map(|c| vec![c]).collect() })
}

/// Docker's resolution of `excludes` then `includes` (moby profiles/seccomp): an
/// excluded arch, any excluded cap held, or a kernel at least `excludes.minKernel`
/// drops the entry; so does an arch not included, any included cap not held, or a
/// kernel older than `includes.minKernel`.
fn applies(entry: &SyscallEntry, go_arch: &str, opts: &ImportOptions, place: &str) -> Result<bool, ImportError> {
    let kernel_at_least = |v: &String| -> Result<bool, ImportError> {
        let min = parse_kernel_version(v)
            .ok_or_else(|| ImportError::MinKernel { place: place.into(), version: v.clone() })?;
        Ok(opts.kernel >= min)
    };
    if let Some(ex) = &entry.excludes {
        if ex.arches.iter().flatten().any(|a| a == go_arch) || ex.caps.iter().flatten().any(|c| opts.caps.contains(c)) {
            return Ok(false);
        }
        if let Some(v) = &ex.min_kernel
            && kernel_at_least(v)?
        {
            return Ok(false);
        }
    }
    if let Some(inc) = &entry.includes {
        if let Some(arches) = &inc.arches
            && !arches.is_empty()
            && !arches.iter().any(|a| a == go_arch)
        {
            return Ok(false);
        }
        if inc.caps.iter().flatten().any(|c| !opts.caps.contains(c)) {
            return Ok(false);
        }
        if let Some(v) = &inc.min_kernel
            && !kernel_at_least(v)?
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `"4.8"` or `"5.10.0"` → (major, minor).
pub fn parse_kernel_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map_or(Some(0), |m| m.parse().ok())?;
    Some((major, minor))
}

/// The foreign ABIs of the target the profile writes rules for (Docker adds an
/// `archMap` entry's `subArchitectures` when its `architecture` is the native one).
fn foreign_abis(profile: &Profile, target: Target, native: &str) -> Vec<String> {
    let subs = scmp_sub_arches(target);
    let mut found = BTreeSet::new();
    for a in profile.architectures.iter().flatten() {
        if subs.contains(&a.as_str()) {
            found.insert(a.clone());
        }
    }
    for m in profile.arch_map.iter().flatten().filter(|m| m.architecture == native) {
        found.extend(m.sub_architectures.iter().flatten().filter(|a| subs.contains(&a.as_str())).cloned());
    }
    found.into_iter().collect()
}

fn render(
    profile: &Profile,
    default: Action,
    foreign_arch: Action,
    rules: &BTreeMap<&'static str, Vec<Rule>>,
    opts: &ImportOptions,
    report: &ImportReport,
) -> String {
    let table = tables::table(opts.arch);
    let mut out = String::new();
    let mut comment = |text: &str| {
        for line in wrap(text, 86) {
            out.push_str(if line.is_empty() { "#\n" } else { "# " });
            if !line.is_empty() {
                out.push_str(&line);
                out.push('\n');
            }
        }
    };
    comment(&format!(
        "Imported by `capsulec import-oci` from the OCI seccomp profile {}, for {}.",
        opts.source.as_deref().map_or("(unnamed)".to_string(), |s| format!("`{s}`")),
        opts.arch
    ));
    let caps: Vec<&str> = opts.caps.iter().map(String::as_str).collect();
    comment(&format!(
        "Capabilities assumed for includes/excludes: {}. Kernel assumed for minKernel: {}.{}.",
        if caps.is_empty() { "none".to_string() } else { caps.join(", ") },
        opts.kernel.0,
        opts.kernel.1
    ));
    comment(&format!(
        "Profile default: {}{}. Entries left out by includes/excludes: {}; entries with the default's action (runc skips them): {}.",
        profile.default_action,
        match (profile.default_errno_ret, profile.default_errno.as_deref()) {
            (Some(e), _) => format!(" (errnoRet {e})"),
            (None, Some(name)) => format!(" (errno {name})"),
            (None, None) => String::new(),
        },
        report.filtered_entries,
        report.redundant_entries
    ));
    if !report.dropped_names.is_empty() {
        comment(&format!(
            "Dropped {} name(s) that {} does not have: {}.",
            report.dropped_names.len(),
            opts.arch,
            report.dropped_names.join(", ")
        ));
    }
    for note in &report.notes {
        comment(&format!("Note: {note}."));
    }
    comment("Decisions: see docs/oci.md for how OCI rules map to Capsule rules.");
    out.push('\n');

    let _ = writeln!(out, "version: 1");
    let _ = writeln!(out, "name: {}", yaml_string(&opts.name));
    let _ = writeln!(
        out,
        "description: {}",
        yaml_string(&format!("Imported from an OCI seccomp profile for {}", opts.arch))
    );
    let _ = writeln!(out, "default: {default}");
    let _ = writeln!(out, "newer-syscalls: errno(ENOSYS)   # what runc answers for syscalls newer than it knows");
    let _ = writeln!(out, "foreign-arch: {foreign_arch}");
    let _ = writeln!(out, "targets: [{}]", opts.arch);

    let mut allow = Vec::new();
    let mut deny = Vec::new();
    for (name, list) in rules {
        let def = table.by_name(name).expect("rules only name syscalls of the table");
        for rule in list {
            let cond = rule
                .tests
                .iter()
                .map(|(index, _, test)| condition_text(&arg_name(def, *index), test))
                .collect::<Vec<_>>()
                .join(" && ");
            match (rule.action, cond.is_empty()) {
                (Action::Allow, true) => allow.push(format!("- {name}")),
                (Action::Allow, false) => allow.push(format!("- {name}: {cond}")),
                (action, true) => deny.push(format!("- {name}: {{ action: {action} }}")),
                (action, false) => deny.push(format!("- {name}: {{ when: \"{cond}\", action: {action} }}")),
            }
        }
    }
    if !allow.is_empty() || !deny.is_empty() {
        out.push_str("\nsyscalls:\n");
    }
    for (section, lines) in [("allow", &allow), ("deny", &deny)] {
        if lines.is_empty() {
            continue;
        }
        let _ = writeln!(out, "  {section}:");
        for line in lines {
            let _ = writeln!(out, "    {line}");
        }
    }
    // An OCI profile does not restrict set-id modes; without this line the policy
    // would deny them (docs/policy.md, `setid`).
    out.push_str("\nfilesystem:\n  setid: true   # as the profile: set-id modes are not restricted\n");
    out
}

fn condition_text(arg: &str, test: &Test) -> String {
    let num = |v: u64| {
        if v < 4096 { v.to_string() } else { format!("{v:#x}") }
    };
    match test {
        Test::Eq(v) => format!("{arg} == {}", num(*v)),
        Test::Ne(v) => format!("{arg} != {}", num(*v)),
        Test::Lt(v) => format!("{arg} < {}", num(*v)),
        Test::Le(v) => format!("{arg} <= {}", num(*v)),
        Test::Gt(v) => format!("{arg} > {}", num(*v)),
        Test::Ge(v) => format!("{arg} >= {}", num(*v)),
        Test::MaskedEq { mask, value } => format!("{arg} & {mask:#x} == {}", num(*value)),
        Test::MaskedNe { mask, value } => format!("{arg} & {mask:#x} != {}", num(*value)),
        Test::In(vs) => format!("{arg} in [{}]", vs.iter().map(|v| num(*v)).collect::<Vec<_>>().join(", ")),
        Test::NotIn(vs) => format!("{arg} not in [{}]", vs.iter().map(|v| num(*v)).collect::<Vec<_>>().join(", ")),
    }
}

/// A double-quoted YAML scalar.
fn yaml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Greedy word wrap; a single over-long word gets its own line.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("never empty");
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(word.to_string());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_on_a_64_bit_argument_are_taken_as_written() {
        let w = 64;
        assert_eq!(capsule_test(Op::Eq, 7, 0, w), Folded::Test(Test::Eq(7)));
        assert_eq!(capsule_test(Op::Ne, 1 << 40, 0, w), Folded::Test(Test::Ne(1 << 40)));
        assert_eq!(capsule_test(Op::Lt, 38, 0, w), Folded::Test(Test::Lt(38)));
        assert_eq!(capsule_test(Op::Le, 38, 0, w), Folded::Test(Test::Le(38)));
        assert_eq!(capsule_test(Op::Gt, 40, 0, w), Folded::Test(Test::Gt(40)));
        assert_eq!(capsule_test(Op::Ge, 40, 0, w), Folded::Test(Test::Ge(40)));
        assert_eq!(
            capsule_test(Op::MaskedEq, 0x7e02_0000, 0, w),
            Folded::Test(Test::MaskedEq { mask: 0x7e02_0000, value: 0 })
        );
        assert_eq!(capsule_test(Op::Lt, 0, 0, w), Folded::Always(false));
        assert_eq!(capsule_test(Op::Ge, 0, 0, w), Folded::Always(true));
        assert_eq!(capsule_test(Op::MaskedEq, 0xf0, 0x0f, w), Folded::Always(false));
    }

    /// A `umode_t` is 16 bits to the kernel: what does not fit folds, masks narrow, and
    /// the result lowers (`mode < 0x10000` would be E0205 in a policy).
    #[test]
    fn ops_on_a_16_bit_argument_fold_at_16_bits() {
        assert_eq!(capsule_test(Op::Lt, 0x1_0000, 0, 16), Folded::Always(true));
        assert_eq!(capsule_test(Op::Le, 0xffff, 0, 16), Folded::Always(true));
        assert_eq!(capsule_test(Op::Eq, 0o777 | 0x1_0000, 0, 16), Folded::Always(false));
        assert_eq!(capsule_test(Op::Lt, 0o1000, 0, 16), Folded::Test(Test::Lt(0o1000)));
        assert_eq!(
            capsule_test(Op::MaskedEq, 0xffff_ffff, 0o700, 16),
            Folded::Test(Test::MaskedEq { mask: 0xffff, value: 0o700 })
        );
    }

    #[test]
    fn ops_on_a_32_bit_argument_read_a_zero_extended_register() {
        let w = 32;
        assert_eq!(capsule_test(Op::Eq, 0xffff_ffff, 0, w), Folded::Test(Test::Eq(0xffff_ffff)));
        assert_eq!(capsule_test(Op::Eq, 1 << 32, 0, w), Folded::Always(false));
        assert_eq!(capsule_test(Op::Ne, 1 << 32, 0, w), Folded::Always(true));
        // AT_FDCWD as a 64-bit constant means the 32-bit -100.
        assert_eq!(capsule_test(Op::Eq, -100i64 as u64, 0, w), Folded::Test(Test::Eq(0xffff_ff9c)));
        assert_eq!(capsule_test(Op::Lt, 1 << 32, 0, w), Folded::Always(true));
        assert_eq!(capsule_test(Op::Le, u32::MAX as u64, 0, w), Folded::Always(true));
        assert_eq!(capsule_test(Op::Gt, u32::MAX as u64, 0, w), Folded::Always(false));
        assert_eq!(capsule_test(Op::Ge, 1 << 32, 0, w), Folded::Always(false));
        assert_eq!(
            capsule_test(Op::MaskedEq, 0xffff_0000_0000_00ff, 0x12, w),
            Folded::Test(Test::MaskedEq { mask: 0xff, value: 0x12 })
        );
        assert_eq!(capsule_test(Op::MaskedEq, u64::MAX, 1 << 33, w), Folded::Always(false));
    }

    #[test]
    fn same_index_conditions_become_alternatives_as_in_runc() {
        let arg = |index, op: &str| super::super::ArgCondition { index, value: 1, value_two: 0, op: op.into() };
        let entry = |args| SyscallEntry {
            names: Some(vec!["x".into()]),
            action: "SCMP_ACT_ALLOW".into(),
            args: Some(args),
            ..Default::default()
        };
        let anded = conditions(&entry(vec![arg(0, "SCMP_CMP_EQ"), arg(1, "SCMP_CMP_NE")]), "t").unwrap();
        assert_eq!(anded.len(), 1);
        assert_eq!(anded[0].len(), 2);
        let split = conditions(&entry(vec![arg(0, "SCMP_CMP_GT"), arg(0, "SCMP_CMP_LT")]), "t").unwrap();
        assert_eq!(split, vec![vec![(0, Op::Gt, 1, 0)], vec![(0, Op::Lt, 1, 0)]]);
        assert!(matches!(
            conditions(&entry(vec![arg(6, "SCMP_CMP_EQ")]), "t"),
            Err(ImportError::ArgIndex { index: 6, .. })
        ));
        assert!(matches!(
            conditions(&entry(vec![arg(0, "SCMP_CMP_MASKED_NE")]), "t"),
            Err(ImportError::UnknownOp { .. })
        ));
    }

    /// containers/common (podman) names the errno beside or instead of the number;
    /// a name that is unknown, or that disagrees with the number, is refused.
    #[test]
    fn errno_names_are_read_and_checked_against_errno_ret() {
        assert_eq!(errno_ret(Some(38), Some("ENOSYS"), "t").unwrap(), Some(38));
        assert_eq!(errno_ret(None, Some("EPERM"), "t").unwrap(), Some(1));
        assert_eq!(errno_ret(Some(22), None, "t").unwrap(), Some(22));
        assert_eq!(errno_ret(None, None, "t").unwrap(), None);
        assert!(matches!(errno_ret(Some(1), Some("ENOSYS"), "t"), Err(ImportError::ErrnoDisagrees { number: 1, .. })));
        assert!(matches!(errno_ret(None, Some("EWHATEVER"), "t"), Err(ImportError::UnknownErrno { .. })));
        let json = r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrno": "ENOSYS",
            "syscalls": [{"names": ["reboot"], "action": "SCMP_ACT_ERRNO", "errno": "EACCES"},
                         {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]}"#;
        let yaml = import_oci(json, &ImportOptions::new(Target::LinuxX86_64)).unwrap().yaml;
        assert!(yaml.contains("default: errno(ENOSYS)"), "{yaml}");
        assert!(yaml.contains("errno(EACCES)"), "{yaml}");
    }

    #[test]
    fn includes_and_excludes_follow_docker() {
        let mut opts = ImportOptions::new(Target::LinuxX86_64);
        opts.kernel = (5, 4);
        let filter = |arches: &[&str], caps: &[&str], min: Option<&str>| {
            Some(super::super::Filter {
                arches: Some(arches.iter().map(|s| s.to_string()).collect()),
                caps: Some(caps.iter().map(|s| s.to_string()).collect()),
                min_kernel: min.map(str::to_string),
            })
        };
        let with = |includes, excludes| SyscallEntry { includes, excludes, ..Default::default() };
        let ok = |e: SyscallEntry| applies(&e, "amd64", &opts, "t").unwrap();
        assert!(ok(with(None, None)));
        assert!(ok(with(filter(&["amd64", "x32"], &[], None), None)));
        assert!(!ok(with(filter(&["arm64"], &[], None), None)));
        assert!(!ok(with(None, filter(&["amd64"], &[], None))));
        // Every included cap must be held; any excluded cap held excludes.
        assert!(ok(with(filter(&[], &["CAP_CHOWN", "CAP_KILL"], None), None)));
        assert!(!ok(with(filter(&[], &["CAP_CHOWN", "CAP_SYS_ADMIN"], None), None)));
        assert!(!ok(with(None, filter(&[], &["CAP_SYS_ADMIN", "CAP_KILL"], None))));
        assert!(ok(with(None, filter(&["s390x"], &["CAP_SYS_ADMIN"], None))));
        // minKernel: included from that version on, excluded from that version on.
        assert!(ok(with(filter(&[], &[], Some("4.8")), None)));
        assert!(!ok(with(filter(&[], &[], Some("5.10")), None)));
        assert!(ok(with(None, filter(&[], &[], Some("5.10")))));
        assert!(!ok(with(None, filter(&[], &[], Some("5.4")))));
        assert!(applies(&with(filter(&[], &[], Some("five")), None), "amd64", &opts, "t").is_err());
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel_version("4.8"), Some((4, 8)));
        assert_eq!(parse_kernel_version("5.10.12"), Some((5, 10)));
        assert_eq!(parse_kernel_version("6"), Some((6, 0)));
        assert_eq!(parse_kernel_version("x.1"), None);
    }
}
