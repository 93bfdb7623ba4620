//! What the launcher applies besides the seccomp filter: filesystem and network
//! rules (Landlock), resource limits, the environment and audit settings.
//!
//! The compiler lowers the policy's non-syscall sections straight into these types,
//! and the manifest carries them to the launcher unchanged. Paths keep their
//! variables (`${WORKSPACE}`, `${HOME}`, `${TMPDIR}`) unresolved: the launcher
//! resolves them at launch time, so one artifact serves every checkout.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchSettings {
    pub filesystem: Filesystem,
    pub network: Network,
    pub limits: Limits,
    pub env: Env,
    pub audit: Audit,
    pub landlock: Landlock,
}

/// Paths the command may use; everything else is denied once any rule is given.
/// `None` means the policy left that access class unrestricted (no Landlock rule for it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filesystem {
    pub read: Option<Vec<String>>,
    pub write: Option<Vec<String>>,
    pub execute: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortRule {
    pub protocol: Protocol,
    pub port: u16,
}

/// TCP ports the command may connect to and bind. `None`: not restricted.
/// `proxy`: outbound access by name through the launcher's per-invocation proxy
/// (`network: domains:` and `routes:`); absent from the manifest when unused, so a
/// policy without it compiles to the same bytes as before.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub connect: Option<Vec<PortRule>>,
    pub bind: Option<Vec<PortRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<Proxy>,
}

/// The proxy's settings: the names the command may reach and the reverse-proxy routes.
/// Present iff the policy has `network: domains:` or `network: routes:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proxy {
    /// Exact names and `*.suffix` patterns, lower case, sorted, no duplicates.
    pub domains: Vec<String>,
    /// The proxy's port on the command's loopback; 0: the launcher's default.
    pub port: u16,
    /// Whether a name may resolve to loopback, private, link-local or metadata addresses.
    pub allow_private: bool,
    pub routes: Vec<Route>,
}

/// `http://PROXY/PREFIX/rest` is forwarded to `UPSTREAM/rest` with `headers` added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Starts with `/`, no trailing `/`.
    pub prefix: String,
    /// `http://host[:port]`, no path.
    pub upstream: String,
    /// Header name and value template (`${env:NAME}` is read at launch).
    pub headers: Vec<(String, String)>,
}

/// A piece of a header value template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart<'a> {
    Text(&'a str),
    /// `${env:NAME}`: the launcher's environment variable NAME.
    Env(&'a str),
}

/// Splits a header template into text and `${env:NAME}` references. `$$` is a literal
/// `$`. Errors name the problem, never a value.
pub fn parse_template(template: &str) -> Result<Vec<TemplatePart<'_>>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        if at > 0 {
            parts.push(TemplatePart::Text(&rest[..at]));
        }
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            parts.push(TemplatePart::Text("$"));
            rest = tail;
            continue;
        }
        let Some(inner) = after.strip_prefix('{') else {
            return Err("a `$` must start `${env:NAME}` (write `$$` for a dollar sign)".to_owned());
        };
        let Some((reference, tail)) = inner.split_once('}') else {
            return Err("unclosed `${`".to_owned());
        };
        let Some(name) = reference.strip_prefix("env:") else {
            return Err(format!("`${{{reference}}}` is not `${{env:NAME}}`"));
        };
        if !is_env_name(name) {
            return Err(format!("`{name}` is not an environment variable name"));
        }
        parts.push(TemplatePart::Env(name));
        rest = tail;
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Text(rest));
    }
    Ok(parts)
}

/// Letters, digits and `_`, not starting with a digit.
pub fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The first pattern of `domains` that admits `host` (already lower case, without a
/// trailing dot): an exact name, or `*.suffix` for names strictly beneath `suffix`.
pub fn matching_domain<'d>(domains: &'d [String], host: &str) -> Option<&'d str> {
    domains.iter().map(String::as_str).find(|pattern| match pattern.strip_prefix("*.") {
        Some(suffix) => {
            host.len() > suffix.len() + 1
                && host.ends_with(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
        }
        None => *pattern == host,
    })
}

/// Whether `text` is a DNS name as policies and requests may give it: labels of
/// letters, digits and `-` (not at either end), 1 to 63 bytes each, 253 in all.
pub fn is_dns_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// setrlimit values (soft = hard), in the kernel's units: seconds and bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub cpu_seconds: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub processes: Option<u64>,
    pub open_files: Option<u64>,
    pub file_size_bytes: Option<u64>,
}

/// The command's environment: only `pass` variables survive, then `set` is applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Env {
    pub pass: Vec<String>,
    pub set: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Record {
    Invocations,
    Denials,
    AuditedSyscalls,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audit {
    /// Where the log goes unless the command line says otherwise.
    pub log: String,
    pub record: Vec<Record>,
}

impl Default for Audit {
    fn default() -> Self {
        Audit { log: "capsule.log".to_owned(), record: vec![Record::Invocations] }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LandlockMode {
    /// The kernel must provide `min_abi` or the command does not run.
    Enforce,
    /// Apply what the kernel offers, report what was left out.
    BestEffort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Landlock {
    /// The lowest Landlock ABI that enforces everything the policy asks for
    /// (1 for files, 4 for TCP ports, 6 for signal and abstract-socket scoping),
    /// or a higher one the policy demands explicitly.
    pub min_abi: u8,
    pub mode: LandlockMode,
    /// Scope signals and abstract UNIX sockets to the sandbox (ABI 6).
    pub scope: bool,
}

impl Default for Landlock {
    fn default() -> Self {
        Landlock { min_abi: 1, mode: LandlockMode::Enforce, scope: true }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_match_exactly_or_strictly_beneath_a_wildcard() {
        let domains = vec!["*.pythonhosted.org".to_owned(), "pypi.org".to_owned()];
        assert_eq!(matching_domain(&domains, "pypi.org"), Some("pypi.org"));
        assert_eq!(matching_domain(&domains, "files.pythonhosted.org"), Some("*.pythonhosted.org"));
        assert_eq!(matching_domain(&domains, "pythonhosted.org"), None);
        assert_eq!(matching_domain(&domains, "evilpythonhosted.org"), None);
        assert_eq!(matching_domain(&domains, "pypi.org.evil.com"), None);
        assert_eq!(matching_domain(&domains, "xpypi.org"), None);
    }

    #[test]
    fn templates_split_into_text_and_env_references() {
        assert_eq!(
            parse_template("Bearer ${env:KEY} $$1").unwrap(),
            [
                TemplatePart::Text("Bearer "),
                TemplatePart::Env("KEY"),
                TemplatePart::Text(" "),
                TemplatePart::Text("$"),
                TemplatePart::Text("1")
            ]
        );
        assert!(parse_template("${KEY}").is_err());
        assert!(parse_template("${env:KEY").is_err());
        assert!(parse_template("$KEY").is_err());
        assert!(parse_template("${env:1X}").is_err());
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_name("pypi.org") && is_dns_name("localhost") && is_dns_name("a-b.c0"));
        assert!(!is_dns_name("") && !is_dns_name("a..b") && !is_dns_name("-a.b") && !is_dns_name("a_b.c"));
        assert!(!is_dns_name(&"a".repeat(64)));
    }
}
