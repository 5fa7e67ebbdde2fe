"""``tileuq export``: one slide's results as QuPath GeoJSON, tables, heatmaps or a report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

TARGETS = ("geojson", "decisions", "csv", "parquet", "heatmap", "report")
EXPORT_DIR = "export"


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``export`` sub-command."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "export",
        help="export one slide's results (GeoJSON for QuPath, CSV/Parquet, heatmaps, report)",
        description=(
            "Export the results folder of one slide (as written by 'tileuq run'). Outputs go "
            "to RESULTS_DIR/export/ unless --out is given (the report to "
            "RESULTS_DIR/report.html). GeoJSON uses level-0 pixel coordinates as QuPath "
            "expects. 'decisions' exports the reviewer's decisions.jsonl."
        ),
    )
    p.add_argument("results", type=Path, metavar="RESULTS_DIR", help="a slide's results folder")
    p.add_argument("--to", required=True, choices=TARGETS, help="what to write")
    p.add_argument(
        "--calibration",
        metavar="FILE",
        help="calibration JSON, model.json or model folder (default: RESULTS_DIR/"
        "calibration.json as the napari calibrate widget saves it, else the calibration the "
        "model carried when the slide was run)",
    )
    p.add_argument(
        "--merge",
        action="store_true",
        help="geojson/decisions: merge adjacent tiles of one class (and rejected tiles of one "
        "reason) into polygons",
    )
    p.add_argument(
        "--object-type",
        choices=["tile", "detection", "annotation"],
        help="geojson: QuPath object type (default: tile, or annotation with --merge)",
    )
    p.add_argument(
        "--score",
        action="append",
        metavar="NAME",
        help="heatmap/report: a score or numeric column, 'class', 'rejected', or 'all' "
        "(heatmap: repeatable; default: the main uncertainty score)",
    )
    p.add_argument(
        "--downsample",
        type=float,
        metavar="N",
        help="heatmap: level-0 pixels per image pixel (default: PNG fits 2048 px; TIFF "
        "draws about 16 px per tile)",
    )
    p.add_argument(
        "--format",
        choices=["png", "tiff", "both"],
        default=None,
        help="heatmap: PNG with legend, pyramidal OME-TIFF, or both (default: both, or "
        "from the --out suffix)",
    )
    p.add_argument(
        "--decisions",
        type=Path,
        metavar="FILE",
        help="decisions file (default: RESULTS_DIR/decisions.jsonl)",
    )
    p.add_argument("--slide", type=Path, help="report: the slide file, if it has moved")
    p.add_argument("--out", type=Path, metavar="PATH", help="output file (heatmap: or folder)")
    return p


def _out(args: argparse.Namespace, default_name: str) -> Path:
    if args.out is not None:
        return Path(args.out)
    return args.results / EXPORT_DIR / default_name


def _scores(results: Any, names: list[str] | None) -> list[str | None]:
    from tileuq.export._common import is_calibrated

    if not names:
        return [None]
    out: list[str | None] = []
    for n in names:
        if n == "all":
            out += ["class", *results.score_names]
            if is_calibrated(results):
                out.append("rejected")
        else:
            out.append(n)
    return list(dict.fromkeys(out))


def _heatmaps(args: argparse.Namespace, results: Any, cal: Any) -> list[Path]:
    from tileuq.export.heatmap import write_heatmap_png
    from tileuq.export.ometiff import write_heatmap_tiff
    from tileuq.export.raster import style_for

    fmt = args.format
    out_file = None
    if args.out is not None and args.out.suffix.lower() in (".png", ".tif", ".tiff"):
        out_file = args.out
        fmt = fmt or ("png" if args.out.suffix.lower() == ".png" else "tiff")
    fmt = fmt or "both"
    folder = args.out if (args.out is not None and out_file is None) else None
    folder = folder or (args.results / EXPORT_DIR)
    whats = _scores(results, args.score)
    if out_file is not None and (len(whats) > 1 or fmt == "both"):
        from tileuq.errors import ResultsError

        raise ResultsError(
            f"--out {out_file}: one file cannot hold several heatmaps; give a folder"
        )
    written = []
    for what in whats:
        name = style_for(results, what, cal or None).what
        if fmt in ("png", "both"):
            path = out_file or folder / f"heatmap-{name}.png"
            written.append(
                write_heatmap_png(results, path, name, downsample=args.downsample, calibration=cal)
            )
        if fmt in ("tiff", "both"):
            path = out_file or folder / f"heatmap-{name}.ome.tif"
            written.append(
                write_heatmap_tiff(results, path, name, downsample=args.downsample, calibration=cal)
            )
    return written


def run(args: argparse.Namespace) -> int:
    """Write the requested export and print the paths written."""
    from tileuq.errors import ResultsError
    from tileuq.export._common import load_results, prepare

    results = load_results(args.results)  # clear error for a folder that is not a results folder
    res, cal = prepare(results, args.calibration)
    if cal is None and args.to != "decisions":
        print("note: no calibration given or recorded with the run: nothing is flagged as rejected")
    written: list[Path] = []
    if args.to == "geojson":
        from tileuq.export.geojson import results_to_geojson, write_geojson

        fc = results_to_geojson(res, cal or False, merge=args.merge, object_type=args.object_type)
        name = "regions.geojson" if args.merge else "tiles.geojson"
        written.append(write_geojson(fc, _out(args, name)))
        print(f"{len(fc['features'])} features from {len(res.table)} tiles")
    elif args.to == "decisions":
        from tileuq.export.decisions import decisions_to_geojson
        from tileuq.export.geojson import write_geojson
        from tileuq.uncertainty.decisions import DECISIONS_FILE

        source = args.decisions or args.results / DECISIONS_FILE
        if not Path(source).is_file():
            raise ResultsError(
                f"{source}: no reviewer decisions file (the review widget writes it)"
            )
        fc = decisions_to_geojson(source, res, merge=args.merge, object_type=args.object_type)
        written.append(write_geojson(fc, _out(args, "decisions.geojson")))
        print(f"{len(fc['features'])} features from {fc['tileuq']['decisions']} decisions")
    elif args.to in ("csv", "parquet"):
        from tileuq.export.tables import export_table

        out = _out(args, f"tiles.{args.to}")
        if out.resolve() == (args.results / "tiles.parquet").resolve():
            raise ResultsError(f"--out {out}: would overwrite the run's own table")
        written.append(export_table(res, out, calibration=cal or False, fmt=args.to))
    elif args.to == "heatmap":
        written += _heatmaps(args, res, cal or False)
    else:
        from tileuq.export.report import REPORT_FILE, write_report

        out = args.out or args.results / REPORT_FILE
        score = args.score[0] if args.score else None
        written.append(
            write_report(args.results, out, calibration=cal or False, slide=args.slide, score=score)
        )
    for path in written:
        print(path)
    return 0
