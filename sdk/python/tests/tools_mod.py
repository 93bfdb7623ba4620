"""Tools the tests run in the sandbox. Module level, as the SDK requires."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import subprocess
import time
from pathlib import Path

import capsule

HERE = Path(__file__).resolve().parent
KILL_POLICY = str(HERE / "data" / "kill-getpriority.yaml")

#: Changed by the agent after import: the worker imports the module afresh and must
#: not see the change (the sandbox holds none of the agent's memory).
AGENT_STATE = "as imported"


@capsule.tool()
def add(a: int, b: int = 2) -> int:
    """Adds two numbers."""
    return a + b


@capsule.tool()
def identity(value):
    return value


@capsule.tool()
def raise_value_error(message: str):
    raise ValueError(message)


@capsule.tool()
def raise_key_error():
    return {}["missing"]


class CustomError(Exception):
    pass


@capsule.tool()
def raise_custom():
    raise CustomError("custom failure")


@capsule.tool()
def open_for_write(path: str):
    """Opens a path for writing; the PermissionError propagates."""
    with open(path, "w") as f:
        f.write("escaped")
    return "written"


@capsule.tool()
def try_write(path: str):
    """Handles the denial inside the body and returns the errno."""
    try:
        with open(path, "w") as f:
            f.write("x")
        return 0
    except OSError as e:
        return e.errno


@capsule.tool()
def read_file(path: str) -> str:
    return Path(path).read_text()


@capsule.tool()
def environment() -> dict:
    return dict(os.environ)


@capsule.tool()
def fd_is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError as e:
        assert e.errno == errno.EBADF
        return False


@capsule.tool()
def agent_state() -> str:
    return AGENT_STATE


@capsule.tool()
def pid_and_time(delay: float) -> list:
    start = time.time()
    time.sleep(delay)
    return [os.getpid(), start, time.time()]


@capsule.tool()
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0.01)
    return a + b


@capsule.tool()
async def async_window(delay: float) -> list:
    start = time.time()
    await asyncio.sleep(delay)
    return [start, time.time()]


@capsule.tool()
def calls_another(a: int) -> int:
    return add(a, 10) * 2


@capsule.tool(policy=KILL_POLICY)
def calls_other_policy() -> int:
    return add(1, 1)


@capsule.tool(policy=KILL_POLICY)
def killed_by_filter() -> int:
    return os.getpriority(os.PRIO_PROCESS, 0)


@capsule.tool(timeout=1.0)
def sleeps_forever(marker: str) -> None:
    # A descendant in the call's session, and one in a session of its own.
    subprocess.Popen(["sleep", "1000", marker])
    subprocess.Popen(["setsid", "sleep", "1000", marker])
    time.sleep(1000)


@capsule.tool()
def big_result(n: int) -> str:
    return "x" * n


@capsule.tool(max_result_bytes=1 << 20)
def over_limit() -> str:
    return "y" * (2 << 20)


@capsule.tool()
def segfault() -> None:
    ctypes.string_at(0)


@capsule.tool()
def closes_pipe() -> None:
    os.closerange(3, 1 << 16)
    os._exit(0)


@capsule.tool()
def unencodable():
    return object()


@capsule.tool()
def returns_set():
    return {1, 2}


@capsule.tool()
def my_pid() -> int:
    return os.getppid()


@capsule.tool()
def echo_kwargs(**kwargs):
    return kwargs


@capsule.tool()
def write_marker(path: str) -> None:
    Path(path).write_text("ran")


@capsule.tool(workspace="/")
def in_root_workspace(path: str) -> None:
    Path(path).write_text("ran")


@capsule.tool()
def inet_socket() -> int:
    import socket

    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
        return 0
    except OSError as e:
        return e.errno


@capsule.tool(timeout=30)
def leaves_a_session_holding_the_pipe() -> str:
    # A descendant in a session of its own keeps the result pipe open and outlives
    # the call's process group.
    if os.fork() == 0:
        os.setsid()
        time.sleep(1000)
        os._exit(0)
    return "ok"
