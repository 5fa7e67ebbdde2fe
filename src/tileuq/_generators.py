"""Run a progress generator (the ``iter_*`` functions) to its end and return its result."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, TypeVar

T = TypeVar("T")


def result_of(gen: Generator[Any, None, T]) -> T:
    """Exhaust ``gen``, discarding what it yields, and return its ``return`` value."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            result: T = stop.value
            return result
