//! Tidy checks as plain tests: documentation and version strings stay true.

use capsule_compiler::diagnostic::Code;

#[test]
fn every_diagnostic_code_is_documented() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/policy.md")).unwrap();
    let missing: Vec<&str> =
        Code::ALL.iter().map(|c| c.as_str()).filter(|c| !doc.contains(&format!("| {c} |"))).collect();
    assert!(missing.is_empty(), "codes missing from the table in docs/policy.md: {missing:?}");
}

#[test]
fn diagnostic_codes_are_unique() {
    let mut codes: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
    codes.sort_unstable();
    let before = codes.len();
    codes.dedup();
    assert_eq!(before, codes.len());
}

#[test]
fn version_names_the_pinned_tables() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_capsulec")).arg("--version").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    assert!(text.contains(capsule_compiler::tables::TABLES_SOURCE), "{text}");
    assert!(text.contains(&format!("Linux {}", capsule_compiler::tables::KERNEL_VERSION)), "{text}");
}
