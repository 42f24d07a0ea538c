"""Couplings: which observations go together along one conditional path.

Tracked data need no work here: the sample id *is* the coupling (the observations of one
sample form one path). Unpaired snapshots (a population measured at times
``t_0 < ... < t_{K-1}``, different individuals each time, marginals of any sizes) are
coupled by minibatch optimal transport between consecutive marginals, chained into
K-tuples (Tong et al., "Improving and generalizing flow-based generative models with
minibatch optimal transport", 2023; SplineFlow, Rathod, Liò, Zhang, arXiv 2601.23072,
the multi-marginal snapshot setting).

The OT problem between ``x`` (``n0`` cells) and ``y`` (``n1`` cells), uniform weights
``a_i = 1/n0``, ``b_j = 1/n1``, squared-Euclidean cost::

    min_P  sum_ij P_ij |x_i - y_j|^2   s.t.  P 1 = a,  P^T 1 = b,  P >= 0.

``"exact"`` solves it with POT's network simplex (``ot.emd``); ``"sinkhorn"`` adds the
entropic term ``reg * sum_ij P_ij log P_ij`` (``ot.sinkhorn``, log-stabilised). Plans are
computed on the CPU in float64 numpy (the cost of a minibatch is small); only indices go
back to the tensors' device, so everything here is device-agnostic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import ot
import torch
from scipy.spatial.distance import cdist

__all__ = ["OT_METHODS", "chain_couplings", "chain_indices", "ot_plan"]

OT_METHODS: tuple[str, ...] = ("exact", "sinkhorn")
"""Known values of the ``method`` argument."""

_EMD_MAX_ITER = 1_000_000
_SINKHORN_MAX_ITER = 10_000
_SINKHORN_STOP = 1e-9


# --------------------------------------------------------------------------- validation


def _check_method(method: str, reg: float) -> None:
    if method not in OT_METHODS:
        raise ValueError(
            f"method={method!r} is not a known OT method; use one of {list(OT_METHODS)}."
        )
    if method == "sinkhorn" and not (
        isinstance(reg, int | float | np.floating) and np.isfinite(reg) and reg > 0
    ):
        raise ValueError(
            f"reg={reg!r} must be a finite number > 0 for method='sinkhorn' "
            "(it multiplies the entropy; the cost is normalised to max 1, so 0.01-0.1 is typical)."
        )


def _check_cells(x: object, name: str) -> torch.Tensor:
    """Shape/emptiness checks for one set of cells, shape ``(n, d)``."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (n, d), got {type(x).__name__}.")
    if x.ndim != 2:
        raise ValueError(
            f"{name} must have shape (n, d) (cells x features), got shape {tuple(x.shape)}; "
            "reshape it, e.g. x.reshape(len(x), -1)."
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 cells); every marginal needs at least one cell.")
    if not (x.is_floating_point()):
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}.")
    return x


def _check_finite(x: np.ndarray, name: str, rows: torch.Tensor | None = None) -> None:
    """Raise if a row of ``x`` is not finite; ``rows`` maps local rows to the caller's."""
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad.size:
        first = int(bad[0]) if rows is None else int(rows[int(bad[0])])
        raise ValueError(
            f"{name} has non-finite values (NaN/inf) in cell (row) {first}; drop or impute "
            "such cells before coupling."
        )


# --------------------------------------------------------------------------- plans


def _plan_numpy(x0: np.ndarray, x1: np.ndarray, method: str, reg: float) -> np.ndarray:
    """OT plan between float64 arrays ``x0 (n0, d)`` and ``x1 (n1, d)``; ``(n0, n1)``."""
    n0, n1 = x0.shape[0], x1.shape[0]
    a = np.full(n0, 1.0 / n0)
    b = np.full(n1, 1.0 / n1)
    cost = cdist(x0, x1, metric="sqeuclidean")
    if method == "exact":
        return ot.emd(a, b, cost, numItermax=_EMD_MAX_ITER)
    scale = cost.max()
    if scale > 0:
        cost = cost / scale
    return ot.sinkhorn(
        a,
        b,
        cost,
        reg,
        method="sinkhorn_stabilized",
        numItermax=_SINKHORN_MAX_ITER,
        stopThr=_SINKHORN_STOP,
    )


def ot_plan(
    x0: torch.Tensor,
    x1: torch.Tensor,
    *,
    method: str = "exact",
    reg: float = 0.05,
) -> torch.Tensor:
    r"""Optimal transport plan between two point clouds with uniform weights.

    Solves :math:`\min_P \sum_{ij} P_{ij} \lVert x_{0,i} - x_{1,j} \rVert^2` subject to
    :math:`P \mathbf 1 = \mathbf 1 / n_0`, :math:`P^\top \mathbf 1 = \mathbf 1 / n_1`,
    :math:`P \ge 0` (plus :math:`\mathrm{reg} \sum_{ij} P_{ij} \log P_{ij}` for Sinkhorn).

    Parameters
    ----------
    x0 : Tensor, shape (n0, d)
        Source cells.
    x1 : Tensor, shape (n1, d)
        Target cells (``n1`` may differ from ``n0``).
    method : {"exact", "sinkhorn"}
        ``"exact"``: network simplex (``ot.emd``). For ``n0 == n1`` the plan is a
        permutation matrix divided by ``n0`` (a vertex of the Birkhoff polytope).
        ``"sinkhorn"``: entropic OT (``ot.sinkhorn``, log-stabilised).
    reg : float
        Entropic regularisation for ``"sinkhorn"`` (ignored for ``"exact"``). The cost
        matrix is divided by its maximum before Sinkhorn, so ``reg`` is relative to the
        largest squared distance and the kernel ``exp(-M / reg)`` stays in range whatever
        the data's scale. The plan approaches the exact plan as ``reg -> 0``.

    Returns
    -------
    Tensor, shape (n0, n1)
        The plan, rows summing to ``1/n0`` and columns to ``1/n1``; dtype of ``x0`` and on
        ``x0``'s device. Computed in float64 on the CPU.

    Raises
    ------
    ValueError
        Unknown ``method``, bad ``reg``, empty or non-2-D input, feature dimensions that
        differ, or non-finite values.
    """
    _check_method(method, reg)
    _check_cells(x0, "x0")
    _check_cells(x1, "x1")
    if x0.shape[1] != x1.shape[1]:
        raise ValueError(
            f"x0 and x1 must have the same number of features, got x0 (n0, d) = "
            f"{tuple(x0.shape)} and x1 (n1, d) = {tuple(x1.shape)}."
        )
    a0 = x0.detach().to("cpu", torch.float64).numpy()
    a1 = x1.detach().to("cpu", torch.float64).numpy()
    _check_finite(a0, "x0")
    _check_finite(a1, "x1")
    plan = _plan_numpy(a0, a1, method, reg)
    return torch.as_tensor(plan, dtype=x0.dtype, device=x0.device)


# --------------------------------------------------------------------------- chaining


def _as_permutation(plan: np.ndarray) -> np.ndarray | None:
    """Target index per row if ``plan`` is a scaled permutation matrix, else ``None``."""
    perm = plan.argmax(axis=1)
    n = plan.shape[0]
    if np.array_equal(np.sort(perm), np.arange(n)) and np.count_nonzero(plan > 0.5 / n) == n:
        return perm
    return None


def _permutation_in_support(plan: np.ndarray) -> np.ndarray:
    """A permutation inside the support of a square uniform-marginal (optimal) plan.

    ``ot.emd`` returns a vertex (a scaled permutation) in practice; should it ever return a
    non-vertex optimal plan, any permutation in its support is also optimal (complementary
    slackness), and Birkhoff's theorem guarantees one exists.
    """
    perm = _as_permutation(plan)
    if perm is not None:
        return perm
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(plan, maximize=True)
    return cols[np.argsort(rows)]


def _draw_minibatch(n: int, batch_size: int, generator: torch.Generator | None) -> torch.Tensor:
    """Indices of one marginal's minibatch: ``batch_size`` without replacement, or all cells."""
    if n > batch_size:
        return torch.randperm(n, generator=generator)[:batch_size]
    return torch.randperm(n, generator=generator)


def chain_indices(
    marginals: Sequence[torch.Tensor],
    batch_size: int,
    *,
    method: str = "exact",
    reg: float = 0.05,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Indices of a minibatch of OT-chained K-tuples across consecutive marginals.

    1. **Minibatches.** From each marginal ``k`` with ``n_k >= batch_size`` cells, draw
       ``batch_size`` cells *without* replacement; a marginal with fewer cells contributes
       all its ``n_k`` cells.
    2. **Plans.** Between consecutive minibatches, the OT plan of :func:`ot_plan`
       (:math:`\min_P \sum_{ij} P_{ij} \lVert x_i - y_j \rVert^2`, uniform weights).
    3. **Chain.** The tuples start at the ``t_0`` minibatch, each cell once (if the
       ``t_0`` minibatch is smaller than ``batch_size``, its cells are repeated in shuffled
       rounds, each ``floor`` or ``ceil(batch_size / n_0)`` times). Each next cell follows
       the plan from the current one:

       - ``method="exact"`` and equal minibatch sizes: the plan is a scaled permutation, so
         it is followed deterministically, and every cell of every minibatch appears
         exactly once across the tuples (when all marginals have at least ``batch_size``
         cells). No cell is duplicated or dropped.
       - otherwise (a minibatch smaller than the others, or ``method="sinkhorn"``): the
         next cell is drawn from the row conditional :math:`P_{ij} / \sum_j P_{ij}`, *with
         replacement* across tuples, using ``generator``.

    Parameters
    ----------
    marginals : sequence of K Tensors, each shape (n_k, d)
        Cells observed at each time, in time order; sizes may differ, ``d`` may not. Any
        device; all float dtypes.
    batch_size : int
        Number of tuples, ``>= 1``.
    method : {"exact", "sinkhorn"}
        OT solver, see :func:`ot_plan`.
    reg : float
        Entropic regularisation for ``"sinkhorn"`` (relative to the largest squared
        distance of each minibatch pair).
    generator : torch.Generator, optional
        CPU generator for all random draws (minibatches and row sampling); the result is
        deterministic given its state. ``None`` uses torch's global generator.

    Returns
    -------
    LongTensor, shape (batch_size, K)
        ``out[b, k]`` indexes ``marginals[k]``; on the CPU.

    Raises
    ------
    ValueError
        No marginals, a malformed marginal (named by its index), features that differ,
        non-finite values in a drawn cell, bad ``batch_size``, ``method`` or ``reg``, or a
        non-CPU ``generator``.
    """
    _check_method(method, reg)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}.")
    if generator is not None and generator.device.type != "cpu":
        raise ValueError(
            f"generator must be a CPU torch.Generator (plans are sampled on the CPU), got "
            f"one on {generator.device}; create it with torch.Generator()."
        )
    if len(marginals) == 0:
        raise ValueError("marginals is empty; pass one (n_k, d) tensor per observed time.")
    for k, x in enumerate(marginals):
        _check_cells(x, f"marginals[{k}]")
        if x.shape[1] != marginals[0].shape[1]:
            raise ValueError(
                f"marginals[{k}] has {x.shape[1]} features but marginals[0] has "
                f"{marginals[0].shape[1]}; all marginals must share the feature dimension d."
            )

    # minibatch indices into each marginal and their cells (float64, CPU) for the plans
    mb_idx: list[torch.Tensor] = []
    mb_x: list[np.ndarray] = []
    for k, x in enumerate(marginals):
        idx = _draw_minibatch(x.shape[0], batch_size, generator)
        cells = x.detach()[idx.to(x.device)].to("cpu", torch.float64).numpy()
        _check_finite(cells, f"marginals[{k}]", rows=idx)
        mb_idx.append(idx)
        mb_x.append(cells)

    # local indices (into the current minibatch) of the cell each tuple is at
    n_first = mb_idx[0].numel()
    if n_first == batch_size:
        cur = torch.arange(n_first)
    else:  # a small t_0 marginal: its cells in shuffled rounds, each floor/ceil times
        rounds = -(-batch_size // n_first)
        perms = [torch.randperm(n_first, generator=generator) for _ in range(rounds)]
        cur = torch.cat(perms)[:batch_size]

    out = torch.empty(batch_size, len(marginals), dtype=torch.long)
    out[:, 0] = mb_idx[0][cur]
    for k in range(1, len(marginals)):
        plan = _plan_numpy(mb_x[k - 1], mb_x[k], method, reg)
        if method == "exact" and plan.shape[0] == plan.shape[1]:
            cur = torch.from_numpy(_permutation_in_support(plan))[cur]
        else:
            rows = torch.from_numpy(plan)[cur].clamp_min_(0.0)
            cur = torch.multinomial(rows, 1, replacement=True, generator=generator)[:, 0]
        out[:, k] = mb_idx[k][cur]
    return out


def chain_couplings(
    marginals: Sequence[torch.Tensor],
    batch_size: int,
    *,
    method: str = "exact",
    reg: float = 0.05,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A minibatch of OT-chained K-tuples of cells, one tuple per conditional path.

    ``chain_couplings(...)[:, k] == marginals[k][chain_indices(...)[:, k]]`` for the same
    generator state; see :func:`chain_indices` for the sampling rules (each cell exactly once
    for exact OT with equal minibatch sizes; draws with replacement otherwise).

    Parameters
    ----------
    marginals : sequence of K Tensors, each shape (n_k, d)
        Cells observed at each time, in time order; same dtype and device for all.
    batch_size : int
        Number of tuples.
    method : {"exact", "sinkhorn"}
        OT solver, see :func:`ot_plan`.
    reg : float
        Entropic regularisation for ``"sinkhorn"``.
    generator : torch.Generator, optional
        CPU generator for all random draws.

    Returns
    -------
    Tensor, shape (batch_size, K, d)
        ``out[b, k]`` is the cell at time ``t_k`` of tuple ``b``; dtype and device of the
        marginals.

    Raises
    ------
    ValueError
        As :func:`chain_indices`, and for marginals of different dtypes or devices.
    """
    for k, x in enumerate(marginals):
        if isinstance(x, torch.Tensor) and isinstance(marginals[0], torch.Tensor):
            ref = marginals[0]
            if x.dtype != ref.dtype or x.device != ref.device:
                raise ValueError(
                    f"marginals[{k}] is {x.dtype} on {x.device} but marginals[0] is "
                    f"{ref.dtype} on {ref.device}; convert them all with .to(dtype, device)."
                )
    idx = chain_indices(marginals, batch_size, method=method, reg=reg, generator=generator)
    return torch.stack(
        [x[idx[:, k].to(x.device)] for k, x in enumerate(marginals)],
        dim=1,
    )
