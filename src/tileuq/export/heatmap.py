"""Heatmap PNGs: one overlay at a chosen downsample, with its legend or colorbar.

An overlay is a score, a probability, the class map or the rejected regions.

The PNG's left ``ceil(W / d) x ceil(H / d)`` pixels are the overlay, aligned with the slide as
described in :mod:`tileuq.export.raster` (transparent where there is no tile); the legend sits
to the right of it on white.  The PNG's ``tileuq`` text chunk holds the style (colormap,
limits, threshold, categories), the downsample and the overlay's size as JSON, so the image can
be placed over the slide again (``scale = downsample`` level-0 px per pixel).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tileuq._io import atomic_path
from tileuq.export._common import geometry, prepare
from tileuq.export.raster import (
    HeatmapStyle,
    auto_downsample,
    output_size,
    render_rgba,
    style_for,
)

if TYPE_CHECKING:
    from tileuq.engine.results import TileResults

__all__ = ["legend_image", "png_metadata", "write_heatmap_png"]

LEGEND_WIDTH = 260


def legend_image(style: HeatmapStyle, height: int = 320, width: int = LEGEND_WIDTH) -> np.ndarray:
    """Render the legend (categorical) or colorbar (continuous) as ``(h, w, 4)`` uint8 RGBA."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="white")
    canvas = FigureCanvasAgg(fig)
    if style.kind == "categorical":
        ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
        ax.set_axis_off()
        handles = [Patch(facecolor=c, edgecolor="black", label=n) for n, c in style.categories]
        ax.legend(handles=handles, loc="upper left", title=style.label, fontsize=8, frameon=False)
    else:
        cax = fig.add_axes((0.12, 0.06, 0.12, 0.82))
        mappable = ScalarMappable(Normalize(style.vmin, style.vmax), style.cmap or "inferno")
        cb = fig.colorbar(mappable, cax=cax)
        cb.ax.tick_params(labelsize=8)
        fig.text(0.02, 0.94, style.label, fontsize=8, ha="left", va="bottom")
        if style.threshold is not None and np.isfinite(style.threshold):
            cb.ax.axhline(style.threshold, color="#00e5ff", linewidth=2)
            cb.ax.text(
                1.9,
                style.threshold,
                f"threshold {style.threshold:.3g}",
                transform=cb.ax.get_yaxis_transform(),
                fontsize=8,
                va="center",
                color="#006d7a",
            )
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def png_metadata(
    results: TileResults, style: HeatmapStyle, downsample: float, size: tuple[int, int]
) -> dict[str, Any]:
    """Return what the ``tileuq`` PNG text chunk (and the TIFF description) records."""
    g = geometry(results)
    return {
        "format": "tileuq.heatmap/1",
        "slide": results.meta.get("slide", {}).get("name"),
        "slide_dimensions": [g.width, g.height],
        "slide_mpp": None if g.mpp_xy is None else list(g.mpp_xy),
        "downsample": float(downsample),
        "overlay_size": list(size),
        "style": style.to_dict(),
    }


def write_heatmap_png(
    results: TileResults | str | os.PathLike[str],
    path: str | os.PathLike[str],
    what: str | None = None,
    *,
    downsample: float | None = None,
    calibration: Any = None,
    legend: bool = True,
    plane: int | None = None,
) -> Path:
    """Write one overlay as a PNG at ``downsample`` with its legend (atomically).

    Parameters
    ----------
    results
        :class:`~tileuq.TileResults` or a results folder.
    path
        Output ``.png``.
    what
        ``"class"``, ``"rejected"``, a numeric column (score, ``prob_<class>``, ...) or ``None``
        for the default score.
    downsample
        Level-0 pixels per image pixel (default: the image fits in 2048 px).
    calibration
        See :func:`tileuq.export.resolve_calibration`; marks the threshold and enables
        ``"rejected"``.
    legend
        Append the legend to the right of the overlay.
    plane
        Plane of a stack (default: the first).
    """
    from PIL import Image, PngImagePlugin

    res, cal = prepare(results, calibration)
    style = style_for(res, what, cal)
    g = geometry(res)
    d = float(downsample or auto_downsample(g))
    w, h = output_size(g, d)
    overlay = render_rgba(res, style, d, plane=plane)
    canvas = overlay
    if legend:
        leg = legend_image(style, height=max(240, min(h, 480)))
        lh, lw = leg.shape[:2]
        canvas = np.zeros((max(h, lh), w + lw, 4), dtype=np.uint8)
        canvas[:h, :w] = overlay
        canvas[:lh, w:] = leg
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "tileuq")
    info.add_text("tileuq", json.dumps(png_metadata(res, style, d, (w, h))))
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(canvas, "RGBA").save(tmp, format="PNG", pnginfo=info, optimize=False)
    return path
