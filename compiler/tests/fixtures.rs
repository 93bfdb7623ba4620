//! Data-driven fixture tests: every policy under fixtures/policies/ is checked, its
//! diagnostics rendered and snapshotted, its `# expect:` codes and `# run:` lines
//! verified. Adding a test is adding a file.

use capsule_compiler::diagnostic::{SourceFile, render_plain};
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
    assert!(!expected.is_empty(), "{}: an invalid or warning fixture says what it expects with `# expect: CODE`", path.display());
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
