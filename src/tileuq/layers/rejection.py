"""Rejected-region layer: one grid pixel per tile, labelled by why the tile was rejected.

Label values: ``0`` accepted or no tile, ``1`` ambiguous (between classes), ``2`` unfamiliar
(unlike the training data).  :class:`RejectionGrid` precomputes the per-tile grid indices once
so that a threshold change only recomputes a boolean mask and scatters it into a small array —
fast enough to repaint while a slider moves (see ``benchmarks/gui.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from tileuq.layers.geometry import TileGeometry

__all__ = ["REASON_CODES", "REASON_COLORS", "RejectionGrid", "reason_codes", "rejected_layer"]

REASON_CODES: dict[str, int] = {"ambiguous": 1, "unfamiliar": 2}
#: colour-blind-safe pair (IBM design palette): amber = ambiguous, magenta = unfamiliar
REASON_COLORS: dict[str, str] = {"ambiguous": "#ffb000", "unfamiliar": "#dc267f"}


def reason_codes(reason: Any) -> np.ndarray:
    """Label value per tile from reason strings (``""`` / ``"ambiguous"`` / ``"unfamiliar"``)."""
    r = np.asarray(reason, dtype=object)
    out = np.zeros(r.shape, dtype=np.uint8)
    for name, code in REASON_CODES.items():
        out[r == name] = code
    return out


def _colormap() -> dict[Any, str]:
    cmap: dict[Any, str] = {0: "transparent", None: "transparent"}
    for name, code in REASON_CODES.items():
        cmap[code] = REASON_COLORS[name]
    return cmap


def _features() -> pd.DataFrame:
    return pd.DataFrame({"index": [0, 1, 2], "reason": ["accepted / no tile", *REASON_CODES]})


class RejectionGrid:
    """Repaint the rejected-region grid for new thresholds without touching the table.

    Parameters
    ----------
    table
        Results table holding the score column of every rule.
    rules
        The calibration's rules (``score``, ``threshold``, ``reason``), e.g.
        ``calibration.rules``.
    geometry
        Grid geometry of the results.

    Notes
    -----
    The decision is the calibration's own (:meth:`tileuq.uncertainty.Calibration.decide`): a
    tile is rejected when any rule rejects it (``not score <= threshold``, so NaN is
    rejected); ``"unfamiliar"`` wins over ``"ambiguous"``.  The unit tests check that both give
    the same labels.
    """

    def __init__(self, table: pd.DataFrame, rules: Any, geometry: TileGeometry) -> None:
        self.geometry = geometry
        self.flat = geometry.flat_cells(table)
        self.rules = list(rules)
        self.scores = {
            r.score: table[r.score].to_numpy(dtype=np.float64, na_value=np.nan) for r in self.rules
        }
        self.thresholds = {r.score: float(r.threshold) for r in self.rules}
        self._grid = geometry.empty(np.uint8)

    def codes(self, thresholds: Mapping[str, float] | None = None) -> np.ndarray:
        """Label value per table row for ``thresholds`` (missing scores keep theirs)."""
        if thresholds:
            self.thresholds.update({k: float(v) for k, v in thresholds.items()})
        n = self.flat.size
        unfamiliar = np.zeros(n, dtype=bool)
        ambiguous = np.zeros(n, dtype=bool)
        for r in self.rules:
            rej = ~(self.scores[r.score] <= self.thresholds[r.score])
            if r.reason == "unfamiliar":
                unfamiliar |= rej
            else:
                ambiguous |= rej
        out = ambiguous.astype(np.uint8)
        out[unfamiliar] = REASON_CODES["unfamiliar"]
        return out

    def paint(
        self, thresholds: Mapping[str, float] | None = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Write the grid for ``thresholds`` into ``out`` (default: an internal buffer)."""
        grid = self._grid if out is None else out
        flat = grid.reshape(-1)
        flat[:] = 0
        flat[self.flat] = self.codes(thresholds)
        return grid

    def coverage(self) -> float:
        """Fraction of tiles accepted at the current thresholds."""
        n = self.flat.size
        return 1.0 if n == 0 else float((self.codes() == 0).mean())


def rejected_layer(
    table: pd.DataFrame,
    reason: Any,
    geometry: TileGeometry,
    *,
    name: str = "rejected",
    metadata: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, dict[str, Any], str]:
    """Labels-layer tuple of the rejected regions (label = reason code)."""
    grid = geometry.empty(np.uint8)
    grid[geometry.cells(table)] = reason_codes(reason)
    kwargs: dict[str, Any] = {
        "name": name,
        "scale": geometry.grid_scale,
        "translate": geometry.grid_translate,
        "units": geometry.layer_units,
        "colormap": _colormap(),
        "features": _features(),
        "opacity": 0.45,
        "metadata": {"tileuq": {"kind": "rejected", "codes": dict(REASON_CODES),
                                "colors": dict(REASON_COLORS),
                                "geometry": geometry.to_dict(), **dict(metadata or {})}},
    }  # fmt: skip
    return grid, kwargs, "labels"
