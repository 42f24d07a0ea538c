"""The results store (metrics of every run) and per-run prediction stores.

``<root>/results.zarr``: dimension ``run`` with coordinates ``run_id``, ``dataset``,
``method``, ``heldout_time``, ``seed``, ``config_hash``, ``started``, ``finished``; dimension
``metric_name`` (index coordinate); variable ``metric(run, metric_name)`` float64, NaN where a
run lacks that metric. ``<root>/predictions/<run_id>.zarr``: any Dataset a run produced.
Writes are all-or-nothing and idempotent (:mod:`.atomic`).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from splineflow_pyro import atomic

RUN_COORDS = ("dataset", "method", "heldout_time", "seed", "config_hash", "started", "finished")
_STRING_COORDS = ("run_id", "dataset", "method", "config_hash", "started", "finished")


@dataclass(frozen=True)
class RunRecord:
    """One evaluated run: who ran what, when, and its metrics (finite floats)."""

    run_id: str
    dataset: str
    method: str
    heldout_time: float
    seed: int
    config_hash: str
    started: str
    finished: str
    metrics: Mapping[str, float] = field(default_factory=dict)


def _root(storage: str | os.PathLike | None) -> str:
    from splineflow_pyro.store import resolve_storage

    return resolve_storage(storage)


def results_path(storage: str | os.PathLike | None = None) -> str:
    """Path or URL of the results store."""
    return atomic.join(_root(storage), "results.zarr")


def predictions_path(run_id: str, storage: str | os.PathLike | None = None) -> str:
    """Path or URL of the prediction store of ``run_id``."""
    from splineflow_pyro.store import check_name

    return atomic.join(_root(storage), "predictions", f"{check_name(run_id, 'run_id')}.zarr")


def _empty() -> xr.Dataset:
    none = np.array([], dtype=object)
    coords = {
        "run_id": ("run", none),
        "dataset": ("run", none),
        "method": ("run", none),
        "heldout_time": ("run", np.array([], dtype=np.float64)),
        "seed": ("run", np.array([], dtype=np.int64)),
        "config_hash": ("run", none),
        "started": ("run", none),
        "finished": ("run", none),
        "metric_name": ("metric_name", none),
    }
    return xr.Dataset(
        {"metric": (("run", "metric_name"), np.zeros((0, 0)))},
        coords=coords,
        attrs={"format": "splineflow-results", "schema_version": 1},
    )


def open_results(storage: str | os.PathLike | None = None) -> xr.Dataset:
    """The results store, loaded, with ``run_id`` indexed (``.sel(run_id=...)`` works).

    An empty Dataset with the same variables when nothing has been recorded yet.
    """
    from splineflow_pyro.store import open_store

    target = results_path(storage)
    if not atomic.exists(target):
        ds = _empty()
    else:
        ds = open_store(target, fmt="splineflow-results")
        if "metric" not in ds or ds["metric"].dims != ("run", "metric_name"):
            raise ValueError(
                f"store {target} is corrupt: variable metric(run, metric_name) missing"
            )
        prev = atomic.previous_version(target)
        fix = f"restore it from {prev} or re-run the evaluations" if prev else (
            "re-run the evaluations")  # fmt: skip
        try:
            ds = ds.load()
        except Exception as e:  # codecs raise many types for damaged chunks
            raise ValueError(
                f"store {target} is corrupt: its arrays cannot be read ({type(e).__name__}: "
                f"{e}); {fix}"
            ) from e
        stored = ds.attrs.get("content_sha256")
        if stored and _hash(ds) != stored:  # a deleted chunk reads as NaN: metrics vanish
            raise ValueError(
                f"store {target} is corrupt: content does not match its content_sha256 "
                f"({str(stored)[:12]}; a chunk is missing or damaged); {fix}"
            )
    for name in _STRING_COORDS + ("metric_name",):
        ds = ds.assign_coords({name: ds[name].astype(object).astype(str).astype(object)})
    return ds.set_xindex("run_id")


def _check_records(records: Sequence[RunRecord]) -> None:
    from splineflow_pyro.store import check_name

    seen: set[str] = set()
    for r in records:
        if not isinstance(r, RunRecord):
            raise ValueError(f"append_results takes RunRecord objects, got {type(r).__name__}")
        check_name(r.run_id, "run_id")
        if r.run_id in seen:
            raise ValueError(f"run_id {r.run_id!r} appears twice in one append_results call")
        seen.add(r.run_id)
        if math.isinf(float(r.heldout_time)):  # NaN is allowed: a trajectory split, no time
            raise ValueError(f"run {r.run_id!r}: heldout_time {r.heldout_time!r} is infinite")
        for key, value in r.metrics.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"run {r.run_id!r}: metric names must be non-empty strings")
            try:
                ok = math.isfinite(float(value))
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ValueError(
                    f"run {r.run_id!r}: metric {key!r} is {value!r}; metrics must be finite "
                    "numbers (a failed run must not be recorded)"
                )


def append_results(records: Sequence[RunRecord], storage: str | os.PathLike | None = None) -> None:
    """Add runs to the results store, all-or-nothing; a run_id already present is replaced."""
    records = list(records)
    _check_records(records)
    if not records:
        return
    target = results_path(storage)
    with atomic.writer_lock(target):
        atomic.recover(target)
        old = open_results(storage)
        ids = [str(v) for v in old["run_id"].values]
        names = [str(n) for n in old["metric_name"].values]
        for r in records:
            names += [k for k in r.metrics if k not in names]
        position = {rid: i for i, rid in enumerate(ids)}
        for r in records:  # a run already present is replaced in place
            position.setdefault(r.run_id, len(position))
        metric = np.full((len(position), len(names)), np.nan)
        metric[: len(ids), : old.sizes["metric_name"]] = old["metric"].values
        cols = {c: list(old[c].values) + [None] * (len(position) - len(ids))
                for c in ("run_id", *RUN_COORDS)}  # fmt: skip
        for r in records:
            i = position[r.run_id]
            metric[i] = np.nan
            for k, v in r.metrics.items():
                metric[i, names.index(k)] = float(v)
            for c in cols:
                cols[c][i] = getattr(r, c)
        coords = {
            c: (
                "run",
                np.array(
                    v,
                    dtype=np.float64
                    if c == "heldout_time"
                    else (np.int64 if c == "seed" else object),
                ),
            )  # fmt: skip
            for c, v in cols.items()
        }
        coords["metric_name"] = ("metric_name", np.array(names, dtype=object))
        ds = xr.Dataset({"metric": (("run", "metric_name"), metric)}, coords=coords)
        ds.attrs = {"format": "splineflow-results", "schema_version": 1}
        ds.attrs["content_sha256"] = _hash(ds)
        if atomic.exists(target) and old.attrs.get("content_sha256") == ds.attrs["content_sha256"]:
            return  # identical content: nothing to write
        atomic.commit(target, lambda loc: atomic.write_zarr(ds, loc))


def _hash(ds: xr.Dataset) -> str:
    h = hashlib.sha256()
    for name in ("run_id", *RUN_COORDS, "metric_name"):
        h.update(repr([str(v) for v in ds[name].values]).encode())
    h.update(np.ascontiguousarray(ds["metric"].values, dtype="<f8").data)
    return h.hexdigest()


def latest_results(
    storage: str | os.PathLike | None = None,
    dataset: str | None = None,
    method: str | None = None,
) -> pd.DataFrame:
    """The latest run (by ``finished``) per (dataset, method, heldout_time, seed).

    Columns: run_id, dataset, method, heldout_time, seed, config_hash, started, finished, then
    one column per metric; sorted by dataset, method, heldout_time, seed.
    """
    ds = open_results(storage)
    frame = pd.DataFrame({c: ds[c].values for c in ("run_id", *RUN_COORDS)})
    for j, name in enumerate(ds["metric_name"].values):
        frame[str(name)] = ds["metric"].values[:, j]
    if dataset is not None:
        frame = frame[frame["dataset"] == dataset]
    if method is not None:
        frame = frame[frame["method"] == method]
    keys = ["dataset", "method", "heldout_time", "seed"]
    frame = frame.sort_values([*keys, "finished", "run_id"], kind="stable")
    frame = frame.drop_duplicates(keys, keep="last")
    return frame.reset_index(drop=True)


def write_predictions(
    run_id: str, predictions: xr.Dataset, storage: str | os.PathLike | None = None
) -> None:
    """Store a run's predictions at ``<root>/predictions/<run_id>.zarr`` (replaces, atomically)."""
    if not isinstance(predictions, xr.Dataset):
        raise ValueError(f"predictions of run {run_id!r} must be an xarray.Dataset")
    target = predictions_path(run_id, storage)
    ds = predictions.load().copy()
    # fixed-width unicode has no zarr v3 spec: store text as variable-length strings
    text = [name for name, var in ds.variables.items() if var.dtype.kind == "U"]
    ds = ds.assign({name: ds[name].astype(object) for name in text if name not in ds.coords})
    ds = ds.assign_coords({name: ds[name].astype(object) for name in text if name in ds.coords})
    for var in ds.variables.values():
        var.encoding = {}
    ds.attrs = {**ds.attrs, "format": "splineflow-predictions", "schema_version": 1,
                "run_id": run_id}  # fmt: skip
    with atomic.writer_lock(target):
        atomic.commit(target, lambda loc: atomic.write_zarr(ds, loc))


def open_predictions(run_id: str, storage: str | os.PathLike | None = None) -> xr.Dataset:
    """The predictions of ``run_id`` (lazy)."""
    from splineflow_pyro.store import open_store

    target = predictions_path(run_id, storage)
    if not atomic.exists(target):
        raise FileNotFoundError(f"no predictions for run {run_id!r} at {target}")
    return open_store(target, fmt="splineflow-predictions")
