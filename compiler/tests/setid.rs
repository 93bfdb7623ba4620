//! `filesystem: setid`: what a policy that leaves it out, says `false` or says `true`
//! decides for the calls that can give a file the set-user-ID or set-group-ID bit.
//! (The default policy's `# run:` lines check the same calls through the compiled
//! filter; tests/tests/escapes.rs checks them on the real kernel.)

use capsule_artifacts::Target;
use capsule_compiler::diagnostic::Code;
use capsule_compiler::explain::explain_policy;
use capsule_compiler::front;
use capsule_compiler::ir::{self, Action, Call, Policy};
use capsule_compiler::tables;

const EPERM: Action = Action::Errno(1);
const ENOSYS: Action = Action::Errno(38);
const O_CREAT: u64 = 0o100;
const O_WRONLY: u64 = 0o1;

fn policy(filesystem: &str, rest: &str) -> Policy {
    let src = format!("version: 1\n{rest}\n{filesystem}");
    let checked = front::check(&src);
    assert!(!checked.has_errors(), "{src}\n{:#?}", checked.diagnostics);
    checked.policy.expect("no errors")
}

fn decide(policy: &Policy, target: Target, name: &str, args: [u64; 6]) -> Action {
    let nr = tables::table(target).by_name(name).unwrap_or_else(|| panic!("{name} on {target}")).nr;
    ir::decide(policy, target, &Call { arch: target.audit_arch().unwrap(), nr, args }).action
}

const ALLOW_FILES: &str = "syscalls:\n  allow: [\"@file-system\"]";

/// Every call that sets a set-id bit, on x86_64, with the mode in the right argument.
fn setid_calls() -> Vec<(&'static str, [u64; 6])> {
    vec![
        ("chmod", [0, 0o4755, 0, 0, 0, 0]),
        ("fchmod", [3, 0o2755, 0, 0, 0, 0]),
        ("fchmodat", [0, 0, 0o6755, 0, 0, 0]),
        ("fchmodat2", [0, 0, 0o4700, 0, 0, 0]),
        ("creat", [0, 0o4755, 0, 0, 0, 0]),
        ("mknod", [0, 0o100000 | 0o4755, 0, 0, 0, 0]),
        ("mknodat", [0, 0, 0o100000 | 0o2755, 0, 0, 0]),
        ("open", [0, O_WRONLY | O_CREAT, 0o4755, 0, 0, 0]),
        ("openat", [0, 0, O_WRONLY | O_CREAT, 0o4755, 0, 0]),
        ("openat", [0, 0, O_WRONLY | 0o20200000, 0o2755, 0, 0]), // O_TMPFILE
    ]
}

#[test]
fn left_out_or_false_denies_every_way_to_set_a_set_id_bit() {
    for filesystem in ["", "filesystem:\n  setid: false\n"] {
        let p = policy(filesystem, ALLOW_FILES);
        for (name, args) in setid_calls() {
            assert_eq!(decide(&p, Target::LinuxX86_64, name, args), EPERM, "{filesystem:?} {name} {args:?}");
        }
        assert_eq!(decide(&p, Target::LinuxX86_64, "openat2", [0; 6]), ENOSYS);
        assert_eq!(decide(&p, Target::LinuxAarch64, "openat2", [0; 6]), ENOSYS);
        assert_eq!(decide(&p, Target::LinuxAarch64, "fchmodat", [0, 0, 0o4755, 0, 0, 0]), EPERM);
    }
}

#[test]
fn true_lets_them_run() {
    let p = policy("filesystem:\n  setid: true\n", ALLOW_FILES);
    for (name, args) in setid_calls() {
        assert_eq!(decide(&p, Target::LinuxX86_64, name, args), Action::Allow, "{name}");
    }
    assert_eq!(decide(&p, Target::LinuxX86_64, "openat2", [0; 6]), Action::Allow);
}

/// The ordinary modes still work; the mode is a 16-bit `umode_t`, so bits 16 and up
/// neither trigger the rule nor hide a set-id bit from it.
#[test]
fn only_set_id_modes_are_denied() {
    let p = policy("", ALLOW_FILES);
    let x86 = Target::LinuxX86_64;
    assert_eq!(decide(&p, x86, "chmod", [0, 0o1777, 0, 0, 0, 0]), Action::Allow); // sticky bit
    assert_eq!(decide(&p, x86, "chmod", [0, 0xffff_0000 | 0o755, 0, 0, 0, 0]), Action::Allow);
    assert_eq!(decide(&p, x86, "chmod", [0, 0xffff_ffff_0000_0000 | 0o4755, 0, 0, 0, 0]), EPERM);
    assert_eq!(decide(&p, x86, "chmod", [0, 0x1_0000 | 0o2755, 0, 0, 0, 0]), EPERM);
    // open without O_CREAT or O_TMPFILE ignores the mode; O_DIRECTORY alone is not O_TMPFILE.
    assert_eq!(decide(&p, x86, "open", [0, O_WRONLY, 0o4755, 0, 0, 0]), Action::Allow);
    assert_eq!(decide(&p, x86, "open", [0, 0o200000, 0o4755, 0, 0, 0]), Action::Allow);
    assert_eq!(decide(&p, x86, "open", [0, O_WRONLY | O_CREAT, 0o644, 0, 0, 0]), Action::Allow);
}

/// A call the policy does not let run keeps its decision: no rule is added for it.
#[test]
fn calls_that_cannot_run_keep_their_decision() {
    let p = policy("", "default: kill-process\nsyscalls:\n  allow: [read]");
    assert_eq!(decide(&p, Target::LinuxX86_64, "chmod", [0, 0o4755, 0, 0, 0, 0]), Action::KillProcess);
    assert_eq!(decide(&p, Target::LinuxX86_64, "openat2", [0; 6]), Action::KillProcess);
    let chmod = tables::table(Target::LinuxX86_64).by_name("chmod").unwrap().nr;
    assert!(!p.syscalls_for(Target::LinuxX86_64).unwrap().syscalls.contains_key(&chmod));
    // A stricter deny of the policy's own still wins.
    let p = policy(
        "",
        "syscalls:\n  allow: [chmod]\n  deny:\n    - chmod: { when: \"mode & 0o4000 != 0\", action: kill-process }",
    );
    assert_eq!(decide(&p, Target::LinuxX86_64, "chmod", [0, 0o4755, 0, 0, 0, 0]), Action::KillProcess);
    assert_eq!(decide(&p, Target::LinuxX86_64, "chmod", [0, 0o2755, 0, 0, 0, 0]), EPERM);
}

/// Under `default: allow` every call can run, so the rules are there without any allow.
#[test]
fn a_deny_list_policy_gets_the_rules_too() {
    let p = policy("", "default: allow");
    assert_eq!(decide(&p, Target::LinuxX86_64, "chmod", [0, 0o4755, 0, 0, 0, 0]), EPERM);
    assert_eq!(decide(&p, Target::LinuxX86_64, "chmod", [0, 0o755, 0, 0, 0, 0]), Action::Allow);
}

#[test]
fn a_value_other_than_a_boolean_is_an_error_at_its_span() {
    let src = "version: 1\nfilesystem:\n  setid: no-thanks\n";
    let checked = front::check(src);
    let d = checked.diagnostics.iter().find(|d| d.is_error()).expect("an error");
    assert_eq!(d.code, Code::WrongType);
    assert_eq!(&src[d.primary.span.clone()], "no-thanks");
    assert!(checked.policy.is_none());
}

#[test]
fn explain_names_the_setting() {
    let x86 = Target::LinuxX86_64;
    let nr = tables::table(x86).by_name("chmod").unwrap().nr;
    let call = Call { arch: x86.audit_arch().unwrap(), nr, args: [0, 0o4755, 0, 0, 0, 0] };
    let written = format!("version: 1\n{ALLOW_FILES}\nfilesystem:\n  setid: false\n");
    let text = explain_policy(&policy("filesystem:\n  setid: false\n", ALLOW_FILES), &written, x86, &call);
    assert!(text.contains("by `filesystem: setid` at line 5, column 3: setid: false"), "{text}");
    let unwritten = format!("version: 1\n{ALLOW_FILES}\n");
    let text = explain_policy(&policy("", ALLOW_FILES), &unwritten, x86, &call);
    assert!(text.contains("by `filesystem: setid`, not written"), "{text}");
}
