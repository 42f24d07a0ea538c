"""Readers of observation sources into one long table.

Every reader returns a :class:`SourceTable`: one row per observation with a time (float or
datetime64), optional sample labels (tracked data) and float features. Checks that need the
whole table (finite times, duplicates, missing values) live in :mod:`splineflow_pyro.store`.

Column choice (tables, NetCDF/zarr converted to a table, AnnData ``obs``):

- time: ``time_col``, else the first column named ``time``, ``t``, ``day`` or ``samples``
  (case-insensitive);
- sample: ``sample_col``; ``None`` picks a column named ``sample``, ``sample_id`` or
  ``trajectory`` if there is one (tracked data), else the data are snapshots; ``""`` forces
  snapshots;
- features: ``features``, else every other column with numeric values (columns without a
  single numeric value, e.g. cell-type labels, are skipped and reported).
"""

from __future__ import annotations

import hashlib
import os
import urllib.parse
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

TIME_COLUMNS = ("time", "t", "day", "samples")
SAMPLE_COLUMNS = ("sample", "sample_id", "trajectory")
TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
SUPPORTED = ".csv, .tsv, .parquet, .npz, .nc, .zarr, .h5ad, synthetic:NAME?n=..&p=..&seed=.."


class MissingDependencyError(RuntimeError):
    """An optional dependency needed for this source is not installed."""


@dataclass(frozen=True)
class SourceTable:
    """One source as a long table.

    Attributes
    ----------
    source : str, the file, URL or description shown in messages
    sha256 : str, hash of the source's bytes (or of its arrays for in-memory sources)
    time : numpy.ndarray, shape (rows,), float64 or datetime64[ns]
    x : numpy.ndarray, shape (rows, d), floating; NaN = missing
    features : tuple of str, length d
    samples : numpy.ndarray of str, shape (rows,), or None for snapshots
    rows : numpy.ndarray, shape (rows,), int64: row numbers shown in messages
    row_word : str, "line" (text files, header = line 1) or "row" (0-based arrays)
    time_col, sample_col : str or None, the columns used
    time_unit, time_origin : str or None, as declared by the source (stores written by us)
    notes : tuple of str, things worth telling the user (skipped columns, ...)
    """

    source: str
    sha256: str
    time: np.ndarray
    x: np.ndarray
    features: tuple[str, ...]
    samples: np.ndarray | None
    rows: np.ndarray
    row_word: str
    time_col: str
    sample_col: str | None
    time_unit: str | None = None
    time_origin: str | None = None
    notes: tuple[str, ...] = ()

    def where(self, i: int) -> str:
        """Human-readable position of row ``i`` (e.g. ``line 4``)."""
        return f"{self.row_word} {int(self.rows[i])}"


def read_source(
    source: Any,
    *,
    time_col: str | None = None,
    sample_col: str | None = None,
    features: list[str] | tuple[str, ...] | None = None,
) -> SourceTable:
    """Read a file, URL, ``synthetic:`` spec, DataFrame or Dataset into a :class:`SourceTable`."""
    if features is not None:
        features = [str(f) for f in features]
        dup = sorted({f for f in features if features.count(f) > 1})
        if dup:
            raise ValueError(
                f"feature(s) {', '.join(map(repr, dup))} given more than once in --features; "
                "name each feature once"
            )
    opts = {"time_col": time_col, "sample_col": sample_col, "features": features}
    if isinstance(source, pd.DataFrame):
        sha = _hash_arrays([source[c].to_numpy() for c in source.columns], list(source.columns))
        return table_from_frame(source, "<DataFrame>", sha, row_word="row", first_row=0, **opts)
    if isinstance(source, xr.Dataset):
        sha = _hash_arrays([v.values for v in source.variables.values()], list(source.variables))
        return _from_xarray(source, "<Dataset>", sha, **opts)
    text = os.fspath(source)
    if not str(text).strip():
        raise ValueError(
            f"SOURCE is empty ({text!r}); give a file, directory or synthetic:NAME?n=... spec"
        )
    if text.startswith("synthetic:"):
        return _synthetic(text)
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(f"source {text} not found")
    lower = path.name.lower()
    suffix = path.suffix.lower()
    if lower.endswith(".gz") or lower.endswith(".bz2") or lower.endswith(".zst"):
        suffix = Path(lower.rsplit(".", 1)[0]).suffix
    if path.is_dir() or suffix == ".zarr":
        return _from_zarr_path(path, **opts)
    if not path.is_file():
        raise ValueError(
            f"source {path} is not a regular file (a device, pipe or socket); give a data file"
        )
    if path.stat().st_size == 0:
        raise ValueError(f"source file {path} is empty")
    if suffix in TABLE_SUFFIXES:
        return _from_text(path, TABLE_SUFFIXES[suffix], **opts)
    if suffix in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises many types for damaged files
            raise ValueError(f"could not read Parquet file {path} (truncated?): {e}") from e
        return table_from_frame(frame, str(path), file_sha256(path), row_word="row", **opts)
    if suffix == ".npz":
        return _from_npz(path, features)
    if suffix in (".nc", ".nc4", ".netcdf", ".cdf", ".h5", ".hdf5"):
        try:
            ds = xr.open_dataset(path).load()
        except Exception as e:
            raise ValueError(f"could not read NetCDF file {path} (truncated?): {e}") from e
        return _from_xarray(ds, str(path), file_sha256(path), **opts)
    if suffix == ".h5ad":
        return _from_h5ad(path, **opts)
    raise ValueError(f"unsupported source {path}: suffix {suffix!r}; supported: {SUPPORTED}")


# --------------------------------------------------------------------------- hashing


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, or of a directory's files (names and bytes, sorted)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _hash_arrays(arrays: list[np.ndarray], names: list[Any]) -> str:
    h = hashlib.sha256(repr([str(n) for n in names]).encode())
    for a in arrays:
        a = np.asarray(a)
        h.update(a.astype(str).tobytes() if a.dtype == object else np.ascontiguousarray(a).data)
    return h.hexdigest()


# --------------------------------------------------------------------------- tables


def _from_text(path: Path, sep: str, **opts: Any) -> SourceTable:
    try:
        frame = pd.read_csv(path, sep=sep, low_memory=False)
    except pd.errors.EmptyDataError as e:
        raise ValueError(f"source file {path} is empty (no header line)") from e
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ValueError(f"could not parse {path} as a {sep!r}-separated table: {e}") from e
    _check_truncated(path, sep, len(frame.columns))
    header = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str).iloc[0].tolist()
    if len(header) == len(frame.columns):
        frame.columns = [str(h) for h in header]  # undo pandas' renaming of repeated names
    return table_from_frame(
        frame, str(path), file_sha256(path), row_word="line", first_row=2, **opts
    )


def _check_truncated(path: Path, sep: str, n_columns: int) -> None:
    if path.suffix.lower() not in TABLE_SUFFIXES:
        return  # compressed: the decompressor reports truncation
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(max(0, size - 65536))
        tail = fh.read()
    if tail.endswith(b"\n") or b"\n" not in tail:
        return
    last = tail.rsplit(b"\n", 1)[-1]
    if last.strip() and last.count(sep.encode()) < n_columns - 1:
        raise ValueError(
            f"{path} looks truncated: its last line has {last.count(sep.encode()) + 1} of "
            f"{n_columns} fields and no line end; restore the complete file"
        )


def _pick(columns: list[str], wanted: str | None, defaults: tuple[str, ...]) -> str | None:
    if wanted is not None:
        return wanted if wanted in columns else None
    lower = {c.lower(): c for c in reversed(columns)}
    return next((lower[d] for d in defaults if d in lower), None)


def table_from_frame(
    frame: pd.DataFrame,
    source: str,
    sha256: str,
    *,
    time_col: str | None = None,
    sample_col: str | None = None,
    features: list[str] | tuple[str, ...] | None = None,
    row_word: str = "row",
    first_row: int = 0,
    time_unit: str | None = None,
    time_origin: str | None = None,
    candidates: list[str] | None = None,
) -> SourceTable:
    """A :class:`SourceTable` from a long DataFrame (one row per observation).

    ``candidates``: the columns that may become features by default (e.g. the data variables
    of a Dataset, not its coordinates); None = every column.
    """
    columns = [str(c) for c in frame.columns]
    if len(set(columns)) != len(columns):
        dup = next(c for c in columns if columns.count(c) > 1)
        raise ValueError(f"{source} has the column {dup!r} more than once")
    frame = frame.set_axis(columns, axis=1)
    if len(frame) == 0:
        raise ValueError(f"{source} has a header but no data rows")
    tcol = _pick(columns, time_col, TIME_COLUMNS)
    if tcol is None:
        looked = repr(time_col) if time_col is not None else ", ".join(TIME_COLUMNS)
        raise ValueError(
            f"no time column found in {source}: looked for {looked}; columns are "
            f"{', '.join(columns)}. Pass --time-col COLUMN"
        )
    scol = None if sample_col == "" else _pick(columns, sample_col, SAMPLE_COLUMNS)
    if sample_col and scol is None:
        raise ValueError(
            f"sample column {sample_col!r} not found in {source}; columns are {', '.join(columns)}"
        )
    if scol == tcol:
        raise ValueError(f"{source}: column {tcol!r} cannot be both the time and the sample column")
    rows = np.arange(first_row, first_row + len(frame), dtype=np.int64)
    notes: list[str] = []
    if features:
        clash = [f for f in features if f in (tcol, scol)]
        if clash:
            role = "time" if clash[0] == tcol else "sample"
            raise ValueError(
                f"feature {clash[0]!r} is the {role} column of {source}; leave it out of "
                "--features (or pick another --time-col / --sample-col)"
            )
        missing = [f for f in features if f not in columns]
        if missing:
            raise ValueError(
                f"feature column(s) {', '.join(map(repr, missing))} not found in {source}; "
                f"columns are {', '.join(columns)}"
            )
        names = list(features)
    else:
        names = [c for c in columns if c not in (tcol, scol)
                 and (candidates is None or c in candidates)]  # fmt: skip
    values: list[np.ndarray] = []
    kept: list[str] = []
    for col in names:
        parsed = _numeric_column(frame[col], col, source, rows, row_word, strict=bool(features))
        if parsed is None:
            notes.append(f"skipped non-numeric column {col!r}")
            continue
        values.append(parsed)
        kept.append(col)
    if not kept:
        raise ValueError(
            f"no feature columns in {source}: besides the time column {tcol!r}"
            + (f" and the sample column {scol!r}" if scol else "")
            + " there is no numeric column; pass --features"
        )
    x = np.column_stack(values) if len(values) > 1 else values[0][:, None]
    time = _time_column(frame[tcol], tcol, source, rows, row_word)
    samples = None
    if scol is not None:
        samples = _labels(frame[scol], scol, source, rows, row_word)
    return SourceTable(
        source=source,
        sha256=sha256,
        time=time,
        x=x,
        features=tuple(kept),
        samples=samples,
        rows=rows,
        row_word=row_word,
        time_col=tcol,
        sample_col=scol,
        time_unit=time_unit,
        time_origin=time_origin,
        notes=tuple(notes),
    )


def _numeric_column(
    series: pd.Series, col: str, source: str, rows: np.ndarray, row_word: str, *, strict: bool
) -> np.ndarray | None:
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    converted = pd.to_numeric(series, errors="coerce")
    bad = converted.isna().to_numpy() & series.notna().to_numpy()
    if bad.any():
        if not strict and bad.sum() == series.notna().sum():
            return None  # a label column such as cell type: not a feature
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"non-numeric value {series.iloc[i]!r} in feature column {col!r} at {row_word} "
            f"{rows[i]} of {source}; features must be numbers (missing entries: leave empty or NA)"
        )
    return converted.to_numpy(dtype=np.float64, na_value=np.nan)


def _time_column(
    series: pd.Series, col: str, source: str, rows: np.ndarray, row_word: str
) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(series):
        return _naive_utc(series, col, source, rows, row_word)
    if pd.api.types.is_timedelta64_dtype(series):
        raise ValueError(f"time column {col!r} of {source} holds durations; convert to numbers")
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    numeric = pd.to_numeric(series, errors="coerce")
    bad = numeric.isna().to_numpy() & series.notna().to_numpy()
    if not bad.any():
        return numeric.to_numpy(dtype=np.float64, na_value=np.nan)
    parsed = pd.to_datetime(series, format="ISO8601", errors="coerce", utc=True)
    is_num = numeric.notna().to_numpy()
    is_date = parsed.notna().to_numpy() & ~is_num
    if is_num.any() and is_date.any():
        odd = is_date if is_num.sum() >= is_date.sum() else is_num
        i = int(np.flatnonzero(odd)[0])
        j = int(np.flatnonzero(is_num if odd is is_date else is_date)[0])
        raise ValueError(
            f"time column {col!r} of {source} mixes numbers and dates: {series.iloc[i]!r} at "
            f"{row_word} {rows[i]} but {series.iloc[j]!r} at {row_word} {rows[j]}; write every "
            "time the same way (all numbers or all ISO 8601 datetimes)"
        )
    if numeric.notna().sum() < parsed.notna().sum():  # mostly datetimes: report a non-datetime
        bad = parsed.isna().to_numpy() & series.notna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"time column {col!r} of {source} has the value {series.iloc[i]!r} at {row_word} "
            f"{rows[i]}, which is neither a number nor an ISO 8601 datetime"
        )
    return _naive_utc(parsed, col, source, rows, row_word)


def _naive_utc(
    series: pd.Series, col: str, source: str, rows: np.ndarray, row_word: str
) -> np.ndarray:
    if getattr(series.dt, "tz", None) is not None:
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    values = series.to_numpy(dtype="datetime64[ns]")
    missing = np.isnat(values)
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise ValueError(f"missing time in column {col!r} at {row_word} {rows[i]} of {source}")
    return values


def _labels(
    series: pd.Series, col: str, source: str, rows: np.ndarray, row_word: str
) -> np.ndarray:
    missing = series.isna().to_numpy()
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise ValueError(
            f"missing sample label in column {col!r} at {row_word} {rows[i]} of {source}"
        )
    if pd.api.types.is_float_dtype(series):
        values = series.to_numpy(dtype=np.float64)
        if np.all(values == np.round(values)):
            return np.array([str(int(v)) for v in values], dtype=object)
    return np.array([str(v) for v in series.to_numpy()], dtype=object)


# --------------------------------------------------------------------------- arrays


class _NpzError(ValueError):
    """A readable npz file without the arrays we need."""


def _from_npz(path: Path, features: list[str] | tuple[str, ...] | None) -> SourceTable:
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
            if "x" not in keys or "t" not in keys:
                raise _NpzError(
                    f"npz file {path} must hold arrays 'x' (rows, d) and 't' (rows,); it holds "
                    f"{', '.join(keys) or 'nothing'}"
                )
            x, t = z["x"], z["t"]
            samples = z["sample"] if "sample" in keys else None
            names = z["features"] if "features" in keys else None
    except _NpzError as e:
        raise ValueError(str(e)) from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        # numpy falls back to unpickling what is not a zip archive and says allow_pickle=;
        # never suggest that: unpickling runs arbitrary code
        reason = (
            "not a zip archive of .npy arrays (pickled or random bytes?)"
            if "pickle" in str(e)
            else f"{type(e).__name__}: {e}"
        )
        raise ValueError(
            f"could not read npz file {path} as an npz archive of arrays x, t (and optional "
            f"sample): {reason}"
        ) from None
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or t.shape != (x.shape[0],):
        raise ValueError(
            f"npz file {path}: 'x' must have shape (rows, d) and 't' shape (rows,); got "
            f"{x.shape} and {t.shape}"
        )
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise ValueError(f"npz file {path}: 'x' has non-numeric dtype {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError(f"npz file {path} has no rows")
    all_names = (
        tuple(str(n) for n in names)
        if names is not None
        else tuple(f"x{i + 1}" for i in range(x.shape[1]))
    )
    if features:
        missing = [f for f in features if f not in all_names]
        if missing:
            raise ValueError(
                f"feature(s) {', '.join(map(repr, missing))} not in npz file {path}; it has "
                f"{', '.join(all_names)}"
            )
        x = x[:, [all_names.index(f) for f in features]]
        all_names = tuple(features)
    if np.issubdtype(t.dtype, np.datetime64):
        time = t.astype("datetime64[ns]")
    elif np.issubdtype(t.dtype, np.number):
        time = t.astype(np.float64)
    else:
        raise ValueError(f"npz file {path}: 't' has non-numeric dtype {t.dtype}")
    labels = None
    if samples is not None:
        if samples.shape != t.shape:
            raise ValueError(f"npz file {path}: 'sample' must have shape {t.shape}")
        labels = _labels(pd.Series(samples), "sample", str(path), np.arange(len(t)), "row")
    return SourceTable(
        source=str(path),
        sha256=file_sha256(path),
        time=time,
        x=x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64),
        features=all_names,
        samples=labels,
        rows=np.arange(x.shape[0], dtype=np.int64),
        row_word="row",
        time_col="t",
        sample_col="sample" if labels is not None else None,
    )


def _from_zarr_path(path: Path, **opts: Any) -> SourceTable:
    try:
        try:
            ds = xr.open_zarr(path, chunks=None, consolidated=True).load()
        except (KeyError, ValueError, FileNotFoundError):
            ds = xr.open_zarr(path, chunks=None, consolidated=False).load()
    except Exception as e:
        raise ValueError(f"could not read zarr store {path}: {e}") from e
    return _from_xarray(ds, str(path), file_sha256(path), **opts)


def _from_xarray(ds: xr.Dataset, source: str, sha256: str, **opts: Any) -> SourceTable:
    """Our own long layout is read as is; any other Dataset goes through ``to_dataframe``."""
    if "x" in ds and ds["x"].dims == ("obs", "feature") and "obs_time" in ds:
        time = np.asarray(ds["obs_time"].values, dtype=np.float64)
        unit = ds.attrs.get("time_unit")
        origin = ds.attrs.get("time_origin")
        if origin:
            step = pd.Timedelta(1, unit=_PANDAS_UNITS[unit])
            time = (pd.Timestamp(origin) + pd.to_timedelta(time * step.value, unit="ns")).to_numpy()
        labels = None
        if ds.attrs.get("kind") == "trajectories" and opts.get("sample_col") != "":
            table_labels = np.array([str(v) for v in ds["sample_label"].values], dtype=object)
            labels = table_labels[np.asarray(ds["sample"].values, dtype=np.int64)]
        names = tuple(str(f) for f in ds["feature"].values)
        x = np.asarray(ds["x"].values)
        if opts.get("features"):
            wanted = list(opts["features"])
            missing = [f for f in wanted if f not in names]
            if missing:
                raise ValueError(f"feature(s) {', '.join(map(repr, missing))} not in {source}")
            x = x[:, [names.index(f) for f in wanted]]
            names = tuple(wanted)
        return SourceTable(
            source=source,
            sha256=sha256,
            time=time,
            x=x,
            features=names,
            samples=labels,
            rows=np.arange(len(time), dtype=np.int64),
            row_word="row",
            time_col="obs_time",
            sample_col="sample" if labels is not None else None,
            time_unit=None if origin else unit,
        )
    frame = ds.to_dataframe().reset_index()
    # coordinates (dimension indexes included) can be the time or sample column but are never
    # features by default: only data variables are
    data_vars = [str(v) for v in ds.data_vars]
    return table_from_frame(frame, source, sha256, row_word="row", candidates=data_vars, **opts)


_PANDAS_UNITS = {"days": "D", "hours": "h", "minutes": "min", "seconds": "s"}


def _from_h5ad(
    path: Path,
    *,
    time_col: str | None,
    sample_col: str | None,
    features: list[str] | tuple[str, ...] | None,
) -> SourceTable:
    try:
        import anndata
    except ImportError as e:
        raise MissingDependencyError(
            f"reading {path} needs the optional dependency anndata: "
            "pip install 'splineflow-pyro[anndata]'"
        ) from e
    try:
        adata = anndata.read_h5ad(path)
    except Exception as e:
        raise ValueError(f"could not read AnnData file {path} (truncated?): {e}") from e
    obs = adata.obs.reset_index(drop=True)
    if features and len(features) == 1 and features[0].startswith("obsm:"):
        key = features[0][len("obsm:") :]
        if key not in adata.obsm:
            raise ValueError(
                f"obsm key {key!r} not in {path}; it has {', '.join(adata.obsm.keys()) or 'none'}"
            )
        matrix = np.asarray(adata.obsm[key], dtype=np.float64)
        names = [f"{key}_{i}" for i in range(matrix.shape[1])]
    else:
        var = [str(v) for v in adata.var_names]
        cols = list(features) if features else var
        missing = [c for c in cols if c not in var]
        if missing:
            raise ValueError(
                f"feature(s) {', '.join(map(repr, missing))} not in var_names of {path}"
            )
        sub = adata[:, cols].X
        matrix = np.asarray(sub.toarray() if hasattr(sub, "toarray") else sub, dtype=np.float64)
        names = cols
    frame = pd.DataFrame(matrix, columns=names)
    tcol = _pick([str(c) for c in obs.columns], time_col, TIME_COLUMNS)
    if tcol is None:
        raise ValueError(
            f"no time column found in obs of {path}: looked for "
            f"{time_col or ', '.join(TIME_COLUMNS)}; obs columns are "
            f"{', '.join(map(str, obs.columns))}"
        )
    scol = (
        None
        if sample_col == ""
        else _pick([str(c) for c in obs.columns], sample_col, SAMPLE_COLUMNS)
    )
    if sample_col and scol is None:
        raise ValueError(f"sample column {sample_col!r} not found in obs of {path}")
    extra = {tcol: obs[tcol].to_numpy()}
    if scol:
        extra[scol] = obs[scol].astype(str).to_numpy()
    frame = pd.concat([pd.DataFrame(extra), frame], axis=1)
    return table_from_frame(
        frame,
        str(path),
        file_sha256(path),
        time_col=tcol,
        sample_col=scol or "",
        features=names,
        row_word="row",
    )


# --------------------------------------------------------------------------- synthetic

SYNTHETIC_MAX_N = 100_000
_SYNTHETIC_KEYS = {"n": float, "p": float, "seed": int, "t_end": float, "dt": float}


def _synthetic(spec: str) -> SourceTable:
    """``synthetic:NAME?n=1000&p=0.5&seed=0&t_end=10&dt=0.05``: tracked trajectories of a
    benchmark system; ``p`` is the probability that an entry is observed (default 1)."""
    body = spec[len("synthetic:") :]
    name, _, query = body.partition("?")
    params: dict[str, Any] = {"n": 1000, "p": 1.0, "seed": 0, "t_end": 10.0, "dt": 0.05}
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if key not in _SYNTHETIC_KEYS:
            raise ValueError(
                f"unknown parameter {key!r} in {spec}; known: {', '.join(_SYNTHETIC_KEYS)}"
            )
        try:
            params[key] = _SYNTHETIC_KEYS[key](value)
        except ValueError as e:
            raise ValueError(f"parameter {key}={value!r} in {spec} is not a number") from e
    n = params["n"]
    if not (np.isfinite(n) and n == int(n) and 1 <= n <= SYNTHETIC_MAX_N):
        raise ValueError(
            f"parameter n={n:g} in {spec} is the number of trajectories: n must be a whole "
            f"number between 1 and {SYNTHETIC_MAX_N}"
        )
    params["n"] = int(n)
    if not 0 < params["p"] <= 1:
        raise ValueError(f"p={params['p']} in {spec} must be in (0, 1]")
    try:
        from splineflow_pyro import systems
    except ImportError as e:
        raise MissingDependencyError(
            f"{spec} needs splineflow_pyro.systems, which could not be imported: {e}"
        ) from e
    try:
        sim = systems.simulate(
            name,
            n_trajectories=params["n"],
            seed=params["seed"],
            t_end=params["t_end"],
            dt=params["dt"],
        )
    except KeyError as e:
        raise ValueError(f"unknown system {name!r} in {spec}") from e
    states = np.asarray(sim.states, dtype=np.float64)
    batch, n, d = states.shape
    if params["p"] < 1:
        mask = np.asarray(systems.irregular_mask((batch, n, d), params["p"], seed=params["seed"]))
    else:
        mask = np.ones(states.shape, dtype=bool)
    keep = mask.any(axis=2)  # (batch, n): rows with at least one observed entry
    b_idx, t_idx = np.nonzero(keep)  # trajectory-major order
    x = np.where(mask, states, np.nan)[b_idx, t_idx]
    canonical = "synthetic:" + name + "?" + urllib.parse.urlencode(sorted(params.items()))
    sha = _hash_arrays([states, mask], [canonical])
    return SourceTable(
        source=canonical,
        sha256=sha,
        time=np.asarray(sim.times, dtype=np.float64)[t_idx],
        x=x,
        features=tuple(sim.feature_names),
        samples=np.array([str(b) for b in range(batch)], dtype=object)[b_idx],
        rows=np.arange(len(b_idx), dtype=np.int64),
        row_word="row",
        time_col="time",
        sample_col="trajectory",
    )
