"""tifffile backend.

OME-TIFF, QPTIFF, SubIFD and series pyramids, 16-bit and multichannel TIFF, imagecodecs-only
codecs (JPEG 2000, JPEG XL, ...), plain and multi-page TIFF stacks.

Layout rule: of the main series' axes, ``Y``/``X`` are the image, ``S`` the samples of a
page, ``C`` the channels, and every other axis (``I``, ``Q``, ``Z``, ``T``, ...) is flattened,
row-major, into :attr:`Slide.planes`.  Photometric RGB/YCbCr pages are shown as RGB (alpha
composited on white); grey pages as grey; channels (``C`` axis, or more than two min-is-black
samples) as an additive false-colour composite.  Bit depths other than 8 and all composites
are windowed to ``uint8`` by robust percentiles of the coarsest level; see
:mod:`tileuq.slide._render` for the exact rule.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tileuq.errors import SlideError
from tileuq.slide import _tiffmeta as meta
from tileuq.slide._openslide import LazyImages
from tileuq.slide._render import MAX_CHANNELS, make_renderer
from tileuq.slide._tiffio import check_codec, read_page_region, segment_size
from tileuq.slide.base import Slide

_ASSOCIATED = {"thumbnail": "thumbnail", "label": "label", "macro": "macro", "overview": "macro"}
SAMPLE_PIXELS = 1 << 22  # read the coarsest level whole up to this size, else windows


def _main_series(tif: Any) -> Any:
    for s in tif.series:
        if (s.name or "").lower() not in _ASSOCIATED and len(s.shape) >= 2:
            return s
    return tif.series[0]


def _yx(series: Any) -> tuple[int, int]:
    kf = series.keyframe
    return int(kf.imagewidth), int(kf.imagelength)


def _levels(tif: Any, main: Any) -> list[Any]:
    """Return the pyramid levels of the main series.

    The series' own levels (SubIFDs, vendor pyramids) or, failing that, later series with the
    same axes and leading shape whose size is a reduction of level 0.
    """
    levels = list(main.levels)
    if len(levels) > 1:
        return levels
    w0, h0 = _yx(main)
    lead = [n for a, n in zip(main.axes, main.shape, strict=True) if a not in "YXS"]
    for s in tif.series:
        if s is main or s.axes != main.axes or len(s.levels) != 1:
            continue
        if (s.name or "").lower() in _ASSOCIATED:
            continue
        if [n for a, n in zip(s.axes, s.shape, strict=True) if a not in "YXS"] != lead:
            continue
        w, h = _yx(s)
        if w < w0 and h < h0 and abs(w - w0 * h / h0) <= max(2.0, 0.02 * w):
            levels.append(s)
    return sorted(levels, key=lambda s: -_yx(s)[0])


class TiffSlide(Slide):
    """A TIFF read with tifffile, tile by tile (see the module docstring for the rules)."""

    def __init__(self, path: Path, tif: Any) -> None:
        self.path = path
        self._tif = tif
        try:
            self._setup(tif)
        except SlideError:
            tif.close()
            raise
        except Exception as exc:
            tif.close()
            raise SlideError(
                f"{path}: cannot interpret the TIFF layout ({type(exc).__name__}: {exc})"
            ) from exc

    # ------------------------------------------------------------------ set-up
    def _setup(self, tif: Any) -> None:
        path = self.path
        assert path is not None
        main = _main_series(tif)
        self._main = main
        levels = _levels(tif, main)
        kf = main.keyframe
        axes = main.axes
        lead = [(a, int(n)) for a, n in zip(axes, main.shape, strict=True) if a not in "YXS"]
        sizes = [n for _, n in lead]
        n_pages = math.prod(sizes) if sizes else 1
        photometric = int(kf.photometric)
        spp = int(kf.samplesperpixel)
        self._palette = kf.colormap if photometric == 3 else None
        self._invert = photometric == 0
        if any(len(lv.pages) != n_pages for lv in levels):  # odd layout: one page per plane
            lead, sizes = [("I", len(main.pages))], [len(main.pages)]
        c_axis = next((i for i, (a, _) in enumerate(lead) if a == "C"), None)
        n_c = sizes[c_axis] if c_axis is not None else 1
        if photometric in (2, 6) or self._palette is not None:
            hint, used_c = "rgb", 1
        elif c_axis is not None and n_c > 1:
            hint, used_c = "channels", min(n_c, MAX_CHANNELS)
        else:
            extra = tuple(kf.extrasamples or ())
            hint = "gray" if spp == 1 or (spp == 2 and extra and extra[0] in (1, 2)) else "channels"
            used_c = 1
        plane_dims = [n for i, (_, n) in enumerate(lead) if i != c_axis]
        self.planes = math.prod(plane_dims) if plane_dims else 1
        self._lead_sizes, self._c_axis, self._used_c = sizes, c_axis, used_c
        self._plane_dims = plane_dims
        self._levels = levels
        for lv in levels:
            for page in lv.pages[: max(1, used_c)]:
                if page is not None:
                    check_codec(page, path)
        self.level_dimensions = tuple(_yx(lv) for lv in levels)
        w0, h0 = self.level_dimensions[0]
        self.level_downsamples = tuple(
            1.0 if i == 0 else (w0 / w + h0 / h) / 2
            for i, (w, h) in enumerate(self.level_dimensions)
        )
        self.level_tile_sizes = tuple(segment_size(lv.keyframe) for lv in levels)
        self.vendor, names, colors = self._metadata(tif, main, kf)
        n_raw = used_c * (3 if self._palette is not None else spp)
        self._renderer = make_renderer(
            np.uint8 if self._palette is not None else kf.dtype,
            n_raw,
            hint,
            self._sample,
            colors if hint == "channels" and c_axis is not None else None,
        )
        props = {
            "tiff.ImageDescription": (kf.description or "")[:10000],
            "tifffile.series": f"{main.kind} {main.axes} {tuple(main.shape)} {main.dtype}",
            "tileuq.render": json.dumps(self._renderer.describe()),
        }
        if names:
            props["tileuq.channels"] = json.dumps(names[:used_c])
        self.properties = props
        self._assoc = LazyImages(*self._associated(tif, main))

    def _metadata(self, tif: Any, main: Any, kf: Any) -> tuple[str, list[str], list[Any]]:
        names: list[str] = []
        colors: list[Any] = []
        vendor = "tiff"
        if tif.is_ome and tif.ome_metadata:
            vendor = "ome-tiff"
            image = meta.ome_image(tif.ome_metadata, tif.series.index(main))
            if image is not None:
                self.mpp = meta.ome_mpp(image)
                names, colors = meta.ome_channels(image)
            self.objective_power = meta.ome_objective(tif.ome_metadata)
        elif tif.is_qpi:
            vendor = "qptiff"
            for page in main.pages[: self._lead_sizes[0] if self._lead_sizes else 1]:
                name, color = meta.qpi_channel(page)
                names.append(name or f"channel {len(names)}")
                colors.append(color)
            self.mpp = meta.tag_mpp(kf) or meta.qpi_mpp(kf)
            self.objective_power = meta.qpi_objective(kf)
        elif tif.is_svs:
            vendor = "aperio"
            self.mpp = meta.aperio_mpp(kf.description)
            self.objective_power = meta.aperio_objective(kf.description)
        elif tif.is_ndpi:
            vendor = "hamamatsu"
        if self.mpp is None:
            self.mpp = meta.tag_mpp(kf)
        return vendor, names, colors

    def _associated(self, tif: Any, main: Any) -> tuple[list[str], Callable[[str], np.ndarray]]:
        found: dict[str, Any] = {}
        for s in tif.series:
            key = _ASSOCIATED.get((s.name or "").lower())
            if key and s is not main and key not in found:
                found[key] = s.keyframe
        if tif.is_qpi:
            for page in tif.pages:
                key = _ASSOCIATED.get((meta.qpi_image_type(page) or "").lower())
                if key and key not in found:
                    found[key] = page

        def load(name: str) -> np.ndarray:
            page = found[name]
            try:
                raw = page.asarray()
            except Exception as exc:
                raise SlideError(
                    f"{self.path}: cannot decode associated image {name!r} ({exc})"
                ) from exc
            raw = raw.reshape(*raw.shape[:2], -1)
            hint = "rgb" if int(page.photometric) in (2, 6) else None
            return make_renderer(raw.dtype, raw.shape[2], hint, raw)(raw)

        return sorted(found), load

    @property
    def associated_images(self) -> LazyImages:
        """Thumbnail, label and macro/overview images stored in the TIFF (RGB uint8)."""
        return self._assoc

    # ------------------------------------------------------------------ reading
    def _pages(self, level: int, plane: int) -> list[Any]:
        """Pages of ``level`` holding the used channels of ``plane``."""
        pages = self._levels[level].pages
        if not self._lead_sizes:
            return [pages[0]]
        idx = (
            [int(i) for i in np.unravel_index(plane, self._plane_dims)] if self._plane_dims else []
        )
        out = []
        for c in range(self._used_c):
            full = list(idx)
            if self._c_axis is not None:
                full.insert(self._c_axis, c)
            out.append(pages[int(np.ravel_multi_index(full, self._lead_sizes))])
        return out

    def _read_raw(self, level: int, x: int, y: int, w: int, h: int, plane: int) -> np.ndarray:
        assert self.path is not None
        parts = []
        for page in self._pages(level, plane):
            if page is None:  # missing page in a sparse file
                kf = self._levels[level].keyframe
                parts.append(np.zeros((h, w, int(kf.samplesperpixel)), dtype=kf.dtype))
                continue
            part = read_page_region(page, x, y, w, h, self.path)
            if self._palette is not None:
                cmap = np.asarray(self._palette)
                rgb = cmap[:, part[:, :, 0]].transpose(1, 2, 0)
                part = (rgb >> 8).astype(np.uint8) if cmap.max() > 255 else rgb.astype(np.uint8)
            elif self._invert and np.issubdtype(part.dtype, np.integer):
                part = np.iinfo(part.dtype).max - part
            parts.append(part)
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=2)

    def _sample(self) -> np.ndarray:
        """Pixels of the coarsest level (whole, or 8x8 spread windows) of <= 4 planes."""
        level = self.level_count - 1
        w, h = self.level_dimensions[level]
        chunks = []
        for plane in sorted(
            {round(p) for p in np.linspace(0, self.planes - 1, min(self.planes, 4))}
        ):
            if w * h <= SAMPLE_PIXELS:
                chunks.append(self._read_raw(level, 0, 0, w, h, plane).reshape(-1, self._n_raw()))
                continue
            s = 128
            for yy in np.linspace(0, max(h - s, 0), 8).astype(int):
                for xx in np.linspace(0, max(w - s, 0), 8).astype(int):
                    part = self._read_raw(level, int(xx), int(yy), min(s, w), min(s, h), plane)
                    chunks.append(part.reshape(-1, part.shape[2]))
        return np.concatenate(chunks, axis=0)

    def _n_raw(self) -> int:
        kf = self._levels[-1].keyframe
        return self._used_c * (3 if self._palette is not None else int(kf.samplesperpixel))

    def _read_level(self, level: int, x: int, y: int, w: int, h: int, plane: int) -> np.ndarray:
        if self._tif.filehandle.closed:
            raise SlideError(f"{self.path}: the slide is closed")
        return self._renderer(self._read_raw(level, x, y, w, h, plane))

    def close(self) -> None:
        """Close the TIFF file (safe to call twice)."""
        self._tif.close()
