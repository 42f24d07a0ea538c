"""Metrics tables for people: the latest results, summarised over seeds."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

# Columns shown first in a table, when present; baselines sit beside the model's numbers.
HEADLINE_METRICS = (
    "w1",
    "w2",
    "mmd",
    "energy",
    "prev_w1",
    "mccann_w1",
    "mse_z",
    "mse",
    "constant_mse_z",
    "mean_mse_z",
)
KEYS = ["dataset", "method", "heldout_time"]


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread over seeds of the headline metrics, one row per (dataset, method, time).

    ``results`` has one row per run with the key columns and one column per metric (the
    shape of ``store.latest_results``). Cells read ``mean ± std (n seeds)``.
    """
    if results.empty:
        return pd.DataFrame(columns=[*KEYS, "seeds"])
    metrics = [m for m in HEADLINE_METRICS if m in results.columns and results[m].notna().any()]
    frame = results.copy()
    frame["heldout_time"] = frame["heldout_time"].map(_heldout_label)
    rows = []
    for key, group in frame.groupby(KEYS, sort=True):
        row: dict[str, Any] = dict(zip(KEYS, key, strict=True))
        row["seeds"] = len(group)
        for m in metrics:
            values = group[m].dropna()
            row[m] = _mean_std(values.tolist()) if len(values) else ""
        rows.append(row)
    return pd.DataFrame(rows)


def _heldout_label(t: float) -> str:
    return "split" if t is None or (isinstance(t, float) and math.isnan(t)) else f"{t:g}"


def _mean_std(values: Sequence[float]) -> str:
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.4g}"
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.4g} ± {std:.2g}"


def text_table(frame: pd.DataFrame) -> str:
    """A plain-text table (for the terminal)."""
    if frame.empty:
        return "(no results)"
    return frame.to_string(index=False)


def markdown_table(rows: Sequence[Mapping[str, Any]] | pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table (for Prefect artifacts)."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if frame.empty:
        return "(no results)"
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = [
        "| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body])


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
