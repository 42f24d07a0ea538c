"""The Prefect pipeline end to end on small data (one ephemeral Prefect server per session)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
import yaml

from flows.pipeline import evaluate_flow, nightly
from splineflow_pyro import store
from splineflow_pyro.config import load_config
from splineflow_pyro.runs import model_path, plan_runs
from splineflow_pyro.training import TrainedModel

pytestmark = pytest.mark.usefixtures("prefect_harness")


def snapshot_csv(path: Path, times=(0.0, 1.0, 2.0, 3.0), seed: int = 0) -> Path:
    """Cells drifting along (t, t^2 / 3) with spread, 40-ish cells per time."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, t in enumerate(times):
        n = 30 + 5 * k
        centre = np.array([t, t * t / 3])
        for cell in rng.normal(size=(n, 2)) * 0.2 + centre:
            rows.append({"day": t, "g1": cell[0], "g2": cell[1]})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def write_config(path: Path, csv: Path, degree: int = 3, steps: int = 25) -> Path:
    config = {
        "datasets": [
            {"name": "cells", "source": str(csv)},
            {"name": "lv", "source": "synthetic:lotka_volterra?n=20&p=0.5&seed=0"},
        ],
        "methods": [{"kind": "splineflow", "degree": degree}, {"kind": "linear"}],
        "holdout": None,
        "seeds": [0],
        "train": {"steps": steps, "batch_size": 16, "width": 16, "depth": 2},
        "evaluate": {"solver": "rk4", "step_size": 0.05},
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def setup(tmp_path: Path, storage: Path):
    csv = snapshot_csv(tmp_path / "cells.csv")
    return write_config(tmp_path / "small.yaml", csv), csv, str(storage)


def test_nightly_end_to_end_then_cached_then_partial_retrain(setup, tmp_path: Path) -> None:
    config, csv, storage = setup
    first = nightly(config_path=str(config), storage=storage)
    # cells: held-out times 1 and 2 x 2 methods; lv: one split x 2 methods
    assert first["runs"] == 6
    assert first["train"] == {"trained": 6, "cached": 0, "failed": 0}
    assert first["evaluate"] == {"evaluated": 6, "cached": 0, "failed": 0}
    results = store.open_results(storage)
    assert results.sizes["run"] == 6
    metric = results["metric"]
    w1 = metric.sel(metric_name="w1").where(results["dataset"] == "cells", drop=True)
    assert w1.sizes["run"] == 4 and bool(np.isfinite(w1).all())
    mse = metric.sel(metric_name="mse_z").where(results["dataset"] == "lv", drop=True)
    assert bool(np.isfinite(mse).all())
    for run_id in results["run_id"].values:
        assert (Path(storage) / "plots" / f"{run_id}.png").stat().st_size > 1000
        assert store.open_predictions(str(run_id), storage).sizes["obs"] > 0

    again = nightly(config_path=str(config), storage=storage)
    assert again["train"] == {"trained": 0, "cached": 6, "failed": 0}
    assert again["evaluate"] == {"evaluated": 0, "cached": 6, "failed": 0}
    assert again["ingest"] == {"cached": 2}
    assert store.open_results(storage).sizes["run"] == 6
    alone = evaluate_flow(config_path=str(config), storage=storage, dataset="lv")
    assert [run["status"] for run in alone] == ["cached", "cached"]

    # one method's setting changes: only that method's runs are retrained
    changed = nightly(config_path=str(write_config(config, csv, degree=5)), storage=storage)
    assert changed["train"] == {"trained": 3, "cached": 3, "failed": 0}

    # a new time point appended to the snapshots retrains what depends on it (the cells runs)
    snapshot_csv(csv, times=(0.0, 1.0, 2.0, 3.0, 4.0))
    grown = nightly(config_path=str(config), storage=storage)
    assert grown["ingest"]["appended"] == 1
    assert grown["runs"] == 8  # now held-out times 1, 2, 3 for cells
    assert grown["train"] == {"trained": 6, "cached": 2, "failed": 0}


def test_failed_evaluation_leaves_the_results_store_as_it_was(setup) -> None:
    config, _, storage = setup
    nightly(config_path=str(config), storage=storage)
    before = store.open_results(storage).load()
    spec = next(s for s in plan_runs(load_config(config), storage) if s.dataset == "cells")
    model = TrainedModel.load(model_path(spec, storage))
    with torch.no_grad():
        for p in model.field.parameters():
            p.fill_(math.nan)  # a velocity field that returns NaN
    model.save(model_path(spec, storage))
    cfg = yaml.safe_load(config.read_text())
    cfg["evaluate"]["step_size"] = 0.02  # new evaluation settings: not served from the cache
    config.write_text(yaml.safe_dump(cfg))
    with pytest.raises(Exception, match="non-finite"):
        evaluate_flow(
            config_path=str(config),
            storage=storage,
            dataset="cells",
            method=spec.method.label,
            heldout=spec.heldout,
        )
    after = store.open_results(storage).load()
    xr.testing.assert_identical(before, after)
