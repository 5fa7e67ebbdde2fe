"""Where the bundled sample slide lives (inside the wheel, or at the repository top level)."""

from __future__ import annotations

from pathlib import Path

from tileuq.bundled import SAMPLE_SLIDE, bundled_path
from tileuq.errors import SlideError

SAMPLE_NAME = SAMPLE_SLIDE


def sample_slide_path() -> Path:
    """Return the path of the bundled sample slide ``CMU-1-Small-Region.svs``.

    A wheel carries it as ``tileuq/sample_data/``; an editable install or a source checkout
    finds it in the repository's ``sample_data/``.
    """
    path = bundled_path(SAMPLE_NAME)
    if path is None or not path.is_file():
        raise SlideError(
            f"{SAMPLE_NAME}: the bundled sample slide is missing from this installation"
        )
    return path
