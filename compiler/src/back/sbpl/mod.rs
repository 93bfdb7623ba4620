//! The Seatbelt (SBPL) back-end for macOS: a typed profile of a small SBPL subset
//! (`ast.rs`), its text (`emit.rs`), a parser of the same subset (`parse.rs`), the
//! subset's semantics (`eval.rs`), the mapping from a policy (`map.rs`) and the check
//! that the emitted profile decides like the policy (`validate.rs`).
//!
//! Like the BPF back-end it takes the verifier's [`PolicyInfo`], so it never runs on
//! unverified IR; unlike it, it reads the policy's `filesystem:` and `network:`
//! sections, and of the syscall rules only what Seatbelt can enforce
//! ([`map::SyscallFacts`]). docs/macos.md gives the mapping with a reason per line.

pub mod ast;
pub mod emit;
pub mod eval;
pub mod map;
pub mod parse;
pub mod validate;

pub use map::SyscallFacts;

use crate::diagnostic::{Code, Diagnostic};
use crate::ir::Policy;
use crate::valid::PolicyInfo;
use ast::Profile;
use capsule_artifacts::Target;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SbplError {
    #[error("the policy does not target macos")]
    NotTargeted,
    #[error("filesystem path {path:?} cannot be written as SBPL: {why}")]
    Path { path: String, why: String },
}

/// The profile for a verified policy. `facts` are read from the policy before any
/// `--target` selection drops its Linux rules ([`SyscallFacts::of`]).
pub fn compile(policy: &Policy, _info: &PolicyInfo, facts: &SyscallFacts) -> Result<Profile, SbplError> {
    if !policy.targets.contains(&Target::Macos) {
        return Err(SbplError::NotTargeted);
    }
    map::profile(policy, facts)
}

/// `capsulec check`'s note (N0402) for a policy that targets macOS: the syscall rules
/// that have no effect there. Seatbelt cannot filter system calls; the profile reads
/// only process creation, sockets, connect, bind and kill from them. `None` when the
/// policy does not target macOS or has no such rule (or no Linux target, where
/// W0307 already says the rules compile to nothing).
pub fn syscall_note(policy: &Policy, source: &str) -> Option<Diagnostic> {
    if !policy.targets.contains(&Target::Macos) {
        return None;
    }
    // Every rule (by span) with the syscalls it names on any Linux target.
    let mut rules: std::collections::BTreeMap<(usize, usize), bool> = std::collections::BTreeMap::new();
    for sp in &policy.syscalls {
        for s in sp.syscalls.values() {
            let mapped = map::MAPPED_SYSCALLS.contains(&s.name);
            for r in &s.rules {
                *rules.entry((r.origin.span.start, r.origin.span.end)).or_insert(false) |= mapped;
            }
        }
    }
    let unmapped: Vec<(usize, usize)> = rules.into_iter().filter(|(_, m)| !m).map(|(k, _)| k).collect();
    let first = *unmapped.first()?;
    let text = |(s, e): (usize, usize)| {
        let line = source.get(s..e).unwrap_or("?").lines().next().unwrap_or("");
        // A YAML comment after the rule is not part of it.
        line.split_once(" #").map_or(line, |(rule, _)| rule).trim().to_owned()
    };
    let listed: Vec<String> = unmapped.iter().map(|&k| text(k)).collect();
    Some(
        Diagnostic::new(
            Code::NoMacosEffect,
            first.0..first.1,
            format!("{} syscall rule(s) have no effect on macOS", unmapped.len()),
        )
        .label("the first of them")
        .help("Seatbelt cannot filter system calls; on macOS, filesystem:, network: and the rules on fork, vfork, clone, socket, connect, bind and kill decide (docs/macos.md)")
        .note(format!("no macOS effect: {}", listed.join(", "))),
    )
}
