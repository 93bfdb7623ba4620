"""Benchmark: a trivial @capsule.tool call against subprocess.run(["/bin/true"]), side
by side in one process, plus the parts of a call (see docs/benchmarks.md).

    python benches/python/tool_call.py [--rounds N]

Run it from a directory capsule accepts as a workspace (not / or $HOME), with the SDK
installed (`pip install ./sdk/python`). Prints a table and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from capsule import _codec, _native  # noqa: E402
import bench_tools  # noqa: E402


def timed(fn, rounds):
    samples = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    # A private log (outside /tmp and the workspace, as capsule requires), so the
    # benchmark's records do not go to the user's log.
    state = tempfile.mkdtemp(prefix="capsule-bench-", dir=Path.home() / ".cache")
    os.environ["XDG_STATE_HOME"] = state
    bench_tools.noop()  # start the worker (compile, launch, imports): not measured
    log = Path(_native.default_log_path())

    def fork_only():
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)

    payload = pickle.dumps(((), {}))

    def encoding():
        pickle.loads(payload)
        _codec.loads(b'{"outcome":"returned","value":' + _codec.encode_value(None) + b"}")
        _native.blake3_hex(payload)

    def log_append():
        _native.append_tool_records(str(log), [("tool.call", None, {"name": "bench"})], sync=True)

    cases = {
        "subprocess.run(['/bin/true'])": lambda: subprocess.run(["/bin/true"]),
        "@capsule.tool call (trivial)": bench_tools.noop,
        "fork + wait in the agent": fork_only,
        "pickle + JSON + blake3": encoding,
        "one synced log append": log_append,
    }
    results = {name: [] for name in cases}
    # Interleaved rounds: the machine's noise hits every case alike.
    for _ in range(args.rounds):
        for name, fn in cases.items():
            results[name].extend(timed(fn, 1))
    # Where a trivial call's time goes: monotonic timestamps from the agent, the worker
    # and back (one clock for every process).
    from capsule import _state, _tool

    _state.trace = True
    phases = {k: [] for k in ("agent: pickle, tool.call record, send", "worker: receive to fork done",
                              "call process: set-up, body, result, exit", "worker: reap and relay",
                              "agent: receive", "agent: decode, tool.result record")}
    for _ in range(args.rounds):
        start = time.monotonic_ns()
        bench_tools.noop()
        end = time.monotonic_ns()
        t = _tool.last_trace
        for key, value in zip(phases, (t["received"] - start, t["forked"] - t["received"], t["exited"] - t["forked"],
                                       t["sent"] - t["exited"], t["returned"] - t["sent"], end - t["returned"])):
            phases[key].append(value / 1e9)
    _state.trace = False
    base = statistics.median(results["subprocess.run(['/bin/true'])"])
    print(f"{'case':40} {'median ms':>10} {'p90 ms':>8} {'ratio':>6}")
    report = {}
    for name, samples in results.items():
        med = statistics.median(samples)
        p90 = sorted(samples)[int(len(samples) * 0.9)]
        report[name] = {"median_ms": round(med * 1e3, 3), "p90_ms": round(p90 * 1e3, 3), "ratio": round(med / base, 2)}
        print(f"{name:40} {med * 1e3:10.3f} {p90 * 1e3:8.3f} {med / base:6.2f}")
    print()
    print(f"{'breakdown of a trivial call':45} {'median ms':>10}")
    for name, samples in phases.items():
        med = statistics.median(samples)
        report["breakdown: " + name] = {"median_ms": round(med * 1e3, 3)}
        print(f"{name:45} {med * 1e3:10.3f}")
    print(json.dumps(report))
    shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
