"""Tile grids laid at a physical resolution.

A :class:`TileSpec` says what a tile is (``tile_px`` pixels at ``mpp`` µm/px, or ``tile_um``
µm wide) and :func:`tile_grid` lays a regular lattice of such tiles over a slide, keeps those
with enough tissue and records, for each tile, its level-0 position, its lattice row/column
and its tissue fraction.

Geometry (all sizes rounded to whole level-0 pixels so tiles align exactly with the slide):

* ``f = mpp / slide_mpp`` level-0 pixels per tile pixel;
* ``tile_size_level0 = round(tile_px * f)``, ``stride_level0 = round((tile_px - overlap) * f)``;
* tile ``(row, col)`` has its top-left corner at ``(col * stride_level0, row * stride_level0)``;
* the pyramid level read is the coarsest whose downsample is ``<= f`` (never upsample), the
  region read there is ``read_size = round(tile_size_level0 / downsample)`` pixels and is
  resized to ``tile_px`` with an antialiasing filter when the two differ.

By default only whole tiles inside the slide are laid (``include_partial=False``): a strip
narrower than one stride at the right and bottom edges is not covered.  With
``include_partial=True`` the lattice covers the whole slide and edge tiles are padded white.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tileuq.errors import TilingError
from tileuq.tiling.tissue import TissueMask, tissue_mask

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from tileuq.slide import Slide


@dataclass(frozen=True)
class TileSpec:
    """What a tile is; validated at construction.

    Parameters
    ----------
    tile_px
        Side of a tile in pixels, as the model sees it.
    mpp
        Target resolution in µm per pixel.  ``None``: the slide's native level-0 resolution.
    tile_um
        Alternative to ``mpp``: side of a tile in µm (``mpp = tile_um / tile_px``).
    overlap
        Overlap of neighbouring tiles in tile pixels (``0 <= overlap < tile_px``).
    min_tissue
        Keep tiles whose tissue fraction is at least this (0 keeps every tile).
    plane
        Plane of an image stack.
    include_partial
        Also lay tiles that run off the right/bottom edge (padded white).
    """

    tile_px: int
    mpp: float | None = None
    tile_um: float | None = None
    overlap: int = 0
    min_tissue: float = 0.5
    plane: int = 0
    include_partial: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.tile_px, bool) or not isinstance(self.tile_px, (int, np.integer)):
            raise TilingError(f"tile_px must be an integer, got {self.tile_px!r}")
        if self.tile_px <= 0:
            raise TilingError(f"tile_px must be positive, got {self.tile_px}")
        if isinstance(self.overlap, bool) or not isinstance(self.overlap, (int, np.integer)):
            raise TilingError(f"overlap must be an integer number of pixels, got {self.overlap!r}")
        if not 0 <= self.overlap < self.tile_px:
            raise TilingError(
                f"overlap must be in [0, tile_px) = [0, {self.tile_px}), got {self.overlap}"
            )
        if self.mpp is not None and self.tile_um is not None:
            raise TilingError(
                f"give either mpp or tile_um, not both (mpp={self.mpp}, tile_um={self.tile_um})"
            )
        for name in ("mpp", "tile_um"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise TilingError(f"{name} must be a positive number of µm, got {v!r}")
        if not 0.0 <= float(self.min_tissue) <= 1.0:
            raise TilingError(f"min_tissue must be in [0, 1], got {self.min_tissue}")
        if self.plane < 0:
            raise TilingError(f"plane must be >= 0, got {self.plane}")
        object.__setattr__(self, "tile_px", int(self.tile_px))
        object.__setattr__(self, "overlap", int(self.overlap))

    @property
    def target_mpp(self) -> float | None:
        """The requested resolution in µm/px (from ``mpp`` or ``tile_um``), or ``None``."""
        if self.tile_um is not None:
            return float(self.tile_um) / self.tile_px
        return None if self.mpp is None else float(self.mpp)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly copy."""
        return asdict(self)


@dataclass(frozen=True, eq=False)
class TileGrid:
    """Tiles of one slide plane: positions, lattice indices and tissue fractions.

    Attributes
    ----------
    spec
        The validated :class:`TileSpec`.
    mpp
        Resolution of the tiles in µm/px (``None`` when neither the slide nor the user gave one).
    slide_mpp
        The slide's level-0 resolution used for the geometry (``None`` if unknown).
    slide_dimensions
        Level-0 ``(w, h)`` of the slide.
    tile_size_level0, stride_level0
        Tile side and lattice step in level-0 pixels.
    level, level_downsample, read_size
        Pyramid level read, its downsample, and the side of the region read there.
    grid_shape
        ``(n_rows, n_cols)`` of the full lattice (kept and dropped tiles).
    coords
        ``(N, 2)`` level-0 ``(x, y)`` of the kept tiles, in row-major lattice order.
    rows, cols
        ``(N,)`` lattice indices of the kept tiles.
    tissue
        ``(N,)`` tissue fraction of the kept tiles.
    mask
        The :class:`TissueMask` used (``None`` when ``min_tissue == 0`` and none was given).
    """

    spec: TileSpec
    mpp: float | None
    slide_mpp: float | None
    slide_dimensions: tuple[int, int]
    tile_size_level0: int
    stride_level0: int
    level: int
    level_downsample: float
    read_size: int
    grid_shape: tuple[int, int]
    coords: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    tissue: np.ndarray
    mask: TissueMask | None = None

    @property
    def tile_px(self) -> int:
        """Side of a tile in pixels as read (after resizing)."""
        return self.spec.tile_px

    @property
    def plane(self) -> int:
        """Plane of the stack these tiles come from."""
        return self.spec.plane

    def __len__(self) -> int:
        return int(self.coords.shape[0])

    def __repr__(self) -> str:
        mpp = f"{self.mpp:.4g} µm/px" if self.mpp else "native px"
        return (
            f"<TileGrid {len(self)} tiles of {self.tile_px} px at {mpp}, lattice "
            f"{self.grid_shape[0]}x{self.grid_shape[1]}, level {self.level}, "
            f"{self.tile_size_level0} level-0 px per tile>"
        )

    def read_tile(self, slide: Slide, i: int) -> np.ndarray:
        """Read tile ``i`` as ``(tile_px, tile_px, 3)`` uint8."""
        x, y = (int(v) for v in self.coords[i])
        region = slide.read_region(
            (x, y), self.level, (self.read_size, self.read_size), plane=self.plane
        )
        return resize_tile(region, self.tile_px)

    def read_batch(self, slide: Slide, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Read several tiles as ``(B, tile_px, tile_px, 3)`` uint8 (sequentially)."""
        out = np.empty((len(indices), self.tile_px, self.tile_px, 3), dtype=np.uint8)
        for k, i in enumerate(indices):
            out[k] = self.read_tile(slide, int(i))
        return out

    def iter_batches(
        self, slide: Slide, batch_size: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(indices, tiles)`` batches in grid order (a simple sequential reader)."""
        for start in range(0, len(self), batch_size):
            idx = np.arange(start, min(start + batch_size, len(self)))
            yield idx, self.read_batch(slide, idx)

    def index_grid(self) -> np.ndarray:
        """``(n_rows, n_cols)`` int array: index of the kept tile at each lattice cell, or -1."""
        g = np.full(self.grid_shape, -1, dtype=np.int64)
        g[self.rows, self.cols] = np.arange(len(self))
        return g

    @property
    def tissue_area_um2(self) -> float | None:
        """Area covered by the kept tiles' tissue in µm² (``None`` without mpp)."""
        if self.slide_mpp is None:
            return None
        return float(self.tissue.sum()) * (self.tile_size_level0 * self.slide_mpp) ** 2

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description of the geometry (not the per-tile arrays)."""
        return {
            "spec": self.spec.to_dict(),
            "mpp": self.mpp,
            "slide_mpp": self.slide_mpp,
            "slide_dimensions": list(self.slide_dimensions),
            "tile_size_level0": self.tile_size_level0,
            "stride_level0": self.stride_level0,
            "level": self.level,
            "level_downsample": self.level_downsample,
            "read_size": self.read_size,
            "grid_shape": list(self.grid_shape),
            "n_tiles": len(self),
            "tissue_mask": self.mask.to_dict() if self.mask is not None else None,
        }


def resize_tile(region: np.ndarray, tile_px: int) -> np.ndarray:
    """Resize a square RGB region to ``tile_px`` (antialiased bilinear; no-op when equal)."""
    if region.shape[0] == tile_px and region.shape[1] == tile_px:
        return region
    from PIL import Image

    img = Image.fromarray(region).resize((tile_px, tile_px), Image.Resampling.BILINEAR)
    return np.asarray(img)


def _resolve_mpp(slide: Slide, spec: TileSpec) -> tuple[float | None, float | None]:
    """Return ``(slide_mpp, target_mpp)`` following the rules in :func:`tile_grid`."""
    target = spec.target_mpp
    if slide.mpp is None:
        if target is None:
            raise TilingError(
                f"{slide.name}: the slide does not record its resolution (no mpp), so tiles "
                "cannot be laid by µm; pass mpp= (the slide's µm per pixel) or open it with "
                "open_slide(path, mpp=...)"
            )
        # The user states the resolution of an image that does not record one.
        return target, target
    mx, my = slide.mpp
    if abs(mx - my) > 0.01 * max(mx, my):
        warnings.warn(
            f"{slide.name}: anisotropic pixels (mpp x={mx:.4g}, y={my:.4g}); tiles are square "
            f"in level-0 pixels at the mean resolution {(mx + my) / 2:.4g} µm/px",
            stacklevel=3,
        )
    slide_mpp = (mx + my) / 2.0
    return slide_mpp, (slide_mpp if target is None else target)


def tile_grid(
    slide: Slide,
    *,
    tile_px: int,
    mpp: float | None = None,
    tile_um: float | None = None,
    overlap: int = 0,
    min_tissue: float = 0.5,
    plane: int = 0,
    include_partial: bool = False,
    mask: TissueMask | None = None,
) -> TileGrid:
    """Lay a grid of ``tile_px`` tiles at ``mpp`` µm/px over ``slide`` and keep tissue tiles.

    Parameters
    ----------
    slide
        An open :class:`~tileuq.slide.Slide`.
    tile_px
        Tile side in pixels.
    mpp, tile_um
        Target resolution (µm/px) or tile side in µm; at most one.  With neither, tiles are
        taken at the slide's level-0 resolution.  When the slide does not record its mpp, the
        value given is taken as the slide's own resolution (tiles are read at level 0, not
        resized); with neither, a :class:`~tileuq.errors.TilingError` asks for one.
    overlap
        Overlap of neighbouring tiles, in tile pixels.
    min_tissue
        Minimum tissue fraction of a kept tile (0 keeps all tiles).
    plane
        Plane of an image stack.
    include_partial
        Also lay tiles that run off the right/bottom edge (padded white when read).
    mask
        A precomputed :class:`TissueMask` (computed with :func:`tissue_mask` when needed).

    Returns
    -------
    TileGrid
    """
    spec = TileSpec(
        tile_px=tile_px,
        mpp=mpp,
        tile_um=tile_um,
        overlap=overlap,
        min_tissue=min_tissue,
        plane=plane,
        include_partial=include_partial,
    )
    if plane >= slide.planes:
        raise TilingError(
            f"{slide.name}: plane {plane} does not exist (the slide has {slide.planes} planes)"
        )
    slide_mpp, target = _resolve_mpp(slide, spec)
    f = 1.0 if slide_mpp is None or target is None else target / slide_mpp
    size0 = max(1, round(spec.tile_px * f))
    stride0 = max(1, round((spec.tile_px - spec.overlap) * f))
    level = slide.get_best_level_for_downsample(f)
    ds = float(slide.level_downsamples[level])
    read_size = max(1, round(size0 / ds))

    w, h = slide.dimensions
    n_cols, n_rows = (
        _count(w, size0, stride0, include_partial),
        _count(h, size0, stride0, include_partial),
    )
    rr, cc = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
    rows, cols = rr.ravel(), cc.ravel()
    coords = np.stack([cols * stride0, rows * stride0], axis=1).astype(np.int64)

    if mask is None and len(coords):
        mask = tissue_mask(slide, plane=plane)
    tissue = mask.fractions(coords, size0, size0) if mask is not None else np.zeros(0)
    keep = tissue >= spec.min_tissue - 1e-9
    return TileGrid(
        spec=spec,
        mpp=target,
        slide_mpp=slide_mpp,
        slide_dimensions=(int(w), int(h)),
        tile_size_level0=int(size0),
        stride_level0=int(stride0),
        level=int(level),
        level_downsample=ds,
        read_size=int(read_size),
        grid_shape=(int(n_rows), int(n_cols)),
        coords=coords[keep],
        rows=rows[keep].astype(np.int64),
        cols=cols[keep].astype(np.int64),
        tissue=tissue[keep].astype(np.float64),
        mask=mask,
    )


def _count(length: int, size: int, stride: int, include_partial: bool) -> int:
    """Count lattice positions along one axis."""
    if length <= 0:
        return 0
    if include_partial:
        return 1 if length <= size else math.ceil((length - size) / stride) + 1
    return 0 if length < size else (length - size) // stride + 1
