//! Syscall-set minimisation: drop a syscall whose every rule decides exactly what the
//! default decides (a deny-list rule repeating the default, an allow under an allow
//! default). With the syscall gone it gets the default, as before, and the back-end
//! can merge its number into the default's ranges.
//!
//! The run-length ranges of numbers with one outcome are the BPF back-end's lowering
//! (`back::bpf::ranges`), since they depend on how outcomes become return values.

use crate::ir::{Action, Policy, RuleKind};

pub fn run(policy: &mut Policy) {
    let default = (policy.default, false);
    super::for_each_syscall(policy, |syscall| {
        if syscall.rules.iter().all(|rule| outcome(rule.kind) == default) {
            syscall.rules.clear();
        }
    });
}

/// The decision a rule gives when it decides: its action and whether it is audited.
fn outcome(kind: RuleKind) -> (Action, bool) {
    match kind {
        RuleKind::Deny(action) => (action, false),
        RuleKind::Audit => (Action::Allow, true),
        RuleKind::Allow => (Action::Allow, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Cond, Test};
    use crate::passes::testing::*;

    #[test]
    fn syscalls_that_always_get_the_default_are_dropped() {
        let mut policy = policy_with(vec![
            (READ, vec![deny(EPERM, Cond::True), deny(EPERM, test(READ, 0, Test::Eq(3)))]),
            (WRITE, vec![deny(EACCES, Cond::True)]),
            (SOCKET, vec![allow(test(SOCKET, 0, Test::Eq(1)))]),
        ]);
        run(&mut policy);
        assert_eq!(policy.syscalls[0].syscalls.keys().copied().collect::<Vec<_>>(), vec![WRITE, SOCKET]);
    }

    #[test]
    fn audit_is_not_the_same_as_an_allow_default() {
        let mut policy = policy_with(vec![(READ, vec![audit(Cond::True)]), (WRITE, vec![allow(Cond::True)])]);
        policy.default = Action::Allow;
        run(&mut policy);
        assert_eq!(policy.syscalls[0].syscalls.keys().copied().collect::<Vec<_>>(), vec![READ]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        #[test]
        fn preserves_decisions(policy in arb_policy()) {
            check_pass_preserves(&policy, run);
        }
    }
}
