"""napari layer data (labels, points, shapes) → one QuPath GeoJSON FeatureCollection.

Used by the napari writer contribution.  Coordinates are level-0 pixels, as QuPath expects.

* **tileuq grid labels layers** (class map, rejected regions, decisions: their
  ``metadata["tileuq"]["geometry"]`` says where each cell lies): the cells of each label are
  merged into polygons (:func:`tileuq.export._merge.merge_boxes`), classified by the label's
  name from the layer's ``features`` (``class`` / ``reason`` / ``decision``).  Cells are the
  boxes the layer shows: the whole tile when ``stride == size``, else the ``stride`` square
  centred on the tile (:mod:`tileuq.layers.geometry`).
* **tileuq flagged points**: one square per tile (``x, y, size`` features), classified by the
  rejection reason, with the numeric features as measurements.
* **shapes** (e.g. the review outline, or polygons drawn by hand): one polygon per shape.
* Points and shapes **without** tileuq metadata are written in their data coordinates, taken
  as level-0 pixels (give such layers the slide layer's scale so that holds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tileuq.layers.geometry import TileGeometry
from tileuq.layers.rejection import REASON_COLORS
from tileuq.review import DECISION_COLORS

__all__ = ["layers_to_geojson"]

_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


def _meta(attrs: Mapping[str, Any]) -> dict[str, Any]:
    meta = attrs.get("metadata") or {}
    t = meta.get("tileuq") if isinstance(meta, Mapping) else None
    return dict(t) if isinstance(t, Mapping) else {}


def _label_names(attrs: Mapping[str, Any]) -> dict[int, str]:
    feats = attrs.get("features")
    if feats is None or len(feats) == 0:
        return {}
    df = pd.DataFrame(feats)
    name_col = next((c for c in ("class", "reason", "decision") if c in df.columns), None)
    if name_col is None or "index" not in df.columns:
        return {}
    return {int(i): str(n) for i, n in zip(df["index"], df[name_col], strict=True)}


def _color(meta: Mapping[str, Any], name: str, value: int) -> str:
    kind = meta.get("kind")
    if kind == "classes":
        classes, colors = list(meta.get("classes") or []), list(meta.get("colors") or [])
        if name in classes and classes.index(name) < len(colors):
            return str(colors[classes.index(name)])
    if kind == "rejected" and name in REASON_COLORS:
        return REASON_COLORS[name]
    if kind == "decisions" and name in DECISION_COLORS:
        return DECISION_COLORS[name]
    return _PALETTE[value % len(_PALETTE)]


def _cell_boxes(geo: TileGeometry, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Level-0 ``(x0, y0, x1, y1)`` of grid cells (module docstring)."""
    pad = (geo.size - geo.stride) / 2.0
    x0 = geo.origin[0] + cols * geo.stride + pad
    y0 = geo.origin[1] + rows * geo.stride + pad
    return np.stack([x0, y0, x0 + geo.stride, y0 + geo.stride], axis=1).astype(np.float64)


def _labels_features(data: Any, attrs: Mapping[str, Any], layer: str) -> list[dict[str, Any]]:
    from tileuq.export._merge import merge_boxes, polygon_coordinates
    from tileuq.export.geojson import classification, feature

    meta = _meta(attrs)
    if "geometry" not in meta:
        return []  # a labels layer that is not a tileuq grid: no level-0 placement known
    geo = TileGeometry.from_dict(meta["geometry"])
    arr = np.asarray(data)
    if arr.ndim == 2:
        arr = arr[None]
    names = _label_names(attrs)
    planes, rows, cols = np.nonzero(arr)
    values = arr[planes, rows, cols].astype(np.int64)
    boxes = _cell_boxes(geo, rows, cols)
    keys = list(zip(planes.tolist(), values.tolist(), strict=True))
    out = []
    for k, region in enumerate(merge_boxes(boxes, keys)):
        key: Any = region.key
        plane, value = int(key[0]), int(key[1])
        name = names.get(value, str(value))
        props = {
            "objectType": "annotation",
            "name": f"{layer}: {name}",
            "classification": classification(name, _color(meta, name, value)),
            "measurements": {"tiles": len(region.members)},
        }
        out.append(feature(polygon_coordinates(region.polygon), props,
                           fid=f"{layer}-{k}", plane=plane))  # fmt: skip
    return out


def _points_features(data: Any, attrs: Mapping[str, Any], layer: str) -> list[dict[str, Any]]:
    from tileuq.export.geojson import classification, feature

    meta = _meta(attrs)
    feats = pd.DataFrame(attrs.get("features")) if attrs.get("features") is not None else None
    out: list[dict[str, Any]] = []
    pts = (
        np.asarray(data, dtype=np.float64).reshape(len(data), -1) if len(data) else np.empty((0, 2))
    )
    for i in range(len(pts)):
        row = feats.iloc[i] if feats is not None and len(feats) > i else pd.Series(dtype=object)
        reason = str(row.get("reason", "") or "") if len(row) else ""
        name = reason or str(row.get("prediction", "point")) if len(row) else "point"
        props: dict[str, Any] = {
            "objectType": "tile" if "geometry" in meta else "detection",
            "name": f"{layer} #{i}",
            "classification": classification(name, REASON_COLORS.get(name, "#00e5ff")),
            "measurements": {
                k: float(v)
                for k, v in row.items()
                if isinstance(v, int | float | np.number) and np.isfinite(float(v))
            },
        }
        plane = int(row.get("plane", 0)) if len(row) else 0
        if "geometry" in meta and {"x", "y", "size"} <= set(row.index):
            x, y, s = float(row["x"]), float(row["y"]), float(row["size"])
            coords = [[[x, y], [x, y + s], [x + s, y + s], [x + s, y], [x, y]]]
            out.append(feature(coords, props, fid=f"{layer}-{i}", plane=plane))
        else:
            y, x = float(pts[i][-2]), float(pts[i][-1])
            geom = {"type": "Point", "coordinates": [x + 0.5, y + 0.5]}
            out.append({"type": "Feature", "id": f"{layer}-{i}", "geometry": geom,
                        "properties": props})  # fmt: skip
    return out


def _shapes_features(data: Any, attrs: Mapping[str, Any], layer: str) -> list[dict[str, Any]]:
    from tileuq.export.geojson import classification, feature

    out = []
    for i, verts in enumerate(data):
        v = np.asarray(verts, dtype=np.float64)
        plane = int(v[0, 0]) if v.shape[1] == 3 else 0
        yx = v[:, -2:] + 0.5  # pixel-centre data coords -> pixel-edge level-0 coords
        ring = [[float(x), float(y)] for y, x in yx]
        ring.append(ring[0])
        props = {
            "objectType": "annotation",
            "name": f"{layer} #{i}",
            "classification": classification(layer, _PALETTE[i % len(_PALETTE)]),
        }
        out.append(feature([ring], props, fid=f"{layer}-{i}", plane=plane))
    return out


def layers_to_geojson(layer_data: Sequence[tuple[Any, Mapping[str, Any], str]]) -> dict[str, Any]:
    """Convert napari ``(data, attributes, layer_type)`` tuples to one FeatureCollection.

    Image layers are skipped.  See the module docstring for how each kind is placed.
    """
    from tileuq.export.geojson import feature_collection

    feats: list[dict[str, Any]] = []
    for data, attrs, kind in layer_data:
        name = str(attrs.get("name") or kind)
        if kind == "labels":
            feats += _labels_features(data, attrs, name)
        elif kind == "points":
            feats += _points_features(data, attrs, name)
        elif kind == "shapes":
            feats += _shapes_features(data, attrs, name)
    return feature_collection(
        feats, tileuq={"layers": [str(a.get("name")) for _, a, _ in layer_data]}
    )
