"""Slides backed by whole in-memory (or dask) planes: numpy/dask arrays passed from Python.

Array layout rule (:func:`as_planes`): ``(h, w)`` is one grey plane; a 3-D array whose last
axis has 1 to 4 entries is ``(h, w, c)``; any other 3-D array is ``(planes, h, w)``; a 4-D
array is ``(planes, h, w, c)`` with ``c`` in 1..4.  ``c`` = 1 grey, 2 grey + alpha, 3 RGB,
4 RGBA; non-``uint8`` data is windowed once for all planes (see :mod:`._render`).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import numpy as np

from tileuq.errors import SlideError
from tileuq.slide._render import Renderer, make_renderer
from tileuq.slide.base import Slide

DEFAULT_TILE = 512
SAMPLE_PIXELS = 1 << 20


def as_planes(arr: Any) -> Any:
    """Reshape an array to ``(planes, h, w, c)`` following the layout rule (lazy for dask)."""
    shape = tuple(int(n) for n in arr.shape)
    if len(shape) == 2:
        return arr[None, :, :, None]
    if len(shape) == 3:
        return arr[None] if shape[2] <= 4 else arr[:, :, :, None]
    if len(shape) == 4 and 1 <= shape[3] <= 4:
        return arr
    raise SlideError(
        f"array of shape {shape}: expected (h, w), (h, w, c), (planes, h, w) or "
        "(planes, h, w, c) with c in 1..4"
    )


def _is_dask(a: Any) -> bool:
    return hasattr(a, "compute") and hasattr(a, "chunks")


class PlaneSlide(Slide):
    """Base for slides whose planes are whole arrays ``(h, w, c)`` sliced on demand."""

    _renderer: Renderer

    def _plane_raw(self, plane: int) -> Any:
        raise NotImplementedError

    def _render(self, raw: np.ndarray, plane: int) -> np.ndarray:
        return self._renderer(raw)

    def _read_level(self, level: int, x: int, y: int, w: int, h: int, plane: int) -> np.ndarray:
        part = self._plane_raw(plane)[y : y + h, x : x + w]
        if _is_dask(part):
            part = part.compute(scheduler="synchronous")
        return self._render(np.asarray(part), plane)

    def _sample(self) -> np.ndarray:
        """Strided pixels of up to four evenly spaced planes (about 1 Mpx each)."""
        w, h = self.dimensions
        step = max(1, math.ceil(math.sqrt(w * h / SAMPLE_PIXELS)))
        parts = []
        for p in sorted({round(v) for v in np.linspace(0, self.planes - 1, min(self.planes, 4))}):
            a = self._plane_raw(p)[::step, ::step]
            if _is_dask(a):
                a = a.compute()
            a = np.asarray(a)
            parts.append(a.reshape(-1, a.shape[-1]))
        return np.concatenate(parts)


class ArraySlide(PlaneSlide):
    """A numpy or dask array opened as a slide (``vendor`` ``"array"``, or ``"stack"``).

    Planes are the leading axis.  Tile size is the dask chunk size, or 512 for numpy.
    """

    def __init__(self, data: Any) -> None:
        arr = as_planes(data)
        if arr.dtype == object or not (
            np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_
        ):
            raise SlideError(f"array of dtype {arr.dtype}: expected a numeric or bool array")
        p, h, w, c = (int(n) for n in arr.shape)
        if min(p, h, w) < 1:
            raise SlideError(f"array of shape {tuple(data.shape)}: the image is empty")
        self._arr = arr
        self.path = None
        self.planes = p
        self.vendor = "stack" if p > 1 else "array"
        self.level_dimensions = ((w, h),)
        self.level_downsamples = (1.0,)
        if _is_dask(arr):
            tile = (int(arr.chunksize[2]), int(arr.chunksize[1]))
        else:
            tile = (min(w, DEFAULT_TILE), min(h, DEFAULT_TILE))
        self.level_tile_sizes = (tile,)
        self._renderer = make_renderer(arr.dtype, c, None, self._sample)
        self.properties = {"tileuq.render": json.dumps(self._renderer.describe())}

    def _plane_raw(self, plane: int) -> Any:
        return self._arr[plane]

    def header_hash(self) -> str:
        """SHA-256 of the geometry, dtype and a strided sample of the data."""
        hsh = hashlib.sha256(repr((self.vendor, self._arr.shape, str(self._arr.dtype))).encode())
        hsh.update(np.ascontiguousarray(self._sample()).tobytes())
        return hsh.hexdigest()
