//! Real processes on one log: concurrent appenders, and appenders SIGKILLed (and
//! power losses simulated by cutting the file) at random moments.
//!
//! The children are this test binary re-executed with `LOG_TEST_ROLE` set, running
//! the `child_entry_point` test (which does nothing in a normal run).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use capsule_artifacts::log::{
    Durability, LogLine, LogWriter, Record, Value, Verdict, VerifyOptions, WriterOptions, verify,
};

const ROLE: &str = "LOG_TEST_ROLE";
const LOG: &str = "LOG_TEST_PATH";
const WRITER: &str = "LOG_TEST_WRITER";

fn spawn(role: &str, log: &Path, writer: usize) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry_point", "--test-threads=1", "--quiet"])
        .env(ROLE, role)
        .env(LOG, log)
        .env(WRITER, writer.to_string())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Where the re-executed children start; a no-op in a normal test run.
#[test]
fn child_entry_point() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let log = std::env::var(LOG).unwrap();
    let writer_id: i32 = std::env::var(WRITER).unwrap().parse().unwrap();
    let options = WriterOptions { checkpoint_every: 7, ..WriterOptions::default() };
    let mut writer = LogWriter::open_with(&log, options).unwrap();
    match role.as_str() {
        "append-50" => {
            for n in 0..50 {
                let call = Record::new("tool.call").with("writer", writer_id).with("n", n);
                let result = Record::new("tool.result").with("writer", writer_id).with("n", n);
                if n % 2 == 0 {
                    writer.append(&call, Durability::Buffered).unwrap();
                    writer.append(&result, Durability::Buffered).unwrap();
                } else {
                    writer.append_all(&[call, result], Durability::Buffered).unwrap();
                }
            }
            writer.checkpoint(Durability::Sync).unwrap();
        }
        "append-forever" => {
            // Big records make a kill in the middle of a write() likely to tear it.
            let padding = "x".repeat(300 * 1024);
            for n in 0.. {
                let record = Record::new("tool.call").with("writer", writer_id).with("n", n);
                let record = if n % 3 == 0 { record.with("padding", padding.as_str()) } else { record };
                writer.append(&record, if n % 5 == 0 { Durability::Sync } else { Durability::Buffered }).unwrap();
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn records(path: &Path) -> Vec<LogLine> {
    let bytes = std::fs::read(path).unwrap();
    bytes.split(|&b| b == b'\n').filter_map(|line| LogLine::parse(line).ok()).collect()
}

#[test]
fn concurrent_processes_never_fork_the_chain_or_interleave() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capsule.log");
    let children: Vec<Child> = (0..8).map(|i| spawn("append-50", &path, i)).collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let report = verify(&path, &VerifyOptions::default());
    assert_eq!(report.verdict, Verdict::Intact);
    assert!(report.recovered.is_empty());

    let all = records(&path);
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    let mut next_n: BTreeMap<(&str, i64), i64> = BTreeMap::new();
    for line in &all {
        *by_kind.entry(line.kind()).or_default() += 1;
        if let Some(Value::Int(writer)) = line.get("writer") {
            let n = line.get("n").and_then(Value::as_int).unwrap();
            let expected = next_n.entry((line.kind(), *writer)).or_default();
            assert_eq!(n, *expected, "writer {writer}'s {} records out of order", line.kind());
            *expected += 1;
        }
    }
    assert_eq!(by_kind["tool.call"], 400);
    assert_eq!(by_kind["tool.result"], 400);
    assert_eq!(by_kind["log.genesis"], 1, "exactly one creator won");
    assert_eq!(all.len() as u64, report.records);
}

/// A tiny deterministic generator: the kill times only need to vary.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn appenders_killed_at_random_moments_leave_intact_or_incomplete_logs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capsule.log");
    let mut random = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut saw_incomplete = 0;
    for round in 0..25 {
        let mut child = spawn("append-forever", &path, round);
        // Under load the child may take a while to start: the kill must land while it
        // appends, not before it has created the log.
        let started = std::time::Instant::now();
        while !path.exists() && started.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(20 + random.below(60)));
        child.kill().unwrap();
        child.wait().unwrap();
        if round % 2 == 1 {
            // A power loss can also drop the end of what was written: keep a random prefix.
            let len = std::fs::metadata(&path).unwrap().len();
            let keep = len - random.below(len.min(4096));
            std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(keep).unwrap();
        }
        let report = verify(&path, &VerifyOptions::default());
        match report.verdict {
            Verdict::Intact => {}
            Verdict::Incomplete { intact_records, .. } => {
                saw_incomplete += 1;
                assert!(intact_records > 0);
            }
            other => panic!("round {round}: a crash must never look like tampering: {other:?}"),
        }
    }
    // The next writer seals whatever the last kill left and the log is whole again.
    let mut writer = LogWriter::open(&path).unwrap();
    writer.append(&Record::new("tool.result").with("done", true), Durability::Sync).unwrap();
    let report = verify(&path, &VerifyOptions::default());
    assert_eq!(report.verdict, Verdict::Intact);
    eprintln!("{saw_incomplete} of 25 kills left a torn line; {} torn lines sealed in total", report.recovered.len());
    // A torn line stays unsealed across rounds if the next child dies before its first append.
    assert!(report.recovered.len() <= saw_incomplete && (saw_incomplete == 0 || !report.recovered.is_empty()));
}

/// A log path that is a dangling symlink is an error, not an endless retry: creating
/// the log links beside the symlink, which stays dangling.
#[test]
fn a_dangling_symlink_as_the_log_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("capsule.log");
    std::os::unix::fs::symlink(dir.path().join("gone/elsewhere.log"), &log).unwrap();
    let opened = LogWriter::open(&log);
    assert!(opened.is_err(), "opened a dangling symlink");
}

/// Anyone who can open the log for reading can flock it. An append then fails after
/// the writer's lock wait instead of hanging (the launcher fails closed on it).
#[test]
fn a_lock_held_by_someone_else_fails_the_append_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("capsule.log");
    drop(LogWriter::open(&log).unwrap());
    let reader = std::fs::File::open(&log).unwrap();
    rustix::fs::flock(&reader, rustix::fs::FlockOperation::LockShared).unwrap();
    let options = WriterOptions { lock_wait: Duration::from_millis(200), ..WriterOptions::default() };
    let Err(err) = LogWriter::open_with(&log, options) else { panic!("opened while the lock is held") };
    assert!(err.to_string().contains("stayed locked"), "{err}");
    drop(reader);
    assert!(LogWriter::open(&log).is_ok(), "free again once released");
}
