"""A writer killed (SIGKILL) at random moments never leaves a broken or mixed store."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from splineflow_pyro import store

# A pre-imported, warmed-up "zygote" forks one writer per request, kills it after the given
# delay (the child is not yet reaped, so its pid cannot be reused) and reports how it ended.
ZYGOTE = r"""
import os, signal, sys, time
from splineflow_pyro import store
source = sys.argv[1]
store.ingest(source, "warm", storage=sys.argv[2])  # lazy imports done before forking
for line in sys.stdin:
    root, delay = line.split()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            store.ingest(source, "s", storage=root)
        except BaseException:
            code = 1
        os._exit(code)
    if float(delay) >= 0:
        time.sleep(float(delay))
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    print(status, time.perf_counter() - start, flush=True)
"""


def _arrays(root: Path) -> tuple:
    ds = store.open_dataset("s", root).load()
    return (ds.attrs["content_sha256"], ds["x"].values.tobytes(), ds["obs_time"].values.tobytes(),
            ds["count"].values.tolist())  # fmt: skip


def test_sigkill_during_append_leaves_before_or_after(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    times = np.repeat(np.arange(4.0), 50)
    x = rng.normal(size=(len(times), 3))
    rows = [f"{t},{a},{b},{c}" for t, (a, b, c) in zip(times, x, strict=True)]
    first.write_text("t,x1,x2,x3\n" + "\n".join(rows[:100]) + "\n")
    second.write_text("t,x1,x2,x3\n" + "\n".join(rows[100:]) + "\n")
    base = tmp_path / "base"
    store.ingest(first, "s", storage=base)
    before = _arrays(base)
    done = tmp_path / "done"
    shutil.copytree(base, done, symlinks=True)
    store.ingest(second, "s", storage=done)
    after = _arrays(done)
    assert before != after

    zygote = subprocess.Popen(
        [sys.executable, "-c", ZYGOTE, str(second), str(tmp_path / "warm")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:

        def attempt(root: Path, delay: float) -> tuple[int, float]:
            zygote.stdin.write(f"{root} {delay}\n")
            zygote.stdin.flush()
            status, elapsed = zygote.stdout.readline().split()
            return int(status), float(elapsed)

        probe = tmp_path / "probe"
        shutil.copytree(base, probe, symlinks=True)
        status, duration = attempt(probe, -1)
        assert status == 0 and _arrays(probe) == after
        delays = random.Random(0)
        outcomes = {"before": 0, "after": 0}
        for i in range(20):
            root = tmp_path / f"run{i}"
            shutil.copytree(base, root, symlinks=True)
            attempt(root, delays.uniform(0, 1.2 * duration))
            got = _arrays(root)
            assert got in (before, after), f"attempt {i}: store is neither before nor after"
            outcomes["before" if got == before else "after"] += 1
            if i % 5 == 0:  # the next writer recovers and completes the append
                store.ingest(second, "s", storage=root)
                assert _arrays(root) == after
                versions = root / "datasets" / ".s.zarr.versions"
                assert len(list(versions.iterdir())) <= 2
        assert outcomes["before"] > 0  # the kills did land mid-write
    finally:
        zygote.stdin.close()
        zygote.wait(timeout=30)
