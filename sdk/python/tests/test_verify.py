"""capsule.verify against logs the SDK wrote, damaged in each way capsule verify names."""

from __future__ import annotations

import subprocess

import capsule
import tools_mod


def _log_with_records(workspace, log_path):
    assert tools_mod.add(1, 2) == 3
    assert log_path.exists()
    return log_path


def test_intact(workspace, log_path, capsule_cli):
    _log_with_records(workspace, log_path)
    r = capsule.verify(log_path)
    assert (r.ok, r.status, r.exit_code, r.first_bad) == (True, "intact", 0, None)
    assert r.records >= 4  # genesis, invocation.start, tool.call, tool.result
    assert subprocess.run([capsule_cli, "verify", str(log_path)]).returncode == 0


def test_default_log_is_the_per_user_log(workspace, log_path):
    _log_with_records(workspace, log_path)
    assert capsule.verify().path == str(log_path)


def test_tampered(workspace, log_path, capsule_cli):
    _log_with_records(workspace, log_path)
    capsule._tool._POOL.shutdown()  # the worker's launcher writes its end record first
    data = bytearray(log_path.read_bytes())
    at = data.index(b'"kind":"tool.call"')
    data[at + 9] = ord("T")
    log_path.write_bytes(bytes(data))
    r = capsule.verify(log_path)
    assert (r.ok, r.status, r.exit_code) == (False, "tampered", 1)
    assert r.first_bad is not None and r.reason
    assert subprocess.run([capsule_cli, "verify", str(log_path)], capture_output=True).returncode == 1


def test_incomplete(workspace, log_path):
    _log_with_records(workspace, log_path)
    capsule._tool._POOL.shutdown()
    with open(log_path, "ab") as f:
        f.write(b'{"data":{},"kind":"tool.ca')
    r = capsule.verify(log_path)
    assert (r.status, r.exit_code) == ("incomplete", 3)


def test_unreadable(tmp_path):
    r = capsule.verify(tmp_path / "no-such.log")
    assert (r.ok, r.status, r.exit_code) == (False, "unreadable", 2)
