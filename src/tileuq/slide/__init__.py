"""Reading slides, plain images and image stacks: :func:`open_slide` and :class:`Slide`.

Backends (chosen by content in :func:`open_slide`): OpenSlide (:mod:`._openslide`), tifffile
(:mod:`._tiff`), DICOM (:mod:`._dicom`), plain images and folder stacks (:mod:`._image`),
numpy/dask arrays (:mod:`._array`).  Colour/bit-depth rules are in :mod:`._render`.
"""

from tileuq.errors import SlideError
from tileuq.slide._open import open_slide
from tileuq.slide._sample import sample_slide_path
from tileuq.slide.base import Slide

__all__ = ["Slide", "SlideError", "open_slide", "sample_slide_path"]
