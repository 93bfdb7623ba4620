//! Optimisation passes over the IR: each takes a verified [`Policy`] and returns one
//! with the same decisions ([`crate::ir::decide`]) and fewer or simpler rules. The
//! rules every pass keeps are in `README.md` beside this file.

mod deny_wins;
mod merge_args;
mod minimise;
mod normalise;

pub use normalise::normalise_cond;

use crate::ir::{Policy, SyscallRules};
use crate::valid;

/// The pipeline, in order. In debug builds and tests the verifier runs after every
/// pass, so a pass that breaks an invariant is caught where it happens.
pub fn run_all(policy: &Policy) -> Policy {
    let mut policy = policy.clone();
    run(&mut policy, "normalise", normalise::run);
    run(&mut policy, "deny-wins", deny_wins::run);
    run(&mut policy, "merge-args", merge_args::run);
    run(&mut policy, "normalise (after merge-args)", normalise::run);
    run(&mut policy, "minimise", minimise::run);
    policy
}

fn run(policy: &mut Policy, name: &str, pass: fn(&mut Policy)) {
    pass(policy);
    if (cfg!(debug_assertions) || cfg!(test))
        && let Err(e) = valid::verify(policy)
    {
        panic!("internal error: the {name} pass broke an IR invariant: {e}");
    }
}

/// Apply `f` to every syscall's rules of every target, then drop the syscalls left
/// without rules (a syscall no rule names gets the default, as before).
fn for_each_syscall(policy: &mut Policy, mut f: impl FnMut(&mut SyscallRules)) {
    for target in &mut policy.syscalls {
        for rules in target.syscalls.values_mut() {
            f(rules);
        }
        target.syscalls.retain(|_, rules| !rules.rules.is_empty());
    }
}

#[cfg(test)]
pub(crate) mod testing;
