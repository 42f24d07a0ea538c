"""The ``splineflow`` command line.

Each command group lives in its own module exposing ``register(subparsers)``; a handler is
stored as ``func`` on its parser and returns an exit code. Errors on user input end the
process with a one-line reason and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from splineflow_pyro import __version__

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command group registered."""
    from flows import cli_data, cli_pipeline

    parser = argparse.ArgumentParser(
        prog="splineflow",
        description="SplineFlow: learn dynamics from irregular time series and snapshots.",
    )
    parser.add_argument("--version", action="version", version=f"splineflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli_data.register(sub)
    cli_pipeline.register(sub)
    return parser


def add_storage_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--storage`` option shared by every command."""
    parser.add_argument(
        "--storage",
        default=None,
        help="store root (directory or fsspec URL); default $SPLINEFLOW_STORAGE, else ./storage",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``splineflow`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError, RuntimeError) as exc:
        message = " ".join(str(exc).split())
        print(f"splineflow {args.command}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"splineflow {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
