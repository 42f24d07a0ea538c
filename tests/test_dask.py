"""The Dask task runner (prefect-dask) fans runs out over a 2-worker local cluster."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from splineflow_pyro import store

pytest.importorskip("prefect_dask", reason="prefect-dask is not installed (extra [dask])")

CONFIG = """
datasets:
  - name: lv
    source: "synthetic:lotka_volterra?n=20&p=0.5&seed=0"
methods: [splineflow, linear]
seeds: [0, 1]
train: {steps: 10, batch_size: 8, width: 8, depth: 1}
evaluate: {step_size: 0.1}
"""


@pytest.mark.slow
def test_nightly_on_a_two_worker_dask_cluster(tmp_path: Path) -> None:
    config = tmp_path / "dask.yaml"
    config.write_text(CONFIG)
    storage = tmp_path / "storage"
    cmd = [sys.executable, "-m", "flows.cli", "run", "--config", str(config)]
    cmd += ["--storage", str(storage), "--runner", "dask", "--workers", "2"]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ.copy(),
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "train: 4 trained, 0 cached, 0 failed" in proc.stdout
    assert store.open_results(str(storage)).sizes["run"] == 4
