//! The IR as text, for snapshots, `capsulec explain` and debugging.

use super::*;

fn value(v: u64) -> String {
    if v < 4096 { v.to_string() } else { format!("{v:#x}") }
}

fn values(vs: &[u64]) -> String {
    vs.iter().map(|&v| value(v)).collect::<Vec<_>>().join(", ")
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "arg{}:{}", self.index, self.width.bits())
    }
}

impl fmt::Display for Cond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, items: &[Cond], op: &str| -> fmt::Result {
            f.write_str("(")?;
            for (i, c) in items.iter().enumerate() {
                if i > 0 {
                    write!(f, " {op} ")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str(")")
        };
        match self {
            Cond::True => f.write_str("true"),
            Cond::False => f.write_str("false"),
            Cond::Not(c) => write!(f, "!{c}"),
            Cond::And(cs) => join(f, cs, "&&"),
            Cond::Or(cs) => join(f, cs, "||"),
            Cond::Test { arg, test } => match test {
                Test::Eq(v) => write!(f, "{arg} == {}", value(*v)),
                Test::Ne(v) => write!(f, "{arg} != {}", value(*v)),
                Test::Lt(v) => write!(f, "{arg} < {}", value(*v)),
                Test::Le(v) => write!(f, "{arg} <= {}", value(*v)),
                Test::Gt(v) => write!(f, "{arg} > {}", value(*v)),
                Test::Ge(v) => write!(f, "{arg} >= {}", value(*v)),
                Test::MaskedEq { mask, value: v } => write!(f, "{arg} & {} == {}", value(*mask), value(*v)),
                Test::MaskedNe { mask, value: v } => write!(f, "{arg} & {} != {}", value(*mask), value(*v)),
                Test::In(vs) => write!(f, "{arg} in [{}]", values(vs)),
                Test::NotIn(vs) => write!(f, "{arg} not in [{}]", values(vs)),
            },
        }
    }
}

impl fmt::Display for RuleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleKind::Deny(a) => write!(f, "deny {a}"),
            RuleKind::Audit => f.write_str("audit"),
            RuleKind::Allow => f.write_str("allow"),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "policy {:?}", self.name)?;
        writeln!(f, "  default: {}", self.default)?;
        writeln!(f, "  newer-syscalls: {}", self.newer_syscalls)?;
        writeln!(f, "  foreign-arch: {}", self.foreign_arch)?;
        let targets: Vec<&str> = self.targets.iter().map(|t| t.name()).collect();
        writeln!(f, "  targets: {}", targets.join(" "))?;
        for sp in &self.syscalls {
            writeln!(f, "{}: {} syscalls with rules", sp.target, sp.syscalls.len())?;
            for s in sp.syscalls.values() {
                write!(f, "  {:>4} {}:", s.nr, s.name)?;
                let one_line = s.rules.len() == 1 && s.rules[0].cond == Cond::True;
                for r in &s.rules {
                    if !one_line {
                        write!(f, "\n      ")?;
                    } else {
                        f.write_str(" ")?;
                    }
                    write!(f, "{}", r.kind)?;
                    if r.cond != Cond::True {
                        write!(f, " if {}", r.cond)?;
                    }
                    if let Some(g) = &r.origin.group {
                        write!(f, "  (via @{g})")?;
                    }
                    if let Some(setting) = r.origin.implied_by {
                        write!(f, "  (by {setting})")?;
                    }
                }
                writeln!(f)?;
            }
        }
        let launch = serde_json::to_string_pretty(&self.launch).map_err(|_| fmt::Error)?;
        writeln!(f, "launch: {launch}")
    }
}
