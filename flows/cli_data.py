"""``splineflow ingest | datasets | show``: data set stores from the command line.

These handlers call :mod:`splineflow_pyro.store` directly (no Prefect).
"""

from __future__ import annotations

import argparse
import functools
import sys

from splineflow_pyro import store


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``ingest``, ``datasets`` and ``show`` commands."""
    from flows.cli import add_storage_argument

    p = subparsers.add_parser(
        "ingest",
        help="validate a source and create or append to a data set store",
        description=(
            "SOURCE: CSV/TSV, Parquet, .npz (x, t, optional sample), NetCDF/zarr, AnnData .h5ad, "
            "or synthetic:NAME?n=1000&p=0.5&seed=0. Tracked when a sample column is used "
            "(--sample-col, else a column named sample/sample_id/trajectory), snapshots "
            "otherwise. Re-ingesting stored rows is a no-op; rows at a stored snapshot time or "
            "(sample, time) with other values need --replace."
        ),
    )
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("--name", required=True, help="data set name (store datasets/NAME.zarr)")
    p.add_argument("--time-col", default=None, help="time column (default: time, t, day, samples)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--sample-col", default=None, help="sample/trajectory id column (tracked)")
    group.add_argument(
        "--snapshots", action="store_true", help="ignore any sample column: unpaired snapshots"
    )
    p.add_argument(
        "--features",
        nargs="+",
        default=None,
        help="feature columns (space or comma separated; h5ad: obsm:KEY); default: all numeric",
    )
    p.add_argument("--replace", action="store_true", help="replace stored rows the source repeats")
    add_storage_argument(p)
    p.set_defaults(func=_ingest)

    p = subparsers.add_parser("datasets", help="list the data set stores")
    add_storage_argument(p)
    p.set_defaults(func=_datasets)

    p = subparsers.add_parser("show", help="summary of one data set store")
    p.add_argument("name", metavar="NAME")
    add_storage_argument(p)
    p.set_defaults(func=_show)


def _plain_os_errors(func):  # noqa: ANN001, ANN202
    """Turn stray ``OSError``s (name too long, not a directory, ...) into one-line errors."""

    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except (FileNotFoundError, PermissionError):
            raise
        except OSError as exc:
            where = exc.filename or getattr(args, "storage", None) or "the storage"
            raise ValueError(f"{where}: {exc.strerror or exc}") from None

    return wrapper


@_plain_os_errors
def _ingest(args: argparse.Namespace) -> int:
    features = None
    if args.features:
        features = [f for item in args.features for f in item.split(",") if f]
    report = store.ingest(
        args.source,
        args.name,
        storage=args.storage,
        time_col=args.time_col,
        sample_col="" if args.snapshots else args.sample_col,
        features=features,
        replace=args.replace,
    )
    print(f"time column: {report.time_col}")
    print(f"sample column: {report.sample_col or 'none (snapshots)'}")
    for note in report.notes:
        print(f"note: {note}")
    if report.status == "unchanged":
        print(
            f"unchanged: data set {report.name!r} already holds this content "
            f"(version {report.version[:12]})"
        )
        return 0
    extra = f", {report.rows_replaced} replaced" if report.rows_replaced else ""
    print(
        f"{report.status} {report.name}: {report.rows_added} rows added{extra}, "
        f"{report.rows_total} in total, {report.kind}, features {', '.join(report.features)} "
        f"(version {report.version[:12]})"
    )
    return 0


def _fmt_times(values: tuple[float, ...], limit: int = 8) -> str:
    text = [f"{v:g}" for v in values]
    if len(text) > limit:
        text = text[: limit // 2] + ["..."] + text[-limit // 2 :]
    return " ".join(text)


@_plain_os_errors
def _datasets(args: argparse.Namespace) -> int:
    names = store.list_dataset_names(args.storage)
    if not names:
        print(f"no data sets in {store.resolve_storage(args.storage)}")
        return 0
    rows: list[tuple[str, ...]] = [("name", "kind", "times", "rows per time", "features")]
    broken = 0
    for name in names:  # one broken store must not hide the healthy ones
        try:
            s = store.summarize(name, args.storage)
        except (ValueError, OSError, KeyError) as exc:
            broken += 1
            rows.append((name, "ERROR: " + " ".join(str(exc).split())))
            continue
        counts = _fmt_times(tuple(float(c) for c in s.counts))
        rows.append((s.name, s.kind, _fmt_times(s.times), counts, ", ".join(s.features)))
    # columns as wide as their longest entry (an error row spans the rest of the line)
    widths = [max(len(r[i]) for r in rows if len(r) > i + 1) for i in range(4)]
    for row in rows:
        cells = [cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=False)]
        print("  ".join([*cells, row[-1]]))
    if broken:
        print(
            f"splineflow datasets: error: {broken} of {len(names)} data set(s) could not be read",
            file=sys.stderr,
        )
        return 1
    return 0


@_plain_os_errors
def _show(args: argparse.Namespace) -> int:
    s = store.summarize(args.name, args.storage)
    origin = f" since {s.time_origin}" if s.time_origin else ""
    print(f"data set   {s.name}")
    print(f"path       {s.path}")
    print(
        f"kind       {s.kind}" + (f" ({s.n_samples} samples)" if s.kind == "trajectories" else "")
    )
    print(f"time unit  {s.time_unit}{origin}")
    print(f"features   {', '.join(s.features)}")
    print(f"rows       {sum(s.counts)}")
    print(f"version    {s.version}")
    print(f"source     {s.source}")
    print("time       rows")
    for t, c in zip(s.times, s.counts, strict=True):
        print(f"{t:<10g} {c}")
    for h in s.history:
        print(
            f"history    {h.get('when')} {h.get('status')} +{h.get('rows_added')} {h.get('source')}"
        )
    return 0
