"""FC-11 (solver part): blow-up and NaN velocities raise SolverError naming the time reached."""

from __future__ import annotations

import math
import re

import pytest
import torch

from splineflow_pyro.solvers import SolverError, integrate

NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def blow_up(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return x**2  # x(t) = 1 / (1 - t) from x(0) = 1


def nan_after_half(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    v = -x
    if float(t) >= 0.5:
        v = v * math.nan
    return v


def names_time_near(message: str, t: float, tol: float = 0.05) -> bool:
    return any(abs(float(s) - t) <= tol for s in NUMBER.findall(message))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_fc11_blow_up_names_divergence_and_time(method: str, dtype: torch.dtype) -> None:
    x0 = torch.ones(1, 1, dtype=dtype)
    with pytest.raises(SolverError) as info:
        integrate(blow_up, x0, 0.0, [0.5, 2.0], method=method, step_size=0.01)
    message = str(info.value)
    assert re.search(r"diverged|non-finite", message), message
    assert method in message
    assert names_time_near(message, 1.0), message


@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_fc11_blow_up_without_divergence_threshold(method: str) -> None:
    # with the |x| threshold disabled the inf/NaN state or the underflow is still reported
    x0 = torch.ones(1, 1, dtype=torch.float64)
    with pytest.raises(SolverError) as info:
        integrate(blow_up, x0, 0.0, [2.0], method=method, step_size=0.01, max_abs=math.inf)
    message = str(info.value)
    assert re.search(r"diverged|non-finite", message), message
    assert names_time_near(message, 1.0, tol=0.1), message


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_fc11_nan_velocity_names_time(method: str, dtype: torch.dtype) -> None:
    x0 = torch.ones(3, 2, dtype=dtype)
    with pytest.raises(SolverError) as info:
        integrate(nan_after_half, x0, 0.0, [2.0], method=method, step_size=0.01)
    message = str(info.value)
    assert "velocity field returned a non-finite value" in message, message
    assert names_time_near(message, 0.5), message


@pytest.mark.parametrize("method", ["rk4", "euler"])
def test_fc11_fixed_step_never_returns_non_finite(method: str) -> None:
    # a field whose value is finite but whose state overflows within one step
    def explode(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x * (1e300 if float(t) >= 0.3 else 1.0)

    with pytest.raises(SolverError, match=r"non-finite|diverged") as info:
        integrate(explode, torch.ones(2, 1, dtype=torch.float64), 0.0, [1.0], method=method)
    assert names_time_near(str(info.value), 0.3, tol=0.02), str(info.value)


def test_fc11_never_an_assertion_error() -> None:
    x0 = torch.ones(1, 1, dtype=torch.float64)
    for field in (blow_up, nan_after_half):
        for kwargs in ({}, {"max_abs": math.inf}):
            # pytest.raises lets any other exception (an AssertionError) fail the test
            with pytest.raises(SolverError) as info:
                integrate(field, x0, 0.0, [2.0], method="dopri5", **kwargs)
            assert not isinstance(info.value, AssertionError)
