"""Honest evaluation of trained flows, always beside trivial baselines.

Snapshots (leave-one-time-point-out): the model trained without time ``t_j`` pushes the cells
of ``t_{j-1}`` to ``t_j``; the prediction is compared with the held-out cells by W1, W2, MMD
and energy distance. Beside it, two baselines on the same held-out time: the previous
marginal unchanged (``prev_*``) and the OT displacement (McCann) interpolation between the
two neighbouring marginals (``mccann_*``). A model that does not beat McCann is not yet
useful, and the table shows it.

Tracked trajectories: held-out trajectories are rolled out from their first observation;
MSE at observed entries, raw and z-scored per feature by the training data's standard
deviation in data units (whatever the model's feature transform). Baselines: every
state stays at its first observation (``constant_*``) and the mean training trajectory
(``mean_*``). For a stochastic method (``sigma > 0``) the diffusion level ``g`` of
``dx = v dt + g dW`` is calibrated on the training trajectories by SVI (``diffusion_g*``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import ot
import torch
import xarray as xr
from torch import Tensor

from splineflow_pyro import metrics
from splineflow_pyro.config import EvalConfig
from splineflow_pyro.data import SnapshotData, Standardizer, TrackedData
from splineflow_pyro.stochastic import fit_diffusion
from splineflow_pyro.training import TrainedModel


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one run and its predictions in the store's long form.

    ``predictions`` has ``x(obs, feature)``, ``obs_time(obs)``, ``sample(obs)``; ``reference``
    holds the real observations it is compared with, in the same form (for plots).
    """

    metrics: dict[str, float]
    predictions: xr.Dataset
    reference: xr.Dataset


def distribution_metrics(pred: Tensor, real: Tensor, prefix: str = "") -> dict[str, float]:
    """W1, W2, MMD (RBF, several bandwidths) and energy distance between two point clouds."""
    return {
        f"{prefix}w1": metrics.wasserstein(pred, real, p=1),
        f"{prefix}w2": metrics.wasserstein(pred, real, p=2),
        f"{prefix}mmd": metrics.mmd_rbf(pred, real),
        f"{prefix}energy": metrics.energy_distance(pred, real),
    }


def evaluate_snapshots(
    model: TrainedModel,
    data: SnapshotData,
    heldout: float,
    config: EvalConfig,
    *,
    seed: int = 0,
) -> Evaluation:
    """Leave-one-time-point-out evaluation at the intermediate time ``heldout``."""
    j = data.index_of(heldout)
    if not 0 < j < len(data.marginals) - 1:
        raise ValueError(
            f"held-out time {heldout} must be an intermediate time of {data.times.tolist()}"
        )
    generator = torch.Generator().manual_seed(seed)
    t_prev, t_next = float(data.times[j - 1]), float(data.times[j + 1])
    prev = _cap(data.marginals[j - 1], config.max_cells, generator)
    real = _cap(data.marginals[j], config.max_cells, generator)
    nxt = _cap(data.marginals[j + 1], config.max_cells, generator)
    pred = model.predict(
        prev,
        t_prev,
        torch.tensor([float(heldout)]),
        method=config.solver,
        step_size=config.step_size,
    )[0]
    s = (float(heldout) - t_prev) / (t_next - t_prev)
    mccann = mccann_interpolation(prev, nxt, s, n=len(prev), generator=generator)
    values = distribution_metrics(pred, real)
    values |= distribution_metrics(prev, real, prefix="prev_")
    values |= distribution_metrics(mccann, real, prefix="mccann_")
    return Evaluation(
        metrics=values,
        predictions=_long_form(pred, np.full(len(pred), float(heldout)), -1, data.features),
        reference=_long_form(real, np.full(len(real), float(heldout)), -1, data.features),
    )


def mccann_interpolation(
    x0: Tensor, x1: Tensor, s: float, *, n: int, generator: torch.Generator
) -> Tensor:
    """``n`` points of the displacement interpolation ``(1-s) x + s y``, (x, y) ~ exact OT plan.

    Parameters
    ----------
    x0 : Tensor, shape (n0, d)
    x1 : Tensor, shape (n1, d)
    s : float
        Fraction of the way from ``x0`` to ``x1``, in [0, 1].
    """
    a = np.full(len(x0), 1.0 / len(x0))
    b = np.full(len(x1), 1.0 / len(x1))
    cost = ot.dist(x0.double().numpy(), x1.double().numpy())
    plan = torch.from_numpy(ot.emd(a, b, cost, numItermax=10_000_000))
    flat = torch.multinomial(plan.flatten(), n, replacement=True, generator=generator)
    i, k = flat // plan.shape[1], flat % plan.shape[1]
    return (1 - s) * x0[i].double() + s * x1[k].double()


def evaluate_tracked(
    model: TrainedModel, test: TrackedData, train: TrackedData, config: EvalConfig
) -> Evaluation:
    """Roll out held-out trajectories from their first observation and score them."""
    first_idx = _first_observed_index(test.mask)
    times = test.times
    truth = test.values
    preds = torch.full_like(truth, torch.nan)
    train_mean = _train_mean(train)
    for k in torch.unique(first_idx).tolist():
        rows = torch.nonzero(first_idx == k).flatten()
        x0 = truth[rows, k]
        x0 = torch.where(torch.isfinite(x0), x0, train_mean[k].expand_as(x0))
        traj = model.predict(
            x0, float(times[k]), times, method=config.solver, step_size=config.step_size
        )
        preds[rows] = traj.permute(1, 0, 2)
    # z-score with the training data's std in data units: the model's scaler holds the std of
    # the transformed values (e.g. of log x), which would not be comparable across models
    std = torch.as_tensor(
        Standardizer.from_values(train.times, train.values).x_std, dtype=torch.float64
    )
    constant = truth[torch.arange(len(truth)), first_idx][:, None, :].expand_as(truth)
    mean_traj = train_mean[None].expand_as(truth)
    values: dict[str, float] = {}
    for prefix, guess in (("", preds), ("constant_", constant), ("mean_", mean_traj)):
        values[f"{prefix}mse"] = metrics.trajectory_mse(guess, truth, test.mask)
        values[f"{prefix}mse_z"] = metrics.trajectory_mse(guess / std, truth / std, test.mask)
    if model.method.sigma > 0:
        values |= diffusion_metrics(model, train)
    rows, cols = torch.nonzero(test.mask.any(dim=-1), as_tuple=True)
    sample = np.asarray(test.sample_ids)[rows.numpy()]
    obs_time = times[cols].numpy()
    return Evaluation(
        metrics=values,
        predictions=_long_form(preds[rows, cols], obs_time, sample, test.features),
        reference=_long_form(
            torch.where(test.mask, truth, torch.nan)[rows, cols], obs_time, sample, test.features
        ),
    )


def diffusion_metrics(model: TrainedModel, train: TrackedData) -> dict[str, float]:
    """Diffusion level ``g`` of the stochastic variant, calibrated on the training
    trajectories by SVI under the learned drift (posterior median and 90% interval)."""
    fit = fit_diffusion(model.velocity, train.times, train.values, train.mask)
    return {"diffusion_g": fit.median, "diffusion_g_low": fit.low, "diffusion_g_high": fit.high}


def _first_observed_index(mask: Tensor) -> Tensor:
    """Index of each trajectory's first time with any observed feature, ``(batch,)``."""
    any_obs = mask.any(dim=-1)
    n = any_obs.shape[1]
    position = torch.where(any_obs, torch.arange(n), torch.full_like(any_obs, n, dtype=torch.long))
    return position.amin(dim=1).clamp_max(n - 1)


def _train_mean(train: TrackedData) -> Tensor:
    """Mean training trajectory ``(n, d)`` (NaN-aware; overall mean where a time is empty)."""
    v = torch.where(train.mask, train.values, torch.nan)
    per_time = torch.nanmean(v, dim=0)
    overall = torch.nanmean(v.reshape(-1, v.shape[-1]), dim=0)
    return torch.where(torch.isfinite(per_time), per_time, overall.expand_as(per_time))


def _cap(x: Tensor, max_cells: int, generator: torch.Generator) -> Tensor:
    """At most ``max_cells`` rows of ``x``, drawn without replacement (exact OT is O(n^3))."""
    x = x.double()
    if len(x) <= max_cells:
        return x
    return x[torch.randperm(len(x), generator=generator)[:max_cells]]


def _long_form(
    x: Tensor, obs_time: np.ndarray, sample: np.ndarray | int, features: tuple[str, ...]
) -> xr.Dataset:
    n = len(x)
    sample_arr = np.broadcast_to(np.asarray(sample, dtype=np.int64), (n,)).copy()
    order = np.lexsort((sample_arr, obs_time))
    return xr.Dataset(
        {
            "x": (("obs", "feature"), x.double().numpy()[order].astype(np.float32)),
            "obs_time": ("obs", np.asarray(obs_time, dtype=np.float64)[order]),
            "sample": ("obs", sample_arr[order]),
        },
        coords={"feature": list(features)},
    )
