"""A thumbnail with the tissue mask and the tile grid drawn over it (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tileuq._io import atomic_path

if TYPE_CHECKING:
    from tileuq.slide import Slide
    from tileuq.tiling.grid import TileGrid


def draw_tiling_preview(slide: Slide, grid: TileGrid, max_size: int = 1024) -> np.ndarray:
    """Return an RGB ``uint8`` thumbnail with background dimmed and kept tiles outlined.

    Background (outside the tissue mask) is blended towards grey; each kept tile is outlined in
    a colour running from yellow (tissue fraction = ``min_tissue``) to green (fully tissue).
    """
    from PIL import Image, ImageDraw

    thumb = slide.thumbnail(max_size, plane=grid.plane)
    th, tw = thumb.shape[:2]
    sx, sy = tw / slide.dimensions[0], th / slide.dimensions[1]
    img = thumb.astype(np.float32)
    if grid.mask is not None:
        m = np.asarray(
            Image.fromarray(grid.mask.mask.astype(np.uint8) * 255).resize(
                (tw, th), Image.Resampling.NEAREST
            )
        )
        bg = m == 0
        img[bg] = 0.45 * img[bg] + 0.55 * 160.0
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    lo = grid.spec.min_tissue
    for (x, y), t in zip(grid.coords, grid.tissue, strict=True):
        a = 1.0 if lo >= 1 else float(np.clip((t - lo) / (1 - lo), 0, 1))
        colour = (int(255 * (1 - a)), 200, 0)
        x0, y0 = x * sx, y * sy
        s = grid.tile_size_level0
        draw.rectangle([x0, y0, x0 + s * sx - 1, y0 + s * sy - 1], outline=colour, width=1)
    return np.asarray(pil)


def write_tiling_preview(
    slide: Slide, grid: TileGrid, path: str | Path, max_size: int = 1024
) -> None:
    """Draw the preview and write it to ``path`` (PNG, atomically)."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(draw_tiling_preview(slide, grid, max_size)).save(tmp, format="PNG")
