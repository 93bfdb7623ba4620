//! The tamper suite, end to end: a signed log made by real `capsule run`s (with a
//! denied-syscall invocation among them), edited every way docs/audit-log.md lists,
//! each copy checked with `capsule verify --format json`: the exit code and the record
//! it names.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use capsule_artifacts::log::chain::{self, Chain, Position};
use capsule_artifacts::log::merkle::leaf_hash;
use capsule_artifacts::log::record::kind as record_kind;
use capsule_artifacts::log::{LogLine, Record};
use capsule_tests::audit_support::{AuditSandbox, Programs, assert_ok, kind, raw_lines, records, write_lines};

const TAMPERED: i32 = 1;
const INCOMPLETE: i32 = 3;

const DENIED: &str = r#"
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
    syscall(SYS_ptrace, 16L, (long)getppid(), 0L, 0L, 0L, 0L);
    syscall(SYS_socket, 16L, 3L, 0L, 0L, 0L, 0L);
    return 0;
}
"#;

/// The log every test starts from (never edited), a second log for splicing, the
/// public key, and a checkpoint saved at the end.
struct Fixture {
    sandbox: AuditSandbox,
    keys: tempfile::TempDir,
    other_log: PathBuf,
    saved: PathBuf,
}

impl Fixture {
    fn get() -> &'static Fixture {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        FIXTURE.get_or_init(Fixture::make)
    }

    fn make() -> Fixture {
        let sandbox = AuditSandbox::new();
        let keys = tempfile::tempdir().unwrap();
        let keygen = sandbox.capsule().arg("keygen").arg("--out").arg(keys.path().join("log")).output().unwrap();
        assert_ok(&keygen);
        let denied = Programs::get().command("tamper_denied", DENIED, &[]);
        let other_log = sandbox.state_home().join("other.log");
        let run = |extra: &[&str], command: &[String]| {
            let mut cmd = sandbox.capsule();
            cmd.env("CAPSULE_LOG_SIGNING_KEY", keys.path().join("log.key"));
            cmd.arg("run").args(extra).arg("--workspace").arg(sandbox.workspace()).arg("--").args(command);
            assert_ok(&cmd.output().unwrap());
        };
        let true_ = vec!["/bin/true".to_owned()];
        run(&[], &true_);
        run(&[], &denied);
        run(&[], &true_);
        run(&[], &["/bin/echo".to_owned(), "fourth".to_owned()]);
        let other = other_log.to_str().unwrap();
        run(&["--log", other], &true_);
        run(&["--log", other], &denied);
        let saved = keys.path().join("saved.checkpoint");
        sandbox.save_checkpoint(&sandbox.log(), &saved);
        Fixture { sandbox, keys, other_log, saved }
    }

    /// A copy of the log to edit.
    fn copy(&self) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capsule.log");
        std::fs::copy(self.sandbox.log(), &path).unwrap();
        (dir, path)
    }

    fn public_key(&self) -> String {
        self.keys.path().join("log.pub").display().to_string()
    }

    fn saved(&self) -> String {
        self.saved.display().to_string()
    }

    /// The line index (= record number) of the `n`th record of `wanted` kind.
    fn index_of(&self, wanted: &str, n: usize) -> usize {
        records(&self.sandbox.log())
            .iter()
            .enumerate()
            .filter(|(_, r)| kind(r) == wanted)
            .nth(n)
            .expect("such a record")
            .0
    }

    #[track_caller]
    fn assert_verdict(&self, path: &Path, extra: &[&str], code: i32, record: Option<u64>) {
        let (got, report) = self.sandbox.verify(path, extra);
        assert_eq!(got, code, "{extra:?}: {report:#}");
        if let Some(record) = record {
            assert_eq!(report["record"].as_u64(), Some(record), "{extra:?}: wrong record named: {report:#}");
        }
    }

    /// Tampered at `record`, whatever else is given.
    #[track_caller]
    fn assert_tampered_everywhere(&self, path: &Path, record: u64) {
        self.assert_verdict(path, &[], TAMPERED, Some(record));
        self.assert_verdict(path, &["--public-key", &self.public_key()], TAMPERED, Some(record));
        self.assert_verdict(path, &["--checkpoint", &self.saved()], TAMPERED, Some(record));
    }
}

fn edit(path: &Path, change: impl FnOnce(&mut Vec<Vec<u8>>)) {
    let mut lines = raw_lines(path);
    change(&mut lines);
    write_lines(path, &lines);
}

/// Changes one byte of line `index` at the first place after `marker`.
fn flip_after(lines: &mut [Vec<u8>], index: usize, marker: &str) {
    let text = String::from_utf8(lines[index].clone()).unwrap();
    let at = text.find(marker).unwrap_or_else(|| panic!("{marker} not in {text}")) + marker.len();
    let byte = &mut lines[index][at];
    *byte = if *byte == b'a' { b'b' } else { b'a' };
}

#[test]
fn the_untouched_log_is_intact_signed_and_extends_the_saved_checkpoint() {
    let f = Fixture::get();
    let (code, report) =
        f.sandbox.verify(&f.sandbox.log(), &["--public-key", &f.public_key(), "--checkpoint", &f.saved()]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["checkpoints"], 4, "one per invocation");
    assert_eq!(report["signed_checkpoints"], 4);
    assert_eq!(report["unsigned_tail"], 0);
    assert_eq!(report["extends_saved_checkpoint"], true);
}

#[test]
fn a_byte_flipped_in_a_records_data_is_caught_at_the_next_record() {
    let f = Fixture::get();
    let k = f.index_of("syscall.denied", 0);
    let (_dir, path) = f.copy();
    edit(&path, |l| flip_after(l, k, "\"args\":[\"0x"));
    f.assert_tampered_everywhere(&path, k as u64 + 1);
}

#[test]
fn a_byte_flipped_in_a_records_hash_is_caught_at_that_record() {
    let f = Fixture::get();
    let k = f.index_of("invocation.end", 1);
    let (_dir, path) = f.copy();
    edit(&path, |l| flip_after(l, k, "\"prev\":\""));
    f.assert_tampered_everywhere(&path, k as u64);
}

#[test]
fn a_byte_flipped_in_a_checkpoint_is_caught_at_the_checkpoint() {
    let f = Fixture::get();
    let c = f.index_of("checkpoint", 1);
    let (_dir, path) = f.copy();
    edit(&path, |l| flip_after(l, c, "\"root\":\""));
    f.assert_tampered_everywhere(&path, c as u64);
}

#[test]
fn a_deleted_record_is_caught() {
    let f = Fixture::get();
    let k = f.index_of("syscall.denied", 1);
    let (_dir, path) = f.copy();
    edit(&path, |l| {
        l.remove(k);
    });
    f.assert_tampered_everywhere(&path, k as u64);
}

#[test]
fn an_inserted_record_is_caught() {
    let f = Fixture::get();
    let k = f.index_of("invocation.end", 1);
    let (_dir, path) = f.copy();
    edit(&path, |l| {
        // A forged record that chains onto its predecessor; the original after it cannot.
        let prev = leaf_hash(l[k - 1].strip_suffix(b"\n").unwrap());
        let forged = Record::new("syscall.audited").with("name", "openat").to_line(k as u64, &prev);
        l.insert(k, [forged, b"\n".to_vec()].concat());
    });
    f.assert_tampered_everywhere(&path, k as u64 + 1);
}

#[test]
fn a_duplicated_record_is_caught() {
    let f = Fixture::get();
    let k = f.index_of("syscall.denied", 0);
    let (_dir, path) = f.copy();
    edit(&path, |l| {
        let copy = l[k].clone();
        l.insert(k + 1, copy);
    });
    f.assert_tampered_everywhere(&path, k as u64 + 1);
}

#[test]
fn records_swapped_with_a_neighbour_are_caught() {
    let f = Fixture::get();
    let k = f.index_of("syscall.denied", 0);
    let (_dir, path) = f.copy();
    edit(&path, |l| l.swap(k, k + 1));
    f.assert_tampered_everywhere(&path, k as u64);
}

#[test]
fn a_record_spliced_in_from_another_log_is_caught() {
    let f = Fixture::get();
    // The other log has the same shape: its record 5 is also a denial of invocation 4.
    let foreign = raw_lines(&f.other_log);
    let k = f.index_of("syscall.denied", 0);
    assert_eq!(kind(&serde_json::from_slice::<serde_json::Value>(&foreign[k]).unwrap()), "syscall.denied");
    let (_dir, path) = f.copy();
    edit(&path, |l| l[k] = foreign[k].clone());
    f.assert_tampered_everywhere(&path, k as u64);
}

#[test]
fn a_removed_checkpoint_is_caught() {
    let f = Fixture::get();
    let c = f.index_of("checkpoint", 1);
    let (_dir, path) = f.copy();
    edit(&path, |l| {
        l.remove(c);
    });
    f.assert_tampered_everywhere(&path, c as u64);
}

/// Re-chains every record after an edit, as a forger without the key would.
fn recompute_chain(path: &Path) {
    let mut chain = Chain::new(None);
    let mut out = Vec::new();
    for (i, old) in raw_lines(path).iter().enumerate() {
        let mut record = LogLine::parse(old.strip_suffix(b"\n").unwrap()).unwrap().record;
        if record.kind == record_kind::CHECKPOINT {
            record = chain::checkpoint_record(&chain, None).unwrap().0;
        }
        let line = record.to_line(chain.next_seq, &chain.last_leaf);
        chain.apply(&line, Position { line: i as u64 + 1, offset: 0 }).unwrap();
        out.push([line, b"\n".to_vec()].concat());
    }
    write_lines(path, &out);
}

#[test]
fn a_recomputed_chain_is_caught_by_the_key_and_by_a_saved_checkpoint_not_by_the_file() {
    let f = Fixture::get();
    let k = f.index_of("invocation.end", 0);
    let (_dir, path) = f.copy();
    edit(&path, |l| {
        let text = String::from_utf8(l[k].clone()).unwrap().replace("\"exit_code\":0", "\"exit_code\":1");
        l[k] = text.into_bytes();
    });
    recompute_chain(&path);
    f.assert_verdict(&path, &[], 0, None);
    // The first checkpoint after the edit carries no valid signature.
    let first_checkpoint_after = f.index_of("checkpoint", 0) as u64;
    f.assert_verdict(&path, &["--public-key", &f.public_key()], TAMPERED, Some(first_checkpoint_after));
    // The saved checkpoint's root differs from the forged tree at its size: named at
    // the last record of that tree.
    let size = records(&f.sandbox.log()).len() as u64;
    f.assert_verdict(&path, &["--checkpoint", &f.saved()], TAMPERED, Some(size - 1));
}

#[test]
fn a_tail_cut_at_a_record_boundary_is_caught_only_against_a_saved_checkpoint() {
    let f = Fixture::get();
    let keep = f.index_of("invocation.end", 3);
    let (_dir, path) = f.copy();
    edit(&path, |l| l.truncate(keep));
    f.assert_verdict(&path, &[], 0, None);
    let (_, report) = f.sandbox.verify(&path, &["--public-key", &f.public_key()]);
    assert_eq!(
        report["verdict"], "intact",
        "a cut back past the last checkpoint still verifies with the key: {report:#}"
    );
    assert_eq!(report["unsigned_tail"], 1, "but the key reports the record after the last signed checkpoint");
    f.assert_verdict(&path, &["--checkpoint", &f.saved()], TAMPERED, Some(keep as u64));
}

#[test]
fn a_torn_last_line_is_incomplete_and_the_next_run_seals_it() {
    let f = Fixture::get();
    let (_dir, path) = f.copy();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - 40);
    std::fs::write(&path, &bytes).unwrap();
    f.assert_verdict(&path, &[], INCOMPLETE, None);
    f.assert_verdict(&path, &["--public-key", &f.public_key()], INCOMPLETE, None);

    // The next run seals the torn line off and the log is whole again (the log moves
    // out of /tmp first: the default policy lets the command write there).
    let outside = capsule_tests::outside_dir("capsule-sealed-");
    let state = outside.path().join("sealed.log");
    std::fs::copy(&path, &state).unwrap();
    let output = f.sandbox.run(&["--log", state.to_str().unwrap()], &["/bin/true"]);
    assert_ok(&output);
    let (code, report) = f.sandbox.verify(&state, &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["recovered"].as_array().unwrap().len(), 1);
}

#[test]
fn an_empty_file_is_tampered_at_record_0() {
    let f = Fixture::get();
    let (_dir, path) = f.copy();
    std::fs::write(&path, b"").unwrap();
    f.assert_verdict(&path, &[], TAMPERED, Some(0));
}

#[test]
fn a_non_canonical_but_equivalent_line_is_caught() {
    let f = Fixture::get();
    let k = f.index_of("invocation.start", 1);
    let (_dir, path) = f.copy();
    edit(&path, |l| {
        let text = String::from_utf8(l[k].clone()).unwrap().replacen("\"kind\":", "\"kind\": ", 1);
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            parsed,
            serde_json::from_slice::<serde_json::Value>(&raw_lines(&f.sandbox.log())[k]).unwrap(),
            "equivalent JSON"
        );
        l[k] = text.into_bytes();
    });
    f.assert_tampered_everywhere(&path, k as u64);
}
