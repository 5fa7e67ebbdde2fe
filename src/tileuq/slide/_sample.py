"""Where the bundled sample slide lives (inside the wheel, or at the repository top level)."""

from __future__ import annotations

from pathlib import Path

from tileuq.errors import SlideError

SAMPLE_NAME = "CMU-1-Small-Region.svs"


def sample_slide_path() -> Path:
    """Return the path of the bundled sample slide ``CMU-1-Small-Region.svs``.

    A wheel carries it as ``tileuq/sample_data/``; an editable install or a source checkout
    finds it in the repository's ``sample_data/``.
    """
    here = Path(__file__).resolve().parent.parent  # the tileuq package
    for candidate in (
        here / "sample_data" / SAMPLE_NAME,
        here.parents[1] / "sample_data" / SAMPLE_NAME,
    ):
        if candidate.is_file():
            return candidate
    raise SlideError(f"{SAMPLE_NAME}: the bundled sample slide is missing from this installation")
