//! Finding the command (execvp's PATH search, on the clean environment's PATH) and
//! refusing an executable the artifact's filter was not compiled for.

use capsule_artifacts::Target;
use goblin::elf::header;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::{EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND, Failure};

/// glibc's search path when PATH is unset.
const DEFAULT_PATH: &str = "/bin:/usr/bin";
/// The kernel follows at most this many `#!` interpreters (BINPRM_MAX_RECURSION).
const MAX_INTERPRETER_DEPTH: usize = 4;

/// Resolves `command` as execvp would: a name with a `/` is used as is; otherwise the
/// first executable regular file in PATH, else the first existing one (so exec reports
/// why it cannot run it), else "not found".
pub fn resolve(command: &OsStr, path_var: Option<&OsStr>) -> Result<PathBuf, Failure> {
    if command.is_empty() {
        return Err(Failure::new(EXIT_NOT_FOUND, "the command is empty"));
    }
    if command.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(command));
    }
    let search = path_var.unwrap_or(OsStr::new(DEFAULT_PATH));
    let mut first_existing = None;
    for dir in std::env::split_paths(search) {
        // An empty PATH entry means the current directory.
        let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
        let candidate = dir.join(command);
        let Ok(meta) = std::fs::metadata(&candidate) else { continue };
        if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
            return Ok(candidate);
        }
        first_existing.get_or_insert(candidate);
    }
    first_existing.ok_or_else(|| {
        Failure::new(
            EXIT_NOT_FOUND,
            format!("{}: command not found in PATH {}", command.to_string_lossy(), search.to_string_lossy()),
        )
    })
}

/// What the executable (or its `#!` interpreter) was compiled for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Machine {
    Target(Target),
    Other(String),
}

/// Refuses an ELF whose machine is not `target` unless the artifact also lists that
/// machine's target. Files that are neither ELF nor `#!` scripts are left to the kernel.
/// Returns notes for `--verbose`.
pub fn check_machine(path: &Path, target: Target, listed: &[Target]) -> Result<Vec<String>, Failure> {
    let mut notes = Vec::new();
    let mut current = path.to_path_buf();
    for _ in 0..=MAX_INTERPRETER_DEPTH {
        let head = match read_head(&current) {
            Ok(head) => head,
            // exec reports unreadable or missing files with the right exit code.
            Err(_) => return Ok(notes),
        };
        if let Some(interpreter) = shebang(&head) {
            notes.push(format!("{} runs under {}", current.display(), interpreter.display()));
            current = interpreter;
            continue;
        }
        match machine(&head) {
            None => return Ok(notes),
            Some(Machine::Target(found)) if found == target => {
                notes.push(format!("{} is a {found} executable", current.display()));
                return Ok(notes);
            }
            Some(Machine::Target(found)) if listed.contains(&found) => {
                notes.push(format!(
                    "{} is a {found} executable; the policy lists {found}, the filter applied is {target}",
                    current.display()
                ));
                return Ok(notes);
            }
            Some(found) => {
                let found = match found {
                    Machine::Target(t) => t.to_string(),
                    Machine::Other(name) => name,
                };
                return Err(Failure::new(
                    EXIT_CANNOT_EXECUTE,
                    format!(
                        "{} is a {found} executable, but the artifact's filter is for {target} and the policy \
                         lists no {found} target; its system calls would not match the filter",
                        current.display()
                    ),
                ));
            }
        }
    }
    Err(Failure::new(EXIT_CANNOT_EXECUTE, format!("{}: too many levels of #! interpreters", path.display())))
}

fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(256);
    std::fs::File::open(path)?.take(256).read_to_end(&mut head)?;
    Ok(head)
}

/// The interpreter of a `#!` line, as the kernel reads it: the first word.
fn shebang(head: &[u8]) -> Option<PathBuf> {
    let line = head.strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let word = line.split(|&b| b == b' ' || b == b'\t').find(|w| !w.is_empty())?;
    Some(PathBuf::from(OsString::from(OsStr::from_bytes(word))))
}

fn machine(head: &[u8]) -> Option<Machine> {
    if !head.starts_with(header::ELFMAG) {
        return None;
    }
    let Ok(elf) = goblin::elf::Elf::parse_header(head) else {
        return Some(Machine::Other("malformed ELF".to_owned()));
    };
    let is_64 = elf.e_ident[header::EI_CLASS] == header::ELFCLASS64;
    Some(match (elf.e_machine, is_64) {
        (header::EM_X86_64, true) => Machine::Target(Target::LinuxX86_64),
        (header::EM_AARCH64, true) => Machine::Target(Target::LinuxAarch64),
        (header::EM_X86_64, false) => Machine::Other("x32".to_owned()),
        (header::EM_386, _) => Machine::Other("i386".to_owned()),
        (other, _) => Machine::Other(header::machine_to_str(other).to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebang_takes_the_first_word() {
        assert_eq!(shebang(b"#!/bin/sh -e\necho"), Some(PathBuf::from("/bin/sh")));
        assert_eq!(shebang(b"#! /usr/bin/env python3\n"), Some(PathBuf::from("/usr/bin/env")));
        assert_eq!(shebang(b"echo"), None);
    }

    #[test]
    fn host_binaries_are_accepted() {
        let host = Target::host().unwrap();
        let sh = resolve(OsStr::new("sh"), Some(OsStr::new("/usr/bin:/bin"))).unwrap();
        let notes = check_machine(&sh, host, &[host]).unwrap();
        assert!(notes.last().unwrap().contains(host.name()), "{notes:?}");
    }

    #[test]
    fn foreign_elf_is_refused_unless_listed() {
        let dir = tempfile::tempdir().unwrap();
        let elf = dir.path().join("foreign");
        // A minimal ELF64 header for aarch64 (the rest is zero).
        let mut bytes = vec![0u8; 64];
        bytes[..4].copy_from_slice(header::ELFMAG);
        bytes[4] = header::ELFCLASS64;
        bytes[5] = 1; // little-endian
        bytes[6] = 1; // EV_CURRENT
        bytes[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        bytes[18..20].copy_from_slice(&header::EM_AARCH64.to_le_bytes());
        std::fs::write(&elf, &bytes).unwrap();
        let err = check_machine(&elf, Target::LinuxX86_64, &[Target::LinuxX86_64]).unwrap_err();
        assert_eq!(err.exit_code, EXIT_CANNOT_EXECUTE);
        assert!(err.message.contains("linux-aarch64 executable"), "{}", err.message);
        check_machine(&elf, Target::LinuxX86_64, &[Target::LinuxX86_64, Target::LinuxAarch64]).unwrap();

        let script = dir.path().join("script");
        std::fs::write(&script, format!("#!{}\n", elf.display())).unwrap();
        assert!(check_machine(&script, Target::LinuxX86_64, &[Target::LinuxX86_64]).is_err());
    }

    #[test]
    fn not_found_is_127() {
        let err = resolve(OsStr::new("no-such-command-capsule"), Some(OsStr::new("/nonexistent"))).unwrap_err();
        assert_eq!(err.exit_code, EXIT_NOT_FOUND);
    }
}
