"""FC-13: ISO datetimes with sub-day steps, appended file by file."""

from __future__ import annotations

from pathlib import Path

import pytest
import xarray as xr

from flows.cli import main
from splineflow_pyro import store

HEADER = "time,x1,x2\n"
DAY1 = HEADER + (
    "2000-01-01T00:35:00,0.1,0.2\n2000-01-01T00:35:00,0.2,0.1\n"
    "2000-01-01T06:35:00,0.4,0.5\n2000-01-01T06:35:00,0.5,0.4\n"
)
DAY2 = HEADER + (
    "2000-01-01T12:35:00,0.7,0.8\n2000-01-01T12:35:00,0.8,0.7\n"
    "2000-01-01T18:35:00,1.0,1.1\n2000-01-01T18:35:00,1.1,1.0\n"
)


def test_fc13_iso_append_uses_stored_origin(storage: Path, tmp_path: Path, tree_digest) -> None:
    day1, day2 = tmp_path / "day1.csv", tmp_path / "day2.csv"
    day1.write_text(DAY1)
    day2.write_text(DAY2)
    assert main(["ingest", str(day1), "--name", "iso"]) == 0
    assert main(["ingest", str(day2), "--name", "iso"]) == 0
    ds = store.open_dataset("iso").load()
    assert ds["time"].values.tolist() == [0.0, 6.0, 12.0, 18.0]
    assert ds["count"].values.tolist() == [2, 2, 2, 2]
    assert ds.attrs["time_unit"] == "hours"
    assert ds.attrs["time_origin"].startswith("2000-01-01T00:35:00")
    both = tmp_path / "both.csv"
    both.write_text(DAY1 + DAY2[len(HEADER) :])
    other = tmp_path / "other"
    store.ingest(both, "iso", storage=other)
    once = store.open_dataset("iso", other).load()
    xr.testing.assert_identical(ds.drop_attrs(), once.drop_attrs())
    assert store.dataset_version("iso") == store.dataset_version("iso", other)
    # A numeric file appended to an ISO store is refused, the store unchanged.
    numeric = tmp_path / "numeric.csv"
    numeric.write_text("time,x1,x2\n24,1,1\n")
    before = tree_digest(storage)
    with pytest.raises(ValueError, match=r"numeric\.csv has numeric times .*holds datetimes"):
        store.ingest(numeric, "iso")
    assert tree_digest(storage) == before


def test_fc13_iso_into_numeric_store_refused(storage: Path, tmp_path: Path) -> None:
    num = tmp_path / "num.csv"
    num.write_text("time,x1,x2\n0,1,1\n6,2,2\n")
    store.ingest(num, "n")
    day2 = tmp_path / "day2.csv"
    day2.write_text(DAY2)
    with pytest.raises(ValueError, match=r"day2\.csv has ISO datetimes in column 'time'"):
        store.ingest(day2, "n")
