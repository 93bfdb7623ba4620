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
}

/// Per syscall number, the answer the supervisor gives when the filter returns
/// `SECCOMP_RET_USER_NOTIF` for it. A filter notifies for a number only with the one
/// answer this table gives for it; every other outcome of that number is returned by
/// the filter itself (enforced, but not recorded by the supervisor).
///
/// The answer for a number: `newer` above `max_nr`, else the `syscalls` entry, else
/// `default` (numbers no rule names, and the gaps of the table).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyTable {
    pub max_nr: u32,
    pub default: Option<NotifyAnswer>,
    pub newer: Option<NotifyAnswer>,
    /// Numbers whose notified answer differs from `default`. `None`: that number is
    /// never notified.
    pub syscalls: BTreeMap<u32, Option<NotifyAnswer>>,
}

impl NotifyTable {
    pub fn answer(&self, nr: u32) -> Option<NotifyAnswer> {
        if nr > self.max_nr { self.newer } else { self.syscalls.get(&nr).copied().unwrap_or(self.default) }
    }

    pub fn is_empty(&self) -> bool {
        self.default.is_none() && self.newer.is_none() && self.syscalls.values().all(Option::is_none)
    }
}
