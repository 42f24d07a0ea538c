"""Prefect flows and the ``splineflow`` command line, thin wrappers over ``splineflow_pyro``."""
