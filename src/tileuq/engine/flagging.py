"""Fraction of tiles a model's calibration flags (for run summaries)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tileuq.engine.results import TileResults

log = logging.getLogger(__name__)


def flagged_fraction(results: TileResults) -> float | None:
    """Fraction of tiles rejected by the calibration the model carries, or ``None``.

    Uses :class:`tileuq.uncertainty.Calibration` when the model's manifest holds one (and the
    results already carry a ``rejected`` column when calibrated elsewhere).  A plain
    ``{"thresholds": {score: t}}`` mapping is also understood: a tile is flagged when any of
    its scores exceeds its threshold (scores are larger = less trustworthy).
    """
    table = results.table
    if "rejected" in table.columns:
        return float(table["rejected"].mean()) if len(table) else 0.0
    cal = results.meta.get("model", {}).get("calibration")
    if not cal:
        return None
    applied = _apply_calibration(results, cal)
    if applied is not None:
        return applied
    thresholds = cal.get("thresholds") if isinstance(cal, dict) else None
    if not isinstance(thresholds, dict):
        return None
    usable = {s: float(t) for s, t in thresholds.items() if s in table.columns}
    if not usable:
        return None
    if not len(table):
        return 0.0
    flagged = np.zeros(len(table), dtype=bool)
    for s, t in usable.items():
        flagged |= table[s].to_numpy() > t
    return float(flagged.mean())


def _apply_calibration(results: TileResults, cal: Any) -> float | None:
    try:
        from tileuq.uncertainty import Calibration
    except ImportError:
        return None
    from_dict = getattr(Calibration, "from_dict", None)
    if from_dict is None:
        return None
    try:
        applied = from_dict(cal).apply(results)
    except Exception as exc:  # a calibration that does not fit these results
        log.warning("could not apply the model's calibration: %s", exc)
        return None
    table = getattr(applied, "table", applied)
    if "rejected" not in getattr(table, "columns", ()):
        return None
    return float(table["rejected"].mean()) if len(table) else 0.0
