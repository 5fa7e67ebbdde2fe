"""QuPath-compatible GeoJSON of tile results: one feature per tile, or merged regions.

The layout follows what QuPath writes and reads (``qupath-core``, ``qupath.lib.io``
``PathObjectTypeAdapters`` and ``GsonTools.PathClassTypeAdapter``, QuPath ≥ 0.4):

- a ``FeatureCollection``; each ``Feature`` has an ``id`` (a UUID string; deterministic here,
  derived from the slide, the plane and the tile/region) and a ``geometry`` in **level-0 pixel
  coordinates** with the origin at the top-left of the full-resolution image.  Features of a
  stack plane other than 0 carry QuPath's ``"plane": {"c": -1, "z": plane, "t": 0}`` member
  inside ``geometry``.
- ``properties.objectType``: ``"tile"`` for one feature per tile (QuPath tile objects, a kind of
  detection), ``"annotation"`` for merged regions and reviewer decisions by default.
- ``properties.classification``: ``{"name": ..., "color": [r, g, b]}``.  QuPath needs both keys
  to read the class with its colour.
- ``properties.measurements``: a flat ``{name: number}`` map (QuPath reads it as
  ``Map<String, Double>``, so every value is numeric; NaN values are left out because strict
  JSON has no NaN and QuPath treats a missing measurement as NaN).
- Text (the rejection reason, the predicted class name) cannot be a measurement.  It goes to
  ``properties.metadata`` (string values, restored by QuPath on objects that keep metadata),
  and a rejected tile or region is also **named** by its reason (``properties.name``), which
  QuPath shows for every object type.  The reason is also encoded numerically in the
  measurements as 0/1 flags ``rejected``, ``reason_unfamiliar`` and ``reason_ambiguous``.

Merged export (``merge=True``): adjacent tiles (4-connected grid cells) of one predicted class
become one ``annotation`` polygon per connected region, and so do the rejected tiles of each
reason (classification ``"Rejected (unfamiliar)"`` / ``"Rejected (ambiguous)"``); rejected
regions overlap the class regions they lie on.  Cells are one grid stride wide and centred on
their tile, so with overlapping tiles the merged areas still add up exactly.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from tileuq._io import atomic_write
from tileuq.errors import ResultsError
from tileuq.export._common import (
    REASON_COLORS,
    REASONS,
    cell_boxes,
    class_colors,
    geometry,
    hex_to_rgb,
    is_calibrated,
    prepare,
    tile_areas_mm2,
    tile_boxes,
)
from tileuq.export._merge import merge_boxes, polygon_coordinates

if TYPE_CHECKING:
    import pandas as pd

    from tileuq.engine.results import TileResults

__all__ = [
    "OBJECT_TYPES",
    "rejected_class_name",
    "results_to_geojson",
    "write_geojson",
]

OBJECT_TYPES = ("tile", "detection", "annotation")
_NAMESPACE = uuid.UUID("6a1f4f1e-2f0e-4a53-9a44-7469c6575571")  # tileuq's UUID namespace


def rejected_class_name(reason: str) -> str:
    """QuPath class name of rejected regions/tiles of ``reason``."""
    return f"Rejected ({reason})"


def classification(name: str, color: str) -> dict[str, Any]:
    """QuPath classification object: ``{"name": name, "color": [r, g, b]}``."""
    return {"name": str(name), "color": list(hex_to_rgb(color))}


def feature(
    coords: list[Any],
    properties: dict[str, Any],
    *,
    fid: str,
    plane: int = 0,
) -> dict[str, Any]:
    """One GeoJSON ``Polygon`` feature with a QuPath plane member when ``plane != 0``."""
    geom: dict[str, Any] = {"type": "Polygon", "coordinates": coords}
    if plane:
        geom["plane"] = {"c": -1, "z": int(plane), "t": 0}
    return {"type": "Feature", "id": fid, "geometry": geom, "properties": properties}


def _fid(*parts: Any) -> str:
    return str(uuid.uuid5(_NAMESPACE, "/".join(map(str, parts))))


def _box_coords(x0: float, y0: float, x1: float, y1: float) -> list[list[list[float]]]:
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]  # positive signed area (RFC 7946)
    return [[[int(v) if float(v).is_integer() else float(v) for v in p] for p in ring]]


def measurement_columns(results: TileResults) -> list[str]:
    """Numeric table columns exported as per-tile measurements, in order."""
    t = results.table
    cols = ["tissue", *[c for c in t.columns if c.startswith("prob_")], "confidence"]
    cols += [s for s in results.score_names if s in t.columns]
    return [c for c in cols if c in t.columns]


def _flags(reason: np.ndarray) -> dict[str, np.ndarray]:
    out = {"rejected": (reason != "").astype(np.int8)}
    for r in REASONS:
        out[f"reason_{r}"] = (reason == r).astype(np.int8)
    return out


def _clean(values: Mapping[str, float]) -> dict[str, float]:
    """Measurements map: finite numbers only (QuPath reads missing values as NaN)."""
    out: dict[str, float] = {}
    for k, v in values.items():
        f = float(v)
        if np.isfinite(f):
            out[k] = int(f) if f.is_integer() and abs(f) < 2**53 else f
    return out


def _slide_key(results: TileResults) -> str:
    slide = results.meta.get("slide", {})
    return str(slide.get("header_hash") or slide.get("name") or "slide")


def tile_features(results: TileResults, *, object_type: str = "tile") -> list[dict[str, Any]]:
    """One feature per tile: its level-0 box, predicted class and measurements."""
    t = results.table
    names = results.classes
    colors = class_colors(results)
    cls_obj = [classification(n, c) for n, c in zip(names, colors, strict=True)]
    boxes = tile_boxes(results)
    cols = measurement_columns(results)
    values = {c: t[c].to_numpy(np.float64) for c in cols}
    calibrated = is_calibrated(results)
    if calibrated:
        reason = t["reason"].astype(str).to_numpy()
        values.update({k: v.astype(np.float64) for k, v in _flags(reason).items()})
    pred = t["pred_index"].to_numpy(np.int64)
    planes = t["plane"].to_numpy(np.int64)
    xs, ys = t["x"].to_numpy(np.int64), t["y"].to_numpy(np.int64)
    key = _slide_key(results)
    feats = []
    keys = list(values)
    matrix = np.stack([values[k] for k in keys], axis=1) if keys else np.empty((len(t), 0))
    for i in range(len(t)):
        props: dict[str, Any] = {
            "objectType": object_type,
            "classification": cls_obj[pred[i]],
            "measurements": _clean(dict(zip(keys, matrix[i], strict=True))),
        }
        meta = {"prediction": names[pred[i]], "source": "tileuq"}
        if calibrated and reason[i]:
            props["name"] = f"rejected: {reason[i]}"
            meta["reason"] = str(reason[i])
        props["metadata"] = meta
        fid = _fid(key, "tile", planes[i], xs[i], ys[i])
        feats.append(feature(_box_coords(*boxes[i]), props, fid=fid, plane=int(planes[i])))
    return feats


def _region_measurements(results: TileResults, members: np.ndarray) -> dict[str, float]:
    t = results.table
    areas = tile_areas_mm2(results)
    m: dict[str, float] = {"tiles": float(len(members))}
    if areas is not None:
        m["tissue_area_mm2"] = float(areas[members].sum())
    for c in measurement_columns(results):
        if c == "tissue":
            continue
        m[f"mean_{c}"] = float(np.nanmean(t[c].to_numpy(np.float64)[members]))
    if is_calibrated(results):
        rej = t["rejected"].to_numpy(bool)[members]
        m["rejected_fraction"] = float(rej.mean()) if len(members) else 0.0
    return m


def merged_features(
    results: TileResults, *, object_type: str = "annotation", rejected: bool = True
) -> list[dict[str, Any]]:
    """Adjacent tiles of one class, and rejected tiles of one reason, merged into polygons."""
    t = results.table
    if not len(t):
        return []
    names = results.classes
    colors = class_colors(results)
    boxes = cell_boxes(results)
    planes = t["plane"].to_numpy(np.int64)
    pred = t["pred_index"].to_numpy(np.int64)
    key = _slide_key(results)
    feats: list[dict[str, Any]] = []
    for region in merge_boxes(boxes, list(zip(planes.tolist(), pred.tolist(), strict=True))):
        plane, k = cast(tuple[int, int], region.key)
        props = {
            "objectType": object_type,
            "classification": classification(names[k], colors[k]),
            "measurements": _clean(_region_measurements(results, region.members)),
            "metadata": {"prediction": names[k], "source": "tileuq"},
        }
        fid = _fid(key, "class", plane, k, region.polygon.wkb_hex)
        feats.append(feature(polygon_coordinates(region.polygon), props, fid=fid, plane=plane))
    if rejected and is_calibrated(results):
        reason = t["reason"].astype(str).to_numpy()
        sel = np.flatnonzero(reason != "")
        keys = list(zip(planes[sel].tolist(), reason[sel].tolist(), strict=True))
        for region in merge_boxes(boxes[sel], keys):
            plane, why = cast(tuple[int, str], region.key)
            members = sel[region.members]
            props = {
                "objectType": object_type,
                "name": f"rejected: {why}",
                "classification": classification(
                    rejected_class_name(why), REASON_COLORS.get(why, "#000000")
                ),
                "measurements": _clean(_region_measurements(results, members)),
                "metadata": {"reason": why, "source": "tileuq"},
            }
            fid = _fid(key, "rejected", plane, why, region.polygon.wkb_hex)
            feats.append(feature(polygon_coordinates(region.polygon), props, fid=fid, plane=plane))
    return feats


def feature_collection(features: Sequence[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """Wrap features in a ``FeatureCollection`` (RFC 7946 allows extra top-level members)."""
    return {"type": "FeatureCollection", "features": list(features), **extra}


def results_to_geojson(
    results: TileResults | str | os.PathLike[str],
    calibration: Any = None,
    *,
    merge: bool = False,
    object_type: str | None = None,
    rejected: bool = True,
) -> dict[str, Any]:
    """Build a QuPath-compatible ``FeatureCollection`` from a slide's results.

    Parameters
    ----------
    results
        :class:`~tileuq.TileResults` or a results folder.
    calibration
        Calibration adding ``rejected``/``reason`` (see
        :func:`tileuq.export.resolve_calibration`; default: the one recorded with the run).
    merge
        Merge adjacent tiles of one class (and rejected tiles of one reason) into polygons.
    object_type
        QuPath object type: ``"tile"`` (default per tile), ``"detection"`` or ``"annotation"``
        (default when merged).
    rejected
        With ``merge``, also export the rejected regions (one class per reason).

    Returns
    -------
    dict
        The ``FeatureCollection``; ``tileuq`` holds the slide name, model id/hash and
        calibration summary (QuPath ignores it).
    """
    res, cal = prepare(results, calibration)
    ot = object_type or ("annotation" if merge else "tile")
    if ot not in OBJECT_TYPES:
        raise ResultsError(f"object_type: expected one of {OBJECT_TYPES}, got {ot!r}")
    feats = (
        merged_features(res, object_type=ot, rejected=rejected)
        if merge
        else tile_features(res, object_type=ot)
    )
    g = geometry(res)
    info = {
        "slide": res.meta.get("slide", {}).get("name"),
        "dimensions": [g.width, g.height],
        "model": {k: res.meta["model"].get(k) for k in ("id", "hash", "method")},
        "calibration": None if cal is None else cal.summary(),
        "merged": bool(merge),
        "tiles": len(res.table),
    }
    return feature_collection(feats, tileuq=info)


def decisions_to_geojson(
    decisions: str | os.PathLike[str] | pd.DataFrame,
    results: TileResults | str | os.PathLike[str] | None = None,
    *,
    merge: bool = False,
    object_type: str | None = None,
) -> dict[str, Any]:
    """Reviewer decisions as a QuPath ``FeatureCollection`` (see :mod:`.decisions`)."""
    from tileuq.export.decisions import decisions_to_geojson as impl

    return impl(decisions, results, merge=merge, object_type=object_type)


def write_geojson(collection: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a FeatureCollection atomically as compact strict JSON (UTF-8)."""
    path = Path(path)
    text = json.dumps(collection, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    with atomic_write(path, "w") as f:
        f.write(text)
        f.write("\n")
    return path
