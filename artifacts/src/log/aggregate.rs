//! Bounding what a hostile command can make the supervisor write.
//!
//! A command can trigger denied syscalls in a tight loop. Within one invocation the
//! aggregator passes the first `max_individual` events of each (kind, arch, syscall,
//! action) through as records and only counts the rest; [`SyscallAggregator::finish`]
//! then yields one summary record per key that had events held back. Records per
//! invocation are therefore bounded by (distinct keys) x (max_individual + 1), and
//! the distinct keys are bounded by the syscall tables.

use std::collections::BTreeMap;

use super::canonical::Value;
use super::record::{Record, SyscallEvent};

/// The default number of individual records per key.
pub const DEFAULT_MAX_INDIVIDUAL: u64 = 16;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    kind: &'static str,
    arch: String,
    nr: u32,
    action: String,
}

#[derive(Debug)]
struct Tally {
    name: Option<String>,
    seen: u64,
    first_suppressed_pid: Option<u32>,
}

/// Counts syscall events of one invocation.
#[derive(Debug)]
pub struct SyscallAggregator {
    invocation: u64,
    max_individual: u64,
    tallies: BTreeMap<Key, Tally>,
}

impl SyscallAggregator {
    pub fn new(invocation: u64, max_individual: u64) -> SyscallAggregator {
        SyscallAggregator { invocation, max_individual, tallies: BTreeMap::new() }
    }

    /// The record to write for this event, or `None` if it is only counted.
    pub fn observe(&mut self, event: &SyscallEvent) -> Option<Record> {
        let key = Key { kind: event.kind, arch: event.arch.clone(), nr: event.nr, action: event.action.clone() };
        let tally = self.tallies.entry(key).or_insert_with(|| Tally {
            name: event.name.clone(),
            seen: 0,
            first_suppressed_pid: None,
        });
        tally.seen += 1;
        if tally.seen <= self.max_individual {
            Some(Record::from(event))
        } else {
            tally.first_suppressed_pid.get_or_insert(event.pid);
            None
        }
    }

    /// One summary record per key with events that were only counted, in key order:
    /// the same kind as the events, with `count` = the number held back and
    /// `summary` = true (no arguments: they differed between events).
    pub fn finish(self) -> Vec<Record> {
        self.tallies
            .into_iter()
            .filter(|(_, tally)| tally.seen > self.max_individual)
            .map(|(key, tally)| {
                Record::new(key.kind)
                    .with("invocation", Value::u64(self.invocation))
                    .with("name", tally.name.clone().map_or(Value::Null, Value::Str))
                    .with("nr", key.nr)
                    .with("arch", key.arch.as_str())
                    .with("action", key.action.as_str())
                    .with("pid", tally.first_suppressed_pid.expect("set when held back"))
                    .with("count", Value::u64(tally.seen - self.max_individual))
                    .with("summary", true)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::record::kind;

    fn event(nr: u32, action: &str) -> SyscallEvent {
        SyscallEvent {
            invocation: 3,
            kind: kind::SYSCALL_DENIED,
            name: Some(format!("sys{nr}")),
            nr,
            arch: "linux-x86_64".into(),
            args: [0; 6],
            pid: 99,
            action: action.into(),
        }
    }

    #[test]
    fn storms_are_bounded_and_counted() {
        let mut aggregator = SyscallAggregator::new(3, 4);
        let mut written = 0;
        for i in 0..10_000u32 {
            let e = event(41 + i % 2, "errno:EPERM");
            written += usize::from(aggregator.observe(&e).is_some());
        }
        written += usize::from(aggregator.observe(&event(41, "kill")).is_some());
        assert_eq!(written, 4 + 4 + 1);
        let summaries = aggregator.finish();
        assert_eq!(summaries.len(), 2);
        for (summary, nr) in summaries.iter().zip([41, 42]) {
            assert_eq!(summary.data["nr"], Value::from(nr as u32));
            assert_eq!(summary.data["count"], Value::u64(5000 - 4));
            assert_eq!(summary.data["summary"], Value::Bool(true));
        }
    }
}
