"""FC-03: one NaN must not poison the whole sample's spline (spline part)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.interpolate import make_interp_spline

from splineflow_pyro.bspline import interpolate

NAN = float("nan")
TIMES = np.array([0.0, 1.0, 2.0, 3.0])
# tracked_na.csv: s0 (x1 = t^3, x2 = t^2 + 1 with t=1 missing, x3 seen at t in {1, 2});
# s1 (x3 never observed; x1, x2 as s0).
VALUES = np.array(
    [
        [[0.0, 1.0, NAN], [1.0, NAN, 3.0], [8.0, 5.0, 5.0], [27.0, 10.0, NAN]],
        [[0.0, 1.0, NAN], [1.0, NAN, NAN], [8.0, 5.0, NAN], [27.0, 10.0, NAN]],
    ]
)


@pytest.fixture
def fc03_spline():
    mask = torch.tensor(~np.isnan(VALUES))
    return interpolate(torch.tensor(TIMES), torch.tensor(VALUES), degree=3, mask=mask)


def _at(spline, t: float):
    value, slope = spline.evaluate_and_derivative(torch.tensor([t], dtype=torch.float64))
    return value[:, 0], slope[:, 0]


def test_fc03_x1_cubic(fc03_spline) -> None:
    value, slope = _at(fc03_spline, 2.5)
    assert value[0, 0].item() == pytest.approx(15.625, rel=1e-12)
    assert slope[0, 0].item() == pytest.approx(18.75, rel=1e-12)


def test_fc03_x2_quadratic_through_gap(fc03_spline) -> None:
    value, slope = _at(fc03_spline, 1.0)
    assert fc03_spline.degree[0, 1].item() == 2
    assert value[0, 1].item() == pytest.approx(2.0, rel=1e-12)
    assert slope[0, 1].item() == pytest.approx(2.0, rel=1e-12)


@pytest.mark.parametrize(("t", "x", "dx"), [(1.5, 4.0, 2.0), (0.5, 3.0, 0.0), (2.5, 5.0, 0.0)])
def test_fc03_x3_linear_with_flat_hold(fc03_spline, t: float, x: float, dx: float) -> None:
    value, slope = _at(fc03_spline, t)
    assert fc03_spline.degree[0, 2].item() == 1
    assert value[0, 2].item() == pytest.approx(x, rel=1e-12)
    assert slope[0, 2].item() == pytest.approx(dx, abs=1e-12)


def test_fc03_never_observed_series_is_nan_only_there(fc03_spline) -> None:
    q = torch.linspace(-1.0, 4.0, 21, dtype=torch.float64)
    value, slope = fc03_spline.evaluate_and_derivative(q)
    assert torch.isnan(value[1, :, 2]).all() and torch.isnan(slope[1, :, 2]).all()
    observed = torch.tensor([[True, True, True], [True, True, False]])
    assert torch.isfinite(value.permute(0, 2, 1)[observed]).all()
    assert torch.isfinite(slope.permute(0, 2, 1)[observed]).all()


def test_fc03_agrees_with_scipy_on_observed_entries(fc03_spline) -> None:
    q = np.linspace(-0.5, 3.5, 33)
    value, slope = fc03_spline.evaluate_and_derivative(torch.tensor(q))
    for b in range(2):
        for f in range(3):
            keep = ~np.isnan(VALUES[b, :, f])
            if not keep.any():
                continue
            tt, yy = TIMES[keep], VALUES[b, keep, f]
            ref = make_interp_spline(tt, yy, k=min(3, len(tt) - 1))
            qc = np.clip(q, tt[0], tt[-1])
            inside = (q >= tt[0]) & (q <= tt[-1])
            scale = np.abs(ref(qc)).max()
            np.testing.assert_allclose(value[b, :, f].numpy(), ref(qc), rtol=0, atol=1e-9 * scale)
            ref_d = ref(qc, 1) * inside
            np.testing.assert_allclose(
                slope[b, :, f].numpy(), ref_d, rtol=0, atol=1e-9 * np.abs(ref_d).max()
            )
