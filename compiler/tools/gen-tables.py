#!/usr/bin/env python3
"""Generate Capsule's syscall tables and constants: compiler/src/tables/*.rs.

Usage:  python3 compiler/tools/gen-tables.py [--out DIR] [--tarball PATH]

Python 3.11 standard library only. What it reads, and from where:

* Syscall numbers: the Debian linux-source-6.12 tarball
  (/usr/src/linux-source-6.12.tar.xz): arch/x86/entry/syscalls/syscall_64.tbl (ABIs
  "common" and "64"; the x32 entries are skipped) and scripts/syscall.tbl with the ABIs
  arm64 builds (arch/arm64/kernel/Makefile.syscalls: "common", "64" and the extras it
  lists, which this script checks). Only the files it needs are extracted, into a
  temporary directory that is removed afterwards.
* Syscalls added after 6.12, up to 6.18: compiler/tools/syscalls-after-6.12.txt, one
  record per syscall with its numbers, signature and source.
* Argument names and C types: every SYSCALL_DEFINEn(name, type, arg, ...) in the
  tarball's generic directories plus the target's arch/ directory; the table's entry
  point (sys_newstat for stat) names the definition. Where a definition exists in
  several #ifdef variants, OVERRIDES below says which one the target's configuration
  builds, and why; an ambiguity it does not settle stops the script.
* Argument widths: TYPE_BITS / POINTER_TYPEDEFS below. A type the tables do not know
  stops the script rather than being guessed.
* Manual-page argument names: the SYNOPSIS of /usr/share/man/man2/*.2.gz (manpages-dev),
  mapped position by position onto the kernel's arguments only when the counts match
  (a prototype ending in "..." matches on its fixed arguments).
* Constants: compiler/tools/constants.txt, compiled per target like Go's
  `cgo -godefs`: a C file of initialised data per section, `gcc -S` for x86_64 and
  `aarch64-linux-gnu-gcc -S` for aarch64, and the values read back from the assembly.

The output is deterministic: rerunning on the same inputs gives byte-identical files
(compiler/tests/tables.rs checks this with CAPSULE_SLOW_TESTS=1).
"""

from __future__ import annotations

import argparse
import gzip
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent.parent
DEFAULT_OUT = REPO / "compiler" / "src" / "tables"
DEFAULT_TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")
SOURCE_PACKAGE = "linux-source-6.12"
MAN_DIR = Path("/usr/share/man/man2")
AFTER_FILE = TOOLS / "syscalls-after-6.12.txt"
CONSTANTS_FILE = TOOLS / "constants.txt"
# The kernel release the tables describe once the additions are applied.
KERNEL_VERSION = "6.18"
COMMAND = "python3 compiler/tools/gen-tables.py"


class GenError(Exception):
    pass


@dataclass(frozen=True)
class TargetSpec:
    name: str  # as in capsule_artifacts::Target::name()
    rust_variant: str
    module: str
    table: str  # path inside the kernel tree
    abis: frozenset[str]
    # Directories under arch/ scanned for SYSCALL_DEFINE besides the generic ones.
    arch_dirs: tuple[str, ...]
    # Files in those directories that this target's build does not compile.
    arch_excluded: frozenset[str]
    compiler: str
    header_packages: tuple[str, ...]


TARGETS = (
    TargetSpec(
        name="linux-x86_64",
        rust_variant="LinuxX86_64",
        module="linux_x86_64",
        table="arch/x86/entry/syscalls/syscall_64.tbl",
        abis=frozenset({"common", "64"}),
        arch_dirs=("arch/x86/kernel", "arch/x86/entry"),
        # 32-bit kernel and ia32-compat only.
        arch_excluded=frozenset(
            {
                "arch/x86/kernel/process_32.c",
                "arch/x86/kernel/vm86_32.c",
                "arch/x86/kernel/sys_ia32.c",
            }
        ),
        compiler="gcc",
        header_packages=("linux-libc-dev", "libc6-dev"),
    ),
    TargetSpec(
        name="linux-aarch64",
        rust_variant="LinuxAarch64",
        module="linux_aarch64",
        table="scripts/syscall.tbl",
        # arch/arm64/kernel/Makefile.syscalls: syscall_abis_64 += renameat rlimit memfd_secret
        abis=frozenset({"common", "64", "renameat", "rlimit", "memfd_secret"}),
        arch_dirs=("arch/arm64/kernel",),
        # AArch32 compat only.
        arch_excluded=frozenset({"arch/arm64/kernel/sys32.c", "arch/arm64/kernel/signal32.c"}),
        compiler="aarch64-linux-gnu-gcc",
        header_packages=("linux-libc-dev-arm64-cross", "libc6-dev-arm64-cross"),
    ),
)

# Generic directories holding SYSCALL_DEFINEs that both targets build.
GENERIC_DIRS = (
    "block",
    "drivers/char",
    "drivers/pci",
    "fs",
    "io_uring",
    "ipc",
    "kernel",
    "mm",
    "net",
    "security",
)
# Generic files both targets leave out: they define the same syscalls as the real
# implementation for configurations neither target uses.
GENERIC_EXCLUDED = frozenset(
    {
        "mm/nommu.c",  # CONFIG_MMU=n only
        "kernel/time/posix-stubs.c",  # CONFIG_POSIX_TIMERS=n only
    }
)

# Special cases, each with its reason. Keyed by (target name, entry point).
# "define" picks the SYSCALL_DEFINE by its exact parameter list (type, name) tuples.
OVERRIDES: dict[tuple[str, str], dict] = {
    # kernel/fork.c has four clone() variants under #ifdef CONFIG_CLONE_BACKWARDS*.
    # x86_64 selects none of them (arch/x86/Kconfig selects CLONE_BACKWARDS for X86_32
    # only), so it builds the #else variant; arm64 selects CLONE_BACKWARDS
    # (arch/arm64/Kconfig), which swaps tls and child_tidptr.
    ("linux-x86_64", "sys_clone"): {
        "define": (
            ("unsigned long", "clone_flags"),
            ("unsigned long", "newsp"),
            ("int *", "parent_tidptr"),
            ("int *", "child_tidptr"),
            ("unsigned long", "tls"),
        ),
        "kconfig": ("arch/x86/Kconfig", "X86_32", "CLONE_BACKWARDS"),
    },
    ("linux-aarch64", "sys_clone"): {
        "define": (
            ("unsigned long", "clone_flags"),
            ("unsigned long", "newsp"),
            ("int *", "parent_tidptr"),
            ("unsigned long", "tls"),
            ("int *", "child_tidptr"),
        ),
        "kconfig": ("arch/arm64/Kconfig", "ARM64", "CLONE_BACKWARDS"),
    },
    # arch/arm64/kernel/sys.c: "#define __arm64_sys_personality __arm64_sys_arm64_personality".
    ("linux-aarch64", "sys_personality"): {"entry": "sys_arm64_personality"},
}

# clone(2)'s SYNOPSIS shows the glibc wrapper (fn, stack, flags, arg, ...); its NOTES give
# the raw system call per architecture, which the SYNOPSIS parser does not read.
MAN_OVERRIDES: dict[tuple[str, str], tuple[str, ...]] = {
    ("linux-x86_64", "clone"): ("flags", "stack", "parent_tid", "child_tid", "tls"),
    # "On x86-32, and several other common architectures (including ... ARM 64 ...)
    # the order of the last two arguments is reversed".
    ("linux-aarch64", "clone"): ("flags", "stack", "parent_tid", "tls", "child_tid"),
}

# Syscalls whose manual page shows a C library function that is not the raw syscall,
# though it has as many arguments: their positions would be mapped wrongly.
MAN_SKIP = {
    # signalfd(3)'s third argument is flags (glibc calls signalfd4); the raw signalfd's
    # is the size of the mask.
    "signalfd",
}

# Syscalls whose manual page documents them under another function name, with the
# same arguments in the same order.
MAN_ALIASES = {
    "pread64": "pread",
    "pwrite64": "pwrite",
    "prlimit64": "prlimit",
    "newfstatat": "fstatat",
    "exit": "_exit",
}

# How many bits of the register the kernel reads, by C type (after dropping const,
# volatile and __user). Pointers (a "*" in the type, or POINTER_TYPEDEFS) are 64.
TYPE_BITS = {
    "int": 32,
    "unsigned int": 32,
    "unsigned": 32,
    "__s32": 32,
    "__u32": 32,
    "s32": 32,
    "u32": 32,
    "pid_t": 32,
    "uid_t": 32,
    "gid_t": 32,
    "clockid_t": 32,
    "key_serial_t": 32,
    "key_t": 32,
    "mqd_t": 32,
    "timer_t": 32,  # __kernel_timer_t is int
    "qid_t": 32,  # __kernel_uid32_t
    "rwf_t": 32,  # __kernel_rwf_t is int
    "enum landlock_rule_type": 32,  # an enum is int-sized
    "umode_t": 16,  # unsigned short
    "unsigned short": 16,
    "long": 64,
    "unsigned long": 64,
    "size_t": 64,
    "loff_t": 64,
    "off_t": 64,  # __kernel_off_t is long
    "u64": 64,
    "__u64": 64,
    "aio_context_t": 64,  # __kernel_ulong_t
}
POINTER_TYPEDEFS = {"cap_user_header_t", "cap_user_data_t", "__sighandler_t"}


@dataclass
class Arg:
    kernel_name: str
    c_type: str
    bits: int
    pointer: bool
    man_name: str | None = None


@dataclass
class Syscall:
    name: str
    nr: int
    entry: str | None  # None: the table has no entry point (not implemented)
    args: list[Arg] | None  # None: no SYSCALL_DEFINE for the entry point
    since: str | None = None  # for additions after 6.12


@dataclass
class Constant:
    name: str
    value: int


@dataclass
class Target:
    spec: TargetSpec
    syscalls: list[Syscall] = field(default_factory=list)
    constants: list[Constant] = field(default_factory=list)


# --------------------------------------------------------------------------- helpers


def run(cmd: list[str], **kw) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)
    except FileNotFoundError as e:
        raise GenError(f"{cmd[0]} not found: {e}") from e
    if r.returncode != 0:
        raise GenError(f"{' '.join(cmd)} failed:\n{r.stderr.strip()}")
    return r.stdout


def package_version(pkg: str) -> str:
    return run(["dpkg-query", "-W", "-f=${Version}", pkg]).strip()


def strip_c_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def normalize_type(t: str) -> str:
    t = t.replace("__user", " ")
    t = re.sub(r"\s+", " ", t).strip()
    t = re.sub(r"\s*\*\s*", " *", t)  # "char*" / "char *" -> "char *"
    t = re.sub(r"\* \*", "**", t)
    return t.strip()


def type_width(c_type: str) -> tuple[int, bool]:
    """Bits the kernel reads and whether the argument is a pointer; fails on unknown types."""
    if "*" in c_type:
        return 64, True
    base = re.sub(r"\b(const|volatile)\b", " ", c_type)
    base = re.sub(r"\s+", " ", base).strip()
    if base in POINTER_TYPEDEFS:
        return 64, True
    if base in TYPE_BITS:
        return TYPE_BITS[base], False
    raise GenError(f"unknown C type {c_type!r}: add it to TYPE_BITS or POINTER_TYPEDEFS")


# --------------------------------------------------------------------------- kernel tree

DEFINE_RE = re.compile(r"\bSYSCALL_DEFINE([0-6])\(\s*(\w+)\s*((?:,[^)]*)?)\)")


def parse_define(match: re.Match) -> tuple[str, tuple[tuple[str, str], ...]]:
    count = int(match.group(1))
    name = match.group(2)
    parts = [p.strip() for p in match.group(3).split(",")[1:]]
    if len(parts) != 2 * count:
        raise GenError(f"cannot parse SYSCALL_DEFINE{count}({name} ...): {parts}")
    params = tuple((normalize_type(parts[i]), parts[i + 1]) for i in range(0, len(parts), 2))
    return name, params


def extract_tree(tarball: Path, dest: Path) -> Path:
    """Extract the files this script reads (tar is much faster than the tarfile module)."""
    root = SOURCE_PACKAGE  # the Debian tarball's top directory
    files = ["Makefile", "arch/x86/Kconfig", "arch/arm64/Kconfig", "arch/arm64/kernel/Makefile.syscalls"]
    files += [t.table for t in TARGETS]
    dirs = GENERIC_DIRS + tuple(d for t in TARGETS for d in t.arch_dirs)
    patterns = [f"{root}/{f}" for f in files] + [f"{root}/{d}/*.c" for d in dirs]
    dest.mkdir()
    run(["tar", "-xJf", str(tarball), "-C", str(dest), "--wildcards", *patterns])
    return dest / root


def kernel_release(tree: Path) -> str:
    text = (tree / "Makefile").read_text()
    parts = [re.search(rf"^{k} = (\d+)", text, re.M) for k in ("VERSION", "PATCHLEVEL", "SUBLEVEL")]
    if not all(parts):
        raise GenError("cannot read the kernel version from Makefile")
    return ".".join(p.group(1) for p in parts)


def check_arm64_abis(tree: Path) -> None:
    text = (tree / "arch/arm64/kernel/Makefile.syscalls").read_text()
    m = re.search(r"^syscall_abis_64\s*\+=\s*(.*)$", text, re.M)
    extra = set(m.group(1).split()) if m else set()
    want = set(TARGETS[1].abis) - {"common", "64"}
    if extra != want:
        raise GenError(f"arm64 syscall_abis_64 is {sorted(extra)}, the generator expects {sorted(want)}")


def check_kconfig_select(tree: Path, path: str, config: str, symbol: str) -> None:
    """Checks that `config CONFIG` in PATH selects SYMBOL (and nothing else there does)."""
    text = (tree / path).read_text()
    owners = []
    current = None
    for line in text.splitlines():
        m = re.match(r"^(?:menu)?config (\w+)", line)
        if m:
            current = m.group(1)
        elif re.match(rf"^\s+select {symbol}\b", line):
            owners.append(current)
    if owners != [config]:
        raise GenError(f"{path}: {symbol} is selected by {owners}, the generator expects [{config}]")


def parse_table(tree: Path, spec: TargetSpec) -> list[tuple[int, str, str | None]]:
    rows = []
    for line in (tree / spec.table).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        cols = line.split()
        nr, abi, name = int(cols[0]), cols[1], cols[2]
        if abi not in spec.abis:
            continue
        rows.append((nr, name, cols[3] if len(cols) > 3 else None))
    return rows


def collect_defines(tree: Path, spec: TargetSpec) -> dict[str, set[tuple[tuple[str, str], ...]]]:
    files = []
    for d in GENERIC_DIRS + spec.arch_dirs:
        files += [p for p in (tree / d).rglob("*.c")]
    defines: dict[str, set] = {}
    for path in sorted(files):
        rel = path.relative_to(tree).as_posix()
        if rel in GENERIC_EXCLUDED or rel in spec.arch_excluded:
            continue
        # Other architectures' directories are never scanned; arch/x86/um is not extracted.
        text = strip_c_comments(path.read_text(errors="replace"))
        for m in DEFINE_RE.finditer(text):
            name, params = parse_define(m)
            defines.setdefault(name, set()).add(params)
    return defines


def make_args(params: tuple[tuple[str, str], ...], where: str) -> list[Arg]:
    args = []
    for c_type, name in params:
        try:
            bits, pointer = type_width(c_type)
        except GenError as e:
            raise GenError(f"{where}: {e}") from None
        args.append(Arg(kernel_name=name, c_type=c_type, bits=bits, pointer=pointer))
    return args


def resolve_syscalls(tree: Path, spec: TargetSpec, additions: list[dict]) -> list[Syscall]:
    defines = collect_defines(tree, spec)
    not_built = set(re.findall(r"^COND_SYSCALL\((\w+)\)", (tree / "kernel/sys_ni.c").read_text(), re.M))
    syscalls = []
    for nr, name, entry in parse_table(tree, spec):
        args = None
        if entry is not None and entry != "sys_ni_syscall":
            override = OVERRIDES.get((spec.name, entry), {})
            if "kconfig" in override:
                check_kconfig_select(tree, *override["kconfig"])
            define_name = override.get("entry", entry).removeprefix("sys_")
            variants = defines.get(define_name)
            if not variants and define_name in not_built:
                # Declared COND_SYSCALL in kernel/sys_ni.c and defined for other
                # architectures only (map_shadow_stack on arm64): the number is the
                # syscall's, but this target answers it with sys_ni_syscall (ENOSYS).
                syscalls.append(Syscall(name=name, nr=nr, entry="sys_ni_syscall", args=None))
                continue
            if not variants:
                raise GenError(f"{spec.name}: no SYSCALL_DEFINE for {entry} ({name})")
            if "define" in override:
                if override["define"] not in variants:
                    raise GenError(f"{spec.name}: override for {entry} matches no definition")
                params = override["define"]
            elif len(variants) == 1:
                params = next(iter(variants))
            else:
                raise GenError(
                    f"{spec.name}: {len(variants)} different SYSCALL_DEFINEs for {entry} ({name}): "
                    "add an OVERRIDES entry saying which one the target builds"
                )
            args = make_args(params, f"{spec.name} {name}")
        syscalls.append(Syscall(name=name, nr=nr, entry=entry, args=args))

    for add in additions:
        nr = add["numbers"].get(spec.name)
        if nr is None:
            continue
        m = DEFINE_RE.search(add["define"])
        define_name, params = parse_define(m)
        if define_name != add["name"]:
            raise GenError(f"{AFTER_FILE.name}: {add['name']} has a SYSCALL_DEFINE for {define_name}")
        args = make_args(params, f"{AFTER_FILE.name} {add['name']}")
        syscalls.append(Syscall(name=add["name"], nr=nr, entry="sys_" + add["name"], args=args, since=add["since"]))

    syscalls.sort(key=lambda s: s.nr)
    seen_nr, seen_name = {}, {}
    for s in syscalls:
        if s.nr in seen_nr:
            raise GenError(f"{spec.name}: number {s.nr} is both {seen_nr[s.nr]} and {s.name}")
        if s.name in seen_name:
            raise GenError(f"{spec.name}: {s.name} has two numbers")
        seen_nr[s.nr], seen_name[s.name] = s.name, s.nr
    return syscalls


def read_additions() -> list[dict]:
    additions = []
    for lineno, line in enumerate(AFTER_FILE.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split(" | ")]
        if len(fields) != 6:
            raise GenError(f"{AFTER_FILE.name}:{lineno}: expected 6 fields separated by ' | '")
        name, x86, arm, since, define, source = fields
        if not DEFINE_RE.fullmatch(define):
            raise GenError(f"{AFTER_FILE.name}:{lineno}: not a SYSCALL_DEFINE: {define}")
        if not source:
            raise GenError(f"{AFTER_FILE.name}:{lineno}: every addition needs a source")
        numbers = {}
        for target, value in (("linux-x86_64", x86), ("linux-aarch64", arm)):
            if value != "-":
                numbers[target] = int(value)
        additions.append({"name": name, "numbers": numbers, "since": since, "define": define})
    return additions


# --------------------------------------------------------------------------- man pages


def roff_to_text(lines: list[str]) -> str:
    """The SYNOPSIS as plain text: font macros joined, escapes and requests dropped."""
    out = []
    pending = ""
    for raw in lines:
        line = pending + raw
        pending = ""
        if line.endswith("\\") and not line.endswith("\\\\"):
            pending = line[:-1]
            continue
        if line.startswith('.\\"') or line.startswith("'\\\""):
            continue
        m = re.match(r"^\.(B|I|BI|IB|BR|RB|IR|RI)\s*(.*)$", line)
        if m:
            words = re.findall(r'"((?:[^"]|"")*)"|(\S+)', m.group(2))
            words = [a if a or not b else b for a, b in words]
            sep = " " if m.group(1) in ("B", "I") else ""
            line = sep.join(words)
        elif line.startswith("."):
            out.append("\n")
            continue
        line = re.sub(r"\\f[BIRP]|\\f\(..|\\f\[[^]]*\]", "", line)
        line = line.replace("\\-", "-").replace("\\ ", " ").replace("\\~", " ").replace("\\&", "")
        line = line.replace("\\e", "\\").replace("\\|", "")
        out.append(line + "\n")
    return "".join(out)


def split_params(text: str) -> list[str]:
    params, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            params.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        params.append(cur.strip())
    return params


def param_name(param: str) -> str | None:
    """The name a prototype gives a parameter; None when the text is no declaration."""
    if param == "...":
        return "..."
    fnptr = re.search(r"\(\s*\*\s*(\w+)\s*\)", param)  # int (*fn)(void *)
    if fnptr:
        return fnptr.group(1)
    param = re.sub(r"\[.*?\]", "", param)  # buf[.count], list[]
    # A declaration has a type and a name; a lone word is a request-specific constant
    # (ioctl_fat(2): "ioctl(int fd, FAT_IOCTL_GET_ATTRIBUTES, uint32_t *attr)").
    m = re.fullmatch(r"[\w\s*]*?[\s*](\w+)\s*", param)
    return m.group(1) if m else None


def parse_man_pages(man_dir: Path) -> dict[str, list[list[str]]]:
    """Function name -> every parameter-name list a SYNOPSIS gives for it, those of the
    function's own page (socket.2 for socket) first."""
    found: dict[str, list[tuple[bool, str, list[str]]]] = {}
    for page in sorted(man_dir.glob("*.2*")):
        page_name = page.name.split(".")[0]
        opener = gzip.open if page.suffix == ".gz" else open
        with opener(page, "rt", errors="replace") as f:
            lines = f.read().splitlines()
        synopsis, inside = [], False
        for line in lines:
            if line.startswith(".SH"):
                inside = "SYNOPSIS" in line
                continue
            if inside:
                synopsis.append(line)
        if not synopsis:
            continue
        text = strip_c_comments(roff_to_text(synopsis))
        text = re.sub(r"\b(_Nullable|_Nonnull|restrict|\[\[noreturn\]\]|noreturn)\b", " ", text)
        for m in re.finditer(r"\b(\w+)\s*\(((?:[^()]|\([^()]*\))*)\)\s*;", text):
            func, params = m.group(1), split_params(m.group(2))
            if func == "syscall":
                if not params or not params[0].startswith("SYS_"):
                    continue
                func, params = params[0][4:], params[1:]
            if params == ["void"]:
                params = []
            names = [param_name(p) for p in params]
            if None in names:
                continue
            found.setdefault(func, []).append((page_name != func, page.name, names))
    return {func: [names for _, _, names in sorted(c, key=lambda c: c[:2])] for func, c in found.items()}


def apply_man_names(spec: TargetSpec, syscalls: list[Syscall], protos: dict[str, list[list[str]]]) -> None:
    for s in syscalls:
        if not s.args:
            continue
        override = MAN_OVERRIDES.get((spec.name, s.name))
        if override is not None:
            if len(override) != len(s.args):
                raise GenError(f"{spec.name}: MAN_OVERRIDES for {s.name} has the wrong length")
            names = list(override)
        elif s.name in MAN_SKIP:
            continue
        else:
            candidates = protos.get(s.name) or protos.get(MAN_ALIASES.get(s.name, ""), [])
            exact = [c for c in candidates if len(c) == len(s.args) and "..." not in c]
            varargs = [
                c[:-1] for c in candidates if c and c[-1] == "..." and len(c) - 1 <= len(s.args)
            ]
            if exact:
                names = exact[0]
            elif varargs:
                names = varargs[0]
            else:
                continue
        for arg, man in zip(s.args, names):
            if man != arg.kernel_name:
                arg.man_name = man
        # Two arguments answering to one name would make conditions ambiguous.
        seen = set()
        for arg in s.args:
            for n in {arg.kernel_name, arg.man_name} - {None}:
                if n in seen:
                    raise GenError(f"{spec.name}: {s.name} has two arguments named {n}")
                seen.add(n)


# --------------------------------------------------------------------------- constants


def read_constant_sections() -> list[dict]:
    sections, current, names_seen = [], None, set()
    for lineno, line in enumerate(CONSTANTS_FILE.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"\[(\w+)\]", line)
        if m:
            current = {"name": m.group(1), "includes": [], "names": []}
            sections.append(current)
            continue
        if current is None:
            raise GenError(f"{CONSTANTS_FILE.name}:{lineno}: a name before the first [section]")
        if line.startswith("include "):
            current["includes"] += line.split()[1:]
            continue
        parts = line.split()
        if not re.fullmatch(r"[A-Za-z_]\w*", parts[0]) or parts[1:] not in ([], ["enum"]):
            raise GenError(f"{CONSTANTS_FILE.name}:{lineno}: expected NAME or NAME enum")
        if parts[0] in names_seen:
            raise GenError(f"{CONSTANTS_FILE.name}:{lineno}: {parts[0]} is listed twice")
        names_seen.add(parts[0])
        current["names"].append((parts[0], parts[1:] == ["enum"]))
    return sections


ASM_LABEL = re.compile(r"^capsule_const_(\w+):\s*$")
ASM_VALUE = re.compile(r"^\s*\.(?:quad|xword|8byte)\s+(-?\w+)\s*$")
ASM_ZERO = re.compile(r"^\s*\.zero\s+8\s*$")  # how gcc writes a zero of 8 bytes


def compile_constants(spec: TargetSpec, sections: list[dict], workdir: Path) -> dict[str, int]:
    values: dict[str, int] = {}
    for section in sections:
        src = ["/* generated by gen-tables.py */"]
        src += [f"#include <{h}>" for h in section["includes"]]
        for name, is_enum in section["names"]:
            line = f"const unsigned long long capsule_const_{name} = (unsigned long long)({name});"
            src += [line] if is_enum else [f"#ifdef {name}", line, "#endif"]
        c_file = workdir / f"{spec.module}_{section['name']}.c"
        c_file.write_text("\n".join(src) + "\n")
        asm = run([spec.compiler, "-S", "-O0", "-o", "-", str(c_file)])
        label = None
        for line in asm.splitlines():
            m = ASM_LABEL.match(line)
            if m:
                label = m.group(1)
                continue
            if label is None:
                continue
            m = ASM_VALUE.match(line)
            if m:
                values[label] = int(m.group(1), 0) % (1 << 64)
                label = None
            elif ASM_ZERO.match(line):
                values[label] = 0
                label = None
    return values


# --------------------------------------------------------------------------- output


def rust_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def header(sources: str) -> str:
    lines = [
        "// @generated by compiler/tools/gen-tables.py: do not edit.",
        f"// Regenerate with: {COMMAND}",
        "//",
    ]
    lines += [f"// {line}" if line else "//" for line in sources.splitlines()]
    return "\n".join(lines) + "\n"


class Pools:
    """The strings and argument lists of every table, each once.

    The tables hold offsets into these pools instead of references: a reference in a
    static is a load-time relocation in a position-independent binary, and the tables'
    thousands of them cost every start of `capsule` the copy-on-write faults of the
    pages the loader writes (docs/benchmarks.md, issue 12).
    """

    def __init__(self) -> None:
        self.strings: dict[str, int] = {}
        self.string_order: list[str] = []
        self.size = 0
        self.arg_lists: dict[tuple, int] = {}
        self.args: list[Arg] = []

    def string(self, s: str) -> str:
        if s not in self.strings:
            self.strings[s] = self.size
            self.string_order.append(s)
            self.size += len(s.encode())
        return f"Str({self.strings[s]}, {len(s.encode())})"

    def arg_list(self, args: list[Arg]) -> str:
        key = tuple((a.kernel_name, a.man_name, a.c_type, a.bits, a.pointer) for a in args)
        if key not in self.arg_lists:
            self.arg_lists[key] = len(self.args)
            self.args.extend(args)
        return f"Args({self.arg_lists[key]}, {len(args)})"


def render_target(target: Target, pools: Pools, sources: str) -> str:
    spec = target.spec
    out = [header(sources), f"//! The {spec.name} table.", ""]
    out.append("use super::{Args, ConstDef, Str, SyscallDef, Table};")
    out.append("use capsule_artifacts::Target;")
    out.append("")
    max_nr = max(s.nr for s in target.syscalls)
    out.append("pub(super) static TABLE: Table = Table {")
    out.append(f"    target: Target::{spec.rust_variant},")
    out.append("    syscalls: SYSCALLS,")
    out.append(f"    max_nr: {max_nr},")
    out.append("    constants: CONSTANTS,")
    out.append("    by_name: BY_NAME,")
    out.append("};")
    out.append("")
    out.append("static SYSCALLS: &[SyscallDef] = &[")
    for s in target.syscalls:
        note = f" // {s.name}: {s.entry or 'no entry point'}" + (f", added in {s.since}" if s.since else "")
        known = "false" if s.args is None else "true"
        args = pools.arg_list(s.args or [])
        out.append(
            f"    SyscallDef {{ name: {pools.string(s.name)}, nr: {s.nr}, args: {args}, args_known: {known} }},{note}"
        )
    out.append("];")
    out.append("")
    order = sorted(range(len(target.syscalls)), key=lambda i: target.syscalls[i].name)
    out.append("/// Indices into SYSCALLS, sorted by name.")
    out.append("static BY_NAME: &[u16] = &[")
    for i in order:
        out.append(f"    {i}, // {target.syscalls[i].name}")
    out.append("];")
    out.append("")
    out.append("static CONSTANTS: &[ConstDef] = &[")
    for c in target.constants:
        out.append(f"    ConstDef {{ name: {pools.string(c.name)}, value: {c.value:#x} }}, // {c.name}")
    out.append("];")
    return "\n".join(out) + "\n"


def render_common(targets: list[Target], errno: list[tuple[str, int]], pools: Pools, sources: str) -> str:
    out = [header(sources), "//! What every target shares: errno names, the union of syscall names, the sources,"]
    out.append("//! and the pools of strings and argument lists the tables index.")
    out.append("")
    out.append("use super::{ArgDef, Str};")
    out.append("")
    out.append("/// The kernel release the tables describe.")
    out.append(f"pub const KERNEL_VERSION: &str = {rust_str(KERNEL_VERSION)};")
    out.append("")
    out.append("/// The pinned sources the tables were generated from.")
    out.append(f"pub const TABLES_SOURCE: &str = {rust_str(' '.join(sources.split()))};")
    out.append("")
    canonical: dict[int, str] = {}
    for name, value in errno:
        canonical.setdefault(value, name)
    out.append("/// errno values and their canonical names, sorted by value.")
    out.append("pub(super) static ERRNO_BY_VALUE: &[(u16, Str)] = &[")
    for value in sorted(canonical):
        out.append(f"    ({value}, {pools.string(canonical[value])}), // {canonical[value]}")
    out.append("];")
    out.append("")
    out.append("/// Every errno name, aliases included, sorted by name.")
    out.append("pub(super) static ERRNO_BY_NAME: &[(Str, u16)] = &[")
    for name, value in sorted(errno):
        out.append(f"    ({pools.string(name)}, {value}), // {name}")
    out.append("];")
    out.append("")
    names = sorted({s.name for t in targets for s in t.syscalls})
    out.append("/// The union of the targets' syscall names, sorted.")
    out.append("pub(super) static ALL_SYSCALL_NAMES: &[Str] = &[")
    for n in names:
        out.append(f"    {pools.string(n)}, // {n}")
    out.append("];")
    out.append("")
    out.append("/// Every argument list of every target's syscalls, each list once; `Args` indexes it.")
    out.append(f"pub(super) static ARGS: [ArgDef; {len(pools.args)}] = [")
    for i, a in enumerate(pools.args):
        man = f"Some({pools.string(a.man_name)})" if a.man_name else "None"
        kernel, c_type = pools.string(a.kernel_name), pools.string(a.c_type)
        pointer = "true" if a.pointer else "false"
        out.append(
            f"    ArgDef {{ kernel_name: {kernel}, man_name: {man}, c_type: {c_type}, bits: {a.bits}, "
            f"pointer: {pointer} }}, // {i}: {a.c_type} {a.kernel_name}"
        )
    out.append("];")
    out.append("")
    out.append("/// Every string of the tables, each once; `Str` is an offset and a length into it.")
    out.append("pub(super) static STRINGS: &str = concat!(")
    for s in pools.string_order:
        out.append(f"    {rust_str(s)},")
    out.append(");")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- main


def generate(out_dir: Path, tarball: Path) -> list[Path]:
    if not tarball.exists():
        raise GenError(f"{tarball} not found (apt-get install {SOURCE_PACKAGE})")
    additions = read_additions()
    sections = read_constant_sections()
    protos = parse_man_pages(MAN_DIR)
    manpages = package_version("manpages-dev")
    debian_version = package_version(SOURCE_PACKAGE)

    with tempfile.TemporaryDirectory(prefix="capsule-gen-tables-") as tmp:
        tmp = Path(tmp)
        tree = extract_tree(tarball, tmp / "src")
        release = kernel_release(tree)
        check_arm64_abis(tree)
        targets = []
        for spec in TARGETS:
            target = Target(spec=spec)
            target.syscalls = resolve_syscalls(tree, spec, additions)
            apply_man_names(spec, target.syscalls, protos)
            targets.append(target)
        workdir = tmp / "constants"
        workdir.mkdir()
        per_target_values = [compile_constants(t.spec, sections, workdir) for t in targets]

    all_names = [(n, is_enum) for s in sections for n, is_enum in s["names"]]
    for name, _ in all_names:
        if not any(name in values for values in per_target_values):
            raise GenError(f"{CONSTANTS_FILE.name}: no target's headers define {name}")
    for target, values in zip(targets, per_target_values):
        target.constants = sorted((Constant(n, values[n]) for n, _ in all_names if n in values), key=lambda c: c.name)

    errno_section = next(s for s in sections if s["name"] == "errno")
    errno = []
    for name, _ in errno_section["names"]:
        found = {values.get(name) for values in per_target_values}
        if len(found) != 1 or None in found:
            raise GenError(f"errno {name} differs between targets: {found}")
        errno.append((name, found.pop()))

    header_versions = ", ".join(
        f"{pkg} {package_version(pkg)}" for t in TARGETS for pkg in t.header_packages
    )
    sources = (
        f"Linux {KERNEL_VERSION} syscall tables: {SOURCE_PACKAGE} {debian_version} (kernel {release}) "
        f"+ additions through {KERNEL_VERSION} from compiler/tools/syscalls-after-6.12.txt; "
        f"argument names manpages-dev {manpages}; constants from compiler/tools/constants.txt "
        f"compiled against {header_versions}."
    )
    sources = "\n".join(wrap(sources, 86))

    out_dir.mkdir(parents=True, exist_ok=True)
    pools = Pools()
    # The targets first, then common.rs, which holds the pools they filled.
    rendered = [(out_dir / f"{t.spec.module}.rs", render_target(t, pools, sources)) for t in targets]
    rendered.append((out_dir / "common.rs", render_common(targets, errno, pools, sources)))
    for path, text in rendered:
        path.write_text(text)
    return [path for path, _ in rendered]


def wrap(text: str, width: int) -> list[str]:
    lines, cur = [], ""
    for word in text.split():
        if cur and len(cur) + 1 + len(word) > width:
            lines.append(cur)
            cur = word
        else:
            cur = f"{cur} {word}" if cur else word
    return lines + ([cur] if cur else [])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--tarball", type=Path, default=DEFAULT_TARBALL, help="kernel source tarball")
    args = parser.parse_args()
    try:
        written = generate(args.out, args.tarball)
    except GenError as e:
        print(f"gen-tables: error: {e}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
