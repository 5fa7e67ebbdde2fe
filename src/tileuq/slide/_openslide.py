"""OpenSlide backend.

Aperio SVS (JPEG and JPEG 2000), Hamamatsu NDPI/VMS/VMU, MIRAX MRXS, Leica SCN, Ventana BIF,
Philips TIFF, Sakura SVSLIDE and generic tiled RGB TIFF.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tileuq.errors import SlideError
from tileuq.slide._render import Renderer
from tileuq.slide.base import Slide

DEFAULT_TILE = 512
_RGBA = Renderer("rgba")


def _float(props: Mapping[str, str], key: str) -> float | None:
    try:
        v = float(props[key])
    except (KeyError, ValueError):
        return None
    return v if np.isfinite(v) and v > 0 else None


class LazyImages(Mapping[str, np.ndarray]):
    """A mapping that decodes each associated image on first access (then caches it)."""

    def __init__(self, names: list[str], load: Any) -> None:
        self._names = list(names)
        self._load = load
        self._cache: dict[str, np.ndarray] = {}

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._names:
            raise KeyError(key)
        if key not in self._cache:
            self._cache[key] = self._load(key)
        return self._cache[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"<associated images {self._names}>"


class OpenSlideSlide(Slide):
    """A slide read by OpenSlide (``openslide-python`` + ``openslide-bin``).

    ``read_region`` passes the level-0 location straight to OpenSlide, so results agree
    pixel for pixel with ``openslide.OpenSlide.read_region`` composited on white.  Tile sizes
    come from ``openslide.level[i].tile-width/-height`` (512 when the format does not say).
    """

    def __init__(self, path: Path) -> None:
        import openslide

        self.path = path
        try:
            self._osr = openslide.OpenSlide(str(path))
        except openslide.OpenSlideUnsupportedFormatError as exc:
            raise SlideError(f"{path}: OpenSlide does not support this file ({exc})") from exc
        except (openslide.OpenSlideError, OSError, ValueError) as exc:
            raise SlideError(f"{path}: OpenSlide cannot open the file ({exc})") from exc
        osr = self._osr
        props = dict(osr.properties)
        self.properties = props
        self.vendor = props.get("openslide.vendor", "openslide")
        self.level_dimensions = tuple((int(w), int(h)) for w, h in osr.level_dimensions)
        self.level_downsamples = tuple(float(d) for d in osr.level_downsamples)
        tiles = []
        for i in range(len(self.level_dimensions)):
            tw = props.get(f"openslide.level[{i}].tile-width")
            th = props.get(f"openslide.level[{i}].tile-height")
            tiles.append((int(tw), int(th)) if tw and th else (DEFAULT_TILE, DEFAULT_TILE))
        self.level_tile_sizes = tuple(tiles)
        mx, my = _float(props, "openslide.mpp-x"), _float(props, "openslide.mpp-y")
        self.mpp = (mx, my) if mx and my else None
        self.objective_power = _float(props, "openslide.objective-power")
        self._assoc = LazyImages(sorted(osr.associated_images.keys()), self._load_associated)

    @property
    def associated_images(self) -> Mapping[str, np.ndarray]:
        """Label, macro, thumbnail, ... as RGB uint8 (alpha composited on white)."""
        return self._assoc

    def _load_associated(self, name: str) -> np.ndarray:
        import openslide

        try:
            img = self._osr.associated_images[name]
        except openslide.OpenSlideError as exc:
            raise SlideError(
                f"{self.path}: cannot decode associated image {name!r} ({exc})"
            ) from exc
        return _RGBA(np.asarray(img.convert("RGBA")))

    def _os_read(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        import openslide

        try:
            img = self._osr.read_region(location, level, size)
        except openslide.OpenSlideError as exc:
            raise SlideError(
                f"{self.path}: OpenSlide failed to read level {level} at {location} "
                f"size {size} ({exc}); the file may be truncated or corrupt"
            ) from exc
        except Exception as exc:  # closed handle, bad arguments
            raise SlideError(f"{self.path}: cannot read region ({exc})") from exc
        return _RGBA(np.asarray(img))

    def read_region(
        self,
        location: tuple[int, int],
        level: int,
        size: tuple[int, int],
        *,
        plane: int = 0,
    ) -> np.ndarray:
        """Read a region as RGB ``uint8`` ``(h, w, 3)``; see :meth:`Slide.read_region`."""
        w, h = int(size[0]), int(size[1])
        self._validate_region(level, (w, h), plane)
        if w == 0 or h == 0:
            return np.full((h, w, 3), 255, dtype=np.uint8)
        return self._os_read((int(location[0]), int(location[1])), level, (w, h))

    def _read_level(self, level: int, x: int, y: int, w: int, h: int, plane: int) -> np.ndarray:
        ds = self.level_downsamples[level]
        return self._os_read((round(x * ds), round(y * ds)), level, (w, h))

    def close(self) -> None:
        """Close the OpenSlide handle (safe to call twice)."""
        osr = getattr(self, "_osr", None)
        if osr is not None:
            osr.close()
            self._osr = None  # type: ignore[assignment]
