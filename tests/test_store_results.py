"""Results store and prediction stores."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from splineflow_pyro import store
from splineflow_pyro.store import RunRecord


def rec(run_id: str, seed: int = 0, finished: str = "2026-01-01T01:00:00", **metrics) -> RunRecord:
    return RunRecord(
        run_id=run_id, dataset="mouse", method="splineflow", heldout_time=1.0, seed=seed,
        config_hash="abc", started="2026-01-01T00:00:00", finished=finished,
        metrics=metrics or {"w1": 0.5},
    )  # fmt: skip


def test_append_idempotent_and_growing_metrics(storage: Path, tree_digest) -> None:
    assert store.open_results().sizes["run"] == 0 and store.latest_results().empty
    store.append_results([rec("r1", w1=0.5), rec("r2", seed=1, w1=0.7)])
    before = tree_digest(storage)
    store.append_results([rec("r1", w1=0.5)])  # same content: nothing written
    assert tree_digest(storage) == before
    store.append_results([rec("r1", w1=0.4, mmd=0.1)])  # replaced, new metric
    ds = store.open_results()
    assert ds.sizes["run"] == 2 and ds["metric_name"].values.tolist() == ["w1", "mmd"]
    assert ds["metric"].sel(run_id="r1").values.tolist() == [0.4, 0.1]
    assert np.isnan(ds["metric"].sel(run_id="r2", metric_name="mmd").item())
    plain = xr.open_zarr(storage / "results.zarr").load()
    assert sorted(plain["run_id"].values.tolist()) == ["r1", "r2"]
    assert plain["metric"].where(plain["method"] == "splineflow", drop=True).sizes["run"] == 2


def test_non_finite_metric_refused(storage: Path, tree_digest) -> None:
    store.append_results([rec("r1")])
    before = tree_digest(storage)
    with pytest.raises(ValueError, match=r"run 'bad': metric 'w2' is nan"):
        store.append_results([rec("r2"), rec("bad", w1=1.0, w2=float("nan"))])
    with pytest.raises(ValueError, match=r"run 'inf': metric 'w1' is inf"):
        store.append_results([rec("inf", w1=float("inf"))])
    assert tree_digest(storage) == before


def test_latest_results(storage: Path) -> None:
    store.append_results([rec("old", finished="2026-01-01T01:00:00", w1=0.9)])
    store.append_results([rec("new", finished="2026-01-02T01:00:00", w1=0.3), rec("s1", seed=1)])
    table = store.latest_results(dataset="mouse", method="splineflow")
    assert table["run_id"].tolist() == ["new", "s1"] and table["w1"].tolist() == [0.3, 0.5]
    assert store.latest_results(method="linear").empty


def test_predictions_round_trip(storage: Path) -> None:
    pred = xr.Dataset({"x": (("obs", "feature"), np.ones((3, 2), np.float32))})
    store.write_predictions("r1", pred)
    store.write_predictions("r1", pred * 2)  # replaced atomically
    got = store.open_predictions("r1").load()
    assert got["x"].values.tolist() == [[2.0, 2.0]] * 3
    with pytest.raises(FileNotFoundError, match="no predictions for run 'r9'"):
        store.open_predictions("r9")
    with pytest.raises(ValueError, match="run_id"):
        store.write_predictions("../x", pred)


def test_results_in_memory_storage() -> None:
    root = f"memory://sf-{uuid.uuid4().hex}"
    store.append_results([rec("r1")], storage=root)
    store.append_results([rec("r2", seed=3)], storage=root)
    assert store.open_results(root).sizes["run"] == 2
    store.write_predictions("r1", xr.Dataset({"y": ("n", np.arange(3.0))}), storage=root)
    assert store.open_predictions("r1", root)["y"].values.tolist() == [0.0, 1.0, 2.0]
