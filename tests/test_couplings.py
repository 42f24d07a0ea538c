"""Tests of couplings.py: OT plans and chained minibatch couplings of snapshot marginals."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch

from splineflow_pyro.couplings import (
    OT_METHODS,
    _permutation_in_support,
    chain_couplings,
    chain_indices,
    ot_plan,
)


def cloud(n: int, d: int = 3, *, shift: float = 0.0, seed: int = 0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=gen, dtype=torch.float64) + shift).to(dtype)


def emd2(x: torch.Tensor, y: torch.Tensor) -> float:
    xn, yn = x.double().numpy(), y.double().numpy()
    a, b = np.full(len(xn), 1 / len(xn)), np.full(len(yn), 1 / len(yn))
    return float(ot.emd2(a, b, ot.dist(xn, yn)))


@pytest.fixture
def unequal():
    """Three marginals of different sizes (50, 80, 120) drifting in 3-D."""
    return [cloud(50, seed=1), cloud(80, shift=1.0, seed=2), cloud(120, shift=2.0, seed=3)]


# ---------------------------------------------------------------- generic, over all methods


@pytest.mark.parametrize("method", OT_METHODS)
def test_unequal_sizes_give_valid_tuples(unequal, method):
    gen = torch.Generator().manual_seed(0)
    idx = chain_indices(unequal, 32, method=method, generator=gen)
    assert idx.shape == (32, 3) and idx.dtype == torch.long
    for k, m in enumerate(unequal):
        assert int(idx[:, k].min()) >= 0 and int(idx[:, k].max()) < len(m)
    out = chain_couplings(unequal, 32, method=method, generator=torch.Generator().manual_seed(0))
    assert out.shape == (32, 3, 3) and out.dtype == torch.float64
    for k, m in enumerate(unequal):
        assert torch.equal(out[:, k], m[idx[:, k]])


@pytest.mark.parametrize("method", OT_METHODS)
def test_plan_marginals_are_uniform(method):
    x0, x1 = cloud(50, seed=4), cloud(80, shift=0.5, seed=5)
    plan = ot_plan(x0, x1, method=method, reg=0.05)
    assert plan.shape == (50, 80) and plan.dtype == torch.float64
    assert bool((plan >= 0).all())
    torch.testing.assert_close(plan.sum(1), torch.full((50,), 1 / 50, dtype=torch.float64))
    torch.testing.assert_close(plan.sum(0), torch.full((80,), 1 / 80, dtype=torch.float64))


@pytest.mark.parametrize("method", OT_METHODS)
def test_deterministic_given_generator(unequal, method):
    def draw(seed):
        gen = torch.Generator().manual_seed(seed)
        return chain_indices(unequal, 32, method=method, generator=gen)

    assert torch.equal(draw(7), draw(7))
    assert not torch.equal(draw(7), draw(8))


@pytest.mark.parametrize("method", OT_METHODS)
def test_float32_input(unequal, method):
    marginals = [m.float() for m in unequal]
    out = chain_couplings(marginals, 16, method=method, generator=torch.Generator().manual_seed(0))
    assert out.shape == (16, 3, 3) and out.dtype == torch.float32
    plan = ot_plan(marginals[0], marginals[1], method=method)
    assert plan.dtype == torch.float32
    torch.testing.assert_close(plan.sum(), torch.tensor(1.0), atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", OT_METHODS)
def test_marginal_smaller_than_batch_is_used_whole(method):
    small, big, tiny = cloud(20, seed=1), cloud(50, seed=2), cloud(10, seed=3)
    idx = chain_indices(
        [small, big, tiny], 32, method=method, generator=torch.Generator().manual_seed(0)
    )
    assert idx.shape == (32, 3)
    counts = torch.bincount(idx[:, 0], minlength=20)
    assert int(counts.min()) >= 1 and int(counts.max()) <= 2  # floor/ceil(32 / 20)
    assert int(idx[:, 1].max()) < 50 and int(idx[:, 2].max()) < 10


@pytest.mark.parametrize("method", OT_METHODS)
def test_single_marginal(method):
    x = cloud(40)
    idx = chain_indices([x], 8, method=method, generator=torch.Generator().manual_seed(0))
    assert idx.shape == (8, 1) and idx[:, 0].unique().numel() == 8


# ---------------------------------------------------------------- exact OT specifics


def test_exact_equal_minibatches_use_each_drawn_cell_once(unequal):
    """Marginals larger than the batch: minibatches of 32 each, a permutation at each step."""
    idx = chain_indices(unequal, 32, method="exact", generator=torch.Generator().manual_seed(0))
    for k in range(3):
        assert idx[:, k].unique().numel() == 32


def test_identical_marginals_pair_each_cell_with_itself():
    x = cloud(30, d=2, seed=9)
    torch.testing.assert_close(ot_plan(x, x), torch.eye(30, dtype=torch.float64) / 30)
    idx = chain_indices(
        [x, x.clone(), x.clone()], 30, method="exact", generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(idx[:, 0], idx[:, 1]) and torch.equal(idx[:, 1], idx[:, 2])
    assert sorted(idx[:, 0].tolist()) == list(range(30))


def test_exact_pairing_cost_is_optimal():
    x0, x1 = cloud(40, seed=1), cloud(40, shift=1.5, seed=2)
    out = chain_couplings([x0, x1], 40, generator=torch.Generator().manual_seed(3))
    cost = float(((out[:, 1] - out[:, 0]) ** 2).sum())
    assert abs(cost - emd2(x0, x1) * 40) < 1e-9


def test_non_vertex_plan_still_yields_an_optimal_permutation():
    """A mixture of two optimal permutations (not a vertex) is resolved inside its support."""
    p1, p2 = np.eye(4), np.eye(4)[[1, 0, 2, 3]]
    plan = 0.5 * (p1 + p2) / 4
    perm = _permutation_in_support(plan)
    assert sorted(perm.tolist()) == [0, 1, 2, 3]
    assert all(plan[i, perm[i]] > 0 for i in range(4))


# ---------------------------------------------------------------- Sinkhorn specifics


def test_sinkhorn_cost_approaches_exact_as_reg_shrinks():
    x0, x1 = cloud(60, seed=1), cloud(70, shift=1.0, seed=2)
    cost = ot.dist(x0.numpy(), x1.numpy())
    exact = emd2(x0, x1)
    gaps = [
        float((ot_plan(x0, x1, method="sinkhorn", reg=reg).numpy() * cost).sum()) - exact
        for reg in (0.1, 0.03, 0.01, 0.003)
    ]
    assert all(g >= -1e-9 for g in gaps)
    assert all(a > b for a, b in zip(gaps, gaps[1:], strict=False))
    assert gaps[-1] < 0.05 * exact


def test_sinkhorn_is_scale_free():
    """The cost is normalised by its max, so scaling the data leaves the plan unchanged."""
    x0, x1 = cloud(20, seed=1), cloud(25, shift=1.0, seed=2)
    p = ot_plan(x0, x1, method="sinkhorn", reg=0.05)
    q = ot_plan(1e3 * x0, 1e3 * x1, method="sinkhorn", reg=0.05)
    torch.testing.assert_close(p, q)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"x0": cloud(5), "x1": cloud(5), "method": "emd"}, r"method='emd'.*exact.*sinkhorn"),
        ({"x0": cloud(5), "x1": cloud(5), "method": "sinkhorn", "reg": 0.0}, "reg=0.0"),
        ({"x0": cloud(0), "x1": cloud(5)}, "x0 is empty"),
        ({"x0": cloud(5), "x1": cloud(0)}, "x1 is empty"),
        ({"x0": cloud(5, d=2), "x1": cloud(5, d=3)}, "same number of features"),
        ({"x0": torch.zeros(5), "x1": cloud(5)}, r"x0 must have shape \(n, d\)"),
        ({"x0": np.zeros((5, 3)), "x1": cloud(5)}, "x0 must be a torch.Tensor"),
        (
            {"x0": cloud(5), "x1": cloud(5).index_fill(0, torch.tensor([3]), float("nan"))},
            r"x1 has non-finite values.*row\) 3",
        ),
    ],
)
def test_ot_plan_errors_name_the_argument(kwargs, match):
    x0, x1 = kwargs.pop("x0"), kwargs.pop("x1")
    with pytest.raises(ValueError, match=match):
        ot_plan(x0, x1, **kwargs)


def test_chain_errors_name_the_argument():
    good = [cloud(10), cloud(12)]
    with pytest.raises(ValueError, match="batch_size"):
        chain_indices(good, 0)
    with pytest.raises(ValueError, match="batch_size"):
        chain_indices(good, 4.0)
    with pytest.raises(ValueError, match="marginals is empty"):
        chain_indices([], 4)
    with pytest.raises(ValueError, match=r"marginals\[1\] has 2 features"):
        chain_indices([cloud(10), cloud(10, d=2)], 4)
    with pytest.raises(ValueError, match=r"marginals\[1\] is empty"):
        chain_indices([cloud(10), cloud(0)], 4)
    with pytest.raises(ValueError, match="method='greedy'"):
        chain_indices(good, 4, method="greedy")
    bad = cloud(10).index_fill(0, torch.tensor([6]), float("inf"))
    with pytest.raises(ValueError, match=r"marginals\[1\] has non-finite.*row\) 6"):
        chain_indices([cloud(10), bad], 10)
    with pytest.raises(ValueError, match=r"marginals\[1\] is torch.float32"):
        chain_couplings([cloud(10), cloud(10).float()], 4)
