//! The capsulec binary as users and scripts see it: exit codes, JSON, colour.

use std::process::{Command, Output};

fn capsulec(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_capsulec"));
    cmd.args(args).env_remove("NO_COLOR");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn fixture(rel: &str) -> String {
    format!("{}/../fixtures/policies/{rel}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_exits_0_clean_1_on_errors_2_on_usage() {
    assert_eq!(capsulec(&["check", &fixture("valid/coding-agent.yaml")], &[]).status.code(), Some(0));
    // Warnings alone still pass.
    assert_eq!(capsulec(&["check", &fixture("warnings/pointer-argument.yaml")], &[]).status.code(), Some(0));
    assert_eq!(capsulec(&["check", &fixture("invalid/unknown-syscall.yaml")], &[]).status.code(), Some(1));
    assert_eq!(capsulec(&["check"], &[]).status.code(), Some(2));
    assert_eq!(capsulec(&["check", "--format", "yaml", &fixture("valid/minimal.yaml")], &[]).status.code(), Some(2));
    let missing = capsulec(&["check", "/nonexistent/capsule.yaml"], &[]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read /nonexistent/capsule.yaml"));
}

#[test]
fn check_text_points_at_the_span_with_a_suggestion() {
    let out = capsulec(&["check", &fixture("invalid/unknown-syscall.yaml")], &[]);
    let text = String::from_utf8(out.stderr).unwrap();
    assert!(text.contains("error[E0201]: unknown syscall `sokcet`"), "{text}");
    assert!(text.contains("unknown-syscall.yaml:6:7"), "{text}");
    assert!(text.contains("^^^^^^"), "{text}");
    assert!(text.contains("did you mean `socket`?"), "{text}");
}

#[test]
fn check_json_is_the_documented_shape() {
    let out = capsulec(&["check", "--format", "json", &fixture("invalid/many-errors.yaml")], &[]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["format"], "capsulec-check");
    assert_eq!(json["version"], 1);
    assert_eq!(json["ok"], false);
    let diags = json["diagnostics"].as_array().unwrap();
    assert_eq!(json["errors"].as_u64().unwrap() as usize, diags.iter().filter(|d| d["severity"] == "error").count());
    let first = &diags[0];
    for key in ["severity", "code", "message", "span", "label", "secondary", "help", "notes"] {
        assert!(first.get(key).is_some(), "missing {key} in {first}");
    }
    let span = &first["span"];
    for key in ["start", "end", "line", "column", "end_line", "end_column"] {
        assert!(span[key].is_u64(), "span.{key} in {span}");
    }
    let codes: Vec<&str> = diags.iter().map(|d| d["code"].as_str().unwrap()).collect();
    for code in ["E0201", "E0203", "E0204", "E0101"] {
        assert!(codes.contains(&code), "{codes:?}");
    }
    let clean = capsulec(&["check", "--format", "json", &fixture("valid/minimal.yaml")], &[]);
    let json: serde_json::Value = serde_json::from_slice(&clean.stdout).unwrap();
    assert_eq!((json["ok"].as_bool(), json["errors"].as_u64()), (Some(true), Some(0)));
}

#[test]
fn colour_only_when_asked_and_never_with_no_color() {
    let ansi = |o: &Output| o.stderr.contains(&0x1b);
    let bad = fixture("invalid/unknown-syscall.yaml");
    // Not a terminal: no colour by default.
    assert!(!ansi(&capsulec(&["check", &bad], &[])));
    assert!(ansi(&capsulec(&["--color", "always", "check", &bad], &[])));
    assert!(!ansi(&capsulec(&["--color", "always", "check", &bad], &[("NO_COLOR", "1")])));
}

#[test]
fn groups_lists_members_per_target() {
    let out = capsulec(&["groups", "@debug"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("linux-x86_64") && text.contains("linux-aarch64"), "{text}");
    assert!(text.contains("ptrace") && text.contains("process_vm_writev"), "{text}");
    assert_eq!(capsulec(&["groups", "@nope"], &[]).status.code(), Some(2));
}

#[test]
fn explain_names_the_rule_or_the_bpf_path() {
    let policy = fixture("valid/coding-agent.yaml");
    let out = capsulec(&["explain", &policy, "--target", "linux-x86_64", "socket", "AF_NETLINK", "SOCK_RAW", "0"], &[]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("=> errno(EPERM)") && text.contains("socket: domain not in [AF_UNIX, AF_INET, AF_INET6]"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("art");
    assert!(capsulec(&["build", &policy, "-o", out_dir.to_str().unwrap()], &[]).status.success());
    let out = capsulec(&["explain", out_dir.to_str().unwrap(), "--target", "linux-x86_64", "read"], &[]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("=> allow") && text.contains("skips the filter"), "{text}");
    assert!(text.contains("ld   [4]"), "{text}");
    // A recorded denial goes to the supervisor, which answers from the manifest.
    let out =
        capsulec(&["explain", out_dir.to_str().unwrap(), "--target", "linux-x86_64", "socket", "AF_NETLINK"], &[]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("user-notif") && text.contains("fail the call with errno(EPERM)"), "{text}");
}

#[test]
fn diff_reports_what_a_reviewer_needs() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.yaml");
    let new = dir.path().join("new.yaml");
    std::fs::write(
        &old,
        "version: 1\nsyscalls:\n  allow: [read, write]\n  deny: [ptrace]\nfilesystem:\n  write: [/tmp]\n",
    )
    .unwrap();
    std::fs::write(&new, "version: 1\nsyscalls:\n  allow:\n    - read\n    - ptrace\n    - socket: domain == AF_UNIX\nfilesystem:\n  write: [/tmp, /var/tmp]\n").unwrap();
    let out = capsulec(&["diff", old.to_str().unwrap(), new.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("newly allowed: ptrace"), "{text}");
    assert!(text.contains("newly denied: write"), "{text}");
    assert!(text.contains("changed socket (41)"), "{text}");
    assert!(text.contains("filesystem.write") && text.contains("added: /var/tmp"), "{text}");
    let same = capsulec(&["diff", old.to_str().unwrap(), old.to_str().unwrap()], &[]);
    assert_eq!(same.status.code(), Some(0));
}

/// A policy's JSON form through the binary: `convert` writes it, `check`, `build`,
/// `explain` and `diff` read a `.json` file as JSON, and `schema` prints the schema.
#[test]
fn json_policies_convert_check_build_explain_and_diff_like_their_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = fixture("valid/coding-agent.yaml");
    let converted = capsulec(&["convert", &yaml, "--to", "json"], &[]);
    assert_eq!(converted.status.code(), Some(0), "{}", String::from_utf8_lossy(&converted.stderr));
    let json_path = dir.path().join("coding-agent.json");
    std::fs::write(&json_path, &converted.stdout).unwrap();
    let json = json_path.to_str().unwrap();
    // The same bytes as the library's conversion, and valid JSON.
    let text = std::fs::read_to_string(&yaml).unwrap();
    let expected = capsule_compiler::front::convert::to_json(&text, capsule_compiler::front::Format::Yaml).unwrap();
    assert_eq!(String::from_utf8_lossy(&converted.stdout), expected);

    assert_eq!(capsulec(&["check", json], &[]).status.code(), Some(0));
    let (out_yaml, out_json) = (dir.path().join("from-yaml"), dir.path().join("from-json"));
    for (policy, out) in [(yaml.as_str(), &out_yaml), (json, &out_json)] {
        let built = capsulec(&["build", policy, "-o", out.to_str().unwrap()], &[]);
        assert_eq!(built.status.code(), Some(0), "{}", String::from_utf8_lossy(&built.stderr));
    }
    for file in ["linux-x86_64.bpf", "linux-aarch64.bpf", "oci-seccomp.json"] {
        let (a, b) = (std::fs::read(out_yaml.join(file)).unwrap(), std::fs::read(out_json.join(file)).unwrap());
        assert!(a == b, "{file} differs between the YAML and JSON builds");
    }
    let explained = capsulec(&["explain", json, "--target", "linux-x86_64", "ptrace", "0"], &[]);
    assert_eq!(explained.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&explained.stdout).contains("ptrace"));
    let diffed = capsulec(&["diff", &yaml, json], &[]);
    assert_eq!(diffed.status.code(), Some(0), "{}", String::from_utf8_lossy(&diffed.stdout));

    // Diagnostics on JSON input point into the JSON text, in both output formats.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\n  \"version\": 1,\n  \"syscalls\": {\"allow\": [\"sokcet\"]}\n}\n").unwrap();
    let out = capsulec(&["check", bad.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stderr).unwrap();
    assert!(text.contains("error[E0201]: unknown syscall `sokcet`") && text.contains("bad.json:3:26"), "{text}");
    let out = capsulec(&["check", "--format", "json", bad.to_str().unwrap()], &[]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let span = &report["diagnostics"][0]["span"];
    assert_eq!((span["line"].as_u64(), span["column"].as_u64(), span["start"].as_u64()), (Some(3), Some(26), Some(43)));
    // Not JSON: E0010 at the offending character; `convert` refuses a policy with errors.
    std::fs::write(&bad, "{\n  \"version\": 1,\n}\n").unwrap();
    let out = capsulec(&["check", bad.to_str().unwrap()], &[]);
    let text = String::from_utf8(out.stderr).unwrap();
    assert!(text.contains("error[E0010]: invalid JSON: trailing comma") && text.contains("bad.json:2:15"), "{text}");
    let out = capsulec(&["convert", bad.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty() && String::from_utf8_lossy(&out.stderr).contains("E0010"));
}

#[test]
fn schema_prints_the_committed_schema() {
    let out = capsulec(&["schema"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let committed = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/capsule.schema.json")).unwrap();
    assert!(out.stdout == committed, "capsulec schema differs from docs/capsule.schema.json");
}
