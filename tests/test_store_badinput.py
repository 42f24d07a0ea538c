"""Bad input found by trying to break the CLI: every case is a one-line error naming the
file / column / value, a non-zero exit, and (where a store exists) the store byte-identical."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from flows.cli import main
from splineflow_pyro import store
from splineflow_pyro.store import RunRecord

SNAP = "t,x1,x2\n0,0.1,0.2\n0,0.3,0.4\n1,1.1,1.2\n1,1.3,1.4\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def cli_error(capsys, *argv: str) -> str:
    """Run the CLI, expect exit 1 and exactly one line on stderr; return it."""
    assert main(list(argv)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _version(storage: Path, name: str) -> Path:
    return Path(os.path.realpath(storage / "datasets" / f"{name}.zarr"))


@pytest.fixture
def two_versions(storage: Path, tmp_path: Path) -> Path:
    store.ingest(write(tmp_path / "a.csv", SNAP), "s")
    store.ingest(write(tmp_path / "b.csv", "t,x1,x2\n2,5,6\n"), "s")
    return _version(storage, "s")


# --------------------------------------------------------------------------- 1. corruption


def _delete_chunk(v: Path, var: str) -> None:
    chunks = [p for p in (v / var / "c").rglob("*") if p.is_file()]
    assert chunks
    for p in chunks:
        p.unlink()


def _flip_byte(v: Path, var: str) -> None:
    chunk = next(p for p in (v / var / "c").rglob("*") if p.is_file())
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage",
    [
        lambda v: _delete_chunk(v, "x"),
        lambda v: _delete_chunk(v, "obs_time"),
        lambda v: _delete_chunk(v, "sample"),
        lambda v: _delete_chunk(v, "time"),
        lambda v: _flip_byte(v, "x"),
        lambda v: _flip_byte(v, "obs_time"),
    ],
    ids=["del-x", "del-obs_time", "del-sample", "del-time", "flip-x", "flip-obs_time"],
)
def test_corrupt_chunks_detected(storage, tmp_path, tree_digest, two_versions, capsys, damage):
    damage(two_versions)
    before = tree_digest(storage)
    pattern = r"store .*datasets/s\.zarr is corrupt: .*restore it from .*\.s\.zarr\.versions/v"
    with pytest.raises(ValueError, match=pattern):
        store.open_dataset("s")
    with pytest.raises(ValueError, match=pattern):  # an append never writes the damage on
        store.ingest(write(tmp_path / "c.csv", "t,x1,x2\n3,1,1\n"), "s")
    err = cli_error(capsys, "show", "s")
    assert "s.zarr is corrupt" in err
    assert tree_digest(storage) == before


def test_hash_mismatch_message(storage, tmp_path, two_versions) -> None:
    _delete_chunk(two_versions, "x")
    with pytest.raises(ValueError, match=r"content does not match its content_sha256"):
        store.open_dataset("s")


def test_results_store_deleted_metric_chunk(storage, tree_digest) -> None:
    rec = RunRecord(run_id="0123456789abcdef", dataset="d", method="m", heldout_time=1.0,
                    seed=0, config_hash="c", started="s", finished="f",
                    metrics={"w1": 0.5, "w2": 0.7})  # fmt: skip
    store.append_results([rec])
    v = Path(os.path.realpath(storage / "results.zarr"))
    _delete_chunk(v, "metric")
    before = tree_digest(storage)
    with pytest.raises(ValueError, match=r"results\.zarr is corrupt: content does not match"):
        store.open_results()
    with pytest.raises(ValueError, match=r"results\.zarr is corrupt"):
        store.append_results([RunRecord(**{**rec.__dict__, "run_id": "fedcba9876543210"})])
    assert tree_digest(storage) == before


# --------------------------------------------------------------------------- 2. features


@pytest.mark.parametrize(
    ("features", "message"),
    [
        (["x1", "x1"], r"feature\(s\) 'x1' given more than once"),
        (["t", "x1"], r"feature 't' is the time column of .*s\.csv"),
    ],
)
def test_bad_feature_lists(storage, tmp_path, tree_digest, capsys, features, message) -> None:
    src = write(tmp_path / "s.csv", SNAP)
    store.ingest(src, "s")
    before = tree_digest(storage)
    with pytest.raises(ValueError, match=message):
        store.ingest(src, "s", features=features)
    cli_error(capsys, "ingest", str(src), "--name", "s", "--features", *features)
    assert tree_digest(storage) == before


def test_sample_column_as_feature(storage, tmp_path, capsys) -> None:
    src = write(tmp_path / "tr.csv", "sample,t,x1\na,0,1\na,1,2\n")
    err = cli_error(capsys, "ingest", str(src), "--name", "tr", "--features", "sample", "x1")
    assert "feature 'sample' is the sample column of" in err and "tr.csv" in err
    assert not any(storage.rglob("*"))


# --------------------------------------------------------------------------- 3. OSErrors


def test_long_name(storage, tmp_path, capsys) -> None:
    err = cli_error(capsys, "ingest", str(write(tmp_path / "s.csv", SNAP)), "--name", "a" * 250)
    assert "is 250 characters long" in err
    assert not any(storage.rglob("*"))


def test_storage_is_a_file(tmp_path, capsys) -> None:
    f = write(tmp_path / "afile", "keep")
    src = write(tmp_path / "s.csv", SNAP)
    err = cli_error(capsys, "ingest", str(src), "--name", "s", "--storage", str(f))
    assert "afile" in err and "is not a directory" in err
    assert f.read_text() == "keep"


def test_lock_path_is_a_directory(storage, tmp_path, tree_digest, capsys) -> None:
    (storage / "datasets" / ".s.zarr.lock").mkdir(parents=True)
    before = tree_digest(storage)
    err = cli_error(capsys, "ingest", str(write(tmp_path / "s.csv", SNAP)), "--name", "s")
    assert ".s.zarr.lock is not a regular file" in err
    assert tree_digest(storage) == before


# --------------------------------------------------------------------------- 4. npz


def test_garbage_npz(storage, tmp_path, capsys) -> None:
    garb = tmp_path / "garb.npz"
    garb.write_bytes(np.random.default_rng(0).bytes(500))
    err = cli_error(capsys, "ingest", str(garb), "--name", "g")
    assert "could not read npz file" in err and "garb.npz as an npz archive of arrays x, t" in err
    assert "pickle=" not in err
    assert not any(storage.rglob("*"))


# --------------------------------------------------------------------------- 5. messages


def test_mixed_numbers_and_dates(storage, tmp_path, capsys) -> None:
    src = write(tmp_path / "mix.csv", "t,x1\n0,1\n1,2\n2020-01-01,3\n")
    err = cli_error(capsys, "ingest", str(src), "--name", "m")
    assert "time column 't' of" in err and "mixes numbers and dates" in err
    assert "'2020-01-01' at line 4" in err


@pytest.mark.parametrize("n", ["1e12", "2.5", "-5", "0"])
def test_synthetic_n(storage, capsys, n) -> None:
    err = cli_error(capsys, "ingest", f"synthetic:lotka_volterra?n={n}", "--name", "sy")
    assert f"n={n}" in err.replace("1e+12", "1e12")
    assert "n must be a whole number between 1 and" in err and "n_trajectories" not in err


def test_duplicate_rows_plain_numbers(storage, tmp_path, capsys) -> None:
    src = write(tmp_path / "dup.csv", "sample,t,x1\na,0,1\na,0,2\n")
    err = cli_error(capsys, "ingest", str(src), "--name", "dup")
    assert "sample 'a' has time 0.0 at line 2 and line 3" in err and "np.float64" not in err


def test_not_a_regular_file(storage, capsys) -> None:
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    err = cli_error(capsys, "ingest", "/dev/zero", "--name", "z")
    assert "/dev/zero is not a regular file" in err


def test_empty_source(storage, capsys) -> None:
    assert "SOURCE is empty" in cli_error(capsys, "ingest", "", "--name", "z")
    assert not any(storage.rglob("*"))


# --------------------------------------------------------------------------- 6. names


@pytest.mark.parametrize("name", ["a b", "a:b", "a*b", "a%2Fb", "é", "base.zarr", "_x", "a" * 101])
def test_names_follow_the_stated_rule(storage, tmp_path, capsys, name) -> None:
    err = cli_error(capsys, "ingest", str(write(tmp_path / "s.csv", SNAP)), "--name", name)
    assert "dataset name" in err and "letters A-Z a-z, digits" in err
    assert not any(storage.rglob("*"))


@pytest.mark.parametrize(
    "name",
    ["mouse_hsc", "lotka_volterra", "damped_harmonic", "cells", "lv", "na", "dup", "iso",
     "mouse_small", "v1.2", "A-b_C", "0123456789abcdef", "a" * 100],
)  # fmt: skip
def test_good_names(name) -> None:
    assert store.check_name(name) == name


# --------------------------------------------------------------------------- 7. sources


def test_tracked_csv_without_values(storage, tmp_path, capsys) -> None:
    src = write(tmp_path / "tr.csv", "sample,t,x1,x2\na,0,,\na,1,,\nb,0,,\n")
    err = cli_error(capsys, "ingest", str(src), "--name", "tr")
    assert "no observed values in" in err and "tr.csv" in err
    assert not any(storage.rglob("*"))


def test_netcdf_dimension_coordinate_is_not_a_feature(storage, tmp_path) -> None:
    ds = xr.Dataset(
        {"x1": ("obs", [1.0, 2.0, 3.0, 4.0]), "t": ("obs", [0.0, 0.0, 1.0, 1.0])},
        coords={"obs": [10, 11, 12, 13], "batch": ("obs", [7, 7, 8, 8])},
    )
    path = tmp_path / "c.nc"
    ds.to_netcdf(path)
    report = store.ingest(path, "nc")
    assert report.features == ("x1",)


# --------------------------------------------------------------------------- 8. listing


def test_datasets_lists_healthy_and_marks_broken(storage, tmp_path, capsys) -> None:
    store.ingest(write(tmp_path / "a.csv", SNAP), "good")
    store.ingest(write(tmp_path / "b.csv", SNAP), "bad")
    (_version(storage, "bad") / "zarr.json").write_text("{not json")
    assert main(["datasets"]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert any(ln.startswith("good") and "snapshots" in ln for ln in lines)
    bad = next(ln for ln in lines if ln.startswith("bad"))
    assert "ERROR:" in bad and "bad.zarr is corrupt" in bad
    assert "1 of 2 data set(s) could not be read" in captured.err


# --------------------------------------------------------------------------- 9. lock files


def test_failed_ingest_leaves_lock_and_store_untouched(storage, tmp_path, tree_digest) -> None:
    store.ingest(write(tmp_path / "a.csv", SNAP), "s")
    lock = storage / "datasets" / ".s.zarr.lock"
    before = (tree_digest(storage), lock.read_bytes())
    with pytest.raises(ValueError, match=r"time 1 \(2 rows stored, 1 new\)"):
        store.ingest(write(tmp_path / "b.csv", "t,x1,x2\n1,9,9\n"), "s")
    assert (tree_digest(storage), lock.read_bytes()) == before


def test_failed_ingest_of_new_name_leaves_no_lock(storage, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"has only the time 0"):
        store.ingest(write(tmp_path / "one.csv", "t,x1\n0,1\n0,2\n"), "fresh")
    assert not (storage / "datasets" / ".fresh.zarr.lock").exists()
    assert store.ingest(write(tmp_path / "a.csv", SNAP), "fresh").status == "created"


# --------------------------------------------------------------------------- 10. reads


def test_reads_never_delete(storage, tmp_path, tree_digest, capsys) -> None:
    import shutil

    store.ingest(write(tmp_path / "a.csv", SNAP), "s")
    store.ingest(write(tmp_path / "b.csv", "t,x1,x2\n2,5,6\n"), "s")
    link = storage / "datasets" / "s.zarr"
    real = Path(os.path.realpath(link))
    link.unlink()
    shutil.copytree(real, link)  # the user replaces the link by a real folder
    before = tree_digest(storage)
    assert main(["show", "s"]) == 0
    assert main(["datasets"]) == 0
    store.open_dataset("s")
    capsys.readouterr()
    assert tree_digest(storage) == before
