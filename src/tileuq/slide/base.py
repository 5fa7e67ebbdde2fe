"""The :class:`Slide` interface shared by every backend.

It follows OpenSlide's conventions so that pathologists' scripts feel at home: level-0 pixel
coordinates ``(x, y)``, sizes ``(w, h)``, ``level_dimensions``, ``level_downsamples`` and
``read_region``.  Unlike OpenSlide, :meth:`Slide.read_region` returns an RGB ``uint8`` numpy
array with alpha composited on white, pads white off the slide edge, and takes a ``plane``
index for image stacks.
"""

from __future__ import annotations

import abc
import hashlib
import math
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from tileuq.errors import SlideError

if TYPE_CHECKING:
    import dask.array as da


class Slide(abc.ABC):
    """A whole-slide image, plain image or image stack, opened read-only.

    Subclasses fill in the attributes in ``__init__`` and implement :meth:`_read_level`
    (a region that lies inside the level, thread-safe).  Everything else (edge padding,
    validation, thumbnails, best-level lookup, the lazy dask :meth:`pyramid`) is shared here.

    Attributes
    ----------
    path
        The file or folder the slide was opened from (``None`` for in-memory arrays).
    vendor
        Format name, e.g. ``"aperio"``, ``"ome-tiff"``, ``"dicom"``, ``"image"``, ``"stack"``.
    dimensions
        Level-0 ``(width, height)`` in pixels.
    level_dimensions
        ``(width, height)`` of every pyramid level, finest first.
    level_downsamples
        Level-0 pixels per pixel of each level.
    level_tile_sizes
        Native ``(width, height)`` tile (or chunk) size of each level.
    mpp
        ``(x, y)`` micrometres per level-0 pixel, or ``None`` when the file does not say.
    objective_power
        Scanning objective magnification, or ``None``.
    planes
        Number of planes (1 for an ordinary slide; depth of an image stack).
    properties
        Raw metadata as strings.
    """

    path: Path | None = None
    vendor: str = "unknown"
    level_dimensions: tuple[tuple[int, int], ...] = ()
    level_downsamples: tuple[float, ...] = ()
    level_tile_sizes: tuple[tuple[int, int], ...] = ()
    mpp: tuple[float, float] | None = None
    objective_power: float | None = None
    planes: int = 1
    properties: Mapping[str, str] = {}

    # ------------------------------------------------------------------ geometry
    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 ``(width, height)``."""
        return self.level_dimensions[0]

    @property
    def level_count(self) -> int:
        """Number of pyramid levels."""
        return len(self.level_dimensions)

    @property
    def name(self) -> str:
        """A short display name (file name, or ``"array"``)."""
        return self.path.name if self.path is not None else "array"

    @property
    def associated_images(self) -> Mapping[str, np.ndarray]:
        """Label, macro, thumbnail and similar images stored beside the pyramid (RGB uint8)."""
        return {}

    def get_best_level_for_downsample(self, downsample: float) -> int:
        """Return the coarsest level whose downsample is at most ``downsample``.

        This is the level to read from when resizing down to ``downsample`` (never upsample).
        A tolerance of 1 % absorbs rounding in stored downsamples (e.g. 3.9998 for 4).
        """
        best = 0
        for i, d in enumerate(self.level_downsamples):
            if d <= downsample * 1.01:
                best = i
        return best

    # ------------------------------------------------------------------ reading
    def read_region(
        self,
        location: tuple[int, int],
        level: int,
        size: tuple[int, int],
        *,
        plane: int = 0,
    ) -> np.ndarray:
        """Read a region as RGB ``uint8`` ``(h, w, 3)``.

        Parameters
        ----------
        location
            ``(x, y)`` of the top-left corner in **level-0** pixels (OpenSlide convention).
        level
            Pyramid level to read.
        size
            ``(w, h)`` of the region in pixels of ``level``.
        plane
            Plane index for image stacks (0 for ordinary slides).

        Returns
        -------
        numpy.ndarray
            ``(h, w, 3)`` ``uint8``.  Parts of the region outside the slide are white.
        """
        x, y = (int(location[0]), int(location[1]))
        w, h = (int(size[0]), int(size[1]))
        self._validate_region(level, (w, h), plane)
        out = np.full((h, w, 3), 255, dtype=np.uint8)
        if w == 0 or h == 0:
            return out
        ds = self.level_downsamples[level]
        lw, lh = self.level_dimensions[level]
        # top-left in level pixels (OpenSlide rounds down)
        lx, ly = math.floor(x / ds), math.floor(y / ds)
        x0, y0 = max(lx, 0), max(ly, 0)
        x1, y1 = min(lx + w, lw), min(ly + h, lh)
        if x1 <= x0 or y1 <= y0:
            return out
        part = self._read_level(level, x0, y0, x1 - x0, y1 - y0, plane)
        if part.shape != (y1 - y0, x1 - x0, 3) or part.dtype != np.uint8:
            raise SlideError(
                f"{self.name}: backend returned {part.shape} {part.dtype} for a "
                f"{(y1 - y0, x1 - x0, 3)} uint8 read at level {level}"
            )
        out[y0 - ly : y1 - ly, x0 - lx : x1 - lx] = part
        return out

    def _validate_region(self, level: int, size: tuple[int, int], plane: int) -> None:
        """Raise :class:`SlideError` for a level, plane or size that cannot be read."""
        if not 0 <= level < self.level_count:
            raise SlideError(
                f"{self.name}: level {level} does not exist (the slide has {self.level_count})"
            )
        if not 0 <= plane < self.planes:
            raise SlideError(
                f"{self.name}: plane {plane} does not exist (the slide has {self.planes})"
            )
        if size[0] < 0 or size[1] < 0:
            raise SlideError(f"{self.name}: region size must be non-negative, got {tuple(size)}")

    @abc.abstractmethod
    def _read_level(self, level: int, x: int, y: int, w: int, h: int, plane: int) -> np.ndarray:
        """Read a region lying wholly inside ``level``, in that level's pixel coordinates.

        Must return RGB ``uint8`` ``(h, w, 3)`` with alpha already composited on white.
        """

    def thumbnail(self, max_size: int | tuple[int, int] = 1024, *, plane: int = 0) -> np.ndarray:
        """Return an RGB ``uint8`` overview that fits in ``max_size`` (keeping aspect ratio).

        Reads the coarsest level that is still at least as large as the requested size and
        resizes it with area averaging.
        """
        from PIL import Image

        mw, mh = (max_size, max_size) if isinstance(max_size, int) else max_size
        w0, h0 = self.dimensions
        scale = max(w0 / mw, h0 / mh, 1.0)
        tw, th = max(1, round(w0 / scale)), max(1, round(h0 / scale))
        level = self.get_best_level_for_downsample(scale)
        lw, lh = self.level_dimensions[level]
        img = self.read_region((0, 0), level, (lw, lh), plane=plane)
        if (lw, lh) == (tw, th):
            return img
        # BOX = exact area averaging when shrinking (fast, no ringing)
        return np.asarray(Image.fromarray(img).resize((tw, th), Image.Resampling.BOX))

    def pyramid(self) -> list[da.Array]:
        """Return the levels as lazy dask arrays, finest first.

        Each array is ``(h, w, 3)`` ``uint8`` (``(planes, h, w, 3)`` for stacks) with chunks
        equal to the native tile size, so no level is ever read whole: each chunk is one
        :meth:`_read_level` call.  When the coarsest level is larger than 4096 px on a side,
        generated half-size levels follow the file's own (see :mod:`tileuq.slide._lazy`).
        """
        from tileuq.slide._lazy import slide_pyramid

        return slide_pyramid(self)

    # ------------------------------------------------------------------ provenance
    def header_hash(self) -> str:
        """SHA-256 (hex) of the file header and metadata: cheap provenance for results.

        The default hashes the first MiB of the file (or of each file of a folder), the file
        size and the geometry; backends of in-memory arrays hash the geometry and data.
        """
        h = hashlib.sha256()
        h.update(repr((self.vendor, self.level_dimensions, self.mpp, self.planes)).encode())
        if self.path is not None:
            files = (
                sorted(p for p in self.path.iterdir() if p.is_file())
                if self.path.is_dir()
                else [self.path]
            )
            for f in files:
                h.update(f.name.encode())
                h.update(str(f.stat().st_size).encode())
                with open(f, "rb") as fh:
                    h.update(fh.read(1 << 20))
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        """Return a JSON-serialisable summary (used in ``run.json`` and reports)."""
        return {
            "path": str(self.path) if self.path is not None else None,
            "name": self.name,
            "vendor": self.vendor,
            "dimensions": list(self.dimensions),
            "level_count": self.level_count,
            "level_dimensions": [list(d) for d in self.level_dimensions],
            "level_downsamples": list(self.level_downsamples),
            "mpp": list(self.mpp) if self.mpp is not None else None,
            "objective_power": self.objective_power,
            "planes": self.planes,
            "backend": type(self).__name__,
        }

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:  # noqa: B027 - optional hook for backends
        """Release file handles.  Safe to call twice."""

    def __enter__(self) -> Slide:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        mpp = f"{self.mpp[0]:.4g} µm/px" if self.mpp else "mpp unknown"
        planes = f", {self.planes} planes" if self.planes > 1 else ""
        return (
            f"<{type(self).__name__} {self.name!r} {self.vendor} "
            f"{self.dimensions[0]}x{self.dimensions[1]}, {self.level_count} levels, {mpp}{planes}>"
        )
