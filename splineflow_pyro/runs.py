"""The pipeline's stages as plain functions: plan runs, train one, evaluate one.

A *run* is one (data set, method, held-out time, seed) under one configuration. Its keys are
pure functions of content hashes (the dataset store's version), the canonical configuration
and the library version, so they are equal across processes, machines and hash seeds:

- ``train_key``: data version, method, training settings, held-out time, seed;
- ``run_id`` (the evaluation key): ``train_key`` plus the evaluation settings.

Prefect tasks in ``flows/`` use these keys as cache keys; the functions here also work
alone, and skip work whose output already exists (a trained ``model.pt``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import xarray as xr

from splineflow_pyro import __version__, store
from splineflow_pyro.config import (
    EvalConfig,
    MethodConfig,
    PipelineConfig,
    TrainConfig,
    stable_hash,
)
from splineflow_pyro.data import snapshots_from_dataset, tracked_from_dataset
from splineflow_pyro.evaluation import Evaluation, evaluate_snapshots, evaluate_tracked
from splineflow_pyro.systems import split_trajectories
from splineflow_pyro.training import TrainedModel, fit

TRACKED_SPLIT = math.nan  # held-out "time" of tracked runs: a trajectory split instead


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one run's training and evaluation."""

    dataset: str
    dataset_version: str
    kind: str
    method: MethodConfig
    heldout: float
    seed: int
    train: TrainConfig
    evaluate: EvalConfig

    @property
    def train_key(self) -> str:
        """Cache key of the trained model."""
        heldout = None if math.isnan(self.heldout) else self.heldout
        return stable_hash(
            "train",
            __version__,
            self.dataset,
            self.dataset_version,
            self.method,
            _train_settings(self.train),
            self.evaluate.test_fraction if self.kind == "trajectories" else None,
            self.evaluate.split_seed if self.kind == "trajectories" else None,
            heldout,
            self.seed,
        )

    @property
    def run_id(self) -> str:
        """Cache key of the evaluation; the run's id in the results store."""
        return stable_hash("evaluate", self.train_key, self.evaluate)

    @property
    def config_hash(self) -> str:
        """Hash of the method, training and evaluation settings (not the data)."""
        return stable_hash(self.method, _train_settings(self.train), self.evaluate)

    @property
    def label(self) -> str:
        """Short human-readable name of the run."""
        heldout = "split" if math.isnan(self.heldout) else f"t={self.heldout:g}"
        return f"{self.dataset}/{self.method.label}/{heldout}/seed={self.seed}"


def _train_settings(train: TrainConfig) -> TrainConfig:
    """Training settings that change the result (the device and checkpoint interval do not)."""
    return dataclasses.replace(train, device="-", checkpoint_every=1)


def plan_runs(config: PipelineConfig, storage: str | None = None) -> list[RunSpec]:
    """Every (data set, method, held-out time, seed) run of ``config``, in a stable order."""
    specs = []
    for source in config.datasets:
        ds = store.open_dataset(source.name, storage)
        version = store.dataset_version(source.name, storage)
        kind = str(ds.attrs["kind"])
        for heldout in _heldout_times(ds, kind, config.holdout, source.name):
            for method in config.methods:
                for seed in config.seeds:
                    specs.append(
                        RunSpec(
                            source.name,
                            version,
                            kind,
                            method,
                            heldout,
                            seed,
                            config.train,
                            config.evaluate,
                        )
                    )
    return specs


def _heldout_times(
    ds: xr.Dataset, kind: str, holdout: tuple[float, ...] | None, name: str
) -> list[float]:
    if kind == "trajectories":
        return [TRACKED_SPLIT]
    times = [float(t) for t in ds["time"].values]
    intermediate = times[1:-1]
    if holdout is None:
        if not intermediate:
            raise ValueError(
                f"data set {name!r} has times {times}: leave-one-out needs at least 3 times"
            )
        return intermediate
    bad = [t for t in holdout if t not in intermediate]
    if bad:
        raise ValueError(
            f"holdout {bad} for data set {name!r}: held-out times must be intermediate "
            f"times of the data set, one of {intermediate}"
        )
    return list(holdout)


def artefact_dir(storage: str | None, *parts: str) -> Path:
    """Local folder for models, checkpoints and plots of a storage root.

    A local root keeps them under ``<root>/``; a URL root (``memory://``, ``s3://``) keeps
    them in a local cache folder named after the URL, since checkpoints need a file system.
    """
    root = store.resolve_storage(storage)
    if "://" in root and not root.startswith("file://"):
        digest = hashlib.sha256(root.encode()).hexdigest()[:12]
        base = (
            Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "splineflow" / digest
        )
    else:
        base = Path(root.removeprefix("file://"))
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def model_path(spec: RunSpec, storage: str | None = None) -> Path:
    """Where the trained model of ``spec`` lives."""
    return artefact_dir(storage, "models", spec.train_key) / "model.pt"


def train_run(spec: RunSpec, storage: str | None = None, *, progress: bool = False) -> Path:
    """Train the model of one run (or resume it from its checkpoint); returns its path.

    A run whose ``model.pt`` exists is not trained again.
    """
    path = model_path(spec, storage)
    if path.exists():
        return path
    ds = store.open_dataset(spec.dataset, storage)
    if spec.kind == "trajectories":
        data = tracked_from_dataset(ds)
        train_ids, _ = _split(data.sample_ids, spec.evaluate)
        data = data.subset(train_ids)
    else:
        data = snapshots_from_dataset(ds).without(spec.heldout)
    model = fit(
        data, spec.method, spec.train, seed=spec.seed, checkpoint_dir=path.parent, progress=progress
    )
    model.save(path)
    return path


def evaluate_run(spec: RunSpec, storage: str | None = None) -> store.RunRecord:
    """Evaluate one trained run, store its predictions and plot, append its metrics.

    Nothing is written unless every metric is computed and finite.
    """
    started = _now()
    path = model_path(spec, storage)
    if not path.exists():
        raise FileNotFoundError(f"run {spec.label}: no trained model at {path}; train it first")
    model = TrainedModel.load(path)
    ds = store.open_dataset(spec.dataset, storage)
    result = _evaluate(model, ds, spec)
    bad = {k: v for k, v in result.metrics.items() if not math.isfinite(v)}
    if bad:
        raise RuntimeError(f"run {spec.label}: non-finite metrics {bad}; nothing was stored")
    record = store.RunRecord(
        run_id=spec.run_id,
        dataset=spec.dataset,
        method=spec.method.label,
        heldout_time=spec.heldout,
        seed=spec.seed,
        config_hash=spec.config_hash,
        started=started,
        finished=_now(),
        metrics=result.metrics,
    )
    from splineflow_pyro.plots import plot_run

    plot_run(result, artefact_dir(storage, "plots") / f"{spec.run_id}.png", title=spec.label)
    store.write_predictions(spec.run_id, result.predictions, storage)
    store.append_results([record], storage)
    return record


def _evaluate(model: TrainedModel, ds: xr.Dataset, spec: RunSpec) -> Evaluation:
    if spec.kind == "trajectories":
        data = tracked_from_dataset(ds)
        train_ids, test_ids = _split(data.sample_ids, spec.evaluate)
        return evaluate_tracked(model, data.subset(test_ids), data.subset(train_ids), spec.evaluate)
    return evaluate_snapshots(
        model, snapshots_from_dataset(ds), spec.heldout, spec.evaluate, seed=spec.seed
    )


def _split(sample_ids: np.ndarray, config: EvalConfig) -> tuple[np.ndarray, np.ndarray]:
    """The trajectory split by position among the sorted sample ids (stable as data grow)."""
    train_pos, test_pos = split_trajectories(
        len(sample_ids), test_fraction=config.test_fraction, seed=config.split_seed
    )
    ids = np.asarray(sample_ids)
    return ids[train_pos], ids[test_pos]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
