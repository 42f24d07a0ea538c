"""Conditional probability paths: B-spline (SplineFlow) and linear (OT-CFM / MMFM baseline).

For a sample with observations ``(t_i, x_i)`` the conditional path is

    x_t = mu_t + sigma_t * eps,   mu_t = S(t),   eps ~ N(0, I)

with ``S`` the interpolating spline of the sample (per feature, through its observed entries
only), and the regression target of the velocity network is

    u_t = S'(t) + sigma'_t * eps

(SplineFlow, arXiv 2601.23072, Sec. 3). ``t`` is drawn uniformly in continuous time over the
sample's observed span. The score target of the stochastic (SF2M) variant uses the *same*
``eps``: ``lambda_t * s(x_t, t) + eps -> 0`` with ``lambda_t = sigma_t``, i.e. the score is
``-eps / sigma_t``.

Noise schedules: ``constant`` (sigma_t = sigma) and ``bridge``
(sigma_t = sigma * sqrt((t - t_i)(t_{i+1} - t)) / (t_{i+1} - t_i) between the consecutive
observations around ``t``). At an observation the bridge has sigma_t = 0 and its derivative
is unbounded; the product sigma'_t * eps is taken as 0 there (a measure-zero event), so
targets stay finite.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

from splineflow_pyro.bspline import BSpline, interpolate

SCHEDULES = ("constant", "bridge")


@dataclass(frozen=True)
class PathSample:
    """One draw from the conditional paths of a minibatch.

    Attributes
    ----------
    t : Tensor, shape (batch,)
        Times, uniform over each sample's observed span.
    x_t : Tensor, shape (batch, d)
        Points on the paths (0 where a feature of the sample was never observed).
    u_t : Tensor, shape (batch, d)
        Target velocities ``mu'_t + sigma'_t * eps``.
    weight : Tensor, shape (batch, d)
        1 where the entry counts in the loss, 0 where it does not: outside the feature's
        own observed span (held flat there, but its velocity is unknown), and for a sample
        with a never-observed feature (no defined state: the whole sample is left out).
    eps : Tensor or None, shape (batch, d)
        The noise used for ``x_t`` (None for deterministic paths).
    sigma_t : Tensor or None, shape (batch, d)
        Noise scale at ``t`` (None for deterministic paths).
    """

    t: Tensor
    x_t: Tensor
    u_t: Tensor
    weight: Tensor
    eps: Tensor | None = None
    sigma_t: Tensor | None = None


class ConditionalPath(ABC):
    """A family of conditional paths through every observation of a sample.

    Subclasses choose the interpolant (:meth:`fit`); the mean, velocity and noise hooks and
    the sampling are shared.

    Parameters
    ----------
    sigma : float
        Noise level (0 = deterministic paths).
    schedule : str
        ``constant`` or ``bridge``.
    """

    def __init__(self, *, sigma: float = 0.0, schedule: str = "constant") -> None:
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule {schedule!r} is unknown; use one of {SCHEDULES}")
        if not sigma >= 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        self.sigma = float(sigma)
        self.schedule = schedule

    @abstractmethod
    def fit(self, times: Tensor, values: Tensor, mask: Tensor | None = None) -> BSpline:
        """Interpolant through the observations (shapes as in :func:`bspline.interpolate`)."""

    def mean(self, spline: BSpline, t: Tensor) -> Tensor:
        """``mu_t``: ``t (batch,)`` -> ``(batch, d)``."""
        return spline.evaluate(t[:, None])[:, 0]

    def velocity(self, spline: BSpline, t: Tensor) -> Tensor:
        """``mu'_t``: ``t (batch,)`` -> ``(batch, d)``."""
        return spline.derivative(t[:, None])[:, 0]

    def mean_and_velocity(self, spline: BSpline, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu_t, mu'_t)``, each ``(batch, d)``, from one interval search."""
        value, slope = spline.evaluate_and_derivative(t[:, None])
        return value[:, 0], slope[:, 0]

    def std(self, spline: BSpline, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(sigma_t, sigma'_t)``, each ``(batch, d)``, for ``t (batch,)``."""
        shape = (spline.batch, spline.dim)
        if self.schedule == "constant":
            sigma_t = torch.full(shape, self.sigma, dtype=t.dtype, device=t.device)
            return sigma_t, torch.zeros_like(sigma_t)
        t_lo, t_hi = spline.bracket(t[:, None])
        t_lo, t_hi, tt = t_lo[:, 0], t_hi[:, 0], t[:, None].expand(shape)
        gap = t_hi - t_lo
        inside = (gap > 0) & (tt > t_lo) & (tt < t_hi)
        safe_gap = torch.where(inside, gap, torch.ones_like(gap))
        root = torch.sqrt(torch.where(inside, (tt - t_lo) * (t_hi - tt), torch.ones_like(gap)))
        sigma_t = torch.where(inside, self.sigma * root / safe_gap, torch.zeros_like(gap))
        dsigma = self.sigma * ((t_hi - tt) - (tt - t_lo)) / (2 * root * safe_gap)
        return sigma_t, torch.where(inside, dsigma, torch.zeros_like(gap))

    def sample_times(self, spline: BSpline, *, generator: torch.Generator | None) -> Tensor:
        """Times uniform in continuous time over each sample's observed span, ``(batch,)``.

        A sample with one observation time gets exactly that time (no division by the
        span's length); a sample with no observation gets NaN.
        """
        first, last = spline.span()
        lo = _nan_reduce(first, torch.amin)
        hi = _nan_reduce(last, torch.amax)
        u = torch.rand(lo.shape, generator=generator, dtype=lo.dtype, device="cpu").to(lo.device)
        return lo + u * (hi - lo)

    def sample(
        self,
        times: Tensor,
        values: Tensor,
        mask: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        t: Tensor | None = None,
        eps: Tensor | None = None,
    ) -> PathSample:
        """Fit the paths of a minibatch and draw ``(t, x_t, u_t)`` from them.

        Parameters
        ----------
        times : Tensor, shape (n,) or (batch, n)
        values : Tensor, shape (batch, n, d)
        mask : Tensor or None, shape (batch, n, d), bool
        generator : torch.Generator, optional
            Source of the times and the noise.
        t, eps : Tensor, optional
            Fixed times ``(batch,)`` and noise ``(batch, d)`` instead of random ones.
        """
        return self.sample_from(self.fit(times, values, mask), generator=generator, t=t, eps=eps)

    def sample_from(
        self,
        spline: BSpline,
        *,
        generator: torch.Generator | None = None,
        t: Tensor | None = None,
        eps: Tensor | None = None,
    ) -> PathSample:
        """Draw ``(t, x_t, u_t)`` from already fitted paths (see :meth:`sample`)."""
        if t is None:
            t = self.sample_times(spline, generator=generator)
        else:
            t = torch.as_tensor(t, dtype=spline.dtype, device=spline.device)
        mu, u = self.mean_and_velocity(spline, t)
        sigma_t = noise = None
        if self.sigma > 0:
            sigma_t, dsigma = self.std(spline, t)
            if eps is None:
                eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device="cpu")
            noise = torch.as_tensor(eps, dtype=mu.dtype).to(mu.device)
            mu = mu + sigma_t * noise
            u = u + dsigma * noise
        defined = torch.isfinite(mu).all(dim=-1) & torch.isfinite(t)
        # Outside a feature's own observed span the path holds flat, but its velocity there
        # is unknown, not 0: such entries feed the state, not the loss.
        first, last = spline.span()
        own_span = (t[:, None] >= first) & (t[:, None] <= last)
        weight = (defined[:, None] & own_span & torch.isfinite(u)).to(mu.dtype)
        x_t = torch.where(defined[:, None], mu, torch.zeros_like(mu))
        u_t = torch.where(weight > 0, u, torch.zeros_like(u))
        t = torch.where(torch.isfinite(t), t, torch.zeros_like(t))
        return PathSample(t=t, x_t=x_t, u_t=u_t, weight=weight, eps=noise, sigma_t=sigma_t)


class BSplinePath(ConditionalPath):
    """SplineFlow's conditional path: the not-a-knot B-spline of ``degree`` through all
    observations of a sample (degree lowered to n-1 for short series)."""

    def __init__(self, degree: int = 3, *, sigma: float = 0.0, schedule: str = "constant"):
        super().__init__(sigma=sigma, schedule=schedule)
        self.degree = degree

    def fit(self, times: Tensor, values: Tensor, mask: Tensor | None = None) -> BSpline:
        return interpolate(times, values, degree=self.degree, mask=mask)


class LinearPath(ConditionalPath):
    """Straight segments between consecutive observations (OT-CFM / MMFM-linear baseline)."""

    degree = 1

    def fit(self, times: Tensor, values: Tensor, mask: Tensor | None = None) -> BSpline:
        return interpolate(times, values, degree=1, mask=mask)


def make_path(
    kind: str, *, degree: int = 3, sigma: float = 0.0, schedule: str = "constant"
) -> ConditionalPath:
    """The path of a method: ``splineflow`` (B-spline of ``degree``) or ``linear``."""
    if kind == "splineflow":
        return BSplinePath(degree, sigma=sigma, schedule=schedule)
    if kind == "linear":
        return LinearPath(sigma=sigma, schedule=schedule)
    raise ValueError(f"path kind {kind!r} is unknown; use 'splineflow' or 'linear'")


def _nan_reduce(x: Tensor, reduce) -> Tensor:
    """Reduce ``(batch, d)`` over features ignoring NaN (all-NaN rows give NaN)."""
    finite = torch.isfinite(x)
    fill = torch.inf if reduce is torch.amin else -torch.inf
    out = reduce(torch.where(finite, x, torch.full_like(x, fill)), dim=-1)
    return torch.where(finite.any(dim=-1), out, torch.full_like(out, torch.nan))
