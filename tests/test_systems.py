"""Tests of splineflow_pyro.systems: closed forms, invariants, shapes, masks and splits."""

from __future__ import annotations

import numpy as np
import pytest

from splineflow_pyro.systems import SYSTEMS, irregular_mask, simulate, split_trajectories

N = 16  # trajectories per test: keep these fast
NAMES = ["decay", "harmonic", "damped_harmonic", "lotka_volterra", "lorenz"]
FEATURES = {
    "decay": ("x",),
    "harmonic": ("x", "v"),
    "damped_harmonic": ("x", "v"),
    "lotka_volterra": ("prey", "predator"),
    "lorenz": ("x", "y", "z"),
}


def test_registry_names() -> None:
    assert sorted(SYSTEMS) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_shapes_grid_and_determinism(name: str) -> None:
    sim = simulate(name, n_trajectories=N, seed=3)
    d = len(FEATURES[name])
    assert sim.name == name
    assert sim.feature_names == FEATURES[name]
    assert sim.times.dtype == np.float64 and sim.states.dtype == np.float64
    np.testing.assert_array_equal(sim.times, np.arange(200) * 0.05)
    assert sim.states.shape == (N, 200, d)
    assert np.isfinite(sim.states).all()
    assert set(sim.params) == set(SYSTEMS[name].param_ranges)
    for key, (lo, hi) in SYSTEMS[name].param_ranges.items():
        assert lo <= sim.params[key] <= hi
        assert isinstance(sim.params[key], float)
    lo, hi = SYSTEMS[name].x0_range
    assert ((sim.states[:, 0] >= lo) & (sim.states[:, 0] <= hi)).all()
    again = simulate(name, n_trajectories=N, seed=3)
    np.testing.assert_array_equal(sim.states, again.states)
    assert sim.params == again.params
    other = simulate(name, n_trajectories=N, seed=4)
    assert not np.array_equal(sim.states, other.states)


def test_one_parameter_draw_per_data_set() -> None:
    # the first trajectories do not depend on how many are simulated (same params, same x0s)
    small = simulate("decay", n_trajectories=3, seed=1)
    big = simulate("decay", n_trajectories=N, seed=1)
    assert small.params == big.params
    np.testing.assert_allclose(small.states, big.states[:3], rtol=1e-5)


def test_decay_closed_form() -> None:
    sim = simulate("decay", n_trajectories=N, seed=0)
    lam = sim.params["lam"]
    x0 = sim.states[:, :1, 0]
    np.testing.assert_allclose(sim.states[..., 0], x0 * np.exp(-lam * sim.times), rtol=1e-5)


def test_harmonic_closed_form_and_energy() -> None:
    sim = simulate("harmonic", n_trajectories=N, seed=0)
    w, t = sim.params["omega"], sim.times
    x0, v0 = sim.states[:, :1, 0], sim.states[:, :1, 1]
    x_exact = x0 * np.cos(w * t) + v0 / w * np.sin(w * t)
    np.testing.assert_allclose(sim.states[..., 0], x_exact, atol=2e-5)
    energy = (w * sim.states[..., 0]) ** 2 + sim.states[..., 1] ** 2
    np.testing.assert_allclose(energy, energy[:, :1] * np.ones_like(energy), rtol=2e-5)


def test_damped_harmonic_closed_form() -> None:
    sim = simulate("damped_harmonic", n_trajectories=N, seed=0)
    w, g, t = sim.params["omega"], sim.params["gamma"], sim.times
    assert g < w  # underdamped on these ranges
    wd = np.sqrt(w**2 - g**2)
    x0, v0 = sim.states[:, :1, 0], sim.states[:, :1, 1]
    x_exact = np.exp(-g * t) * (x0 * np.cos(wd * t) + (v0 + g * x0) / wd * np.sin(wd * t))
    np.testing.assert_allclose(sim.states[..., 0], x_exact, atol=2e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_lotka_volterra_conserved_quantity(seed: int) -> None:
    sim = simulate("lotka_volterra", n_trajectories=N, seed=seed)
    p = sim.params
    x, y = sim.states[..., 0], sim.states[..., 1]
    terms = [p["delta"] * x, -p["gamma"] * np.log(x), p["beta"] * y, -p["alpha"] * np.log(y)]
    v = sum(terms)
    # relative to the size of V's terms (V itself can be close to 0)
    scale = sum(np.abs(term) for term in terms)[:, :1]
    assert (np.abs(v - v[:, :1]) / scale).max() < 1e-5


def test_simulate_errors() -> None:
    with pytest.raises(ValueError, match="known systems: .*lorenz"):
        simulate("pendulum")
    with pytest.raises(ValueError, match="n_trajectories"):
        simulate("decay", n_trajectories=0)


def test_irregular_mask() -> None:
    shape = (200, 50, 3)
    for p in (0.0, 0.3, 0.7):
        mask = irregular_mask(shape, p, seed=0)
        assert mask.shape == shape and mask.dtype == bool
        assert mask[:, 0, :].all()
        assert abs((~mask[:, 1:, :]).mean() - p) < 0.01
    np.testing.assert_array_equal(
        irregular_mask(shape, 0.4, seed=5), irregular_mask(shape, 0.4, seed=5)
    )
    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(ValueError, match="`p`"):
            irregular_mask(shape, bad, seed=0)


def test_split_trajectories() -> None:
    train, test = split_trajectories(1000, seed=0)
    assert len(train) == 800 and len(test) == 200
    assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.union1d(train, test), np.arange(1000))
    assert (np.diff(train) > 0).all() and (np.diff(test) > 0).all()
    again = split_trajectories(1000, seed=0)
    np.testing.assert_array_equal(train, again[0])
    assert not np.array_equal(test, split_trajectories(1000, seed=1)[1])
    with pytest.raises(ValueError, match="test_fraction"):
        split_trajectories(10, test_fraction=1.0)
