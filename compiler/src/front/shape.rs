//! The shape of a policy document, as data: every key, the type of its value, and
//! what it means. One table, three readers:
//!
//! - `parse.rs` reads a mapping's entries through it (`Parser::known`: any other key
//!   is E0101, with "did you mean" from this table), so it reads no key the table
//!   lacks; `every_key_of_the_shape_is_parsed` below checks the other direction;
//! - `convert.rs` types the scalars of a YAML policy by it when writing the JSON form
//!   (`processes: 0x10` becomes the number 16, `name: 123` the string "123");
//! - `schema.rs` generates the JSON Schema of the language (`capsulec schema`,
//!   docs/capsule.schema.json) from it.
//!
//! The table says what the language accepts as a document; the checks that need the
//! syscall tables (names, arguments, constants, conditions) stay in `lower.rs`.

/// A key of a mapping in the policy document.
#[derive(Debug)]
pub struct Field {
    pub key: &'static str,
    pub ty: Ty,
    /// One sentence for people (editors show it on hover).
    pub doc: &'static str,
}

/// The type of a value in the policy document.
#[derive(Debug)]
pub enum Ty {
    /// A non-negative integer from `min` to `max` (YAML also accepts `0x`, `0o`, `0b`
    /// and `_` separators; the JSON form writes it in decimal).
    Integer { min: u64, max: u64 },
    /// `true` or `false`.
    Bool,
    /// Any string.
    String,
    /// One of these strings.
    Enum(&'static [&'static str]),
    /// An action: `allow`, `errno(NAME or N)`, `kill-process`, `kill-thread`, `trap`, `log`.
    /// `deny` says it is the action of a deny rule, which cannot be `allow`.
    Action { deny: bool },
    /// An absolute path, or one starting with `${WORKSPACE}`, `${HOME}` or `${TMPDIR}`;
    /// no `..` component.
    Path,
    /// `tcp/PORT`.
    PortRule,
    /// A duration: seconds as an integer, or `90s`, `5m`, `2h`.
    Duration,
    /// A size: bytes as an integer, or `512KiB`, `2GiB`, `1GB`.
    Size,
    /// An environment variable name.
    EnvName,
    /// A mapping from environment variable names to string values (`env: set:`).
    EnvMap,
    /// A DNS name or `*.suffix` (`network: domains:`).
    Domain,
    /// A route's path prefix: `/` followed by path characters, no trailing `/`.
    RoutePrefix,
    /// A route's upstream: `http://host[:port]` or `https://host[:port]`.
    Upstream,
    /// A mapping from HTTP header names to value templates (`${env:NAME}` allowed).
    HeaderMap,
    /// A list of values of one type.
    List(&'static Ty),
    /// A mapping with exactly these keys, each optional unless listed in `required`.
    Map { fields: &'static [Field], required: &'static [&'static str] },
    /// A list of syscall rules (`syscalls: allow:`, `deny:`, `audit:`); an empty
    /// (null) section is accepted with a warning (E0113).
    Rules { deny: bool },
}

/// The targets a policy may name (the same as `capsule_artifacts::Target::ALL`; a test
/// checks it).
pub const TARGETS: &[&str] = &["linux-x86_64", "linux-aarch64", "macos"];
/// The audit record classes of `audit: record:`.
pub const RECORD_CLASSES: &[&str] = &["invocations", "denials", "audited-syscalls"];
/// The values of `landlock: mode:`.
pub const LANDLOCK_MODES: &[&str] = &["enforce", "best-effort"];
/// The actions written as a word (the others are `errno(NAME)` and `errno(N)`).
pub const ACTION_WORDS: &[&str] = &["allow", "kill-process", "kill-thread", "trap", "log"];
/// The variables a `filesystem:` path may start with.
pub const PATH_VARIABLES: &[&str] = &["WORKSPACE", "HOME", "TMPDIR"];
/// The policy language version this compiler reads.
pub const VERSION: u64 = 1;

const PATHS: Ty = Ty::List(&Ty::Path);
const PORTS: Ty = Ty::List(&Ty::PortRule);
const COUNT: Ty = Ty::Integer { min: 0, max: u64::MAX };

/// The top level of a policy.
pub const POLICY: &[Field] = &[
    Field {
        key: "version",
        ty: Ty::Integer { min: VERSION, max: VERSION },
        doc: "The policy language version; must be 1.",
    },
    Field { key: "name", ty: Ty::String, doc: "The policy's name, shown in logs and manifests (default: unnamed)." },
    Field { key: "description", ty: Ty::String, doc: "Free text." },
    Field {
        key: "default",
        ty: Ty::Action { deny: false },
        doc: "What a call that no rule matches gets (default: errno(EPERM)).",
    },
    Field {
        key: "newer-syscalls",
        ty: Ty::Action { deny: false },
        doc: "What syscall numbers above the compiler's table get (default: errno(ENOSYS), so libc falls back).",
    },
    Field {
        key: "foreign-arch",
        ty: Ty::Action { deny: false },
        doc: "What calls through another ABI (i386 int 0x80, x32) get (default: kill-process).",
    },
    Field {
        key: "targets",
        ty: Ty::List(&Ty::Enum(TARGETS)),
        doc: "The platforms to compile for (default: all three).",
    },
    Field {
        key: "syscalls",
        ty: Ty::Map { fields: SYSCALLS, required: &[] },
        doc: "The syscall rules: allow, deny and audit lists. Deny wins, then audit, then allow, then default.",
    },
    Field {
        key: "filesystem",
        ty: Ty::Map { fields: FILESYSTEM, required: &[] },
        doc: "Landlock path lists; a missing class is unrestricted, an empty list allows none.",
    },
    Field {
        key: "network",
        ty: Ty::Map { fields: NETWORK, required: &[] },
        doc: "Landlock TCP port lists (ABI 4); a missing class is unrestricted, an empty list allows none.",
    },
    Field { key: "limits", ty: Ty::Map { fields: LIMITS, required: &[] }, doc: "Resource limits (soft and hard)." },
    Field {
        key: "env",
        ty: Ty::Map { fields: ENV, required: &[] },
        doc: "The command's environment, which starts empty: names passed through, then names set.",
    },
    Field { key: "audit", ty: Ty::Map { fields: AUDIT, required: &[] }, doc: "The audit log and what it records." },
    Field { key: "landlock", ty: Ty::Map { fields: LANDLOCK, required: &[] }, doc: "Landlock requirements." },
];

/// The whole document: a mapping of [`POLICY`]'s keys, `version` required.
pub const DOCUMENT: Ty = Ty::Map { fields: POLICY, required: &["version"] };

pub const SYSCALLS: &[Field] = &[
    Field {
        key: "allow",
        ty: Ty::Rules { deny: false },
        doc: "Rules for calls that are allowed: a syscall, an \"@group\", or `name: CONDITION`.",
    },
    Field {
        key: "deny",
        ty: Ty::Rules { deny: true },
        doc: "Rules for calls that are denied, optionally with `{ when: CONDITION, action: ACTION }`.",
    },
    Field {
        key: "audit",
        ty: Ty::Rules { deny: false },
        doc: "Rules for calls that are allowed and recorded in the audit log.",
    },
];

/// The keys of a rule's body (`- name: { when: ..., action: ... }`); `action` only in
/// deny rules.
pub const RULE: &[Field] = &[
    Field { key: "when", ty: Ty::String, doc: "A condition on the arguments, e.g. `domain in [AF_UNIX, AF_INET]`." },
    Field {
        key: "action",
        ty: Ty::Action { deny: true },
        doc: "The action of a deny rule (default: the policy's default when it denies, else errno(EPERM)).",
    },
];

pub const FILESYSTEM: &[Field] = &[
    Field { key: "read", ty: PATHS, doc: "Paths that may be read (everything beneath them)." },
    Field { key: "write", ty: PATHS, doc: "Paths that may be written (everything beneath them)." },
    Field { key: "execute", ty: PATHS, doc: "Paths whose files may be executed (everything beneath them)." },
    Field {
        key: "setid",
        ty: Ty::Bool,
        doc: "Whether the command may make set-user-ID and set-group-ID files (default: false).",
    },
];

pub const NETWORK: &[Field] = &[
    Field { key: "connect", ty: PORTS, doc: "TCP ports the command may connect to, as tcp/PORT." },
    Field { key: "bind", ty: PORTS, doc: "TCP ports the command may bind, as tcp/PORT." },
    Field {
        key: "domains",
        ty: Ty::List(&Ty::Domain),
        doc: "Names the command may reach through the launcher's proxy: exact names and *.suffix (docs/network.md).",
    },
    Field {
        key: "proxy",
        ty: Ty::Map { fields: PROXY, required: &[] },
        doc: "The per-invocation proxy that serves `domains` and `routes`.",
    },
    Field {
        key: "routes",
        ty: Ty::List(&Ty::Map { fields: ROUTE, required: &["prefix", "upstream"] }),
        doc: "Reverse-proxy routes: http://PROXY/PREFIX/... goes to UPSTREAM/... with headers added outside the sandbox.",
    },
];

pub const PROXY: &[Field] = &[
    Field {
        key: "port",
        ty: Ty::Integer { min: 0, max: 65535 },
        doc: "The proxy's port on the command's loopback; 0 (default) lets the launcher choose (3128).",
    },
    Field {
        key: "allow-private",
        ty: Ty::Bool,
        doc: "Allow names that resolve to loopback, private, link-local or metadata addresses (default: false).",
    },
];

pub const ROUTE: &[Field] = &[
    Field { key: "prefix", ty: Ty::RoutePrefix, doc: "The path prefix the command calls, e.g. /openai." },
    Field {
        key: "upstream",
        ty: Ty::Upstream,
        doc: "Where the route goes: http://host[:port] or https://host[:port].",
    },
    Field {
        key: "headers",
        ty: Ty::HeaderMap,
        doc: "Headers the proxy adds; ${env:NAME} is read from the launcher's environment and never reaches the command.",
    },
];

pub const LIMITS: &[Field] = &[
    Field { key: "cpu", ty: Ty::Duration, doc: "CPU time: seconds, or 60s, 5m, 1h." },
    Field { key: "memory", ty: Ty::Size, doc: "Address space: bytes, or 512MiB, 2GiB, 1GB." },
    Field { key: "processes", ty: COUNT, doc: "Processes of the user (RLIMIT_NPROC)." },
    Field { key: "open-files", ty: COUNT, doc: "Open file descriptors (RLIMIT_NOFILE)." },
    Field { key: "file-size", ty: Ty::Size, doc: "The largest file the command may write: bytes, or 512MiB, 2GiB." },
];

pub const ENV: &[Field] = &[
    Field { key: "pass", ty: Ty::List(&Ty::EnvName), doc: "Variables copied from the launcher's environment." },
    Field { key: "set", ty: Ty::EnvMap, doc: "Variables set to these values (after pass)." },
];

pub const AUDIT: &[Field] = &[
    Field {
        key: "log",
        ty: Ty::String,
        doc: "The log capsule run appends to without --log; relative to the state directory (default: capsule.log).",
    },
    Field {
        key: "record",
        ty: Ty::List(&Ty::Enum(RECORD_CLASSES)),
        doc: "What is recorded besides invocations (default: [invocations]).",
    },
];

pub const LANDLOCK: &[Field] = &[
    Field { key: "abi", ty: COUNT, doc: "Require at least this Landlock ABI." },
    Field {
        key: "mode",
        ty: Ty::Enum(LANDLOCK_MODES),
        doc: "enforce (default: refuse to run on a kernel that offers less) or best-effort.",
    },
    Field {
        key: "scope",
        ty: Ty::Bool,
        doc: "Scope signals and abstract UNIX sockets to the sandbox (Landlock ABI 6).",
    },
];

/// The keys of a mapping, in table order (for "unknown key" help lines).
pub fn keys(fields: &[Field]) -> Vec<&'static str> {
    fields.iter().map(|f| f.key).collect()
}

/// The field `key` of a mapping, if the language has it.
pub fn field<'f>(fields: &'f [Field], key: &str) -> Option<&'f Field> {
    fields.iter().find(|f| f.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::Code;

    /// A value of each type that the checker accepts without error, in YAML flow style.
    fn sample(ty: &Ty) -> String {
        match ty {
            Ty::Integer { min, .. } => min.to_string(),
            Ty::Bool => "true".into(),
            Ty::String => "\"x\"".into(),
            Ty::Enum(values) => values[0].into(),
            Ty::Action { .. } => "errno(EACCES)".into(),
            Ty::Path => "\"${WORKSPACE}/x\"".into(),
            Ty::PortRule => "tcp/443".into(),
            Ty::Duration => "5m".into(),
            Ty::Size => "2GiB".into(),
            Ty::EnvName => "LANG".into(),
            Ty::EnvMap => "{ LANG: C.UTF-8 }".into(),
            Ty::Domain => "example.org".into(),
            Ty::RoutePrefix => "/api".into(),
            Ty::Upstream => "\"http://api.example.org\"".into(),
            Ty::HeaderMap => "{ Authorization: \"Bearer ${env:API_KEY}\" }".into(),
            Ty::List(item) => format!("[{}]", sample(item)),
            Ty::Map { fields, .. } => {
                let entries: Vec<String> = fields.iter().map(|f| format!("{}: {}", f.key, sample(&f.ty))).collect();
                format!("{{ {} }}", entries.join(", "))
            }
            Ty::Rules { deny: false } => "[read, \"@basic-io\", { socket: \"domain == AF_UNIX\" }]".into(),
            Ty::Rules { deny: true } => {
                let body: Vec<String> = RULE.iter().map(|f| format!("{}: {}", f.key, sample_rule_value(f))).collect();
                format!("[ptrace, {{ personality: {{ {} }} }}]", body.join(", "))
            }
        }
    }

    fn sample_rule_value(f: &Field) -> String {
        match f.key {
            "when" => "\"persona != 0\"".into(),
            _ => sample(&f.ty),
        }
    }

    /// A policy that uses every key of the table once.
    pub fn full_policy() -> String {
        let mut out = String::new();
        for f in POLICY {
            out.push_str(&format!("{}: {}\n", f.key, sample(&f.ty)));
        }
        out
    }

    #[test]
    fn every_key_of_the_shape_is_parsed() {
        let src = full_policy();
        let checked = crate::front::check(&src);
        let errors: Vec<_> = checked.diagnostics.iter().filter(|d| d.is_error()).collect();
        assert!(errors.is_empty(), "{src}\n{errors:#?}");
        assert!(checked.policy.is_some());
    }

    #[test]
    fn a_key_missing_from_the_shape_is_unknown_to_the_parser() {
        for (place, yaml) in [
            ("top", "version: 1\nnope: 1\n"),
            ("syscalls", "version: 1\nsyscalls: { nope: [] }\n"),
            ("rule", "version: 1\nsyscalls: { deny: [{ ptrace: { nope: 1 } }] }\n"),
            ("filesystem", "version: 1\nfilesystem: { nope: [] }\n"),
            ("network", "version: 1\nnetwork: { nope: [] }\n"),
            ("proxy", "version: 1\nnetwork: { proxy: { nope: 1 } }\n"),
            ("route", "version: 1\nnetwork: { routes: [{ prefix: /a, upstream: \"http://a.b\", nope: 1 }] }\n"),
            ("limits", "version: 1\nlimits: { nope: 1 }\n"),
            ("env", "version: 1\nenv: { nope: [] }\n"),
            ("audit", "version: 1\naudit: { nope: [] }\n"),
            ("landlock", "version: 1\nlandlock: { nope: 1 }\n"),
        ] {
            // A proxy without syscall rules to reach it also warns (W0341): errors only.
            let codes: Vec<_> =
                crate::front::check(yaml).diagnostics.iter().filter(|d| d.is_error()).map(|d| d.code).collect();
            assert_eq!(codes, [Code::UnknownKey], "{place}");
        }
    }

    #[test]
    fn enumerations_match_the_code_that_decides() {
        let targets: Vec<&str> = capsule_artifacts::Target::ALL.iter().map(|t| t.name()).collect();
        assert_eq!(targets, TARGETS);
        for class in RECORD_CLASSES {
            let src = format!("version: 1\naudit: {{ record: [{class}] }}\n");
            assert!(!crate::front::check(&src).has_errors(), "{class}");
        }
        for mode in LANDLOCK_MODES {
            let src = format!("version: 1\nlandlock: {{ mode: {mode} }}\n");
            assert!(!crate::front::check(&src).has_errors(), "{mode}");
        }
        for action in ACTION_WORDS {
            let src = format!("version: 1\nforeign-arch: {action}\n");
            assert!(!crate::front::check(&src).has_errors(), "{action}");
        }
    }
}
