"""Tissue detection and tiling time on every slide available here.

Prints a table (slide, size, levels, mask time, grid time, tiles) and writes
``benchmarks/results/tiling.json``.  Goal: tissue mask < 1 s for any slide here.

Run: ``.venv/bin/python benchmarks/tiling.py``
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TILEUQ_SHARED_DATA", REPO.parent / "shared" / "data"))


def main() -> int:
    import tileuq
    from tileuq.tiling import tile_grid, tissue_mask

    slides = [REPO / "sample_data" / "CMU-1-Small-Region.svs"]
    if (SHARED / "slides").is_dir():
        slides += sorted(p for p in (SHARED / "slides").iterdir() if p.is_file())
    else:
        print(f"note: {SHARED} not found; only the bundled sample slide is measured")
    rows = []
    for path in slides:
        with tileuq.open_slide(path, mpp=None) as slide:
            mpp = slide.mpp
            opened = tileuq.open_slide(path, mpp=0.5) if mpp is None else slide
            t0 = time.perf_counter()
            mask = tissue_mask(opened)
            t_mask = min(
                [time.perf_counter() - t0]
                + [_timed(lambda s=opened: tissue_mask(s)) for _ in range(2)]
            )
            t0 = time.perf_counter()
            grid = tile_grid(opened, tile_px=224, mpp=0.5, mask=mask)
            t_grid = time.perf_counter() - t0
            rows.append(
                {
                    "slide": path.name,
                    "vendor": slide.vendor,
                    "dimensions": list(slide.dimensions),
                    "levels": slide.level_count,
                    "mask_s": round(t_mask, 3),
                    "grid_s": round(t_grid, 4),
                    "tiles": len(grid),
                    "tissue_fraction": round(mask.tissue_fraction, 3),
                    "mask_method": mask.method,
                }
            )
    print(f"{'slide':40s} {'size':>12s} {'lv':>3s} {'mask s':>7s} {'grid s':>7s} {'tiles':>6s}")
    for r in rows:
        size = "x".join(map(str, r["dimensions"]))
        print(
            f"{r['slide']:40s} {size:>12s} {r['levels']:>3d} {r['mask_s']:>7.3f} "
            f"{r['grid_s']:>7.4f} {r['tiles']:>6d}"
        )
    out = REPO / "benchmarks" / "results" / "tiling.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    worst = max(r["mask_s"] for r in rows)
    print(f"slowest tissue mask: {worst:.3f} s (goal < 1 s)")
    return 0


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    sys.exit(main())
