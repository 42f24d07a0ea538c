"""Dataset stores: ingest, append, read back, sources, bad input."""

from __future__ import annotations

import importlib.util
import json
import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from splineflow_pyro import atomic, store


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


SNAP = "t,x1,x2\n0,0.1,0.2\n0,0.3,0.4\n1,1.1,1.2\n1,1.3,1.4\n"
TRACKED = "sample,t,x1,x2\na,0,0,1\na,1,1,2\nb,0,5,5\nb,1,6,6\n"


@pytest.fixture
def mouse(shared_data: Path) -> Path:
    path = shared_data / "mouse_hematopoiesis.csv"
    if not path.exists():
        pytest.skip(f"{path} not found")
    return path


def test_mouse_ingest_and_snapshot(storage: Path, mouse: Path) -> None:
    report = store.ingest(mouse, "mouse_hsc")
    assert (report.status, report.time_col, report.kind) == ("created", "samples", "snapshots")
    ds = store.open_dataset("mouse_hsc")
    assert ds["time"].values.tolist() == [0.0, 1.0, 2.0]
    assert ds["count"].values.tolist() == [1429, 3781, 5788]
    assert ds["x"].dtype == np.float32 and ds["obs_time"].dtype == np.float64
    snap = store.snapshot("mouse_hsc", 1.0)
    csv = pd.read_csv(mouse)
    expected = csv.loc[csv["samples"] == 1, ["x1", "x2"]].to_numpy(np.float32)
    assert snap.shape == (3781, 2)
    np.testing.assert_array_equal(snap.values, expected)
    assert store.dataset_version("mouse_hsc") == report.version == ds.attrs["content_sha256"]
    # Plain xarray reads the same store.
    plain = xr.open_zarr(storage / "datasets" / "mouse_hsc.zarr")
    assert plain.attrs["kind"] == "snapshots" and plain.sizes["obs"] == 10998


def test_append_equals_all_at_once(tmp_path: Path, mouse: Path) -> None:
    csv = pd.read_csv(mouse)
    early, late = tmp_path / "t01.csv", tmp_path / "t2.csv"
    csv[csv["samples"] < 2].to_csv(early, index=False)
    csv[csv["samples"] == 2].to_csv(late, index=False)
    a, b = tmp_path / "a", tmp_path / "b"
    store.ingest(early, "m", storage=a)
    report = store.ingest(late, "m", storage=a)
    assert (report.status, report.rows_added) == ("appended", 5788)
    store.ingest(mouse, "m", storage=b)
    da, db = store.open_dataset("m", a).load(), store.open_dataset("m", b).load()
    xr.testing.assert_identical(da.drop_attrs(), db.drop_attrs())
    assert store.dataset_version("m", a) == store.dataset_version("m", b)
    assert store.ingest(mouse, "m", storage=a).status == "unchanged"


def test_same_content_again_is_unchanged(storage: Path, tmp_path: Path, tree_digest) -> None:
    src = write(tmp_path / "s.csv", SNAP)
    first = store.ingest(src, "s")
    before = tree_digest(storage)
    again = store.ingest(src, "s")
    assert again.status == "unchanged" and again.rows_added == 0
    assert again.version == first.version and tree_digest(storage) == before


def test_tracked_append_and_replace(storage: Path, tmp_path: Path, tree_digest) -> None:
    store.ingest(write(tmp_path / "a.csv", TRACKED), "tr")
    more = write(tmp_path / "b.csv", "sample,t,x1,x2\na,2,2,3\nc,0,9,9\nc,2,9,8\n")
    report = store.ingest(more, "tr")
    assert (report.status, report.rows_added) == ("appended", 3)
    ds = store.open_dataset("tr")
    assert ds["sample_label"].values.tolist() == ["a", "b", "c"]
    assert ds["time"].values.tolist() == [0, 1, 2] and ds["count"].values.tolist() == [3, 2, 2]
    clash = write(tmp_path / "c.csv", "sample,t,x1,x2\nb,1,7,7\n")
    before = tree_digest(storage)
    with pytest.raises(ValueError, match=r"c\.csv.*sample 'b' at time 1 \(line 2\).*--replace"):
        store.ingest(clash, "tr")
    assert tree_digest(storage) == before
    report = store.ingest(clash, "tr", replace=True)
    assert (report.status, report.rows_replaced) == ("replaced", 1)
    ds = store.open_dataset("tr")
    row = (ds["sample"].values == 1) & (ds["obs_time"].values == 1)
    assert ds["x"].values[row].tolist() == [[7.0, 7.0]] and ds.sizes["obs"] == 7


def test_snapshot_conflict_and_replace(storage: Path, tmp_path: Path) -> None:
    store.ingest(write(tmp_path / "a.csv", SNAP), "s")
    other = write(tmp_path / "b.csv", "t,x1,x2\n1,5,5\n2,6,6\n")
    with pytest.raises(ValueError, match=r"b\.csv.*time 1 \(2 rows stored, 1 new\)"):
        store.ingest(other, "s")
    report = store.ingest(other, "s", replace=True)
    assert (report.status, report.rows_added, report.rows_replaced) == ("replaced", 2, 2)
    assert store.open_dataset("s")["count"].values.tolist() == [2, 1, 1]


def test_memory_storage_round_trip(tmp_path: Path) -> None:
    root = f"memory://sf-{uuid.uuid4().hex}"
    store.ingest(write(tmp_path / "a.csv", SNAP), "s", storage=root)
    report = store.ingest(write(tmp_path / "b.csv", "t,x1,x2\n2,2.1,2.2\n"), "s", storage=root)
    assert report.status == "appended"
    assert store.list_dataset_names(root) == ["s"]
    np.testing.assert_array_equal(
        store.snapshot("s", 2.0, storage=root).values, np.array([[2.1, 2.2]], np.float32)
    )
    plain = xr.open_zarr(f"{root}/datasets/s.zarr")
    assert plain["count"].values.tolist() == [2, 2, 1]
    assert store.dataset_version("s", root) == report.version


def test_resolve_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPLINEFLOW_STORAGE", "/env/root")
    assert store.resolve_storage("/arg") == "/arg"
    assert store.resolve_storage() == "/env/root"
    monkeypatch.delenv("SPLINEFLOW_STORAGE")
    assert store.resolve_storage() == "./storage"


# --------------------------------------------------------------------------- sources


def _check_small(name: str, kind: str = "snapshots") -> xr.Dataset:
    ds = store.open_dataset(name).load()
    assert ds.attrs["kind"] == kind
    return ds


def test_npz_parquet_dataframe_sources(storage: Path, tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    t = np.array([0, 0, 1, 1, 2, 2.0])
    np.savez(tmp_path / "a.npz", x=x, t=t)
    ds = _check_small(store.ingest(tmp_path / "a.npz", "npz").name)
    assert ds["feature"].values.tolist() == ["x1", "x2"]
    np.testing.assert_array_equal(ds["x"].values, x)
    np.savez(tmp_path / "b.npz", x=x, t=t, sample=np.array([0, 1, 0, 1, 0, 1]))
    assert store.ingest(tmp_path / "b.npz", "npzt").kind == "trajectories"
    frame = pd.DataFrame({"time": t, "x1": x[:, 0], "x2": x[:, 1]})
    frame.to_parquet(tmp_path / "a.parquet")
    assert store.ingest(tmp_path / "a.parquet", "pq").version == store.dataset_version("npz")
    assert store.ingest(frame, "df").version == store.dataset_version("npz")


def test_netcdf_and_zarr_sources(storage: Path, tmp_path: Path) -> None:
    grid = xr.Dataset(
        {"x1": (("time", "sample"), np.arange(6.0).reshape(3, 2))},
        coords={"time": [0.0, 1.0, 2.0], "sample": [10, 11]},
    )
    grid.to_netcdf(tmp_path / "g.nc", engine="h5netcdf")
    report = store.ingest(tmp_path / "g.nc", "nc")
    assert (report.kind, report.sample_col, report.rows_total) == ("trajectories", "sample", 6)
    grid.to_zarr(tmp_path / "g.zarr", zarr_format=3, consolidated=False)
    assert store.ingest(tmp_path / "g.zarr", "zr").version == report.version
    # One of our own stores is a source too (same content, same version).
    own = storage / "datasets" / "nc.zarr"
    assert store.ingest(own, "copy").version == report.version


def test_h5ad_source(storage: Path, tmp_path: Path) -> None:
    anndata = pytest.importorskip("anndata", reason="anndata is optional")
    adata = anndata.AnnData(
        X=np.arange(8, dtype=np.float32).reshape(4, 2),
        obs=pd.DataFrame({"day": [0.0, 0.0, 1.0, 1.0]}, index=[f"c{i}" for i in range(4)]),
        var=pd.DataFrame(index=["g1", "g2"]),
    )
    adata.obsm["X_pca"] = np.ones((4, 3))
    adata.write_h5ad(tmp_path / "a.h5ad")
    report = store.ingest(tmp_path / "a.h5ad", "ad")
    assert (report.time_col, report.features) == ("day", ("g1", "g2"))
    report = store.ingest(tmp_path / "a.h5ad", "adp", features=["obsm:X_pca"])
    assert report.features == ("X_pca_0", "X_pca_1", "X_pca_2")


def test_synthetic_source(storage: Path) -> None:
    if importlib.util.find_spec("splineflow_pyro.systems") is None:
        pytest.skip("splineflow_pyro.systems not available yet")
    report = store.ingest("synthetic:lotka_volterra?n=8&p=0.5&seed=0&t_end=1&dt=0.1", "lv")
    assert report.kind == "trajectories" and report.sample_col == "trajectory"
    ds = store.open_dataset("lv").load()
    assert ds.sizes["sample_id"] == 8 and ds.sizes["feature"] == 2
    again = store.ingest("synthetic:lotka_volterra?seed=0&p=0.5&n=8&t_end=1&dt=0.1", "lv")
    assert again.status == "unchanged"
    with pytest.raises(ValueError, match="unknown parameter 'q'"):
        store.ingest("synthetic:lotka_volterra?q=1", "lv2")


# --------------------------------------------------------------------------- bad input


BAD_FILES = [
    ("empty.csv", "", r"empty\.csv is empty"),
    ("header.csv", "t,x1\n", r"header\.csv has a header but no data rows"),
    ("notime.csv", "when,x1\n0,1\n1,2\n", r"no time column found in .*notime\.csv.*when, x1"),
    (
        "nantime.csv",
        "t,x1\n0,1\nnan,2\n1,3\n",
        r"time column 't' of .*nantime\.csv has nan at line 3",
    ),
    ("inftime.csv", "t,x1\n0,1\ninf,2\n", r"time column 't' of .*inftime\.csv has inf at line 3"),
    ("text.csv", "t,x1\n0,1\n1,abc\n", r"non-numeric value 'abc' in feature column 'x1' at line 3"),
    (
        "gap.csv",
        "t,x1,x2\n0,1,2\n1,,3\n",
        r"missing value in feature column 'x1' at line 3 of .*gap",
    ),
    ("nofeat.csv", "t,label\n0,a\n1,b\n", r"no feature columns in .*nofeat\.csv"),
    ("onetime.csv", "t,x1\n0,1\n0,2\n", r"onetime\.csv has only the time 0; .*at least 2"),
    ("cut.csv", "t,x1,x2\n0,1,2\n1,3", r"cut\.csv looks truncated"),
    ("dupcol.csv", "t,x1,x1\n0,1,2\n1,3,4\n", r"'x1' more than once"),
    ("badtime.csv", "t,x1\n0,1\nsoon,2\n", r"value 'soon' at line 3.*neither a number nor an ISO"),
]


@pytest.mark.parametrize(("fname", "text", "message"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_file_refused(storage: Path, tmp_path: Path, tree_digest, fname, text, message) -> None:
    store.ingest(write(tmp_path / "ok.csv", "t,x1,x2\n5,1,2\n6,3,4\n"), "other")
    before = tree_digest(storage)
    with pytest.raises(ValueError, match=message):
        store.ingest(write(tmp_path / fname, text), "bad")
    assert tree_digest(storage) == before
    assert store.list_dataset_names() == ["other"]


def test_bad_binary_files(storage: Path, tmp_path: Path, tree_digest) -> None:
    np.savez(tmp_path / "ok.npz", x=np.ones((4, 2)), t=np.arange(4.0))
    data = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    pd.DataFrame({"t": [0.0, 1.0], "x": [1.0, 2.0]}).to_parquet(tmp_path / "ok.parquet")
    data = (tmp_path / "ok.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    before = tree_digest(storage)
    with pytest.raises(ValueError, match=r"could not read npz file .*cut\.npz"):
        store.ingest(tmp_path / "cut.npz", "n")
    with pytest.raises(ValueError, match=r"could not read Parquet file .*cut\.parquet"):
        store.ingest(tmp_path / "cut.parquet", "p")
    with pytest.raises(FileNotFoundError, match=r"missing\.csv not found"):
        store.ingest(tmp_path / "missing.csv", "m")
    assert tree_digest(storage) == before


@pytest.mark.parametrize("name", ["a/b", "a\\b", "..", "x..y", ".hidden", ""])
def test_bad_dataset_name(storage: Path, tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="dataset name"):
        store.ingest(write(tmp_path / "s.csv", SNAP), name)
    assert not any(storage.iterdir())


def test_kind_mismatch_refused(storage: Path, tmp_path: Path, tree_digest) -> None:
    store.ingest(write(tmp_path / "a.csv", SNAP), "s")
    before = tree_digest(storage)
    with pytest.raises(ValueError, match="holds snapshots but .*b.csv gives trajectories"):
        store.ingest(write(tmp_path / "b.csv", "sample,t,x1,x2\na,3,1,1\n"), "s")
    assert tree_digest(storage) == before


def _current_meta(storage: Path, name: str) -> Path:
    return Path(os.path.realpath(storage / "datasets" / f"{name}.zarr")) / "zarr.json"


def test_corrupt_store_detected(storage: Path, tmp_path: Path, tree_digest) -> None:
    store.ingest(write(tmp_path / "a.csv", SNAP), "s")
    _current_meta(storage, "s").write_text("{not json")
    before = tree_digest(storage)
    with pytest.raises(ValueError, match=r"store .*datasets/s\.zarr is corrupt"):
        store.open_dataset("s")
    with pytest.raises(ValueError, match=r"datasets/s\.zarr is corrupt"):
        store.ingest(write(tmp_path / "b.csv", "t,x1,x2\n2,1,1\n"), "s")
    assert tree_digest(storage) == before


def test_unknown_schema_version_detected(storage: Path, tmp_path: Path) -> None:
    store.ingest(write(tmp_path / "a.csv", SNAP), "s")
    meta = _current_meta(storage, "s")
    doc = json.loads(meta.read_text())
    doc["attributes"]["schema_version"] = 99
    doc["consolidated_metadata"] = doc.get("consolidated_metadata")
    meta.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"datasets/s\.zarr has .*schema version 99"):
        store.open_dataset("s")


def test_missing_dataset_names_available(storage: Path, tmp_path: Path) -> None:
    store.ingest(write(tmp_path / "a.csv", SNAP), "s")
    with pytest.raises(FileNotFoundError, match=r"no data set 'nope' .*found: s"):
        store.open_dataset("nope")
    with pytest.raises(ValueError, match=r"time 7 is not in data set 's'; its times are 0, 1"):
        store.snapshot("s", 7)


def test_second_writer_times_out(storage: Path, tmp_path: Path, monkeypatch) -> None:
    src = write(tmp_path / "a.csv", SNAP)
    monkeypatch.setenv("SPLINEFLOW_LOCK_TIMEOUT", "0.2")
    with (
        atomic.writer_lock(store.dataset_path("s")),
        pytest.raises(RuntimeError, match=r"is writing the store .*s\.zarr; waited 0.2 s"),
    ):
        store.ingest(src, "s")
    assert store.ingest(src, "s").status == "created"


def test_leftovers_of_killed_writer_are_removed(storage: Path, tmp_path: Path) -> None:
    store.ingest(write(tmp_path / "a.csv", SNAP), "s")
    versions = storage / "datasets" / ".s.zarr.versions"
    junk = versions / "v99999999999999999999-deadbeef"
    (junk / "x").mkdir(parents=True)
    (storage / "datasets" / ".s.zarr.link-0000").symlink_to("nowhere")
    store.open_dataset("s")  # readers never delete anything (FC: reads must not clean up)
    assert junk.exists() and (storage / "datasets" / ".s.zarr.link-0000").is_symlink()
    store.ingest(write(tmp_path / "b.csv", "t,x1,x2\n2,1,1\n"), "s")  # the writer does
    assert not junk.exists() and not (storage / "datasets" / ".s.zarr.link-0000").is_symlink()
    store.ingest(write(tmp_path / "c.csv", "t,x1,x2\n3,1,1\n"), "s")
    assert len(list(versions.iterdir())) == 2  # current + previous (for lazy readers)
