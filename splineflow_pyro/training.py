"""Flow-matching training loop: seeded, device chosen once, checkpointed and resumable.

Each step draws a minibatch of conditional paths (tracked: the samples themselves; snapshots:
K-tuples chained by minibatch OT), a time uniform over each path's span, and regresses the
velocity network on the path's velocity (SplineFlow, arXiv 2601.23072, Eq. for u_t):

    loss = sum_ij w_ij (v(x_t, t)_ij - u_t,ij)^2 / sum_ij w_ij

Every random draw comes from one ``torch.Generator`` whose state is checkpointed with the
weights, the optimiser and the step, so a killed run resumes to the same weights.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from splineflow_pyro.config import MethodConfig, TrainConfig, stable_hash
from splineflow_pyro.couplings import chain_couplings
from splineflow_pyro.data import SnapshotData, Standardizer, TrackedData
from splineflow_pyro.nets import VelocityField
from splineflow_pyro.paths import ConditionalPath, PathSample, make_path
from splineflow_pyro.solvers import integrate

CHECKPOINT = "checkpoint.pt"
FORMAT_VERSION = 1


def resolve_device(name: str = "auto") -> torch.device:
    """The device to train on: ``auto`` picks CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available here")
    return device


@dataclass
class TrainedModel:
    """A velocity field with the standardisation and settings it was trained with."""

    field: VelocityField
    scaler: Standardizer
    method: MethodConfig
    train: TrainConfig
    losses: list[float]

    def velocity(self, t: Tensor, x: Tensor) -> Tensor:
        """``dx/dt`` in the data's units at time ``t`` (0-dim) and states ``x (batch, d)``."""
        s = self.scaler
        param = next(self.field.parameters())
        xp = x.to(device=param.device, dtype=param.dtype)
        z = s.x(xp)
        tz = (torch.as_tensor(t, dtype=param.dtype, device=param.device) - s.t_origin) / s.t_scale
        with torch.no_grad():
            # the network gives dz/dt' in standardised time; dz/dt = that / t_scale, and the
            # chain rule through the standardisation (and the transform) gives dx/dt
            return s.dx_dt(xp, self.field(z, tz) / s.t_scale).to(x.dtype).cpu()

    def predict(
        self,
        x0: Tensor,
        t0: float,
        times: Tensor,
        *,
        method: str = "rk4",
        step_size: float = 0.01,
    ) -> Tensor:
        """Integrate ``dx/dt = v(x, t)`` from ``x0 (batch, d)`` at ``t0`` to ``times (m,)``.

        Inputs and output are in the data's units; returns ``(m, batch, d)``. Times may lie
        before ``t0`` (backward integration) and come in any order. The flow is integrated in
        the model's standardised (and, with ``train.transform``, transformed) coordinates,
        so ``x0`` must lie in the transform's domain and predictions stay in it.
        """
        device = next(self.field.parameters()).device
        dtype = next(self.field.parameters()).dtype
        s, field = self.scaler, self.field

        def velocity(t: Tensor, z: Tensor) -> Tensor:
            # the network works in standardised time t' = (t - origin) / scale, so in the
            # data's time dz/dt = v(z, t') / scale; integrating in data time lets solver
            # errors name the data's times
            return field(z, (t - s.t_origin) / s.t_scale) / s.t_scale

        z0 = s.x(x0.to(device=device, dtype=dtype))
        with torch.no_grad():
            z = integrate(
                velocity,
                z0,
                float(t0),
                torch.as_tensor(times, dtype=torch.float64),
                method=method,
                step_size=step_size,
            )
        return s.x_inverse(z).double().cpu()

    def save(self, path: str | Path) -> None:
        """Write the model atomically (write to a temporary file, then rename)."""
        payload = {
            "format": FORMAT_VERSION,
            "state": self.field.state_dict(),
            "dim": self.field.dim,
            "scaler": dataclasses.asdict(self.scaler),
            "method": dataclasses.asdict(self.method),
            "train": dataclasses.asdict(self.train),
            "losses": self.losses,
        }
        _atomic_save(payload, Path(path))

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device = "cpu") -> TrainedModel:
        """Read a model written by :meth:`save`."""
        payload = torch.load(Path(path), map_location=device, weights_only=True)
        if payload.get("format") != FORMAT_VERSION:
            raise ValueError(f"model file {path}: unknown format {payload.get('format')!r}")
        train = TrainConfig(**payload["train"])
        field = _build_field(payload["dim"], train).to(device)
        field.load_state_dict(payload["state"])
        field.eval()
        return cls(
            field,
            Standardizer(**payload["scaler"]),
            MethodConfig(**payload["method"]),
            train,
            list(payload["losses"]),
        )


def fit(
    data: TrackedData | SnapshotData,
    method: MethodConfig,
    train: TrainConfig,
    *,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    progress: bool = False,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainedModel:
    """Train a velocity field on tracked trajectories or snapshots.

    Parameters
    ----------
    data : TrackedData or SnapshotData
        Training data in the data's units.
    method, train : MethodConfig, TrainConfig
        Path family and optimisation settings; ``train.transform`` (e.g. ``log``) is applied
        to every feature before standardisation, so paths and flow live in that space.
    seed : int
        Seeds the initial weights and every random draw.
    checkpoint_dir : path, optional
        Where ``checkpoint.pt`` (weights, optimiser, RNG state, step) is written every
        ``train.checkpoint_every`` steps; a run finding a checkpoint with the same
        fingerprint there resumes from it.
    progress : bool
        Show a progress bar on stderr.
    on_step : callable, optional
        Called as ``on_step(step, loss)`` after each step (e.g. for logging).
    """
    device = resolve_device(train.device)
    path = make_path(
        method.kind, degree=method.path_degree, sigma=method.sigma, schedule=method.schedule
    )
    batcher, scaler, dim = _make_batcher(data, path, train, device)
    init = torch.Generator().manual_seed(seed)
    field = _build_field(dim, train, generator=init).to(device)
    optimizer = torch.optim.AdamW(field.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    generator = torch.Generator().manual_seed(seed + 1)
    fingerprint = stable_hash(
        dataclasses.asdict(method), dataclasses.asdict(train), seed, _data_fingerprint(data)
    )
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir is not None else None
    start, losses = 0, []
    if ckpt_path is not None and ckpt_path.exists():
        start, losses = _restore(ckpt_path, fingerprint, field, optimizer, generator, device)
    bar = _progress(train.steps, start, progress, method.label)
    for step in range(start, train.steps):
        batch = batcher(generator)
        optimizer.zero_grad(set_to_none=True)
        pred = field(batch.x_t, batch.t)
        loss = ((pred - batch.u_t) ** 2 * batch.weight).sum() / batch.weight.sum().clamp_min(1)
        loss.backward()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(train, step)
        optimizer.step()
        value = float(loss.detach())
        losses.append(value)
        if on_step is not None:
            on_step(step, value)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4g}", refresh=False)
        done = step + 1
        if ckpt_path is not None and (done % train.checkpoint_every == 0 or done == train.steps):
            _checkpoint(ckpt_path, fingerprint, done, field, optimizer, generator, losses)
    if bar is not None:
        bar.close()
    field.eval()
    return TrainedModel(field, scaler, method, train, losses)


ANNEAL_FROM = 0.8  # share of the steps at full learning rate before the anneal


def learning_rate(train: TrainConfig, step: int) -> float:
    """The learning rate of step ``step`` (0-based): a function of the step alone, so a
    resumed run follows the same schedule as an uninterrupted one."""
    start = ANNEAL_FROM * train.steps
    if train.lr_schedule == "constant" or step < start:
        return train.lr
    return 0.5 * train.lr * (1.0 + math.cos(math.pi * (step - start) / (train.steps - start)))


def _build_field(
    dim: int, train: TrainConfig, generator: torch.Generator | None = None
) -> VelocityField:
    return VelocityField(
        dim,
        width=train.width,
        depth=train.depth,
        activation=train.activation,
        time_features=train.time_features,
        generator=generator,
    )


Batcher = Callable[[torch.Generator], PathSample]


def _make_batcher(
    data: TrackedData | SnapshotData,
    path: ConditionalPath,
    train: TrainConfig,
    device: torch.device,
) -> tuple[Batcher, Standardizer, int]:
    """A function drawing one minibatch of path samples (standardised, on ``device``)."""
    dtype = torch.float32
    if isinstance(data, TrackedData):
        scaler = Standardizer.from_values(data.times, data.values, train.transform, data.features)
        values = scaler.x(data.values)
        times = scaler.t(data.times)
        has_obs = data.mask.any(dim=1).all(dim=-1)
        if not bool(has_obs.any()):
            raise ValueError(
                "no trajectory has every feature observed at least once; a state cannot be formed"
            )
        spline = path.fit(times, values, data.mask)
        n = values.shape[0]
        size = min(train.batch_size, n)

        def tracked_batch(generator: torch.Generator) -> PathSample:
            # draw the minibatch first and evaluate only its paths: a step costs the same
            # whatever the number of trajectories
            rows = torch.randint(n, (size,), generator=generator)
            drawn = path.sample_from(spline.select(rows), generator=generator)
            return _to(drawn, device, dtype)

        return tracked_batch, scaler, values.shape[-1]

    if len(data.marginals) < 2:
        raise ValueError(
            f"snapshot training needs at least 2 time points, got {len(data.marginals)}"
        )
    all_cells = torch.cat(list(data.marginals))
    scaler = Standardizer.from_values(data.times, all_cells, train.transform, data.features)
    marginals = [scaler.x(m) for m in data.marginals]
    times = scaler.t(data.times)

    def snapshot_batch(generator: torch.Generator) -> PathSample:
        tuples = chain_couplings(
            marginals,
            train.batch_size,
            method=train.coupling,
            reg=train.sinkhorn_reg,
            generator=generator,
        )
        drawn = path.sample(times, tuples, generator=generator)
        return _to(drawn, device, dtype)

    return snapshot_batch, scaler, all_cells.shape[-1]


def _to(sample: PathSample, device: torch.device, dtype) -> PathSample:
    def move(x: Tensor | None) -> Tensor | None:
        return None if x is None else x.to(device=device, dtype=dtype)

    return PathSample(**{f.name: move(getattr(sample, f.name)) for f in dataclasses.fields(sample)})


def _data_fingerprint(data: TrackedData | SnapshotData) -> list:
    if isinstance(data, TrackedData):
        return ["tracked", list(data.values.shape), float(torch.nansum(data.values))]
    return [
        "snapshots",
        [list(m.shape) for m in data.marginals],
        float(sum(m.sum() for m in data.marginals)),
    ]


def _progress(total: int, start: int, enabled: bool, label: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc=f"train {label}", unit="step", leave=False)


def _checkpoint(
    path: Path, fingerprint: str, step: int, field, optimizer, generator, losses
) -> None:
    payload = {
        "format": FORMAT_VERSION,
        "fingerprint": fingerprint,
        "step": step,
        "state": field.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": generator.get_state(),
        "losses": list(losses),
    }
    _atomic_save(payload, path)


def _restore(path: Path, fingerprint: str, field, optimizer, generator, device) -> tuple[int, list]:
    payload = torch.load(path, map_location=device, weights_only=True)
    if payload.get("fingerprint") != fingerprint:
        return 0, []  # a checkpoint of other settings or data: start afresh
    field.load_state_dict(payload["state"])
    optimizer.load_state_dict(payload["optimizer"])
    generator.set_state(payload["rng"].cpu())
    return int(payload["step"]), list(payload["losses"])


def _atomic_save(payload: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
