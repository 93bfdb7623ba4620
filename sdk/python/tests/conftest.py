"""Shared set-up: a private state directory (the audit log) and cache per session,
both outside every path the policies under test let a command write, and a fresh
workspace per test."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _private_dir(kind: str) -> Path:
    # Under the home directory, never under /tmp: the default policy lets a command
    # write /tmp, and capsule refuses a log or cache the command could write.
    base = Path.home() / ".cache" / "capsule-pytest" / f"{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    base.mkdir(parents=True, mode=0o700)
    return base


@pytest.fixture(scope="session")
def cache_dir():
    cache = _private_dir("cache")
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old
    shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture(autouse=True)
def capsule_dirs(cache_dir, monkeypatch):
    """A fresh state directory (so a fresh audit log) for every test."""
    state = _private_dir("state")
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    yield state, cache_dir
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    ws.mkdir()
    monkeypatch.chdir(ws)
    return ws


@pytest.fixture
def log_path(capsule_dirs):
    state, _ = capsule_dirs
    return state / "capsule" / "capsule.log"


def capsule_binary(name: str) -> str:
    """A binary of this checkout (make test builds them before the Python tests)."""
    for profile in ("debug", "release"):
        candidate = REPO / "target" / profile / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not built: run `cargo build --workspace --bins` first")
    return found


@pytest.fixture
def capsulec():
    return capsule_binary("capsulec")


@pytest.fixture
def capsule_cli():
    return capsule_binary("capsule")
