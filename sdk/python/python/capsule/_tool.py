"""``@capsule.tool`` and ``capsule.run``: the agent's side.

A tool call goes to a worker: a Python process that ``capsule run`` started under the
tool's policy (clean environment, no inherited descriptors, Landlock, seccomp,
rlimits) and that forks one child per call. One worker serves every tool of one
policy, workspace and module; it starts on the first call and stops when the agent
exits. See docs/python.md for the isolation model.
"""

from __future__ import annotations

import atexit
import builtins
import functools
import inspect
import os
import pickle
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar, Union, overload

from . import _codec, _native, _state
from ._errors import (
    CapsuleError,
    ResultError,
    SandboxError,
    SandboxViolation,
    ToolError,
    ToolTimeout,
)
from ._policy import PathLike, Policy

F = TypeVar("F", bound=Callable[..., Any])
PolicyLike = Union[None, str, "os.PathLike[str]", Policy]

#: How long a worker may take to start (interpreter start-up, imports, launch).
_START_TIMEOUT = 60.0
#: The agent's own margin over a call's timeout before it gives up on the worker.
_TIMEOUT_MARGIN = 10.0
_SIGSYS = 31

_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from capsule.{} import main; main()"
_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)


def _policy_of(policy: PolicyLike) -> Policy:
    if policy is None:
        return Policy.default()
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, (str, os.PathLike)):
        return Policy.load(policy)
    raise TypeError(f"policy must be None, a path or a capsule.Policy, not {type(policy).__name__}")


def _home() -> Optional[str]:
    home = os.environ.get("HOME")
    return os.path.realpath(home) if home else None


def _python_paths() -> List[str]:
    """What the interpreter needs to read inside the sandbox: its installation, the
    virtual environment, site-packages and this package; never "/" or the home
    directory itself."""
    candidates = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, _PACKAGE_PARENT]
    for entry in sys.path:
        if entry and os.path.isdir(entry) and os.path.basename(entry) in ("site-packages", "dist-packages"):
            candidates.append(entry)
    refused = {"/", _home()}
    out: List[str] = []
    for c in candidates:
        real = os.path.realpath(c)
        if real not in refused and real not in out and os.path.exists(real):
            out.append(real)
    return out


def _sandbox_policy(base: Policy, module_paths: Sequence[str]) -> Policy:
    """The tool's policy plus reading the interpreter and the tool's module, and
    executing the interpreter."""
    read = _python_paths() + [p for p in module_paths if p not in ("/", _home())]
    return base.derive(read=read, execute=[os.path.realpath(sys.executable)])


# -- workers ----------------------------------------------------------------------------


class _WorkerGone(SandboxError):
    """The worker was found dead before the call was sent: nothing ran, so the call may
    go to a new worker."""


class _Pending:
    __slots__ = ("event", "messages", "payload")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.messages: List[Dict[str, Any]] = []
        self.payload: Optional[bytes] = None


class _Worker:
    """One sandboxed worker process and the launcher above it."""

    def __init__(self, policy: Policy, workspace: str, log: Optional[str], max_frame: int) -> None:
        self.policy = policy
        self.workspace = workspace
        self.max_frame = max_frame
        artifact_dir, self.pin, default_log = _native.build(policy.source, policy.name, workspace)
        self.log = log or str(default_log)
        self.policy_file = _policy_file(policy)
        self.lock = threading.Lock()
        #: The calling threads take turns reading the worker's answers: `reading` says
        #: one is; the others wait on `turn`, which each answer and each end notifies.
        self.turn = threading.Condition(threading.Lock())
        self.reading = False
        self.pending: Dict[int, _Pending] = {}
        self.next_id = 0
        self.dead: Optional[str] = None
        self.retired = False
        self.stderr_tail: List[str] = []
        self.invocation: Optional[int] = None
        self._start()

    def _start(self) -> None:
        announce_r, announce_w = os.pipe()
        worker = [os.path.realpath(sys.executable), "-I", "-c", _BOOT.format("_worker"), _PACKAGE_PARENT]
        args = _launcher_argv(self.policy_file, self.log, self.workspace, worker, announce_fd=announce_w)
        try:
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(announce_w,),
                cwd=self.workspace,
                close_fds=True,
            )
        finally:
            os.close(announce_w)
        self.stdin_fd = self.process.stdin.fileno()  # type: ignore[union-attr]
        self.stdout_fd = self.process.stdout.fileno()  # type: ignore[union-attr]
        self._stderr_thread = threading.Thread(target=self._relay_stderr, name="capsule-stderr", daemon=True)
        self._stderr_thread.start()
        try:
            line = _read_line(announce_r, _START_TIMEOUT)
        finally:
            os.close(announce_r)
        if not line:
            self._fail_start("the sandbox could not be set up")
        self.invocation = int(line)
        main = sys.modules.get("__main__")
        main_path = getattr(main, "__file__", None)
        hello = {"type": "hello", "sys_path": [p for p in sys.path if p], "main_path": main_path}
        try:
            _codec.write_frame(self.stdin_fd, _codec.dumps(hello))
            ready = _codec.read_frame(self.stdout_fd, _codec.MAX_HEADER_BYTES)
        except (OSError, _codec.FrameError):
            ready = None
        if ready is None or _codec.loads(ready).get("type") != "ready":
            self._fail_start("the sandboxed worker did not start")

    def _fail_start(self, what: str) -> None:
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._stderr_thread.join(timeout=1)
        detail = "".join(self.stderr_tail).strip()
        self.dead = what
        raise SandboxError(f"{what} (exit {self.process.returncode}): {detail or 'no message'}")

    def _relay_stderr(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        for raw in iter(stream.readline, b""):
            text = raw.decode("utf-8", "replace")
            self.stderr_tail = (self.stderr_tail + [text])[-40:]
            try:
                sys.stderr.write(text)
            except Exception:  # noqa: BLE001 -- a closed stderr must not stop the relay
                pass

    def _read_one(self, timeout: float) -> None:
        """As the reader (holding `read_lock`): waits up to `timeout` for the worker's
        next answer and hands it to its call. The calling threads take turns at this,
        so the one whose answer arrives is usually the one already reading it."""
        ready, _, _ = select.select([self.stdout_fd], [], [], timeout)
        if not ready:
            return
        try:
            frame = _codec.read_frame(self.stdout_fd, self.max_frame + _codec.MAX_HEADER_BYTES)
            message = _codec.loads(frame) if frame is not None else None
            payload = None
            if message is not None and message.get("outcome") == "payload":
                payload = _codec.read_frame(self.stdout_fd, self.max_frame + 64)
                if payload is None:
                    message = None
        except (OSError, ValueError, _codec.FrameError) as exc:
            self.process.kill()
            self._died(f"the sandboxed worker broke the protocol: {exc}")
            return
        if message is None:
            self._died("the sandboxed worker exited")
            return
        with self.lock:
            pending = self.pending.get(message.get("id"))
        if pending is not None:
            pending.messages.append(message)
            pending.payload = payload
            pending.event.set()
            with self.turn:
                self.turn.notify_all()

    def _died(self, reason: str) -> None:
        with self.lock:
            if self.dead is None:
                self.dead = reason
            waiting = list(self.pending.values())
        for pending in waiting:
            pending.event.set()
        with self.turn:
            self.turn.notify_all()

    def call(self, header: Dict[str, Any], payload: bytes, timeout: Optional[float]) -> Tuple[List[Dict[str, Any]], Optional[bytes]]:
        pending = _Pending()
        with self.lock:
            if self.dead is None and self.process.poll() is not None:
                self.dead = "the sandboxed worker exited"
            if self.dead is not None:
                raise _WorkerGone(self.dead)
            self.next_id += 1
            header = dict(header, id=self.next_id)
            self.pending[self.next_id] = pending
            try:
                _codec.write_frame(self.stdin_fd, _codec.dumps(header))
                _codec.write_frame(self.stdin_fd, payload)
            except OSError as exc:
                del self.pending[self.next_id]
                self.dead = f"the sandboxed worker is gone: {exc}"
                raise _WorkerGone(self.dead) from None
        call_id = header["id"]
        deadline = None if timeout is None else time.monotonic() + timeout + _TIMEOUT_MARGIN
        while not pending.event.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                # The worker did not enforce the deadline: it is stuck, so it goes.
                self.stop(kill=True)
                self._died("the sandboxed worker did not end a call at its deadline")
                break
            slice_ = 0.2 if left is None else min(0.2, left)
            with self.turn:
                if self.reading:
                    # Another call's thread is reading; it hands this call its answer.
                    self.turn.wait(slice_)
                    continue
                self.reading = True
            try:
                if not pending.event.is_set():
                    self._read_one(slice_)
            finally:
                with self.turn:
                    self.reading = False
                    self.turn.notify_all()
        with self.lock:
            self.pending.pop(call_id, None)
        return pending.messages, pending.payload

    def idle(self) -> bool:
        with self.lock:
            return not self.pending

    def stop(self, kill: bool = False) -> None:
        """Close the worker's input: it ends its calls and exits, and the launcher ends
        every process the worker left behind."""
        try:
            self.process.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
        if kill:
            self.process.kill()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _read_line(fd: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    data = b""
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            return b""
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return b""
        chunk = os.read(fd, 64)
        if not chunk:
            return b""
        data += chunk
    return data.strip()


def _launcher_argv(
    policy_file: str, log: str, workspace: str, command: List[str], announce_fd: Optional[int] = None
) -> List[str]:
    """`capsule run --policy FILE --log LOG --workspace DIR -- COMMAND`, in the SDK's
    launcher process (`capsule._launcher`)."""
    argv = [sys.executable, "-I", "-c", _BOOT.format("_launcher"), _PACKAGE_PARENT]
    argv += ["--policy", policy_file, "--log", log, "--workspace", workspace]
    if announce_fd is not None:
        argv += ["--announce-fd", str(announce_fd)]
    return argv + ["--", *command]


def _policy_file(policy: Policy) -> str:
    """The policy's bytes in capsule's cache, where `capsule run --policy` reads them
    (a path the sandboxed command may not write: `capsule run` refuses such a policy)."""
    cache = Path(_native.cache_root()) / "sdk-policies"
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    suffix = ".json" if policy.format == "json" else ".yaml"
    path = cache / (_native.blake3_hex(policy.source) + suffix)
    if not path.exists() or path.read_bytes() != policy.source:
        tmp = path.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
        tmp.write_bytes(policy.source)
        os.replace(tmp, path)
    return str(path)


class _Pool:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.workers: Dict[Tuple[Any, ...], _Worker] = {}
        self.retired: List[_Worker] = []

    def get(self, key: Tuple[Any, ...], make: Callable[[], _Worker]) -> _Worker:
        with self.lock:
            worker = self.workers.get(key)
            if worker is not None and worker.dead is None and not worker.retired:
                return worker
            if worker is not None:
                self._retire(worker)
            worker = make()
            self.workers[key] = worker
            return worker

    def retire(self, worker: _Worker) -> None:
        """No new calls go to this worker; it stops once its calls have ended, and the
        launcher then ends every process its calls left (a timed-out call's strays)."""
        with self.lock:
            self._retire(worker)

    def _retire(self, worker: _Worker) -> None:
        worker.retired = True
        for key, w in list(self.workers.items()):
            if w is worker:
                del self.workers[key]
        if worker not in self.retired:
            self.retired.append(worker)
        for w in list(self.retired):
            if w.idle() or w.dead is not None:
                threading.Thread(target=w.stop, daemon=True).start()
                self.retired.remove(w)

    def shutdown(self) -> None:
        with self.lock:
            workers = list(self.workers.values()) + self.retired
            self.workers.clear()
            self.retired.clear()
        for w in workers:
            w.stop()


_POOL = _Pool()
#: With `_state.trace`: the last call's timestamps (benchmark only).
last_trace: Dict[str, int] = {}
atexit.register(_POOL.shutdown)


# -- the decorator ----------------------------------------------------------------------


def _check_decoratable(fn: Any) -> None:
    if isinstance(fn, (classmethod, staticmethod)) or not inspect.isfunction(fn):
        raise TypeError(
            f"@capsule.tool applies to a function defined with def at module level, not {type(fn).__name__}; "
            "put it directly on the def, under the framework's decorator"
        )
    if fn.__name__ == "<lambda>":
        raise TypeError("@capsule.tool cannot run a lambda: the sandboxed worker finds tools by module and name")
    if "<locals>" in fn.__qualname__:
        raise TypeError(
            f"@capsule.tool cannot run {fn.__qualname__}: a function defined inside another function cannot be "
            "found by the sandboxed worker; define it at module level"
        )


def _module_paths(fn: Callable[..., Any]) -> Tuple[Optional[str], Optional[str], List[str]]:
    """(origin file, top package directory, paths the sandbox must read) for fn's module."""
    module = sys.modules.get(fn.__module__)
    origin = getattr(module, "__file__", None)
    if origin is None:
        return None, None, []
    origin = os.path.realpath(origin)
    if fn.__module__ == "__main__" or "." not in fn.__module__ and not origin.endswith("__init__.py"):
        return origin, None, [origin]
    top = sys.modules.get(fn.__module__.split(".")[0])
    top_file = getattr(top, "__file__", None)
    if top_file is None:
        return origin, None, [os.path.dirname(origin)]
    package_dir = os.path.dirname(os.path.realpath(top_file))
    return origin, package_dir, [package_dir]


class _ToolSpec:
    def __init__(
        self,
        fn: Callable[..., Any],
        policy: PolicyLike,
        timeout: Optional[float],
        log: Optional[PathLike],
        workspace: Optional[PathLike],
        name: Optional[str],
        max_result_bytes: int,
        durable: bool,
    ) -> None:
        self.fn = fn
        self.durable = durable
        self.name = name or fn.__name__
        self.qualname = f"{fn.__module__}:{fn.__qualname__}"
        self.timeout = timeout
        self.log = os.fspath(log) if log is not None else None
        self.workspace = os.fspath(workspace) if workspace is not None else None
        self.max_result_bytes = max_result_bytes
        self.origin, self.package_dir, self.module_read = _module_paths(fn)
        self._policy_arg = policy
        self._base_policy: Optional[Policy] = None
        self._policies: Dict[str, Policy] = {}
        if not _state.in_worker:
            # Checked at decoration time in the agent; in the worker only when needed.
            self._base_policy = _policy_of(policy)

    @property
    def base_policy(self) -> Policy:
        if self._base_policy is None:
            self._base_policy = _policy_of(self._policy_arg)
        return self._base_policy

    @property
    def key(self) -> str:
        """Names the tool's policy: the Blake3 of its source."""
        return _native.blake3_hex(self.base_policy.source)

    def sandbox_policy(self) -> Policy:
        cache_key = "|".join(self.module_read)
        if cache_key not in self._policies:
            self._policies[cache_key] = _sandbox_policy(self.base_policy, self.module_read)
        return self._policies[cache_key]

    def invoke(self, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
        if _state.in_sandbox is not None or _state.in_worker:
            return self._nested(args, kwargs)
        try:
            payload = pickle.dumps((args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 -- pickle raises many types
            raise TypeError(f"the arguments of tool {self.name} cannot be pickled: {exc}") from exc
        workspace = os.path.realpath(self.workspace or os.getcwd())
        policy = self.sandbox_policy()
        # The default log depends on the environment (XDG_STATE_HOME, HOME) at call time.
        env = (os.environ.get("XDG_STATE_HOME"), os.environ.get("HOME"))
        key = (policy.source, workspace, self.log, env, self.max_result_bytes)
        make = lambda: _Worker(policy, workspace, self.log, self.max_result_bytes)  # noqa: E731
        for attempt in range(2):
            worker = _POOL.get(key, make)
            started = time.monotonic()
            call_fields = {
                "name": self.name,
                "qualname": self.qualname,
                "policy": worker.pin,
                "policy_name": policy.name,
                "args_blake3": _native.blake3_hex(payload),
                "args_bytes": len(payload),
                "worker_pid": worker.process.pid,
            }
            (record,) = _native.append_tool_records(
                worker.log, [("tool.call", worker.invocation, call_fields)], sync=self.durable
            )
            header = {
                "type": "call",
                "module": self.fn.__module__,
                "qualname": self.fn.__qualname__,
                "origin": self.origin,
                "package_dir": self.package_dir,
                "timeout": self.timeout,
                "max_result_bytes": self.max_result_bytes,
                "policy_key": self.key,
                "trace": _state.trace,
            }
            try:
                messages, body = worker.call(header, payload, self.timeout)
                break
            except _WorkerGone as exc:
                # The worker died between calls: nothing was sent, so a new one takes it.
                self._result_record(worker, record, started, "failed", {"error": str(exc)})
                _POOL.retire(worker)
                if attempt == 1:
                    raise SandboxError(f"tool {self.name}: {exc}", record=record) from None
            except CapsuleError as exc:
                exc.record = record
                self._result_record(worker, record, started, "failed", {"error": str(exc)})
                raise
        result = messages[-1] if messages and messages[-1]["type"] == "result" else None
        if _state.trace and result is not None and "trace" in result:
            global last_trace
            last_trace = dict(result["trace"], returned=time.monotonic_ns())
        extra: Dict[str, Any] = {"pid": result["pid"]} if result is not None and "pid" in result else {}
        if result is None:
            reason = worker.dead or "the sandboxed worker did not answer"
            self._result_record(worker, record, started, "failed", dict(extra, error=reason))
            _POOL.retire(worker)
            raise SandboxError(f"tool {self.name}: {reason}; the call did not complete", record=record)
        outcome = result["outcome"]
        if outcome == "payload":
            assert body is not None
            decoded = _codec.loads(body)
            outcome = decoded["outcome"]
            extra.update(result_blake3=_native.blake3_hex(body), result_bytes=len(body))
            if outcome == "returned":
                self._result_record(worker, record, started, "returned", extra)
                return decoded["value"]
            result = decoded
        if outcome == "raised":
            self._result_record(worker, record, started, "raised", dict(extra, error_type=result["type"]))
            raise _rebuild_exception(result, record)
        if outcome == "unencodable":
            self._result_record(worker, record, started, "raised", dict(extra, error_type="ResultError"))
            raise ResultError(f"tool {self.name}: {result['message']}", record=record)
        if outcome == "timeout":
            self._result_record(worker, record, started, "timeout", extra)
            _POOL.retire(worker)
            raise ToolTimeout(f"tool {self.name} ran longer than {self.timeout} s and was killed", record=record)
        if outcome == "too_large":
            self._result_record(worker, record, started, "raised", dict(extra, error_type="ResultError"))
            raise ResultError(
                f"tool {self.name}: the result is larger than max_result_bytes={result['limit']}; "
                "write large data to a file in the workspace and return its path",
                record=record,
            )
        if outcome == "killed":
            sig = result["signal"]
            syscall = None
            if sig == _SIGSYS and "pid" in result:
                # The kernel logs the killed call (audit type 1326); readable by root.
                since_us = int((started - 1.0) * 1e6)
                killed = _native.seccomp_kill(result["pid"], max(since_us, 0))
                if killed is not None:
                    nr, name = killed
                    syscall = name or str(nr)
                    extra.update(syscall=syscall, nr=nr)
            self._result_record(worker, record, started, "killed", dict(extra, signal=sig))
            if sig == _SIGSYS:
                what = f"{syscall}()" if syscall else "a system call the policy kills for (see the kernel log)"
                raise SandboxViolation(
                    f"tool {self.name} was killed by the seccomp filter (SIGSYS): it called {what}",
                    record=record,
                    syscall=syscall,
                )
            raise SandboxError(f"tool {self.name} was killed by signal {sig}", record=record, signal=sig)
        self._result_record(worker, record, started, "failed", dict(extra, exit_code=result.get("exit_code")))
        raise SandboxError(
            f"tool {self.name}: the sandboxed process ended without a result (exit code {result.get('exit_code')})",
            record=record,
        )

    def check_nested(self) -> None:
        """Inside a sandbox a tool under the same policy runs in place; another policy
        cannot be applied from inside, so such a call is refused (fail closed)."""
        try:
            key = self.key
        except Exception as exc:  # noqa: BLE001 -- e.g. a policy file the sandbox cannot read
            raise SandboxError(f"tool {self.name}: its policy cannot be read inside the sandbox: {exc}") from None
        if key != _state.in_sandbox:
            raise SandboxError(f"tool {self.name} has another policy and cannot be called from inside a sandbox")

    def _nested(self, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
        self.check_nested()
        return self.fn(*args, **kwargs)

    def _result_record(self, worker: _Worker, call: int, started: float, outcome: str, extra: Dict[str, Any]) -> None:
        fields: Dict[str, Any] = dict(extra)
        fields.update(call=call, name=self.name, outcome=outcome, duration_us=int((time.monotonic() - started) * 1e6))
        _native.append_tool_records(worker.log, [("tool.result", worker.invocation, fields)], sync=self.durable)


_BUILTIN_EXCEPTIONS = {
    name: obj
    for name, obj in vars(builtins).items()
    if isinstance(obj, type) and issubclass(obj, BaseException) and not issubclass(obj, (SystemExit, KeyboardInterrupt, GeneratorExit))
}


def _rebuild_exception(result: Dict[str, Any], record: int) -> BaseException:
    """A built-in exception type comes back as itself; any other as ToolError. Only
    names and strings are used: nothing is unpickled or imported."""
    cls = _BUILTIN_EXCEPTIONS.get(result["type"]) if result.get("module") == "builtins" else None
    if cls is None:
        return ToolError(
            f"{result['module']}.{result['type']}: {result['message']}",
            remote_type=f"{result['module']}.{result['type']}",
            remote_traceback=result.get("traceback", ""),
            record=record,
        )
    if issubclass(cls, OSError) and result.get("errno") is not None:
        if result.get("filename") is not None:
            exc: BaseException = cls(result["errno"], result.get("strerror") or "", result["filename"])
        else:
            exc = cls(result["errno"], result.get("strerror") or "")
    else:
        try:
            exc = cls(*result.get("args", [result["message"]]))
        except Exception:  # noqa: BLE001 -- a constructor with other arguments
            exc = cls(result["message"])
    exc.__capsule_record__ = record  # type: ignore[attr-defined]
    exc.__capsule_traceback__ = result.get("traceback", "")  # type: ignore[attr-defined]
    return exc


@overload
def tool(fn: F) -> F: ...


@overload
def tool(
    fn: None = None,
    *,
    policy: PolicyLike = None,
    timeout: Optional[float] = None,
    log: Optional[PathLike] = None,
    workspace: Optional[PathLike] = None,
    name: Optional[str] = None,
    max_result_bytes: int = _codec.DEFAULT_MAX_RESULT_BYTES,
    durable: bool = False,
) -> Callable[[F], F]: ...


def tool(
    fn: Optional[Callable[..., Any]] = None,
    *,
    policy: PolicyLike = None,
    timeout: Optional[float] = None,
    log: Optional[PathLike] = None,
    workspace: Optional[PathLike] = None,
    name: Optional[str] = None,
    max_result_bytes: int = _codec.DEFAULT_MAX_RESULT_BYTES,
    durable: bool = False,
) -> Any:
    """Run every call of the decorated function in a sandbox under ``policy``.

    ``policy`` is ``None`` (the built-in default policy), a path to a policy file, or a
    :class:`Policy`. ``timeout`` (seconds) kills the call and everything it started and
    raises :class:`ToolTimeout`. ``log`` is the audit log (default: the policy's, as for
    ``capsule run``); ``workspace`` is ``${WORKSPACE}`` (default: the current
    directory at call time); ``name`` is the tool's name in the log.
    ``max_result_bytes`` bounds the encoded result (larger: :class:`ResultError`).
    ``durable=True`` syncs each call's records to disk (``fdatasync``) before the body
    runs and after it returns; by default they reach the page cache only, which a crash
    of the agent does not lose and a power loss may (the worker's own start and end
    records are always synced).

    Put it directly on the ``def``, under any framework decorator. Works on ``def`` and
    ``async def`` functions; the wrapper keeps the name, docstring, signature and
    coroutine-ness. Results must be JSON data; see docs/python.md.
    """

    def decorate(func: Callable[..., Any]) -> Any:
        _check_decoratable(func)
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        spec = _ToolSpec(func, policy, timeout, log, workspace, name, max_result_bytes, durable)
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                if _state.in_sandbox is not None or _state.in_worker:
                    spec.check_nested()
                    return await func(*args, **kwargs)
                import asyncio

                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(None, lambda: spec.invoke(args, kwargs))

            wrapper: Any = async_wrapper
        else:

            @functools.wraps(func)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                return spec.invoke(args, kwargs)

            wrapper = sync_wrapper
        wrapper.__capsule_original__ = func
        wrapper.__capsule_tool__ = spec
        return wrapper

    if fn is not None:
        return decorate(fn)
    return decorate


# -- capsule.run ------------------------------------------------------------------------


def run(
    argv: Sequence[Union[str, "os.PathLike[str]"]],
    policy: PolicyLike = None,
    timeout: Optional[float] = None,
    *,
    log: Optional[PathLike] = None,
    workspace: Optional[PathLike] = None,
    input: Optional[bytes] = None,
    capture_output: bool = True,
    check: bool = False,
) -> "subprocess.CompletedProcess[bytes]":
    """Run a command under a policy, as ``capsule run`` does, and return a
    :class:`subprocess.CompletedProcess` (``returncode`` follows ``capsule run``: the
    command's code, 128+N for signal N, 125 when the sandbox could not be set up, 126
    and 127 when the command cannot be executed or is not found).

    ``timeout`` raises :class:`ToolTimeout` after ending the command (SIGTERM through
    the launcher, which ends every descendant, then SIGKILL).
    """
    pol = _policy_of(policy)
    ws = os.path.realpath(os.fspath(workspace) if workspace is not None else os.getcwd())
    _, _, default_log = _native.build(pol.source, pol.name, ws)
    log_path = os.fspath(log) if log is not None else str(default_log)
    cmd = [os.fspath(a) for a in argv]
    if not cmd:
        raise ValueError("run needs a command")
    args = _launcher_argv(_policy_file(pol), log_path, ws, cmd)
    pipe = subprocess.PIPE if capture_output else None
    with subprocess.Popen(
        args, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL, stdout=pipe, stderr=pipe, cwd=ws
    ) as process:
        try:
            out, err = process.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
            raise ToolTimeout(f"{cmd[0]} ran longer than {timeout} s and was ended") from None
    result = subprocess.CompletedProcess(cmd, process.returncode, out, err)
    if check:
        result.check_returncode()
    return result
