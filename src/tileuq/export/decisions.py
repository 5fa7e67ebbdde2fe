"""Reviewer decisions (``decisions.jsonl``, written by the review widget) as QuPath GeoJSON.

The decisions file format is documented in :mod:`tileuq.uncertainty.decisions`.  Each reviewed
tile becomes a feature classified by the reviewer's answer: the class they confirmed
(``accept``) or chose (``relabel``), or ``"Artefact"`` / ``"Unsure"``.  Measurements (numeric,
as QuPath requires): ``decision_accept``, ``decision_relabel``, ``decision_artefact``,
``decision_unsure`` (0/1), ``agrees_with_model`` (1 when the final class equals the
prediction; left out for artefact/unsure) and, when the slide's results are given, the
tile's probabilities and scores.  Text (decision, label, prediction, reviewer, time, note) goes
to ``properties.metadata``.  With ``merge=True`` adjacent tiles with the same answer become one
``annotation`` polygon per connected region.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from tileuq.export._common import PALETTE, class_colors, load_results
from tileuq.export._merge import merge_boxes, polygon_coordinates
from tileuq.export.geojson import (
    OBJECT_TYPES,
    _box_coords,
    _clean,
    _fid,
    classification,
    feature,
    feature_collection,
    measurement_columns,
)

if TYPE_CHECKING:
    from tileuq.engine.results import TileResults

__all__ = ["DECISION_CLASSES", "decisions_to_geojson", "final_label"]

#: QuPath class names and colours of the answers that are not a tissue class
DECISION_CLASSES: dict[str, tuple[str, str]] = {
    "artefact": ("Artefact", "#7f7f7f"),
    "unsure": ("Unsure", "#fee08b"),  # the review layer's colours (tileuq.review)
}
_DECISIONS = ("accept", "relabel", "artefact", "unsure")


def final_label(decision: str, label: Any, prediction: Any) -> str:
    """Return the class a decision assigns: the label, or ``"Artefact"`` / ``"Unsure"``."""
    if decision in DECISION_CLASSES:
        return DECISION_CLASSES[decision][0]
    if decision == "accept":
        return str(label or prediction)
    return str(label)


def _read(decisions: str | os.PathLike[str] | pd.DataFrame) -> pd.DataFrame:
    if isinstance(decisions, pd.DataFrame):
        return decisions.reset_index(drop=True)
    from tileuq.uncertainty.decisions import read_decisions

    return read_decisions(decisions)


def _color_map(results: TileResults | None, labels: list[str]) -> dict[str, str]:
    colors: dict[str, str] = {name: color for name, color in DECISION_CLASSES.values()}
    if results is not None:
        colors.update(zip(results.classes, class_colors(results), strict=True))
    extra = sorted({lab for lab in labels if lab not in colors})
    for i, lab in enumerate(extra):
        colors[lab] = PALETTE[(i + 3) % len(PALETTE)]
    return colors


def _tile_values(results: TileResults | None, df: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per decision row: the reviewed tile's measurements from the results (NaN if absent)."""
    if results is None or not len(df):
        return {}
    t = results.table
    cols = measurement_columns(results)
    index = pd.MultiIndex.from_frame(t[["x", "y", "plane"]].astype(np.int64))
    rows = index.get_indexer(pd.MultiIndex.from_frame(df[["x", "y", "plane"]].astype(np.int64)))
    out = {}
    for c in cols:
        v = t[c].to_numpy(np.float64)
        out[c] = np.where(rows >= 0, v[np.maximum(rows, 0)], np.nan)
    return out


def decisions_to_geojson(
    decisions: str | os.PathLike[str] | pd.DataFrame,
    results: TileResults | str | os.PathLike[str] | None = None,
    *,
    merge: bool = False,
    object_type: str | None = None,
) -> dict[str, Any]:
    """Build a QuPath ``FeatureCollection`` of reviewer decisions.

    Parameters
    ----------
    decisions
        A ``decisions.jsonl`` path or the DataFrame :func:`read_decisions` returns (one row per
        tile, last decision wins).
    results
        The slide's results (object or folder): class colours and the tiles' measurements.
    merge
        Merge adjacent tiles with the same final class into polygons.
    object_type
        ``"annotation"`` (default), ``"tile"`` or ``"detection"``.
    """
    from tileuq.errors import ResultsError

    ot = object_type or "annotation"
    if ot not in OBJECT_TYPES:
        raise ResultsError(f"object_type: expected one of {OBJECT_TYPES}, got {ot!r}")
    res = None if results is None else load_results(results)
    df = _read(decisions)
    labels = [
        final_label(d, lab, p)
        for d, lab, p in zip(df["decision"], df["label"], df["prediction"], strict=True)
    ]
    colors = _color_map(res, labels)
    values = _tile_values(res, df)
    slide = "" if res is None else str(res.meta.get("slide", {}).get("header_hash", ""))
    x = df["x"].to_numpy(np.float64)
    y = df["y"].to_numpy(np.float64)
    s = df["size"].to_numpy(np.float64)
    planes = df["plane"].to_numpy(np.int64)
    boxes = np.stack([x, y, x + s, y + s], axis=1) if len(df) else np.empty((0, 4))
    feats: list[dict[str, Any]] = []
    if not merge:
        for i, row in enumerate(df.itertuples(index=False)):
            m: dict[str, float] = {
                f"decision_{d}": float(str(row.decision) == d) for d in _DECISIONS
            }
            if row.decision in ("accept", "relabel"):
                m["agrees_with_model"] = float(labels[i] == str(row.prediction))
            m.update({c: float(v[i]) for c, v in values.items()})
            meta = {
                k: str(getattr(row, k))
                for k in ("decision", "label", "prediction", "reviewer", "time", "note")
                if hasattr(row, k) and getattr(row, k) is not None and not _isnan(getattr(row, k))
            }
            props = {
                "objectType": ot,
                "name": f"review: {row.decision}",
                "classification": classification(labels[i], colors[labels[i]]),
                "measurements": _clean(m),
                "metadata": {**meta, "source": "tileuq-review"},
            }
            fid = _fid(slide, "decision", planes[i], int(x[i]), int(y[i]))
            feats.append(feature(_box_coords(*boxes[i]), props, fid=fid, plane=int(planes[i])))
    else:
        keys = list(zip(planes.tolist(), labels, strict=True))
        for region in merge_boxes(boxes, keys, coverage=False):
            plane, lab = cast(tuple[int, str], region.key)
            sub = df.iloc[region.members]
            m = {"tiles": float(len(sub))}
            m.update({f"decision_{d}": float((sub["decision"] == d).sum()) for d in _DECISIONS})
            props = {
                "objectType": ot,
                "classification": classification(lab, colors[lab]),
                "measurements": _clean(m),
                "metadata": {"source": "tileuq-review"},
            }
            fid = _fid(slide, "decisions", plane, lab, region.polygon.wkb_hex)
            feats.append(feature(polygon_coordinates(region.polygon), props, fid=fid, plane=plane))
    return feature_collection(feats, tileuq={"decisions": len(df), "merged": bool(merge)})


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and np.isnan(v)
