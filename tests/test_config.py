"""Config parsing, coercion and canonical hashing (FC-18's config half)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from splineflow_pyro.config import (
    DEFAULT_CONFIG,
    ConfigError,
    MethodConfig,
    canonical_json,
    load_config,
    stable_hash,
)

YAML = """
datasets:
  - name: lv
    source: "synthetic:lotka_volterra?n=50&p=0.5&seed=0"
methods:
  - kind: splineflow
    degree: 3
  - linear
seeds: [0, 1]
train:
  steps: 20
  lr: 0.001
"""

YAML_REORDERED = """
# the same pipeline, written differently
train: {lr: 1e-3, steps: 20.0}
seeds: [0, 1]
methods:
  - {degree: 3, kind: splineflow}
  - kind: linear
datasets:
  - {source: "synthetic:lotka_volterra?n=50&p=0.5&seed=0", name: lv}
"""

TOML = """
seeds = [0, 1]
[[datasets]]
name = "lv"
source = "synthetic:lotka_volterra?n=50&p=0.5&seed=0"
[[methods]]
kind = "splineflow"
degree = 3
[[methods]]
kind = "linear"
[train]
steps = 20
lr = 1e-3
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reordered_reformatted_config_has_the_same_hash(tmp_path: Path) -> None:
    a = load_config(_write(tmp_path, "a.yaml", YAML))
    b = load_config(_write(tmp_path, "b.yaml", YAML_REORDERED))
    c = load_config(_write(tmp_path, "c.toml", TOML))
    assert a == b == c
    assert canonical_json(a) == canonical_json(b) == canonical_json(c)
    assert a.train.lr == 0.001 and isinstance(a.train.steps, int)


def test_hash_is_equal_across_processes_and_hash_seeds(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.yaml", YAML)
    code = (
        "from splineflow_pyro.config import load_config, stable_hash;"
        f"print(stable_hash(load_config({str(path)!r})))"
    )
    hashes = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert hashes == {stable_hash(load_config(path))}


def test_changing_one_setting_changes_the_hash() -> None:
    assert stable_hash(MethodConfig("splineflow", degree=3)) != stable_hash(
        MethodConfig("splineflow", degree=5)
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("datasets: []", "datasets"),
        ("datasets: [{name: a, source: b}]\nmethods: [{kind: cubic}]", "cubic"),
        ("datasets: [{name: a, source: b}]\ntrain: {lr: fast}", "train.lr"),
        ("datasets: [{name: a, source: b}]\ntrain: {stpes: 3}", "stpes"),
        ("datasets: [{name: a, source: b}]\nmethods: [{kind: splineflow, degree: 7}]", "degree"),
        ("datasets: [{name: a, source: b}]\nmethods: [linear, linear]", "unique"),
        ("datasets: [{name: a, source: b}]\nseeds: [1.5]", "seeds[0]"),
        ("datasets: [{name: a, source: b}, {name: a, source: c}]", "repeated: ['a']"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, "bad.yaml", text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_default_config_is_valid() -> None:
    assert DEFAULT_CONFIG.methods[0].label == "splineflow"
    assert canonical_json(DEFAULT_CONFIG)
