//! `capsulec explain`: the decision for one call, and what made it: the rule in the
//! policy, or the path through a compiled filter.

use crate::back::sbpl::ast::{Operation, Profile, Proto, TargetKind, Verdict};
use crate::back::sbpl::emit;
use crate::back::sbpl::eval::{Bindings, Object, evaluate};
use crate::back::sbpl::map::resolve_firmlink;
use crate::bpf::disasm::{DisasmContext, disassemble};
use crate::bpf::interp::{Program, RetAction, SeccompData};
use crate::diagnostic::line_col;
use crate::ir::{self, Action, Call, Policy, Reason};
use capsule_artifacts::Target;
use capsule_artifacts::notify::{NotifyAnswer, NotifyTable};
use std::fmt::Write;

/// Explain a call against a policy's IR (before the passes: the rules as written).
pub fn explain_policy(policy: &Policy, source: &str, target: Target, call: &Call) -> String {
    let d = ir::decide(policy, target, call);
    let mut out = String::new();
    let name = crate::tables::table(target).by_nr(call.nr).map_or("?", |s| s.name());
    let by_proxy = matches!(&d.reason, Reason::Rule(o) if o.implied_by == Some(crate::front::lower::PROXY_SETTING));
    let audited = match (d.audited, by_proxy) {
        (true, true) => " (to the supervisor: refused and recorded unless the address is the proxy's)",
        (true, false) => " (audited: recorded in the audit log)",
        (false, _) => "",
    };
    let _ = writeln!(out, "{target} {name}({}) => {}{audited}", args_text(&call.args), d.action);
    match &d.reason {
        Reason::Rule(origin) if let Some(setting) = origin.implied_by => {
            if origin.span.is_empty() && by_proxy {
                let _ = writeln!(out, "  by `{setting}`");
            } else if origin.span.is_empty() {
                let _ = writeln!(out, "  by `{setting}`, not written: its default, false, denies this call");
            } else {
                let (line, col) = line_col(source, origin.span.start);
                let text = source.get(origin.span.clone()).unwrap_or("").trim();
                let _ = writeln!(out, "  by `{setting}` at line {line}, column {col}: {text}");
            }
        }
        Reason::Rule(origin) => {
            let (line, col) = line_col(source, origin.span.start);
            let text = source.get(origin.span.clone()).unwrap_or("").lines().next().unwrap_or("").trim();
            let via = origin.group.as_ref().map(|g| format!(" via @{g}")).unwrap_or_default();
            let _ = writeln!(out, "  by the rule at line {line}, column {col}{via}: {text}");
        }
        Reason::Default => {
            let _ = writeln!(out, "  by `default`: no rule matches this call");
        }
        Reason::NewerSyscall => {
            let _ = writeln!(out, "  by `newer-syscalls`: {} is above the table's highest number", call.nr);
        }
        Reason::ForeignArch => {
            let _ = writeln!(
                out,
                "  by `foreign-arch`: arch {:#x} / number {:#x} is not the native ABI of {target}",
                call.arch, call.nr
            );
        }
    }
    out
}

/// Explain a call against a compiled filter: its return value and the instructions it
/// executed, whether the kernel's action cache would skip the filter, and for a
/// notified call what the launcher's supervisor answers (from the manifest's table).
pub fn explain_program(program: &Program, notify: Option<&NotifyTable>, target: Target, call: &Call) -> String {
    let data = SeccompData { nr: call.nr, arch: call.arch, instruction_pointer: 0, args: call.args };
    let outcome = program.run(&data);
    let name = crate::tables::table(target).by_nr(call.nr).map_or("?", |s| s.name());
    let mut out = String::new();
    let _ =
        writeln!(out, "{target} {name}({}) => {} (ret {:#010x})", args_text(&call.args), outcome.action(), outcome.ret);
    if outcome.action() == RetAction::UserNotif {
        let answer = match notify.and_then(|t| t.answer(call.nr)) {
            Some(NotifyAnswer::Continue) => "let the call run and record it (an audited call)".to_owned(),
            Some(NotifyAnswer::Errno(e)) => format!("record the denial and fail the call with {}", Action::Errno(e)),
            Some(NotifyAnswer::Destination) => "let the call run when its address is the proxy's; refuse and record \
                 any other address (a direct connection attempt)"
                .to_owned(),
            None => "deny with EPERM: the manifest has no answer for this number".to_owned(),
        };
        let _ = writeln!(out, "  supervisor: {answer}");
    }
    let cached = crate::bpf::cache::kernel_would_cache(program, call.arch, call.nr);
    let _ = writeln!(
        out,
        "  kernel action cache: {}",
        if cached { "skips the filter for this number (always allowed)" } else { "runs the filter" }
    );
    let _ = writeln!(out, "  path ({} instructions):", outcome.path.len());
    let listing = disassemble(program.insns(), &DisasmContext { target: Some(target) });
    let lines: Vec<&str> = listing.lines().collect();
    for &pc in &outcome.path {
        let _ = writeln!(out, "    {}", lines.get(pc).copied().unwrap_or("?"));
    }
    out
}

fn args_text(args: &[u64; 6]) -> String {
    let last = args.iter().rposition(|&a| a != 0).map_or(0, |i| i + 1);
    args[..last]
        .iter()
        .map(|a| if *a < 4096 { a.to_string() } else { format!("{a:#x}") })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The object of a macOS operation, from `capsulec explain`'s argument: a path for
/// file operations and `process-exec` (resolved as macOS resolves `/tmp`, `/var` and
/// `/etc`), `tcp/PORT`, `udp/PORT`, `tcp/localhost:PORT` or a UNIX socket's path for
/// network operations, `self`, `same-sandbox` or `others` for `signal` and
/// `process-info*`, a name for `sysctl-read` and `mach-lookup`, nothing for
/// `process-fork`.
pub fn macos_object(op: Operation, arg: Option<&str>) -> Result<Object, String> {
    let name = op.name();
    let need = |what: &str| arg.ok_or_else(|| format!("{name} needs {what}"));
    if name.starts_with("file-") || op == Operation::ProcessExec {
        let p = need("an absolute path")?;
        if !p.starts_with('/') {
            return Err(format!("{p:?} is not an absolute path"));
        }
        let parts: Vec<&str> = p.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
        return Ok(Object::Path(resolve_firmlink(&format!("/{}", parts.join("/")))));
    }
    match op {
        Operation::NetworkOutbound | Operation::NetworkInbound | Operation::NetworkBind => {
            let a = need("tcp/PORT, udp/PORT, tcp/localhost:PORT or a UNIX socket path")?;
            let remote = op == Operation::NetworkOutbound;
            if a.starts_with('/') {
                return Ok(Object::UnixSocket { remote, path: resolve_firmlink(a) });
            }
            let (proto, rest) = a.split_once('/').ok_or_else(|| format!("{a:?} is not PROTO/PORT"))?;
            let proto = match proto {
                "tcp" => Proto::Tcp,
                "udp" => Proto::Udp,
                other => return Err(format!("unknown protocol {other:?} (tcp, udp)")),
            };
            let (host, port) = rest.rsplit_once(':').unwrap_or(("203.0.113.7", rest));
            let port = port.parse::<u16>().map_err(|_| format!("{port:?} is not a port"))?;
            Ok(Object::Net { proto, remote, host: host.to_owned(), port })
        }
        Operation::Signal | Operation::ProcessInfo | Operation::ProcessInfoPidinfo => {
            match need("self, same-sandbox or others")? {
                "self" => Ok(Object::Process(TargetKind::Self_)),
                "same-sandbox" => Ok(Object::Process(TargetKind::SameSandbox)),
                "others" => Ok(Object::Process(TargetKind::Others)),
                other => Err(format!("unknown process {other:?} (self, same-sandbox, others)")),
            }
        }
        Operation::SysctlRead => Ok(Object::Sysctl(need("a sysctl name")?.to_owned())),
        Operation::SystemSocket => {
            let d = need("a socket domain (AF_UNIX, AF_INET, ...)")?;
            crate::back::sbpl::ast::SocketDomain::from_name(d)
                .map(Object::Socket)
                .ok_or_else(|| format!("unknown socket domain {d:?}"))
        }
        Operation::MachLookup => Ok(Object::Service(need("a service name")?.to_owned())),
        Operation::ProcessFork => Ok(Object::None),
        _ => Err(format!("{name} is a family; name one operation (file-read-data, network-outbound, ...)")),
    }
}

/// Explain an operation against a macOS profile: the decision and the rule that made
/// it (the last matching one), or the default.
pub fn explain_sbpl(profile: &Profile, bindings: &Bindings, op: Operation, object: &Object) -> Result<String, String> {
    let outcome = evaluate(profile, bindings, op, object).map_err(|e| e.to_string())?;
    let mut out = String::new();
    let verdict = if outcome.verdict == Verdict::Allow { "allow" } else { "deny" };
    let _ = writeln!(out, "macos {} {object} => {verdict}", op.name());
    let _ = writeln!(out, "  with WORKSPACE={} HOME={} TMPDIR={}", bindings.workspace, bindings.home, bindings.tmpdir);
    match outcome.rule {
        None => {
            let _ = writeln!(out, "  by (deny default): no rule matches");
        }
        Some(i) => {
            let _ = writeln!(out, "  by rule {} of {} (the last that matches):", i + 1, profile.rules.len());
            for line in emit::rule_text(&profile.rules[i]).lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    Ok(out)
}

/// `capsulec explain --domain NAME`: whether the proxy lets the command reach `NAME`,
/// by which entry of `network: domains:`, and what else the launcher checks.
pub fn explain_domain(policy: &Policy, name: &str) -> String {
    let mut out = String::new();
    let host = name.trim().trim_end_matches('.').to_ascii_lowercase();
    let Some(proxy) = &policy.launch.network.proxy else {
        let _ = writeln!(
            out,
            "{host} => refused: the policy has no `network: domains:` or `routes:`, so there is no proxy"
        );
        let _ = writeln!(out, "  the command reaches the network only as its syscall and `connect:` port rules allow");
        return out;
    };
    if host.parse::<std::net::IpAddr>().is_ok() {
        let _ = writeln!(out, "{host} => refused: an address, not a name (the proxy admits names only)");
        return out;
    }
    match capsule_artifacts::launch::matching_domain(&proxy.domains, &host) {
        Some(entry) => {
            let _ = writeln!(out, "{host} => allowed through the proxy, by the entry `{entry}` of `network: domains:`");
            if proxy.allow_private {
                let _ = writeln!(out, "  any address it resolves to is accepted (`proxy: allow-private: true`)");
            } else {
                let _ = writeln!(
                    out,
                    "  refused at connect time if it resolves to a loopback, private, link-local or metadata address"
                );
            }
            let _ = writeln!(out, "  on port 443 the TLS ClientHello must name {host} (SNI)");
        }
        None => {
            let _ = writeln!(out, "{host} => refused: not listed in `network: domains:`");
        }
    }
    for route in &proxy.routes {
        let upstream_host =
            route.upstream.split_once("://").map_or("", |(_, rest)| rest).split(':').next().unwrap_or("");
        if upstream_host == host {
            let names: Vec<&str> = route.headers.iter().map(|(n, _)| n.as_str()).collect();
            let _ = writeln!(
                out,
                "  also the upstream of the route {} (headers added by the proxy: {})",
                route.prefix,
                if names.is_empty() { "none".to_owned() } else { names.join(", ") }
            );
        }
    }
    out
}
