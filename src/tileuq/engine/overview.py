"""Overview picture of a run: predicted classes and an uncertainty heatmap over a thumbnail.

Pure numpy + matplotlib (the ``Figure`` API without pyplot state, so it is thread-safe); no
napari.  Used by ``tileuq run`` to write ``overview.png`` beside each slide's table.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tileuq._io import atomic_path

if TYPE_CHECKING:
    from tileuq.engine.results import TileResults


def _calibration_rules(results: TileResults) -> list[dict]:
    cal = results.meta.get("model", {}).get("calibration")
    rules = cal.get("rules") if isinstance(cal, dict) else None
    return [r for r in rules or [] if isinstance(r, dict) and "score" in r]


def heatmap_score(results: TileResults) -> str | None:
    """Return the score drawn in the uncertainty panel (``None`` when the model gives none).

    The primary score of the calibration the model carries (its first rule, the one holding the
    coverage or risk target, as :attr:`tileuq.Calibration.score`); without one, the choice of
    :func:`tileuq.review.primary_score` (a carried feature distance first).
    """
    from tileuq.review import primary_score

    rules = _calibration_rules(results)
    if rules and rules[0]["score"] in results.score_names:
        return str(rules[0]["score"])
    return primary_score(results) if results.score_names else None


def calibrated_threshold(results: TileResults, score: str) -> float | None:
    """Threshold the model's calibration puts on ``score`` (``None`` when it has none)."""
    for r in _calibration_rules(results):
        if r["score"] == score and r.get("threshold") is not None:
            return float(r["threshold"])
    return None


def class_rgba(results: TileResults, alpha: float = 0.45) -> np.ndarray:
    """``(n_rows, n_cols, 4)`` float RGBA image of the predicted classes (transparent: no tile)."""
    from matplotlib.colors import to_rgba

    codes = results.grid("pred_index", plane=results.planes[0])
    colors = results.colors or _default_colors(len(results.classes))
    lut = np.array([to_rgba(c, alpha) for c in colors], dtype=np.float64)
    out = np.zeros((*codes.shape, 4))
    ok = np.isfinite(codes)
    out[ok] = lut[codes[ok].astype(np.int64)]
    return out


def _default_colors(n: int) -> list[str]:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["tab10"]
    return [to_hex(cmap(i % 10)) for i in range(n)]


def _extent(results: TileResults, scale: float) -> tuple[float, float, float, float]:
    """Imshow extent (left, right, bottom, top) of the tile lattice in thumbnail pixels."""
    n_rows, n_cols = results.grid_shape
    stride = float(results.meta["spec"]["stride_level0"])
    size = float(results.meta["spec"]["tile_size_level0"])
    x0, y0 = results.origin
    # cells are drawn one stride wide, centred on the tile (equal to the tile without overlap)
    pad = (size - stride) / 2
    left, top = (x0 + pad) * scale, (y0 + pad) * scale
    return left, left + n_cols * stride * scale, top + n_rows * stride * scale, top


def draw_overview(
    results: TileResults,
    thumbnail: np.ndarray,
    path: str | os.PathLike[str],
    *,
    score: str | None = None,
    dpi: int = 100,
) -> Path:
    """Write a two-panel PNG: classes over the thumbnail, and the uncertainty heatmap.

    Parameters
    ----------
    results
        The run's results.
    thumbnail
        RGB uint8 overview of the whole slide (any size; e.g. ``slide.thumbnail(1024)``).
    path
        Output PNG (written atomically).
    score
        Score of the heatmap (default: :func:`heatmap_score`).

    Returns
    -------
    pathlib.Path
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    w0 = float(results.meta["slide"]["dimensions"][0])
    th, tw = thumbnail.shape[:2]
    scale = tw / w0
    score = score or heatmap_score(results)
    ext = _extent(results, scale)
    fig_w = 2 * tw / dpi + 1.5
    fig = Figure(figsize=(fig_w, th / dpi + 1.2), dpi=dpi)
    axes = fig.subplots(1, 2)
    name = results.meta["slide"].get("name", "")
    for ax in axes:
        ax.imshow(thumbnail, interpolation="lanczos")
        ax.set_axis_off()
    if len(results):
        axes[0].imshow(class_rgba(results), extent=ext, interpolation="nearest")
    colors = results.colors or _default_colors(len(results.classes))
    counts = results.table["prediction"].value_counts()
    handles = [
        Patch(color=c, label=f"{k} ({int(counts.get(k, 0))})")
        for k, c in zip(results.classes, colors, strict=False)
    ]
    axes[0].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
    axes[0].set_title(f"{name}: predicted class ({len(results)} tiles)", fontsize=9)
    title = f"uncertainty: {score or 'n/a'}"
    if score is not None and len(results):
        heat = results.grid(score, plane=results.planes[0])
        finite = heat[np.isfinite(heat)]
        lo, hi = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
        threshold = calibrated_threshold(results, score)
        if threshold is not None:  # keep the calibrated cut inside the colour range
            lo, hi = min(lo, threshold), max(hi, threshold)
            above = int((results.table[score].to_numpy() > threshold).sum())
            title += f" (calibrated cut {threshold:.4g}: {above} of {len(results)} tiles above)"
        im = axes[1].imshow(
            np.ma.masked_invalid(heat),
            extent=ext,
            cmap="inferno",
            alpha=0.6,
            vmin=lo,
            vmax=max(hi, lo + 1e-12),
            interpolation="nearest",
        )
        bar = fig.colorbar(
            im, ax=axes[1], fraction=0.04, pad=0.01, label=f"{score} (larger = less sure)"
        )
        if threshold is not None:
            bar.ax.axhline(threshold, color="#00e5ff", linewidth=2)
    axes[1].set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
