//! The macOS back-end: snapshots of macos.sb for every valid fixture (each built, so
//! each passed validation), the emitter's escaping, the parser's subset, the
//! evaluator's semantics, and validation catching a profile that says something else.

use capsule_artifacts::Target;
use capsule_compiler::back::sbpl::ast::{
    Filter, Operation, Profile, Proto, Rule, SocketDomain, Str, TargetKind, Verdict,
};
use capsule_compiler::back::sbpl::eval::{Bindings, Object, Regex, evaluate};
use capsule_compiler::back::sbpl::{SyscallFacts, emit, map, parse, validate};
use capsule_compiler::build::{self, BuildOptions};
use capsule_compiler::front;
use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn valid_fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/policies/valid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../cli/src/default-policy.yaml"));
    files
}

fn bindings() -> Bindings {
    Bindings {
        workspace: "/Users/u/work".into(),
        home: "/Users/u".into(),
        tmpdir: "/private/var/folders/x/T".into(),
        proxy_port: "49152".into(),
    }
}

fn policy(src: &str) -> capsule_compiler::ir::Policy {
    let checked = front::check(src);
    checked.policy.unwrap_or_else(|| panic!("{:?}", checked.diagnostics))
}

/// Build a policy; return its macos.sb parsed back.
fn built(src: &str) -> Profile {
    let a = build::build(src.as_bytes(), &BuildOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    parse::parse(std::str::from_utf8(&a.files["macos.sb"]).unwrap()).unwrap()
}

fn decide(p: &Profile, op: Operation, object: Object) -> Verdict {
    evaluate(p, &bindings(), op, &object).unwrap().verdict
}

fn path(p: &str) -> Object {
    Object::Path(p.to_owned())
}

#[test]
fn every_valid_fixture_builds_a_validated_profile_that_round_trips() {
    for file in valid_fixtures() {
        let src = std::fs::read(&file).unwrap();
        let a = build::build(&src, &BuildOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let targets_macos = a.policy.targets.contains(&Target::Macos);
        assert_eq!(a.files.contains_key("macos.sb"), targets_macos, "{}", file.display());
        if !targets_macos {
            continue;
        }
        let report = a.macos_validation.as_ref().expect("validated");
        assert!(report.probes > 500, "{}: only {} probes", file.display(), report.probes);
        let entry = a.manifest.entry_for(Target::Macos).expect("pinned in the manifest");
        assert_eq!(entry.blake3, blake3::hash(&a.files["macos.sb"]).to_hex().to_string());
        let text = String::from_utf8(a.files["macos.sb"].clone()).unwrap();
        let parsed = parse::parse(&text).unwrap();
        assert_eq!(emit::emit(&parsed), text, "{}: emit(parse(text)) == text", file.display());
        insta::assert_snapshot!(format!("sbpl/{}", file.file_name().unwrap().to_string_lossy()), text);
    }
}

#[test]
fn target_selection_writes_macos_sb_only_when_asked() {
    let src = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../cli/src/default-policy.yaml")).unwrap();
    let linux = build::build(&src, &BuildOptions { targets: vec![Target::LinuxX86_64] }).unwrap();
    assert!(!linux.files.contains_key("macos.sb"));
    let mac = build::build(&src, &BuildOptions { targets: vec![Target::Macos] }).unwrap();
    let all = build::build(&src, &BuildOptions::default()).unwrap();
    assert!(!mac.files.contains_key("linux-x86_64.bpf"));
    // Selecting macOS drops the Linux rules, but the profile still reads them.
    assert_eq!(mac.files["macos.sb"], all.files["macos.sb"]);
}

#[test]
fn default_policy_profile_denies_the_escapes_the_workflow_tries() {
    let src =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../cli/src/default-policy.yaml")).unwrap();
    let p = built(&src);
    use Operation::*;
    assert_eq!(decide(&p, FileReadData, path("/Users/u/.ssh/id_ed25519")), Verdict::Deny);
    assert_eq!(decide(&p, FileWriteCreate, path("/Users/u/outside")), Verdict::Deny);
    assert_eq!(decide(&p, FileWriteCreate, path("/usr/local/x")), Verdict::Deny);
    assert_eq!(decide(&p, FileWriteCreate, path("/Users/u/work/x")), Verdict::Allow);
    assert_eq!(decide(&p, FileWriteCreate, path("/private/tmp/x")), Verdict::Allow);
    assert_eq!(decide(&p, FileWriteCreate, path("/tmp/x")), Verdict::Deny, "only the resolved path is named");
    let out = Object::Net { proto: Proto::Tcp, remote: true, host: "203.0.113.7".into(), port: 443 };
    assert_eq!(decide(&p, NetworkOutbound, out), Verdict::Deny);
    assert_eq!(decide(&p, Signal, Object::Process(TargetKind::Others)), Verdict::Deny);
    assert_eq!(decide(&p, Signal, Object::Process(TargetKind::SameSandbox)), Verdict::Allow);
    assert_eq!(decide(&p, FileReadMetadata, path("/Users/u/.ssh")), Verdict::Allow);
    assert_eq!(decide(&p, ProcessExec, path("/usr/bin/true")), Verdict::Allow);
    assert_eq!(decide(&p, ProcessExec, path("/Users/u/work/a.out")), Verdict::Deny);
    assert_eq!(decide(&p, SystemSocket, Object::Socket(SocketDomain::Unix)), Verdict::Allow);
    assert_eq!(decide(&p, SystemSocket, Object::Socket(SocketDomain::System)), Verdict::Deny);
}

#[test]
fn mapping_of_paths_variables_ports_and_processes() {
    let p = built(
        r#"
version: 1
targets: [linux-x86_64, macos]
syscalls:
  allow: ["@default", "@basic-io", "@file-system", "@network-io"]
filesystem:
  read: [/usr, /etc, "${HOME}/.gitconfig", "${WORKSPACE}"]
  write: ["${TMPDIR}", /var/tmp/]
  execute: []
network:
  connect: [tcp/443]
  bind: [tcp/8080]
"#,
    );
    use Operation::*;
    let text = emit::emit(&p);
    assert!(text.contains(r#"(subpath (string-append (param "HOME") "/.gitconfig"))"#), "{text}");
    assert!(text.contains(r#"(subpath "/private/etc")"#) && !text.contains(r#""/etc""#), "{text}");
    assert!(text.contains(r#"(subpath "/private/var/tmp")"#), "{text}");
    assert_eq!(decide(&p, FileReadData, path("/Users/u/.gitconfig")), Verdict::Allow);
    assert_eq!(decide(&p, FileReadData, path("/Users/u/.gitconfigx")), Verdict::Deny);
    assert_eq!(decide(&p, FileReadData, path("/usrx/a")), Verdict::Deny);
    assert_eq!(decide(&p, FileWriteData, path("/private/var/folders/x/T/f")), Verdict::Allow);
    // execute: [] grants nothing (no rule without filters).
    assert_eq!(decide(&p, ProcessExec, path("/usr/bin/true")), Verdict::Deny);
    let tcp = |remote, port| Object::Net { proto: Proto::Tcp, remote, host: "203.0.113.7".into(), port };
    assert_eq!(decide(&p, NetworkOutbound, tcp(true, 443)), Verdict::Allow);
    assert_eq!(decide(&p, NetworkOutbound, tcp(true, 80)), Verdict::Deny);
    assert_eq!(decide(&p, NetworkBind, tcp(false, 8080)), Verdict::Allow);
    assert_eq!(decide(&p, NetworkBind, tcp(false, 8081)), Verdict::Deny);
    // @process is not allowed: no process-fork, no signals.
    assert_eq!(decide(&p, ProcessFork, Object::None), Verdict::Deny);
    let udp = Object::Net { proto: Proto::Udp, remote: true, host: "203.0.113.7".into(), port: 53 };
    assert_eq!(decide(&p, NetworkOutbound, udp), Verdict::Allow, "IP datagram sockets are allowed by @network-io");
}

#[test]
fn udp_is_denied_when_the_policy_denies_non_unix_sockets() {
    let p = built(
        "version: 1\ntargets: [linux-x86_64, macos]\nsyscalls:\n  allow: [\"@default\", \"@network-io\"]\n  deny:\n    - socket: domain != AF_UNIX\nnetwork:\n  connect: [tcp/443]\n",
    );
    let udp = Object::Net { proto: Proto::Udp, remote: true, host: "203.0.113.7".into(), port: 53 };
    assert_eq!(decide(&p, Operation::NetworkOutbound, udp), Verdict::Deny);
    let tcp = Object::Net { proto: Proto::Tcp, remote: true, host: "203.0.113.7".into(), port: 443 };
    assert_eq!(decide(&p, Operation::NetworkOutbound, tcp), Verdict::Deny, "no AF_INET socket, so no TCP either");
}

#[test]
fn paths_sbpl_cannot_express_fail_the_build() {
    for bad in ["${HOME}x", "${HOME}/a/${TMPDIR}"] {
        assert!(map::path(bad).is_err(), "{bad}");
    }
    assert!(map::path("/a\0b").is_err());
    assert_eq!(map::path("/tmp//x/./y/").unwrap(), Str::Lit("/private/tmp/x/y".into()));
    assert_eq!(map::path("/tmpx").unwrap(), Str::Lit("/tmpx".into()));
    assert_eq!(map::path("${WORKSPACE}/").unwrap(), Str::Param("WORKSPACE"));
}

fn rule(verdict: Verdict, ops: &[Operation], filters: Vec<Filter>) -> Rule {
    Rule { comment: vec![], verdict, operations: ops.to_vec(), message: None, filters }
}

#[test]
fn evaluator_last_match_decides_families_by_prefix_default_denies() {
    use Operation::*;
    let lit = |s: &str| Str::Lit(s.into());
    let p = Profile {
        default_message: None,
        rules: vec![
            rule(Verdict::Allow, &[FileRead], vec![Filter::Subpath(lit("/a"))]),
            rule(Verdict::Deny, &[FileReadData], vec![Filter::Literal(lit("/a/secret"))]),
            rule(Verdict::Allow, &[FileAll], vec![Filter::Prefix(lit("/pre"))]),
            rule(
                Verdict::Allow,
                &[FileWriteData],
                vec![Filter::RequireAll(vec![
                    Filter::Subpath(Str::Param("WORKSPACE")),
                    Filter::RequireNot(Box::new(Filter::Subpath(Str::Append(vec![
                        Str::Param("WORKSPACE"),
                        lit("/.git"),
                    ])))),
                ])],
            ),
            rule(Verdict::Allow, &[FileReadData], vec![Filter::Regex("^/r/[0-9]+\\.txt$".into())]),
        ],
    };
    let d = |op, p_: &str| decide(&p, op, path(p_));
    assert_eq!(d(FileReadData, "/a/b"), Verdict::Allow);
    assert_eq!(d(FileReadMetadata, "/a/secret"), Verdict::Allow, "the deny names file-read-data only");
    assert_eq!(d(FileReadData, "/a/secret"), Verdict::Deny, "a later rule wins");
    assert_eq!(d(FileReadData, "/ab"), Verdict::Deny, "subpath goes by whole components");
    assert_eq!(d(FileWriteData, "/prefix/x"), Verdict::Allow, "prefix goes by characters; file* covers writes");
    assert_eq!(d(FileWriteData, "/Users/u/work/src"), Verdict::Allow);
    assert_eq!(d(FileWriteData, "/Users/u/work/.git/config"), Verdict::Deny);
    assert_eq!(d(FileReadData, "/r/12.txt"), Verdict::Allow);
    assert_eq!(d(FileReadData, "/r/12xtxt"), Verdict::Deny);
    assert_eq!(d(FileReadData, "/elsewhere"), Verdict::Deny);
    assert_eq!(evaluate(&p, &bindings(), FileReadData, &path("/zzz")).unwrap().rule, None);
    assert!(evaluate(&p, &bindings(), FileRead, &path("/a")).is_err(), "a family is not an operation");
    assert!(!FileRead.covers(FileWriteData) && NetworkAll.covers(NetworkBind) && !Signal.covers(SysctlRead));
}

#[test]
fn evaluator_refuses_what_it_cannot_decide() {
    let p = Profile {
        default_message: None,
        rules: vec![rule(
            Verdict::Allow,
            &[Operation::NetworkOutbound],
            vec![Filter::Remote(Proto::Tcp, Some("example.com:443".into()))],
        )],
    };
    let o = Object::Net { proto: Proto::Tcp, remote: true, host: "x".into(), port: 443 };
    assert!(evaluate(&p, &bindings(), Operation::NetworkOutbound, &o).is_err());
    for re in ["(a|b)", "a{2}", "[[:alpha:]]", "*a", "a**", "[z-a]", "a\\"] {
        assert!(Regex::new(re).is_err(), "{re}");
    }
}

#[test]
fn regex_matcher_basics() {
    let m = |re: &str, t: &str| Regex::new(re).unwrap().is_match(t);
    assert!(m("^/dev/ttys[0-9]+$", "/dev/ttys001"));
    assert!(!m("^/dev/ttys[0-9]+$", "/dev/ttys"));
    assert!(!m("^/dev/ttys[0-9]+$", "/dev/ttys001x"));
    assert!(m("tty", "/dev/tty"));
    assert!(m("^a.?b*c$", "ac") && m("^a.?b*c$", "axbbc") && !m("^a.?b*c$", "axxc"));
    assert!(m("^[^/]+$", "abc") && !m("^[^/]+$", "a/c"));
    assert!(m("^a\\$$", "a$") && !m("^a\\$$", "a"));
    // Polynomial on a hostile pattern.
    assert!(!m("^a*a*a*a*a*a*a*a*a*a*a*a*b$", &"a".repeat(200)));
}

#[test]
fn parser_accepts_the_subset_and_round_trips_every_filter() {
    let lit = |s: &str| Str::Lit(s.into());
    let p = Profile {
        default_message: Some("capsule: \"denied\"".into()),
        rules: vec![
            Rule {
                comment: vec!["why".into()],
                message: Some("m\n".into()),
                ..rule(Verdict::Deny, &[Operation::FileWrite], vec![Filter::Literal(lit("/x"))])
            },
            rule(
                Verdict::Allow,
                &[Operation::FileRead, Operation::FileMapExecutable],
                vec![
                    Filter::Subpath(Str::Append(vec![Str::Param("HOME"), lit("/a b")])),
                    Filter::Prefix(Str::Param("TMPDIR")),
                    Filter::Regex("^/a\\.b$".into()),
                    Filter::RequireAny(vec![
                        Filter::Literal(lit("/q")),
                        Filter::RequireNot(Box::new(Filter::Literal(lit("/r")))),
                    ]),
                    Filter::RequireAll(vec![Filter::Literal(lit("/s"))]),
                ],
            ),
            rule(
                Verdict::Allow,
                &[Operation::NetworkAll],
                vec![
                    Filter::Remote(Proto::Tcp, Some("*:443".into())),
                    Filter::Local(Proto::Udp, Some("localhost:*".into())),
                    Filter::Remote(Proto::UnixSocket, None),
                    Filter::Remote(Proto::Tcp, Some(Str::Append(vec![lit("localhost:"), Str::Param("PROXY_PORT")]))),
                ],
            ),
            rule(Verdict::Allow, &[Operation::MachLookup], vec![Filter::GlobalName("com.apple.logd".into())]),
            rule(Verdict::Allow, &[Operation::SysctlRead], vec![Filter::SysctlName("hw.ncpu".into())]),
            rule(Verdict::Allow, &[Operation::Signal], vec![Filter::Target(TargetKind::SameSandbox)]),
            rule(Verdict::Allow, &[Operation::SystemSocket], vec![Filter::SocketDomain(SocketDomain::Unix)]),
            rule(Verdict::Allow, &[Operation::ProcessFork], vec![]),
        ],
    };
    let text = emit::emit(&p);
    assert_eq!(parse::parse(&text).unwrap(), p, "{text}");
}

#[test]
fn parser_refuses_everything_outside_the_subset() {
    let head = "(version 1)\n(deny default)\n";
    for bad in [
        "(version 2)\n(deny default)",
        "(version 1)\n(allow default)",
        "(version 1)",
        "(deny default)",
        &format!("{head}(define x 1)"),
        &format!("{head}(if #t (allow file-read*))"),
        &format!("{head}(import \"system.sb\")"),
        &format!("{head}(allow (lambda (x) x))"),
        &format!("{head}(allow file-read-everything)"),
        &format!("{head}(deny default)"),
        &format!("{head}(allow file-read* (subpath (param \"PATH\")))"),
        &format!("{head}(allow file-read* (subpath (string-append (string-append \"/a\") \"/b\")))"),
        &format!("{head}(allow file-read* (literal \"/a\\x00b\"))"),
        &format!("{head}(allow file-read* (literal \"/a\\q\"))"),
        &format!("{head}(allow file-read* (vnode-type REGULAR-FILE))"),
        &format!("{head}(allow file-read* (literal \"/a\")"),
        &format!("{head}(allow file-read* (literal \"/a))"),
        &format!("{head}(allow (subpath \"/a\"))"),
        &format!("{head}(allow file-read* (subpath \"/a\") file-write*)"),
        &format!("{head}(allow file-read* #\"/a\")"),
        &format!("{head}(allow system-socket (socket-domain AF_NETLINK))"),
        &format!("{head}(allow system-socket (socket-domain \"AF_UNIX\"))"),
        &format!("{head}(allow network-outbound (remote tcp (param \"PORT\")))"),
        &format!("{head}(allow network-outbound (remote tcp localhost:80))"),
        &format!("{head}{}{}", "(allow file-read* ".to_owned() + &"(require-not ".repeat(40), ")".repeat(41)),
    ] {
        assert!(parse::parse(bad).is_err(), "accepted: {bad}");
    }
    assert!(parse::parse(&format!("{head}; a comment\n(allow process-fork) ; trailing\n")).is_ok());
    // Found by the sbpl fuzz target: a raw NUL in a string (or anywhere) is refused,
    // since the sandbox would cut the profile there; and only ASCII separates tokens.
    assert!(parse::parse(&format!("{head}(allow file-read* (literal \"/a\0b\"))")).is_err());
    assert!(parse::parse(&format!("{head}; \0\n(allow process-fork)")).is_err());
    assert!(parse::parse(&format!("{head}(allow\u{a0}process-fork)")).is_err());
    let regression = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/sbpl/raw-nul-in-string");
    let bytes = std::fs::read(regression).unwrap();
    assert!(parse::parse(&String::from_utf8_lossy(&bytes)).is_err());
}

#[test]
fn validation_catches_a_profile_that_grants_more_or_less_than_the_policy() {
    let src =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../cli/src/default-policy.yaml")).unwrap();
    let pol = policy(&src);
    let facts = SyscallFacts::of(&pol);
    let good = map::profile(&pol, &facts).unwrap();
    let ok = validate::validate(&pol, &facts, &good, &emit::emit(&good));
    assert!(ok.is_ok(), "{ok:?}");
    let lit = |s: &str| Str::Lit(s.into());
    type Mutation<'a> = Box<dyn Fn(&mut Profile) + 'a>;
    let mutants: Vec<(&str, Mutation)> = vec![
        (
            "home readable",
            Box::new(|p: &mut Profile| {
                p.rules.push(rule(
                    Verdict::Allow,
                    &[Operation::FileReadData],
                    vec![Filter::Subpath(Str::Param("HOME"))],
                ))
            }),
        ),
        (
            "/usr as prefix",
            Box::new(move |p: &mut Profile| {
                p.rules.push(rule(Verdict::Allow, &[Operation::FileRead], vec![Filter::Prefix(lit("/usr"))]))
            }),
        ),
        (
            "/tmp unresolved only",
            Box::new(|p: &mut Profile| {
                for r in &mut p.rules {
                    for f in &mut r.filters {
                        if *f == Filter::Subpath(Str::Lit("/private/tmp".into())) {
                            *f = Filter::Subpath(Str::Lit("/tmp".into()));
                        }
                    }
                }
            }),
        ),
        (
            "workspace not writable",
            Box::new(|p: &mut Profile| p.rules.retain(|r| !r.operations.contains(&Operation::FileWrite))),
        ),
        (
            "outbound TCP",
            Box::new(|p: &mut Profile| {
                p.rules.push(rule(
                    Verdict::Allow,
                    &[Operation::NetworkOutbound],
                    vec![Filter::Remote(Proto::Tcp, Some("*:443".into()))],
                ))
            }),
        ),
        (
            "signals anywhere",
            Box::new(|p: &mut Profile| p.rules.push(rule(Verdict::Allow, &[Operation::Signal], vec![]))),
        ),
        ("no fork", Box::new(|p: &mut Profile| p.rules.retain(|r| !r.operations.contains(&Operation::ProcessFork)))),
        (
            "no AF_UNIX sockets",
            Box::new(|p: &mut Profile| p.rules.retain(|r| !r.operations.contains(&Operation::SystemSocket))),
        ),
        (
            "AF_SYSTEM sockets",
            Box::new(|p: &mut Profile| p.rules.push(rule(Verdict::Allow, &[Operation::SystemSocket], vec![]))),
        ),
        (
            "a later deny",
            Box::new(|p: &mut Profile| {
                p.rules.push(rule(Verdict::Deny, &[Operation::FileReadData], vec![Filter::Subpath(lit("/usr/bin"))]))
            }),
        ),
    ];
    for (what, mutate) in mutants {
        let mut bad = good.clone();
        mutate(&mut bad);
        let r = validate::validate(&pol, &facts, &bad, &emit::emit(&bad));
        assert!(matches!(r, Err(validate::SbplValidationError::Mismatch { .. })), "{what}: {r:?}");
    }
    // Text that is not the profile it claims to be.
    let r = validate::validate(&pol, &facts, &good, "(version 1)\n(deny default)\n");
    assert!(matches!(r, Err(validate::SbplValidationError::RoundTrip)), "{r:?}");
}

#[test]
fn baseline_writes_only_devices_and_reads_no_secrets() {
    let base = Profile { default_message: None, rules: map::baseline() };
    let b = bindings();
    for r in &base.rules {
        for op in &r.operations {
            assert!(!Operation::FileWrite.covers(*op) || *op == Operation::FileWriteData, "{op:?}");
        }
    }
    for p in ["/Users/u/.ssh/id_ed25519", "/Users/u/work/x", "/private/tmp/x", "/usr/local/bin/x", "/dev/disk0"] {
        for op in [Operation::FileWriteData, Operation::FileWriteCreate, Operation::FileReadData] {
            assert_eq!(evaluate(&base, &b, op, &path(p)).unwrap().verdict, Verdict::Deny, "{op:?} {p}");
        }
    }
    for d in map::BASELINE_WRITE_DEVICES {
        assert_eq!(evaluate(&base, &b, Operation::FileWriteData, &path(d)).unwrap().verdict, Verdict::Allow);
    }
}

#[test]
fn check_notes_the_syscall_rules_with_no_macos_effect() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/policies/valid");
    let run = |file: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_capsulec"))
            .args(["check", "--color", "never", dir.join(file).to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stderr).unwrap()
    };
    let text = run("coding-agent.yaml");
    assert_eq!(text.matches("N0402").count(), 1, "{text}");
    assert!(text.contains("\"@privileged\"") && !text.contains("no macOS effect: \"@process\""), "{text}");
    let src = "version: 1\ntargets: [linux-x86_64]\nsyscalls:\n  allow: [read]\n";
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), src).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_capsulec"))
        .args(["check", f.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("N0402"));
}

#[test]
fn explain_macos_on_a_folder_and_a_policy() {
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cli/src/default-policy.yaml");
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_capsulec"))
        .args(["build", policy.to_str().unwrap(), "-o", out_dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let explain = |input: &Path, args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_capsulec"))
            .current_dir(dir.path())
            .env("HOME", "/Users/u")
            .args(["explain", input.to_str().unwrap(), "--target", "macos"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    for input in [out_dir.as_path(), policy.as_path()] {
        let t = explain(input, &["file-read-data", "/Users/u/.ssh/id_ed25519"]);
        assert!(t.contains("=> deny") && t.contains("(deny default)"), "{t}");
        let t = explain(input, &["file-write-data", "/tmp/x"]);
        assert!(t.contains("\"/private/tmp/x\" => allow") && t.contains("filesystem.write"), "{t}");
        let t = explain(input, &["network-outbound", "tcp/443"]);
        assert!(t.contains("=> deny"), "{t}");
        let t = explain(input, &["signal", "others"]);
        assert!(t.contains("process others => deny"), "{t}");
        let t = explain(input, &["process-fork"]);
        assert!(t.contains("=> allow") && t.contains("(allow process-fork)"), "{t}");
        let t = explain(input, &["system-socket", "AF_UNIX"]);
        assert!(t.contains("=> allow") && t.contains("(socket-domain AF_UNIX)"), "{t}");
    }
    // A policy that does not target macOS has no profile to explain.
    let linux_only = dir.path().join("linux.yaml");
    std::fs::write(&linux_only, "version: 1\ntargets: [linux-x86_64]\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_capsulec"))
        .args(["explain", linux_only.to_str().unwrap(), "--target", "macos", "process-fork"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not one of the policy's targets"));
}

proptest! {
    /// Any string without NUL survives quoting and reading back.
    #[test]
    fn quoting_round_trips(s in "[^\u{0}]{0,40}") {
        let p = Profile { default_message: None, rules: vec![rule(Verdict::Allow, &[Operation::FileRead], vec![Filter::Literal(Str::Lit(s.clone()))])] };
        let text = emit::emit(&p);
        prop_assert_eq!(parse::parse(&text).unwrap(), p);
    }

    /// A hostile path in a policy grants that path and what is beneath it, and not a
    /// sibling: quotes, backslashes, newlines, unicode and regex characters are literal.
    #[test]
    fn hostile_paths_grant_exactly_themselves(name in "[a-z\"\\\\\n\t .*+?()\\[\\]{}|^$é🦀]{1,12}") {
        let quoted = serde_json::to_string(&format!("/data/{name}")).unwrap();
        let src = format!("version: 1\ntargets: [linux-x86_64, macos]\nfilesystem:\n  read: [{quoted}]\n");
        let checked = front::check(&src);
        let Some(pol) = checked.policy else { return Ok(()) };
        let facts = SyscallFacts::of(&pol);
        let profile = match map::profile(&pol, &facts) {
            Ok(p) => p,
            // `${` after the start would be read as a variable by the launcher: refused.
            Err(e) => {
                prop_assert!(name.contains("${"), "{e}");
                return Ok(());
            }
        };
        let text = emit::emit(&profile);
        // The build's own validation passes ...
        prop_assert!(validate::validate(&pol, &facts, &profile, &text).is_ok());
        let parsed = parse::parse(&text).unwrap();
        let normal: Vec<&str> = name.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
        let granted = normal.iter().fold("/data".to_owned(), |acc, c| format!("{acc}/{c}"));
        let v = |p: &str| evaluate(&parsed, &bindings(), Operation::FileReadData, &Object::Path(p.into())).unwrap().verdict;
        // ... and the path, a child of it, and nothing next to it is readable.
        prop_assert_eq!(v(&granted), Verdict::Allow);
        prop_assert_eq!(v(&format!("{granted}/child")), Verdict::Allow);
        prop_assert_eq!(v(&format!("{granted}x")), Verdict::Deny);
        prop_assert_eq!(v("/data/other"), if granted == "/data" { Verdict::Allow } else { Verdict::Deny });
    }

    /// `regex_literal` makes every metacharacter literal.
    #[test]
    fn regex_literal_matches_only_itself(s in "[a-z/.*+?()\\[\\]{}|^$\\\\]{0,16}", t in "[a-z/.*+?()\\[\\]{}|^$\\\\]{0,16}") {
        let re = Regex::new(&format!("^{}$", emit::regex_literal(&s))).unwrap();
        prop_assert!(re.is_match(&s));
        prop_assert_eq!(re.is_match(&t), s == t);
    }
}

#[test]
fn syscall_facts_read_the_linux_rules_and_fall_back_to_default_without_them() {
    let src =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../cli/src/default-policy.yaml")).unwrap();
    let f = SyscallFacts::of(&policy(&src));
    assert_eq!(
        (f.fork, f.inet_stream, f.inet_dgram, f.unix, f.connect, f.bind, f.kill),
        (true, false, false, true, false, true, true),
        "the default policy: processes, AF_UNIX only, no connect"
    );
    // Allowed on x86_64 only: macOS gets the narrower answer.
    let two = policy("version: 1\ntargets: [linux-x86_64, linux-aarch64, macos]\nsyscalls:\n  allow: [fork]\n");
    assert!(!SyscallFacts::of(&two).fork, "aarch64 has no fork and does not allow clone");
    let one = policy("version: 1\ntargets: [linux-x86_64, macos]\nsyscalls:\n  allow: [fork]\n");
    assert!(SyscallFacts::of(&one).fork);
    let mac_only = policy("version: 1\ntargets: [macos]\ndefault: allow\n");
    assert!(SyscallFacts::of(&mac_only).connect, "no Linux target: every call gets default");
    let mac_only = policy("version: 1\ntargets: [macos]\n");
    assert!(!SyscallFacts::of(&mac_only).fork);
}

#[test]
fn diff_shows_the_macos_profile_lines_that_changed() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, connect: &str| {
        let p = dir.path().join(name);
        let src = format!(
            "version: 1\nsyscalls:\n  allow: [\"@default\", \"@network-io\"]\nfilesystem:\n  read: [/usr]\nnetwork:\n  connect: [{connect}]\n"
        );
        std::fs::write(&p, src).unwrap();
        p
    };
    let (old, new) = (write("old.yaml", "tcp/443"), write("new.yaml", "tcp/443, tcp/22"));
    let run = |a: &Path, b: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_capsulec")).arg("diff").arg(a).arg(b).output().unwrap()
    };
    let out = run(&old, &new);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("macos (macos.sb):\n  + (allow network-outbound (remote tcp \"*:22\"))"), "{text}");
    assert!(!text.contains("  - "), "nothing removed: {text}");
    let out = run(&old, &old);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "no differences\n");
}

#[test]
fn an_empty_connect_list_allows_no_outbound_tcp_and_a_missing_one_allows_all() {
    let tcp = |port| Object::Net { proto: Proto::Tcp, remote: true, host: "203.0.113.7".into(), port };
    let base = "version: 1\ntargets: [linux-x86_64, macos]\nsyscalls:\n  allow: [\"@default\", \"@network-io\"]\n";
    let none = built(&format!("{base}network:\n  connect: []\n"));
    for port in [22, 80, 443] {
        assert_eq!(decide(&none, Operation::NetworkOutbound, tcp(port)), Verdict::Deny);
    }
    let all = built(base);
    for port in [22, 80, 443] {
        assert_eq!(decide(&all, Operation::NetworkOutbound, tcp(port)), Verdict::Allow);
    }
}

#[test]
fn network_by_name_reaches_only_the_proxy_on_localhost_on_macos() {
    // The command reaches the launcher's proxy at localhost:PROXY_PORT and nothing
    // else: not the direct TCP and UDP its port rules alone would allow, not another
    // port on localhost, not the proxy's port on another host.
    let tcp = |host: &str, port| Object::Net { proto: Proto::Tcp, remote: true, host: host.into(), port };
    let udp = |port| Object::Net { proto: Proto::Udp, remote: true, host: "203.0.113.7".into(), port };
    let base = "version: 1\ntargets: [linux-x86_64, macos]\nsyscalls:\n  allow: [\"@default\", \"@network-io\"]\n";
    let direct = built(&format!("{base}network:\n  connect: [tcp/443]\n"));
    assert_eq!(decide(&direct, Operation::NetworkOutbound, tcp("203.0.113.7", 443)), Verdict::Allow);
    assert_eq!(decide(&direct, Operation::NetworkOutbound, udp(53)), Verdict::Allow);
    let by_name = built(&format!("{base}network:\n  connect: [tcp/443]\n  domains: [example.org]\n"));
    let proxy =
        Filter::Remote(Proto::Tcp, Some(Str::Append(vec![Str::Lit("localhost:".into()), Str::Param("PROXY_PORT")])));
    assert!(by_name.rules.iter().any(|r| r.filters == [proxy.clone()]), "{by_name:?}");
    // bindings() binds PROXY_PORT to 49152.
    assert_eq!(decide(&by_name, Operation::NetworkOutbound, tcp("localhost", 49152)), Verdict::Allow);
    assert_eq!(decide(&by_name, Operation::NetworkOutbound, tcp("127.0.0.1", 49152)), Verdict::Allow);
    assert_eq!(decide(&by_name, Operation::NetworkOutbound, tcp("203.0.113.7", 49152)), Verdict::Deny);
    for port in [53, 80, 443, 3128] {
        for host in ["203.0.113.7", "localhost"] {
            assert_eq!(decide(&by_name, Operation::NetworkOutbound, tcp(host, port)), Verdict::Deny, "{host}:{port}");
        }
        assert_eq!(decide(&by_name, Operation::NetworkOutbound, udp(port)), Verdict::Deny, "udp/{port}");
    }
    assert_eq!(
        decide(
            &by_name,
            Operation::NetworkBind,
            Object::Net { proto: Proto::Tcp, remote: false, host: "localhost".into(), port: 49152 }
        ),
        Verdict::Deny
    );
    // A fixed port is written literally, and PROXY_PORT is not read.
    let fixed = built(&format!("{base}network:\n  domains: [example.org]\n  proxy: {{ port: 8118 }}\n"));
    assert!(fixed.rules.iter().any(|r| r.filters == [Filter::Remote(Proto::Tcp, Some("localhost:8118".into()))]));
    assert_eq!(decide(&fixed, Operation::NetworkOutbound, tcp("localhost", 8118)), Verdict::Allow);
    assert_eq!(decide(&fixed, Operation::NetworkOutbound, tcp("localhost", 49152)), Verdict::Deny);
    // Without socket(AF_INET) or connect the command cannot use the proxy: no rule.
    let no_inet = built(
        "version: 1\ntargets: [linux-x86_64, macos]\nsyscalls:\n  allow: [\"@default\", \"@network-io\"]\n  deny: [connect]\nnetwork:\n  domains: [example.org]\n",
    );
    assert_eq!(decide(&no_inet, Operation::NetworkOutbound, tcp("localhost", 49152)), Verdict::Deny);
}

#[test]
fn validation_catches_a_proxy_rule_wider_or_narrower_than_the_proxy() {
    let src = "version: 1\ntargets: [linux-x86_64, macos]\nsyscalls:\n  allow: [\"@default\", \"@network-io\"]\nnetwork:\n  domains: [example.org]\n";
    let pol = policy(src);
    let facts = SyscallFacts::of(&pol);
    assert!(facts.proxy && !facts.inet_stream, "{facts:?}");
    let good = map::profile(&pol, &facts).unwrap();
    assert!(validate::validate(&pol, &facts, &good, &emit::emit(&good)).is_ok());
    let widen = |address: &str| {
        let mut bad = good.clone();
        for r in &mut bad.rules {
            for f in &mut r.filters {
                if let Filter::Remote(Proto::Tcp, a) = f {
                    *a = Some(address.into());
                }
            }
        }
        validate::validate(&pol, &facts, &bad, &emit::emit(&bad))
    };
    for address in ["localhost:*", "*:49152", "localhost:3129"] {
        let r = widen(address);
        assert!(matches!(r, Err(validate::SbplValidationError::Mismatch { .. })), "{address}: {r:?}");
    }
    let mut none = good.clone();
    none.rules.retain(|r| !r.operations.contains(&Operation::NetworkOutbound));
    let r = validate::validate(&pol, &facts, &none, &emit::emit(&none));
    assert!(matches!(r, Err(validate::SbplValidationError::Mismatch { .. })), "{r:?}");
}
