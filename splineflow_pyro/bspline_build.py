"""Fit orchestration of :func:`splineflow_pyro.bspline.interpolate`.

Series are processed in chunks (bounded temporaries: large fresh allocations cost more than
the arithmetic on CPU), each chunk grouped by effective degree; results are written into
preallocated tables, returned as the fields of :class:`splineflow_pyro.bspline.BSpline`.
"""

from __future__ import annotations

import math
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

    obs_times: Tensor | None  # (N, g); None when derivable from the breaks
    n_max: int  # N, the most observations of a knot set
    lower: Tensor  # (g,)
    upper: Tensor  # (g,)
    breaks: Tensor  # (I, g): hold slot, pieces, hold slot, then +inf
    table: Tensor  # (K + 1, I, g, r)
    workspace: Tensor  # flat scratch for the collocation band of one chunk
    degree: Tensor  # (g,)
    fast_cubic: bool  # degree-3 groups use the slope fit, one slot per observed interval


def _shift(k: int, fast_cubic: bool) -> int:
    """Pieces of a degree-``k`` series: ``n_obs - shift``.

    ``k`` for B-spline knot intervals; 1 for the cubic fast path, whose pieces are the
    observed intervals (the not-a-knot piece on ``[t_0, t_2]`` stored twice), so that a
    piece is only ever evaluated on its own interval: a float32 table then loses nothing
    to extrapolation over a neighbouring interval of a very different length.
    """
    return 1 if k == 3 and fast_cubic else k


def _allocate(
    n_obs: Tensor, degree: int, r: int, tdtype, vdtype, fast_cubic: bool
) -> tuple[_Tables, int]:
    """Tables sized by the largest degree group; returns them and the max degree ``K``."""
    g, dev = n_obs.shape[0], n_obs.device
    deg = torch.minimum(n_obs - 1, torch.full_like(n_obs, degree))
    largest = torch.zeros(degree + 2, dtype=n_obs.dtype, device=dev)
    largest = largest.scatter_reduce(0, deg + 1, n_obs, "amax").tolist()
    present = [k for k in range(1, degree + 1) if largest[k + 1]]
    k_max = max(present, default=1)
    n = max(max(largest), 1)
    n_pieces = max([largest[k + 1] - _shift(k, fast_cubic) for k in present], default=1) + 2
    # With one slot per observed interval for every series, the breaks hold the observed
    # times (see ``derived_obs_times``): no separate table of them.
    derivable = all(k in (0, 1) or (k == 3 and fast_cubic) for k in present + [0])
    # Every entry is written by the fit (see ``_fit_chunk`` and ``_store``): no fill here.
    tables = _Tables(
        obs_times=None if derivable else torch.empty((n, g), dtype=tdtype, device=dev),
        n_max=n,
        lower=torch.empty(g, dtype=tdtype, device=dev),
        upper=torch.empty(g, dtype=tdtype, device=dev),
        breaks=torch.empty((n_pieces, g), dtype=tdtype, device=dev),
        table=torch.empty(k_max + 1, n_pieces, g, r, dtype=vdtype, device=dev),
        degree=deg,
        workspace=torch.empty(0, dtype=vdtype, device=dev),
        fast_cubic=fast_cubic,
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
        out, k_max = _allocate(n_obs, degree, r, tdtype, vdtype, not values.requires_grad)
        grid_slot = None
        step = _step(tc.shape[0], k_max, r)
        for g0 in range(0, g, step):
            g1 = min(g, g0 + step)
            _fit_chunk(out, g0, tc[:, g0:g1], rhs[:, g0:g1], n_obs[g0:g1], degree, k_max)
    else:
        sets, r = (batch, d), 1
        n_obs = torch.count_nonzero(mask, dim=1).reshape(-1)
        out, k_max = _allocate(n_obs, degree, 1, tdtype, vdtype, not values.requires_grad)
        n_max = out.n_max
        step = max(1, _step(n_max, k_max, 1) // max(d, 1))
        grid_slot = _grid_table(times, out.degree, batch, d, out.breaks.shape[0])
        # Observed subsets of a strictly increasing shared grid increase: nothing to check.
        checked = grid_slot is not None
        for b0 in range(0, batch, step):
            b1 = min(batch, b0 + step)
            t_chunk = times if times.ndim == 1 else times[b0:b1]
            tc, vc, nob, count = _compact(t_chunk, values[b0:b1], mask[b0:b1], n_max, b0, checked)
            _fit_chunk(out, b0 * d, tc, vc.unsqueeze(-1), nob, degree, k_max)
            if grid_slot is not None:
                s0, s1 = b0 * d, b1 * d
                deg = out.degree[s0:s1]
                upper = out.upper[s0:s1]
                slots = _grid_slots(count, times, deg, nob, upper, s0, batch * d, out.fast_cubic)
                grid_slot[:, b0:b1] = slots
    g = out.lower.shape[0]
    seen = n_obs > 0
    first = out.lower[seen].min() if bool(seen.any()) else out.lower.new_zeros(())
    out.breaks[0] = first.nextafter(first.new_tensor(-float("inf")))

    def per_set(x: Tensor) -> Tensor:
        return x.reshape(*sets, *x.shape[1:])

    return {
        "degree": out.degree[:, None].expand(g, r).reshape(batch, d),
        "stored_obs_times": None if out.obs_times is None else per_set(out.obs_times.T),
        "n_obs": per_set(n_obs),
        "lower": per_set(out.lower),
        "upper": per_set(out.upper),
        "breaks": per_set(out.breaks.T),
        "table": out.table.reshape(k_max + 1, -1),
        "grid": None if grid_slot is None else times.clone(),
        "grid_slot": grid_slot,
    }


def _grid_table(times: Tensor, degree: Tensor, batch: int, d: int, n_slots: int) -> Tensor | None:
    """Empty ``(n, batch, d)`` int32 table for :func:`_grid_slots`, or ``None`` when the
    shared-grid lookup does not apply: per-sample times, a grid that is not finite and
    strictly increasing, an even degree >= 2 (midpoint breaks), or an index past int32."""
    if times.ndim != 1 or times.shape[0] == 0 or batch * d * n_slots >= 2**31 - 1:
        return None
    if not bool(torch.isfinite(times).all()) or not bool((times[1:] > times[:-1]).all()):
        return None
    if bool(((degree >= 2) & (degree % 2 == 0)).any()):
        return None
    return torch.empty(times.shape[0], batch, d, dtype=torch.int32, device=times.device)


def _grid_slots(
    count: Tensor,
    times: Tensor,
    degree: Tensor,
    n_obs: Tensor,
    upper: Tensor,
    s0: int,
    n_series: int,
    fast_cubic: bool,
) -> Tensor:
    """Flat table index ``slot * S + s`` of each series of one chunk at every grid time.

    ``count (n, nb, d)`` is the number of observed times ``<= times[j]`` per series (the
    running count of the mask); ``degree``, ``n_obs`` and ``upper`` are per series
    ``(nb * d,)``, ``s0`` the chunk's first series and ``S = n_series`` the total number.
    For an odd degree ``k`` the breaks are observed times (``t_0``, then ``t_i`` for
    ``i >= k + 1 - (k + 1) // 2``; every ``t_i`` for the cubic fast path), so the slot is
    ``min(clamp(c - lag, 1, P), c)`` with ``lag = k - (k + 1) // 2`` (0 on the fast path)
    and ``P`` pieces (:func:`_shift`), plus one (the hold slot ``P + 1``) at grid times
    after the last observation; degrees 0 and -1 always use slot 0. Between grid times
    only the hold slot differs (see :meth:`BSpline._grid_chunker`). Returns
    ``(n, nb, d)`` int64.
    """
    shape = (1, *count.shape[1:])
    deg = degree.view(shape)
    odd = deg >= 1
    fast = (deg == 3) if fast_cubic else torch.zeros_like(odd)
    lag = torch.where(odd & ~fast, deg - (deg + 1) // 2, 0)
    top = torch.where(odd, n_obs.view(shape) - torch.where(fast, 1, deg), 0)  # P pieces
    slot = torch.sub(count, lag)
    slot = torch.clamp(slot, torch.ones_like(top), top, out=slot)
    slot = torch.minimum(slot, count, out=slot)
    last = torch.where(odd, upper.view(shape), torch.inf)
    slot.add_(times.view(-1, 1, 1) > last)  # hold slot after the last observed time
    series = torch.arange(s0, s0 + deg.numel(), device=count.device).view(shape)
    return slot.mul_(n_series).add_(series)


def _compact(
    times: Tensor, values: Tensor, mask: Tensor, n_max: int, offset: int, checked: bool = False
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Observed entries of each series moved to the front (one chunk of samples).

    Returns ``tc (N, S)`` times (padding repeats the last observed time), ``vc (N, S)``
    values (padding 0), ``n_obs (S,)`` and ``count (n, batch, d)``, the number of observed
    entries up to each time, with ``S = batch * d`` series in (sample, feature) order and
    ``N = n_max``. ``offset`` is the chunk's first sample (for errors); ``checked`` skips
    the check that observed times increase. Unobserved entries are scattered to a
    discarded row 0 (observed entry ``j`` goes to row ``j + 1``).
    """
    batch, n, d = values.shape
    # int64 at once: cumsum and the product below would each convert a bool mask again
    observed = mask.permute(1, 0, 2).to(torch.int64)
    count = observed.cumsum(0)
    n_obs = count[-1].reshape(-1).clone() if n else count.new_zeros(batch * d)
    rank = observed.mul_(count)  # 1-based row of each observed entry, 0 (discarded) otherwise
    src = times[:, None, None] if times.ndim == 1 else times.T[:, :, None]
    tc = times.new_empty(n_max + 1, batch, d).scatter_(0, rank, src.expand(n, batch, d))
    tc = tc[1:].view(n_max, batch * d)
    fill = torch.arange(n_max, device=tc.device)[:, None]
    tc = tc.gather(0, torch.minimum(fill, (n_obs - 1).clamp(min=0)[None, :]))
    if not checked:
        check_increasing_series(tc, n_obs, mask, times.ndim == 1, offset)
    vc = values.new_zeros(n_max + 1, batch, d).scatter_(0, rank, values.permute(1, 0, 2))
    return tc, vc[1:].view(n_max, batch * d), n_obs, count


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
    if out.obs_times is not None:
        out.obs_times[:n, here] = torch.where(rank < n_obs, tc, float("inf"))
    counts = torch.bincount(deg + 1, minlength=degree + 2).tolist()
    nan, inf = float("nan"), float("inf")
    if counts[0]:
        at = s0 + empty.nonzero().squeeze(1)
        out.table[:, :, at] = nan
        out.breaks[:, at] = inf
    if counts[1]:
        idx = (deg == 0).nonzero().squeeze(1)
        at = s0 + idx
        out.table[0, 0, at] = rhs[0, idx]
        out.table[1:, 0, at] = 0
        out.breaks[:, at] = inf
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
        if k == 3 and out.fast_cubic:
            # Pieces straight into the table when the group is a block of it.
            in_place = isinstance(at, slice)
            shape = (4, n_k + 1, *v_k.shape[1:])
            table = out.table[:4, :, at] if in_place else v_k.new_empty(shape)
            cubic_fit(t_k, v_k, sub, table)
            # Slot p = 1 .. n_obs - 1 is observed interval p - 1.
            _store(out, at, rank, sub, k, 1, t_k[: n_k - 1], None if in_place else table, v_k, t_k)
            continue
        knots = not_a_knot_knots(t_k, sub, k)
        degrees = basis_at_knots(knots, k, rhs.dtype, safe=rhs.requires_grad)
        at_knots = degrees[k] if k % 2 else None
        # The autograd path keeps views of the band for backward: no reuse there.
        scratch = None if rhs.requires_grad else out.workspace
        band = collocation_band(t_k, knots, sub, k, rhs.dtype, at_knots, scratch)
        if scratch is not None and band.data_ptr() != scratch.data_ptr():
            out.workspace = band.view(-1)
        control = banded_solve(band, v_k)
        coefs = power_coefficients(knots, control, k, degrees, rhs.dtype)
        table = coefs.new_zeros(k + 1, coefs.shape[1] + 2, *coefs.shape[2:])
        table[:, 1:-1] = coefs
        table[0, 0] = v_k[0]
        _store(out, at, rank, sub, k, k, knots[k:n_k], table, v_k, t_k)


def _store(out: _Tables, at, rank, sub, k, shift, starts, table, values, times) -> None:
    """Write one degree group's breaks and Taylor table into ``out``.

    Slot 0 of a knot set holds ``y_0`` (flat hold before the first time; its break is set
    by the caller), slots ``1 .. P`` the ``P = n_obs - shift`` pieces starting at
    ``starts (>= P, G)``, slot ``P + 1`` holds ``y_last`` from just after the last time
    (break ``nextafter(t_last, inf)``). ``table (k + 1, >= P + 2, G, R)`` holds slots
    ``0 .. P`` and is copied into ``out``; ``None`` when they were written in place.
    """
    m = min(starts.shape[0], out.breaks.shape[0] - 2)
    inf = float("inf")
    brk = starts.new_full((out.breaks.shape[0], starts.shape[1]), inf)
    brk[1 : m + 1] = torch.where(rank[:m] < sub - shift, starts[:m], inf)
    after = (sub - shift + 1)[None]
    upper = times.gather(0, (sub - 1)[None])
    brk.scatter_(0, after, upper.nextafter(upper.new_tensor(inf)))
    out.breaks[:, at] = brk
    last = (sub - 1).view(1, -1, 1).expand(1, -1, values.shape[2])
    hold = torch.cat([values.gather(0, last), values.new_zeros(k, *last.shape[1:])], 0)
    target = out.table[: k + 1, :, at] if table is None else table
    target.scatter_(1, after.view(1, 1, -1, 1).expand(k + 1, 1, *hold.shape[1:]), hold[:, None])
    if table is not None:
        out.table[: k + 1, : m + 2, at] = table[:, : m + 2]
    if k + 1 < out.table.shape[0]:  # higher coefficients of a lower-degree group
        out.table[k + 1 :, : m + 2, at] = 0


def derived_obs_times(breaks: Tensor, upper: Tensor, n_obs: Tensor, n_max: int) -> Tensor:
    """Observed times ``(..., N)`` (``+inf``-padded) from the slot breaks ``(..., I)`` of a fit
    whose slots are the observed intervals (degrees 0, 1 and the cubic fast path): slot
    ``i + 1`` starts at ``t_i`` for ``i < n_obs - 1``, and the last time is ``upper``."""
    col = torch.arange(n_max, device=breaks.device)
    last = (n_obs - 1)[..., None]
    inner = breaks[..., 1 : n_max + 1]
    inf = torch.tensor(float("inf"), dtype=breaks.dtype, device=breaks.device)
    return torch.where(col < last, inner, torch.where(col == last, upper[..., None], inf))


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


def control_points(
    table: Tensor, breaks: Tensor, knots: Tensor, n_obs: Tensor, degree: Tensor
) -> Tensor:
    """Control points of every series from its Taylor table (blossoming), NaN-padded.

    Control point ``i`` of a degree-``k`` spline is the blossom of any of its polynomial
    pieces on knot intervals ``i .. i + k`` at ``(u_{i+1}, .., u_{i+k})``; for the piece
    ``sum_j a_j (x - b)**j`` that is ``sum_j a_j e_j(u_{i+1} - b, ..) / C(k, j)``, with
    ``e_j`` the elementary symmetric polynomials. The piece used is the one in force at
    knot ``u_{max(k, i)}``, found among the slot breaks (this works for the knot-interval
    slots of the general fit and the observed-interval slots of the cubic fast path).
    The fit does not store control points: they are only needed for inspection.

    Parameters
    ----------
    table : Tensor, shape (K + 1, I, S)
        Slot-major Taylor table (see :class:`splineflow_pyro.bspline.BSpline`).
    breaks : Tensor, shape (S, I)
        Slot breaks per series, contiguous.
    knots : Tensor, shape (S, L)
        Knot vectors (:func:`knot_table`), NaN-padded.
    n_obs, degree : Tensor, shape (S,), int64

    Returns
    -------
    Tensor, shape (S, N), with ``N = L - K - 1`` (at least 1)
    """
    n_series = table.shape[2]
    n = max(knots.shape[1] - table.shape[0], 1)
    out = table.new_full((n_series, n), float("nan"))
    const = (degree == 0).nonzero().squeeze(1)
    out[const, 0] = table[0, 0, const]
    col = torch.arange(n, device=table.device)
    for k in range(1, table.shape[0]):
        sel = (degree == k).nonzero().squeeze(1)
        if not sel.numel():
            continue
        u = knots[sel]
        width = u.shape[1] - 1
        left = u.gather(1, torch.clamp(col, min=k, max=width).expand(len(sel), n).contiguous())
        rows = breaks[sel].contiguous()
        slot = torch.searchsorted(rows, left, right=True).sub_(1).clamp_(min=0)
        base = rows.gather(1, slot)
        # e_j of the k shifted knots u_{i+1} - b .. u_{i+k} - b, by the usual recurrence.
        sym = [torch.ones_like(base)] + [torch.zeros_like(base) for _ in range(k)]
        for j in range(1, k + 1):
            shift = u.gather(1, (col + j).clamp(max=width).expand_as(slot)) - base
            shift = shift.to(table.dtype)
            for m in range(j, 0, -1):
                sym[m] = sym[m] + shift * sym[m - 1]
        flat = slot * n_series + sel[:, None]
        value = torch.zeros_like(sym[0])
        for j in range(k + 1):
            value = value + table[j].reshape(-1)[flat] * sym[j] / math.comb(k, j)
        out[sel] = torch.where(col < n_obs[sel][:, None], value, float("nan"))
    return out
