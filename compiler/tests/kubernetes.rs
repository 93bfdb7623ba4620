//! seccompprofile.yaml, the Kubernetes SeccompProfile `capsulec build` writes:
//! - it validates against the Security Profiles Operator's CRD schema (vendored in
//!   tests/kubernetes/ with its source and licence), checked by an independent
//!   validator (python3-jsonschema);
//! - its embedded profile imports back (`import-oci`) to the same decisions as
//!   oci-seccomp.json, per target;
//! - it is pinned in the manifest, and the same policy gives the same bytes.

use capsule_artifacts::Target;
use capsule_compiler::build::{self, BuildOptions, KUBE_FILE, OCI_FILE};
use capsule_compiler::front::yaml::{self, NodeKind};
use capsule_compiler::oci::kubernetes::{self, API_VERSION, KIND};
use capsule_compiler::oci::{ImportOptions, import_oci};
use capsule_compiler::{diff, front, passes};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A constant that differs between the targets (O_DIRECTORY): one document per target.
const PER_ARCH: &str = "version: 1\nname: per-arch\ndefault: errno(EPERM)\ntargets: [linux-x86_64, linux-aarch64]\nsyscalls:\n  allow:\n    - read\n    - openat: flags & O_DIRECTORY == 0\n";
const EACCES_DEFAULT: &str = "version: 1\nname: Eacces Default\ndefault: errno(EACCES)\ntargets: [linux-x86_64]\nsyscalls:\n  allow:\n    - read\n    - write: fd == 1\n  deny:\n    - ptrace: { action: kill-process }\n";

/// A 64-bit argument compared with a value above the schema's int64.
const BIG_VALUE: &str = "version: 1\nname: big\ndefault: errno(EPERM)\ntargets: [linux-x86_64]\nsyscalls:\n  allow:\n    - read\n    - lseek: offset == 0x8000000000000000\n";

/// The policies every check runs on: the built-in default, the valid fixtures and the
/// two above.
fn policies() -> Vec<(String, String)> {
    let mut out = vec![
        ("default-policy".to_owned(), std::fs::read_to_string(repo().join("cli/src/default-policy.yaml")).unwrap()),
        ("per-arch".to_owned(), PER_ARCH.to_owned()),
        ("eacces-default".to_owned(), EACCES_DEFAULT.to_owned()),
    ];
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(repo().join("fixtures/policies/valid"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    fixtures.sort();
    for path in fixtures {
        out.push((path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&path).unwrap()));
    }
    out
}

fn built(source: &str) -> build::Artifacts {
    build::build(source.as_bytes(), &BuildOptions::default()).expect("the policy builds")
}

fn text(artifacts: &build::Artifacts, file: &str) -> String {
    String::from_utf8(artifacts.files[file].clone()).unwrap()
}

/// A YAML node as JSON: plain scalars that are integers become numbers.
fn to_json(node: &yaml::Node) -> Value {
    match &node.kind {
        NodeKind::Scalar(s) if s.plain => {
            s.value.parse::<u64>().map_or_else(|_| Value::String(s.value.clone()), Value::from)
        }
        NodeKind::Scalar(s) => Value::String(s.value.clone()),
        NodeKind::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
        NodeKind::Map(pairs) => Value::Object(
            pairs
                .iter()
                .map(|(k, v)| match &k.kind {
                    NodeKind::Scalar(k) => (k.value.clone(), to_json(v)),
                    _ => panic!("a non-scalar key"),
                })
                .collect(),
        ),
    }
}

/// The documents of a seccompprofile.yaml, read with the compiler's own YAML reader
/// (one document at a time: it refuses several).
fn documents(yaml_text: &str) -> Vec<Value> {
    yaml_text.split("\n---\n").map(|doc| to_json(&yaml::parse(doc).expect("valid YAML").expect("a document"))).collect()
}

/// A policy's decisions, from an imported capsule.yaml, optimised for `diff`.
fn decisions(imported_yaml: &str) -> capsule_compiler::ir::Policy {
    let checked = front::check(imported_yaml);
    passes::run_all(&checked.policy.unwrap_or_else(|| panic!("{:#?}\n{imported_yaml}", checked.diagnostics)))
}

fn import(profile_json: &str, target: Target) -> String {
    let options = ImportOptions { name: "round-trip".into(), ..ImportOptions::new(target) };
    import_oci(profile_json, &options).unwrap_or_else(|e| panic!("{e}\n{profile_json}")).yaml
}

#[test]
fn seccompprofile_round_trips_to_the_oci_decisions() {
    for (name, source) in policies() {
        let artifacts = built(&source);
        let docs = documents(&text(&artifacts, KUBE_FILE));
        let oci = text(&artifacts, OCI_FILE);
        let linux: Vec<Target> = artifacts.policy.targets.iter().copied().filter(|t| t.is_linux()).collect();
        // One document per architecture exactly when the OCI profile has rules for some
        // architectures only (`includes.arches`): the operator's schema has no
        // `includes`. The set-id rules (`filesystem: setid`, on by default) test
        // O_TMPFILE, whose value differs between x86_64 and aarch64, so most policies
        // that target both split.
        let oci_json: serde_json::Value = serde_json::from_str(&oci).expect("the OCI profile is JSON");
        let splits = oci_json["syscalls"].as_array().unwrap().iter().any(|rule| rule.get("includes").is_some());
        assert_eq!(docs.len() > 1, splits, "{name}: {} document(s)", docs.len());
        for doc in &docs {
            assert_eq!(doc["apiVersion"], API_VERSION, "{name}");
            assert_eq!(doc["kind"], KIND, "{name}");
            let doc_name = doc["metadata"]["name"].as_str().unwrap();
            let targets = match kubernetes::document_target(doc_name) {
                Some(t) if docs.len() > 1 => vec![t],
                _ => linux.clone(),
            };
            // The spec is an OCI profile (the importer refuses unknown fields).
            let spec = serde_json::to_string(&doc["spec"]).unwrap();
            for target in targets {
                let from_kube = decisions(&import(&spec, target));
                let from_oci = decisions(&import(&oci, target));
                let d = diff::diff(&from_oci, &from_kube);
                if name == "eacces-default" {
                    // The one documented difference: no defaultErrnoRet in the schema.
                    assert!(!d.is_empty(), "{name}: the default should differ");
                    assert!(d.targets.iter().all(|t| t.newly_allowed.is_empty()), "{name}: {}", diff::render(&d));
                    assert_eq!(d.settings.len(), 1, "{name}: {}", diff::render(&d));
                    assert_eq!(d.settings[0].what, "default", "{name}: {}", diff::render(&d));
                } else {
                    assert!(d.is_empty(), "{name} {doc_name} {target}:\n{}", diff::render(&d));
                }
            }
        }
    }
}

/// Runs the vendored CRD's schema over a file with python3-jsonschema; None when the
/// validator is missing outside CI.
fn validate(file: &Path) -> Option<(bool, String)> {
    let script = repo().join("compiler/tests/kubernetes/validate.py");
    let crd = repo().join("compiler/tests/kubernetes/seccompprofile-crd.yaml");
    let probe = Command::new("python3").args(["-c", "import jsonschema, yaml"]).output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI: python3-jsonschema and python3-yaml are needed to validate seccompprofile.yaml (.ci/run installs them)"
        );
        eprintln!(
            "skipped: python3 with jsonschema and yaml is not installed (apt-get install python3-jsonschema python3-yaml)"
        );
        return None;
    }
    let out = Command::new("python3").arg(script).arg(crd).arg(file).output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(matches!(out.status.code(), Some(0 | 1)), "validate.py failed to run: {report}");
    Some((out.status.success(), report))
}

#[test]
fn seccompprofile_validates_against_the_operator_crd() {
    let dir = tempfile::tempdir().unwrap();
    for (name, source) in policies() {
        let file = dir.path().join(format!("{name}.seccompprofile.yaml"));
        std::fs::write(&file, &built(&source).files[KUBE_FILE]).unwrap();
        let Some((valid, report)) = validate(&file) else { return };
        assert!(valid, "{name}: {report}");
    }
}

/// The validator can fail: what the schema lacks (Docker's includes, defaultErrnoRet),
/// a wrong action, an out-of-range value or a bad name is each refused.
#[test]
fn the_crd_check_refuses_what_the_schema_does_not_allow() {
    let dir = tempfile::tempdir().unwrap();
    let good = text(&built(PER_ARCH), KUBE_FILE);
    let first = good.split("\n---\n").next().unwrap().to_owned();
    for (what, bad) in [
        (
            "includes",
            first.replace(
                "    - action: SCMP_ACT_ALLOW\n",
                "    - action: SCMP_ACT_ALLOW\n      includes: {arches: [amd64]}\n",
            ),
        ),
        (
            "defaultErrnoRet",
            first.replace(
                "  defaultAction: SCMP_ACT_ERRNO\n",
                "  defaultAction: SCMP_ACT_ERRNO\n  defaultErrnoRet: 13\n",
            ),
        ),
        ("action", first.replace("SCMP_ACT_ALLOW", "SCMP_ACT_PERMIT")),
        ("int64", first.replace("valueTwo: 0\n", "valueTwo: 18446744073709551615\n")),
        ("name", first.replace("name: per-arch-linux-x86-64", "name: Per_Arch")),
        ("apiVersion", first.replace(API_VERSION, "security-profiles-operator.x-k8s.io/v2")),
    ] {
        assert_ne!(bad, first, "{what}: the mutation did not apply");
        let file = dir.path().join(format!("{what}.yaml"));
        std::fs::write(&file, &bad).unwrap();
        let Some((valid, report)) = validate(&file) else { return };
        assert!(!valid, "{what}: the validator accepted\n{bad}\n{report}");
    }
}

#[test]
fn seccompprofile_is_pinned_and_deterministic() {
    for (name, source) in policies() {
        let a = built(&source);
        let b = built(&source);
        assert_eq!(a.files[KUBE_FILE], b.files[KUBE_FILE], "{name}");
        let entry = a.manifest.files.iter().find(|f| f.name == KUBE_FILE).expect("pinned in the manifest");
        assert_eq!(entry.blake3, blake3::hash(&a.files[KUBE_FILE]).to_hex().to_string(), "{name}");
        assert_eq!(entry.target, None);
    }
}

#[test]
fn what_the_schema_cannot_carry_is_a_warning() {
    let warnings = built(EACCES_DEFAULT).oci_warnings;
    assert!(warnings.iter().any(|w| w.starts_with(KUBE_FILE) && w.contains("no defaultErrnoRet")), "{warnings:#?}");
    let warnings = built(PER_ARCH).oci_warnings;
    assert!(warnings.iter().any(|w| w.starts_with(KUBE_FILE) && w.contains("per architecture")), "{warnings:#?}");
    let warnings = built(BIG_VALUE).oci_warnings;
    assert_eq!(
        warnings.iter().filter(|w| w.starts_with(KUBE_FILE) && w.contains("above the schema's int64 range")).count(),
        1,
        "{warnings:#?}"
    );
    // The API server's schema refuses it, as the warning says.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.yaml");
    std::fs::write(&file, &built(BIG_VALUE).files[KUBE_FILE]).unwrap();
    if let Some((valid, report)) = validate(&file) {
        assert!(!valid && report.contains("out of int64 range"), "{report}");
    }
    let per_arch = kubernetes::export_seccomp_profile(&built(PER_ARCH).policy);
    assert_eq!(per_arch.names, ["per-arch-linux-x86-64", "per-arch-linux-aarch64"]);
    let one = kubernetes::export_seccomp_profile(&built(EACCES_DEFAULT).policy);
    assert_eq!(one.names, ["eacces-default"]);
}
