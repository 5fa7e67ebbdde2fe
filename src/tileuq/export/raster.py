"""Per-tile values rendered as images aligned with the slide, at any downsample.

An image at downsample ``d`` has ``ceil(W / d) x ceil(H / d)`` pixels for a slide of level-0
size ``W x H``; its pixel ``(i, j)`` covers level-0 ``[j d, (j + 1) d) x [i d, (i + 1) d)``
and shows the value of the grid cell under the pixel's centre.  Cells are one grid stride wide
and centred on their tile (the tile itself when tiles do not overlap).  Nothing larger than
the requested window is ever built, so any part of a huge overlay can be rendered on its own.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tileuq.errors import ResultsError
from tileuq.export._common import (
    REASON_COLORS,
    REASONS,
    Geometry,
    class_colors,
    geometry,
    hex_to_rgb,
    is_calibrated,
)

if TYPE_CHECKING:
    from tileuq.engine.results import TileResults
    from tileuq.uncertainty.calibration import Calibration

__all__ = ["HeatmapStyle", "auto_downsample", "colorize", "output_size", "render", "style_for"]

CLASS_MAP = ("class", "prediction", "classes")
REJECTED_MAP = ("rejected", "reason")


@dataclass(frozen=True)
class HeatmapStyle:
    """How one overlay is coloured.

    Attributes
    ----------
    what
        ``"class"``, ``"rejected"`` or a numeric column (a score, ``prob_<class>``, ...).
    label
        Legend title.
    kind
        ``"categorical"`` (integer codes into :attr:`categories`) or ``"continuous"``.
    cmap
        Matplotlib colormap name (continuous).
    vmin, vmax
        Colour limits (continuous).
    threshold
        Calibrated threshold of this score (marked on the legend), if any.
    categories
        ``(name, "#rrggbb")`` per code (categorical).
    """

    what: str
    label: str
    kind: str
    cmap: str | None = None
    vmin: float = 0.0
    vmax: float = 1.0
    threshold: float | None = None
    categories: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (for image metadata)."""
        d = asdict(self)
        d["categories"] = [list(c) for c in self.categories]
        return d

    def lut(self) -> np.ndarray:
        """``(K, 4)`` uint8 RGBA lookup table: 256 colours, or one per category."""
        if self.kind == "categorical":
            rgb = [hex_to_rgb(c) for _, c in self.categories] or [(0, 0, 0)]
            return np.array([[*c, 255] for c in rgb], dtype=np.uint8)
        from matplotlib import colormaps

        table = colormaps[self.cmap or "inferno"](np.linspace(0.0, 1.0, 256))
        return np.round(table * 255).astype(np.uint8)


def default_score(results: TileResults) -> str | None:
    """Score drawn when none is named (the same choice as the run's ``overview.png``)."""
    from tileuq.engine.overview import heatmap_score

    return heatmap_score(results)


def style_for(
    results: TileResults, what: str | None = None, calibration: Calibration | None = None
) -> HeatmapStyle:
    """Choose colours and limits for an overlay of ``what``.

    Parameters
    ----------
    results
        The slide's results (with ``rejected``/``reason`` for ``what="rejected"``).
    what
        ``"class"``, ``"rejected"``, a numeric column, or ``None`` for the default score.
    calibration
        Used to mark the threshold of ``what`` when it is one of the calibrated scores.
    """
    what = what or default_score(results) or "class"
    if what in CLASS_MAP:
        cats = tuple(zip(results.classes, class_colors(results), strict=True))
        return HeatmapStyle("class", "predicted class", "categorical", categories=cats)
    if what in REJECTED_MAP:
        if not is_calibrated(results):
            raise ResultsError(
                "rejected regions need a calibration (pass --calibration / calibration=)"
            )
        extra = sorted(set(results.table["reason"].astype(str)) - {"", *REASONS})
        cats = tuple((f"rejected: {r}", REASON_COLORS.get(r, "#000000")) for r in REASONS)
        cats += tuple((f"rejected: {r}", "#000000") for r in extra)
        return HeatmapStyle("rejected", "rejected tiles", "categorical", categories=cats)
    t = results.table
    if what not in t.columns or not _numeric(t[what]):
        numeric = [c for c in t.columns if _numeric(t[c])]
        raise ResultsError(
            f"{what!r}: not a numeric results column; choose 'class', 'rejected' or one of "
            f"{', '.join(numeric)}"
        )
    threshold = None if calibration is None else calibration.thresholds.get(what)
    if what.startswith("prob_") or what in ("confidence", "tissue"):
        return HeatmapStyle(what, what, "continuous", "viridis", 0.0, 1.0, threshold)
    v = t[what].to_numpy(np.float64)
    v = v[np.isfinite(v)]
    lo, hi = np.percentile(v, [1, 99]) if v.size else (0.0, 1.0)
    if threshold is not None and np.isfinite(threshold):
        lo, hi = min(lo, threshold), max(hi, threshold)
    hi = max(float(hi), float(lo) + 1e-12)
    label = f"{what} (larger = less trustworthy)"
    return HeatmapStyle(what, label, "continuous", "inferno", float(lo), hi, threshold)


def _numeric(col: Any) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(col)) and not pd.api.types.is_bool_dtype(col)


def value_grid(results: TileResults, style: HeatmapStyle, plane: int | None = None) -> np.ndarray:
    """``(n_rows, n_cols)`` float grid of what ``style`` draws (codes or values; NaN: none)."""
    plane = results.planes[0] if plane is None else plane
    if style.what == "class":
        return results.grid("pred_index", plane=plane)
    if style.what == "rejected":
        names = [n.removeprefix("rejected: ") for n, _ in style.categories]
        reason = results.table["reason"].astype(str).to_numpy()
        code = np.full(len(reason), np.nan)
        for k, r in enumerate(names):
            code[reason == r] = k
        n_rows, n_cols = results.grid_shape
        out = np.full((n_rows, n_cols), np.nan)
        sel = results.table["plane"].to_numpy() == plane
        out[results.table["row"].to_numpy()[sel], results.table["col"].to_numpy()[sel]] = code[sel]
        return out
    return results.grid(style.what, plane=plane)


def output_size(geom: Geometry, downsample: float) -> tuple[int, int]:
    """``(width, height)`` of the whole image at ``downsample``."""
    return math.ceil(geom.width / downsample), math.ceil(geom.height / downsample)


def auto_downsample(geom: Geometry, max_side: int = 2048) -> int:
    """Smallest integer downsample whose image fits in ``max_side`` pixels."""
    return max(1, math.ceil(max(geom.width, geom.height) / max_side))


def _axis(
    start: int, n: int, d: float, origin: float, pad: float, stride: int, cells: int, limit: int
) -> tuple[np.ndarray, np.ndarray]:
    """Grid index of each output pixel along one axis, and whether it lies on a cell."""
    u = (start + np.arange(n) + 0.5) * d
    idx = np.floor((u - origin - pad) / stride).astype(np.int64)
    ok = (idx >= 0) & (idx < cells) & (u - origin - pad >= 0) & (u < limit)
    return idx, ok


def render(
    geom: Geometry,
    grid: np.ndarray,
    downsample: float,
    window: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """Render a per-tile grid at ``downsample`` (see the module docstring).

    Parameters
    ----------
    geom
        The results' :class:`~tileuq.export._common.Geometry`.
    grid
        ``(n_rows, n_cols)`` values (NaN: no tile).
    downsample
        Level-0 pixels per output pixel (> 0).
    window
        ``(x, y, w, h)`` in output pixels; default the whole image.

    Returns
    -------
    numpy.ndarray
        ``(h, w)`` float64, NaN where no tile.
    """
    if not downsample > 0:
        raise ResultsError(f"downsample: must be > 0, got {downsample}")
    if window is None:
        w, h = output_size(geom, downsample)
        window = (0, 0, w, h)
    x, y, w, h = window
    n_rows, n_cols = grid.shape
    cx, okx = _axis(x, w, downsample, geom.origin[0], geom.pad, geom.stride, n_cols, geom.width)
    cy, oky = _axis(y, h, downsample, geom.origin[1], geom.pad, geom.stride, n_rows, geom.height)
    out = np.full((h, w), np.nan)
    if okx.any() and oky.any():
        out[np.ix_(oky, okx)] = grid[np.ix_(cy[oky], cx[okx])]
    return out


def colorize(values: np.ndarray, style: HeatmapStyle, alpha: int = 255) -> np.ndarray:
    """Map rendered values to ``(..., 4)`` uint8 RGBA (transparent where NaN)."""
    lut = style.lut()
    finite = np.isfinite(values)
    if style.kind == "categorical":
        idx = np.clip(np.where(finite, values, 0).astype(np.int64), 0, len(lut) - 1)
    else:
        span = style.vmax - style.vmin
        norm = np.clip((np.where(finite, values, style.vmin) - style.vmin) / span, 0.0, 1.0)
        idx = np.round(norm * (len(lut) - 1)).astype(np.int64)
    out = lut[idx]
    out[..., 3] = np.where(finite, alpha, 0)
    return out


def render_rgba(
    results: TileResults,
    style: HeatmapStyle,
    downsample: float,
    *,
    window: tuple[int, int, int, int] | None = None,
    plane: int | None = None,
    alpha: int = 255,
) -> np.ndarray:
    """Render and colour an overlay of ``results`` in one call (``(h, w, 4)`` uint8)."""
    grid = value_grid(results, style, plane)
    return colorize(render(geometry(results), grid, downsample, window), style, alpha)
