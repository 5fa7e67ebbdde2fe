"""What every exporter needs: results + calibration, colours, tile geometry, areas.

Nothing here imports torch, Qt or napari.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tileuq.errors import CalibrationError, ResultsError

if TYPE_CHECKING:
    from tileuq.engine.results import TileResults
    from tileuq.uncertainty.calibration import Calibration

log = logging.getLogger(__name__)

#: reasons a tile can be rejected for, in the order they are shown
REASONS: tuple[str, ...] = ("unfamiliar", "ambiguous")
#: fixed colours of the rejected-region overlays and features: the colour-blind-safe pair the
#: napari layers use (``tileuq.layers.rejection``), magenta = unfamiliar, amber = ambiguous
REASON_COLORS: dict[str, str] = {"unfamiliar": "#dc267f", "ambiguous": "#ffb000"}

#: a categorical palette (matplotlib tab10) for results that carry no class colours
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` (or ``"rrggbb"``) to ``(r, g, b)`` integers 0-255."""
    s = str(color).lstrip("#")
    if len(s) != 6:
        raise ValueError(f"expected a colour '#rrggbb', got {color!r}")
    return int(s[0:2], 16), int(s[2:4], 16), int(s[4:6], 16)


def class_colors(results: TileResults) -> list[str]:
    """One ``"#rrggbb"`` per class: the model's colours, else a categorical palette."""
    colors = list(results.colors)
    n = len(results.classes)
    if len(colors) < n:
        colors += [PALETTE[i % len(PALETTE)] for i in range(len(colors), n)]
    return colors[:n]


def load_results(source: TileResults | str | os.PathLike[str]) -> TileResults:
    """Return ``source`` loaded as :class:`~tileuq.TileResults` (a folder, or the object).

    Raises
    ------
    ResultsError
        With a hint when ``source`` is a batch folder (one subfolder per slide).
    """
    from tileuq.engine.results import META_FILE, TileResults

    if isinstance(source, TileResults):
        return source
    folder = Path(source)
    if folder.is_dir() and not (folder / META_FILE).exists():
        subs = sorted(p.name for p in folder.iterdir() if (p / META_FILE).is_file())
        if subs:
            raise ResultsError(
                f"{folder}: not a results folder but a batch folder holding {len(subs)} "
                f"(e.g. {subs[0]!r}); give one slide's folder, or use 'tileuq report {folder}'"
            )
    return TileResults.load(folder)


def _calibration_from_meta(results: TileResults) -> Calibration | None:
    from tileuq.uncertainty.calibration import Calibration

    cal = results.meta.get("model", {}).get("calibration")
    if not isinstance(cal, dict):
        return None
    try:
        return Calibration.from_dict(cal)
    except CalibrationError as exc:
        log.warning("ignoring the model's calibration recorded in run.json: %s", exc)
        return None


#: calibration saved beside a slide's results (by the napari calibrate widget)
CALIBRATION_FILE = "calibration.json"


def resolve_calibration(
    results: TileResults,
    calibration: Any = None,
    folder: str | os.PathLike[str] | None = None,
) -> Calibration | None:
    """Return the calibration to use for ``results``.

    Parameters
    ----------
    results
        The slide's results.
    calibration
        A :class:`~tileuq.uncertainty.calibration.Calibration`, a path to a calibration JSON /
        ``model.json`` / model folder, or ``False`` for none.  ``None`` (default) looks, in
        order, for ``calibration.json`` in the results ``folder`` (where the napari calibrate
        widget saves it) and for the calibration the model carried when the slide was run
        (recorded in ``run.json``).
    folder
        The results folder, when known.
    """
    from tileuq.uncertainty.calibration import Calibration

    if calibration is False:
        return None
    if isinstance(calibration, Calibration):
        return calibration
    if calibration is not None:
        return Calibration.load(calibration)
    if folder is not None and (Path(folder) / CALIBRATION_FILE).is_file():
        return Calibration.load(Path(folder) / CALIBRATION_FILE)
    return _calibration_from_meta(results)


def prepare(
    source: TileResults | str | os.PathLike[str], calibration: Any = None
) -> tuple[TileResults, Calibration | None]:
    """Load results and add ``rejected`` / ``reason`` columns when a calibration is known.

    See :func:`resolve_calibration` for where the calibration comes from.

    Returns
    -------
    (TileResults, Calibration or None)
        Results whose table carries ``rejected`` and ``reason`` when calibrated (a table that
        already has them keeps them when no calibration is given), and the calibration used.
    """
    results = load_results(source)
    folder = None if hasattr(source, "table") else Path(source)
    cal = resolve_calibration(results, calibration, folder)
    if cal is not None:
        results = cal.apply(results)
    elif "rejected" in results.table.columns and "reason" not in results.table.columns:
        table = results.table.copy()
        table["reason"] = np.where(table["rejected"].to_numpy(bool), "rejected", "")
        results = _replace_table(results, table)
    return results, cal


def _replace_table(results: TileResults, table: Any) -> TileResults:
    from tileuq.engine.results import TileResults

    return TileResults(table, results.meta)


def is_calibrated(results: TileResults) -> bool:
    """Whether the table carries the ``rejected`` and ``reason`` columns."""
    cols = results.table.columns
    return "rejected" in cols and "reason" in cols


@dataclass(frozen=True)
class Geometry:
    """Where tiles lie on the slide (level-0 pixels) and how large a pixel is.

    Attributes
    ----------
    width, height
        Slide level-0 dimensions.
    tile, stride
        Tile side and grid stride in level-0 px.
    origin
        Level-0 ``(x, y)`` of grid cell ``(0, 0)``.
    grid_shape
        ``(n_rows, n_cols)``.
    mpp
        Slide µm per level-0 pixel (mean of x and y), ``None`` when unknown.
    mpp_xy
        ``(x, y)`` µm per level-0 pixel, ``None`` when unknown.
    """

    width: int
    height: int
    tile: int
    stride: int
    origin: tuple[int, int]
    grid_shape: tuple[int, int]
    mpp: float | None
    mpp_xy: tuple[float, float] | None

    @property
    def pad(self) -> float:
        """Offset of a cell inside its tile: cells are one stride wide, centred on the tile."""
        return (self.tile - self.stride) / 2.0

    @property
    def cell_area_mm2(self) -> float | None:
        """Area of one grid cell (one stride squared) in mm², ``None`` without mpp."""
        if self.mpp_xy is None:
            return None
        return self.stride * self.mpp_xy[0] * self.stride * self.mpp_xy[1] / 1e6


def geometry(results: TileResults) -> Geometry:
    """Tile geometry of ``results`` (from ``run.json``)."""
    meta = results.meta
    spec = meta["spec"]
    try:
        w, h = (int(v) for v in meta["slide"]["dimensions"])
        tile = int(spec["tile_size_level0"])
        stride = int(spec["stride_level0"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ResultsError(f"run.json lacks the tile geometry ({exc})") from exc
    mpp_xy: tuple[float, float] | None = None
    slide_mpp = meta["slide"].get("mpp")
    if isinstance(slide_mpp, list | tuple) and len(slide_mpp) == 2 and all(slide_mpp):
        mpp_xy = (float(slide_mpp[0]), float(slide_mpp[1]))
    elif spec.get("slide_mpp"):
        mpp_xy = (float(spec["slide_mpp"]),) * 2
    mpp = None if mpp_xy is None else (mpp_xy[0] + mpp_xy[1]) / 2
    return Geometry(w, h, tile, stride, results.origin, results.grid_shape, mpp, mpp_xy)


def tile_boxes(results: TileResults) -> np.ndarray:
    """``(N, 4)`` float level-0 boxes ``(x0, y0, x1, y1)`` of the tiles themselves."""
    t = results.table
    x = t["x"].to_numpy(np.float64)
    y = t["y"].to_numpy(np.float64)
    s = t["size"].to_numpy(np.float64)
    return np.stack([x, y, x + s, y + s], axis=1)


def cell_boxes(results: TileResults) -> np.ndarray:
    """``(N, 4)`` level-0 boxes of the tiles' grid cells (equal to the tiles without overlap).

    Cells are one stride wide and centred on their tile, so the cells of a grid tile the
    plane without overlapping: unions of cells have exact areas even when tiles overlap.
    """
    g = geometry(results)
    t = results.table
    x = t["x"].to_numpy(np.float64) + g.pad
    y = t["y"].to_numpy(np.float64) + g.pad
    return np.stack([x, y, x + g.stride, y + g.stride], axis=1)


def tile_areas_mm2(results: TileResults) -> np.ndarray | None:
    """Tissue area each tile stands for, mm²: tissue fraction x cell area (``None`` w/o mpp)."""
    area = geometry(results).cell_area_mm2
    if area is None:
        return None
    return results.table["tissue"].to_numpy(np.float64) * area


def slide_name(results: TileResults) -> str:
    """Display name of the slide."""
    slide = results.meta.get("slide", {})
    return str(slide.get("name") or Path(str(slide.get("path") or "slide")).name)
