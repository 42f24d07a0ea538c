"""Training: determinism, checkpoints and resume (also after SIGKILL), snapshots, accuracy on a
linear system with a closed-form solution."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from splineflow_pyro.config import MethodConfig, TrainConfig
from splineflow_pyro.data import SnapshotData, TrackedData
from splineflow_pyro.training import TrainedModel, fit

SMALL = TrainConfig(steps=40, batch_size=16, width=16, depth=2, checkpoint_every=10, device="cpu")


def decay_data(n: int = 24, seed: int = 0) -> TrackedData:
    """x' = -0.7 x, observed on 21 irregularly masked times: closed form x0 exp(-0.7 t)."""
    gen = torch.Generator().manual_seed(seed)
    times = torch.linspace(0, 4, 21, dtype=torch.float64)
    x0 = 0.5 + 1.5 * torch.rand(n, 1, generator=gen, dtype=torch.float64)
    values = (x0[:, None, :] * torch.exp(-0.7 * times)[None, :, None]).clone()
    mask = torch.rand(values.shape, generator=gen) > 0.3
    mask[:, 0] = True
    values[~mask] = torch.nan
    return TrackedData(times, values, mask, torch.arange(n).numpy(), ("x",))


def weights(model: TrainedModel) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.field.parameters()])


def test_training_is_deterministic_by_seed() -> None:
    data = decay_data()
    a = fit(data, MethodConfig("splineflow"), SMALL, seed=3)
    b = fit(data, MethodConfig("splineflow"), SMALL, seed=3)
    c = fit(data, MethodConfig("splineflow"), SMALL, seed=4)
    assert torch.equal(weights(a), weights(b))
    assert not torch.equal(weights(a), weights(c))
    assert all(math.isfinite(v) for v in a.losses) and len(a.losses) == 40


def test_interrupted_training_resumes_to_the_same_weights(tmp_path: Path) -> None:
    data = decay_data()
    method = MethodConfig("splineflow", sigma=0.1, schedule="bridge")
    whole = fit(data, method, SMALL, seed=0)

    def crash(step: int, loss: float) -> None:
        if step == 24:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(data, method, SMALL, seed=0, checkpoint_dir=tmp_path, on_step=crash)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 20
    resumed = fit(data, method, SMALL, seed=0, checkpoint_dir=tmp_path)
    assert torch.allclose(weights(resumed), weights(whole), atol=1e-6, rtol=0)
    assert resumed.losses == pytest.approx(whole.losses)


SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
from test_training import decay_data
from splineflow_pyro.config import MethodConfig, TrainConfig
from splineflow_pyro.training import fit
cfg = TrainConfig(steps=400, batch_size=16, width=32, depth=2, checkpoint_every=20, device="cpu")
model = fit(decay_data(), MethodConfig("splineflow"), cfg, seed=0, checkpoint_dir={ckpt!r})
model.save({out!r})
"""


def test_sigkill_during_training_then_rerun_gives_the_same_weights(tmp_path: Path) -> None:
    tests = str(Path(__file__).parent)

    def script(ckpt: Path, out: Path) -> list[str]:
        return [sys.executable, "-c", SCRIPT.format(tests=tests, ckpt=str(ckpt), out=str(out))]

    subprocess.run(script(tmp_path / "a", tmp_path / "a.pt"), check=True, timeout=300)
    proc = subprocess.Popen(script(tmp_path / "b", tmp_path / "b.pt"))
    ckpt = tmp_path / "b" / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    step = torch.load(ckpt, weights_only=True)["step"]
    assert 0 < step < 400, "the kill should land mid-training"
    subprocess.run(script(tmp_path / "b", tmp_path / "b.pt"), check=True, timeout=300)
    a, b = TrainedModel.load(tmp_path / "a.pt"), TrainedModel.load(tmp_path / "b.pt")
    assert torch.allclose(weights(a), weights(b), atol=1e-6, rtol=0)


def test_snapshot_training_runs_and_learns() -> None:
    gen = torch.Generator().manual_seed(0)
    times = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    marginals = tuple(
        torch.randn(60 + 10 * k, 2, generator=gen, dtype=torch.float64) * 0.3 + float(t)
        for k, t in enumerate(times)
    )
    cfg = TrainConfig(steps=150, batch_size=32, width=32, depth=2, device="cpu")
    model = fit(SnapshotData(times, marginals, ("a", "b")), MethodConfig("splineflow"), cfg)
    assert sum(model.losses[-20:]) < sum(model.losses[:20])
    pred = model.predict(marginals[0], 0.0, torch.tensor([3.0]))[0]
    assert torch.allclose(pred.mean(0), torch.tensor([3.0, 3.0], dtype=torch.float64), atol=0.5)


def test_rollout_recovers_exponential_decay() -> None:
    data = decay_data(n=32)
    cfg = TrainConfig(steps=500, batch_size=32, width=32, depth=2, device="cpu")
    model = fit(data, MethodConfig("splineflow"), cfg, seed=0)
    x0 = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
    pred = model.predict(x0, 0.0, torch.tensor([1.0, 2.0, 4.0]))
    exact = x0[None] * torch.exp(-0.7 * torch.tensor([1.0, 2.0, 4.0]))[:, None, None]
    assert torch.allclose(pred, exact, rtol=0.1, atol=0.03)


def test_model_save_load_round_trip(tmp_path: Path) -> None:
    model = fit(decay_data(), MethodConfig("linear"), SMALL, seed=0)
    model.save(tmp_path / "m.pt")
    back = TrainedModel.load(tmp_path / "m.pt")
    assert torch.equal(weights(model), weights(back))
    assert back.method == model.method and back.scaler == model.scaler


def test_learning_rate_schedules() -> None:
    from splineflow_pyro.config import ConfigError
    from splineflow_pyro.training import learning_rate

    anneal = TrainConfig(steps=100, lr=0.01)
    rates = [learning_rate(anneal, s) for s in range(100)]
    assert rates[:80] == [0.01] * 80  # full rate for the first 80% of the steps
    assert all(a > b for a, b in zip(rates[80:], rates[81:], strict=False))  # then down
    assert rates[80] == 0.01 and 0 < rates[99] < 0.01 * 0.01
    constant = TrainConfig(steps=100, lr=0.01, lr_schedule="constant")
    assert {learning_rate(constant, s) for s in range(100)} == {0.01}
    with pytest.raises(ConfigError, match="lr_schedule 'cosine' is unknown"):
        TrainConfig(lr_schedule="cosine")
