"""Prefect flows and the ``splineflow`` command line, thin wrappers over ``splineflow_pyro``."""

# Set by the CLI: stages then also print their progress lines on stderr.
PROGRESS_ENV = "SPLINEFLOW_PROGRESS"
