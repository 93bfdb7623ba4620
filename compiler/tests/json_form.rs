//! The JSON form of every fixture policy: it checks with the same diagnostic codes as
//! the YAML, compiles to byte-identical filters, converts back to itself, and the
//! JSON Schema generated from the front-end's shape accepts every policy the checker
//! accepts and rejects every fixture whose error is one of shape.

use capsule_compiler::build::{self, BuildOptions};
use capsule_compiler::diagnostic::Code;
use capsule_compiler::front::{self, Format, convert, schema};
use std::path::{Path, PathBuf};

fn fixtures() -> Vec<(String, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for kind in ["valid", "warnings", "invalid"] {
        let dir = root.join("fixtures/policies").join(kind);
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        found.sort();
        files.extend(found.into_iter().map(|p| (format!("{kind}/{}", p.file_name().unwrap().to_string_lossy()), p)));
    }
    files.push(("cli/default-policy.yaml".into(), root.join("cli/src/default-policy.yaml")));
    assert!(files.len() > 60, "the fixtures are found");
    files
}

fn codes(diags: &[capsule_compiler::diagnostic::Diagnostic]) -> Vec<&'static str> {
    let mut codes: Vec<&str> = diags.iter().map(|d| d.code.as_str()).collect();
    codes.sort();
    codes
}

/// The document-level codes: a YAML file that fails with one of these has no JSON form.
const DOCUMENT_CODES: &[Code] = &[
    Code::FileTooLarge,
    Code::NotUtf8,
    Code::YamlSyntax,
    Code::YamlAlias,
    Code::YamlTag,
    Code::MultipleDocuments,
    Code::DuplicateKey,
    Code::TooDeep,
    Code::EmptyPolicy,
];

#[test]
fn the_json_form_of_every_fixture_checks_with_the_same_codes_and_converts_back_to_itself() {
    let mut converted = 0;
    for (name, path) in fixtures() {
        let yaml = std::fs::read_to_string(&path).unwrap();
        let from_yaml = front::check(&yaml);
        let json = match convert::document_to_json(&yaml, Format::Yaml) {
            Ok(json) => json,
            Err(d) => {
                // Only a document that does not parse has no JSON form, and the
                // checker reports the same problem.
                assert!(DOCUMENT_CODES.contains(&d.code), "{name}: {d:?}");
                assert_eq!(codes(&from_yaml.diagnostics), [d.code.as_str()], "{name}");
                continue;
            }
        };
        converted += 1;
        serde_json::from_str::<serde_json::Value>(&json).unwrap_or_else(|e| panic!("{name}: not JSON: {e}\n{json}"));
        let from_json = front::check_source(&json, Format::Json);
        assert_eq!(codes(&from_json.diagnostics), codes(&from_yaml.diagnostics), "{name}:\n{json}");
        assert_eq!(from_json.policy.is_some(), from_yaml.policy.is_some(), "{name}");
        // Every diagnostic on the JSON form points into the JSON text.
        for d in &from_json.diagnostics {
            assert!(d.primary.span.end <= json.len() && json.is_char_boundary(d.primary.span.start), "{name}: {d:?}");
        }
        // Back to YAML: the same codes, and the same JSON form again.
        let back = convert::document_to_yaml(&json, Format::Json).unwrap_or_else(|d| panic!("{name}: {d:?}"));
        assert_eq!(codes(&front::check(&back).diagnostics), codes(&from_yaml.diagnostics), "{name}:\n{back}");
        assert_eq!(convert::document_to_json(&back, Format::Yaml).unwrap(), json, "{name}");
        // Canonical: converting the JSON form gives it back byte for byte.
        assert_eq!(convert::document_to_json(&json, Format::Json).unwrap(), json, "{name}");
        if !from_yaml.has_errors() {
            assert_eq!(convert::to_json(&yaml, Format::Yaml).unwrap(), json, "{name}");
        }
    }
    assert!(converted > 55, "most fixtures have a JSON form ({converted})");
}

#[test]
fn the_json_and_yaml_forms_of_every_policy_compile_to_byte_identical_filters() {
    let mut built = 0;
    for (name, path) in fixtures() {
        let yaml = std::fs::read_to_string(&path).unwrap();
        if front::check(&yaml).has_errors() {
            continue;
        }
        let json = convert::to_json(&yaml, Format::Yaml).unwrap();
        let from_yaml = build::build(yaml.as_bytes(), &BuildOptions::default()).unwrap();
        let from_json = build::build_source(json.as_bytes(), Format::Json, &BuildOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let names: Vec<&String> = from_yaml.files.keys().collect();
        assert_eq!(names, from_json.files.keys().collect::<Vec<_>>(), "{name}");
        for (file, bytes) in &from_yaml.files {
            if file == capsule_artifacts::manifest::MANIFEST_FILE {
                continue;
            }
            assert!(bytes == &from_json.files[file], "{name}: {file} differs between the YAML and JSON forms");
        }
        // The JSON form read as YAML (which it also is) is the same policy, manifest
        // and all: `capsule run`'s cache may key on the bytes alone.
        let as_yaml = build::build(json.as_bytes(), &BuildOptions::default()).unwrap();
        assert!(as_yaml.files == from_json.files, "{name}: the JSON form read as YAML differs");
        // And the YAML written back from the JSON form builds the same filters.
        let back = convert::to_yaml(&json, Format::Json).unwrap();
        let from_back = build::build(back.as_bytes(), &BuildOptions::default()).unwrap();
        for (file, bytes) in &from_yaml.files {
            if file != capsule_artifacts::manifest::MANIFEST_FILE {
                assert!(bytes == &from_back.files[file], "{name}: {file} differs after JSON -> YAML");
            }
        }
        // The manifests differ in the source's hash only.
        let mut a = from_yaml.manifest.clone();
        let b = from_json.manifest.clone();
        assert_eq!(b.policy.source_blake3, blake3::hash(json.as_bytes()).to_hex().to_string());
        a.policy.source_blake3 = b.policy.source_blake3.clone();
        assert_eq!(a.to_bytes(), b.to_bytes(), "{name}");
        built += 1;
    }
    assert!(built >= 15, "every valid and warning fixture builds ({built})");
}

#[test]
fn a_json_file_is_checked_as_strict_json() {
    // Valid YAML, not JSON: refused with E0010 where JSON goes wrong, not guessed.
    for (src, at) in [("version: 1\n", 0), ("{\"version\": 1,}", 13), ("{\"version\": 1} # c", 15), ("{version: 1}", 1)]
    {
        let checked = front::check_source(src, Format::Json);
        let d = &checked.diagnostics[0];
        assert_eq!((d.code, d.primary.span.start), (Code::JsonSyntax, at), "{src}: {}", d.message);
    }
    // The edge cases of JSON that YAML parsers stumble on are fine.
    let src = "{\n\t\"version\":\t1,\n\t\"description\": \"\\ud83d\\ude00 \\/ \\u00e9\",\n\t\"limits\": {\"processes\": 100000000000000000000}\n}";
    let checked = front::check_source(src, Format::Json);
    let got: Vec<(Code, &str)> = checked.diagnostics.iter().map(|d| (d.code, &src[d.primary.span.clone()])).collect();
    assert_eq!(got, [(Code::BadNumber, "100000000000000000000")]);
    let checked = front::check_source("{}", Format::Json);
    assert_eq!(codes(&checked.diagnostics), ["E0103"]);
    let checked = front::check_source("[{\"version\": 1}]", Format::Json);
    assert_eq!((checked.diagnostics[0].code, checked.diagnostics[0].primary.span.clone()), (Code::WrongType, 0..16));
    let checked = front::check_source("  \n", Format::Json);
    assert_eq!(codes(&checked.diagnostics), ["E0009"]);
    let checked = front::check_source("{\"version\": 1, \"name\": \"a\", \"name\": \"b\"}", Format::Json);
    assert_eq!(
        (checked.diagnostics[0].code, checked.diagnostics[0].primary.span.clone()),
        (Code::DuplicateKey, 28..34)
    );
    // A number where the language wants a string is that string, as in YAML.
    let checked = front::check_source("{\"version\": 1, \"name\": 7, \"targets\": [\"macos\"]}", Format::Json);
    assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
    assert_eq!(checked.policy.unwrap().name, "7");
}

#[test]
fn the_format_follows_the_file_name() {
    assert_eq!(Format::from_path("capsule.json"), Format::Json);
    assert_eq!(Format::from_path("/x/P.JSON"), Format::Json);
    assert_eq!(Format::from_path("capsule.yaml"), Format::Yaml);
    assert_eq!(Format::from_path("capsule.yml"), Format::Yaml);
    assert_eq!(Format::from_path("json"), Format::Yaml);
    assert_eq!(Format::from_path("capsule.json.yaml"), Format::Yaml);
}

// ---- the JSON Schema ----

fn validator() -> jsonschema::Validator {
    let schema = schema::json_schema();
    assert!(jsonschema::meta::is_valid(&schema), "the generated schema is a valid JSON Schema");
    jsonschema::draft7::new(&schema).expect("the schema compiles")
}

/// The codes of errors a schema can see: keys, types, enumerations, patterns.
const SHAPE_CODES: &[Code] = &[
    Code::UnknownKey,
    Code::WrongType,
    Code::MissingVersion,
    Code::UnsupportedVersion,
    Code::BadNumber,
    Code::BadAction,
    Code::BadTarget,
    Code::BadPath,
    Code::BadPort,
    Code::BadQuantity,
    Code::BadEnvName,
    Code::BadRecord,
    Code::ActionOnAllow,
];

#[test]
fn the_committed_schema_is_the_generated_one() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/capsule.schema.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == schema::json_schema_string(),
        "docs/capsule.schema.json is out of date: run `cargo run -p capsule-compiler --bin capsulec -- schema > docs/capsule.schema.json`"
    );
}

#[test]
fn the_schema_accepts_every_policy_the_checker_accepts_and_rejects_shape_errors() {
    let validator = validator();
    let (mut accepted, mut rejected) = (0, 0);
    for (name, path) in fixtures() {
        let yaml = std::fs::read_to_string(&path).unwrap();
        let checked = front::check(&yaml);
        let Ok(json) = convert::document_to_json(&yaml, Format::Yaml) else { continue };
        let instance: serde_json::Value = serde_json::from_str(&json).unwrap();
        let errors: Vec<String> =
            validator.iter_errors(&instance).map(|e| format!("{e} at {}", e.instance_path())).collect();
        if !checked.has_errors() {
            assert!(errors.is_empty(), "{name}: the checker accepts it, the schema does not: {errors:#?}");
            accepted += 1;
        } else if checked.diagnostics.iter().any(|d| d.is_error() && SHAPE_CODES.contains(&d.code)) {
            let expected = capsule_compiler::filetest::expected_codes(&yaml);
            let shape_error_expected = expected.iter().any(|c| SHAPE_CODES.iter().any(|s| s.as_str() == c));
            if shape_error_expected {
                assert!(!errors.is_empty(), "{name}: a shape error the schema does not see");
                rejected += 1;
            }
        }
    }
    assert!(accepted >= 15 && rejected >= 20, "accepted {accepted}, rejected {rejected}");
}

/// A YAML tree as an editor's YAML 1.2 parser types it (the core schema: plain `1`,
/// `0x10`, `1.5` are numbers, `true`/`True` booleans, `~`/`null` null), as
/// yaml-language-server does before it applies the schema.
fn core_schema_value(node: &front::yaml::Node) -> serde_json::Value {
    use front::yaml::NodeKind;
    use serde_json::Value;
    match &node.kind {
        NodeKind::Map(entries) => Value::Object(
            entries.iter().map(|(k, v)| (front::parse::key_name(k).to_owned(), core_schema_value(v))).collect(),
        ),
        NodeKind::Seq(items) => Value::Array(items.iter().map(core_schema_value).collect()),
        NodeKind::Scalar(s) if !s.plain => Value::String(s.value.clone()),
        NodeKind::Scalar(s) => {
            let t = s.value.as_str();
            let int = |digits: &str, radix| i64::from_str_radix(digits, radix).ok().map(Value::from);
            let number = match t {
                _ if front::yaml::is_null(t) => Some(Value::Null),
                "true" | "True" | "TRUE" => Some(Value::Bool(true)),
                "false" | "False" | "FALSE" => Some(Value::Bool(false)),
                _ if t.starts_with("0x") => int(&t[2..], 16),
                _ if t.starts_with("0o") => int(&t[2..], 8),
                _ if t.bytes().all(|b| b.is_ascii_digit() || b == b'-' || b == b'+') => int(t, 10),
                _ if t.bytes().all(|b| b.is_ascii_digit() || b"-+.eE".contains(&b)) => {
                    t.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Value::Number)
                }
                _ => None,
            };
            number.unwrap_or_else(|| Value::String(t.to_owned()))
        }
    }
}

#[test]
fn the_schema_accepts_every_valid_policy_as_an_editor_reads_its_yaml() {
    let validator = validator();
    let mut accepted = 0;
    for (name, path) in fixtures() {
        let yaml = std::fs::read_to_string(&path).unwrap();
        if front::check(&yaml).has_errors() {
            continue;
        }
        let instance = core_schema_value(&front::yaml::parse(&yaml).unwrap().unwrap());
        let errors: Vec<String> =
            validator.iter_errors(&instance).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{name}: {errors:#?}");
        accepted += 1;
    }
    assert!(accepted >= 15);
}

#[test]
fn the_schema_sees_what_the_checker_sees_in_each_value() {
    let validator = validator();
    let valid = |v: serde_json::Value| validator.is_valid(&v);
    let with = |key: &str, value: serde_json::Value| {
        let mut policy = serde_json::json!({ "version": 1 });
        policy[key] = value;
        policy
    };
    for good in [
        with("default", "errno(EPERM)".into()),
        with("default", " errno( 4095 ) ".into()),
        with("default", "errno(0xfff)".into()),
        with("default", "allow".into()),
        with("filesystem", serde_json::json!({ "read": ["/usr", "${HOME}/.config", "${WORKSPACE}", "/a..b/c"] })),
        with("network", serde_json::json!({ "connect": ["tcp/443", "tcp/65535", "tcp/0"] })),
        with("limits", serde_json::json!({ "cpu": 60, "memory": "512 MiB", "file-size": "1_000", "processes": 0 })),
        with("env", serde_json::json!({ "pass": ["PATH", "_X1"], "set": { "A": "b", "N": 1 } })),
        with(
            "syscalls",
            serde_json::json!({ "allow": null, "deny": [{ "ptrace": { "when": "request == 1", "action": "kill-process" } }] }),
        ),
    ] {
        assert!(valid(good.clone()), "{good}");
    }
    for bad in [
        serde_json::json!({}),
        serde_json::json!({ "version": 2 }),
        serde_json::json!({ "version": "1" }),
        with("default", "errno(4096)".into()),
        with("default", "notify".into()),
        with("filesystem", serde_json::json!({ "read": ["usr"] })),
        with("filesystem", serde_json::json!({ "read": ["/usr/../etc"] })),
        with("filesystem", serde_json::json!({ "read": ["${HOEM}/x"] })),
        with("network", serde_json::json!({ "connect": ["tcp/65536"] })),
        with("network", serde_json::json!({ "connect": ["udp/53"] })),
        with("limits", serde_json::json!({ "cpu": "5 minutes" })),
        with("limits", serde_json::json!({ "processes": -1 })),
        with("env", serde_json::json!({ "set": { "1A": "b" } })),
        with("audit", serde_json::json!({ "record": ["everything"] })),
        with("landlock", serde_json::json!({ "scope": "yes" })),
        with("syscalls", serde_json::json!({ "allow": [{ "read": { "action": "log" } }] })),
        with("syscalls", serde_json::json!({ "deny": [{ "ptrace": { "action": "allow" } }] })),
        with("syscalls", serde_json::json!({ "deny": [{ "ptrace": null, "kill": null }] })),
    ] {
        assert!(!valid(bad.clone()), "{bad}");
        // And the checker agrees.
        let text = serde_json::to_string(&bad).unwrap();
        assert!(front::check_source(&text, Format::Json).has_errors(), "{text}");
    }
}
