//! SBPL text → [`Profile`], for the subset in `ast.rs` only. Anything else (`define`,
//! `if`, an unknown operation or filter, a second `(deny default)`) is an error, so
//! a profile that parses is one the evaluator understands completely.
//!
//! Used to check the emitter (a round trip gives the same profile) and by
//! `capsulec explain` on an artifact folder, which evaluates the pinned `macos.sb`.

use super::ast::{Filter, Operation, PARAMS, PROXY_PORT, Profile, Proto, Rule, SocketDomain, Str, TargetKind, Verdict};

/// Deeper nesting than any profile of the subset needs; bounds the recursion.
pub const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SBPL at byte {at}: {message}")]
pub struct ParseError {
    pub at: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Sexp {
    List(Vec<Sexp>, usize),
    Str(String, usize),
    Sym(String, usize),
}

impl Sexp {
    fn at(&self) -> usize {
        match self {
            Sexp::List(_, at) | Sexp::Str(_, at) | Sexp::Sym(_, at) => *at,
        }
    }
}

fn err<T>(at: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError { at, message: message.into() })
}

struct Reader<'a> {
    src: &'a str,
    pos: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    /// Skip white space; return the comment lines skipped, in order.
    fn skip(&mut self) -> Vec<String> {
        let mut comments = Vec::new();
        loop {
            match self.peek() {
                Some(c) if is_space(c) => self.pos += c.len_utf8(),
                Some(';') => {
                    let rest = &self.src[self.pos..];
                    let end = rest.find('\n').unwrap_or(rest.len());
                    let line = rest[1..end].strip_prefix(' ').unwrap_or(&rest[1..end]);
                    comments.push(line.to_owned());
                    self.pos += end;
                }
                _ => return comments,
            }
        }
    }

    fn read(&mut self, depth: usize) -> Result<Sexp, ParseError> {
        let at = self.pos;
        if depth > MAX_DEPTH {
            return err(at, format!("nested deeper than {MAX_DEPTH}"));
        }
        match self.peek() {
            None => err(at, "unexpected end of input"),
            Some('(') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip();
                    match self.peek() {
                        Some(')') => {
                            self.pos += 1;
                            return Ok(Sexp::List(items, at));
                        }
                        None => return err(at, "unclosed `(`"),
                        Some(_) => items.push(self.read(depth + 1)?),
                    }
                }
            }
            Some(')') => err(at, "unexpected `)`"),
            Some('"') => self.string(),
            Some(_) => {
                let rest = &self.src[self.pos..];
                let end = rest.find(|c: char| is_space(c) || "()\";".contains(c)).unwrap_or(rest.len());
                let sym = &rest[..end];
                if !sym.chars().all(|c| c.is_ascii_alphanumeric() || "-*_.".contains(c)) {
                    return err(at, format!("`{sym}` is not a symbol of the subset"));
                }
                self.pos += end;
                Ok(Sexp::Sym(sym.to_owned(), at))
            }
        }
    }

    fn string(&mut self) -> Result<Sexp, ParseError> {
        let at = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else { return err(at, "unclosed string") };
            self.pos += c.len_utf8();
            match c {
                '"' => return Ok(Sexp::Str(out, at)),
                '\\' => {
                    let Some(e) = self.peek() else { return err(at, "unclosed string") };
                    self.pos += e.len_utf8();
                    match e {
                        '"' => out.push('"'),
                        '\\' => out.push('\\'),
                        'n' => out.push('\n'),
                        'r' => out.push('\r'),
                        't' => out.push('\t'),
                        'x' => {
                            let hex = self.src.get(self.pos..self.pos + 2).unwrap_or("");
                            let v = u8::from_str_radix(hex, 16)
                                .ok()
                                .filter(|_| hex.chars().all(|c| c.is_ascii_hexdigit()))
                                .ok_or_else(|| ParseError {
                                    at: self.pos,
                                    message: "`\\x` needs two hex digits".into(),
                                })?;
                            if v == 0 || v >= 0x80 {
                                return err(self.pos, "`\\x` must name a character from 0x01 to 0x7f");
                            }
                            out.push(v as char);
                            self.pos += 2;
                        }
                        other => return err(self.pos, format!("unknown escape `\\{other}`")),
                    }
                }
                c => out.push(c),
            }
        }
    }
}

/// White space as SBPL's reader sees it: ASCII only (a no-break space is part of a
/// token there, so it is here too, and such a token is refused).
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c')
}

/// Parse a whole profile.
pub fn parse(src: &str) -> Result<Profile, ParseError> {
    // The sandbox reads the profile as a C string: a NUL anywhere would cut it there.
    if let Some(at) = src.find('\0') {
        return err(at, "NUL in the profile (the sandbox would cut the text there)");
    }
    let mut r = Reader { src, pos: 0 };
    let mut forms = Vec::new();
    loop {
        let comments = r.skip();
        if r.peek().is_none() {
            break;
        }
        forms.push((comments, r.read(0)?));
    }
    let mut forms = forms.into_iter();
    match forms.next() {
        Some((_, Sexp::List(items, _))) if matches!(items.as_slice(), [Sexp::Sym(v, _), Sexp::Sym(n, _)] if v == "version" && n == "1") =>
            {}
        Some((_, f)) => return err(f.at(), "the profile must start with `(version 1)`"),
        None => return err(0, "empty profile"),
    }
    let default_message = match forms.next() {
        Some((_, Sexp::List(items, at))) => match items.as_slice() {
            [Sexp::Sym(d, _), Sexp::Sym(def, _)] if d == "deny" && def == "default" => None,
            [Sexp::Sym(d, _), Sexp::Sym(def, _), with] if d == "deny" && def == "default" => Some(message(with)?),
            _ => return err(at, "the second form must be `(deny default)`"),
        },
        Some((_, f)) => return err(f.at(), "the second form must be `(deny default)`"),
        None => return err(src.len(), "no `(deny default)`"),
    };
    let rules = forms.map(|(comment, f)| rule(comment, &f)).collect::<Result<_, _>>()?;
    Ok(Profile { default_message, rules })
}

fn message(f: &Sexp) -> Result<String, ParseError> {
    match f {
        Sexp::List(items, _) => match items.as_slice() {
            [Sexp::Sym(w, _), Sexp::Sym(m, _), Sexp::Str(s, _)] if w == "with" && m == "message" => Ok(s.clone()),
            _ => err(f.at(), "expected `(with message \"...\")`"),
        },
        _ => err(f.at(), "expected `(with message \"...\")`"),
    }
}

fn rule(comment: Vec<String>, f: &Sexp) -> Result<Rule, ParseError> {
    let Sexp::List(items, at) = f else { return err(f.at(), "expected a rule") };
    let verdict = match items.first() {
        Some(Sexp::Sym(s, _)) if s == "allow" => Verdict::Allow,
        Some(Sexp::Sym(s, _)) if s == "deny" => Verdict::Deny,
        Some(Sexp::Sym(s, a)) => return err(*a, format!("`{s}` is outside the subset (only allow and deny rules)")),
        _ => return err(*at, "expected `(allow ...)` or `(deny ...)`"),
    };
    let mut operations = Vec::new();
    let mut message_ = None;
    let mut filters = Vec::new();
    for item in &items[1..] {
        match item {
            Sexp::Sym(s, a) if s == "default" => return err(*a, "only one `(deny default)`, the second form"),
            Sexp::Sym(s, a) => {
                if !filters.is_empty() || message_.is_some() {
                    return err(*a, "operations come before filters");
                }
                operations.push(
                    Operation::from_name(s)
                        .ok_or_else(|| ParseError { at: *a, message: format!("unknown operation `{s}`") })?,
                );
            }
            Sexp::List(inner, _) if matches!(inner.first(), Some(Sexp::Sym(w, _)) if w == "with") => {
                if message_.is_some() {
                    return err(item.at(), "two `(with message ...)`");
                }
                message_ = Some(message(item)?);
            }
            Sexp::List(..) => filters.push(filter(item, 0)?),
            Sexp::Str(_, a) => return err(*a, "a string where an operation or filter belongs"),
        }
    }
    if operations.is_empty() {
        return err(*at, "a rule names at least one operation");
    }
    Ok(Rule { comment, verdict, operations, message: message_, filters })
}

fn filter(f: &Sexp, depth: usize) -> Result<Filter, ParseError> {
    if depth > MAX_DEPTH {
        return err(f.at(), "filters nested too deep");
    }
    let Sexp::List(items, at) = f else { return err(f.at(), "expected a filter") };
    let Some(Sexp::Sym(name, _)) = items.first() else { return err(*at, "expected a filter") };
    let args = &items[1..];
    let one_str = |what: &str| -> Result<String, ParseError> {
        match args {
            [Sexp::Str(s, _)] => Ok(s.clone()),
            _ => err(*at, format!("`{what}` takes one string")),
        }
    };
    let path = || -> Result<Str, ParseError> {
        match args {
            [s] => str_expr(s, true),
            _ => err(*at, format!("`{name}` takes one string")),
        }
    };
    let subs = || args.iter().map(|a| filter(a, depth + 1)).collect::<Result<Vec<_>, _>>();
    Ok(match name.as_str() {
        "literal" => Filter::Literal(path()?),
        "subpath" => Filter::Subpath(path()?),
        "prefix" => Filter::Prefix(path()?),
        "regex" => Filter::Regex(one_str("regex")?),
        "require-all" => Filter::RequireAll(subs()?),
        "require-any" => Filter::RequireAny(subs()?),
        "require-not" => match args {
            [one] => Filter::RequireNot(Box::new(filter(one, depth + 1)?)),
            _ => return err(*at, "`require-not` takes one filter"),
        },
        "remote" | "local" => {
            let (proto, addr) = match args {
                [Sexp::Sym(p, _)] if p == "unix-socket" => (Proto::UnixSocket, None),
                [Sexp::Sym(p, _), a] if p == "tcp" || p == "udp" => {
                    (if p == "tcp" { Proto::Tcp } else { Proto::Udp }, Some(str_expr(a, true)?))
                }
                _ => return err(*at, format!("expected `({name} tcp|udp \"HOST:PORT\")` or `({name} unix-socket)`")),
            };
            if name == "remote" { Filter::Remote(proto, addr) } else { Filter::Local(proto, addr) }
        }
        "global-name" => Filter::GlobalName(one_str("global-name")?),
        "sysctl-name" => Filter::SysctlName(one_str("sysctl-name")?),
        "target" => match args {
            [Sexp::Sym(t, _)] if t == "self" => Filter::Target(TargetKind::Self_),
            [Sexp::Sym(t, _)] if t == "same-sandbox" => Filter::Target(TargetKind::SameSandbox),
            [Sexp::Sym(t, _)] if t == "others" => Filter::Target(TargetKind::Others),
            _ => return err(*at, "expected `(target self|same-sandbox|others)`"),
        },
        "socket-domain" => match args {
            [Sexp::Sym(d, _)] => Filter::SocketDomain(SocketDomain::from_name(d).ok_or_else(|| ParseError {
                at: *at,
                message: format!("unknown socket domain `{d}` (AF_UNIX, AF_INET, AF_INET6, AF_SYSTEM, AF_ROUTE)"),
            })?),
            _ => return err(*at, "expected `(socket-domain AF_NAME)`"),
        },
        other => return err(*at, format!("`{other}` is not a filter of the subset")),
    })
}

fn str_expr(s: &Sexp, append_allowed: bool) -> Result<Str, ParseError> {
    match s {
        Sexp::Str(v, _) => Ok(Str::Lit(v.clone())),
        Sexp::List(items, at) => match items.as_slice() {
            [Sexp::Sym(p, _), Sexp::Str(n, _)] if p == "param" => {
                match PARAMS.iter().chain([&PROXY_PORT]).find(|k| *k == n) {
                    Some(k) => Ok(Str::Param(k)),
                    None => err(*at, format!("unknown parameter `{n}` (WORKSPACE, HOME, TMPDIR, PROXY_PORT)")),
                }
            }
            [Sexp::Sym(a, _), rest @ ..] if a == "string-append" && append_allowed && !rest.is_empty() => {
                Ok(Str::Append(rest.iter().map(|r| str_expr(r, false)).collect::<Result<_, _>>()?))
            }
            _ => err(*at, "expected a string, `(param \"NAME\")` or `(string-append ...)`"),
        },
        Sexp::Sym(_, at) => err(*at, "expected a string"),
    }
}
