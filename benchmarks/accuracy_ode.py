"""Roll-out accuracy of SplineFlow (cubic paths) against linear paths on the ODE benchmarks.

What is measured
----------------
For each benchmark system (``decay``, ``harmonic``, ``damped_harmonic``, ``lotka_volterra``,
``lorenz``) one data set of ``--n`` trajectories on the 200-point grid 0, 0.05, ..., 9.95 is
simulated (:func:`splineflow_pyro.systems.simulate`, one parameter draw from ``--seed``). For
each missing-entry probability p (default 0, 0.5 and 0.75) every (trajectory, time, feature)
entry is dropped with probability p (:func:`~splineflow_pyro.systems.irregular_mask`; the
first time is always kept), the trajectories are split 80/20 by trajectory (seed 0), and two
velocity fields are trained on the same training trajectories with the same settings and seed:

- SplineFlow, degree 3 (not-a-knot cubic B-spline paths), and
- degree 1 (piecewise-linear paths: the OT-CFM / MMFM-linear baseline).

Both degrees of a system use the same feature transform (``train.transform``, see
:data:`TRANSFORMS`): ``log`` for Lotka-Volterra, whose positive populations swing over
about 5 orders of magnitude, so paths and flow are fitted in log coordinates and the
predictions mapped back with exp; no transform elsewhere. ``--no-transform`` trains every
system untransformed. The transforms used are recorded in ``settings.transforms``.

Each model rolls out the held-out trajectories from their first observation x(t0)
(:func:`~splineflow_pyro.evaluation.evaluate_tracked`, fixed-step RK4 by default) and the MSE
at the observed entries is reported raw (``mse``) and z-scored with the training standard
deviation in data units (``mse_z``, whatever the transform), beside the two trivial baselines
of the evaluation: every state held at its first observation (``constant_mse_z``) and the
mean training trajectory (``mean_mse_z``). The check ``deg3_beats_deg1`` compares ``mse_z``
of the two degrees; the issue requires it at p = 0 and 0.5 (p = 0.75 is run for the
paper's values).

Usage
-----
``python benchmarks/accuracy_ode.py``             full run (about 15 minutes on 2 CPU cores)
``python benchmarks/accuracy_ode.py --quick``     smoke version (about a minute)
``python benchmarks/accuracy_ode.py --systems harmonic lorenz --steps 2000 --n 300``
``python benchmarks/accuracy_ode.py --systems lotka_volterra --no-transform``

Prints one JSON line at the end and writes the same content to
``benchmarks/results/accuracy_ode.json`` (``--output`` to change).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from splineflow_pyro.config import EvalConfig, MethodConfig, TrainConfig
from splineflow_pyro.data import TrackedData
from splineflow_pyro.evaluation import evaluate_tracked
from splineflow_pyro.solvers import SolverError
from splineflow_pyro.systems import SYSTEMS, irregular_mask, simulate, split_trajectories
from splineflow_pyro.training import fit

RESULTS = Path(__file__).resolve().parent / "results" / "accuracy_ode.json"
DEGREES = (3, 1)
# degree 3 must beat degree 1 on these systems at every p (the acceptance check)
MUST_BEAT = ("harmonic", "damped_harmonic", "lotka_volterra")
MUST_BEAT_P = ("0.0", "0.5")  # the two missing rates; 0.75 is run for the paper values
# SplineFlow paper (arXiv 2601.23072), z-scored MSE of degree 3; keyed by missing probability
PAPER = {
    "harmonic": {"0.0": 3.7e-4, "0.75": 1.1e-3},
    "damped_harmonic": {"0.0": 9.5e-5, "0.75": 4.8e-5},
}
# Feature transform per system (train.transform; "none" when absent). Lotka-Volterra
# populations are positive and swing over about 5 orders of magnitude (troughs near 1e-3,
# peaks of 150-300 with the default draw): in data units the paths and the loss are
# dominated by the sharp peaks and the troughs are lost; in log coordinates the cycles are
# smooth and well scaled (mse_z about 30x lower at 3000 steps), and exp keeps predictions
# positive.
TRANSFORMS = {"lotka_volterra": "log"}
METRICS = ("mse_z", "mse", "constant_mse_z", "mean_mse_z", "constant_mse", "mean_mse")


def tracked_data(
    name: str, n: int, p: float, seed: int
) -> tuple[TrackedData, TrackedData, dict[str, float]]:
    """Simulate ``name``, drop entries with probability ``p`` and split 80/20 by trajectory.

    Returns the training data, the test data and the system parameters of the draw.
    """
    sim = simulate(name, n_trajectories=n, seed=seed)
    mask = irregular_mask(sim.states.shape, p, seed=seed + 1)
    values = np.where(mask, sim.states, np.nan)
    data = TrackedData(
        times=torch.from_numpy(sim.times),
        values=torch.from_numpy(values),
        mask=torch.from_numpy(mask),
        sample_ids=np.arange(n),
        features=sim.feature_names,
    )
    train_ids, test_ids = split_trajectories(n, test_fraction=0.2, seed=0)
    return data.subset(train_ids), data.subset(test_ids), sim.params


def run_one(
    train_data: TrackedData,
    test_data: TrackedData,
    degree: int,
    train: TrainConfig,
    evaluation: EvalConfig,
    seed: int,
) -> dict[str, Any]:
    """Train one degree and evaluate its roll-outs; metrics, timings and the final loss."""
    method = MethodConfig("splineflow", degree=degree)
    start = time.perf_counter()
    model = fit(train_data, method, train, seed=seed)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    row: dict[str, Any] = {"degree": degree}
    try:
        result = evaluate_tracked(model, test_data, train_data, evaluation)
        row |= {k: result.metrics[k] for k in METRICS}
    except SolverError as exc:  # a learned field that blows up is a result, not a crash
        row |= {k: None for k in METRICS} | {"error": str(exc)}
    tail = model.losses[-min(100, len(model.losses)) :]
    row |= {
        "final_loss": float(np.mean(tail)),
        "fit_s": round(fit_s, 2),
        "eval_s": round(time.perf_counter() - start, 2),
    }
    return row


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per (system, p): mse_z of each degree, the baselines and whether degree 3 wins."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        cell = table.setdefault(row["system"], {}).setdefault(str(row["p"]), {})
        cell[f"deg{row['degree']}_mse_z"] = row["mse_z"]
        cell["constant_mse_z"] = row["constant_mse_z"]
        cell["mean_mse_z"] = row["mean_mse_z"]
    for cells in table.values():
        for cell in cells.values():
            d3, d1 = cell.get("deg3_mse_z"), cell.get("deg1_mse_z")
            cell["deg3_beats_deg1"] = None if d3 is None or d1 is None else bool(d3 < d1)
            cell["deg1_over_deg3"] = None if not d3 or d1 is None else d1 / d3
    checks = [
        cell["deg3_beats_deg1"]
        for system, cells in table.items()
        if system in MUST_BEAT
        for p, cell in cells.items()
        if p in MUST_BEAT_P
    ]
    gaps = {
        system: {
            p: {
                "paper": paper,
                "ours": table[system][p]["deg3_mse_z"],
                "ours_over_paper": (
                    table[system][p]["deg3_mse_z"] / paper
                    if table[system][p]["deg3_mse_z"] is not None
                    else None
                ),
            }
            for p, paper in values.items()
            if p in table.get(system, {})
        }
        for system, values in PAPER.items()
        if system in table
    }
    return {
        "table": table,
        "deg3_beats_deg1_where_required": bool(checks) and all(c is True for c in checks),
        "paper_mse_z_deg3": PAPER,
        "gap_to_paper": gaps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke version (about a minute)")
    parser.add_argument("--systems", nargs="+", choices=sorted(SYSTEMS), default=list(SYSTEMS))
    parser.add_argument(
        "--p", nargs="+", type=float, default=[0.0, 0.5, 0.75], help="missing probabilities"
    )
    parser.add_argument("--n", type=int, default=None, help="trajectories (default 500)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 5000)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--solver", choices=("rk4", "dopri5", "euler"), default="rk4")
    parser.add_argument("--step-size", type=float, default=None, help="default 0.01")
    parser.add_argument("--max-test", type=int, default=None, help="cap on test trajectories")
    parser.add_argument("--seed", type=int, default=0, help="data and training seed")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--no-transform", action="store_true", help="train every system untransformed"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    n = args.n or (100 if args.quick else 500)
    steps = args.steps or (300 if args.quick else 5000)
    step_size = args.step_size or (0.05 if args.quick else 0.01)
    torch.set_num_threads(args.threads)
    base = TrainConfig(
        steps=steps,
        batch_size=args.batch,
        lr=args.lr,
        width=args.width,
        depth=args.depth,
        checkpoint_every=steps,
        device="cpu",
    )
    evaluation = EvalConfig(solver=args.solver, step_size=step_size)
    transforms = {
        system: "none" if args.no_transform else TRANSFORMS.get(system, "none")
        for system in args.systems
    }

    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    params: dict[str, dict[str, float]] = {}
    for system in args.systems:
        # the same transform for both degrees: a fair comparison
        train = dataclasses.replace(base, transform=transforms[system])
        for p in args.p:
            train_data, test_data, params[system] = tracked_data(system, n, p, args.seed)
            if args.max_test is not None:
                test_data = test_data.subset(test_data.sample_ids[: args.max_test])
            for degree in DEGREES:
                row = {"system": system, "p": p} | run_one(
                    train_data, test_data, degree, train, evaluation, args.seed
                )
                rows.append(row)
                print(
                    f"{system:>16} p={p:<4} degree {degree} ({train.transform}): "
                    f"mse_z {row['mse_z']} "
                    f"(constant {row['constant_mse_z']:.3g}, mean {row['mean_mse_z']:.3g}) "
                    f"fit {row['fit_s']}s",
                    flush=True,
                )

    report = {
        "benchmark": "accuracy_ode",
        "mode": "quick" if args.quick else "full",
        "measure": "z-scored roll-out MSE from x(t0) on held-out trajectories (80/20 split)",
        "settings": {
            "n_trajectories": n,
            "n_test_evaluated": len(test_data.sample_ids),
            "times": 200,
            "missing_p": args.p,
            "degrees": list(DEGREES),
            "steps": steps,
            "batch": args.batch,
            "width": args.width,
            "depth": args.depth,
            "lr": args.lr,
            "weight_decay": base.weight_decay,
            "activation": base.activation,
            "transforms": transforms,
            "solver": args.solver,
            "step_size": step_size,
            "seed": args.seed,
            "split_seed": 0,
            "mask_seed": args.seed + 1,
            "torch_threads": args.threads,
        },
        "system_params": params,
        "summary": summarize(rows),
        "results": rows,
        "runtime_s": round(time.perf_counter() - started, 1),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    text = json.dumps(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
