//! `capsulec diff OLD NEW`: what a reviewer needs to see in a pull request that
//! changes a policy: syscalls newly allowed or denied, conditions changed, and
//! changes to files, network, limits, environment and audit, per target.
//!
//! Syscalls are compared on the optimised IR (rules normalised and merged), so two
//! spellings of the same rule are no difference.

use crate::ir::{Action, Cond, Policy, RuleKind, SyscallRules};
use crate::tables;
use capsule_artifacts::Target;
use serde::Serialize;
use std::collections::BTreeSet;

#[derive(Debug, Default, Serialize)]
pub struct PolicyDiff {
    /// `default`, `newer-syscalls`, `foreign-arch`, `targets`.
    pub settings: Vec<Change>,
    pub targets: Vec<TargetDiff>,
    /// Filesystem, network, limits, env, audit and Landlock settings.
    pub launch: Vec<Change>,
    /// The macOS profile (macos.sb), one line per rule and filter, when either policy
    /// targets macOS.
    pub macos: Option<MacosDiff>,
}

#[derive(Debug, Default, Serialize)]
pub struct MacosDiff {
    /// `(allow OPERATIONS FILTER)` lines only the new profile has.
    pub added: Vec<String>,
    /// Lines only the old profile has.
    pub removed: Vec<String>,
}

impl MacosDiff {
    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// The macOS profile of a policy as a set of one-filter rule lines; an error (a path
/// SBPL cannot express) is a line of its own, so it shows in the diff.
fn macos_lines(policy: &Policy) -> BTreeSet<String> {
    use crate::back::sbpl::{emit, map};
    if !policy.targets.contains(&Target::Macos) {
        return BTreeSet::new();
    }
    let facts = map::SyscallFacts::of(policy);
    match map::profile(policy, &facts) {
        Err(e) => BTreeSet::from([format!("(macos.sb cannot be built: {e})")]),
        Ok(profile) => {
            let mut lines = BTreeSet::new();
            for r in &profile.rules {
                let head = emit::rule_text(&crate::back::sbpl::ast::Rule {
                    comment: Vec::new(),
                    filters: Vec::new(),
                    ..r.clone()
                });
                let head = head.trim_end().trim_end_matches(')');
                if r.filters.is_empty() {
                    lines.insert(format!("{head})"));
                }
                for f in &r.filters {
                    lines.insert(format!("{head} {})", emit::filter(f)));
                }
            }
            lines
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Change {
    pub what: String,
    pub old: String,
    pub new: String,
}

#[derive(Debug, Serialize)]
pub struct TargetDiff {
    pub target: Target,
    pub newly_allowed: Vec<String>,
    pub newly_denied: Vec<String>,
    /// Syscalls whose rules changed in any other way (conditions, actions, auditing).
    pub changed: Vec<SyscallChange>,
}

#[derive(Debug, Serialize)]
pub struct SyscallChange {
    pub name: String,
    pub nr: u32,
    pub old: Vec<String>,
    pub new: Vec<String>,
}

impl PolicyDiff {
    pub fn is_empty(&self) -> bool {
        self.settings.is_empty()
            && self.launch.is_empty()
            && self.targets.iter().all(TargetDiff::is_empty)
            && self.macos.as_ref().is_none_or(MacosDiff::is_empty)
    }
}

impl TargetDiff {
    fn is_empty(&self) -> bool {
        self.newly_allowed.is_empty() && self.newly_denied.is_empty() && self.changed.is_empty()
    }
}

/// Compare two optimised policies.
pub fn diff(old: &Policy, new: &Policy) -> PolicyDiff {
    let mut out = PolicyDiff::default();
    let mut setting = |what: &str, o: String, n: String| {
        if o != n {
            out.settings.push(Change { what: what.to_owned(), old: o, new: n });
        }
    };
    setting("default", old.default.to_string(), new.default.to_string());
    setting("newer-syscalls", old.newer_syscalls.to_string(), new.newer_syscalls.to_string());
    setting("foreign-arch", old.foreign_arch.to_string(), new.foreign_arch.to_string());
    let names = |p: &Policy| p.targets.iter().map(|t| t.name()).collect::<Vec<_>>().join(" ");
    setting("targets", names(old), names(new));

    for target in Target::LINUX {
        let (Some(o), Some(n)) = (old.syscalls_for(target), new.syscalls_for(target)) else { continue };
        let table = tables::table(target);
        let mut d = TargetDiff { target, newly_allowed: Vec::new(), newly_denied: Vec::new(), changed: Vec::new() };
        for def in table.syscalls {
            let (ro, rn) = (o.syscalls.get(&def.nr), n.syscalls.get(&def.nr));
            let (lo, ln) = (rule_lines(ro, old.default), rule_lines(rn, new.default));
            if lo == ln {
                continue;
            }
            match (unconditional(ro, old.default), unconditional(rn, new.default)) {
                (Some(a), Some(b)) if !a.lets_call_run() && b.lets_call_run() => {
                    d.newly_allowed.push(def.name().to_owned())
                }
                (Some(a), Some(b)) if a.lets_call_run() && !b.lets_call_run() => {
                    d.newly_denied.push(def.name().to_owned())
                }
                _ => d.changed.push(SyscallChange { name: def.name().to_owned(), nr: def.nr, old: lo, new: ln }),
            }
        }
        out.targets.push(d);
    }
    out.launch = launch_changes(old, new);
    if old.targets.contains(&Target::Macos) || new.targets.contains(&Target::Macos) {
        let (o, n) = (macos_lines(old), macos_lines(new));
        out.macos = Some(MacosDiff {
            added: n.difference(&o).cloned().collect(),
            removed: o.difference(&n).cloned().collect(),
        });
    }
    out
}

/// The syscall's decision when it does not depend on the arguments.
fn unconditional(rules: Option<&SyscallRules>, default: Action) -> Option<Action> {
    let Some(rules) = rules else { return Some(default) };
    if rules.rules.iter().any(|r| r.cond != Cond::True) {
        return None;
    }
    let args = [0u64; 6];
    let decided = crate::ir::decide_rules(&rules.rules, &args);
    match decided {
        Some(d) if d.audited => None,
        Some(d) => Some(d.action),
        None => Some(default),
    }
}

fn rule_lines(rules: Option<&SyscallRules>, default: Action) -> Vec<String> {
    let Some(rules) = rules else { return vec![format!("(no rule: default {default})")] };
    let mut lines: Vec<String> = rules
        .rules
        .iter()
        .map(|r| match (&r.kind, &r.cond) {
            (kind, Cond::True) => kind.to_string(),
            (kind, cond) => format!("{kind} if {cond}"),
        })
        .collect();
    if rules.rules.iter().all(|r| r.cond != Cond::True || matches!(r.kind, RuleKind::Audit)) {
        lines.push(format!("otherwise default {default}"));
    }
    lines
}

fn launch_changes(old: &Policy, new: &Policy) -> Vec<Change> {
    let (o, n) =
        (serde_json::to_value(&old.launch).unwrap_or_default(), serde_json::to_value(&new.launch).unwrap_or_default());
    let mut changes = Vec::new();
    walk("", &o, &n, &mut changes);
    changes
}

/// Field by field; lists of strings are compared as sets so the change reads as
/// "added" and "removed".
fn walk(path: &str, o: &serde_json::Value, n: &serde_json::Value, out: &mut Vec<Change>) {
    use serde_json::Value;
    match (o, n) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let sub = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                walk(&sub, a.get(k).unwrap_or(&Value::Null), b.get(k).unwrap_or(&Value::Null), out);
            }
        }
        // Routes by prefix: a changed upstream reads as one change, not a whole route
        // removed and another added.
        (Value::Array(a), Value::Array(b)) if a != b && path.ends_with("routes") => {
            let by_prefix = |v: &Vec<Value>| -> std::collections::BTreeMap<String, Value> {
                v.iter().filter_map(|r| Some((r.get("prefix")?.as_str()?.to_owned(), r.clone()))).collect()
            };
            let (ma, mb) = (by_prefix(a), by_prefix(b));
            let prefixes: BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
            for p in prefixes {
                let sub = format!("{path}[{p}]");
                walk(&sub, ma.get(p).unwrap_or(&Value::Null), mb.get(p).unwrap_or(&Value::Null), out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a != b => {
            let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            let sa: BTreeSet<String> = a.iter().map(text).collect();
            let sb: BTreeSet<String> = b.iter().map(text).collect();
            let removed: Vec<String> = sa.difference(&sb).cloned().collect();
            let added: Vec<String> = sb.difference(&sa).cloned().collect();
            out.push(Change {
                what: path.to_owned(),
                old: format!("removed: {}", removed.join(", ")),
                new: format!("added: {}", added.join(", ")),
            });
        }
        (a, b) if a != b => out.push(Change { what: path.to_owned(), old: a.to_string(), new: b.to_string() }),
        _ => {}
    }
}

/// The diff as text for a pull request comment.
pub fn render(d: &PolicyDiff) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if d.is_empty() {
        s.push_str("no differences\n");
        return s;
    }
    for c in &d.settings {
        let _ = writeln!(s, "{}: {} -> {}", c.what, c.old, c.new);
    }
    for t in d.targets.iter().filter(|t| !t.is_empty()) {
        let _ = writeln!(s, "{}:", t.target);
        if !t.newly_allowed.is_empty() {
            let _ = writeln!(s, "  newly allowed: {}", t.newly_allowed.join(" "));
        }
        if !t.newly_denied.is_empty() {
            let _ = writeln!(s, "  newly denied: {}", t.newly_denied.join(" "));
        }
        for c in &t.changed {
            let _ = writeln!(s, "  changed {} ({}):", c.name, c.nr);
            for l in &c.old {
                let _ = writeln!(s, "    - {l}");
            }
            for l in &c.new {
                let _ = writeln!(s, "    + {l}");
            }
        }
    }
    for c in &d.launch {
        let _ = writeln!(s, "{}: {} -> {}", c.what, c.old, c.new);
    }
    if let Some(m) = d.macos.as_ref().filter(|m| !m.is_empty()) {
        let _ = writeln!(s, "macos (macos.sb):");
        for l in &m.removed {
            let _ = writeln!(s, "  - {l}");
        }
        for l in &m.added {
            let _ = writeln!(s, "  + {l}");
        }
    }
    s
}
