"""Tests of splineflow_pyro.metrics against closed forms and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from splineflow_pyro.metrics import (
    energy_distance,
    mmd_rbf,
    sliced_wasserstein2,
    trajectory_mse,
    wasserstein,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_trajectory_mse_mask_and_nan_targets() -> None:
    target = np.array([[[1.0], [np.nan], [3.0]], [[0.0], [2.0], [5.0]]])
    pred = np.array([[[2.0], [100.0], [3.0]], [[0.0], [4.0], [np.nan]]])
    mask = np.array([[[True], [True], [True]], [[True], [True], [False]]])
    # observed finite entries: (1 vs 2), (3 vs 3), (0 vs 0), (2 vs 4)
    assert trajectory_mse(pred, target, mask) == pytest.approx((1 + 0 + 0 + 4) / 4)
    assert trajectory_mse(torch.tensor(pred[:1]), torch.tensor(target[:1])) == pytest.approx(0.5)


def test_trajectory_mse_errors() -> None:
    with pytest.raises(ValueError, match="same shape"):
        trajectory_mse(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="no observed"):
        trajectory_mse(np.zeros(2), np.full(2, np.nan))
    with pytest.raises(ValueError, match="pred"):
        trajectory_mse(np.array([np.nan, 1.0]), np.array([0.0, 1.0]))


@pytest.mark.parametrize("p", [1, 2])
def test_wasserstein_of_a_shifted_cloud_is_the_shift(rng: np.random.Generator, p: int) -> None:
    # a small cloud shifted by s: the identity coupling is optimal (cyclical monotonicity for
    # p = 2; for p = 1 every coupling costs >= |s| by the triangle inequality on the means)
    x = rng.normal(size=(40, 3)) * 0.1
    shift = np.array([3.0, -4.0, 12.0])
    assert wasserstein(x, x + shift, p=p) == pytest.approx(13.0, rel=1e-9)


def test_wasserstein_1d_sorted_equal_sizes(rng: np.random.Generator) -> None:
    x, y = rng.normal(size=50), rng.exponential(size=50)
    assert wasserstein(x, y, p=1) == pytest.approx(np.mean(np.abs(np.sort(x) - np.sort(y))))
    w2 = math.sqrt(np.mean((np.sort(x) - np.sort(y)) ** 2))
    assert wasserstein(x, y, p=2) == pytest.approx(w2)


def test_wasserstein_1d_unequal_sizes_vs_scipy(rng: np.random.Generator) -> None:
    x, y = rng.normal(size=37), rng.normal(1.0, 2.0, size=23)
    assert wasserstein(x, y, p=1) == pytest.approx(scipy.stats.wasserstein_distance(x, y))
    wx, wy = rng.uniform(0.1, 1, size=37), rng.uniform(0.1, 1, size=23)
    assert wasserstein(
        x[:, None], torch.tensor(y)[:, None], p=1, x_weights=wx, y_weights=wy
    ) == pytest.approx(scipy.stats.wasserstein_distance(x, y, wx, wy))


def test_wasserstein_gaussians_large_sample(rng: np.random.Generator) -> None:
    # W2 between N(m1, I) and N(m2, 4I) in 2-D: |m1 - m2|^2 + 2 * (2 - 1)^2
    n = 600
    x = rng.normal(size=(n, 2))
    y = np.array([1.0, 2.0]) + 2.0 * rng.normal(size=(n, 2))
    assert wasserstein(x, y) == pytest.approx(math.sqrt(5.0 + 2.0), rel=0.08)


def test_wasserstein_identical_is_zero_and_validation(rng: np.random.Generator) -> None:
    x = rng.normal(size=(10, 2))
    assert wasserstein(x, x) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="feature dimension"):
        wasserstein(x, rng.normal(size=(10, 3)))
    with pytest.raises(ValueError, match="`y`"):
        wasserstein(x, np.zeros((0, 2)))
    with pytest.raises(ValueError, match="`x` contains non-finite"):
        wasserstein(np.array([[np.nan, 0.0]]), x)
    with pytest.raises(ValueError, match="x_weights"):
        wasserstein(x, x, x_weights=np.ones(3))


def test_sliced_w2_1d_equals_exact_w2(rng: np.random.Generator) -> None:
    x, y = rng.normal(size=30), rng.normal(2.0, 0.5, size=45)
    assert sliced_wasserstein2(x, y, n_projections=4) == pytest.approx(wasserstein(x, y, p=2))


def test_sliced_w2_of_a_shift(rng: np.random.Generator) -> None:
    d = 4
    x = rng.normal(size=(200, d))
    shift = np.array([1.0, -2.0, 0.5, 2.0])
    sw = sliced_wasserstein2(x, x + shift, n_projections=2000, seed=1)
    # SW2^2 = E[(theta . s)^2] = |s|^2 / d exactly for a shift
    assert sw == pytest.approx(np.linalg.norm(shift) / math.sqrt(d), rel=0.05)
    assert sw <= wasserstein(x, x + shift) + 1e-9
    assert sliced_wasserstein2(x, x + shift, seed=3) == sliced_wasserstein2(x, x + shift, seed=3)


def test_mmd_zero_for_identical_and_symmetric(rng: np.random.Generator) -> None:
    x, y = rng.normal(size=(30, 2)), rng.normal(0.5, 1.0, size=(20, 2))
    assert mmd_rbf(x, x) == pytest.approx(0.0, abs=1e-12)
    assert mmd_rbf(x, y) == pytest.approx(mmd_rbf(y, x), rel=1e-12)
    assert mmd_rbf(x, y) > 0
    # single kernel, single points: 2 - 2 exp(-|a-b|^2 / 2h^2)
    assert mmd_rbf([[0.0]], [[1.0]], bandwidths=(1.0,)) == pytest.approx(2 - 2 * math.exp(-0.5))
    with pytest.raises(ValueError, match="bandwidths"):
        mmd_rbf(x, y, bandwidths=(0.0,))


def test_energy_distance_vs_scipy(rng: np.random.Generator) -> None:
    x, y = rng.normal(size=40), rng.normal(0.7, 1.5, size=25)
    assert energy_distance(x, y) == pytest.approx(scipy.stats.energy_distance(x, y) ** 2)
    assert energy_distance(torch.tensor(x), torch.tensor(x)) == pytest.approx(0.0, abs=1e-12)
