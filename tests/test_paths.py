"""Generic property tests over every conditional path (registry-driven)."""

from __future__ import annotations

import pytest
import torch

from splineflow_pyro.paths import BSplinePath, LinearPath, make_path

PATHS = {
    "linear": LinearPath(),
    "bspline1": BSplinePath(1),
    "bspline3": BSplinePath(3),
    "bspline5": BSplinePath(5),
}
NOISY = {
    "bspline3-constant": BSplinePath(3, sigma=0.3),
    "bspline3-bridge": BSplinePath(3, sigma=0.3, schedule="bridge"),
    "linear-bridge": LinearPath(sigma=0.2, schedule="bridge"),
}


def tracked_batch(seed: int = 0, batch: int = 16, n: int = 9, d: int = 3):
    gen = torch.Generator().manual_seed(seed)
    times = torch.cumsum(torch.rand(batch, n, generator=gen, dtype=torch.float64) + 0.1, dim=1)
    values = torch.randn(batch, n, d, generator=gen, dtype=torch.float64)
    mask = torch.rand(batch, n, d, generator=gen) > 0.3
    mask[:, 0] = True
    return times, values, mask


@pytest.mark.parametrize("name", list(PATHS) + list(NOISY))
def test_shapes_and_times_inside_span(name: str) -> None:
    path = (PATHS | NOISY)[name]
    times, values, mask = tracked_batch()
    gen = torch.Generator().manual_seed(1)
    s = path.sample(times, values, mask, generator=gen)
    assert s.t.shape == (16,) and s.x_t.shape == s.u_t.shape == s.weight.shape == (16, 3)
    lo = torch.where(mask.any(-1), times, torch.inf).amin(1)
    hi = torch.where(mask.any(-1), times, -torch.inf).amax(1)
    assert bool(((s.t >= lo) & (s.t <= hi)).all())
    assert bool(torch.isfinite(s.x_t).all() & torch.isfinite(s.u_t).all())
    first = torch.where(mask, times[..., None], torch.inf).amin(1)
    last = torch.where(mask, times[..., None], -torch.inf).amax(1)
    own_span = (s.t[:, None] >= first) & (s.t[:, None] <= last)
    assert torch.equal(s.weight == 1, own_span)  # held-flat entries are not trained on


@pytest.mark.parametrize("name", list(PATHS))
def test_mean_hits_every_observation(name: str) -> None:
    path = PATHS[name]
    times, values, mask = tracked_batch(seed=2)
    spline = path.fit(times, values, mask)
    for i in range(times.shape[1]):
        s = path.sample_from(spline, t=times[:, i])
        hit = mask[:, i]
        assert torch.allclose(s.x_t[hit], values[:, i][hit], atol=1e-9)


@pytest.mark.parametrize("name", list(PATHS))
def test_velocity_is_the_time_derivative_of_the_mean(name: str) -> None:
    path = PATHS[name]
    times, values, mask = tracked_batch(seed=3)
    spline = path.fit(times, values, mask)
    t = path.sample_times(spline, generator=torch.Generator().manual_seed(0))
    t = t.clone().requires_grad_(True)
    mean = path.mean(spline, t)
    grads = torch.stack(
        [torch.autograd.grad(mean[:, j].sum(), t, retain_graph=True)[0] for j in range(3)], dim=1
    )
    assert torch.allclose(grads, path.velocity(spline, t.detach()), atol=1e-7)


def test_fixed_noise_gives_x_t_as_mean_plus_sigma_eps() -> None:
    path = NOISY["bspline3-constant"]
    times, values, mask = tracked_batch(seed=4)
    eps = torch.randn(16, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    spline = path.fit(times, values, mask)
    t = path.sample_times(spline, generator=torch.Generator().manual_seed(0))
    s = path.sample_from(spline, t=t, eps=eps)
    assert torch.allclose(s.x_t, path.mean(spline, t) + 0.3 * eps)
    assert torch.allclose(s.u_t, path.velocity(spline, t))  # constant sigma: no sigma' term
    assert s.eps is not None and torch.equal(s.eps, eps)


def test_never_observed_feature_leaves_the_sample_out_of_the_loss() -> None:
    times, values, mask = tracked_batch(seed=5)
    mask[0, :, 2] = False
    s = LinearPath().sample(times, values, mask, generator=torch.Generator().manual_seed(0))
    assert bool((s.weight[0] == 0).all()) and bool((s.weight[1:].sum(1) > 0).all())
    assert bool(torch.isfinite(s.x_t).all())


def test_unknown_kind_and_schedule_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="cubic"):
        make_path("cubic")
    with pytest.raises(ValueError, match="schedule 'wiggly'"):
        BSplinePath(3, sigma=0.1, schedule="wiggly")
