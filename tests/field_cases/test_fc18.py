"""FC-18: cache keys are pure functions of content, so a re-run in a fresh process (another
hash seed) trains and evaluates nothing, and a reformatted config hits the same keys."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from splineflow_pyro import store
from splineflow_pyro.config import load_config
from splineflow_pyro.runs import plan_runs

SMALL = """
datasets:
  - name: cells
    source: {csv}
methods:
  - kind: splineflow
    degree: 3
  - kind: linear
holdout: [1.0]
seeds: [0, 1]
train:
  steps: 15
  batch_size: 16
  lr: 0.001
  width: 16
  depth: 2
evaluate:
  step_size: 0.05
"""

REORDERED = """
# the same pipeline: keys reordered, 1e-3 for 0.001, a comment
evaluate: {{step_size: 5e-2}}
train: {{depth: 2, width: 16, lr: 1e-3, batch_size: 16, steps: 15}}
seeds: [0, 1]
holdout: [1]
methods: [{{degree: 3, kind: splineflow}}, linear]
datasets: [{{source: {csv}, name: cells}}]
"""


def run_cli(config: Path, storage: Path, hash_seed: str) -> dict[str, dict[str, int]]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "run",
            "--config",
            str(config),
            "--storage",
            str(storage),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    stages = {}
    for stage in ("ingest", "train", "evaluate"):
        line = re.search(rf"^{stage}: (.*)$", proc.stdout, re.M)
        assert line, proc.stdout
        stages[stage] = {w: int(n) for n, w in re.findall(r"(\d+) (\w+)", line.group(1))}
    return stages


@pytest.fixture
def small(tmp_path: Path) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        [
            {"time": t, "x1": x, "x2": y}
            for t in (0.0, 1.0, 2.0)
            for x, y in rng.normal(size=(25, 2)) * 0.3 + t
        ]
    )
    csv = tmp_path / "cells.csv"
    frame.to_csv(csv, index=False)
    (tmp_path / "small.yaml").write_text(SMALL.format(csv=csv))
    (tmp_path / "reordered.yaml").write_text(REORDERED.format(csv=csv))
    return tmp_path / "small.yaml", tmp_path / "reordered.yaml", tmp_path / "storage"


def test_fc18_rerun_in_fresh_processes_trains_nothing(small) -> None:
    config, reordered, storage = small
    first = run_cli(config, storage, "1")
    assert first["train"]["trained"] == 4 and first["evaluate"]["evaluated"] == 4
    runs_before = store.open_results(str(storage)).sizes["run"]

    second = run_cli(config, storage, "2")
    assert second["train"] == {"trained": 0, "cached": 4, "failed": 0}
    assert second["evaluate"] == {"evaluated": 0, "cached": 4, "failed": 0}
    assert store.open_results(str(storage)).sizes["run"] == runs_before == 4

    same = [s.run_id for s in plan_runs(load_config(config), str(storage))]
    assert same == [s.run_id for s in plan_runs(load_config(reordered), str(storage))]
    third = run_cli(reordered, storage, "3")
    assert third["train"]["trained"] == 0 and third["evaluate"]["evaluated"] == 0

    # one method's setting changes: only that method's 2 runs are trained again
    config.write_text(config.read_text().replace("degree: 3", "degree: 2"))
    fourth = run_cli(config, storage, "4")
    assert fourth["train"] == {"trained": 2, "cached": 2, "failed": 0}
