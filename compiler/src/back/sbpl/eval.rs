//! The reference semantics of the SBPL subset: rules in order, the last rule that
//! matches the operation and the object decides, `(deny default)` when none does.
//! An operation family (`file-read*`) matches every operation whose name starts with
//! its prefix. Several filters in one rule are alternatives.
//!
//! Paths are compared as the kernel reports them to the sandbox: resolved (symlinks
//! followed: `/private/tmp`, never `/tmp`). Anything the evaluator cannot decide
//! exactly (an unbound parameter, an address form or regular expression outside the
//! subset) is an error, never a guess.

use super::ast::{Filter, Operation, Profile, Proto, SocketDomain, Str, TargetKind, Verdict};

/// The values of the three parameters for one evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bindings {
    pub workspace: String,
    pub home: String,
    pub tmpdir: String,
    /// The proxy's port (`PROXY_PORT`), as the launcher passes it.
    pub proxy_port: String,
}

impl Bindings {
    fn get(&self, name: &str) -> Option<&str> {
        match name {
            "WORKSPACE" => Some(&self.workspace),
            "HOME" => Some(&self.home),
            "TMPDIR" => Some(&self.tmpdir),
            "PROXY_PORT" => Some(&self.proxy_port),
            _ => None,
        }
    }
}

/// What an operation acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// No object (`process-fork`).
    None,
    /// A file, by its resolved path.
    Path(String),
    /// A socket address: `network-outbound` names the remote side, `network-bind` and
    /// `network-inbound` the local one.
    Net {
        proto: Proto,
        remote: bool,
        host: String,
        port: u16,
    },
    /// A UNIX socket by its path (`network-outbound` to it).
    UnixSocket {
        remote: bool,
        path: String,
    },
    /// A Mach service (`mach-lookup`).
    Service(String),
    Sysctl(String),
    /// The process a `signal` or `process-info*` is aimed at.
    Process(TargetKind),
    /// The domain of a socket being created (`system-socket`).
    Socket(SocketDomain),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    /// The index of the deciding rule in `Profile::rules`; `None` for the default.
    pub rule: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("the operation to evaluate must be a single operation, not the family `{0}`")]
    Family(&'static str),
    #[error("address `{0}` is not HOST:PORT with HOST `*` or `localhost` and PORT `*` or a number")]
    Address(String),
    #[error("regular expression `{0}` is outside what the evaluator reads: {1}")]
    Regex(String, &'static str),
}

/// The decision of `profile` for `op` on `object`.
pub fn evaluate(profile: &Profile, bindings: &Bindings, op: Operation, object: &Object) -> Result<Outcome, EvalError> {
    if op.name().ends_with('*') {
        return Err(EvalError::Family(op.name()));
    }
    let mut outcome = Outcome { verdict: Verdict::Deny, rule: None };
    for (i, rule) in profile.rules.iter().enumerate() {
        if !rule.operations.iter().any(|o| o.covers(op)) {
            continue;
        }
        let mut matched = rule.filters.is_empty();
        for f in &rule.filters {
            // Every filter is evaluated, so an error anywhere is reported.
            matched |= matches(f, bindings, object)?;
        }
        if matched {
            outcome = Outcome { verdict: rule.verdict, rule: Some(i) };
        }
    }
    Ok(outcome)
}

fn resolve(s: &Str, b: &Bindings) -> String {
    match s {
        Str::Lit(l) => l.clone(),
        Str::Param(p) => b.get(p).unwrap_or_default().to_owned(),
        Str::Append(parts) => parts.iter().map(|p| resolve(p, b)).collect(),
    }
}

fn path_of(object: &Object) -> Option<&str> {
    match object {
        Object::Path(p) | Object::UnixSocket { path: p, .. } => Some(p),
        _ => None,
    }
}

/// `path` is `base` or lies beneath it, by whole components.
pub fn is_subpath(path: &str, base: &str) -> bool {
    let base = base.trim_end_matches('/');
    path == base || base.is_empty() || path.strip_prefix(base).is_some_and(|rest| rest.starts_with('/'))
}

fn matches(f: &Filter, b: &Bindings, object: &Object) -> Result<bool, EvalError> {
    Ok(match f {
        Filter::Literal(s) => path_of(object).is_some_and(|p| p == resolve(s, b)),
        Filter::Subpath(s) => path_of(object).is_some_and(|p| is_subpath(p, &resolve(s, b))),
        Filter::Prefix(s) => path_of(object).is_some_and(|p| p.starts_with(&resolve(s, b))),
        Filter::Regex(r) => {
            let re = Regex::new(r)?;
            path_of(object).is_some_and(|p| re.is_match(p))
        }
        Filter::RequireAll(fs) => {
            let mut all = true;
            for f in fs {
                all &= matches(f, b, object)?;
            }
            all
        }
        Filter::RequireAny(fs) => {
            let mut any = false;
            for f in fs {
                any |= matches(f, b, object)?;
            }
            any
        }
        Filter::RequireNot(f) => !matches(f, b, object)?,
        Filter::Remote(proto, addr) | Filter::Local(proto, addr) => {
            let want_remote = matches!(f, Filter::Remote(..));
            let parsed = addr.as_ref().map(|a| parse_address(&resolve(a, b))).transpose()?;
            match object {
                Object::Net { proto: p, remote, host, port } => {
                    *p == *proto
                        && *remote == want_remote
                        && parsed.is_some_and(|(h, pt)| {
                            h.is_none_or(|_| is_localhost(host)) && pt.is_none_or(|x| x == *port)
                        })
                }
                Object::UnixSocket { remote, .. } => *proto == Proto::UnixSocket && *remote == want_remote,
                _ => false,
            }
        }
        Filter::GlobalName(n) => matches!(object, Object::Service(s) if s == n),
        Filter::SysctlName(n) => matches!(object, Object::Sysctl(s) if s == n),
        Filter::SocketDomain(d) => matches!(object, Object::Socket(s) if s == d),
        Filter::Target(t) => match (t, object) {
            (TargetKind::SameSandbox, Object::Process(TargetKind::Self_)) => true,
            (t, Object::Process(o)) => t == o,
            _ => false,
        },
    })
}

fn is_localhost(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "::1")
}

/// `HOST:PORT` → (`Some(())` for `localhost`, `None` for `*`; the port or `None` for `*`).
fn parse_address(a: &str) -> Result<(Option<()>, Option<u16>), EvalError> {
    let bad = || EvalError::Address(a.to_owned());
    let (host, port) = a.rsplit_once(':').ok_or_else(bad)?;
    let host = match host {
        "*" => None,
        "localhost" => Some(()),
        _ => return Err(bad()),
    };
    let port = match port {
        "*" => None,
        p if !p.is_empty() && p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit()) => {
            Some(p.parse::<u16>().map_err(|_| bad())?)
        }
        _ => return Err(bad()),
    };
    Ok((host, port))
}

/// A small POSIX ERE matcher: literal characters, `\c` (c literally), `.`, bracket
/// expressions with ranges and `^` negation, the quantifiers `*`, `+`, `?`, and the
/// anchors `^` (first) and `$` (last). Groups, alternation and intervals are refused.
#[derive(Debug)]
pub struct Regex {
    items: Vec<(Atom, Quant)>,
    anchored_start: bool,
    anchored_end: bool,
}

#[derive(Debug)]
enum Atom {
    Char(char),
    Any,
    Class { negated: bool, ranges: Vec<(char, char)> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quant {
    One,
    Star,
    Plus,
    Opt,
}

impl Atom {
    fn matches(&self, c: char) -> bool {
        match self {
            Atom::Char(x) => *x == c,
            Atom::Any => c != '\n',
            Atom::Class { negated, ranges } => ranges.iter().any(|(a, b)| (*a..=*b).contains(&c)) != *negated,
        }
    }
}

impl Regex {
    pub fn new(src: &str) -> Result<Regex, EvalError> {
        let bad = |why| EvalError::Regex(src.to_owned(), why);
        let mut chars: Vec<char> = src.chars().collect();
        let anchored_start = chars.first() == Some(&'^');
        if anchored_start {
            chars.remove(0);
        }
        // A final `$` is an anchor unless an odd run of backslashes escapes it.
        let before = chars.len().saturating_sub(1);
        let backslashes = chars[..before].iter().rev().take_while(|c| **c == '\\').count();
        let anchored_end = chars.last() == Some(&'$') && backslashes % 2 == 0;
        if anchored_end {
            chars.pop();
        }
        let mut items: Vec<(Atom, Quant)> = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            let atom = match c {
                '\\' => {
                    let e = *chars.get(i).ok_or_else(|| bad("a trailing backslash"))?;
                    i += 1;
                    Atom::Char(e)
                }
                '.' => Atom::Any,
                '[' => {
                    let negated = chars.get(i) == Some(&'^');
                    if negated {
                        i += 1;
                    }
                    let mut ranges = Vec::new();
                    let mut first = true;
                    loop {
                        let c = *chars.get(i).ok_or_else(|| bad("an unclosed `[`"))?;
                        i += 1;
                        if c == ']' && !first {
                            break;
                        }
                        if c == '[' && matches!(chars.get(i), Some(':' | '=' | '.')) {
                            return Err(bad("character classes like [:alpha:]"));
                        }
                        first = false;
                        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|n| *n != ']') {
                            let hi = chars[i + 1];
                            if hi < c {
                                return Err(bad("a reversed range"));
                            }
                            ranges.push((c, hi));
                            i += 2;
                        } else {
                            ranges.push((c, c));
                        }
                    }
                    Atom::Class { negated, ranges }
                }
                '(' | ')' | '|' | '{' | '}' => return Err(bad("groups, alternation and intervals")),
                '^' | '$' => return Err(bad("an anchor in the middle")),
                '*' | '+' | '?' => return Err(bad("a quantifier with nothing before it")),
                c => Atom::Char(c),
            };
            let quant = match chars.get(i) {
                Some('*') => Quant::Star,
                Some('+') => Quant::Plus,
                Some('?') => Quant::Opt,
                _ => Quant::One,
            };
            if quant != Quant::One {
                i += 1;
                if matches!(chars.get(i), Some('*' | '+' | '?')) {
                    return Err(bad("two quantifiers in a row"));
                }
            }
            items.push((atom, quant));
        }
        Ok(Regex { items, anchored_start, anchored_end })
    }

    pub fn is_match(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        let starts = if self.anchored_start { 0..=0 } else { 0..=chars.len() };
        starts.into_iter().any(|s| self.match_here(0, &chars[s..]))
    }

    /// Backtracking over the items; the state space is (item, position), so memoise
    /// failures to keep hostile patterns polynomial.
    fn match_here(&self, item: usize, text: &[char]) -> bool {
        let mut failed = std::collections::HashSet::new();
        self.step(item, text, text.len(), &mut failed)
    }

    fn step(
        &self,
        item: usize,
        text: &[char],
        total: usize,
        failed: &mut std::collections::HashSet<(usize, usize)>,
    ) -> bool {
        let key = (item, total - text.len());
        if failed.contains(&key) {
            return false;
        }
        let ok = match self.items.get(item) {
            None => !self.anchored_end || text.is_empty(),
            Some((atom, quant)) => {
                let first = text.first().is_some_and(|c| atom.matches(*c));
                match quant {
                    Quant::One => first && self.step(item + 1, &text[1..], total, failed),
                    Quant::Opt => {
                        (first && self.step(item + 1, &text[1..], total, failed))
                            || self.step(item + 1, text, total, failed)
                    }
                    Quant::Star | Quant::Plus => {
                        let run = text.iter().take_while(|c| atom.matches(**c)).count();
                        let min = usize::from(*quant == Quant::Plus);
                        (min..=run).rev().any(|n| self.step(item + 1, &text[n..], total, failed))
                    }
                }
            }
        };
        if !ok {
            failed.insert(key);
        }
        ok
    }
}

impl std::fmt::Display for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let side = |remote: &bool| if *remote { "remote" } else { "local" };
        match self {
            Object::None => f.write_str("(no object)"),
            Object::Path(p) => write!(f, "{p:?}"),
            Object::Net { proto, remote, host, port } => write!(f, "{} {host}:{port} ({})", proto.name(), side(remote)),
            Object::UnixSocket { remote, path } => write!(f, "unix-socket {path:?} ({})", side(remote)),
            Object::Service(s) => write!(f, "service {s:?}"),
            Object::Sysctl(s) => write!(f, "sysctl {s:?}"),
            Object::Process(t) => write!(f, "process {}", t.name()),
            Object::Socket(d) => write!(f, "socket {}", d.name()),
        }
    }
}
