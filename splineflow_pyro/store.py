"""Dataset stores: validated long-form observations in zarr, readable with xarray alone.

Layout of a storage root (a directory or an fsspec URL)::

    <root>/datasets/<name>.zarr       one store per data set (see below)
    <root>/results.zarr               metrics of every evaluated run (:mod:`.results`)
    <root>/predictions/<run_id>.zarr  predictions of one run

A dataset store holds one row per observation (``obs``): ``x(obs, feature)`` float32 (NaN =
not observed), ``obs_time(obs)`` float64 sorted, ``sample(obs)`` int64 (-1 for snapshots), the
coordinate ``time`` (distinct times) with ``count(time)``, so the rows at ``time[k]`` are the
contiguous range ``sum(count[:k]) : sum(count[:k+1])``, and for tracked data
``sample_label(sample_id)`` (the source's labels as strings). Attributes: ``schema_version``,
``kind`` (trajectories|snapshots), ``time_unit``, ``time_origin`` (ISO sources only),
``source``, ``source_sha256``, ``content_sha256`` (hash of the stored arrays; the version) and
``history``. Writes are all-or-nothing (:mod:`.atomic`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from splineflow_pyro import atomic
from splineflow_pyro.results import (  # noqa: F401 - re-exported API
    RunRecord,
    append_results,
    latest_results,
    open_predictions,
    open_results,
    write_predictions,
)
from splineflow_pyro.sources import SourceTable, read_source

SCHEMA_VERSION = 1
DEFAULT_STORAGE = "./storage"
NEAR_DUPLICATE_RTOL = 1e-9
_UNITS_NS = (("days", 86_400 * 10**9), ("hours", 3600 * 10**9), ("minutes", 60 * 10**9),
             ("seconds", 10**9))  # fmt: skip
_CHUNK_BYTES = 8 << 20


@dataclass(frozen=True)
class IngestReport:
    """What one :func:`ingest` did.

    ``status`` is ``created``, ``appended``, ``replaced`` or ``unchanged``; ``version`` is the
    store's ``content_sha256`` afterwards.
    """

    name: str
    status: str
    rows_added: int
    rows_replaced: int
    rows_total: int
    time_col: str
    sample_col: str | None
    kind: str
    features: tuple[str, ...]
    version: str
    path: str
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class DatasetSummary:
    """One dataset store at a glance (``splineflow datasets`` / ``show``)."""

    name: str
    path: str
    kind: str
    times: tuple[float, ...]
    counts: tuple[int, ...]
    features: tuple[str, ...]
    n_samples: int
    time_unit: str
    time_origin: str | None
    source: str
    version: str
    history: tuple[dict, ...]


# --------------------------------------------------------------------------- locations


def resolve_storage(storage: str | os.PathLike | None = None) -> str:
    """The storage root: ``storage``, else ``$SPLINEFLOW_STORAGE``, else ``./storage``."""
    if storage is not None and os.fspath(storage) != "":
        return os.fspath(storage)
    return os.environ.get("SPLINEFLOW_STORAGE") or DEFAULT_STORAGE


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
NAME_RULE = (
    "use 1 to 100 characters: letters A-Z a-z, digits, '_', '-', '.', starting with a letter "
    "or digit, without '..' and not ending in '.zarr' (e.g. 'mouse_hsc')"
)


def check_name(name: str, what: str = "dataset name") -> str:
    """Refuse names that could escape the storage folder, hide a store or not be a file name.

    The rule is :data:`NAME_RULE` (regex ``[A-Za-z0-9][A-Za-z0-9_.-]{0,99}``, no ``..``, not
    ending in ``.zarr``).
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{what} must be a non-empty string, got {name!r}; {NAME_RULE}")
    shown = repr(name) if len(name) <= 60 else repr(name[:40]) + "..."
    if len(name) > 100:
        why = f"is {len(name)} characters long"
    elif not _NAME.fullmatch(name):
        bad = next((c for c in name if not (c.isascii() and (c.isalnum() or c in "_.-"))), None)
        why = f"contains {bad!r}" if bad is not None else f"starts with {name[0]!r}"
    elif ".." in name:
        why = "contains '..'"
    elif name.lower().endswith(".zarr"):
        why = "ends in '.zarr'"
    else:
        return name
    raise ValueError(f"{what} {shown} {why}; {NAME_RULE}")


def dataset_path(name: str, storage: str | os.PathLike | None = None) -> str:
    """Path or URL of the dataset store ``name``."""
    return atomic.join(resolve_storage(storage), "datasets", f"{check_name(name)}.zarr")


# --------------------------------------------------------------------------- reading


def open_store(target: str, *, fmt: str) -> xr.Dataset:
    """Open the current version of a store lazily, checking its format and schema version."""
    location = atomic.resolve(target)  # readers never clean up: only writers (under the lock)
    try:
        ds = xr.open_zarr(location, consolidated=True, chunks=None)
    except Exception as e:  # zarr raises many types for damaged metadata
        raise ValueError(
            f"store {target} is corrupt or not a zarr store ({type(e).__name__}: {e}); restore "
            "it or delete it and write it again"
        ) from e
    found = ds.attrs.get("format")
    version = ds.attrs.get("schema_version")
    if found != fmt or version != SCHEMA_VERSION:
        raise ValueError(
            f"store {target} has format {found!r} schema version {version!r}; this splineflow "
            f"reads {fmt!r} version {SCHEMA_VERSION}. Upgrade splineflow or re-create the store"
        )
    return ds


def _check_dataset(ds: xr.Dataset, target: str) -> None:
    required = {"x": ("obs", "feature"), "obs_time": ("obs",), "sample": ("obs",),
                "count": ("time",)}  # fmt: skip
    for var, dims in required.items():
        if var not in ds or ds[var].dims != dims:
            raise ValueError(f"store {target} is corrupt: variable {var}{dims} is missing")
    counts = np.asarray(ds["count"].values)
    if int(counts.sum()) != ds.sizes["obs"] or ds.attrs.get("kind") not in (
        "trajectories",
        "snapshots",
    ):
        raise ValueError(f"store {target} is corrupt: count(time) does not add up to obs")


def _verify(ds: xr.Dataset, target: str) -> xr.Dataset:
    """Load the arrays of a dataset store and check them against ``content_sha256``.

    Detects deleted chunks (zarr reads them as fill values), flipped bytes and damaged
    compression; the check costs one pass over the data (~0.25 s per 1M rows x 50 features).
    """

    def corrupt(why: str) -> ValueError:
        prev = atomic.previous_version(target)
        fix = f"restore it from {prev} or re-ingest" if prev else "re-ingest it"
        return ValueError(f"store {target} is corrupt: {why}; {fix}")

    try:
        ds = ds.load()
    except Exception as e:  # codecs raise many types for damaged chunks
        raise corrupt(f"its arrays cannot be read ({type(e).__name__}: {e})") from e
    stored = ds.attrs.get("content_sha256")
    if not stored:
        raise corrupt("it has no content_sha256 attribute")
    actual = content_sha256(ds)
    if actual != stored:
        raise corrupt(
            f"content does not match its content_sha256 (stored {str(stored)[:12]}, "
            f"computed {actual[:12]}; a chunk is missing or damaged)"
        )
    times, counts = np.unique(np.asarray(ds["obs_time"].values), return_counts=True)
    if not (
        np.array_equal(times, np.asarray(ds["time"].values, dtype=np.float64))
        and np.array_equal(counts, np.asarray(ds["count"].values))
    ):
        raise corrupt(
            "its time/count index does not match obs_time (a chunk is missing or damaged)"
        )
    return ds


def open_dataset(name: str, storage: str | os.PathLike | None = None) -> xr.Dataset:
    """Open the dataset store ``name``, loaded and verified against its ``content_sha256``.

    Raises ``FileNotFoundError`` naming the available data sets when it does not exist and
    ``ValueError`` when the store is corrupt (missing or damaged chunks included).
    """
    target = _existing_target(name, storage)
    ds = open_store(target, fmt="splineflow-dataset")
    _check_dataset(ds, target)
    return _verify(ds, target)


def _existing_target(name: str, storage: str | os.PathLike | None) -> str:
    target = dataset_path(name, storage)
    if not atomic.exists(target):
        have = ", ".join(list_dataset_names(storage)) or "none"
        raise FileNotFoundError(
            f"no data set {name!r} in storage {resolve_storage(storage)} (found: {have}); "
            "create it with `splineflow ingest SOURCE --name NAME`"
        )
    return target


def list_dataset_names(storage: str | os.PathLike | None = None) -> list[str]:
    """Names of the dataset stores under the storage root."""
    return atomic.list_stores(atomic.join(resolve_storage(storage), "datasets"))


def summarize(name: str, storage: str | os.PathLike | None = None) -> DatasetSummary:
    """A :class:`DatasetSummary` of one store (opened and verified with :func:`open_dataset`)."""
    ds = open_dataset(name, storage)
    a = ds.attrs
    return DatasetSummary(
        name=name,
        path=dataset_path(name, storage),
        kind=a["kind"],
        times=tuple(float(t) for t in ds["time"].values),
        counts=tuple(int(c) for c in ds["count"].values),
        features=tuple(str(f) for f in ds["feature"].values),
        n_samples=int(ds.sizes.get("sample_id", 0)),
        time_unit=str(a.get("time_unit", "")),
        time_origin=a.get("time_origin"),
        source=str(a.get("source", "")),
        version=str(a.get("content_sha256", "")),
        history=tuple(a.get("history", ())),
    )


def list_datasets(storage: str | os.PathLike | None = None) -> list[DatasetSummary]:
    """Summaries of every dataset store under the storage root, sorted by name."""
    return [summarize(n, storage) for n in list_dataset_names(storage)]


def dataset_version(name: str, storage: str | os.PathLike | None = None) -> str:
    """The store's content hash (``content_sha256``), read from its metadata only (not
    verified: :func:`open_dataset` does that)."""
    target = _existing_target(name, storage)
    ds = open_store(target, fmt="splineflow-dataset")
    _check_dataset(ds, target)
    return str(ds.attrs["content_sha256"])


def snapshot(name: str, t: float, storage: str | os.PathLike | None = None) -> xr.DataArray:
    """The observations at time ``t``: DataArray ``(obs, feature)`` float32, loaded.

    Coordinates ``obs_time`` and ``sample`` come along. ``t`` must equal a stored time
    (float64, exactly or within 1e-12 relative). Reads only that time's rows: the content
    hash is checked by :func:`open_dataset` and before every append, not here.
    """
    target = _existing_target(name, storage)
    ds = open_store(target, fmt="splineflow-dataset")
    _check_dataset(ds, target)
    times = np.asarray(ds["time"].values, dtype=np.float64)
    hits = np.flatnonzero(np.isclose(times, float(t), rtol=1e-12, atol=0.0))
    if hits.size == 0:
        raise ValueError(
            f"time {t!r} is not in data set {name!r}; its times are "
            f"{', '.join(f'{v:g}' for v in times)}"
        )
    k = int(hits[0])
    bounds = np.concatenate([[0], np.cumsum(np.asarray(ds["count"].values, dtype=np.int64))])
    sl = slice(int(bounds[k]), int(bounds[k + 1]))
    part = ds[["x", "obs_time", "sample"]].isel(obs=sl).load()
    return part["x"].assign_coords(obs_time=part["obs_time"], sample=part["sample"])


# --------------------------------------------------------------------------- ingest


@dataclass
class _Existing:
    x: np.ndarray  # (N, d) float32
    time: np.ndarray  # (N,) float64
    sample: np.ndarray  # (N,) int64
    labels: list[str]
    features: tuple[str, ...]
    attrs: dict[str, Any]


def _load_existing(target: str) -> _Existing:
    ds = open_store(target, fmt="splineflow-dataset")
    _check_dataset(ds, target)
    ds = _verify(ds, target)  # never merge a damaged store into a new version
    labels = [str(v) for v in ds["sample_label"].values] if "sample_label" in ds else []
    return _Existing(
        x=np.asarray(ds["x"].values, dtype=np.float32),
        time=np.asarray(ds["obs_time"].values, dtype=np.float64),
        sample=np.asarray(ds["sample"].values, dtype=np.int64),
        labels=labels,
        features=tuple(str(f) for f in ds["feature"].values),
        attrs=dict(ds.attrs),
    )


def ingest(
    source: Any,
    name: str,
    *,
    storage: str | os.PathLike | None = None,
    time_col: str | None = None,
    sample_col: str | None = None,
    features: Sequence[str] | None = None,
    replace: bool = False,
) -> IngestReport:
    """Validate ``source`` and create or append to the dataset store ``name``.

    ``source``: a path (CSV/TSV, Parquet, npz, NetCDF, zarr, h5ad), ``synthetic:NAME?...``, a
    pandas DataFrame or an xarray Dataset (see :mod:`.sources` for column choice). Data are
    tracked when a sample column is used, snapshots otherwise (``sample_col=""`` forces
    snapshots). Rows already stored with identical values are skipped (so re-ingesting is a
    no-op, status ``unchanged``); rows at a stored snapshot time or a stored (sample, time) with
    different values are refused unless ``replace``, which replaces exactly those rows.
    Nothing is written unless every check passes.
    """
    check_name(name)
    target = dataset_path(name, storage)
    table = read_source(
        source, time_col=time_col, sample_col=sample_col,
        features=list(features) if features else None,
    )  # fmt: skip
    with atomic.writer_lock(target):
        atomic.recover(target)
        existing = _load_existing(target) if atomic.exists(target) else None
        kind = "trajectories" if table.samples is not None else "snapshots"
        if existing is not None and existing.attrs["kind"] != kind:
            raise ValueError(
                f"data set {name!r} holds {existing.attrs['kind']} but {table.source} gives "
                f"{kind}; "
                + ("pass --sample-col" if kind == "snapshots" else "drop the sample column")
            )
        times, unit, origin = _float_times(table, existing, name)
        x, feats, notes = _validated_features(table, existing, name, kind)
        merged = _merge(table, existing, times, x, feats, kind, replace, name)
        if merged is None:
            return _report(name, "unchanged", 0, 0, table, existing, target, notes)
        ds, status, added, replaced = _build(merged, existing, table, kind, unit, origin, feats)
        atomic.commit(target, lambda loc: atomic.write_zarr(ds, loc))
    return _report(name, status, added, replaced, table, None, target, notes, ds)


def _report(name, status, added, replaced, table, existing, target, notes, ds=None):  # noqa: ANN001
    attrs = ds.attrs if ds is not None else existing.attrs
    total = ds.sizes["obs"] if ds is not None else len(existing.time)
    feats = tuple(str(f) for f in ds["feature"].values) if ds is not None else existing.features
    return IngestReport(
        name=name, status=status, rows_added=added, rows_replaced=replaced, rows_total=total,
        time_col=table.time_col, sample_col=table.sample_col, kind=attrs["kind"],
        features=feats, version=attrs["content_sha256"], path=target,
        notes=tuple(table.notes) + tuple(notes),
    )  # fmt: skip


def _float_times(
    table: SourceTable, existing: _Existing | None, name: str
) -> tuple[np.ndarray, str, str | None]:
    """Times as float64 in the store's unit; ISO datetimes use the stored origin and unit."""
    is_dt = np.issubdtype(table.time.dtype, np.datetime64)
    stored_origin = existing.attrs.get("time_origin") if existing is not None else None
    if existing is not None and bool(stored_origin) != is_dt:
        held = f"datetimes (origin {stored_origin}, unit {existing.attrs['time_unit']})" if (
            stored_origin) else "numeric times"  # fmt: skip
        got = "ISO datetimes" if is_dt else "numeric times"
        raise ValueError(
            f"{table.source} has {got} in column {table.time_col!r} but data set {name!r} holds "
            f"{held}; write the times the same way as the stored data"
        )
    if not is_dt:
        t = table.time
        bad = ~np.isfinite(t)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"time column {table.time_col!r} of {table.source} has {t[i]} at {table.where(i)}; "
                "times must be finite numbers"
            )
        unit = existing.attrs["time_unit"] if existing is not None else (
            table.time_unit or "unspecified")  # fmt: skip
        if existing is not None and table.time_unit and table.time_unit != unit != "unspecified":
            raise ValueError(
                f"{table.source} has time unit {table.time_unit!r} but data set {name!r} "
                f"uses {unit!r}"
            )
        return t, unit, None
    ns = table.time.astype("datetime64[ns]").astype(np.int64)
    if existing is not None:
        origin = str(stored_origin)
        unit = str(existing.attrs["time_unit"])
        unit_ns = dict(_UNITS_NS)[unit]
    else:
        origin_ns = int(ns.min())
        offsets = ns - origin_ns
        unit, unit_ns = next(
            ((u, s) for u, s in _UNITS_NS if not np.any(offsets % s)), _UNITS_NS[-1]
        )
        origin = str(np.datetime64(origin_ns, "ns"))
    origin_ns = int(np.datetime64(origin, "ns").astype(np.int64))
    return (ns - origin_ns).astype(np.float64) / unit_ns, unit, origin


def _validated_features(
    table: SourceTable, existing: _Existing | None, name: str, kind: str
) -> tuple[np.ndarray, tuple[str, ...], list[str]]:
    feats = table.features
    x = table.x
    if existing is not None and tuple(feats) != existing.features:
        missing = [f for f in existing.features if f not in feats]
        extra = [f for f in feats if f not in existing.features]
        if missing or extra:
            parts = ([f"missing feature(s) {', '.join(map(repr, missing))}"] if missing else []) + (
                [f"extra feature(s) {', '.join(map(repr, extra))}"] if extra else [])  # fmt: skip
            raise ValueError(
                f"{table.source} does not match the features of data set {name!r}: "
                f"{'; '.join(parts)} (stored: {', '.join(existing.features)}). Append rows with "
                "exactly the stored features, or ingest under a new name"
            )
        x = x[:, [feats.index(f) for f in existing.features]]
        feats = existing.features
    x32 = x.astype(np.float32, copy=False)
    notes: list[str] = []
    if np.isfinite(x32).all():  # fast path: one pass over the data
        return x32, tuple(feats), notes
    inf = np.isinf(x)
    if inf.any():
        i, j = (int(v[0]) for v in np.nonzero(inf))
        raise ValueError(
            f"infinite value {x[i, j]} in feature column {feats[j]!r} at {table.where(i)} of "
            f"{table.source}; features must be finite"
        )
    over = np.isinf(x32)
    if over.any():
        i, j = (int(v[0]) for v in np.nonzero(over))
        raise ValueError(
            f"value {x[i, j]} in column {feats[j]!r} at {table.where(i)} of {table.source} "
            "exceeds the float32 range of the store; rescale the feature"
        )
    nan = np.isnan(x32)
    if nan.all():
        raise ValueError(
            f"no observed values in {table.source}: every entry of the feature column(s) "
            f"{', '.join(map(repr, feats))} is empty; give a source with observations"
        )
    if kind == "snapshots" and nan.any():
        i, j = (int(v[0]) for v in np.nonzero(nan))
        raise ValueError(
            f"missing value in feature column {feats[j]!r} at {table.where(i)} of {table.source}; "
            "snapshot rows must be complete (drop or fill the row, or give a sample column for "
            "tracked data, where missing entries are allowed)"
        )
    return x32, tuple(feats), notes


@dataclass
class _Merged:
    x: np.ndarray
    time: np.ndarray
    sample: np.ndarray
    labels: list[str]
    added: int
    replaced: int


def _rows_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise equality treating NaN == NaN; a, b (rows, d) -> (rows,) bool."""
    return np.all((a == b) | (np.isnan(a) & np.isnan(b)), axis=1)


def _merge(table, existing, times, x, feats, kind, replace, name) -> _Merged | None:  # noqa: ANN001
    """New rows merged with the stored ones; None when nothing changes."""
    if kind == "trajectories":
        labels = list(existing.labels) if existing is not None else []
        index = {lab: i for i, lab in enumerate(labels)}
        for lab in pd.unique(table.samples):
            if lab not in index:
                index[lab] = len(labels)
                labels.append(lab)
        sample = pd.Series(table.samples).map(index).to_numpy(np.int64)
        _check_duplicates(table, times, sample, labels)
    else:
        labels = []
        sample = np.full(len(times), -1, dtype=np.int64)
    if existing is None:
        if np.unique(times).size < 2:
            raise ValueError(
                f"{table.source} has only the time {times[0]:g}; a new data set needs at least "
                "2 distinct times"
            )
        return _Merged(x, times, sample, labels, len(times), 0)
    keep_old = np.ones(len(existing.time), dtype=bool)
    keep_new = np.ones(len(times), dtype=bool)
    conflicts: list[str] = []
    if kind == "snapshots":
        for t in np.unique(times):
            old = existing.time == t
            if not old.any():
                continue
            new = times == t
            a, b = existing.x[old], x[new]
            same = a.shape == b.shape and bool(_rows_equal(_lexsorted(a), _lexsorted(b)).all())
            if same:
                keep_new &= ~new
            elif replace:
                keep_old &= ~old
            else:
                conflicts.append(f"time {t:g} ({int(old.sum())} rows stored, {int(new.sum())} new)")
    else:
        stored = pd.MultiIndex.from_arrays([existing.sample, existing.time])
        pos = stored.get_indexer(pd.MultiIndex.from_arrays([sample, times]))
        hit = np.flatnonzero(pos >= 0)
        same = _rows_equal(existing.x[pos[hit]], x[hit])
        keep_new[hit[same]] = False
        differ = hit[~same]
        if differ.size and replace:
            keep_old[pos[differ]] = False
        elif differ.size:
            i = int(differ[0])
            conflicts.append(
                f"{differ.size} (sample, time) observation(s) with different values, e.g. sample "
                f"{labels[sample[i]]!r} at time {times[i]:g} ({table.where(i)})"
            )
    if conflicts:
        raise ValueError(
            f"{table.source} has rows already stored in data set {name!r}: {'; '.join(conflicts)}. "
            "Pass --replace to replace exactly those rows, or drop them from the source"
        )
    replaced = int((~keep_old).sum())
    if not keep_new.any():
        return None
    merged = _Merged(
        x=np.concatenate([existing.x[keep_old], x[keep_new]]),
        time=np.concatenate([existing.time[keep_old], times[keep_new]]),
        sample=np.concatenate([existing.sample[keep_old], sample[keep_new]]),
        labels=labels,
        added=int(keep_new.sum()),
        replaced=replaced,
    )
    if kind == "trajectories":
        _check_near_duplicates(merged.time, merged.sample, labels, name)
    return merged


def _lexsorted(a: np.ndarray) -> np.ndarray:
    return a[np.lexsort(a.T[::-1])] if a.size else a


def _check_duplicates(table: SourceTable, times: np.ndarray, sample: np.ndarray, labels) -> None:  # noqa: ANN001
    """FC-01: a (sample, time) pair at most once per source; near-duplicates refused too."""
    order = np.lexsort((times, sample))
    s, t = sample[order], times[order]
    same = s[1:] == s[:-1]
    tol = NEAR_DUPLICATE_RTOL * np.maximum(1.0, np.maximum(np.abs(t[1:]), np.abs(t[:-1])))
    bad = np.flatnonzero(same & (t[1:] - t[:-1] <= tol))
    if bad.size:
        i, j = sorted((int(order[bad[0]]), int(order[bad[0] + 1])))
        exact = times[i] == times[j]
        what = f"time {_num(times[i])}" if exact else (
            f"times {_num(times[i])} and {_num(times[j])}")  # fmt: skip
        raise ValueError(
            f"{'duplicate' if exact else 'near-duplicate'} observation in {table.source}: "
            f"sample {labels[sample[i]]!r} has {what} at {table.where(i)} and {table.where(j)}"
            + ("" if exact else f" (equal within relative {NEAR_DUPLICATE_RTOL:g})")
            + "; each (sample, time) may appear once: remove or merge one of the rows"
        )


def _num(v: float) -> str:
    """A number as plain text (``0.0``, ``1.0000000001``), never ``np.float64(0.0)``."""
    return repr(float(v))


def _check_near_duplicates(times: np.ndarray, sample: np.ndarray, labels, name: str) -> None:  # noqa: ANN001
    order = np.lexsort((times, sample))
    s, t = sample[order], times[order]
    tol = NEAR_DUPLICATE_RTOL * np.maximum(1.0, np.maximum(np.abs(t[1:]), np.abs(t[:-1])))
    bad = np.flatnonzero((s[1:] == s[:-1]) & (t[1:] - t[:-1] <= tol))
    if bad.size:
        k = int(bad[0])
        raise ValueError(
            f"appending would give sample {labels[s[k]]!r} of data set {name!r} the near-equal "
            f"times {_num(t[k])} and {_num(t[k + 1])} (relative tolerance "
            f"{NEAR_DUPLICATE_RTOL:g}); "
            "use exactly the stored time to replace an observation"
        )


def content_sha256(ds: xr.Dataset) -> str:
    """Hash of the stored arrays, names and time unit (not of source or history)."""
    h = hashlib.sha256()
    meta = {k: ds.attrs.get(k) for k in ("kind", "time_unit", "time_origin")}
    meta["features"] = [str(f) for f in ds["feature"].values]
    meta["labels"] = [str(v) for v in ds["sample_label"].values] if "sample_label" in ds else []
    h.update(json.dumps(meta, sort_keys=True).encode())
    for var in ("obs_time", "sample", "x"):
        a = np.ascontiguousarray(ds[var].values)
        h.update(a.astype(a.dtype.newbyteorder("<"), copy=False).data)
    return h.hexdigest()


def _build(merged, existing, table, kind, unit, origin, feats):  # noqa: ANN001
    if np.all(merged.time[1:] > merged.time[:-1]) or (
        kind == "snapshots" and np.all(merged.time[1:] >= merged.time[:-1])
    ):
        x, t, s = merged.x, merged.time, merged.sample  # already in store order
    else:
        order = np.lexsort((merged.sample, merged.time)) if kind == "trajectories" else (
            np.argsort(merged.time, kind="stable"))  # fmt: skip
        x, t, s = merged.x[order], merged.time[order], merged.sample[order]
    times, counts = np.unique(t, return_counts=True)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    status = "created" if existing is None else ("replaced" if merged.replaced else "appended")
    history = list(existing.attrs.get("history", [])) if existing is not None else []
    history.append({"when": now, "source": table.source, "source_sha256": table.sha256,
                    "status": status, "rows_added": merged.added,
                    "rows_replaced": merged.replaced})  # fmt: skip
    attrs = {
        "format": "splineflow-dataset",
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "time_unit": unit,
        "source": table.source,
        "source_sha256": table.sha256,
        "created": existing.attrs["created"] if existing is not None else now,
        "updated": now,
        "history": history,
    }
    if origin:
        attrs["time_origin"] = origin
    data = {
        "x": (("obs", "feature"), x),
        "obs_time": ("obs", t),
        "sample": ("obs", s),
        "count": ("time", counts.astype(np.int64)),
    }
    coords: dict[str, Any] = {"time": times, "feature": np.array(feats, dtype=object)}
    if kind == "trajectories":
        data["sample_label"] = ("sample_id", np.array(merged.labels, dtype=object))
        coords["sample_id"] = np.arange(len(merged.labels), dtype=np.int64)
    ds = xr.Dataset(data, coords=coords, attrs=attrs)
    rows = max(1, min(len(t), _CHUNK_BYTES // (4 * max(1, len(feats)))))
    ds["x"].encoding = {"chunks": (rows, len(feats))}
    ds["obs_time"].encoding = {"chunks": (rows,)}
    ds["sample"].encoding = {"chunks": (rows,)}
    ds.attrs["content_sha256"] = content_sha256(ds)
    return ds, status, merged.added, merged.replaced
