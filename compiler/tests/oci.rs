//! OCI interop: Docker's and podman's default profiles (their Debian packages, see
//! `profiles/mod.rs`) imported for each target must decide every
//! call as the profile does, and exporting must keep the decisions.
//!
//! The profile's decisions come from a reference evaluator written here from the
//! documented model of runc + libseccomp (docs/oci.md), independently of the importer:
//! Docker's includes/excludes, entries equal to the default skipped, same-index
//! conditions split into alternatives, an unconditional rule replacing the conditional
//! ones of its syscall, and otherwise the matching rule of highest kernel precedence.
//! Comparisons are on the full 64-bit register, as libseccomp makes them.

use capsule_artifacts::Target;
use capsule_compiler::ir::{self, Action, Call, Policy, Width};
use capsule_compiler::oci::{self, ImportOptions};
use capsule_compiler::{front, tables};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

#[path = "profiles/mod.rs"]
mod profiles;

use profiles::{DOCKER, PODMAN, Profile};

// ---------------------------------------------------------------------------------
// The reference evaluator.

#[derive(Debug, Clone)]
struct RefRule {
    action: Action,
    /// (index, op, value, valueTwo), ANDed.
    args: Vec<(usize, String, u64, u64)>,
}

#[derive(Debug)]
struct RefProfile {
    default: Action,
    rules: BTreeMap<String, Vec<RefRule>>,
}

fn ref_action(name: &str, errno: Option<u64>) -> Action {
    match name {
        "SCMP_ACT_ALLOW" => Action::Allow,
        "SCMP_ACT_LOG" => Action::Log,
        "SCMP_ACT_ERRNO" => Action::Errno(errno.unwrap_or(1) as u16),
        "SCMP_ACT_TRAP" => Action::Trap,
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Action::KillThread,
        "SCMP_ACT_KILL_PROCESS" => Action::KillProcess,
        other => panic!("reference evaluator: unexpected action {other}"),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

fn version(v: &Value) -> Option<(u32, u32)> {
    let s = v.as_str()?;
    let mut it = s.split('.').map(|p| p.parse::<u32>().unwrap());
    Some((it.next().unwrap(), it.next().unwrap_or(0)))
}

fn resolve(json: &str, go_arch: &str, caps: &BTreeSet<String>, kernel: (u32, u32)) -> RefProfile {
    let p: Value = serde_json::from_str(json).unwrap();
    let default = ref_action(p["defaultAction"].as_str().unwrap(), p["defaultErrnoRet"].as_u64());
    let mut rules: BTreeMap<String, Vec<RefRule>> = BTreeMap::new();
    for e in p["syscalls"].as_array().into_iter().flatten() {
        let ex = &e["excludes"];
        if strings(&ex["arches"]).iter().any(|a| a == go_arch)
            || strings(&ex["caps"]).iter().any(|c| caps.contains(c))
            || version(&ex["minKernel"]).is_some_and(|v| kernel >= v)
        {
            continue;
        }
        let inc = &e["includes"];
        let arches = strings(&inc["arches"]);
        if (!arches.is_empty() && !arches.iter().any(|a| a == go_arch))
            || strings(&inc["caps"]).iter().any(|c| !caps.contains(c))
            || version(&inc["minKernel"]).is_some_and(|v| kernel < v)
        {
            continue;
        }
        let action = ref_action(e["action"].as_str().unwrap(), e["errnoRet"].as_u64());
        if action == default {
            continue;
        }
        let args: Vec<(usize, String, u64, u64)> = e["args"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                (
                    a["index"].as_u64().unwrap() as usize,
                    a["op"].as_str().unwrap().to_string(),
                    a["value"].as_u64().unwrap(),
                    a["valueTwo"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        let indices: BTreeSet<usize> = args.iter().map(|a| a.0).collect();
        let alternatives =
            if indices.len() == args.len() { vec![args] } else { args.into_iter().map(|a| vec![a]).collect() };
        let mut names = strings(&e["names"]);
        names.extend(e["name"].as_str().map(str::to_string));
        for name in names {
            for args in &alternatives {
                rules.entry(name.clone()).or_default().push(RefRule { action, args: args.clone() });
            }
        }
    }
    RefProfile { default, rules }
}

fn ref_precedence(a: Action) -> u8 {
    match a {
        Action::KillProcess => 0,
        Action::KillThread => 1,
        Action::Trap => 2,
        Action::Errno(_) => 3,
        Action::Log => 4,
        Action::Allow => 5,
    }
}

fn ref_decide(p: &RefProfile, name: &str, regs: &[u64; 6]) -> Action {
    let Some(rules) = p.rules.get(name) else {
        return p.default;
    };
    if let Some(r) = rules.iter().find(|r| r.args.is_empty()) {
        return r.action;
    }
    let matches = |r: &RefRule| {
        r.args.iter().all(|(i, op, v, v2)| {
            let x = regs[*i];
            match op.as_str() {
                "SCMP_CMP_EQ" => x == *v,
                "SCMP_CMP_NE" => x != *v,
                "SCMP_CMP_LT" => x < *v,
                "SCMP_CMP_LE" => x <= *v,
                "SCMP_CMP_GT" => x > *v,
                "SCMP_CMP_GE" => x >= *v,
                "SCMP_CMP_MASKED_EQ" => x & v == *v2,
                other => panic!("reference evaluator: unexpected op {other}"),
            }
        })
    };
    let mut best: Option<Action> = None;
    for r in rules.iter().filter(|r| matches(r)) {
        best = match best {
            Some(b) if ref_precedence(b) <= ref_precedence(r.action) => Some(b),
            _ => Some(r.action),
        };
    }
    best.unwrap_or(p.default)
}

// ---------------------------------------------------------------------------------
// Helpers.

fn go_arch(t: Target) -> &'static str {
    match t {
        Target::LinuxX86_64 => "amd64",
        Target::LinuxAarch64 => "arm64",
        Target::Macos => unreachable!(),
    }
}

fn docker_caps() -> BTreeSet<String> {
    DOCKER.cap_set()
}

/// Check the YAML with the real front-end: no errors, and the IR.
fn checked(yaml: &str) -> Policy {
    let checked = front::check(yaml);
    let errors: Vec<_> = checked.diagnostics.iter().filter(|d| d.is_error()).collect();
    assert!(errors.is_empty(), "imported policy has errors: {errors:#?}\n{yaml}");
    checked.policy.expect("no errors, so a policy")
}

/// Every constant the profile compares with, and its neighbours.
fn interesting_values(json: &str) -> BTreeSet<u64> {
    let p: Value = serde_json::from_str(json).unwrap();
    let mut out: BTreeSet<u64> =
        [0, 1, 2, 0x7fff_ffff, 0x8000_0000, u32::MAX as u64, 1 << 32, u64::MAX, u64::MAX - 1].into();
    for e in p["syscalls"].as_array().into_iter().flatten() {
        for a in e["args"].as_array().into_iter().flatten() {
            for key in ["value", "valueTwo"] {
                let v = a[key].as_u64().unwrap_or(0);
                out.extend([v, v.wrapping_sub(1), v.wrapping_add(1), !v, v | 1, v & (v.wrapping_sub(1))]);
                // One bit of a mask at a time, and the mask with a bit outside it.
                for bit in (0..64).map(|b| 1u64 << b).filter(|b| v & b != 0) {
                    out.insert(bit);
                    out.insert(bit | 0x1000_0000_0000);
                }
            }
        }
    }
    out
}

/// Argument vectors: each interesting value in each argument alone, and in all at
/// once. A 32-bit argument only gets values a caller passing that type produces
/// (zero-extended): on others libseccomp and the kernel read different values, which
/// is the documented difference (see `a_32_bit_argument_is_read_on_its_low_half`).
fn vectors(def: Option<&tables::SyscallDef>, values: &BTreeSet<u64>) -> Vec<[u64; 6]> {
    let fits = |i: usize, v: u64| match def {
        Some(d) if d.args_known => d.args().get(i).is_none_or(|a| a.bits > 32 || v <= u32::MAX as u64),
        _ => true,
    };
    let mut out = vec![[0u64; 6]];
    for &v in values {
        let mut all = [0u64; 6];
        for i in 0..6 {
            if fits(i, v) {
                let mut one = [0u64; 6];
                one[i] = v;
                out.push(one);
                all[i] = v;
            }
        }
        out.push(all);
    }
    out
}

/// Compare `decide` on the policy with the reference on the profile for every number of
/// the target's table.
fn assert_same_decisions(policy: &Policy, target: Target, reference: &RefProfile, values: &BTreeSet<u64>) -> usize {
    let table = tables::table(target);
    let arch = target.audit_arch().unwrap();
    let mut compared = 0;
    for nr in 0..=table.max_nr {
        let def = table.by_nr(nr);
        let conditional =
            def.and_then(|d| reference.rules.get(d.name())).is_some_and(|rs| rs.iter().any(|r| !r.args.is_empty()));
        let args_list = if conditional { vectors(def, values) } else { vec![[0; 6], [u64::MAX; 6]] };
        for args in args_list {
            let got = ir::decide(policy, target, &Call { arch, nr, args }).action;
            let want = def.map_or(reference.default, |d| ref_decide(reference, d.name(), &args));
            assert_eq!(got, want, "{target} nr {nr} ({:?}) args {args:x?}", def.map(|d| d.name()));
            compared += 1;
        }
    }
    compared
}

fn import(json: &str, target: Target, caps: BTreeSet<String>) -> oci::Imported {
    let opts = ImportOptions {
        caps,
        name: "docker-default".into(),
        source: Some("docker-default.json".into()),
        ..ImportOptions::new(target)
    };
    oci::import_oci(json, &opts).unwrap()
}

// ---------------------------------------------------------------------------------
// The packaged profiles: Docker's default and podman's.

/// Each packaged profile that is readable, with its text.
fn packaged() -> Vec<(Profile, String)> {
    [DOCKER, PODMAN].into_iter().filter_map(|p| Some((p, p.read()?))).collect()
}

#[test]
fn packaged_profiles_import_with_the_same_decisions_on_both_targets() {
    for (profile, json) in packaged() {
        let values = interesting_values(&json);
        for target in Target::LINUX {
            let imported = import(&json, target, profile.cap_set());
            let policy = checked(&imported.yaml);
            let kernel = ImportOptions::new(target).kernel;
            let reference = resolve(&json, go_arch(target), &profile.cap_set(), kernel);
            let compared = assert_same_decisions(&policy, target, &reference, &values);
            assert!(compared > 1000, "{} {compared}", profile.name);
            // Names the table lacks are dropped, listed in the report and the header.
            let table = tables::table(target);
            assert!(!imported.report.dropped_names.is_empty(), "{}", profile.name);
            for name in &imported.report.dropped_names {
                assert!(table.by_name(name).is_none(), "{name}");
                assert!(imported.yaml.contains(name.as_str()), "{name} not listed in the header");
            }
        }
    }
}

/// podman's profile names its errnos (`errno`, `defaultErrno`) beside the numbers;
/// its default is ENOSYS, and its explicit denials EPERM.
#[test]
fn podman_default_imports_its_errnos() {
    let Some(json) = PODMAN.read() else { return };
    let target = Target::LinuxX86_64;
    let imported = import(&json, target, PODMAN.cap_set());
    let yaml = &imported.yaml;
    assert!(yaml.contains("\ndefault: errno(ENOSYS)\n"), "{yaml}");
    let policy = checked(yaml);
    let table = tables::table(target);
    let arch = target.audit_arch().unwrap();
    let decide = |name: &str| {
        ir::decide(&policy, target, &Call { arch, nr: table.by_name(name).unwrap().nr, args: [0; 6] }).action
    };
    // Denied by an entry with `errno: EPERM` (and errnoRet 1).
    assert_eq!(decide("userfaultfd"), Action::Errno(1));
    // Not named at all: the default (podman allows keyctl, not add_key).
    assert_eq!(decide("kexec_load"), Action::Errno(1));
    assert_eq!(decide("add_key"), Action::Errno(38));
    assert_eq!(decide("getppid"), Action::Allow);
}

#[test]
fn docker_default_imports_readably_and_deterministically() {
    let Some(json) = DOCKER.read() else { return };
    let a = import(&json, Target::LinuxX86_64, docker_caps());
    let b = import(&json, Target::LinuxX86_64, docker_caps());
    assert_eq!(a, b);
    let yaml = &a.yaml;
    assert!(
        yaml.starts_with("# Imported by `capsulec import-oci` from the OCI seccomp profile `docker-default.json`"),
        "{yaml}"
    );
    assert!(yaml.contains("\ndefault: errno(EPERM)\n"), "{yaml}");
    assert!(yaml.contains("\ntargets: [linux-x86_64]\n"), "{yaml}");
    // Docker's conditional rules, as a person would write them.
    assert!(yaml.contains("    - personality: persona == 0\n"), "{yaml}");
    assert!(yaml.contains("    - personality: persona == 0xffffffff\n"), "{yaml}");
    assert!(yaml.contains("    - personality: persona == 8\n"), "{yaml}");
    assert!(yaml.contains("    - clone: flags & 0x7e020000 == 0\n"), "{yaml}");
    assert!(yaml.contains("    - clone3: { action: errno(ENOSYS) }\n"), "{yaml}");
    // The profile applies its rules to i386 and x32 too; Capsule gives those the default.
    assert!(yaml.contains("\nforeign-arch: errno(EPERM)\n"), "{yaml}");
    // Only x86_64's own calls: arch_prctl yes, the arm-only ones no.
    assert!(yaml.contains("    - arch_prctl\n"));
    assert!(!yaml.contains("    - breakpoint"));
}

#[test]
fn cap_sys_admin_adds_its_syscalls() {
    let Some(json) = DOCKER.read() else { return };
    let target = Target::LinuxX86_64;
    let mut caps = docker_caps();
    caps.insert("CAP_SYS_ADMIN".into());
    let plain = checked(&import(&json, target, docker_caps()).yaml);
    let admin_import = import(&json, target, caps.clone());
    let admin = checked(&admin_import.yaml);
    let table = tables::table(target);
    let arch = target.audit_arch().unwrap();
    let decide = |p: &Policy, name: &str, args: [u64; 6]| {
        ir::decide(p, target, &Call { arch, nr: table.by_name(name).unwrap().nr, args }).action
    };
    for name in ["mount", "umount2", "setns", "unshare", "bpf", "fanotify_init", "sethostname"] {
        assert_eq!(decide(&plain, name, [0; 6]), Action::Errno(1), "{name} without CAP_SYS_ADMIN");
        assert_eq!(decide(&admin, name, [0; 6]), Action::Allow, "{name} with CAP_SYS_ADMIN");
    }
    // clone: namespaces flags allowed, and clone3 allowed instead of ENOSYS.
    let newns = 0x0002_0000;
    assert_eq!(decide(&plain, "clone", [newns, 0, 0, 0, 0, 0]), Action::Errno(1));
    assert_eq!(decide(&admin, "clone", [newns, 0, 0, 0, 0, 0]), Action::Allow);
    assert_eq!(decide(&plain, "clone3", [0; 6]), Action::Errno(38));
    assert_eq!(decide(&admin, "clone3", [0; 6]), Action::Allow);
    let reference = resolve(&json, "amd64", &caps, ImportOptions::new(target).kernel);
    assert_same_decisions(&admin, target, &reference, &interesting_values(&json));
}

#[test]
fn packaged_profiles_round_trip_through_export() {
    for (profile, json) in packaged() {
        let values = interesting_values(&json);
        for target in Target::LINUX {
            let policy = checked(&import(&json, target, profile.cap_set()).yaml);
            let exported = oci::export_oci(&policy);
            assert!(exported.json.ends_with("}\n"));
            assert_eq!(exported.json, oci::export_oci(&policy).json, "deterministic");
            let kernel = ImportOptions::new(target).kernel;
            let original = resolve(&json, go_arch(target), &profile.cap_set(), kernel);
            let round = resolve(&exported.json, go_arch(target), &BTreeSet::new(), kernel);
            // Where the export warns that a region needed too many OCI rules, it may
            // only deny more (docs/oci.md); everywhere else it is exact.
            let approximated: BTreeSet<&str> = tables::table(target)
                .syscalls
                .iter()
                .map(|d| d.name())
                .filter(|name| exported.warnings.iter().any(|w| w.starts_with(&format!("{target} `{name}`:"))))
                .collect();
            let table = tables::table(target);
            for def in table.syscalls {
                for args in vectors(Some(def), &values) {
                    let (got, want) = (ref_decide(&round, def.name(), &args), ref_decide(&original, def.name(), &args));
                    if approximated.contains(def.name()) {
                        assert!(
                            !got.lets_call_run() || want.lets_call_run(),
                            "{} {target} {} {args:x?}: export runs what the profile denies",
                            profile.name,
                            def.name()
                        );
                    } else {
                        assert_eq!(got, want, "{} {target} {} {args:x?}", profile.name, def.name());
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Export of Capsule's own semantics.

/// A policy using every kind of condition, several deny actions and allow/deny
/// overlaps; the export evaluated by the reference must equal `decide` on every
/// vector, including 32-bit arguments with garbage in the high half.
#[test]
fn export_is_exact_for_every_condition_form() {
    let yaml = r#"
version: 1
name: export-forms
default: errno(EPERM)
targets: [linux-x86_64, linux-aarch64]
syscalls:
  allow:
    - read
    - socket: domain in [AF_UNIX, AF_INET, AF_INET6] && type != 3
    - personality: persona != 0xffffffff
    - ioctl: request not in [0x5401, 0x5413]
    - fcntl: cmd < 5 || cmd >= 1024
    - mmap: prot & 4 != 0
    - clone: flags & (CLONE_NEWUSER | CLONE_NEWNS) == 0
    - kill: "!(sig == 9 || sig > 31)"
    - lseek: whence <= 2
    - openat
  deny:
    - read: { when: "fd == 100", action: kill-process }
    - read: { when: "fd > 200", action: errno(EBADF) }
    - read: { when: "fd >= 250", action: trap }
    - socket: { when: "type == 2", action: errno(EACCES) }
    - openat: { when: "flags & 0x40 != 0", action: errno(EROFS) }
    - openat: { when: "flags & 0x200 != 0", action: errno(EACCES) }
    - ptrace
  audit:
    - write
"#;
    let policy = checked(yaml);
    let exported = oci::export_oci(&policy);
    assert!(exported.warnings.iter().any(|w| w.contains("audit")), "{:?}", exported.warnings);
    assert!(!exported.warnings.iter().any(|w| w.contains("more than")), "no approximation: {:?}", exported.warnings);
    let values: BTreeSet<u64> = [
        0,
        1,
        2,
        3,
        4,
        5,
        9,
        10,
        30,
        31,
        32,
        100,
        199,
        200,
        201,
        249,
        250,
        251,
        1023,
        1024,
        0x40,
        0x200,
        0x240,
        0x5401,
        0x5413,
        0x5414,
        0xffff_fffe,
        0xffff_ffff,
        0x1_0000_0000,
        0xdead_0000_0000_0064,
        0xffff_ffff_0000_0002,
        0xffff_ffff_ffff_ffff,
        0x1000_0000,
        0x2_0000,
        0x2_0002_0000,
    ]
    .into();
    for target in Target::LINUX {
        let reference = resolve(&exported.json, go_arch(target), &BTreeSet::new(), (6, 18));
        let table = tables::table(target);
        let arch = target.audit_arch().unwrap();
        for name in [
            "read",
            "write",
            "socket",
            "personality",
            "ioctl",
            "fcntl",
            "mmap",
            "clone",
            "kill",
            "lseek",
            "openat",
            "ptrace",
            "close",
        ] {
            let def = table.by_name(name).unwrap();
            let mut checked_args = 0;
            for &v in &values {
                for &w in &values {
                    for args in [[v, w, 0, 0, 0, 0], [w, v, v, w, 0, 0], [v, 0, w, 0, 0, 0]] {
                        let want = ir::decide(&policy, target, &Call { arch, nr: def.nr, args }).action;
                        assert_eq!(
                            ref_decide(&reference, name, &args),
                            want,
                            "{target} {name} {args:x?}\n{}",
                            exported.json
                        );
                        checked_args += 1;
                    }
                }
            }
            assert!(checked_args > 1000);
        }
    }
}

#[test]
fn export_is_a_loadable_profile_shape() {
    let policy = checked(
        "version: 1\nname: t\ndefault: kill-process\ntargets: [linux-x86_64]\nsyscalls:\n  allow: [read, write]\n",
    );
    let exported = oci::export_oci(&policy);
    let v: Value = serde_json::from_str(&exported.json).unwrap();
    assert_eq!(v["defaultAction"], "SCMP_ACT_KILL_PROCESS");
    assert_eq!(v["architectures"], serde_json::json!(["SCMP_ARCH_X86_64"]));
    assert_eq!(v["syscalls"], serde_json::json!([{ "names": ["read", "write"], "action": "SCMP_ACT_ALLOW" }]));
    assert!(exported.warnings.is_empty(), "{:?}", exported.warnings);
}

// ---------------------------------------------------------------------------------
// Import details.

fn import_text(json: &str) -> Result<oci::Imported, oci::ImportError> {
    oci::import_oci(json, &ImportOptions::new(Target::LinuxX86_64))
}

#[test]
fn every_op_imports_with_the_profile_semantics() {
    let ops = [
        ("SCMP_CMP_EQ", 5u64, 0u64),
        ("SCMP_CMP_NE", 5, 0),
        ("SCMP_CMP_LT", 5, 0),
        ("SCMP_CMP_LE", 5, 0),
        ("SCMP_CMP_GT", 5, 0),
        ("SCMP_CMP_GE", 5, 0),
        ("SCMP_CMP_MASKED_EQ", 0b110, 0b100),
    ];
    let target = Target::LinuxX86_64;
    let table = tables::table(target);
    for (op, value, value_two) in ops {
        // lseek's `offset` is 64-bit, its `whence` 32-bit.
        for index in [1u32, 2] {
            let json = format!(
                r#"{{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{{"names":["lseek"],"action":"SCMP_ACT_ALLOW","args":[{{"index":{index},"value":{value},"valueTwo":{value_two},"op":"{op}"}}]}}]}}"#
            );
            let imported = import_text(&json).unwrap();
            let policy = checked(&imported.yaml);
            let reference = resolve(&json, "amd64", &BTreeSet::new(), (6, 18));
            let nr = table.by_name("lseek").unwrap().nr;
            for x in 0..16u64 {
                let mut args = [0u64; 6];
                args[index as usize] = x;
                let got = ir::decide(&policy, target, &Call { arch: target.audit_arch().unwrap(), nr, args }).action;
                assert_eq!(got, ref_decide(&reference, "lseek", &args), "{op} arg{index} = {x}\n{}", imported.yaml);
            }
        }
    }
}

#[test]
fn conflicting_rules_resolve_as_libseccomp_does() {
    // An unconditional rule replaces the conditional ones, before or after it.
    let json = r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
        {"names":["kill"],"action":"SCMP_ACT_ERRNO","errnoRet":13,"args":[{"index":1,"value":9,"op":"SCMP_CMP_EQ"}]},
        {"names":["kill"],"action":"SCMP_ACT_ALLOW"},
        {"names":["kill"],"action":"SCMP_ACT_KILL_PROCESS"},
        {"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":3,"op":"SCMP_CMP_GT"}]},
        {"names":["read"],"action":"SCMP_ACT_TRAP","args":[{"index":0,"value":7,"op":"SCMP_CMP_EQ"}]},
        {"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":9,"op":"SCMP_CMP_EQ"}]},
        {"names":["write"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":3,"op":"SCMP_CMP_GT"},{"index":0,"value":9,"op":"SCMP_CMP_LT"}]}
    ]}"#;
    let imported = import_text(json).unwrap();
    let policy = checked(&imported.yaml);
    assert!(imported.report.redundant_entries == 1, "{:?}", imported.report);
    let reference = resolve(json, "amd64", &BTreeSet::new(), (6, 18));
    let values: BTreeSet<u64> = (0..12).chain([u32::MAX as u64]).collect();
    assert_same_decisions(&policy, Target::LinuxX86_64, &reference, &values);
    // Spot checks of what the model says.
    let table = tables::table(Target::LinuxX86_64);
    let at = |name: &str, a0: u64, a1: u64| {
        let call = Call {
            arch: Target::LinuxX86_64.audit_arch().unwrap(),
            nr: table.by_name(name).unwrap().nr,
            args: [a0, a1, 0, 0, 0, 0],
        };
        ir::decide(&policy, Target::LinuxX86_64, &call).action
    };
    assert_eq!(at("kill", 1, 9), Action::Allow);
    assert_eq!(at("read", 7, 0), Action::Trap);
    assert_eq!(at("read", 5, 0), Action::Allow);
    // Same-index conditions are alternatives in runc: every fd passes `> 3 || < 9`.
    assert_eq!(at("write", 100, 0), Action::Allow);
    assert_eq!(at("write", 0, 0), Action::Allow);
}

#[test]
fn a_32_bit_argument_is_read_on_its_low_half() {
    // personality's `persona` is an unsigned int: the kernel sees 0xffffffff whatever the
    // high half holds, so Capsule allows what libseccomp's 64-bit compare would refuse.
    let json = r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":4294967295,"op":"SCMP_CMP_EQ"}]},{"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":4294967296,"op":"SCMP_CMP_EQ"}]}]}"#;
    let imported = import_text(json).unwrap();
    let policy = checked(&imported.yaml);
    assert!(imported.yaml.contains("- personality: persona == 0xffffffff\n"), "{}", imported.yaml);
    assert!(!imported.yaml.contains("0x100000000"), "a value no 32-bit argument holds is dropped:\n{}", imported.yaml);
    let t = Target::LinuxX86_64;
    let nr = tables::table(t).by_name("personality").unwrap().nr;
    let decide =
        |a0| ir::decide(&policy, t, &Call { arch: t.audit_arch().unwrap(), nr, args: [a0, 0, 0, 0, 0, 0] }).action;
    assert_eq!(decide(0xffff_ffff), Action::Allow);
    assert_eq!(decide(u64::MAX), Action::Allow);
    assert_eq!(decide(0x1_0000_0000), Action::Errno(1));
}

#[test]
fn bad_profiles_are_clear_errors() {
    let cases = [
        ("not json", "not an OCI seccomp profile"),
        (r#"{"defaultAction":"SCMP_ACT_ERRNO","bogus":1}"#, "unknown field `bogus`"),
        (r#"{"defaultAction":"SCMP_ACT_MAYBE"}"#, "defaultAction: unknown action `SCMP_ACT_MAYBE`"),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_NOTIFY"}]}"#,
            "syscalls[0]: `SCMP_ACT_NOTIFY`",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":9,"value":0,"op":"SCMP_CMP_EQ"}]}]}"#,
            "index 9",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":0,"op":"SCMP_CMP_XX"}]}]}"#,
            "unknown comparison `SCMP_CMP_XX`",
        ),
        (r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"action":"SCMP_ACT_ALLOW"}]}"#, "names no syscall"),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","errnoRet":70000}]}"#,
            "errnoRet 70000",
        ),
    ];
    for (json, want) in cases {
        let err = import_text(json).unwrap_err().to_string();
        assert!(err.contains(want), "{json}: {err}");
    }
    let macos = ImportOptions::new(Target::Macos);
    assert!(oci::import_oci("{}", &macos).unwrap_err().to_string().contains("macos has no seccomp"));
}

#[test]
fn widths_used_by_the_tests_are_the_tables() {
    // The vectors above lean on these widths; fail loudly if the tables change them.
    let t = tables::table(Target::LinuxX86_64);
    let width = |name: &str, i: usize| {
        if t.by_name(name).unwrap().args()[i].bits <= 32 { Width::W32 } else { Width::W64 }
    };
    assert_eq!(width("personality", 0), Width::W32);
    assert_eq!(width("lseek", 1), Width::W64);
    assert_eq!(width("lseek", 2), Width::W32);
    assert_eq!(width("clone", 0), Width::W64);
}

/// Past the size cap the export may only allow less: an allow region is left out, a
/// deny region widened to the whole syscall, each with a warning.
#[test]
fn export_past_the_cap_only_allows_less() {
    let values: Vec<String> = (1..=20).map(|v| v.to_string()).collect();
    let set = values.join(", ");
    let yaml = format!(
        "version: 1\nname: big\ndefault: errno(EPERM)\ntargets: [linux-x86_64]\nsyscalls:\n  allow:\n    - mmap: addr in [{set}] && length in [{set}]\n    - read\n  deny:\n    - read: {{ when: \"fd in [{set}] && count in [{set}]\", action: kill-process }}\n"
    );
    let policy = checked(&yaml);
    let exported = oci::export_oci(&policy);
    assert_eq!(exported.warnings.iter().filter(|w| w.contains("more than")).count(), 2, "{:?}", exported.warnings);
    let reference = resolve(&exported.json, "amd64", &BTreeSet::new(), (6, 18));
    let t = Target::LinuxX86_64;
    let table = tables::table(t);
    for name in ["mmap", "read"] {
        let nr = table.by_name(name).unwrap().nr;
        for a in [0u64, 1, 5, 20, 21, 1 << 33] {
            for b in [0u64, 1, 7, 20, 21] {
                let args = [a, b, b, 0, 0, 0];
                let capsule = ir::decide(&policy, t, &Call { arch: t.audit_arch().unwrap(), nr, args }).action;
                let oci = ref_decide(&reference, name, &args);
                assert!(
                    capsule.lets_call_run() || !oci.lets_call_run(),
                    "{name} {args:?}: capsule {capsule}, OCI {oci}"
                );
            }
        }
    }
    // read: every call killed (the deny widened), as Capsule kills some and allows none
    // the profile could tell apart.
    let nr = table.by_name("read").unwrap().nr;
    assert_eq!(ref_decide(&reference, "read", &[3, 3, 3, 0, 0, 0]), Action::KillProcess);
    assert_eq!(
        ir::decide(&policy, t, &Call { arch: t.audit_arch().unwrap(), nr, args: [3, 0, 3, 0, 0, 0] }).action,
        Action::KillProcess
    );
}

/// A constant that differs between targets (O_DIRECTORY) gives per-architecture
/// entries, each limited with Docker's `includes.arches`.
#[test]
fn export_limits_target_specific_rules_to_their_architecture() {
    let yaml = "version: 1\nname: t\ndefault: errno(EPERM)\ntargets: [linux-x86_64, linux-aarch64]\nsyscalls:\n  allow:\n    - read\n    - openat: flags & O_DIRECTORY == 0\n";
    let policy = checked(yaml);
    let exported = oci::export_oci(&policy);
    let v: Value = serde_json::from_str(&exported.json).unwrap();
    let openat: Vec<&Value> = v["syscalls"].as_array().unwrap().iter().filter(|e| e["names"][0] == "openat").collect();
    let arches: BTreeSet<String> = openat.iter().flat_map(|e| strings(&e["includes"]["arches"])).collect();
    assert_eq!(arches, ["amd64".to_string(), "arm64".to_string()].into(), "{}", exported.json);
    assert!(v["syscalls"].as_array().unwrap().iter().any(|e| e["names"][0] == "read" && e["includes"].is_null()));
    for target in Target::LINUX {
        let reference = resolve(&exported.json, go_arch(target), &BTreeSet::new(), (6, 18));
        let nr = tables::table(target).by_name("openat").unwrap().nr;
        for flags in [0u64, 0x4000, 0x1_0000, 0x1_4000, 0x2] {
            let args = [0, 0, flags, 0, 0, 0];
            let want = ir::decide(&policy, target, &Call { arch: target.audit_arch().unwrap(), nr, args }).action;
            assert_eq!(ref_decide(&reference, "openat", &args), want, "{target} flags {flags:#x}");
        }
    }
}
