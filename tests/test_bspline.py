"""Batched not-a-knot B-spline interpolation: scipy oracle, edge cases, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.interpolate import make_interp_spline

from splineflow_pyro import bspline_build
from splineflow_pyro.bspline import BSpline, interpolate

RTOL = 1e-9


def _times(rng: np.random.Generator, n: int, batch: int | None = None) -> np.ndarray:
    """Irregular strictly increasing times (gaps in [0.1, 1])."""
    shape = (n,) if batch is None else (batch, n)
    return np.cumsum(rng.uniform(0.1, 1.0, shape), axis=-1) - 0.5


def _oracle(tt: np.ndarray, yy: np.ndarray, k: int, q: np.ndarray):
    """scipy on the observed entries only, flat hold outside: (value, derivative, spline)."""
    if len(tt) == 0:
        return np.full_like(q, np.nan), np.full_like(q, np.nan), None
    if len(tt) == 1:
        return np.full_like(q, yy[0]), np.zeros_like(q), None
    spline = make_interp_spline(tt, yy, k=min(k, len(tt) - 1))
    qc = np.clip(q, tt[0], tt[-1])
    inside = (q >= tt[0]) & (q <= tt[-1])
    return spline(qc), spline(qc, 1) * inside, spline


def _close(got: np.ndarray, ref: np.ndarray, rtol: float) -> None:
    """Relative to the series' scale (max |ref|), so near-zero entries do not blow up."""
    scale = max(float(np.abs(ref).max()), 1e-12)
    np.testing.assert_allclose(got, ref, rtol=0, atol=rtol * scale)


def _check_against_scipy(times, values, mask, k, queries, rtol=RTOL, check_coefs=True):
    """Fit in torch, compare values, derivatives, knots and control points with scipy."""
    batch, _, d = values.shape
    spline = interpolate(
        torch.as_tensor(times),
        torch.as_tensor(values),
        k,
        None if mask is None else torch.as_tensor(mask),
    )
    value, slope = spline.evaluate_and_derivative(torch.as_tensor(queries))
    knots, control = spline.knots(), spline.control_points
    for b in range(batch):
        t_b = times if times.ndim == 1 else times[b]
        q_b = queries if queries.ndim == 1 else queries[b]
        for f in range(d):
            keep = np.ones(len(t_b), bool) if mask is None else mask[b, :, f]
            ref_v, ref_d, ref = _oracle(t_b[keep], values[b, keep, f], k, q_b)
            if ref is None and not keep.any():
                assert torch.isnan(value[b, :, f]).all() and torch.isnan(slope[b, :, f]).all()
                continue
            _close(value[b, :, f].numpy(), ref_v, rtol)
            _close(slope[b, :, f].numpy(), ref_d, rtol)
            if ref is not None and check_coefs:
                kb = min(knots.shape[0] - 1, b), min(knots.shape[1] - 1, f)
                np.testing.assert_array_equal(knots[kb][: len(ref.t)].numpy(), ref.t)
                _close(control[b, f, : len(ref.c)].numpy(), ref.c, rtol)


def _queries(rng, t_min, t_max, m=37):
    inner = rng.uniform(t_min, t_max, m)
    return np.sort(np.concatenate([inner, [t_min - 1.0, t_max + 1.0]]))


@pytest.mark.parametrize("degree", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("per_sample", [False, True])
def test_matches_scipy_with_random_masks(degree: int, per_sample: bool) -> None:
    rng = np.random.default_rng(100 + degree + 10 * per_sample)
    for n in (2, 3, 7, 40, 200):
        batch, d = 3, 2
        times = _times(rng, n, batch if per_sample else None)
        values = rng.normal(size=(batch, n, d)).cumsum(axis=1)
        mask = rng.random((batch, n, d)) < 0.6
        values[~mask] = np.nan  # masked-out entries may hold NaN
        queries = np.concatenate([_queries(rng, times.min(), times.max()), times.ravel()[:20]])
        _check_against_scipy(times, values, mask, degree, np.sort(queries))


@pytest.mark.parametrize("degree", [1, 2, 3, 4, 5])
def test_matches_scipy_fully_observed(degree: int) -> None:
    rng = np.random.default_rng(7 * degree)
    for per_sample in (False, True):
        n = int(rng.integers(2, 60))
        times = _times(rng, n, 4 if per_sample else None)
        values = rng.normal(size=(4, n, 3))
        queries = np.stack([_queries(rng, -2.0, times.max() + 1) for _ in range(4)])
        _check_against_scipy(times, values, None, degree, queries)


@settings(max_examples=25, deadline=None)
@given(
    degree=st.integers(1, 5),
    n=st.integers(2, 200),
    seed=st.integers(0, 2**31 - 1),
    observed=st.floats(0.05, 1.0),
)
def test_property_matches_scipy(degree: int, n: int, seed: int, observed: float) -> None:
    rng = np.random.default_rng(seed)
    times = _times(rng, n, 2)
    values = rng.normal(size=(2, n, 2)) * 10.0 ** rng.uniform(-3, 3)
    mask = rng.random((2, n, 2)) < observed
    queries = np.stack([_queries(rng, times.min() - 1, times.max() + 1, 11) for _ in range(2)])
    _check_against_scipy(times, values, mask, degree, queries, check_coefs=False)


def test_chunked_fit_and_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny chunks (several per call, mixed degrees in one chunk) give the same result."""
    rng = np.random.default_rng(3)
    n, batch, d = 30, 9, 3
    times = _times(rng, n)
    values = rng.normal(size=(batch, n, d))
    mask = rng.random((batch, n, d)) < 0.5
    mask[0, :, 0] = False
    mask[1, :, 1] = np.arange(n) == 4
    mask[2, :, 2] = np.arange(n) < 3
    args = (torch.tensor(times), torch.tensor(values), 3, torch.tensor(mask))
    q = torch.tensor(_queries(rng, times[0], times[-1]))
    ref = interpolate(*args).evaluate_and_derivative(q)
    monkeypatch.setattr(bspline_build, "_BYTES_PER_CHUNK", 1)
    monkeypatch.setattr("splineflow_pyro.bspline._POINTS_PER_CHUNK", 1)
    got = interpolate(*args).evaluate_and_derivative(q)
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b, equal_nan=True, rtol=1e-12, atol=1e-12)
    _check_against_scipy(times, values, mask, 3, q.numpy())


def test_flat_hold_outside_observed_range() -> None:
    times = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0])
    values = torch.tensor([[1.0, 2.0, 0.0, 5.0, 3.0]]).T[None].double()
    mask = torch.tensor([[False, True, True, True, False]])[..., None]
    spline = interpolate(times, values, 3, mask)
    q = torch.tensor([-5.0, 0.0, 0.5, 3.5, 4.0, 100.0, float("inf"), -float("inf")])
    value, slope = spline.evaluate(q)[0, :, 0], spline.derivative(q)[0, :, 0]
    assert value.tolist() == [2.0, 2.0, 2.0, 5.0, 5.0, 5.0, 5.0, 2.0]
    assert slope.tolist() == [0.0] * 8
    inside = spline.derivative(torch.tensor([1.0, 3.0]))[0, :, 0]
    assert (inside != 0).all()  # one-sided analytic derivative at the ends


def test_unobserved_series_is_nan_and_harmless() -> None:
    values = torch.randn(2, 4, 2, dtype=torch.float64)
    mask = torch.ones(2, 4, 2, dtype=torch.bool)
    mask[1, :, 0] = False
    values[1, :, 0] = float("nan")
    spline = interpolate(torch.arange(4.0), values, 3, mask)
    q = torch.linspace(-1, 5, 9)
    value, slope = spline.evaluate_and_derivative(q)
    assert torch.isnan(value[1, :, 0]).all() and torch.isnan(slope[1, :, 0]).all()
    others = torch.ones(2, 2, dtype=torch.bool)
    others[1, 0] = False
    assert torch.isfinite(value.permute(0, 2, 1)[others]).all()
    assert torch.isfinite(slope.permute(0, 2, 1)[others]).all()
    first, last = spline.span()
    assert torch.isnan(first[1, 0]) and torch.isnan(last[1, 0])
    t_lo, t_hi = spline.bracket(q)
    assert torch.isnan(t_lo[1, :, 0]).all() and torch.isnan(t_hi[1, :, 0]).all()
    assert spline.degree[1, 0] == -1 and spline.degree[0, 0] == 3


def test_single_observation_is_constant() -> None:
    values = torch.tensor([[[7.0], [0.0], [0.0]]])
    mask = torch.tensor([[[True], [False], [False]]])
    spline = interpolate(torch.tensor([1.0, 2.0, 3.0]), values, 5, mask)
    q = torch.tensor([-1.0, 1.0, 2.5, 9.0])
    assert spline.evaluate(q)[0, :, 0].tolist() == [7.0] * 4
    assert spline.derivative(q)[0, :, 0].tolist() == [0.0] * 4
    t_lo, t_hi = spline.bracket(q)
    assert t_lo[0, :, 0].tolist() == [1.0] * 4 and t_hi[0, :, 0].tolist() == [1.0] * 4
    assert spline.degree.tolist() == [[0]]


def test_degree_drops_with_few_observations() -> None:
    times = torch.tensor([0.0, 1.0, 3.0])
    spline = interpolate(times, torch.tensor([[[0.0], [1.0], [9.0]]]), degree=5)
    assert spline.degree.tolist() == [[2]]
    assert spline.evaluate(torch.tensor([2.0])).item() == pytest.approx(4.0, rel=1e-12)


def test_float32_values() -> None:
    rng = np.random.default_rng(5)
    times = _times(rng, 50)
    values = rng.normal(size=(3, 50, 2))
    mask = rng.random((3, 50, 2)) < 0.7
    q = _queries(rng, times[0], times[-1])
    spline = interpolate(
        torch.tensor(times), torch.tensor(values, dtype=torch.float32), 3, torch.tensor(mask)
    )
    assert spline.dtype == torch.float32
    value, slope = spline.evaluate_and_derivative(torch.tensor(q))
    assert value.dtype == torch.float32 and slope.dtype == torch.float32
    for b in range(3):
        for f in range(2):
            ref_v, ref_d, _ = _oracle(times[mask[b, :, f]], values[b, mask[b, :, f], f], 3, q)
            _close(value[b, :, f].double().numpy(), ref_v, 1e-4)
            _close(slope[b, :, f].double().numpy(), ref_d, 1e-3)


def test_float32_accurate_with_very_uneven_gaps() -> None:
    """Each cubic piece is evaluated on its own observed interval only: a tiny first gap
    next to a long second one (ratio 500) must not amplify float32 rounding."""
    rng = np.random.default_rng(11)
    gaps = np.array([0.01, 5.0, 0.02, 3.0, 0.01, 0.5, 4.0, 0.01, 2.0, 0.01])
    times = np.concatenate([[0.0], np.cumsum(gaps)])
    values = rng.normal(size=(4, len(times), 2)).cumsum(axis=1)
    mask = np.ones(values.shape, bool)
    mask[2:, 3, :] = False
    q = np.sort(np.concatenate([times, _queries(rng, times[0], times[-1], 200)]))
    spline = interpolate(
        torch.tensor(times), torch.tensor(values, dtype=torch.float32), 3, torch.tensor(mask)
    )
    value, slope = spline.evaluate_and_derivative(torch.tensor(q))
    for b in range(4):
        for f in range(2):
            keep = mask[b, :, f]
            ref_v, ref_d, _ = _oracle(times[keep], values[b, keep, f], 3, q)
            _close(value[b, :, f].double().numpy(), ref_v, 1e-5)
            _close(slope[b, :, f].double().numpy(), ref_d, 1e-4)


@pytest.mark.parametrize("degree", [1, 2, 3, 4, 5])
def test_shared_grid_lookup_matches_per_sample_search(degree: int) -> None:
    """Shared queries use the precomputed grid slots; the same queries given per sample go
    through the per-series search. Both must agree, between grid times and outside too."""
    rng = np.random.default_rng(20 + degree)
    n, batch, d = 25, 6, 3
    times = _times(rng, n)
    values = rng.normal(size=(batch, n, d))
    mask = rng.random((batch, n, d)) < 0.5
    mask[0, :, 0] = False  # no observation
    mask[1, :, 1] = np.arange(n) == 7  # one observation
    mask[2, :, 2] = np.isin(np.arange(n), [3, 9])  # two: degree 1
    mid = (times[1:] + times[:-1]) / 2
    q = np.concatenate([times, mid, [times[0] - 1, times[-1] + 1, -np.inf, np.inf]])
    spline = interpolate(torch.tensor(times), torch.tensor(values), degree, torch.tensor(mask))
    assert (spline.grid_slot is not None) == (degree % 2 == 1)
    shared = spline.evaluate_and_derivative(torch.tensor(q))
    per_sample = spline.evaluate_and_derivative(torch.tensor(q).expand(batch, -1))
    for a, b in zip(shared, per_sample, strict=True):
        torch.testing.assert_close(a, b, equal_nan=True, rtol=1e-13, atol=1e-13)
    _check_against_scipy(times, values, mask, degree, q[np.isfinite(q)])


@pytest.mark.parametrize("layout", ["masked", "shared", "per_sample"])
def test_select_rows_matches_full_evaluation(layout: str) -> None:
    rng = np.random.default_rng(31)
    n, batch, d = 12, 7, 2
    times = _times(rng, n, batch if layout == "per_sample" else None)
    values = rng.normal(size=(batch, n, d))
    mask = torch.tensor(rng.random((batch, n, d)) < 0.6) if layout == "masked" else None
    spline = interpolate(torch.tensor(times), torch.tensor(values), 3, mask)
    rows = torch.tensor([5, 0, 5, 3])
    q = torch.tensor(rng.uniform(times.min() - 1, times.max() + 1, (batch, 4)))
    full = spline.evaluate_and_derivative(q)
    sub = spline.select(rows)
    assert (sub.batch, sub.dim) == (4, d)
    for a, b in zip(sub.evaluate_and_derivative(q[rows]), full, strict=True):
        torch.testing.assert_close(a, b[rows], equal_nan=True, rtol=0, atol=0)
    for a, b in zip(sub.span(), spline.span(), strict=True):
        torch.testing.assert_close(a, b[rows], equal_nan=True)
    for a, b in zip(sub.bracket(q[rows]), spline.bracket(q), strict=True):
        torch.testing.assert_close(a, b[rows], equal_nan=True)
    torch.testing.assert_close(sub.control_points, spline.control_points[rows], equal_nan=True)


def test_float64_times_never_merge_with_float32_values() -> None:
    """Times 2**30 + k / 1024 (equal in float32) stay distinct: knots are float64."""
    times = 2.0**30 + torch.arange(5, dtype=torch.float64) / 1024
    assert torch.unique(times.float()).numel() == 1
    values = torch.tensor([0.0, 1.0, 4.0, 9.0, 16.0])[None, :, None]  # (1024 (t - t0))^2
    spline = interpolate(times, values, 3)
    t = 2.0**30 + torch.tensor([1.5, 2.5], dtype=torch.float64) / 1024
    assert spline.evaluate(t)[0, :, 0].tolist() == pytest.approx([2.25, 6.25], rel=1e-6)
    assert spline.derivative(t)[0, :, 0].tolist() == pytest.approx([3072.0, 5120.0], rel=1e-6)


def test_bracket_and_span() -> None:
    times = torch.tensor([[0.0, 1.0, 2.0, 4.0], [0.0, 1.0, 2.0, 4.0]])
    values = torch.randn(2, 4, 1, dtype=torch.float64)
    mask = torch.tensor([[True, True, False, True], [False, True, True, False]])[..., None]
    spline = interpolate(times, values, 3, mask)
    first, last = spline.span()
    assert first[:, 0].tolist() == [0.0, 1.0] and last[:, 0].tolist() == [4.0, 2.0]
    q = torch.tensor([[-1.0, 0.0, 0.5, 1.0, 3.0, 4.0, 5.0], [0.0, 1.0, 1.5, 2.0, 3.0, 1.0, 1.0]])
    t_lo, t_hi = spline.bracket(q)
    assert t_lo[0, :, 0].tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 4.0]
    assert t_hi[0, :, 0].tolist() == [0.0, 1.0, 1.0, 4.0, 4.0, 4.0, 4.0]
    assert t_lo[1, :, 0].tolist() == [1.0, 1.0, 1.0, 1.0, 2.0, 1.0, 1.0]
    assert t_hi[1, :, 0].tolist() == [1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    assert (t_lo <= t_hi).all()


def test_derivative_is_autograd_of_evaluate() -> None:
    rng = np.random.default_rng(11)
    times = torch.tensor(_times(rng, 12))
    values = torch.tensor(rng.normal(size=(2, 12, 3)))
    mask = torch.tensor(rng.random((2, 12, 3)) < 0.7)
    for degree in (1, 2, 3, 4, 5):
        spline = interpolate(times, values, degree, mask)
        t = torch.linspace(float(times[0]) - 1, float(times[-1]) + 1, 31, dtype=torch.float64)
        t = t.repeat(2, 1).requires_grad_(True)
        value = spline.evaluate(t)
        grads = [
            torch.autograd.grad(value[..., f].sum(), t, retain_graph=True)[0] for f in range(3)
        ]
        expected = spline.derivative(t.detach())
        for f in range(3):
            torch.testing.assert_close(grads[f], expected[..., f], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("chunked", [False, True])
def test_gradient_flows_to_values(chunked: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if chunked:
        monkeypatch.setattr(bspline_build, "_BYTES_PER_CHUNK", 1)
    times = torch.tensor([0.0, 0.7, 1.5, 2.0, 3.1], dtype=torch.float64)
    values = torch.randn(2, 5, 2, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(2, 5, 2, dtype=torch.bool)
    mask[0, 1, 1] = False

    def fn(v: torch.Tensor) -> torch.Tensor:
        spline = interpolate(times, v, 3, mask)
        return torch.cat(
            [spline.evaluate(torch.tensor([0.3, 2.5])), spline.derivative(torch.tensor([1.2]))], 1
        )

    assert torch.autograd.gradcheck(fn, (values,))


def test_shapes_and_properties() -> None:
    spline = interpolate(torch.arange(5.0), torch.randn(4, 5, 3), 2)
    assert isinstance(spline, BSpline)
    assert (spline.batch, spline.dim, spline.dtype) == (4, 3, torch.float32)
    assert spline.device == torch.device("cpu")
    assert spline.evaluate(torch.rand(7)).shape == (4, 7, 3)
    assert spline.derivative(torch.rand(4, 6)).shape == (4, 6, 3)
    assert spline.bracket(torch.rand(4, 2))[0].shape == (4, 2, 3)
    assert spline.span()[0].shape == (4, 3)
    with pytest.raises(AttributeError):
        spline.table = None  # frozen


def _err(match: str, *args, **kwargs) -> None:
    with pytest.raises(ValueError, match=match):
        interpolate(*args, **kwargs)


def test_errors_name_argument_and_index() -> None:
    t, v = torch.arange(4.0), torch.zeros(2, 4, 3)
    _err(r"degree must be .* got 0", t, v, 0)
    _err(r"degree must be .* got 6", t, v, 6)
    _err(r"degree must be an int .* 3\.0", t, v, 3.0)
    _err(r"degree must be an int .* True", t, v, True)
    _err(r"values must have shape \(batch, n, d\)", t, torch.zeros(4, 3))
    _err(r"values must be float32 or float64", t, torch.zeros(2, 4, 3, dtype=torch.int64))
    _err(r"times must have shape \(n,\) = \(4,\) or \(batch, n\) = \(2, 4\)", torch.arange(5.0), v)
    _err(r"times must have shape", torch.zeros(3, 4), v)
    _err(r"mask must be a torch.bool", t, v, 3, torch.ones(2, 4, 3))
    _err(r"mask must have the shape of values \(2, 4, 3\)", t, v, 3, torch.ones(2, 4, dtype=bool))
    bad = v.clone()
    bad[1, 2, 0] = float("nan")
    _err(r"values\[1, 2, 0\] = nan is observed", t, bad)
    bad[1, 2, 0] = float("inf")
    _err(r"values\[1, 2, 0\] = inf", t, bad)
    _err(r"times\[2\] = nan is not finite", torch.tensor([0.0, 1.0, float("nan"), 3.0]), v)
    _err(r"times\[1, 3\] = inf", torch.tensor([[0.0, 1, 2, 3], [0, 1, 2, float("inf")]]), v)
    _err(
        r"sample 0 has times\[1\] = 1.0 followed by times\[2\] = 1.0",
        torch.tensor([0.0, 1.0, 1.0, 3.0]),
        v,
    )
    _err(
        r"sample 1 has times\[1, 2\] = 2.0 followed by times\[1, 3\] = 1.5",
        torch.tensor([[0.0, 1, 2, 3], [0, 1, 2, 1.5]]),
        v,
    )


def test_masked_out_entries_are_ignored_but_observed_ones_checked() -> None:
    t = torch.tensor([0.0, float("nan"), 2.0, 1.0])
    v = torch.zeros(2, 4, 3)
    v[:, 1] = float("nan")
    mask = torch.ones(2, 4, 3, dtype=torch.bool)
    mask[:, 1] = False
    mask[:, 3] = False
    interpolate(t, v, 3, mask)  # NaN time and value unobserved, decreasing time unobserved
    mask[1, 3, 2] = True
    _err(r"sample 1, feature 2 has times\[2\] = 2.0 followed by times\[3\] = 1.0", t, v, 3, mask)
    mask[1, 3, 2] = False
    mask[0, 1, 1] = True
    _err(r"values\[0, 1, 1\] = nan is observed", t, v, 3, mask)
    v[0, 1, 1] = 1.0
    _err(r"times\[1\] = nan is not finite", t, v, 3, mask)


def test_query_errors() -> None:
    spline = interpolate(torch.arange(4.0), torch.zeros(2, 4, 1), 3)
    with pytest.raises(ValueError, match=r"t\[0, 1\] is NaN"):
        spline.evaluate(torch.tensor([[0.0, float("nan")], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"t must have shape \(m,\) or \(batch, m\) = \(2, m\)"):
        spline.evaluate(torch.zeros(3, 5))
