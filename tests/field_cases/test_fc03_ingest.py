"""FC-03 (ingest part): NA cells of tracked data are stored as NaN, not refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from splineflow_pyro import store

TRACKED_NA = """sample,t,x1,x2,x3
s0,0,0,1,NA
s0,1,1,NA,3
s0,2,8,5,5
s0,3,27,10,NA
s1,0,1,2,NA
s1,1,2,3,NA
s1,2,3,4,NA
s1,3,4,5,NA
"""


def test_fc03_na_stored_as_nan(storage: Path, tmp_path: Path) -> None:
    src = tmp_path / "tracked_na.csv"
    src.write_text(TRACKED_NA)
    report = store.ingest(src, "na", sample_col="sample", time_col="t")
    assert report.kind == "trajectories" and report.rows_total == 8
    ds = store.open_dataset("na").load()
    labels = ds["sample_label"].values.tolist()
    assert labels == ["s0", "s1"]
    x = ds["x"].values
    s0 = ds["sample"].values == 0
    s1 = ds["sample"].values == 1
    np.testing.assert_array_equal(ds["obs_time"].values[s0], [0, 1, 2, 3])
    np.testing.assert_array_equal(x[s0, 0], [0, 1, 8, 27])
    np.testing.assert_array_equal(x[s0, 1], [1, np.nan, 5, 10])
    np.testing.assert_array_equal(x[s0, 2], [np.nan, 3, 5, np.nan])
    assert np.isnan(x[s1, 2]).all() and s1.sum() == 4


def test_fc03_store_to_training_paths_and_loss_are_finite(storage: Path, tmp_path: Path) -> None:
    """From the store to paths and 20 training steps: no NaN anywhere; s1 (x3 never
    observed) adds nothing to the loss."""
    import math

    import torch

    from splineflow_pyro.config import MethodConfig, TrainConfig
    from splineflow_pyro.data import tracked_from_dataset
    from splineflow_pyro.paths import BSplinePath
    from splineflow_pyro.training import fit

    src = tmp_path / "tracked_na.csv"
    src.write_text(TRACKED_NA)
    store.ingest(src, "na", sample_col="sample", time_col="t")
    data = tracked_from_dataset(store.open_dataset("na"))
    drawn = BSplinePath(3).sample(
        data.times, data.values, data.mask, generator=torch.Generator().manual_seed(0)
    )
    assert bool(torch.isfinite(drawn.x_t).all() & torch.isfinite(drawn.u_t).all())
    t0 = float(drawn.t[0])
    x3_seen = 1.0 if 1.0 <= t0 <= 2.0 else 0.0  # x3 is observed on [1, 2] only
    assert drawn.weight[0].tolist() == [1.0, 1.0, x3_seen]  # s0 counts
    assert drawn.weight[1].tolist() == [0.0, 0.0, 0.0]  # s1 adds nothing
    cfg = TrainConfig(steps=20, batch_size=2, width=8, depth=1, device="cpu")
    model = fit(data, MethodConfig("splineflow", degree=3), cfg, seed=0)
    assert all(math.isfinite(v) for v in model.losses)
