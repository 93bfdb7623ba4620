//! The YAML tree to the policy AST: every key known, every value of its type.
//! Errors are collected, not fatal, so one run reports as much as it can.

use super::ast::*;
use super::shape::{self, Field};
use super::suggest::did_you_mean;
use super::yaml::{Node, NodeKind, Scalar, is_null};
use crate::diagnostic::{Code, Diagnostic};
use crate::ir::Span;
use capsule_artifacts::Target;
use capsule_artifacts::launch::{LandlockMode, PortRule, Protocol, Record};

/// Errno values above this are not errnos (the kernel's MAX_ERRNO).
pub const MAX_ERRNO: u64 = 4095;

pub struct Parser<'d> {
    pub diags: &'d mut Vec<Diagnostic>,
}

impl Parser<'_> {
    fn error(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    pub fn policy(&mut self, root: &Node) -> PolicyAst {
        let mut ast = PolicyAst { span: root.span.clone(), ..PolicyAst::default() };
        let Some(entries) = self.map(root, "the policy") else { return ast };
        for (key, value) in self.known(entries, shape::POLICY, "a policy") {
            let k = key_name(key);
            match k {
                "version" => ast.version = self.integer(value, "version"),
                "name" => ast.name = self.string(value, "name"),
                "description" => ast.description = self.string(value, "description"),
                "default" => ast.default = self.action(value),
                "newer-syscalls" => ast.newer_syscalls = self.action(value),
                "foreign-arch" => ast.foreign_arch = self.action(value),
                "targets" => ast.targets = self.targets(value),
                "syscalls" => ast.syscalls = self.syscalls(value),
                "filesystem" => ast.filesystem = self.filesystem(value),
                "network" => ast.network = self.network(value),
                "limits" => ast.limits = self.limits(value),
                "env" => ast.env = self.env(value),
                "audit" => ast.audit = self.audit(value),
                "landlock" => ast.landlock = self.landlock(value),
                _ => self.unknown_key(key, shape::POLICY, "a policy"),
            }
        }
        ast
    }

    /// The entries of a mapping whose keys the language has here ([`shape`]); each other
    /// key is reported (E0101). The parser reads no key the shape does not list, so the
    /// shape, the schema generated from it and the parser agree on the keys.
    fn known<'n>(&mut self, entries: &'n [(Node, Node)], fields: &[Field], place: &str) -> Vec<&'n (Node, Node)> {
        let mut known = Vec::with_capacity(entries.len());
        for entry in entries {
            if shape::field(fields, key_name(&entry.0)).is_some() {
                known.push(entry);
            } else {
                self.unknown_key(&entry.0, fields, place);
            }
        }
        known
    }

    fn unknown_key(&mut self, key: &Node, known: &[Field], place: &str) {
        let name = key_name(key);
        let known = shape::keys(known);
        let mut d = Diagnostic::new(Code::UnknownKey, key.span.clone(), format!("unknown key `{name}` in {place}"))
            .label("unknown key");
        d = match did_you_mean(name, known.iter().copied()) {
            Some(s) => d.help(format!("did you mean `{s}`?")),
            None => d.help(format!("the keys of {place} are: {}", known.join(", "))),
        };
        self.error(d);
    }

    fn wrong_type(&mut self, node: &Node, expected: &str, what: &str) {
        self.error(
            Diagnostic::new(Code::WrongType, node.span.clone(), format!("`{what}` must be {expected}"))
                .label(format!("found {}", node.describe())),
        );
    }

    fn map<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [(Node, Node)]> {
        match &node.kind {
            NodeKind::Map(entries) => Some(entries),
            _ => {
                self.wrong_type(node, "a mapping", what);
                None
            }
        }
    }

    fn seq<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [Node]> {
        match &node.kind {
            NodeKind::Seq(items) => Some(items),
            _ => {
                self.wrong_type(node, "a list", what);
                None
            }
        }
    }

    fn scalar<'n>(&mut self, node: &'n Node, expected: &str, what: &str) -> Option<&'n Scalar> {
        match &node.kind {
            NodeKind::Scalar(s) if !(s.plain && is_null(&s.value)) => Some(s),
            _ => {
                self.wrong_type(node, expected, what);
                None
            }
        }
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<Spanned<String>> {
        let s = self.scalar(node, "a string", what)?;
        Some(Spanned { value: s.value.clone(), span: node.span.clone() })
    }

    fn integer(&mut self, node: &Node, what: &str) -> Option<Spanned<u64>> {
        let s = self.scalar(node, "an integer", what)?;
        if !s.plain {
            self.wrong_type(node, "an integer, not a quoted string", what);
            return None;
        }
        match parse_u64(&s.value) {
            Some(v) => Some(Spanned { value: v, span: node.span.clone() }),
            None => {
                self.error(
                    Diagnostic::new(
                        Code::BadNumber,
                        node.span.clone(),
                        format!("`{what}` must be a non-negative integer"),
                    )
                    .label(format!("`{}` is not an integer that fits in 64 bits", s.value)),
                );
                None
            }
        }
    }

    fn boolean(&mut self, node: &Node, what: &str) -> Option<Spanned<bool>> {
        let s = self.scalar(node, "`true` or `false`", what)?;
        let value = match (s.plain, s.value.as_str()) {
            (true, "true" | "True" | "TRUE") => true,
            (true, "false" | "False" | "FALSE") => false,
            _ => {
                self.wrong_type(node, "`true` or `false`", what);
                return None;
            }
        };
        Some(Spanned { value, span: node.span.clone() })
    }

    fn string_list(&mut self, node: &Node, what: &str) -> Option<Vec<Spanned<String>>> {
        let items = self.seq(node, what)?;
        Some(items.iter().filter_map(|n| self.string(n, what)).collect())
    }

    pub fn action(&mut self, node: &Node) -> Option<Spanned<ActionAst>> {
        let s = self.scalar(node, "an action", "action")?;
        let span = node.span.clone();
        let text = s.value.trim();
        let action = match text {
            "allow" => ActionAst::Allow,
            "kill-process" => ActionAst::KillProcess,
            "kill-thread" => ActionAst::KillThread,
            "trap" => ActionAst::Trap,
            "log" => ActionAst::Log,
            "notify" => {
                self.error(
                    Diagnostic::new(Code::BadAction, span, "`notify` is internal to the launcher")
                        .label("not a policy action")
                        .help("to record calls in the audit log, list them under `syscalls: audit:` or add `denials` to `audit: record:`"),
                );
                return None;
            }
            _ => match text.strip_prefix("errno(").and_then(|t| t.strip_suffix(')')) {
                Some(inner) => ActionAst::Errno(self.errno(inner.trim(), &span)?),
                None => {
                    let known = ["allow", "errno(EPERM)", "kill-process", "kill-thread", "trap", "log"];
                    let mut d = Diagnostic::new(Code::BadAction, span, format!("unknown action `{text}`"))
                        .label("not an action");
                    d = match did_you_mean(text, known) {
                        Some(s) => d.help(format!("did you mean `{s}`?")),
                        None => {
                            d.help("actions are allow, errno(NAME or number), kill-process, kill-thread, trap and log")
                        }
                    };
                    self.error(d);
                    return None;
                }
            },
        };
        Some(Spanned { value: action, span: node.span.clone() })
    }

    fn errno(&mut self, text: &str, span: &Span) -> Option<u16> {
        if let Some(v) = parse_u64(text) {
            if v <= MAX_ERRNO {
                return Some(v as u16);
            }
            self.error(
                Diagnostic::new(Code::BadNumber, span.clone(), format!("errno {v} is out of range"))
                    .label("errno values go from 0 to 4095"),
            );
            return None;
        }
        if let Some(v) = crate::tables::errno_value(text) {
            return Some(v);
        }
        let mut d = Diagnostic::new(Code::UnknownConstant, span.clone(), format!("unknown errno `{text}`"))
            .label("not an errno name");
        if let Some(s) = did_you_mean(text, (1..=4095u16).filter_map(crate::tables::errno_name)) {
            d = d.help(format!("did you mean `{s}`?"));
        }
        self.error(d);
        None
    }

    fn targets(&mut self, node: &Node) -> Option<Vec<Spanned<Target>>> {
        let items = self.seq(node, "targets")?;
        let mut out = Vec::new();
        for item in items {
            let Some(s) = self.string(item, "targets") else { continue };
            match Target::from_name(&s.value) {
                Some(t) => out.push(Spanned { value: t, span: s.span }),
                None => {
                    let names = shape::TARGETS;
                    let mut d = Diagnostic::new(Code::BadTarget, s.span, format!("unknown target `{}`", s.value))
                        .label("not a target");
                    d = match did_you_mean(&s.value, names.iter().copied()) {
                        Some(m) => d.help(format!("did you mean `{m}`?")),
                        None => d.help(format!("the targets are {}", names.join(", "))),
                    };
                    self.error(d);
                }
            }
        }
        Some(out)
    }

    fn syscalls(&mut self, node: &Node) -> SyscallsAst {
        let mut ast = SyscallsAst::default();
        let Some(entries) = self.map(node, "syscalls") else { return ast };
        for (key, value) in self.known(entries, shape::SYSCALLS, "`syscalls`") {
            let section = match key_name(key) {
                "allow" => Section::Allow,
                "deny" => Section::Deny,
                "audit" => Section::Audit,
                _ => {
                    self.unknown_key(key, shape::SYSCALLS, "`syscalls`");
                    continue;
                }
            };
            if let NodeKind::Scalar(s) = &value.kind
                && s.plain
                && is_null(&s.value)
            {
                self.error(
                    Diagnostic::new(
                        Code::EmptyRuleList,
                        key.span.clone(),
                        format!("`{}` has no rules", section.name()),
                    )
                    .label("empty section")
                    .help("remove the key, or write `[]` to say so on purpose"),
                );
                continue;
            }
            let Some(items) = self.seq(value, section.name()) else { continue };
            for item in items {
                if let Some(rule) = self.rule(item, section) {
                    ast.rules.push(rule);
                }
            }
        }
        ast
    }

    fn rule(&mut self, node: &Node, section: Section) -> Option<RuleAst> {
        let (name_node, body) = match &node.kind {
            NodeKind::Scalar(_) => (node, None),
            NodeKind::Map(entries) if entries.len() == 1 => (&entries[0].0, Some(&entries[0].1)),
            _ => {
                self.error(
                    Diagnostic::new(Code::WrongType, node.span.clone(), "a rule is a syscall name, a group, or `name: CONDITION`")
                        .label(format!("found {}", node.describe()))
                        .help("write `- read`, `- \"@basic-io\"`, `- socket: domain == AF_UNIX` or `- name: { when: CONDITION, action: ACTION }`"),
                );
                return None;
            }
        };
        let name = self.string(name_node, "a rule's syscall")?;
        let subject = match name.value.strip_prefix('@') {
            Some(group) => Subject::Group(Spanned { value: group.to_owned(), span: name.span }),
            None => Subject::Syscall(name),
        };
        let mut rule = RuleAst { section, span: node.span.clone(), subject, when: None, action: None };
        let Some(body) = body else { return Some(rule) };
        match &body.kind {
            NodeKind::Scalar(s) if s.plain && is_null(&s.value) => {}
            NodeKind::Scalar(s) => rule.when = self.condition(s, body),
            NodeKind::Map(entries) => {
                for (key, value) in self.known(entries, shape::RULE, "a rule") {
                    match key_name(key) {
                        "when" => match &value.kind {
                            NodeKind::Scalar(s) if !(s.plain && is_null(&s.value)) => {
                                rule.when = self.condition(s, value)
                            }
                            _ => self.wrong_type(value, "a condition string", "when"),
                        },
                        "action" => {
                            let action = self.action(value);
                            if section != Section::Deny {
                                self.error(
                                    Diagnostic::new(
                                        Code::ActionOnAllow,
                                        key.span.start..value.span.end,
                                        format!("`action:` on an {} rule", section.name()),
                                    )
                                    .label("only deny rules take an action")
                                    .help("move the rule under `deny:` to give it an action"),
                                );
                            } else {
                                rule.action = action;
                            }
                        }
                        _ => self.unknown_key(key, shape::RULE, "a rule"),
                    }
                }
            }
            NodeKind::Seq(_) => self.wrong_type(body, "a condition string or `{ when: ..., action: ... }`", "a rule"),
        }
        Some(rule)
    }

    fn condition(&mut self, s: &Scalar, node: &Node) -> Option<CondAst> {
        match capsule_grammar::parse_condition(&s.value) {
            Ok(expr) => Some(CondAst { expr, span: node.span.clone(), base: s.verbatim_at }),
            Err(e) => {
                let span = match s.verbatim_at {
                    Some(base) => base + e.span.start..base + e.span.end,
                    None => node.span.clone(),
                };
                let mut d = Diagnostic::new(Code::ConditionSyntax, span, format!("invalid condition: {}", e.message))
                    .label("here");
                if let Some(help) = e.help {
                    d = d.help(help);
                }
                self.error(d);
                None
            }
        }
    }

    fn filesystem(&mut self, node: &Node) -> FilesystemAst {
        let mut ast = FilesystemAst::default();
        let Some(entries) = self.map(node, "filesystem") else { return ast };
        for (key, value) in self.known(entries, shape::FILESYSTEM, "`filesystem`") {
            let slot = match key_name(key) {
                "read" => &mut ast.read,
                "write" => &mut ast.write,
                "execute" => &mut ast.execute,
                "setid" => {
                    if let Some(b) = self.boolean(value, "setid") {
                        ast.setid = Some(Spanned { value: b.value, span: key.span.start..b.span.end });
                    }
                    continue;
                }
                _ => {
                    self.unknown_key(key, shape::FILESYSTEM, "`filesystem`");
                    continue;
                }
            };
            let Some(paths) = self.string_list(value, key_name(key)) else { continue };
            for p in &paths {
                check_path(p, self.diags);
            }
            *slot = Some(paths);
        }
        ast
    }

    fn network(&mut self, node: &Node) -> NetworkAst {
        let mut ast = NetworkAst::default();
        let Some(entries) = self.map(node, "network") else { return ast };
        for (key, value) in self.known(entries, shape::NETWORK, "`network`") {
            let what = key_name(key);
            let slot = match what {
                "connect" => &mut ast.connect,
                "bind" => &mut ast.bind,
                "domains" => {
                    ast.domains = self.domains(value);
                    continue;
                }
                "proxy" => {
                    let Some(entries) = self.map(value, "proxy") else { continue };
                    for (k, v) in entries {
                        match key_name(k) {
                            "port" => {
                                ast.proxy_port = self.integer(v, "port").and_then(|p| {
                                    if p.value > 65535 {
                                        self.error(
                                            Diagnostic::new(
                                                Code::BadNumber,
                                                p.span,
                                                "the proxy's port is out of range",
                                            )
                                            .label("ports go from 0 to 65535"),
                                        );
                                        None
                                    } else {
                                        Some(p)
                                    }
                                })
                            }
                            "allow-private" => ast.allow_private = self.boolean(v, "allow-private"),
                            _ => self.unknown_key(k, shape::PROXY, "`proxy`"),
                        }
                    }
                    continue;
                }
                "routes" => {
                    let Some(items) = self.seq(value, "routes") else { continue };
                    let mut routes: Vec<RouteAst> = Vec::new();
                    for item in items {
                        let Some(route) = self.route(item) else { continue };
                        if let Some(first) = routes.iter().find(|r| r.prefix.value == route.prefix.value) {
                            self.error(
                                Diagnostic::new(
                                    Code::BadRoute,
                                    route.prefix.span.clone(),
                                    format!("two routes have the prefix `{}`", route.prefix.value),
                                )
                                .label("second route")
                                .secondary(first.prefix.span.clone(), "first route"),
                            );
                            continue;
                        }
                        routes.push(route);
                    }
                    ast.routes = Some(routes);
                    continue;
                }
                _ => {
                    self.unknown_key(key, shape::NETWORK, "`network`");
                    continue;
                }
            };
            let Some(items) = self.string_list(value, what) else { continue };
            let mut rules = Vec::new();
            for item in items {
                match parse_port_rule(&item.value) {
                    Some(rule) => rules.push(Spanned { value: rule, span: item.span }),
                    None => self.error(
                        Diagnostic::new(Code::BadPort, item.span, format!("`{}` is not a network rule", item.value))
                            .label("expected `tcp/PORT`")
                            .help("write a TCP port as `tcp/443`; ports go from 0 to 65535"),
                    ),
                }
            }
            *slot = Some(rules);
        }
        ast
    }

    /// `network: domains:`: names lower-cased; malformed names, addresses, wildcards
    /// over everything are errors, a repeated or covered name a warning.
    fn domains(&mut self, node: &Node) -> Option<Vec<Spanned<String>>> {
        let items = self.string_list(node, "domains")?;
        let mut out: Vec<Spanned<String>> = Vec::new();
        for item in items {
            let raw = item.value.trim();
            let name = raw.to_ascii_lowercase();
            let bare = raw.trim_start_matches('[').trim_end_matches(']');
            if bare.parse::<std::net::IpAddr>().is_ok() {
                self.error(
                    Diagnostic::new(Code::DomainIsAddress, item.span, format!("`{raw}` is an IP address, not a name"))
                        .label("an address")
                        .help("the proxy filters by name; to allow an address, open its port with `network: connect: [tcp/PORT]`"),
                );
                continue;
            }
            let (wildcard, base) = match name.strip_prefix("*.") {
                Some(rest) => (true, rest),
                None => (false, name.as_str()),
            };
            if name == "*"
                || name == "*."
                || (wildcard && !base.is_empty() && !base.contains('.') && capsule_artifacts::launch::is_dns_name(base))
            {
                self.error(
                    Diagnostic::new(Code::WildcardTooWide, item.span, format!("`{raw}` covers too much"))
                        .label(if name.starts_with("*.") && name.len() > 2 { "every name under a top-level domain" } else { "every name" })
                        .help("list the names the command needs, or a wildcard under a registered domain such as `*.pythonhosted.org`"),
                );
                continue;
            }
            if !capsule_artifacts::launch::is_dns_name(base) {
                let help = if base.contains('*') {
                    "a wildcard is `*.` followed by a name, at the start only"
                } else if base.contains("://") || base.contains('/') || base.contains(':') {
                    "write the host name alone, without scheme, port or path"
                } else {
                    "labels of letters, digits and `-`, separated by dots, no trailing dot"
                };
                self.error(
                    Diagnostic::new(Code::BadDomain, item.span, format!("`{raw}` is not a domain name"))
                        .label("not a name")
                        .help(help),
                );
                continue;
            }
            let earlier = out.iter().find(|d| {
                d.value == name
                    || capsule_artifacts::launch::matching_domain(std::slice::from_ref(&d.value), &name).is_some()
            });
            if let Some(first) = earlier {
                let message = if first.value == name {
                    format!("`{raw}` is listed twice")
                } else {
                    format!("`{raw}` is already covered by `{}`", first.value)
                };
                self.error(
                    Diagnostic::new(Code::DuplicateDomain, item.span, message)
                        .label("not needed")
                        .secondary(first.span.clone(), "listed here"),
                );
                continue;
            }
            out.push(Spanned { value: name, span: item.span });
        }
        Some(out)
    }

    fn route(&mut self, node: &Node) -> Option<RouteAst> {
        let entries = self.map(node, "a route")?;
        let (mut prefix, mut upstream, mut headers) = (None, None, Vec::new());
        for (key, value) in entries {
            match key_name(key) {
                "prefix" => {
                    let Some(p) = self.string(value, "prefix") else { continue };
                    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@%/".contains(c);
                    if !p.value.starts_with('/')
                        || p.value.len() < 2
                        || p.value.ends_with('/')
                        || !p.value.chars().all(allowed)
                        || p.value.contains("//")
                    {
                        self.error(
                            Diagnostic::new(Code::BadRoute, p.span, format!("`{}` is not a route prefix", p.value))
                                .label("expected a path such as `/openai`")
                                .help("a prefix starts with `/`, has no trailing `/`, and holds path characters only"),
                        );
                        continue;
                    }
                    prefix = Some(p);
                }
                "upstream" => {
                    let Some(u) = self.string(value, "upstream") else { continue };
                    match check_upstream(&u.value) {
                        Ok(normal) => upstream = Some(Spanned { value: normal, span: u.span }),
                        Err(help) => self.error(
                            Diagnostic::new(Code::BadRoute, u.span, format!("`{}` is not a route upstream", u.value))
                                .label("expected `http://host[:port]` or `https://host[:port]`")
                                .help(help),
                        ),
                    }
                }
                "headers" => {
                    let Some(map) = self.map(value, "headers") else { continue };
                    for (k, v) in map {
                        let name = Spanned { value: key_name(k).to_owned(), span: k.span.clone() };
                        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
                        if name.value.is_empty() || !name.value.chars().all(token) {
                            self.error(
                                Diagnostic::new(
                                    Code::BadHeader,
                                    name.span,
                                    format!("`{}` is not an HTTP header name", name.value),
                                )
                                .label("not a header name"),
                            );
                            continue;
                        }
                        if ["host", "content-length", "transfer-encoding", "connection"]
                            .contains(&name.value.to_ascii_lowercase().as_str())
                        {
                            self.error(
                                Diagnostic::new(
                                    Code::BadHeader,
                                    name.span,
                                    format!("the proxy sets `{}` itself", name.value),
                                )
                                .label("not settable by a route"),
                            );
                            continue;
                        }
                        let Some(template) = self.string(v, "a header value") else { continue };
                        if template.value.contains(['\r', '\n', '\0']) {
                            self.error(
                                Diagnostic::new(
                                    Code::BadHeader,
                                    template.span,
                                    "a header value holds a line break or NUL",
                                )
                                .label("here"),
                            );
                            continue;
                        }
                        match capsule_artifacts::launch::parse_template(&template.value) {
                            Ok(parts) => {
                                let vars = parts
                                    .iter()
                                    .filter_map(|p| match p {
                                        capsule_artifacts::launch::TemplatePart::Env(n) => Some((*n).to_owned()),
                                        capsule_artifacts::launch::TemplatePart::Text(_) => None,
                                    })
                                    .collect();
                                headers.push((name, template, vars));
                            }
                            Err(problem) => self.error(
                                Diagnostic::new(Code::BadHeader, template.span, format!("invalid header template: {problem}"))
                                    .label("here")
                                    .help("write `${env:NAME}` for a variable of the launcher's environment, `$$` for a dollar sign"),
                            ),
                        }
                    }
                }
                _ => self.unknown_key(key, shape::ROUTE, "a route"),
            }
        }
        let (Some(prefix), Some(upstream)) = (prefix, upstream) else {
            if !self.diags.iter().any(|d| {
                d.code == Code::BadRoute
                    && node.span.start <= d.primary.span.start
                    && d.primary.span.end <= node.span.end
            }) {
                self.error(
                    Diagnostic::new(Code::BadRoute, node.span.clone(), "a route needs `prefix` and `upstream`")
                        .label("incomplete route"),
                );
            }
            return None;
        };
        Some(RouteAst { span: node.span.clone(), prefix, upstream, headers })
    }

    fn limits(&mut self, node: &Node) -> LimitsAst {
        let mut ast = LimitsAst::default();
        let Some(entries) = self.map(node, "limits") else { return ast };
        for (key, value) in self.known(entries, shape::LIMITS, "`limits`") {
            match key_name(key) {
                "cpu" => {
                    ast.cpu_seconds =
                        self.quantity(value, "cpu", parse_duration, "a duration such as `60s`, `5m` or `1h`")
                }
                "memory" => {
                    ast.memory_bytes = self.quantity(value, "memory", parse_size, "a size such as `512MiB` or `2GiB`")
                }
                "file-size" => {
                    ast.file_size_bytes =
                        self.quantity(value, "file-size", parse_size, "a size such as `512MiB` or `2GiB`")
                }
                "processes" => ast.processes = self.integer(value, "processes"),
                "open-files" => ast.open_files = self.integer(value, "open-files"),
                _ => self.unknown_key(key, shape::LIMITS, "`limits`"),
            }
        }
        ast
    }

    fn quantity(
        &mut self,
        node: &Node,
        what: &str,
        parse: fn(&str) -> Option<u64>,
        expected: &str,
    ) -> Option<Spanned<u64>> {
        let s = self.scalar(node, expected, what)?;
        match parse(s.value.trim()) {
            Some(v) => Some(Spanned { value: v, span: node.span.clone() }),
            None => {
                self.error(
                    Diagnostic::new(
                        Code::BadQuantity,
                        node.span.clone(),
                        format!("`{}` is not a valid {what} limit", s.value),
                    )
                    .label(format!("expected {expected}")),
                );
                None
            }
        }
    }

    fn env(&mut self, node: &Node) -> EnvAst {
        let mut ast = EnvAst::default();
        let Some(entries) = self.map(node, "env") else { return ast };
        for (key, value) in self.known(entries, shape::ENV, "`env`") {
            match key_name(key) {
                "pass" => {
                    for name in self.string_list(value, "pass").unwrap_or_default() {
                        if self.env_name(&name) {
                            ast.pass.push(name);
                        }
                    }
                }
                "set" => {
                    let Some(vars) = self.map(value, "set") else { continue };
                    for (k, v) in vars {
                        let name = Spanned { value: key_name(k).to_owned(), span: k.span.clone() };
                        if let (true, Some(v)) = (self.env_name(&name), self.string(v, "an environment value")) {
                            ast.set.push((name, v));
                        }
                    }
                }
                _ => self.unknown_key(key, shape::ENV, "`env`"),
            }
        }
        ast
    }

    fn env_name(&mut self, name: &Spanned<String>) -> bool {
        let valid = !name.value.is_empty()
            && !name.value.starts_with(|c: char| c.is_ascii_digit())
            && name.value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            self.error(
                Diagnostic::new(
                    Code::BadEnvName,
                    name.span.clone(),
                    format!("`{}` is not an environment variable name", name.value),
                )
                .label("letters, digits and `_`, not starting with a digit"),
            );
        }
        valid
    }

    fn audit(&mut self, node: &Node) -> AuditAst {
        let mut ast = AuditAst::default();
        let Some(entries) = self.map(node, "audit") else { return ast };
        for (key, value) in self.known(entries, shape::AUDIT, "`audit`") {
            match key_name(key) {
                "log" => ast.log = self.string(value, "log"),
                "record" => {
                    let Some(items) = self.string_list(value, "record") else { continue };
                    let mut records = Vec::new();
                    for item in items {
                        let record = match item.value.as_str() {
                            "invocations" => Record::Invocations,
                            "denials" => Record::Denials,
                            "audited-syscalls" => Record::AuditedSyscalls,
                            other => {
                                let known = shape::RECORD_CLASSES.iter().copied();
                                let mut d = Diagnostic::new(
                                    Code::BadRecord,
                                    item.span.clone(),
                                    format!("unknown record class `{other}`"),
                                )
                                .label("not a record class");
                                d = match did_you_mean(other, known) {
                                    Some(s) => d.help(format!("did you mean `{s}`?")),
                                    None => d.help("record classes are invocations, denials and audited-syscalls"),
                                };
                                self.error(d);
                                continue;
                            }
                        };
                        records.push(Spanned { value: record, span: item.span });
                    }
                    ast.record = Some(records);
                }
                _ => self.unknown_key(key, shape::AUDIT, "`audit`"),
            }
        }
        ast
    }

    fn landlock(&mut self, node: &Node) -> LandlockAst {
        let mut ast = LandlockAst::default();
        let Some(entries) = self.map(node, "landlock") else { return ast };
        for (key, value) in self.known(entries, shape::LANDLOCK, "`landlock`") {
            match key_name(key) {
                "abi" => ast.abi = self.integer(value, "abi"),
                "scope" => ast.scope = self.boolean(value, "scope"),
                "mode" => {
                    let Some(s) = self.string(value, "mode") else { continue };
                    let mode = match s.value.as_str() {
                        "enforce" => LandlockMode::Enforce,
                        "best-effort" => LandlockMode::BestEffort,
                        other => {
                            self.error(
                                Diagnostic::new(Code::WrongType, s.span, format!("unknown Landlock mode `{other}`"))
                                    .label("expected `enforce` or `best-effort`"),
                            );
                            continue;
                        }
                    };
                    ast.mode = Some(Spanned { value: mode, span: s.span });
                }
                _ => self.unknown_key(key, shape::LANDLOCK, "`landlock`"),
            }
        }
        ast
    }
}

pub fn key_name(key: &Node) -> &str {
    match &key.kind {
        NodeKind::Scalar(s) => &s.value,
        _ => "",
    }
}

/// Decimal, `0x` hex, `0o` octal or `0b` binary, with optional `_` separators.
pub fn parse_u64(text: &str) -> Option<u64> {
    let t = text.replace('_', "");
    let (digits, radix) = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        (h, 16)
    } else if let Some(o) = t.strip_prefix("0o") {
        (o, 8)
    } else if let Some(b) = t.strip_prefix("0b") {
        (b, 2)
    } else {
        (t.as_str(), 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

fn split_unit(text: &str) -> (&str, &str) {
    let at = text.find(|c: char| !c.is_ascii_digit() && c != '_').unwrap_or(text.len());
    (&text[..at], text[at..].trim())
}

/// `90`, `90s`, `5m`, `2h`: seconds.
pub fn parse_duration(text: &str) -> Option<u64> {
    let (number, unit) = split_unit(text);
    let n = parse_u64(number)?;
    let scale = match unit {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// `4096`, `512KiB`, `2GiB`, `1GB` (decimal): bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let (number, unit) = split_unit(text);
    let n = parse_u64(number)?;
    let scale: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// `http://host[:port]` or `https://host[:port]` with an optional trailing `/`,
/// normalised to no trailing `/` and a lower-case host. Errors are help lines.
fn check_upstream(text: &str) -> Result<String, &'static str> {
    let (scheme, rest) = match (text.strip_prefix("https://"), text.strip_prefix("http://")) {
        (Some(rest), _) => ("https", rest),
        (None, Some(rest)) => ("http", rest),
        (None, None) => return Err("an upstream starts with `http://` or `https://`"),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@']) {
        return Err("an upstream is a scheme, a host and an optional port: no path, query or user");
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    if let Some(port) = port
        && (port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) || port.parse::<u16>().is_err())
    {
        return Err("the port goes from 0 to 65535");
    }
    if !capsule_artifacts::launch::is_dns_name(host) && host.parse::<std::net::Ipv4Addr>().is_err() {
        return Err("the host is a DNS name or an IPv4 address");
    }
    Ok(format!("{scheme}://{}", rest.to_ascii_lowercase()))
}

fn parse_port_rule(text: &str) -> Option<PortRule> {
    let port = text.trim().strip_prefix("tcp/")?;
    if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(PortRule { protocol: Protocol::Tcp, port: port.parse().ok()? })
}

pub use super::shape::PATH_VARIABLES;

fn check_path(path: &Spanned<String>, diags: &mut Vec<Diagnostic>) {
    let p = &path.value;
    let bad = |message: String, help: &str| {
        Diagnostic::new(Code::BadPath, path.span.clone(), message).label("here").help(help.to_owned())
    };
    if let Some(rest) = p.strip_prefix("${") {
        let Some((var, _)) = rest.split_once('}') else {
            diags.push(bad(format!("unclosed variable in `{p}`"), "write `${WORKSPACE}`, `${HOME}` or `${TMPDIR}`"));
            return;
        };
        if !PATH_VARIABLES.contains(&var) {
            let mut d = bad(
                format!("unknown path variable `${{{var}}}`"),
                "the variables are ${WORKSPACE}, ${HOME} and ${TMPDIR}",
            );
            if let Some(s) = did_you_mean(var, PATH_VARIABLES.iter().copied()) {
                d.help = Some(format!("did you mean `${{{s}}}`?"));
            }
            diags.push(d);
        }
    } else if !p.starts_with('/') {
        diags.push(bad(
            format!("`{p}` is not an absolute path"),
            "write an absolute path, or start with ${WORKSPACE}, ${HOME} or ${TMPDIR}; relative paths would depend on where the command runs",
        ));
    }
    if p.split('/').any(|c| c == "..") {
        diags.push(bad(
            format!("`{p}` contains `..`"),
            "write the path without `..`; Landlock rules apply to the resolved directory",
        ));
    }
}
