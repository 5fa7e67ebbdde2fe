"""Tissue detection and tile grids at a physical resolution."""

from tileuq.tiling.grid import TileGrid, TileSpec, resize_tile, tile_grid
from tileuq.tiling.tissue import TissueMask, tissue_mask

__all__ = ["TileGrid", "TileSpec", "TissueMask", "resize_tile", "tile_grid", "tissue_mask"]
