"""Fit orchestration of :func:`splineflow_pyro.bspline.interpolate`.

Series are processed in chunks (bounded temporaries: large fresh allocations cost more than
the arithmetic on CPU), each chunk grouped by effective degree; results are written into
preallocated tables, returned as the fields of :class:`splineflow_pyro.bspline.BSpline`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from splineflow_pyro.bspline_checks import check_increasing, check_increasing_series
from splineflow_pyro.bspline_cubic import cubic_fit
from splineflow_pyro.bspline_fit import (
    banded_solve,
    basis_at_knots,
    collocation_band,
    not_a_knot_knots,
    power_coefficients,
)

_BYTES_PER_CHUNK = 1 << 24


@dataclass
class _Tables:
    """Preallocated outputs for ``g`` knot sets with ``r`` series each."""

    obs_times: Tensor  # (g, N)
    lower: Tensor  # (g,)
    upper: Tensor  # (g,)
    breaks: Tensor  # (g, I): hold slot, pieces, hold slot, then +inf
    table: Tensor  # (K + 1, g, r, I)
    workspace: Tensor  # flat scratch for the collocation band of one chunk
    control: Tensor  # (g, r, N)
    degree: Tensor  # (g,)


def _allocate(n_obs: Tensor, degree: int, r: int, tdtype, vdtype) -> tuple[_Tables, int]:
    """Tables sized by the largest degree group; returns them and the max degree ``K``."""
    g, dev = n_obs.shape[0], n_obs.device
    deg = torch.minimum(n_obs - 1, torch.full_like(n_obs, degree))
    largest = torch.zeros(degree + 2, dtype=n_obs.dtype, device=dev)
    largest = largest.scatter_reduce(0, deg + 1, n_obs, "amax").tolist()
    present = [k for k in range(1, degree + 1) if largest[k + 1]]
    k_max = max(present, default=1)
    n = max(max(largest), 1)
    n_pieces = max([largest[k + 1] - k for k in present], default=1) + 2
    # Every entry is written by the fit (see ``_fit_chunk`` and ``_store``): no fill here.
    tables = _Tables(
        obs_times=torch.empty((g, n), dtype=tdtype, device=dev),
        lower=torch.empty(g, dtype=tdtype, device=dev),
        upper=torch.empty(g, dtype=tdtype, device=dev),
        breaks=torch.empty((g, n_pieces), dtype=tdtype, device=dev),
        table=torch.empty(k_max + 1, g, r, n_pieces, dtype=vdtype, device=dev),
        control=torch.empty((g, r, n), dtype=vdtype, device=dev),
        degree=deg,
        workspace=torch.empty(0, dtype=vdtype, device=dev),
    )
    return tables, k_max


def _step(n: int, k: int, r: int) -> int:
    """Knot sets per chunk so that the band and the per-series tables stay bounded."""
    per_set = 8 * (n + k) * max(2 * k + 1, (k + 2) * r)
    return max(1, _BYTES_PER_CHUNK // per_set)


def fit_fields(times: Tensor, values: Tensor, degree: int, mask: Tensor | None) -> dict:
    """Validated inputs -> the fields of :class:`~splineflow_pyro.bspline.BSpline`.

    Parameters
    ----------
    times : Tensor, shape (n,) or (batch, n)
        In the time dtype (already promoted with the values' dtype).
    values : Tensor, shape (batch, n, d)
    degree : int
    mask : Tensor of bool, shape (batch, n, d), or None (everything observed)
    """
    batch, n, d = values.shape
    tdtype, vdtype = times.dtype, values.dtype
    if mask is None:
        check_increasing(times)
        if times.ndim == 1:
            tc, rhs, sets = times[:, None], values.permute(1, 0, 2).reshape(n, 1, batch * d), (1, 1)
        else:
            tc, rhs, sets = times.T, values.permute(1, 0, 2), (batch, 1)
        g, r = rhs.shape[1], rhs.shape[2]
        n_obs = torch.full((g,), n, dtype=torch.long, device=values.device)
        if n == 0:
            tc, rhs = tc.new_zeros(1, g), rhs.new_zeros(1, g, r)
        out, k_max = _allocate(n_obs, degree, r, tdtype, vdtype)
        step = _step(tc.shape[0], k_max, r)
        for g0 in range(0, g, step):
            g1 = min(g, g0 + step)
            _fit_chunk(out, g0, tc[:, g0:g1], rhs[:, g0:g1], n_obs[g0:g1], degree, k_max)
    else:
        sets, r = (batch, d), 1
        n_obs = mask.sum(1).reshape(-1)
        out, k_max = _allocate(n_obs, degree, 1, tdtype, vdtype)
        step = max(1, _step(out.obs_times.shape[1], k_max, 1) // max(d, 1))
        for b0 in range(0, batch, step):
            b1 = min(batch, b0 + step)
            t_chunk = times if times.ndim == 1 else times[b0:b1]
            n_max = out.obs_times.shape[1]
            tc, vc, nob = _compact(t_chunk, values[b0:b1], mask[b0:b1], n_max, b0)
            _fit_chunk(out, b0 * d, tc, vc.unsqueeze(-1), nob, degree, k_max)
    g = out.lower.shape[0]
    seen = n_obs > 0
    first = out.lower[seen].min() if bool(seen.any()) else out.lower.new_zeros(())
    out.breaks[:, 0] = first.nextafter(first.new_tensor(-float("inf")))

    grid_slot = None
    if mask is not None and times.ndim == 1:
        grid_slot = _grid_slots(times, mask, n_obs, out.degree, out.upper, out.breaks.shape[1])

    def per_set(x: Tensor) -> Tensor:
        return x.reshape(*sets, *x.shape[1:])

    return {
        "control_points": out.control.reshape(batch, d, -1),
        "degree": out.degree[:, None].expand(g, r).reshape(batch, d),
        "obs_times": per_set(out.obs_times),
        "n_obs": per_set(n_obs),
        "lower": per_set(out.lower),
        "upper": per_set(out.upper),
        "breaks": per_set(out.breaks),
        "table": out.table.reshape(k_max + 1, -1),
        "grid": None if grid_slot is None else times.clone(),
        "grid_slot": grid_slot,
    }


def _grid_slots(
    times: Tensor, mask: Tensor, n_obs: Tensor, degree: Tensor, upper: Tensor, n_slots: int
) -> Tensor | None:
    """Flat table index ``s * I + slot`` of every series ``s`` at every shared time.

    ``out[b, j, f]`` is the slot of series ``(b, f)`` at ``t = times[j]``. The observed
    times are a subset of the shared grid, so the number ``c`` of observed times ``<= t``
    is the running count of the mask. For an odd degree ``k`` the breaks are observed
    times (``t_0``, then ``t_i`` for ``i >= k + 1 - (k + 1) // 2``), so the slot is
    ``min(clamp(c - shift, 1, P), c)`` with ``shift = k - (k + 1) // 2`` and
    ``P = n_obs - k`` pieces, plus one (the hold slot ``P + 1``) at grid times after the
    last observation; degrees 0 and -1 always use slot 0. ``None`` when the grid is not
    finite and strictly increasing, when an even degree >= 2 is present (midpoint
    breaks) or when the index does not fit int32. Between grid times only the hold slot
    differs (see :meth:`BSpline._grid_chunker`).
    """
    batch, n, d = mask.shape
    if n == 0 or batch * d * n_slots >= 2**31 - 1:
        return None
    if not bool(torch.isfinite(times).all()) or not bool((times[1:] > times[:-1]).all()):
        return None
    if bool(((degree >= 2) & (degree % 2 == 0)).any()):
        return None
    i32 = torch.int32
    # Per-series constants, shape (S, 1): the work runs in (series, time) layout, where
    # they broadcast along the contiguous time axis.
    deg = degree.to(i32)[:, None]
    odd = deg >= 1
    shift = torch.where(odd, deg - (deg + 1) // 2, 0)
    top = torch.where(odd, n_obs.to(i32)[:, None] - deg, 0)  # P = n_obs - k
    base = torch.arange(0, batch * d * n_slots, n_slots, dtype=i32, device=mask.device)[:, None]
    count = mask.transpose(1, 2).reshape(batch * d, n).cumsum(1, dtype=i32)
    # slot = min(clamp(c - shift, 1, P), c): 0 before t_0 (c = 0), 1 .. P inside; + base.
    slot = torch.add(count, base - shift)
    slot = torch.clamp(slot, base + 1, base + top, out=slot)
    slot = torch.minimum(slot, count.add_(base), out=slot)
    last = torch.where(odd, upper[:, None], torch.inf).view(batch, d, 1)
    hold = times > last  # hold slot after the last observed time
    out = torch.empty(batch, n, d, dtype=i32, device=mask.device)
    torch.add(slot.view(batch, d, n), hold, out=out.transpose(1, 2))
    return out


def _compact(
    times: Tensor, values: Tensor, mask: Tensor, n_max: int, offset: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Observed entries of each series moved to the front (one chunk of samples).

    Returns ``tc (N, S)`` times (padding repeats the last observed time), ``vc (N, S)``
    values (padding 0) and ``n_obs (S,)``, with ``S = batch * d`` series in (sample, feature)
    order and ``N = n_max``. ``offset`` is the chunk's first sample (for errors). Unobserved
    entries are scattered to a discarded row 0 (observed entry ``j`` goes to row ``j + 1``).
    """
    batch, n, d = values.shape
    observed = mask.permute(1, 0, 2).contiguous()  # contiguous: the ops below are faster
    rank = observed.cumsum(0)
    n_obs = rank[-1].reshape(-1).clone() if n else rank.new_zeros(batch * d)
    rank.mul_(observed)  # 1-based row of each observed entry, 0 (discarded) otherwise
    src = times[:, None, None] if times.ndim == 1 else times.T[:, :, None]
    tc = times.new_empty(n_max + 1, batch, d).scatter_(0, rank, src.expand(n, batch, d))
    tc = tc[1:].view(n_max, batch * d)
    fill = torch.arange(n_max, device=tc.device)[:, None]
    tc = tc.gather(0, torch.minimum(fill, (n_obs - 1).clamp(min=0)[None, :]))
    check_increasing_series(tc, n_obs, mask, times.ndim == 1, offset)
    vc = values.new_zeros(n_max + 1, batch, d).scatter_(0, rank, values.permute(1, 0, 2))
    return tc, vc[1:].view(n_max, batch * d), n_obs


def _fit_chunk(
    out: _Tables, s0: int, tc: Tensor, rhs: Tensor, n_obs: Tensor, degree: int, k_max: int
) -> None:
    """Fit knot sets ``s0 : s0 + G`` (``tc (N, G)``, ``rhs (N, G, R)``) into ``out``."""
    n, g = tc.shape
    here = slice(s0, s0 + g)
    deg = out.degree[here]
    empty = n_obs == 0
    last = tc.gather(0, (n_obs - 1).clamp(min=0)[None])[0]
    out.lower[here] = torch.where(empty, 0, tc[0])
    out.upper[here] = torch.where(empty, 0, last)
    rank = torch.arange(n, device=tc.device)[:, None]
    out.obs_times[here, :n] = torch.where(rank < n_obs, tc, float("inf")).T
    counts = torch.bincount(deg + 1, minlength=degree + 2).tolist()
    nan, inf = float("nan"), float("inf")
    if counts[0]:
        at = s0 + empty.nonzero().squeeze(1)
        out.table[:, at] = nan
        out.control[at] = nan
        out.breaks[at] = inf
    if counts[1]:
        idx = (deg == 0).nonzero().squeeze(1)
        at = s0 + idx
        out.control[at, :, 0] = rhs[0, idx]
        out.control[at, :, 1:] = nan
        out.table[0, at, :, 0] = rhs[0, idx]
        out.table[1:, at, :, 0] = 0
        out.breaks[at] = inf
    for k in range(1, degree + 1):
        if not counts[k + 1]:
            continue
        if counts[k + 1] == g:
            sel, at, sub = slice(None), here, n_obs
        else:
            sel = (deg == k).nonzero().squeeze(1)
            at, sub = s0 + sel, n_obs[sel]
        n_k = int(sub.max())
        t_k, v_k = tc[:n_k, sel], rhs[:n_k, sel]
        knots = not_a_knot_knots(t_k, sub, k)
        if k == 3 and not rhs.requires_grad:
            control, coefs = cubic_fit(t_k, v_k, knots, sub)
            _store(out, at, rank, sub, k, knots, control, coefs, v_k)
            continue
        degrees = basis_at_knots(knots, k, rhs.dtype, safe=rhs.requires_grad)
        at_knots = degrees[k] if k % 2 else None
        # The autograd path keeps views of the band for backward: no reuse there.
        scratch = None if rhs.requires_grad else out.workspace
        band = collocation_band(t_k, knots, sub, k, rhs.dtype, at_knots, scratch)
        if scratch is not None and band.data_ptr() != scratch.data_ptr():
            out.workspace = band.view(-1)
        control = banded_solve(band, v_k)
        coefs = power_coefficients(knots, control, k, degrees, rhs.dtype)
        _store(out, at, rank, sub, k, knots, control, coefs, v_k)


def _store(out: _Tables, at, rank, sub, k, knots, control, coefs, values) -> None:
    """Write one degree group's control points, breaks and Taylor table into ``out``.

    ``coefs`` holds the pieces ``(k + 1, N - k, G, R)``, or is already the slot table
    ``(k + 1, N - k + 2, G, R)`` with slot 0 filled. Slot 0 of a knot set holds ``y_0``
    (flat hold before the first time; its break is set by the caller), slots ``1 .. P`` the
    ``P = n_obs - k`` pieces, slot ``P + 1`` holds ``y_last`` from just after the last time
    (break ``nextafter(t_last, inf)``).
    """
    if coefs.shape[1] == control.shape[0] - k:  # bare pieces: add the two hold slots
        table = coefs.new_zeros(k + 1, coefs.shape[1] + 2, *coefs.shape[2:])
        table[:, 1:-1] = coefs
        table[0, 0] = values[0]
    else:
        table = coefs
    n_k, m = control.shape[0], table.shape[1] - 2
    keep = rank[:n_k, :, None] < sub[:, None]
    out.control[at, :, :n_k] = torch.where(keep, control, float("nan")).permute(1, 2, 0)
    if n_k < out.control.shape[2]:
        out.control[at, :, n_k:] = float("nan")
    inf = float("inf")
    brk = knots.new_full((out.breaks.shape[1], knots.shape[1]), inf)
    brk[1 : m + 1] = torch.where(rank[:m] < sub - k, knots[k : k + m], inf)
    after = (sub - k + 1)[None]
    upper = knots.gather(0, after + 2 * k - 1)
    brk.scatter_(0, after, upper.nextafter(upper.new_tensor(inf)))
    out.breaks[at] = brk.T
    last = (sub - 1).view(1, -1, 1).expand(1, -1, values.shape[2])
    hold = torch.cat([values.gather(0, last), values.new_zeros(k, *last.shape[1:])], 0)
    table.scatter_(1, after.view(1, 1, -1, 1).expand(k + 1, 1, *hold.shape[1:]), hold[:, None])
    out.table[: k + 1, at, :, : m + 2] = table.permute(0, 2, 3, 1)
    if k + 1 < out.table.shape[0]:  # higher coefficients of a lower-degree group
        out.table[k + 1 :, at, :, : m + 2] = 0


def knot_table(obs_times: Tensor, n_obs: Tensor, degree: Tensor) -> Tensor:
    """Knot vectors of ``g`` knot sets, NaN-padded: ``(g, N)``, ``(g,)``, ``(g,)`` -> ``(g, L)``.

    A single observation gives ``[t0, t0]``; none gives NaN.
    """
    g, n = obs_times.shape
    rank = torch.arange(n, device=obs_times.device)[:, None]
    tc = obs_times.T.gather(0, torch.minimum(rank, (n_obs - 1).clamp(min=0)[None, :]))
    k_max = int(degree.max()) if g else 0
    length = max(n + k_max + 1, 2) if k_max > 0 else 2
    out = torch.full((g, length), float("nan"), dtype=obs_times.dtype, device=obs_times.device)
    const = degree == 0
    out[const, :2] = tc[0, const, None]
    for k in range(1, k_max + 1):
        sel = (degree == k).nonzero().squeeze(1)
        if sel.numel():
            sub = n_obs[sel]
            knots = not_a_knot_knots(tc[:, sel], sub, k)
            col = torch.arange(knots.shape[0], device=tc.device)[:, None]
            out[sel, : knots.shape[0]] = torch.where(col < sub + k + 1, knots, float("nan")).T
    return out
