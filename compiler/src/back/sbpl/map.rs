//! The mapping from a policy to a profile: the platform baseline, then one group of
//! rules per policy section. docs/macos.md gives the reason for every line.

use super::SbplError;
use super::ast::{Filter, Operation, Profile, Proto, Rule, Str, TargetKind, Verdict};
use crate::ir::{Call, Policy, decide};
use crate::tables;
use capsule_artifacts::Target;
use capsule_artifacts::launch::PortRule;

/// What the policy's syscall rules say about the things Seatbelt can enforce. Read
/// from the Linux IR with the reference semantics (`ir::decide`); with several Linux
/// targets, a call counts as allowed only when every target lets it run (macOS gets
/// the narrower answer). A policy without a Linux target compiles its syscall rules
/// to nothing (W0307), so every call gets `default` there, and here too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyscallFacts {
    /// fork, vfork or clone(SIGCHLD) runs: processes may be created.
    pub fork: bool,
    /// socket(AF_INET or AF_INET6, SOCK_STREAM) runs.
    pub inet_stream: bool,
    /// socket(AF_INET or AF_INET6, SOCK_DGRAM) runs.
    pub inet_dgram: bool,
    /// socket(AF_UNIX, SOCK_STREAM) runs.
    pub unix: bool,
    /// connect runs.
    pub connect: bool,
    /// bind runs.
    pub bind: bool,
    /// kill runs.
    pub kill: bool,
    /// The policy names domains or routes (`network: domains:`/`routes:`), and its
    /// syscall rules let the command make a TCP socket and connect: the command may
    /// reach the launcher's proxy on localhost, and no other IP address.
    pub proxy: bool,
}

/// The syscalls whose rules the macOS profile reads (through [`SyscallFacts`]); every
/// other syscall rule has no effect on macOS.
pub const MAPPED_SYSCALLS: &[&str] = &["fork", "vfork", "clone", "socket", "connect", "bind", "kill"];

impl SyscallFacts {
    pub fn of(policy: &Policy) -> SyscallFacts {
        let mut facts = SyscallFacts::of_rules(policy);
        // Network by name (`network: domains:`/`routes:`) reaches the network only
        // through the launcher's proxy: on macOS such a policy gets outbound TCP to the
        // proxy's port on localhost and nothing else (no UDP, no port rules, which
        // would open those ports on every host), as the network namespace does on
        // Linux (docs/macos.md).
        if policy.launch.network.proxy.is_some() {
            facts.proxy = facts.inet_stream && facts.connect;
            facts.inet_stream = false;
            facts.inet_dgram = false;
        }
        facts
    }

    fn of_rules(policy: &Policy) -> SyscallFacts {
        let linux: Vec<Target> = policy.syscalls.iter().map(|s| s.target).collect();
        let d = policy.default.lets_call_run();
        if linux.is_empty() {
            return SyscallFacts {
                fork: d,
                inet_stream: d,
                inet_dgram: d,
                unix: d,
                connect: d,
                bind: d,
                kill: d,
                proxy: false,
            };
        }
        let all = |probe: &dyn Fn(Target) -> bool| linux.iter().all(|&t| probe(t));
        let runs = |t: Target, name: &str, args: &[&str]| -> Option<bool> {
            let table = tables::table(t);
            let def = table.by_name(name)?;
            let mut values = [0u64; 6];
            for (v, a) in values.iter_mut().zip(args) {
                *v = table.constant(a).or_else(|| a.parse().ok()).expect("a known constant");
            }
            let call = Call { arch: t.audit_arch().expect("Linux"), nr: def.nr, args: values };
            Some(decide(policy, t, &call).action.lets_call_run())
        };
        let socket = |t: Target, family: &str, ty: &str| runs(t, "socket", &[family, ty, "0"]).unwrap_or(false);
        SyscallFacts {
            fork: all(&|t| {
                ["fork", "vfork"].iter().any(|n| runs(t, n, &[]) == Some(true))
                    || runs(t, "clone", &["SIGCHLD"]) == Some(true)
            }),
            inet_stream: all(&|t| socket(t, "AF_INET", "SOCK_STREAM") || socket(t, "AF_INET6", "SOCK_STREAM")),
            inet_dgram: all(&|t| socket(t, "AF_INET", "SOCK_DGRAM") || socket(t, "AF_INET6", "SOCK_DGRAM")),
            unix: all(&|t| socket(t, "AF_UNIX", "SOCK_STREAM")),
            connect: all(&|t| runs(t, "connect", &["3", "4096", "16"]) == Some(true)),
            bind: all(&|t| runs(t, "bind", &["3", "4096", "16"]) == Some(true)),
            kill: all(&|t| runs(t, "kill", &["1", "15"]) == Some(true)),
            proxy: false,
        }
    }
}

fn rule(comment: &[&str], verdict: Verdict, ops: &[Operation], filters: Vec<Filter>) -> Rule {
    Rule {
        comment: comment.iter().map(|s| (*s).to_owned()).collect(),
        verdict,
        operations: ops.to_vec(),
        message: None,
        filters,
    }
}

fn lit(s: &str) -> Str {
    Str::Lit(s.to_owned())
}

/// The sysctls libSystem, dyld and common runtimes (Python, Go, Node) read at start:
/// CPU count, type, name and performance levels, page and cache sizes, memory size,
/// the OS version and variant, and the stack address. Read-only, and the same for
/// every process on the machine.
pub const BASELINE_SYSCTLS: &[&str] = &[
    "hw.activecpu",
    "hw.byteorder",
    "hw.cachelinesize",
    "hw.cpufamily",
    "hw.cputype",
    "hw.logicalcpu",
    "hw.logicalcpu_max",
    "hw.machine",
    "hw.memsize",
    "hw.model",
    "hw.ncpu",
    "hw.nperflevels",
    "hw.pagesize",
    "hw.pagesize_compat",
    "hw.physicalcpu",
    "hw.physicalcpu_max",
    "kern.argmax",
    "kern.hostname",
    "kern.maxfilesperproc",
    "kern.osproductversion",
    "kern.osrelease",
    "kern.ostype",
    "kern.osvariant_status",
    "kern.osversion",
    "kern.usrstack64",
    "kern.version",
    "machdep.cpu.brand_string",
    "sysctl.proc_cputype",
];

/// The Mach services of the baseline: the unified log (os_log, and the older ASL
/// client), notifyd (libSystem's notify_* calls, which time zone and locale code
/// uses), and the user and group look-ups (getpwuid, which git and ssh call).
pub const BASELINE_SERVICES: &[&str] = &[
    "com.apple.logd",
    "com.apple.system.logger",
    "com.apple.system.notification_center",
    "com.apple.system.opendirectoryd.libinfo",
];

/// Devices every program may read, and the two it may write: data sinks and sources
/// that hold nothing of anyone's.
pub const BASELINE_READ_DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"];
pub const BASELINE_WRITE_DEVICES: &[&str] = &["/dev/null", "/dev/zero"];

/// What any macOS program needs to start, whatever the policy says. Nothing in it is
/// writable except [`BASELINE_WRITE_DEVICES`].
pub fn baseline() -> Vec<Rule> {
    use Operation::*;
    let paths = |ps: &[&str]| ps.iter().map(|p| Filter::Literal(lit(p))).collect::<Vec<_>>();
    vec![
        rule(
            &[
                "baseline: dyld maps the program's libraries from the shared cache (under /System/Library,",
                "or /System/Volumes/Preboot/Cryptexes/OS from macOS 13) and /usr/lib; read-only",
            ],
            Verdict::Allow,
            &[FileRead, FileMapExecutable],
            vec![
                Filter::Subpath(lit("/System/Library")),
                Filter::Subpath(lit("/System/Volumes/Preboot/Cryptexes/OS")),
                Filter::Subpath(lit("/usr/lib")),
            ],
        ),
        rule(
            &["baseline: data sources and sinks that hold nothing"],
            Verdict::Allow,
            &[FileRead],
            paths(BASELINE_READ_DEVICES),
        ),
        rule(
            &["baseline: the only writable files of the baseline"],
            Verdict::Allow,
            &[FileWriteData],
            paths(BASELINE_WRITE_DEVICES),
        ),
        rule(
            &["baseline: a process may look at itself (proc_pidinfo on its own pid, as libSystem does)"],
            Verdict::Allow,
            &[ProcessInfo],
            vec![Filter::Target(TargetKind::Self_)],
        ),
        rule(
            &["baseline: the sysctls libSystem and language runtimes read at start (CPU, memory, OS version)"],
            Verdict::Allow,
            &[SysctlRead],
            BASELINE_SYSCTLS.iter().map(|s| Filter::SysctlName((*s).to_owned())).collect(),
        ),
        rule(
            &["baseline: the unified log, notifyd and user look-ups (getpwuid)"],
            Verdict::Allow,
            &[MachLookup],
            BASELINE_SERVICES.iter().map(|s| Filter::GlobalName((*s).to_owned())).collect(),
        ),
    ]
}

/// Where macOS keeps the directories that are symlinks in `/`: Seatbelt sees the
/// resolved path, so a rule must name the real one.
pub const FIRMLINKS: &[(&str, &str)] = &[("/tmp", "/private/tmp"), ("/var", "/private/var"), ("/etc", "/private/etc")];

/// A policy path as SBPL: variables become `(param ...)`, the rest is normalised
/// (no empty or `.` components, no trailing slash) and `/tmp`, `/var`, `/etc` become
/// their `/private` forms.
pub fn path(rule_path: &str) -> Result<Str, SbplError> {
    let bad = |why: &str| SbplError::Path { path: rule_path.to_owned(), why: why.to_owned() };
    if rule_path.contains('\0') {
        return Err(bad("it contains a NUL character, which Seatbelt would cut the path at"));
    }
    let (param, rest) = match rule_path.strip_prefix("${") {
        Some(after) => {
            let (name, rest) = after.split_once('}').ok_or_else(|| bad("an unclosed variable"))?;
            let p = super::ast::PARAMS.iter().find(|p| **p == name).ok_or_else(|| bad("an unknown variable"))?;
            (Some(*p), rest)
        }
        None => (None, rule_path),
    };
    if rest.contains("${") {
        return Err(bad("a variable after the start of the path"));
    }
    if !rest.is_empty() && !rest.starts_with('/') {
        return Err(bad("a variable must be followed by `/` or end the path"));
    }
    let components: Vec<&str> = rest.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    let tail = if components.is_empty() { String::new() } else { format!("/{}", components.join("/")) };
    Ok(match param {
        Some(p) if tail.is_empty() => Str::Param(p),
        Some(p) => Str::Append(vec![Str::Param(p), Str::Lit(tail)]),
        None if tail.is_empty() => lit("/"),
        None => Str::Lit(resolve_firmlink(&tail)),
    })
}

/// `/tmp/x` → `/private/tmp/x`; other paths unchanged. `path` is normalised.
pub fn resolve_firmlink(path: &str) -> String {
    for (link, real) in FIRMLINKS {
        if path == *link || path.strip_prefix(link).is_some_and(|r| r.starts_with('/')) {
            return format!("{real}{}", &path[link.len()..]);
        }
    }
    path.to_owned()
}

fn subpaths(paths: &[String]) -> Result<Vec<Filter>, SbplError> {
    let mut out: Vec<Filter> = Vec::new();
    for p in paths {
        let f = Filter::Subpath(path(p)?);
        if !out.contains(&f) {
            out.push(f);
        }
    }
    Ok(out)
}

fn ports(side_remote: bool, proto: Proto, rules: &[PortRule]) -> Vec<Filter> {
    let mut ps: Vec<u16> = rules.iter().map(|r| r.port).collect();
    ps.sort_unstable();
    ps.dedup();
    ps.into_iter()
        .map(|p| {
            let a = Some(Str::Lit(format!("*:{p}")));
            if side_remote { Filter::Remote(proto, a) } else { Filter::Local(proto, a) }
        })
        .collect()
}

/// `localhost:PORT` of the proxy: the policy's port when it fixes one, else the
/// `PROXY_PORT` parameter, bound by the launcher to the free port it found.
pub fn proxy_address(port: u16) -> Str {
    if port == 0 {
        Str::Append(vec![lit("localhost:"), Str::Param(super::ast::PROXY_PORT)])
    } else {
        Str::Lit(format!("localhost:{port}"))
    }
}

/// The whole profile for a policy.
pub fn profile(policy: &Policy, facts: &SyscallFacts) -> Result<Profile, SbplError> {
    use Operation::*;
    let launch = &policy.launch;
    let mut rules = baseline();
    rules.push(rule(
        &["filesystem: metadata (stat, whether a path exists) everywhere, as under Landlock"],
        Verdict::Allow,
        &[FileReadMetadata],
        vec![],
    ));
    // A section left out is unrestricted (Landlock gets no rule for it); an empty
    // list grants nothing, so it emits no rule (a rule without filters matches all).
    let fs = &launch.filesystem;
    for (paths, ops, what) in [
        (&fs.read, &[FileRead][..], "filesystem.read: file-read* beneath each path"),
        (&fs.write, &[FileWrite][..], "filesystem.write: file-write* beneath each path"),
        (
            &fs.execute,
            &[ProcessExec, FileMapExecutable][..],
            "filesystem.execute: process-exec and file-map-executable beneath each path",
        ),
    ] {
        match paths {
            None => rules.push(rule(
                &[&format!("{what} (unrestricted: the policy lists none)")],
                Verdict::Allow,
                ops,
                vec![],
            )),
            Some(list) if list.is_empty() => {}
            Some(list) => rules.push(rule(&[what], Verdict::Allow, ops, subpaths(list)?)),
        }
    }
    if facts.fork {
        rules.push(rule(
            &["processes: the policy lets the command create processes"],
            Verdict::Allow,
            &[ProcessFork],
            vec![],
        ));
    }
    if facts.kill {
        if launch.landlock.scope {
            rules.push(rule(
                &["signals: only to processes of this sandbox, as Landlock's signal scoping"],
                Verdict::Allow,
                &[Signal],
                vec![Filter::Target(TargetKind::SameSandbox)],
            ));
        } else {
            rules.push(rule(
                &["signals: unscoped, as the policy asks (landlock scope off)"],
                Verdict::Allow,
                &[Signal],
                vec![],
            ));
        }
    }
    let net = &launch.network;
    if facts.inet_stream && facts.connect {
        match &net.connect {
            None => rules.push(rule(
                &["network.connect: outbound TCP to any port (the policy lists none)"],
                Verdict::Allow,
                &[NetworkOutbound],
                vec![Filter::Remote(Proto::Tcp, Some("*:*".into()))],
            )),
            Some(list) if list.is_empty() => {}
            Some(list) => rules.push(rule(
                &["network.connect: outbound TCP to these ports"],
                Verdict::Allow,
                &[NetworkOutbound],
                ports(true, Proto::Tcp, list),
            )),
        }
    }
    if facts.proxy
        && let Some(proxy) = &net.proxy
    {
        rules.push(rule(
            &["network: domains/routes: outbound TCP to the launcher's proxy on localhost only"],
            Verdict::Allow,
            &[NetworkOutbound],
            vec![Filter::Remote(Proto::Tcp, Some(proxy_address(proxy.port)))],
        ));
    }
    if facts.inet_stream && facts.bind {
        let what = "network.bind: bind and accept TCP on these ports";
        match &net.bind {
            None => rules.push(rule(
                &["network.bind: bind and accept TCP on any port (the policy lists none)"],
                Verdict::Allow,
                &[NetworkBind, NetworkInbound],
                vec![Filter::Local(Proto::Tcp, Some("*:*".into()))],
            )),
            Some(list) if list.is_empty() => {}
            Some(list) => rules.push(rule(
                &[what],
                Verdict::Allow,
                &[NetworkBind, NetworkInbound],
                ports(false, Proto::Tcp, list),
            )),
        }
    }
    if facts.inet_dgram {
        rules.push(rule(
            &["network: UDP, which Landlock does not restrict, since the policy allows IP datagram sockets"],
            Verdict::Allow,
            &[NetworkOutbound, NetworkInbound],
            vec![Filter::Remote(Proto::Udp, Some("*:*".into())), Filter::Local(Proto::Udp, Some("*:*".into()))],
        ));
        if facts.bind {
            rules.push(rule(
                &["network: binding UDP ports"],
                Verdict::Allow,
                &[NetworkBind],
                vec![Filter::Local(Proto::Udp, Some("*:*".into()))],
            ));
        }
    }
    if facts.unix {
        rules.push(rule(
            &["network: creating AF_UNIX sockets (socketpair included), which the policy allows"],
            Verdict::Allow,
            &[SystemSocket],
            vec![Filter::SocketDomain(super::ast::SocketDomain::Unix)],
        ));
    }
    if facts.unix && facts.connect {
        rules.push(rule(
            &["network: connecting to UNIX sockets, since the policy allows AF_UNIX sockets and connect"],
            Verdict::Allow,
            &[NetworkOutbound],
            vec![Filter::Remote(Proto::UnixSocket, None)],
        ));
    }
    if facts.unix && facts.bind {
        rules.push(rule(
            &["network: binding UNIX sockets, since the policy allows AF_UNIX sockets and bind"],
            Verdict::Allow,
            &[NetworkBind, NetworkInbound],
            vec![Filter::Local(Proto::UnixSocket, None)],
        ));
    }
    Ok(Profile { default_message: None, rules })
}
