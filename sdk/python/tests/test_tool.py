"""@capsule.tool on the real kernel: isolation, what crosses the boundary, errors,
audit records. Each escape is first shown to work without the sandbox."""

from __future__ import annotations

import asyncio
import errno
import inspect
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

import capsule
import tools_mod


def records(log_path: Path, kind: str):
    out = []
    for line in log_path.read_text().splitlines():
        r = json.loads(line)
        if r["kind"] == kind:
            out.append(r)
    return out


# -- results and exceptions ---------------------------------------------------------------


def test_returns_the_value(workspace):
    assert tools_mod.add(1, 2) == 3
    assert tools_mod.add(a=5) == 7
    assert tools_mod.identity({"a": [1, 2.5, None, True, "é"]}) == {"a": [1, 2.5, None, True, "é"]}
    assert tools_mod.identity((1, 2)) == [1, 2]  # tuples arrive as lists (JSON)
    assert tools_mod.echo_kwargs(x=1, y="z") == {"x": 1, "y": "z"}


def test_builtin_exceptions_keep_type_and_message(workspace):
    with pytest.raises(ValueError, match="^bad input$"):
        tools_mod.raise_value_error("bad input")
    with pytest.raises(KeyError) as info:
        tools_mod.raise_key_error()
    assert info.value.args == ("missing",)


def test_other_exceptions_arrive_as_tool_error(workspace):
    with pytest.raises(capsule.ToolError) as info:
        tools_mod.raise_custom()
    assert info.value.remote_type == "tools_mod.CustomError"
    assert "custom failure" in str(info.value)
    assert "raise CustomError" in info.value.remote_traceback
    assert isinstance(info.value, capsule.CapsuleError) and info.value.record is not None


def test_unencodable_result_names_its_type(workspace):
    with pytest.raises(capsule.ResultError, match="builtins.object"):
        tools_mod.unencodable()
    with pytest.raises(capsule.ResultError, match="builtins.set"):
        tools_mod.returns_set()


def test_unpicklable_argument_is_refused_before_anything_runs(workspace):
    with pytest.raises(TypeError, match="cannot be pickled"):
        tools_mod.identity(threading.Lock())


def test_large_results(workspace):
    assert len(tools_mod.big_result(8 << 20)) == 8 << 20
    with pytest.raises(capsule.ResultError, match="max_result_bytes"):
        tools_mod.over_limit()
    assert tools_mod.add(1, 1) == 2  # the worker is still fine


def test_hundred_megabytes_are_refused_not_deadlocked(workspace):
    with pytest.raises(capsule.ResultError, match="max_result_bytes"):
        tools_mod.big_result(100 << 20)


# -- enforcement ------------------------------------------------------------------------


def test_denied_write_is_a_permission_error_in_the_body(workspace, tmp_path):
    outside = Path.home() / f".capsule-pytest-escape-{uuid.uuid4().hex}"
    # The attack works without the sandbox...
    assert tools_mod.try_write.__wrapped__(str(outside)) == 0
    outside.unlink()
    # ...and inside, the body sees the ordinary OSError and can handle it.
    assert tools_mod.try_write(str(outside)) in (errno.EACCES, errno.EPERM)
    assert not outside.exists()
    with pytest.raises(PermissionError) as info:
        tools_mod.open_for_write(str(outside))
    assert info.value.errno in (errno.EACCES, errno.EPERM)
    assert info.value.filename == str(outside)
    assert not outside.exists()
    # The workspace is writable.
    assert tools_mod.try_write(str(workspace / "ok.txt")) == 0
    assert (workspace / "ok.txt").read_text() == "x"


def test_home_secrets_are_not_readable(workspace):
    secret = Path.home() / f".capsule-pytest-secret-{uuid.uuid4().hex}"
    secret.write_text("api-key")
    try:
        assert tools_mod.read_file.__wrapped__(str(secret)) == "api-key"
        with pytest.raises(PermissionError):
            tools_mod.read_file(str(secret))
    finally:
        secret.unlink()


def test_environment_is_not_inherited(workspace, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    assert tools_mod.environment.__wrapped__()["OPENAI_API_KEY"] == "sk-secret"
    env = tools_mod.environment()
    assert "OPENAI_API_KEY" not in env
    assert env.get("CAPSULE") == "1"


def test_open_descriptors_are_not_inherited(workspace, tmp_path):
    with open(tmp_path / "agent-file", "w") as f:
        assert tools_mod.fd_is_open.__wrapped__(f.fileno()) is True
        assert tools_mod.fd_is_open(f.fileno()) is False


def test_agent_memory_is_not_inherited(workspace, monkeypatch):
    monkeypatch.setattr(tools_mod, "AGENT_STATE", "changed by the agent")
    assert tools_mod.agent_state.__wrapped__() == "changed by the agent"
    assert tools_mod.agent_state() == "as imported"


def test_each_call_is_a_fresh_process(workspace):
    pids = {tools_mod.pid_and_time(0)[0] for _ in range(3)}
    assert len(pids) == 3 and os.getpid() not in pids


def test_kill_by_filter_is_a_sandbox_violation(workspace):
    os.getpriority(os.PRIO_PROCESS, 0)  # harmless outside
    with pytest.raises(capsule.SandboxViolation) as info:
        tools_mod.killed_by_filter()
    assert info.value.record is not None
    # The kernel's log names the call to whoever may read it (root, with CAP_SYSLOG).
    try:
        open("/dev/kmsg", "rb").close()
        readable = True
    except OSError:
        readable = False
    assert info.value.syscall == ("getpriority" if readable else None)


def test_segfault_is_a_sandbox_error_naming_the_signal(workspace):
    with pytest.raises(capsule.SandboxError) as info:
        tools_mod.segfault()
    assert info.value.signal == signal.SIGSEGV
    assert "signal 11" in str(info.value)


def test_closed_pipe_is_a_sandbox_error(workspace):
    with pytest.raises(capsule.SandboxError, match="without a result"):
        tools_mod.closes_pipe()


def _marker_processes(marker: str):
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                found.append(int(pid))
    return found


def _wait_gone(marker: str, seconds: float = 15.0):
    deadline = time.monotonic() + seconds
    while _marker_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _marker_processes(marker)


def test_timeout_kills_the_call_and_its_descendants(workspace):
    marker = f"capsule-marker-{uuid.uuid4().hex}"
    with pytest.raises(capsule.ToolTimeout) as info:
        tools_mod.sleeps_forever(marker)
    assert isinstance(info.value, TimeoutError) and info.value.record is not None
    # The descendant in the call's session dies with it; the one that started its own
    # session dies when the retired worker stops.
    assert _wait_gone(marker) == []
    assert tools_mod.add(2, 2) == 4


def test_a_descendant_holding_the_pipe_does_not_hold_the_call(workspace):
    # The call's process wrote its result and exited: the call returns, without
    # waiting for the stray (which the launcher ends when the worker stops).
    assert tools_mod.leaves_a_session_holding_the_pipe() == "ok"
    assert tools_mod.add(1, 2) == 3


def test_refused_setup_raises_sandbox_error_before_the_body(workspace, tmp_path):
    # `capsule run` refuses a workspace of "/": the command never starts.
    marker = tmp_path / "ran"
    tools_mod.write_marker.__wrapped__(str(marker))  # the body works outside
    marker.unlink()
    with pytest.raises(capsule.SandboxError, match="could not be set up"):
        tools_mod.in_root_workspace(str(marker))
    assert not marker.exists()


def test_worker_that_dies_between_calls_is_restarted(workspace):
    assert tools_mod.add(1, 1) == 2
    worker_pid = tools_mod.my_pid()
    os.kill(worker_pid, signal.SIGKILL)
    time.sleep(0.2)
    # The call either finds the worker gone and starts another, or fails cleanly.
    try:
        assert tools_mod.add(3, 3) == 6
    except capsule.SandboxError:
        assert tools_mod.add(3, 3) == 6
    assert tools_mod.my_pid() != worker_pid


# -- the wrapper ----------------------------------------------------------------------------


def test_wraps_keeps_what_frameworks_introspect():
    assert tools_mod.add.__name__ == "add"
    assert tools_mod.add.__doc__ == "Adds two numbers."
    assert str(inspect.signature(tools_mod.add)) == "(a: 'int', b: 'int' = 2) -> 'int'"
    assert inspect.isfunction(tools_mod.add.__wrapped__)
    assert inspect.iscoroutinefunction(tools_mod.async_add)
    assert not inspect.iscoroutinefunction(tools_mod.add)


def test_refuses_what_the_worker_cannot_find():
    with pytest.raises(TypeError, match="lambda"):
        capsule.tool(lambda: 1)

    def nested():
        pass

    with pytest.raises(TypeError, match="inside another function"):
        capsule.tool(nested)
    with pytest.raises(TypeError, match="not int"):
        capsule.tool(1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not staticmethod"):
        capsule.tool(staticmethod(tools_mod.add.__wrapped__))


def test_async_tool_does_not_block_the_event_loop(workspace):
    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        windows = await asyncio.gather(tools_mod.async_window(0.5), tools_mod.async_window(0.5))
        task.cancel()
        return ticks, windows, await tools_mod.async_add(2, 3)

    ticks, windows, total = asyncio.run(main())
    assert total == 5
    assert ticks > 5  # the loop ran while the calls did
    (s1, e1), (s2, e2) = windows
    assert s1 < e2 and s2 < e1  # the two calls overlapped


def test_concurrent_calls_from_threads(workspace):
    results = []

    def call():
        results.append(tools_mod.pid_and_time(0.3))

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r[0] for r in results}) == 4
    starts, ends = [r[1] for r in results], [r[2] for r in results]
    assert max(starts) < min(ends)  # all four ran at once


def test_a_tool_may_call_another(workspace):
    assert tools_mod.calls_another(1) == 22


def test_a_tool_with_another_policy_is_refused_inside(workspace):
    with pytest.raises(capsule.ToolError, match="SandboxError"):
        tools_mod.calls_other_policy()


# -- __main__ ------------------------------------------------------------------------------


def test_tool_in_main_script(workspace, tmp_path):
    script = tmp_path / "agent.py"
    ran = tmp_path / "main-block-runs"
    script.write_text(
        textwrap.dedent(
            f"""
            import capsule

            @capsule.tool()
            def double(x):
                return 2 * x

            if __name__ == "__main__":
                with open({str(ran)!r}, "a") as f:
                    f.write("x")
                print(double(21))
            """
        )
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=workspace, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "42"
    assert ran.read_text() == "x"  # the worker did not run the main block


def test_agent_exit_leaves_no_process_behind(workspace, tmp_path):
    script = tmp_path / "agent.py"
    marker = f"capsule-marker-{uuid.uuid4().hex}"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, sys
            sys.path.insert(0, {str(Path(tools_mod.__file__).parent)!r})
            import tools_mod
            import threading
            print(tools_mod.my_pid(), flush=True)
            threading.Thread(target=tools_mod.sleeps_forever, args=({marker!r},), daemon=True).start()
            import time; time.sleep(0.5)
            os._exit(0)  # no atexit: the worker must notice on its own
            """
        )
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=workspace, timeout=120)
    assert out.returncode == 0, out.stderr
    worker = int(out.stdout.split()[0])
    assert _wait_gone(marker) == []
    deadline = time.monotonic() + 15
    while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{worker}").exists()


# -- audit ---------------------------------------------------------------------------------


def test_each_call_is_recorded(workspace, log_path, capsule_cli):
    assert tools_mod.add(40, 2) == 42
    with pytest.raises(ValueError):
        tools_mod.raise_value_error("no")
    calls = records(log_path, "tool.call")
    results = records(log_path, "tool.result")
    assert len(calls) == 2 and len(results) == 2
    call, result = calls[0]["data"], results[0]["data"]
    # Exactly the fields docs/audit-log.md documents ("Tool records").
    assert set(call) == {"invocation", "name", "qualname", "policy", "policy_name", "args_blake3", "args_bytes",
                         "worker_pid"}
    assert set(result) == {"invocation", "call", "name", "outcome", "duration_us", "pid", "result_blake3",
                           "result_bytes"}
    assert call["name"] == "add" and call["qualname"] == "tools_mod:add"
    assert len(call["policy"]) == 64 and len(call["args_blake3"]) == 64
    starts = records(log_path, "invocation.start")
    assert call["invocation"] == starts[-1]["seq"]
    assert result["call"] == int(calls[0]["seq"]) and result["outcome"] == "returned"
    assert result["result_blake3"] and result["duration_us"] > 0 and result["pid"] > 0
    assert results[1]["data"]["outcome"] == "raised" and results[1]["data"]["error_type"] == "ValueError"
    # Records precede their results; the chain verifies.
    assert int(calls[0]["seq"]) < int(results[0]["seq"]) < int(calls[1]["seq"])
    assert capsule.verify(log_path).ok
    shown = subprocess.run([capsule_cli, "log", "show", str(log_path)], capture_output=True, text=True)
    assert shown.returncode == 0 and "tool.call" in shown.stdout


def test_denied_calls_are_recorded_with_the_call_pid(workspace, log_path):
    import socket

    socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()  # works outside
    assert tools_mod.inet_socket() == errno.EPERM
    pid = records(log_path, "tool.result")[-1]["data"]["pid"]
    denied = [r["data"] for r in records(log_path, "syscall.denied")]
    assert any(d["name"] == "socket" and d["pid"] == pid for d in denied), denied


# -- capsule.run ---------------------------------------------------------------------------


def test_run_returns_a_completed_process(workspace):
    r = capsule.run(["echo", "hello world"])
    assert (r.returncode, r.stdout) == (0, b"hello world\n")
    assert capsule.run(["sh", "-c", "exit 3"]).returncode == 3
    assert capsule.run(["no-such-command-xyz"]).returncode == 127
    outside = Path.home() / f".capsule-pytest-{uuid.uuid4().hex}"
    r = capsule.run(["sh", "-c", f"echo x > {outside}"])
    assert r.returncode != 0 and not outside.exists()
    with pytest.raises(capsule.ToolTimeout):
        capsule.run(["sleep", "30"], timeout=0.5)
