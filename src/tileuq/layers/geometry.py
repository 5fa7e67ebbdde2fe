"""Where the per-tile grid of a results table lies in napari world coordinates.

Conventions (napari places the *centre* of data pixel ``i`` at ``i * scale + translate``, so a
pixel covers ``[i - 0.5, i + 0.5)`` in data coordinates):

* The slide image layer has ``scale = (mpp_y, mpp_x)`` (µm; ``(1, 1)`` level-0 px when the
  slide records no mpp) and ``translate = slide_translate`` (``(0, 0)`` by default).  Level-0
  pixel ``(x, y)`` therefore covers world ``[(x - 0.5) mpp_x + tx, (x + 0.5) mpp_x + tx)``.
* A grid layer (one pixel per tile) has ``scale = stride * mpp`` and ``translate`` chosen so
  that the centre of cell ``(row, col)`` is the centre of its tile.  With ``stride == size``
  the cell covers exactly the tile's level-0 pixels ``[x, x + size)``.
* Overlapping grids (``stride < size``): a cell cannot show a whole tile without overlapping its
  neighbours, so it shows the ``stride x stride`` square **centred on the tile** — the part of
  the slide nearer to that tile's centre than to any other tile's.  Cells then tile the slide
  without gaps or overlaps and each colour sits over the centre of the tile it describes.
* Stacks: grid arrays get a leading plane axis (length = the slide's planes) with scale 1 and
  translate 0, like the slide layer's plane axis.

Point and shape layers (flagged tiles, review outlines) use level-0 pixel *data* coordinates
with the slide layer's own scale and translate, so a tile's outline is the box
``[x - 0.5, x + size - 0.5)`` in data coordinates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tileuq.errors import ResultsError

__all__ = ["TileGeometry"]


@dataclass(frozen=True)
class TileGeometry:
    """Grid geometry of one results table, in napari terms.

    Attributes
    ----------
    origin
        Level-0 ``(x, y)`` of grid cell ``(0, 0)``.
    stride, size
        Tile step and tile side in level-0 pixels.
    grid_shape
        ``(n_rows, n_cols)``.
    n_planes
        Planes of the slide (1 for an ordinary slide: no plane axis).
    mpp
        ``(mpp_y, mpp_x)`` µm per level-0 pixel of the slide layer (``(1, 1)``: no mpp,
        layers in level-0 pixels).
    slide_translate
        ``translate`` of the slide image layer (its last two axes), world units.
    has_mpp
        Whether ``mpp`` is physical (µm).
    """

    origin: tuple[int, int]
    stride: int
    size: int
    grid_shape: tuple[int, int]
    n_planes: int = 1
    mpp: tuple[float, float] = (1.0, 1.0)
    slide_translate: tuple[float, float] = (0.0, 0.0)
    has_mpp: bool = False

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_results(
        cls,
        results: Any,
        *,
        slide_scale: Sequence[float] | None = None,
        slide_translate: Sequence[float] | None = None,
    ) -> TileGeometry:
        """Read the geometry from a :class:`~tileuq.TileResults` ``meta``.

        Parameters
        ----------
        results
            TileResults (``meta["spec"]`` and ``meta["slide"]`` are used).
        slide_scale, slide_translate
            The slide image layer's ``scale`` / ``translate`` (last two axes are used) when it
            deviates from the convention (µm from the slide's mpp, translate 0).
        """
        meta = results.meta
        try:
            spec = meta["spec"]
            origin = tuple(int(v) for v in spec.get("origin", (0, 0)))
            stride = int(spec["stride_level0"])
            size = int(spec["tile_size_level0"])
            grid_shape = tuple(int(v) for v in spec["grid_shape"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultsError(f"results metadata: the tiling spec is incomplete ({exc})") from exc
        slide = meta.get("slide", {}) or {}
        planes = int(slide.get("planes", 1) or 1)
        run_planes = [int(p) for p in spec.get("planes", [0])]
        n_planes = max(planes, max(run_planes, default=0) + 1)
        if slide_scale is not None:
            sy, sx = (float(v) for v in list(slide_scale)[-2:])
            has_mpp = bool(slide.get("mpp"))
        elif slide.get("mpp"):
            mx, my = (float(v) for v in slide["mpp"])
            sy, sx, has_mpp = my, mx, True
        else:
            sy, sx, has_mpp = 1.0, 1.0, False
        tr = (0.0, 0.0)
        if slide_translate is not None:
            ty, tx = (float(v) for v in list(slide_translate)[-2:])
            tr = (ty, tx)
        if stride <= 0 or size <= 0:
            raise ResultsError(f"results metadata: bad tile size {size} / stride {stride}")
        return cls(
            origin=(origin[0], origin[1]),
            stride=stride,
            size=size,
            grid_shape=(grid_shape[0], grid_shape[1]),
            n_planes=n_planes,
            mpp=(sy, sx),
            slide_translate=tr,
            has_mpp=has_mpp,
        )

    # ------------------------------------------------------------------ layer transforms
    @property
    def stacked(self) -> bool:
        """Whether layers carry a leading plane axis."""
        return self.n_planes > 1

    @property
    def units(self) -> str:
        """World units: ``"µm"`` or ``"px"`` (level-0 pixels)."""
        return "µm" if self.has_mpp else "px"

    @property
    def layer_units(self) -> tuple[str, ...]:
        """Napari ``units`` of every result layer (as the slide layer's: µm or pixel)."""
        unit = "µm" if self.has_mpp else "pixel"
        return ("pixel", unit, unit) if self.stacked else (unit, unit)

    @property
    def grid_scale(self) -> tuple[float, ...]:
        """``scale`` of a grid layer (one pixel per tile)."""
        yx = (self.stride * self.mpp[0], self.stride * self.mpp[1])
        return (1.0, *yx) if self.stacked else yx

    @property
    def grid_translate(self) -> tuple[float, ...]:
        """``translate`` of a grid layer: cell centres on tile centres (module docstring)."""
        cy = self.origin[1] + self.size / 2.0 - 0.5
        cx = self.origin[0] + self.size / 2.0 - 0.5
        yx = (
            cy * self.mpp[0] + self.slide_translate[0],
            cx * self.mpp[1] + self.slide_translate[1],
        )
        return (0.0, *yx) if self.stacked else yx

    @property
    def level0_scale(self) -> tuple[float, ...]:
        """``scale`` of a layer whose data are level-0 pixel coordinates (points, shapes)."""
        return (1.0, *self.mpp) if self.stacked else self.mpp

    @property
    def level0_translate(self) -> tuple[float, ...]:
        """``translate`` of a layer whose data are level-0 pixel coordinates."""
        return (0.0, *self.slide_translate) if self.stacked else self.slide_translate

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of a grid layer's array."""
        return (self.n_planes, *self.grid_shape) if self.stacked else self.grid_shape

    def empty(self, dtype: Any, fill: Any = 0) -> np.ndarray:
        """Return a grid array filled with ``fill``."""
        return np.full(self.shape, fill, dtype=dtype)

    # ------------------------------------------------------------------ per-tile indices
    def cells(self, table: Any) -> tuple[np.ndarray, ...]:
        """Index arrays into a grid array for every row of ``table`` (fancy indexing)."""
        rows = np.asarray(table["row"], dtype=np.intp)
        cols = np.asarray(table["col"], dtype=np.intp)
        if rows.size and (
            rows.min() < 0
            or cols.min() < 0
            or rows.max() >= self.grid_shape[0]
            or cols.max() >= self.grid_shape[1]
        ):
            raise ResultsError(f"results table: row/col outside the grid {self.grid_shape}")
        if not self.stacked:
            return rows, cols
        planes = np.asarray(table["plane"], dtype=np.intp)
        return planes, rows, cols

    def flat_cells(self, table: Any) -> np.ndarray:
        """Flat (raveled) grid index of every row of ``table``."""
        return np.ravel_multi_index(self.cells(table), self.shape)

    def tile_box_world(self, x: float, y: float) -> tuple[float, float, float, float]:
        """World ``(y0, x0, y1, x1)`` edges of the tile whose level-0 top-left is ``(x, y)``."""
        (my, mx), (ty, tx) = self.mpp, self.slide_translate
        return (
            (y - 0.5) * my + ty,
            (x - 0.5) * mx + tx,
            (y + self.size - 0.5) * my + ty,
            (x + self.size - 0.5) * mx + tx,
        )

    def tile_centre_data(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Level-0 data coordinates ``(y, x)`` of tile centres (for points layers)."""
        half = (self.size - 1) / 2.0
        return np.asarray(y, np.float64) + half, np.asarray(x, np.float64) + half

    def to_dict(self) -> dict[str, Any]:
        """Plain-dictionary form (stored in layer metadata)."""
        return {
            "origin": list(self.origin),
            "stride": self.stride,
            "size": self.size,
            "grid_shape": list(self.grid_shape),
            "n_planes": self.n_planes,
            "mpp": list(self.mpp),
            "slide_translate": list(self.slide_translate),
            "has_mpp": self.has_mpp,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TileGeometry:
        """Inverse of :meth:`to_dict`."""
        return cls(
            origin=(int(d["origin"][0]), int(d["origin"][1])),
            stride=int(d["stride"]),
            size=int(d["size"]),
            grid_shape=(int(d["grid_shape"][0]), int(d["grid_shape"][1])),
            n_planes=int(d.get("n_planes", 1)),
            mpp=(float(d["mpp"][0]), float(d["mpp"][1])),
            slide_translate=(float(d["slide_translate"][0]), float(d["slide_translate"][1])),
            has_mpp=bool(d.get("has_mpp", False)),
        )
