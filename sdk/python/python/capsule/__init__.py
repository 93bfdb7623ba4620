"""Capsule: run an AI agent's tools in a sandbox, with an audit trail.

- :func:`check`, :class:`Policy`: validate policies and emit their JSON form, with the
  same Rust front-end as ``capsulec``.
- :func:`tool`: run each call of a function under a policy (seccomp, Landlock,
  rlimits, a clean environment), recorded in the audit log.
- :func:`run`: run a command under a policy, as ``capsule run`` does.
- :func:`verify`: check an audit log, as ``capsule verify`` does.

The user guide is docs/python.md.
"""

from ._errors import (
    CapsuleError,
    PolicyError,
    ResultError,
    SandboxError,
    SandboxViolation,
    ToolError,
    ToolTimeout,
)
from ._policy import Diagnostic, Policy, VerifyResult, check, verify
from ._tool import run, tool

__all__ = [
    "CapsuleError",
    "Diagnostic",
    "Policy",
    "PolicyError",
    "ResultError",
    "SandboxError",
    "SandboxViolation",
    "ToolError",
    "ToolTimeout",
    "VerifyResult",
    "check",
    "run",
    "tool",
    "verify",
]
