"""The ``tileuq`` command line: a thin layer over the library.

Each sub-command lives in its own module ``tileuq.cli.<name>`` that defines
``register(subparsers) -> argparse.ArgumentParser`` and ``run(args) -> int``.  Modules must be
cheap to import (no torch at import time); heavy imports happen inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from tileuq import __version__
from tileuq.errors import TileuqError

# sub-command name -> module; listed in the order ``tileuq --help`` shows them
COMMANDS: dict[str, str] = {
    "info": "tileuq.cli.info",
    "tile": "tileuq.cli.tile",
    "run": "tileuq.cli.run",
    "train": "tileuq.cli.train",
    "fit-scorers": "tileuq.cli.fit_scorers",
    "calibrate": "tileuq.cli.calibrate",
    "evaluate": "tileuq.cli.evaluate",
    "export": "tileuq.cli.export",
    "report": "tileuq.cli.report",
}


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every available sub-command."""
    parser = argparse.ArgumentParser(
        prog="tileuq",
        description="Uncertainty-aware tile classification of whole-slide images.",
    )
    parser.add_argument("--version", action="version", version=f"tileuq {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:  # command not built yet
                continue
            raise
        p = mod.register(sub)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tileuq`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except TileuqError as exc:
        print(f"tileuq {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tileuq {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
