"""Prefect flows and the ``splineflow`` command line, thin wrappers over ``splineflow_pyro``."""

import os

# Offline by default (no telemetry to Prefect's servers); set it to true to opt in.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

# The temporary API server of a local run must create its database on first use; on a cold
# machine (fresh install, first imports) that can exceed Prefect's default wait of 20 s.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

# A pipeline config for flows started without one (deployments, `splineflow run`).
CONFIG_ENV = "SPLINEFLOW_CONFIG"

# Set by the CLI: stages then also print their progress lines on stderr.
PROGRESS_ENV = "SPLINEFLOW_PROGRESS"
