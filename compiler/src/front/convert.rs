//! A policy's JSON form: the same document as the YAML, written as JSON
//! (`capsulec convert --to json`, the Python SDK's `Policy.to_json()`).
//!
//! The output is canonical: one value per line, two-space indentation, keys in
//! source order, a final newline; the same source gives the same bytes. Scalars are
//! typed by the language ([`shape`](super::shape)) rather than by their look, so the
//! JSON means exactly what the YAML meant:
//!
//! - at an integer key (`version`, `processes`, `open-files`, `abi`) a plain scalar
//!   becomes a JSON number in decimal (`0x10` → `16`, `1_000` → `1000`);
//! - at `landlock: scope:`, plain `true`/`True`/`TRUE` and the `false` spellings
//!   become `true` and `false`;
//! - at `cpu`, `memory` and `file-size`, a plain decimal integer becomes a number, any
//!   other value (`5m`, `2GiB`) a string;
//! - a plain null (`~`, `null`, nothing) is `null` everywhere;
//! - every other scalar is a string with the same text (`name: 123` → `"123"`,
//!   `name: true` → `"true"`), as the checker reads it.
//!
//! Under keys the language does not have (only in a policy with errors) a plain
//! scalar that is a JSON number or `true`/`false` keeps that type. Reading the JSON
//! back gives the same policy: the tests check every fixture, down to byte-identical
//! filters.

use super::shape::{self, Field, Ty};
use super::yaml::{Node, NodeKind, Scalar, is_null};
use super::{Format, check_source, decode, document};
use crate::diagnostic::{Code, Diagnostic};

/// The JSON form of a policy that checks without errors. A policy with errors gives
/// its diagnostics (every one, warnings too), pointing into `src`.
pub fn to_json(src: &str, format: Format) -> Result<String, Vec<Diagnostic>> {
    let checked = check_source(src, format);
    if checked.has_errors() {
        return Err(checked.diagnostics);
    }
    document_to_json(src, format).map_err(|d| vec![*d])
}

/// [`to_json`] for raw bytes (the size limit and UTF-8 are checked first).
pub fn to_json_bytes(bytes: &[u8], format: Format) -> Result<String, Vec<Diagnostic>> {
    to_json(decode(bytes).map_err(|d| vec![*d])?, format)
}

/// The JSON form of any policy whose document parses, errors in the policy or not:
/// an unknown key or a value of the wrong type is carried over as it is, so checking
/// the JSON reports the same problem. Fails only when the document itself does not
/// parse (E0001 to E0010: syntax, aliases, tags, several documents, duplicate keys,
/// nesting, an empty file).
pub fn document_to_json(src: &str, format: Format) -> Result<String, Box<Diagnostic>> {
    let Some(root) = document(src, format)? else {
        return Err(Box::new(Diagnostic::new(Code::EmptyPolicy, 0..0, "the policy is empty").label("nothing here")));
    };
    let mut out = String::new();
    write(&mut out, &root, Pos::Ty(&shape::DOCUMENT), 0);
    out.push('\n');
    Ok(out)
}

/// What the language expects at a place in the document.
#[derive(Clone, Copy)]
enum Pos {
    Ty(&'static Ty),
    /// An item of a rule list: `read` or `name: BODY`.
    RuleItem,
    /// A rule's body: a condition, or `{ when:, action: }`.
    RuleBody,
    /// Under a key the language does not have, or inside a value of the wrong kind.
    Unknown,
}

fn write(out: &mut String, node: &Node, pos: Pos, depth: usize) {
    match &node.kind {
        NodeKind::Scalar(s) => out.push_str(&scalar(s, pos)),
        NodeKind::Seq(items) => {
            let item_pos = match pos {
                Pos::Ty(Ty::List(item)) => Pos::Ty(item),
                Pos::Ty(Ty::Rules { .. }) => Pos::RuleItem,
                _ => Pos::Unknown,
            };
            collection(out, ('[', ']'), depth, items.iter().map(|item| (None, item, item_pos)));
        }
        NodeKind::Map(entries) => {
            let fields: Option<&'static [Field]> = match pos {
                Pos::Ty(Ty::Map { fields, .. }) => Some(fields),
                Pos::RuleBody => Some(shape::RULE),
                _ => None,
            };
            let value_pos = |key: &str| match (pos, fields) {
                (_, Some(fields)) => shape::field(fields, key).map_or(Pos::Unknown, |f| Pos::Ty(&f.ty)),
                (Pos::Ty(Ty::EnvMap | Ty::HeaderMap), None) => Pos::Ty(&Ty::String),
                (Pos::RuleItem, None) => Pos::RuleBody,
                _ => Pos::Unknown,
            };
            collection(
                out,
                ('{', '}'),
                depth,
                entries.iter().map(|(k, v)| {
                    let key = super::parse::key_name(k);
                    (Some(key), v, value_pos(key))
                }),
            );
        }
    }
}

fn collection<'n>(
    out: &mut String,
    (open, close): (char, char),
    depth: usize,
    items: impl ExactSizeIterator<Item = (Option<&'n str>, &'n Node, Pos)>,
) {
    out.push(open);
    if items.len() == 0 {
        out.push(close);
        return;
    }
    let last = items.len() - 1;
    for (i, (key, value, pos)) in items.enumerate() {
        out.push('\n');
        indent(out, depth + 1);
        if let Some(key) = key {
            out.push_str(&string(key));
            out.push_str(": ");
        }
        write(out, value, pos, depth + 1);
        if i != last {
            out.push(',');
        }
    }
    out.push('\n');
    indent(out, depth);
    out.push(close);
}

fn indent(out: &mut String, depth: usize) {
    out.extend(std::iter::repeat_n("  ", depth));
}

fn string(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

/// A scalar as JSON, typed by where it is.
fn scalar(s: &Scalar, pos: Pos) -> String {
    let text = s.value.as_str();
    if !s.plain {
        return string(text);
    }
    if is_null(text) {
        return "null".into();
    }
    match pos {
        Pos::Ty(Ty::Integer { .. }) => match super::parse::parse_u64(text) {
            Some(v) => v.to_string(),
            // Not an integer the checker takes: keep the text where JSON can (a number
            // out of range stays a number, and the checker says so on both forms).
            None if is_json_number(text) => text.into(),
            None => string(text),
        },
        Pos::Ty(Ty::Bool) => match text {
            "true" | "True" | "TRUE" => "true".into(),
            "false" | "False" | "FALSE" => "false".into(),
            _ => string(text),
        },
        Pos::Ty(Ty::Duration | Ty::Size) if is_decimal(text) => text.into(),
        Pos::Unknown if is_json_number(text) || text == "true" || text == "false" => text.into(),
        _ => string(text),
    }
}

/// A policy written as block-style YAML (`capsulec convert --to yaml`), from either
/// form: two-space indentation, keys in source order, strings plain where YAML reads
/// them back as the same string and double-quoted otherwise (`"@basic-io"`, `"1"` where
/// it was a string, anything with `: ` or ` #`). A policy with errors gives its
/// diagnostics. The result is checked before it is returned: its JSON form must equal
/// the source's, so it means the same policy.
pub fn to_yaml(src: &str, format: Format) -> Result<String, Vec<Diagnostic>> {
    let checked = check_source(src, format);
    if checked.has_errors() {
        return Err(checked.diagnostics);
    }
    document_to_yaml(src, format).map_err(|d| vec![*d])
}

/// [`to_yaml`] for raw bytes (the size limit and UTF-8 are checked first).
pub fn to_yaml_bytes(bytes: &[u8], format: Format) -> Result<String, Vec<Diagnostic>> {
    to_yaml(decode(bytes).map_err(|d| vec![*d])?, format)
}

/// The YAML of any policy whose document parses (as [`document_to_json`]).
pub fn document_to_yaml(src: &str, format: Format) -> Result<String, Box<Diagnostic>> {
    let Some(root) = document(src, format)? else {
        return Err(Box::new(Diagnostic::new(Code::EmptyPolicy, 0..0, "the policy is empty").label("nothing here")));
    };
    let mut out = String::new();
    match &root.kind {
        NodeKind::Map(entries) if !entries.is_empty() => yaml_map(&mut out, entries, 0, false),
        NodeKind::Seq(items) if !items.is_empty() => yaml_seq(&mut out, items, 0, false),
        _ => {
            yaml_inline(&mut out, &root);
            out.push('\n');
        }
    }
    // The emitter's promise, checked: the YAML is the same document.
    let same = document_to_json(&out, Format::Yaml).ok() == Some(document_to_json(src, format)?);
    if !same {
        return Err(Box::new(
            Diagnostic::new(Code::YamlSyntax, root.span.clone(), "this policy cannot be written as YAML faithfully")
                .label("converting this")
                .help("please report it; the JSON form (`--to json`) is exact"),
        ));
    }
    Ok(out)
}

fn yaml_map(out: &mut String, entries: &[(Node, Node)], indent: usize, mut inline_first: bool) {
    for (key, value) in entries {
        if !inline_first {
            out.extend(std::iter::repeat_n(' ', indent));
        }
        inline_first = false;
        let mut text = String::new();
        yaml_inline(&mut text, key);
        // YAML limits an implicit key to 1024 characters; a longer one (only in a policy
        // with errors) is written as an explicit `? KEY` with `:` on the next line.
        if text.chars().count() > MAX_IMPLICIT_KEY {
            out.push_str("? ");
            out.push_str(&text);
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', indent));
        } else {
            out.push_str(&text);
        }
        out.push(':');
        yaml_value(out, value, indent);
    }
}

/// The longest implicit key YAML allows, in characters.
const MAX_IMPLICIT_KEY: usize = 1024;

fn yaml_seq(out: &mut String, items: &[Node], indent: usize, mut inline_first: bool) {
    for item in items {
        if !inline_first {
            out.extend(std::iter::repeat_n(' ', indent));
        }
        inline_first = false;
        out.push_str("- ");
        match &item.kind {
            NodeKind::Map(entries) if !entries.is_empty() => yaml_map(out, entries, indent + 2, true),
            NodeKind::Seq(inner) if !inner.is_empty() => yaml_seq(out, inner, indent + 2, true),
            _ => {
                yaml_inline(out, item);
                out.push('\n');
            }
        }
    }
}

/// After `key:`: a scalar or empty collection on the same line, else the block below.
fn yaml_value(out: &mut String, value: &Node, indent: usize) {
    match &value.kind {
        NodeKind::Map(entries) if !entries.is_empty() => {
            out.push('\n');
            yaml_map(out, entries, indent + 2, false);
        }
        NodeKind::Seq(items) if !items.is_empty() => {
            out.push('\n');
            yaml_seq(out, items, indent + 2, false);
        }
        NodeKind::Scalar(s) if s.plain && is_null(&s.value) => out.push('\n'),
        _ => {
            out.push(' ');
            yaml_inline(out, value);
            out.push('\n');
        }
    }
}

fn yaml_inline(out: &mut String, node: &Node) {
    match &node.kind {
        NodeKind::Map(_) => out.push_str("{}"),
        NodeKind::Seq(_) => out.push_str("[]"),
        // A plain scalar's text is its meaning (a number, a boolean, null, or text the
        // checker reads as it reads a string): kept plain when YAML reads it back alike.
        NodeKind::Scalar(s) if s.plain && is_null(&s.value) => out.push_str("null"),
        NodeKind::Scalar(s) if s.plain && plain_safe(&s.value) => out.push_str(&s.value),
        // A string: plain only when it cannot be read as anything but that string.
        NodeKind::Scalar(s) if !s.plain && plain_safe(&s.value) && !looks_typed(&s.value) => out.push_str(&s.value),
        NodeKind::Scalar(s) => double_quoted(out, &s.value),
    }
}

/// Text that YAML reads back, unquoted in block context, as exactly this string.
fn plain_safe(text: &str) -> bool {
    let mut chars = text.chars();
    let Some(first) = chars.next() else { return false };
    // `-`, `?` and `:` may start a plain scalar when a non-space follows (`-11`).
    let first_ok = match first {
        '-' | '?' | ':' => chars.next().is_some_and(|c| !c.is_whitespace()),
        c => !",[]{}#&*!|>'\"%@`".contains(c),
    };
    first_ok
        // `---` and `...` at the start of a line are document markers.
        && !text.starts_with("---")
        && !text.starts_with("...")
        && !first.is_whitespace()
        && !text.ends_with(char::is_whitespace)
        && !text.ends_with(':')
        && !text.contains(": ")
        && !text.contains(" #")
        && text.chars().all(|c| c == ' ' || (!c.is_control() && !c.is_whitespace() && c != '\u{feff}'))
}

/// Text that a YAML reader (1.2 core, or 1.1's yes/no/on/off) or the checker would
/// read as something other than a string when unquoted.
fn looks_typed(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    is_null(text)
        || matches!(
            lower.as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | ".inf" | "-.inf" | "+.inf" | ".nan"
        )
        || super::parse::parse_u64(text).is_some()
        || is_json_number(text)
        || text.trim_start_matches(['-', '+']).starts_with(|c: char| c.is_ascii_digit() || c == '.')
            && text.parse::<f64>().is_ok()
}

/// A YAML double-quoted scalar: every character outside YAML's printable set escaped.
fn double_quoted(out: &mut String, text: &str) {
    use std::fmt::Write;
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || matches!(c, '\u{feff}' | '\u{fffe}' | '\u{ffff}') => {
                write!(out, "\\u{:04x}", c as u32).expect("writing to a String")
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `0` or a decimal integer without a leading zero: the same text in YAML and JSON.
fn is_decimal(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && (text == "0" || !text.starts_with('0'))
}

/// RFC 8259's number grammar: `-? int frac? exp?`.
fn is_json_number(text: &str) -> bool {
    let rest = text.strip_prefix('-').unwrap_or(text);
    let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
    let int = digits(rest);
    if int == 0 || (int > 1 && rest.starts_with('0')) {
        return false;
    }
    let mut rest = &rest[int..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = digits(frac);
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    if let Some(exp) = rest.strip_prefix(['e', 'E']) {
        let exp = exp.strip_prefix(['+', '-']).unwrap_or(exp);
        let n = digits(exp);
        if n == 0 {
            return false;
        }
        rest = &exp[n..];
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(yaml: &str) -> String {
        document_to_json(yaml, Format::Yaml).unwrap()
    }

    #[test]
    fn the_output_is_pretty_in_source_order_with_a_final_newline() {
        let out = json("version: 1\nname: x\ntargets: [macos]\nenv: {}\nsyscalls: { allow: [] }\n");
        assert_eq!(
            out,
            "{\n  \"version\": 1,\n  \"name\": \"x\",\n  \"targets\": [\n    \"macos\"\n  ],\n  \"env\": {},\n  \"syscalls\": {\n    \"allow\": []\n  }\n}\n"
        );
    }

    #[test]
    fn scalars_are_typed_by_the_language_not_by_their_look() {
        let out = json(
            "version: 0x1\nname: 123\ndescription: true\nlimits: { processes: 1_000, open-files: 0o17, cpu: 60, memory: 0x10, file-size: 2GiB }\n\
             landlock: { scope: True, abi: 0b100 }\nenv: { set: { A: 1, B: false, C: ~ } }\n\
             syscalls: { allow: [read, { socket: domain == 1 }], deny: [{ ptrace: { action: log, when: 1 } }, { kill: ~ }] }\n",
        );
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        let expected = serde_json::json!({
            "version": 1, "name": "123", "description": "true",
            "limits": { "processes": 1000, "open-files": 15, "cpu": 60, "memory": "0x10", "file-size": "2GiB" },
            "landlock": { "scope": true, "abi": 4 },
            "env": { "set": { "A": "1", "B": "false", "C": null } },
            "syscalls": {
                "allow": ["read", { "socket": "domain == 1" }],
                "deny": [{ "ptrace": { "action": "log", "when": "1" } }, { "kill": null }]
            }
        });
        assert_eq!(value, expected);
    }

    #[test]
    fn unknown_keys_and_wrong_kinds_are_carried_over() {
        let out = json("version: \"1\"\nnope: [1, -2.5e3, true, x, 0x10]\nlimits: [cpu]\n");
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            value,
            serde_json::json!({ "version": "1", "nope": [1, -2.5e3, true, "x", "0x10"], "limits": ["cpu"] })
        );
    }

    #[test]
    fn strings_are_escaped_and_keep_unicode() {
        let out = json("version: 1\ndescription: \"tab\\there \\\"q\\\" é 😀 \\u0001\"\n");
        assert!(out.contains(r#""description": "tab\there \"q\" é 😀 \u0001""#), "{out}");
    }

    #[test]
    fn to_json_refuses_a_policy_with_errors_and_converts_json_too() {
        let errs = to_json("version: 1\nnope: 1\n", Format::Yaml).unwrap_err();
        assert_eq!(errs[0].code, Code::UnknownKey);
        let from_yaml = to_json("version: 1\ntargets: [macos]\n", Format::Yaml).unwrap();
        assert_eq!(to_json(&from_yaml, Format::Json).unwrap(), from_yaml);
        assert_eq!(to_json_bytes(b"\xff", Format::Json).unwrap_err()[0].code, Code::NotUtf8);
        assert_eq!(document_to_json("", Format::Yaml).unwrap_err().code, Code::EmptyPolicy);
        assert_eq!(document_to_json("a: *x", Format::Yaml).unwrap_err().code, Code::YamlAlias);
    }

    #[test]
    fn yaml_is_block_style_quoted_only_where_needed() {
        let src = r#"{"version": 1, "name": "1", "description": "a: b", "targets": [],
            "syscalls": {"allow": ["read", "@basic-io", {"socket": "domain in [AF_UNIX, AF_INET]"}, {"kill": null}],
                         "deny": [{"ptrace": {"action": "errno(EPERM)", "when": "!(request == 1)"}}]},
            "env": {"set": {"A": "yes", "B": "x\u007fy\n", "C": "${HOME}/x"}}, "filesystem": {}}"#;
        let yaml = document_to_yaml(src, Format::Json).unwrap();
        assert_eq!(
            yaml,
            "version: 1\nname: \"1\"\ndescription: \"a: b\"\ntargets: []\nsyscalls:\n  allow:\n    - read\n    - \"@basic-io\"\n    - socket: domain in [AF_UNIX, AF_INET]\n    - kill:\n  deny:\n    - ptrace:\n        action: errno(EPERM)\n        when: \"!(request == 1)\"\nenv:\n  set:\n    A: \"yes\"\n    B: \"x\\u007fy\\n\"\n    C: ${HOME}/x\nfilesystem: {}\n"
        );
        assert_eq!(document_to_json(&yaml, Format::Yaml).unwrap(), document_to_json(src, Format::Json).unwrap());
        // A root that is not a mapping is written as a block too.
        assert_eq!(document_to_yaml("[1, \"a\", []]", Format::Json).unwrap(), "- 1\n- a\n- []\n");
    }

    /// Found by the `convert` fuzz target: a negative number under an unknown key came
    /// back quoted, a string.
    #[test]
    fn plain_scalars_may_start_with_a_dash_followed_by_a_non_space() {
        let src = "version&: -11\nx: -.5e3\ny: \"-a\"\nz: \"- a\"\n";
        let yaml = document_to_yaml(src, Format::Yaml).unwrap();
        assert_eq!(yaml, "version&: -11\nx: -.5e3\ny: -a\nz: \"- a\"\n");
        // `---` and `...` at the start of a line end or start a document: quoted.
        let src = "--- ---  ..\n";
        assert_eq!(document_to_yaml(src, Format::Yaml).unwrap(), "\"---  ..\"\n");
        let src = "{\"---\": \"...\", \"a\": [\"---\"]}";
        assert_eq!(document_to_yaml(src, Format::Json).unwrap(), "\"---\": \"...\"\na:\n  - \"---\"\n");
    }

    /// Found by the `convert` fuzz target: a key longer than YAML's 1024-character
    /// limit for implicit keys.
    #[test]
    fn a_key_too_long_for_yaml_is_written_as_an_explicit_key() {
        // Two hundred DEL characters: escaped, the key is over 1,200 characters.
        let long = format!("k{}", "\u{7f}".repeat(200));
        let src = format!("{{\"version\": 1, \"{long}\": \"yes\", \"limits\": {{\"{long}\": [1]}}}}");
        let yaml = document_to_yaml(&src, Format::Json).unwrap();
        assert!(yaml.contains("\n? \"k\\u007f") && yaml.contains("\n  ? \"k"), "{yaml}");
        assert_eq!(document_to_json(&yaml, Format::Yaml).unwrap(), document_to_json(&src, Format::Json).unwrap());
    }

    #[test]
    fn json_numbers() {
        for ok in ["0", "-0", "1", "-12", "1.5", "1e3", "1E+3", "-1.25e-3", "123456789012345678901234567890"] {
            assert!(is_json_number(ok), "{ok}");
        }
        for bad in ["", "-", "01", "1.", ".5", "1e", "0x10", "1_000", "+1", "1.5.2", "NaN", "inf"] {
            assert!(!is_json_number(bad), "{bad}");
        }
    }
}
