"""Evaluation metrics: trajectory MSE and distances between point clouds.

Every function takes torch tensors or numpy arrays, computes in float64 numpy and returns a
Python float. Point clouds have shape (n, d) (a 1-D array is read as n points in 1-D);
both clouds must have the same ``d`` and at least one row, and must be finite.

- :func:`trajectory_mse`: mean squared error over observed, finite target entries.
- :func:`wasserstein`: exact W_p through ``ot.emd2`` (POT), Euclidean ground cost.
- :func:`sliced_wasserstein2`: sliced W2 over seeded random directions.
- :func:`mmd_rbf`: biased (V-statistic) MMD^2 with Gaussian kernels, averaged over bandwidths.
- :func:`energy_distance`: 2 E|X-Y| - E|X-X'| - E|Y-Y'| (V-statistics).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import ot
import torch
from scipy.spatial.distance import cdist

__all__ = [
    "energy_distance",
    "mmd_rbf",
    "sliced_wasserstein2",
    "trajectory_mse",
    "wasserstein",
]

ArrayLike = np.ndarray | torch.Tensor | Sequence[float]


def _to_numpy(a: ArrayLike, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().to("cpu")
        if a.dtype == torch.bool:
            return a.numpy()
        return a.to(torch.float64).numpy()
    try:
        return np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"`{name}` must be a numeric array or tensor: {e}") from e


def _cloud(a: ArrayLike, name: str) -> np.ndarray:
    """A finite (n, d) float64 cloud with n >= 1."""
    x = _to_numpy(a, name)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"`{name}` must have shape (n, d) or (n,), got shape {x.shape}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"`{name}` must have at least one row and one feature, got {x.shape}")
    if not np.isfinite(x).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
        raise ValueError(
            f"`{name}` contains non-finite values (first at index {bad}); drop or impute them"
        )
    return x


def _pair(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    xa, ya = _cloud(x, "x"), _cloud(y, "y")
    if xa.shape[1] != ya.shape[1]:
        raise ValueError(
            f"`x` and `y` must have the same feature dimension, got x {xa.shape} and y {ya.shape}"
        )
    return xa, ya


def _weights(w: ArrayLike | None, n: int, name: str) -> np.ndarray:
    if w is None:
        return np.full(n, 1.0 / n)
    wa = _to_numpy(w, name).reshape(-1)
    if wa.shape != (n,):
        raise ValueError(f"`{name}` must have shape ({n},) to match the cloud, got {wa.shape}")
    if not np.isfinite(wa).all() or (wa < 0).any() or wa.sum() <= 0:
        raise ValueError(f"`{name}` must be finite, non-negative and not all zero")
    return wa / wa.sum()


def trajectory_mse(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None) -> float:
    """Mean squared error over the observed entries.

    Parameters
    ----------
    pred : array, any shape, e.g. (batch, n, d)
        Predictions; must be finite wherever the entry is observed.
    target : array, same shape as ``pred``
        Ground truth; NaN entries count as not observed.
    mask : bool array broadcastable to ``target``'s shape, optional
        True = observed. Entries with ``mask`` False or a NaN target are ignored.

    Returns
    -------
    float
        ``mean((pred - target)^2)`` over observed finite entries.
    """
    p, t = _to_numpy(pred, "pred"), _to_numpy(target, "target")
    if p.shape != t.shape:
        raise ValueError(
            f"`pred` and `target` must have the same shape, got {p.shape} and {t.shape}"
        )
    observed = np.isfinite(t)
    if mask is not None:
        m = _to_numpy(mask, "mask")
        try:
            m = np.broadcast_to(m.astype(bool), t.shape)
        except ValueError as e:
            raise ValueError(
                f"`mask` of shape {m.shape} does not broadcast to the target's shape {t.shape}"
            ) from e
        observed = observed & m
    if not observed.any():
        raise ValueError("no observed finite `target` entries: the MSE is undefined")
    bad = observed & ~np.isfinite(p)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"`pred` is non-finite at an observed entry (first at index {idx}); "
            "the prediction failed upstream"
        )
    return float(np.mean((p[observed] - t[observed]) ** 2))


def wasserstein(
    x: ArrayLike,
    y: ArrayLike,
    p: int = 2,
    *,
    x_weights: ArrayLike | None = None,
    y_weights: ArrayLike | None = None,
) -> float:
    """Exact Wasserstein-p distance between two weighted point clouds.

    ``W_p = (min_pi sum_ij pi_ij |x_i - y_j|^p)^(1/p)`` over couplings ``pi`` of the two
    weight vectors, solved exactly by ``ot.emd2`` (network simplex).

    Parameters
    ----------
    x : array, shape (n, d) or (n,)
    y : array, shape (m, d) or (m,)
        Sizes may differ.
    p : int
        Order (1 or 2 in practice; any p >= 1 works).
    x_weights, y_weights : array, shape (n,) resp. (m,), optional
        Non-negative masses, normalised to sum 1; uniform if omitted.

    Returns
    -------
    float
        W_p(x, y).
    """
    if not p >= 1:
        raise ValueError(f"`p` must be >= 1, got {p}")
    xa, ya = _pair(x, y)
    a = _weights(x_weights, xa.shape[0], "x_weights")
    b = _weights(y_weights, ya.shape[0], "y_weights")
    cost = cdist(xa, ya, metric="euclidean") ** p
    value = float(ot.emd2(a, b, cost, numItermax=max(100_000, 50 * cost.size)))
    return max(value, 0.0) ** (1.0 / p)


def _w2_squared_1d(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Squared W2 between uniform 1-D samples, per column: u (n, k), v (m, k) -> (k,).

    Uses the quantile functions: W2^2 = int_0^1 (F_u^-1(q) - F_v^-1(q))^2 dq, exact for
    empirical measures (piecewise constant quantiles, breakpoints i/n and j/m).
    """
    n, m = u.shape[0], v.shape[0]
    us, vs = np.sort(u, axis=0), np.sort(v, axis=0)
    if n == m:
        return np.mean((us - vs) ** 2, axis=0)
    q = np.union1d(np.arange(1, n + 1) / n, np.arange(1, m + 1) / m)
    widths = np.diff(np.concatenate([[0.0], q]))
    mid = q - widths / 2
    iu = np.minimum((mid * n).astype(int), n - 1)
    iv = np.minimum((mid * m).astype(int), m - 1)
    return widths @ (us[iu] - vs[iv]) ** 2


def sliced_wasserstein2(
    x: ArrayLike, y: ArrayLike, *, n_projections: int = 256, seed: int = 0
) -> float:
    """Sliced Wasserstein-2 distance with uniform weights.

    ``SW2 = (mean_k W2^2(theta_k . x, theta_k . y))^(1/2)`` over ``n_projections`` directions
    ``theta_k`` drawn uniformly on the unit sphere from ``numpy.random.default_rng(seed)``.
    Each 1-D W2 is exact (quantile functions; sizes may differ). In 1-D every direction is
    +-1, so SW2 equals the exact W2. For a pure shift ``y = x + s``, SW2^2 -> |s|^2 / d.

    Parameters
    ----------
    x : array, shape (n, d) or (n,)
    y : array, shape (m, d) or (m,)
    n_projections : int
        Number of random directions.
    seed : int
        Seed of the directions (deterministic result).
    """
    if n_projections < 1:
        raise ValueError(f"`n_projections` must be >= 1, got {n_projections}")
    xa, ya = _pair(x, y)
    d = xa.shape[1]
    theta = np.random.default_rng(seed).normal(size=(d, n_projections))
    theta /= np.linalg.norm(theta, axis=0, keepdims=True)
    return float(np.sqrt(np.mean(_w2_squared_1d(xa @ theta, ya @ theta))))


def mmd_rbf(x: ArrayLike, y: ArrayLike, bandwidths: Sequence[float] = (0.1, 1.0, 10.0)) -> float:
    """Squared maximum mean discrepancy with Gaussian kernels (biased V-statistic).

    ``MMD^2 = mean_h [ mean k_h(x, x') + mean k_h(y, y') - 2 mean k_h(x, y) ]`` with
    ``k_h(a, b) = exp(-|a - b|^2 / (2 h^2))``: the V-statistic (diagonal terms included, so it
    is >= 0 and exactly 0 for identical sets), **averaged** over the bandwidths ``h``. Each
    term lies in [0, 2], and so does the average.

    Parameters
    ----------
    x : array, shape (n, d) or (n,)
    y : array, shape (m, d) or (m,)
    bandwidths : sequence of float
        Kernel widths h > 0.
    """
    hs = np.asarray(bandwidths, dtype=np.float64).reshape(-1)
    if hs.size == 0 or not np.isfinite(hs).all() or (hs <= 0).any():
        raise ValueError(f"`bandwidths` must be positive finite floats, got {list(bandwidths)}")
    xa, ya = _pair(x, y)
    dxx = cdist(xa, xa, "sqeuclidean")
    dyy = cdist(ya, ya, "sqeuclidean")
    dxy = cdist(xa, ya, "sqeuclidean")
    total = 0.0
    for h in hs:
        c = -1.0 / (2.0 * h * h)
        total += np.exp(c * dxx).mean() + np.exp(c * dyy).mean() - 2.0 * np.exp(c * dxy).mean()
    return max(float(total / hs.size), 0.0)


def energy_distance(x: ArrayLike, y: ArrayLike) -> float:
    """Energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` (V-statistics, Euclidean).

    This is the *square* of ``scipy.stats.energy_distance`` in 1-D. Non-negative, zero for
    identical sets.

    Parameters
    ----------
    x : array, shape (n, d) or (n,)
    y : array, shape (m, d) or (m,)
    """
    xa, ya = _pair(x, y)
    value = 2.0 * cdist(xa, ya).mean() - cdist(xa, xa).mean() - cdist(ya, ya).mean()
    return max(float(value), 0.0)
