"""Drain a progress generator for the command line (one line per ~10 %, on stderr)."""

from __future__ import annotations

import sys
from collections.abc import Generator
from typing import Any, TypeVar

T = TypeVar("T")


def drain(gen: Generator[Any, None, T], *, quiet: bool = False) -> T:
    """Run a generator that yields progress objects and return its result."""
    last: tuple[str, int] = ("", -1)
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            result: T = stop.value
            return result
        if quiet:
            continue
        frac = getattr(p, "fraction", None)
        stage = str(getattr(p, "stage", ""))
        step = -1 if frac is None else int(frac * 10)
        if (stage, step) != last:
            last = (stage, step)
            print(f"  {p}", file=sys.stderr, flush=True)
