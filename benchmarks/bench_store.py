"""Dataset store speed: ingest 1,000,000 rows x 50 float32 features from an .npz source.

Prints one JSON line and writes benchmarks/results/bench_store.json with:
- ``ingest_s``: full ``ingest`` (read npz, validate, sort, hash, write zarr, fsync, swap);
- ``numpy_save_s``: ``numpy.save`` of the same (rows, 50) float32 array, same process/disk;
- ``throughput_ratio``: ``numpy_save_s / ingest_s`` (1.0 = as fast as numpy.save);
- ``snapshot_ms``: median latency of ``snapshot()`` for one time (1/10 of the rows).

Usage: python benchmarks/bench_store.py [--rows N] [--features D] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from splineflow_pyro import store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--dir", default=None, help="scratch folder (default: a temp folder)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.rows, args.features)).astype(np.float32)
    t = np.sort(rng.integers(0, 10, size=args.rows)).astype(np.float64)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        np.savez(root / "source.npz", x=x, t=t)
        np.savez(root / "warm.npz", x=x[:100], t=np.arange(100.0))
        store.ingest(root / "warm.npz", "warm", storage=root / "warm")  # imports, not timed
        start = time.perf_counter()
        np.save(root / "plain.npy", x)
        fd = os.open(root / "plain.npy", os.O_RDONLY)
        os.fsync(fd)  # the store fsyncs too
        os.close(fd)
        numpy_save_s = time.perf_counter() - start
        start = time.perf_counter()
        report = store.ingest(root / "source.npz", "bench", storage=root / "storage")
        ingest_s = time.perf_counter() - start
        assert report.rows_total == args.rows
        lat = []
        for _ in range(5):
            start = time.perf_counter()
            snap = store.snapshot("bench", 5.0, storage=root / "storage")
            lat.append(time.perf_counter() - start)
        assert snap.shape[1] == args.features
        store_bytes = sum(f.stat().st_size for f in (root / "storage").rglob("*") if f.is_file())
    result = {
        "benchmark": "bench_store",
        "rows": args.rows,
        "features": args.features,
        "array_mb": round(x.nbytes / 2**20, 1),
        "store_mb": round(store_bytes / 2**20, 1),
        "numpy_save_s": round(numpy_save_s, 3),
        "ingest_s": round(ingest_s, 3),
        "throughput_ratio": round(numpy_save_s / ingest_s, 3),
        "ingest_mb_per_s": round(x.nbytes / 2**20 / ingest_s, 1),
        "snapshot_rows": int(snap.shape[0]),
        "snapshot_ms": round(1000 * statistics.median(lat), 1),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
        "python": platform.python_version(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    line = json.dumps(result)
    print(line)
    out = Path(__file__).resolve().parent / "results" / "bench_store.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(line + "\n")


if __name__ == "__main__":
    main()
