//! A writer that opens an existing log rebuilds the chain's end from its tail
//! (`load_tail`, reading backwards in growing chunks to the last checkpoint). Whatever
//! the distance to that checkpoint and however long the lines, its next record must
//! continue the chain exactly: the verifier then finds the whole log intact.

use capsule_artifacts::log::{Durability, LogWriter, Record, Verdict, VerifyOptions, WriterOptions, verify};

fn no_automatic_checkpoints() -> WriterOptions {
    WriterOptions { checkpoint_every: 0, ..WriterOptions::default() }
}

#[test]
fn reopening_continues_the_chain_across_many_chunks_and_long_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capsule.log");
    let mut appended = 0u64;
    // Lines of about 0.6 KB, 20 KB (across the first chunks) and 200 KB (longer than
    // the largest chunk). The only checkpoint ends the first round, so later reopens
    // read back through some 330 KB of lines to find it, and the first ones through a
    // log with none. Each round reopens the log before it appends.
    for (round, sizes) in [&[600usize; 150][..], &[20_000, 600, 20_000], &[200_000, 600], &[600; 3]].iter().enumerate()
    {
        let mut writer = LogWriter::open_with(&path, no_automatic_checkpoints()).unwrap();
        for (i, size) in sizes.iter().enumerate() {
            let record = Record::new("tool.call").with("round", round as u32).with("pad", "x".repeat(*size - 100 + i));
            writer.append(&record, Durability::Buffered).unwrap();
            appended += 1;
        }
        if round == 0 {
            writer.checkpoint(Durability::Buffered).unwrap();
        }
    }
    let report = verify(&path, &VerifyOptions::default());
    assert_eq!(report.verdict, Verdict::Intact, "{report:?}");
    // The genesis record, every appended one and the checkpoint.
    assert_eq!((report.records, report.checkpoints), (appended + 2, 1));

    // The same once a checkpoint ends the log, as every invocation leaves it.
    let mut writer = LogWriter::open_with(&path, no_automatic_checkpoints()).unwrap();
    writer.checkpoint(Durability::Sync).unwrap();
    drop(writer);
    let mut writer = LogWriter::open_with(&path, no_automatic_checkpoints()).unwrap();
    writer.append(&Record::new("tool.call").with("after", "checkpoint"), Durability::Sync).unwrap();
    let report = verify(&path, &VerifyOptions::default());
    assert_eq!(report.verdict, Verdict::Intact, "{report:?}");
    assert_eq!((report.records, report.checkpoints), (appended + 4, 2));
}
