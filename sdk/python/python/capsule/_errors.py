"""The exceptions the SDK raises. Every one derives from :class:`CapsuleError`."""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional

if TYPE_CHECKING:
    from ._policy import Diagnostic


class CapsuleError(Exception):
    """The base of every Capsule error.

    ``record`` is the sequence number of the call's ``tool.call`` record in the audit
    log, when the call got that far (``None`` otherwise).
    """

    record: Optional[int]

    def __init__(self, message: str, *, record: Optional[int] = None) -> None:
        super().__init__(message)
        self.record = record


class PolicyError(CapsuleError, ValueError):
    """A policy has errors. ``diagnostics`` lists every diagnostic (errors, warnings
    and notes), each with its rendered text."""

    diagnostics: "List[Diagnostic]"

    def __init__(self, message: str, diagnostics: "List[Diagnostic]") -> None:
        super().__init__(message)
        self.diagnostics = diagnostics


class SandboxError(CapsuleError):
    """The sandbox could not be set up as the policy demands (nothing ran), or the
    sandboxed process failed outside the function body: it crashed, was killed by a
    signal other than the filter's, closed its pipe, or the worker died."""

    signal: Optional[int]

    def __init__(self, message: str, *, record: Optional[int] = None, signal: Optional[int] = None) -> None:
        super().__init__(message, record=record)
        self.signal = signal


class SandboxViolation(CapsuleError):
    """The seccomp filter killed the call (a ``kill-process`` or ``kill-thread`` rule,
    or a foreign-ABI call). ``syscall`` names the call when the log recorded it; the
    kernel does not report the number of a killed call to the parent, so it is often
    ``None``."""

    syscall: Optional[str]

    def __init__(self, message: str, *, record: Optional[int] = None, syscall: Optional[str] = None) -> None:
        super().__init__(message, record=record)
        self.syscall = syscall


class ToolTimeout(CapsuleError, TimeoutError):
    """The call ran longer than its ``timeout``; its process and every descendant were
    killed."""


class ToolError(CapsuleError):
    """The function raised an exception whose type is not a built-in one. Its type's
    name and traceback text arrive as data (nothing from the sandbox is unpickled)."""

    remote_type: str
    remote_traceback: str

    def __init__(self, message: str, *, remote_type: str, remote_traceback: str, record: Optional[int] = None) -> None:
        super().__init__(message, record=record)
        self.remote_type = remote_type
        self.remote_traceback = remote_traceback


class ResultError(CapsuleError, TypeError):
    """The function's result (or exception) could not be encoded to cross the
    boundary: an unsupported type, or larger than ``max_result_bytes``."""
