"""Input checks of :mod:`splineflow_pyro.bspline`: each error names the argument, the index
or value at fault, and the fix."""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

MAX_DEGREE = 5
FLOATS = (torch.float32, torch.float64)


def _as_tensor(name: str, x: object, device: torch.device | None = None) -> Tensor:
    if isinstance(x, Tensor):
        return x
    try:
        return torch.as_tensor(x, device=device)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"{name} must be a torch.Tensor (or array-like), got {type(x)!r}") from e


def check_inputs(
    times: object, values: object, degree: object, mask: object
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Validate the arguments of :func:`splineflow_pyro.bspline.interpolate`.

    Returns ``(times, values, mask)`` as tensors; integer times become float64.
    """
    if isinstance(degree, bool) or not isinstance(degree, numbers.Integral):
        raise ValueError(f"degree must be an int from 1 to {MAX_DEGREE}, got {degree!r}")
    if not 1 <= int(degree) <= MAX_DEGREE:
        raise ValueError(f"degree must be from 1 to {MAX_DEGREE}, got {degree}")
    values = _as_tensor("values", values)
    if values.dtype not in FLOATS:
        raise ValueError(
            f"values must be float32 or float64, got {values.dtype}; convert with .double()"
        )
    if values.ndim != 3:
        raise ValueError(
            f"values must have shape (batch, n, d), got {tuple(values.shape)}; "
            "add a feature axis with values[..., None] for one feature"
        )
    batch, n, d = values.shape
    times = _as_tensor("times", times, values.device)
    if times.device != values.device:
        raise ValueError(f"times is on {times.device} but values on {values.device}")
    if not (times.dtype.is_floating_point or times.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"times must be float or int, got {times.dtype}")
    if not times.dtype.is_floating_point:
        times = times.to(torch.float64)
    if times.shape not in ((n,), (batch, n)):
        raise ValueError(
            f"times must have shape (n,) = ({n},) or (batch, n) = ({batch}, {n}) to match "
            f"values {tuple(values.shape)}, got {tuple(times.shape)}"
        )
    if mask is not None:
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            kind = mask.dtype if isinstance(mask, Tensor) else type(mask)
            raise ValueError(f"mask must be a torch.bool tensor (True = observed), got {kind}")
        if mask.shape != values.shape:
            raise ValueError(
                f"mask must have the shape of values {tuple(values.shape)}, got {tuple(mask.shape)}"
            )
        if mask.device != values.device:
            raise ValueError(f"mask is on {mask.device} but values on {values.device}")
    # One cheap reduction first; the elementwise check only when something is not finite.
    total = values.sum() if values.numel() else values.new_zeros(())
    bad = None if bool(torch.isfinite(total)) else ~torch.isfinite(values)
    if bad is not None and mask is not None:
        bad &= mask
    if bad is not None and bool(bad.any()):
        b, i, f = (int(v) for v in bad.nonzero()[0])
        raise ValueError(
            f"values[{b}, {i}, {f}] = {values[b, i, f].item()} is observed but not finite; "
            "mark it missing with mask=False or fix the data"
        )
    finite = torch.isfinite(times)
    if bool(finite.all()):  # the usual case: no need to look at the mask
        return times, values, mask
    used = torch.ones(batch, n, dtype=torch.bool, device=values.device)
    if mask is not None:
        used = mask.any(-1)
    if times.ndim == 1:
        used = used.any(0)
    bad = used & ~finite
    if bool(bad.any()):
        where = ", ".join(str(int(v)) for v in bad.nonzero()[0])
        value = times[tuple(int(v) for v in bad.nonzero()[0])].item()
        raise ValueError(
            f"times[{where}] = {value} is not finite but has observed values; "
            "give every observed entry a finite time"
        )
    return times, values, mask


def _increasing_error(b: int, f: int | None, i1: int, i2: int, t1: float, t2: float, shared: bool):
    which = f"times[{i1}]" if shared else f"times[{b}, {i1}]"
    which2 = f"times[{i2}]" if shared else f"times[{b}, {i2}]"
    series = f"sample {b}" if f is None else f"sample {b}, feature {f}"
    return ValueError(
        f"times must be strictly increasing over the observed entries of each series: "
        f"{series} has {which} = {t1!r} followed by {which2} = {t2!r}; sort each sample's "
        "observations by time and drop (or mask out) duplicates"
    )


def check_increasing(times: Tensor) -> None:
    """Times of a fully observed batch, ``(n,)`` or ``(batch, n)``, strictly increasing."""
    bad = times[..., 1:] <= times[..., :-1]
    if bool(bad.any()):
        pos = [int(v) for v in bad.nonzero()[0]]
        i = pos[-1]
        b = pos[0] if times.ndim == 2 else 0
        row = times[b] if times.ndim == 2 else times
        raise _increasing_error(
            b, None, i, i + 1, row[i].item(), row[i + 1].item(), times.ndim == 1
        )


def check_increasing_series(
    tc: Tensor, n_obs: Tensor, mask: Tensor, shared: bool, offset: int = 0
) -> None:
    """Compacted observed times ``tc (N, S)`` strictly increasing over ``j < n_obs``.

    ``mask (batch, n, d)`` names the original indices; ``offset`` is the chunk's first sample.
    """
    if tc.shape[0] < 2:
        return
    j = torch.arange(1, tc.shape[0], device=tc.device)[:, None]
    bad = (tc[1:] <= tc[:-1]) & (j < n_obs[None, :])
    if bool(bad.any()):
        j, s = (int(v) for v in bad.nonzero()[0])
        b, f = divmod(s, mask.shape[2])
        cols = mask[b, :, f].nonzero().squeeze(1)
        i1, i2 = int(cols[j]), int(cols[j + 1])
        raise _increasing_error(offset + b, f, i1, i2, tc[j, s].item(), tc[j + 1, s].item(), shared)


def check_queries(t: object, batch: int, dtype: torch.dtype) -> Tensor:
    """Query times ``(m,)`` or ``(batch, m)`` -> ``(1 or batch, 1, m)`` in the time dtype."""
    t = _as_tensor("t", t)
    if t.ndim == 0:
        raise ValueError("t must have shape (m,) or (batch, m), got a scalar; use t[None]")
    if t.ndim > 2 or (t.ndim == 2 and t.shape[0] != batch):
        raise ValueError(
            f"t must have shape (m,) or (batch, m) = ({batch}, m), got {tuple(t.shape)}"
        )
    if bool(torch.isnan(t).any()):
        where = ", ".join(str(int(v)) for v in torch.isnan(t).nonzero()[0])
        raise ValueError(f"t[{where}] is NaN; query times must be numbers (+-inf allowed)")
    x = t.to(dtype)
    return x[None, None, :] if x.ndim == 1 else x[:, None, :]
