"""Reading slides, plain images and image stacks: :func:`open_slide` and :class:`Slide`."""

from tileuq.errors import SlideError
from tileuq.slide.base import Slide

__all__ = ["Slide", "SlideError", "open_slide"]


def open_slide(*args, **kwargs):  # type: ignore[no-untyped-def]  # replaced by the backends work
    """Open a slide (placeholder until the backends land)."""
    raise NotImplementedError
