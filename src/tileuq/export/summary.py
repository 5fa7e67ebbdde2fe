"""The numbers of a slide report: class areas, rejected tissue, shift alarm, provenance.

Areas: a tile stands for ``tissue fraction x cell area`` of tissue, where a cell is one grid
stride squared (the tile itself when tiles do not overlap) — the same tissue area the run
summary reports.  Fractions ("of tissue") are weighted the same way, so they are defined even
when the slide has no physical pixel size.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from tileuq.errors import TileuqError
from tileuq.export._common import (
    REASONS,
    class_colors,
    geometry,
    is_calibrated,
    prepare,
    slide_name,
    tile_areas_mm2,
)

if TYPE_CHECKING:
    from tileuq.engine.results import TileResults
    from tileuq.uncertainty.calibration import Calibration

__all__ = ["slide_summary", "summarize"]


def _area(values: np.ndarray | None, sel: np.ndarray) -> float | None:
    return None if values is None else float(values[sel].sum())


def _frac(weights: np.ndarray, sel: np.ndarray) -> float:
    total = float(weights.sum())
    return float(weights[sel].sum()) / total if total > 0 else 0.0


def _shift(results: TileResults, cal: Calibration | None) -> dict[str, Any]:
    if cal is None:
        return {"available": False, "why": "no calibration: the shift alarm needs one"}
    if not len(results.table):
        return {"available": False, "why": "the slide has no tissue tiles"}
    from tileuq.uncertainty.shift import shift_test

    try:
        report = shift_test(results, cal)
    except (TileuqError, ValueError, KeyError) as exc:
        return {"available": False, "why": str(exc)}
    return {"available": True, **report.to_dict()}


def _provenance(results: TileResults, cal: Calibration | None) -> dict[str, Any]:
    meta = results.meta
    slide = meta.get("slide", {})
    model = meta.get("model", {})
    timings = meta.get("timings", {})
    out: dict[str, Any] = {
        "slide": {
            k: slide.get(k)
            for k in ("name", "path", "header_hash", "vendor", "dimensions", "mpp")
            if k in slide
        },
        "model": {
            k: model.get(k)
            for k in ("id", "hash", "method", "classes", "tile_px", "mpp", "score_names")
            if k in model
        },
        "tiling": {
            k: meta.get("spec", {}).get(k)
            for k in ("tile_px", "mpp", "overlap", "min_tissue", "tile_size_level0", "grid_shape")
        },
        "run": {
            "started": timings.get("started"),
            "finished": timings.get("finished"),
            "device": meta.get("device", {}).get("name"),
            "tileuq": meta.get("versions", {}).get("tileuq"),
            "status": meta.get("status"),
        },
        "calibration": None,
    }
    if cal is not None:
        out["calibration"] = {
            "rules": [r.to_dict() for r in cal.rules],
            "target": cal.target,
            "delta": cal.delta,
            "method": cal.method,
            "n": cal.n,
            "coverage": cal.coverage,
            "risk": cal.risk,
            "risk_bound": cal.risk_bound,
            "model_hash": cal.model_hash,
            "created": cal.created,
            "version": cal.version,
            "guarantee": cal.guarantee,
            "description": cal.describe(),
        }
    return out


def summarize(results: TileResults, cal: Calibration | None) -> dict[str, Any]:
    """Summary of results that already carry the calibration columns (see :func:`prepare`)."""
    t = results.table
    n = len(t)
    areas = tile_areas_mm2(results)
    weights = t["tissue"].to_numpy(np.float64)
    pred = t["pred_index"].to_numpy(np.int64)
    calibrated = is_calibrated(results)
    rejected = t["rejected"].to_numpy(bool) if calibrated else np.zeros(n, bool)
    reason = t["reason"].astype(str).to_numpy() if calibrated else np.full(n, "")
    classes = []
    for k, (name, color) in enumerate(zip(results.classes, class_colors(results), strict=True)):
        sel = pred == k
        classes.append(
            {
                "name": name,
                "color": color,
                "tiles": int(sel.sum()),
                "area_mm2": _area(areas, sel),
                "fraction": _frac(weights, sel),
                "accepted_area_mm2": _area(areas, sel & ~rejected) if calibrated else None,
            }
        )
    reasons = {
        r: {
            "tiles": int((reason == r).sum()),
            "fraction": _frac(weights, reason == r),
            "area_mm2": _area(areas, reason == r),
        }
        for r in (*REASONS, *sorted({str(x) for x in reason} - {"", *REASONS}))
    }
    g = geometry(results)
    return {
        "name": slide_name(results),
        "status": results.status,
        "n_tiles": n,
        "tissue_area_mm2": None if areas is None else float(areas.sum()),
        "mpp": g.mpp,
        "classes": classes,
        "calibrated": calibrated,
        "rejection": {
            "tiles": int(rejected.sum()),
            "fraction": _frac(weights, rejected) if calibrated else None,
            "area_mm2": _area(areas, rejected) if calibrated else None,
            "reasons": reasons if calibrated else {},
        },
        "shift": _shift(results, cal),
        "provenance": _provenance(results, cal),
    }


def slide_summary(
    results: TileResults | str | os.PathLike[str], calibration: Any = None
) -> dict[str, Any]:
    """Numbers of the slide report as a JSON-ready dictionary.

    Parameters
    ----------
    results
        :class:`~tileuq.TileResults` or a results folder.
    calibration
        See :func:`tileuq.export.resolve_calibration`.

    Returns
    -------
    dict
        ``name, status, n_tiles, tissue_area_mm2, mpp``; ``classes`` (per class: ``tiles``,
        ``area_mm2``, ``fraction`` of tissue, ``accepted_area_mm2``); ``rejection``
        (``fraction`` of tissue, ``area_mm2``, per-reason ``reasons``); ``shift`` (the
        :func:`~tileuq.uncertainty.shift.shift_test` report, or ``available: False`` with
        ``why``); ``provenance`` (slide, model, tiling, run, calibration).
    """
    res, cal = prepare(results, calibration)
    return summarize(res, cal)
