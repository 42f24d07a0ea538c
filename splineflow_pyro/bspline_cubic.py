"""Cubic fast path of the not-a-knot fit (used by :mod:`splineflow_pyro.bspline_build`).

The not-a-knot cubic interpolant is unique, so instead of the banded B-spline collocation
solve it is computed from the slopes ``m_i = S'(t_i)`` (the tridiagonal system of
``scipy.interpolate.CubicSpline(bc_type="not-a-knot")``), one Thomas sweep vectorised over
all knot sets; the piecewise Taylor coefficients follow from Hermite interpolation and are
written straight into the spline's table (control points are derived on demand, see
:func:`splineflow_pyro.bspline_build.control_points`). Layout as in
:mod:`splineflow_pyro.bspline_fit`: ``(N, G)`` times, ``(N, G, R)`` values, padding rows
repeat the last observed time.

Elimination without pivoting: after the first step (multiplier 1) every pivot is positive
and at least the sum of two neighbouring gaps, except the last one, which is a positive
multiple of a gap (de Boor, *A Practical Guide to Splines*, chapter IV).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _system(h: Tensor, delta: Tensor, n_obs: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Tridiagonal slope system ``a_i m_{i-1} + b_i m_i + c_i m_{i+1} = r_i`` (rows ``< n_obs``).

    ``h (N-1, G, 1)`` gaps (1 in padding), ``delta (N-1, G, R)`` divided differences.
    Returns ``a, b, c`` of shape ``(N, G, 1)`` and ``r (N, G, R)``.
    """
    n = h.shape[0] + 1
    hl, hr = h[:-1], h[1:]  # h_{i-1}, h_i for rows i = 1 .. N-2
    a, b, c = (h.new_empty(n, *h.shape[1:]) for _ in range(3))
    r = delta.new_empty(n, *delta.shape[1:])
    a[0], a[-1], b[-1], c[-1], r[-1] = 0, 0, 1, 0, 0
    a[1:-1] = hr
    torch.add(hl, hr, alpha=1, out=b[1:-1]).mul_(2)
    c[1:-1] = hl
    torch.mul(delta[:-1], hr, out=r[1:-1]).addcmul_(delta[1:], hl).mul_(3)
    # First row (not-a-knot at t_1).
    h0, h1, d01 = h[0], h[1], h[0] + h[1]
    b[0], c[0] = h1, d01
    r[0] = ((h0 + 2 * d01) * h1 * delta[0] + h0 * h0 * delta[1]) / d01
    # Last row n - 1 (not-a-knot at t_{n-2}), then identity padding rows.
    last = (n_obs - 1).view(1, -1, 1)
    hn2, hn3 = h.gather(0, last - 1), h.gather(0, last - 2)
    dn2 = delta.gather(0, (last - 1).expand(1, -1, delta.shape[2]))
    dn3 = delta.gather(0, (last - 2).expand(1, -1, delta.shape[2]))
    d = hn2 + hn3
    # Rows past the last one hold finite garbage: with c = 0 in the last row they never
    # reach the real rows (forward sweep goes down, back substitution stops at c = 0).
    a.scatter_(0, last, d)
    b.scatter_(0, last, hn3)
    c.scatter_(0, last, torch.zeros_like(d))
    r_last = (hn2 * hn2 * dn3 + (2 * d + hn2) * hn3 * dn2) / d
    r.scatter_(0, last.expand(1, -1, r.shape[2]), r_last)
    return a, b, c, r


def _thomas(a: Tensor, b: Tensor, c: Tensor, r: Tensor) -> Tensor:
    """Solve the tridiagonal systems in place of ``r`` (``b`` is overwritten)."""
    n = b.shape[0]
    # Row views made once (one unbind per tensor is cheaper than two selects per step).
    rows_a, rows_b, rows_c, rows_r = a.unbind(0), b.unbind(0), c.unbind(0), r.unbind(0)
    for i in range(1, n):
        w = rows_a[i] / rows_b[i - 1]
        rows_b[i].addcmul_(w, rows_c[i - 1], value=-1)
        rows_r[i].addcmul_(w, rows_r[i - 1], value=-1)
    inv = b.reciprocal_()
    r.mul_(inv)
    c.mul_(inv)
    for i in range(n - 2, -1, -1):
        rows_r[i].addcmul_(rows_c[i], rows_r[i + 1], value=-1)
    return r


def cubic_fit(tc: Tensor, vc: Tensor, n_obs: Tensor, table: Tensor) -> None:
    """Not-a-knot cubic interpolants, written as Taylor coefficients into ``table``.

    Parameters
    ----------
    tc : Tensor, shape (N, G)
        Observed times, strictly increasing over ``j < n_obs``, padding repeats the last one.
    vc : Tensor, shape (N, G, R)
        Values (padding rows arbitrary but finite).
    n_obs : Tensor, shape (G,), int64
        Observations per knot set, each at least 4.
    table : Tensor, shape (4, I, G, R), I >= N + 1
        Output, any strides (a view of the spline's slot-major table). Slot 0 gets
        ``(y_0, 0, 0, 0)`` (the flat hold before ``t_0``); slot ``i + 1`` the Taylor
        coefficients of the piece on observed interval ``[t_i, t_{i+1}]`` about ``t_i``
        (the not-a-knot pieces on ``[t_0, t_2]`` and ``[t_{n-3}, t_{n-1}]`` are stored for
        each of their two intervals, so every piece is evaluated on its own interval only).
        Slots ``>= n_obs`` hold finite garbage (the caller writes the hold after the last
        time there).
    """
    n = tc.shape[0]
    rows = torch.arange(n - 1, device=tc.device)[:, None]
    gaps = tc[1:] - tc[:-1]
    inside = rows < (n_obs - 1)[None, :]
    h = torch.where(inside, gaps, torch.ones_like(gaps)).to(vc.dtype).unsqueeze(-1)
    delta = (vc[1:] - vc[:-1]).div_(h)
    a, b, c, r = _system(h, delta, n_obs)
    slope = _thomas(a, b, c, r)
    # Hermite -> Taylor on every observed interval i (slot i + 1): y_i, m_i, c2_i, c3_i.
    m0, m1 = slope[:-1], slope[1:]
    inv_h = h.reciprocal_()
    coefs = table[:, 1:n]
    coefs[0] = vc[:-1]
    coefs[1] = m0
    sum_m = torch.add(m0, m1, out=coefs[3])
    torch.mul(delta, 3, out=coefs[2]).sub_(sum_m).sub_(m0).mul_(inv_h)
    coefs[3].sub_(delta, alpha=2).mul_(inv_h.square_())
    table[0, 0] = vc[0]
    table[1:, 0] = 0
