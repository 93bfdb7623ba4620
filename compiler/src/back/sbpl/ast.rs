//! The subset of SBPL (Seatbelt profile language) Capsule emits, as types.
//!
//! A profile is `(version 1)`, one `(deny default)`, then `allow`/`deny` rules. A
//! rule names operations from [`Operation`] and filters from [`Filter`]; several
//! filters in one rule are alternatives (any one matching is enough), as in SBPL.
//! There is no `define`, `if`, `import`, `lambda` or other Scheme, so a profile in
//! this subset can be parsed and evaluated without a Mac (`parse.rs`, `eval.rs`).

/// The three launch-time path parameters, bound by `sandbox-exec -D NAME=VALUE`.
pub const PARAMS: [&str; 3] = ["WORKSPACE", "HOME", "TMPDIR"];

/// The port of the launcher's proxy on localhost, bound at launch (`-D PROXY_PORT=N`)
/// for a policy with `network: domains:` or `routes:` and `proxy: port: 0`, the port
/// being the free one the launcher found. Used only in `(remote tcp ...)`.
pub const PROXY_PORT: &str = "PROXY_PORT";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The message of `(deny default (with message ...))`, if any.
    pub default_message: Option<String>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `;` lines printed above the rule: why it is there.
    pub comment: Vec<String>,
    pub verdict: Verdict,
    pub operations: Vec<Operation>,
    /// `(with message "...")`.
    pub message: Option<String>,
    /// Alternatives; an empty list matches every object of the operations.
    pub filters: Vec<Filter>,
}

macro_rules! operations {
    ($($variant:ident = $name:literal,)*) => {
        /// The operations a rule may name. A name ending in `*` is a family: it
        /// matches every operation whose name starts with the part before the `*`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Operation { $($variant,)* }

        impl Operation {
            pub const ALL: &'static [Operation] = &[$(Operation::$variant,)*];
            pub fn name(self) -> &'static str {
                match self { $(Operation::$variant => $name,)* }
            }
            pub fn from_name(name: &str) -> Option<Operation> {
                match name { $($name => Some(Operation::$variant),)* _ => None }
            }
        }
    };
}

operations! {
    FileAll = "file*",
    FileRead = "file-read*",
    FileReadData = "file-read-data",
    FileReadMetadata = "file-read-metadata",
    FileReadXattr = "file-read-xattr",
    FileWrite = "file-write*",
    FileWriteData = "file-write-data",
    FileWriteCreate = "file-write-create",
    FileWriteUnlink = "file-write-unlink",
    FileWriteMode = "file-write-mode",
    FileWriteXattr = "file-write-xattr",
    FileIoctl = "file-ioctl",
    FileMapExecutable = "file-map-executable",
    ProcessExec = "process-exec",
    ProcessFork = "process-fork",
    ProcessInfo = "process-info*",
    ProcessInfoPidinfo = "process-info-pidinfo",
    Signal = "signal",
    NetworkAll = "network*",
    NetworkOutbound = "network-outbound",
    NetworkInbound = "network-inbound",
    NetworkBind = "network-bind",
    SysctlRead = "sysctl-read",
    MachLookup = "mach-lookup",
    SystemSocket = "system-socket",
}

impl Operation {
    /// Whether a rule naming `self` covers the concrete operation `op`.
    pub fn covers(self, op: Operation) -> bool {
        let (mine, theirs) = (self.name(), op.name());
        match mine.strip_suffix('*') {
            Some(prefix) => theirs.starts_with(prefix),
            None => mine == theirs,
        }
    }
}

/// A string in a filter: a literal, a launch parameter, or their concatenation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Str {
    Lit(String),
    /// One of [`PARAMS`], or [`PROXY_PORT`].
    Param(&'static str),
    /// `(string-append ...)` of literals and parameters (never nested).
    Append(Vec<Str>),
}

impl From<&str> for Str {
    fn from(s: &str) -> Str {
        Str::Lit(s.to_owned())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
    UnixSocket,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::UnixSocket => "unix-socket",
        }
    }
}

/// `(target ...)` of `signal` and `process-info*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// The process itself.
    Self_,
    /// Any process running under the same sandbox.
    SameSandbox,
    /// Any other process.
    Others,
}

impl TargetKind {
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Self_ => "self",
            TargetKind::SameSandbox => "same-sandbox",
            TargetKind::Others => "others",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// The path exactly.
    Literal(Str),
    /// The path and everything beneath it, by whole components (`/usr` does not
    /// cover `/usrx`).
    Subpath(Str),
    /// Every path starting with the string (by characters: `/usr` covers `/usrx`).
    Prefix(Str),
    /// A POSIX extended regular expression over the path (see `eval.rs` for the part
    /// of the syntax the evaluator accepts).
    Regex(String),
    RequireAll(Vec<Filter>),
    RequireAny(Vec<Filter>),
    RequireNot(Box<Filter>),
    /// `(remote tcp "*:443")`; `None` for `unix-socket`, which takes no address here.
    /// The address may be built with `(string-append "localhost:" (param "PROXY_PORT"))`.
    Remote(Proto, Option<Str>),
    Local(Proto, Option<Str>),
    GlobalName(String),
    SysctlName(String),
    Target(TargetKind),
    /// `(socket-domain AF_UNIX)` of `system-socket`: the domain of a socket being
    /// created. Seatbelt checks the creation of UNIX and system sockets this way;
    /// IP sockets are governed by the `network-*` rules.
    SocketDomain(SocketDomain),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketDomain {
    Unix,
    Inet,
    Inet6,
    System,
    Route,
}

impl SocketDomain {
    pub const ALL: [SocketDomain; 5] =
        [SocketDomain::Unix, SocketDomain::Inet, SocketDomain::Inet6, SocketDomain::System, SocketDomain::Route];
    pub fn name(self) -> &'static str {
        match self {
            SocketDomain::Unix => "AF_UNIX",
            SocketDomain::Inet => "AF_INET",
            SocketDomain::Inet6 => "AF_INET6",
            SocketDomain::System => "AF_SYSTEM",
            SocketDomain::Route => "AF_ROUTE",
        }
    }
    pub fn from_name(name: &str) -> Option<SocketDomain> {
        SocketDomain::ALL.into_iter().find(|d| d.name() == name)
    }
}
