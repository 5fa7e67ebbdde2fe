"""``tileuq calibrate``: calibrate a model's rejection rule and store it in the model folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``calibrate`` sub-command."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "calibrate",
        help="calibrate a rejection threshold with a coverage or risk guarantee",
        description=(
            "Run the model on a labelled tile folder (one sub-folder per class), choose "
            "rejection thresholds with a finite-sample guarantee and write them into the "
            "model folder's model.json (the previous one is kept as model.json.bak). "
            "See docs/calibration.md for what each target guarantees."
        ),
    )
    p.add_argument("--model", required=True, help="model folder (or file, with --out)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--tiles", type=Path, help="labelled tile folder (class sub-folders)")
    src.add_argument("--results", type=Path, help="a slide's results folder; use with --decisions")
    p.add_argument(
        "--decisions", type=Path, help="reviewer decisions file (default: RESULTS/decisions.jsonl)"
    )
    tgt = p.add_mutually_exclusive_group(required=True)
    tgt.add_argument("--target-coverage", type=float, help="accept at least this fraction")
    tgt.add_argument("--target-risk", type=float, help="error rate among accepted tiles")
    p.add_argument("--delta", type=float, default=0.05, help="failure probability (0.05)")
    p.add_argument(
        "--score",
        action="append",
        help="score to threshold (repeat for several rules; default: entropy plus the model's "
        "'unfamiliar' score)",
    )
    p.add_argument(
        "--guarantee", choices=["pac", "marginal"], default="pac", help="coverage guarantee (pac)"
    )
    p.add_argument(
        "--method", choices=["ltt", "bonferroni"], default="ltt", help="risk procedure (ltt)"
    )
    p.add_argument(
        "--unfamiliar-coverage",
        type=float,
        default=0.95,
        help="risk target: coverage of the unfamiliar-score gate (0.95)",
    )
    p.add_argument("--temperature-scaling", action="store_true", help="also fit a temperature")
    p.add_argument("--batch-size", type=int, default=64, help="tiles per batch (64)")
    p.add_argument("--device", default="cpu", help="torch device (cpu)")
    p.add_argument("--skip-unreadable", action="store_true", help="skip unreadable images")
    p.add_argument(
        "--out", type=Path, help="write the calibration JSON here instead of into the model"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    return p


def run(args: argparse.Namespace) -> int:
    """Calibrate and write the result; return 0 on success."""
    from tileuq.cli._drain import drain
    from tileuq.errors import CalibrationError
    from tileuq.models import load_model
    from tileuq.uncertainty import iter_calibrate, write_calibration

    model = load_model(args.model)
    model.to(args.device)
    kwargs: dict[str, Any] = {"guarantee": args.guarantee, "method": args.method}
    if args.target_risk is not None:
        kwargs["unfamiliar_coverage"] = args.unfamiliar_coverage
    if args.tiles is not None:
        source: Any = args.tiles
    else:
        from tileuq.engine.results import TileResults

        decisions = args.decisions or args.results / "decisions.jsonl"
        source = (TileResults.load(args.results), decisions)
    score = args.score if args.score else None
    cal = drain(
        iter_calibrate(
            model,
            source,
            score=score,
            target_coverage=args.target_coverage,
            target_risk=args.target_risk,
            delta=args.delta,
            batch_size=args.batch_size,
            temperature_scaling=args.temperature_scaling,
            on_error="skip" if args.skip_unreadable else "raise",
            **kwargs,
        ),
        quiet=args.quiet,
    )
    print(cal.describe())
    if cal.temperature is not None:
        print(f"Temperature: {cal.temperature:.3f}")
    if args.out is not None:
        cal.save(args.out)
        print(f"calibration written to {args.out}")
        return 0
    folder = Path(args.model)
    if not folder.is_dir():
        raise CalibrationError(
            f"--model {args.model}: not a model folder; give --out FILE to write the calibration"
        )
    path = write_calibration(folder, cal)
    print(f"calibration written to {path} (previous manifest kept as {path.name}.bak)")
    return 0
