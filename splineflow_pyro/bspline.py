"""Batched not-a-knot B-spline interpolation with analytic derivatives (pure torch).

:func:`interpolate` fits, per *series* (one sample x one feature, over its observed entries
only), the interpolating spline of ``scipy.interpolate.make_interp_spline(t, y, k)``: degree
``min(k, n_obs - 1)``, not-a-knot knots, control points from the collocation solve, so that
``S(t_i) = x_i``. :class:`BSpline` only evaluates: ``S(t)``, ``S'(t)`` (analytic), flat hold
outside the observed range, NaN for a series without any observation. This is the conditional
path ``mu_t = S(t)``, ``u_t = S'(t)`` of SplineFlow (Rathod, Lio, Zhang, arXiv 2601.23072,
section 3).

Cost: no Python loop over samples or features. Loops run over at most five degree groups and
over the rows of the banded solve (degree 3: of the tridiagonal slope system, see
:mod:`splineflow_pyro.bspline_cubic`); evaluation is a search, one gather per coefficient
and a Horner scheme, in chunks through one reused workspace.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from splineflow_pyro.bspline_build import (
    control_points,
    derived_obs_times,
    fit_fields,
    knot_table,
)
from splineflow_pyro.bspline_checks import MAX_DEGREE as _MAX_DEGREE
from splineflow_pyro.bspline_checks import check_inputs, check_queries

__all__ = ["MAX_DEGREE", "BSpline", "interpolate"]

MAX_DEGREE = _MAX_DEGREE
_POINTS_PER_CHUNK = 1 << 17


@dataclass(frozen=True, eq=False)
class BSpline:
    """Fitted splines of ``batch x dim`` series; evaluation only (build with :func:`interpolate`).

    Series that share their observed times share one *knot set*; time-like fields have
    knot-set shape ``(bk, dk)``, which is ``(1, 1)`` (times shared by the whole batch),
    ``(batch, 1)`` (per-sample times) or ``(batch, dim)`` (per-series masks). ``T`` is the
    time dtype (float64 if the times or values are), ``V`` the values' dtype.

    Attributes
    ----------
    degree : Tensor, shape (batch, dim), int64
        Degree used per series; 0 for one observation, -1 for none.
    n_obs : Tensor, shape (bk, dk), int64
        Number of observations per knot set.
    lower, upper : Tensor, shape (bk, dk), dtype T
        First and last observed time (0 for a knot set without observation).
    breaks : Tensor, shape (bk, dk, I), dtype T
        The search table of the slots: slot 0 (flat hold before the first time; break just
        below the first time of all series), the left end of each polynomial piece, the
        hold after the last time (break ``nextafter(t_last, inf)``), then ``+inf`` (a view
        of slot-major storage ``(I, bk * dk)``).
    table : Tensor, shape (K + 1, I * batch * dim), dtype V
        Taylor coefficients ``c_j`` of ``S`` on each slot, ``S = sum_j c_j (t - break)**j``
        (``K >= 1`` the largest degree), slot-major: series ``s = b * dim + f`` in slot
        ``i`` is column ``i * batch * dim + s`` (the fit writes it without a transpose).
        The hold slots are ``(y, 0, ..)``; NaN for series without observation.
    stored_obs_times : Tensor or None, shape (bk, dk, N), dtype T
        Observed times when the breaks do not hold them (see :attr:`obs_times`).
    grid, grid_slot : Tensor or None
        Shared 1-D times ``(n,)`` of a masked fit and the flat table index
        ``slot * batch * dim + s`` of every series at each of them, ``(n, batch, dim)`` int32: the
        search of a query is then one search on ``grid`` and one gather (``None`` when not
        available, e.g. per-sample times or an even degree >= 2).
    """

    degree: Tensor
    n_obs: Tensor
    lower: Tensor
    upper: Tensor
    breaks: Tensor
    table: Tensor
    stored_obs_times: Tensor | None = None
    grid: Tensor | None = None
    grid_slot: Tensor | None = None

    @property
    def batch(self) -> int:
        """Number of samples."""
        return self.degree.shape[0]

    @property
    def dim(self) -> int:
        """Number of features."""
        return self.degree.shape[1]

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of values and derivatives (the fitted values' dtype)."""
        return self.table.dtype

    @property
    def device(self) -> torch.device:
        """Device of every tensor of the spline."""
        return self.table.device

    def evaluate(self, t: Tensor) -> Tensor:
        """Spline values ``S(t)``, held flat outside each series' observed range.

        Parameters
        ----------
        t : Tensor, shape (m,) or (batch, m)
            Query times, shared by the batch or per sample (``+-inf`` allowed, NaN not).

        Returns
        -------
        Tensor, shape (batch, m, dim)
            NaN for series without observation.
        """
        return self._run(t, value=True, slope=False)[0]

    def derivative(self, t: Tensor) -> Tensor:
        """Analytic derivative ``S'(t)``; 0 outside each series' observed range.

        Parameters
        ----------
        t : Tensor, shape (m,) or (batch, m)

        Returns
        -------
        Tensor, shape (batch, m, dim)
            NaN for series without observation; 0 for a single observation.
        """
        return self._run(t, value=False, slope=True)[1]

    def evaluate_and_derivative(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(S(t), S'(t))`` from one search and one gather (cheaper than two calls).

        Parameters
        ----------
        t : Tensor, shape (m,) or (batch, m)

        Returns
        -------
        tuple of Tensor, each shape (batch, m, dim)
        """
        value, slope = self._run(t, value=True, slope=True)
        return value, slope

    def knots(self) -> Tensor:
        """Knot vector of every knot set (scipy's ``BSpline.t``), recomputed on demand.

        Returns
        -------
        Tensor, shape (bk, dk, L)
            NaN-padded; ``[t0, t0]`` for one observation, NaN for none.
        """
        bk, dk = self.n_obs.shape
        degree = self.degree[:bk, :dk].reshape(-1)
        flat = self.obs_times.reshape(bk * dk, -1)
        return knot_table(flat, self.n_obs.reshape(-1), degree).reshape(bk, dk, -1)

    def select(self, rows: Tensor) -> BSpline:
        """The splines of samples ``rows`` (int64 ``(r,)``, repeats allowed), in that order.

        Copies only their columns of the table: a training step that draws a minibatch of
        samples then evaluates ``r`` samples, not the whole data set. The shared-grid lookup
        is dropped (the per-series search serves per-sample queries).
        """
        rows = torch.as_tensor(rows, dtype=torch.long, device=self.device)
        batch, dim = self.batch, self.dim

        def per_sample(x: Tensor) -> Tensor:  # knot-set fields: (bk, dk, ...)
            return x if x.shape[0] == 1 else x.index_select(0, rows)

        table = self.table.view(self.table.shape[0], -1, batch, dim).index_select(2, rows)
        return BSpline(
            degree=self.degree.index_select(0, rows),
            stored_obs_times=None
            if self.stored_obs_times is None
            else per_sample(self.stored_obs_times),
            n_obs=per_sample(self.n_obs),
            lower=per_sample(self.lower),
            upper=per_sample(self.upper),
            breaks=per_sample(self.breaks),
            table=table.reshape(table.shape[0], -1),
        )

    @cached_property
    def obs_times(self) -> Tensor:
        """Observed times per knot set ``(bk, dk, N)``, compacted, ``+inf``-padded.

        Stored by fits with knot-interval slots; otherwise (slots = observed intervals)
        read off the breaks on first use.
        """
        if self.stored_obs_times is not None:
            return self.stored_obs_times
        n_max = max(int(self.n_obs.max()), 1) if self.n_obs.numel() else 1
        return derived_obs_times(self.breaks, self.upper, self.n_obs, n_max)

    @cached_property
    def control_points(self) -> Tensor:
        """Control points per series (scipy's ``BSpline.c``), ``(batch, dim, N)``, NaN-padded.

        Derived on first use from the Taylor table (the fit stores only what evaluation
        needs).
        """
        shape = (self.batch, self.dim)
        knots = self.knots().expand(*shape, -1).reshape(self.batch * self.dim, -1)
        n_obs = self.n_obs.expand(shape).reshape(-1)
        table = self.table.view(self.table.shape[0], -1, self.batch * self.dim)
        breaks = self._rows[0].expand(*shape, -1).reshape(self.batch * self.dim, -1)
        control = control_points(table, breaks, knots, n_obs, self.degree.reshape(-1))
        return control.reshape(*shape, -1)

    def span(self) -> tuple[Tensor, Tensor]:
        """First and last observed time of every series.

        Returns
        -------
        t_first, t_last : Tensor, each shape (batch, dim)
            NaN for series without observation; equal for a single observation.
        """
        shape = (self.batch, self.dim)
        empty = self.n_obs == 0
        nan = torch.full_like(self.lower, float("nan"))
        first = torch.where(empty, nan, self.lower).expand(shape).clone()
        return first, torch.where(empty, nan, self.upper).expand(shape).clone()

    def bracket(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """Consecutive observed times around ``t`` per series.

        Inside the observed range, ``t_lo <= t <= t_hi`` are neighbours among the series'
        observed times (the last interval at the last time); outside it, both equal the
        nearest end time; for one observation both equal it.

        Parameters
        ----------
        t : Tensor, shape (m,) or (batch, m)

        Returns
        -------
        t_lo, t_hi : Tensor, each shape (batch, m, dim)
            NaN for series without observation.
        """
        x = check_queries(t, self.batch, self.breaks.dtype)
        seq, xs = self._searchable(x, self._rows[1])
        last = (self.n_obs - 1).clamp(min=0)[..., None]
        j = torch.searchsorted(seq, xs, right=True) - 1
        j = torch.minimum(j.clamp(min=0), (last - 1).clamp(min=0))
        t_lo = self._take(self.obs_times, j)
        t_hi = self._take(self.obs_times, torch.minimum(j + 1, last))
        lo, hi = self.lower[..., None], self.upper[..., None]
        out = []
        nan = torch.tensor(float("nan"), dtype=lo.dtype, device=lo.device)
        for value in (t_lo, t_hi):
            value = torch.where(xs < lo, lo, torch.where(xs > hi, hi, value))
            value = torch.where(self.n_obs[..., None] == 0, nan, value)
            out.append(value.expand(self.batch, self.dim, -1).transpose(1, 2).contiguous())
        return out[0], out[1]

    # -- internals -------------------------------------------------------------------------

    @cached_property
    def _rows(self) -> tuple[Tensor, Tensor]:
        """``breaks`` and ``obs_times`` made contiguous once, as ``torch.searchsorted`` needs."""
        return self.breaks.contiguous(), self.obs_times.contiguous()

    def _searchable(self, x: Tensor, seq: Tensor) -> tuple[Tensor, Tensor]:
        """Sorted sequence and queries shaped for ``torch.searchsorted``."""
        if seq.shape[0] == 1 and seq.shape[1] == 1:
            return seq.reshape(-1), x
        return seq, x.expand(*seq.shape[:2], x.shape[-1]).contiguous()

    @staticmethod
    def _take(seq: Tensor, index: Tensor) -> Tensor:
        """``seq[..., index]`` per knot set."""
        if seq.shape[0] == 1 and seq.shape[1] == 1:
            return seq.reshape(-1)[index]
        return seq.gather(-1, index)

    def _run(self, t: Tensor, *, value: bool, slope: bool) -> tuple[Tensor, Tensor]:
        """Evaluate in chunks of samples, through one reused workspace (no autograd there)."""
        x = check_queries(t, self.batch, self.breaks.dtype)
        batch, dim, m = self.batch, self.dim, x.shape[-1]
        grad = torch.is_grad_enabled() and (x.requires_grad or self.table.requires_grad)
        step = batch if grad else max(1, _POINTS_PER_CHUNK // max(1, m * dim))
        top = self.upper.max()
        x = torch.clamp(x, self.breaks[..., 0].min(), top.nextafter(top.new_tensor(torch.inf)))
        chunk = self._chunk
        if self.grid_slot is not None and x.shape[0] == 1:
            chunk = self._grid_chunker(x)
        if step >= batch:
            return chunk(x, 0, batch, value, slope, None, None)
        outs = tuple(
            torch.empty(batch, m, dim, dtype=self.dtype, device=self.device) if want else None
            for want in (value, slope)
        )
        work = _Workspace(self.dtype, self.device)
        for b0 in range(0, batch, step):
            chunk(x, b0, min(batch, b0 + step), value, slope, outs, work)
        return outs

    def _grid_chunker(self, x: Tensor):
        """Chunk evaluator for shared queries on a spline with ``grid_slot``.

        ``j(q)`` = index of the last grid time ``<= q`` (one small search). At a grid time
        the slot is ``grid_slot[j]``; strictly between grid times only the hold slot
        after the last observation differs (``grid[j] <= t_last < q``: one more); before the grid
        every series is in slot 0.
        """
        grid = self.grid
        q = x.reshape(-1)
        j = torch.searchsorted(grid, q, right=True).sub_(1)
        before = j < 0
        j.clamp_(min=0)
        inside = (grid[j] != q) & ~before
        n_series = self.batch * self.dim
        rows_before = before.nonzero().squeeze(1) if bool(before.any()) else None
        rows_inside = inside.nonzero().squeeze(1) if bool(inside.any()) else None

        def chunk(x, b0, b1, value, slope, outs, work):
            dim, m, nb = self.dim, q.shape[0], b1 - b0
            w = (lambda name, shape, dtype=None: None) if work is None else work.get
            rows = w("rows", (m, nb, dim), torch.int32)
            rows = torch.index_select(self.grid_slot[:, b0:b1], 0, j, out=rows)
            idx = w("idx", (nb, m, dim), torch.int32)
            idx = rows.transpose(0, 1) if idx is None else idx.copy_(rows.transpose(0, 1))
            if rows_before is not None:
                base = torch.arange(b0 * dim, b1 * dim, device=q.device, dtype=torch.int32)
                idx[:, rows_before] = base.view(nb, 1, dim)  # slot 0
            if rows_inside is not None:
                upper = self.upper[b0:b1, None, :]
                hold = q[rows_inside].view(1, -1, 1) > upper
                hold &= grid[j[rows_inside]].view(1, -1, 1) <= upper
                hold &= self.degree[b0:b1, None, :] >= 1
                idx[:, rows_inside] += hold.to(torch.int32) * n_series
            flat = idx.reshape(-1)
            breaks = self.breaks.permute(2, 0, 1).reshape(-1)  # slot-major storage
            at = w("at", (nb * m * dim,), breaks.dtype)
            at = torch.index_select(breaks, 0, flat, out=at).view(nb, m, dim)
            dx = torch.sub(q.view(1, m, 1), at, out=w("dx", (nb, m, dim))).to(self.dtype)
            k = self.table.shape[0] - 1
            coef = w("coef", (k + 1, nb * m * dim))
            if coef is None:
                coef = self.table.index_select(1, flat)
            else:
                for i in range(k + 1):
                    torch.index_select(self.table[i], 0, flat, out=coef[i])
            targets = [None if o is None else o[b0:b1] for o in outs or (None, None)]
            return self._horner(coef.view(k + 1, nb, m, dim), dx, value, slope, *targets, w)

        return chunk

    def _chunk(self, x: Tensor, b0: int, b1: int, value: bool, slope: bool, outs, work):
        """Samples ``b0:b1``: search, gather the Taylor coefficients, Horner.

        Queries are already clamped to the range of all series; the hold slots of each
        table give the flat extension (value at the end, derivative 0).
        """
        dim, m, nb = self.dim, x.shape[-1], b1 - b0
        sets = slice(None) if self.n_obs.shape[0] == 1 else slice(b0, b1)
        xs = x if x.shape[0] == 1 else x[b0:b1]
        breaks = self._rows[0][sets]
        if breaks.shape[0] == 1 and breaks.shape[1] == 1:
            seq, xs = breaks.reshape(-1), xs
        else:
            seq = breaks
            shape = (*breaks.shape[:2], m)
            xs = xs.expand(shape).contiguous() if work is None else work.get("xs", shape, x.dtype)
            if work is not None:
                xs.copy_((x if x.shape[0] == 1 else x[b0:b1]).expand(shape))
        w = (lambda name, shape, dtype=None: None) if work is None else work.get
        piece = torch.searchsorted(seq, xs, right=True, out=w("piece", xs.shape, torch.long))
        piece.sub_(1)
        at = self._take(breaks, piece)
        diff = torch.sub(xs, at, out=w("diff", xs.shape, xs.dtype)).transpose(1, 2)
        dx = diff if work is None else w("dx", (nb, m, dim)).copy_(diff)
        series = torch.arange(b0 * dim, b1 * dim, device=x.device).view(nb, 1, dim)
        index = w("index", (nb, m, dim), torch.long)
        index = torch.add(series, piece.transpose(1, 2), alpha=self.batch * dim, out=index)
        index = index.reshape(-1)
        k = self.table.shape[0] - 1
        rows = self.table
        coef = w("coef", (k + 1, nb * m * dim))
        if coef is None:
            coef = rows.index_select(1, index)
        else:
            for j in range(k + 1):
                torch.index_select(rows[j], 0, index, out=coef[j])
        coef = coef.view(k + 1, nb, m, dim)
        targets = [None if o is None else o[b0:b1] for o in outs or (None, None)]
        return self._horner(coef, dx.to(self.dtype), value, slope, *targets, w)

    @staticmethod
    def _horner(coef: Tensor, dx: Tensor, value: bool, slope: bool, out_v, out_d, w):
        """``p = sum_j coef[j] dx**j`` and ``p'``, into ``out_v`` / ``out_d`` when given."""
        k = coef.shape[0] - 1
        if not slope:
            p = coef[k]
            for j in range(k - 1, -1, -1):
                p = torch.addcmul(coef[j], p, dx, out=out_v if j == 0 else w(f"p{j % 2}", dx.shape))
            return p, None
        # Horner for p and p' together: dp <- dp * dx + p, then p <- p * dx + c_j.
        dp = coef[k] if k > 1 else torch.clone(coef[k]) if out_d is None else out_d.copy_(coef[k])
        p = torch.addcmul(coef[k - 1], coef[k], dx, out=out_v if k == 1 else w("p0", dx.shape))
        for j in range(k - 2, -1, -1):
            dp = torch.addcmul(p, dp, dx, out=out_d if j == 0 else w(f"d{j % 2}", dx.shape))
            if value or j:
                p = torch.addcmul(coef[j], p, dx, out=out_v if j == 0 else w(f"p{j % 2}", dx.shape))
        return (p if value else None), dp


class _Workspace:
    """Scratch buffers of one evaluation, reused by every chunk (fresh memory is slow)."""

    def __init__(self, dtype: torch.dtype, device: torch.device) -> None:
        self.dtype, self.device = dtype, device
        self.buffers: dict[str, Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype | None = None) -> Tensor:
        """A buffer named ``name`` of at least this size (default dtype: the values'), viewed
        with ``shape``."""
        dtype = dtype or self.dtype
        size = 1
        for s in shape:
            size *= s
        buf = self.buffers.get(name)
        if buf is None or buf.numel() < size:
            buf = self.buffers[name] = torch.empty(size, dtype=dtype, device=self.device)
        return buf[:size].view(shape)


def interpolate(
    times: Tensor, values: Tensor, degree: int = 3, mask: Tensor | None = None
) -> BSpline:
    """Fit the not-a-knot interpolating B-spline of every series (scipy's knots and control points).

    Each series (one sample x one feature) uses its observed entries only, with degree
    ``min(degree, n_obs - 1)``: one observation gives a constant, none gives NaN (legal).
    Knots: end knots repeated ``k + 1`` times; odd ``k``: interior knots
    ``t[(k+1)//2 : -((k+1)//2)]``; even ``k``: midpoints of consecutive times with ``k // 2``
    dropped at each end. Control points solve ``sum_c c_c B_c(t_i) = x_i`` exactly.

    Parameters
    ----------
    times : Tensor, shape (n,) or (batch, n)
        Observation times, shared by the batch or per sample; strictly increasing over the
        observed entries of each series (unobserved entries may hold anything, NaN included).
        Float64 times keep float64 knots.
    values : Tensor, shape (batch, n, d), float32 or float64
        Observations; masked-out entries may hold NaN.
    degree : int, default 3
        Requested degree, 1 to 5 (1 = piecewise linear).
    mask : Tensor of bool, shape (batch, n, d), optional
        True where observed; None = everything observed.

    Returns
    -------
    BSpline
        Evaluates ``S(t)`` and ``S'(t)``, shape ``(batch, m, d)`` for ``t (m,)`` or
        ``(batch, m)``.

    Raises
    ------
    ValueError
        Shapes, dtypes or devices that do not match; a degree outside 1-5 or not an int;
        NaN/inf in observed values or in the times of observed entries; observed times not
        strictly increasing within a series (the message names sample, feature and times).
    """
    times, values, mask = check_inputs(times, values, degree, mask)
    times = times.detach().to(torch.promote_types(times.dtype, values.dtype))
    if mask is not None and mask.numel() and bool(mask.all()):
        mask = None
    return BSpline(**fit_fields(times, values, int(degree), mask))
