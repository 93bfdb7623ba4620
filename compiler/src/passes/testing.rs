//! Policies built by hand and at random for the passes' tests, and the check every
//! pass's property test makes: `ir::decide` is unchanged.

use crate::ir::{Action, Arg, Call, Cond, Origin, Policy, Rule, RuleKind, SyscallPolicy, SyscallRules, Test, Width};
use crate::tables::{self, SyscallDef};
use crate::valid;
use capsule_artifacts::{LaunchSettings, Target};
use proptest::prelude::*;
use std::collections::BTreeMap;

pub const X86: Target = Target::LinuxX86_64;
pub const READ: u32 = 0;
pub const WRITE: u32 = 1;
pub const SOCKET: u32 = 41;
pub const EPERM: Action = Action::Errno(1);
pub const EACCES: Action = Action::Errno(13);

pub fn def(nr: u32) -> &'static SyscallDef {
    let table = tables::table(X86);
    let i = table.syscalls.binary_search_by_key(&nr, |d| d.nr);
    &table.syscalls[i.unwrap_or_else(|_| panic!("syscall {nr} is not in the x86_64 table (are the tables generated?)"))]
}

/// Argument `index` of syscall `nr` with the table's width.
pub fn arg(nr: u32, index: u8) -> Arg {
    let bits = def(nr).args().get(index as usize).map_or(64, |a| a.bits);
    Arg { index, width: valid::width_of_bits(bits) }
}

pub fn test(nr: u32, index: u8, test: Test) -> Cond {
    Cond::Test { arg: arg(nr, index), test }
}

fn rule(kind: RuleKind, cond: Cond) -> Rule {
    // Distinct spans so a test can tell rules apart.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let at = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Rule { kind, cond, origin: Origin { span: at..at + 1, group: None, implied_by: None } }
}
pub fn allow(cond: Cond) -> Rule {
    rule(RuleKind::Allow, cond)
}
pub fn audit(cond: Cond) -> Rule {
    rule(RuleKind::Audit, cond)
}
pub fn deny(action: Action, cond: Cond) -> Rule {
    rule(RuleKind::Deny(action), cond)
}

/// An x86_64-only policy with a deny default of EPERM.
pub fn policy_with(syscalls: Vec<(u32, Vec<Rule>)>) -> Policy {
    let syscalls = syscalls
        .into_iter()
        .map(|(nr, rules)| (nr, SyscallRules { name: def(nr).name(), nr, rules }))
        .collect::<BTreeMap<_, _>>();
    Policy {
        name: "test".to_owned(),
        description: None,
        default: EPERM,
        newer_syscalls: Action::Errno(38),
        foreign_arch: Action::KillProcess,
        targets: vec![X86],
        syscalls: vec![SyscallPolicy { target: X86, syscalls }],
        launch: LaunchSettings::default(),
    }
}

/// The first few syscalls of the table that take at least two arguments.
fn sample_syscalls() -> Vec<&'static SyscallDef> {
    let picked: Vec<_> = tables::table(X86).syscalls.iter().filter(|d| d.args().len() >= 2).take(3).collect();
    assert!(picked.len() == 3, "the x86_64 table has too few syscalls with arguments (are the tables generated?)");
    picked
}

fn value_pool(width: Width) -> Vec<u64> {
    let mut pool = vec![0, 1, 2, 3, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff];
    if width == Width::W64 {
        pool.extend([1 << 32, 1 << 63, u64::MAX, 0xffff_ffff_0000_0001]);
    }
    pool
}

fn arb_test(width: Width) -> impl Strategy<Value = Test> {
    let v = proptest::sample::select(value_pool(width));
    let list = proptest::collection::btree_set(v.clone(), 1..4).prop_map(|s| s.into_iter().collect::<Vec<_>>());
    prop_oneof![
        v.clone().prop_map(Test::Eq),
        v.clone().prop_map(Test::Ne),
        v.clone().prop_map(Test::Lt),
        v.clone().prop_map(Test::Le),
        v.clone().prop_map(Test::Gt),
        v.clone().prop_map(Test::Ge),
        (v.clone(), v.clone()).prop_map(|(mask, value)| Test::MaskedEq { mask, value }),
        (v.clone(), v.clone()).prop_map(|(mask, value)| Test::MaskedNe { mask, value }),
        list.clone().prop_map(Test::In),
        list.prop_map(Test::NotIn),
    ]
}

fn arb_cond(def: &'static SyscallDef) -> impl Strategy<Value = Cond> {
    let args: Vec<Arg> =
        (0..2u8).map(|i| Arg { index: i, width: valid::width_of_bits(def.args()[i as usize].bits) }).collect();
    let leaf = prop_oneof![
        1 => Just(Cond::True),
        1 => Just(Cond::False),
        8 => proptest::sample::select(args).prop_flat_map(|arg| {
            arb_test(arg.width).prop_map(move |test| Cond::Test { arg, test })
        }),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|c| Cond::Not(Box::new(c))),
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Cond::And),
            proptest::collection::vec(inner, 0..4).prop_map(Cond::Or),
        ]
    })
}

fn arb_action() -> impl Strategy<Value = Action> {
    proptest::sample::select(vec![Action::KillProcess, Action::Trap, EPERM, EACCES, Action::Log])
}

fn arb_rule(def: &'static SyscallDef) -> impl Strategy<Value = Rule> {
    let kind = prop_oneof![Just(RuleKind::Allow), Just(RuleKind::Audit), arb_action().prop_map(RuleKind::Deny),];
    (kind, arb_cond(def)).prop_map(|(kind, cond)| rule(kind, cond))
}

/// Small random x86_64 policies over three syscalls and their first two arguments.
pub fn arb_policy() -> impl Strategy<Value = Policy> {
    let per_syscall: Vec<_> =
        sample_syscalls().into_iter().map(|d| proptest::collection::vec(arb_rule(d), 0..5)).collect();
    let default = prop_oneof![Just(EPERM), Just(Action::Allow), Just(Action::KillProcess), Just(Action::Log)];
    (default, per_syscall).prop_map(|(default, rules)| {
        let syscalls = sample_syscalls().into_iter().zip(rules).filter(|(_, r)| !r.is_empty());
        let mut policy = policy_with(syscalls.map(|(d, r)| (d.nr, r)).collect());
        policy.default = default;
        policy
    })
}

/// Argument vectors that exercise every boundary of the pool: each argument alone over
/// the pool ±1 with and without high-half garbage, and all pairs of a few values.
pub fn probe_args() -> Vec<[u64; 6]> {
    let mut single: Vec<u64> = value_pool(Width::W64)
        .into_iter()
        .flat_map(|v| [v.wrapping_sub(1), v, v.wrapping_add(1)])
        .flat_map(|v| [v, v | 0xdead_beef_0000_0000])
        .collect();
    single.sort();
    single.dedup();
    let mut probes = Vec::new();
    for index in 0..2 {
        for &v in &single {
            let mut args = [0; 6];
            args[index] = v;
            probes.push(args);
        }
    }
    let few = [0, 1, 3, 0x8000_0000, 0xffff_ffff, 1 << 32, u64::MAX];
    for a in few {
        for b in few {
            probes.push([a, b, 0, 0, 0, 0]);
        }
    }
    probes
}

/// `pass` keeps the policy verified and every decision (action and audit flag).
pub fn check_pass_preserves(policy: &Policy, pass: fn(&mut Policy)) {
    valid::verify(policy).expect("generated policy is valid IR");
    let mut after = policy.clone();
    pass(&mut after);
    if let Err(e) = valid::verify(&after) {
        panic!("pass broke an invariant: {e}\nafter: {after:#?}");
    }
    let arch = X86.audit_arch().expect("linux");
    for def in sample_syscalls() {
        for args in probe_args() {
            let call = Call { arch, nr: def.nr, args };
            let (a, b) = (crate::ir::decide(policy, X86, &call), crate::ir::decide(&after, X86, &call));
            assert!(
                (a.action, a.audited) == (b.action, b.audited),
                "{} {args:x?}: before {:?} audited={}, after {:?} audited={}\nbefore: {:#?}\nafter: {:#?}",
                def.name(),
                a.action,
                a.audited,
                b.action,
                b.audited,
                policy.syscalls[0].syscalls,
                after.syscalls[0].syscalls
            );
        }
    }
}
