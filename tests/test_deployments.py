"""prefect.yaml: every deployment's entrypoint resolves to a flow whose parameters validate."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prefect.flows import Flow, load_flow_from_entrypoint

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENTS = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_entrypoint_resolves_and_parameters_validate(
    deployment: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    flow = load_flow_from_entrypoint(deployment["entrypoint"])
    assert isinstance(flow, Flow)
    flow.validate_parameters(deployment.get("parameters") or {})


def test_nightly_is_scheduled_at_two_and_never_overlaps() -> None:
    nightly = next(d for d in DEPLOYMENTS if d["name"] == "nightly")
    assert nightly["schedules"][0]["cron"] == "0 2 * * *"
    assert nightly["concurrency_limit"]["limit"] == 1
    assert {d["name"] for d in DEPLOYMENTS} == {"nightly", "ingest", "train", "evaluate"}
