"""SplineFlow: flow matching for dynamical systems with B-spline interpolants.

The library computes and stores; orchestration lives in the ``flows`` package.
"""

__version__ = "0.2.0"
