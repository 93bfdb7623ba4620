//! `capsule verify`, `capsule log show|checkpoint|prove` and `capsule keygen`: the
//! audit log from the user's side. The format, writer and verifier live in
//! `capsule_artifacts::log`; this module parses flags, prints, and maps outcomes to
//! exit codes (verify: 0 intact, 1 tampered or rolled back, 2 usage or unreadable,
//! 3 incomplete; the others: 0 done, 1 a proof or check failed, 2 usage or unreadable).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use capsule_artifacts::log::canonical::Value;
use capsule_artifacts::log::merkle::Hash;
use capsule_artifacts::log::note::{self, NoteSigner, NoteVerifier, SignedCheckpoint};
use capsule_artifacts::log::proof::LogTree;
use capsule_artifacts::log::record::kind;
use capsule_artifacts::log::{Durability, LogLine, LogWriter, Report, Verdict, VerifyOptions, WriterOptions, verify};
use serde_json::json;

const USAGE_ERROR: i32 = 2;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// `capsule verify [FILE] [--checkpoint FILE] [--public-key FILE] [--format json]`
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The log to check (default: the per-user log, $XDG_STATE_HOME/capsule/capsule.log).
    pub file: Option<PathBuf>,
    /// A checkpoint saved earlier (`capsule log checkpoint`): detects a cut tail, a
    /// rollback to an older copy, and a rewrite of the records it covers.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// The log's public key (`capsule keygen`): every checkpoint must be signed by it.
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// `capsule log ...`
#[derive(Debug, clap::Subcommand)]
pub enum LogCommand {
    /// The log as a readable table (or JSON Lines), filterable by invocation and kind.
    Show(ShowArgs),
    /// Print a checkpoint of the whole log, to keep outside it.
    Checkpoint(CheckpointArgs),
    /// Inclusion proof of a record in a checkpoint, or consistency proof between two checkpoints.
    Prove(ProveArgs),
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The log (default: the per-user log, $XDG_STATE_HOME/capsule/capsule.log).
    pub file: Option<PathBuf>,
    /// Only the records of this invocation (the record number of its invocation.start,
    /// or of its invocation.refused).
    #[arg(long, value_name = "ID")]
    pub invocation: Option<u64>,
    /// Only records of this kind (e.g. syscall.denied).
    #[arg(long, value_name = "K")]
    pub kind: Option<String>,
    /// `json` prints the matching record lines unchanged (JSON Lines).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, clap::Args)]
pub struct CheckpointArgs {
    /// The log (default: the per-user log, $XDG_STATE_HOME/capsule/capsule.log).
    pub file: Option<PathBuf>,
    /// Also write the checkpoint into the log (signed with the key, if one is given).
    #[arg(long)]
    pub append: bool,
    /// Signing key for --append (default: the file named by CAPSULE_LOG_SIGNING_KEY).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ProveArgs {
    /// The log (default: the per-user log, $XDG_STATE_HOME/capsule/capsule.log).
    pub file: Option<PathBuf>,
    /// The record number to prove included.
    #[arg(long, value_name = "N", conflicts_with_all = ["from", "to"], required_unless_present = "from")]
    pub record: Option<u64>,
    /// The checkpoint to prove inclusion in (default: the whole log now).
    #[arg(long, value_name = "FILE", requires = "record")]
    pub checkpoint: Option<PathBuf>,
    /// The earlier checkpoint of a consistency proof.
    #[arg(long, value_name = "CHECKPOINT", requires = "to")]
    pub from: Option<PathBuf>,
    /// The later checkpoint of a consistency proof.
    #[arg(long, value_name = "CHECKPOINT", requires = "from")]
    pub to: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// `capsule keygen --out PREFIX`
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Writes PREFIX.key (private, mode 0600) and PREFIX.pub.
    #[arg(long, value_name = "PREFIX")]
    pub out: PathBuf,
    /// The key name that appears in signed checkpoints.
    #[arg(long, default_value = "capsule-log")]
    pub name: String,
}

/// The log named on the command line, else the per-user default that `capsule run` writes.
fn log_file(file: Option<PathBuf>) -> Result<PathBuf, String> {
    file.map_or_else(capsule_launch::audit::default_log_path, Ok)
}

fn fail(message: impl std::fmt::Display) -> i32 {
    eprintln!("capsule: {message}");
    USAGE_ERROR
}

pub fn run_log(command: LogCommand) -> i32 {
    match command {
        LogCommand::Show(args) => run_log_show(args),
        LogCommand::Checkpoint(args) => run_log_checkpoint(args),
        LogCommand::Prove(args) => run_log_prove(args),
    }
}

pub fn run_verify(args: VerifyArgs) -> i32 {
    let file = match log_file(args.file.clone()) {
        Ok(file) => file,
        Err(e) => return fail(e),
    };
    let public_key = match args.public_key.as_deref().map(NoteVerifier::read).transpose() {
        Ok(key) => key,
        Err(e) => return fail(e),
    };
    let checkpoint = match args.checkpoint.as_deref().map(SignedCheckpoint::read).transpose() {
        Ok(checkpoint) => checkpoint,
        Err(e) => return fail(e),
    };
    let options = VerifyOptions { public_key, checkpoint };
    let report = verify(&file, &options);
    match args.format {
        Format::Json => println!("{}", report_json(&file, &report)),
        Format::Text => print_report(&file, &report, &options),
    }
    report.verdict.exit_code()
}

fn print_report(file: &Path, report: &Report, options: &VerifyOptions) {
    let name = file.display();
    match &report.verdict {
        Verdict::Intact => {
            println!("{name}: intact: {} records, {} checkpoints", report.records, report.checkpoints);
            if let Some(head) = &report.head {
                println!("root at {}: {}", head.size, head.root);
            }
        }
        Verdict::Tampered { line, record, reason } => {
            println!("{name}: TAMPERED at line {line} (record {record}): {reason}")
        }
        Verdict::Incomplete { intact_records, torn_bytes } => println!(
            "{name}: incomplete: {intact_records} intact records, then a torn last line of {torn_bytes} bytes (an append was cut short); the next append seals it"
        ),
        Verdict::Unreadable { reason } => println!("{name}: unreadable: {reason}"),
    }
    for torn in &report.recovered {
        println!(
            "note: line {} holds {} torn bytes from an interrupted append, sealed by the log.recovered record after it",
            torn.line, torn.length
        );
    }
    if !matches!(report.verdict, Verdict::Intact | Verdict::Incomplete { .. }) {
        return;
    }
    if options.public_key.is_some() {
        println!("signatures: {} checkpoints signed by the key", report.signed_checkpoints);
        match report.unsigned_tail {
            Some(0) | None => {}
            Some(n) => println!(
                "warning: the last {n} records follow the last signed checkpoint; without the key they could have been rewritten or cut"
            ),
        }
    }
    if options.checkpoint.is_some() {
        println!("the log extends the saved checkpoint");
    }
    if options.public_key.is_none() && options.checkpoint.is_none() {
        println!(
            "note: checked against the file alone; a clean cut of the tail or a full rewrite needs --checkpoint or --public-key to detect"
        );
    }
}

fn report_json(file: &Path, report: &Report) -> serde_json::Value {
    let verdict = match &report.verdict {
        Verdict::Intact => json!({"verdict": "intact"}),
        Verdict::Tampered { line, record, reason } => {
            json!({"verdict": "tampered", "line": line, "record": record, "reason": reason.to_string()})
        }
        Verdict::Incomplete { intact_records, torn_bytes } => {
            json!({"verdict": "incomplete", "intact_records": intact_records, "torn_bytes": torn_bytes})
        }
        Verdict::Unreadable { reason } => json!({"verdict": "unreadable", "reason": reason}),
    };
    let mut out = json!({
        "file": file.display().to_string(),
        "records": report.records,
        "log_id": report.log_id,
        "checkpoints": report.checkpoints,
        "signed_checkpoints": report.signed_checkpoints,
        "unsigned_tail": report.unsigned_tail,
        "extends_saved_checkpoint": report.extends_saved_checkpoint,
        "recovered": report.recovered.iter().map(|r| json!({"line": r.line, "offset": r.offset, "length": r.length})).collect::<Vec<_>>(),
        "head": report.head.as_ref().map(|h| json!({"size": h.size, "root": h.root.to_hex()})),
    });
    let fields = out.as_object_mut().expect("an object");
    for (key, value) in verdict.as_object().expect("an object") {
        fields.insert(key.clone(), value.clone());
    }
    out
}

pub fn run_log_show(args: ShowArgs) -> i32 {
    let path = match log_file(args.file.clone()) {
        Ok(path) => path,
        Err(e) => return fail(e),
    };
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) => return fail(format!("{}: {e}", path.display())),
    };
    if args.format == Format::Text {
        println!("{:>7}  {:<20}  {:<18}  {:>5}  DETAILS", "RECORD", "TIME (UTC)", "KIND", "INV");
    }
    for (index, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line = match line {
            Ok(line) => line,
            Err(e) => return fail(format!("{}: {e}", path.display())),
        };
        let Ok(record) = LogLine::parse(&line) else {
            if args.kind.is_none() && args.invocation.is_none() {
                eprintln!("line {}: not a record ({} bytes); run `capsule verify`", index + 1, line.len());
            }
            continue;
        };
        let invocation = match record.kind() {
            kind::INVOCATION_START | kind::INVOCATION_REFUSED => Some(record.seq),
            _ => record.get("invocation").and_then(Value::as_u64_str),
        };
        if args.kind.as_deref().is_some_and(|k| k != record.kind())
            || args.invocation.is_some_and(|id| invocation != Some(id))
        {
            continue;
        }
        match args.format {
            Format::Json => println!("{}", String::from_utf8_lossy(&line)),
            Format::Text => {
                let time = record.get("time_ns").and_then(Value::as_u64_str).map(format_utc).unwrap_or_default();
                let inv = invocation.map(|i| i.to_string()).unwrap_or_default();
                println!("{:>7}  {:<20}  {:<18}  {:>5}  {}", record.seq, time, record.kind(), inv, details(&record));
            }
        }
    }
    0
}

/// A connection through the proxy as a sentence: `GET host:port -> address allowed
/// 1.2 KiB up 30 KiB down 12 ms route=/api headers=Authorization`.
fn connection_details(record: &LogLine) -> Option<String> {
    let get = |k: &str| record.get(k).and_then(Value::as_str).map(str::to_owned);
    if record.get("summary").is_some() {
        return Some(format!(
            "{} more {} ({}) not recorded one by one: {} B up, {} B down",
            get("count")?,
            get("verdict")?,
            get("reason").unwrap_or_else(|| "-".into()),
            get("bytes_up")?,
            get("bytes_down")?
        ));
    }
    let port = record.get("port").and_then(Value::as_int)?;
    if get("reason").as_deref() == Some("direct-connect") {
        // Refused by the supervisor before it left the command: no bytes, no duration.
        let pid = record.get("pid").and_then(Value::as_int).map(|p| format!(" by pid {p}")).unwrap_or_default();
        let line = format!(
            "direct {}() to {} {} (direct-connect: not through the proxy){pid}",
            get("method").filter(|m| !m.is_empty()).unwrap_or_else(|| "?".into()),
            get("address").unwrap_or_else(|| format!("{}:{port}", get("host").unwrap_or_default())),
            get("verdict")?,
        );
        return Some(
            line.chars().flat_map(|c| if c.is_control() { c.escape_default().collect() } else { vec![c] }).collect(),
        );
    }
    let mut line = format!(
        "{} {}:{port} -> {} {}",
        get("method").filter(|m| !m.is_empty()).unwrap_or_else(|| "?".into()),
        get("host").filter(|h| !h.is_empty()).unwrap_or_else(|| "?".into()),
        get("address").unwrap_or_else(|| "-".into()),
        get("verdict")?
    );
    if let Some(reason) = get("reason") {
        line.push_str(&format!(" ({reason})"));
    }
    let ms = get("duration_ns").and_then(|n| n.parse::<u64>().ok()).unwrap_or(0) as f64 / 1e6;
    line.push_str(&format!(" {} B up {} B down {ms:.1} ms", get("bytes_up")?, get("bytes_down")?));
    if let Some(route) = get("route") {
        line.push_str(&format!(" route={route}"));
    }
    if let Some(Value::Array(names)) = record.get("injected_headers")
        && !names.is_empty()
    {
        let names: Vec<&str> = names.iter().filter_map(Value::as_str).collect();
        line.push_str(&format!(" added headers: {}", names.join(", ")));
    }
    let line: String =
        line.chars().flat_map(|c| if c.is_control() { c.escape_default().collect() } else { vec![c] }).collect();
    Some(line)
}

/// The data fields worth a glance, `key=value`, skipping what other columns show.
fn details(record: &LogLine) -> String {
    if record.kind() == kind::NETWORK_CONNECTION
        && let Some(line) = connection_details(record)
    {
        return line;
    }
    let mut parts = Vec::new();
    for (key, value) in &record.record.data {
        if matches!(key.as_str(), "time_ns" | "invocation" | "frontier" | "signatures") {
            continue;
        }
        let text = match value {
            // Written by a launcher without a syscall table: name it from ours.
            Value::Null if key == "name" => unnamed_syscall(record).unwrap_or_else(|| "null".to_owned()),
            Value::Str(s) => s.clone(),
            Value::Array(items) => items
                .iter()
                .map(|v| {
                    v.as_str().map_or_else(|| String::from_utf8_lossy(&v.to_canonical()).into_owned(), str::to_owned)
                })
                .collect::<Vec<_>>()
                .join(" "),
            other => String::from_utf8_lossy(&other.to_canonical()).into_owned(),
        };
        // One line per record: controls in argv or paths are shown escaped.
        let text: String =
            text.chars().flat_map(|c| if c.is_control() { c.escape_default().collect() } else { vec![c] }).collect();
        let text: String =
            if text.chars().count() > 60 { text.chars().take(57).chain("...".chars()).collect() } else { text };
        parts.push(format!("{key}={text}"));
    }
    if record.kind() == kind::CHECKPOINT && record.get("signatures").is_some() {
        parts.push("signed".to_owned());
    }
    parts.join(" ")
}

/// The name of a syscall record's `nr` on its `arch`, from the compiler's tables,
/// marked `(resolved)` since the record itself does not carry it.
fn unnamed_syscall(record: &LogLine) -> Option<String> {
    let arch = record.get("arch")?.as_str()?;
    let nr = u32::try_from(record.get("nr")?.as_int()?).ok()?;
    let target = capsule_artifacts::Target::from_name(arch)?;
    let audit_arch = target.audit_arch()?;
    crate::run::syscall_name(audit_arch, nr).map(|name| format!("{name}(resolved)"))
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) from nanoseconds since the epoch.
fn format_utc(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60)
}

pub fn run_log_checkpoint(args: CheckpointArgs) -> i32 {
    let file = match log_file(args.file.clone()) {
        Ok(file) => file,
        Err(e) => return fail(e),
    };
    if args.append {
        let signer = match &args.key {
            Some(path) => NoteSigner::read(path).map(Some),
            None => note::signer_from_env(),
        };
        let signer = match signer {
            Ok(signer) => signer,
            Err(e) => return fail(e),
        };
        if !file.exists() {
            return fail(format!("{}: no such log", file.display()));
        }
        let options = WriterOptions { signer, ..WriterOptions::default() };
        let written = LogWriter::open_with(&file, options).and_then(|mut writer| writer.checkpoint(Durability::Sync));
        return match written {
            Ok(checkpoint) => {
                print!("{}", checkpoint.to_note());
                0
            }
            Err(e) => fail(e),
        };
    }
    let report = verify(&file, &VerifyOptions::default());
    match (&report.verdict, report.head) {
        (Verdict::Intact | Verdict::Incomplete { .. }, Some(head)) => {
            let signed = SignedCheckpoint { checkpoint: head, signatures: Vec::new() };
            print!("{}", signed.to_note());
            eprintln!(
                "note: an unsigned checkpoint computed from the log as it is now; save it outside the log (`capsule log checkpoint --append` writes a signed one into the log)"
            );
            0
        }
        (Verdict::Unreadable { reason }, _) => fail(reason),
        (verdict, _) => {
            eprintln!(
                "capsule: {}: the log does not verify ({verdict:?}); refusing to vouch for it with a checkpoint",
                file.display()
            );
            1
        }
    }
}

pub fn run_log_prove(args: ProveArgs) -> i32 {
    let file = match log_file(args.file.clone()) {
        Ok(file) => file,
        Err(e) => return fail(e),
    };
    let tree = match LogTree::read(&file) {
        Ok(tree) => tree,
        Err(e) => return fail(e),
    };
    let read = |path: &Path| SignedCheckpoint::read(path).map(|s| s.checkpoint);
    let hashes = |path: &[Hash]| path.iter().map(Hash::to_hex).collect::<Vec<_>>();
    if let Some(record) = args.record {
        let checkpoint = match args.checkpoint.as_deref().map(read).transpose() {
            Ok(Some(checkpoint)) => checkpoint,
            Ok(None) => tree.checkpoint(tree.size()).expect("the whole log"),
            Err(e) => return fail(e),
        };
        let Some(proof) = tree.inclusion(record, checkpoint.size) else {
            return fail(format!(
                "record {record} is not in a tree of {} records (the log has {})",
                checkpoint.size,
                tree.size()
            ));
        };
        // The proof is built from the log; it must also check against the given root.
        let ok = proof.checkpoint == checkpoint && proof.verify();
        match args.format {
            Format::Json => println!(
                "{}",
                json!({"record": record, "leaf": proof.leaf.to_hex(), "size": checkpoint.size, "root": checkpoint.root.to_hex(), "proof": hashes(&proof.path), "verified": ok})
            ),
            Format::Text => {
                println!(
                    "record {record} (leaf {}) in tree of {} records with root {}",
                    proof.leaf, checkpoint.size, checkpoint.root
                );
                proof.path.iter().for_each(|h| println!("  {h}"));
                println!(
                    "{}",
                    if ok {
                        "verified"
                    } else {
                        "FAILED: the log's tree at that size does not have the checkpoint's root"
                    }
                );
            }
        }
        return if ok { 0 } else { 1 };
    }
    let (Some(from), Some(to)) = (args.from.as_deref(), args.to.as_deref()) else {
        return fail("give --record N, or --from CHECKPOINT --to CHECKPOINT");
    };
    let (old, new) = match (read(from), read(to)) {
        (Ok(old), Ok(new)) => (old, new),
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    let Some(proof) = tree.consistency(old.size, new.size) else {
        return fail(format!(
            "sizes {} -> {} are not both within the log's {} records, in order",
            old.size,
            new.size,
            tree.size()
        ));
    };
    let ok = proof.old == old && proof.new == new && proof.verify();
    match args.format {
        Format::Json => println!(
            "{}",
            json!({"old_size": old.size, "old_root": old.root.to_hex(), "new_size": new.size, "new_root": new.root.to_hex(), "proof": hashes(&proof.path), "verified": ok})
        ),
        Format::Text => {
            println!(
                "tree of {} records (root {}) extends tree of {} records (root {})",
                new.size, new.root, old.size, old.root
            );
            proof.path.iter().for_each(|h| println!("  {h}"));
            println!("{}", if ok { "verified" } else { "FAILED: the checkpoints are not both trees of this log" });
        }
    }
    if ok { 0 } else { 1 }
}

pub fn run_keygen(args: KeygenArgs) -> i32 {
    let signer = match NoteSigner::generate(&args.name) {
        Ok(signer) => signer,
        Err(e) => return fail(e),
    };
    match note::write_key_pair(&signer, &args.out) {
        Ok((private, public)) => {
            println!(
                "private key: {} (mode 0600; use with CAPSULE_LOG_SIGNING_KEY={})",
                private.display(),
                private.display()
            );
            println!("public key:  {}", public.display());
            println!("{}", signer.verifier().encode());
            0
        }
        Err(e) => fail(format!("{}: {e}", args.out.display())),
    }
}

/// Reads a whole file of lines; used by tests of this module.
#[cfg(test)]
fn read_lines(path: &Path) -> Vec<String> {
    BufReader::new(std::fs::File::open(path).unwrap()).lines().map(Result::unwrap).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(951_782_400_000_000_000), "2000-02-29 00:00:00");
        assert_eq!(format_utc(1_700_000_000_123_000_000), "2023-11-14 22:13:20");
    }

    #[test]
    fn keygen_writes_a_private_key_only_the_owner_can_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("log");
        assert_eq!(run_keygen(KeygenArgs { out: prefix.clone(), name: "k".into() }), 0);
        let mode = std::fs::metadata(dir.path().join("log.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let public = read_lines(&dir.path().join("log.pub"));
        assert!(NoteVerifier::parse(&public[0]).is_ok());
        assert_eq!(run_keygen(KeygenArgs { out: prefix, name: "k".into() }), USAGE_ERROR, "never overwrites a key");
    }
}
