"""Slide inference engine: streaming, pipelined, resumable; tile result tables; many slides.

Names are resolved lazily so that ``tileuq.engine.results`` (no torch) can be imported alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tileuq._lazy import attach

_LAZY = {
    "run_slide": "tileuq.engine.run",
    "iter_run_slide": "tileuq.engine.run",
    "run_slides": "tileuq.engine.distributed",
    "iter_run_slides": "tileuq.engine.distributed",
    "TileResults": "tileuq.engine.results",
    "Progress": "tileuq.engine.progress",
    "SlideOutcome": "tileuq.engine.progress",
}

__all__ = [
    "Progress",
    "SlideOutcome",
    "TileResults",
    "iter_run_slide",
    "iter_run_slides",
    "run_slide",
    "run_slides",
]


__getattr__, __dir__ = attach(__name__, _LAZY, __all__)


if TYPE_CHECKING:  # pragma: no cover
    from tileuq.engine.distributed import iter_run_slides, run_slides
    from tileuq.engine.progress import Progress, SlideOutcome
    from tileuq.engine.results import TileResults
    from tileuq.engine.run import iter_run_slide, run_slide
