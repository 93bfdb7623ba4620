//! libseccomp as a second compiler: the differential test (compiler/tests/
//! libseccomp_diff.rs) and the benchmark (benches/, which includes this file by path)
//! both build filters with it.
//!
//! The filter is built by a small C program (`export_filter.c`, compiled here with gcc
//! against the system's libseccomp) from a [`Spec`]: the default and bad-arch actions,
//! one architecture, and `seccomp_rule_add_array` rules. [`spec_from_oci`] writes the
//! spec of an OCI/Docker profile straight from its JSON, the way Docker and runc load
//! it, without going through Capsule's importer.

#![allow(dead_code)] // Each includer uses a different part.

use capsule_artifacts::Target;
use capsule_compiler::ir::{Arg, Cond, Test};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const HELPER_SOURCE: &str = include_str!("export_filter.c");

/// libseccomp's `enum scmp_compare`: the OCI format's operators.
pub use capsule_compiler::oci::Op as CmpOp;

/// The operator as the helper program's spec names it (`SCMP_CMP_` dropped).
fn spec_name(op: CmpOp) -> &'static str {
    op.oci_name().trim_start_matches("SCMP_CMP_")
}

/// One `struct scmp_arg_cmp`: libseccomp compares all 64 bits of the argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cmp {
    pub arg: u8,
    pub op: CmpOp,
    pub a: u64,
    pub b: u64,
}

/// One `seccomp_rule_add_array` call: all comparisons must hold (at most one per
/// argument, as libseccomp 2.5 demands).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    /// The seccomp return value (libseccomp's `SCMP_ACT_*` values are the kernel's).
    pub action: u32,
    pub syscall: String,
    pub cmps: Vec<Cmp>,
}

/// Everything libseccomp is told about a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub target: Target,
    pub default: u32,
    pub badarch: u32,
    /// `SCMP_FLTATR_CTL_OPTIMIZE`: 1 (libseccomp's default) or 2 (binary tree).
    pub optimize: u8,
    pub rules: Vec<Rule>,
}

impl Spec {
    fn to_text(&self) -> String {
        let arch = match self.target {
            Target::LinuxX86_64 => "x86_64",
            Target::LinuxAarch64 => "aarch64",
            Target::Macos => unreachable!("libseccomp has no macOS"),
        };
        let mut text = format!(
            "arch {arch}\ndefault {:#x}\nbadarch {:#x}\noptimize {}\n",
            self.default, self.badarch, self.optimize
        );
        for rule in &self.rules {
            write!(text, "rule {:#x} {} {}", rule.action, rule.syscall, rule.cmps.len()).unwrap();
            for c in &rule.cmps {
                write!(text, " {} {} {:#x} {:#x}", c.arg, spec_name(c.op), c.a, c.b).unwrap();
            }
            text.push('\n');
        }
        text
    }
}

/// A filter libseccomp exported.
#[derive(Debug, Clone)]
pub struct Exported {
    /// Raw `struct sock_filter[]`.
    pub bpf: Vec<u8>,
    /// Rule names libseccomp does not know on the arch; their rules were skipped.
    pub unknown: BTreeSet<String>,
}

/// The compiled helper.
pub struct LibSeccomp {
    dir: tempfile::TempDir,
    exe: PathBuf,
}

impl LibSeccomp {
    /// Compile the helper. `Err` says why libseccomp cannot be used here (no gcc, no
    /// libseccomp headers); a helper that does not compile with them present panics.
    pub fn build() -> Result<LibSeccomp, String> {
        let probe = Command::new("gcc")
            .args(["-fsyntax-only", "-x", "c", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .and_then(|mut gcc| {
                gcc.stdin.take().unwrap().write_all(b"#include <seccomp.h>\n")?;
                gcc.wait()
            });
        match probe {
            Err(e) => return Err(format!("gcc cannot run ({e})")),
            Ok(status) if !status.success() => {
                return Err("libseccomp headers are absent (apt-get install libseccomp-dev)".into());
            }
            Ok(_) => {}
        }
        let dir = tempfile::tempdir().expect("temporary directory");
        let source = dir.path().join("export_filter.c");
        let exe = dir.path().join("export_filter");
        std::fs::write(&source, HELPER_SOURCE).expect("write helper source");
        let out = Command::new("gcc")
            .args(["-O1", "-Wall", "-Werror", "-o"])
            .arg(&exe)
            .arg(&source)
            .arg("-lseccomp")
            .output()
            .expect("run gcc");
        assert!(out.status.success(), "export_filter.c does not build:\n{}", String::from_utf8_lossy(&out.stderr));
        Ok(LibSeccomp { dir, exe })
    }

    /// The libseccomp version the helper links against, as `seccomp_version` says.
    pub fn version() -> String {
        let out = Command::new("dpkg-query").args(["-W", "-f", "${Version}", "libseccomp2"]).output();
        match out {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
            _ => "unknown".into(),
        }
    }

    /// Build and export the filter of `spec`.
    pub fn export(&self, spec: &Spec) -> Exported {
        let out_path = self.dir.path().join("filter.bpf");
        let mut child = Command::new(&self.exe)
            .arg(&out_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run export_filter");
        child.stdin.take().unwrap().write_all(spec.to_text().as_bytes()).expect("write spec");
        let out = child.wait_with_output().expect("wait for export_filter");
        assert!(out.status.success(), "libseccomp refused the spec: {}", String::from_utf8_lossy(&out.stderr));
        let unknown = String::from_utf8(out.stdout)
            .expect("helper output is UTF-8")
            .lines()
            .map(|l| l.strip_prefix("unknown ").expect("helper prints `unknown NAME` lines").to_owned())
            .collect();
        let bpf = std::fs::read(&out_path).expect("read exported filter");
        Exported { bpf, unknown }
    }
}

/// The seccomp return value of an `SCMP_ACT_*` name with its `errnoRet`, as runc
/// reads it (an errno action without `errnoRet` is EPERM).
pub fn oci_action(name: &str, errno_ret: Option<u64>) -> Result<u32, String> {
    let data = |default: u64| u32::try_from(errno_ret.unwrap_or(default) & 0xffff).unwrap();
    Ok(match name {
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => 0,
        "SCMP_ACT_KILL_PROCESS" => 0x8000_0000,
        "SCMP_ACT_TRAP" => 0x0003_0000,
        "SCMP_ACT_ERRNO" => 0x0005_0000 | data(1),
        "SCMP_ACT_LOG" => 0x7ffc_0000,
        "SCMP_ACT_ALLOW" => 0x7fff_0000,
        _ => return Err(format!("action {name} is not handled")),
    })
}

/// Docker's name of an architecture in `includes.arches` (Go's GOARCH).
fn docker_arch(target: Target) -> &'static str {
    match target {
        Target::LinuxX86_64 => "amd64",
        Target::LinuxAarch64 => "arm64",
        Target::Macos => unreachable!("libseccomp has no macOS"),
    }
}

/// The libseccomp spec of an OCI/Docker seccomp profile for one arch, capability set
/// and kernel version, resolved as moby (`includes`/`excludes`) and runc
/// (`matchCall`) do: entries whose action is the default are skipped, and an entry
/// with two conditions on the same argument becomes one rule per condition.
/// `badarch` is what the caller wants for other ABIs (the profile's sub-arches are
/// left out: the filter has the target's arch only).
pub fn spec_from_oci(
    profile: &serde_json::Value,
    target: Target,
    caps: &BTreeSet<String>,
    kernel: (u32, u32),
    badarch: u32,
) -> Result<Spec, String> {
    let str_list = |v: Option<&serde_json::Value>| -> Vec<String> {
        v.and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    let default =
        oci_action(profile["defaultAction"].as_str().ok_or("no defaultAction")?, profile["defaultErrnoRet"].as_u64())?;
    let arch = docker_arch(target).to_owned();
    let mut rules = Vec::new();
    for entry in profile["syscalls"].as_array().ok_or("no syscalls")? {
        let includes = &entry["includes"];
        let excludes = &entry["excludes"];
        let inc_arches = str_list(includes.get("arches"));
        let inc_caps = str_list(includes.get("caps"));
        let exc_arches = str_list(excludes.get("arches"));
        let exc_caps = str_list(excludes.get("caps"));
        if (!inc_arches.is_empty() && !inc_arches.contains(&arch))
            || !inc_caps.iter().all(|c| caps.contains(c))
            || exc_arches.contains(&arch)
            || exc_caps.iter().any(|c| caps.contains(c))
        {
            continue;
        }
        if let Some(min) = includes.get("minKernel").and_then(|v| v.as_str()) {
            let mut parts = min.split('.').map(|p| p.parse::<u32>());
            let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) else {
                return Err(format!("minKernel {min}"));
            };
            if kernel < (major, minor) {
                continue;
            }
        }
        let action = oci_action(entry["action"].as_str().ok_or("entry without action")?, entry["errnoRet"].as_u64())?;
        if action == default {
            continue;
        }
        let mut cmps = Vec::new();
        for arg in entry["args"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let op = arg["op"].as_str().and_then(CmpOp::from_oci_name).ok_or_else(|| format!("op in {arg}"))?;
            let index = arg["index"].as_u64().filter(|i| *i < 6).ok_or_else(|| format!("index in {arg}"))?;
            cmps.push(Cmp {
                arg: index as u8,
                op,
                a: arg["value"].as_u64().ok_or_else(|| format!("value in {arg}"))?,
                b: arg["valueTwo"].as_u64().unwrap_or(0),
            });
        }
        let indices: BTreeSet<u8> = cmps.iter().map(|c| c.arg).collect();
        let groups: Vec<Vec<Cmp>> =
            if indices.len() == cmps.len() { vec![cmps] } else { cmps.into_iter().map(|c| vec![c]).collect() };
        let mut names = str_list(entry.get("names"));
        names.extend(entry["name"].as_str().map(str::to_owned));
        for name in names {
            for cmps in &groups {
                rules.push(Rule { action, syscall: name.clone(), cmps: cmps.clone() });
            }
        }
    }
    Ok(Spec { target, default, badarch, optimize: 1, rules })
}

// ------------------------------------------------------------------ IR conditions

/// A conjunction of tests.
pub type Conj = Vec<(Arg, Test)>;

pub fn negate(test: &Test) -> Test {
    match test.clone() {
        Test::Eq(x) => Test::Ne(x),
        Test::Ne(x) => Test::Eq(x),
        Test::Lt(x) => Test::Ge(x),
        Test::Le(x) => Test::Gt(x),
        Test::Gt(x) => Test::Le(x),
        Test::Ge(x) => Test::Lt(x),
        Test::MaskedEq { mask, value } => Test::MaskedNe { mask, value },
        Test::MaskedNe { mask, value } => Test::MaskedEq { mask, value },
        Test::In(xs) => Test::NotIn(xs),
        Test::NotIn(xs) => Test::In(xs),
    }
}

/// The condition (or its negation) in disjunctive normal form.
pub fn dnf(cond: &Cond, negated: bool) -> Vec<Conj> {
    match (cond, negated) {
        (Cond::True, false) | (Cond::False, true) => vec![vec![]],
        (Cond::True, true) | (Cond::False, false) => vec![],
        (Cond::Test { arg, test }, _) => vec![vec![(*arg, if negated { negate(test) } else { test.clone() })]],
        (Cond::Not(c), _) => dnf(c, !negated),
        (Cond::And(cs), false) | (Cond::Or(cs), true) => cs.iter().fold(vec![vec![]], |acc, c| {
            let terms = dnf(c, negated);
            acc.iter().flat_map(|a| terms.iter().map(move |t| [a.clone(), t.clone()].concat())).collect()
        }),
        (Cond::Or(cs), false) | (Cond::And(cs), true) => cs.iter().flat_map(|c| dnf(c, negated)).collect(),
    }
}
