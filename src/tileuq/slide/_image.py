"""Plain images (PNG, JPEG, BMP, GIF, WebP, JPEG 2000) and folders of images (stacks)."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from tileuq.errors import SlideError
from tileuq.slide._array import DEFAULT_TILE, PlaneSlide
from tileuq.slide._decode import decode_image, image_size
from tileuq.slide._render import make_renderer


class ImageSlide(PlaneSlide):
    """A plain image decoded once, at open (``vendor`` ``"image"``).

    RGBA and palette transparency are composited on white, grey is repeated to RGB, 16-bit
    and float images are windowed (see :mod:`tileuq.slide._render`).  No file format here
    stores a physical pixel size that tileuq trusts, so ``mpp`` is ``None`` unless given to
    :func:`~tileuq.slide.open_slide`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._raw = decode_image(path)
        h, w, c = self._raw.shape
        if min(h, w) < 1:
            raise SlideError(f"{path}: the image is empty ({w}x{h})")
        self.vendor = "image"
        self.level_dimensions = ((w, h),)
        self.level_downsamples = (1.0,)
        self.level_tile_sizes = ((min(w, DEFAULT_TILE), min(h, DEFAULT_TILE)),)
        self._renderer = make_renderer(self._raw.dtype, c, None, self._sample)
        self.properties = {"tileuq.render": json.dumps(self._renderer.describe())}

    def _plane_raw(self, plane: int) -> Any:
        return self._raw


class FolderStack(PlaneSlide):
    """A folder of same-sized images, one plane per file in name order (``vendor`` ``"stack"``).

    Files are decoded on demand and the last few decoded planes are cached.  8-bit files are
    rendered each by its own layout (so an RGBA file among RGB files is fine); deeper files
    share one window taken from up to four planes.
    """

    CACHE = 4

    def __init__(self, path: Path, files: list[Path]) -> None:
        self.path = path
        self._files = list(files)
        sizes = {}
        for f in self._files:
            sizes[f] = image_size(f)
        w, h = sizes[self._files[0]]
        odd = [f.name for f, s in sizes.items() if s != (w, h)]
        if odd:
            raise SlideError(
                f"{path}: the images of a folder stack must all have one size; "
                f"{self._files[0].name} is {w}x{h} but {', '.join(odd[:5])} differ"
            )
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.planes = len(self._files)
        self.vendor = "stack"
        self.level_dimensions = ((w, h),)
        self.level_downsamples = (1.0,)
        self.level_tile_sizes = ((min(w, DEFAULT_TILE), min(h, DEFAULT_TILE)),)
        first = self._plane_raw(0)
        self._channels = int(first.shape[2])
        self._renderer = make_renderer(first.dtype, first.shape[2], None, self._sample)
        self.properties = {
            "tileuq.files": "\n".join(f.name for f in self._files),
            "tileuq.render": json.dumps(self._renderer.describe()),
        }

    def header_hash(self) -> str:
        """SHA-256 of the geometry and each file's name, size and first 64 KiB."""
        h = hashlib.sha256(repr((self.vendor, self.level_dimensions, self.mpp)).encode())
        for f in self._files:
            h.update(f"{f.name}:{f.stat().st_size}".encode())
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 16))
        return h.hexdigest()

    @property
    def files(self) -> list[Path]:
        """The image files, one per plane."""
        return list(self._files)

    def _plane_raw(self, plane: int) -> Any:
        with self._lock:
            if plane in self._cache:
                self._cache.move_to_end(plane)
                return self._cache[plane]
        raw = decode_image(self._files[plane])
        if raw.shape[:2] != self.level_dimensions[0][::-1]:
            raise SlideError(f"{self._files[plane]}: decoded size {raw.shape[1::-1]} differs")
        with self._lock:
            self._cache[plane] = raw
            while len(self._cache) > self.CACHE:
                self._cache.popitem(last=False)
        return raw

    def _render(self, raw: np.ndarray, plane: int) -> np.ndarray:
        if raw.dtype == np.uint8:
            return make_renderer(np.uint8, raw.shape[2], None, None)(raw)
        if raw.shape[2] != self._channels:
            raise SlideError(
                f"{self._files[plane]}: {raw.shape[2]} channels of {raw.dtype}, but the stack's "
                f"first image has {self._channels}"
            )
        return self._renderer(raw)
