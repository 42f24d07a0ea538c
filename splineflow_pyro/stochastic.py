"""Pyro models of the stochastic SplineFlow variants.

The learned velocity ``v(x, t)`` becomes the drift of an SDE

    dx = v(x, t) dt + g dW,

written as a Pyro program so that Pyro's tools apply unchanged:

- :func:`sde_model` is the Euler-Maruyama prior over trajectories; ``pyro.infer.Predictive``
  draws ensembles of roll-outs from it (:func:`sample_trajectories`).
- :func:`diffusion_model` is the likelihood of observed transitions between consecutive
  observations of tracked trajectories under the drift; :func:`fit_diffusion` infers the
  diffusion level ``g`` by stochastic variational inference (SVI), so the noise of the
  stochastic variant is calibrated on data instead of guessed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO
from pyro.infer.autoguide import AutoNormal
from torch import Tensor

Drift = Callable[[Tensor, Tensor], Tensor]


def sde_model(drift: Drift, x0: Tensor, grid: Tensor, diffusion: float | Tensor) -> Tensor:
    """Euler-Maruyama trajectories of ``dx = drift(t, x) dt + g dW`` as a Pyro model.

    Parameters
    ----------
    drift : callable
        ``drift(t, x)`` with ``t`` a 0-dim tensor and ``x (batch, d)``.
    x0 : Tensor, shape (batch, d)
        States at ``grid[0]``.
    grid : Tensor, shape (S + 1,)
        Increasing integration times.
    diffusion : float or Tensor
        ``g``, scalar.

    Returns
    -------
    Tensor, shape (S + 1, batch, d)
        The trajectory (also recorded as the deterministic site ``trajectory``).
    """
    x = x0
    path = [x0]
    g = torch.as_tensor(diffusion, dtype=x0.dtype)
    with pyro.plate("trajectories", x0.shape[0], dim=-1):
        for k in range(len(grid) - 1):
            dt = grid[k + 1] - grid[k]
            loc = x + drift(grid[k], x) * dt
            scale = (g * torch.sqrt(dt)).expand_as(loc)
            x = pyro.sample(f"x_{k + 1}", dist.Normal(loc, scale).to_event(1))
            path.append(x)
    return pyro.deterministic("trajectory", torch.stack(path))


def sample_trajectories(
    drift: Drift,
    x0: Tensor,
    grid: Tensor,
    diffusion: float,
    *,
    num_samples: int = 16,
    seed: int = 0,
) -> Tensor:
    """An ensemble of roll-outs drawn with ``pyro.infer.Predictive``.

    Returns a tensor of shape ``(num_samples, S + 1, batch, d)``.
    """
    pyro.set_rng_seed(seed)
    predictive = Predictive(
        sde_model, num_samples=num_samples, return_sites=["trajectory"], parallel=False
    )
    with torch.no_grad():
        paths = predictive(drift, x0, grid, diffusion)["trajectory"]
    return paths.reshape(num_samples, len(grid), *x0.shape)


def transitions(drift: Drift, times: Tensor, values: Tensor, mask: Tensor) -> tuple[Tensor, ...]:
    """Observed one-step transitions of tracked data and their Euler-predicted means.

    Uses consecutive time points where a feature is observed at both ends and the whole
    state is observed at the start. The drift is evaluated at those complete states only, so
    a drift defined on part of the space (e.g. a model trained with a ``log`` transform)
    never sees a stand-in value for a missing entry.

    Parameters
    ----------
    times : Tensor, shape (n,)
    values : Tensor, shape (batch, n, d)
    mask : Tensor, shape (batch, n, d), bool

    Returns
    -------
    (increment, predicted, dt) : each a flat tensor over the usable (sample, step, feature)
    """
    x = torch.where(mask, values, torch.zeros_like(values))
    complete = mask[:, :-1].all(dim=-1)  # (batch, n - 1): whole state observed at the start
    both = mask[:, 1:] & mask[:, :-1] & complete[..., None]
    dts = times[1:] - times[:-1]
    drift_at = torch.zeros_like(x[:, :-1])
    for i in range(len(times) - 1):
        rows = complete[:, i]
        if bool(rows.any()):
            drift_at[rows, i] = drift(times[i], x[rows, i]).to(drift_at.dtype)
    increment = (x[:, 1:] - x[:, :-1])[both]
    predicted = (drift_at * dts[None, :, None])[both]
    dt = dts[None, :, None].expand_as(both)[both]
    return increment, predicted, dt


def diffusion_model(increment: Tensor, predicted: Tensor, dt: Tensor) -> None:
    """Transitions ``increment ~ N(predicted, g^2 dt)``, prior ``g ~ LogNormal(-1, 1.5)``."""
    g = pyro.sample("g", dist.LogNormal(torch.tensor(-1.0), torch.tensor(1.5)))
    with pyro.plate("transitions", len(increment)):
        pyro.sample("obs", dist.Normal(predicted, g * torch.sqrt(dt)), obs=increment)


@dataclass(frozen=True)
class DiffusionFit:
    """Posterior summary of the diffusion level ``g`` (median and 90% interval)."""

    median: float
    low: float
    high: float
    losses: tuple[float, ...]


def fit_diffusion(
    drift: Drift,
    times: Tensor,
    values: Tensor,
    mask: Tensor,
    *,
    steps: int = 600,
    lr: float = 0.05,
    seed: int = 0,
) -> DiffusionFit:
    """Infer the diffusion level ``g`` of tracked data under ``drift`` by SVI.

    Shapes as in :func:`transitions`. The guide is a normal in the unconstrained (log)
    space of ``g`` (``AutoNormal``).
    """
    with torch.no_grad():
        increment, predicted, dt = (t.float() for t in transitions(drift, times, values, mask))
    if len(increment) == 0:
        raise ValueError("no consecutive observed pairs: the diffusion cannot be inferred")
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    guide = AutoNormal(diffusion_model)
    svi = SVI(diffusion_model, guide, pyro.optim.Adam({"lr": lr}), loss=Trace_ELBO())
    losses = [svi.step(increment, predicted, dt) / len(increment) for _ in range(steps)]
    quantiles = guide.quantiles([0.05, 0.5, 0.95])["g"]
    low, median, high = (float(q) for q in quantiles)
    if not math.isfinite(median):
        raise RuntimeError("diffusion inference diverged (non-finite posterior median)")
    return DiffusionFit(median, low, high, tuple(losses))
