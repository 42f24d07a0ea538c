"""Prefect flows: ``ingest``, ``train``, ``evaluate`` and ``nightly`` (all of them, in order).

Each flow takes plain parameters (paths, names, numbers) so deployments can schedule it and
the CLI can call it. ``nightly`` reports per stage what it did and what the cache spared.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.futures import wait

from flows import CONFIG_ENV
from flows.tasks import (
    evaluate_task,
    ingest_options,
    ingest_task,
    result_storage,
    train_task,
)
from splineflow_pyro import store
from splineflow_pyro.config import DEFAULT_CONFIG, PipelineConfig, SourceConfig, load_config
from splineflow_pyro.report import markdown_table, summarise
from splineflow_pyro.runs import RunSpec, plan_runs


def resolve_config(config_path: str | None) -> PipelineConfig:
    """The configuration in ``config_path``, else in ``$SPLINEFLOW_CONFIG``, else the
    built-in demo."""
    path = config_path or os.environ.get(CONFIG_ENV)
    return load_config(path) if path else DEFAULT_CONFIG


def select_runs(
    specs: Sequence[RunSpec],
    *,
    dataset: str | None = None,
    method: str | None = None,
    heldout: float | None = None,
    seed: int | None = None,
) -> list[RunSpec]:
    """The runs matching every given filter (None = any)."""
    chosen = [
        s
        for s in specs
        if (dataset is None or s.dataset == dataset)
        and (method is None or s.method.label == method)
        and (heldout is None or (not math.isnan(s.heldout) and s.heldout == heldout))
        and (seed is None or s.seed == seed)
    ]
    if not chosen:
        raise ValueError(
            "no run of the configuration matches "
            f"dataset={dataset!r} method={method!r} heldout={heldout!r} seed={seed!r}; "
            f"runs are: {sorted({s.label for s in specs})}"
        )
    return chosen


def _planned(
    config_path: str | None,
    root: str,
    dataset: str | None,
    method: str | None,
    heldout: float | None,
    seed: int | None,
) -> list[RunSpec]:
    runs = plan_runs(resolve_config(config_path), root)
    return select_runs(runs, dataset=dataset, method=method, heldout=heldout, seed=seed)


@flow(name="ingest", log_prints=False)
def ingest_flow(
    source: str,
    name: str,
    storage: str | None = None,
    time_col: str | None = None,
    sample_col: str | None = None,
    features: list[str] | None = None,
) -> dict[str, Any]:
    """Ingest one source (file path or ``synthetic:...``) into the dataset store ``name``."""
    root = store.resolve_storage(storage)
    spec = SourceConfig(name, source, time_col, sample_col, tuple(features) if features else None)
    return ingest_task.with_options(**ingest_options(spec, root))(spec, root)


@flow(name="train", log_prints=False)
def train_flow(
    config_path: str | None = None,
    storage: str | None = None,
    dataset: str | None = None,
    method: str | None = None,
    heldout: float | None = None,
    seed: int | None = None,
    progress: bool = False,
) -> list[dict[str, str]]:
    """Train the configuration's runs (optionally filtered).

    Returns, per run, its label, model path and whether it was ``trained`` or ``cached``.
    """
    root = store.resolve_storage(storage)
    specs = _planned(config_path, root, dataset, method, heldout, seed)
    task = train_task.with_options(result_storage=result_storage(root))
    done = []
    for spec in specs:
        state = task(spec, root, progress, return_state=True)
        status = "cached" if _cached(state) else "trained"
        path = state.result()  # raises the task's own error when it failed
        done.append({"run": spec.label, "model": path, "status": status})
    return done


@flow(name="evaluate", log_prints=False)
def evaluate_flow(
    config_path: str | None = None,
    storage: str | None = None,
    dataset: str | None = None,
    method: str | None = None,
    heldout: float | None = None,
    seed: int | None = None,
) -> list[dict[str, Any]]:
    """Evaluate the configuration's trained runs (optionally filtered).

    Returns, per run, the evaluation record with ``status`` ``evaluated`` or ``cached``.
    """
    root = store.resolve_storage(storage)
    store.open_results(root)  # a damaged results store fails before any evaluation
    specs = _planned(config_path, root, dataset, method, heldout, seed)
    task = evaluate_task.with_options(result_storage=result_storage(root))
    done = []
    for spec in specs:
        state = task(spec, root, return_state=True)
        record = state.result()  # raises the task's own error when it failed
        done.append(record | {"status": "cached" if _cached(state) else "evaluated"})
    return done


@flow(name="nightly", log_prints=False)
def nightly(config_path: str | None = None, storage: str | None = None) -> dict[str, Any]:
    """Ingest the configured sources, train and evaluate every run, write a summary.

    Returns a summary with, per stage, how many items ran and how many came from the cache.
    Raises after all other runs finished when any run failed, naming the failed runs.
    """
    config = resolve_config(config_path)
    root = store.resolve_storage(storage)
    store.open_results(root)  # a damaged results store fails now, before any training
    results_at = result_storage(root)

    ingest_states = [
        ingest_task.with_options(**ingest_options(source, root))(source, root, return_state=True)
        for source in config.datasets
    ]
    failed = [s for s in ingest_states if s.is_failed()]
    if failed:
        failed[0].result()  # raises the ingestion error with its message

    specs = plan_runs(config, root)
    train = train_task.with_options(result_storage=results_at)
    evaluate = evaluate_task.with_options(result_storage=results_at)
    train_futures = [train.submit(spec, root) for spec in specs]
    eval_futures = [
        evaluate.submit(spec, root, model=future)
        for spec, future in zip(specs, train_futures, strict=True)
    ]
    wait(train_futures + eval_futures)

    summary = {
        "ingest": _ingest_counts(ingest_states),
        "train": _state_counts([f.state for f in train_futures], "trained"),
        "evaluate": _state_counts([f.state for f in eval_futures], "evaluated"),
        "runs": len(specs),
    }
    for stage in ("ingest", "train", "evaluate"):
        counts = ", ".join(f"{n} {what}" for what, n in summary[stage].items())
        get_run_logger().info(f"{stage}: {counts}")
    table = summarise(store.latest_results(root))
    create_markdown_artifact(
        markdown="## Nightly summary\n\n" + markdown_table(table), key="nightly-summary"
    )
    failures = [
        spec.label
        for spec, tf, ef in zip(specs, train_futures, eval_futures, strict=True)
        if not (tf.state.is_completed() and ef.state.is_completed())
    ]
    if failures:
        first = next(f for f in train_futures + eval_futures if not f.state.is_completed())
        raise RuntimeError(
            f"{len(failures)} of {len(specs)} runs failed ({', '.join(failures)}); "
            f"first error: {_state_message(first.state)}"
        )
    return summary


def _cached(state) -> bool:
    """Whether Prefect served the task run from its cache."""
    return state.name == "Cached"


def _ingest_counts(states) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for state in states:
        counts["cached" if _cached(state) else state.result()["status"]] += 1
    return dict(counts)


def _state_counts(states, done: str) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for state in states:
        if _cached(state):
            counts["cached"] += 1
        elif state.is_completed():
            counts[done] += 1
        else:
            counts["failed"] += 1
    return {k: counts.get(k, 0) for k in (done, "cached", "failed")}


def _state_message(state) -> str:
    try:
        state.result()
    except Exception as exc:  # the task's own error, re-raised by Prefect
        return f"{type(exc).__name__}: {exc}"
    return state.message or state.name
