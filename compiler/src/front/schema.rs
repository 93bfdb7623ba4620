//! The JSON Schema of the policy language, generated from [`shape`](super::shape)
//! (`capsulec schema`; a copy is committed as docs/capsule.schema.json and a test
//! keeps it equal to this output).
//!
//! It describes the policy document, for editors (yaml-language-server, VS Code,
//! JetBrains) to validate and complete `capsule.yaml` and `capsule.json` as they are
//! typed. Draft-07, the draft every editor supports. What it can say, it says like
//! the checker: the keys (E0101), the types (E0102), `version: 1` (E0103, E0104),
//! actions (E0106; no `allow` on a deny rule), targets (E0107), paths (E0108), ports
//! (E0109), durations and sizes (E0110), environment names (E0111), record classes
//! (E0112), `action:` only on deny rules (E0208). What needs the syscall tables
//! (syscall, group, argument and constant names, conditions) is left to
//! `capsulec check`: a document the schema accepts can still have errors, and one the
//! checker accepts always passes the schema (tests check both on every fixture),
//! except for numbers with `_` separators inside `errno(...)`.

use super::shape::{self, Field, Ty};
use serde_json::{Map, Value, json};

const DRAFT: &str = "http://json-schema.org/draft-07/schema#";

/// The schema as a JSON value.
pub fn json_schema() -> Value {
    let mut root = match ty(&shape::DOCUMENT) {
        Value::Object(map) => map,
        _ => unreachable!("the document is a mapping"),
    };
    root.insert("$schema".into(), DRAFT.into());
    root.insert("title".into(), "Capsule policy, version 1 (capsule.yaml or capsule.json)".into());
    root.insert(
        "description".into(),
        "Which system calls a tool may make, which files and ports it may use, its limits, environment and audit \
         log. Reference: docs/policy.md. `capsulec check` checks what a schema cannot (syscall, group, argument \
         and constant names, conditions)."
            .into(),
    );
    root.insert("definitions".into(), definitions());
    Value::Object(root)
}

/// The schema as `capsulec schema` prints it: pretty JSON and a final newline.
pub fn json_schema_string() -> String {
    let mut text = serde_json::to_string_pretty(&json_schema()).expect("a JSON value serialises");
    text.push('\n');
    text
}

/// An errno number the checker takes (0 to 4095) in decimal, hex, octal or binary, or
/// an errno name.
const ERRNO: &str = r"(0*([0-9]{1,3}|[0-3][0-9]{3}|40[0-8][0-9]|409[0-5])|0[xX]0*[0-9a-fA-F]{1,3}|0o0*[0-7]{1,4}|0b0*[01]{1,12}|[A-Z][A-Z0-9]*)";

fn action_pattern(words: &[&str]) -> String {
    format!(r"^\s*({}|errno\(\s*{ERRNO}\s*\))\s*$", words.join("|"))
}

fn definitions() -> Value {
    let deny_words: Vec<&str> = shape::ACTION_WORDS.iter().copied().filter(|w| *w != "allow").collect();
    let action = |words: &[&str], description: &str| {
        let mut completions: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        completions.extend(["errno(EPERM)", "errno(EACCES)", "errno(ENOSYS)"].map(String::from));
        json!({
            "description": description,
            "anyOf": [
                { "enum": completions },
                { "type": "string", "pattern": action_pattern(words) },
            ],
        })
    };
    let rule = |deny: bool| {
        let body_fields: Vec<&Field> = shape::RULE.iter().filter(|f| deny || f.key != "action").collect();
        json!({
            "anyOf": [
                { "type": "string", "description": "A syscall name (read), or a group (\"@basic-io\": quoted in YAML)." },
                {
                    "type": "object",
                    "description": "A syscall with a condition (`socket: domain == AF_UNIX`) or a body.",
                    "minProperties": 1,
                    "maxProperties": 1,
                    "additionalProperties": {
                        "anyOf": [
                            { "type": "null" },
                            { "type": ["string", "number", "boolean"], "description": "A condition on the arguments." },
                            {
                                "type": "object",
                                "additionalProperties": false,
                                "properties": properties(body_fields),
                            },
                        ],
                    },
                },
            ],
        })
    };
    json!({
        "action": action(shape::ACTION_WORDS, "allow, errno(NAME or 0..4095), kill-process, kill-thread, trap or log."),
        "deny-action": action(&deny_words, "errno(NAME or 0..4095), kill-process, kill-thread, trap or log (a deny rule cannot allow)."),
        "rule": rule(false),
        "deny-rule": rule(true),
    })
}

fn properties<'f>(fields: impl IntoIterator<Item = &'f Field>) -> Value {
    let mut map = Map::new();
    for f in fields {
        let mut schema = ty(&f.ty);
        if let Value::Object(obj) = &mut schema {
            obj.insert("description".into(), f.doc.into());
        }
        map.insert(f.key.into(), schema);
    }
    Value::Object(map)
}

fn ty(t: &Ty) -> Value {
    match t {
        Ty::Integer { min, max } if min == max => json!({ "type": "integer", "const": min }),
        Ty::Integer { min, max } => json!({ "type": "integer", "minimum": min, "maximum": max }),
        Ty::Bool => json!({ "type": "boolean" }),
        // The checker reads any scalar as a string (`name: 123` is the name "123").
        Ty::String => json!({ "type": ["string", "number", "boolean"] }),
        Ty::Enum(values) => json!({ "type": "string", "enum": values }),
        Ty::Action { deny: false } => json!({ "$ref": "#/definitions/action" }),
        Ty::Action { deny: true } => json!({ "$ref": "#/definitions/deny-action" }),
        Ty::Path => json!({
            "type": "string",
            "pattern": format!(r"^(?!(.*/)?\.\.(/|$))(/|\$\{{({})\}})", shape::PATH_VARIABLES.join("|")),
        }),
        Ty::PortRule => json!({
            "type": "string",
            "pattern": r"^\s*tcp/0*([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])\s*$",
        }),
        Ty::Duration => json!({
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": r"^\s*[0-9_]*[0-9][0-9_]*\s*(s|m|min|h)?\s*$" },
            ],
        }),
        Ty::Size => json!({
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": r"^\s*[0-9_]*[0-9][0-9_]*\s*(B|KiB|MiB|GiB|TiB|KB|kB|MB|GB|TB)?\s*$" },
            ],
        }),
        Ty::EnvName => json!({ "type": "string", "pattern": ENV_NAME }),
        Ty::EnvMap => json!({
            "type": "object",
            "propertyNames": { "pattern": ENV_NAME },
            "additionalProperties": ty(&Ty::String),
        }),
        Ty::Domain => json!({ "type": "string", "pattern": DOMAIN }),
        Ty::RoutePrefix => {
            json!({ "type": "string", "pattern": r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*[A-Za-z0-9._~!$&'()*+,;=:@%-]$" })
        }
        Ty::Upstream => json!({ "type": "string", "pattern": r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$" }),
        Ty::HeaderMap => json!({
            "type": "object",
            "propertyNames": { "pattern": HEADER_NAME },
            "additionalProperties": { "type": "string" },
        }),
        Ty::List(item) => json!({ "type": "array", "items": ty(item) }),
        Ty::Map { fields, required } => {
            let mut schema = json!({
                "type": "object",
                "additionalProperties": false,
                "properties": properties(fields.iter()),
            });
            if !required.is_empty() {
                schema["required"] = json!(required);
            }
            schema
        }
        Ty::Rules { deny } => json!({
            "type": ["array", "null"],
            "items": { "$ref": if *deny { "#/definitions/deny-rule" } else { "#/definitions/rule" } },
        }),
    }
}

const ENV_NAME: &str = "^[A-Za-z_][A-Za-z0-9_]*$";
const DOMAIN: &str =
    r"^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$";
const HEADER_NAME: &str = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";
