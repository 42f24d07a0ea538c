"""Benchmark dynamical systems, irregular observation masks and the train/test split.

The systems of the SplineFlow paper's ODE benchmarks: exponential decay, harmonic
oscillator, damped harmonic oscillator, Lotka-Volterra and Lorenz. One data set = ONE draw
of the system parameters (from the seed) and ``n_trajectories`` trajectories that differ in
their initial state, observed on the grid ``np.arange(round(t_end / dt)) * dt`` (by default
200 times 0, 0.05, ..., 9.95).

All trajectories of a data set are integrated as one stacked system in a single
``scipy.integrate.solve_ivp`` call (RK45, rtol 1e-6, atol 1e-9 per trajectory). RK45 controls
the RMS of the scaled error over the whole stacked state, which alone would let single
trajectories be up to sqrt(K) times less accurate (K = batch * d); the tolerances passed to
scipy are therefore divided by sqrt(K), which makes the RMS test imply the per-component
(max-norm) test at rtol 1e-6 / atol 1e-9, as if every trajectory were solved on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.integrate import solve_ivp

__all__ = [
    "SYSTEMS",
    "Simulation",
    "SystemSpec",
    "irregular_mask",
    "simulate",
    "split_trajectories",
]

RTOL = 1e-6
ATOL = 1e-9

Params = dict[str, float]


@dataclass(frozen=True)
class SystemSpec:
    """One benchmark system.

    Attributes
    ----------
    name : str
    feature_names : tuple of str, length d
    param_ranges : dict name -> (low, high)
        Each parameter is drawn uniformly from its range, once per data set.
    x0_range : (low, high)
        Each coordinate of each initial state is drawn uniformly from this range.
    rhs : callable ``rhs(t, x, params) -> dx/dt``
        Vectorised right-hand side, ``x`` of shape (batch, d).
    """

    name: str
    feature_names: tuple[str, ...]
    param_ranges: dict[str, tuple[float, float]]
    x0_range: tuple[float, float]
    rhs: Callable[[float, np.ndarray, Params], np.ndarray]

    @property
    def dim(self) -> int:
        return len(self.feature_names)


def _decay(t: float, x: np.ndarray, p: Params) -> np.ndarray:
    return -p["lam"] * x


def _harmonic(t: float, x: np.ndarray, p: Params) -> np.ndarray:
    return np.stack([x[:, 1], -(p["omega"] ** 2) * x[:, 0]], axis=1)


def _damped_harmonic(t: float, x: np.ndarray, p: Params) -> np.ndarray:
    acc = -2.0 * p["gamma"] * x[:, 1] - p["omega"] ** 2 * x[:, 0]
    return np.stack([x[:, 1], acc], axis=1)


def _lotka_volterra(t: float, x: np.ndarray, p: Params) -> np.ndarray:
    prey, pred = x[:, 0], x[:, 1]
    return np.stack(
        [
            p["alpha"] * prey - p["beta"] * prey * pred,
            p["delta"] * prey * pred - p["gamma"] * pred,
        ],
        axis=1,
    )


def _lorenz(t: float, x: np.ndarray, p: Params) -> np.ndarray:
    a, b, c = x[:, 0], x[:, 1], x[:, 2]
    return np.stack([p["sigma"] * (b - a), a * (p["rho"] - c) - b, a * b - p["beta"] * c], axis=1)


SYSTEMS: dict[str, SystemSpec] = {
    spec.name: spec
    for spec in (
        # x' = -lam x
        SystemSpec("decay", ("x",), {"lam": (0.2, 1.5)}, (0.5, 2.0), _decay),
        # x'' = -omega^2 x as (x, v)
        SystemSpec("harmonic", ("x", "v"), {"omega": (0.5, 2.5)}, (-1.0, 1.0), _harmonic),
        # x'' = -2 gamma x' - omega^2 x (underdamped: gamma < omega on these ranges)
        SystemSpec(
            "damped_harmonic",
            ("x", "v"),
            {"omega": (0.8, 2.0), "gamma": (0.1, 0.7)},
            (-1.0, 1.0),
            _damped_harmonic,
        ),
        # x' = alpha x - beta x y, y' = delta x y - gamma y
        SystemSpec(
            "lotka_volterra",
            ("prey", "predator"),
            {"alpha": (0.5, 1.5), "beta": (0.02, 0.08), "delta": (0.02, 0.08), "gamma": (0.5, 1.5)},
            (0.5, 2.5),
            _lotka_volterra,
        ),
        SystemSpec(
            "lorenz",
            ("x", "y", "z"),
            {"sigma": (8.0, 14.0), "rho": (20.0, 35.0), "beta": (2.0, 3.5)},
            (-15.0, 15.0),
            _lorenz,
        ),
    )
}


@dataclass(frozen=True, eq=False)
class Simulation:
    """A simulated data set.

    Attributes
    ----------
    name : str
        System name (a key of :data:`SYSTEMS`).
    times : np.ndarray, shape (n,), float64
        Observation grid shared by all trajectories.
    states : np.ndarray, shape (batch, n, d), float64
        ``states[b, i]`` is trajectory ``b`` at ``times[i]``.
    params : dict[str, float]
        The one parameter draw of this data set.
    feature_names : tuple of str, length d
    """

    name: str
    times: np.ndarray
    states: np.ndarray
    params: dict[str, float]
    feature_names: tuple[str, ...]


def _seed(seed: int, name: str = "seed") -> int:
    """An integer seed; integral floats (e.g. parsed from a URL) are accepted."""
    try:
        value = int(seed)
    except (TypeError, ValueError) as e:
        raise ValueError(f"`{name}` must be a non-negative integer, got {seed!r}") from e
    if isinstance(seed, bool) or value != seed or value < 0:
        raise ValueError(f"`{name}` must be a non-negative integer, got {seed!r}")
    return value


def _spec(name: str) -> SystemSpec:
    try:
        return SYSTEMS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown system {name!r}; known systems: {', '.join(sorted(SYSTEMS))}"
        ) from None


def simulate(
    name: str,
    *,
    n_trajectories: int = 1000,
    seed: int = 0,
    t_end: float = 10.0,
    dt: float = 0.05,
) -> Simulation:
    """Simulate one benchmark data set.

    Parameters
    ----------
    name : str
        One of ``decay``, ``harmonic``, ``damped_harmonic``, ``lotka_volterra``, ``lorenz``.
    n_trajectories : int
        Number of trajectories (batch), >= 1.
    seed : int
        Seeds the parameter draw and the initial states (``numpy.random.default_rng``).
    t_end, dt : float
        Grid ``np.arange(round(t_end / dt)) * dt``: t_end itself is excluded.

    Returns
    -------
    Simulation
        ``states`` of shape (n_trajectories, n, d).
    """
    spec = _spec(name)
    if isinstance(n_trajectories, bool) or int(n_trajectories) != n_trajectories:
        raise ValueError(f"`n_trajectories` must be an integer, got {n_trajectories!r}")
    if n_trajectories < 1:
        raise ValueError(f"`n_trajectories` must be >= 1, got {n_trajectories}")
    if not (dt > 0 and np.isfinite(dt) and t_end > 0 and np.isfinite(t_end)):
        raise ValueError(f"`t_end` and `dt` must be positive and finite, got {t_end}, {dt}")
    n_times = int(round(t_end / dt))
    if n_times < 1:
        raise ValueError(f"`t_end` = {t_end} is shorter than one step `dt` = {dt}")
    times = np.arange(n_times) * dt

    rng = np.random.default_rng(_seed(seed))
    params = {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in spec.param_ranges.items()}
    batch, d = int(n_trajectories), spec.dim
    x0 = rng.uniform(*spec.x0_range, size=(batch, d))

    if n_times == 1:
        states = x0[:, None, :].copy()
    else:

        def fun(t: float, y: np.ndarray) -> np.ndarray:
            return spec.rhs(t, y.reshape(batch, d), params).reshape(-1)

        sol = solve_ivp(
            fun,
            (float(times[0]), float(times[-1])),
            x0.reshape(-1),
            method="RK45",
            t_eval=times,
            rtol=RTOL / np.sqrt(batch * d),
            atol=ATOL / np.sqrt(batch * d),
        )
        if not sol.success:
            raise RuntimeError(f"simulating {name!r} (seed {seed}) failed: {sol.message}")
        states = sol.y.reshape(batch, d, n_times).transpose(0, 2, 1).copy()
    return Simulation(
        name=spec.name,
        times=times.astype(np.float64),
        states=states.astype(np.float64),
        params=params,
        feature_names=spec.feature_names,
    )


def irregular_mask(shape: tuple[int, int, int], p: float, *, seed: int) -> np.ndarray:
    """Random observation mask: each (trajectory, time, feature) entry missing with prob. p.

    Parameters
    ----------
    shape : (batch, n, d)
    p : float in [0, 1)
        Probability that an entry is missing, independently per entry.
    seed : int

    Returns
    -------
    np.ndarray of bool, shape (batch, n, d)
        True = observed. Time index 0 is always observed (all features), so every trajectory
        has a known initial state.
    """
    if len(shape) != 3 or any(int(s) != s or s < 1 for s in shape):
        raise ValueError(f"`shape` must be three positive integers (batch, n, d), got {shape}")
    if not (0.0 <= p < 1.0):
        raise ValueError(f"`p` must be a missing probability in [0, 1), got {p}")
    rng = np.random.default_rng(_seed(seed))
    mask = rng.random(tuple(int(s) for s in shape)) >= p
    mask[:, 0, :] = True
    return mask


def split_trajectories(
    n: int, *, test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split trajectory ids ``0..n-1`` into train and test sets (by trajectory).

    ``round(n * test_fraction)`` ids (at least 1 and at most n - 1) go to test, chosen by a
    seeded permutation. Returns ``(train_ids, test_ids)``, each sorted int64.
    """
    if isinstance(n, bool) or int(n) != n or n < 2:
        raise ValueError(f"`n` must be an integer >= 2 to split train/test, got {n!r}")
    if not (0.0 < test_fraction < 1.0):
        raise ValueError(f"`test_fraction` must be in (0, 1), got {test_fraction}")
    n = int(n)
    n_test = min(max(int(round(n * test_fraction)), 1), n - 1)
    perm = np.random.default_rng(_seed(seed)).permutation(n)
    return np.sort(perm[n_test:]).astype(np.int64), np.sort(perm[:n_test]).astype(np.int64)
