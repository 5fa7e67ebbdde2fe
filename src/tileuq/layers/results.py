"""Results → napari LayerDataTuples: class map, uncertainty heatmaps, rejected regions, flagged.

Everything here is numpy/pandas: napari is never imported, so the layers can be built and
tested without a display.  Every overlay is a small per-tile grid (one pixel per tile) scaled
onto the slide — never a full-resolution mask.  Placement conventions (pixel centres, µm vs
level-0 px, overlapping grids, stacks): :mod:`tileuq.layers.geometry`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tileuq.errors import ResultsError
from tileuq.layers.geometry import TileGeometry
from tileuq.layers.rejection import rejected_layer
from tileuq.layers.review_layers import flagged_layer
from tileuq.review import primary_score, review_queue

__all__ = ["LayerDataTuple", "class_layer", "from_results", "heatmap_layer"]

LayerDataTuple = tuple[Any, dict[str, Any], str]

HEATMAP_COLORMAP = "magma"
#: tiles shown in the flagged layer when nothing is rejected (no calibration)
TOP_UNCALIBRATED = 200
#: most flagged tiles shown as points (the rejected layer shows them all; napari's points
#: layer grows slow past a few thousand markers)
MAX_FLAGGED = 5000


def _meta(kind: str, geometry: TileGeometry, base: Mapping[str, Any], **extra: Any) -> dict:
    return {"tileuq": {"kind": kind, "geometry": geometry.to_dict(), **dict(base), **extra}}


def class_layer(
    results: Any,
    geometry: TileGeometry,
    *,
    name: str = "classes",
    metadata: Mapping[str, Any] | None = None,
) -> LayerDataTuple:
    """Labels-layer tuple of the predicted class (label = class index + 1, 0 = no tile)."""
    classes = list(results.classes)
    colors = list(results.colors or [])
    table = results.table
    dtype = np.uint8 if len(classes) < 255 else np.uint16
    grid = geometry.empty(dtype)
    grid[geometry.cells(table)] = table["pred_index"].to_numpy(np.int64) + 1
    cmap: dict[Any, str] = {0: "transparent", None: "transparent"}
    for i, _ in enumerate(classes):
        cmap[i + 1] = colors[i] if i < len(colors) else "#cccccc"
    features = pd.DataFrame(
        {"index": np.arange(len(classes) + 1), "class": ["(no tile)", *classes]}
    )
    kwargs = {
        "name": name,
        "scale": geometry.grid_scale,
        "translate": geometry.grid_translate,
        "units": geometry.layer_units,
        "colormap": cmap,
        "features": features,
        "opacity": 0.45,
        "metadata": _meta("classes", geometry, metadata or {}, classes=classes, colors=colors),
    }
    return grid, kwargs, "labels"


def _contrast(values: np.ndarray, threshold: float | None, reference: Any) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    if reference is not None and len(reference):
        ref = np.asarray(reference, dtype=np.float64)
        v = np.concatenate([v, ref[np.isfinite(ref)]])
    if v.size == 0:
        lo, hi = 0.0, 1.0
    else:
        lo, hi = (float(q) for q in np.percentile(v, [1.0, 99.0]))
    if threshold is not None and np.isfinite(threshold):
        lo, hi = min(lo, threshold), max(hi, threshold)
    if not hi > lo:
        hi = lo + max(abs(lo) * 1e-3, 1e-6)
    return lo, hi


def heatmap_layer(
    results: Any,
    geometry: TileGeometry,
    score: str,
    *,
    calibration: Any = None,
    name: str | None = None,
    visible: bool = True,
    metadata: Mapping[str, Any] | None = None,
) -> LayerDataTuple:
    """Image-layer tuple of one score on the tile grid (NaN, drawn transparent, where no tile).

    Contrast limits: the 1st and 99th percentiles of the slide's scores (and of the
    calibration's reference scores for this score), widened to include the calibration
    threshold, which ``metadata["tileuq"]["threshold"]`` records with its position in the
    colour range (``threshold_position``, 0–1).
    """
    table = results.table
    if score not in table.columns:
        raise ResultsError(f"score {score!r} is not a column of the results table")
    grid = geometry.empty(np.float32, np.nan)
    values = table[score].to_numpy(dtype=np.float64, na_value=np.nan)
    grid[geometry.cells(table)] = values
    threshold = reason = None
    reference = None
    if calibration is not None and score in calibration.thresholds:
        threshold = float(calibration.thresholds[score])
        reason = calibration.reason.get(score)
        reference = calibration.reference.get(score)
    lo, hi = _contrast(values, threshold, reference)
    extra: dict[str, Any] = {"score": score, "orientation": "larger = less trustworthy"}
    if threshold is not None:
        extra.update(
            threshold=threshold,
            threshold_position=float(np.clip((threshold - lo) / (hi - lo), 0.0, 1.0)),
            reason=reason,
        )
    kwargs = {
        "name": name or f"uncertainty: {score}",
        "scale": geometry.grid_scale,
        "translate": geometry.grid_translate,
        "units": geometry.layer_units,
        "colormap": HEATMAP_COLORMAP,
        "contrast_limits": (lo, hi),
        "interpolation2d": "nearest",
        "opacity": 0.6,
        "visible": visible,
        "metadata": _meta("heatmap", geometry, metadata or {}, **extra),
    }
    return grid, kwargs, "image"


def from_results(
    results: Any,
    calibration: Any = None,
    *,
    scores: Sequence[str] | None = None,
    slide_scale: Sequence[float] | None = None,
    slide_translate: Sequence[float] | None = None,
    prefix: str = "",
    order: str = "score",
    source: str | None = None,
    top_uncalibrated: int = TOP_UNCALIBRATED,
    max_flagged: int | None = MAX_FLAGGED,
) -> list[LayerDataTuple]:
    """Build the napari layers of a slide's results.

    Parameters
    ----------
    results
        :class:`~tileuq.TileResults`.
    calibration
        A :class:`~tileuq.uncertainty.Calibration` (its rules decide the rejected regions and
        mark the thresholds).  ``None``: use the table's ``rejected``/``reason`` columns when
        present.
    scores
        Scores to draw as heatmaps (default: every score of the model).  They start hidden
        (the class map, rejected regions and flagged tiles are the first view); the heatmap of
        the primary score (the calibration's, else the model's most informative) comes first.
    slide_scale, slide_translate
        The slide image layer's ``scale``/``translate`` when they differ from the convention
        (``scale`` = mpp in µm, ``translate`` = 0).
    prefix
        Prepended to every layer name (e.g. ``"case12: "``) when several slides are open.
    order
        Queue order of the flagged tiles (:func:`tileuq.review.review_queue`).
    source
        Results folder, stored in the layers' metadata (the review widget and writer use it).
    top_uncalibrated
        With no rejection information, the flagged layer holds this many most uncertain tiles.
    max_flagged
        At most this many flagged tiles (the first in queue order) become points; the
        metadata records how many were flagged in all (``n_flagged``).  ``None``: all.

    Returns
    -------
    list of (data, kwargs, layer_type)
        In drawing order: class map (labels), one heatmap per score (image), rejected regions
        (labels: 1 ambiguous, 2 unfamiliar; only with rejection information) and flagged tiles
        (points, features = probabilities, prediction, scores, reason, queue ``rank``).

    Examples
    --------
    >>> layers = from_results(TileResults.load("out/CMU-1"), Calibration.load("cal.json"))
    ... # doctest: +SKIP
    >>> for data, kwargs, kind in layers:  # doctest: +SKIP
    ...     viewer._add_layer_from_data(data, kwargs, kind)
    """
    geometry = TileGeometry.from_results(
        results, slide_scale=slide_scale, slide_translate=slide_translate
    )
    table = results.table
    base: dict[str, Any] = {
        "slide": results.meta.get("slide", {}).get("name"),
        "model_hash": results.meta.get("model", {}).get("hash"),
        "classes": list(results.classes),
        "source": None if source is None else str(source),
        "units": geometry.units,
    }
    names = list(results.score_names) if scores is None else list(scores)
    primary = primary_score(results, calibration)
    names.sort(key=lambda s: s != primary)  # stable: the primary score's heatmap first
    layers: list[LayerDataTuple] = [
        class_layer(results, geometry, name=f"{prefix}classes", metadata=base)
    ]
    for s in names:
        layers.append(
            heatmap_layer(
                results,
                geometry,
                s,
                calibration=calibration,
                name=f"{prefix}uncertainty: {s}",
                visible=False,
                metadata=base,
            )
        )
    rejected = reason = None
    if calibration is not None:
        applied = calibration.apply(results)
        t = getattr(applied, "table", applied)
        rejected, reason = t["rejected"].to_numpy(bool), t["reason"].to_numpy(object)
    elif {"rejected", "reason"} <= set(table.columns):
        rejected, reason = table["rejected"].to_numpy(bool), table["reason"].to_numpy(object)
    cal_meta = None if calibration is None else calibration.summary()
    if reason is not None:
        layers.append(
            rejected_layer(
                table,
                reason,
                geometry,
                name=f"{prefix}rejected",
                metadata={**base, "calibration": cal_meta},
            )
        )
    queue = review_queue(
        table,
        score=primary,
        rejected=rejected,
        reason=reason,
        order=order,
        limit=None if rejected is not None else top_uncalibrated,
    )
    n_flagged = len(queue)
    if max_flagged is not None:
        queue = queue[:max_flagged]
    criterion = (
        f"rejected, ordered by {order} ({primary})"
        if rejected is not None
        else f"top {min(top_uncalibrated, len(table))} by {primary} (no calibration)"
    )
    layers.append(
        flagged_layer(
            table,
            queue,
            geometry,
            classes=results.classes,
            score_names=results.score_names,
            reason=reason,
            name=f"{prefix}flagged",
            metadata={
                **base,
                "score": primary,
                "order": order,
                "criterion": criterion,
                "n_flagged": n_flagged,
                "shown": len(queue),
            },
        )
    )
    return layers
