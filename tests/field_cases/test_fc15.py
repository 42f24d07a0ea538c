"""FC-15: an append missing (or adding) a feature is refused; the store stays readable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flows.cli import main
from splineflow_pyro import store


@pytest.mark.parametrize(
    ("header", "rows", "named"),
    [("samples,x1", "2,0.5\n2,0.6\n", "missing feature(s) 'x2'"),
     ("samples,x1,x2,x3", "2,0.5,1,1\n2,0.6,1,1\n", "extra feature(s) 'x3'")],
    ids=["missing", "extra"],
)  # fmt: skip
def test_fc15_feature_mismatch_refused(
    storage: Path, tmp_path: Path, tree_digest, capsys, header: str, rows: str, named: str
) -> None:
    first = tmp_path / "mouse_small.csv"
    first.write_text("samples,x1,x2\n0,0.1,0.2\n0,0.3,0.4\n1,1.1,1.2\n1,1.3,1.4\n")
    store.ingest(first, "mouse_small")
    ds0 = store.open_dataset("mouse_small").load()
    before = tree_digest(storage)
    bad = tmp_path / "t2_only_x1.csv"
    bad.write_text(f"{header}\n{rows}")
    assert main(["ingest", str(bad), "--name", "mouse_small"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "t2_only_x1.csv" in err and named in err
    assert tree_digest(storage) == before
    ds1 = store.open_dataset("mouse_small").load()
    assert ds1.attrs["content_sha256"] == ds0.attrs["content_sha256"]
    np.testing.assert_array_equal(ds1["x"].values, ds0["x"].values)
    assert ds1.sizes["obs"] == ds1["obs_time"].size == ds1["sample"].size == 4
