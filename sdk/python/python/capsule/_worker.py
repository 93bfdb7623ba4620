"""The sandboxed worker: a zygote that forks one process per tool call.

The agent starts it through ``capsule run`` (so it runs under the compiled policy,
with a clean environment and no inherited descriptors). It imports each tool's module
once, then forks a child per call: the child starts its own session, keeps only its
result pipe, unpickles the arguments (sent by the agent, which trusts them), runs the
function and writes its result as JSON. The worker relays that JSON; it never unpickles
anything the children produce either.

The worker is single-threaded (a selector loop), so fork is safe.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import types
import os
import pickle
import selectors
import signal
import sys
import time
import traceback
from typing import Any, Dict, List, Optional

from . import _codec, _state

_READ_CHUNK = 1 << 16


class _Call:
    __slots__ = ("id", "pid", "pidfd", "result_fd", "chunks", "size", "deadline", "limit", "status", "too_large",
                 "timed_out", "trace")

    def __init__(self, call_id: int, pid: int, pidfd: int, result_fd: int, deadline: Optional[float], limit: int):
        self.id = call_id
        self.pid = pid
        self.pidfd = pidfd
        self.result_fd = result_fd
        self.chunks: List[bytes] = []
        self.size = 0
        self.deadline = deadline
        self.limit = limit
        self.status: Optional[int] = None
        self.too_large = False
        self.timed_out = False
        #: Monotonic timestamps (ns) for the benchmark's breakdown, when asked for.
        self.trace: Optional[Dict[str, int]] = None


class _Spare:
    """A forked process waiting for its call."""

    __slots__ = ("pid", "pidfd", "task_fd", "result_fd")

    def __init__(self, pid: int, pidfd: int, task_fd: int, result_fd: int) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.task_fd = task_fd
        self.result_fd = result_fd

    def discard(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)
        for fd in (self.pidfd, self.task_fd, self.result_fd):
            try:
                os.close(fd)
            except OSError:
                pass


class Worker:
    def __init__(self, proto_in: int, proto_out: int) -> None:
        self.proto_in = proto_in
        self.proto_out = proto_out
        self.inbuf = bytearray()
        self.selector = selectors.DefaultSelector()
        self.calls: Dict[int, _Call] = {}
        self.functions: Dict[tuple, Any] = {}
        self.main_path: Optional[str] = None
        self.closing = False
        self.spare: Optional[_Spare] = None
        #: Calls that have answered and whose process is being reaped (pidfd -> pid).
        self.reaping: Dict[int, int] = {}

    # -- protocol -------------------------------------------------------------------

    def send(self, message: Dict[str, Any], body: Optional[bytes] = None) -> None:
        try:
            _codec.write_frame(self.proto_out, _codec.dumps(message))
            if body is not None:
                _codec.write_frame(self.proto_out, body)
        except BrokenPipeError:
            # The agent is gone: end every call, then exit.
            self.closing = True
            for c in list(self.calls.values()):
                self.kill_call(c)

    def next_frames(self) -> List[bytes]:
        """Complete frames in the input buffer."""
        frames = []
        while len(self.inbuf) >= 4:
            n = int.from_bytes(self.inbuf[:4], "big")
            if len(self.inbuf) < 4 + n:
                break
            frames.append(bytes(self.inbuf[4 : 4 + n]))
            del self.inbuf[: 4 + n]
        return frames

    # -- tools ------------------------------------------------------------------------

    def load_module(self, module: str, origin: Optional[str], package_dir: Optional[str]) -> Any:
        if module == "__main__":
            if "__mp_main__" in sys.modules:
                return sys.modules["__mp_main__"]
            # As multiprocessing's spawn does: the script runs under another name, so its
            # `if __name__ == "__main__":` block does not run here.
            assert self.main_path is not None, "the agent names its main script for __main__ tools"
            spec = importlib.util.spec_from_file_location("__mp_main__", self.main_path)
            assert spec is not None and spec.loader is not None
            mod = importlib.util.module_from_spec(spec)
            sys.modules["__mp_main__"] = mod
            sys.modules["__main__"] = mod
            spec.loader.exec_module(mod)
            return mod
        if module in sys.modules:
            return sys.modules[module]
        if origin is not None and "." not in module and package_dir is None:
            # Loaded by file: the sandbox may grant this file without its directory.
            spec = importlib.util.spec_from_file_location(module, origin)
            assert spec is not None and spec.loader is not None
            mod = importlib.util.module_from_spec(spec)
            sys.modules[module] = mod
            spec.loader.exec_module(mod)
            return mod
        if package_dir is not None:
            top = module.split(".")[0]
            if top not in sys.modules:
                init = os.path.join(package_dir, "__init__.py")
                spec = importlib.util.spec_from_file_location(top, init, submodule_search_locations=[package_dir])
                assert spec is not None and spec.loader is not None
                mod = importlib.util.module_from_spec(spec)
                sys.modules[top] = mod
                spec.loader.exec_module(mod)
        return importlib.import_module(module)

    def function(self, header: Dict[str, Any]) -> Any:
        key = (header["module"], header["qualname"])
        fn = self.functions.get(key)
        if fn is None:
            obj = self.load_module(header["module"], header.get("origin"), header.get("package_dir"))
            for part in header["qualname"].split("."):
                obj = getattr(obj, part)
            fn = getattr(obj, "__capsule_original__", obj)
            self.functions[key] = fn
        return fn

    # -- calls ------------------------------------------------------------------------

    def make_spare(self) -> Optional[_Spare]:
        """Forks the process for the next call ahead of time, so a call does not wait
        for a fork. It waits for its task on a pipe of its own."""
        task_read, task_write = os.pipe()
        result_read, result_write = os.pipe()
        # Objects frozen before the fork are not touched by the child's collector, so
        # their pages stay shared (fewer copy-on-write faults per call).
        gc.freeze()
        try:
            pid = os.fork()
        except OSError:
            for fd in (task_read, task_write, result_read, result_write):
                os.close(fd)
            return None
        if pid == 0:
            os.close(task_write)
            os.close(result_read)
            _run_spare(self, task_read, result_write)  # never returns
        os.close(task_read)
        os.close(result_write)
        os.set_blocking(result_read, False)
        return _Spare(pid, os.pidfd_open(pid), task_write, result_read)

    def start_call(self, header: Dict[str, Any], payload: bytes) -> None:
        received = time.monotonic_ns()
        call_id = header["id"]
        spare, self.spare = self.spare, None
        task = _codec.dumps(header)
        for attempt in range(2):
            if spare is None:
                spare = self.make_spare()
            if spare is None:
                self.send({"type": "result", "id": call_id, "outcome": "crashed", "exit_code": None,
                           "error": "the worker cannot fork"})
                return
            try:
                _codec.write_frame(spare.task_fd, task)
                _codec.write_frame(spare.task_fd, payload)
                break
            except OSError:
                # The spare is gone (killed by an earlier call's stray): another one.
                spare.discard()
                spare = None
        else:
            self.send({"type": "result", "id": call_id, "outcome": "crashed", "exit_code": None})
            return
        os.close(spare.task_fd)
        timeout = header.get("timeout")
        deadline = time.monotonic() + timeout if timeout is not None else None
        call = _Call(call_id, spare.pid, spare.pidfd, spare.result_fd, deadline, header["max_result_bytes"])
        self.calls[call_id] = call
        if header.get("trace"):
            call.trace = {"received": received, "forked": time.monotonic_ns()}
        self.selector.register(call.result_fd, selectors.EVENT_READ, ("result", call))
        self.selector.register(call.pidfd, selectors.EVENT_READ, ("exit", call))
        # The worker imports the tool's module too, so the next spares have it; then
        # the next spare is forked while this call runs.
        try:
            self.function(header)
        except BaseException:  # noqa: BLE001 -- the call's own process reports it
            pass
        self.spare = self.make_spare()

    def kill_call(self, call: _Call) -> None:
        # The child leads its own session and process group: the group holds it and
        # every descendant that did not start a session of its own.
        for target in (lambda: os.killpg(call.pid, signal.SIGKILL), lambda: os.kill(call.pid, signal.SIGKILL)):
            try:
                target()
            except ProcessLookupError:
                pass

    def read_result(self, call: _Call) -> bool:
        """Reads what the pipe holds now; False once it is closed (end of file or
        nothing more to wait for)."""
        try:
            chunk = os.read(call.result_fd, _READ_CHUNK)
        except BlockingIOError:
            return True
        if not chunk:
            self.close_result(call)
            return False
        if not call.too_large:
            call.size += len(chunk)
            if call.size > call.limit:
                call.too_large = True
                call.chunks.clear()
                self.kill_call(call)
            else:
                call.chunks.append(chunk)
        return True

    def close_result(self, call: _Call) -> None:
        if call.result_fd != -1:
            self.selector.unregister(call.result_fd)
            os.close(call.result_fd)
            call.result_fd = -1

    def on_result_data(self, call: _Call) -> None:
        if self.read_result(call):
            return
        if call.status is None and not (call.timed_out or call.too_large) and _complete(call.chunks):
            # The process closed its pipe after a whole result: the call is over, so the
            # answer goes now and whatever is left of the process is ended and reaped
            # in the background (its exit adds nothing to a complete result).
            if call.trace is not None:
                call.trace["exited"] = time.monotonic_ns()
            self.kill_call(call)
            self.selector.unregister(call.pidfd)
            self.reaping[call.pidfd] = call.pid
            self.selector.register(call.pidfd, selectors.EVENT_READ, ("reap", call))
            call.status = 0
        self.maybe_finish(call)

    def on_exit(self, call: _Call) -> None:
        if call.trace is not None:
            call.trace["exited"] = time.monotonic_ns()
        self.selector.unregister(call.pidfd)
        os.close(call.pidfd)
        call.pidfd = -1
        _, status = os.waitpid(call.pid, 0)
        call.status = status
        # Whatever the call left in its process group goes with it.
        try:
            os.killpg(call.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        # The process wrote its whole result before it exited; a descendant that
        # escaped the group may still hold the pipe, so do not wait for end of file.
        while call.result_fd != -1:
            before = call.size
            if self.read_result(call) and call.size == before:
                self.close_result(call)
        self.maybe_finish(call)

    def maybe_finish(self, call: _Call) -> None:
        if call.status is None or call.result_fd != -1 or call.id not in self.calls:
            return
        del self.calls[call.id]
        message: Dict[str, Any] = {"type": "result", "id": call.id, "pid": call.pid}
        if call.trace is not None:
            message["trace"] = dict(call.trace, sent=time.monotonic_ns())
        status = call.status
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        if call.timed_out:
            message.update(outcome="timeout")
        elif call.too_large:
            message.update(outcome="too_large", limit=call.limit)
        elif sig is not None:
            message.update(outcome="killed", signal=sig)
        elif code == 0 and call.chunks:
            body = b"".join(call.chunks)
            message.update(outcome="payload", size=len(body))
            self.send(message, body)
            return
        else:
            message.update(outcome="crashed", exit_code=code)
        self.send(message)

    def check_deadlines(self) -> Optional[float]:
        now = time.monotonic()
        soonest = None
        for call in self.calls.values():
            if call.deadline is None or call.timed_out:
                continue
            if now >= call.deadline:
                call.timed_out = True
                self.kill_call(call)
            else:
                soonest = call.deadline - now if soonest is None else min(soonest, call.deadline - now)
        return soonest

    # -- loop -------------------------------------------------------------------------

    def serve(self) -> None:
        self.selector.register(self.proto_in, selectors.EVENT_READ, ("input", None))
        pending_call: Optional[Dict[str, Any]] = None
        while not (self.closing and not self.calls):
            timeout = self.check_deadlines()
            for key, _ in self.selector.select(timeout):
                what, call = key.data
                if what == "input":
                    data = os.read(self.proto_in, _READ_CHUNK)
                    if not data:
                        # The agent is gone or closed the pipe: end every call, then exit.
                        self.selector.unregister(self.proto_in)
                        self.closing = True
                        for c in list(self.calls.values()):
                            self.kill_call(c)
                        continue
                    self.inbuf += data
                    for frame in self.next_frames():
                        if pending_call is not None:
                            header, pending_call = pending_call, None
                            self.start_call(header, frame)
                            continue
                        header = _codec.loads(frame)
                        if header["type"] == "call":
                            pending_call = header
                        elif header["type"] == "cancel":
                            c = self.calls.get(header["id"])
                            if c is not None:
                                c.timed_out = True
                                self.kill_call(c)
                elif what == "result":
                    self.on_result_data(call)
                elif what == "exit":
                    self.on_exit(call)
                elif what == "reap":
                    self.selector.unregister(call.pidfd)
                    os.close(call.pidfd)
                    os.waitpid(self.reaping.pop(call.pidfd), 0)


def _complete(chunks: List[bytes]) -> bool:
    """Whether the bytes are a whole result object (a cut one does not parse)."""
    if not chunks:
        return False
    try:
        return isinstance(_codec.loads(b"".join(chunks)), dict)
    except ValueError:
        return False


def _describe_exception(exc: BaseException) -> Dict[str, Any]:
    cls = type(exc)
    described: Dict[str, Any] = {
        "outcome": "raised",
        "type": cls.__qualname__,
        "module": cls.__module__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(cls, exc, exc.__traceback__)),
    }
    args = []
    for arg in exc.args:
        if isinstance(arg, (str, int, float, bool)) or arg is None:
            args.append(arg)
        else:
            args.append(repr(arg))
    described["args"] = args
    if isinstance(exc, OSError):
        described["errno"] = exc.errno
        described["strerror"] = exc.strerror
        described["filename"] = exc.filename if isinstance(exc.filename, (str, type(None))) else repr(exc.filename)
    return described


def _run_spare(worker: Worker, task_fd: int, result_fd: int) -> None:
    """A call's process, forked before its call: waits for the task, runs it, writes
    the result and exits. Never returns."""
    code = 0
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(2, 1)  # the body's prints go to the worker's stderr, never the protocol
        low, high = sorted((task_fd, result_fd))
        os.closerange(3, low)
        os.closerange(low + 1, high)
        os.closerange(high + 1, 1 << 16)
        header_frame = _codec.read_frame(task_fd, _codec.MAX_HEADER_BYTES)
        if header_frame is None:
            os._exit(0)  # the worker is stopping: no call for this spare
        payload = _codec.read_frame(task_fd, 1 << 40)
        os.close(task_fd)
        header = _codec.loads(header_frame)
        _state.in_sandbox = header["policy_key"]
        try:
            fn = worker.function(header)
            args, kwargs = pickle.loads(payload or b"")
            value = fn(*args, **kwargs)
            if isinstance(value, types.CoroutineType):
                import asyncio  # only for async tools: a smaller worker forks faster

                value = asyncio.run(value)
            try:
                body = b'{"outcome":"returned","value":' + _codec.encode_value(value) + b"}"
            except (TypeError, ValueError) as exc:
                body = _codec.dumps({"outcome": "unencodable", "message": str(exc), "type": type(value).__qualname__})
        except BaseException as exc:  # noqa: BLE001 -- every exception crosses as data
            try:
                body = _codec.dumps(_describe_exception(exc))
            except BaseException as inner:  # noqa: BLE001
                body = _codec.dumps({"outcome": "unencodable", "message": repr(inner), "type": type(exc).__qualname__})
        sys.stdout.flush()
        sys.stderr.flush()
        view = memoryview(body)
        while view:
            try:
                view = view[os.write(result_fd, view) :]
            except InterruptedError:
                continue
        # Closing the pipe tells the worker the result is complete.
        os.close(result_fd)
    except BaseException:  # noqa: BLE001
        code = 70
    finally:
        os._exit(code)


def main() -> None:
    # The protocol lives on descriptors of its own; 0 and 1 become /dev/null and
    # stderr, so a stray print (in a tool's module, say) cannot corrupt it.
    proto_in, proto_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    os.close(devnull)
    _state.in_worker = True
    hello_frame = _codec.read_frame(proto_in, _codec.MAX_HEADER_BYTES)
    if hello_frame is None:
        return
    hello = _codec.loads(hello_frame)
    sys.path[:] = hello["sys_path"]
    worker = Worker(proto_in, proto_out)
    worker.main_path = hello.get("main_path")
    worker.spare = worker.make_spare()
    worker.send({"type": "ready", "pid": os.getpid()})
    worker.serve()
