//! Policy → Kubernetes `SeccompProfile` (`seccompprofile.yaml`), the custom resource of
//! the Security Profiles Operator (security-profiles-operator.x-k8s.io/v1beta1).
//!
//! Its `spec` is the OCI profile of [`export_oci`](super::export_oci) without what the
//! operator's schema lacks: Docker's `includes`/`excludes` and `defaultErrnoRet`. So:
//!
//! - when a syscall's rules differ between the policy's Linux targets (the OCI profile
//!   limits them with `includes.arches`), the file holds one `SeccompProfile` per
//!   target, named `NAME-linux-x86-64` and so on, each exact for its architecture;
//! - a default of `errno(E)` other than EPERM becomes EPERM (the operator and runc
//!   return EPERM for `SCMP_ACT_ERRNO` without an errno), with a warning;
//! - an argument value above 2^63-1 (the schema's int64) is written as is, with a
//!   warning: the API server may refuse the object.
//!
//! The YAML is written by hand (block style, plain scalars where YAML reads them as
//! strings, JSON-quoted otherwise) so the output is byte-for-byte deterministic.

use super::{Profile, export_oci};
use crate::ir::{Action, Policy};
use capsule_artifacts::Target;
use serde_json::{Value, json};

/// The custom resource's API version and kind.
pub const API_VERSION: &str = "security-profiles-operator.x-k8s.io/v1beta1";
pub const KIND: &str = "SeccompProfile";

/// The file and what it could not express exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeExported {
    /// One or more YAML documents (`---` between them), with a trailing newline.
    pub yaml: String,
    /// The `metadata.name` of each document, in order.
    pub names: Vec<String>,
    /// One sentence each, in a stable order.
    pub warnings: Vec<String>,
}

/// Write a policy's syscall rules as `SeccompProfile` objects.
pub fn export_seccomp_profile(policy: &Policy) -> KubeExported {
    let base = object_name(&policy.name);
    let profile = |p: &Policy| -> Profile {
        serde_json::from_str(&export_oci(p).json).expect("export_oci writes a profile that reads back")
    };
    let whole = profile(policy);
    let per_arch = whole.syscalls.iter().flatten().any(|e| e.includes.is_some() || e.excludes.is_some());
    let documents: Vec<(String, Profile)> = if per_arch {
        policy
            .syscalls
            .iter()
            .map(|sp| {
                let mut one = policy.clone();
                one.targets.retain(|t| *t == sp.target);
                one.syscalls.retain(|s| s.target == sp.target);
                (format!("{base}-{}", sp.target.name().replace('_', "-")), profile(&one))
            })
            .collect()
    } else {
        vec![(base, whole)]
    };

    let mut warnings = Vec::new();
    if per_arch {
        warnings.push(format!(
            "some syscalls' rules differ between {}: one SeccompProfile per architecture",
            policy.syscalls.iter().map(|s| s.target.name()).collect::<Vec<_>>().join(" and ")
        ));
    }
    if let Action::Errno(n) = policy.default
        && n != EPERM
    {
        warnings.push(format!(
            "the default {} becomes errno(EPERM): a SeccompProfile has no defaultErrnoRet",
            policy.default
        ));
    }
    let mut yaml = String::from(HEADER);
    let mut names = Vec::new();
    for (i, (name, profile)) in documents.into_iter().enumerate() {
        if i > 0 {
            yaml.push_str("---\n");
        }
        let spec = spec(&profile, &name, &mut warnings);
        let object = json!({ "apiVersion": API_VERSION, "kind": KIND, "metadata": { "name": name }, "spec": spec });
        emit(&object, 0, &mut yaml);
        names.push(name);
    }
    KubeExported { yaml, names, warnings }
}

const EPERM: u16 = 1;
const HEADER: &str = "\
# A Security Profiles Operator SeccompProfile written by capsulec from a capsule.yaml:
# the same syscall decisions as oci-seccomp.json. docs/kubernetes.md says how to use it.
";

/// The `spec` of a profile: the OCI fields the operator's schema has.
fn spec(profile: &Profile, name: &str, warnings: &mut Vec<String>) -> Value {
    let syscalls: Vec<Value> = profile
        .syscalls
        .iter()
        .flatten()
        .map(|e| {
            let mut entry = serde_json::Map::new();
            entry.insert("action".into(), json!(e.action));
            if let Some(errno) = e.errno_ret {
                entry.insert("errnoRet".into(), json!(errno));
            }
            if let Some(args) = &e.args {
                let args: Vec<Value> = args
                    .iter()
                    .map(|a| {
                        let warning = format!(
                            "{name}: an argument value of {} is above the schema's int64 range",
                            e.names.as_deref().unwrap_or_default().join(", ")
                        );
                        if (a.value > i64::MAX as u64 || a.value_two > i64::MAX as u64) && !warnings.contains(&warning)
                        {
                            warnings.push(warning);
                        }
                        json!({ "index": a.index, "op": a.op, "value": a.value, "valueTwo": a.value_two })
                    })
                    .collect();
                entry.insert("args".into(), json!(args));
            }
            entry.insert("names".into(), json!(e.names.clone().unwrap_or_default()));
            Value::Object(entry)
        })
        .collect();
    json!({
        "architectures": profile.architectures.clone().unwrap_or_default(),
        "defaultAction": profile.default_action,
        "syscalls": syscalls,
    })
}

/// A Kubernetes object name (an RFC 1123 subdomain) from a policy name: lowercase
/// letters, digits, `-` and `.`, starting and ending alphanumeric, at most 253 bytes.
pub fn object_name(policy_name: &str) -> String {
    let mapped: String = policy_name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '.' | '-') => c,
            _ => '-',
        })
        .collect();
    let trimmed = mapped.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    // Room for a per-architecture suffix (`-linux-aarch64`).
    let short: String = trimmed.chars().take(200).collect();
    let short = short.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    if short.is_empty() { "capsule".to_owned() } else { short.to_owned() }
}

/// YAML block style. Maps come in serde_json's (sorted) key order.
fn emit(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                out.push_str(&pad);
                out.push_str(&scalar(&Value::String(key.clone())));
                out.push(':');
                nested(v, indent, out);
            }
        }
        Value::Array(items) => {
            for v in items {
                out.push_str(&pad);
                out.push('-');
                match v {
                    // The first key on the dash's line, the rest aligned under it.
                    Value::Object(map) if !map.is_empty() => {
                        let mut inner = String::new();
                        emit(v, indent + 2, &mut inner);
                        out.push(' ');
                        out.push_str(&inner[indent + 2..]);
                    }
                    _ => nested(v, indent, out),
                }
            }
        }
        _ => {
            out.push_str(&pad);
            out.push_str(&scalar(value));
            out.push('\n');
        }
    }
}

/// A value after `key:` or `-`: inline when scalar or empty, else on the next lines.
fn nested(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            emit(v, indent + 2, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            emit(v, indent + 2, out);
        }
        Value::Object(_) => out.push_str(" {}\n"),
        Value::Array(_) => out.push_str(" []\n"),
        _ => {
            out.push(' ');
            out.push_str(&scalar(v));
            out.push('\n');
        }
    }
}

/// A scalar: plain when YAML 1.1 and 1.2 both read it back as this string, else a
/// JSON string (valid YAML double-quoted).
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let safe = !s.is_empty()
                && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
                && s.starts_with(|c: char| c.is_ascii_alphabetic())
                && !matches!(
                    s.to_ascii_lowercase().as_str(),
                    "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null" | "nan" | "inf"
                );
            if safe { s.clone() } else { Value::String(s.clone()).to_string() }
        }
        other => other.to_string(),
    }
}

/// Which target a per-architecture document is for, from its name's suffix.
pub fn document_target(name: &str) -> Option<Target> {
    Target::LINUX.into_iter().find(|t| name.ends_with(&format!("-{}", t.name().replace('_', "-"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_rfc_1123() {
        assert_eq!(object_name("capsule-default"), "capsule-default");
        assert_eq!(object_name("My Tool_v2!"), "my-tool-v2");
        assert_eq!(object_name("--"), "capsule");
        assert_eq!(object_name(&"x".repeat(400)).len(), 200);
    }

    #[test]
    fn scalars_that_yaml_would_retype_are_quoted() {
        for (s, want) in [("read", "read"), ("yes", "\"yes\""), ("123", "\"123\""), ("", "\"\""), ("a b", "\"a b\"")] {
            assert_eq!(scalar(&json!(s)), want);
        }
    }

    #[test]
    fn block_yaml() {
        let mut out = String::new();
        emit(&json!({"a": {"b": [1, {"c": "d", "e": []}]}, "f": "SCMP_ACT_ALLOW"}), 0, &mut out);
        assert_eq!(out, "a:\n  b:\n    - 1\n    - c: d\n      e: []\nf: SCMP_ACT_ALLOW\n");
    }
}
