"""Kernels of the batched not-a-knot B-spline fit (used by :mod:`splineflow_pyro.bspline`).

Every function works on a group of *knot sets* that share one degree ``k``. Arrays are laid
out observation-major, ``(N, G)`` or ``(N, G, R)``: ``N`` observation rows (compacted to the
front, padded at the end), ``G`` knot sets, ``R`` right-hand sides per knot set (series that
share the knots: all features of all samples for shared times, the features of one sample for
per-sample times, 1 for per-series masks). Row slices are then contiguous and every step of
the loops below is vectorised over ``G`` and ``R``.

Padding rows (``j >= n_obs`` of a knot set) must hold the knot set's last observed time; they
become identity rows of the collocation system and never reach an evaluated interval.

References: C. de Boor, *A Practical Guide to Splines* (BSPLVB, chapter X; not-a-knot,
chapter XIII); ``scipy.interpolate.make_interp_spline`` and its ``_not_a_knot`` (the oracle).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def not_a_knot_knots(tc: Tensor, n_obs: Tensor, k: int) -> Tensor:
    """Knot vectors of ``scipy.interpolate.make_interp_spline(t, y, k)`` (not-a-knot).

    End knots are repeated ``k + 1`` times; odd ``k``: interior knots
    ``t[(k+1)//2 : -((k+1)//2)]``; even ``k``: midpoints ``(t[j] + t[j+1]) / 2`` with ``k // 2``
    dropped at each end.

    Parameters
    ----------
    tc : Tensor, shape (N, G)
        Observed times compacted to the front, strictly increasing over ``j < n_obs``.
    n_obs : Tensor, shape (G,), int64
        Observations per knot set, each at least ``k + 1``.
    k : int
        Degree.

    Returns
    -------
    Tensor, shape (N + k + 1, G)
        Knots; entries past ``n_obs + k`` repeat the last time.
    """
    n = tc.shape[0]
    j = torch.arange(n + k + 1, device=tc.device)[:, None]
    last = (n_obs - 1)[None, :]
    half = (k + 1) // 2
    start, end = j <= k, j >= last + 1
    zero = torch.zeros_like(j)
    if k % 2:
        ia = torch.where(start, zero, torch.where(end, last, j - half))
        return tc.gather(0, ia)
    ia = torch.where(start, zero, torch.where(end, last, j - half - 1))
    ib = torch.where(start, zero, torch.where(end, last, j - half))
    return (tc.gather(0, ia) + tc.gather(0, ib)) / 2


def _safe(den: Tensor) -> Tensor:
    """Denominator with zeros (only in padding) replaced by 1, so no NaN reaches autograd."""
    return torch.where(den > 0, den, torch.ones_like(den))


def _cox_de_boor(x: Tensor, near: Tensor, k: int) -> list[Tensor]:
    """The ``k + 1`` non-zero B-splines at ``x`` (de Boor's BSPLVB).

    ``near[o]`` holds the knot ``span + o - k + 1`` for ``o = 0 .. 2k - 1``; all of shape of ``x``.
    """
    left = [None] + [x - near[k - p] for p in range(1, k + 1)]
    right = [None] + [near[k - 1 + p] - x for p in range(1, k + 1)]
    basis = [torch.ones_like(x)]
    for p in range(1, k + 1):
        saved = torch.zeros_like(x)
        new = []
        for r in range(p):
            temp = basis[r] / (right[r + 1] + left[p - r])
            new.append(saved + right[r + 1] * temp)
            saved = left[p - r] * temp
        new.append(saved)
        basis = new
    return basis


def basis_at_knots(knots: Tensor, k: int, dtype: torch.dtype, safe: bool) -> list[list[Tensor]]:
    """B-splines of every degree ``p <= k`` at the left knot of each interval.

    At a simple knot ``t_i`` (``i = a + k``, interval ``a``) the degree-``p`` B-splines that do
    not vanish are ``B_{i-p..i-1,p}`` (``B_{i,p}(t_i) = 0`` for ``p >= 1``).

    Parameters
    ----------
    knots : Tensor, shape (N + k + 1, G)
    k : int
    dtype : torch.dtype
    safe : bool
        Replace zero denominators (padding only) so that no NaN appears (for autograd).

    Returns
    -------
    list of list of Tensor
        ``out[p][r]``, shape (N - k, G): ``B_{a+k-p+r, p}(knots[a + k])``, ``r < max(p, 1)``.
    """
    m = knots.shape[0] - 2 * k - 1
    x = knots[k : k + m]
    left = [None] + [(x - knots[k + 1 - p : k + 1 - p + m]).to(dtype) for p in range(1, k + 1)]
    right = [None] + [(knots[k + p : k + p + m] - x).to(dtype) for p in range(1, k + 1)]
    one = torch.ones_like(right[1])
    degrees = [[one], [one]]
    for p in range(2, k + 1):
        prev = degrees[-1]
        saved = None
        new = []
        for r in range(p - 1):
            den = right[r + 1] + left[p - r]
            temp = prev[r] / (_safe(den) if safe else den)
            new.append(right[r + 1] * temp if saved is None else saved + right[r + 1] * temp)
            saved = left[p - r] * temp
        new.append(saved)
        degrees.append(new)
    return degrees


def collocation_band(
    tc: Tensor,
    knots: Tensor,
    n_obs: Tensor,
    k: int,
    dtype: torch.dtype,
    at_knots: list[Tensor] | None = None,
    workspace: Tensor | None = None,
) -> Tensor:
    """Collocation matrix ``A[j, c] = B_c(t_j)`` in band storage, padding rows = identity.

    Row ``j`` has its ``k + 1`` non-zeros at columns ``span_j - k .. span_j`` with
    ``span_j = clamp(j + (k+1)//2, k, n_obs - 1)`` (Cox-de Boor recursion). For odd ``k`` the
    interior sites are knots, whose rows are ``at_knots`` (degree ``k`` of
    :func:`basis_at_knots`); only ``(k+1)//2`` rows at each end are evaluated here.

    Parameters
    ----------
    tc : Tensor, shape (N, G)
        Interpolation sites (the observed times).
    knots : Tensor, shape (N + k + 1, G)
        From :func:`not_a_knot_knots`.
    n_obs : Tensor, shape (G,), int64
    k : int
    dtype : torch.dtype
        Dtype of the returned matrix (the values' dtype).
    at_knots : list of Tensor, optional
        For odd ``k``: ``basis_at_knots(...)[k]``.
    workspace : Tensor, optional
        Flat buffer of the values' dtype reused across calls (large fresh allocations are
        slow on CPU); a new tensor is allocated when it is missing or too small.

    Returns
    -------
    Tensor, shape (k + N + k, 2k + 1, G)
        ``band[k + j, c - j + k] = A[j, c]``; ``k`` identity rows before and after.
    """
    n, g = tc.shape
    dev = tc.device
    half = (k + 1) // 2
    size = (n + 2 * k) * (2 * k + 1) * g
    if workspace is not None and workspace.numel() >= size:
        band = workspace[:size].view(n + 2 * k, 2 * k + 1, g).zero_()
    else:
        band = torch.zeros(n + 2 * k, 2 * k + 1, g, dtype=dtype, device=dev)
    band[:k, k] = 1
    band[n + k :, k] = 1
    body = band[k : n + k]
    offsets = torch.arange(1 - k, k + 1, device=dev)[:, None, None]
    cols = torch.arange(k + 1, device=dev)[:, None]
    if at_knots is None:
        rows = torch.arange(n, device=dev)[:, None]
    else:
        # Interior rows j = half .. n_obs - 1 - half: sites are the knots of intervals j-half+1.
        j = torch.arange(half, n - half, device=dev)[:, None]
        inside = j < (n_obs - half)[None, :]
        for r in range(k):
            body[half : n - half, r + k - half + 1] = torch.where(inside, at_knots[r][1:], 0)
        ends = torch.arange(half, device=dev)[:, None]
        rows = torch.cat([ends.expand(half, g), (n_obs - half)[None, :] + ends], 0).clamp(min=0)
    x = tc.gather(0, rows.expand(-1, g).clamp(max=n - 1))
    span = torch.minimum((rows + half).clamp(min=k), (n_obs - 1)[None, :])
    near = knots.gather(0, (span.unsqueeze(0) + offsets).flatten(0, 1)).view(2 * k, *x.shape)
    basis = torch.stack(_cox_de_boor(x, near, k), 1).to(dtype)
    shift = (span - rows).clamp(0, k).unsqueeze(1) + cols
    if at_knots is None:
        padding = (rows >= n_obs[None, :]).unsqueeze(1)
        body.scatter_(1, shift, torch.where(padding, 0, basis))
    else:
        valid = (rows < n_obs[None, :]).unsqueeze(1).expand_as(basis)
        row_idx = rows.unsqueeze(1).expand_as(basis)
        set_idx = torch.arange(g, device=dev).expand_as(basis)
        body[row_idx[valid], shift[valid], set_idx[valid]] = basis[valid]
    pad = torch.arange(n, device=dev)[:, None] >= n_obs[None, :]
    body[:, k] += pad.to(dtype)
    return band


def banded_solve(band: Tensor, rhs: Tensor) -> Tensor:
    """Solve ``A x = rhs`` for banded ``A`` by Gaussian elimination without pivoting.

    B-spline collocation matrices at sites satisfying Schoenberg-Whitney are totally positive,
    so elimination without pivoting is stable (de Boor and Pinkus, 1977). The band is
    overwritten; the right-hand side is not (the rhs path stays differentiable).

    Parameters
    ----------
    band : Tensor, shape (k + N + k, 2k + 1, G)
        From :func:`collocation_band` (contiguous).
    rhs : Tensor, shape (N, G, R)

    Returns
    -------
    Tensor, shape (N, G, R)
    """
    n, g = rhs.shape[0], rhs.shape[1]
    k = (band.shape[1] - 1) // 2
    if n == 0:
        return rhs
    band = band.contiguous()
    row = (2 * k + 1) * g
    base = band.storage_offset() + k * row + k * g
    factors = []
    for p in range(n - 1):
        # window[r, s] = band[k + p + r, k - r + s] = A[p + r, p + s]
        window = band.as_strided((k + 1, k + 1, g), (2 * k * g, g, 1), base + p * row)
        factor = window[1:, 0] / window[0, 0]
        window[1:, 1:].addcmul_(factor[:, None, :], window[0:1, 1:], value=-1)
        factors.append(factor)
    if rhs.requires_grad:
        return _substitute_autograd(factors, band[k : n + k], rhs, k)
    y = torch.cat([rhs.new_zeros(k, *rhs.shape[1:]), rhs, rhs.new_zeros(k, *rhs.shape[1:])], 0)
    for p in range(n - 1):
        y[k + p + 1 : k + p + k + 1].addcmul_(factors[p][..., None], y[k + p], value=-1)
    inv = 1 / band[:, k]
    band[:, k + 1 :] *= inv[:, None]
    y *= inv[..., None]
    # Column-oriented back substitution: col[j][i] = U[j - k + i, j] (normalised rows).
    for j in range(n - 1, 0, -1):
        col = band.as_strided((k, g), (2 * k * g, 1), band.storage_offset() + j * row + 2 * k * g)
        y[j : j + k].addcmul_(col[..., None], y[j + k], value=-1)
    return y[k : n + k]


def _substitute_autograd(factors: list[Tensor], body: Tensor, rhs: Tensor, k: int) -> Tensor:
    """Forward and back substitution without in-place writes (values require grad)."""
    n = rhs.shape[0]
    rows = list(rhs.unbind(0))
    for p in range(n - 1):
        for r in range(1, min(k, n - 1 - p) + 1):
            rows[p + r] = torch.addcmul(rows[p + r], factors[p][r - 1, :, None], rows[p], value=-1)
    upper = body[:, k + 1 :].unsqueeze(-1)
    out: list[Tensor] = [rows[0]] * n
    for j in range(n - 1, -1, -1):
        acc = rows[j]
        for s in range(1, min(k, n - 1 - j) + 1):
            acc = torch.addcmul(acc, upper[j, s - 1], out[j + s], value=-1)
        out[j] = acc / body[j, k].unsqueeze(-1)
    return torch.stack(out, 0)


def power_coefficients(
    knots: Tensor, control: Tensor, k: int, degrees: list[list[Tensor]], dtype: torch.dtype
) -> Tensor:
    """Taylor coefficients of the spline on each knot interval (scipy's ``PPoly.from_spline``).

    On interval ``a`` (``[knots[a+k], knots[a+k+1])``), ``S(x) = sum_j coef[j, a] * dx**j``
    with ``dx = x - knots[a+k]`` and ``coef[j] = S^(j)(knots[a+k]+) / j!``, from the
    derivative control points ``c^(j)_l = (k-j+1) (c^(j-1)_l - c^(j-1)_{l-1}) /
    (t_{l+k-j+1} - t_l)`` and the degree ``k - j`` B-splines at the left knot.

    Parameters
    ----------
    knots : Tensor, shape (N + k + 1, G)
    control : Tensor, shape (N, G, R)
        Control points (padding rows arbitrary).
    k : int
    degrees : list of list of Tensor
        From :func:`basis_at_knots`.
    dtype : torch.dtype
        The values' dtype.

    Returns
    -------
    Tensor, shape (k + 1, N - k, G, R)
        Intervals ``a >= n_obs - k`` of a knot set hold finite garbage.
    """
    n = control.shape[0]
    m = n - k
    coefs = []
    deriv = control  # deriv[l - j] = c^(j)_l
    for j in range(k + 1):
        if j:
            den = _safe((knots[k + 1 : n + k - j + 1] - knots[j:n]).to(dtype)).unsqueeze(-1)
            deriv = (deriv[1:] - deriv[:-1]) * ((k - j + 1) / den)
        basis = degrees[k - j]
        total = deriv[0:m] * basis[0].unsqueeze(-1) if k - j > 1 else deriv[0:m]
        for r in range(1, len(basis) if k - j > 1 else 0):
            total = torch.addcmul(total, deriv[r : r + m], basis[r].unsqueeze(-1))
        coefs.append(total / math.factorial(j) if j > 1 else total)
    return torch.stack(coefs, 0)
