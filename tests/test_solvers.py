"""Tests of splineflow_pyro.solvers against closed forms (linear systems, rotation, OU)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from splineflow_pyro.solvers import SolverError, integrate, integrate_sde

METHODS = [("dopri5", 1e-6), ("rk4", 1e-6), ("euler", 5e-2)]


def linear_field(a: np.ndarray):
    a_t = torch.as_tensor(a)

    def field(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x @ a_t.to(x.dtype).T

    return field


@pytest.mark.parametrize(("method", "tol"), METHODS)
def test_linear_system_matches_expm_both_directions(method: str, tol: float) -> None:
    a = np.array([[-0.5, 1.0, 0.0], [-1.0, -0.2, 0.3], [0.1, 0.0, -0.4]])
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=(4, 3))
    t0 = 0.3
    times = [1.3, -0.7, 0.3, 2.0, -0.7]
    step = 0.001 if method == "euler" else 0.01
    out = integrate(
        linear_field(a), torch.tensor(x0), t0, times, method=method, step_size=step
    ).numpy()
    assert out.shape == (len(times), 4, 3)
    for i, t in enumerate(times):
        expected = x0 @ scipy.linalg.expm(a * (t - t0)).T
        np.testing.assert_allclose(out[i], expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_rotation_round_trip(method: str) -> None:
    omega = 1.7
    a = np.array([[0.0, 1.0], [-(omega**2), 0.0]])
    x0 = torch.tensor([[1.0, 0.0], [0.3, -0.5]], dtype=torch.float64)
    there = integrate(linear_field(a), x0, 0.0, [5.0], method=method)[0]
    back = integrate(linear_field(a), there, 5.0, [0.0], method=method)[0]
    torch.testing.assert_close(back, x0, rtol=1e-6, atol=1e-6)
    # energy of the oscillator is conserved
    energy = lambda x: omega**2 * x[:, 0] ** 2 + x[:, 1] ** 2  # noqa: E731
    torch.testing.assert_close(energy(there), energy(x0), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("method", ["dopri5", "rk4", "euler"])
def test_order_repeats_and_start_time(method: str) -> None:
    x0 = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
    times = torch.tensor([0.5, -1.0, 2.0, 0.5, 1.0, -1.0])
    out = integrate(lambda t, x: -x, x0, 1.0, times, method=method)
    assert torch.equal(out[0], out[3])
    assert torch.equal(out[1], out[5])
    assert torch.equal(out[4], x0)
    ref = integrate(lambda t, x: -x, x0, 1.0, [-1.0, 0.5, 2.0], method=method)
    torch.testing.assert_close(out[[1, 0, 2]], ref, rtol=1e-10, atol=0)


def test_empty_query_and_only_start() -> None:
    x0 = torch.ones(3, 2)
    assert integrate(lambda t, x: -x, x0, 0.0, []).shape == (0, 3, 2)
    assert torch.equal(integrate(lambda t, x: -x, x0, 0.0, [0.0, 0.0])[1], x0)


@pytest.mark.parametrize(("method", "order"), [("euler", 1), ("rk4", 4)])
def test_fixed_step_convergence_order(method: str, order: int) -> None:
    x0 = torch.ones(1, 1, dtype=torch.float64)
    errors = []
    for h in (0.1, 0.05):
        out = integrate(lambda t, x: -x, x0, 0.0, [1.0], method=method, step_size=h)
        errors.append(abs(out.item() - math.exp(-1.0)))
    observed = math.log2(errors[0] / errors[1])
    assert abs(observed - order) < 0.15


def test_fixed_grid_hits_query_times_exactly() -> None:
    seen: list[float] = []

    def field(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        seen.append(float(t))
        return torch.zeros_like(x)

    integrate(field, torch.zeros(1, 1, dtype=torch.float64), 0.0, [0.33, 1.0], method="euler")
    # [0, 0.33] in 33 steps of 0.01, [0.33, 1] in 67 steps: 100 evaluations, none past 1.0
    assert len(seen) == 100
    assert max(seen) < 1.0
    assert 0.33 in seen


def test_time_passed_to_field_is_0dim_in_state_dtype() -> None:
    def field(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        assert t.ndim == 0 and t.dtype == x.dtype
        return -x

    for method in ("dopri5", "rk4"):
        integrate(field, torch.ones(2, 2, dtype=torch.float32), 0.0, [0.2], method=method)


@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_float32(method: str) -> None:
    x0 = torch.ones(5, 2, dtype=torch.float32)
    out = integrate(lambda t, x: -x, x0, 0.0, [1.0, -1.0], method=method)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out[0], x0 * math.exp(-1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out[1], x0 * math.e, rtol=1e-5, atol=1e-6)


def test_autograd_flows_through_the_solve() -> None:
    x0 = torch.ones(2, 1, dtype=torch.float64, requires_grad=True)
    out = integrate(lambda t, x: -x, x0, 0.0, [1.0, -1.0], method="rk4")
    out.sum().backward()
    torch.testing.assert_close(
        x0.grad, torch.full((2, 1), math.exp(-1) + math.e, dtype=torch.float64)
    )


def test_bad_arguments() -> None:
    x0 = torch.ones(2, 1)
    with pytest.raises(ValueError, match="method"):
        integrate(lambda t, x: -x, x0, 0.0, [1.0], method="rk45")
    with pytest.raises(ValueError, match="x0"):
        integrate(lambda t, x: -x, torch.ones(3), 0.0, [1.0])
    with pytest.raises(ValueError, match="step_size"):
        integrate(lambda t, x: -x, x0, 0.0, [1.0], method="rk4", step_size=0.0)
    with pytest.raises(ValueError, match=r"times\[1\]"):
        integrate(lambda t, x: -x, x0, 0.0, [1.0, float("nan")])
    with pytest.raises(ValueError, match="shape"):
        integrate(lambda t, x: x[:, :0], x0, 0.0, [1.0], method="rk4")
    with pytest.raises(ValueError, match="max_steps"):
        integrate(lambda t, x: -x, x0, 0.0, [100.0], method="rk4", max_steps=10)


def test_dopri5_out_of_steps_is_a_solver_error() -> None:
    x0 = torch.ones(1, 1, dtype=torch.float64)
    with pytest.raises(SolverError, match="max_steps") as info:
        integrate(lambda t, x: -x, x0, 0.0, [50.0], max_steps=3)
    assert isinstance(info.value.__cause__, AssertionError)


# ------------------------------------------------------------------------------------------
# SDE
# ------------------------------------------------------------------------------------------


def test_sde_with_zero_diffusion_equals_euler() -> None:
    a = np.array([[-0.3, 1.0], [-1.0, -0.1]])
    x0 = torch.tensor([[1.0, 0.5], [-0.2, 0.1]], dtype=torch.float64)
    times = [1.0, 0.25, 0.0, 1.0, 0.6]
    g = torch.Generator().manual_seed(0)
    sde = integrate_sde(linear_field(a), lambda t: 0.0, x0, 0.0, times, generator=g)
    ode = integrate(linear_field(a), x0, 0.0, times, method="euler")
    torch.testing.assert_close(sde, ode, rtol=1e-12, atol=1e-12)


def test_sde_is_deterministic_given_the_generator() -> None:
    x0 = torch.zeros(8, 2, dtype=torch.float64)
    runs = [
        integrate_sde(
            lambda t, x: -x,
            lambda t: 0.5,
            x0,
            0.0,
            [1.0],
            generator=torch.Generator().manual_seed(3),
        )
        for _ in range(2)
    ]
    assert torch.equal(runs[0], runs[1])


def test_sde_ornstein_uhlenbeck_moments() -> None:
    theta, sigma, x_start, t = 1.0, 0.8, 2.0, 1.0
    n = 20000
    x0 = torch.full((n, 1), x_start, dtype=torch.float64)
    out = integrate_sde(
        lambda s, x: -theta * x,
        lambda s: sigma,
        x0,
        0.0,
        [0.5, t],
        step_size=0.01,
        generator=torch.Generator().manual_seed(0),
    )
    for i, s in enumerate([0.5, t]):
        mean = x_start * math.exp(-theta * s)
        var = sigma**2 / (2 * theta) * (1 - math.exp(-2 * theta * s))
        assert abs(out[i].mean().item() - mean) < 0.02
        assert abs(out[i].var().item() / var - 1) < 0.05


def test_sde_refuses_backward_times_and_bad_diffusion() -> None:
    x0 = torch.zeros(2, 1)
    with pytest.raises(ValueError, match="before t0"):
        integrate_sde(lambda t, x: -x, lambda t: 0.1, x0, 1.0, [2.0, 0.5])
    with pytest.raises(SolverError, match=r"diffusion returned a non-finite value at t = 0\.5"):
        integrate_sde(
            lambda t, x: -x, lambda t: math.nan if float(t) >= 0.5 else 0.1, x0, 0.0, [1.0]
        )
    with pytest.raises(SolverError, match="velocity field returned a non-finite value"):
        integrate_sde(lambda t, x: x / 0.0, lambda t: 0.1, x0, 0.0, [1.0])
