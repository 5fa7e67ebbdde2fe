"""Export benchmark: GeoJSON per tile vs merged, heatmap PNG / OME-TIFF and report, 50k tiles.

By default the results are a synthetic 50k-tile slide (a 270 x 270 grid of 448-px tiles,
~121k x 121k px at 0.25 µm/px, an elliptical tissue region, four classes forming smooth
regions as a trained model's map does, and spatially smooth scores); a real results folder can
be given instead.  Prints a table and writes ``benchmarks/results/export.json``.

    .venv/bin/python benchmarks/export.py [RESULTS_DIR]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from tileuq.engine.results import TileResults, build_table
from tileuq.export.geojson import results_to_geojson, write_geojson
from tileuq.export.heatmap import write_heatmap_png
from tileuq.export.ometiff import write_heatmap_tiff
from tileuq.export.report import write_report
from tileuq.uncertainty.fit import calibrate_scores

OUT = Path(__file__).resolve().parent / "results" / "export.json"
CLASSES = ["tumour", "stroma", "necrosis", "fat"]


def synthetic(n: int = 270, tile: int = 448, seed: int = 0) -> TileResults:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n]
    tissue = ((yy - n / 2) / (0.47 * n)) ** 2 + ((xx - n / 2) / (0.47 * n)) ** 2 <= 1
    field = ndimage.gaussian_filter(rng.normal(size=(n, n, len(CLASSES))), (7, 7, 0))
    logits = field / field.std() * 3
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    rows, cols = np.nonzero(tissue)
    prob = p[rows, cols]
    odd = ndimage.gaussian_filter(rng.normal(size=(n, n)), 5)
    variance = (odd / odd.std())[rows, cols] + 0.2 * rng.normal(size=rows.size)
    entropy = -(prob * np.log(prob)).sum(1)
    geom = {
        "x": cols * tile,
        "y": rows * tile,
        "size": np.full(rows.size, tile),
        "row": rows,
        "col": cols,
        "plane": np.zeros(rows.size, int),
        "tissue": rng.uniform(0.5, 1, rows.size),
    }
    scores = {"variance": variance, "entropy": entropy}
    table = build_table(geom, prob, prob.argmax(1), prob.max(1), scores, CLASSES, list(scores))
    meta = {
        "status": "complete",
        "slide": {
            "name": "synthetic-50k",
            "dimensions": [n * tile, n * tile],
            "mpp": [0.25, 0.25],
            "header_hash": "synthetic",
        },
        "model": {
            "id": "synthetic",
            "hash": "synthetic",
            "classes": CLASSES,
            "colors": ["#d62728", "#e377c2", "#7f7f7f", "#ffdd57"],
            "score_names": list(scores),
        },
        "spec": {
            "grid_shape": [n, n],
            "stride_level0": tile,
            "tile_size_level0": tile,
            "planes": [0],
            "mpp": 0.5,
            "slide_mpp": 0.25,
        },
    }
    return TileResults(table, meta)


def timed(fn, *args, **kw):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def main() -> None:
    res = TileResults.load(sys.argv[1]) if len(sys.argv) > 1 else synthetic()
    t = res.table
    cal = calibrate_scores(
        {"variance": t["variance"], "entropy": t["entropy"]}, target_coverage=0.9, delta=0.05
    )
    rows: list[tuple[str, str]] = []
    figures: dict[str, float | int] = {"tiles": len(t)}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        fc_tiles, s_tiles = timed(results_to_geojson, res, cal)
        _, s_write = timed(write_geojson, fc_tiles, d / "tiles.geojson")
        fc_merged, s_merged = timed(results_to_geojson, res, cal, merge=True)
        write_geojson(fc_merged, d / "regions.geojson")
        n_rej = sum(
            f["properties"]["classification"]["name"].startswith("Rejected")
            for f in fc_merged["features"]
        )
        figures |= {
            "features_per_tile": len(fc_tiles["features"]),
            "features_merged": len(fc_merged["features"]),
            "features_merged_rejected": n_rej,
            "geojson_tiles_s": s_tiles + s_write,
            "geojson_merged_s": s_merged,
            "geojson_tiles_mb": (d / "tiles.geojson").stat().st_size / 1e6,
            "geojson_merged_mb": (d / "regions.geojson").stat().st_size / 1e6,
            "rejected_fraction": float(cal.apply(res).table["rejected"].mean()),
        }
        _, figures["png_s"] = timed(
            write_heatmap_png, res, d / "h.png", "variance", calibration=cal
        )
        _, figures["ome_tiff_s"] = timed(
            write_heatmap_tiff, res, d / "h.ome.tif", "class", calibration=cal
        )
        figures["ome_tiff_mb"] = (d / "h.ome.tif").stat().st_size / 1e6
        _, figures["report_s"] = timed(write_report, res, d / "r.html", calibration=cal)
        figures["report_mb"] = (d / "r.html").stat().st_size / 1e6
    for k, v in figures.items():
        rows.append((k, f"{v:.3f}" if isinstance(v, float) else str(v)))
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k.ljust(width)}  {v}" for k, v in rows))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written {OUT}")


if __name__ == "__main__":
    main()
