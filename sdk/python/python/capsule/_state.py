"""Process-wide flags: set in the worker and in a call's sandboxed process."""

from typing import Optional

#: True in the sandboxed worker: decorators there record their function only.
in_worker: bool = False
#: In a call's process: the key of the policy that sandbox enforces.
in_sandbox: Optional[str] = None
#: The benchmark's switch: calls carry monotonic timestamps (`_tool.last_trace`).
trace: bool = False
