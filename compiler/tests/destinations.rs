//! `network: domains:` implies that every allowed call naming a destination address
//! (`connect`, `sendto` with an address) goes to the launcher's supervisor, which
//! records a direct attempt (docs/network.md, "Direct attempts"). Without a proxy
//! nothing changes, so such a policy pays nothing; with one, the implied rule never
//! lets a call run that the policy's own rules would not.
//! (tests/tests/network.rs checks the records on the real kernel.)

use capsule_artifacts::Target;
use capsule_artifacts::notify::NotifyAnswer;
use capsule_compiler::bpf::interp::{Program, RetAction, SeccompData};
use capsule_compiler::build::{self, Artifacts, BuildOptions};
use capsule_compiler::tables;

const TARGETS: [Target; 2] = [Target::LinuxX86_64, Target::LinuxAarch64];

fn build(syscalls: &str, network: &str) -> Artifacts {
    let src =
        format!("version: 1\nname: destinations\n{syscalls}\nfilesystem:\n  write: [/tmp]\nnetwork:\n{network}\n");
    let options = BuildOptions { targets: TARGETS.to_vec() };
    build::build(src.as_bytes(), &options).unwrap_or_else(|e| panic!("{src}\n{e:?}"))
}

/// The filter's return for `name(args)` on `target`, and the supervisor's answer
/// when it notifies.
fn run(artifacts: &Artifacts, target: Target, name: &str, args: [u64; 6]) -> (RetAction, Option<NotifyAnswer>) {
    let nr = tables::table(target).by_name(name).unwrap().nr;
    let program = Program::from_bytes(&artifacts.files[target.artifact_file()]).unwrap();
    let data = SeccompData { nr, arch: target.audit_arch().unwrap(), instruction_pointer: 0, args };
    let ret = program.run(&data).action();
    let answer = artifacts.manifest.entry_for(target).unwrap().notify.as_ref().and_then(|t| t.answer(nr));
    (ret, if ret == RetAction::UserNotif { answer } else { None })
}

const ADDR: u64 = 0x7f00_0000_1000;
const ALLOW_NET: &str = "syscalls:\n  allow: [\"@network-io\", \"@default\"]";
const DOMAINS: &str = "  domains: [example.org]";

#[test]
fn with_a_proxy_addressed_connects_and_sendtos_go_to_the_destination_check() {
    let built = build(ALLOW_NET, DOMAINS);
    for target in TARGETS {
        let check = |name: &str, args: [u64; 6]| run(&built, target, name, args);
        let destination = (RetAction::UserNotif, Some(NotifyAnswer::Destination));
        assert_eq!(check("connect", [3, ADDR, 16, 0, 0, 0]), destination, "{target}");
        assert_eq!(check("sendto", [3, ADDR, 5, 0, ADDR, 16]), destination, "{target}");
        // No address, no destination: a send on a connected socket stays in the kernel.
        assert_eq!(check("sendto", [3, ADDR, 5, 0, 0, 0]), (RetAction::Allow, None), "{target}");
        assert_eq!(check("connect", [3, 0, 16, 0, 0, 0]), (RetAction::Allow, None), "{target}");
        assert_eq!(check("sendmsg", [3, ADDR, 0, 0, 0, 0]), (RetAction::Allow, None), "{target}");
        assert!(built.manifest.entry_for(target).unwrap().user_notif(), "{target}");
    }
}

#[test]
fn without_a_proxy_nothing_is_notified() {
    let built = build(ALLOW_NET, "  connect: [tcp/443]");
    for target in TARGETS {
        assert_eq!(run(&built, target, "connect", [3, ADDR, 16, 0, 0, 0]), (RetAction::Allow, None));
        assert_eq!(run(&built, target, "sendto", [3, ADDR, 5, 0, ADDR, 16]), (RetAction::Allow, None));
        assert!(!built.manifest.entry_for(target).unwrap().user_notif(), "no listener at all: {target}");
    }
}

#[test]
fn the_implied_rule_never_lets_a_denied_call_run() {
    // Denied by the default (errno): no implied rule, the policy's own answer stands.
    let built = build("default: errno(EACCES)\nsyscalls:\n  allow: [\"@default\"]", DOMAINS);
    assert_eq!(run(&built, Target::LinuxX86_64, "connect", [3, ADDR, 16, 0, 0, 0]), (RetAction::Errno(13), None));
    // A deny rule still wins over it.
    let built = build(&format!("{ALLOW_NET}\n  deny:\n    - connect: fd == 7"), DOMAINS);
    assert_eq!(run(&built, Target::LinuxX86_64, "connect", [7, ADDR, 16, 0, 0, 0]), (RetAction::Errno(1), None));
    assert_eq!(run(&built, Target::LinuxX86_64, "connect", [3, ADDR, 16, 0, 0, 0]).1, Some(NotifyAnswer::Destination));
    // Allowed only on a condition: checked exactly where the policy allows it.
    let built =
        build("default: errno(EPERM)\nsyscalls:\n  allow:\n    - \"@default\"\n    - connect: fd == 5", DOMAINS);
    assert_eq!(run(&built, Target::LinuxX86_64, "connect", [5, ADDR, 16, 0, 0, 0]).1, Some(NotifyAnswer::Destination));
    assert_eq!(run(&built, Target::LinuxX86_64, "connect", [6, ADDR, 16, 0, 0, 0]), (RetAction::Errno(1), None));
}

#[test]
fn explain_names_the_setting_behind_the_rule() {
    let src =
        format!("version: 1\nname: destinations\n{ALLOW_NET}\nfilesystem:\n  write: [/tmp]\nnetwork:\n{DOMAINS}\n");
    let checked = capsule_compiler::front::check(&src);
    let policy = checked.policy.expect("no errors");
    let nr = tables::table(Target::LinuxX86_64).by_name("connect").unwrap().nr;
    let call = capsule_compiler::ir::Call {
        arch: Target::LinuxX86_64.audit_arch().unwrap(),
        nr,
        args: [3, ADDR, 16, 0, 0, 0],
    };
    let decision = capsule_compiler::ir::decide(&policy, Target::LinuxX86_64, &call);
    assert!(decision.audited);
    match decision.reason {
        capsule_compiler::ir::Reason::Rule(origin) => assert_eq!(origin.implied_by, Some("network: domains or routes")),
        other => panic!("{other:?}"),
    }
    let text = capsule_compiler::explain::explain_policy(&policy, &src, Target::LinuxX86_64, &call);
    assert!(text.contains("refused and recorded unless the address is the proxy's"), "{text}");
    assert!(text.contains("by `network: domains or routes` at line 8, column 13: example.org"), "{text}");
}
