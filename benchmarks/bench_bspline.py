"""Speed of batched B-spline interpolation against a scipy loop (the authors' approach).

Tracked mode: 10,000 trajectories x 200 times x 3 features, each (time, feature) entry missing
with probability 0.5 (the first time always kept), degree 3: fit plus values and derivatives
at all 200 times. Ours: :func:`splineflow_pyro.bspline.interpolate` (best of a few repeats),
in float64 and float32. Reference: ``scipy.interpolate.make_interp_spline`` per (trajectory,
feature), values and derivative at the 200 times, in the same process.

Snapshot mode: 5 shared times, batch 256, 50 features, coupled 5-tuples; drawing
``(t, x_t, u_t)`` with ``BSplinePath(3).sample`` against ``LinearPath().sample`` (best of many
repeats each, interleaved), key ``spline_over_linear`` (the issue asks for at most 1.5).

Usage: ``python benchmarks/bench_bspline.py [--quick]``; prints one JSON line and writes it to
``benchmarks/results/bench_bspline.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy.interpolate import make_interp_spline

from splineflow_pyro.bspline import interpolate
from splineflow_pyro.paths import BSplinePath, LinearPath

RESULTS = Path(__file__).resolve().parent / "results" / "bench_bspline.json"


def tracked_data(n_traj: int, n_times: int, dim: int, seed: int = 0):
    """Irregular shared time grid, values, and a mask with 50% missing (first time kept)."""
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.uniform(0.05, 1.0, n_times))
    values = rng.normal(size=(n_traj, n_times, dim)).cumsum(axis=1)
    mask = rng.random((n_traj, n_times, dim)) < 0.5
    mask[:, 0, :] = True
    return times, values, mask


def run_ours(times, values, mask, dtype: torch.dtype, repeats: int) -> float:
    """Best wall time of fit + values + derivatives at all times."""
    t = torch.tensor(times, dtype=torch.float64)
    v = torch.tensor(values, dtype=dtype)
    m = torch.tensor(mask)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        spline = interpolate(t, v, 3, m)
        spline.evaluate_and_derivative(t)
        best = min(best, time.perf_counter() - start)
    return best


def run_scipy(times, values, mask, limit: int | None = None) -> tuple[float, int]:
    """Wall time of the per-series scipy loop (over the first ``limit`` trajectories)."""
    n_traj = values.shape[0] if limit is None else min(limit, values.shape[0])
    start = time.perf_counter()
    for b in range(n_traj):
        for f in range(values.shape[2]):
            keep = mask[b, :, f]
            tt, yy = times[keep], values[b, keep, f]
            if len(tt) < 2:
                continue
            spline = make_interp_spline(tt, yy, k=min(3, len(tt) - 1))
            q = np.clip(times, tt[0], tt[-1])
            spline(q)
            spline(q, 1)
    return time.perf_counter() - start, n_traj


def run_snapshot(repeats: int, rounds: int = 5) -> tuple[float, float]:
    """Best wall time of one path draw, B-spline (degree 3) and linear, interleaved rounds."""
    gen = torch.Generator().manual_seed(0)
    times = torch.tensor([0.0, 1.0, 2.5, 3.0, 4.5])
    tuples = torch.randn(256, 5, 50, generator=gen)
    best = {"spline": float("inf"), "linear": float("inf")}
    paths = {"spline": BSplinePath(3), "linear": LinearPath()}
    for _ in range(rounds):
        for name, path in paths.items():
            for _ in range(repeats):
                start = time.perf_counter()
                path.sample(times, tuples, generator=gen)
                best[name] = min(best[name], time.perf_counter() - start)
    return best["spline"], best["linear"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 trajectories, 2 repeats")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: the same single core as the scipy loop)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n_traj, repeats = (1000, 2) if args.quick else (10_000, 3)
    times, values, mask = tracked_data(n_traj, 200, 3)
    run_ours(times, values[:50], mask[:50], torch.float64, 1)  # warm-up
    ours64 = run_ours(times, values, mask, torch.float64, repeats)
    ours32 = run_ours(times, values, mask, torch.float32, repeats)
    scipy_s, _ = run_scipy(times, values, mask)
    spline_s, linear_s = run_snapshot(20 if args.quick else 100)
    result = {
        "benchmark": "bspline",
        "mode": "quick" if args.quick else "tracked",
        "trajectories": n_traj,
        "times": 200,
        "features": 3,
        "missing": 0.5,
        "degree": 3,
        "ours_float64_s": round(ours64, 4),
        "ours_float32_s": round(ours32, 4),
        "scipy_loop_s": round(scipy_s, 4),
        "speedup_vs_scipy_loop": round(scipy_s / ours64, 2),
        "speedup_vs_scipy_loop_float32": round(scipy_s / ours32, 2),
        "snapshot": {"times": 5, "batch": 256, "features": 50, "degree": 3},
        "snapshot_spline_s": round(spline_s, 6),
        "snapshot_linear_s": round(linear_s, 6),
        "spline_over_linear": round(spline_s / linear_s, 3),
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "node": platform.node(),
            "torch_threads": torch.get_num_threads(),
        },
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
    }
    line = json.dumps(result)
    print(line)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(line + "\n")


if __name__ == "__main__":
    main()
