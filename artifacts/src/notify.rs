//! What the launcher's supervisor answers when a filter returns
//! `SECCOMP_RET_USER_NOTIF`: computed by the compiler with the filter, carried in the
//! manifest, so the supervisor answers with the policy's own decision and never with
//! anything it read from the sandboxed process.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The supervisor's answer to a notification. It is the policy's own decision, so the
/// supervisor never decides anything from what it reads in the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyAnswer {
    /// An audited call: record it and let it run (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`).
    Continue,
    /// A recorded denial: record it and fail the call with this errno.
    Errno(u16),
    /// An allowed call that names a destination address ([`DESTINATION_SYSCALLS`]),
    /// notified only when the policy runs the proxy (`network: domains:` or `routes:`):
    /// the supervisor reads the address and lets the call run when it is the proxy's
    /// listening address; any other IPv4 or IPv6 destination is refused (recorded as a
    /// `network.connection` with the reason `direct-connect`). The command's network
    /// namespace refuses such a destination anyway: this answer records it, and can
    /// only refuse more than the policy (docs/network.md, "Direct attempts").
    Destination,
}

/// The syscalls whose allowed calls are [`NotifyAnswer::Destination`] under a policy
/// with a proxy, with the indices of their address and address-length arguments.
/// `sendto` only with an address (`addr != NULL`): a plain `send` on a connected socket
/// (which libc makes a `sendto` with NULL) never reaches the supervisor. `sendmsg` and
/// `sendmmsg` are not listed: their address is inside a `struct msghdr`, which the
/// filter cannot read, so every call would have to be notified.
pub const DESTINATION_SYSCALLS: [(&str, usize, usize); 2] = [("connect", 1, 2), ("sendto", 4, 5)];

/// Per syscall number, the answer the supervisor gives when the filter returns
/// `SECCOMP_RET_USER_NOTIF` for it. A filter notifies for a number only with the one
/// answer this table gives for it; every other outcome of that number is returned by
/// the filter itself (enforced, but not recorded by the supervisor).
///
/// The answer for a number: `newer` above `max_nr`, else the answer of the run holding
/// it, else `default` (numbers no rule names, and the gaps of the table).
///
/// Numbers are kept as runs of consecutive numbers with one answer, in ascending order:
/// the launcher parses this table on every launch, and runs keep it a few dozen
/// entries instead of one per allowed syscall.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "UncheckedTable")]
pub struct NotifyTable {
    pub max_nr: u32,
    pub default: Option<NotifyAnswer>,
    pub newer: Option<NotifyAnswer>,
    /// Ascending, disjoint runs whose answer differs from `default`.
    runs: Vec<NotifyRun>,
}

/// The numbers `first..=last`, all answered alike; `None`: never notified. Written as
/// the JSON array `[first, last, answer]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyRun(pub u32, pub u32, pub Option<NotifyAnswer>);

impl NotifyTable {
    /// The table for `answers` (number → answer, where it differs from `default`);
    /// consecutive numbers with one answer become one run.
    pub fn new(
        max_nr: u32,
        default: Option<NotifyAnswer>,
        newer: Option<NotifyAnswer>,
        answers: &BTreeMap<u32, Option<NotifyAnswer>>,
    ) -> Self {
        let mut runs: Vec<NotifyRun> = Vec::new();
        for (&nr, &answer) in answers {
            match runs.last_mut() {
                Some(NotifyRun(_, last, a)) if *a == answer && last.checked_add(1) == Some(nr) => *last = nr,
                _ => runs.push(NotifyRun(nr, nr, answer)),
            }
        }
        NotifyTable { max_nr, default, newer, runs }
    }

    pub fn answer(&self, nr: u32) -> Option<NotifyAnswer> {
        if nr > self.max_nr {
            return self.newer;
        }
        // The last run starting at or below `nr` is the only one that can hold it.
        let i = self.runs.partition_point(|run| run.0 <= nr);
        match i.checked_sub(1).map(|i| self.runs[i]) {
            Some(NotifyRun(_, last, answer)) if nr <= last => answer,
            _ => self.default,
        }
    }

    pub fn runs(&self) -> &[NotifyRun] {
        &self.runs
    }

    pub fn is_empty(&self) -> bool {
        self.default.is_none() && self.newer.is_none() && self.runs.iter().all(|run| run.2.is_none())
    }
}

/// The table as written, before its runs are checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UncheckedTable {
    max_nr: u32,
    default: Option<NotifyAnswer>,
    newer: Option<NotifyAnswer>,
    runs: Vec<NotifyRun>,
}

impl TryFrom<UncheckedTable> for NotifyTable {
    type Error = String;

    /// Overlapping or unordered runs would make a number's answer depend on the
    /// search: refused rather than guessed.
    fn try_from(table: UncheckedTable) -> Result<Self, String> {
        // The least number the next run may start at; `None` once a run ends at u32::MAX.
        let mut next = Some(0u32);
        for (i, &NotifyRun(first, last, _)) in table.runs.iter().enumerate() {
            if first > last || last > table.max_nr || next.is_none_or(|next| first < next) {
                return Err(format!(
                    "notify run {i} ([{first}, {last}]) is not an ascending, disjoint run within 0..={}",
                    table.max_nr
                ));
            }
            next = last.checked_add(1);
        }
        Ok(NotifyTable { max_nr: table.max_nr, default: table.default, newer: table.newer, runs: table.runs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(u32, Option<NotifyAnswer>)]) -> NotifyTable {
        NotifyTable::new(
            20,
            Some(NotifyAnswer::Errno(1)),
            Some(NotifyAnswer::Errno(38)),
            &entries.iter().copied().collect(),
        )
    }

    #[test]
    fn consecutive_numbers_with_one_answer_share_a_run() {
        let t = table(&[(1, None), (2, None), (3, None), (5, None), (6, Some(NotifyAnswer::Continue))]);
        assert_eq!(
            t.runs(),
            [NotifyRun(1, 3, None), NotifyRun(5, 5, None), NotifyRun(6, 6, Some(NotifyAnswer::Continue))]
        );
        let answers: Vec<_> = (0..=22).map(|nr| t.answer(nr)).collect();
        let e1 = Some(NotifyAnswer::Errno(1));
        let mut expected = vec![e1; 21];
        expected[1..4].fill(None);
        expected[5] = None;
        expected[6] = Some(NotifyAnswer::Continue);
        expected.extend([Some(NotifyAnswer::Errno(38)); 2]);
        assert_eq!(answers, expected);
    }

    #[test]
    fn round_trips_as_compact_runs() {
        let t = table(&[(1, None), (2, None), (9, Some(NotifyAnswer::Errno(38)))]);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(
            json,
            r#"{"max_nr":20,"default":{"errno":1},"newer":{"errno":38},"runs":[[1,2,null],[9,9,{"errno":38}]]}"#
        );
        assert_eq!(serde_json::from_str::<NotifyTable>(&json).unwrap(), t);
    }

    #[test]
    fn overlapping_unordered_or_out_of_range_runs_are_refused() {
        let head = r#"{"max_nr":20,"default":null,"newer":null,"runs":"#;
        for runs in ["[[3,5,null],[5,6,null]]", "[[6,7,null],[1,2,null]]", "[[4,3,null]]", "[[1,21,null]]"] {
            let err = serde_json::from_str::<NotifyTable>(&format!("{head}{runs}}}")).unwrap_err();
            assert!(err.to_string().contains("ascending, disjoint"), "{runs}: {err}");
        }
        assert!(serde_json::from_str::<NotifyTable>(&format!("{head}[[1,2,null],[3,20,null]]}}")).is_ok());
        let top = r#"{"max_nr":4294967295,"default":null,"newer":null,"runs":[[0,4294967295,null],[4294967295,4294967295,null]]}"#;
        assert!(serde_json::from_str::<NotifyTable>(top).is_err(), "a run after one ending at u32::MAX overlaps it");
    }
}
