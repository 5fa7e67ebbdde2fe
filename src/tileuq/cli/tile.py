"""``tileuq tile``: open slides, detect tissue, lay the tile grid, write a summary and a preview."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``tile`` sub-command."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "tile",
        help="tile slides and write a tiling summary and a preview with the grid drawn",
        description=(
            "Open each slide, detect tissue, lay a tile grid at the requested resolution and "
            "write <out>/<slide>/tiling.json plus tiling.png (thumbnail with tissue tiles drawn)."
        ),
    )
    p.add_argument("slides", nargs="+", type=Path, help="slide files or image folders")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--tile-px", type=int, default=224, help="tile side in pixels (224)")
    res = p.add_mutually_exclusive_group()
    res.add_argument("--mpp", type=float, help="target resolution in µm per pixel")
    res.add_argument("--tile-um", type=float, help="tile side in µm (instead of --mpp)")
    p.add_argument("--overlap", type=int, default=0, help="overlap in tile pixels (0)")
    p.add_argument("--min-tissue", type=float, default=0.5, help="minimum tissue fraction (0.5)")
    p.add_argument("--slide-mpp", type=float, help="resolution of slides that do not record one")
    p.add_argument("--thumbnail-size", type=int, default=1024, help="preview size (1024)")
    return p


def run(args: argparse.Namespace) -> int:
    """Tile every slide; return 1 if any failed."""
    from tileuq._io import write_json
    from tileuq.errors import TileuqError
    from tileuq.slide import open_slide
    from tileuq.tiling import tile_grid
    from tileuq.tiling.preview import write_tiling_preview

    failed = 0
    for path in args.slides:
        folder = args.out / path.stem
        try:
            with open_slide(path, mpp=args.slide_mpp) as slide:
                grid = tile_grid(
                    slide,
                    tile_px=args.tile_px,
                    mpp=args.mpp,
                    tile_um=args.tile_um,
                    overlap=args.overlap,
                    min_tissue=args.min_tissue,
                )
                summary = tiling_summary(slide.describe(), grid)
                write_json(folder / "tiling.json", summary)
                write_tiling_preview(slide, grid, folder / "tiling.png", args.thumbnail_size)
        except TileuqError as exc:
            failed += 1
            print(f"{path}: error: {exc}", file=sys.stderr)
            continue
        area = summary["tissue_area_mm2"]
        area_s = f"{area:.2f} mm² tissue" if area is not None else "tissue area unknown (no mpp)"
        print(
            f"{path.name}: {summary['n_tiles']} tiles of {args.tile_px} px "
            f"({grid.grid_shape[0]}x{grid.grid_shape[1]} lattice), {area_s} -> {folder}"
        )
    return 1 if failed else 0


def tiling_summary(slide_info: dict[str, Any], grid: Any) -> dict[str, Any]:
    """Build the JSON summary of a tiling."""
    area = grid.tissue_area_um2
    return {
        "slide": slide_info,
        "grid": grid.to_dict(),
        "n_tiles": len(grid),
        "tissue_area_mm2": None if area is None else area / 1e6,
        "tiles": [
            {"x": int(x), "y": int(y), "row": int(r), "col": int(c), "tissue": round(float(t), 4)}
            for (x, y), r, c, t in zip(grid.coords, grid.rows, grid.cols, grid.tissue, strict=True)
        ]
        if len(grid) <= 100_000
        else "omitted (more than 100000 tiles)",
    }
