"""FC-07: "exact" OT minibatch duplicates some cells and drops others.

For equal sizes and uniform weights the exact coupling is a permutation: every cell of every
time appears exactly once across the batch, and the pairing attains the optimal cost
(``ot.emd2`` times the batch size).
"""

from __future__ import annotations

import math

import numpy as np
import ot
import torch

from splineflow_pyro.couplings import chain_couplings, chain_indices


def eight_gaussians(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` points from 8 Gaussians (std 0.1) centred on a circle of radius 2; (n, 2)."""
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    centres = 2.0 * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    which = torch.randint(0, 8, (n,), generator=generator)
    noise = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return centres[which] + 0.1 * noise


def moons(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` points from two interleaving half circles with noise 0.05; (n, 2)."""
    s = torch.rand(n, generator=generator, dtype=torch.float64) * math.pi
    upper = torch.rand(n, generator=generator) < 0.5
    x = torch.where(upper, torch.cos(s), 1.0 - torch.cos(s))
    y = torch.where(upper, torch.sin(s), 0.5 - torch.sin(s))
    noise = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return torch.stack([x, y], dim=1) + 0.05 * noise


def optimal_cost(x: torch.Tensor, y: torch.Tensor) -> float:
    """``ot.emd2`` with uniform weights and squared-Euclidean cost (mean cost per pair)."""
    xn, yn = x.numpy(), y.numpy()
    a = np.full(len(xn), 1.0 / len(xn))
    b = np.full(len(yn), 1.0 / len(yn))
    return float(ot.emd2(a, b, ot.dist(xn, yn, metric="sqeuclidean")))


def pairing_cost(tuples: torch.Tensor, k: int) -> float:
    """Total squared distance between the cells at times k and k+1 of each tuple."""
    return float(((tuples[:, k + 1] - tuples[:, k]) ** 2).sum())


def test_fc07_two_marginals_of_six_are_a_permutation_with_optimal_cost():
    gen = torch.Generator().manual_seed(0)
    x0, x1 = eight_gaussians(6, gen), moons(6, gen)

    idx = chain_indices([x0, x1], 6, method="exact", generator=torch.Generator().manual_seed(0))
    assert idx.shape == (6, 2)
    assert sorted(idx[:, 0].tolist()) == list(range(6))
    assert sorted(idx[:, 1].tolist()) == list(range(6))

    tuples = chain_couplings(
        [x0, x1], 6, method="exact", generator=torch.Generator().manual_seed(0)
    )
    assert tuples.shape == (6, 2, 2)
    assert torch.equal(tuples[:, 0], x0[idx[:, 0]])
    assert torch.equal(tuples[:, 1], x1[idx[:, 1]])
    assert abs(pairing_cost(tuples, 0) - optimal_cost(x0, x1) * 6) < 1e-9


def test_fc07_three_marginals_of_64_chain_each_cell_once_with_optimal_pairings():
    gen = torch.Generator().manual_seed(0)
    x0, x1 = eight_gaussians(64, gen), moons(64, gen)
    x2 = eight_gaussians(64, gen) * 0.5 + torch.tensor([3.0, -1.0], dtype=torch.float64)
    marginals = [x0, x1, x2]

    idx = chain_indices(marginals, 64, method="exact", generator=torch.Generator().manual_seed(1))
    assert idx.shape == (64, 3)
    for k in range(3):
        assert sorted(idx[:, k].tolist()) == list(range(64)), f"time {k}"

    tuples = torch.stack([m[idx[:, k]] for k, m in enumerate(marginals)], dim=1)
    for k in range(2):
        expected = optimal_cost(marginals[k], marginals[k + 1]) * 64
        assert abs(pairing_cost(tuples, k) - expected) < 1e-9, f"pair t{k}->t{k + 1}"
