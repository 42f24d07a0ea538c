"""From a dataset store to training tensors, and the standardisation saved with a model.

Tracked trajectories become a dense ``(batch, n, d)`` array over the data set's distinct
times with a mask of observed entries; snapshots become one ``(n_k, d)`` array per time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import xarray as xr
from torch import Tensor


@dataclass(frozen=True)
class TrackedData:
    """Tracked trajectories on a shared time grid.

    Attributes
    ----------
    times : Tensor, shape (n,), float64
    values : Tensor, shape (batch, n, d), float64; NaN where not observed
    mask : Tensor, shape (batch, n, d), bool; True = observed
    sample_ids : numpy.ndarray, shape (batch,), int64
    features : tuple of str, length d
    """

    times: Tensor
    values: Tensor
    mask: Tensor
    sample_ids: np.ndarray
    features: tuple[str, ...]

    def subset(self, sample_ids: Sequence[int] | np.ndarray) -> TrackedData:
        """The trajectories with the given sample ids, in that order."""
        position = {int(s): i for i, s in enumerate(self.sample_ids)}
        try:
            rows = torch.as_tensor([position[int(s)] for s in sample_ids], dtype=torch.long)
        except KeyError as exc:
            raise ValueError(f"sample id {exc.args[0]} is not in the data set") from None
        return TrackedData(
            self.times,
            self.values[rows],
            self.mask[rows],
            np.asarray(self.sample_ids)[rows.numpy()],
            self.features,
        )


@dataclass(frozen=True)
class SnapshotData:
    """Unpaired snapshots: the cells measured at each time.

    Attributes
    ----------
    times : Tensor, shape (K,), float64, increasing
    marginals : tuple of Tensor, each (n_k, d), float64
    features : tuple of str, length d
    """

    times: Tensor
    marginals: tuple[Tensor, ...]
    features: tuple[str, ...]

    def without(self, t: float) -> SnapshotData:
        """The data with the marginal at time ``t`` left out (leave-one-time-point-out)."""
        k = self.index_of(t)
        keep = [i for i in range(len(self.marginals)) if i != k]
        return SnapshotData(self.times[keep], tuple(self.marginals[i] for i in keep), self.features)

    def index_of(self, t: float) -> int:
        """Position of time ``t`` (exact float match) among the snapshot times."""
        hits = torch.nonzero(self.times == float(t)).flatten()
        if hits.numel() == 0:
            raise ValueError(f"time {t} is not one of the data set's times {self.times.tolist()}")
        return int(hits[0])


def tracked_from_dataset(ds: xr.Dataset) -> TrackedData:
    """Dense tracked trajectories from a dataset store (``kind = trajectories``)."""
    times = np.array(ds["time"].values, dtype=np.float64)  # copies: store arrays are read-only
    obs_time = np.asarray(ds["obs_time"].values, dtype=np.float64)
    sample = np.asarray(ds["sample"].values, dtype=np.int64)
    x = np.asarray(ds["x"].values, dtype=np.float64)
    sample_ids, rows = np.unique(sample, return_inverse=True)
    cols = np.searchsorted(times, obs_time)
    values = np.full((len(sample_ids), len(times), x.shape[1]), np.nan)
    values[rows, cols] = x
    values_t = torch.from_numpy(values)
    return TrackedData(
        times=torch.from_numpy(times),
        values=values_t,
        mask=torch.isfinite(values_t),
        sample_ids=sample_ids,
        features=tuple(str(f) for f in ds["feature"].values),
    )


def snapshots_from_dataset(ds: xr.Dataset) -> SnapshotData:
    """Per-time marginals from a dataset store (``kind = snapshots``)."""
    times = np.array(ds["time"].values, dtype=np.float64)  # copies: store arrays are read-only
    counts = np.asarray(ds["count"].values, dtype=np.int64)
    x = np.array(ds["x"].values, dtype=np.float64)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    marginals = tuple(
        torch.from_numpy(x[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    )
    return SnapshotData(
        torch.from_numpy(times), marginals, tuple(str(f) for f in ds["feature"].values)
    )


class _Transform(NamedTuple):
    """A feature transform ``f``: forward and inverse maps, ``1 / f'(x)`` in terms of ``x``
    (for the chain rule), and the open lower bound of its domain (``None``: all reals)."""

    forward: Callable[[Tensor], Tensor]
    inverse: Callable[[Tensor], Tensor]
    slope_inverse: Callable[[Tensor], Tensor]
    lower: float | None


_TRANSFORMS = {
    "none": _Transform(lambda v: v, lambda v: v, torch.ones_like, None),
    "log": _Transform(torch.log, torch.exp, lambda x: x, 0.0),
    "log1p": _Transform(torch.log1p, torch.expm1, lambda x: 1 + x, -1.0),
}


@dataclass(frozen=True)
class Standardizer:
    """Per-feature transform plus affine maps that put states and times on a unit scale.

    ``x' = (f(x) - x_mean) / x_std`` per feature, with ``f`` the feature ``transform``
    (``none``: identity, ``log``, ``log1p``; ``x_mean``/``x_std`` are statistics of
    ``f(x)``), and ``t' = (t - t_origin) / t_scale``. The time map and the value map after
    ``f`` are affine, and B-splines commute with affine maps, so without a transform a flow
    learned in standardised coordinates is exactly the one of the data. With a transform the
    B-spline paths are fitted, and the flow learned, in transformed coordinates (e.g. in log
    space for positive populations spanning orders of magnitude): that is the point of it.
    Predictions are mapped back by ``f^-1`` (``exp``, ``expm1``), so they stay in the domain.
    """

    x_mean: tuple[float, ...]
    x_std: tuple[float, ...]
    t_origin: float
    t_scale: float
    transform: str = "none"  # a default, so that models saved before transforms load

    def __post_init__(self) -> None:
        _maps(self.transform)

    @classmethod
    def from_values(
        cls,
        times: Tensor,
        values: Tensor,
        transform: str = "none",
        features: Sequence[str] | None = None,
    ) -> Standardizer:
        """Statistics of ``f(values) (..., d)`` (NaN ignored) and the range of ``times``.

        ``features`` (length d) only names the features in errors: an observed value outside
        the transform's domain raises ``ValueError``.
        """
        _check_domain(values, transform, features)
        flat = _maps(transform).forward(values.reshape(-1, values.shape[-1]).double())
        finite = torch.isfinite(flat)
        count = finite.sum(0).clamp_min(1)
        filled = torch.where(finite, flat, torch.zeros_like(flat))
        mean = filled.sum(0) / count
        var = torch.where(finite, (flat - mean) ** 2, torch.zeros_like(flat)).sum(0) / count
        std = torch.sqrt(var)
        std = torch.where(std > 0, std, torch.ones_like(std))
        t = times[torch.isfinite(times)].double()
        t_min, t_max = float(t.min()), float(t.max())
        scale = t_max - t_min if t_max > t_min else 1.0
        return cls(tuple(mean.tolist()), tuple(std.tolist()), t_min, scale, transform)

    def _stats(self, like: Tensor) -> tuple[Tensor, Tensor]:
        mean = torch.as_tensor(self.x_mean, dtype=like.dtype, device=like.device)
        std = torch.as_tensor(self.x_std, dtype=like.dtype, device=like.device)
        return mean, std

    def x(self, values: Tensor) -> Tensor:
        """Standardise states ``(..., d)``: the transform, then the affine map.

        Raises ``ValueError`` for an observed value outside the transform's domain.
        """
        _check_domain(values, self.transform, None)
        mean, std = self._stats(values)
        return (_maps(self.transform).forward(values) - mean) / std

    def x_inverse(self, values: Tensor) -> Tensor:
        """Map standardised states back to the data's units (affine inverse, then f^-1)."""
        mean, std = self._stats(values)
        return _maps(self.transform).inverse(values * std + mean)

    def dx_dt(self, x: Tensor, dz_dt: Tensor) -> Tensor:
        """Chain rule: ``dx/dt`` in data units from the rate ``dz/dt`` of standardised states.

        ``x (..., d)`` are the states in the data's units, ``dz_dt`` the rate of their
        standardised coordinates per unit of the data's time. With ``z = (f(x) - mean) / std``,
        ``dx/dt = std * dz/dt / f'(x)``: ``x * std * dz/dt`` for ``log``,
        ``(1 + x) * std * dz/dt`` for ``log1p``, ``std * dz/dt`` for ``none``.
        """
        _, std = self._stats(dz_dt)
        return _maps(self.transform).slope_inverse(x) * (dz_dt * std)

    def t(self, times: Tensor) -> Tensor:
        """Standardise times."""
        return (times - self.t_origin) / self.t_scale

    def t_inverse(self, times: Tensor) -> Tensor:
        """Map standardised times back to the data's unit."""
        return times * self.t_scale + self.t_origin


def _maps(transform: str) -> _Transform:
    """The maps of ``transform`` (``ValueError`` if unknown)."""
    try:
        return _TRANSFORMS[transform]
    except KeyError:
        raise ValueError(
            f"transform {transform!r} is unknown; use one of {tuple(_TRANSFORMS)}"
        ) from None


def _check_domain(values: Tensor, transform: str, features: Sequence[str] | None) -> None:
    """Raise ``ValueError`` if an observed (not NaN) value lies outside the domain of
    ``transform``, naming the transform, the feature (name, else index) and the value."""
    lower = _maps(transform).lower
    if lower is None or values.numel() == 0:
        return
    flat = values.reshape(-1, values.shape[-1])
    bad = ~torch.isnan(flat) & (flat <= lower)  # NaN = missing; -inf is out of the domain
    if not bool(bad.any()):
        return
    per_feature = bad.sum(0)
    j = int(torch.nonzero(per_feature).flatten()[0])
    worst = float(flat[bad[:, j], j].min())
    name = repr(features[j]) if features is not None else str(j)
    count = int(per_feature[j])
    observed = flat[~torch.isnan(flat)]
    smallest = float(observed.min())
    fits = [t for t, m in _TRANSFORMS.items() if m.lower is None or smallest > m.lower]
    raise ValueError(
        f"transform {transform!r} needs values > {lower:g}: feature {name} has {worst!r}"
        f" ({count} such {'entry' if count == 1 else 'entries'}); the smallest value of any feature"
        f" is {smallest!r}, so use {' or '.join(repr(t) for t in fits)}"
    )
