//! Profile → SBPL text. One rule per line, or one filter per line when a rule has
//! several; strings escaped so that the reader gets back exactly the string written.

use super::ast::{Filter, Profile, Rule, Str, Verdict};
use std::fmt::Write;

/// A string literal as SBPL's reader (TinyScheme) reads it: `"` and `\` escaped,
/// newline, carriage return and tab as `\n`, `\r`, `\t`, other control characters as
/// `\xHH`, everything else (UTF-8 included) as is. NUL cannot be represented (the
/// sandbox would cut the string there); the mapping refuses it before emitting.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Every character a POSIX extended regular expression gives a meaning to, escaped, so
/// that `^` + `regex_literal(path)` + `$` matches `path` and nothing else.
pub fn regex_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.^$|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn str_expr(s: &Str) -> String {
    match s {
        Str::Lit(l) => quote(l),
        Str::Param(p) => format!("(param {})", quote(p)),
        Str::Append(parts) => {
            let inner: Vec<String> = parts.iter().map(str_expr).collect();
            format!("(string-append {})", inner.join(" "))
        }
    }
}

pub fn filter(f: &Filter) -> String {
    let list = |name: &str, fs: &[Filter]| {
        let inner: Vec<String> = fs.iter().map(filter).collect();
        format!("({name} {})", inner.join(" "))
    };
    match f {
        Filter::Literal(s) => format!("(literal {})", str_expr(s)),
        Filter::Subpath(s) => format!("(subpath {})", str_expr(s)),
        Filter::Prefix(s) => format!("(prefix {})", str_expr(s)),
        Filter::Regex(r) => format!("(regex {})", quote(r)),
        Filter::RequireAll(fs) => list("require-all", fs),
        Filter::RequireAny(fs) => list("require-any", fs),
        Filter::RequireNot(f) => format!("(require-not {})", filter(f)),
        Filter::Remote(p, a) | Filter::Local(p, a) => {
            let side = if matches!(f, Filter::Remote(..)) { "remote" } else { "local" };
            match a {
                Some(a) => format!("({side} {} {})", p.name(), str_expr(a)),
                None => format!("({side} {})", p.name()),
            }
        }
        Filter::GlobalName(n) => format!("(global-name {})", quote(n)),
        Filter::SysctlName(n) => format!("(sysctl-name {})", quote(n)),
        Filter::Target(t) => format!("(target {})", t.name()),
        Filter::SocketDomain(d) => format!("(socket-domain {})", d.name()),
    }
}

/// One rule's text, its comment lines first, with a final newline.
pub fn rule_text(r: &Rule) -> String {
    let mut out = String::new();
    rule(&mut out, r);
    out
}

fn rule(out: &mut String, r: &Rule) {
    for line in &r.comment {
        // Comments are the compiler's own text; a newline in one would end it early.
        let _ = writeln!(out, "; {}", line.replace('\n', " "));
    }
    let verdict = match r.verdict {
        Verdict::Allow => "allow",
        Verdict::Deny => "deny",
    };
    let mut head = format!("({verdict}");
    for op in &r.operations {
        head.push(' ');
        head.push_str(op.name());
    }
    if let Some(m) = &r.message {
        let _ = write!(head, " (with message {})", quote(m));
    }
    match r.filters.as_slice() {
        [] => {
            let _ = writeln!(out, "{head})");
        }
        [one] => {
            let _ = writeln!(out, "{head} {})", filter(one));
        }
        many => {
            out.push_str(&head);
            for f in many {
                let _ = write!(out, "\n    {}", filter(f));
            }
            out.push_str(")\n");
        }
    }
}

/// The profile's text.
pub fn emit(p: &Profile) -> String {
    let mut out = String::from("(version 1)\n");
    match &p.default_message {
        Some(m) => {
            let _ = writeln!(out, "(deny default (with message {}))", quote(m));
        }
        None => out.push_str("(deny default)\n"),
    }
    for r in &p.rules {
        out.push('\n');
        rule(&mut out, r);
    }
    out
}
