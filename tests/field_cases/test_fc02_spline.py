"""FC-02: fewer observations than degree + 1, one observation (spline part)."""

from __future__ import annotations

import pytest
import torch

from splineflow_pyro.bspline import interpolate


@pytest.fixture
def fc02_spline():
    """Samples A (t=[0,1,3]), B (t=[0,2]), C (t=[1]) in one padded batch, degree 3 asked."""
    times = torch.tensor(
        [[0.0, 1.0, 3.0], [0.0, 2.0, float("nan")], [1.0, float("nan"), float("nan")]],
        dtype=torch.float64,
    )
    values = torch.tensor(
        [[0.0, 1.0, 9.0], [1.0, 5.0, float("nan")], [7.0, float("nan"), float("nan")]],
        dtype=torch.float64,
    )[..., None]
    mask = torch.tensor([[True, True, True], [True, True, False], [True, False, False]])[..., None]
    return interpolate(times, values, degree=3, mask=mask)


def test_fc02_degrees_drop_to_n_minus_1(fc02_spline) -> None:
    assert fc02_spline.degree[:, 0].tolist() == [2, 1, 0]
    assert fc02_spline.knots()[0, 0].tolist() == [0.0, 0.0, 0.0, 3.0, 3.0, 3.0]


def test_fc02_sample_a_is_t_squared(fc02_spline) -> None:
    t = torch.tensor([[2.0], [0.5], [1.0]], dtype=torch.float64)
    value, slope = fc02_spline.evaluate(t), fc02_spline.derivative(t)
    assert value[0, 0, 0].item() == pytest.approx(4.0, rel=1e-12)
    assert slope[0, 0, 0].item() == pytest.approx(4.0, rel=1e-12)


def test_fc02_sample_b_is_linear(fc02_spline) -> None:
    t = torch.tensor([[2.0], [0.5], [1.0]], dtype=torch.float64)
    value, slope = fc02_spline.evaluate(t), fc02_spline.derivative(t)
    assert value[1, 0, 0].item() == pytest.approx(2.0, rel=1e-12)
    assert slope[1, 0, 0].item() == pytest.approx(2.0, rel=1e-12)


def test_fc02_sample_c_is_constant(fc02_spline) -> None:
    t = torch.tensor([-10.0, 0.0, 1.0, 1.5, 3.0, 1e6], dtype=torch.float64)
    value, slope = fc02_spline.evaluate_and_derivative(t)
    assert value[2, :, 0].tolist() == [7.0] * 6
    assert slope[2, :, 0].tolist() == [0.0] * 6
    first, last = fc02_spline.span()
    assert first[2, 0].item() == last[2, 0].item() == 1.0  # zero-length span, no NaN
    assert torch.isfinite(value).all() and torch.isfinite(slope).all()
