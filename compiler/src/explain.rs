//! `capsulec explain`: the decision for one call, and what made it: the rule in the
//! policy, or the path through a compiled filter.

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
    let name = crate::tables::table(target).by_nr(call.nr).map_or("?", |s| s.name);
    let audited = if d.audited { " (audited: recorded in the audit log)" } else { "" };
    let _ = writeln!(out, "{target} {name}({}) => {}{audited}", args_text(&call.args), d.action);
    match &d.reason {
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
    let name = crate::tables::table(target).by_nr(call.nr).map_or("?", |s| s.name);
    let mut out = String::new();
    let _ =
        writeln!(out, "{target} {name}({}) => {} (ret {:#010x})", args_text(&call.args), outcome.action(), outcome.ret);
    if outcome.action() == RetAction::UserNotif {
        let answer = match notify.and_then(|t| t.answer(call.nr)) {
            Some(NotifyAnswer::Continue) => "let the call run and record it (an audited call)".to_owned(),
            Some(NotifyAnswer::Errno(e)) => format!("record the denial and fail the call with {}", Action::Errno(e)),
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
        let upstream_host = route.upstream.trim_start_matches("http://").split(':').next().unwrap_or("");
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
