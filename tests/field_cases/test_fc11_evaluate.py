"""FC-11 (evaluation half): a velocity field that blows up or returns NaN ends in a clear
error naming what and where, a one-line CLI error with a non-zero exit, and nothing written
to the results store."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
import yaml

from flows.cli import main
from splineflow_pyro import store
from splineflow_pyro.config import load_config
from splineflow_pyro.data import snapshots_from_dataset
from splineflow_pyro.evaluation import evaluate_snapshots
from splineflow_pyro.nets import VelocityField
from splineflow_pyro.runs import model_path, plan_runs, train_run
from splineflow_pyro.solvers import SolverError
from splineflow_pyro.training import TrainedModel


class Square(VelocityField):
    """v(x, t) = x^2 (in standardised units): blows up in finite time."""

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        return 4.0 * x.abs() ** 2 + 1.0


@pytest.fixture
def trained(tmp_path: Path, storage: Path):
    csv = tmp_path / "cells.csv"
    rows = ["time,x1,x2"] + [
        f"{t},{0.1 * i + t},{0.2 * i - t}" for t in (0, 1, 2) for i in range(12)
    ]
    csv.write_text("\n".join(rows) + "\n")
    config = tmp_path / "fc11.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "datasets": [{"name": "cells", "source": str(csv)}],
                "methods": ["splineflow"],
                "train": {"steps": 5, "batch_size": 8, "width": 8, "depth": 1},
                "evaluate": {"solver": "rk4", "step_size": 0.01},
            }
        )
    )
    store.ingest(str(csv), "cells", storage=str(storage))
    (spec,) = plan_runs(load_config(config), str(storage))
    train_run(spec, str(storage))
    return config, spec, str(storage)


def test_fc11_blow_up_names_the_time_reached(trained) -> None:
    _, spec, storage = trained
    model = TrainedModel.load(model_path(spec, storage))
    model.field = Square(2)
    data = snapshots_from_dataset(store.open_dataset("cells", storage))
    for solver in ("rk4", "dopri5"):
        with pytest.raises(SolverError, match="diverged|non-finite") as info:
            evaluate_snapshots(model, data, 1.0, spec.evaluate.__class__(solver=solver))
        times = [float(x) for x in re.findall(r"t = ([-\d.e+]+)", str(info.value))]
        assert times and all(0.0 <= t <= 1.0 for t in times)


def test_fc11_nan_velocity_in_the_cli_is_one_line_and_stores_nothing(
    trained, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, prefect_harness
) -> None:
    config, spec, storage = trained
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
    monkeypatch.setenv("SPLINEFLOW_PROGRESS", "")
    model = TrainedModel.load(model_path(spec, storage))
    with torch.no_grad():
        for p in model.field.parameters():
            p.fill_(math.nan)
    model.save(model_path(spec, storage))
    capsys.readouterr()
    code = main(["evaluate", "--config", str(config), "--storage", storage])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert err[-1].startswith("splineflow evaluate: error:")
    assert "non-finite" in err[-1] and "t = 0" in err[-1]
    results = store.open_results(storage)
    assert results.sizes["run"] == 0
