//! `capsule run --policy FILE.json`: a policy's JSON form is enforced as its YAML is,
//! on the real kernel, as root and as the unprivileged user; a JSON policy with an
//! error is refused (125) with a diagnostic that points into the JSON text.

use capsule_compiler::front::{Format, convert};
use capsule_tests::{EXIT_SETUP_FAILURE, Sandbox, assert_exit, default_policy, identities, text};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The built-in default policy in its JSON form, plus deny rules with an errno that
/// nothing else gives (EXDEV) so a refusal can only come from this file. Written with
/// tabs, which JSON allows and YAML parsers stumble on.
fn json_policy() -> String {
    let json = convert::to_json(&default_policy(), Format::Yaml).expect("the default policy converts");
    let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let deny = value["syscalls"]["deny"].as_array_mut().expect("the default policy has deny rules");
    for name in ["mkdir", "mkdirat"] {
        deny.push(serde_json::json!({ name: { "action": "errno(EXDEV)" } }));
    }
    let pretty = serde_json::to_string_pretty(&value).unwrap();
    // JSON strings hold no line breaks, so leading spaces are indentation.
    pretty
        .lines()
        .map(|line| {
            let body = line.trim_start_matches(' ');
            format!("{}{body}\n", "\t".repeat((line.len() - body.len()) / 2))
        })
        .collect()
}

fn write_readable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

#[test]
fn a_json_policy_is_enforced_like_its_yaml() {
    let policy = json_policy();
    assert!(policy.contains("\n\t\"version\": 1"), "{policy}");
    for identity in identities("a_json_policy_is_enforced_like_its_yaml") {
        let sandbox = Sandbox::new(&identity);
        // The control: under the built-in default policy (YAML), mkdir works.
        assert_exit(&sandbox.run(&[], &["mkdir", "by-yaml"]), 0);
        assert!(sandbox.workspace.path().join("by-yaml").is_dir());

        let file = sandbox.home.path().join("policy.json");
        write_readable(&file, &policy);
        let file = file.to_str().unwrap();
        let denied = sandbox.run(&["--policy", file], &["mkdir", "by-json"]);
        assert_exit(&denied, 1);
        assert!(text(&denied.stderr).contains("Invalid cross-device link"), "{}", text(&denied.stderr));
        assert!(!sandbox.workspace.path().join("by-json").exists(), "mkdir ran under the JSON policy");
        // The rest of the policy is the default's: writing the workspace works.
        let wrote = sandbox.run(&["--policy", file], &["sh", "-c", "echo hi > by-json.txt && cat by-json.txt"]);
        assert_exit(&wrote, 0);
        assert_eq!(text(&wrote.stdout), "hi\n");
        // A second run hits the cache built from the JSON form.
        let again = sandbox.run(&["-v", "--policy", file], &["true"]);
        assert_exit(&again, 0);
        assert!(text(&again.stderr).contains(": cached artifact "), "{}", text(&again.stderr));
    }
}

#[test]
fn a_json_policy_with_an_error_is_refused_with_its_place_in_the_json() {
    for identity in identities("a_json_policy_with_an_error_is_refused_with_its_place_in_the_json") {
        let sandbox = Sandbox::new(&identity);
        let file = sandbox.home.path().join("broken.json");
        write_readable(&file, "{\n  \"version\": 1,\n  \"filesystem\": {\"write\": [\"${WORKSPACE}\"]},\n}\n");
        let marker = sandbox.workspace.path().join("ran");
        let output = sandbox.run(&["--policy", file.to_str().unwrap()], &["touch", marker.to_str().unwrap()]);
        assert_exit(&output, EXIT_SETUP_FAILURE);
        let stderr = text(&output.stderr);
        assert!(stderr.contains("error[E0010]: invalid JSON: trailing comma"), "{stderr}");
        assert!(stderr.contains("broken.json:3:44"), "{stderr}");
        assert!(!marker.exists(), "the command ran although the policy has errors");
    }
}
