"""`splineflow train` killed with SIGKILL mid-training, then run again, continues from its
last checkpoint and ends with the same weights as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from splineflow_pyro.training import TrainedModel

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """
datasets:
  - name: decay
    source: "synthetic:decay?n=40&p=0.5&seed=0"
methods: [splineflow]
train: {steps: 600, batch_size: 16, width: 32, depth: 2, checkpoint_every: 25, device: cpu}
"""


def train_command(config: Path, storage: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "flows.cli",
        "train",
        "--config",
        str(config),
        "--storage",
        str(storage),
    ]


def ingest(storage: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "flows.cli", "ingest", "synthetic:decay?n=40&p=0.5&seed=0"]
        + ["--name", "decay", "--storage", str(storage)],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )


def only_model(storage: Path) -> Path:
    (path,) = (storage / "models").glob("*/model.pt")
    return path


def test_sigkill_then_same_command_resumes_to_the_same_weights(tmp_path: Path) -> None:
    config = tmp_path / "resume.yaml"
    config.write_text(CONFIG)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    for storage in (whole, killed):
        ingest(storage)
    subprocess.run(
        train_command(config, whole), check=True, cwd=ROOT, capture_output=True, timeout=600
    )

    proc = subprocess.Popen(
        train_command(config, killed),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the Prefect server dies with it
    )
    deadline = time.time() + 300
    checkpoints = []
    while not checkpoints and time.time() < deadline:
        checkpoints = list((killed / "models").glob("*/checkpoint.pt"))
        time.sleep(0.05)
    assert checkpoints, "training never wrote a checkpoint"
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    step = torch.load(checkpoints[0], weights_only=True)["step"]
    assert 0 < step < 600, f"the kill should land mid-training (checkpoint at step {step})"
    assert not list((killed / "models").glob("*/model.pt"))

    rerun = subprocess.run(
        train_command(config, killed), cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "trained" in rerun.stdout
    a, b = TrainedModel.load(only_model(whole)), TrainedModel.load(only_model(killed))
    assert only_model(whole).parent.name == only_model(killed).parent.name  # same run key
    wa = torch.cat([p.flatten() for p in a.field.parameters()])
    wb = torch.cat([p.flatten() for p in b.field.parameters()])
    assert torch.allclose(wa, wb, atol=1e-6, rtol=0)
