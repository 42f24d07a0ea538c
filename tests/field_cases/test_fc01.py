"""FC-01 (ingest part): duplicate or near-duplicate time inside one tracked sample."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.cli import main
from splineflow_pyro import store

DUP = """sample,t,x1,x2
a,0.0,0.0,1.0
a,0.5,1.0,1.5
a,{t3},1.2,1.4
a,1.0,2.0,2.0
b,0.0,0.5,0.5
b,1.0,1.5,1.5
"""


@pytest.mark.parametrize("t3", ["0.5", "0.5000000000000001"], ids=["exact", "near"])
def test_fc01_duplicate_time_refused(storage: Path, tmp_path: Path, capsys, t3: str) -> None:
    src = tmp_path / "tracked_dup.csv"
    src.write_text(DUP.format(t3=t3))
    argv = ["ingest", str(src), "--name", "dup", "--sample-col", "sample", "--time-col", "t"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "tracked_dup.csv" in err and "sample 'a'" in err and "0.5" in err
    assert "line 3 and line 4" in err
    assert not (storage / "datasets" / "dup.zarr").exists()
    assert store.list_dataset_names() == []


def test_fc01_same_file_as_snapshots_accepted(storage: Path, tmp_path: Path) -> None:
    src = tmp_path / "snap_dup.csv"
    src.write_text("\n".join(ln.split(",", 1)[1] for ln in DUP.format(t3="0.5").splitlines()))
    report = store.ingest(src, "dup", time_col="t")
    assert report.kind == "snapshots"
    ds = store.open_dataset("dup")
    assert ds["time"].values.tolist() == [0.0, 0.5, 1.0]
    assert ds["count"].values.tolist() == [2, 2, 2]


def test_fc01_distinct_float64_times_never_merge(storage: Path, tmp_path: Path) -> None:
    src = tmp_path / "snap_near.csv"
    src.write_text("t,x1\n0.0,1\n0.5,2\n0.5000000000000001,3\n1.0,4\n")
    store.ingest(src, "near")
    ds = store.open_dataset("near")
    assert ds["time"].values.tolist() == [0.0, 0.5, 0.5000000000000001, 1.0]
    assert ds["obs_time"].dtype.name == "float64"
