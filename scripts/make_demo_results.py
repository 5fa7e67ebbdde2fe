"""Precompute the demo model's results on the sample slide for the napari sample data.

Writes ``sample_data/demo_results/``: ``tiles.parquet`` + ``run.json`` (a TileResults folder)
and ``calibration.json``.  The calibration is, in order of preference:

1. the one the model carries in its manifest (``model.json``),
2. ``tileuq.calibrate(model, tiles, target_coverage=...)`` on labelled tiles: ``--tiles DIR``
   (one sub-folder per class), restricted to one split of ``--split-file`` when given.  By
   default the demo model's own calibration split (``benchmarks/splits/colorectal_split.json``,
   part ``calibration``) of ``../shared/data/tiles/colorectal_polyp_flagy_5class`` is used
   when that folder exists,
3. a coverage calibration on the slide's own tiles (stated in the calibration's guarantee: it
   describes this slide only) — so the sample always shows rejected regions.

The demo model was trained on colorectal tiles and the sample slide is skin: calibrated on
colorectal tiles, the shift alarm fires; with a coverage target (0.9) no single tile is
rejected — the slide-level alarm catches what per-tile rules miss — while a risk target
(0.2) rejects nearly every tile.  ``--overlap`` (tile pixels) makes the grid denser.

Usage::

    .venv/bin/python scripts/make_demo_results.py [--model sample_data/demo_model]
        [--tiles DIR [--split-file F --split NAME]] [--coverage 0.9 | --risk 0.2]
        [--overlap 56] [--min-tissue 0.2] [--out sample_data/demo_results]

The shipped ``sample_data/demo_results`` were made with
``--risk 0.2 --overlap 56 --min-tissue 0.2`` (see ``sample_data/SOURCES.md``): a risk target
the 120 calibration tiles can certify (the model's error rate there is 0.2); a denser,
overlapping grid (cells are the stride squares centred on the tiles).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TILES = REPO.parent / "shared" / "data" / "tiles" / "colorectal_polyp_flagy_5class"
DEFAULT_SPLIT = REPO / "benchmarks" / "splits" / "colorectal_split.json"


def _split_view(tiles: Path, split_file: str | None, split: str, tmp: Path) -> Path:
    """A folder of symlinks to the files of one split (class sub-folders kept)."""
    if split_file is None:
        return tiles
    import json

    files = json.loads(Path(split_file).read_text(encoding="utf-8"))["splits"][split]
    for rel in files:
        dst = tmp / "tiles" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(tiles / rel)
    return tmp / "tiles"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(REPO / "sample_data" / "demo_model"))
    ap.add_argument("--slide", default=str(REPO / "sample_data" / "CMU-1-Small-Region.svs"))
    ap.add_argument("--out", default=str(REPO / "sample_data" / "demo_results"))
    ap.add_argument("--tiles", default=None, help="labelled tile folder for the calibration")
    ap.add_argument("--split-file", default=None, help="tileuq split JSON restricting --tiles")
    ap.add_argument("--split", default="calibration", help="part of --split-file to use")
    ap.add_argument("--overlap", type=int, default=0, help="tile overlap in tile pixels")
    ap.add_argument("--min-tissue", type=float, default=0.5, help="tissue fraction to keep a tile")
    ap.add_argument("--coverage", type=float, default=0.9, help="target coverage")
    ap.add_argument("--risk", type=float, default=None, help="target risk (instead of coverage)")
    ap.add_argument("--delta", type=float, default=0.05)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    import tileuq
    from tileuq.uncertainty import Calibration, calibrate, calibrate_scores, default_scores

    model = tileuq.load_model(args.model)
    if args.tiles is None and args.split_file is None and DEFAULT_TILES.is_dir():
        args.tiles, args.split_file = str(DEFAULT_TILES), str(DEFAULT_SPLIT)
    with tempfile.TemporaryDirectory() as tmp:
        results = tileuq.run_slide(
            args.slide,
            model,
            device=args.device,
            overlap=args.overlap,
            min_tissue=args.min_tissue,
            out=Path(tmp) / "run",
        )
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
        with tempfile.TemporaryDirectory() as tmp:
            tiles = _split_view(Path(args.tiles), args.split_file, args.split, Path(tmp))
            target = {"target_risk": args.risk} if args.risk else {"target_coverage": args.coverage}
            cal = calibrate(model, tiles, delta=args.delta, **target)
        cal.info["source"] = f"{Path(args.tiles).name}" + (
            f" ({args.split} split of {Path(args.split_file).name})" if args.split_file else ""
        )
        how = f"labelled tiles: {cal.info['source']}"
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
