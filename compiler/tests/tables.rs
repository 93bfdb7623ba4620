//! The generated syscall tables and constants, and the syscall groups: checked against
//! libseccomp, against a fresh run of the generator, and against facts from the kernel
//! sources and manual pages.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use capsule_artifacts::Target;
use capsule_compiler::groups;
use capsule_compiler::tables::{self, SyscallDef, Table};

const X86: Target = Target::LinuxX86_64;
const ARM: Target = Target::LinuxAarch64;

fn def(target: Target, name: &str) -> &'static SyscallDef {
    tables::table(target).by_name(name).unwrap_or_else(|| panic!("{name} missing on {}", target.name()))
}

fn arg_summary(def: &SyscallDef) -> Vec<(&'static str, Option<&'static str>, &'static str, u8, bool)> {
    def.args().iter().map(|a| (a.kernel_name(), a.man_name(), a.c_type(), a.bits, a.pointer)).collect()
}

// ------------------------------------------------------------------ libseccomp cross-check

/// Where our tables and Debian's libseccomp 2.5.4 (2.5.4-1+deb12u1) disagree, and why.
/// Its syscall lists stop at Linux 6.7 (futex_requeue, 456); every difference is a
/// syscall added later, which it does not know at all.
const LIBSECCOMP_UNKNOWN: &[(&str, &[Target], &str)] = &[
    ("uretprobe", &[X86], "Linux 6.11, x86_64 only"),
    ("statmount", &[X86, ARM], "Linux 6.8"),
    ("listmount", &[X86, ARM], "Linux 6.8"),
    ("lsm_get_self_attr", &[X86, ARM], "Linux 6.8"),
    ("lsm_set_self_attr", &[X86, ARM], "Linux 6.8"),
    ("lsm_list_modules", &[X86, ARM], "Linux 6.8"),
    ("mseal", &[X86, ARM], "Linux 6.10"),
    ("setxattrat", &[X86, ARM], "Linux 6.13"),
    ("getxattrat", &[X86, ARM], "Linux 6.13"),
    ("listxattrat", &[X86, ARM], "Linux 6.13"),
    ("removexattrat", &[X86, ARM], "Linux 6.13"),
    ("open_tree_attr", &[X86, ARM], "Linux 6.15"),
    ("file_getattr", &[X86, ARM], "Linux 6.17"),
    ("file_setattr", &[X86, ARM], "Linux 6.17"),
    ("uprobe", &[X86], "Linux 6.18, x86_64 only"),
];

/// Runs scmp_sys_resolver once per query inside one shell, one answer a line.
fn resolve_all(arch: &str, queries: &[String]) -> Vec<String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"arch=$1; shift; for q; do scmp_sys_resolver -a "$arch" "$q" || echo ERROR; done"#)
        .arg("sh")
        .arg(arch)
        .args(queries)
        .output()
        .expect("run sh");
    assert!(out.status.success(), "scmp_sys_resolver loop failed: {}", String::from_utf8_lossy(&out.stderr));
    let answers: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect();
    assert_eq!(answers.len(), queries.len(), "one answer per query");
    answers
}

#[test]
fn libseccomp_agrees_except_for_the_listed_newer_syscalls() {
    if Command::new("scmp_sys_resolver").arg("-h").output().is_err() {
        println!("skipped: scmp_sys_resolver not installed (apt-get install seccomp)");
        return;
    }
    for (target, arch) in [(X86, "x86_64"), (ARM, "aarch64")] {
        let table = tables::table(target);
        let mut differences = BTreeSet::new();

        // Every name of ours resolves to our number.
        let names: Vec<String> = table.syscalls.iter().map(|s| s.name().to_owned()).collect();
        for (def, answer) in table.syscalls.iter().zip(resolve_all(arch, &names)) {
            if answer != def.nr.to_string() {
                differences.insert(format!("{}: ours {}, libseccomp {answer}", def.name(), def.nr));
            }
        }
        // Every number libseccomp knows, up to our highest, is ours under the same name.
        let numbers: Vec<String> = (0..=table.max_nr).map(|nr| nr.to_string()).collect();
        for (nr, answer) in (0..=table.max_nr).zip(resolve_all(arch, &numbers)) {
            let ours = table.by_nr(nr).map(|d| d.name());
            if answer != "UNKNOWN" && ours != Some(answer.as_str()) {
                differences.insert(format!("number {nr}: ours {ours:?}, libseccomp {answer}"));
            }
        }

        let expected: BTreeSet<String> = LIBSECCOMP_UNKNOWN
            .iter()
            .filter(|(_, targets, _)| targets.contains(&target))
            .map(|(name, _, _)| format!("{name}: ours {}, libseccomp -1", def(target, name).nr))
            .collect();
        assert_eq!(differences, expected, "{arch}: differences from libseccomp");
    }
}

// ------------------------------------------------------------------ freshness

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Rerunning the generator gives the checked-in files byte for byte. It extracts the
/// kernel tarball (about 15 s), so it runs only with CAPSULE_SLOW_TESTS=1.
#[test]
fn generated_tables_are_fresh() {
    if std::env::var_os("CAPSULE_SLOW_TESTS").is_none() {
        println!("skipped: set CAPSULE_SLOW_TESTS=1 to rerun the generator (about 15 s)");
        return;
    }
    if !Path::new("/usr/src/linux-source-6.12.tar.xz").exists() {
        println!("skipped: /usr/src/linux-source-6.12.tar.xz not installed");
        return;
    }
    let root = repo_root();
    let out = tempfile::tempdir().unwrap();
    let status = Command::new("python3")
        .arg(root.join("compiler/tools/gen-tables.py"))
        .arg("--out")
        .arg(out.path())
        .current_dir(&root)
        .status()
        .expect("run python3");
    assert!(status.success(), "gen-tables.py failed");
    let mut generated: Vec<_> = std::fs::read_dir(out.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    generated.sort();
    assert_eq!(generated, ["common.rs", "linux_aarch64.rs", "linux_x86_64.rs"]);
    for name in generated {
        let fresh = std::fs::read(out.path().join(&name)).unwrap();
        let checked_in = std::fs::read(root.join("compiler/src/tables").join(&name)).unwrap();
        assert!(fresh == checked_in, "compiler/src/tables/{} is stale: rerun gen-tables.py", name.to_string_lossy());
    }
}

// ------------------------------------------------------------------ table invariants

#[test]
fn tables_are_sorted_and_lookups_find_every_entry() {
    for target in Target::LINUX {
        let table = tables::table(target);
        assert_eq!(table.target, target);
        assert!(table.syscalls.windows(2).all(|w| w[0].nr < w[1].nr), "syscalls sorted by number");
        assert!(table.constants.windows(2).all(|w| w[0].name() < w[1].name()), "constants sorted by name");
        assert_eq!(table.max_nr, table.syscalls.last().unwrap().nr);
        for def in table.syscalls {
            assert_eq!(table.by_name(def.name()), Some(def));
            assert_eq!(table.by_nr(def.nr), Some(def));
            assert!(def.args().len() <= 6);
            assert!(def.args_known || def.args().is_empty());
            for arg in def.args() {
                assert!(matches!(arg.bits, 16 | 32 | 64), "{}: {} bits", def.name(), arg.bits);
                assert!(!arg.pointer || arg.bits == 64);
                assert_ne!(arg.man_name(), Some(arg.kernel_name()), "man_name only when it differs");
            }
        }
        for c in table.constants {
            assert_eq!(table.constant(c.name()), Some(c.value));
        }
        assert_eq!(table.by_name("no_such_syscall"), None);
        assert_eq!(table.by_nr(table.max_nr + 1), None);
        assert_eq!(table.constant("NO_SUCH_CONSTANT"), None);
    }
}

#[test]
fn max_nr_and_table_sizes() {
    let x86: &Table = tables::table(X86);
    let arm: &Table = tables::table(ARM);
    assert_eq!(x86.max_nr, 469); // file_setattr, Linux 6.17
    assert_eq!(arm.max_nr, 469);
    // x86_64: 0..=336 and 424..=469 (337..=423 are reserved for the other ABIs).
    assert_eq!(x86.syscalls.len(), 337 + 46);
    assert!((337..424).all(|nr| x86.by_nr(nr).is_none()));
    // aarch64: 0..=243, 260..=294, 424..=469 (244..=259 are per-architecture slots).
    assert_eq!(arm.syscalls.len(), 244 + 35 + 46);
    assert!((244..260).all(|nr| arm.by_nr(nr).is_none()));
}

#[test]
fn recent_syscalls_are_present() {
    for target in Target::LINUX {
        for (name, nr) in [
            ("statmount", 457),
            ("listmount", 458),
            ("lsm_get_self_attr", 459),
            ("lsm_set_self_attr", 460),
            ("lsm_list_modules", 461),
            ("mseal", 462),
            ("setxattrat", 463),
            ("getxattrat", 464),
            ("listxattrat", 465),
            ("removexattrat", 466),
            ("open_tree_attr", 467),
            ("file_getattr", 468),
            ("file_setattr", 469),
        ] {
            assert_eq!(def(target, name).nr, nr, "{name} on {}", target.name());
        }
    }
    assert_eq!(def(X86, "uretprobe").nr, 335);
    assert_eq!(def(X86, "uprobe").nr, 336);
    assert!(tables::table(ARM).by_name("uretprobe").is_none());
    // Syscalls aarch64 never had.
    for name in ["open", "fork", "stat", "select", "arch_prctl", "modify_ldt", "iopl"] {
        assert!(tables::table(ARM).by_name(name).is_none(), "{name} on aarch64");
        assert!(tables::table(X86).by_name(name).is_some(), "{name} on x86_64");
    }
}

#[test]
fn argument_names_types_and_widths_come_from_the_kernel_and_the_man_pages() {
    let socket = def(X86, "socket");
    assert_eq!(socket.nr, 41);
    assert_eq!(
        arg_summary(socket),
        [
            ("family", Some("domain"), "int", 32, false),
            ("type", None, "int", 32, false),
            ("protocol", None, "int", 32, false),
        ]
    );
    assert_eq!(socket.args()[0].display_name(), "domain");
    assert!(socket.args()[0].answers_to("family") && socket.args()[0].answers_to("domain"));

    // fs/ioctl.c: SYSCALL_DEFINE3(ioctl, unsigned int, fd, unsigned int, cmd, unsigned long, arg)
    assert_eq!(
        arg_summary(def(X86, "ioctl")),
        [
            ("fd", None, "unsigned int", 32, false),
            ("cmd", Some("request"), "unsigned int", 32, false),
            ("arg", None, "unsigned long", 64, false),
        ]
    );
    for target in Target::LINUX {
        let mmap = def(target, "mmap");
        assert_eq!(mmap.args().len(), 6);
        assert!(mmap.args().iter().all(|a| a.bits == 64 && a.c_type() == "unsigned long"));
        let openat = def(target, "openat");
        assert_eq!(arg_summary(openat)[1], ("filename", Some("pathname"), "const char *", 64, true));
        assert_eq!(openat.args()[3].c_type(), "umode_t");
        assert_eq!(openat.args()[3].bits, 16);
        let personality = def(target, "personality");
        assert_eq!(arg_summary(personality), [("personality", Some("persona"), "unsigned int", 32, false)]);
        let capget = def(target, "capget");
        assert!(capget.args().iter().all(|a| a.pointer), "cap_user_*_t are pointer typedefs");
        assert_eq!(def(target, "getpid").args(), &[]);
        assert!(def(target, "getpid").args_known);
        assert!(def(target, "rt_sigreturn").args().is_empty());
    }
    // The raw clone: CONFIG_CLONE_BACKWARDS on arm64 swaps the last two arguments.
    let names = |d: &SyscallDef| d.args().iter().map(|a| a.display_name()).collect::<Vec<_>>();
    assert_eq!(names(def(X86, "clone")), ["flags", "stack", "parent_tid", "child_tid", "tls"]);
    assert_eq!(names(def(ARM, "clone")), ["flags", "stack", "parent_tid", "tls", "child_tid"]);
    assert_eq!(def(X86, "clone").args()[0].kernel_name(), "clone_flags");
    // No SYSCALL_DEFINE: the number exists, the kernel answers ENOSYS.
    assert!(!def(X86, "uselib").args_known);
    assert!(!def(ARM, "map_shadow_stack").args_known);
    assert!(def(X86, "map_shadow_stack").args_known);
}

#[test]
fn constants_per_target() {
    let x86 = tables::table(X86);
    let arm = tables::table(ARM);
    for table in [x86, arm] {
        assert_eq!(table.constant("AF_NETLINK"), Some(16));
        assert_eq!(table.constant("AF_INET6"), Some(10));
        assert_eq!(table.constant("SOCK_CLOEXEC"), Some(0o2000000));
        assert_eq!(table.constant("O_WRONLY"), Some(1));
        assert_eq!(table.constant("CLONE_NEWUSER"), Some(0x1000_0000));
        assert_eq!(table.constant("TIOCSTI"), Some(0x5412));
        assert_eq!(table.constant("TIOCGWINSZ"), Some(0x5413));
        assert_eq!(table.constant("TCGETS"), Some(0x5401));
        assert_eq!(table.constant("FIONREAD"), Some(0x541b));
        assert_eq!(table.constant("PR_SET_NO_NEW_PRIVS"), Some(38));
        assert_eq!(table.constant("PER_LINUX"), Some(0));
        assert_eq!(table.constant("PER_LINUX32"), Some(8));
        assert_eq!(table.constant("ADDR_NO_RANDOMIZE"), Some(0x0040000));
        assert_eq!(table.constant("EPERM"), Some(1));
        assert_eq!(table.constant("SIGKILL"), Some(9));
        assert_eq!(table.constant("AT_FDCWD"), Some(-100i64 as u64));
        assert_eq!(table.constant("SECCOMP_RET_KILL_PROCESS"), Some(0x8000_0000));
        assert_eq!(table.constant("IPPROTO_TCP"), Some(6));
    }
    // The kernel's values, which differ on arm64 (glibc's O_LARGEFILE would be 0).
    for (name, x86_value, arm_value) in [
        ("O_DIRECTORY", 0o200000, 0o40000),
        ("O_NOFOLLOW", 0o400000, 0o100000),
        ("O_DIRECT", 0o40000, 0o200000),
        ("O_LARGEFILE", 0o100000, 0o400000),
    ] {
        assert_eq!(x86.constant(name), Some(x86_value), "{name} on x86_64");
        assert_eq!(arm.constant(name), Some(arm_value), "{name} on aarch64");
    }
    assert_eq!(x86.constant("MAP_32BIT"), Some(0x40));
    assert_eq!(arm.constant("MAP_32BIT"), None);
    assert_eq!(arm.constant("PROT_BTI"), Some(0x10));
    assert_eq!(arm.constant("PROT_MTE"), Some(0x20));
    assert_eq!(x86.constant("PROT_BTI"), None);
}

#[test]
fn errno_names_and_values() {
    assert_eq!(tables::errno_name(1), Some("EPERM"));
    assert_eq!(tables::errno_name(13), Some("EACCES"));
    assert_eq!(tables::errno_name(38), Some("ENOSYS"));
    assert_eq!(tables::errno_name(11), Some("EAGAIN"), "the name, not the alias EWOULDBLOCK");
    assert_eq!(tables::errno_name(35), Some("EDEADLK"));
    assert_eq!(tables::errno_name(95), Some("EOPNOTSUPP"));
    assert_eq!(tables::errno_name(0), None);
    assert_eq!(tables::errno_name(4095), None);
    assert_eq!(tables::errno_value("EPERM"), Some(1));
    assert_eq!(tables::errno_value("EWOULDBLOCK"), Some(11));
    assert_eq!(tables::errno_value("ENOTSUP"), Some(95));
    assert_eq!(tables::errno_value("EHWPOISON"), Some(133));
    assert_eq!(tables::errno_value("eperm"), None);
    // Every errno constant round-trips through its canonical name.
    for c in tables::table(X86).constants.iter().filter(|c| tables::errno_value(c.name()).is_some()) {
        let value = u16::try_from(c.value).unwrap();
        assert_eq!(tables::errno_value(c.name()), Some(value));
        assert_eq!(tables::errno_value(tables::errno_name(value).unwrap()), Some(value));
    }
}

#[test]
fn all_syscall_names_is_the_sorted_union() {
    let all: Vec<&str> = tables::all_syscall_names().collect();
    assert!(all.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicates");
    let union: BTreeSet<&str> =
        Target::LINUX.iter().flat_map(|t| tables::table(*t).syscalls.iter().map(|s| s.name())).collect();
    assert_eq!(all, union.into_iter().collect::<Vec<_>>());
    assert!(all.contains(&"open") && all.contains(&"mseal"));
}

#[test]
fn version_strings() {
    assert_eq!(tables::KERNEL_VERSION, "6.18");
    assert!(tables::TABLES_SOURCE.contains("linux-source-6.12"));
    assert!(tables::TABLES_SOURCE.contains("manpages-dev"));
}

#[test]
#[should_panic(expected = "macos has no syscall table")]
fn macos_has_no_table() {
    tables::table(Target::Macos);
}

// ------------------------------------------------------------------ groups

fn expanded_names(name: &str, target: Target) -> BTreeSet<&'static str> {
    groups::expand(name, target).into_iter().map(|d| d.name()).collect()
}

#[test]
fn groups_are_sorted_and_every_member_exists() {
    let all = groups::groups();
    assert!(all.windows(2).all(|w| w[0].name < w[1].name), "sorted by name");
    let syscalls: BTreeSet<&str> = tables::all_syscall_names().collect();
    for g in all {
        assert!(!g.name.starts_with('@'));
        assert_eq!(groups::group(g.name), Some(g));
        assert_eq!(groups::group(&format!("@{}", g.name)), Some(g));
        assert!(!g.description.is_empty());
        let mut seen = BTreeSet::new();
        for member in g.members {
            assert!(seen.insert(member), "@{}: {member} listed twice", g.name);
            match member.strip_prefix('@') {
                Some(nested) => assert!(groups::group(nested).is_some(), "@{}: unknown group {member}", g.name),
                None => assert!(syscalls.contains(member), "@{}: {member} is no syscall on any target", g.name),
            }
        }
    }
    assert_eq!(groups::group("no-such-group"), None);
    assert!(groups::expand("no-such-group", X86).is_empty());
}

#[test]
fn groups_have_no_cycles() {
    // Depth-first search over the nesting, failing on a group reached from itself.
    fn visit(name: &str, path: &mut Vec<String>) {
        assert!(!path.iter().any(|p| p == name), "cycle: {} -> {name}", path.join(" -> "));
        path.push(name.to_owned());
        for member in groups::group(name).unwrap().members {
            if let Some(nested) = member.strip_prefix('@') {
                visit(nested, path);
            }
        }
        path.pop();
    }
    for g in groups::groups() {
        visit(g.name, &mut Vec::new());
    }
}

#[test]
fn expand_resolves_nesting_sorted_and_deduplicated() {
    for target in Target::LINUX {
        for g in groups::groups() {
            let defs = groups::expand(g.name, target);
            assert!(defs.windows(2).all(|w| w[0].nr < w[1].nr), "@{} sorted by number, each once", g.name);
            // Every direct syscall member the target has is in the expansion.
            let names: BTreeSet<&str> = defs.iter().map(|d| d.name()).collect();
            for member in g.members.iter().filter(|m| !m.starts_with('@')) {
                assert_eq!(names.contains(member), tables::table(target).by_name(member).is_some());
            }
        }
        let privileged = expanded_names("@privileged", target);
        for nested in ["clock", "module", "mount", "raw-io", "reboot", "swap"] {
            let inner = expanded_names(nested, target);
            assert!(inner.is_subset(&privileged), "@privileged includes @{nested}");
        }
    }
    // Members a target lacks are skipped: aarch64 has no open, x86_64 has.
    assert!(expanded_names("default", X86).contains("open"));
    assert!(!expanded_names("default", ARM).contains("open"));
    assert!(expanded_names("default", ARM).contains("openat"));
    assert!(groups::expand("raw-io", ARM).is_empty());
}

#[test]
fn dangerous_groups_include_what_their_names_promise() {
    let promises: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("debug", &["ptrace", "process_vm_readv", "process_vm_writev", "perf_event_open", "pidfd_getfd"][..]),
        (
            "mount",
            &[
                "mount",
                "umount2",
                "pivot_root",
                "chroot",
                "fsopen",
                "fsmount",
                "move_mount",
                "open_tree",
                "mount_setattr",
            ],
        ),
        ("module", &["init_module", "finit_module", "delete_module"]),
        ("reboot", &["reboot", "kexec_load", "kexec_file_load"]),
        ("swap", &["swapon", "swapoff"]),
        ("keyring", &["add_key", "keyctl", "request_key"]),
        ("io-uring", &["io_uring_setup", "io_uring_enter", "io_uring_register"]),
        ("clock", &["settimeofday", "clock_settime", "adjtimex", "clock_adjtime"]),
        ("obsolete", &["uselib", "_sysctl", "ustat", "sysfs", "create_module"]),
        (
            "privileged",
            &[
                "setuid",
                "setgid",
                "setresuid",
                "setgroups",
                "capset",
                "bpf",
                "acct",
                "sethostname",
                "mount",
                "reboot",
                "init_module",
                "swapon",
                "open_by_handle_at",
            ],
        ),
    ]);
    for (group, members) in promises {
        let have: BTreeSet<&str> = Target::LINUX.iter().flat_map(|t| expanded_names(group, *t)).collect();
        for member in members {
            assert!(have.contains(member), "@{group} lacks {member}");
        }
    }
    let x86_only = |group: &str| expanded_names(group, X86);
    assert_eq!(x86_only("raw-io"), BTreeSet::from(["iopl", "ioperm"]));
    assert_eq!(x86_only("cpu-emulation"), BTreeSet::from(["modify_ldt"]));
}

#[test]
fn default_overlaps_no_dangerous_group() {
    // The built-in policy allows @default and denies the dangerous groups, and deny wins.
    let dangerous = [
        "privileged",
        "mount",
        "module",
        "debug",
        "obsolete",
        "raw-io",
        "reboot",
        "swap",
        "cpu-emulation",
        "keyring",
        "io-uring",
    ];
    for target in Target::LINUX {
        let default = expanded_names("default", target);
        for group in dangerous {
            let both: Vec<_> = default.intersection(&expanded_names(group, target)).copied().collect();
            assert!(both.is_empty(), "@default and @{group} share {both:?} on {}", target.name());
        }
        for needed in ["execve", "brk", "mmap", "mprotect", "munmap", "openat", "read", "close", "exit_group"] {
            assert!(default.contains(needed), "@default lacks {needed}");
        }
    }
}

#[test]
fn docs_describe_every_group_with_its_members() {
    let doc = std::fs::read_to_string(repo_root().join("docs/tables.md")).unwrap();
    for g in groups::groups() {
        let heading = format!("### `@{}`\n", g.name);
        let section = doc.split(&heading).nth(1).unwrap_or_else(|| panic!("docs/tables.md lacks {heading:?}"));
        let section = section.split("\n### ").next().unwrap();
        let members = section.lines().rev().find(|l| !l.is_empty()).unwrap();
        let expected = g.members.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ");
        assert_eq!(members, expected, "docs/tables.md lists other members for @{}", g.name);
    }
}
