"""FC-04: the Brownian-bridge target must include the sigma'(t) * eps term, and the score
target must use the same eps as x_t."""

from __future__ import annotations

import pytest
import torch

from splineflow_pyro.paths import BSplinePath

F64 = torch.float64


def _sample(times, values, sigma, t, eps):
    path = BSplinePath(3, sigma=sigma, schedule="bridge")
    return path.sample(
        torch.tensor(times, dtype=F64),
        torch.tensor(values, dtype=F64)[None, :, None],
        t=torch.tensor([t], dtype=F64),
        eps=torch.tensor([[eps]], dtype=F64),
    )


def test_fc04_two_observations() -> None:
    s = _sample([0.0, 1.0], [0.0, 1.0], sigma=1.0, t=0.25, eps=1.0)
    assert float(s.sigma_t) == pytest.approx(0.4330127019, abs=1e-9)
    assert float(s.x_t) == pytest.approx(0.6830127019, abs=1e-9)
    assert float(s.u_t) == pytest.approx(1.5773502692, abs=1e-9)  # not the faulty 1.0


def test_fc04_spline_mean_and_same_eps_score_target() -> None:
    s = _sample([0.0, 1.0, 3.0], [0.0, 1.0, 9.0], sigma=0.5, t=1.5, eps=-1.0)
    assert float(s.sigma_t) == pytest.approx(0.2165063509, abs=1e-9)
    assert float(s.x_t) == pytest.approx(2.0334936491, abs=1e-9)
    assert float(s.u_t) == pytest.approx(2.8556624327, abs=1e-9)
    dsigma = (float(s.u_t) - 3.0) / float(s.eps)  # u_t = mu' + sigma' eps with mu' = 2t = 3
    assert dsigma == pytest.approx(0.1443375673, abs=1e-9)
    assert float(-s.eps / s.sigma_t) == pytest.approx(4.6188021535, abs=1e-9)


@pytest.mark.parametrize("t", [0.0, 1.0])
def test_fc04_at_the_observations(t: float) -> None:
    s = _sample([0.0, 1.0], [0.0, 1.0], sigma=1.0, t=t, eps=1.0)
    assert float(s.sigma_t) == 0.0
    assert float(s.x_t) == t  # exactly the observation
    assert bool(torch.isfinite(s.u_t).all())
    loss = ((s.u_t - 0.0) ** 2 * s.weight).sum()
    assert bool(torch.isfinite(loss))
