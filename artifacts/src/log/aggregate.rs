//! Bounding what a hostile command can make the supervisor write.
//!
//! A command can trigger denied syscalls in a tight loop. Within one invocation the
//! aggregator passes the first `max_individual` events of each (kind, arch, syscall,
//! action) through as records and only counts the rest; [`SyscallAggregator::finish`]
//! then yields one summary record per key that had events held back.
//!
//! The syscall tables do not bound the keys: every number above them is a syscall of
//! its own to the kernel, so a command cycling through numbers makes a new key per
//! call. So at most [`MAX_KEYS`] keys are tallied, and events of any further key are
//! counted together per (kind, action) as "other syscalls"; and at most
//! [`MAX_RECORDS`] events are written one by one per invocation. Records per
//! invocation are thus at most `MAX_RECORDS + MAX_KEYS` plus one per (kind, action),
//! and the aggregator's memory is bounded alike, whatever the command does.

use std::collections::BTreeMap;

use super::canonical::Value;
use super::record::{Record, SyscallEvent};

/// The default number of individual records per key.
pub const DEFAULT_MAX_INDIVIDUAL: u64 = 16;
/// Keys tallied one by one per invocation: far above what the tables' ~470 numbers per
/// arch give a real program, far below what a hostile one can make.
pub const MAX_KEYS: usize = 1024;
/// Events written one by one per invocation, over all keys.
pub const MAX_RECORDS: u64 = 4096;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    kind: &'static str,
    arch: String,
    nr: u32,
    action: String,
}

#[derive(Debug, Default)]
struct Tally {
    name: Option<String>,
    seen: u64,
    /// Of `seen`, written one by one.
    recorded: u64,
    first_suppressed_pid: Option<u32>,
}

/// Counts syscall events of one invocation.
#[derive(Debug)]
pub struct SyscallAggregator {
    invocation: u64,
    max_individual: u64,
    tallies: BTreeMap<Key, Tally>,
    /// Events of keys beyond `MAX_KEYS`, per (kind, action).
    others: BTreeMap<(&'static str, String), Tally>,
    /// Events written one by one so far.
    recorded: u64,
}

impl SyscallAggregator {
    pub fn new(invocation: u64, max_individual: u64) -> SyscallAggregator {
        SyscallAggregator { invocation, max_individual, tallies: BTreeMap::new(), others: BTreeMap::new(), recorded: 0 }
    }

    /// The record to write for this event, or `None` if it is only counted.
    pub fn observe(&mut self, event: &SyscallEvent) -> Option<Record> {
        let key = Key { kind: event.kind, arch: event.arch.clone(), nr: event.nr, action: event.action.clone() };
        if !self.tallies.contains_key(&key) && self.tallies.len() >= MAX_KEYS {
            let other = self.others.entry((event.kind, event.action.clone())).or_default();
            other.seen += 1;
            other.first_suppressed_pid.get_or_insert(event.pid);
            return None;
        }
        let tally = self.tallies.entry(key).or_insert_with(|| Tally { name: event.name.clone(), ..Tally::default() });
        tally.seen += 1;
        if tally.recorded < self.max_individual && self.recorded < MAX_RECORDS {
            tally.recorded += 1;
            self.recorded += 1;
            Some(Record::from(event))
        } else {
            tally.first_suppressed_pid.get_or_insert(event.pid);
            None
        }
    }

    /// One summary record per key with events that were only counted, in key order:
    /// the same kind as the events, with `count` = the number held back and
    /// `summary` = true (no arguments: they differed between events). Then one per
    /// (kind, action) for the keys beyond [`MAX_KEYS`], with `other_syscalls` = true
    /// and no `name`, `nr` or `arch`.
    pub fn finish(self) -> Vec<Record> {
        let invocation = Value::u64(self.invocation);
        let mut summaries: Vec<Record> = self
            .tallies
            .into_iter()
            .filter(|(_, tally)| tally.seen > tally.recorded)
            .map(|(key, tally)| {
                Record::new(key.kind)
                    .with("invocation", invocation.clone())
                    .with("name", tally.name.map_or(Value::Null, Value::Str))
                    .with("nr", key.nr)
                    .with("arch", key.arch.as_str())
                    .with("action", key.action.as_str())
                    .with("pid", tally.first_suppressed_pid.expect("set when held back"))
                    .with("count", Value::u64(tally.seen - tally.recorded))
                    .with("summary", true)
            })
            .collect();
        summaries.extend(self.others.into_iter().map(|((kind, action), tally)| {
            Record::new(kind)
                .with("invocation", invocation.clone())
                .with("action", action.as_str())
                .with("pid", tally.first_suppressed_pid.expect("set when counted"))
                .with("count", Value::u64(tally.seen))
                .with("summary", true)
                .with("other_syscalls", true)
        }));
        summaries
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

    /// Every number above the tables is a key of its own: past `MAX_KEYS` keys and
    /// `MAX_RECORDS` records, events are only counted, and every event is in the count.
    #[test]
    fn storms_over_distinct_numbers_are_bounded_and_counted() {
        let mut aggregator = SyscallAggregator::new(3, 16);
        let calls = 50_000u32;
        let mut written = 0u64;
        for i in 0..calls {
            written += u64::from(aggregator.observe(&event(1000 + i, "errno:ENOSYS")).is_some());
        }
        assert_eq!(written, MAX_KEYS as u64, "one record for each tallied key");
        let summaries = aggregator.finish();
        assert_eq!(summaries.len(), 1, "no tallied key repeated; the rest are counted together");
        let others = &summaries[0];
        assert_eq!(others.data["other_syscalls"], Value::Bool(true));
        assert!(!others.data.contains_key("nr"));
        assert_eq!(others.data["count"], Value::u64(u64::from(calls) - written));

        // The record cap holds when every key repeats.
        let mut aggregator = SyscallAggregator::new(3, 16);
        let written = (0..100_000u32).filter(|i| aggregator.observe(&event(i % 1000, "errno:EPERM")).is_some()).count();
        assert_eq!(written as u64, MAX_RECORDS);
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
