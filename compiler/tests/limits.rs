//! Hostile policies: each gets one clear diagnostic, never a panic, a stack overflow
//! or a huge allocation. Through the library (`front::check_bytes`) and through the
//! `capsulec check` binary, which must refuse an oversized input without reading it
//! all.

use capsule_compiler::diagnostic::{Code, Diagnostic};
use capsule_compiler::front::{self, MAX_POLICY_BYTES};
use std::io::Write;
use std::process::{Command, Output};

/// Checks `bytes` and returns the diagnostics, asserting the basics every hostile
/// input must meet: no policy comes back, and every span lies inside the input.
fn check_rejected(bytes: &[u8]) -> Vec<Diagnostic> {
    let checked = front::check_bytes(bytes);
    assert!(checked.policy.is_none(), "a hostile input was accepted");
    assert!(checked.has_errors());
    for d in &checked.diagnostics {
        let span = &d.primary.span;
        assert!(span.start <= span.end && span.end <= bytes.len(), "{d:?} points outside the input");
    }
    checked.diagnostics
}

fn codes(diagnostics: &[Diagnostic]) -> Vec<Code> {
    diagnostics.iter().map(|d| d.code).collect()
}

/// A syntactically valid policy with one allow rule carrying `condition`.
fn policy_with_condition(condition: &str) -> String {
    format!("version: 1\nsyscalls:\n  allow:\n    - socket: \"{condition}\"\n")
}

/// Runs `capsulec check` on `path`, under a 256 MiB address-space limit so that a
/// binary that read an unbounded input would fail instead of exhausting the machine.
fn capsulec_check(path: &std::path::Path) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -v 262144 && exec "$0" check --color never "$1""#)
        .arg(env!("CARGO_BIN_EXE_capsulec"))
        .arg(path)
        .output()
        .expect("run capsulec")
}

fn write_temp(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(bytes).unwrap();
    file
}

/// Asserts that `capsulec check` failed with exit code 1 and reported `code` on stderr.
fn assert_refused(output: &Output, code: Code) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(stderr.contains(&format!("error[{}]", code.as_str())), "expected {} in:\n{stderr}", code.as_str());
    stderr
}

fn ten_megabyte_policy() -> Vec<u8> {
    let mut policy = b"version: 1\nsyscalls:\n  allow:\n".to_vec();
    while policy.len() < 10 << 20 {
        policy.extend_from_slice(b"    - read\n");
    }
    policy
}

#[test]
fn ten_megabytes_exceed_the_size_limit() {
    let diagnostics = check_rejected(&ten_megabyte_policy());
    assert_eq!(codes(&diagnostics), [Code::FileTooLarge]);
    assert!(diagnostics[0].message.contains("limit"), "{}", diagnostics[0].message);
}

#[test]
fn one_byte_over_the_limit_is_too_large_and_the_limit_itself_is_not() {
    let mut policy = b"version: 1\n".to_vec();
    policy.resize(MAX_POLICY_BYTES, b'\n');
    assert!(!codes(&front::check_bytes(&policy).diagnostics).contains(&Code::FileTooLarge));
    policy.push(b'\n');
    assert_eq!(codes(&check_rejected(&policy)), [Code::FileTooLarge]);
}

#[test]
fn capsulec_check_refuses_a_ten_megabyte_file() {
    let file = write_temp(&ten_megabyte_policy());
    let stderr = assert_refused(&capsulec_check(file.path()), Code::FileTooLarge);
    assert!(stderr.contains("limit"), "{stderr}");
}

/// /dev/zero never ends: only a reader that stops past the limit can answer at all,
/// and the address-space limit turns an unbounded read into a failure, not a hang.
#[test]
fn capsulec_check_stops_reading_an_endless_file_at_the_limit() {
    assert_refused(&capsulec_check("/dev/zero".as_ref()), Code::FileTooLarge);
}

/// saphyr-parser stops `[[[[` at its own recursion limit (256) before the tree
/// builder sees 33 levels; that too is reported as too deep, not as a syntax error.
#[test]
fn flow_sequences_nested_100_000_deep_are_too_deep() {
    let policy = "[".repeat(100_000);
    assert_eq!(codes(&check_rejected(policy.as_bytes())), [Code::TooDeep]);
}

#[test]
fn flow_mappings_nested_100_000_deep_are_too_deep() {
    let policy = "{a: ".repeat(100_000);
    assert_eq!(codes(&check_rejected(policy.as_bytes())), [Code::TooDeep]);
}

#[test]
fn block_sequences_nested_100_000_deep_are_too_deep() {
    let policy = format!("{}read\n", "- ".repeat(100_000));
    assert_eq!(codes(&check_rejected(policy.as_bytes())), [Code::TooDeep]);
}

/// Indented block mappings cost depth² bytes, so 100,000 levels cannot fit in the
/// size limit (that input is refused as too large); 1,000 levels, about 1 MB, is as
/// deep as fits.
#[test]
fn block_mappings_nested_as_deep_as_the_size_limit_allows_are_too_deep() {
    let mut policy = String::new();
    for depth in 0..1_000 {
        policy.push_str(&" ".repeat(depth));
        policy.push_str("a:\n");
    }
    assert!(policy.len() <= MAX_POLICY_BYTES);
    assert_eq!(codes(&check_rejected(policy.as_bytes())), [Code::TooDeep]);
}

#[test]
fn capsulec_check_refuses_deep_nesting() {
    let file = write_temp("{a: ".repeat(100_000).as_bytes());
    assert_refused(&capsulec_check(file.path()), Code::TooDeep);
}

#[test]
fn a_condition_10_000_parentheses_deep_is_refused_as_too_long() {
    let condition = format!("{}domain == 1{}", "(".repeat(10_000), ")".repeat(10_000));
    let diagnostics = check_rejected(policy_with_condition(&condition).as_bytes());
    assert_eq!(codes(&diagnostics), [Code::ConditionSyntax]);
    assert!(diagnostics[0].message.contains("too long"), "{}", diagnostics[0].message);
}

#[test]
fn a_condition_within_the_length_limit_but_nested_too_deep_is_refused() {
    for condition in [
        format!("{}domain == 1{}", "(".repeat(2_000), ")".repeat(2_000)),
        "(".repeat(4_000),
        format!("{}domain == 1", "!".repeat(4_000)),
        format!("domain in {}1", "[".repeat(4_000)),
    ] {
        let diagnostics = check_rejected(policy_with_condition(&condition).as_bytes());
        assert_eq!(codes(&diagnostics), [Code::ConditionSyntax], "{condition:.20}...");
        assert!(diagnostics[0].message.contains("nested too deeply"), "{}", diagnostics[0].message);
    }
}

#[test]
fn a_billion_laughs_alias_bomb_is_refused_at_the_first_anchor() {
    let mut policy = String::from("version: 1\nlol0: &lol0 [lol]\n");
    for level in 1..=9 {
        let previous = format!("*lol{}", level - 1);
        policy.push_str(&format!("lol{level}: &lol{level} [{}]\n", vec![previous; 10].join(", ")));
    }
    let diagnostics = check_rejected(policy.as_bytes());
    assert_eq!(codes(&diagnostics), [Code::YamlAlias]);
    let anchor = policy.find("&lol0").unwrap();
    assert!(diagnostics[0].primary.span.start >= anchor, "points before the first anchor");
}

/// saphyr-parser reports this as a scan error, not an alias event; it is still an alias.
#[test]
fn an_alias_to_an_unknown_anchor_is_refused_as_an_alias() {
    assert_eq!(codes(&check_rejected(b"version: 1\nname: *undefined\n")), [Code::YamlAlias]);
}

#[test]
fn invalid_utf8_is_refused_with_the_offending_byte() {
    let diagnostics = check_rejected(b"version: 1\nname: caf\xe9\n");
    assert_eq!(codes(&diagnostics), [Code::NotUtf8]);
    assert!(diagnostics[0].message.contains("byte 20"), "{}", diagnostics[0].message);
}

#[test]
fn capsulec_check_refuses_invalid_utf8() {
    let file = write_temp(b"version: 1\nname: \xff\xfe\n");
    assert_refused(&capsulec_check(file.path()), Code::NotUtf8);
}

/// Thousands of errors on one long line: the text output stays bounded (each
/// diagnostic reprints its line, so it is capped by count and bytes), and the JSON
/// keeps every diagnostic. Found by reading the fuzz target's slow inputs.
#[test]
fn many_errors_on_one_long_line_give_bounded_output() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/regressions/policy/one-line-4000-unknown-keys.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_capsulec")).args(["check", path]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let max = capsule_compiler::diagnostic::MAX_RENDERED_BYTES;
    assert!(out.stderr.len() < 3 * max, "{} bytes of diagnostics", out.stderr.len());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("more diagnostic(s) not shown"), "the summary line is missing");
    let json = std::process::Command::new(env!("CARGO_BIN_EXE_capsulec"))
        .args(["check", "--format", "json", path])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["errors"], 4000);
    assert_eq!(json["diagnostics"].as_array().unwrap().len(), 4000);
}
