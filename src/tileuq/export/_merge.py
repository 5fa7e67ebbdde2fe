"""Merge adjacent grid cells into polygons (shapely), and find which tiles each polygon holds."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import shapely


@dataclass(frozen=True)
class Region:
    """One connected region of cells that share a group key.

    Attributes
    ----------
    key
        The group key (e.g. ``(plane, class index)``).
    polygon
        The region's outline (level-0 px), holes included.
    members
        Row indices (into the boxes given to :func:`merge_boxes`) of the cells inside.
    """

    key: Hashable
    polygon: shapely.Polygon
    members: np.ndarray


def union_boxes(boxes: np.ndarray, *, coverage: bool = True) -> shapely.Geometry:
    """Union of axis-aligned boxes ``(x0, y0, x1, y1)``.

    Grid cells never overlap and share whole edges (a *coverage*), so by default
    :func:`shapely.coverage_union_all` (linear time) is used; ``coverage=False`` uses the
    general :func:`shapely.unary_union` for boxes that may overlap.  The result is simplified
    with tolerance 0, which only removes the collinear vertices the cell edges leave behind
    (areas are unchanged).
    """
    if len(boxes) == 0:
        return shapely.Polygon()
    polys = shapely.box(boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3])
    merged = shapely.coverage_union_all(polys) if coverage else shapely.unary_union(polys)
    if coverage and not shapely.is_valid(merged):  # not a clean coverage after all
        merged = shapely.unary_union(polys)
    return shapely.simplify(merged, 0.0)


def merge_boxes(
    boxes: np.ndarray, keys: Sequence[Hashable] | np.ndarray, *, coverage: bool = True
) -> list[Region]:
    """Merge the boxes of each key into connected polygons.

    Parameters
    ----------
    boxes
        ``(N, 4)`` boxes ``(x0, y0, x1, y1)``.
    keys
        ``(N,)`` group key per box (hashable; e.g. tuples ``(plane, class)``).
    coverage
        Whether the boxes are known not to overlap (see :func:`union_boxes`).

    Returns
    -------
    list of Region
        Sorted by key, then by descending number of member cells.  Cells that touch only at a
        corner belong to different regions.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    key_list = list(keys)
    if len(key_list) != len(boxes):
        raise ValueError(f"{len(key_list)} keys for {len(boxes)} boxes")
    groups: dict[Hashable, list[int]] = {}
    for i, k in enumerate(key_list):
        groups.setdefault(k, []).append(i)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    out: list[Region] = []
    for key in sorted(groups, key=_sort_key):
        idx = np.asarray(groups[key], dtype=np.int64)
        parts = shapely.get_parts(union_boxes(boxes[idx], coverage=coverage))
        parts = parts[shapely.area(parts) > 0]
        if len(parts) == 1:
            out.append(Region(key, parts[0], idx))
            continue
        tree = shapely.STRtree(parts)
        pts = shapely.points(cx[idx], cy[idx])
        where, which = tree.query(pts, predicate="within")
        regions = [Region(key, p, idx[where[which == j]]) for j, p in enumerate(parts)]
        out.extend(sorted(regions, key=lambda r: -len(r.members)))
    return out


def _sort_key(k: Hashable) -> tuple[str, str]:
    return (type(k).__name__, repr(k))


def polygon_coordinates(poly: shapely.Polygon, decimals: int = 2) -> list[list[list[float]]]:
    """GeoJSON ``Polygon`` coordinates (exterior ring counter-clockwise, holes clockwise).

    Orientation is that of the coordinate plane (positive signed area for the exterior, the
    RFC 7946 right-hand rule); on screen, with y pointing down, it looks mirrored.

    Integral coordinates are written as integers; others are rounded to ``decimals``.
    """
    if hasattr(shapely, "orient_polygons"):  # shapely >= 2.1
        poly = shapely.orient_polygons(poly)
    else:
        from shapely.geometry.polygon import orient

        poly = orient(poly, 1.0)
    rings = [poly.exterior, *poly.interiors]
    return [_ring(np.asarray(r.coords), decimals) for r in rings]


def _ring(xy: np.ndarray, decimals: int) -> list[list[float]]:
    xy = np.round(xy[:, :2], decimals)
    if np.all(xy == np.round(xy)):
        return xy.astype(np.int64).tolist()
    return xy.tolist()
