"""Shared test fixtures."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Prefect must never touch the user's ~/.prefect from tests: a private home, set before
# anything imports prefect.
_PREFECT_HOME = tempfile.mkdtemp(prefix="splineflow-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_LOCAL_STORAGE_PATH"] = os.path.join(_PREFECT_HOME, "results")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The project's small real data sets (../shared/data); skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh storage root for one test, also exported as SPLINEFLOW_STORAGE."""
    root = tmp_path / "storage"
    root.mkdir()
    monkeypatch.setenv("SPLINEFLOW_STORAGE", str(root))
    return root


@pytest.fixture(scope="session")
def prefect_harness():
    """One ephemeral Prefect API server for the whole test session, with its own home and
    result storage (started once: it takes about 10 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def _tree_digest(root: Path) -> dict[str, str]:
    """Every file (sha256 of its bytes) and link (its target) under ``root``; lock files
    carry no data and are left out."""
    import hashlib

    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = str(full.relative_to(root))
            if full.is_symlink():
                out[rel] = "link:" + os.readlink(full)
            elif full.is_file() and not name.endswith(".lock"):
                out[rel] = hashlib.sha256(full.read_bytes()).hexdigest()
    return out


@pytest.fixture
def tree_digest():
    """``tree_digest(root) -> dict``: byte-level fingerprint of a storage folder."""
    return _tree_digest
