"""CLI commands of the pipeline: ``run``, ``train``, ``evaluate`` (Prefect flows) and
``results`` (read straight from the results store)."""

from __future__ import annotations

import argparse
import os
import sys

from flows import PROGRESS_ENV
from flows.cli import add_storage_argument


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``run``, ``train``, ``evaluate`` and ``results`` to the CLI."""
    run = sub.add_parser(
        "run",
        help="run the nightly pipeline now: ingest, train, evaluate, summary",
        description="Run the whole pipeline (the nightly flow) now and print the metrics.",
    )
    _config_arguments(run)
    run.add_argument(
        "--runner",
        choices=("threads", "dask"),
        default="threads",
        help="Prefect task runner: threads (default) or a local Dask cluster (prefect-dask)",
    )
    run.add_argument("--workers", type=int, default=2, help="parallel workers (default 2)")
    run.set_defaults(func=_run)

    for name, helptext in (
        ("train", "train (or resume) runs of the configuration"),
        ("evaluate", "evaluate trained runs and append their metrics to the results store"),
    ):
        p = sub.add_parser(name, help=helptext, description=helptext.capitalize() + ".")
        _config_arguments(p)
        p.add_argument("--dataset", help="only runs of this data set")
        p.add_argument("--method", help="only runs of this method (its name in the config)")
        p.add_argument("--heldout", type=float, help="only runs with this held-out time")
        p.add_argument("--seed", type=int, help="only runs with this seed")
        p.set_defaults(func=_train if name == "train" else _evaluate)

    results = sub.add_parser(
        "results",
        help="table of the latest metrics, read from the results store",
        description="Latest metrics per (data set, method, held-out time), mean ± std over seeds.",
    )
    add_storage_argument(results)
    results.add_argument("--dataset", help="only this data set")
    results.add_argument("--method", help="only this method")
    results.add_argument("--runs", action="store_true", help="one row per run instead of a summary")
    results.set_defaults(func=_results)


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", default=None, help="pipeline config (YAML or TOML); default: built-in demo"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show Prefect's own log lines")
    add_storage_argument(parser)


def _prepare(args: argparse.Namespace) -> str:
    """Check the config early (a clear error before Prefect starts) and resolve storage."""
    from splineflow_pyro import store
    from splineflow_pyro.config import load_config

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Prefect's log lines (and its tracebacks on failure) only with --verbose; the stages
    # print their own progress, and a failure ends in one line from the CLI.
    os.environ["PREFECT_LOGGING_LEVEL"] = "INFO" if args.verbose else "CRITICAL"
    os.environ[PROGRESS_ENV] = "1"
    if args.config:
        load_config(args.config)
    return store.resolve_storage(args.storage)


def _run(args: argparse.Namespace) -> int:
    root = _prepare(args)
    from flows.pipeline import nightly

    flow = nightly.with_options(task_runner=_task_runner(args.runner, args.workers))
    print(f"splineflow run: storage {root}", file=sys.stderr)
    summary = flow(config_path=args.config, storage=root)
    for stage in ("ingest", "train", "evaluate"):
        print(f"{stage}: " + ", ".join(f"{n} {what}" for what, n in summary[stage].items()))
    _print_results(root, None, None, runs=False, only=_config_datasets(args.config))
    return 0


def _task_runner(kind: str, workers: int):
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if kind == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError as exc:
            raise RuntimeError(
                "--runner dask needs prefect-dask: pip install 'splineflow-pyro[dask]'"
            ) from exc
        return DaskTaskRunner(
            cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True}
        )
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=workers)


def _filters(args: argparse.Namespace) -> dict:
    return {
        "dataset": args.dataset,
        "method": args.method,
        "heldout": args.heldout,
        "seed": args.seed,
    }


def _train(args: argparse.Namespace) -> int:
    root = _prepare(args)
    from flows.pipeline import train_flow

    runs = train_flow(config_path=args.config, storage=root, progress=True, **_filters(args))
    for run in runs:
        print(f"{run['run']}: {run['status']} -> {run['model']}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    root = _prepare(args)
    from flows.pipeline import evaluate_flow

    for run in evaluate_flow(config_path=args.config, storage=root, **_filters(args)):
        if run["status"] == "cached":
            print(f"{run['label']}: cached (already evaluated with these settings)")
    only = _config_datasets(args.config)
    _print_results(root, args.dataset, args.method, runs=False, only=only)
    return 0


def _results(args: argparse.Namespace) -> int:
    from splineflow_pyro import store

    root = store.resolve_storage(args.storage)
    if "://" not in root and not os.path.isdir(root):
        raise FileNotFoundError(f"no storage at {root}; pass --storage or set SPLINEFLOW_STORAGE")
    every = store.latest_results(root)
    for column, wanted in (("dataset", args.dataset), ("method", args.method)):
        known = sorted(set(every[column])) if len(every) else []
        if wanted is not None and wanted not in known:
            raise ValueError(f"--{column} {wanted!r} has no results in {root}; known: {known}")
    _print_results(root, args.dataset, args.method, args.runs)
    return 0


def _print_results(
    root: str,
    dataset: str | None,
    method: str | None,
    runs: bool,
    only: list[str] | None = None,
) -> None:
    """The latest metrics (``only``: restrict to these data sets, e.g. a config's)."""
    from splineflow_pyro import store
    from splineflow_pyro.report import summarise, text_table

    frame = store.latest_results(root, dataset=dataset, method=method)
    if only is not None:
        frame = frame[frame["dataset"].isin(only)]
    print(text_table(frame if runs else summarise(frame)))


def _config_datasets(config_path: str | None) -> list[str]:
    from flows.pipeline import resolve_config

    return [d.name for d in resolve_config(config_path).datasets]
