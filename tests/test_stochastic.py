"""Pyro models of the stochastic variants, against an Ornstein-Uhlenbeck process with known
parameters (closed-form mean and variance)."""

from __future__ import annotations

import math

import torch

from splineflow_pyro.stochastic import fit_diffusion, sample_trajectories

THETA, G = 1.0, 0.3


def ou_drift(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return -THETA * x


def simulate_ou(n: int, steps: int, dt: float, seed: int) -> torch.Tensor:
    """Exact OU transitions: (n, steps + 1, 1)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.ones(n, 1, dtype=torch.float64)
    decay = math.exp(-THETA * dt)
    sd = G * math.sqrt((1 - decay**2) / (2 * THETA))
    path = [x]
    for _ in range(steps):
        x = x * decay + sd * torch.randn(x.shape, generator=gen, dtype=torch.float64)
        path.append(x)
    return torch.stack(path, dim=1)


def test_predictive_ensemble_matches_ou_moments() -> None:
    grid = torch.linspace(0, 1, 101, dtype=torch.float64)
    x0 = torch.ones(400, 1, dtype=torch.float64)
    paths = sample_trajectories(ou_drift, x0, grid, G, num_samples=5, seed=0)
    assert paths.shape == (5, 101, 400, 1)
    end = paths[:, -1].flatten()
    mean = math.exp(-THETA)
    var = G**2 / (2 * THETA) * (1 - math.exp(-2 * THETA))
    assert abs(float(end.mean()) - mean) < 0.02
    assert abs(float(end.var()) / var - 1) < 0.1


def test_svi_recovers_the_diffusion_level() -> None:
    dt = 0.02
    values = simulate_ou(300, 40, dt, seed=1)
    times = torch.arange(41, dtype=torch.float64) * dt
    mask = torch.ones_like(values, dtype=torch.bool)
    mask[::3, 5::7] = False  # irregular sampling: some entries missing
    fit = fit_diffusion(ou_drift, times, values, mask, steps=400, seed=0)
    assert abs(fit.median / G - 1) < 0.05
    assert fit.low < G < fit.high
    assert fit.losses[-1] < fit.losses[0]
