"""ODE / SDE integration of learned velocity fields.

Inference in SplineFlow integrates ``dx/dt = v(x, t)`` from any observed time to any query
time, forwards or backwards (DESIGN.md, "The method, precisely"), and the stochastic variant
integrates ``dx = f(x, t) dt + g(t) dW`` with Euler-Maruyama.

Query times may come in any order, may repeat and may lie on both sides of the start time
(FC-09): the later times are integrated forwards from ``t0`` and the earlier ones backwards,
each over its own sorted grid, and the results are scattered back to the caller's order.
Blow-ups and non-finite velocities raise :class:`SolverError` naming what happened and the
time reached (FC-11), never a bare ``AssertionError`` from torchdiffeq.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["SolverError", "integrate", "integrate_sde"]

Field = Callable[[Tensor, Tensor], Tensor]

_METHODS = ("dopri5", "rk4", "euler")


class SolverError(RuntimeError):
    """The integration failed: the state diverged or the field returned a non-finite value.

    The message names what happened, the method and the time reached.
    """


# --------------------------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------------------------


def _query_times(times: Sequence[float] | Tensor) -> list[float]:
    if isinstance(times, Tensor):
        if times.ndim > 1:
            raise ValueError(
                f"`times` must be 1-D (m,), got shape {tuple(times.shape)}; flatten it first"
            )
        values = times.detach().to("cpu", torch.float64).reshape(-1).tolist()
    else:
        try:
            values = [float(t) for t in times]
        except TypeError as e:
            raise ValueError(
                f"`times` must be a sequence of floats or a 1-D tensor, got {type(times).__name__}"
            ) from e
    for i, t in enumerate(values):
        if not math.isfinite(t):
            raise ValueError(f"`times[{i}]` = {t} is not finite; query times must be finite")
    return values


def _check_start(x0: Tensor, t0: float, step_size: float) -> float:
    if not isinstance(x0, Tensor):
        raise ValueError(f"`x0` must be a torch.Tensor of shape (batch, d), got {type(x0)}")
    if x0.ndim != 2:
        raise ValueError(f"`x0` must have shape (batch, d), got shape {tuple(x0.shape)}")
    if not torch.is_floating_point(x0):
        raise ValueError(f"`x0` must be a floating-point tensor, got dtype {x0.dtype}")
    if not bool(torch.isfinite(x0).all()):
        raise ValueError("`x0` contains non-finite values; the start state must be finite")
    if not (step_size > 0 and math.isfinite(step_size)):
        raise ValueError(f"`step_size` must be a positive finite float, got {step_size}")
    t0 = float(t0)
    if not math.isfinite(t0):
        raise ValueError(f"`t0` must be finite, got {t0}")
    return t0


def _fmt(t: float) -> str:
    return f"{t:.6g}"


def _n_steps(length: float, step_size: float) -> int:
    """Number of equal steps covering ``length`` with steps no longer than ``step_size``."""
    # The relative slack keeps 1.0 / 0.01 = 100.00000000000001 at 100 steps.
    return max(1, math.ceil(abs(length) / step_size * (1.0 - 1e-12)))


def _scatter(times: list[float], t0: float, x0: Tensor, solved: dict[float, Tensor]) -> Tensor:
    """Stack the solved states in the caller's order: (m, batch, d)."""
    if not times:
        return x0.new_empty((0, *x0.shape))
    return torch.stack([x0 if t == t0 else solved[t] for t in times])


class _WatchedField:
    """Wraps ``field(t, x)``: casts ``t``, checks shape and finiteness, records progress.

    ``callback_step`` is torchdiffeq's hook, called with the last accepted (t, y) before each
    step attempt; it is where dopri5 states are checked for divergence.
    """

    def __init__(self, field: Field, x0: Tensor, method: str, max_abs: float) -> None:
        self.field = field
        self.dtype = x0.dtype
        self.method = method
        self.max_abs = max_abs
        self.t_reached = 0.0
        self.abs_reached = float(x0.detach().abs().max()) if x0.numel() else 0.0

    def __call__(self, t: Tensor, x: Tensor) -> Tensor:
        v = self.field(t.to(self.dtype), x)
        if not isinstance(v, Tensor) or v.shape != x.shape:
            got = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise ValueError(
                f"the velocity field must return a tensor of the state's shape "
                f"{tuple(x.shape)}, got {got}"
            )
        if not bool(torch.isfinite(v).all()):
            extra = ""
            if self.method == "dopri5":
                extra = f"; last accepted step at t = {_fmt(self.t_reached)}"
            raise SolverError(
                f"the velocity field returned a non-finite value at t = "
                f"{_fmt(float(t.detach()))} (method {self.method}{extra})"
            )
        return v

    def check_state(self, t: float, x: Tensor) -> None:
        """Record (t, |x|) and raise if the state is non-finite or beyond ``max_abs``."""
        self.t_reached = t
        if not bool(torch.isfinite(x).all()):
            raise SolverError(
                f"the state became non-finite near t = {_fmt(t)} (method {self.method})"
            )
        self.abs_reached = float(x.detach().abs().max()) if x.numel() else 0.0
        if self.abs_reached > self.max_abs:
            raise SolverError(
                f"the state diverged (|x| = {self.abs_reached:.3g} > {self.max_abs:.3g}) "
                f"near t = {_fmt(t)} (method {self.method})"
            )

    def callback_step(self, t0: Tensor, y0: Tensor, dt: Tensor) -> None:
        self.check_state(float(t0.detach()), y0)


# --------------------------------------------------------------------------------------------
# one-directional solves: t0 -> sorted targets (all on one side of t0)
# --------------------------------------------------------------------------------------------


def _solve_dopri5(
    watched: _WatchedField,
    x0: Tensor,
    t0: float,
    targets: list[float],
    *,
    rtol: float,
    atol: float,
    max_steps: int,
) -> list[Tensor]:
    from torchdiffeq import odeint

    # Times in float64 (torchdiffeq's mixed precision) so float32 states still hit the
    # query times exactly; MPS has no float64.
    t_dtype = torch.float32 if x0.device.type == "mps" else torch.float64
    grid = torch.tensor([t0, *targets], dtype=t_dtype, device=x0.device)
    watched.t_reached = t0
    try:
        out = odeint(
            watched,
            x0,
            grid,
            rtol=rtol,
            atol=atol,
            method="dopri5",
            options={"max_num_steps": max_steps},
        )
    except AssertionError as e:
        what = str(e)
        where = f"near t = {_fmt(watched.t_reached)} (method dopri5)"
        if "max_num_steps" in what:
            msg = (
                f"the solver needed more than max_steps = {max_steps} steps between two query "
                f"times and stopped {where}; the dynamics may be stiff: raise max_steps or use "
                "a fixed-step method"
            )
        elif watched.abs_reached > 1e3 * max(1.0, float(x0.detach().abs().max())):
            msg = f"the state diverged (|x| = {watched.abs_reached:.3g}) {where}: {what}"
        else:
            msg = f"the step size underflowed {where} (stiff or discontinuous dynamics?): {what}"
        raise SolverError(msg) from e
    for k, t in enumerate(targets, start=1):
        if not bool(torch.isfinite(out[k]).all()):
            raise SolverError(
                f"the state became non-finite before t = {_fmt(t)} (method dopri5), "
                f"last accepted step at t = {_fmt(watched.t_reached)}"
            )
    return list(out[1:].unbind(0))


def _time(t: float, x: Tensor) -> Tensor:
    return torch.tensor(t, dtype=torch.float64, device=x.device)


def _rk4_step(f: Field, t: float, h: float, x: Tensor) -> Tensor:
    """Classic 4th-order Runge-Kutta step from (t, x) to t + h."""
    k1 = f(_time(t, x), x)
    k2 = f(_time(t + 0.5 * h, x), x + (0.5 * h) * k1)
    k3 = f(_time(t + 0.5 * h, x), x + (0.5 * h) * k2)
    k4 = f(_time(t + h, x), x + h * k3)
    return x + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def _euler_step(f: Field, t: float, h: float, x: Tensor) -> Tensor:
    """Explicit Euler step from (t, x) to t + h."""
    return x + h * f(_time(t, x), x)


def _solve_fixed(
    watched: _WatchedField,
    x0: Tensor,
    t0: float,
    targets: list[float],
    *,
    step: Callable[[Field, float, float, Tensor], Tensor],
    step_size: float,
    max_steps: int,
) -> list[Tensor]:
    bounds = [t0, *targets]
    counts = [_n_steps(b - a, step_size) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    if sum(counts) > max_steps:
        raise ValueError(
            f"`step_size` = {step_size} needs {sum(counts)} steps to cover "
            f"[{_fmt(min(bounds))}, {_fmt(max(bounds))}], more than `max_steps` = {max_steps}; "
            "use a larger step_size or raise max_steps"
        )
    x = x0
    out = []
    for a, b, n in zip(bounds[:-1], bounds[1:], counts, strict=True):
        h = (b - a) / n
        for k in range(n):
            x = step(watched, a + k * h, h, x)
            watched.check_state(b if k == n - 1 else a + (k + 1) * h, x)
        out.append(x)
    return out


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def integrate(
    field: Field,
    x0: Tensor,
    t0: float,
    times: Sequence[float] | Tensor,
    *,
    method: str = "dopri5",
    rtol: float = 1e-7,
    atol: float = 1e-9,
    step_size: float = 0.01,
    max_steps: int = 1_000_000,
    max_abs: float = 1e10,
) -> Tensor:
    """Integrate ``dx/dt = field(t, x)`` from ``x(t0) = x0`` to every query time.

    Parameters
    ----------
    field : callable ``field(t, x) -> Tensor``
        ``t`` is a 0-dim tensor (dtype and device of ``x0``), ``x`` has shape (batch, d);
        returns the velocity, shape (batch, d).
    x0 : Tensor, shape (batch, d)
        Finite start state at time ``t0``. float32 or float64, any device.
    t0 : float
        Start time.
    times : sequence of float or Tensor, shape (m,)
        Query times in any order; repeats allowed; times before ``t0`` are integrated
        backwards and times after it forwards, each direction from ``t0`` over its own sorted
        grid. A query equal to ``t0`` returns ``x0`` itself.
    method : {"dopri5", "rk4", "euler"}
        ``dopri5``: adaptive Dormand-Prince 5(4) (torchdiffeq) with ``rtol``/``atol``.
        ``rk4`` (classic 4th order) and ``euler``: fixed steps; each interval between
        consecutive sorted query times is cut into ``ceil(length / step_size)`` equal steps,
        so every query time is hit exactly.
    rtol, atol : float
        Tolerances of ``dopri5``.
    step_size : float
        Largest step (time units) of the fixed-step methods.
    max_steps : int
        ``dopri5``: most steps between two consecutive query times; fixed-step: most steps in
        all (checked before integrating).
    max_abs : float
        A state with ``|x| > max_abs`` counts as diverged (``math.inf`` disables the check).

    Returns
    -------
    Tensor, shape (m, batch, d)
        ``x(times[i])`` at row ``i``, in the caller's order; repeated times give identical rows.

    Raises
    ------
    SolverError
        The velocity field returned a non-finite value, the state became non-finite or
        exceeded ``max_abs``, or dopri5's step size underflowed / it ran out of steps. The
        message names what happened, the method and the time reached (FC-11).
    ValueError
        Bad arguments (shapes, unknown method, non-positive step size, ...).

    Notes
    -----
    Autograd is not disabled: gradients flow through the solve (discretise-then-optimise).
    """
    t0 = _check_start(x0, t0, step_size)
    if method not in _METHODS:
        raise ValueError(f"`method` must be one of {_METHODS}, got {method!r}")
    if not max_steps >= 1:
        raise ValueError(f"`max_steps` must be >= 1, got {max_steps}")
    if not (rtol > 0 and atol >= 0):
        raise ValueError(f"`rtol` must be > 0 and `atol` >= 0, got rtol={rtol}, atol={atol}")
    query = _query_times(times)

    forward = sorted({t for t in query if t > t0})
    backward = sorted({t for t in query if t < t0}, reverse=True)
    solved: dict[float, Tensor] = {}
    for targets in (forward, backward):
        if not targets:
            continue
        watched = _WatchedField(field, x0, method, max_abs)
        if method == "dopri5":
            states = _solve_dopri5(
                watched, x0, t0, targets, rtol=rtol, atol=atol, max_steps=int(max_steps)
            )
        else:
            step = _rk4_step if method == "rk4" else _euler_step
            states = _solve_fixed(
                watched, x0, t0, targets, step=step, step_size=step_size, max_steps=max_steps
            )
        solved.update(zip(targets, states, strict=True))
    return _scatter(query, t0, x0, solved)


def integrate_sde(
    drift: Field,
    diffusion: Callable[[Tensor], float | Tensor],
    x0: Tensor,
    t0: float,
    times: Sequence[float] | Tensor,
    *,
    step_size: float = 0.01,
    generator: torch.Generator | None = None,
    max_abs: float = 1e10,
) -> Tensor:
    """Euler-Maruyama for ``dx = drift(t, x) dt + g(t) dW``, forwards in time.

    ``x_{k+1} = x_k + drift(t_k, x_k) h + g(t_k) sqrt(h) z_k``, ``z_k ~ N(0, I)`` (Ito).

    Parameters
    ----------
    drift : callable ``drift(t, x) -> Tensor``
        ``t`` 0-dim tensor, ``x`` (batch, d) -> (batch, d). For SplineFlow's stochastic
        variant this is ``v + g^2/2 * s``.
    diffusion : callable ``diffusion(t) -> float | Tensor``
        Scalar noise scale g(t) (a float or a 0-dim tensor).
    x0 : Tensor, shape (batch, d)
        Start state at ``t0``.
    t0 : float
        Start time.
    times : sequence of float or Tensor, shape (m,)
        Query times ``>= t0`` in any order, repeats allowed; a query at ``t0`` returns ``x0``.
    step_size : float
        Largest step; each interval between consecutive sorted query times is cut into
        ``ceil(length / step_size)`` equal steps (with zero diffusion this is exactly
        ``integrate(..., method="euler")``).
    generator : torch.Generator, optional
        Source of the Brownian increments (on the device of ``x0``); the global RNG if None.
    max_abs : float
        A state with ``|x| > max_abs`` counts as diverged.

    Returns
    -------
    Tensor, shape (m, batch, d)
        One path per batch row, observed at ``times`` in the caller's order.

    Raises
    ------
    SolverError
        Non-finite drift/diffusion or a diverged/non-finite state, with the time reached.
    ValueError
        Query times before ``t0`` or other bad arguments.
    """
    t0 = _check_start(x0, t0, step_size)
    query = _query_times(times)
    for i, t in enumerate(query):
        if t < t0:
            raise ValueError(
                f"`times[{i}]` = {t} is before t0 = {t0}; integrate_sde runs forwards in time "
                "only (integrate the reverse-time SDE explicitly instead)"
            )
    targets = sorted({t for t in query if t > t0})
    watched = _WatchedField(drift, x0, "euler-maruyama", max_abs)
    dtype = x0.dtype
    solved: dict[float, Tensor] = {}
    x = x0
    bounds = [t0, *targets]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        n = _n_steps(b - a, step_size)
        h = (b - a) / n
        for k in range(n):
            t = a + k * h
            t_tensor = _time(t, x)
            g = torch.as_tensor(diffusion(t_tensor.to(dtype)), dtype=dtype, device=x.device)
            if g.ndim != 0:
                raise ValueError(
                    "`diffusion(t)` must return a float or a 0-dim tensor, got shape "
                    f"{tuple(g.shape)}"
                )
            if not bool(torch.isfinite(g)):
                raise SolverError(
                    f"the diffusion returned a non-finite value at t = {_fmt(t)} "
                    "(method euler-maruyama)"
                )
            z = torch.randn(x.shape, generator=generator, dtype=dtype, device=x.device)
            x = x + h * watched(t_tensor, x) + (g * math.sqrt(h)) * z
            watched.check_state(b if k == n - 1 else a + (k + 1) * h, x)
        solved[b] = x
    return _scatter(query, t0, x0, solved)
