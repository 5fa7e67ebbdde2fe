"""Synthetic :class:`~tileuq.TileResults` of any size, for tests, benchmarks and demos of layers.

The table has the engine's columns (:func:`tileuq.engine.results.build_table`) and a
``run.json``-like ``meta``; probabilities come from a smooth random field so class maps and
heatmaps look like tissue rather than noise.  No model, no slide.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tileuq.engine.results import TileResults, build_table

__all__ = ["synthetic_results"]

SCORES = ("msp", "margin", "entropy", "energy", "variance")


def _smooth(rng: np.random.Generator, shape: tuple[int, int], k: int) -> np.ndarray:
    low = rng.normal(size=(max(2, shape[0] // 8 + 2), max(2, shape[1] // 8 + 2), k))
    ry = np.linspace(0, low.shape[0] - 1, shape[0])
    rx = np.linspace(0, low.shape[1] - 1, shape[1])
    iy, ix = np.floor(ry).astype(int).clip(0, low.shape[0] - 2), np.floor(rx).astype(int)
    ix = ix.clip(0, low.shape[1] - 2)
    fy, fx = (ry - iy)[:, None, None], (rx - ix)[None, :, None]
    a = low[iy][:, ix]
    b = low[iy][:, ix + 1]
    c = low[iy + 1][:, ix]
    d = low[iy + 1][:, ix + 1]
    out: np.ndarray = (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy
    return out


def synthetic_results(
    n_tiles: int = 1000,
    *,
    classes: Sequence[str] = ("tumor", "stroma", "normal"),
    colors: Sequence[str] = ("#d62728", "#2ca02c", "#1f77b4"),
    size: int = 448,
    stride: int | None = None,
    origin: tuple[int, int] = (0, 0),
    mpp: float | tuple[float, float] | None = 0.5,
    planes: int = 1,
    keep: float = 0.7,
    seed: int = 0,
) -> TileResults:
    """Return results with about ``n_tiles`` tiles per plane on a square-ish grid.

    Parameters
    ----------
    n_tiles
        Tiles kept per plane (the grid has about ``n_tiles / keep`` cells).
    classes, colors
        Class names and ``#rrggbb`` colours.
    size, stride
        Tile side and step in level-0 px (``stride`` defaults to ``size``).
    origin
        Level-0 ``(x, y)`` of cell ``(0, 0)``.
    mpp
        Slide µm per level-0 pixel, ``(x, y)`` or one number; ``None``: no mpp.
    planes
        Planes of a stack (``> 1`` gives a plane column and axis).
    keep
        Fraction of grid cells that hold a tile ("tissue").
    seed
        Random seed.
    """
    rng = np.random.default_rng(seed)
    stride = size if stride is None else int(stride)
    cells = int(np.ceil(n_tiles / keep))
    n_cols = int(np.ceil(np.sqrt(cells * 1.25)))
    n_rows = int(np.ceil(cells / n_cols))
    k = len(classes)
    geo: dict[str, list[np.ndarray]] = {c: [] for c in ("x", "y", "size", "row", "col", "plane")}
    geo["tissue"] = []
    logits_all = []
    for p in range(planes):
        order = rng.permutation(n_rows * n_cols)[:n_tiles]
        order.sort()
        rows, cols = np.divmod(order, n_cols)
        field = _smooth(rng, (n_rows, n_cols), k) * 3.0
        logits = field[rows, cols] + rng.normal(scale=0.7, size=(len(rows), k))
        logits_all.append(logits)
        geo["x"].append(origin[0] + cols * stride)
        geo["y"].append(origin[1] + rows * stride)
        geo["size"].append(np.full(len(rows), size))
        geo["row"].append(rows)
        geo["col"].append(cols)
        geo["plane"].append(np.full(len(rows), p))
        geo["tissue"].append(rng.uniform(0.5, 1.0, len(rows)))
    geometry = {key: np.concatenate(v) for key, v in geo.items()}
    z = np.concatenate(logits_all)
    prob = np.exp(z - z.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    pred = prob.argmax(axis=1)
    top2 = np.sort(prob, axis=1)[:, -2:]
    ent = -(prob * np.log(np.clip(prob, 1e-12, None))).sum(axis=1)
    scores = {
        "msp": 1.0 - top2[:, 1],
        "margin": 1.0 - (top2[:, 1] - top2[:, 0]),
        "entropy": ent,
        "energy": -np.log(np.exp(z).sum(axis=1)),
        "variance": rng.gamma(2.0, 0.5, len(pred)),
    }
    table = build_table(geometry, prob, pred, top2[:, 1], scores, list(classes), list(SCORES))
    if mpp is None:
        mpp_xy: Any = None
    else:
        mpp_xy = [float(v) for v in mpp] if isinstance(mpp, tuple) else [float(mpp)] * 2
    meta = {
        "status": "complete",
        "slide": {
            "name": "synthetic",
            "path": None,
            "dimensions": [origin[0] + n_cols * stride, origin[1] + n_rows * stride],
            "mpp": mpp_xy,
            "planes": planes,
        },
        "model": {
            "id": "synthetic",
            "hash": "0" * 64,
            "method": "sngp",
            "classes": list(classes),
            "colors": list(colors),
            "score_names": list(SCORES),
            "tile_px": 224,
        },
        "spec": {
            "tile_px": 224,
            "tile_size_level0": size,
            "stride_level0": stride,
            "grid_shape": [n_rows, n_cols],
            "origin": list(origin),
            "planes": list(range(planes)),
            "mpp": None if mpp is None else 1.0,
        },
    }
    return TileResults(table, meta)
