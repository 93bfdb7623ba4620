//! The policy as written: every value keeps the span it came from. Produced by
//! `parse`, consumed by `lower`.

use crate::ir::Span;
use capsule_artifacts::Target;
use capsule_artifacts::launch::{LandlockMode, PortRule, Record};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

#[derive(Debug, Clone, Default)]
pub struct PolicyAst {
    pub version: Option<Spanned<u64>>,
    pub name: Option<Spanned<String>>,
    pub description: Option<Spanned<String>>,
    pub default: Option<Spanned<ActionAst>>,
    pub newer_syscalls: Option<Spanned<ActionAst>>,
    pub foreign_arch: Option<Spanned<ActionAst>>,
    pub targets: Option<Vec<Spanned<Target>>>,
    pub syscalls: SyscallsAst,
    pub filesystem: FilesystemAst,
    pub network: NetworkAst,
    pub limits: LimitsAst,
    pub env: EnvAst,
    pub audit: AuditAst,
    pub landlock: LandlockAst,
    /// The whole document.
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionAst {
    Allow,
    Errno(u16),
    KillProcess,
    KillThread,
    Trap,
    Log,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Allow,
    Deny,
    Audit,
}

impl Section {
    pub fn name(self) -> &'static str {
        match self {
            Section::Allow => "allow",
            Section::Deny => "deny",
            Section::Audit => "audit",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SyscallsAst {
    /// In source order across the three sections.
    pub rules: Vec<RuleAst>,
}

#[derive(Debug, Clone)]
pub struct RuleAst {
    pub section: Section,
    pub span: Span,
    pub subject: Subject,
    pub when: Option<CondAst>,
    pub action: Option<Spanned<ActionAst>>,
}

#[derive(Debug, Clone)]
pub enum Subject {
    Syscall(Spanned<String>),
    /// Without the `@`.
    Group(Spanned<String>),
}

/// A parsed `when:` condition and where its text sits in the file.
#[derive(Debug, Clone)]
pub struct CondAst {
    pub expr: capsule_grammar::Expr,
    /// The scalar holding the condition.
    pub span: Span,
    /// Byte offset of the condition text in the file, when the scalar is verbatim.
    pub base: Option<usize>,
}

impl CondAst {
    /// A span inside the condition text, as a span of the file.
    pub fn file_span(&self, inner: capsule_grammar::Span) -> Span {
        match self.base {
            Some(base) => base + inner.start..base + inner.end,
            None => self.span.clone(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct FilesystemAst {
    pub read: Option<Vec<Spanned<String>>>,
    pub write: Option<Vec<Spanned<String>>>,
    pub execute: Option<Vec<Spanned<String>>>,
    /// `setid: true` lets the command set the set-user-ID and set-group-ID bits; the
    /// span covers the whole `setid: VALUE` entry.
    pub setid: Option<Spanned<bool>>,
}

#[derive(Debug, Clone, Default)]
pub struct NetworkAst {
    pub connect: Option<Vec<Spanned<PortRule>>>,
    pub bind: Option<Vec<Spanned<PortRule>>>,
    /// Lower case, as written otherwise; only the valid ones.
    pub domains: Option<Vec<Spanned<String>>>,
    pub proxy_port: Option<Spanned<u64>>,
    pub allow_private: Option<Spanned<bool>>,
    pub routes: Option<Vec<RouteAst>>,
}

impl NetworkAst {
    /// Where the policy asks for the proxy: its first domain, else its first route
    /// (`0..0` when both lists are empty), for the rules and warnings the proxy implies.
    pub fn proxy_span(&self) -> Span {
        let domains = self.domains.iter().flatten().map(|d| d.span.clone());
        let routes = self.routes.iter().flatten().map(|r| r.span.clone());
        domains.chain(routes).next().unwrap_or(0..0)
    }
}

#[derive(Debug, Clone)]
pub struct RouteAst {
    pub span: Span,
    pub prefix: Spanned<String>,
    /// `http://host[:port]` without a trailing `/`.
    pub upstream: Spanned<String>,
    /// Header name, value template, and the `${env:NAME}` names it reads.
    pub headers: Vec<(Spanned<String>, Spanned<String>, Vec<String>)>,
}

#[derive(Debug, Clone, Default)]
pub struct LimitsAst {
    pub cpu_seconds: Option<Spanned<u64>>,
    pub memory_bytes: Option<Spanned<u64>>,
    pub processes: Option<Spanned<u64>>,
    pub open_files: Option<Spanned<u64>>,
    pub file_size_bytes: Option<Spanned<u64>>,
}

#[derive(Debug, Clone, Default)]
pub struct EnvAst {
    pub pass: Vec<Spanned<String>>,
    pub set: Vec<(Spanned<String>, Spanned<String>)>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditAst {
    pub log: Option<Spanned<String>>,
    pub record: Option<Vec<Spanned<Record>>>,
}

#[derive(Debug, Clone, Default)]
pub struct LandlockAst {
    pub abi: Option<Spanned<u64>>,
    pub mode: Option<Spanned<LandlockMode>>,
    pub scope: Option<Spanned<bool>>,
}
