//! Profiles → policies: the observed syscalls plus a small baseline, argument rules
//! where few values were seen, and filesystem and network lists generalised with
//! care (docs/profile.md, "Generalisation rules").

use super::record::{Profile, arg_prefixes, class, constant_name};
use capsule_artifacts::Target;
use capsule_compiler::tables::{self, Table};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Allowed even when not observed: the exit path, signal return, restarted calls,
/// and the calls the vDSO falls back to.
pub const BASELINE: &[&str] = &[
    "exit",
    "exit_group",
    "rt_sigreturn",
    "restart_syscall",
    "clock_gettime",
    "clock_getres",
    "clock_nanosleep",
    "gettimeofday",
    "time",
    "getcpu",
];

/// The environment variables a generated policy passes; the profiler runs the
/// commands with only these, so that the profile sees what the policy will give.
pub const ENV_PASS: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TERM",
    "TZ",
    "TMPDIR",
    "SHELL",
];

/// An argument gets a rule when at most this many values were seen.
pub const MAX_RULE_VALUES: usize = 8;
/// A directory replaces its entries in a list once this many were touched.
pub const COLLAPSE_AT: usize = 4;

/// Argument rules the generator writes: (syscall, argument).
const RULE_ARGS: &[(&str, &str)] = &[
    ("socket", "domain"),
    ("socketpair", "domain"),
    ("ioctl", "request"),
    ("prctl", "option"),
    ("personality", "persona"),
    ("fcntl", "cmd"),
    ("arch_prctl", "code"),
];

const NAMESPACE_FLAGS: &str =
    "CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP";

/// Where the command ran, for the path variables and the paths never granted.
#[derive(Debug, Clone)]
pub struct Context {
    pub workspace: PathBuf,
    pub home: Option<PathBuf>,
    pub tmpdir: Option<PathBuf>,
    /// Capsule's own state and cache directories: never granted.
    pub capsule_dirs: Vec<PathBuf>,
    pub target: Target,
}

impl Context {
    pub fn from_env(workspace: PathBuf, target: Target) -> Context {
        let abs = |v: Option<std::ffi::OsString>| {
            v.map(PathBuf::from).filter(|p| p.is_absolute()).map(|p| std::fs::canonicalize(&p).unwrap_or(p))
        };
        let mut capsule_dirs = Vec::new();
        if let Ok(state) = capsule_launch::audit::default_log_path()
            && let Some(dir) = state.parent()
        {
            capsule_dirs.push(dir.to_path_buf());
        }
        if let Ok(cache) = capsule_launch::audit::cache_dir() {
            capsule_dirs.push(cache);
        }
        let capsule_dirs = capsule_dirs.into_iter().map(|p| std::fs::canonicalize(&p).unwrap_or(p)).collect();
        Context {
            workspace,
            home: abs(std::env::var_os("HOME")),
            tmpdir: abs(std::env::var_os("TMPDIR")).filter(|p| p != Path::new("/tmp")),
            capsule_dirs,
            target,
        }
    }

    /// The workspace stands for itself only when it is not a directory that holds
    /// the system or the home (then its files are listed like any others).
    fn workspace_usable(&self) -> bool {
        let w = &self.workspace;
        w.components().count() > 2
            || (w.components().count() == 2 && !is_system_top(w))
                && self.home.as_ref().is_none_or(|h| !h.starts_with(w))
    }
}

fn is_system_top(path: &Path) -> bool {
    [
        "/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/etc", "/opt", "/proc", "/sys", "/dev", "/var", "/run",
        "/home", "/root", "/tmp",
    ]
    .iter()
    .any(|t| Path::new(t) == path)
}

/// One filesystem list entry: a path, or a variable with a path under it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Entry {
    Workspace,
    Tmpdir,
    Home(PathBuf),
    Abs(PathBuf),
}

impl Entry {
    fn render(&self) -> String {
        match self {
            Entry::Workspace => "\"${WORKSPACE}\"".to_owned(),
            Entry::Tmpdir => "\"${TMPDIR}\"".to_owned(),
            Entry::Home(rel) => serde_json::to_string(&format!("${{HOME}}/{}", rel.display())).unwrap_or_default(),
            Entry::Abs(p) => yaml_path(p),
        }
    }
}

fn yaml_path(p: &Path) -> String {
    let s = p.to_string_lossy();
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c)) {
        s.into_owned()
    } else {
        serde_json::to_string(&s).unwrap_or_default()
    }
}

/// The filesystem lists of one policy, and what was left out and why.
#[derive(Debug, Default)]
pub struct FsLists {
    pub read: Vec<String>,
    pub write: Vec<String>,
    pub execute: Vec<String>,
    pub left_out: BTreeSet<String>,
}

/// Maps observed paths to policy entries and generalises them.
pub fn filesystem(files: &BTreeMap<PathBuf, u8>, ctx: &Context) -> FsLists {
    let mut read: BTreeSet<PathBuf> = BTreeSet::new();
    let mut write: BTreeSet<PathBuf> = BTreeSet::new();
    let mut execute: BTreeSet<PathBuf> = BTreeSet::new();
    let mut lists = FsLists::default();
    for (path, &c) in files {
        if let Some(dir) = ctx.capsule_dirs.iter().find(|d| path.starts_with(d)) {
            lists.left_out.insert(format!(
                "{} (inside capsule's own directory {}: `capsule run` refuses a policy that grants it)",
                path.display(),
                dir.display()
            ));
            continue;
        }
        // The kernel opens an executable (and its ELF interpreter) for reading as it
        // execs it, and Landlock checks ReadFile on that open as well as Execute.
        if c & (class::READ | class::LIST | class::EXECUTE) != 0 {
            read.insert(path.clone());
        }
        if c & class::WRITE != 0 {
            write.insert(path.clone());
        }
        if c & (class::CREATE | class::REMOVE) != 0 {
            // Making or removing a name is a right on the directory that holds it.
            let parent = path.parent().unwrap_or(path).to_path_buf();
            write.insert(parent);
        }
        if c & class::EXECUTE != 0 {
            execute.insert(path.clone());
        }
    }
    lists.read = generalise(read, ctx, &mut lists.left_out);
    lists.write = generalise(write, ctx, &mut lists.left_out);
    lists.execute = generalise(execute, ctx, &mut lists.left_out);
    lists
}

fn generalise(paths: BTreeSet<PathBuf>, ctx: &Context, left_out: &mut BTreeSet<String>) -> Vec<String> {
    let mut entries: BTreeSet<Entry> = BTreeSet::new();
    let mut plain: BTreeSet<PathBuf> = BTreeSet::new();
    for path in paths {
        // A path the policy language cannot carry as it is (not UTF-8, or a `$` the
        // launcher would take for a variable) is left out rather than altered.
        if path.to_str().is_none_or(|p| p.contains('$')) {
            left_out.insert(format!("{} (not expressible in a policy)", path.display()));
            continue;
        }
        if path == Path::new("/") {
            left_out.insert("/ (never granted whole)".to_owned());
            continue;
        }
        if ctx.workspace_usable() && path.starts_with(&ctx.workspace) {
            entries.insert(Entry::Workspace);
        } else if path.starts_with("/tmp") {
            entries.insert(Entry::Abs(PathBuf::from("/tmp")));
        } else if let Some(t) = &ctx.tmpdir
            && path.starts_with(t)
        {
            entries.insert(Entry::Tmpdir);
        } else if let Some(rest) = proc_pid_path(&path) {
            let _ = rest;
            entries.insert(Entry::Abs(PathBuf::from("/proc")));
        } else if path.starts_with("/dev/pts/") {
            entries.insert(Entry::Abs(PathBuf::from("/dev/pts")));
        } else {
            plain.insert(path);
        }
    }
    // Collapse, deepest first: a directory with COLLAPSE_AT touched entries (its
    // distinct children with something recorded beneath) replaces them, unless it is a
    // directory that must not be granted whole.
    let depth = |p: &Path| p.components().count();
    let max_depth = plain.iter().map(|p| depth(p)).max().unwrap_or(0);
    for d in (3..=max_depth).rev() {
        let children: BTreeSet<PathBuf> =
            plain.iter().filter(|p| depth(p) >= d).map(|p| p.components().take(d).collect()).collect();
        let mut counts: BTreeMap<PathBuf, usize> = BTreeMap::new();
        for child in &children {
            if let Some(parent) = child.parent() {
                *counts.entry(parent.to_path_buf()).or_default() += 1;
            }
        }
        for (dir, n) in counts {
            if n >= COLLAPSE_AT && may_collapse_to(&dir, ctx) {
                let under: Vec<PathBuf> =
                    plain.range(dir.clone()..).take_while(|p| p.starts_with(&dir)).cloned().collect();
                for p in under {
                    plain.remove(&p);
                }
                plain.insert(dir);
            }
        }
    }
    // A path under another in the list adds nothing (sorted: descendants follow it).
    let mut kept: Vec<PathBuf> = Vec::new();
    for p in &plain {
        if kept.last().is_none_or(|k| !p.starts_with(k)) {
            kept.push(p.clone());
        }
    }
    for path in kept {
        match &ctx.home {
            Some(home) if path.starts_with(home) && path != *home => {
                entries.insert(Entry::Home(path.strip_prefix(home).unwrap_or(&path).to_path_buf()));
            }
            Some(home) if path == *home => {
                left_out.insert(format!("{} (the whole home directory is never granted)", home.display()));
            }
            _ => {
                entries.insert(Entry::Abs(path));
            }
        }
    }
    let entries: Vec<Entry> = entries.iter().filter(|e| !covered(e, &entries)).cloned().collect();
    // An entry that holds capsule's own state or cache directory would make `capsule
    // run` refuse the policy (the command could rewrite the log or the cache).
    let mut kept_entries = Vec::new();
    for e in entries {
        let path = match &e {
            Entry::Workspace => Some(ctx.workspace.clone()),
            Entry::Tmpdir => ctx.tmpdir.clone(),
            Entry::Home(rel) => ctx.home.as_ref().map(|h| h.join(rel)),
            Entry::Abs(p) => Some(p.clone()),
        };
        match path.and_then(|p| ctx.capsule_dirs.iter().find(|c| c.starts_with(&p)).map(|c| (p, c))) {
            Some((p, c)) => {
                left_out.insert(format!("{} (holds capsule's own directory {})", p.display(), c.display()));
            }
            None => kept_entries.push(e),
        }
    }
    kept_entries.iter().map(Entry::render).collect()
}

fn covered(entry: &Entry, all: &BTreeSet<Entry>) -> bool {
    let Entry::Abs(p) = entry else { return false };
    all.iter().any(|e| matches!(e, Entry::Abs(q) if q != p && p.starts_with(q)))
}

/// `/proc/<pid>/...`, `/proc/self/...`, `/proc/thread-self/...`: the part after.
fn proc_pid_path(path: &Path) -> Option<PathBuf> {
    let rest = path.strip_prefix("/proc").ok()?;
    let first = rest.components().next()?.as_os_str().to_str()?;
    (first.bytes().all(|b| b.is_ascii_digit()) || first == "self" || first == "thread-self").then(|| rest.to_path_buf())
}

fn may_collapse_to(dir: &Path, ctx: &Context) -> bool {
    let depth = dir.components().count();
    if depth <= 1 || dir.starts_with("/dev") {
        return false;
    }
    if depth == 2
        && !["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/opt", "/sys"]
            .iter()
            .any(|t| Path::new(t) == dir)
    {
        return false;
    }
    if ctx.home.as_ref().is_some_and(|h| h.starts_with(dir)) {
        return false;
    }
    if ctx.capsule_dirs.iter().any(|c| c.starts_with(dir)) {
        return false;
    }
    !ctx.workspace.starts_with(dir) || dir == ctx.workspace
}

/// One command (or several, for the merged policy) to write a policy for.
pub struct Source<'a> {
    pub label: String,
    pub profile: &'a Profile,
}

/// The generated policy's text.
pub fn policy(name: &str, description: &str, header: &[String], sources: &[Source<'_>], ctx: &Context) -> String {
    let table = tables::table(ctx.target);
    let arch = ctx.target.name();
    let mut merged = Profile::default();
    for s in sources {
        merged.merge(s.profile);
    }
    // Who needed each syscall.
    let mut users: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for s in sources {
        if let Some(calls) = s.profile.syscalls.get(arch) {
            for (name, counts) in calls {
                if let Some(def) = table.by_name(name) {
                    let note = if sources.len() == 1 {
                        match counts.failed {
                            0 => format!("{} calls", counts.count),
                            f => format!("{} calls, {f} failed", counts.count),
                        }
                    } else {
                        s.label.clone()
                    };
                    users.entry(def.name()).or_default().push(note);
                }
            }
        }
    }
    let mut out = String::new();
    for line in header {
        let _ = writeln!(out, "# {line}");
    }
    out.push_str("#\n# The observed syscalls plus a documented baseline are allowed; every other call fails\n");
    out.push_str("# with EPERM. Generated by `capsule profile` (docs/profile.md): review it before use.\n");
    let _ = writeln!(
        out,
        "version: 1\nname: {}\ndescription: {}",
        name,
        serde_json::to_string(description).unwrap_or_default()
    );
    out.push_str("\ndefault: errno(EPERM)         # every call not allowed below\n");
    out.push_str("newer-syscalls: errno(ENOSYS) # numbers above the compiler's table: libc falls back\n");
    out.push_str("foreign-arch: kill-process    # i386 int 0x80 and x32 calls: never allowed\n");
    let _ = writeln!(out, "targets: [{arch}]             # the architecture the profile was taken on");

    out.push_str(
        "\nsyscalls:\n  allow:\n    # baseline: the exit path, signal return, restarted calls, vDSO fallbacks\n",
    );
    for name in BASELINE {
        if table.by_name(name).is_some() && !users.contains_key(name) {
            let _ = writeln!(out, "    - {name}");
        }
    }
    out.push_str("    # observed\n");
    let clone3_flags = merged.args.get("clone3").and_then(|a| a.get("flags"));
    let clone_flags = merged.args.get("clone").and_then(|a| a.get("flags"));
    let ns_mask = namespace_mask(table);
    let no_namespaces = |flags: Option<&BTreeSet<u64>>| flags.is_none_or(|f| f.iter().all(|v| v & ns_mask == 0));
    // clone3 hides its flags from seccomp: when no namespace was asked for, libc's
    // fallback to clone (whose flags the filter can test) replaces it.
    let replace_clone3 = users.contains_key("clone3")
        && no_namespaces(clone3_flags)
        && no_namespaces(clone_flags)
        && table.by_name("clone").is_some();
    let mut denies: Vec<String> = Vec::new();
    let mut wrote_clone = false;
    for (name, notes) in &users {
        let comment = notes.join(", ");
        if *name == "clone3" && replace_clone3 {
            denies.push(format!(
                "    - clone3: {{ action: errno(ENOSYS) }}   # {comment}: libc falls back to clone, whose flags the filter tests"
            ));
            continue;
        }
        if *name == "clone" {
            wrote_clone = true;
        }
        let _ = writeln!(out, "    - {}   # {comment}", rule(name, &merged, table, ns_mask));
    }
    if replace_clone3 && !wrote_clone {
        let _ = writeln!(out, "    - clone: flags & ({NAMESPACE_FLAGS}) == 0   # in place of clone3 (libc's fallback)");
    }
    if !denies.is_empty() {
        out.push_str("  deny:\n");
        for d in denies {
            let _ = writeln!(out, "{d}");
        }
    }

    let fs = filesystem(&merged.files, ctx);
    out.push_str("\nfilesystem:                   # from the files the command opened, made, removed and ran\n");
    for (key, list) in [("read", &fs.read), ("write", &fs.write), ("execute", &fs.execute)] {
        if list.is_empty() {
            let _ = writeln!(out, "  {key}: []");
        } else {
            let _ = writeln!(out, "  {key}:");
            for e in list {
                let _ = writeln!(out, "    - {e}");
            }
        }
    }
    for l in &fs.left_out {
        let _ = writeln!(out, "  # not granted: {}", l.replace('\n', " "));
    }

    let tcp = |set: &BTreeSet<(String, u16)>| {
        let ports: BTreeSet<u16> = set.iter().filter(|(p, _)| p == "tcp").map(|(_, port)| *port).collect();
        ports.iter().map(|p| format!("tcp/{p}")).collect::<Vec<_>>().join(", ")
    };
    out.push_str("\nnetwork:                      # the observed TCP ports only\n");
    let _ = writeln!(out, "  connect: [{}]", tcp(&merged.connect));
    let _ = writeln!(out, "  bind: [{}]", tcp(&merged.bind));
    let others: Vec<String> = merged
        .connect
        .iter()
        .chain(&merged.bind)
        .filter(|(p, _)| p != "tcp")
        .map(|(p, port)| format!("{p}/{port}"))
        .collect();
    if !others.is_empty() {
        let _ = writeln!(out, "  # not expressible (Landlock restricts TCP only): {}", others.join(", "));
    }

    out.push_str("\nenv:                          # the commands were profiled with these variables only\n");
    let _ = writeln!(out, "  pass: [{}]", ENV_PASS.join(", "));
    out.push_str("\naudit:\n  log: capsule.log\n  record: [invocations, denials]\n");
    out
}

fn namespace_mask(table: &Table) -> u64 {
    NAMESPACE_FLAGS.split(" | ").filter_map(|n| table.constant(n)).fold(0, |a, b| a | b)
}

/// The allow rule for one observed syscall.
fn rule(name: &str, profile: &Profile, table: &Table, ns_mask: u64) -> String {
    let values = |arg: &str| profile.args.get(name).and_then(|a| a.get(arg));
    if name == "clone" {
        let flags = values("flags");
        if flags.is_none_or(|f| f.iter().all(|v| v & ns_mask == 0)) {
            return format!("clone: flags & ({NAMESPACE_FLAGS}) == 0");
        }
        return name.to_owned();
    }
    for (sc, arg) in RULE_ARGS {
        if *sc != name {
            continue;
        }
        let Some(set) = values(arg) else { continue };
        if set.is_empty()
            || set.len() > MAX_RULE_VALUES
            || profile.args_overflow.contains(&(name.to_owned(), arg.to_string()))
        {
            continue;
        }
        let Some(def) = table.by_name(name) else { continue };
        let Some(arg_def) = def.args().iter().find(|a| a.answers_to(arg)) else { continue };
        let mask = if arg_def.bits >= 64 { u64::MAX } else { (1u64 << arg_def.bits) - 1 };
        let masked: BTreeSet<u64> = set.iter().map(|v| v & mask).collect();
        let names: Vec<String> = masked
            .iter()
            .map(|&v| {
                constant_name(table, arg_prefixes(name, arg), v)
                    .filter(|c| table.constant(c).is_some_and(|cv| cv & mask == v))
                    .map_or_else(|| format!("{v:#x}"), str::to_owned)
            })
            .collect();
        return format!("{name}: {} in [{}]", arg_def.display_name(), names.join(", "));
    }
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::record::Counts;

    fn ctx() -> Context {
        Context {
            workspace: PathBuf::from("/work/project"),
            home: Some(PathBuf::from("/home/u")),
            tmpdir: None,
            capsule_dirs: vec![PathBuf::from("/home/u/.local/state/capsule"), PathBuf::from("/home/u/.cache/capsule")],
            target: Target::LinuxX86_64,
        }
    }

    fn files(list: &[(&str, u8)]) -> BTreeMap<PathBuf, u8> {
        list.iter().map(|(p, c)| (PathBuf::from(p), *c)).collect()
    }

    #[test]
    fn paths_are_generalised_with_care() {
        let fs = filesystem(
            &files(&[
                ("/usr/lib/x86_64-linux-gnu/libc.so.6", class::READ),
                ("/usr/lib/x86_64-linux-gnu/libm.so.6", class::READ),
                ("/usr/lib/x86_64-linux-gnu/libz.so.1", class::READ),
                ("/usr/lib/x86_64-linux-gnu/libpcre2-8.so.0", class::READ),
                ("/etc/passwd", class::READ),
                ("/work/project/src/main.rs", class::READ),
                ("/work/project/out/new.o", class::CREATE),
                ("/tmp/tmp.X1b2/scratch", class::WRITE | class::CREATE),
                ("/home/u/.gitconfig", class::READ),
                ("/home/u/.bash_history", class::CREATE),
                ("/home/u/.cache/capsule/artifacts/x", class::READ),
                ("/proc/4242/status", class::READ),
                ("/dev/pts/3", class::READ | class::WRITE),
                ("/dev/null", class::WRITE),
                ("/usr/bin/git", class::EXECUTE),
            ]),
            &ctx(),
        );
        assert_eq!(
            fs.read,
            [
                "\"${WORKSPACE}\"",
                "\"${HOME}/.gitconfig\"",
                "/dev/pts",
                "/etc/passwd",
                "/proc",
                "/usr/bin/git",
                "/usr/lib/x86_64-linux-gnu"
            ]
        );
        assert_eq!(fs.write, ["\"${WORKSPACE}\"", "/dev/null", "/dev/pts", "/tmp"]);
        assert_eq!(fs.execute, ["/usr/bin/git"]);
        // The home directory's own files make it a parent of a write, never granted whole.
        assert!(fs.left_out.iter().any(|l| l.contains("/home/u (the whole home directory")), "{:?}", fs.left_out);
        assert!(fs.left_out.iter().any(|l| l.contains("/home/u/.cache/capsule/artifacts/x")), "{:?}", fs.left_out);
    }

    #[test]
    fn never_widened_to_the_root_the_home_or_dev() {
        let many: Vec<(String, u8)> = ["/a", "/b", "/c", "/d", "/e"]
            .iter()
            .map(|d| (format!("{d}/file"), class::READ))
            .chain((0..6).map(|i| (format!("/home/u/f{i}"), class::READ)))
            .chain((0..6).map(|i| (format!("/dev/sd{i}"), class::READ)))
            .collect();
        let list: Vec<(&str, u8)> = many.iter().map(|(p, c)| (p.as_str(), *c)).collect();
        let fs = filesystem(&files(&list), &ctx());
        assert!(
            !fs.read.iter().any(|e| e == "/" || e == "\"${HOME}\"" || e == "/home" || e == "/dev"),
            "{:?}",
            fs.read
        );
        assert!(fs.read.contains(&"/a/file".to_owned()) && fs.read.contains(&"\"${HOME}/f0\"".to_owned()));
        assert!(fs.read.contains(&"/dev/sd0".to_owned()));
    }

    #[test]
    fn never_a_directory_that_holds_capsules_own() {
        let fs = filesystem(
            &files(&[("/home/u/.local/newfile", class::CREATE), ("/home/u/.cache/pip/x", class::READ)]),
            &ctx(),
        );
        assert!(fs.write.is_empty(), "{:?}", fs.write);
        assert!(
            fs.left_out.iter().any(|l| l.contains("/home/u/.local (holds capsule's own directory")),
            "{:?}",
            fs.left_out
        );
        assert_eq!(fs.read, ["\"${HOME}/.cache/pip/x\""]);
    }

    #[test]
    fn generated_policies_check_clean() {
        let mut profile = Profile::default();
        let calls = profile.syscalls.entry("linux-x86_64".to_owned()).or_default();
        for name in ["read", "write", "openat", "socket", "ioctl", "clone", "clone3", "prctl", "exit_group", "mmap"] {
            calls.insert(name.to_owned(), Counts { count: 3, failed: 1, results: true });
        }
        let arg = |p: &mut Profile, sc: &str, a: &str, v: &[u64]| {
            p.args.entry(sc.to_owned()).or_default().insert(a.to_owned(), v.iter().copied().collect());
        };
        arg(&mut profile, "socket", "domain", &[1, 2]);
        arg(&mut profile, "ioctl", "request", &[0x5401, 0xffff_ffff_0000_5413]);
        arg(&mut profile, "clone", "flags", &[0x1200011]);
        arg(&mut profile, "clone3", "flags", &[0x3d0f00]);
        arg(&mut profile, "prctl", "option", &[15, 0x7777]);
        profile.files = files(&[("/usr/bin/true", class::EXECUTE), ("/work/project/x", class::CREATE)]);
        profile.connect.insert(("tcp".to_owned(), 443));
        profile.connect.insert(("udp".to_owned(), 53));
        let text =
            policy("p", "d", &["header".to_owned()], &[Source { label: "01-x".to_owned(), profile: &profile }], &ctx());
        let checked = capsule_compiler::front::check(&text);
        assert!(checked.policy.is_some() && checked.diagnostics.is_empty(), "{:?}\n{text}", checked.diagnostics);
        assert!(text.contains("- socket: domain in [AF_UNIX, AF_INET]"), "{text}");
        assert!(text.contains("- ioctl: request in [TCGETS, TIOCGWINSZ]"), "{text}");
        assert!(text.contains("- prctl: option in [PR_SET_NAME, 0x7777]"), "{text}");
        assert!(text.contains("- clone3: { action: errno(ENOSYS) }"), "{text}");
        assert!(text.contains("- clone: flags & (CLONE_NEWNS"), "{text}");
        assert!(text.contains("connect: [tcp/443]") && text.contains("not expressible"), "{text}");
        for name in BASELINE {
            assert!(text.contains(&format!("- {name}")), "baseline {name}: {text}");
        }
        assert!(!text.contains("- ptrace") && !text.contains("- mount"));
    }
}
