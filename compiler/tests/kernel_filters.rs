//! Compiled filters on the real kernel: each check forks a child, installs the filter
//! there, makes real system calls and reports what the kernel did through its exit
//! status (an errno, or death by a signal).
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use capsule_artifacts::{LaunchSettings, Target};
use capsule_compiler::back::bpf::compile;
use capsule_compiler::back::validate::validate;
use capsule_compiler::bpf::Insn;
use capsule_compiler::ir::{Action, Arg, Cond, Origin, Policy, Rule, RuleKind, SyscallPolicy, SyscallRules, Test};
use capsule_compiler::valid::{verify, width_of_bits};
use capsule_compiler::{passes, tables};
use std::collections::BTreeMap;

const X86: Target = Target::LinuxX86_64;
const AF_INET: u64 = 2;
const AF_NETLINK: u64 = 16;
/// Not an errno the kernel gives these calls on its own, so it proves the filter ran.
const NEWER_ERRNO: u16 = libc::EXDEV as u16;

fn rule(kind: RuleKind, cond: Cond) -> Rule {
    Rule { kind, cond, origin: Origin { span: 0..1, group: None, implied_by: None } }
}

fn domain(test: Test) -> Cond {
    let def = tables::table(X86).by_name("socket").expect("socket");
    Cond::Test { arg: Arg { index: 0, width: width_of_bits(def.args()[0].bits) }, test }
}

/// Default EPERM; exit and getpid allowed; AF_UNIX/AF_INET sockets allowed and
/// AF_NETLINK denied with EACCES; io_uring_setup denied with ENOSYS.
fn agent_policy() -> Policy {
    let rules: Vec<(&str, Vec<Rule>)> = vec![
        ("exit_group", vec![rule(RuleKind::Allow, Cond::True)]),
        ("exit", vec![rule(RuleKind::Allow, Cond::True)]),
        ("getpid", vec![rule(RuleKind::Allow, Cond::True)]),
        ("close", vec![rule(RuleKind::Allow, Cond::True)]),
        (
            "socket",
            vec![
                rule(RuleKind::Allow, domain(Test::In(vec![1, AF_INET]))),
                rule(RuleKind::Deny(Action::Errno(libc::EACCES as u16)), domain(Test::Eq(AF_NETLINK))),
            ],
        ),
        ("io_uring_setup", vec![rule(RuleKind::Deny(Action::Errno(libc::ENOSYS as u16)), Cond::True)]),
    ];
    let syscalls = rules
        .into_iter()
        .map(|(name, rules)| {
            let def = tables::table(X86).by_name(name).expect("known syscall");
            (def.nr, SyscallRules { name: def.name(), nr: def.nr, rules })
        })
        .collect::<BTreeMap<_, _>>();
    Policy {
        name: "kernel".to_owned(),
        description: None,
        default: Action::Errno(libc::EPERM as u16),
        newer_syscalls: Action::Errno(NEWER_ERRNO),
        foreign_arch: Action::KillProcess,
        targets: vec![X86],
        syscalls: vec![SyscallPolicy { target: X86, syscalls }],
        launch: LaunchSettings::default(),
    }
}

fn build(policy: &Policy) -> Vec<Insn> {
    let optimised = passes::run_all(policy);
    let info = verify(&optimised).expect("valid");
    let program = compile(&optimised, &info, X86).expect("compiles");
    validate(policy, &info, X86, &program).expect("translation validation");
    program
}

#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Exited(i32),
    Killed(i32),
}

/// Fork; in the child install `program`, run `body` and exit with what it returns.
fn in_filtered_child(program: &[Insn], body: fn() -> i32) -> Ended {
    // Everything the child needs is prepared before the fork: after it, only
    // async-signal-safe calls (raw syscalls, _exit).
    let mut filter: Vec<libc::sock_filter> =
        program.iter().map(|i| libc::sock_filter { code: i.code, jt: i.jt, jf: i.jf, k: i.k }).collect();
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_mut_ptr() };
    // SAFETY: fork in a test process; the child only makes raw system calls and
    // leaves with _exit, never returning into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: plain prctl/seccomp system calls on this (child) process; `prog`
        // points at `filter`, which lives until _exit.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                libc::_exit(120);
            }
            if libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &prog as *const libc::sock_fprog) != 0
            {
                libc::_exit(121);
            }
            libc::_exit(body());
        }
    }
    let mut status = 0;
    // SAFETY: waiting for the child we just forked, with a valid status pointer.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    if libc::WIFSIGNALED(status) {
        Ended::Killed(libc::WTERMSIG(status))
    } else {
        Ended::Exited(libc::WEXITSTATUS(status))
    }
}

/// The errno of a raw syscall's result, or 0 when it succeeded.
fn errno_of(result: libc::c_long) -> i32 {
    if result >= 0 {
        0
    } else {
        // SAFETY: reading this thread's errno right after the call that set it.
        unsafe { *libc::__errno_location() }
    }
}

fn check(body: fn() -> i32, expected: Ended) {
    let program = build(&agent_policy());
    assert_eq!(in_filtered_child(&program, body), expected);
}

#[test]
fn a_denied_socket_family_is_denied_whatever_the_high_half_holds() {
    check(
        || {
            // SAFETY: socket(2) with integer arguments; garbage above the int reaches the register.
            errno_of(unsafe { libc::syscall(libc::SYS_socket, AF_NETLINK | 0xdead_beef_0000_0000, libc::SOCK_RAW, 0) })
        },
        Ended::Exited(libc::EACCES),
    );
    check(
        || {
            // SAFETY: as above.
            errno_of(unsafe { libc::syscall(libc::SYS_socket, AF_NETLINK, libc::SOCK_RAW, 0) })
        },
        Ended::Exited(libc::EACCES),
    );
}

#[test]
fn an_allowed_socket_family_works_with_garbage_in_the_high_half() {
    check(
        || {
            // SAFETY: socket(2) with integer arguments, as above.
            errno_of(unsafe { libc::syscall(libc::SYS_socket, AF_INET | 0xffff_ffff_0000_0000, libc::SOCK_DGRAM, 0) })
        },
        Ended::Exited(0),
    );
}

#[test]
fn an_i386_call_through_int_0x80_kills_the_process() {
    check(
        || {
            let mut eax: u32 = 20; // getpid on i386
            // SAFETY: `int 0x80` enters the kernel's i386 entry point, which only reads
            // eax here (getpid takes no arguments); it may clobber r8-r11.
            unsafe {
                core::arch::asm!("int 0x80", inout("eax") eax, out("r8") _, out("r9") _, out("r10") _, out("r11") _, options(nostack));
            }
            if eax as i32 > 0 { 0 } else { 99 }
        },
        Ended::Killed(libc::SIGSYS),
    );
}

#[test]
fn an_x32_number_kills_the_process() {
    check(
        // SAFETY: getpid with the x32 bit set; no arguments are read.
        || errno_of(unsafe { libc::syscall(libc::SYS_getpid | 0x4000_0000) }),
        Ended::Killed(libc::SIGSYS),
    );
}

#[test]
fn io_uring_setup_is_denied_with_enosys() {
    check(
        // SAFETY: io_uring_setup with a null params pointer never runs: the filter denies it.
        || errno_of(unsafe { libc::syscall(libc::SYS_io_uring_setup, 8, std::ptr::null_mut::<u8>()) }),
        Ended::Exited(libc::ENOSYS),
    );
}

#[test]
fn a_number_above_the_table_gets_the_newer_syscalls_action() {
    assert!(tables::table(X86).max_nr < 1000);
    check(
        // SAFETY: syscall number 1000 does not exist; no arguments are read.
        || errno_of(unsafe { libc::syscall(1000) }),
        Ended::Exited(NEWER_ERRNO as i32),
    );
}

#[test]
fn allowed_calls_work_and_unnamed_ones_get_the_default() {
    check(
        || {
            // SAFETY: getpid and getppid take no arguments.
            let pid = unsafe { libc::syscall(libc::SYS_getpid) };
            if pid <= 0 {
                return 98;
            }
            // SAFETY: as above.
            errno_of(unsafe { libc::syscall(libc::SYS_getppid) })
        },
        Ended::Exited(libc::EPERM),
    );
}

/// The file the mode checks chmod, and the mode they pass: set before each child forks
/// (the child's body is a plain `fn`).
static MODE_TARGET: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();
static MODE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn fchmodat_mode_target() -> i32 {
    let path = MODE_TARGET.get().expect("set before the fork");
    let mode = MODE.load(std::sync::atomic::Ordering::SeqCst);
    // SAFETY: fchmodat(2) on a live C string; the mode register carries bits above the
    // 16 the kernel reads, on purpose.
    errno_of(unsafe { libc::syscall(libc::SYS_fchmodat, libc::AT_FDCWD, path.as_ptr(), mode, 0) })
}

/// A `umode_t` is 16 bits to the kernel, so `fchmodat(path, 0o777 | 0x10000)` is a
/// chmod 0777: shown first without a filter, then refused by a policy that denies
/// mode 0777 whatever bits 16 to 63 hold, while an allowed mode still works with them.
#[test]
fn a_denied_mode_is_denied_whatever_bits_16_and_up_hold() {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("target");
    std::fs::write(&file, b"x").unwrap();
    MODE_TARGET.set(std::ffi::CString::new(file.as_os_str().as_bytes()).unwrap()).unwrap();
    let set_mode = |mode| std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
    let mode_now = || std::fs::metadata(&file).unwrap().permissions().mode() & 0o7777;

    set_mode(0o600);
    MODE.store(0o777 | 0x1_0000, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(fchmodat_mode_target(), 0, "without a filter the call succeeds");
    assert_eq!(mode_now(), 0o777, "and the kernel ignored bit 16: the attack works");

    let source = "version: 1\nname: modes\ndefault: allow\nsyscalls:\n  deny:\n    \
                  - fchmodat: { when: \"mode == 0o777\", action: errno(EACCES) }\n";
    let built = capsule_compiler::build::build(
        source.as_bytes(),
        &capsule_compiler::build::BuildOptions { targets: vec![X86] },
    )
    .expect("the policy builds");
    let program = capsule_compiler::bpf::decode(&built.files["linux-x86_64.bpf"]).expect("a BPF program");
    for (mode, errno, mode_after) in [
        (0o777, libc::EACCES, 0o600),
        (0o777 | 0x1_0000, libc::EACCES, 0o600),
        (0o777 | 0xffff_ffff_0000_0000, libc::EACCES, 0o600),
        (0o640 | 0x1_0000, 0, 0o640),
    ] {
        set_mode(0o600);
        MODE.store(mode, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(in_filtered_child(&program, fchmodat_mode_target), Ended::Exited(errno), "mode {mode:#x}");
        assert_eq!(mode_now(), mode_after, "mode {mode:#x}");
    }
}
