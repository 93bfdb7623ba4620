"""What crosses the boundary between the agent and its sandboxed worker.

Frames are a 4-byte big-endian length and that many bytes. The agent sends JSON
headers and, for a call, a pickle of the arguments (the agent trusts its own
arguments). The worker sends JSON only: nothing produced inside the sandbox is ever
unpickled in the agent, since unpickling runs code.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any, Optional

#: Largest JSON header either side accepts.
MAX_HEADER_BYTES = 1 << 20
#: Default bound on an encoded result; larger results are refused (see docs/python.md).
DEFAULT_MAX_RESULT_BYTES = 64 << 20

_LEN = struct.Struct(">I")


class FrameError(Exception):
    """A frame that is too large or cut short."""


def write_frame(fd: int, data: bytes) -> None:
    """Write one frame to a blocking descriptor."""
    view = memoryview(_LEN.pack(len(data)) + data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def read_exact(fd: int, n: int) -> Optional[bytes]:
    """Read exactly ``n`` bytes, or ``None`` at end of file before the first byte."""
    chunks = []
    got = 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            if got == 0:
                return None
            raise FrameError(f"the stream ended inside a frame ({got} of {n} bytes)")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, limit: int) -> Optional[bytes]:
    """Read one frame of at most ``limit`` bytes; ``None`` at end of file."""
    head = read_exact(fd, 4)
    if head is None:
        return None
    (n,) = _LEN.unpack(head)
    if n > limit:
        raise FrameError(f"a frame of {n} bytes is larger than the limit of {limit}")
    data = read_exact(fd, n)
    if data is None:
        raise FrameError("the stream ended before a frame's body")
    return data


def dumps(message: Any) -> bytes:
    """A header: compact JSON."""
    return json.dumps(message, separators=(",", ":")).encode("utf-8")


def loads(data: bytes) -> Any:
    """Parse a header or result (JSON: never code)."""
    return json.loads(data)


def _refuse(value: Any) -> Any:
    raise TypeError(
        f"a tool's result must be JSON data (None, bool, int, float, str, list, tuple, dict with str keys); "
        f"got {type(value).__module__}.{type(value).__qualname__}"
    )


def encode_value(value: Any) -> bytes:
    """Encode a result for the agent; raises TypeError naming an unsupported type."""
    return json.dumps(value, default=_refuse, separators=(",", ":")).encode("utf-8")
