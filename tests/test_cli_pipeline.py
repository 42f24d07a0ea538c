"""`splineflow results`: the latest metrics read from the results store, and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.cli import main
from splineflow_pyro import store


def record(run_id: str, method: str, seed: int, w1: float) -> store.RunRecord:
    return store.RunRecord(
        run_id=run_id,
        dataset="cells",
        method=method,
        heldout_time=1.0,
        seed=seed,
        config_hash="c0ffee",
        started="2026-12-03T00:00:00+00:00",
        finished="2026-12-03T00:01:00+00:00",
        metrics={"w1": w1, "mccann_w1": 0.5},
    )


def test_results_table_summarises_seeds(storage: Path, capsys: pytest.CaptureFixture) -> None:
    store.append_results(
        [
            record("a" * 16, "splineflow", 0, 0.2),
            record("b" * 16, "splineflow", 1, 0.4),
            record("c" * 16, "linear", 0, 0.6),
        ],
        str(storage),
    )
    assert main(["results", "--storage", str(storage)]) == 0
    out = capsys.readouterr().out
    assert "0.3 ± 0.14" in out and "0.6" in out and "mccann_w1" in out
    assert main(["results", "--storage", str(storage), "--method", "linear", "--runs"]) == 0
    out = capsys.readouterr().out
    assert "linear" in out and "splineflow" not in out


def test_results_errors_are_one_line(tmp_path: Path, storage: Path, capsys) -> None:
    assert main(["results", "--storage", str(tmp_path / "nowhere")]) == 1
    assert capsys.readouterr().err.strip().startswith("splineflow results: error: no storage")
    store.append_results([record("d" * 16, "linear", 0, 0.1)], str(storage))
    assert main(["results", "--storage", str(storage), "--dataset", "nope"]) == 1
    err = capsys.readouterr().err.strip()
    assert "'nope'" in err and "['cells']" in err and len(err.splitlines()) == 1
