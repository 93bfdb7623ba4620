"""Policies: checking, loading, deriving, and the JSON form.

Everything here calls the Rust front-end (the same code as ``capsulec check``); no
policy is parsed in Python.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from . import _native
from ._errors import PolicyError

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Diagnostic:
    """One diagnostic of ``capsulec check``: the same code, message and position.

    ``line`` and ``column`` are 1-based and point at the start of the primary span;
    :meth:`render` gives exactly the text ``capsulec check`` prints for it.
    """

    code: str
    severity: str
    message: str
    line: int
    column: int
    end_line: int
    end_column: int
    label: str
    help: Optional[str]
    notes: Tuple[str, ...] = ()
    rendered: str = field(default="", repr=False)

    def render(self) -> str:
        """The diagnostic as ``capsulec check`` prints it, with the span underlined."""
        return self.rendered

    def __str__(self) -> str:
        return f"{self.severity}[{self.code}]: {self.message} (line {self.line}, column {self.column})"


def _source_bytes(source: Union[str, bytes]) -> bytes:
    if isinstance(source, str):
        return source.encode("utf-8")
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    raise TypeError(f"a policy source is str or bytes, not {type(source).__name__}")


def _diagnostics(report: Dict[str, Any]) -> List[Diagnostic]:
    out = []
    for d in report["diagnostics"]:
        span = d["span"]
        out.append(
            Diagnostic(
                code=d["code"],
                severity=d["severity"],
                message=d["message"],
                line=span["line"],
                column=span["column"],
                end_line=span["end_line"],
                end_column=span["end_column"],
                label=d["label"],
                help=d["help"],
                notes=tuple(d["notes"]),
                rendered=d["rendered"],
            )
        )
    return out


def check(source: Union[str, bytes], name: str = "capsule.yaml") -> List[Diagnostic]:
    """Check a policy, as ``capsulec check`` does, and return every diagnostic.

    ``name`` is the file name the diagnostics show; a name ending in ``.json`` reads the
    source as the JSON form. An empty list means the policy is clean.
    """
    return _diagnostics(_native.check(_source_bytes(source), name))


class Policy:
    """A checked policy: its source text (YAML or JSON) and its name.

    Build one with :meth:`load`, :meth:`from_yaml`, :meth:`from_json` or
    :meth:`default`; each raises :class:`PolicyError` listing every diagnostic when the
    policy has errors. Policies are immutable: :meth:`derive` returns a new one.
    """

    __slots__ = ("_source", "_name", "_diagnostics")

    def __init__(self, source: Union[str, bytes], name: str = "capsule.yaml") -> None:
        data = _source_bytes(source)
        report = _native.check(data, name)
        diagnostics = _diagnostics(report)
        if not report["ok"]:
            errors = [d for d in diagnostics if d.severity == "error"]
            raise PolicyError(
                f"{name} has {len(errors)} error{'s' if len(errors) != 1 else ''}:\n" + report["rendered"],
                diagnostics,
            )
        self._source = data
        self._name = name
        self._diagnostics = diagnostics

    @classmethod
    def load(cls, path: PathLike) -> "Policy":
        """Read and check the policy file at ``path`` (``.json`` for the JSON form)."""
        p = Path(path)
        return cls(p.read_bytes(), str(p))

    @classmethod
    def from_yaml(cls, text: Union[str, bytes], name: str = "capsule.yaml") -> "Policy":
        """Check a policy given as YAML text."""
        return cls(text, name)

    @classmethod
    def from_json(cls, text: Union[str, bytes], name: str = "capsule.json") -> "Policy":
        """Check a policy given in its JSON form (the same document, as JSON).

        Diagnostics point into the JSON text."""
        if not name.endswith(".json"):
            name += ".json"
        return cls(text, name)

    @classmethod
    def default(cls) -> "Policy":
        """The built-in default policy of ``capsule run``."""
        return cls(_native.default_policy(), "capsule-default.yaml")

    @property
    def source(self) -> bytes:
        """The exact bytes that were checked (and that the pin covers)."""
        return self._source

    @property
    def name(self) -> str:
        """The file name diagnostics use."""
        return self._name

    @property
    def format(self) -> str:
        """``"json"`` or ``"yaml"``."""
        return "json" if self._name.endswith(".json") else "yaml"

    @property
    def diagnostics(self) -> List[Diagnostic]:
        """The warnings and notes of a policy that has no errors."""
        return list(self._diagnostics)

    def to_json(self) -> str:
        """The JSON form: the same document as JSON, which ``capsulec`` and
        ``capsule run --policy FILE.json`` accept and compile to the same filters."""
        return _native.to_json(self._source, self._name)

    def to_dict(self) -> Dict[str, Any]:
        """The JSON form as Python data."""
        return json.loads(self.to_json())

    def derive(
        self,
        *,
        read: Iterable[PathLike] = (),
        write: Iterable[PathLike] = (),
        execute: Iterable[PathLike] = (),
        connect: Iterable[int] = (),
        bind: Iterable[int] = (),
        name: Optional[str] = None,
    ) -> "Policy":
        """A new policy that also allows reading, writing (and reading) or executing
        the given paths, and TCP connect or bind on the given ports.

        Paths are absolute or start with ``${WORKSPACE}``, ``${HOME}`` or
        ``${TMPDIR}``, as in ``filesystem:``. The result is checked like any policy.
        For example ``Policy.default().derive(write=["/data/out"], connect=[443])``.
        """
        doc = self.to_dict()
        fs = doc.setdefault("filesystem", {})
        for key, paths in (("read", read), ("write", write), ("execute", execute)):
            extra = [os.fspath(p) for p in paths]
            if key == "write":
                # A folder one writes is a folder one reads.
                _extend(fs, "read", extra)
            _extend(fs, key, extra)
        net = doc.setdefault("network", {}) if (connect or bind) else doc.get("network", {})
        for key, ports in (("connect", connect), ("bind", bind)):
            extra = [f"tcp/{_port(p)}" for p in ports]
            if extra:
                _extend(net, key, extra)
        if name is not None:
            doc["name"] = name
        base = self._name[:-5] if self._name.endswith(".json") else self._name.rsplit(".", 1)[0]
        return Policy.from_json(json.dumps(doc, indent=2) + "\n", f"{base}.derived.json")

    def __repr__(self) -> str:
        return f"Policy(name={self._name!r}, blake3={_native.blake3_hex(self._source)[:16]}...)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Policy) and other._source == self._source and other._name == self._name

    def __hash__(self) -> int:
        return hash((self._source, self._name))


def _extend(section: Dict[str, Any], key: str, values: List[str]) -> None:
    if not values:
        return
    current = section.get(key)
    if current is None:
        current = []
    section[key] = list(current) + [v for v in values if v not in current]


def _port(port: int) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"a TCP port is an integer from 1 to 65535, not {port!r}")
    return port


@dataclass(frozen=True)
class VerifyResult:
    """What ``capsule verify`` found in a log.

    ``status`` is ``"intact"``, ``"tampered"``, ``"unreadable"`` or ``"incomplete"``
    (a torn last line after intact records), with ``capsule verify``'s exit codes 0,
    1, 2 and 3 in ``exit_code``. ``first_bad`` is the first bad record's number
    (tampered) or the number of intact records (incomplete).
    """

    ok: bool
    status: str
    exit_code: int
    records: int
    first_bad: Optional[int]
    reason: Optional[str]
    path: str


def verify(log: Optional[PathLike] = None) -> VerifyResult:
    """Verify an audit log as ``capsule verify`` does (default: the per-user log)."""
    path = Path(log) if log is not None else Path(_native.default_log_path())
    r = _native.verify(str(path))
    return VerifyResult(
        ok=r["status"] == "intact",
        status=r["status"],
        exit_code=r["exit_code"],
        records=r["records"],
        first_bad=r["first_bad"],
        reason=r["reason"],
        path=str(path),
    )
