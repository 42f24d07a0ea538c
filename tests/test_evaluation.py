"""Evaluation of tracked runs, including the Pyro-calibrated diffusion of stochastic methods."""

from __future__ import annotations

import math

import numpy as np
import torch

from splineflow_pyro.config import EvalConfig, MethodConfig, TrainConfig
from splineflow_pyro.data import TrackedData
from splineflow_pyro.evaluation import evaluate_tracked
from splineflow_pyro.training import fit


def decay(n: int, seed: int) -> TrackedData:
    gen = torch.Generator().manual_seed(seed)
    times = torch.linspace(0, 3, 16, dtype=torch.float64)
    x0 = 0.5 + torch.rand(n, 1, generator=gen, dtype=torch.float64)
    values = x0[:, None, :] * torch.exp(-0.8 * times)[None, :, None]
    return TrackedData(
        times, values, torch.ones_like(values, dtype=torch.bool), np.arange(n), ("x",)
    )


def test_tracked_metrics_and_baselines_with_diffusion_for_stochastic_methods() -> None:
    train, test = decay(24, 0), decay(6, 1)
    cfg = TrainConfig(steps=200, batch_size=24, width=16, depth=2, device="cpu")
    method = MethodConfig("splineflow", sigma=0.05, schedule="bridge")
    model = fit(train, method, cfg, seed=0)
    result = evaluate_tracked(model, test, train, EvalConfig(step_size=0.05))
    m = result.metrics
    assert all(math.isfinite(v) for v in m.values())
    assert m["mse_z"] < m["constant_mse_z"]  # better than standing still
    # deterministic data: the calibrated diffusion is small next to the state's scale (~0.3)
    assert 0 < m["diffusion_g_low"] <= m["diffusion_g"] <= m["diffusion_g_high"] < 0.3
    assert result.predictions.sizes["obs"] == 6 * 16
