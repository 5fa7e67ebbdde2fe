"""``tileuq report``: slide reports and a sortable summary page over a batch output folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``report`` sub-command."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "report",
        help="HTML reports for every slide of a 'tileuq run' output folder, plus a summary",
        description=(
            "Write BATCH_DIR/<slide>/report.html for every slide of a 'tileuq run --out' "
            "folder and BATCH_DIR/index.html, a sortable summary table (rejected tissue, "
            "shift alarm, main class) linking to them, with the same table as summary.csv. "
            "Each file is self-contained and can be mailed or archived on its own."
        ),
    )
    p.add_argument("batch", type=Path, metavar="BATCH_DIR", help="output folder of 'tileuq run'")
    p.add_argument(
        "--calibration",
        metavar="FILE",
        help="calibration JSON, model.json or model folder applied to every slide "
        "(default per slide: its calibration.json, else the one its run recorded)",
    )
    p.add_argument("--out", type=Path, help="summary page (default: BATCH_DIR/index.html)")
    p.add_argument(
        "--no-slide-reports", action="store_true", help="only the summary, no per-slide reports"
    )
    return p


def run(args: argparse.Namespace) -> int:
    """Write the reports; print the summary page's path; 0 even when some slides failed."""
    from tileuq.export.batch import write_batch_report

    path = write_batch_report(
        args.batch,
        args.out,
        calibration=args.calibration,
        slide_reports=not args.no_slide_reports,
    )
    print(path)
    return 0
