"""Prefect tasks: library calls plus cache keys, logging and artifacts, nothing else.

Cache keys are the library's content keys (``RunSpec.train_key``, ``RunSpec.run_id``, the
source's sha256 with the store's version), never hashes of live objects, so a re-run in
another process finds them. Results are persisted under ``<storage>/.prefect-results``.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows import PROGRESS_ENV
from splineflow_pyro import store
from splineflow_pyro.config import SourceConfig, stable_hash
from splineflow_pyro.report import markdown_table
from splineflow_pyro.runs import RunSpec, artefact_dir, evaluate_run, train_run
from splineflow_pyro.sources import file_sha256


def say(message: str) -> None:
    """Progress of a stage: a Prefect log line, and a line on stderr under the CLI."""
    get_run_logger().info(message)
    if os.environ.get(PROGRESS_ENV):
        print(message, file=sys.stderr, flush=True)


def result_storage(storage: str | None) -> Path:
    """Folder where Prefect persists task results (and so its cache) for a storage root."""
    return artefact_dir(storage, ".prefect-results")


def _ingest_key(context: Any, parameters: dict[str, Any]) -> str:
    """Source settings and source content. (A deleted store is ingested again: the flows
    refresh this cache entry when the store is absent, see :func:`ingest_options`.)"""
    source: SourceConfig = parameters["source"]
    return "ingest-" + stable_hash(asdict(source), source_fingerprint(source.source))


def ingest_options(source: SourceConfig, storage: str | None) -> dict[str, Any]:
    """Task options for ingesting ``source``: bypass the cache when its store is absent."""
    present = source.name in store.list_dataset_names(storage)
    return {"result_storage": result_storage(storage), "refresh_cache": not present}


def source_fingerprint(source: str) -> str:
    """Content hash of a source: its bytes for a file or folder, its text for ``synthetic:``."""
    path = Path(source)
    if source.startswith("synthetic:") or not path.exists():
        return stable_hash(source)  # a missing file fails in the task, with a clear message
    return file_sha256(path)


@task(name="ingest", cache_key_fn=_ingest_key, persist_result=True)
def ingest_task(source: SourceConfig, storage: str | None) -> dict[str, Any]:
    """Ingest one configured source into its dataset store (a no-op when unchanged)."""
    report = store.ingest(
        source.source,
        source.name,
        storage=storage,
        time_col=source.time_col,
        sample_col=source.sample_col,
        features=list(source.features) if source.features else None,
    )
    say(f"ingest {source.name}: {report.status} ({report.rows_added} rows added)")
    return {"name": report.name, "status": report.status, "rows_added": report.rows_added}


@task(
    name="train",
    cache_key_fn=lambda context, parameters: "train-" + parameters["spec"].train_key,
    persist_result=True,
)
def train_task(spec: RunSpec, storage: str | None, progress: bool = False) -> str:
    """Train (or resume) one run's model; returns the model's path."""
    say(f"train {spec.label} ...")
    path = train_run(spec, storage, progress=progress)
    say(f"train {spec.label}: done ({path})")
    return str(path)


@task(
    name="evaluate",
    cache_key_fn=lambda context, parameters: "evaluate-" + parameters["spec"].run_id,
    persist_result=True,
)
def evaluate_task(spec: RunSpec, storage: str | None, model: str | None = None) -> dict[str, Any]:
    """Evaluate one trained run and append its metrics to the results store."""
    record = evaluate_run(spec, storage)
    table = markdown_table([{"metric": k, "value": v} for k, v in sorted(record.metrics.items())])
    heldout = "split" if math.isnan(spec.heldout) else f"{spec.heldout:g}"
    create_markdown_artifact(
        markdown=f"### {spec.label}\n\nrun `{spec.run_id}`, held-out {heldout}\n\n{table}",
        key=f"run-{spec.run_id}",
        description=f"metrics of {spec.label}",
    )
    say(f"evaluate {spec.label}: done")
    return {"run_id": record.run_id, "label": spec.label, "metrics": dict(record.metrics)}
