"""FC-02 (training half): series with fewer observations than degree + 1, one observation
and a zero-length span train without error, and the loss stays finite."""

from __future__ import annotations

import math

import torch

from splineflow_pyro.config import MethodConfig, TrainConfig
from splineflow_pyro.data import TrackedData
from splineflow_pyro.paths import BSplinePath
from splineflow_pyro.training import fit


def fc02_data() -> TrackedData:
    times = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    values = torch.full((3, 4, 1), torch.nan, dtype=torch.float64)
    values[0, [0, 1, 3], 0] = torch.tensor([0.0, 1.0, 9.0], dtype=torch.float64)  # A
    values[1, [0, 2], 0] = torch.tensor([1.0, 5.0], dtype=torch.float64)  # B
    values[2, 1, 0] = 7.0  # C: one observation at t = 1
    return TrackedData(times, values, torch.isfinite(values), torch.arange(3).numpy(), ("x",))


def test_fc02_training_time_of_single_observation_is_its_time() -> None:
    data = fc02_data()
    path = BSplinePath(3)
    spline = path.fit(data.times, data.values, data.mask)
    for seed in range(5):
        t = path.sample_times(spline, generator=torch.Generator().manual_seed(seed))
        assert float(t[2]) == 1.0
        assert 0.0 <= float(t[0]) <= 3.0 and 0.0 <= float(t[1]) <= 2.0


def test_fc02_twenty_training_steps_have_finite_loss() -> None:
    cfg = TrainConfig(steps=20, batch_size=3, width=16, depth=2, device="cpu")
    model = fit(fc02_data(), MethodConfig("splineflow", degree=3), cfg, seed=0)
    assert len(model.losses) == 20
    assert all(math.isfinite(v) for v in model.losses)
