//! What a profile holds, and the [`Recorder`] that fills it from the tracer's stops.
//!
//! Memory stays bounded whatever the command does: syscalls are counts, argument
//! values are sets capped at [`MAX_VALUES`] per argument, paths at [`MAX_PATHS`]
//! (then their parent directories), failed paths at [`MAX_FAILED_PATHS`], the exec
//! tree at [`MAX_EXECS`] nodes. A cap that was reached is said in the profile.

use super::trace::{proc_link, read_c_string, read_memory};
use capsule_artifacts::Target;
use capsule_compiler::tables::{self, Table};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

pub const MAX_VALUES: usize = 64;
pub const MAX_PATHS: usize = 50_000;
pub const MAX_FAILED_PATHS: usize = 1_000;
pub const MAX_EXECS: usize = 1_000;
const MAX_EXEC_ARGS: usize = 32;
const MAX_ARG_BYTES: usize = 256;

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// As `capsule run` reports it: the code, or 128+N for signal N.
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

/// File access classes.
pub mod class {
    pub const READ: u8 = 1;
    pub const WRITE: u8 = 2;
    pub const CREATE: u8 = 4;
    pub const REMOVE: u8 = 8;
    pub const EXECUTE: u8 = 16;
    pub const LIST: u8 = 32;
    pub const ALL: [(u8, &str); 6] = [
        (READ, "read"),
        (WRITE, "write"),
        (CREATE, "create"),
        (REMOVE, "remove"),
        (EXECUTE, "execute"),
        (LIST, "list"),
    ];
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub count: u64,
    /// Calls that returned an error; counted for the calls whose results the profiler
    /// sees (`results`): those that name paths or addresses, and exec.
    pub failed: u64,
    pub results: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecNode {
    pub pid: i32,
    pub parent: Option<i32>,
    pub path: String,
    pub argv: Vec<String>,
}

/// One command's profile: the union of its runs.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    /// Architecture name → syscall name → counts.
    pub syscalls: BTreeMap<String, BTreeMap<String, Counts>>,
    /// Syscall → argument name → values seen (native arch).
    pub args: BTreeMap<String, BTreeMap<String, BTreeSet<u64>>>,
    /// (syscall, argument) whose values passed MAX_VALUES.
    pub args_overflow: BTreeSet<(String, String)>,
    pub files: BTreeMap<PathBuf, u8>,
    pub failed_files: BTreeMap<PathBuf, u8>,
    /// Path calls refused with EACCES or EPERM (EXDEV for rename and link), what
    /// Landlock answers: (syscall, errno name, path). At most [`MAX_FAILED_PATHS`].
    /// Replay reports those its own profile did not have (docs/profile.md).
    pub refusals: BTreeSet<(String, String, PathBuf)>,
    pub connect: BTreeSet<(String, u16)>,
    pub bind: BTreeSet<(String, u16)>,
    pub unix_sockets: BTreeSet<String>,
    pub exec: Vec<ExecNode>,
    pub processes: u64,
    pub notes: BTreeSet<String>,
    pub truncated: BTreeSet<String>,
}

impl Profile {
    pub fn total_calls(&self) -> u64 {
        self.syscalls.values().flat_map(|m| m.values()).map(|c| c.count).sum()
    }

    /// Adds `other` (another run, or another command for the merged policy).
    pub fn merge(&mut self, other: &Profile) {
        for (arch, calls) in &other.syscalls {
            let mine = self.syscalls.entry(arch.clone()).or_default();
            for (name, c) in calls {
                let e = mine.entry(name.clone()).or_default();
                e.count += c.count;
                e.failed += c.failed;
                e.results |= c.results;
            }
        }
        for (sc, args) in &other.args {
            for (arg, values) in args {
                let set = self.args.entry(sc.clone()).or_default().entry(arg.clone()).or_default();
                for &v in values {
                    if set.len() < MAX_VALUES || set.contains(&v) {
                        set.insert(v);
                    } else {
                        self.args_overflow.insert((sc.clone(), arg.clone()));
                    }
                }
            }
        }
        self.args_overflow.extend(other.args_overflow.iter().cloned());
        for (path, &c) in &other.files {
            *self.files.entry(path.clone()).or_default() |= c;
        }
        for (path, &c) in &other.failed_files {
            *self.failed_files.entry(path.clone()).or_default() |= c;
        }
        for r in &other.refusals {
            if self.refusals.len() < MAX_FAILED_PATHS {
                self.refusals.insert(r.clone());
            }
        }
        self.connect.extend(other.connect.iter().cloned());
        self.bind.extend(other.bind.iter().cloned());
        self.unix_sockets.extend(other.unix_sockets.iter().cloned());
        for node in &other.exec {
            if self.exec.len() < MAX_EXECS {
                self.exec.push(node.clone());
            }
        }
        self.processes = self.processes.max(other.processes);
        self.notes.extend(other.notes.iter().cloned());
        self.truncated.extend(other.truncated.iter().cloned());
    }
}

/// What the recorder does with a syscall's paths and result.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Plain,
    /// open/openat/openat2/creat: dirfd, path and flags argument indices.
    Open {
        dirfd: Option<usize>,
        path: usize,
        flags: Option<usize>,
        how: bool,
    },
    Exec {
        dirfd: Option<usize>,
        path: usize,
        argv: usize,
    },
    /// A call that makes a name (mkdir, mknod, link, symlink).
    Create {
        dirfd: Option<usize>,
        path: usize,
    },
    Remove {
        dirfd: Option<usize>,
        path: usize,
    },
    Rename {
        olddir: Option<usize>,
        old: usize,
        newdir: Option<usize>,
        new: usize,
    },
    Truncate {
        path: usize,
    },
    Connect,
    Bind,
}

/// An argument whose values are recorded, with the prefixes of its constants' names.
struct ArgSpec {
    index: usize,
    name: &'static str,
    prefixes: &'static [&'static str],
}

const fn spec(index: usize, name: &'static str, prefixes: &'static [&'static str]) -> ArgSpec {
    ArgSpec { index, name, prefixes }
}

const ARG_SPECS: &[(&str, &[ArgSpec])] = &[
    ("socket", &[spec(0, "domain", &["AF_"]), spec(1, "type", &["SOCK_"]), spec(2, "protocol", &["IPPROTO_"])]),
    ("socketpair", &[spec(0, "domain", &["AF_"]), spec(1, "type", &["SOCK_"])]),
    ("clone", &[spec(0, "flags", &["CLONE_"])]),
    ("unshare", &[spec(0, "flags", &["CLONE_"])]),
    ("ioctl", &[spec(1, "request", &["TC", "TIOC", "FIO"])]),
    ("prctl", &[spec(0, "option", &["PR_"])]),
    ("personality", &[spec(0, "persona", &["PER_"])]),
    ("mmap", &[spec(2, "prot", &["PROT_"])]),
    ("mprotect", &[spec(2, "prot", &["PROT_"])]),
    ("pkey_mprotect", &[spec(2, "prot", &["PROT_"])]),
    ("fcntl", &[spec(1, "cmd", &["F_"])]),
    ("arch_prctl", &[spec(0, "code", &["ARCH_"])]),
    ("memfd_create", &[spec(1, "flags", &["MFD_"])]),
    ("execveat", &[spec(4, "flags", &["AT_"])]),
    ("seccomp", &[spec(0, "operation", &["SECCOMP_"])]),
    ("ptrace", &[spec(0, "request", &["PTRACE_"])]),
];

/// Aliases that lose to the usual name of the same value.
const ALIASES: &[&str] = &["AF_FILE", "AF_LOCAL", "AF_ROUTE", "PF_UNIX"];

/// The usual name of `value` among the constants with one of `prefixes`, if any: the
/// shortest (an option's name is shorter than its sub-options': `PR_SET_NAME`, not
/// `PR_SET_MM_MAP_SIZE`).
pub fn constant_name(table: &Table, prefixes: &[&str], value: u64) -> Option<&'static str> {
    table
        .constants
        .iter()
        .filter(|c| {
            c.value == value && prefixes.iter().any(|p| c.name().starts_with(p)) && !ALIASES.contains(&c.name())
        })
        .map(|c| c.name())
        .min_by_key(|name| (name.len(), *name))
}

/// The prefixes for naming one recorded argument.
pub fn arg_prefixes(syscall: &str, arg: &str) -> &'static [&'static str] {
    ARG_SPECS
        .iter()
        .find(|(name, _)| *name == syscall)
        .and_then(|(_, specs)| specs.iter().find(|s| s.name == arg))
        .map_or(&[], |s| s.prefixes)
}

/// The entry of a call whose exit the recorder wants.
#[derive(Debug)]
pub struct Pending {
    nr: u32,
    args: [u64; 6],
    /// For an O_CREAT open: whether the file existed before the call.
    existed: bool,
    /// For execve: the path and argv, read before the exec replaced the memory.
    exec: Option<(PathBuf, Vec<String>)>,
}

pub struct Recorder {
    target: Target,
    table: &'static Table,
    native_arch: u32,
    kinds: Vec<Kind>,
    specs: Vec<Option<&'static [ArgSpec]>>,
    /// Native counts by number.
    counts: Vec<Counts>,
    unknown_native: BTreeMap<u64, Counts>,
    foreign: BTreeMap<(u32, u64), u64>,
    calls: u64,
    parents: BTreeMap<i32, Option<i32>>,
    exec_args: BTreeMap<i32, (PathBuf, Vec<String>)>,
    live: u64,
    all_results: bool,
    root: Option<i32>,
    /// `--within`: the processes being recorded (`None`: all).
    gate: Option<BTreeSet<i32>>,
    gate_exec_nr: BTreeMap<i32, u32>,
    /// Argument values by (number, argument name).
    values: BTreeMap<(u32, &'static str), BTreeSet<u64>>,
    clone3: Option<u32>,
    pub profile: Profile,
    parent_paths: usize,
    /// While a failed call's exit is recorded: its name and errno, when the errno is
    /// one Landlock answers with (`add_failed` then notes a refusal).
    refusing: Option<(&'static str, &'static str)>,
}

fn at(index: usize) -> Option<usize> {
    Some(index)
}

impl Recorder {
    pub fn new(target: Target) -> Recorder {
        let table = tables::table(target);
        let size = table.max_nr as usize + 1;
        let mut kinds = vec![Kind::Plain; size];
        let mut specs: Vec<Option<&'static [ArgSpec]>> = vec![None; size];
        let mut set = |name: &str, kind: Kind| {
            if let Some(def) = table.by_name(name) {
                kinds[def.nr as usize] = kind;
            }
        };
        set("open", Kind::Open { dirfd: None, path: 0, flags: Some(1), how: false });
        set("creat", Kind::Open { dirfd: None, path: 0, flags: None, how: false });
        set("openat", Kind::Open { dirfd: at(0), path: 1, flags: Some(2), how: false });
        set("openat2", Kind::Open { dirfd: at(0), path: 1, flags: Some(2), how: true });
        set("execve", Kind::Exec { dirfd: None, path: 0, argv: 1 });
        set("execveat", Kind::Exec { dirfd: at(0), path: 1, argv: 2 });
        set("mkdir", Kind::Create { dirfd: None, path: 0 });
        set("mkdirat", Kind::Create { dirfd: at(0), path: 1 });
        set("mknod", Kind::Create { dirfd: None, path: 0 });
        set("mknodat", Kind::Create { dirfd: at(0), path: 1 });
        set("symlink", Kind::Create { dirfd: None, path: 1 });
        set("symlinkat", Kind::Create { dirfd: at(1), path: 2 });
        set("link", Kind::Create { dirfd: None, path: 1 });
        set("linkat", Kind::Create { dirfd: at(2), path: 3 });
        set("unlink", Kind::Remove { dirfd: None, path: 0 });
        set("rmdir", Kind::Remove { dirfd: None, path: 0 });
        set("unlinkat", Kind::Remove { dirfd: at(0), path: 1 });
        set("rename", Kind::Rename { olddir: None, old: 0, newdir: None, new: 1 });
        set("renameat", Kind::Rename { olddir: at(0), old: 1, newdir: at(2), new: 3 });
        set("renameat2", Kind::Rename { olddir: at(0), old: 1, newdir: at(2), new: 3 });
        set("truncate", Kind::Truncate { path: 0 });
        set("connect", Kind::Connect);
        set("bind", Kind::Bind);
        for (name, list) in ARG_SPECS {
            if let Some(def) = table.by_name(name) {
                specs[def.nr as usize] = Some(list);
            }
        }
        Recorder {
            target,
            table,
            native_arch: target.audit_arch().unwrap_or(0),
            kinds,
            specs,
            counts: vec![Counts::default(); size],
            unknown_native: BTreeMap::new(),
            foreign: BTreeMap::new(),
            calls: 0,
            parents: BTreeMap::new(),
            exec_args: BTreeMap::new(),
            live: 0,
            all_results: false,
            root: None,
            gate: None,
            gate_exec_nr: BTreeMap::new(),
            values: BTreeMap::new(),
            clone3: table.by_name("clone3").map(|d| d.nr),
            profile: Profile::default(),
            parent_paths: 0,
            refusing: None,
        }
    }

    pub fn native_arch(&self) -> u32 {
        self.native_arch
    }

    pub fn calls(&self) -> u64 {
        self.calls
    }

    pub fn process_started(&mut self, pid: i32, parent: Option<i32>) {
        self.parents.insert(pid, parent);
        if parent.is_none() {
            self.root = Some(pid);
        }
        if let Some(recording) = &mut self.gate
            && parent.is_some_and(|p| recording.contains(&p))
        {
            recording.insert(pid);
        }
        if self.is_recorded(pid) {
            self.profile.processes += 1;
        }
        self.live += 1;
    }

    /// `--within`: the traced root is `capsule run`; only the processes from the first
    /// exec below it on (the command and its descendants) are recorded.
    pub fn see_all_results(&mut self) {
        self.all_results = true;
    }

    pub fn gate_below_root(&mut self) {
        self.gate = Some(BTreeSet::new());
    }

    fn is_recorded(&self, pid: i32) -> bool {
        self.gate.as_ref().is_none_or(|recording| recording.contains(&pid))
    }

    pub fn process_ended(&mut self, pid: i32) {
        self.exec_args.remove(&pid);
        if let Some(recording) = &mut self.gate {
            recording.remove(&pid);
        }
        self.live = self.live.saturating_sub(1);
    }

    /// A traced call's entry; `Some` when its exit should be seen too.
    pub fn entry(&mut self, pid: i32, arch: u32, nr: u64, args: [u64; 6]) -> Option<Pending> {
        if !self.is_recorded(pid) {
            // Not the command (yet): only an exec is noted, for the exec that opens the gate.
            if arch == self.native_arch
                && let Some(Kind::Exec { dirfd, path, argv }) = self.kinds.get(nr as usize).copied()
                && let Some(resolved) = self.resolve(pid, dirfd.map(|i| args[i]), args[path])
            {
                let argv = read_argv(pid, args[argv]);
                self.exec_args.insert(pid, (resolved, argv));
                self.gate_exec_nr.insert(pid, nr as u32);
            }
            return None;
        }
        self.calls += 1;
        if arch != self.native_arch || nr >= u64::from(capsule_artifacts::target::X32_SYSCALL_BIT) {
            *self.foreign.entry((arch, nr)).or_default() += 1;
            return None;
        }
        let Some(kind) = self.kinds.get(nr as usize).copied() else {
            self.unknown_native.entry(nr).or_default().count += 1;
            return None;
        };
        let nr = nr as u32;
        self.counts[nr as usize].count += 1;
        if let Some(specs) = self.specs[nr as usize] {
            for s in specs {
                self.record_value(nr, s.name, args[s.index]);
            }
        }
        if Some(nr) == self.clone3 {
            // clone3's flags are the first field of the struct it points to.
            let bytes = read_memory(pid, args[0], 8);
            if let Ok(raw) = <[u8; 8]>::try_from(bytes.as_slice()) {
                self.record_value(nr, "flags", u64::from_ne_bytes(raw));
            }
        }
        // Only the calls whose results make the profile are seen at their exit: one
        // stop instead of two for everything else (docs/profile.md, "Mechanism"),
        // unless every result was asked for (`--all-results`).
        if matches!(kind, Kind::Plain) && !self.all_results {
            return None;
        }
        let mut pending = Pending { nr, args, existed: false, exec: None };
        match kind {
            Kind::Open { dirfd, path, flags, how } => {
                let flags = self.open_flags(pid, &args, flags, how);
                if flags & libc::O_CREAT as u64 != 0 {
                    pending.existed = self
                        .resolve(pid, dirfd.map(|i| args[i]), args[path])
                        .is_none_or(|p| std::fs::symlink_metadata(p).is_ok());
                }
            }
            Kind::Exec { dirfd, path, argv } => {
                let resolved = self.resolve(pid, dirfd.map(|i| args[i]), args[path]);
                let argv = read_argv(pid, args[argv]);
                pending.exec = resolved.map(|p| (p, argv));
            }
            _ => {}
        }
        Some(pending)
    }

    /// Adds a value to the set of (syscall, argument); no allocation once the value is
    /// known (the hot path of a loop that calls fcntl or mmap many times).
    fn record_value(&mut self, nr: u32, arg: &'static str, value: u64) {
        let set = self.values.entry((nr, arg)).or_default();
        if set.contains(&value) {
            return;
        }
        if set.len() < MAX_VALUES {
            set.insert(value);
        } else if let Some(def) = self.table.by_nr(nr) {
            self.profile.args_overflow.insert((def.name().to_owned(), arg.to_owned()));
        }
    }

    fn open_flags(&self, pid: i32, args: &[u64; 6], flags: Option<usize>, how: bool) -> u64 {
        match (flags, how) {
            (None, _) => (libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC) as u64,
            (Some(i), false) => args[i] & 0xffff_ffff,
            (Some(i), true) => {
                // struct open_how starts with `__u64 flags`.
                let bytes = read_memory(pid, args[i], 8);
                <[u8; 8]>::try_from(bytes.as_slice()).map(u64::from_ne_bytes).unwrap_or(0)
            }
        }
    }

    /// The path argument at `addr`, made absolute against the directory descriptor
    /// (or the working directory) of `pid`, and normalised lexically.
    fn resolve(&self, pid: i32, dirfd: Option<u64>, addr: u64) -> Option<PathBuf> {
        let raw = read_c_string(pid, addr)?;
        let path = Path::new(std::ffi::OsStr::from_bytes(&raw));
        if path.is_absolute() {
            return Some(normalise(path));
        }
        let base = match dirfd.map(|fd| fd as i32) {
            None | Some(libc::AT_FDCWD) => proc_link(pid, "cwd")?,
            Some(fd) => proc_link(pid, &format!("fd/{fd}"))?,
        };
        Some(normalise(&base.join(path)))
    }

    /// A call's exit.
    pub fn exit(&mut self, pid: i32, pending: Pending, rval: i64, is_error: bool) {
        let nr = pending.nr;
        let failed =
            is_error && !(rval == -(libc::EINPROGRESS as i64) && matches!(self.kinds[nr as usize], Kind::Connect));
        self.counts[nr as usize].results = true;
        if is_error {
            self.counts[nr as usize].failed += 1;
        }
        self.refusing = None;
        if is_error {
            let errno = -rval;
            let kind = self.kinds[nr as usize];
            let name = match errno {
                e if e == libc::EACCES as i64 => Some("EACCES"),
                e if e == libc::EPERM as i64 => Some("EPERM"),
                // Landlock refuses a rename or link that would move a file between
                // directories with different rights with EXDEV.
                e if e == libc::EXDEV as i64 && matches!(kind, Kind::Rename { .. } | Kind::Create { .. }) => {
                    Some("EXDEV")
                }
                _ => None,
            };
            if let (Some(errno), Some(def)) = (name, self.table.by_nr(nr)) {
                self.refusing = Some((def.name(), errno));
            }
        }
        self.record_exit(pid, pending, rval, failed);
        self.refusing = None;
    }

    fn record_exit(&mut self, pid: i32, pending: Pending, rval: i64, failed: bool) {
        let nr = pending.nr;
        let args = pending.args;
        match self.kinds[nr as usize] {
            Kind::Plain => {}
            Kind::Open { dirfd, path, flags, how } => {
                let flags = self.open_flags(pid, &args, flags, how);
                if flags & libc::O_PATH as u64 != 0 {
                    return;
                }
                let mut classes = match flags & libc::O_ACCMODE as u64 {
                    0 => class::READ,
                    1 => class::WRITE,
                    _ => class::READ | class::WRITE,
                };
                if flags & libc::O_DIRECTORY as u64 != 0 && classes == class::READ {
                    classes = class::LIST;
                }
                if flags & libc::O_TRUNC as u64 != 0 {
                    classes |= class::WRITE;
                }
                if failed {
                    if let Some(p) = self.resolve(pid, dirfd.map(|i| args[i]), args[path]) {
                        self.add_failed(p, classes);
                    }
                    return;
                }
                if flags & libc::O_CREAT as u64 != 0 && !pending.existed {
                    classes |= class::CREATE;
                }
                if let Some(p) = proc_link(pid, &format!("fd/{rval}")) {
                    self.add_path(p, classes);
                }
            }
            Kind::Exec { .. } => {
                if failed && let Some((path, _)) = &pending.exec {
                    self.add_failed(path.clone(), class::EXECUTE);
                }
            }
            Kind::Create { dirfd, path } | Kind::Remove { dirfd, path } => {
                let c =
                    if matches!(self.kinds[nr as usize], Kind::Create { .. }) { class::CREATE } else { class::REMOVE };
                if let Some(p) = self.resolve(pid, dirfd.map(|i| args[i]), args[path]) {
                    if failed {
                        self.add_failed(p, c);
                    } else {
                        self.add_path(canonical_parent(&p), c);
                    }
                }
            }
            Kind::Rename { olddir, old, newdir, new } => {
                let old = self.resolve(pid, olddir.map(|i| args[i]), args[old]);
                let new = self.resolve(pid, newdir.map(|i| args[i]), args[new]);
                for (p, c) in [(old, class::REMOVE), (new, class::CREATE)] {
                    if let Some(p) = p {
                        if failed {
                            self.add_failed(p, c);
                        } else {
                            self.add_path(canonical_parent(&p), c);
                        }
                    }
                }
            }
            Kind::Truncate { path } => {
                if let Some(p) = self.resolve(pid, None, args[path]) {
                    if failed {
                        self.add_failed(p, class::WRITE);
                    } else {
                        self.add_path(std::fs::canonicalize(&p).unwrap_or(p), class::WRITE);
                    }
                }
            }
            Kind::Connect | Kind::Bind => {
                if !failed {
                    self.socket_address(pid, &args, matches!(self.kinds[nr as usize], Kind::Bind));
                }
            }
        }
        if let Some(exec) = pending.exec
            && !failed
        {
            self.exec_args.insert(pid, exec);
        }
    }

    /// A successful exec by `pid`.
    pub fn exec(&mut self, pid: i32) {
        if !self.is_recorded(pid) {
            if Some(pid) == self.root {
                return;
            }
            // The launcher's child has exec'd the command: record from here on, this
            // exec included.
            if let Some(recording) = &mut self.gate {
                recording.insert(pid);
            }
            self.profile.processes += 1;
            if let Some(nr) = self.gate_exec_nr.remove(&pid) {
                self.calls += 1;
                let c = &mut self.counts[nr as usize];
                c.count += 1;
                c.results = true;
            }
        }
        let exe = proc_link(pid, "exe");
        let (requested, argv) = self.exec_args.remove(&pid).unzip();
        if let Some(exe) = &exe {
            self.add_path(exe.clone(), class::EXECUTE);
            if let Some(interp) = interpreter(exe) {
                self.add_path(std::fs::canonicalize(&interp).unwrap_or(interp), class::EXECUTE);
            }
        }
        // A script: the kernel checks execute on it, and the interpreter reads it.
        if let Some(script) = requested.and_then(|p| std::fs::canonicalize(p).ok())
            && Some(&script) != exe.as_ref()
        {
            self.add_path(script, class::EXECUTE | class::READ);
        }
        if self.profile.exec.len() < MAX_EXECS {
            self.profile.exec.push(ExecNode {
                pid,
                parent: self.parents.get(&pid).copied().flatten(),
                path: exe.map(|p| p.to_string_lossy().into_owned()).unwrap_or_default(),
                argv: argv.unwrap_or_default(),
            });
        } else {
            self.profile.truncated.insert(format!("exec tree (over {MAX_EXECS} execs)"));
        }
    }

    fn add_path(&mut self, path: PathBuf, classes: u8) {
        if let Some(c) = self.profile.files.get_mut(&path) {
            *c |= classes;
            return;
        }
        if self.profile.files.len() < MAX_PATHS {
            self.profile.files.insert(path, classes);
            return;
        }
        // Over the cap: the parent directory stands for the file (a wider rule).
        let parent = path.parent().map(Path::to_path_buf).unwrap_or(path);
        self.profile.truncated.insert(format!("paths (over {MAX_PATHS}: parent directories recorded)"));
        if let Some(c) = self.profile.files.get_mut(&parent) {
            *c |= classes;
        } else if self.parent_paths < MAX_PATHS {
            self.parent_paths += 1;
            self.profile.files.insert(parent, classes);
        }
    }

    fn add_failed(&mut self, path: PathBuf, classes: u8) {
        if let Some((syscall, errno)) = self.refusing {
            if self.profile.refusals.len() < MAX_FAILED_PATHS {
                self.profile.refusals.insert((syscall.to_owned(), errno.to_owned(), path.clone()));
            } else {
                self.profile.truncated.insert(format!("refused paths (over {MAX_FAILED_PATHS})"));
            }
        }
        if let Some(c) = self.profile.failed_files.get_mut(&path) {
            *c |= classes;
        } else if self.profile.failed_files.len() < MAX_FAILED_PATHS {
            self.profile.failed_files.insert(path, classes);
        } else {
            self.profile.truncated.insert(format!("failed paths (over {MAX_FAILED_PATHS})"));
        }
    }

    fn socket_address(&mut self, pid: i32, args: &[u64; 6], bind: bool) {
        let len = (args[2] as usize).min(128);
        let addr = read_memory(pid, args[1], len);
        if addr.len() < 2 {
            return;
        }
        let family = i32::from(u16::from_ne_bytes([addr[0], addr[1]]));
        match family {
            libc::AF_INET | libc::AF_INET6 if addr.len() >= 4 => {
                let port = u16::from_be_bytes([addr[2], addr[3]]);
                let proto = socket_protocol(pid, args[0] as i32);
                let set = if bind { &mut self.profile.bind } else { &mut self.profile.connect };
                set.insert((proto.to_owned(), port));
            }
            libc::AF_UNIX => {
                let path = &addr[2..];
                let name = match path.first() {
                    Some(0) => format!("@{}", String::from_utf8_lossy(&path[1..]).trim_end_matches('\0')),
                    Some(_) => {
                        let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
                        String::from_utf8_lossy(&path[..end]).into_owned()
                    }
                    None => return,
                };
                if self.profile.unix_sockets.len() < MAX_VALUES {
                    self.profile.unix_sockets.insert(name);
                }
            }
            _ => {}
        }
    }

    /// The profile, with the counts by name.
    pub fn finish(mut self) -> Profile {
        for ((nr, arg), values) in std::mem::take(&mut self.values) {
            if let Some(def) = self.table.by_nr(nr) {
                self.profile.args.entry(def.name().to_owned()).or_default().insert(arg.to_owned(), values);
            }
        }
        let arch = self.target.name().to_owned();
        let mut native = BTreeMap::new();
        for (nr, c) in self.counts.iter().enumerate() {
            if c.count == 0 {
                continue;
            }
            let name = self.table.by_nr(nr as u32).map_or_else(|| format!("#{nr}"), |d| d.name().to_owned());
            native.insert(name, *c);
        }
        for (nr, c) in &self.unknown_native {
            native.insert(format!("#{nr}"), *c);
        }
        if !native.is_empty() {
            self.profile.syscalls.insert(arch, native);
        }
        for (&(arch, nr), &count) in &self.foreign {
            let arch_name = match arch {
                capsule_artifacts::target::AUDIT_ARCH_I386 => "i386".to_owned(),
                a if a == self.native_arch => "x32".to_owned(),
                a => format!("arch-{a:#x}"),
            };
            let nr = nr & !u64::from(capsule_artifacts::target::X32_SYSCALL_BIT);
            self.profile
                .syscalls
                .entry(arch_name.clone())
                .or_default()
                .insert(format!("#{nr}"), Counts { count, failed: 0, results: false });
            self.profile.notes.insert(format!(
                "used the foreign {arch_name} ABI: the generated policy kills such calls (foreign-arch: kill-process)"
            ));
        }
        let used = |name: &str| self.profile.syscalls.values().any(|m| m.contains_key(name));
        if used("ptrace") {
            self.profile.notes.insert(
                "called ptrace: a profiled command is already traced, so its own ptrace (a debugger, strace) fails; \
                 the generated policy allows what was observed"
                    .to_owned(),
            );
        }
        if used("seccomp") {
            self.profile.notes.insert(
                "installed a seccomp filter of its own: calls that filter denied by itself were not seen by the profiler"
                    .to_owned(),
            );
        }
        self.profile
    }
}

fn read_argv(pid: i32, addr: u64) -> Vec<String> {
    let mut argv = Vec::new();
    for i in 0..MAX_EXEC_ARGS as u64 {
        let bytes = read_memory(pid, addr + i * 8, 8);
        let Ok(raw) = <[u8; 8]>::try_from(bytes.as_slice()) else { break };
        let ptr = u64::from_ne_bytes(raw);
        if ptr == 0 {
            break;
        }
        let Some(mut arg) = read_c_string(pid, ptr) else { break };
        arg.truncate(MAX_ARG_BYTES);
        argv.push(String::from_utf8_lossy(&arg).into_owned());
    }
    argv
}

/// `tcp`, `udp` or `other`, from the socket's type (through a copy of the descriptor
/// taken with pidfd_getfd; the tracer may, as it may read the tracee's memory).
fn socket_protocol(pid: i32, fd: i32) -> &'static str {
    // SAFETY: pidfd_open and pidfd_getfd take integers and return new descriptors,
    // which are closed below; getsockopt writes one int into a live local.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        if pidfd < 0 {
            return "other";
        }
        let copy = libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) as i32;
        libc::close(pidfd);
        if copy < 0 {
            return "other";
        }
        let mut kind: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        let ok =
            libc::getsockopt(copy, libc::SOL_SOCKET, libc::SO_TYPE, (&mut kind as *mut libc::c_int).cast(), &mut len);
        libc::close(copy);
        match (ok, kind) {
            (0, libc::SOCK_STREAM) => "tcp",
            (0, libc::SOCK_DGRAM) => "udp",
            _ => "other",
        }
    }
}

/// The ELF interpreter (PT_INTERP) of an executable, if any, from its first 64 KiB
/// (the program headers and the interpreter's name come first in any real binary).
fn interpreter(exe: &Path) -> Option<PathBuf> {
    use goblin::container::{Container, Ctx, Endian};
    use goblin::elf::program_header::{PT_INTERP, ProgramHeader};
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(exe).ok()?.take(64 * 1024).read_to_end(&mut head).ok()?;
    let header = goblin::elf::Elf::parse_header(&head).ok()?;
    let container =
        if header.e_ident[4] == goblin::elf::header::ELFCLASS64 { Container::Big } else { Container::Little };
    let endian = Endian::from(header.e_ident[5] != goblin::elf::header::ELFDATA2MSB);
    let ctx = Ctx::new(container, endian);
    let headers = ProgramHeader::parse(&head, header.e_phoff as usize, header.e_phnum as usize, ctx).ok()?;
    let interp = headers.iter().find(|p| p.p_type == PT_INTERP)?;
    let bytes = head.get(interp.p_offset as usize..(interp.p_offset + interp.p_filesz) as usize)?;
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(&bytes[..end])))
}

/// `.` and `..` removed without following links.
pub fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The path with its parent directory's links resolved (the name itself may be gone).
fn canonical_parent(path: &Path) -> PathBuf {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf()).join(name),
        _ => path.to_path_buf(),
    }
}
