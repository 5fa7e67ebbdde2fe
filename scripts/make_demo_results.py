"""Precompute the demo model's results on the sample slide for the napari sample data.

Writes ``sample_data/demo_results/``: ``tiles.parquet`` + ``run.json`` (a TileResults folder)
and ``calibration.json``.  The calibration is, in order of preference:

1. the one the model carries in its manifest (``model.json``),
2. ``tileuq.calibrate(model, --tiles DIR, target_coverage=...)`` on a labelled tile folder,
3. a coverage calibration on the slide's own tiles (stated in the calibration's guarantee: it
   describes this slide only) — so the sample always shows rejected regions.

Usage::

    .venv/bin/python scripts/make_demo_results.py [--model sample_data/demo_model]
        [--tiles DIR] [--coverage 0.9] [--out sample_data/demo_results]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(REPO / "sample_data" / "demo_model"))
    ap.add_argument("--slide", default=str(REPO / "sample_data" / "CMU-1-Small-Region.svs"))
    ap.add_argument("--out", default=str(REPO / "sample_data" / "demo_results"))
    ap.add_argument("--tiles", default=None, help="labelled tile folder for the calibration")
    ap.add_argument("--coverage", type=float, default=0.9)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    import tileuq
    from tileuq.uncertainty import Calibration, calibrate, calibrate_scores, default_scores

    model = tileuq.load_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        results = tileuq.run_slide(args.slide, model, device=args.device, out=Path(tmp) / "run")
    # no machine-specific absolute path in a file that ships with the package
    results.meta["slide"]["path"] = Path(args.slide).name
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    results.save(out)

    cal = None
    manifest_cal = (model.manifest or {}).get("calibration")
    if manifest_cal:
        cal = Calibration.from_dict(manifest_cal)
        how = "the model's manifest"
    elif args.tiles:
        cal = calibrate(model, args.tiles, target_coverage=args.coverage)
        how = f"labelled tiles in {args.tiles}"
    else:
        names = default_scores(results.score_names)
        cal = calibrate_scores(
            {s: results.table[s].to_numpy() for s in names},
            target_coverage=args.coverage,
            guarantee="marginal",  # a small slide: the PAC version needs more tiles
            model_hash=model.model_hash,
            model_id=model.model_id,
            classes=list(model.classes),
            info={"source": "demo: the sample slide's own tiles (unlabelled)"},
        )
        how = "the slide's own tiles (demo only; no guarantee for other slides)"
    cal.save(out / "calibration.json")
    applied = cal.apply(results).table
    print(
        f"{len(results)} tiles, grid {results.grid_shape}; calibration from {how}: "
        f"{int(applied['rejected'].sum())} rejected ({applied['reason'].value_counts().to_dict()})"
    )
    for p in sorted(out.iterdir()):
        print(f"  {p.relative_to(REPO) if p.is_relative_to(REPO) else p}: {p.stat().st_size} B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
