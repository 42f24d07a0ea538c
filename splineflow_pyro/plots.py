"""One PNG per run: predicted against real marginals (snapshots) or trajectories (tracked)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from splineflow_pyro.evaluation import Evaluation

MAX_TRAJECTORIES = 6


def plot_run(result: Evaluation, path: str | Path, *, title: str = "") -> Path:
    """Draw ``result``'s predictions beside the real observations and save a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    pred, real = result.predictions, result.reference
    tracked = bool((np.asarray(real["sample"].values) >= 0).any())
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    if tracked:
        _draw_trajectories(ax, pred, real)
    else:
        _draw_marginals(ax, pred, real)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _draw_marginals(ax, pred, real) -> None:
    features = [str(f) for f in real["feature"].values]
    px, rx = np.asarray(pred["x"].values), np.asarray(real["x"].values)
    if len(features) >= 2:
        ax.scatter(rx[:, 0], rx[:, 1], s=3, alpha=0.4, label="held-out cells")
        ax.scatter(px[:, 0], px[:, 1], s=3, alpha=0.4, label="predicted")
        ax.set_xlabel(features[0])
        ax.set_ylabel(features[1])
    else:
        ax.hist(rx[:, 0], bins=40, alpha=0.5, density=True, label="held-out cells")
        ax.hist(px[:, 0], bins=40, alpha=0.5, density=True, label="predicted")
        ax.set_xlabel(features[0])


def _draw_trajectories(ax, pred, real) -> None:
    feature = str(real["feature"].values[0])
    samples = np.unique(np.asarray(real["sample"].values))[:MAX_TRAJECTORIES]
    for i, s in enumerate(samples):
        rows = np.asarray(real["sample"].values) == s
        t = np.asarray(real["obs_time"].values)[rows]
        color = f"C{i % 10}"
        ax.plot(t, np.asarray(pred["x"].values)[rows, 0], color=color, lw=1, label=None)
        ax.plot(t, np.asarray(real["x"].values)[rows, 0], "o", ms=2, color=color, label=None)
    ax.plot([], [], "k-", lw=1, label="roll-out")
    ax.plot([], [], "ko", ms=2, label="observed")
    ax.set_xlabel("time")
    ax.set_ylabel(feature)
