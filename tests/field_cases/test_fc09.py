"""FC-09: backward, two-sided and repeated query times (v = -x from x(1) = 1)."""

from __future__ import annotations

import pytest
import torch

from splineflow_pyro.solvers import integrate

SORTED = [0.0, 0.5, 0.5, 2.0]
UNSORTED = [2.0, 0.0, 0.5, 0.5]
EXPECTED = {0.0: 2.718281828, 0.5: 1.648721271, 2.0: 0.367879441}
CASES = [
    ("dopri5", torch.float64, 1e-6),
    ("rk4", torch.float64, 1e-6),
    ("dopri5", torch.float32, 1e-4),
    ("rk4", torch.float32, 1e-4),
]


def decay(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return -x


@pytest.mark.parametrize("times", [SORTED, UNSORTED], ids=["sorted", "unsorted"])
@pytest.mark.parametrize(("method", "dtype", "rtol"), CASES)
def test_fc09_values_in_callers_order(
    times: list[float], method: str, dtype: torch.dtype, rtol: float
) -> None:
    x0 = torch.ones(1, 1, dtype=dtype)
    out = integrate(decay, x0, 1.0, times, method=method, step_size=0.01)
    assert out.shape == (4, 1, 1)
    assert out.dtype == dtype
    expected = torch.tensor([EXPECTED[t] for t in times], dtype=torch.float64)
    got = out.reshape(4).to(torch.float64)
    torch.testing.assert_close(got, expected, rtol=rtol, atol=0)


@pytest.mark.parametrize(("method", "dtype", "rtol"), CASES)
def test_fc09_repeated_times_identical(method: str, dtype: torch.dtype, rtol: float) -> None:
    out = integrate(decay, torch.ones(1, 1, dtype=dtype), 1.0, UNSORTED, method=method)
    assert torch.equal(out[2], out[3])


@pytest.mark.parametrize(("method", "dtype", "rtol"), CASES)
def test_fc09_query_at_start_returns_start_exactly(
    method: str, dtype: torch.dtype, rtol: float
) -> None:
    x0 = torch.tensor([[1.0], [0.1234567]], dtype=dtype)
    out = integrate(decay, x0, 1.0, [2.0, 1.0, 0.0, 1.0], method=method)
    assert torch.equal(out[1], x0)
    assert torch.equal(out[3], x0)


@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_fc09_round_trip(method: str) -> None:
    x0 = torch.ones(1, 1, dtype=torch.float64)
    at_zero = integrate(decay, x0, 1.0, [0.0], method=method)[0]
    back = integrate(decay, at_zero, 0.0, [1.0], method=method)[0]
    assert abs(back.item() - 1.0) < 1e-6
