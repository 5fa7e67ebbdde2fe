"""Pictures for reports: overlays blended on the slide thumbnail, and the score histogram.

Returns PNG bytes (PIL for the overlays, matplotlib's object API for the histogram, so it is
thread-safe and needs no display).
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tileuq.export._common import geometry
from tileuq.export.raster import HeatmapStyle, render_rgba

if TYPE_CHECKING:
    from tileuq.engine.results import TileResults
    from tileuq.uncertainty.calibration import Calibration

log = logging.getLogger(__name__)

__all__ = ["find_slide", "histogram_png", "jpeg_bytes", "overlay_jpeg", "png_bytes", "thumbnail"]


def find_slide(
    results: TileResults,
    slide: str | os.PathLike[str] | None = None,
    folder: str | os.PathLike[str] | None = None,
) -> Path | None:
    """Locate the slide file: ``slide`` if given, else the path recorded in ``run.json``.

    A relative recorded path is tried against the working directory, the results folder and
    its parents.
    """
    if slide is not None:
        return Path(slide)
    recorded = results.meta.get("slide", {}).get("path")
    if not recorded:
        return None
    p = Path(str(recorded))
    candidates = [p]
    if not p.is_absolute() and folder is not None:
        base = Path(folder).resolve()
        candidates += [base / p, *(parent / p for parent in base.parents)]
    return next((c for c in candidates if c.exists()), None)


def thumbnail(
    results: TileResults, slide_path: Path | None, max_size: int = 800
) -> tuple[np.ndarray, str]:
    """Return the slide's RGB thumbnail (or a white canvas of its shape) and a note when missing."""
    g = geometry(results)
    if slide_path is not None:
        try:
            from tileuq.slide import open_slide

            with open_slide(slide_path) as s:
                return s.thumbnail(max_size, plane=results.planes[0]), ""
        except Exception as exc:  # a report without the picture beats no report
            log.warning("cannot read the slide thumbnail from %s: %s", slide_path, exc)
            note = f"slide not readable at {slide_path} ({exc})"
    else:
        note = "slide file not found"
    scale = max_size / max(g.width, g.height)
    w, h = max(1, round(g.width * scale)), max(1, round(g.height * scale))
    return np.full((h, w, 3), 255, dtype=np.uint8), note


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an ``(h, w, 3|4)`` uint8 image as PNG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(rgb: np.ndarray, quality: int = 88) -> bytes:
    """Encode an ``(h, w, 3)`` uint8 image as JPEG (photographic panels stay small)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb[..., :3])).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def overlay_jpeg(
    results: TileResults,
    thumb: np.ndarray,
    style: HeatmapStyle,
    *,
    opacity: float = 0.55,
    dim: float = 0.0,
) -> bytes:
    """Blend an overlay over ``thumb`` (same extent as the slide) and encode it as JPEG.

    ``dim`` whitens the thumbnail first (0: unchanged, 1: white) so sparse overlays stand out.
    """
    g = geometry(results)
    th, tw = thumb.shape[:2]
    d = g.width / tw
    rgba = render_rgba(results, style, d, window=(0, 0, tw, th))
    base = thumb.astype(np.float64)
    base = base + (255.0 - base) * dim
    a = rgba[..., 3:4].astype(np.float64) / 255.0 * opacity
    out = base * (1 - a) + rgba[..., :3].astype(np.float64) * a
    return jpeg_bytes(np.clip(np.round(out), 0, 255).astype(np.uint8))


def histogram_png(
    results: TileResults,
    score: str,
    calibration: Calibration | None = None,
    *,
    width: float = 6.0,
    height: float = 3.2,
) -> bytes:
    """Histogram of ``score`` on the slide, with the calibration set's and the threshold."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    v = results.table[score].to_numpy(np.float64)
    v = v[np.isfinite(v)]
    ref = np.asarray(
        [] if calibration is None else calibration.reference.get(score, []), dtype=np.float64
    )
    ref = ref[np.isfinite(ref)]
    both = np.concatenate([v, ref])
    if both.size:
        lo, hi = float(both.min()), float(both.max())
        bins = np.linspace(lo, hi if hi > lo else lo + 1e-9, 41).tolist()
        ax.hist(v, bins=bins, density=True, alpha=0.65, color="#3b528b", label="this slide")
        if ref.size:
            ax.hist(
                ref,
                bins=bins,
                density=True,
                histtype="step",
                linewidth=1.8,
                color="#222222",
                label="calibration set",
            )
    if calibration is not None and score in calibration.thresholds:
        t = calibration.thresholds[score]
        ax.axvline(t, color="#e7298a", linewidth=2, label=f"threshold {t:.4g}")
    ax.set_xlabel(f"{score} (larger = less trustworthy)")
    ax.set_ylabel("density")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
