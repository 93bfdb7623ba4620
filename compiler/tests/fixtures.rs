//! Data-driven fixture tests: every policy under fixtures/policies/ is checked, its
//! diagnostics rendered and snapshotted, its `# expect:` codes and `# run:` lines
//! verified. Adding a test is adding a file.

use capsule_artifacts::notify::NotifyAnswer;
use capsule_compiler::bpf::disasm::{DisasmContext, disassemble};
use capsule_compiler::bpf::interp::{Program, RetAction, SeccompData};
use capsule_compiler::build::{self, BuildOptions};
use capsule_compiler::diagnostic::{SourceFile, render_plain};
use capsule_compiler::ir::Action;
use capsule_compiler::{filetest, front, ir};
use std::path::{Path, PathBuf};

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/policies").join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    if kind == "valid" {
        // The built-in default policy of `capsule run` is a fixture too.
        files.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../cli/src/default-policy.yaml"));
    }
    files
}

fn name(kind: &str, path: &Path) -> String {
    format!("{kind}/{}", path.file_name().unwrap().to_string_lossy())
}

/// Check a fixture; return its rendered diagnostics and the result.
fn check(kind: &str, path: &Path) -> (String, String, front::Checked) {
    let src = std::fs::read_to_string(path).unwrap();
    let checked = front::check(&src);
    let display = name(kind, path);
    let rendered = render_plain(&checked.diagnostics, &SourceFile { name: &display, text: &src });
    (src, rendered, checked)
}

fn assert_expected_codes(path: &Path, src: &str, checked: &front::Checked) {
    let expected = filetest::expected_codes(src);
    assert!(
        !expected.is_empty(),
        "{}: an invalid or warning fixture says what it expects with `# expect: CODE`",
        path.display()
    );
    let got: Vec<&str> = checked.diagnostics.iter().map(|d| d.code.as_str()).collect();
    for code in &expected {
        assert!(got.contains(&code.as_str()), "{}: expected {code}, got {got:?}", path.display());
    }
}

#[test]
fn invalid_policies_are_rejected_with_their_diagnostic() {
    let files = fixtures("invalid");
    assert!(files.len() >= 40, "at least 40 invalid fixtures, one per error class");
    for path in files {
        let (src, rendered, checked) = check("invalid", &path);
        assert!(checked.has_errors(), "{} should not check cleanly:\n{rendered}", path.display());
        assert!(checked.policy.is_none(), "{}: no IR for a policy with errors", path.display());
        assert_expected_codes(&path, &src, &checked);
        insta::assert_snapshot!(name("invalid", &path), rendered);
    }
}

#[test]
fn warnings_and_notes_leave_a_policy() {
    for path in fixtures("warnings") {
        let (src, rendered, checked) = check("warnings", &path);
        assert_expected_codes(&path, &src, &checked);
        let expected = filetest::expected_codes(&src);
        if expected.iter().all(|c| !c.starts_with('E')) {
            assert!(!checked.has_errors(), "{}: warnings only:\n{rendered}", path.display());
            assert!(checked.policy.is_some());
        }
        insta::assert_snapshot!(name("warnings", &path), rendered);
    }
}

#[test]
fn valid_policies_lower_to_the_snapshotted_ir_and_decide_as_their_run_lines_say() {
    for path in fixtures("valid") {
        let (src, rendered, checked) = check("valid", &path);
        assert!(!checked.has_errors(), "{}:\n{rendered}", path.display());
        let policy = checked.policy.expect("a valid policy lowers");
        insta::assert_snapshot!(name("valid", &path), format!("{rendered}{policy}"));
        for run in filetest::run_lines(&src).unwrap() {
            let got = ir::decide(&policy, run.target, &run.call);
            assert_eq!(
                (got.action, got.audited),
                (run.expected.action, run.expected.audited),
                "{}:{}: {} (IR before passes)",
                path.display(),
                run.line,
                run.text
            );
        }
    }
}

/// The decision a compiled filter gives, with notified calls resolved through the
/// manifest's notification table as the launcher's supervisor answers them.
fn bpf_decision(artifacts: &build::Artifacts, run: &filetest::RunLine) -> (Action, bool) {
    let file = run.target.artifact_file();
    let program = Program::from_bytes(&artifacts.files[file]).expect("a built filter passes the checker");
    let call = &run.call;
    let data = SeccompData { nr: call.nr, arch: call.arch, instruction_pointer: 0, args: call.args };
    match program.run(&data).action() {
        RetAction::Allow => (Action::Allow, false),
        RetAction::Log => (Action::Log, false),
        RetAction::Errno(e) => (Action::Errno(e), false),
        RetAction::KillProcess => (Action::KillProcess, false),
        RetAction::KillThread => (Action::KillThread, false),
        RetAction::Trap(_) => (Action::Trap, false),
        RetAction::UserNotif => {
            let entry = artifacts.manifest.entry_for(run.target).unwrap();
            match entry.notify.as_ref().and_then(|t| t.answer(call.nr)) {
                Some(NotifyAnswer::Continue | NotifyAnswer::Destination) => (Action::Allow, true),
                Some(NotifyAnswer::Errno(e)) => (Action::Errno(e), false),
                None => panic!("{}: notified without an answer", run.text),
            }
        }
        other => panic!("{}: unexpected filter return {other}", run.text),
    }
}

/// Every `# run:` line holds for the IR after the passes and for the emitted BPF, and
/// the BPF is snapshotted as disassembly.
#[test]
fn valid_policies_decide_alike_after_the_passes_and_in_the_compiled_filter() {
    for path in fixtures("valid") {
        let src = std::fs::read(&path).unwrap();
        let artifacts =
            build::build(&src, &BuildOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let text = String::from_utf8(src).unwrap();
        for run in filetest::run_lines(&text).unwrap() {
            let expected = (run.expected.action, run.expected.audited);
            let after = ir::decide(&artifacts.optimised, run.target, &run.call);
            assert_eq!(
                (after.action, after.audited),
                expected,
                "{}:{}: {} (IR after passes)",
                path.display(),
                run.line,
                run.text
            );
            // The filter reports audited calls only when the policy records them, or
            // when the proxy's destination check takes them.
            let name = capsule_compiler::tables::table(run.target).by_nr(run.call.nr).map_or("", |s| s.name());
            let records_audits =
                artifacts.policy.launch.audit.record.contains(&capsule_artifacts::launch::Record::AuditedSyscalls)
                    || capsule_compiler::valid::checks_destination(&artifacts.policy, name);
            let (action, audited) = bpf_decision(&artifacts, &run);
            assert_eq!(
                (action, audited),
                (expected.0, expected.1 && records_audits),
                "{}:{}: {} (BPF)",
                path.display(),
                run.line,
                run.text
            );
        }
        for target in capsule_artifacts::Target::LINUX {
            let Some(bytes) = artifacts.files.get(target.artifact_file()) else { continue };
            let program = capsule_compiler::bpf::decode(bytes).unwrap();
            let listing = disassemble(&program, &DisasmContext { target: Some(target) });
            insta::assert_snapshot!(format!("bpf/{}/{}", target, path.file_name().unwrap().to_string_lossy()), listing);
        }
    }
}

/// The same source gives the same bytes: twice in one process, and from a second
/// process in another directory with another locale and environment.
#[test]
fn builds_are_deterministic() {
    for path in fixtures("valid") {
        let src = std::fs::read(&path).unwrap();
        let a = build::build(&src, &BuildOptions::default()).unwrap();
        let b = build::build(&src, &BuildOptions::default()).unwrap();
        assert_eq!(a.files, b.files, "{}", path.display());
        assert_eq!(a.pin, b.pin);

        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let mut pins = Vec::new();
        for (dir, lang) in dirs.iter().zip(["C", "de_DE.UTF-8"]) {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_capsulec"))
                .current_dir(dir.path())
                .env("LANG", lang)
                .env("LC_ALL", lang)
                .env("TZ", "Pacific/Kiritimati")
                .args(["build", path.to_str().unwrap(), "-o", "out"])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            pins.push(String::from_utf8(out.stdout).unwrap().trim().to_owned());
            for (name, bytes) in &a.files {
                assert_eq!(
                    &std::fs::read(dir.path().join("out").join(name)).unwrap(),
                    bytes,
                    "{name} of {}",
                    path.display()
                );
            }
        }
        assert_eq!(pins, [a.pin.clone(), a.pin.clone()]);
    }
}
