//! Differential test against libseccomp: for Docker's and podman's default profiles
//! (from their Debian packages, see `profiles/mod.rs`) and for every valid fixture
//! policy, libseccomp builds the equivalent filter (from the OCI JSON for the
//! profiles, from the IR for Capsule policies), both filters run in Capsule's
//! interpreter on the same probes, and their decisions must agree everywhere except
//! where libseccomp is known to be wrong or behind:
//!
//! - `HighHalf`: libseccomp compares a 32-bit argument on all 64 bits, so garbage in
//!   the high half changes its answer; the kernel (and Capsule) read the low half only.
//!   Checked by clearing the high halves of the 32-bit arguments: libseccomp must then
//!   give Capsule's answer.
//! - `UnknownToLibseccomp`: a syscall libseccomp 2.5.4's table lacks (newer than Linux
//!   6.7); it drops the rule, so the call gets the default.
//! - `AboveTable`: numbers above Capsule's table get `newer-syscalls`, libseccomp's
//!   filter gives them the default.
//!
//! Every disagreement must be one of [`EXPECTED`], and every entry of [`EXPECTED`] must
//! be seen, so the list stays exact. Both libseccomp filters are checked: its default
//! (a linear list) and `SCMP_FLTATR_CTL_OPTIMIZE=2` (a binary tree).

#[path = "libseccomp/mod.rs"]
mod libseccomp;
#[path = "profiles/mod.rs"]
mod profiles;

use capsule_artifacts::Target;
use capsule_artifacts::target::{AUDIT_ARCH_I386, X32_SYSCALL_BIT};
use capsule_compiler::bpf::interp::{Program, SeccompData};
use capsule_compiler::build::{BuildOptions, build};
use capsule_compiler::ir::{Action, Arg, Cond, Policy, RuleKind, Test, Width};
use capsule_compiler::oci::{ImportOptions, import_oci};
use capsule_compiler::tables;
use capsule_compiler::valid::{self, NotifyAnswer, NotifyTable, test_values, visit_tests};
use libseccomp::{Cmp, CmpOp, Conj, LibSeccomp, Spec, dnf};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const X86: Target = Target::LinuxX86_64;
const ARM: Target = Target::LinuxAarch64;
/// `AUDIT_ARCH_ARM`: EM_ARM | __AUDIT_ARCH_LE, the compat ABI on aarch64.
const AUDIT_ARCH_ARM: u32 = 0x4000_0028;

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_USER_NOTIF: u32 = 0x7fc0_0000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Reason {
    HighHalf,
    UnknownToLibseccomp,
    AboveTable,
}

impl Reason {
    fn why(self) -> &'static str {
        match self {
            Reason::HighHalf => "libseccomp compares a 32-bit argument on all 64 bits",
            Reason::UnknownToLibseccomp => "libseccomp 2.5.4's table lacks the syscall (Linux > 6.7)",
            Reason::AboveTable => "Capsule gives newer-syscalls above its table, libseccomp the default",
        }
    }
}

/// Where the filters may disagree, per case, on both targets (a syscall a target does
/// not have is left out there): the rule's syscall and the reason.
const EXPECTED: &[(&str, Reason, &[&str])] = &[
    // The packaged profiles (Debian 12: Docker 20.10, containers/common 0.50) name no
    // syscall newer than libseccomp 2.5.4 knows. Docker's compares personality(persona),
    // int-sized; podman's, without CAP_AUDIT_WRITE, socket(domain, .., protocol) too.
    ("docker-default", Reason::HighHalf, &["personality"]),
    ("docker-default", Reason::AboveTable, ABOVE_TABLE),
    // podman's default is ENOSYS, which is also what Capsule gives above its table.
    ("podman-default", Reason::HighHalf, &["personality", "socket"]),
    // ioctl(request) is unsigned int; socket(domain), socketpair(domain) and
    // personality(persona) are int-sized.
    ("coding-agent", Reason::HighHalf, &["ioctl", "personality", "socket"]),
    ("coding-agent", Reason::UnknownToLibseccomp, GROUPS_NEWER),
    ("coding-agent", Reason::AboveTable, ABOVE_TABLE),
    ("data-science", Reason::HighHalf, &["ioctl", "socket"]),
    ("data-science", Reason::UnknownToLibseccomp, GROUPS_NEWER),
    ("data-science", Reason::AboveTable, ABOVE_TABLE),
    ("minimal", Reason::AboveTable, ABOVE_TABLE),
    ("network-proxy", Reason::HighHalf, &["socket"]),
    ("network-proxy", Reason::UnknownToLibseccomp, GROUPS_NEWER),
    ("network-proxy", Reason::AboveTable, ABOVE_TABLE),
    ("network-proxy-https", Reason::HighHalf, &["socket"]),
    ("network-proxy-https", Reason::UnknownToLibseccomp, GROUPS_NEWER),
    ("network-proxy-https", Reason::AboveTable, ABOVE_TABLE),
    // Tests on 16-bit modes are written as masked tests, which libseccomp compares alike.
    ("narrow-arguments", Reason::AboveTable, ABOVE_TABLE),
    ("cli-default", Reason::HighHalf, &["ioctl", "personality", "socket", "socketpair"]),
    ("cli-default", Reason::UnknownToLibseccomp, GROUPS_NEWER),
    ("cli-default", Reason::AboveTable, ABOVE_TABLE),
];

/// Every policy here has a newer-syscalls action other than its default.
const ABOVE_TABLE: &[&str] = &["above table"];

/// What the groups the fixtures allow (`@default`, `@file-system`, `@memory`) hold of
/// the syscalls added after Linux 6.7.
const GROUPS_NEWER: &[&str] =
    &["file_getattr", "file_setattr", "getxattrat", "listxattrat", "mseal", "removexattrat", "setxattrat", "uretprobe"];

/// One policy compiled by both, for one target.
struct Case {
    name: String,
    target: Target,
    capsule: Program,
    /// What the capsule filter's `SECCOMP_RET_USER_NOTIF` stands for, per number: the
    /// supervisor's answer is the policy's decision, which libseccomp returns directly.
    notify: NotifyTable,
    /// The reference: the policy before the passes.
    policy: Policy,
    /// libseccomp's spec (the constants its rules compare with are probed too).
    spec: Spec,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn action_ret(action: Action) -> u32 {
    match action {
        Action::KillProcess => 0x8000_0000,
        Action::KillThread => 0,
        Action::Trap => 0x0003_0000,
        Action::Errno(e) => RET_ERRNO | u32::from(e),
        Action::Log => 0x7ffc_0000,
        Action::Allow => RET_ALLOW,
    }
}

fn compile_capsule(name: &str, yaml: &[u8], target: Target, spec_of: impl FnOnce(&Policy) -> Spec) -> Case {
    let artifacts = build(yaml, &BuildOptions { targets: vec![target] })
        .unwrap_or_else(|e| panic!("{name}: capsulec build failed: {e}"));
    let capsule = Program::from_bytes(&artifacts.files[target.artifact_file()]).expect("capsule filter checks");
    let info = valid::verify(&artifacts.optimised).expect("optimised IR verifies");
    let notify = info.target(target).expect("target verified").notify.clone();
    let spec = spec_of(&artifacts.policy);
    Case { name: name.to_owned(), target, capsule, notify, policy: artifacts.policy, spec }
}

// ------------------------------------------------------------------ IR → libseccomp rules

/// `value & mask == bits`: the set of values a MASKED_EQ comparison accepts.
type Cube = (u64, u64);

/// Aligned power-of-two blocks covering `lo..=hi`.
fn interval_cubes(lo: u64, hi: u64, width: Width) -> Vec<Cube> {
    let mut cubes = Vec::new();
    let mut lo = u128::from(lo);
    let hi = u128::from(hi);
    while lo <= hi {
        let mut size: u128 = 1;
        while lo % (size * 2) == 0 && lo + size * 2 - 1 <= hi {
            size *= 2;
        }
        cubes.push((width.mask() & !((size - 1) as u64), lo as u64));
        lo += size;
    }
    cubes
}

/// The complement of sorted points within the width, as cubes.
fn gaps_cubes(points: &[u64], width: Width) -> Vec<Cube> {
    let mut cubes = Vec::new();
    let mut lo = 0u64;
    for &p in points {
        if p > lo {
            cubes.extend(interval_cubes(lo, p - 1, width));
        }
        if p == width.mask() {
            return cubes;
        }
        lo = p + 1;
    }
    cubes.extend(interval_cubes(lo, width.mask(), width));
    cubes
}

fn test_cubes(test: &Test, width: Width) -> Vec<Cube> {
    let full = width.mask();
    match test {
        Test::Eq(x) => vec![(full, *x)],
        Test::Ne(x) => gaps_cubes(&[*x], width),
        Test::Lt(0) => vec![],
        Test::Lt(x) => interval_cubes(0, x - 1, width),
        Test::Le(x) => interval_cubes(0, *x, width),
        Test::Gt(x) if *x == full => vec![],
        Test::Gt(x) => interval_cubes(x + 1, full, width),
        Test::Ge(x) => interval_cubes(*x, full, width),
        Test::MaskedEq { mask, value } => vec![(*mask, *value)],
        Test::MaskedNe { mask, value } => {
            (0..64).map(|b| 1u64 << b).filter(|b| mask & b != 0).map(|b| (b, !value & b)).collect()
        }
        Test::In(xs) => xs.iter().map(|x| (full, *x)).collect(),
        Test::NotIn(xs) => gaps_cubes(xs, width),
    }
}

/// The comparisons, one of which must hold, for tests all on one argument. `None`
/// stands for "always true".
fn arg_alternatives(arg: Arg, tests: &[Test]) -> Vec<Option<Cmp>> {
    let cmp = |op, a, b| Some(Cmp { arg: arg.index, op, a, b });
    // One test: as a person would write it for libseccomp.
    if let [test] = tests {
        match test {
            Test::Eq(x) => return vec![cmp(CmpOp::Eq, *x, 0)],
            Test::Ne(x) => return vec![cmp(CmpOp::Ne, *x, 0)],
            Test::Lt(x) => return vec![cmp(CmpOp::Lt, *x, 0)],
            Test::Le(x) => return vec![cmp(CmpOp::Le, *x, 0)],
            Test::Gt(x) => return vec![cmp(CmpOp::Gt, *x, 0)],
            Test::Ge(x) => return vec![cmp(CmpOp::Ge, *x, 0)],
            Test::MaskedEq { mask, value } => return vec![cmp(CmpOp::MaskedEq, *mask, *value)],
            Test::In(xs) => return xs.iter().map(|x| cmp(CmpOp::Eq, *x, 0)).collect(),
            Test::NotIn(xs) if xs.len() == 1 => return vec![cmp(CmpOp::Ne, xs[0], 0)],
            Test::MaskedNe { .. } | Test::NotIn(_) => {}
        }
    }
    // Otherwise the value set as a union of masked compares (libseccomp 2.5 allows one
    // comparison per argument in a rule).
    let mut cubes: BTreeSet<Cube> = BTreeSet::from([(0, 0)]);
    for test in tests {
        let next = test_cubes(test, arg.width);
        cubes = cubes
            .iter()
            .flat_map(|&(m1, v1)| next.iter().map(move |&(m2, v2)| (m1, v1, m2, v2)))
            .filter(|(m1, v1, m2, v2)| (v1 ^ v2) & m1 & m2 == 0)
            .map(|(m1, v1, m2, v2)| (m1 | m2, v1 | v2))
            .collect();
    }
    cubes
        .into_iter()
        .map(|(mask, value)| match mask {
            0 => None,
            m if m == arg.width.mask() => cmp(CmpOp::Eq, value, 0),
            _ => cmp(CmpOp::MaskedEq, mask, value),
        })
        .collect()
}

/// libseccomp rules with one conjunction's decision, one comparison per argument.
fn conj_rules(action: u32, name: &str, conj: &Conj) -> Vec<libseccomp::Rule> {
    let mut by_arg: BTreeMap<u8, (Arg, Vec<Test>)> = BTreeMap::new();
    for (arg, test) in conj {
        by_arg.entry(arg.index).or_insert((*arg, Vec::new())).1.push(test.clone());
    }
    let mut combos: Vec<Vec<Cmp>> = vec![vec![]];
    for (arg, tests) in by_arg.values() {
        let alternatives = arg_alternatives(*arg, tests);
        combos = combos
            .iter()
            .flat_map(|c| alternatives.iter().map(move |alt| c.iter().copied().chain(*alt).collect()))
            .collect();
    }
    combos.into_iter().map(|cmps| libseccomp::Rule { action, syscall: name.to_owned(), cmps }).collect()
}

/// The libseccomp spec of a Capsule policy's IR: per syscall, the argument space split
/// into disjoint regions by decision (deny wins, the most restrictive deny first), so
/// the order in which libseccomp merges rules cannot matter.
fn spec_from_ir(policy: &Policy, target: Target) -> Spec {
    let default = action_ret(policy.default);
    let mut rules = BTreeSet::new();
    for sc in policy.syscalls_for(target).expect("target in policy").syscalls.values() {
        let class = |a: Action| match a {
            Action::KillProcess => 0,
            Action::KillThread => 1,
            Action::Trap => 2,
            Action::Errno(_) => 3,
            Action::Log => 4,
            Action::Allow => 5,
        };
        let mut denies: Vec<(Action, Vec<Cond>)> = Vec::new();
        let mut allows = Vec::new();
        for rule in &sc.rules {
            match rule.kind {
                RuleKind::Deny(action) => match denies.iter_mut().find(|(a, _)| *a == action) {
                    Some((_, conds)) => conds.push(rule.cond.clone()),
                    None => denies.push((action, vec![rule.cond.clone()])),
                },
                RuleKind::Allow | RuleKind::Audit => allows.push(rule.cond.clone()),
            }
        }
        // Stable: between two errnos, the one written first wins.
        denies.sort_by_key(|(a, _)| class(*a));
        let mut stronger: Vec<Cond> = Vec::new();
        let mut regions = Vec::new();
        for (action, conds) in denies {
            regions.push((
                action,
                Cond::And(vec![Cond::Or(conds.clone()), Cond::Not(Box::new(Cond::Or(stronger.clone())))]),
            ));
            stronger.extend(conds);
        }
        regions.push((Action::Allow, Cond::And(vec![Cond::Or(allows), Cond::Not(Box::new(Cond::Or(stronger)))])));
        for (action, cond) in regions {
            let ret = action_ret(action);
            if ret == default {
                continue; // libseccomp refuses a rule with the default action
            }
            for conj in dnf(&cond, false) {
                rules.extend(conj_rules(ret, sc.name, &conj));
            }
        }
    }
    Spec { target, default, badarch: action_ret(policy.foreign_arch), optimize: 1, rules: rules.into_iter().collect() }
}

// ------------------------------------------------------------------ probes

const EDGES: [u64; 8] = [0, 1, (1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 32, 1 << 63, u64::MAX];
const GARBAGE: u64 = 0xffff_ffff_0000_0000;

/// Argument vectors for a syscall whose rules compare `constants` (per argument index).
fn arg_vectors(constants: &BTreeMap<u8, BTreeSet<u64>>) -> Vec<[u64; 6]> {
    let candidates: BTreeMap<u8, Vec<u64>> = constants
        .iter()
        .map(|(&i, cs)| {
            let mut values: BTreeSet<u64> = EDGES.into_iter().collect();
            for &c in cs {
                values.extend([c.wrapping_sub(1), c, c.wrapping_add(1)]);
            }
            let with_garbage = values.iter().map(|v| GARBAGE | (v & 0xffff_ffff)).collect::<Vec<_>>();
            values.extend(with_garbage);
            (i, values.into_iter().collect())
        })
        .collect();
    let mut vectors = vec![[0u64; 6]];
    if candidates.len() <= 2 {
        for (&i, values) in &candidates {
            vectors = vectors
                .iter()
                .flat_map(|v| {
                    values.iter().map(move |&x| {
                        let mut v = *v;
                        v[i as usize] = x;
                        v
                    })
                })
                .collect();
        }
    } else {
        for (&i, values) in &candidates {
            for &x in values {
                let mut v = [0u64; 6];
                v[i as usize] = x;
                vectors.push(v);
            }
        }
    }
    vectors
}

/// Every number up to the table's end plus 64 with zero arguments, the argument
/// vectors of every syscall a rule compares arguments of, some x32 numbers (x86_64)
/// and some calls through the compat ABI.
fn probes(case: &Case) -> Vec<SeccompData> {
    let table = tables::table(case.target);
    let arch = case.target.audit_arch().unwrap();
    let mut constants: BTreeMap<u32, BTreeMap<u8, BTreeSet<u64>>> = BTreeMap::new();
    for sc in case.policy.syscalls_for(case.target).unwrap().syscalls.values() {
        for rule in &sc.rules {
            visit_tests(&rule.cond, &mut |arg, test| {
                constants.entry(sc.nr).or_default().entry(arg.index).or_default().extend(test_values(test));
            });
        }
    }
    for rule in &case.spec.rules {
        if let Some(def) = table.by_name(&rule.syscall) {
            for c in &rule.cmps {
                constants.entry(def.nr).or_default().entry(c.arg).or_default().extend([c.a, c.b]);
            }
        }
    }
    let call = |arch, nr, args| SeccompData { nr, arch, instruction_pointer: 0, args };
    let mut probes: Vec<SeccompData> = (0..=table.max_nr + 64).map(|nr| call(arch, nr, [0; 6])).collect();
    for (&nr, by_arg) in &constants {
        probes.extend(arg_vectors(by_arg).into_iter().map(|args| call(arch, nr, args)));
    }
    let compat = if case.target == X86 { AUDIT_ARCH_I386 } else { AUDIT_ARCH_ARM };
    probes.extend((0..8).map(|nr| call(compat, nr, [0; 6])));
    if case.target == X86 {
        probes.extend([0, 1, 59, 512, 547].map(|nr| call(arch, X32_SYSCALL_BIT | nr, [0; 6])));
    }
    probes
}

/// The 32-bit arguments of a syscall, per the table.
fn narrow_args(target: Target, nr: u32) -> Vec<usize> {
    tables::table(target)
        .by_nr(nr)
        .map(|def| def.args().iter().enumerate().filter(|(_, a)| a.bits <= 32).map(|(i, _)| i).collect())
        .unwrap_or_default()
}

/// Why libseccomp's answer differs from Capsule's, when it is a known reason.
fn classify(
    case: &Case,
    lib: &Program,
    unknown: &BTreeSet<String>,
    p: &SeccompData,
    ours: u32,
    theirs: u32,
) -> Option<(String, Reason)> {
    let table = tables::table(case.target);
    let native = p.arch == case.target.audit_arch().unwrap() && p.nr & X32_SYSCALL_BIT == 0;
    if !native {
        return None;
    }
    if p.nr > table.max_nr {
        let expected = (action_ret(case.policy.newer_syscalls), case.spec.default);
        return ((ours, theirs) == expected).then(|| ("above table".to_owned(), Reason::AboveTable));
    }
    let name = table.by_nr(p.nr)?.name();
    if unknown.contains(name) {
        return (theirs == case.spec.default).then(|| (name.to_owned(), Reason::UnknownToLibseccomp));
    }
    let mut cleared = *p;
    for i in narrow_args(case.target, p.nr) {
        cleared.args[i] &= 0xffff_ffff;
    }
    (cleared != *p && lib.run(&cleared).ret == ours).then(|| (name.to_owned(), Reason::HighHalf))
}

#[derive(Default)]
struct Tally {
    probes: usize,
    /// (case, target, syscall, reason) → (filter variant → probes).
    explained: BTreeMap<(String, Target, String, Reason), BTreeMap<&'static str, usize>>,
    unexplained: Vec<String>,
}

fn compare(case: &Case, helper: &LibSeccomp, tally: &mut Tally) {
    for (variant, optimize) in [("linear", 1), ("tree", 2)] {
        let spec = Spec { optimize, ..case.spec.clone() };
        let exported = helper.export(&spec);
        let lib = Program::from_bytes(&exported.bpf).expect("libseccomp's filter checks");
        for p in probes(case) {
            tally.probes += 1;
            let mut ours = case.capsule.run(&p).ret;
            if ours == RET_USER_NOTIF {
                ours = match case.notify.answer(p.nr).expect("a notified number has a notify answer") {
                    NotifyAnswer::Continue | NotifyAnswer::Destination => RET_ALLOW,
                    NotifyAnswer::Errno(e) => RET_ERRNO | u32::from(e),
                };
            }
            let theirs = lib.run(&p).ret;
            if ours == theirs {
                continue;
            }
            match classify(case, &lib, &exported.unknown, &p, ours, theirs) {
                Some((syscall, reason)) => {
                    *tally
                        .explained
                        .entry((case.name.clone(), case.target, syscall, reason))
                        .or_default()
                        .entry(variant)
                        .or_default() += 1
                }
                None => tally.unexplained.push(format!(
                    "{} {} ({variant}): nr {:#x} arch {:#x} args {:x?}: capsule {ours:#x}, libseccomp {theirs:#x}",
                    case.name,
                    case.target.name(),
                    p.nr,
                    p.arch,
                    p.args
                )),
            }
        }
    }
}

fn cases() -> Vec<Case> {
    // The kernel `minKernel` is compared with: the one the tables describe, as the importer does.
    let kernel = ImportOptions::new(X86).kernel;
    let mut cases = Vec::new();
    // Read in place from the Debian packages, not copied into the project.
    for profile in profiles::ALL {
        let Some(json) = profile.read() else { continue };
        let oci: serde_json::Value = serde_json::from_str(&json).expect("the profile is JSON");
        for target in [X86, ARM] {
            let options = ImportOptions { caps: profile.cap_set(), ..ImportOptions::new(target) };
            let imported = import_oci(&json, &options).expect("the profile imports");
            cases.push(compile_capsule(profile.name, imported.yaml.as_bytes(), target, |policy| {
                libseccomp::spec_from_oci(&oci, target, &profile.cap_set(), kernel, action_ret(policy.foreign_arch))
                    .expect("the profile has a libseccomp spec")
            }));
        }
    }
    let mut policies: Vec<PathBuf> = std::fs::read_dir(repo_root().join("fixtures/policies/valid"))
        .expect("fixtures/policies/valid")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    policies.sort();
    policies.push(repo_root().join("cli/src/default-policy.yaml"));
    for path in policies {
        let name = if path.ends_with("cli/src/default-policy.yaml") {
            "cli-default".to_owned()
        } else {
            path.file_stem().unwrap().to_string_lossy().into_owned()
        };
        let yaml = std::fs::read(&path).unwrap();
        for target in [X86, ARM] {
            cases.push(compile_capsule(&name, &yaml, target, |policy| spec_from_ir(policy, target)));
        }
    }
    cases
}

#[test]
fn decisions_agree_with_libseccomp_except_where_it_is_wrong() {
    let helper = match LibSeccomp::build() {
        Ok(helper) => helper,
        Err(reason) => {
            println!("skipped: {reason}");
            return;
        }
    };
    let mut tally = Tally::default();
    for case in cases() {
        compare(&case, &helper, &mut tally);
    }

    println!("libseccomp {}: {} probes; disagreements by rule:", LibSeccomp::version(), tally.probes);
    println!("{:<16} {:<14} {:<24} {:<20} {:>7} {:>7}", "case", "target", "syscall", "reason", "linear", "tree");
    for ((case, target, syscall, reason), counts) in &tally.explained {
        let n = |v| counts.get(v).copied().unwrap_or(0);
        println!(
            "{case:<16} {:<14} {syscall:<24} {:<20} {:>7} {:>7}",
            target.name(),
            format!("{reason:?}"),
            n("linear"),
            n("tree")
        );
    }
    for reason in [Reason::HighHalf, Reason::UnknownToLibseccomp, Reason::AboveTable] {
        println!("  {reason:?}: {}", reason.why());
    }

    assert!(tally.unexplained.is_empty(), "unexplained disagreements:\n{}", tally.unexplained.join("\n"));
    let seen: BTreeSet<(String, Target, String, Reason)> = tally.explained.keys().cloned().collect();
    let mut expected: BTreeSet<(String, Target, String, Reason)> = BTreeSet::new();
    for &(case, reason, syscalls) in EXPECTED {
        for target in [X86, ARM] {
            let exists = |name: &&&str| reason == Reason::AboveTable || tables::table(target).by_name(name).is_some();
            expected.extend(syscalls.iter().filter(exists).map(|s| (case.to_owned(), target, s.to_string(), reason)));
        }
    }
    let surprising: Vec<_> = seen.difference(&expected).collect();
    let missing: Vec<_> = expected.difference(&seen).collect();
    assert!(
        surprising.is_empty() && missing.is_empty(),
        "disagreements not listed: {surprising:#?}\nlisted but not seen: {missing:#?}"
    );
}
