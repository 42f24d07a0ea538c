"""``splineflow ingest | datasets | show``."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.cli import main


def test_ingest_mouse_via_cli(storage: Path, shared_data: Path, capsys) -> None:
    src = shared_data / "mouse_hematopoiesis.csv"
    if not src.exists():
        pytest.skip(f"{src} not found")
    assert main(["ingest", str(src), "--name", "mouse_hsc", "--storage", str(storage)]) == 0
    out = capsys.readouterr().out
    assert "time column: samples" in out and "created mouse_hsc: 10998 rows" in out
    assert main(["ingest", str(src), "--name", "mouse_hsc"]) == 0
    assert "unchanged" in capsys.readouterr().out
    assert main(["datasets"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("mouse_hsc"))
    assert "snapshots" in line and "0 1 2" in line and "1429 3781 5788" in line and "x1, x2" in line
    assert main(["show", "mouse_hsc", "--storage", str(storage)]) == 0
    out = capsys.readouterr().out
    assert "rows       10998" in out and "1          3781" in out


def test_cli_errors_exit_non_zero(storage: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("when,x1\n0,1\n1,2\n")
    assert main(["ingest", str(bad), "--name", "b"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("splineflow ingest: error: no time column found in") and "bad.csv" in err
    assert main(["ingest", str(bad), "--name", "b", "--time-col", "when"]) == 0
    assert main(["show", "nope"]) == 1
    assert "no data set 'nope'" in capsys.readouterr().err


def test_features_and_snapshots_flags(storage: Path, tmp_path: Path, capsys) -> None:
    src = tmp_path / "s.csv"
    src.write_text("sample,t,x1,x2,x3\na,0,1,2,3\na,1,1,2,3\n")
    assert main(["ingest", str(src), "--name", "s", "--snapshots", "--features", "x1,x3"]) == 0
    out = capsys.readouterr().out
    assert "sample column: none (snapshots)" in out and "features x1, x3" in out
    assert "note: skipped non-numeric column 'sample'" not in out
