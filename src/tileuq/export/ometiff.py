"""Pyramidal OME-TIFF overlays aligned with the slide, written tile by tile.

The base level is the overlay at ``downsample`` ``d`` (``ceil(W / d) x ceil(H / d)`` RGBA
pixels, see :mod:`tileuq.export.raster`); its OME ``PhysicalSizeX/Y`` are the slide's µm per
level-0 pixel times ``d``, so the overlay covers the same physical extent as the slide and
lines up with it in QuPath or napari (``scale`` = the physical pixel size).  Reduced levels
(each half the previous) are written to SubIFDs, as in tifffile's pyramidal OME-TIFF recipe;
every level is rendered straight from the per-tile grid, one TIFF tile at a time, so memory
stays at one tile whatever the slide size.  Pixels where there is no tile are transparent
(alpha 0, unassociated alpha); tileuq's own reader composites them on white.

The colormap, limits, threshold and categories are recorded as JSON in the OME ``Description``
of the image and in a ``MapAnnotation`` (namespace ``tileuq.heatmap``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tileuq._io import atomic_path
from tileuq.errors import ResultsError
from tileuq.export._common import Geometry, geometry, prepare
from tileuq.export.heatmap import png_metadata
from tileuq.export.raster import HeatmapStyle, colorize, output_size, render, style_for, value_grid

if TYPE_CHECKING:
    from tileuq.engine.results import TileResults

__all__ = ["auto_tiff_downsample", "write_heatmap_tiff"]


def auto_tiff_downsample(geom: Geometry, px_per_tile: int = 16) -> int:
    """Largest power-of-two downsample that still draws a tile with ``>= px_per_tile`` px.

    Never coarser than needed for the whole overlay to keep at least 256 px on its long side.
    """
    d = 1
    long_side = max(geom.width, geom.height)
    while geom.stride / (2 * d) >= px_per_tile and long_side / (2 * d) >= 256:
        d *= 2
    return d


def _levels(geom: Geometry, d: float, tile: int) -> list[tuple[float, int, int]]:
    """``(downsample, width, height)`` per pyramid level, halving down to one tile."""
    out = [(d, *output_size(geom, d))]
    while max(out[-1][1], out[-1][2]) > tile:
        dk = out[-1][0] * 2
        out.append((dk, *output_size(geom, dk)))
    return out


def _tiles(
    geom: Geometry, grid: np.ndarray, style: HeatmapStyle, d: float, w: int, h: int, tile: int
) -> Iterator[np.ndarray]:
    for ty in range(0, h, tile):
        for tx in range(0, w, tile):
            window = (tx, ty, min(tile, w - tx), min(tile, h - ty))
            yield colorize(render(geom, grid, d, window), style)


def write_heatmap_tiff(
    results: TileResults | str | os.PathLike[str],
    path: str | os.PathLike[str],
    what: str | None = None,
    *,
    downsample: float | None = None,
    calibration: Any = None,
    tile: int = 256,
    plane: int | None = None,
    compression: str = "zlib",
) -> Path:
    """Write one overlay as a pyramidal OME-TIFF aligned with the slide (atomically).

    Parameters
    ----------
    results
        :class:`~tileuq.TileResults` or a results folder.
    path
        Output file (``.ome.tif`` by convention).
    what
        ``"class"``, ``"rejected"``, a numeric column, or ``None`` for the default score.
    downsample
        Level-0 pixels per base-level pixel (default :func:`auto_tiff_downsample`).
    calibration
        See :func:`tileuq.export.resolve_calibration`.
    tile
        TIFF tile side (a multiple of 16).
    plane
        Plane of a stack (default: the first).
    compression
        Lossless TIFF compression (``"zlib"`` default; colours are kept exactly).
    """
    import tifffile

    if tile <= 0 or tile % 16:
        raise ResultsError(f"tile: must be a positive multiple of 16, got {tile}")
    res, cal = prepare(results, calibration)
    style = style_for(res, what, cal)
    geom = geometry(res)
    d = float(downsample or auto_tiff_downsample(geom))
    if not d > 0:
        raise ResultsError(f"downsample: must be > 0, got {downsample}")
    w, h = output_size(geom, d)
    grid = value_grid(res, style, plane)
    info = png_metadata(res, style, d, (w, h))
    description = json.dumps(info)
    meta: dict[str, Any] = {
        "axes": "YXS",
        "SignificantBits": 8,
        "Name": f"tileuq {style.what}",
        "Description": description,
        "MapAnnotation": {
            "Namespace": "tileuq.heatmap",
            "what": style.what,
            "kind": style.kind,
            "colormap": style.cmap or "",
            "vmin": str(style.vmin),
            "vmax": str(style.vmax),
            "threshold": "" if style.threshold is None else str(style.threshold),
            "categories": json.dumps(style.categories),
            "downsample": str(d),
        },
    }
    levels = _levels(geom, d, tile)
    px = None
    if geom.mpp_xy is not None:
        px = (geom.mpp_xy[0] * d, geom.mpp_xy[1] * d)
        meta.update(
            PhysicalSizeX=px[0],
            PhysicalSizeXUnit="µm",
            PhysicalSizeY=px[1],
            PhysicalSizeYUnit="µm",
        )
    options: dict[str, Any] = {
        "photometric": "rgb",
        "extrasamples": ["unassalpha"],
        "tile": (tile, tile),
        "compression": compression,
        "dtype": np.uint8,
    }
    bigtiff = w * h * 4 * 4 // 3 > 2**31
    path = Path(path)
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=bigtiff, ome=True) as tif:
        for k, (dk, wk, hk) in enumerate(levels):
            level_opts = dict(options)
            if px is not None:
                scale = dk / d
                level_opts["resolution"] = (1e4 / (px[0] * scale), 1e4 / (px[1] * scale))
                level_opts["resolutionunit"] = "CENTIMETER"
            if k == 0:
                level_opts.update(subifds=len(levels) - 1, metadata=meta)
            else:
                level_opts.update(subfiletype=1, metadata=None)
            tif.write(_tiles(geom, grid, style, dk, wk, hk, tile), shape=(hk, wk, 4), **level_opts)
    return path
