"""Layers for reviewing tiles: flagged tiles (points), decisions (labels) and the tile outline.

Points and shapes use level-0 pixel data coordinates with the slide layer's scale and translate
(see :mod:`tileuq.layers.geometry`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tileuq.layers.geometry import TileGeometry
from tileuq.layers.rejection import REASON_CODES, REASON_COLORS, reason_codes
from tileuq.review import DECISION_CODES, DECISION_COLORS, decisions_grid_codes, match_decisions

__all__ = ["decisions_layer", "flagged_features", "flagged_layer", "outline_layer", "tile_outline"]

_NEUTRAL = "#00e5ff"  # cyan: flagged without a reason (no calibration)


def _rgba(hex_color: str) -> tuple[float, float, float, float]:
    h = hex_color.lstrip("#")
    return (int(h[0:2], 16) / 255, int(h[2:4], 16) / 255, int(h[4:6], 16) / 255, 1.0)


def flagged_features(
    table: pd.DataFrame,
    order: np.ndarray,
    classes: Sequence[str],
    score_names: Sequence[str],
    reason: Any = None,
) -> pd.DataFrame:
    """Features table of the flagged tiles in queue order (one row per tile)."""
    sub = table.iloc[order]
    cols: dict[str, Any] = {
        "rank": np.arange(len(order), dtype=np.int64),
        "tile": np.asarray(order, dtype=np.int64),
        "x": sub["x"].to_numpy(np.int64),
        "y": sub["y"].to_numpy(np.int64),
        "plane": sub["plane"].to_numpy(np.int64),
        "size": sub["size"].to_numpy(np.int64),
        "prediction": sub["prediction"].astype(str).to_numpy(),
        "confidence": sub["confidence"].to_numpy(np.float64),
    }
    cols["reason"] = (
        np.asarray(reason, dtype=object)[order].astype(str)
        if reason is not None
        else np.full(len(order), "", dtype=object)
    )
    for c in classes:
        col = f"prob_{c}"
        if col in sub.columns:
            cols[col] = sub[col].to_numpy(np.float64)
    for s in score_names:
        if s in sub.columns:
            cols[s] = sub[s].to_numpy(np.float64)
    return pd.DataFrame(cols)


def flagged_layer(
    table: pd.DataFrame,
    order: np.ndarray,
    geometry: TileGeometry,
    *,
    classes: Sequence[str],
    score_names: Sequence[str],
    reason: Any = None,
    name: str = "flagged",
    metadata: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, dict[str, Any], str]:
    """Points-layer tuple: a square per flagged tile (its grid cell), in queue order, by reason."""
    feats = flagged_features(table, order, classes, score_names, reason)
    yc, xc = geometry.tile_centre_data(feats["x"].to_numpy(), feats["y"].to_numpy())
    data = np.column_stack([yc, xc])
    if geometry.stacked:
        data = np.column_stack([feats["plane"].to_numpy(np.float64), data])
    palette = np.asarray(
        [_rgba(_NEUTRAL), *(_rgba(REASON_COLORS[r]) for r in REASON_CODES)], dtype=np.float32
    )
    colors = palette[reason_codes(feats["reason"].to_numpy())]
    kwargs: dict[str, Any] = {
        "name": name,
        "scale": geometry.level0_scale,
        "translate": geometry.level0_translate,
        "units": geometry.layer_units,
        "features": feats,
        "symbol": "square",
        "size": float(geometry.stride),  # the tile's cell: overlapping tiles do not overlap here
        "face_color": "transparent",
        "border_color": colors if len(colors) else _NEUTRAL,  # napari rejects an empty array
        "border_width": 0.06,
        "border_width_is_relative": True,
        "metadata": {"tileuq": {"kind": "flagged", "geometry": geometry.to_dict(),
                                **dict(metadata or {})}},
    }  # fmt: skip
    return data.reshape(-1, data.shape[1] if data.ndim == 2 else 2), kwargs, "points"


def _decision_colormap() -> dict[Any, str]:
    cmap: dict[Any, str] = {0: "transparent", None: "transparent"}
    for d, code in DECISION_CODES.items():
        cmap[code] = DECISION_COLORS[d]
    return cmap


def decisions_layer(
    table: pd.DataFrame,
    decisions: pd.DataFrame,
    geometry: TileGeometry,
    *,
    name: str = "decisions",
    metadata: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, dict[str, Any], str]:
    """Labels-layer tuple of the reviewer's decisions (label = :data:`DECISION_CODES`)."""
    grid = geometry.empty(np.uint8)
    rows = match_decisions(table, decisions)
    ok = rows >= 0
    if ok.any():
        grid[geometry.cells(table.iloc[rows[ok]])] = decisions_grid_codes(decisions)[ok]
    feats = pd.DataFrame(
        {"index": [0, *DECISION_CODES.values()], "decision": ["(none)", *DECISION_CODES]}
    )
    kwargs: dict[str, Any] = {
        "name": name,
        "scale": geometry.grid_scale,
        "translate": geometry.grid_translate,
        "units": geometry.layer_units,
        "colormap": _decision_colormap(),
        "features": feats,
        "opacity": 0.7,
        "metadata": {"tileuq": {"kind": "decisions", "codes": dict(DECISION_CODES),
                                "geometry": geometry.to_dict(), **dict(metadata or {})}},
    }  # fmt: skip
    return grid, kwargs, "labels"


def tile_outline(geometry: TileGeometry, x: int, y: int, plane: int = 0) -> np.ndarray:
    """Rectangle vertices (level-0 data coordinates) exactly around one tile's pixels."""
    y0, x0 = y - 0.5, x - 0.5
    y1, x1 = y0 + geometry.size, x0 + geometry.size
    box = np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], dtype=np.float64)
    if geometry.stacked:
        box = np.column_stack([np.full(4, float(plane)), box])
    return box


def outline_layer(
    geometry: TileGeometry, boxes: Sequence[np.ndarray] = (), *, name: str = "current tile"
) -> tuple[list[np.ndarray], dict[str, Any], str]:
    """Shapes-layer tuple outlining the tile under review."""
    kwargs: dict[str, Any] = {
        "name": name,
        "scale": geometry.level0_scale,
        "translate": geometry.level0_translate,
        "units": geometry.layer_units,
        "shape_type": "rectangle",
        "edge_color": "#00ff00",
        "face_color": "transparent",
        "edge_width": max(2.0, geometry.size / 40.0),
        "metadata": {"tileuq": {"kind": "outline", "geometry": geometry.to_dict()}},
    }
    return list(boxes), kwargs, "shapes"
