"""Where the engine's tiles come from: block reads in a read-friendly order, same pixels.

:meth:`TileGrid.read_tile` reads one region per tile.  Neighbouring tiles share the slide's
native (JPEG) tiles, so reading them one by one decodes most native tiles several times.
:class:`TileSource` instead

* processes tiles in **blocked order**: bands of :data:`BAND_ROWS` lattice rows, column by
  column (the results table is still written in grid order), so a batch covers a compact
  block of the slide;
* reads each run of neighbouring tiles with **one** ``read_region`` and cuts the tiles out of
  it, when that is exactly equivalent (level 0, or an integer downsample dividing the
  stride); the cut tiles go through the same :func:`tileuq.tiling.resize_tile`;
* for TIFF slides opened by OpenSlide, reads through the tifffile backend when it decodes
  the **same pixels** — checked on sample tiles and blocks of this slide before it is used —
  because it decodes straight to RGB (no ARGB premultiplication and compositing) with the
  GIL released.

Every path gives the pixels of ``grid.read_tile(slide, i)``, bit for bit.
"""

from __future__ import annotations

import itertools
import logging
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tileuq.slide import Slide
    from tileuq.tiling import TileGrid

log = logging.getLogger(__name__)

#: lattice rows per band of the blocked processing order
BAND_ROWS = 4
#: most lattice columns read by one region
MAX_BLOCK_COLS = 32
#: tiles checked when deciding whether the fast TIFF handle gives the slide's pixels
VERIFY_TILES = 6


def processing_order(grids: list[TileGrid]) -> np.ndarray:
    """Global tile indices in blocked order: plane, band of rows, column, row."""
    parts = []
    offset = 0
    for g in grids:
        key = np.lexsort((g.rows, g.cols, g.rows // BAND_ROWS))
        parts.append(key.astype(np.int64) + offset)
        offset += len(g)
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


def blocks_exact(grid: TileGrid) -> bool:
    """Whether cutting tiles out of one larger region gives the per-tile pixels exactly."""
    ds = float(grid.level_downsample)
    if grid.level == 0 and ds == 1.0:
        return True
    return ds.is_integer() and grid.stride_level0 % int(ds) == 0


class TileSource:
    """Read batches of tiles (global indices) of one slide's grids.

    Parameters
    ----------
    slide
        The open slide (the reference for pixels).
    grids
        One grid per plane run; global index ``offsets[p] + i`` is tile ``i`` of ``grids[p]``.
    fast
        Allow the verified tifffile handle and block reads (``False``: ``grid.read_batch``).
    """

    def __init__(self, slide: Slide, grids: list[TileGrid], *, fast: bool = True) -> None:
        self.slide = slide
        self.grids = grids
        self.offsets = np.cumsum([0] + [len(g) for g in grids])
        self.blocks = fast and all(blocks_exact(g) for g in grids)
        self.handle: Slide = slide
        self._own_handle = False
        self.kind = "slide"
        if fast and len(self):
            self._try_tiff_handle()

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def describe(self) -> dict[str, Any]:
        """How tiles are read (recorded in ``run.json``)."""
        return {"handle": self.kind, "block_reads": bool(self.blocks), "band_rows": BAND_ROWS}

    # ------------------------------------------------------------------ reading
    def read(self, indices: np.ndarray) -> np.ndarray:
        """Read tiles (global indices of one plane) as ``(B, tile_px, tile_px, 3)`` uint8."""
        indices = np.asarray(indices, dtype=np.int64)
        p = int(np.searchsorted(self.offsets, indices[0], "right")) - 1
        return self._read_local(self.handle, self.grids[p], indices - self.offsets[p])

    def _read_local(self, handle: Slide, g: TileGrid, local: np.ndarray) -> np.ndarray:
        from tileuq.tiling import resize_tile

        out = np.empty((len(local), g.tile_px, g.tile_px, 3), dtype=np.uint8)
        if not self.blocks:
            for k, i in enumerate(local):
                out[k] = g.read_tile(handle, int(i))
            return out
        rows, cols = g.rows[local], g.cols[local]
        ds = float(g.level_downsample)
        step = round(g.stride_level0 / ds)  # level pixels between lattice neighbours
        rs = g.read_size
        for sel in _groups(rows, cols):
            r0, c0 = int(rows[sel].min()), int(cols[sel].min())
            r1, c1 = int(rows[sel].max()), int(cols[sel].max())
            x0, y0 = (int(v) for v in g.coords[local[sel[0]]])
            x0 -= (int(cols[sel[0]]) - c0) * g.stride_level0
            y0 -= (int(rows[sel[0]]) - r0) * g.stride_level0
            size = ((c1 - c0) * step + rs, (r1 - r0) * step + rs)
            region = handle.read_region((x0, y0), g.level, size, plane=g.plane)
            for k in sel:
                oy, ox = (int(rows[k]) - r0) * step, (int(cols[k]) - c0) * step
                out[k] = resize_tile(region[oy : oy + rs, ox : ox + rs], g.tile_px)
        return out

    # ------------------------------------------------------------------ fast handle
    def _try_tiff_handle(self) -> None:
        """Use the tifffile backend for an OpenSlide TIFF when it gives identical pixels."""
        slide = self.slide
        path = slide.path
        if path is None or not path.is_file() or type(slide).__name__ != "OpenSlideSlide":
            return
        try:
            with open(path, "rb") as f:
                if f.read(4) not in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
                    return
            from tileuq.slide import open_slide

            fast = open_slide(path, backend="tifffile", mpp=slide.mpp)
        except Exception as exc:  # tifffile cannot read it: keep OpenSlide
            log.debug("%s: no tifffile handle (%s)", slide.name, exc)
            return
        if fast.level_dimensions != slide.level_dimensions or not self._same_pixels(fast):
            log.info(
                "%s: tifffile pixels differ from OpenSlide's; reading with OpenSlide", slide.name
            )
            fast.close()
            return
        self.handle, self._own_handle, self.kind = fast, True, "tifffile"

    def _same_pixels(self, fast: Slide) -> bool:
        """Compare sample tiles (and one block) read by ``fast`` with the reference reads."""
        try:
            for g in self.grids[:1]:
                n = len(g)
                pick = np.unique(np.linspace(0, n - 1, min(n, VERIFY_TILES)).astype(np.int64))
                ref = np.stack([g.read_tile(self.slide, int(i)) for i in pick])
                if not np.array_equal(self._read_local(fast, g, pick), ref):
                    return False
                run = np.arange(min(n, 8))  # neighbours, read as a block when allowed
                ref = np.stack([g.read_tile(self.slide, int(i)) for i in run])
                if not np.array_equal(self._read_local(fast, g, run), ref):
                    return False
        except Exception as exc:
            log.debug("tifffile verification failed: %s", exc)
            return False
        return True

    def close(self) -> None:
        """Close the extra handle (the caller's slide stays open)."""
        if self._own_handle:
            self.handle.close()
            self._own_handle = False


def _groups(rows: np.ndarray, cols: np.ndarray) -> list[np.ndarray]:
    """Split a batch into runs of neighbouring tiles read by one region each.

    A new group starts where the band changes, the column jumps by more than one, or the
    group would exceed :data:`MAX_BLOCK_COLS` columns.
    """
    n = len(rows)
    if n == 0:
        return []
    band = rows // BAND_ROWS
    starts = [0]
    c_start = int(cols[0])
    for k in range(1, n):
        c = int(cols[k])
        if (
            band[k] != band[k - 1]
            or not 0 <= c - int(cols[k - 1]) <= 1
            or c - c_start >= MAX_BLOCK_COLS
        ):
            starts.append(k)
            c_start = c
    bounds = [*starts, n]
    return [np.arange(a, b) for a, b in itertools.pairwise(bounds)]
