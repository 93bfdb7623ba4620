//! Translation validation for the macOS profile: before anything is written, the
//! emitted text is parsed back and evaluated (`eval.rs`) for a set of probes, and each
//! decision must equal the policy's own, computed here from `LaunchSettings` and
//! [`SyscallFacts`] with Landlock's semantics (a path grants itself and everything
//! beneath it, by whole components; a section left out is unrestricted), widened only
//! by the documented platform baseline.
//!
//! Probes, under two sets of parameter bindings (a home-directory checkout; a
//! workspace in /private/tmp with HOME in /private/var):
//! - each policy path with its variables bound, its parent, a child, a sibling that
//!   shares its prefix (`/usr` → `/usrx`), and its `/private` and non-`/private` forms;
//! - fixed edges: `/`, `/usr`, `/usrx`, `/usr/local`, `/tmp`, `/private/tmp`, `/etc`,
//!   devices, and the home directory's secrets (`~/.ssh`, `~/.aws`, `~/.gnupg`, the
//!   keychains);
//! - for each probe path: read data, extended attributes and metadata, write, create,
//!   unlink, change mode, exec and map executable;
//! - TCP connect, bind and accept on the policy's ports, the proxy's port (fixed by
//!   the policy or as bound) and 22, 53, 80, 443, 8080, 65535, to a remote host and to
//!   localhost (only the proxy's port on localhost is open to a policy with domains or
//!   routes); UDP; UNIX sockets (create, connect,
//!   bind) and no other socket domain; fork; signals to itself, the sandbox and
//!   others; process information, a Mach service and a sysctl outside the baseline.
//!
//! Seatbelt sees resolved paths, so the profile is asked about the probe with
//! `/tmp`, `/var` and `/etc` resolved; the reference compares the probe as written,
//! and its alias, with the policy's paths as written.

use super::SyscallFacts;
use super::ast::{Operation, Profile, Proto, SocketDomain, TargetKind, Verdict};
use super::eval::{Bindings, EvalError, Object, evaluate, is_subpath};
use super::map::{FIRMLINKS, baseline, resolve_firmlink};
use crate::ir::Policy;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbplReport {
    /// Decisions compared.
    pub probes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SbplValidationError {
    #[error("internal error: the emitted macos.sb does not parse back: {0}")]
    Parse(#[from] super::parse::ParseError),
    #[error("internal error: the emitted macos.sb parses to another profile than the one emitted")]
    RoundTrip,
    #[error("internal error: the macos.sb evaluator refused the profile: {0}")]
    Eval(#[from] EvalError),
    #[error(
        "internal error: macos.sb disagrees with the policy for {op} on {object} (WORKSPACE={workspace}): \
         the policy says {expected}, the profile says {found}"
    )]
    Mismatch { op: &'static str, object: String, workspace: String, expected: &'static str, found: &'static str },
}

/// The bindings the probes are evaluated under.
pub fn probe_bindings() -> [Bindings; 2] {
    [
        Bindings {
            workspace: "/Users/capsule/src/project".into(),
            home: "/Users/capsule".into(),
            tmpdir: "/private/var/folders/zz/capsule/T".into(),
            proxy_port: "49152".into(),
        },
        Bindings {
            workspace: "/private/tmp/ws".into(),
            home: "/private/var/root".into(),
            tmpdir: "/private/tmp".into(),
            proxy_port: "3128".into(),
        },
    ]
}

fn substitute(rule: &str, b: &Bindings) -> String {
    rule.replace("${WORKSPACE}", &b.workspace).replace("${HOME}", &b.home).replace("${TMPDIR}", &b.tmpdir)
}

fn normalise(p: &str) -> String {
    let parts: Vec<&str> = p.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    format!("/{}", parts.join("/"))
}

/// The probe and, for a path through a macOS root symlink, its other spelling.
fn aliases(p: &str) -> Vec<String> {
    let mut out = vec![p.to_owned()];
    for (link, real) in FIRMLINKS {
        for (from, to) in [(link, real), (real, link)] {
            if p == *from || p.strip_prefix(from).is_some_and(|r| r.starts_with('/')) {
                out.push(format!("{to}{}", &p[from.len()..]));
            }
        }
    }
    out
}

/// Landlock's answer: `rules` unrestricted (`None`) or one of them covers the path.
fn granted(rules: &Option<Vec<String>>, path: &str, b: &Bindings) -> bool {
    match rules {
        None => true,
        Some(list) => aliases(path).iter().any(|a| list.iter().any(|r| is_subpath(a, &normalise(&substitute(r, b))))),
    }
}

fn probe_paths(policy: &Policy, b: &Bindings) -> Vec<String> {
    let fs = &policy.launch.filesystem;
    let mut out: Vec<String> = Vec::new();
    for r in [&fs.read, &fs.write, &fs.execute].into_iter().flatten().flatten() {
        let p = normalise(&substitute(r, b));
        let parent =
            p.rsplit_once('/').map_or("/".to_owned(), |(a, _)| if a.is_empty() { "/".into() } else { a.into() });
        out.push(format!("{}/capsule-probe", p.trim_end_matches('/')));
        out.push(format!("{p}x"));
        out.push(parent);
        out.extend(aliases(&p));
    }
    let h = &b.home;
    for fixed in [
        "/",
        "/usr",
        "/usrx",
        "/usr/bin/true",
        "/usr/lib/libSystem.B.dylib",
        "/usr/local/bin/tool",
        "/System/Library/Frameworks/x",
        "/System/Volumes/Preboot/Cryptexes/OS/System/Library/dyld/x",
        "/bin/sh",
        "/tmp",
        "/tmp/x",
        "/private/tmp/x",
        "/etc/passwd",
        "/private/etc/passwd",
        "/var/db/x",
        "/private/var/x",
        "/private",
        "/dev/null",
        "/dev/zero",
        "/dev/urandom",
        "/dev/disk0",
        "/dev/tty",
        "/Users",
        "/Applications/x",
        "/opt/homebrew/bin/x",
    ] {
        out.push(fixed.to_owned());
    }
    for secret in [
        ".ssh",
        ".ssh/id_ed25519",
        ".aws/credentials",
        ".gnupg/private-keys-v1.d",
        "Library/Keychains/login.keychain-db",
        ".gitconfig",
    ] {
        out.push(format!("{h}/{secret}"));
    }
    out.push(h.clone());
    out.push(format!("{}/src/x", b.workspace));
    out.push(format!("{}/.git/config", b.workspace));
    out.push(format!("{}x", b.workspace));
    out.push(format!("{}/x", b.tmpdir));
    out.sort();
    out.dedup();
    out
}

fn word(v: bool) -> &'static str {
    if v { "allow" } else { "deny" }
}

/// Check `text` (the emitted profile of `expected_profile`) against the policy.
pub fn validate(
    policy: &Policy,
    facts: &SyscallFacts,
    expected_profile: &Profile,
    text: &str,
) -> Result<SbplReport, SbplValidationError> {
    let profile = super::parse::parse(text)?;
    if &profile != expected_profile {
        return Err(SbplValidationError::RoundTrip);
    }
    let base = Profile { default_message: None, rules: baseline() };
    let launch = &policy.launch;
    let fs = &launch.filesystem;
    let net = &launch.network;
    let mut probes = 0;
    for b in probe_bindings() {
        let mut check = |op: Operation, object: Object, policy_says: bool| -> Result<(), SbplValidationError> {
            let baseline_says = evaluate(&base, &b, op, &object)?.verdict == Verdict::Allow;
            let found = evaluate(&profile, &b, op, &object)?.verdict == Verdict::Allow;
            probes += 1;
            let expected = policy_says || baseline_says;
            if expected != found {
                return Err(SbplValidationError::Mismatch {
                    op: op.name(),
                    object: object.to_string(),
                    workspace: b.workspace.clone(),
                    expected: word(expected),
                    found: word(found),
                });
            }
            Ok(())
        };
        for p in probe_paths(policy, &b) {
            let real = Object::Path(resolve_firmlink(&p));
            use Operation::*;
            check(FileReadData, real.clone(), granted(&fs.read, &p, &b))?;
            check(FileReadXattr, real.clone(), granted(&fs.read, &p, &b))?;
            check(FileReadMetadata, real.clone(), true)?;
            for op in [FileWriteData, FileWriteCreate, FileWriteUnlink, FileWriteMode] {
                check(op, real.clone(), granted(&fs.write, &p, &b))?;
            }
            check(ProcessExec, real.clone(), granted(&fs.execute, &p, &b))?;
            check(FileMapExecutable, real.clone(), granted(&fs.execute, &p, &b))?;
            // A path is never a network address, a service or a sysctl.
            check(NetworkOutbound, real.clone(), false)?;
            check(FileIoctl, real, false)?;
        }
        let mut ports: Vec<u16> = vec![22, 53, 80, 443, 8080, 65535];
        // The port the command may reach the proxy on, under these bindings.
        let proxy_port = net.proxy.as_ref().filter(|_| facts.proxy).map(|p| {
            if p.port != 0 { p.port } else { b.proxy_port.parse().expect("a probe binding's port is a number") }
        });
        ports.extend(proxy_port);
        ports.extend(probe_bindings().iter().filter_map(|b| b.proxy_port.parse::<u16>().ok()));
        for list in [&net.connect, &net.bind].into_iter().flatten() {
            ports.extend(list.iter().map(|r| r.port));
        }
        ports.sort_unstable();
        ports.dedup();
        let listed = |l: &Option<Vec<capsule_artifacts::launch::PortRule>>, p: u16| {
            l.as_ref().is_none_or(|l| l.iter().any(|r| r.port == p))
        };
        for port in ports {
            for host in ["203.0.113.7", "localhost"] {
                let remote = |proto| Object::Net { proto, remote: true, host: host.into(), port };
                let local = |proto| Object::Net { proto, remote: false, host: host.into(), port };
                let to_proxy = host == "localhost" && proxy_port == Some(port);
                let tcp_out = (facts.inet_stream && facts.connect && listed(&net.connect, port)) || to_proxy;
                let tcp_bind = facts.inet_stream && facts.bind && listed(&net.bind, port);
                check(Operation::NetworkOutbound, remote(Proto::Tcp), tcp_out)?;
                check(Operation::NetworkBind, local(Proto::Tcp), tcp_bind)?;
                check(Operation::NetworkInbound, local(Proto::Tcp), tcp_bind)?;
                check(Operation::NetworkBind, remote(Proto::Tcp), false)?;
                check(Operation::NetworkOutbound, local(Proto::Tcp), false)?;
                check(Operation::NetworkOutbound, remote(Proto::Udp), facts.inet_dgram)?;
                check(Operation::NetworkInbound, local(Proto::Udp), facts.inet_dgram)?;
                check(Operation::NetworkBind, local(Proto::Udp), facts.inet_dgram && facts.bind)?;
            }
        }
        for sock in ["/private/var/run/docker.sock", "/private/var/run/mDNSResponder"] {
            let unix_out = facts.unix && facts.connect;
            check(Operation::NetworkOutbound, Object::UnixSocket { remote: true, path: sock.into() }, unix_out)?;
            let unix_bind = facts.unix && facts.bind;
            check(Operation::NetworkBind, Object::UnixSocket { remote: false, path: sock.into() }, unix_bind)?;
        }
        check(Operation::SystemSocket, Object::Socket(SocketDomain::Unix), facts.unix)?;
        // Seatbelt gates UNIX and system sockets by domain; IP sockets are decided by
        // the network rules, so no rule may name them here.
        for d in [SocketDomain::Inet, SocketDomain::Inet6, SocketDomain::System, SocketDomain::Route] {
            check(Operation::SystemSocket, Object::Socket(d), false)?;
        }
        check(Operation::ProcessFork, Object::None, facts.fork)?;
        check(Operation::Signal, Object::Process(TargetKind::Self_), facts.kill)?;
        check(Operation::Signal, Object::Process(TargetKind::SameSandbox), facts.kill)?;
        check(Operation::Signal, Object::Process(TargetKind::Others), facts.kill && !launch.landlock.scope)?;
        check(Operation::ProcessInfoPidinfo, Object::Process(TargetKind::Others), false)?;
        check(Operation::MachLookup, Object::Service("com.apple.securityd".into()), false)?;
        check(Operation::SysctlRead, Object::Sysctl("kern.proc.all".into()), false)?;
    }
    Ok(SbplReport { probes })
}
